"""What this CPU computes natively: the one place crossrank reads it (engine and file choices, and
the line every benchmark prints with its figures).

Example:
    >>> summary = cpu_summary()  # e.g. 'AMD EPYC (2 CPUs; avx2)'
    >>> "CPUs;" in summary
    True
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

__all__ = ["KEY_FLAGS", "cpu_features", "cpu_name", "cpu_summary"]

#: The flags that decide which kernels are fast: int8 dot products (VNNI, ARM's dot product),
#: native bf16 (AVX512-BF16, AMX), wide vectors (AVX2, AVX-512). ``arm64`` stands for the architecture.
KEY_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "arm64",
    "asimddp",
)


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """The CPU's flags (``avx2``, ``avx512f``, ``avx512_vnni``, ``amx_bf16``...), and ``arm64`` on ARM.

    Read from ``/proc/cpuinfo`` on Linux; on other systems only the architecture is known.

    Example:
        >>> "avx2" in cpu_features() or platform.machine() not in ("x86_64", "AMD64")
        True
    """
    machine = platform.machine().lower()
    flags: set[str] = {"arm64"} if machine in ("arm64", "aarch64") else set()
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.partition(":")[2].split())
            break
    return frozenset(flags)


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows.

    Example:
        >>> bool(cpu_name())
        True
    """
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_summary() -> str:
    """One line to print with every speed figure: the name, usable cores and :data:`KEY_FLAGS` present.

    Example:
        >>> cpu_summary().startswith(cpu_name())
        True
    """
    flags = [flag for flag in KEY_FLAGS if flag in cpu_features()]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_name()} ({cores} CPUs; {' '.join(flags) or 'no AVX2'})"

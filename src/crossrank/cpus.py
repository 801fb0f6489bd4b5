"""This machine's CPUs, the one place crossrank reads them: how many this process may really use
(:func:`usable_cpus`), and what they compute natively (:func:`cpu_features`: the engine and file
choices; :func:`cpu_summary`: the line every benchmark prints with its figures).

How many: its affinity mask and its cgroup's CPU quota.

``os.cpu_count()`` counts the machine's CPUs. A container limited to 2 CPUs on a 64-core host
(``docker run --cpus 2``, a Kubernetes CPU limit, systemd's ``CPUQuota=``) still sees 64, and an
engine that starts 64 busy threads there gets throttled. :func:`usable_cpus` is the smallest of:

* the CPUs in the process's affinity mask (``os.sched_getaffinity``; ``taskset``, ``--cpuset-cpus``);
* the cgroup v2 quota, ``cpu.max`` (``"200000 100000"``: 200 ms of CPU time per 100 ms = 2
  CPUs; ``"max 100000"``: no limit), read in the cgroup root and along the process's own cgroup
  path (from ``/proc/self/cgroup``), where a systemd service's limit lives;
* the cgroup v1 quota, ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1``: no limit).

A fractional quota is rounded up (1.5 CPUs: 2 threads get all of it, 1 would leave a third
unused), and the result is at least 1.
"""

from __future__ import annotations

import math
import os
import platform
from functools import lru_cache
from pathlib import Path

__all__ = ["BF16_FLAGS", "KEY_FLAGS", "cpu_features", "cpu_name", "cpu_summary", "native_bf16", "usable_cpus"]

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_SELF_CGROUP = "/proc/self/cgroup"
#: Where a cgroup v1 hierarchy mounts the cpu controller, under the cgroup root.
_V1_CPU_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu", ".")


def usable_cpus(
    cgroup_root: str | os.PathLike[str] = CGROUP_ROOT, proc_cgroup: str | os.PathLike[str] = PROC_SELF_CGROUP
) -> int:
    """The number of CPUs this process can keep busy: affinity and cgroup quota, whichever is less.

    Args:
        cgroup_root: Where the cgroup file system is mounted (tests point it at fake files).
        proc_cgroup: The process's cgroup membership file, read for its cgroup v2 path.
    """
    limits = [_affinity_cpus(), *_cgroup_v2_limits(Path(cgroup_root), Path(proc_cgroup))]
    limits.append(_cgroup_v1_limit(Path(cgroup_root)))
    return max(1, min(limit for limit in limits if limit is not None))


def _affinity_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _quota_cpus(quota: float, period: float) -> int | None:
    """CPUs granted by ``quota`` µs per ``period`` µs, rounded up; None for no limit."""
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cpu_max(path: Path) -> int | None:
    """The limit in a cgroup v2 ``cpu.max`` file (``"$QUOTA $PERIOD"`` or ``"max $PERIOD"``)."""
    text = _read(path)
    if not text:
        return None
    fields = text.split()
    if fields[0] == "max":
        return None
    try:
        return _quota_cpus(float(fields[0]), float(fields[1]) if len(fields) > 1 else 100_000.0)
    except ValueError:
        return None


def _cgroup_v2_limits(root: Path, proc_cgroup: Path) -> list[int | None]:
    """``cpu.max`` limits of the cgroup root and of every cgroup on the process's own path."""
    folders = [root]
    membership = _read(proc_cgroup) or ""
    for line in membership.splitlines():
        if line.startswith("0::"):  # the unified (v2) hierarchy
            parts = [part for part in line[3:].strip().split("/") if part and part != ".."]
            for depth in range(1, len(parts) + 1):
                folders.append(root.joinpath(*parts[:depth]))
    return [_cpu_max(folder / "cpu.max") for folder in folders]


def _cgroup_v1_limit(root: Path) -> int | None:
    for name in _V1_CPU_DIRS:
        folder = root / name
        quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
        if quota is None or period is None:
            continue
        try:
            return _quota_cpus(float(quota), float(period))
        except ValueError:
            return None
    return None


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


#: The flags of a CPU that computes bf16 natively (Intel AMX tiles, AVX512-BF16 dot products).
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def native_bf16(features: frozenset[str] | set[str] | None = None) -> bool:
    """Whether the CPU (``features``, default this one's) computes bf16 natively: the one test
    behind every "bf16 where the CPU has it" choice (``backend="auto"``, torch's ``precision="auto"``).

    Example:
        >>> native_bf16({"avx2", "avx512_vnni"}), native_bf16({"amx_bf16", "amx_int8"})
        (False, True)
    """
    flags = cpu_features() if features is None else features
    return any(flag in flags for flag in BF16_FLAGS)


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
    return f"{cpu_name()} ({usable_cpus()} CPUs; {' '.join(flags) or 'no AVX2'})"

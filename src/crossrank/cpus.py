"""How many CPUs this process may really use: its affinity mask and its cgroup's CPU quota.

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
from pathlib import Path

__all__ = ["usable_cpus"]

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

"""What this process may really use inside a container: memory and CPUs under a cgroup limit (a Space, Docker).

A container sees the host's /proc/meminfo and all its cores; its own limits are in the cgroup files
(v2: `memory.max`, `memory.current`, `cpu.max`; v1: `memory.limit_in_bytes`, `memory.usage_in_bytes`,
`cpu.cfs_quota_us` / `cpu.cfs_period_us`), as the kernel's cgroup documentation describes them.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import psutil

CGROUP_ROOT = Path("/sys/fs/cgroup")
_UNLIMITED = 1 << 60  # v1 reports "no limit" as a huge page-aligned number


def free_memory_bytes(root: Path = CGROUP_ROOT) -> int:
    """Bytes this process may still allocate: the smallest of the host's available memory, what the cgroup's limit
    leaves (limit minus current use) and what this process's data limit (RLIMIT_DATA) leaves of its resident
    memory."""
    host = min(psutil.virtual_memory().available, _data_limit_left())
    limit = _read_int(root / "memory.max") or _read_int(root / "memory" / "memory.limit_in_bytes")
    used = _read_int(root / "memory.current") or _read_int(root / "memory" / "memory.usage_in_bytes")
    if limit is None or limit >= _UNLIMITED or used is None:
        return host
    return max(0, min(host, limit - used))


def _data_limit_left() -> int:
    """What RLIMIT_DATA leaves this process beyond its resident memory (no limit: a huge number)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return _UNLIMITED
    soft, _ = resource.getrlimit(resource.RLIMIT_DATA)
    if soft == resource.RLIM_INFINITY:
        return _UNLIMITED
    return max(0, soft - psutil.Process().memory_info().rss)


def limit_this_process(megabytes: float) -> None:
    """Cap this process's data memory (RLIMIT_DATA) at `megabytes`, and make it the kernel's first choice when the
    machine runs out of memory (oom_score_adj 1000), so that a run dies before the app that started it."""
    import resource

    limit = int(megabytes * 2**20)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    prefer_as_oom_victim()


def prefer_as_oom_victim() -> None:
    """Ask the kernel to end this process first when memory runs out (Linux; nothing elsewhere)."""
    try:
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass


def usable_cores(root: Path = CGROUP_ROOT) -> int:
    """Cores this process may keep busy: those it may run on, capped by the cgroup's CPU quota (rounded up)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = cpu_quota(root)
    return max(1, min(cores, math.ceil(quota))) if quota else cores


def cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup's CPU quota in cores (`cpu.max` "200000 100000" is 2.0), or None when there is none."""
    try:
        fields = (root / "cpu.max").read_text().split()
        if fields and fields[0] != "max":
            return int(fields[0]) / int(fields[1])
        if fields:
            return None
    except (OSError, ValueError, IndexError):
        pass
    quota, period = _read_int(root / "cpu" / "cpu.cfs_quota_us"), _read_int(root / "cpu" / "cpu.cfs_period_us")
    return quota / period if quota and quota > 0 and period else None


def _read_int(path: Path) -> int | None:
    """An integer cgroup file; None when missing, unreadable or 'max'."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def oom_kills(root: Path = CGROUP_ROOT) -> int:
    """How many processes the kernel's out-of-memory killer has ended in this cgroup (v2 `memory.events`, v1
    `memory.oom_control`); 0 where it does not say."""
    for path in (root / "memory.events", root / "memory" / "memory.oom_control"):
        try:
            for line in path.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return 0

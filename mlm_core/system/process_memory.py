"""Memory figures of processes (psutil); imports nothing heavy, since tokenizer workers load it too."""

from __future__ import annotations

import psutil


def rss(pid: int | None = None) -> int | None:
    """A process's resident memory now, in bytes (this process when `pid` is None); None when it has ended."""
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:
        return None


def peak_rss(pid: int | None = None) -> int | None:
    """A process's peak resident memory in bytes (Linux's VmHWM; psutil has no peak there); None elsewhere."""
    try:
        with open(f"/proc/{pid or 'self'}/status", encoding="ascii") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None

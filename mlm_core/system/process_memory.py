"""Memory figures Linux keeps in /proc; imports nothing heavy, since tokenizer workers load it too."""

from __future__ import annotations


def proc_bytes(path: str, key: str) -> int | None:
    """The `key:  N kB` line of a /proc file, in bytes; None where the file or the line is missing (not Linux)."""
    try:
        with open(path, encoding="ascii") as file:
            for line in file:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss(pid: int | str = "self") -> int | None:
    """A process's peak resident memory in bytes (VmHWM)."""
    return proc_bytes(f"/proc/{pid}/status", "VmHWM")


def rss(pid: int | str = "self") -> int | None:
    """A process's resident memory now, in bytes (VmRSS)."""
    return proc_bytes(f"/proc/{pid}/status", "VmRSS")

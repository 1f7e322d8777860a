"""The training lock of a run folder: which process trains it (pid, host, heartbeat), and whether it still lives."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from mlm_core.system.atomic_files import read_json, write_json

LOCK_FILE = "lock.json"
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0  # a trainer on another host that has not beaten for this long is taken for dead


@dataclass(frozen=True)
class LockInfo:
    """What the lock file says about the process that trains the run."""

    pid: int
    host: str
    started: float
    heartbeat: float
    process_start: str | None = None  # the kernel's start time of pid, to tell a reused pid apart

    @property
    def live(self) -> bool:
        """Whether that process still trains: alive on this host, or beating recently on another."""
        if time.time() - self.heartbeat > STALE_AFTER_S:
            return False
        if self.host != socket.gethostname():
            return True
        return _process_start(self.pid) == self.process_start if _alive(self.pid) else False

    def describe(self) -> str:
        """'process 1234 on this machine' or 'process 1234 on host-b'."""
        where = "this machine" if self.host == socket.gethostname() else self.host
        return f"process {self.pid} on {where}"


def read_lock(folder: Path) -> LockInfo | None:
    """The lock of a run folder, or None when it is not locked."""
    values = read_json(folder / LOCK_FILE)
    if not isinstance(values, dict):
        return None
    try:
        return LockInfo(**values)
    except TypeError:
        return None


class RunLock:
    """A held lock: a heartbeat thread keeps it fresh until `release`."""

    def __init__(self, folder: Path, info: LockInfo):
        self.folder, self.info = folder, info
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{folder.name}", daemon=True)
        self._thread.start()

    @classmethod
    def acquire(cls, folder: Path, on_busy: Callable[[LockInfo], Exception]) -> RunLock:
        """Take the lock of `folder` (created if missing); raises `on_busy(holder)` while a live process holds it."""
        folder.mkdir(parents=True, exist_ok=True)
        with _exclusive(folder):  # two processes checking at once would both find the lock free
            held = read_lock(folder)
            if held is not None and held.live:
                raise on_busy(held)
            now = time.time()
            info = LockInfo(pid=os.getpid(), host=socket.gethostname(), started=now, heartbeat=now,
                            process_start=_process_start(os.getpid()))
            write_json(folder / LOCK_FILE, asdict(info))
        return cls(folder, info)

    def _beat(self) -> None:
        """Refresh the heartbeat until released."""
        while not self._stop.wait(HEARTBEAT_S):
            with _exclusive(self.folder):
                if _same_holder(read_lock(self.folder), self.info):
                    self.info = LockInfo(**{**asdict(self.info), "heartbeat": time.time()})
                    write_json(self.folder / LOCK_FILE, asdict(self.info))

    def release(self) -> None:
        """Stop the heartbeat and remove the lock (only if it is still ours)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with _exclusive(self.folder):
            if _same_holder(read_lock(self.folder), self.info):
                (self.folder / LOCK_FILE).unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_holder(found: LockInfo | None, ours: LockInfo) -> bool:
    """Whether a lock read back is the one we took."""
    return found is not None and (found.pid, found.host, found.started) == (ours.pid, ours.host, ours.started)


@contextlib.contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """An advisory lock on the folder itself, held for a few file operations."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), or None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]

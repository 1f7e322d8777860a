"""The training lock of a run folder: which process trains it (pid, host, heartbeat), and whether it still lives."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from filelock import FileLock

from mlm_core.system.atomic_files import read_json_cached, write_json

LOCK_FILE = "lock.json"
GUARD_FILE = ".lock.json.guard"  # held for a few file operations, so that two processes never both take the lock
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0  # a trainer on another host that has not beaten for this long is taken for dead


@dataclass(frozen=True)
class LockInfo:
    """What the lock file says about the process that trains the run."""

    pid: int
    host: str
    started: float
    heartbeat: float
    process_start: str | None = None  # the start time of pid, to tell a reused pid apart

    @property
    def live(self) -> bool:
        """Whether that process still trains: alive on this host, or beating recently on another."""
        if time.time() - self.heartbeat > STALE_AFTER_S:
            return False
        if self.host != socket.gethostname():
            return True
        return _process_start(self.pid) == self.process_start

    def describe(self) -> str:
        """'process 1234 on this machine' or 'process 1234 on host-b'."""
        where = "this machine" if self.host == socket.gethostname() else self.host
        return f"process {self.pid} on {where}"


def read_lock(folder: Path) -> LockInfo | None:
    """The lock of a run folder, or None when it is not locked."""
    values = read_json_cached(folder / LOCK_FILE)
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
        with _guard(folder):  # two processes checking at once would both find the lock free
            held = read_lock(folder)
            if held is not None and held.live:
                raise on_busy(held)
            now = time.time()
            info = LockInfo(
                pid=os.getpid(),
                host=socket.gethostname(),
                started=now,
                heartbeat=now,
                process_start=_process_start(os.getpid()),
            )
            write_json(folder / LOCK_FILE, asdict(info))
        return cls(folder, info)

    def _beat(self) -> None:
        """Refresh the heartbeat until released."""
        while not self._stop.wait(HEARTBEAT_S):
            with _guard(self.folder):
                if _same_holder(read_lock(self.folder), self.info):
                    self.info = LockInfo(**{**asdict(self.info), "heartbeat": time.time()})
                    write_json(self.folder / LOCK_FILE, asdict(self.info))

    def release(self) -> None:
        """Stop the heartbeat and remove the lock (only if it is still ours)."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with _guard(self.folder):
            if _same_holder(read_lock(self.folder), self.info):
                (self.folder / LOCK_FILE).unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _same_holder(found: LockInfo | None, ours: LockInfo) -> bool:
    """Whether a lock read back is the one we took."""
    return found is not None and (found.pid, found.host, found.started) == (ours.pid, ours.host, ours.started)


def _guard(folder: Path) -> FileLock:
    """An inter-process lock beside the lock file (filelock: fcntl on POSIX, msvcrt on Windows)."""
    return FileLock(folder / GUARD_FILE)


def _process_start(pid: int) -> str | None:
    """When a process on this machine started (seconds since the epoch, as text), or None when it does not exist."""
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return None

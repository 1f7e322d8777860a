"""RunIndex: the runs of one runs folder in memory, newest first, and those waiting or training, so that listing
runs, a queue position and the queue's next run cost the same with 10 runs or 1,000.

Read once at start, then kept current from what changes: the app's own actions say which run they changed
(`changed`), a run waiting or training is looked at again each time it is asked for (its process may have moved it
on), and `refresh` (a look at the folder's names and each run's records, a few milliseconds for 1,000 runs, which the
queue's worker takes every `REFRESH_S` seconds) finds what other processes did: a run the CLI made, resumed or
deleted.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from mlm_core.runs.records import QUEUED, RUN_NAME, RUNNING
from mlm_core.runs.run_dir import RunDir

REFRESH_S = 5.0
ACTIVE = {QUEUED, RUNNING}


class RunIndex:
    """The runs under `root` (see the module's docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._newest: list[RunDir] = []  # every run, newest first
        self._created: dict[RunDir, tuple[float, str]] = {}  # each run's sort key
        self._active: set[RunDir] = set()  # runs last seen waiting or training
        self.refreshed_at = 0.0
        self.version = 0  # counts the changes seen: what is built from the runs can be kept while it stays
        self.refresh()

    def refresh(self) -> None:
        """Look at the folder again: runs made or deleted by another process, and runs whose status it changed."""
        try:
            names = {entry.name for entry in os.scandir(self.root) if RUN_NAME.fullmatch(entry.name)}
        except OSError:
            names = set()
        with self._lock:
            known = {run.name: run for run in self._newest}
        for name in names - known.keys():
            self.changed(RunDir(self.root / name))
        for name in known.keys() - names:
            self.changed(known[name])
        active = {run for run in self.runs() if run.status() in ACTIVE}
        with self._lock:
            if active != self._active:  # a process of its own made a run wait, train or end
                self._active, self.version = active, self.version + 1
            self.refreshed_at = time.monotonic()

    def refresh_if_due(self) -> None:
        """`refresh` when the last one is `REFRESH_S` old."""
        if time.monotonic() - self.refreshed_at >= REFRESH_S:
            self.refresh()

    def changed(self, run: RunDir) -> None:
        """Take in what happened to one run: made, changed or deleted."""
        present = run.is_run()
        with self._lock:
            self.version += 1
            if run in self._created:
                self._newest.remove(run)
                del self._created[run]
            self._active.discard(run)
            if not present:
                return
            key = (run.identity().created, run.name)
            self._created[run] = key
            position = next((i for i, other in enumerate(self._newest) if self._created[other] < key), None)
            self._newest.insert(len(self._newest) if position is None else position, run)
        if run.status() in ACTIVE:
            with self._lock:
                self._active.add(run)

    def runs(self, limit: int | None = None) -> list[RunDir]:
        """The runs, newest first (the `limit` newest)."""
        with self._lock:
            return self._newest[:limit]

    def __len__(self) -> int:
        with self._lock:
            return len(self._newest)

    def active(self) -> list[RunDir]:
        """The runs waiting or training now, newest first (each looked at again)."""
        with self._lock:
            candidates = sorted(self._active, key=self._created.__getitem__, reverse=True)
        active = [run for run in candidates if run.status() in ACTIVE]
        if len(active) < len(candidates):
            with self._lock:
                self._active -= set(candidates) - set(active)
                self.version += 1
        return active

    def waiting(self) -> list[RunDir]:
        """The queued runs, first to train first."""
        queued = [run for run in self.active() if run.status() == QUEUED]
        return sorted(queued, key=lambda run: (run.identity().queued_at, run.name))

    def running(self) -> RunDir | None:
        """A run training now, in this process or another."""
        return next((run for run in self.active() if run.status() == RUNNING), None)

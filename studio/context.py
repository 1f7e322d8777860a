"""The app's shared state, made once at launch: the runs folder, its queue, the events of its runs."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from mlm_core.events import Event
from mlm_core.queue import RunQueue
from mlm_core.runs.records import QUEUED, RUNNING
from mlm_core.runs.run_dir import RunDir, list_runs, recover_runs, run_in

CANCELLED, STOPPING = "cancelled", "stopping"
EVENT_CACHE_RUNS = 16  # runs whose parsed events are kept (the ones visitors watch or compare)


@dataclass
class Studio:
    """What every visitor's handlers share: one runs folder, one queue (one run trains at a time)."""

    root: Path
    queue: RunQueue
    _events: OrderedDict[Path, tuple[tuple[float, int], list[Event]]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, root: Path) -> Studio:
        """Recover the runs folder after a crash, then start the queue (runs queued before a restart resume)."""
        root.mkdir(parents=True, exist_ok=True)
        recover_runs(root)
        return cls(root=root, queue=RunQueue(root).start())

    def close(self) -> None:
        """Stop training and the queue's worker."""
        self.queue.close(timeout=30)

    def run(self, name: object) -> RunDir:
        """The run called `name`; ValueError for a missing run or a name that is not one."""
        return run_in(self.root, name)

    def runs(self) -> list[RunDir]:
        """Every run, newest first."""
        return list_runs(self.root)

    def running(self) -> RunDir | None:
        """The run training now, in this process or another."""
        job = self.queue.active()
        if job is not None:
            return job.run
        return next((run for run in self.runs() if run.status() == RUNNING), None)

    def stop(self, run: RunDir) -> str:
        """Ask a training run to stop after its current step, or take a waiting one out of the queue; ValueError in
        plain words when it neither waits nor trains, or another process trains it."""
        status = run.status()
        if status == QUEUED:
            self.queue.cancel(run)
            return CANCELLED
        if status != RUNNING:
            raise ValueError(f"run: {run.name} is {status}, so there is nothing to stop")
        if not self.queue.stop(run):
            raise ValueError(f"run: {run.name} is trained by another process; stop it there")
        return STOPPING

    def events(self, run: RunDir) -> list[Event]:
        """The run's events: live from the training job, else from events.jsonl (re-read only when it changed)."""
        job = self.queue.current
        if job is not None and job.run == run and job.events:
            return job.events
        try:
            stat = run.events_path.stat()
        except OSError:
            return []
        stamp = (stat.st_mtime, stat.st_size)
        with self._lock:
            cached = self._events.get(run.path)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        events = run.events()
        with self._lock:
            self._events[run.path] = (stamp, events)
            self._events.move_to_end(run.path)
            while len(self._events) > EVENT_CACHE_RUNS:
                self._events.popitem(last=False)
        return events

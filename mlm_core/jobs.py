"""JobManager: one training job per process on a worker thread, with its event history, stop and re-attach."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig
from .events import Done, Error, Event
from .modeling import preload


class Busy(RuntimeError):
    """A run is already in progress in this process."""


@dataclass
class Job:
    """One training run started from this process: its settings, events so far and stop flag."""

    config: TrainConfig
    probes: tuple[str, ...] = ()
    resume: bool = False
    stop_flag: threading.Event = field(default_factory=threading.Event)
    events: list[Event] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    thread: threading.Thread | None = None

    def record(self, event: Event) -> None:
        """Keep an event (list.append is atomic, so readers on other threads see a consistent prefix)."""
        self.events.append(event)

    @property
    def running(self) -> bool:
        """Whether the worker thread is still training."""
        return self.thread is not None and self.thread.is_alive()

    @property
    def outcome(self) -> Event | None:
        """The Done or Error event that ended the run, if it has ended."""
        return next((e for e in reversed(self.events) if isinstance(e, (Done, Error))), None)

    @property
    def status(self) -> str:
        """'running', 'stopping', 'completed', 'stopped' or 'failed'."""
        if self.running:
            return "stopping" if self.stop_flag.is_set() else "running"
        outcome = self.outcome
        return outcome.status if isinstance(outcome, Done) else "failed"

    @property
    def results(self) -> dict[str, Any] | None:
        """results.json's content once the run has ended normally."""
        outcome = self.outcome
        return outcome.results if isinstance(outcome, Done) else None


class JobManager:
    """Owns the process's single training job; every visitor of the app sees the same one."""

    def __init__(self):
        self._lock = threading.Lock()
        self.current: Job | None = None

    def start(self, config: TrainConfig, probes: Sequence[str] = (), resume: bool = False) -> Job:
        """Start training on a worker thread; Busy if a run is in progress."""
        preload()  # before the worker thread exists: transformers' lazy imports are not thread-safe
        with self._lock:
            if self.current is not None and self.current.running:
                raise Busy(f"A run is in progress ({self.current.config.output_dir}); wait for it or stop it first.")
            job = Job(config=config, probes=tuple(probes), resume=resume)
            job.thread = threading.Thread(target=self._work, args=(job,), name="mlm-train", daemon=True)
            self.current = job
            job.thread.start()
            return job

    @staticmethod
    def _work(job: Job) -> None:
        """The worker: train, with failures already reported as Error events by the loop."""
        from .training import train

        try:
            train(job.config, on_event=job.record, stop=job.stop_flag, resume=job.resume, probes=job.probes)
        except Exception as error:  # the loop has emitted an Error event; keep the thread's end quiet
            if job.outcome is None:
                job.record(Error(f"training failed: {error!r}"))

    def stop(self) -> bool:
        """Ask the running job to stop at the next step; False when nothing is running."""
        job = self.current
        if job is None or not job.running:
            return False
        job.stop_flag.set()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current job to end; True when it has."""
        job = self.current
        if job is None or job.thread is None:
            return True
        job.thread.join(timeout)
        return not job.thread.is_alive()

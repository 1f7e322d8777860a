"""RunQueue: runs wait in a FIFO (kept on disk, so it survives a restart); one trains at a time on a worker thread."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlm_core.config import TrainConfig
from mlm_core.events import Done, Error, Event, Step
from mlm_core.models.loading import preload
from mlm_core.runs.records import QUEUED, RUNNING, RunIdentity
from mlm_core.runs.run_dir import RunDir, list_runs
from mlm_core.training.loop import train

POLL_S = 2.0  # how often a waiting queue looks whether another process still trains


@dataclass
class Job:
    """The run this process trains now: its events so far (for the page) and its stop flag."""

    run: RunDir
    stop_flag: threading.Event = field(default_factory=threading.Event)
    events: list[Event] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)

    def record(self, event: Event) -> None:
        """Keep an event (list.append is atomic, so readers on other threads see a consistent prefix)."""
        self.events.append(event)

    @property
    def stopping(self) -> bool:
        """Stop was asked and the run has not ended yet."""
        return self.stop_flag.is_set() and not self.finished.is_set()

    def eta_s(self) -> float | None:
        """Seconds until the run ends, at its recent pace (None before its first step)."""
        step = next((e for e in reversed(self.events) if isinstance(e, Step)), None)
        return None if step is None or step.eta_s != step.eta_s else step.eta_s


class RunQueue:
    """The runs of one runs folder waiting to train, in the order they were submitted; one trains at a time."""

    def __init__(self, root: Path):
        self.root = root
        self._wake = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None
        self.current: Job | None = None

    def start(self) -> RunQueue:
        """Start the worker thread (runs queued before a restart start training again)."""
        preload()  # before the worker thread exists: transformers' lazy imports are not thread-safe
        self._worker = threading.Thread(target=self._work, name="mlm-queue", daemon=True)
        self._worker.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop the running run and the worker."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        job = self.current
        if job is not None:
            job.stop_flag.set()
        if self._worker is not None:
            self._worker.join(timeout)

    def submit(self, config: TrainConfig, identity: RunIdentity) -> RunDir:
        """Queue a new run in `config.output_dir` (a folder under the root); it trains when its turn comes.
        ValueError naming `output_dir` when that folder already holds files or a run."""
        run = RunDir(config.output_dir)
        run.create(config, dataclasses.replace(identity, queued_at=time.time()))
        self._notify()
        return run

    def resume(self, run: RunDir) -> None:
        """Queue a stopped or interrupted run to continue from its checkpoint; ValueError in plain words for any
        other run."""
        run.resume_config()  # refuses a run that cannot resume
        run.set_identity(dataclasses.replace(run.identity(), queued_at=time.time(), resume=True))
        self._notify()

    def cancel(self, run: RunDir) -> None:
        """Take a waiting run out of the queue: a new run is deleted, a resume goes back to where it stopped.
        ValueError when the run is not waiting in the queue."""
        if run.status() != QUEUED:
            raise ValueError(f"run: {run.name} is not waiting in the queue")
        identity = run.identity()
        if identity.resume:
            run.set_identity(dataclasses.replace(identity, queued_at=None, resume=False))
        else:
            run.delete()

    def stop(self, run: RunDir) -> bool:
        """Ask the run to stop after its current step; False when this process is not training it."""
        job = self.current
        if job is None or job.run != run or job.finished.is_set():
            return False
        job.stop_flag.set()
        return True

    def waiting(self) -> list[RunDir]:
        """The queued runs, first to train first."""
        queued = [run for run in list_runs(self.root) if run.status() == QUEUED]
        return sorted(queued, key=lambda run: (run.identity().queued_at, run.name))

    def position(self, run: RunDir) -> int | None:
        """1 for the next run to train, None for a run that is not waiting."""
        waiting = self.waiting()
        return waiting.index(run) + 1 if run in waiting else None

    def active(self) -> Job | None:
        """The job training now, if any."""
        job = self.current
        return job if job is not None and not job.finished.is_set() else None

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _work(self) -> None:
        """Train queued runs one after another, for as long as the queue is open."""
        while True:
            with self._wake:
                if self._closed:
                    return
                run = self._next()
                if run is None:
                    self._wake.wait(POLL_S)
                    continue
            self._train(run)

    def _next(self) -> RunDir | None:
        """The next run to train, when the device is free (no run of this folder trains, here or elsewhere)."""
        runs = list_runs(self.root)
        if any(run.status() == RUNNING for run in runs):
            return None
        waiting = self.waiting()
        return waiting[0] if waiting else None

    def _train(self, run: RunDir) -> None:
        """Train one run; a failure is recorded in the run and the queue goes on."""
        identity = run.identity()
        job = Job(run, events=run.events())  # a resumed run's page shows its whole history
        self.current = job
        try:
            train(run.config(), on_event=job.record, stop=job.stop_flag, resume=identity.resume,
                  probes=identity.probes, budget=identity.budget)
        except Exception as error:  # recorded by the session as an Error event and in results.json
            if not any(isinstance(e, (Done, Error)) for e in job.events):
                job.record(Error(str(error) if isinstance(error, ValueError) else f"training failed: {error!r}"))
        finally:
            job.finished.set()


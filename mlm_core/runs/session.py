"""One training session on a run folder: checks and claims it, logs events, records the outcome, releases it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

from mlm_core.config import TrainConfig
from mlm_core.events import Error, Event, EventLog, Status, Step
from mlm_core.runs.lock import RunLock
from mlm_core.runs.records import QUEUED, RESUMABLE, RUNNING, RunResults
from mlm_core.runs.run_dir import RunBusy, RunDir
from mlm_core.system import settings
from mlm_core.system.atomic_files import remove_partial


def is_main_process() -> bool:
    """Whether this process writes the run's files (always, outside a multi-process `accelerate launch`)."""
    return int(os.environ.get("RANK", "0")) == 0


class TrainingSession:
    """Owns a run folder for the length of one `train` call; only the main process writes to it.

    Entering it raises RunBusy while a live process trains the folder, and ValueError in plain words when the folder
    may not take this run (not empty for a new run, nothing to resume, or settings a resume must keep changed).
    """

    def __init__(self, config: TrainConfig, resume: bool, on_event: Callable[[Event], None] | None):
        self.config, self.resume, self.on_event = config, resume, on_event
        self.run = RunDir(config.output_dir)
        self.main = is_main_process()
        self.lock: RunLock | None = None
        self.log: EventLog | None = None
        self.new_folder = False  # this call made the run: if it never takes a step, it leaves nothing behind
        self.existed = True
        self.trained = False  # a step was taken

    def __enter__(self) -> TrainingSession:
        if self.main:
            self._check()
            self.existed, self.new_folder = self.run.path.exists(), not self.run.holds_files()
            self.lock = self.run.claim(self.config, self.resume)
            if self.resume:
                remove_partial(self.run.path)  # our own half-written files only, under our lock
            self.log = self.run.event_log()
        return self

    def _check(self) -> None:
        """Before anything is written: may this process train this folder?"""
        status = self.run.status() if self.run.is_run() else None
        if status == RUNNING:
            raise RunBusy(
                f"run {self.run.name} is already training ({self.run.lock().describe()}); wait for it or stop it first"
            )
        if not self.resume:
            self.run.check_new()
        elif status is None:
            raise ValueError(f"output_dir: {self.run.name} holds no run to resume")
        elif status not in RESUMABLE and not (status == QUEUED and self.run.identity().resume):
            raise ValueError(
                f"output_dir: the run {self.run.name} is {status}; only a stopped or interrupted run can resume"
            )
        else:
            self.run.check_same_run(self.config)

    def emit(self, event: Event) -> None:
        """Record an event in events.jsonl and hand it to the listener; another process of a launch only says what it
        is doing (its status lines: which share of the data it holds), and writes nothing."""
        if not self.main:
            if isinstance(event, Status) and self.on_event is not None:
                self.on_event(event)
            return
        self.trained = self.trained or isinstance(event, Step)
        if self.log is not None:
            self.log.write(event)
        if self.on_event is not None:
            self.on_event(event)

    def begin_training(self) -> None:
        """The model and data are loaded: an earlier session's outcome no longer describes the run."""
        if self.main:
            self.run.clear_results()

    def finish(self, results: RunResults) -> None:
        """Record the outcome."""
        if self.main:
            self.run.write_results(results)

    def __exit__(self, kind, error, trace) -> None:
        if self.lock is None:
            return
        try:
            if error is not None:
                self._record_failure(error)
        finally:
            self.lock.release()
            if not self.trained and self.new_folder:
                self._remove_what_we_wrote()

    def _record_failure(self, error: BaseException) -> None:
        """Say why in events.jsonl, and in results.json once the run has trained or was waiting in the queue."""
        message = failure_message(error)
        self.emit(Error(message))
        if self.trained or not (self.resume or self.new_folder):
            self.run.write_results(
                RunResults(status="failed", model=self.config.model, dataset=self.config.dataset, message=message)
            )

    def _remove_what_we_wrote(self) -> None:
        """A new run that never got to train leaves the folder as it found it."""
        if not self.existed:
            shutil.rmtree(self.run.path, ignore_errors=True)
            return
        for child in self.run.path.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def failure_message(error: BaseException) -> str:
    """Why a run failed, in one line: a ValueError's own words; running out of memory (Python's MemoryError,
    torch's allocators) said as such; anything else as its repr."""
    if isinstance(error, ValueError):
        return str(error)
    if (
        isinstance(error, MemoryError)
        or "OutOfMemoryError" in type(error).__name__
        or "can't allocate memory" in str(error)
    ):
        return (
            "batch_size: training ran out of memory (this run's process may use "
            f"{memory_limit_text()}); use a smaller batch size or block size"
        )
    return f"training failed: {error!r}"


def memory_limit_text() -> str:
    """'at most 1.5 GiB' under a data limit (MLM_STUDIO_RUN_MEMORY_MB), else 'what the machine has free'."""
    limit = settings.current().run_memory_mb
    return f"at most {limit / 1024:.1f} GiB" if limit else "what the machine has free"

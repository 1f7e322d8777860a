"""RunQueue: runs wait in a FIFO (kept on disk, so it survives a restart); one trains at a time, each in a child
process (`python -m mlm_core train-queued RUN`), so that no run's crash or out-of-memory can take the app down.

On ZeroGPU (a queue that is `lent`) the GPU exists only inside calls that a visitor's own request makes, so this queue
trains nothing itself: the run at its head trains in slices, GPU calls its visitor's page makes while it is open
(`followed`), queued again between them (`begin_slice`, `end_slice`); a run nobody follows for `pause_after_s` is
paused."""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from mlm_core.children import child_command, child_environment
from mlm_core.config import TrainConfig
from mlm_core.events import Checkpoint, Error, Started, Status, Step
from mlm_core.runs.index import RunIndex
from mlm_core.runs.records import FAILED, INTERRUPTED, QUEUED, RESUMABLE, RUNNING, STOPPED, RunIdentity, RunResults
from mlm_core.runs.run_dir import RunDir
from mlm_core.system import settings
from mlm_core.system.container_limits import oom_kills

POLL_S = 2.0  # how often a waiting queue looks whether another process still trains
# A lent queue pauses a run its page has not followed for this long: browsers slow a background tab's timers down
# to one tick a minute.
PAUSE_AFTER_S = 150.0
CLOSED_PAGE = (
    "its page was closed (on ZeroGPU a run trains in GPU calls its page makes while it is open); resume it from Runs"
)
WATCH_S = 0.2  # how often the worker looks at its child
PROCESS_LOG = "process.log"  # the child's own output (a traceback, if Python itself failed)


@dataclass
class Job:
    """The run this queue trains now in a child process, and its stop flag."""

    run: RunDir
    stop_flag: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    process: subprocess.Popen | None = None

    @property
    def stopping(self) -> bool:
        """Stop was asked and the run has not ended yet."""
        return self.stop_flag.is_set() and not self.finished.is_set()


class RunQueue:
    """The runs of one runs folder waiting to train, in the order they were submitted; one trains at a time."""

    def __init__(
        self, root: Path, lent: bool = False, pause_after_s: float = PAUSE_AFTER_S, index: RunIndex | None = None
    ):
        """`lent`: on ZeroGPU, where runs train in their visitors' GPU calls (see the module's docstring); `index`:
        the runs folder's, shared with the app (by default one of its own)."""
        self.root, self.lent, self.pause_after_s = root, lent, pause_after_s
        self.index = index or RunIndex(root)
        self._followed: dict[RunDir, float] = {}  # a lent queue's runs: when their page last asked for a slice
        self._opened = time.monotonic()  # after a restart, the pages of queued runs have that long to come back
        self.slicing: RunDir | None = None  # a lent queue's run whose slice is under way (`begin_slice`)
        self._wake = threading.Condition()
        self._closed = False
        self._worker: threading.Thread | None = None
        self._picking = threading.Lock()  # taking the next run and cancelling a waiting one exclude each other
        self.current: Job | None = None

    def start(self) -> RunQueue:
        """Start the worker thread (runs queued before a restart start training again)."""
        self._worker = threading.Thread(target=self._work, name="mlm-queue", daemon=True)
        self._worker.start()
        return self

    def close(self, timeout: float | None = None) -> None:
        """Stop the running run (its child ends after its current step, or is killed past the grace period) and the
        worker."""
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
        self.index.changed(run)
        self.followed(run)
        self._notify()
        return run

    def resume(self, run: RunDir, wait_s: float = 10.0) -> None:
        """Queue a stopped or interrupted run to continue from its checkpoint. A run's results come a moment before
        its process ends, and this queue then records that end: it waits up to `wait_s` (seconds) for that first.
        ValueError in plain words for any other run, or one still ending."""
        job = self.active()
        if job is not None and job.run == run and run.status() in RESUMABLE and not job.finished.wait(wait_s):
            raise ValueError(f"run: {run.name} is still stopping; resume it in a moment")
        run.resume_config()  # refuses a run that cannot resume
        run.clear_stop()
        run.set_identity(dataclasses.replace(run.identity(), queued_at=time.time(), resume=True))
        self.index.changed(run)
        self.followed(run)
        self._notify()

    def followed(self, run: RunDir) -> None:
        """A lent queue: the run's page is open and asks for its next slice (it is not paused yet)."""
        self._followed[run] = time.monotonic()

    def begin_slice(self, run: RunDir) -> bool:
        """A lent queue: whether `run` may train a slice now (its turn has come and no other slice is under way). From
        here until `end_slice` it counts as training, even before its GPU call starts: Stop asks it to stop, and
        cancel, delete and pause refuse."""
        with self._picking:
            if self.slicing is not None or self.next_run() != run:
                return False
            self.slicing = run
            self._followed[run] = time.monotonic()
            return True

    def end_slice(self, run: RunDir, queued_at: float | None, steps_left: bool) -> None:
        """A lent queue: the slice of `run` ended. With `steps_left` and no Stop asked, the run waits for its next
        slice in the place it had (`queued_at`)."""
        with self._picking:
            self.slicing = None
            if not run.is_run():
                return
            if steps_left and not run.stop_asked():
                run.set_identity(dataclasses.replace(run.identity(), queued_at=queued_at or time.time(), resume=True))
                self._followed[run] = time.monotonic()
            run.clear_stop()
            self.index.changed(run)

    def pause(self, run: RunDir, why: str) -> bool:
        """A lent queue: take a run that waits for a slice, or whose slice was cut short, out of the queue, resumable
        (stopped at its last checkpoint), saying `why` in its events and results; whether it did (not for a run
        whose slice is under way, nor one that failed, completed or is gone)."""
        with self._picking:
            if self.slicing == run or not run.is_run() or run.status() not in {QUEUED, INTERRUPTED}:
                return False
            config, (_, saved) = run.config(), attempt_progress(run)
            run.event_log().write(Status(f"Paused: {why}."))
            run.write_results(
                dataclasses.replace(
                    run.results() or RunResults(status=STOPPED, model=config.model, dataset=config.dataset),
                    status=STOPPED,
                    steps=saved,
                    message=f"paused: {why}",
                )
            )
            run.clear_stop()
            run.set_identity(dataclasses.replace(run.identity(), queued_at=None, resume=False))
            self._followed.pop(run, None)
            self.index.changed(run)
            return True

    def cancel(self, run: RunDir) -> None:
        """Take a waiting run out of the queue: a new run is deleted, a resume goes back to where it stopped.
        ValueError when the run is not waiting in the queue (or its turn has just come: stop it instead)."""
        with self._picking:
            if run.status() != QUEUED or self._training(run):
                raise ValueError(f"run: {run.name} is not waiting in the queue")
            identity = run.identity()
            if identity.resume:
                run.set_identity(dataclasses.replace(identity, queued_at=None, resume=False))
            else:
                run.delete()
            self.index.changed(run)

    def stop(self, run: RunDir) -> bool:
        """Ask the run to stop after its current step (also while its process starts; a lent queue's run in its GPU
        call); False when this queue is not training it."""
        with self._picking:
            if self.lent and (run.status() == RUNNING or self.slicing == run):
                run.ask_stop()
                return True
            if not self._training(run):
                return False
            self.current.stop_flag.set()
            return True

    def stopping(self, run: RunDir) -> bool:
        """Stop was asked of the training `run` and it has not ended yet."""
        if self.lent:
            return run.stop_asked() and (run.status() == RUNNING or self.slicing == run)
        job = self.current
        return job is not None and job.run == run and job.stopping

    def _training(self, run: RunDir) -> bool:
        """Whether this queue's job (a lent queue's slice) is `run` and has not ended."""
        if self.slicing is not None:
            return self.slicing == run
        job = self.current
        return job is not None and job.run == run and not job.finished.is_set()

    def waiting(self) -> list[RunDir]:
        """The queued runs, first to train first."""
        return self.index.waiting()

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
        """Train queued runs one after another, for as long as the queue is open; nothing that happens to one run
        stops the worker."""
        while True:
            if self.index.waiting() and not self.lent:
                self.index.refresh()  # before a run starts: one another process began since counts
            else:
                self.index.refresh_if_due()  # what other processes did to the runs folder
            with self._wake:
                if self._closed:
                    return
                with self._picking:
                    run = self.next_run()
                    if run is not None and not self.lent:
                        self.current = Job(run)
                if run is None or self.lent:
                    if run is not None and self._unfollowed(run):
                        self.pause(run, CLOSED_PAGE)
                    self._wake.wait(POLL_S)
                    continue
            try:
                self._train(self.current)
            except Exception as error:  # a bug must not leave the queue without a worker: say it, go on
                print(f"queue: {run.name}: {error!r}", file=sys.stderr)

    def _unfollowed(self, run: RunDir) -> bool:
        """A lent queue: no page has asked for the run's next slice for `pause_after_s`."""
        return time.monotonic() - self._followed.get(run, self._opened) > self.pause_after_s

    def next_run(self) -> RunDir | None:
        """The next run to train, when the device is free (no run of this folder trains, here or elsewhere)."""
        if self.index.running() is not None:
            return None
        waiting = self.waiting()
        return waiting[0] if waiting else None

    def _train(self, job: Job) -> None:
        """Train the job's run in a child process and watch it; a death the child could not record is recorded
        here."""
        run = job.run
        started, kills_before = time.time(), oom_kills()
        try:
            with (run.path / PROCESS_LOG).open("ab") as log:
                job.process = subprocess.Popen(
                    child_command("train-queued", str(run.path.resolve())),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=child_environment(),
                    start_new_session=True,
                )  # a Ctrl-C in the app's terminal reaches the app, which stops the run
            _watch(job)
            record_death(run, job.process.returncode, started, oom_kills() > kills_before, job.stop_flag.is_set())
        except Exception as error:  # the queue goes on, whatever happened to this run
            record_death(run, None, started, False, False, f"the training process could not run: {error!r}")
        finally:
            self.index.changed(run)
            job.finished.set()


def _watch(job: Job) -> None:
    """Wait for the child; Stop sends it SIGTERM (it stops after its step, with a checkpoint), SIGKILL past the grace
    period."""
    process, asked = job.process, None
    while process.poll() is None:
        if job.stop_flag.is_set():
            if asked is None:
                asked = time.monotonic()
                process.send_signal(signal.SIGTERM)
            elif time.monotonic() - asked > settings.current().stop_grace_s:  # after Stop
                process.kill()
        time.sleep(WATCH_S)


def attempt_progress(run: RunDir) -> tuple[int, int]:
    """(the step the run's last attempt reached, the step of the checkpoint a resume would load, 0 for none): the
    log holds every attempt, so its highest step may be an earlier attempt's."""
    events = run.events()
    starts = [i for i, e in enumerate(events) if isinstance(e, Started)]
    attempt = events[starts[-1] :] if starts else events
    first = attempt[0].resumed_from_step if starts else 0
    steps = max((e.step for e in attempt if isinstance(e, Step)), default=first)
    saved = max((e.step for e in events if isinstance(e, Checkpoint)), default=0) if run.checkpoint() else 0
    return steps, saved


def record_death(
    run: RunDir,
    returncode: int | None,
    started: float,
    out_of_memory: bool,
    stop_asked: bool,
    reason: str | None = None,
) -> None:
    """If the child ended without recording an outcome (killed, crashed in Python itself, never started), say why
    in the run's events and results: `stopped` when Stop was asked, `interrupted` (it can resume) when it was
    killed, `failed` otherwise. Nothing for a run deleted meanwhile."""
    results = run.results_path
    recorded = results.is_file() and results.stat().st_mtime >= started and run.status() != QUEUED
    if returncode == 0 or recorded or not run.is_run():
        return
    steps, saved = attempt_progress(run)
    if reason is None and returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        cause = "the system ran out of memory" if out_of_memory else f"it received {name}"
        resume = (
            f"resume continues from its checkpoint at step {saved:,}"
            if saved
            else "it saved no checkpoint, so resume starts over"
        )
        reason = f"the training process was killed at step {steps:,} ({cause}); {resume}"
    elif reason is None:
        tail = _last_line(run.path / PROCESS_LOG)
        reason = f"the training process ended with exit code {returncode} at step {steps:,}" + (
            f": {tail}" if tail else ""
        )
    status = INTERRUPTED if returncode is not None and returncode < 0 else FAILED
    if stop_asked:
        status, reason = STOPPED, f"stopped at step {steps:,} before it could save one"
    config = run.config()
    run.event_log().write(Error(reason))
    run.write_results(
        RunResults(status=status, model=config.model, dataset=config.dataset, steps=steps, message=reason)
    )
    if run.identity().queued_at is not None:  # it never got to claim the run: take it out of the queue
        run.set_identity(dataclasses.replace(run.identity(), queued_at=None, resume=False))


def _last_line(path: Path) -> str:
    """The last non-empty line of a log, at most 300 characters."""
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1][-300:] if lines else ""

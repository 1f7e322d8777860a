"""The runs folder the app serves, made once at launch: its queue (one run trains at a time), its runs, their events
read as they grow."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from mlm_core.config import TrainConfig
from mlm_core.data.store_cache import file_digest
from mlm_core.events import Event, Step, parse_events
from mlm_core.models.loading import forget_models
from mlm_core.queue import RunQueue
from mlm_core.runs.export import push_run, zip_run
from mlm_core.runs.index import RunIndex
from mlm_core.runs.records import (
    COMPLETED,
    FAILED,
    INTERRUPTED,
    QUEUED,
    RUN_PREFIX,
    RUNNING,
    STOPPED,
    Budget,
    RunIdentity,
    RunResults,
    runs_root,
)
from mlm_core.runs.retention import Retention, expired
from mlm_core.runs.run_dir import RunDir, list_runs, recover_runs, run_in
from mlm_core.service import history
from mlm_core.system import settings

# What the page reads of a run, as the engine names it.
__all__ = [
    "COMPLETED",
    "FAILED",
    "INTERRUPTED",
    "QUEUED",
    "RUN_PREFIX",
    "RUNNING",
    "STOPPED",
    "Retention",
    "Budget",
    "RunDir",
    "RunIdentity",
    "RunResults",
    "Workspace",
    "held_out_difference",
    "list_runs",
    "push_run",
    "runs_root",
    "zip_run",
]

# What a run's held-out measurement depends on (its sample is drawn with HELD_OUT_SEED, so not on the seed): what
# differs, in words, for each group of settings.
HELD_OUT_INPUTS = (
    ("other data", ("dataset", "slice", "text_column")),
    ("other tokens", ("model", "add_words")),
    ("other blocks", ("block_size", "eval_fraction")),
    ("other hidden words", ("mlm_probability", "whole_word_masking")),
)

CANCELLED, STOPPING = "cancelled", "stopping"
SWEEP_S = 600.0  # how often public mode's retention looks for expired runs
EVENT_CACHE_RUNS = 16  # runs whose parsed events are kept (the ones visitors watch or compare)


def held_out_difference(a: TrainConfig, b: TrainConfig) -> str | None:
    """Why two runs' perplexities do not compare ('other data', 'other tokens', ... joined by ', '): their held-out
    text, tokens or hidden words differ; None when both are measured on the same held-out tokens with the same
    masks. Two uploads are the same data when their bytes are."""
    differs = [
        words
        for words, names in HELD_OUT_INPUTS
        if any(getattr(a, name) != getattr(b, name) for name in names)
        or (words == "other data" and not _same_file(a.dataset_file, b.dataset_file))
    ]
    return ", ".join(differs) or None


def _same_file(a: str | None, b: str | None) -> bool:
    """Whether two uploads hold the same bytes (a missing file is only the same as itself)."""
    if a == b or not a or not b:
        return a == b
    try:
        return file_digest(Path(a)) == file_digest(Path(b))
    except OSError:
        return False


@dataclass
class Workspace:
    """What every visitor's handlers share: one runs folder, one queue (one run trains at a time)."""

    root: Path
    queue: RunQueue
    retention: Retention = field(default_factory=Retention)  # public mode's: visitors' finished runs expire
    _events: OrderedDict[Path, EventTail] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def open(cls, root: Path, retention: Retention | None = None) -> Workspace:
        """Recover the runs folder after a crash, then start the queue (runs queued before a restart resume); with a
        `retention`, sweep expired runs away now and every SWEEP_S seconds."""
        root.mkdir(parents=True, exist_ok=True)
        recover_runs(root)
        index = RunIndex(root)
        studio = cls(root=root, queue=RunQueue(root, lent=settings.current().zero_gpu, index=index).start())
        if retention is not None and retention != Retention():
            studio.retention = retention
            threading.Thread(target=studio._sweep_now_and_then, name="mlm-retention", daemon=True).start()
        return studio

    def close(self) -> None:
        """Stop training, the queue's worker and the sweeps."""
        self._closed.set()
        self.queue.close(timeout=30)

    def sweep(self, now: float | None = None) -> list[str]:
        """Delete the runs `retention` lets expire (`retention.expired`), each said in the log; their names."""
        deleted = []
        for run, why in expired(self.runs(), self.retention, now):
            try:
                self.delete(run)
            except (ValueError, OSError):  # it started training again meanwhile, or is half gone: next sweep
                continue
            print(f"retention: deleted run {run.name}: {why}", file=sys.stderr)
            deleted.append(run.name)
        return deleted

    def _sweep_now_and_then(self) -> None:
        """`sweep` at start and every SWEEP_S seconds until `close`; a failed sweep is said and the next one tried."""
        while not self._closed.is_set():
            try:
                self.sweep()
            except Exception as error:  # noqa: BLE001 - retention must not end: say it, try again later
                print(f"retention: the sweep failed: {error!r}", file=sys.stderr)
            self._closed.wait(SWEEP_S)

    def run(self, name: object) -> RunDir:
        """The run called `name`; ValueError for a missing run or a name that is not one."""
        return run_in(self.root, name)

    @property
    def index(self) -> RunIndex:
        """The runs folder's index (the queue's)."""
        return self.queue.index

    def runs(self, limit: int | None = None) -> list[RunDir]:
        """Every run (the `limit` newest), newest first."""
        self.index.refresh_if_due()
        return self.index.runs(limit)

    def active_runs(self) -> list[RunDir]:
        """The runs waiting or training, newest first."""
        return self.index.active()

    def running(self) -> RunDir | None:
        """The run training now, in this process or another."""
        job = self.queue.active()
        if job is not None:
            return job.run
        return self.index.running()

    def stop(self, run: RunDir) -> str:
        """Ask a training run to stop after its current step, or take a waiting one out of the queue; ValueError in
        plain words when it neither waits nor trains, or another process trains it."""
        if self.queue.stop(run):  # also a run whose child process is starting (still queued on disk)
            return STOPPING
        status = run.status()
        if status == QUEUED:
            try:
                self.queue.cancel(run)
            except ValueError:  # its turn came meanwhile
                if self.queue.stop(run):
                    return STOPPING
                raise
            return CANCELLED
        if status != RUNNING:
            raise ValueError(f"run: {run.name} is {status}, so there is nothing to stop")
        raise ValueError(f"run: {run.name} is trained by another process; stop it there")

    def delete(self, run: RunDir) -> None:
        """Delete a run, and drop its events and its model from every cache at once; ValueError while it trains (on
        ZeroGPU, from the moment its slice is asked for)."""
        if self.queue.slicing == run:
            raise ValueError(f"run: {run.name} is training; stop it before deleting it")
        run.delete()
        self.index.changed(run)
        forget_models(run.path)
        with self._lock:
            self._events.pop(run.path, None)

    def stop_all(self, runs: list[RunDir]) -> int:
        """Stop the training one of `runs` and take the waiting ones out of the queue; how many it acted on."""
        acted = 0
        for run in runs:
            if run.status() in {QUEUED, RUNNING}:
                with contextlib.suppress(ValueError):  # ended meanwhile, or trained by another process
                    self.stop(run)
                    acted += 1
        return acted

    def events(self, run: RunDir) -> list[Event]:
        """The run's events from its events.jsonl; a growing file is read from where the last call stopped."""
        try:
            size = run.events_path.stat().st_size
        except OSError:
            return []
        with self._lock:
            cached = self._events.get(run.path)
            if cached is None or cached.offset > size:  # new, or rewritten (a deleted run's name reused)
                cached = self._events[run.path] = EventTail()
            self._events.move_to_end(run.path)
            while len(self._events) > EVENT_CACHE_RUNS:
                self._events.popitem(last=False)
            return cached.read(run.events_path, size)

    def shown_events(self, run: RunDir) -> list[Event]:
        """The run's events as the dashboard draws them (`history.thinned`): their size does not grow with the run;
        made once per new event, whoever watches."""
        events = self.events(run)
        with self._lock:
            cached = self._events.get(run.path)
            return cached.thinned() if cached is not None and cached.events is events else history.thinned(events)

    def eta_s(self, run: RunDir) -> float | None:
        """Seconds until a training run ends, at its recent pace, counting down from its last step (None before its
        first step)."""
        step = next((e for e in reversed(self.events(run)) if isinstance(e, Step)), None)
        if step is None or step.eta_s != step.eta_s:
            return None
        return max(0.0, step.eta_s - (time.time() - step.time))


@dataclass
class EventTail:
    """The events of one events.jsonl read so far, and where reading stopped (after the last complete line)."""

    offset: int = 0
    events: list[Event] = field(default_factory=list)
    _thinned: tuple[int, list[Event]] = (-1, [])  # (how many events it was made of, `history.thinned` of them)

    def thinned(self) -> list[Event]:
        """`history.thinned(self.events)`, made again only when events were added."""
        if self._thinned[0] != len(self.events):
            self._thinned = (len(self.events), history.thinned(self.events))
        return self._thinned[1]

    def read(self, path: Path, size: int) -> list[Event]:
        """Parse the complete lines added since the last read; the event list (a new list object when it grew)."""
        if size == self.offset:
            return self.events
        with path.open("rb") as file:
            file.seek(self.offset)
            chunk = file.read(size - self.offset)
        complete = chunk[: chunk.rfind(b"\n") + 1]
        if complete:
            self.events = self.events + parse_events(complete.decode("utf-8", errors="replace").splitlines())
            self.offset += len(complete)
        return self.events

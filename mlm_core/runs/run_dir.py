"""RunDir: the one owner of a run folder: its layout, identity, typed results, status, lock and resume settings."""

from __future__ import annotations

import dataclasses
import secrets
import shutil
from pathlib import Path
from typing import Any

from mlm_core.config import TrainConfig
from mlm_core.events import Event, EventLog, read_events
from mlm_core.runs import checkpoint as ckpt
from mlm_core.runs.lock import LockInfo, RunLock, read_lock
from mlm_core.runs.records import (
    COMPLETED,
    INTERRUPTED,
    QUEUED,
    RESUMABLE,
    RUN_NAME,
    RUNNING,
    RunIdentity,
    RunResults,
    check_run_name,
)
from mlm_core.system.atomic_files import link_or_copy, read_json_cached, remove_partial, trim_torn_tail, write_json

# Settings that may change when a run is resumed; any other change would make it a different run.
RESUMABLE_CHANGES = {"epochs", "max_steps", "save_steps", "eval_steps", "output_dir", "report_to"}

_IDENTITY, _EVENTS, _RESULTS = "run.json", "events.jsonl", "results.json"
_STOP_ASKED = "stop-asked"  # Stop, for a run trained in another process than the queue's child (a ZeroGPU call)
# The run's settings: `config.json` is the name transformers reads a model's config from, so that the run folder
# itself loads with `pipeline(...)` / `from_pretrained(...)`; runs made before keep theirs in `config.json`.
_SETTINGS, _OLD_SETTINGS = "run_config.json", "config.json"
_RUN_KEYS = {"model", "dataset", "block_size"}


class RunBusy(ValueError):
    """The run folder is being trained by a live process."""


class RunDir:
    """One run folder. Every other module reads and writes runs through this class."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        """The folder's name: the run's id."""
        return self.path.name

    @property
    def events_path(self) -> Path:
        """events.jsonl: every progress event, one JSON object a line."""
        return self.path / _EVENTS

    @property
    def results_path(self) -> Path:
        """results.json: what the run's last session measured."""
        return self.path / _RESULTS

    @property
    def model_path(self) -> Path:
        """model/: where a completed run saves its fine-tuned model and tokenizer (its files are also linked at the
        top of the run folder, so the folder loads as a model)."""
        return self.path / "model"

    @property
    def settings_path(self) -> Path:
        """run_config.json (config.json in runs made before it): the run's settings."""
        new, old = self.path / _SETTINGS, self.path / _OLD_SETTINGS
        values = None if new.exists() else read_json_cached(old)
        return old if isinstance(values, dict) and _RUN_KEYS <= values.keys() else new

    @property
    def checkpoints_path(self) -> Path:
        """checkpoints/: the resumable state of a run that has not completed."""
        return self.path / "checkpoints"

    @property
    def export_folder(self) -> Path:
        """export/: the run's zip, under a folder with a random name, and nothing else."""
        return self.path / "export"

    @property
    def export_path(self) -> Path:
        """Where the run's zip (model, card, results) is, or will be once made: `export/<random>/<run>.zip`. The
        folder's random name (128 bits) makes a link to the zip unguessable; each version of the run draws a new one."""
        made = sorted(self.export_folder.glob(f"*/{self.name}.zip"))
        return made[0] if made else self.export_folder / secrets.token_hex(16) / f"{self.name}.zip"

    def drop_export(self) -> None:
        """Remove the run's zip (and so its link) when what it holds has changed."""
        shutil.rmtree(self.export_folder, ignore_errors=True)

    def is_run(self) -> bool:
        """Whether the folder holds a run: run settings in its settings file (a model's config.json has others)."""
        values = read_json_cached(self.settings_path)
        return isinstance(values, dict) and _RUN_KEYS <= values.keys()

    def holds_files(self) -> bool:
        """Whether the folder exists and is not empty."""
        return self.path.is_dir() and any(self.path.iterdir())

    def config(self) -> TrainConfig:
        """The run's settings; ValueError in plain words if the folder holds no run or its settings are not valid."""

        def parse(values: object) -> TrainConfig:
            if not isinstance(values, dict):
                raise ValueError(f"run: {self.name} holds no run")
            return TrainConfig.from_dict({**values, "output_dir": str(self.path)})

        return read_json_cached(self.settings_path, parse, "config")

    def identity(self) -> RunIdentity:
        """Label, owner, creation time and queue place (defaults for runs made before run.json existed)."""
        identity = read_json_cached(self.path / _IDENTITY, _identity, "identity")
        if identity is None:
            created = self.settings_path.stat().st_mtime if self.settings_path.exists() else 0.0
            return RunIdentity(label=self.name, created=created)
        return identity

    def set_identity(self, identity: RunIdentity) -> None:
        """Write run.json atomically."""
        write_json(self.path / _IDENTITY, identity.to_dict())

    def results(self) -> RunResults | None:
        """The outcome of the run's last training session, or None while it has none."""
        return read_json_cached(self.results_path, _results, "results")

    def write_results(self, results: RunResults) -> None:
        """Write results.json atomically."""
        write_json(self.results_path, results.to_dict())

    def clear_results(self) -> None:
        """Forget the outcome of an earlier session (a session that dies from here on reads as interrupted)."""
        self.results_path.unlink(missing_ok=True)

    def events(self) -> list[Event]:
        """Every complete event the run has logged."""
        return read_events(self.events_path)

    def event_log(self) -> EventLog:
        """The appender of events.jsonl."""
        return EventLog(self.events_path)

    def ask_stop(self) -> None:
        """Ask the process training this run in a slice (`train_slice`) to stop after its current step."""
        (self.path / _STOP_ASKED).touch()

    def stop_asked(self) -> bool:
        """Whether Stop was asked of the run's slice (`ask_stop`) and not yet answered (`clear_stop`)."""
        return (self.path / _STOP_ASKED).exists()

    def clear_stop(self) -> None:
        """Forget a Stop answered: the run stopped, or is queued again."""
        (self.path / _STOP_ASKED).unlink(missing_ok=True)

    def lock(self) -> LockInfo | None:
        """The training lock, if a process took it and has not released it."""
        return read_lock(self.path)

    def status(self) -> str:
        """queued, running, stopped, interrupted, completed or failed."""
        lock = self.lock()
        if lock is not None and lock.live:
            return RUNNING
        if self.identity().queued_at is not None:
            return QUEUED
        results = self.results()
        return results.status if results is not None else INTERRUPTED  # its trainer died before writing them

    def checkpoint(self) -> Path | None:
        """The newest complete checkpoint."""
        return ckpt.latest_checkpoint(self.checkpoints_path)

    def model_dir(self) -> Path | None:
        """The saved fine-tuned model of a completed run."""
        return self.model_path if self.status() == COMPLETED and self.model_path.is_dir() else None

    def save_model(self, model, tokenizer) -> None:
        """Save the fine-tuned model and tokenizer into model/ (atomically), then link each of its files at the top
        of the run folder (replacing any there, each in one rename): `pipeline("fill-mask", model=RUN_FOLDER)`
        then loads the run. A run made before run_config.json keeps its settings in config.json, so it is left
        without the links."""
        ckpt.save_model(self.model_path, model, tokenizer)
        if self.settings_path.name == _OLD_SETTINGS:
            return
        for file in self.model_path.iterdir():
            if file.is_file():
                link_or_copy(file, self.path / file.name)

    def saved_model(self) -> Path:
        """The model folder to load: a completed run's saved model, else its newest checkpoint (the weights where a
        stopped or interrupted run stopped, or a training run's latest); ValueError in plain words when it has
        neither."""
        folder = self.model_dir() or self.checkpoint()
        if folder is None:
            raise ValueError(f"model: run {self.name} has not completed ({self.status()}), so it has no saved model")
        return folder

    def resumable(self) -> bool:
        """Whether training can continue (from its checkpoint, or from the start when none was saved)."""
        return self.status() in RESUMABLE

    def resume_config(self, **changes: Any) -> TrainConfig:
        """The saved settings, with the few that may change on resume changed; ValueError in plain words when the run
        cannot resume, a change is not valid, or it touches a setting a resume must keep."""
        if not self.resumable():
            raise ValueError(f"run: {self.name} is {self.status()}; only a stopped or interrupted run can resume")
        config = self.config().replace(**changes)
        self.check_same_run(config)
        return config

    def check_same_run(self, config: TrainConfig) -> None:
        """ValueError naming the first setting that differs from the run's, among those a resume must keep."""
        saved = self.config()
        for name, value in config.to_dict().items():
            if name not in RESUMABLE_CHANGES and getattr(saved, name) != value:
                raise ValueError(
                    f"{name}: the run {self.name} was started with {getattr(saved, name)!r}; "
                    "resume it with the same value"
                )

    def create(self, config: TrainConfig, identity: RunIdentity) -> None:
        """Make the folder of a new run (settings and identity; an uploaded file is copied in, so the run keeps its
        data however long it waits); ValueError if the folder holds anything already, a queued run included."""
        try:
            self.path.mkdir(parents=True)  # atomic: of two new runs given one folder, only one makes it
        except FileExistsError:
            if self.holds_files():
                self.check_new()  # names what the folder holds
                raise ValueError(
                    f"output_dir: {self.name} holds a run waiting in the queue; choose another folder"
                ) from None
        if config.dataset_file:
            kept = self.path / "data" / Path(config.dataset_file).name
            kept.parent.mkdir(exist_ok=True)
            shutil.copyfile(config.dataset_file, kept)
            config = config.replace(dataset_file=str(kept))
        write_json(self.path / _SETTINGS, config.replace(output_dir=str(self.path)).to_dict())
        self.set_identity(identity)

    def check_new(self) -> None:
        """A new run may only go into an empty or missing folder, or a run still waiting in the queue; ValueError
        naming `output_dir` otherwise."""
        if not self.holds_files() or self.status() == QUEUED:
            return
        if self.is_run():
            raise ValueError(f"output_dir: {self.name} already holds a run; resume it or choose another folder")
        raise ValueError(f"output_dir: {self.name} holds files but no run; choose an empty or new folder")

    def claim(self, config: TrainConfig, resume: bool) -> RunLock:
        """Take the training lock and record the settings; RunBusy if a live process trains the run, ValueError when
        the folder no longer suits `resume`. An error once the lock is taken is re-raised after its release."""
        lock = RunLock.acquire(
            self.path,
            on_busy=lambda info: RunBusy(
                f"run {self.name} is already training ({info.describe()}); wait for it or stop it first"
            ),
        )
        try:
            self._check_claim(resume)
            identity = self.identity() if (self.path / _IDENTITY).is_file() else RunIdentity(label=self.name)
            write_json(self.settings_path, config.to_dict())
            self.set_identity(dataclasses.replace(identity, queued_at=None, resume=False))
        except BaseException:
            lock.release()
            raise
        return lock

    def _check_claim(self, resume: bool) -> None:
        """Under the lock: the folder still is what the caller checked."""
        results = self.results()
        if not resume:
            if results is not None or self.checkpoint() is not None or self.model_path.exists():
                raise ValueError(f"output_dir: {self.name} already holds a run; resume it or choose another folder")
        elif results is not None and results.status not in RESUMABLE:
            raise ValueError(f"run: {self.name} is {results.status}; only a stopped or interrupted run can resume")

    def delete(self) -> None:
        """Remove the run and everything it saved; ValueError while it trains."""
        if self.status() == RUNNING:
            raise ValueError(f"run: {self.name} is training; stop it before deleting it")
        shutil.rmtree(self.path)

    def set_label(self, label: str) -> None:
        """Rename the run as listed (its folder keeps its name)."""
        self.set_identity(dataclasses.replace(self.identity(), label=label))
        self.drop_export()  # its model card shows the label


def _identity(values: object) -> RunIdentity | None:
    """run.json's identity (None for a file that is missing or holds none)."""
    return RunIdentity.from_dict(values) if isinstance(values, dict) else None


def _results(values: object) -> RunResults | None:
    """results.json's results (None for a file that is missing or holds none)."""
    return RunResults.from_dict(values) if isinstance(values, dict) and "status" in values else None


def run_in(root: Path, name: Any) -> RunDir:
    """The run called `name` under `root`; ValueError for a name that could escape it or a missing run."""
    run = RunDir(root / check_run_name(name))
    if not run.is_run():
        raise ValueError(f"run: there is no run called {name}")
    return run


def list_runs(root: Path) -> list[RunDir]:
    """Every run under `root`, newest first."""
    if not root.is_dir():
        return []
    runs = [RunDir(folder) for folder in root.iterdir() if folder.is_dir() and RUN_NAME.fullmatch(folder.name)]
    runs = [run for run in runs if run.is_run()]
    return sorted(runs, key=lambda run: (run.identity().created, run.name), reverse=True)


def recover_runs(root: Path) -> None:
    """After a crash: finish or remove half-done atomic writes and cut a torn last line off each events.jsonl."""
    if not root.is_dir():
        return
    for run in list_runs(root):
        if run.status() != RUNNING:
            remove_partial(run.path)
            if run.events_path.is_file():
                trim_torn_tail(run.events_path)

"""The runs folder: where runs live (the Space's persistent /data when present), names, and what each run holds."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from . import checkpoint as ckpt
from .config import TrainConfig
from .storage import read_json, remove_partial, trim_torn_tail

PERSISTENT_MOUNT = Path("/data")  # a Space's persistent storage; everything else is wiped on restart
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def runs_root() -> Path:
    """MLM_STUDIO_RUNS if set, else /data/mlm-studio-runs on a Space with persistent storage, else ./runs."""
    if os.environ.get("MLM_STUDIO_RUNS"):
        return Path(os.environ["MLM_STUDIO_RUNS"])
    if PERSISTENT_MOUNT.is_dir() and os.access(PERSISTENT_MOUNT, os.W_OK):
        return PERSISTENT_MOUNT / "mlm-studio-runs"
    return Path("runs")


def run_dir(root: Path, name: str) -> Path:
    """The folder of run `name` under `root`; ValueError for a name that could escape it."""
    if not isinstance(name, str) or not RUN_NAME.match(name) or ".." in name:
        raise ValueError(f"run: {name!r} is not a valid run name (letters, digits, '.', '_' and '-' only)")
    return root / name


def new_run_name(model: str, dataset: str) -> str:
    """A unique, readable name such as 20261123-142501-starter-builtin."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{model.rsplit('/', 1)[-1]}-{dataset.rsplit('/', 1)[-1]}").strip("-")
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug[:40]}"


@dataclass(frozen=True)
class RunInfo:
    """What the app lists about one run folder."""

    name: str
    path: Path
    status: str  # completed, stopped, interrupted (crashed with a checkpoint), failed or new
    model: str
    task: str | None
    base_perplexity: float | None
    final_perplexity: float | None

    @property
    def model_dir(self) -> Path | None:
        """The saved fine-tuned model, for a completed run."""
        folder = self.path / "model"
        return folder if self.status == "completed" and folder.is_dir() else None

    @property
    def resumable(self) -> bool:
        """Whether a checkpoint lets the run continue."""
        return self.status in {"stopped", "interrupted"} and ckpt.latest_checkpoint(self.path) is not None


def list_runs(root: Path) -> list[RunInfo]:
    """Every run under `root`, newest first."""
    if not root.is_dir():
        return []
    runs = [info for folder in root.iterdir() if (info := read_run(folder)) is not None]
    return sorted(runs, key=lambda r: r.name, reverse=True)


def read_run(folder: Path) -> RunInfo | None:
    """A run's state from its files; None if the folder is not a run."""
    config = read_json(folder / "config.json") if folder.is_dir() else None
    if not isinstance(config, dict):
        return None
    results = read_json(folder / "results.json") or {}
    status = results.get("status") or ("interrupted" if ckpt.latest_checkpoint(folder) else "failed")
    return RunInfo(name=folder.name, path=folder, status=status, model=str(config.get("model")),
                   task=results.get("task"), base_perplexity=results.get("base_perplexity"),
                   final_perplexity=results.get("final_perplexity"))


def recover_runs(root: Path) -> None:
    """After a crash: finish or remove half-done atomic writes and cut a torn last line off each events.jsonl."""
    if not root.is_dir():
        return
    remove_partial(root)
    for events in root.glob("*/events.jsonl"):
        trim_torn_tail(events)


def resume_config(root: Path, name: str) -> TrainConfig:
    """The saved settings of a stopped or interrupted run, to continue it; ValueError if it cannot be resumed."""
    folder = run_dir(root, name)
    info = read_run(folder)
    if info is None or not info.resumable:
        raise ValueError(f"run: {name!r} is not a stopped or interrupted run with a checkpoint")
    return TrainConfig.from_dict({**read_json(folder / "config.json"), "output_dir": str(folder)})

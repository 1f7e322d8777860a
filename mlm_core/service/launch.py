"""Preview, check, start and train a run: what the Train tab's buttons and the CLI call, the same loading functions as
the run. `preview` runs in a child process (the app's), `preview_here` in this one (the CLI's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from mlm_core.children import EXIT_STOPPED, end_with_parent, train_queued
from mlm_core.children import preview_in_child as preview
from mlm_core.config import FILE_DATASET, TrainConfig
from mlm_core.data.lm_data import prepare_data
from mlm_core.data.store_cache import default_cache_dir
from mlm_core.data.text_files import FILE_SUFFIXES
from mlm_core.events import Event, Step
from mlm_core.models.loading import default_device, describe_device, load_config, load_tokenizer, max_block_size
from mlm_core.runs.model_sources import STARTER
from mlm_core.runs.records import new_run_name
from mlm_core.runs.run_dir import RunDir
from mlm_core.tasks import detect_task
from mlm_core.training.budget_fit import BudgetFit, fit_to_budget
from mlm_core.training.loop import train
from mlm_core.training.memory_check import check_fits
from mlm_core.training.preflight import Preview
from mlm_core.training.preflight import preview as preview_here
from mlm_core.training.setup import check_names

__all__ = [
    "EXIT_STOPPED",
    "FILE_SUFFIXES",
    "STARTER",
    "BudgetFit",
    "Preview",
    "Slice",
    "check_inputs",
    "describe_device",
    "end_with_parent",
    "fit_to_budget",
    "label_of",
    "new_run",
    "preview",
    "preview_here",
    "train",
    "train_queued",
    "train_slice",
]


def new_run(config: TrainConfig, root: Path) -> TrainConfig:
    """The config of a new run in the runs folder `root` (its folder named after the model, the data and the time);
    ValueError in plain words for a model or dataset name that cannot be one."""
    data = Path(config.dataset_file).stem if config.dataset_file else config.dataset
    folder = root / new_run_name(config.model, data)
    while folder.exists():  # never a folder that holds another run (a queued one has no checkpoint yet)
        folder = root / new_run_name(config.model, data)
    config = config.replace(output_dir=str(folder))
    check_names(config)
    return config


def label_of(config: TrainConfig) -> str:
    """How a new run is listed until its owner renames it: the model and the data, an upload by its file's name
    ('starter on gardening.txt'), a hub dataset by its own."""
    names = {"builtin": "built-in corpus", "builtin-docstrings": "built-in docstrings", FILE_DATASET: "uploaded file"}
    data = (
        Path(config.dataset_file).name
        if config.dataset_file
        else names.get(config.dataset, config.dataset.rsplit("/", 1)[-1])
    )
    return f"{config.model.rsplit('/', 1)[-1]} on {data}"


def check_inputs(config: TrainConfig, on_progress: Callable[[int, int | None], None] | None = None) -> None:
    """Before a run is queued, refuse in the run's own words (those Preview shows) what would make it fail: a model
    that cannot load (a hub model while the hub is unreachable), data that cannot be read or makes fewer than two
    blocks, or a step that cannot fit in memory (ValueError). The data is tokenized into the cache the run then
    reuses, once; `on_progress(documents_read, total_or_None)` follows that (as `prepare_data`'s)."""
    tokenizer, model_config = load_tokenizer(config.model), load_config(config.model)
    task = detect_task(model_config, tokenizer)
    task.check_tokenizer(tokenizer, config.model)
    block_size = min(config.block_size, max_block_size(model_config, tokenizer))
    prepare_data(config, tokenizer, block_size, on_progress=on_progress, cache_dir=default_cache_dir(config.output_dir))
    # The weights stay unloaded in the app's process: the estimate without them refuses only what cannot fit even
    # so; the run checks again with them.
    weightless = SimpleNamespace(config=model_config, parameters=lambda: iter(()))
    check_fits(weightless, config.batch_size, block_size, task.labelled_share(config.mlm_probability), default_device())


@dataclass(frozen=True)
class Slice:
    """What one slice of a run did: the run's status after it (`stopped` while steps are left), the step it reached,
    the seconds a step took in it (None with fewer than two steps), and whether its owner asked it to stop (then it
    stays stopped; otherwise a stopped slice is one whose time or steps ran out, and the next one continues)."""

    status: str
    step: int
    seconds_per_step: float | None
    stop_asked: bool = False


def train_slice(folder: str, steps: int | None = None, seconds: float | None = None) -> Slice:
    """Train the run in `folder` (new, stopped or interrupted) from its checkpoint until `steps` more steps are done
    or `seconds` (wall-clock, from this call) have passed, whichever comes first, or its owner asks it to stop
    (`RunDir.ask_stop`); then stop it after that step, with a checkpoint the next slice resumes from. It takes one
    step at least. A run trained in slices ends at the weights of an uninterrupted one, as a stopped and resumed run
    does. On ZeroGPU, one GPU call. ValueError in plain words for a run that cannot train (as `train`'s)."""
    run = RunDir(folder)
    identity = run.identity()
    began, stop, seen = time.monotonic(), threading.Event(), []

    def on_step(event: Event) -> None:
        if isinstance(event, Step):
            seen.append(event)
            out_of_steps = steps is not None and len(seen) >= steps
            out_of_time = seconds is not None and time.monotonic() - began >= seconds
            if out_of_steps or out_of_time or run.stop_asked():
                stop.set()

    results = train(
        run.config(),
        on_event=on_step,
        stop=stop,
        resume=identity.resume or run.checkpoint() is not None,
        probes=identity.probes,
        budget=identity.budget,
    )
    pace = (seen[-1].time - seen[0].time) / (len(seen) - 1) if len(seen) > 1 else None
    return Slice(results.status, results.steps, pace, run.stop_asked())

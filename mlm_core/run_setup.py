"""Everything a run needs before its first step: checks on its folder, model, tokenizer and data."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checkpoint as ckpt
from .config import TrainConfig
from .data import LMData, prepare_data, process_shard
from .datacache import default_cache_dir
from .events import Status
from .modeling import MLM, load_config, load_model, load_tokenizer, max_block_size, task_of
from .storage import read_json, remove_partial, write_json

CONFIG = "config.json"
# Settings that may change when a run is resumed; any other change would make it a different run.
RESUMABLE_CHANGES = {"epochs", "max_steps", "save_steps", "eval_steps", "output_dir"}


@dataclass
class RunSetup:
    """The loaded pieces of a run."""

    tokenizer: Any
    model: Any
    task: str
    data: LMData
    checkpoint: Path | None
    elapsed_before: float


def prepare_run(config: TrainConfig, run_dir: Path, resume: bool, emit: Callable,
                stop: threading.Event | None = None) -> RunSetup:
    """Check the run folder, load model and data, then record the config; nothing is written if a check fails."""
    checkpoint = _checkpoint_to_resume(config, run_dir) if resume else _check_new_run(run_dir)
    setup = load_inputs(config, checkpoint, emit, stop)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / CONFIG, config.to_dict())
    return setup


def load_inputs(config: TrainConfig, checkpoint: Path | None, emit: Callable,
                stop: threading.Event | None = None) -> RunSetup:
    """Tokenizer, model (from the checkpoint when resuming) and tokenized data of a run."""
    source = str(checkpoint) if checkpoint else config.model
    emit(Status(f"Loading {'checkpoint ' + checkpoint.name if checkpoint else config.model}…"))
    tokenizer = load_tokenizer(source)
    model_config = load_config(source)
    task = task_of(model_config, tokenizer)
    if task == MLM and tokenizer.mask_token is None:
        raise ValueError(f"model: the tokenizer of {config.model!r} has no mask token")
    block_size = _block_size(config, model_config, tokenizer, emit)
    emit(Status("Preparing data…"))
    data = prepare_data(config, tokenizer, block_size, on_progress=_progress_status(emit), stop=stop,
                        cache_dir=default_cache_dir(config.output_dir), **process_shard())
    emit(Status(f"{data.documents:,} documents, {data.tokens:,} tokens: {len(data.train):,} training blocks and "
                f"{len(data.eval):,} evaluation blocks of {block_size} tokens (column {data.text_column!r})"
                f"{'; prepared earlier, reused' if data.reused else ''}."))
    model = load_model(source, task)
    elapsed = ckpt.load_checkpoint(checkpoint)[1].get("elapsed_s", 0.0) if checkpoint else 0.0
    return RunSetup(tokenizer, model, task, data, checkpoint, elapsed)


def _progress_status(emit: Callable, every_s: float = 5.0) -> Callable[[int, int | None], None]:
    """on_progress for prepare_data: a Status line about every `every_s` seconds, and at the end."""
    last = [0.0]

    def report(done: int, total: int | None) -> None:
        if time.monotonic() - last[0] >= every_s or (total is not None and done >= total):
            last[0] = time.monotonic()
            of = f" of {total:,} ({done / total:.0%})" if total else ""
            emit(Status(f"Tokenizing: {done:,}{of} documents…"))

    return report


def _block_size(config: TrainConfig, model_config, tokenizer, emit: Callable) -> int:
    """The block size, clamped to what the model can read, with a message when clamped."""
    limit = max_block_size(model_config, tokenizer)
    if config.block_size > limit:
        emit(Status(f"block_size {config.block_size} is more than this model reads; using its maximum, {limit}."))
    return min(config.block_size, limit)


def _check_new_run(run_dir: Path) -> None:
    """A new run must not overwrite another."""
    if (run_dir / CONFIG).exists() or ckpt.checkpoint_dirs(run_dir) or (run_dir / "model").exists():
        raise ValueError(f"output_dir: {run_dir} already holds a run; resume it or choose another folder")


def _checkpoint_to_resume(config: TrainConfig, run_dir: Path) -> Path:
    """The newest checkpoint of the run in `run_dir`, after checking the settings match."""
    remove_partial(run_dir)
    saved = read_json(run_dir / CONFIG)
    if saved is None:
        raise ValueError(f"output_dir: {run_dir} holds no run to resume")
    for name, value in config.to_dict().items():
        if name not in RESUMABLE_CHANGES and saved.get(name) != value:
            raise ValueError(f"{name}: the run in {run_dir} was started with {saved.get(name)!r}; "
                             "resume it with the same value")
    checkpoint = ckpt.latest_checkpoint(run_dir)
    if checkpoint is None:
        done = (read_json(run_dir / "results.json") or {}).get("status") == "completed"
        state = "already completed" if done else "has no checkpoint yet"
        raise ValueError(f"output_dir: the run in {run_dir} {state}")
    return checkpoint

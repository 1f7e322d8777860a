"""Everything a run needs before its first step: model, tokenizer and data."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlm_core.config import FILE_DATASET, TrainConfig
from mlm_core.data.lm_data import LMData, detect_text_column, prepare_data, process_shard, sample_texts
from mlm_core.data.sources import open_source
from mlm_core.data.store_cache import default_cache_dir
from mlm_core.data.text_files import check_file
from mlm_core.events import Status
from mlm_core.models.added_words import add_words, split_words
from mlm_core.models.loading import load_config, load_model, load_tokenizer, max_block_size
from mlm_core.runs import checkpoint as ckpt
from mlm_core.runs.model_sources import resolve_source
from mlm_core.system import hub_access
from mlm_core.tasks import Task, detect_task

ADDED_WORDS_SAMPLE = 20_000  # texts (paragraphs) of the run's data whose words are counted for `add_words`
COLUMN_SAMPLE = 1000  # rows that show which column holds the text, as the token store reads them
MIN_HIDDEN = 100  # tokens a run hides for the model to guess, in all its steps, on average: fewer teach it nothing


@dataclass
class RunSetup:
    """The loaded pieces of a run; `elapsed_before`: seconds trained before a resume."""

    tokenizer: Any
    model: Any
    task: Task
    data: LMData
    checkpoint: Path | None
    elapsed_before: float
    added_words: list[str] = field(default_factory=list)  # the text's words made tokens of their own (`add_words`)
    tokens_saved: float | None = None  # share of the text's tokens that adding them saved (on its first texts)


def check_names(config: TrainConfig) -> None:
    """What can be checked before anything loads: the model and data are names this process may use; ValueError in
    plain words when one is refused, missing or (an uploaded file) not usable."""
    resolve_source(config.model)
    if not config.is_builtin_dataset and config.dataset != FILE_DATASET:
        hub_access.check_hub_name(config.dataset, "dataset", "dataset")
    elif config.dataset_file:
        check_file(config.dataset_file)


def check_hides_enough(config: TrainConfig, task: Task, train_blocks: int, block_size: int) -> None:
    """ValueError in plain words when the run's steps would hide fewer than MIN_HIDDEN tokens in all, on average
    (steps x blocks a step x block_size x the labelled share): a few steps on a short text at a small block size
    may hide none at all, train nothing and still end 'completed'."""
    per_step = min(config.batch_size * config.gradient_accumulation, train_blocks)
    steps = config.max_steps or config.epochs * -(-train_blocks // per_step)
    hidden = steps * per_step * block_size * task.labelled_share(config.mlm_probability)
    if hidden < MIN_HIDDEN:
        raise ValueError(
            f"mlm_probability: this run would hide about {hidden:.0f} tokens for the model to guess in all of its "
            f"{steps:,} steps ({per_step:,} blocks of {block_size} tokens a step, {config.mlm_probability:.0%} "
            "hidden), too few to learn anything; add text, or raise epochs, block_size or mlm_probability"
        )


def load_inputs(
    config: TrainConfig, checkpoint: Path | None, emit: Callable, stop: threading.Event | None = None
) -> RunSetup:
    """Tokenizer, model (from the checkpoint when resuming) and tokenized data of a run.

    Raises ValueError in plain words when the model or data cannot be used (as `load_model` and `prepare_data`),
    PreparationStopped when `stop` is set while preparing, RuntimeError when a tokenizer process fails.
    """
    source = checkpoint or config.model
    emit(Status(f"Loading {'checkpoint ' + checkpoint.name if checkpoint else config.model}…"))
    tokenizer = load_tokenizer(source)
    model_config = load_config(source)
    task = detect_task(model_config, tokenizer)
    task.check_tokenizer(tokenizer, config.model)
    block_size = _block_size(config, model_config, tokenizer, emit)
    model, added, saved = None, [], None
    if config.add_words and checkpoint is None and task.inference == "fill-mask":  # a checkpoint has them already
        model = load_model(source, task)
        tokenizer, added, saved = _add_words(config, tokenizer, model, emit)
    emit(Status("Preparing data…"))
    data = prepare_data(
        config,
        tokenizer,
        block_size,
        on_progress=_progress_status(emit),
        stop=stop,
        cache_dir=default_cache_dir(config.output_dir),
        **process_shard(),
    )
    emit(
        Status(
            f"{data.documents:,} documents, {data.tokens:,} tokens: {len(data.train):,} training blocks and "
            f"{len(data.eval):,} evaluation blocks of {block_size} tokens (column {data.text_column!r})"
            f"{'; prepared earlier, reused' if data.reused else ''}."
        )
    )
    check_hides_enough(config, task, len(data.train), block_size)
    model = model or load_model(source, task)
    elapsed = ckpt.load_checkpoint(checkpoint)[1].get("elapsed_s", 0.0) if checkpoint else 0.0
    return RunSetup(tokenizer, model, task, data, checkpoint, elapsed, added, saved)


def _add_words(config: TrainConfig, tokenizer, model, emit: Callable) -> tuple[Any, list[str], float]:
    """The tokenizer and model with up to `config.add_words` frequent split words of the text's first
    ADDED_WORDS_SAMPLE texts as tokens of their own (`models.added_words`), and the share of those texts' tokens
    that this saves."""
    emit(Status("Looking for your words that the model's vocabulary cuts into pieces…"))
    column = config.text_column or detect_text_column(open_source(config).peek(COLUMN_SAMPLE))
    texts = sample_texts(config, column, ADDED_WORDS_SAMPLE)
    before = sum(len(ids) for ids in tokenizer(texts)["input_ids"]) if texts else 0
    tokenizer, added = add_words(tokenizer, model, split_words(texts, tokenizer, config.add_words))
    saved = 1 - sum(len(ids) for ids in tokenizer(texts)["input_ids"]) / before if before else 0.0
    shown = ", ".join(added.words[:8]) + (", …" if len(added.words) > 8 else "")
    emit(
        Status(
            f"Added {len(added.words):,} of your words as tokens of their own{': ' + shown if shown else ''}; "
            f"your text takes {saved:.1%} fewer tokens."
        )
    )
    return tokenizer, added.words, saved


def _progress_status(emit: Callable, every_s: float = 5.0) -> Callable[[int, int | None], None]:
    """on_progress for prepare_data: a Status line about every `every_s` seconds, and at the end."""
    last = [0.0]

    def report(done: int, total: int | None) -> None:
        """A Status line of documents tokenized, when one is due."""
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

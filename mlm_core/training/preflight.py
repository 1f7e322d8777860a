"""Before a run: how many blocks the data makes, one example block as the model will see it, and time and memory
estimated from training steps measured on this device."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mlm_core.config import TrainConfig
from mlm_core.data.lm_data import HELD_OUT_SEED
from mlm_core.data.sources import count_rows
from mlm_core.events import Status
from mlm_core.models.loading import default_device, describe_device
from mlm_core.models.word_fit import measure_fit
from mlm_core.models.words import group_words, word_text
from mlm_core.system.hub_access import is_online
from mlm_core.system.process_memory import peak_rss
from mlm_core.tasks import IGNORE, Task, get_task
from mlm_core.training.batches import Batch, batcher_for
from mlm_core.training.evaluation import FORWARD_COST, eval_every, eval_sample_size
from mlm_core.training.memory_check import check_fits, training_bytes
from mlm_core.training.objective import LMObjective
from mlm_core.training.optimizer import make_optimizer
from mlm_core.training.probes import ProbeSentence, heldout_probes
from mlm_core.training.setup import RunSetup, load_inputs

TIMED_STEPS = 2
FIT_BLOCKS = 64  # training blocks the fit check reads


@dataclass
class Preview:
    """What a run would train on and roughly what it would cost."""

    documents: int  # rows that hold text
    tokens: int
    train_blocks: int
    eval_blocks: int
    block_size: int
    task: Task
    text_column: str
    rows_total: int | None  # rows of the data before the slice, when known
    example: list[tuple[str, str | None]]  # (word with its spaces, "hidden" or None) of the first training block
    probes: list[ProbeSentence]  # held-out sentences with a word hidden, as a run would watch them
    total_steps: int
    seconds_per_step: float
    estimated_seconds: float
    memory_bytes: int
    messages: list[str] = field(default_factory=list)
    records: int = 0  # rows read, those without text included
    pieces_per_word: float = 0.0  # tokens per word of the training text (first FIT_BLOCKS blocks)
    whole_word_share: float = 0.0  # share of its words that are one token
    fit_advice: str | None = None  # what to do when the model does not know the text's script
    device: str = ""  # where the steps were timed, as `describe_device` names it

    def to_dict(self) -> dict:
        """JSON-ready dict (the task by name), as `python -m mlm_core preview --json` prints it."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**values, "task": self.task.name, "probes": [dataclasses.asdict(p) for p in self.probes]}

    @classmethod
    def from_dict(cls, values: dict) -> Preview:
        """Back from `to_dict`; ValueError for an unknown task, KeyError or TypeError for a dict of another shape."""
        return cls(
            **{
                **values,
                "task": get_task(values["task"]),
                "probes": [ProbeSentence(**p) for p in values["probes"]],
                "example": [tuple(pair) for pair in values["example"]],
            }
        )


def preview(config: TrainConfig) -> Preview:
    """Load model and data as a run would, mask one block, and time a few real training steps; ValueError in plain
    words when the model or data cannot be used or a step would not fit in memory."""
    messages: list[str] = []
    setup = load_inputs(config, None, lambda e: messages.append(e.message) if isinstance(e, Status) else None)
    data = setup.data
    masker = batcher_for(
        setup.task, setup.tokenizer, config.mlm_probability, config.whole_word_masking, seed=config.seed
    )
    batch_blocks = data.train[: config.batch_size]
    starts = None if data.train_word_starts is None else data.train_word_starts[: config.batch_size]
    batch = masker(batch_blocks, starts)
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size / config.gradient_accumulation)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    check_fits(
        setup.model,
        config.batch_size,
        data.block_size,
        setup.task.labelled_share(config.mlm_probability),
        default_device(),
    )
    seconds, memory = _measure_steps(setup, config, batch)
    step_seconds = seconds * config.gradient_accumulation
    every = eval_every(config.eval_steps, total_steps)
    sample = eval_sample_size(len(data.eval), total_steps, config.batch_size * config.gradient_accumulation, every)
    eval_seconds = (total_steps // every + 2) * sample * seconds / config.batch_size * FORWARD_COST
    probes = (
        heldout_probes(setup.tokenizer, setup.model.eval(), data, 5, HELD_OUT_SEED)
        if setup.task.inference == "fill-mask"
        else []
    )
    fit = measure_fit(setup.tokenizer, data.train[:FIT_BLOCKS])
    return Preview(
        documents=data.documents,
        records=data.records,
        tokens=data.tokens,
        train_blocks=len(data.train),
        eval_blocks=len(data.eval),
        block_size=data.block_size,
        task=setup.task,
        text_column=data.text_column,
        rows_total=count_rows(config),
        example=example_words(setup.tokenizer, batch.input_ids[0], batch.labels[0]),
        probes=probes,
        total_steps=total_steps,
        seconds_per_step=step_seconds,
        estimated_seconds=total_steps * step_seconds + eval_seconds,
        memory_bytes=memory,
        messages=messages,
        pieces_per_word=round(fit.pieces_per_word, 3),
        whole_word_share=round(fit.whole_share, 4),
        fit_advice=fit.advice(is_online()),
        device=describe_device(),
    )


def example_words(tokenizer, input_ids: torch.Tensor, labels: torch.Tensor) -> list[tuple[str, str | None]]:
    """A block (`input_ids` and `labels` [block]) as the words of its text, each decoded from its whole pieces and
    marked "hidden" when the model must guess (part of) it; a paragraph break ("\n\n") where special tokens part
    two texts of the data (without it, "wall." and "The" of two paragraphs read as "wall.The")."""
    original = torch.where(labels.ne(IGNORE), labels, input_ids).tolist()
    hidden = labels.ne(IGNORE).tolist()
    parting = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}  # <s>, </s>, [CLS], [SEP]...
    words: list[tuple[str, str | None]] = []
    end = None  # the position after the last word
    for word in group_words(tokenizer, original):
        if end is not None and any(original[i] in parting for i in range(end, word[0])):
            words.append(("\n\n", None))
        words.append(
            (word_text(tokenizer, [original[i] for i in word]), "hidden" if any(hidden[i] for i in word) else None)
        )
        end = word[-1] + 1
    return words


def _measure_steps(setup: RunSetup, config: TrainConfig, batch: Batch) -> tuple[float, int]:
    """(seconds per micro-batch step, peak bytes) from real steps on this device, after one warm-up step;
    `batch` is one labelled batch ([batch, block])."""

    device = default_device()
    model = setup.model.to(device)
    objective = LMObjective(model, setup.task, head_only=True).train()
    optimizer = make_optimizer(model, config)
    batch = batch.to(device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_peak_rss()
    timings = []
    for _ in range(1 + TIMED_STEPS):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            summed = objective(batch.input_ids, batch.labels, batch.positions, batch.targets)
        (summed / max(1, batch.count)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - started)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device)
    else:
        memory = peak_rss() or training_bytes(model, *batch.input_ids.shape, labelled_share=1.0)
    model.to("cpu")
    return sorted(timings[1:])[len(timings[1:]) // 2], memory


def _reset_peak_rss() -> None:
    """Restart Linux's record of this process's peak resident memory (a no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass

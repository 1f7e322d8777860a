"""Before a run: how many blocks the data makes, one example block as the model will see it, and time and memory
estimated from training steps measured on this device."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .batches import Masker
from .config import TrainConfig
from .events import Status
from .modeling import MLM, default_device
from .objective import IGNORE, LMObjective
from .run_setup import RunSetup, load_inputs

TIMED_STEPS = 2
ADAM_BYTES_PER_PARAM = 16  # fp32 weights, gradients and AdamW's two moments
EVAL_COST = 1 / 3  # a forward pass costs about a third of forward + backward


@dataclass
class Preview:
    """What a run would train on and roughly what it would cost."""

    documents: int
    tokens: int
    train_blocks: int
    eval_blocks: int
    block_size: int
    task: str
    text_column: str
    example: list[tuple[str, str | None]]  # (token text, "masked" or None) of the first training block
    total_steps: int
    seconds_per_step: float
    estimated_seconds: float
    memory_bytes: int
    messages: list[str] = field(default_factory=list)


def preview(config: TrainConfig) -> Preview:
    """Load model and data as a run would, mask one block, and time a few real training steps."""
    messages: list[str] = []
    setup = load_inputs(config, None, lambda e: messages.append(e.message) if isinstance(e, Status) else None)
    data = setup.data
    masker = Masker(setup.tokenizer, setup.task, config.mlm_probability, config.whole_word_masking, seed=config.seed)
    batch_blocks = data.train[: config.batch_size]
    starts = None if data.train_word_starts is None else data.train_word_starts[: config.batch_size]
    batch = masker(batch_blocks, starts)
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size / config.gradient_accumulation)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    seconds, memory = _measure_steps(setup, config, batch.input_ids, batch.labels)
    step_seconds = seconds * config.gradient_accumulation
    evaluations = (config.epochs if not config.max_steps else 1) + 1
    eval_seconds = evaluations * math.ceil(len(data.eval) / config.batch_size) * seconds * EVAL_COST
    return Preview(documents=data.documents, tokens=data.tokens, train_blocks=len(data.train),
                   eval_blocks=len(data.eval), block_size=data.block_size, task=setup.task,
                   text_column=data.text_column, example=_example(setup, batch.input_ids[0], batch.labels[0]),
                   total_steps=total_steps, seconds_per_step=step_seconds,
                   estimated_seconds=total_steps * step_seconds + eval_seconds, memory_bytes=memory,
                   messages=messages)


def _example(setup: RunSetup, input_ids: torch.Tensor, labels: torch.Tensor) -> list[tuple[str, str | None]]:
    """The block's tokens as text; for MLM, masked positions show the hidden original and are labelled."""
    tokenizer = setup.tokenizer
    pieces = []
    for shown, original in zip(input_ids.tolist(), labels.tolist()):
        if setup.task == MLM and original != IGNORE:
            pieces.append((tokenizer.decode([original]), "masked"))
        else:
            pieces.append((tokenizer.decode([shown]), None))
    return pieces


def _measure_steps(setup: RunSetup, config: TrainConfig, input_ids: torch.Tensor, labels: torch.Tensor,
                   ) -> tuple[float, int]:
    """(seconds per micro-batch step, peak bytes) from real steps on this device, after one warm-up step."""
    from .training import make_optimizer

    device = default_device()
    model = setup.model.to(device)
    objective = LMObjective(model, setup.task, head_only=True).train()
    optimizer = make_optimizer(model, config)
    input_ids, labels = input_ids.to(device), labels.to(device)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_peak_rss()
    timings = []
    for _ in range(1 + TIMED_STEPS):
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            summed, count = objective(input_ids, labels)
        (summed / count.clamp(min=1)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - started)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device)
    else:
        memory = _peak_rss() or _cpu_memory_estimate(model, input_ids)
    model.to("cpu")
    return sorted(timings[1:])[len(timings[1:]) // 2], memory


def _reset_peak_rss() -> None:
    """Restart Linux's record of this process's peak resident memory (a no-op elsewhere)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss() -> int | None:
    """This process's peak resident memory since the last reset, in bytes; None where Linux does not tell."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cpu_memory_estimate(model: torch.nn.Module, input_ids: torch.Tensor) -> int:
    """Weights, gradients and optimizer state, plus activations of one batch (about 34 values per hidden unit)."""
    params = sum(p.numel() for p in model.parameters())
    hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", 768)
    layers = getattr(model.config, "num_hidden_layers", None) or getattr(model.config, "n_layer", 12)
    activations = input_ids.numel() * hidden * layers * 34 * 4
    return params * ADAM_BYTES_PER_PARAM + activations

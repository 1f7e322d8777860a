"""Host work per training step: our loop against a bare loop on ready-made tensors, on a model so small that its
compute is negligible, so what remains is what the loop adds around the model (masking, moving, events, scheduling).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import get_scheduler

from bench import train_speed
from mlm_core.models.loading import default_device
from mlm_core.models.scratch import Shape, init_model
from mlm_core.runs.model_sources import STARTER_DIR
from mlm_core.training.batches import batcher_for, epoch_batches
from mlm_core.training.loop import MAX_GRAD_NORM
from mlm_core.training.objective import LMObjective
from mlm_core.training.optimizer import make_optimizer
from mlm_core.training.setup import load_inputs

TINY = Shape(hidden=16, layers=1, heads=1, intermediate=32, max_length=128)


def tiny_model(work: Path) -> str:
    """A one-layer, 16-unit masked LM on the starter's tokenizer: its step is almost all host work."""
    from transformers import AutoTokenizer

    folder = work / "tiny-host"
    if not folder.is_dir():
        init_model(AutoTokenizer.from_pretrained(STARTER_DIR), TINY, folder, architecture="roberta")
    return str(folder)


def bare(config, steps: int) -> list[float]:
    """Seconds of each step of the plainest loop with the same recipe: batches masked and moved beforehand, then
    forward, backward, clipping, optimizer and schedule steps; the losses read back at the end. ValueError as
    `load_inputs`."""
    setup = load_inputs(config, None, lambda _: None)
    device = default_device()
    objective = LMObjective(setup.model.to(device), setup.task).train()
    optimizer = make_optimizer(objective.model, config)
    schedule = get_scheduler("linear", optimizer, num_warmup_steps=0, num_training_steps=steps + 1)
    masker = batcher_for(setup.task, setup.tokenizer, config.mlm_probability, False, seed=config.seed)
    order = list(epoch_batches(len(setup.data.train), config.batch_size, 0, config.seed))
    batches = [masker(setup.data.train[order[i % len(order)]]).to(device) for i in range(steps + 1)]
    losses, stamps = [], []
    for batch in batches:
        loss = objective(batch.input_ids, batch.labels, batch.positions, batch.targets) / max(1, batch.count)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())
    torch.stack(losses).tolist()
    return [b - a for a, b in zip(stamps, stamps[1:])]


def compare(work: Path, steps: int, batch_size: int = 8, rounds: int = 3) -> dict:
    """Median step seconds of `train()` and of the bare loop, interleaved over `rounds`; their ratio (host
    overhead: 1.0 would be none) as the median of the rounds' ratios, with its range, and the extra
    milliseconds per step. ValueError as `load_inputs`."""
    model = tiny_model(work)
    times: dict[str, list[float]] = {"ours": [], "bare": []}
    for round_ in range(rounds):
        config = replace(train_speed.bench_config(model, steps, batch_size, work / f"host-{round_}"), seed=round_)
        for name in ["ours", "bare"] if round_ % 2 == 0 else ["bare", "ours"]:
            seconds = train_speed.ours(config).seconds if name == "ours" else bare(config, steps)
            times[name].append(statistics.median(seconds))
    ratios = [o / b for o, b in zip(times["ours"], times["bare"])]
    ours_s, bare_s = statistics.median(times["ours"]), statistics.median(times["bare"])
    return {
        "ours_step_ms": ours_s * 1000,
        "bare_step_ms": bare_s * 1000,
        "extra_ms": (ours_s - bare_s) * 1000,
        "ratio": statistics.median(ratios),
        "ratio_range": [min(ratios), max(ratios)],
        "steps": steps,
        "batch_size": batch_size,
        "rounds": rounds,
    }

"""Training throughput and final loss: our loop against the guides' Trainer + DataCollatorForLanguageModeling."""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from mlm_core.config import TrainConfig
from mlm_core.events import Eval, Step
from mlm_core.training import loop
from mlm_core.training.loop import evaluate, train
from mlm_core.training.setup import load_inputs


@dataclass
class Timings:
    """Step intervals in seconds (warm-up step excluded) and the eval loss after the run, for one contender."""

    seconds: list[float]
    eval_loss: float


def bench_config(model: str, steps: int, batch_size: int, work: Path) -> TrainConfig:
    """Hyper-parameters both contenders share: a short run on part of the built-in corpus; ValueError naming a bad
    `steps` or `batch_size`. One evaluation, after the last step: between timed steps it would count as training
    (the cause of the "30% slower" quick benchmark after runs got ten evaluations each)."""
    return TrainConfig(
        model=model,
        dataset="builtin",
        slice="train",
        block_size=128,
        batch_size=batch_size,
        max_steps=steps,
        learning_rate=1e-4,
        weight_decay=0.01,
        warmup_ratio=0.0,
        eval_fraction=0.01,
        eval_steps=steps,
        seed=0,
        output_dir=str(work / "ours"),
    )


@contextlib.contextmanager
def every_step_read_back():
    """Each step's event as soon as its loss is read back, so its time stamp is the step's end on a GPU too (where
    the loop otherwise reads losses back twice a second, in bursts). That costs one wait for the device per step,
    as the Trainer's default NaN check of each step's loss does."""
    saved, loop.REPORT_EVERY_S = loop.REPORT_EVERY_S, 0.0
    try:
        yield
    finally:
        loop.REPORT_EVERY_S = saved


def ours(config: TrainConfig) -> Timings:
    """Our `train()`, timed between its step events; raises as `train`, and AssertionError when an evaluation ran
    between two timed steps (the Trainer contender makes none: its time would count as training)."""
    stamps: list[tuple[type, float]] = []
    with every_step_read_back():
        results = train(
            config,
            on_event=lambda e: stamps.append((type(e), time.perf_counter())) if isinstance(e, (Step, Eval)) else None,
        )
    steps = [i for i, (kind, _) in enumerate(stamps) if kind is Step]
    if any(stamps[i][0] is Eval for i in range(steps[0], steps[-1])):
        raise AssertionError("an evaluation ran between timed steps: its time would count as training")
    intervals = [stamps[b][1] - stamps[a][1] for a, b in zip(steps, steps[1:])]
    return Timings(intervals, results.final_eval_loss)


def guides_trainer(config: TrainConfig, work: Path) -> Timings:
    """The guides' recipe on the same blocks: `Trainer` with `DataCollatorForLanguageModeling`, timed per step;
    ValueError in plain words when the model or data cannot be used."""
    from datasets import Dataset
    from transformers import (
        AutoModelForMaskedLM,
        DataCollatorForLanguageModeling,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    setup = load_inputs(config, None, lambda _: None)
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            """Stamp the time each step ends."""
            stamps.append(time.perf_counter())

    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=str(work / "trainer"),
        per_device_train_batch_size=config.batch_size,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=0,
        lr_scheduler_type="linear",
        logging_steps=config.max_steps,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=config.seed,
        use_cpu=not cuda,
        bf16=cuda and torch.cuda.is_bf16_supported(),
    )
    model = AutoModelForMaskedLM.from_pretrained(config.model, dtype=torch.float32)  # the starter is stored in fp16
    collator = DataCollatorForLanguageModeling(setup.tokenizer, mlm_probability=config.mlm_probability)
    dataset = Dataset.from_dict({"input_ids": setup.data.train[:].tolist()})
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator, callbacks=[Clock()])
    trainer.remove_callback(PrinterCallback)  # its log lines would interleave with the benchmark's table
    trainer.train()
    saved = work / "trainer-model"
    trainer.save_model(str(saved))
    setup.tokenizer.save_pretrained(saved)
    eval_loss = evaluate(replace(config, model=str(saved))).loss  # the same eval blocks and masks as ours
    intervals = [b - a for a, b in zip(stamps, stamps[1:])]
    return Timings(intervals, eval_loss)


def compare(model: str, steps: int, batch_size: int, rounds: int) -> dict:
    """Interleaved rounds of both contenders from the same weights, round r with seed r (data order, masks,
    dropout): the speed-up as the median of the rounds' ratios with their range, and the eval-loss gap of the
    rounds' mean losses (one seed's gap is mostly the luck of its draws). ValueError in plain words when the model
    or data cannot be used."""
    timed: dict[str, list[Timings]] = {"ours": [], "trainer": []}
    for round_ in range(rounds):
        order = ["ours", "trainer"] if round_ % 2 == 0 else ["trainer", "ours"]
        for name in order:
            with tempfile.TemporaryDirectory() as tmp:
                config = replace(bench_config(model, steps, batch_size, Path(tmp)), seed=round_)
                timed[name].append(ours(config) if name == "ours" else guides_trainer(config, Path(tmp)))
    tokens_per_step = config.batch_size * config.block_size
    result: dict = {"tokens_per_step": tokens_per_step, "rounds": rounds}
    for name, runs in timed.items():
        seconds = statistics.median(s for t in runs for s in t.seconds)
        result[name] = {
            "tokens_per_s": tokens_per_step / seconds,
            "step_seconds": seconds,
            "eval_loss": statistics.mean(t.eval_loss for t in runs),
            "timed_steps": sum(len(t.seconds) for t in runs),
        }
    ratios = [
        statistics.median(t.seconds) / statistics.median(o.seconds) for o, t in zip(timed["ours"], timed["trainer"])
    ]
    result["speedup"] = statistics.median(ratios)
    result["speedup_range"] = [min(ratios), max(ratios)]
    result["loss_gap"] = abs(result["ours"]["eval_loss"] / result["trainer"]["eval_loss"] - 1)
    return result

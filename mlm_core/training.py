"""The training loop on Accelerate: events out, stop flag in, perplexity, atomic checkpoints, resume, final save."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import checkpoint as ckpt
from .batches import Batch, Masker, epoch_batches, fixed_eval_batches
from .config import TrainConfig
from .data import PreparationStopped
from .events import Checkpoint, Done, Error, Eval, Event, EventLog, Probe, Started, Status, Step
from .inference import predict_masks
from .meter import Meter, perplexity
from .modeling import MLM, describe_device
from .objective import IGNORE, LMObjective
from .run_setup import RunSetup, load_inputs, prepare_run
from .storage import write_json

EVENTS = "events.jsonl"
RESULTS = "results.json"
MAX_GRAD_NORM = 1.0
PROBE_TOP_K = 5
EVAL_BATCH_FACTOR = 2  # no gradients to keep, so evaluation batches can be larger


def train(config: TrainConfig, on_event: Callable[[Event], None] | None = None,
          stop: threading.Event | None = None, resume: bool = False, head_only_loss: bool = True,
          probes: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or resume) one fine-tuning run to completion or until `stop` is set; return its results.

    `probes` are sentences with a mask whose top guesses are re-scored (as Probe events) at every evaluation.
    """
    return TrainingRun(config, on_event, stop, head_only_loss, probes).run(resume)


def evaluate(config: TrainConfig, on_event: Callable[[Event], None] | None = None) -> float:
    """Eval loss of `config.model` on the run's eval split, exactly as a run measures its base perplexity."""
    run = TrainingRun(config, on_event, None, head_only_loss=True)
    _seed_everything(config.seed)
    run._build(load_inputs(config, None, run.emit))
    return run._evaluate(base=True)


class TrainingRun:
    """One run's state: model, data, optimizer, position, and the event log."""

    def __init__(self, config: TrainConfig, on_event, stop, head_only_loss: bool, probes: Sequence[str] = ()):
        self.config = config
        self.run_dir = Path(config.output_dir)
        self.on_event = on_event
        self.stop = stop or threading.Event()
        self.head_only_loss = head_only_loss
        self.probes = [p for p in probes if p.strip()]
        self.log: EventLog | None = None
        self.pending: list[Event] = []  # events emitted before the run folder exists
        self.step = self.epoch = self.batch_in_epoch = self.tokens = 0
        self.base_loss = self.last_eval = None
        self.saved_step = self.eval_step = -1

    def emit(self, event: Event) -> None:
        """Record an event in events.jsonl and hand it to the listener (main process only)."""
        if not self.is_main:
            return
        if self.log is None:
            self.pending.append(event)
        else:
            self.log.write(event)
        if self.on_event is not None:
            self.on_event(event)

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes files (always, outside `accelerate launch`)."""
        accelerator = getattr(self, "accelerator", None)
        return accelerator is None or accelerator.is_main_process

    def run(self, resume: bool) -> dict[str, Any]:
        """Set up, evaluate the base model, train, and finish; errors are emitted as events and re-raised."""
        try:
            _seed_everything(self.config.seed)  # a checkpoint's RNG state replaces this when resuming
            setup = prepare_run(self.config, self.run_dir, resume, self.emit, self.stop)
            self._build(setup)
            self._open_log()
            if setup.checkpoint is not None:
                self._restore(setup.checkpoint)
            self.emit(self._started(setup))
            if self.base_loss is None:
                self.base_loss = self._evaluate(base=True)
            stopped = self.base_loss is None or self._train()
            return self._finish(stopped)
        except PreparationStopped:  # stopped before the first step: nothing to save
            results = {**dict.fromkeys(_RESULT_KEYS), "status": "stopped", "model": self.config.model,
                       "dataset": self.config.dataset, "steps": 0, "tokens": 0, "seconds": 0.0}
            self.emit(Done(status="stopped", results=results))
            return results
        except Exception as error:
            self.emit(Error(str(error) if isinstance(error, ValueError) else f"training failed: {error!r}"))
            raise

    def _build(self, setup: RunSetup) -> None:
        """Wrap model and optimizer with Accelerate; mask the eval split once."""
        from accelerate import Accelerator
        from transformers import get_scheduler

        cfg, self.setup = self.config, setup
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        self.accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no")
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        masker_args = dict(tokenizer=setup.tokenizer, task=setup.task, mlm_probability=cfg.mlm_probability,
                           whole_word=cfg.whole_word_masking)
        self.masker = Masker(seed=cfg.seed + self.rank, **masker_args)
        self.eval_batches = fixed_eval_batches(masker_args, setup.data.eval, setup.data.eval_word_starts,
                                               cfg.batch_size * EVAL_BATCH_FACTOR, seed=cfg.seed + 1)
        optimizer = make_optimizer(setup.model.to(self.accelerator.device), cfg)
        objective = LMObjective(setup.model, setup.task, head_only=self.head_only_loss)
        self.objective, self.optimizer = self.accelerator.prepare(objective, optimizer)
        self.batches_per_epoch = self._batches_per_epoch()
        self.total_steps = cfg.max_steps or cfg.epochs * math.ceil(self.batches_per_epoch / cfg.gradient_accumulation)
        self.scheduler = get_scheduler("linear", optimizer, num_warmup_steps=round(cfg.warmup_ratio * self.total_steps),
                                       num_training_steps=self.total_steps)

    def _batches_per_epoch(self) -> int:
        """Batches this process takes in one epoch."""
        n = len(self.setup.data.train)
        return sum(1 for _ in epoch_batches(n, self.config.batch_size, 0, 0, *self._shard()))

    def _shard(self) -> tuple[int, int]:
        """(rank, world) for epoch_batches: data prepared per process is this process's alone."""
        return (0, 1) if self.setup.data.sharded else (self.rank, self.world)

    def _open_log(self) -> None:
        """Start writing events.jsonl, beginning with those emitted during set-up."""
        if self.is_main:
            self.log = EventLog(self.run_dir / EVENTS)
            for event in self.pending:
                self.log.write(event)
        self.pending.clear()

    def _started(self, setup: RunSetup) -> Started:
        """The event announcing what is about to train."""
        return Started(run_dir=str(self.run_dir), model=self.config.model, task=setup.task,
                       device=describe_device(self.accelerator.device), total_steps=self.total_steps,
                       train_blocks=len(setup.data.train), eval_blocks=len(setup.data.eval),
                       block_size=setup.data.block_size, resumed_from_step=self.step)

    def _train(self) -> bool:
        """Train until the last step; True when stopped early."""
        cfg, data = self.config, self.setup.data
        self.meter = Meter(elapsed_before=self.setup.elapsed_before)
        while self.step < self.total_steps:
            batches = list(epoch_batches(len(data.train), cfg.batch_size, self.epoch, cfg.seed,
                                         *self._shard()))[self.batch_in_epoch:]
            for start in range(0, len(batches), cfg.gradient_accumulation):
                if self.stop.is_set():
                    return True
                group = batches[start : start + cfg.gradient_accumulation]
                self._after_step(self._optimizer_step(group), len(group))
                if self.step >= self.total_steps:
                    return False
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
            if self.eval_step != self.step and self._evaluate() is None:
                return True
            self._checkpoint()
        return False

    def _optimizer_step(self, group: list[torch.Tensor]) -> tuple[float, int]:
        """One update from a group of micro-batches; (mean token loss, tokens trained on)."""
        data, device = self.setup.data, self.accelerator.device
        starts = data.train_word_starts
        batches = [self.masker(data.train[idx], None if starts is None else starts[idx]) for idx in group]
        total = max(1, sum(_label_count(b, self.setup.task) for b in batches))
        self.objective.train()
        loss_sum = torch.zeros((), device=device)
        for i, batch in enumerate(batches):
            batch = batch.to(device)
            last = i == len(batches) - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(self.objective):
                summed, count = self.objective(batch.input_ids, batch.labels)
                if count:
                    self.accelerator.backward(summed / total)
            loss_sum += summed.detach()
        self.accelerator.clip_grad_norm_(self.objective.parameters(), MAX_GRAD_NORM)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean = self.accelerator.reduce(loss_sum / total, reduction="mean").item()
        return mean, sum(b.input_ids.numel() for b in batches) * self.world

    def _after_step(self, result: tuple[float, int], n_batches: int) -> None:
        """Advance the position, emit the step, and evaluate or save when due."""
        loss, tokens = result
        self.step, self.batch_in_epoch, self.tokens = self.step + 1, self.batch_in_epoch + n_batches, \
            self.tokens + tokens
        self.meter.update(tokens)
        self.emit(Step(step=self.step, total_steps=self.total_steps, epoch=self._epoch_progress(), loss=loss,
                       learning_rate=self.scheduler.get_last_lr()[0], tokens=self.tokens,
                       tokens_per_s=self.meter.tokens_per_s, elapsed_s=self.meter.elapsed,
                       eta_s=self.meter.eta(self.total_steps - self.step)))
        cfg = self.config
        if cfg.eval_steps and self.step % cfg.eval_steps == 0:
            self._evaluate()  # a stop during it is seen by the loop before the next step
        if cfg.save_steps and self.step % cfg.save_steps == 0:
            self._checkpoint()

    def _epoch_progress(self) -> float:
        """Epochs done, with the current one as a fraction."""
        return self.epoch + self.batch_in_epoch / max(1, self.batches_per_epoch)

    def _evaluate(self, base: bool = False) -> float | None:
        """Mean token loss on the fixed-masked eval blocks (emitted with perplexity); None if stopped meanwhile."""
        device = self.accelerator.device
        total, count = torch.zeros((), device=device), torch.zeros((), device=device)
        self.objective.eval()
        with torch.no_grad():
            for i, batch in enumerate(self.eval_batches):
                if self.stop.is_set():
                    return None
                if self.setup.data.sharded or i % self.world == self.rank:
                    summed, n = self.objective(*_inputs(batch.to(device)))
                    total, count = total + summed.float(), count + n
        total, count = self.accelerator.reduce(total), self.accelerator.reduce(count)
        loss = (total / count.clamp(min=1)).item()
        self.eval_step, self.last_eval = self.step, loss
        self.emit(Eval(step=self.step, epoch=self._epoch_progress(), eval_loss=loss, perplexity=perplexity(loss),
                       base=base))
        self._probe()
        if hasattr(self, "meter"):
            self.meter.restart_window()
        return loss

    def _probe(self) -> None:
        """Re-score the probe sentences with the current weights; a probe the model cannot read is dropped."""
        if not self.probes or self.setup.task != MLM or not self.is_main:
            return
        model = self.accelerator.unwrap_model(self.objective).model
        model.eval()
        for text in list(self.probes):
            try:
                [first, *_] = predict_masks(self.setup.tokenizer, model, text, top_k=PROBE_TOP_K)
            except ValueError as error:
                self.probes.remove(text)
                self.emit(Status(f"Probe {text!r} skipped: {error}"))
                continue
            self.emit(Probe(step=self.step, text=text, guesses=[(g["token_str"].strip(), g["score"]) for g in first]))

    def _checkpoint(self) -> None:
        """Save a resumable checkpoint of the current step (once per step)."""
        if self.saved_step == self.step or self.step == 0:
            return
        if self.is_main:
            model = self.accelerator.unwrap_model(self.objective).model
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "rng": ckpt.rng_state(), "mask_rng": self.masker.state()}
            progress = {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                        "tokens": self.tokens, "elapsed_s": self.meter.elapsed, "base_eval_loss": self.base_loss,
                        "last_eval_loss": self.last_eval, "eval_step": self.eval_step}
            path = ckpt.save_checkpoint(self.run_dir, model, self.setup.tokenizer, state, progress)
            self.emit(Checkpoint(step=self.step, path=str(path)))
        self.accelerator.wait_for_everyone()
        self.saved_step = self.step
        self.meter.restart_window()

    def _restore(self, path: Path) -> None:
        """Continue from a checkpoint: optimizer, scheduler, RNG, data position and counters."""
        state, progress = ckpt.load_checkpoint(path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.masker.set_state(state["mask_rng"])
        self.step, self.epoch = progress["step"], progress["epoch"]
        self.batch_in_epoch, self.tokens = progress["batch_in_epoch"], progress["tokens"]
        self.base_loss, self.last_eval = progress["base_eval_loss"], progress["last_eval_loss"]
        self.eval_step, self.saved_step = progress["eval_step"], self.step
        self.emit(Status(f"Resumed from step {self.step} ({path.name})."))

    def _finish(self, stopped: bool) -> dict[str, Any]:
        """Checkpoint a stopped run, or evaluate and save the final model; write results.json."""
        if not hasattr(self, "meter"):
            self.meter = Meter(elapsed_before=self.setup.elapsed_before)
        if stopped:
            self._checkpoint()
        else:
            if self.eval_step != self.step:
                self._evaluate()
            if self.is_main:
                model = self.accelerator.unwrap_model(self.objective).model
                ckpt.save_model(self.run_dir, model, self.setup.tokenizer)
                ckpt.remove_checkpoints(self.run_dir)
        results = self._results("stopped" if stopped else "completed")
        if self.is_main:
            write_json(self.run_dir / RESULTS, results)
        self.emit(Done(status=results["status"], results=results))
        return results

    def _results(self, status: str) -> dict[str, Any]:
        """What results.json records about the run."""
        base, last = self.base_loss, self.last_eval
        return {
            "status": status, "model": self.config.model, "dataset": self.config.dataset, "task": self.setup.task,
            "device": describe_device(self.accelerator.device), "steps": self.step, "total_steps": self.total_steps,
            "epochs": round(self._epoch_progress(), 4), "tokens": self.tokens, "seconds": round(self.meter.elapsed, 2),
            "train_blocks": len(self.setup.data.train), "eval_blocks": len(self.setup.data.eval),
            "block_size": self.setup.data.block_size,
            "base_eval_loss": base, "base_perplexity": None if base is None else perplexity(base),
            "final_eval_loss": last if status == "completed" else None,
            "final_perplexity": perplexity(last) if status == "completed" and last is not None else None,
            "last_eval_loss": last, "model_dir": str(self.run_dir / "model") if status == "completed" else None,
        }


_RESULT_KEYS = ("status", "model", "dataset", "task", "device", "steps", "total_steps", "epochs", "tokens", "seconds",
                "train_blocks", "eval_blocks", "block_size", "base_eval_loss", "base_perplexity", "final_eval_loss",
                "final_perplexity", "last_eval_loss", "model_dir")


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and GPU), as transformers' Trainer does."""
    from transformers import set_seed

    set_seed(seed)


def _inputs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The objective's positional inputs."""
    return batch.input_ids, batch.labels


def _label_count(batch: Batch, task: str) -> int:
    """Tokens of a batch that carry a label (the causal model shifts labels by one)."""
    labels = batch.labels if task == MLM else batch.labels[:, 1:]
    return int(labels.ne(IGNORE).sum())


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, no weight decay on biases and norms, fused kernels where the device has them."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(groups, lr=config.learning_rate, foreach=True)

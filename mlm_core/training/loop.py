"""The training loop on Accelerate: events out, stop flag in, perplexity, atomic checkpoints, resume, final save."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mlm_core.config import TrainConfig, check_report_to
from mlm_core.data.lm_data import HELD_OUT_SEED
from mlm_core.data.tokenizing import PreparationStopped
from mlm_core.events import Checkpoint, Done, Eval, Event, Probe, Started, Status, Step
from mlm_core.models.inference import score_probe
from mlm_core.models.loading import default_device, describe_device
from mlm_core.models.words import starts_word
from mlm_core.runs import checkpoint as ckpt
from mlm_core.runs.records import COMPLETED, STOPPED, Budget, RunResults
from mlm_core.runs.run_dir import RunDir
from mlm_core.runs.session import TrainingSession
from mlm_core.system import settings
from mlm_core.training.batches import Batch, Prefetcher, batcher_for, epoch_batches
from mlm_core.training.evaluation import Evaluator, Measurement, eval_every, eval_sample_size
from mlm_core.training.memory_check import check_fits
from mlm_core.training.meter import Meter, perplexity
from mlm_core.training.objective import LMObjective
from mlm_core.training.optimizer import make_optimizer
from mlm_core.training.probes import heldout_probes, parse_probe
from mlm_core.training.setup import RunSetup, load_inputs
from mlm_core.training.trackers import RunTrackers

MAX_GRAD_NORM = 1.0
PROBE_TOP_K = 5
AUTO_PROBES, AUTO_PROBE_BLOCKS = 5, 200  # held-out sentences watched when none are given, and where they come from
EVAL_BATCH_FACTOR = 2  # no gradients to keep, so evaluation batches can be larger
DIVERGED_LOSS_RISE = math.log(10)  # held-out perplexity ten times the base model's: the run has diverged
SAVE_SHARE = 0.05  # of training time at most spent saving the checkpoints that MLM_STUDIO_CHECKPOINT_MINUTES asks for
REPORT_EVERY_S = 0.5  # on a GPU, step losses are read back at most this often (each read waits for the device)


def train(
    config: TrainConfig,
    on_event: Callable[[Event], None] | None = None,
    stop: threading.Event | None = None,
    resume: bool = False,
    head_only_loss: bool = True,
    probes: Sequence[str] = (),
    budget: Budget | None = None,
) -> RunResults:
    """Run (or resume) one fine-tuning run to completion, until `stop` is set or its `budget` is spent.

    The run folder is locked while it trains, so no other process (app or CLI) trains it at the same time.
    `probes` are sentences with a mask whose top guesses are re-scored (as Probe events) at every evaluation.

    Its Step and Eval events also go to the experiment tracker of `config.report_to` (a tracker that fails is
    dropped with a Status line; the run goes on).

    Raises RunBusy while a live process trains the folder, ValueError in plain words when the folder, model, data or
    tracker do not allow the run or a step would not fit in memory, RuntimeError when a tokenizer process fails; an
    error once the folder is claimed is recorded (an Error event) before it passes through.
    """
    check_report_to(config.report_to)
    with (
        TrainingSession(config, resume, on_event) as session,
        RunTrackers(config, session.emit, session.main) as trackers,
    ):
        run = TrainingRun(config, trackers.following(session.emit), stop, head_only_loss, probes)
        run.budget = budget or Budget()
        return run.run(session)


def evaluate(config: TrainConfig, on_event: Callable[[Event], None] | None = None) -> Measurement:
    """Eval loss and accuracy of `config.model` on the run's eval sample, exactly as a run measures its base model;
    ValueError in plain words when the model or data cannot be used (as `load_inputs`)."""
    run = TrainingRun(config, on_event or (lambda event: None), None, head_only_loss=True)
    _seed_everything(config.seed)
    run._build(load_inputs(config, None, run.emit))
    run._make_evaluator()
    run._evaluate(base=True)
    return run.base_whole


class TrainingRun:
    """One run's state: model, data, optimizer and position."""

    def __init__(
        self, config: TrainConfig, emit: Callable[[Event], None], stop, head_only_loss: bool, probes: Sequence[str] = ()
    ):
        self.config = config
        self.folder = RunDir(config.output_dir)
        self.emit = emit
        self.stop = stop or threading.Event()
        self.head_only_loss = head_only_loss
        self.probes = [parse_probe(p) for p in probes if p.strip()]
        self.step = self.epoch = self.batch_in_epoch = self.tokens = 0
        self.base: Measurement | None = None
        self.last: Measurement | None = None
        self.base_whole: Measurement | None = None  # the base and final models on the whole eval sample
        self.final_whole: Measurement | None = None
        self.eval_size: int | None = None  # chosen once per run, kept across resumes: base and final compare
        self.saved_step = self.eval_step = -1
        self.unreported: list[tuple[torch.Tensor, Step]] = []  # steps whose loss is still on the device
        self.reported_at = time.monotonic()
        self.budget, self.stopped_because = Budget(), None

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes files (always, outside `accelerate launch`)."""
        return self.accelerator.is_main_process

    def run(self, session: TrainingSession) -> RunResults:
        """Load, evaluate the base model, train, and finish; ValueError in plain words when the model or data cannot
        be used or a step would not fit in memory, RuntimeError when a tokenizer process fails."""
        _seed_everything(self.config.seed)  # a checkpoint's RNG state replaces this when resuming
        checkpoint = session.run.checkpoint() if session.resume else None
        try:
            setup = load_inputs(self.config, checkpoint, self.emit, self.stop)
        except PreparationStopped:
            return self._stopped_while_preparing(session)
        check_fits(
            setup.model,
            self.config.batch_size,
            setup.data.block_size,
            setup.task.labelled_share(self.config.mlm_probability),
            default_device(),
        )
        self._build(setup)
        if checkpoint is not None:
            self._restore(checkpoint)
        self._make_evaluator()
        self._pick_probes()
        session.begin_training()
        self.emit(self._started(setup))
        if self.base is None:
            self.base = self._evaluate(base=True)
        stopped = self.base is None or self._train()
        results = self._finish(stopped)
        session.finish(results)
        self.emit(Done(status=results.status, results=results.to_dict()))
        self.accelerator.wait_for_everyone()  # under `accelerate launch`, no process exits while another saves
        return results

    def _stopped_while_preparing(self, session: TrainingSession) -> RunResults:
        """Stop came before the first step: a new run ends stopped at step 0; a resumed one stays as it was."""
        results = RunResults(
            status=STOPPED,
            model=self.config.model,
            dataset=self.config.dataset,
            message="stopped while preparing the data",
        )
        if not session.resume:
            session.finish(results)
        self.emit(Done(status=results.status, results=results.to_dict()))
        return results

    def _build(self, setup: RunSetup) -> None:
        """Wrap model and optimizer with Accelerate; mask the eval split once."""
        from accelerate import Accelerator
        from transformers import get_scheduler

        cfg, self.setup = self.config, setup
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        self.accelerator = Accelerator(mixed_precision="bf16" if bf16 else "no")
        self.world, self.rank = self.accelerator.num_processes, self.accelerator.process_index
        self.batcher = functools.partial(
            batcher_for, setup.task, setup.tokenizer, cfg.mlm_probability, cfg.whole_word_masking
        )
        self.masker = self.batcher(seed=cfg.seed + self.rank)
        self.mask_state = self.masker.state()  # the masks' random state after the last batch trained on
        optimizer = make_optimizer(setup.model.to(self.accelerator.device), cfg)
        objective = LMObjective(setup.model, setup.task, head_only=self.head_only_loss)
        self.objective, self.optimizer = self.accelerator.prepare(objective, optimizer)
        self.batches_per_epoch = self._batches_per_epoch()
        self.total_steps = cfg.max_steps or cfg.epochs * math.ceil(self.batches_per_epoch / cfg.gradient_accumulation)
        self.scheduler = get_scheduler(
            "linear",
            optimizer,
            num_warmup_steps=round(cfg.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        self.eval_every = eval_every(cfg.eval_steps, self.total_steps)

    def _make_evaluator(self) -> None:
        """The fixed held-out sample and its masks, sized once per run (a resume keeps the size it saved)."""
        cfg, data = self.config, self.setup.data
        blocks_per_step = cfg.batch_size * cfg.gradient_accumulation * self.world
        self.eval_size = self.eval_size or eval_sample_size(
            len(data.eval), self.total_steps, blocks_per_step, self.eval_every
        )
        masked = self.setup.task.inference == "fill-mask"
        starts = starts_word(self.setup.tokenizer, len(self.setup.tokenizer)) if masked else None
        self.evaluator = Evaluator(
            self.batcher(seed=HELD_OUT_SEED + 1),
            data.eval,
            data.eval_word_starts,
            self.eval_size,
            cfg.batch_size * EVAL_BATCH_FACTOR,
            seed=HELD_OUT_SEED + 2,
            own_share=data.sharded,
            starts_table=starts,
        )

    def _batches_per_epoch(self) -> int:
        """Batches this process takes in one epoch."""
        n = len(self.setup.data.train)
        return sum(1 for _ in epoch_batches(n, self.config.batch_size, 0, 0, *self._shard()))

    def _shard(self) -> tuple[int, int]:
        """(rank, world) for epoch_batches: data prepared per process is this process's alone."""
        return (0, 1) if self.setup.data.sharded else (self.rank, self.world)

    def _started(self, setup: RunSetup) -> Started:
        """The event announcing what is about to train."""
        return Started(
            run_dir=self.folder.name,
            model=self.config.model,
            task=setup.task.name,
            device=describe_device(self.accelerator.device),
            total_steps=self.total_steps,
            train_blocks=len(setup.data.train),
            eval_blocks=len(setup.data.eval),
            block_size=setup.data.block_size,
            resumed_from_step=self.step,
        )

    def _train(self) -> bool:
        """Train until the last step; True when stopped early."""
        self.meter = Meter(elapsed_before=self.setup.elapsed_before)
        self.saved_at, self.save_seconds = time.monotonic(), 0.0
        try:
            while self.step < self.total_steps:
                if self._train_epoch():
                    break
                if self.step < self.total_steps:  # an epoch ended with steps to go (the last step ends the run)
                    self.epoch, self.batch_in_epoch = self.epoch + 1, 0
                    self._checkpoint()
        except BaseException:
            self._report_steps(failing=True)  # the steps taken still count (a failed run keeps its folder)
            raise
        self._report_steps()
        return self.step < self.total_steps

    def _train_epoch(self) -> bool:
        """Train the rest of the current epoch, its batches labelled ahead by a `Prefetcher`; True when stopped."""
        cfg, data = self.config, self.setup.data
        batches = list(epoch_batches(len(data.train), cfg.batch_size, self.epoch, cfg.seed, *self._shard()))[
            self.batch_in_epoch :
        ]
        self.prefetcher = Prefetcher(
            self.masker, data.train, data.train_word_starts, batches, pin=self.accelerator.device.type == "cuda"
        )
        try:
            for start in range(0, len(batches), cfg.gradient_accumulation):
                if self.stop.is_set() or self._over_budget():
                    return True
                n = len(batches[start : start + cfg.gradient_accumulation])
                self._after_step(*self._optimizer_step([self.prefetcher.take() for _ in range(n)]), n)
                if self.step >= self.total_steps:
                    return False
            return False
        finally:
            self.prefetcher.close()

    def _over_budget(self) -> bool:
        """Whether the run has used the steps or minutes it was given (it stops, resumable, with a message)."""
        if not self.budget.exceeded(self.step, self.meter.elapsed):
            return False
        self.stopped_because = f"it reached the limit of {self.budget.describe()} a run may train here"
        self._report_steps()
        self.emit(Status(f"Stopped: {self.stopped_because}."))
        return True

    def _optimizer_step(self, batches: list[Batch]) -> tuple[torch.Tensor, int]:
        """One update from a group of micro-batches; (mean token loss as a 0-d tensor left on the device, tokens
        trained on). Nothing in it makes the host wait for the device: counts are known on the host, labelled
        positions are gathered by index, and the loss is read back later (`_report_steps`)."""
        device = self.accelerator.device
        total = max(1, sum(b.count for b in batches))
        self.objective.train()
        loss_sum = torch.zeros((), device=device)
        for i, batch in enumerate(batches):
            batch = batch.to(device)
            last = i == len(batches) - 1
            with contextlib.nullcontext() if last else self.accelerator.no_sync(self.objective):
                summed = self.objective(batch.input_ids, batch.labels, batch.positions, batch.targets)
                if batch.count:
                    self.accelerator.backward(summed / total)
            loss_sum += summed.detach()
        self.accelerator.clip_grad_norm_(self.objective.parameters(), MAX_GRAD_NORM)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        mean = self.accelerator.reduce(loss_sum / total, reduction="mean")
        if not any(b.count for b in batches) and self.world == 1:
            mean = torch.full((), math.nan)  # nothing was hidden: no loss was measured (not a loss of 0)
        return mean, sum(b.input_ids.numel() for b in batches) * self.world

    def _after_step(self, loss: torch.Tensor, tokens: int, n_batches: int) -> None:
        """Advance the position, record the step, and report, evaluate or save when due."""
        self.step, self.batch_in_epoch, self.tokens = (
            self.step + 1,
            self.batch_in_epoch + n_batches,
            self.tokens + tokens,
        )
        self.mask_state = self.prefetcher.state
        self.meter.update(tokens)
        self.unreported.append(
            (
                loss,
                Step(
                    step=self.step,
                    total_steps=self.total_steps,
                    epoch=self._epoch_progress(),
                    loss=math.nan,
                    learning_rate=self.scheduler.get_last_lr()[0],
                    tokens=self.tokens,
                    tokens_per_s=self.meter.tokens_per_s,
                    elapsed_s=self.meter.elapsed,
                    eta_s=self.meter.eta(self.total_steps - self.step),
                ),
            )
        )
        if self._report_due():
            self._report_steps()
        cfg = self.config
        if self.step % self.eval_every == 0 and self.step < self.total_steps:
            self._evaluate()  # a stop during it is seen by the loop before the next step; the last step's comes later
        if (cfg.save_steps and self.step % cfg.save_steps == 0) or self._checkpoint_due():
            self._checkpoint()

    def _checkpoint_due(self) -> bool:
        """Whether MLM_STUDIO_CHECKPOINT_MINUTES of training passed since the last save, or more when a save takes
        longer than SAVE_SHARE of that, before the last step; one process only (the processes of a launch would not
        agree on a clock)."""
        every = settings.current().checkpoint_minutes * 60
        since = time.monotonic() - self.saved_at
        last = self.step >= self.total_steps  # the run saves its model next
        return self.world == 1 and every > 0 and not last and since >= max(every, self.save_seconds / SAVE_SHARE)

    def _report_due(self) -> bool:
        """Reading a loss back costs nothing on a CPU (every step is reported at once); on a GPU it waits for the
        device to finish its queued work, so at most every `REPORT_EVERY_S`."""
        return self.accelerator.device.type == "cpu" or time.monotonic() - self.reported_at >= REPORT_EVERY_S

    def _report_steps(self, failing: bool = False) -> None:
        """Emit the recorded steps with their losses, read back from the device in one transfer; while a failure
        passes through, a device that cannot be read gives them NaN losses rather than a second error."""
        if self.unreported:
            try:
                losses = torch.stack([loss for loss, _ in self.unreported]).tolist()
            except Exception:
                if not failing:
                    raise
                losses = [math.nan] * len(self.unreported)
            for value, (_, step) in zip(losses, self.unreported):
                self.emit(dataclasses.replace(step, loss=value))
            self.unreported = []
            if not failing and any(math.isinf(v) for v in losses):
                raise ValueError(diverged(self.step, "the training loss became infinite"))
        self.reported_at = time.monotonic()

    def _epoch_progress(self) -> float:
        """Epochs done, with the current one as a fraction."""
        return self.epoch + self.batch_in_epoch / max(1, self.batches_per_epoch)

    def _evaluate(self, base: bool = False, final: bool = False) -> Measurement | None:
        """Loss and accuracy on the run's part of the fixed held-out sample, emitted with perplexity (the base and
        final models are measured on the whole sample too); None if stopped meanwhile."""
        self._report_steps()  # the steps before it come first in the events
        started = time.perf_counter()
        measured = self.evaluator(self.objective, self.accelerator, self.stop, whole=base or final)
        if measured is None:
            return None
        measured, whole = measured
        if base:
            self.base_whole = whole
        if final:
            self.final_whole = whole
        self.eval_step, self.last = self.step, measured
        if not base and self.base is not None and not measured.loss <= self.base.loss + DIVERGED_LOSS_RISE:
            raise ValueError(
                diverged(
                    self.step,
                    f"held-out perplexity {perplexity(measured.loss):,.4g}, from "
                    f"{perplexity(self.base.loss):,.4g} at the start",
                )
            )
        self.emit(
            Eval(
                step=self.step,
                epoch=self._epoch_progress(),
                eval_loss=measured.loss,
                perplexity=perplexity(measured.loss),
                base=base,
                top1=measured.top1,
                top5=measured.top5,
                seconds=round(time.perf_counter() - started, 3),
            )
        )
        self._probe()
        if hasattr(self, "meter"):
            self.meter.restart_window()
        return measured

    def _probe(self) -> None:
        """Re-score the probe sentences with the current weights; a probe the model cannot read is dropped."""
        if not self.probes or self.setup.task.inference != "fill-mask" or not self.is_main:
            return
        model = self.accelerator.unwrap_model(self.objective).model
        model.eval()
        for probe in list(self.probes):
            try:
                guesses, rank, probability = score_probe(
                    self.setup.tokenizer, model, probe.text, probe.answer, top_k=PROBE_TOP_K
                )
            except ValueError as error:
                self.probes.remove(probe)
                self.emit(Status(f"Probe {probe.text!r} skipped: {error}"))
                continue
            self.emit(
                Probe(
                    step=self.step,
                    text=probe.text,
                    guesses=guesses,
                    answer=probe.answer,
                    answer_rank=rank,
                    answer_probability=probability,
                )
            )

    def _pick_probes(self) -> None:
        """With no probes given, whole held-out sentences with a content word hidden, so each has a known answer."""
        if self.probes or self.setup.task.inference != "fill-mask" or not self.is_main:
            return
        model = self.accelerator.unwrap_model(self.objective).model.eval()
        self.probes = heldout_probes(
            self.setup.tokenizer, model, self.setup.data, AUTO_PROBES, HELD_OUT_SEED, blocks=AUTO_PROBE_BLOCKS
        )
        if self.probes:
            self.emit(Status(f"Watching {len(self.probes)} held-out sentences, each with a word hidden."))

    def _checkpoint(self) -> None:
        """Save a resumable checkpoint of the current step (once per step)."""
        if self.saved_step == self.step or self.step == 0:
            return
        self._report_steps()
        if self.is_main:
            model = self.accelerator.unwrap_model(self.objective).model
            state = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "rng": ckpt.rng_state(),
                "mask_rng": self.mask_state,
            }
            progress = {
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "tokens": self.tokens,
                "elapsed_s": self.meter.elapsed,
                "eval_step": self.eval_step,
                "eval_size": self.eval_size,
                "base": _plain(self.base),
                "last": _plain(self.last),
                "base_whole": _plain(self.base_whole),
                "added_words": self.setup.added_words,
                "tokens_saved": self.setup.tokens_saved,
            }
            began = time.monotonic()
            path = ckpt.save_checkpoint(self.folder.checkpoints_path, model, self.setup.tokenizer, state, progress)
            self.save_seconds = time.monotonic() - began
            self.emit(Checkpoint(step=self.step, path=path.name))
        self.accelerator.wait_for_everyone()
        self.saved_step, self.saved_at = self.step, time.monotonic()
        self.meter.restart_window()

    def _restore(self, path: Path) -> None:
        """Continue from a checkpoint: optimizer, scheduler, RNG, data position and counters."""
        state, progress = ckpt.load_checkpoint(path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"])
        self.masker.set_state(state["mask_rng"])
        self.mask_state = state["mask_rng"]
        self.step, self.epoch = progress["step"], progress["epoch"]
        self.batch_in_epoch, self.tokens = progress["batch_in_epoch"], progress["tokens"]
        self.base, self.last = _measurement(progress.get("base")), _measurement(progress.get("last"))
        self.base_whole = _measurement(progress.get("base_whole"))
        # the checkpoint's tokenizer has the added words already
        self.setup.added_words, self.setup.tokens_saved = progress.get("added_words", []), progress.get("tokens_saved")
        self.eval_step, self.saved_step, self.eval_size = progress["eval_step"], self.step, progress.get("eval_size")
        self.emit(Status(f"Resumed from step {self.step} ({path.name})."))

    def _finish(self, stopped: bool) -> RunResults:
        """Checkpoint a stopped run, or evaluate and save the final model; the results."""
        if not hasattr(self, "meter"):
            self.meter = Meter(elapsed_before=self.setup.elapsed_before)
        if stopped:
            self._checkpoint()
        else:
            self._evaluate(final=True)
            if self.is_main:
                model = self.accelerator.unwrap_model(self.objective).model
                self.folder.save_model(model, self.setup.tokenizer)
                shutil.rmtree(self.folder.checkpoints_path, ignore_errors=True)  # the saved model supersedes them
        return self._results(STOPPED if stopped else COMPLETED)

    def _results(self, status: str) -> RunResults:
        """What results.json records about the run."""
        # A completed run: both models on the whole sample. A stopped one: the base and the last evaluation, on the
        # part of the sample every evaluation of the run scores.
        if status == COMPLETED and self.base_whole is not None:
            base, final, eval_blocks = self.base_whole, self.final_whole, self.evaluator.whole_size
        else:
            base, eval_blocks = self.base, self.evaluator.size if hasattr(self, "evaluator") else 0
            final = self.last if self.eval_step and self.last is not self.base else None
        return RunResults(
            status=status,
            model=self.config.model,
            dataset=self.config.dataset,
            task=self.setup.task.name,
            device=describe_device(self.accelerator.device),
            steps=self.step,
            total_steps=self.total_steps,
            epochs=round(self._epoch_progress(), 4),
            tokens=self.tokens,
            seconds=round(self.meter.elapsed, 2),
            train_blocks=len(self.setup.data.train),
            eval_blocks=eval_blocks,
            accuracy_counts=self.setup.task.guessed,
            block_size=self.setup.data.block_size,
            base_eval_loss=base and base.loss,
            base_perplexity=base and perplexity(base.loss),
            base_top1=base and base.top1,
            base_top5=base and base.top5,
            final_eval_loss=final and final.loss,
            final_perplexity=final and perplexity(final.loss),
            final_top1=final and final.top1,
            final_top5=final and final.top5,
            last_eval_loss=self.last and self.last.loss,
            added_words=self.setup.added_words,
            tokens_saved=self.setup.tokens_saved,
            message=self.stopped_because,
        )


def _plain(measured: Measurement | None) -> dict | None:
    """A measurement for a checkpoint's progress.json."""
    return None if measured is None else dataclasses.asdict(measured)


def _measurement(values: dict | None) -> Measurement | None:
    """A measurement back from a checkpoint."""
    return None if values is None else Measurement(**values)


def diverged(step: int, what: str) -> str:
    """The sentence a diverged run ends with."""
    return f"learning_rate: training diverged at step {step:,} ({what}); lower the learning rate (try a tenth of it)"


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and GPU), as transformers' Trainer does."""
    from transformers import set_seed

    set_seed(seed)

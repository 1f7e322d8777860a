"""Fill-mask latency: ours against transformers' pipeline, and ours while a training run works beside it."""

from __future__ import annotations

import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from mlm_core.children import child_command, child_environment
from mlm_core.config import TrainConfig
from mlm_core.events import Step
from mlm_core.models.inference import fill_mask, word_starts_at_masks
from mlm_core.models.word_guesses import MAX_PIECES, first_pieces
from mlm_core.queue import RunQueue
from mlm_core.runs.records import RunIdentity
from mlm_core.runs.run_dir import RunDir

SENTENCE = "The <mask> statement exits the innermost enclosing loop and goes on with the next statement."
TOP_K = 5
WARMUP = 3


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds of timings in seconds; StatisticsError when there are none."""
    ordered = sorted(seconds)
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
    }


def _timed(fn) -> float:
    """Seconds of one call."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def versus_pipeline(model: str, repeats: int) -> dict:
    """Interleaved calls of our fill-mask and `pipeline("fill-mask")` on one model, and whether their top-k agree
    among the tokens that can stand as a word (times in ms); ValueError in plain words when our fill-mask refuses
    the model."""
    from transformers import pipeline

    cuda = torch.cuda.is_available()
    pipe = pipeline(
        "fill-mask", model=model, top_k=TOP_K, device=0 if cuda else -1, dtype=torch.bfloat16 if cuda else torch.float32
    )
    text = SENTENCE.replace("<mask>", pipe.tokenizer.mask_token)
    # One piece per guess, as the pipeline proposes: the same work (whole words of more pieces take more passes).
    ours_fn, pipe_fn = (lambda: fill_mask(model, SENTENCE, top_k=TOP_K, max_pieces=1)), (lambda: pipe(text))
    for _ in range(WARMUP):
        ours_fn(), pipe_fn()
    times: dict[str, list[float]] = {"ours": [], "pipeline": []}
    for i in range(repeats):
        for name, fn in (("ours", ours_fn), ("pipeline", pipe_fn))[:: 1 if i % 2 == 0 else -1]:
            times[name].append(_timed(fn))
    # Ours leaves out what cannot stand as a word there (special tokens, pieces of a character, after a space a piece
    # that continues a word): so does the comparison.
    [starts] = word_starts_at_masks(pipe.tokenizer, SENTENCE)
    allowed = first_pieces(pipe.tokenizer, pipe.model.config.get_text_config().vocab_size, starts)
    theirs = [g["token"] for g in pipe(text, top_k=TOP_K + 50) if allowed[g["token"]]]
    same = [g["token"] for g in ours_fn()[0]] == theirs[:TOP_K]
    result = {name: percentiles(t) for name, t in times.items()}
    result["identical_predictions"] = same
    result["ratio_p50"] = result["ours"]["p50_ms"] / result["pipeline"]["p50_ms"]
    return result


def during_training(model: str, repeats: int, train_steps: int) -> dict:
    """Our fill-mask p50 (ms) idle, then while a training run works in a child process (as the app's queue runs
    it); ValueError in plain words when fill-mask refuses the model, StatisticsError when training ends before a
    timing, RuntimeError when the training child fails to start."""
    query = lambda: fill_mask(model, SENTENCE, top_k=TOP_K)  # noqa: E731
    for _ in range(WARMUP):
        query()
    idle = [_timed(query) for _ in range(repeats)]
    busy: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            model=model,
            dataset="builtin",
            slice="train",
            block_size=128,
            batch_size=16,
            max_steps=train_steps,
            learning_rate=1e-4,
            output_dir=str(Path(tmp) / "run"),
        )
        run = RunQueue(Path(tmp)).submit(config, RunIdentity())  # queued, and trained as the app's queue does it
        child = subprocess.Popen(
            child_command("train-queued", str(run.path)),
            env=child_environment(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_a_step(run, child)
            while len(busy) < repeats and child.poll() is None:
                busy.append(_timed(query))
        finally:
            child.send_signal(signal.SIGTERM)  # stops after its step, as Stop does
            child.wait()
    idle += [_timed(query) for _ in range(repeats)]
    result = {
        "idle": percentiles(idle),
        "training": percentiles(busy),
        "samples_while_training": len(busy),
        "max_pieces": MAX_PIECES,
    }
    result["ratio_p50"] = result["training"]["p50_ms"] / result["idle"]["p50_ms"]
    return result


def _wait_for_a_step(run: RunDir, child: subprocess.Popen, timeout_s: float = 600) -> None:
    """Until the run has logged its first training step; RuntimeError when the child ends or takes too long."""
    deadline = time.monotonic() + timeout_s
    while not any(isinstance(e, Step) for e in run.events()):
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the training child never stepped (exit code {child.poll()})")
        time.sleep(0.1)

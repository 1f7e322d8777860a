"""Fill-mask latency: ours against transformers' pipeline, and ours while a training run shares the process."""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch

from mlm_core.config import TrainConfig
from mlm_core.events import Step
from mlm_core.models.inference import fill_mask
from mlm_core.training.loop import train

SENTENCE = "The <mask> statement exits the innermost enclosing loop and goes on with the next statement."
TOP_K = 5
WARMUP = 3


def percentiles(seconds: list[float]) -> dict[str, float]:
    """p50 and p95 in milliseconds of timings in seconds; StatisticsError when there are none."""
    ordered = sorted(seconds)
    return {"p50_ms": 1000 * statistics.median(ordered),
            "p95_ms": 1000 * ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]}


def _timed(fn) -> float:
    """Seconds of one call."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def versus_pipeline(model: str, repeats: int) -> dict:
    """Interleaved calls of our fill-mask and `pipeline("fill-mask")` on one model, and whether their top-k agree
    (times in ms); ValueError in plain words when our fill-mask refuses the model."""
    from transformers import pipeline

    cuda = torch.cuda.is_available()
    pipe = pipeline("fill-mask", model=model, top_k=TOP_K, device=0 if cuda else -1,
                    dtype=torch.bfloat16 if cuda else torch.float32)
    text = SENTENCE.replace("<mask>", pipe.tokenizer.mask_token)
    ours_fn, pipe_fn = (lambda: fill_mask(model, SENTENCE, top_k=TOP_K)), (lambda: pipe(text))
    for _ in range(WARMUP):
        ours_fn(), pipe_fn()
    times: dict[str, list[float]] = {"ours": [], "pipeline": []}
    for i in range(repeats):
        for name, fn in (("ours", ours_fn), ("pipeline", pipe_fn))[:: 1 if i % 2 == 0 else -1]:
            times[name].append(_timed(fn))
    same = [g["token"] for g in ours_fn()[0]] == [g["token"] for g in pipe_fn()]
    result = {name: percentiles(t) for name, t in times.items()}
    result["identical_predictions"] = same
    result["ratio_p50"] = result["ours"]["p50_ms"] / result["pipeline"]["p50_ms"]
    return result


def during_training(model: str, repeats: int, train_steps: int) -> dict:
    """Our fill-mask p50 (ms) idle, then while `train()` runs in a thread of this process (as in the app);
    ValueError in plain words when fill-mask refuses the model, StatisticsError when training ends before a timing."""
    query = lambda: fill_mask(model, SENTENCE, top_k=TOP_K)  # noqa: E731
    for _ in range(WARMUP):
        query()
    idle = [_timed(query) for _ in range(repeats)]
    busy: list[float] = []
    stepping, stop = threading.Event(), threading.Event()
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(model=model, dataset="builtin", slice="train", block_size=128, batch_size=16,
                             max_steps=train_steps, learning_rate=1e-4, output_dir=str(Path(tmp) / "run"))
        job = threading.Thread(target=train, args=(config,), daemon=True,
                               kwargs={"stop": stop, "on_event": lambda e: isinstance(e, Step) and stepping.set()})
        job.start()
        stepping.wait(timeout=600)
        while len(busy) < repeats and job.is_alive():
            busy.append(_timed(query))
        stop.set()
        job.join()
    idle += [_timed(query) for _ in range(repeats)]
    result = {"idle": percentiles(idle), "training": percentiles(busy), "samples_while_training": len(busy)}
    result["ratio_p50"] = result["training"]["p50_ms"] / result["idle"]["p50_ms"]
    return result

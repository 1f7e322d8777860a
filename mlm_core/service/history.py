"""A run's history in a size that does not grow with it: what the dashboard draws and the status API summarizes.

A run logs one Step event a step, an Eval at each evaluation and a Probe per probe sentence there: 2,600 events for a
2,000-step run. Drawn or sent whole, each refresh would cost more as the run goes on. Here the steps are averaged over
buckets of consecutive steps (at most `POINTS` buckets, as TensorBoard and trackio thin long curves), and of each
probe sentence only its first and latest scoring are kept: what the dashboard shows of them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from mlm_core.events import Eval, Event, Probe, Step

POINTS = 200  # steps drawn per curve at most: a plot is a few hundred pixels wide


def steps_per_point(steps: int, points: int = POINTS) -> int:
    """How many consecutive steps one point of the curve averages: 1 up to `points` steps, then more."""
    return max(1, math.ceil(steps / points))


def thinned(events: Sequence[Event], points: int = POINTS) -> list[Event]:
    """The events with each bucket of `steps_per_point` consecutive Step events replaced by its last one carrying
    the bucket's mean loss (steps whose loss is NaN, with no token hidden, left out of the mean), and the Probe
    events of each sentence cut to its first and latest; every other event as it is, in order. At most `points`
    steps remain; the last Step is the run's own (its step, ETA and pace)."""
    size = steps_per_point(sum(isinstance(e, Step) for e in events), points)
    probes = [e for e in events if isinstance(e, Probe)]
    kept_probes = {id(p) for p in {p.text: p for p in reversed(probes)}.values()}  # first of each sentence
    kept_probes |= {id(p) for p in {p.text: p for p in probes}.values()}  # latest of each
    out: list[Event] = []
    bucket: list[Step] = []
    for event in events:
        if isinstance(event, Step):
            bucket.append(event)
            if len(bucket) == size:
                out.append(_mean_step(bucket))
                bucket = []
        elif not isinstance(event, Probe) or id(event) in kept_probes:
            out.append(event)
    if bucket:
        out.append(_mean_step(bucket))
    return out


def _mean_step(bucket: list[Step]) -> Step:
    """The bucket's last step with the mean of its measured losses (NaN when none measured any)."""
    if len(bucket) == 1:
        return bucket[0]
    losses = [step.loss for step in bucket if step.loss == step.loss]
    return dataclasses.replace(bucket[-1], loss=sum(losses) / len(losses) if losses else math.nan)


def summary(events: Sequence[Event], points: int = POINTS) -> dict:
    """A run's whole history in a size that does not grow with it, as JSON-ready lists: the train loss at most
    `points` points (`steps_per_point` steps averaged in each), each evaluation (step, held-out loss, perplexity,
    share of hidden words guessed first and in the top 5), and the last step's progress."""
    steps = [e for e in thinned(events, points) if isinstance(e, Step)]
    evals = [e for e in events if isinstance(e, Eval)]
    last = next((e for e in reversed(events) if isinstance(e, Step)), None)
    return {
        "steps_per_point": steps_per_point(sum(isinstance(e, Step) for e in events), points),
        "train_loss": {"step": [s.step for s in steps], "loss": [_number(s.loss) for s in steps]},
        "evaluations": {
            "step": [e.step for e in evals],
            "eval_loss": [_number(e.eval_loss) for e in evals],
            "perplexity": [_number(e.perplexity) for e in evals],
            "top1": [e.top1 for e in evals],
            "top5": [e.top5 for e in evals],
            "base": [e.base for e in evals],
        },
        "last_step": last.to_dict() if last else None,
    }


def _number(value: float) -> float | None:
    """A float for JSON (NaN and infinities, which JSON lacks, as null)."""
    return value if math.isfinite(value) else None

"""A run that fits a time budget on this device: the rows of a measured run's split that train within the budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlm_core.config import SLICE_PATTERN, TrainConfig
from mlm_core.training.preflight import Preview

HEADROOM = 0.8  # the preset aims at this share of the budget: step times drift between runs on shared machines
MIN_ROWS = 100  # fewer rows make too few blocks to learn or measure anything


@dataclass(frozen=True)
class BudgetFit:
    """The run of `config` cut to fit a budget: its slice, the rows it keeps, its estimated steps and seconds."""

    config: TrainConfig
    rows: int
    steps: int
    estimated_seconds: float
    fits: bool  # False when even MIN_ROWS rows take longer than the budget


def fit_to_budget(config: TrainConfig, measured: Preview, seconds: float | None, steps: int | None) -> BudgetFit:
    """`config` with its slice cut to the first rows whose run takes at most HEADROOM of `seconds` and of `steps`
    (None: no limit), from the step time `measured` by `preview(config)` on this device.

    Time and steps grow with the rows read (the documents of a slice are alike on average), so rows scale by the
    smaller of budget / estimate. ValueError when the config's slice is not `split[...]` or does not start at a row
    number.
    """
    match = SLICE_PATTERN.match(config.slice)
    if not match:
        raise ValueError(f"slice: {config.slice!r} is not a split slice; use e.g. 'train[:5000]'")
    shares = [
        HEADROOM * limit / cost if limit and cost > 0 else math.inf
        for limit, cost in ((seconds, measured.estimated_seconds), (steps, measured.total_steps))
    ]
    share = min(shares)
    if share >= 1:
        return BudgetFit(config, measured.records, measured.total_steps, measured.estimated_seconds, True)
    start = match["start"] or "0"
    if not start.isdigit():
        raise ValueError(
            f"slice: {config.slice!r} starts at {start}; give its first row as a number from the start "
            "of the split, e.g. 'train[1000:]'"
        )
    rows = math.floor(measured.records * share)
    kept = min(measured.records, max(MIN_ROWS, rows))
    cut = config.replace(slice=f"{match['split']}[{'' if start == '0' else start}:{int(start) + kept}]")
    scale = kept / max(1, measured.records)
    return BudgetFit(
        cut, kept, math.ceil(measured.total_steps * scale), measured.estimated_seconds * scale, rows >= MIN_ROWS
    )

"""Quick run's arithmetic: the rows of a measured run that fit a budget of seconds and steps."""

from __future__ import annotations

import pytest

from mlm_core.config import TrainConfig
from mlm_core.tasks import get_task
from mlm_core.training.budget_fit import MIN_ROWS, fit_to_budget
from mlm_core.training.preflight import Preview


def measured(records: int = 5000, steps: int = 1900, seconds_per_step: float = 4.0) -> Preview:
    """A preview as `preview()` reports it for the guides' run on a slow machine."""
    return Preview(
        documents=records,
        tokens=steps * 2048,
        train_blocks=steps * 16,
        eval_blocks=100,
        block_size=128,
        task=get_task("mlm"),
        text_column="answers.text",
        rows_total=None,
        example=[],
        probes=[],
        total_steps=steps,
        seconds_per_step=seconds_per_step,
        estimated_seconds=steps * seconds_per_step,
        memory_bytes=0,
        records=records,
    )


def config(rows: str = "train[:5000]") -> TrainConfig:
    return TrainConfig(
        model="distilbert/distilroberta-base", dataset="dany0407/eli5_category", slice=rows, output_dir="runs/x"
    )


def test_a_run_longer_than_the_budget_keeps_the_rows_that_fit_with_headroom():
    fit = fit_to_budget(config(), measured(), seconds=30 * 60, steps=2000)  # 7,600 s measured, 1,800 s allowed
    assert fit.fits and fit.rows == 947 and fit.config.slice == "train[:947]"  # 5,000 x 0.8 x 1,800 / 7,600
    assert fit.estimated_seconds <= 0.8 * 30 * 60 and fit.steps <= 2000


def test_the_tighter_of_steps_and_minutes_decides():
    fit = fit_to_budget(config(), measured(seconds_per_step=0.01), seconds=30 * 60, steps=190)
    assert fit.rows == 400 and fit.steps == 152  # 5,000 x 0.8 x 190 / 1,900


def test_a_run_within_the_budget_is_kept_whole_and_a_start_row_is_kept():
    assert fit_to_budget(config(), measured(seconds_per_step=0.1), seconds=None, steps=None).config == config()
    fit = fit_to_budget(config("train[1000:6000]"), measured(), seconds=1800, steps=None)
    assert fit.config.slice == "train[1000:1947]"


def test_when_even_the_smallest_slice_is_too_long_it_says_so():
    fit = fit_to_budget(config(), measured(seconds_per_step=100.0), seconds=60, steps=None)
    assert not fit.fits and fit.rows == MIN_ROWS


@pytest.mark.parametrize("rows", ["train[10%:]", "not a slice!"])
def test_a_slice_it_cannot_cut_is_refused_in_words(rows):
    with pytest.raises(ValueError, match="^slice: "):
        fit_to_budget(config(rows), measured(), seconds=60, steps=None)

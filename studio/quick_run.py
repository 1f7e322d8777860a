"""Online, the form starts on the guides' run (their model, ELI5, their slice): its time on this device is measured
once, in the background from the app's start, and *Quick run* cuts its slice to what fits a visitor's budget."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from mlm_core.config import DEFAULT_DATASET, DEFAULT_HUB_SLICE, DEFAULT_MODEL, DEFAULT_TEXT_COLUMN, TrainConfig
from mlm_core.service import launch
from mlm_core.service.launch import BudgetFit, Preview, describe_device, fit_to_budget
from mlm_core.service.shown import hide_paths
from mlm_core.service.workspace import Budget

from .board import duration
from .text import markdown_escaped, plain

PRIVATE_QUICK_MINUTES = 10.0  # a quick run's length where no visitor budget applies (a private app)
MEASURE_TIMEOUT_S = 900.0  # the measurement downloads the model and the slice first
WAIT_S = 120.0  # how long Quick run waits for a measurement still under way


def guide_config(root: Path) -> TrainConfig:
    """The guides' run: DistilRoBERTa on the first 5,000 ELI5 rows, with the engine's defaults (3 epochs, blocks
    of 128)."""
    return TrainConfig(
        model=DEFAULT_MODEL,
        dataset=DEFAULT_DATASET,
        slice=DEFAULT_HUB_SLICE,
        text_column=DEFAULT_TEXT_COLUMN,
        output_dir=str(root / "guide-estimate"),
    )


class GuideEstimate:
    """The guides' run measured on this device (`launch.preview`: the model loads, the data is read, real steps
    are timed), started at construction on a thread, and the quick run cut from it to fit `budget`."""

    def __init__(self, config: TrainConfig, budget: Budget):
        self.config = config
        limited = bool(budget.minutes or budget.steps)
        self.budget = budget if limited else Budget(minutes=PRIVATE_QUICK_MINUTES)
        self.budget_words = (
            f"a visitor's run ({self.budget.describe()})" if limited else f"a quick run ({self.budget.describe()})"
        )
        self.measured: Preview | None = None
        self.error: str | None = None
        self._done = threading.Event()
        threading.Thread(target=self._measure, name="guide-estimate", daemon=True).start()

    def _measure(self) -> None:
        try:
            self.measured = launch.preview(self.config, timeout_s=MEASURE_TIMEOUT_S)
        except ValueError as error:
            self.error = hide_paths(plain(str(error)))
        except Exception as error:  # a child that could not start or answered out of shape: said, not raised
            self.error = f"the measurement failed ({type(error).__name__})"
        finally:
            self._done.set()

    def quick(self, wait_s: float = WAIT_S) -> BudgetFit:
        """The guides' run cut to the budget; ValueError in plain words while the measurement is still under way
        after `wait_s`, or when it failed."""
        if not self._done.wait(wait_s):
            raise ValueError(
                "quick run: the guides' run is still being measured on this device (the model and the "
                "data download first); try again in a minute"
            )
        if self.measured is None:
            raise ValueError(f"quick run: the guides' run could not be measured here ({self.error})")
        return fit_to_budget(
            self.config, self.measured, self.budget.minutes and self.budget.minutes * 60, self.budget.steps
        )

    def note_until_measured(self) -> tuple[str, gr.Timer]:
        """The note, and the page's timer for it turned off once the measurement has ended."""
        return self.note(), gr.Timer(active=not self._done.is_set())

    def note(self) -> str:
        """Markdown for the page: what the guides' run costs on this device, and what Quick run would keep."""
        guide = (
            f"**The guides' run** ({DEFAULT_MODEL} on {DEFAULT_DATASET} `{DEFAULT_HUB_SLICE}`, "
            f"{self.config.epochs} epochs)"
        )
        if not self._done.is_set():
            return f"{guide}: ⏳ measuring its time on {describe_device()}…"
        if self.measured is None:
            return f"{guide}: could not be measured here ({markdown_escaped(self.error or '')})."
        measured, fit = self.measured, self.quick(0)
        line = (
            f"{guide} takes about **{duration(measured.estimated_seconds)}** on {measured.device or describe_device()} "
            f"({measured.total_steps:,} steps at {measured.seconds_per_step:.2f} s, measured)."
        )
        if fit.rows == measured.records:
            return line + f" It fits {self.budget_words}."
        if fit.fits:
            return line + (
                f" **Quick run** keeps its first {fit.rows:,} rows (`{fit.config.slice}`): about "
                f"{fit.steps:,} steps and {duration(fit.estimated_seconds)}, within {self.budget_words}."
            )
        return line + (
            f" Even its first {fit.rows:,} rows make a run longer than {self.budget_words} with this "
            "model: **Quick run** trains the built-in starter model on them instead."
        )

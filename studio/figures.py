"""Plotly figures and tables built from a run's events and from fill-mask results (pure functions)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlm_core.events import Eval, Event, Probe, Step
from mlm_core.service.playground import Guess, word_label
from mlm_core.service.shown import place

_LAYOUT = dict(
    height=320, margin=dict(l=50, r=20, t=50, b=40), template="plotly_white", legend=dict(orientation="h", y=-0.2)
)


SMOOTHING = 0.8  # weight of the past in the smoothed train loss (an exponential moving average, bias-corrected)


def loss_figure(events: Sequence[Event]) -> go.Figure | None:
    """Train loss at every step (raw and smoothed) and eval loss at every evaluation; None before any."""
    steps = [e for e in events if isinstance(e, Step)]
    evals = [e for e in events if isinstance(e, Eval)]
    if not steps and not evals:
        return None
    figure = go.Figure(layout=dict(title="Loss (lower is better)", xaxis_title="step", yaxis_title="loss", **_LAYOUT))
    figure.add_scatter(
        x=[e.step for e in steps],
        y=[e.loss for e in steps],
        mode="lines",
        name="train loss",
        line=dict(color="#c7d2fe", width=1),
    )
    figure.add_scatter(
        x=[e.step for e in steps],
        y=smoothed([e.loss for e in steps]),
        mode="lines",
        name="train loss (smoothed)",
        line=dict(color="#4f46e5", width=2.5),
    )
    figure.add_scatter(
        x=[e.step for e in evals],
        y=[e.eval_loss for e in evals],
        mode="lines+markers",
        name="held-out loss",
        marker=dict(size=7),
        line=dict(color="#f59e0b"),
    )
    return figure


def smoothed(values: Sequence[float], weight: float = SMOOTHING) -> list[float]:
    """An exponential moving average that starts at the first value (bias-corrected, as TensorBoard's); a step that
    measured nothing (NaN: no token hidden) is skipped and keeps the average where it was."""
    out, average, count = [], 0.0, 0
    for value in values:
        if value == value:
            count += 1
            average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**count) if count else math.nan)
    return out


def perplexity_figure(events: Sequence[Event]) -> go.Figure | None:
    """Eval perplexity over the run, with the base model's as a reference line; None before the first."""
    evals = [e for e in events if isinstance(e, Eval)]
    if not evals:
        return None
    figure = go.Figure(
        layout=dict(
            title="Perplexity on held-out text (lower is better)",
            xaxis_title="step",
            yaxis_title="perplexity",
            **_LAYOUT,
        )
    )
    figure.add_scatter(
        x=[e.step for e in evals],
        y=[e.perplexity for e in evals],
        mode="lines+markers",
        name="perplexity",
        marker=dict(size=7),
        line=dict(color="#4f46e5"),
    )
    base = next((e for e in evals if e.base), None)
    if base is not None:
        figure.add_hline(
            y=base.perplexity,
            line_dash="dash",
            line_color="gray",
            annotation_text=f"base model: {base.perplexity:,.1f}",
        )
    return figure


def accuracy_figure(events: Sequence[Event], guessed: str = "hidden words") -> go.Figure | None:
    """Share of held-out hidden (or next) words the model guesses first, and among its top five; None before any."""
    evals = [e for e in events if isinstance(e, Eval) and e.top1 is not None]
    if not evals:
        return None
    figure = go.Figure(
        layout=dict(
            title=f"Held-out {guessed} guessed right (higher is better)",
            xaxis_title="step",
            yaxis_title="guessed right",
            yaxis_tickformat=".0%",
            **_LAYOUT,
        )
    )
    for name, values, color in (
        ("top guess", [e.top1 for e in evals], "#4f46e5"),
        ("among the top 5", [e.top5 for e in evals], "#10b981"),
    ):
        figure.add_scatter(
            x=[e.step for e in evals],
            y=values,
            mode="lines+markers",
            name=name,
            marker=dict(size=7),
            line=dict(color=color),
        )
    return figure


def compare_figures(runs: Sequence[tuple[str, Sequence[Event]]], x: str = "steps") -> tuple[go.Figure, go.Figure]:
    """Train loss and eval perplexity of several runs overlaid, against steps, tokens or epochs."""
    # The legend says which run is which, even for one run (Plotly hides a lone trace's legend by default).
    loss = go.Figure(
        layout=dict(title="Train loss (lower is better)", xaxis_title=x, yaxis_title="loss", showlegend=True, **_LAYOUT)
    )
    ppl = go.Figure(
        layout=dict(
            title="Perplexity on held-out text (lower is better)",
            xaxis_title=x,
            yaxis_title="perplexity",
            showlegend=True,
            **_LAYOUT,
        )
    )
    for index, (label, events) in enumerate(runs):
        color = _PALETTE[index % len(_PALETTE)]
        steps = [e for e in events if isinstance(e, Step)]
        evals = [e for e in events if isinstance(e, Eval)]
        position = _positions(steps, x)
        loss.add_scatter(
            x=[position(e.step, e.epoch) for e in steps],
            y=[e.loss for e in steps],
            mode="lines",
            name=as_plot_text(label),
            line=dict(color=color),
        )
        ppl.add_scatter(
            x=[position(e.step, e.epoch) for e in evals],
            y=[e.perplexity for e in evals],
            mode="lines+markers",
            name=as_plot_text(label),
            line=dict(color=color),
        )
    return loss, ppl


_PALETTE = ("#4f46e5", "#f59e0b", "#10b981", "#ef4444", "#0ea5e9", "#a855f7")
X_AXES = ("steps", "tokens", "epochs")


def _positions(steps: Sequence[Step], x: str):
    """Where an event at (step, epoch) sits on the chosen x axis."""
    if x == "epochs":
        return lambda step, epoch: epoch
    if x == "tokens":
        tokens = {0: 0, **{e.step: e.tokens for e in steps}}
        return lambda step, epoch: tokens.get(step)
    return lambda step, epoch: step


def predictions_figure(guesses: Sequence[Sequence[Guess]], title: str) -> go.Figure:
    """Horizontal bars of each mask's guesses and probabilities, one panel per mask, likeliest on top."""
    n = max(1, len(guesses))
    figure = make_subplots(
        rows=n,
        cols=1,
        subplot_titles=[f"mask {i + 1}" for i in range(n)] if n > 1 else None,
        vertical_spacing=0.12 if n > 1 else 0.0,
    )
    for row, at_mask in enumerate(guesses, start=1):
        at_mask = at_mask[::-1]
        figure.add_bar(
            x=[g.probability for g in at_mask],
            y=[as_plot_text(g.word) for g in at_mask],
            orientation="h",
            text=[f"{g.probability:.1%}" for g in at_mask],
            textposition="auto",
            row=row,
            col=1,
            showlegend=False,
            marker_color="#4f46e5",
        )
        top = max((g.probability for g in at_mask), default=1.0)
        figure.update_xaxes(range=[0, min(1.0, top * 1.2)], tickformat=".0%", row=row, col=1)
    rows = max((len(g) for g in guesses), default=1)
    figure.update_layout(
        title=as_plot_text(title),
        template="plotly_white",
        height=120 + n * (40 + 24 * rows),
        margin=dict(l=110, r=20, t=60, b=30),
    )
    return figure


def as_plot_text(text: str) -> str:
    """Text for a Plotly legend, title, axis label or hover: shown as typed. Plotly renders a subset of HTML there
    (links, styles, line breaks) and decodes entities after reading tags, so escaped text stays text."""
    return html.escape(text, quote=False)


def predictions_table(guesses: Sequence[Sequence[Guess]]) -> list[list[Any]]:
    """Rows of (mask, rank, word, probability, the text with that mask filled and any other shown as ___)."""
    return [
        [m + 1, rank + 1, g.word, round(g.probability, 4), g.text]
        for m, at_mask in enumerate(guesses)
        for rank, g in enumerate(at_mask)
    ]


PROBE_HEADERS = ["probe", "right word", "its rank: start → now", "top guesses now"]


def probe_table(events: Sequence[Event]) -> list[list[str]]:
    """One row per probe: the sentence, the hidden word, where the model ranked it at the start and now, and its
    top guesses now."""
    first: dict[str, Probe] = {}
    last: dict[str, Probe] = {}
    for event in events:
        if isinstance(event, Probe):
            first.setdefault(event.text, event)
            last[event.text] = event
    rows = []
    for text, now in last.items():
        moved = f"{_rank(first[text])} → {_rank(now)}" if now.answer_rank else ""
        guesses = ", ".join(f"{word_label(word)} {score:.0%}" for word, score in now.guesses)
        rows.append([text, now.answer or "", moved, guesses])
    return rows


def _rank(probe: Probe) -> str:
    """'#3 (12%)': where the right word stood among the model's guesses."""
    return f"{place(probe.answer_rank)} ({probe.answer_probability:.0%})"

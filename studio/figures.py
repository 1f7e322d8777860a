"""Plotly figures and tables built from a run's events and from fill-mask results (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mlm_core.events import Eval, Event, Probe, Step

_LAYOUT = dict(height=320, margin=dict(l=50, r=20, t=50, b=40), template="plotly_white",
               legend=dict(orientation="h", y=-0.2))


def loss_figure(events: Sequence[Event]) -> go.Figure:
    """Train loss at every step and eval loss at every evaluation."""
    steps = [e for e in events if isinstance(e, Step)]
    evals = [e for e in events if isinstance(e, Eval)]
    figure = go.Figure(layout=dict(title="Loss (lower is better)", xaxis_title="step", yaxis_title="loss", **_LAYOUT))
    figure.add_scatter(x=[e.step for e in steps], y=[e.loss for e in steps], mode="lines+markers", name="train loss",
                       marker=dict(size=4))
    figure.add_scatter(x=[e.step for e in evals], y=[e.eval_loss for e in evals], mode="lines+markers",
                       name="eval loss", marker=dict(size=8))
    return figure


def perplexity_figure(events: Sequence[Event]) -> go.Figure:
    """Eval perplexity over the run, with the base model's perplexity as a reference line."""
    evals = [e for e in events if isinstance(e, Eval)]
    figure = go.Figure(layout=dict(title="Perplexity on held-out text (lower is better)", xaxis_title="step",
                                   yaxis_title="perplexity", **_LAYOUT))
    figure.add_scatter(x=[e.step for e in evals], y=[e.perplexity for e in evals], mode="lines+markers",
                       name="perplexity", marker=dict(size=8))
    base = next((e for e in evals if e.base), None)
    if base is not None:
        figure.add_hline(y=base.perplexity, line_dash="dash", line_color="gray",
                         annotation_text=f"base model: {base.perplexity:,.1f}")
    return figure


def compare_figures(runs: Sequence[tuple[str, Sequence[Event]]], x: str = "steps") -> tuple[go.Figure, go.Figure]:
    """Train loss and eval perplexity of several runs overlaid, against steps, tokens or epochs."""
    loss = go.Figure(layout=dict(title="Train loss (lower is better)", xaxis_title=x, yaxis_title="loss", **_LAYOUT))
    ppl = go.Figure(layout=dict(title="Perplexity on held-out text (lower is better)", xaxis_title=x,
                                yaxis_title="perplexity", **_LAYOUT))
    for index, (label, events) in enumerate(runs):
        color = _PALETTE[index % len(_PALETTE)]
        steps = [e for e in events if isinstance(e, Step)]
        evals = [e for e in events if isinstance(e, Eval)]
        position = _positions(steps, x)
        loss.add_scatter(x=[position(e.step, e.epoch) for e in steps], y=[e.loss for e in steps], mode="lines",
                         name=label, line=dict(color=color))
        ppl.add_scatter(x=[position(e.step, e.epoch) for e in evals], y=[e.perplexity for e in evals],
                        mode="lines+markers", name=label, line=dict(color=color))
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


def predictions_figure(results: list[list[dict[str, Any]]], title: str) -> go.Figure:
    """Horizontal bars of each mask's guesses and probabilities, one panel per mask, likeliest on top."""
    n = max(1, len(results))
    figure = make_subplots(rows=n, cols=1, subplot_titles=[f"mask {i + 1}" for i in range(n)] if n > 1 else None,
                           vertical_spacing=0.12 if n > 1 else 0.0)
    for row, guesses in enumerate(results, start=1):
        guesses = guesses[::-1]
        figure.add_bar(x=[g["score"] for g in guesses], y=[_label(g["token_str"]) for g in guesses], orientation="h",
                       text=[f"{g['score']:.1%}" for g in guesses], textposition="auto", row=row, col=1,
                       showlegend=False, marker_color="#4f46e5")
        top = max((g["score"] for g in guesses), default=1.0)
        figure.update_xaxes(range=[0, min(1.0, top * 1.2)], tickformat=".0%", row=row, col=1)
    rows = max((len(g) for g in results), default=1)
    figure.update_layout(title=title, template="plotly_white", height=120 + n * (40 + 24 * rows),
                         margin=dict(l=110, r=20, t=60, b=30))
    return figure


def _label(token_str: str) -> str:
    """A guess as shown on an axis: visible even when it is whitespace; distinct bars per distinct token."""
    shown = token_str.strip()
    return shown if shown else repr(token_str)


def predictions_table(results: list[list[dict[str, Any]]]) -> list[list[Any]]:
    """Rows of (mask, rank, word, probability, filled text) for a table."""
    return [[m + 1, rank + 1, g["token_str"].strip() or repr(g["token_str"]), round(g["score"], 4), g["sequence"]]
            for m, guesses in enumerate(results) for rank, g in enumerate(guesses)]


def probe_table(events: Sequence[Event]) -> list[list[Any]]:
    """Rows of (step, probe, top guesses with probabilities) at every evaluation, newest first."""
    rows = [[p.step, p.text, ", ".join(f"{word or '␣'} {score:.0%}" for word, score in p.guesses)]
            for p in events if isinstance(p, Probe)]
    return rows[::-1]

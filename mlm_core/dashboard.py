"""Plain-language text for the app's dashboard, built from events and results (no UI library here)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from .events import Done, Error, Eval, Event, Started, Status, Step


def duration(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s' or '42 s'."""
    if seconds is None or seconds != seconds:
        return "–"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def progress_html(events: Sequence[Event]) -> str:
    """A progress bar with step, epoch, ETA and tokens/s."""
    step = next((e for e in reversed(events) if isinstance(e, Step)), None)
    started = next((e for e in reversed(events) if isinstance(e, Started)), None)
    if step is None:
        total = started.total_steps if started else 0
        return _bar(0.0, f"step 0 / {total:,}" if total else "waiting to start")
    done = next((e for e in reversed(events) if isinstance(e, Done)), None)
    eta = "done" if done else f"ETA {duration(step.eta_s)}"
    label = (f"step {step.step:,} / {step.total_steps:,} · epoch {step.epoch:.2f} · {eta} · "
             f"{step.tokens_per_s:,.0f} tokens/s · elapsed {duration(step.elapsed_s)}")
    return _bar(step.progress, label)


def _bar(fraction: float, label: str) -> str:
    """HTML of one progress bar."""
    percent = max(0.0, min(1.0, fraction)) * 100
    return (f'<div class="mlm-progress" data-progress="{percent:.1f}">'
            f'<div style="background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden">'
            f'<div style="background:#4f46e5;width:{percent:.1f}%;height:100%"></div></div>'
            f'<div style="font-size:0.9em;margin-top:4px">{percent:.0f}% · {html.escape(label)}</div></div>')


def status_line(events: Sequence[Event], state: str) -> str:
    """What the run is doing now, in one line."""
    if not events:
        return "No run yet. Choose a model and data, then press **Start**."
    last = events[-1]
    if isinstance(last, Error):
        return f"❌ The run failed: {last.message}"
    if isinstance(last, Done):
        return f"✅ Run {last.status}." if last.status == "completed" else "⏹ Run stopped; its checkpoint is saved."
    message = next((e.message for e in reversed(events) if isinstance(e, Status)), "")
    prefix = "⏳ Stopping…" if state == "stopping" else "🏃 Training…"
    if any(isinstance(e, Started) for e in events) and not any(isinstance(e, Eval) for e in events):
        message = "Measuring the base model's perplexity first."
    return f"{prefix} {message}".strip()


def outcome_text(results: dict[str, Any] | None) -> str:
    """Base vs fine-tuned perplexity in words a non-programmer understands."""
    if not results or results.get("base_perplexity") is None:
        return ""
    base, final = results["base_perplexity"], results.get("final_perplexity")
    if final is None:
        return (f"The run stopped after {results['steps']:,} steps. Before training, the model's perplexity on your "
                f"held-out text was **{base:,.1f}**. Resume it later from its checkpoint, or start a new run.")
    change = "less" if final < base else "more"
    return (f"**Perplexity {base:,.1f} → {final:,.1f}.** Before fine-tuning, guessing each hidden word of your "
            f"held-out text was as hard for the model as picking among about {base:,.0f} equally likely words; now it "
            f"is about {final:,.0f}. The model is {abs(1 - final / base):.0%} {change} surprised by your kind of text "
            f"(lower is better). It was trained on {results['tokens']:,} tokens in {duration(results['seconds'])} "
            "and is now in the **Fill-mask** tab.")

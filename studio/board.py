"""Plain-language text for the run dashboard, built from a run's events and results (no UI library here)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from mlm_core.events import Done, Error, Eval, Event, Started, Status, Step
from mlm_core.service.shown import MASKED_GUESSED, guessed_by, hide_paths
from mlm_core.service.workspace import COMPLETED, FAILED, INTERRUPTED, QUEUED, RUNNING, STOPPED, RunResults

from .text import escaped


def duration(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s' or '42 s'."""
    if seconds is None or seconds != seconds:
        return "–"
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _last(events: Sequence[Event], kind: type) -> Event | None:
    """The newest event of a kind."""
    return next((e for e in reversed(events) if isinstance(e, kind)), None)


def progress_html(events: Sequence[Event], status: str) -> str:
    """A progress bar with step, epoch, ETA and tokens/s."""
    step = _last(events, Step)
    if step is None:
        started = _last(events, Started)
        total = started.total_steps if started else 0
        return _bar(0.0, f"step 0 / {total:,}" if total else "waiting to start")
    if status == RUNNING:
        timing = f"ETA {duration(step.eta_s)}"
    else:
        timing = {COMPLETED: "done", STOPPED: f"stopped at step {step.step:,}"}.get(status, status)
    label = (
        f"step {step.step:,} / {step.total_steps:,} · epoch {step.epoch:.2f} · {timing} · "
        f"{step.tokens_per_s:,.0f} tokens/s · elapsed {duration(step.elapsed_s)}"
    )
    return _bar(step.progress, label)


def _bar(fraction: float, label: str) -> str:
    """HTML of one progress bar."""
    percent = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<div class="mlm-progress" data-progress="{percent:.1f}">'
        f'<div style="background:#e5e7eb;border-radius:6px;height:14px;overflow:hidden">'
        f'<div style="background:#4f46e5;width:{percent:.1f}%;height:100%"></div></div>'
        f'<div style="font-size:0.9em;margin-top:4px">{percent:.0f}% · {html.escape(label)}</div></div>'
    )


def status_line(
    events: Sequence[Event],
    status: str,
    stopping: bool = False,
    position: int | None = None,
    wait_s: float | None = None,
    why: str | None = None,
) -> str:
    """What the run is doing now, as one line of HTML (whatever a visitor typed is shown as text); `why` a stopped
    run stopped, in words (its results' message)."""
    if status == QUEUED:
        when = f"; it should start in about {duration(wait_s)}" if wait_s is not None else ""
        return f"⏳ Queued, position {position or '?'}: it trains when the runs before it are done{when}."
    last = events[-1] if events else None
    if status == FAILED or isinstance(last, Error):
        error = _last(events, Error)
        return "❌ The run failed: " + escaped(hide_paths(error.message) if error else "see its events")
    if status == COMPLETED:
        return "✅ Run completed."
    step = _last(events, Step)
    if status == STOPPED:
        sentence = (why[0].upper() + why[1:] if why.startswith("paused") else f"It {why}") if why else ""
        because = f" {escaped(hide_paths(sentence))}." if why else ""
        return f"⏹ Run stopped at step {step.step if step else 0:,}; its checkpoint is saved.{because}"
    if status == INTERRUPTED:
        return f"⚠️ Run interrupted at step {step.step if step else 0:,} (the app stopped); resume it from Runs."
    if not events:
        return "No run yet. Choose a model and data, then press <b>Start</b>."
    message = next((e.message for e in reversed(events) if isinstance(e, Status)), "")
    if _last(events, Started) is not None and _last(events, Eval) is None:
        message = "Measuring the base model's perplexity first."
    return f"{'⏳ Stopping…' if stopping else '🏃 Training…'} {escaped(hide_paths(message))}".strip()


def between_calls(events: Sequence[Event]) -> str:
    """On ZeroGPU, a run waiting for its next GPU call (a slice)."""
    step = _last(events, Step)
    return (
        f"⏳ Trained to step {step.step if step else 0:,} in GPU calls; the next one starts in a moment. Keep this "
        "page open: on ZeroGPU a run trains while its page is, and pauses when it is closed."
    )


def outcome_text(results: RunResults | None) -> str:
    """Base vs fine-tuned perplexity and accuracy in words a non-programmer understands (HTML)."""
    if results is None or results.base_perplexity is None:
        return ""
    base, final = results.base_perplexity, results.final_perplexity
    if final is None:
        return (
            f"The run stopped after {results.steps:,} steps. Before training, the model's perplexity on your "
            f"held-out text was <b>{base:,.1f}</b>. Resume it from the Runs tab, or start a new run."
        )
    change = "less" if final < base else "more"
    ending = (
        " and is now in the <b>Fill-mask</b> tab."
        if results.status == COMPLETED
        else f"; it stopped after {results.steps:,} steps (figures from its last evaluation): resume it from the "
        "Runs tab to finish it."
    )
    return (
        f"<b>Perplexity {base:,.1f} → {final:,.1f}.</b> Before fine-tuning, guessing each hidden word of your "
        f"held-out text was as hard for the model as picking among about {base:,.0f} equally likely words; now it "
        f"is about {final:,.0f}. The model is {abs(1 - final / base):.0%} {change} surprised by your kind of text "
        f"(lower is better).{accuracy_text(results)}{added_text(results)} It was trained on {results.tokens:,} "
        f"tokens in {duration(results.seconds)}{on_device(results)}{ending}"
    )


def on_device(results: RunResults) -> str:
    """' on the CPU (2 threads)': where the run trained, as it recorded it (empty for a run that did not)."""
    return f" on the {escaped(results.device)}" if results.device else ""


def added_text(results: RunResults) -> str:
    """' 12 of your words were added as tokens of their own: ...', and that its perplexities do not compare with a run
    without them (empty when none were; the words escaped)."""
    words = results.added_words
    if not words:
        return ""
    shown = ", ".join(escaped(word) for word in words[:10]) + (", …" if len(words) > 10 else "")
    saved = f"; your text takes {results.tokens_saved:.0%} fewer tokens" if results.tokens_saved is not None else ""
    return (
        f" {len(words):,} of your words were added as tokens of their own ({shown}){saved}. Its perplexities are"
        " measured on these tokens, so they do not compare with those of a run without them."
    )


def accuracy_text(results: RunResults) -> str:
    """' It now guesses 41% of the hidden words right, up from 30% ...' (empty when not measured)."""
    if results.final_top1 is None or results.base_top1 is None:
        return ""
    words = results.accuracy_counts or (
        "hidden pieces" if guessed_by(results.task) == MASKED_GUESSED else "next tokens"
    )  # runs before words were counted
    return (
        f" It now guesses <b>{results.final_top1:.0%} of the {words}</b> of your held-out text right, "
        f"{_change(results.base_top1, results.final_top1)}; the right word is among its five likeliest guesses "
        f"{results.final_top5:.0%} of the time, {_change(results.base_top5, results.final_top5)}."
    )


def _change(before: float, after: float) -> str:
    """'up from 30%' or 'down from 30%'."""
    return f"{'up' if after >= before else 'down'} from {before:.0%}"


def results_from(events: Sequence[Event]) -> RunResults | None:
    """The results carried by the run's last Done event."""
    done = _last(events, Done)
    return RunResults.from_dict(done.results) if done is not None else None


def owner_note(yours: bool, public: bool) -> str:
    """Who may act on the run shown, said before anyone clicks (public mode only)."""
    if not public:
        return ""
    if yours:
        return "<small>This is your run: you can stop it here, and resume, delete or push it in Runs.</small>"
    return (
        "<small>Another visitor started this run: you can watch it and use its model in Fill-mask; only they "
        "can stop it.</small>"
    )


def guessed_words(events: Sequence[Event]) -> str:
    """What the run's accuracy counts: 'hidden words' (masked LM) or 'next tokens' (causal LM)."""
    started = _last(events, Started)
    return guessed_by(started.task if started is not None else None)

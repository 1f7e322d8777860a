"""Words on the page: refusals in plain language, and whatever a visitor typed shown as text, never as markup."""

from __future__ import annotations

import html
import re
import sys

import gradio as gr

# The engine names fields as the CLI spells them ("block_size: ..."); the page names them as its form does.
FIELD_LABELS = {
    "model": "Base model", "dataset": "Data", "dataset_file": "Your file", "slice": "Rows",
    "text_column": "Text column",
    "block_size": "Block size", "mlm_probability": "Masking probability", "whole_word_masking": "Whole-word masking",
    "epochs": "Epochs", "max_steps": "Max steps", "learning_rate": "Learning rate", "weight_decay": "Weight decay",
    "warmup_ratio": "Warm-up", "batch_size": "Batch size", "gradient_accumulation": "Gradient accumulation",
    "eval_fraction": "Held-out share", "seed": "Seed", "output_dir": "Run", "save_steps": "Save every",
    "eval_steps": "Evaluate every", "run": "Run", "text": "Text", "top_k": "Guesses per mask", "targets": "Candidates",
    "prompt": "Prompt", "max_new_tokens": "Max new tokens", "temperature": "Temperature", "repo_id": "Hub repository",
    "token": "Hub token", "label": "Label", "probes": "Probe sentences", "task": "Task",
}
_FIELD_PREFIX = re.compile(r"^([a-z_]+): ")


def plain(message: str) -> str:
    """An engine message with its field identifier replaced by the form's label ("block_size: x" -> "Block size: x")."""
    match = _FIELD_PREFIX.match(message)
    if match and match[1] in FIELD_LABELS:
        return f"{FIELD_LABELS[match[1]]}: {message[match.end():]}"
    return message


def escaped(text: object) -> str:
    """Text for an HTML component or a toast: shown as typed (`<mask>` stays visible, no tag is made)."""
    return html.escape(str(text), quote=True)


def markdown_escaped(text: object) -> str:
    """Text for a Markdown component: shown as typed, with no live link, image, emphasis or code."""
    # An HTML entity is shown as its character, but Markdown no longer reads it as syntax (":" ends autolinks).
    return re.sub(r"[\\`*_\[\]()!#|~:]", lambda m: f"&#{ord(m[0])};", escaped(text))


def refusal(error: Exception | str) -> gr.Error:
    """A refused action as an error toast (Gradio renders its message as HTML, so it is escaped)."""
    return gr.Error(escaped(plain(str(error))), print_exception=False)


def quiet_component_refusals() -> None:
    """Log Gradio's own refusals of bad input (a slider value out of range, a choice not offered) as one line.

    Gradio prints a traceback for them as if they were faults, while the visitor gets a plain message; the log keeps
    tracebacks for real faults only.
    """
    import gradio.queueing as queueing

    real = queueing.traceback
    if isinstance(real, _QuietTraceback):
        return
    queueing.traceback = _QuietTraceback(real)


class _QuietTraceback:
    """The traceback module as gradio.queueing uses it, minus the traceback of a refusal."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def print_exc(self, *args, **kwargs) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, gr.Error):
            print(f"refused: {error.message}", file=sys.stderr)
        else:
            self._real.print_exc(*args, **kwargs)

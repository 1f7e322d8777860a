"""Words on the page: refusals in plain language, and whatever a visitor typed shown as text, never as markup."""

from __future__ import annotations

import html
import re

import gradio as gr

from mlm_core.service.shown import hide_paths

# The engine names fields as the CLI spells them ("block_size: ..."); the page names them as its form does.
FIELD_LABELS = {
    "model": "Base model",
    "dataset": "Data",
    "dataset_file": "Your file",
    "slice": "Rows",
    "text_column": "Text column",
    "block_size": "Block size",
    "mlm_probability": "Masking probability",
    "whole_word_masking": "Whole-word masking",
    "add_words": "Add your words",
    "epochs": "Epochs",
    "max_steps": "Max steps",
    "learning_rate": "Learning rate",
    "weight_decay": "Weight decay",
    "warmup_ratio": "Warm-up",
    "batch_size": "Batch size",
    "gradient_accumulation": "Gradient accumulation",
    "eval_fraction": "Held-out share",
    "seed": "Seed",
    "output_dir": "Run",
    "save_steps": "Save every",
    "eval_steps": "Evaluate every",
    "report_to": "Experiment tracker",
    "run": "Run",
    "text": "Text",
    "top_k": "Guesses per mask",
    "targets": "Candidates",
    "prompt": "Prompt",
    "max_new_tokens": "Max new tokens",
    "temperature": "Temperature",
    "repo_id": "Hub repository",
    "token": "Hub token",
    "label": "Label",
    "probes": "Probe sentences",
    "task": "Task",
}
_FIELD_PREFIX = re.compile(r"^([a-z_]+): ")


def plain(message: str) -> str:
    """An engine message with its field identifier replaced by the form's label ("block_size: x" -> "Block size: x")."""
    match = _FIELD_PREFIX.match(message)
    if match and match[1] in FIELD_LABELS:
        return f"{FIELD_LABELS[match[1]]}: {message[match.end() :]}"
    return message


def escaped(text: object) -> str:
    """Text for an HTML component or a toast: shown as typed (`<mask>` stays visible, no tag is made)."""
    return html.escape(str(text), quote=True)


def markdown_escaped(text: object) -> str:
    """Text for a Markdown component: shown as typed, with no live link, image, emphasis or code."""
    # An HTML entity is shown as its character, but Markdown no longer reads it as syntax (":" ends autolinks). One
    # pass: escaping HTML first made `'` into `&#x27;`, whose `#` was then escaped and shown.
    return re.sub(r"[\\`*_\[\]()!#|~:&<>\"']", lambda m: f"&#{ord(m[0])};", str(text))


def refusal(error: Exception | str) -> gr.Error:
    """A refused action as an error toast (a gr.Error, for the handler to raise): plain words, no server path,
    escaped (Gradio renders it as HTML)."""
    return gr.Error(escaped(hide_paths(plain(str(error)))), print_exception=False)

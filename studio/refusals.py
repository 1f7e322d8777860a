"""Gradio's own refusals of bad input (a value out of a slider's range, a choice not offered, a file path that was
never uploaded) in plain words, logged as one line: tracebacks in the log are kept for real faults."""

from __future__ import annotations

import sys

import gradio as gr
from gradio.exceptions import InvalidPathError

NOT_UPLOADED = "Your file: upload it with the form; this server reads no other file"


def install() -> None:
    """Adjust how Gradio's queue reports errors raised before a handler runs (idempotent)."""
    import gradio.queueing as queueing

    if not isinstance(queueing.traceback, _QuietTraceback):
        queueing.traceback = _QuietTraceback(queueing.traceback)
        queueing.error_payload = _plain_payload(queueing.error_payload)


def _is_refusal(error: BaseException | None) -> bool:
    """Whether the error answers bad input rather than a fault."""
    return isinstance(error, (gr.Error, InvalidPathError))


class _QuietTraceback:
    """The traceback module as gradio.queueing uses it, minus the traceback of a refusal."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    def print_exc(self, *args, **kwargs) -> None:
        """As `traceback.print_exc`, but a refusal is one line on stderr."""
        error = sys.exc_info()[1]
        if _is_refusal(error):
            print(f"refused: {getattr(error, 'message', None) or error}", file=sys.stderr)
        else:
            self._real.print_exc(*args, **kwargs)


def _plain_payload(real):
    """Gradio's error payload, with a file path nobody uploaded refused in words instead of a generic error."""

    def payload(error, show_error):
        """Gradio's payload for `error`, a path nobody uploaded refused in words."""
        if isinstance(error, InvalidPathError):
            error = gr.Error(NOT_UPLOADED, print_exception=False)
        return real(error, show_error)

    return payload

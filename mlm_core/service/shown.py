"""What the page may show of the engine's words: no path of this machine, and what a run's accuracy counts."""

from __future__ import annotations

from mlm_core.system.redact import hide_paths
from mlm_core.tasks import MaskedLM, get_task

__all__ = ["MASKED_GUESSED", "guessed_by", "hide_paths"]

MASKED_GUESSED = MaskedLM.guessed


def guessed_by(task: str | None) -> str:
    """What the accuracy of a run of this task counts, in words ('hidden words', 'next tokens'; a masked LM's when
    the task is not known)."""
    return (get_task(task) if task else MaskedLM).guessed

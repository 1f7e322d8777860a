"""What the page may show of the engine's words: no path of this machine, and what a run's accuracy counts."""

from __future__ import annotations

from mlm_core.system.redact import hide_paths
from mlm_core.tasks import MaskedLM, get_task

__all__ = ["MASKED_GUESSED", "guessed_by", "hide_paths", "place"]

MASKED_GUESSED = MaskedLM.guessed
# A rank past this counts the one-piece tokens the model finds likelier, not words it would propose: said in words.
RANKS_TOLD = 1000


def guessed_by(task: str | None) -> str:
    """What the accuracy of a run of this task counts, in words ('hidden words', 'next tokens'; a masked LM's when
    the task is not known)."""
    return (get_task(task) if task else MaskedLM).guessed


def place(rank: int, told: str = "") -> str:
    """A right word's rank among a model's guesses as a person reads it: '#3' (after `told`, e.g. 'guess #3'), or
    'not in its top 1,000 words'."""
    return f"{told}#{rank:,}" if rank <= RANKS_TOLD else f"not in its top {RANKS_TOLD:,} words"

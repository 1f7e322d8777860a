"""What the app checks and loads once at start, and what its header says of this machine: the device, the hub,
the runs folder, the built-in text and model."""

from __future__ import annotations

import inspect
from pathlib import Path

from mlm_core.data.builtin_corpus import reference_records
from mlm_core.models.loading import describe_device, preload
from mlm_core.runs.model_sources import STARTER, STARTER_DIR
from mlm_core.system import settings
from mlm_core.system.hub_access import forbid_local_paths, is_online
from mlm_core.system.storage import RunsStorage, check_runs_folder

__all__ = [
    "STARTER",
    "STARTER_DIR",
    "RunsStorage",
    "builtin_text",
    "check_runs_folder",
    "describe_device",
    "describe_hardware",
    "forbid_local_paths",
    "is_online",
    "preload",
    "settings",
    "starter_summary",
]


def describe_hardware() -> str:
    """What the header says the app runs on: the device, or on ZeroGPU what is lent per call and what is not."""
    if settings.current().zero_gpu:
        return (
            "ZeroGPU: a GPU lent per call for fill-mask, surprise, generation and training (in calls of "
            f"{settings.current().gpu_slice_s:.0f} s while the run's page is open); Preview measures on the "
            f"{describe_device()}"
        )
    return describe_device()


def builtin_text() -> str:
    """What the built-in corpus is, from the function that reads it (its docstring's subject) and its size."""
    records = reference_records()
    subject = inspect.getdoc(reference_records).split(",")[0]  # "The Python language reference (`pydoc_data...`)"
    words = sum(len(record["text"].split()) for record in records)
    return f"{subject}, {len(records)} topics, {words:,} words."


def starter_summary(card: Path = STARTER_DIR / "README.md") -> str:
    """What the starter model is, from the last paragraph of its model card (what it was trained on and knows);
    empty without a card."""
    try:
        paragraphs = [" ".join(p.split()) for p in card.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    except OSError:
        return ""
    return paragraphs[-1] if paragraphs else ""

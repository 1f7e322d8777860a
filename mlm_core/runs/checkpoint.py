"""Checkpoints of a run: model and tokenizer as safetensors, optimizer, scheduler, RNG and data position."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from mlm_core.system.atomic_files import atomic_dir, read_json, write_json

TRAINING_STATE = "training_state.pt"
PROGRESS = "progress.json"


def checkpoint_dirs(root: Path) -> list[Path]:
    """The complete checkpoints in a run's checkpoints folder, oldest first (partial ones never carry the name)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and (p / PROGRESS).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = checkpoint_dirs(root)
    return found[-1] if found else None


def save_checkpoint(
    root: Path, model, tokenizer, training_state: dict[str, Any], progress: dict[str, Any], keep: int = 1
) -> Path:
    """Write a checkpoint atomically into the checkpoints folder `root`, then drop all but the newest `keep`; an
    error while writing leaves no partial checkpoint and passes through (re-raised)."""
    target = root / f"step-{progress['step']:07d}"
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(training_state, tmp / TRAINING_STATE)
        write_json(tmp / PROGRESS, progress)
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(training state, progress) of a checkpoint; tensors only, no pickled code is run (pickle.UnpicklingError for
    a state that holds anything else)."""
    state = torch.load(path / TRAINING_STATE, map_location="cpu", weights_only=True)
    return state, read_json(path / PROGRESS)


def rng_state() -> dict[str, Any]:
    """The global RNG states that dropout draws from."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the global RNG states saved by `rng_state`."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model(target: Path, model, tokenizer) -> Path:
    """Save the final model and tokenizer (safetensors) into the folder `target`, atomically; an error while saving
    leaves `target` as it was and passes through (re-raised)."""
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return target

"""What a run folder records about a run (its identity and its results), its statuses, and run names."""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlm_core.system import settings

PERSISTENT_MOUNT = Path("/data")  # where the README has a Space mount its Storage Bucket; the rest goes at a restart
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
RUN_PREFIX = "run:"  # `run:NAME` names the saved model of a run of the runs folder wherever a model is asked for
QUEUED, RUNNING, STOPPED, INTERRUPTED, COMPLETED, FAILED = (
    "queued",
    "running",
    "stopped",
    "interrupted",
    "completed",
    "failed",
)
RESUMABLE = {STOPPED, INTERRUPTED}


def runs_root() -> Path:
    """MLM_STUDIO_RUNS if set, else /data/mlm-studio-runs where /data is writable (a Space's bucket), else ./runs."""
    if settings.current().runs:
        return Path(settings.current().runs)
    if PERSISTENT_MOUNT.is_dir() and os.access(PERSISTENT_MOUNT, os.W_OK):
        return PERSISTENT_MOUNT / "mlm-studio-runs"
    return Path("runs")


def check_run_name(name: Any) -> str:
    """The name itself when it is a safe folder name; ValueError otherwise."""
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name) or ".." in name:
        raise ValueError("run: choose a run by its name (letters, digits, '.', '_' and '-')")
    return name


def new_run_name(model: str, dataset: str) -> str:
    """A unique, readable name such as 20261123-142501-starter-builtin-3f2a9c01 (32 random bits: 16 made a clash
    among the runs started in one second likely enough to matter on a public Space, #34)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{model.rsplit('/', 1)[-1]}-{dataset.rsplit('/', 1)[-1]}").strip("-")
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug[:40]}-{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RunResults:
    """What a finished (completed, stopped or failed) run measured; results.json."""

    status: str
    model: str = ""
    dataset: str = ""
    task: str | None = None
    device: str | None = None
    steps: int = 0
    total_steps: int = 0
    epochs: float = 0.0
    tokens: int = 0
    seconds: float = 0.0
    train_blocks: int = 0
    eval_blocks: int = 0  # the held-out sample the base and final figures were measured on
    block_size: int = 0
    base_eval_loss: float | None = None
    base_perplexity: float | None = None
    accuracy_counts: str | None = None  # what the accuracies count ("hidden words", "next tokens"); None: pieces
    base_top1: float | None = None  # share of held-out hidden words the base model guessed first
    base_top5: float | None = None  # ... among its five likeliest guesses
    final_eval_loss: float | None = None
    final_perplexity: float | None = None
    final_top1: float | None = None
    final_top5: float | None = None
    last_eval_loss: float | None = None
    added_words: list[str] = dataclasses.field(default_factory=list)  # the text's words made tokens (`add_words`)
    tokens_saved: float | None = None  # share of the text's tokens that adding them saved (on its first texts)
    message: str | None = None  # why a failed run failed

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunResults:
        """From results.json; keys it does not know (written by other versions) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass(frozen=True)
class Budget:
    """How far a run may train (a public Space gives each visitor's run one); None: no limit."""

    steps: int | None = None
    minutes: float | None = None

    def exceeded(self, step: int, seconds: float) -> bool:
        """Whether a run at `step` after `seconds` of training has used its budget."""
        return (self.steps is not None and step >= self.steps) or (
            self.minutes is not None and seconds >= self.minutes * 60
        )

    def describe(self) -> str:
        """'2,000 steps or 30 minutes'."""
        parts = ([f"{self.steps:,} steps"] if self.steps else []) + (
            [f"{self.minutes:g} minutes"] if self.minutes else []
        )
        return " or ".join(parts) or "no limit"


@dataclass(frozen=True)
class RunIdentity:
    """Who made the run and how it is listed; run.json."""

    label: str = ""
    owner: str | None = None  # an opaque visitor id (the app's business); None: the machine's user
    user: str | None = None  # the Hugging Face user who started it, when signed in
    address: str | None = None  # an opaque hash of the client address it came from (the app's limits count it)
    created: float = field(default_factory=time.time)
    source: str = "cli"  # "app" or "cli"
    queued_at: float | None = None  # set while the run waits in the app's queue
    resume: bool = False  # the queued run continues from its checkpoint
    probes: tuple[str, ...] = ()
    budget: Budget = field(default_factory=Budget)
    kept: bool = False  # started by the owner: public mode's retention never deletes it

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**dataclasses.asdict(self), "probes": list(self.probes)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunIdentity:
        """From run.json; keys it does not know are ignored (TypeError for a budget that is not a dict of its
        fields)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        return cls(
            **{**values, "probes": tuple(values.get("probes") or ()), "budget": Budget(**(values.get("budget") or {}))}
        )

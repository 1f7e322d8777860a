"""Typed progress events: the only thing a front end consumes from a training run."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from mlm_core.system.atomic_files import trim_torn_tail


@dataclass(frozen=True)
class Event:
    """Base of every event; `kind` names it in JSON, `time` is Unix seconds."""

    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with a `type` key."""
        return {"type": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class Status(Event):
    """A human-readable line about what the run is doing."""

    kind: ClassVar[str] = "status"
    message: str


@dataclass(frozen=True)
class Started(Event):
    """The run has its data and model and is about to train."""

    kind: ClassVar[str] = "started"
    run_dir: str
    model: str
    task: str  # "mlm" or "clm"
    device: str
    total_steps: int
    train_blocks: int
    eval_blocks: int
    block_size: int
    resumed_from_step: int = 0


@dataclass(frozen=True)
class Step(Event):
    """One optimizer step finished."""

    kind: ClassVar[str] = "step"
    step: int
    total_steps: int
    epoch: float  # fractional epochs done
    loss: float
    learning_rate: float
    tokens: int  # tokens trained on so far
    tokens_per_s: float
    elapsed_s: float
    eta_s: float

    @property
    def progress(self) -> float:
        """Share of the run done, 0 to 1."""
        return self.step / self.total_steps if self.total_steps else 0.0


@dataclass(frozen=True)
class Eval(Event):
    """Perplexity and word accuracy on the held-out sample; `base` marks the measurement before the first step."""

    kind: ClassVar[str] = "eval"
    step: int
    epoch: float
    eval_loss: float
    perplexity: float
    base: bool = False
    top1: float | None = None  # share of the hidden (masked LM) or next (causal LM) tokens guessed first
    top5: float | None = None  # share among the five likeliest guesses
    seconds: float = 0.0  # how long the evaluation took


@dataclass(frozen=True)
class Probe(Event):
    """A probe sentence re-scored at an evaluation: the top guesses for its first mask, as (word, probability), and
    where the right word ranks when it is known."""

    kind: ClassVar[str] = "probe"
    step: int
    text: str
    guesses: list[tuple[str, float]]
    answer: str | None = None  # the hidden word, when known
    answer_rank: int | None = None  # its place among the model's guesses (1: the top guess)
    answer_probability: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """As the base, with guesses as JSON lists so a read-back event compares equal."""
        return {**super().to_dict(), "guesses": [[word, p] for word, p in self.guesses]}


@dataclass(frozen=True)
class Checkpoint(Event):
    """A checkpoint was written (atomically) at this step."""

    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str


@dataclass(frozen=True)
class Done(Event):
    """The run ended: `status` is 'completed' or 'stopped'; `results` is what results.json holds."""

    kind: ClassVar[str] = "done"
    status: str
    results: dict[str, Any]


@dataclass(frozen=True)
class Error(Event):
    """The run failed; `message` is one plain line."""

    kind: ClassVar[str] = "error"
    message: str


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls for cls in (Status, Started, Step, Eval, Probe, Checkpoint, Done, Error)
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from its JSON dict (as written to events.jsonl); KeyError for a missing or unknown type,
    TypeError when a field it needs is missing."""
    values = dict(data)
    cls = EVENT_TYPES[values.pop("type")]
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in names})


class EventLog:
    """Appends events to events.jsonl, one JSON object a line, thread-safe."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        if path.is_file():
            trim_torn_tail(path)  # a resumed run appends after the last complete event

    def write(self, event: Event) -> None:
        """Append one event and flush it to the file."""
        line = json.dumps(event.to_dict(), default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def read_events(path: Path) -> list[Event]:
    """Every complete event of an events.jsonl; a line torn by a crash is skipped."""
    if not path.is_file():
        return []
    return parse_events(path.read_text(encoding="utf-8").splitlines())


def parse_events(lines: list[str]) -> list[Event]:
    """The events of events.jsonl lines; a line that is not a complete event is skipped."""
    events = []
    for line in lines:
        try:
            events.append(event_from_dict(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return events

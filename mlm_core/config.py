"""TrainConfig: every hyper-parameter of a run, validated on construction, and the command line that repeats it."""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

DEFAULT_MODEL = "distilbert/distilroberta-base"
DEFAULT_CAUSAL_MODEL = "distilbert/distilgpt2"
DEFAULT_DATASET = "dany0407/eli5_category"
DEFAULT_TEXT_COLUMN = "answers.text"  # the answers of ELI5, flattened as the guides do
DEFAULT_HUB_SLICE = "train[:5000]"  # a hub dataset can be huge: the guides' slice is offered for a first run
BUILTIN_DATASETS = ("builtin", "builtin-docstrings")
FILE_DATASET = "file"
STARTER_LEARNING_RATE = 1e-3  # the small built-in model learns from scratch-like weights: larger steps
NO_TRACKER = "none"

# `split`, or `split[start:stop]` where start/stop are integers or percentages, as `datasets` accepts them.
MAX_ADDED_WORDS = 5000
SLICE_PATTERN = re.compile(r"^(?P<split>[A-Za-z_][\w.-]*)(\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\])?$")


def _field(default: Any, help: str, **rules: Any) -> Any:
    """A dataclass field whose metadata carries the UI hint and the validation rules."""
    return field(default=default, metadata={"help": help, **rules})


@dataclass(frozen=True)
class TrainConfig:
    """One fine-tuning run: model, data, and every hyper-parameter; ValueError naming the first bad field on
    construction."""

    model: str = _field(
        DEFAULT_MODEL,
        "Base model: a hub id, 'starter' (the built-in model), a finished run as "
        "'run:NAME', or (on your own machine) a local folder.",
        max_length=200,
    )
    dataset: str = _field(
        DEFAULT_DATASET,
        "Text to learn from: a hub dataset id, 'builtin', 'builtin-docstrings', or 'file'.",
        max_length=200,
    )
    dataset_file: str | None = _field(
        None,
        "Path of an uploaded file: text (.txt, .md, .jsonl, .json), a table (.csv, .tsv, .xlsx, .ods, .parquet) or "
        "a document (.docx, .pdf) (dataset 'file').",
        max_length=4096,
    )
    slice: str = _field(
        "train", "Which rows to use: 'train' for all, or e.g. 'train[:5000]' or 'train[10%:20%]'.", max_length=64
    )
    text_column: str | None = _field(
        None,
        "Column holding the text (nested fields as 'answers.text'), or several separated by commas, joined per "
        "row; empty: detect ('text' if there is one, else every column of sentences).",
        max_length=200,
    )
    block_size: int = _field(128, "Tokens the model reads at once; text is cut into blocks this long.", min=8, max=8192)
    mlm_probability: float = _field(
        0.15, "Share of tokens hidden for the model to guess (masked models only).", min=0.0, max=1.0, open=True
    )
    whole_word_masking: bool = _field(False, "Hide whole words instead of single word pieces.")
    epochs: int = _field(3, "Passes over the training text.", min=1, max=1000)
    max_steps: int | None = _field(
        None, "Stop after this many optimizer steps (overrides epochs); empty: no limit.", min=1
    )
    learning_rate: float = _field(
        2e-5, "How big each update is; too high diverges, too low learns slowly.", min=0.0, max=1.0, open_min=True
    )
    weight_decay: float = _field(0.01, "Pulls weights towards zero to reduce over-fitting.", min=0.0, max=1.0)
    warmup_ratio: float = _field(
        0.0, "Share of steps over which the learning rate ramps up from zero.", min=0.0, max=0.9
    )
    batch_size: int = _field(16, "Blocks per step; larger is smoother but needs more memory.", min=1, max=4096)
    gradient_accumulation: int = _field(1, "Steps whose gradients are summed before one update.", min=1, max=1024)
    eval_fraction: float = _field(
        0.1, "Share of blocks held out to measure perplexity.", min=0.0, max=0.5, open_min=True
    )
    seed: int = _field(42, "Random seed: the same seed gives the same run.", min=0, max=2**32 - 1)
    output_dir: str = _field(
        "runs/run", "Folder the run writes its checkpoints, model and results to.", max_length=4096
    )
    save_steps: int = _field(0, "Also save a checkpoint every N steps (0: at each epoch end only).", min=0)
    eval_steps: int = _field(0, "Measure perplexity and accuracy every N steps (0: about ten times per run).", min=0)
    add_words: int = _field(
        0,
        "Add up to this many words your text uses often that the model's vocabulary cuts into pieces, as new "
        "tokens started from their pieces (masked models; 0: none).",
        min=0,
        max=MAX_ADDED_WORDS,
    )
    report_to: str = _field(
        NO_TRACKER,
        "Also send the metrics to an experiment tracker: 'none', 'trackio' (kept offline, in the runs "
        "folder), or another one Accelerate supports that is installed here ('tensorboard', 'wandb', ...).",
        max_length=64,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_field(f, getattr(self, f.name))
        self._check_sources()

    def _check_sources(self) -> None:
        if not self.model.strip():
            raise ValueError("model: give a hub id, a local folder or 'starter'")
        if not self.dataset.strip():
            raise ValueError(f"dataset: give a hub dataset id, {', '.join(BUILTIN_DATASETS)} or '{FILE_DATASET}'")
        if self.dataset == FILE_DATASET and not self.dataset_file:
            raise ValueError("dataset_file: dataset 'file' needs the path of an uploaded file")
        if self.dataset_file and self.dataset != FILE_DATASET:
            raise ValueError(f"dataset: a dataset_file was given, so dataset must be '{FILE_DATASET}'")
        if not SLICE_PATTERN.match(self.slice):
            raise ValueError(
                f"slice: {self.slice!r} is not a split slice; use e.g. 'train', 'train[:5000]' or 'train[10%:20%]'"
            )
        if not self.output_dir.strip():
            raise ValueError("output_dir: give a folder for the run")
        check_report_to(self.report_to, installed=False)  # a run's saved settings stay valid if a tracker goes

    @property
    def is_builtin_dataset(self) -> bool:
        """Whether the text comes from the corpus CPython ships."""
        return self.dataset in BUILTIN_DATASETS

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        """Build from a dict; ValueError naming the first unknown key, or (as construction) the first bad value."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{unknown[0]}: not a setting; known settings are {', '.join(sorted(known))}")
        return cls(**values)

    def replace(self, **changes: Any) -> "TrainConfig":
        """A validated copy with some fields changed; ValueError naming a bad value, TypeError for an unknown name."""
        return dataclasses.replace(self, **changes)


def default_learning_rate(model: str) -> float:
    """The guides' 2e-5 for pre-trained hub models; the small starter learns faster with 1e-3 (of 5e-4, 1e-3 and
    2e-3, the best held-out accuracy after the default run)."""
    return STARTER_LEARNING_RATE if model.strip() == "starter" else TrainConfig.learning_rate


def trackers(installed: bool = True) -> list[str]:
    """'none' and the experiment trackers Accelerate supports (by default only those installed here), trackio first."""
    from accelerate.tracking import LOGGER_TYPE_TO_CLASS, get_available_trackers  # loads torch: only for a tracker

    names = [str(name) for name in get_available_trackers()] if installed else list(LOGGER_TYPE_TO_CLASS)
    return [NO_TRACKER, *sorted(names, key=lambda name: (name != "trackio", name))]


def check_report_to(name: str, installed: bool = True) -> None:
    """ValueError in plain words unless `name` is 'none' or a tracker Accelerate supports (with `installed`: whose
    package is installed here), listing those available."""
    if name == NO_TRACKER:
        return
    here = trackers()
    if name in here:
        return
    choices = ", ".join(here)
    if name not in trackers(installed=False):
        raise ValueError(
            f"report_to: {name!r} is not an experiment tracker Accelerate supports; choose one of {choices}"
        )
    if installed:
        raise ValueError(f"report_to: {name} is not installed here (pip install {name}); choose one of {choices}")


def field_help(name: str) -> str:
    """The one-line plain-language hint of a field; KeyError for a name that is not one."""
    return {f.name: f.metadata["help"] for f in dataclasses.fields(TrainConfig)}[name]


def _check_field(f: dataclasses.Field, value: Any) -> None:
    """Type and range check of one field from its metadata; raises ValueError naming it."""
    name, rules = f.name, f.metadata
    expected = str(f.type)
    if value is None:
        if "None" in expected:
            return
        raise ValueError(f"{name}: a value is required")
    if "bool" in expected:
        if not isinstance(value, bool):
            raise ValueError(f"{name}: must be true or false (got {value!r})")
        return
    if expected.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: must be a whole number (got {value!r})")
    elif expected.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number (got {value!r})")
    elif expected.startswith("str"):
        if not isinstance(value, str):
            raise ValueError(f"{name}: must be text (got {type(value).__name__})")
        if len(value) > rules.get("max_length", len(value)):
            raise ValueError(f"{name}: at most {rules['max_length']} characters (got {len(value):,})")
        if any(ch in value for ch in "\x00\r\n") or not _encodable(value):
            raise ValueError(f"{name}: must be one line of plain text")
        return
    _check_range(name, value, rules)


def _encodable(text: str) -> bool:
    """Whether the text is valid Unicode (a lone surrogate, for one, is not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_range(name: str, value: Any, rules: dict) -> None:
    """Range check from the field's min/max metadata; `open` excludes both ends, `open_min` the lower one."""
    if "min" not in rules:
        return
    lo, hi = rules["min"], rules.get("max")
    open_lo = rules.get("open") or rules.get("open_min")
    open_hi = rules.get("open")
    too_low = value <= lo if open_lo else value < lo
    too_high = hi is not None and (value >= hi if open_hi else value > hi)
    if too_low or too_high:
        lo_txt = f"above {lo}" if open_lo else f"at least {lo}"
        hi_txt = "" if hi is None else (f" and below {hi}" if open_hi else f" and at most {hi}")
        raise ValueError(f"{name}: must be {lo_txt}{hi_txt} (got {value!r})")


PROGRAM = ("python", "-m", "mlm_core")
_ALWAYS_GIVEN = {"model", "dataset", "learning_rate"}


def train_arguments(config: TrainConfig) -> list[str]:
    """The options that give `config` back through the CLI: model, dataset and learning rate always (the CLI asks
    for the first two, and its learning rate depends on the model), then each setting that differs from its
    default."""
    arguments = []
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if value is None or (value == f.default and f.name not in _ALWAYS_GIVEN):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            arguments += [flag] if value else []
        else:
            arguments += [flag, str(value)]
    return arguments


def train_command(config: TrainConfig, command: str = "train") -> str:
    """The shell line that runs `command` (train, preview) with these settings, quoted for a POSIX shell."""
    return shlex.join([*PROGRAM, command, *train_arguments(config)])

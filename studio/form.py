"""The Train tab's form: one component per TrainConfig field, keyed by the field's name, and the config it makes."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.exceptions import InvalidPathError
from gradio_client.utils import is_http_url_like

from mlm_core.config import (
    DEFAULT_DATASET,
    DEFAULT_HUB_SLICE,
    DEFAULT_MODEL,
    DEFAULT_TEXT_COLUMN,
    FILE_DATASET,
    MAX_ADDED_WORDS,
    NO_TRACKER,
    TrainConfig,
    default_learning_rate,
    field_help,
    train_command,
)
from mlm_core.service.hosting import settings
from mlm_core.service.launch import FILE_SUFFIXES, STARTER
from mlm_core.service.shown import hide_paths

BUILTIN, HUB = "builtin", "hub"
SOURCES = [("Built-in corpus (offline)", BUILTIN), ("Hub dataset", HUB), ("Upload a file", FILE_DATASET)]
_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
_TYPES = {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}


def first_values(online: bool) -> dict[str, str]:
    """What the form starts on: online the guides' run (their model, ELI5 and slice), offline the built-in model
    and corpus."""
    if online:
        return {
            "model": DEFAULT_MODEL,
            "dataset": HUB,
            "hub_dataset": DEFAULT_DATASET,
            "slice": DEFAULT_HUB_SLICE,
            "text_column": DEFAULT_TEXT_COLUMN,
        }
    return {"model": STARTER, "dataset": BUILTIN, "hub_dataset": "", "slice": _DEFAULTS["slice"], "text_column": ""}


def only_uploads(field: gr.File) -> gr.File:
    """`field`, taking only files uploaded through this server's upload route. Given a web address instead, Gradio
    would fetch it on the server before any handler runs, outside the upload budget and size limit (#34): it is
    refused as any path nobody uploaded, in `refusals.NOT_UPLOADED`'s words. A Gradio internal, wrapped on the
    instance (a subclass of a component makes Gradio write a .pyi beside this module); a test sends addresses."""
    move = field.async_move_resource_to_block_cache

    async def move_uploads_only(url_or_file_path: str | Path | None) -> str | None:
        if is_http_url_like(str(url_or_file_path)):
            raise InvalidPathError("a web address in a file field")
        return await move(url_or_file_path)

    field.async_move_resource_to_block_cache = move_uploads_only
    return field


def build_data_fields(models: list[str], first: dict[str, str]) -> dict[str, gr.components.Component]:
    """Base model and data: what the run learns from, starting on `first` (see `first_values`)."""
    return {
        "model": gr.Dropdown(
            models,
            value=first["model"],
            allow_custom_value=True,
            label="Base model",
            info=field_help("model"),
            elem_id="model",
        ),
        "dataset": gr.Radio(
            SOURCES, value=first["dataset"], label="Data", info="Where your text comes from.", elem_id="source"
        ),
        "hub_dataset": gr.Textbox(
            first["hub_dataset"],
            label="Hub dataset id",
            placeholder=f"e.g. {DEFAULT_DATASET}",
            info="A dataset on the Hugging Face hub.",
            visible=first["dataset"] == HUB,
            elem_id="hub-dataset",
        ),
        # Any file may be chosen: one we do not read is refused once, in words that say how to convert it (a
        # file_types filter answers with Gradio's generic toast instead).
        "dataset_file": only_uploads(
            gr.File(
                label=f"Your text ({', '.join(FILE_SUFFIXES)}; up to {settings.current().max_upload_mb} MB)",
                visible=False,
                type="filepath",
                elem_id="dataset-file",
            )
        ),
    }


def build_settings_fields(first: dict[str, str], trackers: list[str]) -> dict[str, gr.components.Component]:
    """How the run trains: the knobs, with the engine's defaults and one-line hints, the slice and text column of
    `first`; `trackers`: the experiment trackers a run may report to here."""
    d = _DEFAULTS
    fields = {
        "slice": gr.Textbox(first["slice"], label="Rows (slice)", info=field_help("slice"), elem_id="slice"),
        "text_column": gr.Textbox(
            first["text_column"],
            label="Text column",
            placeholder="detected automatically",
            info=field_help("text_column"),
            elem_id="text-column",
        ),
    }
    with gr.Row():
        fields["block_size"] = gr.Number(
            d["block_size"], label="Block size", precision=0, info=field_help("block_size")
        )
        fields["mlm_probability"] = gr.Slider(
            0.05, 0.5, d["mlm_probability"], step=0.01, label="Masking probability", info=field_help("mlm_probability")
        )
    with gr.Row():
        fields["epochs"] = gr.Number(
            d["epochs"], label="Epochs", precision=0, info=field_help("epochs"), elem_id="epochs"
        )
        fields["learning_rate"] = gr.Number(
            default_learning_rate(first["model"]), label="Learning rate", info=field_help("learning_rate")
        )
        fields["batch_size"] = gr.Number(
            d["batch_size"], label="Batch size", precision=0, info=field_help("batch_size")
        )
    with gr.Accordion("More settings", open=False):
        with gr.Row():
            fields["max_steps"] = gr.Number(
                0, label="Max steps (0: no limit)", precision=0, info=field_help("max_steps")
            )
            fields["eval_steps"] = gr.Number(
                d["eval_steps"],
                label="Evaluate every N steps (0: automatic)",
                precision=0,
                info=field_help("eval_steps"),
            )
            fields["seed"] = gr.Number(d["seed"], label="Seed", precision=0, info=field_help("seed"))
        with gr.Row():
            fields["warmup_ratio"] = gr.Number(
                d["warmup_ratio"], label="Warm-up share", info=field_help("warmup_ratio")
            )
            fields["weight_decay"] = gr.Number(d["weight_decay"], label="Weight decay", info=field_help("weight_decay"))
            fields["gradient_accumulation"] = gr.Number(
                d["gradient_accumulation"],
                label="Gradient accumulation",
                precision=0,
                info=field_help("gradient_accumulation"),
            )
        with gr.Row():
            fields["whole_word_masking"] = gr.Checkbox(
                d["whole_word_masking"], label="Whole-word masking", info=field_help("whole_word_masking")
            )
            fields["add_words"] = gr.Number(
                d["add_words"],
                label="Add your words",
                precision=0,
                minimum=0,
                maximum=MAX_ADDED_WORDS,
                info=field_help("add_words"),
            )
        fields["report_to"] = gr.Dropdown(
            trackers, value=d["report_to"], label="Experiment tracker", info=field_help("report_to")
        )
    return fields


def source_changed(source: str) -> tuple:
    """Show the hub id box or the upload box, the rows a first run of that source should use, and no text column
    (the next data's are detected)."""
    return (
        gr.update(visible=source == HUB),
        gr.update(visible=source == FILE_DATASET),
        gr.update(value=DEFAULT_HUB_SLICE if source == HUB else "train"),
        "",
    )


def config_from(values: dict[str, Any], output_dir: str) -> TrainConfig:
    """The run's TrainConfig from the form's values, whatever types an API client sent; ValueError in plain words."""
    source = values.get("dataset") or BUILTIN
    if source not in {value for _, value in SOURCES}:
        raise ValueError("dataset: choose the built-in corpus, a hub dataset or an uploaded file")
    settings = {name: coerce(name, value) for name, value in values.items() if name in _TYPES}
    settings["dataset"] = coerce("dataset", values.get("hub_dataset") or "") if source == HUB else source
    settings["dataset_file"] = settings.get("dataset_file") if source == FILE_DATASET else None
    settings["max_steps"] = settings.get("max_steps") or None  # 0 on the page: no limit
    settings["text_column"] = settings.get("text_column") or None
    settings["report_to"] = settings.get("report_to") or NO_TRACKER
    settings["slice"] = settings.get("slice") or "train"
    if values.get("learning_rate") in (None, ""):  # as the CLI: the default suits the model
        settings["learning_rate"] = default_learning_rate(settings.get("model") or "")
    return TrainConfig(**{**settings, "output_dir": output_dir})


def command_line(config: TrainConfig) -> str:
    """The `python -m mlm_core train ...` line that repeats these settings on one's own machine: an uploaded file
    by its name, the output folder under ./runs (no path of this server is shown)."""
    shown = config.replace(
        model=hide_paths(config.model),
        dataset=hide_paths(config.dataset),
        output_dir=f"runs/{Path(config.output_dir).name}",
        dataset_file=Path(config.dataset_file).name if config.dataset_file else None,
    )
    return train_command(shown)


def coerce(name: str, value: Any) -> Any:
    """A form value as the field's type (numbers from number boxes may come as floats); ValueError naming it."""
    kind = _TYPES[name]
    if value is None or value == "":
        return None if "None" in kind else "" if kind == "str" else _DEFAULTS[name]
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name}: must be true or false")
        return value
    if kind.startswith(("int", "float")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name}: must be a number")
        if kind.startswith("int"):
            if value != int(value):
                raise ValueError(f"{name}: must be a whole number (got {value})")
            return int(value)
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{name}: must be text")
    return value.strip()

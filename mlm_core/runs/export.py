"""Sharing a finished run: a model card, a zip to download, and a push to the Hugging Face hub."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from mlm_core.runs.model_sources import STARTER
from mlm_core.runs.records import COMPLETED, RUN_PREFIX, RunResults
from mlm_core.runs.run_dir import RunDir
from mlm_core.system.atomic_files import TMP_PREFIX
from mlm_core.system.hub_access import is_online
from mlm_core.system.redact import hide_paths
from mlm_core.tasks import get_task

CARD_FIELDS = ("block_size", "mlm_probability", "whole_word_masking", "epochs", "max_steps", "learning_rate",
               "weight_decay", "warmup_ratio", "batch_size", "gradient_accumulation", "eval_fraction", "seed")


def model_card(run: RunDir) -> str:
    """A README.md for the fine-tuned model: base model and data in words, hyper-parameters, measured figures;
    ValueError in plain words when the run has not completed."""
    results = finished(run)
    config = run.config()
    task = get_task(results.task or "mlm")
    rows = "\n".join(f"| `{name}` | {getattr(config, name)} |" for name in CARD_FIELDS)
    masks = " with the same masked positions" if task.inference == "fill-mask" else ""
    hub_base = f"base_model: {config.model}\n" if _is_hub_id(config.model) else ""
    return f"""---
library_name: transformers
pipeline_tag: {task.pipeline_tag}
{hub_base}tags: [mlm-studio]
---
# {run.identity().label or run.name}

Fine-tuned with MLM Studio from {describe_model(config.model)} on {describe_data(config)}.

| measured on the same held-out text{masks} | base model | this model |
| --- | --- | --- |
| perplexity (lower is better) | {_number(results.base_perplexity)} | {_number(results.final_perplexity)} |
| words guessed right, top guess | {_share(results.base_top1)} | {_share(results.final_top1)} |
| words guessed right, among the top 5 | {_share(results.base_top5)} | {_share(results.final_top5)} |

Perplexity is exp(mean loss); the words are the {"hidden" if masks else "next"} tokens of
{results.eval_blocks:,} held-out blocks of {results.block_size} tokens.

Trained for {results.steps:,} steps ({results.epochs} epochs, {results.tokens:,} tokens) in
{results.seconds / 60:.1f} minutes on {results.device}.

## Hyper-parameters
| setting | value |
| --- | --- |
{rows}
"""


def describe_model(model: str) -> str:
    """The base model in words."""
    if model == STARTER:
        return ("the MLM Studio starter model (a small ModernBERT pre-trained on the Python standard library's "
                "docstrings)")
    if model.startswith(RUN_PREFIX):
        return f"the model of the MLM Studio run {model.removeprefix(RUN_PREFIX)}"
    if _is_hub_id(model):
        return f"[{model}](https://huggingface.co/{model})"
    return f"a local model ({hide_paths(model)})"


def describe_data(config) -> str:
    """The training text in words, with the rows used."""
    rows = "all rows" if config.slice == "train" else f"rows `{config.slice}`"
    if config.dataset == "builtin":
        return f"the Python language reference that ships with CPython (`pydoc_data.topics`, {rows})"
    if config.dataset == "builtin-docstrings":
        return f"the docstrings of the Python standard library ({rows})"
    if config.dataset == "file":
        return f"an uploaded file ({rows})"
    return f"the hub dataset [{config.dataset}](https://huggingface.co/datasets/{config.dataset}) ({rows})"


def _is_hub_id(name: str) -> bool:
    """Whether a model name reads as a hub repository (namespace/name) rather than a folder."""
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and " " not in name


def _share(value: float | None) -> str:
    """A share of words for the card."""
    return "n/a" if value is None else f"{value:.1%}"


def finished(run: RunDir) -> RunResults:
    """The results of a completed run with a saved model; ValueError in plain words otherwise."""
    results = run.results() if run.is_run() else None
    if results is None or results.status != COMPLETED or run.model_dir() is None:
        raise ValueError(f"run: {run.name} has not completed, so it has no model to export")
    return results


def _number(value: float | None) -> str:
    """A perplexity for the card."""
    return "n/a" if value is None else f"{value:,.2f}"


def _staged(run: RunDir, into: Path) -> Path:
    """The model folder with its card, results and event log, as published."""
    staged = into / run.name
    shutil.copytree(run.model_dir(), staged)
    (staged / "README.md").write_text(model_card(run), encoding="utf-8")
    for published in (run.results_path, run.events_path):  # beside the model, so the numbers can be checked
        if published.is_file():  # paths on this machine are nobody else's business
            text = hide_paths(published.read_text(encoding="utf-8"))
            (staged / published.name).write_text(text, encoding="utf-8")
    return staged


def zip_run(run: RunDir) -> Path:
    """The finished model, card and results as `<run>.zip` in the run's folder, made once and then reused;
    ValueError in plain words when the run has not completed."""
    finished(run)
    target = run.export_path
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=TMP_PREFIX, dir=target.parent) as work:
        staged = _staged(run, Path(work))
        partial = Path(work) / target.name
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(staged.rglob("*")):
                archive.write(file, file.relative_to(staged.parent))
        os.replace(partial, target)
    return target


def push_run(run: RunDir, repo_id: str, token: str, private: bool = True) -> str:
    """Upload the finished model with its card to `repo_id` on the hub with `token`; the URL. The token is not kept.

    Raises ValueError in plain words when the run has not completed, `repo_id` is not 'name/model', the hub is not
    reachable, no token is given, or the hub refuses the upload (naming only the kind of error, never the token).
    """
    from huggingface_hub import HfApi

    finished(run)
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError("repo_id: use the form 'your-name/model-name'")
    if not is_online():
        raise ValueError("repo_id: the Hugging Face hub is not reachable from here; download the zip instead")
    if not token:
        raise ValueError("token: paste a Hugging Face token that may write")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            commit = api.upload_folder(repo_id=repo_id, folder_path=_staged(run, Path(work)),
                                       commit_message="Upload from MLM Studio")
    except Exception as error:  # hub errors can echo request headers: report the kind only, never the token
        raise ValueError(f"repo_id: the hub refused the upload ({type(error).__name__}); check the name and that "
                         "the token may write") from None
    return getattr(commit, "repo_url", None) or f"https://huggingface.co/{repo_id}"

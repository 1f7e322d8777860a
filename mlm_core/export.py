"""Sharing a finished run: a model card, a zip to download, and a push to the Hugging Face hub."""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from .storage import read_json

CARD_FIELDS = ("block_size", "mlm_probability", "whole_word_masking", "epochs", "max_steps", "learning_rate",
               "weight_decay", "warmup_ratio", "batch_size", "gradient_accumulation", "eval_fraction", "seed")


def model_card(run_dir: Path) -> str:
    """A README.md for the fine-tuned model: base model, data, hyper-parameters and measured perplexities."""
    config, results = _finished(run_dir)
    data = config["dataset"] + (f" ({config['slice']})" if config.get("slice") else "")
    if config["dataset"] == "file":
        data = f"an uploaded file ({Path(config.get('dataset_file') or '').name})"
    rows = "\n".join(f"| `{name}` | {config.get(name)} |" for name in CARD_FIELDS)
    task = "fill-mask" if results.get("task") == "mlm" else "text-generation"
    return f"""---
library_name: transformers
pipeline_tag: {task}
base_model: {config['model'] if '/' in config['model'] else ''}
tags: [mlm-studio]
---
# {run_dir.name}

Fine-tuned with MLM Studio from **{config['model']}** on {data}.

| | perplexity on the held-out text |
| --- | --- |
| base model | {_number(results.get('base_perplexity'))} |
| this model | {_number(results.get('final_perplexity'))} |

Perplexity is exp(mean loss) on the same held-out blocks{' with the same masked positions' if task == 'fill-mask'
                                                        else ''}; lower means the model finds the text less surprising.

Trained for {results.get('steps')} steps ({results.get('epochs')} epochs, {results.get('tokens'):,} tokens) in
{results.get('seconds', 0) / 60:.1f} minutes on {results.get('device')}.

## Hyper-parameters
| setting | value |
| --- | --- |
{rows}
"""


def _finished(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The config and results of a completed run; ValueError otherwise."""
    config, results = read_json(run_dir / "config.json"), read_json(run_dir / "results.json")
    if not config or not results or results.get("status") != "completed" or not (run_dir / "model").is_dir():
        raise ValueError(f"run: {run_dir.name} has not completed, so it has no model to export")
    return config, results


def _number(value: float | None) -> str:
    """A perplexity for the card."""
    return "n/a" if value is None else f"{value:,.2f}"


def _staged(run_dir: Path, into: Path) -> Path:
    """The model folder with its card, results and event log, as published."""
    staged = into / run_dir.name
    shutil.copytree(run_dir / "model", staged)
    (staged / "README.md").write_text(model_card(run_dir), encoding="utf-8")
    for name in ("results.json", "events.jsonl"):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, staged / name)
    return staged


def zip_run(run_dir: Path, out_dir: Path) -> Path:
    """The finished model, card and results as `<run>.zip` in `out_dir` (written whole, then renamed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{run_dir.name}.zip"
    with tempfile.TemporaryDirectory() as work:
        staged = _staged(run_dir, Path(work))
        partial = out_dir / f".tmp-{run_dir.name}.zip"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(staged.rglob("*")):
                archive.write(file, file.relative_to(staged.parent))
        os.replace(partial, target)
    return target


def push_run(run_dir: Path, repo_id: str, token: str | None = None, private: bool = True) -> str:
    """Upload the finished model with its card to `repo_id` on the hub; the URL. The token is never stored."""
    from huggingface_hub import HfApi

    from .hub import is_online

    if not repo_id or repo_id.count("/") != 1:
        raise ValueError("repo_id: use the form 'your-name/model-name'")
    token = token or os.environ.get("HF_TOKEN")
    if not token:
        raise ValueError("token: paste a Hugging Face write token, or set HF_TOKEN")
    if not is_online():
        raise ValueError("repo_id: the Hugging Face hub is not reachable from here; download the zip instead")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as work:
            commit = api.upload_folder(repo_id=repo_id, folder_path=_staged(run_dir, Path(work)),
                                       commit_message="Upload from MLM Studio")
    except Exception as error:  # hub errors can echo request headers: report the kind only, never the token
        raise ValueError(f"repo_id: the hub refused the upload ({type(error).__name__}); check the name and that "
                         "the token may write") from None
    return getattr(commit, "repo_url", None) or f"https://huggingface.co/{repo_id}"

"""Sharing a finished run: a model card, a zip to download, and a push to the Hugging Face hub."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import zipfile
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData, try_to_load_from_cache
from huggingface_hub.repocard import metadata_load

from mlm_core.config import FILE_DATASET
from mlm_core.runs.model_sources import STARTER
from mlm_core.runs.records import COMPLETED, RUN_NAME, RUN_PREFIX, RunResults, runs_root
from mlm_core.runs.run_dir import RunDir
from mlm_core.system import hub_access
from mlm_core.system.atomic_files import TMP_PREFIX, read_json
from mlm_core.system.redact import hide_paths
from mlm_core.tasks import get_task

CARD_FIELDS = (
    "block_size",
    "mlm_probability",
    "whole_word_masking",
    "epochs",
    "max_steps",
    "learning_rate",
    "weight_decay",
    "warmup_ratio",
    "batch_size",
    "gradient_accumulation",
    "eval_fraction",
    "seed",
)
# The built-in data and uploads in a card's model-index: (dataset type, dataset name); a hub dataset is its own id.
LOCAL_DATA = {
    "builtin": ("pydoc_data.topics", "Python language reference (pydoc_data.topics)"),
    "builtin-docstrings": ("python-stdlib-docstrings", "Python standard library docstrings"),
    FILE_DATASET: ("uploaded-text", "Uploaded text"),
}


def model_card(run: RunDir) -> str:
    """A README.md for the fine-tuned model, as the hub reads it: metadata built with huggingface_hub's
    `ModelCardData` (base model, datasets, licence, pipeline tag, tags, the measured figures as a model-index), then
    the base model and data in words, hyper-parameters and the figures; ValueError in plain words when the run has
    not completed."""
    results = finished(run)
    card = ModelCard(f"---\n{card_data(run, results).to_yaml()}\n---\n{_card_body(run, results)}")
    return str(card)  # parsed back by the hub's own parser: what it writes is what the hub reads


def card_data(run: RunDir, results: RunResults) -> ModelCardData:
    """The card's metadata: `base_model` is the hub model at the root of the run's chain (none for the starter or
    a local folder), `datasets` the hub datasets of every run of the chain, the licence the base model's when its
    card is in the local hub cache."""
    configs = [each.config() for each in lineage(run)]
    task = get_task(results.task or "mlm")
    base = _hub_model(configs[-1].model)
    datasets = list(dict.fromkeys(c.dataset for c in configs if _hub_dataset(c.dataset)))
    tags = ["mlm-studio", task.pipeline_tag, *filter(None, [_model_type(run)])]
    return ModelCardData(
        base_model=base,
        datasets=datasets or None,
        library_name="transformers",
        pipeline_tag=task.pipeline_tag,
        tags=tags,
        model_name=run.identity().label or run.name,
        eval_results=eval_results(configs[0], results, task) or None,
        **(base_license(base) if base else {}),
    )


def eval_results(config, results: RunResults, task) -> list[EvalResult]:
    """What the run measured on its held-out blocks at the end, as the hub's `EvalResult`s: perplexity, and the
    share of hidden (or next) words guessed right, first and among the top 5, when measured."""
    dataset_type, dataset_name = (
        (config.dataset, config.dataset)
        if _hub_dataset(config.dataset)
        else LOCAL_DATA.get(config.dataset, ("text", "Text"))
    )
    words = "Masked-word" if task.inference == "fill-mask" else "Next-token"
    held_out = f"held-out {config.eval_fraction:.0%} of {config.slice}"
    measured = [
        ("perplexity", f"Perplexity ({held_out})", results.final_perplexity),
        ("accuracy", f"{words} accuracy, top-1 ({held_out})", results.final_top1),
        ("accuracy", f"{words} accuracy, top-5 ({held_out})", results.final_top5),
    ]
    return [
        EvalResult(
            task_type=task.pipeline_tag,
            task_name=task.title,
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_split=config.slice,
            metric_type=kind,
            metric_name=name,
            metric_value=round(value, 4),
        )
        for kind, name, value in measured
        if value is not None and math.isfinite(value)
    ]


def lineage(run: RunDir) -> list[RunDir]:
    """The run, the run it started from (its model `run:NAME` or a run folder), that run's own start, and so on."""
    chain = [run]
    while (before := _run_of(chain[-1].config().model, chain[-1])) is not None and before not in chain:
        chain.append(before)
    return chain


def _run_of(model: str, after: RunDir) -> RunDir | None:
    """The run a model name means, if any: `run:NAME` in the runs folder (else beside `after`), a run folder or its
    saved model's folder."""
    model = model.strip()
    if model.startswith(RUN_PREFIX):
        for root in (runs_root(), after.path.parent):
            candidate = RunDir(root / model.removeprefix(RUN_PREFIX))
            if RUN_NAME.fullmatch(candidate.name) and candidate.is_run():
                return candidate
        return None
    path = Path(model).expanduser()
    if model == STARTER or not path.is_dir():
        return None
    for candidate in (RunDir(path), RunDir(path.parent)):
        if candidate.is_run() and path in (candidate.path, candidate.model_path):
            return candidate
    return None


def _hub_model(model: str) -> str | None:
    """The model name itself when it means a hub model (not the starter, a run or a folder here)."""
    model = model.strip()
    return model if model != STARTER and hub_access.means_hub_repo(model) else None


def _hub_dataset(dataset: str) -> bool:
    """Whether the run's data is a hub dataset (not the built-in corpus, an upload or a folder here)."""
    return dataset not in LOCAL_DATA and hub_access.means_hub_repo(dataset)


def base_license(repo_id: str) -> dict[str, str]:
    """The licence of a hub model as its card in the local hub cache gives it (`license`, and `license_name`,
    `license_link` for 'other'); empty when that card is not here. Never asks the network."""
    cached = try_to_load_from_cache(repo_id, "README.md")
    if not isinstance(cached, str):  # not cached, or cached as missing
        return {}
    try:
        metadata = metadata_load(cached) or {}
    except Exception:  # a card we cannot read gives no licence, not a failed export
        return {}
    return {
        key: metadata[key] for key in ("license", "license_name", "license_link") if isinstance(metadata.get(key), str)
    }


def _model_type(run: RunDir) -> str | None:
    """The saved model's `model_type` (a tag the hub filters by)."""
    values = read_json(run.model_dir() / "config.json") if run.model_dir() else None
    return values.get("model_type") if isinstance(values, dict) else None


def _card_body(run: RunDir, results: RunResults) -> str:
    """The card's prose: base model and data in words, the measured figures, hyper-parameters."""
    config = run.config()
    task = get_task(results.task or "mlm")
    rows = "\n".join(f"| `{name}` | {getattr(config, name)} |" for name in CARD_FIELDS)
    masks = " with the same masked positions" if task.inference == "fill-mask" else ""
    return f"""# {run.identity().label or run.name}

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
        return (
            "the MLM Studio starter model (a small ModernBERT pre-trained on the Python standard library's docstrings)"
        )
    if model.startswith(RUN_PREFIX):
        return f"the model of the MLM Studio run {model.removeprefix(RUN_PREFIX)}"
    if _hub_model(model):
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


_zipping = threading.Lock()


def zip_run(run: RunDir) -> Path:
    """The finished model, card and results as `<run>.zip` in the run's folder (`RunDir.export_path`), made once per
    version of the run and then reused; ValueError in plain words when the run has not completed."""
    finished(run)
    with _zipping:  # one zip at a time: a second request for the same run gets the first one's file
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
    reachable, no token is given, the token may not create the repository (HTTP 401 or 403: the hub answers 401 to
    a sign-in without the scope), or the hub refuses the upload (naming only the kind of error, never the token).
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    finished(run)
    hub_access.check_hub_id(repo_id, "repo_id", "use the form 'your-name/model-name'", namespace=True)
    if not hub_access.is_online():
        raise ValueError("repo_id: the Hugging Face hub is not reachable from here; download the zip instead")
    if not token:
        raise ValueError("token: paste a Hugging Face token that may write")
    api, created = HfApi(token=token), False
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        created = True
        with tempfile.TemporaryDirectory() as work:
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=_staged(run, Path(work)), commit_message="Upload from MLM Studio"
            )
    except Exception as error:  # hub errors can echo request headers: report the kind only, never the token
        status = getattr(error.response, "status_code", 0) if isinstance(error, HfHubHTTPError) else 0
        if not created and status in (401, 403):
            raise ValueError(
                f"repo_id: this token or sign-in may not create repositories, so {repo_id} could not "
                "be made (a Hugging Face sign-in needs the contribute-repos scope, a token needs write "
                "access); or create the repository on the hub first and push again"
            ) from None
        raise ValueError(
            f"repo_id: the hub refused the upload ({type(error).__name__}); check the name and that the token may write"
        ) from None
    return getattr(commit, "repo_url", None) or f"https://huggingface.co/{repo_id}"

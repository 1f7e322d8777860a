"""`python -m starter`: pre-train the built-in masked LM from scratch on the docstrings of Python and its libraries."""

from __future__ import annotations

import contextlib
import html
import json
import platform
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mlm_core.config import STARTER_LEARNING_RATE, TrainConfig
from mlm_core.events import Event, Probe
from mlm_core.models.inference import word_pieces
from mlm_core.models.loading import load_tokenizer
from mlm_core.models.scratch import Shape, init_model, train_tokenizer
from mlm_core.models.starter import EXAMPLES_FILE
from mlm_core.runs.model_sources import STARTER_DIR
from mlm_core.runs.records import COMPLETED
from mlm_core.runs.run_dir import RunDir
from mlm_core.system.atomic_files import atomic_dir, write_json
from mlm_core.training.loop import evaluate, train
from mlm_core.training.meter import perplexity
from starter.docstring_corpus import LIBRARY_PACKAGES, library_versions, pretraining_records
from starter.everyday_corpus import EVERYDAY_SAMPLE, LICENCES, everyday_records

# 16,384 pieces keep 89% of the running words of everyday prose whole (everyday_sample.txt; 8,192 built from the
# docstrings alone kept about a third), and the tied embedding (16,384 x 256 in fp16, 8.4 MB) under a Space's 10 MB
# limit for a file outside LFS.
VOCAB_SIZE = 16384
SHAPE = Shape(hidden=256, layers=4, heads=4, intermediate=512, max_length=128)
EPOCHS = 6
SAVE_STEPS = 500
PRETRAIN = dict(
    slice="train",
    block_size=128,
    batch_size=32,
    learning_rate=1e-3,
    warmup_ratio=0.06,
    weight_decay=0.01,
    eval_fraction=0.02,
    seed=0,
)
# The default run: the app's and the CLI's defaults with the starter on the built-in corpus.
DEFAULT_RUN = dict(dataset="builtin", slice="train", learning_rate=STARTER_LEARNING_RATE)


def corpus_records() -> list[dict[str, str]]:
    """The pre-training text: the docstrings, then everyday English (dictionary, Bible, fortunes); ValueError when
    a library or Debian package it reads is missing."""
    return list(pretraining_records()) + everyday_records()


def build_starter(
    out_dir: Path = STARTER_DIR,
    epochs: int | None = None,
    on_event: Callable[[Event], None] | None = None,
    work_dir: Path | None = None,
) -> dict[str, Any]:
    """Train tokenizer and model from scratch, save them in fp16, measure the default run; return the figures.

    With `work_dir`, the corpus, tokenizer and pre-training run are kept there and a later call resumes the run from
    its newest checkpoint (saved every SAVE_STEPS steps), so a build of hours survives the end of a session.
    ValueError in plain words when a library or package it reads is not installed or a run refuses its data."""
    epochs = epochs or EPOCHS
    with contextlib.ExitStack() as stack:
        work = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        corpus_file, init_dir, run = work / "pretraining.jsonl", work / "init", RunDir(work / "run")
        if not (init_dir / "config.json").is_file():
            records = corpus_records()
            with corpus_file.open("w", encoding="utf-8") as file:  # rewritten until init/ exists
                for record in records:
                    file.write(json.dumps({"text": record["text"]}, ensure_ascii=False) + "\n")
            with atomic_dir(init_dir) as tmp:
                tokenizer = train_tokenizer((r["text"] for r in records), VOCAB_SIZE, tmp, max_length=SHAPE.max_length)
                init_model(tokenizer, SHAPE, tmp, architecture="modernbert")
            write_json(work / "corpus.json", corpus_figures(records))
        pretrain = dict(PRETRAIN, dataset="file", dataset_file=str(corpus_file))
        config = TrainConfig(
            model=str(init_dir), epochs=epochs, output_dir=str(run.path), save_steps=SAVE_STEPS, **pretrain
        )
        resume = run.is_run() and run.status() != COMPLETED
        if not (run.is_run() and run.status() == COMPLETED):
            train(config, on_event=on_event, resume=resume)
        results = run.results()
        with atomic_dir(out_dir) as tmp:
            figures = {
                "parameters": _save_fp16(run.model_path, tmp),
                "pretrain": results.to_dict(),
                "epochs": epochs,
                "corpus": json.loads((work / "corpus.json").read_text(encoding="utf-8")),
                "pretraining_perplexity": perplexity(evaluate(TrainConfig(model=str(tmp), **pretrain)).loss),
                "everyday_whole_share": whole_word_share(load_tokenizer(tmp), EVERYDAY_SAMPLE.read_text("utf-8")),
                "build_minutes": results.seconds / 60,
            }
            write_json(tmp / "build.json", figures)
            figures.update(describe_starter(tmp, on_event))
    return figures


SOURCE_NAMES = {
    "gcide": "the GNU Collaborative International Dictionary of English (`dict-gcide`): definitions and "
    "their quotations",
    "bible": "the King James Bible (`bible-kjv`)",
    "fortunes": "the BSD fortune cookies (`fortunes`)",
    "docstrings": "Python docstrings",
}


def whole_word_share(tokenizer, text: str) -> float:
    """Share of the running words of `text` (letters, with an apostrophe's ending) that are one token as written
    mid-sentence, as fill-mask proposes them."""
    words = re.findall(r"[A-Za-z]+(?:'[a-z]+)?", text)
    return sum(len(word_pieces(tokenizer, word)) == 1 for word in words) / len(words)


def corpus_figures(records: list[dict[str, str]]) -> dict[str, Any]:
    """What the model card says of the corpus: records and characters per source, library versions."""
    sources: dict[str, dict[str, int]] = {}
    for record in records:
        kind = record["source"] if record["source"] in LICENCES else "docstrings"
        figures = sources.setdefault(kind, {"records": 0, "characters": 0})
        figures["records"] += 1
        figures["characters"] += len(record["text"])
    return {
        "records": len(records),
        "characters": sum(len(r["text"]) for r in records),
        "sources": sources,
        "libraries": library_versions(),
        "python": platform.python_version(),
    }


def describe_starter(folder: Path, on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
    """Run the default run on the starter in `folder`; write its Fill-mask examples and its model card there, and its
    results into build.json. ValueError in plain words when the run refuses the starter (as `train`)."""
    with tempfile.TemporaryDirectory() as work:
        run = RunDir(Path(work) / "default-run")
        train(TrainConfig(model=str(folder), output_dir=str(run.path), **DEFAULT_RUN), on_event=on_event)
        results, probes = run.results(), [e for e in run.events() if isinstance(e, Probe)]
    examples = [
        {"text": first.text, "answer": first.answer, "rank_before": first.answer_rank, "rank_after": last.answer_rank}
        for first, last in zip(*first_and_last_scores(probes))
    ]
    write_json(folder / EXAMPLES_FILE, examples)
    figures = {**json.loads((folder / "build.json").read_text(encoding="utf-8")), "default_run": results.to_dict()}
    write_json(folder / "build.json", figures)
    (folder / "README.md").write_text(model_card(figures, results.to_dict(), examples), encoding="utf-8")
    return {"default_run": results.to_dict(), "examples": examples}


def first_and_last_scores(probes: list[Probe]) -> tuple[list[Probe], list[Probe]]:
    """The probes as the run's first evaluation scored them, and as its last did (the same sentences, in order);
    IndexError when there are none."""
    steps = sorted({p.step for p in probes})
    return [p for p in probes if p.step == steps[0]], [p for p in probes if p.step == steps[-1]]


def _save_fp16(trained: Path, out_dir: Path) -> int:
    """Save the trained model in half precision (the asset must stay small) with its tokenizer; its parameter count."""
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(trained, dtype=torch.float32, use_safetensors=True)
    model.half().save_pretrained(out_dir, max_shard_size="9MB")  # a Space stores files over 10 MB in LFS
    for file in trained.iterdir():
        if file.name.startswith("tokenizer") or file.name in {"vocab.json", "merges.txt", "special_tokens_map.json"}:
            shutil.copy(file, out_dir / file.name)
    return model.num_parameters()


def model_card(figures: dict[str, Any], run: dict[str, Any], examples: list[dict[str, Any]]) -> str:
    """The starter's README: how it was made and what it measures."""
    pre, corpus = figures["pretrain"], figures["corpus"]
    versions = ", ".join(f"{name} {version}" for name, version in corpus["libraries"].items())
    licences = {**LICENCES, "docstrings": "the licences of Python and of those libraries"}
    sources = "\n".join(
        f"  - {SOURCE_NAMES[name]} ({licences[name]}): {part['records']:,} records, "
        f"{part['characters'] / 1e6:.1f} million characters"
        for name, part in corpus["sources"].items()
    )
    rows = "\n".join(
        f"| {_cell(e['text'])} | {_cell(e['answer'])} | {e['rank_before']:,} | {e['rank_after']:,} |" for e in examples
    )
    return f"""# MLM Studio starter model

A small ModernBERT-style masked language model (rotary positions, pre-norm, GeGLU), trained from scratch so that
MLM Studio works with no internet.

- Made by: `python -m starter` (tokenizer, then weights; fixed seeds), in
  {figures["build_minutes"]:.0f} minutes on {pre["device"]}.
- Corpus: everyday English that installs offline from Debian packages, and docstrings read with `ast` from the `.py`
  files (nothing imported) of the Python {corpus["python"]} standard library and of the installed runtime
  requirements {", ".join(LIBRARY_PACKAGES)} (a paragraph repeated with only names or code changed is kept once):
{sources}

  {corpus["records"]:,} records, {corpus["characters"] / 1e6:.1f} million characters,
  {pre["train_blocks"] + pre["eval_blocks"]:,} blocks of {pre["block_size"]} tokens. The text depends on the
  installed versions, so a rebuild matches this one with the same versions: {versions}.
- Not in the corpus: the Python language reference (`pydoc_data.topics`), the built-in fine-tuning dataset, so
  fine-tuning on it is a real domain adaptation.
- Tokenizer: byte-level BPE, {VOCAB_SIZE:,} tokens trained on that corpus, RoBERTa special tokens
  (`<s> <pad> </s> <unk> <mask>`): {figures["everyday_whole_share"]:.1%} of the running words of a page of everyday
  prose (`starter/everyday_sample.txt`) are one token.
- Model: ModernBERT, {SHAPE.layers} layers, hidden size {SHAPE.hidden}, {SHAPE.heads} heads, feed-forward
  {SHAPE.intermediate}, blocks of up to {SHAPE.max_length} tokens, {figures["parameters"] / 1e6:.1f}M parameters,
  stored in float16 (safetensors).
- Pre-training: {figures["epochs"]} epochs, {pre["steps"]:,} steps of {PRETRAIN["batch_size"]} blocks, learning rate
  {PRETRAIN["learning_rate"]} with {PRETRAIN["warmup_ratio"]:.0%} warm-up and linear decay, 15% of tokens masked,
  {pre["seconds"] / 60:.0f} minutes. Held-out pre-training text ({PRETRAIN["eval_fraction"]:.0%} of blocks):
  perplexity {figures["pretraining_perplexity"]:.2f}.

## The default run
`python -m mlm_core train --model starter --dataset builtin`, the app's defaults: {run["steps"]} steps in
{run["seconds"]:.0f} s on {run["device"]}. On the fixed held-out sample of the language reference (a hidden word
counts as right when the model restores every hidden piece of it):

| | perplexity | top-1 accuracy (hidden words) | top-5 accuracy (hidden words) |
| --- | --- | --- | --- |
| starter | {run["base_perplexity"]:.2f} | {run["base_top1"]:.1%} | {run["base_top5"]:.1%} |
| after the default run | {run["final_perplexity"]:.2f} | {run["final_top1"]:.1%} | {run["final_top5"]:.1%} |

The Fill-mask examples are the sentences the default run watches (held-out sentences, a content word hidden); the
right word's rank among each model's guesses:

| sentence | answer | starter | after the default run |
| --- | --- | --- | --- |
{rows}

It is a demonstration model: small, and trained on old and technical English (a 1913 dictionary, the King James
Bible, fortune cookies and Python documentation), not on today's web.
"""


def _cell(text: str) -> str:
    """Text as a Markdown table cell shows it: "<mask>" kept visible (Markdown passes HTML through), "|" kept."""
    return html.escape(text, quote=False).replace("|", "\\|")

"""`build-starter`: pre-train the small built-in masked LM from scratch on the standard library's docstrings."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .corpus import docstring_records
from .events import Event
from .meter import perplexity
from .modeling import STARTER_DIR
from .scratch import Shape, init_model, train_tokenizer
from .rundir import RunDir
from .storage import atomic_dir

VOCAB_SIZE = 6000
SHAPE = Shape(hidden=128, layers=4, heads=2, intermediate=384, max_length=128)
# Measured on 2 CPU cores (held-out perplexity after 600 steps): ModernBERT at learning rate 1e-3 295, 2e-3 177,
# 4e-3 441; a RoBERTa of the same size at 1e-3 561, and still ~400 after 1,500 steps at 2e-3.
EPOCHS = 40
PRETRAIN = dict(dataset="builtin-docstrings", slice="train", block_size=128, batch_size=32, learning_rate=2e-3,
                warmup_ratio=0.06, weight_decay=0.01, eval_fraction=0.05, seed=0)


def build_starter(out_dir: Path = STARTER_DIR, epochs: int | None = None,
                  on_event: Callable[[Event], None] | None = None) -> dict[str, Any]:
    """Train tokenizer and model from scratch, save them in fp16 with a model card; return the measured figures."""
    from .training import evaluate, train

    epochs = epochs or EPOCHS
    texts = [r["text"] for r in docstring_records()]
    with tempfile.TemporaryDirectory() as work:
        init_dir = Path(work) / "init"
        tokenizer = train_tokenizer(texts, VOCAB_SIZE, init_dir, max_length=SHAPE.max_length)
        init_model(tokenizer, SHAPE, init_dir, architecture="modernbert")
        config = TrainConfig(model=str(init_dir), epochs=epochs, output_dir=str(Path(work) / "run"), **PRETRAIN)
        results = train(config, on_event=on_event)
        trained = RunDir(config.output_dir).model_path
        with atomic_dir(out_dir) as tmp:
            figures = {
                "parameters": _save_fp16(trained, tmp),
                "pretrain": results,
                "docstrings_perplexity": perplexity(evaluate(TrainConfig(model=str(tmp), **PRETRAIN)).loss),
                "reference_perplexity": perplexity(evaluate(TrainConfig(model=str(tmp), dataset="builtin",
                                                                        slice="train")).loss),
            }
            (tmp / "README.md").write_text(model_card(figures, epochs), encoding="utf-8")
    return figures


def _save_fp16(trained: Path, out_dir: Path) -> int:
    """Save the trained model in half precision (the asset must stay small) with its tokenizer; its parameter count."""
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(trained, dtype=torch.float32, use_safetensors=True)
    model.half().save_pretrained(out_dir)
    for file in trained.iterdir():
        if file.name.startswith("tokenizer") or file.name in {"vocab.json", "merges.txt", "special_tokens_map.json"}:
            shutil.copy(file, out_dir / file.name)
    return model.num_parameters()


def model_card(figures: dict[str, Any], epochs: int) -> str:
    """The starter's README: how it was made and what it measures."""
    pre = figures["pretrain"]
    return f"""# MLM Studio starter model

A small ModernBERT-style masked language model (rotary positions, pre-norm, GeGLU), trained from scratch so that
MLM Studio works with no internet.

- Made by: `python -m mlm_core build-starter` (tokenizer, then weights).
- Corpus: the docstrings of the Python standard library, read with `ast` from CPython's own `.py` files
  ({pre.train_blocks + pre.eval_blocks:,} blocks of {pre.block_size} tokens). The built-in fine-tuning dataset,
  the Python language reference (`pydoc_data.topics`), is a different text: fine-tuning on it is a real domain
  adaptation.
- Tokenizer: byte-level BPE, {VOCAB_SIZE:,} tokens, RoBERTa special tokens (`<s> <pad> </s> <unk> <mask>`).
- Model: ModernBERT, {SHAPE.layers} layers, hidden size {SHAPE.hidden}, {SHAPE.heads} heads, feed-forward
  {SHAPE.intermediate}, blocks of up to {SHAPE.max_length} tokens, {figures['parameters'] / 1e6:.1f}M parameters,
  stored in float16 (safetensors).
- Pre-training: {epochs} epochs, {pre.steps:,} steps of {PRETRAIN['batch_size']} blocks, learning rate
  {PRETRAIN['learning_rate']} with {PRETRAIN['warmup_ratio']:.0%} warm-up and linear decay, 15% of tokens masked,
  {pre.seconds / 60:.0f} minutes on {pre.device}.

## Measured perplexity (exp of the eval loss on fixed masks)
| text | perplexity |
| --- | --- |
| held-out docstrings (5% of blocks) | {figures['docstrings_perplexity']:.2f} |
| Python language reference (`--dataset builtin`, 10% eval split): a fine-tuning run's base \
| {figures['reference_perplexity']:.2f} |

It is a demonstration model: it knows the words and phrasing of Python documentation, not English at large.
"""

"""What the benchmark runs on: a DistilRoBERTa-shaped model, the starter, and ELI5-like documents."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from mlm_core.data.builtin_corpus import builtin_records
from mlm_core.runs.model_sources import STARTER_DIR
from mlm_core.system import hub_access

DISTILROBERTA = "distilbert/distilroberta-base"
# DistilRoBERTa's dimensions; offline the weights are random and token ids come from the starter's tokenizer.
DISTILROBERTA_SHAPE = dict(
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=3072,
    max_position_embeddings=514,
    type_vocab_size=1,
)
ELI5_CHARS_PER_DOCUMENT = 1000  # ELI5 train[:5000] holds about a million tokens: ~200 tokens a document


@dataclass(frozen=True)
class Subject:
    """A model the benchmark trains and queries."""

    name: str
    path: str  # a local folder or a hub id
    note: str


def distilroberta(work: Path) -> Subject:
    """The real DistilRoBERTa when the hub answers, else a randomly initialised model of its exact shape."""
    if hub_access.is_online():
        return Subject("DistilRoBERTa", DISTILROBERTA, "real weights from the hub")
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaForMaskedLM

    folder = work / "distilroberta-shape"
    if not folder.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(STARTER_DIR)
        torch.manual_seed(0)
        config = RobertaConfig(
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            **DISTILROBERTA_SHAPE,
        )
        RobertaForMaskedLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return Subject("DistilRoBERTa shape", str(folder), "random weights, DistilRoBERTa's shape (hub unreachable)")


def starter() -> Subject:
    """The committed starter model."""
    return Subject("starter", str(STARTER_DIR), "the built-in starter model")


def eli5_like_records(n: int = 5000, seed: int = 0) -> list[dict]:
    """`n` records shaped like ELI5 ({'answers': {'text': [...]}}), of ELI5-like length, from the built-in corpus."""
    paragraphs = [p.strip() for r in builtin_records("builtin") for p in r["text"].split("\n\n") if p.strip()]
    rng = random.Random(seed)
    records = []
    for _ in range(n):
        answers, length = [], 0
        while length < ELI5_CHARS_PER_DOCUMENT * rng.uniform(0.3, 1.7):
            answers.append(rng.choice(paragraphs))
            length += len(answers[-1])
        records.append({"q_id": str(len(records)), "answers": {"text": answers, "score": [1] * len(answers)}})
    return records

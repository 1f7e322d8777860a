"""Text preparation as pure functions: flatten records, pick the text, tokenize, group into blocks, split."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import TrainConfig
from .sources import Record, load_records

# Column names that usually hold the prose, in order of preference.
PREFERRED_COLUMNS = ("text", "answers.text", "content", "body", "document", "sentence", "article", "abstract")
_TOKENIZE_BATCH = 1000
MAX_NESTING = 32  # levels of fields within fields; deeper is not a record of text (and would exhaust the stack)


@dataclass(frozen=True)
class LMData:
    """Tokenized blocks of a dataset, split into train and eval."""

    train: torch.Tensor  # [n_train, block_size] token ids
    eval: torch.Tensor  # [n_eval, block_size]
    train_offsets: torch.Tensor | None  # [n_train, block_size, 2] character offsets, for whole-word masking
    eval_offsets: torch.Tensor | None
    text_column: str
    documents: int
    tokens: int

    @property
    def block_size(self) -> int:
        """Tokens per block."""
        return int(self.train.shape[1])


def flatten_record(record: Record, prefix: str = "", depth: int = 0) -> Record:
    """Nested dicts become dotted keys: {'answers': {'text': [...]}} -> {'answers.text': [...]}."""
    if depth > MAX_NESTING:
        raise ValueError(f"text_column: records nest fields more than {MAX_NESTING} levels deep")
    flat: Record = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_record(value, prefix=f"{name}.", depth=depth + 1))
        else:
            flat[name] = value
    return flat


def as_text(value: Any, depth: int = 0) -> str | None:
    """A field as one string: text stays, lists of text are joined with spaces, anything else is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and depth < MAX_NESTING:
        parts = [as_text(v, depth + 1) for v in value]
        if parts and all(p is not None for p in parts):
            return " ".join(p for p in parts if p)
    return None


def detect_text_column(records: Sequence[Record]) -> str:
    """The column that holds the prose: a preferred name if it holds text, else the longest text column."""
    sample = records[:200]
    lengths: dict[str, list[int]] = {}
    for record in sample:
        for name, value in record.items():
            text = as_text(value)
            if text is not None and any(c.isalpha() for c in text):
                lengths.setdefault(name, []).append(len(text))
    # A text column must be text in most rows and hold letters, not only ids or labels.
    candidates = {name: sum(v) / len(sample) for name, v in lengths.items() if len(v) >= len(sample) / 2}
    if not candidates:
        columns = sorted({name for record in sample for name in record})
        raise ValueError(f"text_column: no column holds text; columns are {', '.join(columns) or 'none'}")
    for name in PREFERRED_COLUMNS:
        if name in candidates:
            return name
    return max(candidates, key=candidates.get)


def extract_texts(records: Sequence[Record], column: str) -> list[str]:
    """The non-empty texts of one column, lists joined as the guides do."""
    if not any(column in record for record in records[:1000]):
        columns = sorted({name for record in records[:200] for name in record})
        raise ValueError(f"text_column: no column {column!r}; columns are {', '.join(columns)}")
    texts = [as_text(record.get(column)) for record in records]
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise ValueError(f"text_column: column {column!r} holds no text in the selected rows")
    return texts


def tokenize(tokenizer, texts: Sequence[str], with_offsets: bool = False) -> dict[str, list]:
    """Token ids (and character offsets) of each text, special tokens added, no truncation."""
    columns: dict[str, list] = {"input_ids": []}
    if with_offsets:
        columns["offset_mapping"] = []
    for start in range(0, len(texts), _TOKENIZE_BATCH):
        batch = tokenizer(list(texts[start : start + _TOKENIZE_BATCH]), return_attention_mask=False,
                          return_offsets_mapping=with_offsets, verbose=False)
        for key in columns:
            columns[key].extend(batch[key])
    return columns


def group_texts(examples: dict[str, list], block_size: int) -> dict[str, np.ndarray]:
    """The guides' `group_texts` in linear time: concatenate each column and cut it into `block_size` rows.

    Like the guides, a remainder shorter than a block is dropped, unless the whole text is shorter than one block,
    which then becomes a single short row.
    """
    grouped = {}
    for key, sequences in examples.items():
        flat = _concatenate(sequences)
        total = len(flat)
        width = block_size if total >= block_size else total
        rows = total // width if width else 0
        grouped[key] = flat[: rows * width].reshape(rows, width, *flat.shape[1:])
    return grouped


def _concatenate(sequences: Sequence[Sequence]) -> np.ndarray:
    """One array of all items of all sequences, in order, without quadratic list concatenation."""
    total = sum(len(s) for s in sequences)
    first = next((s[0] for s in sequences if len(s)), None)
    if first is None or np.isscalar(first):
        return np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=total)
    return np.asarray(list(itertools.chain.from_iterable(sequences)), dtype=np.int64).reshape(total, -1)


def split_indices(n_blocks: int, eval_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of block indices into train and eval, each at least one block."""
    order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed))
    n_eval = min(max(1, round(n_blocks * eval_fraction)), n_blocks - 1)
    return order[n_eval:].sort().values, order[:n_eval].sort().values


def prepare_data(config: TrainConfig, tokenizer, block_size: int) -> LMData:
    """Load, flatten, tokenize, group and split the data a run trains on."""
    records = [flatten_record(r) for r in load_records(config)]
    column = config.text_column or detect_text_column(records)
    texts = extract_texts(records, column)
    with_offsets = config.whole_word_masking
    encoded = tokenize(tokenizer, texts, with_offsets=with_offsets)
    grouped = group_texts(encoded, block_size)
    ids = torch.from_numpy(grouped["input_ids"])
    if ids.shape[0] < 2 or ids.shape[1] < block_size:
        tokens = int(ids.numel())
        raise ValueError(f"block_size: the text makes {tokens} tokens, fewer than two blocks of {block_size} "
                         "(one to train, one to evaluate); add text or lower block_size")
    train_idx, eval_idx = split_indices(len(ids), config.eval_fraction, config.seed)
    offsets = torch.from_numpy(grouped["offset_mapping"]) if with_offsets else None
    return LMData(
        train=ids[train_idx], eval=ids[eval_idx],
        train_offsets=None if offsets is None else offsets[train_idx],
        eval_offsets=None if offsets is None else offsets[eval_idx],
        text_column=column, documents=len(texts), tokens=sum(map(len, encoded["input_ids"])),
    )

"""The list-based tokenize and group that `prepare_data` replaced: the in-memory reference the tests compare the
token store with (no run executes them)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from mlm_core.data.columns import Record, check_column, text_of
from mlm_core.data.tokenizing import encode_with_offsets

_TOKENIZE_BATCH = 1000


def extract_texts(records: Sequence[Record], column: str) -> list[str]:
    """The non-empty texts of one column, lists joined as the guides do; ValueError naming `text_column` when no
    record has the column or it holds no text."""
    check_column(records, column)
    texts = [t for t in (text_of(record, column) for record in records) if t is not None]
    if not texts:
        raise ValueError(f"text_column: column {column!r} holds no text in the selected rows")
    return texts


def tokenize(tokenizer, texts: Sequence[str], with_offsets: bool = False) -> dict[str, list]:
    """Token ids (and character offsets) of each text, special tokens added, no truncation: per text, a list of
    [tokens] ids under 'input_ids' (and of [tokens] (start, end) character pairs under 'offset_mapping')."""
    columns: dict[str, list] = {"input_ids": []}
    if with_offsets:
        columns["offset_mapping"] = []
    for start in range(0, len(texts), _TOKENIZE_BATCH):
        batch = list(texts[start : start + _TOKENIZE_BATCH])
        if with_offsets:
            ids, offsets = encode_with_offsets(tokenizer, batch)
            columns["offset_mapping"].extend(offsets)
        else:
            ids = tokenizer(batch, return_attention_mask=False, verbose=False)["input_ids"]
        columns["input_ids"].extend(ids)
    return columns


def group_texts(examples: dict[str, list], block_size: int) -> dict[str, np.ndarray]:
    """The guides' `group_texts` in linear time: concatenate each column and cut it into `block_size` rows, as int64
    arrays [blocks, block_size] (an offsets column: [blocks, block_size, 2]).

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

"""Data preparation time: our tokenize + group against the guides' `preprocess_function` + `group_texts`."""

from __future__ import annotations

import time

import numpy as np

from mlm_core.data.columns import flatten_record
from mlm_core.data.guide_recipe import NUM_PROC, make_group_texts, make_preprocess_function
from mlm_core.data.lm_data import extract_texts, group_texts, tokenize
from mlm_core.models.loading import load_tokenizer

MAP_BATCH = 1000  # datasets.map's default batch size, which the guides keep


def compare(model: str, records: list[dict], block_size: int = 128, repeats: int = 3) -> dict:
    """Best-of-`repeats` seconds of grouping alone and of the whole preparation, interleaved; outputs checked equal.
    ValueError in plain words when the model cannot load or the records hold no 'answers.text'."""
    tokenizer = load_tokenizer(model)
    texts = extract_texts([flatten_record(r) for r in records], "answers.text")
    encoded = dict(tokenizer(texts, verbose=False))  # input_ids and attention_mask, as the guides' map produces
    best = {"group_ours": [], "group_guide": [], "prepare_ours": [], "prepare_guide": []}
    for _ in range(repeats):
        best["group_guide"].append(_timed(lambda: _guide_grouping(encoded, block_size))[0])
        best["group_ours"].append(_timed(lambda: group_texts(encoded, block_size))[0])
        best["prepare_guide"].append(_timed(lambda: _guide_preparation(tokenizer, records, block_size))[0])
        best["prepare_ours"].append(_timed(lambda: _our_preparation(tokenizer, records, block_size))[0])
    first = {k: v[:MAP_BATCH] for k, v in encoded.items()}  # the guides drop a remainder per batch, we per text
    result = {name: min(values) for name, values in best.items()}
    result["identical"] = bool(np.array_equal(group_texts(first, block_size)["input_ids"],
                                              np.asarray(make_group_texts(block_size)(first)["input_ids"])))
    result["documents"] = len(records)
    result["tokens"] = sum(map(len, encoded["input_ids"]))
    result["group_speedup"] = result["group_guide"] / result["group_ours"]
    result["prepare_speedup"] = result["prepare_guide"] / result["prepare_ours"]
    return result


def _timed(fn):
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _guide_grouping(encoded: dict, block_size: int) -> dict:
    """The guides' `group_texts` over the map-sized batches `datasets.map(batched=True)` would hand it."""
    group = make_group_texts(block_size)
    out: dict[str, list] = {k: [] for k in encoded}
    n = len(encoded["input_ids"])
    for start in range(0, n, MAP_BATCH):
        for key, rows in group({k: v[start : start + MAP_BATCH] for k, v in encoded.items()}).items():
            out[key].extend(rows)
    return out


def _guide_preparation(tokenizer, records: list[dict], block_size: int):
    """The guides' pipeline: `Dataset.flatten()`, then `map(preprocess_function)` and `map(group_texts)`, batched,
    in `num_proc=4` processes as the guides run them."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    dataset = Dataset.from_list(records).flatten()
    tokenized = dataset.map(make_preprocess_function(tokenizer), batched=True, num_proc=NUM_PROC,
                            remove_columns=dataset.column_names)
    return tokenized.map(make_group_texts(block_size), batched=True, num_proc=NUM_PROC)


def _our_preparation(tokenizer, records: list[dict], block_size: int):
    """What `prepare_data` does to the same records: flatten, join, tokenize, group."""
    texts = extract_texts([flatten_record(r) for r in records], "answers.text")
    return group_texts(tokenize(tokenizer, texts), block_size)

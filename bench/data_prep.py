"""Data preparation of ELI5-shaped records: the guides' `preprocess_function` + `group_texts` against what a run
executes, `prepare_data` (the records as an uploaded .jsonl, tokenized into a token store, blocks cut, split)."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.guide_recipe import NUM_PROC, make_group_texts, make_preprocess_function
from mlm_core.config import TrainConfig
from mlm_core.data.lm_data import prepare_data
from mlm_core.data.token_store import Blocks
from mlm_core.models.loading import load_tokenizer

MAP_BATCH = 1000  # datasets.map's default batch size, which the guides keep
COLUMN = "answers.text"


def compare(model: str, records: list[dict], block_size: int = 128, repeats: int = 3) -> dict:
    """Best-of-`repeats` seconds of each whole preparation, interleaved; the blocks they share checked equal.
    ValueError in plain words when the model cannot load or the records hold no 'answers.text'."""
    tokenizer = load_tokenizer(model)
    with tempfile.TemporaryDirectory() as tmp:
        upload = Path(tmp) / "eli5.jsonl"
        upload.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        config = TrainConfig(
            model=model,
            dataset="file",
            dataset_file=str(upload),
            slice="train",
            text_column=COLUMN,
            output_dir=str(Path(tmp) / "run"),
        )
        best: dict[str, list[float]] = {"prepare_guide": [], "prepare_ours": []}
        for _ in range(repeats):
            seconds, (tokenized, grouped) = _timed(lambda: _guide_preparation(tokenizer, records, block_size))
            best["prepare_guide"].append(seconds)
            seconds, data = _timed(lambda: prepare_data(config, tokenizer, block_size))  # no cache: built anew
            best["prepare_ours"].append(seconds)
    result = {name: min(values) for name, values in best.items()}
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    # The guides drop a remainder per map batch, we once at the end: the first map batch's blocks are common.
    first_batch = min(MAP_BATCH, math.ceil(len(records) / NUM_PROC))  # datasets.map shards contiguously
    common = sum(lengths[:first_batch]) // block_size
    ours = Blocks(data.train.store, np.arange(common), block_size)[:].numpy()
    result["identical"] = bool(
        common and data.tokens == sum(lengths) and np.array_equal(ours, np.asarray(grouped[:common]["input_ids"]))
    )
    result.update(
        documents=len(records),
        tokens=data.tokens,
        guide_blocks=len(grouped),
        ours_blocks=len(data.train) + len(data.eval),
    )
    result["speedup"] = result["prepare_guide"] / result["prepare_ours"]
    return result


def _timed(fn):
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _guide_preparation(tokenizer, records: list[dict], block_size: int):
    """The guides' pipeline: `Dataset.flatten()`, then `map(preprocess_function)` and `map(group_texts)`, batched,
    in `num_proc=4` processes as the guides run them; (tokenized, grouped) datasets."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    dataset = Dataset.from_list(records).flatten()
    tokenized = dataset.map(
        make_preprocess_function(tokenizer, COLUMN),
        batched=True,
        num_proc=NUM_PROC,
        remove_columns=dataset.column_names,
    )
    return tokenized, tokenized.map(make_group_texts(block_size), batched=True, num_proc=NUM_PROC)

"""A run's data: pick the text, tokenize it into a memory-mapped token store, cut blocks, split train/eval.

`prepare_data` streams the source in numbered batches of documents through tokenizer processes into a store on disk
(`token_store.py`), optionally cached (`store_cache.py`), so its memory stays flat whatever the corpus size. Blocks
and the seeded split are the same as the guides' recipe (`group_texts` over the concatenated documents).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mlm_core.config import TrainConfig
from mlm_core.data.columns import (
    as_text,
    detect_text_column,
    flatten_record,
    text_of,
    text_pieces,
)
from mlm_core.data.sources import open_source
from mlm_core.data.store_builder import token_store
from mlm_core.data.token_store import Blocks, Stream, TokenStore
from mlm_core.data.tokenizing import PreparationStopped

__all__ = [
    "HELD_OUT_SEED",
    "LMData",
    "PreparationStopped",
    "as_text",
    "detect_text_column",
    "flatten_record",
    "prepare_data",
    "process_shard",
    "sample_texts",
    "split_indices",
]


# The held-out text is chosen by document (`held_out_streams`); which of its tokens are hidden, which sentences are
# probes, and the split of a text too short to split by document follow this seed, not the run's: runs on the same
# data are measured on the same sample whatever their seeds and models, and no run trains on another's held-out text.
HELD_OUT_SEED = 42
# A split by document needs this many held-out documents: with fewer, the held-out share of the text swings far from
# `eval_fraction` (of 3 documents, a third of the text or none), and the text is split by block instead.
MIN_HELD_OUT_DOCUMENTS = 5


@dataclass(frozen=True)
class LMData:
    """Token blocks of a dataset, split into train and eval, memory-mapped.

    `train[idx]` / `eval[idx]` give int64 tensors [k, block_size]; with whole-word masking `train_word_starts[idx]` /
    `eval_word_starts[idx]` give the matching bool word-start flags (for `batches.Masker`), else they are None.
    `sharded` is True when this process holds only its share (rank of world): then every block it holds is its own
    to train or evaluate on, and `train_total` / `eval_total` count the blocks of all processes.
    """

    train: Blocks
    eval: Blocks
    train_word_starts: Blocks | None
    eval_word_starts: Blocks | None
    text_column: str
    documents: int  # rows that held text
    tokens: int
    records: int = 0  # rows read from the slice, those without text included
    sharded: bool = False
    train_total: int = 0
    eval_total: int = 0
    reused: bool = False  # the token store came from the cache

    @property
    def block_size(self) -> int:
        """Tokens per block."""
        return self.train.block_size


def sample_texts(config: TrainConfig, column: str, limit: int = 500) -> list[str]:
    """The first `limit` non-empty texts of a run's data (long ones in pieces, as they are tokenized; e.g. for probe
    sentences and the Preview), without reading the rest;
    ValueError in plain words when the data cannot be opened or read (as `open_source`)."""
    texts = (text_of(r, column) for r in open_source(config).peek(limit))
    return list(itertools.islice((piece for t in texts if t is not None for piece in text_pieces(t)), limit))


def split_indices(n_blocks: int, eval_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random split of block indices into train and eval, each at least one block: sorted index tensors
    [n_train] and [n_eval]."""
    order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed))
    n_eval = min(max(1, round(n_blocks * eval_fraction)), n_blocks - 1)
    return order[n_eval:].sort().values, order[:n_eval].sort().values


def held_out_streams(store: TokenStore, eval_fraction: float, block_size: int) -> tuple[Stream, Stream] | None:
    """The store's documents as (train, held-out) streams: held out are those whose draw (a hash of their text) is
    in the lowest `eval_fraction` of its range. So the held-out text depends on the data alone, not on the model, the
    block size or the seed, and a text repeated in the data is on one side only; the guides likewise split rows
    before grouping them into blocks. None for a text of few documents: fewer than MIN_HELD_OUT_DOCUMENTS held out, or
    a side that would not make one block."""
    held = store.documents[:, 1] < eval_fraction * 2**32
    if held.sum() < MIN_HELD_OUT_DOCUMENTS:
        return None
    train, held_out = Stream.of(store.documents, ~held), Stream.of(store.documents, held)
    return None if min(train.tokens, held_out.tokens) < block_size else (train, held_out)


def process_shard() -> dict[str, int]:
    """This process's `rank` and `world` under `accelerate launch` / torchrun (0 and 1 otherwise)."""
    return {"rank": int(os.environ.get("RANK", 0)), "world": int(os.environ.get("WORLD_SIZE", 1))}


def prepare_data(
    config: TrainConfig,
    tokenizer,
    block_size: int,
    *,
    on_progress: Callable[[int, int | None], None] | None = None,
    stop: threading.Event | None = None,
    cache_dir: str | os.PathLike | None = None,
    rank: int = 0,
    world: int = 1,
    processes: int | None = None,
) -> LMData:
    """Load, tokenize, group and split the data a run trains on, into memory-mapped blocks.

    `on_progress(documents_read, total_or_None)` is called about twice a second while tokenizing. `stop` (a
    threading.Event) ends preparation within about a second with `PreparationStopped`. `cache_dir`: keep the token
    store there under its fingerprint and reuse it (None: a temporary store, deleted once mapped). `rank`/`world`:
    under `accelerate launch`, each process tokenizes every world-th batch of documents and then holds only its
    share of the blocks (the processes must share `cache_dir`, e.g. on one node or a shared runs folder).
    `processes`: tokenizer worker processes (default: one per core of this process's share of the machine).

    Raises ValueError in plain words when the data cannot be opened or read, holds no text, or makes fewer than two
    blocks (or too few to share among `world` processes); PreparationStopped when stopped; RuntimeError when a
    tokenizer process fails or, under a launch, the other processes' data never comes.
    """
    store, reused = token_store(
        config,
        tokenizer,
        on_progress=on_progress,
        stop=stop or threading.Event(),
        cache_dir=cache_dir,
        rank=rank,
        world=world,
        processes=processes,
    )
    return _split(store, config, block_size, rank, world, reused)


def _split(store: TokenStore, config: TrainConfig, block_size: int, rank: int, world: int, reused: bool) -> LMData:
    """Blocks of the store, split train/eval by document (`held_out_streams`), or by block with `HELD_OUT_SEED` when
    the text has too few documents for that; with several processes, this one's share."""
    n_blocks = store.tokens // block_size
    if n_blocks < 2:
        raise ValueError(
            f"block_size: your text is too short for a run: it makes {store.tokens:,} tokens, and a run needs at "
            f"least {2 * block_size:,} (two blocks of {block_size}: one to learn from, one to measure with); add "
            "text, or lower block_size"
        )
    streams = held_out_streams(store, config.eval_fraction, block_size)
    if streams is None:
        train_stream = eval_stream = None
        train_idx, eval_idx = (t.numpy() for t in split_indices(n_blocks, config.eval_fraction, HELD_OUT_SEED))
    else:
        train_stream, eval_stream = streams
        train_idx, eval_idx = (np.arange(stream.tokens // block_size) for stream in streams)
    train_total, eval_total = len(train_idx), len(eval_idx)
    if world > 1:
        share = train_total // world
        if share == 0:
            raise ValueError(
                f"block_size: the text makes {n_blocks} blocks of {block_size}, too few to share among "
                f"{world} processes; add text or lower block_size"
            )
        train_idx = train_idx[rank * share : (rank + 1) * share]  # the same number on every process
        eval_idx = eval_idx[rank * eval_total // world : (rank + 1) * eval_total // world]
    flags = store.word_starts and config.whole_word_masking
    return LMData(
        train=Blocks(store, train_idx, block_size, stream=train_stream),
        eval=Blocks(store, eval_idx, block_size, stream=eval_stream),
        train_word_starts=Blocks(store, train_idx, block_size, "starts", train_stream) if flags else None,
        eval_word_starts=Blocks(store, eval_idx, block_size, "starts", eval_stream) if flags else None,
        text_column=store.meta["text_column"],
        documents=int(store.meta["documents"]),
        tokens=store.tokens,
        records=int(store.meta.get("records", store.meta["documents"])),
        sharded=world > 1,
        train_total=train_total,
        eval_total=eval_total,
        reused=reused,
    )

"""A run's data: pick the text, tokenize it into a memory-mapped token store, cut blocks, split train/eval.

`prepare_data` streams the source in numbered batches of documents through tokenizer processes into a store on disk
(`blocks.py`), optionally cached (`datacache.py`), so its memory stays flat whatever the corpus size. Blocks and the
seeded split are the same as the guides' recipe (`group_texts` over the concatenated documents). The list-based
helpers below (`tokenize`, `group_texts`, ...) are the reference that tests and the benchmark compare with.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import datacache
from .blocks import Blocks, PartWriter, TokenStore, merge_parts, part_done
from .config import TrainConfig
from .sources import Record, Source, as_text, flatten_record, open_source, text_of
from .storage import read_json
from .tokenizing import LocalEncoder, PreparationStopped, WorkerPool, fast_backend, ids_dtype

__all__ = ["LMData", "PreparationStopped", "as_text", "detect_text_column", "extract_texts", "flatten_record",
           "group_texts", "prepare_data", "process_shard", "sample_texts", "split_indices", "tokenize"]

# Column names that usually hold the prose, in order of preference.
PREFERRED_COLUMNS = ("text", "answers.text", "content", "body", "document", "sentence", "article", "abstract")
_TOKENIZE_BATCH = 1000
WORKER_MIN_BYTES = 4 << 20  # smaller sources are tokenized in this process (starting workers costs ~0.3 s)
PROGRESS_S = 0.5  # at most this often on_progress is called
WAIT_IDLE_S = float(os.environ.get("MLM_STUDIO_DATA_WAIT_S", "600"))  # a process waiting for others gives up after
# this long without any of their files growing


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
    documents: int
    tokens: int
    sharded: bool = False
    train_total: int = 0
    eval_total: int = 0
    reused: bool = False  # the token store came from the cache

    @property
    def block_size(self) -> int:
        """Tokens per block."""
        return self.train.block_size


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


def check_column(records: Sequence[Record], column: str) -> None:
    """ValueError naming the columns when none of the first records has `column`."""
    if not any(column in record for record in records[:1000]):
        columns = sorted({name for record in records[:200] for name in record})
        raise ValueError(f"text_column: no column {column!r}; columns are {', '.join(columns)}")


def extract_texts(records: Sequence[Record], column: str) -> list[str]:
    """The non-empty texts of one column, lists joined as the guides do."""
    check_column(records, column)
    texts = [t for t in (text_of(record, column) for record in records) if t is not None]
    if not texts:
        raise ValueError(f"text_column: column {column!r} holds no text in the selected rows")
    return texts


def sample_texts(config: TrainConfig, column: str, limit: int = 500) -> list[str]:
    """The first `limit` non-empty texts of a run's data (e.g. for probe sentences), without reading the rest."""
    return [t for t in (text_of(r, column) for r in open_source(config).peek(limit)) if t is not None]


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


def process_shard() -> dict[str, int]:
    """This process's `rank` and `world` under `accelerate launch` / torchrun (0 and 1 otherwise)."""
    return {"rank": int(os.environ.get("RANK", 0)), "world": int(os.environ.get("WORLD_SIZE", 1))}


def prepare_data(config: TrainConfig, tokenizer, block_size: int, *,
                 on_progress: Callable[[int, int | None], None] | None = None, stop: threading.Event | None = None,
                 cache_dir: str | os.PathLike | None = None, rank: int = 0, world: int = 1,
                 processes: int | None = None) -> LMData:
    """Load, tokenize, group and split the data a run trains on, into memory-mapped blocks.

    `on_progress(documents_read, total_or_None)` is called about twice a second while tokenizing. `stop` (a
    threading.Event) ends preparation within about a second with `PreparationStopped`. `cache_dir`: keep the token
    store there under its fingerprint and reuse it (None: a temporary store, deleted once mapped). `rank`/`world`:
    under `accelerate launch`, each process tokenizes every world-th batch of documents and then holds only its
    share of the blocks (the processes must share `cache_dir`, e.g. on one node or a shared runs folder).
    `processes`: tokenizer worker processes (default: one per core of this process's share of the machine).
    """
    stop = stop or threading.Event()
    source = open_source(config)
    job = _Job(config, tokenizer, source, stop, on_progress, processes, world)
    if cache_dir is None:
        folder = Path(tempfile.mkdtemp(prefix="mlm-data-"))
        try:
            job.build_all(folder, "part-0", lambda b: True)  # with world > 1 and no shared folder: all, then a share
            store = TokenStore(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # mapped files stay readable until unmapped (POSIX)
        reused = False
    else:
        store, reused = _cached_store(job, Path(cache_dir), rank, world)
    return _split(store, config, block_size, rank, world, reused)


def _cached_store(job: _Job, cache_dir: Path, rank: int, world: int) -> tuple[TokenStore, bool]:
    """The store from the cache, built first (by all `world` processes together) if missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    source_id = job.source.fingerprint()
    tokenizer_id = datacache.tokenizer_fingerprint(job.tokenizer)
    column, with_starts = job.config.text_column, job.with_starts
    keys = [datacache.store_key(source_id, tokenizer_id, column, with_starts)]
    if not with_starts:  # a store with word-start flags serves runs without whole-word masking too
        keys.append(datacache.store_key(source_id, tokenizer_id, column, True))
    found = datacache.find(cache_dir, keys)
    if found is not None:
        return TokenStore(found), True
    entry = cache_dir / keys[0]
    if world == 1:
        folder = Path(tempfile.mkdtemp(prefix=f"{keys[0]}.tmp-", dir=cache_dir))
        try:
            job.build_all(folder, "part-0", lambda b: True)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        datacache.publish(folder, entry)
    else:
        _build_shared(job, cache_dir / f"{keys[0]}.build-{world}", entry, rank, world)
    if rank == 0:
        datacache.clean(cache_dir, keep=(entry,))
    return TokenStore(entry), False


def _build_shared(job: _Job, folder: Path, entry: Path, rank: int, world: int) -> None:
    """Each process tokenizes its batches into its part of a shared folder; process 0 merges and publishes."""
    folder.mkdir(parents=True, exist_ok=True)
    part = f"part-{rank}"
    if not part_done(folder, part).is_file() and not (entry / "meta.json").is_file():
        job.tokenize_part(folder, part, lambda b: b % world == rank)  # a finished part of an earlier try is reused
    if rank == 0:
        done = [part_done(folder, f"part-{r}") for r in range(world)]
        _wait(job.stop, folder, lambda: all(p.is_file() for p in done))
        parts = [read_json(p) for p in done]
        job.finish(folder, parts)
        datacache.publish(folder, entry)
    _wait(job.stop, folder, lambda: (entry / "meta.json").is_file(), entry)


def _wait(stop: threading.Event, folder: Path, ready: Callable[[], bool], entry: Path | None = None) -> None:
    """Wait for other processes' files; give up when nothing in `folder` has grown for WAIT_IDLE_S."""
    last, since = None, time.monotonic()
    while not ready():
        if stop.is_set():
            raise PreparationStopped()
        sizes = sorted((f.name, f.stat().st_size) for f in folder.iterdir()) if folder.is_dir() else []
        if sizes != last:
            last, since = sizes, time.monotonic()
        elif time.monotonic() - since > WAIT_IDLE_S:
            raise RuntimeError(f"waited {WAIT_IDLE_S:.0f} s for the other processes' data in {folder}; every "
                               "process must see the same runs folder (on several machines: a shared file system)")
        time.sleep(0.2)


class _Job:
    """One preparation: the source, the tokenizer, progress and stop."""

    def __init__(self, config: TrainConfig, tokenizer, source: Source, stop: threading.Event,
                 on_progress, processes: int | None, world: int):
        self.config, self.tokenizer, self.source, self.stop = config, tokenizer, source, stop
        self.on_progress, self.world = on_progress, world
        self.with_starts = config.whole_word_masking
        self.processes = _default_processes(world) if processes is None else processes
        self.dtype = ids_dtype(_vocabulary(tokenizer))
        self.last_report = 0.0

    def progress(self, done: int, total: int | None, final: bool = False) -> None:
        """Report progress, at most every PROGRESS_S unless final."""
        now = time.monotonic()
        if self.on_progress is not None and (final or now - self.last_report >= PROGRESS_S):
            self.last_report = now
            self.on_progress(done, total)

    def build_all(self, folder: Path, part: str, want: Callable[[int], bool]) -> None:
        """Tokenize into one part and write the store's meta."""
        self.finish(folder, [self.tokenize_part(folder, part, want)])

    def tokenize_part(self, folder: Path, part: str, want: Callable[[int], bool]) -> dict:
        """Tokenize the batches `want` accepts into `folder/part.*`."""
        first = self.source.peek(1000)
        if not first:
            raise ValueError(f"slice: {self.config.slice!r} leaves no rows of {self.config.dataset!r}")
        column = self.config.text_column or detect_text_column(first)
        check_column(first, column)
        sample = [t for t in (text_of(r, column) for r in first[:64]) if t is not None] or ["text"]
        encoder = self._encoder(sample, folder)
        writer = PartWriter(folder, part, self.dtype, self.with_starts)
        total = self.source.total if self.world == 1 else None
        try:
            self.progress(0, total, final=True)
            for number, records, encoded in encoder.imap(self.source.batches(column, want), self.stop):
                writer.add(number, records, encoded)
                self.progress(writer.records, total)
            if self.stop.is_set():
                raise PreparationStopped()
        except BaseException:
            encoder.close(kill=True)
            writer.discard()
            raise
        encoder.close()
        self.progress(writer.records, total if total is not None else writer.records, final=True)
        return writer.finish(column)

    def _encoder(self, sample: list[str], folder: Path):
        """Worker processes for a large source and a fast tokenizer, else tokenizing in this process."""
        fast = fast_backend(self.tokenizer, sample, self.with_starts)
        if fast is not None and self.processes > 1 and (self.source.size_hint or 0) >= WORKER_MIN_BYTES:
            return WorkerPool(fast[0], self.dtype, self.with_starts, self.processes, folder)
        return LocalEncoder(self.tokenizer, self.dtype, self.with_starts, fast[1] if fast else None)

    def finish(self, folder: Path, parts: list[dict]) -> None:
        """Check the parts hold text, then write the store's meta."""
        if not sum(p["records"] for p in parts):
            raise ValueError(f"slice: {self.config.slice!r} leaves no rows of {self.config.dataset!r}")
        if not sum(p["documents"] for p in parts):
            raise ValueError(f"text_column: column {parts[0]['column']!r} holds no text in the selected rows")
        merge_parts(folder, parts, self.dtype, self.with_starts)


def _vocabulary(tokenizer) -> int:
    """The number of token ids the tokenizer can produce."""
    sizes = [len(tokenizer), getattr(tokenizer, "vocab_size", 0) or 0]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        sizes.append(backend.get_vocab_size(with_added_tokens=True))
    return max(sizes)


def _default_processes(world: int) -> int:
    """Tokenizer processes for this process: the cores it may use, shared with the other processes on its node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return max(1, min(8, cores // max(1, local)))


def _split(store: TokenStore, config: TrainConfig, block_size: int, rank: int, world: int, reused: bool) -> LMData:
    """Blocks of the store, split train/eval by seed; with several processes, this one's share."""
    n_blocks = store.tokens // block_size
    if n_blocks < 2:
        raise ValueError(f"block_size: the text makes {store.tokens} tokens, fewer than two blocks of {block_size} "
                         "(one to train, one to evaluate); add text or lower block_size")
    train_idx, eval_idx = (t.numpy() for t in split_indices(n_blocks, config.eval_fraction, config.seed))
    train_total, eval_total = len(train_idx), len(eval_idx)
    if world > 1:
        share = train_total // world
        if share == 0:
            raise ValueError(f"block_size: the text makes {n_blocks} blocks of {block_size}, too few to share among "
                             f"{world} processes; add text or lower block_size")
        train_idx = train_idx[rank * share : (rank + 1) * share]  # the same number on every process
        eval_idx = eval_idx[rank * eval_total // world : (rank + 1) * eval_total // world]
    flags = store.word_starts and config.whole_word_masking
    return LMData(
        train=Blocks(store, train_idx, block_size), eval=Blocks(store, eval_idx, block_size),
        train_word_starts=Blocks(store, train_idx, block_size, "starts") if flags else None,
        eval_word_starts=Blocks(store, eval_idx, block_size, "starts") if flags else None,
        text_column=store.meta["text_column"], documents=int(store.meta["documents"]), tokens=store.tokens,
        sharded=world > 1, train_total=train_total, eval_total=eval_total, reused=reused)

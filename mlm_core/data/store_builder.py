"""Building a token store: documents streamed in numbered batches through tokenizer processes into part files,
merged into one store, optionally in the cache and shared out among the processes of a launch."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from mlm_core.config import TrainConfig
from mlm_core.data import store_cache
from mlm_core.data.columns import check_column, detect_text_column, text_of
from mlm_core.data.source_base import Source
from mlm_core.data.sources import open_source
from mlm_core.data.token_store import META, PartWriter, TokenStore, document_draws, merge_parts, part_done
from mlm_core.data.tokenizing import LocalEncoder, PreparationStopped, WorkerPool, fast_backend, ids_dtype
from mlm_core.system import settings
from mlm_core.system.atomic_files import read_json
from mlm_core.system.container_limits import usable_cores

WORKER_MIN_BYTES = 4 << 20  # smaller sources are tokenized in this process, on the library's threads (`_encoder`)
PROGRESS_S = 0.5  # at most this often on_progress is called
SAMPLE_CHARS = 4096  # of each of the first texts, to check the fast tokenizer agrees with the model's own
# after this long without any of their files growing


def token_store(
    config: TrainConfig,
    tokenizer,
    *,
    on_progress,
    stop: threading.Event,
    cache_dir,
    rank: int,
    world: int,
    processes: int | None,
) -> tuple[TokenStore, bool]:
    """The run's token store, mapped, and whether it came from the cache (see `lm_data.prepare_data`, whose
    ValueError, PreparationStopped and RuntimeError it raises)."""
    job = _Job(config, tokenizer, open_source(config), stop, on_progress, processes, world)
    if cache_dir is not None:
        return _cached_store(job, Path(cache_dir), rank, world)
    folder = Path(tempfile.mkdtemp(prefix="mlm-data-"))
    try:
        job.build_all(folder, "part-0", lambda b: True)  # with world > 1 and no shared folder: all, then a share
        return TokenStore(folder), False
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # mapped files stay readable until unmapped (POSIX)


def _cached_store(job: _Job, cache_dir: Path, rank: int, world: int) -> tuple[TokenStore, bool]:
    """The store from the cache, built first (by all `world` processes together) if missing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    source_id = job.source.fingerprint()
    tokenizer_id = store_cache.tokenizer_fingerprint(job.tokenizer)
    column, with_starts = job.config.text_column, job.with_starts
    keys = [store_cache.store_key(source_id, tokenizer_id, column, with_starts)]
    if not with_starts:  # a store with word-start flags serves runs without whole-word masking too
        keys.append(store_cache.store_key(source_id, tokenizer_id, column, True))
    found = store_cache.find(cache_dir, keys)
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
        store_cache.publish(folder, entry)
    else:
        _build_shared(job, cache_dir / f"{keys[0]}.build-{world}", entry, rank, world)
    if rank == 0:
        store_cache.clean(cache_dir, keep=(entry,))
    return TokenStore(entry), False


def _build_shared(job: _Job, folder: Path, entry: Path, rank: int, world: int) -> None:
    """Each process tokenizes its batches into its part of a shared folder; process 0 merges and publishes."""
    folder.mkdir(parents=True, exist_ok=True)
    published = (entry / META).is_file
    part = f"part-{rank}"
    if not part_done(folder, part).is_file() and not published():  # a finished part of an earlier try is reused
        job.tokenize_part(folder, part, lambda b: b % world == rank)
    if rank == 0 and not published():
        done = [part_done(folder, f"part-{r}") for r in range(world)]
        _wait(job.stop, folder, lambda: published() or all(p.is_file() for p in done))
        if not published():
            job.finish(folder, [read_json(p) for p in done])
            store_cache.publish(folder, entry)
    _wait(job.stop, folder, published)


def _wait(stop: threading.Event, folder: Path, ready: Callable[[], bool]) -> None:
    """Wait for other processes' files; give up when nothing in `folder` has grown for MLM_STUDIO_DATA_WAIT_S."""
    wait_idle_s = settings.current().data_wait_s
    last, since = None, time.monotonic()
    while not ready():
        if stop.is_set():
            raise PreparationStopped()
        sizes = sorted((f.name, f.stat().st_size) for f in folder.iterdir()) if folder.is_dir() else []
        if sizes != last:
            last, since = sizes, time.monotonic()
        elif time.monotonic() - since > wait_idle_s:
            raise RuntimeError(
                f"waited {wait_idle_s:.0f} s for the other processes' data in {folder}; every "
                "process must see the same runs folder (on several machines: a shared file system)"
            )
        time.sleep(0.2)


class _Job:
    """One preparation: the source, the tokenizer, progress and stop."""

    def __init__(
        self,
        config: TrainConfig,
        tokenizer,
        source: Source,
        stop: threading.Event,
        on_progress,
        processes: int | None,
        world: int,
    ):
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
        """Tokenize into one part and write the store's meta; raises as `tokenize_part` and `finish`."""
        self.finish(folder, [self.tokenize_part(folder, part, want)])

    def tokenize_part(self, folder: Path, part: str, want: Callable[[int], bool]) -> dict:
        """Tokenize the batches `want` accepts into `folder/part.*`; the part's description.

        Raises ValueError in plain words when the slice leaves no rows or no text column is found, and
        PreparationStopped when stopped; any error while tokenizing (RuntimeError when a tokenizer process fails) is
        re-raised after the workers are killed and the part's files removed.
        """
        first = self.source.peek(1000)
        if not first:
            raise ValueError(f"slice: {self.config.slice!r} leaves no rows of {self.config.dataset!r}")
        column = self.config.text_column or detect_text_column(first)
        check_column(first, column)
        sample = [t[:SAMPLE_CHARS] for t in (text_of(r, column) for r in first[:64]) if t is not None] or ["text"]
        encoder = self._encoder(sample, folder)
        writer = PartWriter(folder, part, self.dtype, self.with_starts)
        total = self.source.total if self.world == 1 else None
        try:
            self.progress(0, total, final=True)
            batches = (
                (n, texts, (counts, document_draws(texts))) for n, texts, counts in self.source.batches(column, want)
            )
            for number, (counts, draws), encoded in encoder.imap(batches, self.stop):
                writer.add(number, counts, encoded, draws)
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
        """Worker processes for a source of WORKER_MIN_BYTES or more and a fast tokenizer, else tokenizing in this
        process (a fast tokenizer's batches on the tokenizers library's own threads).

        Measured on 2 idle cores (docs/PERFORMANCE.md, "Data stack: worker pool against the library's threads"): from
        32 MB on, this process took 1.17-1.19x the pool's time without whole-word masking and 1.31-1.44x with it (the
        library's threads share out only the encoding; turning its output into arrays and word starts is Python on
        one core here, while each worker does all of it for its batches), and 0.09 GiB (23-25%) less peak memory: the
        two workers', which exit before training starts. At 2 MB this process was as fast or faster (0.82-0.95x the
        pool's time). With about one core taken by other work, both took about the same time.
        """
        fast = fast_backend(self.tokenizer, sample, self.with_starts)
        big = (self.source.size_hint or 0) >= WORKER_MIN_BYTES
        if fast is not None and self.processes > 1 and big and os.name == "posix":  # workers' pipes need select()
            return WorkerPool(fast[0], self.dtype, self.with_starts, self.processes, folder)
        return LocalEncoder(self.tokenizer, self.dtype, self.with_starts, fast[1] if fast else None)

    def finish(self, folder: Path, parts: list[dict]) -> None:
        """Check the parts hold text, then write the store's meta; ValueError naming `slice` or `text_column` when
        they hold no rows or no text."""
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
    """Tokenizer processes for this process: the cores it may use (CPU quota included), shared with the other
    processes on its node."""
    cores = usable_cores()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    return max(1, min(8, cores // max(1, local)))

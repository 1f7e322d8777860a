"""Where a run's text comes from: a hub dataset + split slice, an uploaded file, or the built-in corpus.

`open_source` gives a `Source` that is read as a stream, in numbered batches of records, so that nothing holds the
whole corpus and several processes can share the batches out. `load_records` and `read_file` keep the whole-list
view for small data and tests.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator

from mlm_core.config import FILE_DATASET, TrainConfig
from mlm_core.data import builtin_corpus
from mlm_core.data.columns import Record, flatten_record
from mlm_core.data.hub_datasets import open_hub_source
from mlm_core.data.source_base import Counts, Source, Want, bound, parse_slice, take_batch
from mlm_core.data.store_cache import file_digest
from mlm_core.data.text_files import (
    check_file,
    file_lines,
    iter_file_records,
    txt_paragraphs,
)


class ListSource(Source):
    """Records held in memory (the built-in corpus), loaded on first use; ValueError naming `slice` for a malformed
    slice or a split other than 'train'."""

    def __init__(self, name: str, load: Callable[[], Iterable[Record]], spec: str, identity: str):
        parse_slice(spec, one_split=True)
        self.name, self.load, self.spec, self.identity = name, load, spec, identity
        self._rows: list[Record] | None = None

    @property
    def rows(self) -> list[Record]:
        """The records of the slice."""
        if self._rows is None:
            rows = list(self.load())
            self._rows = rows[_slice(self.spec, lambda: len(rows))]
            self.total = len(self._rows)
            self.size_hint = sum(len(str(r.get("text", ""))) for r in self._rows)
        return self._rows

    def records(self) -> Iterator[Record]:
        """Every record of the slice, flattened."""
        return (flatten_record(r) for r in self.rows)

    def fingerprint(self) -> str:
        """The identity it was made with (for the built-in corpus: its name, this Python and the slice)."""
        return self.identity


class FileSource(Source):
    """An uploaded file, streamed; the slice is applied while reading (counted first only if it needs the length).
    ValueError in plain words when the file or the slice cannot be used; reading raises it at malformed content."""

    def __init__(self, path: str | None, spec: str):
        self.file = check_file(path)
        parse_slice(spec, one_split=True)
        self.name, self.spec, self.size_hint = FILE_DATASET, spec, self.file.stat().st_size
        self.suffix = self.file.suffix.lower()
        self._range: slice | None = None
        self._n: int | None = None  # records in the file, once counted

    @property
    def range(self) -> slice:
        """The records of the slice, as positions in the file (counted first only for percentages or negatives;
        ValueError when counting meets malformed content)."""
        if self._range is None:
            self._range = _slice(self.spec, self._count)
        return self._range

    @property
    def total(self) -> int | None:
        """Records in the slice: .txt and .jsonl are counted (fast); other formats are not (None) unless the slice
        gives its end. ValueError when counting meets malformed content."""
        if self.suffix in (".txt", ".jsonl"):
            return len(range(self._count())[self.range])
        return None if self.range.stop is None else max(0, self.range.stop - (self.range.start or 0))

    def _count(self) -> int:
        """Records in the file: paragraphs and non-empty lines are counted fast, other formats are parsed."""
        if self._n is None:
            if self.suffix == ".txt":
                self._n = sum(1 for _ in txt_paragraphs(self.file))
            elif self.suffix == ".jsonl":
                self._n = sum(1 for line in file_lines(self.file) if line.strip())
            else:
                self._n = sum(1 for _ in iter_file_records(self.file))
        return self._n

    def records(self) -> Iterator[Record]:
        """Every record of the slice, flattened, streamed (ValueError in plain words at malformed content)."""
        rows = (
            ({"text": p} for p in txt_paragraphs(self.file))
            if self.suffix == ".txt"
            else (flatten_record(r) for r in iter_file_records(self.file))
        )
        return itertools.islice(rows, self.range.start, self.range.stop)

    def batches(self, column: str, want: Want = lambda b: True) -> Iterator[tuple[int, list[str], Counts]]:
        """As `Source.batches`; a .txt file's paragraphs are batched without making records (ValueError in plain
        words at malformed content)."""
        if self.suffix != ".txt" or column != "text":
            yield from super().batches(column, want)
            return
        paragraphs = itertools.islice(txt_paragraphs(self.file), self.range.start, self.range.stop)
        number = 0
        while batch := take_batch(paragraphs):
            if want(number):
                yield number, batch, Counts(len(batch), len(batch))
            number += 1

    def fingerprint(self) -> str:
        """The file's type, a digest of its bytes, and the slice."""
        return f"file:{self.suffix}:{file_digest(self.file)}:{self.spec}"


def _slice(spec: str, count: Callable[[], int]) -> slice:
    """The record range of a one-split source's `train[a:b]`; `count` is called only for percentages or negatives."""
    start, stop = parse_slice(spec, one_split=True)
    if any(b is not None and (b.endswith("%") or b.startswith("-")) for b in (start, stop)):
        n = count()
        resolved = range(n)[slice(bound(start, n), bound(stop, n))]
        return slice(resolved.start, resolved.stop)
    return slice(int(start) if start else None, int(stop) if stop else None)


def apply_slice(records: list[Record], spec: str) -> list[Record]:
    """Rows selected by `train[a:b]` (integers or percentages) from a one-split source; ValueError naming `slice`
    for a malformed slice or a split other than 'train'."""
    start, stop = parse_slice(spec, one_split=True)
    n = len(records)
    return records[bound(start, n) : bound(stop, n)]


def read_file(path: str | None) -> list[Record]:
    """Records of an uploaded file (`iter_file_records`), as one list; ValueError in plain words when the file is
    missing, too large, empty, not UTF-8 or malformed."""
    return list(iter_file_records(path or ""))


def open_source(config: TrainConfig) -> Source:
    """The source of a run's records, checked (file, slice, hub reachability) but not yet read; ValueError in plain
    words when a check fails."""
    if config.is_builtin_dataset:
        identity = f"builtin:{config.dataset}:{sys.version}:{sys.prefix}:{config.slice}"
        records = functools.partial(builtin_corpus.builtin_records, config.dataset)
        return ListSource(config.dataset, records, config.slice, identity)
    if config.dataset == FILE_DATASET:
        return FileSource(config.dataset_file, config.slice)
    return open_hub_source(config.dataset, config.slice)


def load_records(config: TrainConfig) -> list[Record]:
    """The rows a run trains on, before text extraction, as one list (for small data: prefer `open_source`);
    ValueError in plain words when the data cannot be opened or read, or the slice leaves no rows."""
    source = open_source(config)
    records = list(source.records())
    if not records:
        raise ValueError(f"slice: {config.slice!r} leaves no rows of {config.dataset!r}")
    return records


def count_rows(config: TrainConfig) -> int | None:
    """Rows of the data before the slice (for the preview's "rows used of"), when cheap to know; ValueError in plain
    words when an uploaded file cannot be used or counted."""
    if config.is_builtin_dataset:
        return len(builtin_corpus.builtin_records(config.dataset))
    if config.dataset == FILE_DATASET:
        return FileSource(config.dataset_file, "train").total
    return None

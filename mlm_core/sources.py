"""Where a run's text comes from: a hub dataset + split slice, an uploaded file, or the built-in corpus.

`open_source` gives a `Source` that is read as a stream, in numbered batches of records, so that nothing holds the
whole corpus and several processes can share the batches out. `load_records` and `read_file` keep the whole-list
view for small data and tests.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator

from . import corpus, hub
from .columns import Record, flatten_record, text_of
from .config import FILE_DATASET, SLICE_PATTERN, TrainConfig
from .textfiles import (FILE_SUFFIXES, MAX_FILE_BYTES, MAX_UPLOAD_MB, check_file, file_lines, iter_file_records,
                        txt_paragraphs)

__all__ = ["FILE_SUFFIXES", "MAX_FILE_BYTES", "MAX_UPLOAD_MB", "Record", "Source", "apply_slice", "load_records",
           "open_source", "read_file"]

BATCH_RECORDS = 1000  # records per batch handed to a tokenizer (datasets.map's default batch size)
BATCH_CHARS = 2 << 20  # ... and at most about this much text, so that long documents keep batches small
ARROW_BATCH_RECORDS = 256  # hub rows are read by position, so their batches are fixed-size
STREAM_MB = int(os.environ.get("MLM_STUDIO_STREAM_MB", "1024"))  # hub splits larger than this are streamed
Want = Callable[[int], bool]


class Source:
    """The records of one dataset slice, flattened, read in order and in numbered batches."""

    name: str = ""
    total: int | None = None  # records in the slice, where known without reading them all
    size_hint: int | None = None  # bytes of text, roughly: large sources are tokenized by worker processes

    def records(self) -> Iterator[Record]:
        """Every record of the slice, flattened."""
        raise NotImplementedError

    def peek(self, n: int) -> list[Record]:
        """The first `n` records of the slice, flattened."""
        return list(itertools.islice(self.records(), n))

    def batches(self, column: str, want: Want = lambda b: True) -> Iterator[tuple[int, list[str], int]]:
        """(batch number, texts, records read) for each batch `want` accepts; texts are the non-empty ones."""
        number, texts, chars, count = 0, [], 0, 0
        for record in self.records():
            text = text_of(record, column)
            count += 1
            if text is not None:
                texts.append(text)
                chars += len(text)
            if count == BATCH_RECORDS or chars >= BATCH_CHARS:
                if want(number):
                    yield number, texts, count
                number, texts, chars, count = number + 1, [], 0, 0
        if count and want(number):
            yield number, texts, count

    def fingerprint(self) -> str:
        """A string that changes when the slice's content may have changed."""
        raise NotImplementedError


class ListSource(Source):
    """Records held in memory (the built-in corpus), loaded on first use."""

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
        return (flatten_record(r) for r in self.rows)

    def fingerprint(self) -> str:
        return self.identity


class FileSource(Source):
    """An uploaded file, streamed; the slice is applied while reading (counted first only if it needs the length)."""

    def __init__(self, path: str | None, spec: str):
        self.file = check_file(path)
        parse_slice(spec, one_split=True)
        self.name, self.spec, self.size_hint = FILE_DATASET, spec, self.file.stat().st_size
        self.suffix = self.file.suffix.lower()
        self._range: slice | None = None
        self._n: int | None = None  # records in the file, once counted

    @property
    def range(self) -> slice:
        """The records of the slice, as positions in the file (counted first only for percentages or negatives)."""
        if self._range is None:
            self._range = _slice(self.spec, self._count)
        return self._range

    @property
    def total(self) -> int | None:
        """Records in the slice: .txt and .jsonl are counted (fast); other formats are not (None) unless the slice
        gives its end."""
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
        rows = ({"text": p} for p in txt_paragraphs(self.file)) if self.suffix == ".txt" \
            else (flatten_record(r) for r in iter_file_records(self.file))
        return itertools.islice(rows, self.range.start, self.range.stop)

    def batches(self, column: str, want: Want = lambda b: True) -> Iterator[tuple[int, list[str], int]]:
        if self.suffix != ".txt" or column != "text":
            yield from super().batches(column, want)
            return
        paragraphs = itertools.islice(txt_paragraphs(self.file), self.range.start, self.range.stop)
        number = 0
        while batch := _take_text(paragraphs):
            if want(number):
                yield number, batch, len(batch)
            number += 1

    def fingerprint(self) -> str:
        from .datacache import file_digest

        return f"file:{self.suffix}:{file_digest(self.file)}:{self.spec}"


def _take_text(paragraphs: Iterator[str]) -> list[str]:
    """The next batch of paragraphs (non-empty by construction), by the same rule as `Source.batches`."""
    batch, chars = [], 0
    for p in paragraphs:
        batch.append(p)
        chars += len(p)
        if len(batch) == BATCH_RECORDS or chars >= BATCH_CHARS:
            break
    return batch


def _slice(spec: str, count: Callable[[], int]) -> slice:
    """The record range of a one-split source's `train[a:b]`; `count` is called only for percentages or negatives."""
    start, stop = parse_slice(spec, one_split=True)
    if any(b is not None and (b.endswith("%") or b.startswith("-")) for b in (start, stop)):
        n = count()
        resolved = range(n)[slice(_bound(start, n), _bound(stop, n))]
        return slice(resolved.start, resolved.stop)
    return slice(int(start) if start else None, int(stop) if stop else None)


def parse_slice(spec: str, one_split: bool) -> tuple[str | None, str | None]:
    """The (start, stop) texts of `split[start:stop]`; ValueError in plain words for a malformed or foreign split."""
    match = SLICE_PATTERN.match(spec)
    if not match:
        raise ValueError(f"slice: {spec!r} is not a split slice; use e.g. 'train[:5000]'")
    if one_split and match["split"] != "train":
        raise ValueError(f"slice: this data has one split, 'train' (got {match['split']!r})")
    return match["start"], match["stop"]


def apply_slice(records: list[Record], spec: str) -> list[Record]:
    """Rows selected by `train[a:b]` (integers or percentages) from a one-split source."""
    start, stop = parse_slice(spec, one_split=True)
    n = len(records)
    return records[_bound(start, n) : _bound(stop, n)]


def _bound(text: str | None, n: int) -> int | None:
    """One end of a slice as a row index; percentages round to the nearest row, as `datasets` does."""
    if text is None:
        return None
    if text.endswith("%"):
        return round(int(text[:-1]) * n / 100)
    return int(text)


def read_file(path: str | None) -> list[Record]:
    """Records of an uploaded .txt (one per blank-line-separated paragraph), .csv, .jsonl or .json file."""
    return list(iter_file_records(path or ""))


def open_source(config: TrainConfig) -> Source:
    """The source of a run's records, checked (file, slice, hub reachability) but not yet read."""
    if config.is_builtin_dataset:
        identity = f"builtin:{config.dataset}:{sys.version}:{sys.prefix}:{config.slice}"
        return ListSource(config.dataset, lambda: corpus.builtin_records(config.dataset), config.slice, identity)
    if config.dataset == FILE_DATASET:
        return FileSource(config.dataset_file, config.slice)
    from .hubdata import open_hub_source

    return open_hub_source(config.dataset, config.slice)


def load_records(config: TrainConfig) -> list[Record]:
    """The rows a run trains on, before text extraction, as one list (for small data: prefer `open_source`)."""
    source = open_source(config)
    records = list(source.records())
    if not records:
        raise ValueError(f"slice: {config.slice!r} leaves no rows of {config.dataset!r}")
    return records


def first_line(error: Exception) -> str:
    """The first line of an exception message, shortened for one-line display."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def _hub_unreachable(dataset_id: str) -> ValueError:
    """The refusal for a hub dataset while offline."""
    return ValueError(f"dataset: the Hugging Face hub is not reachable, so {dataset_id!r} cannot be downloaded; "
                      "use the built-in corpus or upload a file")


def check_hub(dataset_id: str) -> None:
    """ValueError when the name may not be used here (a local path in public mode) or the hub cannot be reached."""
    hub.check_hub_name(dataset_id, "dataset", "dataset")
    if not hub.is_online():
        raise _hub_unreachable(dataset_id)


def count_rows(config: TrainConfig) -> int | None:
    """Rows of the data before the slice (for the preview's "rows used of"), when cheap to know."""
    if config.is_builtin_dataset:
        return len(corpus.builtin_records(config.dataset))
    if config.dataset == FILE_DATASET:
        return FileSource(config.dataset_file, "train").total
    return None

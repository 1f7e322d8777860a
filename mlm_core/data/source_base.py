"""What every source of records is: a `Source` read in numbered batches, slices of splits, the hub checks."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from mlm_core.config import SLICE_PATTERN
from mlm_core.data.columns import Record, text_of, text_pieces
from mlm_core.system import hub_access

BATCH_RECORDS = 1000  # records per batch handed to a tokenizer (datasets.map's default batch size)
BATCH_CHARS = 2 << 20  # ... and at most about this much text, so that long documents keep batches small
ARROW_BATCH_RECORDS = 256  # hub rows are read by position, so their batches are fixed-size
Want = Callable[[int], bool]


class Counts(NamedTuple):
    """What one batch read: rows, and of them those holding text in the column (the others are left out)."""

    records: int
    texts: int


def batch_texts(values: Iterable[str | None]) -> tuple[list[str], int]:
    """The texts of a batch's values, long ones in pieces (`text_pieces`), and how many values held text."""
    texts, held = [], 0
    for text in values:
        if text is not None:
            held += 1
            texts.extend(text_pieces(text))
    return texts, held


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

    def batches(self, column: str, want: Want = lambda b: True) -> Iterator[tuple[int, list[str], Counts]]:
        """(batch number, texts, counts) for each batch `want` accepts; texts are the non-empty ones, long ones in
        pieces, and a batch ends at BATCH_RECORDS rows or BATCH_CHARS characters, inside a long row if need be (a
        row counts in the batch its first piece is in)."""
        number, texts, chars, records, held = 0, [], 0, 0, 0
        for record in self.records():
            text = text_of(record, column)
            records += 1
            held += text is not None
            for piece in text_pieces(text) if text is not None else ():
                texts.append(piece)
                chars += len(piece)
                if chars >= BATCH_CHARS:
                    if want(number):
                        yield number, texts, Counts(records, held)
                    number, texts, chars, records, held = number + 1, [], 0, 0, 0
            if records == BATCH_RECORDS:
                if want(number):
                    yield number, texts, Counts(records, held)
                number, texts, chars, records, held = number + 1, [], 0, 0, 0
        if (records or texts) and want(number):
            yield number, texts, Counts(records, held)

    def fingerprint(self) -> str:
        """A string that changes when the slice's content may have changed."""
        raise NotImplementedError


def take_batch(paragraphs: Iterator[str]) -> list[str]:
    """The next batch of paragraphs (non-empty by construction), by the same rule as `Source.batches`."""
    batch, chars = [], 0
    for p in paragraphs:
        batch.append(p)
        chars += len(p)
        if len(batch) == BATCH_RECORDS or chars >= BATCH_CHARS:
            break
    return batch


def parse_slice(spec: str, one_split: bool) -> tuple[str | None, str | None]:
    """The (start, stop) texts of `split[start:stop]`; ValueError in plain words for a malformed or foreign split."""
    match = SLICE_PATTERN.match(spec)
    if not match:
        raise ValueError(f"slice: {spec!r} is not a split slice; use e.g. 'train[:5000]'")
    if one_split and match["split"] != "train":
        raise ValueError(f"slice: this data has one split, 'train' (got {match['split']!r})")
    return match["start"], match["stop"]


def bound(text: str | None, n: int) -> int | None:
    """One end of a slice as a row index; percentages round to the nearest row, as `datasets` does."""
    if text is None:
        return None
    if text.endswith("%"):
        return round(int(text[:-1]) * n / 100)
    return int(text)


def first_line(error: Exception) -> str:
    """The first line of an exception message, shortened for one-line display."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def hub_unreachable(dataset_id: str) -> ValueError:
    """The refusal for a hub dataset while offline: a ValueError, for the caller to raise."""
    return ValueError(
        f"dataset: the Hugging Face hub is not reachable, so {dataset_id!r} cannot be downloaded; "
        "use the built-in corpus or upload a file"
    )


def check_hub(dataset_id: str) -> None:
    """ValueError when the name may not be used here (a local path in public mode) or the hub cannot be reached
    (`hub_unreachable`)."""
    hub_access.check_hub_name(dataset_id, "dataset", "dataset")
    if not hub_access.is_online():
        raise hub_unreachable(dataset_id)

"""Hub datasets as sources: a split slice memory-mapped by `datasets` and read in batches (never `to_list()`), or,
for a split larger than `MLM_STUDIO_STREAM_MB`, streamed (`streaming=True`) so that only the rows the slice needs
are downloaded and tokenized as they arrive."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from typing import Any

from mlm_core.config import DEFAULT_DATASET, SLICE_PATTERN
from mlm_core.data.columns import Record, column_names, flatten_record, text_of
from mlm_core.data.source_base import (
    ARROW_BATCH_RECORDS,
    Counts,
    Source,
    Want,
    batch_texts,
    bound,
    check_hub,
    first_line,
    parse_slice,
)
from mlm_core.system import hub_access, settings


def open_hub_source(dataset_id: str, spec: str) -> Source:
    """A hub dataset's split slice: memory-mapped Arrow, or a stream when the split is large. ValueError in plain
    words when the name may not be used here, the hub is unreachable or does not serve it, or the slice does not fit."""
    check_hub(dataset_id)
    parse_slice(spec, one_split=False)
    split = SLICE_PATTERN.match(spec)["split"]
    size = split_bytes(dataset_id, split)
    if size is not None and size > settings.current().stream_mb * 2**20:
        return StreamSource(dataset_id, spec, load_hub(dataset_id, split, streaming=True))
    return ArrowSource(dataset_id, spec, load_hub(dataset_id, spec, streaming=False))


def split_bytes(dataset_id: str, split: str) -> int | None:
    """The split's size as the hub's metadata reports it (None when it does not say)."""
    import datasets

    try:
        info = datasets.load_dataset_builder(dataset_id).info
    except Exception:  # no metadata is not an error: the dataset is then loaded the ordinary way
        return None
    if info.splits and split in info.splits and info.splits[split].num_bytes:
        return int(info.splits[split].num_bytes)
    return info.dataset_size or info.download_size or None


def load_hub(dataset_id: str, split: str, streaming: bool) -> Any:
    """`datasets.load_dataset(dataset_id, split=split)`, its failures as a ValueError in plain words (`not_on_hub`'s
    words when the hub has no such dataset or will not serve it)."""
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split, streaming=streaming)
    except ValueError as error:
        if "split" in str(error).lower() or "instruction" in str(error).lower():
            raise ValueError(f"slice: {split!r} does not fit {dataset_id!r} ({first_line(error)})") from None
        raise ValueError(f"dataset: could not load {dataset_id!r} ({first_line(error)})") from None
    except Exception as error:  # the hub raises many kinds; the user needs one line
        script = re.search(r"Dataset scripts are no longer supported, but found (\S+)", str(error))
        if script:
            raise loading_script(dataset_id, script[1]) from None
        if type(error).__name__ in {"DatasetNotFoundError", "RepositoryNotFoundError", "GatedRepoError"}:
            raise hub_access.not_on_hub(dataset_id, "dataset", "dataset") from None
        raise ValueError(f"dataset: could not load {dataset_id!r} ({first_line(error)})") from None
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(f"slice: name one split of {dataset_id!r}, e.g. 'train[:5000]'")
    return ds


def loading_script(dataset_id: str, script: str) -> ValueError:
    """The refusal of a dataset that is a loading script (`datasets` >= 4 runs none), naming what to use instead."""
    copies = {"eli5": DEFAULT_DATASET, "eli5_category": DEFAULT_DATASET}  # the guides' datasets, once scripts
    instead = (
        f"{copies[dataset_id]!r}, the same data as Parquet"
        if dataset_id in copies
        else "a copy of it stored as data files (Parquet, CSV or JSON: search the hub for its name)"
    )
    return ValueError(
        f"dataset: {dataset_id!r} is a loading script ({script}), which the datasets library no "
        f"longer runs; use {instead}"
    )


class ArrowSource(Source):
    """A memory-mapped `datasets.Dataset`: rows are read by position, a batch at a time."""

    def __init__(self, name: str, spec: str, dataset: Any):
        self.name, self.spec = name, spec
        self.ds = dataset.flatten()
        self.total = len(self.ds)
        self.size_hint = int(self.ds.data.nbytes)

    def records(self) -> Iterator[Record]:
        """Every record of the slice, flattened, read a batch of rows at a time."""
        for batch in self.ds.iter(batch_size=ARROW_BATCH_RECORDS):
            yield from (dict(zip(batch, row)) for row in zip(*batch.values()))

    def peek(self, n: int) -> list[Record]:
        """The first `n` records of the slice, flattened."""
        return self.ds.select(range(min(n, self.total))).to_list()

    def batches(self, column: str, want: Want = lambda b: True) -> Iterator[tuple[int, list[str], Counts]]:
        """As `Source.batches`, in fixed batches of ARROW_BATCH_RECORDS rows, read by position."""
        names = column_names(column)
        values = self.ds.select_columns(names)
        for number in range(math.ceil(self.total / ARROW_BATCH_RECORDS)):
            if want(number):
                start = number * ARROW_BATCH_RECORDS
                batch = values[start : start + ARROW_BATCH_RECORDS]
                rows = [dict(zip(names, row)) for row in zip(*(batch[name] for name in names))]
                texts, held = batch_texts(text_of(row, column) for row in rows)
                yield number, texts, Counts(len(rows), held)

    def fingerprint(self) -> str:
        """The dataset id, the slice and the Arrow table's fingerprint."""
        return f"hub:{self.name}:{self.spec}:{self.ds._fingerprint}"


class StreamSource(Source):
    """A streamed `datasets.IterableDataset`; the slice is taken as the rows go by. ValueError naming `slice` for a
    percentage or negative bound when the stream does not report its length."""

    def __init__(self, name: str, spec: str, dataset: Any):
        self.name, self.spec, self.ds = name, spec, dataset
        start, stop = parse_slice(spec, one_split=False)
        split = SLICE_PATTERN.match(spec)["split"]
        info = getattr(dataset, "info", None)
        splits = getattr(info, "splits", None) or {}
        n = splits[split].num_examples if split in splits else None
        if n:  # the length is known: bounds resolve as on a list (past the end is the end, as `datasets` does)
            resolved = range(n)[slice(bound(start, n), bound(stop, n))]
            self.range = slice(resolved.start, resolved.stop)
        elif any(b is not None and (b.endswith("%") or b.startswith("-")) for b in (start, stop)):
            raise ValueError(
                f"slice: {name!r} is streamed and does not report its length, so {spec!r} cannot "
                "be resolved; use row numbers, e.g. 'train[:100000]'"
            )
        else:
            self.range = slice(int(start) if start else None, int(stop) if stop else None)
        if self.range.stop is not None:
            self.total = max(0, self.range.stop - (self.range.start or 0))
        self.size_hint = settings.current().stream_mb * 2**20
        self.identity = json.dumps(
            {"info": repr(info.splits) if info else None, "version": str(getattr(info, "version", None))},
            sort_keys=True,
        )

    def records(self) -> Iterator[Record]:
        """The records of the slice as they stream in, flattened (ValueError for records nested too deeply)."""
        return (flatten_record(r) for r in itertools.islice(self.ds, self.range.start, self.range.stop))

    def fingerprint(self) -> str:
        """The dataset id, the slice, and the split info and version the hub reports."""
        return f"hub-stream:{self.name}:{self.spec}:{self.identity}"

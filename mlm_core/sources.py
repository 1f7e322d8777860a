"""Raw records from a hub dataset, an uploaded file, or the built-in corpus, with a split slice applied."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

from . import corpus, hub
from .config import FILE_DATASET, SLICE_PATTERN, TrainConfig

FILE_SUFFIXES = (".txt", ".csv", ".jsonl", ".json")
MAX_UPLOAD_MB = int(os.environ.get("MLM_STUDIO_MAX_UPLOAD_MB", "200"))
MAX_FILE_BYTES = MAX_UPLOAD_MB * 1024 * 1024

Record = dict[str, Any]


def load_records(config: TrainConfig) -> list[Record]:
    """The rows a run trains on, before text extraction."""
    if config.is_builtin_dataset:
        records = apply_slice(list(corpus.builtin_records(config.dataset)), config.slice)
    elif config.dataset == FILE_DATASET:
        records = apply_slice(read_file(config.dataset_file), config.slice)
    else:
        records = _hub_records(config.dataset, config.slice)
    if not records:
        raise ValueError(f"slice: {config.slice!r} leaves no rows of {config.dataset!r}")
    return records


def count_rows(config: TrainConfig) -> int | None:
    """Rows of the data before the slice (for the preview's "rows used of"), when cheap to know."""
    if config.is_builtin_dataset:
        return len(corpus.builtin_records(config.dataset))
    if config.dataset == FILE_DATASET:
        return len(read_file(config.dataset_file))
    return None


def apply_slice(records: list[Record], spec: str) -> list[Record]:
    """Rows selected by `train[a:b]` (integers or percentages) from a one-split source."""
    match = SLICE_PATTERN.match(spec)
    if not match:
        raise ValueError(f"slice: {spec!r} is not a split slice; use e.g. 'train[:5000]'")
    if match["split"] != "train":
        raise ValueError(f"slice: this data has one split, 'train' (got {match['split']!r})")
    n = len(records)
    return records[_bound(match["start"], n) : _bound(match["stop"], n)]


def _bound(text: str | None, n: int) -> int | None:
    """One end of a slice as a row index; percentages round to the nearest row, as `datasets` does."""
    if text is None:
        return None
    if text.endswith("%"):
        return round(int(text[:-1]) * n / 100)
    return int(text)


def check_file(path: str | None) -> Path:
    """The path of a readable data file of a known kind within the size limit; ValueError otherwise."""
    file = Path(path or "")
    if file.suffix.lower() not in FILE_SUFFIXES:
        raise ValueError(f"dataset_file: use a {', '.join(FILE_SUFFIXES)} file (got {file.name!r})")
    if not file.is_file():
        raise ValueError(f"dataset_file: no such file {file.name!r}")
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"dataset_file: {file.name!r} is {size / 2**20:.0f} MB; the limit is "
                         f"{MAX_FILE_BYTES // 2**20} MB")
    return file


def read_file(path: str | None) -> list[Record]:
    """Records of an uploaded .txt (one per blank-line-separated paragraph), .csv, .jsonl or .json file."""
    file = check_file(path)
    try:
        text = file.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"dataset_file: {file.name!r} is not UTF-8 text (byte {error.start})") from None
    if not text.strip():
        raise ValueError(f"dataset_file: {file.name!r} is empty")
    reader = {".txt": _txt_records, ".csv": _csv_records, ".jsonl": _jsonl_records, ".json": _json_records}
    return reader[file.suffix.lower()](text)


def _txt_records(text: str) -> list[Record]:
    """One record per paragraph; paragraphs are separated by blank lines."""
    paragraphs = (p.strip() for p in text.replace("\r\n", "\n").split("\n\n"))
    return [{"text": p} for p in paragraphs if p]


def _csv_records(text: str) -> list[Record]:
    """Rows of a CSV file with a header line."""
    try:
        dialect = csv.Sniffer().sniff(text[:65536], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = list(csv.DictReader(io.StringIO(text), dialect=dialect))
    except csv.Error as error:
        raise ValueError(f"dataset_file: the CSV cannot be read ({error})") from None
    return [{k: v for k, v in row.items() if k is not None} for row in rows]


def _jsonl_records(text: str) -> list[Record]:
    """One JSON object (or string) per non-empty line."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                records.append(_as_record(json.loads(line)))
            except json.JSONDecodeError:
                raise ValueError(f"dataset_file: line {number} is not valid JSON") from None
            except RecursionError:
                raise ValueError(f"dataset_file: line {number} is nested too deeply to be a record") from None
    return records


def _json_records(text: str) -> list[Record]:
    """A JSON array of records, or an object holding one (e.g. {"data": [...]})."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"dataset_file: not valid JSON (line {error.lineno})") from None
    except RecursionError:
        raise ValueError("dataset_file: the JSON is nested too deeply to hold records") from None
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ValueError("dataset_file: the JSON must be an array of records, or an object holding one array")
        data = lists[0]
    if not isinstance(data, list):
        raise ValueError("dataset_file: the JSON must be an array of records")
    return [_as_record(item) for item in data]


def _as_record(item: Any) -> Record:
    """A JSON value as a record: objects stay, bare strings become {'text': ...}."""
    return item if isinstance(item, dict) else {"text": item if isinstance(item, str) else json.dumps(item)}


def _hub_records(dataset_id: str, split: str) -> list[Record]:
    """Rows of a hub dataset split slice, nested fields flattened by `datasets`."""
    hub.check_hub_name(dataset_id, "dataset", "dataset")
    if not hub.is_online():
        raise ValueError(f"dataset: the Hugging Face hub is not reachable, so {dataset_id!r} cannot be downloaded; "
                         "use the built-in corpus or upload a file")
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, split=split)
    except ValueError as error:
        if "split" in str(error).lower() or "instruction" in str(error).lower():
            raise ValueError(f"slice: {split!r} does not fit {dataset_id!r} ({_first_line(error)})") from None
        raise ValueError(f"dataset: could not load {dataset_id!r} ({_first_line(error)})") from None
    except Exception as error:  # the hub raises many kinds; the user needs one line
        if type(error).__name__ in {"DatasetNotFoundError", "RepositoryNotFoundError", "GatedRepoError"}:
            raise hub.not_on_hub(dataset_id, "dataset", "dataset") from None
        raise ValueError(f"dataset: could not load {dataset_id!r} ({_first_line(error)})") from None
    if isinstance(ds, datasets.DatasetDict):
        raise ValueError(f"slice: name one split of {dataset_id!r}, e.g. 'train[:5000]'")
    return ds.flatten().to_list()


def _first_line(error: Exception) -> str:
    """The first line of an exception message, shortened for one-line display."""
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]

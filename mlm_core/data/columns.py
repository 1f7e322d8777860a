"""Records and their text: nested fields flattened to dotted names, the text columns found (one, or several joined
per row), lists of text joined."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from typing import Any

Record = dict[str, Any]
# Column names that usually hold the prose, in order of preference.
PREFERRED_COLUMNS = ("text", "answers.text", "content", "body", "document", "sentence", "article", "abstract")
MAX_NESTING = 32  # levels of fields within fields; deeper is not a record of text (and would exhaust the stack)
# A document is tokenized in pieces of at most this many characters: a tokenizer's memory grows with its input (a
# 10 MB line took 3.45 GB, a 60 MB one over 22 GB), and the pieces' tokens are grouped into blocks all the same.
MAX_PIECE_CHARS = 1 << 18


def flatten_record(record: Record, prefix: str = "", depth: int = 0) -> Record:
    """Nested dicts become dotted keys: {'answers': {'text': [...]}} -> {'answers.text': [...]}; ValueError naming
    `text_column` when fields nest more than MAX_NESTING levels deep."""
    if depth > MAX_NESTING:
        raise ValueError(f"text_column: records nest fields more than {MAX_NESTING} levels deep")
    flat: Record = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_record(value, prefix=f"{name}.", depth=depth + 1))
        else:
            flat[name] = value
    return flat


def as_text(value: Any, depth: int = 0) -> str | None:
    """A field as one string: text stays, lists of text are joined with spaces, anything else is not text."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and depth < MAX_NESTING:
        parts = [as_text(v, depth + 1) for v in value]
        if parts and all(p is not None for p in parts):
            return " ".join(p for p in parts if p)
    return None


def text_value(value: Any) -> str | None:
    """A field's text if it holds some (not only white space), else None."""
    text = as_text(value)
    return text if text and text.strip() else None


def column_names(column: str) -> list[str]:
    """The names in a text-column choice: one name, or several separated by commas ('title, instructions')."""
    return [name.strip() for name in column.split(",") if name.strip()]


def text_of(record: Record, column: str) -> str | None:
    """The record's text in `column`, as `text_value`; for several columns, their texts in order, one per line
    (None when none holds text)."""
    texts = [text for name in column_names(column) if (text := text_value(record.get(name))) is not None]
    return "\n".join(texts) if texts else None


def detect_text_column(records: Sequence[Record]) -> str:
    """The columns that hold the prose: a preferred name ('text', 'answers.text', ...) if it holds text, else every
    column of sentences (text with spaces in most rows: not ids or one-word labels) in the records' order, e.g.
    'title, ingredients, instructions', else the longest text column; ValueError listing the columns when none holds
    text."""
    sample = records[:200]
    lengths: dict[str, list[int]] = {}
    for record in sample:
        for name, value in record.items():
            text = as_text(value)
            if text is not None and any(c.isalpha() or unicodedata.category(c) == "So" for c in text):
                lengths.setdefault(name, []).append(len(text))
    # A text column must be text in most rows and hold letters or symbols (emoji), not only numbers.
    candidates = {name: sum(v) / len(sample) for name, v in lengths.items() if len(v) >= len(sample) / 2}
    if not candidates:
        columns = sorted({name for record in sample for name in record})
        raise ValueError(f"text_column: no column holds text; columns are {', '.join(columns) or 'none'}")
    for name in PREFERRED_COLUMNS:
        if name in candidates:
            return name
    spaced = [n for n in candidates if sum(" " in (as_text(r.get(n)) or "") for r in sample) * 2 >= len(sample)]
    return ", ".join(spaced) if spaced else max(candidates, key=candidates.get)


def check_column(records: Sequence[Record], column: str) -> None:
    """ValueError naming the columns when none of the first records has `column` (or one of its names)."""
    for name in column_names(column) or [column]:
        if not any(name in record for record in records[:1000]):
            columns = sorted({name for record in records[:200] for name in record})
            raise ValueError(f"text_column: no column {name!r}; columns are {', '.join(columns)}")


def text_pieces(text: str, limit: int = MAX_PIECE_CHARS) -> Iterator[str]:
    """`text` in consecutive pieces of at most `limit` characters, cut after the last white space before the limit
    (mid-word only when a piece holds none); joined, the pieces are `text`."""
    start = 0
    while len(text) - start > limit:
        cut = max(text.rfind(" ", start, start + limit), text.rfind("\n", start, start + limit)) + 1
        cut = cut if cut > start else start + limit
        yield text[start:cut]
        start = cut
    yield text[start:]

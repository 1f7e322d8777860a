"""Uploaded files read as streams of records, a few MiB at a time: .txt paragraphs, .csv and .tsv rows, .jsonl lines
and the elements of a .json array (spreadsheets and documents: `documents`). Memory stays flat however large the
file; the records are those the whole-file readers made (tests compare both), and so are the error messages."""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlm_core.data.columns import MAX_PIECE_CHARS, text_pieces
from mlm_core.data.documents import DOCUMENT_SUFFIXES, TABLE_SUFFIXES, convert_hint, document_records, table_records
from mlm_core.system import settings

TEXT_SUFFIXES = (".txt", ".md", ".csv", ".tsv", ".jsonl", ".json")  # UTF-8 text
FILE_SUFFIXES = (".txt", ".md", ".csv", ".tsv", ".jsonl", ".json", ".xlsx", ".ods", ".parquet", ".docx", ".pdf")
_EXTRA = object()  # csv.DictReader's key for the cells beyond the header's
CHUNK_BYTES = 1 << 20  # read size (a record longer than this spans several reads); larger reads cost memory, not time
CSV_DELIMITERS = (",", ";", "\t", "|")
JSON_SPACE = " \t\n\r"
_DELIMITER = re.compile(r"[ \t\n\r,\]}:]")

Record = dict[str, Any]


def check_file(path: str | None) -> Path:
    """The file, after checking its type, presence, size and that a text file holds something; ValueError otherwise
    (for a type we do not read, saying how to convert it)."""
    file = Path(path or "")
    suffix = file.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise ValueError(
            f"dataset_file: {file.name!r} is not a kind of file this app reads: {convert_hint(suffix)} "
            f"(it reads {', '.join(FILE_SUFFIXES)})"
        )
    if not file.is_file():
        raise ValueError(f"dataset_file: no such file {file.name!r}")
    size, limit_mb = file.stat().st_size, settings.current().max_upload_mb
    if size > limit_mb * 2**20:
        raise ValueError(f"dataset_file: {file.name!r} is {size / 2**20:.0f} MB; the limit is {limit_mb} MB")
    if suffix in TEXT_SUFFIXES and not any(chunk.strip() for chunk in text_chunks(file)):
        raise ValueError(f"dataset_file: {file.name!r} is empty")
    return file


def iter_file_records(path: str | Path) -> Iterator[Record]:
    """Records of an uploaded file, streamed: a .txt paragraph, a .csv or .tsv row, a .jsonl line, an element of a
    .json array, a spreadsheet's row, a document's paragraph; ValueError in plain words at once when the file cannot
    be used (as `check_file`), and while reading at malformed content or a spreadsheet or document with no text."""
    file = check_file(str(path))
    suffix = file.suffix.lower()
    if suffix == ".txt":
        return ({"text": p} for p in txt_paragraphs(file))
    if suffix in TABLE_SUFFIXES or suffix in DOCUMENT_SUFFIXES:
        read = table_records if suffix in TABLE_SUFFIXES else document_records
        return _not_empty(read(file), file)
    return {".csv": _csv_records, ".tsv": _csv_records, ".jsonl": _jsonl_records, ".json": _json_records}[suffix](file)


def _not_empty(records: Iterator[Record], file: Path) -> Iterator[Record]:
    """`records`; ValueError when there is none."""
    empty = True
    for record in records:
        empty = False
        yield record
    if empty:
        raise ValueError(f"dataset_file: {file.name!r} holds no text")


def text_chunks(file: Path) -> Iterator[str]:
    """The file decoded as UTF-8 (a leading BOM dropped), a few MiB at a time; ValueError at the first bad byte."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    done = 0  # bytes handed to the decoder so far
    with file.open("rb") as stream:
        while True:
            raw = stream.read(CHUNK_BYTES)
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as error:
                raise ValueError(
                    f"dataset_file: {file.name!r} is not UTF-8 text (byte {done - pending + error.start})"
                ) from None
            done += len(raw)
            if text:
                yield text
            if not raw:
                return


def _held_cr(chunks: Iterator[str]) -> Iterator[str]:
    """The chunks, with a trailing '\\r' moved to the next chunk so that no '\\r\\n' pair is ever split."""
    held = ""
    for chunk in chunks:
        chunk = held + chunk
        held = "\r" if chunk.endswith("\r") else ""
        if held:
            chunk = chunk[:-1]
        if chunk:
            yield chunk
    if held:
        yield held


def txt_paragraphs(file: Path) -> Iterator[str]:
    """Non-empty stripped paragraphs (CRLF and a lone CR, old Mac line ends, read as LF; paragraphs end at a blank
    line), as `str.split('\\n\\n')`;
    a paragraph longer than MAX_PIECE_CHARS comes in pieces (`text_pieces`), so that memory stays flat for a file
    with no line break. ValueError at the first byte that is not UTF-8."""
    carry = ""  # the normalised text after the last separator seen
    for chunk in _held_cr(text_chunks(file)):
        parts = (carry + chunk.replace("\r\n", "\n").replace("\r", "\n")).split("\n\n")
        carry = parts.pop()
        if len(carry) > MAX_PIECE_CHARS:
            *pieces, carry = text_pieces(carry)
            parts += pieces
        yield from (p for p in (part.strip() for part in parts) if p)
    if carry.strip():
        yield carry.strip()


def file_lines(file: Path, sep: str | None = None) -> Iterator[str]:
    """Lines with their endings kept: split at '\\n' only (as csv over io.StringIO), or as `str.splitlines`;
    ValueError at the first byte that is not UTF-8."""
    carry = ""
    for chunk in _held_cr(text_chunks(file)):
        if sep:
            *lines, carry = (carry + chunk).split(sep)
            yield from (line + sep for line in lines)
        else:
            lines = (carry + chunk).splitlines(keepends=True)
            complete = lines[-1].splitlines()[0] != lines[-1]  # the last line has its line break
            carry = "" if complete else lines.pop()
            yield from lines
    if carry:
        yield carry


def _csv_records(file: Path) -> Iterator[Record]:
    """Rows of a .csv or .tsv file with a header line, read as Excel and Google Sheets write them (quoted cells,
    doubled quotes, line breaks in cells), a .csv's delimiter (, ; tab |) found in its header. A row
    with more cells than the header: rejoined when the header names one column (its text held the delimiter),
    else ValueError naming the line."""
    delimiter = "\t" if file.suffix.lower() == ".tsv" else _header_delimiter(file)
    rows = csv.DictReader(file_lines(file, "\n"), dialect=csv.excel, delimiter=delimiter, restkey=_EXTRA)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as error:
            raise ValueError(f"dataset_file: the CSV cannot be read ({error})") from None
        if _EXTRA in row:
            if len(rows.fieldnames) != 1:
                raise ValueError(
                    f"dataset_file: line {rows.line_num} has {len(rows.fieldnames) + len(row[_EXTRA])} cells where "
                    f"the header names {len(rows.fieldnames)}: put a cell that holds {delimiter!r} in double quotes "
                    "(spreadsheets do when they save a CSV)"
                )
            only = rows.fieldnames[0]
            row[only] = delimiter.join([row[only], *row.pop(_EXTRA)])
        yield {k: v for k, v in row.items() if v is not None}


def _header_delimiter(file: Path) -> str:
    """The delimiter of a CSV file: whichever of , ; tab | its header line holds most (',' for a one-column header).
    The header, unlike the rows, holds no quoted line breaks (csv.Sniffer, which compares rows, took a sheet's
    multi-line cells for rows and guessed wrong)."""
    header = next(file_lines(file, "\n"), "")
    counts = {delimiter: header.count(delimiter) for delimiter in CSV_DELIMITERS}
    return max(counts, key=counts.get) if any(counts.values()) else ","


def _jsonl_records(file: Path) -> Iterator[Record]:
    """One JSON object (or string) per non-empty line; lines counted as `str.splitlines` does."""
    for number, line in enumerate(file_lines(file), start=1):
        content = line.splitlines()[0] if line else ""
        if content.strip():
            try:
                yield as_record(json.loads(content))
            except json.JSONDecodeError:
                raise ValueError(f"dataset_file: line {number} is not valid JSON") from None
            except RecursionError:
                raise ValueError(f"dataset_file: line {number} is nested too deeply to be a record") from None


def as_record(item: Any) -> Record:
    """A JSON value as a record: objects stay, bare strings become {'text': ...}."""
    return item if isinstance(item, dict) else {"text": item if isinstance(item, str) else json.dumps(item)}


NOT_AN_ARRAY = "dataset_file: the JSON must be an array of records, or an object holding one array"


def _json_records(file: Path) -> Iterator[Record]:
    """The elements of a JSON array, or of the one array an object holds (e.g. {"data": [...]}), parsed one by one."""
    scan = _JsonScanner(text_chunks(file))
    first = scan.peek()
    if first == "[":
        yield from (as_record(item) for item in scan.array())
    elif first == "{":
        yield from _object_with_one_array(scan)
    else:
        scan.value()
        scan.end()
        raise ValueError("dataset_file: the JSON must be an array of records")
    scan.end()


def _object_with_one_array(scan: _JsonScanner) -> Iterator[Record]:
    """The records of the single array among an object's values."""
    arrays = 0
    scan.expect("{")
    while scan.peek() != "}":
        if not isinstance(scan.value(), str):
            scan.fail()
        scan.expect(":")
        if scan.peek() == "[":
            arrays += 1
            if arrays > 1:
                raise ValueError(NOT_AN_ARRAY)
            yield from (as_record(item) for item in scan.array())
        else:
            scan.value()
        if scan.peek() == ",":
            scan.expect(",")
        elif scan.peek() != "}":
            scan.fail()
    scan.expect("}")
    if arrays != 1:
        raise ValueError(NOT_AN_ARRAY)


class _JsonScanner:
    """Incremental JSON reading over text chunks: values are decoded one at a time, consumed text is dropped."""

    def __init__(self, chunks: Iterator[str]):
        self.chunks, self.buf, self.pos, self.lines_before = chunks, "", 0, 0
        self.decoder = json.JSONDecoder()

    def _fill(self, at_least: int = 1) -> bool:
        """Read chunks until `at_least` more characters are buffered (dropping what was consumed); False at the end
        of the file."""
        chunks = []
        for chunk in self.chunks:
            chunks.append(chunk)
            at_least -= len(chunk)
            if at_least <= 0:
                break
        if not chunks:
            return False
        self.lines_before += self.buf.count("\n", 0, self.pos)
        self.buf, self.pos = self.buf[self.pos :] + "".join(chunks), 0
        return True

    def peek(self) -> str:
        """The next non-space character ('' at the end); ValueError at a byte that is not UTF-8."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in JSON_SPACE:
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return self.buf[self.pos : self.pos + 1]

    def expect(self, char: str) -> None:
        """Consume `char`, or fail (ValueError)."""
        if self.peek() != char:
            self.fail()
        self.pos += 1

    def value(self) -> Any:
        """The next JSON value, decoded; ValueError with the line when it is not valid JSON or nests too deeply."""
        self.peek()
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as error:
                if self._fill(len(self.buf) - self.pos):  # double what is held: a long value parses in linear time
                    continue
                raise ValueError(f"dataset_file: not valid JSON (line {self.lines_before + error.lineno})") from None
            except RecursionError:
                raise ValueError("dataset_file: the JSON is nested too deeply to hold records") from None
            # A value must be followed by a delimiter; before one is read, a number ("3." of "3.25") may go on.
            if _DELIMITER.search(self.buf, end) or not self._fill():
                self.pos = end
                return value

    def array(self) -> Iterator[Any]:
        """The elements of the array that starts here; ValueError where the JSON is not valid."""
        self.expect("[")
        if self.peek() == "]":
            self.pos += 1
            return
        while True:
            yield self.value()
            if self.peek() == "]":
                self.pos += 1
                return
            self.expect(",")

    def end(self) -> None:
        """Only white space may follow the top-level value; ValueError otherwise."""
        if self.peek():
            self.fail()

    def fail(self) -> None:
        """Raise the plain-words ValueError at the current line."""
        line = self.lines_before + self.buf.count("\n", 0, self.pos) + 1
        raise ValueError(f"dataset_file: not valid JSON (line {line})")

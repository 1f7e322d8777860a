"""Spreadsheets and documents as records, read with their formats' own libraries: workbooks (.xlsx, .ods) and
.parquet tables by row (the first row of a sheet names the columns), documents (.docx, .pdf, .md) by paragraph, a
table of a document by row. Any failure of a file's library is a ValueError in plain words."""

from __future__ import annotations

import contextlib
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlm_core.system import settings

Record = dict[str, Any]
TABLE_SUFFIXES = (".xlsx", ".ods", ".parquet")
DOCUMENT_SUFFIXES = (".docx", ".pdf", ".md")
CELL_SEPARATOR = "; "  # between the cells of a document table's row
# How to turn files people often have into one we read, by suffix.
CONVERT_HINTS = {
    ".doc": "open it in Word or LibreOffice and save it as .docx",
    ".rtf": "open it in Word or LibreOffice and save it as .docx",
    ".odt": "open it in LibreOffice and save it as .docx",
    ".pages": "export it from Pages as Word (.docx)",
    ".xls": "open it in Excel or LibreOffice and save it as .xlsx",
    ".numbers": "export it from Numbers as Excel (.xlsx) or CSV",
    ".html": "save the page's text as .txt (or print it to .pdf)",
    ".htm": "save the page's text as .txt (or print it to .pdf)",
    ".epub": "convert it to .txt or .pdf (e.g. with Calibre)",
}
_MANY_BREAKS = re.compile(r"\n\s*\n")


def convert_hint(suffix: str) -> str:
    """How to make a file of `suffix` readable, in words."""
    return CONVERT_HINTS.get(suffix, "save it as .txt (text), .csv or .xlsx (a table), or .docx or .pdf (a document)")


@contextlib.contextmanager
def _reading(file: Path, kind: str) -> Iterator[None]:
    """Turn whatever the format's library raises on a damaged or disguised file into a ValueError naming it."""
    try:
        yield
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 (each library has its own errors; a crafted file reaches any)
        raise ValueError(
            f"dataset_file: {file.name!r} cannot be read as {kind} ({type(error).__name__}); save it again from "
            "the program that made it"
        ) from None


def _check_unpacked_size(file: Path) -> None:
    """A .xlsx, .ods or .docx is a zip: ValueError when it would unpack to more than ten times the upload limit
    (a zip bomb, or a document made of pictures)."""
    limit = 10 * settings.current().max_upload_mb * 2**20
    with zipfile.ZipFile(file) as archive:
        if sum(member.file_size for member in archive.infolist()) > limit:
            raise ValueError(f"dataset_file: {file.name!r} unpacks to more than {limit // 2**20:,} MB")


def table_records(file: Path) -> Iterator[Record]:
    """The rows of a workbook's first sheet or a .parquet table as records keyed by its column names; cells as text
    (numbers as written, empty cells left out). ValueError in plain words for a damaged file."""
    suffix = file.suffix.lower()
    kind = {".xlsx": "an Excel workbook", ".ods": "an OpenDocument spreadsheet", ".parquet": "a Parquet table"}[suffix]
    with _reading(file, kind):
        if suffix == ".parquet":
            yield from _parquet_records(file)
            return
        _check_unpacked_size(file)
        rows = _xlsx_rows(file) if suffix == ".xlsx" else _ods_rows(file)
        header = next(rows, None)
        if header is None:
            return
        names = [_cell_text(cell) or f"column {i + 1}" for i, cell in enumerate(header)]
        for row in rows:
            record = {name: text for name, cell in zip(names, row) if (text := _cell_text(cell))}
            if record:
                yield record


def _cell_text(cell: Any) -> str:
    """A cell as text: integers stored as floats without '.0', empty as ''."""
    if cell is None:
        return ""
    if isinstance(cell, float) and cell.is_integer():
        return str(int(cell))
    return str(cell).strip()


def _xlsx_rows(file: Path) -> Iterator[tuple]:
    """The first sheet's rows, streamed (openpyxl's read-only mode keeps memory flat)."""
    import openpyxl

    workbook = openpyxl.load_workbook(file, read_only=True, data_only=True)
    try:
        yield from workbook.worksheets[0].iter_rows(values_only=True)
    finally:
        workbook.close()


def _ods_rows(file: Path) -> Iterator[tuple]:
    """The first sheet's rows (pandas with odfpy: read whole, an .ods has no streaming reader)."""
    import pandas

    frame = pandas.read_excel(file, engine="odf", sheet_name=0, header=None, dtype=object)
    for row in frame.itertuples(index=False):
        yield tuple(None if pandas.isna(cell) else cell for cell in row)


def _parquet_records(file: Path) -> Iterator[Record]:
    """A .parquet table's rows, a thousand at a time."""
    import pyarrow.parquet

    for batch in pyarrow.parquet.ParquetFile(file).iter_batches(batch_size=1000):
        yield from batch.to_pylist()


def document_records(file: Path) -> Iterator[Record]:
    """The paragraphs of a .docx, .pdf or .md document as {'text': ...} records, in reading order (a table's rows
    in a .docx, its cells joined by '; '). ValueError in plain words for a damaged or locked file."""
    suffix = file.suffix.lower()
    kind = {".docx": "a Word document", ".pdf": "a PDF", ".md": "Markdown"}[suffix]
    read = {".docx": _docx_paragraphs, ".pdf": _pdf_paragraphs, ".md": _markdown_paragraphs}[suffix]
    with _reading(file, kind):
        for paragraph in read(file):
            if paragraph.strip():
                yield {"text": paragraph.strip()}


def _docx_paragraphs(file: Path) -> Iterator[str]:
    """Paragraphs and table rows of a Word document's body, in order (python-docx)."""
    import docx
    from docx.table import Table

    _check_unpacked_size(file)
    for block in docx.Document(str(file)).iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = dict.fromkeys(cell.text.strip() for cell in row.cells)  # merged cells repeat
                yield CELL_SEPARATOR.join(c for c in cells if c)
        else:
            yield block.text


def _pdf_paragraphs(file: Path) -> Iterator[str]:
    """A PDF's text (pypdf), page by page: paragraphs at blank lines, the lines of one joined with spaces (a word
    hyphenated across a line break is joined whole)."""
    import pypdf

    reader = pypdf.PdfReader(file)
    if reader.is_encrypted and not reader.decrypt(""):
        raise ValueError(f"dataset_file: {file.name!r} is protected by a password; save a copy without one")
    found = False
    for page in reader.pages:
        for paragraph in _MANY_BREAKS.split(page.extract_text() or ""):
            text = re.sub(r"(\w)-\n(\w)", r"\1\2", paragraph)
            text = " ".join(text.split())
            found = found or bool(text)
            yield text
    if not found:
        raise ValueError(
            f"dataset_file: {file.name!r} holds no text that can be copied (a scan?); run it through text "
            "recognition (OCR) first"
        )


def _markdown_paragraphs(file: Path) -> Iterator[str]:
    """A Markdown document's headings, paragraphs, list items and table cells as plain text (markdown-it: markup,
    link targets and HTML dropped; code blocks left out)."""
    from markdown_it import MarkdownIt

    from mlm_core.data.text_files import text_chunks

    parser = MarkdownIt("commonmark").enable("table")
    for token in parser.parse("".join(text_chunks(file))):
        if token.type == "inline":
            yield "".join(
                " " if child.type in ("softbreak", "hardbreak") else child.content
                for child in token.children or []
                if child.type in ("text", "code_inline", "softbreak", "hardbreak")
            )

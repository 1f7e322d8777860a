"""Files as people have them: CSV as spreadsheets write it, workbooks, Parquet, Word, PDF and Markdown documents, each
read whole (every cell, every paragraph); other files refused in words that say how to convert them."""

from __future__ import annotations

import csv
import io
import zipfile

import pytest

from mlm_core.config import TrainConfig
from mlm_core.data.columns import detect_text_column, text_of
from mlm_core.data.text_files import iter_file_records
from mlm_core.system import settings

HEADER = ("title", "servings", "ingredients", "instructions")
RECIPES = [
    ("Lemon cake", 4, "flour, sugar; lemons", 'Mix the flour and sugar.\nBake for "about" 40 minutes, then cool.'),
    ("Pancakes", 2, "eggs, milk", "Whisk, then fry; serve warm."),
    ("Crêpes à l'orange", 6, "œufs, lait", "Mélangez. Laissez reposer une heure."),
]
EXPECTED = [{name: str(value) for name, value in zip(HEADER, row)} for row in RECIPES]


def excel_csv(delimiter: str) -> bytes:
    """The recipes as Excel's 'CSV UTF-8' writes them: a BOM, CRLF line ends, doubled quotes, a line break in a cell."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)  # the csv module's default dialect is Excel's
    writer.writerows([HEADER, *RECIPES])
    return b"\xef\xbb\xbf" + out.getvalue().encode("utf-8")


@pytest.mark.parametrize("delimiter, suffix", [(",", ".csv"), (";", ".csv"), ("\t", ".csv"), ("\t", ".tsv")])
def test_csv_as_spreadsheets_write_it_is_read_whole(tmp_path, delimiter, suffix):
    path = tmp_path / f"recipes{suffix}"
    path.write_bytes(excel_csv(delimiter))
    assert list(iter_file_records(path)) == EXPECTED


def test_a_row_with_more_cells_than_its_header(tmp_path):
    one_column = tmp_path / "notes.csv"
    one_column.write_text("text\nHello, world, how are you?\nA second, shorter row\n", encoding="utf-8")
    assert [r["text"] for r in iter_file_records(one_column)] == ["Hello, world, how are you?", "A second, shorter row"]
    two_columns = tmp_path / "pairs.csv"
    two_columns.write_text('id,text\n1,"quoted, fine"\n2,not quoted, cut\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 3 has 3 cells where the header names 2: put a cell that holds ','"):
        list(iter_file_records(two_columns))


def test_workbooks_and_parquet_are_read_by_row(tmp_path):
    import openpyxl
    import pandas
    import pyarrow
    import pyarrow.parquet

    workbook = openpyxl.Workbook()
    for row in [HEADER, *RECIPES]:
        workbook.active.append(row)
    workbook.save(tmp_path / "recipes.xlsx")
    pandas.DataFrame(RECIPES, columns=HEADER).to_excel(tmp_path / "recipes.ods", engine="odf", index=False)
    table = pyarrow.Table.from_pylist([dict(zip(HEADER, row)) for row in RECIPES])
    pyarrow.parquet.write_table(table, tmp_path / "recipes.parquet")
    for name in ("recipes.xlsx", "recipes.ods"):
        assert list(iter_file_records(tmp_path / name)) == EXPECTED, name
    parquet = list(iter_file_records(tmp_path / "recipes.parquet"))
    assert [r["instructions"] for r in parquet] == [r["instructions"] for r in EXPECTED]


def test_every_column_of_sentences_is_the_default_text_joined_per_row(tmp_path):
    path = tmp_path / "recipes.csv"
    path.write_bytes(excel_csv(","))
    records = list(iter_file_records(path))
    column = detect_text_column(records)
    assert column == "title, ingredients, instructions", "servings (numbers) left out, the sheet's order kept"
    assert text_of(records[1], column) == "Pancakes\neggs, milk\nWhisk, then fry; serve warm."
    assert text_of(records[1], "instructions") == "Whisk, then fry; serve warm."
    assert detect_text_column([{"text": "a b", "title": "c d"}] * 3) == "text", "a 'text' column stays the choice"
    assert detect_text_column([{"id": f"x{i}", "label": "pos", "body": "a b c"} for i in range(4)]) == "body"


def test_a_run_trains_on_the_columns_chosen(tiny_mlm, tmp_path):
    from transformers import AutoTokenizer

    from mlm_core.data.lm_data import prepare_data

    path = tmp_path / "recipes.csv"
    rows = excel_csv(";").split(b"\r\n", 1)[1]
    path.write_bytes(excel_csv(";") + rows * 20)
    tokenizer = AutoTokenizer.from_pretrained(tiny_mlm)
    config = dict(model=str(tiny_mlm), dataset="file", dataset_file=str(path), block_size=16)
    every = prepare_data(TrainConfig(**config), tokenizer, 16)
    one = prepare_data(TrainConfig(**config, text_column="instructions"), tokenizer, 16)
    assert every.text_column == "title, ingredients, instructions" and one.text_column == "instructions"
    assert every.documents == one.documents == 63 and every.tokens > one.tokens * 1.3


def word_document(path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("La gazette de l'école", 1)
    document.add_paragraph("La kermesse aura lieu samedi, dans la cour.")
    table = document.add_table(rows=2, cols=2)
    for (i, j), text in {(0, 0): "Jour", (0, 1): "Activité", (1, 0): "Lundi", (1, 1): "Piscine"}.items():
        table.cell(i, j).text = text
    document.add_paragraph("")
    document.add_paragraph("À bientôt !")
    document.save(path)


def pdf_document(path, pages: list[list[str]]) -> None:
    """A PDF whose pages show these lines (Helvetica, one text object a line), written by hand: no library here
    writes text into a PDF, and pypdf only reads it."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        stream = "".join(f"BT /F1 12 Tf 72 {720 - 16 * i} Td ({line}) Tj ET\n" for i, line in enumerate(lines))
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}endstream")
        kids.append(len(objects) + 1)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {len(objects)} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>"
        )
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] /Count {len(kids)} >>"
    out, offsets = b"%PDF-1.4\n", []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)


def test_documents_are_read_by_paragraph(tmp_path):
    word_document(tmp_path / "gazette.docx")
    assert [r["text"] for r in iter_file_records(tmp_path / "gazette.docx")] == [
        "La gazette de l'école",
        "La kermesse aura lieu samedi, dans la cour.",
        "Jour; Activité",
        "Lundi; Piscine",
        "À bientôt !",
    ]
    pdf_document(tmp_path / "letter.pdf", [["Dear friends, the garden is in full", "bloom this week."], ["Page two."]])
    assert [r["text"] for r in iter_file_records(tmp_path / "letter.pdf")] == [
        "Dear friends, the garden is in full bloom this week.",
        "Page two.",
    ]
    (tmp_path / "notes.md").write_text(
        "# Notes\n\nSome *bold* words and a [link](https://example.org).\n\n- one item\n- two\n\n```\ncode = 1\n```\n",
        encoding="utf-8",
    )
    assert [r["text"] for r in iter_file_records(tmp_path / "notes.md")] == [
        "Notes",
        "Some bold words and a link.",
        "one item",
        "two",
    ]


def test_files_that_cannot_be_read_are_refused_in_words(tmp_path):
    import pypdf

    def refused(name: str, content: bytes, message: str) -> None:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"^dataset_file: '{name}' {message}"):
            list(iter_file_records(tmp_path / name))

    refused("letter.rtf", b"{\\rtf1 hi}", r"is not a kind of file this app reads: open it in Word or LibreOffice")
    refused("budget.xls", b"\xd0\xcf\x11\xe0", r"is not a kind of file this app reads: .* save it as \.xlsx")
    refused("photo.jpg", b"\xff\xd8", r"is not a kind of file this app reads: save it as \.txt \(text\)")
    refused("renamed.xlsx", b"plain text, not a workbook", r"cannot be read as an Excel workbook \(BadZipFile\)")
    refused("renamed.docx", b"PK\x03\x04 torn", r"cannot be read as a Word document")
    writer = pypdf.PdfWriter()
    writer.add_blank_page(612, 792)
    scan = io.BytesIO()
    writer.write(scan)
    refused("scan.pdf", scan.getvalue(), r"holds no text that can be copied \(a scan\?\); run it through text rec")
    writer.encrypt("secret")
    locked = io.BytesIO()
    writer.write(locked)
    refused("locked.pdf", locked.getvalue(), "is protected by a password")
    refused("blank.docx", _zip({"[Content_Types].xml": b""}), "cannot be read as a Word document")
    bomb = _zip({"xl/sheet.xml": b"\0" * (11 * 2**20)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLM_STUDIO_MAX_UPLOAD_MB", "1")
        settings.current.cache_clear()
        refused("bomb.xlsx", bomb, "unpacks to more than 10 MB")


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return out.getvalue()


def test_a_text_of_emoji_only_is_text(tiny_mlm, tmp_path):
    from transformers import AutoTokenizer

    from mlm_core.data.lm_data import prepare_data

    path = tmp_path / "emoji.txt"
    path.write_text("\n\n".join(f"🍎🍐 {'🍋' * (i % 4 + 1)} 😀 🥹🍉" for i in range(60)), encoding="utf-8")
    config = TrainConfig(model=str(tiny_mlm), dataset="file", dataset_file=str(path), block_size=16)
    data = prepare_data(config, AutoTokenizer.from_pretrained(tiny_mlm), 16)
    assert data.text_column == "text" and data.documents == 60  # no "no column holds text; columns are text"
    with pytest.raises(ValueError, match="no column holds text; columns are id, n"):
        detect_text_column([{"id": "17", "n": "42"}] * 3)  # numbers alone are not text

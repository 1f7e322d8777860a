"""Streamed file reading gives the records (and errors) of reading the whole file at once, at every chunk size."""

from __future__ import annotations

import csv
import io
import json

import pytest

from mlm_core.data import text_files
from mlm_core.data.text_files import as_record, iter_file_records


def whole_file_records(path) -> list[dict]:
    """The readers before streaming, verbatim in behaviour: decode everything, then parse."""
    text = path.read_bytes().decode("utf-8-sig")
    suffix = path.suffix
    if suffix == ".txt":
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return [{"text": p} for p in (p.strip() for p in text.split("\n\n")) if p]
    if suffix == ".csv":
        header = text.split("\n", 1)[0]
        delimiter = max(",;\t|", key=header.count) if any(d in header for d in ",;\t|") else ","
        rows = list(csv.DictReader(io.StringIO(text), delimiter=delimiter))
        return [{k: v for k, v in row.items() if v is not None} for row in rows]
    if suffix == ".jsonl":
        return [as_record(json.loads(line)) for line in text.splitlines() if line.strip()]
    data = json.loads(text)
    if isinstance(data, dict):
        [data] = [v for v in data.values() if isinstance(v, list)]
    return [as_record(item) for item in data]


CASES = {
    "old-mac.txt": "First paragraph\rits second line\r\rSecond paragraph\r\r\rThird\r",
    "plain.txt": "First paragraph\nstill first.\n\n\nSecond paragraph.\n",
    "crlf.txt": "\ufeffOne\r\n\r\nTwo\r\r\nstill two\r\n \r\n\r\nThree é ünï 中文 \U0001f600\r",
    "spaces.txt": "  \n\n  a  \n\n\n\n\t\n\nb\n\nc",
    "quoted.csv": 'id;body\n1;"Hello; world\nacross lines"\n2;Bye\r\n3;"é ""quoted"""\n',
    "commas.csv": 'id,body,extra\n1,"a, b",x\n2,c\n',
    "lines.jsonl": '{"a": {"text": ["x", "y"]}}\n\n"bare"\r\n  \n[1, 2]\n{"t": "\\u2028 in a string"}\n{"n": 1}',
    "array.json": '[{"text": "q", "n": 12345678901234567890}, "s", 3.25e-7, [1, {"a": null}], {"deep": {"x": "é"}}]',
    "object.json": '{"version": 2, "meta": {"n": [1]}, "data": [{"text": "one"}, {"text": "two"}], "name": "x"}',
    "spaced.json": '\n  [ \n {"text" : "a\\"b"} ,\n\n {"text": "c"}\n ]  \n',
    "empty-array.json": "[]",
}


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 4 << 20])
@pytest.mark.parametrize("name", sorted(CASES))
def test_streamed_records_equal_whole_file_records(tmp_path, monkeypatch, name, chunk):
    path = tmp_path / name
    path.write_bytes(CASES[name].encode("utf-8"))
    monkeypatch.setattr(text_files, "CHUNK_BYTES", chunk)
    assert list(iter_file_records(path)) == whole_file_records(path)


BROKEN = {
    "bad.jsonl": ('{"text": "ok"}\n\n{"text": broken\n', "line 3 is not valid JSON"),
    "crlf.jsonl": ('{"text": "ok"}\r\n{"text": broken\r\n', "line 2 is not valid JSON"),
    "bad.json": ('[{"text": "a"},\n {"text": "b"}\n {"text": "c"}]', r"not valid JSON \(line 3\)"),
    "trailing.json": ("[1, 2]\n\nextra", r"not valid JSON \(line 3\)"),
    "cut.json": ('[{"text": "a"},\n {"text": "b', r"not valid JSON \(line 2\)"),
    "scalar.json": ('"just text"', "must be an array of records$"),
    "two-arrays.json": ('{"a": [1], "b": [2]}', "or an object holding one array"),
    "no-array.json": ('{"a": 1}', "or an object holding one array"),
    "latin1.txt": ("caf\xe9".encode("latin-1"), r"is not UTF-8 text \(byte 3\)"),
    "late-latin1.txt": (b"x" * 100 + "\xe9".encode("latin-1") + b"y", r"is not UTF-8 text \(byte 100\)"),
    "blank.txt": (" \n\n \t ", "is empty"),
    "surplus.csv": (
        'id,body\n1,"a, b"\n2,c,d\n',
        "line 3 has 3 cells where the header names 2: put a cell that holds ','",
    ),
}


@pytest.mark.parametrize("chunk", [1, 5, 4 << 20])
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_files_give_the_same_plain_words(tmp_path, monkeypatch, name, chunk):
    content, message = BROKEN[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    monkeypatch.setattr(text_files, "CHUNK_BYTES", chunk)
    with pytest.raises(ValueError, match=f"^dataset_file: .*{message}"):
        list(iter_file_records(path))


def test_a_large_file_is_read_in_bounded_memory(tmp_path):
    import tracemalloc

    path = tmp_path / "big.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for i in range(200_000):
            out.write(json.dumps({"id": i, "meta": {"body": f"Paragraph number {i} of a long file."}}) + "\n")
    tracemalloc.start()
    count = sum(1 for _ in iter_file_records(path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 200_000 and path.stat().st_size > 14e6
    assert peak < 40e6, f"{peak / 1e6:.0f} MB traced while streaming a {path.stat().st_size / 1e6:.0f} MB file"


def test_lone_cr_line_ends_split_paragraphs_as_crlf_ones(tmp_path):
    mac, windows = tmp_path / "mac.txt", tmp_path / "windows.txt"
    mac.write_bytes(b"One\rstill one\r\rTwo\r\rThree")
    windows.write_bytes(b"One\r\nstill one\r\n\r\nTwo\r\n\r\nThree")
    expected = [{"text": "One\nstill one"}, {"text": "Two"}, {"text": "Three"}]
    assert list(iter_file_records(mac)) == list(iter_file_records(windows)) == expected

"""The block store: a run's token stream on disk, memory-mapped, with its blocks as views.

A store folder holds, for each part (one per process that tokenized), `<part>.ids` (token ids in the dtype
`meta.json` names), `<part>.docs` (per document: its tokens and its draw, a hash of its text) and, for whole-word
masking, `<part>.starts` (one uint8 word-start flag per token); `documents` (the docs of the whole stream, in its
order) and `meta.json`: counts, the text column, and the runs that order the parts' batches into one stream. Block
`b` of a `Stream` is its tokens `[b * block_size, (b + 1) * block_size)`: the guides' `group_texts` (concatenate, cut,
drop the remainder) without a copy, so one store serves every block size, and each side of a split by document.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mlm_core.data.source_base import Counts
from mlm_core.data.tokenizing import Encoded
from mlm_core.system.atomic_files import write_json

META = "meta.json"
STORE_VERSION = 3  # 2: long documents in pieces, documents count rows with text; 3: the documents table
DOCUMENTS = "documents"  # uint32 [documents, 2]: tokens and draw of each document (a piece of a long one)


def document_draws(texts: list[str]) -> np.ndarray:
    """A draw for each text [texts], uint32: the first 4 bytes of its BLAKE2b hash. It depends on the text alone, so
    a document falls on the same side of a split in every run, whatever its model, slice or place in the data."""
    digests = (hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=4).digest() for t in texts)
    return np.frombuffer(b"".join(digests), np.uint32).copy() if texts else np.zeros(0, np.uint32)


def part_done(folder: Path, part: str) -> Path:
    """The file that marks a part complete (written last, atomically)."""
    return folder / f"{part}.json"


class PartWriter:
    """Appends tokenized batches of one process to its part files; the batch numbers order them later."""

    def __init__(self, folder: Path, part: str, dtype: np.dtype, with_starts: bool):
        self.folder, self.part, self.dtype = folder, part, dtype
        self.suffix = f".tmp-{os.getpid()}"
        self.ids = open(folder / f"{part}.ids{self.suffix}", "wb")
        self.starts = open(folder / f"{part}.starts{self.suffix}", "wb") if with_starts else None
        self.docs = open(folder / f"{part}.docs{self.suffix}", "wb")
        # [batch, offset, tokens, first token's start, last token's end, first document, documents]
        self.segments: list[list[int]] = []
        self.tokens = self.documents = self.records = self.pieces = 0

    def add(self, number: int, counts: Counts, encoded: Encoded, draws: np.ndarray) -> None:
        """Write one batch: its ids [tokens] (and word-start flags [tokens]), after the batches before it, and its
        documents' tokens and `draws` [documents] (`document_draws` of its texts); `counts`: the rows it read and
        those of them that held text."""
        n = len(encoded.ids)
        self.records += counts.records
        self.documents += counts.texts
        if n:
            pieces = len(encoded.lengths)
            self.segments.append([number, self.tokens, n, encoded.first_start, encoded.last_end, self.pieces, pieces])
            self.ids.write(encoded.ids.tobytes())
            if self.starts is not None:
                self.starts.write(encoded.starts.tobytes())
            self.docs.write(np.stack([encoded.lengths.astype(np.uint32), draws], axis=1).tobytes())
            self.tokens += n
            self.pieces += pieces

    def finish(self, column: str) -> dict:
        """Close the files, move them in place and mark the part complete; its description."""
        info = {
            "part": self.part,
            "tokens": self.tokens,
            "documents": self.documents,
            "records": self.records,
            "column": column,
            "segments": self.segments,
        }
        for stream in filter(None, (self.ids, self.starts, self.docs)):
            stream.close()
            os.replace(stream.name, stream.name.removesuffix(self.suffix))
        write_json(part_done(self.folder, self.part), info)
        return info

    def discard(self) -> None:
        """Close and remove the unfinished files."""
        for stream in filter(None, (self.ids, self.starts, self.docs)):
            stream.close()
            Path(stream.name).unlink(missing_ok=True)


def merge_parts(folder: Path, parts: list[dict], dtype: np.dtype, with_starts: bool) -> dict:
    """Order the parts' batches into one stream, flag each batch's first token against the batch before, write the
    stream's documents table and `meta.json`; returns it."""
    order = sorted((seg + [index] for index, part in enumerate(parts) for seg in part["segments"]), key=lambda s: s[0])
    if with_starts and order:
        flags = [_map(folder / f"{p['part']}.starts", np.uint8, "r+") for p in parts]
        for previous, segment in zip(order, order[1:]):
            flags[segment[7]][segment[1]] = segment[3] != previous[4]
        for flag in flags:
            if flag is not None:
                flag.flush()
    docs = [_map(folder / f"{p['part']}.docs", np.uint32) for p in parts]
    with open(folder / DOCUMENTS, "wb") as table:
        for *_, first, pieces, index in order:
            table.write(np.asarray(docs[index][2 * first : 2 * (first + pieces)]).tobytes())
    for part in parts:
        (folder / f"{part['part']}.docs").unlink()
    runs: list[list[int]] = []  # [part, offset, tokens], merged where a part's batches follow each other
    for _, offset, n, _, _, _, _, index in order:
        if runs and runs[-1][0] == index and runs[-1][1] + runs[-1][2] == offset:
            runs[-1][2] += n
        else:
            runs.append([index, offset, n])
    meta = {
        "version": STORE_VERSION,
        "dtype": dtype.name,
        "word_starts": with_starts,
        "tokens": sum(p["tokens"] for p in parts),
        "documents": sum(p["documents"] for p in parts),
        "records": sum(p["records"] for p in parts),
        "text_column": parts[0]["column"],
        "parts": [p["part"] for p in parts],
        "runs": runs,
    }
    write_json(folder / META, meta)
    return meta


def _map(path: Path, dtype, mode: str = "r") -> np.ndarray | None:
    """A file as a memory-mapped 1-D array (None for an empty file, which cannot be mapped)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    return np.memmap(path, dtype=dtype, mode=mode)


class TokenStore:
    """A store folder, memory-mapped: nothing is read until blocks are gathered."""

    def __init__(self, folder: Path):
        self.meta = json.loads((folder / META).read_text(encoding="utf-8"))
        dtype = np.dtype(self.meta["dtype"])
        self.tokens, self.word_starts = int(self.meta["tokens"]), bool(self.meta["word_starts"])
        self.maps = {"ids": [_map(folder / f"{p}.ids", dtype) for p in self.meta["parts"]]}
        if self.word_starts:
            self.maps["starts"] = [_map(folder / f"{p}.starts", np.uint8) for p in self.meta["parts"]]
        runs = np.asarray(self.meta["runs"], dtype=np.int64).reshape(-1, 3)
        self.run_part, self.run_offset = runs[:, 0], runs[:, 1]
        self.run_start = np.concatenate([[0], np.cumsum(runs[:, 2])[:-1]]).astype(np.int64)
        table = _map(folder / DOCUMENTS, np.uint32)
        self.documents = np.zeros((0, 2), np.uint32) if table is None else table.reshape(-1, 2)  # [documents, 2]

    def gather(self, kind: str, rows: np.ndarray, block_size: int, stream: Stream | None = None) -> np.ndarray:
        """The blocks `rows` ([k] block numbers) of the ids or word-start flags of `stream` (default: the whole
        store), as an in-memory array [k, block_size]; KeyError for 'starts' in a store without word-start flags."""
        maps = self.maps[kind]
        if len(self.run_part) == 1 and stream is None:
            start = int(self.run_offset[0])
            n = self.tokens // block_size
            view = maps[int(self.run_part[0])][start : start + n * block_size].reshape(n, block_size)
            return np.asarray(view[rows])
        positions = rows[:, None] * block_size + np.arange(block_size)
        if stream is not None:
            positions = stream.in_store(positions)
        run = np.searchsorted(self.run_start, positions, side="right") - 1
        source = self.run_offset[run] + positions - self.run_start[run]
        parts = self.run_part[run]
        out = np.empty(positions.shape, dtype=maps[int(parts.flat[0])].dtype if parts.size else np.uint8)
        for part in np.unique(parts):
            chosen = parts == part
            out[chosen] = maps[int(part)][source[chosen]]
        return out


@dataclass(frozen=True)
class Stream:
    """Some documents of a store, end to end: the runs of consecutive tokens they make, as `start` [runs] (where each
    begins in the store's stream) and `begin` [runs] (where it begins in this one), and `tokens` in all."""

    start: np.ndarray
    begin: np.ndarray
    tokens: int

    @classmethod
    def of(cls, documents: np.ndarray, chosen: np.ndarray) -> Stream:
        """The `chosen` ([documents] bool) documents of a store's `documents` table [documents, 2]."""
        lengths = documents[:, 0].astype(np.int64)
        ends = np.cumsum(lengths)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], chosen.astype(np.int8), [0]])))
        first, last = edges[::2], edges[1::2]  # each run is documents [first, last)
        start, size = ends[first] - lengths[first], ends[last - 1] - (ends[first] - lengths[first])
        return cls(start, np.concatenate([[0], np.cumsum(size)[:-1]]).astype(np.int64), int(size.sum()))

    def in_store(self, positions: np.ndarray) -> np.ndarray:
        """Where positions of this stream (any shape) are in the store's stream."""
        run = np.searchsorted(self.begin, positions, side="right") - 1
        return self.start[run] + positions - self.begin[run]


@dataclass(frozen=True)
class Blocks:
    """Some blocks of a store: `len()`, and `blocks[idx]` (an int, slice, list, array or LongTensor of positions)
    gives an int64 tensor [k, block_size] of token ids (bool word-start flags for `kind='starts'`)."""

    store: TokenStore
    rows: np.ndarray  # block numbers in the stream, one per position
    block_size: int
    kind: str = "ids"
    stream: Stream | None = None  # the documents the blocks are cut from (None: the whole store)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        """(blocks, block_size), as a tensor's shape."""
        return (len(self.rows), self.block_size)

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, torch.Tensor):
            index = index.cpu().numpy()
        rows = self.rows[index]
        single = np.ndim(rows) == 0
        values = self.store.gather(self.kind, np.atleast_1d(rows).astype(np.int64), self.block_size, self.stream)
        tensor = torch.from_numpy(values.astype(bool if self.kind == "starts" else np.int64))
        return tensor[0] if single else tensor

    def __repr__(self) -> str:
        return f"Blocks({len(self.rows)} x {self.block_size}, {self.kind})"

"""Batches of documents into flat token arrays, in this process or in worker processes (one per core).

A batch becomes `Encoded`: the ids of all its documents end to end in the smallest dtype that holds the vocabulary,
tokens per document, and for whole-word masking one flag per token, 1 where the token's first character does not
follow the previous token's last (what transformers' collator derives from character offsets). Workers are plain
`python` processes that import only NumPy and `tokenizers` (not torch), fed through pipes; this module must stay
that light. In this process (`LocalEncoder`), a fast tokenizer's batches run on the tokenizers library's own threads
(`encode_batch_fast`; `encode_batch` where the offsets are needed); `store_builder._encoder` says which is used where,
and why (measured).
"""

from __future__ import annotations

import collections
import functools
import itertools
import logging
import os
import queue
import re
import select
import struct
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlm_core.system.process_memory import peak_rss

HEADER = struct.Struct("<QQ")  # request: (texts, bytes); reply: (documents, tokens)
EDGES = struct.Struct("<qq")  # reply, whole-word only: (first token's start, last token's end), in characters
IN_FLIGHT = 2  # batches queued per worker, so that none waits while the parent collects
POLL_S = 0.2  # how often a wait checks the stop flag
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
last_worker_peaks: list[int] = []  # peak resident bytes of the last pool's workers (read by the benchmark)


class PreparationStopped(Exception):
    """Data preparation was stopped by the stop flag."""

    def __init__(self):
        super().__init__("data preparation was stopped")


@dataclass
class Encoded:
    """One tokenized batch."""

    ids: np.ndarray  # [tokens]: every token of the batch, documents end to end
    lengths: np.ndarray  # [documents]: tokens per document
    starts: np.ndarray | None  # [tokens]: uint8 word-start flags (whole-word masking only)
    first_start: int = -1  # character offset of the batch's first token, to flag it against the previous batch
    last_end: int = -1  # character offset where its last token ends


def ids_dtype(vocabulary: int) -> np.dtype:
    """The smallest unsigned dtype that holds every token id."""
    return np.dtype(np.uint16 if vocabulary <= 2**16 else np.uint32)


def from_lists(
    ids: list[list[int]], offsets: list[list[tuple[int, int]]] | None, dtype: np.dtype, texts: list[str] | None = None
) -> Encoded:
    """`Encoded` (ids and starts [tokens], lengths [documents]) from per-document lists of ids (and (start, end)
    character offsets); given the `texts`, Chinese and Japanese get their word starts from a segmenter
    (`segmented_starts`)."""
    lengths = np.fromiter(map(len, ids), np.uint32, len(ids))
    total = int(lengths.sum())
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype, total)
    if offsets is None:
        return Encoded(flat, lengths, None)
    pairs = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(offsets)), np.int64, 2 * total)
    pairs = pairs.reshape(total, 2)
    starts = np.ones(total, np.uint8)
    starts[1:] = word_starts(pairs)
    if texts is not None:
        _mark_segmented_words(starts, offsets, texts)
    edges = (int(pairs[0, 0]), int(pairs[-1, 1])) if total else (-1, -1)
    return Encoded(flat, lengths, starts, *edges)


def word_starts(pairs: np.ndarray) -> np.ndarray:
    """For tokens 1.. of a batch, whether each starts a word, from (start, end) character offsets [tokens, 2]: after
    a real gap (white space), at or after a special token (no characters), or where a new document begins (offsets
    go back). Pieces of one character share its offsets and pieces of one word touch, so they stay one word:
    `naïve` is one word, not `[Ġn a Ã][¯ ve]`."""
    previous, current = pairs[:-1], pairs[1:]
    gap = current[:, 0] > previous[:, 1]
    special = (previous[:, 0] == previous[:, 1]) | (current[:, 0] == current[:, 1])
    new_document = current[:, 0] < previous[:, 0]
    return gap | special | new_document


_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_KANA = re.compile(r"[\u3040-\u30fa\u30fd-\u30ff\u31f0-\u31ff\uff66-\uff9f]")  # not ・ or ー, which Chinese uses too
_JAPANESE = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")


def segmented_starts(text: str) -> set[int]:
    """Character offsets where a word begins inside the runs of `text` written without spaces between words:
    Japanese (a text with kana) segmented by MeCab with UniDic (`fugashi`, as transformers' BertJapaneseTokenizer),
    Chinese by jieba (as the Chinese whole-word masking recipe, `run_mlm_wwm`); empty for other scripts."""
    if _KANA.search(text):
        return _starts_of(text, _JAPANESE, _japanese_words)
    if _HAN.search(text):
        return _starts_of(text, _HAN, _chinese_words)
    return set()


def _starts_of(text: str, runs: re.Pattern, segment) -> set[int]:
    """Offsets where `segment` (a run of text -> its words) starts a word in each run that `runs` finds."""
    starts: set[int] = set()
    for run in runs.finditer(text):
        position = run.start()
        for word in segment(run.group()):
            starts.add(position)
            position += len(word)
    return starts


def _chinese_words(run: str) -> Iterator[str]:
    import jieba  # only for text that has Chinese in it: it loads a dictionary

    jieba.setLogLevel(logging.WARNING)  # not its "Building prefix dict" lines in every log
    return jieba.cut(run, HMM=True)


def _japanese_words(run: str) -> Iterator[str]:
    return (word.surface for word in _mecab()(run))


@functools.cache
def _mecab():
    import fugashi  # only for text that has kana in it: it loads UniDic

    return fugashi.Tagger()


def _mark_segmented_words(starts: np.ndarray, offsets: list[list[tuple[int, int]]], texts: list[str]) -> None:
    """Flag [tokens] the tokens where the segmenter starts a word, document by document."""
    base = 0
    for text, document in zip(texts, offsets):
        begins = segmented_starts(text)
        for index, (start, end) in enumerate(document if begins else ()):  # most texts have no such runs
            if start in begins and end > start and (index == 0 or document[index - 1][0] != start):
                starts[base + index] = 1
        base += len(document)


def _with_special_tokens(tokenizer, text: str, ids: list[int]) -> tuple[list[int], list[int]]:
    """`ids` with the special tokens the tokenizer adds around a text, and 1 where each of those is [tokens]."""
    try:
        return tokenizer.build_inputs_with_special_tokens(ids), tokenizer.get_special_tokens_mask(ids)
    except ValueError:  # TAPAS builds them only around a question and a table: take those `tokenizer(text)` adds
        whole = tokenizer(text, verbose=False)["input_ids"]
        added = set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
        head = list(itertools.takewhile(added.__contains__, whole))
        tail = list(itertools.takewhile(added.__contains__, reversed(whole[len(head) :])))[::-1]
        return [*head, *ids, *tail], [1] * len(head) + [0] * len(ids) + [1] * len(tail)


def word_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each word of `text`: runs of non-space, cut where a segmenter starts a word in Chinese or
    Japanese (`segmented_starts`)."""
    begins = segmented_starts(text)
    spans = []
    for match in re.finditer(r"\S+", text):
        cuts = sorted({match.start(), *(b for b in begins if match.start() < b < match.end())})
        spans += zip(cuts, [*cuts[1:], match.end()])
    return spans


def _word_chunks(text: str) -> list[tuple[int, int]]:
    """(start, end) of each word of `text` (`word_spans`) with the white space after it; white space before the
    first word is a chunk of its own."""
    cuts = sorted({0, *(start for start, _ in word_spans(text))})
    return [(start, end) for start, end in zip(cuts, [*cuts[1:], len(text)]) if end > start]


def encode_with_offsets(
    tokenizer, texts: list[str], add_special_tokens: bool = True
) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """Token ids [tokens] and (start, end) character offsets [tokens] of each text. A fast tokenizer reports its
    offsets; a Python ("slow") one (ESM, XLM, TAPAS, Perceiver...) reports none, so each word with the white space
    around it is tokenized alone and all its pieces get that word's span (special tokens: (0, 0)): word starts,
    whole-word masks and per-word scores come out as real offsets give them, for tokenizers that split at white
    space first, as those do."""
    if getattr(tokenizer, "is_fast", False):
        out = tokenizer(
            texts,
            add_special_tokens=add_special_tokens,
            return_attention_mask=False,
            return_offsets_mapping=True,
            verbose=False,
        )
        return out["input_ids"], out["offset_mapping"]
    all_ids, all_offsets = [], []
    for text in texts:
        ids, offsets = [], []
        for start, end in _word_chunks(text):
            pieces = tokenizer(text[start:end], add_special_tokens=False, verbose=False)["input_ids"]
            word = re.search(r"\S+", text[start:end])
            span = (start + word.start(), start + word.end()) if word else (start, end)
            ids += pieces
            offsets += [span] * len(pieces)
        if add_special_tokens:
            ids, marks = _with_special_tokens(tokenizer, text, ids)
            words = iter(offsets)
            offsets = [(0, 0) if special else next(words) for special in marks]
        all_ids.append(ids)
        all_offsets.append(offsets)
    return all_ids, all_offsets


def encode_with(backend, texts: list[str], dtype: np.dtype, with_starts: bool) -> Encoded:
    """Tokenize with a `tokenizers.Tokenizer` (special tokens added, no truncation or padding): `Encoded` with ids
    [tokens] in `dtype`, lengths [documents], and word-start flags [tokens] when `with_starts`."""
    if not with_starts:
        encodings = backend.encode_batch_fast(texts, add_special_tokens=True)
        return from_lists([e.ids for e in encodings], None, dtype)
    encodings = backend.encode_batch(texts, add_special_tokens=True)
    return from_lists([e.ids for e in encodings], [e.offsets for e in encodings], dtype, texts)


def standalone_backend(tokenizer_json: str):
    """A private `tokenizers.Tokenizer` from its JSON, with truncation and padding off (as our calls ask)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer_json)
    backend.no_truncation()
    backend.no_padding()
    return backend


def pack_request(texts: list[str]) -> bytes:
    """A batch of texts as one message: header, character lengths, UTF-8 text."""
    data = "".join(texts).encode("utf-8", "surrogatepass")
    lengths = np.fromiter(map(len, texts), np.uint64, len(texts))
    return HEADER.pack(len(texts), len(data)) + lengths.tobytes() + data


def pack_reply(encoded: Encoded) -> bytes:
    """An `Encoded` as one message."""
    parts = [
        HEADER.pack(len(encoded.lengths), len(encoded.ids)),
        encoded.lengths.astype(np.uint32).tobytes(),
        encoded.ids.tobytes(),
    ]
    if encoded.starts is not None:
        parts += [encoded.starts.tobytes(), EDGES.pack(encoded.first_start, encoded.last_end)]
    return b"".join(parts)


def serve(tokenizer_path: str, dtype: str, with_starts: bool) -> None:
    """A worker's loop: read batches on stdin, write their `Encoded` on stdout, until stdin closes."""
    backend = standalone_backend(Path(tokenizer_path).read_text(encoding="utf-8"))
    source, sink, kind = sys.stdin.buffer, sys.stdout.buffer, np.dtype(dtype)
    while len(head := source.read(HEADER.size)) == HEADER.size:
        n, size = HEADER.unpack(head)
        bounds = [0, *np.cumsum(np.frombuffer(source.read(8 * n), np.uint64)).tolist()]
        text = source.read(size).decode("utf-8", "surrogatepass")
        texts = [text[a:b] for a, b in zip(bounds, bounds[1:])]
        sink.write(pack_reply(encode_with(backend, texts, kind, with_starts)))
        sink.flush()


class WorkerPool:
    """Tokenizer worker processes; `imap` hands them batches round-robin and yields the results in order."""

    def __init__(self, tokenizer_json: str, dtype: np.dtype, with_starts: bool, processes: int, folder: Path):
        self.dtype, self.with_starts = dtype, with_starts
        spec = folder / "tokenizer.json"
        spec.write_text(tokenizer_json, encoding="utf-8")
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
        code = (
            f"import sys; sys.path.insert(0, {str(PACKAGE_ROOT)!r}); from mlm_core.data.tokenizing import serve; "
            f"serve({str(spec)!r}, {self.dtype.str!r}, {with_starts})"
        )
        self.logs = [tempfile.TemporaryFile() for _ in range(processes)]
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                bufsize=0,
                env=env,
            )
            for log in self.logs
        ]
        self.queues: list[queue.Queue] = [queue.Queue() for _ in self.procs]
        self.writers = [
            threading.Thread(target=self._feed, args=(p, q), daemon=True) for p, q in zip(self.procs, self.queues)
        ]
        for writer in self.writers:
            writer.start()

    @staticmethod
    def _feed(proc: subprocess.Popen, jobs: queue.Queue) -> None:
        """Writer thread: send queued messages to one worker; None closes its stdin."""
        try:
            while (message := jobs.get()) is not None:
                view = memoryview(message)
                while view:
                    view = view[proc.stdin.write(view) :]
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the worker died; the reader reports it

    def imap(
        self, items: Iterable[tuple[int, list[str], Any]], stop: threading.Event
    ) -> Iterator[tuple[int, Any, Encoded]]:
        """(batch number, counts, Encoded) for each (batch number, texts, counts), in the order given;
        PreparationStopped once `stop` is set, RuntimeError (with its last stderr line) when a worker dies."""
        pending: collections.deque = collections.deque()
        items, turn = iter(items), itertools.count()
        while True:
            while len(pending) < IN_FLIGHT * len(self.procs) and (item := next(items, None)) is not None:
                worker = next(turn) % len(self.procs)
                self.queues[worker].put(pack_request(item[1]))
                pending.append((worker, item[0], item[2]))
            if not pending:
                return
            worker, number, counts = pending.popleft()
            yield number, counts, self._reply(worker, stop)

    def _reply(self, worker: int, stop: threading.Event) -> Encoded:
        """The next result of one worker."""
        n, total = HEADER.unpack(self._read(worker, HEADER.size, stop))
        lengths = np.frombuffer(self._read(worker, 4 * n, stop), np.uint32)
        ids = np.frombuffer(self._read(worker, total * self.dtype.itemsize, stop), self.dtype)
        if not self.with_starts:
            return Encoded(ids, lengths, None)
        starts = np.frombuffer(self._read(worker, total, stop), np.uint8)
        return Encoded(ids, lengths, starts, *EDGES.unpack(self._read(worker, EDGES.size, stop)))

    def _read(self, worker: int, size: int, stop: threading.Event) -> bytes:
        """Exactly `size` bytes from a worker, checking the stop flag while waiting."""
        stream, data = self.procs[worker].stdout, bytearray()
        while len(data) < size:
            if stop.is_set():
                raise PreparationStopped()
            if not select.select([stream], [], [], POLL_S)[0]:
                continue
            chunk = stream.read(min(size - len(data), 1 << 22))
            if not chunk:
                raise RuntimeError(f"a tokenizer process failed: {self._log(worker)}")
            data += chunk
        return bytes(data)

    def _log(self, worker: int) -> str:
        """The last line a worker wrote on stderr."""
        self.procs[worker].wait(timeout=5)
        log = self.logs[worker]
        log.seek(0)
        lines = log.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:300] if lines else f"exit code {self.procs[worker].returncode}"

    def close(self, kill: bool = False) -> None:
        """Let the workers finish (or kill them) and wait for them."""
        last_worker_peaks[:] = [peak_rss(proc.pid) or 0 for proc in self.procs]
        for proc, jobs in zip(self.procs, self.queues):
            if kill:
                proc.kill()
            jobs.put(None)
        for proc, writer, log in zip(self.procs, self.writers, self.logs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            writer.join(timeout=5)
            proc.stdout.close()
            log.close()


class LocalEncoder:
    """Tokenizes in this process: with a private copy of the fast tokenizer's backend, else through transformers."""

    def __init__(self, tokenizer, dtype: np.dtype, with_starts: bool, backend=None):
        self.tokenizer, self.dtype, self.with_starts, self.backend = tokenizer, dtype, with_starts, backend

    def encode(self, texts: list[str]) -> Encoded:
        """One batch."""
        if self.backend is not None:
            return encode_with(self.backend, texts, self.dtype, self.with_starts)
        if not self.with_starts:
            return from_lists(
                self.tokenizer(texts, return_attention_mask=False, verbose=False)["input_ids"], None, self.dtype
            )
        return from_lists(*encode_with_offsets(self.tokenizer, texts), self.dtype, texts)

    def imap(
        self, items: Iterable[tuple[int, list[str], Any]], stop: threading.Event
    ) -> Iterator[tuple[int, Any, Encoded]]:
        """(batch number, counts, Encoded) for each (batch number, texts, counts); PreparationStopped once `stop`
        is set."""
        for number, texts, counts in items:
            if stop.is_set():
                raise PreparationStopped()
            yield number, counts, self.encode(texts)

    def close(self, kill: bool = False) -> None:
        """Nothing to release."""


def fast_backend(tokenizer, sample: list[str], with_starts: bool) -> tuple[str, object] | None:
    """(JSON, private backend) of a fast tokenizer whose backend encodes `sample` exactly as the tokenizer does."""
    backend_of = getattr(tokenizer, "backend_tokenizer", None)
    if backend_of is None or not getattr(tokenizer, "is_fast", False):
        return None
    try:
        spec = backend_of.to_str()
    except Exception:  # a custom Python pre-tokenizer (RoFormer's jieba) cannot be serialized for workers
        return None
    backend = standalone_backend(spec)
    ours = LocalEncoder(tokenizer, np.dtype(np.int64), with_starts, backend).encode(sample)
    theirs = LocalEncoder(tokenizer, np.dtype(np.int64), with_starts).encode(sample)
    same = (
        np.array_equal(ours.ids, theirs.ids)
        and np.array_equal(ours.lengths, theirs.lengths)
        and (not with_starts or np.array_equal(ours.starts, theirs.starts))
    )
    return (spec, backend) if same else None

"""Your words, added: frequent words a tokenizer splits become tokens of their own, their embeddings started from
their pieces' (the mean, as Hewitt 2021, "Initializing New Word Embeddings for Pretrained Language Models").

A word is added inside the tokenizer's own model, so it is cut as one token wherever the tokenizer meets it as a word:
WordPiece gets it in its vocabulary (greedy longest match takes it), SentencePiece Unigram gets it as a piece scored
as likely as its likeliest piece, and BPE gets the merges that join its pieces, left to right (the joins in between
become tokens too).
"""

from __future__ import annotations

import json
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from mlm_core.models.inference import word_pieces

WORD = re.compile(r"[^\W\d_][^\W\d_'’-]*[^\W\d_]")  # letters of any script, inner apostrophes and hyphens
MIN_LETTERS = 4


@dataclass(frozen=True)
class AddedWords:
    """What `add_words` changed: the words now one token each, and every new token (joins of BPE merges too)."""

    words: list[str]
    new_tokens: int


def split_words(texts: Iterable[str], tokenizer, limit: int, min_count: int = 5) -> list[str]:
    """Up to `limit` words of the texts that the tokenizer cuts into several pieces, the most frequent first, each
    seen at least `min_count` times and at least MIN_LETTERS letters long."""
    counts = Counter(word for text in texts for word in WORD.findall(text) if len(word) >= MIN_LETTERS)
    found = []
    for word, count in counts.most_common():
        if count < min_count or len(found) == limit:
            break
        if len(word_pieces(tokenizer, word)) > 1:
            found.append(word)
    return found


def add_words(tokenizer, model, words: list[str]) -> tuple[object, AddedWords]:
    """A new tokenizer that reads each word (as written after a space) as one token, and `model` with an input
    (and output) embedding for each new token, the mean of its pieces'; ValueError in plain words for a tokenizer
    kind that cannot take words (WordLevel, a Python-only tokenizer)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ValueError("add_words: this tokenizer is not a fast (Rust) tokenizer; words cannot be added to it")
    state = json.loads(backend.to_str())
    kind = state["model"]["type"]
    if kind not in _EXTENDERS:
        raise ValueError(f"add_words: a {kind} tokenizer cannot take new words")
    taken = [*_ids(state["model"]), *(token["id"] for token in state.get("added_tokens", []))]
    new: dict[str, list[int]] = {}  # new token -> the old tokens it is made of
    for word in words:
        pieces = word_pieces(tokenizer, word)
        if len(pieces) > 1:
            _EXTENDERS[kind](
                state["model"],
                tokenizer.convert_ids_to_tokens(pieces),
                pieces,
                new,
                next_id=lambda: max(taken) + 1 + len(new),
            )
    extended = _reloaded(tokenizer, state)
    _grow_embeddings(model, extended, new)
    added = [word for word in words if len(word_pieces(extended, word)) == 1 and len(word_pieces(tokenizer, word)) > 1]
    return extended, AddedWords(words=added, new_tokens=len(new))


def _ids(model_state: dict) -> list[int]:
    """Every id a tokenizer model's vocabulary uses."""
    vocab = model_state["vocab"]
    return list(range(len(vocab))) if isinstance(vocab, list) else list(vocab.values())


def _extend_bpe(model_state: dict, pieces: list[str], ids: list[int], new: dict, next_id) -> None:
    """Merges that join the pieces left to right, each join a token (new ones get ids and embedding sources)."""
    vocab, merges = model_state["vocab"], model_state["merges"]
    as_strings = bool(merges) and isinstance(merges[0], str)
    joined, sources = pieces[0], [ids[0]]
    for piece, token in zip(pieces[1:], ids[1:]):
        merge = f"{joined} {piece}" if as_strings else [joined, piece]
        joined, sources = joined + piece, [*sources, token]
        if joined not in vocab:
            vocab[joined] = next_id()
            new[joined] = list(sources)
        if merge not in merges:
            merges.append(merge)


def _extend_wordpiece(model_state: dict, pieces: list[str], ids: list[int], new: dict, next_id) -> None:
    """The whole word in the vocabulary: greedy longest match takes it."""
    prefix = model_state.get("continuing_subword_prefix", "##")
    word = pieces[0] + "".join(piece.removeprefix(prefix) for piece in pieces[1:])
    if word not in model_state["vocab"]:
        model_state["vocab"][word] = next_id()
        new[word] = list(ids)


def _extend_unigram(model_state: dict, pieces: list[str], ids: list[int], new: dict, next_id) -> None:
    """The whole word as a piece as likely as the likeliest piece: the best segmentation takes it."""
    word = "".join(pieces)
    vocab = model_state["vocab"]
    if word not in {piece for piece, _ in vocab}:
        vocab.append([word, max(score for _, score in vocab)])
        new[word] = list(ids)


_EXTENDERS = {"BPE": _extend_bpe, "WordPiece": _extend_wordpiece, "Unigram": _extend_unigram}


def _reloaded(tokenizer, state: dict):
    """The tokenizer saved with the changed backend state and loaded back, so it is whole (settings, special tokens)."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        with open(f"{folder}/tokenizer.json", "w", encoding="utf-8") as file:
            json.dump(state, file, ensure_ascii=False)
        return AutoTokenizer.from_pretrained(folder)


def _grow_embeddings(model, tokenizer, new: dict[str, list[int]]) -> None:
    """Rows for the new tokens in the input and output embeddings (and the output bias), each the mean of its
    sources' rows."""
    if not new:
        return
    size = max(len(tokenizer), model.get_input_embeddings().num_embeddings)
    model.resize_token_embeddings(size, mean_resizing=False)
    vocab = tokenizer.get_vocab()
    rows = [(vocab[token], sources) for token, sources in new.items()]
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    with torch.no_grad():
        for layer in {id(m): m for m in (inputs, outputs) if m is not None}.values():
            for row, sources in rows:
                layer.weight[row] = layer.weight[sources].mean(0)
            bias = getattr(layer, "bias", None)
            if bias is not None:
                for row, sources in rows:
                    bias[row] = bias[sources].mean(0)

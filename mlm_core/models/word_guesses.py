"""Whole words at a mask: a word of several pieces is proposed and scored by filling its pieces one at a time.

A mask stands for one piece. A word of k pieces is scored on the text with k masks in its place, as the chain
P(piece 1) * P(piece 2 | piece 1) * ... filled left to right (the left-to-right pseudo-log-likelihood of the word;
Salazar et al. 2020, "Masked Language Model Scoring"); candidates of 2..MAX_PIECES pieces come from a beam search
over that chain, whose first piece may be any showable token and whose later pieces continue the word
(`continues_word`). A word's first piece is one that can stand where the mask is: after a space, a piece that starts a
word (never `##ing` or a BPE piece without `Ġ` alone); glued to a word, one that continues it (`first_pieces`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mlm_core.models.batched import masked_logits
from mlm_core.models.words import continues_word, showable, starts_word, token_texts

MAX_PIECES = 3  # longest word proposed; a right word of any length is still scored and ranked
RANK_WIDTH = 20  # candidates of each length kept to rank a given word among


def first_pieces(tokenizer, size: int, starts: bool | None) -> torch.Tensor:
    """Bool [size] (the model's vocabulary): the tokens a proposed word may begin with where a mask stands,
    `starts` saying whether a word begins there (True), goes on from the text before (False) or cannot be told
    (None: any showable token)."""
    allowed = showable(tokenizer, size)
    if starts is not None:
        fits = starts_word(tokenizer, size) if starts else ~starts_word(tokenizer, size)
        if (allowed & fits).any():
            allowed = allowed & fits
    return allowed


@dataclass(frozen=True)
class WordGuess:
    """A word proposed at a mask: its pieces (token ids) and the probability of filling them in turn."""

    pieces: tuple[int, ...]
    probability: float


def guess_words(
    lm,
    tokenizer,
    input_ids: torch.Tensor,
    at: int,
    first: torch.Tensor,
    top_k: int,
    max_pieces: int = MAX_PIECES,
    limit: int | None = None,
    starts: bool | None = None,
) -> list[WordGuess]:
    """The `top_k` likeliest words at the mask at position `at` of `input_ids` [tokens], best first, one word per
    spelling: those of one piece from `first` (the vocabulary probabilities there [vocab]), longer ones by beam
    search over texts with 2..`max_pieces` masks in its place (each no longer than `limit` tokens); each begins with
    a piece of `first_pieces(starts)`."""
    allowed = first_pieces(tokenizer, len(first), starts)
    values, ids = first.masked_fill(~allowed, -1.0).topk(min(max(top_k, 1), int(allowed.sum())))
    found = [WordGuess((token,), value) for value, token in zip(values.tolist(), ids.tolist())]
    for k in range(2, max_pieces + 1):
        expanded = _expanded(input_ids, at, k, tokenizer.mask_token_id)
        if limit is not None and len(expanded) > limit:
            break
        found += _beam(lm, tokenizer, expanded, at, k, width=top_k, first=allowed)
    return _best_spellings(tokenizer, found)[:top_k]


def word_probability(lm, input_ids: torch.Tensor, at: int, pieces: list[int], mask_id: int) -> float:
    """P(pieces, filled one at a time left to right) at the mask at position `at` of `input_ids` [tokens], with as
    many masks in its place as the word has pieces; one forward pass of a batch of len(pieces) texts."""
    expanded = _expanded(input_ids, at, len(pieces), mask_id)
    rows = expanded.repeat(len(pieces), 1)
    for j in range(1, len(pieces)):
        rows[j, at : at + j] = torch.tensor(pieces[:j])
    probs = _probs_at(lm, rows, [at + j for j in range(len(pieces))])
    return math.prod(probs[j, piece].item() for j, piece in enumerate(pieces))


def word_rank(
    tokenizer,
    first: torch.Tensor,
    probability: float,
    pieces: list[int],
    longer: list[WordGuess],
    starts: bool | None = None,
) -> int:
    """Where a word of `probability` stands among the words at a mask (1: the likeliest), counting each spelling
    once as `guess_words` shows them: above it, every one-piece word of `first_pieces(starts)` that `first` [vocab]
    makes likelier, and every longer candidate found (`longer`, as `guess_words` returns them) that is likelier."""
    texts = token_texts(tokenizer)
    single = (first.gt(probability) & first_pieces(tokenizer, len(first), starts)).nonzero().squeeze(-1).tolist()
    above = {texts[token].strip() for token in single}
    above |= {
        _spelling(tokenizer, guess.pieces)
        for guess in longer
        if len(guess.pieces) > 1 and guess.probability > probability
    }
    return len(above - {_spelling(tokenizer, pieces)}) + 1


def _beam(lm, tokenizer, expanded: torch.Tensor, at: int, k: int, width: int, first: torch.Tensor) -> list[WordGuess]:
    """The `width` likeliest k-piece words at the k masks from position `at` of `expanded` [tokens]: a first
    piece of `first` [vocab] (bool), then pieces that continue a word; one forward pass per piece."""
    vocab = len(first)
    continues = continues_word(tokenizer, vocab)
    beams: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    for j in range(k):
        rows = expanded.repeat(len(beams), 1)
        if j:
            rows[:, at : at + j] = torch.tensor([pieces for pieces, _ in beams])
        log_probs = _probs_at(lm, rows, [at + j] * len(beams)).log()
        log_probs = log_probs.masked_fill(~(first if j == 0 else continues), -math.inf)
        log_probs += torch.tensor([score for _, score in beams])[:, None]
        values, flat = log_probs.flatten().topk(min(width, log_probs.numel()))
        beams = [
            (beams[index // vocab][0] + (index % vocab,), value)
            for value, index in zip(values.tolist(), flat.tolist())
            if value > -math.inf
        ]
    return [WordGuess(pieces, math.exp(score)) for pieces, score in beams]


def _best_spellings(tokenizer, guesses: list[WordGuess]) -> list[WordGuess]:
    """Guesses best first, one per spelling (the pieces of `Ġgreen` and `Ġgre`+`en` read the same), none that reads
    as nothing or holds a broken character."""
    best: dict[str, WordGuess] = {}
    for guess in sorted(guesses, key=lambda g: -g.probability):
        spelling = _spelling(tokenizer, guess.pieces)
        if spelling and "\ufffd" not in spelling and spelling not in best:
            best[spelling] = guess
    return list(best.values())


def _spelling(tokenizer, pieces) -> str:
    """How the pieces read as a word."""
    return tokenizer.decode(list(pieces), clean_up_tokenization_spaces=False).strip()


def _expanded(input_ids: torch.Tensor, at: int, k: int, mask_id: int) -> torch.Tensor:
    """`input_ids` [tokens] with the token at `at` replaced by k masks: [tokens + k - 1]."""
    return torch.cat([input_ids[:at], input_ids.new_full((k,), mask_id), input_ids[at + 1 :]])


def _probs_at(lm, rows: torch.Tensor, columns: list[int]) -> torch.Tensor:
    """Vocabulary probabilities [rows, vocab] of texts `rows` [rows, tokens], row r at position columns[r]."""
    positions = torch.zeros_like(rows, dtype=torch.bool)
    positions[torch.arange(len(rows)), torch.tensor(columns)] = True
    with torch.no_grad():  # not inference_mode: MobileBERT's forward fails on inference tensors
        logits = masked_logits(lm, rows.to(lm.device), positions.to(lm.device))
    return logits.float().softmax(dim=-1).cpu()

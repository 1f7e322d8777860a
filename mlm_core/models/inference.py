"""Fill-mask (logits only at the masks) and text generation on cached models."""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any

import torch

from mlm_core.data.tokenizing import encode_with_offsets, word_spans
from mlm_core.models.batched import masked_logits
from mlm_core.models.loading import has_trained_mlm_head, load_for_inference, max_block_size
from mlm_core.models.word_guesses import MAX_PIECES, RANK_WIDTH, WordGuess, guess_words, word_probability, word_rank
from mlm_core.models.words import marks_word_starts, starts_word

MASK_SPELLINGS = re.compile(r"<mask>|\[MASK\]")
MAX_TEXT_CHARS = 20_000
MAX_MASKS = 5
MAX_NEW_TOKENS = 512


def fill_mask(
    model: str, text: str, top_k: int = 5, targets: list[str] | None = None, max_pieces: int = MAX_PIECES
) -> list[list[dict[str, Any]]]:
    """For each mask in `text`, the `top_k` likeliest whole words (of 1 to `max_pieces` pieces, see
    `word_guesses`), pipeline-shaped; ValueError in plain words for a model that cannot load or fill masks, a text
    without masks, with too many or too long, a bad `top_k`, or no candidate in `targets` (candidates are looked up
    as written mid-sentence, see `word_pieces`, and may be words of several pieces)."""
    tokenizer, lm = _masked_lm(model)
    return predict_masks(tokenizer, lm, text, top_k, targets, max_pieces)


def filled_sequence(
    text: str, results: list[list[dict[str, Any]]], which: int, guess: dict[str, Any], mask_token: str | None = None
) -> str:
    """The text as typed (masks spelled `<mask>`, `[MASK]` or the model's `mask_token`), with mask number `which`
    filled by `guess` as the tokenizer decodes it after a word (`guess["word"]`, joined to the word before the mask
    when the decoding puts no space between them: `guess["joins"]`) and every other mask shown as ___; the
    pipeline's sequence when the masks cannot be matched up. The rest stays as typed: an uncased model's decoding
    would lower its case, and WordPiece's would space its punctuation."""
    spelling = MASK_SPELLINGS if not mask_token else re.compile(f"{MASK_SPELLINGS.pattern}|{re.escape(mask_token)}")
    spans = list(spelling.finditer(text))
    if len(spans) != len(results):
        return guess["sequence"]
    word, out, end = guess["word"], [], 0
    for index, span in enumerate(spans):
        before = text[end : span.start()]
        if index == which and guess["joins"] and word:
            before = before.rstrip()
        out += [before, word if index == which else "___"]
        end = span.end()
    return "".join(out) + text[end:]


def mask_token(model: str) -> str:
    """The mask token of a model (`<mask>`, `[MASK]`, XLM's `<special1>`...); ValueError as `fill_mask`."""
    return _masked_lm(model)[0].mask_token


def predict_masks(
    tokenizer, lm, text: str, top_k: int = 5, targets: list[str] | None = None, max_pieces: int = MAX_PIECES
) -> list[list[dict[str, Any]]]:
    """`fill_mask` on a tokenizer and masked LM already in memory; ValueError in plain words as `fill_mask` for the
    text, `top_k` and `targets`."""
    return _fill(tokenizer, lm, text, top_k, targets, max_pieces)[0]


def fill_and_rank(
    model: str, text: str, top_k: int = 5, answer: str = "", targets: list[str] | None = None
) -> tuple[list[list[dict[str, Any]]], tuple[int, float] | None]:
    """`fill_mask`'s results and, for a text with one mask and a right `answer` (a word of any number of pieces),
    its (rank, probability) among the words shown (see `word_rank`), from one reading of the masks; the rank is None
    when there is no answer, several masks, or the answer reads as no token or makes the text too long. ValueError
    in plain words as `fill_mask`."""
    tokenizer, lm = _masked_lm(model)
    answer = answer.strip() if isinstance(answer, str) else ""
    return _fill(tokenizer, lm, text, top_k, targets, MAX_PIECES, answer)


def _fill(
    tokenizer, lm, text: str, top_k: int, targets: list[str] | None, max_pieces: int, answer: str = ""
) -> tuple[list[list[dict[str, Any]]], tuple[int, float] | None]:
    """The guesses at each mask of `text` (pipeline-shaped) and the answer's (rank, probability) at a single mask."""
    input_ids, positions, probs, starts = _mask_probabilities(tokenizer, lm, text)
    if not isinstance(top_k, int) or not 1 <= top_k <= len(tokenizer):
        raise ValueError(f"top_k: must be a whole number from 1 to {len(tokenizer)} (got {top_k!r})")
    limit = max_block_size(lm.config, tokenizer)
    masks = positions.nonzero().squeeze(-1).tolist()
    if targets:
        candidates = _target_pieces(tokenizer, targets, limit - len(input_ids) + 1)
        guesses = [
            sorted(
                (
                    WordGuess(tuple(pieces), _probability(lm, tokenizer, input_ids, at, first, pieces))
                    for pieces in candidates
                ),
                key=lambda guess: -guess.probability,
            )[:top_k]
            for at, first in zip(masks, probs)
        ]
    else:  # a right word is ranked among RANK_WIDTH candidates, as `score_probe` ranks a probe's
        width = max(top_k, RANK_WIDTH) if answer and len(masks) == 1 else top_k
        guesses = [
            guess_words(lm, tokenizer, input_ids, at, first, width, max_pieces, limit, starts=start)
            for at, first, start in zip(masks, probs, starts)
        ]
    ranked = None
    pieces = word_pieces(tokenizer, answer) if answer and len(masks) == 1 and not targets else []
    if pieces and len(input_ids) + len(pieces) - 1 <= limit:
        probability = _probability(lm, tokenizer, input_ids, masks[0], probs[0], pieces)
        ranked = word_rank(tokenizer, probs[0], probability, pieces, guesses[0], starts[0]), probability
    return _propositions(tokenizer, input_ids, masks, [row[:top_k] for row in guesses]), ranked


def score_probe(
    tokenizer,
    lm,
    text: str,
    answer: str | None,
    top_k: int = 5,
    max_pieces: int = MAX_PIECES,
) -> tuple[list[tuple[str, float]], int | None, float | None]:
    """At the first mask: the top whole-word guesses as (word, probability), and the right word's rank (1: the
    top guess, see `word_rank`) and probability when it is known (a word of any number of pieces); ValueError in
    plain words for a text without a mask, with too many, or longer than the model reads."""
    input_ids, positions, probs, starts = _mask_probabilities(tokenizer, lm, text)
    at, first, limit = int(positions.nonzero()[0]), probs[0], max_block_size(lm.config, tokenizer)
    width = max(top_k, RANK_WIDTH if answer else 1)
    found = guess_words(lm, tokenizer, input_ids, at, first, width, max_pieces, limit, starts=starts[0])
    guesses = [(_word(tokenizer, guess.pieces), guess.probability) for guess in found[:top_k]]
    pieces = word_pieces(tokenizer, answer.strip()) if answer else []
    if not pieces or len(input_ids) + len(pieces) - 1 > limit:
        return guesses, None, None
    probability = _probability(lm, tokenizer, input_ids, at, first, pieces)
    return guesses, word_rank(tokenizer, first, probability, pieces, found, starts[0]), probability


def rank_answer(model: str, text: str, answer: str, top_k: int = RANK_WIDTH) -> tuple[int, float] | None:
    """(rank, probability) of `answer`, a word of any number of pieces, at the first mask of `text`, among the
    words `fill_mask` with this `top_k` finds (so a word it shows has the rank it is shown at); None when it reads
    as no token at all or makes the text too long. ValueError in plain words as `fill_mask` for the model and the
    text."""
    tokenizer, lm = _masked_lm(model)
    _, rank, probability = score_probe(tokenizer, lm, text, answer, top_k=top_k)
    return None if rank is None else (rank, probability)


def _probability(lm, tokenizer, input_ids, at: int, first: torch.Tensor, pieces: list[int]) -> float:
    """P(the word of `pieces`) at the mask at `at`: read off `first` [vocab] for one piece, else `word_probability`."""
    if len(pieces) == 1:
        return float(first[pieces[0]])
    return word_probability(lm, input_ids, at, pieces, tokenizer.mask_token_id)


def _word(tokenizer, pieces) -> str:
    """A guess's pieces as the word they read."""
    return tokenizer.decode(list(pieces), clean_up_tokenization_spaces=False).strip()


def _mask_probabilities(tokenizer, lm, text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[bool | None]]:
    """(token ids [tokens], bool mask positions [tokens], vocabulary probabilities at each mask [masks, vocab],
    whether a word starts at each mask [masks] as `word_starts_at_masks`) of a text."""
    input_ids = _encode_with_masks(tokenizer, text, lm)
    positions = input_ids.eq(tokenizer.mask_token_id)
    with torch.no_grad():  # not inference_mode: MobileBERT's forward fails on inference tensors
        logits = masked_logits(lm, input_ids.to(lm.device)[None], positions.to(lm.device)[None])
    return input_ids, positions, logits.float().softmax(dim=-1).cpu(), word_starts_at_masks(tokenizer, text)


def word_starts_at_masks(tokenizer, text: str) -> list[bool | None]:
    """For each mask of `text`: whether a word written there would begin with a piece that starts a word (True:
    after a space; for WordPiece also after punctuation) or one that continues the text before it (False: glued to
    a word; for byte-level BPE and SentencePiece also after punctuation), found by tokenizing the text before the
    mask followed by a letter; None for each mask when the tokenizer's pieces do not mark word starts."""
    text = MASK_SPELLINGS.sub(tokenizer.mask_token, text)
    masks = [m.start() for m in re.finditer(re.escape(tokenizer.mask_token), text)]
    if not marks_word_starts(tokenizer):
        return [None] * len(masks)
    probes = [text[:at] + "x" for at in masks]
    ids, offsets = encode_with_offsets(tokenizer, probes, add_special_tokens=False)
    starts = starts_word(tokenizer, len(tokenizer))
    found: list[bool | None] = []
    for probe, row, spans in zip(probes, ids, offsets):
        letter = len(probe) - 1
        at = next((i for i, (a, b) in enumerate(spans) if a <= letter < b), None)
        if at is None:
            found.append(None)
        elif probe[spans[at][0] : letter].strip():  # the letter merged into the word before the mask
            found.append(False)
        else:  # a piece that starts a word, or one after the space as a piece of its own (a small vocabulary's)
            found.append(bool(starts[row[at]]) or (at > 0 and not tokenizer.decode(row[at - 1 : at]).strip()))
    return found


def _masked_lm(model: str):
    """(tokenizer, model) of a masked LM with a trained fill-mask head; ValueError naming `model` otherwise."""
    tokenizer, lm, task = load_for_inference(model)
    if task.inference != "fill-mask":
        raise ValueError(f"model: {model} is a {task.title}; it generates text but cannot fill masks")
    if not has_trained_mlm_head(lm.config):
        raise ValueError(f"model: {model!r} has no fill-mask head; choose a masked language model")
    return tokenizer, lm


def _encode_with_masks(tokenizer, text: str, lm) -> torch.Tensor:
    """Token ids [tokens] of the text with `<mask>`/`[MASK]` mapped to the model's mask token, checked for length."""
    check_text(text, "text", "type a sentence with <mask> where a word is missing")
    text = MASK_SPELLINGS.sub(tokenizer.mask_token, text)
    n_masks = text.count(tokenizer.mask_token)
    if n_masks == 0:
        own = "" if MASK_SPELLINGS.fullmatch(tokenizer.mask_token) else f" (or {tokenizer.mask_token})"
        raise ValueError(f"text: put <mask>{own} where the missing word goes")
    if n_masks > MAX_MASKS:
        raise ValueError(f"text: {n_masks} masks is too many; use at most {MAX_MASKS}")
    ids = tokenizer(text, verbose=False)["input_ids"]
    if ids.count(tokenizer.mask_token_id) != n_masks:  # a Python tokenizer may split a mask glued to punctuation
        ids = tokenizer(text.replace(tokenizer.mask_token, f" {tokenizer.mask_token} "), verbose=False)["input_ids"]
        if ids.count(tokenizer.mask_token_id) != n_masks:
            raise ValueError(f"text: this model does not read {tokenizer.mask_token} there; put spaces around it")
    # A mask token without lstrip leaves the space before it as a piece of its own (`Ġ`, `▁`) that training never
    # puts before a mask: there the mask stands for a whole piece, its space included.
    mask = tokenizer.mask_token_id
    input_ids = torch.tensor(
        [
            token
            for token, after in zip(ids, [*ids[1:], None])
            if not (after == mask != token and tokenizer.decode([token]) in ("", " "))
        ]
    )
    limit = max_block_size(lm.config, tokenizer)
    if len(input_ids) > limit:
        raise ValueError(f"text: {len(input_ids)} tokens is more than this model reads ({limit}); shorten it")
    return input_ids


def check_text(text: object, field: str, hint: str) -> None:
    """ValueError in plain words unless `text` is non-empty, valid Unicode text of a sensible length."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{field}: {hint}")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{field}: {len(text):,} characters is too long; use at most {MAX_TEXT_CHARS:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{field}: holds characters that are not valid text (a lone surrogate)") from None


def _target_pieces(tokenizer, targets: list[str], room: int) -> list[list[int]]:
    """The pieces of each candidate word, looked up as the word is written mid-sentence (`word_pieces`: after a
    space, `Ġchild` or `▁child`, not the word-internal `child` the pipeline's vocabulary lookup finds), each once.
    ValueError in plain words for no candidate at all, or one of more pieces than the text has `room` for."""
    found: dict[tuple[int, ...], None] = {}
    for target in targets:
        word = target.strip() if isinstance(target, str) else ""
        pieces = tuple(word_pieces(tokenizer, word)) if word else ()
        if len(pieces) > room:
            raise ValueError(f"targets: {word!r} is {len(pieces)} pieces for this model; the text has room for {room}")
        if pieces:
            found[pieces] = None
    if not found:
        raise ValueError("targets: give at least one candidate word")
    return [list(pieces) for pieces in found]


def word_pieces(tokenizer, word: str) -> list[int]:
    """The token ids of `word` as it is written after a space in running text: [pieces]."""
    prefix = "a "
    [ids], [offsets] = encode_with_offsets(tokenizer, [prefix + word], add_special_tokens=False)
    end = len(prefix) + len(word)
    return [i for i, (start, stop) in zip(ids, offsets) if stop > len(prefix) and start < end]


def _propositions(tokenizer, input_ids, masks: list[int], guesses: list[list[WordGuess]]) -> list[list[dict[str, Any]]]:
    """Pipeline-shaped results from the word guesses at each mask (its position in `input_ids`): score, token (the
    first piece), tokens (all pieces), token_str (the pieces decoded together), sequence (the filled ids decoded),
    and the guess as the tokenizer decodes it after a word (`decoded_after_word`): word, and joins. A tokenizer whose
    pieces do not mark word starts (bytes or characters, spaces as tokens of their own) keeps the text's spacing:
    there the decoder puts no space between any two pieces, so it cannot tell a guess that continues a word."""
    single = len(masks) == 1
    anchor, marked = word_pieces(tokenizer, "a"), marks_word_starts(tokenizer)
    anchor_text = tokenizer.decode(anchor, clean_up_tokenization_spaces=False)  # once a call, not once a guess
    results = []
    for at, row_guesses in zip(masks, guesses):
        row = []
        for guess in row_guesses:
            filled = torch.cat([input_ids[:at], torch.tensor(guess.pieces), input_ids[at + 1 :]])
            word, joins = decoded_after_word(tokenizer, anchor, anchor_text, list(guess.pieces))
            joins = joins and marked
            row.append(
                {
                    "score": guess.probability,
                    "token": guess.pieces[0],
                    "tokens": list(guess.pieces),
                    "token_str": tokenizer.decode(list(guess.pieces), clean_up_tokenization_spaces=False),
                    "sequence": tokenizer.decode(filled, skip_special_tokens=single),
                    "word": word,
                    "joins": joins,
                }
            )
        results.append(row)
    return results


def decoded_after_word(tokenizer, anchor: list[int], alone: str, pieces: list[int]) -> tuple[str, bool]:
    """`pieces` as the tokenizer's own decoder writes them after a word (`anchor`: its ids, e.g. of 'a', which decode
    to `alone`): their text, without the space before it, and whether they join that word (no space between them:
    WordPiece's `##ing`, a byte-level piece without `Ġ`, a SentencePiece one without `▁`)."""
    after = tokenizer.decode(anchor + pieces, clean_up_tokenization_spaces=False)
    if not after.startswith(alone):  # a decoder that rewrites the anchor too: the pieces alone, as a word
        return tokenizer.decode(pieces, clean_up_tokenization_spaces=False).strip(), False
    rest = after[len(alone) :]
    return rest.strip(), bool(rest.strip()) and not rest[0].isspace()


def generate(
    model: str,
    prompt: str,
    max_new_tokens: int = 50,
    temperature: float = 1.0,
    top_p: float = 0.95,
    top_k: int = 50,
    do_sample: bool = True,
    seed: int | None = None,
) -> str:
    """The prompt continued by a causal LM, as text; ValueError in plain words for a model that cannot load or
    generate, or an empty or too long prompt (the settings are checked by `playground.GenerateRequest`)."""
    tokenizer, lm, task = load_for_inference(model)
    if task.inference != "generate":
        raise ValueError(f"model: {model} is a {task.title}; it fills masks but cannot generate text")
    check_text(prompt, "prompt", "type the beginning of a text to continue")
    input_ids = torch.tensor([tokenizer(prompt, verbose=False)["input_ids"]], device=lm.device)
    room = max_block_size(lm.config, tokenizer) - input_ids.shape[1]
    if room < 1:
        raise ValueError("prompt: too long for this model; shorten it")
    sampling = {"temperature": temperature, "top_p": top_p, "top_k": top_k} if do_sample else {}
    cuda = [lm.device.index or 0] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda) if seed is not None else contextlib.nullcontext():
        if seed is not None:
            torch.manual_seed(seed)
        output = lm.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            do_sample=do_sample,
            max_new_tokens=min(max_new_tokens, room),
            pad_token_id=tokenizer.eos_token_id,
            **sampling,
        )
    return tokenizer.decode(output[0], skip_special_tokens=True)


SURPRISE_BATCH = 32  # copies of the text (one per word) scored in one forward pass


def word_surprise(model: str, text: str) -> list[tuple[str, float | None]]:
    """How surprised the masked LM is by each word of `text`: (word with the spaces after it, bits), where a word's
    surprise is -log2 of the probability of its tokens when the whole word is hidden (pseudo-log-likelihood per
    word, Salazar et al. 2020); spaces before the first word come with None. ValueError in plain words for a model
    that cannot load or fill masks, or a text that is empty or longer than the model reads."""
    tokenizer, lm = _masked_lm(model)
    check_text(text, "text", "paste a paragraph to see how surprised the model is by each word")
    [token_ids], [offsets] = encode_with_offsets(tokenizer, [text])
    ids = torch.tensor(token_ids)
    limit = max_block_size(lm.config, tokenizer)
    if len(ids) > limit:
        raise ValueError(f"text: {len(ids)} tokens is more than this model reads ({limit}); shorten it")
    words = word_spans(text)
    # A token belongs to the word its last character is in: SentencePiece's `▁the` starts at the space before.
    members = [[i for i, (start, end) in enumerate(offsets) if end > start and a < end <= b] for a, b in words]
    bits = _hidden_word_bits(lm, tokenizer.mask_token_id, ids, members)
    pieces = [(text[: words[0][0]], None)] if words and words[0][0] else []
    for index, (start, _) in enumerate(words):
        end = words[index + 1][0] if index + 1 < len(words) else len(text)
        pieces.append((text[start:end], bits[index]))
    return pieces


def _hidden_word_bits(lm, mask_id: int, ids: torch.Tensor, members: list[list[int]]) -> list[float | None]:
    """For each word (its positions in `ids` [tokens]), -log2 P(its tokens) in bits, with all of them masked at once,
    in batches."""
    bits: list[float | None] = [None] * len(members)
    scored = [w for w, positions in enumerate(members) if positions]
    for start in range(0, len(scored), SURPRISE_BATCH):
        chunk = scored[start : start + SURPRISE_BATCH]
        copies, hidden = ids.repeat(len(chunk), 1), torch.zeros(len(chunk), len(ids), dtype=torch.bool)
        for row, word in enumerate(chunk):
            hidden[row, members[word]] = True
        copies[hidden] = mask_id
        with torch.no_grad():
            logits = masked_logits(lm, copies.to(lm.device), hidden.to(lm.device))
        nats = -logits.float().log_softmax(-1).gather(1, ids.expand_as(copies)[hidden].to(lm.device)[:, None])
        rows = hidden.nonzero()[:, 0]
        totals = torch.zeros(len(chunk)).index_add_(0, rows, nats[:, 0].cpu())
        for row, word in enumerate(chunk):
            bits[word] = float(totals[row]) / math.log(2)
    return bits

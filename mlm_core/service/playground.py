"""The playground's calls: fill the masks of a text (with the right word's rank, from the same reading of the
masks), how surprised a model is by each word, and generation; plain data in and out."""

from __future__ import annotations

from dataclasses import dataclass

from mlm_core.models import inference
from mlm_core.models.loading import load_config
from mlm_core.models.words import word_label
from mlm_core.tasks import detect_task


@dataclass(frozen=True)
class Guess:
    """One guess at a mask: the word as a person reads it ("line break" for a newline), its probability, and the
    text with it filled in (any other mask shown as ___)."""

    word: str
    probability: float
    text: str


@dataclass(frozen=True)
class Filled:
    """A model's guesses at each mask of a text, likeliest first ([mask][rank]), and where it ranks the right word
    (1: its top guess; None when no word was given, the text has several masks, or the word does not fit)."""

    model: str
    guesses: tuple[tuple[Guess, ...], ...]
    answer_rank: int | None = None
    answer_probability: float | None = None


def fill(model: str, text: str, top_k: int, answer: str = "") -> Filled:
    """The `top_k` likeliest whole words at each mask of `text` (spelled `<mask>`, `[MASK]` or the model's own mask
    token) and the rank of `answer` at a single mask, from one reading of the masks. ValueError in plain words for a
    model that cannot fill masks, a text without masks or with too many, a bad `top_k` or an answer that is not
    text."""
    if not isinstance(answer, str):
        raise ValueError("answer: type the right word as text")
    results, ranked = inference.fill_and_rank(model, text, top_k, answer)
    mask = inference.mask_token(model)
    guesses = tuple(tuple(Guess(word_label(guess["token_str"]), float(guess["score"]),
                                inference.filled_sequence(text, results, number, guess, mask)) for guess in row)
                    for number, row in enumerate(results))
    rank, probability = ranked if ranked else (None, None)
    return Filled(model, guesses, rank, probability)


def surprise(model: str, text: str) -> list[tuple[str, float | None]]:
    """Each word of `text` (with the spaces after it) and the model's surprise at it in bits (pseudo-log-likelihood
    per word; None for leading spaces). ValueError in plain words as `inference.word_surprise`."""
    return inference.word_surprise(model, text)


def generate(model: str, prompt: str, max_new_tokens: int, temperature: float, top_p: float,
             seed: int | None = None) -> str:
    """The prompt continued by a causal model. ValueError in plain words as `inference.generate`."""
    return inference.generate(model, prompt, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                              seed=seed)


def generates(model: str) -> bool:
    """Whether `model` is a causal LM, which continues text instead of filling masks (a model that does not load
    counts as a masked one until it does)."""
    try:
        return bool(model) and detect_task(load_config(model)).inference == "generate"
    except (ValueError, OSError):
        return False

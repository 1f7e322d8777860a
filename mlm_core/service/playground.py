"""The playground's calls: fill the masks of a text (with the right word's rank, from the same reading of the
masks), how surprised a model is by each word, and generation; plain data in and out."""

from __future__ import annotations

from dataclasses import dataclass

from mlm_core.models import inference
from mlm_core.models.loading import load_config, load_for_inference, use_lent_gpu
from mlm_core.models.starter import default_examples
from mlm_core.models.words import word_label
from mlm_core.runs.model_sources import STARTER
from mlm_core.system.hub_access import is_online
from mlm_core.tasks import detect_task

__all__ = [
    "STARTER",
    "FillRequest",
    "Filled",
    "GenerateRequest",
    "Guess",
    "default_examples",
    "fill",
    "generate",
    "generates",
    "is_online",
    "load",
    "surprise",
    "use_lent_gpu",
    "word_label",
]

MAX_TOP_K = 100  # guesses per mask (the page offers up to 20)


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


def _number(value: object, name: str) -> float:
    """A number as a slider, a number box or an API client sends it; ValueError naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"{name}: must be a number")
    return float(value)


def _whole(value: object, name: str, low: int, high: int) -> int:
    """A whole number from `low` to `high`; ValueError naming the field."""
    number = _number(value, name)
    if number != int(number) or not low <= number <= high:
        raise ValueError(f"{name}: must be a whole number from {low} to {high:,}")
    return int(number)


def _model(value: object) -> str:
    """A model's name: the starter, a hub id, a run (`run:NAME`); ValueError for anything that is not a name."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("model: choose a model by its name")
    return value.strip()


@dataclass(frozen=True)
class FillRequest:
    """Fill the masks of `text` with `model`'s `top_k` likeliest words (or of the candidate words `targets` only),
    ranking the right word `answer` if given.
    Made from whatever a page or an API client sent: numbers may come as floats; ValueError in plain words for a
    value of the wrong kind or range (what depends on the model, such as the text's length in tokens, is checked
    when it reads the text)."""

    model: str
    text: str
    top_k: int = 5
    answer: str = ""
    targets: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "model", _model(self.model))
        object.__setattr__(self, "top_k", _whole(self.top_k, "top_k", 1, MAX_TOP_K))
        if not isinstance(self.answer, str):
            raise ValueError("answer: type the right word as text")
        object.__setattr__(self, "answer", self.answer.strip())
        if not isinstance(self.targets, (list, tuple)) or not all(isinstance(t, str) for t in self.targets):
            raise ValueError("targets: give the candidate words as a list of texts")
        object.__setattr__(self, "targets", tuple(t for t in self.targets if t.strip()))


@dataclass(frozen=True)
class GenerateRequest:
    """Continue `prompt` with a causal `model`: at most `max_new_tokens` tokens sampled at `temperature` from the
    `top_k` likeliest within the `top_p` nucleus (or the likeliest each time when not `sample`), repeatable with a
    `seed`. ValueError in plain words as `FillRequest`."""

    model: str
    prompt: str
    max_new_tokens: int = 50
    temperature: float = 1.0
    top_p: float = 0.95
    seed: int | None = None
    top_k: int = 50
    sample: bool = True

    def __post_init__(self):
        object.__setattr__(self, "model", _model(self.model))
        object.__setattr__(
            self, "max_new_tokens", _whole(self.max_new_tokens, "max_new_tokens", 1, inference.MAX_NEW_TOKENS)
        )
        temperature, top_p = _number(self.temperature, "temperature"), _number(self.top_p, "top_p")
        if not (temperature > 0 and 0 < top_p <= 1):
            raise ValueError("temperature: must be above 0, with top_p in (0, 1]")
        object.__setattr__(self, "top_k", _whole(self.top_k, "top_k", 1, 2**31 - 1))
        if not isinstance(self.sample, bool):
            raise ValueError("sample: must be true or false")
        object.__setattr__(self, "temperature", temperature)
        object.__setattr__(self, "top_p", top_p)
        if self.seed not in (None, ""):
            object.__setattr__(self, "seed", _whole(self.seed, "seed", 0, 2**32 - 1))
        else:
            object.__setattr__(self, "seed", None)


def load(model: str) -> None:
    """Load `model` for the playground in this process, so that its calls find it in memory: on ZeroGPU the app's
    process loads it on the CPU, and each GPU call's worker process, forked from it, moves it to the lent GPU (a bad
    name is refused here, before any GPU time is asked for). ValueError in plain words when it cannot load."""
    load_for_inference(_model(model))


def fill(request: FillRequest) -> Filled:
    """The `top_k` likeliest whole words at each mask of the text (spelled `<mask>`, `[MASK]` or the model's own mask
    token) and the rank of the answer at a single mask, from one reading of the masks. ValueError in plain words for
    a model that cannot fill masks, a text without masks or with too many, or more guesses than the vocabulary
    holds."""
    model, text = request.model, request.text
    results, ranked = inference.fill_and_rank(model, text, request.top_k, request.answer, list(request.targets) or None)
    mask = inference.mask_token(model)
    guesses = tuple(
        tuple(
            Guess(
                guess["word"] or word_label(guess["token_str"]),
                float(guess["score"]),
                inference.filled_sequence(text, results, number, guess, mask),
            )
            for guess in row
        )
        for number, row in enumerate(results)
    )
    rank, probability = ranked if ranked else (None, None)
    return Filled(model, guesses, rank, probability)


def surprise(model: str, text: str) -> list[tuple[str, float | None]]:
    """Each word of `text` (with the spaces after it) and the model's surprise at it in bits (pseudo-log-likelihood
    per word; None for leading spaces). ValueError in plain words as `inference.word_surprise`."""
    return inference.word_surprise(_model(model), text)


def generate(request: GenerateRequest) -> str:
    """The prompt continued by a causal model. ValueError in plain words for a model that cannot generate or a
    prompt that is empty or too long for it."""
    return inference.generate(
        request.model,
        request.prompt,
        max_new_tokens=request.max_new_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        top_k=request.top_k,
        do_sample=request.sample,
        seed=request.seed,
    )


def generates(model: str) -> bool:
    """Whether `model` is a causal LM, which continues text instead of filling masks (a model that does not load
    counts as a masked one until it does)."""
    try:
        return bool(model) and detect_task(load_config(model)).inference == "generate"
    except (ValueError, OSError):
        return False

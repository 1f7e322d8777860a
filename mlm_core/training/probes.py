"""Probe sentences for "watch it learn": whole sentences with one content word hidden, so each has a known answer."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mlm_core.models.inference import score_probe, word_pieces
from mlm_core.models.word_guesses import MAX_PIECES

MASK = "<mask>"
ANSWER_MARK = "=>"  # "The <mask> statement exits a loop. => break": a typed probe may give its answer
MIN_WORDS, MAX_WORDS, MIN_LETTERS = 8, 25, 4
MAX_BASE_PASSES = 150  # the base model's passes spent on picking probes (a few seconds for DistilRoBERTa on a CPU)
KNOWN_RANK = 5  # a word the base model already ranks this high has little left to learn: not a probe
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
LETTERS = r"[^\W\d_]"  # a letter of any script
PLAIN_WORD = re.compile(rf"^{LETTERS}({LETTERS}|['’-])*[,;:]?$")  # no code (x.y, f(), `name`), no numbers
LAST_WORD = re.compile(rf"^{LETTERS}({LETTERS}|['’-])*[.!?]$")
STOP_WORDS = frozenset(
    """
about above after again against also although among another anything because been before being below between both
cannot could does doing done down during each either else even ever every from further have having here hers herself
himself however into itself just least less like many might more most much must myself neither never none nothing
often once only other others otherwise ours ourselves over own perhaps quite rather same several shall should since
some something such than that their theirs them themselves then there therefore these they this those though through
thus together under unless until upon used uses using very were what whatever when whenever where whether which
while whom whose will with within without would yours yourself yourselves
""".split()
)


@dataclass(frozen=True)
class ProbeSentence:
    """A sentence with `<mask>` where a word is hidden, and that word when it is known."""

    text: str
    answer: str | None = None

    def line(self) -> str:
        """The probe as one line of the probes box."""
        return f"{self.text} {ANSWER_MARK} {self.answer}" if self.answer else self.text


def parse_probe(line: str) -> ProbeSentence:
    """A probe from a line of the probes box: the sentence, then optionally '=> answer'."""
    text, mark, answer = line.partition(ANSWER_MARK)
    return ProbeSentence(text.strip(), answer.strip() or None) if mark else ProbeSentence(line.strip())


def is_plain_sentence(sentence: str) -> bool:
    """8 to 25 plain words, a capital first and a full stop (or ? !) last: prose, not code or a heading."""
    words = sentence.split()
    return (
        MIN_WORDS <= len(words) <= MAX_WORDS
        and words[0][0].isupper()
        and all(PLAIN_WORD.match(w) for w in words[:-1])
        and bool(LAST_WORD.match(words[-1]))
    )


def hidden_word_options(sentence: str, tokenizer) -> list[ProbeSentence]:
    """The sentence once per content word, that word hidden: not the first word, lower case letters only (of any
    script), at least 4 of them, not a stop word, at most MAX_PIECES pieces (the guesses propose words that long)."""
    words, options = sentence.split(), []
    for index in range(1, len(words)):
        word = words[index].rstrip(",;:.!?")
        if (
            word.isalpha()
            and word == word.lower()
            and len(word) >= MIN_LETTERS
            and word not in STOP_WORDS
            and len(word_pieces(tokenizer, word)) <= MAX_PIECES
        ):
            masked = words[:index] + [MASK + words[index][len(word) :]] + words[index + 1 :]
            options.append(ProbeSentence(" ".join(masked), word))
    return options


def whole_sentences(text: str) -> Iterable[str]:
    """The plain sentences of a text, each paragraph (or run of equally indented lines, so that a heading or a term
    is not read as the start of the sentence after it) cut at sentence ends; white space made single spaces."""
    for chunk in re.split(r"\n[ \t]*\n", text):
        for paragraph in _same_indent_runs(chunk):
            for sentence in SENTENCE_END.split(" ".join(paragraph.split())):
                if is_plain_sentence(sentence) and MASK not in sentence:
                    yield sentence


def _same_indent_runs(chunk: str) -> list[str]:
    """A chunk cut where the indentation of its lines changes."""
    runs: list[list[str]] = []
    indent = None
    for line in chunk.split("\n"):
        width = len(line) - len(line.lstrip())
        if runs and width == indent:
            runs[-1].append(line)
        else:
            runs.append([line])
            indent = width
    return ["\n".join(run) for run in runs]


def pick_probes(
    texts: Sequence[str],
    tokenizer,
    n: int = 5,
    seed: int = 0,
    common_words: Counter | None = None,
    base_rank: Callable[[ProbeSentence], int | None] | None = None,
) -> list[ProbeSentence]:
    """Up to `n` sentences of the texts, each with one word hidden and a different answer, chosen reproducibly.

    Of a sentence's content words, those the base model does not guess yet (with `base_rank`: outside its top
    `KNOWN_RANK`), and of those the one the training text uses most (`common_words`; ties: the last), so that each
    probe asks for a word of the text's own vocabulary that the model has still to learn.
    """
    sentences = [sentence for text in texts for sentence in whole_sentences(text)]
    random.Random(seed).shuffle(sentences)
    counts = common_words or Counter()
    picked, answers, passes = [], set(), 0
    for sentence in sentences:
        options = [option for option in hidden_word_options(sentence, tokenizer) if option.answer not in answers]
        if base_rank is not None:
            if passes + len(options) > MAX_BASE_PASSES:
                break
            passes += len(options)
            options = [option for option in options if (base_rank(option) or 0) > KNOWN_RANK]
        if options:
            probe = max(reversed(options), key=lambda option: counts[option.answer])
            picked.append(probe)
            answers.add(probe.answer)
        if len(picked) == n:
            break
    return picked


def word_counts(texts: Iterable[str]) -> Counter:
    """How often each lower-case word occurs in the texts."""
    return Counter(word.lower() for text in texts for word in re.findall(rf"{LETTERS}+", text))


def heldout_probes(tokenizer, model, data, n: int, seed: int, blocks: int = 200) -> list[ProbeSentence]:
    """Probes from the first `blocks` held-out blocks of `data`, their words counted in ten times as many training
    blocks and ranked by `model` (the base model)."""
    counts = word_counts(block_texts(tokenizer, data.train[: 10 * blocks]))
    return pick_probes(
        block_texts(tokenizer, data.eval[:blocks]),
        tokenizer,
        n=n,
        seed=seed,
        common_words=counts,
        base_rank=lambda probe: score_probe(tokenizer, model, probe.text, probe.answer, max_pieces=1)[1],
    )


def block_texts(tokenizer, blocks) -> list[str]:
    """The text of token blocks ([k, block] ids), each without the partial sentence it starts with."""
    texts = []
    for block in blocks:
        text = tokenizer.decode(block, skip_special_tokens=True)
        cut = re.search(r"[.!?]\s", text)
        texts.append(text[cut.end() :] if cut else "")
    return texts

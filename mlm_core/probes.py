"""Probe sentences for "watch it learn": whole sentences with one content word hidden, so each has a known answer."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MASK = "<mask>"
ANSWER_MARK = "=>"  # "The <mask> statement exits a loop. => break": a typed probe may give its answer
# A sentence: starts with a capital letter after a sentence end or a line start, ends with . ! or ?, 8 to 25 words.
SENTENCE = re.compile(r"(?:(?<=[.!?]\s)|(?<=\n)|^)([A-Z][^.!?\n]{20,220}[.!?])(?=\s|$)", re.MULTILINE)
WORD = re.compile(r"\b[A-Za-z]{4,}\b")
STOP_WORDS = frozenset("""
about above after again against also although among another anything because been before being below between both
cannot could does doing down during each either else even ever every from further have having here hers herself
himself however into itself just least less many might more most much must myself neither never none nothing often
once only other others otherwise ours ourselves over own perhaps quite rather same several shall should since some
something such than that their theirs them themselves then there therefore these they this those though through thus
together under unless until upon very were what whatever when whenever where whether which while whom whose will
with within without would yours yourself yourselves
""".split())


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


def one_token(tokenizer, word: str) -> bool:
    """Whether the word, after a space, is a single token: one <mask> stands for it exactly."""
    return len(tokenizer.tokenize(f" {word}")) == 1


def hide_a_word(sentence: str, tokenizer) -> ProbeSentence | None:
    """The sentence with its content word nearest the middle hidden (not the first word, not a stop word)."""
    words = [m for m in WORD.finditer(sentence) if m.start() > 0 and m[0].lower() not in STOP_WORDS
             and m[0].islower() and one_token(tokenizer, m[0])]
    if not words:
        return None
    middle = len(sentence) / 2
    word = min(words, key=lambda m: abs((m.start() + m.end()) / 2 - middle))
    return ProbeSentence(sentence[: word.start()] + MASK + sentence[word.end():], word[0])


def whole_sentences(text: str) -> Iterable[str]:
    """The complete sentences of a text of 8 to 25 words (a text cut out of a longer one loses its first one)."""
    for match in SENTENCE.finditer(text):
        sentence = " ".join(match[1].split())
        if 8 <= len(sentence.split()) <= 25 and MASK not in sentence:
            yield sentence


def pick_probes(texts: Sequence[str], tokenizer, n: int = 5, seed: int = 0) -> list[ProbeSentence]:
    """Up to `n` sentences of the texts with a word hidden, each hiding a different word, chosen reproducibly."""
    candidates = [probe for text in texts for sentence in whole_sentences(text)
                  if (probe := hide_a_word(sentence, tokenizer)) is not None]
    random.Random(seed).shuffle(candidates)
    picked, answers = [], set()
    for probe in candidates:
        if probe.answer not in answers:
            picked.append(probe)
            answers.add(probe.answer)
        if len(picked) == n:
            break
    return picked


def block_texts(tokenizer, blocks) -> list[str]:
    """The text of token blocks, each without the partial sentence it starts with."""
    texts = []
    for block in blocks:
        text = tokenizer.decode(block, skip_special_tokens=True)
        cut = re.search(r"[.!?]\s", text)
        texts.append(text[cut.end():] if cut else "")
    return texts

"""Probe sentences for "watch it learn": short sentences from the user's own data with one word masked."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

SENTENCE = re.compile(r"[^.!?\n]{30,160}[.!?]")
WORD = re.compile(r"\b[a-z]{4,12}\b")


def suggest_probes(texts: Sequence[str], n: int = 3, seed: int = 0) -> list[str]:
    """Up to `n` sentences drawn from `texts`, each with one lower-case word (not the first) replaced by <mask>."""
    rng = random.Random(seed)
    candidates = []
    for text in texts[:500]:
        for sentence in SENTENCE.findall(text):
            sentence = " ".join(sentence.split())
            words = [m for m in WORD.finditer(sentence) if m.start() > 0]
            if 6 <= len(sentence.split()) <= 24 and words:
                candidates.append((sentence, words))
    rng.shuffle(candidates)
    probes = []
    for sentence, words in candidates[:n]:
        word = words[len(words) // 2]
        probes.append(sentence[: word.start()] + "<mask>" + sentence[word.end():])
    return probes

"""How well a tokenizer fits a text: pieces per word, the share of words kept whole, and whether it knows the
text's script at all (Preview's fit check)."""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass

from mlm_core.models.words import continues_word, group_words, word_text

MULTILINGUAL_MODEL = "FacebookAI/xlm-roberta-base"  # 100 languages (Conneau et al. 2020)
PIECES_PER_CHARACTER = 0.5  # at this many pieces per letter or more, words are spelled out piece by piece
UNKNOWN_SHARE = 0.1  # a tokenizer that reads this share of words as its unknown token does not know the script
MIN_LETTERS = 3


@dataclass(frozen=True)
class WordFit:
    """Words of a text as a tokenizer cuts them."""

    words: int  # words measured
    pieces_per_word: float  # mean tokens per word
    whole_share: float  # share of words that are one token
    script: str  # the script most of the text's letters are in ("Latin", "Greek", "Cjk"...; "" if none is read)
    known: bool  # False: the tokenizer spells the script's words out piece by piece, or reads them as unknown

    def advice(self, online: bool) -> str | None:
        """What to do when the model does not know the script (None when it does)."""
        if self.known:
            return None
        remedy = (
            f"choose a multilingual model such as {MULTILINGUAL_MODEL}"
            if online
            else "the hub is not reachable, so no multilingual model can be loaded here: add your text's most "
            "frequent words to the model as whole tokens (Add your words, in More settings; --add-words on "
            "the command line), so that it can guess them whole"
        )
        script = f"the {self.script} script" if self.script else "the script of your text"
        return (
            f"This model does not know {script}: a word of your text takes "
            f"{self.pieces_per_word:.1f} pieces on average, and {self.whole_share:.0%} of words are one piece. "
            f"To train on it, {remedy}."
        )


def measure_fit(tokenizer, blocks) -> WordFit:
    """The fit of `tokenizer` to the words in token blocks ([n, block] ids, as the token store holds them), counting
    the pieces of each word's letters and digits; words of at least MIN_LETTERS letters decide whether the script
    is known."""
    unknown, counts, letters, pieces, long_words, long_unknown = tokenizer.unk_token_id, [], Counter(), 0, 0, 0
    continues = continues_word(tokenizer, len(tokenizer)).tolist()
    for block in blocks:
        ids = block.tolist()
        for word in group_words(tokenizer, ids):
            # punctuation after a word (`caller` + `.`) is not a piece of it
            tokens = [ids[i] for n, i in enumerate(word) if n == 0 or continues[ids[i]]]
            text = word_text(tokenizer, tokens).strip()
            alphabet = [char for char in text if char.isalpha()]
            counts.append(len(tokens))
            letters.update(_script(char) for char in alphabet)
            if len(alphabet) >= MIN_LETTERS:
                long_words += 1
                pieces += len(tokens) / max(len(alphabet), 1)
    # A tokenizer that reads a word as its unknown token (a special token, left out of the words above)
    unknowns = sum(int((block == unknown).sum()) for block in blocks) if unknown is not None else 0
    counts += [1] * unknowns
    long_words, long_unknown, pieces = long_words + unknowns, long_unknown + unknowns, pieces + unknowns
    words = len(counts)
    script = letters.most_common(1)[0][0] if letters else ""
    spelled_out = long_words and pieces / long_words >= PIECES_PER_CHARACTER
    unknown_words = long_words and long_unknown / long_words >= UNKNOWN_SHARE
    return WordFit(
        words=words,
        pieces_per_word=sum(counts) / max(words, 1),
        whole_share=counts.count(1) / max(words, 1),
        script=script,
        known=not (spelled_out or unknown_words),
    )


def _script(char: str) -> str:
    """The script a letter is in, by its Unicode name ('GREEK SMALL LETTER ALPHA' -> 'Greek')."""
    return unicodedata.name(char, "UNKNOWN").split()[0].title()

"""How well a tokenizer fits a text: pieces per word, the share of words kept whole, whether it knows the text's
script at all, and whether it was made for the text's language (Preview's fit check)."""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass

from mlm_core.models.words import continues_word, group_words, word_text

MULTILINGUAL_MODEL = "FacebookAI/xlm-roberta-base"  # 100 languages (Conneau et al. 2020)
MULTILINGUAL_BERT = "distilbert/distilbert-base-multilingual-cased"  # 104 languages, the guides' size
# At this many pieces per letter or more, words are spelled out letter by letter: the script is not known (Greek
# through the English starter's byte-level BPE: about 1; French and German through it: 0.3 to 0.5).
PIECES_PER_CHARACTER = 0.75
WHOLE_SHARE = 0.5  # with fewer words than this kept whole, the vocabulary was made for another language
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
        """What to do when the model does not know the script, or cuts most words into pieces (None when it reads
        the text well). Add your words is not suggested: on a French text it lowered hidden-word top-5 (#33)."""
        if self.known and self.whole_share >= WHOLE_SHARE:
            return None
        measured = (
            f"a word of your text takes {self.pieces_per_word:.1f} pieces on average, and {self.whole_share:.0%} of "
            "words are one piece"
        )
        if not self.known:
            script = f"the {self.script} script" if self.script else "the script of your text"
            problem = f"This model does not know {script}: {measured}."
        else:
            problem = (
                f"This model cuts most words of your text into pieces ({measured}): its vocabulary was made for "
                "another language, or another kind of text, so it learns and guesses your words piece by piece."
            )
        remedy = (
            f"For text in your language, choose a multilingual model such as {MULTILINGUAL_MODEL} or "
            f"{MULTILINGUAL_BERT}."
            if online
            else "The hub is not reachable, so no multilingual model can be loaded here; a run still learns, but "
            "expect fewer whole words guessed right."
        )
        return f"{problem} {remedy}"


def measure_fit(tokenizer, blocks) -> WordFit:
    """The fit of `tokenizer` to the words in token blocks ([n, block] ids, as the token store holds them), counting
    the pieces of each word's letters and digits; words of at least MIN_LETTERS letters decide whether the script
    is known. The blocks' text is measured with its line breaks read as spaces: a word list, one word a line,
    measures as the same words on one line (byte-level BPE cuts a word after a line break into other pieces)."""
    unknown, counts, letters, pieces, long_words, long_unknown = tokenizer.unk_token_id, [], Counter(), 0, 0, 0
    continues = continues_word(tokenizer, len(tokenizer)).tolist()
    texts = [" ".join(tokenizer.decode(block.tolist(), skip_special_tokens=True).split()) for block in blocks]
    for ids in tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []:
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

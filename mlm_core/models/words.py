"""Token pieces back into the words a person reads, for every tokenizer kind: WordPiece (`##` continues a word),
byte-level BPE (`Ġ` starts one; a character may be several byte pieces) and SentencePiece (`▁` starts one)."""

from __future__ import annotations

import weakref

import torch


def group_words(tokenizer, ids: list[int]) -> list[list[int]]:
    """The positions of `ids` [tokens] grouped into words, special tokens left out: [[positions of word 1], ...]."""
    special = set(tokenizer.all_special_ids)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    continues = _continuation_test(tokenizer)
    words: list[list[int]] = []
    after_special = True
    for position, (token, piece) in enumerate(zip(ids, pieces)):
        if token in special:
            after_special = True
            continue
        if after_special or not words or not continues(piece):
            words.append([position])
        else:
            words[-1].append(position)
        after_special = False
    return words


def word_text(tokenizer, ids: list[int]) -> str:
    """The text of a word's pieces decoded together (so the byte pieces of `é` make `é`, not `��`), spaces kept."""
    return tokenizer.decode(ids, clean_up_tokenization_spaces=False)


def _continuation_test(tokenizer):
    """Whether a raw piece continues the word before it, by the tokenizer's kind."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = type(backend.model).__name__ if backend is not None else ""
    if kind == "WordPiece" or (not kind and any(piece.startswith("##") for piece in tokenizer.get_vocab())):
        return lambda piece: piece.startswith("##")
    # Byte-level BPE and SentencePiece mark the start of a word; a piece without the mark continues one.
    return lambda piece: not piece.startswith(("Ġ", "▁", " ", "Ċ", "\n"))


def marks_word_starts(tokenizer) -> bool:
    """Whether the tokenizer's pieces say where words start (WordPiece's `##`, byte-level BPE's `Ġ`, SentencePiece's
    `▁`): two words make two pieces, none of them the space, nor marked as a word's end (XLM's `</w>`), the second
    read as a word's start. Byte- and character-level tokenizers spell the space as a piece of its own (or drop it,
    as ESM's), so a piece of theirs says nothing of the word it belongs to."""
    pieces = tokenizer.tokenize("a b")
    return (
        len(pieces) == 2
        and not any(piece.endswith("</w>") for piece in pieces)
        and not _continuation_test(tokenizer)(pieces[1])
    )


_STARTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> its `starts_word` table


def starts_word(tokenizer, size: int) -> torch.Tensor:
    """Bool [size] (the model's vocabulary): whether each token starts a word (special tokens, and ids past the
    tokenizer's, count as starts), by the marks of the tokenizer's kind (`_continuation_test`). Computed once per
    tokenizer."""
    if tokenizer not in _STARTS:
        continues = _continuation_test(tokenizer)
        special = set(tokenizer.all_special_ids)
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        _STARTS[tokenizer] = torch.tensor(
            [
                token in special or not isinstance(piece, str) or not continues(piece)
                for token, piece in enumerate(pieces)
            ]
        )
    known = _STARTS[tokenizer][:size]
    return torch.cat([known, known.new_ones(size - len(known))])


_TEXTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> `token_texts`


def token_texts(tokenizer) -> list[str]:
    """Each token of the tokenizer decoded alone: [len(tokenizer)]. Computed once per tokenizer (a 50,000-token
    vocabulary: about 0.7 s)."""
    if tokenizer not in _TEXTS:
        _TEXTS[tokenizer] = tokenizer.batch_decode([[token] for token in range(len(tokenizer))])
    return _TEXTS[tokenizer]


_CONTINUES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> its `continues_word` table


def continues_word(tokenizer, size: int) -> torch.Tensor:
    """Bool [size]: whether each token can continue a word: no word-start mark (`starts_word`), and a letter or
    digit in it or a byte piece of a character (so `result` + `,` is no word). Computed once per tokenizer."""
    if tokenizer not in _CONTINUES:
        texts = token_texts(tokenizer)
        wordlike = torch.tensor([any(char.isalnum() or char == "\ufffd" for char in text) for text in texts])
        _CONTINUES[tokenizer] = wordlike & ~starts_word(tokenizer, len(tokenizer))
    known = _CONTINUES[tokenizer][:size]
    return torch.cat([known, known.new_zeros(size - len(known))])


_SHOWABLE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> its `showable` mask


def showable(tokenizer, size: int) -> torch.Tensor:
    """Bool [size] (the model's vocabulary, which may be larger than the tokenizer's): which tokens decode, alone, to
    visible whole characters and are not special: no white space but the space (a piece holding a line break would
    break the sentence it fills), no control character, and no piece of a character (a byte-level piece of `é`
    decodes to U+FFFD alone). Computed once per tokenizer."""
    if tokenizer not in _SHOWABLE:
        special = set(tokenizer.all_special_ids)
        texts = token_texts(tokenizer)
        _SHOWABLE[tokenizer] = torch.tensor(
            [
                token not in special
                and bool(text.strip())
                and "\ufffd" not in text
                and all(char.isprintable() for char in text)
                for token, text in enumerate(texts)
            ]
        )
    known = _SHOWABLE[tokenizer][:size]
    return torch.cat([known, known.new_zeros(size - len(known))])


WHITE_SPACE_NAMES = (("\n", "line break"), ("\t", "tab"), (" ", "space"))


def word_label(token_str: str) -> str:
    """A guess as a person reads it: the word, or the name of the white space it is ("line break", "space")."""
    shown = token_str.strip()
    if shown:
        return shown.removeprefix("##")
    return next((name for char, name in WHITE_SPACE_NAMES if char in token_str), "nothing")

"""Token pieces back into the words a person reads, for every tokenizer kind: WordPiece (`##` continues a word),
byte-level BPE (`Ġ` starts one; a character may be several byte pieces) and SentencePiece (`▁` starts one)."""

from __future__ import annotations


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

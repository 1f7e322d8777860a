"""Your words, added: frequent split words become one token each, for each tokenizer kind, and the model reads them."""

from importlib.resources import files

import pytest
import torch

from .model_families import build_family

EVERYDAY = files("mlm_core.data").joinpath("everyday_sample.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize("family, kind", [("bert", "WordPiece"), ("roberta", "byte-level BPE"),
                                          ("xlm-roberta", "SentencePiece Unigram")])
def test_frequent_split_words_become_one_token_with_embeddings_from_their_pieces(family, kind, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from mlm_core.models.added_words import add_words, split_words
    from mlm_core.models.inference import fill_mask, word_pieces

    folder, built_kind = build_family(family, tmp_path / "base")
    assert built_kind == kind
    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModelForMaskedLM.from_pretrained(folder)
    words = split_words([EVERYDAY], tokenizer, limit=12, min_count=2)
    assert len(words) == 12 and all(len(word_pieces(tokenizer, word)) > 1 for word in words)
    pieces = {word: word_pieces(tokenizer, word) for word in words}
    before = model.get_input_embeddings().weight.detach().clone()

    extended, added = add_words(tokenizer, model, words)
    assert added.words == words and added.new_tokens >= len(words)
    embeddings = model.get_input_embeddings().weight
    for word in words:
        [token] = word_pieces(extended, word)
        assert embeddings[token].detach() == pytest.approx(before[pieces[word]].mean(0), abs=1e-6)
    text = EVERYDAY.split("\n\n")[1]
    ids = extended(text)["input_ids"]
    as_before = tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True)
    assert extended.decode(ids, skip_special_tokens=True).split() == as_before.split()  # the same text back
    assert len(ids) < len(tokenizer(text)["input_ids"])
    unchanged = "The cat sat quietly."  # words not added are cut as before
    assert extended(unchanged)["input_ids"] == tokenizer(unchanged)["input_ids"]

    model.save_pretrained(tmp_path / "grown")
    extended.save_pretrained(tmp_path / "grown")
    [guesses] = fill_mask(str(tmp_path / "grown"), f"{text.split('.')[0]} <mask>.", top_k=5)
    assert len(guesses) == 5 and torch.isfinite(torch.tensor([g["score"] for g in guesses])).all()

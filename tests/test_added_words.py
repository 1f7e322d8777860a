"""Your words, added: frequent split words become one token each, for each tokenizer kind, and the model reads them."""

from importlib.resources import files

import pytest
import torch

from .model_families import build_family

EVERYDAY = files("starter").joinpath("everyday_sample.txt").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "family, kind", [("bert", "WordPiece"), ("roberta", "byte-level BPE"), ("xlm-roberta", "SentencePiece Unigram")]
)
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


def test_a_run_adds_the_uploads_words_saves_them_with_the_model_and_keeps_them_on_resume(tiny_mlm, tmp_path):
    import threading

    from mlm_core.cli.commands import summary
    from mlm_core.config import TrainConfig
    from mlm_core.events import Eval
    from mlm_core.models.inference import fill_mask, word_pieces
    from mlm_core.models.loading import load_tokenizer
    from mlm_core.runs.run_dir import RunDir
    from mlm_core.training.loop import train

    upload = tmp_path / "garden.txt"
    upload.write_text("\n\n".join([EVERYDAY] * 12), encoding="utf-8")
    config = TrainConfig(
        model=str(tiny_mlm),
        dataset="file",
        dataset_file=str(upload),
        block_size=64,
        batch_size=8,
        learning_rate=1e-3,
        max_steps=6,
        eval_steps=2,
        add_words=30,
        output_dir=str(tmp_path / "run"),
    )
    stop = threading.Event()
    stopped = train(config, on_event=lambda e: stop.set() if isinstance(e, Eval) and not e.base else None, stop=stop)
    assert stopped.status == "stopped" and len(stopped.added_words) == 30
    results = train(config, resume=True)
    assert results.status == "completed" and results.added_words == stopped.added_words
    # what adding them changed, measured on the text: the same words in fewer tokens
    assert 0.05 < stopped.tokens_saved < 0.5 and results.tokens_saved == stopped.tokens_saved
    said = summary(results, config)
    assert "30 of the text's words added as tokens" in said and "perplexities do not compare with a run" in said
    saved = load_tokenizer(str(RunDir(config.output_dir).model_path))
    base = load_tokenizer(str(tiny_mlm))
    for word in results.added_words:
        assert len(word_pieces(saved, word)) == 1 < len(word_pieces(base, word))
    [guesses] = fill_mask(str(RunDir(config.output_dir).model_path), "The gardener waters the <mask>.", top_k=3)
    assert len(guesses) == 3


def test_words_of_a_script_the_model_spells_out_become_one_token_each():
    from transformers import AutoModelForMaskedLM

    from mlm_core.models.added_words import add_words, split_words
    from mlm_core.models.inference import word_pieces
    from mlm_core.models.loading import load_tokenizer
    from mlm_core.runs.model_sources import STARTER_DIR

    # What the fit check advises offline for a script the model does not know: the starter reads Greek byte by byte.
    greek = (
        "Ο κηπουρός ποτίζει τα φυτά στο θερμοκήπιο κάθε βράδυ. Τα φυτά χρειάζονται νερό και ήλιο. "
        "Ο κηπουρός αγαπά τα φυτά του."
    )
    tokenizer = load_tokenizer("starter")
    words = split_words([greek], tokenizer, limit=10, min_count=2)
    assert set(words) == {"κηπουρός", "φυτά"} and all(len(word_pieces(tokenizer, w)) > 5 for w in words)
    extended, _ = add_words(tokenizer, AutoModelForMaskedLM.from_pretrained(STARTER_DIR), words)
    assert all(len(word_pieces(extended, word)) == 1 for word in words)
    assert extended.decode(extended(greek)["input_ids"], skip_special_tokens=True) == greek

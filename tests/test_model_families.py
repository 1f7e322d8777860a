"""Every family in transformers' masked-LM mapping: a tiny random-weight model with a tokenizer of its kind trains
(whole-word masking, two steps), fills a mask and scores each word's surprise, or is refused before training in one
sentence. The run's table is docs/MODEL_FAMILIES.md (`MLM_STUDIO_WRITE_DOCS=1` writes it; otherwise the test checks
that the committed table is the one this run produced)."""

from __future__ import annotations

import math
import os

import pytest

from mlm_core.models.inference import fill_mask, filled_sequence, word_surprise
from mlm_core.models.loading import load_tokenizer
from mlm_core.training.loop import train

from .conftest import ROOT, tiny_config
from .model_families import BLOCK, build_family, masked_lm_families

FAMILIES = masked_lm_families()
# The quick tier trains one family of each tokenizer kind (WordPiece, byte-level BPE, SentencePiece Unigram, bytes in
# Python, and a SentencePiece BPE without a mask token, refused); the full tier every family.
QUICK = {"bert", "roberta", "albert", "perceiver", "reformer"}
OUTCOMES: dict[str, dict[str, str]] = {}
KINDS_FILLED: set[str] = set()  # tokenizer kinds whose masks were filled at every place in a sentence
TABLE = ROOT / "docs" / "MODEL_FAMILIES.md"
SURPRISE_TEXT = "Café naïve, the list returns 北京大学 🙂."


@pytest.mark.parametrize(
    "family", [family if family in QUICK else pytest.param(family, marks=pytest.mark.slow) for family in FAMILIES]
)
def test_family_trains_fills_masks_and_scores_words_or_is_refused(family, tmp_path):
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    folder, kind = build_family(family, tmp_path / "model")
    row = OUTCOMES[family] = {"class": MODEL_FOR_MASKED_LM_MAPPING_NAMES[family], "tokenizer": kind}
    config = tiny_config(folder, tmp_path / "run", max_steps=2, eval_steps=2, block_size=BLOCK, whole_word_masking=True)
    try:
        results = train(config)
    except ValueError as refusal:
        said = str(refusal)
        assert said.count(". ") == 0 and "Traceback" not in said, said  # one sentence
        assert not (tmp_path / "run" / "checkpoints").exists()  # refused before any step
        row["refused"] = said.replace(str(folder), "the model")
        return
    assert results.status == "completed" and results.steps == 2, results.message
    assert math.isfinite(results.final_eval_loss) and results.final_eval_loss > 0
    row["train"] = "yes"

    tokenizer = load_tokenizer(str(folder))
    text = f"The function returns {tokenizer.mask_token} list."
    results = fill_mask(str(tmp_path / "run"), text, top_k=3)
    assert len(results[0]) == 3
    for guess in results[0]:
        shown = guess["token_str"]
        assert shown.strip() and "\ufffd" not in shown and shown.isprintable(), results
        sentence = filled_sequence(text, results, 0, guess, tokenizer.mask_token)  # as the page and the CLI show it
        assert "  " not in sentence and not any(t in sentence for t in tokenizer.all_special_tokens), sentence
        assert sentence.startswith("The function returns") and sentence.endswith(" list.")
    if tokenizer.decode(tokenizer.encode(" function", add_special_tokens=False)).strip() == "function":
        # a word of any number of pieces is shown as a word of its own (not "returnsfunction")
        [[whole]] = fill_mask(str(tmp_path / "run"), text, top_k=1, targets=["function"])
        shown = filled_sequence(text, [[whole]], 0, whole, tokenizer.mask_token)
        assert shown == "The function returns function list.", shown
    if kind not in KINDS_FILLED:  # once per tokenizer kind: the quick tier holds one family of each
        KINDS_FILLED.add(kind)
        _guesses_fit_where_the_mask_stands(str(tmp_path / "run"), tokenizer)
    row["fill-mask"] = "yes"

    scored = word_surprise(str(tmp_path / "run"), SURPRISE_TEXT)
    assert "".join(word for word, _ in scored) == SURPRISE_TEXT
    assert [word.strip() for word, _ in scored] == SURPRISE_TEXT.split()
    assert all(bits is not None and math.isfinite(bits) and bits > 0 for _, bits in scored), scored
    row["surprise"] = "yes"


def _guesses_fit_where_the_mask_stands(model: str, tokenizer) -> None:
    """Masks at the start, the middle and the end, before punctuation and glued to a word: each filled sentence is
    spaced as written, and where the pieces mark word starts, a guess after a space begins a word (no `##ing` or
    `ing` alone) and one glued to a word continues it."""
    from mlm_core.models.words import marks_word_starts, starts_word

    m, marked = tokenizer.mask_token, marks_word_starts(tokenizer)
    starts = starts_word(tokenizer, len(tokenizer))
    cases = [
        (f"{m} function returns a list.", None, ""),
        (f"The {m} returns a list.", True, "The "),
        (f"The function returns {m}", True, "The function returns "),
        (f"The function returns {m}.", True, "The function returns "),
        (f"The function{m} returns a list.", False, "The function"),
    ]
    for text, begins_word, before in cases:
        results = fill_mask(model, text, top_k=3)
        for guess in results[0]:
            sentence = filled_sequence(text, results, 0, guess, m)
            word = guess["word"]
            assert sentence.startswith(before + word) and "  " not in sentence, (text, sentence)
            assert word.lower() in guess["sequence"].lower(), (word, guess["sequence"])  # as the decoder writes it
            if marked:  # the decoder's spacing agrees with the vocabulary's word-start marks
                assert guess["joins"] != bool(starts[guess["token"]]), (text, guess["token_str"])
                if begins_word is not None:
                    assert bool(starts[guess["token"]]) == begins_word, (text, guess["token_str"])


def family_table(outcomes: dict[str, dict[str, str]]) -> str:
    """docs/MODEL_FAMILIES.md from the outcomes of the parametrized test."""
    import transformers

    lines = [
        "# Masked-LM families",
        "",
        f"Written by `tests/test_model_families.py` (transformers {transformers.__version__}): each family in",
        "transformers' masked-LM mapping, as a tiny random-weight model with a tokenizer of its kind, trained for",
        "two steps with whole-word masking, then asked to fill a mask and to score each word's surprise (a text",
        "with accents, Chinese and an emoji). A refused family is refused before training, with the sentence",
        "shown.",
        "",
        "| family | model class | tokenizer | train | fill-mask | surprise |",
        "|---|---|---|---|---|---|",
    ]
    for family, row in outcomes.items():
        if "refused" in row:
            cells = [f"refused: {row['refused']}", "", ""]
        else:
            cells = [row.get(what, "**fails**") for what in ("train", "fill-mask", "surprise")]
        lines.append(f"| {family} | {row['class']} | {row['tokenizer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def test_family_table_in_docs_is_this_run():
    if set(OUTCOMES) != set(FAMILIES):
        pytest.skip("only part of the families ran")
    table = family_table(OUTCOMES)
    if os.environ.get("MLM_STUDIO_WRITE_DOCS") == "1":
        TABLE.write_text(table)
    assert TABLE.read_text() == table, "the families' outcomes changed: run with MLM_STUDIO_WRITE_DOCS=1"

"""`python -m starter` end to end on a small slice of its corpus: weights, examples from the default run, model card."""

import json

import pytest

from mlm_core.models.scratch import Shape
from mlm_core.models.starter import default_examples
from mlm_core.training.probes import KNOWN_RANK
from starter import docstring_corpus, everyday_corpus
from starter import recipe as starter_recipe
from starter.__main__ import main


@pytest.mark.slow
def test_build_starter_writes_a_model_its_examples_and_a_card_with_the_default_runs_figures(
    tmp_path, monkeypatch, capsys
):
    records = list(docstring_corpus.pretraining_records()[:300]) + everyday_corpus.everyday_records()[:100]
    monkeypatch.setattr(starter_recipe, "corpus_records", lambda: records)
    monkeypatch.setattr(starter_recipe, "SHAPE", Shape(hidden=32, layers=1, heads=2, intermediate=64, max_length=128))
    monkeypatch.setattr(starter_recipe, "VOCAB_SIZE", 1000)
    monkeypatch.setattr(starter_recipe, "DEFAULT_RUN", {**starter_recipe.DEFAULT_RUN, "max_steps": 4})
    out = tmp_path / "starter"
    assert main(["--output", str(out), "--epochs", "1"]) == 0
    assert "default run takes the language reference from" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "tokenizer.json", "examples.json", "build.json", "README.md"} <= names
    examples = json.loads((out / "examples.json").read_text())
    assert examples and all("<mask>" in e["text"] and e["rank_before"] > KNOWN_RANK for e in examples)
    card = (out / "README.md").read_text()
    assert "| starter |" in card and examples[0]["answer"] in card and f"{len(records):,} records" in card
    assert "(`dict-gcide`): definitions and their quotations (GPL-2.0-or-later): 100 records" in card
    assert "Python docstrings (the licences of Python and of those libraries): 300 records" in card
    assert "of the running words of a page of everyday" in card
    assert "&lt;mask&gt;" in card and "<mask>" not in card.split("## The default run")[1]  # shown, not an HTML tag
    assert default_examples(out) == examples


def test_the_built_in_starter_knows_everyday_words_and_fits_a_space():
    from mlm_core.models.loading import load_tokenizer
    from mlm_core.runs.model_sources import STARTER_DIR
    from starter.everyday_corpus import EVERYDAY_SAMPLE

    share = starter_recipe.whole_word_share(load_tokenizer("starter"), EVERYDAY_SAMPLE.read_text("utf-8"))
    assert share >= 0.85, f"{share:.1%} of the running words of everyday prose are one token"
    build = json.loads((STARTER_DIR / "build.json").read_text())
    assert build["everyday_whole_share"] == pytest.approx(share)  # the card's figure is this one
    sizes = {p.name: p.stat().st_size for p in STARTER_DIR.iterdir() if p.is_file()}
    assert sum(sizes.values()) <= 25e6 and max(sizes.values()) < 10e6, sizes  # a Space needs LFS at 10 MB


def test_the_recipe_prints_its_help_and_the_engine_cli_no_longer_has_it(capsys):
    from mlm_core.cli.commands import main as engine_main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "usage: python -m starter" in out and "--work-dir" in out
    with pytest.raises(SystemExit) as exit_:
        engine_main(["build-starter"])
    assert exit_.value.code == 2

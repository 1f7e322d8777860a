"""`build-starter` end to end on a small slice of its corpus: weights, examples from the default run, model card."""

import json

import pytest

from mlm_core.cli.commands import main
from mlm_core.data import builtin_corpus, everyday_corpus
from mlm_core.models.scratch import Shape
from mlm_core.models.starter import default_examples
from mlm_core.training import starter_recipe
from mlm_core.training.probes import KNOWN_RANK


@pytest.mark.slow
def test_build_starter_writes_a_model_its_examples_and_a_card_with_the_default_runs_figures(
        tmp_path, monkeypatch, capsys):
    records = list(builtin_corpus.pretraining_records()[:300]) + everyday_corpus.everyday_records()[:100]
    monkeypatch.setattr(starter_recipe, "corpus_records", lambda: records)
    monkeypatch.setattr(starter_recipe, "SHAPE", Shape(hidden=32, layers=1, heads=2, intermediate=64, max_length=128))
    monkeypatch.setattr(starter_recipe, "VOCAB_SIZE", 1000)
    monkeypatch.setattr(starter_recipe, "DEFAULT_RUN", {**starter_recipe.DEFAULT_RUN, "max_steps": 4})
    out = tmp_path / "starter"
    assert main(["build-starter", "--output", str(out), "--epochs", "1"]) == 0
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
    assert default_examples(out) == examples

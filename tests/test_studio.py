"""The pieces behind the page: the form, dashboard text, figures (one run and several), preview, probes, export."""

from __future__ import annotations

import zipfile

import pytest

from mlm_core.events import Done, Error, Eval, Probe, Step
from mlm_core.export import model_card, push_run, zip_run
from mlm_core.preflight import preview
from mlm_core.probes import suggest_probes
from mlm_core.rundir import RunDir
from mlm_core.training import train
from studio import board, figures
from studio.form import config_from
from studio.runs_tab import settings_table
from studio.text import markdown_escaped, plain

from .conftest import tiny_config


def test_the_form_is_keyed_by_field_names_in_any_order_and_any_type_is_refused_in_words(tmp_path):
    values = {"epochs": 2.0, "model": "starter", "dataset": "builtin", "block_size": 64, "max_steps": 0,
              "slice": "", "text_column": "", "whole_word_masking": True}
    config = config_from(dict(reversed(list(values.items()))), output_dir=str(tmp_path / "x"))
    assert (config.epochs, config.block_size, config.max_steps, config.slice, config.text_column) == \
        (2, 64, None, "train", None)
    assert config_from({"dataset": "hub", "hub_dataset": "a/b", "model": "m"}, "o").dataset == "a/b"
    for values, message in [({"model": {"a": 1}}, "model: must be text"), ({"epochs": "3"}, "epochs: must be a number"),
                            ({"epochs": 1.5}, "whole number"), ({"dataset": "/etc"}, "choose the built-in"),
                            ({"whole_word_masking": "yes"}, "true or false")]:
        with pytest.raises(ValueError, match=message):
            config_from({"model": "starter", **values}, "o")
    assert plain("block_size: must be at least 8") == "Block size: must be at least 8"


def test_visitor_text_is_shown_as_text():
    shown = markdown_escaped("[Your session expired](http://x.example) ![t](http://x.example/p.gif) <b>hi</b>")
    assert "<" not in shown and "](" not in shown and "://" not in shown and "![" not in shown
    assert "&lt;b&gt;" in shown


def test_figures_and_text_from_events():
    events = [Eval(step=0, epoch=0, eval_loss=2.0, perplexity=7.39, base=True),
              Step(step=1, total_steps=2, epoch=0.5, loss=2.1, learning_rate=1e-4, tokens=64, tokens_per_s=100.0,
                   elapsed_s=1.0, eta_s=1.0),
              Step(step=2, total_steps=2, epoch=1.0, loss=1.9, learning_rate=0.0, tokens=128, tokens_per_s=100.0,
                   elapsed_s=2.0, eta_s=0.0),
              Eval(step=2, epoch=1, eval_loss=1.5, perplexity=4.48),
              Probe(step=2, text="a <mask>", guesses=[("b", 0.5)])]
    loss = figures.loss_figure(events)
    assert list(loss.data[0].x) == [1, 2] and list(loss.data[1].y) == [2.0, 1.5]
    assert figures.perplexity_figure(events).layout.shapes  # the base reference line
    assert figures.probe_table(events) == [[2, "a <mask>", "b 50%"]]
    assert 'data-progress="100.0"' in board.progress_html(events, "completed")
    assert "stopped at step 2" in board.progress_html(events, "stopped")
    results = {"status": "completed", "base_perplexity": 7.39, "final_perplexity": 4.48, "tokens": 128,
               "seconds": 2.0, "steps": 2}
    text = board.outcome_text(board.results_from([*events, Done(status="completed", results=results)]))
    assert "7.4 → 4.5" in text and "39% less surprised" in text
    assert board.status_line(events, "completed").startswith("✅")
    assert board.status_line([], "queued", position=1).startswith("⏳ Queued, position 1")
    failed = board.status_line([*events, Error("text: put <mask> where the word goes")], "failed")
    assert "put &lt;mask&gt; where" in failed


def test_the_comparison_overlays_two_real_runs_and_lists_the_settings_that_differ(finished_run, tiny_mlm, tmp_path):
    other = RunDir(tmp_path / "other")
    train(tiny_config(tiny_mlm, other.path, max_steps=4, eval_steps=2, learning_rate=3e-3))
    runs = [(run.identity().label, run.events()) for run in (finished_run, other)]
    for axis in figures.X_AXES:
        loss, ppl = figures.compare_figures(runs, axis)
        assert [trace.name for trace in loss.data] == ["done", "other"] == [trace.name for trace in ppl.data]
        assert [len(trace.x) for trace in loss.data] == [6, 4] and [len(trace.y) for trace in ppl.data] == [3, 3]
        assert loss.layout.xaxis.title.text == axis
    tokens = figures.compare_figures(runs, "tokens")[1].data[1].x
    assert tokens[0] == 0 and tokens[1] == 2 * 8 * 64  # two steps of 8 blocks of 64 tokens
    table = settings_table([finished_run, other])
    assert table["headers"] == ["setting", "done", "other"]
    assert {row[0] for row in table["data"]} == {"max_steps", "eval_steps", "learning_rate"}


def test_zip_holds_model_card_and_results_and_is_made_once(finished_run):
    archive = zip_run(finished_run)
    names = zipfile.ZipFile(archive).namelist()
    assert {"done/README.md", "done/model.safetensors", "done/results.json", "done/tokenizer.json"} <= set(names)
    assert zip_run(finished_run) == archive and archive.stat().st_mtime == zip_run(finished_run).stat().st_mtime
    card = model_card(finished_run)
    assert "pipeline_tag: fill-mask" in card and "| base model |" in card and "learning_rate" in card
    assert str(finished_run.path.parent) not in card


def test_push_offline_is_refused_in_plain_words_without_echoing_the_token(finished_run):
    with pytest.raises(ValueError) as error:
        push_run(finished_run, "me/model", token="hf_SECRET123")
    assert "not reachable" in str(error.value) and "hf_SECRET123" not in str(error.value)
    with pytest.raises(ValueError, match="repo_id"):
        push_run(finished_run, "no-slash", token="x")


def test_preview_counts_blocks_masks_an_example_and_measures_steps(tiny_mlm, tmp_path):
    result = preview(tiny_config(tiny_mlm, tmp_path / "p"))
    assert result.train_blocks > 0 and result.eval_blocks > 0 and result.block_size == 64
    assert len(result.example) == 64 and any(label == "masked" for _, label in result.example)
    assert result.seconds_per_step > 0 and result.estimated_seconds >= result.total_steps * result.seconds_per_step
    assert result.memory_bytes > 0
    assert not (tmp_path / "p").exists(), "a preview writes nothing"


def test_probes_come_from_the_data():
    texts = ["The quick brown fox jumps over the lazy dog near the river bank today.", "short."]
    [probe] = suggest_probes(texts, n=3)
    before, after = probe.split("<mask>")
    assert texts[0].startswith(before) and texts[0].endswith(after) and before
    hidden = texts[0][len(before): len(texts[0]) - len(after)]
    assert hidden.isalpha() and len(hidden) >= 4


def test_the_public_rules_refuse_in_words_and_keep_the_owners_token_for_the_owner(finished_run, tmp_path):
    from studio.access import Access, Limits, Visitor

    rules = Access(public=True, limits=Limits(active_runs=1), admin_password="secret", server_token="hf_owner")
    visitor, other = rules.visitor("a" * 32, None), rules.visitor("b" * 32, None)  # two browsers' secrets
    owner = Visitor("c" * 32, admin=True)
    with pytest.raises(ValueError, match="at most 20 probe sentences"):
        rules.check_start(visitor, [], tmp_path, tuple(f"A <mask> {i}." for i in range(21)))
    with pytest.raises(ValueError, match="disk is nearly full"):
        Access(public=True, limits=Limits(min_free_disk_gb=10**9)).check_start(visitor, [], tmp_path, ())
    assert rules.check_start(visitor, [finished_run], tmp_path, ()).steps == 2000  # a budget for visitors
    assert rules.check_start(owner, [], tmp_path, ()).steps is None  # none for the owner
    assert not rules.may_control(other, finished_run) and rules.may_control(owner, finished_run)

    assert rules.push_token(visitor, " hf_typed ", None) == "hf_typed"
    assert rules.push_token(visitor, "", "hf_signed_in") == "hf_signed_in"
    with pytest.raises(ValueError, match="only for its owner"):
        rules.push_token(visitor, "", None)
    assert rules.push_token(owner, "", None) == "hf_owner"

    for _ in range(5):
        with pytest.raises(ValueError, match="not the owner's password"):
            rules.unlock(visitor, "guess")
    with pytest.raises(ValueError, match="too many wrong passwords"):
        rules.unlock(visitor, "secret")  # even the right one, after five wrong ones
    rules.unlock(other, "secret")
    assert rules.visitor("b" * 32, None).admin and not rules.visitor("a" * 32, None).admin

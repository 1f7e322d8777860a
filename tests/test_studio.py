"""The pieces behind the page: the form, dashboard text, figures (one run and several), preview, probes, export."""

from __future__ import annotations

import shutil
import zipfile

import pytest

from mlm_core.events import Done, Error, Eval, Probe, Step
from mlm_core.models.inference import word_pieces
from mlm_core.models.word_guesses import MAX_PIECES
from mlm_core.runs.export import describe_data, describe_model, model_card, push_run, zip_run
from mlm_core.runs.run_dir import RunDir
from mlm_core.training.loop import train
from mlm_core.training.preflight import preview
from mlm_core.training.probes import STOP_WORDS, ProbeSentence, block_texts, parse_probe, pick_probes
from studio import board, figures
from studio.form import config_from
from studio.runs_tab import COMPARES, settings_table
from studio.text import markdown_escaped, plain

from .conftest import tiny_config


def test_the_form_is_keyed_by_field_names_in_any_order_and_any_type_is_refused_in_words(tmp_path):
    values = {
        "epochs": 2.0,
        "model": "starter",
        "dataset": "builtin",
        "block_size": 64,
        "max_steps": 0,
        "slice": "",
        "text_column": "",
        "whole_word_masking": True,
    }
    config = config_from(dict(reversed(list(values.items()))), output_dir=str(tmp_path / "x"))
    assert (config.epochs, config.block_size, config.max_steps, config.slice, config.text_column) == (
        2,
        64,
        None,
        "train",
        None,
    )
    assert config_from({"dataset": "hub", "hub_dataset": "a/b", "model": "m"}, "o").dataset == "a/b"
    for values, message in [
        ({"model": {"a": 1}}, "model: must be text"),
        ({"epochs": "3"}, "epochs: must be a number"),
        ({"epochs": 1.5}, "whole number"),
        ({"dataset": "/etc"}, "choose the built-in"),
        ({"whole_word_masking": "yes"}, "true or false"),
    ]:
        with pytest.raises(ValueError, match=message):
            config_from({"model": "starter", **values}, "o")
    assert plain("block_size: must be at least 8") == "Block size: must be at least 8"


def test_the_command_line_shown_for_a_form_gives_the_same_settings_back_through_the_cli(tmp_path):
    import shlex

    from mlm_core.cli.commands import build_parser, train_config
    from studio.form import command_line

    values = {
        "model": "starter",
        "dataset": "file",
        "dataset_file": str(tmp_path / "my notes.txt"),
        "epochs": 2,
        "block_size": 64,
        "whole_word_masking": True,
        "mlm_probability": 0.2,
        "max_steps": 0,
    }
    config = config_from(values, output_dir="/srv/runs/x-1")
    line = command_line(config)
    assert str(tmp_path) not in line and "/srv" not in line  # no path of the server
    assert line.startswith("python -m mlm_core train ")
    (tmp_path / "my notes.txt").write_text("some text")
    args = build_parser().parse_args(shlex.split(line)[3:])
    again = train_config(args)
    assert again.replace(dataset_file=config.dataset_file, output_dir=config.output_dir) == config


def test_visitor_text_is_shown_as_text():
    import html

    from markdown_it import MarkdownIt

    typed = "[Your session expired](http://x.example) ![t](http://x.example/p.gif) <b>hi</b> l'école & #1 *a*"
    shown = markdown_escaped(typed)
    assert "<" not in shown and "](" not in shown and "://" not in shown and "![" not in shown
    rendered = MarkdownIt("commonmark").render(shown)  # as a Markdown component renders it: one paragraph, no tag
    assert rendered.startswith("<p>") and rendered.count("<") == 2, rendered
    assert html.unescape(rendered.removeprefix("<p>").removesuffix("</p>\n")) == typed  # no "&#x27;" shown


def test_figures_and_text_from_events():
    assert figures.loss_figure([]) is None and figures.perplexity_figure([]) is None  # no empty axes before a run
    events = [
        Eval(step=0, epoch=0, eval_loss=2.0, perplexity=7.39, base=True, top1=0.30, top5=0.50),
        Probe(step=0, text="a <mask> b", guesses=[("x", 0.4)], answer="c", answer_rank=9, answer_probability=0.02),
        Step(
            step=1,
            total_steps=2,
            epoch=0.5,
            loss=2.1,
            learning_rate=1e-4,
            tokens=64,
            tokens_per_s=100.0,
            elapsed_s=1.0,
            eta_s=1.0,
        ),
        Step(
            step=2,
            total_steps=2,
            epoch=1.0,
            loss=1.9,
            learning_rate=0.0,
            tokens=128,
            tokens_per_s=100.0,
            elapsed_s=2.0,
            eta_s=0.0,
        ),
        Eval(step=2, epoch=1, eval_loss=1.5, perplexity=4.48, top1=0.41, top5=0.62),
        Probe(step=2, text="a <mask> b", guesses=[("c", 0.5)], answer="c", answer_rank=1, answer_probability=0.5),
        Probe(step=2, text="typed <mask>", guesses=[("y", 0.25)]),
    ]
    loss = figures.loss_figure(events)
    assert list(loss.data[0].x) == [1, 2] and list(loss.data[2].y) == [2.0, 1.5]
    assert loss.data[1].y == pytest.approx([2.1, (0.8 * 0.42 + 0.2 * 1.9) / (1 - 0.8**2)])  # smoothed, from the start
    assert figures.perplexity_figure(events).layout.shapes  # the base reference line
    accuracy = figures.accuracy_figure(events)
    assert list(accuracy.data[0].y) == [0.30, 0.41] and list(accuracy.data[1].y) == [0.50, 0.62]
    assert figures.probe_table(events) == [
        ["a <mask> b", "c", "#9 (2%) → #1 (50%)", "c 50%"],
        ["typed <mask>", "", "", "y 25%"],
    ]
    assert 'data-progress="100.0"' in board.progress_html(events, "completed")
    assert "stopped at step 2" in board.progress_html(events, "stopped")
    results = {
        "status": "completed",
        "base_perplexity": 7.39,
        "final_perplexity": 4.48,
        "tokens": 128,
        "seconds": 2.0,
        "steps": 2,
        "base_top1": 0.30,
        "final_top1": 0.41,
        "base_top5": 0.5,
        "final_top5": 0.62,
        "accuracy_counts": "hidden words",
        "added_words": ["greenhouse", "<b>bold</b>"],
        "tokens_saved": 0.083,
        "device": "CPU (2 threads)",
    }
    text = board.outcome_text(board.results_from([*events, Done(status="completed", results=results)]))
    assert "7.4 → 4.5" in text and "39% less surprised" in text
    assert "trained on 128 tokens in 2 s on the CPU (2 threads) and is now in the" in text  # where it really ran
    assert "guesses <b>41% of the hidden words</b> of your held-out text right, up from 30%" in text
    assert (
        "2 of your words were added as tokens of their own (greenhouse, &lt;b&gt;bold&lt;/b&gt;); your text "
        "takes 8% fewer tokens. Its perplexities are measured on these tokens, so they do not compare with those of "
        "a run without them."
    ) in text
    legacy = board.outcome_text(
        board.results_from([*events, Done(status="completed", results={**results, "accuracy_counts": None})])
    )  # a run from before words were counted said pieces
    assert "41% of the hidden pieces</b>" in legacy
    stopped = board.outcome_text(
        board.results_from([*events, Done(status="stopped", results={**results, "status": "stopped"})])
    )
    assert "stopped after 2 steps (figures from its last evaluation)" in stopped and "Fill-mask" not in stopped
    assert "five likeliest guesses 62% of the time, up from 50%" in text
    assert board.status_line(events, "completed").startswith("✅")
    assert board.status_line([], "queued", position=1).startswith("⏳ Queued, position 1")
    failed = board.status_line([*events, Error("text: put <mask> where the word goes")], "failed")
    assert "put &lt;mask&gt; where" in failed


@pytest.mark.slow
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
    assert table["data"][0] == [COMPARES, "the first", "yes"]  # other steps and rate: the same held-out tokens
    assert {row[0] for row in table["data"][1:]} == {"max_steps", "eval_steps", "learning_rate"}


def test_runs_whose_held_out_tokens_or_masks_differ_do_not_compare(tmp_path):
    from mlm_core.config import TrainConfig
    from mlm_core.service.workspace import held_out_difference

    base = TrainConfig(model="starter", dataset="builtin", slice="train[:100]")
    assert held_out_difference(base, base.replace(seed=7, learning_rate=1e-3, epochs=5)) is None
    assert held_out_difference(base, base.replace(slice="train[:50]")) == "other data"
    assert held_out_difference(base, base.replace(add_words=50, block_size=64)) == "other tokens, other blocks"
    assert held_out_difference(base, base.replace(mlm_probability=0.3)) == "other hidden words"
    first, copy, edited = (tmp_path / name for name in ("a.txt", "b.txt", "c.txt"))
    first.write_text("the same words"), copy.write_text("the same words"), edited.write_text("other words")
    upload = base.replace(dataset="file", dataset_file=str(first))
    assert held_out_difference(upload, upload.replace(dataset_file=str(copy))) is None  # the same bytes
    assert held_out_difference(upload, upload.replace(dataset_file=str(edited))) == "other data"


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
    words = [word for word, _ in result.example]
    assert 10 < len(words) < 64 and any(label == "hidden" for _, label in result.example)
    assert all(word[:1].isspace() or i == 0 for i, word in enumerate(words))  # whole words, not word pieces
    assert result.seconds_per_step > 0 and result.estimated_seconds >= result.total_steps * result.seconds_per_step
    assert result.memory_bytes > 0
    assert not (tmp_path / "p").exists(), "a preview writes nothing"


def test_probes_are_whole_sentences_with_a_content_word_hidden_and_a_known_answer():
    from mlm_core.models.loading import load_tokenizer

    tokenizer = load_tokenizer("starter")
    sentence = "The interpreter evaluates the expression and stores the resulting value in the variable."
    texts = [f"the middle of a sentence cut by the block. {sentence} Too short."]
    [probe] = pick_probes(texts, tokenizer)
    assert probe.text.replace("<mask>", probe.answer) == sentence and probe.text.count("<mask>") == 1
    assert probe.answer.islower() and probe.answer not in STOP_WORDS
    assert len(word_pieces(tokenizer, probe.answer)) <= MAX_PIECES
    assert parse_probe(probe.line()) == probe and parse_probe("A <mask> b.") == ProbeSentence("A <mask> b.")
    assert block_texts(tokenizer, [tokenizer(texts[0])["input_ids"]]) == [f"{sentence} Too short."]


def test_the_public_rules_refuse_in_words_and_keep_the_owners_token_for_the_owner(finished_run, tmp_path):
    from mlm_core.service.access import Limits, Visitor
    from studio.access import Access

    rules = Access(public=True, limits=Limits(active_runs=1), admin_password="secret", server_token="hf_owner")
    visitor, other = rules.visitor("a" * 32, None), rules.visitor("b" * 32, None)  # two browsers' secrets
    owner = Visitor("c" * 32, admin=True)
    with pytest.raises(ValueError, match="at most 20 probe sentences"):
        rules.check_start(visitor, [], tmp_path, tuple(f"A <mask> {i}." for i in range(21)))
    with pytest.raises(ValueError, match="disk is nearly full"):
        Access(public=True, limits=Limits(min_free_disk_gb=10**9)).check_start(visitor, [], tmp_path, ())
    free = shutil.disk_usage(tmp_path).free
    room = Access(public=True, limits=Limits(min_free_disk_gb=(free - 2**30) / 2**30))  # 1 GiB above the reserve
    room.check_room(tmp_path, "download", 2**29)
    with pytest.raises(ValueError, match="download: the server's disk is nearly full"):
        room.check_room(tmp_path, "download", 2 * 2**30)  # a zip that would eat into the reserve
    assert rules.check_start(visitor, [finished_run], tmp_path, ()).steps == 2000  # a budget for visitors
    assert rules.check_start(owner, [], tmp_path, ()).steps is None  # none for the owner
    assert not rules.may_control(other, finished_run) and rules.may_control(owner, finished_run)

    assert rules.push_token(visitor, " hf_typed ", None) == "hf_typed"
    assert rules.push_token(visitor, "", "hf_signed_in") == "hf_signed_in"
    with pytest.raises(ValueError, match="only for its owner"):
        rules.push_token(visitor, "", None)
    assert rules.push_token(owner, "", None) == "hf_owner"

    rules.unlock(other, "secret")
    assert rules.visitor("b" * 32, None).admin and not rules.visitor("a" * 32, None).admin  # that browser only


def _request(address: str, proxy: str = "10.255.0.1"):
    """A request as Gradio hands it to a handler, from `address` through one proxy (which adds the header)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        headers={"x-forwarded-for": address}, client=SimpleNamespace(host=proxy), session_hash=None, username=None
    )


def test_limits_count_the_address_and_the_account_not_the_secret_a_script_sends(tiny_mlm, tmp_path, capsys):
    import secrets

    from mlm_core.queue import RunQueue
    from mlm_core.runs.records import RunIdentity
    from mlm_core.service.access import UNLOCK_TRIES_TOTAL, Limits
    from studio.access import Access

    rules = Access(public=True, limits=Limits(active_runs=1, queued_runs=2), admin_password="secret", trusted_proxies=1)
    fresh = lambda address: rules.visitor(secrets.token_hex(16), _request(address))  # noqa: E731
    for _ in range(5):
        with pytest.raises(ValueError, match="not the owner's password"):
            rules.unlock(fresh("10.0.0.1"), "guess")
    for _ in range(55):  # a new browser secret each time: still one address
        with pytest.raises(ValueError, match="too many wrong passwords from your address"):
            rules.unlock(fresh("10.0.0.1"), "guess")
    with pytest.raises(ValueError, match="from your address"):
        rules.unlock(fresh("10.0.0.1"), "secret")
    spoofed = rules.visitor(secrets.token_hex(16), _request("1.2.3.4, 10.0.0.1"))  # the client's own header first
    with pytest.raises(ValueError, match="from your address"):
        rules.unlock(spoofed, "guess")
    behind_no_proxy = Access(public=True, trusted_proxies=1)  # the header the setting promises never comes
    assert behind_no_proxy.address_key({}, "10.8.0.1") != behind_no_proxy.address_key({}, "10.8.0.2")
    assert capsys.readouterr().err.count("MLM_STUDIO_TRUSTED_PROXIES promises") == 1  # said once, no address in it
    owner = secrets.token_hex(16)
    rules.unlock(rules.visitor(owner, _request("10.9.0.1")), "secret")  # from elsewhere, the owner still can
    assert rules.visitor(owner, _request("10.9.0.2")).admin
    for i in range(UNLOCK_TRIES_TOTAL - 5):  # many addresses: the total cap
        with pytest.raises(ValueError, match="not the owner's password"):
            rules.unlock(fresh(f"10.1.0.{i}"), "guess")
    with pytest.raises(ValueError, match="tried here lately"):
        rules.unlock(fresh("10.2.0.1"), "secret")

    queue = RunQueue(tmp_path / "runs")  # not started: submitted runs stay queued
    first = fresh("10.3.0.1")
    queue.submit(tiny_config(tiny_mlm, tmp_path / "runs" / "a"), RunIdentity(owner=first.key, address=first.address))
    with pytest.raises(ValueError, match="holds a run waiting in the queue"):  # a clash never overwrites it
        queue.submit(tiny_config(tiny_mlm, tmp_path / "runs" / "a"), RunIdentity(owner="someone else"))
    assert queue.waiting()[0].identity().owner == first.key
    with pytest.raises(ValueError, match="you already have 1 run"):
        rules.check_start(fresh("10.3.0.1"), queue.waiting(), tmp_path)
    assert rules.check_start(fresh("10.3.0.2"), queue.waiting(), tmp_path).steps == 2000
    queue.submit(tiny_config(tiny_mlm, tmp_path / "runs" / "b"), RunIdentity(address=fresh("10.3.0.2").address))
    with pytest.raises(ValueError, match="2 runs are already waiting"):
        rules.check_start(fresh("10.3.0.3"), queue.waiting(), tmp_path)


def test_each_mask_row_shows_the_text_with_that_mask_filled_and_the_others_blank():
    from mlm_core.service import playground

    text = "The event loop repeats the <mask> of [MASK] forever."
    rows = figures.predictions_table(playground.fill(playground.FillRequest("starter", text, top_k=2)).guesses)
    assert [row[:2] for row in rows] == [[1, 1], [1, 2], [2, 1], [2, 2]]
    for mask, _, word, _, sentence in rows:
        blank = "The event loop repeats the {} of {} forever."
        assert sentence == (blank.format(word, "___") if mask == 1 else blank.format("___", word))
    from mlm_core.models.inference import filled_sequence

    piece = {"word": "ing", "sequence": "", "joins": True}  # continues the word before the mask
    assert filled_sequence("A <mask>s here.", [[piece]], 0, piece) == "Aings here."
    word = {"word": "machine", "sequence": "", "joins": False}
    assert filled_sequence("The <mask> met the engine.", [[word]], 0, word) == "The machine met the engine."


def test_the_model_card_names_the_base_model_and_the_data_in_words(finished_run):
    card = model_card(finished_run)
    assert "base_model:" not in card  # a local folder is not a hub model
    assert "the Python language reference that ships with CPython (`pydoc_data.topics`, rows `train[:40]`)" in card
    assert "words guessed right, top guess" in card
    config = finished_run.config()
    assert describe_model("starter").startswith("the MLM Studio starter model")
    assert (
        describe_model("distilbert/distilroberta-base")
        == "[distilbert/distilroberta-base](https://huggingface.co/distilbert/distilroberta-base)"
    )
    assert (
        describe_data(config.replace(dataset="user/data", slice="train"))
        == "the hub dataset [user/data](https://huggingface.co/datasets/user/data) (all rows)"
    )

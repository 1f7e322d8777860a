"""The CLI: the README's offline run, fill-mask output, and bad input as one line with exit code 2."""

import json

import pytest

from mlm_core.cli.commands import main
from mlm_core.config import STARTER_LEARNING_RATE
from mlm_core.runs.run_dir import RunDir

from .conftest import run_cli


@pytest.mark.slow
def test_offline_default_run_finishes_and_lowers_perplexity(starter_run):
    process = starter_run["process"]
    assert process.returncode == 0, process.stderr[-2000:]
    assert starter_run["seconds"] < 600
    results = json.loads((starter_run["dir"] / "results.json").read_text())
    assert results["status"] == "completed" and results["final_perplexity"] < results["base_perplexity"]
    summary = process.stdout.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("completed ") and "perplexity" in summary[0]
    assert "base perplexity" in process.stderr and "step" in process.stderr
    assert "Traceback" not in process.stderr


@pytest.mark.slow
def test_the_default_run_draws_curves_and_evaluating_costs_at_most_15_percent_of_it(starter_run):
    from mlm_core.events import Eval, Step

    run = RunDir(starter_run["dir"])
    results, events = run.results(), run.events()
    evals = [e for e in events if isinstance(e, Eval)]
    spent = sum(e.seconds for e in evals)
    print(
        f"\ndefault run: {results.steps} steps, {len(evals)} evaluations taking {spent:.1f} s of "
        f"{results.seconds:.1f} s ({spent / results.seconds:.1%}); perplexity {results.base_perplexity:.2f} -> "
        f"{results.final_perplexity:.2f}, top-1 {results.base_top1:.1%} -> {results.final_top1:.1%}, top-5 "
        f"{results.base_top5:.1%} -> {results.final_top5:.1%}"
    )
    assert results.steps >= 50 and len(evals) >= 10 and evals[0].base and evals[-1].step == results.steps
    assert spent <= 0.15 * results.seconds
    assert len([e for e in events if isinstance(e, Step)]) == results.steps


@pytest.mark.slow
def test_the_default_run_is_a_visible_win_on_its_fill_mask_examples(starter_run):
    from mlm_core.events import Probe
    from mlm_core.models.starter import default_examples
    from starter.recipe import first_and_last_scores

    run = RunDir(starter_run["dir"])
    results = run.results()
    # Hidden words, right when every hidden piece is: +7.5 points for the everyday starter on its held-out documents
    # (62.5% -> 70.1%); the docstring starter before it gained +9.1 from a lower start. Issue 19's +10 is not reached.
    assert results.accuracy_counts == "hidden words"
    assert results.final_top5 - results.base_top5 >= 0.07, (results.base_top5, results.final_top5)
    first, last = first_and_last_scores([e for e in run.events() if isinstance(e, Probe)])
    # The Fill-mask examples are exactly the held-out sentences this run watched, with their answers.
    assert [(p.text, p.answer) for p in first] == [(e["text"], e["answer"]) for e in default_examples()]
    ranks = [(before.answer_rank, after.answer_rank) for before, after in zip(first, last)]
    print(f"\nFill-mask examples, the right word's rank before -> after the default run: {ranks}")
    assert len(ranks) == 5 and sum(after < before for before, after in ranks) >= 3


def test_the_cli_and_the_app_share_their_defaults(tmp_path):
    from mlm_core.cli.commands import build_parser, train_config
    from studio.form import config_from

    for model in ("starter", "distilbert/distilroberta-base"):
        cli = train_config(
            build_parser().parse_args(["train", "--model", model, "--dataset", "builtin", "--output-dir", "x"])
        )
        app = config_from({"model": model, "dataset": "builtin"}, output_dir="x")
        assert cli == app, (cli, app)
    assert cli.learning_rate == 2e-5
    assert config_from({"model": "starter"}, "x").learning_rate == STARTER_LEARNING_RATE == 1e-3
    file = tmp_path / "notes.txt"
    alone = train_config(
        build_parser().parse_args(["train", "--model", "starter", "--dataset-file", str(file), "--output-dir", "x"])
    )
    assert alone.dataset == "file" and alone.dataset_file == str(file)


@pytest.mark.slow
def test_fill_mask_json_from_a_finished_run(starter_run):
    model = starter_run["dir"] / "model"
    process = run_cli(
        "fill-mask", "--model", str(model), "--top-k", "4", "--json", "The <mask> statement exits a loop."
    )
    assert process.returncode == 0, process.stderr
    filled = json.loads(process.stdout)
    [guesses] = filled["guesses"]
    assert filled["model"] == str(model) and filled["answer_rank"] is None
    assert len(guesses) == 4 and set(guesses[0]) == {"word", "probability", "text"}
    assert guesses[0]["probability"] >= guesses[-1]["probability"] and "<mask>" not in guesses[0]["text"]


@pytest.mark.parametrize(
    "argv, field",
    [
        (["train", "--model", "starter", "--dataset", "builtin", "--block-size", "0"], "block_size"),
        (["train", "--model", "starter", "--dataset", "builtin", "--mlm-probability", "1.5"], "mlm_probability"),
        (["train", "--model", "starter", "--dataset", "builtin", "--slice", "train[abc]"], "slice"),
        (["train", "--model", "starter", "--dataset", "builtin", "--slice", "train[5000:]"], "slice"),
        (["train", "--model", "starter", "--dataset", "builtin", "--text-column", "answers.text"], "text_column"),
        (["train", "--model", "starter", "--dataset", "builtin", "--epochs", "0"], "epochs"),
        (["train", "--model", "starter", "--dataset", "file"], "dataset_file"),
        (["train", "--model", "nobody/no-such-model", "--dataset", "builtin"], "model"),
        (["train", "--model", "starter", "--dataset", "someone/some-dataset"], "dataset"),
        (["fill-mask", "--model", "starter", "There is no mask."], "text"),
        (["fill-mask", "--model", "starter", "--top-k", "0", "A <mask>."], "top_k"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, field, capsys, tmp_path):
    if argv[0] == "train":
        argv = [*argv, "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {field}: "), err
    assert len([line for line in err if line.startswith("error")]) == 1
    assert not (tmp_path / "run").exists(), "a refused run writes nothing"


def test_model_without_mlm_head_through_the_real_cli(tiny_clm):
    process = run_cli("fill-mask", "--model", str(tiny_clm), "The <mask> statement.")
    assert process.returncode == 2
    assert process.stderr.strip().splitlines() == [
        f"error: model: {tiny_clm} is a causal language model; it generates text but cannot fill masks"
    ]
    assert process.stdout == ""


def test_unparsable_option_is_one_line():
    process = run_cli("train", "--model", "starter", "--dataset", "builtin", "--block-size", "abc")
    assert process.returncode == 2
    assert process.stderr.strip() == "error: argument --block-size: invalid int value: 'abc'"


@pytest.mark.parametrize("command", ["train", "fill-mask", "generate", "runs", "info"])
def test_every_command_prints_its_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0 and "usage: python -m mlm_core" in capsys.readouterr().out


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {
            "model": "starter",
            "dataset": "file",
            "dataset_file": "/tmp/my text.txt",
            "whole_word_masking": True,
            "max_steps": 5,
            "learning_rate": 5e-4,
            "text_column": "answers.text",
            "slice": "train[:10%]",
        },
    ],
)
def test_the_command_line_of_a_run_gives_its_settings_back(changes):
    from mlm_core.cli.commands import build_parser, train_config
    from mlm_core.config import TrainConfig, train_arguments, train_command

    config = TrainConfig(output_dir="runs/x", **changes)
    assert train_config(build_parser().parse_args(["train", *train_arguments(config)])) == config
    assert train_command(config).startswith("python -m mlm_core train --model ")


def test_the_cli_prints_each_masks_sentence_as_the_app_shows_it(capsys):
    from mlm_core.cli.commands import main

    text = "The <mask> statement is used to <mask> a loop."
    assert main(["fill-mask", "--model", "starter", "--top-k", "2", text]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "%" in line]
    assert len(lines) == 4 and not any("<s>" in line or "</s>" in line or "<mask>" in line for line in lines)
    assert all(line.endswith("a loop.") and "___" in line for line in lines)


def test_fill_mask_scores_only_the_candidate_words_given(capsys):
    from mlm_core.cli.commands import main

    text = "The <mask> statement exits the innermost loop."
    assert main(["fill-mask", "--model", "starter", "--top-k", "5", "--targets", "break, return,", "--json", text]) == 0
    [guesses] = json.loads(capsys.readouterr().out)["guesses"]
    assert sorted(guess["word"] for guess in guesses) == ["break", "return"]

"""The hub path, end to end, through a stand-in hub on 127.0.0.1 (`HF_ENDPOINT`) that serves tiny models and an
ELI5-shaped dataset under the real ids (tests/hub_content.py): the README's command, the app online (model choices,
Preview, a run, Fill-mask), and a push with a visitor's token. Each process gets a fresh `HF_HOME`."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from .app_client import ended, message, start, train_form, wait_for
from .conftest import PLANTED_TOKEN, ROOT, start_app
from .hub_content import CAUSAL_ID, DATASET_ID, MASKED_ID, SPLIT_ROWS

VISITOR_TOKEN = "hf_VisitorTypedThisToken0123456789"
PARQUET = "/datasets/" + DATASET_ID + "/resolve/{sha}/data/{split}-00000-of-00001.parquet"


def online(hub, home: Path, **more: str) -> dict[str, str]:
    """Environment changes that put a process online against the stand-in, with its own empty hub cache."""
    return {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "", "HF_HOME": str(home), "HF_HUB_DISABLE_TELEMETRY": "1", **more}


def run_cli(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m mlm_core ARGS` with the environment changed as given ("" removes a variable)."""
    base = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "mlm_core", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        env={name: value for name, value in base.items() if value != ""},
    )


def readme_command(model: str) -> list[str]:
    """The arguments of the README's `python -m mlm_core train --model MODEL ...` command, as it writes them."""
    text = (ROOT / "README.md").read_text(encoding="utf-8").replace("\\\n", " ")
    line = re.search(rf"python -m mlm_core train --model {re.escape(model)} [^\n]*", text)
    assert line, f"README.md has no train command for {model}"
    return shlex.split(line.group(0))[3:]


def with_output(args: list[str], folder: Path) -> list[str]:
    """The command with its `--output-dir` pointed at `folder`."""
    at = args.index("--output-dir")
    return [*args[: at + 1], str(folder), *args[at + 2 :]]


def fetched(hub, path: str) -> bool:
    """Whether the stand-in served a GET of `path` (any revision: `{sha}` matches a commit sha)."""
    pattern = re.escape(path).replace(re.escape("{sha}"), "[0-9a-f]{40}")
    return any(method == "GET" and re.fullmatch(pattern, target) for method, target, _ in hub.requests)


def results_of(run: Path) -> dict:
    """A finished run's results.json."""
    return json.loads((run / "results.json").read_text(encoding="utf-8"))


def test_the_readmes_command_fine_tunes_the_hub_model_on_the_hub_dataset(hub, tmp_path):
    args = readme_command(MASKED_ID)
    assert args[args.index("--slice") + 1] == "train[:5000]" and "answers.text" in args
    hub.requests.clear()
    done = run_cli([*with_output(args, tmp_path / "eli5"), "--max-steps", "3"], online(hub, tmp_path / "hf"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"completed .*perplexity [\d,.]+ -> [\d,.]+", done.stdout), done.stdout
    assert f"{SPLIT_ROWS['train']} documents" in done.stderr  # train[:5000] of a 400-row split: all of it
    results = results_of(tmp_path / "eli5")
    assert results["status"] == "completed" and results["steps"] == 3
    assert all(math.isfinite(results[k]) for k in ("base_perplexity", "final_perplexity"))
    assert fetched(hub, f"/{MASKED_ID}/resolve/{{sha}}/model.safetensors")  # through the stand-in, nothing cached
    assert all(fetched(hub, PARQUET.format(sha="{sha}", split=split)) for split in SPLIT_ROWS)


def test_the_readmes_command_with_the_causal_model_streams_the_split(hub, tmp_path):
    """The README's command with its causal model, the split streamed (as a split over MLM_STUDIO_STREAM_MB is):
    only the train split's file is read, and the slice's end past the split's 400 rows counts 400 documents."""
    args = readme_command(MASKED_ID)
    args[args.index("--model") + 1] = CAUSAL_ID
    hub.requests.clear()
    done = run_cli(
        [*with_output(args, tmp_path / "gpt"), "--max-steps", "2"],
        online(hub, tmp_path / "hf", MLM_STUDIO_STREAM_MB="0"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "of 400 (" in done.stderr and "5,000" not in done.stderr, done.stderr[-2000:]
    results = results_of(tmp_path / "gpt")
    assert results["status"] == "completed" and results["task"] == "clm"
    assert math.isfinite(results["final_perplexity"])
    assert fetched(hub, PARQUET.format(sha="{sha}", split="train"))
    assert not any(fetched(hub, PARQUET.format(sha="{sha}", split=split)) for split in ("validation1", "test"))


@pytest.fixture(scope="module")
def app(hub, tmp_path_factory):
    """The app online in public mode, as a Space runs it (the owner's HF_TOKEN planted), its hub the stand-in."""
    runs, work = tmp_path_factory.mktemp("hub-app-runs"), tmp_path_factory.mktemp("hub-app")
    process, url = start_app(runs, work / "app.log", **online(hub, work / "hf", MLM_STUDIO_PUBLIC="1"))
    yield {"url": url, "client": Client(url, verbose=False), "log": work / "app.log", "runs": runs}
    process.terminate()
    process.wait(timeout=30)


def test_the_app_online_offers_the_hub_models(app):
    config = json.loads(urllib.request.urlopen(f"{app['url']}config", timeout=10).read())
    props = [c.get("props", {}) for c in config["components"]]
    model = next(p for p in props if p.get("elem_id") == "model")
    assert {MASKED_ID, CAUSAL_ID} <= {choice[1] for choice in model["choices"]}
    assert any("hub reachable" in str(p.get("value")) for p in props)


def test_preview_reads_the_hub_dataset_slice_and_finds_its_text_column(app):
    summary, example, _ = app["client"].predict(
        **train_form(model=MASKED_ID, dataset="hub", hub_dataset=DATASET_ID, slice="validation1[:20]"),
        api_name="/preview",
    )
    assert "from the text of column answers.text (" in summary, summary
    assert "training and" in summary and "20 rows" in summary, summary
    tokens = example if isinstance(example, list) else example["value"]
    assert any(t.get("class_or_confidence") == "hidden" for t in tokens)


@pytest.mark.parametrize(
    "dataset, rows, words",
    [
        (DATASET_ID, "validation3[:10]", "does not fit 'dany0407/eli5_category' (Unknown split"),
        ("dany0407/no_such_dataset", "train[:10]", "the hub has no dataset called dany0407/no_such_dataset"),
    ],
)
def test_preview_refuses_what_the_hub_does_not_have_in_words(app, dataset, rows, words):
    with pytest.raises(AppError) as refused:
        app["client"].predict(
            **train_form(model=MASKED_ID, dataset="hub", hub_dataset=dataset, slice=rows), api_name="/preview"
        )
    assert words in message(refused.value), message(refused.value)


@pytest.fixture(scope="module")
def hub_run(app) -> str:
    """A run started in the app on the hub model and a slice of the hub dataset, trained to completion."""
    client = app["client"]
    run = start(
        client,
        model=MASKED_ID,
        dataset="hub",
        hub_dataset=DATASET_ID,
        slice="train[:120]",
        text_column="answers.text",
        max_steps=3,
        batch_size=8,
    )
    final = wait_for(client, run, ended, timeout=300)
    assert final["status"] == "completed", final["events"][-3:]
    return run


def test_a_run_on_a_hub_dataset_slice_completes_with_perplexities(app, hub_run):
    runs = json.loads(app["client"].predict(visitor="", api_name="/runs"))
    mine = next(r for r in runs if r["name"] == hub_run)
    assert mine["model"] == MASKED_ID and mine["results"]["steps"] == 3
    assert all(math.isfinite(mine["results"][k]) for k in ("base_perplexity", "final_perplexity"))


def test_fill_mask_on_the_hub_id_and_the_run_returns_guesses(app, hub_run):
    outputs = app["client"].predict(
        "The <mask> statement exits the innermost loop.", 3, MASKED_ID, f"run:{hub_run}", "", api_name="/fill_mask"
    )
    for table in (outputs[1], outputs[4]):
        assert [row[1] for row in table["data"]] == [1, 2, 3]
        assert all(0 < float(row[3]) <= 1 for row in table["data"])


def test_generate_on_the_hub_causal_model(app):
    text = app["client"].predict(CAUSAL_ID, "The break statement", 8, 1.0, 0.95, 0, api_name="/generate")
    assert text.startswith("The break statement") and len(text) > len("The break statement"), text


def test_a_push_uses_the_visitors_token_and_uploads_model_tokenizer_and_card(app, hub, hub_run):
    answer = app["client"].predict(
        visitor="", run_name=hub_run, repo_id="visitor/eli5-tiny", token=VISITOR_TOKEN, private=True, api_name="/push"
    )
    assert "visitor/eli5-tiny" in answer
    [commit] = [c for c in hub.commits if c.repo_id == "visitor/eli5-tiny"]
    assert commit.authorization == f"Bearer {VISITOR_TOKEN}"
    assert not any(PLANTED_TOKEN in auth for auth in hub.tokens()), hub.tokens()  # nothing the app sent had it
    files = hub.files("model", "visitor/eli5-tiny")
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "results.json",
    } <= set(files), sorted(files)
    card = files["README.md"].decode()
    assert f"base_model: {MASKED_ID}" in card and f"datasets/{DATASET_ID}" in card and "perplexity" in card
    assert json.loads(files["config.json"])["model_type"] == "roberta"
    again = app["client"].predict(
        visitor="", run_name=hub_run, repo_id="visitor/eli5-tiny", token=VISITOR_TOKEN, private=True, api_name="/push"
    )
    assert "visitor/eli5-tiny" in again and len(hub.commits) == 1  # the repo exists, and nothing changed


def test_the_cli_pushes_a_run_with_a_token_from_a_file_or_the_environment_and_never_prints_it(
    hub, hub_run, app, tmp_path
):
    run = Path(app["runs"]) / hub_run
    token_file = tmp_path / "token"
    token_file.write_text(VISITOR_TOKEN + "\n")
    pushed = run_cli(["push", str(run), "cli/eli5-tiny", "--token-file", str(token_file)], online(hub, tmp_path / "hf"))
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    assert "cli/eli5-tiny" in pushed.stdout and VISITOR_TOKEN not in pushed.stdout + pushed.stderr
    [commit] = [c for c in hub.commits if c.repo_id == "cli/eli5-tiny"]
    assert commit.authorization == f"Bearer {VISITOR_TOKEN}"
    assert {"config.json", "model.safetensors", "README.md"} <= set(hub.files("model", "cli/eli5-tiny"))

    from_env = run_cli(["push", str(run), "cli/eli5-env"], online(hub, tmp_path / "hf", HF_TOKEN=VISITOR_TOKEN))
    assert from_env.returncode == 0 and VISITOR_TOKEN not in from_env.stdout + from_env.stderr
    none = run_cli(["push", str(run), "cli/eli5-none"], online(hub, tmp_path / "empty-hf", HF_TOKEN=""))
    assert none.returncode == 2 and "token: set HF_TOKEN" in none.stderr

    zipped = run_cli(["export", str(run)], online(hub, tmp_path / "hf"))
    assert zipped.returncode == 0 and zipped.stdout.strip().endswith(f"{hub_run}.zip")
    assert zipfile.ZipFile(zipped.stdout.strip()).testzip() is None

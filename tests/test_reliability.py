"""Bad input, crashes and load against the launched app: every refusal is plain words and the app keeps serving."""

from __future__ import annotations

import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mlm_core.runs import checkpoint as ckpt
from mlm_core.runs.run_dir import RunDir
from mlm_core.system.atomic_files import TMP_PREFIX
from mlm_core.system.process_memory import rss

from .app_client import count, ended, message, raw_call, start, status, train_form, wait_for
from .conftest import UPLOAD_LIMIT_MB, run_cli, start_app

GOOD = "Return the <mask> of the list."


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server["url"], verbose=False)


@pytest.fixture(scope="module")
def reference(client):
    """The starter's answer to a normal fill-mask request, taken while the app is idle and healthy."""
    return _fill(client)


def _fill(client, text=GOOD, top_k=3, model_a="starter", model_b="starter"):
    """The table of model A's guesses."""
    return client.predict(text, top_k, model_a, model_b, api_name="/fill_mask")[1]["data"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_mlm, tiny_clm):
    """Broken uploads and broken models, made once."""
    folder = tmp_path_factory.mktemp("bad-inputs")
    made = {
        "latin1.txt": "Caf\xe9 cr\xe8me and na\xefve text.\n\nMore text.".encode("latin-1"),
        "too-big.txt": b"word " * (UPLOAD_LIMIT_MB * 2**20 // 5 + 2**16),
        "numbers.csv": b"id,score\n1,2\n3,4\n5,6\n",
        "broken.jsonl": b'{"text": "fine line"}\n{"text": "broken\n',
        "short.txt": b"Hello world.",
        "empty.txt": b"",
        "program.exe": b"MZ\x90\x00",
        "not-an-array.json": b'{"a": 1, "b": 2}',
        "deep.jsonl": b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
        "deep.json": b"[" * 100_000 + b"]" * 100_000,
    }
    for name, data in made.items():
        (folder / name).write_bytes(data)
    from transformers import AutoConfig, AutoModel

    encoder = folder / "encoder-only"
    AutoModel.from_config(AutoConfig.from_pretrained(tiny_mlm)).save_pretrained(encoder)
    for file in tiny_mlm.glob("tokenizer*"):
        (encoder / file.name).write_bytes(file.read_bytes())
    return {"dir": folder, "encoder": str(encoder), "causal": str(tiny_clm)}


def _upload(files, name, **changes):
    """Train form for an uploaded file."""
    return train_form(dataset="file", dataset_file=handle_file(str(files["dir"] / name)), **changes)


def _start(**changes):
    """/start's arguments with the form changed."""
    return {"visitor": "", "probes": "", **train_form(**changes)}


def _act(run_name, **more):
    """Arguments of a run action (/resume, /export_zip, /stop...) by an API client without a browser identity."""
    return {"visitor": "", "run_name": run_name, **more}


# (what is tried, endpoint, arguments given the files (a list: positional, a dict: named), the message expected)
BAD_INPUTS = [
    ("empty text", "/fill_mask", lambda f: ["", 3, "starter", "starter"], "type a sentence"),
    ("blank text", "/fill_mask", lambda f: ["   ", 3, "starter", "starter"], "type a sentence"),
    ("text with no mask", "/fill_mask", lambda f: ["No mask here.", 3, "starter", "starter"], "put <mask>"),
    ("10 masks", "/fill_mask", lambda f: [" ".join(["<mask>"] * 10), 3, "starter", "starter"], "10 masks"),
    ("1 MB of text", "/fill_mask", lambda f: ["x" * 2**20 + "<mask>", 3, "starter", "starter"], "too long"),
    (
        "more tokens than the model reads",
        "/fill_mask",
        lambda f: ["word " * 300 + "<mask>", 3, "starter", ""],
        "more than this model reads",
    ),
    (
        "unknown model id offline",
        "/fill_mask",
        lambda f: [GOOD, 3, "nobody/no-such-model", "starter"],
        "nobody/no-such-model",
    ),
    (
        "causal model in the fill-mask tab",
        "/fill_mask",
        lambda f: [GOOD, 3, f["causal"], "starter"],
        "causal language model",
    ),
    ("model without an MLM head", "/fill_mask", lambda f: [GOOD, 3, f["encoder"], "starter"], "no fill-mask head"),
    (
        "fill-mask with a run that does not exist",
        "/fill_mask",
        lambda f: [GOOD, 3, "starter", "run:no-such-run"],
        "there is no run called no-such-run",
    ),
    (
        "masked model in the generate view",
        "/generate",
        lambda f: ["starter", "The if", 20, 1.0, 0.9, 0],
        "fills masks but cannot generate",
    ),
    ("empty prompt", "/generate", lambda f: [f["causal"], "", 20, 1.0, 0.9, 0], "type the beginning"),
    ("block_size 0", "/preview", lambda f: train_form(block_size=0), "Block size: must be at least 8"),
    ("block_size above any model", "/preview", lambda f: train_form(block_size=100_000), "Block size"),
    # The slider itself refuses values outside its range, in Gradio's words (JSON cannot carry NaN: see the CLI test).
    ("mlm_probability 0", "/preview", lambda f: train_form(mlm_probability=0), "less than minimum value 0.05"),
    ("mlm_probability 1", "/preview", lambda f: train_form(mlm_probability=1), "greater than maximum value 0.5"),
    ("epochs 0", "/start", lambda f: _start(epochs=0), "Epochs: must be at least 1"),
    ("epochs above the maximum", "/start", lambda f: _start(epochs=100_000), "Epochs"),
    ("negative learning rate", "/start", lambda f: _start(learning_rate=-1e-4), "Learning rate: must be above 0"),
    ("batch size 0", "/start", lambda f: _start(batch_size=0), "Batch size"),
    ("no base model", "/start", lambda f: _start(model=""), "Base model: give a hub id"),
    (
        "unknown base model offline",
        "/preview",
        lambda f: train_form(model="nobody/no-such-model"),
        "nobody/no-such-model",
    ),
    ("malformed slice", "/preview", lambda f: train_form(slice="train[abc]"), "Rows: "),
    ("slice beyond the data", "/preview", lambda f: train_form(slice="train[5000:]"), "leaves no rows"),
    ("a split the data lacks", "/preview", lambda f: train_form(slice="test[:10]"), "one split"),
    (
        "hub dataset offline",
        "/preview",
        lambda f: train_form(dataset="hub", hub_dataset="dany0407/eli5_category"),
        "not reachable",
    ),
    ("upload source with no file", "/preview", lambda f: train_form(dataset="file"), "Your file: "),
    ("non-UTF-8 upload", "/preview", lambda f: _upload(f, "latin1.txt"), "not UTF-8"),
    ("CSV with no text column", "/preview", lambda f: _upload(f, "numbers.csv"), "no column holds text"),
    ("JSONL with a broken line", "/preview", lambda f: _upload(f, "broken.jsonl"), "line 2 is not valid JSON"),
    ("JSON that is not an array", "/preview", lambda f: _upload(f, "not-an-array.json"), "array of records"),
    ("text shorter than one block", "/preview", lambda f: _upload(f, "short.txt"), "is too short for a run"),
    ("empty upload", "/preview", lambda f: _upload(f, "empty.txt"), "is empty"),
    ("an .exe upload", "/preview", lambda f: _upload(f, "program.exe"), "is not a kind of file this app reads"),
    ("a text column that does not exist", "/preview", lambda f: train_form(text_column="nope"), "no column 'nope'"),
    ("run name with ../ to export", "/export_zip", lambda f: _act("../../etc"), "choose a run by its name"),
    ("no run chosen to export", "/export_zip", lambda f: _act(""), "choose a run by its name"),
    ("run name with ../ to resume", "/resume", lambda f: _act("../x"), "choose a run by its name"),
    ("resume a run that does not exist", "/resume", lambda f: _act("no-such-run"), "there is no run called"),
    (
        "push a run that does not exist",
        "/push",
        lambda f: _act("some-run", repo_id="", token="", private=True),
        "there is no run called some-run",
    ),
    ("stop with nothing running", "/stop", lambda f: _act(""), "nothing is running"),
    ("a model name over 255 characters", "/preview", lambda f: train_form(model="m" * 300), "at most 200 characters"),
    ("a model sent as an object", "/preview", lambda f: train_form(model={"a": 1}), "Base model: must be text"),
    (
        "a model sent as an object to fill-mask",
        "/fill_mask",
        lambda f: [GOOD, 3, {"a": 1}, "starter"],
        "choose a model by its name",
    ),
    ("deeply nested JSONL", "/preview", lambda f: _upload(f, "deep.jsonl"), "nested too deeply"),
    ("deeply nested JSON", "/preview", lambda f: _upload(f, "deep.json"), "nested too deeply"),
    ("a run name ending in a newline", "/export_zip", lambda f: _act("run\n"), "choose a run by its name"),
]


@pytest.mark.parametrize("what, endpoint, arguments, expected", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_in_plain_words_and_the_app_keeps_serving(
    client, reference, files, what, endpoint, arguments, expected
):
    given = arguments(files)
    with pytest.raises(AppError) as refused:
        client.predict(*given, api_name=endpoint) if isinstance(given, list) else client.predict(
            **given, api_name=endpoint
        )
    text = message(refused.value)
    assert expected in text, text
    assert "Traceback" not in text and len(text) < 500, text
    assert _fill(client) == reference  # and the next normal request is answered correctly


@pytest.mark.parametrize(
    "option, value",
    [("--mlm-probability", "nan"), ("--mlm-probability", "inf"), ("--learning-rate", "nan"), ("--block-size", "-5")],
)
def test_non_numbers_through_the_cli_are_one_line_and_exit_2(option, value):
    process = run_cli("train", "--model", "starter", "--dataset", "builtin", option, value, "--output-dir", "unused")
    assert process.returncode == 2 and process.stderr.count("\n") == 1, process.stderr
    assert option.strip("-").replace("-", "_") in process.stderr and "Traceback" not in process.stderr


def test_an_upload_over_the_size_limit_is_refused(client, reference, files):
    with pytest.raises(Exception, match="(?i)size|large|limit") as refused:
        client.predict(**_upload(files, "too-big.txt"), api_name="/preview")
    print(f"\nupload over the limit: {type(refused.value).__name__}: {refused.value}")
    assert "Traceback" not in str(refused.value)
    assert _fill(client) == reference


def test_a_start_on_bad_data_says_why_leaves_no_run_and_the_next_start_works(client, reference, files, app_server):
    def runs():
        return sorted(path.name for path in app_server["runs"].iterdir() if not path.name.startswith("."))

    before = runs()
    with pytest.raises(AppError, match="line 2 is not valid JSON"):  # Start reads the data before it queues a run
        client.predict(**{**_start(), **_upload(files, "broken.jsonl")}, api_name="/start")
    assert runs() == before
    assert _fill(client) == reference
    run = start(client, epochs=5)
    wait_for(client, run, lambda s: count(s, "step") >= 1, timeout=120)
    client.predict(**_act(run), api_name="/stop")
    assert wait_for(client, run, lambda s: s["status"] == "stopped", timeout=60)["events"][-1]["type"] == "done"


@pytest.mark.slow
def test_load_while_training_concurrent_requests_gapless_events_and_flat_memory(client, reference, app_server):
    run = start(client, epochs=5)
    wait_for(client, run, lambda s: count(s, "step") >= 3, timeout=120)

    clients = [Client(app_server["url"], verbose=False) for _ in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(_fill, clients))
    assert all(answer == reference for answer in answers)
    assert status(client, run)["status"] == "running"  # the 20 requests were served while it trained

    client.predict(**_act(run), api_name="/stop")
    stopped = wait_for(client, run, lambda s: s["status"] == "stopped", timeout=60)
    steps = [e["step"] for e in stopped["events"] if e["type"] == "step"]
    assert steps == list(range(1, len(steps) + 1))  # the stream the page shows has no gap
    logged = [json.loads(line) for line in (app_server["runs"] / run / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if e["type"] == "step"] == steps  # nor has the file

    rss = _rss_mb(app_server["process"].pid)
    for _ in range(100):
        assert _fill(client, model_b="") == reference
    grown = _rss_mb(app_server["process"].pid) - rss
    print(f"\nserver memory across 100 sequential fill-mask requests: {rss:.0f} MB -> {rss + grown:.0f} MB")
    assert grown < 20, f"memory grew by {grown:.0f} MB over 100 requests"


def _rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    now = rss(pid)
    assert now is not None, "no VmRSS"
    return now / 2**20


@pytest.mark.slow
def test_sigkill_mid_run_then_restart_finds_it_interrupted_resumes_it_and_loses_nothing(tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "app.log"
    process, url = start_app(runs, log)
    try:
        client = Client(url, verbose=False)
        model_a = start(client, max_steps=5, slice="train[:30]")
        assert wait_for(client, model_a, ended, timeout=180)["status"] == "completed"
        run_b = start(client, epochs=2, slice="train[:30]")  # a checkpoint at each epoch's end, about 20 steps
        running = wait_for(
            client, run_b, lambda s: count(s, "checkpoint") >= 1 and count(s, "step") >= _saved(s) + 5, timeout=180
        )
        queued = start(client, max_steps=5, slice="train[:30]")  # waiting behind run b when the app dies
        os.kill(process.pid, signal.SIGKILL)  # no chance to clean up
        process.wait(timeout=30)
        saved_at = _saved(running)

        process, url = start_app(runs, log)
        client = Client(url, verbose=False)
        listed = {r["name"]: r for r in json.loads(client.predict(visitor="", api_name="/runs"))}
        assert listed[run_b]["status"] == "interrupted" and listed[run_b]["resumable"]
        assert listed[model_a]["status"] == "completed"
        _assert_nothing_partial_or_corrupt(runs)
        assert ckpt.load_checkpoint(RunDir(runs / run_b).checkpoint())[1]["step"] == saved_at
        assert len(_fill(client, model_a=f"run:{model_a}")) == 3  # the finished run's model loads after the crash

        assert wait_for(client, queued, ended, timeout=180)["status"] == "completed"  # the queue survived
        client.predict(**_act(run_b), api_name="/resume")
        resumed = wait_for(client, run_b, lambda s: ended(s) and count(s, "started") == 2, timeout=180)
        started = [e for e in resumed["events"] if e["type"] == "started"][-1]
        assert started["resumed_from_step"] == saved_at
        assert resumed["status"] == "completed", resumed["events"][-2:]
        assert len(_fill(client, model_a=f"run:{run_b}")) == 3
        _assert_nothing_partial_or_corrupt(runs)
    finally:
        process.kill()
        process.wait(timeout=30)


def _saved(current: dict) -> int:
    """The step of the run's last checkpoint (0 before the first)."""
    return max((e["step"] for e in current["events"] if e["type"] == "checkpoint"), default=0)


def _assert_nothing_partial_or_corrupt(runs: Path) -> None:
    """No temp files of atomic writes, every JSON parses, every events.jsonl line is a whole event."""
    assert not [p for p in runs.rglob("*") if p.name.startswith(TMP_PREFIX)]
    for path in runs.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
    for path in runs.rglob("events.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            assert json.loads(line)["type"]


def test_a_lone_surrogate_in_the_text_is_refused_in_words(client, reference, app_server):
    answer = raw_call(
        app_server["url"], "fill_mask", {"text": "The <mask> \ud800.", "top_k": 3, "model_a": "starter", "model_b": ""}
    )  # gradio_client cannot send one
    assert "not valid text" in answer.get("error", ""), answer
    assert _fill(client) == reference


def test_the_log_holds_no_traceback(app_server):
    log = app_server["log"].read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 200 :][:2000]
    assert "refused:" in log  # Gradio's own refusals (a slider out of range) are logged as one line


_PREVIEW_PROBE = """
import json, resource, sys
from mlm_core.children import preview_in_child
from mlm_core.config import TrainConfig
from mlm_core.system.process_memory import rss
before = rss()
result = preview_in_child(TrainConfig(model="starter", dataset="file", dataset_file=sys.argv[1], max_steps=3,
                                      output_dir=sys.argv[2]))
print(json.dumps({"before": before, "after": rss(), "tokens": result.tokens,
                  "child_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["one line", "one JSON record"])
def test_a_40_mb_document_without_a_break_previews_in_bounded_memory_and_the_app_stays_flat(kind, tmp_path):
    import random
    import subprocess
    import sys

    from .conftest import ROOT

    random.seed(0)
    words = "the gardener waters beans and tomatoes in the greenhouse every warm evening".split()
    line = " ".join(random.choices(words, k=6_500_000))[: 40 * 2**20]
    path = tmp_path / ("long.txt" if kind == "one line" else "long.json")
    path.write_text(line if kind == "one line" else json.dumps([{"text": line}]))
    del line
    done = subprocess.run(
        [sys.executable, "-c", _PREVIEW_PROBE, str(path), str(tmp_path / "run")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    mb = {key: value / 2**20 for key, value in figures.items() if key != "tokens"}
    print(
        f"\n40 MB, {kind}: {figures['tokens']:,} tokens; the preview's process peaked at {mb['child_peak']:.0f} MB; "
        f"the caller went from {mb['before']:.0f} MB to {mb['after']:.0f} MB"
    )
    assert figures["tokens"] > 8_000_000
    assert mb["child_peak"] < 1500  # a 60 MB line took over 22 GB when a document was tokenized whole, 10 MB 3.45 GB
    assert mb["after"] - mb["before"] < 50  # the app's process holds none of it

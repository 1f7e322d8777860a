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

from mlm_core import checkpoint as ckpt

from .app_client import HUB, UPLOAD, count, status, train_form, wait_for
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
    return train_form(source=UPLOAD, upload=handle_file(str(files["dir"] / name)), **changes)


# (what is tried, endpoint, arguments given the files, the message expected)
BAD_INPUTS = [
    ("empty text", "/fill_mask", lambda f: ["", 3, "starter", "starter"], "type a sentence"),
    ("blank text", "/fill_mask", lambda f: ["   ", 3, "starter", "starter"], "type a sentence"),
    ("text with no mask", "/fill_mask", lambda f: ["No mask here.", 3, "starter", "starter"], "put <mask>"),
    ("10 masks", "/fill_mask", lambda f: [" ".join(["<mask>"] * 10), 3, "starter", "starter"], "10 masks"),
    ("1 MB of text", "/fill_mask", lambda f: ["x" * 2**20 + "<mask>", 3, "starter", "starter"], "too long"),
    ("more tokens than the model reads", "/fill_mask", lambda f: ["word " * 300 + "<mask>", 3, "starter", ""],
     "more than this model reads"),
    ("unknown model id offline", "/fill_mask", lambda f: [GOOD, 3, "nobody/no-such-model", "starter"],
     "nobody/no-such-model"),
    ("causal model in the fill-mask tab", "/fill_mask", lambda f: [GOOD, 3, f["causal"], "starter"],
     "causal language model"),
    ("model without an MLM head", "/fill_mask", lambda f: [GOOD, 3, f["encoder"], "starter"], "no fill-mask head"),
    ("fill-mask before any run exists", "/fill_mask", lambda f: [GOOD, 3, "starter", "runs/no-such-run/model"],
     "no-such-run"),
    ("masked model in the generate view", "/generate", lambda f: ["starter", "The if", 20, 1.0, 0.9, 0],
     "fills masks but cannot generate"),
    ("empty prompt", "/generate", lambda f: [f["causal"], "", 20, 1.0, 0.9, 0], "type the beginning"),
    ("block_size 0", "/preview", lambda f: train_form(block_size=0), "block_size"),
    ("block_size above any model", "/preview", lambda f: train_form(block_size=100_000), "block_size"),
    # The slider itself refuses values outside its range, in Gradio's words (JSON cannot carry NaN: see the CLI test).
    ("mlm_probability 0", "/preview", lambda f: train_form(mlm_probability=0), "less than minimum value 0.05"),
    ("mlm_probability 1", "/preview", lambda f: train_form(mlm_probability=1), "greater than maximum value 0.5"),
    ("epochs 0", "/start", lambda f: ["", *train_form(epochs=0)], "epochs"),
    ("epochs above the maximum", "/start", lambda f: ["", *train_form(epochs=100_000)], "epochs"),
    ("negative learning rate", "/start", lambda f: ["", *train_form(learning_rate=-1e-4)], "learning_rate"),
    ("batch size 0", "/start", lambda f: ["", *train_form(batch_size=0)], "batch_size"),
    ("no base model", "/start", lambda f: ["", *train_form(model="")], "model"),
    ("unknown base model offline", "/preview", lambda f: train_form(model="nobody/no-such-model"),
     "nobody/no-such-model"),
    ("malformed slice", "/preview", lambda f: train_form(slice="train[abc]"), "slice"),
    ("slice beyond the data", "/preview", lambda f: train_form(slice="train[5000:]"), "leaves no rows"),
    ("a split the data lacks", "/preview", lambda f: train_form(slice="test[:10]"), "one split"),
    ("hub dataset offline", "/preview", lambda f: train_form(source=HUB, hub_id="dany0407/eli5_category"),
     "not reachable"),
    ("upload source with no file", "/preview", lambda f: train_form(source=UPLOAD), "dataset_file"),
    ("non-UTF-8 upload", "/preview", lambda f: _upload(f, "latin1.txt"), "not UTF-8"),
    ("CSV with no text column", "/preview", lambda f: _upload(f, "numbers.csv"), "no column holds text"),
    ("JSONL with a broken line", "/preview", lambda f: _upload(f, "broken.jsonl"), "line 2 is not valid JSON"),
    ("JSON that is not an array", "/preview", lambda f: _upload(f, "not-an-array.json"), "array of records"),
    ("text shorter than one block", "/preview", lambda f: _upload(f, "short.txt"), "fewer than two blocks"),
    ("empty upload", "/preview", lambda f: _upload(f, "empty.txt"), "is empty"),
    ("an .exe upload", "/preview", lambda f: _upload(f, "program.exe"), "Invalid file type"),
    ("a text column that does not exist", "/preview", lambda f: train_form(column="nope"), "no column 'nope'"),
    ("run name with ../ to export", "/export_zip", lambda f: ["../../etc"], "not a valid run name"),
    ("no run chosen to export", "/export_zip", lambda f: [""], "not a valid run name"),
    ("run name with ../ to resume", "/resume", lambda f: ["../x"], "not a valid run name"),
    ("resume a run that does not exist", "/resume", lambda f: ["no-such-run"], "not a stopped or interrupted"),
    ("push with no repository", "/push", lambda f: ["some-run", "", "", True], "repo_id: use the form"),
    ("stop with nothing running", "/stop", lambda f: [], "Nothing is running"),
]


@pytest.mark.parametrize("what, endpoint, arguments, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_in_plain_words_and_the_app_keeps_serving(client, reference, files, what, endpoint,
                                                                       arguments, message):
    with pytest.raises(AppError) as refused:
        client.predict(*arguments(files), api_name=endpoint)
    text = str(refused.value)
    assert message in text, text
    assert "Traceback" not in text and len(text) < 500, text
    assert _fill(client) == reference  # and the next normal request is answered correctly


@pytest.mark.parametrize("option, value", [("--mlm-probability", "nan"), ("--mlm-probability", "inf"),
                                           ("--learning-rate", "nan"), ("--block-size", "-5")])
def test_non_numbers_through_the_cli_are_one_line_and_exit_2(option, value):
    process = run_cli("train", "--model", "starter", "--dataset", "builtin", option, value, "--output-dir", "unused")
    assert process.returncode == 2 and process.stderr.count("\n") == 1, process.stderr
    assert option.strip("-").replace("-", "_") in process.stderr and "Traceback" not in process.stderr


def test_an_upload_over_the_size_limit_is_refused(client, reference, files):
    with pytest.raises(Exception, match="(?i)size|large|limit") as refused:
        client.predict(*_upload(files, "too-big.txt"), api_name="/preview")
    print(f"\nupload over the limit: {type(refused.value).__name__}: {refused.value}")
    assert "Traceback" not in str(refused.value)
    assert _fill(client) == reference


def test_a_run_that_fails_after_start_says_why_and_the_next_start_works(client, reference, files):
    client.predict("", *_upload(files, "broken.jsonl"), api_name="/start")  # the form is fine; the data is not
    failed = wait_for(client, lambda s: s["status"] in {"failed", "completed"}, timeout=60)
    assert failed["status"] == "failed" and "line 2 is not valid JSON" in failed["events"][-1]["message"]
    assert _fill(client) == reference
    client.predict("", *train_form(epochs=5), api_name="/start")
    wait_for(client, lambda s: count(s, "step") >= 1, timeout=120)
    client.predict(api_name="/stop")
    assert wait_for(client, lambda s: s["status"] == "stopped", timeout=60)["events"][-1]["type"] == "done"


def test_load_while_training_concurrent_requests_gapless_events_and_flat_memory(client, reference, app_server):
    client.predict("", *train_form(epochs=5), api_name="/start")
    wait_for(client, lambda s: count(s, "step") >= 3, timeout=120)
    with pytest.raises(AppError, match="A run is in progress"):  # a second Start while a run is active
        client.predict("", *train_form(), api_name="/start")

    clients = [Client(app_server["url"], verbose=False) for _ in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(_fill, clients))
    assert all(answer == reference for answer in answers)
    during = status(client)
    assert during["status"] == "running"  # the 20 requests were served while it trained

    client.predict(api_name="/stop")
    stopped = wait_for(client, lambda s: s["status"] == "stopped", timeout=60)
    steps = [e["step"] for e in stopped["events"] if e["type"] == "step"]
    assert steps == list(range(1, len(steps) + 1))  # the stream the page shows has no gap
    logged = [json.loads(line) for line in (Path(stopped["run_dir"]) / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if e["type"] == "step"] == steps  # nor has the file

    rss = _rss_mb(app_server["process"].pid)
    for _ in range(200):
        assert _fill(client) == reference
    grown = _rss_mb(app_server["process"].pid) - rss
    print(f"\nserver memory across 200 sequential fill-mask requests: {rss:.0f} MB -> {rss + grown:.0f} MB")
    assert grown < 40, f"memory grew by {grown:.0f} MB over 200 requests"


def _rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_sigkill_mid_run_then_restart_finds_it_interrupted_resumes_it_and_loses_nothing(tmp_path):
    runs, log = tmp_path / "runs", tmp_path / "app.log"
    process, url = start_app(runs, log)
    try:
        client = Client(url, verbose=False)
        client.predict("", *train_form(epochs=1), api_name="/start")
        finished = wait_for(client, lambda s: s["status"] in {"completed", "failed"}, timeout=180)
        model_a = finished["events"][-1]["results"]["model_dir"]
        client.predict("", *train_form(epochs=2), api_name="/start")
        running = wait_for(client, lambda s: count(s, "checkpoint") >= 1 and count(s, "step") >= _saved(s) + 5,
                           timeout=180)
        os.kill(process.pid, signal.SIGKILL)  # no chance to clean up
        process.wait(timeout=30)
        run_b, saved_at = Path(running["run_dir"]), _saved(running)

        process, url = start_app(runs, log)
        client = Client(url, verbose=False)
        listed = {r["name"]: r for r in json.loads(client.predict(api_name="/runs"))}
        assert listed[run_b.name]["status"] == "interrupted" and listed[run_b.name]["resumable"]
        assert listed[Path(model_a).parent.name]["status"] == "completed"
        _assert_nothing_partial_or_corrupt(runs)
        assert ckpt.load_checkpoint(ckpt.latest_checkpoint(run_b))[1]["step"] == saved_at
        assert len(_fill(client, model_a=model_a)) == 3  # the finished run's model loads after the crash

        client.predict(run_b.name, api_name="/resume")
        resumed = wait_for(client, lambda s: s["status"] in {"completed", "failed"}, timeout=180)
        started = next(e for e in resumed["events"] if e["type"] == "started")
        assert started["resumed_from_step"] == saved_at
        assert resumed["status"] == "completed", resumed["events"][-2:]
        assert len(_fill(client, model_a=resumed["events"][-1]["results"]["model_dir"])) == 3
        _assert_nothing_partial_or_corrupt(runs)
    finally:
        process.kill()
        process.wait(timeout=30)


def _saved(current: dict) -> int:
    """The step of the run's last checkpoint (0 before the first)."""
    return max((e["step"] for e in current["events"] if e["type"] == "checkpoint"), default=0)


def _assert_nothing_partial_or_corrupt(runs: Path) -> None:
    """No temp files of atomic writes, every JSON parses, every events.jsonl line is a whole event."""
    assert not [p for p in runs.rglob("*") if p.name.startswith(".tmp-")]
    for path in runs.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))
    for path in runs.rglob("events.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            assert json.loads(line)["type"]

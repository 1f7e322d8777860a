"""The launched app over HTTP: start a run, queue another behind it, stop the first, watch the second complete,
fill a mask with both; a CLI run in the same runs folder is seen running and holds the queue."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from .app_client import count, ended, message, start, status, train_form, wait_for
from .conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server["url"], verbose=False)


@pytest.mark.slow
def test_start_queue_stop_then_the_queued_run_completes_and_fills_masks(client, app_server):
    probes = "The <mask> statement exits the innermost loop."
    first = start(client, probes, epochs=5)
    streaming = wait_for(client, first, lambda s: count(s, "step") >= 3, timeout=180)
    assert streaming["status"] == "running" and count(streaming, "eval") >= 1  # base perplexity came first

    board = client.predict(
        visitor="", probes=probes, **train_form(epochs=1, eval_steps=6, slice="train[:30]"), api_name="/start"
    )
    second = board[0]
    assert "Queued, position 1" in board[1]
    assert status(client, second)["status"] == "queued" and status(client, second)["position"] == 1
    listed = run_cli("runs", "--root", str(app_server["runs"]))
    assert f"{first} " in listed.stdout and "running" in listed.stdout.split(first)[1].splitlines()[0]
    assert "queued" in listed.stdout.split(second)[1].splitlines()[0]
    with pytest.raises(AppError, match="is running; only a stopped or interrupted run can resume"):
        client.predict(visitor="", run_name=first, api_name="/resume")

    pressed = time.monotonic()
    client.predict(visitor="", run_name=first, api_name="/stop")
    stopped = wait_for(client, first, lambda s: s["status"] == "stopped", timeout=30, every=0.2)
    assert time.monotonic() - pressed < 5
    done = stopped["events"][-1]
    assert done["type"] == "done" and done["status"] == "stopped" and count(stopped, "checkpoint") >= 1

    finished = wait_for(client, second, ended, timeout=300)
    assert finished["status"] == "completed", finished["events"][-2:]
    results = finished["events"][-1]["results"]
    assert results["final_perplexity"] < results["base_perplexity"]
    probe_steps = {e["step"] for e in finished["events"] if e["type"] == "probe"}
    eval_steps = {e["step"] for e in finished["events"] if e["type"] == "eval"}
    assert probe_steps == eval_steps and len(probe_steps) >= 3  # the probe is re-scored at every evaluation

    plot_a, table_a, note_a, plot_b, table_b, note_b = client.predict(
        "The <mask> statement exits the innermost loop.", 3, "starter", f"run:{second}", "break", api_name="/fill_mask"
    )
    for note in (note_a, note_b):  # a rank past 1,000 is said in words (the starter puts "break" past it here)
        assert re.search(r"The right word <b>break</b> is (guess #[\d,]+|not in its top 1,000 words) \(", note), note
    for table in (table_a, table_b):
        rows = table["data"]
        assert len(rows) == 3 and [r[1] for r in rows] == [1, 2, 3]
        assert all(0 < float(r[3]) <= 1 for r in rows)
    assert table_a["data"] != table_b["data"]  # fine-tuning changed the predictions


@pytest.mark.slow
def test_a_cli_run_in_the_apps_folder_is_seen_running_is_not_trained_twice_and_holds_the_queue(client, app_server):
    folder = app_server["runs"] / "from-the-cli"
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlm_core",
            "train",
            "--model",
            "starter",
            "--dataset",
            "builtin",
            "--epochs",
            "20",
            "--output-dir",
            str(folder),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(client, folder.name, lambda s: count(s, "step") >= 1, timeout=180)
        assert status(client, folder.name)["status"] == "running"
        with pytest.raises(AppError) as refused:
            client.predict(visitor="", run_name=folder.name, api_name="/resume")
        assert "is running" in message(refused.value)
        waiting = start(client, max_steps=2)
        time.sleep(3)
        assert status(client, waiting)["status"] == "queued"  # one run at a time on the device
        cli.send_signal(signal.SIGINT)  # Ctrl-C: the CLI stops cleanly and keeps its checkpoint
        assert cli.wait(timeout=60) == 130, cli.stderr.read()
        assert wait_for(client, waiting, ended, timeout=180)["status"] == "completed"
        assert status(client, folder.name)["status"] == "stopped"
    finally:
        cli.kill()


def test_bad_input_is_a_plain_message_and_the_app_keeps_serving(client):
    with pytest.raises(AppError) as refused:
        client.predict("No mask here.", 3, "starter", "starter", api_name="/fill_mask")
    assert "put <mask>" in message(refused.value)
    with pytest.raises(AppError, match="Block size"):
        client.predict(**train_form(block_size=0), api_name="/preview")
    table = client.predict("The <mask> statement.", 2, "starter", "starter", api_name="/fill_mask")[1]
    assert len(table["data"]) == 2


def test_preview_reports_blocks_an_example_and_an_estimate(client):
    summary, example, probes = client.predict(**train_form(), api_name="/preview")
    assert "training and" in summary and "Estimate on CPU" in summary and "GiB" in summary
    assert "from the text of column text (" in summary and probes.count("<mask>") == len(probes.splitlines()) >= 1
    tokens = example if isinstance(example, list) else example["value"]
    assert any(t.get("class_or_confidence") == "hidden" for t in tokens)
    assert all(" => " in line for line in probes.splitlines())  # each picked probe comes with its answer


@pytest.mark.slow
def test_preview_reads_a_nested_upload_and_says_how_many_rows_it_uses(client, tmp_path):
    from mlm_core.data.builtin_corpus import reference_records

    upload = tmp_path / "nested.jsonl"
    upload.write_text(
        "\n".join(json.dumps({"id": i, "meta": {"body": r["text"]}}) for i, r in enumerate(reference_records()[:30])),
        encoding="utf-8",
    )
    summary, _, _ = client.predict(
        **train_form(dataset="file", dataset_file=handle_file(str(upload)), slice="train[:20]"), api_name="/preview"
    )
    assert "column meta.body (" in summary and "20 of 30 rows" in summary


def test_the_surprise_view_colours_every_word_under_both_models(client):
    text = "The break statement exits the innermost loop."
    surprise_a, surprise_b, _ = client.predict(text, "starter", "starter", api_name="/surprise")
    for shown in (surprise_a, surprise_b):
        pieces = shown["value"] if isinstance(shown, dict) else shown
        assert "".join(p["token"] for p in pieces) == text
        assert all(0 < p["class_or_confidence"] <= 1 for p in pieces)


@pytest.mark.slow  # a real run of the default model
def test_the_readmes_python_example_runs_against_the_app(app_server, tmp_path):
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Calling the app from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "example.py"
    script.write_text(code.replace('"http://127.0.0.1:7860/"', repr(app_server["url"])))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    first_row, finished = done.stdout.splitlines()[-2:]  # after gradio_client's "Loaded as API" line
    assert first_row.startswith("[1, 1, ") and "The " in first_row  # mask 1, rank 1, the word, ...
    assert re.search(r" completed \[[\d.]+(, [\d.]+)+\] \[.*'done'\]$", finished), finished  # base, then each eval

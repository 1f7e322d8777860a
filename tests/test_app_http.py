"""The launched app over HTTP: start a run, watch it stream, stop it, run another to completion, fill a mask."""

import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from .app_client import count, status, train_form, wait_for


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server["url"], verbose=False)


def test_start_stream_stop_then_complete_and_fill_mask(client, app_server):
    probes = "The <mask> statement exits the innermost loop."
    client.predict(probes, *train_form(epochs=5), api_name="/start")
    streaming = wait_for(client, lambda s: count(s, "step") >= 3, timeout=180)
    assert streaming["status"] == "running" and count(streaming, "eval") >= 1  # base perplexity came first

    with pytest.raises(AppError, match="A run is in progress"):  # a second Start while running is refused
        client.predict(probes, *train_form(epochs=1), api_name="/start")
    assert status(client)["run_dir"] == streaming["run_dir"]

    pressed = time.monotonic()
    client.predict(api_name="/stop")
    stopped = wait_for(client, lambda s: s["status"] == "stopped", timeout=30, every=0.2)
    assert time.monotonic() - pressed < 5
    done = stopped["events"][-1]
    assert done["type"] == "done" and done["status"] == "stopped"
    assert count(stopped, "checkpoint") >= 1

    started = time.monotonic()
    client.predict(probes, *train_form(epochs=1, eval_steps=10), api_name="/start")
    finished = wait_for(client, lambda s: s["status"] in {"completed", "failed"}, timeout=300)
    assert finished["status"] == "completed", finished["events"][-2:]
    assert time.monotonic() - started < 180  # acceptance 4: a full short run in under 3 minutes
    results = finished["events"][-1]["results"]
    assert results["final_perplexity"] < results["base_perplexity"]
    probe_steps = {e["step"] for e in finished["events"] if e["type"] == "probe"}
    eval_steps = {e["step"] for e in finished["events"] if e["type"] == "eval"}
    assert probe_steps == eval_steps and len(probe_steps) >= 3  # the probe is re-scored at every evaluation

    plot_a, table_a, plot_b, table_b = client.predict(
        "The <mask> statement exits the innermost loop.", 3, "starter", results["model_dir"], api_name="/fill_mask")
    for table in (table_a, table_b):
        rows = table["data"]
        assert len(rows) == 3 and [r[1] for r in rows] == [1, 2, 3]
        assert all(0 < r[3] <= 1 for r in rows)
    assert table_a["data"] != table_b["data"]  # fine-tuning changed the predictions


def test_bad_input_is_a_plain_message_and_the_app_keeps_serving(client):
    with pytest.raises(AppError, match="put <mask>"):
        client.predict("No mask here.", 3, "starter", "starter", api_name="/fill_mask")
    with pytest.raises(AppError, match="block_size"):
        client.predict(*train_form(block_size=0), api_name="/preview")
    _, table, _, _ = client.predict("The <mask> statement.", 2, "starter", "starter", api_name="/fill_mask")
    assert len(table["data"]) == 2


def test_preview_reports_blocks_an_example_and_an_estimate(client):
    summary, example, probes, column = client.predict(*train_form(), api_name="/preview")
    assert "training and" in summary and "Estimate on CPU" in summary and "GiB" in summary
    assert column == "text" and probes.count("<mask>") == len(probes.splitlines()) >= 1
    tokens = example if isinstance(example, list) else example["value"]
    assert any(t.get("class_or_confidence") == "masked" for t in tokens)

"""ZeroGPU through a faithful stand-in of the `spaces` package (tests/zerogpu/spaces): the app started with the
variable a ZeroGPU Space sets answers Fill-mask, Surprise and Generate from GPU calls run in another process, with
their arguments and results pickled both ways, refusals in plain words, a visitor's quota, and a header that names
where training runs."""

from __future__ import annotations

import importlib.util
import json
import os
import time
import urllib.request

import pytest
from gradio_client import Client

from mlm_core.events import Eval, Step
from mlm_core.runs.records import RunIdentity
from mlm_core.runs.run_dir import RunDir
from mlm_core.service import playground
from mlm_core.service.shown import place
from mlm_core.training.loop import train
from studio import lent_gpu

from .app_client import message, raw_call
from .conftest import ROOT, start_app, tiny_config

STANDIN = ROOT / "tests" / "zerogpu"
QUOTA_S = 20  # a fill (15 s asked) or a short generation (10 s) fits; one of 256 tokens (22 s) does not
TEXT = "The <mask> statement exits the innermost loop."


@pytest.fixture(scope="module")
def zero_gpu_app(tmp_path_factory):
    work = tmp_path_factory.mktemp("zerogpu")
    journal = work / "journal.jsonl"
    process, url = start_app(
        work / "runs",
        work / "app.log",
        PYTHONPATH=f"{STANDIN}{os.pathsep}{ROOT}",
        SPACES_ZERO_GPU="true",
        STANDIN_ZEROGPU_JOURNAL=str(journal),
        STANDIN_ZEROGPU_QUOTA_S=str(QUOTA_S),
    )
    yield {"url": url, "process": process, "journal": journal, "log": work / "app.log"}
    process.kill()
    process.wait(timeout=30)


def _calls(journal) -> list[dict]:
    return [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines()]


def _visitor(url: str, name: str) -> Client:
    """A visitor the stand-in charges by the X-IP-Token header the Space's proxy adds."""
    return Client(url, verbose=False, headers={"X-IP-Token": name})


def test_the_playground_answers_from_gpu_calls_in_another_process_as_it_does_here(zero_gpu_app, tiny_clm):
    visitor = _visitor(zero_gpu_app["url"], "ada")
    *_, table, note, _, _, _ = visitor.predict(TEXT, 3, "starter", "", "break", api_name="/fill_mask")
    here = playground.fill(playground.FillRequest("starter", TEXT, 3, "break"))
    assert [row[2] for row in table["data"]] == [guess.word for guess in here.guesses[0]]
    assert [float(row[3]) for row in table["data"]] == pytest.approx(
        [guess.probability for guess in here.guesses[0]], abs=1e-4
    )
    assert place(here.answer_rank, "guess ") in note

    shown, _, _ = visitor.predict("The break statement exits a loop.", "starter", "", api_name="/surprise")
    words = shown["value"] if isinstance(shown, dict) else shown
    assert "".join(word["token"] for word in words) == "The break statement exits a loop."

    request = playground.GenerateRequest(str(tiny_clm), "The break statement", 8, 1.0, 0.95, 0)
    assert visitor.predict(str(tiny_clm), "The break statement", 8, 1.0, 0.95, 0, api_name="/generate") == (
        playground.generate(request)
    )

    calls = _calls(zero_gpu_app["journal"])
    assert [call["task"] for call in calls] == ["fill", "surprise", "generate"]
    for call in calls:
        assert call["outcome"] == "ok" and call["visitor"] == "ada"
        assert call["pid"] != call["app_pid"] == zero_gpu_app["process"].pid  # ran in the worker process
        assert call["sent_bytes"] > 0 and call["received_bytes"] > 0  # both ways pickled
        assert call["asked_s"] >= call["taken_s"]


def test_a_refusal_inside_a_gpu_call_reaches_the_visitor_in_plain_words(zero_gpu_app):
    visitor = _visitor(zero_gpu_app["url"], "bob")
    with pytest.raises(Exception) as refused:
        visitor.predict("There is no mask here.", 3, "starter", "", "", api_name="/fill_mask")
    said = message(refused.value)
    assert "mask" in said and "ZeroGPU worker error" not in said, said
    assert _calls(zero_gpu_app["journal"])[-1]["outcome"] == "error"  # refused inside the call, not before it


def test_a_crafted_call_is_refused_in_words_before_or_inside_the_gpu_call(zero_gpu_app):
    for endpoint, values in (
        ("surprise", {"text": None, "model_a": "starter", "model_b": ""}),  # the duration reads the text first
        ("fill_mask", {"text": ["x"], "top_k": 3, "model_a": "starter", "model_b": "", "answer": ""}),
        ("fill_mask", {"text": "A <mask>.", "top_k": 10**9, "model_a": {"a": 1}, "model_b": "", "answer": ""}),
    ):
        answer = raw_call(zero_gpu_app["url"], endpoint, values)
        said = answer.get("error", "null")
        assert said != "null" and "Traceback" not in said, (endpoint, answer)  # a message, in words
        assert "ZeroGPU worker error" not in said, (endpoint, answer)
    *_, table, _, _, _, _ = _visitor(zero_gpu_app["url"], "dan").predict(
        TEXT, 2, "starter", "", "", api_name="/fill_mask"
    )
    assert len(table["data"]) == 2  # and the app keeps serving


def test_a_call_longer_than_the_quota_left_is_refused_in_zerogpus_words_and_the_app_keeps_serving(
    zero_gpu_app, tiny_clm
):
    visitor = _visitor(zero_gpu_app["url"], "carol")
    with pytest.raises(Exception) as refused:
        visitor.predict(str(tiny_clm), "Once", 256, 1.0, 0.95, 0, api_name="/generate")
    assert "exceeded your ZeroGPU quota (22s requested" in message(refused.value)
    *_, table, _, _, _, _ = visitor.predict(TEXT, 2, "starter", "", "", api_name="/fill_mask")
    assert len(table["data"]) == 2


def test_the_header_says_training_runs_on_the_cpu(zero_gpu_app):
    config = json.loads(urllib.request.urlopen(f"{zero_gpu_app['url']}config", timeout=10).read())
    header = next(
        c["props"]["value"]
        for c in config["components"]
        if str(c.get("props", {}).get("value", "")).startswith("# MLM Studio")
    )
    assert "ZeroGPU for fill-mask, surprise and generation (a GPU lent per call); training on the CPU (" in header


def test_the_app_logs_no_traceback(zero_gpu_app):
    log = zero_gpu_app["log"].read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]


def _standin():
    """The stand-in's module beside the real `spaces` (this process stays as it is: no ZeroGPU variable set)."""
    spec = importlib.util.spec_from_file_location("zerogpu_standin", STANDIN / "spaces" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_run_trained_in_slices_of_gpu_calls_ends_where_an_uninterrupted_run_does(tiny_mlm, tmp_path):
    config = tiny_config(tiny_mlm, tmp_path / "whole", slice="train[:60]")
    whole = train(config)
    sliced = config.replace(output_dir=str(tmp_path / "sliced"))
    RunDir(sliced.output_dir).create(sliced, RunIdentity(source="app", queued_at=time.time()))  # as Start queues it
    gpu_call = _standin()._LentGPU(lent_gpu.train_slice, lent_gpu.slice_seconds)  # forked, pickled, as ZeroGPU

    slices, pace = [], 1.0
    while not slices or slices[-1].status == "stopped":
        slices.append(gpu_call(sliced.output_dir, 8, pace))
        pace = slices[-1].seconds_per_step or pace
    assert [s.status for s in slices] == ["stopped"] * (len(slices) - 1) + ["completed"] and len(slices) >= 3
    assert [s.step for s in slices[:-1]] == [8 * n for n in range(1, len(slices))]

    events = {name: RunDir(tmp_path / name).events() for name in ("whole", "sliced")}
    losses = {name: {e.step: e.loss for e in got if isinstance(e, Step)} for name, got in events.items()}
    assert sorted(losses["sliced"]) == sorted(losses["whole"]) == list(range(1, whole.steps + 1))
    for step, loss in losses["sliced"].items():
        assert loss == pytest.approx(losses["whole"][step], abs=1e-5), step
    final = {name: [e.eval_loss for e in got if isinstance(e, Eval)][-1] for name, got in events.items()}
    assert final["sliced"] == pytest.approx(final["whole"], abs=1e-5)

"""ZeroGPU through a faithful stand-in of the `spaces` package (tests/zerogpu/spaces): the app started with the
variable a ZeroGPU Space sets answers Fill-mask, Surprise and Generate, and trains runs in slices, from GPU calls run
in another process, with their arguments and results pickled both ways, refusals in plain words, a visitor's quota,
and a header that names where the work runs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import threading
import time
import urllib.request

import pytest
from gradio_client import Client

from mlm_core.events import Eval, Step
from mlm_core.queue import CLOSED_PAGE, PROCESS_LOG, RunQueue
from mlm_core.runs.records import FAILED, QUEUED, STOPPED, RunIdentity
from mlm_core.runs.run_dir import RunDir
from mlm_core.service import launch, playground
from mlm_core.service.shown import place
from mlm_core.service.workspace import STOPPING, Workspace
from mlm_core.training.loop import train
from studio import lent_gpu

from .app_client import message, raw_call, start, status
from .conftest import ROOT, start_zero_gpu_app, tiny_config, wait_status

STANDIN = ROOT / "tests" / "zerogpu"
QUOTA_S = 20  # a fill (15 s asked) or a short generation (10 s) fits; one of 256 tokens (22 s) does not
SLICE_S = 4  # a training call: about 2 s of steps, so that the tiny run below takes a few calls
QUOTAS = {"erin": 300, "poor": SLICE_S - 2}  # a visitor who trains a whole run, one whose quota is nearly spent
TEXT = "The <mask> statement exits the innermost loop."


@pytest.fixture(scope="module")
def zero_gpu_app(tmp_path_factory):
    work = tmp_path_factory.mktemp("zerogpu")
    process, url, journal = start_zero_gpu_app(
        work,
        STANDIN_ZEROGPU_QUOTA_S=str(QUOTA_S),
        STANDIN_ZEROGPU_QUOTAS=json.dumps(QUOTAS),
        MLM_STUDIO_GPU_SLICE_S=str(SLICE_S),
    )
    yield {"url": url, "process": process, "journal": journal, "log": work / "app.log", "runs": work / "runs"}
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


def _follow(visitor: Client, run: str) -> dict | None:
    """What the page's follow-up tick does: the run's next slice when it is due; what happened (None: nothing)."""
    answer = visitor.predict(visitor="", run_name=run, api_name="/follow")
    return json.loads(answer) if answer else None


def test_a_run_trains_in_gpu_calls_its_page_makes_and_ends_as_a_whole_run(zero_gpu_app, tiny_mlm, tmp_path):
    visitor = _visitor(zero_gpu_app["url"], "erin")
    before = len(_calls(zero_gpu_app["journal"]))
    name = start(visitor, model=str(tiny_mlm), slice="train[:60]", block_size=64, batch_size=8, learning_rate=1e-3)
    time.sleep(1.0)
    assert status(visitor, name)["status"] == "queued"  # on ZeroGPU nothing trains it but its page's GPU calls

    answers, deadline = [], time.monotonic() + 180
    while not answers or answers[-1]["status"] != "completed":
        assert time.monotonic() < deadline, answers
        answer = _follow(visitor, name)
        if answer is not None:
            assert answer["message"] is None, answer
            answers.append(answer)
    assert len(answers) >= 2 and all(a["status"] == "queued" for a in answers[:-1]), answers  # between calls: queued

    slices = [call for call in _calls(zero_gpu_app["journal"])[before:] if call["task"] == "train_slice"]
    assert len(slices) == len(answers)
    for call in slices:
        assert call["outcome"] == "ok" and call["visitor"] == "erin", call  # charged to the visitor whose page asked
        assert call["pid"] != call["app_pid"] and call["sent_bytes"] > 0 and call["received_bytes"] > 0
        assert call["taken_s"] <= call["asked_s"] == SLICE_S

    run = RunDir(zero_gpu_app["runs"] / name)
    whole = train(run.config().replace(output_dir=str(tmp_path / "whole")))
    losses = [e.loss for e in run.events() if isinstance(e, Step)]
    assert len(losses) == whole.steps == run.results().steps  # each step once: each slice went on where one stopped
    wanted = [e.loss for e in RunDir(tmp_path / "whole").events() if isinstance(e, Step)]
    assert losses == pytest.approx(wanted, abs=1e-5)
    assert run.results().device.startswith("CPU (1 thread)")  # where the worker ran it (the stand-in's CPU)


def test_a_slice_the_quota_refuses_pauses_the_run_in_words_and_it_resumes_later(zero_gpu_app, tiny_mlm):
    poor = _visitor(zero_gpu_app["url"], "poor")
    name = start(poor, model=str(tiny_mlm), slice="train[:20]", block_size=64)
    answer = _follow(poor, name)
    assert answer["status"] == "stopped", answer
    assert f"exceeded your ZeroGPU quota ({SLICE_S}s requested" in answer["message"]
    paused = status(poor, name)["events"][-1]["message"]
    assert paused.startswith("Paused: the GPU call was refused or cut short: You have exceeded your ZeroGPU quota")
    assert _follow(poor, name) is None  # a paused run waits for its owner's Resume; the page asks for nothing

    rich = _visitor(zero_gpu_app["url"], "erin")  # the same page later (a new day's quota)
    rich.predict(visitor="", run_name=name, api_name="/resume")
    while (answer := _follow(rich, name)) is None or answer["status"] == "queued":
        pass
    assert answer["status"] == "completed", answer


def test_the_header_says_where_the_work_runs(zero_gpu_app):
    config = json.loads(urllib.request.urlopen(f"{zero_gpu_app['url']}config", timeout=10).read())
    header = next(
        c["props"]["value"]
        for c in config["components"]
        if str(c.get("props", {}).get("value", "")).startswith("# MLM Studio")
    )
    assert (
        f"ZeroGPU: a GPU lent per call for fill-mask, surprise, generation and training (in calls of {SLICE_S} s "
        "while the run's page is open); Preview measures on the CPU (" in header
    )


def test_the_app_logs_no_traceback(zero_gpu_app):
    log = zero_gpu_app["log"].read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]


def _standin():
    """The stand-in's module beside the real `spaces` (this process stays as it is: no ZeroGPU variable set)."""
    spec = importlib.util.spec_from_file_location("zerogpu_standin", STANDIN / "spaces" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow  # the quick tier trains a run in slices through the app (above)
def test_a_run_trained_in_slices_of_gpu_calls_ends_where_an_uninterrupted_run_does(tiny_mlm, tmp_path):
    config = tiny_config(tiny_mlm, tmp_path / "whole", slice="train[:60]")
    whole = train(config)
    sliced = config.replace(output_dir=str(tmp_path / "sliced"))
    RunDir(sliced.output_dir).create(sliced, RunIdentity(source="app", queued_at=time.time()))  # as Start queues it
    gpu_call = _standin()._LentGPU(lent_gpu.train_slice, lent_gpu.slice_seconds)  # forked, pickled, as ZeroGPU

    slices = []
    while not slices or slices[-1].status == "stopped":
        slices.append(gpu_call(sliced.output_dir, 60, 64))
    assert [s.status for s in slices] == ["stopped"] * (len(slices) - 1) + ["completed"] and len(slices) >= 3
    assert [s.step for s in slices[:-1]] == [64 * n for n in range(1, len(slices))]

    events = {name: RunDir(tmp_path / name).events() for name in ("whole", "sliced")}
    losses = {name: {e.step: e.loss for e in got if isinstance(e, Step)} for name, got in events.items()}
    assert sorted(losses["sliced"]) == sorted(losses["whole"]) == list(range(1, whole.steps + 1))
    for step, loss in losses["sliced"].items():
        assert loss == pytest.approx(losses["whole"][step], abs=1e-5), step
    final = {name: [e.eval_loss for e in got if isinstance(e, Eval)][-1] for name, got in events.items()}
    assert final["sliced"] == pytest.approx(final["whole"], abs=1e-5)


def test_a_lent_queue_trains_nothing_itself_and_pauses_only_a_run_whose_page_was_closed(tiny_mlm, tmp_path):
    queue = RunQueue(tmp_path, lent=True, pause_after_s=1.0).start()
    try:
        first = queue.submit(tiny_config(tiny_mlm, tmp_path / "first"), RunIdentity())
        second = queue.submit(tiny_config(tiny_mlm, tmp_path / "second"), RunIdentity())
        time.sleep(0.3)
        assert first.status() == QUEUED and not (first.path / PROCESS_LOG).exists()  # no child trains it
        assert queue.begin_slice(first) and not queue.begin_slice(second)  # one slice at a time, the queue's head
        deadline = time.monotonic() + 2.0  # longer than pause_after_s: the second run's page is open meanwhile
        while time.monotonic() < deadline:
            queue.followed(second)
            time.sleep(0.2)
        launch.train_slice(str(first.path), steps=3)
        queue.end_slice(first, None, steps_left=False)
        assert second.status() == QUEUED and queue.next_run() == second  # followed while it waited: not paused
        wait_status(second, {STOPPED}, timeout=10)  # its page is closed now: nobody asks for its GPU calls
    finally:
        queue.close()
    assert second.results().message == f"paused: {CLOSED_PAGE}"
    assert second.events()[-1].message == f"Paused: {CLOSED_PAGE}."
    assert second.resumable() and first.results().message is None and queue.next_run() is None


def test_stop_reaches_a_slice_before_and_during_its_gpu_call_and_the_run_stays_stopped(tiny_mlm, tmp_path):
    queue = RunQueue(tmp_path, lent=True)
    studio = Workspace(root=tmp_path, queue=queue)
    run = queue.submit(tiny_config(tiny_mlm, tmp_path / "run", slice="train[:200]"), RunIdentity())
    assert queue.begin_slice(run)  # the call is asked for; ZeroGPU may take a while to start it
    assert studio.stop(run) == STOPPING and queue.stopping(run)  # not cancelled: the call will start
    for refused in (lambda: queue.cancel(run), lambda: studio.delete(run)):
        with pytest.raises(ValueError):
            refused()
    assert not queue.pause(run, "test")
    early = launch.train_slice(str(run.path))
    queue.end_slice(run, None, steps_left=not early.stop_asked)
    assert (early.status, early.step, early.stop_asked) == (STOPPED, 1, True) and not queue.stopping(run)
    assert run.status() == STOPPED  # not queued again

    queue.resume(run)
    assert queue.begin_slice(run)
    done = []
    training = threading.Thread(target=lambda: done.append(launch.train_slice(str(run.path))))
    training.start()
    deadline = time.monotonic() + 60
    while not [e for e in run.events() if isinstance(e, Step) and e.step > 1]:
        assert time.monotonic() < deadline and training.is_alive()
        time.sleep(0.05)
    assert studio.stop(run) == STOPPING  # the page's Stop: a file the slice reads at each step
    training.join(60)
    queue.end_slice(run, None, steps_left=not done[0].stop_asked)
    assert done[0].status == STOPPED and done[0].stop_asked and 1 < done[0].step < run.results().total_steps
    assert run.status() == STOPPED and not queue.stopping(run)


def test_a_run_that_failed_in_its_gpu_call_is_not_paused_over(tiny_mlm, tmp_path):
    queue = RunQueue(tmp_path, lent=True)
    run = queue.submit(tiny_config(tiny_mlm, tmp_path / "run"), RunIdentity())
    launch.train_slice(str(run.path), steps=2)
    run.write_results(dataclasses.replace(run.results(), status=FAILED, message="out of memory"))
    assert not queue.pause(run, "the GPU call was cut short") and run.results().message == "out of memory"

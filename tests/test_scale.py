"""Many visitors, long runs: a run's dashboard and status answer cost the same at step 20 and step 2,000 (its history
thinned to a fixed number of points, its events paged by a cursor), and a page watching a finished run polls less.
The long runs are grown from a short real run's events (`bench.grown_runs`)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import threading
import time

import gradio as gr
import pytest
import torch

from bench.grown_runs import grown_run, many_runs, short_run
from mlm_core.events import Probe, Step
from mlm_core.models import batched
from mlm_core.models.loading import load_for_inference
from mlm_core.models.starter import default_examples
from mlm_core.runs.records import QUEUED, new_run_name
from mlm_core.runs.retention import Retention, expired
from mlm_core.service import history, playground
from mlm_core.service.workspace import Workspace
from studio.access import Access
from studio.form import first_values
from studio.runs_tab import LISTED_RUNS, RunsTab
from studio.train_tab import EVENTS_PER_CALL, IDLE_POLL_S, TrainTab, public_event


@pytest.fixture(scope="module")
def runs(tiny_mlm, tmp_path_factory):
    """The runs folder of a 20-step run and the same grown to 2,000 and 20,000 steps."""
    root = tmp_path_factory.mktemp("grown")
    short = short_run(str(tiny_mlm), tmp_path_factory.mktemp("short") / "short")
    names = {steps: f"20260101-000000-tiny-grown-{steps:08d}" for steps in (20, 2000, 20000)}
    return root, {steps: grown_run(short, root / name, steps) for steps, name in names.items()}


def _tab(root):
    studio = Workspace.open(root)
    with gr.Blocks():
        tab = TrainTab(studio, Access(), gr.BrowserState(""), ["starter"], first_values(False))
    return studio, tab


def test_a_long_runs_curve_is_thinned_to_bucket_means_ending_at_its_last_step(runs):
    _, grown = runs
    events = grown[2000].events()
    shown = history.thinned(events)
    steps, raw = [e for e in shown if isinstance(e, Step)], [e for e in events if isinstance(e, Step)]
    per_point = history.steps_per_point(len(raw))
    assert len(steps) <= history.POINTS and per_point == 10
    assert steps[-1].step == raw[-1].step == 2000 and steps[-1].eta_s == raw[-1].eta_s
    assert steps[3].loss == pytest.approx(sum(e.loss for e in raw[30:40]) / 10) and steps[3].step == 40
    probes = [e for e in shown if isinstance(e, Probe)]
    texts = {e.text for e in probes}
    assert len(probes) == 2 * len(texts)  # first and latest of each sentence
    assert [e.step for e in probes if e.text == next(iter(texts))] == [100, 2000]
    short = [e for e in grown[20].events() if isinstance(e, Step)]
    assert [e for e in history.thinned(grown[20].events()) if isinstance(e, Step)] == short  # every step drawn


def test_the_history_summary_does_not_grow_with_the_run(runs):
    _, grown = runs
    sizes = {steps: len(json.dumps(history.summary(run.events()))) for steps, run in grown.items()}
    assert sizes[20000] < 1.1 * sizes[2000] and sizes[2000] < 20_000, sizes
    summary = history.summary(grown[2000].events())
    assert summary["last_step"]["step"] == 2000 and summary["steps_per_point"] == 10
    assert len(summary["train_loss"]["step"]) == 200 and summary["evaluations"]["base"][0] is True
    assert all(v is None or math.isfinite(v) for v in summary["train_loss"]["loss"])


def test_the_status_api_pages_events_by_cursor_and_an_up_to_date_client_gets_a_small_answer(runs):
    root, grown = runs
    studio, tab = _tab(root)
    try:
        run = grown[2000]
        events, cursor, pages = [], "0", 0
        while True:
            answer = json.loads(tab.status_json(run.name, cursor))
            events += answer["events"]
            cursor, pages = str(answer["cursor"]), pages + 1
            assert len(answer["events"]) <= EVENTS_PER_CALL
            if not answer["more"]:
                break
        assert pages == math.ceil(len(run.events()) / EVENTS_PER_CALL)
        assert "summary" in json.loads(tab.status_json(run.name, "0"))  # for a client that holds nothing yet
        assert "summary" not in answer  # an up-to-date client has the events
        assert events == json.loads(json.dumps([public_event(e) for e in run.events()]))
        sizes = {steps: len(tab.status_json(r.name, str(len(r.events())))) for steps, r in grown.items()}
        assert sizes[20000] < 1.1 * sizes[2000] and sizes[2000] < 15_000, sizes  # what a polling client gets
        assert json.loads(tab.status_json(run.name, "not a number"))["cursor"] == EVENTS_PER_CALL  # from the start
    finally:
        studio.close()


def test_a_refresh_draws_a_long_run_once_for_every_watcher_and_a_finished_run_is_polled_less(runs):
    root, grown = runs
    studio, tab = _tab(root)
    try:
        run = grown[20000]
        first = tab.board(run, Access().identify(""), "")
        loss = first[3]
        assert max(len(trace.x) for trace in loss.data) <= history.POINTS
        second = tab.board(run, Access().identify("another visitor"), "")
        assert second[3] is loss  # drawn once, for both pages
        assert first[10].value == IDLE_POLL_S  # a completed run: the page asks every 5 s, not every second
        assert tab.board(run, Access().identify(""), first[-1]) == [gr.skip()] * 11 + [first[-1]]  # nothing new
    finally:
        studio.close()


def test_concurrent_fill_mask_requests_share_merged_forwards_and_get_what_each_gets_alone():
    texts = [example["text"] for example in default_examples()][:8]
    requests = [playground.FillRequest("starter", text, 5, "") for text in texts]
    alone = [playground.fill(request) for request in requests]
    lm = load_for_inference("starter")[1]
    counter, before = batched.batcher(lm), (batched.batcher(lm).forwards, batched.batcher(lm).calls)
    together: dict[int, playground.Filled] = {}
    start = threading.Barrier(len(requests))

    def ask(number: int) -> None:
        start.wait()
        together[number] = playground.fill(requests[number])

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    forwards, calls = counter.forwards - before[0], counter.calls - before[1]
    assert forwards < calls, (forwards, calls)  # some forwards served several requests
    for number, filled in enumerate(alone):
        merged = together[number]
        assert [g.word for g in merged.guesses[0]] == [g.word for g in filled.guesses[0]], texts[number]
        assert [g.probability for g in merged.guesses[0]] == pytest.approx(
            [g.probability for g in filled.guesses[0]], abs=1e-5
        )


def test_a_forward_that_fails_fails_every_request_merged_into_it_and_the_next_ones_work():
    lm = load_for_inference("starter")[1]
    merged = batched.ForwardBatcher(lm)
    good = torch.tensor([[0, 5, 6, 2]])
    with pytest.raises(IndexError):
        merged.masked_logits(torch.tensor([[0, 10**9, 2]]), torch.tensor([[False, True, False]]))
    assert merged.masked_logits(good, torch.tensor([[False, True, True, False]])).shape == (2, lm.config.vocab_size)


def test_a_thousand_runs_list_and_queue_as_ten_do_and_the_index_follows_the_folder(runs, tmp_path):
    root, grown = runs
    short = grown[20]
    many = many_runs(short, tmp_path / "many", 1000)
    studio = Workspace.open(tmp_path / "many")
    studio.queue.close()  # nothing trains here
    try:
        with gr.Blocks():
            listing = RunsTab(studio, Access(), gr.BrowserState(""), (gr.Tabs(), gr.Textbox()))
        table, choices, _ = listing.listing("")
        assert len(table["value"]) == LISTED_RUNS and table["label"] == f"The newest {LISTED_RUNS} of 1,000 runs"
        assert [row[-1] for row in table["value"]] == [run.name for run in many[::-1][:LISTED_RUNS]]
        newest = many[-1]
        newest.set_identity(dataclasses.replace(newest.identity(), queued_at=time.time()))  # as another process
        studio.index.refresh()
        assert studio.queue.position(newest) == 1 and studio.queue.waiting() == [newest]
        assert studio.queue.next_run() == newest and listing.listing("")[0]["value"][0][1] == QUEUED
        made = grown_run(short, tmp_path / "many" / new_run_name("tiny", "cli"), 20)  # a run the CLI made
        shutil.rmtree(many[0].path)  # and one it deleted
        studio.index.refresh()
        names = [run.name for run in studio.runs()]
        assert len(names) == 1000 and made.name in names and many[0].name not in names
    finally:
        studio.close()


def test_retention_deletes_visitors_oldest_finished_runs_and_keeps_the_owners_and_the_active_ones(runs, tmp_path):
    _, grown = runs
    made = many_runs(grown[20], tmp_path / "kept", 12)  # oldest first
    now = time.time()
    for number, run in enumerate(made):
        run.set_identity(dataclasses.replace(run.identity(), source="app", kept=number == 0))
        ended = now - (10 if number < 6 else 1 / 24) * 86_400
        os.utime(run.results_path, (ended, ended))
    made[1].set_identity(dataclasses.replace(made[1].identity(), queued_at=now))  # waiting: never deleted
    rule = Retention(days=7, runs=4, max_bytes=5 * 10**9)
    gone = expired(made[::-1], rule, now, size_of=lambda run: 10**9)  # each run 1 GB
    assert [run for run, _ in gone] == made[2:9]
    assert {why for _, why in gone} == {
        "it ended more than 7 days ago",
        "4 newer visitors' runs are kept",
        "the runs folder was over 5 GB",
    }
    assert "kept 7 days after they end, 4 of them at most, 5 GB of runs in all" in rule.describe()

    studio = Workspace.open(tmp_path / "kept")
    studio.queue.close()  # the waiting run is not trained here
    studio.retention = Retention(days=7)
    try:
        assert studio.sweep(now) == [run.name for run in made[2:6]]
        assert [run.name for run in studio.runs()] == [run.name for run in made[::-1] if run not in made[2:6]]
        assert not any(run.path.exists() for run in made[2:6])
    finally:
        studio.close()

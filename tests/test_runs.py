"""Runs as first-class objects: one owner of the run folder (status, lock, results), and the queue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mlm_core.events import Checkpoint, Error, Eval, Probe, Started, Step
from mlm_core.queue import RunQueue
from mlm_core.runs.lock import read_lock
from mlm_core.runs.records import Budget, RunIdentity, check_run_name
from mlm_core.runs.run_dir import RunDir, list_runs
from mlm_core.training.loop import train

from .conftest import ROOT, run_cli, wait_status
from .conftest import tiny_config as _config


def _started_at(run: RunDir) -> float:
    """When the run's first training session began."""
    return next(e.time for e in run.events() if isinstance(e, Started))


def _wait_started(run: RunDir, timeout: float = 60) -> None:
    """Wait until the run has its data and model and trains."""
    deadline = time.monotonic() + timeout
    while not any(isinstance(e, Started) for e in run.events()):
        assert time.monotonic() < deadline, f"{run.name} did not start training"
        time.sleep(0.05)


def test_a_queued_run_completes_with_probes_at_every_evaluation(finished_run):
    events = finished_run.events()
    evals = [e.step for e in events if isinstance(e, Eval)]
    probes = [e for e in events if isinstance(e, Probe)]
    assert evals == [0, 3, 6] and [p.step for p in probes] == evals
    assert all(len(p.guesses) == 5 and 0 < p.guesses[0][1] <= 1 for p in probes)
    assert any("skipped" in getattr(e, "message", "") for e in events)  # the probe without a mask
    results = finished_run.results()
    assert results.status == "completed" and results.final_perplexity < results.base_perplexity
    assert finished_run.model_dir() is not None and read_lock(finished_run.path) is None  # released


def test_a_run_folder_loads_with_transformers_pipeline_and_an_older_layout_still_reads(finished_run, tmp_path):
    import shutil

    import torch
    from transformers import AutoModelForMaskedLM, pipeline

    from mlm_core.models.inference import fill_mask, word_starts_at_masks
    from mlm_core.models.word_guesses import first_pieces

    text = "The <mask> statement exits a loop."
    ours = [g["token"] for g in fill_mask(str(finished_run.path), text, top_k=5)[0]]
    pipe = pipeline("fill-mask", model=str(finished_run.path), dtype=torch.float32, device="cpu")
    # ours leaves out what cannot stand as a word there (after a space: a piece that continues a word)
    allowed = first_pieces(pipe.tokenizer, len(pipe.tokenizer), word_starts_at_masks(pipe.tokenizer, text)[0])
    theirs = [g["token"] for g in pipe(text, top_k=30) if allowed[g["token"]]]
    assert theirs[:5] == ours
    assert AutoModelForMaskedLM.from_pretrained(finished_run.path).config.model_type == "roberta"
    assert json.loads((finished_run.path / "run_config.json").read_text())["block_size"] == 64

    old = RunDir(tmp_path / "old-layout")  # settings in config.json, the model in model/ only
    shutil.copytree(finished_run.path, old.path)
    for file in finished_run.model_path.iterdir():
        (old.path / file.name).unlink()
    (old.path / "run_config.json").rename(old.path / "config.json")
    assert old.is_run() and old.status() == "completed" and old.config().block_size == 64
    assert [g["token"] for g in fill_mask(str(old.path), text, top_k=5)[0]] == ours


def test_the_queue_trains_in_order_one_at_a_time_and_a_failure_does_not_stop_it(tiny_mlm, tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"text": "fine"}\n{"text": broken\n', encoding="utf-8")
    queue = RunQueue(tmp_path / "runs").start()
    try:
        long = queue.submit(
            _config(tiny_mlm, tmp_path / "runs" / "a-long", epochs=200, slice="train"), RunIdentity(label="long")
        )
        _wait_started(long)
        broken = queue.submit(
            _config(
                tiny_mlm,
                tmp_path / "runs" / "b-broken",
                dataset="file",
                slice="train",
                dataset_file=str(tmp_path / "broken.jsonl"),
            ),
            RunIdentity(label="broken"),
        )
        short = queue.submit(_config(tiny_mlm, tmp_path / "runs" / "c-short", max_steps=2), RunIdentity())
        cancelled = queue.submit(_config(tiny_mlm, tmp_path / "runs" / "d-cancelled"), RunIdentity())
        assert [queue.position(r) for r in (long, broken, short, cancelled)] == [None, 1, 2, 3]
        assert [r.status() for r in (broken, short, cancelled)] == ["queued"] * 3

        queue.cancel(cancelled)
        assert not cancelled.path.exists() and queue.position(short) == 2
        with pytest.raises(ValueError, match="not waiting in the queue"):
            queue.cancel(long)

        assert queue.stop(long)
        assert wait_status(long, {"stopped"}) == "stopped" and long.resumable()
        assert wait_status(broken, {"failed"}) == "failed"
        assert "line 2 is not valid JSON" in broken.results().message
        assert wait_status(short, {"completed", "failed"}) == "completed"
        assert _started_at(long) < _started_at(short)
        statuses = [r.status() for r in list_runs(tmp_path / "runs")]
        assert statuses.count("running") == 0
    finally:
        queue.close(timeout=60)


def test_queued_runs_survive_a_restart_and_train_in_their_order(tiny_mlm, tmp_path):
    before = RunQueue(tmp_path)  # the app before the restart: it queued two runs and never trained them
    first = before.submit(_config(tiny_mlm, tmp_path / "first", max_steps=2), RunIdentity(label="first"))
    second = before.submit(_config(tiny_mlm, tmp_path / "second", max_steps=2), RunIdentity(label="second"))
    assert [r.status() for r in (first, second)] == ["queued", "queued"]

    after = RunQueue(tmp_path).start()  # a new process on the same runs folder
    try:
        for run in (first, second):
            assert wait_status(run, {"completed", "failed"}) == "completed"
        assert _started_at(first) < _started_at(second)
        assert first.identity().label == "first" and first.identity().queued_at is None
    finally:
        after.close()


def test_a_second_trainer_is_refused_while_the_lock_lives_and_the_cli_lists_the_run_as_running(tiny_mlm, tmp_path):
    queue = RunQueue(tmp_path).start()
    try:
        run = queue.submit(_config(tiny_mlm, tmp_path / "live", epochs=200, slice="train"), RunIdentity())
        wait_status(run, {"running"})
        lock = read_lock(run.path)
        assert lock.pid == queue.current.process.pid != os.getpid() and lock.live  # its own child process

        for extra in ([], ["--resume"]):  # a new run into its folder, or a resume of it, from another process
            process = run_cli(
                "train", "--model", str(tiny_mlm), "--dataset", "builtin", "--output-dir", str(run.path), *extra
            )
            assert process.returncode == 2, process.stderr
            [line] = process.stderr.strip().splitlines()
            assert "is already training (process" in line and "Traceback" not in line, line
        with pytest.raises(ValueError, match="already training"):  # and from this process
            train(run.config(), resume=True)

        listed = run_cli("runs", "--root", str(tmp_path))
        assert listed.returncode == 0 and f"{run.name} " in listed.stdout
        assert listed.stdout.splitlines()[1].split()[1] == "running"
        assert queue.stop(run) and wait_status(run, {"stopped"}) == "stopped"
        assert read_lock(run.path) is None
    finally:
        queue.close()


def test_after_sigkill_the_lock_is_stale_and_the_run_resumes(tiny_mlm, tmp_path):
    folder = tmp_path / "killed"
    args = [
        "--model",
        str(tiny_mlm),
        "--dataset",
        "builtin",
        "--slice",
        "train",
        "--block-size",
        "64",
        "--epochs",
        "50",
        "--save-steps",
        "3",
        "--output-dir",
        str(folder),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "mlm_core", "train", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    run = RunDir(folder)
    deadline = time.monotonic() + 120
    while run.checkpoint() is None:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.1)
    assert run.status() == "running"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)

    lock = read_lock(run.path)
    assert lock is not None and lock.pid == process.pid and not lock.live  # left behind, and known dead
    assert run.status() == "interrupted" and run.resumable()
    saved_at = int(run.checkpoint().name.removeprefix("step-"))
    results = train(run.resume_config(max_steps=saved_at + 2), resume=True)
    assert results.status == "completed" and results.steps == saved_at + 2
    assert run.status() == "completed" and read_lock(run.path) is None
    assert next(e for e in reversed(run.events()) if isinstance(e, Started)).resumed_from_step == saved_at


def test_a_folder_with_files_but_no_run_is_refused_and_left_as_it_was(tiny_mlm, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "results.json").write_text('{"mine": true}')
    (folder / ".tmp-notes").write_text("my own temp file")
    for extra in ([], ["--resume"]):
        process = run_cli(
            "train", "--model", str(tiny_mlm), "--dataset", "builtin", "--output-dir", str(folder), *extra
        )
        assert process.returncode == 2 and process.stderr.count("\n") == 1, process.stderr
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-notes", "results.json"]
    assert json.loads((folder / "results.json").read_text()) == {"mine": True}


def test_stopping_before_the_first_step_leaves_the_folder_reusable(tiny_mlm, tmp_path):
    import threading

    stop = threading.Event()
    stop.set()  # Ctrl-C before the first step
    config = _config(tiny_mlm, tmp_path / "new", max_steps=2)
    results = train(config, stop=stop)
    assert results.status == "stopped" and results.steps == 0
    assert not (tmp_path / "new").exists()
    assert train(config).status == "completed"  # the same command again just works


def test_run_names_and_the_cli_model_of_a_run(finished_run, tiny_mlm, tmp_path):
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 81, "name\n", None, {"a": 1}):
        with pytest.raises(ValueError, match="run:"):
            check_run_name(bad)
    done = run_cli("fill-mask", "--model", str(finished_run.path), "--top-k", "2", "A <mask> statement.")
    assert done.returncode == 0 and len(done.stdout.strip().splitlines()) == 2, done.stderr
    unfinished = tmp_path / "unfinished"
    RunQueue(tmp_path).submit(_config(tiny_mlm, unfinished), RunIdentity())
    refused = run_cli("fill-mask", "--model", str(unfinished), "A <mask> statement.")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: model: run unfinished has not completed (queued), so it has no saved model"


def test_a_budget_stops_a_run_in_minutes_and_the_run_can_resume_only_past_it(tiny_mlm, tmp_path):
    config = _config(tiny_mlm, tmp_path / "budget", epochs=200, slice="train")
    results = train(config, budget=Budget(minutes=0.03))
    assert results.status == "stopped" and 0 < results.steps < results.total_steps
    assert results.message == "it reached the limit of 0.03 minutes a run may train here"
    assert 1.8 <= results.seconds < 30
    again = train(RunDir(config.output_dir).resume_config(), resume=True, budget=Budget(minutes=0.03))
    assert again.steps == results.steps  # the budget is per run, not per session


def test_a_killed_training_process_leaves_the_queue_serving_and_the_run_interrupted_with_why(tiny_mlm, tmp_path):
    queue = RunQueue(tmp_path).start()
    try:
        killed = queue.submit(
            _config(tiny_mlm, tmp_path / "killed", epochs=200, slice="train", save_steps=2), RunIdentity()
        )
        after = queue.submit(_config(tiny_mlm, tmp_path / "after", max_steps=2), RunIdentity())
        _wait_started(killed)
        deadline = time.monotonic() + 60
        while killed.checkpoint() is None:
            assert time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.1)
        os.kill(read_lock(killed.path).pid, signal.SIGKILL)  # as the kernel's out-of-memory killer does
        assert wait_status(killed, {"interrupted"}) == "interrupted"  # the dead lock says so at once ...
        deadline = time.monotonic() + 30
        while killed.results() is None:  # ... and the queue records why once it sees its child's end
            assert time.monotonic() < deadline, "the death was not recorded"
            time.sleep(0.1)
        assert killed.results().status == "interrupted"
        message = killed.results().message
        assert message.startswith("the training process was killed at step ") and "received SIGKILL" in message
        saved = max(e.step for e in killed.events() if isinstance(e, Checkpoint))
        assert message.endswith(f"resume continues from its checkpoint at step {saved:,}"), message
        assert message in [e.message for e in killed.events() if isinstance(e, Error)]
        assert wait_status(after, {"completed"}) == "completed"  # the queue went on
        assert killed.resumable() and killed.checkpoint() is not None
    finally:
        queue.close()


def test_a_child_that_dies_before_claiming_its_run_fails_it_in_words_and_leaves_the_queue(tiny_mlm, tmp_path):
    from mlm_core.queue import record_death

    run = RunQueue(tmp_path).submit(_config(tiny_mlm, tmp_path / "never"), RunIdentity())
    (run.path / "process.log").write_text("Traceback (most recent call last):\nImportError: no module named x\n")
    record_death(run, 1, started=time.time(), out_of_memory=False, stop_asked=False)
    assert run.status() == "failed" and run.identity().queued_at is None
    assert run.results().message == (
        "the training process ended with exit code 1 at step 0: ImportError: no module named x"
    )
    oom = RunQueue(tmp_path).submit(_config(tiny_mlm, tmp_path / "oom"), RunIdentity())
    record_death(oom, -9, started=time.time(), out_of_memory=True, stop_asked=False)
    assert oom.status() == "interrupted" and "(the system ran out of memory)" in oom.results().message
    assert oom.results().message.endswith("it saved no checkpoint, so resume starts over")


def _step(n: int) -> Step:
    return Step(n, 99, 0.1, 1.0, 1e-4, tokens=64 * n, tokens_per_s=1.0, elapsed_s=n, eta_s=1.0)


def test_a_death_names_the_step_of_its_own_attempt_not_an_earlier_ones(tiny_mlm, tmp_path):
    from mlm_core.queue import attempt_progress

    run = RunQueue(tmp_path).submit(_config(tiny_mlm, tmp_path / "twice"), RunIdentity())
    started = dict(
        run_dir="twice",
        model="m",
        task="mlm",
        device="CPU",
        total_steps=99,
        train_blocks=9,
        eval_blocks=1,
        block_size=64,
    )
    log = run.event_log()
    for event in [Started(**started), *[_step(n) for n in range(1, 31)], Checkpoint(20, "c")]:
        log.write(event)
    log.write(Started(**started, resumed_from_step=20))
    assert attempt_progress(run) == (20, 0), "no step yet in this attempt; no checkpoint on disk"
    log.write(_step(24))
    assert attempt_progress(run)[0] == 24  # not the first attempt's 30


def test_a_run_past_its_memory_limit_fails_in_words_and_the_queue_goes_on(tiny_mlm, tmp_path, monkeypatch):
    monkeypatch.setenv("MLM_STUDIO_RUN_MEMORY_MB", "700")  # the children inherit it
    queue = RunQueue(tmp_path).start()
    try:
        greedy = queue.submit(
            _config("starter", tmp_path / "greedy", batch_size=2048, block_size=128, max_steps=2, slice="train"),
            RunIdentity(),
        )
        after = queue.submit(_config(tiny_mlm, tmp_path / "after", max_steps=2), RunIdentity())
        assert wait_status(greedy, {"failed"}) == "failed"
        message = greedy.results().message
        assert message.startswith("batch_size: ") and "memory" in message and "Traceback" not in message, message
        assert wait_status(after, {"completed"}) == "completed"
    finally:
        queue.close()


def test_a_folder_whose_config_json_is_not_a_run_or_a_model_is_no_run(tmp_path):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text("[1]")
    assert not RunDir(tmp_path / "odd").is_run() and list_runs(tmp_path) == []

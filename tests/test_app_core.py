"""The engine pieces behind the app: jobs, runs, preview, probes, plots, dashboard text and export."""

import zipfile
from pathlib import Path

import pytest

from mlm_core import dashboard, plots
from mlm_core.config import TrainConfig
from mlm_core.events import Done, Eval, Probe, Step
from mlm_core.export import model_card, push_run, zip_run
from mlm_core.jobs import Busy, JobManager
from mlm_core.preflight import preview
from mlm_core.probes import suggest_probes
from mlm_core.runs import list_runs, read_run, run_dir


def _config(model, out, **changes):
    values = dict(model=str(model), dataset="builtin", slice="train[:40]", block_size=64, batch_size=8,
                  learning_rate=1e-3, epochs=1, output_dir=str(out))
    return TrainConfig(**{**values, **changes})


@pytest.fixture(scope="module")
def finished_run(tiny_mlm, tmp_path_factory):
    """A completed tiny run with probes, trained through the JobManager as the app does."""
    jobs = JobManager()
    job = jobs.start(_config(tiny_mlm, tmp_path_factory.mktemp("runs") / "done", max_steps=6, eval_steps=3),
                     probes=["The <mask> statement exits a loop.", "no mask in this one"])
    assert jobs.wait(timeout=300)
    return job


def test_job_completes_with_probes_at_every_evaluation(finished_run):
    assert finished_run.status == "completed", finished_run.events[-1]
    evals = [e.step for e in finished_run.events if isinstance(e, Eval)]
    probes = [e for e in finished_run.events if isinstance(e, Probe)]
    assert evals == [0, 3, 6] and [p.step for p in probes] == evals
    assert all(len(p.guesses) == 5 and 0 < p.guesses[0][1] <= 1 for p in probes)
    assert any("skipped" in getattr(e, "message", "") for e in finished_run.events)  # the probe without a mask


def test_second_start_is_refused_while_running_and_stop_keeps_a_checkpoint(tiny_mlm, tmp_path):
    jobs = JobManager()
    assert not jobs.stop()  # nothing to stop
    job = jobs.start(_config(tiny_mlm, tmp_path / "long", epochs=200, slice="train"))
    with pytest.raises(Busy, match="in progress"):
        jobs.start(_config(tiny_mlm, tmp_path / "other"))
    while not any(isinstance(e, Step) for e in job.events):
        jobs.wait(timeout=0.1)
    assert jobs.stop() and jobs.wait(timeout=30)
    assert job.status == "stopped"
    info = read_run(tmp_path / "long")
    assert info.status == "stopped" and info.resumable and info.model_dir is None


def test_runs_listing_and_names(finished_run, tmp_path):
    [info] = list_runs(Path(finished_run.config.output_dir).parent)
    assert info.status == "completed" and info.model_dir is not None and info.final_perplexity < info.base_perplexity
    for bad in ("../etc", "a/b", "", ".hidden", "x" * 81):
        with pytest.raises(ValueError, match="run:"):
            run_dir(tmp_path, bad)
    (tmp_path / "crashed").mkdir()
    (tmp_path / "crashed" / "config.json").write_text("{}")
    assert read_run(tmp_path / "crashed").status == "failed" and read_run(tmp_path / "empty") is None


def test_zip_holds_model_card_and_results(finished_run, tmp_path):
    folder = Path(finished_run.config.output_dir)
    archive = zip_run(folder, tmp_path)
    names = zipfile.ZipFile(archive).namelist()
    assert {"done/README.md", "done/model.safetensors", "done/results.json", "done/tokenizer.json"} <= set(names)
    card = model_card(folder)
    assert "pipeline_tag: fill-mask" in card and "| base model |" in card and "learning_rate" in card


def test_push_offline_is_refused_in_plain_words_without_echoing_the_token(finished_run):
    folder = Path(finished_run.config.output_dir)
    with pytest.raises(ValueError) as error:
        push_run(folder, "me/model", token="hf_SECRET123")
    assert "not reachable" in str(error.value) and "hf_SECRET123" not in str(error.value)
    with pytest.raises(ValueError, match="repo_id"):
        push_run(folder, "no-slash", token="x")


def test_preview_counts_blocks_masks_an_example_and_measures_steps(tiny_mlm, tmp_path):
    result = preview(_config(tiny_mlm, tmp_path / "p"))
    assert result.train_blocks > 0 and result.eval_blocks > 0 and result.block_size == 64
    assert len(result.example) == 64 and any(label == "masked" for _, label in result.example)
    assert result.seconds_per_step > 0 and result.estimated_seconds >= result.total_steps * result.seconds_per_step
    assert result.memory_bytes > 0
    assert not (tmp_path / "p").exists(), "a preview writes nothing"


def test_probes_come_from_the_data():
    texts = ["The quick brown fox jumps over the lazy dog near the river bank today.", "short."]
    [probe] = suggest_probes(texts, n=3)
    before, after = probe.split("<mask>")
    assert texts[0].startswith(before) and texts[0].endswith(after) and before
    hidden = texts[0][len(before): len(texts[0]) - len(after)]
    assert hidden.isalpha() and len(hidden) >= 4


def test_figures_and_text_from_events():
    events = [Eval(step=0, epoch=0, eval_loss=2.0, perplexity=7.39, base=True),
              Step(step=1, total_steps=2, epoch=0.5, loss=2.1, learning_rate=1e-4, tokens=64, tokens_per_s=100.0,
                   elapsed_s=1.0, eta_s=1.0),
              Step(step=2, total_steps=2, epoch=1.0, loss=1.9, learning_rate=0.0, tokens=128, tokens_per_s=100.0,
                   elapsed_s=2.0, eta_s=0.0),
              Eval(step=2, epoch=1, eval_loss=1.5, perplexity=4.48),
              Probe(step=2, text="a <mask>", guesses=[("b", 0.5)])]
    loss = plots.loss_figure(events)
    assert list(loss.data[0].x) == [1, 2] and list(loss.data[1].y) == [2.0, 1.5]
    assert plots.perplexity_figure(events).layout.shapes  # the base reference line
    assert plots.probe_table(events) == [[2, "a <mask>", "b 50%"]]
    assert 'data-progress="100.0"' in dashboard.progress_html(events)
    results = {"base_perplexity": 7.39, "final_perplexity": 4.48, "tokens": 128, "seconds": 2.0, "steps": 2}
    text = dashboard.outcome_text(results)
    assert "7.4 → 4.5" in text and "39% less surprised" in text
    assert dashboard.status_line([*events, Done(status="completed", results=results)], "completed").startswith("✅")

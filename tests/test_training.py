"""The training loop: parity with transformers' own loss, stop and resume, checkpoints, causal models."""

import json
import threading
import time

import pytest
import torch
from transformers import AutoTokenizer

from mlm_core.config import TrainConfig
from mlm_core.data.lm_data import prepare_data
from mlm_core.events import Eval, Step, read_events
from mlm_core.models.inference import fill_mask
from mlm_core.runs.checkpoint import checkpoint_dirs
from mlm_core.runs.run_dir import RunDir
from mlm_core.training.loop import evaluate, train

from .conftest import run_cli, tiny_config


def _config(model, out, **changes):
    """A quick run of a tiny model on part of the built-in corpus."""
    values = dict(
        model=str(model),
        dataset="builtin",
        slice="train[:40]",
        block_size=64,
        batch_size=8,
        learning_rate=1e-3,
        epochs=1,
        output_dir=str(out),
    )
    return TrainConfig(**{**values, **changes})


def _run(config, **kwargs):
    """Train and return (results, events)."""
    events = []
    results = train(config, on_event=events.append, **kwargs)
    return results, events


def _losses(events):
    return {e.step: e.loss for e in events if isinstance(e, Step)}


@pytest.mark.slow
def test_loss_equals_the_models_own_loss_for_20_steps(tiny_mlm, tmp_path):
    config = _config(tiny_mlm, tmp_path / "a", max_steps=20)
    _, ours = _run(config)
    _, reference = _run(config.replace(output_dir=str(tmp_path / "b")), head_only_loss=False)
    ours, reference = _losses(ours), _losses(reference)
    assert sorted(ours) == list(range(1, 21))
    for step in ours:
        assert ours[step] == pytest.approx(reference[step], abs=1e-4), step
    assert ours[20] < ours[1] - 0.1, "the model learns"


def test_head_only_loss_matches_a_direct_model_call(tiny_mlm):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from mlm_core.tasks import MASKED
    from mlm_core.training.batches import Masker
    from mlm_core.training.objective import LMObjective

    model = AutoModelForMaskedLM.from_pretrained(tiny_mlm).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_mlm)
    blocks = torch.randint(5, len(tokenizer), (4, 64))
    batch = Masker(tokenizer, 0.15, False, seed=0)(blocks)
    objective = LMObjective(model, MASKED)
    expected = model(input_ids=batch.input_ids, labels=batch.labels).loss
    assert batch.count == batch.labels.ne(-100).sum() > 0 and len(batch.positions) == len(batch.targets) == batch.count
    for summed in (
        objective(batch.input_ids, batch.labels, batch.positions, batch.targets),
        objective(batch.input_ids, batch.labels),
    ):  # positions found from the labels
        assert (summed / batch.count).item() == pytest.approx(expected.item(), abs=1e-5)


def test_results_events_and_saved_model(tiny_mlm, tmp_path):
    results, events = _run(_config(tiny_mlm, tmp_path / "run"))
    run_dir = tmp_path / "run"
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == results.to_dict()
    assert results.status == "completed" and results.final_perplexity < results.base_perplexity
    assert results.final_perplexity == pytest.approx(torch.tensor(results.final_eval_loss).exp().item())
    logged = read_events(run_dir / "events.jsonl")
    assert [e.to_dict() for e in logged] == [e.to_dict() for e in events]
    evals = [e for e in events if isinstance(e, Eval)]
    assert evals[0].base and evals[0].step == 0 and evals[-1].step == results.steps
    assert (run_dir / "model" / "model.safetensors").is_file() and not list(run_dir.rglob(".tmp-*"))
    assert not list(run_dir.rglob("*.bin"))
    reloaded = evaluate(_config(run_dir / "model", tmp_path / "unused"))
    assert reloaded.loss == pytest.approx(results.final_eval_loss, abs=1e-5), "eval masks are fixed"
    assert reloaded.top5 == pytest.approx(results.final_top5) and 0 < results.final_top1 <= results.final_top5 < 1


def test_stop_mid_epoch_then_resume_matches_an_uninterrupted_run(tiny_mlm, tmp_path):
    config = _config(tiny_mlm, tmp_path / "full", slice="train[:60]")
    full, full_events = _run(config)
    assert full.steps > 20

    stop = threading.Event()
    interrupted = config.replace(output_dir=str(tmp_path / "cut"))
    seen = []

    def stop_at_12(event):
        seen.append(event)
        if isinstance(event, Step) and event.step == 12:
            stop.set()

    stopped = train(interrupted, on_event=stop_at_12, stop=stop)
    assert stopped.status == "stopped" and stopped.steps == 12, "stops within one step"
    [checkpoint] = checkpoint_dirs(RunDir(tmp_path / "cut").checkpoints_path)
    assert checkpoint.name == "step-0000012"
    from transformers import AutoModelForMaskedLM

    AutoModelForMaskedLM.from_pretrained(checkpoint)  # loadable as it is
    text = "The <mask> statement exits a loop."
    [guesses] = fill_mask(str(tmp_path / "cut"), text, top_k=2)  # a stopped run is tried as it stands
    assert guesses == fill_mask(str(checkpoint), text, top_k=2)[0]

    resumed, resumed_events = _run(interrupted, resume=True)
    assert resumed.status == "completed" and resumed.steps == full.steps
    full_losses, resumed_losses = _losses(full_events), _losses(resumed_events)
    assert min(resumed_losses) == 13
    for step, loss in resumed_losses.items():
        assert loss == pytest.approx(full_losses[step], abs=1e-5), step
    assert resumed.final_eval_loss == pytest.approx(full.final_eval_loss, abs=1e-5)
    assert resumed.base_eval_loss == full.base_eval_loss


def test_output_dir_and_resume_guards(tiny_mlm, tmp_path):
    config = _config(tiny_mlm, tmp_path / "run", max_steps=2)
    train(config)
    with pytest.raises(ValueError, match="^output_dir: run already holds a run; resume it"):
        train(config)
    with pytest.raises(ValueError, match="^output_dir: the run run is completed; only a stopped or interrupted"):
        train(config, resume=True)
    stopped, stop = config.replace(output_dir=str(tmp_path / "stopped"), max_steps=None), threading.Event()
    train(stopped, on_event=lambda e: stop.set() if isinstance(e, Step) else None, stop=stop)
    with pytest.raises(ValueError, match="^block_size: the run stopped was started with 64"):
        train(stopped.replace(block_size=32), resume=True)


def test_block_size_is_clamped_with_a_message(tiny_mlm, tmp_path):
    results, events = _run(_config(tiny_mlm, tmp_path / "run", block_size=1024, max_steps=1))
    assert results.block_size == 128
    assert any(
        "block_size 1024 is more than this model reads; using its maximum, 128" in getattr(e, "message", "")
        for e in events
    )


def test_whole_word_masking_trains(tiny_mlm, tmp_path):
    results, _ = _run(_config(tiny_mlm, tmp_path / "run", whole_word_masking=True, max_steps=3))
    assert results.status == "completed" and results.steps == 3


@pytest.mark.slow
def test_causal_model_trains_through_the_cli_and_generates(tiny_clm, tmp_path):
    out = tmp_path / "clm"
    trained = run_cli(
        "train",
        "--model",
        str(tiny_clm),
        "--dataset",
        "builtin",
        "--slice",
        "train[:40]",
        "--block-size",
        "64",
        "--learning-rate",
        "1e-3",
        "--max-steps",
        "30",
        "--output-dir",
        str(out),
    )
    assert trained.returncode == 0, trained.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "clm" and results["final_perplexity"] < results["base_perplexity"]
    generated = run_cli(
        "generate", "--model", str(out / "model"), "--max-new-tokens", "12", "--seed", "1", "The for statement"
    )
    assert generated.returncode == 0, generated.stderr
    text = generated.stdout.strip()
    assert text.startswith("The for statement") and len(text) > len("The for statement") + 5


SYNC_CALLS = ("item", "tolist", "nonzero", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__")


def test_a_training_step_never_makes_the_host_wait_for_the_device(tiny_mlm, tmp_path, monkeypatch):
    """Every call that would make the host wait for a GPU (reading a value back, `nonzero`, a boolean index, `if`
    on a tensor) is counted while the training thread is inside a step, whoever makes it; there are none. The
    masking thread (which prepares the next batches on the host) is not inside the step."""
    from mlm_core.training import loop

    inside, calls = threading.local(), []

    def counted(name, original):
        def wrapper(*args, **kwargs):
            if getattr(inside, "step", False):
                calls.append(name)
            return original(*args, **kwargs)

        return wrapper

    for name in SYNC_CALLS:
        monkeypatch.setattr(torch.Tensor, name, counted(name, getattr(torch.Tensor, name)))
    for name in ("nonzero", "masked_select", "unique"):
        monkeypatch.setattr(torch, name, counted(f"torch.{name}", getattr(torch, name)))
    getitem = torch.Tensor.__getitem__

    def indexed(tensor, index):
        keys = index if isinstance(index, tuple) else (index,)
        if getattr(inside, "step", False) and any(isinstance(k, torch.Tensor) and k.dtype == torch.bool for k in keys):
            calls.append("boolean index")
        return getitem(tensor, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", indexed)
    step = loop.TrainingRun._optimizer_step

    def watched(self, batches):
        inside.step = True
        try:
            return step(self, batches)
        finally:
            inside.step = False

    monkeypatch.setattr(loop.TrainingRun, "_optimizer_step", watched)
    results, events = _run(_config(tiny_mlm, tmp_path / "run", max_steps=6, gradient_accumulation=2))
    assert results.status == "completed" and len(_losses(events)) == 6
    assert calls == [], calls
    indexed(torch.zeros(3), torch.tensor([True, False, True]))  # the double sees what it should see ...
    inside.step = True
    torch.zeros(2).sum().item()
    inside.step = False
    assert calls == ["item"]  # ... once inside a step


def test_losses_read_back_late_come_out_as_every_step_reported_them(tiny_mlm, tmp_path, monkeypatch):
    """On a GPU losses stay on the device and are read back together: the events are the same, in the same order."""
    from mlm_core.training import loop

    config = _config(tiny_mlm, tmp_path / "now", max_steps=8, eval_steps=4)
    _, now = _run(config)
    monkeypatch.setattr(loop.TrainingRun, "_report_due", lambda self: False)
    _, late = _run(config.replace(output_dir=str(tmp_path / "late")))
    kinds = [type(e).__name__ for e in now if isinstance(e, (Step, Eval))]
    assert kinds == [type(e).__name__ for e in late if isinstance(e, (Step, Eval))] and kinds.count("Step") == 8
    assert _losses(late) == pytest.approx(_losses(now), abs=1e-6)


def test_the_prefetcher_stops_masking_when_closed_and_hands_over_errors():
    from mlm_core.training.batches import Batch, Prefetcher

    class Slow:
        calls = 0

        def __call__(self, blocks, word_starts=None):
            Slow.calls += 1
            if Slow.calls == 50:
                raise ValueError("bad block")
            time.sleep(0.01)
            return Batch(blocks, blocks.clone(), count=0)

        def state(self):
            return Slow.calls

    blocks = torch.arange(1000).reshape(500, 2)
    indices = [torch.tensor([i]) for i in range(500)]
    prefetcher = Prefetcher(Slow(), blocks, None, indices)
    assert prefetcher.take().input_ids.tolist() == [[0, 1]] and prefetcher.state == 1
    started = time.monotonic()
    prefetcher.close()
    assert time.monotonic() - started < 1 and Slow.calls < 10  # not the 499 left
    Slow.calls = 40
    prefetcher = Prefetcher(Slow(), blocks, None, indices)
    with pytest.raises(ValueError, match="bad block"):
        for _ in range(20):
            prefetcher.take()
    prefetcher.close()


def test_a_run_that_ends_mid_epoch_counts_a_fraction_of_an_epoch_and_writes_no_checkpoint(tiny_mlm, tmp_path):
    results, events = _run(_config(tiny_mlm, tmp_path / "run", max_steps=2))
    assert results.steps == 2 and 0 < results.epochs < 1
    assert not [e for e in events if type(e).__name__ == "Checkpoint"]


def test_a_held_out_sample_that_hides_nothing_is_refused_in_words_not_measured_as_perplexity_1(tiny_mlm, tmp_path):
    text = tmp_path / "small.txt"
    text.write_text("\n\n".join(f"Line {i} of a small upload about the garden." for i in range(30)))
    config = TrainConfig(
        model=str(tiny_mlm),
        dataset="file",
        dataset_file=str(text),
        block_size=8,
        mlm_probability=0.001,
        max_steps=1000,  # enough steps to hide some training tokens (`check_hides_enough`)
        output_dir=str(tmp_path / "run"),
    )
    with pytest.raises(ValueError, match="the held-out sample .* hides no token to measure"):
        train(config)
    assert not (tmp_path / "run").exists()  # refused before its first step, so nothing is left


def test_a_run_that_would_hide_no_token_is_refused_before_training(tiny_mlm, tmp_path):
    from mlm_core.training.preflight import preview

    text = tmp_path / "three.txt"
    text.write_text("The gardener waters the beans.\n\nThe beans grow tall.\n\nThe gardener picks them.")
    config = TrainConfig(
        model=str(tiny_mlm),
        dataset="file",
        dataset_file=str(text),
        block_size=8,
        max_steps=2,
        output_dir=str(tmp_path / "run"),
    )
    refusal = "^mlm_probability: this run would hide about 10 tokens for the model to guess in all of its 2 steps"
    for attempt in (train, preview):  # 2 steps of 4 blocks of 8 tokens, 15% hidden
        with pytest.raises(ValueError, match=refusal):
            attempt(config)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_run_whose_loss_explodes_ends_failed_with_diverged_not_completed(tiny_mlm, tmp_path):
    config = TrainConfig(
        model=str(tiny_mlm),
        dataset="builtin",
        slice="train[:40]",
        block_size=64,
        batch_size=8,
        learning_rate=1.0,
        warmup_ratio=0.0,
        max_steps=30,
        eval_steps=10,
        output_dir=str(tmp_path / "run"),
    )
    with pytest.raises(ValueError, match=r"training diverged at step \d+ .*lower the learning rate"):
        train(config)
    results = RunDir(config.output_dir).results()
    assert results.status == "failed" and "diverged" in results.message


def test_steps_that_hide_nothing_are_gaps_in_the_loss_not_zeros():
    from studio.figures import smoothed

    nan = float("nan")
    values = smoothed([2.0, nan, 2.0, 1.0])
    assert values[:3] == pytest.approx([2.0, 2.0, 2.0]) and 1.0 < values[3] < 2.0
    assert all(v != v for v in smoothed([nan, nan]))


def test_accuracy_counts_a_hidden_word_right_only_when_all_its_pieces_are():
    from accelerate import Accelerator

    from mlm_core.tasks import IGNORE
    from mlm_core.training.batches import Batch
    from mlm_core.training.evaluation import Evaluator

    blocks = torch.tensor([[0, 10, 11, 12, 13, 2]])  # words: 10 | 11 12 | 13 (0 and 2 special)
    starts = torch.tensor([[True, True, True, False, True, True]])

    def hide_the_words(blocks, word_starts=None):
        labels = torch.full_like(blocks, IGNORE)
        labels[:, 1:5] = blocks[:, 1:5]
        positions = labels.view(-1).ne(IGNORE).nonzero().squeeze(1)
        return Batch(
            blocks.clone().index_fill_(1, torch.arange(1, 5), 4),
            labels,
            len(positions),
            positions,
            labels.view(-1)[positions],
        )

    class RightAt10And11(torch.nn.Module):  # tokens 0-4 are everywhere else the likeliest
        def labelled_logits(self, input_ids, labels, positions, targets):
            logits = -torch.arange(20.0).repeat(len(targets), 1)
            right = torch.isin(targets, torch.tensor([10, 11]))
            logits[right, targets[right]] = 5.0
            return logits, targets

    evaluator = Evaluator(hide_the_words, blocks, starts, size=1, batch_size=4, seed=0)
    quick, whole = evaluator(RightAt10And11(), Accelerator(cpu=True), threading.Event(), whole=True)
    assert quick == whole and quick.top1 == pytest.approx(1 / 3) and quick.top5 == pytest.approx(1 / 3)
    token_count = Evaluator(hide_the_words, blocks, None, size=1, batch_size=4, seed=0)  # no word starts: tokens
    assert token_count(RightAt10And11(), Accelerator(cpu=True), threading.Event())[0].top1 == pytest.approx(2 / 4)


def test_runs_of_any_length_on_the_same_data_measure_base_and_final_on_the_same_sample(tiny_mlm, tmp_path):
    short, short_events = _run(_config(tiny_mlm, tmp_path / "short", max_steps=2, slice="train[:400]"))
    longer, _ = _run(_config(tiny_mlm, tmp_path / "long", max_steps=8, slice="train[:400]"))
    assert short.eval_blocks == longer.eval_blocks and short.base_perplexity == longer.base_perplexity
    assert short.base_top1 == longer.base_top1 and short.accuracy_counts == "hidden words"
    during = [e for e in short_events if isinstance(e, Eval)]
    assert short.eval_blocks > 0 and len(during) >= 2  # the curve scores the run's part of the sample
    assert short.final_perplexity != longer.final_perplexity


def test_runs_that_differ_only_by_seed_are_measured_on_the_same_held_out_sample(tiny_mlm, tmp_path):
    runs = {seed: _config(tiny_mlm, tmp_path / str(seed), max_steps=2, seed=seed) for seed in (1, 7)}
    results = {seed: train(config) for seed, config in runs.items()}
    assert results[1].base_perplexity == results[7].base_perplexity  # the same blocks, the same hidden tokens
    assert results[1].final_perplexity != results[7].final_perplexity  # trained differently
    tokenizer = AutoTokenizer.from_pretrained(tiny_mlm)
    held_out = {seed: prepare_data(config, tokenizer, config.block_size).eval for seed, config in runs.items()}
    assert torch.equal(held_out[1][:], held_out[7][:])  # no run trains on another's held-out text


def test_a_stopped_run_reports_its_last_evaluation_against_the_base_on_the_same_part(tiny_mlm, tmp_path):
    stop = threading.Event()
    events = []

    def stop_after_an_evaluation(event):
        events.append(event)
        if isinstance(event, Eval) and not event.base:
            stop.set()

    results = train(
        _config(tiny_mlm, tmp_path / "run", max_steps=40, eval_steps=5), on_event=stop_after_an_evaluation, stop=stop
    )
    evals = [e for e in events if isinstance(e, Eval)]
    assert results.status == "stopped" and results.final_perplexity == pytest.approx(evals[-1].perplexity)
    assert results.base_perplexity == pytest.approx(evals[0].perplexity)


def test_an_upload_of_everyday_text_gets_probes_whose_answers_may_be_words_of_several_pieces(tiny_mlm, tmp_path):
    from importlib.resources import files

    from mlm_core.events import Probe
    from mlm_core.models.inference import word_pieces
    from mlm_core.models.loading import load_tokenizer

    upload = tmp_path / "my garden notes.txt"
    upload.write_text("\n\n".join([files("starter").joinpath("everyday_sample.txt").read_text()] * 12))
    _, events = _run(
        _config(tiny_mlm, tmp_path / "run", dataset="file", dataset_file=str(upload), slice="train", max_steps=2)
    )
    probes = [e for e in events if isinstance(e, Probe)]
    assert probes and all(p.answer and p.answer_rank and p.text.count("<mask>") == 1 for p in probes)
    tokenizer = load_tokenizer(str(tiny_mlm))
    assert any(len(word_pieces(tokenizer, p.answer)) > 1 for p in probes)  # this small vocabulary splits them
    assert all(guess.strip() for p in probes for guess, _ in p.guesses)


@pytest.mark.parametrize("minutes", ["0.0005", "0"])
def test_a_run_saves_a_checkpoint_every_few_minutes_of_training(tiny_mlm, tmp_path, monkeypatch, minutes):
    from mlm_core.events import Checkpoint
    from mlm_core.training import loop

    monkeypatch.setenv("MLM_STUDIO_CHECKPOINT_MINUTES", minutes)  # 0.03 s: a save as soon as the last one is done
    monkeypatch.setattr(loop, "SAVE_SHARE", 1.0)  # (at the real 5%, a tiny model's steps would outrun every save)
    events = []
    config = tiny_config(tiny_mlm, tmp_path / "run", max_steps=16, eval_steps=1000)
    assert train(config, on_event=events.append).status == "completed"
    saved = [e.step for e in events if isinstance(e, Checkpoint)]
    if minutes == "0":
        assert saved == [], "without the setting, a one-epoch run saves only its final model"
    else:  # mid-epoch saves, as a kill would need them, each after the last save's own time at least
        assert len(saved) >= 2 and saved == sorted(set(saved)) and saved[-1] < 16, saved

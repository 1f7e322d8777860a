"""Preparation at scale: a generated 20 MB upload in flat memory, and a run shared by two processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import data_scale

from .conftest import ROOT, _free_port

MiB = 2**20
# Measured on 2 CPU cores (2026-11): main process 321-323 MiB at its peak, 303 MiB before preparing (torch and
# transformers are imported by then), each of the 2 tokenizer workers 52 MiB (57 with whole-word flags). The list-based
# preparation this replaced held about 0.6 GiB at 20 MB, and 1.2 GiB with whole-word masking.
CEILING_GROWTH = 48 * MiB  # what preparing may add to the main process's imports
CEILING_MAIN = 420 * MiB
CEILING_TOTAL = 560 * MiB  # main + workers


@pytest.fixture(scope="module")
def corpus_20mb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("scale") / "corpus-20mb.txt"
    data_scale.write_corpus(path, 20)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("whole_word", [False, True])
def test_a_20_mb_upload_is_prepared_in_flat_memory(corpus_20mb, whole_word):
    result = data_scale.measure("ours", corpus_20mb, whole_word=whole_word)
    figures = {
        k: (round(v / MiB) if k.endswith("_bytes") else v) for k, v in result.items() if k != "peak_worker_bytes"
    }
    print(f"\n20 MB, whole-word {whole_word}: {figures}, workers {[b / MiB for b in result['peak_worker_bytes']]}")
    assert result["blocks"] > 40_000
    assert result["peak_main_bytes"] - result["before_bytes"] < CEILING_GROWTH
    assert result["peak_main_bytes"] < CEILING_MAIN and result["peak_total_bytes"] < CEILING_TOTAL


@pytest.mark.slow
def test_two_cpu_processes_each_train_on_half_the_blocks(tiny_mlm, tmp_path):
    """`accelerate launch` with 2 CPU processes (Accelerate 1.15 launches several CPU processes through its
    torchrun path, `--multi_gpu`, with ACCELERATE_USE_CPU; `--cpu` alone starts one)."""
    from transformers import AutoTokenizer

    from mlm_core.config import TrainConfig
    from mlm_core.data.lm_data import prepare_data

    launcher = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    run = tmp_path / "runs" / "two"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [
        launcher,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "mlm_core",
        "train",
        "--model",
        str(tiny_mlm),
        "--dataset",
        "builtin",
        "--slice",
        "train",
        "--block-size",
        "64",
        "--batch-size",
        "8",
        "--max-steps",
        "3",
        "--output-dir",
        str(run),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    config = TrainConfig(model=str(tiny_mlm), dataset="builtin", slice="train", block_size=64)
    whole = prepare_data(config, AutoTokenizer.from_pretrained(tiny_mlm), 64)
    shares = [line for line in done.stderr.splitlines() if "training blocks" in line]
    assert len(shares) == 2 and all(f"{len(whole.train) // 2:,} training blocks" in s for s in shares), shares
    results = json.loads((run / "results.json").read_text())
    assert results["status"] == "completed" and results["train_blocks"] == len(whole.train) // 2
    assert results["tokens"] == 3 * 8 * 64 * 2  # both processes took every step
    [store] = [json.loads(p.read_text()) for p in (run.parent / ".data-cache").glob("*/meta.json")]
    assert store["parts"] == ["part-0", "part-1"]  # each tokenized its own batches

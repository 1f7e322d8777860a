"""Peak memory of a real training run (our CLI in a child process), beside the app's pre-flight estimate."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from mlm_core.config import TrainConfig
from mlm_core.training.preflight import preview


def training_peak(config: TrainConfig) -> dict:
    """Peak resident memory (bytes) of `python -m mlm_core train` with this config, and what the pre-flight
    predicted; RuntimeError when the training child fails, ValueError in plain words as `preview`."""
    with tempfile.TemporaryDirectory() as tmp:
        run = replace(config, output_dir=str(Path(tmp) / "run"))
        command = [
            sys.executable,
            "-m",
            "mlm_core",
            "train",
            "--model",
            run.model,
            "--dataset",
            run.dataset,
            "--slice",
            run.slice,
            "--block-size",
            str(run.block_size),
            "--batch-size",
            str(run.batch_size),
            "--max-steps",
            str(run.max_steps),
            "--output-dir",
            run.output_dir,
        ]
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"training child failed: {child.stderr.read()[-500:]}")
    estimate = preview(config)
    return {
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "preflight_estimate_bytes": estimate.memory_bytes,
        "preflight_seconds_per_step": estimate.seconds_per_step,
    }

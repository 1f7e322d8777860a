"""Work the app hands to child processes of `python -m mlm_core`, so that its memory, crashes and GIL stay theirs:
training a queued run (the queue), and a Preview (it reads the whole data and times real training steps)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlm_core
from mlm_core.config import TrainConfig, train_arguments
from mlm_core.system import settings
from mlm_core.training.preflight import Preview


def child_command(*arguments: str) -> list[str]:
    """`python -m mlm_core ARGUMENTS...` with this interpreter."""
    return [sys.executable, "-m", "mlm_core", *arguments]


def child_environment() -> dict[str, str]:
    """The app's environment, with this checkout's mlm_core importable whatever the working folder, and the app's
    process id (a training child ends with the app)."""
    root = str(Path(mlm_core.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root,
        "MLM_STUDIO_PARENT_PID": str(os.getpid()),
    }


def preview_in_child(config: TrainConfig, timeout_s: float | None = None) -> Preview:
    """`preview(config)` in a child process (`python -m mlm_core preview --json`); its memory leaves with it.
    ValueError in plain words as `preview`, or when it takes longer than `timeout_s` (default: the setting
    MLM_STUDIO_PREVIEW_TIMEOUT_S) or its process dies."""
    timeout_s = settings.current().preview_timeout_s if timeout_s is None else timeout_s
    try:
        done = subprocess.run(
            child_command("preview", "--json", *train_arguments(config)),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=child_environment(),
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ValueError(
            f"preview: reading the data took longer than {timeout_s / 60:.0f} minutes; use a smaller slice or file"
        ) from None
    if done.returncode == 0:
        return Preview.from_dict(json.loads(done.stdout.strip().splitlines()[-1]))
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    if lines:
        raise ValueError(lines[-1].removeprefix("error: "))
    cause = "it ran out of memory" if done.returncode == -9 else f"exit code {done.returncode}"
    raise ValueError(
        f"preview: the process reading the data ended unexpectedly ({cause}); try a smaller file or block size"
    )

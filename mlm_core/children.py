"""Work the app hands to child processes of `python -m mlm_core`, so that its memory, crashes and GIL stay theirs:
training a queued run (the queue), and a Preview (it reads the whole data and times real training steps). Both
ends: how the app starts a child, and what the child does first."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import mlm_core
from mlm_core.config import TrainConfig, train_arguments
from mlm_core.runs.records import RunResults
from mlm_core.runs.run_dir import RunDir
from mlm_core.system import settings
from mlm_core.system.container_limits import limit_this_process, prefer_as_oom_victim
from mlm_core.training.loop import train
from mlm_core.training.preflight import Preview

EXIT_STOPPED = 130  # a run that stopped before its end (as after Ctrl-C)
PARENT_PID_VARIABLE = "MLM_STUDIO_PARENT_PID"  # set by the app for its children
PR_SET_PDEATHSIG = 1  # linux/prctl.h
CHILD_HIDDEN = {"MLM_STUDIO_ADMIN_PASSWORD"}  # settings a training or preview child is not given


def child_command(*arguments: str) -> list[str]:
    """`python -m mlm_core ARGUMENTS...` with this interpreter."""
    return [sys.executable, "-m", "mlm_core", *arguments]


def child_environment() -> dict[str, str]:
    """The app's environment, with this checkout's mlm_core importable whatever the working folder, and the app's
    process id (a training child ends with the app); without the owner's password, which no child needs."""
    root = str(Path(mlm_core.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    return {
        **{name: value for name, value in os.environ.items() if name not in CHILD_HIDDEN},
        "PYTHONPATH": f"{root}{os.pathsep}{path}" if path else root,
        PARENT_PID_VARIABLE: str(os.getpid()),
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


def end_with_parent() -> None:
    """In a child of the app (Linux): be killed when the app's process dies, as a run inside the app was; the run
    is then interrupted and resumes from its last checkpoint. Nothing outside the app."""
    parent = os.environ.get(PARENT_PID_VARIABLE)
    if parent is None or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):  # it died before prctl took effect
        os._exit(EXIT_STOPPED)


def train_queued(folder: Path, stop: threading.Event) -> RunResults:
    """Train the queued run in `folder` as its identity says (settings, probe sentences, budget, resume), in the
    queue's child process: below the app's priority, inside the memory the settings give runs. Events go to the
    run's events.jsonl, as for every run; `stop` ends it after its current step."""
    end_with_parent()
    os.nice(settings.current().train_nice)  # the app's requests first; idle cores are the run's
    limit = settings.current().run_memory_mb
    if limit:
        limit_this_process(limit)
    else:
        prefer_as_oom_victim()
    run = RunDir(folder)
    identity = run.identity()
    return train(run.config(), stop=stop, resume=identity.resume, probes=identity.probes, budget=identity.budget)

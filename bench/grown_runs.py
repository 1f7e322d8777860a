"""Runs folders of any size made from one short real run: a run of thousands of steps from its events, and a
folder of a thousand runs from copies of it (the load benchmark's and the scale tests' subjects)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from mlm_core.config import TrainConfig
from mlm_core.events import Eval, Event, Probe, Step
from mlm_core.runs.records import RunIdentity, new_run_name
from mlm_core.runs.run_dir import RunDir
from mlm_core.training.loop import train

EVALS = 20  # evaluations of a grown run, each with the short run's probes


def short_run(model: str, folder: Path, steps: int = 20) -> RunDir:
    """A real run of `model` on the built-in corpus for `steps` steps, evaluated every 5 (each with its probes)."""
    config = TrainConfig(
        model=model,
        dataset="builtin",
        slice="train[:40]",
        block_size=64,
        batch_size=8,
        learning_rate=1e-3,
        max_steps=steps,
        eval_steps=5,
        output_dir=str(folder),
    )
    train(config)
    return RunDir(folder)


def grown_events(events: list[Event], steps: int) -> list[Event]:
    """A run's events grown to `steps` steps: its steps repeated (renumbered, the clock going on), an evaluation
    with its probes every `steps // EVALS` steps, as a run of that length logs them."""
    head = [e for e in events if not isinstance(e, Step | Eval | Probe)]
    step_events = [e for e in events if isinstance(e, Step)]
    base = [e for e in events if isinstance(e, Eval) and e.base]
    evals = [e for e in events if isinstance(e, Eval) and not e.base] or base
    probes = [e for e in events if isinstance(e, Probe)]
    probe_count = len({p.text for p in probes})
    grown, every, start = list(head[:2]) + base, max(1, steps // EVALS), time.time()
    for step in range(1, steps + 1):
        like = step_events[(step - 1) % len(step_events)]
        grown.append(
            dataclasses.replace(like, step=step, total_steps=steps, time=start + step, eta_s=float(steps - step))
        )
        if step % every == 0 or step == steps:
            grown.append(dataclasses.replace(evals[(step // every) % len(evals)], step=step, time=start + step))
            grown.extend(dataclasses.replace(p, step=step, time=start + step) for p in probes[-probe_count:])
    return grown + [e for e in head[2:]]


def grown_run(short: RunDir, folder: Path, steps: int) -> RunDir:
    """A copy of the `short` run whose events are grown to `steps` steps (`grown_events`)."""
    shutil.copytree(short.path, folder)
    run = RunDir(folder)
    lines = [json.dumps(event.to_dict(), default=str) + "\n" for event in grown_events(short.events(), steps)]
    run.events_path.write_text("".join(lines), encoding="utf-8")
    return run


def many_runs(short: RunDir, root: Path, count: int) -> list[RunDir]:
    """`count` finished runs in `root`, copies of the `short` one's records (settings, identity, results, events;
    not its model), named and dated as runs made one a minute apart."""
    root.mkdir(parents=True, exist_ok=True)
    made, now = [], time.time()
    records = [short.settings_path, short.results_path, short.events_path]
    for index in range(count):
        run = RunDir(root / new_run_name("tiny", f"copy{index}"))
        run.path.mkdir()
        for record in records:
            shutil.copy2(record, run.path / record.name)
        created = now - 60 * (count - index)
        run.set_identity(dataclasses.replace(RunIdentity(label=f"copy {index}"), created=created))
        made.append(run)
    return made

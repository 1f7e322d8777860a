"""Retention: on a public Space, visitors' finished runs do not pile up for months. Past an age, past a count, or
while the runs folder is over its size, their oldest go first; a run waiting or training, a run the owner started
(`RunIdentity.kept`) and a run made on the machine (the CLI's) are never deleted."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlm_core.runs.records import QUEUED, RUNNING
from mlm_core.runs.run_dir import RunDir

DAY_S = 86_400


@dataclass(frozen=True)
class Retention:
    """How long and how many visitors' finished runs are kept, and the runs folder's size (None: no limit)."""

    days: float | None = None
    runs: int | None = None
    max_bytes: int | None = None

    def describe(self) -> str:
        """The rule in words, for the page ('' when there is none)."""
        parts = [
            *([f"{self.days:g} days after they end"] if self.days else []),
            *([f"{self.runs:,} of them at most"] if self.runs else []),
            *([f"{self.max_bytes / 1e9:g} GB of runs in all"] if self.max_bytes else []),
        ]
        if not parts:
            return ""
        return f"visitors' finished runs are kept {', '.join(parts)}: the oldest go first (the owner's stay)"


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (hard links counted once per folder they appear in)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def expired(
    runs: list[RunDir], rule: Retention, now: float | None = None, size_of: Callable[[RunDir], int] = None
) -> list[tuple[RunDir, str]]:
    """Which of `runs` (newest first, as `RunIndex.runs`) the rule deletes, oldest first, each with why in words.
    `size_of` measures a run in bytes (default: its folder's files)."""
    now, size_of = now or time.time(), size_of or (lambda run: folder_bytes(run.path))
    visitors = [run for run in runs if _expires(run)]
    gone: dict[RunDir, str] = {}
    if rule.days:
        for run in visitors:
            if now - _ended(run) > rule.days * DAY_S:
                gone[run] = f"it ended more than {rule.days:g} days ago"
    if rule.runs:
        for run in [run for run in visitors if run not in gone][rule.runs :]:
            gone[run] = f"{rule.runs:,} newer visitors' runs are kept"
    if rule.max_bytes:
        sizes = {run: size_of(run) for run in runs}
        total = sum(size for run, size in sizes.items() if run not in gone)
        for run in reversed([run for run in visitors if run not in gone]):
            if total <= rule.max_bytes:
                break
            gone[run] = f"the runs folder was over {rule.max_bytes / 1e9:g} GB"
            total -= sizes[run]
    return sorted(gone.items(), key=lambda item: (_ended(item[0]), item[0].identity().created))


def _expires(run: RunDir) -> bool:
    """A visitor's run that has ended."""
    identity = run.identity()
    return identity.source == "app" and not identity.kept and run.status() not in {QUEUED, RUNNING}


def _ended(run: RunDir) -> float:
    """When the run last ended (its results written), else when it was made."""
    try:
        return run.results_path.stat().st_mtime
    except OSError:
        return run.identity().created

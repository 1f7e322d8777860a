"""Which files a model name means: 'starter', 'run:NAME', a run folder, a model folder or a hub id (run policy)."""

from __future__ import annotations

from pathlib import Path

from mlm_core.runs.records import RUN_PREFIX, runs_root
from mlm_core.runs.run_dir import RunDir, run_in
from mlm_core.system import hub_access

STARTER = "starter"
STARTER_DIR = Path(__file__).resolve().parents[2] / "assets" / "starter-mlm"


def resolve_source(name: str | Path) -> str:
    """A model as something `from_pretrained` takes. A Path is a folder the engine chose (a checkpoint); a name is
    what a person typed: 'starter', 'run:NAME' (the saved model of run NAME in the runs folder), a hub id, or, where
    local paths are allowed, a folder (a run folder means its saved model). ValueError in plain words for a run that
    is missing or has not completed, or (where local paths are not allowed) a name that is not a hub id."""
    if isinstance(name, Path):
        return str(name)
    name = name.strip()
    if name == STARTER:
        return str(STARTER_DIR)
    if name.startswith(RUN_PREFIX):
        return str(run_in(runs_root(), name.removeprefix(RUN_PREFIX)).saved_model().resolve())
    hub_access.check_hub_name(name, "model", "model")
    path = Path(name).expanduser()
    if not path.is_dir():
        return name
    run = RunDir(path)
    return str((run.saved_model() if run.is_run() else path).resolve())


def is_local(source: str) -> bool:
    """Whether the source is a folder on this machine."""
    return Path(source).is_dir()

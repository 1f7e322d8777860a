"""Settings: one object reads the environment, the README's table is its table, and a bad value is one line."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from mlm_core.system.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
HAND_OFFS = {"MLM_STUDIO_PARENT_PID", "MLM_STUDIO_NO_LOCAL_PATHS"}  # set by the app for its children, not settings


def _readme_table() -> dict[str, str]:
    """The README's settings table: variable -> default as shown."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Settings\n", 1)[1].split("\n## ", 1)[0]
    return dict(re.findall(r"^\| `([A-Z_]+)` \| (.+?) \| .+ \|$", section, re.M))


def test_the_readme_lists_every_setting_with_its_default_and_nothing_else():
    ours = {item.metadata["variable"]: item.metadata["shown"] for item in fields(Settings)}
    assert _readme_table() == ours


def test_every_variable_of_ours_the_code_reads_is_a_setting():
    code = "\n".join(
        path.read_text(encoding="utf-8") for folder in ("mlm_core", "studio") for path in (ROOT / folder).rglob("*.py")
    )
    named = set(re.findall(r"MLM_STUDIO_[A-Z_]+", code + (ROOT / "app.py").read_text(encoding="utf-8")))
    settings = {item.metadata["variable"] for item in fields(Settings)}
    assert named - HAND_OFFS - {"MLM_STUDIO_MAX_"} <= settings, "read from the environment outside `Settings`"


def test_settings_are_parsed_once_and_a_bad_one_is_named():
    chosen = Settings.from_env(
        {
            "MLM_STUDIO_MAX_RUN_STEPS": "none",
            "MLM_STUDIO_MAX_RUN_MINUTES": "0",
            "MLM_STUDIO_ADMINS": "alice, bob,",
            "SPACE_ID": "me/studio",
            "MLM_STUDIO_ADMIN_PASSWORD": "hunter2",
            "MLM_STUDIO_STREAM_MB": "64",
        }
    )
    assert (chosen.max_run_steps, chosen.max_run_minutes, chosen.admins) == (None, None, ("alice", "bob"))
    assert chosen.is_public and chosen.stream_mb == 64 and chosen.max_active_runs == 1
    assert "hunter2" not in repr(chosen), "a secret in the settings' repr would reach a log"
    assert not Settings.from_env({"SPACE_ID": "me/studio", "MLM_STUDIO_PUBLIC": "0"}).is_public
    for variable, value in (
        ("MLM_STUDIO_MAX_PROBES", "lots"),
        ("MLM_STUDIO_STREAM_MB", "1.5"),
        ("MLM_STUDIO_PUBLIC", "maybe"),
        ("MLM_STUDIO_UPLOAD_MB_PER_HOUR", "none"),
    ):
        with pytest.raises(ValueError, match=f"^{variable}: must be"):
            Settings.from_env({variable: value})


def test_the_app_refuses_a_bad_setting_in_one_line(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
        "MLM_STUDIO_RUNS": str(tmp_path / "runs"),
        "MLM_STUDIO_PUBLIC": "1",
        "MLM_STUDIO_MAX_RUN_MINUTES": "half an hour",
    }
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        "error: MLM_STUDIO_MAX_RUN_MINUTES: must be a number (got 'half an hour')"
    ]
    env.update(MLM_STUDIO_MAX_RUN_MINUTES="30", MLM_STUDIO_DEBUG="2")
    cli = subprocess.run(
        [sys.executable, "-m", "mlm_core", "info"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert (cli.returncode, cli.stderr.strip()) == (2, "error: MLM_STUDIO_DEBUG: must be 1 or 0 (got '2')")


def test_training_and_preview_children_are_not_given_the_owners_password(monkeypatch):
    from mlm_core.children import child_environment

    monkeypatch.setenv("MLM_STUDIO_ADMIN_PASSWORD", "owner-s3cret")
    monkeypatch.setenv("MLM_STUDIO_MAX_UPLOAD_MB", "12")
    env = child_environment()  # what the queue's training child and the preview child run with
    assert "owner-s3cret" not in env.values() and env["MLM_STUDIO_MAX_UPLOAD_MB"] == "12"

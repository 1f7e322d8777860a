"""Where runs are kept: the start-up check of the runs folder, and whether it lies on a mount of its own (a Space's
Storage Bucket) or on the container's disk, read from the kernel's mount table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlm_core.system.storage import RunsStorage, check_runs_folder, mount_of

from .conftest import ROOT

# A container's /proc/self/mountinfo: an overlay root, volumes at /data and at a path with a space, /dev/shm. (The
# file system type of a Storage Bucket's mount is not documented: any type but the container's own disks counts.)
MOUNTINFO = """\
600 500 0:50 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
601 600 0:51 / /proc rw,nosuid - proc proc rw
602 600 0:52 / /dev/shm rw,nosuid - tmpfs shm rw,size=65536k
603 600 0:53 / /data rw,relatime shared:9 - fuse.hf-mount hf-mount rw,user_id=0
604 600 0:54 / /mnt/my\\040bucket rw - fuse.hf-mount hf-mount rw
"""


@pytest.fixture
def mountinfo(tmp_path) -> Path:
    path = tmp_path / "mountinfo"
    path.write_text(MOUNTINFO)
    return path


@pytest.mark.parametrize(
    "folder, mount_point, fs_type, own",
    [
        ("/data/mlm-studio-runs", "/data", "fuse.hf-mount", True),
        ("/data", "/data", "fuse.hf-mount", True),
        ("/home/user/app/runs", "/", "overlay", False),
        ("/dev/shm/runs", "/dev/shm", "tmpfs", False),
        ("/database/runs", "/", "overlay", False),  # /data is a mount point, not a prefix of the name
        ("/mnt/my bucket/runs", "/mnt/my bucket", "fuse.hf-mount", True),
    ],
)
def test_the_mount_holding_the_runs_folder_says_whether_runs_survive_a_restart(
    mountinfo, folder, mount_point, fs_type, own
):
    point, kind = mount_of(Path(folder), mountinfo)
    assert (point, kind) == (Path(mount_point), fs_type)
    storage = RunsStorage(Path(folder), point, kind)
    assert storage.own_mount is own
    said = storage.describe(on_space=True)
    assert ("survive a restart" in said) is own and ("every restart wipes" in said) is not own


def test_without_a_mount_table_the_folder_counts_as_the_containers_disk(tmp_path):
    assert mount_of(tmp_path, tmp_path / "missing") == (Path("/"), "")


def test_the_check_writes_renames_reads_back_and_leaves_nothing(tmp_path):
    storage = check_runs_folder(tmp_path / "runs")
    assert storage.path == tmp_path / "runs" and list(storage.path.iterdir()) == []
    assert "this machine's disk" in storage.describe(on_space=False)


def test_the_app_refuses_to_start_on_a_runs_folder_it_cannot_use_in_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**os.environ, "MLM_STUDIO_RUNS": str(blocker / "runs"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: runs folder: ") and "Traceback" not in done.stderr


def test_info_says_where_runs_are_kept(tmp_path):
    env = {**os.environ, "MLM_STUDIO_RUNS": str(tmp_path / "runs"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "mlm_core", "info"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    storage = RunsStorage(tmp_path / "runs", *mount_of(tmp_path))
    assert f"runs folder: {tmp_path / 'runs'}, {storage.where()}\n" in done.stdout, done.stdout
    assert ("survives a restart" in storage.where()) is storage.own_mount


def test_a_new_run_never_takes_the_folder_of_another(tmp_path, monkeypatch):
    import secrets

    from mlm_core.config import TrainConfig
    from mlm_core.service.launch import new_run

    draws = iter(["0000beef", "0000beef", "0000cafe"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(draws))
    monkeypatch.setattr("time.strftime", lambda _: "20261207-120000")
    config = TrainConfig(model="starter", dataset="builtin")
    first = Path(new_run(config, tmp_path).output_dir)
    first.mkdir()  # a queued run's folder, with no checkpoint yet
    second = Path(new_run(config, tmp_path).output_dir)
    assert first.name == "20261207-120000-starter-builtin-0000beef" and second.name.endswith("-0000cafe")

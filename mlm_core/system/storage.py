"""Where the runs are kept: the runs folder checked at start (a write, a rename, a read back), and the file system
it lies on. On a Space only a mounted volume (a Storage Bucket) outlives a restart, not the container's own disk."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from mlm_core.system.atomic_files import TMP_PREFIX, read_json, write_json

MOUNTINFO = Path("/proc/self/mountinfo")
CONTAINER_DISKS = {"overlay", "overlayfs", "aufs", "tmpfs", "ramfs", "rootfs"}  # gone when the container goes


@dataclass(frozen=True)
class RunsStorage:
    """The runs folder and the mount it lies on (its mount point and file system type, "" when unknown)."""

    path: Path
    mount_point: Path
    fs_type: str

    @property
    def own_mount(self) -> bool:
        """Whether the folder lies on a volume mounted for it, not on the container's own disk."""
        return self.mount_point != Path("/") and self.fs_type not in CONTAINER_DISKS

    def where(self) -> str:
        """The mount in words, for the command line."""
        return (
            f"on its own mount, {self.mount_point} ({self.fs_type}): survives a restart of a Space"
            if self.own_mount
            else f"on {self.mount_point} ({self.fs_type or 'unknown'}), which a restart of a Space wipes"
        )

    def describe(self, on_space: bool) -> str:
        """One sentence for the page: where runs are kept and, on a Space, whether they survive a restart."""
        if not on_space:
            return f"Runs are kept in `{self.path.name}/` on this machine's disk."
        if self.own_mount:
            return (
                f"Runs are kept on the volume mounted at `{self.mount_point}` ({self.fs_type}): they survive a "
                "restart of the Space."
            )
        return (
            "⚠️ Runs are kept on the Space's own disk, which every restart wipes (a push restarts it, free "
            "hardware sleeps after 48 h idle): attach a Storage Bucket at `/data` to keep them."
        )


def check_runs_folder(root: Path, mountinfo: Path = MOUNTINFO) -> RunsStorage:
    """Make `root`, then write a small file in it as every run writes its files (a temp file, fsync, rename), read
    it back and remove it; the folder and its mount. ValueError in plain words when any of it fails (a read-only or
    full volume, a missing mount, a file where the folder should be)."""
    probe = root / f"{TMP_PREFIX}runs-folder-check.json"  # a name the crash cleanup removes, were it left behind
    written = {"check": secrets.token_hex(16)}
    try:
        write_json(probe, written)
        if read_json(probe) != written:
            raise OSError("what was read back differs from what was written")
        probe.unlink()
    except OSError as error:
        raise ValueError(
            f"runs folder: {root} cannot hold runs ({error.strerror or error}); set MLM_STUDIO_RUNS to "
            "a writable folder, or mount the bucket read-write"
        ) from None
    mount_point, fs_type = mount_of(root.resolve(), mountinfo)
    return RunsStorage(root, mount_point, fs_type)


def mount_of(path: Path, mountinfo: Path = MOUNTINFO) -> tuple[Path, str]:
    """(mount point, file system type) of the mount holding the absolute `path`: the longest mount point that
    contains it in `mountinfo` (the kernel's `/proc/self/mountinfo` format); (/, "") when that cannot be read."""
    try:
        lines = mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return Path("/"), ""
    best, fs_type = Path("/"), ""
    for line in lines:
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        point = Path(_unescaped(fields[4]))
        kind = fields[fields.index("-") + 1] if fields.index("-") + 1 < len(fields) else ""
        if path.is_relative_to(point) and len(point.parts) >= len(best.parts):
            best, fs_type = point, kind
    return best, fs_type


def _unescaped(field: str) -> str:
    """A mountinfo path with its octal escapes (`\\040` for a space) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda octal: chr(int(octal[1], 8)), field)

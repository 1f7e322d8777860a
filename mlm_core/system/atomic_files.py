"""Atomic writes: a file or folder appears complete under its name, or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".mlm-studio-tmp-"  # only names with this prefix are ours to clean up
TORN_TAIL_WINDOW = 1 << 20  # one event line is far shorter: only the end of a file is read


def write_json(path: Path, data: Any) -> None:
    """Write JSON to a temp file beside `path`, fsync it, then rename it over `path`; an error of the write passes
    through (re-raised) after the temp file is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be read
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    """Parsed JSON of a file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp folder to fill; on success it replaces `target` in one rename, on failure it is removed and
    the error passes through (re-raised)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
        for file in tmp.rglob("*"):
            if file.is_file():
                _fsync_file(file)
        if target.exists():  # rename the old one aside first, so `target` is never half-written
            old = target.with_name(f"{TMP_PREFIX}old-{target.name}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def link_or_copy(source: Path, target: Path) -> None:
    """Make `target` a hard link to the file `source` (a copy where the file system has no hard links), replacing
    any `target` in one rename."""
    tmp = target.with_name(f"{TMP_PREFIX}{target.name}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def remove_partial(folder: Path) -> list[Path]:
    """Delete what an interrupted atomic write left in `folder` (and its sub-folders); return what went."""
    if not folder.is_dir():
        return []
    leftovers = sorted(p for p in folder.rglob(f"{TMP_PREFIX}*"))
    for path in leftovers:
        original = path.with_name(path.name.removeprefix(f"{TMP_PREFIX}old-"))
        if path.name.startswith(f"{TMP_PREFIX}old-") and not original.exists():
            os.replace(path, original)  # the crash came between the two renames: the old copy is the good one
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return leftovers


def _fsync_file(path: Path) -> None:
    """Flush a file's content to disk."""
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (the renames) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def trim_torn_tail(path: Path) -> None:
    """Cut an append-only text file back to its last complete line (a crash can tear the line being written)."""
    with path.open("rb+") as handle:
        end = handle.seek(0, os.SEEK_END)
        start = max(0, end - TORN_TAIL_WINDOW)
        handle.seek(start)
        tail = handle.read()
        if tail and not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n")
            handle.truncate(start + cut + 1 if cut >= 0 else 0)

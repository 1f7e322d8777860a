"""Atomic writes: a file or folder appears complete under its name, or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
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


CACHED_FILES = 20_000  # JSON files `read_json_cached` keeps parsed (run records: a few per run)
_parsed: OrderedDict[tuple[str, str], tuple[tuple[int, int, int], Any]] = OrderedDict()
_parsed_lock = threading.Lock()


def read_json_cached(path: Path, parse: Callable[[Any], Any] | None = None, kind: str = "") -> Any:
    """`read_json` (then `parse` of it, which `kind` names), done again only when the file changed: its inode, size
    or modification time (the writes here are atomic renames, so each makes a new inode); one `stat` otherwise. What
    `parse` raises passes through, not kept. Callers must not change what it returns."""
    try:
        stat = os.stat(path)
    except OSError:
        stat = None
    key, name = (stat.st_ino, stat.st_size, stat.st_mtime_ns) if stat else None, (str(path), kind)
    with _parsed_lock:
        hit = _parsed.get(name)
        if hit is not None and hit[0] == key:
            _parsed.move_to_end(name)
            return hit[1]
    value = read_json(path) if stat else None
    if parse is not None:
        value = parse(value)
    with _parsed_lock:
        _parsed[name] = (key, value)
        while len(_parsed) > CACHED_FILES:
            _parsed.popitem(last=False)
    return value


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

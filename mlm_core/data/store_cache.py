"""Prepared data kept between runs: token stores cached under a fingerprint of what made them, size-capped.

The key hashes the data's identity (a file's content, a hub dataset's Arrow fingerprint, the built-in corpus of this
Python), the slice, the text column setting, the tokenizer (its full serialisation) and whether word-start flags
are stored. Block size, eval fraction and seed are not in it: blocks and the split are views computed when loaded.
So Start after Preview, a resume, or another run on the same data reuse the store. After each new store, the least
recently used ones go until the folder is under `MLM_STUDIO_DATA_CACHE_MB` (default 2048).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from mlm_core.data.token_store import META, STORE_VERSION
from mlm_core.system import settings

USED = "last-used"  # touched on every use: its time orders entries for cleaning
STALE_S = 6 * 3600  # unfinished builds older than this belong to no live process
_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime, inode) -> content digest, so Preview then Start hashes once


def cap_bytes() -> int:
    """The cache's size cap in bytes, from MLM_STUDIO_DATA_CACHE_MB."""
    return int(settings.current().data_cache_mb * 2**20)


def default_cache_dir(output_dir: str | os.PathLike) -> Path | None:
    """Where a run's prepared data is cached: MLM_STUDIO_DATA_CACHE if set ('off' for none), else `.data-cache`
    beside the run folder (in the runs folder, so a Space keeps it on its persistent disk)."""
    chosen = settings.current().data_cache
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "0", "off", "none") else Path(chosen)
    return Path(output_dir).resolve().parent / ".data-cache"


def file_digest(path: Path) -> str:
    """BLAKE2b of a file's bytes, remembered for an unchanged file."""
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if memo not in _DIGESTS:
        digest = hashlib.blake2b(digest_size=20)
        with path.open("rb") as stream:
            while chunk := stream.read(8 << 20):
                digest.update(chunk)
        _DIGESTS[memo] = digest.hexdigest()
    return _DIGESTS[memo]


def tokenizer_fingerprint(tokenizer) -> str:
    """A digest of everything that decides a tokenizer's ids: its full serialisation (fast), else its vocabulary
    (custom pre-tokenizer) or pickled state (slow)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        try:
            spec = backend.to_str()
        except Exception:  # a custom Python pre-tokenizer (RoFormer's jieba): its class and vocabulary decide
            spec = json.dumps([sorted(tokenizer.get_vocab().items()), repr(sorted(tokenizer.init_kwargs.items()))])
    else:  # a slow tokenizer: datasets' own hasher (as `map` fingerprints its function)
        from datasets.fingerprint import Hasher

        spec = Hasher.hash(tokenizer)
    text = json.dumps([type(tokenizer).__name__, spec, sorted(map(str, tokenizer.all_special_tokens))])
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()


def store_key(source: str, tokenizer: str, text_column: str | None, word_starts: bool) -> str:
    """The cache key of a token store."""
    text = json.dumps(
        {
            "version": STORE_VERSION,
            "source": source,
            "tokenizer": tokenizer,
            "column": text_column,
            "word_starts": word_starts,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def find(cache_dir: Path, keys: list[str]) -> Path | None:
    """The first complete entry among `keys`, marked as just used."""
    for key in keys:
        entry = cache_dir / key
        if (entry / META).is_file():
            touch(entry)
            return entry
    return None


def touch(entry: Path) -> None:
    """Mark an entry as used now."""
    try:
        (entry / USED).touch()
    except OSError:
        pass


def publish(folder: Path, entry: Path) -> Path:
    """Move a finished store into place as `entry` (another process may have been first: then keep theirs); the
    rename's OSError is re-raised when no finished store is there."""
    try:
        os.rename(folder, entry)
    except OSError:
        if not (entry / META).is_file():
            raise
        shutil.rmtree(folder, ignore_errors=True)
    touch(entry)
    return entry


def size_of(folder: Path) -> int:
    """Bytes of the files in a folder."""
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def clean(cache_dir: Path, cap: int | None = None, keep: tuple[Path, ...] = ()) -> list[Path]:
    """Remove unfinished builds older than STALE_S, then least recently used entries until under `cap`."""
    cap = cap_bytes() if cap is None else cap
    removed, entries, now = [], [], time.time()
    for folder in cache_dir.iterdir() if cache_dir.is_dir() else ():
        if not folder.is_dir():
            continue
        if not (folder / META).is_file():
            if now - folder.stat().st_mtime > STALE_S:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            continue
        used = folder / USED
        entries.append((used.stat().st_mtime if used.exists() else folder.stat().st_mtime, folder, size_of(folder)))
    total = sum(size for _, _, size in entries)
    for _, folder, size in sorted(entries):
        if total <= cap:
            break
        if folder in keep:
            continue
        shutil.rmtree(folder, ignore_errors=True)  # a process that has it mapped keeps reading it (POSIX)
        removed.append(folder)
        total -= size
    return removed

"""Whether the Hugging Face hub can be reached (decided quickly, remembered a while), and what counts as a hub id."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

_TTL_S = 60.0
_TIMEOUT_S = 1.5
_lock = threading.Lock()
_cache: dict[str, tuple[float, bool]] = {}


def offline_by_setting() -> bool:
    """True when the user asked for offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def is_online() -> bool:
    """True when the hub answers a TCP connection within 1.5 s; cached for a minute."""
    if offline_by_setting():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    with _lock:
        checked_at, online = _cache.get(endpoint, (0.0, False))
        if time.monotonic() - checked_at < _TTL_S:
            return online
        online = _can_connect(endpoint)
        _cache[endpoint] = (time.monotonic(), online)
        return online


def _can_connect(endpoint: str) -> bool:
    """One TCP connection attempt to the endpoint's host and port."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=_TIMEOUT_S):
            return True
    except OSError:
        return False


# A hub repository id: an optional namespace and a name, of letters, digits, '.', '_' and '-'.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")
NO_LOCAL_PATHS_VARIABLE = "MLM_STUDIO_NO_LOCAL_PATHS"  # set for this process and the children it starts


def forbid_local_paths() -> None:
    """From now on, names people type mean hub repositories (or the built-in ones), never files on this machine:
    in this process and in every child it starts (a Preview, a run)."""
    os.environ[NO_LOCAL_PATHS_VARIABLE] = "1"


def local_paths_allowed() -> bool:
    """Whether a typed name may be a folder or file on this machine (the CLI, or the app on your own machine)."""
    return os.environ.get(NO_LOCAL_PATHS_VARIABLE) != "1"


def check_hub_name(name: str, field: str, kind: str) -> None:
    """Where local paths are forbidden: ValueError unless `name` is a hub id that is not also a path here.

    A name that is a path here gets the same words as a name the hub does not have (`not_on_hub`), so that nobody
    learns from the answer which files this machine holds.
    """
    if local_paths_allowed():
        return
    if not _HUB_ID.fullmatch(name) or ".." in name:
        raise ValueError(f"{field}: use a Hugging Face hub id such as {_EXAMPLES[kind]}")
    if Path(name).exists():
        raise not_on_hub(name, field, kind)


def not_on_hub(name: str, field: str, kind: str) -> ValueError:
    """The refusal for a hub id the hub does not serve us: a ValueError, for the caller to raise."""
    return ValueError(f"{field}: the hub has no {kind} called {name} that can be read here (it may not exist, or be "
                      "private or gated)")


_EXAMPLES = {"model": "'distilbert/distilroberta-base', 'starter' or a finished run",
             "dataset": "'dany0407/eli5_category', the built-in corpus or your own upload"}

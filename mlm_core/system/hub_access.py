"""Whether the Hugging Face hub can be reached (decided quickly, remembered a while), and what counts as a hub id."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from huggingface_hub import constants
from huggingface_hub.utils import HFValidationError, get_session, validate_repo_id

_TTL_S = 60.0
_TIMEOUT_S = 1.5
_PROBE = "/api/models?limit=1"  # cheap: one model's entry (a HEAD, so not even that); a stand-in answers 404
_lock = threading.Lock()
_cache: dict[str, tuple[float, bool]] = {}


def offline_by_setting() -> bool:
    """True when the user asked for offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_endpoint() -> str:
    """The hub this process talks to: HF_ENDPOINT as it is now, else huggingface_hub's own (huggingface.co)."""
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_online() -> bool:
    """True when the hub answers an HTTP request within 1.5 s; cached for a minute. Offline by setting: False,
    and no request is made."""
    if offline_by_setting():
        return False
    endpoint = hub_endpoint()
    with _lock:
        checked_at, online = _cache.get(endpoint, (0.0, False))
        if time.monotonic() - checked_at < _TTL_S:
            return online
        online = _can_connect(endpoint)
        _cache[endpoint] = (time.monotonic(), online)
        return online


def _can_connect(endpoint: str) -> bool:
    """One HEAD request through huggingface_hub's own HTTP session (its proxies, certificates and offline switch,
    no token): any answer but a server error means the hub is there."""
    try:
        response = get_session().head(endpoint + _PROBE, timeout=_TIMEOUT_S)
    except Exception:  # refused, timed out, no such host, a bad HF_ENDPOINT, huggingface_hub's offline mode
        return False
    return response.status_code < 500


def is_hub_id(name: object) -> bool:
    """Whether `name` is written as a hub repository id ('name' or 'namespace/name'), by huggingface_hub's own rule
    (`validate_repo_id`): letters, digits, '-', '_' and '.', at most 96 characters a part, no '--' or '..'."""
    if not isinstance(name, str):
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def means_hub_repo(name: object) -> bool:
    """Whether a name someone typed means a hub repository here: a hub id that is not a file or folder on this
    machine (a folder of that name wins, as loading does; where local paths are forbidden it was refused)."""
    return is_hub_id(name) and not Path(str(name)).exists()


def check_hub_id(name: object, field: str, advice: str, namespace: bool = False) -> str:
    """`name` when it is a hub id (with a namespace, 'owner/name', when asked); else ValueError(f"{field}: {advice}"),
    the words the form shows."""
    if not is_hub_id(name) or (namespace and "/" not in str(name)):
        raise ValueError(f"{field}: {advice}")
    return str(name)


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
    check_hub_id(name, field, f"use a Hugging Face hub id such as {_EXAMPLES[kind]}")
    if Path(name).exists():
        raise not_on_hub(name, field, kind)


def not_on_hub(name: str, field: str, kind: str) -> ValueError:
    """The refusal for a hub id the hub does not serve us: a ValueError, for the caller to raise."""
    return ValueError(
        f"{field}: the hub has no {kind} called {name} that can be read here (it may not exist, or be private or gated)"
    )


_EXAMPLES = {
    "model": "'distilbert/distilroberta-base', 'starter' or a finished run",
    "dataset": "'dany0407/eli5_category', the built-in corpus or your own upload",
}

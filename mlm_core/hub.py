"""Whether the Hugging Face hub can be reached, decided quickly and remembered for a while."""

from __future__ import annotations

import os
import socket
import threading
import time
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

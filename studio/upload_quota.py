"""A disk budget for uploads in public mode: Gradio's upload route takes files from anyone, form or not, so each
client address may post so many bytes an hour, and everyone together so many; Gradio deletes uploads after an hour
(`delete_cache`), and a run keeps its own copy of its file."""

from __future__ import annotations

import threading
import time
from collections import deque

from starlette.types import ASGIApp, Receive, Scope, Send

from mlm_core.service.hosting import settings

WINDOW_S = 3600
UPLOADS_EXPIRE_S = 3600  # Gradio's cache of uploads and downloads: files older than this are deleted ...
CACHE_SWEEP_S = 600  # ... this often


class UploadQuota:
    """ASGI middleware: refuse (HTTP 429, in words) an upload that would take its address past `per_address` bytes,
    or everyone past `total` bytes, in the last hour; an upload that does not say its size is refused (HTTP 411)."""

    def __init__(self, app: ASGIApp, address_of, per_address: int | None = None, total: int | None = None):
        self.app, self.address_of = app, address_of
        self.per_address = per_address or int(settings.current().upload_mb_per_hour * 2**20)
        self.total = total or int(settings.current().upload_mb_total_per_hour * 2**20)
        self._sent: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/upload"):
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        length = headers.get("content-length", "")
        if not length.isdigit():
            await _refuse(send, 411, "Uploads must say their size (Content-Length).")
            return
        refusal = self._take(self.address_of(headers, (scope.get("client") or ("unknown", 0))[0]), int(length))
        if refusal:
            await _refuse(send, 429, refusal)
            return
        await self.app(scope, receive, send)

    def _take(self, address: str, size: int) -> str | None:
        """Count `size` bytes against `address` if both budgets allow; the refusal in words otherwise."""
        now = time.monotonic()
        with self._lock:
            for key in list(self._sent):
                entries = self._sent[key]
                while entries and now - entries[0][0] > WINDOW_S:
                    entries.popleft()
                if not entries:
                    del self._sent[key]
            mine = sum(n for _, n in self._sent.get(address, ()))
            everyone = sum(n for entries in self._sent.values() for _, n in entries)
            if mine + size > self.per_address:
                return (
                    f"Upload refused: each address may upload {self.per_address / 2**20:,.0f} MB an hour here; "
                    "try again later."
                )
            if everyone + size > self.total:
                return "Upload refused: this Space has taken all the uploads it can this hour; try again later."
            self._sent.setdefault(address, deque()).append((now, size))
        return None


async def _refuse(send: Send, status: int, text: str) -> None:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

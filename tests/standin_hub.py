"""A stand-in for the Hugging Face hub on 127.0.0.1 (the app reaches it through HF_ENDPOINT): it records every
request and the token it carried, creates repositories, and knows no model or dataset."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StandInHub:
    """Records (method, path, Authorization header) of every request it receives."""

    def __init__(self):
        self.requests: list[tuple[str, str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                hub.requests.append((self.command, self.path, self.headers.get("Authorization") or ""))
                created = self.command == "POST" and self.path.startswith("/api/repos/create")
                body = json.dumps({"url": "http://hub/x", "name": "x"} if created else {"error": "not here"})
                self.send_response(200 if created else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body.encode())

            do_GET = do_POST = do_HEAD = do_PUT = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def tokens(self) -> set[str]:
        """Every Authorization header seen so far."""
        return {auth for _, _, auth in self.requests}

    def close(self) -> None:
        self.server.shutdown()

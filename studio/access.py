"""Who is asking, and what they may do: a visitor's identity, the owner's rights, and the rules of public mode."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

import gradio as gr

from mlm_core.rundir import RunDir

_TOKEN = re.compile(r"[0-9a-f]{32}")


def new_visitor_token() -> str:
    """A secret id for a browser, kept in its local storage so that a reload is still the same visitor."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Visitor:
    """One visitor: `key` is what runs record as their owner (a hash: the browser's secret never reaches disk)."""

    key: str
    user: str | None = None  # the Hugging Face user name, when signed in
    admin: bool = False

    def owns(self, run: RunDir) -> bool:
        """Whether the visitor started the run (in this browser, or signed in as the same user)."""
        identity = run.identity()
        return identity.owner == self.key or (self.user is not None and identity.user == self.user)


@dataclass(frozen=True)
class Access:
    """The rules: private (one trusted user may do everything) or public (visitors act on their own runs only)."""

    public: bool = False

    def visitor(self, token: object, request: gr.Request | None) -> Visitor:
        """The visitor behind a request: its browser's secret, else (API clients) its session."""
        secret = token if isinstance(token, str) and _TOKEN.fullmatch(token) else None
        if secret is None:
            session = getattr(request, "session_hash", None) or "anonymous"
            secret = f"session:{session}"
        key = hashlib.sha256(secret.encode()).hexdigest()[:32]
        return Visitor(key=key, user=getattr(request, "username", None), admin=not self.public)

    def may_control(self, visitor: Visitor, run: RunDir) -> bool:
        """Whether the visitor may stop, resume, cancel, delete, relabel or push the run."""
        return visitor.admin or visitor.owns(run)

    def check_control(self, visitor: Visitor, run: RunDir, action: str) -> None:
        """ValueError in plain words when the visitor may not act on the run."""
        if not self.may_control(visitor, run):
            raise ValueError(f"run: {run.name} was started by another visitor; only they can {action} it")

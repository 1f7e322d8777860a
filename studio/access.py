"""Who is asking, and what they may do: a visitor's identity, the owner's rights, and the limits of public mode."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import shutil
import threading
import time
from dataclasses import dataclass, field

import gradio as gr

from mlm_core.runs.records import QUEUED, RUNNING, Budget
from mlm_core.runs.run_dir import RunDir

from .environment import public_mode

_TOKEN = re.compile(r"[0-9a-f]{32}")
UNLOCK_TRIES, UNLOCK_WINDOW_S = 5, 600  # wrong owner passwords allowed per visitor in ten minutes


def new_visitor_token() -> str:
    """A secret id for a browser, kept in its local storage so that a reload is still the same visitor."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Visitor:
    """One visitor: `key` is what runs record as their owner (a hash: the browser's secret never reaches disk)."""

    key: str
    user: str | None = None  # the Hugging Face user name, when signed in
    admin: bool = False  # the Space's owner (or anyone, in private mode)

    def owns(self, run: RunDir) -> bool:
        """Whether the visitor started the run (in this browser, or signed in as the same user)."""
        identity = run.identity()
        return identity.owner == self.key or (self.user is not None and identity.user == self.user)


def _env_number(name: str, default: float | None, kind=float) -> float | None:
    """A limit from the environment: a number, or 0 / 'none' for no limit."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"0", "none", "off"}:
        return None
    return kind(raw)


@dataclass(frozen=True)
class Limits:
    """What one visitor's run may take in public mode; each has an environment variable (0 or 'none': no limit)."""

    run_steps: int | None = 2000  # MLM_STUDIO_MAX_RUN_STEPS
    run_minutes: float | None = 30.0  # MLM_STUDIO_MAX_RUN_MINUTES
    active_runs: int | None = 1  # MLM_STUDIO_MAX_ACTIVE_RUNS: queued or training, per visitor
    probes: int = 20  # MLM_STUDIO_MAX_PROBES
    probe_chars: int = 300
    min_free_disk_gb: float | None = 2.0  # MLM_STUDIO_MIN_FREE_DISK_GB: new runs wait for room on the disk

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults above, changed by the environment; ValueError for a setting that is not a number."""
        return cls(run_steps=_env_number("MLM_STUDIO_MAX_RUN_STEPS", cls.run_steps, int),
                   run_minutes=_env_number("MLM_STUDIO_MAX_RUN_MINUTES", cls.run_minutes),
                   active_runs=_env_number("MLM_STUDIO_MAX_ACTIVE_RUNS", cls.active_runs, int),
                   probes=int(_env_number("MLM_STUDIO_MAX_PROBES", cls.probes, int) or cls.probes),
                   min_free_disk_gb=_env_number("MLM_STUDIO_MIN_FREE_DISK_GB", cls.min_free_disk_gb))

    @property
    def budget(self) -> Budget:
        """The budget of a visitor's run."""
        return Budget(steps=self.run_steps, minutes=self.run_minutes)

    def describe(self) -> str:
        """The limits in one line, for the page."""
        runs = f"{self.active_runs} waiting or training run per visitor" if self.active_runs else "no run limit"
        return f"each run trains for at most {self.budget.describe()}; {runs}; up to {self.probes} probe sentences"


@dataclass
class Access:
    """The rules: private (one trusted user may do everything) or public (visitors act on their own runs only)."""

    public: bool = False
    limits: Limits = field(default_factory=Limits)
    admins: frozenset[str] = frozenset()  # Hugging Face user names with the owner's rights
    admin_password: str | None = None
    server_token: str | None = None  # the owner's HF_TOKEN; in public mode it is not in the environment
    _unlocked: set[str] = field(default_factory=set)
    _tries: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_env(cls, server_token: str | None) -> Access:
        """The mode, owner and limits this process runs with; ValueError (public mode) for a limit that is not a
        number."""
        admins = {name.strip() for name in os.environ.get("MLM_STUDIO_ADMINS", "").split(",") if name.strip()}
        if os.environ.get("SPACE_AUTHOR_NAME"):
            admins.add(os.environ["SPACE_AUTHOR_NAME"])
        public = public_mode()
        return cls(public=public, limits=Limits.from_env() if public else Limits(None, None, None),
                   admins=frozenset(admins), admin_password=os.environ.get("MLM_STUDIO_ADMIN_PASSWORD") or None,
                   server_token=server_token if public else None)

    def visitor(self, token: object, request: gr.Request | None) -> Visitor:
        """The visitor behind a request: its browser's secret, else (API clients) its session."""
        secret = token if isinstance(token, str) and _TOKEN.fullmatch(token) else None
        if secret is None:
            secret = f"session:{getattr(request, 'session_hash', None) or 'anonymous'}"
        key = hashlib.sha256(secret.encode()).hexdigest()[:32]
        user = getattr(request, "username", None)
        user = user if isinstance(user, str) and user else None
        admin = not self.public or (user is not None and user in self.admins) or key in self._unlocked
        return Visitor(key=key, user=user, admin=admin)

    def unlock(self, visitor: Visitor, password: object) -> None:
        """Give this browser the owner's rights if the password is the owner's; ValueError otherwise."""
        if not self.admin_password:
            raise ValueError("password: the owner has not set MLM_STUDIO_ADMIN_PASSWORD, so nobody can unlock here")
        now = time.monotonic()
        with self._lock:
            tries = [t for t in self._tries.get(visitor.key, []) if now - t < UNLOCK_WINDOW_S]
            if len(tries) >= UNLOCK_TRIES:
                raise ValueError("password: too many wrong passwords; wait ten minutes")
            if isinstance(password, str) and hmac.compare_digest(password.encode(), self.admin_password.encode()):
                self._unlocked.add(visitor.key)
                self._tries.pop(visitor.key, None)
                return
            self._tries[visitor.key] = [*tries, now]
        raise ValueError("password: that is not the owner's password")

    def may_control(self, visitor: Visitor, run: RunDir) -> bool:
        """Whether the visitor may stop, resume, delete, relabel, download or push the run."""
        return visitor.admin or visitor.owns(run)

    def check_control(self, visitor: Visitor, run: RunDir, action: str) -> None:
        """ValueError in plain words when the visitor may not act on the run."""
        if not self.may_control(visitor, run):
            raise ValueError(f"run: {run.name} was started by another visitor; only they (or the owner) can "
                             f"{action} it")

    def check_start(self, visitor: Visitor, runs: list[RunDir], root, probes: tuple[str, ...]) -> Budget:
        """Whether the visitor may queue another run now; the budget it gets. ValueError in plain words for too many
        or too long probes, a nearly full disk, or (the owner excepted) too many runs waiting or training."""
        limits = self.limits
        if len(probes) > limits.probes:
            raise ValueError(f"probes: at most {limits.probes} probe sentences (got {len(probes):,})")
        if any(len(probe) > limits.probe_chars for probe in probes):
            raise ValueError(f"probes: each probe sentence may have at most {limits.probe_chars} characters")
        if limits.min_free_disk_gb and shutil.disk_usage(root).free < limits.min_free_disk_gb * 2**30:
            raise ValueError("run: the server's disk is nearly full; delete old runs or try again later")
        if visitor.admin:
            return Budget()
        active = [run for run in runs if run.status() in {QUEUED, RUNNING} and visitor.owns(run)]
        if limits.active_runs is not None and len(active) >= limits.active_runs:
            raise ValueError(f"run: you already have {len(active)} run waiting or training; here each visitor may "
                             f"have {limits.active_runs} at a time, so wait for it or stop it")
        return limits.budget

    def push_token(self, visitor: Visitor, typed: object, signed_in: str | None) -> str:
        """The token a push uses: the one typed, else the visitor's own sign-in, else (owner only) the server's;
        ValueError in public mode when there is none this visitor may use."""
        if isinstance(typed, str) and typed.strip():
            return typed.strip()
        if signed_in:
            return signed_in
        if not self.public:
            return os.environ.get("HF_TOKEN", "")
        if visitor.admin and self.server_token:
            return self.server_token
        raise ValueError("token: paste a Hugging Face token that may write (or sign in); the server's own token is "
                         "only for its owner")

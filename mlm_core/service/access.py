"""Who is asking, and what they may do: a visitor's identity, the owner's rights, and the limits of public mode."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mlm_core.config import NO_TRACKER, check_report_to, trackers
from mlm_core.runs.records import QUEUED, RUNNING, Budget, RunIdentity
from mlm_core.runs.retention import Retention
from mlm_core.runs.run_dir import RunDir
from mlm_core.system import settings
from mlm_core.system.settings import Settings

_TOKEN = re.compile(r"[0-9a-f]{32}")
UNLOCK_WINDOW_S = 600
UNLOCK_TRIES = 5  # wrong owner passwords allowed per client address in ten minutes ...
UNLOCK_TRIES_TOTAL = 30  # ... and from all addresses together (a script with many addresses meets this one)
SALT_FILE = ".visitor-salt"  # in the runs folder: client addresses are kept only as salted hashes
PUBLIC_TRACKERS = (NO_TRACKER, "trackio")  # in public mode a run's metrics stay on this server (trackio: offline)


def new_visitor_token() -> str:
    """A secret id for a browser, kept in its local storage so that a reload is still the same visitor."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class Visitor:
    """One visitor: `key` is what runs record as their owner (a hash: the browser's secret never reaches disk);
    `address` (a salted hash of the client address the server sees) and `user` are what limits count on, since a
    script can send a fresh browser secret with every call but not a fresh address or account."""

    key: str
    address: str = ""
    user: str | None = None  # the Hugging Face user name, when signed in
    admin: bool = False  # the Space's owner (or anyone, in private mode)

    def owns(self, run: RunDir) -> bool:
        """Whether the visitor started the run (in this browser, or signed in as the same user)."""
        return self.started(run.identity())

    def started(self, identity: RunIdentity) -> bool:
        """Whether the visitor started the run of this identity (`owns`)."""
        return identity.owner == self.key or (self.user is not None and identity.user == self.user)

    def counts(self, run: RunDir) -> bool:
        """Whether the run counts against this visitor's limits: theirs, or started from their address."""
        return self.owns(run) or (bool(self.address) and run.identity().address == self.address)


def forwarded_address(headers, peer: str, trusted_proxies: int) -> str:
    """With `trusted_proxies` proxies in front (a Space has one), the address the outermost trusted proxy put in
    X-Forwarded-For (entries a client adds itself come before it); else the connection's `peer`."""
    forwarded = [part.strip() for part in (headers.get("x-forwarded-for") or "").split(",") if part.strip()]
    if trusted_proxies and len(forwarded) >= trusted_proxies:
        return forwarded[-trusted_proxies]
    return peer


def _salt(root: Path) -> bytes:
    """The runs folder's secret salt for address hashes, made on first use (readable by this user only)."""
    path = root / SALT_FILE
    if not path.is_file():
        root.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(secrets.token_bytes(16))
    return path.read_bytes()


@dataclass(frozen=True)
class Limits:
    """What one visitor's run may take in public mode (None: no limit); each is a setting (`Settings.max_*`)."""

    run_steps: int | None = Settings.max_run_steps
    run_minutes: float | None = Settings.max_run_minutes
    active_runs: int | None = Settings.max_active_runs  # queued or training, per visitor and per address
    queued_runs: int | None = Settings.max_queued_runs  # waiting in the queue, from everyone together
    probes: int = Settings.max_probes
    probe_chars: int = 300
    min_free_disk_gb: float | None = Settings.min_free_disk_gb  # new runs wait for room on the disk
    retention: Retention = field(default_factory=Retention)  # visitors' finished runs expire

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits the settings set."""
        return cls(
            run_steps=settings.max_run_steps,
            run_minutes=settings.max_run_minutes,
            active_runs=settings.max_active_runs,
            queued_runs=settings.max_queued_runs,
            probes=settings.max_probes or cls.probes,
            min_free_disk_gb=settings.min_free_disk_gb,
            retention=Retention(
                days=settings.keep_runs_days,
                runs=settings.keep_runs,
                max_bytes=int(settings.runs_max_gb * 1e9) if settings.runs_max_gb else None,
            ),
        )

    @property
    def budget(self) -> Budget:
        """The budget of a visitor's run."""
        return Budget(steps=self.run_steps, minutes=self.run_minutes)

    def describe(self) -> str:
        """The limits in one line, for the page."""
        runs = f"{self.active_runs} waiting or training run per visitor" if self.active_runs else "no run limit"
        runs += f", {self.queued_runs} waiting in all" if self.queued_runs else ""
        kept = f"; {self.retention.describe()}" if self.retention.describe() else ""
        return (
            f"each run trains for at most {self.budget.describe()}; {runs}; up to {self.probes} probe sentences{kept}"
        )


@dataclass
class Access:
    """The rules: private (one trusted user may do everything) or public (visitors act on their own runs only)."""

    public: bool = False
    limits: Limits = field(default_factory=Limits)
    admins: frozenset[str] = frozenset()  # Hugging Face user names with the owner's rights
    admin_password: str | None = None
    server_token: str | None = None  # the owner's HF_TOKEN; in public mode it is not in the environment
    trusted_proxies: int = 0  # MLM_STUDIO_TRUSTED_PROXIES: proxies in front of the app (1 on a Space)
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    _unlocked: set[str] = field(default_factory=set)
    _tries: dict[str, list[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _admitting: threading.Lock = field(default_factory=threading.Lock)
    _said_no_proxy: bool = False

    @classmethod
    def from_settings(cls, server_token: str | None, root: Path | None = None) -> Access:
        """The mode, owner and limits this process runs with (the address salt kept in the runs folder `root`, so
        that limits hold across restarts); ValueError for a setting that is not of its kind."""
        chosen = settings.current()
        admins = {*chosen.admins, *([chosen.space_author] if chosen.space_author else [])}
        public = chosen.is_public
        proxies = chosen.trusted_proxies if chosen.trusted_proxies is not None else int(chosen.on_space)
        return cls(
            public=public,
            limits=Limits.of(chosen) if public else Limits(None, None, None, None),
            admins=frozenset(admins),
            admin_password=chosen.admin_password or None,
            server_token=server_token if public else None,
            trusted_proxies=proxies,
            salt=_salt(root) if root is not None else secrets.token_bytes(16),
        )

    def identify(
        self, token: object, session: str | None = None, user: str | None = None, headers=None, peer: str | None = None
    ) -> Visitor:
        """The visitor behind a request: its browser's secret `token`, else (API clients) its `session`; the user
        signed in (`user`); the address its limits count on, from the request's `headers` and `peer` address
        (none without them)."""
        secret = token if isinstance(token, str) and _TOKEN.fullmatch(token) else None
        if secret is None:
            secret = f"session:{session or 'anonymous'}"
        key = hashlib.sha256(secret.encode()).hexdigest()[:32]
        user = user if isinstance(user, str) and user else None
        address = self.address_key(headers, peer or "unknown") if headers is not None else ""
        admin = not self.public or (user is not None and user in self.admins) or key in self._unlocked
        return Visitor(key=key, address=address, user=user, admin=admin)

    def unlock(self, visitor: Visitor, password: object) -> None:
        """Give this browser the owner's rights if the password is the owner's (compared in constant time); ValueError
        otherwise, and for every try past UNLOCK_TRIES wrong ones from the address (or UNLOCK_TRIES_TOTAL from all)
        in ten minutes."""
        if not self.admin_password:
            raise ValueError("password: the owner has not set MLM_STUDIO_ADMIN_PASSWORD, so nobody can unlock here")
        now = time.monotonic()
        with self._lock:
            recent = {key: [t for t in times if now - t < UNLOCK_WINDOW_S] for key, times in self._tries.items()}
            self._tries = {key: times for key, times in recent.items() if times}
            if len(self._tries.get(visitor.address, [])) >= UNLOCK_TRIES:
                raise ValueError("password: too many wrong passwords from your address; wait ten minutes")
            if sum(map(len, self._tries.values())) >= UNLOCK_TRIES_TOTAL:
                raise ValueError(
                    "password: too many wrong passwords were tried here lately; wait ten minutes (the "
                    "owner can sign in with Hugging Face instead)"
                )
            if isinstance(password, str) and hmac.compare_digest(password.encode(), self.admin_password.encode()):
                self._unlocked.add(visitor.key)
                return
            self._tries.setdefault(visitor.address, []).append(now)
        raise ValueError("password: that is not the owner's password")

    def may_control(self, visitor: Visitor, run: RunDir) -> bool:
        """Whether the visitor may stop, resume, delete, relabel, download or push the run."""
        return visitor.admin or visitor.owns(run)

    def check_control(self, visitor: Visitor, run: RunDir, action: str) -> None:
        """ValueError in plain words when the visitor may not act on the run."""
        if not self.may_control(visitor, run):
            raise ValueError(
                f"run: {run.name} was started by another visitor; only they (or the owner) can {action} it"
            )

    def address_key(self, headers, peer: str) -> str:
        """The salted hash a visitor's limits count on, from a request's headers and peer address. Says once, in the
        log, when a request comes without the proxy's X-Forwarded-For entries that `trusted_proxies` promises: then
        every visitor behind the proxy would count as the proxy's one address."""
        address = forwarded_address(headers, peer, self.trusted_proxies)
        if address == peer and self.trusted_proxies and not self._said_no_proxy:
            self._said_no_proxy = True
            print(
                f"access: a request came without the {self.trusted_proxies} X-Forwarded-For entries that "
                "MLM_STUDIO_TRUSTED_PROXIES promises, so its limits count the connection's address; if every request "
                "does, set MLM_STUDIO_TRUSTED_PROXIES to the number of proxies in front of the app",
                file=sys.stderr,
            )
        return hmac.new(self.salt, address.encode(), "sha256").hexdigest()[:32]

    def check_room(self, root, field: str, needed_bytes: int = 0) -> None:
        """ValueError in plain words (for `field`) when writing `needed_bytes` more would leave the disk of the runs
        folder `root` with less than its reserve free (`min_free_disk_gb`)."""
        reserve = (self.limits.min_free_disk_gb or 0) * 2**30
        if reserve and shutil.disk_usage(root).free - needed_bytes < reserve:
            raise ValueError(f"{field}: the server's disk is nearly full; delete old runs or try again later")

    @contextlib.contextmanager
    def admitting(self) -> Iterator[None]:
        """Held from `check_start` until the run is queued, so that concurrent calls cannot all pass the check."""
        with self._admitting:
            yield

    def check_start(self, visitor: Visitor, runs: list[RunDir], root, probes: tuple[str, ...] = ()) -> Budget:
        """Whether the visitor may make a run active now (Start or Resume); the budget a new run gets. ValueError in
        plain words for too many or too long probes, a nearly full disk, or (the owner excepted) too many runs
        waiting or training from the visitor, their address or their account, or too many waiting in all."""
        limits = self.limits
        if len(probes) > limits.probes:
            raise ValueError(f"probes: at most {limits.probes} probe sentences (got {len(probes):,})")
        if any(len(probe) > limits.probe_chars for probe in probes):
            raise ValueError(f"probes: each probe sentence may have at most {limits.probe_chars} characters")
        self.check_room(root, "run")
        if visitor.admin:
            return Budget()
        statuses = {run: run.status() for run in runs}
        active = [run for run, status in statuses.items() if status in {QUEUED, RUNNING} and visitor.counts(run)]
        if limits.active_runs is not None and len(active) >= limits.active_runs:
            raise ValueError(
                f"run: you already have {len(active)} run waiting or training; here each visitor may "
                f"have {limits.active_runs} at a time, so wait for it or stop it"
            )
        queued = sum(status == QUEUED for status in statuses.values())
        if limits.queued_runs is not None and queued >= limits.queued_runs:
            raise ValueError(
                f"run: {queued} runs are already waiting in the queue, the most this Space takes; try "
                "again when some have trained"
            )
        return limits.budget

    def trackers(self) -> list[str]:
        """The experiment trackers a run started here may report to: those installed, and in public mode only those
        that keep its metrics on this server."""
        return [name for name in trackers() if not self.public or name in PUBLIC_TRACKERS]

    def check_report_to(self, name: str) -> None:
        """ValueError in plain words for a tracker a run started here may not report to: one not installed, or (public
        mode) one that would send the run's metrics off this server."""
        if self.public and name not in PUBLIC_TRACKERS:
            raise ValueError(
                f"report_to: on this public server a run reports only to {' or '.join(self.trackers())}, "
                "so that its metrics stay here"
            )
        check_report_to(name)

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
        raise ValueError(
            "token: paste a Hugging Face token that may write (or sign in); the server's own token is "
            "only for its owner"
        )

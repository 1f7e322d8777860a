"""Every setting the app and its runs read from the environment, read in one place (`current()`), once per process.

Each field names its variable and says what it does; the README's table of settings is this table
(`tests/test_settings.py` holds them together). A process the app starts (a run, a preview) reads its own copy
from the environment it inherits.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

NO_LIMIT = {"0", "none", "off"}
YES, NO = {"1", "t", "true", "yes", "on"}, {"0", "f", "false", "no", "off"}  # "t": as the spaces package reads


def _setting(variable: str, default: object, what: str, shown: str | None = None, **options):
    """A field read from `variable`; `shown` is its default as the README gives it (default: `default`)."""
    return field(
        default=default,
        metadata={"variable": variable, "what": what, "shown": str(default) if shown is None else shown},
        **options,
    )


@dataclass(frozen=True)
class Settings:
    """The app's settings; `from_env` reads them. A limit set to 0 or `none` is no limit (None)."""

    runs: str | None = _setting(
        "MLM_STUDIO_RUNS",
        None,
        "the runs folder",
        "/data/mlm-studio-runs where /data is writable (a Space's bucket), else ./runs",
    )
    public: bool | None = _setting(
        "MLM_STUDIO_PUBLIC",
        None,
        "public mode: visitors act on their own runs only, within the limits `MLM_STUDIO_MAX_*` (1 on, 0 off)",
        "on on a Space, else off",
    )
    admins: tuple[str, ...] = _setting(
        "MLM_STUDIO_ADMINS",
        (),
        "Hugging Face accounts with the owner's rights, comma-separated (the Space's author always has them)",
        "none",
    )
    admin_password: str | None = _setting(
        "MLM_STUDIO_ADMIN_PASSWORD",
        None,
        "the password that unlocks the owner's rights in a browser (public mode)",
        "none",
        repr=False,
    )
    max_run_steps: int | None = _setting(
        "MLM_STUDIO_MAX_RUN_STEPS", 2000, "steps a visitor's run may train (it stops, resumable, with a message)"
    )
    max_run_minutes: float | None = _setting(
        "MLM_STUDIO_MAX_RUN_MINUTES", 30.0, "minutes of training a visitor's run may take", "30"
    )
    max_active_runs: int | None = _setting(
        "MLM_STUDIO_MAX_ACTIVE_RUNS", 1, "runs a visitor, an account or a client address may have waiting or training"
    )
    max_queued_runs: int | None = _setting(
        "MLM_STUDIO_MAX_QUEUED_RUNS", 8, "runs waiting in the queue from everyone together"
    )
    max_probes: int | None = _setting("MLM_STUDIO_MAX_PROBES", 20, "probe sentences per run (300 characters each)")
    min_free_disk_gb: float | None = _setting("MLM_STUDIO_MIN_FREE_DISK_GB", 2.0, "free disk a new run needs", "2")
    keep_runs_days: float | None = _setting(
        "MLM_STUDIO_KEEP_RUNS_DAYS",
        7.0,
        "public mode: visitors' finished runs are deleted this many days after they ended (the owner's are kept)",
        "7",
    )
    keep_runs: int | None = _setting(
        "MLM_STUDIO_KEEP_RUNS", 200, "public mode: visitors' finished runs kept at most; the oldest go first"
    )
    runs_max_gb: float | None = _setting(
        "MLM_STUDIO_RUNS_MAX_GB",
        20.0,
        "public mode: the runs folder's size; past it visitors' oldest finished runs are deleted",
        "20",
    )
    max_upload_mb: int = _setting("MLM_STUDIO_MAX_UPLOAD_MB", 200, "size of an upload")
    upload_mb_per_hour: float = _setting(
        "MLM_STUDIO_UPLOAD_MB_PER_HOUR",
        800.0,
        "what one client address may upload in an hour (uploads expire after an hour)",
        "800",
    )
    upload_mb_total_per_hour: float = _setting(
        "MLM_STUDIO_UPLOAD_MB_TOTAL_PER_HOUR", 4000.0, "what everyone together may upload in an hour", "4000"
    )
    run_memory_mb: float | None = _setting(
        "MLM_STUDIO_RUN_MEMORY_MB", None, "memory one run's process may take (a run past it fails in words)", "none"
    )
    trusted_proxies: int | None = _setting(
        "MLM_STUDIO_TRUSTED_PROXIES",
        None,
        "proxies in front of the app; limits count the client address the outermost one reports",
        "1 on a Space, else 0",
    )
    stream_mb: int = _setting(
        "MLM_STUDIO_STREAM_MB", 1024, "hub splits larger than this are streamed, not downloaded whole"
    )
    data_cache: str | None = _setting(
        "MLM_STUDIO_DATA_CACHE",
        None,
        "where prepared data is cached (`off`: not cached)",
        "`.data-cache` in the runs folder",
    )
    data_cache_mb: float = _setting(
        "MLM_STUDIO_DATA_CACHE_MB", 2048.0, "the data cache's size; the least recently used data goes first", "2048"
    )
    data_wait_s: float = _setting(
        "MLM_STUDIO_DATA_WAIT_S",
        600.0,
        "how long a process of a multi-process run waits for the others' data before it gives up",
        "600",
    )
    preview_timeout_s: float = _setting("MLM_STUDIO_PREVIEW_TIMEOUT_S", 900.0, "how long Preview may take", "900")
    stop_grace_s: float = _setting(
        "MLM_STUDIO_STOP_GRACE_S", 60.0, "after Stop, a run's process is killed past this many seconds", "60"
    )
    train_nice: int = _setting(
        "MLM_STUDIO_TRAIN_NICE", 10, "the niceness of a run's process (the page's requests come first)"
    )
    checkpoint_minutes: float = _setting(
        "MLM_STUDIO_CHECKPOINT_MINUTES",
        5.0,
        "a run saves a checkpoint after this many minutes of training (less often when saving would take more than "
        "5% of the time), so a kill or a restart loses at most that; 0: only at each epoch's end",
        "5",
    )
    debug: bool = _setting("MLM_STUDIO_DEBUG", False, "the CLI shows a traceback instead of one line", "off")
    space_id: str | None = _setting("SPACE_ID", None, "set by every Space: public mode, one trusted proxy", "unset")
    space_author: str | None = _setting(
        "SPACE_AUTHOR_NAME", None, "set by every Space: its author has the owner's rights", "unset"
    )
    zero_gpu: bool = _setting(
        "SPACES_ZERO_GPU",
        False,
        "set by a ZeroGPU Space: a GPU is lent only inside the app's GPU calls (fill-mask, surprise, generate, "
        "training in slices); elsewhere the app's process works on the CPU",
        "unset",
    )
    gpu_slice_s: float = _setting(
        "MLM_STUDIO_GPU_SLICE_S",
        60.0,
        "on ZeroGPU, the seconds one training call asks for (charged to the visitor's quota); a run takes as many "
        "calls as it needs, while its page is open",
        "60",
    )
    oauth_client_id: str | None = _setting(
        "OAUTH_CLIENT_ID",
        None,
        "set by a Space with `hf_oauth: true`: the page offers *Sign in with Hugging Face*",
        "unset",
        repr=False,
    )
    server_name: str = _setting("GRADIO_SERVER_NAME", "0.0.0.0", "the address the app listens on")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """The settings in `environ`; ValueError naming the variable for a value that is not of its kind."""
        values = {}
        for item in fields(cls):
            raw = environ.get(item.metadata["variable"], "").strip()
            if raw:
                values[item.name] = _parse(item.metadata["variable"], raw, item.type)
        return cls(**values)

    @property
    def on_space(self) -> bool:
        """Whether the app runs on a Hugging Face Space."""
        return bool(self.space_id)

    @property
    def is_public(self) -> bool:
        """Public mode: on a Space unless MLM_STUDIO_PUBLIC says off; anywhere MLM_STUDIO_PUBLIC says on."""
        return self.on_space if self.public is None else self.public


def _parse(variable: str, raw: str, kind: str) -> object:
    """`raw` as the field's type; ValueError in plain words."""
    lowered = raw.lower()
    if kind.startswith("bool"):
        if lowered in YES | NO:
            return lowered in YES
        raise ValueError(f"{variable}: must be 1 or 0 (got {raw!r})")
    if kind.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if kind.startswith(("int", "float")):
        if "None" in kind and lowered in NO_LIMIT:
            return None
        try:
            number = float(raw)
        except ValueError:
            raise ValueError(f"{variable}: must be a number (got {raw!r})") from None
        if kind.startswith("int"):
            if number != int(number):
                raise ValueError(f"{variable}: must be a whole number (got {raw!r})")
            return int(number)
        return number
    return raw


@functools.cache
def current() -> Settings:
    """This process's settings, read from its environment at first use (ValueError as `Settings.from_env`)."""
    return Settings.from_env()

"""Shared fixtures: tiny models built from scratch, offline, once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # every test runs without the hub, as CI does
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mlm_core.system import settings  # noqa: E402 (after the environment above)

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(hidden=32, layers=2, heads=2, intermediate=64, max_length=128)


# The tiers. The quick tier (`python -m pytest -m "not slow"`, under 3 minutes on 2 cores) holds the unit tests, tiny
# models trained in-process, one model family of each tokenizer kind and the HTTP contract on one shared app server.
# The full tier (`-m slow`) adds everything that drives the app end to end: these files, and the tests marked slow.
FULL_TIER_FILES = {
    "test_reliability.py",
    "test_public.py",
    "test_runs.py",
    "test_hub_path.py",
    "test_space.py",
    "test_page.py",
    "test_added_words.py",
    "test_bench.py",
    "test_trackers.py",
    "test_browser.py",
    "test_data_scale.py",
    "test_secrets.py",
    "test_starter_recipe.py",
}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in FULL_TIER_FILES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _settings_read_afresh():
    """Each test reads the settings from the environment it sets (a process of the app reads them once)."""
    settings.current.cache_clear()
    yield
    settings.current.cache_clear()


def run_cli(*args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m mlm_core ARGS` in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "mlm_core", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env=env,
    )


def _tiny_model(folder: Path, causal: bool) -> Path:
    """A tiny RoBERTa (or GPT-2) with a 600-token BPE trained on the built-in corpus."""
    from mlm_core.data.builtin_corpus import reference_records
    from mlm_core.models.scratch import Shape, init_model, train_tokenizer

    texts = [r["text"] for r in reference_records()]
    tokenizer = train_tokenizer(texts, 600, folder, causal=causal, max_length=TINY["max_length"])
    init_model(tokenizer, Shape(**TINY), folder, architecture="gpt2" if causal else "roberta")
    return folder


@pytest.fixture(scope="session")
def tiny_mlm(tmp_path_factory) -> Path:
    """Folder of a tiny randomly initialised masked LM."""
    return _tiny_model(tmp_path_factory.mktemp("tiny-mlm"), causal=False)


@pytest.fixture(scope="session")
def tiny_clm(tmp_path_factory) -> Path:
    """Folder of a tiny randomly initialised GPT-2-shaped causal LM."""
    return _tiny_model(tmp_path_factory.mktemp("tiny-clm"), causal=True)


def tiny_config(model, out, **changes):
    """A quick run of a tiny model on part of the built-in corpus."""
    from mlm_core.config import TrainConfig

    values = dict(
        model=str(model),
        dataset="builtin",
        slice="train[:40]",
        block_size=64,
        batch_size=8,
        learning_rate=1e-3,
        epochs=1,
        output_dir=str(out),
    )
    return TrainConfig(**{**values, **changes})


def wait_status(run, wanted: set[str], timeout: float = 120) -> str:
    """Poll a RunDir's status until it is one of `wanted`."""
    deadline = time.monotonic() + timeout
    while (status := run.status()) not in wanted:
        assert time.monotonic() < deadline, f"{run.name} stayed {status}"
        time.sleep(0.1)
    return status


@pytest.fixture(scope="session")
def finished_run(tiny_mlm, tmp_path_factory):
    """A completed tiny run with probes, trained through the queue as the app does."""
    from mlm_core.queue import RunQueue
    from mlm_core.runs.records import RunIdentity

    root = tmp_path_factory.mktemp("runs")
    queue = RunQueue(root).start()
    run = queue.submit(
        tiny_config(tiny_mlm, root / "done", max_steps=6, eval_steps=3),
        RunIdentity(label="done", probes=("The <mask> statement exits a loop.", "no mask in this one")),
    )
    assert wait_status(run, {"completed", "failed"}) == "completed", run.events()[-1]
    queue.close()
    return run


@pytest.fixture(scope="session")
def starter_run(tmp_path_factory) -> dict:
    """The default offline run, through the CLI: the starter fine-tuned on the built-in corpus, nothing changed."""
    run_dir = tmp_path_factory.mktemp("runs") / "starter-builtin"
    started = time.monotonic()
    result = run_cli("train", "--model", "starter", "--dataset", "builtin", "--output-dir", str(run_dir))
    return {"dir": run_dir, "seconds": time.monotonic() - started, "process": result}


def _free_port() -> int:
    """A TCP port nobody listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


PLANTED_TOKEN = "hf_PlantedSecret0123456789abcdefXYZ"  # must never show up in any output (tests/test_secrets.py)
UPLOAD_LIMIT_MB = 1  # small, so a test can upload a file over the limit


def start_app(runs: Path, log: Path, cwd: Path = ROOT, **env: str) -> tuple[subprocess.Popen, str]:
    """`python app.py` as a user starts it (offline, a hub token in its environment), serving `runs`; (process, URL).

    `cwd` is the folder holding the app.py to start (and the only one on its PYTHONPATH); `env` changes its
    environment; a value of "" removes the variable.
    """
    import urllib.request

    port = _free_port()
    base = {
        **os.environ,
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "MLM_STUDIO_RUNS": str(runs),
        "PYTHONPATH": str(cwd),
        "HF_TOKEN": PLANTED_TOKEN,
        "MLM_STUDIO_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB),
        **env,
    }
    with log.open("a") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py"],
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={name: value for name, value in base.items() if value != ""},
        )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"app did not start; see {log}")
            time.sleep(0.5)


def start_zero_gpu_app(work: Path, **env: str) -> tuple[subprocess.Popen, str, Path]:
    """`start_app` as on a ZeroGPU Space, through the stand-in of `spaces` (tests/zerogpu), serving `work`/runs and
    logging to `work`/app.log; (process, URL, the stand-in's journal of GPU calls)."""
    journal = work / "journal.jsonl"
    process, url = start_app(
        work / "runs",
        work / "app.log",
        PYTHONPATH=f"{ROOT / 'tests' / 'zerogpu'}{os.pathsep}{ROOT}",
        SPACES_ZERO_GPU="true",
        STANDIN_ZEROGPU_JOURNAL=str(journal),
        **env,
    )
    return process, url, journal


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """The app on a free port with its own runs folder, shared by the HTTP, browser and reliability tests."""
    runs, log = tmp_path_factory.mktemp("app-runs"), tmp_path_factory.mktemp("app-log") / "app.log"
    process, url = start_app(runs, log)
    yield {"url": url, "runs": runs, "process": process, "log": log}
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """The stand-in hub serving tiny models and an ELI5-shaped dataset under the real ids (tests/hub_content.py),
    accepting pushes: built once per test session."""
    from .hub_content import populated_hub

    hub = populated_hub(tmp_path_factory.mktemp("hub-content"))
    yield hub
    hub.close()


ADMIN_PASSWORD = "owner-password-for-tests"
PUBLIC_LIMITS = {
    "MLM_STUDIO_MAX_RUN_STEPS": "12",
    "MLM_STUDIO_MAX_ACTIVE_RUNS": "1",
    "MLM_STUDIO_MAX_PROBES": "20",
    "MLM_STUDIO_MAX_QUEUED_RUNS": "3",
    "MLM_STUDIO_UPLOAD_MB_PER_HOUR": "2",
}
SPACE_AUTHOR, OAUTH_SECRET = "space-author", "oauth-client-secret-for-tests"
# What a Space with `hf_oauth: true` sets (the sign-in provider is the stand-in hub; nothing here calls it).
SPACE_OAUTH = {
    "SYSTEM": "spaces",
    "GRADIO_SSR_MODE": "False",
    "SPACE_ID": f"{SPACE_AUTHOR}/mlm-studio",
    "SPACE_AUTHOR_NAME": SPACE_AUTHOR,
    "OAUTH_CLIENT_ID": "client-id-for-tests",
    "OAUTH_CLIENT_SECRET": OAUTH_SECRET,
    "OAUTH_SCOPES": "openid profile",
}


@pytest.fixture(scope="module")
def public_server(tmp_path_factory):
    """The app in public mode, as a Space runs it: the owner's HF_TOKEN planted, Hugging Face sign-in enabled, one
    trusted proxy in front (clients say their address in X-Forwarded-For), the hub a stand-in on 127.0.0.1."""
    from .standin_hub import StandInHub

    hub = StandInHub()
    runs, log = tmp_path_factory.mktemp("public-runs"), tmp_path_factory.mktemp("public-log") / "app.log"
    process, url = start_app(
        runs,
        log,
        MLM_STUDIO_PUBLIC="1",
        HF_HUB_OFFLINE="",
        HF_ENDPOINT=hub.url,
        HF_HUB_DISABLE_TELEMETRY="1",
        MLM_STUDIO_ADMIN_PASSWORD=ADMIN_PASSWORD,
        **PUBLIC_LIMITS,
        **SPACE_OAUTH,
        OPENID_PROVIDER_URL=hub.url,
    )
    yield {"url": url, "runs": runs, "process": process, "log": log, "hub": hub}
    process.terminate()
    process.wait(timeout=30)
    hub.close()

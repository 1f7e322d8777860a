"""Public mode, as an anonymous visitor of a Space tries it over the API: nobody acts with the owner's token, reads
this machine's files, controls another's run or exhausts the machine, and no server path comes back."""

from __future__ import annotations

import json
import re
import tempfile
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from mlm_core.system.process_memory import peak_rss

from .app_client import ended, message, raw_call, start, status, train_form, wait_for
from .conftest import ADMIN_PASSWORD, PLANTED_TOKEN, PUBLIC_LIMITS, ROOT

TYPED_TOKEN = "hf_TypedByTheVisitor0123456789"
GOOD = "Return the <mask> of the list."


@pytest.fixture(scope="module")
def finished(public_server) -> tuple[Client, str]:
    """A visitor and a run of theirs that completed."""
    visitor = Client(public_server["url"], verbose=False)
    run = start(visitor, max_steps=2)
    assert wait_for(visitor, run, ended, timeout=300)["status"] == "completed"
    return visitor, run


def _refused(client: Client, endpoint: str, *args, **kwargs) -> str:
    """The plain-words refusal of a call that must be refused."""
    with pytest.raises(AppError) as refused:
        client.predict(*args, api_name=endpoint, **kwargs)
    text = message(refused.value)
    assert "Traceback" not in text and "has raised an exception" not in text, text
    return text


def test_a_visitors_action_never_sends_the_servers_token_and_only_the_owner_may(public_server, finished):
    hub, (visitor, run) = public_server["hub"], finished
    hub.requests.clear()
    _refused(visitor, "/push", visitor="", run_name=run, repo_id="me/model", token=TYPED_TOKEN, private=True)
    assert "paste a Hugging Face token" in _refused(visitor, "/push", visitor="", run_name=run, repo_id="me/model",
                                                    token="", private=True)
    _refused(visitor, "/fill_mask", GOOD, 3, "someone/model", "")  # the hub has no such model
    _refused(visitor, "/preview", **train_form(dataset="hub", hub_dataset="someone/data"))
    seen = hub.tokens()
    assert f"Bearer {TYPED_TOKEN}" in seen  # the push used the token the visitor typed...
    assert not any(PLANTED_TOKEN in token for token in seen), seen  # ...and nothing else carried the owner's
    assert {path.split("?")[0] for _, path, _ in hub.requests} >= {"/api/repos/create", "/api/models/someone/model"}

    owner = Client(public_server["url"], verbose=False)
    assert "not the owner's password" in _refused(owner, "/unlock", visitor="", password="guess")
    owner.predict(visitor="", password=ADMIN_PASSWORD, api_name="/unlock")
    _refused(owner, "/push", visitor="", run_name=run, repo_id="owner/model", token="", private=True)
    assert f"Bearer {PLANTED_TOKEN}" in hub.tokens()  # the owner may push with the server's token


@pytest.mark.slow
def test_a_second_visitor_cannot_control_the_first_visitors_run(public_server):
    first, second = Client(public_server["url"], verbose=False), Client(public_server["url"], verbose=False)
    run = start(first, epochs=50)
    wait_for(first, run, lambda s: s["status"] in {"running", "stopped", "completed"}, timeout=120)
    for endpoint, extra in [("/stop", {}), ("/resume", {}), ("/delete", {}), ("/set_label", {"label": "mine"}),
                            ("/export_zip", {}), ("/push", {"repo_id": "b/x", "token": "hf_b", "private": True})]:
        text = _refused(second, endpoint, visitor="", run_name=run, **extra)
        assert "started by another visitor" in text, (endpoint, text)
    assert [r["yours"] for r in json.loads(second.predict(visitor="", api_name="/runs")) if r["name"] == run] == [False]
    assert [r["yours"] for r in json.loads(first.predict(visitor="", api_name="/runs")) if r["name"] == run] == [True]

    assert status(second, run)["events"]  # everyone can watch it
    first.predict(visitor="", run_name=run, label="mine", api_name="/set_label")
    stopped = wait_for(first, run, ended, timeout=120)
    limit = PUBLIC_LIMITS["MLM_STUDIO_MAX_RUN_STEPS"]
    assert stopped["status"] == "stopped" and stopped["events"][-1]["results"]["steps"] == int(limit)
    assert f"reached the limit of {limit} steps" in stopped["events"][-1]["results"]["message"]
    first.predict(visitor="", run_name=run, api_name="/delete")
    assert run not in {r["name"] for r in json.loads(first.predict(visitor="", api_name="/runs"))}


LOCAL_PATHS = ["/etc", str(ROOT), "assets/starter-mlm", "mlm_core", "~", ".", "../..", "/tmp/gradio",
               f"{tempfile.gettempdir()}/gradio"]


@pytest.mark.parametrize("path", LOCAL_PATHS)
def test_a_local_path_is_refused_in_every_field(public_server, path):
    visitor = Client(public_server["url"], verbose=False)
    refusals = [
        _refused(visitor, "/preview", **train_form(model=path)),
        _refused(visitor, "/start", visitor="", probes="", **train_form(model=path)),
        _refused(visitor, "/preview", **train_form(dataset="hub", hub_dataset=path)),
        _refused(visitor, "/fill_mask", GOOD, 3, path, ""),
        _refused(visitor, "/fill_mask", GOOD, 3, "starter", path),
        _refused(visitor, "/generate", path, "Once", 5, 1.0, 0.9, 0),
        _refused(visitor, "/export_zip", visitor="", run_name=path),
    ]
    for text in refusals:
        assert re.search(r"hub id such as|the hub has no|choose a run by its name|there is no run called", text), text
    local = raw_call(public_server["url"], "preview", {**train_form(dataset="file"),
                                                       "dataset_file": {"path": "/etc/hostname",
                                                                        "meta": {"_type": "gradio.FileData"}}})
    assert "upload it with the form" in local.get("error", ""), local


def test_a_folder_that_exists_and_one_that_does_not_get_the_same_words(public_server):
    visitor = Client(public_server["url"], verbose=False)
    existing = _refused(visitor, "/fill_mask", GOOD, 3, "assets/starter-mlm", "")
    missing = _refused(visitor, "/fill_mask", GOOD, 3, "assets/no-such-folder", "")
    assert existing.replace("starter-mlm", "X") == missing.replace("no-such-folder", "X")


@pytest.mark.slow
def test_each_limit_holds(public_server):
    visitor = Client(public_server["url"], verbose=False)
    probes = "\n".join(f"Probe number {i} has a <mask> in it." for i in range(21))
    assert "at most 20 probe sentences" in _refused(visitor, "/start", visitor="", probes=probes, **train_form())
    assert "at most 300 characters" in _refused(visitor, "/start", visitor="", probes="a <mask> " + "x" * 400,
                                                **train_form())
    assert "at most 200 characters" in _refused(visitor, "/preview", **train_form(model="m" * 300))

    rss = _peak_rss_mb(public_server["process"].pid)
    refused = _refused(visitor, "/preview", **train_form(batch_size=4096))
    grown = _peak_rss_mb(public_server["process"].pid) - rss
    print(f"\n/preview with batch 4096: {refused!r}; the server's peak memory grew {grown:.0f} MB")
    assert "needs about" in refused and grown < 300  # refused before anything large was allocated

    first = start(visitor, epochs=50)  # one waiting-or-training run per visitor
    assert "you already have 1 run" in _refused(visitor, "/start", visitor="", probes="", **train_form())
    wait_for(visitor, first, ended, timeout=180)
    second = start(visitor, max_steps=1)  # and the next once it is done
    wait_for(visitor, second, ended, timeout=180)


def _peak_rss_mb(pid: int) -> float:
    """The peak resident memory of a process, in MB."""
    peak = peak_rss(pid)
    assert peak is not None, "no VmHWM"
    return peak / 2**20


def test_no_server_path_in_any_response_or_export_and_exports_leave_nothing_behind(public_server, finished,
                                                                                    tmp_path):
    run = finished[1]
    visitor = Client(public_server["url"], verbose=False, download_files=str(tmp_path))  # not into the app's cache
    visitor.session_hash = finished[0].session_hash  # the same visitor (an API client's identity is its session)
    seen = [status(visitor, run), visitor.predict(visitor="", api_name="/runs"),
            visitor.predict(run, "tokens", api_name="/compare")[2],
            visitor.predict(visitor="", probes="", **train_form(max_steps=1), api_name="/start")[1:]]
    seen += [_refused(visitor, "/fill_mask", GOOD, 3, "starter", f"run:{name}") for name in ("nope", "..")]
    seen.append(_refused(visitor, "/preview", **train_form(text_column="nope")))
    gradio_cache = Path(tempfile.gettempdir()) / "gradio"
    before = _size(gradio_cache)
    archives = [visitor.predict(visitor="", run_name=run, api_name="/export_zip") for _ in range(20)]
    grown, size = _size(gradio_cache) - before, Path(archives[0]).stat().st_size
    print(f"\n20 downloads of a {size / 2**20:.1f} MB zip: the app's file cache grew {grown / 2**20:.1f} MB")
    assert grown <= 1.5 * size  # one copy, not twenty
    with zipfile.ZipFile(archives[0]) as archive:
        seen += [archive.read(name).decode("utf-8", "replace") for name in archive.namelist()
                 if not name.endswith(".safetensors")]
    text = json.dumps(seen, default=str)
    for server_path in {str(public_server["runs"]), str(ROOT), str(Path.home()), str(gradio_cache)}:
        assert server_path not in text, server_path


def _size(folder: Path) -> int:
    """Bytes of every file under a folder."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0

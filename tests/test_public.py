"""Public mode, as an anonymous visitor of a Space tries it over the API: nobody acts with the owner's token, reads
this machine's files, controls another's run or exhausts the machine, and no server path comes back."""

from __future__ import annotations

import io
import json
import re
import secrets
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from mlm_core.system.process_memory import peak_rss

from .app_client import ended, message, raw_call, start, status, train_form, visitor_at, wait_for
from .conftest import ADMIN_PASSWORD, PLANTED_TOKEN, PUBLIC_LIMITS, ROOT, SPACE_AUTHOR

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
    assert "paste a Hugging Face token" in _refused(
        visitor, "/push", visitor="", run_name=run, repo_id="me/model", token="", private=True
    )
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
    for endpoint, extra in [
        ("/stop", {}),
        ("/resume", {}),
        ("/delete", {}),
        ("/set_label", {"label": "mine"}),
        ("/export_zip", {}),
        ("/push", {"repo_id": "b/x", "token": "hf_b", "private": True}),
    ]:
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


LOCAL_PATHS = [
    "/etc",
    str(ROOT),
    "assets/starter-mlm",
    "mlm_core",
    "~",
    ".",
    "../..",
    "/tmp/gradio",
    f"{tempfile.gettempdir()}/gradio",
]


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
    local = raw_call(
        public_server["url"],
        "preview",
        {**train_form(dataset="file"), "dataset_file": {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}}},
    )
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
    assert "at most 300 characters" in _refused(
        visitor, "/start", visitor="", probes="a <mask> " + "x" * 400, **train_form()
    )
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


def test_no_server_path_in_any_response_or_export_and_exports_leave_nothing_behind(public_server, finished, tmp_path):
    run = finished[1]
    visitor = Client(public_server["url"], verbose=False, download_files=str(tmp_path))  # not into the app's cache
    visitor.session_hash = finished[0].session_hash  # the same visitor (an API client's identity is its session)
    seen = [
        status(visitor, run),
        visitor.predict(visitor="", api_name="/runs"),
        visitor.predict(run, "tokens", api_name="/compare")[2],
        visitor.predict(visitor="", probes="", **train_form(max_steps=1), api_name="/start")[1:],
    ]
    seen += [_refused(visitor, "/fill_mask", GOOD, 3, "starter", f"run:{name}") for name in ("nope", "..")]
    seen.append(_refused(visitor, "/preview", **train_form(text_column="nope")))
    gradio_cache = Path(tempfile.gettempdir()) / "gradio"
    before = _size(gradio_cache)
    archives = [visitor.predict(visitor="", run_name=run, api_name="/export_zip") for _ in range(20)]
    grown, size = _size(gradio_cache) - before, Path(archives[0]).stat().st_size
    print(f"\n20 downloads of a {size / 2**20:.1f} MB zip: the app's file cache grew {grown / 2**20:.1f} MB")
    assert grown < size / 2  # served from the run's folder: no copy at all
    with zipfile.ZipFile(archives[0]) as archive:
        seen += [
            archive.read(name).decode("utf-8", "replace")
            for name in archive.namelist()
            if not name.endswith(".safetensors")
        ]
    text = json.dumps(seen, default=str)
    for server_path in {str(public_server["runs"]), str(ROOT), str(Path.home()), str(gradio_cache)}:
        assert server_path not in text, server_path


def test_a_zip_is_one_file_per_version_of_its_run_and_its_link_dies_with_the_run(public_server):
    visitor = visitor_at(public_server["url"], "198.51.100.21")  # an address with no run of its own yet
    visitor.download_files = False  # answers with the file's link
    run = start(visitor, max_steps=1)
    assert wait_for(visitor, run, ended, timeout=300)["status"] == "completed"
    answers = [visitor.predict(visitor="", run_name=run, api_name="/export_zip") for _ in range(3)]
    links = [answer["url"] for answer in answers]
    assert len(set(links)) == 1 and len(list((public_server["runs"] / run / "export").rglob("*.zip"))) == 1
    assert f"/{run}/README.md" in "".join("/" + name for name in _zip_names(links[0]))
    served = {"path": answers[0]["path"], "meta": {"_type": "gradio.FileData"}}  # Gradio's check passes it as served
    read = raw_call(public_server["url"], "preview", {**train_form(dataset="file"), "dataset_file": served})
    assert "upload it with the form" in read.get("error", ""), read  # yet the form reads only uploads

    visitor.predict(visitor="", run_name=run, label="a new label", api_name="/set_label")
    assert _http_status(links[0]) == 403  # the old version's zip is gone with its link
    relabelled = visitor.predict(visitor="", run_name=run, api_name="/export_zip")["url"]
    assert relabelled != links[0] and _zip_names(relabelled)
    assert len(list((public_server["runs"] / run / "export").rglob("*.zip"))) == 1

    visitor.predict(visitor="", run_name=run, api_name="/delete")
    assert _http_status(relabelled) == 403 and not (public_server["runs"] / run).exists()


def _zip_names(url: str) -> list[str]:
    """The names in the zip a link serves."""
    with urllib.request.urlopen(url, timeout=30) as answer:
        return zipfile.ZipFile(io.BytesIO(answer.read())).namelist()


def _http_status(url: str) -> int:
    """The HTTP status a GET of `url` answers."""
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def _size(folder: Path) -> int:
    """Bytes of every file under a folder."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def test_a_script_with_fresh_visitor_values_from_one_address_queues_one_run_and_the_owner_stops_them(public_server):
    script = visitor_at(public_server["url"], "203.0.113.7")
    tokens = [secrets.token_hex(16) for _ in range(20)]
    jobs = [script.submit(visitor=token, probes="", **train_form(epochs=50), api_name="/start") for token in tokens]
    accepted, refused = {}, []
    for token, job in zip(tokens, jobs):
        try:
            accepted[token] = job.result()[0]
        except AppError as error:
            refused.append(message(error))
    assert len(accepted) == 1 and len(refused) == 19, (accepted, refused)
    assert all("you already have 1 run" in text for text in refused), refused[:2]
    [(token, run)] = accepted.items()
    wait_for(script, run, lambda s: s["status"] == "running", timeout=120)
    script.predict(visitor=token, run_name=run, api_name="/stop")
    wait_for(script, run, ended, timeout=120)

    # Resume makes a run active too, so it meets the same limit as Start.
    second = start(script, visitor=secrets.token_hex(16), epochs=50)
    assert "you already have 1 run" in _refused(script, "/resume", visitor=token, run_name=run)
    wait_for(script, second, lambda s: s["status"] == "running", timeout=120)

    # Everyone's queue has a cap too: three other addresses wait behind the training run, a fourth is refused.
    waiting = [start(visitor_at(public_server["url"], f"198.51.100.{i}"), epochs=1) for i in range(3)]
    late = visitor_at(public_server["url"], "198.51.100.9")
    assert "3 runs are already waiting" in _refused(late, "/start", visitor="", probes="", **train_form())

    owner = visitor_at(public_server["url"], "192.0.2.1", user=SPACE_AUTHOR)  # signed in with Hugging Face
    assert "only the Space's owner" in _refused(late, "/clear_queue", visitor="")
    owner.predict(visitor="", api_name="/clear_queue")
    listed = {r["name"] for r in json.loads(owner.predict(visitor="", api_name="/runs"))}
    assert not listed & set(waiting)  # the waiting runs are gone
    owner.predict(visitor="", run_name=run, api_name="/stop_source")  # every run of that browser and address
    assert wait_for(owner, second, ended, timeout=120)["status"] == "stopped"


def test_hugging_face_sign_in_is_who_a_visitor_is_across_browsers(public_server, finished):
    alice_here = visitor_at(public_server["url"], "192.0.2.10", user="alice")
    run = start(alice_here, max_steps=2)
    wait_for(alice_here, run, ended, timeout=180)
    alice_there = visitor_at(public_server["url"], "192.0.2.99", user="alice")  # another browser, same account
    alice_there.predict(visitor="", run_name=run, label="alice's run", api_name="/set_label")
    mine = {r["name"]: r["yours"] for r in json.loads(alice_there.predict(visitor="", api_name="/runs"))}
    assert mine[run] and not mine[finished[1]]  # her own run, not another visitor's
    bob = visitor_at(public_server["url"], "192.0.2.10", user="bob")  # same address, another account
    assert "started by another visitor" in _refused(bob, "/set_label", visitor="", run_name=run, label="bob's")
    owner = visitor_at(public_server["url"], "192.0.2.50", user=SPACE_AUTHOR)
    owner.predict(visitor="", run_name=finished[1], label="relabelled by the owner", api_name="/set_label")
    owner.predict(visitor="", run_name=run, api_name="/delete")  # the owner's rights come from signing in


def _upload(url: str, address: str, size: int, chunked: bool = False) -> tuple[int, str]:
    """POST a file straight to Gradio's upload route, as a script would (no form); (HTTP status, body)."""
    import http.client
    import urllib.parse

    boundary = "mlmstudioboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\n"
        ).encode()
        + b"x" * size
        + f"\r\n--{boundary}--\r\n".encode()
    )
    parsed = urllib.parse.urlparse(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Forwarded-For": address}
    connection.request(
        "POST", "/gradio_api/upload", body=iter([body]) if chunked else body, headers=headers, encode_chunked=chunked
    )
    response = connection.getresponse()
    return response.status, response.read().decode()


def test_uploads_without_the_form_meet_a_budget_per_address(public_server):
    url, size = public_server["url"], int(0.9 * 2**20)  # each under the 1 MB an upload may have in the tests
    assert _upload(url, "192.0.2.77", size)[0] == _upload(url, "192.0.2.77", size)[0] == 200
    status_code, text = _upload(url, "192.0.2.77", size)  # past the 2 MB an hour of this address
    assert status_code == 429 and "each address may upload 2 MB an hour" in text
    assert _upload(url, "192.0.2.78", size)[0] == 200  # another address is not held back
    assert _upload(url, "192.0.2.79", 10, chunked=True)[0] == 411  # a size it does not say cannot be counted


def test_the_form_says_what_every_visitor_sees_of_a_run(public_server):
    import urllib.request

    from studio.train_tab import SEEN_BY_ALL

    with urllib.request.urlopen(f"{public_server['url']}config", timeout=30) as answer:
        props = [c.get("props", {}) for c in json.loads(answer.read())["components"]]
    said = {p.get("elem_id"): (p.get("label") or "") + (p.get("info") or "") for p in props}
    assert SEEN_BY_ALL in said["dataset-file"] and SEEN_BY_ALL in said["probes"]


def test_a_web_address_in_the_file_field_is_refused_before_anything_is_fetched(public_server):
    from .standin_hub import StandInHub

    # Gradio fetched a public address before our code ran and answered {"error": null}; a loopback one (all a test
    # can serve offline) its own guard refuses, so the words are what this test can tell apart.
    target = StandInHub()  # counts every request made to it
    try:
        for path in (f"{target.url}/big.txt", f"{target.url}/x.csv"):
            answer = raw_call(
                public_server["url"],
                "preview",
                {
                    **train_form(dataset="file"),
                    "dataset_file": {"path": path, "url": path, "meta": {"_type": "gradio.FileData"}},
                },
            )
            assert "upload it with the form" in answer.get("error", ""), answer
        assert target.requests == [], "the server fetched the address"
    finally:
        target.close()

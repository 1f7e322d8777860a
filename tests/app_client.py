"""Driving the launched app over HTTP with gradio_client, as an API user would (endpoints take named arguments)."""

from __future__ import annotations

import html
import json
import re
import time
import urllib.request

from gradio_client import Client

# The Train form, keyed by the /start and /preview endpoints' parameter names (TrainConfig's field names).
FORM = {
    "model": "starter",
    "dataset": "builtin",
    "hub_dataset": "",
    "dataset_file": None,
    "slice": "train[:5000]",
    "text_column": "",
    "block_size": 128,
    "mlm_probability": 0.15,
    "epochs": 1,
    "learning_rate": 5e-4,
    "batch_size": 16,
    "max_steps": 0,
    "eval_steps": 0,
    "seed": 42,
    "warmup_ratio": 0.0,
    "weight_decay": 0.01,
    "gradient_accumulation": 1,
    "whole_word_masking": False,
    "report_to": "none",
}


def train_form(**changes) -> dict:
    """The Train tab's form values with some changed."""
    unknown = set(changes) - set(FORM)
    assert not unknown, unknown
    return {**FORM, **changes}


def start(client: Client, probes: str = "", visitor: str = "", **changes) -> str:
    """Press Start with the form changed as given; the new run's name."""
    board = client.predict(visitor=visitor, probes=probes, **train_form(**changes), api_name="/start")
    return board[0]


def status(client: Client, run: str = "") -> dict:
    """A run (or the one training now) and all its events, paged through with the API's cursor."""
    current = json.loads(client.predict(run_name=run, after="0", api_name="/status"))
    events = current["events"]
    while current["more"]:
        current = json.loads(client.predict(run_name=current["name"], after=str(current["cursor"]), api_name="/status"))
        events += current["events"]
    return {**current, "events": events}


def wait_for(client: Client, run: str, predicate, timeout: float, every: float = 0.5) -> dict:
    """Poll /status until `predicate(status)` holds; the last status."""
    deadline = time.monotonic() + timeout
    while True:
        current = status(client, run)
        if predicate(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out; last status {current['status']} with {len(current['events'])} events: "
                f"{current['events'][-3:]}"
            )
        time.sleep(every)


def ended(current: dict) -> bool:
    """Whether a run has finished one way or another."""
    return current["status"] in {"completed", "stopped", "failed", "interrupted"}


def count(current: dict, kind: str) -> int:
    """How many events of a kind the run has emitted."""
    return sum(e["type"] == kind for e in current["events"])


def message(error: Exception) -> str:
    """A refusal as the page shows it (Gradio sends toast messages as HTML)."""
    return html.unescape(str(error))


def raw_call(url: str, endpoint: str, kwargs: dict) -> dict:
    """Call an endpoint with raw JSON, as a crafted client would (gradio_client would upload local files first)."""
    info = json.loads(urllib.request.urlopen(f"{url}gradio_api/info", timeout=10).read())
    names = [p["parameter_name"] for p in info["named_endpoints"][f"/{endpoint}"]["parameters"]]
    body = json.dumps({"data": [kwargs.get(name) for name in names]}).encode()  # \ud800 stays an escape
    request = urllib.request.Request(f"{url}gradio_api/call/{endpoint}", body, {"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(request, timeout=10).read())["event_id"]
    stream = urllib.request.urlopen(f"{url}gradio_api/call/{endpoint}/{event}", timeout=60).read().decode()
    kind = re.findall(r"^event: (\w+)", stream, re.M)[-1]
    data = re.findall(r"^data: (.*)$", stream, re.M)[-1]
    return {kind: data}


def visitor_at(url: str, address: str, user: str | None = None, access_token: str = "hf_oauth_for_tests") -> Client:
    """An API client coming from `address` (as the Space's proxy reports it), signed in as `user` when given: the
    session cookie Gradio's sign-in sets (with the OAuth `access_token` the hub granted), signed with the Space's
    OAuth secret as Gradio signs it."""
    headers = {"X-Forwarded-For": address}
    if user is not None:
        import base64
        import hashlib

        from itsdangerous import TimestampSigner

        from .conftest import OAUTH_SECRET

        session = {
            "oauth_info": {
                "userinfo": {
                    "preferred_username": user,
                    "name": user,
                    "picture": "",
                    "profile": f"https://huggingface.co/{user}",
                },
                "expires_at": int(time.time()) + 3600,
                "access_token": access_token,
                "scope": "openid profile",
            }
        }
        signer = TimestampSigner(hashlib.sha256(f"{OAUTH_SECRET}-v4".encode()).hexdigest())
        headers["Cookie"] = "session=" + signer.sign(base64.b64encode(json.dumps(session).encode())).decode()
    return Client(url, verbose=False, headers=headers)

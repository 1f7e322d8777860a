"""Driving the launched app over HTTP with gradio_client, as an API user would."""

from __future__ import annotations

import json
import time

from gradio_client import Client

BUILTIN = "Built-in corpus (offline)"


UPLOAD = "Upload a file"
HUB = "Hub dataset"
FORM = {"model": "starter", "source": BUILTIN, "hub_id": "", "slice": "train[:5000]", "upload": None, "column": "",
        "block_size": 128, "mlm_probability": 0.15, "epochs": 1, "learning_rate": 5e-4, "batch_size": 16,
        "max_steps": 0, "eval_steps": 0, "whole_word_masking": False, "seed": 42}


def train_form(**changes) -> list:
    """The Train tab's form values, in the order the /start and /preview endpoints take them."""
    unknown = set(changes) - set(FORM)
    assert not unknown, unknown
    return list({**FORM, **changes}.values())


def status(client: Client) -> dict:
    """The current run and all its events."""
    return json.loads(client.predict(api_name="/status"))


def wait_for(client: Client, predicate, timeout: float, every: float = 0.5) -> dict:
    """Poll /status until `predicate(status)` holds; the last status."""
    deadline = time.monotonic() + timeout
    while True:
        current = status(client)
        if predicate(current):
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last status {current['status']} with {len(current['events'])} events: "
                                 f"{current['events'][-3:]}")
        time.sleep(every)


def count(current: dict, kind: str) -> int:
    """How many events of a kind the run has emitted."""
    return sum(e["type"] == kind for e in current["events"])

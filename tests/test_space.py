"""A Space rehearsal: the app deployed with `python -m mlm_core deploy-space` to the stand-in hub on 127.0.0.1
(`HF_ENDPOINT`, serving tiny models and an ELI5-shaped dataset under the real ids), then started from the Space's
files alone as a Space runs it (`SPACE_ID`, `SYSTEM=spaces`, Hugging Face sign-in). Online the form starts on the
guides' run, Quick run cuts it to a visitor's budget measured on this machine, Preview and a run
work, a signed-in push needs the scopes the front matter asks for, and runs, the queue, the limits and the tracker
database come back after a restart."""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from huggingface_hub import SpaceCard

from mlm_core.system.storage import RunsStorage, mount_of
from studio.train_tab import QUICK_FIELDS

from .app_client import count, ended, message, start, train_form, visitor_at, wait_for
from .conftest import ROOT, SPACE_OAUTH, start_app
from .hub_content import DATASET_ID, MASKED_ID, SPLIT_ROWS
from .test_hub_path import online, run_cli

RUN_STEPS = 150  # a visitor's run budget here: the guides' run on the stand-in's 400 rows takes about 255 steps
SPACE = {**SPACE_OAUTH, "MLM_STUDIO_MAX_RUN_STEPS": str(RUN_STEPS), "MLM_STUDIO_MAX_ACTIVE_RUNS": "1"}
GRANTED, WRITE_ONLY = "hf_oauth_granted_by_the_front_matter", "hf_oauth_write_repos_only"


def front_matter_scopes() -> set[str]:
    """The OAuth scopes the README's front matter asks for: what a visitor's sign-in token is granted."""
    return set(SpaceCard.load(ROOT / "README.md").data.hf_oauth_scopes)


def deployed(hub, work: Path) -> Path:
    """Deploy this checkout to the stand-in hub as the Space `SPACE_ID` with the CLI; a folder holding the Space's
    files, as the hub would build it from them."""
    (work / "token").write_text("hf_TheOwnersDeployToken0123456789\n")
    done = run_cli(
        ["deploy-space", SPACE["SPACE_ID"], "--token-file", str(work / "token")],
        online(hub, work / "hf-deploy", HF_TOKEN=""),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    folder = work / "space"
    for path, data in hub.files("space", SPACE["SPACE_ID"]).items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


class Space:
    """The app started as a Space from `folder` on one runs folder; `restart` stops it and starts it again on the
    same runs folder."""

    def __init__(self, hub, folder: Path, work: Path):
        self.hub, self.folder, self.work, self.runs = hub, folder, work, work / "runs"
        self.log = work / "app.log"
        self.process, self.url = None, ""
        self.start()

    def start(self) -> None:
        self.process, self.url = start_app(
            self.runs,
            self.log,
            cwd=self.folder,
            **online(self.hub, self.work / "hf", **SPACE),
            OPENID_PROVIDER_URL=self.hub.url,
        )
        self.client = Client(self.url, verbose=False)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)

    def restart(self) -> None:
        self.stop()
        self.start()

    def components(self) -> dict[str, dict]:
        """The page's components by elem_id (their props as the page first shows them)."""
        config = json.loads(urllib.request.urlopen(f"{self.url}config", timeout=10).read())
        return {c["props"]["elem_id"]: c["props"] for c in config["components"] if c.get("props", {}).get("elem_id")}

    def header(self) -> str:
        config = json.loads(urllib.request.urlopen(f"{self.url}config", timeout=10).read())
        return next(
            c["props"]["value"]
            for c in config["components"]
            if str(c.get("props", {}).get("value", "")).startswith("# MLM Studio")
        )


@pytest.fixture(scope="module")
def space(hub, tmp_path_factory):
    hub.scopes[GRANTED] = front_matter_scopes()
    hub.scopes[WRITE_ONLY] = {"write-repos"}
    work = tmp_path_factory.mktemp("space")
    space = Space(hub, deployed(hub, work), work)
    yield space
    space.stop()


def form_values(quick: dict) -> dict:
    """The form's values Quick run set."""
    return {name: quick[name] for name in QUICK_FIELDS}


@pytest.fixture(scope="module")
def quick(space) -> dict:
    """Quick run's form values (waiting for the guides' run to be measured) and its note."""
    *values, note = space.client.predict(api_name="/quick_run")
    return {**dict(zip(QUICK_FIELDS, values, strict=True)), "note": note}


def test_online_the_form_starts_on_the_guides_run_and_the_header_says_where_runs_are_kept(space):
    form = space.components()
    assert (form["model"]["value"], form["source"]["value"], form["hub-dataset"]["value"]) == (
        MASKED_ID,
        "hub",
        DATASET_ID,
    )
    assert (form["slice"]["value"], form["text-column"]["value"]) == ("train[:5000]", "answers.text")
    header = space.header()
    assert "hub reachable" in header
    storage = RunsStorage(space.runs, *mount_of(space.runs.resolve()))  # where this machine keeps the test's runs
    assert storage.describe(on_space=True) in header
    assert ("attach a Storage Bucket at `/data`" in header) is not storage.own_mount


def test_the_space_serves_the_starter_from_its_uploaded_weights(space):
    assert (space.folder / "app.py").is_file() and not (space.folder / "tests").exists()
    table = space.client.predict(
        "The <mask> statement exits the innermost loop.", 3, "starter", "", "", api_name="/fill_mask"
    )[1]
    assert [row[1] for row in table["data"]] == [1, 2, 3]


def test_quick_run_cuts_the_guides_run_to_a_visitors_budget_measured_here(space, quick):
    rows = int(re.fullmatch(r"train\[:(\d+)\]", quick["slice"])[1])
    assert quick["model"] == MASKED_ID and quick["text_column"] == "answers.text"
    assert 100 <= rows < SPLIT_ROWS["train"], quick  # the guides' run is longer than the budget here: cut
    measured = re.search(r"\(([\d,]+) steps at [\d.]+ s, measured\)", quick["note"])
    assert measured and f"first {rows:,} rows" in quick["note"], quick["note"]
    # What Preview measures for the preset fits the budget: the preset was chosen from the measured step time.
    assert (quick["epochs"], quick["block_size"], quick["max_steps"]) == (3, 128, 0)  # as the guides' run measured
    summary, *_ = space.client.predict(**train_form(**form_values(quick)), api_name="/preview")
    assert summary.startswith(f"**{rows:,} rows → "), summary
    steps = int(re.search(r"([\d,]+) steps at", summary)[1].replace(",", ""))
    assert steps <= RUN_STEPS, summary


def test_a_loading_script_dataset_is_refused_in_words_that_say_what_to_use(space):
    space.hub.add_repo("dataset", "legacy/eli5_script", {"eli5_script.py": b"import datasets\n"})
    with pytest.raises(AppError) as refused:
        space.client.predict(
            **train_form(model=MASKED_ID, dataset="hub", hub_dataset="legacy/eli5_script", slice="train[:10]"),
            api_name="/preview",
        )
    said = message(refused.value)
    assert "'legacy/eli5_script' is a loading script (eli5_script.py)" in said and "Parquet" in said, said
    assert "Dataset scripts are no longer supported" not in said


@pytest.fixture(scope="module")
def alices_run(space, quick) -> str:
    """A quick run of a signed-in visitor, 3 steps, completed."""
    alice = visitor_at(space.url, "203.0.113.7", user="alice", access_token=GRANTED)
    run = start(alice, **{**form_values(quick), "max_steps": 3, "batch_size": 8})
    final = wait_for(alice, run, ended, timeout=300)
    assert final["status"] == "completed", final["events"][-3:]
    return run


def test_a_quick_run_trains_on_the_space(space, alices_run):
    runs = json.loads(space.client.predict(visitor="", api_name="/runs"))
    mine = next(r for r in runs if r["name"] == alices_run)
    assert mine["model"] == MASKED_ID and mine["results"]["steps"] == 3


def test_a_signed_in_push_needs_the_scopes_the_front_matter_asks_for(space, alices_run):
    assert {"contribute-repos"} <= front_matter_scopes()  # a push creates the repository first
    limited = visitor_at(space.url, "203.0.113.7", user="alice", access_token=WRITE_ONLY)
    with pytest.raises(AppError) as refused:
        limited.predict(
            visitor="", run_name=alices_run, repo_id="alice/eli5-quick", token="", private=True, api_name="/push"
        )
    assert "contribute-repos" in message(refused.value), message(refused.value)
    assert not space.hub.files("model", "alice/eli5-quick")

    granted = visitor_at(space.url, "203.0.113.7", user="alice", access_token=GRANTED)
    answer = granted.predict(
        visitor="", run_name=alices_run, repo_id="alice/eli5-quick", token="", private=True, api_name="/push"
    )
    assert "alice/eli5-quick" in answer
    [commit] = [c for c in space.hub.commits if c.repo_id == "alice/eli5-quick"]
    assert commit.authorization == f"Bearer {GRANTED}"
    assert {"config.json", "model.safetensors", "README.md"} <= set(space.hub.files("model", "alice/eli5-quick"))


@pytest.mark.slow  # a run trains while the app restarts, then the queued run trains
def test_runs_the_queue_the_limits_and_the_tracker_come_back_after_a_restart(space, alices_run):
    bob = visitor_at(space.url, "198.51.100.2")
    carol = visitor_at(space.url, "198.51.100.3")
    long_run = start(bob, max_steps=RUN_STEPS, eval_steps=50)
    waiting = start(carol, max_steps=4, eval_steps=2, report_to="trackio")
    assert wait_for(carol, waiting, lambda s: True, timeout=10)["status"] == "queued"
    wait_for(bob, long_run, lambda s: count(s, "step") >= 1, timeout=120)  # training when the app restarts

    space.restart()
    carol = visitor_at(space.url, "198.51.100.3")
    with pytest.raises(AppError) as refused:  # her run still waits or trains: the limit counts it after the restart
        start(carol, max_steps=2)
    assert "you already have 1 run waiting or training" in message(refused.value), message(refused.value)
    final = wait_for(carol, waiting, ended, timeout=300)
    assert final["status"] == "completed", final["events"][-3:]
    statuses = {r["name"]: r["status"] for r in json.loads(space.client.predict(visitor="", api_name="/runs"))}
    assert statuses[alices_run] == "completed" and statuses[long_run] in {"interrupted", "completed"}
    with sqlite3.connect(space.runs / ".trackio" / "mlm-studio.db") as db:
        steps = [step for (step,) in db.execute("SELECT step FROM metrics WHERE run_name = ?", (waiting,))]
    assert max(steps) == 4, steps


def test_the_space_logs_no_traceback(space):
    log = space.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and "Exception ignored" not in log, log[-3000:]

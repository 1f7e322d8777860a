"""Experiment trackers through Accelerate: a trackio run logged offline beside the runs, none by default, a tracker
that fails dropped in words, and a tracker that is unknown, missing or (public mode) sends data away refused."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from accelerate.tracking import GeneralTracker

from mlm_core.cli.commands import main
from mlm_core.config import TrainConfig, trackers
from mlm_core.events import Eval, Status, Step, read_events
from mlm_core.training import trackers as tracking
from mlm_core.training.loop import train
from studio.access import Access
from studio.form import config_from
from studio.text import plain

from .conftest import PLANTED_TOKEN, ROOT, tiny_config

# Loaded first by the CLI's interpreter: every attempt to reach another machine (a name looked up, an internet
# connection opened) is written down and refused.
NO_NETWORK = """
import os, socket
_connect, _getaddrinfo = socket.socket.connect, socket.getaddrinfo
def attempted(what):
    with open(os.environ["NETWORK_ATTEMPTS"], "a") as log:
        log.write(repr(what) + "\\n")
def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
        attempted(address)
        raise OSError("no network in this test")
    return _connect(self, address)
def getaddrinfo(host, *args, **kwargs):
    if host not in (None, "localhost", "127.0.0.1", "::1"):
        attempted(host)
        raise socket.gaierror(socket.EAI_NONAME, "no network in this test")
    return _getaddrinfo(host, *args, **kwargs)
socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
"""


def test_a_trackio_run_logs_its_events_offline_beside_the_runs(tiny_mlm, tmp_path):
    guard, attempts, runs = tmp_path / "guard", tmp_path / "network-attempts", tmp_path / "runs"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NO_NETWORK)
    # A hub token and every setting that would send trackio's data elsewhere: none of them is used.
    env = {
        **os.environ,
        "PYTHONPATH": f"{guard}{os.pathsep}{ROOT}",
        "NETWORK_ATTEMPTS": str(attempts),
        "HF_TOKEN": PLANTED_TOKEN,
        "TRACKIO_SPACE_ID": "someone/tracking-space",
        "TRACKIO_DIR": str(tmp_path),
        "TRACKIO_SERVER_URL": "http://198.51.100.7:8000/",
        "TRACKIO_WRITE_TOKEN": "write-token",
    }
    env.pop("HF_HUB_OFFLINE")  # the hub is not asked who the token's owner is, even online
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlm_core",
            "train",
            "--model",
            str(tiny_mlm),
            "--dataset",
            "builtin",
            "--slice",
            "train[:40]",
            "--block-size",
            "64",
            "--batch-size",
            "8",
            "--learning-rate",
            "1e-3",
            "--max-steps",
            "4",
            "--eval-steps",
            "2",
            "--report-to",
            "trackio",
            "--output-dir",
            str(runs / "tracked"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.splitlines()[0].startswith("completed"), "trackio's lines go to stderr, not the summary"
    assert len(process.stdout.splitlines()) == 1, process.stdout
    assert not attempts.exists(), attempts.read_text()

    events = read_events(runs / "tracked" / "events.jsonl")
    assert any(isinstance(e, Status) and e.message.startswith("Metrics also go to trackio (offline") for e in events)
    with sqlite3.connect(runs / ".trackio" / "mlm-studio.db") as db:  # trackio's own storage, read back
        logged = [
            (step, json.loads(values))
            for step, values in db.execute("SELECT step, metrics FROM metrics WHERE run_name = 'tracked' ORDER BY id")
        ]
        config = json.loads(db.execute("SELECT config FROM configs WHERE run_name = 'tracked'").fetchone()[0])
    steps = [e for e in events if isinstance(e, Step)]
    assert [e.step for e in steps] == [1, 2, 3, 4]
    assert {step: v["train/loss"] for step, v in logged if "train/loss" in v} == {e.step: e.loss for e in steps}
    assert {step: v["train/learning_rate"] for step, v in logged if "train/loss" in v} == {
        e.step: e.learning_rate for e in steps
    }
    evals = [e for e in events if isinstance(e, Eval)]
    assert [e.step for e in evals] == [0, 2, 4]  # the base model's, then every 2 steps
    assert [
        (step, v["eval/loss"], v["eval/perplexity"], v["eval/top1"], v["eval/top5"])
        for step, v in logged
        if "eval/loss" in v
    ] == [(e.step, e.eval_loss, e.perplexity, e.top1, e.top5) for e in evals]
    assert config["report_to"] == "trackio" and config["max_steps"] == 4 and config["model"] == str(tiny_mlm)
    assert sorted(p.name for p in runs.iterdir() if p.name != ".data-cache") == [".trackio", "tracked"]
    assert not list(tmp_path.glob("*.db")), "TRACKIO_DIR from the environment is not where a run's metrics go"


def test_report_to_none_writes_nothing_but_the_run(tiny_mlm, tmp_path):
    config = tiny_config(tiny_mlm, tmp_path / "run", max_steps=2)
    assert config.report_to == "none"
    assert train(config).status == "completed"
    assert [p.name for p in tmp_path.iterdir() if p.name != ".data-cache"] == ["run"]
    said = [e.message for e in read_events(tmp_path / "run" / "events.jsonl") if isinstance(e, Status)]
    assert not [line for line in said if "tracker" in line or "Metrics also go" in line]


class Recorder(GeneralTracker):
    """An Accelerate tracker that keeps what it is given, and breaks at its third `log`."""

    name, requires_logging_directory = "recorder", False

    def __init__(self):
        super().__init__()
        self.calls = []

    @property
    def tracker(self):
        return self

    def start(self):
        self.calls.append(("start",))

    def store_init_configuration(self, values):
        self.calls.append(("config", values))

    def log(self, values, step=None, **kwargs):
        self.calls.append(("log", step, values))
        if len(self.calls) == 5:
            raise RuntimeError("the disk is full\nand a second line")

    def finish(self):
        self.calls.append(("finish",))


def test_a_tracker_gets_the_settings_and_figures_and_its_failure_does_not_fail_the_run(tiny_mlm, tmp_path, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(tracking, "make_tracker", lambda config: recorder)
    config = tiny_config(tiny_mlm, tmp_path / "run", max_steps=4, eval_steps=2, report_to="trackio")
    assert train(config).status == "completed"
    events = read_events(tmp_path / "run" / "events.jsonl")
    base, first = next(e for e in events if isinstance(e, Eval)), next(e for e in events if isinstance(e, Step))
    assert recorder.calls[:4] == [
        ("start",),
        ("config", {k: v for k, v in config.to_dict().items() if v is not None}),
        (
            "log",
            0,
            {
                "eval/loss": base.eval_loss,
                "eval/perplexity": base.perplexity,
                "eval/top1": base.top1,
                "eval/top5": base.top5,
            },
        ),
        (
            "log",
            1,
            {
                "train/loss": first.loss,
                "train/learning_rate": first.learning_rate,
                "train/tokens_per_s": first.tokens_per_s,
                "train/epoch": first.epoch,
            },
        ),
    ]
    assert len(recorder.calls) == 5, "a tracker that failed is given nothing more, not even finish"
    failed = [e.message for e in events if isinstance(e, Status) and "failed" in e.message]
    assert failed == [
        "The experiment tracker trackio failed (RuntimeError: the disk is full); the run goes on without it."
    ]
    assert [e.step for e in events if isinstance(e, Step)] == [1, 2, 3, 4]


def test_an_unknown_or_missing_tracker_is_refused_in_words_before_training(tmp_path, capsys):
    choices = ", ".join(trackers())
    with pytest.raises(
        ValueError,
        match=f"^report_to: 'trackoi' is not an experiment tracker Accelerate supports; choose one of {choices}$",
    ):
        TrainConfig(report_to="trackoi")
    argv = [
        "train",
        "--model",
        "starter",
        "--dataset",
        "builtin",
        "--report-to",
        "trackoi",
        "--output-dir",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: report_to: 'trackoi' is not")
    with pytest.raises(ValueError) as refused:
        config_from({"model": "starter", "dataset": "builtin", "report_to": "trackoi"}, str(tmp_path / "run"))
    assert plain(str(refused.value)).startswith("Experiment tracker: 'trackoi' is not")
    assert config_from({"model": "starter", "dataset": "builtin", "report_to": ""}, "run").report_to == "none"
    missing = [name for name in trackers(installed=False) if name not in trackers()]
    if missing:  # a tracker Accelerate knows whose package is not here: the run's settings stand, training is refused
        config = TrainConfig(model="starter", dataset="builtin", report_to=missing[0], output_dir=str(tmp_path / "m"))
        with pytest.raises(
            ValueError,
            match=f"^report_to: {missing[0]} is not installed here \\(pip install "
            f"{missing[0]}\\); choose one of {choices}$",
        ):
            train(config)
    assert not (tmp_path / "run").exists() and not (tmp_path / "m").exists(), "a refused run writes nothing"


def test_public_mode_offers_only_trackers_that_keep_the_metrics_on_the_server():
    public, private = Access(public=True), Access()
    assert public.trackers() == ["none", "trackio"] and private.trackers() == trackers()
    public.check_report_to("trackio")
    for name in ("wandb", "tensorboard"):
        with pytest.raises(
            ValueError,
            match="^report_to: on this public server a run reports only to none or "
            "trackio, so that its metrics stay here$",
        ):
            public.check_report_to(name)
    with pytest.raises(ValueError, match="^report_to: 'trackoi' is not"):
        private.check_report_to("trackoi")


def test_the_command_line_flag_follows_from_the_setting():
    from mlm_core.cli.commands import build_parser, train_config
    from mlm_core.config import train_arguments, train_command

    config = TrainConfig(model="starter", dataset="builtin", output_dir="runs/x", report_to="trackio")
    assert train_command(config).endswith("--report-to trackio")
    assert train_config(build_parser().parse_args(["train", *train_arguments(config)])) == config
    assert "--report-to" not in train_command(config.replace(report_to="none"))

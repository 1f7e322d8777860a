"""The model card as the hub reads it (huggingface_hub's own parser, and the stand-in hub's YAML check during a
push), hub ids by huggingface_hub's rule, and whether the hub answers through huggingface_hub's HTTP session."""

from __future__ import annotations

import dataclasses
import json
import shutil

import huggingface_hub
import pytest
import yaml
from huggingface_hub import ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from mlm_core.runs.export import describe_model, model_card, push_run
from mlm_core.runs.model_sources import resolve_source
from mlm_core.runs.run_dir import RunDir
from mlm_core.system import hub_access

from .conftest import _free_port
from .standin_hub import StandInHub

TOKEN = "hf_WriteTokenForTheStandIn0123456789"


def metadata(card: str) -> dict:
    """The card's YAML front matter as plain data."""
    return yaml.safe_load(card.split("---\n")[1])


def metrics(card: str) -> dict[str, float]:
    """metric name -> value of the card's model-index, read back by huggingface_hub."""
    _, results = model_index_to_eval_results(metadata(card)["model-index"])
    return {result.metric_name: result.metric_value for result in results}


def copy_run(run: RunDir, folder, **settings) -> RunDir:
    """A copy of a finished run whose settings say it started from other places (its files stay the real ones)."""
    shutil.copytree(run.path, folder, ignore=shutil.ignore_patterns("export"))
    copy = RunDir(folder)
    values = json.loads(copy.settings_path.read_text(encoding="utf-8"))
    copy.settings_path.write_text(json.dumps({**values, **settings}), encoding="utf-8")
    return copy


def cached_card(cache, repo_id: str, text: str) -> None:
    """A model card in a hub cache laid out as huggingface_hub downloads leave it."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "README.md").write_text(text, encoding="utf-8")


@pytest.fixture
def chain(finished_run, tmp_path, monkeypatch):
    """run `third` (a folder elsewhere) <- run `second` (by folder) <- run `first` (as run:first) <- bert-base-uncased,
    the base model's card (Apache 2.0) in the local hub cache."""
    root = tmp_path / "runs"
    monkeypatch.setenv("MLM_STUDIO_RUNS", str(root))
    cache = tmp_path / "hf-cache"
    cached_card(cache, "bert-base-uncased", "---\nlicense: apache-2.0\nlanguage: en\n---\n# BERT\n")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    copy_run(finished_run, root / "first", model="bert-base-uncased", dataset="dany0407/eli5_category")
    copy_run(finished_run, root / "second", model="run:first", dataset="builtin")
    return copy_run(
        finished_run,
        tmp_path / "elsewhere" / "third",
        model=str(root / "second"),
        dataset="someone/more-text",
        slice="train[:500]",
    )


@pytest.fixture
def online(monkeypatch):
    """This process online against a fresh stand-in hub (huggingface_hub read HF_HUB_OFFLINE=1 at import)."""
    hub = StandInHub(accept_commits=True)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(hub_access, "_cache", {})
    yield hub
    hub.close()


def test_a_finished_runs_card_parses_back_to_its_metadata_and_measurements(finished_run):
    card = model_card(finished_run)
    data = ModelCard(card).data  # the hub's own parser
    results = finished_run.results()
    assert data.pipeline_tag == "fill-mask" and data.library_name == "transformers"
    assert data.tags == ["mlm-studio", "fill-mask", "roberta"]
    assert data.base_model is None and data.datasets is None and data.license is None  # a local folder, built-in text
    assert data.model_name == "done"
    [task] = {(r.task_type, r.dataset_type, r.dataset_name, r.dataset_split) for r in data.eval_results}
    assert task == ("fill-mask", "pydoc_data.topics", "Python language reference (pydoc_data.topics)", "train[:40]")
    measured = metrics(card)
    held_out = "(held-out 10% of train[:40])"
    assert measured == pytest.approx(
        {
            f"Perplexity {held_out}": results.final_perplexity,
            f"Masked-word accuracy, top-1 {held_out}": results.final_top1,
            f"Masked-word accuracy, top-5 {held_out}": results.final_top5,
        },
        abs=1e-4,
    )
    assert "words guessed right, top guess" in card and "## Hyper-parameters" in card  # the prose is kept
    assert str(finished_run.path.parent) not in card


def test_a_chain_of_runs_names_the_hub_model_at_its_root_with_its_licence_and_every_hub_dataset(chain):
    data = ModelCard(model_card(chain)).data
    assert data.base_model == "bert-base-uncased"  # a valid id without a namespace is kept
    assert data.license == "apache-2.0"  # from the base model's card in the local hub cache
    assert data.datasets == ["someone/more-text", "dany0407/eli5_category"]  # the built-in corpus is not listed
    assert {(r.dataset_type, r.dataset_name, r.dataset_split) for r in data.eval_results} == {
        ("someone/more-text", "someone/more-text", "train[:500]")
    }
    assert describe_model("bert-base-uncased") == "[bert-base-uncased](https://huggingface.co/bert-base-uncased)"


def test_a_base_model_without_a_cached_card_has_no_licence_and_a_loop_of_runs_has_no_base(
    finished_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("MLM_STUDIO_RUNS", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    hub_run = copy_run(finished_run, tmp_path / "hub", model="google-bert/bert-base-cased")
    data = ModelCard(model_card(hub_run)).data
    assert data.base_model == "google-bert/bert-base-cased" and "license" not in data.to_dict()
    looped = copy_run(finished_run, tmp_path / "loop", model="run:loop")
    assert ModelCard(model_card(looped)).data.base_model is None
    starter = copy_run(finished_run, tmp_path / "from-starter", model="starter")
    assert ModelCard(model_card(starter)).data.base_model is None
    starter.write_results(dataclasses.replace(starter.results(), task="clm"))  # as a causal run records it
    card = model_card(starter)
    assert ModelCard(card).data.pipeline_tag == "text-generation" and "text-generation" in ModelCard(card).data.tags
    assert "Next-token accuracy, top-1 (held-out 10% of train[:40])" in metrics(card)


def test_bad_hub_ids_are_refused_in_words_naming_the_field(finished_run, monkeypatch):
    for good in ("bert-base-uncased", "distilbert/distilroberta-base", "a.b_c-d/E1"):
        assert hub_access.is_hub_id(good)
    for bad in ("a/b/c", "a--b", "x..y", "name.git", "-start", "/abs/path", "run:x", "with space", "", None, "é" * 3):
        assert not hub_access.is_hub_id(bad), bad
    for bad in ("no-slash", "me/bad--name", "me/model/extra", "me/"):
        with pytest.raises(ValueError, match=r"^repo_id: use the form 'your-name/model-name'$"):
            push_run(finished_run, bad, token="x")
    monkeypatch.setenv(hub_access.NO_LOCAL_PATHS_VARIABLE, "1")  # public mode: names are hub ids
    assert resolve_source("bert-base-uncased") == "bert-base-uncased"
    with pytest.raises(ValueError, match=r"^model: use a Hugging Face hub id such as 'distilbert/distilroberta-base'"):
        resolve_source("../../etc")
    with pytest.raises(ValueError, match=r"^dataset: use a Hugging Face hub id such as 'dany0407/eli5_category'"):
        hub_access.check_hub_name("a/b/c", "dataset", "dataset")


def test_reachability_asks_through_huggingface_hubs_session_without_a_token(online, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert hub_access.is_online()
    assert online.requests == [("HEAD", "/api/models?limit=1", "")]  # one cheap request, no token
    assert hub_access.is_online() and len(online.requests) == 1  # remembered a while
    monkeypatch.setattr(hub_access, "_cache", {})
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_free_port()}")  # nobody listens there
    assert not hub_access.is_online()


def test_offline_by_setting_makes_no_request(online, monkeypatch):
    def no_session():
        raise AssertionError("an offline setting must not reach the network")

    monkeypatch.setattr(hub_access, "get_session", no_session)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not hub_access.is_online() and online.requests == []


def test_the_stand_in_hub_accepts_the_card_of_a_pushed_chain_run(chain, online):
    with pytest.raises(ValueError, match="the hub refused the upload"):  # the stand-in checks base_model exists
        push_run(chain, "visitor/chained", token=TOKEN)
    assert not online.commits
    online.add_repo("model", "bert-base-uncased", {"config.json": b"{}"})
    assert "visitor/chained" in push_run(chain, "visitor/chained", token=TOKEN)
    assert any(method == "POST" and path == "/api/validate-yaml" for method, path, _ in online.requests)
    readme = online.files("model", "visitor/chained")["README.md"].decode()
    assert readme == model_card(chain)
    assert ModelCard(readme).data.base_model == "bert-base-uncased"

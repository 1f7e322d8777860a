"""The page answers where the person looks and in words: run labels from the uploaded file, Start refusing what
Preview refuses, feedback from every Runs-tab button, Resume showing the resumed run, paragraph breaks in the Preview,
the header naming the built-in text and model (over HTTP); answers in view at 390 and 1366 px, no queue flash, a
counting-down start time, unbroken table headers and the zip of the selected run (in a browser)."""

from __future__ import annotations

import html
import json
import re
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mlm_core.data.builtin_corpus import reference_records
from mlm_core.runs.model_sources import STARTER_DIR

from .app_client import count, ended, message, start, status, train_form, wait_for
from .conftest import start_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SIZES = [(390, 844), (1366, 768)]
GARDEN = [
    "The old garden wall was covered in ivy.",
    "Roses climbed the trellis by the gate every June.",
    "We watered the beans each evening before dusk.",
    "Slugs ate the young lettuce in the raised bed.",
]
KITCHEN = [
    "Whisk the eggs with a pinch of salt.",
    "Fold the flour gently into the butter and sugar.",
    "Bake the loaf until the crust sounds hollow.",
    "Let the soup simmer while the onions soften.",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app with its own runs folder, so that no other test's run waits in its queue."""
    runs, log = tmp_path_factory.mktemp("page-runs"), tmp_path_factory.mktemp("page-log") / "app.log"
    process, url = start_app(runs, log)
    yield {"url": url, "runs": runs}
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(server) -> Client:
    return Client(server["url"], verbose=False)


def _text_file(folder: Path, name: str, sentences: list[str], paragraphs: int = 60) -> Path:
    """A .txt of short paragraphs (a blank line between them), each a sentence with its number."""
    path = folder / name
    path.write_text(
        "\n\n".join(f"{sentences[i % len(sentences)]} Note {i}." for i in range(paragraphs)), encoding="utf-8"
    )
    return path


def _quick(tiny_mlm, **changes) -> dict:
    """Form changes for a run of the tiny model that takes seconds."""
    return {"model": str(tiny_mlm), "block_size": 64, "batch_size": 8, "max_steps": 2, **changes}


def _upload(path: Path, **changes) -> dict:
    """Form changes for training on an uploaded file."""
    return {"dataset": "file", "dataset_file": handle_file(str(path)), "slice": "train", **changes}


def _runs(client: Client) -> dict[str, dict]:
    """Every run by name, as the Runs tab lists them."""
    return {run["name"]: run for run in json.loads(client.predict(visitor="", api_name="/runs"))}


def _figures_out(text: str) -> str:
    """A message with its numbers blanked (a memory estimate differs with what is free at that moment)."""
    return re.sub(r"\d[\d.,]*", "N", text)


def _call(client: Client, endpoint: str, **kwargs) -> tuple[object, list[str]]:
    """Call an endpoint as the page's button does: its outputs and the messages it showed (gr.Info, gr.Warning)."""
    job = client.submit(api_name=endpoint, **kwargs)
    outputs = job.result(timeout=120)
    updates, shown = job.communicator.updates, []
    while not updates.empty():
        log = getattr(updates.get_nowait(), "log", None)
        if log:
            shown.append(html.unescape(log[0]))
    return outputs, shown


@pytest.fixture(scope="module")
def uploaded_runs(client, tiny_mlm, tmp_path_factory) -> dict[str, str]:
    """Two completed runs, one on each of two uploaded files; the status line Start answered, by run name."""
    folder = tmp_path_factory.mktemp("uploads")
    boards = {}
    for name, sentences in (("gardening.txt", GARDEN), ("recipes.txt", KITCHEN)):
        board = client.predict(
            visitor="",
            probes="",
            **train_form(**_upload(_text_file(folder, name, sentences), **_quick(tiny_mlm))),
            api_name="/start",
        )
        assert wait_for(client, board[0], ended, timeout=180)["status"] == "completed"
        boards[board[0]] = board[1]
    return boards


def test_runs_of_uploads_are_labelled_with_their_file_names(client, uploaded_runs, tiny_mlm):
    listed = _runs(client)
    labels = [listed[name]["label"] for name in uploaded_runs]
    assert labels == [f"{tiny_mlm.name} on gardening.txt", f"{tiny_mlm.name} on recipes.txt"]
    assert ["gardening" in name for name in uploaded_runs] == [True, False]  # the folder names say it too


def test_start_with_nothing_else_running_says_starting_not_queued(uploaded_runs):
    for line in uploaded_runs.values():
        assert "Starting" in line and "Queued" not in line, line


def test_start_refuses_what_preview_refuses_in_the_same_words_and_leaves_no_run(client, tmp_path):
    three = tmp_path / "three lines.txt"
    three.write_text("The garden wall was old.\nThe roses climbed it.\nWe watered them daily.\n", encoding="utf-8")
    before = set(_runs(client))
    for changes, words in [
        ({"model": "distilbert/distilroberta-base"}, "the hub is not reachable"),
        (_upload(three), "is too short for a run"),
        ({"batch_size": 4096}, "GiB of memory"),
    ]:
        with pytest.raises(AppError) as previewed:
            client.predict(**train_form(**changes), api_name="/preview")
        with pytest.raises(AppError) as started:
            start(client, **changes)
        assert words in message(started.value)
        assert _figures_out(message(started.value)) == _figures_out(message(previewed.value))
        assert "Traceback" not in message(started.value)
    assert set(_runs(client)) == before  # nothing queued, nothing failed


def test_the_preview_keeps_paragraph_breaks(client, tiny_mlm, tmp_path):
    upload = _text_file(tmp_path, "garden.txt", GARDEN)
    _, example, _ = client.predict(**train_form(**_upload(upload, **_quick(tiny_mlm))), api_name="/preview")
    words = [token["token"] for token in (example if isinstance(example, list) else example["value"])]
    text = "".join(words)
    assert "\n\n" in words and not re.search(r"\.(Note|[A-Z][a-z])", text), text  # never "ivy.Roses"
    assert re.search(r"\d\.\n\n[A-Z]", text), text


def test_runs_tab_buttons_say_what_they_did_and_resume_shows_the_run_in_the_train_tab(client, tiny_mlm):
    run = start(client, **_quick(tiny_mlm, max_steps=5000, slice="train[:20]"))
    waiting = None
    try:
        wait_for(client, run, lambda s: count(s, "step") >= 1, timeout=120)
        _, shown = _call(client, "/stop_run", visitor="", run_name=run)
        assert any("stops after its current step and keeps its checkpoint" in m for m in shown), shown
        wait_for(client, run, lambda s: s["status"] == "stopped", timeout=60)

        outputs, shown = _call(client, "/resume", visitor="", run_name=run)
        assert any("continues from its checkpoint; the Train tab shows it" in m for m in shown), shown
        assert outputs[-1] == run  # the Train tab's watched run (the switch to that tab is not an API output)
        wait_for(client, run, lambda s: s["status"] == "running", timeout=60)

        waiting = start(client, **_quick(tiny_mlm))
        assert status(client, waiting)["status"] == "queued"
        _, shown = _call(client, "/stop_run", visitor="", run_name=waiting)
        assert any("was waiting in the queue; it is taken out" in m for m in shown), shown
        waiting = None
        _call(client, "/stop_run", visitor="", run_name=run)
        wait_for(client, run, lambda s: s["status"] == "stopped", timeout=60)

        _, shown = _call(client, "/set_label", visitor="", run_name=run, label="my <b>beans</b>")
        assert "Label saved: my <b>beans</b>." in shown
        _, shown = _call(client, "/delete", visitor="", run_name=run)
        assert f"Run {run} is deleted." in shown and run not in _runs(client)
    finally:
        for name in (waiting, run):
            if name and name in _runs(client) and not ended(status(client, name)):
                client.predict(visitor="", run_name=name, api_name="/stop")
                wait_for(client, name, lambda s: s["status"] != "running", timeout=60)


def test_the_header_says_what_the_builtin_text_and_model_are(server):
    config = json.loads(urllib.request.urlopen(f"{server['url']}config", timeout=10).read())
    header = next(
        c["props"]["value"]
        for c in config["components"]
        if c["type"] == "markdown" and "# MLM Studio" in str(c["props"].get("value"))
    )
    card = (STARTER_DIR / "README.md").read_text(encoding="utf-8")
    last_paragraph = " ".join(card.strip().split("\n\n")[-1].split())  # what the card says the model knows
    assert "Built-in text:** The Python language reference (`pydoc_data.topics`)" in header
    assert f"{len(reference_records())} topics" in header
    assert f"Built-in model (`starter`):** {last_paragraph}" in header


# ---- in a browser -----------------------------------------------------------------------------------------------

IN_VIEW = (
    "(id) => { const r = document.getElementById(id).getBoundingClientRect(); "
    "return r.height > 0 && r.top >= 0 && r.top < innerHeight - 20; }"
)
# Words of table headers drawn on more than one line (broken mid-word).
BROKEN_HEADER_WORDS = """(id) => { const broken = [];
  for (const th of document.querySelectorAll(`#${id} th`)) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.textContent.matchAll(/\\S+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
        if (lines.size > 1) broken.push(word[0]);
      }
    }
  }
  return broken; }"""
WATCHING_STATUS = """() => { window.statusSeen = []; const el = document.getElementById('run-status');
  new MutationObserver(() => window.statusSeen.push(el.innerText)).observe(el, {subtree: true, childList: true,
  characterData: true}); }"""


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser, url: str, width: int, height: int):
    """The app in a fresh browser context (a new visitor) at this window size."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(60_000)
    page.goto(url)
    page.locator("#start-button").wait_for()
    return page


def _set_model(page, model: str) -> None:
    """Type a model name (not the starter) into the Base model box, as a person does."""
    box = page.locator("#model input")
    box.fill(model)
    box.press("Enter")
    rate = page.get_by_label("Learning rate")
    page.wait_for_function("(box) => box.value !== '0.001'", arg=rate.element_handle())  # the page took the model


def _seconds(line: str) -> int:
    """The 'start in about 1 min 05 s' of a status line, in seconds."""
    found = re.search(r"start in about ([^.]+)", line)
    assert found, line
    return sum(int(n) * {"h": 3600, "min": 60, "s": 1}[unit] for n, unit in re.findall(r"(\d+) (h|min|s)", found[1]))


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=["390px", "1366px"])
def test_preview_and_start_answer_in_view_and_start_shows_no_queue_flash(browser, server, client, tiny_mlm, size):
    page = _page(browser, server["url"], *size)
    _set_model(page, str(tiny_mlm))
    page.get_by_label("Rows (slice)").fill("train[:12]")
    page.locator("#preview-button").click()
    page.locator("#preview").get_by_text("Estimate on").wait_for()
    assert page.evaluate(IN_VIEW, "preview"), "the Preview's answer is out of view"

    page.evaluate(WATCHING_STATUS)
    page.locator("#start-button").click()
    page.locator("#run-status").get_by_text("Starting").or_(
        page.locator("#run-status").get_by_text("Training")
    ).first.wait_for()
    assert page.evaluate(IN_VIEW, "run-status"), "the run's status is out of view"
    run = page.locator("#watched-run textarea").input_value()
    page.locator("#run-status").get_by_text("Run completed").wait_for(timeout=180_000)
    assert page.locator("#watched-run textarea").input_value() == run  # the page kept to the run Start chose
    assert status(client, run)["status"] == "completed"
    seen = [line.splitlines()[-1] for line in page.evaluate("() => window.statusSeen") if line.strip()]
    started = seen.index(next(line for line in seen if "Starting" in line))
    assert not any(word in line for line in seen[started:] for word in ("Queued", "No run yet")), seen


def test_a_queued_runs_start_time_counts_down(monkeypatch):
    from mlm_core.events import Step
    from mlm_core.service.workspace import Workspace as Studio

    # The wait the page shows is the running run's estimate from its last step, less the time since that step.
    step = Step(
        step=2,
        total_steps=40,
        epoch=0.1,
        loss=1.0,
        learning_rate=1e-3,
        tokens=10,
        tokens_per_s=1.0,
        elapsed_s=4.0,
        eta_s=100.0,
        time=time.time() - 10,
    )
    monkeypatch.setattr(Studio, "events", lambda self, run: [step])
    studio = Studio.__new__(Studio)
    first = studio.eta_s(None)
    time.sleep(1.1)
    second = studio.eta_s(None)
    assert 89 <= first <= 91 and first - 2 < second < first
    from studio.board import duration

    assert duration(first) != duration(second)  # the status line, redrawn, shows it going down


@pytest.mark.slow
@pytest.mark.parametrize("size", SIZES, ids=["390px", "1366px"])
def test_table_headers_never_break_inside_a_word(browser, server, uploaded_runs, size):
    page = _page(browser, server["url"], *size)
    assert page.evaluate(BROKEN_HEADER_WORDS, "probe-table") == []
    page.get_by_role("tab", name="Runs").click()
    page.locator("#runs-table").get_by_text(next(iter(uploaded_runs))).filter(visible=True).first.wait_for()
    assert page.evaluate(BROKEN_HEADER_WORDS, "runs-table") == []


@pytest.mark.slow
def test_the_zip_follows_the_selected_run_and_resume_shows_the_run_in_the_train_tab(
    browser, server, client, uploaded_runs, tiny_mlm
):
    stopped = start(client, **_quick(tiny_mlm, max_steps=5000, slice="train[:20]"))
    wait_for(client, stopped, lambda s: count(s, "step") >= 1, timeout=120)
    client.predict(visitor="", run_name=stopped, api_name="/stop")
    wait_for(client, stopped, lambda s: s["status"] == "stopped", timeout=60)
    page = _page(browser, server["url"], 1366, 768)
    page.get_by_role("tab", name="Runs").click()

    labels = {name: run["label"] for name, run in _runs(client).items()}

    def choose(run: str) -> None:
        """Pick a run in the One run box and wait for the page to show it (its label)."""
        page.locator("#selected-run input").fill(run)
        page.locator("#selected-run input").press("Enter")
        label = page.get_by_label("Label", exact=True)
        page.wait_for_function("([box, label]) => box.value === label", arg=[label.element_handle(), labels[run]])

    first, second = uploaded_runs
    choose(first)
    page.get_by_role("button", name="Download as zip").click()
    offered = "() => document.querySelector('#run-zip').innerText"
    page.wait_for_function(f"({offered})().includes({json.dumps(first)})")
    choose(second)
    page.wait_for_function(f"!({offered})().includes('.zip')")  # not the first run's zip any more

    choose(stopped)
    page.get_by_role("button", name="Resume training").click()
    page.locator("#run-status").filter(visible=True).get_by_text("Training").or_(
        page.locator("#run-status").get_by_text("Starting")
    ).first.wait_for()
    assert page.locator("#watched-run textarea").input_value() == stopped
    page.locator("#stop-button").click()
    page.locator("#run-status").get_by_text("stopped at step", exact=False).wait_for(timeout=60_000)

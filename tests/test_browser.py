"""A real browser (Debian chromium via Playwright) clicks through training on an uploaded everyday text, the queue,
reload, stop, fill-mask and the comparison of two runs."""

import json
import re
import shutil
from pathlib import Path

import pytest
from gradio_client import Client

from mlm_core.service.shown import RANKS_TOLD
from studio.fill_tab import EXAMPLES

from .app_client import start
from .conftest import start_zero_gpu_app

pytestmark = pytest.mark.slow  # a real browser driving real runs: minutes
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DIARY = Path(__file__).resolve().parent / "garden-diary.txt"  # a year of a vegetable garden, in everyday English
DIARY_SENTENCE, DIARY_ANSWER = "In August the <mask> grew faster than we could pick them.", "courgettes"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def _traces(plot_id: str, trace: int = 0, count: bool = False) -> str:
    """JavaScript: how many points a plot's trace has (or, with `count`, how many traces it has)."""
    value = "p.data.length" if count else f"(p.data[{trace}] ? p.data[{trace}].x.length : 0)"
    return (
        f"() => {{ const p = document.querySelector('#{plot_id} .js-plotly-plot'); "
        f"return p && p.data && p.data.length ? {value} : 0; }}"
    )


POINTS, EVALS = _traces("loss-plot"), _traces("ppl-plot")
BARS = (
    "() => { const p = document.querySelector('#plot-a .js-plotly-plot'); "
    "return p && p.data ? p.data[0].y.length : 0; }"
)


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _new_page(browser, width: int = 1400, height: int = 1000):
    """A page in a fresh browser context: its own local storage, so another visitor."""
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.set_default_timeout(60_000)
    return page


@pytest.fixture(scope="module")
def page(browser):
    return _new_page(browser, 1366, 768)


def _place(note: str) -> int:
    """The right word's rank in a Fill-mask note; past RANKS_TOLD ('not in its top 1,000 words'), one more."""
    told = re.search(r"guess #([\d,]+)", note)
    return int(told[1].replace(",", "")) if told else RANKS_TOLD + 1


def _status(page) -> str:
    return page.locator("#run-status").inner_text()


def _start(page) -> str:
    """Click Start and return the run the page then watches (not the one it showed before)."""
    watched = "document.querySelector('#watched-run textarea').value"
    before = page.evaluate(f"() => {watched}")
    page.locator("#start-button").click()
    page.wait_for_function(f"() => {watched} && {watched} !== {json.dumps(before)}")
    return page.evaluate(f"() => {watched}")


def test_train_queue_reload_stop_fill_mask_and_compare_in_a_browser(page, app_server):
    page.goto(app_server["url"])
    page.get_by_text("MLM Studio").first.wait_for()
    assert "Hub not reachable" in page.content()
    start = page.locator("#start-button").bounding_box()
    assert start["y"] + start["height"] <= 768  # Start is above the fold of a 1366 x 768 screen
    page.locator("#source").get_by_text("Upload a file").click()  # a person's own everyday text
    page.locator("#dataset-file input[type=file]").set_input_files(DIARY)
    page.locator("#dataset-file").get_by_text(DIARY.name).wait_for()
    page.locator("#epochs input").fill("40")
    page.locator("#epochs input").blur()
    page.get_by_text("Command line").click()  # the same run from the command line, for the form as it stands
    page.locator("#train-command").get_by_text("--epochs 40").wait_for()
    assert "python -m mlm_core train --model" in page.locator("#train-command").inner_text()
    page.screenshot(path=ARTIFACTS / "train-tab.png")
    first = _start(page)
    page.wait_for_function(f"({POINTS})() >= 2")
    assert DIARY.stem in first  # the run is named after the file

    page.locator("#source").get_by_text("Built-in corpus").click()
    page.locator("#epochs input").fill("3")  # a second Start while the first trains: it waits in the queue
    second = _start(page)
    page.locator("#run-status").get_by_text("Queued, position 1").wait_for()
    assert second != first
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=ARTIFACTS / "queued.png")

    page.reload()  # the page comes back to the visitor's waiting run, then follows it when it starts
    page.wait_for_function(f"({POINTS})() >= 2", timeout=180_000)
    assert page.locator("#watched-run textarea").input_value() == second
    seen = page.evaluate(POINTS)
    page.wait_for_function(f"({POINTS})() >= {seen + 2}")  # the loss plot grows while we watch
    assert "Training" in _status(page)
    page.wait_for_function(f"({EVALS})() >= 3", timeout=180_000)  # base perplexity and later ones, probes ranked
    page.locator("#probe-table").get_by_text("→").filter(visible=True).first.wait_for()  # held-out probes
    page.screenshot(path=ARTIFACTS / "training.png", full_page=True)

    page.locator("#stop-button").click()
    page.locator("#run-status").get_by_text("Run stopped at step").wait_for(timeout=15_000)
    page.screenshot(path=ARTIFACTS / "stopped.png", full_page=True)

    page.get_by_role("tab", name="Fill-mask").click()
    text, answer = EXAMPLES[1]
    # an example: a held-out sentence and its answer (Gradio shows an example's first 60 characters)
    page.get_by_text(text[:50]).filter(visible=True).first.click()
    page.locator("#note-a").get_by_text(f"The right word {answer} is ").wait_for()  # results follow it
    page.locator("#top-k input[type=number]").fill("3")
    page.locator("#top-k input[type=number]").press("Enter")
    page.wait_for_function(f"({BARS})() === 3")  # and follow top_k
    # The diary's run (Model B, the newest completed run) beside the starter, on a sentence of the diary: the
    # answer, a word of several pieces, is ranked and scored by both, and the guesses are whole words.
    page.locator("#model-b input").wait_for()
    assert DIARY.name in page.locator("#model-b input").input_value()
    page.locator("#fill-text").get_by_role("textbox").fill(DIARY_SENTENCE)
    page.locator("#fill-answer").get_by_role("textbox").fill(DIARY_ANSWER)
    page.locator("#top-k input[type=number]").fill("5")
    page.locator("#fill-button").click()
    ranks = [page.locator(f"#note-{m}").get_by_text(f"The right word {DIARY_ANSWER} is ") for m in "ab"]
    for rank in ranks:
        rank.wait_for()
    base, tuned = (_place(r.inner_text()) for r in ranks)
    assert tuned < base  # the run on the diary learned its word
    guesses = page.locator("#table-b").inner_text()
    assert not re.search("Ġ|##|▁|\ufffd", guesses)  # guesses are shown as words, never as raw pieces
    page.screenshot(path=ARTIFACTS / "fill-mask.png", full_page=True)

    page.get_by_role("tab", name="Runs").click()
    table = page.locator("#runs-table")
    for name in (first, second):
        table.get_by_text(name).filter(visible=True).first.wait_for()
        page.locator("#compare-runs label").filter(has_text=name).click()
    page.wait_for_function(f"({_traces('compare-loss', count=True)})() === 2")
    page.wait_for_function(f"({_traces('compare-ppl', count=True)})() === 2")
    assert page.evaluate(_traces("compare-ppl", 0)) >= 2 and page.evaluate(_traces("compare-ppl", 1)) >= 2
    page.locator("#compare-settings").get_by_text("epochs", exact=True).filter(visible=True).first.wait_for()
    page.screenshot(path=ARTIFACTS / "runs.png", full_page=True)


class _Pixel:
    """A web server that counts the requests a page makes to it (a tracking pixel, a phishing link's target)."""

    def __init__(self):
        from tests.standin_hub import StandInHub

        self.server = StandInHub()
        self.url = self.server.url

    @property
    def hits(self) -> list:
        return self.server.requests


def _markdown(pixel: str) -> str:
    """What an attacker types where the page shows text: a fake message with a link, an image, and raw HTML."""
    return f"[Your session expired]({pixel}/login) ![t]({pixel}/pixel.gif) <img src={pixel}/tag.gif>"


def _assert_shown_as_text(page, pixel: str, visible: bool = True) -> None:
    """The visitor's text is on the page as typed (when `visible`), and the page made no link or image of it."""
    if visible:
        page.get_by_text("[Your session expired]", exact=False).filter(visible=True).first.wait_for()
    made = page.evaluate(f'() => [...document.querySelectorAll(\'a[href^="{pixel}"], img[src^="{pixel}"]\')].length')
    assert made == 0


def test_what_a_visitor_typed_shows_as_text_in_another_visitors_browser(browser, public_server, app_server):
    from gradio_client import Client

    from mlm_core.queue import RunQueue
    from mlm_core.runs.records import RunIdentity

    from .app_client import ended, start, wait_for
    from .conftest import tiny_config

    pixel = _Pixel()
    typed = _markdown(pixel.url)
    try:
        # Public Space: visitor A names a run and writes a probe with Markdown and HTML in them.
        a = Client(public_server["url"], verbose=False)
        run = start(a, probes=f"The <mask> {typed}", max_steps=2)
        wait_for(a, run, ended, timeout=180)
        a.predict(
            visitor="", run_name=run, label=f'<a href="{pixel.url}/a">[Your session expired]</a>', api_name="/set_label"
        )  # Plotly renders links in legends
        # On your own machine: a model name with Markdown in it. Start refuses it; a run queued with it by another
        # program sharing the runs folder fails to load, and says so.
        c = Client(app_server["url"], verbose=False)
        failed = (
            RunQueue(app_server["runs"])
            .submit(tiny_config(typed, app_server["runs"] / "typed-model"), RunIdentity(label="typed model"))
            .name
        )
        wait_for(c, failed, ended, timeout=120)

        page = _new_page(browser)  # visitor B
        page.goto(public_server["url"])
        page.get_by_role("tab", name="Runs").click()
        page.locator("#runs-table").get_by_text(run).filter(visible=True).first.wait_for()
        _assert_shown_as_text(page, pixel.url)
        page.locator("#compare-runs label").filter(has_text=run).click()
        page.wait_for_function(f"({_traces('compare-ppl', count=True)})() === 1")
        legend = page.evaluate("() => document.querySelector('#compare-ppl .legendtext').textContent")
        assert legend.startswith('<a href="') and "[Your session expired]</a>" in legend  # as typed, no link made
        assert page.evaluate("() => document.querySelectorAll('.js-plotly-plot svg a').length") == 0
        page.locator("#selected-run input").fill(run)  # the page says what B may do before B clicks
        page.locator("#selected-run input").press("Enter")
        page.locator("#run-rights").get_by_text("Another visitor started this run").wait_for()
        assert page.get_by_role("button", name="Delete…").is_disabled()
        page.get_by_role("tab", name="Fill-mask").click()
        page.screenshot(path=ARTIFACTS / "public-markdown.png", full_page=True)
        _assert_shown_as_text(page, pixel.url, visible=False)

        page.goto(app_server["url"])  # the private app's page shows the failed run with its model name
        page.get_by_role("tab", name="Runs").click()
        page.locator("#runs-table").get_by_text(failed).filter(visible=True).first.wait_for()
        _assert_shown_as_text(page, pixel.url)
        page.get_by_role("tab", name="Train").click()  # its status line names the model
        page.locator("#run-status").get_by_text("[Your session expired]", exact=False).wait_for()
        _assert_shown_as_text(page, pixel.url)
        assert pixel.hits == []
    finally:
        pixel.server.close()


def test_a_spreadsheet_previews_its_columns_and_a_wordpiece_model_fills_whole_spaced_words(
    browser, app_server, tmp_path
):
    import openpyxl

    from .model_families import build_family

    recipes = [
        ("Lemon cake", 4, "flour, sugar, lemons", "Mix the flour and the sugar, then bake the cake for an hour."),
        ("Pancakes", 2, "eggs, milk, flour", "Whisk the eggs with the milk and fry the batter in a hot pan."),
        ("Tomato soup", 6, "tomatoes, onions", "Cook the onions, add the tomatoes and let the soup simmer."),
    ]
    workbook = openpyxl.Workbook()
    for row in [("title", "servings", "ingredients", "instructions"), *recipes * 12]:
        workbook.active.append(row)
    sheet = tmp_path / "recipes.xlsx"
    workbook.save(sheet)
    model, kind = build_family("bert", tmp_path / "bert")
    assert kind == "WordPiece"

    page = _new_page(browser)
    page.goto(app_server["url"])
    page.locator("#source").get_by_text("Upload a file").click()
    page.locator("#dataset-file input[type=file]").set_input_files(sheet)
    page.locator("#dataset-file").get_by_text(sheet.name).wait_for()
    page.locator("#preview-button").click()
    page.locator("#preview").get_by_text("columns title, ingredients and instructions, joined per row").wait_for()
    assert "36 rows" in page.locator("#preview").inner_text()  # every row read, none cut at a comma

    page.get_by_role("tab", name="Fill-mask").click()
    page.locator("#model-a input").fill(str(model))  # a WordPiece model: `##` pieces continue a word
    page.locator("#model-a input").press("Enter")
    for text, before, after in [
        ("Whisk the <mask> with the milk.", "Whisk the ", " with the milk."),
        ("Whisk the eggs with the <mask>.", "Whisk the eggs with the ", "."),
    ]:
        page.locator("#fill-text").get_by_role("textbox").fill(text)
        page.locator("#fill-button").click()
        page.wait_for_function(
            "t => document.querySelector('#table-a').innerText.includes(t)", arg=before, timeout=60_000
        )
        table = page.locator("#table-a").inner_text()
        filled = [line for line in table.splitlines() if line.strip().startswith(before.strip())]
        assert filled, table
        for sentence in filled:  # whole words, spaced as typed: never "the##ing" or "theing" or "the  x"
            sentence = sentence.strip()
            assert sentence.startswith(before) and sentence.endswith(after), sentence
            word = sentence[len(before) : len(sentence) - len(after)]
            assert word and " " not in word and "#" not in word, sentence
    page.screenshot(path=ARTIFACTS / "spreadsheet-wordpiece.png", full_page=True)


def test_on_zerogpu_an_open_page_trains_its_run_in_gpu_calls(browser, tiny_mlm, tmp_path):
    process, url, journal = start_zero_gpu_app(
        tmp_path, MLM_STUDIO_GPU_SLICE_S="4"
    )  # about 2 s of steps a call: the run takes a few
    try:
        client = Client(url, verbose=False)
        name = start(client, model=str(tiny_mlm), slice="train[:60]", block_size=64, batch_size=8)
        page = _new_page(browser)
        page.goto(url)
        page.wait_for_function(
            "() => (document.querySelector('#run-status') || {innerText: ''}).innerText.includes('Run completed')",
            timeout=120_000,
        )
        assert page.locator("#watched-run textarea").input_value() == name
        slices = [json.loads(line) for line in journal.read_text().splitlines()]
        assert len(slices) >= 2 and {call["task"] for call in slices} == {"train_slice"}, slices
        assert all(call["outcome"] == "ok" and call["visitor"] == "127.0.0.1" for call in slices), slices
        page.context.close()
    finally:
        process.kill()
        process.wait(timeout=30)

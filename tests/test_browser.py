"""A real browser (Debian chromium via Playwright) clicks through training, the queue, reload, stop, fill-mask and
the comparison of two runs."""

import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _traces(plot_id: str, trace: int = 0, count: bool = False) -> str:
    """JavaScript: how many points a plot's trace has (or, with `count`, how many traces it has)."""
    value = "p.data.length" if count else f"(p.data[{trace}] ? p.data[{trace}].x.length : 0)"
    return (f"() => {{ const p = document.querySelector('#{plot_id} .js-plotly-plot'); "
            f"return p && p.data && p.data.length ? {value} : 0; }}")


POINTS, EVALS = _traces("loss-plot"), _traces("ppl-plot")
BARS = ("() => { const p = document.querySelector('#plot-a .js-plotly-plot'); "
        "return p && p.data ? p.data[0].y.length : 0; }")


@pytest.fixture(scope="module")
def page(app_server):
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _status(page) -> str:
    return page.locator("#run-status").inner_text()


def test_train_queue_reload_stop_fill_mask_and_compare_in_a_browser(page, app_server):
    page.goto(app_server["url"])
    page.get_by_text("MLM Studio").first.wait_for()
    assert "Hub not reachable" in page.content()
    page.locator("#epochs input").fill("2")
    page.locator("#probes textarea").fill("An assignment statement evaluates the <mask> list.")
    page.screenshot(path=ARTIFACTS / "train-tab.png", full_page=True)
    page.locator("#start-button").click()
    page.wait_for_function(f"({POINTS})() >= 2")
    first = page.locator("#watched-run textarea").input_value()

    page.locator("#epochs input").fill("5")  # a second Start while the first trains: it waits in the queue
    page.locator("#start-button").click()
    page.locator("#run-status").get_by_text("Queued, position 1").wait_for()
    second = page.locator("#watched-run textarea").input_value()
    assert second != first
    page.screenshot(path=ARTIFACTS / "queued.png", full_page=True)

    page.reload()  # the page comes back to the visitor's waiting run, then follows it when it starts
    page.wait_for_function(f"({POINTS})() >= 2", timeout=180_000)
    assert page.locator("#watched-run textarea").input_value() == second
    seen = page.evaluate(POINTS)
    page.wait_for_function(f"({POINTS})() >= {seen + 2}")  # the loss plot grows while we watch
    assert "Training" in _status(page)
    page.wait_for_function(f"({EVALS})() >= 2")  # base perplexity and a later one, with the probe's guesses
    page.screenshot(path=ARTIFACTS / "training.png", full_page=True)

    page.locator("#stop-button").click()
    page.locator("#run-status").get_by_text("Run stopped at step").wait_for(timeout=15_000)
    page.screenshot(path=ARTIFACTS / "stopped.png", full_page=True)

    page.get_by_role("tab", name="Fill-mask").click()
    page.locator("#fill-text textarea").fill("An assignment statement evaluates the <mask> list.")
    page.locator("#top-k input[type=number]").fill("3")
    page.locator("#top-k input[type=number]").press("Enter")
    page.locator("#fill-button").click()
    page.wait_for_function(f"({BARS})() === 3")
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

"""A real browser (Debian chromium via Playwright) clicks through training, reload, stop and fill-mask."""

import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
POINTS = "() => { const p = document.querySelector('#loss-plot .js-plotly-plot'); " \
         "return p && p.data && p.data.length ? p.data[0].x.length : 0; }"
EVALS = "() => { const p = document.querySelector('#ppl-plot .js-plotly-plot'); " \
        "return p && p.data && p.data.length ? p.data[0].x.length : 0; }"
BARS = "() => { const p = document.querySelector('#plot-a .js-plotly-plot'); " \
       "return p && p.data && p.data.length ? p.data[0].y.length : 0; }"


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


def test_train_reload_stop_and_fill_mask_in_a_browser(page, app_server):
    page.goto(app_server["url"])
    page.get_by_text("MLM Studio").first.wait_for()
    assert "Hub not reachable" in page.content()
    page.locator("#epochs input").fill("5")
    page.locator("#probes textarea").fill("An assignment statement evaluates the <mask> list.")
    page.screenshot(path=ARTIFACTS / "train-tab.png", full_page=True)
    page.get_by_role("button", name="Start", exact=True).click()

    page.wait_for_function(f"({POINTS})() >= 2")
    before = page.evaluate(POINTS)
    page.wait_for_function(f"({POINTS})() >= {before + 2}")  # the loss plot grows while we watch

    seen = page.evaluate(POINTS)
    page.reload()
    page.wait_for_function(f"({POINTS})() >= {seen}")  # the same run, with its whole history
    page.wait_for_function(f"({POINTS})() >= {seen + 2}")  # and still training
    assert "Training" in page.locator("#run-status").inner_text()
    page.wait_for_function(f"({EVALS})() >= 2")  # base perplexity and the first epoch's, with the probe's guesses
    page.screenshot(path=ARTIFACTS / "training.png", full_page=True)

    page.get_by_role("button", name="Stop", exact=True).click()
    page.locator("#run-status").get_by_text("Run stopped").wait_for(timeout=15_000)
    page.screenshot(path=ARTIFACTS / "stopped.png", full_page=True)

    page.get_by_role("tab", name="Fill-mask").click()
    page.locator("#fill-text textarea").fill("An assignment statement evaluates the <mask> list.")
    page.locator("#top-k input[type=number]").fill("3")
    page.locator("#top-k input[type=number]").press("Enter")
    page.locator("#fill-button").click()
    page.wait_for_function(f"({BARS})() === 3")
    assert page.evaluate(BARS) == 3
    page.screenshot(path=ARTIFACTS / "fill-mask.png", full_page=True)

    page.get_by_role("tab", name="Runs & export").click()
    page.get_by_role("button", name="Download as zip").wait_for()
    page.wait_for_function("document.querySelector('#runs-table')?.textContent.includes('stopped')")  # our run
    page.screenshot(path=ARTIFACTS / "runs-export.png", full_page=True)

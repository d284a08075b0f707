"""The dashboard in a real browser (Debian Chromium driven by Playwright), as a user uses it.

Skipped when Chromium or Playwright is missing; `.ci/run` installs Chromium. Screenshots land in
test-artifacts/ for a person to look at.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian Chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def server_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "streamlit.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1"],
        cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("the Streamlit server did not start; see test-artifacts/streamlit.log")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"])
        yield launched
        launched.close()


def _set_slider(page, label, presses):
    """Streamlit sliders are <input type=range>: focus, go to the start, step right."""
    slider = page.locator(f'input[type="range"][aria-label="{label}"]')
    slider.focus()
    slider.press("Home")
    for _ in range(presses):
        slider.press("ArrowRight")


def test_train_see_charts_and_download_weights_that_reproduce_the_predictions(server_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1440, "height": 2600}, accept_downloads=True)
    page_errors = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(server_url)
    train = page.get_by_role("button", name="Train", exact=True)
    train.wait_for(timeout=30_000)
    page.get_by_text("temp_max over time").first.wait_for(timeout=30_000)
    _set_slider(page, "Epochs", 4)  # 1 + 4 = 5 epochs
    page.get_by_text("Epochs").first.click()  # move focus away so the value is committed
    page.screenshot(path=str(ARTIFACTS / "1-before-training.png"))

    clicked = time.perf_counter()
    train.click()
    page.get_by_text("Loss per epoch").first.wait_for(timeout=20_000)
    first_chart = time.perf_counter() - clicked
    page.get_by_text("Trained all 5 epochs").first.wait_for(timeout=60_000)
    print(f"\nclick to first training chart: {first_chart:.2f} s")
    page.screenshot(path=str(ARTIFACTS / "2-trained-loss.png"))
    for view in ("Predictions", "Weight change", "Gradients", "Scoreboard"):
        page.get_by_test_id("stButtonGroup").get_by_text(view, exact=True).click()
        time.sleep(1.0)
        page.screenshot(path=str(ARTIFACTS / f"3-{view.lower().replace(' ', '-')}.png"))
    assert page.get_by_test_id("stPlotlyChart").count() >= 1

    with page.expect_download() as weights:
        page.get_by_role("button", name="Weights (.safetensors)").click()
    with page.expect_download() as predictions:
        page.get_by_role("button", name="Predictions (.csv)").click()
    weights_path, predictions_path = tmp_path / "run.safetensors", tmp_path / "predictions.csv"
    weights.value.save_as(weights_path)
    predictions.value.save_as(predictions_path)

    assert page.get_by_test_id("stException").count() == 0
    assert page_errors == []
    page.close()

    from rnnlab.tables import DEFAULT_DATA_PATH, load_csv
    from rnnlab.weights_io import evaluate_saved_run
    from rnnlab.weights_io import load_run

    run = load_run(weights_path)
    assert run.metadata["config"]["epochs"] == 5 and run.metadata["model"]["kind"] == "lstm"
    result = evaluate_saved_run(run, load_csv(DEFAULT_DATA_PATH)).result
    shown = pd.read_csv(predictions_path)
    np.testing.assert_allclose(result.predictions["predicted"], shown["predicted"], rtol=1e-12)


def test_uploading_a_broken_csv_shows_one_sentence_and_no_traceback(server_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1440, "height": 1400})
    page.goto(server_url)
    page.get_by_text("Upload a CSV").click()
    broken = tmp_path / "broken.csv"
    broken.write_text("a,b\n1,2\n3,4\n")
    csv_uploader = page.get_by_test_id("stFileUploader").filter(has_text="Daily weather CSV")
    csv_uploader.locator("input[type=file]").set_input_files(str(broken))
    page.get_by_text("No date column found").wait_for(timeout=20_000)
    page.screenshot(path=str(ARTIFACTS / "4-broken-upload.png"))
    assert page.get_by_test_id("stException").count() == 0
    page.close()


def test_refreshing_the_browser_mid_run_finds_the_run_again(server_url, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1400})
    page.goto(server_url)
    page.get_by_role("button", name="Train", exact=True).wait_for(timeout=30_000)
    _set_slider(page, "Epochs", 79)  # 80 epochs: a few seconds, long enough to refresh during the run
    page.get_by_text("Epochs").first.click()
    page.get_by_role("button", name="Train", exact=True).click()
    page.get_by_text(re.compile(r"epoch \d+ of 80")).first.wait_for(timeout=20_000)
    assert "run=" in page.url and "owner=" in page.url
    page.reload()
    page.get_by_text("Trained all 80 epochs").or_(page.get_by_text("Stopped early")).first.wait_for(timeout=60_000)
    assert page.get_by_test_id("stException").count() == 0
    page.close()

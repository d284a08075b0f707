"""The dashboard, driven headless with Streamlit's AppTest: train, stop, bad input, runs, downloads."""

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rnnlab.runs import shared_registry

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


@pytest.fixture
def page():
    shared_registry().clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    yield at
    shared_registry().clear()


def _current_run(at):
    return shared_registry().get(at.query_params["owner"], at.session_state["shown_run"])


def _train_until_done(at, timeout=60):
    at.button(key="train").click().run()
    run = _current_run(at)
    assert run is not None, [e.value for e in at.error]
    deadline = time.time() + timeout
    while run.active and time.time() < deadline:
        time.sleep(0.2)
        at.run()  # run_every never fires under AppTest: poll as the fragment would
    at.run()
    assert not run.active
    return run


def _table_with(at, column):
    """The dataframe on the page that has ``column`` (AppTest finds widgets by key, not tables)."""
    found = [frame.value for frame in at.dataframe if column in frame.value.columns]
    return found[0] if found else None


def _small(at, epochs=3):
    at.slider(key="epochs").set_value(epochs)
    at.select_slider(key="hidden_size").set_value(8)


def test_train_shows_result_history_scoreboard_and_downloads(page):
    _small(page)
    page.slider(key="lookback").set_value(5)
    run = _train_until_done(page)
    assert run.config.lookback == 5 and run.config.hidden_size == 8 and len(run.history) == 3
    assert any("Trained all 3 epochs" in s.value for s in page.success)
    assert not page.exception and not page.error
    assert {b.label for b in page.get("download_button")} == {
        "Weights (.safetensors)", "Weights (.npz)", "History (.csv)", "Predictions (.csv)"}
    # the run history table lists the run with its results
    history_table = _table_with(page, "run")
    assert list(history_table["run"]) == [run.label] and history_table["test MSE"].iloc[0] > 0
    page.segmented_control(key="view").set_value("Scoreboard").run()
    scores = _table_with(page, "skill vs persistence")
    assert list(scores.index) == ["model", "persistence", "climatology", "least squares"]
    assert "skill vs persistence" in scores.columns


def test_a_second_run_keeps_the_first_and_both_are_compared(page):
    _small(page, epochs=2)
    first = _train_until_done(page)
    page.selectbox(key="model").set_value("gru").run()  # changing a setting never erases a finished run
    assert first.run_id in {r.run_id for r in shared_registry().runs_of(page.query_params["owner"])}
    second = _train_until_done(page)
    labels = list(_table_with(page, "run")["run"])
    assert labels == [first.label, second.label] and second.config.model == "gru"
    assert page.multiselect(key="compare_runs").value == labels


def test_stop_mid_run_keeps_the_model_trained_so_far(page):
    page.slider(key="epochs").set_value(200)
    page.slider(key="patience").set_value(0)
    page.button(key="train").click().run()
    run = _current_run(page)
    deadline = time.time() + 30
    while len(run.snapshot()["history"]) < 2 and time.time() < deadline:
        time.sleep(0.05)
    page.run()
    page.button(key="stop").click().run()
    deadline = time.time() + 10
    while run.active and time.time() < deadline:
        time.sleep(0.05)
    page.run()
    assert run.status == "stopped" and 2 <= len(run.history) < 200
    assert "Stopped during epoch" in run.message
    assert run.result is not None  # the model trained so far is scored and downloadable
    assert len(page.get("download_button")) == 4


def test_malformed_csv_upload_shows_one_error_and_keeps_the_last_run(page):
    _small(page, epochs=2)
    run = _train_until_done(page)
    page.radio(key="data_source").set_value("Upload a CSV").run()
    page.file_uploader(key="csv_upload").set_value(("bad.csv", b"a,b\n1,2\n3,4\n", "text/csv")).run()
    assert not page.exception
    assert [e.value for e in page.error] == [
        "No date column found: name one column 'date' (or put the dates, like 2015-12-31, in the first column)."]
    assert any(run.label in s.value for s in page.success)  # the last good run stays on screen
    page.button(key="train").click().run()
    assert _current_run(page) is run  # training on bad data is refused, nothing started


def test_leaking_feature_is_refused_in_one_sentence(page):
    rows = ["date,tmax,tmin,tmax_tomorrow"] + [
        f"2020-{1 + d // 28:02d}-{1 + d % 28:02d},{10 + d % 9},{2 + d % 5},{10 + (d + 1) % 9}" for d in range(300)]
    page.radio(key="data_source").set_value("Upload a CSV").run()
    page.file_uploader(key="csv_upload").set_value(("w.csv", "\n".join(rows).encode(), "text/csv")).run()
    assert any("tmax_tomorrow" in w.value and "leak" in w.value for w in page.warning)
    page.multiselect(key="features::w.csv").set_value(["tmax", "tmax_tomorrow"]).run()
    assert any("tmax_tomorrow" in e.value and "leak the answer" in e.value for e in page.error)
    assert not page.exception


def test_diverging_run_stops_with_a_visible_explanation(page):
    page.select_slider(key="lr").set_value(1.0)
    page.selectbox(key="optimizer").set_value("sgd")
    page.toggle(key="clip_on").set_value(False)
    run = _train_until_done(page)
    assert run.status == "diverged"
    assert any("diverged" in e.value and "learning rate" in e.value for e in page.error)
    assert not page.exception


def test_a_second_browser_session_sees_none_of_the_first_sessions_runs(page):
    _small(page, epochs=2)
    run = _train_until_done(page)
    other = AppTest.from_file(APP, default_timeout=60)
    other.run()
    assert other.query_params["owner"] != page.query_params["owner"]
    assert _table_with(other, "run") is None and _table_with(other, "skill vs persistence") is None
    assert shared_registry().get(other.query_params["owner"], run.run_id) is None
    assert len(run.run_id) >= 20  # secrets.token_urlsafe(16)


def test_uploaded_weights_are_scored_on_the_current_data_or_refused(page):
    _small(page, epochs=2)
    run = _train_until_done(page)
    uploader = page.file_uploader(key="weights_upload")
    uploader.set_value(("run.safetensors", run.download("safetensors"), "application/octet-stream")).run()
    assert any("run.safetensors: LSTM, hidden 8" in s.value for s in page.success)
    uploaded_scores = [f.value for f in page.dataframe if "skill vs persistence" in f.value.columns][-1]
    expected = run.result.table("test").loc["model", "MSE"]
    assert uploaded_scores.loc["model", "MSE"] == expected  # the same weights score the same on the same data
    page.file_uploader(key="weights_upload").set_value(("junk.npz", b"PK\x03\x04 not really a zip", "application/zip")).run()
    assert any("truncated or damaged" in e.value for e in page.error)
    assert not page.exception

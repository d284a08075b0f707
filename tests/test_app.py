"""The dashboard, driven headless with Streamlit's AppTest: train, stop, bad input, runs, downloads.

AppTest's ``run()`` reruns the whole script, which the browser never does while a run trains: only
the polling fragment reruns. ``poll`` reruns just the fragments, as ``run_every`` does in the browser,
so a control drawn outside the fragment (and frozen there) fails these tests as it fails a user.
"""

import base64
import dataclasses
import json
import re
import time
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.local_script_runner import LocalScriptRunner

from rnnlab.config import DataSettings, TrainConfig, spec
from rnnlab.runs import shared_registry

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def poll(at):
    """Rerun only the page's fragments, as the browser does between full reruns while a run trains."""
    fragment_ids = list(at._fragment_storage._fragments)
    original = LocalScriptRunner.request_rerun

    def fragment_only(runner, rerun_data):
        return original(runner, dataclasses.replace(rerun_data, fragment_id_queue=list(fragment_ids),
                                                    is_auto_rerun=True))

    with patch.object(LocalScriptRunner, "request_rerun", fragment_only):
        at.run()
    return at


def _plotly_array(values) -> np.ndarray:
    """A trace's data as an array: plotly writes a plain list, or base64 bytes ("bdata") for NumPy input."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values, dtype=float)


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


def _wait_for_end(at, run, timeout=60):
    deadline = time.time() + timeout
    while run.active and time.time() < deadline:
        time.sleep(0.2)
        poll(at)
    assert not run.active
    poll(at)  # the fragment sees the end and asks for one full rerun
    at.run()


def _train_until_done(at, timeout=60):
    at.button(key="train").click().run()
    run = _current_run(at)
    assert run is not None, [e.value for e in at.error]
    _wait_for_end(at, run, timeout)
    return run


def _table_with(at, column):
    """The dataframe on the page that has ``column`` (AppTest finds widgets by key, not tables)."""
    found = [frame.value for frame in at.dataframe if column in frame.value.columns]
    return found[0] if found else None


def _small(at, epochs=3):
    at.slider(key="epochs").set_value(epochs)
    at.select_slider(key="hidden_size").set_value(8)


def _texts(elements):
    return [e.value for e in elements]


def test_widgets_take_defaults_limits_and_help_from_the_package(page):
    epochs = spec(TrainConfig, "epochs")
    assert page.slider(key="epochs").value == epochs["default"] and page.slider(key="epochs").max == epochs["app_high"]
    assert page.slider(key="epochs").help == epochs["help"]
    lr = spec(TrainConfig, "lr")
    assert page.select_slider(key="lr").value == lr["default"]
    assert page.select_slider(key="lr").options[-1] == f"{lr['high']:g}"  # the same limit as the CLI's
    lookback = spec(DataSettings, "lookback")
    assert page.slider(key="lookback").value == lookback["default"] and page.slider(key="lookback").help == lookback["help"]
    assert "more precise" in page.radio(key="dtype").help and "exact" not in page.radio(key="dtype").help


def test_train_shows_result_history_scoreboard_and_downloads(page):
    _small(page)
    page.slider(key="lookback").set_value(5)
    run = _train_until_done(page)
    assert run.prepared.lookback == 5 and run.config.hidden_size == 8 and len(run.history) == 3
    banners = _texts(page.success) + _texts(page.info) + _texts(page.warning)
    assert any(run.label in b and "Trained all 3 epochs" in b and "Test MSE" in b for b in banners)
    assert not page.exception and not page.error
    assert {b.label for b in page.get("download_button")} == {
        "Weights (.safetensors)", "Weights (.npz)", "History (.csv)", "Predictions (.csv)"}
    history_table = _table_with(page, "run")
    assert list(history_table["run"]) == [run.label] and history_table["test MSE"].iloc[0] > 0
    assert list(history_table.columns[:5]) == ["run", "status", "test MSE", "skill vs persistence", "epochs"]
    page.segmented_control(key="view").set_value("Scoreboard").run()
    scores = _table_with(page, "skill vs persistence")
    assert list(scores.index) == ["model", "persistence", "climatology", "least squares"]


def test_stop_is_enabled_while_the_fragment_polls_and_ends_the_run_within_a_batch(page):
    page.slider(key="epochs").set_value(200)
    page.slider(key="patience").set_value(0)
    page.button(key="train").click().run()
    run = _current_run(page)
    deadline = time.time() + 30
    while len(run.snapshot()["history"]) < 2 and time.time() < deadline:
        time.sleep(0.05)
    poll(page)  # only the fragment reruns, as in the browser
    stop = page.button(key="stop")
    assert not stop.disabled
    assert any("epoch" in p.proto.text for p in page.get("progress"))
    live = " ".join(c.proto.spec for c in page.get("plotly_chart"))
    # all at once: loss, the validation days' forecasts of the latest epoch, weight change and gradients
    assert all(title in live for title in ("Loss per epoch", "validation forecasts after epoch",
                                           "Weight change per matrix", "Global gradient norm"))
    forecasts = next(json.loads(c.proto.spec) for c in page.get("plotly_chart")
                     if "validation forecasts after epoch" in c.proto.spec)
    model_line = next(t for t in forecasts["data"] if t["name"] == "model")
    predicted = _plotly_array(model_line["y"])
    assert len(predicted) == run.prepared.count("validation") and np.isfinite(predicted).all()
    stop.click()
    poll(page)
    deadline = time.time() + 5
    while run.active and time.time() < deadline:
        time.sleep(0.02)
    assert run.status == "stopped" and 2 <= len(run.history) < 200
    assert "Stopped during epoch" in run.message
    _wait_for_end(page, run)
    assert run.result is not None and len(page.get("download_button")) == 4


def _chart_interval(page) -> int:
    caption = next(c.value for c in page.caption if c.value.startswith("Live:"))
    return int(re.search(r"redrawn every (\d+) s", caption).group(1))


def test_live_charts_redraw_less_often_while_the_browser_falls_behind(page):
    page.slider(key="epochs").set_value(300)
    page.slider(key="patience").set_value(0)
    page.select_slider(key="hidden_size").set_value(64)
    page.button(key="train").click().run()
    run = _current_run(page)
    deadline = time.time() + 30
    while not run.snapshot()["history"] and time.time() < deadline:
        time.sleep(0.05)
    poll(page)
    assert _chart_interval(page) == 2  # polls on time: every 2 s
    for _ in range(3):  # polls that come ~1.4 s apart instead of 0.75 s: a busy browser (> 3 polls: a pause)
        time.sleep(1.2)
        poll(page)
    assert _chart_interval(page) >= 4  # (the way back is tested on figures.LivePace with a clock of its own)
    page.button(key="stop").click()
    poll(page)


def test_stop_in_epoch_one_keeps_the_initial_weights_and_says_so(page):
    page.select_slider(key="batch_size").set_value(8)  # a long first epoch
    page.select_slider(key="hidden_size").set_value(512)  # an epoch of many seconds, even on a worker process
    page.button(key="train").click().run()
    run = _current_run(page)
    deadline = time.time() + 30
    while run.snapshot()["fraction"] == 0 and time.time() < deadline:
        time.sleep(0.01)  # until the worker reports its first batches
    poll(page)
    page.button(key="stop").click()
    poll(page)
    _wait_for_end(page, run)
    assert run.status == "stopped" and run.history == [] and run.result is None
    assert "initial, untrained weights" in run.message
    from rnnlab.models import create_model

    initial = create_model(run.config.model, run.prepared.n_features, run.config.hidden_size, seed=run.config.seed)
    for name, value in initial.params.items():
        assert (run.model.params[name] == value).all()
    assert any(run.label in w and "initial, untrained weights" in w for w in _texts(page.warning))
    assert not page.get("download_button")  # nothing trained, nothing to download


def test_the_run_just_started_is_shown_and_stays_shown(page):
    _small(page, epochs=2)
    first = _train_until_done(page)
    page.selectbox(key="model").set_value("gru").run()  # changing a setting never erases a finished run
    second = _train_until_done(page)
    assert page.session_state["shown_run"] == second.run_id
    assert page.selectbox(key="show_run").value == second.run_id
    page.run()
    assert _current_run(page) is second  # and after yet another rerun, still the second
    labels = list(_table_with(page, "run")["run"])
    assert labels == [first.label, second.label] and second.config.model == "gru"
    assert page.multiselect(key="compare_runs").value == [first.run_id, second.run_id]
    page.selectbox(key="show_run").set_value(first.run_id).run()
    assert _current_run(page) is first  # until the user picks another


def test_the_comparison_leaves_out_runs_validated_on_other_days_and_says_why(page):
    _small(page, epochs=2)
    first = _train_until_done(page)
    page.slider(key="lookback").set_value(14)
    second = _train_until_done(page)
    captions = [c.value for c in page.caption]
    assert any(f"Left out {first.label}" in c and "lookback 7 against 14" in c for c in captions)
    # the one comparable run is not drawn again as a "comparison" on another scale than the Loss view
    assert not any("Validation MSE" in c.proto.spec for c in page.get("plotly_chart"))
    assert any("Pick two or more runs" in c for c in captions)
    third = _train_until_done(page)  # lookback 14 again: comparable with the second
    overlay = next(c.proto.spec for c in page.get("plotly_chart") if "Validation MSE" in c.proto.spec)
    assert second.label in overlay and third.label in overlay and first.label not in overlay


def test_float32_and_float64_runs_get_different_labels(page):
    _small(page, epochs=1)
    first = _train_until_done(page)
    page.radio(key="dtype").set_value("float32")
    second = _train_until_done(page)
    assert first.label.split(" ", 1)[1] != second.label.split(" ", 1)[1] and "float32" in second.label


def test_a_model_worse_than_persistence_gets_a_warning_not_a_success(page):
    page.selectbox(key="model").set_value("rnn")
    page.select_slider(key="lr").set_value(1.0)
    page.toggle(key="clip_on").set_value(False)
    page.slider(key="epochs").set_value(3)
    run = _train_until_done(page)
    assert run.result is not None, run.message
    test = run.result.table("test")
    assert test.loc["model", "MSE"] > test.loc["persistence", "MSE"]
    assert not any(run.label in s for s in _texts(page.success))
    assert any(run.label in w and "worse than persistence" in w for w in _texts(page.warning))


def test_a_run_diverging_in_epoch_one_says_so_and_shows_its_batch_losses(page):
    page.selectbox(key="model").set_value("rnn")
    page.select_slider(key="lr").set_value(1.0)
    page.selectbox(key="optimizer").set_value("sgd")
    page.toggle(key="clip_on").set_value(False)
    run = _train_until_done(page)
    assert run.status == "diverged" and run.history == [] and run.batch_losses
    assert any(e.value.startswith(run.label) and "diverged in epoch 1" in e.value for e in page.error)
    assert "Loss per batch in epoch 1" in page.get("plotly_chart")[0].proto.spec
    shown = " ".join(_texts(page.info) + _texts(page.caption))
    assert "appear when training ends" not in shown and "Train a model to see" not in shown
    assert not page.exception


def test_a_refresh_shows_the_settings_of_the_run_on_screen(page):
    _small(page, epochs=2)
    page.slider(key="lookback").set_value(10)
    page.select_slider(key="lr").set_value(0.005)
    run = _train_until_done(page)
    refreshed = AppTest.from_file(APP, default_timeout=60)
    refreshed.query_params.update({"owner": page.query_params["owner"], "run": run.run_id})
    refreshed.run()
    assert _current_run(refreshed) is run
    assert refreshed.slider(key="lookback").value == 10 and refreshed.select_slider(key="lr").value == 0.005
    assert refreshed.select_slider(key="hidden_size").value == 8
    assert "load_settings" not in [b.key for b in refreshed.button]  # the screen and the run agree


def test_changed_settings_are_flagged_and_can_be_loaded_back(page):
    _small(page, epochs=2)
    run = _train_until_done(page)
    page.slider(key="lookback").set_value(12).run()
    notice = [c.value for c in page.caption if "differ from" in c.value]
    assert notice and "lookback (days) 7 → 12" in notice[0]
    page.button(key="load_settings").click().run()
    assert page.slider(key="lookback").value == 7
    assert not [c.value for c in page.caption if "differ from" in c.value]
    assert _current_run(page) is run


def test_train_is_disabled_with_the_reason_while_the_data_cannot_be_used(page):
    page.radio(key="data_source").set_value("Upload a CSV").run()
    assert page.button(key="train").disabled
    page.file_uploader(key="csv_upload").set_value(("bad.csv", b"a,b\n1,2\n3,4\n", "text/csv")).run()
    assert page.button(key="train").disabled
    assert any("No date column found" in c.value for c in page.sidebar.caption)


def test_malformed_csv_upload_shows_one_error_and_keeps_the_last_run(page):
    _small(page, epochs=2)
    run = _train_until_done(page)
    page.radio(key="data_source").set_value("Upload a CSV").run()
    page.file_uploader(key="csv_upload").set_value(("bad.csv", b"a,b\n1,2\n3,4\n", "text/csv")).run()
    assert not page.exception
    assert [e.value for e in page.error] == [
        "No date column found: name one column 'date' (or put the dates, like 2015-12-31, in the first column)."]
    banners = _texts(page.success) + _texts(page.info) + _texts(page.warning)
    assert _current_run(page) is run and any(b.startswith(run.label) for b in banners)


def test_leaking_feature_is_refused_in_one_sentence(page):
    rows = ["date,tmax,tmin,tmax_tomorrow"] + [
        f"2020-{1 + d // 28:02d}-{1 + d % 28:02d},{10 + d % 9},{2 + d % 5},{10 + (d + 1) % 9}" for d in range(300)]
    page.radio(key="data_source").set_value("Upload a CSV").run()
    page.file_uploader(key="csv_upload").set_value(("w.csv", "\n".join(rows).encode(), "text/csv")).run()
    assert any("tmax_tomorrow" in w.value and "leak" in w.value for w in page.warning)
    page.multiselect(key="features::w.csv").set_value(["tmax", "tmax_tomorrow"]).run()
    assert any("tmax_tomorrow" in e.value and "leak the answer" in e.value for e in page.error)
    assert page.button(key="train").disabled
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
    assert any("damaged" in e.value or "not a weights file" in e.value for e in page.error)
    assert not page.exception


def test_every_xray_view_opens_on_a_finished_run_and_a_branch_continues_it(page):
    _small(page, epochs=3)
    page.slider(key="patience").set_value(0)
    run = _train_until_done(page)
    page.segmented_control(key="view").set_value("X-ray").run()
    charts = {}
    for part in ("Gates", "Saliency", "Gradient check", "Rewind and branch"):
        page.segmented_control(key="xray_part").set_value(part).run()
        assert not page.exception and not page.error, part
        charts[part] = " ".join(c.proto.spec for c in page.get("plotly_chart"))
    assert "input gate i" in charts["Gates"] and "Gate saturation" in charts["Gates"]
    assert "Integrated gradients" in charts["Saliency"] and "Occlusion" in charts["Saliency"]
    assert any("Ismail et al." in i.value for i in page.info) is False  # the note belongs to Saliency only
    page.segmented_control(key="xray_part").set_value("Saliency").run()
    assert any("Ismail et al." in i.value for i in page.info)
    assert any("Completeness" in c.value and "gap of" in c.value for c in page.caption)
    page.segmented_control(key="xray_part").set_value("Gradient check").run()
    page.button(key="gradcheck").click().run()
    report = _table_with(page, "max_rel_error")
    assert list(report["param"]) == list(run.model.params) and set(report["status"]) == {"🟢 green"}
    page.segmented_control(key="xray_part").set_value("Rewind and branch").run()
    page.select_slider(key="xray_epoch").set_value(1).run()
    assert "forecast vs actual" in " ".join(c.proto.spec for c in page.get("plotly_chart"))
    page.button(key="branch").click().run()
    branch = _current_run(page)
    assert branch is not run and branch.branch_text == "#1 at epoch 1"
    _wait_for_end(page, branch)
    same = [{k: v for k, v in r.items() if k != "seconds"} for r in (run.history, branch.history)[0]]
    assert same == [{k: v for k, v in r.items() if k != "seconds"} for r in branch.history]
    assert list(_table_with(page, "run")["branch of"]) == ["", "#1 at epoch 1"]


def test_every_lead_day_its_intervals_the_next_days_and_a_backtest(page):
    _small(page, epochs=2)
    page.slider(key="horizon").set_value(3).run()
    run = _train_until_done(page)
    assert run.prepared.horizon == 3 and run.model.params["head.weight"].shape == (3, 8)
    page.segmented_control(key="view").set_value("Predictions").run()
    page.select_slider(key="prediction_lead").set_value(2).run()
    chart = next(c.proto.spec for c in page.get("plotly_chart") if "forecast vs actual" in c.proto.spec)
    assert "2 days ahead" in chart and "interval" in chart and "forecast (next days)" in chart
    assert any("forecast of the 3 days after 2015-12-31" in c.value for c in page.caption)
    page.segmented_control(key="view").set_value("Scoreboard").run()
    specs = " ".join(c.proto.spec for c in page.get("plotly_chart"))
    assert "lead day" in specs.lower() and "coverage" in specs.lower()
    intervals = _table_with(page, "coverage")
    assert set(intervals["lead"]) == {1, 2, 3} and set(intervals["predictor"]) == {"model", "persistence"}
    page.slider(key="backtest_folds").set_value(2)
    page.button(key="backtest").click().run()
    folds = _table_with(page, "origin")
    assert list(folds["fold"]) == [1, 2] and (folds["train_end"] < folds["first_test_day"]).all()
    assert not page.exception and not page.error


def _wait_for_experiment(at, experiment, timeout=120):
    deadline = time.time() + timeout
    while not experiment.done and time.time() < deadline:
        time.sleep(0.3)
        poll(at)
    assert experiment.done
    poll(at)
    at.run()


def test_a_seed_band_and_a_sweep_train_on_the_cluster_and_a_trial_opens_as_a_run(page):
    _small(page, epochs=2)
    page.number_input(key="band_seeds").set_value(3)
    page.button(key="start_band").click().run()
    band = page.session_state["experiments"][0]
    _wait_for_experiment(page, band)
    assert band.kind == "seed band" and len(band.trials[0].runs) == 3
    import json

    figure = json.loads(next(c.proto.spec for c in page.get("plotly_chart") if "over 3 seeds" in c.proto.spec))
    names = [trace["name"] for trace in figure["data"]]  # parsed: some plotly versions escape the dash as \u2013
    assert any("min–max" in n for n in names) and any("mean" in n for n in names)
    summary = _table_with(page, "mean ± std")
    assert set(summary["split"]) == {"validation", "test"} and set(summary["runs"]) == {3}
    page.text_area(key="sweep_space").set_value("hidden_size = 4,8\nlr = 1e-3:1e-2")
    page.number_input(key="sweep_trials").set_value(3)
    page.button(key="start_sweep").click().run()
    sweep = page.session_state["experiments"][0]
    _wait_for_experiment(page, sweep)
    trials = _table_with(page, "hidden_size")
    assert len(trials) == 3 and set(trials["status"]) == {"complete"}  # Optuna's word for a finished trial
    specs = " ".join(c.proto.spec for c in page.get("plotly_chart"))
    assert "parcoords" in specs and "importance" in specs.lower()
    page.button(key=f"open_{sweep.sweep_id}").click().run()
    opened = _current_run(page)
    assert opened is not None and opened.store_id in {r.run_id for t in sweep.trials for r in t.runs}
    assert opened.result is not None and opened.config.hidden_size in (4, 8) and not page.exception


def test_the_store_lists_cli_runs_and_opens_them(page, tmp_path):
    import os
    import subprocess
    import sys

    store = os.environ["RNNLAB_STORE"]
    done = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--epochs", "2", "--hidden-size", "4",
                           "--store", store, "--name", "from the CLI", "--out", str(tmp_path / "cli")],
                          capture_output=True, text=True, cwd=Path(APP).parent, timeout=120)
    assert done.returncode == 0, done.stderr
    page.run()
    stored = _table_with(page, "name")
    assert "from the CLI" in list(stored["name"])
    run_id = stored.loc[stored["name"] == "from the CLI", "id"].iloc[0]
    page.selectbox(key="stored_pick").set_value(run_id)
    page.button(key="open_stored").click().run()
    opened = _current_run(page)
    assert opened.store_id == run_id and opened.result is not None and len(opened.history) == 2
    assert not page.exception


def _cli_run(tmp_path, *flags):
    import os
    import subprocess
    import sys

    out = tmp_path / f"cli{len(list(tmp_path.iterdir()))}"
    done = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--epochs", "1", "--hidden-size", "4",
                           "--store", os.environ["RNNLAB_STORE"], "--out", str(out), *flags],
                          capture_output=True, text=True, cwd=Path(APP).parent, timeout=120)
    assert done.returncode == 0, done.stderr


def test_review_fixes_stored_runs_settings_owner_and_sweeps(page, tmp_path):
    import os

    from rnnlab.store import list_runs

    _cli_run(tmp_path, "--lr", "0.003", "--name", "odd lr")
    _cli_run(tmp_path, "--name", "plain")
    ids = {run.name: run.run_id for run in list_runs(os.environ["RNNLAB_STORE"])}
    page.run()
    for name in ("odd lr", "plain"):  # opening one stored run after another: no widget-state traceback
        page.selectbox(key="stored_pick").set_value(ids[name]).run()
        page.button(key="open_stored").click().run()
        assert not page.exception and _current_run(page).store_id == ids[name]
    page.selectbox(key="show_run").set_value(_current_run(page).run_id)
    page.selectbox(key="stored_pick").set_value(ids["odd lr"]).run()
    page.button(key="open_stored").click().run()
    page.slider(key="lookback").set_value(9).run()  # differ, then load the run's settings back
    page.button(key="load_settings").click().run()
    assert page.slider(key="lookback").value == 7 and not page.exception
    assert any("Not loaded" in c.value and "lr 0.003" in c.value for c in page.caption)  # 0.003 is no lr step
    # a sweep line that is not "name = values" is refused in a sentence, nothing starts
    page.text_area(key="sweep_space").set_value("nonsense")
    page.button(key="start_sweep").click().run()
    assert any("'nonsense' is not a setting line" in e.value for e in page.error)
    assert not page.session_state["experiments"] if "experiments" in page.session_state else True
    # an owner key of another shape than the server issues is replaced, not trusted
    other = AppTest.from_file(APP, default_timeout=60)
    other.query_params["owner"] = "x" * 20 + ".evil"
    other.run()
    assert other.query_params["owner"] != "x" * 20 + ".evil" and not other.exception

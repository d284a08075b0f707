"""Sweeps and seed bands: settings as text, searches through Optuna, every trial a run in the store."""

import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnlab import store
from rnnlab.cluster import ClusterHolder
from rnnlab.errors import SettingError
from rnnlab.sweep import (OBJECTIVE, Choice, LogRange, Sweep, band, grid_size, metric_summary, param_importance,
                          parse_setting, parse_space, seed_band, stored_space, stored_sweep_table, sweep_status)
from rnnlab.tables import DEFAULT_DATA_PATH

ROOT = Path(__file__).resolve().parents[1]


def test_settings_as_text():
    assert parse_setting("hidden_size", "32") == 32
    assert parse_setting("model", "lstm,gru") == Choice(("lstm", "gru"))
    assert parse_setting("lr", "1e-4:1e-2") == LogRange(1e-4, 1e-2)
    assert parse_setting("hidden_size", "16:128") == LogRange(16, 128, integer=True)
    assert parse_setting("lookback", "7,14") == Choice((7, 14))
    data, train, space = parse_space({"model": "lstm,gru", "lr": "1e-4:1e-2", "epochs": "3", "target": "temp_min",
                                      "features": "temp_max,temp_min", "hidden_size": None})
    assert train["epochs"] == 3 and train["hidden_size"] == 32 and data["target"] == "temp_min"
    assert data["features"] == ["temp_max", "temp_min"] and set(space) == {"model", "lr"}
    assert grid_size(space) == 2 * 3 and LogRange(16, 128, integer=True).grid() == (16, 45, 128)


@pytest.mark.parametrize("texts, words", [
    ({"model": "lstm,transformer"}, "transformer"),
    ({"lr": "1e-2:1e-4"}, "low < high"),
    ({"hidden_size": "16,x"}, "whole numbers"),
    ({"hidden_size": "16,1000"}, "1000"),
    ({"model": "gru:lstm"}, "comma list"),
    ({"features": "a,b;c,d"}, None),
])
def test_bad_settings_are_refused_in_one_sentence(texts, words):
    if words is None:  # features are fixed only: a list is taken as the list, whatever it holds
        parse_space(texts)
        with pytest.raises(SettingError, match="fixed"):
            parse_setting("features", "a,b")
        return
    with pytest.raises(SettingError) as refused:
        parse_space(texts)
    message = str(refused.value)
    assert words in message and message.count(". ") == 0 and "\n" not in message


def test_band_and_metric_summary():
    histories = [[{"epoch": 1, "val_loss": 1.0}, {"epoch": 2, "val_loss": 0.5}],
                 [{"epoch": 1, "val_loss": 3.0}]]  # stopped early: only epoch 1
    frame = band(histories)
    assert frame["epoch"].tolist() == [1, 2] and frame["runs"].tolist() == [2, 1]
    assert frame.loc[0, ["mean", "min", "max"]].tolist() == [2.0, 1.0, 3.0]
    assert frame.loc[1, ["mean", "min", "max", "std"]].tolist() == [0.5, 0.5, 0.5, 0.0]
    metrics = [{"test": {"model": {"MSE": 4.0, "MAE": 1.0}}}, {"test": {"model": {"MSE": 6.0, "MAE": float("nan")}}}]
    summary = metric_summary(metrics, splits=("test",)).set_index("metric")
    assert summary.loc["MSE", "mean"] == 5.0 and summary.loc["MSE", "std"] == pytest.approx(np.sqrt(2))
    assert summary.loc["MAE", "runs"] == 1


def test_importance_names_the_setting_that_matters():
    rng = np.random.default_rng(0)
    lr = np.exp(rng.uniform(np.log(1e-4), np.log(1e-2), 30))
    model = rng.choice(["lstm", "gru"], 30)
    table = pd.DataFrame({"lr": lr, "model": model, OBJECTIVE: 10 + 5 * np.log10(lr) ** 2 + rng.normal(0, 0.01, 30)})
    importance = param_importance(table, {"lr": LogRange(1e-4, 1e-2), "model": Choice(("lstm", "gru"))})
    assert list(importance)[0] == "lr" and importance["lr"] > 0.8
    assert param_importance(table.iloc[:1], {"lr": LogRange(1e-4, 1e-2)}) == {}


@pytest.fixture(scope="module")
def holder():
    holder = ClusterHolder(n_workers=2)
    holder.client
    yield holder
    holder.close()


@pytest.mark.parametrize("search", ["grid", "tpe"])
def test_a_sweep_on_the_cluster_keeps_every_trial_in_the_store(holder, tmp_path, search):
    data, train, space = parse_space({"model": "rnn,gru", "hidden_size": "4", "lr": "3e-3:3e-2", "epochs": "2"})
    sweep = Sweep(holder, tmp_path, DEFAULT_DATA_PATH.read_bytes(), space, fixed_data=data, fixed_train=train,
                  search=search, trials=4, name="tiny", data_name="seattle_weather.csv").start()
    sweep.wait(120)
    table = sweep.table()
    assert sweep.status == "completed" and len(table) == 4 and table[OBJECTIVE].notna().all()
    runs = store.list_runs(tmp_path, sweep=sweep.sweep_id)
    assert len(runs) == 4 and {run.status for run in runs} == {"completed"}
    assert sorted(run.meta["trial"] for run in runs) == [1, 2, 3, 4]
    for run in runs:  # each run's settings are its trial's
        row = table.set_index("trial").loc[run.meta["trial"]]
        assert run.config["train"]["model"] == row["model"] and run.config["train"]["lr"] == row["lr"]
        assert run.validation_mse() == pytest.approx(row[OBJECTIVE])
    if search == "grid":  # 4 of the 2 × 3 combinations, none twice
        assert len(set(zip(table["model"], table["lr"]))) == 4
    best = sweep.best()
    assert best["value"] == table[OBJECTIVE].min()
    # the stored sweep reads back as it ran: its table, its space, its status
    document = store.read_sweep(tmp_path, sweep.sweep_id)
    assert sweep_status(tmp_path, document) == "completed" and document["best"]["trial"] == best["trial"]
    assert stored_sweep_table(document)[OBJECTIVE].tolist() == pytest.approx(table[OBJECTIVE].tolist())
    assert stored_space(document) == space


def test_a_seed_band_trains_the_same_settings_with_each_seed(holder, tmp_path):
    data, train, _ = parse_space({"hidden_size": "4", "epochs": "2", "model": "gru"})
    band_sweep = seed_band(holder, tmp_path, DEFAULT_DATA_PATH.read_bytes(), data, train, seeds=3).start().wait(120)
    runs = store.list_runs(tmp_path, sweep=band_sweep.sweep_id)
    assert sorted(run.config["train"]["seed"] for run in runs) == [0, 1, 2]
    frame = band([run.history for run in runs])
    assert frame["runs"].tolist() == [3, 3] and (frame["min"] <= frame["mean"]).all()
    summary = metric_summary([run.metrics for run in runs]).set_index(["split", "metric"])
    assert summary.loc[("validation", "MSE"), "mean"] == pytest.approx(band_sweep.best()["value"])
    assert summary.loc[("validation", "MSE"), "std"] > 0  # different seeds, different models


def test_the_sweep_command_prints_the_best_run(holder, tmp_path):
    # on the module's cluster through --scheduler, which also spares the test a cluster start
    done = subprocess.run([sys.executable, "-m", "rnnlab", "sweep", "--trials", "2", "--search", "random",
                           "--model", "gru", "--hidden-size", "4,8", "--lr", "1e-3:1e-2", "--epochs", "1",
                           "--scheduler", holder.address, "--store", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    best_line = done.stdout.strip().splitlines()[-1]
    assert best_line.startswith("best: trial") and OBJECTIVE in best_line
    run_id = best_line.split(" run ")[1].split()[0]
    assert store.open_run(tmp_path, run_id).status == "completed"
    assert len(store.list_runs(tmp_path)) == 2
    refused = subprocess.run([sys.executable, "-m", "rnnlab", "sweep", "--lr", "1e-2:1e-4", "--store", str(tmp_path)],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and refused.stderr.startswith("error:") and len(refused.stderr.splitlines()) == 1


def test_a_stopped_sweep_stops_its_runs(holder, tmp_path):
    data, train, space = parse_space({"model": "lstm", "hidden_size": "64,96", "batch_size": "8", "epochs": "100",
                                      "patience": "0"})
    sweep = Sweep(holder, tmp_path, DEFAULT_DATA_PATH.read_bytes(), space, fixed_data=data, fixed_train=train,
                  search="grid").start()
    deadline = time.monotonic() + 60
    while not any(run.snapshot()["batches_done"] for trial in list(sweep.trials) for run in trial.runs):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sweep.stop()
    sweep.wait(60)
    # every trial of the grid was asked for: the sampler's "grid used up" does not fail the sweep
    assert sweep.status == "stopped" and sweep.message.startswith("Stopped after 2 of 2 trials")
    assert {run.status for run in store.list_runs(tmp_path, sweep=sweep.sweep_id)} <= {"stopped", "completed"}
    assert sweep_status(tmp_path, store.read_sweep(tmp_path, sweep.sweep_id)) == "stopped"


def test_the_sweep_box_text_is_parsed_one_setting_a_line():
    from rnnlab.sweep import parse_space_text

    data, train, space = parse_space_text("hidden-size = 16,32\n\n lr = 1e-4:1e-2 \nepochs = 3\n")
    assert space["hidden_size"].values == (16, 32) and (space["lr"].low, space["lr"].high) == (1e-4, 1e-2)
    assert train["epochs"] == 3 and "epochs" not in space
    for text, words in (("hidden_size 16,32", "is not a setting line"), ("hidden = 16,32", "'hidden' is not a setting"),
                        ("  \n ", "Write at least one setting"), ("lr = 5", "learning")):
        with pytest.raises(SettingError) as raised:
            parse_space_text(text)
        assert words.lower() in str(raised.value).lower(), (text, str(raised.value))

"""The command line, run as a user runs it: a real subprocess, files on disk, exit codes."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnlab.tables import load_csv
from rnnlab.windows import prepare
from rnnlab.weights_io import load_run

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "rnnlab", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    done = _cli("train", "--model", "gru", "--hidden-size", "8", "--epochs", "3", "--seed", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out, done


def test_train_writes_every_artifact(trained_dir):
    out, done = trained_dir
    for name in ("model.safetensors", "model.npz", "config.json", "history.csv", "metrics.json", "predictions.csv"):
        assert (out / name).stat().st_size > 0, name
    config = json.loads((out / "config.json").read_text())
    # one home per setting: the data settings are the prepared data's, the training settings the config's
    assert config["train"]["model"] == "gru" and config["train"]["hidden_size"] == 8
    assert config["data"]["target"] == "temp_max" and config["data"]["lookback"] == 7
    assert "lookback" not in config["train"] and "model" not in config["data"]
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert {"train_loss", "val_loss", "grad_norm_mean", "update_norms.head.weight"} <= set(history.columns)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"model", "persistence", "climatology", "least squares"}
    predictions = pd.read_csv(out / "predictions.csv", parse_dates=["date"])
    # one row per window and lead day, with the conformal interval of the model
    assert list(predictions.columns) == ["date", "split", "lead", "actual", "predicted", "lower", "upper", "persistence"]
    assert (predictions["lower"] < predictions["predicted"]).all() and (predictions["lead"] == 1).all()
    assert "epoch   3/3" in done.stderr  # the progress bar


def test_saved_weights_reproduce_the_predictions_file(trained_dir):
    out, _ = trained_dir
    run = load_run(out / "model.npz")
    prepared = prepare(load_csv(ROOT / "data" / "seattle_weather.csv"), target=run.target, features=run.features,
                       lookback=run.metadata["lookback"])
    predictions = pd.read_csv(out / "predictions.csv")
    test = predictions[predictions["split"] == "test"]
    predicted = prepared.inverse_target(run.model.predict(prepared.x_test))  # (n, 1): one lead day
    np.testing.assert_allclose(predicted[:, 0], test["predicted"], rtol=1e-12)


def test_evaluate_and_predict_on_a_saved_run(trained_dir, tmp_path):
    out, _ = trained_dir
    evaluated = _cli("evaluate", "--weights", str(out / "model.safetensors"))
    assert evaluated.returncode == 0 and "least squares" in evaluated.stdout and "test:" in evaluated.stdout
    predicted = _cli("predict", "--weights", str(out / "model.npz"), "--out", str(tmp_path / "p.csv"))
    assert predicted.returncode == 0, predicted.stderr
    table = pd.read_csv(tmp_path / "p.csv")
    assert table["split"].iloc[-1] == "forecast" and table["date"].iloc[-1] == "2016-01-01"
    assert np.isfinite(table["predicted"]).all()


@pytest.mark.parametrize(
    "args, words",
    [
        (["train", "--lr", "-1"], "Learning rate"),
        (["train", "--target", "snow"], "'snow' is not in the data"),
        (["train", "--data", "/nonexistent.csv"], "no file"),
        (["train", "--model", "transformer"], "Unknown model"),
        (["evaluate", "--weights", "README.md"], "not a weights file"),
    ],
)
def test_errors_are_one_line_exit_2_no_traceback(args, words):
    done = _cli(*args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and words in lines[0]


def test_a_branch_from_an_epoch_reproduces_the_parent_and_refuses_a_new_model(tmp_path):
    parent = tmp_path / "parent"
    done = _cli("train", "--hidden-size", "8", "--epochs", "4", "--patience", "0", "--out", str(parent))
    assert done.returncode == 0, done.stderr
    branch = tmp_path / "branch"
    done = _cli("train", "--resume", str(parent), "--from-epoch", "2", "--out", str(branch))
    assert done.returncode == 0, done.stderr
    assert "branching from" in done.stderr and "at epoch 2" in done.stderr
    same = [pd.read_csv(folder / "history.csv").drop(columns="seconds") for folder in (parent, branch)]
    pd.testing.assert_frame_equal(*same)  # unchanged settings: the same later epochs, bit for bit
    assert json.loads((branch / "config.json").read_text())["branch_of"]["epoch"] == 2
    faster = _cli("train", "--resume", str(parent), "--from-epoch", "3", "--lr", "0.01", "--epochs", "5",
                  "--out", str(tmp_path / "faster"))
    assert faster.returncode == 0, faster.stderr
    history = pd.read_csv(tmp_path / "faster" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3, 4, 5] and list(history["lr"]) == [0.001] * 3 + [0.01] * 2
    refused = _cli("train", "--resume", str(parent), "--hidden-size", "16", "--out", str(tmp_path / "no"))
    assert refused.returncode == 2 and "--hidden-size cannot change" in refused.stderr
    assert "Traceback" not in refused.stderr

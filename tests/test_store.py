"""The run store: plain files that outlive the process, written atomically, read back as they were."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from rnnlab import store
from rnnlab.config import TrainConfig
from rnnlab.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


def _settings(prepared, config):
    return {"data": prepared.settings().to_dict(), "train": config.to_dict(), "data_file": None, "load": {}}


def test_a_run_round_trips(tmp_path, seattle_prepared):
    config = TrainConfig(model="gru", hidden_size=4, epochs=2, seed=3)
    writer = store.create_run(tmp_path, _settings(seattle_prepared, config), name="round trip")
    writer.started()
    trainer = Trainer(config, seattle_prepared)
    for record in trainer.iter_epochs():
        writer.epoch(record)
        # while it trains: listed as running, its finished epochs already on disk
        assert store.open_run(tmp_path, writer.run_id).status == "running"
    artifacts = store.artifacts_from_trainer(trainer, seattle_prepared)
    writer.finish(artifacts)

    run = store.open_run(tmp_path, writer.run_id)
    assert run.status == "completed" and run.name == "round trip" and run.message == trainer.message
    assert [r["epoch"] for r in run.history] == [1, 2]
    first, saved = trainer.history[0], run.history[0]
    assert saved["val_loss"] == pytest.approx(first["val_loss"])
    assert saved["update_norms"] == pytest.approx(first["update_norms"])
    assert saved["step_grad_norms"] == pytest.approx(first["step_grad_norms"])
    assert run.metrics["validation"]["model"]["MSE"] == pytest.approx(artifacts.metrics["validation"]["model"]["MSE"])
    assert run.config["train"]["model"] == "gru" and run.config["data"]["target"] == "temp_max"
    for name in store.ARTIFACT_FILES:
        assert run.file(name) and run.file(name) == (run.path / name).read_bytes()
    assert run.predictions is not None and {"date", "actual", "predicted"} <= set(run.predictions.columns)
    from rnnlab.weights_io import load_run
    loaded = load_run(run.path / "model.safetensors")
    assert loaded.config["hidden_size"] == 4
    assert [r.run_id for r in store.list_runs(tmp_path)] == [writer.run_id]
    # no temporary file is left beside the real ones
    assert not [p for p in run.path.iterdir() if p.name.endswith(".tmp")]


def test_a_failed_run_says_why_and_keeps_its_epochs(tmp_path, seattle_prepared):
    config = TrainConfig(hidden_size=4, epochs=3)
    writer = store.create_run(tmp_path, _settings(seattle_prepared, config))
    writer.started()
    writer.epoch({"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "val_mse": 50.0})
    writer.fail("The worker training this run died.")
    run = store.open_run(tmp_path, writer.run_id)
    assert (run.status, run.message, len(run.history)) == ("failed", "The worker training this run died.", 1)


def test_sessions_see_only_their_own_runs(tmp_path, seattle_prepared):
    config = TrainConfig(hidden_size=4, epochs=1)
    alice, bob = store.new_owner_key(), store.new_owner_key()
    mine = store.create_run(tmp_path, _settings(seattle_prepared, config), owner=alice)
    mine.fail("done")
    assert [r.run_id for r in store.list_runs(tmp_path, owner=alice)] == [mine.run_id]
    assert store.list_runs(tmp_path, owner=bob) == [] and store.list_runs(tmp_path) == []
    with pytest.raises(KeyError):
        store.open_run(tmp_path, mine.run_id, owner=bob)
    assert store.open_run(tmp_path, mine.run_id, owner=alice).meta["owner"] == alice
    for bad in ("../..", "short", "x" * 200):
        with pytest.raises(ValueError):
            store.list_runs(tmp_path, owner=bad)
    with pytest.raises(ValueError):
        store.open_run(tmp_path, "../" + mine.run_id)


def test_the_store_root_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(store.STORE_ENV, str(tmp_path / "elsewhere"))
    assert store.store_root() == tmp_path / "elsewhere"
    assert store.store_root(tmp_path) == tmp_path
    monkeypatch.delenv(store.STORE_ENV)
    assert store.store_root() == Path("runs")


def test_a_killed_cli_run_keeps_its_epochs_and_reads_interrupted(tmp_path):
    """SIGKILL a `train --store` process after 2 epochs: its epochs are there and it reads `interrupted`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rnnlab", "train", "--store", str(tmp_path), "--name", "killed", "--epochs", "200",
         "--hidden-size", "32", "--patience", "0", "--out", str(tmp_path / "out")],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        runs = []
        while time.monotonic() < deadline:
            runs = store.list_runs(tmp_path)
            if runs and len(runs[0].history_frame) >= 2:
                break
            time.sleep(0.05)
        assert runs and runs[0].status == "running"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    run = store.open_run(tmp_path, runs[0].run_id)
    assert run.status == "interrupted" and "ended without finishing" in run.message
    history = run.history
    assert len(history) >= 2 and [r["epoch"] for r in history] == list(range(1, len(history) + 1))
    assert run.meta["name"] == "killed" and run.metrics == {}


def test_a_cli_run_is_listed_with_its_files(tmp_path):
    done = subprocess.run([sys.executable, "-m", "rnnlab", "train", "--store", str(tmp_path), "--name", "from the CLI",
                           "--epochs", "2", "--hidden-size", "4", "--out", str(tmp_path / "out")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (run,) = store.list_runs(tmp_path)
    assert run.name == "from the CLI" and run.status == "completed" and len(run.history) == 2
    assert f"stored as run {run.run_id}" in done.stdout
    # the store's folder is a run folder like --out's: the same config, weights and tables
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert json.loads(run.file("config.json"))["train"] == written["train"]
    assert run.file("model.safetensors") == (tmp_path / "out" / "model.safetensors").read_bytes()
    assert pd.read_csv(run.path / "history.csv").shape == pd.read_csv(tmp_path / "out" / "history.csv").shape
    assert store.runs_table([run]).loc[0, "name"] == "from the CLI"


def test_a_folder_with_a_foreign_meta_or_config_is_passed_over_not_fatal(tmp_path):
    from rnnlab.store import list_runs, new_run_id

    good, odd = tmp_path / new_run_id(), tmp_path / new_run_id()
    for folder in (good, odd):
        folder.mkdir()
    (good / "meta.json").write_text(json.dumps({"id": good.name, "status": "completed"}))
    (good / "config.json").write_text("[1, 2]")  # valid JSON, not an object
    (odd / "meta.json").write_text(json.dumps({"status": "completed"}))  # no id
    runs = list_runs(tmp_path)
    assert [run.run_id for run in runs] == [good.name] and runs[0].config == {} and runs[0].row()["model"] is None

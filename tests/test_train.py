"""The training loop: records, stop, early stopping, divergence, reproducibility, acceptance figures."""

import statistics
import threading

import numpy as np
import pytest

from rnnlab.errors import SettingError
from rnnlab.tables import load_csv
from rnnlab.windows import prepare
from rnnlab.evaluate import evaluate
from rnnlab.train import TrainConfig, Trainer

FAST = dict(hidden_size=8, epochs=3, batch_size=128)


def test_every_epoch_yields_a_complete_record(seattle_prepared):
    trainer = Trainer(TrainConfig(**FAST, grad_clip=0.05), seattle_prepared)
    records = list(trainer.iter_epochs())
    assert [r["epoch"] for r in records] == [1, 2, 3] and trainer.history == records
    params = set(trainer.model.params)
    for r in records:
        assert set(r["update_norms"]) == params and set(r["relative_change"]) == params
        assert all(v > 0 for v in r["update_norms"].values())
        assert len(r["step_grad_norms"]) == 7
        assert r["grad_norm_max"] >= r["grad_norm_mean"] > 0
        assert r["clipped_fraction"] == 1.0  # a 0.05 threshold clips every step
        assert r["val_mse"] == pytest.approx(r["val_loss"] * seattle_prepared.target_scale**2)
        assert r["seconds"] > 0
    # relative change from the initial weights grows as training moves away from them
    change = [r["relative_change"]["rnn.weight_hh_l0"] for r in records]
    assert change[0] < change[-1]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert trainer.status == "completed" and "all 3 epochs" in trainer.message


def test_same_seed_same_history_and_other_seed_differs(seattle_prepared):
    def losses(seed):
        history = Trainer(TrainConfig(**FAST, seed=seed), seattle_prepared).fit().history
        return [(r["train_loss"], r["val_loss"], r["update_norms"]["head.weight"]) for r in history]

    assert losses(3) == losses(3)
    assert losses(3) != losses(4)


def test_stop_event_ends_within_one_batch_and_keeps_the_best_epoch(seattle_prepared):
    stop = threading.Event()
    trainer = Trainer(TrainConfig(**{**FAST, "epochs": 50}), seattle_prepared)
    seen = []
    for record in trainer.iter_epochs(stop):
        seen.append(record)
        if record["epoch"] == 2:
            stop.set()
            best = {k: v.copy() for k, v in trainer.model.params.items()}
    assert [r["epoch"] for r in seen] == [1, 2]  # epoch 3 never finished: stopped at its first batch
    assert trainer.status == "stopped" and "epoch 3" in trainer.message
    best_epoch = trainer.best_epoch
    assert best_epoch in (1, 2)
    if best_epoch == 2:
        for name, value in best.items():
            np.testing.assert_array_equal(trainer.model.params[name], value)


def test_early_stopping_restores_the_best_validation_weights(seattle_prepared):
    # a learning rate this high makes validation loss bounce, so patience 1 triggers quickly
    trainer = Trainer(TrainConfig(hidden_size=8, epochs=40, patience=1, lr=0.05, optimizer="momentum",
                                  grad_clip=1.0), seattle_prepared)
    trainer.fit()
    assert trainer.status == "early_stopped"
    assert len(trainer.history) < 40
    best = min(trainer.history, key=lambda r: r["val_loss"])
    assert trainer.best_epoch == best["epoch"]
    assert trainer._validation_loss() == pytest.approx(best["val_loss"], rel=1e-12)


@pytest.mark.parametrize("settings", [dict(model="rnn", hidden_size=16, lr=1.0),  # explodes within 3 batches
                                      dict(model="lstm", hidden_size=32, lr=1.0)])  # finite but explodes
def test_divergence_stops_with_a_sentence_and_keeps_finite_weights(seattle_prepared, settings):
    trainer = Trainer(TrainConfig(**settings, epochs=20, optimizer="sgd", grad_clip=0, patience=0), seattle_prepared)
    trainer.fit()
    assert trainer.status == "diverged"
    assert "diverged" in trainer.message and "learning rate" in trainer.message
    assert all(np.isfinite(p).all() for p in trainer.model.params.values())
    assert np.isfinite(trainer.model.predict(seattle_prepared.x_val)).all()


@pytest.mark.parametrize(
    "change, words",
    [({"model": "transformer"}, "Unknown model"), ({"lr": 0.0}, "Learning rate"), ({"hidden_size": 0}, "Hidden size"),
     ({"batch_size": 2.5}, "Batch size"), ({"grad_clip": -1.0}, "Clip at global norm"), ({"optimizer": "rmsprop"}, "optimizer"),
     ({"dtype": "float16"}, "precision")],
)
def test_impossible_settings_are_refused(change, words):
    with pytest.raises(SettingError, match=words):
        TrainConfig(**change).validate()


def test_float32_training_runs_in_single_precision(seattle_prepared):
    trainer = Trainer(TrainConfig(**FAST, dtype="float32"), seattle_prepared).fit()
    assert all(p.dtype == np.float32 for p in trainer.model.params.values())
    assert trainer.history[-1]["val_loss"] < trainer.history[0]["val_loss"] * 1.5


def test_lstm_with_cli_defaults_beats_persistence_on_embedded_data(seattle_prepared):
    trainer = Trainer(TrainConfig(), seattle_prepared).fit()
    test = evaluate(trainer.model, seattle_prepared).table("test")
    assert test.loc["model", "MSE"] < test.loc["persistence", "MSE"]
    assert test.loc["model", "skill"] > 0


def test_clean_weather_lstm_median_of_three_seeds(clean_weather_path):
    """The engine issue's acceptance figure: median test MSE about 21.0 °F², below persistence and least squares.

    The bound was 21.0 when 9 test days whose tmax was forward-filled (not observed) were scored; scoring
    only observed days moved the median from 20.92 to 21.01 and persistence from 24.85 to 24.96.
    """
    # the layout this figure was measured on: train 70 %, validation 15 %, test 15 %, no calibration block
    prepared = prepare(load_csv(clean_weather_path), target="tmax", features=["tmax", "tmin", "rain"], lookback=7,
                       splits=(0.7, 0.15), calibration=0.0)
    scores = []
    for seed in (0, 1, 2):
        config = TrainConfig(model="lstm", hidden_size=32, lr=1e-3, batch_size=64, epochs=30, grad_clip=1.0,
                             patience=0, seed=seed)
        result = evaluate(Trainer(config, prepared).fit().model, prepared).table("test")
        scores.append(result.loc["model", "MSE"])
    median = statistics.median(scores)
    assert median <= 21.05
    assert median < result.loc["persistence", "MSE"]
    assert median < result.loc["least squares", "MSE"]


def test_fit_trains_and_iter_epochs_is_lazy(seattle_prepared):
    lazy = Trainer(TrainConfig(**FAST), seattle_prepared)
    epochs = lazy.iter_epochs()
    assert lazy.history == [] and lazy.status == "not started"  # nothing has trained yet
    next(epochs)
    assert len(lazy.history) == 1
    trainer = Trainer(TrainConfig(**FAST), seattle_prepared)
    assert trainer.fit() is trainer and len(trainer.history) == 3 and trainer.status == "completed"


def test_stop_during_epoch_one_restores_the_initial_weights_and_says_so(seattle_prepared):
    stop = threading.Event()
    trainer = Trainer(TrainConfig(**FAST), seattle_prepared)
    initial = {k: v.copy() for k, v in trainer.model.params.items()}

    def stop_after_three_batches(done):
        if done == 3:
            stop.set()

    assert list(trainer.iter_epochs(stop, on_batch=stop_after_three_batches)) == []
    assert trainer.status == "stopped" and len(trainer.batch_losses) == 3
    assert "initial, untrained weights" in trainer.message
    for name, value in initial.items():  # three updates happened, and none of them is kept
        np.testing.assert_array_equal(trainer.model.params[name], value)


def test_data_settings_have_one_home_the_prepared_data(seattle_table):
    with pytest.raises(TypeError):
        TrainConfig(lookback=14)  # a training config cannot contradict the windows it trains on
    prepared = prepare(seattle_table, target="temp_min", lookback=5, horizon=2)
    trainer = Trainer(TrainConfig(**FAST), prepared).fit()
    assert len(trainer.history[0]["step_grad_norms"]) == 5
    assert prepared.settings().to_dict() == {"target": "temp_min", "features": prepared.features, "lookback": 5,
                                             "horizon": 2, "splits": [0.6, 0.15], "calibration": 0.1}


def test_a_nan_loss_diverges_and_keeps_the_per_batch_losses(seattle_prepared, monkeypatch):
    trainer = Trainer(TrainConfig(**FAST), seattle_prepared)
    real = trainer.model.loss_and_grads
    calls = []

    def nan_on_the_fifth_batch(x, y, return_step_norms=False):
        calls.append(1)
        loss, grads, norms = real(x, y, return_step_norms=True)
        return (float("nan") if len(calls) == 5 else loss), grads, norms

    monkeypatch.setattr(trainer.model, "loss_and_grads", nan_on_the_fifth_batch)
    trainer.fit()
    assert trainer.status == "diverged" and "epoch 1" in trainer.message
    assert len(trainer.batch_losses) == 5 and np.isnan(trainer.batch_losses[-1])
    assert "initial, untrained weights" in trainer.message


def _without_timing(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


@pytest.mark.parametrize("optimizer", ["adam", "momentum"])
def test_resuming_from_an_epoch_reproduces_the_parent_exactly(seattle_prepared, optimizer):
    config = TrainConfig(**{**FAST, "epochs": 6}, optimizer=optimizer, lr=0.01, patience=0)
    parent = Trainer(config, seattle_prepared).fit()
    assert sorted(parent.snapshots) == [1, 2, 3, 4, 5, 6]
    branch = Trainer(config, seattle_prepared, resume=parent.snapshots[3]).fit()
    assert _without_timing(branch.history) == _without_timing(parent.history)  # batch order included
    for name, value in parent.model.params.items():
        np.testing.assert_array_equal(branch.model.params[name], value)
    assert branch.best_epoch == parent.best_epoch and branch.message == parent.message


def test_a_branch_with_a_new_learning_rate_continues_from_the_snapshot(seattle_prepared):
    parent = Trainer(TrainConfig(**{**FAST, "epochs": 4}), seattle_prepared).fit()
    branch = Trainer(TrainConfig(**{**FAST, "epochs": 6}, lr=0.01), seattle_prepared, resume=parent.snapshots[2])
    assert branch.optimizer.lr == 0.01 and branch.optimizer.t == parent.snapshots[2].optimizer["t"]
    branch.fit()
    assert [r["epoch"] for r in branch.history] == [1, 2, 3, 4, 5, 6]
    assert _without_timing(branch.history[:2]) == _without_timing(parent.history[:2])
    assert branch.history[2]["lr"] == 0.01 and branch.history[2] != parent.history[2]
    with pytest.raises(SettingError, match="more than 4 epochs"):
        Trainer(TrainConfig(**{**FAST, "epochs": 4}), seattle_prepared, resume=parent.snapshots[4])


def test_snapshots_are_thinned_evenly_within_the_byte_budget(seattle_prepared):
    one = Trainer(TrainConfig(**{**FAST, "epochs": 1}), seattle_prepared).fit().snapshots[1].nbytes
    trainer = Trainer(TrainConfig(**{**FAST, "epochs": 9}, patience=0), seattle_prepared,
                      snapshot_budget=int(3.5 * one)).fit()
    assert sorted(trainer.snapshots) == [4, 8]  # every epoch, then every 2nd, then every 4th
    assert sum(s.nbytes for s in trainer.snapshots.values()) <= 3.5 * one

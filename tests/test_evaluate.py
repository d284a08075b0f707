"""Scores and baselines: computed on the same windows, in target units, checked by hand."""

import numpy as np
import pandas as pd
import pytest

from sklearn.linear_model import LinearRegression

from rnnlab import evaluate as evaluate_module
from rnnlab.evaluate import EVAL_SPLITS, PREDICTORS, LeastSquares, climatology_by_day_of_year, evaluate


class _Oracle:
    """A 'model' that predicts the true scaled target: every metric must say it is perfect."""

    def __init__(self, prepared):
        self.lookup = {x.tobytes(): y for split in ("train", "validation", "calibration", "test")
                       for x, y in zip(prepared.inputs(split), prepared.targets(split))}

    def predict(self, x):
        return np.array([self.lookup[w.tobytes()] for w in x])


class _Constant:
    def __init__(self, value):
        self.value = value

    def predict(self, x):
        return np.full(len(x), self.value)


def test_scoreboard_has_every_predictor_and_split(seattle_prepared):
    result = evaluate(_Constant(0.0), seattle_prepared)
    assert set(result.metrics.index) == {(p, s) for p in PREDICTORS for s in EVAL_SPLITS}
    assert list(result.metrics.columns) == ["MSE", "RMSE", "MAE", "R2", "skill"]
    assert result.table("test").loc["persistence", "skill"] == 0.0
    assert set(result.predictions["split"]) == set(EVAL_SPLITS)
    assert len(result.predictions) == len(seattle_prepared.x_val) + len(seattle_prepared.x_test)


def test_metrics_match_a_hand_computation_in_target_units(seattle_prepared):
    result = evaluate(_Constant(0.0), seattle_prepared)  # scaled 0 = the training mean of temp_max
    window = seattle_prepared.windows["test"]
    error = seattle_prepared.target_mean - window["actual"]
    persistence_mse = np.mean((window["persistence"] - window["actual"]) ** 2)
    row = result.table("test").loc["model"]
    assert row["MSE"] == pytest.approx(np.mean(error**2))
    assert row["RMSE"] == pytest.approx(np.sqrt(np.mean(error**2)))
    assert row["MAE"] == pytest.approx(np.mean(np.abs(error)))
    assert row["skill"] == pytest.approx(1 - np.mean(error**2) / persistence_mse)
    assert result.table("test").loc["persistence", "MSE"] == pytest.approx(persistence_mse)


def test_a_perfect_model_scores_perfectly(seattle_prepared):
    row = evaluate(_Oracle(seattle_prepared), seattle_prepared).table("validation").loc["model"]
    assert row["MSE"] == pytest.approx(0, abs=1e-18) and row["R2"] == pytest.approx(1) and row["skill"] == pytest.approx(1)


def test_baselines_are_honest_on_seattle(seattle_prepared):
    test = evaluate(_Constant(0.0), seattle_prepared).table("test")
    # on daily maximum temperature: least squares beats persistence, which beats climatology
    assert test.loc["least squares", "MSE"] < test.loc["persistence", "MSE"] < test.loc["climatology", "MSE"]


def test_climatology_is_the_training_mean_per_day_of_year(seattle_prepared):
    climatology = climatology_by_day_of_year(seattle_prepared)
    assert list(climatology.index) == list(range(1, 367)) and climatology.notna().all()
    train = seattle_prepared.train_frame["temp_max"]
    jan_first = train[train.index.day_of_year == 1].mean()
    assert climatology.loc[1] == pytest.approx(jan_first)
    assert climatology.loc[200] > climatology.loc[15]  # July is warmer than January in Seattle


def test_clean_weather_baselines_match_the_reference_figures(clean_weather_path):
    from rnnlab.tables import load_csv
    from rnnlab.windows import prepare

    prepared = prepare(load_csv(clean_weather_path), target="tmax", features=["tmax", "tmin", "rain"], lookback=7)
    test = evaluate(_Constant(0.0), prepared).table("test")
    # shared/data/README.md: persistence 24.76, least squares on 7 days 21.44 (all rows; we drop gap windows)
    assert test.loc["persistence", "MSE"] == pytest.approx(24.76, abs=0.3)
    assert test.loc["least squares", "MSE"] == pytest.approx(21.44, abs=0.3)
    assert isinstance(evaluate(_Constant(0.0), prepared).predictions["date"].iloc[0], pd.Timestamp)


def test_least_squares_fitted_by_chunks_matches_scikit_learn_on_materialised_windows(seattle_prepared):
    p = seattle_prepared
    reference = LinearRegression().fit(p.x_train.reshape(p.count("train"), -1), p.y_train)
    ours = LeastSquares().fit(p)
    expected = reference.predict(p.x_test.reshape(p.count("test"), -1))
    np.testing.assert_allclose(ours.predict(p.inputs("test")), expected, rtol=0, atol=1e-10)


class _Recording:
    """A model that remembers the largest batch it was asked to predict."""

    def __init__(self):
        self.largest = 0

    def predict(self, x):
        self.largest = max(self.largest, len(x))
        return x[:, -1, 1]  # scaled temp_max on the window's last day


def test_scoring_gathers_windows_a_chunk_at_a_time(seattle_prepared, monkeypatch):
    whole = evaluate(_Recording(), seattle_prepared)
    monkeypatch.setattr(evaluate_module, "CHUNK_BYTES", 50 * 7 * 4 * 8)  # 50 windows of 7 days x 4 features
    model = _Recording()
    chunked = evaluate(model, seattle_prepared)
    assert model.largest == 50
    pd.testing.assert_frame_equal(chunked.metrics, whole.metrics, rtol=1e-12)
    # the stand-in model is persistence on scaled values, so it scores exactly what persistence scores
    assert chunked.table("test").loc["model", "MSE"] == pytest.approx(chunked.table("test").loc["persistence", "MSE"])

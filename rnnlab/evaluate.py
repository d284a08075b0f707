"""Honest scores: the model and three baselines on exactly the same windows, in target units.

Baselines:
- persistence: tomorrow equals today (the target's value on the window's last row);
- climatology: the training rows' mean of the target for the same day of the year;
- least squares: a linear regression on the flattened lookback window, fitted on the training
  windows by normal equations accumulated a chunk at a time (the same fit as scikit-learn's
  LinearRegression, without ever holding the (n_train, lookback·F) design matrix).

Windows are gathered from ``PreparedData`` a chunk at a time, so scoring holds at most about
``CHUNK_BYTES`` of inputs whatever the lookback and the length of the data.

Metrics (scikit-learn): MSE, RMSE, MAE, R², and skill versus persistence = 1 − MSE / MSE_persistence
(above 0: better than "same as today").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from rnnlab.windows import PreparedData

EVAL_SPLITS = ("validation", "test")
PREDICTORS = ("model", "persistence", "climatology", "least squares")
METRIC_COLUMNS = ("MSE", "RMSE", "MAE", "R2", "skill")
CHUNK_BYTES = 16 * 2**20  # float64 inputs gathered at once: big enough to vectorize, small next to the data


@dataclass
class EvaluationResult:
    metrics: pd.DataFrame  # MultiIndex (predictor, split) x METRIC_COLUMNS
    predictions: pd.DataFrame  # date, split, actual, predicted, persistence, climatology, least_squares

    def table(self, split: str) -> pd.DataFrame:
        """The scoreboard of one split: one row per predictor."""
        return self.metrics.xs(split, level="split")

    def to_dict(self) -> dict:
        """{split: {predictor: {metric: value}}} for JSON."""
        return {split: {p: {m: float(v) for m, v in row.items()} for p, row in self.table(split).iterrows()}
                for split in EVAL_SPLITS}


def climatology_by_day_of_year(prepared: PreparedData) -> pd.Series:
    """Mean target per day of the year (1..366) over the training rows; empty days take their neighbours'."""
    target = prepared.train_frame[prepared.target]
    means = target.groupby(target.index.day_of_year).mean().reindex(range(1, 367))
    # circular interpolation so that a day never seen in training still gets a seasonal value
    tripled = pd.concat([means, means, means], ignore_index=True).interpolate(limit_direction="both")
    return pd.Series(tripled.iloc[366:732].to_numpy(), index=range(1, 367))


def score(actual, predicted, persistence_mse) -> dict:
    mse = mean_squared_error(actual, predicted)
    return {"MSE": mse, "RMSE": float(np.sqrt(mse)), "MAE": mean_absolute_error(actual, predicted),
            "R2": r2_score(actual, predicted), "skill": 1.0 - mse / persistence_mse if persistence_mse > 0 else np.nan}


def _chunks(prepared: PreparedData, split: str):
    """Slices of window positions covering the split, each gathering at most about CHUNK_BYTES of inputs."""
    per_window = prepared.lookback * prepared.n_features * 8
    size = max(1, CHUNK_BYTES // per_window)
    count = prepared.count(split)
    return [slice(start, min(start + size, count)) for start in range(0, count, size)]


def predict_split(model, prepared: PreparedData, split: str) -> np.ndarray:
    """(n,) ``model.predict`` on every window of the split, in scaled units, a chunk at a time."""
    return np.concatenate([np.asarray(model.predict(prepared.inputs(split, chunk)), dtype=np.float64).reshape(-1)
                           for chunk in _chunks(prepared, split)])


class LeastSquares:
    """Linear regression on the flattened window, (n, lookback, F) -> (n,), fitted chunk by chunk.

    Centring by the training means before forming XᵀX keeps the normal equations as well
    conditioned as the data allow; ``lstsq`` then gives the minimum-norm solution, as scikit-learn's
    LinearRegression does, when columns are collinear.
    """

    def fit(self, prepared: PreparedData, split: str = "train") -> "LeastSquares":
        chunks, n = _chunks(prepared, split), prepared.count(split)
        width = prepared.lookback * prepared.n_features
        x_sum, y_sum = np.zeros(width), 0.0
        for chunk in chunks:
            x_sum += prepared.inputs(split, chunk).reshape(-1, width).sum(axis=0)
            y_sum += prepared.targets(split, chunk).sum()
        self.x_mean_, self.y_mean_ = x_sum / n, y_sum / n
        gram, moment = np.zeros((width, width)), np.zeros(width)
        for chunk in chunks:
            x = prepared.inputs(split, chunk).reshape(-1, width) - self.x_mean_
            gram += x.T @ x
            moment += x.T @ (prepared.targets(split, chunk) - self.y_mean_)
        self.coef_ = np.linalg.lstsq(gram, moment, rcond=None)[0]  # (lookback·F,)
        return self

    def predict(self, x) -> np.ndarray:
        """x: (n, lookback, F) scaled -> (n,) scaled target."""
        return (np.asarray(x, dtype=np.float64).reshape(len(x), -1) - self.x_mean_) @ self.coef_ + self.y_mean_


def baseline_predictions(prepared: PreparedData) -> dict:
    """{split: {baseline name: predictions in target units}} for the validation and test windows."""
    climatology = climatology_by_day_of_year(prepared)
    regression = LeastSquares().fit(prepared)
    out = {}
    for split in EVAL_SPLITS:
        window = prepared.windows[split]
        out[split] = {
            "persistence": window["persistence"],
            "climatology": climatology.loc[window["dates"].day_of_year].to_numpy(),
            "least squares": prepared.inverse_target(predict_split(regression, prepared, split)),
        }
    return out


def evaluate(model, prepared: PreparedData, baselines: dict | None = None) -> EvaluationResult:
    """Score ``model`` (anything with ``predict(x) -> (n,)`` in scaled units) and the baselines.

    Only windows whose target day was observed are scored: ``prepare`` leaves out filled-in days.
    """
    baselines = baselines or baseline_predictions(prepared)
    rows, frames = [], []
    for split in EVAL_SPLITS:
        window = prepared.windows[split]
        actual = window["actual"]
        predicted = {"model": prepared.inverse_target(predict_split(model, prepared, split)), **baselines[split]}
        persistence_mse = mean_squared_error(actual, predicted["persistence"])
        for name in PREDICTORS:
            rows.append({"predictor": name, "split": split, **score(actual, predicted[name], persistence_mse)})
        frames.append(pd.DataFrame({
            "date": window["dates"], "split": split, "actual": actual, "predicted": predicted["model"],
            "persistence": predicted["persistence"], "climatology": predicted["climatology"],
            "least_squares": predicted["least squares"],
        }))
    metrics = pd.DataFrame(rows).set_index(["predictor", "split"])[list(METRIC_COLUMNS)]
    return EvaluationResult(metrics, pd.concat(frames, ignore_index=True))

"""Honest scores: the model and three baselines on exactly the same windows, in target units.

Baselines:
- persistence: tomorrow equals today (the target's value on the window's last row);
- climatology: the training rows' mean of the target for the same day of the year;
- least squares: a linear regression on the flattened lookback window (scikit-learn).

Metrics (scikit-learn): MSE, RMSE, MAE, R², and skill versus persistence = 1 − MSE / MSE_persistence
(above 0: better than "same as today").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from rnnlab.windows import PreparedData

EVAL_SPLITS = ("validation", "test")
PREDICTORS = ("model", "persistence", "climatology", "least squares")
METRIC_COLUMNS = ("MSE", "RMSE", "MAE", "R2", "skill")


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


def baseline_predictions(prepared: PreparedData) -> dict:
    """{split: {baseline name: predictions in target units}} for the validation and test windows."""
    climatology = climatology_by_day_of_year(prepared)
    regression = LinearRegression().fit(prepared.x_train.reshape(len(prepared.x_train), -1), prepared.y_train)
    out = {}
    for split in EVAL_SPLITS:
        window = prepared.windows[split]
        flat = window["x"].reshape(len(window["x"]), -1)
        out[split] = {
            "persistence": window["persistence"],
            "climatology": climatology.loc[window["dates"].day_of_year].to_numpy(),
            "least squares": prepared.inverse_target(regression.predict(flat)),
        }
    return out


def evaluate(model, prepared: PreparedData, baselines: dict | None = None) -> EvaluationResult:
    """Score ``model`` (anything with ``predict(x) -> (n,)`` in scaled units) and the baselines."""
    baselines = baselines or baseline_predictions(prepared)
    rows, frames = [], []
    for split in EVAL_SPLITS:
        window = prepared.windows[split]
        actual = window["actual"]
        predicted = {"model": prepared.inverse_target(model.predict(window["x"])), **baselines[split]}
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

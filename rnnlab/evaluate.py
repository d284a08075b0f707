"""Honest scores: the model and three baselines on exactly the same windows and lead days, in target units.

Baselines, for every lead day 1..H:
- persistence: every lead day equals the last observed day (the target on the window's last row);
- climatology: the training rows' mean of the target for the day of the year of that lead day;
- least squares: a linear regression on the flattened lookback window with one output per lead,
  fitted on the training windows by normal equations accumulated a chunk at a time (the same fit
  as scikit-learn's LinearRegression, without ever holding the (n_train, lookback·F) design matrix).

Intervals (rnnlab.intervals): split-conformal, per lead, calibrated on the calibration block, for
the model and for persistence; scored on the test days by coverage, mean width and Winkler score.

Windows are gathered from ``PreparedData`` a chunk at a time, so scoring holds at most about
``CHUNK_BYTES`` of inputs whatever the lookback and the length of the data.

Metrics (scikit-learn): MSE, RMSE, MAE, R², and skill versus persistence = 1 − MSE / MSE_persistence
(above 0: better than "same as today"); over all lead days (R² is the mean of the per-lead R²) and
per lead day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from rnnlab.intervals import Calibration, calibrate, interval_scores
from rnnlab.windows import PreparedData

EVAL_SPLITS = ("validation", "test")
PREDICTORS = ("model", "persistence", "climatology", "least squares")
METRIC_COLUMNS = ("MSE", "RMSE", "MAE", "R2", "skill")
INTERVAL_COLUMNS = ("coverage", "width", "winkler")
INTERVAL_PREDICTORS = ("model", "persistence")
CHUNK_BYTES = 16 * 2**20  # float64 inputs gathered at once: big enough to vectorize, small next to the data


@dataclass
class EvaluationResult:
    """Scores of the model and the baselines.

    metrics: MultiIndex (predictor, split) x METRIC_COLUMNS, over all lead days;
    lead_metrics: MultiIndex (predictor, split, lead) x METRIC_COLUMNS, one row per lead day;
    predictions: one row per window and lead day (date = the day forecast): date, split, lead,
      actual, predicted, persistence, climatology, least_squares, and lower, upper when calibrated;
    intervals: MultiIndex (predictor, split, lead) x INTERVAL_COLUMNS for the model and persistence,
      empty without a calibration; calibration: the half-widths used, or None.
    """

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    lead_metrics: pd.DataFrame | None = None
    intervals: pd.DataFrame | None = None
    calibration: Calibration | None = None

    def table(self, split: str) -> pd.DataFrame:
        """The scoreboard of one split: one row per predictor."""
        return self.metrics.xs(split, level="split")

    def lead_table(self, split: str, metric: str = "MSE") -> pd.DataFrame:
        """One metric of one split per lead day: rows = leads 1..H, columns = predictors."""
        return self.lead_metrics.xs(split, level="split")[metric].unstack("predictor")[list(PREDICTORS)]

    def interval_table(self, split: str = "test") -> pd.DataFrame:
        """Interval scores of one split: rows (predictor, lead), columns coverage, width, winkler, nominal."""
        if self.intervals is None or self.intervals.empty:
            return pd.DataFrame(columns=[*INTERVAL_COLUMNS, "nominal"])
        table = self.intervals.xs(split, level="split").copy()
        table["nominal"] = self.calibration.coverage
        return table

    def to_dict(self) -> dict:
        """{split: {predictor: {metric: value}}} for JSON."""
        return {split: {p: {m: float(v) for m, v in row.items()} for p, row in self.table(split).iterrows()}
                for split in EVAL_SPLITS}

    def per_lead_dict(self) -> dict:
        """{split: {predictor: {metric: [value per lead]}}} and, when calibrated, "intervals":
        {split: {predictor: {coverage|width|winkler: [value per lead]}}, "coverage": nominal} for JSON."""
        out = {split: {p: {m: [float(v) for v in rows[m]] for m in METRIC_COLUMNS}
                       for p, rows in self.lead_metrics.xs(split, level="split").groupby(level="predictor")}
               for split in EVAL_SPLITS}
        if self.intervals is not None and not self.intervals.empty:
            out["intervals"] = {split: {p: {m: [float(v) for v in rows[m]] for m in INTERVAL_COLUMNS}
                                        for p, rows in self.intervals.xs(split, level="split").groupby(level="predictor")}
                                for split in EVAL_SPLITS}
            out["intervals"]["coverage"] = self.calibration.coverage
        return out


def climatology_by_day_of_year(prepared: PreparedData) -> pd.Series:
    """Mean target per day of the year (1..366) over the training rows; empty days take their neighbours'."""
    target = prepared.train_frame[prepared.target]
    means = target.groupby(target.index.day_of_year).mean().reindex(range(1, 367))
    # circular interpolation so that a day never seen in training still gets a seasonal value
    tripled = pd.concat([means, means, means], ignore_index=True).interpolate(limit_direction="both")
    return pd.Series(tripled.iloc[366:732].to_numpy(), index=range(1, 367))


def score(actual, predicted, persistence_mse) -> dict:
    """actual, predicted: (n,) or (n, H); over several leads MSE and MAE are means over every value
    and R² is the mean of the per-lead R²."""
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
    """(n, H) ``model.predict`` on every window of the split, in scaled units, a chunk at a time.

    A model whose ``predict`` gives (n,) is read as forecasting one lead day.
    """
    return np.concatenate([np.asarray(model.predict(prepared.inputs(split, chunk)), dtype=np.float64)
                           .reshape(-1, prepared.horizon) for chunk in _chunks(prepared, split)])


class LeastSquares:
    """Linear regression on the flattened window, (n, lookback, F) -> (n, H), one output per lead day,
    fitted chunk by chunk.

    Centring by the training means before forming XᵀX keeps the normal equations as well
    conditioned as the data allow; ``lstsq`` then gives the minimum-norm solution, as scikit-learn's
    LinearRegression does, when columns are collinear.
    """

    def fit(self, prepared: PreparedData, split: str = "train") -> "LeastSquares":
        chunks, n = _chunks(prepared, split), prepared.count(split)
        width = prepared.lookback * prepared.n_features
        x_sum, y_sum = np.zeros(width), np.zeros(prepared.horizon)
        for chunk in chunks:
            x_sum += prepared.inputs(split, chunk).reshape(-1, width).sum(axis=0)
            y_sum += prepared.targets(split, chunk).sum(axis=0)
        self.x_mean_, self.y_mean_ = x_sum / n, y_sum / n
        gram, moment = np.zeros((width, width)), np.zeros((width, prepared.horizon))
        for chunk in chunks:
            x = prepared.inputs(split, chunk).reshape(-1, width) - self.x_mean_
            gram += x.T @ x
            moment += x.T @ (prepared.targets(split, chunk) - self.y_mean_)
        self.coef_ = np.linalg.lstsq(gram, moment, rcond=None)[0]  # (lookback·F, H)
        return self

    def predict(self, x) -> np.ndarray:
        """x: (n, lookback, F) scaled -> (n, H) scaled target."""
        return (np.asarray(x, dtype=np.float64).reshape(len(x), -1) - self.x_mean_) @ self.coef_ + self.y_mean_


def baseline_predictions(prepared: PreparedData, splits=EVAL_SPLITS) -> dict:
    """{split: {baseline name: (n, H) predictions in target units}} for the windows of ``splits``."""
    climatology = climatology_by_day_of_year(prepared)
    regression = LeastSquares().fit(prepared)
    out = {}
    for split in splits:
        window = prepared.windows[split]
        rows = prepared.target_rows(split)  # (n, H)
        day_of_year = prepared.row_dates[rows.ravel()].day_of_year
        out[split] = {
            "persistence": window["persistence"],
            "climatology": climatology.loc[day_of_year].to_numpy().reshape(rows.shape),
            "least squares": prepared.inverse_target(predict_split(regression, prepared, split)),
        }
    return out


def calibrate_model(model, prepared: PreparedData, coverage: float = 0.9) -> Calibration | None:
    """Split-conformal half-widths per lead for the model and persistence from the calibration
    windows, or None when ``prepared`` has no calibration block."""
    if "calibration" not in prepared.starts:
        return None
    window = prepared.windows["calibration"]
    predicted = prepared.inverse_target(predict_split(model, prepared, "calibration"))
    return calibrate(window["actual"], predicted, window["persistence"], coverage)


def _long(values, horizon: int) -> np.ndarray:
    """(n, H) -> (n·H,) lead by lead: every window's lead 1, then every window's lead 2, …"""
    return np.asarray(values).reshape(-1, horizon).T.ravel()


def evaluate(model, prepared: PreparedData, baselines: dict | None = None, coverage: float = 0.9,
             calibration: Calibration | None = None) -> EvaluationResult:
    """Score ``model`` (anything with ``predict(x) -> (n, H)`` in scaled units) and the baselines,
    over all lead days and per lead day.

    calibration: the interval half-widths to use (a saved run's); None calibrates on the calibration
    block at ``coverage`` when ``prepared`` has one, and gives no intervals when it has none.
    Only windows whose every lead day was observed are scored: ``prepare`` leaves out filled-in days.
    """
    baselines = baselines or baseline_predictions(prepared)
    if calibration is None:
        calibration = calibrate_model(model, prepared, coverage)
    horizon = prepared.horizon
    leads = np.arange(1, horizon + 1)
    rows, lead_rows, interval_rows, frames = [], [], [], []
    for split in EVAL_SPLITS:
        window = prepared.windows[split]
        actual = window["actual"]  # (n, H)
        predicted = {"model": prepared.inverse_target(predict_split(model, prepared, split)), **baselines[split]}
        persistence_mse = mean_squared_error(actual, predicted["persistence"])
        lead_persistence_mse = ((actual - predicted["persistence"]) ** 2).mean(axis=0)
        for name in PREDICTORS:
            rows.append({"predictor": name, "split": split, **score(actual, predicted[name], persistence_mse)})
            for k in range(horizon):
                lead_rows.append({"predictor": name, "split": split, "lead": k + 1,
                                  **score(actual[:, k], predicted[name][:, k], lead_persistence_mse[k])})
        frame = pd.DataFrame({
            "date": prepared.row_dates[_long(prepared.target_rows(split), horizon)], "split": split,
            "lead": np.repeat(leads, len(actual)), "actual": _long(actual, horizon),
            "predicted": _long(predicted["model"], horizon), "persistence": _long(predicted["persistence"], horizon),
            "climatology": _long(predicted["climatology"], horizon),
            "least_squares": _long(predicted["least squares"], horizon),
        })
        if calibration is not None:
            lower, upper = calibration.bounds(predicted["model"])
            frame["lower"], frame["upper"] = _long(lower, horizon), _long(upper, horizon)
            for name in INTERVAL_PREDICTORS:
                bounds = calibration.bounds(predicted[name], persistence=name == "persistence")
                scores = interval_scores(actual, *bounds, calibration.coverage)
                for k in range(horizon):
                    interval_rows.append({"predictor": name, "split": split, "lead": k + 1,
                                          **{column: float(scores[column][k]) for column in INTERVAL_COLUMNS}})
        frames.append(frame)
    metrics = pd.DataFrame(rows).set_index(["predictor", "split"])[list(METRIC_COLUMNS)]
    lead_metrics = pd.DataFrame(lead_rows).set_index(["predictor", "split", "lead"])[list(METRIC_COLUMNS)]
    intervals = (pd.DataFrame(interval_rows).set_index(["predictor", "split", "lead"])[list(INTERVAL_COLUMNS)]
                 if interval_rows else pd.DataFrame(columns=list(INTERVAL_COLUMNS)))
    return EvaluationResult(metrics, pd.concat(frames, ignore_index=True), lead_metrics, intervals, calibration)

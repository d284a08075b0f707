"""Rolling-origin backtest: does the model hold across years, not just on one test block?

The rows from ``first_origin`` (a share of the rows, default the second half) to the end are cut
into ``folds`` equal, consecutive test blocks. Fold k trains a new model from scratch on every row
before its block (an expanding window), split in date order into train / validation / calibration
in the proportions of the data settings, and is scored on its block exactly like the test split:
the same windows for the model and every baseline, per lead day, with conformal intervals
calibrated on the fold's own calibration block. Every window lies inside one block, so no fold
trains, early-stops or calibrates on a day its test windows see.

Folds are independent: ``backtest_fold`` runs one from the table and the settings alone, so they
can run in any order or in parallel; ``backtest`` runs them one after the other.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnlab.config import DataSettings, TrainConfig
from rnnlab.errors import SettingError
from rnnlab.evaluate import evaluate
from rnnlab.train import Trainer
from rnnlab.windows import prepare

METRICS = ("model_mse", "persistence_mse", "skill", "climatology_mse", "least_squares_mse", "coverage", "width",
           "winkler", "persistence_coverage", "persistence_width")


def fold_rows(rows: int, data_settings: DataSettings, folds: int, first_origin: float = 0.5) -> list[tuple]:
    """Per fold, (validation start, calibration start, test start, test end) as row positions.

    The test blocks tile rows round(rows · first_origin) .. rows; the rows before each block are
    shared out as train : validation : calibration in the proportions of ``data_settings``.
    """
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 1:
        raise SettingError(f"The number of folds must be a whole number of at least 1, got {folds!r}.")
    if not 0 < first_origin < 1:
        raise SettingError(f"The first origin must be a share of the rows between 0 and 1, got {first_origin!r}.")
    train, validation = (float(share) for share in data_settings.splits)
    before = train + validation + data_settings.calibration
    edges = np.linspace(round(rows * first_origin), rows, folds + 1).round().astype(int)
    return [(int(round(start * train / before)), int(round(start * (train + validation) / before)), int(start),
             int(stop)) for start, stop in zip(edges[:-1], edges[1:])]


def backtest_fold(table, data_settings: DataSettings, config: TrainConfig, folds: int, fold: int,
                  first_origin: float = 0.5) -> dict:
    """Train and score fold ``fold`` (0-based) of ``folds``; one row of :func:`backtest`'s table as a dict."""
    bounds = fold_rows(len(table.frame), data_settings, folds, first_origin)[fold]
    prepared = prepare(table, **data_settings.prepare_kwargs(), split_rows=bounds)
    trainer = Trainer(config, prepared).fit()
    result = evaluate(trainer.model, prepared, coverage=config.coverage)
    test = result.table("test")
    dates = prepared.row_dates
    train_rows = prepared.target_rows("train")
    test_rows = prepared.target_rows("test")
    row = {
        "fold": fold + 1,
        "origin": dates[bounds[2]],  # the first day of the test block
        "train_start": dates[prepared.starts["train"][0]],
        "train_end": dates[train_rows[-1, -1]],  # the last day any training window forecasts
        "train_days": int(bounds[0]),  # rows of the training split (validation and calibration follow)
        "train_windows": prepared.count("train"),
        "first_test_day": dates[test_rows[0, 0]],
        "last_test_day": dates[test_rows[-1, -1]],
        "test_days": int(bounds[3] - bounds[2]),
        "test_windows": prepared.count("test"),
        "model_mse": float(test.loc["model", "MSE"]),
        "persistence_mse": float(test.loc["persistence", "MSE"]),
        "skill": float(test.loc["model", "skill"]),
        "climatology_mse": float(test.loc["climatology", "MSE"]),
        "least_squares_mse": float(test.loc["least squares", "MSE"]),
    }
    intervals = result.interval_table("test")
    for name, prefix in (("model", ""), ("persistence", "persistence_")):
        scores = intervals.xs(name, level="predictor") if len(intervals) else None
        for column in ("coverage", "width") + (("winkler",) if name == "model" else ()):
            row[prefix + column] = float(scores[column].mean()) if scores is not None else np.nan
    row.update({"best_epoch": trainer.best_epoch, "status": trainer.status})
    return row


def backtest(table, data_settings: DataSettings, config: TrainConfig, folds: int,
             first_origin: float = 0.5, on_fold=None, client=None) -> pd.DataFrame:
    """One row per fold: origin, first/last training and test days, window counts, the test MSE of the
    model and each baseline, skill vs persistence, and the intervals' coverage, width (means over the
    lead days) and Winkler score beside persistence's; ``on_fold(row)`` is called after each fold.

    client: a Dask client to train the folds on, each an independent task, in parallel (``on_fold`` is
    then called for each row once all are back); None trains them here, one after another."""
    data_settings, config = data_settings.validate(), config.validate()
    fold_rows(len(table.frame), data_settings, folds, first_origin)  # refuse bad settings before any training
    if client is not None:
        futures = [client.submit(backtest_fold, table, data_settings, config, folds, fold, first_origin, pure=False)
                   for fold in range(folds)]
        rows = client.gather(futures)
        for row in rows if on_fold is not None else ():
            on_fold(row)
        return pd.DataFrame(rows)
    rows = []
    for fold in range(folds):
        rows.append(backtest_fold(table, data_settings, config, folds, fold, first_origin))
        if on_fold is not None:
            on_fold(rows[-1])
    return pd.DataFrame(rows)


def summary(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof 1; 0 for a single fold) of every metric over the folds."""
    values = folds[[m for m in METRICS if m in folds]]
    return pd.DataFrame({"mean": values.mean(), "std": values.std(ddof=1).fillna(0.0)})

"""The next days: the forecast of the H days after the data's last date, with intervals.

    next_days(model, prepared, table, calibration)   # a run in memory (the dashboard)
    next_days_of_run(run, table)                     # a weights file (the CLI)

Both give one row per lead day: date (the day forecast), lead, predicted, lower, upper (NaN
without a calibration). When the last ``lookback`` rows of the data have a gap in the dates or a
filled-in value, they raise a DataError saying so instead of forecasting from made-up inputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rnnlab.intervals import Calibration
from rnnlab.windows import PreparedData, last_rows


def _frame(predicted, dates, calibration: Calibration | None) -> pd.DataFrame:
    """predicted: (H,) in target units; dates: (H,)."""
    if calibration is not None:
        lower, upper = (bound[0] for bound in calibration.bounds(predicted[None]))
    else:
        lower = upper = np.full(len(predicted), np.nan)
    return pd.DataFrame({"date": dates, "lead": np.arange(1, len(predicted) + 1), "predicted": predicted,
                         "lower": lower, "upper": upper})


def next_days(model, prepared: PreparedData, table, calibration: Calibration | None = None) -> pd.DataFrame:
    """The forecast of the ``prepared.horizon`` days after ``table``'s last date from its last window."""
    values, dates = last_rows(table, prepared.features, prepared.lookback, prepared.horizon)
    scaled = np.asarray(model.predict(prepared.scale_features(values)[None]), dtype=np.float64).reshape(-1)
    return _frame(prepared.inverse_target(scaled), dates, calibration)


def next_days_of_run(run, table) -> pd.DataFrame:
    """The same for a loaded weights file (``weights_io.LoadedRun``), with its saved scalers and intervals.

    The table needs only the run's columns and its last ``lookback`` days: no split is made.
    """
    from rnnlab.weights_io import check_fits

    check_fits(run, table)
    metadata, scaler = run.metadata, run.metadata["scaler"]
    values, dates = last_rows(table, run.features, metadata["lookback"], metadata["horizon"])
    x = (values - np.asarray(scaler["feature_mean"])) / np.asarray(scaler["feature_scale"])
    scaled = np.asarray(run.model.predict(x[None]), dtype=np.float64).reshape(-1)
    return _frame(scaled * scaler["target_scale"] + scaler["target_mean"], dates, run.calibration)

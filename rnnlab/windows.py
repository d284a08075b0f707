"""From a loaded table to model inputs: target and features, leak guard, chronological split,
scalers fitted on the training rows only, gap-free windows.

    prepared = prepare(table, target="temp_max", lookback=7, horizon=3)
    prepared.count("train")              # how many training windows
    prepared.inputs("train", index)      # (len(index), lookback, n_features) scaled, gathered on demand
    prepared.targets("train", index)     # (len(index), horizon) scaled target of lead days 1..horizon

The rows are split in date order into four blocks: train (the model fits these), validation
(early stopping picks the epoch on these), calibration (the split-conformal intervals are
calibrated on these: the model neither fits nor stops on them) and test (scored once, at the end).
Every window lies inside one block: its lookback rows and all its lead days.

Windows are never stored: ``PreparedData`` keeps the scaled rows once, (rows, F), and per split the
row where each gap-free window starts; ``inputs`` gathers a batch with one fancy index. A 50,000-row
table with lookback 60 would otherwise hold 60 copies of every row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler

from rnnlab.errors import (ConstantColumnError, DataError, LeakError, NoNumericFeaturesError, SettingError, TargetMissingError,
                           TooFewRowsError)
from rnnlab.tables import LoadedTable, default_target

SPLIT_NAMES = ("train", "validation", "calibration", "test")  # in date order; calibration only when its share > 0
# a column that matches the target shifted into the future on this share of rows is a leak
_LEAK_AGREEMENT = 0.95


def find_leaks(table: LoadedTable, target: str, horizon: int, lookback: int) -> list[str]:
    """Columns that equal the target shifted 1 .. horizon + lookback − 1 rows into the future.

    A column with column[t] == target[t + k] puts the answer inside the window for every k from
    horizon (on the last row) to horizon + lookback − 1 (on the first row); for k below horizon it
    still hands over the future. "Equal" means on at least 95% of the rows, so that a few edited or
    filled cells do not hide a leak.
    """
    frame = table.frame
    target_values = frame[target].to_numpy()
    rows = len(target_values)
    leaks = []
    for column in frame.columns:
        if column == target:
            continue
        values = frame[column].to_numpy()
        for shift in range(1, min(horizon + lookback, rows)):
            agree = np.isclose(values[:-shift], target_values[shift:], rtol=1e-6, atol=1e-9).mean()
            if agree >= _LEAK_AGREEMENT:
                leaks.append(column)
                break
    return leaks


class _SplitWindows(Mapping):
    """One split's small per-window facts: "dates" (n,) (the day lead 1 forecasts; lead k is k − 1
    steps later), "actual" (n, horizon) (the target on lead days 1..horizon, original units),
    "persistence" (n, horizon) (the target on the window's last row, for every lead, original units).

    "x" and "y" are served too, for older callers, as fresh copies from ``inputs`` and ``targets``;
    they are left out of iteration so that ``dict(...)`` never materialises the windows.
    """

    _KEYS = ("dates", "actual", "persistence")

    def __init__(self, prepared: "PreparedData", split: str):
        self._prepared, self._split = prepared, split

    def __getitem__(self, key):
        prepared, rows = self._prepared, self._prepared.target_rows(self._split)
        if key == "dates":
            return prepared.row_dates[rows[:, 0]]
        if key == "actual":
            return prepared.target_values[rows]
        if key == "persistence":
            last_observed = prepared.target_values[rows[:, 0] - 1]
            return np.repeat(last_observed[:, None], prepared.horizon, axis=1)
        if key == "x":
            return prepared.inputs(self._split)
        if key == "y":
            return prepared.targets(self._split)
        raise KeyError(key)

    def __iter__(self):
        return iter(self._KEYS)

    def __len__(self):
        return len(self._KEYS)


@dataclass(eq=False)
class PreparedData:
    """The scaled rows once, the windows as row positions, and what maps predictions back to dates and units.

    values: (rows, F) scaled features of every row of the table, float64;
    target_values: (rows,) the target in original units; row_dates: (rows,) the table's dates;
    starts[split]: (n,) int64, the row where each window begins, in date order. A window covers rows
    start .. start + lookback − 1 and forecasts rows start + lookback .. start + lookback − 1 + horizon
    (lead days 1..horizon). Only gap-free windows whose every lead day was observed (not filled in)
    and lies inside the window's split are kept.
    calibration: the calibration block's share of the rows (0: no block, no intervals).
    """

    target: str
    features: list[str]
    lookback: int
    horizon: int
    splits: tuple[float, float]
    feature_mean: np.ndarray  # (F,)
    feature_scale: np.ndarray  # (F,)
    target_mean: float
    target_scale: float
    values: np.ndarray  # (rows, F)
    target_values: np.ndarray  # (rows,)
    row_dates: pd.DatetimeIndex  # (rows,)
    starts: dict  # split name -> (n,) int64
    train_frame: pd.DataFrame  # the training rows of the features and target, original units (for climatology)
    warnings: list[str]
    notes: list[str]
    dropped_windows: dict  # split name -> windows dropped because they span a gap
    imputed_targets_dropped: dict  # split name -> gap-free windows dropped because their target day was filled in
    source_sha256: str = ""
    source_name: str = ""
    calibration: float = 0.0

    def count(self, split: str) -> int:
        """How many windows the split has."""
        return len(self.starts[split])

    def _starts(self, split: str, index) -> np.ndarray:
        """(n,) start rows of the chosen windows; index: None (all), an integer array or a slice."""
        starts = self.starts[split]
        return starts if index is None else np.atleast_1d(starts[index])

    def target_rows(self, split: str, index=None) -> np.ndarray:
        """(n, horizon) the rows each window forecasts, lead 1 first."""
        return self._starts(split, index)[:, None] + (self.lookback + np.arange(self.horizon))

    def inputs(self, split: str, index=None, dtype="float64") -> np.ndarray:
        """(n, lookback, F) scaled windows, a fresh array.

        index: positions of windows within the split, an integer array or a slice; None for all of them.
        """
        rows = self._starts(split, index)[:, None] + np.arange(self.lookback)  # (n, lookback)
        return self.values[rows].astype(dtype, copy=False)

    def targets(self, split: str, index=None, dtype="float64") -> np.ndarray:
        """(n, horizon) scaled target of each window on lead days 1..horizon after its last row; a fresh array."""
        actual = self.target_values[self.target_rows(split, index)]
        return ((actual - self.target_mean) / self.target_scale).astype(dtype, copy=False)

    @property
    def windows(self) -> dict:
        """{split: mapping of "dates" (n,), "actual" (n, horizon), "persistence" (n, horizon)}, built on access."""
        return {split: _SplitWindows(self, split) for split in self.starts}

    # whole splits, materialised on every access: a copy each time, (n, lookback, F) for x_*
    x_train = property(lambda self: self.inputs("train"))
    y_train = property(lambda self: self.targets("train"))
    x_val = property(lambda self: self.inputs("validation"))
    y_val = property(lambda self: self.targets("validation"))
    x_test = property(lambda self: self.inputs("test"))
    y_test = property(lambda self: self.targets("test"))
    # the day lead 1 forecasts, (n,)
    dates_train = property(lambda self: self.row_dates[self.target_rows("train")[:, 0]])
    dates_val = property(lambda self: self.row_dates[self.target_rows("validation")[:, 0]])
    dates_test = property(lambda self: self.row_dates[self.target_rows("test")[:, 0]])

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays and frames of this object (small lists and strings left out)."""
        arrays = [self.values, self.target_values, self.feature_mean, self.feature_scale, *self.starts.values()]
        return int(sum(a.nbytes for a in arrays) + self.row_dates.nbytes
                   + self.train_frame.memory_usage(index=True, deep=True).sum())

    def inverse_target(self, y_scaled) -> np.ndarray:
        """Scaled target values -> original units."""
        return np.asarray(y_scaled, dtype=np.float64) * self.target_scale + self.target_mean

    def scale_features(self, values) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.feature_mean) / self.feature_scale

    def scaler_stats(self) -> dict:
        return {"feature_mean": self.feature_mean.tolist(), "feature_scale": self.feature_scale.tolist(),
                "target_mean": float(self.target_mean), "target_scale": float(self.target_scale)}

    def settings(self):
        """The data settings these windows were prepared with, as a ``rnnlab.config.DataSettings``."""
        from rnnlab.config import DataSettings  # imported here: config imports the models, windows need not

        return DataSettings(target=self.target, features=tuple(self.features), lookback=self.lookback,
                            horizon=self.horizon, splits=tuple(self.splits), calibration=self.calibration)


def _check_int(name, value, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum or (
            maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise SettingError(f"{name} must be a whole number of at least {minimum}{upper}, got {value!r}.")


def _window_starts(day_index, start, stop, lookback, horizon):
    """Start rows of the gap-free windows inside rows start..stop−1, and how many a gap dropped.

    day_index: (rows,) integer steps since the first date. A window and its lead days 1..horizon are
    gap-free when their rows span exactly as many days as rows.
    """
    count = stop - start - lookback - horizon + 1
    starts = np.arange(start, start + max(count, 0))
    gap_free = day_index[starts + lookback - 1 + horizon] - day_index[starts] == lookback - 1 + horizon
    return starts[gap_free], int((~gap_free).sum())


def prepare(table: LoadedTable, target: str | None = None, features=None, lookback: int = 7, horizon: int = 1,
            splits=(0.6, 0.15), scaler_stats: dict | None = None, calibration: float = 0.1,
            split_rows=None) -> PreparedData:
    """Scaled, gap-free windows split chronologically into train / validation / calibration / test.

    features: column names, or None for every numeric column that neither leaks the target nor is
    constant (those left out are named in ``warnings``); a chosen column that leaks or is constant
    is refused.
    splits: (train share, validation share); calibration: the share after validation that
    calibrates the intervals (0: none); the test share is the rest.
    split_rows: (validation start, calibration start, test start, test end) as row positions,
    instead of the shares (the rolling-origin backtest uses it); rows from test end on are unused.
    scaler_stats: reuse saved scaler statistics (from a weights file) instead of fitting new ones.
    Windows with a lead day whose target was filled in from the previous day are left out of every
    split: they would be trained on and scored as if observed.
    """
    frame = table.frame
    target = target or default_target(table)
    columns = list(frame.columns)
    if target not in columns:
        raise TargetMissingError(
            f"The target column '{target}' is not in the data; numeric columns are: {', '.join(columns)}."
        )
    _check_int("lookback", lookback, 1, 365)
    _check_int("horizon", horizon, 1, 365)
    train_share, val_share = (float(s) for s in splits)
    calibration = float(calibration)
    if not (0 < train_share < 1 and 0 < val_share < 1 and 0 <= calibration < 1
            and train_share + val_share + calibration < 1):
        raise SettingError(f"Split shares must be positive and leave room for a test split, got {splits!r} "
                           f"with calibration {calibration!r}.")

    # constant after forward fill counts: a flag set on a few days and empty elsewhere ends up all one value
    constant = [c for c in columns if frame[c].nunique() <= 1]
    if target in constant:
        raise ConstantColumnError(
            f"The target '{target}' has the same value on every row, so there is nothing to forecast: choose another column."
        )
    warnings = []
    leaks = find_leaks(table, target, horizon, lookback)
    if features is None:
        features = [c for c in columns if c not in leaks and c not in constant]
        if leaks:
            warnings.append(
                f"Left out {', '.join(leaks)}: it repeats '{target}' from a later day, so feeding it would leak the answer."
            )
        if constant:
            warnings.append(
                f"Left out {', '.join(constant)}: it has the same value on every row (after filling empty cells "
                "from the previous day), so it carries nothing to learn."
            )
    else:
        features = list(dict.fromkeys(features))
        unknown = [f for f in features if f not in columns]
        if unknown:
            raise TargetMissingError(
                f"Feature column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} not in the data; "
                f"numeric columns are: {', '.join(columns)}."
            )
        leaking = [f for f in features if f in leaks]
        if leaking:
            raise LeakError(
                f"'{leaking[0]}' equals '{target}' shifted into the future, so it would leak the answer: remove it from the features."
            )
        chosen_constant = [f for f in features if f in constant]
        if chosen_constant:
            raise ConstantColumnError(
                f"Column '{chosen_constant[0]}' has the same value on every row, so it carries nothing to learn: leave it out."
            )
    if not features:
        raise NoNumericFeaturesError("No features are left to learn from: choose at least one numeric column.")

    rows = len(frame)
    if split_rows is None:
        shares = np.cumsum([train_share, val_share, calibration])
        bounds = [0, *(int(round(rows * share)) for share in shares), rows]
    else:
        bounds = [0, *(int(row) for row in split_rows)]
        if len(bounds) != 5 or not all(a <= b for a, b in zip(bounds, bounds[1:])) or bounds[-1] > rows:
            raise SettingError(f"split_rows must be four increasing row positions up to {rows}, got {split_rows!r}.")
    # (name, first row, end row) of every split in use: the calibration block only when it has rows
    blocks = [(name, start, stop) for name, start, stop in zip(SPLIT_NAMES, bounds[:-1], bounds[1:])
              if name != "calibration" or stop > start]
    needed = lookback + horizon
    for name, start, stop in blocks:
        if stop - start < needed:
            raise TooFewRowsError(
                f"The {name} split has {stop - start} rows but lookback {lookback} + horizon {horizon} needs "
                f"at least {needed}: use a shorter lookback or a longer data set."
            )

    # its own copy of only the columns used, so that holding a prepared set does not hold the whole table
    train_frame = frame[list(dict.fromkeys(features + [target]))].iloc[bounds[0] : bounds[1]].copy()
    if scaler_stats is None:
        feature_scaler = StandardScaler().fit(train_frame[features].to_numpy())
        target_scaler = StandardScaler().fit(train_frame[[target]].to_numpy())
        feature_mean, feature_scale = feature_scaler.mean_, feature_scaler.scale_
        target_mean, target_scale = float(target_scaler.mean_[0]), float(target_scaler.scale_[0])
    else:
        feature_mean = np.asarray(scaler_stats["feature_mean"], dtype=np.float64)
        feature_scale = np.asarray(scaler_stats["feature_scale"], dtype=np.float64)
        target_mean, target_scale = float(scaler_stats["target_mean"]), float(scaler_stats["target_scale"])
        if feature_mean.shape != (len(features),):
            raise SettingError(f"The saved scaler covers {feature_mean.size} features but {len(features)} were chosen.")

    values = (frame[features].to_numpy() - feature_mean) / feature_scale
    day_index = ((frame.index - frame.index[0]) / table.step).to_numpy().round().astype(np.int64)
    target_filled = table.filled_mask[target].to_numpy()

    starts, dropped, imputed = {}, {}, {}
    for name, start, stop in blocks:
        split_starts, dropped[name] = _window_starts(day_index, start, stop, lookback, horizon)
        if len(split_starts) == 0:
            raise TooFewRowsError(
                f"The {name} split has no window of {lookback} {_steps(table)} without a gap in the dates: "
                "use a shorter lookback."
            )
        lead_rows = split_starts[:, None] + (lookback + np.arange(horizon))  # (n, horizon)
        observed = ~target_filled[lead_rows].any(axis=1)
        imputed[name] = int((~observed).sum())
        starts[name] = split_starts[observed]
        if len(starts[name]) == 0:
            raise TooFewRowsError(
                f"Every window of the {name} split forecasts a day whose '{target}' was filled in, not observed: "
                "add the missing values or use a longer data set."
            )
    notes = list(table.notes)
    if sum(dropped.values()):
        notes.append(f"Dropped {sum(dropped.values()):,} windows that would span a gap in the dates.")
    if sum(imputed.values()) and horizon > 1:
        notes.append(f"Left out {sum(imputed.values()):,} windows with a '{target}' filled in, not observed, on one "
                     f"of their {horizon} lead days.")
    elif sum(imputed.values()):
        notes.append(f"Left out {sum(imputed.values()):,} windows whose target on that day was filled in, not observed.")
    return PreparedData(target, features, lookback, horizon, (train_share, val_share), np.asarray(feature_mean),
                        np.asarray(feature_scale), target_mean, target_scale, values, frame[target].to_numpy().copy(),
                        frame.index, starts, train_frame, warnings, notes, dropped, imputed, table.sha256,
                        table.source_name, calibration)


def _steps(table) -> str:
    """The table's step in words, plural: days, hours, 10-minute steps, months."""
    unit = getattr(table, "step_unit", "day")
    return {"day": "days", "hour": "hours", "10 minutes": "10-minute steps", "month": "months"}.get(unit, "steps")


def last_rows(table: LoadedTable, features, lookback: int, horizon: int) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """The table's last ``lookback`` rows of ``features`` in original units, (lookback, F), and the
    ``horizon`` days after its last date, (horizon,), that a window of them forecasts.

    Raises DataError (one sentence) when those rows span a gap in the dates or hold a value that was
    filled in rather than observed: a forecast from them would rest on made-up inputs.
    """
    frame = table.frame
    tail = frame.iloc[-lookback:]
    last = tail.index[-1]
    if len(tail) < lookback:
        raise DataError(f"The data has {len(tail)} rows but a forecast needs the last {lookback}: use a longer file.")
    if round((last - tail.index[0]) / table.step) != lookback - 1:
        raise DataError(f"The last {lookback} rows (up to {last.date()}) span a gap in the dates, so there is no "
                        f"complete window to forecast from: add the missing days.")
    columns = list(dict.fromkeys(features))
    filled = table.filled_mask[columns].iloc[-lookback:].to_numpy()
    if filled.any():
        row = int(np.flatnonzero(filled.any(axis=1))[-1])
        names = ", ".join(np.asarray(columns)[filled[row]])
        raise DataError(f"The last {lookback} rows have missing values ({names} on {tail.index[row].date()}, filled "
                        f"in from the day before), so a forecast would rest on made-up inputs: add the missing values.")
    if getattr(table, "step_unit", "day") == "month":  # calendar months, not 30.44-day steps
        dates = pd.DatetimeIndex([last + pd.DateOffset(months=lead) for lead in range(1, horizon + 1)])
    else:
        dates = pd.DatetimeIndex([last + lead * table.step for lead in range(1, horizon + 1)])
    return tail[list(features)].to_numpy(), dates


def latest_window(table: LoadedTable, prepared: PreparedData) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """The table's last ``lookback`` rows as one scaled window (1, lookback, F) and the horizon days
    after its last date, (horizon,); raises DataError as :func:`last_rows` does."""
    values, dates = last_rows(table, prepared.features, prepared.lookback, prepared.horizon)
    return prepared.scale_features(values)[None], dates

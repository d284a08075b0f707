"""From a loaded table to model inputs: target and features, leak guard, chronological split,
scalers fitted on the training rows only, gap-free windows.

    prepared = prepare(table, target="temp_max", lookback=7, horizon=1)
    prepared.x_train   # (n_train, lookback, n_features) scaled inputs
    prepared.y_train   # (n_train,) scaled target, `horizon` steps after each window's last row
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.preprocessing import StandardScaler

from rnnlab.errors import (ConstantColumnError, LeakError, NoNumericFeaturesError, SettingError, TargetMissingError,
                           TooFewRowsError)
from rnnlab.tables import LoadedTable, default_target

SPLIT_NAMES = ("train", "validation", "test")
# a column that matches the target shifted into the future on this share of rows is a leak
_LEAK_AGREEMENT = 0.95


def find_leaks(table: LoadedTable, target: str, horizon: int) -> list[str]:
    """Columns that equal the target shifted 1..horizon rows into the future: they give the answer away."""
    frame = table.frame
    target_values = frame[target].to_numpy()
    leaks = []
    for column in frame.columns:
        if column == target:
            continue
        values = frame[column].to_numpy()
        for shift in range(1, horizon + 1):
            if len(values) <= shift:
                break
            agree = np.isclose(values[:-shift], target_values[shift:], rtol=1e-6, atol=1e-9).mean()
            if agree >= _LEAK_AGREEMENT:
                leaks.append(column)
                break
    return leaks


@dataclass
class PreparedData:
    """Windows and everything needed to map predictions back to dates and units.

    x_*: (n, lookback, n_features) scaled; y_*: (n,) scaled target; dates_*: (n,) target dates;
    actual_*: (n,) target in original units; persistence_*: (n,) the target on each window's last
    row (the "same as today" forecast), original units.
    """

    target: str
    features: list[str]
    lookback: int
    horizon: int
    splits: tuple[float, float]
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    target_mean: float
    target_scale: float
    windows: dict  # split name -> dict(x, y, dates, actual, persistence)
    train_frame: pd.DataFrame  # the training rows, original units (for climatology)
    warnings: list[str]
    notes: list[str]
    dropped_windows: dict  # split name -> windows dropped because they span a gap
    source_sha256: str = ""
    source_name: str = ""

    def _get(self, split, key):
        return self.windows[split][key]

    x_train = property(lambda self: self._get("train", "x"))
    y_train = property(lambda self: self._get("train", "y"))
    x_val = property(lambda self: self._get("validation", "x"))
    y_val = property(lambda self: self._get("validation", "y"))
    x_test = property(lambda self: self._get("test", "x"))
    y_test = property(lambda self: self._get("test", "y"))
    dates_train = property(lambda self: self._get("train", "dates"))
    dates_val = property(lambda self: self._get("validation", "dates"))
    dates_test = property(lambda self: self._get("test", "dates"))

    @property
    def n_features(self) -> int:
        return len(self.features)

    def inverse_target(self, y_scaled) -> np.ndarray:
        """Scaled target values -> original units."""
        return np.asarray(y_scaled, dtype=np.float64) * self.target_scale + self.target_mean

    def scale_features(self, values) -> np.ndarray:
        return (np.asarray(values, dtype=np.float64) - self.feature_mean) / self.feature_scale

    def scaler_stats(self) -> dict:
        return {"feature_mean": self.feature_mean.tolist(), "feature_scale": self.feature_scale.tolist(),
                "target_mean": float(self.target_mean), "target_scale": float(self.target_scale)}


def _check_int(name, value, minimum, maximum=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum or (
            maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise SettingError(f"{name} must be a whole number of at least {minimum}{upper}, got {value!r}.")


def _segment_windows(values, target, day_index, lookback, horizon):
    """Gap-free windows inside one contiguous block of rows.

    values: (rows, F); target: (rows,); day_index: (rows,) integer step counts since the start.
    Returns x (n, lookback, F), y (n,), last-row positions (n,), and how many windows a gap dropped.
    """
    rows = len(values)
    count = rows - lookback - horizon + 1
    if count <= 0:
        return None
    starts = np.arange(count)
    ends = starts + lookback - 1
    # a window (and its step to the target) is gap-free when its rows span exactly as many days
    gap_free = day_index[ends + horizon] - day_index[starts] == lookback - 1 + horizon
    windows = sliding_window_view(values[: rows - horizon], lookback, axis=0)  # (count, F, lookback)
    x = np.ascontiguousarray(windows.transpose(0, 2, 1)[gap_free])
    return x, target[ends[gap_free] + horizon], ends[gap_free], int((~gap_free).sum())


def prepare(table: LoadedTable, target: str | None = None, features=None, lookback: int = 7, horizon: int = 1,
            splits=(0.7, 0.15), scaler_stats: dict | None = None) -> PreparedData:
    """Scaled, gap-free windows split chronologically into train / validation / test.

    features: column names, or None for every numeric column except leaks of the target.
    splits: (train share, validation share); the test share is the rest.
    scaler_stats: reuse saved scaler statistics (from a weights file) instead of fitting new ones.
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
    if not (0 < train_share < 1 and 0 < val_share < 1 and train_share + val_share < 1):
        raise SettingError(f"Split shares must be positive and leave room for a test split, got {splits!r}.")

    warnings = []
    leaks = find_leaks(table, target, horizon)
    if features is None:
        features = [c for c in columns if c not in leaks]
        if leaks:
            warnings.append(
                f"Left out {', '.join(leaks)}: it repeats '{target}' from a later day, so feeding it would leak the answer."
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
    if not features:
        raise NoNumericFeaturesError("No features are left to learn from: choose at least one numeric column.")
    constant = [c for c in dict.fromkeys(features + [target]) if frame[c].nunique() <= 1]
    if constant:
        raise ConstantColumnError(
            f"Column '{constant[0]}' has the same value on every row, so it carries nothing to learn: leave it out."
        )

    rows = len(frame)
    bounds = [0, int(round(rows * train_share)), int(round(rows * (train_share + val_share))), rows]
    needed = lookback + horizon
    for name, start, stop in zip(SPLIT_NAMES, bounds[:-1], bounds[1:]):
        if stop - start < needed:
            raise TooFewRowsError(
                f"The {name} split has {stop - start} rows but lookback {lookback} + horizon {horizon} needs "
                f"at least {needed}: use a shorter lookback or a longer data set."
            )

    train_frame = frame.iloc[bounds[0] : bounds[1]]
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
    target_raw = frame[target].to_numpy()
    target_scaled = (target_raw - target_mean) / target_scale
    day_index = ((frame.index - frame.index[0]) / table.step).to_numpy().round().astype(np.int64)

    windows, dropped = {}, {}
    for name, start, stop in zip(SPLIT_NAMES, bounds[:-1], bounds[1:]):
        segment = _segment_windows(values[start:stop], target_scaled[start:stop], day_index[start:stop],
                                   lookback, horizon)
        x, y, last_rows, n_dropped = segment
        if len(x) == 0:
            raise TooFewRowsError(
                f"The {name} split has no window of {lookback} days without a gap in the dates: use a shorter lookback."
            )
        last_rows = last_rows + start
        windows[name] = {
            "x": x,
            "y": y,
            "dates": frame.index[last_rows + horizon],
            "actual": target_raw[last_rows + horizon],
            "persistence": target_raw[last_rows],
        }
        dropped[name] = n_dropped
    notes = list(table.notes)
    if sum(dropped.values()):
        notes.append(f"Dropped {sum(dropped.values()):,} windows that would span a gap in the dates.")
    return PreparedData(target, features, lookback, horizon, (train_share, val_share), np.asarray(feature_mean),
                        np.asarray(feature_scale), target_mean, target_scale, windows, train_frame, warnings,
                        notes, dropped, table.sha256, table.source_name)


def latest_window(table: LoadedTable, prepared: PreparedData) -> tuple[np.ndarray, pd.Timestamp] | None:
    """The last `lookback` rows as one scaled window (1, lookback, F) and the date it forecasts, if gap-free."""
    frame = table.frame
    tail = frame.iloc[-prepared.lookback :]
    span = (tail.index[-1] - tail.index[0]) / table.step
    if len(tail) < prepared.lookback or round(span) != prepared.lookback - 1:
        return None
    x = prepared.scale_features(tail[prepared.features].to_numpy())[None]
    return x, tail.index[-1] + prepared.horizon * table.step

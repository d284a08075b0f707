"""From a weather CSV on disk to scaled windows for training: the one place that does it.

``load_csv`` reads any daily table (finds its date column, sorts, forward-fills, counts what it
did); ``prepare`` picks the target and features, guards against leaks, splits chronologically,
fits scalers on the training rows only and cuts gap-free windows:

    table = load_csv("data/seattle_weather.csv")
    prepared = prepare(table, target="temp_max", lookback=7, horizon=1)
    prepared.x_train   # (n_train, lookback, n_features) scaled inputs
    prepared.y_train   # (n_train,) scaled target, `horizon` steps after each window's last row

Every problem with the data raises a :class:`DataError` (a ``ValueError``) whose message is one
sentence saying what is wrong and what to do.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.preprocessing import StandardScaler

DEFAULT_DATA_PATH = Path(__file__).resolve().parents[1] / "data" / "seattle_weather.csv"
SPLIT_NAMES = ("train", "validation", "test")
_DATE_NAMES = ("date", "datetime", "time", "timestamp", "day")
# a column that matches the target shifted into the future on this share of rows is a leak
_LEAK_AGREEMENT = 0.95


class DataError(ValueError):
    """The data cannot be used as it is; the message says why and what to do."""


class NotACSVError(DataError):
    pass


class NoDateColumnError(DataError):
    pass


class DuplicateDatesError(DataError):
    pass


class NoNumericFeaturesError(DataError):
    pass


class TargetMissingError(DataError):
    pass


class ConstantColumnError(DataError):
    pass


class TooFewRowsError(DataError):
    pass


class NonFiniteValuesError(DataError):
    pass


class LeakError(DataError):
    pass


class SettingError(DataError):
    """A setting (lookback, horizon, split shares, features) that cannot work."""


@dataclass
class LoadedTable:
    """A daily table ready for ``prepare``.

    frame: numeric columns only, float64, indexed by a sorted, unique DatetimeIndex named "date".
    """

    frame: pd.DataFrame
    source_name: str
    sha256: str
    date_column: str
    ignored_columns: list[str]
    filled: dict[str, int]
    dropped_rows: int
    gaps: list[tuple[pd.Timestamp, pd.Timestamp, int]]  # (last date before, first date after, missing steps)
    step: pd.Timedelta
    notes: list[str] = field(default_factory=list)

    @property
    def numeric_columns(self) -> list[str]:
        return list(self.frame.columns)

    @property
    def n_filled(self) -> int:
        return int(sum(self.filled.values()))

    def summary(self) -> dict:
        """Plain facts for a preview: rows, date range, columns, what was filled or dropped."""
        return {
            "rows": len(self.frame),
            "first_date": self.frame.index[0].date().isoformat(),
            "last_date": self.frame.index[-1].date().isoformat(),
            "numeric_columns": self.numeric_columns,
            "ignored_columns": self.ignored_columns,
            "values_filled": self.n_filled,
            "rows_dropped": self.dropped_rows,
            "gaps": len(self.gaps),
            "missing_days": int(sum(g[2] for g in self.gaps)),
        }


def _read_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "uploaded data"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise NotACSVError(f"There is no file at {path}: check the path.")
        return path.read_bytes(), path.name
    if hasattr(source, "read"):
        raw = source.read()
        name = getattr(source, "name", "uploaded data")
        return (raw.encode() if isinstance(raw, str) else bytes(raw)), str(name)
    raise NotACSVError(f"Cannot read data from a {type(source).__name__}: give a path or the file's bytes.")


def _find_date_column(raw: pd.DataFrame) -> tuple[str, pd.Series]:
    """The column holding dates: a named date/time column first, else an unnamed or first column."""
    named = [c for c in raw.columns if str(c).strip().lower() in _DATE_NAMES]
    unnamed = [c for c in raw.columns if str(c).startswith("Unnamed: ") or str(c).strip() == ""]
    others = [c for c in raw.columns if c not in named and c not in unnamed]
    for column in named + unnamed + others[:1]:
        values = raw[column]
        if pd.api.types.is_numeric_dtype(values) and column not in named:
            continue  # plain numbers are not dates unless the column says so
        parsed = pd.to_datetime(values.astype(str), errors="coerce", format="mixed")
        if parsed.notna().mean() >= 0.9:
            return column, parsed
    raise NoDateColumnError(
        "No date column found: name one column 'date' (or put the dates, like 2015-12-31, in the first column)."
    )


def _read_table(text: str, source_name: str) -> pd.DataFrame:
    """Parse CSV text with a comma, or with ';' or a tab when the header uses them (spreadsheet exports).

    A row with more values than the header has columns is an error: pandas would silently drop
    the extra values.
    """
    header = text.split("\n", 1)[0]
    separators = [","] + [s for s in (";", "\t") if s in header]
    narrow, reason = None, "unreadable"
    for separator in separators:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", pd.errors.ParserWarning)
                raw = pd.read_csv(io.StringIO(text), sep=separator, index_col=False, skipinitialspace=True)
        except pd.errors.ParserWarning:
            reason = "some rows have more values than the header has columns"
            continue
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, TypeError) as error:
            ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
            if ragged:
                expected, line, seen = ragged.groups()
                reason = f"line {line} has {seen} values but the header has {expected} columns"
            else:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
            continue
        if raw.shape[1] >= 2:
            return raw
        narrow = raw
    if narrow is not None:
        return narrow  # one column: refused below with a sentence saying what a table needs
    raise NotACSVError(f"{source_name} could not be read as a CSV ({reason}).")


def load_csv(source, name: str | None = None) -> LoadedTable:
    """Read a daily table from a path, a file-like object or bytes. Raises DataError."""
    raw_bytes, source_name = _read_bytes(source)
    source_name = name or source_name
    if not raw_bytes.strip():
        raise NotACSVError(f"{source_name} is empty: choose a CSV file with a header row and one row per day.")
    if raw_bytes[:4] == b"PK\x03\x04":
        raise NotACSVError(f"{source_name} is an Excel workbook or a zip archive, not a CSV: save it as CSV first.")
    if b"\x00" in raw_bytes[:4096]:
        raise NotACSVError(f"{source_name} is a binary file, not a text CSV.")
    try:
        text = raw_bytes.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw_bytes.decode("latin-1")  # older exports; every byte sequence decodes
        notes_from_reading = ["Read the file as Latin-1 text (it is not UTF-8)."]
    else:
        notes_from_reading = []
    raw = _read_table(text, source_name)
    if raw.shape[1] < 2 or len(raw) == 0:
        raise NotACSVError(
            f"{source_name} does not look like a CSV table: it needs a header row, a date column and at least one numeric column."
        )

    date_column, dates = _find_date_column(raw)
    notes = notes_from_reading
    bad_dates = int(dates.isna().sum())
    if bad_dates:
        notes.append(f"Dropped {bad_dates} rows whose date could not be read.")
    frame = raw.drop(columns=[date_column]).loc[dates.notna()]
    frame.index = pd.DatetimeIndex(dates[dates.notna()]).normalize()
    frame.index.name = "date"

    duplicated = frame.index[frame.index.duplicated()]
    if len(duplicated):
        raise DuplicateDatesError(
            f"The date {duplicated[0].date()} appears more than once ({len(duplicated)} repeated dates): keep one row per day."
        )
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index()
        notes.append("Rows were not in date order; sorted them by date.")

    numeric, ignored = [], []
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            ignored.append(str(column))
        else:
            numeric.append(column)
    if ignored:
        notes.append(f"Ignored non-numeric column{'s' if len(ignored) > 1 else ''}: {', '.join(ignored)}.")
    if not numeric:
        raise NoNumericFeaturesError(f"{source_name} has no numeric columns to learn from (only {', '.join(ignored)}).")
    frame = frame[numeric].astype("float64")
    frame.columns = [str(c) for c in frame.columns]
    empty = [c for c in frame.columns if frame[c].isna().all()]
    if empty:
        frame = frame.drop(columns=empty)
        notes.append(f"Ignored empty column{'s' if len(empty) > 1 else ''}: {', '.join(empty)}.")
        if frame.shape[1] == 0:
            raise NoNumericFeaturesError(f"{source_name} has no numeric values to learn from: every numeric column is empty.")

    infinite = np.isinf(frame.to_numpy())
    if infinite.any():
        row, col = np.argwhere(infinite)[0]
        raise NonFiniteValuesError(
            f"Column '{frame.columns[col]}' holds an infinite value on {frame.index[row].date()}: "
            "replace it with a real number or leave the cell empty."
        )

    missing = frame.isna().sum()
    filled = {c: int(n) for c, n in missing.items() if n}
    frame = frame.ffill()
    still_missing = frame.isna().any(axis=1)
    dropped = int(still_missing.sum())
    # forward fill cannot reach the first rows; those cells were dropped, not filled
    if dropped:
        for c in filled:
            filled[c] -= int(frame[c].isna().sum())
        filled = {c: n for c, n in filled.items() if n}
        frame = frame.loc[~still_missing]
        notes.append(f"Dropped {dropped} leading rows with values missing before the first observation.")
    if filled:
        details = ", ".join(f"{n} in {c}" for c, n in filled.items())
        notes.append(f"Filled {sum(filled.values())} missing values from the previous day ({details}).")
    if len(frame) < 2:
        raise TooFewRowsError(f"{source_name} has fewer than two usable rows.")

    # the data's own step (a day for daily data); a larger jump is a gap
    differences = np.diff(frame.index.values)
    step = pd.Timedelta(pd.Series(differences).mode().iloc[0])
    gaps = []
    for position in np.flatnonzero(differences > step.to_timedelta64()):
        before, after = frame.index[position], frame.index[position + 1]
        gaps.append((before, after, int((after - before) / step) - 1))
    if gaps:
        largest = max(gaps, key=lambda g: g[2])
        notes.append(
            f"{len(gaps)} gap{'s' if len(gaps) > 1 else ''} in the dates ({sum(g[2] for g in gaps):,} missing days; "
            f"the largest, {largest[2]:,} days after {largest[0].date()}); no window spans a gap."
        )
    return LoadedTable(frame, source_name, hashlib.sha256(raw_bytes).hexdigest(), str(date_column), ignored,
                       filled, dropped + bad_dates, gaps, step, notes)


# units of the columns of the two data sets this project knows (data/README.md, shared/data/README.md)
KNOWN_UNITS = {"temp_max": "°C", "temp_min": "°C", "precipitation": "mm", "wind": "m/s",
               "tmax": "°F", "tmin": "°F", "rain": "in", "tmax_tomorrow": "°F"}


def unit_of(column: str) -> str:
    """The unit of a known column ('' when unknown), for axis titles."""
    return KNOWN_UNITS.get(column, "")


def default_target(table: LoadedTable) -> str:
    """The usual target: a daily maximum temperature if there is one, else the first numeric column."""
    for name in ("temp_max", "tmax", "TMAX", "max_temp", "temperature"):
        if name in table.frame.columns:
            return name
    return table.frame.columns[0]


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

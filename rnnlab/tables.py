"""Reading weather tables: from the bytes of a CSV to a clean, dated, numeric table.

``load_csv`` reads any daily table (finds its date column, sorts, forward-fills, counts what it
did). Turning a table into model inputs is :mod:`rnnlab.windows`' job.

    table = load_csv("data/seattle_weather.csv")
    table.frame        # numeric columns, float64, indexed by date

Every problem with the data raises a :class:`~rnnlab.errors.DataError` whose message is one
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

from rnnlab.errors import (DateFormatError, DuplicateDatesError, NoDateColumnError, NonFiniteValuesError, NoNumericFeaturesError,
                           NotACSVError, TooFewRowsError)

DEFAULT_DATA_PATH = Path(__file__).resolve().parents[1] / "data" / "seattle_weather.csv"
_DATE_NAMES = ("date", "datetime", "time", "timestamp", "day")


@dataclass
class LoadedTable:
    """A daily table ready for ``prepare``.

    frame: numeric columns only, float64, indexed by a sorted, unique DatetimeIndex named "date".
    filled_mask: (rows, columns) bool, same index and columns as ``frame``: True where the cell was
        empty in the file and holds the previous day's value (not an observation).
    date_format: how the date column was read, as the user is told it, e.g. "DD/MM/YYYY".
    filled: per column, how many cells were filled (the column sums of ``filled_mask``).
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
    filled_mask: pd.DataFrame
    date_format: str
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


# Candidate date formats as (what the user is told, the strptime format pandas parses with). A column
# must fit ONE of them on every cell: pandas' format="mixed" reads each cell alone, so 02/01/2020 would
# become 1 February while 13/01/2020 became 13 January. The order is the preference when several fit
# every cell, which happens only when no day is above 12: ISO first, then month-first like pandas and
# like the US exports (NOAA, °F) this project's data come from; the note on the table says which was
# read, so a day-first user sees the guess. To read another form (compact YYYYMMDD, UTC offsets), add
# a row here.
_DATE_ORDERS = (("YYYY{s}MM{s}DD", "%Y{s}%m{s}%d"), ("MM{s}DD{s}YYYY", "%m{s}%d{s}%Y"),
                ("DD{s}MM{s}YYYY", "%d{s}%m{s}%Y"))
_DATE_SEPARATORS = ("-", "/", ".")
_TIME_PARTS = (("", ""), (" HH:MM", " %H:%M"), (" HH:MM:SS", " %H:%M:%S"), ("THH:MM", "T%H:%M"),
               ("THH:MM:SS", "T%H:%M:%S"))
DATE_FORMATS: tuple[tuple[str, str], ...] = tuple(
    (label.format(s=sep) + time_label, strptime.format(s=sep) + time_format)
    for time_label, time_format in _TIME_PARTS for label, strptime in _DATE_ORDERS for sep in _DATE_SEPARATORS
)
_SAMPLE = 20  # cells tried against every candidate before parsing the whole column with the ones that fit


@dataclass
class _DateReading:
    """How one column's dates were read. parsed: (rows,) datetimes, NaT where the cell was blank."""

    column: object  # as pandas named it in the raw table
    parsed: pd.Series
    label: str  # e.g. "DD/MM/YYYY"
    format: str  # e.g. "%d/%m/%Y"
    also_fits: list[str]  # other formats that read every cell too (the choice was a guess)


def _read_dates(column, values: pd.Series) -> _DateReading | None:
    """Read a column with the one candidate format that fits every non-blank cell.

    None when the column does not hold dates (fewer than 90% of its cells fit any candidate);
    DataError when it holds dates but no single format fits them all.
    """
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    cells = text[present]
    if cells.empty:
        return None
    # grow the set of fitting candidates from samples of the cells no candidate has read yet, so that a
    # column mixing two formats is seen as such without parsing it once per candidate
    parsed, unread = {}, cells
    while len(unread):
        sample = unread.iloc[:_SAMPLE]
        new = [(label, fmt) for label, fmt in DATE_FORMATS if label not in parsed
               and pd.to_datetime(sample, format=fmt, errors="coerce").notna().any()]
        if not new:
            break
        for label, fmt in new:
            parsed[label] = (fmt, pd.to_datetime(cells, format=fmt, errors="coerce"))
        read = np.logical_or.reduce([dates.notna().to_numpy() for _, dates in parsed.values()])
        unread = cells[~read]
    if not parsed or len(unread) > 0.1 * len(cells):
        return None
    fitting = [label for label, (_, dates) in parsed.items() if dates.notna().all()]
    if not fitting:
        best = max(parsed, key=lambda label: parsed[label][1].notna().sum())
        offending = cells[parsed[best][1].isna()].iloc[0]
        raise DateFormatError(
            f"The dates in column '{column}' do not share one format: '{offending}' does not fit {best} like the "
            f"others, so write every date the same way (YYYY-MM-DD is safest)."
        )
    label = fitting[0]  # DATE_FORMATS is in order of preference
    fmt, dates = parsed[label]
    return _DateReading(column, dates.reindex(values.index), label, fmt, fitting[1:])


def _find_date_column(raw: pd.DataFrame) -> _DateReading:
    """The column holding dates: a named date/time column first, else an unnamed or first column."""
    named = [c for c in raw.columns if str(c).strip().lower() in _DATE_NAMES]
    unnamed = [c for c in raw.columns if str(c).startswith("Unnamed: ") or str(c).strip() == ""]
    others = [c for c in raw.columns if c not in named and c not in unnamed]
    for column in named + unnamed + others[:1]:
        values = raw[column]
        if pd.api.types.is_numeric_dtype(values) and column not in named:
            continue  # plain numbers are not dates unless the column says so
        reading = _read_dates(column, values)
        if reading is not None:
            return reading
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

    reading = _find_date_column(raw)
    dates = reading.parsed
    notes = notes_from_reading
    if reading.also_fits:
        notes.append(f"Read dates as {reading.label}; no day or month is above 12, so {' or '.join(reading.also_fits)} "
                     "would fit too: if that is how they are written, save the dates as YYYY-MM-DD.")
    else:
        notes.append(f"Read dates as {reading.label}.")
    bad_dates = int(dates.isna().sum())
    if bad_dates:
        notes.append(f"Dropped {bad_dates} row{'s' if bad_dates > 1 else ''} without a date.")
    frame = raw.drop(columns=[reading.column]).loc[dates.notna()]
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

    missing = frame.isna()
    frame = frame.ffill()
    still_missing = frame.isna().any(axis=1)
    dropped = int(still_missing.sum())
    # forward fill cannot reach the first rows; those cells were dropped, not filled
    if dropped:
        frame = frame.loc[~still_missing]
        notes.append(f"Dropped {dropped} leading rows with values missing before the first observation.")
    filled_mask = missing.loc[frame.index]
    filled = {c: int(n) for c, n in filled_mask.sum().items() if n}
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
    return LoadedTable(frame, source_name, hashlib.sha256(raw_bytes).hexdigest(), str(reading.column), ignored,
                       filled, dropped + bad_dates, gaps, step, filled_mask, reading.label, notes)


def default_target(table: LoadedTable) -> str:
    """The usual target: a daily maximum temperature if there is one, else the first numeric column."""
    for name in ("temp_max", "tmax", "TMAX", "max_temp", "temperature"):
        if name in table.frame.columns:
            return name
    return table.frame.columns[0]

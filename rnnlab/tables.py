"""Reading weather tables: from the bytes of a file to a clean, dated, numeric table.

``load_csv`` reads the tables weather services and data portals export: a preamble before the
header (:mod:`rnnlab.sniff` finds it), comma/semicolon/tab separated or aligned with spaces, dates
in one column or split over ``year``/``month``/``day``/``hour``, missing-value markers and
sentinels (``NA``, ``---``, ``9999.9``), flags glued to values (``25.7*``), several stations in
one file, hourly or monthly rows. It sorts, aggregates sub-daily rows to days (unless asked not
to), forward-fills and says what it found. Turning a table into model inputs is
:mod:`rnnlab.windows`' job.

    table = load_csv("data/seattle_weather.csv")
    table.frame            # numeric columns, float64, indexed by date
    table.summary_lines()  # what the loader found, one line a fact
    load_csv("gsod.csv", where={"NAME": "OSLO"}, resample="none")

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

from rnnlab.errors import (DateFormatError, DuplicateDatesError, FilterError, NoDateColumnError, NonFiniteValuesError,
                           NoNumericFeaturesError, NotACSVError, SeriesChoiceError, SettingError, TooFewRowsError,
                           TooLargeError)
from rnnlab.sniff import Layout, find_layout, split_fixed_width
from rnnlab.weights_io import MAX_INPUT_SIZE

DEFAULT_DATA_PATH = Path(__file__).resolve().parents[1] / "data" / "seattle_weather.csv"
MAX_FILE_BYTES = 128 * 2**20  # the app takes 10 MB uploads; a CLI file of decades of hourly rows fits
MAX_COLUMNS = MAX_INPUT_SIZE  # a weights file holds at most this many input features
MAX_SERIES = 1000  # distinct stations/cities offered in one file
RESAMPLE_CHOICES = ("daily", "none")
_DATE_NAMES = ("date", "datetime", "time", "timestamp", "day", "yearmoda", "yyyymmdd", "valid", "dt")
# the cells services write for "no value"; compared case-insensitively after stripping spaces and quotes
MISSING_MARKERS = ("", "na", "n/a", "nan", "---", "--", "-", "null", "none", "#n/a", "missing", "m")
# numeric "no value" codes (NOAA GSOD 9999.9/999.9/99.99, others -999/-9999): missing only when far
# outside the column's other values, so a real 99.99 % humidity stays a value
SENTINELS = (9999.9, 999.9, 99.99, -999.0, -9999.0, 9999.0, -999.9, -9999.9, -99.99)
_FLAGGED = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([*#!?$]|[A-Za-z]{1,2})$")
_BOOLEANS = {"yes": 1.0, "no": 0.0, "true": 1.0, "false": 0.0}
_ROW_NUMBER_NAMES = ("no", "no.", "index", "idx", "row", "#", "id", "n", "")
_SERIES_NAMES = ("name", "station_name", "location", "city", "site", "station", "station_id", "stationid", "stn",
                 "place", "region", "country", "state", "usaf", "wban", "id")
_DATE_PARTS = {"year": ("year", "yyyy", "yr"), "month": ("month", "mm", "mo", "mon"),
               "day": ("day", "dd", "dy", "da"), "hour": ("hour", "hh", "hr")}
_OFFSET = r"^(.*\d:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(Z|UTC|GMT|[+-]\d{2}:?\d{2})$"


@dataclass
class LoadReport:
    """What the loader found and did, for the summary a user checks at a glance.

    header_line: 1-based line of the header; preamble_lines: lines skipped before it.
    markers: {column: {marker as written: count}} cells read as missing (sentinels included).
    flags: {column: {flag: count}} letters or symbols stripped from values.
    ignored: {column: why}; aggregation: {column: "mean" | "sum" | "max" | "min"} when sub-daily rows
    were aggregated to days, else empty.
    """

    header_line: int = 1
    preamble_lines: int = 0
    delimiter: str = "comma"
    units_row: bool = False
    date_columns: list[str] = field(default_factory=list)
    date_format: str = ""
    date_alternatives: list[str] = field(default_factory=list)
    utc_offsets: bool = False
    native_step: str = "1 day"
    step: str = "1 day"
    series_column: str | None = None
    series_values: list[str] = field(default_factory=list)
    chosen_series: dict[str, str] = field(default_factory=dict)
    markers: dict[str, dict[str, int]] = field(default_factory=dict)
    flags: dict[str, dict[str, int]] = field(default_factory=dict)
    booleans: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    aggregation: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)
    trailing_text_rows: int = 0
    trailing_delimiter: bool = False
    sub_daily: bool = False  # rows closer than a day apart (so resampling is a choice)

    def lines(self) -> list[str]:
        out = []
        where = f"Header on line {self.header_line}"
        if self.preamble_lines:
            where += f", after {self.preamble_lines} line{_s(self.preamble_lines)} of preamble"
        if self.units_row:
            where += ", with a row of units under it"
        out.append(f"{where}; fields {'separated by ' + self.delimiter if self.delimiter != 'aligned with spaces' else 'aligned with spaces'}"
                   f"{' (each row ends with one)' if self.trailing_delimiter else ''}.")
        columns = ", ".join(self.date_columns)
        out.append(f"Dates from {'columns' if len(self.date_columns) > 1 else 'column'} {columns}, read as "
                   f"{self.date_format}{' (times converted from their UTC offsets)' if self.utc_offsets else ''}; "
                   f"one row every {self.native_step}.")
        if self.aggregation:
            by_kind = {}
            for column, how in self.aggregation.items():
                by_kind.setdefault(how, []).append(column)
            parts = "; ".join(f"{how} of {', '.join(columns)}" for how, columns in by_kind.items())
            out.append(f"Aggregated the rows (one every {self.native_step}) to one a day: {parts}.")
        if self.series_column:
            chosen = self.chosen_series.get(self.series_column)
            out.append(f"{len(self.series_values)} series in column {self.series_column} "
                       f"({_listing(self.series_values)}){f'; using {self.series_column}={chosen}' if chosen else ''}.")
        for column, value in self.chosen_series.items():
            if column != self.series_column:
                out.append(f"Kept the rows where {column}={value}.")
        if self.markers:
            out.append("Missing-value markers read as empty: " + "; ".join(
                f"{column}: {', '.join(f'{_shown(m)} ×{n:,}' for m, n in found.items())}"
                for column, found in self.markers.items()) + ".")
        if self.flags:
            out.append("Flags stripped from values: " + "; ".join(
                f"{column}: {', '.join(f'{flag} ×{n:,}' for flag, n in found.items())}"
                for column, found in self.flags.items()) + ".")
        if self.booleans:
            out.append(f"Yes/no columns read as 1/0: {', '.join(self.booleans)}.")
        if self.ignored:
            out.append("Ignored: " + ", ".join(f"{c} ({why})" for c, why in self.ignored.items()) + ".")
        if self.renamed:
            out.append("Renamed blank or repeated column names: " + ", ".join(
                f"{_shown(old)} → {new}" for new, old in self.renamed.items()) + ".")
        if self.trailing_text_rows:
            out.append(f"Ignored text after the last column on {self.trailing_text_rows:,} "
                       f"row{_s(self.trailing_text_rows)}.")
        return out


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _shown(marker: str) -> str:
    return "an empty cell" if marker == "" else f"'{marker}'"


def _listing(values, most: int = 8) -> str:
    shown = ", ".join(f"'{v}'" if "," in str(v) else str(v) for v in values[:most])
    return shown + (f" and {len(values) - most:,} more" if len(values) > most else "")


@dataclass
class LoadedTable:
    """A table ready for ``prepare``: one row a step (a day, unless kept hourly or monthly).

    frame: numeric columns only, float64, indexed by a sorted, unique DatetimeIndex named "date".
    filled_mask: (rows, columns) bool, same index and columns as ``frame``: True where the cell was
        empty in the file and holds the previous step's value (not an observation).
    date_format: how the date column was read, as the user is told it, e.g. "DD/MM/YYYY".
    filled: per column, how many cells were filled (the column sums of ``filled_mask``).
    step: the time between rows (1 day; 1 hour; ~30.44 days for monthly rows, whose dates are the
        first of each month). ``step_unit`` names it for labels ("day", "hour", "10 minutes", "month").
    report: what the loader found; ``summary_lines()`` says it in sentences.
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
    report: LoadReport = field(default_factory=LoadReport)
    step_unit: str = "day"

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
            "step_unit": self.step_unit,
        }

    def summary_lines(self) -> list[str]:
        """What the loader found (header, dates, step, series, markers, flags, ignored columns), one
        sentence each; the CLI prints them as notes and the app shows them in its Data section.
        ``notes`` says what was done to the values (filled, dropped, sorted, gaps)."""
        return self.report.lines()


def _read_bytes(source) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), "uploaded data"
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise NotACSVError(f"There is no file at {path}: check the path.")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise TooLargeError(f"{path.name} is {size / 2**20:,.0f} MiB; rnnlab reads files up to "
                                f"{MAX_FILE_BYTES // 2**20} MiB, so cut it to the years or stations you need.")
        return path.read_bytes(), path.name
    if hasattr(source, "read"):
        raw = source.read(MAX_FILE_BYTES + 1)
        name = getattr(source, "name", "uploaded data")
        return (raw.encode() if isinstance(raw, str) else bytes(raw)), str(name)
    raise NotACSVError(f"Cannot read data from a {type(source).__name__}: give a path or the file's bytes.")


# Candidate date formats as (what the user is told, the strptime format pandas parses with). A column
# must fit ONE of them on every cell: pandas' format="mixed" reads each cell alone, so 02/01/2020 would
# become 1 February while 13/01/2020 became 13 January. The order is the preference when several fit
# every cell, which happens only when no day is above 12: ISO first, then month-first like pandas and
# like the US exports (NOAA, °F) this project's data come from; the note on the table says which was
# read, so a day-first user sees the guess (and the app and ``date_format=`` can override it). UTC
# offsets after a time (+0200, Z) are split off before these are tried.
_DATE_ORDERS = (("YYYY{s}MM{s}DD", "%Y{s}%m{s}%d"), ("MM{s}DD{s}YYYY", "%m{s}%d{s}%Y"),
                ("DD{s}MM{s}YYYY", "%d{s}%m{s}%Y"))
_DATE_SEPARATORS = ("-", "/", ".")
_TIME_PARTS = (("", ""), (" HH:MM", " %H:%M"), (" HH:MM:SS", " %H:%M:%S"), ("THH:MM", "T%H:%M"),
               ("THH:MM:SS", "T%H:%M:%S"), (" HH:MM:SS.fff", " %H:%M:%S.%f"), ("THH:MM:SS.fff", "T%H:%M:%S.%f"))
DATE_FORMATS: tuple[tuple[str, str], ...] = tuple(
    (label.format(s=sep) + time_label, strptime.format(s=sep) + time_format)
    for time_label, time_format in _TIME_PARTS for label, strptime in _DATE_ORDERS for sep in _DATE_SEPARATORS
) + (("YYYYMMDD", "%Y%m%d"), ("YYYYMMDDHH", "%Y%m%d%H"), ("YYYY-MM", "%Y-%m"), ("YYYY/MM", "%Y/%m"))
_SAMPLE = 20  # cells tried against every candidate before parsing the whole column with the ones that fit


@dataclass
class _DateReading:
    """How the dates were read. parsed: (rows,) wall-clock datetimes, NaT where the cell was blank;
    instants: the same moments in UTC when the cells carried offsets, else None."""

    columns: list  # as pandas named them in the raw table
    parsed: pd.Series
    label: str  # e.g. "DD/MM/YYYY"
    also_fits: list[str]  # other formats that read every cell too (the choice was a guess)
    instants: pd.Series | None = None
    months: bool = False  # the dates name months (YYYY-MM, or year and month columns without a day)


def _format_for(date_format: str) -> tuple[str, str]:
    """(label, strptime) for a label of DATE_FORMATS or a strptime format given by the user."""
    for label, fmt in DATE_FORMATS:
        if date_format in (label, fmt):
            return label, fmt
    if "%" in date_format:
        return date_format, date_format
    raise SettingError(f"Unknown date format {date_format!r}: give one like DD/MM/YYYY or a strptime format like %d/%m/%Y.")


def _split_offsets(cells: pd.Series) -> tuple[pd.Series, pd.Series | None]:
    """Cells without a trailing UTC offset, and the offsets as timedeltas (None when the cells have none)."""
    if cells.iloc[:200].str.match(_OFFSET).mean() < 0.9:
        return cells, None  # judged on a sample first: the full extraction costs seconds on a big column
    parts = cells.str.extract(_OFFSET)
    if parts[0].notna().mean() < 0.9:
        return cells, None
    offset = parts[1].fillna("Z").str.replace(":", "", regex=False)
    sign = np.where(offset.str.startswith("-"), -1, 1)
    digits = offset.str.extract(r"(\d{2})(\d{2})").fillna(0).astype(int)
    minutes = sign * (digits[0] * 60 + digits[1])
    return parts[0].fillna(cells), pd.to_timedelta(minutes, unit="min")


def _read_dates(column, values: pd.Series, only: tuple[str, str] | None = None) -> _DateReading | None:
    """Read a column with the one candidate format that fits every non-blank cell.

    None when the column does not hold dates (fewer than 90% of its cells fit any candidate);
    DataError when it holds dates but no single format fits them all.
    """
    text = values.astype("string").str.strip().str.strip("\"'")
    present = text.notna() & (text != "")
    cells = text[present]
    if cells.empty:
        return None
    cells, offsets = _split_offsets(cells)
    candidates = [only] if only else DATE_FORMATS
    # grow the set of fitting candidates from samples of the cells no candidate has read yet, so that a
    # column mixing two formats is seen as such without parsing it once per candidate
    parsed, unread = {}, cells
    while len(unread):
        sample = unread.iloc[:_SAMPLE]
        new = [(label, fmt) for label, fmt in candidates if label not in parsed
               and pd.to_datetime(sample, format=fmt, errors="coerce").notna().any()]
        if not new:
            break
        for label, fmt in new:
            parsed[label] = (fmt, pd.to_datetime(cells, format=fmt, errors="coerce"))
        read = np.logical_or.reduce([dates.notna().to_numpy() for _, dates in parsed.values()])
        unread = cells[~read]
    if only and (not parsed or len(unread)):
        if len(unread) > 0.1 * len(cells):
            return None
        raise DateFormatError(f"'{unread.iloc[0]}' in column '{column}' does not fit the date format {only[0]} "
                              "that was chosen: choose another format or let the loader find it.")
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
    instants = None
    if offsets is not None:
        instants = (dates - offsets).reindex(values.index)
        label += " ±HHMM"
    return _DateReading([column], dates.reindex(values.index), label, fitting[1:], instants,
                        months="%d" not in fmt)


def _is_named_date(column) -> bool:
    name = str(column).strip().lower()
    return name in _DATE_NAMES or "date" in name or ("time" in name and not name.startswith("time_"))


def _split_date_columns(raw: pd.DataFrame) -> _DateReading | None:
    """Dates from year, month, day (and hour) columns; day 1 when there is no day column (monthly data)."""
    found = {}
    for column in raw.columns:
        name = str(column).strip().lower()
        for part, names in _DATE_PARTS.items():
            if name in names and part not in found:
                found[part] = column
    if "year" not in found or "month" not in found:
        return None
    numbers = {part: pd.to_numeric(raw[column], errors="coerce") for part, column in found.items()}
    if numbers["year"].between(1000, 3000).mean() < 0.9 or numbers["month"].between(1, 12).mean() < 0.9:
        return None
    parts = pd.DataFrame({"year": numbers["year"], "month": numbers["month"],
                          "day": numbers.get("day", pd.Series(1, index=raw.index)),
                          "hour": numbers.get("hour", pd.Series(0, index=raw.index))})
    parsed = pd.to_datetime(parts, errors="coerce")
    labels = {"year": "YYYY", "month": "MM", "day": "DD", "hour": "HH"}
    label = " ".join(labels[p] for p in ("year", "month", "day", "hour") if p in found) + " in separate columns"
    return _DateReading(list(found.values()), parsed, label, [], None, months="day" not in found)


def _find_dates(raw: pd.DataFrame, date_format: str | None = None) -> _DateReading:
    """The dates: a named date/time column, else year/month/day columns, else an unnamed or first column."""
    only = _format_for(date_format) if date_format else None
    named = [c for c in raw.columns if _is_named_date(c)]
    unnamed = [c for c in raw.columns if str(c).startswith("Unnamed: ") or str(c).strip() == ""]
    others = [c for c in raw.columns if c not in named and c not in unnamed]
    candidates = named + ["split"] + unnamed + others[:1]
    for column in candidates:
        if column == "split":
            reading = None if only else _split_date_columns(raw)
        else:
            values = raw[column]
            if pd.api.types.is_numeric_dtype(values) and column not in named:
                continue  # plain numbers are not dates unless the column says so
            reading = _read_dates(column, values, only)
        if reading is not None:
            return reading
    if only:
        raise NoDateColumnError(f"No column holds dates written as {only[0]}: choose another date format.")
    raise NoDateColumnError(
        "No date column found: name one column 'date' (or put the dates, like 2015-12-31, in the first column)."
    )


def _names(layout: Layout, report: LoadReport, width: int) -> list[str]:
    """Column names: the header's, with their units, blanks and repeats made unique the way pandas does."""
    names = list(layout.names) + [""] * (width - len(layout.names))
    units = layout.units or []
    out, seen = [], {}
    for position, name in enumerate(names[:width]):
        unit = units[position].strip("()[] ") if position < len(units) else ""
        full = f"{name} ({unit})" if name and unit else name
        if not full:
            full = f"Unnamed: {position}"
            if position < len(layout.names) or not layout.trailing_delimiter:
                report.renamed[full] = ""
        if full in seen:
            seen[full] += 1
            renamed = f"{full}.{seen[full]}"
            report.renamed[renamed] = full
            full = renamed
        else:
            seen[full] = 0
        out.append(full)
    return out


def _read_table(text: str, source_name: str, report: LoadReport) -> pd.DataFrame:
    """The table in ``text`` as a frame of raw columns (numbers where pandas read them, else text).

    A row with more values than the header has columns is an error: pandas would silently drop
    the extra values.
    """
    layout = find_layout(text)
    if layout is None:
        first = text.split("\n", 1)[0]
        if "," in first or ";" in first or "\t" in first:
            raise NotACSVError(f"{source_name} could not be read as a CSV (no header row is followed by rows with "
                               "as many values).")
        raise NotACSVError(
            f"{source_name} does not look like a CSV table: it needs a header row, a date column and at least one numeric column."
        )
    width = len(layout.names) + (1 if layout.trailing_delimiter else 0)
    if width > MAX_COLUMNS:
        raise TooLargeError(f"{source_name} has {width:,} columns; rnnlab reads tables of up to {MAX_COLUMNS}.")
    report.header_line, report.preamble_lines = layout.header_line + 1, layout.header_line
    report.delimiter, report.units_row = layout.delimiter_name, layout.units is not None
    report.trailing_delimiter = layout.trailing_delimiter
    names = _names(layout, report, width)
    if layout.delimiter is None:
        cells, report.trailing_text_rows = split_fixed_width(text, layout)
        return pd.DataFrame({name: cells[i] for i, name in enumerate(names)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            raw = pd.read_csv(io.StringIO(text), sep=layout.delimiter, header=None, names=names,
                              skiprows=layout.data_line, index_col=False, skipinitialspace=True,
                              keep_default_na=False, na_values=[""])
    except pd.errors.ParserWarning:
        raise NotACSVError(f"{source_name} could not be read as a CSV (some rows have more values than the header "
                           "has columns).") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, TypeError) as error:
        ragged = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
        if ragged:
            expected, line, seen = ragged.groups()
            line = int(line) + layout.data_line - 1
            reason = f"line {line} has {seen} values but the header has {expected} columns"
        else:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
        raise NotACSVError(f"{source_name} could not be read as a CSV ({reason}).") from None
    if layout.trailing_delimiter:
        raw = raw.drop(columns=[names[-1]]) if raw[names[-1]].isna().all() else raw
    return raw


@dataclass
class _Column:
    """One column after cleaning: float values (NaN where missing) or None when it is not numeric."""

    values: pd.Series | None
    markers: dict[str, int]
    flags: dict[str, int]
    boolean: bool = False


def _clean_column(values: pd.Series) -> _Column:
    """Numbers from a raw column: markers and sentinels become NaN (counted), flags are stripped (counted)."""
    markers, flags = {}, {}
    if pd.api.types.is_bool_dtype(values):
        return _Column(values.astype("float64"), {}, {}, boolean=True)
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.astype("float64")
        empty = int(numbers.isna().sum())
        if empty:
            markers[""] = empty
    else:
        text = values.astype("string").str.strip().str.strip("\"'").fillna("")
        lowered = text.str.lower()
        is_marker = lowered.isin(MISSING_MARKERS)
        cells = text[~is_marker]
        if len(cells) and lowered[~is_marker].isin(_BOOLEANS).all():
            return _Column(lowered.map(_BOOLEANS).astype("float64"), _counts(text[is_marker]), {}, boolean=True)
        numbers = pd.to_numeric(cells, errors="coerce")
        unread = cells[numbers.isna()]
        if len(unread):
            # each distinct cell once: a flagged column repeats the same few hundred cells many times
            distinct = pd.Series(unread.unique()).astype(object)
            glued = distinct.str.extract(_FLAGGED)
            glued.index = distinct
            number, flag = unread.map(glued[0]), unread.map(glued[1])
            flagged = number.notna()
            numbers.loc[number.index[flagged]] = pd.to_numeric(number[flagged])
            flags = _counts(flag[flagged])
            unread = unread[~flagged.to_numpy()]
        if len(cells) == 0 or len(unread) > 0.1 * len(cells):
            return _Column(None, {}, {})
        # a few cells that are not numbers in a numeric column (NOAA's 'T' for a trace of rain) are markers too
        markers = _counts(pd.concat([text[is_marker], unread]))
        numbers = numbers.reindex(values.index).astype("float64")
    sentinel = numbers.isin(SENTINELS)
    if sentinel.any():
        others = numbers[~sentinel].dropna()
        if len(others):
            low, high = others.min(), others.max()
            span = max(high - low, 1e-9)
            sentinel &= (numbers > high + span) | (numbers < low - span)
        if sentinel.any():
            for value, count in numbers[sentinel].value_counts().items():
                markers[f"{value:g}"] = int(count)
            numbers = numbers.mask(sentinel)
    return _Column(numbers, markers, flags)


def _counts(cells: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in cells.value_counts(sort=True).items()}


def _is_row_numbers(column, values: pd.Series) -> bool:
    name = str(column).strip().lower()
    if not (name in _ROW_NUMBER_NAMES or name.startswith("unnamed: ")) or values.isna().any() or len(values) < 2:
        return False
    steps = np.diff(values.to_numpy(dtype="float64"))
    return bool((steps == 1).all())


def _filter_rows(raw: pd.DataFrame, where: dict, source_name: str, report: LoadReport) -> pd.DataFrame:
    """The rows whose ``column`` reads ``value`` (as written, else ignoring case), for each item of ``where``."""
    for column, value in where.items():
        matches = [c for c in raw.columns if str(c) == column] or [c for c in raw.columns
                                                                   if str(c).strip().lower() == column.strip().lower()]
        if not matches:
            raise FilterError(f"There is no column '{column}' to choose rows by; the columns are: "
                              f"{', '.join(map(str, raw.columns))}.")
        cells = raw[matches[0]].astype("string").str.strip().str.strip("\"'")
        wanted = str(value).strip()
        keep = cells == wanted
        if not keep.any():
            keep = cells.str.lower() == wanted.lower()
        if not keep.any():
            numbers = pd.to_numeric(cells, errors="coerce")
            try:
                keep = numbers == float(wanted)
            except ValueError:
                pass
        if not keep.fillna(False).any():
            values = list(dict.fromkeys(cells.dropna()))
            raise FilterError(f"No row of {source_name} has {matches[0]}={wanted}; its values are: {_listing(values)}.")
        values = list(dict.fromkeys(cells.dropna()))
        if 2 <= len(values) <= MAX_SERIES and report.series_column is None:
            report.series_column, report.series_values = str(matches[0]), values
        raw = raw.loc[keep.fillna(False).to_numpy()]
        report.chosen_series[str(matches[0])] = wanted
    return raw


def _find_series(raw: pd.DataFrame, stamps: pd.Series, skip: set) -> tuple[str, list[str]] | None:
    """A column naming several series (stations, cities) whose values repeat per date, or None.

    stamps: (rows,) the rows' timestamps. A series column has 2..MAX_SERIES values, and a date
    with one of its values is (nearly) unique where the dates alone repeat.
    """
    if not stamps.duplicated().any():
        return None
    found = []
    for column in raw.columns:
        if column in skip:
            continue
        name = str(column).strip().lower()
        values = raw[column]
        if pd.api.types.is_numeric_dtype(values) and name not in _SERIES_NAMES:
            continue
        distinct = values.nunique()
        if not 2 <= distinct <= MAX_SERIES:
            continue
        repeats = pd.DataFrame({"t": stamps.to_numpy(), "v": values.to_numpy()}).duplicated().mean()
        if repeats <= 0.01:
            rank = _SERIES_NAMES.index(name) if name in _SERIES_NAMES else len(_SERIES_NAMES)
            found.append((repeats, rank, column))
    if not found:
        return None
    column = min(found, key=lambda f: f[:2])[2]
    values = [str(v).strip() for v in dict.fromkeys(raw[column].dropna())]
    return column, values


def _aggregation(column: str) -> str:
    """How sub-daily values make a day: sum for precipitation, max/min where the name says so, else mean."""
    name = column.lower()
    if re.search(r"precip|rain|prcp|snowfall|^rr\b|_sum\b", name):
        return "sum"
    if "max" in name:
        return "max"
    if re.search(r"min(?!ute)", name):
        return "min"
    return "mean"


def _step_name(step: pd.Timedelta) -> tuple[str, str]:
    """('1 hour', 'hour'), ('10 minutes', '10 minutes'), ('1 day', 'day'): for sentences and for labels."""
    seconds = int(step.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            name = f"{count} {unit}{_s(count)}"
            return name, (unit if count == 1 else name)
    return str(step), str(step)


MONTH = pd.Timedelta(days=365.2425 / 12)  # the step of monthly rows: a row's position is round(days / MONTH)


def load_csv(source, name: str | None = None, *, where: dict | None = None, resample: str = "daily",
             date_format: str | None = None) -> LoadedTable:
    """Read a weather table from a path, a file-like object or bytes. Raises DataError.

    where: {column: value} keeps only those rows (one station of several); resample: "daily"
    aggregates sub-daily rows to days, "none" keeps them; date_format: a label of DATE_FORMATS
    (e.g. "DD/MM/YYYY") or a strptime format, instead of the one the loader would guess.
    """
    if resample not in RESAMPLE_CHOICES:
        raise SettingError(f"Unknown resampling {resample!r}: choose one of {', '.join(RESAMPLE_CHOICES)}.")
    raw_bytes, source_name = _read_bytes(source)
    source_name = name or source_name
    if len(raw_bytes) > MAX_FILE_BYTES:
        raise TooLargeError(f"{source_name} is larger than {MAX_FILE_BYTES // 2**20} MiB, the most rnnlab reads: "
                            "cut it to the years or stations you need.")
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
        notes = ["Read the file as Latin-1 text (it is not UTF-8)."]
    else:
        notes = []
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")  # Windows and old Mac line endings
    report = LoadReport()
    raw = _read_table(text, source_name, report)
    if raw.shape[1] < 2 or len(raw) == 0:
        raise NotACSVError(
            f"{source_name} does not look like a CSV table: it needs a header row, a date column and at least one numeric column."
        )
    if where:
        raw = _filter_rows(raw, where, source_name, report)

    reading = _find_dates(raw, date_format)
    report.date_columns = [str(c) for c in reading.columns]
    report.date_format, report.date_alternatives = reading.label, list(reading.also_fits)
    report.utc_offsets = reading.instants is not None
    if reading.also_fits:
        notes.append(f"Read dates as {reading.label}; no day or month is above 12, so {' or '.join(reading.also_fits)} "
                     "would fit too: if that is how they are written, save the dates as YYYY-MM-DD.")
    else:
        notes.append(f"Read dates as {reading.label}.")
    dates = reading.parsed
    bad_dates = int(dates.isna().sum())
    if bad_dates:
        notes.append(f"Dropped {bad_dates} row{'s' if bad_dates > 1 else ''} without a date.")
    keep = dates.notna().to_numpy()
    raw, dates = raw.loc[keep], dates.loc[keep]
    instants = reading.instants.loc[keep] if reading.instants is not None else dates

    series = _find_series(raw, instants, set(reading.columns) | set(report.chosen_series))
    if series is not None:
        column, values = series
        report.series_column, report.series_values = str(column), values
        raise SeriesChoiceError(
            f"{source_name} holds {len(values)} series in column {column} ({_listing(values)}): choose one, "
            f"e.g. --where '{column}={values[0]}' on the command line or the Series box in the app.", str(column), values)
    for column in report.chosen_series:
        report.ignored[column] = "the series column" if column == report.series_column else "chose the rows"

    # clean every other column: numbers, markers, flags, yes/no; text and row numbers are left out
    columns, ignored_text = {}, []
    for column in raw.columns:
        if column in reading.columns or str(column) in report.chosen_series:
            continue
        cleaned = _clean_column(raw[column])
        if cleaned.values is None:
            ignored_text.append(str(column))
            report.ignored[str(column)] = "text"
            continue
        if not cleaned.markers and not cleaned.boolean and _is_row_numbers(column, cleaned.values):
            report.ignored[str(column)] = "row numbers"
            continue
        columns[str(column)] = cleaned.values
        if cleaned.markers:
            report.markers[str(column)] = cleaned.markers
        if cleaned.flags:
            report.flags[str(column)] = cleaned.flags
        if cleaned.boolean:
            report.booleans.append(str(column))
    if ignored_text:
        notes.append(f"Ignored non-numeric column{'s' if len(ignored_text) > 1 else ''}: {', '.join(ignored_text)}.")
    if not columns:
        shown = ignored_text or list(report.ignored)
        raise NoNumericFeaturesError(f"{source_name} has no numeric columns to learn from (only {', '.join(shown)}).")
    frame = pd.DataFrame(columns, index=raw.index)

    # the rows' times: a day for daily data, the first of the month for monthly, the time itself for
    # sub-daily data kept at its step (in UTC when the file gave offsets, so that no hour repeats)
    stamps = pd.DatetimeIndex(instants)
    ordered = np.sort(stamps.unique().to_numpy())
    native = pd.Timedelta(np.median(np.diff(ordered))) if len(ordered) > 1 else pd.Timedelta(days=1)
    sub_daily = native < pd.Timedelta(days=1) and not (pd.DatetimeIndex(dates).normalize() == dates).all()
    monthly = reading.months or (len(ordered) > 1 and pd.Timedelta(days=27) <= native <= pd.Timedelta(days=32)
                                 and (pd.DatetimeIndex(dates).day == 1).all())
    native_name = _step_name(pd.Series(np.diff(ordered)).mode().iloc[0] if len(ordered) > 1 else native)[0]
    report.native_step = "1 month" if monthly else native_name
    report.sub_daily = bool(sub_daily)

    if sub_daily:
        duplicated = stamps[stamps.duplicated()]
        if len(duplicated):
            raise DuplicateDatesError(
                f"The time {duplicated[0]} appears more than once ({len(duplicated)} repeated times): keep one row "
                f"per {native_name}, or choose one series.")
        if resample == "daily":
            days = pd.DatetimeIndex(dates).normalize()
            report.aggregation = {c: _aggregation(c) for c in frame.columns}
            groups = frame.groupby(days)
            frame = pd.DataFrame({c: (groups[c].sum(min_count=1) if how == "sum" else getattr(groups[c], how)())
                                  for c, how in report.aggregation.items()})
            notes.append(f"Aggregated {len(stamps):,} rows of {native_name} to {len(frame):,} days.")
        else:
            frame.index = stamps
    else:
        frame.index = pd.DatetimeIndex(dates).normalize()
    frame.index.name = "date"
    unit = "month" if monthly else ("day" if not sub_daily or resample == "daily" else _step_name(native)[1])
    unit_plural = "days" if unit == "day" else ("months" if unit == "month" else
                                                ("hours" if unit == "hour" else f"steps of {unit}"))
    report.step = "1 month" if monthly else ("1 day" if unit == "day" else native_name)

    duplicated = frame.index[frame.index.duplicated()]
    if len(duplicated):
        if unit == "day":
            raise DuplicateDatesError(
                f"The date {duplicated[0].date()} appears more than once ({len(duplicated)} repeated dates): keep one row per day."
            )
        raise DuplicateDatesError(f"The date {duplicated[0]} appears more than once ({len(duplicated)} repeated "
                                  f"dates): keep one row per {unit}.")
    if not frame.index.is_monotonic_increasing:
        frame = frame.sort_index()
        notes.append("Rows were not in date order; sorted them by date.")

    frame = frame.astype("float64")
    empty = [c for c in frame.columns if frame[c].isna().all()]
    if empty:
        frame = frame.drop(columns=empty)
        for column in empty:
            report.markers.pop(column, None)
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
        notes.append(f"Filled {sum(filled.values())} missing values from the previous {unit} ({details}).")
    if len(frame) < 2:
        raise TooFewRowsError(f"{source_name} has fewer than two usable rows.")

    if monthly:
        step = MONTH
        months = frame.index.year * 12 + frame.index.month
        differences = np.diff(months.to_numpy())
        jumps = np.flatnonzero(differences > 1)
        gaps = [(frame.index[p], frame.index[p + 1], int(differences[p]) - 1) for p in jumps]
    else:
        # the data's own step (a day for daily data); a larger jump is a gap
        differences = np.diff(frame.index.values)
        step = pd.Timedelta(pd.Series(differences).mode().iloc[0])
        gaps = []
        for position in np.flatnonzero(differences > step.to_timedelta64()):
            before, after = frame.index[position], frame.index[position + 1]
            gaps.append((before, after, int((after - before) / step) - 1))
    if gaps:
        largest = max(gaps, key=lambda g: g[2])
        when = largest[0].date() if unit in ("day", "month") else largest[0]
        notes.append(
            f"{len(gaps)} gap{'s' if len(gaps) > 1 else ''} in the dates ({sum(g[2] for g in gaps):,} missing "
            f"{unit_plural}; the largest, {largest[2]:,} {unit_plural} after {when}); no window spans a gap."
        )
    # one float block laid out column by column, as read_csv leaves it: the scalers' sums then add in
    # the same order for every file, so the same numbers give the same windows to the last bit
    frame = pd.DataFrame(np.asfortranarray(frame.to_numpy()), index=frame.index, columns=frame.columns)
    date_column = ", ".join(report.date_columns)
    return LoadedTable(frame, source_name, hashlib.sha256(raw_bytes).hexdigest(), date_column,
                       list(report.ignored), filled, dropped + bad_dates, gaps, step, filled_mask, reading.label,
                       notes, report, unit)


def default_target(table: LoadedTable) -> str:
    """The usual target: a daily maximum temperature if there is one, else the first numeric column."""
    for name in ("temp_max", "tmax", "TMAX", "max_temp", "temperature"):
        if name in table.frame.columns:
            return name
    return table.frame.columns[0]

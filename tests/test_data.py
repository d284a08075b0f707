"""Loading and preparing data: the embedded set, the notebooks' dirty CSV, and every bad input."""

import io

import numpy as np
import pandas as pd
import pytest

from rnnlab import errors
from rnnlab.tables import load_csv
from rnnlab.windows import prepare


def _csv(text: str) -> bytes:
    return text.strip().encode() + b"\n"


def _daily(rows=60, start="2020-01-01", **columns):
    """A clean daily CSV as bytes, with a seasonal-ish tmax and whatever extra columns are given."""
    dates = pd.date_range(start, periods=rows, freq="D")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"),
                          "tmax": 10 + 5 * np.sin(np.arange(rows) / 9) + rng.normal(size=rows),
                          "tmin": 2 + rng.normal(size=rows)})
    for name, values in columns.items():
        frame[name] = values
    return frame.to_csv(index=False).encode()


def test_embedded_seattle_data_loads_with_its_text_column_ignored(seattle_table):
    summary = seattle_table.summary()
    assert summary["rows"] == 1461
    assert (summary["first_date"], summary["last_date"]) == ("2012-01-01", "2015-12-31")
    assert seattle_table.numeric_columns == ["precipitation", "temp_max", "temp_min", "wind"]
    assert seattle_table.ignored_columns == ["weather"]
    assert any("weather" in note for note in seattle_table.notes)
    assert summary["gaps"] == 0 and summary["values_filled"] == 0


def test_windows_are_chronological_scaled_on_training_rows_and_map_back(seattle_table, seattle_prepared):
    p = seattle_prepared
    assert p.x_train.shape[1:] == (7, 4) and p.x_train.shape[0] > 850  # 60 % of 1,461 days
    assert p.dates_train.max() < p.dates_val.min() and p.dates_val.max() < p.dates_test.min()
    # scaler fitted on the training rows only: their target has mean 0 and std 1, the others need not
    train_target = (p.train_frame["temp_max"] - p.target_mean) / p.target_scale
    assert abs(train_target.mean()) < 1e-9 and abs(train_target.std(ddof=0) - 1) < 1e-9
    # the first training window is rows 0..6, its target is row 7's temp_max, in °C after inverse mapping
    frame = seattle_table.frame
    np.testing.assert_allclose(p.x_train[0], p.scale_features(frame[p.features].iloc[:7].to_numpy()))
    assert p.inverse_target(p.y_train[0]) == pytest.approx(frame["temp_max"].iloc[7])
    assert p.dates_train[0] == frame.index[7]
    assert p.windows["test"]["persistence"][0] == frame["temp_max"].loc[p.dates_test[0] - pd.Timedelta(days=1)]


def test_clean_weather_gaps_fill_and_leak_guard(clean_weather_path):
    table = load_csv(clean_weather_path)
    assert table.summary()["rows"] == 13509
    assert table.filled == {"tmax": 11, "tmin": 14, "rain": 281, "tmax_tomorrow": 11}
    jumps = sorted(g[2] + 1 for g in table.gaps)  # +1: the jump in days, as the data README counts it
    assert jumps[-2:] == [912, 4902]
    prepared = prepare(table, target="tmax", lookback=7)
    assert "tmax_tomorrow" not in prepared.features and prepared.features == ["tmax", "tmin", "rain"]
    assert any("tmax_tomorrow" in w and "leak" in w for w in prepared.warnings)
    assert sum(prepared.dropped_windows.values()) > 0
    # no window spans a gap: every window's 7 days + 1 day ahead are consecutive dates
    for split in ("train", "validation", "test"):
        dates = prepared.windows[split]["dates"]
        assert dates.is_monotonic_increasing
    with pytest.raises(errors.LeakError, match="tmax_tomorrow"):
        prepare(table, target="tmax", features=["tmax", "tmax_tomorrow"])


def test_window_next_to_a_gap_is_dropped():
    # 30 days, then 20 missing days, then 50 days: the gap falls inside the 40 training rows
    dates = list(pd.date_range("2020-01-01", periods=30)) + list(pd.date_range("2020-02-20", periods=50))
    frame = pd.DataFrame({"date": [d.strftime("%Y-%m-%d") for d in dates], "t": np.arange(80.0) % 7 + np.arange(80) * 0.1})
    table = load_csv(frame.to_csv(index=False).encode())
    assert len(table.gaps) == 1 and table.gaps[0][2] == 20  # 2020-01-31 .. 2020-02-19 are missing
    prepared = prepare(table, target="t", lookback=5, splits=(0.5, 0.25))
    # windows starting on rows 25..29 would hold days on both sides of the gap (with their target)
    assert prepared.dropped_windows["train"] == 5
    assert len(prepared.x_train) == 40 - 5 - 1 + 1 - 5
    first_after_gap = pd.Timestamp("2020-02-20")
    targets_after_gap = prepared.dates_train[prepared.dates_train >= first_after_gap]
    assert targets_after_gap.min() == first_after_gap + pd.Timedelta(days=5)  # needs 5 days after the gap


def test_out_of_order_rows_are_sorted_and_said():
    text = _daily(30).decode().splitlines()
    shuffled = "\n".join([text[0]] + text[1:][::-1]).encode()
    table = load_csv(shuffled)
    assert table.frame.index.is_monotonic_increasing
    assert any("sorted" in note for note in table.notes)


def test_forward_fill_counts_and_leading_gaps_are_dropped():
    table = load_csv(_csv("date,a,b\n2020-01-01,,1\n2020-01-02,2,\n2020-01-03,3,5\n2020-01-04,,6"))
    assert table.dropped_rows == 1  # the first row has no earlier 'a' to fill from
    assert table.filled == {"a": 1, "b": 1}
    assert table.frame["a"].tolist() == [2, 3, 3] and table.frame["b"].tolist() == [1, 5, 6]


@pytest.mark.parametrize(
    "content, error, words",
    [
        (b"", errors.NotACSVError, "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe garbage", errors.NotACSVError, "CSV"),
        (_csv("just one column\n1\n2"), errors.NotACSVError, "does not look like a CSV"),
        (_csv("a,b\n1,2\n3,4\n5,6"), errors.NoDateColumnError, "No date column"),
        (_csv("date,a\n2020-01-01,1\n2020-01-01,2\n2020-01-02,3"), errors.DuplicateDatesError, "2020-01-01"),
        (_csv("date,kind\n2020-01-01,sun\n2020-01-02,rain"), errors.NoNumericFeaturesError, "no numeric columns"),
        (_csv("date,a\n2020-01-01,1\n2020-01-02,inf\n2020-01-03,2"), errors.NonFiniteValuesError, "infinite"),
        (b"PK\x03\x04\x14\x00\x06\x00" + bytes(64), errors.NotACSVError, "Excel workbook"),
        (_csv("date,a\n2020-01-01,1\n2020-01-02,2,7,8\n2020-01-03,3"), errors.NotACSVError, "line 3 has 4 values but the header has 2 columns"),
        (_csv("date,b\n2020-01-01,\n2020-01-02,"), errors.NoNumericFeaturesError, "every numeric column is empty"),
    ],
)
def test_bad_files_get_one_readable_sentence(content, error, words):
    with pytest.raises(error, match=words) as caught:
        load_csv(content)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")


def test_bad_choices_get_one_readable_sentence():
    table = load_csv(_daily(60, flat=np.full(60, 3.0)))
    with pytest.raises(errors.TargetMissingError, match="'rain' is not in the data"):
        prepare(table, target="rain")
    with pytest.raises(errors.TargetMissingError, match="wind"):
        prepare(table, target="tmax", features=["tmax", "wind"])
    with pytest.raises(errors.ConstantColumnError, match="'flat' has the same value"):
        prepare(table, target="tmax", features=["tmax", "flat"])
    with pytest.raises(errors.ConstantColumnError, match="target 'flat' has the same value"):
        prepare(table, target="flat")
    with pytest.raises(errors.TooFewRowsError, match="validation split has 9 rows"):
        prepare(table, target="tmax", features=["tmax"], lookback=20)
    with pytest.raises(errors.SettingError, match="lookback"):
        prepare(table, target="tmax", features=["tmax"], lookback=0)
    with pytest.raises(errors.SettingError, match="Split shares"):
        prepare(table, target="tmax", features=["tmax"], splits=(0.9, 0.2))


def test_missing_file_and_uploaded_text_file():
    with pytest.raises(errors.NotACSVError, match="no file"):
        load_csv("/nonexistent/weather.csv")
    with pytest.raises(errors.DataError):
        load_csv(b"hello\nworld\n")


def _dated(dates, fmt):
    """A CSV whose 'date' column writes the given dates with strftime format ``fmt``; a = day of month."""
    return pd.DataFrame({"date": [d.strftime(fmt) for d in dates], "a": [float(d.day) for d in dates]}).to_csv(
        index=False).encode()


@pytest.mark.parametrize("fmt, label", [("%d/%m/%Y", "DD/MM/YYYY"), ("%m/%d/%Y", "MM/DD/YYYY"),
                                        ("%d.%m.%Y", "DD.MM.YYYY"), ("%d-%m-%Y", "DD-MM-YYYY"),
                                        ("%Y-%m-%d", "YYYY-MM-DD"), ("%Y/%m/%d", "YYYY/MM/DD"),
                                        ("%Y-%m-%d %H:%M:%S", "YYYY-MM-DD HH:MM:SS"),
                                        ("%Y-%m-%dT%H:%M", "YYYY-MM-DDTHH:MM")])
def test_one_date_format_is_read_for_the_whole_column(fmt, label):
    # 02/01 comes before 13/01: format="mixed" read the first as 2 February and the second as 13 January
    dates = pd.date_range("2020-01-02", periods=20)
    table = load_csv(_dated(dates, fmt))
    assert table.date_format == label and f"Read dates as {label}." in table.notes
    assert list(table.frame.index) == list(dates)  # every day in place, none scrambled into another month
    assert table.frame["a"].tolist() == [float(d.day) for d in dates]


def test_ambiguous_dates_are_read_month_first_and_the_guess_is_said():
    dates = pd.to_datetime(["2020-01-02", "2020-01-03", "2020-01-04"])
    table = load_csv(_dated(dates, "%m/%d/%Y"))
    assert table.date_format == "MM/DD/YYYY" and list(table.frame.index) == list(dates)
    assert any("Read dates as MM/DD/YYYY" in n and "DD/MM/YYYY would fit too" in n for n in table.notes)


def test_clean_weather_and_embedded_dates_are_read_as_iso(seattle_table, clean_weather_path):
    assert seattle_table.date_format == "YYYY/MM/DD"
    table = load_csv(clean_weather_path)
    assert table.date_format == "YYYY-MM-DD" and table.frame.index[0] == pd.Timestamp("1970-01-01")


_JANUARY = [f"2020-01-{day:02d}" for day in range(1, 20)]


@pytest.mark.parametrize("cells, offending", [(["02/01/2020", "13/01/2020", "01/13/2020"], "13/01/2020"),
                                               (_JANUARY + ["25/01/2020"], "25/01/2020"),
                                               (_JANUARY + ["soon"], "soon")])
def test_a_date_column_mixing_formats_is_refused_naming_a_value(cells, offending):
    content = pd.DataFrame({"date": cells, "a": np.arange(len(cells), dtype=float)}).to_csv(index=False).encode()
    with pytest.raises(errors.DateFormatError, match=f"'{offending}' does not fit") as caught:
        load_csv(content)
    assert "\n" not in str(caught.value) and str(caught.value).endswith(".")


def test_filled_mask_marks_exactly_the_filled_cells():
    table = load_csv(_csv("date,a,b\n2020-01-01,,1\n2020-01-02,2,\n2020-01-03,3,5\n2020-01-04,,6"))
    mask = table.filled_mask
    assert mask.index.equals(table.frame.index) and list(mask.columns) == list(table.frame.columns)
    assert mask.dtypes.eq(bool).all()
    assert mask["a"].tolist() == [False, False, True] and mask["b"].tolist() == [True, False, False]
    assert table.filled == {c: int(n) for c, n in mask.sum().items() if n}


def test_same_numbers_whatever_the_date_format():
    iso_bytes = _daily(40)
    frame = pd.read_csv(io.BytesIO(iso_bytes))
    frame["date"] = pd.to_datetime(frame["date"]).dt.strftime("%Y/%m/%d")
    iso, slashed = load_csv(iso_bytes), load_csv(frame.to_csv(index=False).encode())
    pd.testing.assert_frame_equal(iso.frame, slashed.frame)


def test_spreadsheet_exports_are_read_as_they_come():
    semicolons = load_csv(_csv("date;tmax;tmin\n2020-01-01;1,5;2\n2020-01-02;3;4\n2020-01-03;5;6"))
    assert semicolons.numeric_columns == ["tmin"]  # "1,5" (a decimal comma) leaves tmax as text, said in a note
    assert any("tmax" in n for n in semicolons.notes)
    tabs = load_csv(_csv("date\ttmax\n2020-01-01\t1\n2020-01-02\t3"))
    assert tabs.numeric_columns == ["tmax"]
    latin1 = load_csv("date,temp,note\n2020-01-01,1,caf\xe9\n2020-01-02,2,x\n".encode("latin-1"))
    assert latin1.numeric_columns == ["temp"] and any("Latin-1" in n for n in latin1.notes)
    with_empty = load_csv(_csv("date,a,b\n2020-01-01,1,\n2020-01-02,2,\n2020-01-03,3,"))
    assert with_empty.numeric_columns == ["a"] and any("empty column: b" in n for n in with_empty.notes)

"""The weather files people really have (issue 9): one small file per shape in tests/files, each
trained end to end through the CLI, the loader's findings checked, and the app's series and
resampling choices driven with AppTest."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from rnnlab import errors
from rnnlab.cli import main
from rnnlab.config import DataSettings
from rnnlab.figures import unit_of
from rnnlab.runs import shared_registry
from rnnlab.sniff import MAX_LINE_CHARS
from rnnlab.tables import MAX_COLUMNS, load_csv
from rnnlab.windows import prepare

FILES = Path(__file__).resolve().parent / "files"
# these files are a few dozen days long: too short for a calibration block of prediction intervals,
# which are not what these tests are about
NO_INTERVALS = ["--calibration", "0"] if "calibration" in {f.name for f in dataclasses.fields(DataSettings)} else []
APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")

# file, extra CLI arguments, target, words the notes must hold (what the loader found)
SHAPES = [
    ("preamble_metadata.csv", [], "tmax", ["Header on line 4, after 3 lines of preamble"]),
    ("preamble_free_text.csv", [], "tmax", ["Header on line 11, after 10 lines of preamble"]),
    ("hash_header.csv", [], "tmax", ["Header on line 3"]),
    ("station_monthly.txt", ["--lookback", "3"], "tmax (degC)",
     ["aligned with spaces", "row of units", "columns yyyy, mm", "one row every 1 month", "'---' ×2",
      "rain (mm): * ×2", "text after the last column on 4 rows"]),
    ("dates_day_first_dots.csv", [], "TMAX", ["read as DD.MM.YYYY"]),
    ("dates_month_first_slashes.csv", [], "TMAX", ["read as MM/DD/YYYY"]),
    ("dates_day_first_dashes.csv", [], "TMAX", ["read as DD-MM-YYYY"]),
    ("hourly_utc_offsets.csv", [], "Temperature (C)",
     ["HH:MM:SS.fff ±HHMM", "UTC offsets", "one row every 1 hour", "to one a day", "Summary (text)"]),
    ("gsod_compact_dates.csv", ["--features", "TEMP,DEWP,SLP,PRCP"], "TEMP",
     ["read as YYYYMMDD", "SLP: '9999.9' ×8", "VISIB: '999.9' ×5", "PRCP: '99.99' ×7", "MAX: * ×23"]),
    ("monthly_yyyy_mm.csv", ["--lookback", "3"], "temp_mean", ["read as YYYY-MM", "one row every 1 month"]),
    ("hourly_split_columns.csv", [], "TEMP",
     ["columns year, month, day, hour", "No (row numbers)", "cbwd (text)", "pm2.5: 'NA' ×52", "to one a day"]),
    ("split_yyyy_mm_dd_semicolons.csv", [], "tmax", ["separated by semicolon", "columns yyyy, mm, dd",
                                                      "Unnamed: 0 (row numbers)"]),
    ("missing_markers.csv", [], "temp", ["temp: '-999' ×6, '-9999' ×1", "wind: '---' ×7", "'NA' ×2", "'-' ×2"]),
    ("flags_glued.csv", [], "tmax", ["tmax: * ×15", "tmin: # ×11", "prcp: D ×18"]),
    ("quoted_crlf_trailing_delimiter.csv", [], "tmax", ["each row ends with one"]),
    ("cr_only_units_duplicate_names.csv", [], "T (degC)", ["T (degC).1", "read as DD.MM.YYYY HH:MM:SS"]),
    ("stations_noaa_cdo.csv", ["--where", "NAME=SEATTLE SAND POINT, WA US"], "TMAX",
     ["3 series in column NAME", "using NAME=SEATTLE SAND POINT, WA US"]),
    ("cities_long_format.csv", ["--where", "city=Lyon"], "temperature_2m_max (°C)",
     ["5 series in column city", "using city=Lyon"]),
    ("yes_no_locations.csv", ["--where", "Location=Perth"], "MaxTemp",
     ["Yes/no columns read as 1/0: RainToday, RainTomorrow", "WindGustDir (text)"]),
    ("ten_minute.csv", ["--lookback", "2"], "T (degC)", ["one row every 10 minutes", "sum of rain (mm)"]),
    ("ten_minute.csv", ["--resample", "none", "--lookback", "6"], "T (degC)", ["one row every 10 minutes"]),
    ("hourly_split_columns.csv", ["--resample", "none"], "TEMP", ["previous hour"]),
]


@pytest.mark.parametrize("file, extra, target, words", SHAPES, ids=[f"{s[0]}{' '.join(s[1])}" for s in SHAPES])
def test_every_shape_trains_end_to_end_through_the_cli(file, extra, target, words, tmp_path, capsys):
    code = main(["train", "--data", str(FILES / file), "--target", target, "--epochs", "1", "--hidden-size", "4",
                 "--out", str(tmp_path), *NO_INTERVALS, *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    notes = "\n".join(line for line in captured.err.splitlines() if line.startswith("note: "))
    for word in words:
        assert word in notes, (word, notes)
    assert (tmp_path / "model.npz").is_file() and "Traceback" not in captured.err


@pytest.mark.parametrize("args, words", [
    (["--data", str(FILES / "cities_long_format.csv")], "5 series in column city (Paris, Lyon, Nice, Lille, Brest)"),
    (["--data", str(FILES / "stations_noaa_cdo.csv")], "--where 'NAME=SEATTLE TACOMA AIRPORT, WA US'"),
    (["--data", str(FILES / "cities_long_format.csv"), "--where", "city=Rome"], "its values are: Paris, Lyon"),
    (["--data", str(FILES / "cities_long_format.csv"), "--where", "town=Paris"], "no column 'town'"),
    (["--data", str(FILES / "dates_day_first_dots.csv"), "--date-format", "MM.DD.YYYY"], "No column holds dates written as MM.DD.YYYY"),
    (["--data", str(FILES / "ten_minute.csv"), "--resample", "none", "--lookback", "400"], "Lookback"),
])
def test_files_that_cannot_be_used_get_one_sentence_and_exit_2(args, words, tmp_path, capsys):
    code = main(["train", *args, "--epochs", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    errors_said = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors_said) == 1 and words in errors_said[0], err
    assert "Traceback" not in err


def test_evaluate_and_predict_read_the_file_the_same_way(tmp_path, capsys):
    data = str(FILES / "cities_long_format.csv")
    assert main(["train", "--data", data, "--where", "city=Nice", "--epochs", "1", "--hidden-size", "4", *NO_INTERVALS,
                 "--target", "temperature_2m_max (°C)", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--weights", str(tmp_path / "model.npz"), "--data", data, "--where", "city=Nice"]) == 0
    assert "using city=Nice" in capsys.readouterr().err
    assert main(["predict", "--weights", str(tmp_path / "model.npz"), "--data", data, "--where", "city=Nice",
                 "--out", str(tmp_path / "p.csv")]) == 0
    assert pd.read_csv(tmp_path / "p.csv")["split"].iloc[-1] == "forecast"


def test_sentinels_are_never_values_and_a_real_99_99_stays():
    table = load_csv(FILES / "missing_markers.csv")
    assert table.frame["temp"].min() > -50 and not table.frame.isin([-999.0, -9999.0]).any().any()
    assert (table.frame["humidity"] == 99.99).sum() == 9  # a humidity of 99.99 % is a value, not a marker
    assert "humidity" not in table.report.markers
    gsod = load_csv(FILES / "gsod_compact_dates.csv")
    assert gsod.frame["SLP"].max() < 1100 and gsod.frame["VISIB"].max() < 11 and gsod.frame["PRCP"].max() < 2
    assert gsod.report.flags["PRCP"]["G"] == 11


def test_flags_are_stripped_and_the_number_kept():
    table = load_csv(FILES / "flags_glued.csv")
    raw = pd.read_csv(FILES / "flags_glued.csv", dtype=str)
    assert raw["tmax"].iloc[0].endswith("*") and table.frame["tmax"].iloc[0] == float(raw["tmax"].iloc[0][:-1])
    assert table.filled == {}


def test_sub_daily_rows_aggregate_to_days_or_keep_their_step():
    daily = load_csv(FILES / "ten_minute.csv")
    kept = load_csv(FILES / "ten_minute.csv", resample="none")
    assert daily.step == pd.Timedelta(days=1) and daily.step_unit == "day"
    assert kept.step == pd.Timedelta(minutes=10) and kept.step_unit == "10 minutes" and len(kept.frame) == 3456
    first_day = kept.frame.loc["2009-01-01"]
    assert daily.frame["T (degC)"].iloc[0] == pytest.approx(first_day["T (degC)"].mean())
    assert daily.frame["rain (mm)"].iloc[0] == pytest.approx(first_day["rain (mm)"].sum())
    assert daily.report.aggregation["rain (mm)"] == "sum" and daily.report.aggregation["T (degC)"] == "mean"
    assert prepare(kept, target="T (degC)", lookback=6).count("test") > 400


def test_utc_offsets_across_a_dst_change_give_no_repeated_hour():
    kept = load_csv(FILES / "hourly_utc_offsets.csv", resample="none")
    assert kept.frame.index.is_unique and len(kept.frame) == 24 * 62 and kept.gaps == []
    daily = load_csv(FILES / "hourly_utc_offsets.csv")
    assert len(daily.frame) == 62 and daily.frame.index[0] == pd.Timestamp("2006-09-15")


def test_monthly_rows_step_by_months():
    table = load_csv(FILES / "station_monthly.txt")
    assert table.step_unit == "month" and table.gaps == [] and len(table.frame) == 144
    assert table.frame.index[0] == pd.Timestamp("1995-01-01") and table.frame.index[-1] == pd.Timestamp("2006-12-01")
    prepared = prepare(table, target="tmax (degC)", lookback=12)
    assert sum(prepared.dropped_windows.values()) == 0  # 28-, 30- and 31-day months are all one step
    assert list(table.frame.columns) == ["tmax (degC)", "tmin (degC)", "af (days)", "rain (mm)", "sun (hours)"]
    with_gap = load_csv(b"month,t\n" + b"".join(f"2020-{m:02d},{m}\n".encode() for m in (1, 2, 3, 6, 7, 8, 9)))
    assert [g[2] for g in with_gap.gaps] == [2] and "2 missing months" in " ".join(with_gap.notes)


def test_a_repeat_after_filtering_is_a_real_duplicate():
    text = "date,city,t\n" + "".join(f"2020-01-{d:02d},A,{d}\n2020-01-{d:02d},B,{d}\n" for d in range(1, 20))
    text += "2020-01-05,A,99\n"
    with pytest.raises(errors.DuplicateDatesError, match="2020-01-05 appears more than once"):
        load_csv(text.encode(), where={"city": "A"})


def test_units_in_headers_reach_the_axis_titles():
    assert unit_of("T (degC)") == "°C" and unit_of("temperature_2m_max (°C)") == "°C"
    assert unit_of("precipitation_sum (mm)") == "mm" and unit_of("T (degC).1") == "°C" and unit_of("tmax") == "°F"


def test_hostile_files_are_refused_before_they_are_expanded():
    wide = ",".join(["date"] + [f"c{i}" for i in range(MAX_COLUMNS + 5)]) + "\n"
    row = ",".join(["2020-01-01"] + ["1"] * (MAX_COLUMNS + 5)) + "\n"
    with pytest.raises(errors.TooLargeError, match="columns"):
        load_csv((wide + row * 5).encode())
    with pytest.raises(errors.NotACSVError, match="characters long"):
        load_csv(b"date,a\n2020-01-01," + b"9" * (MAX_LINE_CHARS + 1) + b"\n")
    with pytest.raises(errors.NotACSVError):
        load_csv(b"just some words\nand more words\n")


def test_date_format_override_reads_ambiguous_dates_day_first():
    text = "date,a\n" + "".join(f"{d:02d}/01/2020,{d}\n" for d in range(1, 13))
    guessed = load_csv(text.encode())
    assert guessed.date_format == "MM/DD/YYYY" and "DD/MM/YYYY" in guessed.report.date_alternatives
    chosen = load_csv(text.encode(), date_format="DD/MM/YYYY")
    assert chosen.frame.index[1] == pd.Timestamp("2020-01-02") and chosen.date_format == "DD/MM/YYYY"


# ------------------------------------------------------------------------------------------------
# The app: the series picker and the resampling choice in the Data section
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def page():
    shared_registry().clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    yield at
    shared_registry().clear()


def _upload(at, file):
    at.radio(key="data_source").set_value("Upload a CSV").run()
    at.file_uploader[0].set_value((file, (FILES / file).read_bytes(), "text/csv")).run()
    assert not at.exception, at.exception
    return at


def _found(at) -> str:
    return "\n".join(m.value for m in at.markdown if "What the loader found" in m.value)


def test_app_offers_the_series_of_a_file_holding_several(page):
    _upload(page, "cities_long_format.csv")
    series = page.selectbox(key="series::cities_long_format.csv")
    assert series.options == ["Paris", "Lyon", "Nice", "Lille", "Brest"] and series.value == "Paris"
    assert not page.error and "using city=Paris" in _found(page)
    series.set_value("Lille").run()
    assert "using city=Lille" in _found(page) and not page.error
    assert page.selectbox(key="target::cities_long_format.csv").value in ("temperature_2m_max (°C)",
                                                                          "temperature_2m_min (°C)",
                                                                          "precipitation_sum (mm)")


def test_app_aggregates_sub_daily_rows_or_keeps_their_step(page):
    _upload(page, "ten_minute.csv")
    choice = page.radio(key="resample::ten_minute.csv")
    assert choice.value == "daily" and "to one a day" in _found(page)
    assert [m.label for m in page.metric][-1] == "Missing days"
    choice.set_value("none").run()
    assert "to one a day" not in _found(page) and "one row every 10 minutes" in _found(page)
    assert [m.label for m in page.metric][-1] == "Missing steps" and not page.exception
    rows = [m.value for m in page.metric if m.label == "Rows"]
    assert rows == ["3,456"]
    # every label that says "days" says the data's step instead
    assert page.slider(key="lookback").label == "Lookback (10-minute steps)"
    assert page.slider(key="horizon").label == "Horizon (10-minute steps ahead)"
    assert any("training 10-minute steps only" in c.value for c in page.caption)


def test_app_has_no_resampling_choice_for_daily_data(page):
    assert not [r for r in page.radio if r.key == "resample::seattle_weather.csv"]
    assert "Dates from column date, read as YYYY/MM/DD" in _found(page)


def test_monthly_forecast_dates_are_calendar_months_and_messages_say_the_step():
    from rnnlab.windows import _steps, last_rows

    table = load_csv(FILES / "monthly_yyyy_mm.csv")
    _, dates = last_rows(table, list(table.frame.columns)[:1], 3, 2)
    assert [d.date().isoformat() for d in dates] == ["2007-01-01", "2007-02-01"]  # not 2006-12-31 + 30.44 days
    # the words the window errors use for the step
    assert _steps(load_csv(FILES / "ten_minute.csv", resample="none")) == "10-minute steps"
    assert _steps(table) == "months" and _steps(load_csv(FILES / "ten_minute.csv")) == "days"

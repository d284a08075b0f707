"""Windows: the leak guard over the whole window, constant columns, filled-in targets, and windows
gathered on demand from rows kept once (checked against a slow loop over rows)."""

import numpy as np
import pandas as pd
import pytest

from rnnlab import errors
from rnnlab.evaluate import evaluate
from rnnlab.tables import load_csv
from rnnlab.windows import find_leaks, prepare


def _table(rows=300, seed=0, blank_target_rows=(), **columns):
    """A daily table with a noisy seasonal tmax, a tmin, extra columns, and empty tmax cells on some rows."""
    rng = np.random.default_rng(seed)
    tmax = 10 + 5 * np.sin(np.arange(rows) / 9) + rng.normal(size=rows)
    frame = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=rows).strftime("%Y-%m-%d"), "tmax": tmax,
                          "tmin": 2 + rng.normal(size=rows)})
    for name, values in columns.items():
        frame[name] = values(tmax) if callable(values) else values
    frame.loc[list(blank_target_rows), "tmax"] = np.nan
    return load_csv(frame.to_csv(index=False).encode())


def _ahead(k):
    """A column holding tmax k days ahead (its last k cells repeat the last value)."""
    return lambda tmax: pd.Series(tmax).shift(-k).ffill().to_numpy()


class _Constant:
    def predict(self, x):
        return np.zeros(len(x))


# --- 6: the leak guard covers every shift whose answer sits inside the window ---------------------

def test_leaks_are_found_for_every_shift_inside_the_window_and_not_beyond():
    lookback, horizon = 7, 1
    table = _table(ahead_2=_ahead(2), ahead_last=_ahead(horizon + lookback - 1), ahead_outside=_ahead(horizon + lookback))
    assert find_leaks(table, "tmax", horizon, lookback) == ["ahead_2", "ahead_last"]
    assert find_leaks(table, "tmax", horizon=3, lookback=2) == ["ahead_2"]  # 8 ahead is beyond 3 + 2 - 1


def test_a_column_two_days_ahead_is_left_out_so_least_squares_is_not_perfect():
    table = _table(rows=600, tmax_in_two_days=_ahead(2))
    prepared = prepare(table, target="tmax", lookback=7, horizon=1)
    assert "tmax_in_two_days" not in prepared.features
    assert any("tmax_in_two_days" in w and "leak" in w for w in prepared.warnings)
    least_squares_mse = evaluate(_Constant(), prepared).table("test").loc["least squares", "MSE"]
    assert least_squares_mse > 0.3  # the noise (variance 1) is unpredictable; with the leak it was 1e-30
    with pytest.raises(errors.LeakError, match="'tmax_in_two_days' equals 'tmax' shifted into the future"):
        prepare(table, target="tmax", features=["tmax", "tmax_in_two_days"], lookback=7)


# --- 8: constant columns ---------------------------------------------------------------------------

def test_a_constant_column_is_left_out_when_not_chosen_and_refused_when_chosen():
    rows = 120
    flag = np.full(rows, np.nan)
    flag[[0, 30, 31, 90]] = 1.0  # "1" on a few days, empty elsewhere: constant once filled
    table = _table(rows, flag=flag, level=np.full(rows, 5.0))
    prepared = prepare(table, target="tmax")
    assert prepared.features == ["tmax", "tmin"]
    assert any("flag, level" in w and "same value on every row" in w for w in prepared.warnings)
    with pytest.raises(errors.ConstantColumnError, match="'flag' has the same value on every row"):
        prepare(table, target="tmax", features=["tmax", "flag"])
    with pytest.raises(errors.ConstantColumnError, match="target 'level'"):
        prepare(table, target="level")


# --- 9: windows whose target was filled in are neither trained on nor scored ------------------------

def test_windows_forecasting_a_filled_in_day_are_left_out_of_every_split_and_counted():
    rows, lookback = 300, 5
    blank = [40, 41, 100, 215, 216, 217, 250, 260, 270, 280, 290]  # 3 in train, 4 in validation, 4 in test
    table = _table(rows, blank_target_rows=blank)
    filled_dates = set(table.frame.index[table.filled_mask["tmax"]])
    assert len(filled_dates) == len(blank)
    # the layout before the calibration block (train 70 %, validation 15 %, test 15 %), as the counts below assume
    prepared = prepare(table, target="tmax", lookback=lookback, splits=(0.7, 0.15), calibration=0.0)
    bounds = [0, 210, 255, 300]  # 70 % and 85 % of 300 rows
    for split, start, stop in zip(("train", "validation", "test"), bounds[:-1], bounds[1:]):
        dates = prepared.windows[split]["dates"]
        assert not filled_dates & set(dates)
        candidates = table.frame.index[start + lookback : stop]  # every day a window of this split forecasts
        expected = len(filled_dates & set(candidates))
        assert prepared.imputed_targets_dropped[split] == expected
        assert prepared.count(split) == len(candidates) - expected
    assert prepared.imputed_targets_dropped == {"train": 3, "validation": 4, "test": 4}
    assert "Left out 11 windows whose target on that day was filled in, not observed." in prepared.notes


def test_persistence_is_not_scored_on_filled_in_days():
    rows = 400
    blank = list(range(341, 400, 3))  # every third test day is empty, so it would repeat yesterday exactly
    table = _table(rows, blank_target_rows=blank)
    prepared = prepare(table, target="tmax", lookback=7)
    result = evaluate(_Constant(), prepared)
    test = result.predictions[result.predictions["split"] == "test"]
    assert (test["persistence"] != test["actual"]).all()  # no free perfect scores
    assert not set(table.frame.index[blank]) & set(test["date"])
    observed = table.frame["tmax"].drop(index=table.frame.index[blank])
    yesterday = table.frame["tmax"].shift(1).loc[observed.index]
    in_test = observed.index >= prepared.dates_test[0]
    expected = np.mean((observed[in_test] - yesterday[in_test]) ** 2)
    assert result.table("test").loc["persistence", "MSE"] == pytest.approx(expected)


# --- 13: rows kept once, windows gathered on demand ------------------------------------------------

def _big_table(rows=50_000, columns=10, seed=1):
    """~50,000 days x 10 columns, with three gaps in the dates and some empty cells."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("1900-01-01", periods=rows + 40)
    dates = dates.delete(list(range(1000, 1010)) + list(range(36_000, 36_025)) + list(range(45_000, 45_005)))
    frame = pd.DataFrame(rng.normal(size=(rows, columns)).cumsum(axis=0), columns=[f"c{i}" for i in range(columns)])
    frame.insert(0, "date", dates.strftime("%Y-%m-%d"))
    frame.loc[rng.choice(np.arange(1, rows), 200, replace=False), "c0"] = np.nan
    return load_csv(frame.to_csv(index=False).encode())


@pytest.fixture(scope="module")
def big():
    table = _big_table()
    # train 70 % / validation 15 % / test 15 %, no calibration block: the reference loop below splits so
    return table, prepare(table, target="c0", lookback=60, horizon=1, splits=(0.7, 0.15), calibration=0.0)


def _reference_windows(table, features, target, lookback, horizon, start, stop, mean, scale):
    """The windows of rows start..stop-1, one at a time: gap-free, target observed. x (n, lookback, F), y (n,)."""
    values = table.frame[features].to_numpy()
    target_values = table.frame[target].to_numpy()
    filled = table.filled_mask[target].to_numpy()
    dates = table.frame.index
    xs, ys = [], []
    for first in range(start, stop - lookback - horizon + 1):
        target_row = first + lookback - 1 + horizon
        if (dates[target_row] - dates[first]).days != lookback - 1 + horizon or filled[target_row]:
            continue
        xs.append((values[first : first + lookback] - mean) / scale)
        ys.append(target_values[target_row])
    return np.array(xs), np.array(ys)


def test_prepared_data_holds_rows_not_windows(big):
    table, prepared = big
    frame_bytes = table.frame.memory_usage(index=True, deep=True).sum()
    assert prepared.nbytes <= 3 * frame_bytes  # materialised windows took 55 times the table (244 MB)
    assert prepared.count("train") > 34_000


def test_gathered_windows_equal_a_slow_loop_over_rows(big):
    table, prepared = big
    rows, lookback = len(table.frame), prepared.lookback
    train = table.frame[prepared.features].iloc[: round(rows * 0.7)].to_numpy()
    mean, scale = train.mean(axis=0), train.std(axis=0)
    start, stop = round(rows * 0.85), rows
    x_ref, y_ref = _reference_windows(table, prepared.features, "c0", lookback, 1, start, stop, mean, scale)
    assert prepared.count("test") == len(x_ref)
    index = np.random.default_rng(0).choice(len(x_ref), 256, replace=False)
    np.testing.assert_allclose(prepared.inputs("test", index), x_ref[index], rtol=1e-12, atol=1e-12)
    # targets are (n, horizon): one column at horizon 1
    np.testing.assert_allclose(prepared.inverse_target(prepared.targets("test", index))[:, 0], y_ref[index], rtol=1e-12)
    np.testing.assert_allclose(prepared.inputs("test", slice(10, 20)), x_ref[10:20], rtol=1e-12, atol=1e-12)
    as_float32 = prepared.inputs("test", index, dtype="float32")
    assert as_float32.dtype == np.float32 and as_float32.shape == (256, lookback, prepared.n_features)
    assert prepared.targets("test", index, dtype="float32").dtype == np.float32
    # one gap in each split: the lookback + horizon - 1 windows that would reach across it are dropped
    assert prepared.dropped_windows == {split: lookback for split in ("train", "validation", "test")}


def test_gathered_windows_are_fresh_arrays_and_the_old_names_still_work(seattle_prepared):
    p = seattle_prepared
    x = p.inputs("validation")
    x[:] = 0.0
    assert np.abs(p.inputs("validation")).sum() > 0
    np.testing.assert_array_equal(p.x_val, p.inputs("validation"))
    np.testing.assert_array_equal(p.y_test, p.targets("test"))
    assert p.x_train.shape == (p.count("train"), 7, 4)
    window = p.windows["test"]
    assert set(window) == {"dates", "actual", "persistence"}
    assert window["dates"].equals(p.dates_test)
    np.testing.assert_allclose(p.inverse_target(p.y_test), window["actual"])

"""Issue 11: every lead day at once, conformal intervals, the rolling-origin backtest, the next days."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from rnnlab.backtest import backtest, fold_rows, summary
from rnnlab.config import DataSettings, TrainConfig
from rnnlab.errors import DataError, SettingError, WeightsError
from rnnlab.evaluate import baseline_predictions, evaluate
from rnnlab.forecast import next_days, next_days_of_run
from rnnlab.intervals import calibrate, conformal_quantile, conformal_rank, interval_scores
from rnnlab.models import create_model
from rnnlab.tables import DEFAULT_DATA_PATH, load_csv
from rnnlab.train import Trainer
from rnnlab.weights_io import evaluate_saved_run, load_run, run_to_bytes, save_run
from rnnlab.windows import prepare
from rnnlab import xray


def _table(values, start="2020-01-01", drop=(), empty=(), **extra):
    """A daily table of a target column 'y' (and extra columns); ``drop``: row positions left out of the
    file (a gap in the dates); ``empty``: row positions whose 'y' cell is empty (filled by the loader)."""
    dates = pd.date_range(start, periods=len(values), freq="D")
    lines = ["date,y," + ",".join(extra)]
    for i, (date, value) in enumerate(zip(dates, values)):
        if i in drop:
            continue
        cell = "" if i in empty else repr(float(value))
        lines.append(f"{date:%Y-%m-%d},{cell}," + ",".join(repr(float(c[i])) for c in extra.values()))
    return load_csv("\n".join(lines).encode(), name="series.csv")


# -- every lead day at once ------------------------------------------------------------------------------
def test_targets_are_every_lead_day_and_baselines_are_per_lead_on_a_hand_made_series():
    values = np.arange(100, dtype=float) * 1.5 + np.sin(np.arange(100))
    table = _table(values, x=np.cos(np.arange(100)))
    p = prepare(table, target="y", features=["y", "x"], lookback=4, horizon=3, splits=(0.6, 0.15), calibration=0.1)
    first = p.starts["test"][0]  # row where the first test window begins
    assert p.targets("test").shape == (p.count("test"), 3)
    np.testing.assert_allclose(p.inverse_target(p.targets("test", 0)), [values[first + 4 : first + 7]])
    window = p.windows["test"]
    assert window["dates"][0] == table.frame.index[first + 4]  # the day lead 1 forecasts
    np.testing.assert_array_equal(window["actual"][0], values[first + 4 : first + 7])
    # persistence: the last observed value for every lead day
    np.testing.assert_array_equal(window["persistence"][0], np.full(3, values[first + 3]))
    baselines = baseline_predictions(p)["test"]
    assert all(b.shape == (p.count("test"), 3) for b in baselines.values())
    # climatology: the training mean of each lead's own day of the year (each day once in the training rows)
    day = table.frame.index[p.target_rows("test")[0]]
    train = p.train_frame["y"]
    expected = [train[train.index.day_of_year == d.day_of_year].mean() if (train.index.day_of_year == d.day_of_year).any()
                else np.nan for d in day]
    finite = ~np.isnan(expected)
    np.testing.assert_allclose(baselines["climatology"][0][finite], np.asarray(expected)[finite])
    # least squares: one output per lead; a linear trend is fitted (almost) exactly at every lead
    lead_errors = np.abs(baselines["least squares"] - window["actual"]).max(axis=0)
    assert lead_errors.shape == (3,) and lead_errors.max() < 2.5  # the sine wobble is ±1


def test_a_window_is_kept_only_when_every_lead_day_is_observed_and_inside_its_split():
    values = np.random.default_rng(0).normal(size=200).cumsum()
    one = prepare(_table(values, empty=(100,)), target="y", lookback=5, horizon=1)
    three = prepare(_table(values, empty=(100,)), target="y", lookback=5, horizon=3)
    assert sum(one.imputed_targets_dropped.values()) == 1  # the window forecasting day 100
    assert sum(three.imputed_targets_dropped.values()) == 3  # every window with day 100 among its 3 leads
    assert any("3 lead days" in note for note in three.notes)
    for split in three.starts:
        rows = three.target_rows(split)
        assert not three.values[rows].size or rows.max() < len(values)
    bounds = {split: (three.starts[split].min(), three.target_rows(split).max()) for split in three.starts}
    order = ["train", "validation", "calibration", "test"]
    for earlier, later in zip(order, order[1:]):
        assert bounds[earlier][1] < bounds[later][0]  # the last lead day of a split precedes the next split's rows


def test_loss_averages_over_leads_and_gradients_pass_the_float64_check():
    model = create_model("gru", 3, 5, output_size=4, seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(6, 5, 3)), rng.normal(size=(6, 4))
    loss, _ = model.loss_and_grads(x, y)
    assert loss == pytest.approx(np.mean((model.predict(x) - y) ** 2), rel=1e-12)
    report = xray.gradient_check(model, x, y, entries_per_param=None)
    assert (report["status"] == "green").all()


def test_torch_loads_a_multi_lead_weights_file_as_nn_linear(tmp_path, seattle_table):
    torch = pytest.importorskip("torch")
    prepared = prepare(seattle_table, target="temp_max", lookback=5, horizon=4)
    trainer = Trainer(TrainConfig(model="lstm", hidden_size=6, epochs=1), prepared).fit()
    save_run(tmp_path / "m.safetensors", trainer.model, trainer.config, prepared)
    from safetensors.torch import load_file

    state = load_file(str(tmp_path / "m.safetensors"))
    rnn, head = torch.nn.LSTM(prepared.n_features, 6, 1, batch_first=True).double(), torch.nn.Linear(6, 4).double()
    rnn.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("rnn.")})
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    x = prepared.inputs("test", slice(0, 9))
    with torch.no_grad():
        out, _ = rnn(torch.from_numpy(x))
        np.testing.assert_allclose(head(out[:, -1]).numpy(), trainer.model.predict(x), rtol=0, atol=1e-12)


# -- conformal intervals ----------------------------------------------------------------------------------
def test_conformal_quantile_is_the_finite_sample_rank():
    scores = np.arange(1, 20, dtype=float)  # 19 scores
    assert conformal_rank(19, 0.9) == 18  # ⌈20 · 0.9⌉
    assert conformal_quantile(scores, 0.9) == 18.0
    assert conformal_quantile(np.column_stack([scores, 2 * scores]), 0.9).tolist() == [18.0, 36.0]
    with pytest.raises(SettingError, match="at least 9 calibration windows"):
        conformal_quantile(np.arange(8.0), 0.9)


@pytest.mark.parametrize("coverage", [0.8, 0.9])
def test_conformal_intervals_cover_a_known_distribution_within_sampling_error(coverage):
    """Over many draws of 49 calibration and 200 test errors, the mean coverage is ⌈50 c⌉ / 50 (the
    finite-sample guarantee: at least c, below c + 1/50) to within its sampling error."""
    rng = np.random.default_rng(0)
    draws, n_cal, n_test = 4000, 49, 200
    calibration = rng.standard_t(df=4, size=(draws, n_cal))
    test = rng.standard_t(df=4, size=(draws, n_test))
    half = np.array([conformal_quantile(np.abs(c), coverage) for c in calibration])
    covered = (np.abs(test) <= half[:, None]).mean(axis=1)
    expected = conformal_rank(n_cal, coverage) / (n_cal + 1)
    # each draw's coverage has variance ≈ Beta(k, n+1−k) variance + binomial variance
    k = conformal_rank(n_cal, coverage)
    beta_var = k * (n_cal + 1 - k) / ((n_cal + 1) ** 2 * (n_cal + 2))
    standard_error = np.sqrt((beta_var + expected * (1 - expected) / n_test) / draws)
    assert abs(covered.mean() - expected) < 4 * standard_error
    assert coverage <= expected < coverage + 1 / (n_cal + 1)


def test_interval_scores_coverage_width_and_winkler():
    actual = np.array([[0.0], [1.0], [5.0]])
    lower, upper = np.array([[-1.0], [-1.0], [-1.0]]), np.array([[1.0], [1.0], [1.0]])
    scores = interval_scores(actual, lower, upper, 0.8)
    assert scores["coverage"].tolist() == pytest.approx([2 / 3])
    assert scores["width"].tolist() == [2.0]
    assert scores["winkler"].tolist() == pytest.approx([2.0 + (2 / 0.2) * 4.0 / 3])


def test_evaluate_reports_intervals_for_model_and_persistence_per_lead(seattle_table):
    prepared = prepare(seattle_table, target="temp_max", lookback=7, horizon=3)
    trainer = Trainer(TrainConfig(hidden_size=8, epochs=3), prepared).fit()
    result = evaluate(trainer.model, prepared, coverage=0.8)
    table = result.interval_table("test")
    assert set(table.index) == {(p, lead) for p in ("model", "persistence") for lead in (1, 2, 3)}
    assert (table["nominal"] == 0.8).all() and result.calibration.windows == prepared.count("calibration")
    rows = result.predictions[result.predictions["split"] == "test"]
    assert {"lead", "lower", "upper"} <= set(rows.columns) and sorted(rows["lead"].unique()) == [1, 2, 3]
    lead2 = rows[rows["lead"] == 2]
    np.testing.assert_allclose(lead2["upper"] - lead2["predicted"], result.calibration.quantiles[1])
    assert (lead2["date"].to_numpy() == prepared.row_dates[prepared.target_rows("test")[:, 1]]).all()
    inside = ((lead2["actual"] >= lead2["lower"]) & (lead2["actual"] <= lead2["upper"])).mean()
    assert table.loc[("model", 2), "coverage"] == pytest.approx(inside)
    assert result.lead_table("test").shape == (3, 4)


def test_a_run_without_a_calibration_block_has_no_intervals(seattle_table):
    prepared = prepare(seattle_table, target="temp_max", splits=(0.7, 0.15), calibration=0.0)
    assert "calibration" not in prepared.starts
    result = evaluate(create_model("rnn", prepared.n_features, 4), prepared)
    assert result.calibration is None and "lower" not in result.predictions and result.interval_table().empty


def test_the_weights_file_carries_the_calibration_and_evaluate_reproduces_the_intervals(tmp_path, seattle_table):
    prepared = prepare(seattle_table, target="temp_max", lookback=5, horizon=2)
    trainer = Trainer(TrainConfig(hidden_size=6, epochs=2), prepared).fit()
    result = evaluate(trainer.model, prepared, coverage=0.85)
    path = save_run(tmp_path / "m.npz", trainer.model, trainer.config, prepared, result.to_dict(), result.calibration)
    run = load_run(path)
    assert run.metadata["calibration"] == pytest.approx(0.1)
    assert run.calibration.coverage == 0.85 and run.calibration.quantiles.tolist() == result.calibration.quantiles.tolist()
    again = evaluate_saved_run(run, seattle_table).result
    pd.testing.assert_frame_equal(again.predictions, result.predictions)
    pd.testing.assert_frame_equal(again.intervals, result.intervals)


@pytest.mark.parametrize("intervals, field", [
    ({"coverage": 1.5, "quantiles": [1.0, 1.0], "persistence_quantiles": [1.0, 1.0], "windows": 9}, "intervals.coverage"),
    ({"coverage": 0.9, "quantiles": [1.0], "persistence_quantiles": [1.0, 1.0], "windows": 9}, "intervals.quantiles"),
    ({"coverage": 0.9, "quantiles": [1.0, -1.0], "persistence_quantiles": [1.0, 1.0], "windows": 9}, "intervals.quantiles"),
    ({"coverage": 0.9, "quantiles": [1.0, 1.0], "persistence_quantiles": [1.0, 1.0], "windows": 0}, "intervals.windows"),
    ("wide", "intervals"),
])
def test_a_damaged_calibration_is_refused_in_one_sentence(seattle_table, intervals, field):
    import json

    from safetensors.numpy import load, save

    prepared = prepare(seattle_table, target="temp_max", lookback=5, horizon=2)
    model = create_model("rnn", prepared.n_features, 4, output_size=2)
    raw = run_to_bytes(model, TrainConfig(), prepared)
    header_size = int.from_bytes(raw[:8], "little")
    metadata = json.loads(json.loads(raw[8 : 8 + header_size])["__metadata__"]["rnnlab"])
    metadata["intervals"] = intervals
    damaged = save(load(raw), metadata={"rnnlab": json.dumps(metadata)})
    with pytest.raises(WeightsError, match=f"'{field}' should be"):
        load_run(damaged)


# -- the rolling-origin backtest ----------------------------------------------------------------------------
def test_backtest_folds_never_leak(seattle_table):
    settings = DataSettings(target="temp_max", lookback=7, horizon=3)
    rows = len(seattle_table.frame)
    bounds = fold_rows(rows, settings, folds=4)
    assert bounds[0][2] == round(rows * 0.5) and bounds[-1][3] == rows
    for (_, _, start, stop), (_, _, next_start, _) in zip(bounds, bounds[1:]):
        assert stop == next_start  # the test blocks tile the later half
    for fold_bounds in bounds:
        p = prepare(seattle_table, **settings.prepare_kwargs(), split_rows=fold_bounds)
        first_test_input = p.starts["test"].min()
        for split in ("train", "validation", "calibration"):
            # every lead day a fold trains, stops or calibrates on comes before its first test window's first day
            assert p.target_rows(split).max() < first_test_input
        assert p.target_rows("test").max() < fold_bounds[3]
        assert p.train_frame.index[-1] < p.row_dates[fold_bounds[0]]  # the scaler saw training rows only


def test_backtest_table_one_row_per_fold(seattle_table):
    settings = DataSettings(target="temp_max", lookback=5, horizon=2)
    folds = backtest(seattle_table, settings, TrainConfig(model="rnn", hidden_size=4, epochs=2), folds=3)
    assert list(folds["fold"]) == [1, 2, 3]
    assert (folds["train_end"] < folds["first_test_day"]).all() and folds["origin"].is_monotonic_increasing
    assert folds["train_days"].is_monotonic_increasing  # an expanding window
    assert np.allclose(folds["skill"], 1 - folds["model_mse"] / folds["persistence_mse"])
    assert folds["coverage"].between(0, 1).all()
    stats = summary(folds)
    assert stats.loc["model_mse", "mean"] == pytest.approx(folds["model_mse"].mean())
    with pytest.raises(SettingError, match="folds"):
        backtest(seattle_table, settings, TrainConfig(), folds=0)


def test_backtest_folds_on_a_cluster_equal_the_folds_trained_here(seattle_table):
    from rnnlab.cluster import ClusterHolder

    settings = DataSettings(target="temp_max", lookback=5, horizon=2)
    config = TrainConfig(model="gru", hidden_size=4, epochs=2)
    here = backtest(seattle_table, settings, config, folds=2)
    holder = ClusterHolder(n_workers=2)
    try:
        seen = []
        there = backtest(seattle_table, settings, config, folds=2, client=holder.client, on_fold=seen.append)
    finally:
        holder.close()
    assert len(seen) == 2
    pd.testing.assert_frame_equal(there, here)  # same seeds, same folds (to 1e-5: the workers use one BLAS thread)


# -- the next days ----------------------------------------------------------------------------------------
def test_next_days_are_the_horizon_days_after_the_last_date_with_intervals(seattle_table):
    prepared = prepare(seattle_table, target="temp_max", lookback=5, horizon=3)
    trainer = Trainer(TrainConfig(hidden_size=4, epochs=1), prepared).fit()
    result = evaluate(trainer.model, prepared)
    ahead = next_days(trainer.model, prepared, seattle_table, result.calibration)
    last = seattle_table.frame.index[-1]
    assert list(ahead["date"]) == [last + pd.Timedelta(days=k) for k in (1, 2, 3)]
    assert list(ahead["lead"]) == [1, 2, 3]
    x = prepared.scale_features(seattle_table.frame[prepared.features].to_numpy()[-5:])[None]
    np.testing.assert_allclose(ahead["predicted"], prepared.inverse_target(trainer.model.predict(x))[0])
    np.testing.assert_allclose(ahead["upper"] - ahead["predicted"], result.calibration.quantiles)


def test_the_forecast_is_refused_after_a_gap_or_a_missing_value(seattle_table):
    values = np.random.default_rng(0).normal(size=120).cumsum()
    prepared = prepare(_table(values), target="y", lookback=5, horizon=2)
    model = create_model("rnn", 1, 4, output_size=2)
    assert len(next_days(model, prepared, _table(values))) == 2
    with pytest.raises(DataError, match="span a gap in the dates"):
        next_days(model, prepared, _table(values, drop=(117,)))
    with pytest.raises(DataError, match="missing values"):
        next_days(model, prepared, _table(values, empty=(118,)))


def test_cli_forecast_writes_the_next_days_and_refuses_a_gap_with_exit_2(tmp_path, seattle_table):
    prepared = prepare(seattle_table, target="temp_max", lookback=5, horizon=3)
    trainer = Trainer(TrainConfig(hidden_size=4, epochs=1), prepared).fit()
    result = evaluate(trainer.model, prepared)
    weights = save_run(tmp_path / "m.safetensors", trainer.model, trainer.config, prepared, None, result.calibration)
    out = tmp_path / "next.csv"
    done = subprocess.run([sys.executable, "-m", "rnnlab", "forecast", "--weights", str(weights), "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    written = pd.read_csv(out, parse_dates=["date"])
    assert list(written.columns) == ["date", "lead", "predicted", "lower", "upper"]
    pd.testing.assert_frame_equal(written, next_days_of_run(load_run(weights), seattle_table), check_dtype=False)
    gap = tmp_path / "gap.csv"
    frame = pd.read_csv(DEFAULT_DATA_PATH)
    frame.drop(index=len(frame) - 3).to_csv(gap, index=False)
    refused = subprocess.run([sys.executable, "-m", "rnnlab", "forecast", "--weights", str(weights), "--data", str(gap)],
                             capture_output=True, text=True)
    assert refused.returncode == 2 and refused.stdout == ""
    error = refused.stderr.strip().splitlines()[-1]
    assert error.startswith("error: The last 5 rows") and "gap" in error and error.count(". ") == 0

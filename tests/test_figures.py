"""Figure builders: the traces each chart carries and the axis titles a reader needs."""

import math

import numpy as np
import pandas as pd
import pytest

from rnnlab import figures

PARAMS = ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0", "head.weight", "head.bias"]


def _history(epochs=4, lookback=5):
    return [{
        "epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_mse": 10.0 / e,
        "grad_norm_mean": 0.5 * e, "grad_norm_max": 0.8 * e, "clipped_fraction": min(1.0, 0.25 * e),
        "update_norms": {p: 0.1 / e for p in PARAMS}, "relative_change": {p: 2.0 * e for p in PARAMS},
        "step_grad_norms": list(np.geomspace(0.01, 1, lookback)), "seconds": 0.1, "lr": 1e-3,
    } for e in range(1, epochs + 1)]


def _predictions(n=20):
    dates = pd.date_range("2015-01-01", periods=n)
    actual = np.linspace(5, 10, n)
    return pd.DataFrame({"date": dates, "split": ["validation"] * (n // 2) + ["test"] * (n - n // 2),
                         "actual": actual, "predicted": actual + 0.5, "persistence": actual - 1.0})


def _names(figure):
    return [trace.name for trace in figure.data]


def test_loss_curves_have_train_and_validation_and_a_log_option():
    figure = figures.loss_figure(_history(), target_unit="°C")
    assert _names(figure) == ["train", "validation"]
    assert list(figure.data[1].y) == pytest.approx([1.2, 0.6, 0.4, 0.3])
    assert figure.layout.xaxis.title.text == "epoch"
    assert "MSE" in figure.layout.yaxis.title.text
    assert figures.loss_figure(_history(), log_y=True).layout.yaxis.type == "log"
    assert figures.loss_figure(_history()).layout.yaxis.type == "linear"


def test_empty_history_gives_a_neutral_placeholder_not_an_error():
    # a run that diverged in epoch 1 never records an epoch: no placeholder may promise curves to come
    for builder in (figures.loss_figure, figures.weight_change_figure, figures.gradient_figure,
                    figures.gradient_flow_figure):
        figure = builder([])
        assert len(figure.data) == 0 and figure.layout.annotations[0].text == "No epochs recorded."
    empty_rows = _predictions().iloc[:0]
    for builder in (figures.predictions_figure, figures.residuals_figure):
        assert "yet" not in builder(empty_rows, "temp_max").layout.annotations[0].text


def test_predictions_show_actual_model_and_persistence_on_the_chosen_dates():
    figure = figures.predictions_figure(_predictions(), "temp_max", "°C", split="test")
    assert _names(figure) == ["actual", "persistence (same as last day)", "model"]
    assert len(figure.data[0].x) == 10 and pd.Timestamp(figure.data[0].x[0]) == pd.Timestamp("2015-01-11")
    assert figure.layout.yaxis.title.text == "temp_max (°C)" and figure.layout.xaxis.title.text == "date"


def test_residuals_are_actual_minus_forecast():
    figure = figures.residuals_figure(_predictions(), "temp_max", "°C", split="validation")
    model_trace = figure.data[0]
    assert model_trace.name == "model" and list(model_trace.y) == pytest.approx([-0.5] * 10)
    assert figure.layout.yaxis.title.text == "error (°C)"


def test_weight_change_has_one_line_per_weight_matrix_in_both_panels():
    figure = figures.weight_change_figure(_history())
    matrices = ["W_ih layer 1", "W_hh layer 1", "head W"]
    assert _names(figure) == [name for name in matrices for _ in range(2)]  # update norm + relative change
    assert figure.layout.yaxis.title.text.startswith("‖Δθ‖") and figure.layout.yaxis.type == "log"
    assert "%" in figure.layout.yaxis2.title.text
    assert list(figure.data[1].y) == pytest.approx([2, 4, 6, 8])


def test_gradient_chart_draws_the_clip_threshold_and_share_clipped():
    figure = figures.gradient_figure(_history(), grad_clip=1.5)
    assert _names(figure) == ["steps clipped (%)", "mean norm", "max norm", "clip at 1.5"]
    assert list(figure.data[0].y) == pytest.approx([25, 50, 75, 100])
    assert figure.layout.yaxis2.title.text == "steps clipped (%)"
    no_clip = figures.gradient_figure(_history(), grad_clip=0)
    assert _names(no_clip) == ["steps clipped (%)", "mean norm", "max norm"]  # no line when clipping is off


def test_clip_label_sits_on_the_threshold_line_of_the_log_axis():
    # add_hline's label on this log axis sat at 10**1.5, not 1.5: an annotation's y on a log axis is log10 of
    # the value, a trace's y is the value itself; both must say 1.5 in their own coordinates
    figure = figures.gradient_figure(_history(), grad_clip=1.5)
    assert figure.layout.yaxis.type == "log"
    line = figure.data[_names(figure).index("clip at 1.5")]
    assert line.yaxis == "y" and set(line.y) == {1.5}
    assert min(line.x) < 1 and max(line.x) > 4  # across every epoch
    labels = [a for a in figure.layout.annotations if a.text == "clip at 1.5"]
    assert len(labels) == 1 and labels[0].yref == "y" and labels[0].y == pytest.approx(math.log10(1.5))
    assert labels[0].yanchor == "bottom" and not labels[0].showarrow  # just above the line, not beside an arrow


def test_gradient_flow_spans_the_lookback_window():
    figure = figures.gradient_flow_figure(_history(epochs=12, lookback=5))
    assert len(figure.data) == 8  # at most 8 epochs drawn, spread over the run
    assert list(figure.data[0].x) == ["t−4", "t−3", "t−2", "t−1", "t (last day)"]
    assert figure.data[-1].name == "epoch 12"


def test_runs_overlay_and_scoreboard():
    figure = figures.runs_overlay_figure({"#1 LSTM": _history(3), "#2 GRU": _history(5), "#3 empty": []})
    assert _names(figure) == ["#1 LSTM", "#2 GRU"]
    assert "validation MSE" in figure.layout.yaxis.title.text
    metrics = pd.DataFrame(
        [{"predictor": p, "split": s, "MSE": 1.0, "RMSE": 1.0, "MAE": 1.0, "R2": 0.5, "skill": 0.1}
         for p in ("model", "persistence") for s in ("validation", "test")]).set_index(["predictor", "split"])
    table = figures.scoreboard(metrics, "test")
    assert list(table.index) == ["model", "persistence"]
    assert list(table.columns) == ["MSE", "RMSE", "MAE", "R²", "skill vs persistence"]


def test_param_labels_are_readable():
    assert figures.param_label("rnn.weight_hh_l1") == "W_hh layer 2"
    assert figures.param_label("head.weight") == "head W"


def test_series_preview_plots_the_column_over_dates():
    frame = pd.DataFrame({"temp_max": [1.0, 2.0, 3.0]}, index=pd.date_range("2020-01-01", periods=3, name="date"))
    figure = figures.series_figure(frame, "temp_max", "°C")
    assert list(figure.data[0].y) == [1.0, 2.0, 3.0]
    assert figure.layout.yaxis.title.text == "temp_max (°C)" and figure.layout.xaxis.title.text == "date"


def _tick_values(axis):
    return [float(v) for v in axis.tickvals]


@pytest.mark.parametrize("epochs", [1, 5, 7, 22, 23, 150])
def test_epoch_axes_have_no_tick_past_the_last_epoch(epochs):
    history = _history(epochs)
    charts = [figures.loss_figure(history), figures.gradient_figure(history, 1.0),
              figures.runs_overlay_figure({"#1": history})]
    weight_change = figures.weight_change_figure(history)
    for layout_x in [chart.layout.xaxis for chart in charts] + [weight_change.layout.xaxis, weight_change.layout.xaxis2]:
        ticks = _tick_values(layout_x)
        assert ticks[0] == 1 and max(ticks) <= epochs and all(t == int(t) for t in ticks)
        assert len(ticks) <= 11
        low, high = layout_x.range
        assert low < 1 and epochs < high <= epochs + max(0.5, 0.03 * epochs)  # the last epoch plus a small pad


def test_loss_chart_marks_the_best_epoch_and_an_early_stop():
    figure = figures.loss_figure(_history(8), best_epoch=5, early_stopped=True)
    best = figure.data[_names(figure).index("best epoch 5 (weights kept)")]
    assert list(best.x) == [5] and list(best.y) == pytest.approx([1.2 / 5])  # on the validation curve
    stops = [shape for shape in figure.layout.shapes if shape.x0 == 8 and shape.x1 == 8]
    assert len(stops) == 1 and stops[0].line.dash == "dot"
    assert [a.text for a in figure.layout.annotations] == ["early stop"] and figure.layout.annotations[0].x == 8
    plain = figures.loss_figure(_history(8))  # the app's call: no markers without the keywords
    assert _names(plain) == ["train", "validation"] and not plain.layout.shapes


def test_overlay_titles_its_axis_with_the_squared_unit_and_keeps_log_ticks_readable():
    runs = {"#1 LSTM float32": _history(3), "#2 LSTM float64": _history(3)}
    assert figures.runs_overlay_figure(runs, unit="°C", target="temp_max").layout.yaxis.title.text == \
        "validation MSE (°C²)"
    assert figures.runs_overlay_figure(runs, unit="m/s").layout.yaxis.title.text == "validation MSE ((m/s)²)"
    assert figures.runs_overlay_figure(runs).layout.yaxis.title.text == "validation MSE (squared target units)"
    assert "temp_max" in figures.runs_overlay_figure(runs, unit="°C", target="temp_max").layout.title.text
    # the label given is the legend entry, even when two labels differ only in the dtype
    assert _names(figures.runs_overlay_figure(runs)) == ["#1 LSTM float32", "#2 LSTM float64"]
    diverged = _history(8)
    for index, record in enumerate(diverged):
        record["val_mse"] = 10.0**index  # 1 .. 1e7: one tick per power of ten, not 1-2-5 over 8 decades
    axis = figures.runs_overlay_figure({**runs, "#3 GRU": diverged}, log_y=True).layout.yaxis
    assert axis.type == "log" and 4 <= len(axis.tickvals) <= 10
    assert all(len(text) <= 5 for text in axis.ticktext)  # '10⁶', not '1e+06' or '1000000'


def test_overlay_placeholder_does_not_ask_for_finished_runs():
    assert figures.runs_overlay_figure({}).layout.annotations[0].text == "Pick runs to compare their validation curves."
    only_empty = figures.runs_overlay_figure({"#4 running": []}).layout.annotations[0].text
    assert "finished" not in only_empty.lower() and "No epochs recorded" in only_empty


def test_batch_loss_of_a_diverged_epoch_drops_non_finite_losses_and_marks_the_blow_up():
    losses = [1.0, 0.9, 5.0, 300.0, 2e6, float("inf"), float("nan")]
    figure = figures.batch_loss_figure(losses, 1, "Loss became inf in batch 6.")
    assert figure.layout.title.text == "Loss per batch in epoch 1, up to the blow-up"
    assert figure.layout.yaxis.type == "log" and figure.layout.xaxis.title.text == "batch in epoch 1"
    line = figure.data[0]
    assert list(line.x) == [1, 2, 3, 4, 5] and list(line.y) == pytest.approx(losses[:5])
    assert [shape.x0 for shape in figure.layout.shapes] == [6]  # where the loss stopped being a number
    assert any("batch 6" in a.text and "inf" in a.text for a in figure.layout.annotations)
    assert "Loss became inf in batch 6." in figure.layout.title.subtitle.text
    assert max(_tick_values(figure.layout.xaxis)) <= 6 and figure.layout.xaxis.range[1] > 6
    gap = figures.batch_loss_figure([1.0, None, 0.5], 1, "")  # a missing loss mid-epoch: later losses stay in view
    assert list(gap.data[0].x) == [1, 3] and gap.layout.xaxis.range[1] > 3 and gap.layout.shapes[0].x0 == 2


def test_batch_loss_without_any_finite_loss_is_a_placeholder():
    figure = figures.batch_loss_figure([float("nan")], 1, "Loss became nan in batch 1.")
    assert len(figure.data) == 0 and "Loss became nan in batch 1." in figure.layout.annotations[0].text
    assert len(figures.batch_loss_figure([], 2, "").data) == 0


def test_xray_figures_draw_every_gate_unit_and_feature():
    from rnnlab.figures import gates_figure, occlusion_figure, saliency_figure, saturation_figure

    rng = np.random.default_rng(0)
    states = {f"layer0.{g}": rng.uniform(size=(7, 5)) for g in "ifgoch"}
    figure = gates_figure(states, 0, "Layer 1")
    assert len(figure.data) == 6 and all(trace.z.shape == (5, 7) for trace in figure.data)
    assert list(figure.data[0].x) == ["t−6", "t−5", "t−4", "t−3", "t−2", "t−1", "t"]
    assert (figure.data[0].zmin, figure.data[0].zmax) == (0.0, 1.0)  # sigmoid gates share one 0…1 scale
    saturation = pd.DataFrame({"layer": 0, "gate": ["i", "i", "f"], "unit": [0, 1, 0],
                               "left": [0.5, 0.0, 0.1], "right": [0.2, 0.9, 0.0], "steps": 70})
    assert [len(trace.x) for trace in saturation_figure(saturation).data[:2]] == [2, 1]
    assert "no gates" in saturation_figure(saturation.iloc[:0]).layout.annotations[0].text
    heat = saliency_figure(rng.normal(size=(7, 3)), ["a", "b", "c"], "IG").data[0]
    assert list(heat.y) == ["a", "b", "c"] and heat.zmin == -heat.zmax
    assert list(occlusion_figure([0.1, -0.2, 0.3]).data[0].y) == [0.1, -0.2, 0.3]


# -- seed bands and sweeps -------------------------------------------------------------------------------------
def test_seed_band_has_a_shaded_min_max_band_and_a_mean_line():
    histories = [[{"epoch": e, "val_mse": 10.0 / e + seed, "train_loss": 1.0 / e} for e in range(1, 4)]
                 for seed in range(3)]
    histories[2] = histories[2][:2]  # one seed stopped early
    figure = figures.seed_band_figure(histories, unit="°C")
    assert _names(figure) == ["validation MSE max", "validation MSE min–max", "validation MSE mean"]
    upper, lower, mean = figure.data
    assert list(upper.y) == pytest.approx([12.0, 7.0, 10 / 3 + 1]) and list(lower.y) == pytest.approx([10.0, 5.0, 10 / 3])
    assert lower.fill == "tonexty" and upper.fill is None and not upper.showlegend
    assert list(mean.y) == pytest.approx([11.0, 6.0, 10 / 3 + 0.5]) and list(mean.customdata) == [3, 3, 2]
    assert "°C²" in figure.layout.yaxis.title.text and figure.layout.title.text.startswith("3 seeds")
    both = figures.seed_band_figure(histories, columns=("train_loss", "val_mse"))
    assert len(both.data) == 6 and _names(both)[2] == "training loss mean"
    assert figures.seed_band_figure([]).layout.annotations  # an empty band says why


def test_parallel_coordinates_have_an_axis_per_setting_and_the_objective():
    trials = pd.DataFrame({"model": ["lstm", "gru", "lstm", "gru"], "hidden_size": [8, 16, 32, 64],
                           "lr": [1e-4, 1e-3, 1e-2, 3e-3], "validation MSE": [9.0, 7.0, 8.0, None]})
    figure = figures.parallel_coordinates_figure(trials, ["model", "hidden_size", "lr"], log_settings=["lr"])
    (parcoords,) = figure.data
    labels = [d.label for d in parcoords.dimensions]
    assert labels == ["model", "hidden_size", "lr (log)", "validation MSE"]
    model_axis, _, lr_axis, score_axis = parcoords.dimensions
    assert list(model_axis.ticktext) == ["lstm", "gru"] and list(model_axis.values) == [0, 1, 0]
    assert list(lr_axis.values) == pytest.approx([-4, -3, -2]) and list(score_axis.values) == [9.0, 7.0, 8.0]
    assert list(parcoords.line.color) == [9.0, 7.0, 8.0]  # the unfinished trial is left out
    assert figures.parallel_coordinates_figure(trials.iloc[3:], ["model"]).layout.annotations


def test_importance_bars_put_the_most_important_setting_on_top():
    figure = figures.importance_figure({"lr": 0.7, "model": 0.2, "hidden_size": 0.1})
    (bars,) = figure.data
    assert list(bars.y) == ["hidden_size", "model", "lr"] and bars.orientation == "h"
    assert "fANOVA" in figure.layout.title.text
    assert figures.importance_figure({}).layout.annotations


# -- forecasts: lead days, intervals, the backtest --------------------------------------------------------
def _lead_metrics():
    rows = [{"predictor": p, "split": "test", "lead": lead, "MSE": base * lead, "RMSE": 0.0, "MAE": 0.0, "R2": 0.0,
             "skill": 1 - base / 2.0} for p, base in (("model", 1.0), ("persistence", 2.0), ("climatology", 3.0),
                                                      ("least squares", 1.5)) for lead in (1, 2, 3)]
    return pd.DataFrame(rows).set_index(["predictor", "split", "lead"])


def test_skill_by_lead_draws_every_predictor_per_lead_day():
    figure = figures.skill_by_lead_figure(_lead_metrics(), unit="°C")
    assert _names(figure) == ["climatology", "least squares", "model", "persistence"]
    model = figure.data[_names(figure).index("model")]
    assert list(model.x) == [1, 2, 3] and list(model.y) == [1.0, 2.0, 3.0]
    assert figure.layout.xaxis.title.text == "lead (days ahead)" and "°C²" in figure.layout.yaxis.title.text
    skill = figures.skill_by_lead_figure(_lead_metrics(), metric="skill")
    assert "persistence" not in _names(skill) and skill.layout.shapes[0].y0 == 0  # persistence is the zero line


def test_coverage_shows_nominal_against_empirical_per_lead():
    table = pd.DataFrame({"predictor": ["model"] * 2 + ["persistence"] * 2, "lead": [1, 2, 1, 2],
                          "coverage": [0.88, 0.91, 0.9, 0.86], "width": [4.0, 5.0, 5.0, 6.0],
                          "winkler": [6.0, 7.0, 7.0, 8.0], "nominal": 0.9}).set_index(["predictor", "lead"])
    figure = figures.coverage_figure(table)
    assert _names(figure) == ["model (empirical)", "persistence (empirical)"]
    assert list(figure.data[0].y) == pytest.approx([88.0, 91.0]) and list(figure.data[0].customdata) == [4.0, 5.0]
    assert figure.layout.shapes[0].y0 == pytest.approx(90.0)
    assert "calibration" in figures.coverage_figure(table.iloc[:0]).layout.annotations[0].text


def test_predictions_draw_the_interval_band_and_a_marked_forecast_segment():
    rows = _predictions().assign(lead=1)
    rows["lower"], rows["upper"] = rows["predicted"] - 2, rows["predicted"] + 2
    two_leads = pd.concat([rows, rows.assign(lead=2, predicted=rows["predicted"] + 1)], ignore_index=True)
    ahead = pd.DataFrame({"date": pd.date_range("2015-01-21", periods=2), "lead": [1, 2], "predicted": [9.0, 9.5],
                          "lower": [7.0, 7.0], "upper": [11.0, 12.0]})
    figure = figures.predictions_figure(two_leads, "temp_max", "°C", lead=2, forecast=ahead)
    names = _names(figure)
    assert names[:2] == ["interval upper", "interval"] and figure.data[1].fill == "tonexty"
    assert list(figure.data[names.index("model")].y) == pytest.approx(list(rows["predicted"][10:] + 1))
    assert "forecast (next days)" in names and "forecast interval" in names
    assert figure.data[names.index("forecast (next days)")].line.dash == "dash"
    assert any(a.text == "forecast" for a in figure.layout.annotations) and "2 days ahead" in figure.layout.title.text
    plain = figures.predictions_figure(_predictions(), "temp_max")
    assert _names(plain) == ["actual", "persistence (same as last day)", "model"]


def test_backtest_figure_shows_each_fold_with_mean_and_spread():
    folds = pd.DataFrame({"fold": [1, 2, 3], "origin": pd.date_range("2014-01-01", periods=3, freq="90D"),
                          "skill": [0.1, 0.2, 0.3], "model_mse": [4.0, 5.0, 6.0], "persistence_mse": [5.0, 6.0, 7.0]})
    figure = figures.backtest_figure(folds, "skill")
    assert list(figure.data[0].y) == pytest.approx([0.1, 0.2, 0.3]) and figure.data[0].x[0].startswith("fold 1")
    band, mean = figure.layout.shapes[0], figure.layout.shapes[1]
    assert mean.y0 == pytest.approx(0.2) and band.y1 - band.y0 == pytest.approx(2 * 0.1)
    assert "± " in figure.layout.annotations[0].text
    assert "persistence MSE" in _names(figures.backtest_figure(folds, "model_mse"))


def test_live_charts_slow_down_while_polls_come_late_and_recover_when_they_are_on_time():
    pace = figures.LivePace(poll=0.75, fastest=2.0, slowest=10.0)
    clock = iter([0.0, 0.75, 1.5, 3.0, 4.5, 6.0, 7.5, 9.0])  # on time, on time, then 1.5 s apart
    intervals = [pace.tick(next(clock), "run") for _ in range(8)]
    assert intervals[:3] == [2.0, 2.0, 2.0]
    assert intervals[3:] == pytest.approx([3.0, 4.5, 6.75, 10.0, 10.0])  # capped at the slowest
    now = 9.0
    for _ in range(40):  # on time again
        now += 0.75
        back = pace.tick(now, "run")
    assert back == 2.0
    assert pace.tick(now + 60.0, "run") == 2.0  # a long pause is not lateness
    pace.tick(now + 61.5, "run")
    assert pace.tick(now + 62.25, "other run") == 2.0  # a new run starts at the fastest

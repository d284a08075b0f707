"""Figure builders: the traces each chart carries and the axis titles a reader needs."""

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


def test_empty_history_gives_a_readable_placeholder_not_an_error():
    for builder in (figures.loss_figure, figures.weight_change_figure, figures.gradient_flow_figure):
        figure = builder([])
        assert len(figure.data) == 0 and figure.layout.annotations[0].text.startswith("Train a model")


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
    assert _names(figure) == ["steps clipped (%)", "mean norm", "max norm"]
    assert list(figure.data[0].y) == pytest.approx([25, 50, 75, 100])
    assert any(shape.y0 == 1.5 and shape.y1 == 1.5 for shape in figure.layout.shapes)
    assert figure.layout.yaxis2.title.text == "steps clipped (%)"
    assert not figures.gradient_figure(_history(), grad_clip=0).layout.shapes  # no line when clipping is off


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

"""Plotly figures for the dashboard: plain functions, history or results in, a Figure out.

Every builder takes what ``Trainer.fit`` records (a list of epoch dicts) or what ``evaluate``
returns, so each can be tested without Streamlit and reused in a notebook.
"""

from __future__ import annotations

import html
import itertools
import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLORS = {
    "train": "#1f77b4", "validation": "#ff7f0e", "actual": "#222222", "model": "#d62728",
    "persistence": "#7f7f7f", "threshold": "#d62728", "clipped": "rgba(148, 103, 189, 0.35)",
    "interval": "rgba(214, 39, 40, 0.15)", "forecast": "#9467bd", "forecast_interval": "rgba(148, 103, 189, 0.25)",
    "climatology": "#2ca02c", "least squares": "#1f77b4", "nominal": "#444444",
}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]
# units of the columns of the two data sets this project knows (data/README.md, shared/data/README.md)
KNOWN_UNITS = {"temp_max": "°C", "temp_min": "°C", "precipitation": "mm", "wind": "m/s",
               "tmax": "°F", "tmin": "°F", "rain": "in", "tmax_tomorrow": "°F"}


# how units are written in headers, as an axis shows them: "T (degC)" -> °C
HEADER_UNITS = {"degc": "°C", "deg c": "°C", "c": "°C", "°c": "°C", "degf": "°F", "deg f": "°F", "f": "°F",
                "°f": "°F", "millibars": "mbar", "percent": "%"}
_HEADER_UNIT = re.compile(r"[(\[]\s*([^()\[\]]{1,20}?)\s*[)\]](?:\.\d+)?\s*$")


def unit_of(column: str) -> str:
    """The unit of a column for axis titles: the one its own header gives ("T (degC)", "rain [mm]"),
    else a known column's, else ''."""
    written = _HEADER_UNIT.search(str(column))
    if written:
        unit = written.group(1)
        return HEADER_UNITS.get(unit.lower(), unit)
    return KNOWN_UNITS.get(column, "")


MARKER_LIMIT = 40  # epochs up to which the per-epoch charts mark every point
_LAYOUT = dict(template="plotly_white", height=380, margin=dict(l=60, r=20, t=50, b=50),
               legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1), hovermode="x unified")


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _log_tick_text(value: float) -> str:
    """'0.05', '200', '5000'; from 10⁴ on (and below 0.001) '10⁶' or '2×10⁶' instead of '1e+06'."""
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    power = "10" + str(int(exponent)).translate(_SUPERSCRIPT)
    return power if mantissa == "1" else f"{mantissa}×{power}"


def _log_ticks(values) -> dict:
    """Axis settings for a readable log scale: ticks at 1, 2 and 5 times each power of ten over a few decades;
    over more (a diverged run) only powers of ten, and at most about eight of them."""
    positive = [v for v in np.ravel(np.asarray(values, dtype=float)) if np.isfinite(v) and v > 0]
    if not positive:
        return {"type": "log"}
    low, high = int(np.floor(np.log10(min(positive)))), int(np.ceil(np.log10(max(positive))))
    decades = high - low
    mantissas = (1, 2, 5) if decades <= 3 else (1,)
    stride = max(1, -(-decades // 8))
    ticks = [m * 10.0**e for e in range(low, high + 1) if e % stride == 0 for m in mantissas]
    ticks = [t for t in ticks if min(positive) / 2.5 <= t <= max(positive) * 2.5]
    return {"type": "log", "tickvals": ticks, "ticktext": [_log_tick_text(t) for t in ticks]}


def _squared(unit: str) -> str:
    """'°C' -> '°C²', 'm/s' -> '(m/s)²', '' -> 'squared target units'."""
    if not unit:
        return "squared target units"
    return f"({unit})²" if "/" in unit or " " in unit else f"{unit}²"


_LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0)


def _count_range(first: int, last: int) -> list[float]:
    """The x range of a whole-number axis: the first and last count plus a small pad, so nothing is drawn past
    the data (half a unit keeps a bar centred on the last epoch whole)."""
    pad = max(0.5, 0.02 * (last - first))
    return [first - pad, last + pad]


def _count_ticks(first: int, last: int, most: int = 10) -> list[int]:
    """Whole-number ticks from first to at most last: every 1 or 2, or first and the multiples of 5, 10, 20, 50 …"""
    span = last - first
    step = next(m * 10**e for e in itertools.count() for m in (1, 2, 5) if span // (m * 10**e) < most)
    if step <= 2:
        return list(range(first, last + 1, step))
    return [first] + [k for k in range(step * (first // step + 1), last + 1, step)]


def _count_axis(figure: go.Figure, first: int, last: int, title: str) -> None:
    """A whole-number x axis (epochs, batches) that ends at the last count: plotly's linear ticks with a dtick
    drew a tick past the data (a run of 5 epochs showed a 6)."""
    figure.update_xaxes(title_text=title, tickmode="array", tickvals=_count_ticks(first, last),
                        range=_count_range(first, last))


def _epoch_axis(figure: go.Figure, epochs: list[int]) -> None:
    """Whole-number epoch ticks, about ten at most, none past the last epoch."""
    _count_axis(figure, min(epochs), max(epochs), "epoch")


def _epoch_mode(epochs) -> str:
    """Markers on each epoch's point while there are few of them; lines only past MARKER_LIMIT, where
    thousands of SVG markers made every live redraw of the page cost the browser far more CPU."""
    return "lines+markers" if len(epochs) <= MARKER_LIMIT else "lines"


def _empty(title: str, message: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=message, showarrow=False, font=dict(size=14, color="#666"))
    figure.update_layout(title=title, xaxis_visible=False, yaxis_visible=False, **{**_LAYOUT, "height": 260})
    return figure


def param_label(name: str) -> str:
    """'rnn.weight_hh_l0' -> 'W_hh layer 1'; 'head.weight' -> 'head W'."""
    if name.startswith("head."):
        return "head W" if name.endswith("weight") else "head b"
    kind, layer = name.removeprefix("rnn.").rsplit("_l", 1)
    short = {"weight_ih": "W_ih", "weight_hh": "W_hh", "bias_ih": "b_ih", "bias_hh": "b_hh"}[kind]
    return f"{short} layer {int(layer) + 1}"


def weight_matrices(history: list[dict]) -> list[str]:
    """The weight matrices (not biases) named in a history, in parameter order."""
    return [name for name in history[0]["update_norms"] if ".weight" in name] if history else []


def series_figure(frame: pd.DataFrame, column: str, unit: str = "") -> go.Figure:
    """One column of the loaded table over time (the data preview)."""
    unit_text = f" ({unit})" if unit else ""
    figure = go.Figure()
    figure.add_scatter(x=frame.index, y=frame[column], mode="lines", name=column, line=dict(color=COLORS["actual"], width=1))
    figure.update_layout(title=f"{column} over time", showlegend=False, **{**_LAYOUT, "height": 280})
    figure.update_xaxes(title_text="date")
    figure.update_yaxes(title_text=f"{column}{unit_text}")
    return figure


def loss_figure(history: list[dict], log_y: bool = False, target_unit: str = "", *,
                best_epoch: int | None = None, early_stopped: bool = False) -> go.Figure:
    """Training and validation loss per epoch (MSE on standardized targets).

    best_epoch: the epoch whose weights the run kept, starred on the validation curve (ignored when the
    history has no such epoch). early_stopped: the run stopped for lack of improvement; a dotted line marks
    its last epoch.
    """
    if not history:
        return _empty("Loss", "No epochs recorded.")
    epochs = [r["epoch"] for r in history]
    figure = go.Figure()
    figure.add_scatter(x=epochs, y=[r["train_loss"] for r in history], name="train", mode=_epoch_mode(epochs),
                       line=dict(color=COLORS["train"]))
    unit = f" {_squared(target_unit)}" if target_unit else ""
    figure.add_scatter(x=epochs, y=[r["val_loss"] for r in history], name="validation", mode=_epoch_mode(epochs),
                       line=dict(color=COLORS["validation"]),
                       customdata=[r["val_mse"] for r in history],
                       hovertemplate=f"%{{y:.4f}} (MSE %{{customdata:.2f}}{unit})<extra>validation</extra>")
    best = [r for r in history if r["epoch"] == best_epoch]
    if best:
        figure.add_scatter(x=[best_epoch], y=[best[0]["val_loss"]], name=f"best epoch {best_epoch} (weights kept)",
                           mode="markers", marker=dict(symbol="star", size=16, color=COLORS["validation"],
                                                       line=dict(color="#333", width=1)),
                           hovertemplate="%{y:.4f}<extra>best epoch (weights kept)</extra>")
    if early_stopped:
        figure.add_vline(x=epochs[-1], line=dict(color="#555", width=1.5, dash="dot"),
                         annotation_text="early stop", annotation_position="top left",
                         annotation_font=dict(color="#555"))
    figure.update_layout(title="Loss per epoch", **_LAYOUT)
    _epoch_axis(figure, epochs)
    losses = [r["train_loss"] for r in history] + [r["val_loss"] for r in history]
    figure.update_yaxes(title_text="MSE (standardized target)", **(_log_ticks(losses) if log_y else {"type": "linear"}))
    return figure


def _split_rows(predictions: pd.DataFrame, split: str, unit: str, lead: int = 1):
    """The prediction rows of one split (of one lead day, when there are several), and the unit as an
    axis-title suffix."""
    rows = predictions[predictions["split"] == split]
    if "lead" in rows:
        rows = rows[rows["lead"] == lead]
    return rows, (f" ({unit})" if unit else "")


def _lead_text(predictions: pd.DataFrame, lead: int) -> str:
    """', 3 days ahead' when the predictions hold several lead days, else ''."""
    if "lead" not in predictions or predictions["lead"].max() <= 1:
        return ""
    return f", {lead} day{'s' if lead > 1 else ''} ahead"


def _band(figure: go.Figure, dates, lower, upper, name: str, color: str) -> None:
    """A filled band between lower and upper (upper first, then lower filled to it)."""
    figure.add_scatter(x=dates, y=upper, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip",
                       name=f"{name} upper")
    figure.add_scatter(x=dates, y=lower, mode="lines", line=dict(width=0), fill="tonexty", fillcolor=color,
                       name=name, hoverinfo="skip")


def predictions_figure(predictions: pd.DataFrame, target: str, unit: str = "", split: str = "test", lead: int = 1,
                       forecast: pd.DataFrame | None = None) -> go.Figure:
    """Actual target, the model's forecast and persistence on the dates of one split, for one lead day.

    predictions: ``EvaluationResult.predictions``; when it has ``lower`` and ``upper`` the interval is
    drawn as a band. forecast: ``forecast.next_days`` (date, lead, predicted, lower, upper), drawn
    after the data as a separate, shaded segment labelled "forecast".
    """
    rows, unit_text = _split_rows(predictions, split, unit, lead)
    if rows.empty:
        return _empty("Predictions", f"No predictions for the {split} dates.")
    figure = go.Figure()
    if {"lower", "upper"} <= set(rows.columns) and rows["lower"].notna().any():
        _band(figure, rows["date"], rows["lower"], rows["upper"], "interval", COLORS["interval"])
    figure.add_scatter(x=rows["date"], y=rows["actual"], name="actual", mode="lines", line=dict(color=COLORS["actual"], width=1.5))
    figure.add_scatter(x=rows["date"], y=rows["persistence"], name="persistence (same as last day)", mode="lines",
                       line=dict(color=COLORS["persistence"], width=1, dash="dot"))
    figure.add_scatter(x=rows["date"], y=rows["predicted"], name="model", mode="lines", line=dict(color=COLORS["model"], width=1.5))
    if forecast is not None and len(forecast):
        if forecast["lower"].notna().any():
            _band(figure, forecast["date"], forecast["lower"], forecast["upper"], "forecast interval",
                  COLORS["forecast_interval"])
        figure.add_scatter(x=forecast["date"], y=forecast["predicted"], name="forecast (next days)",
                           mode="lines+markers", line=dict(color=COLORS["forecast"], width=2, dash="dash"),
                           marker=dict(size=6, symbol="diamond"))
        figure.add_vrect(x0=forecast["date"].min() - pd.Timedelta(hours=12), x1=forecast["date"].max(),
                         fillcolor="rgba(148, 103, 189, 0.08)", line_width=0, annotation_text="forecast",
                         annotation_position="top left")
    figure.update_layout(title=f"{target}: forecast vs actual, {split} dates{_lead_text(predictions, lead)}", **_LAYOUT)
    figure.update_xaxes(title_text="date")
    figure.update_yaxes(title_text=f"{target}{unit_text}")
    return figure


class LivePace:
    """How often a page redraws its live charts, paced by its browser.

    The page asks for a poll every ``poll`` seconds; ``tick(now, run_id)`` is called at each one and returns
    the seconds between chart redraws: ``fastest`` while polls come on time, growing by half at each poll
    that comes more than 40% late (the browser, or the machine, is busy drawing) up to ``slowest``, and
    shrinking by a tenth at each poll on time again. A gap of more than 3 polls is a pause (the view was
    elsewhere, or no run trained), not lateness; a new run starts at ``fastest``.
    """

    def __init__(self, poll: float, fastest: float = 2.0, slowest: float = 10.0):
        self.poll, self.fastest, self.slowest = poll, fastest, slowest
        self.interval = fastest
        self._last: float | None = None
        self._run = None

    def tick(self, now: float, run_id=None) -> float:
        if run_id != self._run:
            self._run, self._last, self.interval = run_id, None, self.fastest
        if self._last is not None:
            since = now - self._last
            if 1.4 * self.poll < since <= 3 * self.poll:
                self.interval = min(self.slowest, self.interval * 1.5)
            elif since < 1.2 * self.poll:
                self.interval = max(self.fastest, self.interval * 0.9)
        self._last = now
        return self.interval


def live_predictions_figure(dates, actual, persistence, predicted, target: str, unit: str = "",
                            epoch: int | None = None) -> go.Figure:
    """The validation days' lead-1 forecasts by the weights of the latest epoch, while a run trains:
    the predictions chart of a finished run, on the validation dates."""
    frame = pd.DataFrame({"split": "validation", "date": dates, "actual": actual, "persistence": persistence,
                          "predicted": predicted})
    figure = predictions_figure(frame, target, unit, split="validation")
    after = f" after epoch {epoch}" if epoch else ""
    # a half-width chart: a short title, and the legend below, where it cannot run into the title
    figure.update_layout(title=f"{target}: validation forecasts{after}", legend=_LEGEND_BELOW)
    figure.update_yaxes(title_text=f"{target} 1 day ahead" + (f" ({unit})" if unit else ""))
    return figure


def residuals_figure(predictions: pd.DataFrame, target: str, unit: str = "", split: str = "test",
                     lead: int = 1) -> go.Figure:
    """Forecast error (actual − predicted) over time for the model and persistence, and their spread."""
    rows, unit_text = _split_rows(predictions, split, unit, lead)
    if rows.empty:
        return _empty("Residuals", f"No predictions for the {split} dates.")
    figure = make_subplots(rows=1, cols=2, column_widths=[0.72, 0.28], shared_yaxes=True, horizontal_spacing=0.03)
    model_error = rows["actual"] - rows["predicted"]
    persistence_error = rows["actual"] - rows["persistence"]
    figure.add_scatter(x=rows["date"], y=model_error, mode="markers", name="model", marker=dict(size=4, color=COLORS["model"]),
                       row=1, col=1)
    figure.add_hline(y=0, line=dict(color="#444", width=1), row=1, col=1)
    figure.add_histogram(y=persistence_error, name="persistence", marker_color=COLORS["persistence"], opacity=0.5,
                         nbinsy=40, row=1, col=2)
    figure.add_histogram(y=model_error, name="model error spread", marker_color=COLORS["model"], opacity=0.6, nbinsy=40,
                         row=1, col=2)
    figure.update_layout(title=f"Residuals, {split} dates (actual − forecast)", barmode="overlay",
                         **{**_LAYOUT, "legend": _LEGEND_BELOW, "height": 420})
    figure.update_layout(hovermode="closest")
    figure.update_xaxes(title_text="date", row=1, col=1)
    figure.update_xaxes(title_text="days", row=1, col=2)
    figure.update_yaxes(title_text=f"error{unit_text}", row=1, col=1)
    return figure


def weight_change_figure(history: list[dict]) -> go.Figure:
    """Per weight matrix: the update norm ‖Δθ‖ in each epoch (left) and its change from the start in % (right)."""
    if not history:
        return _empty("Weight change", "No epochs recorded.")
    epochs = [r["epoch"] for r in history]
    figure = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                           subplot_titles=("update per epoch ‖Δθ‖", "change from the start"))
    for index, name in enumerate(weight_matrices(history)):
        color = PALETTE[index % len(PALETTE)]
        label = param_label(name)
        figure.add_scatter(x=epochs, y=[r["update_norms"][name] for r in history], name=label, legendgroup=name,
                           mode=_epoch_mode(epochs), line=dict(color=color), row=1, col=1)
        figure.add_scatter(x=epochs, y=[r["relative_change"][name] for r in history], name=label, legendgroup=name,
                           showlegend=False, mode=_epoch_mode(epochs), line=dict(color=color), row=1, col=2)
    # room between the chart title and the two panel titles, and on the right for the right panel's axis,
    # which sits on the right: on its left side its title ran into its tick labels in a half-width column
    figure.update_layout(title="Weight change per matrix",
                         **{**_LAYOUT, "height": 440, "legend": _LEGEND_BELOW,
                            "margin": {**_LAYOUT["margin"], "t": 90, "r": 70}})
    _epoch_axis(figure, epochs)
    updates = [r["update_norms"][name] for r in history for name in weight_matrices(history)]
    figure.update_yaxes(title_text="‖Δθ‖ over the epoch (L2 norm)", **_log_ticks(updates), row=1, col=1)
    figure.update_yaxes(title_text="‖θ − θ₀‖ / ‖θ₀‖ (%)", side="right", row=1, col=2)
    return figure


def gradient_figure(history: list[dict], grad_clip: float = 0.0) -> go.Figure:
    """Pre-clip global gradient norm per epoch (mean and max), the clip threshold, and the share clipped."""
    if not history:
        return _empty("Gradients", "No epochs recorded.")
    epochs = [r["epoch"] for r in history]
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    figure.add_bar(x=epochs, y=[100 * r["clipped_fraction"] for r in history], name="steps clipped (%)",
                   marker_color=COLORS["clipped"], secondary_y=True)
    figure.add_scatter(x=epochs, y=[r["grad_norm_mean"] for r in history], name="mean norm", mode=_epoch_mode(epochs),
                       line=dict(color=COLORS["train"]), secondary_y=False)
    figure.add_scatter(x=epochs, y=[r["grad_norm_max"] for r in history], name="max norm", mode="lines",
                       line=dict(color=COLORS["train"], dash="dash"), secondary_y=False)
    if grad_clip and grad_clip > 0:
        # not add_hline: on this log axis plotly put its label at 10**grad_clip, off the line. The line is a
        # trace (data units); the label an annotation, whose y on a log axis is log10 of the value, and which
        # is drawn above the bars of the right axis where trace text would sit under them
        low, high = _count_range(min(epochs), max(epochs))
        label = f"clip at {grad_clip:g}"
        figure.add_scatter(x=[low, *epochs, high], y=[grad_clip] * (len(epochs) + 2), name=label, mode="lines",
                           showlegend=False, line=dict(color=COLORS["threshold"], dash="dot"),
                           hovertemplate="%{y:g}", secondary_y=False)
        figure.add_annotation(text=label, xref="x domain", x=0.005, xanchor="left", yref="y", y=math.log10(grad_clip),
                              yanchor="bottom", showarrow=False, font=dict(color=COLORS["threshold"]),
                              bgcolor="rgba(255, 255, 255, 0.8)")
    # three legend entries beside this long title collide on a narrow page: the legend goes below
    figure.update_layout(title="Global gradient norm before clipping", **{**_LAYOUT, "height": 420, "legend": _LEGEND_BELOW})
    _epoch_axis(figure, epochs)
    norms = [r["grad_norm_mean"] for r in history] + [r["grad_norm_max"] for r in history] + [grad_clip or 0]
    figure.update_yaxes(title_text="‖g‖ (L2, all parameters)", **_log_ticks(norms), secondary_y=False)
    figure.update_yaxes(title_text="steps clipped (%)", type="linear", range=[0, 100], dtick=25, secondary_y=True,
                        showgrid=False)
    return figure


def gradient_flow_figure(history: list[dict]) -> go.Figure:
    """‖∂L/∂h_t‖ across the lookback window, one line per epoch: how far back the gradient reaches."""
    if not history:
        return _empty("Gradient flow", "No epochs recorded.")
    lookback = len(history[0]["step_grad_norms"])
    steps = [f"t−{lookback - 1 - k}" if k < lookback - 1 else "t (last day)" for k in range(lookback)]
    figure = go.Figure()
    shown = history if len(history) <= 8 else [history[int(i)] for i in np.linspace(0, len(history) - 1, 8)]
    for index, record in enumerate(shown):
        shade = 0.25 + 0.75 * (index + 1) / len(shown)
        figure.add_scatter(x=steps, y=record["step_grad_norms"], mode="lines+markers", name=f"epoch {record['epoch']}",
                           line=dict(color=f"rgba(31, 119, 180, {shade:.2f})"))
    figure.update_layout(title="Gradient reaching each day of the window", **_LAYOUT)
    figure.update_layout(hovermode="closest")
    figure.update_xaxes(title_text="day in the lookback window")
    figure.update_yaxes(title_text="‖∂L/∂hₜ‖ (mean over the epoch)",
                        **_log_ticks([v for r in shown for v in r["step_grad_norms"]]))
    return figure


def runs_overlay_figure(histories: Mapping[str, list[dict]], log_y: bool = False, *, unit: str = "",
                        target: str = "") -> go.Figure:
    """Validation MSE of several runs on one chart, {run label: history}, each run under the label given.

    Which runs are comparable (same target, same data) is the caller's choice; running runs may be among them.
    unit: the target's unit ('°C'), for the axis title; target: the target column, for the chart title.
    """
    chosen = histories
    histories = {label: h for label, h in chosen.items() if h}
    if not histories:
        message = "No epochs recorded in the chosen runs." if chosen else "Pick runs to compare their validation curves."
        return _empty("Compare runs", message)
    squared = _squared(unit)
    figure = go.Figure()
    for index, (label, history) in enumerate(histories.items()):
        figure.add_scatter(x=[r["epoch"] for r in history], y=[r["val_mse"] for r in history], name=label,
                           mode=_epoch_mode(history), line=dict(color=PALETTE[index % len(PALETTE)]),
                           hovertemplate=f"%{{y:.4g}} {squared if unit else ''}")
    title = f"Validation MSE of {target}, chosen runs" if target else "Validation MSE of the chosen runs"
    # run labels are long: the legend goes below the chart, clear of the title
    figure.update_layout(title=title, **{**_LAYOUT, "height": 420, "legend": _LEGEND_BELOW})
    _epoch_axis(figure, [r["epoch"] for h in histories.values() for r in h])
    values = [r["val_mse"] for h in histories.values() for r in h]
    figure.update_yaxes(title_text=f"validation MSE ({squared})", **(_log_ticks(values) if log_y else {"type": "linear"}))
    return figure


def batch_loss_figure(batch_losses: list[float], epoch: int, message: str = "") -> go.Figure:
    """The training loss of each batch in the epoch where a run diverged, up to the blow-up, on a log scale.

    batch_losses: (batches,) in batch order, possibly ending in inf or nan; non-finite losses are left out
    of the line and a dashed line marks the first batch whose loss was not a number. message: why the run
    stopped, shown under the title.
    """
    title = f"Loss per batch in epoch {epoch}, up to the blow-up"
    losses = np.asarray(batch_losses, dtype=float)
    batches = np.arange(1, len(losses) + 1)
    finite = np.isfinite(losses)
    if not finite.any():
        no_line = "No batch loss was a finite number." if len(losses) else "No batch losses recorded."
        return _empty(title, "<br>".join(filter(None, [html.escape(message), no_line])))
    figure = go.Figure()
    figure.add_scatter(x=batches[finite], y=losses[finite], mode="lines+markers", name="training loss",
                       line=dict(color=COLORS["train"]), marker=dict(size=4),
                       hovertemplate="batch %{x}: loss %{y:.4g}<extra></extra>")
    last = len(losses)
    if not finite.all():
        blow_up = int(batches[~finite][0])
        last = max(blow_up, int(batches[finite][-1]))  # the axis ends at the blow-up unless finite losses follow
        word = "nan" if np.isnan(losses[blow_up - 1]) else "inf"
        figure.add_vline(x=blow_up, line=dict(color=COLORS["threshold"], width=1.5, dash="dash"),
                         # at the foot of the line (a blowing-up loss is highest just before it), on the side with room
                         annotation_text=f"loss became {word} at batch {blow_up}",
                         annotation_position="bottom left" if blow_up > (1 + last) / 2 else "bottom right",
                         annotation_font=dict(color=COLORS["threshold"]), annotation_bgcolor="rgba(255, 255, 255, 0.8)")
    figure.update_layout(title=dict(text=title, subtitle=dict(text=html.escape(message))), showlegend=False,
                         **{**_LAYOUT, "margin": {**_LAYOUT["margin"], "t": 80}, "hovermode": "closest"})
    _count_axis(figure, 1, last, f"batch in epoch {epoch}")
    figure.update_yaxes(title_text="training loss (MSE, standardized target)", **_log_ticks(losses[finite]))
    return figure


def scoreboard(metrics: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows = predictors, columns = MSE, RMSE, MAE, R², skill vs persistence, for one split."""
    table = metrics.xs(split, level="split")[["MSE", "RMSE", "MAE", "R2", "skill"]].copy()
    table.columns = ["MSE", "RMSE", "MAE", "R²", "skill vs persistence"]
    table.index.name = "predictor"
    return table


# ---------------------------------------------------------------------------------------------
# The X-ray: gates, saturation, saliency (data from rnnlab.xray)
# ---------------------------------------------------------------------------------------------
def _lag_labels(lookback: int) -> list[str]:
    """Window positions from the oldest day to the last: 't−6', …, 't−1', 't' (lag 0 is the last day)."""
    return [f"t−{lookback - 1 - k}" if k < lookback - 1 else "t" for k in range(lookback)]


def gates_figure(states: dict, layer: int, title: str = "") -> go.Figure:
    """Heat maps over the window (x: day) and units (y) of every gate and state of one layer.

    states: ``xray.gate_states`` output, names like 'layer0.i' → (lookback, hidden).
    """
    prefix = f"layer{layer}."
    names = [name for name in states if name.startswith(prefix)]
    if not names:
        return _empty("Gates and states", "This layer has no recorded states.")
    described = {"i": "input gate i", "f": "forget gate f", "g": "candidate g", "o": "output gate o",
                 "r": "reset gate r", "z": "update gate z", "n": "candidate n", "c": "cell state c",
                 "h": "hidden state h"}
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[described.get(n[len(prefix):], n) for n in names],
                           horizontal_spacing=0.04, vertical_spacing=0.12)
    for index, name in enumerate(names):
        values = np.asarray(states[name])  # (lookback, hidden)
        gate = name[len(prefix):]
        sigmoid = gate in ("i", "f", "o", "r", "z")
        limit = 1.0 if gate != "c" else float(max(1e-9, np.abs(values).max()))
        figure.add_heatmap(z=values.T, x=_lag_labels(values.shape[0]), y=list(range(values.shape[1])),
                           zmin=0.0 if sigmoid else -limit, zmax=1.0 if sigmoid else limit,
                           colorscale="Viridis" if sigmoid else "RdBu", reversescale=not sigmoid,
                           showscale=index in (0, len(names) - 1),
                           colorbar=dict(len=0.45, y=0.78 if index == 0 else 0.22, title="0…1" if sigmoid else "−…+"),
                           hovertemplate="day %{x}, unit %{y}: %{z:.3f}<extra>" + name + "</extra>",
                           row=index // columns + 1, col=index % columns + 1)
    figure.update_layout(title=title or f"Layer {layer + 1}: gates and states over the window",
                         **{**_LAYOUT, "height": 260 * rows + 80, "hovermode": "closest"})
    figure.update_yaxes(title_text="unit", col=1)
    return figure


def saturation_figure(saturation: pd.DataFrame) -> go.Figure:
    """Per gate unit: share of steps left-saturated (< 0.1) against right-saturated (> 0.9).

    saturation: ``xray.gate_saturation`` output (layer, gate, unit, left, right). Units near the
    axes' far ends act as switches; units near the origin work in the gate's linear range.
    """
    if saturation.empty:
        return _empty("Gate saturation", "A plain RNN has no gates.")
    figure = go.Figure()
    for index, ((layer, gate), rows) in enumerate(saturation.groupby(["layer", "gate"], sort=False)):
        gate_name = {"i": "input gate i", "f": "forget gate f", "o": "output gate o", "r": "reset gate r",
                     "z": "update gate z"}.get(gate, gate)
        figure.add_scatter(x=rows["left"], y=rows["right"], mode="markers", name=f"{gate_name}, layer {layer + 1}",
                           marker=dict(size=8, color=PALETTE[index % len(PALETTE)], opacity=0.8),
                           customdata=rows["unit"],
                           hovertemplate="unit %{customdata}: left %{x:.0%}, right %{y:.0%}<extra>%{fullData.name}</extra>")
    figure.add_scatter(x=[0, 1], y=[1, 0], mode="lines", line=dict(color="#bbb", dash="dot"), showlegend=False,
                       hoverinfo="skip")
    figure.update_layout(title="Gate saturation over the test days (each point is one unit)",
                         **{**_LAYOUT, "height": 460, "hovermode": "closest", "legend": _LEGEND_BELOW})
    # zoomed to where the units are (at least 0–10%), so a model whose gates never saturate is still readable
    top = min(1.0, max(0.1, 1.15 * float(saturation[["left", "right"]].to_numpy().max())))
    figure.update_xaxes(title_text="share of steps left-saturated (< 0.1)", range=[-0.02 * top, top * 1.02],
                        tickformat=".0%")
    figure.update_yaxes(title_text="share of steps right-saturated (> 0.9)", range=[-0.02 * top, top * 1.02],
                        tickformat=".0%")
    return figure


def saliency_figure(values, features: list[str], title: str, signed: bool = True) -> go.Figure:
    """A lag × feature heat map of attributions (signed: red adds to the forecast, blue takes away)."""
    values = np.asarray(values, dtype=float)  # (lookback, F)
    limit = float(max(1e-12, np.abs(values).max()))
    figure = go.Figure()
    figure.add_heatmap(z=values.T, x=_lag_labels(values.shape[0]), y=list(features),
                       zmin=-limit if signed else 0.0, zmax=limit, colorscale="RdBu" if signed else "Reds",
                       reversescale=signed, colorbar=dict(title="attribution"),
                       hovertemplate="%{y} on day %{x}: %{z:.4f}<extra></extra>")
    figure.update_layout(title=title, **{**_LAYOUT, "height": 140 + 45 * len(features), "hovermode": "closest"})
    figure.update_xaxes(title_text="day in the lookback window")
    return figure


def occlusion_figure(changes, title: str = "Occlusion: forecast change when one day is replaced by the mean") -> go.Figure:
    """Bars per day of the window: how much the forecast moves when that day's inputs are blanked."""
    changes = np.asarray(changes, dtype=float)
    figure = go.Figure()
    figure.add_bar(x=_lag_labels(len(changes)), y=changes, marker_color=[COLORS["model"] if c >= 0 else COLORS["train"]
                                                                          for c in changes])
    figure.update_layout(title=title, **{**_LAYOUT, "height": 320})
    figure.update_xaxes(title_text="day in the lookback window")
    figure.update_yaxes(title_text="forecast change (scaled target)")
    return figure


# ---------------------------------------------------------------------------------------------
# Forecasts: skill by lead day, interval coverage, the rolling-origin backtest
# ---------------------------------------------------------------------------------------------
def skill_by_lead_figure(lead_metrics: pd.DataFrame, split: str = "test", metric: str = "MSE",
                         unit: str = "") -> go.Figure:
    """One line per predictor (model and each baseline): ``metric`` per lead day on one split.

    lead_metrics: ``EvaluationResult.lead_metrics``, MultiIndex (predictor, split, lead). MSE shows how
    the error grows with the lead time; "skill" (1 − MSE / persistence's) shows where the model stops
    beating "same as the last day".
    """
    if lead_metrics is None or lead_metrics.empty:
        return _empty("Skill by lead day", "No scores per lead day.")
    table = lead_metrics.xs(split, level="split")[metric].unstack("predictor")
    leads = [int(lead) for lead in table.index]
    figure = go.Figure()
    for name in table.columns:
        if metric == "skill" and name == "persistence":
            continue  # 0 by definition: drawn as the reference line below
        model = name == "model"
        figure.add_scatter(x=leads, y=table[name], name=name, mode="lines+markers",
                           line=dict(color=COLORS.get(name, "#444"), width=2.5 if model else 1.5,
                                     dash="solid" if model else "dot"), marker=dict(size=8 if model else 6))
    if metric == "skill":
        figure.add_hline(y=0, line=dict(color=COLORS["persistence"], dash="dash"), annotation_text="persistence",
                         annotation_position="bottom right")
    labels = {"MSE": f"MSE ({_squared(unit)})", "RMSE": f"RMSE{f' ({unit})' if unit else ''}",
              "MAE": f"MAE{f' ({unit})' if unit else ''}", "skill": "skill vs persistence (1 − MSE / MSE persistence)",
              "R2": "R²"}
    figure.update_layout(title=f"{metric} by lead day, {split} dates", **{**_LAYOUT, "hovermode": "x"})
    _count_axis(figure, min(leads), max(leads), "lead (days ahead)")
    figure.update_yaxes(title_text=labels.get(metric, metric))
    return figure


def coverage_figure(intervals: pd.DataFrame, split: str = "test") -> go.Figure:
    """Nominal against empirical coverage per lead day for the model's and persistence's intervals.

    intervals: ``EvaluationResult.interval_table(split)``, rows (predictor, lead) with coverage, width,
    winkler, nominal. Points near the dashed nominal line are honest intervals; below it they are
    too narrow. The hover shows each interval's mean width.
    """
    if intervals is None or len(intervals) == 0:
        return _empty("Interval coverage", "No intervals: the run has no calibration block.")
    nominal = float(intervals["nominal"].iloc[0])
    figure = go.Figure()
    leads = []
    for name, rows in intervals.groupby(level="predictor", sort=False):
        lead = [int(v) for v in rows.index.get_level_values("lead")]
        leads += lead
        figure.add_scatter(x=lead, y=100 * rows["coverage"], name=f"{name} (empirical)", mode="lines+markers",
                           line=dict(color=COLORS.get(name, "#444"), dash="solid" if name == "model" else "dot"),
                           customdata=rows["width"], hovertemplate="%{y:.1f}% covered, mean width %{customdata:.2f}")
    figure.add_hline(y=100 * nominal, line=dict(color=COLORS["nominal"], dash="dash"),
                     annotation_text=f"nominal {nominal:.0%}", annotation_position="bottom right")
    figure.update_layout(title=f"Interval coverage by lead day, {split} dates", **{**_LAYOUT, "hovermode": "x"})
    _count_axis(figure, min(leads), max(leads), "lead (days ahead)")
    low = min(100 * intervals["coverage"].min(), 100 * nominal) - 5
    figure.update_yaxes(title_text="share of days inside the interval (%)", range=[max(0, low), 101])
    return figure


BACKTEST_LABELS = {"model_mse": "model MSE", "persistence_mse": "persistence MSE", "skill": "skill vs persistence",
                   "climatology_mse": "climatology MSE", "least_squares_mse": "least squares MSE",
                   "coverage": "interval coverage", "width": "mean interval width", "winkler": "Winkler score",
                   "persistence_coverage": "persistence interval coverage",
                   "persistence_width": "persistence interval width"}


def backtest_figure(folds: pd.DataFrame, metric: str = "skill") -> go.Figure:
    """One metric per backtest fold (by its origin), with the mean as a line and ± one standard
    deviation as a band. folds: ``backtest.backtest``'s table."""
    if folds is None or folds.empty or metric not in folds:
        return _empty("Backtest", "No folds to show." if folds is None or folds.empty else f"No column {metric}.")
    values = folds[metric].astype(float)
    mean, std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
    labels = [f"fold {f}<br>{pd.Timestamp(o):%Y-%m-%d}" for f, o in zip(folds["fold"], folds["origin"])]
    label = BACKTEST_LABELS.get(metric, metric)
    figure = go.Figure()
    figure.add_hrect(y0=mean - std, y1=mean + std, fillcolor="rgba(31, 119, 180, 0.12)", line_width=0)
    figure.add_scatter(x=labels, y=values, mode="markers+lines", name=label,
                       line=dict(color=COLORS["model"], width=1, dash="dot"), marker=dict(size=10))
    figure.add_hline(y=mean, line=dict(color=COLORS["train"], dash="dash"),
                     annotation_text=f"mean {mean:.3g} ± {std:.2g}", annotation_position="top left")
    if metric in ("model_mse",) and "persistence_mse" in folds:
        figure.add_scatter(x=labels, y=folds["persistence_mse"], mode="markers", name="persistence MSE",
                           marker=dict(color=COLORS["persistence"], size=8, symbol="x"))
    if metric == "coverage" and "persistence_coverage" in folds:
        figure.add_scatter(x=labels, y=folds["persistence_coverage"], mode="markers", name="persistence coverage",
                           marker=dict(color=COLORS["persistence"], size=8, symbol="x"))
    figure.update_layout(title=f"Backtest: {label} per fold (origin date), mean ± standard deviation",
                         **{**_LAYOUT, "hovermode": "closest"})
    figure.update_xaxes(title_text="fold (first day of its test block)")
    figure.update_yaxes(title_text=label)
    return figure


# -- seed bands and sweeps (rnnlab.sweep) ---------------------------------------------------------------------------
_BAND_LABELS = {"val_mse": "validation MSE", "val_loss": "validation loss", "train_loss": "training loss"}


def seed_band_figure(histories: list[list[dict]], columns=("val_mse",), *, unit: str = "", log_y: bool = False,
                     title: str = "") -> go.Figure:
    """The loss curves of a seed band as a band: per epoch the mean (a line) and the min–max range (shaded)
    over the runs that reached that epoch. histories: one list of epoch records per seed.

    Traces per column, in order: "<label> max" (the band's upper edge, no line), "<label> min–max" (the
    lower edge, filled up to the max), "<label> mean".
    """
    from rnnlab.sweep import band

    histories = [h for h in histories if h]
    if not histories:
        return _empty(title or "Seed band", "No epochs recorded yet.")
    figure = go.Figure()
    squared = _squared(unit)
    colors = {"val_mse": COLORS["validation"], "val_loss": COLORS["validation"], "train_loss": COLORS["train"]}
    values = []
    for index, column in enumerate(columns):
        frame = band(histories, column)
        label = _BAND_LABELS.get(column, column)
        color = colors.get(column, PALETTE[index % len(PALETTE)])
        red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
        runs = frame["runs"].tolist()
        figure.add_scatter(x=frame["epoch"], y=frame["max"], name=f"{label} max", mode="lines",
                           line=dict(width=0, color=color), showlegend=False, hoverinfo="skip")
        figure.add_scatter(x=frame["epoch"], y=frame["min"], name=f"{label} min–max", mode="lines",
                           line=dict(width=0, color=color), fill="tonexty",
                           fillcolor=f"rgba({red}, {green}, {blue}, 0.2)", customdata=frame["max"],
                           hovertemplate="%{y:.4g} to %{customdata:.4g}")
        figure.add_scatter(x=frame["epoch"], y=frame["mean"], name=f"{label} mean", mode=_epoch_mode(frame),
                           line=dict(color=color), customdata=runs,
                           hovertemplate="mean %{y:.4g} over %{customdata} runs")
        values += frame["min"].tolist() + frame["max"].tolist()
    seeds = len(histories)
    figure.update_layout(title=title or f"{seeds} seeds: mean and min–max per epoch", **_LAYOUT)
    _epoch_axis(figure, sorted({r["epoch"] for h in histories for r in h}))
    y_title = "MSE" + (f" ({squared})" if unit and all(c == "val_mse" for c in columns) else "")
    figure.update_yaxes(title_text=y_title, **(_log_ticks(values) if log_y else {"type": "linear"}))
    return figure


def parallel_coordinates_figure(trials: pd.DataFrame, settings: list[str], objective: str = "validation MSE",
                                log_settings=(), unit: str = "") -> go.Figure:
    """One line per finished trial across an axis per swept setting and a last axis for the objective,
    coloured by the objective (darker is better). Named settings (model, optimizer) get an axis of their
    names; ``log_settings`` (log ranges, e.g. lr) a log axis labelled in their own values."""
    done = trials[trials[objective].notna()] if objective in trials else trials.iloc[0:0]
    if done.empty:
        return _empty("Trials", "No trial has finished yet.")
    dimensions = []
    for name in settings:
        column = done[name]
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.isna().any():  # named values: an axis of their names
            names = list(dict.fromkeys(column.astype(str)))
            codes = column.astype(str).map({n: i for i, n in enumerate(names)})
            dimensions.append(dict(label=name, values=codes, tickvals=list(range(len(names))), ticktext=names))
        elif name in log_settings:
            logs = np.log10(numeric.astype(float))
            ticks = np.arange(math.floor(logs.min()), math.ceil(logs.max()) + 1)
            # the axis spans whole decades, so every tick is on it (the data's own span may hold none)
            dimensions.append(dict(label=f"{name} (log)", values=logs, tickvals=ticks, range=[ticks[0], ticks[-1]],
                                   ticktext=[_log_tick_text(10.0**t) for t in ticks]))
        else:
            values = numeric.astype(float)
            choices = sorted(values.unique())
            axis = dict(label=name, values=values, tickformat=".4g")
            if len(choices) <= 8:  # a list of choices (hidden_size = 16,32,64): ticks at those values only
                axis.update(tickvals=choices, ticktext=[f"{v:g}" for v in choices])
            dimensions.append(axis)
    scores = done[objective].astype(float)
    label = objective + (f" ({_squared(unit)})" if unit else "")
    dimensions.append(dict(label=label, values=scores, tickformat=".3g"))
    # the axis names below the axes: above them they collided with the top tick in a narrow column
    figure = go.Figure(go.Parcoords(dimensions=dimensions, labelside="bottom", labelfont=dict(size=13),
                                    rangefont=dict(size=1, color="rgba(0,0,0,0)"),
                                    line=dict(color=scores, colorscale="Viridis", showscale=True,
                                              colorbar=dict(title=dict(text=_squared(unit) or "score", side="right"),
                                                            thickness=14, x=1.04))))
    # room for the axis names below the axes, and for the colour bar beside the last axis
    figure.update_layout(title=f"{len(done)} trials: settings and {objective} (darker is better)",
                         **{**_LAYOUT, "height": 440, "hovermode": "closest", "margin": dict(l=70, r=90, t=80, b=70)})
    return figure


def importance_figure(importances: Mapping[str, float], method: str = "Optuna fANOVA") -> go.Figure:
    """How much each swept setting mattered: horizontal bars of its share of the objective's variance,
    the most important on top. importances: {setting: share} as ``sweep.param_importance`` returns."""
    if not importances:
        return _empty("Parameter importance", "It needs at least two finished trials with different settings.")
    ordered = sorted(importances.items(), key=lambda item: item[1])
    figure = go.Figure(go.Bar(x=[share for _, share in ordered], y=[name for name, _ in ordered], orientation="h",
                              marker_color=COLORS["train"], text=[f"{share:.0%}" for _, share in ordered],
                              textposition="auto", hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    figure.update_layout(title=f"Parameter importance ({method})",
                         **{**_LAYOUT, "height": max(220, 60 + 40 * len(ordered)), "hovermode": "closest"})
    figure.update_xaxes(title_text="share of the validation MSE's variance", tickformat=".0%", range=[0, 1])
    return figure

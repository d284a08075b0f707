"""The X-ray: look inside a trained recurrent model — gradient check, gates and states, saliency.

Every function computes on demand from a model and windows it is given (plain NumPy, no figures,
no state), so the dashboard and the CLI call the same code and nothing runs while a model trains.
Windows are scaled model inputs: one window is ``x_window`` (lookback, F), many are ``x_windows``
(n, lookback, F); predictions and attributions are in the scaled target units the model predicts
(multiply by ``prepared.target_scale`` for the target's own units). A model forecasting several lead
days is explained one lead at a time: ``lead`` (1..H, default 1) picks the output. Row ``t`` of a (lookback, …)
array is step ``t`` of the window; lag ``lookback − 1 − t`` counts days back from its last day.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from rnnlab.layers import GATES
from rnnlab.models import RecurrentModel

GREEN_BELOW = 1e-6  # max relative error of a correct float64 backward pass with central differences
RED_ABOVE = 1e-4  # beyond this no rounding explains the gap: the backward pass is wrong
FLOAT32_NOTE = "float32 run checked in float64 because float32 differences are too coarse for 1e-6"
SIGMOID_GATES = {"rnn": (), "lstm": ("i", "f", "o"), "gru": ("r", "z")}
CHUNK_WINDOWS = 1024  # windows per forward/backward pass: bounded memory (LSTM(32, 7): ~20 MB) for any number


# ---------------------------------------------------------------------------------------------
# Gradient check
# ---------------------------------------------------------------------------------------------
def _float64_copy(model: RecurrentModel) -> RecurrentModel:
    """An independent float64 model with the same weights (the caller's model is never touched)."""
    return RecurrentModel(model.kind, model.input_size, model.hidden_size, model.num_layers, model.params, "float64",
                          model.output_size)


def _mse(model: RecurrentModel, x, y) -> float:
    """The loss ``loss_and_grads`` differentiates (mean over windows and lead days), from a forward pass alone."""
    prediction = model.predict(x)
    error = prediction - y.reshape(prediction.shape)
    return float(np.mean(error * error))


def _lead_prediction(model: RecurrentModel, x, lead: int) -> np.ndarray:
    """(n,) the forecast of one lead day (1..H) for windows x (n, lookback, F)."""
    if isinstance(lead, bool) or not isinstance(lead, (int, np.integer)) or not 1 <= lead <= model.output_size:
        raise ValueError(f"lead must be a whole number from 1 to {model.output_size}, got {lead!r}.")
    return model.predict(x)[:, lead - 1]


def _status(max_rel_error: float) -> str:
    if not np.isfinite(max_rel_error) or max_rel_error > RED_ABOVE:
        return "red"
    return "green" if max_rel_error < GREEN_BELOW else "amber"


def gradient_check(model: RecurrentModel, x, y, entries_per_param=8, eps=1e-6, seed=0) -> pd.DataFrame:
    """Central finite differences in float64 against ``loss_and_grads`` on a sample of every parameter.

    x: (batch, lookback, F) a real batch; y: (batch, H) (or (batch,) for H = 1) its scaled targets.
    entries_per_param: entries checked per parameter, drawn without replacement (None: every entry).
    Each checked entry gives |analytic − numeric| / max(|analytic|, |numeric|, floor). The floor is
    the smallest gradient central differences measure to 1e-6 with room to spare (10 × machine
    epsilon × |loss| / eps / 1e-6; 4e-4 for a loss of 0.2 and eps 1e-6): entries below it, which
    rounding alone would paint amber, are
    judged on their absolute error against it, so an error of 1e-2 in any entry still reads red.

    Returns one row per parameter, in ``state_dict`` order: param, max_rel_error, status ("green"
    < 1e-6 ≤ "amber" ≤ 1e-4 < "red"), entries (how many were checked), shape, seconds, note (why a
    float32 model was checked in float64, else ""). ``frame.attrs["note"]`` and
    ``frame.attrs["seconds"]`` hold the note and the total time.
    """
    started = time.perf_counter()
    checked = _float64_copy(model)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(len(x), model.output_size)
    loss, grads = checked.loss_and_grads(x, y)
    # a central difference resolves a gradient only to about machine epsilon × |loss| / eps (the
    # rounding of the two losses); an entry below 10 × that resolution / GREEN_BELOW cannot be
    # measured to 1e-6 relative with room to spare (without the 10, checking every entry of a
    # correct LSTM(16) reads up to 1.0e-6), so it is judged on its absolute error against that floor
    resolution = np.finfo(np.float64).eps * max(abs(loss), np.finfo(np.float64).tiny) / eps
    floor = 10 * resolution / GREEN_BELOW
    rng = np.random.default_rng(seed)
    note = FLOAT32_NOTE if np.dtype(model.dtype) == np.float32 else ""
    rows = []
    for name, param in checked.params.items():
        param_started = time.perf_counter()
        flat = param.reshape(-1)  # a view: writing an entry perturbs the model
        count = flat.size if entries_per_param is None else min(int(entries_per_param), flat.size)
        entries = np.sort(rng.choice(flat.size, size=count, replace=False))
        analytic = np.asarray(grads[name], dtype=np.float64).reshape(-1)[entries]
        numeric = np.empty(count)
        for j, entry in enumerate(entries):
            original = flat[entry]
            flat[entry] = original + eps
            loss_plus = _mse(checked, x, y)
            flat[entry] = original - eps
            loss_minus = _mse(checked, x, y)
            flat[entry] = original
            numeric[j] = (loss_plus - loss_minus) / (2 * eps)
        scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor)
        max_rel_error = float(np.max(np.abs(analytic - numeric) / scale))
        rows.append({"param": name, "shape": "×".join(map(str, param.shape)), "max_rel_error": max_rel_error,
                     "entries": count, "status": _status(max_rel_error),
                     "seconds": time.perf_counter() - param_started, "note": note})
    frame = pd.DataFrame(rows, columns=["param", "max_rel_error", "status", "entries", "shape", "seconds", "note"])
    frame.attrs["note"] = note
    frame.attrs["seconds"] = time.perf_counter() - started
    return frame


# ---------------------------------------------------------------------------------------------
# Gates, cell state and hidden state
# ---------------------------------------------------------------------------------------------
def _window(model: RecurrentModel, x_window) -> np.ndarray:
    """One window as a float64 (lookback, F) array, or a readable error."""
    x = np.asarray(x_window, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != model.input_size:
        raise ValueError(f"Expected one window of shape (lookback, {model.input_size}), got {x.shape}.")
    return x


def _windows(model: RecurrentModel, x_windows) -> np.ndarray:
    x = np.asarray(x_windows, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] != model.input_size or len(x) == 0:
        raise ValueError(f"Expected windows of shape (n ≥ 1, lookback, {model.input_size}), got {x.shape}.")
    return x


def gate_states(model: RecurrentModel, x_window) -> dict[str, np.ndarray]:
    """Every gate and state of every layer over one window: name -> (lookback, hidden).

    x_window: (lookback, F). Names ``layer{k}.{i,f,g,o,c,h}`` for an LSTM (c the cell state, h the
    hidden state), ``layer{k}.{r,z,n,h}`` for a GRU, ``layer{k}.h`` for the plain RNN. Row t is the
    value after step t, in the model's own precision.
    """
    states = model.states(_window(model, x_window)[None])
    return {name: values[0] for name, values in states.items()}


def gate_saturation(model: RecurrentModel, x_windows, low=0.1, high=0.9) -> pd.DataFrame:
    """Share of steps each sigmoid gate unit spends left-saturated (< low) and right-saturated (> high).

    x_windows: (n, lookback, F). After Karpathy, Johnson & Fei-Fei (2015), "Visualizing and
    Understanding Recurrent Networks": a unit near 0 or 1 most of the time acts as a switch.
    Only the sigmoid gates are counted (LSTM i, f, o; GRU r, z): the tanh-valued g, n and states
    range over (−1, 1), where 0.1 and 0.9 mark no saturation. The plain RNN has no gates (empty frame).

    Returns one row per layer, gate and unit: layer, gate, unit, left, right (shares in [0, 1] of
    all n × lookback steps), steps.
    """
    x = _windows(model, x_windows)
    if not low < high:
        raise ValueError(f"low must be below high, got low={low} and high={high}.")
    gates = SIGMOID_GATES[model.kind]
    shape = (model.num_layers, len(gates), model.hidden_size)
    left, right = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    for start in range(0, len(x), CHUNK_WINDOWS):
        states = model.states(x[start : start + CHUNK_WINDOWS])
        for k in range(model.num_layers):
            for j, gate in enumerate(gates):
                values = states[f"layer{k}.{gate}"]  # (chunk, lookback, hidden)
                left[k, j] += (values < low).sum(axis=(0, 1))
                right[k, j] += (values > high).sum(axis=(0, 1))
    steps = x.shape[0] * x.shape[1]
    layer, gate, unit = np.meshgrid(np.arange(model.num_layers), np.arange(len(gates)),
                                    np.arange(model.hidden_size), indexing="ij")
    return pd.DataFrame({
        "layer": layer.ravel(), "gate": np.asarray(gates, dtype=object)[gate.ravel()] if gates else [],
        "unit": unit.ravel(), "left": left.ravel() / steps, "right": right.ravel() / steps, "steps": steps,
    })


# ---------------------------------------------------------------------------------------------
# Saliency: integrated gradients and occlusion
# ---------------------------------------------------------------------------------------------
def _baseline(baseline, shape) -> np.ndarray:
    """The reference input: zeros (the training mean, after scaling) unless given; broadcast to ``shape``."""
    if baseline is None:
        return np.zeros(shape)
    try:
        return np.broadcast_to(np.asarray(baseline, dtype=np.float64), shape)
    except ValueError:
        raise ValueError(f"The baseline of shape {np.shape(baseline)} does not fit windows of shape {shape}.") from None


def _check_steps(steps) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a whole number ≥ 1, got {steps!r}.")
    return int(steps)


def _path_attributions(model: RecurrentModel, x, base, steps, lead=1) -> np.ndarray:
    """Integrated gradients of many windows: x, base (n, lookback, F) -> attributions (n, lookback, F).

    The straight path base + α (x − base) is sampled at α = 0, 1/steps, …, 1 and the gradients are
    averaged with the trapezoid rule; all windows' path points go through ``input_gradient`` in
    batches of at most CHUNK_WINDOWS.
    """
    alphas = np.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] = 0.5 / steps
    per_chunk = max(1, CHUNK_WINDOWS // (steps + 1))  # windows whose path points fit one pass
    attributions = np.empty_like(x)
    for start in range(0, len(x), per_chunk):
        xs, bases = x[start : start + per_chunk], base[start : start + per_chunk]
        delta = xs - bases
        path = bases[:, None] + alphas[None, :, None, None] * delta[:, None]  # (n, steps+1, lookback, F)
        gradient = model.input_gradient(path.reshape(-1, *x.shape[1:]), lead=lead).reshape(path.shape)
        attributions[start : start + per_chunk] = delta * np.tensordot(weights, gradient, axes=(0, 1))
    return attributions


def integrated_gradients(model: RecurrentModel, x_window, baseline=None, steps=64, tolerance=0.01,
                         max_steps=4096, lead=1):
    """Integrated gradients (Sundararajan et al., 2017) of the forecast of one lead day for one window.

    x_window: (lookback, F); baseline: (lookback, F) or broadcastable, default zeros = the training
    mean after scaling. Uses the exact input gradient of the prediction (``model.input_gradient``)
    along the straight path, ``steps`` trapezoid intervals.

    Returns ``(attributions, completeness)``: attributions (lookback, F) in scaled target units, and
    completeness, a dict checking Σ attributions = prediction − baseline prediction:
      sum_of_attributions, prediction, baseline_prediction, difference (prediction − baseline
      prediction), gap (sum_of_attributions − difference), relative_gap (|gap| / |difference|, NaN
      when the difference is 0), steps, steps_for_tolerance (the fewest of 1, 2, 4, … max_steps
      intervals whose relative gap is below ``tolerance``, None if none is), tolerance.
    """
    x = _window(model, x_window)
    base = _baseline(baseline, x.shape)
    steps = _check_steps(steps)
    attributions = _path_attributions(model, x[None], base[None], steps, lead)[0]
    prediction, baseline_prediction = (float(value) for value in _lead_prediction(model, np.stack([x, base]), lead))
    difference = prediction - baseline_prediction

    def relative_gap(total):
        return abs(total - difference) / abs(difference) if difference != 0 else float("nan")

    steps_for = None
    trial = 1
    while difference != 0 and trial <= max_steps:
        total = attributions.sum() if trial == steps else _path_attributions(model, x[None], base[None], trial, lead).sum()
        if relative_gap(total) < tolerance:
            steps_for = trial
            break
        trial *= 2
    total = float(attributions.sum())
    completeness = {"sum_of_attributions": total, "prediction": prediction,
                    "baseline_prediction": baseline_prediction, "difference": difference,
                    "gap": total - difference, "relative_gap": relative_gap(total), "steps": steps,
                    "steps_for_tolerance": steps_for, "tolerance": tolerance}
    return attributions, completeness


def mean_abs_attribution(model: RecurrentModel, x_windows, steps=32, baseline=None, lead=1) -> np.ndarray:
    """Mean |integrated gradient| over many windows: x_windows (n, lookback, F) -> (lookback, F).

    Which days back and which variables the model uses, on average; baseline as in
    :func:`integrated_gradients` (one (lookback, F) baseline for every window).
    """
    x = _windows(model, x_windows)
    base = _baseline(baseline, x.shape[1:])
    steps = _check_steps(steps)
    total = np.zeros(x.shape[1:])
    per_chunk = max(1, CHUNK_WINDOWS // (steps + 1))
    for start in range(0, len(x), per_chunk):
        chunk = x[start : start + per_chunk]
        attributions = _path_attributions(model, chunk, np.broadcast_to(base, chunk.shape), steps, lead)
        total += np.abs(attributions).sum(axis=0)
    return total / len(x)


def occlusion(model: RecurrentModel, x_window, baseline=None, by="lag", lead=1) -> np.ndarray:
    """How much the forecast moves when part of the window is replaced by the baseline.

    x_window: (lookback, F); baseline as in :func:`integrated_gradients` (default zeros, the training
    mean). by="lag": one step (all features) at a time -> (lookback,); by="cell": one step × feature
    at a time -> (lookback, F). Each value is prediction − prediction with that part occluded, in
    scaled target units, so its sign reads like an attribution's. All occluded windows run as one batch.
    """
    x = _window(model, x_window)
    base = _baseline(baseline, x.shape)
    lookback, features = x.shape
    if by == "lag":
        occluded = np.repeat(x[None], lookback, axis=0)
        steps = np.arange(lookback)
        occluded[steps, steps] = base
    elif by == "cell":
        occluded = np.repeat(x[None], lookback * features, axis=0)
        steps, columns = np.divmod(np.arange(lookback * features), features)
        occluded[np.arange(lookback * features), steps, columns] = base[steps, columns]
    else:
        raise ValueError(f"by must be 'lag' or 'cell', got {by!r}.")
    predictions = _lead_prediction(model, np.concatenate([x[None], occluded]), lead)
    change = predictions[0] - predictions[1:]
    return change if by == "lag" else change.reshape(lookback, features)


def attribution_table(values, features) -> pd.DataFrame:
    """A (lookback, F) map as rows of lag, feature, attribution; lag 0 is the window's last day."""
    values = np.asarray(values, dtype=np.float64)
    lookback, count = values.shape
    if count != len(features):
        raise ValueError(f"Got {count} columns of attributions but {len(features)} feature names.")
    steps, columns = np.divmod(np.arange(values.size), count)
    return pd.DataFrame({"lag": lookback - 1 - steps, "feature": np.asarray(features, dtype=object)[columns],
                         "attribution": values.ravel()})


# ---------------------------------------------------------------------------------------------
# Choosing the day
# ---------------------------------------------------------------------------------------------
def worst_day(predictions: pd.DataFrame, split="test", lead=1) -> pd.Timestamp:
    """The date of ``split`` whose forecast of ``lead`` days ahead missed most: predictions has date,
    split, actual, predicted and, for several lead days, lead (``EvaluationResult.predictions``)."""
    rows = predictions[predictions["split"] == split]
    if "lead" in rows:
        rows = rows[rows["lead"] == lead]
    if rows.empty:
        raise ValueError(f"There are no {split} days to choose the worst-predicted day from.")
    return pd.Timestamp(rows["date"].iloc[int(np.argmax(np.abs(rows["actual"] - rows["predicted"]).to_numpy()))])


def window_for_date(prepared, date, splits=("validation", "test", "train"), lead=1) -> tuple[str, int]:
    """(split, index) of the window whose forecast of ``lead`` days ahead is for ``date``;
    ``prepared.inputs(split, index)`` gathers it. Raises ValueError naming the days that have a
    window when none forecasts ``date``."""
    date = pd.Timestamp(date)
    day_only = date == date.normalize()  # a plain date matches its day's first window in hourly data
    forecast_days = {split: pd.DatetimeIndex(prepared.row_dates[prepared.target_rows(split)[:, lead - 1]])
                     for split in splits}
    for split, dates in forecast_days.items():
        found = np.flatnonzero((dates.normalize() if day_only else dates) == date)
        if len(found):
            return split, int(found[0])
    spans = [f"{split} {pd.Timestamp(d.min()).date()} to {pd.Timestamp(d.max()).date()}"
             for split, d in forecast_days.items() if len(d)]
    raise ValueError(f"No window forecasts {date.date()}: the forecast days are {'; '.join(spans)} "
                     f"(days after a gap or a filled-in target have no window).")

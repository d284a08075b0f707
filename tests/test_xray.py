"""The X-ray: gradient check, gates and states, saliency — each against an independent computation."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rnnlab import xray
from rnnlab.config import TrainConfig
from rnnlab.models import RecurrentModel, create_model, param_shapes
from rnnlab.train import Trainer

ROOT = Path(__file__).resolve().parents[1]


def _model(kind, input_size=3, hidden=4, num_layers=1, seed=0, dtype="float64"):
    """A model with non-zero biases of ordinary size, so every path of every gate is exercised."""
    model = create_model(kind, input_size, hidden, num_layers, seed=seed)
    rng = np.random.default_rng(seed + 100)
    params = {name: value + rng.normal(0.0, 0.3, value.shape) for name, value in model.params.items()}
    return RecurrentModel(kind, input_size, hidden, num_layers, params, dtype=dtype)


@pytest.fixture(scope="module")
def trained(seattle_prepared):
    return Trainer(TrainConfig(hidden_size=8, epochs=3), seattle_prepared).fit().model


# ---------------------------------------------------------------------------------------------
# Gradient check
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_gradient_check_is_green_on_the_real_backward_pass(kind, seattle_prepared):
    model = _model(kind, input_size=seattle_prepared.n_features, hidden=6, num_layers=2)
    x, y = seattle_prepared.inputs("train", slice(0, 32)), seattle_prepared.targets("train", slice(0, 32))
    frame = xray.gradient_check(model, x, y)
    assert list(frame["param"]) == list(model.params)
    assert (frame["status"] == "green").all(), frame
    assert (frame["max_rel_error"] < 1e-6).all() and (frame["entries"] == np.minimum(8, [p.size for p in model.params.values()])).all()
    assert frame.attrs["note"] == "" and frame.attrs["seconds"] > 0


def test_a_float32_model_is_checked_in_float64_and_says_so(seattle_prepared):
    model = _model("lstm", input_size=seattle_prepared.n_features, dtype="float32")
    x, y = seattle_prepared.inputs("train", slice(0, 16)), seattle_prepared.targets("train", slice(0, 16))
    before = {name: value.copy() for name, value in model.params.items()}
    frame = xray.gradient_check(model, x, y)
    assert (frame["status"] == "green").all(), frame
    assert frame.attrs["note"] == xray.FLOAT32_NOTE and (frame["note"] == xray.FLOAT32_NOTE).all()
    assert "float64" in frame.attrs["note"] and "1e-6" in frame.attrs["note"]
    assert model.dtype == "float32"  # the caller's model is left as it was
    for name, value in model.params.items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.parametrize("broken_param, entry, entries_per_param", [
    ("rnn.weight_hh_l0", (5, 1), None),  # every entry checked, so the broken one surely is
    ("head.bias", (0,), 8),  # one entry: always sampled
    ("rnn.bias_ih_l1", (2,), None),
])
def test_gradient_check_flags_exactly_the_parameter_whose_gradient_is_broken(monkeypatch, broken_param, entry,
                                                                            entries_per_param):
    real = RecurrentModel.loss_and_grads

    def broken(self, x, y, return_step_norms=False):
        loss, grads = real(self, x, y)
        grads[broken_param] = grads[broken_param].copy()
        grads[broken_param][entry] += 1e-2
        return loss, grads

    monkeypatch.setattr(RecurrentModel, "loss_and_grads", broken)
    model = _model("gru", input_size=3, hidden=4, num_layers=2)
    rng = np.random.default_rng(1)
    frame = xray.gradient_check(model, rng.normal(size=(16, 5, 3)), rng.normal(size=16),
                                entries_per_param=entries_per_param)
    flagged = frame.set_index("param")["status"]
    assert flagged[broken_param] == "red"
    assert (flagged.drop(broken_param) == "green").all(), frame


# ---------------------------------------------------------------------------------------------
# Gates and states, against the PyTorch equations written out step by step
# ---------------------------------------------------------------------------------------------
def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _reference_states(model, x_window):
    """One step at a time, one window, straight from the equations in torch.nn.LSTM/GRU/RNN's docs."""
    out, layer_input = {}, x_window
    hidden = model.hidden_size
    for k in range(model.num_layers):
        w_ih, w_hh = model.params[f"rnn.weight_ih_l{k}"], model.params[f"rnn.weight_hh_l{k}"]
        b_ih, b_hh = model.params[f"rnn.bias_ih_l{k}"], model.params[f"rnn.bias_hh_l{k}"]
        h, c = np.zeros(hidden), np.zeros(hidden)
        rows = {name: [] for name in ("i", "f", "g", "o", "c", "r", "z", "n", "h")}
        for x_t in layer_input:
            if model.kind == "rnn":
                h = np.tanh(w_ih @ x_t + b_ih + w_hh @ h + b_hh)
            elif model.kind == "lstm":
                a = w_ih @ x_t + b_ih + w_hh @ h + b_hh
                i, f = _sigmoid(a[:hidden]), _sigmoid(a[hidden : 2 * hidden])
                g, o = np.tanh(a[2 * hidden : 3 * hidden]), _sigmoid(a[3 * hidden :])
                c = f * c + i * g
                h = o * np.tanh(c)
                for name, value in zip("ifgoc", (i, f, g, o, c)):
                    rows[name].append(value)
            else:
                gi, gh = w_ih @ x_t + b_ih, w_hh @ h + b_hh
                r = _sigmoid(gi[:hidden] + gh[:hidden])
                z = _sigmoid(gi[hidden : 2 * hidden] + gh[hidden : 2 * hidden])
                n = np.tanh(gi[2 * hidden :] + r * gh[2 * hidden :])
                h = (1 - z) * n + z * h
                for name, value in zip("rzn", (r, z, n)):
                    rows[name].append(value)
            rows["h"].append(h)
        for name, values in rows.items():
            if values:
                out[f"layer{k}.{name}"] = np.array(values)
        layer_input = out[f"layer{k}.h"]
    return out


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_gate_states_equal_a_step_by_step_recomputation(kind, num_layers):
    model = _model(kind, input_size=3, hidden=5, num_layers=num_layers)
    x_window = np.random.default_rng(2).normal(size=(6, 3))
    states = xray.gate_states(model, x_window)
    expected = _reference_states(model, x_window)
    assert sorted(states) == sorted(expected)
    names = {"rnn": ["h"], "lstm": ["i", "f", "g", "o", "c", "h"], "gru": ["r", "z", "n", "h"]}[kind]
    assert sorted(states) == sorted(f"layer{k}.{name}" for k in range(num_layers) for name in names)
    for name, values in expected.items():
        assert states[name].shape == (6, 5)
        np.testing.assert_allclose(states[name], values, rtol=1e-12, atol=1e-13, err_msg=name)
    # the last hidden state is what the head reads
    head = model.params["head.weight"][0] @ states[f"layer{num_layers - 1}.h"][-1] + model.params["head.bias"][0]
    np.testing.assert_allclose(head, model.predict(x_window[None])[0], rtol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gate_states_equal_pytorch_with_the_same_weights(kind):
    torch = pytest.importorskip("torch")
    model = _model(kind, input_size=3, hidden=5, num_layers=2)
    network = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](3, 5, 2, batch_first=True).double()
    network.load_state_dict({name[len("rnn."):]: torch.from_numpy(value) for name, value in model.params.items()
                             if name.startswith("rnn.")})
    x_window = np.random.default_rng(3).normal(size=(6, 3))
    with torch.no_grad():
        output, final = network(torch.from_numpy(x_window[None]))
    states = xray.gate_states(model, x_window)
    np.testing.assert_allclose(states["layer1.h"], output[0].numpy(), rtol=1e-12, atol=1e-13)
    h_n = final[0] if kind == "lstm" else final
    for k in range(2):
        np.testing.assert_allclose(states[f"layer{k}.h"][-1], h_n[k, 0].numpy(), rtol=1e-12, atol=1e-13)
        if kind == "lstm":
            np.testing.assert_allclose(states[f"layer{k}.c"][-1], final[1][k, 0].numpy(), rtol=1e-12, atol=1e-13)


def _biased_model(kind, gate_bias):
    """Zero weights; each gate's bias set from ``gate_bias``, so its activation is the same at every step."""
    hidden, shapes = 3, param_shapes(kind, 2, 3)
    params = {name: np.zeros(shape) for name, shape in shapes.items()}
    for j, gate in enumerate({"lstm": "ifgo", "gru": "rzn"}[kind]):
        params["rnn.bias_ih_l0"][j * hidden : (j + 1) * hidden] = gate_bias.get(gate, 0.0)
    return RecurrentModel(kind, 2, hidden, 1, params)


def test_gate_saturation_counts_gates_that_a_bias_holds_shut_or_open():
    x_windows = np.random.default_rng(4).normal(size=(10, 5, 2))
    frame = xray.gate_saturation(_biased_model("lstm", {"i": -20.0, "f": 20.0}), x_windows)
    assert list(frame.columns) == ["layer", "gate", "unit", "left", "right", "steps"]
    assert len(frame) == 3 * 3 and set(frame["gate"]) == {"i", "f", "o"}  # sigmoid gates only
    by_gate = frame.groupby("gate")[["left", "right"]].mean()
    assert by_gate.loc["i"].tolist() == [1.0, 0.0]  # σ(−20): left-saturated at every step
    assert by_gate.loc["f"].tolist() == [0.0, 1.0]
    assert by_gate.loc["o"].tolist() == [0.0, 0.0]  # σ(0) = 0.5
    assert (frame["steps"] == 50).all()

    gru = xray.gate_saturation(_biased_model("gru", {"z": 3.0}), x_windows, low=0.2, high=0.95)
    by_gate = gru.groupby("gate")[["left", "right"]].mean()
    assert by_gate.loc["z"].tolist() == [0.0, 1.0] and by_gate.loc["r"].tolist() == [0.0, 0.0]  # σ(3) = 0.953
    assert xray.gate_saturation(_model("rnn"), x_windows[:, :, :1].repeat(3, axis=2)).empty


# ---------------------------------------------------------------------------------------------
# Saliency
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_input_gradient_matches_central_finite_differences(kind, num_layers):
    model = _model(kind, input_size=3, hidden=4, num_layers=num_layers)
    x = np.random.default_rng(5).normal(size=(3, 5, 3))
    prediction, gradient = model.input_gradient(x, return_prediction=True)
    np.testing.assert_array_equal(prediction, model.predict(x)[:, 0])  # predict is (batch, lead days); lead 1
    eps, numeric = 1e-6, np.empty_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (model.predict(plus)[index[0], 0] - model.predict(minus)[index[0], 0]) / (2 * eps)
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-9)


def test_integrated_gradients_are_complete_within_one_percent_on_a_trained_model(trained, seattle_prepared):
    x_test = seattle_prepared.inputs("test")
    for index in (0, 50, 150):
        attributions, completeness = xray.integrated_gradients(trained, x_test[index])
        assert attributions.shape == (seattle_prepared.lookback, seattle_prepared.n_features)
        prediction = trained.predict(x_test[index][None])[0]
        baseline_prediction = trained.predict(np.zeros_like(x_test[index])[None])[0]
        assert completeness["prediction"] == pytest.approx(prediction, rel=1e-12)
        assert completeness["baseline_prediction"] == pytest.approx(baseline_prediction, rel=1e-12)
        assert completeness["sum_of_attributions"] == pytest.approx(attributions.sum())
        assert abs(attributions.sum() - (prediction - baseline_prediction)) < 0.01 * abs(prediction - baseline_prediction)
        assert completeness["relative_gap"] < 0.01 and completeness["steps"] == 64
        steps_for = completeness["steps_for_tolerance"]
        assert steps_for is not None and steps_for <= 64
        _, coarse = xray.integrated_gradients(trained, x_test[index], steps=steps_for)
        assert coarse["relative_gap"] < 0.01


def test_integrated_gradients_of_a_linear_model_are_weight_times_input():
    """A one-step RNN with a tiny input weight is linear to 1e-12: attributions are w·(x − baseline)."""
    params = {name: np.zeros(shape) for name, shape in param_shapes("rnn", 3, 1).items()}
    params["rnn.weight_ih_l0"][0] = [1e-4, -2e-4, 3e-4]
    params["head.weight"][0, 0] = 1.0
    model = RecurrentModel("rnn", 3, 1, 1, params)
    x, baseline = np.array([[1.0, 2.0, -1.0]]), np.array([[0.5, 0.0, 1.0]])
    attributions, completeness = xray.integrated_gradients(model, x, baseline=baseline, steps=8)
    np.testing.assert_allclose(attributions, params["rnn.weight_ih_l0"].T.ravel() * (x - baseline), rtol=1e-7)
    assert completeness["relative_gap"] < 1e-7 and completeness["steps_for_tolerance"] == 1


def test_mean_abs_attribution_is_the_mean_of_each_windows_integrated_gradients(trained, seattle_prepared):
    x_windows = seattle_prepared.inputs("test", slice(0, 12))
    expected = np.mean([np.abs(xray.integrated_gradients(trained, window, steps=16)[0]) for window in x_windows], axis=0)
    np.testing.assert_allclose(xray.mean_abs_attribution(trained, x_windows, steps=16), expected, rtol=1e-10)


def test_mean_abs_attribution_gives_the_same_answer_in_small_chunks(trained, seattle_prepared, monkeypatch):
    x_windows = seattle_prepared.inputs("test", slice(0, 20))
    whole = xray.mean_abs_attribution(trained, x_windows, steps=8)
    monkeypatch.setattr(xray, "CHUNK_WINDOWS", 20)  # 2 windows' paths per pass
    np.testing.assert_allclose(xray.mean_abs_attribution(trained, x_windows, steps=8), whole, rtol=1e-12)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_occluding_a_feature_the_model_cannot_see_changes_nothing(kind):
    model = _model(kind, input_size=3, hidden=4, num_layers=2)
    model.params["rnn.weight_ih_l0"][:, 1] = 0.0  # feature 1 never enters the network
    x_window = np.random.default_rng(6).normal(size=(7, 3))
    cells = xray.occlusion(model, x_window, by="cell")
    assert cells.shape == (7, 3)
    assert (cells[:, 1] == 0.0).all()
    assert (cells[:, [0, 2]] != 0.0).all()
    attributions, _ = xray.integrated_gradients(model, x_window)
    assert (attributions[:, 1] == 0.0).all()


def test_occlusion_of_one_lag_is_the_change_of_the_forecast():
    model = _model("lstm", input_size=3, hidden=4)
    x_window = np.random.default_rng(7).normal(size=(5, 3))
    baseline = np.full((5, 3), 0.25)
    lags = xray.occlusion(model, x_window, baseline=baseline)
    assert lags.shape == (5,)
    for t in range(5):
        occluded = x_window.copy()
        occluded[t] = 0.25
        expected = model.predict(x_window[None])[0] - model.predict(occluded[None])[0]
        assert lags[t] == pytest.approx(expected, rel=1e-10, abs=1e-14)
    with pytest.raises(ValueError, match="'lag' or 'cell'"):
        xray.occlusion(model, x_window, by="feature")


def test_attribution_table_counts_lags_back_from_the_last_day():
    table = xray.attribution_table(np.arange(6.0).reshape(3, 2), ["rain", "wind"])
    assert list(table.columns) == ["lag", "feature", "attribution"]
    assert table.iloc[0].tolist() == [2, "rain", 0.0]  # the window's first day is lag lookback − 1
    assert table.iloc[-1].tolist() == [0, "wind", 5.0]


def test_bad_arguments_get_readable_errors():
    model = _model("lstm")
    with pytest.raises(ValueError, match=r"one window of shape \(lookback, 3\)"):
        xray.gate_states(model, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="steps must be a whole number"):
        xray.integrated_gradients(model, np.zeros((5, 3)), steps=0)
    with pytest.raises(ValueError, match="baseline of shape"):
        xray.integrated_gradients(model, np.zeros((5, 3)), baseline=np.zeros(4))
    with pytest.raises(ValueError, match="low must be below high"):
        xray.gate_saturation(model, np.zeros((1, 5, 3)), low=0.9, high=0.1)


# ---------------------------------------------------------------------------------------------
# Choosing the day, and the CLI end to end
# ---------------------------------------------------------------------------------------------
def test_window_for_date_finds_the_window_that_forecasts_that_day(seattle_prepared):
    dates = seattle_prepared.windows["test"]["dates"]
    split, index = xray.window_for_date(seattle_prepared, dates[10])
    assert (split, index) == ("test", 10)
    last_input_day = seattle_prepared.row_dates[seattle_prepared.starts["test"][10] + seattle_prepared.lookback - 1]
    assert last_input_day == pd.Timestamp(dates[10]) - pd.Timedelta(days=seattle_prepared.horizon)
    with pytest.raises(ValueError, match="No window forecasts 1990-01-01"):
        xray.window_for_date(seattle_prepared, "1990-01-01")


def test_worst_day_is_the_largest_miss_of_the_split():
    predictions = pd.DataFrame({"date": pd.to_datetime(["2015-01-01", "2015-01-02", "2015-01-03", "2014-01-01"]),
                                "split": ["test", "test", "test", "validation"],
                                "actual": [1.0, 2.0, 3.0, 50.0], "predicted": [1.5, -1.0, 3.0, 0.0]})
    assert xray.worst_day(predictions) == pd.Timestamp("2015-01-02")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "rnnlab", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    done = _cli("train", "--epochs", "1", "--hidden-size", "4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def test_inspect_writes_the_gradient_check_gates_and_saliency_of_a_day(tiny_run, tmp_path):
    predictions = pd.read_csv(tiny_run / "predictions.csv", parse_dates=["date"])
    day = predictions[predictions["split"] == "test"]["date"].iloc[20]
    done = _cli("inspect", "--weights", str(tiny_run / "model.safetensors"), "--date", f"{day:%Y-%m-%d}",
                "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    gradcheck = pd.read_csv(tmp_path / "gradcheck.csv")
    assert list(gradcheck.columns[:2]) == ["param", "max_rel_error"]
    assert (gradcheck["max_rel_error"] < 1e-6).all()
    gates = np.load(tmp_path / "gates.npz")
    assert sorted(gates.files) == sorted(f"layer0.{name}" for name in "ifgoch")
    assert all(gates[name].shape == (7, 4) for name in gates.files)
    saliency = pd.read_csv(tmp_path / "saliency.csv")
    assert list(saliency.columns[:3]) == ["lag", "feature", "attribution"]
    assert len(saliency) == 7 * 4 and sorted(saliency["lag"].unique()) == list(range(7))
    assert "completeness gap" in done.stdout and f"{day:%Y-%m-%d}" in done.stdout
    # the attributions add up to the forecast's distance from the baseline forecast, in °C
    row = predictions[predictions["date"] == day].iloc[0]
    assert "%" in done.stdout and str(round(row["predicted"], 1)) in done.stdout


def test_inspect_defaults_to_the_worst_predicted_test_day(tiny_run, tmp_path):
    done = _cli("inspect", "--weights", str(tiny_run / "model.npz"), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    predictions = pd.read_csv(tiny_run / "predictions.csv", parse_dates=["date"])
    assert f"{xray.worst_day(predictions):%Y-%m-%d}" in done.stdout


@pytest.mark.parametrize("date, words", [("1990-01-01", "No window forecasts 1990-01-01"),
                                         ("yesterday-ish", "--date")])
def test_inspect_refuses_a_day_it_cannot_show_in_one_line(tiny_run, tmp_path, date, words):
    done = _cli("inspect", "--weights", str(tiny_run / "model.npz"), "--date", date, "--out", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]  # notes may come first
    assert len(errors) == 1 and words in errors[0] and done.stderr.splitlines()[-1] == errors[0]

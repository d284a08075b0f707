"""The engine's maths, measured: finite differences, a hand-worked LSTM, and PyTorch itself."""

import numpy as np
import pytest

import rnnlab
from rnnlab import layers
from rnnlab.models import param_shapes

KINDS = ["rnn", "lstm", "gru"]


def _random_batch(input_size=3, batch=4, lookback=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, lookback, input_size)), rng.normal(size=batch)


def _model_with_nonzero_biases(kind, num_layers, hidden=4, input_size=3, seed=3, output_size=1):
    """A model whose weights are large enough that every gate works away from its linear zone."""
    model = rnnlab.create_model(kind, input_size, hidden, num_layers=num_layers, seed=seed, output_size=output_size)
    rng = np.random.default_rng(seed + 100)
    model.set_params({name: rng.uniform(-0.9, 0.9, size=p.shape) for name, p in model.params.items()})
    return model


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_central_finite_differences(kind, num_layers):
    model = _model_with_nonzero_biases(kind, num_layers)
    x, y = _random_batch()
    _, grads = model.loss_and_grads(x, y)
    eps = 1e-6
    for name, param in model.params.items():
        numeric = np.empty_like(param)
        for index in np.ndindex(param.shape):
            saved = param[index]
            param[index] = saved + eps
            loss_plus = model.loss_and_grads(x, y)[0]
            param[index] = saved - eps
            loss_minus = model.loss_and_grads(x, y)[0]
            param[index] = saved
            numeric[index] = (loss_plus - loss_minus) / (2 * eps)
        # relative error of the whole parameter array: per-element ratios on entries near zero
        # would measure the finite difference's round-off (~1e-10 absolute), not the gradient
        rel = np.linalg.norm(numeric - grads[name]) / (np.linalg.norm(numeric) + np.linalg.norm(grads[name]))
        assert rel < 1e-6, f"{kind} x{num_layers}: {name} relative error {rel:.2e}"
        np.testing.assert_allclose(grads[name], numeric, rtol=0, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("kind", KINDS)
def test_step_norms_are_the_norm_of_the_gradient_wrt_each_hidden_state(kind):
    """‖∂L/∂h_t‖ reported by the backward pass equals a finite-difference probe of h_t."""
    model = _model_with_nonzero_biases(kind, 1)
    x, y = _random_batch(lookback=4)
    _, _, step_norms = model.loss_and_grads(x, y, return_step_norms=True)
    assert step_norms.shape == (4,)

    # rebuild the loss from a perturbed h_t onwards with an independent textbook cell
    p = model.params
    weights = (p["rnn.weight_ih_l0"], p["rnn.weight_hh_l0"], p["rnn.bias_ih_l0"], p["rnn.bias_hh_l0"])

    def loss_from(t, h_t, c_t):
        h, c = h_t, c_t
        for s in range(t + 1, x.shape[1]):
            h, c = _single_step(kind, x[:, s, :], h, c, weights)
        pred = h @ p["head.weight"][0] + p["head.bias"][0]
        return np.mean((pred - y) ** 2)

    h_seq, cache = layers.FORWARD[kind](np.ascontiguousarray(x.transpose(1, 2, 0)), *weights)
    for t in range(4):
        h_t = h_seq[t].T.copy()  # the engine keeps (H, batch); the textbook cell takes (batch, H)
        c_t = cache[3][t + 1].T.copy() if kind == "lstm" else None
        numeric = np.empty_like(h_t)
        for index in np.ndindex(h_t.shape):
            bumped = h_t.copy()
            bumped[index] += 1e-6
            up = loss_from(t, bumped, c_t)
            bumped[index] -= 2e-6
            down = loss_from(t, bumped, c_t)
            numeric[index] = (up - down) / 2e-6
        assert step_norms[t] == pytest.approx(np.linalg.norm(numeric), rel=1e-6)


def _single_step(kind, x_t, h, c, weights):
    """An independent one-step cell, written from the textbook equations, for the probe above."""
    w_ih, w_hh, b_ih, b_hh = weights
    hidden = h.shape[1]
    gx = x_t @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    if kind == "rnn":
        return np.tanh(gx + gh), None
    if kind == "lstm":
        a = gx + gh
        i, f, g, o = (a[:, k * hidden : (k + 1) * hidden] for k in range(4))
        c_new = sig(f) * c + sig(i) * np.tanh(g)
        return sig(o) * np.tanh(c_new), c_new
    r = sig(gx[:, :hidden] + gh[:, :hidden])
    z = sig(gx[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
    n = np.tanh(gx[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
    return (1 - z) * n + z * h, None


def test_golden_hand_worked_lstm_from_the_seed_notebook():
    """shared/seeds/README.md (seed 001): 2 inputs, 1 hidden unit, 2 steps, loss Σ ½(h_t − y_t)²."""
    x = np.array([[1.0, 2.0], [0.5, 3.0]])[:, :, None]  # (T=2, D=2, B=1): the engine's layout
    y = np.array([0.5, 1.25])
    seed_w = np.array([[0.45, 0.25], [0.95, 0.8], [0.7, 0.45], [0.6, 0.4]])  # rows a, i, f, o
    seed_u = np.array([0.15, 0.8, 0.1, 0.25])
    seed_b = np.array([0.2, 0.65, 0.15, 0.1])
    ours_from_seed = [1, 2, 0, 3]  # our rows i, f, g(=a), o taken from the seed's a, i, f, o
    weight_ih = seed_w[ours_from_seed]
    weight_hh = seed_u[ours_from_seed][:, None]
    bias_ih = seed_b[ours_from_seed]
    bias_hh = np.zeros(4)

    h_seq, cache = layers.lstm_forward(x, weight_ih, weight_hh, bias_ih, bias_hh)
    c_all = cache[3]
    np.testing.assert_allclose(c_all[1:, 0, 0], [0.7857261484365797, 1.5176330976694041], rtol=0, atol=1e-12)
    np.testing.assert_allclose(h_seq[:, 0, 0], [0.5363133978820118, 0.7719811057588907], rtol=0, atol=1e-12)
    loss = 0.5 * np.sum((h_seq[:, 0, 0] - y) ** 2)
    assert loss == pytest.approx(0.11491036305861509, abs=1e-12)

    # the loss sits on every step's hidden state: feed dL/dh_t = h_t − y_t at every step
    dh_seq = (h_seq[:, 0, 0] - y)[:, None, None]
    _, grads, _ = layers.lstm_backward(dh_seq, cache)
    seed_from_ours = np.argsort(ours_from_seed)
    golden_dw = [[-0.02671622, -0.09220113], [-0.00220369, -0.00663861],
                 [-0.00315327, -0.01891963], [-0.02592411, -0.16260389]]
    golden_du = [-0.01039609, -0.00059832, -0.00338228, -0.02969987]
    golden_db = [-0.03640839, -0.0027615, -0.00630654, -0.05361303]
    # the README prints 8 decimals: agreement to 1e-8 is all the printed figures can show
    np.testing.assert_allclose(grads["weight_ih"][seed_from_ours], golden_dw, rtol=0, atol=1e-8)
    np.testing.assert_allclose(grads["weight_hh"][seed_from_ours, 0], golden_du, rtol=0, atol=1e-8)
    np.testing.assert_allclose(grads["bias_ih"][seed_from_ours], golden_db, rtol=0, atol=1e-8)
    np.testing.assert_array_equal(grads["bias_hh"], grads["bias_ih"])


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_bit_identical_parameters_and_losses(kind):
    x, y = _random_batch()
    runs = []
    for _ in range(2):
        model = rnnlab.create_model(kind, 3, 6, num_layers=2, seed=11)
        optimizer = rnnlab.make_optimizer("adam", 1e-2)
        losses = []
        for _ in range(3):
            loss, grads = model.loss_and_grads(x, y)
            rnnlab.clip_grad_norm(grads, 1.0)
            optimizer.step(model.params, grads)
            losses.append(loss)
        runs.append((model.params, losses))
    assert runs[0][1] == runs[1][1]
    for name in runs[0][0]:
        np.testing.assert_array_equal(runs[0][0][name], runs[1][0][name])
    other = rnnlab.create_model(kind, 3, 6, num_layers=2, seed=12)
    assert not np.array_equal(other.params["rnn.weight_hh_l0"], rnnlab.create_model(kind, 3, 6, 2, seed=11).params["rnn.weight_hh_l0"])


@pytest.mark.parametrize("kind", KINDS)
def test_init_is_pytorch_default_uniform_with_state_dict_keys(kind):
    hidden = 16
    model = rnnlab.create_model(kind, 3, hidden, num_layers=2, seed=0)
    assert list(model.params) == list(param_shapes(kind, 3, hidden, 2))
    bound = 1 / np.sqrt(hidden)
    for name, p in model.params.items():
        assert p.dtype == np.float64
        assert np.abs(p).max() <= bound, name
    everything = np.concatenate([p.ravel() for p in model.params.values()])
    assert everything.min() < -0.8 * bound and everything.max() > 0.8 * bound  # spans the interval


@pytest.mark.parametrize("kind", KINDS)
def test_float32_runs_the_same_maths_in_single_precision(kind):
    x, y = _random_batch(batch=8, lookback=6)
    model64 = rnnlab.create_model(kind, 3, 8, num_layers=2, seed=5)
    model32 = rnnlab.create_model(kind, 3, 8, num_layers=2, seed=5, dtype="float32")
    loss64, grads64 = model64.loss_and_grads(x, y)
    loss32, grads32 = model32.loss_and_grads(x, y)
    assert model32.predict(x).dtype == np.float32
    for name in grads64:
        assert grads32[name].dtype == np.float32
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=2e-3, atol=2e-5)
    assert loss32 == pytest.approx(loss64, rel=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gate_activations_are_exposed_per_layer_and_gate(kind):
    model = rnnlab.create_model(kind, 3, 5, num_layers=2, seed=1)
    x, _ = _random_batch(batch=4, lookback=6)
    states = model.states(x)
    names = {"lstm": "ifgoch", "gru": "rznh"}[kind]
    assert set(states) == {f"layer{k}.{g}" for k in range(2) for g in names}
    for name, values in states.items():
        assert values.shape == (4, 6, 5)
        low = -1 if name.endswith((".g", ".n", ".h", ".c")) else 0  # tanh-valued vs sigmoid gates
        if not name.endswith(".c"):  # the cell state is unbounded
            assert values.min() >= low and values.max() <= 1
    assert set(rnnlab.create_model("rnn", 3, 5).states(x)) == {"layer0.h"}


def test_bad_arguments_get_readable_errors():
    with pytest.raises(ValueError, match="Unknown model kind 'transformer'"):
        rnnlab.create_model("transformer", 3, 4)
    with pytest.raises(ValueError, match="hidden_size must be a whole number"):
        rnnlab.create_model("lstm", 3, 0)
    with pytest.raises(ValueError, match="precision"):
        rnnlab.create_model("lstm", 3, 4, dtype="float16")
    model = rnnlab.create_model("lstm", 3, 4)
    with pytest.raises(ValueError, match=r"shape \(batch, lookback, 3\)"):
        model.predict(np.zeros((2, 5, 4)))
    with pytest.raises(ValueError, match="missing"):
        model.set_params({"head.weight": np.zeros((1, 4))})


# ---------------------------------------------------------------------------------------------
# PyTorch as an independent implementation (skipped when torch is not installed)
# ---------------------------------------------------------------------------------------------
def _torch_twin(model):
    torch = pytest.importorskip("torch")
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[model.kind]

    class Twin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = cls(model.input_size, model.hidden_size, model.num_layers, batch_first=True)
            self.head = torch.nn.Linear(model.hidden_size, model.output_size)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1])  # (batch, lead days)

    twin = Twin().double()
    twin.load_state_dict({name: torch.from_numpy(p.copy()) for name, p in model.params.items()})
    return torch, twin


@pytest.mark.parametrize("output_size", [1, 3])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_forward_and_gradients_equal_pytorch(kind, num_layers, output_size):
    """The head is nn.Linear(hidden, H): one output per lead day, the loss their mean."""
    model = _model_with_nonzero_biases(kind, num_layers, hidden=6, output_size=output_size)
    torch, twin = _torch_twin(model)
    x, _ = _random_batch(batch=7, lookback=9)
    y = np.random.default_rng(1).normal(size=(7, output_size))
    loss, grads = model.loss_and_grads(x, y)
    prediction = twin(torch.from_numpy(x))
    torch_loss = torch.mean((prediction - torch.from_numpy(y)) ** 2)
    torch_loss.backward()
    np.testing.assert_allclose(model.predict(x), prediction.detach().numpy(), rtol=0, atol=1e-10)
    assert loss == pytest.approx(torch_loss.item(), abs=1e-10)
    for name, param in twin.named_parameters():
        np.testing.assert_allclose(grads[name], param.grad.numpy(), rtol=0, atol=1e-10, err_msg=name)


def test_benchmark_loop_reference_computes_the_same_loss_and_gradients():
    """The speed benchmark's per-sequence loop must be the same LSTM, or its ratio means nothing."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from loop_lstm import loop_loss_and_grads

    model = _model_with_nonzero_biases("lstm", 1, hidden=5)
    x, y = _random_batch(batch=6, lookback=7)
    loss, grads = model.loss_and_grads(x, y)
    loop_loss, loop_grads = loop_loss_and_grads(model.params, x, y)
    assert loop_loss == pytest.approx(loss, rel=1e-12)
    for name in grads:
        np.testing.assert_allclose(loop_grads[name], grads[name], rtol=1e-10, atol=1e-12, err_msg=name)

"""Sequence-to-vector recurrent regressors: stacked RNN / LSTM / GRU layers and a linear head with
one output per lead day.

Parameters live in ``model.params`` keyed exactly like the ``state_dict`` of a PyTorch module
holding ``rnn = nn.{RNN,LSTM,GRU}(input_size, hidden_size, num_layers, batch_first=True)`` and
``head = nn.Linear(hidden_size, output_size)``, so weights move between the two with a plain copy.
``output_size`` is the horizon H: output k forecasts lead day k + 1.
"""

from __future__ import annotations

import numpy as np

from rnnlab import layers

KINDS = ("rnn", "lstm", "gru")
DTYPES = ("float64", "float32")


def param_shapes(kind: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 output_size: int = 1) -> dict[str, tuple]:
    """Shape of every parameter, in PyTorch ``state_dict`` order; the head is (output_size, hidden_size)."""
    gates_hidden = layers.GATE_COUNT[kind] * hidden_size
    shapes = {}
    for k in range(num_layers):
        layer_input = input_size if k == 0 else hidden_size
        shapes[f"rnn.weight_ih_l{k}"] = (gates_hidden, layer_input)
        shapes[f"rnn.weight_hh_l{k}"] = (gates_hidden, hidden_size)
        shapes[f"rnn.bias_ih_l{k}"] = (gates_hidden,)
        shapes[f"rnn.bias_hh_l{k}"] = (gates_hidden,)
    shapes["head.weight"] = (output_size, hidden_size)
    shapes["head.bias"] = (output_size,)
    return shapes


def _check_positive_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be a whole number ≥ {minimum}, got {value!r}.")


class RecurrentModel:
    """A stack of ``num_layers`` recurrent layers and a linear head on the last hidden state.

    Use :func:`create_model` to build one with PyTorch's default initialisation.
    """

    def __init__(self, kind, input_size, hidden_size, num_layers, params, dtype="float64", output_size=1):
        self.kind = kind
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.output_size = output_size  # the horizon: one output per lead day
        self.dtype = dtype
        self.params: dict[str, np.ndarray] = {}
        self._workspaces = None  # per-layer scratch arrays for training steps, made on first use
        self.set_params(params)

    # -- parameters ---------------------------------------------------------------------------
    def set_params(self, params: dict[str, np.ndarray]) -> None:
        """Copy ``params`` in (cast to the model dtype) after checking every key and shape."""
        expected = param_shapes(self.kind, self.input_size, self.hidden_size, self.num_layers, self.output_size)
        missing = sorted(set(expected) - set(params))
        unexpected = sorted(set(params) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"These weights do not fit a {self.num_layers}-layer {self.kind.upper()} "
                f"(missing {missing or 'none'}, unexpected {unexpected or 'none'})."
            )
        for name, shape in expected.items():
            if tuple(np.shape(params[name])) != shape:
                raise ValueError(f"Weight {name} has shape {np.shape(params[name])}, expected {shape}.")
        self.params = {name: np.array(params[name], dtype=self.dtype, copy=True) for name in expected}

    def copy(self) -> "RecurrentModel":
        """An independent model with copied parameters (and its own scratch space)."""
        return RecurrentModel(self.kind, self.input_size, self.hidden_size, self.num_layers, self.params, self.dtype,
                              self.output_size)

    def __deepcopy__(self, memo) -> "RecurrentModel":
        return self.copy()  # the scratch space is never worth copying

    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    # -- forward / backward -------------------------------------------------------------------
    def _engine_layout(self, x):
        """(batch, lookback, features) -> the engine's (lookback, features, batch), contiguous."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"Expected inputs of shape (batch, lookback, {self.input_size}), got {x.shape}.")
        return np.ascontiguousarray(x.transpose(1, 2, 0))

    def _layer_weights(self, k):
        p = self.params
        return (p[f"rnn.weight_ih_l{k}"], p[f"rnn.weight_hh_l{k}"], p[f"rnn.bias_ih_l{k}"], p[f"rnn.bias_hh_l{k}"])

    def _forward(self, x, workspaces=None):
        """x: (batch, lookback, input_size) -> prediction (batch, output_size), last hidden (hidden, batch), caches.

        ``workspaces`` (one per layer) are reused scratch arrays for training; None allocates
        fresh ones, so predictions never disturb, or are disturbed by, a training step.
        """
        h_seq = self._engine_layout(x)
        caches = []
        forward = layers.FORWARD[self.kind]
        for k in range(self.num_layers):
            ws = workspaces[k] if workspaces is not None else None
            h_seq, cache = forward(h_seq, *self._layer_weights(k), ws=ws)
            caches.append(cache)
        last = h_seq[-1]  # (hidden, batch)
        prediction = (self.params["head.weight"] @ last).T + self.params["head.bias"]  # (batch, output_size)
        return prediction, last, caches

    def predict(self, x, chunk_size=4096) -> np.ndarray:
        """x: (batch, lookback, input_size) -> (batch, output_size) predictions of lead days 1..output_size
        (in the scale of training targets).

        Runs ``chunk_size`` windows at a time, so memory stays bounded for any number of windows.
        """
        x = np.asarray(x)
        if len(x) <= chunk_size:
            return self._forward(x)[0]
        return np.concatenate([self._forward(x[start : start + chunk_size])[0]
                               for start in range(0, len(x), chunk_size)])

    def loss_and_grads(self, x, y, return_step_norms=False):
        """Mean squared error over the batch and the lead days, and its gradient for every parameter.

        x: (batch, lookback, input_size); y: (batch, output_size) (or (batch,) when output_size is 1).
        Returns ``(loss, grads)``, or ``(loss, grads, step_norms)`` with ``step_norms`` (lookback,)
        = ‖∂L/∂h_t‖ of the last recurrent layer at every step of the window.
        """
        y = np.asarray(y, dtype=self.dtype)
        if self._workspaces is None:
            self._workspaces = [layers.Workspace() for _ in range(self.num_layers)]
        prediction, last, caches = self._forward(x, self._workspaces)
        if y.size != prediction.size or y.shape[0] != prediction.shape[0]:
            raise ValueError(f"Got {prediction.shape[0]} input windows with {self.output_size} lead days each but "
                             f"targets of shape {y.shape}.")
        error = prediction - y.reshape(prediction.shape)  # (batch, output_size)
        loss = float(np.mean(error * error))
        d_prediction = (2.0 / error.size) * error  # (batch, output_size): the mean runs over windows and leads

        grads = {
            "head.weight": d_prediction.T @ last.T,  # (output_size, hidden)
            "head.bias": d_prediction.sum(axis=0),
        }
        # only the last step feeds the head, so the top layer gets no per-step outside gradient
        dh_seq, dh_last = None, self.params["head.weight"].T @ d_prediction.T  # (hidden, batch)
        backward = layers.BACKWARD[self.kind]
        for k in reversed(range(self.num_layers)):
            dh_seq, layer_grads, dh_all = backward(dh_seq, caches[k], dh_last=dh_last, need_dx=k > 0)
            dh_last = None
            if k == self.num_layers - 1 and return_step_norms:
                norms = layers.step_norms(dh_all)
            for name, grad in layer_grads.items():
                grads[f"rnn.{name}_l{k}"] = grad
        grads = {name: grads[name] for name in self.params}  # same order as params
        if return_step_norms:
            return loss, grads, norms
        return loss, grads

    def input_gradient(self, x, return_prediction=False, lead=1):
        """∂prediction/∂input of every window for one lead day, exact (BPTT down to the inputs of layer 0).

        x: (batch, lookback, input_size) -> gradient (batch, lookback, input_size), or
        ``(prediction (batch,), gradient)`` with ``return_prediction``; lead: 1..output_size, the
        output explained. Windows are independent, so one backward pass seeded with that output's
        head weights for every window gives all of them at once.
        Runs in fresh scratch space: it never disturbs, or is disturbed by, a training step.
        """
        if isinstance(lead, bool) or not isinstance(lead, (int, np.integer)) or not 1 <= lead <= self.output_size:
            raise ValueError(f"lead must be a whole number from 1 to {self.output_size}, got {lead!r}.")
        prediction, _, caches = self._forward(x)
        prediction = prediction[:, lead - 1]
        batch = prediction.shape[0]
        dh_seq, dh_last = None, np.outer(self.params["head.weight"][lead - 1], np.ones(batch, dtype=self.dtype))
        backward = layers.BACKWARD[self.kind]
        for k in reversed(range(self.num_layers)):
            dh_seq, _, _ = backward(dh_seq, caches[k], dh_last=dh_last, need_dx=True)
            dh_last = None
        gradient = np.ascontiguousarray(dh_seq.transpose(2, 0, 1))  # (T, D, B) -> (B, T, D)
        return (prediction, gradient) if return_prediction else gradient

    def states(self, x) -> dict[str, np.ndarray]:
        """Every gate, cell and hidden state of a forward pass: ``"layer{k}.{name}"`` -> (batch, lookback, H).

        LSTM: i, f, g, o, c, h per layer; GRU: r, z, n, h; RNN: h. Fresh arrays, in step order.
        """
        _, _, caches = self._forward(x)
        out = {}
        for k, cache in enumerate(caches):
            for name, values in layers.layer_states(self.kind, cache).items():
                out[f"layer{k}.{name}"] = np.ascontiguousarray(values.transpose(2, 0, 1))
        return out


def create_model(kind, input_size, hidden_size, num_layers=1, seed=0, dtype="float64",
                 output_size=1) -> RecurrentModel:
    """Build a model with PyTorch's default initialisation U(−1/√H, 1/√H) for every parameter.

    The head uses ``nn.Linear``'s default bound, 1/√fan_in = 1/√H, too. The same seed always gives
    bit-identical parameters (a NumPy ``default_rng(seed)``, drawn in ``state_dict`` order, in
    float64 and then cast, so float32 models start from the rounded float64 weights).
    """
    if kind not in KINDS:
        raise ValueError(f"Unknown model kind {kind!r}: choose one of {', '.join(KINDS)}.")
    if str(dtype) not in DTYPES:
        raise ValueError(f"Unknown precision {dtype!r}: choose float64 or float32.")
    _check_positive_int("input_size", input_size)
    _check_positive_int("hidden_size", hidden_size)
    _check_positive_int("num_layers", num_layers)
    _check_positive_int("output_size", output_size)
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(hidden_size)
    params = {
        name: rng.uniform(-bound, bound, size=shape)
        for name, shape in param_shapes(kind, input_size, hidden_size, num_layers, output_size).items()
    }
    return RecurrentModel(kind, input_size, hidden_size, num_layers, params, dtype=str(dtype), output_size=output_size)

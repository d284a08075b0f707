"""Recurrent layers as pure functions: a whole sequence forward, a whole sequence backward.

Every layer follows one pattern (after CS231n's ``*_forward`` / ``*_backward`` pairs, applied to
the whole window rather than to a single step):

    h_seq, cache          = <kind>_forward(x, weight_ih, weight_hh, bias_ih, bias_hh, ws=None)
    dx, grads, dh_all     = <kind>_backward(dh_seq, cache, dh_last=None, need_dx=True)

Arrays are **time-major and feature-major** inside the engine (the batch is the last axis):

    x:      (time, input_size, batch)
    h_seq:  (time, hidden, batch)        hidden state after every step
    dh_seq: (time, hidden, batch)        dL/dh_t coming from *outside* the recurrence at every step
                                         (the next layer, or a loss on every step as in the golden
                                         hand-worked example) — or None with ``dh_last`` (hidden,
                                         batch) when only the last step feeds a head
    dh_all: (time, hidden, batch)        the *total* dL/dh_t, outside plus through the recurrence,
                                         from which the per-step gradient norms are charted

With the batch last, every gate of every step is one contiguous (hidden, batch) block, so each
elementwise call of the time loop runs over contiguous memory (about twice as fast as over the
strided gate columns of a (batch, G*H) layout, measured in benchmarks/bench_engine.py).

Weights use PyTorch's layout and gate order so a ``state_dict`` round-trips unchanged:

    weight_ih: (G*H, input_size)   weight_hh: (G*H, H)   bias_ih, bias_hh: (G*H,)
    rnn  G=1: tanh(W_ih x + b_ih + W_hh h + b_hh)
    lstm G=4: gates i, f, g, o
    gru  G=3: gates r, z, n with b_hn inside r * (W_hn h + b_hn)

Speed:
- the input projection of all steps is one batched matmul before the loop (the LSTM folds it into
  its step matmul instead), the loop does one (G*H, H) @ (H, batch) matmul per step, and after the
  backward loop each weight gradient is one matmul over all steps; no Python loop runs over samples;
- every gradient factor that does not depend on the incoming gradient is computed for all steps
  at once before the backward loop, so each step is a handful of NumPy calls;
- scratch arrays come from a :class:`Workspace` reused between calls, and operations write into
  them with ``out=``: fresh multi-megabyte temporaries cost more in page faults than the
  arithmetic they hold.
"""

from __future__ import annotations

import numpy as np

GATES = {"rnn": (), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
GATE_COUNT = {"rnn": 1, "lstm": 4, "gru": 3}


class Workspace:
    """Named scratch arrays kept from one call to the next while their shape and dtype hold.

    A cache returned by a forward pass points into its workspace, so it stays valid only until
    the next forward pass that uses the same workspace.
    """

    def __init__(self):
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple, dtype) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._arrays[name] = np.empty(shape, dtype=dtype)
        return array


def _project_inputs(x, weight_ih, bias, ws):
    """Every step's input projection: W (G*H, D) @ x (T, D, B) + b -> (T, G*H, B)."""
    steps, _, batch = x.shape
    projected = ws.get("projected", (steps, weight_ih.shape[0], batch), x.dtype)
    np.matmul(weight_ih, x, out=projected)
    projected += bias[:, None]
    return projected


def _steps_by_columns(array, ws, name):
    """(T, K, B) -> a (K, T*B) matrix: one copy into the workspace (a free view when T is 1).

    Storing the gradient buffers step-minor, (K, T, B), would make this a view everywhere, but
    the strided per-step blocks then slow the time loop by more than the copy costs (LSTM(128,
    30) float32: 1.30x torch against 1.19-1.24x, measured with benchmarks/bench_engine.py)."""
    steps, rows, batch = array.shape
    by_rows = array.transpose(1, 0, 2)
    if not by_rows.flags.c_contiguous:
        buffer = ws.get(name, (rows, steps, batch), array.dtype)
        np.copyto(buffer, by_rows)
        by_rows = buffer
    return by_rows.reshape(rows, steps * batch)


def _sum_over_steps(d_pre, inputs, ws, inputs_name="sum_right"):
    """Σ_t d_pre[t] @ inputs[t]ᵀ as one matmul: (T, G, B) and (T, K, B) -> (G, K).

    Both operands are laid out as (rows, T*B) matrices in reused buffers first; ``np.tensordot``
    (fresh temporaries) was 2.4x slower at LSTM(32, 7) float64 size: 278 µs against 115 µs.
    """
    return _steps_by_columns(d_pre, ws, "sum_left") @ _steps_by_columns(inputs, ws, inputs_name).T


def _input_grad(d_pre_x, weight_ih, ws, need_dx):
    """dL/dx (T, D, B) = W_ihᵀ @ d_pre_x, or None for a first layer whose input needs no gradient."""
    if not need_dx:
        return None
    steps, _, batch = d_pre_x.shape
    dx = ws.get("dx", (steps, weight_ih.shape[1], batch), d_pre_x.dtype)
    np.matmul(weight_ih.T, d_pre_x, out=dx)
    return dx


def _backward_loop(dh_seq, dh_last, d_pre, dh_all, step_grad, weight_hh):
    """The reversed time loop shared by every kind.

    ``dh_all[t]`` receives the total dL/dh_t (outside gradient + recurrence); ``step_grad(t, dh)``
    fills ``d_pre[t]`` (the gate pre-activation gradient at step t) and returns what reaches
    h_{t-1} by a path other than the recurrent matmul (the GRU's z ⊙ dh), or None. The recurrent
    matmul writes straight into ``dh_all[t-1]``; its input is the last G*H rows of ``d_pre[t]``
    (the GRU keeps its input-side gradient in front of them).
    """
    steps = dh_all.shape[0]
    dh_all[-1] = dh_seq[-1] if dh_seq is not None else dh_last
    recurrent_rows = weight_hh.shape[0]
    weight_hh_t = weight_hh.T
    for t in range(steps - 1, -1, -1):
        direct = step_grad(t, dh_all[t])
        if t == 0:
            break
        np.matmul(weight_hh_t, d_pre[t][-recurrent_rows:], out=dh_all[t - 1])
        if direct is not None:
            dh_all[t - 1] += direct
        if dh_seq is not None:
            dh_all[t - 1] += dh_seq[t - 1]


def step_norms(dh_all):
    """‖dL/dh_t‖ (Frobenius over the batch) for every step: dh_all (T, H, B) -> (T,) float64."""
    return np.sqrt(np.einsum("thb,thb->t", dh_all, dh_all, dtype=np.float64))


def _sigmoid_half_scale(gate_names, hidden, dtype, sigmoid_gates):
    """(G*H, 1) column: 0.5 on sigmoid-gate rows, 1 on tanh-gate rows.

    σ(a) = ½·tanh(½a) + ½, so pre-multiplying the sigmoid rows of the weights by ½ lets a single
    tanh over all gates, then ``*= ½; += ½`` on the sigmoid blocks, activate every gate.
    """
    scale = np.ones((len(gate_names) * hidden, 1), dtype=dtype)
    for k, gate in enumerate(gate_names):
        if gate in sigmoid_gates:
            scale[k * hidden : (k + 1) * hidden] = 0.5
    return scale


# ---------------------------------------------------------------------------------------------
# Elman RNN (tanh)
# ---------------------------------------------------------------------------------------------
def rnn_forward(x, weight_ih, weight_hh, bias_ih, bias_hh, ws=None):
    """tanh RNN over a sequence. x: (T, D, B) -> h_seq (T, H, B), cache."""
    ws = Workspace() if ws is None else ws
    steps, _, batch = x.shape
    hidden = weight_hh.shape[1]
    pre_x = _project_inputs(x, weight_ih, bias_ih + bias_hh, ws)
    h_all = ws.get("h_all", (steps + 1, hidden, batch), x.dtype)  # h_all[0] is h_{-1} = 0
    h_all[0] = 0.0
    for t in range(steps):
        h_next = h_all[t + 1]
        np.matmul(weight_hh, h_all[t], out=h_next)
        h_next += pre_x[t]
        np.tanh(h_next, out=h_next)
    return h_all[1:], (x, h_all, weight_ih, weight_hh, ws)


def rnn_backward(dh_seq, cache, dh_last=None, need_dx=True):
    """Backward of :func:`rnn_forward`. Returns dx (T, D, B) or None, grads, dh_all (T, H, B)."""
    x, h_all, weight_ih, weight_hh, ws = cache
    h_seq = h_all[1:]
    shape = h_seq.shape
    tanh_deriv = ws.get("tanh_deriv", shape, x.dtype)  # 1 − h², for all steps at once
    np.multiply(h_seq, h_seq, out=tanh_deriv)
    np.subtract(1.0, tanh_deriv, out=tanh_deriv)
    d_pre = ws.get("d_pre", shape, x.dtype)
    dh_all = ws.get("dh_all", shape, x.dtype)

    def step_grad(t, dh):
        np.multiply(dh, tanh_deriv[t], out=d_pre[t])

    _backward_loop(dh_seq, dh_last, d_pre, dh_all, step_grad, weight_hh)
    d_bias = d_pre.sum(axis=(0, 2))
    d_pre_matrix = _steps_by_columns(d_pre, ws, "sum_left")  # shared by both weight gradients
    grads = {"weight_ih": d_pre_matrix @ _steps_by_columns(x, ws, "sum_x").T,
             "weight_hh": d_pre_matrix @ _steps_by_columns(h_all[:-1], ws, "sum_h").T,
             "bias_ih": d_bias, "bias_hh": d_bias.copy()}
    return _input_grad(d_pre, weight_ih, ws, need_dx), grads, dh_all


# ---------------------------------------------------------------------------------------------
# LSTM (gates i, f, g, o)
# ---------------------------------------------------------------------------------------------
def lstm_forward(x, weight_ih, weight_hh, bias_ih, bias_hh, ws=None):
    """LSTM over a sequence. x: (T, D, B) -> h_seq (T, H, B), cache.

    Each step is one matmul ``[W_ih | W_hh | b] @ [x_t; h_{t-1}; 1]`` written straight into the
    gate buffer: ``inputs`` (T+1, D+H+1, B) holds x_t, h_{t-1} and a row of ones, and the loop
    writes h_t into the next step's hidden rows. The cache keeps the gate activations ``acts``
    (T, 4H, B) in order i, f, g, o, the cell states ``c_all`` (T+1, H, B) (index 0 is the zero
    initial state) and ``tanh_c`` (T, H, B).
    """
    ws = Workspace() if ws is None else ws
    steps, inputs_size, batch = x.shape
    hidden = weight_hh.shape[1]
    dtype = x.dtype
    width = inputs_size + hidden + 1
    hidden_rows = slice(inputs_size, inputs_size + hidden)
    scale = _sigmoid_half_scale(GATES["lstm"], hidden, dtype, "ifo")
    inputs = ws.get("inputs", (steps + 1, width, batch), dtype)
    inputs[:steps, :inputs_size] = x
    inputs[0, hidden_rows] = 0.0
    inputs[:, -1] = 1.0
    stacked = ws.get("stacked_weights", (4 * hidden, width), dtype)  # [W_ih | W_hh | b], sigmoid rows halved
    np.multiply(weight_ih, scale, out=stacked[:, :inputs_size])
    np.multiply(weight_hh, scale, out=stacked[:, hidden_rows])
    np.add(bias_ih, bias_hh, out=stacked[:, -1])
    stacked[:, -1:] *= scale
    acts = ws.get("acts", (steps, 4 * hidden, batch), dtype)
    c_all = ws.get("c_all", (steps + 1, hidden, batch), dtype)
    tanh_c = ws.get("tanh_c", (steps, hidden, batch), dtype)
    input_times_candidate = ws.get("i_times_g", (hidden, batch), dtype)
    c_all[0] = 0.0
    h2, h3 = 2 * hidden, 3 * hidden
    for t in range(steps):
        gates = acts[t]
        np.matmul(stacked, inputs[t], out=gates)
        np.tanh(gates, out=gates)
        # σ = ½·tanh + ½ on the i, f and o blocks: scalar ops on contiguous blocks (3x faster than
        # broadcasting a per-row column over the whole gate matrix)
        for sigmoid_block in (gates[:h2], gates[h3:]):
            sigmoid_block *= 0.5
            sigmoid_block += 0.5
        c = c_all[t + 1]
        np.multiply(gates[hidden:h2], c_all[t], out=c)  # f ⊙ c_{t-1}
        np.multiply(gates[:hidden], gates[h2:h3], out=input_times_candidate)  # i ⊙ g
        c += input_times_candidate
        np.tanh(c, out=tanh_c[t])
        np.multiply(gates[h3:], tanh_c[t], out=inputs[t + 1, hidden_rows])  # h_t = o ⊙ tanh(c)
    h_seq = inputs[1:, hidden_rows]
    return h_seq, (inputs, acts, h_seq, c_all, tanh_c, weight_ih, weight_hh, ws)


def lstm_backward(dh_seq, cache, dh_last=None, need_dx=True):
    """Backward of :func:`lstm_forward` (arguments and returns as in :func:`rnn_backward`)."""
    inputs, acts, h_seq, c_all, tanh_c, weight_ih, weight_hh, ws = cache
    steps, gates_hidden, batch = acts.shape
    hidden = gates_hidden // 4
    inputs_size = weight_ih.shape[1]
    dtype = acts.dtype
    gate_blocks = acts.reshape(steps, 4, hidden, batch)
    i, f, g, o = (gate_blocks[:, k] for k in range(4))
    # Factors that do not depend on the incoming gradient, for all steps at once:
    #   dc_t  = f_{t+1} ⊙ dc_{t+1} + dh_t ⊙ o ⊙ (1 − tanh²c)
    #   d(i, f, g) pre-activations = dc_t ⊙ (g·i(1−i), c_{t−1}·f(1−f), i·(1−g²))
    #   d(o) pre-activation        = dh_t ⊙ tanh(c)·o(1−o)
    dc_from_dh = ws.get("dc_from_dh", tanh_c.shape, dtype)
    np.multiply(tanh_c, tanh_c, out=dc_from_dh)
    np.subtract(1.0, dc_from_dh, out=dc_from_dh)
    dc_from_dh *= o
    cell_factors = ws.get("cell_factors", (steps, 3, hidden, batch), dtype)
    factor = cell_factors[:, 0]
    np.subtract(1.0, i, out=factor)
    factor *= i
    factor *= g
    factor = cell_factors[:, 1]
    np.subtract(1.0, f, out=factor)
    factor *= f
    factor *= c_all[:-1]
    factor = cell_factors[:, 2]
    np.multiply(g, g, out=factor)
    np.subtract(1.0, factor, out=factor)
    factor *= i
    output_factor = ws.get("output_factor", tanh_c.shape, dtype)
    np.subtract(1.0, o, out=output_factor)
    output_factor *= o
    output_factor *= tanh_c

    d_pre = ws.get("d_pre", acts.shape, dtype)
    d_pre_blocks = d_pre.reshape(steps, 4, hidden, batch)
    dh_all = ws.get("dh_all", tanh_c.shape, dtype)
    dc = ws.get("dc", (hidden, batch), dtype)
    dc_term = ws.get("dc_term", (hidden, batch), dtype)

    def step_grad(t, dh):
        if t == steps - 1:
            np.multiply(dh, dc_from_dh[t], out=dc)
        else:
            np.multiply(dc, f[t + 1], out=dc)
            np.multiply(dh, dc_from_dh[t], out=dc_term)
            np.add(dc, dc_term, out=dc)
        np.multiply(cell_factors[t], dc, out=d_pre_blocks[t, :3])
        np.multiply(dh, output_factor[t], out=d_pre_blocks[t, 3])

    _backward_loop(dh_seq, dh_last, d_pre, dh_all, step_grad, weight_hh)
    # [dW_ih | dW_hh | db] in one matmul over all steps: Σ_t d_pre[t] @ [x_t; h_{t-1}; 1]ᵀ
    stacked_grad = _sum_over_steps(d_pre, inputs[:-1], ws)
    d_bias = stacked_grad[:, -1].copy()
    grads = {
        "weight_ih": stacked_grad[:, :inputs_size].copy(),
        "weight_hh": stacked_grad[:, inputs_size:-1].copy(),
        "bias_ih": d_bias,
        "bias_hh": d_bias.copy(),
    }
    return _input_grad(d_pre, weight_ih, ws, need_dx), grads, dh_all


# ---------------------------------------------------------------------------------------------
# GRU (gates r, z, n; b_hn inside the reset product, as in PyTorch)
# ---------------------------------------------------------------------------------------------
def gru_forward(x, weight_ih, weight_hh, bias_ih, bias_hh, ws=None):
    """GRU over a sequence. x: (T, D, B) -> h_seq (T, H, B), cache.

    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h.
    The cache keeps ``acts`` (T, 3H, B) = r, z, n and ``hn_all`` (T, H, B) = W_hn h + b_hn.
    """
    ws = Workspace() if ws is None else ws
    steps, _, batch = x.shape
    hidden = weight_hh.shape[1]
    dtype = x.dtype
    h2 = 2 * hidden
    scale = _sigmoid_half_scale(GATES["gru"], hidden, dtype, "rz")
    # r and z take both biases up front; n's hidden bias must stay inside the reset product
    fused_bias = bias_ih.copy()
    fused_bias[:h2] += bias_hh[:h2]
    acts = _project_inputs(x, weight_ih * scale, fused_bias * scale[:, 0], ws)
    weight_hh_scaled = weight_hh * scale
    bias_hn = bias_hh[h2:, None]
    hn_all = ws.get("hn_all", (steps, hidden, batch), dtype)
    h_all = ws.get("h_all", (steps + 1, hidden, batch), dtype)
    recurrent = ws.get("recurrent", (3 * hidden, batch), dtype)
    reset_term = ws.get("reset_term", (hidden, batch), dtype)
    h_all[0] = 0.0
    for t in range(steps):
        h_prev, h_next = h_all[t], h_all[t + 1]
        np.matmul(weight_hh_scaled, h_prev, out=recurrent)
        gates = acts[t]
        rz = gates[:h2]
        rz += recurrent[:h2]
        np.tanh(rz, out=rz)
        rz *= 0.5
        rz += 0.5
        np.add(recurrent[h2:], bias_hn, out=hn_all[t])
        n = gates[h2:]
        np.multiply(gates[:hidden], hn_all[t], out=reset_term)
        n += reset_term
        np.tanh(n, out=n)
        np.subtract(h_prev, n, out=h_next)  # h' = n + z ⊙ (h − n)
        h_next *= gates[hidden:h2]
        h_next += n
    return h_all[1:], (x, acts, hn_all, h_all, weight_ih, weight_hh, ws)


def gru_backward(dh_seq, cache, dh_last=None, need_dx=True):
    """Backward of :func:`gru_forward` (arguments and returns as in :func:`rnn_backward`).

    ``d_pre`` holds, per step, the input-projection gradient (r, z, n) in its first 3H rows and
    the hidden-projection gradient (r, z, r ⊙ dn) in its last 3H; every one of the six is dh_t
    times a factor computed for all steps before the loop.
    """
    x, acts, hn_all, h_all, weight_ih, weight_hh, ws = cache
    steps, gates_hidden, batch = acts.shape
    hidden = gates_hidden // 3
    dtype = x.dtype
    h3 = 3 * hidden
    gate_blocks = acts.reshape(steps, 3, hidden, batch)
    r, z, n = gate_blocks[:, 0], gate_blocks[:, 1], gate_blocks[:, 2]
    h_prev = h_all[:-1]
    factors = ws.get("factors", (steps, 6, hidden, batch), dtype)
    dn = factors[:, 2]  # (1 − z)(1 − n²)
    np.multiply(n, n, out=dn)
    np.subtract(1.0, dn, out=dn)
    scratch = factors[:, 3]  # filled last, so usable as scratch until then
    np.subtract(1.0, z, out=scratch)
    dn *= scratch
    dr = factors[:, 0]  # dn · hn · r(1 − r)
    np.subtract(1.0, r, out=dr)
    dr *= r
    dr *= hn_all
    dr *= dn
    dz = factors[:, 1]  # (h_prev − n) · z(1 − z)
    np.subtract(1.0, z, out=dz)
    dz *= z
    np.subtract(h_prev, n, out=scratch)
    dz *= scratch
    factors[:, 3:5] = factors[:, 0:2]
    np.multiply(dn, r, out=factors[:, 5])

    d_pre = ws.get("d_pre", (steps, 2 * h3, batch), dtype)
    d_pre_blocks = d_pre.reshape(steps, 6, hidden, batch)
    dh_all = ws.get("dh_all", (steps, hidden, batch), dtype)
    direct = ws.get("direct", (hidden, batch), dtype)

    def step_grad(t, dh):
        np.multiply(factors[t], dh, out=d_pre_blocks[t])
        # h' = (1 − z) n + z h: besides the recurrent matmul, z ⊙ dh reaches h_{t-1} directly
        return np.multiply(dh, z[t], out=direct)

    _backward_loop(dh_seq, dh_last, d_pre, dh_all, step_grad, weight_hh)
    d_pre_x, d_pre_h = d_pre[:, :h3], d_pre[:, h3:]
    grads = {
        "weight_ih": _sum_over_steps(d_pre_x, x, ws, "sum_x"),  # own buffers: x and h differ in shape
        "weight_hh": _sum_over_steps(d_pre_h, h_prev, ws, "sum_h"),
        "bias_ih": d_pre_x.sum(axis=(0, 2)),
        "bias_hh": d_pre_h.sum(axis=(0, 2)),
    }
    return _input_grad(d_pre_x, weight_ih, ws, need_dx), grads, dh_all


FORWARD = {"rnn": rnn_forward, "lstm": lstm_forward, "gru": gru_forward}
BACKWARD = {"rnn": rnn_backward, "lstm": lstm_backward, "gru": gru_backward}


def gate_activations(kind, cache):
    """Gate activations of a forward pass: gate name -> (T, H, B) views. Empty for the plain RNN."""
    if kind == "rnn":
        return {}
    acts = cache[1]
    steps, gates_hidden, batch = acts.shape
    blocks = acts.reshape(steps, GATE_COUNT[kind], gates_hidden // GATE_COUNT[kind], batch)
    return {name: blocks[:, k] for k, name in enumerate(GATES[kind])}


def layer_states(kind, cache):
    """Everything a forward pass computed per step: name -> (T, H, B) views into the cache.

    LSTM: gates i, f, g, o, cell state c and hidden state h; GRU: gates r, z, n and h; RNN: h.
    The views stay valid only while the cache's workspace is not reused.
    """
    states = dict(gate_activations(kind, cache))
    if kind == "lstm":
        h_seq, c_all = cache[2], cache[3]
        states["c"] = c_all[1:]
    else:
        h_all = cache[1] if kind == "rnn" else cache[3]
        h_seq = h_all[1:]  # h_all[0] is the zero initial state
    states["h"] = h_seq
    return states

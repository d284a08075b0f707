"""Recurrent layers as pure functions: a whole sequence forward, a whole sequence backward.

Every layer follows one pattern (after CS231n's ``*_forward`` / ``*_backward`` pairs, applied to
the whole window rather than to a single step):

    h_seq, cache = <kind>_forward(x, weight_ih, weight_hh, bias_ih, bias_hh)
    dx, grads    = <kind>_backward(dh_seq, cache)

Arrays are **time-major** inside the engine:

    x:      (time, batch, input_size)
    h_seq:  (time, batch, hidden)        hidden state after every step
    dh_seq: (time, batch, hidden)        dL/dh_t coming from *outside* the recurrence at every step
                                         (a head on the last step only, the next layer, or a loss
                                         on every step as in the golden hand-worked example)

Weights use PyTorch's layout and gate order so a ``state_dict`` round-trips unchanged:

    weight_ih: (G*H, input_size)   weight_hh: (G*H, H)   bias_ih, bias_hh: (G*H,)
    rnn  G=1: tanh(W_ih x + b_ih + W_hh h + b_hh)
    lstm G=4: gates i, f, g, o
    gru  G=3: gates r, z, n with b_hn inside r * (W_hn h + b_hn)

Speed: the input projection of all time steps is one matmul before the loop; the loop does one
(batch, H) @ (H, G*H) matmul per step; after the backward loop the weight gradients are again one
matmul each over all steps at once. No Python loop runs over samples.

The backward functions also return ``dh_norms``: the Frobenius norm of the total dL/dh_t (outside
gradient plus what flows back through the recurrence) at every step, shape (time,), so the
dashboard can show how gradients fade across the lookback window.
"""

from __future__ import annotations

import numpy as np

GATES = {"rnn": (), "lstm": ("i", "f", "g", "o"), "gru": ("r", "z", "n")}
GATE_COUNT = {"rnn": 1, "lstm": 4, "gru": 3}


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function written via tanh: exact, and never overflows for large |a|."""
    return 0.5 * (np.tanh(0.5 * a) + 1.0)


def _project_inputs(x, weight_ih, bias):
    """All time steps' input projections in one matmul: (T, B, D) -> (T, B, G*H)."""
    steps, batch, inputs = x.shape
    projected = x.reshape(steps * batch, inputs) @ weight_ih.T
    projected += bias
    return projected.reshape(steps, batch, -1)


def _weight_grads(d_pre, x, h_prev_seq):
    """Weight gradients summed over every step, one matmul each.

    d_pre: (T, B, G*H) gradient of the gate pre-activations; x: (T, B, D);
    h_prev_seq: (T, B, H) the hidden state each step started from.
    Returns dW_ih (G*H, D) and dW_hh (G*H, H).
    """
    steps, batch, gates_hidden = d_pre.shape
    flat = d_pre.reshape(steps * batch, gates_hidden).T
    d_weight_ih = flat @ x.reshape(steps * batch, -1)
    d_weight_hh = flat @ h_prev_seq.reshape(steps * batch, -1)
    return d_weight_ih, d_weight_hh


def _h0(batch, hidden, dtype):
    return np.zeros((batch, hidden), dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Elman RNN (tanh)
# ---------------------------------------------------------------------------------------------
def rnn_forward(x, weight_ih, weight_hh, bias_ih, bias_hh):
    """tanh RNN over a sequence. x: (T, B, D) -> h_seq (T, B, H), cache."""
    steps, batch, _ = x.shape
    hidden = weight_hh.shape[1]
    pre_x = _project_inputs(x, weight_ih, bias_ih + bias_hh)
    h_all = np.empty((steps + 1, batch, hidden), dtype=x.dtype)  # h_all[0] is h_{-1} = 0
    h_all[0] = 0.0
    weight_hh_t = weight_hh.T
    for t in range(steps):
        np.tanh(pre_x[t] + h_all[t] @ weight_hh_t, out=h_all[t + 1])
    return h_all[1:], (x, h_all, weight_ih, weight_hh)


def rnn_backward(dh_seq, cache):
    """Backward of :func:`rnn_forward`. dh_seq: (T, B, H) -> dx (T, B, D), grads, dh_norms (T,)."""
    x, h_all, weight_ih, weight_hh = cache
    steps = x.shape[0]
    d_pre = np.empty_like(h_all[1:])
    dh_norms = np.empty(steps)
    dh_next = np.zeros_like(h_all[0])
    for t in reversed(range(steps)):
        dh = dh_seq[t] + dh_next
        dh_norms[t] = np.linalg.norm(dh)
        h = h_all[t + 1]
        np.multiply(dh, 1.0 - h * h, out=d_pre[t])  # tanh' = 1 - tanh^2
        dh_next = d_pre[t] @ weight_hh
    d_weight_ih, d_weight_hh = _weight_grads(d_pre, x, h_all[:-1])
    d_bias = d_pre.sum(axis=(0, 1))
    dx = d_pre @ weight_ih
    grads = {"weight_ih": d_weight_ih, "weight_hh": d_weight_hh, "bias_ih": d_bias, "bias_hh": d_bias.copy()}
    return dx, grads, dh_norms


# ---------------------------------------------------------------------------------------------
# LSTM (gates i, f, g, o)
# ---------------------------------------------------------------------------------------------
def lstm_forward(x, weight_ih, weight_hh, bias_ih, bias_hh):
    """LSTM over a sequence. x: (T, B, D) -> h_seq (T, B, H), cache.

    The cache keeps the gate activations ``acts`` (T, B, 4H) in order i, f, g, o, the cell
    states ``c_all`` (T+1, B, H) and hidden states ``h_all`` (T+1, B, H), index 0 being the zero
    initial state.
    """
    steps, batch, _ = x.shape
    hidden = weight_hh.shape[1]
    acts = _project_inputs(x, weight_ih, bias_ih + bias_hh)  # pre-activations, made activations in place
    h_all = np.empty((steps + 1, batch, hidden), dtype=x.dtype)
    c_all = np.empty((steps + 1, batch, hidden), dtype=x.dtype)
    tanh_c = np.empty((steps, batch, hidden), dtype=x.dtype)
    h_all[0] = 0.0
    c_all[0] = 0.0
    weight_hh_t = weight_hh.T
    h3 = 3 * hidden
    for t in range(steps):
        gates = acts[t]
        gates += h_all[t] @ weight_hh_t
        # i, f, o are sigmoids, g is tanh; sigmoid(a) = (tanh(a/2) + 1) / 2 lets one tanh call do all four
        gates[:, : 2 * hidden] *= 0.5
        gates[:, h3:] *= 0.5
        np.tanh(gates, out=gates)
        gates[:, : 2 * hidden] += 1.0
        gates[:, : 2 * hidden] *= 0.5
        gates[:, h3:] += 1.0
        gates[:, h3:] *= 0.5
        i, f, g, o = gates[:, :hidden], gates[:, hidden : 2 * hidden], gates[:, 2 * hidden : h3], gates[:, h3:]
        c = c_all[t + 1]
        np.multiply(f, c_all[t], out=c)
        c += i * g
        np.tanh(c, out=tanh_c[t])
        np.multiply(o, tanh_c[t], out=h_all[t + 1])
    return h_all[1:], (x, acts, h_all, c_all, tanh_c, weight_ih, weight_hh)


def lstm_backward(dh_seq, cache):
    """Backward of :func:`lstm_forward`. dh_seq: (T, B, H) -> dx (T, B, D), grads, dh_norms (T,)."""
    x, acts, h_all, c_all, tanh_c, weight_ih, weight_hh = cache
    steps, batch, hidden = dh_seq.shape
    h2, h3 = 2 * hidden, 3 * hidden
    d_pre = np.empty_like(acts)
    dh_norms = np.empty(steps)
    dh_next = np.zeros((batch, hidden), dtype=x.dtype)
    dc_next = np.zeros((batch, hidden), dtype=x.dtype)
    for t in reversed(range(steps)):
        dh = dh_seq[t] + dh_next
        dh_norms[t] = np.linalg.norm(dh)
        gates = acts[t]
        i, f, g, o = gates[:, :hidden], gates[:, hidden:h2], gates[:, h2:h3], gates[:, h3:]
        tc = tanh_c[t]
        dc = dc_next + dh * o * (1.0 - tc * tc)
        dg = d_pre[t]
        dg[:, :hidden] = dc * g * i * (1.0 - i)
        dg[:, hidden:h2] = dc * c_all[t] * f * (1.0 - f)
        dg[:, h2:h3] = dc * i * (1.0 - g * g)
        dg[:, h3:] = dh * tc * o * (1.0 - o)
        dc_next = dc * f
        dh_next = dg @ weight_hh
    d_weight_ih, d_weight_hh = _weight_grads(d_pre, x, h_all[:-1])
    d_bias = d_pre.sum(axis=(0, 1))
    dx = d_pre @ weight_ih
    grads = {"weight_ih": d_weight_ih, "weight_hh": d_weight_hh, "bias_ih": d_bias, "bias_hh": d_bias.copy()}
    return dx, grads, dh_norms


# ---------------------------------------------------------------------------------------------
# GRU (gates r, z, n; b_hn inside the reset product, as in PyTorch)
# ---------------------------------------------------------------------------------------------
def gru_forward(x, weight_ih, weight_hh, bias_ih, bias_hh):
    """GRU over a sequence. x: (T, B, D) -> h_seq (T, B, H), cache.

    r = σ(W_ir x + b_ir + W_hr h + b_hr), z = σ(W_iz x + b_iz + W_hz h + b_hz),
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 − z) ⊙ n + z ⊙ h.
    The cache keeps ``acts`` (T, B, 3H) = r, z, n and ``hn`` (T, B, H) = W_hn h + b_hn.
    """
    steps, batch, _ = x.shape
    hidden = weight_hh.shape[1]
    h2 = 2 * hidden
    # r and z take both biases up front; n's hidden bias must stay inside the reset product
    fused_bias = bias_ih.copy()
    fused_bias[:h2] += bias_hh[:h2]
    acts = _project_inputs(x, weight_ih, fused_bias)
    hn_all = np.empty((steps, batch, hidden), dtype=x.dtype)
    h_all = np.empty((steps + 1, batch, hidden), dtype=x.dtype)
    h_all[0] = 0.0
    weight_hh_t = weight_hh.T
    bias_hn = bias_hh[h2:]
    for t in range(steps):
        h_prev = h_all[t]
        hidden_proj = h_prev @ weight_hh_t
        gates = acts[t]
        rz = gates[:, :h2]
        rz += hidden_proj[:, :h2]
        rz[...] = sigmoid(rz)
        r, z = rz[:, :hidden], rz[:, hidden:]
        hn = hn_all[t]
        np.add(hidden_proj[:, h2:], bias_hn, out=hn)
        n = gates[:, h2:]
        n += r * hn
        np.tanh(n, out=n)
        # h' = n + z * (h - n)
        np.subtract(h_prev, n, out=h_all[t + 1])
        h_all[t + 1] *= z
        h_all[t + 1] += n
    return h_all[1:], (x, acts, hn_all, h_all, weight_ih, weight_hh)


def gru_backward(dh_seq, cache):
    """Backward of :func:`gru_forward`. dh_seq: (T, B, H) -> dx (T, B, D), grads, dh_norms (T,)."""
    x, acts, hn_all, h_all, weight_ih, weight_hh = cache
    steps, batch, hidden = dh_seq.shape
    h2 = 2 * hidden
    d_pre_x = np.empty_like(acts)  # gradient of the input projections (incl. b_ih)
    d_pre_h = np.empty_like(acts)  # gradient of the hidden projections (incl. b_hh)
    dh_norms = np.empty(steps)
    dh_next = np.zeros((batch, hidden), dtype=x.dtype)
    for t in reversed(range(steps)):
        dh = dh_seq[t] + dh_next
        dh_norms[t] = np.linalg.norm(dh)
        gates = acts[t]
        r, z, n = gates[:, :hidden], gates[:, hidden:h2], gates[:, h2:]
        h_prev = h_all[t]
        dn_pre = dh * (1.0 - z) * (1.0 - n * n)
        dz_pre = dh * (h_prev - n) * z * (1.0 - z)
        dr_pre = dn_pre * hn_all[t] * r * (1.0 - r)
        dx_t, dh_t = d_pre_x[t], d_pre_h[t]
        dx_t[:, :hidden] = dr_pre
        dx_t[:, hidden:h2] = dz_pre
        dx_t[:, h2:] = dn_pre
        dh_t[:, :h2] = dx_t[:, :h2]
        np.multiply(dn_pre, r, out=dh_t[:, h2:])
        dh_next = dh * z + dh_t @ weight_hh
    flat_x = d_pre_x.reshape(steps * batch, -1).T
    flat_h = d_pre_h.reshape(steps * batch, -1).T
    grads = {
        "weight_ih": flat_x @ x.reshape(steps * batch, -1),
        "weight_hh": flat_h @ h_all[:-1].reshape(steps * batch, -1),
        "bias_ih": d_pre_x.sum(axis=(0, 1)),
        "bias_hh": d_pre_h.sum(axis=(0, 1)),
    }
    dx = d_pre_x @ weight_ih
    return dx, grads, dh_norms


FORWARD = {"rnn": rnn_forward, "lstm": lstm_forward, "gru": gru_forward}
BACKWARD = {"rnn": rnn_backward, "lstm": lstm_backward, "gru": gru_backward}


def gate_activations(kind, cache):
    """Gate activations of a forward pass: dict gate name -> (T, B, H). Empty for the plain RNN."""
    if kind == "rnn":
        return {}
    acts = cache[1]
    hidden = acts.shape[2] // GATE_COUNT[kind]
    return {name: acts[:, :, k * hidden : (k + 1) * hidden] for k, name in enumerate(GATES[kind])}

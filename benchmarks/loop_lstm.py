"""Reference for the speed benchmark: the same LSTM trained the way the seed notebooks train it.

Seed 000 keeps one weight matrix per gate over the concatenated ``[x_t, h_{t-1}]``, runs one
sequence at a time, and inside it one time step at a time with a ``np.dot`` per gate; backward
accumulates one outer product per gate and step. This file does exactly that for a 1-layer LSTM
holding rnnlab's parameters (PyTorch gate order i, f, g, o; a linear head on the last hidden
state), so it computes the same loss and gradients and the benchmark's ratio measures
vectorization alone. Kept out of the package on purpose.
"""

import numpy as np


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def _gate_matrices(params):
    """Per-gate matrices over [x, h] and per-gate biases, as the notebook lays them out."""
    hidden = params["rnn.weight_hh_l0"].shape[1]
    combined = np.concatenate([params["rnn.weight_ih_l0"], params["rnn.weight_hh_l0"]], axis=1)
    bias = params["rnn.bias_ih_l0"] + params["rnn.bias_hh_l0"]
    rows = {gate: slice(k * hidden, (k + 1) * hidden) for k, gate in enumerate("ifgo")}
    return {gate: combined[rows[gate]] for gate in "ifgo"}, {gate: bias[rows[gate]] for gate in "ifgo"}


def loop_loss_and_grads(params, x, y):
    """params: rnnlab LSTM params (1 layer); x: (batch, lookback, D); y: (batch,) -> loss, grads."""
    weights, biases = _gate_matrices(params)
    w_i, w_f, w_g, w_o = (weights[gate] for gate in "ifgo")
    head_w, head_b = params["head.weight"][0], params["head.bias"][0]
    inputs = x.shape[2]
    hidden = head_w.shape[0]
    d_weights = {gate: np.zeros_like(weights[gate]) for gate in "ifgo"}
    d_biases = {gate: np.zeros(hidden) for gate in "ifgo"}
    d_head_w, d_head_b = np.zeros(hidden), 0.0
    batch = x.shape[0]
    total = 0.0
    for sample in range(batch):
        h, c = np.zeros(hidden), np.zeros(hidden)
        cache = []
        for x_t in x[sample]:
            combined = np.concatenate([x_t, h])
            i = _sigmoid(np.dot(w_i, combined) + biases["i"])
            f = _sigmoid(np.dot(w_f, combined) + biases["f"])
            g = np.tanh(np.dot(w_g, combined) + biases["g"])
            o = _sigmoid(np.dot(w_o, combined) + biases["o"])
            c_prev = c
            c = f * c_prev + i * g
            h = o * np.tanh(c)
            cache.append((combined, c_prev, c, i, f, g, o))
        error = np.dot(head_w, h) + head_b - y[sample]
        total += error * error
        d_out = 2.0 * error / batch
        d_head_w += d_out * h
        d_head_b += d_out
        dh, dc_next = d_out * head_w, np.zeros(hidden)
        for combined, c_prev, c, i, f, g, o in reversed(cache):
            tanh_c = np.tanh(c)
            do = dh * tanh_c * o * (1 - o)
            dc = dc_next + dh * o * (1 - tanh_c**2)
            di = dc * g * i * (1 - i)
            df = dc * c_prev * f * (1 - f)
            dg = dc * i * (1 - g**2)
            for gate, d_gate in (("i", di), ("f", df), ("g", dg), ("o", do)):
                d_weights[gate] += np.outer(d_gate, combined)
                d_biases[gate] += d_gate
            d_combined = np.dot(w_i.T, di) + np.dot(w_f.T, df) + np.dot(w_g.T, dg) + np.dot(w_o.T, do)
            dh = d_combined[inputs:]
            dc_next = dc * f

    d_stacked = np.concatenate([d_weights[gate] for gate in "ifgo"])
    d_bias = np.concatenate([d_biases[gate] for gate in "ifgo"])
    grads = {
        "rnn.weight_ih_l0": d_stacked[:, :inputs],
        "rnn.weight_hh_l0": d_stacked[:, inputs:],
        "rnn.bias_ih_l0": d_bias,
        "rnn.bias_hh_l0": d_bias.copy(),
        "head.weight": d_head_w[None, :],
        "head.bias": np.array([d_head_b]),
    }
    return total / batch, grads

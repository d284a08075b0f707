"""Optimizers and gradient clipping over parameter dicts.

Optimizers keep their state keyed by parameter name (after numpy-ml), update ``params`` in place
with ``step(params, grads)``, and can be saved and resumed with ``state_dict()`` /
``load_state_dict()``. The update rules follow ``torch.optim.SGD`` and ``torch.optim.Adam`` /
``AdamW`` term by term, so the same gradients give the same parameters.
"""

from __future__ import annotations

import math

import numpy as np

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")


def _check_lr(lr):
    if not (isinstance(lr, (int, float, np.floating)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"The learning rate must be a positive number, got {lr!r}.")


def _copy_state(state):
    return {key: (value.copy() if isinstance(value, np.ndarray) else value) for key, value in state.items()}


class SGD:
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.

    As in PyTorch: g ← g + wd·θ;  v ← μ·v + g;  step = g + μ·v (Nesterov) or v;  θ ← θ − lr·step.
    """

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        _check_lr(lr)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"Momentum must lie in [0, 1), got {momentum!r}.")
        if nesterov and momentum == 0.0:
            raise ValueError("Nesterov momentum needs a momentum above 0.")
        if weight_decay < 0:
            raise ValueError(f"Weight decay must be ≥ 0, got {weight_decay!r}.")
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.weight_decay = weight_decay
        self.velocity: dict[str, np.ndarray] = {}

    def step(self, params, grads):
        for name, param in params.items():
            grad = grads[name]
            if self.weight_decay:
                grad = grad + self.weight_decay * param
            if self.momentum:
                velocity = self.velocity.get(name)
                if velocity is None:
                    velocity = self.velocity[name] = np.array(grad, copy=True)
                else:
                    velocity *= self.momentum
                    velocity += grad
                grad = grad + self.momentum * velocity if self.nesterov else velocity
            param -= self.lr * grad

    def state_dict(self):
        return {"kind": "sgd", "lr": self.lr, "momentum": self.momentum, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay, "velocity": _copy_state(self.velocity)}

    def load_state_dict(self, state):
        self.lr, self.momentum = state["lr"], state["momentum"]
        self.nesterov, self.weight_decay = state["nesterov"], state["weight_decay"]
        self.velocity = _copy_state(state["velocity"])


class Adam:
    """Adam; ``decoupled=True`` gives AdamW (weight decay applied to θ, not added to the gradient).

    m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
    θ ← θ − (lr / (1−β1ᵗ)) · m / (√v / √(1−β2ᵗ) + ε)   — PyTorch's exact arrangement.
    """

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        _check_lr(lr)
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"Adam's betas must lie in [0, 1), got {betas!r}.")
        if weight_decay < 0:
            raise ValueError(f"Weight decay must be ≥ 0, got {weight_decay!r}.")
        self.lr = lr
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay
        self.decoupled = decoupled
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(self, params, grads):
        self.t += 1
        beta1, beta2 = self.betas
        bias_correction1 = 1.0 - beta1**self.t
        bias_correction2_sqrt = math.sqrt(1.0 - beta2**self.t)
        step_size = self.lr / bias_correction1
        for name, param in params.items():
            grad = grads[name]
            if self.weight_decay:
                if self.decoupled:
                    param *= 1.0 - self.lr * self.weight_decay
                else:
                    grad = grad + self.weight_decay * param
            if name not in self.m:
                self.m[name] = np.zeros_like(param)
                self.v[name] = np.zeros_like(param)
            m, v = self.m[name], self.v[name]
            m *= beta1
            m += (1.0 - beta1) * grad
            v *= beta2
            v += (1.0 - beta2) * grad * grad
            denom = np.sqrt(v)
            denom /= bias_correction2_sqrt
            denom += self.eps
            param -= step_size * (m / denom)

    def state_dict(self):
        return {"kind": "adamw" if self.decoupled else "adam", "lr": self.lr, "betas": self.betas,
                "eps": self.eps, "weight_decay": self.weight_decay, "t": self.t,
                "m": _copy_state(self.m), "v": _copy_state(self.v)}

    def load_state_dict(self, state):
        self.lr, self.betas, self.eps = state["lr"], tuple(state["betas"]), state["eps"]
        self.weight_decay, self.t = state["weight_decay"], state["t"]
        self.decoupled = state["kind"] == "adamw"
        self.m, self.v = _copy_state(state["m"]), _copy_state(state["v"])


def make_optimizer(name, lr, momentum=0.9, weight_decay=0.0):
    """Build an optimizer by name: sgd, momentum, nesterov, adam or adamw."""
    if name == "sgd":
        return SGD(lr, weight_decay=weight_decay)
    if name == "momentum":
        return SGD(lr, momentum=momentum, weight_decay=weight_decay)
    if name == "nesterov":
        return SGD(lr, momentum=momentum, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return Adam(lr, weight_decay=weight_decay)
    if name == "adamw":
        return Adam(lr, weight_decay=weight_decay, decoupled=True)
    raise ValueError(f"Unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}.")


def global_norm(grads) -> float:
    """‖g‖₂ over all gradient arrays taken together."""
    return math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))


def clip_grad_norm(grads, max_norm) -> float:
    """Scale all gradients in place so their global norm is at most ``max_norm``.

    Returns the norm *before* clipping (so it can be charted). ``max_norm <= 0`` disables clipping.
    Like ``torch.nn.utils.clip_grad_norm_``: scale = max_norm / (norm + 1e-6), applied when < 1.
    A non-finite norm is returned unchanged and nothing is scaled, so the caller can stop the run.
    """
    total = global_norm(grads)
    if max_norm and max_norm > 0 and math.isfinite(total):
        scale = max_norm / (total + 1e-6)
        if scale < 1.0:
            for grad in grads.values():
                grad *= scale
    return total


def clip_grad_value(grads, clip_value) -> None:
    """Clamp every gradient element to [−clip_value, clip_value] in place; ``clip_value <= 0`` disables."""
    if clip_value and clip_value > 0:
        for grad in grads.values():
            np.clip(grad, -clip_value, clip_value, out=grad)

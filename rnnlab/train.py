"""The training loop: one record per epoch, streamed, stoppable, reproducible from a seed.

    trainer = Trainer(TrainConfig(model="lstm", epochs=30), prepared)
    for record in trainer.fit(stop_event):   # a dict per epoch (see ``Trainer.fit``)
        ...
    trainer.model, trainer.status, trainer.message

The model file holds only the model; this loop lives apart (as in nanoGPT's train.py).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnlab.errors import SettingError
from rnnlab.windows import PreparedData
from rnnlab.models import DTYPES, KINDS, create_model
from rnnlab.optim import OPTIMIZERS, clip_grad_norm, clip_grad_value, make_optimizer


@dataclass
class TrainConfig:
    model: str = "lstm"  # rnn, lstm or gru; the LSTM's cell state carries weather signals across a week well
    hidden_size: int = 32  # units per layer; 32 already beats the linear baseline on daily temperatures
    num_layers: int = 1  # stacked recurrent layers; a second rarely helps a 3-feature daily series
    lookback: int = 7  # days in each input window: one week covers the usual weather systems
    horizon: int = 1  # forecast this many days after the window's last day
    features: tuple | None = None  # input columns; None = every numeric column except leaks of the target
    target: str | None = None  # column to forecast; None = a daily maximum temperature if the data has one
    optimizer: str = "adam"  # sgd, momentum, nesterov, adam or adamw; Adam needs the least tuning
    lr: float = 1e-3  # Adam's usual step size; 1e-2 and above tends to diverge without clipping
    momentum: float = 0.9  # for momentum and nesterov only: the classic value
    weight_decay: float = 0.0  # L2 (decoupled for adamw); the models are small enough not to need it
    batch_size: int = 64  # windows per step: small enough for many updates per epoch, large enough to vectorize
    epochs: int = 30  # passes over the training windows; early stopping usually ends sooner
    grad_clip: float = 1.0  # clip the global gradient norm at this value; 0 disables
    clip_value: float = 0.0  # also clamp each gradient element to ±this; 0 disables
    patience: int = 10  # stop after this many epochs without a better validation loss (it is noisy); 0 disables
    seed: int = 0  # initial weights and batch order: the same seed gives the same run
    dtype: str = "float64"  # float64 for exact maths, float32 for speed

    def __post_init__(self):
        if self.features is not None:
            self.features = tuple(self.features)

    def validate(self) -> "TrainConfig":
        """Raise SettingError (one readable sentence) for a setting that cannot work."""
        def fail(message):
            raise SettingError(message)

        if self.model not in KINDS:
            fail(f"Unknown model {self.model!r}: choose one of {', '.join(KINDS)}.")
        if self.optimizer not in OPTIMIZERS:
            fail(f"Unknown optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}.")
        if self.dtype not in DTYPES:
            fail(f"Unknown precision {self.dtype!r}: choose float64 or float32.")
        for name, low, high in (("hidden_size", 1, 1024), ("num_layers", 1, 8), ("lookback", 1, 365),
                                ("horizon", 1, 365), ("batch_size", 1, 100_000), ("epochs", 1, 10_000),
                                ("patience", 0, 10_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                fail(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= 10):
            fail(f"The learning rate must be above 0 and at most 10, got {self.lr!r}.")
        for name in ("grad_clip", "clip_value", "weight_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                fail(f"{name} must be 0 or a positive number, got {value!r}.")
        if not 0 <= self.momentum < 1:
            fail(f"Momentum must lie in [0, 1), got {self.momentum!r}.")
        if self.seed is None or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            fail(f"The seed must be a whole number ≥ 0, got {self.seed!r}.")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["features"] = list(self.features) if self.features is not None else None
        return d

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# Losses are on a standardized target: predicting the training mean scores about 1, so a loss past
# this is a run that has blown up, finite or not.
DIVERGED_LOSS = 1e6


def _diverged(loss, norm=0.0) -> bool:
    return not (math.isfinite(loss) and math.isfinite(norm)) or loss > DIVERGED_LOSS


def _diverged_message(epoch, kept_epoch):
    kept = f"kept the weights of epoch {kept_epoch}" if kept_epoch else "kept the initial weights"
    return (f"Training diverged in epoch {epoch} (the loss exploded or became NaN) and was stopped; {kept}. "
            "Lower the learning rate or turn on gradient clipping.")


class Trainer:
    """Trains a model on prepared windows, one epoch at a time.

    After ``fit`` ends, ``model`` holds the weights of the best validation epoch, ``status`` is one
    of completed / early_stopped / stopped / diverged, and ``message`` says so in a sentence.
    """

    def __init__(self, config: TrainConfig, prepared: PreparedData):
        self.config = config.validate()
        self.prepared = prepared
        self.model = create_model(config.model, prepared.n_features, config.hidden_size, config.num_layers,
                                  seed=config.seed, dtype=config.dtype)
        self.optimizer = make_optimizer(config.optimizer, config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
        self.initial_params = {k: v.copy() for k, v in self.model.params.items()}
        self.history: list[dict] = []
        self.status = "not started"
        self.message = ""
        self.best_epoch = 0
        self.best_val_loss = math.inf

    def _validation_loss(self) -> float:
        error = self.model.predict(self.prepared.x_val) - self.prepared.y_val
        return float(np.mean(error.astype(np.float64) ** 2))

    def fit(self, stop_event: threading.Event | None = None):
        """Train, yielding after every epoch a record (dict):

        epoch, train_loss, val_loss (scaled MSE), val_mse (target units²), grad_norm_mean,
        grad_norm_max (pre-clip global norm over the epoch's steps), clipped_fraction,
        update_norms {param: ‖Δθ‖ over the epoch}, relative_change {param: % change of ‖θ − θ₀‖ / ‖θ₀‖},
        step_grad_norms (lookback,) mean ‖∂L/∂h_t‖ over the epoch's steps, seconds, lr.
        ``stop_event`` is checked before every batch.
        """
        config, model, prepared = self.config, self.model, self.prepared
        x, y = prepared.x_train.astype(config.dtype), prepared.y_train.astype(config.dtype)
        rng = np.random.default_rng(config.seed)
        best_params = {k: v.copy() for k, v in model.params.items()}
        epochs_without_gain = 0
        self.status = "running"
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            before = {k: v.copy() for k, v in model.params.items()}
            order = rng.permutation(len(x))
            loss_sum, norms, clipped = 0.0, [], 0
            step_norm_sum = np.zeros(config.lookback)
            # overflow on the way to a diverged run is detected below and reported, not warned about
            with np.errstate(over="ignore", invalid="ignore"):
                for start in range(0, len(x), config.batch_size):
                    if stop_event is not None and stop_event.is_set():
                        return self._finish("stopped", best_params, f"Stopped during epoch {epoch}")
                    index = order[start : start + config.batch_size]
                    loss, grads, step_norms = model.loss_and_grads(x[index], y[index], return_step_norms=True)
                    norm = clip_grad_norm(grads, config.grad_clip)
                    if _diverged(loss, norm):
                        model.set_params(best_params)
                        self.status, self.message = "diverged", _diverged_message(epoch, self.best_epoch)
                        return None
                    clipped += config.grad_clip > 0 and norm > config.grad_clip
                    clip_grad_value(grads, config.clip_value)
                    self.optimizer.step(model.params, grads)
                    loss_sum += loss * len(index)
                    norms.append(norm)
                    step_norm_sum += step_norms
                val_loss = self._validation_loss()
                if _diverged(val_loss):
                    model.set_params(best_params)
                    self.status, self.message = "diverged", _diverged_message(epoch, self.best_epoch)
                    return None
            record = {
                "epoch": epoch,
                "train_loss": loss_sum / len(x),
                "val_loss": val_loss,
                "val_mse": val_loss * prepared.target_scale**2,
                "grad_norm_mean": float(np.mean(norms)),
                "grad_norm_max": float(np.max(norms)),
                "clipped_fraction": clipped / len(norms),
                "update_norms": {k: float(np.linalg.norm(model.params[k] - before[k])) for k in model.params},
                "relative_change": {
                    k: float(100 * np.linalg.norm(model.params[k] - self.initial_params[k])
                             / max(np.linalg.norm(self.initial_params[k]), 1e-12))
                    for k in model.params
                },
                "step_grad_norms": (step_norm_sum / len(norms)).tolist(),
                "seconds": time.perf_counter() - started,
                "lr": config.lr,
            }
            self.history.append(record)
            if val_loss < self.best_val_loss:
                self.best_val_loss, self.best_epoch = val_loss, epoch
                best_params = {k: v.copy() for k, v in model.params.items()}
                epochs_without_gain = 0
            else:
                epochs_without_gain += 1
            yield record
            if config.patience and epochs_without_gain >= config.patience:
                return self._finish("early_stopped", best_params,
                                    f"Stopped early after epoch {epoch}: no better validation loss for {config.patience} epochs")
        return self._finish("completed", best_params, f"Trained all {config.epochs} epochs")

    def _finish(self, status, best_params, opening):
        if self.best_epoch:
            self.model.set_params(best_params)
            kept = f"kept the weights of epoch {self.best_epoch}, the best on validation"
        else:
            kept = "no epoch finished, so the initial weights are kept"
        self.status, self.message = status, f"{opening}; {kept}."
        return None

    def run(self, stop_event=None, on_epoch=None) -> "Trainer":
        """Train to the end, calling ``on_epoch(record)`` after each epoch; returns self."""
        for record in self.fit(stop_event):
            if on_epoch is not None:
                on_epoch(record)
        return self


def history_frame(history: list[dict]) -> pd.DataFrame:
    """Epoch records as a flat table (one row per epoch; per-parameter values as "update_norms.<name>"
    columns, the per-step gradient norms as a JSON list) for CSV files."""
    import json

    frame = pd.json_normalize(history, sep=".")
    if history:
        frame["step_grad_norms"] = [json.dumps(r["step_grad_norms"]) for r in history]
    return frame

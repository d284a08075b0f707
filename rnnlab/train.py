"""The training loop: one record per epoch, streamed, stoppable, reproducible from a seed.

    trainer = Trainer(TrainConfig(model="lstm", epochs=30), prepared).fit()   # trains to the end
    for record in Trainer(config, prepared).iter_epochs(stop_event):          # or epoch by epoch
        ...
    trainer.model, trainer.status, trainer.message

The data settings (target, features, lookback, horizon) are those of ``prepared``; ``TrainConfig``
holds only how the model is built and trained (see rnnlab/config.py).

The model file holds only the model; this loop lives apart (as in nanoGPT's train.py).
"""

from __future__ import annotations

import math
import threading
import time
import numpy as np
import pandas as pd

from rnnlab.config import TrainConfig
from rnnlab.models import create_model
from rnnlab.optim import clip_grad_norm, clip_grad_value, make_optimizer
from rnnlab.windows import PreparedData

__all__ = ["TrainConfig", "Trainer", "history_frame", "DIVERGED_LOSS"]


# Losses are on a standardized target: predicting the training mean scores about 1, so a loss past
# this is a run that has blown up, finite or not.
DIVERGED_LOSS = 1e6


def _diverged(loss, norm=0.0) -> bool:
    return not (math.isfinite(loss) and math.isfinite(norm)) or loss > DIVERGED_LOSS


class Trainer:
    """Trains a model on prepared windows, one epoch at a time.

    After training ends, ``model`` holds the weights of the best validation epoch (the initial
    weights when no epoch finished), ``status`` is one of completed / early_stopped / stopped /
    diverged, and ``message`` says so in a sentence. ``batch_losses`` holds the per-batch training
    losses of the epoch in progress (or of the epoch in which the run stopped or diverged).
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
        self.batch_losses: list[float] = []
        self.batches_per_epoch = -(-prepared.count("train") // config.batch_size)
        self.status = "not started"
        self.message = ""
        self.best_epoch = 0
        self.best_val_loss = math.inf

    def _validation_loss(self) -> float:
        """Scaled MSE over the validation windows, gathered a chunk at a time."""
        prepared = self.prepared
        total, count = 0.0, prepared.count("validation")
        for start in range(0, count, 4096):
            index = np.arange(start, min(start + 4096, count))
            error = self.model.predict(prepared.inputs("validation", index)) - prepared.targets("validation", index)
            total += float(np.sum(error.astype(np.float64) ** 2))
        return total / count

    def iter_epochs(self, stop_event: threading.Event | None = None, on_batch=None):
        """Train lazily, yielding after every epoch a record (dict) — nothing trains until iterated:

        epoch, train_loss, val_loss (scaled MSE), val_mse (target units²), grad_norm_mean,
        grad_norm_max (pre-clip global norm over the epoch's steps), clipped_fraction,
        update_norms {param: ‖Δθ‖ over the epoch}, relative_change {param: % change of ‖θ − θ₀‖ / ‖θ₀‖},
        step_grad_norms (lookback,) mean ‖∂L/∂h_t‖ over the epoch's steps, seconds, lr.
        ``stop_event`` is checked before every batch; ``on_batch(batches_done)`` is called after each.
        """
        config, model, prepared = self.config, self.model, self.prepared
        n_train = prepared.count("train")
        rng = np.random.default_rng(config.seed)
        best_params = {k: v.copy() for k, v in model.params.items()}
        epochs_without_gain = 0
        self.status = "running"
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            before = {k: v.copy() for k, v in model.params.items()}
            order = rng.permutation(n_train)
            loss_sum, norms, clipped = 0.0, [], 0
            step_norm_sum = np.zeros(prepared.lookback)
            self.batch_losses = []
            # overflow on the way to a diverged run is detected below and reported, not warned about
            with np.errstate(over="ignore", invalid="ignore"):
                for start in range(0, n_train, config.batch_size):
                    if stop_event is not None and stop_event.is_set():
                        return self._finish("stopped", best_params, f"Stopped during epoch {epoch}")
                    index = order[start : start + config.batch_size]
                    x = prepared.inputs("train", index, config.dtype)
                    y = prepared.targets("train", index, config.dtype)
                    loss, grads, step_norms = model.loss_and_grads(x, y, return_step_norms=True)
                    self.batch_losses.append(float(loss))
                    norm = clip_grad_norm(grads, config.grad_clip)
                    if _diverged(loss, norm):
                        return self._diverge(epoch, best_params)
                    clipped += config.grad_clip > 0 and norm > config.grad_clip
                    clip_grad_value(grads, config.clip_value)
                    self.optimizer.step(model.params, grads)
                    loss_sum += loss * len(index)
                    norms.append(norm)
                    step_norm_sum += step_norms
                    if on_batch is not None:
                        on_batch(len(norms))
                val_loss = self._validation_loss()
                if _diverged(val_loss):
                    return self._diverge(epoch, best_params)
            record = {
                "epoch": epoch,
                "train_loss": loss_sum / n_train,
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

    def _kept_weights(self, best_params) -> str:
        """Put the weights that are kept into the model, and say which they are."""
        if self.best_epoch:
            self.model.set_params(best_params)
            return f"kept the weights of epoch {self.best_epoch}, the best on validation"
        # no epoch finished: the half-trained weights of an interrupted epoch are never kept
        self.model.set_params(self.initial_params)
        return "no epoch finished, so the model holds its initial, untrained weights"

    def _finish(self, status, best_params, opening):
        kept = self._kept_weights(best_params)
        self.status, self.message = status, f"{opening}; {kept}."
        return None

    def _diverge(self, epoch, best_params):
        kept = self._kept_weights(best_params)
        self.status = "diverged"
        self.message = (f"Training diverged in epoch {epoch} (the loss exploded or became NaN) and was stopped; "
                        f"{kept}. Lower the learning rate or turn on gradient clipping.")
        return None

    def fit(self, stop_event=None, on_epoch=None) -> "Trainer":
        """Train to the end (or until ``stop_event`` is set), calling ``on_epoch(record)`` after each epoch."""
        for record in self.iter_epochs(stop_event):
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

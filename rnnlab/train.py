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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnlab.config import TrainConfig
from rnnlab.errors import SettingError
from rnnlab.models import create_model
from rnnlab.optim import clip_grad_norm, clip_grad_value, make_optimizer
from rnnlab.windows import PreparedData

__all__ = ["TrainConfig", "Trainer", "Snapshot", "history_frame", "DIVERGED_LOSS", "SNAPSHOT_BUDGET"]


@dataclass
class Snapshot:
    """Everything needed to continue training exactly from the end of ``epoch``.

    params / best_params: {name: array}; optimizer: the optimizer's ``state_dict()``; rng_state: the
    batch-order generator's state (so the next epochs shuffle as the parent's did); history: the
    epoch records 1..epoch.
    """

    epoch: int
    params: dict
    optimizer: dict
    rng_state: dict
    best_epoch: int
    best_val_loss: float
    best_params: dict
    epochs_without_gain: int
    history: list

    @property
    def nbytes(self) -> int:
        arrays = list(self.params.values()) + list(self.best_params.values())
        for value in self.optimizer.values():
            if isinstance(value, dict):
                arrays += [v for v in value.values() if isinstance(v, np.ndarray)]
        return int(sum(a.nbytes for a in arrays))


# Snapshots kept per run: every epoch while they fit, thinned evenly (every 2nd, 4th, … epoch) beyond
SNAPSHOT_BUDGET = 64 * 1024 * 1024


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

    def __init__(self, config: TrainConfig, prepared: PreparedData, resume: Snapshot | None = None,
                 snapshot_budget: int = SNAPSHOT_BUDGET):
        """``resume``: continue from a snapshot (of a run with the same model and data) with ``config``'s
        training settings; epochs count on from the snapshot's epoch up to ``config.epochs``."""
        self.config = config.validate()
        self.prepared = prepared
        self.model = create_model(config.model, prepared.n_features, config.hidden_size, config.num_layers,
                                  seed=config.seed, dtype=config.dtype, output_size=prepared.horizon)
        self.optimizer = make_optimizer(config.optimizer, config.lr, momentum=config.momentum,
                                        weight_decay=config.weight_decay)
        self.initial_params = {k: v.copy() for k, v in self.model.params.items()}
        self.rng = np.random.default_rng(config.seed)
        self.history: list[dict] = []
        self.batch_losses: list[float] = []
        # lead-1 forecasts of the validation days (target units) by the weights of the last epoch, for a
        # live predictions chart; None before the first epoch ends
        self.validation_predictions: np.ndarray | None = None
        self.batches_per_epoch = -(-prepared.count("train") // config.batch_size)
        self.status = "not started"
        self.message = ""
        self.best_epoch = 0
        self.best_val_loss = math.inf
        self.best_params = {k: v.copy() for k, v in self.model.params.items()}
        self.epochs_without_gain = 0
        self.snapshots: dict[int, Snapshot] = {}
        self.snapshot_budget = snapshot_budget
        self._snapshot_stride = 1
        self.start_epoch = 1
        if resume is not None:
            self._resume(resume)

    def _resume(self, snapshot: Snapshot) -> None:
        if snapshot.epoch >= self.config.epochs:
            raise SettingError(f"The branch starts after epoch {snapshot.epoch}, so it needs more than "
                               f"{snapshot.epoch} epochs in all; got {self.config.epochs}.")
        self.model.set_params(snapshot.params)
        # the optimizer's moments carry over when the optimizer stays; its settings are the new config's
        if snapshot.optimizer.get("kind") == self.optimizer.state_dict()["kind"]:
            fresh = self.optimizer.state_dict()
            self.optimizer.load_state_dict(snapshot.optimizer)
            for key in ("lr", "momentum", "nesterov", "weight_decay"):
                if key in fresh:
                    setattr(self.optimizer, key, fresh[key])
        self.rng.bit_generator.state = snapshot.rng_state
        self.best_epoch, self.best_val_loss = snapshot.best_epoch, snapshot.best_val_loss
        self.best_params = {k: v.copy() for k, v in snapshot.best_params.items()}
        self.epochs_without_gain = snapshot.epochs_without_gain
        self.history = [dict(r) for r in snapshot.history]
        self.start_epoch = snapshot.epoch + 1

    def snapshot(self, epoch: int) -> Snapshot:
        """The state at the end of ``epoch``, copied (for the current epoch, or a kept snapshot)."""
        return Snapshot(epoch, {k: v.copy() for k, v in self.model.params.items()}, self.optimizer.state_dict(),
                        self.rng.bit_generator.state, self.best_epoch, self.best_val_loss,
                        {k: v.copy() for k, v in self.best_params.items()}, self.epochs_without_gain,
                        [dict(r) for r in self.history])

    def _keep_snapshot(self, epoch: int) -> None:
        """Keep this epoch's snapshot within the byte budget: every epoch while they fit, else evenly thinned."""
        if epoch % self._snapshot_stride:
            return
        self.snapshots[epoch] = self.snapshot(epoch)
        while len(self.snapshots) > 1 and sum(s.nbytes for s in self.snapshots.values()) > self.snapshot_budget:
            self._snapshot_stride *= 2
            self.snapshots = {e: s for e, s in self.snapshots.items() if e % self._snapshot_stride == 0}
            if not self.snapshots:  # keep the newest rather than none
                self.snapshots = {epoch: self.snapshot(epoch)}

    def _validation_loss(self) -> float:
        """Scaled MSE over the validation windows and their lead days, gathered a chunk at a time (the
        lead-1 forecasts are kept in ``validation_predictions`` on the way)."""
        prepared = self.prepared
        total, count = 0.0, prepared.count("validation")
        lead_one = np.empty(count)
        for start in range(0, count, 4096):
            index = np.arange(start, min(start + 4096, count))
            predicted = self.model.predict(prepared.inputs("validation", index))
            lead_one[index] = predicted[:, 0]
            error = predicted - prepared.targets("validation", index)
            total += float(np.sum(error.astype(np.float64) ** 2))
        self.validation_predictions = prepared.inverse_target(lead_one)
        return total / (count * prepared.horizon)

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
        self.status = "running"
        for epoch in range(self.start_epoch, config.epochs + 1):
            started = time.perf_counter()
            before = {k: v.copy() for k, v in model.params.items()}
            order = self.rng.permutation(n_train)
            loss_sum, norms, clipped = 0.0, [], 0
            step_norm_sum = np.zeros(prepared.lookback)
            self.batch_losses = []
            # overflow on the way to a diverged run is detected below and reported, not warned about
            with np.errstate(over="ignore", invalid="ignore"):
                for start in range(0, n_train, config.batch_size):
                    if stop_event is not None and stop_event.is_set():
                        return self._finish("stopped", f"Stopped during epoch {epoch}")
                    index = order[start : start + config.batch_size]
                    x = prepared.inputs("train", index, config.dtype)
                    y = prepared.targets("train", index, config.dtype)
                    loss, grads, step_norms = model.loss_and_grads(x, y, return_step_norms=True)
                    self.batch_losses.append(float(loss))
                    norm = clip_grad_norm(grads, config.grad_clip)
                    if _diverged(loss, norm):
                        return self._diverge(epoch)
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
                    return self._diverge(epoch)
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
                self.best_params = {k: v.copy() for k, v in model.params.items()}
                self.epochs_without_gain = 0
            else:
                self.epochs_without_gain += 1
            self._keep_snapshot(epoch)
            yield record
            if config.patience and self.epochs_without_gain >= config.patience:
                return self._finish("early_stopped", f"Stopped early after epoch {epoch}: no better validation "
                                                     f"loss for {config.patience} epochs")
        return self._finish("completed", f"Trained all {config.epochs} epochs")

    def _kept_weights(self) -> str:
        """Put the weights that are kept into the model, and say which they are."""
        if self.best_epoch:
            self.model.set_params(self.best_params)
            return f"kept the weights of epoch {self.best_epoch}, the best on validation"
        # no epoch finished: the half-trained weights of an interrupted epoch are never kept
        self.model.set_params(self.initial_params)
        return "no epoch finished, so the model holds its initial, untrained weights"

    def _finish(self, status, opening):
        kept = self._kept_weights()
        self.status, self.message = status, f"{opening}; {kept}."
        return None

    def _diverge(self, epoch):
        kept = self._kept_weights()
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

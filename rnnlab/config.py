"""Every setting of a run, in one place: its default, the reason for it, its limits and its help text.

Two dataclasses describe a run:

- :class:`DataSettings` — what the model sees: target, features, lookback, horizon, split shares
  (train / validation / calibration / test, in date order).
  ``windows.prepare`` turns a table and these settings into a ``PreparedData``, which then is the
  only place a trainer, a weights file or a chart reads them from.
- :class:`TrainConfig` — how the model is built and trained: kind, sizes, optimizer, clipping, …

The dashboard's widgets and the command line's flags are generated from the same fields: each
field's ``metadata`` holds ``label``, ``help``, ``low``/``high`` (the limits ``validate`` enforces)
and, for settings offered as a list, ``choices``. Change a default or a limit here and the app, the
CLI and the checks all follow.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from rnnlab.errors import SettingError
from rnnlab.models import DTYPES, KINDS
from rnnlab.optim import OPTIMIZERS


def setting(default, label: str, help: str, low=None, high=None, choices=None, **extra):
    """A dataclass field carrying what the app and the CLI need to offer it and ``validate`` to check it."""
    metadata = {"label": label, "help": help, "low": low, "high": high, "choices": choices, **extra}
    return field(default=default, metadata=metadata)


def spec(settings_class, name: str) -> dict:
    """The metadata of one setting plus its ``default``: ``spec(TrainConfig, "lr")["high"]``."""
    for item in dataclasses.fields(settings_class):
        if item.name == name:
            return {**item.metadata, "default": item.default}
    raise KeyError(name)


def _check_whole(name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise SettingError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")


def _check_number(name, value, low, high, low_open=False):
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool) and math.isfinite(value)
    above = ok and (value > low if low_open else value >= low)
    if not (above and value <= high):
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        raise SettingError(f"{name} must be {bound} and at most {high:g}, got {value!r}.")


def _validate_fields(settings) -> None:
    """Check every field against the limits and choices in its metadata."""
    for item in dataclasses.fields(settings):
        meta, value = item.metadata, getattr(settings, item.name)
        label = meta.get("label", item.name)
        if meta.get("kind") == "choice":
            if value not in meta["choices"]:
                raise SettingError(f"Unknown {label.lower()} {value!r}: choose one of {', '.join(meta['choices'])}.")
        elif meta.get("kind") == "whole":
            _check_whole(label, value, meta["low"], meta["high"])
        elif meta.get("kind") == "number":
            _check_number(label, value, meta["low"], meta["high"], low_open=meta.get("low_open", False))


@dataclass
class DataSettings:
    """What the model sees. ``prepare(table, **settings.prepare_kwargs())`` applies them."""

    target: str | None = setting(None, "Target", "The column to forecast; empty = a daily maximum temperature "
                                 "if the data has one, else the first numeric column.")
    features: tuple | None = setting(None, "Features", "Input columns fed to the network each day; empty = every "
                                     "numeric column that does not leak the target and is not constant.")
    lookback: int = setting(7, "Lookback (days)", "How many past days each forecast sees; one week covers the "
                            "usual weather systems.", low=1, high=365, kind="whole", app_high=90)
    horizon: int = setting(1, "Horizon (days ahead)", "Forecast every day from 1 to this many days after the last "
                           "day of the window, all at once (one output per lead day).",
                           low=1, high=365, kind="whole", app_high=14)
    # train 0.6 / validation 0.15 / calibration 0.1 / test 0.15: the test block keeps the size the
    # 0.7 / 0.15 layout gave it, and the intervals get a block the model neither fits nor stops on
    splits: tuple = setting((0.6, 0.15), "Split shares", "Train and validation shares of the rows, in date order; "
                            "the calibration share follows and the test split is the rest.")
    calibration: float = setting(0.1, "Calibration share", "Share of the rows, right after validation, that "
                                 "calibrates the prediction intervals: the model neither trains nor early-stops on "
                                 "them. 0 = no intervals.", low=0.0, high=0.5, kind="number")

    def __post_init__(self):
        if self.features is not None:
            self.features = tuple(self.features)
        self.splits = tuple(self.splits)

    def validate(self) -> "DataSettings":
        _validate_fields(self)
        if len(self.splits) != 2:
            raise SettingError(f"Split shares are (train, validation), got {self.splits!r}.")
        train, validation = (float(s) for s in self.splits)
        if not (0 < train < 1 and 0 < validation < 1 and train + validation + self.calibration < 1):
            raise SettingError(f"Split shares must be positive and leave room for a test split, got {self.splits!r} "
                               f"with calibration {self.calibration!r}.")
        return self

    def prepare_kwargs(self) -> dict:
        return {"target": self.target, "features": list(self.features) if self.features else None,
                "lookback": self.lookback, "horizon": self.horizon, "splits": self.splits,
                "calibration": self.calibration}

    def to_dict(self) -> dict:
        return {"target": self.target, "features": list(self.features) if self.features is not None else None,
                "lookback": self.lookback, "horizon": self.horizon, "splits": list(self.splits),
                "calibration": self.calibration}


@dataclass
class TrainConfig:
    """How the model is built and trained. The data settings live in ``PreparedData``, not here."""

    model: str = setting("lstm", "Model", "RNN: one tanh layer, forgets fast. LSTM: a gated cell state that keeps "
                         "weather signals across a week. GRU: a lighter gated cell.", choices=KINDS, kind="choice")
    hidden_size: int = setting(32, "Hidden size", "Units per recurrent layer; 32 already beats the linear baseline "
                               "on daily temperatures. More units fit more patterns, train slower and overfit sooner.",
                               low=1, high=512, kind="whole", choices=(4, 8, 16, 32, 64, 128, 256, 512))
    num_layers: int = setting(1, "Layers", "Recurrent layers stacked on each other; the head reads the top layer's "
                              "last state. A second layer rarely helps a 3-feature daily series.",
                              low=1, high=4, kind="whole")
    optimizer: str = setting("adam", "Optimizer", "Adam adapts a step size per weight and needs the least tuning; "
                             "SGD variants take plain (momentum) steps; AdamW decouples weight decay.",
                             choices=tuple(OPTIMIZERS), kind="choice")
    lr: float = setting(1e-3, "Learning rate", "Step size of the optimizer (log scale); Adam's usual value is 1e-3. "
                        "Too high diverges; too low learns nothing.", low=1e-5, high=1.0, kind="number",
                        choices=(1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0))
    momentum: float = setting(0.9, "Momentum", "For the momentum and nesterov optimizers only; 0.9 is the classic "
                              "value.", low=0.0, high=0.99, kind="number")
    weight_decay: float = setting(0.0, "Weight decay", "L2 penalty (decoupled for adamw); the models are small "
                                  "enough not to need it.", low=0.0, high=1.0, kind="number")
    batch_size: int = setting(64, "Batch size", "Windows per gradient step: small enough for many updates per "
                              "epoch, large enough to vectorize.", low=1, high=4096, kind="whole",
                              choices=(8, 16, 32, 64, 128, 256, 512, 1024))
    epochs: int = setting(30, "Epochs", "Passes over all training windows; early stopping usually ends sooner.",
                          low=1, high=1000, kind="whole", app_high=300)
    grad_clip: float = setting(1.0, "Clip at global norm", "Rescale the gradient when its global norm exceeds this "
                               "value, which keeps training from blowing up; 0 disables.", low=0.0, high=100.0,
                               kind="number", app_low=0.1, app_high=10.0)
    clip_value: float = setting(0.0, "Clip each element at", "Also clamp every gradient element to ±this value; "
                                "0 disables.", low=0.0, high=100.0, kind="number")
    patience: int = setting(10, "Early-stopping patience (epochs)", "Stop after this many epochs without a better "
                            "validation loss (it is noisy) and keep the best epoch's weights; 0 never stops early.",
                            low=0, high=1000, kind="whole", app_high=50)
    seed: int = setting(0, "Seed", "Initial weights and batch order: the same seed gives the same run.",
                        low=0, high=2**31 - 1, kind="whole")
    dtype: str = setting("float64", "Precision", "float64 is more precise and slower; float32 is about twice as "
                         "fast and precise to about 7 digits, plenty for training.", choices=DTYPES, kind="choice")
    coverage: float = setting(0.9, "Interval coverage", "Share of days the prediction interval should cover, "
                              "calibrated on the calibration block (split conformal); 0.9 = 90% intervals. It shapes "
                              "the intervals only, never the weights.", low=0.5, high=0.99, kind="number")

    def validate(self) -> "TrainConfig":
        """Raise SettingError (one readable sentence) for a setting that cannot work."""
        _validate_fields(self)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

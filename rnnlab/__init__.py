"""rnnlab: recurrent networks (RNN, LSTM, GRU) written from scratch in NumPy, for weather forecasting."""

from rnnlab.models import KINDS, RecurrentModel, create_model, param_shapes
from rnnlab.optim import SGD, Adam, clip_grad_norm, clip_grad_value, make_optimizer

__version__ = "0.1.0"

__all__ = [
    "KINDS", "RecurrentModel", "create_model", "param_shapes",
    "SGD", "Adam", "make_optimizer", "clip_grad_norm", "clip_grad_value", "__version__",
]

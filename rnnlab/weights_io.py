"""Trained runs as files: ``.safetensors`` or ``.npz``, never pickle.

The tensors are exactly ``model.params`` (PyTorch ``state_dict`` keys). Beside them travels one
JSON metadata document: model kind and sizes, lookback, horizon, features, target, scaler
statistics, the whole training config, final metrics, the SHA-256 of the training CSV and the
rnnlab version. Loading checks every key, shape and dtype against what the metadata promises and
refuses anything else with a :class:`WeightsError` (a ``ValueError``) in one sentence.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnnlab.errors import WeightsError
from rnnlab.models import DTYPES, KINDS, RecurrentModel, param_shapes

FORMAT_NAME = "rnnlab-run"
FORMAT_VERSION = 1
_NPZ_METADATA_KEY = "__rnnlab_metadata__"
_ST_METADATA_KEY = "rnnlab"
_MAX_HEADER = 10 * 1024 * 1024  # a safetensors header beyond this is not one of ours


@dataclass
class LoadedRun:
    model: RecurrentModel
    metadata: dict

    @property
    def config(self) -> dict:
        return self.metadata["config"]

    @property
    def features(self) -> list[str]:
        return self.metadata["features"]

    @property
    def target(self) -> str:
        return self.metadata["target"]


def build_metadata(model, config, prepared, metrics=None) -> dict:
    from rnnlab import __version__

    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "rnnlab_version": __version__,
        "model": {"kind": model.kind, "input_size": model.input_size, "hidden_size": model.hidden_size,
                  "num_layers": model.num_layers, "dtype": model.dtype},
        "lookback": prepared.lookback,
        "horizon": prepared.horizon,
        "features": list(prepared.features),
        "target": prepared.target,
        "scaler": prepared.scaler_stats(),
        "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
        "metrics": metrics or {},
        "data_sha256": prepared.source_sha256,
        "data_name": prepared.source_name,
    }


def run_to_bytes(model, config, prepared, metrics=None, fmt="safetensors") -> bytes:
    """The run as the bytes of a .safetensors or .npz file."""
    metadata = json.dumps(build_metadata(model, config, prepared, metrics), allow_nan=True)
    tensors = {name: np.ascontiguousarray(value) for name, value in model.params.items()}
    if fmt == "safetensors":
        from safetensors.numpy import save

        return save(tensors, metadata={_ST_METADATA_KEY: metadata})
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, **tensors, **{_NPZ_METADATA_KEY: np.array(metadata)})
        return buffer.getvalue()
    raise WeightsError(f"Unknown weights format {fmt!r}: choose safetensors or npz.")


def save_run(path, model, config, prepared, metrics=None) -> Path:
    """Write the run to ``path``; the suffix (.safetensors or .npz) picks the format."""
    path = Path(path)
    fmt = {".safetensors": "safetensors", ".npz": "npz"}.get(path.suffix)
    if fmt is None:
        raise WeightsError(f"Save weights as .safetensors or .npz, not {path.suffix or 'a file without a suffix'}.")
    path.write_bytes(run_to_bytes(model, config, prepared, metrics, fmt))
    return path


def _read_safetensors(raw: bytes):
    """(tensors, metadata text) from safetensors bytes, checking the header before trusting it."""
    from safetensors.numpy import load

    if raw[8:9] != b"{":  # every safetensors header is a JSON object right after its 8-byte length
        raise WeightsError("This is not a weights file: rnnlab reads the .safetensors and .npz files it saves.")
    (header_size,) = struct.unpack("<Q", raw[:8])
    if header_size > min(_MAX_HEADER, len(raw) - 8):
        raise WeightsError("This safetensors file is truncated or damaged (its header runs past the end of the file).")
    try:
        header = json.loads(raw[8 : 8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise WeightsError("This safetensors file is damaged (its header is not readable).") from None
    try:
        tensors = load(raw)
    except Exception as error:  # the library's own error type varies by version
        raise WeightsError(f"This safetensors file is truncated or damaged ({str(error)[:120]}).") from None
    metadata = (header.get("__metadata__") or {}).get(_ST_METADATA_KEY)
    return tensors, metadata


def _read_npz(raw: bytes):
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except ValueError as error:
        if "pickle" in str(error).lower():
            raise WeightsError("This .npz file holds pickled objects, which rnnlab never loads.") from None
        raise WeightsError("This .npz file is truncated or damaged.") from None
    except Exception:
        raise WeightsError("This .npz file is truncated or damaged.") from None
    metadata = arrays.pop(_NPZ_METADATA_KEY, None)
    return arrays, (str(metadata) if metadata is not None else None)


def load_run(source) -> LoadedRun:
    """Load a run from a path or bytes; raises WeightsError for anything not a valid rnnlab run."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"There is no weights file at {path}.")
        raw = path.read_bytes()
    else:
        raw = bytes(source)
    if raw[:4] == b"PK\x03\x04":
        tensors, metadata_text = _read_npz(raw)
    elif len(raw) >= 8:
        tensors, metadata_text = _read_safetensors(raw)
    else:
        raise WeightsError("This is not a weights file: it is too short to be .safetensors or .npz.")
    if metadata_text is None:
        raise WeightsError("This weights file was not saved by rnnlab (it has no rnnlab metadata).")
    try:
        metadata = json.loads(metadata_text)
    except json.JSONDecodeError:
        raise WeightsError("This weights file's rnnlab metadata is damaged.") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise WeightsError("This weights file was not saved by rnnlab (unknown metadata format).")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise WeightsError("This weights file comes from a newer rnnlab: update rnnlab to load it.")
    try:
        spec = metadata["model"]
        kind, dtype = spec["kind"], spec["dtype"]
        sizes = (int(spec["input_size"]), int(spec["hidden_size"]), int(spec["num_layers"]))
        for key in ("lookback", "horizon", "features", "target", "scaler", "config"):
            metadata[key]
    except (KeyError, TypeError, ValueError):
        raise WeightsError("This weights file's rnnlab metadata is incomplete.") from None
    if kind not in KINDS or dtype not in DTYPES:
        raise WeightsError(f"This weights file describes an unknown model ({kind!r}, {dtype!r}).")
    if len(metadata["features"]) != sizes[0]:
        raise WeightsError("This weights file's metadata lists a different number of features than its model has.")

    expected = param_shapes(kind, *sizes)
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"has an unexpected tensor {extra[0]}"
        raise WeightsError(f"This weights file does not match its {kind.upper()} description ({what}).")
    for name, shape in expected.items():
        tensor = tensors[name]
        if tensor.shape != shape:
            raise WeightsError(f"Tensor {name} has shape {tensor.shape} but the model needs {shape}.")
        if tensor.dtype != np.dtype(dtype):
            raise WeightsError(f"Tensor {name} is {tensor.dtype} but the file says the model is {dtype}.")
        if not np.all(np.isfinite(tensor)):
            raise WeightsError(f"Tensor {name} holds NaN or infinite values: this run cannot predict anything.")
    model = RecurrentModel(kind, *sizes, params=tensors, dtype=dtype)
    return LoadedRun(model, metadata)


def check_fits(run: LoadedRun, table) -> None:
    """Refuse, in one sentence, a run whose features or target the table does not have."""
    columns = set(table.frame.columns)
    missing = [c for c in dict.fromkeys(list(run.features) + [run.target]) if c not in columns]
    if missing:
        raise WeightsError(
            f"These weights need the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
            f"which this data does not have (it has {', '.join(table.frame.columns)})."
        )


def evaluate_saved_run(run, table):
    """Score a loaded weights file on a table with the run's own settings and saved scalers.

    Returns (prepared, result); raises WeightsError when the table lacks the run's columns.
    """
    from rnnlab.evaluate import evaluate
    from rnnlab.windows import prepare

    check_fits(run, table)
    prepared = prepare(table, target=run.target, features=run.features, lookback=run.metadata["lookback"],
                       horizon=run.metadata["horizon"], scaler_stats=run.metadata["scaler"])
    return prepared, evaluate(run.model, prepared)

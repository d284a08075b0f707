"""Trained runs as files: ``.safetensors`` or ``.npz``, never pickle.

The tensors are exactly ``model.params`` (PyTorch ``state_dict`` keys). Beside them travels one
JSON metadata document: model kind and sizes, lookback, horizon (the head's outputs, one per lead
day), features, target, scaler statistics, split shares and calibration share, the interval
calibration (coverage and half-width per lead for the model and persistence), the first and last
training day, the training config, final metrics, the SHA-256 of the training CSV and the rnnlab
version.

A weights file may come from anyone (the dashboard accepts uploads), so loading trusts nothing:
the metadata is read first and every field type-checked; then every tensor's name, shape, dtype
and size is checked against what the metadata promises using only the file's headers; only then
are tensor bytes read, never more than those checks allow. Anything else is refused with a
:class:`WeightsError` (a ``ValueError``) in one sentence.
"""

from __future__ import annotations

import io
import json
import math
import re
import struct
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from rnnlab.config import DataSettings, TrainConfig, spec
from rnnlab.errors import WeightsError
from rnnlab.intervals import Calibration
from rnnlab.models import DTYPES, KINDS, RecurrentModel, param_shapes

if TYPE_CHECKING:
    from rnnlab.evaluate import EvaluationResult
    from rnnlab.windows import PreparedData

FORMAT_NAME = "rnnlab-run"
FORMAT_VERSION = 1  # "splits", "train_span", "calibration" and "intervals" are optional additions: older readers ignore them
_NPZ_METADATA_KEY = "__rnnlab_metadata__"
_ST_METADATA_KEY = "rnnlab"

# The largest run rnnlab loads. These limits bound what a file can make the process allocate.
MAX_INPUT_SIZE = 256  # input features: a daily weather table has a few dozen columns at most
MAX_HIDDEN_SIZE = spec(TrainConfig, "hidden_size")["high"]
MAX_NUM_LAYERS = spec(TrainConfig, "num_layers")["high"]
MAX_WINDOW_DAYS = max(spec(DataSettings, "lookback")["high"], spec(DataSettings, "horizon")["high"])
MAX_METADATA_CHARS = 1 << 20  # ours is a few KB; the scaler holds two numbers per feature
# the largest allowed model's tensors: a 4-layer LSTM, 512 units, 256 features, 365 lead days in float64 is 53 MiB
MAX_TENSOR_BYTES = max(
    8 * sum(math.prod(shape) for shape in param_shapes(kind, MAX_INPUT_SIZE, MAX_HIDDEN_SIZE, MAX_NUM_LAYERS,
                                                       spec(DataSettings, "horizon")["high"]).values())
    for kind in KINDS
)
_MAX_NPY_HEADER = 4096  # numpy writes 128 bytes for our arrays; a longer header is not one of ours
_MAX_ST_HEADER = 6 * MAX_METADATA_CHARS + 64 * 1024  # the metadata JSON-escaped (\uXXXX is 6 bytes) + tensor lines
_MAX_FILE_BYTES = MAX_TENSOR_BYTES + 4 * MAX_METADATA_CHARS + 64 * 1024
_TENSOR_NAMES = frozenset(param_shapes("lstm", 1, 1, MAX_NUM_LAYERS))  # the same names for every kind
_ST_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
              "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_READ_CHUNK = 1 << 20  # bytes per read from an archive member: a bounded buffer whatever the member claims
_SHA256 = re.compile(r"[0-9a-f]{64}")
DEFAULT_SPLITS = (0.7, 0.15)  # the shares every rnnlab before "splits" was saved trained with


@dataclass
class LoadedRun:
    model: RecurrentModel
    metadata: dict

    @property
    def config(self) -> dict:
        """The training settings, as saved (opaque: the data settings are top-level metadata)."""
        return self.metadata["config"]

    @property
    def features(self) -> list[str]:
        return self.metadata["features"]

    @property
    def target(self) -> str:
        return self.metadata["target"]

    @property
    def calibration(self) -> Calibration | None:
        """The interval half-widths per lead saved with the run, or None (no calibration block)."""
        intervals = self.metadata.get("intervals")
        return Calibration.from_dict(intervals) if intervals else None


def _iso(timestamp) -> str:
    """A date as 2014-10-19, or with its time when it has one (hourly data); local time, no zone."""
    timestamp = pd.Timestamp(timestamp).tz_localize(None)
    return timestamp.date().isoformat() if timestamp == timestamp.normalize() else timestamp.isoformat()


def build_metadata(model, config, prepared, metrics=None, calibration: Calibration | None = None) -> dict:
    """The JSON document saved beside the tensors; the data settings come from ``prepared``;
    calibration: the run's interval half-widths (``EvaluationResult.calibration``), if any."""
    from rnnlab import __version__

    train_dates = prepared.train_frame.index
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
        "splits": [float(share) for share in prepared.splits],
        "calibration": float(prepared.calibration),
        **({"intervals": calibration.to_dict()} if calibration is not None else {}),
        "train_span": [_iso(train_dates[0]), _iso(train_dates[-1])],
        "scaler": prepared.scaler_stats(),
        "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
        "metrics": metrics or {},
        "data_sha256": prepared.source_sha256,
        "data_name": prepared.source_name,
    }


def run_to_bytes(model, config, prepared, metrics=None, fmt="safetensors", calibration=None) -> bytes:
    """The run as the bytes of a .safetensors or .npz file."""
    metadata = json.dumps(build_metadata(model, config, prepared, metrics, calibration), allow_nan=True)
    tensors = {name: np.ascontiguousarray(value) for name, value in model.params.items()}
    if fmt == "safetensors":
        from safetensors.numpy import save

        return save(tensors, metadata={_ST_METADATA_KEY: metadata})
    if fmt == "npz":
        buffer = io.BytesIO()
        np.savez(buffer, **tensors, **{_NPZ_METADATA_KEY: np.array(metadata)})
        return buffer.getvalue()
    raise WeightsError(f"Unknown weights format {fmt!r}: choose safetensors or npz.")


def save_run(path, model, config, prepared, metrics=None, calibration=None) -> Path:
    """Write the run to ``path``; the suffix (.safetensors or .npz) picks the format."""
    path = Path(path)
    fmt = {".safetensors": "safetensors", ".npz": "npz"}.get(path.suffix)
    if fmt is None:
        raise WeightsError(f"Save weights as .safetensors or .npz, not {path.suffix or 'a file without a suffix'}.")
    path.write_bytes(run_to_bytes(model, config, prepared, metrics, fmt, calibration))
    return path


# -- metadata ---------------------------------------------------------------------------------------
def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _damaged(key: str, expected: str, value) -> WeightsError:
    return WeightsError(f"This weights file's metadata is damaged ('{key}' should be {expected}, not {_show(value)}): "
                        f"save the run again with rnnlab.")


def _is_whole(value, low, high) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(metadata: dict, key: str):
    if key not in metadata:
        raise WeightsError(f"This weights file's rnnlab metadata is incomplete (it has no '{key}'): "
                           f"save the run again with rnnlab.")
    return metadata[key]


def _parse_metadata(text) -> dict:
    """The metadata document, every field type-checked; raises WeightsError for anything else."""
    if text is None:
        raise WeightsError("This weights file was not saved by rnnlab (it has no rnnlab metadata).")
    if len(text) > MAX_METADATA_CHARS:
        raise WeightsError(f"This weights file's metadata is {len(text):,} characters, more than any rnnlab run "
                           f"writes ({MAX_METADATA_CHARS:,}): it was not saved by rnnlab.")
    try:
        metadata = json.loads(text)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: thousands of nested brackets
        raise WeightsError("This weights file's rnnlab metadata is damaged (it is not readable JSON).") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT_NAME:
        raise WeightsError("This weights file was not saved by rnnlab (unknown metadata format).")
    version = _require(metadata, "format_version")
    if not _is_whole(version, 1, math.inf):
        raise _damaged("format_version", "a whole number", version)
    if version > FORMAT_VERSION:
        raise WeightsError("This weights file comes from a newer rnnlab: update rnnlab to load it.")

    spec = _require(metadata, "model")
    if not isinstance(spec, dict):
        raise _damaged("model", "an object with kind, sizes and dtype", spec)
    if _require(spec, "kind") not in KINDS:
        raise _damaged("model.kind", f"one of {', '.join(KINDS)}", spec["kind"])
    if _require(spec, "dtype") not in DTYPES:
        raise _damaged("model.dtype", f"one of {', '.join(DTYPES)}", spec["dtype"])
    for key, high in (("input_size", MAX_INPUT_SIZE), ("hidden_size", MAX_HIDDEN_SIZE),
                      ("num_layers", MAX_NUM_LAYERS)):
        if not _is_whole(_require(spec, key), 1, high):
            raise _damaged(f"model.{key}", f"a whole number from 1 to {high}", spec[key])
    for key in ("lookback", "horizon"):
        if not _is_whole(_require(metadata, key), 1, MAX_WINDOW_DAYS):
            raise _damaged(key, f"a whole number from 1 to {MAX_WINDOW_DAYS}", metadata[key])

    features = _require(metadata, "features")
    if (not isinstance(features, list) or not all(isinstance(f, str) and f for f in features)
            or len(set(features)) != len(features)):
        raise _damaged("features", "a list of distinct column names", features)
    if len(features) != spec["input_size"]:
        raise WeightsError("This weights file's metadata lists a different number of features than its model has.")
    target = _require(metadata, "target")
    if not isinstance(target, str) or not target:
        raise _damaged("target", "a column name", target)

    scaler = _require(metadata, "scaler")
    if not isinstance(scaler, dict):
        raise _damaged("scaler", "an object with the saved means and scales", scaler)
    for key, positive in (("feature_mean", False), ("feature_scale", True)):
        values = _require(scaler, key)
        if (not isinstance(values, list) or len(values) != len(features) or not all(map(_is_number, values))
                or (positive and not all(value > 0 for value in values))):
            kind = "positive" if positive else "finite"
            raise _damaged(f"scaler.{key}", f"a list of {len(features)} {kind} numbers", values)
    for key, positive in (("target_mean", False), ("target_scale", True)):
        value = _require(scaler, key)
        if not _is_number(value) or (positive and value <= 0):
            raise _damaged(f"scaler.{key}", "a positive number" if positive else "a finite number", value)

    if not isinstance(_require(metadata, "config"), dict):
        raise _damaged("config", "an object of training settings", metadata["config"])
    # written by every rnnlab, but nothing depends on them: absent is fine, the wrong type is not
    for key, kind, expected in (("metrics", dict, "an object"), ("rnnlab_version", str, "a version string"),
                                ("data_name", str, "a file name")):
        if key in metadata and not isinstance(metadata[key], kind):
            raise _damaged(key, expected, metadata[key])
    sha = metadata.get("data_sha256", "")
    if not isinstance(sha, str) or (sha and not _SHA256.fullmatch(sha)):
        raise _damaged("data_sha256", "64 hexadecimal digits", sha)
    calibration_share = metadata.get("calibration", 0.0)
    if not _is_number(calibration_share) or not 0 <= calibration_share < 1:
        raise _damaged("calibration", "a share from 0 to below 1", calibration_share)
    if "splits" in metadata:
        splits = metadata["splits"]
        if (not isinstance(splits, list) or len(splits) != 2 or not all(map(_is_number, splits))
                or not (0 < splits[0] < 1 and 0 < splits[1] < 1 and sum(splits) + calibration_share < 1)):
            raise _damaged("splits", "[train share, validation share], both between 0 and 1 with room for a "
                           "calibration and a test", splits)
    if "intervals" in metadata:
        _check_intervals(metadata["intervals"], metadata["horizon"])
    if "train_span" in metadata and _parse_span(metadata["train_span"]) is None:
        raise _damaged("train_span", "[first training day, last training day] as ISO dates", metadata["train_span"])
    return metadata


def _check_intervals(intervals, horizon: int) -> None:
    """The saved calibration: coverage in (0, 1), one finite half-width ≥ 0 per lead for the model and
    persistence, a positive window count."""
    if not isinstance(intervals, dict):
        raise _damaged("intervals", "an object with coverage, quantiles, persistence_quantiles and windows", intervals)
    coverage = _require(intervals, "coverage")
    if not _is_number(coverage) or not 0 < coverage < 1:
        raise _damaged("intervals.coverage", "a share between 0 and 1", coverage)
    for key in ("quantiles", "persistence_quantiles"):
        values = _require(intervals, key)
        if (not isinstance(values, list) or len(values) != horizon or not all(map(_is_number, values))
                or not all(value >= 0 for value in values)):
            raise _damaged(f"intervals.{key}", f"a list of {horizon} finite numbers ≥ 0, one per lead day", values)
    if not _is_whole(_require(intervals, "windows"), 1, math.inf):
        raise _damaged("intervals.windows", "a whole number ≥ 1", intervals["windows"])


def _parse_span(span) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """The first and last training day from ["2012-01-01", "2014-10-19"], or None if that is not what it holds."""
    if not isinstance(span, list) or len(span) != 2 or not all(isinstance(day, str) for day in span):
        return None
    try:
        first, last = (pd.Timestamp(datetime.fromisoformat(day)) for day in span)
    except ValueError:
        return None
    if first.tz is not None or last.tz is not None or first > last:
        return None
    return first, last


def _check_tensor_specs(found: dict, expected: dict, dtype: str, kind: str) -> int:
    """Compare what the file's headers declare with what the metadata promises, before any data is read.

    found: name -> (shape tuple, dtype name); expected: name -> shape. Returns the total bytes to read.
    """
    missing = [name for name in expected if name not in found]
    extra = [name for name in found if name not in expected]
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"has an unexpected tensor {extra[0]}"
        raise WeightsError(f"This weights file does not match its {kind.upper()} description ({what}).")
    for name, shape in expected.items():
        found_shape, found_dtype = found[name]
        if found_shape != shape:
            raise WeightsError(f"Tensor {name} has shape {found_shape} but the model needs {shape}.")
        if found_dtype != dtype:
            raise WeightsError(f"Tensor {name} is {found_dtype} but the file says the model is {dtype}.")
    return np.dtype(dtype).itemsize * sum(math.prod(shape) for shape in expected.values())


def _too_big(total: int, limit: int) -> WeightsError:
    return WeightsError(f"This weights file unpacks to {total / 2**20:,.1f} MiB, more than the largest model "
                        f"rnnlab loads ({limit / 2**20:,.1f} MiB): it was not saved by rnnlab.")


# -- safetensors ------------------------------------------------------------------------------------
def _open_safetensors(raw: bytes) -> tuple[dict, str | None]:
    """(header, metadata text): the JSON header parsed and its shape checked, no tensor read."""
    if raw[8:9] != b"{":  # every safetensors header is a JSON object right after its 8-byte length
        raise WeightsError("This is not a weights file: rnnlab reads the .safetensors and .npz files it saves.")
    (header_size,) = struct.unpack("<Q", raw[:8])
    if header_size > _MAX_ST_HEADER:
        raise WeightsError("This safetensors file's header is larger than any rnnlab run writes: it was not saved "
                           "by rnnlab.")
    if header_size > len(raw) - 8:
        raise WeightsError("This safetensors file is truncated or damaged (its header runs past the end of the file).")
    try:
        header = json.loads(raw[8 : 8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise WeightsError("This safetensors file is damaged (its header is not readable).") from None
    if not isinstance(header, dict):
        raise WeightsError("This safetensors file is damaged (its header is not a JSON object).")
    extra = header.get("__metadata__") or {}
    metadata = extra.get(_ST_METADATA_KEY) if isinstance(extra, dict) else None
    if metadata is not None and not isinstance(metadata, str):
        raise WeightsError("This weights file's rnnlab metadata is damaged (it is not text).")
    return header, metadata


def _read_safetensors_tensors(raw: bytes, header: dict, expected: dict, dtype: str, kind: str,
                              max_bytes: int) -> dict:
    """The tensors, after every name, shape, dtype and byte range in the header has been checked."""
    from safetensors.numpy import load

    entries = {name: entry for name, entry in header.items() if name != "__metadata__"}
    found = {}
    for name, entry in entries.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (not isinstance(shape, list) or not all(_is_whole(n, 0, math.inf) for n in shape)
                or not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_whole(n, 0, math.inf) for n in offsets) or not isinstance(entry.get("dtype"), str)):
            raise WeightsError(f"This safetensors file is damaged (its entry for {_show(name)} is malformed).")
        found[name] = (tuple(shape), _ST_DTYPES.get(entry["dtype"], entry["dtype"].lower()))
    total = _check_tensor_specs(found, expected, dtype, kind)
    if total > max_bytes:
        raise _too_big(total, max_bytes)
    data_size = len(raw) - 8 - struct.unpack("<Q", raw[:8])[0]
    itemsize = np.dtype(dtype).itemsize
    for name, shape in expected.items():
        begin, end = entries[name]["data_offsets"]
        if end - begin != itemsize * math.prod(shape) or end > data_size:
            raise WeightsError(f"This safetensors file is truncated or damaged (tensor {name}'s bytes do not match "
                               f"its shape).")
    try:
        return load(raw)
    except Exception as error:  # the library's own error type varies by version
        raise WeightsError(f"This safetensors file is truncated or damaged ({str(error)[:120]}).") from None


# -- npz ----------------------------------------------------------------------------------------------
def _npz_damaged() -> WeightsError:
    return WeightsError("This .npz file is truncated or damaged.")


def _open_npz(raw: bytes, max_bytes: int) -> tuple[zipfile.ZipFile, dict, str | None]:
    """(archive, members by array name, metadata text) from the zip's directory and the metadata member only.

    Refuses unknown member names, duplicates, and a total declared size beyond ``max_bytes`` before
    any member is decompressed.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
        infos = archive.infolist()
    except Exception:  # BadZipFile, or a broken directory that zipfile reports otherwise
        raise _npz_damaged() from None
    members = {}
    for info in infos:
        name = info.filename[:-4] if info.filename.endswith(".npy") else None
        if name not in _TENSOR_NAMES and name != _NPZ_METADATA_KEY:
            raise WeightsError(f"This .npz file holds {_show(info.filename)}, which no rnnlab run has: it was not "
                               f"saved by rnnlab.")
        if name in members:
            raise WeightsError(f"This .npz file holds two members named {info.filename}: it is damaged.")
        members[name] = info
    metadata_limit = 4 * MAX_METADATA_CHARS + _MAX_NPY_HEADER  # numpy stores text as 4 bytes per character
    declared = sum(info.file_size for info in infos)  # the sizes the archive claims once unpacked
    if declared > max_bytes + metadata_limit + _MAX_NPY_HEADER * len(infos):
        raise _too_big(declared, max_bytes)
    info = members.pop(_NPZ_METADATA_KEY, None)
    if info is None:
        return archive, members, None
    if info.file_size > metadata_limit:
        raise WeightsError(f"This .npz file's metadata is larger than any rnnlab run writes "
                           f"({info.file_size / 2**20:,.1f} MiB): it was not saved by rnnlab.")
    try:
        with archive.open(info) as member:
            shape, fortran_order, dtype, header_end = _read_npy_header(member, info.filename)
            if shape != () or dtype.kind != "U":
                raise WeightsError("This weights file's rnnlab metadata is damaged (it is not text).")
            text = _read_member_data(member, info, shape, fortran_order, dtype, header_end)[()]
    except WeightsError:
        raise
    except Exception:  # zlib and zipfile errors, a bad CRC, an encrypted member, ...
        raise _npz_damaged() from None
    return archive, members, str(text)


def _read_npy_header(member, filename: str):
    """(shape, fortran_order, dtype, header length) from the first bytes of one .npy member."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member, _MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member, _MAX_NPY_HEADER)
        else:  # 3.0 exists only for utf-8 field names, which plain float arrays never have
            raise ValueError(version)
    except Exception:  # a bad magic, an unreadable header, a zlib error
        raise WeightsError(f"This .npz file is damaged (the header of {filename} is not a plain array's).") from None
    if dtype.hasobject:
        raise WeightsError("This .npz file holds pickled objects, which rnnlab never loads.")
    return shape, fortran_order, dtype, member.tell()


def _read_member_data(member, info, shape, fortran_order, dtype, header_end) -> np.ndarray:
    """The array's bytes, read in bounded chunks: never more than its header's shape allows plus one byte."""
    nbytes = dtype.itemsize * math.prod(shape)
    if info.file_size != header_end + nbytes:
        raise WeightsError(f"This .npz file is damaged ({info.filename} declares {info.file_size:,} bytes but its "
                           f"header describes {header_end + nbytes:,}).")
    array = np.empty(shape[::-1] if fortran_order else shape, dtype=dtype)
    view = memoryview(array.reshape(-1).view(np.uint8))
    filled = 0
    while filled < nbytes:
        chunk = member.read(min(_READ_CHUNK, nbytes - filled))
        if not chunk:
            raise _npz_damaged()
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    if member.read(1):  # a member that unpacks to more than it declares is not an honest array
        raise _npz_damaged()
    return array.T if fortran_order else array


def _read_npz_tensors(archive: zipfile.ZipFile, members: dict, expected: dict, dtype: str, kind: str,
                      max_bytes: int) -> dict:
    """The tensors, after every member's header has been checked against ``expected``."""
    headers = {}
    try:
        for name, info in members.items():
            with archive.open(info) as member:
                headers[name] = _read_npy_header(member, info.filename)
    except WeightsError:
        raise
    except Exception:
        raise _npz_damaged() from None
    found = {name: (shape, str(found_dtype)) for name, (shape, _, found_dtype, _) in headers.items()}
    total = _check_tensor_specs(found, expected, dtype, kind)
    if total > max_bytes:
        raise _too_big(total, max_bytes)
    tensors = {}
    try:
        for name, info in members.items():
            with archive.open(info) as member:
                shape, fortran_order, found_dtype, header_end = _read_npy_header(member, info.filename)
                tensors[name] = _read_member_data(member, info, shape, fortran_order, found_dtype, header_end)
    except WeightsError:
        raise
    except Exception:
        raise _npz_damaged() from None
    return tensors


# -- loading --------------------------------------------------------------------------------------------
def load_run(source, max_tensor_bytes: int = MAX_TENSOR_BYTES) -> LoadedRun:
    """Load a run from a path or bytes; raises WeightsError for anything not a valid rnnlab run.

    max_tensor_bytes: refuse a model whose tensors take more memory than this; the default fits the
    largest model rnnlab trains. The metadata and every tensor header are checked before any tensor
    data is read, so a small file cannot make the process allocate more than this.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise WeightsError(f"There is no weights file at {path}.")
        if path.stat().st_size > _MAX_FILE_BYTES:
            raise WeightsError(f"{path.name} is {path.stat().st_size / 2**20:,.0f} MiB, larger than any rnnlab run: "
                               f"it is not a weights file rnnlab saved.")
        raw = path.read_bytes()
    else:
        raw = bytes(source)
    is_npz = raw[:4] == b"PK\x03\x04"  # every zip (and so every .npz) starts with a local file header
    if is_npz:
        archive, members, metadata_text = _open_npz(raw, max_tensor_bytes)
    elif len(raw) >= 8:
        header, metadata_text = _open_safetensors(raw)
    else:
        raise WeightsError("This is not a weights file: it is too short to be .safetensors or .npz.")
    metadata = _parse_metadata(metadata_text)
    spec = metadata["model"]
    kind, dtype = spec["kind"], spec["dtype"]
    sizes = (spec["input_size"], spec["hidden_size"], spec["num_layers"])
    expected = param_shapes(kind, *sizes, output_size=metadata["horizon"])
    if is_npz:
        with archive:
            tensors = _read_npz_tensors(archive, members, expected, dtype, kind, max_tensor_bytes)
    else:
        tensors = _read_safetensors_tensors(raw, header, expected, dtype, kind, max_tensor_bytes)
    for name, tensor in tensors.items():
        if not np.all(np.isfinite(tensor)):
            raise WeightsError(f"Tensor {name} holds NaN or infinite values: this run cannot predict anything.")
    model = RecurrentModel(kind, *sizes, params=tensors, dtype=dtype, output_size=metadata["horizon"])
    return LoadedRun(model, metadata)


# -- scoring a loaded run ---------------------------------------------------------------------------------
def check_fits(run: LoadedRun, table) -> None:
    """Refuse, in one sentence, a run whose features or target the table does not have."""
    columns = set(table.frame.columns)
    missing = [c for c in dict.fromkeys(list(run.features) + [run.target]) if c not in columns]
    if missing:
        raise WeightsError(
            f"These weights need the column{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
            f"which this data does not have (it has {', '.join(table.frame.columns)})."
        )


@dataclass
class SavedRunScore:
    """A weights file scored on a table, and what a reader must know before trusting the scores.

    notes: sentences to show above the scores (other data; validation or test days the model trained on).
    same_data: the table is the file the run trained on (same SHA-256); None when the file does not say.
    overlap: split -> how many of its target days lie inside the training days; empty when the file
    does not record them (saved by an older rnnlab).
    """

    prepared: PreparedData
    result: EvaluationResult
    notes: list[str] = field(default_factory=list)
    same_data: bool | None = None
    overlap: dict[str, int] = field(default_factory=dict)


def evaluate_saved_run(run: LoadedRun, table) -> SavedRunScore:
    """Score a loaded weights file on a table with the run's own settings, split shares, saved scalers
    and saved interval calibration.

    Raises WeightsError when the table lacks the run's columns.
    """
    from rnnlab.evaluate import EVAL_SPLITS, evaluate
    from rnnlab.windows import prepare

    check_fits(run, table)
    metadata = run.metadata
    prepared = prepare(table, target=run.target, features=run.features, lookback=metadata["lookback"],
                       horizon=metadata["horizon"], splits=tuple(metadata.get("splits", DEFAULT_SPLITS)),
                       calibration=metadata.get("calibration", 0.0), scaler_stats=metadata["scaler"])
    saved_sha = metadata.get("data_sha256") or None
    same_data = None if saved_sha is None else saved_sha == table.sha256
    trained_on = metadata.get("data_name") or "another file"

    notes, overlap = [], {}
    span = metadata.get("train_span")
    if span is not None:
        first, last = _parse_span(span)
        for split in EVAL_SPLITS:
            dates = pd.DatetimeIndex(prepared.windows[split]["dates"]).tz_localize(None)  # as saved by _iso
            overlap[split] = int(((dates >= first) & (dates <= last)).sum())
    if same_data is False and any(overlap.values()):
        notes.append(f"These weights were trained on {trained_on}; this is different data, and some of its "
                     f"validation or test days are days the model trained on.")
    elif same_data is False and span is not None:
        notes.append(f"These weights were trained on {trained_on}; this is different data, so the scores show how "
                     f"the model carries over to it.")
    elif same_data is False:
        notes.append(f"These weights were trained on {trained_on}; this is different data, and the file (from an "
                     f"older rnnlab) does not record its training days, so whether these validation and test days "
                     f"were among them could not be checked.")
    elif same_data is None:
        notes.append("This weights file does not record which data it was trained on, so whether these validation "
                     "and test days were among its training days could not be checked.")
    for split, count in overlap.items():
        if count:
            notes.append(f"{count:,} of the {len(prepared.windows[split]['dates']):,} {split} days lie inside the "
                         f"days the model trained on ({span[0]} to {span[1]}): their scores are not a fair test.")
    coverage = run.config.get("coverage", 0.9)  # used only by a file that has a calibration block but no intervals
    coverage = coverage if _is_number(coverage) and 0 < coverage < 1 else 0.9
    result = evaluate(run.model, prepared, coverage=coverage, calibration=run.calibration)
    return SavedRunScore(prepared, result, notes, same_data, overlap)


# -- snapshots: the per-epoch training state that rewinding and branching continue from ------------------------
_SNAPSHOT_FORMAT = "rnnlab-snapshots"


def snapshots_to_bytes(snapshots: dict) -> bytes:
    """The snapshots of one run ({epoch: train.Snapshot}) as the bytes of an .npz file (no pickle).

    Arrays are stored as ``e{epoch}/params/{name}``, ``e{epoch}/best/{name}`` and
    ``e{epoch}/opt/{state}/{name}`` (Adam's m and v, SGD's velocity); everything else — optimizer
    scalars, the generator state, best-epoch bookkeeping and the history, once — is one JSON member.
    """
    arrays, epochs = {}, {}
    for epoch, snap in sorted(snapshots.items()):
        for name, value in snap.params.items():
            arrays[f"e{epoch}/params/{name}"] = value
        for name, value in snap.best_params.items():
            arrays[f"e{epoch}/best/{name}"] = value
        scalars = {}
        for key, value in snap.optimizer.items():
            if isinstance(value, dict):
                for name, array in value.items():
                    arrays[f"e{epoch}/opt/{key}/{name}"] = array
                scalars[key] = {"__arrays__": sorted(value)}
            else:
                scalars[key] = list(value) if isinstance(value, tuple) else value
        epochs[str(epoch)] = {"optimizer": scalars, "rng_state": snap.rng_state, "best_epoch": snap.best_epoch,
                              "best_val_loss": snap.best_val_loss, "epochs_without_gain": snap.epochs_without_gain}
    last = snapshots[max(snapshots)] if snapshots else None
    document = {"format": _SNAPSHOT_FORMAT, "epochs": epochs, "history": last.history if last else []}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{_NPZ_METADATA_KEY: np.array(json.dumps(document, allow_nan=True))})
    return buffer.getvalue()


def load_snapshots(path) -> dict:
    """{epoch: train.Snapshot} from a file written by ``snapshots_to_bytes``; WeightsError otherwise."""
    from rnnlab.train import Snapshot

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"There is no snapshots file at {path}: train the run again with this rnnlab to rewind it.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        document = json.loads(str(arrays.pop(_NPZ_METADATA_KEY)))
        if document.get("format") != _SNAPSHOT_FORMAT:
            raise ValueError
        snapshots = {}
        for key, info in document["epochs"].items():
            epoch = int(key)

            def group(kind, epoch=epoch):
                prefix = f"e{epoch}/{kind}/"
                return {name[len(prefix):]: value for name, value in arrays.items() if name.startswith(prefix)}

            optimizer = {}
            for name, value in info["optimizer"].items():
                if isinstance(value, dict) and "__arrays__" in value:
                    optimizer[name] = {param: arrays[f"e{epoch}/opt/{name}/{param}"] for param in value["__arrays__"]}
                else:
                    optimizer[name] = tuple(value) if name == "betas" else value
            snapshots[epoch] = Snapshot(epoch, group("params"), optimizer, info["rng_state"], info["best_epoch"],
                                        info["best_val_loss"], group("best"), info["epochs_without_gain"],
                                        [dict(r) for r in document["history"][:epoch]])
        return snapshots
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile, json.JSONDecodeError):
        raise WeightsError(f"{path.name} is not a snapshots file saved by rnnlab (or it is damaged).") from None

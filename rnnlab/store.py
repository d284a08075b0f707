"""The run store: every run as a folder of plain files, so runs outlive the process that trained them.

    writer = create_run(store, settings, name="first try")     # status "running", holds the run's lock
    writer.epoch(record)                                        # after every epoch: history.csv grows
    writer.finish(artifacts)                                    # weights, snapshots, metrics, predictions
    list_runs(store)                                            # newest first, CLI and app runs alike
    run = open_run(store, run_id); run.history; run.metrics; run.status

Layout under the store root (``./runs`` unless ``RNNLAB_STORE`` or ``--store`` says otherwise)::

    <run id>/config.json        {"data", "train", "data_file", "load"[, "branch_of"]} as ``train --out`` writes
    <run id>/meta.json          id, name, status, message, created, finished, heartbeat, pid, host, sweep,
                                trial, branch_of, rnnlab_version, owner, epochs_total
    <run id>/history.csv        one row per finished epoch, rewritten (atomically) after each epoch
    <run id>/metrics.json  predictions.csv  model.safetensors  model.npz  snapshots.npz   (at the end)
    <run id>/.lock              held (flock) by the process writing the run while it runs
    sweeps/<sweep id>/sweep.json                                 a sweep: its space, search and trials
    sessions/<owner key>/...                                     the same layout, one per public session

Every file is written to a temporary name in the same folder and moved into place with
``os.replace``, so a reader (or a process killed mid-write) never sees half a file: a run killed
mid-way keeps every epoch it finished.

How a dead writer is told from a live one: the writing process holds an exclusive ``flock`` on the
run's ``.lock`` file from ``create_run`` until ``finish``/``fail``. The kernel drops the lock when
that process ends, however it ends (SIGKILL included), so a run whose meta says ``running`` but
whose lock can be taken is ``interrupted``. No clock or pid guessing is involved (pids are reused);
``pid``, ``host`` and ``heartbeat`` are kept in meta.json for people reading it. Where ``flock`` is
unavailable (no ``fcntl``), a run on this host is interrupted when its pid is gone, and a run of
another host when its heartbeat is older than ``STALE_AFTER`` seconds.

Public deployments (``RNNLAB_PUBLIC=1``): the app passes each browser session's unguessable key as
``owner``; that session's runs live under ``sessions/<key>/`` and every call that lists or opens
runs takes the same key, so a session sees only its own runs.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import os
import re
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

try:
    import fcntl
except ImportError:  # not on Windows: fall back to pid and heartbeat
    fcntl = None

STORE_ENV = "RNNLAB_STORE"
PUBLIC_ENV = "RNNLAB_PUBLIC"
DEFAULT_STORE = "runs"
ACTIVE = ("queued", "running")
FINAL = ("completed", "early_stopped", "stopped", "diverged", "failed")
HEARTBEAT = 5.0  # seconds between meta.json rewrites while a run trains (history.csv is rewritten every epoch)
STALE_AFTER = 600.0  # seconds without a heartbeat after which another host's run counts as interrupted
_OWNER_KEY = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_RUN_ID = re.compile(r"^\d{8}-\d{6}-[A-Za-z0-9_-]{6,64}$")
ARTIFACT_FILES = ("model.safetensors", "model.npz", "snapshots.npz", "predictions.csv", "metrics.json")


def store_root(store=None) -> Path:
    """The store's root folder: ``store`` if given, else ``$RNNLAB_STORE``, else ``./runs``."""
    return Path(store if store is not None else os.environ.get(STORE_ENV) or DEFAULT_STORE)


def is_public() -> bool:
    """Whether this is a public deployment (``RNNLAB_PUBLIC=1``): runs are kept per session key."""
    return os.environ.get(PUBLIC_ENV, "").strip().lower() in ("1", "true", "yes")


def new_owner_key() -> str:
    """An unguessable key for one browser session of a public deployment (128 bits)."""
    return secrets.token_urlsafe(16)


def new_run_id() -> str:
    """'20260914-153012-<12 random characters>': sorts by creation time, cannot be guessed."""
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_urlsafe(9)}"


def _base(store, owner: str | None) -> Path:
    """The folder holding the runs of ``owner`` (the root itself when there is no owner)."""
    root = store_root(store)
    if owner is None:
        return root
    if not isinstance(owner, str) or not _OWNER_KEY.match(owner):
        raise ValueError("The session key must be 16 to 128 letters, digits, '-' or '_' (new_owner_key() makes one).")
    return root / "sessions" / owner


def _run_dir(store, run_id: str, owner: str | None) -> Path:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(f"{run_id!r} is not a run id of the store (like 20260914-153012-AbCdEf123456).")
    return _base(store, owner) / run_id


# -- atomic files ----------------------------------------------------------------------------------------------
def write_atomic(path: Path, data: bytes | str, durable: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Atomic against a process killed at any point (the kernel keeps what was written). ``durable``
    also fsyncs the file before the rename, against losing it in an OS crash or power cut: the
    final artifacts are written so; the per-epoch history and meta, rewritten every epoch, are not.
    """
    path = Path(path)
    blob = data.encode() if isinstance(data, str) else bytes(data)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o644)  # mkstemp makes 0600; the app may run as another user than the CLI
        with os.fdopen(handle, "wb") as file:
            file.write(blob)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise


def _json_default(value):
    """numpy scalars and arrays (which epoch records may hold) as plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def write_json(path: Path, document) -> None:
    write_atomic(path, json.dumps(document, indent=2, default=_json_default, allow_nan=True))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


# -- epoch records <-> history.csv -----------------------------------------------------------------------------
def history_csv(history: list[dict]) -> str:
    """Epoch records as the CSV text of ``history.csv`` (the table ``train.history_frame`` makes for
    ``train --out``; records without per-step gradient norms are taken too)."""
    rows = [{k: json.dumps(v, default=_json_default) if k == "step_grad_norms" else v for k, v in r.items()}
            for r in history]
    return pd.json_normalize(rows, sep=".").to_csv(index=False)


def history_records(frame: pd.DataFrame) -> list[dict]:
    """The epoch records back from a ``history.csv`` table: "update_norms.<name>" columns become the
    ``update_norms`` dict again and ``step_grad_norms`` its list, so the figures take them as they are."""
    records = []
    for row in frame.to_dict("records"):
        record: dict = {}
        for column, value in row.items():
            if isinstance(value, float) and math.isnan(value) and "." in column:
                continue  # a parameter the run does not have
            head, dot, tail = column.partition(".")
            if dot:
                record.setdefault(head, {})[tail] = value
            elif column == "step_grad_norms" and isinstance(value, str):
                record[column] = json.loads(value)
            else:
                record[column] = value
        if "epoch" in record:
            record["epoch"] = int(record["epoch"])
        records.append(record)
    return records


class _HistoryCsv:
    """history.csv's text kept row by row, so a long run's every-epoch rewrite costs one formatted row,
    not a pandas table of all its epochs (the app's process writes many runs' epochs at once)."""

    def __init__(self):
        self.columns: list[str] | None = None
        self.rows: list[str] = []

    @staticmethod
    def _flat(record: dict) -> dict:
        flat, nested = {}, {}  # json_normalize's order: the plain values, then the nested ones
        for key, value in record.items():
            if key == "step_grad_norms":
                flat[key] = json.dumps(value, default=_json_default)
            elif isinstance(value, dict):
                nested.update({f"{key}.{name}": inner for name, inner in value.items()})
            else:
                flat[key] = value
        return {**flat, **nested}

    @staticmethod
    def _line(values) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(["" if v is None else v for v in values])
        return buffer.getvalue()

    def text(self, history: list[dict]) -> str:
        flats = [self._flat(r) for r in history[len(self.rows):]] if self.columns is not None else None
        if flats is None or any(list(f) != self.columns for f in flats) or len(history) < len(self.rows):
            # the first rows, or records of another shape: build the whole table once
            text = history_csv(history)
            first = [self._flat(r) for r in history[:1]]
            self.columns = list(first[0]) if first else None
            self.rows = [self._line(self._flat(r).values()) for r in history] if self.columns else []
            if self.columns is None or text.splitlines()[0].split(",") != self.columns:
                self.columns, self.rows = None, []  # shapes pandas orders otherwise: keep using pandas
            return text
        self.rows += [self._line(f.values()) for f in flats]
        return self._line(self.columns) + "".join(self.rows)


# -- writing a run ---------------------------------------------------------------------------------------------
@dataclass
class RunArtifacts:
    """What a finished run leaves, as bytes and plain values (what a Dask worker returns).

    status/message: the trainer's (completed, early_stopped, stopped, diverged); history: every epoch
    record; metrics: ``EvaluationResult.to_dict()`` ({} when no epoch finished); predictions_csv: the
    date, split, actual, predicted, persistence table; data: the resolved data settings
    (``prepared.settings().to_dict()``: the target and features chosen when left empty).
    """

    status: str
    message: str
    history: list
    metrics: dict = field(default_factory=dict)
    best_epoch: int = 0
    batch_losses: list = field(default_factory=list)
    safetensors: bytes = b""
    npz: bytes = b""
    snapshots: bytes = b""
    predictions_csv: bytes = b""
    data: dict = field(default_factory=dict)


def _coverage_of(config) -> dict:
    """``{"coverage": …}`` for ``evaluate`` when the config has an interval coverage and evaluate takes it."""
    import inspect

    from rnnlab.evaluate import evaluate

    if hasattr(config, "coverage") and "coverage" in inspect.signature(evaluate).parameters:
        return {"coverage": config.coverage}
    return {}


def artifacts_from_folder(folder, status: str, message: str, history: list, best_epoch: int = 0) -> RunArtifacts:
    """The artifacts of a run folder ``train --out`` has just written (so the CLI evaluates only once)."""
    folder = Path(folder)

    def blob(name):
        return (folder / name).read_bytes() if (folder / name).is_file() else b""

    metrics = {k: v for k, v in _read_json(folder / "metrics.json").items() if k not in ("status", "message")}
    data = _read_json(folder / "config.json").get("data", {})
    return RunArtifacts(status, message, [dict(r) for r in history], metrics, best_epoch, [],
                        blob("model.safetensors"), blob("model.npz"), blob("snapshots.npz"), blob("predictions.csv"),
                        data)


def artifacts_from_trainer(trainer, prepared) -> RunArtifacts:
    """Evaluate a trainer's kept model and pack everything a run leaves as bytes."""
    from rnnlab.evaluate import evaluate
    from rnnlab.weights_io import run_to_bytes, snapshots_to_bytes

    artifacts = RunArtifacts(trainer.status, trainer.message, [dict(r) for r in trainer.history],
                             best_epoch=trainer.best_epoch, batch_losses=[float(v) for v in trainer.batch_losses],
                             data=prepared.settings().to_dict())
    if not trainer.history:
        return artifacts
    result = evaluate(trainer.model, prepared, **_coverage_of(trainer.config))
    metrics = result.to_dict()
    if hasattr(result, "per_lead_dict"):
        metrics["per_lead"] = result.per_lead_dict()
    extra = {"calibration": result.calibration} if getattr(result, "calibration", None) is not None else {}
    artifacts.metrics = metrics
    artifacts.safetensors = run_to_bytes(trainer.model, trainer.config, prepared, metrics, fmt="safetensors", **extra)
    artifacts.npz = run_to_bytes(trainer.model, trainer.config, prepared, metrics, fmt="npz", **extra)
    artifacts.snapshots = snapshots_to_bytes(trainer.snapshots) if trainer.snapshots else b""
    columns = [c for c in ("date", "split", "lead", "actual", "predicted", "lower", "upper", "persistence")
               if c in result.predictions.columns]
    artifacts.predictions_csv = result.predictions[columns].to_csv(index=False, date_format="%Y-%m-%d").encode()
    return artifacts


class RunWriter:
    """Writes one run into the store while it trains; made by :func:`create_run`.

    ``epoch(record)`` after every epoch (history.csv and the heartbeat), then exactly one of
    ``finish(artifacts)`` or ``fail(message)``. Holds the run's lock until then; safe to call from
    one thread at a time (the cluster's callbacks call it in order).
    """

    def __init__(self, path: Path, meta: dict, lock_file):
        self.path, self.meta, self._lock_file = path, meta, lock_file
        self.history: list[dict] = []
        self.closed = False
        self._csv = _HistoryCsv()
        self._meta_written = 0.0

    @property
    def run_id(self) -> str:
        return self.meta["id"]

    def _write_meta(self) -> None:
        self.meta["heartbeat"] = _now()
        write_json(self.path / "meta.json", self.meta)
        self._meta_written = time.monotonic()

    def started(self, history: list | None = None, **info) -> None:
        """The run began training (a branch starts with its parent's epochs in ``history``)."""
        self.meta.update(status="running", started=_now(), **info)
        if history:
            self.history = [dict(r) for r in history]
            write_atomic(self.path / "history.csv", self._csv.text(self.history))
        self._write_meta()

    def epoch(self, record: dict) -> None:
        """One more finished epoch: history.csv is rewritten with it, atomically."""
        self.epochs([record])

    def epochs(self, records: list[dict]) -> None:
        """Finished epochs that arrived together: history.csv is rewritten once with them, atomically."""
        if self.closed or not records:
            return
        self.history.extend(dict(record) for record in records)
        write_atomic(self.path / "history.csv", self._csv.text(self.history))
        self.meta["epochs_done"] = len(self.history)
        # meta.json's heartbeat at most every HEARTBEAT seconds: each rewrite is a rename, ~0.5 ms here
        if time.monotonic() - self._meta_written >= HEARTBEAT:
            self._write_meta()

    def finish(self, artifacts: RunArtifacts) -> None:
        """Write the run's results and its final status, then release the lock."""
        if self.closed:
            return
        files = {"model.safetensors": artifacts.safetensors, "model.npz": artifacts.npz,
                 "snapshots.npz": artifacts.snapshots, "predictions.csv": artifacts.predictions_csv}
        for name, blob in files.items():
            if blob:
                write_atomic(self.path / name, blob, durable=True)
        self.history = [dict(r) for r in artifacts.history]
        write_atomic(self.path / "history.csv", history_csv(self.history))
        write_json(self.path / "metrics.json", {"status": artifacts.status, "message": artifacts.message,
                                                **artifacts.metrics})
        if artifacts.data:  # the target and features the run actually used
            config = _read_json(self.path / "config.json")
            if config:
                config["data"] = artifacts.data
                write_json(self.path / "config.json", config)
        self.meta.update(epochs_done=len(self.history), best_epoch=artifacts.best_epoch)
        self._close(artifacts.status, artifacts.message)

    def fail(self, message: str) -> None:
        """End the run as ``failed`` with a sentence; its finished epochs stay."""
        self._close("failed", message)

    def _close(self, status: str, message: str) -> None:
        if self.closed:
            return
        self.meta.update(status=status, message=message, finished=_now())
        self._write_meta()
        self.closed = True
        if self._lock_file is not None:
            self._lock_file.close()  # closing the descriptor releases the flock
            self._lock_file = None

    def __del__(self):
        if getattr(self, "_lock_file", None) is not None:
            self._lock_file.close()


def hold_lock(folder: Path):
    """Take the exclusive flock on ``folder/.lock`` for as long as the returned file stays open (None
    without fcntl): what tells a live writer from a dead one (module docstring)."""
    if fcntl is None:
        return None
    lock_file = open(Path(folder) / ".lock", "w")
    fcntl.flock(lock_file, fcntl.LOCK_EX)
    return lock_file


def create_run(store, settings: dict, *, name: str = "", owner: str | None = None, sweep: str | None = None,
               trial: int | None = None, branch_of: dict | None = None, epochs_total: int | None = None,
               status: str = "running", run_id: str | None = None) -> RunWriter:
    """A new run folder with config.json and meta.json, locked by this process; returns its writer.

    settings: {"data": DataSettings.to_dict(), "train": TrainConfig.to_dict(), "data_file": path or None,
    "load": load_csv options} — the config.json of ``train --out``. owner: the session key on a public
    deployment. sweep/trial: the sweep this run is a trial of. branch_of: {"run": id or folder, "epoch": k}.
    status: "queued" for a run waiting for a worker.
    """
    from rnnlab import __version__

    run_id = run_id or new_run_id()
    path = _run_dir(store, run_id, owner)
    path.mkdir(parents=True, exist_ok=False)
    lock_file = hold_lock(path)
    config = dict(settings)
    if branch_of:
        config["branch_of"] = branch_of
    write_json(path / "config.json", config)
    meta = {"id": run_id, "name": name or "", "status": status, "message": "", "created": _now(), "started": None,
            "finished": None, "heartbeat": None, "pid": os.getpid(), "host": socket.gethostname(),
            "sweep": sweep, "trial": trial, "branch_of": branch_of, "rnnlab_version": __version__,
            "owner": owner, "epochs_total": epochs_total or settings.get("train", {}).get("epochs"),
            "epochs_done": 0, "best_epoch": 0}
    writer = RunWriter(path, meta, lock_file)
    writer._write_meta()
    return writer


# -- reading runs ----------------------------------------------------------------------------------------------
def writer_alive(path: Path, meta: dict) -> bool:
    """Whether the process writing this run still runs (see the module docstring)."""
    if fcntl is not None and (path / ".lock").exists():
        try:
            with open(path / ".lock", "r+") as probe:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(probe, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        except OSError:
            pass  # a file system without flock: judge by pid and heartbeat below
    if meta.get("host") == socket.gethostname() and meta.get("pid"):
        try:
            os.kill(int(meta["pid"]), 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    beat = meta.get("heartbeat") or meta.get("created")
    try:
        age = time.time() - dt.datetime.fromisoformat(beat).timestamp()
    except (TypeError, ValueError):
        return False
    return age < STALE_AFTER


@dataclass
class StoredRun:
    """A run read back from the store. ``status`` is ``interrupted`` for a run whose writer is gone."""

    path: Path
    meta: dict

    @property
    def run_id(self) -> str:
        return self.meta["id"]

    @property
    def name(self) -> str:
        return self.meta.get("name") or ""

    @property
    def status(self) -> str:
        status = self.meta.get("status", "failed")
        if status in ACTIVE and not writer_alive(self.path, self.meta):
            return "interrupted"
        return status

    @property
    def message(self) -> str:
        if self.status == "interrupted":
            done = len(self.history_frame)
            return (f"Interrupted: the process training this run ended without finishing it; "
                    f"{done} finished epoch{'s' if done != 1 else ''} kept.")
        return self.meta.get("message") or ""

    @property
    def config(self) -> dict:
        config = _read_json(self.path / "config.json")
        return config if isinstance(config, dict) else {}

    @property
    def history_frame(self) -> pd.DataFrame:
        try:
            return pd.read_csv(self.path / "history.csv")
        except (FileNotFoundError, pd.errors.EmptyDataError):
            return pd.DataFrame()

    @property
    def history(self) -> list[dict]:
        """The epoch records, as ``Trainer.iter_epochs`` yielded them (for the figures)."""
        return history_records(self.history_frame)

    @property
    def metrics(self) -> dict:
        """``metrics.json``: status, message and ``EvaluationResult.to_dict()``; {} until the run ends."""
        return _read_json(self.path / "metrics.json")

    @property
    def predictions(self) -> pd.DataFrame | None:
        path = self.path / "predictions.csv"
        return pd.read_csv(path, parse_dates=["date"]) if path.is_file() else None

    def file(self, name: str) -> bytes:
        """The bytes of one of the run's files (for downloads); FileNotFoundError when it has none."""
        if name not in ARTIFACT_FILES + ("history.csv", "config.json", "meta.json"):
            raise ValueError(f"{name!r} is not a file of a run.")
        return (self.path / name).read_bytes()

    def validation_mse(self) -> float | None:
        """The kept model's validation MSE (target units²), or None before the run has results."""
        try:
            return float(self.metrics["validation"]["model"]["MSE"])
        except (KeyError, TypeError, ValueError):
            return None

    def row(self) -> dict:
        """One row for a runs table."""
        train = self.config.get("train", {})
        data = self.config.get("data", {})
        epochs = self.meta.get("epochs_done", 0) if self.meta.get("status") not in ACTIVE else len(self.history_frame)
        return {"id": self.run_id, "name": self.name, "status": self.status, "created": self.meta.get("created"),
                "epochs": epochs, "validation MSE": self.validation_mse(),
                "sweep": self.meta.get("sweep"), "trial": self.meta.get("trial"),
                "model": train.get("model"), "hidden_size": train.get("hidden_size"), "lr": train.get("lr"),
                "seed": train.get("seed"), "target": data.get("target"), "lookback": data.get("lookback")}


def open_run(store, run_id: str, owner: str | None = None) -> StoredRun:
    """The run ``run_id`` (of ``owner``'s session on a public deployment); KeyError when there is none."""
    path = _run_dir(store, run_id, owner)
    meta = _read_json(path / "meta.json")
    if not meta:
        raise KeyError(f"There is no run {run_id} in {store_root(store)}.")
    return StoredRun(path, meta)


def list_runs(store=None, owner: str | None = None, sweep: str | None = None) -> list[StoredRun]:
    """Every run in the store (of ``owner``'s session when given; of one sweep when given), newest first."""
    base = _base(store, owner)
    if not base.is_dir():
        return []
    runs = []
    for path in base.iterdir():
        if not (path.is_dir() and _RUN_ID.match(path.name)):
            continue
        meta = _read_json(path / "meta.json")
        # a folder whose meta.json is not this run's (hand-edited, half-copied) is passed over, not fatal
        if isinstance(meta, dict) and meta.get("id") == path.name and (sweep is None or meta.get("sweep") == sweep):
            runs.append(StoredRun(path, meta))
    return sorted(runs, key=lambda run: run.run_id, reverse=True)


def runs_table(runs: list[StoredRun]) -> pd.DataFrame:
    """A table of runs, one row each (see ``StoredRun.row``)."""
    return pd.DataFrame([run.row() for run in runs])


# -- sweeps ----------------------------------------------------------------------------------------------------
def sweep_dir(store, sweep_id: str, owner: str | None = None) -> Path:
    if not isinstance(sweep_id, str) or not _RUN_ID.match(sweep_id):
        raise ValueError(f"{sweep_id!r} is not a sweep id of the store.")
    return _base(store, owner) / "sweeps" / sweep_id


def write_sweep(store, sweep_id: str, document: dict, owner: str | None = None) -> Path:
    """Write (or rewrite) a sweep's ``sweep.json`` atomically."""
    path = sweep_dir(store, sweep_id, owner)
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "sweep.json", document)
    return path


def read_sweep(store, sweep_id: str, owner: str | None = None) -> dict:
    document = _read_json(sweep_dir(store, sweep_id, owner) / "sweep.json")
    if not document:
        raise KeyError(f"There is no sweep {sweep_id} in {store_root(store)}.")
    return document


def list_sweeps(store=None, owner: str | None = None) -> list[dict]:
    """Every sweep's document, newest first."""
    base = _base(store, owner) / "sweeps"
    if not base.is_dir():
        return []
    documents = [_read_json(path / "sweep.json") for path in base.iterdir() if _RUN_ID.match(path.name)]
    return sorted((d for d in documents if d), key=lambda d: d.get("id", ""), reverse=True)


def save_data(store, raw: bytes, owner: str | None = None) -> Path:
    """Keep a data file's bytes in the store once (by SHA-256), so a run of uploaded data can be
    re-read after a restart; returns the path to put in config.json's ``data_file``."""
    import hashlib

    folder = _base(store, owner) / "data"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(raw).hexdigest()}.csv"
    if not path.is_file():
        write_atomic(path, raw)
    return path


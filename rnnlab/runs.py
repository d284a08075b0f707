"""Training runs in background threads, for the dashboard (and anything else that wants them).

A :class:`Run` trains in a plain ``threading.Thread`` that never touches Streamlit; the page reads
``run.snapshot()`` whenever it redraws. A :class:`RunRegistry` holds the runs of every browser
session of one server: ids are unguessable (``secrets.token_urlsafe``), every lookup names its
owner so a session only ever sees and stops its own runs, the number of runs training at once is
bounded, and so is the number of finished runs kept in memory.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from rnnlab.windows import PreparedData
from rnnlab.evaluate import evaluate
from rnnlab.train import TrainConfig, Trainer, history_frame
from rnnlab.weights_io import run_to_bytes

ACTIVE = ("queued", "running")


class CapacityError(RuntimeError):
    """Too many runs are training at once; the message says what to do."""


@dataclass
class Run:
    run_id: str
    owner: str
    number: int  # 1, 2, 3 … within its owner's session, for labels people can read
    config: TrainConfig
    prepared: PreparedData
    created: float = field(default_factory=time.time)
    status: str = "queued"
    message: str = ""
    history: list = field(default_factory=list)
    model: object = None
    result: object = None  # EvaluationResult once finished
    started: float | None = None
    finished: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None
    _downloads: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        c = self.config
        return f"#{self.number} {c.model.upper()} h{c.hidden_size} lb{c.lookback} lr{c.lr:g}"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def snapshot(self) -> dict:
        """A consistent copy of what the page shows; safe to read while the worker trains."""
        with self.lock:
            history = list(self.history)
            status, message = self.status, self.message
        elapsed = (self.finished or time.time()) - self.started if self.started else 0.0
        done = len(history)
        per_epoch = elapsed / done if done else None
        remaining = per_epoch * (self.config.epochs - done) if per_epoch and status in ACTIVE else 0.0
        return {"status": status, "message": message, "history": history, "epochs_done": done,
                "epochs_total": self.config.epochs, "elapsed": elapsed, "remaining": remaining}

    def download(self, kind: str) -> bytes:
        """Bytes of a finished run's weights (safetensors / npz), history CSV or predictions CSV."""
        if kind not in self._downloads:
            if kind in ("safetensors", "npz"):
                blob = run_to_bytes(self.model, self.config, self.prepared, self.result.to_dict(), fmt=kind)
            elif kind == "history":
                blob = history_frame(self.history).to_csv(index=False).encode()
            elif kind == "predictions":
                columns = ["date", "split", "actual", "predicted", "persistence"]
                blob = self.result.predictions[columns].to_csv(index=False, date_format="%Y-%m-%d").encode()
            else:
                raise ValueError(f"Unknown download {kind!r}.")
            self._downloads[kind] = blob
        return self._downloads[kind]

    def settings_row(self) -> dict:
        """One row for the run-history table: settings and results."""
        c = self.config
        row = {"run": self.label, "status": self.status, "model": c.model.upper(), "hidden": c.hidden_size,
               "layers": c.num_layers, "lookback": c.lookback, "horizon": c.horizon, "lr": c.lr,
               "optimizer": c.optimizer, "batch": c.batch_size, "clip": c.grad_clip or "off", "seed": c.seed,
               "precision": c.dtype, "epochs": len(self.history)}
        if self.result is not None:
            test = self.result.table("test")
            row["test MSE"] = round(float(test.loc["model", "MSE"]), 3)
            row["skill vs persistence"] = round(float(test.loc["model", "skill"]), 3)
        return row


def _work(run: Run) -> None:
    """The worker: train, record each epoch under the lock, evaluate, never raise."""
    try:
        trainer = Trainer(run.config, run.prepared)
        with run.lock:
            run.status, run.started = "running", time.time()
            run.model = trainer.model
        for record in trainer.fit(run.stop_event):
            with run.lock:
                run.history.append(record)
        result = evaluate(trainer.model, run.prepared) if trainer.history else None
        with run.lock:
            run.result, run.model = result, trainer.model
            run.status, run.message = trainer.status, trainer.message
            if result is None and trainer.status != "diverged":
                run.status = "stopped"
    except Exception as error:  # a bug must end the run with a sentence, not kill the page
        with run.lock:
            run.status, run.message = "failed", f"Training failed: {error}"
    finally:
        run.finished = time.time()


class RunRegistry:
    def __init__(self, max_active: int = 2, max_finished_per_owner: int = 20, max_finished_total: int = 200):
        self.max_active = max_active
        self.max_finished_per_owner = max_finished_per_owner
        self.max_finished_total = max_finished_total
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    @staticmethod
    def new_owner() -> str:
        return secrets.token_urlsafe(16)

    def start(self, owner: str, config: TrainConfig, prepared: PreparedData) -> Run:
        """Start training in a new thread; CapacityError when the server is busy."""
        config.validate()
        with self._lock:
            active = [r for r in self._runs.values() if r.active]
            if any(r.owner == owner for r in active):
                raise CapacityError("A run of yours is still training: stop it or wait for it to finish.")
            if len(active) >= self.max_active:
                raise CapacityError(f"{len(active)} runs are training on this server already: try again in a minute.")
            number = 1 + max((r.number for r in self._runs.values() if r.owner == owner), default=0)
            run = Run(secrets.token_urlsafe(16), owner, number, config, prepared)
            self._runs[run.run_id] = run
            self._prune()
        run.thread = threading.Thread(target=_work, args=(run,), name=f"rnnlab-run-{number}", daemon=True)
        run.thread.start()
        return run

    def get(self, owner: str, run_id: str | None) -> Run | None:
        """The run, only if it exists and belongs to ``owner``."""
        with self._lock:
            run = self._runs.get(run_id) if run_id else None
        return run if run is not None and secrets.compare_digest(run.owner, owner) else None

    def runs_of(self, owner: str) -> list[Run]:
        with self._lock:
            return [r for r in self._runs.values() if r.owner == owner]

    def stop(self, owner: str, run_id: str) -> bool:
        run = self.get(owner, run_id)
        if run is None:
            return False
        run.stop_event.set()
        return True

    def clear(self) -> None:
        """Stop and forget every run (for tests and shutdown)."""
        with self._lock:
            runs, self._runs = list(self._runs.values()), {}
        for run in runs:
            run.stop_event.set()
            if run.thread is not None:
                run.thread.join(timeout=10)

    def _prune(self) -> None:
        """Forget the oldest finished runs beyond the per-owner and total bounds (lock held)."""
        finished = sorted((r for r in self._runs.values() if not r.active), key=lambda r: r.created)
        per_owner: dict[str, list[Run]] = {}
        for run in finished:
            per_owner.setdefault(run.owner, []).append(run)
        for runs in per_owner.values():
            for run in runs[: max(0, len(runs) - self.max_finished_per_owner)]:
                self._runs.pop(run.run_id, None)
        finished = [r for r in finished if r.run_id in self._runs]
        for run in finished[: max(0, len(finished) - self.max_finished_total)]:
            self._runs.pop(run.run_id, None)


_SHARED = RunRegistry(max_active=2, max_finished_per_owner=20, max_finished_total=200)


def shared_registry() -> RunRegistry:
    """The registry of this server process, shared by every browser session (each sees only its own runs)."""
    return _SHARED

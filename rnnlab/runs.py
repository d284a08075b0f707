"""Training runs for the dashboard (and anything else that wants them).

A :class:`Run` is trained on the server's Dask cluster (``rnnlab.cluster``; a plain thread of this
process when the registry has no cluster) and written into the run store; a thread that never
touches Streamlit mirrors its progress, and the page reads ``run.snapshot()`` whenever it redraws.
A :class:`RunRegistry` holds the runs of every browser session of one server: ids are unguessable (``secrets.token_urlsafe``), every lookup names its
owner so a session only ever sees and stops its own runs, the number of runs training at once is
bounded, and so is the number of finished runs kept in memory.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from dataclasses import dataclass, field

from rnnlab.windows import PreparedData
from rnnlab.evaluate import evaluate
from rnnlab.config import spec
from rnnlab.figures import unit_of
from rnnlab.models import create_model
from rnnlab.train import TrainConfig, Trainer, history_frame
from rnnlab.weights_io import run_to_bytes

ACTIVE = ("queued", "running")


class CapacityError(RuntimeError):
    """Too many runs are training at once; the message says what to do."""


def _short_number(value: float) -> str:
    return f"{value:g}"


@dataclass
class Run:
    run_id: str
    owner: str
    number: int  # 1, 2, 3 … within its owner's session, for labels people can read
    config: TrainConfig
    prepared: PreparedData  # shared with other runs on the same data and settings: never mutated
    created: float = field(default_factory=time.time)
    status: str = "queued"
    message: str = ""
    history: list = field(default_factory=list)
    batch_losses: list = field(default_factory=list)  # of the epoch in which the run stopped or diverged
    batches_done: int = 0  # in the epoch in progress
    batches_per_epoch: int = 0
    best_epoch: int = 0
    snapshots: dict = field(default_factory=dict)  # epoch -> train.Snapshot, for rewinding and branching
    resume: object = None  # the Snapshot a branch starts from
    parent_number: int | None = None  # the run a branch was made from (its number, not the run: it may be forgotten)
    data: dict | None = None  # {"bytes": the CSV, "name": its name, "load": load_csv options}, for a worker
    store_id: str | None = None  # the run's folder in the run store, once it has one
    parent_store_id: str | None = None
    store_owner: str | None = None  # the session's key in the store on a public deployment
    model: object = None
    result: object = None  # EvaluationResult once finished
    started: float | None = None
    finished: float | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    thread: threading.Thread | None = None
    _downloads: dict = field(default_factory=dict)
    live_predictions: object = None  # lead-1 validation forecasts (target units) of the latest epoch

    @property
    def label(self) -> str:
        """'#3 LSTM h32 lb7 lr0.001' plus every setting that differs from the defaults, so two runs of a
        session never read alike (the number alone would tell them apart, but not what differs)."""
        c, p = self.config, self.prepared
        parts = [f"#{self.number}", c.model.upper(), f"h{c.hidden_size}", f"lb{p.lookback}", f"lr{c.lr:g}"]
        defaults = TrainConfig()
        if p.horizon != 1:
            parts.append(f"+{p.horizon}d")
        if c.num_layers != defaults.num_layers:
            parts.append(f"{c.num_layers} layers")
        if c.optimizer != defaults.optimizer:
            parts.append(c.optimizer)
        if c.batch_size != defaults.batch_size:
            parts.append(f"batch {c.batch_size}")
        if c.grad_clip != defaults.grad_clip:
            parts.append(f"clip {_short_number(c.grad_clip)}" if c.grad_clip else "no clip")
        if c.dtype != defaults.dtype:
            parts.append(c.dtype)
        if c.seed != defaults.seed:
            parts.append(f"seed {c.seed}")
        return " ".join(parts)

    @property
    def branch_text(self) -> str:
        """'#1 at epoch 5' for a branch, '' for a run trained from scratch."""
        return f"#{self.parent_number} at epoch {self.resume.epoch}" if self.parent_number is not None else ""

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def snapshot(self) -> dict:
        """A consistent copy of what the page shows; safe to read while the worker trains."""
        with self.lock:
            history = list(self.history)
            status, message = self.status, self.message
            batches_done, batches_per_epoch = self.batches_done, self.batches_per_epoch
            batch_losses = list(self.batch_losses)
            live_predictions = self.live_predictions
        elapsed = (self.finished or time.time()) - self.started if self.started else 0.0
        done = len(history)
        total = self.config.epochs
        # progress counts the batches of the epoch in progress, so a long first epoch still moves
        fraction = (done + (batches_done / batches_per_epoch if batches_per_epoch else 0)) / total
        per_epoch = elapsed / done if done else None
        remaining = per_epoch * (total - done) if per_epoch and status in ACTIVE else 0.0
        return {"status": status, "message": message, "history": history, "epochs_done": done,
                "epochs_total": total, "elapsed": elapsed, "remaining": remaining,
                "fraction": min(1.0, fraction), "batch_losses": batch_losses, "live_predictions": live_predictions}

    def verdict(self) -> tuple[str, str]:
        """(level, sentence) about how the finished model did against the baselines on the test days.

        level is "success" when it beats every baseline, "info" when it beats persistence only,
        "warning" when persistence ("same as the last day") forecasts better.
        """
        test = self.result.table("test")
        model_mse = float(test.loc["model", "MSE"])
        baselines = {name: float(test.loc[name, "MSE"]) for name in test.index if name != "model"}
        unit = unit_of(self.prepared.target)
        squared = f" {unit}²" if unit else ""
        beaten = [name for name, mse in baselines.items() if model_mse < mse]
        figures = ", ".join(f"{name} {mse:.2f}" for name, mse in baselines.items())
        opening = f"Test MSE {model_mse:.2f}{squared} against {figures}"
        if len(beaten) == len(baselines):
            return "success", f"{opening}: the model beats every baseline."
        if "persistence" in beaten:
            missed = ", ".join(name for name in baselines if name not in beaten)
            return "info", f"{opening}: better than persistence but not than {missed}."
        return "warning", f"{opening}: the model is worse than persistence, i.e. than forecasting the last " \
                          f"observed value.{self._advice()}"

    def _advice(self) -> str:
        """What to try next, from how the run went (nothing when the user stopped it early)."""
        c = self.config
        if self.status == "stopped":
            return " It was stopped early: more epochs may help."
        last = self.history[-1] if self.history else None
        tips = []
        if last is not None and last["train_loss"] > 0.5:  # a standardized loss near 1 has learned little
            tips.append("a lower learning rate" if c.lr >= 0.01 else "more epochs or a higher learning rate")
        if not c.grad_clip:
            tips.append("gradient clipping")
        if self.best_epoch and self.best_epoch < len(self.history) / 3:
            tips.append("a lower learning rate or weight decay (validation loss was best early, then rose)")
        if not tips:
            tips.append("another model, more hidden units or a longer lookback")
        return f" Try {', or '.join(tips)}."

    def download(self, kind: str) -> bytes:
        """Bytes of a finished run's weights (safetensors / npz), history CSV or predictions CSV."""
        if kind not in self._downloads:
            if kind in ("safetensors", "npz"):
                blob = run_to_bytes(self.model, self.config, self.prepared, self.result.to_dict(), fmt=kind,
                                    calibration=self.result.calibration)
            elif kind == "history":
                blob = history_frame(self.history).to_csv(index=False).encode()
            elif kind == "predictions":
                columns = [c for c in ("date", "split", "lead", "actual", "predicted", "lower", "upper", "persistence")
                           if c in self.result.predictions.columns]  # as the CLI's predictions.csv
                blob = self.result.predictions[columns].to_csv(index=False, date_format="%Y-%m-%d").encode()
            else:
                raise ValueError(f"Unknown download {kind!r}.")
            self._downloads[kind] = blob
        return self._downloads[kind]

    def own_nbytes(self) -> int:
        """Bytes this run holds apart from its (shared) prepared data: weights, results, history, downloads."""
        total = sum(p.nbytes for p in self.model.params.values()) if self.model is not None else 0
        if self.result is not None:
            total += int(self.result.predictions.memory_usage(deep=True).sum())
        total += sum(len(blob) for blob in self._downloads.values())
        total += sum(snapshot.nbytes for snapshot in self.snapshots.values())
        # an epoch record holds two floats per parameter, the per-step norms and a dozen scalars
        per_record = 8 * (2 * len(self.model.params) + self.prepared.lookback + 16) + 512 if self.model else 0
        return total + per_record * len(self.history)

    def comparison_key(self) -> tuple:
        """Runs with equal keys are scored on the same validation days of the same data and target."""
        p = self.prepared
        dates = p.windows["validation"]["dates"]
        return (p.source_sha256, p.target, p.horizon, int(dates[0].value), int(dates[-1].value), len(dates))

    def settings_row(self) -> dict:
        """One row for the run-history table: results first, then the settings."""
        c, p = self.config, self.prepared
        with self.lock:
            status, epochs = self.status, len(self.history)
        row = {"run": self.label, "status": status, "test MSE": None, "skill vs persistence": None,
               "epochs": epochs, "branch of": self.branch_text}
        if self.result is not None:
            test = self.result.table("test")
            row["test MSE"] = round(float(test.loc["model", "MSE"]), 3)
            row["skill vs persistence"] = round(float(test.loc["model", "skill"]), 3)
        row.update({"model": c.model.upper(), "hidden": c.hidden_size, "layers": c.num_layers,
                    "lookback": p.lookback, "horizon": p.horizon, "target": p.target, "lr": c.lr,
                    "optimizer": c.optimizer, "batch": c.batch_size, "clip": c.grad_clip or "off", "seed": c.seed,
                    "precision": c.dtype, "data": p.source_name})
        return row


def branch_epochs(parent: Run, from_epoch: int, epochs: int) -> int:
    """Epochs in all of a branch from ``parent``'s epoch ``from_epoch`` asked to train ``epochs`` in all: that,
    or (when it would end at or before the branch point) as many more epochs as the parent trained, within
    the config's limit."""
    if epochs > from_epoch:
        return epochs
    return min(from_epoch + parent.config.epochs, spec(TrainConfig, "epochs")["high"])


def split_comparable(runs: list[Run], reference: Run) -> tuple[list[Run], dict[str, str]]:
    """The runs whose validation MSE can share an axis with ``reference``'s, and why each other is left out.

    Comparable means the same data file, target, horizon and validation days (lookback and the
    split shares move the validation days).
    """
    kept, left_out = [], {}
    ref = reference.prepared
    for run in runs:
        p = run.prepared
        if run.comparison_key() == reference.comparison_key():
            kept.append(run)
        elif p.source_sha256 != ref.source_sha256:
            left_out[run.label] = f"trained on other data ({p.source_name})"
        elif p.target != ref.target:
            left_out[run.label] = f"forecasts {p.target}, not {ref.target}"
        elif p.horizon != ref.horizon:
            left_out[run.label] = f"forecasts {p.horizon} days ahead, not {ref.horizon}"
        else:
            left_out[run.label] = (f"is validated on other days (lookback {p.lookback} against {ref.lookback}, or "
                                   "other split shares)")
    return kept, left_out


def _work(run: Run) -> None:
    """The worker: train, record each epoch under the lock, evaluate, never raise."""
    try:
        trainer = Trainer(run.config, run.prepared, resume=run.resume)
        with run.lock:
            run.status, run.started = "running", time.time()
            run.model, run.batches_per_epoch = trainer.model, trainer.batches_per_epoch
            run.history = list(trainer.history)  # a branch starts with its parent's epochs
        for record in trainer.iter_epochs(run.stop_event, on_batch=lambda done: setattr(run, "batches_done", done)):
            with run.lock:
                run.history.append(record)
                run.batches_done = 0
                run.live_predictions = trainer.validation_predictions
        result = evaluate(trainer.model, run.prepared, coverage=run.config.coverage) if trainer.history else None
        with run.lock:
            run.result, run.model, run.best_epoch = result, trainer.model, trainer.best_epoch
            run.snapshots = trainer.snapshots
            run.batch_losses = list(trainer.batch_losses)
            run.status, run.message = trainer.status, trainer.message
    except Exception as error:  # a bug must end the run with a sentence, not kill the page
        with run.lock:
            run.status, run.message = "failed", f"Training failed: {error}"
    finally:
        run.finished = time.time()


def _finish_from_artifacts(run: Run, artifacts) -> None:
    """Rebuild the model, snapshots and scores of a run trained elsewhere (a Dask worker) from its bytes."""
    import tempfile
    from pathlib import Path

    from rnnlab.weights_io import load_run, load_snapshots

    if artifacts.safetensors:
        model = load_run(artifacts.safetensors).model
    else:  # no epoch finished: the trainer kept the initial weights, which the seed rebuilds exactly
        c = run.config
        model = create_model(c.model, run.prepared.n_features, c.hidden_size, c.num_layers, seed=c.seed,
                             dtype=c.dtype, output_size=run.prepared.horizon)
    snapshots = {}
    if artifacts.snapshots:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "snapshots.npz"
            path.write_bytes(artifacts.snapshots)
            snapshots = load_snapshots(path)
    result = evaluate(model, run.prepared, coverage=run.config.coverage) if artifacts.history else None
    with run.lock:
        run.model, run.result, run.snapshots = model, result, snapshots
        run.best_epoch, run.batch_losses = artifacts.best_epoch, list(artifacts.batch_losses)
        run.history = [dict(r) for r in artifacts.history]
        run.status, run.message = artifacts.status, artifacts.message


def _work_on_cluster(run: Run, holder, store, store_owner) -> None:
    """Submit the run to the Dask cluster and mirror its progress; this thread only waits, it never trains."""
    from rnnlab.store import create_run, save_data
    from rnnlab.weights_io import snapshots_to_bytes

    try:
        settings = {"data": run.prepared.settings().to_dict(), "train": run.config.to_dict(),
                    "data_file": None, "load": run.data.get("load") or {}}
        writer = None
        if store is not None:
            settings["data_file"] = str(save_data(store, run.data["bytes"], owner=store_owner))
            branch = {"run": run.parent_store_id, "epoch": run.resume.epoch} if run.resume is not None else None
            writer = create_run(store, settings, name=run.label, owner=store_owner, branch_of=branch,
                                epochs_total=run.config.epochs, status="queued")
            run.store_id = writer.run_id
        resume = None
        if run.resume is not None:
            resume = {"snapshots": snapshots_to_bytes({run.resume.epoch: run.resume}), "epoch": run.resume.epoch}
        submitted = holder.submit(run.run_id, {"bytes": run.data["bytes"], "name": run.data.get("name")},
                                  settings["data"], settings["train"], resume, load_options=settings["load"],
                                  writer=writer)
        stop_sent = False
        while not submitted.done:
            snap = submitted.snapshot()
            with run.lock:
                run.history, run.live_predictions = snap["history"], snap["live_predictions"]
                run.batches_done, run.batches_per_epoch = snap["batches_done"], snap["batches_per_epoch"]
                if snap["status"] == "running" and run.status == "queued":
                    run.status, run.started = "running", time.time()
            if run.stop_event.is_set() and not stop_sent:
                holder.stop(run.run_id)
                stop_sent = True
            run.stop_event.wait(0.1) if not stop_sent else time.sleep(0.1)
        artifacts = submitted.result
        if artifacts is None:
            snap = submitted.snapshot()
            with run.lock:
                run.history, run.status, run.message = snap["history"], "failed", snap["message"]
        else:
            _finish_from_artifacts(run, artifacts)
    except Exception as error:  # a broken cluster must end the run with a sentence, not kill the page
        with run.lock:
            run.status, run.message = "failed", f"Training failed: {error}"
    finally:
        run.finished = time.time()


class RunRegistry:
    """The runs of one server process. Bounds: ``max_active`` training at once (one per owner),
    ``max_finished_per_owner`` and ``max_finished_total`` finished runs kept, and ``max_bytes`` for
    everything the kept runs hold (their prepared data counted once however many runs share it);
    the oldest finished runs are forgotten first."""

    def __init__(self, max_active: int = 2, max_finished_per_owner: int = 20, max_finished_total: int = 200,
                 max_bytes: int = 1 << 30, cluster=None, store=None):
        """cluster: a ``rnnlab.cluster.ClusterHolder`` to train on (None: a thread of this process);
        store: the run store's root to write every run into (None: memory only)."""
        self.cluster = cluster
        self.store = store
        self.max_active = max_active
        self.max_finished_per_owner = max_finished_per_owner
        self.max_finished_total = max_finished_total
        self.max_bytes = max_bytes
        self._runs: dict[str, Run] = {}
        self._lock = threading.Lock()

    @staticmethod
    def new_owner() -> str:
        return secrets.token_urlsafe(16)

    def start(self, owner: str, config: TrainConfig, prepared: PreparedData, branch_of: Run | None = None,
              from_epoch: int | None = None, data: dict | None = None, store_owner: str | None = None) -> Run:
        """Start training in a new thread; CapacityError when the server is busy.

        ``branch_of`` / ``from_epoch``: continue that run's snapshot of that epoch with ``config``'s
        training settings (its model and data stay the parent's). ``data``: the CSV the prepared data
        came from ({"bytes", "name", "load"}), which a cluster worker needs; ``store_owner``: the
        session's key in the store on a public deployment.
        """
        config.validate()
        resume = None
        if branch_of is not None:
            resume = branch_of.snapshots.get(from_epoch)
            if resume is None:
                kept = ", ".join(map(str, sorted(branch_of.snapshots)))
                raise ValueError(f"{branch_of.label} keeps no snapshot of epoch {from_epoch}: "
                                 + (f"pick one of {kept}." if kept else "it cannot be branched."))
            fixed = {name: getattr(branch_of.config, name) for name in ("model", "hidden_size", "num_layers",
                                                                          "dtype", "seed")}
            config = dataclasses.replace(config, **fixed)
            prepared, data = branch_of.prepared, branch_of.data
            store_owner = store_owner if store_owner is not None else branch_of.store_owner
            config = dataclasses.replace(config, epochs=branch_epochs(branch_of, from_epoch, config.epochs)).validate()
        with self._lock:
            active = [r for r in self._runs.values() if r.active]
            if any(r.owner == owner for r in active):
                raise CapacityError("A run of yours is still training: stop it or wait for it to finish.")
            if len(active) >= self.max_active:
                raise CapacityError(f"{len(active)} runs are training on this server already: try again in a minute.")
            number = 1 + max((r.number for r in self._runs.values() if r.owner == owner), default=0)
            run = Run(secrets.token_urlsafe(16), owner, number, config, prepared, resume=resume,
                      parent_number=branch_of.number if branch_of is not None else None)
            self._runs[run.run_id] = run
            self._prune()
        run.data, run.store_owner = data, store_owner
        run.parent_store_id = branch_of.store_id if branch_of is not None else None
        if self.cluster is not None and data is not None:
            target, args = _work_on_cluster, (run, self.cluster, self.store, store_owner)
        else:
            target, args = _work, (run,)
        run.thread = threading.Thread(target=target, args=args, name=f"rnnlab-run-{number}", daemon=True)
        run.thread.start()
        return run

    def adopt(self, owner: str, stored, prepared: PreparedData, data: dict) -> Run:
        """A run of the store (a CLI run, one of an earlier server, a sweep's trial) as a finished run of
        ``owner``'s session, with its model, snapshots and scores rebuilt from its files.

        stored: ``store.StoredRun``; prepared: its data prepared with its settings; data: the CSV
        ({"bytes", "name", "load"}) so that it can be branched.
        """
        import tempfile
        from pathlib import Path

        from rnnlab.weights_io import load_run, load_snapshots

        with self._lock:
            for run in self._runs.values():
                if run.owner == owner and run.store_id == stored.run_id:
                    return run
        config = TrainConfig.from_dict(stored.config.get("train", {})).validate()
        model = None
        if (stored.path / "model.safetensors").is_file():
            model = load_run(stored.path / "model.safetensors").model
        snapshots = load_snapshots(stored.path / "snapshots.npz") if (stored.path / "snapshots.npz").is_file() else {}
        history = stored.history
        result = evaluate(model, prepared, coverage=config.coverage) if model is not None and history else None
        with self._lock:
            number = 1 + max((r.number for r in self._runs.values() if r.owner == owner), default=0)
            run = Run(secrets.token_urlsafe(16), owner, number, config, prepared, status=stored.status,
                      message=stored.message, history=history, best_epoch=int(stored.meta.get("best_epoch") or 0),
                      snapshots=snapshots, model=model, result=result, data=data, store_id=stored.run_id)
            run.finished = time.time()
            run.started = run.finished - sum(float(r.get("seconds") or 0.0) for r in history)  # its training time
            self._runs[run.run_id] = run
            self._prune()
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
        finished = [r for r in finished if r.run_id in self._runs]
        while finished and self._nbytes() > self.max_bytes:
            self._runs.pop(finished.pop(0).run_id, None)

    def _nbytes(self) -> int:
        """Bytes held by the kept runs, each distinct prepared data set counted once (lock held)."""
        shared = {id(r.prepared): r.prepared.nbytes for r in self._runs.values()}
        return sum(shared.values()) + sum(r.own_nbytes() for r in self._runs.values())

    def nbytes(self) -> int:
        with self._lock:
            return self._nbytes()


# 2 runs training, 20 kept per session, 200 and 1 GiB in all: README "Memory" states these bounds.
# Runs train on the Dask cluster of this server (a LocalCluster of worker processes, or
# RNNLAB_SCHEDULER's), so the pages never share the GIL with training, and are kept in the run store.
_SHARED = None
_SHARED_LOCK = threading.Lock()


def shared_registry() -> RunRegistry:
    """The registry of this server process, shared by every browser session (each sees only its own runs)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            from rnnlab.cluster import get_cluster
            from rnnlab.store import store_root

            _SHARED = RunRegistry(max_active=2, max_finished_per_owner=20, max_finished_total=200,
                                  max_bytes=1 << 30, cluster=get_cluster(), store=store_root())
        return _SHARED

"""Training on Dask: worker processes train, the process that submitted the run writes the store.

    holder = get_cluster()                  # once per process: a LocalCluster, or RNNLAB_SCHEDULER's cluster
    run = holder.submit(run_id, data, data_settings.to_dict(), config.to_dict(), writer=writer)
    run.snapshot()                          # status, history so far, batches done — for a page to draw
    holder.stop(run_id)                     # the worker stops within one batch
    artifacts = run.wait()                  # RunArtifacts: weights, snapshots, predictions, metrics (bytes)

Where the cluster comes from. ``RNNLAB_SCHEDULER=tcp://host:port`` (or ``address=``) connects to a
cluster that is already running; its workers need only the rnnlab package, no shared disk. Otherwise
the holder starts a ``LocalCluster(processes=True, threads_per_worker=1, n_workers=cores)`` in a
*launcher* subprocess (``python -m rnnlab.cluster``) and connects to it. Not in this process: worker
processes are spawned, and spawn re-imports the main script — which, under Streamlit, is the app
page itself (it would build a cluster again while bootstrapping, "Nanny failed to start"). The
launcher's main module is this one, whose cluster code runs only under ``__main__``, so that cannot
happen. The launcher ends with its parent: it waits on its stdin pipe, which closes when the parent
process dies, however it dies.

Progress without a shared disk. The task logs Dask events on the topic ``rnnlab-run-<run id>``:
``{"kind": "started", ...}`` once, ``{"kind": "batch", "epoch", "batches_done"}`` at most every
``BATCH_EVENT_INTERVAL`` seconds and ``{"kind": "epochs", "records": [{...}, ...], "predictions"}``
with the epochs finished since the last one and the newest one's validation forecasts (for the live
chart): at once when epochs are slower than ``EPOCH_EVENT_INTERVAL``, otherwise gathered, so an epoch
leaves within that interval and a batch (and every one before the task returns).
A tiny sweep trial finishes an epoch every ~15 ms; one message per epoch cost the scheduler and the
submitting process more CPU than the parallelism gained on 2 cores (benchmarks/bench_sweep.py). The
holder subscribes to the topic before it submits, so each event reaches ``ClusterRun`` (and the
run's store writer) as it happens; ``client.get_events(topic)`` replays the last 1000 of them.

Stop. ``holder.stop(run_id)`` sets the ``distributed.Event`` named ``rnnlab-stop-<run id>`` on the
scheduler. On the worker a watcher thread waits on it and sets a local flag, which the trainer reads
before every batch: the run stops within one batch of the signal reaching the worker.

A worker that dies. The LocalCluster's scheduler is started with ``allowed-failures = 0``, so the
task is not retried: the run ends ``failed`` with a sentence and its finished epochs stay in the
store; the nanny starts a new worker process for the next run. On a cluster started elsewhere a
retried task announces itself with a second "started" event, and the holder fails the run the same way.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

SCHEDULER_ENV = "RNNLAB_SCHEDULER"
TOPIC_PREFIX = "rnnlab-run-"
STOP_PREFIX = "rnnlab-stop-"
BATCH_EVENT_INTERVAL = 0.5  # seconds between "batch" progress events: a progress bar, not a flood of messages
EPOCH_EVENT_INTERVAL = 0.25  # seconds an epoch record may wait to share an event with the next ones
LAUNCH_TIMEOUT = 120.0  # seconds for the launcher's cluster to come up
WORKER_DIED = ("The worker process training this run died (it was killed or ran out of memory), so the run "
               "ended here; its finished epochs are kept and the next run gets a fresh worker.")
WORKER_NICENESS = 10  # a LocalCluster's workers yield the CPU to the web server and the browser (see _serve)
_PREPARED_CACHE_SIZE = 4  # prepared data sets kept per worker (a sweep's trials share one)


def _topic(run_id: str) -> str:
    return TOPIC_PREFIX + run_id


def _plain(value):
    """An epoch record with only msgpack-able values (numpy scalars and arrays made plain)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


# -- the task, run on a worker ---------------------------------------------------------------------------------
_prepared_cache: OrderedDict = OrderedDict()
_prepared_lock = threading.Lock()


def _prepared_for(data, data_settings: dict, load_options: dict | None):
    """Load and window the data on the worker, keeping the last few (trials of a sweep share them)."""
    from rnnlab.config import DataSettings
    from rnnlab.tables import load_csv
    from rnnlab.windows import prepare

    if isinstance(data, dict) and "path" in data:
        source, name = Path(data["path"]), data.get("name")
    elif isinstance(data, dict):
        source, name = bytes(data["bytes"]), data.get("name")
    elif isinstance(data, (bytes, bytearray)):
        source, name = bytes(data), None
    else:
        source, name = Path(data), None
    import hashlib
    import json

    identity = source if isinstance(source, Path) else hashlib.sha256(source).hexdigest()
    key = json.dumps([str(identity), name, data_settings, load_options or {}], sort_keys=True, default=str)
    with _prepared_lock:
        if key in _prepared_cache:
            _prepared_cache.move_to_end(key)
            return _prepared_cache[key]
    settings = DataSettings(**{**data_settings, "features": data_settings.get("features")}).validate()
    table = load_csv(source, name, **(load_options or {}))
    prepared = prepare(table, **settings.prepare_kwargs())
    with _prepared_lock:
        _prepared_cache[key] = prepared
        while len(_prepared_cache) > _PREPARED_CACHE_SIZE:
            _prepared_cache.popitem(last=False)
    return prepared


class _StopFlag:
    """What the trainer checks before every batch: a local flag, set by a thread waiting on the Dask Event."""

    def __init__(self, run_id: str):
        from distributed import Event, get_client

        self._flag = threading.Event()
        self._done = threading.Event()
        # the client is looked up here, in the task's thread: the watcher thread has no worker context
        self._event = Event(STOP_PREFIX + run_id, client=get_client())
        self._thread = threading.Thread(target=self._watch, name=f"rnnlab-stop-{run_id[-6:]}", daemon=True)
        self._thread.start()

    def _watch(self):
        while not self._done.is_set():
            try:
                if self._event.wait(timeout=0.5):
                    self._flag.set()
                    return
            except Exception:  # the scheduler is going away: the task ends with it
                if self._done.wait(0.5):
                    return

    def is_set(self) -> bool:
        return self._flag.is_set()

    def close(self):
        self._done.set()


class _EpochSender:
    """The "epochs" events of a run: ``{"kind": "epochs", "records": [...], "predictions": [...]}``.

    Records wait at most EPOCH_EVENT_INTERVAL to share an event (``send_if_due`` runs after every epoch
    and every batch), so a slow epoch goes out as soon as it ends and fast ones go out a few at a time.
    "predictions" are the lead-1 validation forecasts of the newest record's epoch, taken when it was
    added: a run that diverges in its next validation pass must not send that pass's NaNs with it.
    """

    def __init__(self, worker, topic: str):
        self._worker, self._topic = worker, topic
        self._pending: list[dict] = []
        self._predictions = None
        self._sent = 0.0  # its own clock: a batch event just before an epoch ends must not hold that epoch back

    def add(self, record: dict, predictions) -> None:
        self._pending.append(_plain(record))
        self._predictions = None if predictions is None else predictions.tolist()

    def send_if_due(self, now: float) -> None:
        if self._pending and now - self._sent >= EPOCH_EVENT_INTERVAL:
            self.send(now)

    def send(self, now: float | None = None) -> None:
        if self._pending:
            self._worker.log_event(self._topic, {"kind": "epochs", "records": self._pending,
                                                 "predictions": self._predictions})
            self._pending = []
            self._sent = time.monotonic() if now is None else now


def train_task(run_id: str, data, data_settings: dict, config: dict, resume: dict | None = None,
               load_options: dict | None = None):
    """Train one run on a Dask worker and return its ``RunArtifacts``.

    data: a CSV's bytes, {"bytes": ..., "name": ...}, or {"path": ...} / a path the worker can read.
    data_settings: ``DataSettings.to_dict()``; config: ``TrainConfig.to_dict()``; load_options: the
    ``load_csv`` options (where, resample, date_format). resume: {"snapshots": bytes of snapshots.npz,
    "epoch": k} to branch from epoch k of a run. Progress goes out as Dask events (module docstring).
    """
    from distributed import get_worker

    from rnnlab.config import TrainConfig
    from rnnlab.store import artifacts_from_trainer
    from rnnlab.train import Trainer
    from rnnlab.weights_io import load_snapshots

    worker = get_worker()
    topic = _topic(run_id)
    prepared = _prepared_for(data, data_settings, load_options)
    snapshot = None
    if resume:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "snapshots.npz"
            path.write_bytes(resume["snapshots"])
            snapshot = load_snapshots(path)[int(resume["epoch"])]
    trainer = Trainer(TrainConfig.from_dict(config), prepared, resume=snapshot)
    worker.log_event(topic, {"kind": "started", "worker": worker.address, "pid": os.getpid(),
                             "batches_per_epoch": trainer.batches_per_epoch,
                             "history": _plain(trainer.history)})
    stop = _StopFlag(run_id)
    epoch = [trainer.start_epoch]
    last_sent = [0.0]
    epochs = _EpochSender(worker, topic)

    def on_batch(done):
        now = time.monotonic()
        epochs.send_if_due(now)  # an epoch waiting for company goes out within the interval, whatever comes next
        if now - last_sent[0] >= BATCH_EVENT_INTERVAL:
            last_sent[0] = now
            worker.log_event(topic, {"kind": "batch", "epoch": epoch[0], "batches_done": done})

    try:
        for record in trainer.iter_epochs(stop, on_batch=on_batch):
            epochs.add(record, trainer.validation_predictions)
            epoch[0] = record["epoch"] + 1
            epochs.send_if_due(time.monotonic())
    finally:
        stop.close()
        epochs.send()
    return artifacts_from_trainer(trainer, prepared)


# -- the consumer's side ---------------------------------------------------------------------------------------
class ClusterRun:
    """One run submitted to the cluster, as the submitting process sees it (thread-safe).

    status: queued → running → completed / early_stopped / stopped / diverged / failed; history: the
    epoch records received so far; batches_done / batches_per_epoch: the epoch in progress; result:
    the RunArtifacts once finished. A ``writer`` (rnnlab.store.RunWriter) gets every epoch and the end.
    """

    def __init__(self, run_id: str, epochs_total: int, writer=None):
        self.run_id, self.epochs_total, self.writer = run_id, epochs_total, writer
        self.status, self.message = "queued", ""
        self.history: list[dict] = []
        self.live_predictions: list[float] | None = None  # lead-1 validation forecasts of the latest epoch
        self.batches_done, self.batches_per_epoch = 0, 0
        self._batch_epoch = 0  # the epoch the last "batch" event counted batches of
        self.worker: str | None = None
        self.result = None
        self.future = None
        self.created, self.started, self.finished = time.time(), None, None
        self.lock = threading.Lock()
        self._write_lock = threading.Lock()  # events (loop thread) and the end (callback thread) both write
        self._done = threading.Event()
        self._holder = None

    # events from the worker, in order, on the client's event-loop thread
    def _on_event(self, event):
        _, message = event
        kind = message.get("kind")
        if kind == "started":
            with self.lock:
                if self.worker is not None and not self._done.is_set():
                    retried = True  # a second start: the first worker died and the task was retried
                else:
                    retried = False
                    self.worker, self.status, self.started = message["worker"], "running", time.time()
                    self.batches_per_epoch = message["batches_per_epoch"]
                    self.history = list(message.get("history") or [])
            if retried:
                self._end_failed(WORKER_DIED)
                return
            if self.writer is not None:
                with self._write_lock:
                    self.writer.started(history=message.get("history"), worker=message["worker"])
        elif kind == "batch":
            with self.lock:
                self.batches_done, self._batch_epoch = message["batches_done"], message.get("epoch", 0)
        elif kind == "epochs":
            records = message["records"]
            with self.lock:
                if self._done.is_set():
                    return
                self.history.extend(records)
                if records[-1]["epoch"] >= self._batch_epoch:  # not a count of the epoch after these
                    self.batches_done = 0
                if message.get("predictions") is not None:
                    self.live_predictions = message["predictions"]
            if self.writer is not None:
                with self._write_lock:
                    self.writer.epochs(records)

    def _on_done(self, future):
        """The task ended: keep its artifacts, or fail the run with a sentence."""
        if self._done.is_set():
            return
        try:
            artifacts = future.result()
        except Exception as error:
            self._end_failed(_failure_sentence(error))
            return
        with self.lock:
            self.result, self.history = artifacts, list(artifacts.history)
            self.status, self.message = artifacts.status, artifacts.message
            self.finished = time.time()
        if self.writer is not None:
            with self._write_lock:
                self.writer.finish(artifacts)
        self._close()

    def _end_failed(self, message: str):
        with self.lock:
            if self._done.is_set():
                return
            self.status, self.message, self.finished = "failed", message, time.time()
        if self.writer is not None:
            with self._write_lock:
                self.writer.fail(message)
        self._close()

    def _close(self):
        self._done.set()
        if self._holder is not None:
            # not on the client's event-loop thread, where a blocking call to the scheduler would deadlock
            threading.Thread(target=self._holder._forget, args=(self,), daemon=True).start()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None):
        """Block until the run ends; its RunArtifacts (None when it failed). TimeoutError past ``timeout``."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"The run {self.run_id} is still training after {timeout:g} s.")
        return self.result

    def snapshot(self) -> dict:
        """A consistent copy of what a page shows, like ``runs.Run.snapshot``."""
        with self.lock:
            history, status, message = list(self.history), self.status, self.message
            batches_done, batches_per_epoch = self.batches_done, self.batches_per_epoch
            started, finished = self.started, self.finished
            live_predictions = self.live_predictions
        elapsed = ((finished or time.time()) - started) if started else 0.0
        done = len(history)
        fraction = (done + (batches_done / batches_per_epoch if batches_per_epoch else 0)) / max(self.epochs_total, 1)
        per_epoch = elapsed / done if done else None
        remaining = per_epoch * (self.epochs_total - done) if per_epoch and not self.done else 0.0
        return {"status": status, "message": message, "history": history, "epochs_done": done,
                "epochs_total": self.epochs_total, "elapsed": elapsed, "remaining": remaining,
                "fraction": min(1.0, fraction), "batches_done": batches_done,
                "batches_per_epoch": batches_per_epoch, "worker": self.worker, "live_predictions": live_predictions}


def _failure_sentence(error: BaseException) -> str:
    from distributed import KilledWorker

    if isinstance(error, KilledWorker):
        return WORKER_DIED
    if type(error).__name__ == "CancelledError":
        return "The run was cancelled before it finished (the cluster shut down or lost it)."
    text = str(error).strip().rstrip(".") or type(error).__name__
    return f"Training failed on the worker: {text}."


class ClusterHolder:
    """The Dask client of this process and the runs it has in flight; make it with :func:`get_cluster`.

    A plain object (not a Client), so ``st.cache_resource`` may return it; the client is created on
    first use. ``address``: a scheduler to connect to; None starts a LocalCluster of ``n_workers``
    (default: the cores) in a launcher subprocess.
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None):
        self.address = address
        self.n_workers = n_workers or os.cpu_count() or 1
        self._client = None
        self._launcher: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._runs: dict[str, ClusterRun] = {}

    @property
    def local(self) -> bool:
        """Whether the cluster is this holder's own LocalCluster (rather than one started elsewhere)."""
        return self.address is None or self._launcher is not None

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                from distributed import Client

                address = self.address
                if address is None:
                    self._launcher, address = _launch(self.n_workers)
                    self.address = address
                self._client = Client(address, timeout="30s", set_as_default=False)
            return self._client

    def start_in_background(self) -> None:
        """Start (or connect to) the cluster in a thread, so the first run does not wait for it."""
        threading.Thread(target=lambda: self.client, name="rnnlab-cluster-start", daemon=True).start()

    def submit(self, run_id: str, data, data_settings: dict, config: dict, resume: dict | None = None, *,
               load_options: dict | None = None, writer=None) -> ClusterRun:
        """Start training ``run_id`` on a worker; returns at once with its :class:`ClusterRun`.

        data: the CSV's bytes (sent to the scheduler once per call; scatter them with
        ``holder.client.scatter(raw, broadcast=True)`` and pass the future to share them between
        runs) or {"path": ...} for a file every worker can read. writer: a store RunWriter.
        """
        client = self.client
        run = ClusterRun(run_id, int(config.get("epochs", 1)), writer)
        run._holder = self
        with self._lock:
            self._runs[run_id] = run
        client.subscribe_topic(_topic(run_id), run._on_event)
        run.future = client.submit(train_task, run_id, data, data_settings, config, resume, load_options,
                                   key=f"rnnlab-train-{run_id}", pure=False, retries=0)
        run.future.add_done_callback(run._on_done)
        return run

    def stop(self, run_id: str) -> None:
        """Ask the worker training ``run_id`` to stop before its next batch (from any process)."""
        from distributed import Event

        Event(STOP_PREFIX + run_id, client=self.client).set()

    def progress(self, run_id: str) -> list[dict]:
        """The run's last 1000 progress events as the scheduler keeps them (for a process that did not submit it)."""
        return [message for _, message in self.client.get_events(_topic(run_id))]

    def get(self, run_id: str) -> ClusterRun | None:
        with self._lock:
            return self._runs.get(run_id)

    def _forget(self, run: ClusterRun) -> None:
        """Tidy up after a run ended: its topic, its stop Event, and the task if it still runs (a retry)."""
        with self._lock:
            self._runs.pop(run.run_id, None)
        if self._client is not None:
            try:
                if run.future is not None and not run.future.done():
                    run.future.cancel()
                self._client.unsubscribe_topic(_topic(run.run_id))
                from distributed import Event

                Event(STOP_PREFIX + run.run_id, client=self._client).clear()
            except Exception:
                pass  # the cluster is going away: nothing to tidy

    def worker_pids(self) -> dict[str, int]:
        """{worker address: process id}, for tests and diagnostics."""
        return self.client.run(os.getpid)

    def close(self) -> None:
        """Disconnect, and end the launcher's LocalCluster if this holder started it."""
        with self._lock:
            client, launcher, self._client, self._launcher = self._client, self._launcher, None, None
        if client is not None:
            client.close(timeout=10)
        if launcher is not None:
            _end_launcher(launcher)
        if launcher is not None:
            self.address = None


def _launch(n_workers: int) -> tuple[subprocess.Popen, str]:
    """Start ``python -m rnnlab.cluster`` and read the address its LocalCluster listens on."""
    package_parent = str(Path(__file__).resolve().parents[1])
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, environment.get("PYTHONPATH")]))
    launcher = subprocess.Popen([sys.executable, "-m", "rnnlab.cluster", "--workers", str(n_workers)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                env=environment, text=True, start_new_session=True)
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    line = ""
    while time.monotonic() < deadline:
        line = launcher.stdout.readline()
        if line.startswith("tcp://") or not line:
            break
    if not line.startswith("tcp://"):
        _end_launcher(launcher)
        raise RuntimeError("The local Dask cluster did not start (python -m rnnlab.cluster gave no address).")
    return launcher, line.strip()


def _end_launcher(launcher: subprocess.Popen) -> None:
    try:
        launcher.stdin.close()  # the launcher closes its cluster when its stdin ends
        launcher.wait(timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        try:
            os.killpg(launcher.pid, 9)
        except ProcessLookupError:
            pass
        launcher.wait(timeout=5)


_holders: dict[tuple, ClusterHolder] = {}
_holders_lock = threading.Lock()


def get_cluster(address: str | None = None, n_workers: int | None = None) -> ClusterHolder:
    """The holder for this process (one per address / worker count), made on first call.

    address: a scheduler (``tcp://host:port``); default ``$RNNLAB_SCHEDULER``, else a LocalCluster of
    ``n_workers`` processes (default: the cores). The client connects on first use, not here, so a
    dashboard starts without a cluster.
    """
    address = address or os.environ.get(SCHEDULER_ENV) or None
    key = (address, None if address else (n_workers or os.cpu_count() or 1))
    with _holders_lock:
        if key not in _holders:
            _holders[key] = ClusterHolder(address, n_workers)
        return _holders[key]


@atexit.register
def _close_holders():
    for holder in list(_holders.values()):
        try:
            holder.close()
        except Exception:
            pass


# -- the launcher: python -m rnnlab.cluster --workers N ---------------------------------------------------------
def dask_setup(worker) -> None:
    """Dask calls this in every worker of the launcher's LocalCluster (the module is a preload): lower
    the worker's CPU priority by ``WORKER_NICENESS``.

    The cluster shares the machine with the page: on 2 cores two training workers plus the Streamlit
    server plus a browser want more CPU than there is, and at equal priority every page froze for seconds
    (benchmarks/bench_app.py: progress gaps 2-2.6 s, a new visitor's first chart after 14 s). A
    niced worker loses nothing while the page idles and gives way while it draws. A cluster started
    elsewhere (``RNNLAB_SCHEDULER``) is left as its owner configured it.
    """
    try:
        os.nice(WORKER_NICENESS)
    except OSError:  # not allowed here: train at the usual priority
        pass


def _serve(n_workers: int) -> None:
    """Run a LocalCluster until stdin ends (the parent closed it, or died); print its address first."""
    import dask
    from distributed import LocalCluster

    # A task whose worker died is not retried: the run ends failed and says so (module docstring).
    # Training ran ~18% slower in a default worker than in a one-thread process; without the
    # statistical profiler (a stack sample every 10 ms that nobody reads here) and without
    # MALLOC_TRIM_THRESHOLD_=65536 (made for workers holding big data; ours hold a few MB, and the
    # trimming costs NumPy's many small allocations) it is ~7% (LSTM(32, 7), 30 epochs, measured here).
    # A worker is handed a run only when its thread is free (worker-saturation 1.0): equal trials
    # spread evenly, and no run waits behind another on a busy worker while one is idle.
    dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.worker.profile.enabled": False,
                     "distributed.scheduler.worker-saturation": 1.0,
                     "distributed.nanny.pre-spawn-environ": {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1,
                                                             "OPENBLAS_NUM_THREADS": 1}})
    # workers import the training code when they start, not during a user's first run; rnnlab.cluster's
    # dask_setup lowers their priority
    with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, preload=["rnnlab.cluster", "rnnlab.store", "rnnlab.train", "rnnlab.evaluate"]) as cluster:
        print(cluster.scheduler_address, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rnnlab.cluster",
                                     description="A LocalCluster for rnnlab that lives as long as its stdin.")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    _serve(parser.parse_args().workers)

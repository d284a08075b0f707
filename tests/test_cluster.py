"""Training on Dask: worker processes train, progress comes back as events, the submitting process writes
the store; stop within a batch; a dead worker fails its run with a sentence; a separately started
scheduler and worker work the same (no shared disk)."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnlab import store
from rnnlab.cluster import EPOCH_EVENT_INTERVAL, WORKER_DIED, ClusterHolder, get_cluster
from rnnlab.config import DataSettings, TrainConfig
from rnnlab.tables import DEFAULT_DATA_PATH

ROOT = Path(__file__).resolve().parents[1]
RAW = DEFAULT_DATA_PATH.read_bytes()
DATA = {"bytes": RAW, "name": "seattle_weather.csv"}
SETTINGS = DataSettings().to_dict()


@pytest.fixture(scope="module")
def holder():
    holder = ClusterHolder(n_workers=2)  # one LocalCluster (in its launcher process) for the whole module
    holder.client
    yield holder
    holder.close()


def _writer(tmp_path, config):
    settings = {"data": SETTINGS, "train": config.to_dict(), "data_file": None, "load": {}}
    return store.create_run(tmp_path, settings, name="on the cluster", status="queued")


def _wait_until(condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_run_trains_on_a_worker_and_the_submitter_writes_the_store(holder, tmp_path):
    config = TrainConfig(model="gru", hidden_size=4, epochs=3, seed=2)
    writer = _writer(tmp_path, config)
    run = holder.submit(writer.run_id, DATA, SETTINGS, config.to_dict(), writer=writer)
    artifacts = run.wait(60)
    assert run.status == "completed" and run.worker in holder.worker_pids()
    assert [r["epoch"] for r in run.history] == [1, 2, 3] and len(artifacts.safetensors) > 0
    # every epoch arrived as an event before the end, and the store holds what the worker returned
    events = holder.progress(writer.run_id)
    kinds = [event["kind"] for event in events]
    assert kinds[0] == "started" and sum(len(e["records"]) for e in events if e["kind"] == "epochs") == 3
    stored = store.open_run(tmp_path, writer.run_id)
    assert stored.status == "completed" and len(stored.history) == 3
    assert stored.file("model.safetensors") == artifacts.safetensors
    assert stored.validation_mse() == pytest.approx(artifacts.metrics["validation"]["model"]["MSE"])
    assert stored.meta["worker"] == run.worker  # the worker that trained it is on record
    snapshot = run.snapshot()
    assert snapshot["fraction"] == 1.0 and snapshot["epochs_done"] == 3


def test_fast_epochs_share_events_and_every_epoch_arrives_in_order(holder, tmp_path):
    # an RNN with 2 units trains an epoch in milliseconds: one message an epoch would flood the scheduler
    config = TrainConfig(model="rnn", hidden_size=2, epochs=40, patience=0, seed=1)
    writer = _writer(tmp_path, config)
    run = holder.submit(writer.run_id, DATA, SETTINGS, config.to_dict(), writer=writer)
    run.wait(60)
    batches = [event["records"] for event in holder.progress(writer.run_id) if event["kind"] == "epochs"]
    assert [record["epoch"] for records in batches for record in records] == list(range(1, 41))
    assert len(batches) < 40
    assert [row["epoch"] for row in store.open_run(tmp_path, writer.run_id).history] == list(range(1, 41))


def test_a_slow_epoch_is_sent_as_soon_as_it_ends(holder, tmp_path):
    # batch events go out every 0.5 s meanwhile; none of them may hold a finished slow epoch back
    config = TrainConfig(hidden_size=128, batch_size=4, epochs=2, patience=0, seed=3)  # ~1 s epochs
    writer = _writer(tmp_path, config)
    run = holder.submit(writer.run_id, DATA, DataSettings(lookback=30).to_dict(), config.to_dict(), writer=writer)
    run.wait(120)
    events = [event["records"] for event in holder.progress(writer.run_id) if event["kind"] == "epochs"]
    slow = 0
    for records in events:
        for position, record in enumerate(records):
            if record["seconds"] >= EPOCH_EVENT_INTERVAL:  # it ended at least an interval after the last send
                assert position == len(records) - 1, f"epoch {record['epoch']} waited for a later one"
                slow += 1
    assert slow >= 1, "no epoch was slow enough to test"


def test_stop_reaches_the_worker_within_a_batch(holder, tmp_path):
    # small batches of a wide LSTM: an epoch has 109 batches and lasts seconds, a batch milliseconds
    config = TrainConfig(hidden_size=96, batch_size=8, epochs=50, patience=0)
    writer = _writer(tmp_path, config)
    run = holder.submit(writer.run_id, DATA, SETTINGS, config.to_dict(), writer=writer)
    _wait_until(lambda: run.snapshot()["batches_done"] > 0)
    asked = time.monotonic()
    holder.stop(run.run_id)  # from this process; the worker is another one
    artifacts = run.wait(30)
    latency = time.monotonic() - asked
    assert run.status == "stopped" and run.message.startswith("Stopped during epoch")
    # it stopped inside an epoch: fewer batches than an epoch holds, well before the epoch could end
    assert 0 < len(artifacts.batch_losses) < run.batches_per_epoch
    assert latency < 2.0, f"stop took {latency:.2f} s"
    assert store.open_run(tmp_path, writer.run_id).status == "stopped"


def test_workers_give_way_to_the_page_and_keep_one_blas_thread(holder, tmp_path):
    def blas_threads():  # nested, so it travels to the workers by value (they cannot import this file)
        import threadpoolctl

        return {i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}

    # a LocalCluster's workers run at a lower priority than this process (the web server), in the thread
    # that trains too (Linux keeps a niceness per thread): a task reads its own
    niced = min(19, os.nice(0) + 10)
    assert set(holder.client.run(os.nice, 0).values()) == {niced}
    assert {holder.client.submit(os.nice, 0, pure=False).result() for _ in range(4)} == {niced}
    # and with one BLAS thread each, also while a run trains: runs on every worker never oversubscribe the
    # cores, and a lone run with two threads beside a busy browser tab was 1.7-3x slower, not faster
    config = TrainConfig(hidden_size=64, batch_size=8, epochs=100, patience=0)
    run = holder.submit(_writer(tmp_path, config).run_id, DATA, SETTINGS, config.to_dict())
    _wait_until(lambda: run.snapshot()["batches_done"] > 0 or run.history, timeout=60)
    assert all(threads == {1} for threads in holder.client.run(blas_threads).values())
    holder.stop(run.run_id)
    run.wait(30)


def test_a_killed_worker_fails_its_run_and_the_next_run_works(holder, tmp_path):
    config = TrainConfig(hidden_size=64, batch_size=16, epochs=200, patience=0)
    writer = _writer(tmp_path, config)
    run = holder.submit(writer.run_id, DATA, SETTINGS, config.to_dict(), writer=writer)
    _wait_until(lambda: run.snapshot()["epochs_done"] >= 1)
    os.kill(holder.worker_pids()[run.worker], signal.SIGKILL)
    run.wait(60)
    assert (run.status, run.message) == ("failed", WORKER_DIED)
    stored = store.open_run(tmp_path, writer.run_id)
    assert stored.status == "failed" and stored.message == WORKER_DIED and len(stored.history) >= 1

    config = TrainConfig(hidden_size=4, epochs=2)
    writer = _writer(tmp_path, config)
    again = holder.submit(writer.run_id, DATA, SETTINGS, config.to_dict(), writer=writer)
    again.wait(90)
    assert again.status == "completed" and store.open_run(tmp_path, writer.run_id).status == "completed"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_separately_started_scheduler_and_worker(tmp_path, monkeypatch):
    """`dask scheduler` + `dask worker` started apart (as on other machines): runs, progress and stop work
    through RNNLAB_SCHEDULER, with the data sent as bytes (the worker runs in another folder)."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    bin_dir = Path(sys.executable).parent
    scheduler = subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--dashboard-address", ":0"], env=environment, cwd=tmp_path,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    worker = subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--nworkers", "1"],
                              env=environment, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    holder = None
    try:
        monkeypatch.setenv("RNNLAB_SCHEDULER", address)
        holder = get_cluster()
        assert holder.address == address and not holder.local
        _wait_until(lambda: _workers(holder) >= 1, timeout=60)
        config = TrainConfig(model="rnn", hidden_size=4, epochs=2)
        writer = _writer(tmp_path / "store", config)
        run = holder.submit(writer.run_id, DATA, SETTINGS, config.to_dict(), writer=writer)
        run.wait(90)
        assert run.status == "completed", run.message
        assert len(store.open_run(tmp_path / "store", writer.run_id).history) == 2

        config = TrainConfig(hidden_size=96, batch_size=8, epochs=50, patience=0)
        stopped = holder.submit(store.new_run_id(), DATA, SETTINGS, config.to_dict())
        _wait_until(lambda: stopped.snapshot()["batches_done"] > 0)
        holder.stop(stopped.run_id)
        stopped.wait(30)
        assert stopped.status == "stopped"
    finally:
        if holder is not None:
            holder.close()
        for process in (worker, scheduler):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(timeout=10)


def _workers(holder) -> int:
    try:
        return len(holder.client.scheduler_info()["workers"])
    except OSError:
        return 0


def test_an_error_on_the_worker_fails_the_run_with_its_sentence(holder, tmp_path):
    config = TrainConfig(hidden_size=4, epochs=1)
    writer = _writer(tmp_path, config)
    run = holder.submit(writer.run_id, DATA, {**SETTINGS, "target": "snow"}, config.to_dict(), writer=writer)
    assert run.wait(60) is None and run.status == "failed"
    assert run.message.startswith("Training failed on the worker: ") and "snow" in run.message
    assert run.message.count("\n") == 0 and store.open_run(tmp_path, writer.run_id).message == run.message

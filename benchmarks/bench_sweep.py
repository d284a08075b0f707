"""Sweep speed: 8 LSTM(32, 7) trials on a 2-worker LocalCluster against the same 8 one after another in
one process, both writing their runs into a (temporary) store, as ``python -m rnnlab sweep`` does.

Each trial is an LSTM with 32 hidden units on 7-day windows of the embedded Seattle data, batch 64,
``--epochs`` epochs without early stopping, seeds 0..7 (the same work in both). The cluster is started
and warmed (workers import rnnlab and window the data once) before timing, as a server's cluster is
warm after its first run; its start-up time is printed apart. Printed:

- the wall time of each way and the ratio (target: ≥ 1.7× faster on 2 cores). The serial run is timed
  twice: with NumPy's BLAS at its default thread count (what a plain ``python`` gets: 2 threads on 2
  cores) and at one thread (what Dask gives each worker: ``OMP/OPENBLAS_NUM_THREADS=1``). The second
  ratio is the fair one for the parallelism itself; the first is what a user sees;
- the Dask overhead per trial, two ways: by wall time, (workers × the cluster's wall time − the
  1-thread serial time) / trials — the worker-seconds a trial costs beyond the training (scheduling,
  events, sending the artifacts back, idle tails); and by CPU time, (CPU of the workers + the
  scheduler + this submitting process − CPU of the 1-thread serial run) / trials, which other
  programs on the machine do not move (wall times do: the load average is printed). And the round
  trip of an empty task.

    python benchmarks/bench_sweep.py                  # 8 trials, 30 epochs, 2 workers
    python benchmarks/bench_sweep.py --epochs 4 --trials 4
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnlab import store  # noqa: E402
from rnnlab.cluster import ClusterHolder  # noqa: E402
from rnnlab.config import DataSettings, TrainConfig  # noqa: E402
from rnnlab.tables import DEFAULT_DATA_PATH, load_csv  # noqa: E402
from rnnlab.train import Trainer  # noqa: E402
from rnnlab.windows import prepare  # noqa: E402


def _configs(trials: int, epochs: int) -> list[TrainConfig]:
    return [TrainConfig(model="lstm", hidden_size=32, epochs=epochs, patience=0, seed=seed) for seed in range(trials)]


def _settings(config: TrainConfig) -> dict:
    return {"data": DataSettings(lookback=7).to_dict(), "train": config.to_dict(), "data_file": None, "load": {}}


def serial(configs, folder, blas_threads: int | None = None) -> float:
    """The trials one after another in this process: train, evaluate, pack and store each.
    blas_threads: limit NumPy's BLAS to this many threads (None: its default)."""
    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=blas_threads):
            return serial(configs, folder)
    prepared = prepare(load_csv(DEFAULT_DATA_PATH), **DataSettings(lookback=7).prepare_kwargs())
    started = time.perf_counter()
    for config in configs:
        writer = store.create_run(folder, _settings(config))
        writer.started()
        trainer = Trainer(config, prepared)
        for record in trainer.iter_epochs():
            writer.epoch(record)
        writer.finish(store.artifacts_from_trainer(trainer, prepared))
    return time.perf_counter() - started


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cluster_cpu(holder) -> tuple[float, float]:
    """CPU seconds used so far by the cluster's workers (together) and by its scheduler."""
    client = holder.client
    return sum(client.run(_cpu_seconds).values()), client.run_on_scheduler(_cpu_seconds)


def on_cluster(holder, configs, folder, data) -> float:
    """The same trials submitted at once to the cluster; the submitting process writes the store."""
    started = time.perf_counter()
    runs = []
    for config in configs:
        writer = store.create_run(folder, _settings(config), status="queued")
        runs.append(holder.submit(writer.run_id, data, DataSettings(lookback=7).to_dict(), config.to_dict(),
                                  writer=writer))
    for run in runs:
        run.wait(600)
        assert run.status == "completed", run.message
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=30, help="epochs a trial (default 30, as TrainConfig)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="alternate serial and cluster this many times")
    args = parser.parse_args()
    configs = _configs(args.trials, args.epochs)
    print(f"{args.trials} trials of LSTM(32, 7), {args.epochs} epochs each; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.1f} at the start")

    started = time.perf_counter()
    holder = ClusterHolder(n_workers=args.workers)
    client = holder.client
    print(f"cluster start-up ({args.workers} workers, in a launcher process): {time.perf_counter() - started:.1f} s")
    raw = DEFAULT_DATA_PATH.read_bytes()
    [shared] = client.scatter([raw], broadcast=True)
    data = {"bytes": shared, "name": DEFAULT_DATA_PATH.name}
    with tempfile.TemporaryDirectory() as folder:
        on_cluster(holder, _configs(args.workers, 1), Path(folder) / "warm", data)  # every worker warm
        round_trips = []
        for _ in range(20):
            tick = time.perf_counter()
            client.submit(time.monotonic, pure=False).result()
            round_trips.append(time.perf_counter() - tick)
        serial_times, single_times, cluster_times, single_cpu, cluster_cpus = [], [], [], [], []
        for repeat in range(args.repeats):
            serial_times.append(serial(configs, Path(folder) / f"serial{repeat}"))
            before = time.process_time()
            single_times.append(serial(configs, Path(folder) / f"single{repeat}", blas_threads=1))
            single_cpu.append(time.process_time() - before)
            submitter, (workers, scheduler) = time.process_time(), cluster_cpu(holder)
            cluster_times.append(on_cluster(holder, configs, Path(folder) / f"cluster{repeat}", data))
            after = cluster_cpu(holder)
            cluster_cpus.append((after[0] - workers, after[1] - scheduler, time.process_time() - submitter))
            assert len(store.list_runs(Path(folder) / f"cluster{repeat}")) == args.trials
    holder.close()

    serial_time, cluster_time = statistics.median(serial_times), statistics.median(cluster_times)
    single_time = statistics.median(single_times)
    overhead = (args.workers * cluster_time - single_time) / args.trials
    print(f"one process, one after another, BLAS default threads: {serial_time:.2f} s "
          f"({serial_time / args.trials:.2f} s a trial)")
    print(f"one process, one after another, BLAS 1 thread:        {single_time:.2f} s "
          f"({single_time / args.trials:.2f} s a trial)")
    print(f"{args.workers}-worker LocalCluster (1 thread each):            {cluster_time:.2f} s")
    for label, reference in (("against the default-thread process", serial_time),
                             ("against the 1-thread process", single_time)):
        ratio = reference / cluster_time
        print(f"speed-up {label}: {ratio:.2f}x (target >= 1.7x on 2 cores): {'met' if ratio >= 1.7 else 'NOT met'}")
    print(f"Dask overhead per trial by wall time (against the 1-thread process): {overhead:+.3f} worker-seconds "
          f"({100 * overhead / (single_time / args.trials):+.1f}% of a trial)")
    serial_cpu = statistics.median(single_cpu)
    workers, scheduler, submitter = (statistics.median(part) for part in zip(*cluster_cpus))
    all_cpu = workers + scheduler + submitter
    print(f"CPU: 1-thread serial {serial_cpu:.2f} s; cluster {all_cpu:.2f} s (workers {workers:.2f}, scheduler "
          f"{scheduler:.2f}, this submitting process {submitter:.2f}): "
          f"overhead {(all_cpu - serial_cpu) / args.trials:+.3f} CPU-s a trial "
          f"({100 * (all_cpu - serial_cpu) / serial_cpu:+.1f}%); on an otherwise idle machine the cluster's wall "
          f"time is at least {all_cpu / args.workers:.2f} s, a speed-up of at most "
          f"{serial_cpu / (all_cpu / args.workers):.2f}x against the 1-thread process")
    print(f"empty-task round trip {1000 * statistics.median(round_trips):.1f} ms")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()

"""Engine speed: seconds per training epoch, and ratios against references timed in the same run.

One epoch = every training window once, batch 64, Adam, global-norm clipping at 1.0. Data: the
training windows of ../shared/data/clean_weather.csv (tmax, tmin, rain -> tmax) when the file
exists, otherwise random data of the same shape. For each model kind, size and precision it prints
the median seconds per epoch over ``--epochs`` timed epochs after one warm-up epoch; references run
alternately with the engine (A/B/A/B…) so machine noise hits both alike:

- torch on the CPU with the same settings, when torch is importable (ratio < 1: rnnlab is faster);
- for LSTM (32, 7), the per-sequence loop of ``loop_lstm.py`` in float64 (the seed notebooks' way).

    python benchmarks/bench_engine.py                 # the full grid
    python benchmarks/bench_engine.py --models lstm --sizes 32x7 --epochs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import rnnlab  # noqa: E402
from loop_lstm import loop_loss_and_grads  # noqa: E402

CLEAN_WEATHER = ROOT.parent / "shared" / "data" / "clean_weather.csv"
BATCH, LR, CLIP, THREADS = 64, 1e-3, 1.0, 2


def training_windows(lookback: int):
    """(x (n, lookback, 3), y (n,), source description) of the weather data's training split."""
    if CLEAN_WEATHER.exists():
        from rnnlab.tables import load_csv
        from rnnlab.windows import prepare

        prepared = prepare(load_csv(CLEAN_WEATHER), target="tmax", features=["tmax", "tmin", "rain"],
                           lookback=lookback, horizon=1)
        # lead 1 only: targets are (n, horizon) since multi-day heads, and every runner here,
        # torch's included, trains a one-output head on (n,) targets
        return prepared.x_train, prepared.y_train[:, 0], "clean_weather.csv training split"
    rng = np.random.default_rng(0)
    n = 9450
    return rng.normal(size=(n, lookback, 3)), rng.normal(size=n), "random data (clean_weather.csv absent)"


def numpy_epoch(kind, hidden, x, y, dtype):
    """A closure that trains one epoch of the rnnlab engine per call."""
    model = rnnlab.create_model(kind, x.shape[2], hidden, seed=0, dtype=dtype)
    optimizer = rnnlab.make_optimizer("adam", LR)
    x, y = x.astype(dtype), y.astype(dtype)
    rng = np.random.default_rng(0)

    def run():
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            index = order[start : start + BATCH]
            _, grads = model.loss_and_grads(x[index], y[index])
            rnnlab.clip_grad_norm(grads, CLIP)
            optimizer.step(model.params, grads)

    return run


def loop_epoch(hidden, x, y):
    """One epoch of the per-sequence loop LSTM, same optimizer and clipping."""
    model = rnnlab.create_model("lstm", x.shape[2], hidden, seed=0)
    optimizer = rnnlab.make_optimizer("adam", LR)
    rng = np.random.default_rng(0)

    def run():
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            index = order[start : start + BATCH]
            _, grads = loop_loss_and_grads(model.params, x[index], y[index])
            rnnlab.clip_grad_norm(grads, CLIP)
            optimizer.step(model.params, grads)

    return run


def torch_epoch(kind, hidden, x, y, dtype):
    import torch

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    torch_dtype = getattr(torch, dtype)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    rnn = cls(x.shape[2], hidden, batch_first=True).to(torch_dtype)
    head = torch.nn.Linear(hidden, 1).to(torch_dtype)
    parameters = list(rnn.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(parameters, lr=LR)
    x_t, y_t = torch.from_numpy(x.astype(dtype)), torch.from_numpy(y.astype(dtype))
    rng = np.random.default_rng(0)

    def run():
        order = torch.from_numpy(rng.permutation(len(x)))
        for start in range(0, len(x), BATCH):
            index = order[start : start + BATCH]
            optimizer.zero_grad()
            out, _ = rnn(x_t[index])
            loss = torch.mean((head(out[:, -1]).squeeze(-1) - y_t[index]) ** 2)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, CLIP)
            optimizer.step()

    return run


def timed_alternating(runners: dict, epochs: int) -> dict:
    """Median seconds per epoch for each runner, after one warm-up each, interleaved A/B/A/B."""
    for run in runners.values():
        run()
    times = {name: [] for name in runners}
    for _ in range(epochs):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="rnn,lstm,gru")
    parser.add_argument("--sizes", default="32x7,64x14,128x30", help="hidden x lookback pairs")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per runner (after a warm-up)")
    parser.add_argument("--no-torch", action="store_true")
    args = parser.parse_args(argv)

    have_torch = False
    if not args.no_torch:
        try:
            import torch

            torch.set_num_threads(THREADS)
            have_torch = True
        except ImportError:
            print("torch is not installed: no torch ratios (pip install torch==2.13.0 for them)")

    print(f"{'model':5} {'hidden':>6} {'lookback':>8} {'dtype':>7} {'windows':>7} {'rnnlab s/epoch':>14} "
          f"{'torch s/epoch':>13} {'rnnlab/torch':>12} {'loop s/epoch':>12} {'loop/rnnlab':>11}")
    for size in args.sizes.split(","):
        hidden, lookback = (int(v) for v in size.split("x"))
        x, y, source = training_windows(lookback)
        for kind in args.models.split(","):
            for dtype in args.dtypes.split(","):
                runners = {"rnnlab": numpy_epoch(kind, hidden, x, y, dtype)}
                if have_torch:
                    runners["torch"] = torch_epoch(kind, hidden, x, y, dtype)
                # the seed notebooks' loop runs in float64 (NumPy's default) beside either precision
                with_loop = kind == "lstm" and (hidden, lookback) == (32, 7)
                if with_loop:
                    runners["loop"] = loop_epoch(hidden, x, y)
                median = timed_alternating(runners, args.epochs if not with_loop else max(5, args.epochs))
                ours = median["rnnlab"]
                torch_cells = (f"{median['torch']:13.3f} {ours / median['torch']:11.2f}x" if have_torch
                               else f"{'-':>13} {'-':>12}")
                loop_cells = (f"{median['loop']:12.3f} {median['loop'] / ours:10.1f}x" if with_loop
                              else f"{'-':>12} {'-':>11}")
                print(f"{kind:5} {hidden:6d} {lookback:8d} {dtype:>7} {len(x):7d} {ours:14.3f} "
                      f"{torch_cells} {loop_cells}", flush=True)
    print(f"data: {source}; batch {BATCH}, Adam lr {LR}, clip {CLIP}; torch threads {THREADS}; "
          f"median of {args.epochs} epochs after a warm-up")


if __name__ == "__main__":
    main()

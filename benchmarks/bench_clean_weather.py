"""Acceptance figures on the notebooks' clean_weather.csv: test MSE per model kind and seed, °F².

    python benchmarks/bench_clean_weather.py [--models lstm,gru,rnn] [--seeds 0,1,2] [--epochs 30] [--patience 10]

Settings of the issue: hidden 32, lookback 7, Adam 1e-3, batch 64, clip 1.0, tmax 1 day ahead from
tmax, tmin, rain. Prints each run, then the median per model next to persistence and least squares.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnlab.tables import load_csv  # noqa: E402
from rnnlab.windows import prepare  # noqa: E402
from rnnlab.evaluate import evaluate  # noqa: E402
from rnnlab.train import TrainConfig, Trainer  # noqa: E402

CLEAN_WEATHER = ROOT.parent / "shared" / "data" / "clean_weather.csv"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="lstm,gru,rnn")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--patience", type=int, default=TrainConfig.patience,
                        help="early-stopping patience (default: TrainConfig's); 0 trains every epoch")
    args = parser.parse_args(argv)
    if not CLEAN_WEATHER.exists():
        print(f"{CLEAN_WEATHER} is absent: nothing to measure.")
        return
    prepared = prepare(load_csv(CLEAN_WEATHER), target="tmax", features=["tmax", "tmin", "rain"], lookback=7)
    baselines = None
    for kind in args.models.split(","):
        scores = []
        for seed in (int(s) for s in args.seeds.split(",")):
            started = time.perf_counter()
            config = TrainConfig(model=kind, hidden_size=32, lr=1e-3, batch_size=64, epochs=args.epochs,
                                 grad_clip=1.0, patience=args.patience, seed=seed)
            trainer = Trainer(config, prepared).fit()
            result = evaluate(trainer.model, prepared)
            test = result.table("test")
            baselines = test
            scores.append(test.loc["model", "MSE"])
            print(f"{kind:4} seed {seed}: test MSE {scores[-1]:.2f}  val MSE {result.table('validation').loc['model', 'MSE']:.2f}"
                  f"  ({trainer.message} {time.perf_counter() - started:.0f} s)", flush=True)
        print(f"{kind:4} median test MSE {statistics.median(scores):.2f} °F²", flush=True)
    print(f"persistence test MSE {baselines.loc['persistence', 'MSE']:.2f}, least squares {baselines.loc['least squares', 'MSE']:.2f}, "
          f"climatology {baselines.loc['climatology', 'MSE']:.2f}")


if __name__ == "__main__":
    main()

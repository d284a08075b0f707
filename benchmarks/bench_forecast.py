"""Acceptance figures of issue 11: per-lead test coverage of the conformal intervals, and the lead-1
interval width against persistence's at the same coverage.

    python benchmarks/bench_forecast.py [--epochs 30] [--seed 0] [--horizon 7]

Two data sets, H = 7, the default layout (train 0.6 / validation 0.15 / calibration 0.1 / test 0.15):
- clean_weather.csv (tmax, tmin, rain -> tmax), acceptance: coverage within ±3 points of nominal;
- the embedded Seattle data (every usable column -> temp_max), within ±5 points (fewer test days).
One LSTM(32) per data set; its intervals are calibrated at 90% and at 80% (the weights do not change).
Prints, per data set and coverage, a table of lead days: the model's and persistence's empirical
coverage and mean width, and whether the model's coverage is inside the tolerance.
"""

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

from rnnlab.evaluate import evaluate  # noqa: E402
from rnnlab.tables import DEFAULT_DATA_PATH, load_csv  # noqa: E402
from rnnlab.train import TrainConfig, Trainer  # noqa: E402
from rnnlab.windows import prepare  # noqa: E402

CLEAN_WEATHER = ROOT.parent / "shared" / "data" / "clean_weather.csv"
DATA_SETS = [  # name, path, target, features, tolerance in coverage points
    ("clean_weather", CLEAN_WEATHER, "tmax", ["tmax", "tmin", "rain"], 3.0),
    ("embedded", DEFAULT_DATA_PATH, "temp_max", None, 5.0),
]
COVERAGES = (0.9, 0.8)


def coverage_table(result, tolerance: float) -> pd.DataFrame:
    """One row per lead day: nominal, model and persistence coverage (%) and mean width, within tolerance."""
    table = result.interval_table("test")
    model, persistence = table.xs("model", level="predictor"), table.xs("persistence", level="predictor")
    nominal = 100 * result.calibration.coverage
    frame = pd.DataFrame({
        "nominal %": nominal, "model %": 100 * model["coverage"], "persistence %": 100 * persistence["coverage"],
        "model width": model["width"], "persistence width": persistence["width"],
        "model winkler": model["winkler"], "persistence winkler": persistence["winkler"],
    })
    frame["within ±tol"] = (frame["model %"] - nominal).abs() <= tolerance
    return frame


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--horizon", type=int, default=7)
    args = parser.parse_args(argv)
    for name, path, target, features, tolerance in DATA_SETS:
        if not Path(path).exists():
            print(f"{path} is absent: {name} not measured.")
            continue
        started = time.perf_counter()
        prepared = prepare(load_csv(path), target=target, features=features, lookback=7, horizon=args.horizon)
        config = TrainConfig(model="lstm", hidden_size=32, epochs=args.epochs, seed=args.seed)
        trainer = Trainer(config, prepared).fit()
        print(f"\n== {name}: {target} 1..{args.horizon} days ahead; {prepared.count('train')} train, "
              f"{prepared.count('validation')} validation, {prepared.count('calibration')} calibration, "
              f"{prepared.count('test')} test windows; {trainer.message} ({time.perf_counter() - started:.0f} s)")
        for coverage in COVERAGES:
            result = evaluate(trainer.model, prepared, coverage=coverage)
            table = coverage_table(result, tolerance)
            print(f"\n{coverage:.0%} intervals (tolerance ±{tolerance:g} points):")
            print(table.to_string(float_format=lambda v: f"{v:.2f}"))
            lead1 = table.loc[1]
            verdict = "narrower" if lead1["model width"] < lead1["persistence width"] else "NOT narrower"
            print(f"lead 1: model width {lead1['model width']:.2f} vs persistence {lead1['persistence width']:.2f} "
                  f"({verdict}); every lead within tolerance: {bool(table['within ±tol'].all())}")
        lead_mse = result.lead_table("test")
        print("\ntest MSE per lead day:")
        print(lead_mse.to_string(float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()

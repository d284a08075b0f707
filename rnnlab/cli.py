"""Command line: ``python -m rnnlab train | evaluate | predict``.

    python -m rnnlab train --target tmax --features tmax,tmin,rain --model lstm --epochs 30 --out runs/lstm
    python -m rnnlab evaluate --weights runs/lstm/model.safetensors --data data.csv
    python -m rnnlab predict --weights runs/lstm/model.safetensors --data data.csv

Every bad input ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from pathlib import Path

import pandas as pd

from rnnlab.errors import DataError, WeightsError
from rnnlab.tables import DEFAULT_DATA_PATH, load_csv
from rnnlab.windows import latest_window, prepare
from rnnlab.evaluate import evaluate
from rnnlab.train import TrainConfig, Trainer, history_frame
from rnnlab.weights_io import evaluate_saved_run, load_run, save_run

_HELP = {
    "model": "rnn, lstm or gru", "hidden_size": "units per recurrent layer", "num_layers": "stacked layers",
    "lookback": "days in each input window", "horizon": "forecast this many days ahead",
    "features": "comma-separated input columns (default: every numeric column that does not leak the target)",
    "target": "column to forecast (default: a daily maximum temperature)",
    "optimizer": "sgd, momentum, nesterov, adam or adamw", "lr": "learning rate", "momentum": "for momentum/nesterov",
    "weight_decay": "L2 penalty (decoupled for adamw)", "batch_size": "windows per step", "epochs": "passes over the data",
    "grad_clip": "clip the global gradient norm at this value; 0 disables",
    "clip_value": "clamp each gradient element to ±value; 0 disables",
    "patience": "early-stopping patience in epochs; 0 disables", "seed": "random seed", "dtype": "float64 or float32",
}


def _add_config_flags(parser):
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = field.default
        if field.name == "features":
            parser.add_argument(flag, default=None, help=_HELP[field.name])
        elif field.name == "target":
            parser.add_argument(flag, default=None, help=_HELP[field.name])
        else:
            parser.add_argument(flag, type=type(default), default=default,
                                help=f"{_HELP[field.name]} (default {default})")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m rnnlab", description="Recurrent networks on weather data.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model and write weights, history, metrics and predictions")
    train.add_argument("--data", default=str(DEFAULT_DATA_PATH), help="CSV file (default: the embedded Seattle data)")
    train.add_argument("--out", default="runs/latest", help="folder to write the results to")
    _add_config_flags(train)
    for name in ("evaluate", "predict"):
        sub = commands.add_parser(name, help=f"{name} a saved run on a CSV")
        sub.add_argument("--weights", required=True, help=".safetensors or .npz file written by 'train'")
        sub.add_argument("--data", default=str(DEFAULT_DATA_PATH), help="CSV file (default: the embedded data)")
        if name == "predict":
            sub.add_argument("--out", default=None, help="write the predictions CSV here instead of to stdout")
    return parser


class _ProgressBar:
    """A one-line progress bar on stderr: epoch, bar, losses."""

    def __init__(self, total, stream=None):
        self.total, self.stream = total, stream or sys.stderr

    def update(self, record):
        done = int(30 * record["epoch"] / self.total)
        self.stream.write(f"\repoch {record['epoch']:>3}/{self.total} [{'#' * done}{'.' * (30 - done)}] "
                          f"train {record['train_loss']:.4f}  val {record['val_loss']:.4f} "
                          f"(val MSE {record['val_mse']:.2f})")
        self.stream.flush()

    def close(self):
        self.stream.write("\n")


def _train(args):
    table = load_csv(args.data)
    features = tuple(f.strip() for f in args.features.split(",") if f.strip()) if args.features else None
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{**values, "features": features}).validate()
    prepared = prepare(table, target=config.target, features=list(features) if features else None,
                       lookback=config.lookback, horizon=config.horizon)
    config = dataclasses.replace(config, target=prepared.target, features=tuple(prepared.features))
    for line in prepared.notes + prepared.warnings:
        print(f"note: {line}", file=sys.stderr)
    trainer = Trainer(config, prepared)
    bar = _ProgressBar(config.epochs)
    try:
        trainer.run(threading.Event(), on_epoch=bar.update)
    finally:
        bar.close()
    print(trainer.message, file=sys.stderr)
    result = evaluate(trainer.model, prepared)
    metrics = result.to_dict()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".npz"):
        save_run(out / f"model{suffix}", trainer.model, config, prepared, metrics)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    history_frame(trainer.history).to_csv(out / "history.csv", index=False)
    (out / "metrics.json").write_text(json.dumps({"status": trainer.status, "message": trainer.message, **metrics},
                                                 indent=2))
    result.predictions[["date", "split", "actual", "predicted", "persistence"]].to_csv(
        out / "predictions.csv", index=False, date_format="%Y-%m-%d")
    print(result.table("test").round(3).to_string())
    print(f"wrote {out}/: model.safetensors, model.npz, config.json, history.csv, metrics.json, predictions.csv")


def _evaluate(args):
    _, result = evaluate_saved_run(load_run(args.weights), load_csv(args.data))
    for split in ("validation", "test"):
        print(f"{split}:")
        print(result.table(split).round(3).to_string())


def _predict(args):
    run, table = load_run(args.weights), load_csv(args.data)
    prepared, _ = evaluate_saved_run(run, table)
    frames = []
    for split in ("train", "validation", "test"):
        window = prepared.windows[split]
        frames.append(pd.DataFrame({"date": window["dates"], "split": split, "actual": window["actual"],
                                    "predicted": prepared.inverse_target(run.model.predict(window["x"]))}))
    latest = latest_window(table, prepared)
    if latest is not None:
        x, date = latest
        frames.append(pd.DataFrame({"date": [date], "split": ["forecast"], "actual": [float("nan")],
                                    "predicted": prepared.inverse_target(run.model.predict(x))}))
    predictions = pd.concat(frames, ignore_index=True)
    target = args.out if args.out else sys.stdout
    predictions.to_csv(target, index=False, date_format="%Y-%m-%d")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        {"train": _train, "evaluate": _evaluate, "predict": _predict}[args.command](args)
    except (DataError, WeightsError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 2
    return 0

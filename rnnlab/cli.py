"""Command line: ``python -m rnnlab train | evaluate | predict | forecast | backtest | inspect``.

    python -m rnnlab train --target temp_max --model lstm --horizon 7 --coverage 0.9 --out runs/lstm
    python -m rnnlab evaluate --weights runs/lstm/model.safetensors --data data.csv
    python -m rnnlab predict --weights runs/lstm/model.safetensors --data data.csv
    python -m rnnlab forecast --weights runs/lstm/model.safetensors --data data.csv --out next.csv
    python -m rnnlab backtest --folds 5 --out runs/backtest --horizon 7 --epochs 30
    python -m rnnlab inspect --weights runs/lstm/model.safetensors --date 2015-06-30 --out runs/lstm/xray

Every bad input ends with one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from rnnlab import xray
from rnnlab.backtest import backtest, summary
from rnnlab.config import DataSettings, TrainConfig
from rnnlab.errors import DataError, WeightsError
from rnnlab.evaluate import evaluate, predict_split
from rnnlab.forecast import next_days_of_run
from rnnlab.tables import DEFAULT_DATA_PATH, RESAMPLE_CHOICES, load_csv
from rnnlab.train import Trainer, history_frame
from rnnlab.weights_io import evaluate_saved_run, load_run, save_run, snapshots_to_bytes
from rnnlab.windows import SPLIT_NAMES, prepare


def _flag_help(meta: dict, default) -> str:
    """A flag's help from the setting's own metadata: what it does, its limits and its default."""
    limits = f" [{meta['low']:g} to {meta['high']:g}]" if meta.get("low") is not None else ""
    choices = f" [{', '.join(map(str, meta['choices']))}]" if meta.get("kind") == "choice" else ""
    default_text = f" (default {default})" if default is not None else ""
    return f"{meta['help']}{choices}{limits}{default_text}".replace("%", "%%")


def _parse_list(text: str) -> tuple:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_splits(text: str) -> tuple:
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"give the train and validation shares like 0.7,0.15, not {text!r}") from None


def _add_setting_flags(parser, settings_class):
    """One flag per field of ``settings_class`` (DataSettings or TrainConfig), help and defaults from rnnlab.config."""
    for field in dataclasses.fields(settings_class):
        flag = "--" + field.name.replace("_", "-")
        help_text = _flag_help(field.metadata, field.default)
        if field.name == "features":
            parser.add_argument(flag, type=_parse_list, default=None, help="comma-separated. " + help_text)
        elif field.name == "splits":
            parser.add_argument(flag, type=_parse_splits, default=field.default, help=help_text)
        elif field.default is None:
            parser.add_argument(flag, default=None, help=help_text)
        else:
            parser.add_argument(flag, type=type(field.default), default=field.default, help=help_text)


def _settings_from(args, settings_class):
    return settings_class(**{f.name: getattr(args, f.name) for f in dataclasses.fields(settings_class)})


def _parse_where(text: str) -> tuple[str, str]:
    column, equals, value = text.partition("=")
    if not equals or not column.strip():
        raise argparse.ArgumentTypeError(f"give a column and a value like NAME=OSLO, not {text!r}")
    return column.strip(), value.strip()


def _add_load_flags(parser):
    """How the data file is read: which series, whether sub-daily rows become days, the date format."""
    parser.add_argument("--where", type=_parse_where, action="append", default=[], metavar="COLUMN=VALUE",
                        help="keep only the rows where COLUMN reads VALUE: one station or city of a file holding "
                             "several (repeat for more conditions)")
    parser.add_argument("--resample", choices=RESAMPLE_CHOICES, default="daily",
                        help="daily: aggregate hourly or 10-minute rows to days (mean; sum for precipitation; max/min "
                             "where the name says so); none: keep the file's own step (default daily)")
    parser.add_argument("--date-format", default=None, metavar="FORMAT",
                        help="read the dates this way (like DD/MM/YYYY or %%d/%%m/%%Y) instead of the guessed format")


def _load_options(args) -> dict:
    return {"where": dict(args.where) or None, "resample": args.resample, "date_format": args.date_format}


def _load(data_file, options: dict):
    """The table, after printing what the loader found (header, dates, step, series, markers) as notes."""
    table = load_csv(data_file, **options)
    for line in table.summary_lines():
        print(f"note: {line}", file=sys.stderr)
    return table


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m rnnlab", description="Recurrent networks on weather data.")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train a model and write weights, history, metrics and predictions")
    train.add_argument("--data", default=str(DEFAULT_DATA_PATH), help="CSV file (default: the embedded Seattle data)")
    train.add_argument("--out", default="runs/latest", help="folder to write the results to")
    train.add_argument("--store", default=None, metavar="DIR",
                       help="the run store to add the run to, written every epoch (default $RNNLAB_STORE, else ./runs)")
    train.add_argument("--name", default="", metavar="TEXT", help="a name for the run, shown in the run history")
    backtest_parser = commands.add_parser("backtest", help="rolling-origin backtest: retrain at K origins over the "
                                                           "later part of the data and score every fold")
    backtest_parser.add_argument("--data", default=str(DEFAULT_DATA_PATH),
                                 help="CSV file (default: the embedded Seattle data)")
    backtest_parser.add_argument("--folds", type=int, default=5, help="how many origins (folds) (default 5)")
    backtest_parser.add_argument("--first-origin", type=float, default=0.5,
                                 help="the share of the rows before the first test block; the test blocks tile the "
                                      "rest (default 0.5)")
    backtest_parser.add_argument("--out", required=True, help="folder to write folds.csv to")
    _add_load_flags(backtest_parser)
    _add_setting_flags(backtest_parser, DataSettings)
    _add_setting_flags(backtest_parser, TrainConfig)
    train.add_argument("--resume", default=None, metavar="RUN",
                       help="branch from a run folder written by 'train': continue its training from --from-epoch "
                            "with the same model and data, and any training setting given here changed")
    train.add_argument("--from-epoch", type=int, default=None, metavar="K",
                       help="with --resume: the epoch to continue from (default: the run's last snapshot)")
    _add_load_flags(train)
    _add_setting_flags(train, DataSettings)
    _add_setting_flags(train, TrainConfig)
    for name in ("evaluate", "predict", "forecast"):
        what = "forecast the days after the last date of a CSV with" if name == "forecast" else f"{name}"
        sub = commands.add_parser(name, help=f"{what} a saved run" + ("" if name == "forecast" else " on a CSV"))
        sub.add_argument("--weights", required=True, help=".safetensors or .npz file written by 'train'")
        sub.add_argument("--data", default=str(DEFAULT_DATA_PATH), help="CSV file (default: the embedded data)")
        _add_load_flags(sub)
        if name in ("predict", "forecast"):
            sub.add_argument("--out", default=None, help=f"write the {name} CSV here instead of to stdout")
    inspect = commands.add_parser("inspect", help="X-ray a saved run on one day: gradient check, gates and "
                                                  "states, integrated-gradients saliency")
    inspect.add_argument("--weights", required=True, help=".safetensors or .npz file written by 'train'")
    inspect.add_argument("--data", default=str(DEFAULT_DATA_PATH), help="CSV file (default: the embedded data)")
    _add_load_flags(inspect)
    inspect.add_argument("--date", default=None, metavar="YYYY-MM-DD",
                         help="the forecast day to look at (default: the worst-predicted test day)")
    inspect.add_argument("--out", required=True, help="folder to write gradcheck.csv, gates.npz and saliency.csv to")
    _add_sweep_parser(commands)
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


# a branch continues the parent's model on the parent's windows: only how it trains may change
_BRANCH_FIXED = ("model", "hidden_size", "num_layers", "dtype", "seed")


def _given(argv, parser_flags) -> set[str]:
    """The destinations of the flags the user typed (so a branch changes only those)."""
    typed = {token.split("=", 1)[0] for token in argv if token.startswith("--")}
    return {dest for dest, flags in parser_flags.items() if typed & set(flags)}


def _branch_settings(args, argv):
    """(data settings, train config, snapshot, parent folder, data file) for ``train --resume RUN``."""
    from rnnlab.weights_io import load_snapshots

    parent = Path(args.resume)
    if not (parent / "config.json").is_file():
        raise DataError(f"{parent} is not a run folder written by 'python -m rnnlab train' (no config.json there).")
    saved = json.loads((parent / "config.json").read_text())
    flags = {f.name: ["--" + f.name.replace("_", "-")] for f in dataclasses.fields(TrainConfig)}
    flags.update({f.name: ["--" + f.name.replace("_", "-")] for f in dataclasses.fields(DataSettings)})
    flags["data"] = ["--data"]
    given = _given(argv, flags)
    changed_data = sorted(given & ({f.name for f in dataclasses.fields(DataSettings)} | {"data"}))
    changed_model = sorted(name for name in given & set(_BRANCH_FIXED)
                           if getattr(args, name) != saved["train"][name])
    if changed_data or changed_model:
        what = ", ".join("--" + n.replace("_", "-") for n in changed_data + changed_model)
        raise DataError(f"A branch continues the same model on the same windows, so {what} cannot change: "
                        "train a new run instead.")
    train_values = {**saved["train"], **{name: getattr(args, name) for name in given if name in saved["train"]}}
    config = TrainConfig.from_dict(train_values).validate()
    data_settings = DataSettings(**{**saved["data"], "features": tuple(saved["data"]["features"])}).validate()
    snapshots = load_snapshots(parent / "snapshots.npz")
    epoch = args.from_epoch if args.from_epoch is not None else max(snapshots)
    if epoch not in snapshots:
        raise DataError(f"{parent} keeps snapshots of epochs {', '.join(map(str, sorted(snapshots)))}, not of "
                        f"epoch {epoch}: choose one of them.")
    if "epochs" not in given:
        config = dataclasses.replace(config, epochs=max(config.epochs, epoch + 1))
    return data_settings, config, snapshots[epoch], parent, saved.get("data_file", str(DEFAULT_DATA_PATH))


def _store_writer(args, prepared, config, data_file, load_options, snapshot, parent):
    """The run's folder in the store, written every epoch so that a killed run keeps its finished epochs."""
    from rnnlab.store import create_run

    settings = {"data": prepared.settings().to_dict(), "train": config.to_dict(),
                "data_file": str(Path(data_file).resolve()), "load": load_options}
    branch_of = {"run": str(parent.resolve()), "epoch": snapshot.epoch} if snapshot is not None else None
    writer = create_run(args.store, settings, name=args.name, branch_of=branch_of)
    writer.started(history=snapshot.history if snapshot is not None else None)
    return writer


def _store_finish(writer, out, trainer):
    """Copy what ``--out`` received into the store's run folder and mark the run finished."""
    from rnnlab.store import artifacts_from_folder

    writer.finish(artifacts_from_folder(out, trainer.status, trainer.message, trainer.history, trainer.best_epoch))
    print(f"stored as run {writer.run_id} in {writer.path.parent}/")


def _train(args, argv=()):
    snapshot, parent, data_file = None, None, args.data
    if args.resume:
        data_settings, config, snapshot, parent, data_file = _branch_settings(args, argv)
    else:
        if args.from_epoch is not None:
            raise DataError("--from-epoch needs --resume RUN: the run folder to branch from.")
        data_settings = _settings_from(args, DataSettings).validate()
        config = _settings_from(args, TrainConfig).validate()
    load_options = _load_options(args)
    if args.resume:  # a branch reads its data as the parent run did
        load_options = json.loads((parent / "config.json").read_text()).get("load", load_options)
    table = _load(data_file, load_options)
    prepared = prepare(table, **data_settings.prepare_kwargs())
    for line in prepared.notes + prepared.warnings:
        print(f"note: {line}", file=sys.stderr)
    trainer = Trainer(config, prepared, resume=snapshot)
    writer = _store_writer(args, prepared, config, data_file, load_options, snapshot, parent)
    if snapshot is not None:
        print(f"note: branching from {parent} at epoch {snapshot.epoch}; training on to epoch {config.epochs}.",
              file=sys.stderr)
    bar = _ProgressBar(config.epochs)
    try:
        trainer.fit(threading.Event(), on_epoch=lambda record: (bar.update(record), writer.epoch(record)))
    except Exception as error:
        writer.fail(f"Training failed: {error}")
        raise
    finally:
        bar.close()
    print(trainer.message, file=sys.stderr)
    result = evaluate(trainer.model, prepared, coverage=config.coverage)
    metrics = result.to_dict()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for suffix in (".safetensors", ".npz"):
        save_run(out / f"model{suffix}", trainer.model, config, prepared, metrics, result.calibration)
    settings = {"data": prepared.settings().to_dict(), "train": config.to_dict(),
                "data_file": str(Path(data_file).resolve()), "load": load_options}
    if snapshot is not None:
        settings["branch_of"] = {"run": str(parent.resolve()), "epoch": snapshot.epoch}
    (out / "config.json").write_text(json.dumps(settings, indent=2))
    (out / "snapshots.npz").write_bytes(snapshots_to_bytes(trainer.snapshots))
    history_frame(trainer.history).to_csv(out / "history.csv", index=False)
    (out / "metrics.json").write_text(json.dumps({"status": trainer.status, "message": trainer.message, **metrics,
                                                  "per_lead": result.per_lead_dict()}, indent=2))
    columns = [c for c in ("date", "split", "lead", "actual", "predicted", "lower", "upper", "persistence")
               if c in result.predictions]
    result.predictions[columns].to_csv(out / "predictions.csv", index=False, date_format="%Y-%m-%d")
    _print_scores(result, ("test",))
    print(f"wrote {out}/: model.safetensors, model.npz, config.json, snapshots.npz, history.csv, metrics.json, "
          "predictions.csv")
    _store_finish(writer, out, trainer)


def _print_scores(result, splits):
    """The scoreboard of each split; with several lead days the MSE per lead; the intervals' scores."""
    for split in splits:
        if len(splits) > 1:
            print(f"{split}:")
        print(result.table(split).round(3).to_string())
        if result.lead_metrics is not None and result.lead_metrics.index.get_level_values("lead").max() > 1:
            print(f"MSE per lead day ({split}):")
            print(result.lead_table(split).round(3).to_string())
        intervals = result.interval_table(split)
        if len(intervals):
            print(f"{result.calibration.coverage:.0%} intervals ({split}, calibrated on "
                  f"{result.calibration.windows:,} windows):")
            print(intervals.drop(columns="nominal").round(3).to_string())


def _evaluate(args):
    score = evaluate_saved_run(load_run(args.weights), _load(args.data, _load_options(args)))
    for note in score.notes:
        print(f"note: {note}", file=sys.stderr)
    _print_scores(score.result, ("validation", "test"))


def _predict(args):
    run, table = load_run(args.weights), _load(args.data, _load_options(args))
    score = evaluate_saved_run(run, table)
    for note in score.notes:
        print(f"note: {note}", file=sys.stderr)
    prepared, calibration = score.prepared, score.result.calibration
    frames = []
    for split in (name for name in SPLIT_NAMES if name in prepared.starts):
        predicted = prepared.inverse_target(predict_split(run.model, prepared, split))  # (n, H)
        frame = pd.DataFrame({"date": prepared.row_dates[prepared.target_rows(split).T.ravel()], "split": split,
                              "lead": np.repeat(np.arange(1, prepared.horizon + 1), len(predicted)),
                              "actual": prepared.windows[split]["actual"].T.ravel(), "predicted": predicted.T.ravel()})
        if calibration is not None:
            lower, upper = calibration.bounds(predicted)
            frame["lower"], frame["upper"] = lower.T.ravel(), upper.T.ravel()
        frames.append(frame)
    try:
        ahead = next_days_of_run(run, table)
        frames.append(ahead.assign(split="forecast", actual=float("nan"))[frames[0].columns])
    except DataError as refusal:
        print(f"note: no forecast of the next days: {refusal}", file=sys.stderr)
    predictions = pd.concat(frames, ignore_index=True)
    target = args.out if args.out else sys.stdout
    predictions.to_csv(target, index=False, date_format="%Y-%m-%d")


def _forecast(args):
    run = load_run(args.weights)
    ahead = next_days_of_run(run, _load(args.data, _load_options(args)))
    if run.calibration is None:
        print("note: this run has no calibration block, so the forecast comes without intervals.", file=sys.stderr)
    if not args.out:
        ahead.to_csv(sys.stdout, index=False, date_format="%Y-%m-%d")
        return
    ahead.to_csv(args.out, index=False, date_format="%Y-%m-%d")
    print(ahead.to_string(index=False, float_format=lambda v: f"{v:.2f}", formatters={"date": "{:%Y-%m-%d}".format}))
    print(f"wrote {args.out}")


def _backtest(args):
    data_settings = _settings_from(args, DataSettings).validate()
    config = _settings_from(args, TrainConfig).validate()
    table = _load(args.data, _load_options(args))

    def report(row):
        print(f"fold {row['fold']}/{args.folds}: test from {row['first_test_day']:%Y-%m-%d}, model MSE "
              f"{row['model_mse']:.3f}, persistence MSE {row['persistence_mse']:.3f}, skill {row['skill']:+.3f}, "
              f"coverage {row['coverage']:.1%}", file=sys.stderr)

    folds = backtest(table, data_settings, config, args.folds, args.first_origin, on_fold=report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folds.to_csv(out / "folds.csv", index=False, date_format="%Y-%m-%d")
    print(folds[["fold", "origin", "train_days", "test_windows", "model_mse", "persistence_mse", "skill",
                 "coverage", "width"]].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    for metric, row in summary(folds).iterrows():
        print(f"{metric}: {row['mean']:.3f} ± {row['std']:.3f}")
    print(f"wrote {out}/folds.csv")


def _inspect(args):
    run = load_run(args.weights)
    score = evaluate_saved_run(run, _load(args.data, _load_options(args)))
    for note in score.notes:
        print(f"note: {note}", file=sys.stderr)
    prepared, model = score.prepared, run.model
    if args.date is None:
        date = xray.worst_day(score.result.predictions)  # of lead 1: the X-ray explains the next day's forecast
    else:
        try:
            date = pd.Timestamp(args.date)
        except ValueError:
            raise ValueError(f"--date must be a day like 2015-06-30, not {args.date!r}.") from None
    split, index = xray.window_for_date(prepared, date)
    x_window = prepared.inputs(split, index)[0]
    batch = slice(0, int(run.config.get("batch_size", 64)))  # the first training batch: real data, real size
    gradcheck = xray.gradient_check(model, prepared.inputs("train", batch), prepared.targets("train", batch))
    attributions, completeness = xray.integrated_gradients(model, x_window)
    occluded = xray.occlusion(model, x_window, by="cell")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    gradcheck.to_csv(out / "gradcheck.csv", index=False)
    np.savez(out / "gates.npz", **xray.gate_states(model, x_window))
    # in the target's own units: differences of scaled predictions times the target's scale
    saliency = xray.attribution_table(attributions * prepared.target_scale, prepared.features)
    saliency["occlusion"] = (occluded * prepared.target_scale).ravel()
    saliency.to_csv(out / "saliency.csv", index=False)

    day = pd.Timestamp(prepared.windows[split]["dates"][index])
    scale = prepared.target_scale
    print(f"{day:%Y-%m-%d} ({split}): {prepared.target} actual {prepared.windows[split]['actual'][index, 0]:.1f}, "
          f"predicted {prepared.inverse_target(completeness['prediction']):.1f}")
    worst = gradcheck.loc[gradcheck["max_rel_error"].idxmax()]
    print(f"gradient check: {worst['status']}, largest relative error {worst['max_rel_error']:.1e} ({worst['param']}), "
          f"{gradcheck.attrs['seconds']:.2f} s" + (f"; {gradcheck.attrs['note']}" if gradcheck.attrs["note"] else ""))
    steps_for = completeness["steps_for_tolerance"]
    print(f"integrated gradients against the training mean, {completeness['steps']} steps: attributions sum to "
          f"{completeness['sum_of_attributions'] * scale:+.3f}, prediction − baseline prediction is "
          f"{completeness['difference'] * scale:+.3f}: completeness gap {completeness['relative_gap']:.3%}"
          + (f" ({steps_for} steps bring it below 1%)" if steps_for else " (no step count up to 4096 brings it below 1%)"))
    print(f"wrote {out}/: gradcheck.csv, gates.npz, saliency.csv")


def _add_sweep_parser(commands):
    """'sweep': every setting flag takes one value (fixed), a comma list (choices) or a:b (a log-uniform range)."""
    sweep = commands.add_parser(
        "sweep", help="train many runs on a Dask cluster, each into the store: a search over settings, or seed bands",
        description="Every setting flag takes one value (fixed), a comma list (choices: --model lstm,gru) or a:b (a "
                    "log-uniform range: --lr 1e-4:1e-2). The objective is the validation MSE; the best run is printed.")
    sweep.add_argument("--data", default=str(DEFAULT_DATA_PATH), help="CSV file (default: the embedded Seattle data)")
    sweep.add_argument("--store", default=None, metavar="DIR",
                       help="the run store to add the sweep and its runs to (default $RNNLAB_STORE, else ./runs)")
    sweep.add_argument("--name", default="", metavar="TEXT", help="a name for the sweep, shown with its runs")
    sweep.add_argument("--trials", type=int, default=None, metavar="N",
                       help="how many trials (default 8; a grid: all its combinations)")
    sweep.add_argument("--search", choices=("grid", "random", "tpe"), default="random",
                       help="grid: every combination; random; tpe: Optuna's TPE (default random)")
    sweep.add_argument("--seeds", type=int, default=1, metavar="K",
                       help="train every trial with seeds 0..K-1 and score it by their mean (default 1)")
    sweep.add_argument("--workers", type=int, default=None, metavar="W",
                       help="worker processes of the local Dask cluster (default: the cores)")
    sweep.add_argument("--scheduler", default=None, metavar="ADDR",
                       help="train on a running Dask cluster (tcp://host:port) instead (default $RNNLAB_SCHEDULER)")
    _add_load_flags(sweep)
    for field in dataclasses.fields(DataSettings) + dataclasses.fields(TrainConfig):
        fixed_only = " (fixed only)" if field.name in ("features", "splits") else ""
        sweep.add_argument("--" + field.name.replace("_", "-"), default=None, metavar="VALUE",
                           help=_flag_help(field.metadata, field.default) + fixed_only)


def _print_trial(sweep, trial):
    settings = " ".join(f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"
                        for name, value in trial.params.items())
    score = f"validation MSE {trial.value:.3f}" if trial.value is not None else trial.runs[0].message
    print(f"trial {trial.number}/{sweep.trials_planned} {trial.status}: {settings or 'fixed settings'}: {score}",
          flush=True)


def _sweep(args):
    from rnnlab.cluster import get_cluster
    from rnnlab.sweep import OBJECTIVE, Sweep, parse_space

    names = [f.name for f in dataclasses.fields(DataSettings) + dataclasses.fields(TrainConfig)]
    data, train, space = parse_space({name: getattr(args, name) for name in names})
    load_options = _load_options(args)
    table = _load(args.data, load_options)  # a bad file or target is refused here, before any worker starts
    fixed = DataSettings(**{**data, "features": data["features"], "splits": tuple(data["splits"])}).validate()
    if not any(name in space for name in ("target", "features", "lookback", "horizon")):
        prepare(table, **fixed.prepare_kwargs())
    holder = get_cluster(args.scheduler, args.workers)
    where = holder.address or f"a local Dask cluster of {holder.n_workers} worker processes"
    print(f"note: training on {where}.", file=sys.stderr)
    sweep = Sweep(holder, args.store, Path(args.data).read_bytes(), space, fixed_data=data, fixed_train=train,
                  search=args.search, trials=args.trials, seeds=args.seeds, name=args.name,
                  load_options=load_options, data_file=str(Path(args.data).resolve()), data_name=Path(args.data).name,
                  on_trial=_print_trial)
    try:
        sweep.start()
        try:
            sweep.wait()
        except KeyboardInterrupt:
            sweep.stop()
            sweep.wait(120)
            raise
    finally:
        holder.close()
    print(sweep.table().drop(columns=["runs"]).to_string(index=False))
    importance = sweep.importance()
    if importance:
        print("parameter importance (Optuna fANOVA, share of the validation MSE's variance): "
              + ", ".join(f"{name} {share:.2f}" for name, share in importance.items()))
    best = sweep.best()
    if best is None:
        raise DataError(f"No trial gave a {OBJECTIVE}: {sweep.message}")
    spread = f" ± {best['std']:.3f} over {args.seeds} seeds" if best["std"] is not None else ""
    settings = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["params"].items())
    folder = sweep.store if sweep.store is not None else "runs"
    print(f"best: trial {best['trial']} ({settings or 'fixed settings'}), {OBJECTIVE} {best['value']:.3f}{spread}; "
          f"run {best['runs'][0]} in {folder}/; sweep {sweep.sweep_id}")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            _train(args, argv)
        elif args.command == "sweep":
            _sweep(args)
        else:
            {"evaluate": _evaluate, "predict": _predict, "forecast": _forecast, "backtest": _backtest,
             "inspect": _inspect}[args.command](args)
    except (DataError, WeightsError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 2
    return 0

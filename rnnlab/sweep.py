"""Seed bands and sweeps: many runs of one experiment, trained in parallel on the cluster, kept in the store.

    fixed, space = parse_space({"model": "lstm,gru", "hidden_size": "16,32,64", "lr": "1e-4:1e-2"})
    sweep = Sweep(holder, store, data, space, fixed_data=..., fixed_train=..., search="tpe", trials=12).start()
    sweep.table()              # one row per trial, live: its settings, status and validation MSE
    sweep.wait(); sweep.best(); sweep.importance()
    band(histories)            # mean, min and max per epoch of a seed band's loss curves
    metric_summary(metrics)    # mean ± standard deviation of every metric over the band's runs

A setting is written as text, as on the command line: one value fixes it; a comma list
(``lstm,gru``, ``16,32,64``) makes it a choice; ``a:b`` (``1e-4:1e-2``) a log-uniform range between
a and b (whole numbers for whole-number settings). Every setting of DataSettings and TrainConfig can
be fixed or swept, except ``features`` and ``splits``, whose own values are lists (fixed only).

Search, through Optuna's ask-and-tell interface (a trial is asked for when a worker is free, told
its result when its runs end): ``grid`` (GridSampler: every combination, each log range as
``GRID_POINTS`` log-spaced values; ``trials`` caps how many, in a seeded random order), ``random``
(RandomSampler) or ``tpe`` (TPESampler with the constant liar, so trials in flight are not asked
twice). ``seeds=K`` trains every trial with seeds 0..K−1: its value is the mean validation MSE over
them. The objective is the validation MSE (target units²) of the kept weights — never the test
split, which stays for the final comparison.

Parameter importance: Optuna's fANOVA (``FanovaImportanceEvaluator``: a random forest fitted to
(settings → validation MSE), the share of the objective's variance each setting explains); it needs
at least two finished trials with different settings.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rnnlab import store as run_store
from rnnlab.config import DataSettings, TrainConfig
from rnnlab.errors import SettingError

SEARCHES = ("grid", "random", "tpe")
GRID_POINTS = 3  # log-spaced values a range contributes to a grid
FIXED_ONLY = ("features", "splits")
OBJECTIVE = "validation MSE"


@dataclass(frozen=True)
class Choice:
    """A setting swept over a list of values."""

    values: tuple

    def describe(self) -> dict:
        return {"choices": list(self.values)}


@dataclass(frozen=True)
class LogRange:
    """A setting swept log-uniformly between ``low`` and ``high`` (whole numbers when ``integer``)."""

    low: float
    high: float
    integer: bool = False

    def describe(self) -> dict:
        return {"low": self.low, "high": self.high, "log": True, "integer": self.integer}

    def grid(self, points: int = GRID_POINTS) -> tuple:
        values = np.geomspace(self.low, self.high, points)
        if self.integer:
            return tuple(dict.fromkeys(int(round(v)) for v in values))
        return tuple(float(f"{v:.3g}") for v in values)


def _fields() -> dict:
    """{setting name: (settings class, dataclass field)} for every setting of a run."""
    return {f.name: (cls, f) for cls in (DataSettings, TrainConfig) for f in dataclasses.fields(cls)}


def _kind(field) -> type:
    """The Python type a setting's values have (str for the target, whose default is None)."""
    return type(field.default) if field.default is not None else str


def parse_value(name: str, text: str):
    """One value of setting ``name`` from its text: '32' -> 32, '1e-3' -> 0.001, 'lstm' -> 'lstm'."""
    fields = _fields()
    if name not in fields:
        raise SettingError(f"There is no setting {name!r}: choose one of {', '.join(fields)}.")
    kind = _kind(fields[name][1])
    text = text.strip()
    try:
        if kind is int:
            value = float(text)
            if not value.is_integer():
                raise ValueError
            return int(value)
        if kind is float:
            return float(text)
    except ValueError:
        raise SettingError(f"{name} takes {'whole numbers' if kind is int else 'numbers'}, not {text!r}.") from None
    return text


def parse_setting(name: str, text: str):
    """A setting's text as a fixed value, a :class:`Choice` (comma list) or a :class:`LogRange` (``a:b``)."""
    fields = _fields()
    if name not in fields:
        raise SettingError(f"There is no setting {name!r}: choose one of {', '.join(fields)}.")
    if name in FIXED_ONLY:
        raise SettingError(f"{name} is a list itself, so it can only be fixed, not swept.")
    text = str(text).strip()
    if ":" in text and "," not in text:
        low_text, _, high_text = text.partition(":")
        low, high = parse_value(name, low_text), parse_value(name, high_text)
        if isinstance(low, str):
            raise SettingError(f"{name} takes named values, so sweep it as a comma list, not as a range {text!r}.")
        if not 0 < low < high:
            raise SettingError(f"A log range needs 0 < low < high, got {text!r} for {name}.")
        return LogRange(low, high, integer=isinstance(low, int))
    values = tuple(dict.fromkeys(parse_value(name, part) for part in text.split(",") if part.strip()))
    if not values:
        raise SettingError(f"Give {name} a value, a comma list or a range like 1e-4:1e-2, not {text!r}.")
    return values[0] if len(values) == 1 else Choice(values)


def parse_space_text(text: str, fixed_data: dict | None = None, fixed_train: dict | None = None):
    """``parse_space`` for settings written one a line, ``name = values`` (the dashboard's sweep box):

        hidden_size = 16,32
        lr = 1e-4:1e-2

    Blank lines are skipped; names may use dashes or spaces for underscores (``hidden-size``). A line
    without ``=`` or a name that is no setting raises SettingError with a sentence saying what to write.
    """
    lines = [line for line in str(text).splitlines() if line.strip()]
    if not lines:
        raise SettingError("Write at least one setting to sweep, one a line, like hidden_size = 16,32.")
    texts = {}
    for line in lines:
        if "=" not in line:
            raise SettingError(f"'{line.strip()}' is not a setting line: write name = values, like hidden_size = 16,32.")
        name, values = line.split("=", 1)
        name = name.strip().replace("-", "_").replace(" ", "_")
        if name not in _fields():
            raise SettingError(f"{name!r} is not a setting: use names like hidden_size, lr, model, optimizer, "
                               "num_layers, lookback.")
        texts[name] = values.strip()
    return parse_space(texts, fixed_data, fixed_train)


def parse_space(texts: dict, fixed_data: dict | None = None, fixed_train: dict | None = None):
    """Split settings given as text into (fixed data settings, fixed training settings, swept space).

    texts: {setting name: text}; entries whose text is None are left at their defaults (or at
    ``fixed_data``/``fixed_train``). Every choice and both ends of every range are checked against
    the setting's limits now, so a bad value is refused before anything trains.
    """
    data = dict(fixed_data or DataSettings().to_dict())
    train = dict(fixed_train or TrainConfig().to_dict())
    space = {}
    for name, text in texts.items():
        if text is None:
            continue
        cls, _ = _fields()[name]
        if name in FIXED_ONLY:
            values = tuple(part.strip() for part in str(text).split(",") if part.strip()) if name == "features" \
                else tuple(float(part) for part in str(text).split(","))
            (data if cls is DataSettings else train)[name] = list(values)
            continue
        parsed = parse_setting(name, text)
        if isinstance(parsed, (Choice, LogRange)):
            space[name] = parsed
        else:
            (data if cls is DataSettings else train)[name] = parsed
    for name, parsed in space.items():
        for value in (parsed.values if isinstance(parsed, Choice) else (parsed.low, parsed.high)):
            _settings_with(data, train, {name: value})
    _settings_with(data, train, {})
    return data, train, space


def _settings_with(data: dict, train: dict, params: dict) -> tuple[DataSettings, TrainConfig]:
    """The validated settings of a trial: the fixed ones with ``params`` put in."""
    fields = _fields()
    data = {**data, **{k: v for k, v in params.items() if fields[k][0] is DataSettings}}
    train = {**train, **{k: v for k, v in params.items() if fields[k][0] is TrainConfig}}
    known = {f.name for f in dataclasses.fields(DataSettings)}
    data_settings = DataSettings(**{k: v for k, v in data.items() if k in known})
    return data_settings.validate(), TrainConfig.from_dict(train).validate()


def _distributions(space: dict, search: str) -> dict:
    import optuna

    distributions = {}
    for name, parsed in space.items():
        if isinstance(parsed, Choice) or search == "grid":
            values = parsed.values if isinstance(parsed, Choice) else parsed.grid()
            distributions[name] = optuna.distributions.CategoricalDistribution(list(values))
        elif parsed.integer:
            distributions[name] = optuna.distributions.IntDistribution(int(parsed.low), int(parsed.high), log=True)
        else:
            distributions[name] = optuna.distributions.FloatDistribution(parsed.low, parsed.high, log=True)
    return distributions


def grid_size(space: dict) -> int:
    return math.prod(len(p.values if isinstance(p, Choice) else p.grid()) for p in space.values())


def _sampler(search: str, space: dict, trials: int, seed: int):
    import optuna

    if search == "grid":
        grid = {name: list(p.values if isinstance(p, Choice) else p.grid()) for name, p in space.items()}
        return optuna.samplers.GridSampler(grid, seed=seed)
    if search == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # TPE models the results after a few random trials: a quarter of the sweep, between 3 and 10
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=min(10, max(3, trials // 4)))


# -- bands and summaries ---------------------------------------------------------------------------------------
def band(histories: list[list[dict]], column: str = "val_loss") -> pd.DataFrame:
    """Per epoch, the mean, min, max and standard deviation of ``column`` over the runs that reached it.

    Returns columns epoch, mean, min, max, std, runs (how many runs had that epoch: early stopping
    ends runs at different epochs).
    """
    rows = [(r["epoch"], r[column]) for history in histories for r in history if column in r]
    if not rows:
        return pd.DataFrame(columns=["epoch", "mean", "min", "max", "std", "runs"])
    frame = pd.DataFrame(rows, columns=["epoch", "value"])
    grouped = frame.groupby("epoch")["value"]
    out = grouped.agg(["mean", "min", "max", "std", "count"]).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out.rename(columns={"count": "runs"})


def metric_summary(metrics: list[dict], splits=("validation", "test"), row: str = "model") -> pd.DataFrame:
    """Mean ± standard deviation (n−1) of every metric of ``row`` over runs' ``metrics.json``.

    Returns one row per (split, metric): mean, std, runs.
    """
    records = []
    for split in splits:
        values: dict[str, list[float]] = {}
        for document in metrics:
            for metric, value in ((document.get(split) or {}).get(row) or {}).items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    values.setdefault(metric, []).append(float(value))
        for metric, found in values.items():
            std = float(np.std(found, ddof=1)) if len(found) > 1 else 0.0
            records.append({"split": split, "metric": metric, "mean": float(np.mean(found)), "std": std,
                            "runs": len(found)})
    return pd.DataFrame(records, columns=["split", "metric", "mean", "std", "runs"])


def param_importance(trials: pd.DataFrame, space: dict) -> dict:
    """{setting: share of the validation MSE's variance it explains} by Optuna's fANOVA, largest first.

    trials: ``Sweep.table()`` (finished trials are those with a value). {} when fewer than two finished
    trials differ in their settings (nothing to attribute).
    """
    import optuna

    names = [n for n in space if n in trials.columns]
    done = trials[trials[OBJECTIVE].notna()] if OBJECTIVE in trials else trials.iloc[0:0]
    if len(done) < 2 or not names:
        return {}
    names = [n for n in names if done[n].astype(str).nunique() > 1]
    if not names or done[OBJECTIVE].nunique() < 2:
        return {}
    distributions = _distributions({n: space[n] for n in names}, "grid_if_choice")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    for _, row in done.iterrows():
        params = {}
        for name in names:
            value = row[name]
            if isinstance(distributions[name], optuna.distributions.CategoricalDistribution):
                value = next(c for c in distributions[name].choices if str(c) == str(value))
            else:  # a grid's rounded points may fall a hair outside the range
                low, high = distributions[name].low, distributions[name].high
                value = min(max(float(value), low), high)
                if isinstance(distributions[name], optuna.distributions.IntDistribution):
                    value = int(round(value))
            params[name] = value
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions,
                                                  value=float(row[OBJECTIVE])))
    try:
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):
        return {}
    return {name: float(share) for name, share in sorted(importances.items(), key=lambda item: -item[1])}


# -- the sweep -------------------------------------------------------------------------------------------------
@dataclass
class _Trial:
    number: int
    params: dict
    optuna_trial: object
    runs: list  # ClusterRun of each seed
    status: str = "running"
    value: float | None = None
    std: float | None = None


class Sweep:
    """Trials of a search space (or one trial over seeds: a seed band) on the cluster, each run in the store.

    holder: a ``cluster.ClusterHolder``; store/owner: where the runs go; data: the CSV's bytes (or
    {"path": ...} for a file every worker can read); fixed_data / fixed_train: DataSettings and
    TrainConfig dicts the space's settings are put into; trials: how many (a grid defaults to all of
    it); seeds: runs per trial with seeds 0..seeds−1; parallel: runs in flight at once (default: the
    cluster's workers).
    """

    def __init__(self, holder, store, data, space: dict, *, fixed_data: dict, fixed_train: dict,
                 search: str = "random", trials: int | None = None, seeds: int = 1, seed: int = 0,
                 parallel: int | None = None, name: str = "", owner: str | None = None,
                 load_options: dict | None = None, data_file: str | None = None, data_name: str | None = None,
                 kind: str = "sweep", on_trial=None):
        if search not in SEARCHES:
            raise SettingError(f"Unknown search {search!r}: choose one of {', '.join(SEARCHES)}.")
        if seeds < 1:
            raise SettingError(f"seeds must be at least 1, got {seeds}.")
        if seeds > 1 and "seed" in space:
            raise SettingError("Sweep the seed or repeat each trial over seeds, not both.")
        if search == "grid":
            size = grid_size(space)
            trials = size if trials is None else min(trials, size)
        elif trials is None:
            trials = 8
        if trials < 1:
            raise SettingError(f"A sweep needs at least one trial, got {trials}.")
        self.holder, self.store, self.owner, self.space = holder, store, owner, space
        self.fixed_data, self.fixed_train = dict(fixed_data), dict(fixed_train)
        self.search, self.trials_planned, self.seeds, self.seed = search, trials, seeds, seed
        self.parallel, self.name, self.kind, self.on_trial = parallel, name, kind, on_trial
        self.load_options, self.data_file, self.data_name = load_options or {}, data_file, data_name
        self.data = data
        self.sweep_id = run_store.new_run_id()
        self.trials: list[_Trial] = []
        self.status, self.message = "queued", ""
        self.created, self.finished = run_store._now(), None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_file = None
        self.study = None

    # -- driving ---------------------------------------------------------------------------------------------
    def start(self) -> "Sweep":
        """Write the sweep into the store and start asking, submitting and telling trials in a thread."""
        path = run_store.write_sweep(self.store, self.sweep_id, self.document(), self.owner)
        self._lock_file = run_store.hold_lock(path)
        self._thread = threading.Thread(target=self._drive, name=f"rnnlab-sweep-{self.sweep_id[-6:]}", daemon=True)
        self._thread.start()
        return self

    def _drive(self):
        try:
            self._run_trials()
        except Exception as error:  # the driver must end the sweep with a sentence, never silently
            with self._lock:
                self.status, self.message = "failed", f"The sweep failed: {error}"
        finally:
            with self._lock:
                if self.status == "running":
                    stopped = self._stop.is_set()
                    self.status = "stopped" if stopped else "completed"
                    finished = sum(t.value is not None for t in self.trials)
                    self.message = (f"{'Stopped' if stopped else 'Finished'} after {len(self.trials)} of "
                                    f"{self.trials_planned} trials; {finished} gave a validation MSE.")
                self.finished = run_store._now()
            self._save()
            if self._lock_file is not None:
                self._lock_file.close()
            self._done.set()

    def _run_trials(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(direction="minimize",
                                         sampler=_sampler(self.search, self.space, self.trials_planned, self.seed))
        distributions = _distributions(self.space, self.search)
        parallel = self.parallel or max(1, len(self.holder.client.scheduler_info()["workers"]))
        data = self._shared_data()
        with self._lock:
            self.status = "running"
        self._save()
        while not self._stop.is_set():
            with self._lock:
                running = [t for t in self.trials if t.status == "running"]
                in_flight = sum(not run.done for t in running for run in t.runs)
                asked = len(self.trials)
            for trial in running:
                if all(run.done for run in trial.runs):
                    self._tell(trial)
            if asked >= self.trials_planned and not running:
                break
            if asked < self.trials_planned and in_flight + self.seeds <= max(parallel, self.seeds):
                self._ask(distributions, data)
                continue
            self._changed.wait(0.2)
            self._changed.clear()
        if self._stop.is_set():
            for trial in self.trials:
                for run in trial.runs:
                    if not run.done:
                        self.holder.stop(run.run_id)
            for trial in self.trials:
                for run in trial.runs:
                    run.wait(60)
                if trial.status == "running":
                    self._tell(trial)

    def _shared_data(self):
        """The data as every trial's task receives it: bytes scattered to the workers once."""
        if isinstance(self.data, (bytes, bytearray)):
            [future] = self.holder.client.scatter([bytes(self.data)], broadcast=True)
            return {"bytes": future, "name": self.data_name}
        return self.data

    def _ask(self, distributions: dict, data):
        optuna_trial = self.study.ask(distributions)
        params = dict(optuna_trial.params)
        data_settings, config = _settings_with(self.fixed_data, self.fixed_train, params)
        number = len(self.trials) + 1
        trial = _Trial(number, params, optuna_trial, [])
        for seed in range(self.seeds):
            trial_config = dataclasses.replace(config, seed=seed) if self.seeds > 1 else config
            settings = {"data": data_settings.to_dict(), "train": trial_config.to_dict(),
                        "data_file": self.data_file, "load": self.load_options}
            label = f"{self.name or self.kind} trial {number}" + (f" seed {seed}" if self.seeds > 1 else "")
            writer = run_store.create_run(self.store, settings, name=label, owner=self.owner, sweep=self.sweep_id,
                                          trial=number, status="queued")
            run = self.holder.submit(writer.run_id, data, data_settings.to_dict(), trial_config.to_dict(),
                                     load_options=self.load_options, writer=writer)
            run.future.add_done_callback(lambda _: self._changed.set())
            trial.runs.append(run)
        with self._lock:
            self.trials.append(trial)
        self._save()

    def _tell(self, trial: _Trial):
        import optuna

        values = []
        for run in trial.runs:
            result = run.result
            try:
                values.append(float(result.metrics["validation"]["model"]["MSE"]))
            except (AttributeError, KeyError, TypeError, ValueError):
                pass
        values = [v for v in values if math.isfinite(v)]
        with self._lock:
            if values:
                trial.value = float(np.mean(values))
                trial.std = float(np.std(values, ddof=1)) if len(values) > 1 else None
                trial.status = "stopped" if any(r.status == "stopped" for r in trial.runs) else "complete"
            else:
                trial.status = "failed"
        try:
            if values:
                self.study.tell(trial.optuna_trial, trial.value)
            else:
                self.study.tell(trial.optuna_trial, state=optuna.trial.TrialState.FAIL)
        except RuntimeError as error:
            # GridSampler calls study.stop() when the grid is used up, which only works inside
            # study.optimize; the trial's result is stored before that (optuna's _tell: finally)
            if "Study.stop" not in str(error):
                raise
        self._save()
        if self.on_trial is not None:
            self.on_trial(self, trial)

    def _save(self):
        run_store.write_sweep(self.store, self.sweep_id, self.document(), self.owner)

    # -- reading ---------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask no more trials and stop the runs in flight (each within one batch)."""
        self._stop.set()
        self._changed.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> "Sweep":
        if not self._done.wait(timeout):
            raise TimeoutError(f"The sweep {self.sweep_id} is still running after {timeout:g} s.")
        return self

    def table(self) -> pd.DataFrame:
        """One row per trial: trial, status, each swept setting, validation MSE (mean over seeds), its
        standard deviation over seeds, epochs trained, and the run ids."""
        with self._lock:
            trials = list(self.trials)
        rows = []
        for trial in trials:
            epochs = [run.snapshot()["epochs_done"] for run in trial.runs]
            rows.append({"trial": trial.number, "status": trial.status, **trial.params, OBJECTIVE: trial.value,
                         "std over seeds": trial.std, "epochs": max(epochs) if epochs else 0,
                         "runs": ",".join(run.run_id for run in trial.runs)})
        columns = ["trial", "status", *self.space, OBJECTIVE, "std over seeds", "epochs", "runs"]
        return pd.DataFrame(rows, columns=columns)

    def best(self) -> dict | None:
        """The finished trial with the lowest validation MSE: {trial, params, value, std, runs}, or None."""
        with self._lock:
            finished = [t for t in self.trials if t.value is not None]
        if not finished:
            return None
        trial = min(finished, key=lambda t: t.value)
        return {"trial": trial.number, "params": trial.params, "value": trial.value, "std": trial.std,
                "runs": [run.run_id for run in trial.runs]}

    def importance(self) -> dict:
        return param_importance(self.table(), self.space)

    def document(self) -> dict:
        """The sweep as ``sweep.json`` keeps it."""
        with self._lock:
            status, message = self.status, self.message
        table = self.table()
        return {"id": self.sweep_id, "kind": self.kind, "name": self.name, "status": status, "message": message,
                "created": self.created, "finished": self.finished, "search": self.search,
                "trials_planned": self.trials_planned, "seeds": self.seeds, "objective": OBJECTIVE,
                "space": {name: p.describe() for name, p in self.space.items()},
                "fixed": {"data": self.fixed_data, "train": self.fixed_train},
                "data_file": self.data_file, "load": self.load_options, "owner": self.owner,
                "pid": os.getpid(), "host": socket.gethostname(), "heartbeat": run_store._now(),
                "importance_method": "Optuna fANOVA (FanovaImportanceEvaluator, seed 0)",
                "trials": table.astype(object).where(table.notna(), None).to_dict("records"),
                "best": self.best()}


def seed_band(holder, store, data, data_settings: dict, config: dict, seeds: int, **options) -> Sweep:
    """The same settings trained with seeds 0..seeds−1 in parallel: a sweep of one trial (not started)."""
    return Sweep(holder, store, data, {}, fixed_data=data_settings, fixed_train=config, search="random", trials=1,
                 seeds=seeds, kind="seed band", **options)


def stored_sweep_table(document: dict) -> pd.DataFrame:
    """A sweep's trials table from its ``sweep.json`` (for a sweep of an earlier server process)."""
    space = list(document.get("space", {}))
    columns = ["trial", "status", *space, OBJECTIVE, "std over seeds", "epochs", "runs"]
    return pd.DataFrame(document.get("trials", []), columns=columns)


def stored_space(document: dict) -> dict:
    """The swept space back from a ``sweep.json`` (for :func:`param_importance`)."""
    space = {}
    for name, described in document.get("space", {}).items():
        if "choices" in described:
            space[name] = Choice(tuple(described["choices"]))
        else:
            space[name] = LogRange(described["low"], described["high"], described.get("integer", False))
    return space


def sweep_status(store, document: dict, owner: str | None = None) -> str:
    """A stored sweep's status, ``interrupted`` when it reads running but its driving process is gone."""
    status = document.get("status", "failed")
    if status in run_store.ACTIVE:
        path = run_store.sweep_dir(store, document["id"], owner)
        if not run_store.writer_alive(path, document):
            return "interrupted"
    return status


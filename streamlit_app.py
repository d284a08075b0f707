"""rnnlab dashboard: train RNN / LSTM / GRU forecasters live on daily weather.

    streamlit run streamlit_app.py      # then open http://localhost:8501

The page only wires widgets to rnnlab: settings (defaults, limits, help) come from rnnlab.config,
data loading, training (on the server's Dask worker processes), scoring, figures and weights files all live in
the package. What changes while a run trains is drawn inside one polling fragment, because in the
browser only the fragment reruns while it polls.
"""

from __future__ import annotations

import dataclasses
import re
import time

import pandas as pd
import streamlit as st

from rnnlab import figures, xray
from rnnlab.backtest import summary as backtest_summary
from rnnlab.evaluate import evaluate
from rnnlab.forecast import next_days
from rnnlab.config import DataSettings, TrainConfig, spec
from rnnlab.errors import DataError, SeriesChoiceError, WeightsError
from rnnlab.figures import unit_of
from rnnlab.runs import ACTIVE, CapacityError, RunRegistry, branch_epochs, shared_registry, split_comparable
from rnnlab.store import is_public, open_run, save_data
from rnnlab.sweep import Sweep, metric_summary, parse_space_text, seed_band
from rnnlab.tables import DATE_FORMATS, DEFAULT_DATA_PATH, default_target, load_csv
from rnnlab.weights_io import evaluate_saved_run, load_run
from rnnlab.windows import prepare

MAX_UPLOAD_MB = 10  # also server.maxUploadSize in .streamlit/config.toml
LIVE_CHART_SECONDS = 2.0  # the live charts redraw at most this often (the progress bar at every poll) ...
LIVE_CHART_MAX_SECONDS = 10.0  # ... and at least this often, however late the browser's polls come
POLL_SECONDS = 0.75  # the live panel redraws more than once a second without starving the training thread
VIEWS = ["Loss", "Predictions", "Weight change", "Gradients", "Scoreboard", "X-ray"]
XRAY_PARTS = ["Gradient check", "Gates", "Saliency", "Rewind and branch"]
EMBEDDED = "Embedded: Seattle 2012–2015"
AUTOMATIC = "automatic"  # the date format the loader finds

st.set_page_config(page_title="rnnlab · weather RNNs", page_icon="🌦️", layout="wide")


# ---------------------------------------------------------------------------------------------
# Caches: bounded in entries, and so in bytes (README, "Memory")
# ---------------------------------------------------------------------------------------------
@st.cache_data(max_entries=1)
def embedded_bytes() -> bytes:
    return DEFAULT_DATA_PATH.read_bytes()


@st.cache_data(max_entries=4, show_spinner=False)
def cached_table(raw: bytes, name: str, load: dict | None = None):
    """load: load_csv's options (where, resample, date_format) chosen in the Data section."""
    return load_csv(raw, name=name, **(load or {}))


@st.cache_resource(max_entries=8, show_spinner=False)
def cached_prepared(raw: bytes, name: str, target: str, features: tuple | None, lookback: int, horizon: int,
                    load: dict | None = None):
    """One shared, never-mutated prepared data set per data and settings: runs hold it, not copies."""
    return prepare(cached_table(raw, name, load), target=target, features=list(features) if features else None,
                   lookback=lookback, horizon=horizon)


@st.cache_data(max_entries=8, show_spinner=False)
def cached_series_figure(raw: bytes, name: str, column: str, load: dict | None = None):
    """The preview chart changes only with the data and the column; building it costs ~25 ms of Python."""
    return figures.series_figure(cached_table(raw, name, load).frame, column, unit_of(column))


# ---------------------------------------------------------------------------------------------
# Session: who this is, which run is shown, the sidebar's values
# ---------------------------------------------------------------------------------------------
OWNER_FORMAT = re.compile(r"^[A-Za-z0-9_-]{20,64}$")  # secrets.token_urlsafe(16) is 22 such characters


def session_owner() -> str:
    """An unguessable token for this browser session, kept in the URL so a refresh finds its runs again."""
    owner = st.query_params.get("owner")
    if not owner or not OWNER_FORMAT.match(owner):  # only keys of the form the server issues
        owner = RunRegistry.new_owner()
        st.query_params["owner"] = owner
    return owner


registry = shared_registry()
owner = session_owner()
# on a public deployment each session's runs live under its own unguessable key in the store
store_owner = owner if is_public() else None
if registry.cluster is not None:
    registry.cluster.start_in_background()  # the first Train does not wait for the workers to start
TRAIN_FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def run_settings(run) -> dict:
    """The sidebar values that reproduce ``run``."""
    values = {name: getattr(run.config, name) for name in TRAIN_FIELDS}
    values["clip_on"] = run.config.grad_clip > 0
    values["grad_clip"] = run.config.grad_clip or spec(TrainConfig, "grad_clip")["default"]
    values["lookback"], values["horizon"] = run.prepared.lookback, run.prepared.horizon
    return values


def widget_accepts(key: str, value) -> bool:
    """Whether the sidebar's widget for ``key`` can show ``value`` (its options, or its range in the app)."""
    settings_class = DataSettings if key in ("lookback", "horizon") else TrainConfig
    if key == "clip_on" or key not in {f.name for f in dataclasses.fields(settings_class)}:
        return True
    meta = spec(settings_class, key)
    if meta.get("kind") == "choice":
        return value in meta["choices"]
    if meta.get("choices"):
        return value in meta["choices"]
    low, high = meta.get("app_low", meta.get("low")), meta.get("app_high", meta.get("high"))
    return low is None or low <= value <= high


def load_run_settings(run) -> None:
    """Put ``run``'s settings into the sidebar (and its target and features, when its data is the current data);
    a value the sidebar cannot show (a swept learning rate between its steps, say) is left and named."""
    left = []
    for key, value in run_settings(run).items():
        if widget_accepts(key, value):
            st.session_state[key] = value
        else:
            left.append(f"{key.replace('_', ' ')} {value:g}" if isinstance(value, float) else f"{key} {value}")
    st.session_state.load_note = (f"Not loaded, as the sidebar has no such value: {', '.join(left)}. "
                                  "Branch the run to continue it with its own settings.") if left else None
    name = run.prepared.source_name
    st.session_state[f"target::{name}"] = run.prepared.target
    st.session_state[f"features::{name}"] = list(run.prepared.features)


def shown_run():
    """The run on screen; when it is gone (pruned, or a stale link) the session's newest run instead."""
    run = registry.get(owner, st.session_state.shown_run)
    if run is None:
        runs_ = registry.runs_of(owner)
        if runs_:
            run = runs_[-1]
            st.session_state.shown_run = run.run_id
    return run


WIDGET_DEFAULTS = {**{name: spec(TrainConfig, name)["default"] for name in TRAIN_FIELDS},
                   "clip_on": TrainConfig().grad_clip > 0, "lookback": spec(DataSettings, "lookback")["default"],
                   "horizon": spec(DataSettings, "horizon")["default"]}
# Streamlit forgets the value of a widget that was not drawn in the last run (the horizon while no
# data is loaded, say): the package's default comes back in its place
for key, default in WIDGET_DEFAULTS.items():
    if key not in st.session_state:
        st.session_state[key] = default
if "shown_run" not in st.session_state:
    st.session_state.shown_run = st.query_params.get("run")
    if shown_run() is not None:
        # a refresh found the run again: the sidebar shows the settings of the run on screen
        load_run_settings(shown_run())


STEP_WORDS = {"day": "days", "hour": "hours", "10 minutes": "10-minute steps", "month": "months"}


def in_steps(text: str, step_unit: str | None) -> str:
    """A label written in days, said in the data's own step ('Lookback (hours)' for hourly data)."""
    return text.replace("days", STEP_WORDS.get(step_unit or "day", "steps"))


def widget_args(settings_class, name: str, step_unit: str | None = None) -> dict:
    meta = spec(settings_class, name)
    return {"label": in_steps(meta["label"], step_unit), "help": in_steps(meta["help"], step_unit), "key": name}


# ---------------------------------------------------------------------------------------------
# Page layout: the run area comes first, so pressing Train brings progress and charts into view
# ---------------------------------------------------------------------------------------------
st.title("rnnlab · recurrent networks on daily weather")
st.caption("Set the model in the sidebar, press **Train**, and watch it learn. Every run is scored against "
           "persistence, climatology and least squares on the same days.")
run_area = st.container()
data_area = st.container()

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
raw, name, table, prepared, data_problem = None, "", None, None, None
target, horizon = None, st.session_state.horizon
has_runs = bool(registry.runs_of(owner))
with data_area:
    data_box = st.expander("Data", expanded=not has_runs)
with data_box:
    source = st.radio("Data source", [EMBEDDED, "Upload a CSV"], key="data_source", horizontal=True,
                      help="The embedded data are NOAA daily observations (data/README.md).")
    if source == EMBEDDED:
        raw, name = embedded_bytes(), DEFAULT_DATA_PATH.name
    else:
        st.caption("A weather table as services export it (CSV, or a station .txt aligned with spaces): a header "
                   "row (a preamble above it is skipped), dates in one column or as year/month/day columns, and "
                   "numeric columns such as temperatures or rain. Hourly rows become days unless you keep them; "
                   "markers like NA, --- or 9999.9 are read as missing and filled from the previous row. "
                   f"Up to {MAX_UPLOAD_MB} MB.")
        upload = st.file_uploader("Weather table", type=["csv", "txt"], key="csv_upload")
        if upload is None:
            data_problem = "Upload a CSV to train on it, or switch back to the embedded data."
            st.info(data_problem)
        elif upload.size > MAX_UPLOAD_MB * 1024 * 1024:
            data_problem = f"{upload.name} is {upload.size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_MB} MB."
            st.error(data_problem)
        else:
            raw, name = upload.getvalue(), upload.name
    load = None
    if raw is not None:
        # the user's choices for this file: which series, whether sub-daily rows become days, the date format
        series_key, resample_key, format_key = f"series::{name}", f"resample::{name}", f"date_format::{name}"
        series_column = st.session_state.get(f"series_column::{name}")
        chosen_format = st.session_state.get(format_key, AUTOMATIC)
        load = {"resample": st.session_state.get(resample_key, "daily"),
                "date_format": None if chosen_format == AUTOMATIC else chosen_format,
                "where": {series_column: st.session_state[series_key]}
                if series_column and st.session_state.get(series_key) else None}
        try:
            try:
                table = cached_table(raw, name, load)
            except SeriesChoiceError as choice:
                # several stations or cities: show the first until the user picks another in the Series box
                st.session_state[f"series_column::{name}"] = choice.column
                if st.session_state.get(series_key) not in choice.values:
                    st.session_state[series_key] = choice.values[0]
                load["where"] = {choice.column: st.session_state[series_key]}
                table = cached_table(raw, name, load)
        except DataError as error:
            data_problem = str(error)
            st.error(data_problem)
        report = table.report if table is not None else None
        pick_series, pick_resample, pick_format = st.columns(3)
        if report is not None and report.series_column and len(report.series_values) > 1:
            pick_series.selectbox(f"Series ({report.series_column})", report.series_values, key=series_key,
                                  help=f"The file holds {len(report.series_values)} series in column "
                                       f"{report.series_column}; the model learns one.")
        if (report is not None and report.sub_daily) or resample_key in st.session_state:
            pick_resample.radio("Rows", ["daily", "none"], key=resample_key, horizontal=True,
                                format_func={"daily": "aggregate to days", "none": "keep the file's step"}.get,
                                help="Hourly or 10-minute rows are averaged to days (summed for precipitation, max "
                                     "and min where the name says so); or keep the file's own step.")
        pick_format.selectbox("Date format", [AUTOMATIC] + [label for label, _ in DATE_FORMATS], key=format_key,
                              help="How the dates are written; automatic finds the one format every date fits"
                                   + (f" (here {report.date_format})." if report is not None else "."))
    if table is not None:
        summary = table.summary()
        cells = st.columns(5)
        cells[0].metric("Rows", f"{summary['rows']:,}")
        cells[1].metric("From", summary["first_date"])
        cells[2].metric("To", summary["last_date"])
        cells[3].metric("Values filled", summary["values_filled"])
        missing_label = {"day": "Missing days", "hour": "Missing hours", "month": "Missing months"}
        cells[4].metric(missing_label.get(summary["step_unit"], "Missing steps"), f"{summary['missing_days']:,}")
        with st.container(border=True, key="loader_summary"):
            st.markdown("**What the loader found**\n" + "\n".join(f"- {line}" for line in table.summary_lines()))
        for note in table.notes:
            st.caption(note)
        with st.expander("Preview the table"):
            st.dataframe(table.frame.head(200), width="stretch")
        columns = table.numeric_columns
        target_key, features_key = f"target::{name}", f"features::{name}"
        if st.session_state.get(target_key) not in columns:
            st.session_state[target_key] = default_target(table)
        st.session_state[features_key] = [f for f in st.session_state.get(features_key, []) if f in columns]
        pick_target, pick_horizon, pick_features = st.columns([1, 1, 3])
        target = pick_target.selectbox(spec(DataSettings, "target")["label"], columns, key=target_key,
                                       help="The column to forecast.")
        horizon_spec = spec(DataSettings, "horizon")
        horizon = pick_horizon.slider(in_steps(horizon_spec["label"], table.step_unit), horizon_spec["low"],
                                      horizon_spec["app_high"], key="horizon",
                                      help=in_steps(horizon_spec["help"], table.step_unit))
        features = pick_features.multiselect(
            "Features (empty = every usable column that does not leak the target)", columns, key=features_key,
            help=spec(DataSettings, "features")["help"])
        st.plotly_chart(cached_series_figure(raw, name, target, load), key="series_chart")
        try:
            prepared = cached_prepared(raw, name, target, tuple(features) or None, st.session_state.lookback, horizon,
                                       load)
            for warning in prepared.warnings:
                st.warning(warning)
            for note in prepared.notes[len(table.notes):]:
                st.caption(note)
            st.caption(f"Windows: {prepared.count('train'):,} train · {prepared.count('validation'):,} validation · "
                       f"{prepared.count('test'):,} test, using {', '.join(prepared.features)}. "
                       f"Scalers are fitted on the training {STEP_WORDS.get(table.step_unit, 'steps')} only.")
        except DataError as error:
            data_problem = str(error)
            st.error(data_problem)


def current_config() -> TrainConfig:
    s = st.session_state
    values = {name: s[name] for name in TRAIN_FIELDS}
    values["grad_clip"] = s.grad_clip if s.clip_on else 0.0
    values["seed"] = int(s.seed)
    return TrainConfig(**values)


# ---------------------------------------------------------------------------------------------
# Sidebar: Train first, then the settings, each from rnnlab.config
# ---------------------------------------------------------------------------------------------
with st.sidebar:
    training = next((r for r in registry.runs_of(owner) if r.active), None)
    train_clicked = st.button("Train", type="primary", key="train", width="stretch",
                              disabled=prepared is None or training is not None,
                              help=data_problem or (f"{training.label} is training: stop it or wait for it to end."
                                                    if training else None))
    if prepared is None:
        st.caption(f"Training needs usable data: {data_problem or 'choose data first.'}")
    elif training is not None:
        st.caption(f"{training.label} is training; Train is free again when it ends or is stopped.")
    st.header("Model")
    model_spec = spec(TrainConfig, "model")
    st.selectbox(options=model_spec["choices"], format_func=str.upper, **widget_args(TrainConfig, "model"))
    st.select_slider(options=spec(TrainConfig, "hidden_size")["choices"], **widget_args(TrainConfig, "hidden_size"))
    layers_spec = spec(TrainConfig, "num_layers")
    st.slider(min_value=layers_spec["low"], max_value=layers_spec["high"], **widget_args(TrainConfig, "num_layers"))
    lookback_spec = spec(DataSettings, "lookback")
    st.slider(min_value=lookback_spec["low"], max_value=lookback_spec["app_high"],
              **widget_args(DataSettings, "lookback", table.step_unit if table is not None else None))
    st.header("Training")
    st.select_slider(options=spec(TrainConfig, "lr")["choices"], format_func=lambda v: f"{v:g}",
                     **widget_args(TrainConfig, "lr"))
    st.selectbox(options=spec(TrainConfig, "optimizer")["choices"], **widget_args(TrainConfig, "optimizer"))
    st.select_slider(options=spec(TrainConfig, "batch_size")["choices"], **widget_args(TrainConfig, "batch_size"))
    epochs_spec = spec(TrainConfig, "epochs")
    st.slider(min_value=epochs_spec["low"], max_value=epochs_spec["app_high"], **widget_args(TrainConfig, "epochs"))
    clip_spec = spec(TrainConfig, "grad_clip")
    st.toggle("Clip gradients", key="clip_on", help=clip_spec["help"])
    st.slider(min_value=clip_spec["app_low"], max_value=clip_spec["app_high"], step=0.1,
              disabled=not st.session_state.clip_on, **widget_args(TrainConfig, "grad_clip"))
    patience_spec = spec(TrainConfig, "patience")
    st.slider(min_value=patience_spec["low"], max_value=patience_spec["app_high"],
              **widget_args(TrainConfig, "patience"))
    seed_spec = spec(TrainConfig, "seed")
    st.number_input(min_value=seed_spec["low"], max_value=seed_spec["high"], step=1,
                    **widget_args(TrainConfig, "seed"))
    st.radio(options=spec(TrainConfig, "dtype")["choices"], horizontal=True, **widget_args(TrainConfig, "dtype"))
    coverage_spec = spec(TrainConfig, "coverage")
    st.slider(min_value=coverage_spec["low"], max_value=coverage_spec["high"], step=0.01,
              **widget_args(TrainConfig, "coverage"))
    with st.expander("More optimizer settings"):
        for name_ in ("momentum", "weight_decay", "clip_value"):
            meta = spec(TrainConfig, name_)
            st.number_input(min_value=float(meta["low"]), max_value=float(meta["high"]), step=0.01,
                            format="%.4g", **widget_args(TrainConfig, name_))

start_problem = None
if train_clicked and prepared is not None:
    try:
        run = registry.start(owner, current_config(), prepared, data={"bytes": raw, "name": name, "load": load},
                             store_owner=store_owner)
        st.session_state.shown_run = run.run_id
        st.session_state.show_run = run.run_id  # the run just started is the run shown
        st.query_params["run"] = run.run_id
    except (CapacityError, DataError, ValueError) as error:
        start_problem = str(error)


# ---------------------------------------------------------------------------------------------
# The run area: one fragment, polling while any of this session's runs trains
# ---------------------------------------------------------------------------------------------
def settings_differences(run) -> list[str]:
    """What the sidebar and data choices would train differently from ``run`` (empty when they agree)."""
    differences = []
    wanted = run_settings(run)
    current = {**{n: st.session_state[n] for n in TRAIN_FIELDS}, "lookback": st.session_state.lookback,
               "horizon": horizon}
    current["grad_clip"] = st.session_state.grad_clip if st.session_state.clip_on else 0.0
    wanted["grad_clip"] = run.config.grad_clip
    for key in (*TRAIN_FIELDS, "lookback", "horizon"):
        if current[key] != wanted[key]:
            label = spec(DataSettings if key in ("lookback", "horizon") else TrainConfig, key)["label"]
            differences.append(f"{label.lower()} {wanted[key]} → {current[key]}")
    # the same bytes are the same data, whatever the file was called (the store keeps it under its hash)
    if prepared is None or prepared.source_sha256 != run.prepared.source_sha256:
        differences.append(f"data {run.prepared.source_name} → {name or 'none'}")
    elif target is not None and target != run.prepared.target:
        differences.append(f"target {run.prepared.target} → {target}")
    return differences


def draw_status(run, snap):
    """Progress and Stop while training; afterwards a banner saying how the run ended and how it did."""
    done, total = snap["epochs_done"], snap["epochs_total"]
    if snap["status"] in ACTIVE:
        progress, stop = st.columns([5, 1], vertical_alignment="center")
        last = snap["history"][-1] if snap["history"] else None
        losses = f" · train {last['train_loss']:.4f} · validation {last['val_loss']:.4f}" if last else ""
        left = f" · about {snap['remaining']:.0f} s left" if last else ""
        if snap["status"] == "queued":
            progress.progress(0.0, text=f"{run.label}: waiting for a worker process (the cluster's first run "
                                        "waits a few seconds for its workers to start)")
        else:
            progress.progress(snap["fraction"], text=f"{run.label}: epoch {done} of {total}{losses}{left}")
        # drawn inside the fragment, so it is enabled as soon as the run exists and reruns with it
        stop.button("Stop", key="stop", width="stretch", on_click=registry.stop, args=(owner, run.run_id))
    elif snap["status"] in ("diverged", "failed"):
        st.error(f"{run.label}: {snap['message']}")
    elif run.result is None:
        st.warning(f"{run.label}: {snap['message']}")
    else:
        level, sentence = run.verdict()
        getattr(st, level)(f"{run.label}: {snap['message']} ({snap['elapsed']:.1f} s). {sentence}")


def live_chart_interval(run) -> float:
    """Seconds between redraws of the live charts, paced by the browser (``figures.LivePace``): polls that
    come late mean the browser or the machine is busy, and the charts then redraw less often. With two
    sessions training on 2 cores, chart redraws were what made each page's refreshes late."""
    pace = st.session_state.setdefault("_live_pace", figures.LivePace(POLL_SECONDS, LIVE_CHART_SECONDS,
                                                                      LIVE_CHART_MAX_SECONDS))
    return pace.tick(time.monotonic(), run.run_id)


def live_figures(run, snap, interval: float) -> dict:
    """The live charts of a training run, rebuilt at most every ``interval`` seconds (and only when an
    epoch arrived): in between the page sends the same figures, which the browser does not draw again.
    Drawing four changed charts at every poll kept a browser tab busy enough to slow the training beside it."""
    history, now = snap["history"], time.monotonic()
    cached = st.session_state.get("_live_figures")
    if cached and cached["run"] == run.run_id and (cached["epochs"] == len(history) or now - cached["at"] < interval):
        return cached["figures"]
    unit = unit_of(run.prepared.target)
    live = {"loss": figures.loss_figure(history, target_unit=unit),
            "weights": figures.weight_change_figure(history),
            "gradients": figures.gradient_figure(history, run.config.grad_clip),
            "flow": figures.gradient_flow_figure(history)}
    if snap.get("live_predictions") is not None:
        p = run.prepared
        window = p.windows["validation"]
        live["predictions"] = figures.live_predictions_figure(
            p.dates_val, window["actual"][:, 0], window["persistence"][:, 0], snap["live_predictions"], p.target,
            unit, epoch=history[-1]["epoch"])
    st.session_state["_live_figures"] = {"run": run.run_id, "epochs": len(history), "at": now, "figures": live}
    return live


def draw_views(run, snap):
    """The shown run's views: every live chart at once while it trains, then the chosen view."""
    history = snap["history"]
    unit = unit_of(run.prepared.target)
    view = st.segmented_control("View", VIEWS, default="Loss", key="view", label_visibility="collapsed") or "Loss"
    if snap["status"] in ACTIVE and history and view in ("Loss", "Predictions", "Weight change", "Gradients"):
        # training runs on a worker process, so the page can afford every live chart at once
        interval = live_chart_interval(run)
        st.caption(f"Live: loss, validation forecasts, weight change and gradients at once, redrawn every "
                   f"{interval:.0f} s or so (less often when the browser falls behind); the test-day predictions, "
                   "scores and the X-ray come when the run ends.")
        live = live_figures(run, snap, interval)
        top_left, top_right = st.columns(2)
        top_left.plotly_chart(live["loss"], key="live_loss_chart")
        if "predictions" in live:
            top_right.plotly_chart(live["predictions"], key="live_predictions_chart")
        else:  # a branch before its own first epoch
            top_right.info("The validation forecasts appear when this run's first epoch ends.")
        bottom_left, bottom_right = st.columns(2)
        bottom_left.plotly_chart(live["weights"], key="live_weight_chart")
        bottom_right.plotly_chart(live["gradients"], key="live_gradient_chart")
        if view == "Gradients":
            st.plotly_chart(live["flow"], key="live_flow_chart")
        return
    if not history and snap["status"] not in ACTIVE:
        if snap["batch_losses"]:
            st.plotly_chart(figures.batch_loss_figure(snap["batch_losses"], 1, snap["message"]), key="batch_chart")
        st.info("No epoch finished, so there are no epoch charts, predictions or scores for this run.")
        return
    if view == "Loss":
        log_y = st.toggle("Log scale", key="loss_log")
        st.plotly_chart(figures.loss_figure(history, log_y=log_y, target_unit=unit, best_epoch=run.best_epoch or None,
                                            early_stopped=snap["status"] == "early_stopped"), key="loss_chart")
    elif view == "Weight change":
        st.plotly_chart(figures.weight_change_figure(history), key="weight_chart")
    elif view == "Gradients":
        st.plotly_chart(figures.gradient_figure(history, run.config.grad_clip), key="gradient_chart")
        st.plotly_chart(figures.gradient_flow_figure(history), key="flow_chart")
    elif run.result is None:
        st.info(f"The {view.lower()} {'is' if view in ('Scoreboard', 'X-ray') else 'are'} computed when the run ends.")
    elif view == "X-ray":
        draw_xray(run)
    elif view == "Predictions":
        draw_predictions(run, unit)
    else:
        draw_scoreboard(run, unit)


def next_days_forecast(run):
    """(forecast frame or None, sentence) for the days after the shown data's last date."""
    if table is None or table.sha256 != run.prepared.source_sha256:
        return None, "The forecast of the next days needs the run's own data loaded in the Data section."
    try:
        return next_days(run.model, run.prepared, table, run.result.calibration), ""
    except (DataError, ValueError) as error:
        return None, f"No forecast of the next days: {error}"


def draw_predictions(run, unit):
    """Forecast against what happened, with its interval band, per lead day; the next days at the end."""
    horizon = run.prepared.horizon
    split_column, lead_column = st.columns([2, 3])
    split = split_column.radio("Dates", ["test", "validation"], horizontal=True, key="prediction_split")
    lead = 1
    if horizon > 1:
        lead = lead_column.select_slider("Lead day", list(range(1, horizon + 1)), key="prediction_lead",
                                         help="How many days ahead the forecast was made.")
    forecast, reason = next_days_forecast(run) if split == "test" else (None, "")
    st.plotly_chart(figures.predictions_figure(run.result.predictions, run.prepared.target, unit, split, lead=lead,
                                               forecast=forecast), key="prediction_chart")
    if reason:
        st.caption(reason)
    elif forecast is not None:
        st.caption(f"The shaded segment at the end is the forecast of the {horizon} day{'s' if horizon > 1 else ''} "
                   f"after {table.frame.index[-1].date()}, with {run.config.coverage:.0%} intervals; nothing has "
                   "been observed there yet.")
    st.plotly_chart(figures.residuals_figure(run.result.predictions, run.prepared.target, unit, split, lead=lead),
                    key="residual_chart")


def draw_scoreboard(run, unit):
    """Scores over all lead days, then per lead day and the intervals' coverage, then the backtest."""
    result = run.result
    for split in ("test", "validation"):
        units = f"MSE in {unit}², RMSE and MAE in {unit}" if unit else "MSE in squared target units"
        leads = f", averaged over lead days 1–{run.prepared.horizon}" if run.prepared.horizon > 1 else ""
        st.markdown(f"**{split.capitalize()} days** ({units}{leads}; skill above 0 beats persistence)")
        st.dataframe(figures.scoreboard(result.metrics, split).style.format("{:.3f}"), key=f"score_{split}")
    if result.lead_metrics is not None:
        st.plotly_chart(figures.skill_by_lead_figure(result.lead_metrics, "test", "MSE", unit), key="lead_chart")
    intervals = result.interval_table("test")
    if len(intervals):
        st.plotly_chart(figures.coverage_figure(intervals, "test"), key="coverage_chart")
        st.markdown(f"**{result.calibration.coverage:.0%} intervals on the test days** (split-conformal, calibrated "
                    "on days the model neither trained on nor early-stopped on; width and Winkler score in "
                    f"{unit or 'target units'})")
        st.dataframe(intervals.reset_index().style.format({"coverage": "{:.1%}", "width": "{:.2f}",
                                                           "winkler": "{:.2f}", "nominal": "{:.0%}"}),
                     hide_index=True, key="interval_table")
    else:
        st.caption("No intervals: this run has no calibration block (its calibration share is 0).")
    draw_backtest(run)


@st.cache_resource(max_entries=4, show_spinner=False)
def backtest_results(key: str, _table, _data_settings, _config, folds: int):
    """Folds of a rolling-origin backtest, each an independent task on the cluster (in parallel)."""
    from rnnlab.backtest import backtest

    return backtest(_table, _data_settings, _config, folds,
                    client=registry.cluster.client if registry.cluster is not None else None)


def draw_backtest(run):
    st.markdown("**Rolling-origin backtest**: refit this run's settings at several origins over the later half "
                "of the data (expanding training window) and score each fold like the test split.")
    folds_column, button_column = st.columns([3, 1], vertical_alignment="bottom")
    folds = folds_column.slider("Folds", 2, 8, 4, key="backtest_folds")
    key = f"{run.run_id}:{folds}"
    if button_column.button("Run the backtest", key="backtest") or st.session_state.get("backtest_key") == key:
        if table is None or table.sha256 != run.prepared.source_sha256:
            st.caption("The backtest needs the run's own data loaded in the Data section.")
            return
        try:
            with st.spinner(f"Training {folds} folds on the cluster…"):
                frame = backtest_results(key, table, run.prepared.settings(), run.config, folds)
        except (DataError, ValueError) as error:
            st.error(f"{run.label}: the backtest cannot run: {error}")
            return
        st.session_state.backtest_key = key
        st.plotly_chart(figures.backtest_figure(frame, "skill"), key="backtest_chart")
        summary = backtest_summary(frame)
        st.dataframe(summary.style.format("{:.3f}"), key="backtest_summary")
        st.dataframe(frame, hide_index=True, key="backtest_folds_table")


def draw_downloads(run):
    stem = f"rnnlab-run{run.number}-{run.config.model}"
    cells = st.columns([1, 1, 1, 1, 2])  # the buttons side by side, not spread over the page
    cells[0].download_button("Weights (.safetensors)", run.download("safetensors"), f"{stem}.safetensors",
                             "application/octet-stream", key="download_safetensors", on_click="ignore")
    cells[1].download_button("Weights (.npz)", run.download("npz"), f"{stem}.npz", "application/octet-stream",
                             key="download_npz", on_click="ignore")
    cells[2].download_button("History (.csv)", run.download("history"), f"{stem}-history.csv", "text/csv",
                             key="download_history", on_click="ignore")
    cells[3].download_button("Predictions (.csv)", run.download("predictions"), f"{stem}-predictions.csv", "text/csv",
                             key="download_predictions", on_click="ignore")


def show(run_id):
    st.session_state.shown_run = run_id
    st.query_params["run"] = run_id


def draw_history(runs, run):
    st.subheader("Run history")
    st.dataframe([r.settings_row() for r in runs], width="stretch", hide_index=True, key="run_table")
    ids = [r.run_id for r in runs]
    labels = {r.run_id: r.label for r in runs}
    if st.session_state.get("show_run") not in ids:
        st.session_state.show_run = run.run_id if run is not None else ids[-1]
    st.selectbox("Show run", ids, format_func=labels.get, key="show_run",
                 on_change=lambda: show(st.session_state.show_run),
                 help="Bring a run's charts, scores and downloads back.")
    # runs the page has not seen before join the comparison; the user's own choices stay
    unseen = [i for i in ids if i not in st.session_state.get("compare_seen", [])]
    if unseen:
        kept = [i for i in st.session_state.get("compare_runs", []) if i in ids]
        st.session_state.compare_runs = list(dict.fromkeys(kept + unseen))[-4:]
        st.session_state.compare_seen = ids
    st.session_state.compare_runs = [i for i in st.session_state.compare_runs if i in ids]
    picked, log_toggle = st.columns([4, 1], vertical_alignment="bottom")
    chosen = picked.multiselect("Compare validation curves", ids, format_func=labels.get, key="compare_runs")
    log_y = log_toggle.toggle("Log scale", key="compare_log")
    reference = run if run is not None and run.run_id in chosen else next((r for r in runs if r.run_id in chosen), None)
    if reference is None:
        return
    comparable, left_out = split_comparable([r for r in runs if r.run_id in chosen], reference)
    if len(comparable) < 2:
        st.caption("Pick two or more runs on the same data, target, horizon and lookback to compare their "
                   "validation curves (one run's curve is the Loss view).")
        comparable = []
    else:
        st.plotly_chart(figures.runs_overlay_figure({r.label: r.snapshot()["history"] for r in comparable},
                                                    log_y=log_y, unit=unit_of(reference.prepared.target),
                                                    target=reference.prepared.target), key="overlay_chart")
    for label, reason in left_out.items():
        st.caption(f"Left out {label}: it {reason}, so its validation MSE is not comparable with {reference.label}.")


# ---------------------------------------------------------------------------------------------
# The X-ray of a finished run: computed on demand, at any kept epoch, never while a run trains
# ---------------------------------------------------------------------------------------------
@st.cache_resource(max_entries=16, show_spinner=False)
def model_at(run_id: str, epoch: int, _run):
    """The shown run's model with the weights of ``epoch`` (its kept weights for the best epoch)."""
    model = _run.model.copy()
    if epoch != _run.best_epoch:
        model.set_params(_run.snapshots[epoch].params)
    return model


@st.cache_resource(max_entries=16, show_spinner=False)
def result_at(run_id: str, epoch: int, _run):
    return _run.result if epoch == _run.best_epoch else evaluate(model_at(run_id, epoch, _run), _run.prepared)


@st.cache_resource(max_entries=8, show_spinner="Averaging attributions over the test days…")
def mean_attribution_at(run_id: str, epoch: int, _run):
    started = time.perf_counter()
    values = xray.mean_abs_attribution(model_at(run_id, epoch, _run), _run.prepared.inputs("test"), steps=32)
    return values, time.perf_counter() - started


def draw_xray(run):
    """Gradient check, gates, saliency, rewind and branch for the shown (finished) run."""
    epochs = sorted(run.snapshots) or [run.best_epoch]
    default = run.best_epoch if run.best_epoch in epochs else epochs[-1]
    if st.session_state.get("xray_epoch") not in epochs:
        st.session_state.xray_epoch = default
    epoch = st.select_slider("Epoch", epochs, key="xray_epoch",
                             format_func=lambda e: f"{e} (kept weights)" if e == run.best_epoch else str(e),
                             help="Rewind: every view below shows the model as it was at the end of this epoch. "
                                  "Snapshots are kept for every epoch, or evenly thinned for large models.")
    model, result = model_at(run.run_id, epoch, run), result_at(run.run_id, epoch, run)
    part = st.segmented_control("X-ray part", XRAY_PARTS, default="Gates", key="xray_part",
                                label_visibility="collapsed") or "Gates"
    prepared, unit = run.prepared, unit_of(run.prepared.target)
    if part == "Gradient check":
        st.caption("Central finite differences in float64 on 8 sampled entries of every parameter matrix, against "
                   "the analytic BPTT gradient on a real training batch of 64 windows. Green: max relative error "
                   "below 1e-6; amber: to 1e-4; red: above (the backward pass would be wrong).")
        if st.button("Run the gradient check", key="gradcheck"):
            index = list(range(min(64, prepared.count("train"))))
            report = xray.gradient_check(model, prepared.inputs("train", index), prepared.targets("train", index))
            lights = {"green": "🟢 green", "amber": "🟠 amber", "red": "🔴 red"}
            table = report.assign(status=report["status"].map(lights))
            st.dataframe(table[["param", "shape", "max_rel_error", "entries", "status"]].style.format(
                {"max_rel_error": "{:.2e}"}), hide_index=True, key="gradcheck_table")
            notes = set(report["note"].dropna()) - {""}
            st.caption(f"Checked in {report['seconds'].sum():.2f} s. " + " ".join(notes))
        return
    if part == "Rewind and branch":
        st.markdown(f"**Predictions at epoch {epoch}**, test days")
        st.plotly_chart(figures.predictions_figure(result.predictions, prepared.target, unit, "test"),
                        key="xray_predictions")
        c = current_config()
        if not run.snapshots:
            st.caption(f"{run.label} keeps no snapshots, so it cannot be branched.")
            return
        total = branch_epochs(run, epoch, c.epochs)
        st.caption(f"A branch continues {run.label} from epoch {epoch} with the sidebar's training settings "
                   f"(learning rate {c.lr:g}, {c.optimizer}, clipping {c.grad_clip or 'off'}, {total} epochs in "
                   "all); the model and data stay this run's. With unchanged settings it reproduces this run's "
                   "later epochs exactly.")
        if st.button(f"Branch from epoch {epoch}", key="branch"):
            try:
                branch = registry.start(owner, c, run.prepared, branch_of=run, from_epoch=epoch,
                                        store_owner=store_owner)
            except (CapacityError, DataError, ValueError) as error:
                st.error(str(error))
            else:
                show(branch.run_id)
                st.session_state.show_run = branch.run_id
                st.rerun()
        return
    dates = list(result.predictions.loc[result.predictions["split"] == "test", "date"])
    if "xray_day" not in st.session_state or st.session_state.xray_day not in dates:
        st.session_state.xray_day = xray.worst_day(result.predictions)
    day = st.selectbox("Day", dates, key="xray_day", format_func=lambda d: d.date().isoformat(),
                       help="The test day whose forecast is explained (default: the worst-predicted day).")
    split, index = xray.window_for_date(prepared, day, splits=("test",))
    window = prepared.inputs(split, [index])[0]
    row = result.predictions[(result.predictions["split"] == "test") & (result.predictions["date"] == day)].iloc[0]
    st.caption(f"{pd.Timestamp(day).date()}: forecast {row['predicted']:.2f} {unit}, actual {row['actual']:.2f} {unit} "
               f"(error {row['actual'] - row['predicted']:+.2f}).")
    if part == "Gates":
        states = xray.gate_states(model, window)
        for layer in range(model.num_layers):
            st.plotly_chart(figures.gates_figure(states, layer, f"Layer {layer + 1}: gates and states over the window "
                                                               f"forecasting {pd.Timestamp(day).date()}"),
                            key=f"gates_{layer}")
        if model.kind != "rnn":
            saturation = xray.gate_saturation(model, prepared.inputs("test"))
            st.plotly_chart(figures.saturation_figure(saturation), key="saturation_chart")
        return
    attributions, completeness = xray.integrated_gradients(model, window, steps=64)
    st.info("Saliency for time series is known to be unreliable on its own (Ismail et al., NeurIPS 2020, "
            "\"Benchmarking Deep Learning Interpretability in Time Series Predictions\"): read it beside the "
            "occlusion cross-check below, not as proof.")
    st.plotly_chart(figures.saliency_figure(attributions, prepared.features,
                                            f"Integrated gradients for {pd.Timestamp(day).date()} "
                                            "(baseline: the training mean, zeros after scaling)"), key="ig_chart")
    needed = completeness["steps_for_tolerance"]
    st.caption(f"Completeness: the attributions sum to {completeness['sum_of_attributions']:.4f}; prediction − "
               f"baseline prediction is {completeness['difference']:.4f} (scaled units), a gap of "
               f"{100 * completeness['relative_gap']:.2f}% with {completeness['steps']} steps"
               + (f"; {needed} steps already bring it under 1%." if needed else "."))
    st.plotly_chart(figures.occlusion_figure(xray.occlusion(model, window)), key="occlusion_chart")
    if st.toggle("Average over all test days", key="xray_mean"):
        values, seconds = mean_attribution_at(run.run_id, epoch, run)
        st.plotly_chart(figures.saliency_figure(values, prepared.features, "Mean |integrated gradient| over the "
                                                "test days", signed=False), key="mean_ig_chart")
        st.caption(f"Computed in {seconds:.1f} s over {prepared.count('test'):,} windows, 32 steps each.")


polling = any(r.active for r in registry.runs_of(owner))


@st.fragment(run_every=POLL_SECONDS if polling else None)
def run_panel():
    st.subheader("Training")
    if start_problem:
        st.error(start_problem)
    run = shown_run()
    if run is None:
        st.info("No run yet: choose the data below and the settings in the sidebar, then press **Train**.")
        return
    snap = run.snapshot()
    draw_status(run, snap)
    differences = settings_differences(run)
    if differences:
        note, load_button = st.columns([4, 1], vertical_alignment="center")
        note.caption(f"The settings on screen differ from {run.label} ({'; '.join(differences)}): Train would use "
                     "the settings on screen.")
        if load_button.button(f"Load run #{run.number}'s settings", key="load_settings", on_click=load_run_settings,
                              args=(run,)):
            st.rerun()  # redraw the sidebar with the loaded values
    if st.session_state.get("load_note"):
        st.caption(st.session_state.load_note)
    draw_views(run, snap)
    if not run.active and run.result is not None:
        draw_downloads(run)
    draw_history(registry.runs_of(owner), run)
    if polling and not any(r.active for r in registry.runs_of(owner)):
        st.rerun()  # every run ended: redraw the whole page once so polling stops


with run_area:
    run_panel()

# ---------------------------------------------------------------------------------------------
# The run store and experiments: runs kept on disk, seed bands and sweeps on the cluster
# ---------------------------------------------------------------------------------------------
@st.cache_resource(max_entries=8, show_spinner=False)
def stored_prepared(data_file: str, load_json: str, settings_json: str):
    """A stored run's data, prepared with its own settings (read from the store's copy of the file)."""
    import json

    settings = json.loads(settings_json)
    settings["features"] = tuple(settings["features"]) if settings.get("features") else None
    table_ = load_csv(data_file, **json.loads(load_json))
    return prepare(table_, **DataSettings(**settings).prepare_kwargs())


def open_stored_run(run_id: str) -> None:
    """Bring a run of the store into this session (its charts, X-ray, downloads and branches).

    A button callback: it runs before the page draws its widgets, so it may choose the shown run."""
    import json
    from pathlib import Path

    try:
        stored = open_run(registry.store, run_id, owner=store_owner)
        if stored.status in ACTIVE:
            raise ValueError("it is still training in another process; open it when it has ended")
        config = stored.config
        data_file = config.get("data_file")
        if not data_file or not Path(data_file).is_file():
            raise ValueError("its data file is not in the store (it was trained from a file elsewhere); "
                             "score it with the command line's evaluate instead")
        load_options = config.get("load") or {}
        prepared_ = stored_prepared(data_file, json.dumps(load_options, sort_keys=True),
                                    json.dumps(config.get("data", {}), sort_keys=True))
        data = {"bytes": Path(data_file).read_bytes(), "name": Path(data_file).name, "load": load_options}
        run = registry.adopt(owner, stored, prepared_, data)
    except (DataError, WeightsError, ValueError, KeyError, OSError, TypeError) as error:
        st.session_state.store_problem = f"Run {run_id} cannot be opened: {str(error).strip(chr(39)).rstrip('.')}."
        return
    st.session_state.store_problem = None
    show(run.run_id)
    st.session_state.show_run = run.run_id


def experiment_data():
    """The current data as a worker needs it, or None with the reason on screen."""
    if prepared is None:
        st.caption(f"Experiments need usable data: {data_problem or 'choose data first.'}")
        return None
    return {"bytes": raw, "name": name}


MAX_EXPERIMENTS_RUNNING = 2  # seed bands and sweeps running at once on this server (one per session)
MAX_EXPERIMENTS_KEPT = 5  # per session; their runs stay in the store


@st.cache_resource
def running_experiments() -> dict:
    """{session owner: its running experiment} for the whole server, to bound what runs at once."""
    return {}


def start_experiment(kind: str) -> None:
    s = st.session_state
    data = experiment_data()
    if data is None or registry.cluster is None:
        return
    server = running_experiments()
    for key, experiment in list(server.items()):
        if experiment.done:
            server.pop(key, None)
    if owner in server:
        s.experiment_problem = "A seed band or sweep of yours is still running: stop it or wait for it to end."
        return
    if len(server) >= MAX_EXPERIMENTS_RUNNING:
        s.experiment_problem = (f"{len(server)} seed bands or sweeps are running on this server already: "
                                "try again in a few minutes.")
        return
    try:
        options = dict(owner=store_owner, load_options=load, data_name=name,
                       data_file=str(save_data(registry.store, raw, owner=store_owner)))
        if kind == "seed band":
            experiment = seed_band(registry.cluster, registry.store, data, prepared.settings().to_dict(),
                                   current_config().to_dict(), int(s.band_seeds), **options)
        else:
            fixed_data, fixed_train, space = parse_space_text(s.sweep_space, prepared.settings().to_dict(),
                                                              current_config().to_dict())
            experiment = Sweep(registry.cluster, registry.store, data, space, fixed_data=fixed_data,
                               fixed_train=fixed_train, search=s.sweep_search, trials=int(s.sweep_trials),
                               **options)
        experiment.start()
    except (DataError, ValueError) as error:
        s.experiment_problem = str(error)
        return
    s.experiment_problem = None
    server[owner] = experiment
    experiments().insert(0, experiment)
    del experiments()[MAX_EXPERIMENTS_KEPT:]  # the oldest leave memory; their runs stay in the store


def experiments() -> list:
    """This session's seed bands and sweeps, newest first (in memory; their runs are in the store)."""
    return st.session_state.setdefault("experiments", [])


def draw_experiment(experiment) -> None:
    """A seed band as a band and mean ± std; a sweep as its live trials table, parallel coordinates and importance."""
    table_ = experiment.table()
    done = experiment.done
    runs_ = [run for trial in experiment.trials for run in trial.runs]
    finished = sum(run.done for run in runs_)
    title = f"{experiment.kind.capitalize()} {experiment.sweep_id[-6:]}: {experiment.status}"
    heading, stop_column = st.columns([5, 1], vertical_alignment="center")
    heading.markdown(f"**{title}** · {finished} of {len(runs_)} runs finished"
                     + (f" · {experiment.message}" if experiment.message else ""))
    if not done:
        stop_column.button("Stop", key=f"stop_{experiment.sweep_id}", on_click=experiment.stop,
                           help="Ask no more trials and stop the runs in flight within a batch.")
    unit = unit_of(prepared.target) if prepared is not None else ""
    if experiment.kind == "seed band":
        histories = [run.snapshot()["history"] for run in runs_]
        st.plotly_chart(figures.seed_band_figure(histories, ("val_mse",), unit=unit,
                                                 title=f"Validation MSE over {len(runs_)} seeds: mean and min–max"),
                        key=f"band_{experiment.sweep_id}")
        metrics = [run.result.metrics for run in runs_ if run.done and run.result is not None]
        if metrics:
            summary_ = metric_summary(metrics)
            summary_["mean ± std"] = [f"{m:.3f} ± {d:.3f}" for m, d in zip(summary_["mean"], summary_["std"])]
            st.dataframe(summary_[["split", "metric", "mean ± std", "runs"]], hide_index=True,
                         key=f"band_metrics_{experiment.sweep_id}")
    else:
        st.dataframe(table_.drop(columns=["runs"]), hide_index=True, key=f"trials_{experiment.sweep_id}")
        settings = list(experiment.space)
        logs = [n for n, p in experiment.space.items() if type(p).__name__ == "LogRange"]
        chart_a, chart_b = st.columns(2)
        chart_a.plotly_chart(figures.parallel_coordinates_figure(table_, settings, log_settings=logs, unit=unit),
                             key=f"parallel_{experiment.sweep_id}")
        chart_b.plotly_chart(figures.importance_figure(experiment.importance() if done else {}),
                             key=f"importance_{experiment.sweep_id}")
    trial_runs = {run.run_id: f"trial {trial.number}, seed {index}" for trial in experiment.trials
                  for index, run in enumerate(trial.runs) if run.done}
    if trial_runs:
        pick, open_column = st.columns([3, 1], vertical_alignment="bottom")
        pick.selectbox("Open a finished run as the shown run", list(trial_runs), format_func=trial_runs.get,
                                key=f"open_trial_{experiment.sweep_id}")
        if open_column.button("Open", key=f"open_{experiment.sweep_id}",
                              on_click=lambda key=f"open_trial_{experiment.sweep_id}": open_stored_run(
                                  st.session_state[key])):
            st.rerun()


experiments_running = any(not e.done for e in st.session_state.get("experiments", []))


@st.fragment(run_every=POLL_SECONDS if experiments_running else None)
def experiments_panel():
    # open while the session has experiments, so one that has just ended stays in view
    with st.expander("Experiments: seed bands and sweeps on the cluster",
                     expanded=experiments_running or bool(st.session_state.get("experiments"))):
        band_column, sweep_column = st.columns(2)
        with band_column:
            st.markdown("**Seed band**: the sidebar's settings trained with seeds 0…N−1 in parallel, to see "
                        "whether a difference between two settings is bigger than seed noise.")
            st.number_input("Seeds", 2, 16, 4, key="band_seeds")
            if st.button("Repeat with these seeds", key="start_band", on_click=start_experiment, args=("seed band",)):
                st.rerun()  # the whole page, so that the panel polls while the band trains
        with sweep_column:
            st.markdown("**Sweep**: one setting per line, a comma list for choices or `a:b` for a log range; "
                        "everything else is the sidebar's.")
            st.text_area("Settings to sweep", "model = lstm,gru\nhidden_size = 16,32\nlr = 1e-4:1e-2",
                         key="sweep_space", height=100)
            trials_column, search_column = st.columns(2)
            trials_column.number_input("Trials", 1, 64, 4, key="sweep_trials")
            search_column.selectbox("Search", ["random", "grid", "tpe"], key="sweep_search",
                                    help="TPE: Optuna's tree-structured Parzen estimator, asking for each trial "
                                         "what the finished ones suggest.")
            if st.button("Start the sweep", key="start_sweep", on_click=start_experiment, args=("sweep",)):
                st.rerun()
        if st.session_state.get("experiment_problem"):
            st.error(st.session_state.experiment_problem)
        for experiment in experiments():
            draw_experiment(experiment)
    with st.expander("Runs in the store"):
        from rnnlab.store import list_runs

        st.caption(f"Every run kept on disk in {registry.store} — from this dashboard, the command line and "
                   "earlier server processes. A run whose process died while training reads 'interrupted'.")
        stored = list_runs(registry.store, owner=store_owner)
        if st.session_state.get("store_problem"):
            st.error(st.session_state.store_problem)
        if stored:
            rows = [run.row() for run in stored[:200]]
            st.dataframe(rows, hide_index=True, key="store_table")
            by_id = {run.run_id: run for run in stored[:200]}
            pick, open_column = st.columns([3, 1], vertical_alignment="bottom")
            pick.selectbox("Open a stored run", list(by_id),
                                    format_func=lambda i: f"{i} {by_id[i].name}",
                                    key="stored_pick")
            if open_column.button("Open", key="open_stored",
                                  on_click=lambda: open_stored_run(st.session_state.stored_pick)):
                st.rerun()
    if experiments_running and not any(not e.done for e in experiments()):
        st.rerun()


if registry.store is not None:
    experiments_panel()

# ---------------------------------------------------------------------------------------------
# Evaluate a weights file on the current data
# ---------------------------------------------------------------------------------------------
with st.expander("Evaluate a weights file on the current data"):
    weights_upload = st.file_uploader("A .safetensors or .npz file saved by rnnlab", type=["safetensors", "npz"],
                                      key="weights_upload")
    if weights_upload is not None:
        if table is None:
            st.error(data_problem or "Choose data to evaluate the weights on.")
        elif weights_upload.size > MAX_UPLOAD_MB * 1024 * 1024:
            st.error(f"{weights_upload.name} is larger than {MAX_UPLOAD_MB} MB, more than any rnnlab run needs.")
        else:
            try:
                # a genuine rnnlab file under the upload limit never unpacks to more than the limit
                loaded = load_run(weights_upload.getvalue(), max_tensor_bytes=MAX_UPLOAD_MB * 1024 * 1024)
                score = evaluate_saved_run(loaded, table)
                loaded_result = score.result
                model_spec_ = loaded.metadata["model"]
                st.success(f"{weights_upload.name}: {model_spec_['kind'].upper()}, hidden {model_spec_['hidden_size']}, "
                           f"{model_spec_['num_layers']} layer(s), lookback {loaded.metadata['lookback']}, "
                           f"forecasting {loaded.target} from {', '.join(loaded.features)}.")
                for note in score.notes:
                    st.warning(note)
                st.dataframe(figures.scoreboard(loaded_result.metrics, "test").style.format("{:.3f}"),
                             key="uploaded_scores")
                st.plotly_chart(figures.predictions_figure(loaded_result.predictions, loaded.target,
                                                           unit_of(loaded.target)), key="uploaded_chart")
            except (WeightsError, DataError) as error:
                st.error(str(error))

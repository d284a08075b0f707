"""rnnlab dashboard: train RNN / LSTM / GRU forecasters live on daily weather.

    streamlit run streamlit_app.py

The page only wires widgets to rnnlab: data loading, training (in a background thread), scoring,
figures and weights files all live in the package.
"""

from __future__ import annotations

import streamlit as st

from rnnlab import figures
from rnnlab.errors import DataError, WeightsError
from rnnlab.figures import unit_of
from rnnlab.tables import DEFAULT_DATA_PATH, default_target, load_csv
from rnnlab.windows import prepare

from rnnlab.optim import OPTIMIZERS
from rnnlab.runs import ACTIVE, CapacityError, RunRegistry, shared_registry
from rnnlab.train import TrainConfig
from rnnlab.weights_io import evaluate_saved_run, load_run

MAX_UPLOAD_MB = 10  # also server.maxUploadSize in .streamlit/config.toml
LEARNING_RATES = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0]
HELP = {
    "model": "RNN: one tanh layer, forgets fast. LSTM: gated cell state, keeps signals longer. GRU: a lighter gated cell.",
    "hidden_size": "Units per recurrent layer. More units fit more patterns, train slower and overfit sooner.",
    "num_layers": "Recurrent layers stacked on each other; the head reads the top layer's last state.",
    "lookback": "How many past days each forecast sees.",
    "horizon": "Forecast this many days after the last day of the window.",
    "lr": "Step size of the optimizer (log scale). Too high diverges; too low learns nothing.",
    "optimizer": "Adam adapts a step size per weight; SGD variants take plain (momentum) steps.",
    "batch_size": "Windows per gradient step.",
    "epochs": "Passes over all training windows (early stopping may end sooner).",
    "clip_on": "Rescale the gradient when its global norm exceeds the threshold: keeps training from blowing up.",
    "grad_clip": "Largest global gradient norm allowed per step.",
    "patience": "Stop after this many epochs without a better validation loss and keep the best epoch's weights. 0 = never.",
    "seed": "Initial weights and batch order: the same seed reproduces the same run.",
    "dtype": "float64 is exact; float32 is faster.",
}

st.set_page_config(page_title="rnnlab · weather RNNs", page_icon="🌦️", layout="wide")


@st.cache_data(max_entries=1)
def embedded_bytes() -> bytes:
    return DEFAULT_DATA_PATH.read_bytes()


@st.cache_data(max_entries=8, show_spinner=False)
def cached_table(raw: bytes, name: str):
    return load_csv(raw, name=name)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_prepared(raw: bytes, name: str, target: str, features: tuple | None, lookback: int, horizon: int):
    return prepare(cached_table(raw, name), target=target, features=list(features) if features else None,
                   lookback=lookback, horizon=horizon)


@st.cache_data(max_entries=16, show_spinner=False)
def cached_series_figure(raw: bytes, name: str, column: str):
    """The preview chart changes only with the data and the column; building it costs ~25 ms of Python."""
    return figures.series_figure(cached_table(raw, name).frame, column, unit_of(column))


def session_owner() -> str:
    """An unguessable token for this browser session, kept in the URL so a refresh finds its runs again."""
    owner = st.query_params.get("owner")
    if not owner or len(owner) < 20:
        owner = RunRegistry.new_owner()
        st.query_params["owner"] = owner
    return owner


registry = shared_registry()
owner = session_owner()
if "shown_run" not in st.session_state:
    st.session_state.shown_run = st.query_params.get("run")


def shown_run():
    return registry.get(owner, st.session_state.shown_run)


# ---------------------------------------------------------------------------------------------
# Sidebar: settings
# ---------------------------------------------------------------------------------------------
with st.sidebar:
    st.header("Model")
    st.selectbox("Model", ["lstm", "gru", "rnn"], format_func=str.upper, key="model", help=HELP["model"])
    st.select_slider("Hidden size", [4, 8, 16, 32, 64, 128, 256], value=32, key="hidden_size", help=HELP["hidden_size"])
    st.slider("Layers", 1, 3, 1, key="num_layers", help=HELP["num_layers"])
    st.slider("Lookback (days)", 1, 60, 7, key="lookback", help=HELP["lookback"])
    st.header("Training")
    st.select_slider("Learning rate", LEARNING_RATES, value=1e-3, format_func=lambda v: f"{v:g}", key="lr", help=HELP["lr"])
    st.selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index("adam"), key="optimizer", help=HELP["optimizer"])
    st.select_slider("Batch size", [8, 16, 32, 64, 128, 256, 512], value=64, key="batch_size", help=HELP["batch_size"])
    st.slider("Epochs", 1, 200, 30, key="epochs", help=HELP["epochs"])
    st.toggle("Clip gradients", value=True, key="clip_on", help=HELP["clip_on"])
    st.slider("Clip at global norm", 0.1, 10.0, 1.0, step=0.1, key="grad_clip", help=HELP["grad_clip"],
              disabled=not st.session_state.clip_on)
    st.slider("Early-stopping patience (epochs)", 0, 50, 10, key="patience", help=HELP["patience"])
    st.number_input("Seed", min_value=0, max_value=2**31 - 1, value=0, step=1, key="seed", help=HELP["seed"])
    st.radio("Precision", ["float64", "float32"], key="dtype", horizontal=True, help=HELP["dtype"])
    train_column, stop_column = st.columns(2)
    train_clicked = train_column.button("Train", type="primary", key="train", width="stretch")
    running = shown_run() is not None and shown_run().active
    stop_column.button("Stop", key="stop", width="stretch", disabled=not running,
                       on_click=lambda: registry.stop(owner, st.session_state.shown_run))

st.title("rnnlab · recurrent networks on daily weather")
st.caption("Pick a model and its settings in the sidebar, press **Train**, and watch it learn. "
           "Every run is scored against persistence, climatology and least squares on the same days.")

# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------
st.subheader("Data")
source = st.radio("Data source", ["Embedded: Seattle 2012–2015", "Upload a CSV"], key="data_source", horizontal=True,
                  help="The embedded data are NOAA daily observations (data/README.md). An upload needs a date column.")
raw, name, table, data_problem = None, "", None, None
if source.startswith("Upload"):
    upload = st.file_uploader(f"Daily weather CSV (up to {MAX_UPLOAD_MB} MB)", type=["csv"], key="csv_upload")
    if upload is None:
        data_problem = "Upload a CSV to train on it, or switch back to the embedded data."
        st.info(data_problem)
    elif upload.size > MAX_UPLOAD_MB * 1024 * 1024:
        data_problem = f"{upload.name} is {upload.size / 1e6:.1f} MB; the limit is {MAX_UPLOAD_MB} MB."
        st.error(data_problem)
    else:
        raw, name = upload.getvalue(), upload.name
else:
    raw, name = embedded_bytes(), DEFAULT_DATA_PATH.name

if raw is not None:
    try:
        table = cached_table(raw, name)
    except DataError as error:
        data_problem = str(error)
        st.error(data_problem)

prepared, target, horizon = None, None, 1
if table is not None:
    summary = table.summary()
    cells = st.columns(5)
    cells[0].metric("Rows", f"{summary['rows']:,}")
    cells[1].metric("From", summary["first_date"])
    cells[2].metric("To", summary["last_date"])
    cells[3].metric("Values filled", summary["values_filled"])
    cells[4].metric("Missing days", f"{summary['missing_days']:,}")
    for note in table.notes:
        st.caption(note)
    with st.expander("Preview the table"):
        st.dataframe(table.frame.head(200), width="stretch")
    columns = table.numeric_columns
    pick_target, pick_horizon, pick_features = st.columns([1, 1, 3])
    target = pick_target.selectbox("Target", columns, index=columns.index(default_target(table)), key=f"target::{name}",
                                   help="The column to forecast.")
    horizon = pick_horizon.slider("Horizon (days ahead)", 1, 14, 1, key="horizon", help=HELP["horizon"])
    st.plotly_chart(cached_series_figure(raw, name, target), key="series_chart")
    features = pick_features.multiselect(
        "Features (empty = every column that does not leak the target)", columns, default=[], key=f"features::{name}",
        help="Input columns fed to the network each day.")
    try:
        prepared = cached_prepared(raw, name, target, tuple(features) or None, st.session_state.lookback, horizon)
        for warning in prepared.warnings:
            st.warning(warning)
        st.caption(f"Windows: {len(prepared.x_train):,} train · {len(prepared.x_val):,} validation · "
                   f"{len(prepared.x_test):,} test, using {', '.join(prepared.features)}. "
                   "Scalers are fitted on the training days only.")
    except DataError as error:
        data_problem = str(error)
        st.error(data_problem)


def current_config() -> TrainConfig:
    s = st.session_state
    return TrainConfig(model=s.model, hidden_size=s.hidden_size, num_layers=s.num_layers, lookback=s.lookback,
                       horizon=horizon, features=tuple(prepared.features), target=target, optimizer=s.optimizer,
                       lr=s.lr, batch_size=s.batch_size, epochs=s.epochs,
                       grad_clip=s.grad_clip if s.clip_on else 0.0, patience=s.patience, seed=int(s.seed), dtype=s.dtype)


if train_clicked:
    if prepared is None:
        st.error(data_problem or "Choose data before training.")
    else:
        try:
            run = registry.start(owner, current_config(), prepared)
            st.session_state.shown_run = run.run_id
            st.query_params["run"] = run.run_id
        except (CapacityError, DataError, ValueError) as error:
            st.error(str(error))

# ---------------------------------------------------------------------------------------------
# Live training and results
# ---------------------------------------------------------------------------------------------
st.subheader("Training")
run = shown_run()
polling = run is not None and run.active


VIEWS = ["Loss", "Predictions", "Weight change", "Gradients", "Scoreboard"]


def draw_run(run, snap):
    """Only the chosen view is built: every Plotly figure costs the training thread GIL time."""
    history = snap["history"]
    unit = unit_of(run.config.target)
    view = st.segmented_control("View", VIEWS, default="Loss", key="view", label_visibility="collapsed") or "Loss"
    if view == "Loss":
        log_y = st.toggle("Log scale", key="loss_log", value=False)
        st.plotly_chart(figures.loss_figure(history, log_y=log_y, target_unit=unit), key="loss_chart")
    elif view == "Weight change":
        st.plotly_chart(figures.weight_change_figure(history), key="weight_chart")
    elif view == "Gradients":
        st.plotly_chart(figures.gradient_figure(history, run.config.grad_clip), key="gradient_chart")
        st.plotly_chart(figures.gradient_flow_figure(history), key="flow_chart")
    elif run.result is None:
        st.info(f"The {view.lower()} appear{'s' if view == 'Scoreboard' else ''} when training ends.")
    elif view == "Predictions":
        split = st.radio("Dates", ["test", "validation"], horizontal=True, key="prediction_split")
        st.plotly_chart(figures.predictions_figure(run.result.predictions, run.config.target, unit, split),
                        key="prediction_chart")
        st.plotly_chart(figures.residuals_figure(run.result.predictions, run.config.target, unit, split),
                        key="residual_chart")
    else:
        for split in ("test", "validation"):
            units = f"MSE in {unit}², RMSE and MAE in {unit}" if unit else "target units"
            st.markdown(f"**{split.capitalize()} days** ({units}; skill above 0 beats persistence)")
            st.dataframe(figures.scoreboard(run.result.metrics, split).style.format("{:.3f}"), key=f"score_{split}")


POLL_SECONDS = 0.75  # charts refresh more than once a second without starving the training thread


@st.fragment(run_every=POLL_SECONDS if polling else None)
def live_panel():
    run = shown_run()
    if run is None:
        st.info("No run yet: choose settings in the sidebar and press **Train**.")
        return
    snap = run.snapshot()
    done, total = snap["epochs_done"], snap["epochs_total"]
    if snap["status"] in ACTIVE:
        last = snap["history"][-1] if snap["history"] else None
        losses = f" · train {last['train_loss']:.4f} · validation {last['val_loss']:.4f}" if last else ""
        left = f" · about {snap['remaining']:.0f} s left" if last else ""
        st.progress(done / total, text=f"{run.label}: epoch {done} of {total}{losses}{left}")
    elif snap["status"] == "diverged":
        st.error(snap["message"])
    elif snap["status"] == "failed":
        st.error(snap["message"])
    else:
        st.success(f"{run.label}: {snap['message']} ({snap['elapsed']:.1f} s)")
    draw_run(run, snap)
    if polling and not run.active:
        st.rerun()  # the run ended: redraw the whole page once so polling stops and downloads appear


live_panel()

if run is not None and not run.active and run.result is not None:
    st.subheader("Downloads")
    stem = f"rnnlab-run{run.number}-{run.config.model}"
    cells = st.columns(4)
    cells[0].download_button("Weights (.safetensors)", run.download("safetensors"), f"{stem}.safetensors",
                             "application/octet-stream", key="download_safetensors", on_click="ignore")
    cells[1].download_button("Weights (.npz)", run.download("npz"), f"{stem}.npz", "application/octet-stream",
                             key="download_npz", on_click="ignore")
    cells[2].download_button("History (.csv)", run.download("history"), f"{stem}-history.csv", "text/csv",
                             key="download_history", on_click="ignore")
    cells[3].download_button("Predictions (.csv)", run.download("predictions"), f"{stem}-predictions.csv", "text/csv",
                             key="download_predictions", on_click="ignore")

# ---------------------------------------------------------------------------------------------
# Run history
# ---------------------------------------------------------------------------------------------
runs = registry.runs_of(owner)
if runs:
    st.subheader("Run history")
    st.dataframe([r.settings_row() for r in runs], width="stretch", hide_index=True, key="run_table")
    labels = {r.label: r for r in runs}
    chosen = st.selectbox("Show run", list(labels), index=list(labels).index(run.label) if run in runs else 0,
                          key="show_run_label", help="Bring a finished run's charts and downloads back.")
    if labels[chosen].run_id != st.session_state.shown_run and not polling:
        st.session_state.shown_run = labels[chosen].run_id
        st.query_params["run"] = labels[chosen].run_id
        st.rerun()
    # runs the page has not seen before join the comparison; the user's own choices stay
    unseen = [label for label in labels if label not in st.session_state.get("compare_seen", [])]
    if unseen:
        kept = [label for label in st.session_state.get("compare_runs", []) if label in labels]
        st.session_state.compare_runs = list(dict.fromkeys(kept + unseen))[-4:]
        st.session_state.compare_seen = list(labels)
    compared = st.multiselect("Compare validation curves", list(labels), key="compare_runs")
    st.plotly_chart(figures.runs_overlay_figure({label: labels[label].snapshot()["history"] for label in compared}),
                    key="overlay_chart")

# ---------------------------------------------------------------------------------------------
# Evaluate a weights file on the current data
# ---------------------------------------------------------------------------------------------
st.subheader("Evaluate a weights file")
weights_upload = st.file_uploader("A .safetensors or .npz file saved by rnnlab", type=["safetensors", "npz"],
                                  key="weights_upload")
if weights_upload is not None:
    if table is None:
        st.error(data_problem or "Choose data to evaluate the weights on.")
    elif weights_upload.size > MAX_UPLOAD_MB * 1024 * 1024:
        st.error(f"{weights_upload.name} is larger than {MAX_UPLOAD_MB} MB, more than any rnnlab run needs.")
    else:
        try:
            loaded = load_run(weights_upload.getvalue())
            loaded_prepared, loaded_result = evaluate_saved_run(loaded, table)
            spec = loaded.metadata["model"]
            st.success(f"{weights_upload.name}: {spec['kind'].upper()}, hidden {spec['hidden_size']}, "
                       f"{spec['num_layers']} layer(s), lookback {loaded.metadata['lookback']}, "
                       f"forecasting {loaded.target} from {', '.join(loaded.features)}.")
            st.dataframe(figures.scoreboard(loaded_result.metrics, "test").style.format("{:.3f}"), key="uploaded_scores")
            st.plotly_chart(figures.predictions_figure(loaded_result.predictions, loaded.target, unit_of(loaded.target)),
                            key="uploaded_chart")
        except (WeightsError, DataError) as error:
            st.error(str(error))

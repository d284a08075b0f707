"""Issue 10's dashboard speed targets, measured in a real browser (figures only, never assertions).

1. Training in the dashboard against the CLI. A Streamlit server is started (its run store
   ``RNNLAB_STORE`` in a temporary folder) and the page is opened in Debian Chromium (Playwright);
   the sidebar sliders are set, Train is pressed and the page stays open on the live view (loss,
   validation forecasts, weight change and gradients drawn at once) until the run ends. The same settings
   are trained by ``python -m rnnlab train`` in a subprocess. The fair figure is TRAINING time: the
   sum of the per-epoch ``seconds`` each run records (the run's ``history.csv`` in the server's store,
   the CLI's ``history.csv`` in its ``--out`` folder). Wall time click-to-finished (page) and the
   CLI's process wall time (start-up, data loading and writing included) are printed beside it.
   BLAS threads: the CLI uses NumPy's default, a Dask worker of rnnlab's LocalCluster is started
   with OPENBLAS/OMP/MKL_NUM_THREADS=1. Both are read with threadpoolctl (the worker's through a
   client connected to the server's scheduler), and the CLI is run twice: with the default threads
   ("as a user runs it") and with 1 BLAS thread ("same threads as the worker").
   Settings: the defaults (LSTM h32, lookback 7, 30 epochs, patience 0) and LSTM(128, 30) 2 layers.
2. Two sessions training at once: two pages (two browser contexts) press Train within a second;
   each page records, in the browser, the time of every change of its progress bar or text for
   ``--watch`` seconds (the largest gap is the figure; target ≤ 1 s). Then, while both still train,
   a third, new visitor opens the page: time from ``goto`` to its first chart (``stPlotlyChart``
   visible; target ≤ 4 s); the two pages' gaps during that page load are printed apart, and the
   same first-chart time on an idle server for reference. All of it runs on this machine: the
   browser's tabs take CPU from the server and the workers, which a remote visitor's would not.

    python benchmarks/bench_app.py [--repeats 1] [--epochs 30] [--big-epochs 3] [--watch 10]

Needs Chromium at /usr/bin/chromium and Playwright for Python (see tests/test_browser.py).
A default run takes about 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_browser import CHROMIUM, _open, _set_slider, _slider, _stop_button  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

LIVE_CHARTS = ("live_loss_chart", "live_predictions_chart", "live_weight_chart", "live_gradient_chart")
THREADS_PROBE = ("import json, numpy, threadpoolctl; print(json.dumps([(i['internal_api'], i['num_threads']) "
                 "for i in threadpoolctl.threadpool_info()]))")

# In the page: the time (ms, Date.now) and text of every change of the progress text, seen by a
# MutationObserver (not a timer, so nothing is missed between samples and nothing is throttled).
RECORD_PROGRESS = """() => {
    window.__progress = [];
    let last = null;
    const read = () => {
        const bar = document.querySelector('[data-testid=stMain] [data-testid=stProgress]');
        const value = bar ? bar.querySelector('[role=progressbar]') : null;
        const text = bar ? bar.innerText.trim() + (value ? ' |' + value.getAttribute('aria-valuenow') : '') : '';
        if (text !== last) { last = text; window.__progress.push([Date.now(), text]); }
    };
    read();
    new MutationObserver(read).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""

COUNT_LIVE_CHARTS = """() => {
    window.__liveMax = 0;
    const keys = %s;
    const count = () => {
        const shown = keys.filter(key => {
            const chart = document.querySelector(`[data-testid=stMain] .st-key-${key} [data-testid=stPlotlyChart]`);
            return chart && chart.getBoundingClientRect().height > 0;
        }).length;
        window.__liveMax = Math.max(window.__liveMax, shown);
    };
    new MutationObserver(count).observe(document.body, {subtree: true, childList: true});
}""" % json.dumps(list(LIVE_CHARTS))

# -- the server ----------------------------------------------------------------------------------------------
def start_server(store: Path, log_path: Path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = dict(os.environ, RNNLAB_STORE=str(store))
    environment.pop("RNNLAB_PUBLIC", None)
    environment.pop("RNNLAB_SCHEDULER", None)
    log = open(log_path, "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, start_new_session=True, stdout=log, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return server, log, url
        except OSError:
            time.sleep(0.2)
    stop_server(server, log)
    raise SystemExit(f"the Streamlit server did not start; see {log_path}")


def stop_server(server, log):
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    log.close()


WORKER_PROBE = """
import json, sys
from distributed import Client
with Client(sys.argv[1], timeout=5) as client:
    answers = client.run(lambda: [(i["internal_api"], i["num_threads"])
                                  for i in __import__("threadpoolctl").threadpool_info()])
print(json.dumps(answers))
"""


def worker_threads(server_pid: int):
    """BLAS threads in the server's Dask workers: threadpoolctl run on each worker by a client (in a
    subprocess, with a time limit) connected to the scheduler of the server's LocalCluster launcher
    (``python -m rnnlab.cluster``, a child of the server)."""
    import psutil

    for child in psutil.Process(server_pid).children(recursive=True):
        try:
            if "rnnlab.cluster" not in " ".join(child.cmdline()):
                continue
            ports = sorted({c.laddr.port for c in child.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN})
        except psutil.Error:
            continue
        for port in ports:
            try:
                done = subprocess.run([sys.executable, "-c", WORKER_PROBE, f"tcp://127.0.0.1:{port}"],
                                      capture_output=True, text=True, timeout=20)
                answers = json.loads(done.stdout)
            except (subprocess.TimeoutExpired, ValueError):
                continue
            return sorted({(api, n) for pools in answers.values() for api, n in pools}), len(answers)
    return None, 0


def cli_threads(environment) -> list:
    out = subprocess.run([sys.executable, "-c", THREADS_PROBE], capture_output=True, text=True, env=environment)
    return [tuple(x) for x in json.loads(out.stdout)] if out.returncode == 0 else []


# -- one run each way ----------------------------------------------------------------------------------------
def history_seconds(folder: Path) -> list[float]:
    import pandas as pd

    return pd.read_csv(folder / "history.csv")["seconds"].astype(float).tolist()


def cli_run(settings: dict, work: Path, tag: str, environment) -> dict:
    out = work / f"cli-{tag}"
    command = [sys.executable, "-m", "rnnlab", "train", "--out", str(out), "--store", str(work / "cli-store"),
               "--hidden-size", str(settings["hidden"]), "--num-layers", str(settings["layers"]),
               "--lookback", str(settings["lookback"]), "--epochs", str(settings["epochs"]), "--patience", "0"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=environment)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"CLI run failed: {done.stderr[-2000:]}")
    seconds = history_seconds(out)
    return {"train": sum(seconds), "epochs": seconds, "wall": wall}


def store_runs(store: Path) -> set[str]:
    return {p.name for p in store.iterdir() if (p / "meta.json").is_file()} if store.is_dir() else set()


def set_settings(page, settings: dict):
    for label, key in (("Hidden size", "hidden"), ("Layers", "layers"), ("Lookback (days)", "lookback"),
                       ("Epochs", "epochs"), ("Early-stopping patience (epochs)", "patience")):
        if _slider(page, label).get_attribute("aria-valuetext") != str(settings[key]):
            _set_slider(page, label, settings[key])


def app_run(browser, url: str, store: Path, settings: dict) -> dict:
    """One run from a fresh page: settings by the sliders, Train, the live view watched to the end."""
    page = _open(browser, url, height=2400)
    try:
        set_settings(page, settings)
        before = store_runs(store)
        # the page counts the live charts it shows (a MutationObserver: no polling from here, so the
        # browser driver takes no CPU from the training worker while the run trains)
        page.evaluate(COUNT_LIVE_CHARTS)
        clicked = time.perf_counter()
        page.get_by_role("button", name="Train", exact=True).click()
        finished = page.get_by_text(re.compile(rf"Trained all {settings['epochs']} epochs")).first
        finished.wait_for(timeout=900_000)
        wall = time.perf_counter() - clicked
        live_seen = page.evaluate("() => window.__liveMax")
        problems = page.get_by_test_id("stException").count() + len(page.errors)
    finally:
        page.context.close()
    new = sorted(store_runs(store) - before)
    if len(new) != 1:
        raise RuntimeError(f"expected one new run in the store, found {new}")
    folder = store / new[0]
    deadline = time.time() + 30
    while time.time() < deadline:  # the app writes the last epoch before it shows the banner; be sure
        if json.loads((folder / "meta.json").read_text()).get("status") not in ("running", "queued"):
            break
        time.sleep(0.2)
    seconds = history_seconds(folder)
    return {"train": sum(seconds), "epochs": seconds, "wall": wall, "live_charts": live_seen, "problems": problems}


# -- two sessions at once and a new visitor ------------------------------------------------------------------
def first_chart_seconds(browser, url: str) -> float:
    context = browser.new_context(viewport={"width": 1440, "height": 1400})
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(url)
        page.get_by_test_id("stPlotlyChart").first.wait_for(state="visible", timeout=60_000)
        return time.perf_counter() - started
    finally:
        context.close()


CONCURRENT = {"hidden": 64, "layers": 1, "lookback": 14, "patience": 0}  # epochs long enough to outlast the watch


def _gaps(recorded, start: float, stop: float) -> dict:
    """Changes of the progress bar or text between start and stop (ms), and the gaps between them (s)."""
    ended = [t for t, text in recorded if t > start and not text]  # the run ended: the bar went
    until = min([stop] + ended)
    changes = [(t, text) for t, text in recorded if start <= t <= until and text]
    times = [start] + [t for t, _ in changes] + [until]
    gaps = [(b - a) / 1000 for a, b in zip(times, times[1:])]
    epochs_seen = {m.group(1) for _, text in changes if (m := re.search(r"epoch (\d+) of", text))}
    return {"changes": len(changes), "watched": (until - start) / 1000, "max_gap": max(gaps),
            "median_gap": statistics.median(gaps), "epochs_seen": len(epochs_seen), "still_training": not ended}


def concurrent(browser, url: str, store: Path, watch: float, epochs: int) -> dict:
    """Two pages train at once and are watched for ``watch`` seconds; then a new visitor opens the page
    while both still train (the pages' gaps during the visitor's page load are recorded apart)."""
    pages = [_open(browser, url, height=1400) for _ in range(2)]
    before = store_runs(store)
    try:
        for page in pages:
            set_settings(page, {**CONCURRENT, "epochs": epochs})
        for page in pages:
            page.evaluate(RECORD_PROGRESS)
        clicks = []
        for page in pages:
            page.get_by_role("button", name="Train", exact=True).click()
            clicks.append(time.perf_counter())
        time.sleep(1.0)  # both runs under way
        watch_from = time.time() * 1000
        time.sleep(watch)
        visitor_from = time.time() * 1000
        visitor = first_chart_seconds(browser, url)
        visitor_to = time.time() * 1000
        result = {"click_spread": clicks[1] - clicks[0], "visitor": visitor, "pages": [], "during_visitor": []}
        for page in pages:
            recorded = page.evaluate("() => window.__progress")
            result["pages"].append(_gaps(recorded, watch_from, visitor_from))
            result["during_visitor"].append(_gaps(recorded, visitor_from, visitor_to))
        # what the workers trained meanwhile: the runs' epochs in the store (the app writes each one)
        result["trained"] = []
        for run in sorted(store_runs(store) - before):
            try:
                seconds = history_seconds(store / run)
            except (OSError, KeyError, ValueError):
                seconds = []
            result["trained"].append({"epochs": len(seconds), "seconds": sum(seconds)})
        for page in pages:  # end both runs (best effort: the button is redrawn by every poll)
            for _ in range(5):
                try:
                    if _stop_button(page).count():
                        _stop_button(page).click(timeout=2000)
                    break
                except Exception:
                    continue
        return result
    finally:
        for page in pages:
            page.context.close()


# -- the report ----------------------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each kind per setting (medians printed)")
    parser.add_argument("--epochs", type=int, default=30, help="epochs at the default settings (default 30)")
    parser.add_argument("--big-epochs", type=int, default=3, help="epochs of LSTM(128, 30) 2 layers (default 3)")
    parser.add_argument("--watch", type=float, default=10.0, help="seconds two sessions are watched (default 10)")
    parser.add_argument("--concurrent-epochs", type=int, default=300,
                        help="epochs of each of the two concurrent runs (long enough to outlast --watch)")
    parser.add_argument("--parts", default="solo,together",
                        help="what to measure: solo (dashboard vs CLI), together (two sessions), or both")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    cases = [("defaults LSTM h32 lb7", {"hidden": 32, "layers": 1, "lookback": 7, "epochs": args.epochs, "patience": 0}),
             ("LSTM(128,30) 2 layers", {"hidden": 128, "layers": 2, "lookback": 30, "epochs": args.big_epochs,
                                        "patience": 0})]
    cli_env = dict(os.environ)
    for name in ("RNNLAB_STORE", "RNNLAB_SCHEDULER", "RNNLAB_PUBLIC"):
        cli_env.pop(name, None)
    one_env = dict(cli_env, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print(f"{os.cpu_count()} cores; BLAS threads, CLI as run: {cli_threads(cli_env)}; "
          f"CLI with *_NUM_THREADS=1: {cli_threads(one_env)}", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_app_") as tmp:
        work, store = Path(tmp), Path(tmp) / "store"
        store.mkdir()
        begun = time.perf_counter()
        server, log, url = start_server(store, work / "streamlit.log")
        figures: dict = {}
        print(f"server up in {time.perf_counter() - begun:.1f} s", flush=True)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage"])
                started = time.perf_counter()  # warm-up: the cluster's workers start with the first run
                warm = app_run(browser, url, store, {"hidden": 32, "layers": 1, "lookback": 7, "epochs": 1, "patience": 0})
                print(f"warm-up run (1 epoch, starts the LocalCluster): click to finished {warm['wall']:.1f} s "
                      f"(with page setup {time.perf_counter() - started:.1f} s)", flush=True)
                idle_visitor = first_chart_seconds(browser, url)  # a warm, idle server
                threads, n_workers = worker_threads(server.pid)
                print(f"BLAS threads in the dashboard's {n_workers} Dask workers: {threads}", flush=True)
                for label, settings in cases if "solo" in parts else []:
                    rows = {"app": [], "cli": [], "cli1": []}
                    for _ in range(args.repeats):
                        rows["cli"].append(cli_run(settings, work, "default", cli_env))
                        rows["app"].append(app_run(browser, url, store, settings))
                        rows["cli1"].append(cli_run(settings, work, "one", one_env))
                        for kind in rows:
                            r = rows[kind][-1]
                            print(f"  {label:22} {kind:4} train {r['train']:7.2f} s  wall {r['wall']:7.2f} s  epochs "
                                  f"{' '.join(f'{s:.2f}' for s in r['epochs'][:6])}{' …' if len(r['epochs']) > 6 else ''}"
                                  + (f"  live charts visible {r['live_charts']}/4, errors {r['problems']}"
                                     if kind == "app" else ""), flush=True)
                    figures[label] = {kind: {k: statistics.median(r[k] for r in runs) for k in ("train", "wall")}
                                      for kind, runs in rows.items()}
                    figures[label]["live_charts"] = min(r["live_charts"] for r in rows["app"])
                together = concurrent(browser, url, store, args.watch, args.concurrent_epochs) if "together" in parts else None
                browser.close()
        finally:
            stop_server(server, log)

    if figures:
        solo_report(figures, args.repeats)
    if together is not None:
        together_report(together, args, idle_visitor)


def solo_report(figures: dict, repeats: int) -> None:
    print()
    print(f"Dashboard (Chromium, live view) vs CLI subprocess, median of {repeats}; training = sum of per-epoch "
          "'seconds' from history.csv")
    print("  CLI = NumPy default BLAS threads; CLI1 = OPENBLAS/OMP/MKL_NUM_THREADS=1 (as the Dask worker)")
    header = (f"  {'setting':22} {'app train':>9} {'CLI train':>9} {'CLI1 train':>10} {'app/CLI':>7} {'app/CLI1':>8}"
              f" {'app wall':>8} {'CLI wall':>8} {'wall ratio':>10} {'live':>4}")
    print(header)
    for label, f in ((k, v) for k, v in figures.items()):
        app, cli, one = f["app"], f["cli"], f["cli1"]
        print(f"  {label:22} {app['train']:8.2f}s {cli['train']:8.2f}s {one['train']:9.2f}s "
              f"{app['train'] / cli['train']:6.2f}x {app['train'] / one['train']:7.2f}x "
              f"{app['wall']:7.2f}s {cli['wall']:7.2f}s {app['wall'] / cli['wall']:9.2f}x {f['live_charts']:>2}/4")
    print("  target: training ratio <= 1.10x (wall: click-to-finished vs the CLI process, start-up and writing included)")


def together_report(together: dict, args, idle_visitor: float) -> None:
    print()
    print(f"Two sessions training at once (LSTM h{CONCURRENT['hidden']} lookback {CONCURRENT['lookback']}, "
          f"{args.concurrent_epochs} epochs each, Train pressed {together['click_spread']:.2f} s apart):")
    for number, p in enumerate(together["pages"], 1):
        print(f"  page {number}, watched {p['watched']:.1f} s: progress bar or text changed {p['changes']} times "
              f"({p['epochs_seen']} epochs shown), largest gap {p['max_gap']:.2f} s, median gap {p['median_gap']:.2f} s "
              "(target largest <= 1 s)" + ("" if p["still_training"] else "  [run ended before the watch did]"))
    print(f"  new visitor goto -> first chart: {together['visitor']:.2f} s while both train (target <= 4 s); "
          f"{idle_visitor:.2f} s on the idle server")
    for number, p in enumerate(together["during_visitor"], 1):
        print(f"  page {number} during the visitor's page load ({p['watched']:.1f} s): largest gap {p['max_gap']:.2f} s, "
              f"median gap {p['median_gap']:.2f} s")
    for number, t in enumerate(together["trained"], 1):
        print(f"  run {number} in the store by the end: {t['epochs']} epochs, {t['seconds']:.2f} s of training time "
              f"({t['seconds'] / max(t['epochs'], 1) * 1000:.0f} ms an epoch)")


if __name__ == "__main__":
    main()

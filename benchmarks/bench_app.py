"""Is training in the dashboard as fast as training headless? Prints the ratio (target ≤ 1.15×).

App path: the real page under ``streamlit.testing.v1.AppTest``: press Train, then rerun the page
every ``POLL_SECONDS`` (as the live fragment does in a browser) until the run ends. The time is
the worker thread's own training-and-scoring time while the page keeps redrawing beside it in
the same process, which is where the two compete for the GIL.
CLI path: ``python -m rnnlab train`` with the same settings, in process, timed around ``main``
(it also loads the CSV and writes six files, which the app path does not).
The two alternate, and the medians are compared.

    python benchmarks/bench_app.py [--repeats 3] [--epochs 30]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnlab import cli  # noqa: E402
from rnnlab.runs import shared_registry  # noqa: E402

POLL_SECONDS = 0.75  # the page's own polling interval (streamlit_app.POLL_SECONDS)


def quiet_streamlit():
    """Calls from outside a page run (the registry lookups here) log a harmless "missing
    ScriptRunContext" warning each; keep the benchmark's output to its figures."""
    import streamlit.logger

    streamlit.logger.set_log_level("error")


def app_seconds(epochs: int) -> float:
    """Training-and-scoring seconds of one run started from the page, with the page polling beside it."""
    from streamlit.testing.v1 import AppTest

    quiet_streamlit()
    shared_registry().clear()
    page = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    page.run()
    page.slider(key="epochs").set_value(epochs)
    page.button(key="train").click().run()
    run = shared_registry().get(page.query_params["owner"], page.session_state["shown_run"])
    while run.active:
        time.sleep(POLL_SECONDS)
        page.run()
    assert run.status in ("completed", "early_stopped"), run.message
    return run.finished - run.started


def cli_seconds(epochs: int) -> float:
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        started = time.perf_counter()
        code = cli.main(["train", "--epochs", str(epochs), "--out", out])
        elapsed = time.perf_counter() - started
    assert code == 0
    return elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    app_seconds(2)  # warm-up: imports, caches, Plotly templates
    app, headless = [], []
    for _ in range(args.repeats):
        app.append(app_seconds(args.epochs))
        headless.append(cli_seconds(args.epochs))
    print(f"LSTM h32 lookback 7, {args.epochs} epochs on the embedded data, median of {args.repeats}:")
    print(f"app (page polling every {POLL_SECONDS} s) {statistics.median(app):.2f} s   "
          f"CLI {statistics.median(headless):.2f} s   ratio app/CLI {statistics.median(app) / statistics.median(headless):.2f}x "
          f"(target <= 1.15x)")
    shared_registry().clear()


if __name__ == "__main__":
    main()

"""Every command and code block of README.md, run as a reader would run it.

The README is parsed here, never copied: change a command there and this test runs the new one.

- Every fenced ```python block is executed in a fresh namespace with a temporary directory as the
  working directory. A block that imports torch needs torch (skipped without it, a failure in CI).
- Every ``python -m rnnlab ...`` command (in a code block or in backticks in the prose) runs in a
  subprocess, in README order, all in one temporary directory, so that ``evaluate`` finds the run
  ``train`` wrote just before. Each must exit 0 and write what the README says it writes.
- Every ``python benchmarks/<name>.py`` line runs with ``--help`` only: the benchmarks take minutes
  (bench_clean_weather also needs ../shared/data/clean_weather.csv), far too long for the suite, so
  the test checks that each script exists, starts, and accepts every flag the README gives it.
- The two fresh-machine commands are checked, not run (they install packages): the files they
  name exist, ``.ci/run`` runs the test command verbatim, and there are exactly two of them.
- A deployment line in the prose (``RNNLAB_PUBLIC=1 streamlit run streamlit_app.py``) is checked,
  not run: the app file exists, rnnlab reads every variable it sets, and what the README says a
  public deployment does to the run store holds. Every ``RNNLAB_*`` variable the README names is one
  rnnlab reads.
- ``pip install`` / ``apt-get install`` of an optional extra, named in the prose, must be what
  ``.ci/run`` installs, so the README and CI cannot drift apart.
- Any other line of a code block, or a command-looking span in the prose, fails the test: a new
  README command cannot slip in untested.
"""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rnnlab.config import TrainConfig, spec

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
CI_RUN = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

# The company standard: exactly these two commands set up a fresh machine.
LAUNCH_COMMAND = "pip install -r requirements.txt && streamlit run streamlit_app.py"
TEST_COMMAND = "pip install -r requirements-test.txt && python -m pytest"
COMMAND_WORDS = ("python", "python3", "pip", "pip3", "streamlit", "pytest", "apt-get", "apt", "uv", "conda")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def _python_blocks() -> list[str]:
    return [body for language, body in FENCE.findall(README) if language == "python"]


def _code_lines() -> list[tuple[int, str]]:
    """(offset in the README, line) of every shell line: indented code blocks and non-python fences.

    A line ending in a backslash is joined with the next one, as a shell would.
    """
    fences = [(m.start(), m.end(), m.group(1)) for m in FENCE.finditer(README)]
    lines, pending, start = [], "", 0
    for match in re.finditer(r"^[^\n]*$", README, re.MULTILINE):
        offset, text = match.start(), match.group()
        fence = next((language for first, last, language in fences if first <= offset < last), None)
        if fence == "python" or text.startswith("```") or not text.strip():
            continue
        if fence is None and not text.startswith("    "):
            continue
        start = start if pending else offset
        pending += text.strip()
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip() + " "
            continue
        lines.append((start, pending))
        pending = ""
    assert not pending, f"a README command ends with a backslash and nothing after it: {pending!r}"
    return lines


def _prose_commands() -> list[tuple[int, str]]:
    """(offset, text) of every `backticked` span in the prose that starts like a command (after any
    ``NAME=value`` environment settings)."""
    prose = FENCE.sub(lambda m: " " * len(m.group()), README)
    prose = re.sub(r"^    [^\n]*$", lambda m: " " * len(m.group()), prose, flags=re.MULTILINE)
    return [(m.start(1), m.group(1)) for m in re.finditer(r"`([^`\n]+)`", prose)
            if _environment(m.group(1).split())[1][:1] and _environment(m.group(1).split())[1][0] in COMMAND_WORDS]


def _environment(words: list[str]) -> tuple[dict, list[str]]:
    """({NAME: value} of the leading environment settings, the command after them)."""
    settings = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):
        name, _, value = words[0].partition("=")
        settings[name] = value
        words = words[1:]
    return settings, words


def _without_comment(line: str) -> list[str]:
    return shlex.split(line, comments=True)


DEPLOY_COMMAND = "streamlit run streamlit_app.py"


def _rule(line: str, in_prose: bool) -> str | None:
    """Which check covers a command, or None when none does."""
    words = _without_comment(line)
    if words[:3] == ["python", "-m", "rnnlab"]:
        return "cli"
    if len(words) >= 2 and words[0] == "python" and re.fullmatch(r"benchmarks/\w+\.py", words[1]):
        return "benchmark"
    if not in_prose and " ".join(words) in (LAUNCH_COMMAND, TEST_COMMAND):
        return "fresh machine"
    if in_prose and words[0] in ("pip", "apt-get") and words[1:2] == ["install"]:
        return "optional extra"
    environment, command = _environment(words)
    if in_prose and environment and " ".join(command) == DEPLOY_COMMAND:
        return "deployment"
    return None


ALL_COMMANDS = sorted([(offset, line, False) for offset, line in _code_lines()]
                      + [(offset, line, True) for offset, line in _prose_commands()])
CLI_COMMANDS = [line for _, line, in_prose in ALL_COMMANDS if _rule(line, in_prose) == "cli"]
BENCHMARK_COMMANDS = [line for _, line, in_prose in ALL_COMMANDS if _rule(line, in_prose) == "benchmark"]
EXTRA_INSTALLS = [line for _, line, in_prose in ALL_COMMANDS if _rule(line, in_prose) == "optional extra"]
DEPLOYMENTS = [line for _, line, in_prose in ALL_COMMANDS if _rule(line, in_prose) == "deployment"]


def test_every_command_in_the_readme_is_covered_by_a_rule():
    uncovered = [line for _, line, in_prose in ALL_COMMANDS if _rule(line, in_prose) is None]
    assert not uncovered, f"README commands no test runs (add a rule to tests/test_readme.py): {uncovered}"
    assert CLI_COMMANDS and BENCHMARK_COMMANDS and EXTRA_INSTALLS and DEPLOYMENTS and _python_blocks()


# ---------------------------------------------------------------- the two fresh-machine commands


def test_exactly_two_fresh_machine_commands_and_their_files_exist():
    setup = [line for _, line, in_prose in ALL_COMMANDS if not in_prose and _rule(line, in_prose) == "fresh machine"]
    installs = [line for _, line, in_prose in ALL_COMMANDS if not in_prose and line.startswith("pip")]
    assert setup == [LAUNCH_COMMAND, TEST_COMMAND]
    assert installs == setup, "the README gives exactly two commands for a fresh machine"
    for line in setup:
        words = shlex.split(line)
        named = [words[i + 1] for i, word in enumerate(words) if word in ("-r", "run")]
        assert named, line
        for name in named:
            assert (ROOT / name).is_file(), f"{line!r} names {name}, which does not exist"
    # the dashboard start itself is exercised by tests/test_browser.py (a real server, in Chromium),
    # and the test command is this very suite; the README must say where to point the browser
    after_launch = README.split(LAUNCH_COMMAND, 1)[1].split("\n\n", 2)[1]
    assert "http://localhost:8501" in after_launch


def test_ci_runs_the_readmes_test_command_verbatim():
    assert TEST_COMMAND in [line.strip() for line in CI_RUN.splitlines()]


@pytest.mark.parametrize("line", EXTRA_INSTALLS, ids=[line.split()[-1] for line in EXTRA_INSTALLS])
def test_optional_extras_are_what_ci_installs(line):
    def packages(command):  # the command without its flags and redirections
        return " ".join(word for word in shlex.split(command, comments=True) if not word.startswith(("-", ">")))

    assert any(packages(line) in packages(ci_line) for ci_line in CI_RUN.splitlines()), \
        f"{line!r} is not what .ci/run installs"


# ---------------------------------------------------------------- deployment and environment


RNNLAB_SOURCES = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "rnnlab").glob("*.py"))


def test_every_environment_variable_the_readme_names_is_read_by_rnnlab():
    names = set(re.findall(r"\bRNNLAB_[A-Z_]+\b", README))
    assert names, "the README names the environment variables that configure rnnlab"
    for name in names:
        assert f'"{name}"' in RNNLAB_SOURCES, f"the README names {name}, which rnnlab never reads"


@pytest.mark.parametrize("line", DEPLOYMENTS, ids=[line.split()[0] for line in DEPLOYMENTS])
def test_public_deployment_keeps_each_sessions_runs_apart(line, tmp_path, monkeypatch):
    from rnnlab import store

    environment, command = _environment(_without_comment(line))
    assert (ROOT / command[-1]).is_file()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert store.is_public()
    # "keeps each browser session's runs in the store under its own unguessable key
    # (`runs/sessions/<key>/`), and each session sees ... only its own runs"
    assert "`runs/sessions/<key>/`" in README
    key, other = store.new_owner_key(), store.new_owner_key()
    assert key != other and len(key) >= 20
    writer = store.create_run(tmp_path, {"data": {}, "train": {"epochs": 1}}, owner=key)
    writer.fail("a test run")
    assert writer.path.parent == tmp_path / "sessions" / key
    assert [run.run_id for run in store.list_runs(tmp_path, owner=key)] == [writer.run_id]
    assert store.list_runs(tmp_path, owner=other) == [] and store.list_runs(tmp_path) == []


# ---------------------------------------------------------------- code blocks


PYTHON_BLOCKS = _python_blocks()


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"block{i + 1}" for i in range(len(PYTHON_BLOCKS))])
def test_python_block_runs(block, tmp_path, monkeypatch):
    if re.search(r"^\s*(import torch|from torch\b)", block, re.MULTILINE):
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})


# ---------------------------------------------------------------- the command line


def _run(words, cwd):
    # as a reader runs it: the store is ./runs of the working directory, not the suite's throwaway store
    env = {name: value for name, value in os.environ.items() if name not in ("RNNLAB_STORE", "RNNLAB_PUBLIC")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *words[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _backticked_after(opening: str, until: str) -> list[str]:
    """The `names` the README lists between ``opening`` and ``until``."""
    text = README.split(opening, 1)[1].split(until, 1)[0]
    return re.findall(r"`([^`\s]+)`", text)


def _option(words, flag):
    return words[words.index(flag) + 1] if flag in words else None


def _check_cli_output(line: str, done, workdir: Path) -> None:
    """What the README promises of one command, checked on its output and the files it wrote."""
    words = _without_comment(line)
    command = words[3]
    if "--help" in words:
        assert done.stdout.startswith("usage:")
        # "each flag's default ... comes from rnnlab/config.py", and the example's note on epochs
        default_epochs = spec(TrainConfig, "epochs")["default"]
        assert f"(default {default_epochs})" in done.stdout
        assert f"the default is {default_epochs}" in README
    elif command == "train":
        out = workdir / _option(words, "--out")
        promised = [name for name in _backticked_after("`train` writes into `--out`:", "\n\n")
                    if "." in name and "/" not in name]
        written = sorted(path.name for path in out.iterdir())
        assert promised and all(name in written for name in promised), f"{line} wrote {written}"
        if "--epochs" in words:
            assert len(pd.read_csv(out / "history.csv")) <= int(_option(words, "--epochs"))
        # "It also adds the run to the run store (`--store DIR`, default `./runs`) and prints its id",
        # a folder holding the files "The run store" paragraph lists
        stored = re.search(r"stored as run (\S+) in ", done.stdout)
        assert stored, done.stdout
        folder = workdir / (_option(words, "--store") or "runs") / stored.group(1)
        in_store = [name for name in _backticked_after("**The run store.**", "Each file is written")
                    if re.fullmatch(r"\w+\.(json|csv|safetensors|npz)", name)]
        assert len(in_store) >= 8 and all((folder / name).is_file() for name in in_store), sorted(folder.iterdir())
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["status"] in ("completed", "early_stopped")
        assert meta["name"] == (_option(words, "--name") or "")
        if "--horizon" in words:  # one model forecasts every lead day 1..H
            predictions = pd.read_csv(out / "predictions.csv")
            assert sorted(set(predictions["lead"])) == list(range(1, int(_option(words, "--horizon")) + 1))
            assert predictions[["lower", "upper"]].notna().all().all()
            assert f"{float(_option(words, '--coverage')):.0%} intervals" in done.stdout
        if "--resume" in words:
            parent = pd.read_csv(workdir / _option(words, "--resume") / "history.csv")
            branch = pd.read_csv(out / "history.csv")
            start = int(_option(words, "--from-epoch"))
            # "continues RUN from the end of epoch K": the first K epochs are the parent's
            pd.testing.assert_frame_equal(branch.iloc[:start].drop(columns="seconds"),
                                          parent.iloc[:start].drop(columns="seconds"))
            assert "branching from" in done.stderr
    elif command == "inspect":
        out = workdir / _option(words, "--out")
        promised = [name for name in _backticked_after("worst-predicted test day):", "\n\n") if name.endswith((".csv", ".npz"))]
        assert promised and all((out / name).is_file() for name in promised), line
        assert "completeness" in done.stdout.lower()
    elif command == "evaluate":
        baselines = re.findall(r"^- \*\*([\w ]+)\*\*:", README, re.MULTILINE)
        assert baselines, "the README lists the scoreboard's baselines"
        for name in ["validation", "test", "model", *baselines]:
            assert name in done.stdout, f"{name!r} not in the output of {line}"
    elif command == "predict":
        predictions = pd.read_csv(workdir / _option(words, "--out"))
        assert list(predictions.columns) == _backticked_after("`predict` writes", "for every window")
        assert set(predictions["split"]) == {"train", "validation", "calibration", "test", "forecast"}
    elif command == "forecast":
        ahead = pd.read_csv(workdir / _option(words, "--out"))
        assert list(ahead.columns) == _backticked_after("`forecast` writes", "(to stdout")
        horizon = json.loads((workdir / _option(words, "--weights")).parent.joinpath("config.json").read_text())
        horizon = horizon["data"]["horizon"]
        assert list(ahead["lead"]) == list(range(1, horizon + 1))  # "one row per lead day"
        last = pd.read_csv(ROOT / "data" / "seattle_weather.csv", parse_dates=["date"])["date"].max()
        assert pd.Timestamp(ahead["date"].iloc[0]) == last + pd.Timedelta(days=1)  # "after the file's last date"
        assert (ahead["lower"] <= ahead["predicted"]).all() and (ahead["predicted"] <= ahead["upper"]).all()
    elif command == "backtest":
        folds = pd.read_csv(workdir / _option(words, "--out") / "folds.csv")
        assert len(folds) == int(_option(words, "--folds")), "folds.csv holds one row per fold"
        assert " ± " in done.stdout
    elif command == "sweep":
        best = re.search(r"^best: .*; sweep (\S+)$", done.stdout, re.MULTILINE)
        assert best, f"{line} printed no best run:\n{done.stdout}"
        assert "fANOVA" in done.stdout
        store = workdir / (_option(words, "--store") or "runs")
        trials = [json.loads(path.read_text()) for path in store.glob("*/meta.json")]
        trials = [meta for meta in trials if meta.get("sweep") == best.group(1)]
        assert len(trials) == int(_option(words, "--trials")), "every trial is a run in the store"
        assert all(meta["status"] == "completed" for meta in trials)
    else:
        pytest.fail(f"the README runs a command this test does not know what to expect of: {line}")


def test_cli_commands_run_in_readme_order(tmp_path):
    # one test, not one per command: evaluate and predict read the run that train wrote just before
    for line in CLI_COMMANDS:
        done = _run(_without_comment(line), tmp_path)
        assert done.returncode == 0, f"{line}\n{done.stderr}"
        _check_cli_output(line, done, tmp_path)


# ---------------------------------------------------------------- benchmarks


@pytest.mark.parametrize("line", BENCHMARK_COMMANDS, ids=[line.split()[1] for line in BENCHMARK_COMMANDS])
def test_benchmark_starts_and_takes_the_readmes_flags(line):
    words = _without_comment(line)
    assert (ROOT / words[1]).is_file(), f"{words[1]} does not exist"
    done = _run([*words[:2], "--help"], ROOT)
    assert done.returncode == 0, done.stderr
    for flag in (word.split("=")[0] for word in words[2:] if word.startswith("--")):
        assert flag in done.stdout, f"{words[1]} has no {flag} option"

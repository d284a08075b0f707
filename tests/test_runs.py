"""The run registry: ownership, bounded concurrency and memory, and a worker that never raises."""

import time

import pytest

from rnnlab.runs import CapacityError, RunRegistry
from rnnlab.train import TrainConfig


def _wait(run, timeout=30):
    deadline = time.time() + timeout
    while run.active and time.time() < deadline:
        time.sleep(0.02)
    assert not run.active


def test_only_the_owner_sees_and_stops_a_run(seattle_prepared):
    registry = RunRegistry()
    alice, bob = registry.new_owner(), registry.new_owner()
    run = registry.start(alice, TrainConfig(hidden_size=4, epochs=200, patience=0), seattle_prepared)
    assert registry.get(bob, run.run_id) is None and registry.runs_of(bob) == []
    assert registry.stop(bob, run.run_id) is False and run.active
    assert registry.stop(alice, run.run_id) is True
    _wait(run)
    assert run.status == "stopped"
    assert len(run.run_id) >= 20 and run.run_id != registry.start(alice, TrainConfig(hidden_size=4, epochs=1),
                                                                    seattle_prepared).run_id


def test_concurrent_training_is_bounded(seattle_prepared):
    registry = RunRegistry(max_active=2)
    owners = [registry.new_owner() for _ in range(3)]
    slow = TrainConfig(hidden_size=4, epochs=500, patience=0)
    first = registry.start(owners[0], slow, seattle_prepared)
    with pytest.raises(CapacityError, match="still training"):
        registry.start(owners[0], slow, seattle_prepared)  # one run at a time per session
    registry.start(owners[1], slow, seattle_prepared)
    with pytest.raises(CapacityError, match="2 runs are training"):
        registry.start(owners[2], slow, seattle_prepared)
    registry.clear()
    assert not first.active


def test_finished_runs_kept_are_bounded_oldest_first(seattle_prepared):
    registry = RunRegistry(max_finished_per_owner=2)
    owner = registry.new_owner()
    runs = []
    for _ in range(4):
        runs.append(registry.start(owner, TrainConfig(hidden_size=4, epochs=1), seattle_prepared))
        _wait(runs[-1])
    kept = registry.runs_of(owner)
    assert [r.number for r in kept][-2:] == [3, 4] and len(kept) <= 3  # pruned when the 4th started
    assert registry.get(owner, runs[0].run_id) is None


def test_a_failing_run_ends_with_a_sentence(seattle_prepared, monkeypatch):
    import rnnlab.runs

    class Exploding:
        def __init__(self, *args, **kwargs):
            raise MemoryError("no room for the weights")

    monkeypatch.setattr(rnnlab.runs, "Trainer", Exploding)
    registry = RunRegistry()
    run = registry.start(registry.new_owner(), TrainConfig(hidden_size=4, epochs=2), seattle_prepared)
    _wait(run)
    assert run.status == "failed" and run.message == "Training failed: no room for the weights"
    assert run.snapshot()["status"] == "failed"


def test_downloads_are_the_run_itself(seattle_prepared):
    from rnnlab.weights_io import load_run

    registry = RunRegistry()
    run = registry.start(registry.new_owner(), TrainConfig(hidden_size=4, epochs=2), seattle_prepared)
    _wait(run)
    loaded = load_run(run.download("safetensors"))
    x_test = seattle_prepared.inputs("test")
    assert (loaded.model.predict(x_test) == run.model.predict(x_test)).all()
    assert run.download("history").decode().startswith("epoch,")
    assert run.download("predictions").decode().splitlines()[0] == \
        "date,split,lead,actual,predicted,lower,upper,persistence"  # the columns of the CLI's predictions.csv


def test_labels_tell_any_two_runs_apart_and_name_what_differs(seattle_prepared):
    registry = RunRegistry()
    owner = registry.new_owner()
    first = registry.start(owner, TrainConfig(hidden_size=4, epochs=1), seattle_prepared)
    _wait(first)
    second = registry.start(owner, TrainConfig(hidden_size=4, epochs=1, dtype="float32"), seattle_prepared)
    _wait(second)
    assert first.label == "#1 LSTM h4 lb7 lr0.001"
    assert second.label == "#2 LSTM h4 lb7 lr0.001 float32"


def test_the_comparison_keeps_only_runs_scored_on_the_same_days(seattle_table, seattle_prepared):
    from rnnlab.runs import split_comparable
    from rnnlab.windows import prepare

    registry = RunRegistry(max_active=1)
    owner = registry.new_owner()
    runs = []
    for prepared in (seattle_prepared, seattle_prepared, prepare(seattle_table, target="temp_max", lookback=14),
                     prepare(seattle_table, target="temp_min"), prepare(seattle_table, target="temp_max", horizon=3)):
        runs.append(registry.start(owner, TrainConfig(hidden_size=4, epochs=1), prepared))
        _wait(runs[-1])
    kept, left_out = split_comparable(runs, runs[0])
    assert kept == runs[:2]
    assert "lookback 14 against 7" in left_out[runs[2].label]
    assert left_out[runs[3].label] == "forecasts temp_min, not temp_max"
    assert left_out[runs[4].label] == "forecasts 3 days ahead, not 1"


def test_kept_runs_are_bounded_in_bytes_oldest_first(seattle_prepared):
    registry = RunRegistry(max_bytes=1)  # smaller than any run: only the newest run survives a start
    owner = registry.new_owner()
    runs = []
    for _ in range(3):
        runs.append(registry.start(owner, TrainConfig(hidden_size=4, epochs=1), seattle_prepared))
        _wait(runs[-1])
    assert registry.runs_of(owner) == runs[-1:]  # each start forgot the finished runs before it
    roomy = RunRegistry()
    run = roomy.start(owner, TrainConfig(hidden_size=4, epochs=1), seattle_prepared)
    _wait(run)
    own = run.own_nbytes()
    assert 0 < own < 2_000_000 and roomy.nbytes() == seattle_prepared.nbytes + own
    # a run holds no windows of its own: the prepared data it trains on is shared, not copied
    assert run.prepared is seattle_prepared


def test_the_verdict_warns_when_persistence_forecasts_better(seattle_prepared):
    registry = RunRegistry()
    bad = registry.start(registry.new_owner(), TrainConfig(model="rnn", hidden_size=8, lr=1.0, grad_clip=0,
                                                           epochs=2, patience=0), seattle_prepared)
    _wait(bad)
    level, sentence = bad.verdict()
    assert level == "warning" and "worse than persistence" in sentence
    good = registry.start(registry.new_owner(), TrainConfig(), seattle_prepared)  # beats persistence (test_train)
    _wait(good, timeout=60)
    level, sentence = good.verdict()
    assert (level == "info" and "better than persistence" in sentence) or (level == "success" and "beats every baseline" in sentence)


def test_a_branch_is_a_new_run_that_continues_its_parent(seattle_prepared):
    registry = RunRegistry()
    owner = registry.new_owner()
    parent = registry.start(owner, TrainConfig(hidden_size=4, epochs=4, patience=0), seattle_prepared)
    _wait(parent)
    assert sorted(parent.snapshots) == [1, 2, 3, 4]
    same = registry.start(owner, TrainConfig(hidden_size=99, epochs=4, patience=0), seattle_prepared,
                          branch_of=parent, from_epoch=2)
    _wait(same)
    assert same.config.hidden_size == 4  # the model is the parent's, whatever the sidebar says
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in same.history] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in parent.history]
    assert same.settings_row()["branch of"] == "#1 at epoch 2" and same.number == 2
    with pytest.raises(ValueError, match="no snapshot of epoch 9"):
        registry.start(owner, TrainConfig(), seattle_prepared, branch_of=parent, from_epoch=9)

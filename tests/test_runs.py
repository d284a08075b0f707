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
        def __init__(self, *args):
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
    assert (loaded.model.predict(seattle_prepared.x_test) == run.model.predict(seattle_prepared.x_test)).all()
    assert run.download("history").decode().startswith("epoch,")
    assert run.download("predictions").decode().splitlines()[0] == "date,split,actual,predicted,persistence"

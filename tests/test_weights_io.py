"""Weights files: exact round trips in both formats, and refusals for anything else."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from rnnlab.models import create_model
from rnnlab.tables import DEFAULT_DATA_PATH, load_csv
from rnnlab.weights_io import (SavedRunScore, WeightsError, build_metadata, check_fits, evaluate_saved_run, load_run,
                               run_to_bytes, save_run)
from rnnlab.windows import prepare


class _Run:
    """What a weights file needs from a training run: a model and its training settings (opaque)."""

    def __init__(self, model, config):
        self.model, self.config = model, config


@pytest.fixture(scope="module")
def trained(seattle_prepared):
    # untrained weights round-trip just the same, and the test does not wait on (or follow changes to) the Trainer
    model = create_model("gru", seattle_prepared.n_features, 6, 2, seed=3)
    return _Run(model, {"model": "gru", "hidden_size": 6, "num_layers": 2, "epochs": 2})


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_round_trip_predicts_exactly_the_same(trained, seattle_prepared, fmt, tmp_path):
    path = save_run(tmp_path / f"run.{fmt}", trained.model, trained.config, seattle_prepared, {"test": {"MSE": 1.5}})
    run = load_run(path)
    np.testing.assert_array_equal(run.model.predict(seattle_prepared.x_test), trained.model.predict(seattle_prepared.x_test))
    assert list(run.model.params) == list(trained.model.params)
    meta = run.metadata
    assert meta["model"] == {"kind": "gru", "input_size": 4, "hidden_size": 6, "num_layers": 2, "dtype": "float64"}
    assert (meta["lookback"], meta["horizon"], meta["target"]) == (7, 1, "temp_max")
    assert meta["features"] == seattle_prepared.features
    assert meta["scaler"]["target_scale"] == seattle_prepared.target_scale
    assert meta["config"]["model"] == "gru" and meta["metrics"] == {"test": {"MSE": 1.5}}
    assert meta["data_sha256"] == seattle_prepared.source_sha256 and len(meta["data_sha256"]) == 64
    assert meta["rnnlab_version"]


def test_npz_is_loadable_without_pickle_and_keys_are_the_params(trained, seattle_prepared):
    blob = run_to_bytes(trained.model, trained.config, seattle_prepared, fmt="npz")
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        assert set(archive.files) - {"__rnnlab_metadata__"} == set(trained.model.params)


def test_safetensors_file_is_readable_by_the_safetensors_library(trained, seattle_prepared):
    from safetensors.numpy import load

    tensors = load(run_to_bytes(trained.model, trained.config, seattle_prepared))
    assert set(tensors) == set(trained.model.params)


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
def test_truncated_and_foreign_files_are_refused(trained, seattle_prepared, fmt):
    blob = run_to_bytes(trained.model, trained.config, seattle_prepared, fmt=fmt)
    for broken in (blob[: len(blob) // 2], blob[:7], b"not a weights file at all", blob[:-10]):
        with pytest.raises(WeightsError) as caught:
            load_run(broken)
        assert str(caught.value).endswith(".")


def test_files_from_elsewhere_or_tampered_are_refused(trained, seattle_prepared):
    from safetensors.numpy import save

    with pytest.raises(WeightsError, match="not saved by rnnlab"):
        load_run(save({"weight": np.zeros((2, 2))}))
    # a tensor with the wrong shape under the right name
    params = dict(trained.model.params)
    params["rnn.weight_hh_l0"] = np.zeros((3, 3))
    good = run_to_bytes(trained.model, trained.config, seattle_prepared)
    header_len = int.from_bytes(good[:8], "little")
    meta = json.loads(good[8 : 8 + header_len])["__metadata__"]
    with pytest.raises(WeightsError, match=r"rnn.weight_hh_l0 has shape \(3, 3\)"):
        load_run(save(params, metadata=meta))
    # the right shapes but another dtype than the metadata promises
    as_float32 = {k: v.astype(np.float32) for k, v in trained.model.params.items()}
    with pytest.raises(WeightsError, match="float32"):
        load_run(save(as_float32, metadata=meta))
    missing = {k: v for k, v in trained.model.params.items() if k != "head.bias"}
    with pytest.raises(WeightsError, match="missing head.bias"):
        load_run(save(missing, metadata=meta))


def test_weights_that_need_other_columns_do_not_fit(trained, seattle_prepared, clean_weather_path):
    run = load_run(run_to_bytes(trained.model, trained.config, seattle_prepared))
    with pytest.raises(WeightsError, match="temp_max"):
        check_fits(run, load_csv(clean_weather_path))


def test_unknown_suffix_is_refused(trained, seattle_prepared, tmp_path):
    with pytest.raises(WeightsError, match="safetensors or .npz"):
        save_run(tmp_path / "run.pkl", trained.model, trained.config, seattle_prepared)


# -- scoring a weights file on data: which days the model already saw -------------------------------------------
def _csv_rows(first: str, last: str) -> bytes:
    """The embedded data's rows from ``first`` to ``last`` (inclusive) as a CSV: the same days, other bytes."""
    lines = DEFAULT_DATA_PATH.read_text().splitlines()
    kept = [line for line in lines[1:] if first.replace("-", "/") <= line[:10] <= last.replace("-", "/")]
    return ("\n".join([lines[0], *kept]) + "\n").encode()


@pytest.fixture(scope="module")
def saved(trained, seattle_prepared):
    return load_run(run_to_bytes(trained.model, trained.config, seattle_prepared))


def test_the_split_shares_and_training_days_are_saved(saved, seattle_prepared):
    assert saved.metadata["splits"] == [0.6, 0.15] and saved.metadata["calibration"] == 0.1
    index = seattle_prepared.train_frame.index
    assert saved.metadata["train_span"] == ["2012-01-01", "2014-05-26"] == [str(index[0].date()), str(index[-1].date())]


def test_on_its_own_data_a_run_scores_without_notes(saved, seattle_table):
    score = evaluate_saved_run(saved, seattle_table)
    assert isinstance(score, SavedRunScore)
    assert score.notes == [] and score.same_data is True
    assert score.overlap == {"validation": 0, "test": 0}
    assert set(score.result.metrics.index.get_level_values("split")) == {"validation", "test"}


def test_other_data_inside_the_training_days_says_how_many_days_are_not_a_fair_test(saved):
    # 2012-01-01 .. 2014-09-30 split 60/15/10/15: validation ends before 2014-05-26, test straddles it
    table = load_csv(_csv_rows("2012-01-01", "2014-09-30"), name="partial.csv")
    score = evaluate_saved_run(saved, table)
    test_dates = score.prepared.windows["test"]["dates"]
    inside = int((test_dates <= pd.Timestamp("2014-05-26")).sum())
    assert 0 < inside < len(test_dates)
    assert score.same_data is False
    assert score.overlap == {"validation": len(score.prepared.windows["validation"]["dates"]), "test": inside}
    assert score.notes[0].startswith("These weights were trained on seattle_weather.csv; this is different data")
    assert (f"{inside} of the {len(test_dates)} test days lie inside the days the model trained on "
            f"(2012-01-01 to 2014-05-26): their scores are not a fair test.") in score.notes
    assert any(note.startswith(f"{score.overlap['validation']} of the") for note in score.notes)


def test_other_data_after_the_training_days_notes_only_that_the_data_differ(saved):
    table = load_csv(_csv_rows("2014-10-20", "2015-12-31"), name="later.csv")
    score = evaluate_saved_run(saved, table)
    assert score.same_data is False and score.overlap == {"validation": 0, "test": 0}
    assert score.notes == ["These weights were trained on seattle_weather.csv; this is different data, so the scores "
                           "show how the model carries over to it."]


def test_the_saved_split_shares_are_used(trained, seattle_table):
    prepared = prepare(seattle_table, target="temp_max", lookback=7, horizon=1, splits=(0.6, 0.2))
    run = load_run(run_to_bytes(trained.model, trained.config, prepared))
    score = evaluate_saved_run(run, seattle_table)
    assert score.prepared.splits == (0.6, 0.2)
    assert list(score.prepared.windows["test"]["dates"]) == list(prepared.windows["test"]["dates"])
    assert score.notes == [] and score.overlap == {"validation": 0, "test": 0}


def _older_file(trained, prepared, drop=("splits", "train_span")):
    from safetensors.numpy import save

    metadata = {k: v for k, v in build_metadata(trained.model, trained.config, prepared).items() if k not in drop}
    return load_run(save(dict(trained.model.params), metadata={"rnnlab": json.dumps(metadata)}))


def test_older_files_without_training_days_load_and_say_the_check_could_not_be_made(trained, seattle_prepared,
                                                                                    seattle_table):
    older = _older_file(trained, seattle_prepared)
    same = evaluate_saved_run(older, seattle_table)
    assert same.same_data is True and same.notes == [] and same.overlap == {}
    assert same.prepared.splits == (0.7, 0.15)  # what every rnnlab used before the shares were saved
    other = evaluate_saved_run(older, load_csv(_csv_rows("2012-01-01", "2013-12-31"), name="two_years.csv"))
    assert other.same_data is False and other.overlap == {}
    assert other.notes == ["These weights were trained on seattle_weather.csv; this is different data, and the file "
                           "(from an older rnnlab) does not record its training days, so whether these validation "
                           "and test days were among them could not be checked."]
    anonymous = evaluate_saved_run(_older_file(trained, seattle_prepared, drop=("data_sha256", "data_name")),
                                   seattle_table)
    assert anonymous.same_data is None and "does not record which data it was trained on" in anonymous.notes[0]

"""Weights files: exact round trips in both formats, and refusals for anything else."""

import io
import json

import numpy as np
import pytest

from rnnlab.tables import load_csv
from rnnlab.train import TrainConfig, Trainer
from rnnlab.weights_io import WeightsError, check_fits, load_run, run_to_bytes, save_run


@pytest.fixture(scope="module")
def trained(seattle_prepared):
    trainer = Trainer(TrainConfig(model="gru", hidden_size=6, num_layers=2, epochs=2), seattle_prepared).run()
    return trainer


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

"""Weights files from strangers: zip bombs, lying headers and malformed metadata are refused in one
sentence, by the API and by the CLI, without reading what the headers do not allow."""

import io
import json
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from rnnlab import cli
from rnnlab.models import create_model
from rnnlab.tables import DEFAULT_DATA_PATH
from rnnlab.weights_io import MAX_TENSOR_BYTES, WeightsError, build_metadata, load_run

BOMB_MB = 50  # unpacked size of the crafted members (under the size cap, so the header check refuses them); compressed, about 50 KB
MEMORY_BUDGET = 20 * 2**20  # what refusing a bomb may allocate, far below what the bomb would unpack to
CONFIG = {"model": "lstm", "hidden_size": 5, "epochs": 1}
DELETE = object()  # marks a metadata field to remove instead of replace


@pytest.fixture(scope="module")
def model(seattle_prepared):
    return create_model("lstm", seattle_prepared.n_features, 5, 2, seed=1)


@pytest.fixture(scope="module")
def metadata(model, seattle_prepared):
    return build_metadata(model, CONFIG, seattle_prepared)


def _safetensors(tensors, metadata_text):
    from safetensors.numpy import save

    return save(tensors, metadata={"rnnlab": metadata_text})


def _npz(tensors, metadata_text):
    buffer = io.BytesIO()
    np.savez(buffer, **tensors, __rnnlab_metadata__=np.array(metadata_text))
    return buffer.getvalue()


WRITERS = {"safetensors": _safetensors, "npz": _npz}


def _npz_members(blob) -> dict:
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _zip_with_zero_member(members: dict, name: str, shape: tuple, megabytes: int) -> bytes:
    """An archive of ``members`` plus ``name`` holding a .npy header for ``shape`` and ``megabytes`` of zeros.

    The zeros are streamed in 1 MB chunks, so building a 200 MB bomb never holds 200 MB here.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for member_name, data in members.items():
            archive.writestr(member_name, data)
        with archive.open(name, "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": shape})
            chunk = bytes(2**20)
            for _ in range(megabytes):
                member.write(chunk)
    return buffer.getvalue()


def _set_declared_size(blob: bytes, name: str, size: int) -> bytes:
    """The archive with ``name``'s declared unpacked size replaced, in its local header and in the directory."""
    blob = bytearray(blob)
    with zipfile.ZipFile(io.BytesIO(bytes(blob))) as archive:
        info = archive.getinfo(name)
    assert info.file_size < 2**32 and size < 2**32, "the test patches plain (not zip64) size fields"
    struct.pack_into("<I", blob, info.header_offset + 22, size)  # local file header: uncompressed size
    position = blob.find(b"PK\x01\x02")
    while position != -1:  # central directory entries: uncompressed size at +24, name length at +28, name at +46
        name_length = struct.unpack_from("<H", blob, position + 28)[0]
        if blob[position + 46 : position + 46 + name_length] == name.encode():
            struct.pack_into("<I", blob, position + 24, size)
        position = blob.find(b"PK\x01\x02", position + 46)
    return bytes(blob)


def _refusal_and_peak(blob) -> tuple[str, int]:
    """load_run's refusal of ``blob`` and the most memory it allocated on the way (bytes)."""
    tracemalloc.start()
    try:
        with pytest.raises(WeightsError) as caught:
            load_run(blob)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert message.endswith(".") and "\n" not in message
    return message, peak


# -- point 10: nothing is unpacked before the headers say it fits ------------------------------------------------
def test_a_zip_bomb_tensor_is_refused_from_its_header_without_unpacking(model, metadata):
    members = {name: data for name, data in _npz_members(_npz(model.params, json.dumps(metadata))).items()
               if name != "rnn.weight_hh_l0.npy"}
    bomb = _zip_with_zero_member(members, "rnn.weight_hh_l0.npy", (BOMB_MB * 2**20 // 8,), BOMB_MB)
    assert len(bomb) < BOMB_MB * 2**20 // 500  # what an upload limit sees
    message, peak = _refusal_and_peak(bomb)
    assert "rnn.weight_hh_l0 has shape" in message
    assert peak < MEMORY_BUDGET, f"refusing the bomb allocated {peak / 2**20:.0f} MiB"


def test_a_zip_bomb_without_metadata_is_refused_without_unpacking():
    bomb = _zip_with_zero_member({}, "rnn.weight_hh_l0.npy", (BOMB_MB * 2**20 // 8,), BOMB_MB)
    message, peak = _refusal_and_peak(bomb)
    assert "no rnnlab metadata" in message
    assert peak < MEMORY_BUDGET


def test_an_archive_that_declares_more_than_the_largest_model_is_refused_from_its_directory(model, metadata):
    members = {name: data for name, data in _npz_members(_npz(model.params, json.dumps(metadata))).items()
               if name != "rnn.weight_hh_l1.npy"}
    blob = _zip_with_zero_member(members, "rnn.weight_hh_l1.npy", (8,), 1)
    blob = _set_declared_size(blob, "rnn.weight_hh_l1.npy", 3 * 2**30)
    message, peak = _refusal_and_peak(blob)
    assert "3,072.0 MiB" in message and f"{MAX_TENSOR_BYTES / 2**20:,.1f} MiB" in message
    assert peak < MEMORY_BUDGET


def test_a_member_that_unpacks_to_more_than_it_declares_is_read_no_further(model, metadata):
    """The header and declared size are honest for a (20, 5) tensor; the compressed stream holds 200 MB."""
    members = {name: data for name, data in _npz_members(_npz(model.params, json.dumps(metadata))).items()
               if name != "rnn.weight_hh_l0.npy"}
    blob = _zip_with_zero_member(members, "rnn.weight_hh_l0.npy", (20, 5), BOMB_MB)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        header_size = archive.getinfo("rnn.weight_hh_l0.npy").file_size - BOMB_MB * 2**20
    blob = _set_declared_size(blob, "rnn.weight_hh_l0.npy", header_size + 20 * 5 * 8)
    message, peak = _refusal_and_peak(blob)
    assert "damaged" in message
    assert peak < MEMORY_BUDGET


def test_a_huge_metadata_member_is_refused_before_it_is_read():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("__rnnlab_metadata__.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<U52428800", "fortran_order": False, "shape": ()})
            chunk = bytes(2**20)
            for _ in range(BOMB_MB):
                member.write(chunk)
    message, peak = _refusal_and_peak(buffer.getvalue())
    assert "metadata is larger than any rnnlab run writes" in message
    assert peak < MEMORY_BUDGET


@pytest.mark.parametrize("member, expected", [
    ("evil.npy", "evil.npy"),
    ("../rnn.weight_hh_l0.npy", "which no rnnlab run has"),
    ("rnn.weight_hh_l9.npy", "which no rnnlab run has"),
    ("rnn.weight_hh_l0.npy.txt", "which no rnnlab run has"),
])
def test_archive_members_no_rnnlab_run_has_are_refused_by_name(model, metadata, member, expected):
    members = _npz_members(_npz(model.params, json.dumps(metadata)))
    members[member] = b"anything"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(WeightsError, match=expected.replace(".", r"\.")):
        load_run(buffer.getvalue())


def test_object_arrays_and_big_endian_or_fortran_members(model, metadata):
    text = json.dumps(metadata)
    with_objects = dict(model.params, **{"head.bias": np.array([None], dtype=object)})
    buffer = io.BytesIO()
    np.savez(buffer, **with_objects, __rnnlab_metadata__=np.array(text))
    with pytest.raises(WeightsError, match="pickled objects"):
        load_run(buffer.getvalue())
    big_endian = dict(model.params, **{"head.bias": model.params["head.bias"].astype(">f8")})
    with pytest.raises(WeightsError, match="head.bias is >f8 but the file says the model is float64"):
        load_run(_npz(big_endian, text))
    # a Fortran-ordered array is an honest .npy: it loads with the same values
    fortran = dict(model.params, **{"rnn.weight_ih_l0": np.asfortranarray(model.params["rnn.weight_ih_l0"])})
    loaded = load_run(_npz(fortran, text))
    np.testing.assert_array_equal(loaded.model.params["rnn.weight_ih_l0"], model.params["rnn.weight_ih_l0"])


def test_compressed_npz_files_load(model, metadata):
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **model.params, __rnnlab_metadata__=np.array(json.dumps(metadata)))
    loaded = load_run(buffer.getvalue())
    for name, value in model.params.items():
        np.testing.assert_array_equal(loaded.model.params[name], value)


def _safetensors_with_header(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_safetensors_headers_are_checked_before_the_library_reads_them(model, metadata):
    text = json.dumps(metadata)
    entries = {}
    offset = 0
    for name, value in model.params.items():
        entries[name] = {"dtype": "F64", "shape": list(value.shape), "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    data = b"".join(np.ascontiguousarray(v).tobytes() for v in model.params.values())
    assert load_run(_safetensors_with_header({"__metadata__": {"rnnlab": text}, **entries}, data)).model

    huge = dict(entries, **{"rnn.weight_hh_l0": {"dtype": "F64", "shape": [2**40], "data_offsets": [0, 2**43]}})
    with pytest.raises(WeightsError, match=r"rnn.weight_hh_l0 has shape \(1099511627776,\)"):
        load_run(_safetensors_with_header({"__metadata__": {"rnnlab": text}, **huge}, data))
    past_the_end = dict(entries, **{"head.bias": {"dtype": "F64", "shape": [1], "data_offsets": [10**9, 10**9 + 8]}})
    with pytest.raises(WeightsError, match="head.bias's bytes"):
        load_run(_safetensors_with_header({"__metadata__": {"rnnlab": text}, **past_the_end}, data))
    for broken_entry in ("F64", {"dtype": "F64", "shape": "20", "data_offsets": [0, 8]},
                         {"dtype": 64, "shape": [1], "data_offsets": [0, 8]},
                         {"dtype": "F64", "shape": [1], "data_offsets": [-8, 0]}):
        with pytest.raises(WeightsError, match="malformed"):
            load_run(_safetensors_with_header({"__metadata__": {"rnnlab": text}, **entries, "head.bias": broken_entry},
                                              data))
    for broken_metadata in ("not an object", {"rnnlab": 5}, {"rnnlab": ["a list"]}):
        with pytest.raises(WeightsError):
            load_run(_safetensors_with_header({"__metadata__": broken_metadata, **entries}, data))
    with pytest.raises(WeightsError, match="larger than any rnnlab run writes"):
        load_run(struct.pack("<Q", 2**40) + b"{" + bytes(100))


def test_a_path_larger_than_any_run_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.npz"
    with open(path, "wb") as handle:
        handle.truncate(MAX_TENSOR_BYTES + 2**30)  # a sparse file: no disk space, and nothing is read
    with pytest.raises(WeightsError, match="larger than any rnnlab run"):
        load_run(path)


# -- point 11: every metadata field is type-checked --------------------------------------------------------------
MALFORMED = [
    ("format_version", "1"), ("format_version", 1.5), ("format_version", True), ("format_version", None),
    ("format_version", 0), ("format_version", DELETE),
    ("model", []), ("model", "lstm"), ("model", DELETE), ("model.kind", ["lstm"]), ("model.kind", "transformer"),
    ("model.kind", DELETE), ("model.dtype", "float16"), ("model.dtype", {"name": "float64"}),
    ("model.hidden_size", "5"), ("model.hidden_size", 5.0), ("model.hidden_size", 0), ("model.hidden_size", 10**6),
    ("model.num_layers", -1), ("model.num_layers", 9), ("model.num_layers", None), ("model.input_size", 10**6),
    ("model.input_size", DELETE),
    ("lookback", 7.5), ("lookback", 7.0), ("lookback", -1), ("lookback", "7"), ("lookback", 10**9),
    ("lookback", DELETE), ("horizon", None), ("horizon", 0), ("horizon", [1]),
    ("features", "temp_max"), ("features", [1, 2, 3, 4]), ("features", ["a", "a", "b", "c"]), ("features", []),
    ("features", ["a", "b"]), ("features", ["", "b", "c", "d"]), ("features", {"a": 1}), ("features", DELETE),
    ("target", ["temp_max"]), ("target", ""), ("target", 5), ("target", DELETE),
    ("scaler", {}), ("scaler", "scaled"), ("scaler", None), ("scaler", DELETE),
    ("scaler.feature_mean", [0.0]), ("scaler.feature_mean", "0"), ("scaler.feature_mean", ["a", "b", "c", "d"]),
    ("scaler.feature_scale", [1.0, 0.0, 1.0, 1.0]), ("scaler.feature_scale", [1.0, float("nan"), 1.0, 1.0]),
    ("scaler.target_scale", "1"), ("scaler.target_scale", -2.0), ("scaler.target_mean", float("nan")),
    ("scaler.target_mean", float("inf")), ("scaler.target_mean", DELETE),
    ("config", "lstm"), ("config", []), ("config", None), ("config", DELETE),
    ("metrics", []), ("data_sha256", 123), ("data_sha256", "abc"), ("data_name", 5), ("rnnlab_version", 2),
    ("splits", [0.7]), ("splits", [0.9, 0.2]), ("splits", "0.7,0.15"), ("splits", [0.7, "0.15"]),
    ("train_span", ["2014-10-19", "2012-01-01"]), ("train_span", ["not a date", "2014-10-19"]),
    ("train_span", "2012-01-01"), ("train_span", [20120101, 20141019]),
]


def _corrupt(metadata: dict, path: str, value) -> dict:
    corrupted = json.loads(json.dumps(metadata))
    *parents, key = path.split(".")
    holder = corrupted
    for parent in parents:
        holder = holder[parent]
    if value is DELETE:
        del holder[key]
    else:
        holder[key] = value
    return corrupted


def _label(path, value) -> str:
    return f"{path}={'deleted' if value is DELETE else repr(value)[:30]}"


# label -> metadata text made from a valid metadata dict, one field wrong in each
VARIANTS = {_label(path, value): (lambda meta, path=path, value=value: json.dumps(_corrupt(meta, path, value)))
            for path, value in MALFORMED}
VARIANTS.update({
    "metadata is a list": lambda meta: json.dumps([meta]),
    "metadata is not JSON": lambda meta: "{'format': 'rnnlab-run'",
    "metadata nests without end": lambda meta: "[" * 100_000 + "]" * 100_000,
    "metadata is huge": lambda meta: json.dumps(dict(meta, padding="x" * (1 << 20))),
})
CASES = [pytest.param(fmt, label, id=f"{fmt}:{label}") for fmt in WRITERS for label in VARIANTS]


@pytest.mark.parametrize("fmt, label", CASES)
def test_malformed_metadata_is_one_sentence_from_the_api(model, metadata, fmt, label):
    blob = WRITERS[fmt](model.params, VARIANTS[label](metadata))
    with pytest.raises(WeightsError) as caught:
        load_run(blob)
    message = str(caught.value)
    assert message.endswith(".") and "\n" not in message, label


@pytest.mark.parametrize("fmt, label", CASES)
def test_malformed_metadata_is_one_line_and_exit_2_from_the_cli(model, metadata, fmt, label, tmp_path, capsys):
    blob = WRITERS[fmt](model.params, VARIANTS[label](metadata))
    path = tmp_path / f"run.{fmt}"
    path.write_bytes(blob)
    assert cli.main(["evaluate", "--weights", str(path), "--data", str(DEFAULT_DATA_PATH)]) == 2, label
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, (label, captured.err)
    assert "Traceback" not in captured.err and captured.out == ""


def test_malformed_messages_name_the_field_and_what_it_should_be(model, metadata):
    cases = [("lookback", 7.5, "'lookback' should be a whole number from 1 to 365, not 7.5"),
             ("model.kind", ["lstm"], "'model.kind' should be one of rnn, lstm, gru, not ['lstm']"),
             ("config", "lstm", "'config' should be an object of training settings"),
             ("scaler", {}, "incomplete (it has no 'feature_mean')"),
             ("format_version", "1", "'format_version' should be a whole number, not '1'")]
    for path, value, expected in cases:
        with pytest.raises(WeightsError) as caught:
            load_run(_safetensors(model.params, json.dumps(_corrupt(metadata, path, value))))
        assert expected in str(caught.value)


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_a_valid_file_still_evaluates_through_the_cli(model, metadata, fmt, tmp_path, capsys):
    path = tmp_path / f"run.{fmt}"
    path.write_bytes(WRITERS[fmt](model.params, json.dumps(metadata)))
    assert cli.main(["evaluate", "--weights", str(path), "--data", str(DEFAULT_DATA_PATH)]) == 0
    captured = capsys.readouterr()
    assert "test:" in captured.out and "persistence" in captured.out


@pytest.mark.parametrize("fmt", list(WRITERS))
def test_files_without_the_new_optional_fields_still_load(model, metadata, fmt):
    older = {key: value for key, value in metadata.items()
             if key not in ("splits", "train_span", "metrics", "data_name", "data_sha256", "rnnlab_version")}
    run = load_run(WRITERS[fmt](model.params, json.dumps(older)))
    assert run.features == metadata["features"]

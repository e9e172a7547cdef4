"""paths: an output never replaces an input, nor lands in a data folder or on model weights."""

from __future__ import annotations

import onnx
import pytest
import tinymodels

from trtcalib.errors import ConfigError
from trtcalib.paths import (
    check_folder_spares_inputs,
    check_outputs_spare_inputs,
    model_and_weights,
)


def test_data_files_inside_an_input_folder_are_refused(tmp_path):
    data = tmp_path / "images"
    (data / "cats").mkdir(parents=True)
    inputs = {"the --data source": data}
    for name in ("plot.png", "x.NPY", "acts.npz", "a.jpeg"):  # the scan would read them back
        with pytest.raises(ConfigError, match=rf"--json .*{name}: is inside the --data source"):
            check_outputs_spare_inputs({"--json": data / "cats" / name}, inputs)
    # what the scan never reads may go there (e.g. --data . with the default caches/ folder)
    check_outputs_spare_inputs({"--cache": data / "caches" / "m.cache"}, inputs)
    check_outputs_spare_inputs({"--json": data / "report.json"}, inputs)
    # next to the folder, and in a folder whose name merely starts the same, is fine
    check_outputs_spare_inputs({"--json": tmp_path / "images.png"}, inputs)
    check_outputs_spare_inputs({"--json": tmp_path / "images2" / "x.png"}, inputs)


def test_output_equal_to_an_input_file_is_refused(tmp_path):
    data = tmp_path / "calib.npz"
    data.write_bytes(b"x")
    with pytest.raises(ConfigError, match="is the --data source"):
        check_outputs_spare_inputs(
            {"--cache": tmp_path / "." / "calib.npz"}, {"the --data source": data}
        )


def test_model_and_weights_lists_external_weight_files(tmp_path):
    path = tmp_path / "ext.onnx"
    onnx.save(
        tinymodels.conv_model(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.weights",
        size_threshold=0,
    )
    files = model_and_weights(path)
    assert list(files.values()) == [path, tmp_path / "ext.weights"]
    # two weights files: both are inputs
    two = tmp_path / "two.onnx"
    model = tinymodels.conv_model()
    onnx.save(model, str(two), save_as_external_data=True, all_tensors_to_one_file=False,
              size_threshold=0)  # fmt: skip
    weights = [p for p in model_and_weights(two).values() if p != two]
    assert len(weights) == len(model.graph.initializer) > 1
    for weight in weights:
        with pytest.raises(ConfigError, match="external weights file"):
            check_outputs_spare_inputs({"-o": weight}, model_and_weights(two))
    with pytest.raises(ConfigError, match="is the model's external weights file"):
        check_outputs_spare_inputs({"-o": tmp_path / "ext.weights"}, files)
    # a model with its weights inside, or a file that is not ONNX: just the model
    plain = tinymodels.save(tinymodels.conv_model(), tmp_path, "plain.onnx")
    assert list(model_and_weights(plain).values()) == [plain]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\x00 not onnx")
    assert list(model_and_weights(junk).values()) == [junk]


def test_output_folder_with_plots_inside_a_data_folder_is_refused(tmp_path):
    data = tmp_path / "images"
    data.mkdir()
    inputs = {"the --data source": data}
    for out in (data, data / "study"):
        with pytest.raises(ConfigError, match="plot.png: is inside the --data source"):
            check_folder_spares_inputs("--out", out, ["results.json", "plot.png"], inputs)
        check_folder_spares_inputs("--out", out, ["results.json"], inputs)  # JSON only: fine
    check_folder_spares_inputs("--out", tmp_path / "out", ["plot.png"], inputs)


def test_output_folder_file_that_is_an_input_is_refused(tmp_path):
    labels = tmp_path / "results.json"
    labels.write_text("[]")
    with pytest.raises(ConfigError, match="results.json: is --labels"):
        check_folder_spares_inputs("--out", tmp_path, ["results.json"], {"--labels": labels})

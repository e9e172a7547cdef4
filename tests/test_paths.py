"""paths: an output never replaces an input, nor lands in a data folder or on model weights."""

from __future__ import annotations

import numpy as np
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
    data = tmp_path / "images"  # no arrays at its top: an image folder, scanned recursively
    (data / "cats").mkdir(parents=True)
    inputs = {"the --data source": data}
    refused = [data / "plot.png", data / "x.NPY", data / "acts.npz", data / "cats" / "a.jpeg"]
    for out in refused:  # the scan would read them back (an array on top: as an array folder)
        with pytest.raises(ConfigError, match=rf"--json .*{out.name}: is inside the --data"):
            check_outputs_spare_inputs({"--json": out}, inputs)
    # what the scan never reads may go there (e.g. --data . with the default caches/ folder)
    check_outputs_spare_inputs({"--cache": data / "caches" / "m.cache"}, inputs)
    check_outputs_spare_inputs({"--json": data / "report.json"}, inputs)
    check_outputs_spare_inputs({"--json": data / "cats" / "acts.npz"}, inputs)  # not on top
    check_outputs_spare_inputs({"--json": data / ".cache" / "acts.png"}, inputs)  # hidden
    # next to the folder, and in a folder whose name merely starts the same, is fine
    check_outputs_spare_inputs({"--json": tmp_path / "images.png"}, inputs)
    check_outputs_spare_inputs({"--json": tmp_path / "images2" / "x.png"}, inputs)


def _scan(folder):
    """What `--data folder` reads for conv_model: its files, or the error it stops with."""
    from trtcalib.data import open_source
    from trtcalib.data.sources import ArraySource
    from trtcalib.errors import DataError
    from trtcalib.model import input_specs

    try:
        source = open_source(folder, input_specs(tinymodels.conv_model()))
    except DataError as exc:
        return str(exc)
    if isinstance(source, ArraySource):
        return sorted(str(f[0].path) for f in source.files)
    return sorted(str(f) for f in source.files)


def _write(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".npy", ".npz"):
        x = np.zeros((2, 3, 8, 8), np.float32)
        np.save(path, x) if path.suffix == ".npy" else np.savez(path, input=x)
    elif path.suffix == ".png":
        Image.new("RGB", (8, 8)).save(path)
    else:
        path.write_text("{}")


@pytest.mark.parametrize("kind", ["images", "arrays"])
def test_refused_exactly_where_the_next_scan_would_change(tmp_path, kind):
    """The rule mirrors data/sources.py: an output is refused iff writing it changes what the
    next `--data folder` run reads (or makes it fail)."""
    names = [
        "new.png", "new.npy", "new.npz", "new.json", ".new.png", ".new.npy",
        "sub/new.png", "sub/new.npy", "sub/deeper/new.png", "sub/.h/new.png", ".h/new.png",
        ".h/new.npy", "sub/new.json",
    ]  # fmt: skip
    for name in names:
        folder = tmp_path / name.replace("/", "_") / "data"
        _write(folder / ("first.png" if kind == "images" else "first.npy"))
        _write(folder / "sub" / "old.png")  # read in an image folder only
        before = _scan(folder)
        assert isinstance(before, list), before
        out = folder / name
        try:
            check_outputs_spare_inputs({"--out": out}, {"the --data source": folder})
            refused = False
        except ConfigError:
            refused = True
        _write(out)
        assert refused == (_scan(folder) != before), (kind, name, refused)


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

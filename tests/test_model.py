"""trtcalib.model: loading errors and input descriptions."""

from __future__ import annotations

import numpy as np
import pytest
import tinymodels

from trtcalib.errors import ModelError
from trtcalib.model import input_specs, load_model


def test_input_specs_of_tiny_models(tmp_path):
    path = tinymodels.save(tinymodels.two_input_model(), tmp_path)
    specs = input_specs(load_model(path))
    assert [s.name for s in specs] == ["a", "b"]
    assert specs[0].shape == ("N", 4)
    assert specs[0].dtype == np.float32
    assert specs[0].is_dynamic()


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such file"), (b"this is not protobuf \xff\xfe", "not an ONNX model")],
)
def test_bad_model_files(tmp_path, content, message):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="is a directory"):
        load_model(tmp_path)

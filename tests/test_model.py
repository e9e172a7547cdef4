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


def _save_with_external_weights(tmp_path):
    import onnx

    model = tinymodels.conv_model()
    path = tmp_path / "ext.onnx"
    onnx.save(
        onnx.ModelProto.FromString(model.SerializeToString()),  # save() rewrites its argument
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.weights",
        size_threshold=0,
    )
    return model, path


def test_external_weights_are_loaded(tmp_path):
    from onnx import numpy_helper

    model, path = _save_with_external_weights(tmp_path)
    loaded = load_model(path)
    expected = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for tensor in loaded.graph.initializer:
        np.testing.assert_array_equal(numpy_helper.to_array(tensor), expected[tensor.name])


def test_missing_external_weights_file_is_named(tmp_path):
    """A good graph whose weights file was not copied along is not 'not an ONNX model'."""
    _, path = _save_with_external_weights(tmp_path)
    (tmp_path / "ext.weights").unlink()
    with pytest.raises(ModelError, match=r"external weights file 'ext\.weights' not found") as info:
        load_model(path)
    assert "not an ONNX model" not in str(info.value)


def test_truncated_external_weights_file_is_named(tmp_path):
    _, path = _save_with_external_weights(tmp_path)
    weights = tmp_path / "ext.weights"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelError, match=r"cannot read external weights \(ext\.weights\)") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_weights_of_constants_in_subgraphs_and_functions_are_found(tmp_path):
    """Constant values inside an If branch and a local function, moved to their own files,
    are checked like initializers (onnx converts attribute tensors too)."""
    import onnx
    from onnx import TensorProto, external_data_helper, helper, numpy_helper

    def constant(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))

    big = np.arange(64, dtype=np.float32).reshape(8, 8)

    def branch(name):
        out = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [8, 8])]
        return helper.make_graph([constant(name, big)], name, [], out)

    function = helper.make_function(
        "local",
        "AddK",
        ["x"],
        ["y"],
        [constant("fk", big), helper.make_node("Add", ["x", "fk"], ["y"])],
        [helper.make_opsetid("", 17)],
    )
    graph = helper.make_graph(
        [
            helper.make_node(
                "If", ["c"], ["z"], then_branch=branch("k1"), else_branch=branch("k2")
            ),
            helper.make_node("AddK", ["z"], ["out"], domain="local"),
        ],
        "g",
        [helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [8, 8])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
        functions=[function],
    )
    external_data_helper.convert_model_to_external_data(
        model, all_tensors_to_one_file=False, size_threshold=0, convert_attribute=True
    )
    path = tmp_path / "sub.onnx"
    onnx.save_model(model, str(path))
    files = sorted(p.name for p in tmp_path.iterdir() if p.name != "sub.onnx")
    assert files == ["fk", "k1", "k2"]  # the function's constant and the two branches'
    loaded = load_model(path)
    branch_value = loaded.graph.node[0].attribute[0].g.node[0].attribute[0].t
    np.testing.assert_array_equal(numpy_helper.to_array(branch_value), big)
    for name in files:
        kept = (tmp_path / name).read_bytes()
        (tmp_path / name).unlink()
        with pytest.raises(ModelError, match=rf"external weights file '{name}' not found"):
            load_model(path)
        (tmp_path / name).write_bytes(kept)

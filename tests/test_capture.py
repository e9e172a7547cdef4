"""ActivationCapture: which tensors are exposed, and that their values are the model's own."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tinymodels

from trtcalib import capture as capture_module
from trtcalib.capture import ActivationCapture
from trtcalib.errors import DataError, ModelError


def _truncated_run(model: onnx.ModelProto, tensor: str, feed: dict) -> np.ndarray:
    """A plain onnxruntime run of `model` cut at `tensor` (independent of the capture code)."""
    inputs = [v.name for v in model.graph.input]
    inferred = onnx.shape_inference.infer_shapes(model)
    sub = onnx.utils.Extractor(inferred).extract_model(inputs, [tensor])
    session = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
    used = {v.name for v in sub.graph.input}
    return session.run([tensor], {k: v for k, v in feed.items() if k in used})[0]


def test_conv_model_exposes_input_and_every_node_output_in_order():
    cap = ActivationCapture(tinymodels.conv_model())
    assert cap.tensor_names == [
        "input",
        "conv1",
        "relu1",
        "conv2",
        "add1",
        "pool",
        "flat",
        "logits",
    ]


@pytest.mark.parametrize("optimization", ["disable", "basic", "extended", "all"])
def test_values_equal_model_truncated_at_each_tensor(optimization):
    model = tinymodels.conv_model()
    x = np.random.default_rng(1).normal(size=(3, 3, 8, 8)).astype(np.float32)
    cap = ActivationCapture(model, optimization=optimization)
    got = cap.run({"input": x})
    assert list(got) == cap.tensor_names
    for name in cap.tensor_names:
        want = x if name == "input" else _truncated_run(model, name, {"input": x})
        assert got[name].shape == want.shape, name
        np.testing.assert_allclose(got[name], want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_simple_ops_equal_numpy_and_int_outputs_are_skipped():
    model = tinymodels.two_input_model()
    rng = np.random.default_rng(2)
    a = rng.normal(size=(5, 4)).astype(np.float32)
    b = rng.normal(size=(5, 4)).astype(np.float32)
    cap = ActivationCapture(model)
    assert cap.tensor_names == ["a", "b", "prod", "act", "out"]  # "idx" is int64
    got = cap.run({"a": a, "b": b})
    w = np.arange(8, dtype=np.float32).reshape(4, 2) / 8.0
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["prod"], a * b)
    np.testing.assert_array_equal(got["act"], np.maximum(a * b, 0))
    np.testing.assert_allclose(got["out"], np.maximum(a * b, 0) @ w, rtol=1e-6)


def test_int_tensors_and_constant_subgraphs_are_not_exposed_by_default():
    cap = ActivationCapture(tinymodels.mixed_types_model())
    # shape (int64) and as_int (int32) are integer; c_out and const_scaled are data-independent
    assert cap.tensor_names == ["x", "shifted", "reshaped", "back", "y"]
    x = np.array([[0.25, 1.5, -2.0, 7.9]], dtype=np.float32)
    got = cap.run({"x": x})
    shifted = x + np.array([1.5, -3.0, 6.0, 0.0], dtype=np.float32)
    np.testing.assert_array_equal(got["shifted"], shifted)
    np.testing.assert_array_equal(got["back"], np.trunc(shifted))
    np.testing.assert_allclose(got["y"], 1 / (1 + np.exp(-shifted)), rtol=1e-6)


def test_tensors_restricts_and_keeps_topological_order():
    cap = ActivationCapture(tinymodels.conv_model(), tensors=["add1", "relu1"])
    assert cap.tensor_names == ["relu1", "add1"]
    got = cap.run({"input": np.ones((1, 3, 8, 8), np.float32)})
    assert list(got) == ["relu1", "add1"]


def test_only_graph_inputs_requested_needs_no_inference():
    cap = ActivationCapture(tinymodels.two_input_model(), tensors=["b"])
    b = np.full((2, 4), 3.0, np.float32)
    assert cap.run({"a": b, "b": b}) == {"b": b}


def test_constant_tensor_can_be_named_explicitly():
    cap = ActivationCapture(tinymodels.mixed_types_model(), tensors=["const_scaled"])
    got = cap.run({"x": np.zeros((2, 4), np.float32)})
    np.testing.assert_array_equal(got["const_scaled"], [1.5, -3.0, 6.0, 0.0])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nope", "'nope': not an input or node output"),
        ("w1", "initializer"),
        # named from the model's own types, before an onnxruntime session is built
        ("shape", "'shape': is int64, only float tensors"),
        ("as_int", "'as_int': is int32, only float tensors"),
    ],
)
def test_bad_tensor_names_are_model_errors(name, message):
    model = tinymodels.conv_model() if name == "w1" else tinymodels.mixed_types_model()
    with pytest.raises(ModelError, match=message):
        ActivationCapture(model, tensors=[name])


def test_every_unknown_tensor_name_is_counted_in_one_error():
    with pytest.raises(ModelError, match=r"'nope1': not an .* \(and 2 more: nope2, nope3\)$"):
        ActivationCapture(tinymodels.conv_model(), tensors=["nope1", "relu1", "nope2", "nope3"])


def test_missing_input_and_wrong_shape_are_data_errors():
    cap = ActivationCapture(tinymodels.two_input_model())
    with pytest.raises(DataError, match="input 'b'"):
        cap.run({"a": np.ones((2, 4), np.float32)})
    with pytest.raises(DataError, match="onnxruntime failed") as info:
        cap.run({"a": np.ones((2, 5), np.float32), "b": np.ones((2, 5), np.float32)})
    assert "\n" not in str(info.value)


def test_capture_writes_no_file(tmp_path, monkeypatch):
    path = tinymodels.save(tinymodels.conv_model(), tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))
    model = onnx.load(str(path))
    cap = ActivationCapture(model)
    cap.run({"input": np.ones((2, 3, 8, 8), np.float32)})
    assert sorted(os.listdir(tmp_path)) == before


def test_user_model_is_not_modified():
    model = tinymodels.conv_model()
    original = model.SerializeToString()
    ActivationCapture(model)
    assert model.SerializeToString() == original


def test_large_model_path_uses_a_private_temporary_directory(monkeypatch, tmp_path):
    # pretend every model is over protobuf's 2 GiB limit to exercise the external-data route
    monkeypatch.setattr(capture_module, "PROTOBUF_LIMIT", 1)
    monkeypatch.chdir(tmp_path)
    model = tinymodels.conv_model()
    x = np.random.default_rng(3).normal(size=(2, 3, 8, 8)).astype(np.float32)
    with ActivationCapture(model) as cap:
        tmpdir = cap._tmpdir.name
        assert os.path.exists(os.path.join(tmpdir, "augmented.onnx.data"))
        assert cap.tensor_names[0] == "input" and cap.tensor_names[-1] == "logits"
        got = cap.run({"input": x})
        np.testing.assert_allclose(
            got["conv2"], _truncated_run(model, "conv2", {"input": x}), rtol=1e-5, atol=1e-6
        )
    assert not os.path.exists(tmpdir)
    assert os.listdir(tmp_path) == []


def test_not_loadable_model_is_a_model_error():
    model = tinymodels.conv_model()
    model.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(ModelError, match="onnxruntime cannot load the model"):
        ActivationCapture(model)


def test_bad_optimization_level():
    with pytest.raises(ValueError, match="optimization"):
        ActivationCapture(tinymodels.conv_model(), optimization="max")


def test_model_without_float_tensors_is_a_model_error():
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["i", "i"], ["j"])],
        "ints",
        [onnx.helper.make_tensor_value_info("i", onnx.TensorProto.INT64, [2])],
        [onnx.helper.make_tensor_value_info("j", onnx.TensorProto.INT64, [2])],
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ModelError, match="no float activations"):
        ActivationCapture(model)


def _relu_chain_model() -> onnx.ModelProto:
    """x -> Relu (of a graph input) -> Relu (of a Relu) ; x -> Neg -> Relu (of a node output)."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Relu", ["x"], ["r_in"]),
        helper.make_node("Relu", ["r_in"], ["r_r"]),
        helper.make_node("Neg", ["x"], ["neg"]),
        helper.make_node("Relu", ["neg"], ["r_neg"]),
        helper.make_node("Add", ["r_r", "r_neg"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])
    return tinymodels.make(nodes, "relus", [x], [y])


def test_derive_relu_leaves_relu_outputs_to_the_caller():
    cap = ActivationCapture(tinymodels.conv_model(), derive=True)
    assert cap.derived == {"relu1": "conv1"}
    assert "relu1" in cap.tensor_names  # still a tensor to calibrate
    fetched = {o.name for o in cap._session.get_outputs()}
    assert "relu1" not in fetched and "conv1" in fetched
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    out = cap.run({"input": x})
    assert "relu1" not in out
    full = ActivationCapture(tinymodels.conv_model()).run({"input": x})
    np.testing.assert_array_equal(np.maximum(out["conv1"], 0), full["relu1"])


def test_derive_relu_sources_graph_inputs_but_not_other_relus():
    cap = ActivationCapture(_relu_chain_model(), derive=True)
    # a Relu of a derived Relu has no produced input to read: it is fetched
    assert cap.derived == {"r_in": "x", "r_neg": "neg"}
    out = cap.run({"x": np.arange(10, dtype=np.float32).reshape(2, 5) - 4})
    assert set(out) == {"x", "r_r", "neg", "y"}


def test_derive_relu_needs_the_input_captured():
    cap = ActivationCapture(tinymodels.conv_model(), ["relu1", "add1"], derive=True)
    assert cap.derived == {}


def _alias_model() -> onnx.ModelProto:
    """x[N,2,3] -> Transpose -> Reshape (an alias of an alias) -> Relu (of an alias: fetched);
    x -> Relu (derived) -> Flatten (an alias of a derived Relu)."""
    from onnx import TensorProto, helper

    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 6])
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["r"]),
        helper.make_node("Relu", ["r"], ["relu_r"]),
        helper.make_node("Relu", ["x"], ["relu_x"]),
        helper.make_node("Flatten", ["relu_x"], ["flat"]),
        helper.make_node("Add", ["relu_r", "flat"], ["y"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])
    return tinymodels.make(nodes, "aliases", [x], [y], [shape])


def test_derive_maps_rearrangements_to_the_tensor_with_their_values():
    cap = ActivationCapture(_alias_model(), derive=True)
    assert cap.aliases == {"t": "x", "r": "x", "flat": "relu_x"}
    assert cap.derived == {"relu_x": "x"}  # relu_r reads an alias: fetched
    out = cap.run({"x": np.arange(12, dtype=np.float32).reshape(2, 2, 3) - 6})
    assert set(out) == {"x", "relu_r", "y"}
    assert {o.name for o in cap._session.get_outputs()} == {"relu_r", "y"}


def test_derive_does_not_depend_on_the_node_order():
    # onnxruntime runs graphs whose nodes are not listed in order; the derivation must too
    from onnx import TensorProto, helper

    from trtcalib.calibrate import CalibrationSettings, collect_statistics

    nodes = [
        helper.make_node("Flatten", ["t"], ["f"]),
        helper.make_node("Relu", ["s"], ["r"]),
        helper.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1]),
        helper.make_node("Sigmoid", ["x"], ["s"]),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 3])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("f", "r")]
    graph = helper.make_graph(nodes, "unsorted", [x], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    cap = ActivationCapture(model, derive=True)
    assert cap.aliases == {"f": "s", "t": "s"} and cap.derived == {"r": "s"}
    data = [{"x": np.random.default_rng(1).normal(size=(4, 2, 3)).astype(np.float32)}]
    settings = CalibrationSettings("minmax", batch_size=4)
    got = collect_statistics(model, data, settings, False, derive=True).stats
    want = collect_statistics(model, data, settings, False, derive=False).stats
    assert list(got) == list(want)
    for name in want:
        assert got[name].counts.tobytes() == want[name].counts.tobytes(), name
        assert got[name].amax == want[name].amax, name


def test_a_model_protobuf_cannot_serialise_takes_the_external_data_route():
    from google.protobuf.message import EncodeError

    class TooLarge:
        def SerializeToString(self):  # what protobuf does beyond 2 GiB
            raise EncodeError("Failed to serialize proto")

    assert capture_module._serialize_below_limit(TooLarge()) is None
    small = tinymodels.conv_model()
    assert capture_module._serialize_below_limit(small) == small.SerializeToString()

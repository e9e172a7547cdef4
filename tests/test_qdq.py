"""Q/DQ export: placement, exact scales, per-channel weights, BN folding, accuracy, errors."""

from __future__ import annotations

import struct

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tinymodels
from onnx import helper, numpy_helper

from trtcalib.cache import read_cache
from trtcalib.errors import ModelError, TrtcalibError
from trtcalib.qdq import CacheMismatchError, fold_batchnorm, quantize_model

# ------------------------------------------------------------------ independent helpers


def make_model(nodes, inputs, outputs, inits, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # what the installed onnxruntime reads
    return model


def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], names=None) -> dict:
    """Run `model` in onnxruntime, exposing `names` (intermediate tensors) as outputs too."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for name in names or []:
        if name not in {o.name for o in copy.graph.output}:
            copy.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(copy.SerializeToString(), options)
    fetch = [o.name for o in session.get_outputs()]
    return dict(zip(fetch, session.run(fetch, feeds), strict=True))


def activation_names(model: onnx.ModelProto) -> list[str]:
    inits = {i.name for i in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    return names + [o for n in model.graph.node for o in n.output if o]


def minmax_scales(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, float]:
    """MinMax calibration in plain numpy: scale = float32(max|x|) / 127 for every activation."""
    names = activation_names(model)
    values = run(model, feeds, names)
    values.update(feeds)
    return {
        n: float(np.float32(np.abs(values[n]).max()) / np.float32(127))
        for n in names
        if np.issubdtype(values[n].dtype, np.floating)
    }


def hex_of(scale: float) -> str:
    """TensorRT's cache encoding: float32 bits, lowercase hex without padding."""
    return format(struct.unpack(">I", struct.pack(">f", scale))[0], "x")


def q_nodes(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    """QuantizeLinear nodes keyed by the tensor they quantize."""
    return {n.input[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}


def init_value(model: onnx.ModelProto, name: str) -> np.ndarray:
    init = next(i for i in model.graph.initializer if i.name == name)
    return numpy_helper.to_array(init)


def attr(node: onnx.NodeProto, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def consumers_of(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


def fold_reference(w, b, gamma, beta, mean, var, eps):
    """BatchNormalization folded into the preceding Conv, written from the BN formula."""
    k = gamma / np.sqrt(var + eps)
    w_folded = w * k[:, None, None, None]
    b_folded = beta + (b - mean) * k
    return w_folded.astype(np.float32), b_folded.astype(np.float32)


def dequantized_input(model: onnx.ModelProto, node_name: str, index: int) -> str:
    """Follow node input `index` back through DequantizeLinear <- QuantizeLinear."""
    node = next(n for n in model.graph.node if n.name == node_name)
    dq = next(n for n in model.graph.node if node.input[index] in n.output)
    assert dq.op_type == "DequantizeLinear"
    q = next(n for n in model.graph.node if dq.input[0] in n.output)
    assert q.op_type == "QuantizeLinear"
    return q.input[0]


# ------------------------------------------------------------------ round trip from a cache


def test_scales_from_cache_reach_the_qdq_initializers_bit_for_bit(tmp_path):
    model = tinymodels.conv_model()
    # chosen ranges (amax) per activation; scale = float32(amax) / 127 as TensorRT writes it
    amax = {"input": 1.0, "relu1": 2.5, "flat": 0.75}
    expected = {n: np.float32(a) / np.float32(127) for n, a in amax.items()}
    lines = ["TRT-8601-EntropyCalibration2"]
    lines += [f"{name}: {hex_of(float(s))}" for name, s in expected.items()]
    # entries TensorRT adds for its own layers, and tensors not needing Q/DQ, are ignored
    lines += ["(Unnamed Layer* 46) [Constant]_output: 3c010a14", "conv1: 3d000000"]
    cache_path = tmp_path / "trt8.cache"
    cache_path.write_text("\n".join(lines) + "\n")

    result = quantize_model(model, read_cache(cache_path).scales)

    assert result.quantized == ["input", "relu1", "flat"]
    assert result.missing == []
    qs = q_nodes(result.model)
    for name, scale in expected.items():
        q = qs[name]
        got = init_value(result.model, q.input[1])
        zero = init_value(result.model, q.input[2])
        assert got.shape == () and got.dtype == np.float32
        assert got.tobytes() == np.float32(scale).tobytes()
        assert zero.dtype == np.int8 and zero.shape == () and zero == 0
        assert attr(q, "axis") is None  # per-tensor
        dq = consumers_of(result.model, q.output[0])[0]
        assert dq.op_type == "DequantizeLinear" and list(dq.input[1:]) == list(q.input[1:])
    onnx.checker.check_model(result.model, full_check=True)


def test_input_model_is_not_modified():
    model = tinymodels.mobile_block_model()
    before = model.SerializeToString()
    quantize_model(model, {n: 0.1 for n in activation_names(model)})
    assert model.SerializeToString() == before


# ------------------------------------------------------------------ placement


def test_conv_model_placement_follows_tensorrt_recommendations():
    model = tinymodels.conv_model()
    result = quantize_model(model, {n: 0.05 for n in activation_names(model)})
    qdq = result.model
    # every weighted op: activation input and weight both through Q/DQ
    assert dequantized_input(qdq, "conv1", 0) == "input"
    assert dequantized_input(qdq, "conv1", 1) == "w1"
    assert dequantized_input(qdq, "conv2", 0) == "relu1"
    assert dequantized_input(qdq, "conv2", 1) == "w2"
    assert dequantized_input(qdq, "fc", 0) == "flat"
    assert dequantized_input(qdq, "fc", 1) == "wfc"
    # biases stay float
    conv1 = next(n for n in qdq.graph.node if n.name == "conv1")
    assert conv1.input[2] == "b1"
    # residual Add: the skip branch (relu1) is quantized, the Conv branch (fused) is not
    add = next(n for n in qdq.graph.node if n.name == "add1")
    assert add.input[0] == "conv2"
    assert dequantized_input(qdq, "add1", 1) == "relu1"
    # outputs of weighted ops are never quantized
    assert not {"conv1", "conv2", "logits"} & set(q_nodes(qdq))
    # one shared Q/DQ pair for relu1 (read by conv2 and add1)
    assert [n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear"].count("relu1") == 1
    assert result.layers == ["conv1", "conv2", "add1", "fc"]


def test_mobile_block_placement_after_fusion():
    model = tinymodels.mobile_block_model()
    result = quantize_model(model, {n: 0.05 for n in activation_names(model)})
    qdq = result.model
    assert result.folded == ["stem_bn", "dw_bn", "pw_bn"]
    assert not [n for n in qdq.graph.node if n.op_type == "BatchNormalization"]
    # Conv+BN is one layer: its Q/DQ input is what feeds the Conv; the folded Conv now
    # produces the BN output name, so cache entries of downstream tensors still apply
    assert dequantized_input(qdq, "dw", 0) == "stem_act"  # HardSwish output
    assert dequantized_input(qdq, "pw", 0) == "se_out"  # after the SE Mul
    assert dequantized_input(qdq, "se1", 0) == "se_pool"
    assert dequantized_input(qdq, "head_mm", 0) == "flat"
    assert dequantized_input(qdq, "fc", 0) == "head"
    pw = next(n for n in qdq.graph.node if n.name == "pw")
    assert pw.output[0] == "pw_bn"
    # residual: Add(pw_bn, stem_act): Conv branch fused, skip branch quantized
    res = next(n for n in qdq.graph.node if n.name == "res")
    assert res.input[0] == "pw_bn"
    assert dequantized_input(qdq, "res", 1) == "stem_act"
    # ops that are not weighted ops keep float inputs
    for name in ("stem_act", "se_gate", "se_out", "head_bias", "head", "pool", "se_pool"):
        node = next(n for n in qdq.graph.node if n.name == name)
        for tensor in node.input:
            producer = [n for n in qdq.graph.node if tensor in n.output]
            assert not producer or producer[0].op_type != "DequantizeLinear", (name, tensor)
    # the bias Add after MatMul (constant operand) is not a residual Add
    head_bias = next(n for n in qdq.graph.node if n.name == "head_bias")
    assert list(head_bias.input) == ["head_mm", "head_b"]


def test_plain_add_of_two_non_conv_branches_is_left_alone():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu_a"),
        helper.make_node("Sigmoid", ["x"], ["b"], name="sig_b"),
        helper.make_node("Add", ["a", "b"], ["s"], name="add"),
        helper.make_node("MatMul", ["s", "w"], ["y"], name="mm"),
    ]
    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    model = make_model(nodes, [x], [y], [w])
    result = quantize_model(model, {n: 0.1 for n in ["x", "a", "b", "s"]})
    add = next(n for n in result.model.graph.node if n.name == "add")
    assert list(add.input) == ["a", "b"]
    assert result.quantized == ["s"]


def test_matmul_with_two_activations_and_convtranspose():
    model = tinymodels.deconv_matmul_model()
    result = quantize_model(model, {n: 0.05 for n in activation_names(model)})
    qdq = result.model
    assert dequantized_input(qdq, "bmm", 0) == "tokens"
    assert dequantized_input(qdq, "bmm", 1) == "y"
    assert dequantized_input(qdq, "up", 0) == "x"
    assert dequantized_input(qdq, "up", 1) == "up_w"
    assert dequantized_input(qdq, "proj", 1) == "proj_w"
    onnx.checker.check_model(qdq, full_check=True)
    rng = np.random.default_rng(1)
    feeds = {
        "x": rng.normal(size=(2, 4, 4, 4)).astype(np.float32),
        "y": rng.normal(size=(2, 64, 3)).astype(np.float32),
    }
    assert run(qdq, feeds)["out"].shape == (2, 6, 5)


# ------------------------------------------------------------------ weights


def _weight_scale_of(model: onnx.ModelProto, weight: str) -> tuple[np.ndarray, int | None]:
    q = q_nodes(model)[weight]
    return init_value(model, q.input[1]), attr(q, "axis")


def test_per_channel_weight_scales_match_numpy():
    model = tinymodels.deconv_matmul_model()
    conv = tinymodels.conv_model()
    qdq_a = quantize_model(model, {n: 0.05 for n in activation_names(model)}).model
    qdq_b = quantize_model(conv, {n: 0.05 for n in activation_names(conv)}).model
    weights_a = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    weights_b = {i.name: numpy_helper.to_array(i) for i in conv.graph.initializer}
    cases = [
        # (qdq model, weight, expected axis, max|w| over these axes)
        # ConvTranspose [I, O, k, k]: axis 0, input channels (what TensorRT's kernels take)
        (qdq_a, weights_a, "up_w", 0, (1, 2, 3)),
        (qdq_a, weights_a, "proj_w", 1, (0,)),  # MatMul B [K, N]: output channels on axis 1
        (qdq_b, weights_b, "w1", 0, (1, 2, 3)),  # Conv [O, I, k, k]: axis 0
        (qdq_b, weights_b, "wfc", 0, (1,)),  # Gemm transB=1: B is [N, K], axis 0
    ]
    for qdq, weights, name, axis, reduce in cases:
        scale, got_axis = _weight_scale_of(qdq, name)
        expected = np.abs(weights[name]).max(axis=reduce).astype(np.float32) / np.float32(127)
        assert got_axis == axis, name
        np.testing.assert_array_equal(scale, expected, err_msg=name)
        zero = init_value(qdq, q_nodes(qdq)[name].input[2])
        assert zero.dtype == np.int8 and zero.shape == expected.shape and not zero.any()
        # weights stay float32 (TensorRT quantizes them with the Q scale at build time)
        assert init_value(qdq, name).dtype == np.float32


def test_gemm_without_transpose_uses_axis_1_and_depthwise_uses_folded_weights():
    model = tinymodels.mobile_block_model()
    qdq = quantize_model(model, {n: 0.05 for n in activation_names(model)}).model
    w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    scale, axis = _weight_scale_of(qdq, "fc_w")  # Gemm transB=0: B [K, N]
    assert axis == 1
    np.testing.assert_array_equal(
        scale, np.abs(w["fc_w"]).max(axis=0).astype(np.float32) / np.float32(127)
    )
    # depthwise Conv (group=8, weight [8,1,3,3]) folded with dw_bn (epsilon 1e-3)
    dw_folded, _ = fold_reference(
        w["dw_w"], 0.0, w["dw_bn_gamma"], w["dw_bn_beta"], w["dw_bn_mean"], w["dw_bn_var"], 1e-3
    )
    q = next(n for n in qdq.graph.node if n.op_type == "QuantizeLinear" and "dw_w" in n.input[0])
    scale = init_value(qdq, q.input[1])
    assert attr(q, "axis") == 0 and scale.shape == (8,)
    expected = np.abs(dw_folded).max(axis=(1, 2, 3)) / np.float32(127)
    np.testing.assert_allclose(scale, expected, rtol=1e-6)


def test_all_zero_weight_channel_gets_a_valid_scale():
    model = tinymodels.conv_model()
    w1 = next(i for i in model.graph.initializer if i.name == "w1")
    values = numpy_helper.to_array(w1).copy()
    values[3] = 0.0
    w1.CopyFrom(numpy_helper.from_array(values, "w1"))
    qdq = quantize_model(model, {n: 0.05 for n in activation_names(model)}).model
    scale, _ = _weight_scale_of(qdq, "w1")
    assert np.all(scale > 0)
    out = run(qdq, {"input": np.ones((1, 3, 8, 8), np.float32)}, ["w1_dequantized"])
    assert not out["w1_dequantized"][3].any()


# ------------------------------------------------------------------ BatchNormalization folding


def test_folded_model_matches_original():
    model = tinymodels.mobile_block_model()
    folded, names = fold_batchnorm(model)
    assert names == {"stem_bn": "stem_bn", "dw_bn": "dw_bn", "pw_bn": "pw_bn"}  # BN -> Conv output
    assert not [n for n in folded.graph.node if n.op_type == "BatchNormalization"]
    onnx.checker.check_model(folded, full_check=True)
    x = np.random.default_rng(0).normal(0, 1, (16, 3, 12, 12)).astype(np.float32)
    inner = ["stem_bn", "dw_bn", "pw_bn", "logits"]
    a, b = run(model, {"input": x}, inner), run(folded, {"input": x}, inner)
    for name in inner:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_folded_weights_follow_the_batchnorm_formula():
    model = tinymodels.mobile_block_model()
    w = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    folded, _ = fold_batchnorm(model)
    pw = next(n for n in folded.graph.node if n.name == "pw")
    want_w, want_b = fold_reference(
        w["pw_w"],
        w["pw_b"],
        w["pw_bn_gamma"],
        w["pw_bn_beta"],
        w["pw_bn_mean"],
        w["pw_bn_var"],
        1e-3,
    )
    np.testing.assert_allclose(init_value(folded, pw.input[1]), want_w, rtol=1e-6)
    np.testing.assert_allclose(init_value(folded, pw.input[2]), want_b, rtol=1e-6, atol=1e-7)
    # stem Conv had no bias: the folded one has beta - mean * k
    stem = next(n for n in folded.graph.node if n.name == "stem")
    _, want_stem_b = fold_reference(
        w["stem_w"],
        0.0,
        w["stem_bn_gamma"],
        w["stem_bn_beta"],
        w["stem_bn_mean"],
        w["stem_bn_var"],
        1e-3,
    )
    np.testing.assert_allclose(init_value(folded, stem.input[2]), want_stem_b, rtol=1e-6)
    # the old weights are gone, not duplicated
    names = {i.name for i in folded.graph.initializer}
    assert "pw_w" not in names and "pw_bn_gamma" not in names


def test_batchnorm_whose_conv_output_is_also_used_elsewhere_is_not_folded():
    model = tinymodels.mobile_block_model()
    model.graph.output.append(helper.make_tensor_value_info("dw", onnx.TensorProto.FLOAT, None))
    _, names = fold_batchnorm(model)
    assert "dw_bn" not in names and "stem_bn" in names


# ------------------------------------------------------------------ accuracy after Q/DQ


def test_mobile_block_keeps_its_accuracy_after_qdq():
    """Random model, MinMax scales from numpy on 512 calibration samples, 512 fresh samples.

    Threshold reasoning: per tensor, MinMax INT8 on roughly Gaussian activations (max near 4
    sigma) gives SQNR ~ 6.02*8 + 4.77 - 20*log10(4*sqrt(3)) ~ 36 dB (uniform-noise model);
    about a dozen quantization points add their noise, losing ~10 dB -> logits around 25 dB,
    i.e. noise ~5% of the logit RMS. A top-1 flip needs the top-2 margin below that noise:
    for 10 random logits this happens for a few percent of samples at most. We ask for
    >= 95% agreement, cosine >= 0.99 and 20 dB, far from what a wrong placement, wrong axis
    or broken BN folding produces (agreement near chance: ~10-30%).
    """
    model = tinymodels.mobile_block_model()
    rng = np.random.default_rng(123)
    calib = rng.normal(0, 1, (512, 3, 12, 12)).astype(np.float32)
    test = rng.normal(0, 1, (512, 3, 12, 12)).astype(np.float32)
    scales = minmax_scales(model, {"input": calib})
    result = quantize_model(model, scales)
    assert result.missing == [] and result.skipped == {}
    onnx.checker.check_model(result.model, full_check=True)
    ref = run(model, {"input": test})["logits"].astype(np.float64)
    got = run(result.model, {"input": test})["logits"].astype(np.float64)
    agreement = np.mean(ref.argmax(1) == got.argmax(1))
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    sqnr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
    assert agreement >= 0.95, agreement
    assert cos.mean() >= 0.99, cos.mean()
    assert sqnr >= 20.0, sqnr
    # and the Q/DQ really changed something (quantization noise is present)
    assert np.abs(ref - got).max() > 0


def test_activation_qdq_matches_numpy_fake_quantization():
    model = tinymodels.conv_model()
    x = np.random.default_rng(3).uniform(-1.3, 1.3, (4, 3, 8, 8)).astype(np.float32)
    scale = np.float32(1.0) / np.float32(127)  # values beyond 1.0 clip
    result = quantize_model(model, {"input": float(scale), "relu1": 0.05, "flat": 0.05})
    out = run(result.model, {"input": x}, ["input_dequantized"])["input_dequantized"]
    expected = np.clip(np.round(x / scale), -128, 127).astype(np.float32) * scale  # half-even
    np.testing.assert_array_equal(out, expected)


# ------------------------------------------------------------------ missing / bad scales


def test_missing_scales_are_reported_and_left_float():
    model = tinymodels.conv_model()
    result = quantize_model(model, {"input": 0.01, "relu1": 0.05})
    assert result.missing == ["flat"]
    fc = next(n for n in result.model.graph.node if n.name == "fc")
    assert fc.input[0] == "flat"  # float input
    assert dequantized_input(result.model, "fc", 1) == "wfc"  # weight still quantized


@pytest.mark.parametrize(
    ("bad", "reason"), [(0.0, "scale is 0"), (float("inf"), "inf"), (float("nan"), "NaN")]
)
def test_zero_inf_nan_scales_are_skipped_with_a_note(bad, reason):
    model = tinymodels.conv_model()
    result = quantize_model(model, {"input": 0.01, "relu1": bad, "flat": 0.05})
    assert "relu1" not in result.quantized and reason in result.skipped["relu1"]
    conv2 = next(n for n in result.model.graph.node if n.name == "conv2")
    assert conv2.input[0] == "relu1"
    onnx.checker.check_model(result.model)
    run(result.model, {"input": np.ones((1, 3, 8, 8), np.float32)})


def test_cache_from_another_model_is_a_clear_error():
    model = tinymodels.mobile_block_model()
    other = minmax_scales(tinymodels.conv_model(), {"input": np.ones((2, 3, 8, 8), np.float32)})
    # the other cache even shares two names (input, flat): 2 of 7 is still "another model"
    with pytest.raises(CacheMismatchError) as info:
        quantize_model(model, other)
    message = str(info.value)
    assert "\n" not in message
    assert "2 of 7" in message
    for name in ("stem_act", "se_pool", "se_out"):
        assert name in message
    assert isinstance(info.value, TrtcalibError) and info.value.exit_code == 2


def test_disjoint_cache_fails_even_with_min_coverage_lowered():
    model = tinymodels.conv_model()
    with pytest.raises(CacheMismatchError, match="0 of 3"):
        quantize_model(model, {"something_else": 0.1}, min_coverage=0.1)


def test_partial_cache_is_accepted_when_allowed():
    model = tinymodels.mobile_block_model()
    result = quantize_model(model, {"input": 0.02, "flat": 0.05}, min_coverage=0.0)
    assert result.quantized == ["input", "flat"]
    assert set(result.missing) == {"stem_act", "se_pool", "se1_act", "se_out", "head"}


# ------------------------------------------------------------------ exclude


def test_exclude_by_node_name_and_op_type():
    model = tinymodels.conv_model()
    scales = {n: 0.05 for n in activation_names(model)}
    by_name = quantize_model(model, scales, exclude=["conv2"]).model
    conv2 = next(n for n in by_name.graph.node if n.name == "conv2")
    assert list(conv2.input) == ["relu1", "w2", "b2"]
    # the residual Add was quantized to fuse into conv2: a float conv2 fuses nothing, so the
    # Add stays float with it (no Q/DQ on relu1 anywhere)
    add1 = next(n for n in by_name.graph.node if n.name == "add1")
    assert list(add1.input) == ["conv2", "relu1"]
    assert not any(
        n.op_type == "QuantizeLinear" and n.input[0] == "relu1" for n in by_name.graph.node
    )
    # excluding the Add alone keeps its Conv in INT8
    by_add = quantize_model(model, scales, exclude=["add1"])
    assert "conv2" in by_add.layers and "add1" not in by_add.layers
    assert quantize_model(model, scales).fused_into == {"add1": "conv2"}
    by_type = quantize_model(model, scales, exclude=["Conv", "Add"])
    assert by_type.excluded == ["add1", "conv1", "conv2"]
    assert by_type.quantized == ["flat"]


def test_a_model_with_nothing_to_quantize_is_an_error_not_an_unchanged_copy():
    relu_only = helper.make_model(
        helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    with pytest.raises(ModelError, match="nothing to quantize: no Conv, ConvTranspose"):
        quantize_model(relu_only, {"x": 0.1, "y": 0.1})
    model = tinymodels.conv_model()
    scales = {n: 0.05 for n in activation_names(model)}
    with pytest.raises(ModelError, match="left after --exclude"):
        quantize_model(model, scales, exclude=["Conv", "Gemm", "Add"])


def test_excluding_a_folded_batchnorm_names_the_conv_that_absorbed_it():
    model = tinymodels.mobile_block_model()
    scales = {n: 0.05 for n in activation_names(model)}
    with pytest.raises(ModelError, match=r"--exclude dw_bn: folded .*dw_bn into Conv 'dw'"):
        quantize_model(model, scales, exclude=["dw_bn"])
    with pytest.raises(ModelError, match=r"BatchNormalization: 3 of them .*'stem', 'dw', 'pw'"):
        quantize_model(model, scales, exclude=["BatchNormalization"])
    # an unnamed Conv is named by the name it gets in the quantized model
    unnamed = onnx.ModelProto()
    unnamed.CopyFrom(model)
    next(n for n in unnamed.graph.node if n.name == "pw").name = ""
    result = quantize_model(unnamed, scales)
    pw_name = next(n.name for n in result.model.graph.node if n.output[0] == "pw_bn")
    with pytest.raises(ModelError, match=f"pw_bn into Conv '{pw_name}'"):
        quantize_model(unnamed, scales, exclude=["pw_bn"])


def test_excluding_batchnorm_when_only_some_are_folded_is_an_error():
    # dw feeds a graph output too, so dw_bn stays: excluding the op type would quietly leave
    # the Convs of the two folded ones quantized
    model = tinymodels.mobile_block_model()
    model.graph.output.append(helper.make_tensor_value_info("dw", onnx.TensorProto.FLOAT, None))
    scales = {n: 0.05 for n in activation_names(model)}
    with pytest.raises(ModelError, match=r"BatchNormalization: 2 of them .*'stem', 'pw'"):
        quantize_model(model, scales, exclude=["BatchNormalization"])


def test_unknown_exclude_is_an_error():
    model = tinymodels.conv_model()
    with pytest.raises(ModelError, match="nope"):
        quantize_model(model, {"input": 0.1}, exclude=["nope"])


# ------------------------------------------------------------------ opset


def test_old_opset_is_upgraded_to_13():
    model = tinymodels.conv_model(opset=11)
    scales = {n: 0.05 for n in activation_names(model)}
    result = quantize_model(model, scales)
    assert result.opset_upgraded_from == 11
    assert [o.version for o in result.model.opset_import if o.domain in ("", "ai.onnx")] == [13]
    onnx.checker.check_model(result.model, full_check=True)
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        run(result.model, {"input": x})["logits"], run(model, {"input": x})["logits"], atol=0.1
    )


def test_opset_that_cannot_be_converted_is_refused_clearly():
    # PyTorch's ATen fallback op has no ONNX schema: the version converter cannot adapt it
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("ATen", ["x"], ["u"], name="aten", operator="relu"),
        helper.make_node("Conv", ["u", "w"], ["y"], name="conv"),
    ]
    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    model = make_model(nodes, [x], [y], [w], opset=9)
    with pytest.raises(ModelError, match=r"opset 9.*opset >= 13.*ATen") as info:
        quantize_model(model, {"x": 0.1, "u": 0.1})
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ dtypes


def test_float16_activation_is_skipped_not_broken():
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT16, ["N", 4])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT16, ["N", 2])
    w = numpy_helper.from_array(np.ones((4, 2), np.float16), "w")
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x], [y], [w])
    result = quantize_model(model, {"x": 0.1})
    assert "x" in result.skipped and "w" in result.skipped
    assert result.quantized == []
    run(result.model, {"x": np.ones((1, 4), np.float16)})


def test_already_quantized_model_is_refused():
    model = tinymodels.conv_model()
    once = quantize_model(model, {n: 0.05 for n in activation_names(model)}).model
    with pytest.raises(ModelError, match="already has .* QuantizeLinear"):
        quantize_model(once, {n: 0.05 for n in activation_names(model)})

"""Tiny ONNX models built in code for the tests (importable as `tinymodels`, see pyproject)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def conv_model(batch: int | str = "N", seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """input[N,3,8,8] -> Conv -> Relu -> Conv -> Add(residual) -> GlobalAveragePool -> Flatten
    -> Gemm -> logits[N,4]. Every activation is float32; names are stable for tests."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.3, (8, 3, 3, 3))
    b1 = rng.normal(0, 0.1, (8,))
    w2 = rng.normal(0, 0.3, (8, 8, 3, 3))
    b2 = rng.normal(0, 0.1, (8,))
    wfc = rng.normal(0, 0.3, (4, 8))
    bfc = rng.normal(0, 0.1, (4,))
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["conv1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("Conv", ["relu1", "w2", "b2"], ["conv2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["conv2", "relu1"], ["add1"], name="add1"),
        helper.make_node("GlobalAveragePool", ["add1"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
        helper.make_node("Gemm", ["flat", "wfc", "bfc"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4])],
        [
            _init("w1", w1),
            _init("b1", b1),
            _init("w2", w2),
            _init("b2", b2),
            _init("wfc", wfc),
            _init("bfc", bfc),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def two_input_model(batch: int | str = "N") -> onnx.ModelProto:
    """a[N,4] and b[N,4] -> Mul -> Relu -> MatMul(w) -> out[N,2]; plus an int64 side output."""
    w = np.arange(8, dtype=np.float32).reshape(4, 2) / 8.0
    nodes = [
        helper.make_node("Mul", ["a", "b"], ["prod"], name="mul"),
        helper.make_node("Relu", ["prod"], ["act"], name="relu"),
        helper.make_node("MatMul", ["act", "w"], ["out"], name="matmul"),
        helper.make_node("ArgMax", ["out"], ["idx"], name="argmax", axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "two_input",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [batch, 4]),
        ],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 2]),
            helper.make_tensor_value_info("idx", TensorProto.INT64, [batch]),
        ],
        [_init("w", w)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make(nodes, name: str, inputs, outputs, initializers=()) -> onnx.ModelProto:
    """A checked opset-17 model from nodes and value infos (the common tail of the builders)."""
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, directory: Path, name: str = "model.onnx") -> Path:
    path = Path(directory) / name
    onnx.save(model, str(path))
    return path


def mixed_types_model(batch: int | str = "N") -> onnx.ModelProto:
    """x[N,4] float plus a constant-only branch and int tensors (owner: pipeline tests).

    Constant c -> Mul(c, k) = "const_scaled" (constant-only, float); x + const_scaled = "shifted";
    Shape(shifted) = "shape" (int64); Reshape(shifted, shape) = "reshaped"; Cast(shifted, int32) =
    "as_int"; Cast(as_int, float) = "back"; Sigmoid(reshaped) = "y". Outputs: y, as_int.
    """
    c = helper.make_tensor("c", TensorProto.FLOAT, [4], [0.5, -1.0, 2.0, 0.0])
    nodes = [
        helper.make_node("Constant", [], ["c_out"], name="const", value=c),
        helper.make_node("Mul", ["c_out", "k"], ["const_scaled"], name="scale_const"),
        helper.make_node("Add", ["x", "const_scaled"], ["shifted"], name="add"),
        helper.make_node("Shape", ["shifted"], ["shape"], name="shape"),
        helper.make_node("Reshape", ["shifted", "shape"], ["reshaped"], name="reshape"),
        helper.make_node("Cast", ["shifted"], ["as_int"], name="to_int", to=TensorProto.INT32),
        helper.make_node("Cast", ["as_int"], ["back"], name="to_float", to=TensorProto.FLOAT),
        helper.make_node("Sigmoid", ["reshaped"], ["y"], name="sigmoid"),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed_types",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4]),
            helper.make_tensor_value_info("as_int", TensorProto.INT32, [batch, 4]),
        ],
        [_init("k", np.full((4,), 3.0))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _bn_params(rng: np.random.Generator, channels: int, prefix: str) -> list[TensorProto]:
    """BatchNormalization scale, bias, mean, var with values far from identity."""
    return [
        _init(f"{prefix}_gamma", rng.uniform(0.5, 1.5, channels)),
        _init(f"{prefix}_beta", rng.normal(0, 0.2, channels)),
        _init(f"{prefix}_mean", rng.normal(0, 0.3, channels)),
        _init(f"{prefix}_var", rng.uniform(0.3, 2.0, channels)),
    ]


def mobile_block_model(batch: int | str = "N", seed: int = 0) -> onnx.ModelProto:
    """A MobileNetV3-like block with UNFUSED BatchNormalization (owner: qdq tests).

    input[N,3,12,12] -> stem Conv(3->8, no bias) -> stem_bn -> HardSwish "stem_act"
    -> depthwise Conv(group=8, no bias) "dw" -> dw_bn -> Relu "dw_act"
    -> squeeze-excite: GlobalAveragePool -> Conv 1x1 (8->4) -> Relu -> Conv 1x1 (4->8)
       -> HardSigmoid "se_gate"; Mul(dw_act, se_gate) "se_out"
    -> pointwise Conv(8->8, bias) "pw" -> pw_bn "pw_bn" -> Add(pw_bn, stem_act) "res" (residual)
    -> GlobalAveragePool -> Flatten "flat" -> MatMul(w[8,16]) -> Add(bias) -> HardSwish "head"
    -> Gemm(16->10, transB=0) -> logits[N,10]. Opset 17.
    """
    rng = np.random.default_rng(seed)
    inits = [
        _init("stem_w", rng.normal(0, 0.4, (8, 3, 3, 3))),
        *_bn_params(rng, 8, "stem_bn"),
        _init("dw_w", rng.normal(0, 0.5, (8, 1, 3, 3))),
        *_bn_params(rng, 8, "dw_bn"),
        _init("se1_w", rng.normal(0, 0.5, (4, 8, 1, 1))),
        _init("se1_b", rng.normal(0, 0.1, (4,))),
        _init("se2_w", rng.normal(0, 0.5, (8, 4, 1, 1))),
        _init("se2_b", rng.normal(0, 0.1, (8,))),
        _init("pw_w", rng.normal(0, 0.4, (8, 8, 1, 1))),
        _init("pw_b", rng.normal(0, 0.1, (8,))),
        *_bn_params(rng, 8, "pw_bn"),
        _init("head_w", rng.normal(0, 0.5, (8, 16))),
        _init("head_b", rng.normal(0, 0.1, (16,))),
        _init("fc_w", rng.normal(0, 0.4, (16, 10))),
        _init("fc_b", rng.normal(0, 0.1, (10,))),
    ]

    def bn(name: str, x: str, out: str) -> onnx.NodeProto:
        ins = [x, f"{name}_gamma", f"{name}_beta", f"{name}_mean", f"{name}_var"]
        return helper.make_node("BatchNormalization", ins, [out], name=name, epsilon=1e-3)

    nodes = [
        helper.make_node(
            "Conv", ["input", "stem_w"], ["stem"], name="stem", pads=[1, 1, 1, 1], strides=[2, 2]
        ),
        bn("stem_bn", "stem", "stem_bn"),
        helper.make_node("HardSwish", ["stem_bn"], ["stem_act"], name="stem_act"),
        helper.make_node(
            "Conv", ["stem_act", "dw_w"], ["dw"], name="dw", pads=[1, 1, 1, 1], group=8
        ),
        bn("dw_bn", "dw", "dw_bn"),
        helper.make_node("Relu", ["dw_bn"], ["dw_act"], name="dw_act"),
        helper.make_node("GlobalAveragePool", ["dw_act"], ["se_pool"], name="se_pool"),
        helper.make_node("Conv", ["se_pool", "se1_w", "se1_b"], ["se1"], name="se1"),
        helper.make_node("Relu", ["se1"], ["se1_act"], name="se1_act"),
        helper.make_node("Conv", ["se1_act", "se2_w", "se2_b"], ["se2"], name="se2"),
        helper.make_node("HardSigmoid", ["se2"], ["se_gate"], name="se_gate"),
        helper.make_node("Mul", ["dw_act", "se_gate"], ["se_out"], name="se_out"),
        helper.make_node("Conv", ["se_out", "pw_w", "pw_b"], ["pw"], name="pw"),
        bn("pw_bn", "pw", "pw_bn"),
        helper.make_node("Add", ["pw_bn", "stem_act"], ["res"], name="res"),
        helper.make_node("GlobalAveragePool", ["res"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flat"),
        helper.make_node("MatMul", ["flat", "head_w"], ["head_mm"], name="head_mm"),
        helper.make_node("Add", ["head_mm", "head_b"], ["head_pre"], name="head_bias"),
        helper.make_node("HardSwish", ["head_pre"], ["head"], name="head"),
        helper.make_node("Gemm", ["head", "fc_w", "fc_b"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "mobile_block",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 12, 12])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def deconv_matmul_model(batch: int | str = "N", seed: int = 0) -> onnx.ModelProto:
    """x[N,4,4,4] -> ConvTranspose(4->6, k2, s2, weight [4,6,2,2]) "up" -> Relu "up_act"
    -> Reshape [N, 6, 64] "tokens" -> MatMul(tokens, y[N,64,3]) "bmm" (both activations)
    -> MatMul(bmm, w[3,5]) "proj" -> out[N,6,5] (owner: qdq tests)."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("ConvTranspose", ["x", "up_w", "up_b"], ["up"], name="up", strides=[2, 2]),
        helper.make_node("Relu", ["up"], ["up_act"], name="up_act"),
        helper.make_node("Reshape", ["up_act", "tokens_shape"], ["tokens"], name="tokens"),
        helper.make_node("MatMul", ["tokens", "y"], ["bmm"], name="bmm"),
        helper.make_node("MatMul", ["bmm", "proj_w"], ["out"], name="proj"),
    ]
    graph = helper.make_graph(
        nodes,
        "deconv_matmul",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4, 4, 4]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 64, 3]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [batch, 6, 5])],
        [
            _init("up_w", rng.normal(0, 0.5, (4, 6, 2, 2))),
            _init("up_b", rng.normal(0, 0.1, (6,))),
            numpy_helper.from_array(np.array([0, 6, 64], dtype=np.int64), "tokens_shape"),
            _init("proj_w", rng.normal(0, 0.5, (3, 5))),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model

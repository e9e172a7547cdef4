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


def save(model: onnx.ModelProto, directory: Path, name: str = "model.onnx") -> Path:
    path = Path(directory) / name
    onnx.save(model, str(path))
    return path

"""A ResNet-18-shaped ONNX model built in code with random weights (for timing, not accuracy).

The graph is what torchvision's resnet18 exports after BatchNorm folding: Conv(+bias) / Relu /
MaxPool, eight BasicBlocks (two 3x3 convs, a 1x1 stride-2 downsample conv where the shape changes,
Add, Relu), GlobalAveragePool, Flatten, Gemm to 1000 logits. Weights are He-normal so the
activations keep a realistic magnitude through the 18 layers. No download, no torch.

    python benchmarks/resnet18.py out.onnx      # writes the model (about 45 MB)
"""

from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def _weight(self, name: str, shape: tuple[int, ...], fan_in: int) -> str:
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)
        self.inits.append(numpy_helper.from_array(w, name))
        return name

    def _bias(self, name: str, size: int) -> str:
        b = self.rng.normal(0.0, 0.05, (size,)).astype(np.float32)
        self.inits.append(numpy_helper.from_array(b, name))
        return name

    def conv(self, x: str, name: str, cin: int, cout: int, k: int, stride: int) -> str:
        w = self._weight(f"{name}.weight", (cout, cin, k, k), cin * k * k)
        b = self._bias(f"{name}.bias", cout)
        pad = k // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w, b],
                [f"{name}_out"],
                name=name,
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        return f"{name}_out"

    def op(self, op_type: str, inputs: list[str], name: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    def basic_block(self, x: str, name: str, cin: int, cout: int, stride: int) -> str:
        y = self.conv(x, f"{name}.conv1", cin, cout, 3, stride)
        y = self.op("Relu", [y], f"{name}.relu1")
        y = self.conv(y, f"{name}.conv2", cout, cout, 3, 1)
        identity = x
        if stride != 1 or cin != cout:
            identity = self.conv(x, f"{name}.downsample", cin, cout, 1, stride)
        y = self.op("Add", [y, identity], f"{name}.add")
        return self.op("Relu", [y], f"{name}.relu2")


def build_resnet18(batch: int | str = "N", seed: int = 0, opset: int = 17) -> onnx.ModelProto:
    """input[batch,3,224,224] float32 -> logits[batch,1000] float32."""
    b = _Builder(seed)
    x = b.conv("input", "conv1", 3, 64, 7, 2)
    x = b.op("Relu", [x], "relu")
    x = b.op("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if (block == 0 and stage > 1) else 1
            x = b.basic_block(x, f"layer{stage}.{block}", cin, cout, stride)
            cin = cout
    x = b.op("GlobalAveragePool", [x], "avgpool")
    x = b.op("Flatten", [x], "flatten", axis=1)
    wfc = b._weight("fc.weight", (1000, 512), 512)
    bfc = b._bias("fc.bias", 1000)
    b.nodes.append(helper.make_node("Gemm", [x, wfc, bfc], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(
        b.nodes,
        "resnet18_random",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 1000])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/resnet18.py OUT.onnx")
    onnx.save(build_resnet18(), sys.argv[1])
    print(sys.argv[1])

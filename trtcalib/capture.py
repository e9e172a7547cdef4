"""Run an ONNX model on the CPU with onnxruntime and hand out its float activations, batch by batch.

Which tensors: the float graph inputs and the float outputs of the model's nodes, in topological
order -- the tensors TensorRT's calibrator gives a dynamic range to. Not exposed by default:
- integer/bool tensors (shapes, indices, masks): TensorRT never quantizes them to INT8;
- initializers and the outputs of constant-only subgraphs (Constant nodes and nodes whose inputs
  are all constant): they do not depend on the calibration data, so a histogram of them says
  nothing about activations, and INT8 weight scales come from the weights themselves (TensorRT
  and the Q/DQ export take max |w|, per channel for Conv/Gemm). Name such a tensor explicitly
  in `tensors=` to expose it anyway.

How: the model is copied in memory, every wanted tensor becomes a graph output, and onnxruntime
loads the copy from bytes, so nothing is ever written next to the user's file. onnxruntime's
graph optimisations never remove a node whose output is a graph output, so every level keeps the
exposed tensors; it only loses the fusions across them.

With `derive=True` (what `trtcalib calibrate` uses) a Relu output whose input is captured is
not exposed at all: its statistics are those of max(x, 0) over the input, computed by the
collector from the input; nor is the output of a pure rearrangement (Reshape, Transpose,
Flatten, ...): its statistics are copied from its input. Histograms, amax and scales are
bit-identical to producing the tensors (tested); only the sign of a zero min/max may differ
(onnxruntime's Relu keeps -0.0, max(x, 0) here reports +0.0). Measured on the
ResNet-18-shaped benchmark (256 samples, batch 32): onnxruntime time 7.2 s -> 6.3 s, peak RSS
1.5 GB -> 1.15 GB.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, shape_inference

from trtcalib.errors import DataError, ModelError, first_line

# protobuf cannot serialise a message of 2 GiB or more; such models go through external data.
PROTOBUF_LIMIT = onnx.checker.MAXIMUM_PROTOBUF

# Ops whose output is not a function of their inputs: never treated as constant.
_NONDETERMINISTIC = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
}

_FLOAT_ELEM_TYPES = {
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
}
_FLOAT_ORT_TYPES = {"tensor(float)", "tensor(double)", "tensor(float16)", "tensor(bfloat16)"}

# onnxruntime optimisation level. Every level keeps the exposed tensors (tests check it); they
# differ in speed and memory. Measured on ResNet-18 with all 49 activations exposed, batch 32,
# three runs per setting in fresh processes (CPU seconds for 3 batches; peak RSS):
#   all + memory pattern on  ~6.2 s, 2.2 GB    all + memory pattern off  ~5.9 s, 1.24 GB
#   extended (either)        ~8.2 s, 1.03 GB   (basic is no faster than extended)
# "all" adds the NCHWc layout transform (faster convolutions); its pre-planned memory pattern
# then keeps NCHWc buffers next to every exposed NCHW output and doubles peak memory, while
# planning brings no speed with ~50 graph outputs. So: "all" without the memory pattern.
DEFAULT_OPTIMIZATION = "all"
_LEVELS = ("disable", "basic", "extended", "all")


def _ort_level(name: str):
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if name not in levels:
        raise ValueError(f"optimization must be one of {', '.join(_LEVELS)}, not {name!r}")
    return levels[name]


def _constant_tensors(graph: onnx.GraphProto) -> set[str]:
    """Names whose value is fixed before any data arrives: initializers and constant subgraphs."""
    # initializers listed as graph inputs too are weights as well (input_specs skips them)
    const = {init.name for init in graph.initializer}
    const |= {init.values.name for init in graph.sparse_initializer}
    for node in graph.node:
        if node.op_type in _NONDETERMINISTIC:
            continue
        # nodes with subgraphs (If, Loop, Scan) may read outer activations: not constant
        if any(attr.type in (attr.GRAPH, attr.GRAPHS) for attr in node.attribute):
            continue
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (inputs and all(n in const for n in inputs)):
            const.update(name for name in node.output if name)
    return const


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor onnx shape inference can type (0 = unknown)."""
    # Types follow from the graph structure alone: inferring on a copy without initializer data
    # is faster (no weight bytes cross into C++) and works for models over protobuf's 2 GiB.
    skeleton = _without_weights(model)
    try:
        inferred = shape_inference.infer_shapes(skeleton, strict_mode=False)
    except Exception:  # custom ops or broken shapes: fall back to what the model declares
        inferred = skeleton
    types: dict[str, int] = {}
    graph = inferred.graph
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        if value.type.HasField("tensor_type"):
            types[value.name] = value.type.tensor_type.elem_type
        else:  # sequence, map, optional: never calibrated
            types[value.name] = -1
    for init in graph.initializer:
        types[init.name] = init.data_type
    return types


def _without_weights(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose initializers keep name, type and dims but no data."""
    copy = onnx.ModelProto()
    copy.ir_version = model.ir_version
    copy.opset_import.extend(model.opset_import)
    graph = copy.graph
    graph.name = model.graph.name
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    # typed graph inputs instead of initializers: the same information without the bytes
    declared = {value.name for value in model.graph.input}
    for init in model.graph.initializer:
        if init.name not in declared:
            graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    copy.functions.extend(model.functions)
    return copy


# Ops whose output holds exactly the values of their first input, only rearranged: the output's
# statistics are the input's (TensorRT histograms values, not positions).
ALIAS_OPS = frozenset({"Identity", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose"})


def _derivations(
    graph: onnx.GraphProto, wanted: Sequence[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """Wanted tensors that need not be produced: ({Relu output: its produced input},
    {alias output: the tensor whose statistics it has}). A Relu needs its input produced (a
    Relu of a Relu or of an alias is fetched); an alias maps to the root of its chain. Decided
    from the edges alone, so a graph whose nodes are not listed in order (onnxruntime runs
    those) gets the same answer."""
    chosen = set(wanted)
    relu_of: dict[str, str] = {}
    alias_of: dict[str, str] = {}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or not node.input or node.input[0] not in chosen:
            continue
        outputs = [out for out in node.output if out in chosen]
        if node.op_type == "Relu":
            relu_of.update((out, node.input[0]) for out in outputs)
        elif node.op_type in ALIAS_OPS:
            alias_of.update((out, node.input[0]) for out in outputs)
    relu = {o: i for o, i in relu_of.items() if i not in relu_of and i not in alias_of}
    alias: dict[str, str] = {}
    for name in alias_of:
        root, seen = name, set()
        while root in alias_of and root not in seen:  # a cycle is not a valid graph: stop
            seen.add(root)
            root = alias_of[root]
        alias[name] = root
    return relu, alias


def _serialize_below_limit(model: onnx.ModelProto) -> bytes | None:
    """The model's bytes, or None when it is too large to pass as bytes (protobuf's 2 GiB).

    Serialising is how protobuf measures a message anyway (`ByteSize` costs as much), so the
    bytes are made once and kept when they fit."""
    from google.protobuf.message import EncodeError

    try:
        data = model.SerializeToString()
    except (EncodeError, ValueError):  # beyond 2 GiB: EncodeError seen with protobuf 7.36
        return None
    return data if len(data) < PROTOBUF_LIMIT else None


class ActivationCapture:
    """onnxruntime (CPU) session over a copy of `model` that returns its float activations.

    `tensors` restricts the capture to these names (any float graph input or node output,
    constant ones included); unknown or non-float names are a ModelError. `optimization` is
    onnxruntime's graph optimisation level (disable|basic|extended|all).

    `derive=True`: tensors whose statistics follow from another captured tensor are not
    produced, and `run()` leaves them out. `derived` maps the output of a Relu to its input (the
    caller collects max(x, 0) of it: `TensorCollector.collect(x, relu=True)`); `aliases` maps
    the output of a pure rearrangement (`ALIAS_OPS`: Reshape, Transpose, Flatten, ...) to the
    tensor holding the same values (the caller copies its statistics). Why: every exposed
    output costs onnxruntime a buffer and a copy (and, at level "all", a layout reorder);
    ResNets have a Relu after nearly every Conv and Add, ~35% of all activation elements.
    """

    def __init__(
        self,
        model: onnx.ModelProto,
        tensors: Sequence[str] | None = None,
        *,
        optimization: str = DEFAULT_OPTIMIZATION,
        intra_op_threads: int = 0,
        derive: bool = False,
    ) -> None:
        import onnxruntime as ort

        graph = model.graph
        types = _elem_types(model)
        constants = _constant_tensors(graph)
        initializers = {init.name for init in graph.initializer}
        self.input_names = [v.name for v in graph.input if v.name not in initializers]

        # every tensor name in topological order (ONNX requires nodes to be sorted)
        order = list(self.input_names)
        order += [name for node in graph.node for name in node.output if name]
        known = set(order)

        def float_or_unknown(name: str) -> bool:
            elem = types.get(name, 0)
            return elem == 0 or elem in _FLOAT_ELEM_TYPES

        if tensors is None:
            wanted = [n for n in order if n not in constants and float_or_unknown(n)]
        else:
            requested = list(dict.fromkeys(tensors))
            unknown = [name for name in requested if name not in known]
            if unknown:
                name = unknown[0]
                hint = (
                    " (an initializer: weights are not calibrated)" if name in initializers else ""
                )
                more = f" (and {len(unknown) - 1} more: {', '.join(unknown[1:4])}" + (
                    ", ...)" if len(unknown) > 4 else ")"
                )
                raise ModelError(
                    f"tensor {name!r}: not an input or node output of the model{hint}"
                    + (more if len(unknown) > 1 else "")
                )
            for name in requested:
                if not float_or_unknown(name):
                    dtype = (
                        helper.tensor_dtype_to_np_dtype(types[name])
                        if types[name] > 0
                        else ("non-tensor")
                    )
                    raise ModelError(
                        f"tensor {name!r}: is {dtype}, only float tensors are calibrated"
                    )
            chosen = set(requested)
            wanted = [n for n in order if n in chosen]

        inputs = set(self.input_names)
        self.derived: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        if derive:
            self.derived, self.aliases = _derivations(graph, wanted)
        self._fetch = [
            n for n in wanted if n not in inputs and n not in self.derived and n not in self.aliases
        ]

        augmented = onnx.ModelProto()
        augmented.CopyFrom(model)
        present = {value.name for value in augmented.graph.output}
        for name in self._fetch:
            if name not in present:
                # untyped: onnxruntime infers the type, also where onnx shape inference could not
                augmented.graph.output.append(onnx.ValueInfoProto(name=name))

        options = ort.SessionOptions()
        options.graph_optimization_level = _ort_level(optimization)
        options.intra_op_num_threads = intra_op_threads
        options.enable_mem_pattern = False  # see DEFAULT_OPTIMIZATION: halves peak memory
        # idle onnxruntime threads must not spin: the statistics threads run right after run()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # onnxruntime warnings are not actionable for the user
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        try:
            serialized = _serialize_below_limit(augmented)
            if serialized is None:
                # A >2 GiB model cannot be passed as bytes: write it with external data into a
                # private temporary directory (never next to the user's model), kept alive as
                # long as this object because onnxruntime may memory-map the weights.
                self._tmpdir = tempfile.TemporaryDirectory(prefix="trtcalib-capture-")
                path = Path(self._tmpdir.name) / "augmented.onnx"
                onnx.save_model(
                    augmented,
                    str(path),
                    save_as_external_data=True,
                    all_tensors_to_one_file=True,
                    location="augmented.onnx.data",
                )
                del augmented
                self._session = ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            else:
                self._session = ort.InferenceSession(
                    serialized, options, providers=["CPUExecutionProvider"]
                )
                del serialized
        except Exception as exc:
            self.close()
            first = first_line(exc)
            raise ModelError(f"onnxruntime cannot load the model: {first}") from exc

        # onnxruntime has the final word on types (it also types what onnx inference left open)
        ort_types = {out.name: out.type for out in self._session.get_outputs()}
        ort_types.update({inp.name: inp.type for inp in self._session.get_inputs()})
        # not produced: a Relu or a rearrangement keeps its input's type
        for output, source in (*self.derived.items(), *self.aliases.items()):
            ort_types.setdefault(output, ort_types.get(source))
        not_float = [n for n in wanted if ort_types.get(n) not in _FLOAT_ORT_TYPES]
        if tensors is not None and not_float:
            name = not_float[0]
            self.close()
            raise ModelError(
                f"tensor {name!r}: is {ort_types.get(name)}, only float tensors are calibrated"
            )
        self.tensor_names: list[str] = [n for n in wanted if n not in not_float]
        self._fetch = [n for n in self._fetch if n not in not_float]
        self.derived = {o: i for o, i in self.derived.items() if o not in not_float}
        self.aliases = {o: i for o, i in self.aliases.items() if o not in not_float}
        if not self.tensor_names:
            self.close()
            raise ModelError("the model has no float activations to calibrate")

    def run(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch in (one array per model input), every exposed activation out (no copies);
        the `derived` and `aliases` ones are not produced."""
        missing = [name for name in self.input_names if name not in arrays]
        if missing:
            raise DataError(f"input {missing[0]!r}: no data for this model input")
        feed = {name: arrays[name] for name in self.input_names}
        out: dict[str, np.ndarray] = {}
        fetched: dict[str, np.ndarray] = {}
        if self._fetch:
            try:
                values = self._session.run(self._fetch, feed)
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument types
                first = first_line(exc)
                raise DataError(f"onnxruntime failed on this batch: {first}") from exc
            fetched = dict(zip(self._fetch, values, strict=True))
        for name in self.tensor_names:
            if name not in self.derived and name not in self.aliases:
                out[name] = feed[name] if name in feed else fetched[name]
        return out

    def close(self) -> None:
        """Release the session and the temporary directory (large models only)."""
        self._session = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> ActivationCapture:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["ActivationCapture", "DEFAULT_OPTIMIZATION", "PROTOBUF_LIMIT"]

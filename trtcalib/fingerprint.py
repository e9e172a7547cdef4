"""Fingerprints that tell whether a cache still matches its model and its calibration data.

`model_fingerprint(model)`: sha256 over what determines the activations TensorRT calibrates.
  Included: opset imports, functions (with their attribute defaults and opsets), graph
  inputs/outputs (names, types, shapes), every node's op_type, domain, input/output tensor names
  and attributes (sorted by name; subgraphs recursively), and every initializer's name, data
  type, dims and value bytes (external data loaded; float_data vs raw_data spellings of the same
  values hash equal; little-endian).
  Excluded, because they do not change any activation: the file path, doc strings, producer
  name/version, model/graph names, metadata_props, ir_version, node names, value_info (shape
  inference annotations), the order of initializers and the names of attribute tensors
  (a Constant node's value).
`DataFingerprint`: incremental sha256 over the calibration samples in order (per input: name,
  dtype, per-sample shape, bytes). It depends on content and sample order but NOT on how samples
  are chunked into batches, so a batch-size change is reported as that, not as "data differs".
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, TensorProto, numpy_helper

from trtcalib.errors import DataError, ModelError

_FORMAT = b"trtcalib-fingerprint-v1"


class _Hasher:
    """sha256 fed with length-prefixed fields, so concatenations cannot collide."""

    def __init__(self) -> None:
        self.h = hashlib.sha256(_FORMAT)

    def add_tag(self, tag: str) -> None:
        self.add_bytes(tag.encode())

    def add_bytes(self, data: bytes | memoryview) -> None:
        self.h.update(struct.pack("<Q", data.nbytes if isinstance(data, memoryview) else len(data)))
        self.h.update(data)

    def add_str(self, text: str) -> None:
        self.add_bytes(text.encode("utf-8"))

    def add_int(self, value: int) -> None:
        self.h.update(struct.pack("<q", int(value)))

    def add_array(self, array: np.ndarray) -> None:
        if array.dtype == object:  # string tensors: bytes or str elements
            self.add_str(f"object{list(array.shape)}")
            for item in array.reshape(-1):
                self.add_bytes(item if isinstance(item, bytes) else str(item).encode("utf-8"))
            return
        array = _little_endian(np.ascontiguousarray(array))
        self.add_str(f"{array.dtype.str}{list(array.shape)}")
        self.add_bytes(array.reshape(-1).view(np.uint8).data if array.size else b"")


def _little_endian(array: np.ndarray) -> np.ndarray:
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and _BIG_ENDIAN):
        return array.astype(array.dtype.newbyteorder("<"))
    return array


_BIG_ENDIAN = np.dtype("=u4").str.startswith(">")


# ---------------------------------------------------------------- model


def model_fingerprint(model: onnx.ModelProto, *, base_dir: str | os.PathLike | None = None) -> str:
    """sha256 hex digest of the model's graph and weights (see the module docstring).

    External weights must be loaded (`trtcalib.model.load_model` does) or `base_dir` given.
    """
    h = _Hasher()
    h.add_tag("opsets")
    for opset in sorted((o.domain, o.version) for o in model.opset_import):
        h.add_str(opset[0])
        h.add_int(opset[1])
    base = None if base_dir is None else os.fspath(base_dir)
    h.add_tag("graph")
    _hash_graph(h, model.graph, base)
    h.add_tag("functions")
    for func in sorted(model.functions, key=lambda f: (f.domain, f.name, f.overload)):
        h.add_str(func.domain)
        h.add_str(func.name)
        h.add_str(func.overload)
        _hash_strings(h, func.input)
        _hash_strings(h, func.output)
        _hash_strings(h, func.attribute)
        # attributes with default values, and the opsets the body's nodes resolve against
        h.add_int(len(func.attribute_proto))
        for attr in sorted(func.attribute_proto, key=lambda a: a.name):
            _hash_attribute(h, attr, base)
        for opset in sorted((o.domain, o.version) for o in func.opset_import):
            h.add_str(opset[0])
            h.add_int(opset[1])
        h.add_int(len(func.node))
        for node in func.node:
            _hash_node(h, node, base)
    return h.h.hexdigest()


def _hash_strings(h: _Hasher, items) -> None:
    h.add_int(len(items))
    for item in items:
        h.add_str(item)


def _hash_value_infos(h: _Hasher, infos) -> None:
    h.add_int(len(infos))
    for info in infos:
        stripped = onnx.ValueInfoProto()
        stripped.CopyFrom(info)
        for name in ("doc_string", "metadata_props"):
            if name in stripped.DESCRIPTOR.fields_by_name:
                stripped.ClearField(name)
        h.add_bytes(stripped.SerializeToString(deterministic=True))


def _hash_graph(h: _Hasher, graph: GraphProto, base: str | None) -> None:
    h.add_tag("inputs")
    _hash_value_infos(h, graph.input)
    h.add_tag("outputs")
    _hash_value_infos(h, graph.output)
    h.add_tag("nodes")
    h.add_int(len(graph.node))
    for node in graph.node:
        _hash_node(h, node, base)
    h.add_tag("initializers")
    h.add_int(len(graph.initializer))
    for tensor in sorted(graph.initializer, key=lambda t: t.name):
        _hash_tensor(h, tensor, base)
    h.add_tag("sparse")
    h.add_int(len(graph.sparse_initializer))
    for sparse in sorted(graph.sparse_initializer, key=lambda s: s.values.name):
        _hash_tensor(h, sparse.values, base)
        _hash_tensor(h, sparse.indices, base)
        h.add_str(str(list(sparse.dims)))


def _hash_node(h: _Hasher, node: onnx.NodeProto, base: str | None) -> None:
    h.add_tag("node")
    h.add_str(node.domain)
    h.add_str(node.op_type)
    h.add_str(getattr(node, "overload", ""))
    _hash_strings(h, node.input)
    _hash_strings(h, node.output)
    h.add_int(len(node.attribute))
    for attr in sorted(node.attribute, key=lambda a: a.name):
        _hash_attribute(h, attr, base)


def _hash_attribute(h: _Hasher, attr: AttributeProto, base: str | None) -> None:
    h.add_str(attr.name)
    h.add_int(attr.type)
    h.add_str(attr.ref_attr_name)
    kind = attr.type
    if kind == AttributeProto.TENSOR:
        _hash_tensor(h, attr.t, base, with_name=False)
    elif kind == AttributeProto.TENSORS:
        for tensor in attr.tensors:
            _hash_tensor(h, tensor, base, with_name=False)
    elif kind == AttributeProto.GRAPH:
        _hash_graph(h, attr.g, base)
    elif kind == AttributeProto.GRAPHS:
        for graph in attr.graphs:
            _hash_graph(h, graph, base)
    elif kind == AttributeProto.SPARSE_TENSOR:
        _hash_tensor(h, attr.sparse_tensor.values, base, with_name=False)
        _hash_tensor(h, attr.sparse_tensor.indices, base, with_name=False)
        h.add_str(str(list(attr.sparse_tensor.dims)))
    else:  # scalars, strings, lists, type protos: their serialisation is canonical enough
        plain = AttributeProto()
        plain.CopyFrom(attr)
        plain.ClearField("doc_string")
        h.add_bytes(plain.SerializeToString(deterministic=True))


def _hash_tensor(
    h: _Hasher, tensor: TensorProto, base: str | None, *, with_name: bool = True
) -> None:
    # attribute tensors (Constant values) are anonymous: exporters name them at random
    h.add_str(tensor.name if with_name else "")
    h.add_int(tensor.data_type)
    h.add_str(str(list(tensor.dims)))
    external = tensor.data_location == TensorProto.EXTERNAL and not tensor.HasField("raw_data")
    if external and base is None:
        raise ModelError(
            f"initializer {tensor.name!r}: external weights are not loaded; load the model with "
            "its weights (trtcalib.model.load_model) or pass base_dir"
        )
    try:
        array = numpy_helper.to_array(tensor, base_dir=base or "")
    except Exception as exc:  # missing external file, malformed data
        raise ModelError(f"initializer {tensor.name!r}: cannot read its values ({exc})") from None
    h.add_array(np.asarray(array))


# ---------------------------------------------------------------- data


class DataFingerprint:
    """Incremental sha256 over calibration samples, in order, independent of batch boundaries.

        fp = DataFingerprint()
        for batch in batches:
            fp.update(batch.arrays, num_real=batch.num_real)   # padded rows are not data
        fp.hexdigest()

    Every array's leading dimension is the sample axis (a 0-d array counts as one sample).
    """

    def __init__(self) -> None:
        self._streams: dict[str, hashlib._Hash] = {}
        self._dtypes: dict[str, str] = {}
        self._shapes: dict[str, list[list]] = {}  # run-length: [[sample_shape, count], ...]
        self.num_samples = 0

    def update(self, arrays: Mapping[str, np.ndarray], num_real: int | None = None) -> None:
        """Add one batch (name -> array); only the first `num_real` samples if given."""
        counts = set()
        for name in sorted(arrays):
            array = np.asarray(arrays[name])
            if array.dtype == object:
                raise DataError(f"input {name!r}: object arrays cannot be fingerprinted")
            if array.ndim == 0:
                array = array.reshape(1)
                sample_shape: tuple = ("scalar",)
            else:
                sample_shape = array.shape[1:]
            if num_real is not None:
                array = array[:num_real]
            if len(array) == 0:
                continue  # no samples: nothing to record (an all-padding batch)
            array = _little_endian(np.ascontiguousarray(array))
            dtype = array.dtype.str
            known = self._dtypes.setdefault(name, dtype)
            stream = self._streams.setdefault(name, hashlib.sha256())
            if known != dtype:  # a dtype change mid-stream is part of the content
                self._dtypes[name] = f"{known}|{dtype}"
                stream.update(f"dtype:{dtype}".encode())
            runs = self._shapes.setdefault(name, [])
            if runs and runs[-1][0] == list(sample_shape):
                runs[-1][1] += len(array)
            else:
                runs.append([list(sample_shape), len(array)])
            if array.size:
                stream.update(array.reshape(-1).view(np.uint8).data)
            counts.add(len(array))
        if counts:
            self.num_samples += max(counts)

    def hexdigest(self) -> str:
        h = _Hasher()
        h.add_tag("data")
        for name in sorted(self._streams):
            h.add_str(name)
            h.add_str(self._dtypes[name])
            h.add_str(repr(self._shapes[name]))
            h.add_bytes(self._streams[name].digest())
        return h.h.hexdigest()

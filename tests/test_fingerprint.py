"""Model and data fingerprints: what changes them and what must not."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import tinymodels
from onnx import helper, numpy_helper

from trtcalib.errors import DataError, ModelError
from trtcalib.fingerprint import DataFingerprint, model_fingerprint
from trtcalib.model import load_model

# ---------------------------------------------------------------- model


def fp(model: onnx.ModelProto) -> str:
    return model_fingerprint(model)


def test_model_fingerprint_is_sha256_hex():
    value = fp(tinymodels.conv_model())
    assert len(value) == 64 and int(value, 16) >= 0


def test_same_model_same_fingerprint_across_paths(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pa = tinymodels.save(tinymodels.conv_model(), tmp_path / "a", "x.onnx")
    pb = tinymodels.save(tinymodels.conv_model(), tmp_path / "b", "renamed.onnx")
    assert fp(load_model(pa)) == fp(load_model(pb)) == fp(tinymodels.conv_model())


def test_metadata_does_not_matter():
    base = tinymodels.conv_model()
    other = copy.deepcopy(base)
    other.doc_string = "exported yesterday"
    other.producer_name = "pytorch"
    other.producer_version = "9.9"
    other.model_version = 7
    other.graph.name = "renamed"
    other.graph.doc_string = "doc"
    other.graph.node[0].name = "a_new_node_name"
    other.graph.node[0].doc_string = "node doc"
    other.graph.input[0].doc_string = "input doc"
    helper.set_model_props(other, {"author": "me"})
    other.graph.value_info.append(
        helper.make_tensor_value_info("conv1", onnx.TensorProto.FLOAT, None)
    )
    # initializer order does not change the computation
    inits = list(other.graph.initializer)
    del other.graph.initializer[:]
    other.graph.initializer.extend(reversed(inits))
    assert fp(other) == fp(base)


def test_float_data_and_raw_data_spellings_hash_equal():
    base = tinymodels.conv_model()
    other = copy.deepcopy(base)
    tensor = other.graph.initializer[1]  # b1
    values = numpy_helper.to_array(tensor)
    tensor.ClearField("raw_data")
    tensor.float_data.extend(values.tolist())
    assert numpy_helper.to_array(tensor).tobytes() == values.tobytes()
    assert fp(other) == fp(base)


@pytest.mark.parametrize(
    "change",
    [
        "weight",
        "attribute",
        "op",
        "tensor_name",
        "input_shape",
        "opset",
        "new_initializer",
    ],
)
def test_what_changes_the_fingerprint(change):
    base = tinymodels.conv_model()
    other = copy.deepcopy(base)
    if change == "weight":
        tensor = other.graph.initializer[0]
        values = numpy_helper.to_array(tensor).copy()
        values.flat[5] = np.nextafter(values.flat[5], np.float32(np.inf))  # one ulp
        tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
    elif change == "attribute":
        node = other.graph.node[0]
        for attr in node.attribute:
            if attr.name == "pads":
                attr.ints[:] = [0, 0, 0, 0]
    elif change == "op":
        other.graph.node[1].op_type = "Sigmoid"
    elif change == "tensor_name":
        other.graph.node[1].output[0] = "relu1_renamed"
        for node in other.graph.node[2:]:
            node.input[:] = ["relu1_renamed" if n == "relu1" else n for n in node.input]
    elif change == "input_shape":
        other.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    elif change == "opset":
        other.opset_import[0].version = 13
    elif change == "new_initializer":
        other.graph.initializer.append(numpy_helper.from_array(np.zeros(2, np.float32), "z"))
    assert fp(other) != fp(base)


def test_seed_changes_weights_and_fingerprint():
    assert fp(tinymodels.conv_model(seed=0)) != fp(tinymodels.conv_model(seed=1))


def test_external_data_loaded_equals_inline(tmp_path):
    model = tinymodels.conv_model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(
        copy.deepcopy(model),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (tmp_path / "weights.bin").stat().st_size > 0
    loaded = load_model(path)
    assert fp(loaded) == fp(model)

    unloaded = load_model(path, load_weights=False)
    with pytest.raises(ModelError, match="external weights"):
        fp(unloaded)
    assert model_fingerprint(unloaded, base_dir=tmp_path) == fp(model)


def test_subgraph_contents_matter():
    def if_model(value: float) -> onnx.ModelProto:
        const = helper.make_tensor("c", onnx.TensorProto.FLOAT, [1], [value])
        branch = helper.make_graph(
            [helper.make_node("Constant", [], ["y"], value=const)],
            "branch",
            [],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
        node = helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=branch)
        graph = helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1])],
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    assert fp(if_model(1.0)) != fp(if_model(2.0))
    assert fp(if_model(1.0)) == fp(if_model(1.0))
    renamed = if_model(1.0)  # the name of a Constant's value tensor is not part of the model
    renamed.graph.node[0].attribute[0].g.node[0].attribute[0].t.name = "random_export_name"
    assert fp(renamed) == fp(if_model(1.0))


# ---------------------------------------------------------------- data


def digest(batches, **kw) -> str:
    f = DataFingerprint()
    for batch in batches:
        f.update(batch, **kw)
    return f.hexdigest()


def samples(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "x": rng.normal(size=(n, 3, 2)).astype(np.float32),
        "y": rng.integers(0, 9, size=(n, 4)).astype(np.int64),
    }


def split(arrays, sizes):
    out, start = [], 0
    for size in sizes:
        out.append({k: v[start : start + size] for k, v in arrays.items()})
        start += size
    return out


def test_independent_of_batching():
    data = samples()
    whole = digest([data])
    assert digest(split(data, [4, 4, 4])) == whole
    assert digest(split(data, [1] * 12)) == whole
    assert digest(split(data, [5, 7])) == whole


def test_dict_order_does_not_matter():
    data = samples()
    assert digest([{"y": data["y"], "x": data["x"]}]) == digest([data])


def test_order_of_samples_matters():
    data = samples()
    swapped = {k: np.concatenate([v[6:], v[:6]]) for k, v in data.items()}
    assert digest([swapped]) != digest([data])


@pytest.mark.parametrize("change", ["value", "dtype", "shape", "name", "count"])
def test_content_matters(change):
    data = samples()
    other = {k: v.copy() for k, v in data.items()}
    if change == "value":
        other["x"][3, 0, 0] += 1e-3
    elif change == "dtype":
        other["x"] = other["x"].astype(np.float64)
    elif change == "shape":  # same bytes, another sample shape
        other["x"] = other["x"].reshape(12, 2, 3)
    elif change == "name":
        other["z"] = other.pop("x")
    elif change == "count":
        other = {k: v[:11] for k, v in other.items()}
    assert digest([other]) != digest([data])


def test_padding_rows_are_ignored_with_num_real():
    data = samples(10)
    first, last = split(data, [8, 2])
    padded = {k: np.concatenate([v, np.repeat(v[-1:], 6, axis=0)]) for k, v in last.items()}
    f = DataFingerprint()
    f.update(first)
    f.update(padded, num_real=2)
    f.update(padded, num_real=0)  # an all-padding batch adds nothing
    assert f.hexdigest() == digest([data])
    assert f.num_samples == 10


def test_byte_order_and_layout_do_not_matter():
    data = samples()
    big = {"x": data["x"].astype(">f4"), "y": data["y"]}
    fortran = {"x": np.asfortranarray(data["x"]), "y": data["y"]}
    assert digest([big]) == digest([fortran]) == digest([data])


def test_object_arrays_are_rejected():
    with pytest.raises(DataError, match="'x'"):
        DataFingerprint().update({"x": np.array([{}, 1], dtype=object)})


def _model_with_function(alpha_default: float = 0.1, body_opset: int = 17) -> onnx.ModelProto:
    """y = LeakyRelu(x) through a local function whose `alpha` has a default value."""
    leaky = helper.make_node("LeakyRelu", ["x"], ["y"])
    leaky.attribute.append(helper.make_attribute_ref("alpha", onnx.AttributeProto.FLOAT))
    function = helper.make_function(
        "local", "Act", ["x"], ["y"], [leaky], [helper.make_opsetid("", body_opset)]
    )
    function.attribute_proto.append(helper.make_attribute("alpha", alpha_default))
    graph = helper.make_graph(
        [helper.make_node("Act", ["input"], ["out"], domain="local")],
        "g",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, ["N", 4])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("local", 1)]
    model = helper.make_model(graph, opset_imports=opsets, functions=[function])
    model.ir_version = 10  # what the installed onnxruntime reads
    return model


def test_local_function_attribute_defaults_and_opsets_change_the_fingerprint():
    import onnxruntime as ort

    base = _model_with_function()
    x = np.full((1, 4), -1.0, np.float32)
    session = ort.InferenceSession(base.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": x})[0][0, 0] == np.float32(-0.1)  # the default is used
    assert fp(base) == fp(_model_with_function())
    assert fp(_model_with_function(alpha_default=0.2)) != fp(base)
    assert fp(_model_with_function(body_opset=16)) != fp(base)

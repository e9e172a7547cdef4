"""FP32 vs Q/DQ evaluation: metrics against numpy references, labels, sensitivity ranking."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tinymodels

from trtcalib.data import DataOptions, open_source
from trtcalib.errors import DataError
from trtcalib.evaluate import evaluate, load_labels, select_labels, sensitivity
from trtcalib.model import input_specs
from trtcalib.qdq import quantize_model


def run(model: onnx.ModelProto, feeds: dict, names=()) -> dict:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for name in names:
        copy.graph.output.append(onnx.ValueInfoProto(name=name))
    session = ort.InferenceSession(copy.SerializeToString())
    fetch = [o.name for o in session.get_outputs()]
    return dict(zip(fetch, session.run(fetch, feeds), strict=True))


def source_for(model, tmp_path, x: np.ndarray, name: str = "data.npz", **options):
    path = tmp_path / name
    np.savez(path, input=x)
    return open_source(str(path), input_specs(model), DataOptions(**options))


def sqnr(ref: np.ndarray, test: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    return 10 * math.log10(np.sum(ref**2) / np.sum((ref - test.astype(np.float64)) ** 2))


def fake_quant(x: np.ndarray, scale: np.float32) -> np.ndarray:
    return (np.clip(np.round(x / scale), -128, 127) * scale).astype(np.float32)


SCALES = {"input": 1.0 / 127, "relu1": 0.02, "flat": 0.01}


@pytest.fixture
def conv_setup(tmp_path):
    model = tinymodels.conv_model()
    x = np.random.default_rng(5).uniform(-1.2, 1.2, (20, 3, 8, 8)).astype(np.float32)
    qdq = quantize_model(model, SCALES).model
    return model, qdq, x, source_for(model, tmp_path, x)


def test_identical_models_agree_perfectly(conv_setup):
    model, _, _, source = conv_setup
    report = evaluate(model, model, source, batch_size=7)
    assert report.num_samples == 20
    assert report.top1_agreement == 1.0
    assert report.outputs[0].sqnr_db == math.inf
    assert report.outputs[0].cosine == pytest.approx(1.0)
    assert report.tensors == []


def test_output_metrics_match_numpy(conv_setup):
    model, qdq, x, source = conv_setup
    report = evaluate(model, qdq, source, batch_size=7)  # 7 + 7 + 6: a partial last batch
    ref = run(model, {"input": x})["logits"].astype(np.float64)
    got = run(qdq, {"input": x})["logits"].astype(np.float64)
    out = report.outputs[0]
    assert out.name == "logits"
    assert out.sqnr_db == pytest.approx(sqnr(ref, got), rel=1e-6)
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert out.cosine == pytest.approx(cos.mean(), rel=1e-9)
    assert out.min_cosine == pytest.approx(cos.min(), rel=1e-9)
    assert out.max_abs_error == pytest.approx(np.abs(ref - got).max(), rel=1e-4)
    assert report.classifier_output == "logits"
    assert report.top1_agreement == pytest.approx(np.mean(ref.argmax(1) == got.argmax(1)))
    assert report.accuracy_fp32 is None


def test_per_tensor_sqnr_and_clipping_match_numpy(conv_setup):
    model, qdq, x, source = conv_setup
    report = evaluate(model, qdq, source, batch_size=8)
    tensors = {t.name: t for t in report.tensors}
    assert set(tensors) == {"input", "relu1", "flat"}
    # graph input: DQ(Q(x)) vs x, computed in numpy (round half to even, clamp to int8)
    scale = np.float32(SCALES["input"])
    assert tensors["input"].scale == pytest.approx(float(scale))
    assert tensors["input"].sqnr_db == pytest.approx(sqnr(x, fake_quant(x, scale)), rel=1e-6)
    ratio = x.astype(np.float64) / scale
    expected_clip = np.mean((ratio > 127.5) | (ratio < -128.5))
    assert expected_clip > 0  # the data goes beyond the 1.0 range on purpose
    assert tensors["input"].clipped == pytest.approx(expected_clip)
    # relu1: local (same Q/DQ run) and against the FP32 model
    q_run = run(qdq, {"input": x}, ["relu1", "relu1_dequantized"])
    fp_run = run(model, {"input": x}, ["relu1"])
    relu1 = tensors["relu1"]
    assert relu1.sqnr_db == pytest.approx(
        sqnr(q_run["relu1"], q_run["relu1_dequantized"]), rel=1e-6
    )
    assert relu1.sqnr_vs_fp32_db == pytest.approx(
        sqnr(fp_run["relu1"], q_run["relu1_dequantized"]), rel=1e-6
    )
    assert relu1.sqnr_vs_fp32_db < relu1.sqnr_db  # accumulated error is larger


def test_accuracy_against_labels(conv_setup):
    model, qdq, x, source = conv_setup
    labels = np.random.default_rng(9).integers(0, 4, len(x))
    report = evaluate(model, qdq, source, labels, batch_size=6)
    ref = run(model, {"input": x})["logits"].argmax(1)
    got = run(qdq, {"input": x})["logits"].argmax(1)
    assert report.accuracy_fp32 == pytest.approx(np.mean(ref == labels))
    assert report.accuracy_int8 == pytest.approx(np.mean(got == labels))


@pytest.mark.parametrize("count", [19, 21])
def test_label_count_must_match_samples(conv_setup, count):
    model, qdq, _, source = conv_setup
    with pytest.raises(DataError, match="labels"):
        evaluate(model, qdq, source, np.zeros(count, np.int64), batch_size=8)


def test_fixed_batch_model_pads_and_counts_only_real_samples(tmp_path):
    dynamic = tinymodels.conv_model()
    fixed = tinymodels.conv_model(batch=4)  # same seed: same weights
    x = np.random.default_rng(2).uniform(-1, 1, (10, 3, 8, 8)).astype(np.float32)
    qdq_fixed = quantize_model(fixed, SCALES).model
    report = evaluate(fixed, qdq_fixed, source_for(fixed, tmp_path, x), batch_size=3)
    assert report.num_samples == 10
    ref = run(dynamic, {"input": x})["logits"]
    got = run(quantize_model(dynamic, SCALES).model, {"input": x})["logits"]
    assert report.outputs[0].sqnr_db == pytest.approx(sqnr(ref, got), rel=1e-5)


def test_max_samples_limits_the_evaluation(conv_setup):
    model, qdq, _, source = conv_setup
    assert evaluate(model, qdq, source, batch_size=8, max_samples=11).num_samples == 11


# ------------------------------------------------------------------ sensitivity


def test_sensitivity_puts_the_badly_scaled_layer_first(conv_setup):
    model, _, _, source = conv_setup
    # flat's scale is far too small: everything above 0.001*127 clips -> only `fc` suffers
    scales = {**SCALES, "flat": 0.001}
    only = sensitivity(model, scales, source, mode="only", batch_size=8)
    assert [r.node for r in only][0] == "fc"
    assert {r.node for r in only} == {"conv1", "conv2", "add1", "fc"}
    assert only[0].op_type == "Gemm"
    assert only[0].sqnr_db < min(r.sqnr_db for r in only[1:])
    skip = sensitivity(model, scales, source, mode="skip", batch_size=8)
    assert skip[0].node == "fc" and skip[0].delta_db > 0
    assert skip[0].delta_db > max(r.delta_db for r in skip[1:])


def test_sensitivity_only_mode_matches_a_single_layer_model(conv_setup):
    model, _, x, source = conv_setup
    only = {r.node: r for r in sensitivity(model, SCALES, source, mode="only", batch_size=8)}
    single = quantize_model(model, SCALES, exclude=["conv1", "add1", "fc"]).model
    ref = run(model, {"input": x})["logits"]
    got = run(single, {"input": x})["logits"]
    assert only["conv2"].sqnr_db == pytest.approx(sqnr(ref, got), rel=1e-5)


def test_sensitivity_only_mode_measures_a_residual_add_with_its_conv(conv_setup):
    """An Add fused into a Conv has no INT8 meaning alone (its Conv excluded, it stays float)."""
    model, _, x, source = conv_setup
    only = {r.node: r for r in sensitivity(model, SCALES, source, mode="only", batch_size=8)}
    pair = quantize_model(model, SCALES, exclude=["conv1", "fc"]).model
    ref = run(model, {"input": x})["logits"]
    assert only["add1"].sqnr_db == pytest.approx(
        sqnr(ref, run(pair, {"input": x})["logits"]), rel=1e-5
    )


@pytest.mark.parametrize("batch", [None, 4])  # a dynamic batch of 8; a model fixing 4
def test_sensitivity_uses_exactly_max_samples(tmp_path, batch):
    """11 samples with batches of 8 (or 4) is 11, not 16 (or 12)."""
    model = tinymodels.conv_model() if batch is None else tinymodels.conv_model(batch=batch)
    x = np.random.default_rng(5).uniform(-1.2, 1.2, (20, 3, 8, 8)).astype(np.float32)
    source = source_for(model, tmp_path, x)
    only = {
        r.node: r
        for r in sensitivity(model, SCALES, source, mode="only", batch_size=8, max_samples=11)
    }
    single = quantize_model(tinymodels.conv_model(), SCALES, exclude=["conv1", "add1", "fc"])
    ref = run(tinymodels.conv_model(), {"input": x[:11]})["logits"]
    got = run(single.model, {"input": x[:11]})["logits"]
    assert only["conv2"].sqnr_db == pytest.approx(sqnr(ref, got), rel=1e-5)


def test_sensitivity_skip_mode_with_one_layer_left_measures_the_float_model(conv_setup):
    """--exclude Conv leaves fc alone (add1 goes with conv2): skipping it quantizes nothing."""
    model, _, _, source = conv_setup
    rows = sensitivity(model, SCALES, source, mode="skip", batch_size=8, exclude=["Conv"])
    assert [r.node for r in rows] == ["fc"]
    assert rows[0].sqnr_db == math.inf and rows[0].delta_db > 0


def test_sensitivity_rejects_unknown_mode(conv_setup):
    model, _, _, source = conv_setup
    with pytest.raises(ValueError, match="mode"):
        sensitivity(model, SCALES, source, mode="sideways")


# ------------------------------------------------------------------ labels files


def test_load_labels_from_each_supported_form(tmp_path):
    labels = np.array([3, 1, 4, 1, 5])
    np.save(tmp_path / "l.npy", labels)
    np.savez(tmp_path / "keyed.npz", input=np.zeros((5, 2)), labels=labels)
    np.savez(tmp_path / "single.npz", y=labels.reshape(5, 1))
    np.savez(tmp_path / "named.npz", a=labels, b=labels + 1)
    np.save(tmp_path / "float.npy", labels.astype(np.float32))
    for spec in ["l.npy", "keyed.npz", "single.npz", "named.npz:b", "float.npy"]:
        got = load_labels(str(tmp_path / spec))
        expected = labels + 1 if spec.endswith(":b") else labels
        np.testing.assert_array_equal(got, expected, err_msg=spec)
        assert got.dtype == np.int64


@pytest.mark.parametrize(
    ("make", "spec", "match"),
    [
        (None, "nothing.npy", "no such labels file"),
        (lambda d: np.savez(d / "two.npz", a=[1], b=[2]), "two.npz", "name one"),
        (lambda d: np.savez(d / "k.npz", a=[1]), "k.npz:zz", "no array 'zz'"),
        (lambda d: np.save(d / "m.npy", np.zeros((3, 4))), "m.npy", r"shape \[N\]"),
        (lambda d: np.save(d / "f.npy", np.array([0.5, 1.0])), "f.npy", "integer"),
        (lambda d: (d / "t.csv").write_text("1,2"), "t.csv", r"\.npy, \.npz or \.txt"),
        (
            lambda d: (d / "t.txt").write_text("1\n2 3\n"),
            "t.txt",
            r"t\.txt:2: expected one integer",
        ),
        (lambda d: (d / "e.txt").write_text("\n\n"), "e.txt", "no labels"),
        (lambda d: (d / "bad.npy").write_bytes(b"junk"), "bad.npy", "cannot read"),
    ],
)
def test_load_labels_errors_are_one_line(tmp_path, make, spec, match):
    if make is not None:
        make(tmp_path)
    with pytest.raises(DataError, match=match) as info:
        load_labels(str(tmp_path / spec))
    assert "\n" not in str(info.value)


def _script_source(model, tmp_path, n: int, **options):
    """A load_data() script yielding sample i filled with the value i, 4 samples per chunk."""
    path = tmp_path / "load.py"
    path.write_text(
        "import numpy as np\n"
        "def load_data():\n"
        f"    for i in range(0, {n}, 4):\n"
        f"        v = np.arange(i, min(i + 4, {n}), dtype=np.float32)\n"
        "        yield {'input': v[:, None, None, None] * np.ones((1, 3, 8, 8), np.float32)}\n"
    )
    return open_source(str(path), input_specs(model), DataOptions(**options))


@pytest.mark.parametrize("kind", ["npz", "script"])
@pytest.mark.parametrize("method", ["sequential", "random"])
def test_select_labels_follows_the_data_selection(tmp_path, kind, method):
    """Sample i holds the value i: the labels picked must be exactly the samples read."""
    model = tinymodels.conv_model()
    n = 30
    x = np.zeros((n, 3, 8, 8), np.float32) + np.arange(n, dtype=np.float32)[:, None, None, None]
    options = {"subset_len": 7, "sample_method": method, "seed": 4}
    labels = np.arange(n)
    if kind == "npz":
        source = source_for(model, tmp_path, x, **options)
    else:
        source = _script_source(model, tmp_path, n, **options)
    picked = select_labels(labels, source, origin="labels")
    seen = np.concatenate([c["input"][:, 0, 0, 0] for c in source.samples()]).astype(int)
    np.testing.assert_array_equal(picked, seen)


def test_labels_must_cover_the_whole_source_even_when_subsetted(tmp_path):
    """31 labels for 30 samples is a wrong labels file, whichever 7 samples are drawn."""
    model = tinymodels.conv_model()
    x = np.zeros((30, 3, 8, 8), np.float32)
    for options in ({}, {"subset_len": 7, "sample_method": "random", "seed": 4}):
        source = source_for(model, tmp_path, x, **options)
        for count in (29, 31):
            with pytest.raises(DataError, match=f"{count} labels for the 30 samples"):
                select_labels(np.arange(count), source, origin="labels")


def test_script_yielding_another_count_than_its_labels_is_an_error(tmp_path):
    model = tinymodels.conv_model()
    source = _script_source(model, tmp_path, 30, subset_len=7, sample_method="random", seed=4)
    select_labels(np.arange(31), source, origin="--labels l.npy")  # unknown length: accepted...
    with pytest.raises(DataError, match="31 labels for the 30 samples of"):
        list(source.samples())  # ...until the script has run


def test_labels_txt_one_integer_per_line(tmp_path):
    """samples/images ships labels.txt: one class per line in file-name order."""
    (tmp_path / "labels.txt").write_text("3\n1\n\n4\r\n")
    np.testing.assert_array_equal(load_labels(str(tmp_path / "labels.txt")), [3, 1, 4])


@pytest.mark.parametrize("bad", [-1, 4])
def test_labels_outside_the_classes_are_an_error(conv_setup, bad):
    """conv_model has 4 classes: label 4 or -1 can only come from a wrong labels file (it would
    silently count as a wrong prediction and report a meaningless accuracy)."""
    model, qdq, x, source = conv_setup
    labels = np.zeros(len(x), np.int64)
    labels[5] = bad
    with pytest.raises(
        DataError, match=rf"^y\.npy: 1 labels outside the 4 classes .*label {bad} of sample 5"
    ):
        evaluate(model, qdq, source, labels, batch_size=6, labels_origin="y.npy")


def test_a_weight_from_a_constant_node_is_not_reported_as_an_activation(tmp_path):
    """MatMul B [4, 1] from a Constant node: one channel, so its Q/DQ scale is a scalar too."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(1).normal(size=(4, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Constant", [], ["w"], value=numpy_helper.from_array(w, "w_value")),
        helper.make_node("MatMul", ["input", "w"], ["out"], name="mm"),
    ]
    model = tinymodels.make(
        nodes,
        "const_weight",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 1])],
    )
    result = quantize_model(model, {"input": 0.02})
    assert result.weights == ["w"]
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    report = evaluate(model, result.model, source_for(model, tmp_path, x), batch_size=3)
    assert [t.name for t in report.tensors] == ["input"]


def test_classifier_output_prefers_an_n_by_classes_output_only_for_labels():
    """Agreement stays on the first class-like output; labels (one per sample) need [N, C]."""
    from onnx import TensorProto, helper

    from trtcalib.evaluate import _classifier_output

    graph = helper.make_graph(
        [],
        "g",
        [],
        [
            helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["N", 5, 3]),
            helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["N", 8]),
        ],
    )
    model = helper.make_model(graph)
    sample = {"tokens": np.zeros((2, 5, 3), np.float32), "pooled": np.zeros((2, 8), np.float32)}
    assert _classifier_output(model, sample) == "tokens"
    assert _classifier_output(model, sample, per_sample=True) == "pooled"

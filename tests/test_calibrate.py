"""calibrate() end to end on tiny models, checked against activations computed with numpy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tinymodels
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

from trtcalib.cache import parse_cache, read_cache, read_provenance, write_cache
from trtcalib.calibrate import (
    CalibrationSettings,
    calibrate,
    collect_statistics,
    collection_key,
    data_fingerprint,
    planned_tensors,
    widest_and_narrowest,
)
from trtcalib.data import open_source
from trtcalib.errors import ConfigError, DataError, ModelError
from trtcalib.fingerprint import DataFingerprint, model_fingerprint
from trtcalib.model import input_specs
from trtcalib.stats import TensorOverrides


# -- independent numpy references ---------------------------------------------------------------
def _weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}


def _conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = sliding_window_view(padded, (3, 3), axis=(2, 3))  # N, C, H, W, 3, 3
    return np.einsum("nchwij,ocij->nohw", windows, w) + b[None, :, None, None]


def conv_model_reference(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every activation of tinymodels.conv_model in float64, from the definitions of the ops."""
    w = _weights(model)
    x = x.astype(np.float64)
    conv1 = _conv3x3(x, w["w1"], w["b1"])
    relu1 = np.maximum(conv1, 0)
    conv2 = _conv3x3(relu1, w["w2"], w["b2"])
    add1 = conv2 + relu1
    pool = add1.mean(axis=(2, 3), keepdims=True)
    flat = pool.reshape(len(x), -1)
    logits = flat @ w["wfc"].T + w["bfc"]
    return {
        "input": x,
        "conv1": conv1,
        "relu1": relu1,
        "conv2": conv2,
        "add1": add1,
        "pool": pool,
        "flat": flat,
        "logits": logits,
    }


def _minmax_scale(amax: float) -> float:
    return float(np.float32(amax) / np.float32(127))


# -- fixtures -----------------------------------------------------------------------------------
@pytest.fixture
def conv_data(tmp_path):
    model = tinymodels.conv_model()
    x = np.random.default_rng(7).normal(size=(50, 3, 8, 8)).astype(np.float32)
    path = tmp_path / "calib.npz"
    np.savez(path, input=x)
    return model, x, open_source(path, input_specs(model))


@pytest.fixture
def two_input_data(tmp_path):
    model = tinymodels.two_input_model()
    rng = np.random.default_rng(8)
    a = rng.normal(size=(37, 4)).astype(np.float32)
    b = rng.normal(size=(37, 4)).astype(np.float32) * 3
    path = tmp_path / "ab.npz"
    np.savez(path, a=a, b=b)
    return model, a, b, open_source(path, input_specs(model))


# -- minmax against numpy -----------------------------------------------------------------------
def test_minmax_scales_equal_numpy_max_abs_over_127_exactly(two_input_data):
    model, a, b, source = two_input_data
    result = calibrate(model, source, CalibrationSettings("minmax", batch_size=8), progress=False)
    prod = a * b  # float32 elementwise ops are exactly rounded: onnxruntime gives the same bits
    expected = {
        "a": np.abs(a).max(),
        "b": np.abs(b).max(),
        "prod": np.abs(prod).max(),
        "act": np.maximum(prod, 0).max(),
    }
    for name, amax in expected.items():
        assert result.cache.scales[name] == _minmax_scale(amax), name
        assert result.amax[name] == pytest.approx(float(amax), rel=0, abs=0), name
    w = np.arange(8, dtype=np.float64).reshape(4, 2) / 8
    out = np.maximum(prod.astype(np.float64), 0) @ w
    assert result.cache.scales["out"] == pytest.approx(np.abs(out).max() / 127, rel=1e-6)
    assert list(result.cache.scales) == ["a", "b", "prod", "act", "out"]  # idx (int64) absent
    assert result.cache.algorithm == "MinMaxCalibration"


def test_minmax_on_conv_model_matches_numpy_reference(conv_data):
    model, x, source = conv_data
    result = calibrate(model, source, CalibrationSettings("minmax", batch_size=16), progress=False)
    reference = conv_model_reference(model, x)
    assert list(result.cache.scales) == list(reference)
    for name, act in reference.items():
        assert result.amax[name] == pytest.approx(np.abs(act).max(), rel=1e-5), name
        assert result.cache.scales[name] == pytest.approx(np.abs(act).max() / 127, rel=1e-5)
        record = result.provenance.tensors[name]
        assert record.min == pytest.approx(act.min(), rel=1e-5, abs=1e-6), name
        assert record.max == pytest.approx(act.max(), rel=1e-5, abs=1e-6), name


# -- cache and provenance -----------------------------------------------------------------------
def test_cache_parses_and_provenance_is_filled(conv_data, tmp_path):
    model, x, source = conv_data
    settings = CalibrationSettings("entropy", batch_size=16)
    result = calibrate(model, source, settings, progress=False)
    assert result.cache.algorithm == "EntropyCalibration2"
    assert result.cache.trt_version == 101601
    assert parse_cache(result.cache.to_bytes()).scales == result.cache.scales

    path = tmp_path / "out.cache"
    write_cache(path, result.cache, result.provenance)
    assert read_cache(path).to_bytes().startswith(b"TRT-101601-EntropyCalibration2\n")
    prov = read_provenance(path)
    assert prov.algorithm == "entropy"
    assert prov.histogram == "exact"
    assert prov.batch_size == 16
    assert prov.num_samples == 50
    assert prov.model_fingerprint == model_fingerprint(tinymodels.conv_model())
    independent = DataFingerprint()
    independent.update({"input": x})  # one chunk: the fingerprint ignores batch boundaries
    assert prov.data_fingerprint == independent.hexdigest()
    assert prov.inputs == [{"name": "input", "shape": ["N", 3, 8, 8], "dtype": "float32"}]
    assert prov.params["num_bins"] == 2048
    assert set(prov.tensors) == set(result.cache.scales)
    assert prov.extra["num_batches"] == 4
    assert prov.tensors["input"].max == pytest.approx(float(x.max()))


def test_entropy_with_exact_histogram_does_not_depend_on_batch_size(conv_data):
    model, _, source = conv_data
    scales = [
        calibrate(
            model, source, CalibrationSettings("entropy", batch_size=bs), progress=False
        ).cache.scales
        for bs in (1, 7, 50)
    ]
    assert scales[0] == scales[1] == scales[2]


def test_trt_histogram_policy_is_recorded_and_growth_counted(tmp_path):
    model = tinymodels.two_input_model()
    ones = np.ones((4, 4), np.float32)
    growing = np.concatenate([ones, ones * 3])  # the second batch exceeds the first's range
    np.savez(tmp_path / "g.npz", a=growing, b=ones.repeat(2, axis=0))
    source = open_source(tmp_path / "g.npz", input_specs(model))
    settings = CalibrationSettings("entropy", batch_size=4, histogram="trt", growth="pow2")
    result = calibrate(model, source, settings, progress=False)
    assert result.provenance.histogram == "trt"
    assert result.provenance.params["growth"] == "pow2"
    assert result.stats["a"].growth_events == 1
    assert result.stats["b"].growth_events == 0


# -- overrides, restriction, skip ---------------------------------------------------------------
def test_overrides_skip_and_other_calibrator(two_input_data):
    model, a, b, source = two_input_data
    overrides = TensorOverrides.from_entries(
        [{"tensors": "out", "skip": True}, {"tensors": "pro*", "calibrator": "minmax"}]
    )
    settings = CalibrationSettings("entropy", batch_size=10, overrides=overrides)
    result = calibrate(model, source, settings, progress=False)
    assert result.skipped == ["out"]
    assert "out" not in result.cache.scales
    assert result.cache.scales["prod"] == _minmax_scale(np.abs(a * b).max())
    assert result.provenance.extra["per_tensor_algorithm"] == {"prod": "minmax"}
    assert result.provenance.params["overrides"][0]["tensors"] == ["out"]
    assert planned_tensors(model, settings) == ["a", "b", "prod", "act"]


def test_an_override_that_matches_no_tensor_is_a_warning(conv_data, capsys):
    model, _, source = conv_data
    overrides = TensorOverrides.from_entries([{"tensors": "rleu*", "calibrator": "minmax"}])
    calibrate(model, source, CalibrationSettings(overrides=overrides), progress=False)
    err = capsys.readouterr().err
    assert "override #1 (tensors rleu*): matches no tensor of the model" in err


def test_skipping_every_tensor_is_an_error(conv_data):
    model, _, source = conv_data
    overrides = TensorOverrides.from_entries([{"tensors": "*", "skip": True}])
    with pytest.raises(ConfigError, match="all 8 tensors are skipped"):
        calibrate(model, source, CalibrationSettings(overrides=overrides), progress=False)


def test_the_onnxruntime_session_is_released_on_every_error_after_it_is_built(
    conv_data, monkeypatch
):
    import trtcalib.capture as capture_module

    model, _, source = conv_data
    closed = []
    real_close = capture_module.ActivationCapture.close
    monkeypatch.setattr(
        capture_module.ActivationCapture,
        "close",
        lambda self: closed.append(self._session is not None) or real_close(self),
    )
    overrides = TensorOverrides.from_entries([{"tensors": "*", "skip": True}])
    with pytest.raises(ConfigError, match="all 8 tensors are skipped"):
        collect_statistics(model, source, CalibrationSettings(overrides=overrides), progress=False)
    assert closed == [True]
    # an override that only fails when resolved against the tensor names
    overrides = TensorOverrides.from_entries([{"tensors": "relu*", "percentile": 200}])
    settings = CalibrationSettings("percentile", overrides=overrides)
    with pytest.raises(ConfigError, match="percentile"):
        collect_statistics(model, source, settings, progress=False)
    assert closed == [True, True]

    def bad_batches():
        yield {"input": np.zeros((4, 3, 8, 8), np.float32)}
        yield {"input": np.zeros((4, 5, 8, 8), np.float32)}  # wrong channel count

    with pytest.raises(DataError, match="onnxruntime failed on this batch"):
        collect_statistics(model, bad_batches(), CalibrationSettings(batch_size=4), progress=False)
    assert closed == [True, True, True]


def test_tensors_restricts_the_cache(conv_data):
    model, _, source = conv_data
    settings = CalibrationSettings("minmax", batch_size=25, tensors=["relu1", "input"])
    result = calibrate(model, source, settings, progress=False)
    assert list(result.cache.scales) == ["input", "relu1"]
    # recorded as a sorted set, so the order given on the command line does not defeat reuse
    assert result.provenance.params["tensors"] == ["input", "relu1"]


def test_unknown_tensor_name_is_an_error(conv_data):
    model, _, source = conv_data
    with pytest.raises(ModelError, match="'nope'"):
        calibrate(model, source, CalibrationSettings(tensors=["nope"]), progress=False)


# -- NaN / Inf, padding, threads ---------------------------------------------------------------
def _sqrt_model() -> onnx.ModelProto:
    """x -> Sqrt -> root -> Mul(x) -> y: sqrt of a negative gives NaN activations."""
    nodes = [
        helper.make_node("Sqrt", ["x"], ["root"]),
        helper.make_node("Mul", ["root", "x"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "sqrt",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_nan_activations_warn_per_tensor_and_are_ignored(capsys):
    x = np.array([[4.0, -1.0, 9.0], [1.0, 2.0, -4.0]], np.float32)
    chunks = [{"x": x}]  # any iterable of chunks is a source
    result = calibrate(
        _sqrt_model(), chunks, CalibrationSettings("minmax", batch_size=2), progress=False
    )
    err = capsys.readouterr().err
    assert "tensor 'root': 2 NaN and 0 Inf" in err
    assert "tensor 'y': 2 NaN and 0 Inf" in err
    assert "'x'" not in err  # the input has no NaN
    assert result.amax["root"] == 3.0  # sqrt(9); NaN ignored
    assert result.amax["y"] == 27.0
    assert len([line for line in err.splitlines() if line.startswith("warning")]) == 2


def test_inf_activation_gives_inf_scale(capsys):
    x = np.array([[np.inf, 1.0, 4.0]], np.float32)
    result = calibrate(
        _sqrt_model(), [{"x": x}], CalibrationSettings("minmax", batch_size=1), progress=False
    )
    assert result.cache.scales["root"] == np.inf
    assert "tensor 'root': 0 NaN and 1 Inf" in capsys.readouterr().err


def test_a_percentile_in_bin_0_of_a_non_zero_tensor_warns_about_its_zero_scale(capsys):
    x = np.zeros((1, 3000), np.float32)
    x[0, 0] = 16.0  # one value in 3000: the 99th percentile is a zero, in bin 0
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3000])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    settings = CalibrationSettings("percentile", batch_size=1, params={"percentile": 99.0})
    result = calibrate(model, [{"x": x}], settings, progress=False)
    assert result.cache.scales == {"x": 0.0, "y": 0.0}
    lines = [line for line in capsys.readouterr().err.splitlines() if "scale 0" in line]
    assert len(lines) == 2 and "tensor 'x': amax 0 although max |x| = 16" in lines[0]
    # all-zero data is not warned about: its scale 0 is right
    calibrate(model, [{"x": np.zeros((1, 3000), np.float32)}], settings, progress=False)
    assert "scale 0" not in capsys.readouterr().err


def test_padded_last_batch_counts_real_samples_only(two_input_data):
    model, a, b, source = two_input_data
    settings = CalibrationSettings("minmax", batch_size=10, last_batch="pad")
    collected = collect_statistics(model, source, settings, progress=False)
    assert collected.num_samples == 37
    assert collected.num_batches == 4
    assert collected.stats["a"].count == 40 * 4  # the 3 repeated samples are seen, as TensorRT does
    dropped = collect_statistics(
        model,
        source,
        CalibrationSettings("minmax", batch_size=10, last_batch="drop"),
        progress=False,
    )
    assert dropped.num_samples == 30
    fp = DataFingerprint()
    fp.update({"a": a[:30], "b": b[:30]})
    assert dropped.data_fingerprint == fp.hexdigest()
    assert data_fingerprint(source, 10, "drop") == fp.hexdigest()


def test_thread_pool_gives_the_same_statistics(conv_data):
    model, _, source = conv_data
    settings = CalibrationSettings("entropy", batch_size=16)
    one = collect_statistics(model, source, settings, progress=False, workers=1)
    two = collect_statistics(model, source, settings, progress=False, workers=2)
    lap = collect_statistics(model, source, settings, progress=False, workers=1, overlap=True)
    for other in (two, lap):
        assert other.num_batches == one.num_batches == 4
        for name in one.stats:
            np.testing.assert_array_equal(one.stats[name].counts, other.stats[name].counts)
            assert one.stats[name].amax == other.stats[name].amax
            assert one.stats[name].batches == other.stats[name].batches == 4


# -- errors before any work ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (CalibrationSettings(calibrator="nope"), "unknown calibrator 'nope'"),
        (CalibrationSettings(batch_size=0), "batch size"),
        (CalibrationSettings(histogram="fuzzy"), "histogram policy"),
        (CalibrationSettings(growth="cube"), "growth rule"),
        (CalibrationSettings(num_bins=1000), "power of two"),
        # a power of two too large to allocate: a one-line error, not numpy's ValueError
        (CalibrationSettings(num_bins=1 << 62), "at most 65536"),
        (CalibrationSettings(last_batch="maybe"), "last batch"),
        (CalibrationSettings("minmax", params={"x": 1.0}), "unknown parameter 'x'"),
    ],
)
def test_bad_settings_fail_before_reading_data(settings, message):
    def no_data():
        raise AssertionError("data must not be read")
        yield  # pragma: no cover

    with pytest.raises(ConfigError, match=message):
        calibrate(tinymodels.conv_model(), no_data(), settings, progress=False)


def test_empty_source_is_a_data_error():
    with pytest.raises(DataError, match="zero samples"):
        calibrate(tinymodels.conv_model(), [], CalibrationSettings(), progress=False)


def test_widest_and_narrowest():
    amax = {f"t{i}": float(i) for i in range(12)} | {"big": np.inf}
    rows = widest_and_narrowest(amax, 2)
    assert [name for name, _ in rows] == ["big", "t11", "t1", "t0"]
    assert widest_and_narrowest({"a": 1.0, "b": 2.0}, 5) == [("b", 2.0), ("a", 1.0)]


def test_padded_cache_is_not_reused_for_an_unpadded_run(two_input_data, tmp_path):
    """pad feeds repeated samples into the histograms (different scales), while the data
    fingerprint covers the real samples only: the reuse check must still tell them apart."""
    from trtcalib.cache import reuse_decision

    model, _, _, source = two_input_data
    padded = CalibrationSettings("entropy", batch_size=10, last_batch="pad")
    kept = CalibrationSettings("entropy", batch_size=10, last_batch="keep")
    result = calibrate(model, source, padded, progress=False)
    path = tmp_path / "pad.cache"
    write_cache(path, result.cache, result.provenance)
    # same real samples, same fingerprint: only the recorded policy can tell the runs apart
    assert data_fingerprint(source, 10, "pad") == data_fingerprint(source, 10, "keep")

    def decision(settings):
        return reuse_decision(
            path,
            model_fingerprint=model_fingerprint(model),
            data_fingerprint=data_fingerprint(source, 10, settings.last_batch),
            algorithm="entropy",
            params=settings.provenance_params(settings.check()),
            batch_size=10,
            histogram="exact",
        )

    assert decision(padded).reusable
    other = decision(kept)
    assert not other.reusable
    assert any("last_batch" in reason for reason in other.reasons)


def test_tensor_selection_order_and_repeats_do_not_change_the_provenance():
    a = CalibrationSettings("minmax", tensors=["b", "a", "a"])
    b = CalibrationSettings("minmax", tensors=["a", "b"])
    assert a.provenance_params(a.check()) == b.provenance_params(b.check())
    c = CalibrationSettings("minmax", tensors=["a"])
    assert c.provenance_params(c.check()) != b.provenance_params(b.check())


def _with_fixed_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    fixed = onnx.ModelProto.FromString(model.SerializeToString())
    dim = fixed.graph.input[0].type.tensor_type.shape.dim[0]
    dim.ClearField("dim_param")
    dim.dim_value = batch
    return fixed


def test_fixed_batch_model_with_another_batch_fails_before_reading_data():
    """onnxruntime would fail on the first batch with 'invalid dimensions': say which option."""
    model = _with_fixed_batch(tinymodels.conv_model(), 4)

    def no_data():
        raise AssertionError("data must not be read")
        yield  # pragma: no cover

    with pytest.raises(ConfigError, match=r"fixed batch of 4: use --batch 4"):
        calibrate(model, no_data(), CalibrationSettings(batch_size=32), progress=False)


def test_fixed_batch_model_and_a_partial_last_batch(conv_data):
    _, x, source = conv_data  # 50 samples
    model = _with_fixed_batch(tinymodels.conv_model(), 8)
    settings = CalibrationSettings("minmax", batch_size=8)
    with pytest.raises(ConfigError, match=r"last batch of 2: use --last-batch pad or drop"):
        calibrate(model, source, settings, progress=False)
    # with drop it runs: minmax of the input is max |x| over the 48 samples that were fed
    dropped = CalibrationSettings("minmax", batch_size=8, last_batch="drop")
    result = calibrate(model, source, dropped, progress=False)
    expected = float(np.float32(np.abs(x[:48]).max()) / np.float32(127))
    assert result.cache.scales["input"] == expected


@pytest.mark.parametrize("histogram", ["exact", "trt"])
def test_relu_statistics_derived_from_the_input_are_bit_identical(tmp_path, histogram):
    from trtcalib.calibrate import collect_statistics

    model = tinymodels.conv_model()
    rng = np.random.default_rng(4)
    path = tmp_path / "x.npz"
    np.savez(path, input=rng.normal(size=(40, 3, 8, 8)).astype(np.float32))
    settings = CalibrationSettings("entropy", batch_size=8, histogram=histogram)
    runs = {}
    for derive in (True, False):
        source = open_source(path, input_specs(model))
        runs[derive] = collect_statistics(model, source, settings, False, derive=derive)
    derived, produced = runs[True].stats, runs[False].stats
    assert list(derived) == list(produced)
    for name, want in produced.items():
        got = derived[name]
        assert got.counts.tobytes() == want.counts.tobytes(), name
        assert (got.range_max, got.amax, got.min, got.max, got.count) == (
            want.range_max, want.amax, want.min, want.max, want.count), name  # fmt: skip


def test_alias_of_a_skipped_tensor_still_gets_its_statistics(tmp_path):
    from trtcalib.calibrate import collect_statistics
    from trtcalib.stats import TensorOverrides

    model = tinymodels.conv_model()  # flat = Flatten(pool): an alias of pool
    path = tmp_path / "x.npz"
    np.savez(path, input=np.random.default_rng(2).normal(size=(16, 3, 8, 8)).astype(np.float32))
    skip_pool = TensorOverrides.from_entries([{"tensors": "pool", "skip": True}])
    settings = CalibrationSettings("minmax", batch_size=4, overrides=skip_pool)
    out = collect_statistics(model, open_source(path, input_specs(model)), settings, False)
    assert "pool" not in out.stats and out.skipped == ["pool"]
    reference = collect_statistics(
        model, open_source(path, input_specs(model)), CalibrationSettings("minmax", batch_size=4),
        False, derive=False,
    )  # fmt: skip
    got, want = out.stats["flat"], reference.stats["flat"]
    assert got.name == "flat"
    assert got.counts.tobytes() == want.counts.tobytes()
    assert (got.amax, got.min, got.max, got.count) == (want.amax, want.min, want.max, want.count)


def test_read_ahead_keeps_order_prepares_each_item_once_and_reraises_where_it_failed():
    from trtcalib.calibrate import _read_ahead

    prepared = []

    def items():
        yield from range(5)
        raise DataError("batch 5: bad shape")

    got = []
    with pytest.raises(DataError, match="batch 5"):
        for item in _read_ahead(items(), prepared.append):
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    assert prepared == [0, 1, 2, 3, 4]
    assert list(_read_ahead([], prepared.append)) == []


def _refilled_batches():
    """A load_data() that refills one buffer in place for every batch (legal for a generator)."""
    buf = np.empty((8, 3, 8, 8), np.float32)
    for k in range(6):
        buf[...] = k + 1.0
        yield {"input": buf}


def test_a_source_that_refills_one_buffer_is_read_one_batch_at_a_time(tmp_path):
    # reading ahead would overwrite batch k with batch k+1 before it is collected
    model = tinymodels.conv_model()
    settings = CalibrationSettings("minmax", batch_size=8, tensors=["input"])
    fresh = [{"input": np.full((8, 3, 8, 8), k + 1.0, np.float32)} for k in range(6)]
    want = collect_statistics(model, fresh, settings, progress=False).stats["input"]
    got = collect_statistics(model, _refilled_batches(), settings, progress=False).stats["input"]
    script = tmp_path / "refill.py"
    script.write_text(
        "import numpy as np\n\n"
        "def load_data():\n"
        "    buf = np.empty((8, 3, 8, 8), np.float32)\n"
        "    for k in range(6):\n"
        "        buf[...] = k + 1.0\n"
        "        yield {'input': buf}\n"
    )
    source = open_source(f"{script}:load_data", input_specs(model))
    assert not source.fresh_arrays
    from_script = collect_statistics(model, source, settings, progress=False).stats["input"]
    for stats in (got, from_script):
        assert (stats.min, stats.max, stats.count) == (1.0, 6.0, want.count)
        assert stats.counts.tobytes() == want.counts.tobytes()


def test_file_sources_are_read_ahead_and_give_the_same_statistics(tmp_path, monkeypatch):
    import trtcalib.calibrate as calibrate_module

    model = tinymodels.conv_model()
    path = tmp_path / "x.npz"
    np.savez(path, input=np.random.default_rng(6).normal(size=(40, 3, 8, 8)).astype(np.float32))
    settings = CalibrationSettings("entropy", batch_size=8)
    source = open_source(path, input_specs(model))
    assert source.fresh_arrays
    modes = []
    real = calibrate_module._read_ahead
    monkeypatch.setattr(
        calibrate_module, "_read_ahead", lambda *a, **k: modes.append(k["ahead"]) or real(*a, **k)
    )
    ahead = collect_statistics(model, source, settings, progress=False)
    source = open_source(path, input_specs(model))
    monkeypatch.setattr(source, "fresh_arrays", False, raising=False)
    in_turn = collect_statistics(model, source, settings, progress=False)
    assert modes == [True, False]
    assert ahead.data_fingerprint == in_turn.data_fingerprint
    for name, want in in_turn.stats.items():
        assert ahead.stats[name].counts.tobytes() == want.counts.tobytes(), name


@pytest.mark.parametrize("histogram", ["exact", "trt"])
def test_calibrators_sharing_one_collection_give_their_own_caches(conv_data, histogram):
    """compare collects once per histogram setting: every calibrator's cache and provenance are
    then those of its own calibration, byte for byte."""
    model, _, source = conv_data
    settings = {
        name: CalibrationSettings(name, batch_size=8, histogram=histogram)
        for name in ("entropy", "minmax", "percentile", "mse")
    }
    shared = collect_statistics(model, source, settings["entropy"], progress=False)
    for name, s in settings.items():
        alone = calibrate(model, source, s, progress=False, warnings=False)
        reused = calibrate(model, source, s, progress=False, warnings=False, statistics=shared)
        assert reused.cache.to_bytes() == alone.cache.to_bytes(), name
        a, b = alone.provenance.to_json_dict(), reused.provenance.to_json_dict()
        a.pop("created"), b.pop("created")
        assert a == b, name


def test_statistics_of_other_settings_are_refused(conv_data):
    model, _, source = conv_data
    shared = collect_statistics(model, source, CalibrationSettings(batch_size=8), progress=False)
    assert shared.key == collection_key(CalibrationSettings("minmax", batch_size=8))
    for other in (
        CalibrationSettings(batch_size=4),
        CalibrationSettings(batch_size=8, histogram="trt"),
        CalibrationSettings(batch_size=8, tensors=["input"]),
        CalibrationSettings(batch_size=8, last_batch="drop"),
    ):
        with pytest.raises(ValueError, match="collection_key"):
            calibrate(model, source, other, progress=False, statistics=shared)

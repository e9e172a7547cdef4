"""`trtcalib calibrate`: success paths, cache reuse, and every bad input (one line, no cache)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tinymodels

from trtcalib.cache import read_cache, read_provenance


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A cwd with conv.onnx, two.onnx and matching data files."""
    monkeypatch.chdir(tmp_path)
    tinymodels.save(tinymodels.conv_model(), tmp_path, "conv.onnx")
    tinymodels.save(tinymodels.two_input_model(), tmp_path, "two.onnx")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    np.savez(
        tmp_path / "ab.npz",
        a=rng.normal(size=(9, 4)).astype(np.float32),
        b=rng.normal(size=(9, 4)).astype(np.float32),
    )
    return tmp_path


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code != 0, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]


# -- success -------------------------------------------------------------------------------------
def test_calibrate_writes_default_cache_and_table(cli, work):
    x = np.load(work / "calib.npz")["input"]
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "-c", "minmax", "--batch", "8")
    assert r.exit_code == 0, r.stderr
    path = work / "caches" / "conv.minmax.b8.cache"
    cache = read_cache(path)
    assert cache.header == "TRT-101601-MinMaxCalibration"
    assert cache.scales["input"] == float(np.float32(np.abs(x).max()) / np.float32(127))
    assert read_provenance(path).num_samples == 20
    assert "widest and narrowest" in r.stdout
    assert "add1" in r.stdout and "input" in r.stdout
    assert "caches/conv.minmax.b8.cache" in r.stdout
    assert "data: calib.npz" in r.stderr


def test_explicit_cache_path_trt_version_and_tensors(cli, work):
    r = cli(
        "calibrate", "two.onnx", "--data", "ab.npz", "--batch", "4", "--cache", "out.cache",
        "--trt-version", "8.6.1", "--tensors", "prod,act", "--no-progress",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    cache = read_cache(work / "out.cache")
    assert cache.header == "TRT-8601-EntropyCalibration2"
    assert list(cache.scales) == ["prod", "act"]
    assert not (work / "caches").exists()


def test_config_defaults_and_command_line_precedence(cli, work):
    (work / "c.toml").write_text(
        '[calibrate]\ncalibrator = "minmax"\nbatch = 5\n'
        '[[override]]\ntensors = "logits"\nskip = true\n'
    )
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--config", "c.toml")
    assert r.exit_code == 0, r.stderr
    cache = read_cache(work / "caches" / "conv.minmax.b5.cache")
    assert "logits" not in cache.scales
    assert "1 skipped" in r.stdout
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--config", "c.toml", "-c", "entropy")
    assert r.exit_code == 0, r.stderr
    assert read_cache(work / "caches" / "conv.entropy.b5.cache").algorithm == "EntropyCalibration2"


def test_nan_in_data_is_a_warning_not_an_error(cli, work):
    x = np.load(work / "calib.npz")["input"].copy()
    x[0, 0, 0, 0] = np.nan
    np.savez(work / "nan.npz", input=x)
    r = cli("calibrate", "conv.onnx", "--data", "nan.npz", "--cache", "nan.cache")
    assert r.exit_code == 0, r.stderr
    assert "warning" in r.stderr and "'input'" in r.stderr and "1 NaN" in r.stderr
    assert (work / "nan.cache").exists()


def test_help_teaches(cli):
    r = cli("calibrate", "--help")
    assert r.exit_code == 0
    text = " ".join(r.stdout.split())
    assert "trtcalib calibrate model.onnx --data calib.npz --calibrator entropy --batch 32" in text
    assert "default exact" in text and "TensorRT issue #774" in text
    assert "writes caches/model.entropy.b32.cache" in text
    assert "What the cache is for" in text


def _help_text(cli, *args: str) -> str:
    """The help with rich's panel borders removed and whitespace collapsed."""
    r = cli(*args, "--help")
    assert r.exit_code == 0, r.stderr
    return " ".join(r.stdout.replace("│", " ").split())


def test_help_says_entropy_counts_bin0_as_bin1_and_how_data_npz_is_matched(cli):
    text = _help_text(cli, "calibrate")
    assert "bin 0 is replaced by bin 1 before the sweep" in text
    assert "--param bin0_as_bin1=0" in text
    # the shared --calibrator help says it too (build uses it)
    assert "bin 0 replaced by bin 1 before the KL sweep" in text
    assert "bin 0 replaced by bin 1 before the KL sweep" in _help_text(cli, "build")
    assert "a one-input model takes an .npz's only array whatever its key" in text


def test_single_array_npz_feeds_a_one_input_model_whatever_its_key(cli, work):
    x = np.load(work / "calib.npz")["input"]
    np.savez(work / "other.npz", pixels=x)
    r = cli("calibrate", "conv.onnx", "--data", "other.npz", "-c", "minmax", "-o", "o.cache")
    assert r.exit_code == 0, r.stderr
    expected = float(np.float32(np.abs(x).max()) / np.float32(127))
    assert read_cache(work / "o.cache").scales["input"] == expected


# -- reuse ---------------------------------------------------------------------------------------
def test_reuse_auto_skips_matching_cache_and_recalibrates_on_change(cli, work):
    args = ("calibrate", "conv.onnx", "--data", "calib.npz", "--batch", "10", "--no-progress")
    assert cli(*args).exit_code == 0
    path = work / "caches" / "conv.entropy.b10.cache"
    stamp = path.stat().st_mtime_ns
    r = cli(*args)
    assert r.exit_code == 0 and "reusing" in r.stderr and "(reused)" in r.stdout
    assert path.stat().st_mtime_ns == stamp
    x = np.load(work / "calib.npz")["input"]
    np.savez(work / "calib.npz", input=x[::-1].copy())  # same values, other order
    r = cli(*args)
    assert r.exit_code == 0 and "recalibrating" in r.stderr and "data differs" in r.stderr
    assert path.stat().st_mtime_ns != stamp
    r = cli(*args, "--reuse-cache", "never")
    assert r.exit_code == 0 and "reusing" not in r.stderr


def test_reuse_auto_notices_other_parameters(cli, work):
    args = ("calibrate", "conv.onnx", "--data", "calib.npz", "--cache", "c.cache")
    assert cli(*args).exit_code == 0
    r = cli(*args, "--num-bins", "1024")
    assert r.exit_code == 0 and "recalibrating" in r.stderr and "num_bins" in r.stderr


def test_reuse_auto_recalibrates_for_another_release_of_the_same_major(cli, work):
    """--trt-version 10.9 must not hand out a cache labelled 10.8 (reused, unchanged)."""
    from trtcalib.cache import read_cache

    args = ("calibrate", "conv.onnx", "--data", "calib.npz", "--cache", "c.cache")
    assert cli(*args, "--trt-version", "10.8.0").exit_code == 0
    r = cli(*args, "--trt-version", "10.9.0")
    assert r.exit_code == 0 and "TensorRT version differs" in r.stderr, r.stderr
    assert read_cache(work / "c.cache").trt_version == 100900
    assert "(reused)" in cli(*args, "--trt-version", "10.9.0").stdout


def test_reuse_auto_names_a_last_batch_change(cli, work):
    """20 samples, batch 8: keep feeds 4 more samples than drop -- say that, not just 'data'."""
    args = ("calibrate", "conv.onnx", "--data", "calib.npz", "--batch", "8", "--cache", "c.cache")
    assert cli(*args, "--last-batch", "keep").exit_code == 0
    r = cli(*args, "--last-batch", "drop")
    assert r.exit_code == 0, r.stderr
    assert "made with --last-batch keep, now drop" in r.stderr


def test_reuse_auto_reads_the_data_twice_only_when_everything_else_matches(cli, work, monkeypatch):
    import trtcalib.calibrate as calibrate_module

    calls = []
    for name in ("data_fingerprint", "planned_tensors"):
        real = getattr(calibrate_module, name)
        monkeypatch.setattr(
            calibrate_module,
            name,
            lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k),
        )
    args = ("calibrate", "conv.onnx", "--data", "calib.npz", "--cache", "c.cache")
    assert cli(*args).exit_code == 0 and calls == []
    r = cli(*args, "--batch", "5")  # settings differ: no pass over the data before calibrating
    assert r.exit_code == 0 and "recalibrating" in r.stderr and "batch size" in r.stderr
    assert calls == []
    r = cli(*args, "--batch", "5")  # all else matches: the data and the tensors are compared
    assert r.exit_code == 0 and "reusing" in r.stderr
    assert calls == ["data_fingerprint", "planned_tensors"]


def test_reuse_auto_recalibrates_when_the_sidecar_lost_its_checksum(cli, work):
    import json

    args = ("calibrate", "conv.onnx", "--data", "calib.npz", "--cache", "c.cache")
    assert cli(*args).exit_code == 0
    side = work / "c.cache.json"
    data = json.loads(side.read_text())
    del data["cache_sha256"]
    side.write_text(json.dumps(data))
    r = cli(*args)
    assert r.exit_code == 0 and "recalibrating" in r.stderr, r.stderr
    assert "not verifiable: cache checksum" in r.stderr
    assert "cache_sha256" in json.loads(side.read_text())  # the new sidecar has it again


def test_a_model_onnxruntime_refuses_is_named_in_the_error(cli, work):
    model = tinymodels.conv_model()
    model.graph.node[0].op_type = "NoSuchOp"
    tinymodels.save(model, work, "odd.onnx")
    r = cli("calibrate", "odd.onnx", "--data", "calib.npz", "--no-progress")
    _assert_one_line_error(r, "odd.onnx: onnxruntime cannot load the model")


def test_growth_with_the_exact_histogram_is_a_warning(cli, work):
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--growth", "square", "--no-progress")
    assert r.exit_code == 0 and "--growth only shapes --histogram trt" in r.stderr
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--growth", "square",
            "--histogram", "trt", "--no-progress", "--reuse-cache", "never")  # fmt: skip
    assert r.exit_code == 0 and "--growth" not in r.stderr


def test_config_parameters_for_another_calibrator_name_the_config(cli, work):
    (work / "p.toml").write_text('[calibrate]\ncalibrator = "percentile"\npercentile = 99.9\n')
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--config", "p.toml",
            "--calibrator", "entropy")  # fmt: skip
    _assert_one_line_error(r, "p.toml: calibrator 'entropy': unknown parameter 'percentile'",
                           "its parameters are for 'percentile'")  # fmt: skip
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--param", "nope=1")
    _assert_one_line_error(r, "unknown parameter 'nope'")
    assert "p.toml" not in r.stderr


def test_a_cache_named_like_data_must_not_land_in_a_data_folder(cli, work):
    (work / "arrays").mkdir()
    np.save(work / "arrays" / "x.npy", np.load("calib.npz")["input"])
    r = cli("calibrate", "conv.onnx", "--data", "arrays", "--cache", "arrays/conv.npy")
    _assert_one_line_error(r, "is inside the --data source")
    assert sorted(p.name for p in (work / "arrays").iterdir()) == ["x.npy"]
    # a cache there is fine: the folder scan never reads one (so `--data .` keeps caches/)
    r = cli("calibrate", "conv.onnx", "--data", "arrays", "--cache", "arrays/conv.cache")
    assert r.exit_code == 0, r.stderr


def test_the_cache_must_not_replace_the_config_file(cli, work):
    config = work / "cfg.toml"
    config.write_text("[calibrate]\nbatch = 5\n")
    for mode in ("auto", "never"):
        r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--config", config,
                "--cache", config, "--reuse-cache", mode)  # fmt: skip
        _assert_one_line_error(r, "is the --config file")
        assert config.read_text() == "[calibrate]\nbatch = 5\n"


@pytest.mark.parametrize(
    ("last", "what"),
    [("keep", "one partial batch of 20 samples"),
     ("pad", "one batch of 20 samples padded with 12 repeats")],
)  # fmt: skip
def test_a_batch_larger_than_the_data_says_what_the_batches_are(cli, work, last, what):
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--batch", "32",
            "--last-batch", last, "--no-progress")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert f"--batch 32 is larger than the 20 samples: {what}" in r.stderr


def test_running_out_of_memory_is_one_line_not_a_traceback(cli, work, monkeypatch):
    import trtcalib.calibrate as calibrate_module

    def allocate(*args, **kwargs):
        raise MemoryError("Unable to allocate 715. GiB for an array with shape (999999984, 3)")

    monkeypatch.setattr(calibrate_module, "calibrate", allocate)
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--no-progress")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: out of memory (Unable to allocate 715. GiB") and "--batch" in last
    )
    assert not (work / "caches" / "conv.entropy.b32.cache").exists()


def test_reuse_always_takes_any_parseable_cache(cli, work):
    (work / "c.cache").write_text("TRT-8601-MinMaxCalibration\ninput: 3c010204\n")
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--cache", "c.cache",
            "--reuse-cache", "always")  # fmt: skip
    assert r.exit_code == 0 and "reusing" in r.stderr
    assert "none of its" not in r.stderr  # "input" is the model's
    assert (work / "c.cache").read_text() == "TRT-8601-MinMaxCalibration\ninput: 3c010204\n"
    # unchecked, but one sharing no tensor with the model is pointed out
    (work / "other.cache").write_text("TRT-8601-MinMaxCalibration\nfoo: 3c010204\n")
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--cache", "other.cache",
            "--reuse-cache", "always")  # fmt: skip
    assert r.exit_code == 0 and "warning: other.cache: none of its 1 tensors is in" in r.stderr
    # auto neither reuses nor replaces a cache without sidecar: replacing it takes `never`
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--cache", "c.cache",
            "--reuse-cache", "never")  # fmt: skip
    assert r.exit_code == 0 and "reusing" not in r.stderr
    assert read_cache(work / "c.cache").algorithm == "EntropyCalibration2"


def test_reuse_auto_refuses_a_cache_without_sidecar(cli, work):
    text = "TRT-8601-EntropyCalibration2\ninput: 3c010a14\n"
    (work / "t.cache").write_text(text)
    before = _files(work)
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "-o", "t.cache", "--no-progress")
    _assert_one_line_error(r, "t.cache", "sidecar", "--reuse-cache always", "never")
    assert "recalibrating" not in r.stderr
    assert (work / "t.cache").read_text() == text and _files(work) == before
    assert "is an error: it is neither reused nor overwritten" in _help_text(cli, "calibrate")


@pytest.mark.parametrize("target", ["conv.onnx", "calib.npz", "./calib.npz"])
@pytest.mark.parametrize("mode", ["auto", "never", "always"])
def test_cache_path_must_not_be_the_model_or_data(cli, work, target, mode):
    before = {p: (work / p).read_bytes() for p in ("conv.onnx", "calib.npz")}
    files = _files(work)
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "-o", target, "--reuse-cache", mode)
    what = "the model" if "conv" in target else "the --data source"
    _assert_one_line_error(r, "--cache", target.removeprefix("./"), what)
    assert "--reuse-cache never" not in r.stderr
    assert {p: (work / p).read_bytes() for p in before} == before and _files(work) == files


def test_cache_sidecar_must_not_be_the_data(cli, work):
    (work / "c.cache.json").write_bytes((work / "calib.npz").read_bytes())
    os.replace(work / "c.cache.json", work / "d.npz")
    os.link(work / "d.npz", work / "c.cache.json")  # a hard link: same file, other name
    r = cli("calibrate", "conv.onnx", "--data", "d.npz", "-o", "c.cache", "--reuse-cache", "never")
    _assert_one_line_error(r, "provenance sidecar", "the --data source")
    assert not (work / "c.cache").exists()


def test_corrupt_existing_cache_is_an_error_unless_never(cli, work):
    (work / "c.cache").write_text("not a cache\n")
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--cache", "c.cache")
    _assert_one_line_error(r, "c.cache", "--reuse-cache never")
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--cache", "c.cache",
            "--reuse-cache", "never")  # fmt: skip
    assert r.exit_code == 0
    assert read_cache(work / "c.cache").algorithm == "EntropyCalibration2"


# -- bad input: one line, non-zero exit, no cache ------------------------------------------------
def _bad_data(work: Path, kind: str) -> str:
    if kind == "wrong_shape":
        np.savez(work / "bad.npz", input=np.zeros((4, 3, 9, 9), np.float32))
        return "bad.npz"
    if kind == "missing_input":
        np.savez(work / "bad.npz", a=np.zeros((4, 4), np.float32))
        return "bad.npz"
    if kind == "empty_folder":
        (work / "empty").mkdir()
        return "empty"
    if kind == "pickled":
        np.savez(work / "bad.npz", input=np.array([{"x": 1}] * 4, dtype=object))
        return "bad.npz"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("model", "kind", "needles"),
    [
        ("conv.onnx", "wrong_shape", ["bad.npz", "'input'", "[N, 3, 8, 8]", "9"]),
        ("two.onnx", "missing_input", ["bad.npz", "'b'"]),
        ("conv.onnx", "empty_folder", ["empty", "empty data folder"]),
        ("conv.onnx", "pickled", ["bad.npz", "pickled"]),
    ],
)
def test_bad_data(cli, work, model, kind, needles):
    data = _bad_data(work, kind)
    before = _files(work)
    r = cli("calibrate", model, "--data", data)
    _assert_one_line_error(r, *needles)
    assert _files(work) == before


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["-c", "nope"], ["unknown calibrator 'nope'"]),
        (["-c", "percentile", "--percentile", "150"], ["--percentile", "150"]),
        (["-c", "percentile", "--percentile", "0"], ["--percentile"]),
        (["-c", "percentile", "--percentile", "nan"], ["--percentile"]),
        (["-c", "entropy", "--percentile", "99"], ["unknown parameter 'percentile'"]),
        (["--batch", "0"], ["--batch"]),
        (["--histogram", "fuzzy"], ["histogram policy", "fuzzy"]),
        (["--growth", "cube"], ["growth rule", "cube"]),
        (["--num-bins", "1000"], ["power of two", "1000"]),
        (["--last-batch", "maybe"], ["last batch", "maybe"]),
        (["--reuse-cache", "sometimes"], ["--reuse-cache", "sometimes"]),
        (["--trt-version", "ten"], ["--trt-version", "ten"]),
        (["--tensors", "nope"], ["'nope'"]),
        (["--tensors", ","], ["--tensors"]),
        (["--param", "quantile"], ["--param", "NAME=NUMBER"]),
        (["--param", "q=abc"], ["--param"]),
        (["--config", "missing.toml"], ["missing.toml", "no such config file"]),
        (["--sample-method", "shuffle"], ["--sample-method"]),
        (["--cache", "nowhere/sub/x.cache"], ["nowhere/sub", "does not exist"]),
        (["--cache", "/proc/trtcalib-test.cache"], ["/proc", "cannot write"]),
        (["--cache", "."], ["is a directory"]),
    ],
)
def test_bad_options(cli, work, args, needles):
    before = _files(work)
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", *args)
    _assert_one_line_error(r, *needles)
    assert _files(work) == before
    assert not (work / "caches").exists()


def test_caches_is_a_file(cli, work):
    (work / "caches").write_text("in the way\n")
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz")
    _assert_one_line_error(r, "caches is not a folder")
    assert (work / "caches").read_text() == "in the way\n"


def test_bad_config_file(cli, work):
    (work / "c.toml").write_text("[calibrate]\nbatch = 'many'\n")
    before = _files(work)
    r = cli("calibrate", "conv.onnx", "--data", "calib.npz", "--config", "c.toml")
    _assert_one_line_error(r, "c.toml", "batch")
    assert _files(work) == before


@pytest.mark.parametrize("kind", ["text", "missing", "directory"])
def test_model_not_onnx(cli, work, kind):
    if kind == "text":
        (work / "m.onnx").write_text("this is not a model\n" * 10)
    elif kind == "directory":
        (work / "m.onnx").mkdir()
    before = _files(work)
    r = cli("calibrate", "m.onnx", "--data", "calib.npz")
    _assert_one_line_error(r, "m.onnx")
    assert _files(work) == before


def test_read_only_folder_for_default_cache(cli, work):
    if os.geteuid() == 0:
        pytest.skip("root can write into read-only folders")
    os.chmod(work, 0o555)
    try:
        r = cli("calibrate", "conv.onnx", "--data", "calib.npz")
        _assert_one_line_error(r, "cannot write")
    finally:
        os.chmod(work, 0o755)
    assert not (work / "caches").exists()


# -- rich markup safety --------------------------------------------------------------------------
def test_summary_prints_bracketed_tensor_names_and_paths_literally(cli, tmp_path, monkeypatch):
    """Tensor names and paths are data, not rich markup: `[i]` would turn italic and `[bold]`
    would vanish if the table or the message lines parsed them."""
    from onnx import TensorProto, helper

    monkeypatch.chdir(tmp_path)
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x[i]"], ["[bold]"], name="relu"),
            helper.make_node("Neg", ["[bold]"], ["y"], name="neg"),
        ],
        "brackets",
        [helper.make_tensor_value_info("x[i]", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what the installed onnxruntime reads
    tinymodels.save(model, tmp_path, "brackets.onnx")
    x = np.linspace(-3.0, 2.0, 24, dtype=np.float32).reshape(6, 4)
    np.savez(tmp_path / "b.npz", **{"x[i]": x})
    r = cli(
        "calibrate", "brackets.onnx", "--data", "b.npz", "-c", "minmax", "--no-progress",
        "--cache", "out[red].cache",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in r.stdout.splitlines()]
    rows = {row[0]: row[1:] for row in cells if row}
    assert "x[i]" in rows and "[bold]" in rows, r.stdout
    # minmax amax = max|x| over all samples: 3 for x (linspace -3..2), max(relu(x)) = 2
    for name, amax in (("x[i]", 3.0), ("[bold]", 2.0)):
        scale = np.float32(amax) / np.float32(127)
        assert rows[name][:2] == [f"{amax:.6g}", f"{scale:.6g}"], r.stdout
    assert "cache: out[red].cache (wrote)" in r.stdout
    assert "provenance: out[red].cache.json" in r.stdout
    assert set(read_cache(tmp_path / "out[red].cache").scales) == {"x[i]", "[bold]", "y"}


def test_negative_seed_fails_before_the_data_is_read(cli, work):
    before = _files(work)
    # the data does not exist: the seed must be what is reported, whatever the sampling
    r = cli("calibrate", "conv.onnx", "--data", "missing.npz", "--seed", "-1")
    _assert_one_line_error(r, "--seed", "-1")
    assert "missing.npz" not in r.stderr and _files(work) == before


@pytest.mark.parametrize("bins", [[], ["--num-bins", "4096"]])
def test_mse_start_bin_past_the_bins_is_a_config_error(cli, work, bins):
    before = _files(work)
    n = 4096 if bins else 2048
    # a data file that does not exist: the check comes before any data is read
    r = cli("calibrate", "conv.onnx", "--data", "missing.npz", "-c", "mse",
            "--param", "start_bin=5000", *bins)  # fmt: skip
    _assert_one_line_error(r, "start_bin=5000", f"{n} bins", f"0 to {n - 1}")
    assert _files(work) == before
    ok = cli("calibrate", "conv.onnx", "--data", "calib.npz", "-c", "mse",
             "--param", "start_bin=2047", "-o", "m.cache")  # fmt: skip
    assert ok.exit_code == 0, ok.stderr

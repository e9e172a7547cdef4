"""`trtcalib build` and `trtcalib env` on a machine without GPU: everything up to the boundary,
then exit 3 with one line naming what is missing and the command that finishes the job."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import numpy as np
import onnx
import pytest
import tinymodels

from trtcalib.cache import read_cache, read_provenance

CACHE = "caches/model.entropy.b8.cache"


@pytest.fixture
def no_tensorrt(monkeypatch):
    """This process cannot import TensorRT (whatever else the test session loaded)."""
    for name in ("tensorrt", "tensorrt_bindings"):
        monkeypatch.setitem(sys.modules, name, None)


def _one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    return errors[0]


def _finish_command(line: str) -> list[str]:
    marker = "finish on a GPU host with: "
    assert marker in line, line
    return shlex.split(line.split(marker, 1)[1])


BUILD = ("build", "model.onnx", "--data", "calib.npz", "--batch", "8", "--no-progress")


def test_without_tensorrt_calibrates_on_cpu_then_exits_3(cli, workdir, no_tensorrt):
    result = cli(*BUILD)
    assert result.exit_code == 3
    line = _one_error_line(result.stderr)
    assert "TensorRT" in line and "not" in line  # names what is missing
    cache = read_cache(workdir / CACHE)
    assert cache.algorithm == "EntropyCalibration2"
    assert cache.trt_version == 101601
    assert "input" in cache.scales and "logits" in cache.scales
    prov = read_provenance(workdir / CACHE)
    assert prov.batch_size == 8 and prov.num_samples == 16  # 20 samples, last 4 dropped
    assert prov.extra["last_batch"] == "drop"
    assert not (workdir / "engines" / "model.entropy.b8.engine").exists()
    command = _finish_command(line)
    assert command[:3] == ["trtcalib", "build", "model.onnx"]
    assert command[command.index("--cache") + 1] == CACHE
    assert command[command.index("--reuse-cache") + 1] == "always"
    assert "--data" not in command  # the GPU host needs only the model and the cache
    # the printed command works as printed (here it stops at the same boundary, reusing the cache)
    before = (workdir / CACHE).read_bytes()
    again = cli(*command[1:], "--no-progress")
    assert again.exit_code == 3
    assert "without checks" in again.stderr and "calibrating" not in again.stderr
    assert (workdir / CACHE).read_bytes() == before


def test_auto_reuse_skips_calibration_and_says_so(cli, workdir, no_tensorrt):
    assert cli(*BUILD).exit_code == 3
    stamp = (workdir / CACHE).stat().st_mtime_ns
    result = cli(*BUILD)
    assert result.exit_code == 3
    assert "reusing caches/model.entropy.b8.cache" in result.stderr
    assert "calibration skipped" in result.stderr
    assert (workdir / CACHE).stat().st_mtime_ns == stamp
    # other data: provenance no longer matches, so it recalibrates and says why
    rng = np.random.default_rng(4)
    np.savez(workdir / "other.npz", input=rng.normal(size=(20, 3, 8, 8)).astype(np.float32))
    changed = cli("build", "model.onnx", "--data", "other.npz", "--batch", "8", "--no-progress")
    assert changed.exit_code == 3
    assert "not reusing" in changed.stderr and "data" in changed.stderr
    assert "calibrating on the CPU" in changed.stderr


def test_a_cpu_cache_serves_another_release_of_the_same_major(cli, workdir, no_tensorrt):
    """calibrate labels 10.16.1; a 10.8 GPU host reuses it (its calibrator restamps the header)."""
    args = ("--data", "calib.npz", "--batch", "8", "--last-batch", "drop", "--no-progress")
    assert cli("calibrate", "model.onnx", *args).exit_code == 0  # writes CACHE, labelled 10.16.1
    stamp = (workdir / CACHE).stat().st_mtime_ns
    result = cli(*BUILD, "--trt-version", "10.8.0")
    assert result.exit_code == 3
    assert "calibration skipped" in result.stderr, result.stderr
    assert (workdir / CACHE).stat().st_mtime_ns == stamp


def test_a_cache_calibrated_with_last_batch_keep_is_reused(cli, workdir, no_tensorrt):
    """The README's flow: `calibrate` (keeps the last partial batch) then `build --data` (drops
    it): the cache saw every sample of this data, so build reuses it instead of overwriting."""
    args = ("--data", "calib.npz", "--batch", "8", "--no-progress")
    assert cli("calibrate", "model.onnx", *args).exit_code == 0  # 20 samples, last 4 kept
    before = (workdir / CACHE).read_bytes()
    result = cli(*BUILD)
    assert result.exit_code == 3
    assert "calibration skipped" in result.stderr, result.stderr
    assert "--last-batch keep on this data" in result.stderr
    assert (workdir / CACHE).read_bytes() == before
    # the same policy on other data is still other data
    rng = np.random.default_rng(4)
    np.savez(workdir / "other.npz", input=rng.normal(size=(20, 3, 8, 8)).astype(np.float32))
    other = cli("build", "model.onnx", "--data", "other.npz", "--batch", "8", "--no-progress")
    assert "not reusing" in other.stderr and "calibrating on the CPU" in other.stderr


def test_a_trt_histogram_cache_is_reused(cli, workdir, no_tensorrt):
    # build compares no histogram policy; the growth only a `trt` histogram records must not
    # count as a parameter change either
    args = ("--data", "calib.npz", "--batch", "8", "--last-batch", "drop", "--no-progress")
    assert cli("calibrate", "model.onnx", *args, "--histogram", "trt").exit_code == 0
    result = cli(*BUILD)
    assert result.exit_code == 3 and "calibration skipped" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("extra", "named"),
    [(("--tensors", "input,logits"), "tensors="), (("--num-bins", "1024"), "num_bins=1024")],
)
def test_auto_neither_reuses_nor_overwrites_what_build_cannot_remake(
    cli, workdir, no_tensorrt, extra, named
):
    args = ("--data", "calib.npz", "--batch", "8", "--last-batch", "drop", "--no-progress")
    assert cli("calibrate", "model.onnx", *args, *extra).exit_code == 0
    before = (workdir / CACHE).read_bytes()
    result = cli(*BUILD)
    assert result.exit_code == 2, result.stderr
    line = _one_error_line(result.stderr)
    assert "build has no option for" in line and named in line, line
    assert (workdir / CACHE).read_bytes() == before
    assert "calibrating" not in result.stderr


def test_auto_reuse_reads_the_data_only_when_model_and_settings_match(
    cli, workdir, no_tensorrt, monkeypatch
):
    import trtcalib.calibrate as calibrate_module

    calls = []
    real = calibrate_module.data_fingerprint
    monkeypatch.setattr(
        calibrate_module, "data_fingerprint", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    args = ("build", "model.onnx", "--data", "calib.npz", "--no-progress", "--cache", "c.cache")
    assert cli(*args, "--batch", "8").exit_code == 3 and calls == []
    changed = cli(*args, "--batch", "4")
    assert changed.exit_code == 3 and "not reusing" in changed.stderr
    assert "batch size" in changed.stderr and calls == []
    again = cli(*args, "--batch", "4")
    assert again.exit_code == 3 and "calibration skipped" in again.stderr and calls == [1]


def test_tensorrt_11_target_writes_the_qdq_model(cli, workdir, no_tensorrt):
    result = cli(*BUILD, "--trt-version", "11")
    assert result.exit_code == 3
    line = _one_error_line(result.stderr)
    qdq_path = workdir / "engines" / "model.entropy.b8.qdq.onnx"
    assert str(qdq_path.relative_to(workdir)) in line
    model = onnx.load(str(qdq_path))
    ops = [node.op_type for node in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert read_cache(workdir / CACHE).trt_version == 110400
    assert "--trt-version" in line and _finish_command(line)[-1] == "11"


def test_percentile_without_tensorrt_writes_a_minmax_header_cache(cli, workdir, no_tensorrt):
    result = cli(*BUILD, "--calibrator", "percentile", "--percentile", "99.9")
    assert result.exit_code == 3
    cache = read_cache(workdir / "caches" / "model.percentile.b8.cache")
    assert cache.algorithm == "MinMaxCalibration"
    assert read_provenance(workdir / "caches" / "model.percentile.b8.cache").params["percentile"]


def test_real_tensorrt_10_bindings_without_gpu_stop_cleanly(cli, workdir, trt10):
    """The real 10.16 bindings import (stubs); trt.Builder(logger) fails; we exit 3."""
    result = cli(*BUILD)
    assert result.exit_code == 3
    line = _one_error_line(result.stderr)
    assert "TensorRT 10.16.1.11 could not create a builder" in line
    assert "target: TensorRT 10.16.1.11 (implicit)" in result.stderr
    assert read_cache(workdir / CACHE).trt_version == 101601


def test_real_tensorrt_11_bindings_without_gpu_stop_cleanly(workdir, env_for):
    proc = subprocess.run(
        [sys.executable, "-m", "trtcalib", *BUILD],
        env=env_for(11),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 3, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "TensorRT 11.4.0.106 could not create a builder" in line
    assert "target: TensorRT 11.4.0.106 (explicit)" in proc.stderr
    assert (workdir / "engines" / "model.entropy.b8.qdq.onnx").is_file()


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--calibrator", "nope"), "nope"),
        (("--last-batch", "keep"), "--last-batch"),
        (("--reuse-cache", "maybe"), "--reuse-cache"),
        (("--workspace", "0"), "--workspace"),
        (("--trt-version", "9"), "--trt-version"),
        (("--trt-version", "12"), "expected 10, 11"),  # unknown: calibrators or Q/DQ?
        (("--percentile", "0"), "--percentile"),
        (("--param", "quantile"), "--param"),
        (("--cuda", "opencl"), "--cuda"),
        (("--batch", "0"), "--batch"),
    ],
)
def test_bad_options_are_one_line_errors_and_write_nothing(
    cli, workdir, no_tensorrt, extra, message
):
    result = cli(*BUILD, *extra)
    assert result.exit_code == 2
    assert message in _one_error_line(result.stderr)
    assert not (workdir / "caches").exists() and not (workdir / "engines").exists()


def test_fp16_is_said_to_do_nothing_for_tensorrt_11(cli, workdir, no_tensorrt):
    result = cli(*BUILD, "--trt-version", "11", "--fp16")
    assert result.exit_code == 3
    assert "--fp16 has no effect on TensorRT 11" in result.stderr
    assert "has no effect" not in cli(*BUILD, "--trt-version", "10", "--fp16").stderr


def test_fixed_batch_model_with_another_batch(cli, workdir, no_tensorrt):
    tinymodels.save(tinymodels.conv_model(batch=1), workdir, "fixed.onnx")
    np.savez(workdir / "one.npz", input=np.zeros((4, 3, 8, 8), np.float32))
    result = cli("build", "fixed.onnx", "--data", "one.npz", "--batch", "8")
    assert result.exit_code == 2
    line = _one_error_line(result.stderr)
    assert "fixed.onnx" in line and "'input'" in line and "--batch 1" in line
    assert not (workdir / "caches").exists()


def test_no_data_and_no_cache(cli, workdir, no_tensorrt):
    result = cli("build", "model.onnx", "--batch", "8")
    assert result.exit_code == 2
    assert "--data" in _one_error_line(result.stderr)
    assert not (workdir / "caches").exists()


def test_missing_model(cli, workdir, no_tensorrt):
    result = cli("build", "missing.onnx", "--data", "calib.npz")
    assert result.exit_code == 2
    assert "missing.onnx" in _one_error_line(result.stderr)


def test_reuse_always_refuses_a_cache_of_another_algorithm(cli, workdir, no_tensorrt):
    assert cli(*BUILD, "--calibrator", "minmax").exit_code == 3
    result = cli(
        "build",
        "model.onnx",
        "--batch",
        "8",
        "--reuse-cache",
        "always",
        "--cache",
        "caches/model.minmax.b8.cache",
    )
    assert result.exit_code == 2
    assert "MinMaxCalibration" in _one_error_line(result.stderr)


def test_reuse_always_warns_about_a_cache_of_another_model(cli, workdir, no_tensorrt):
    (workdir / "other.cache").write_text("TRT-101601-EntropyCalibration2\nfoo: 3c010204\n")
    args = ("build", "model.onnx", "--batch", "8", "--reuse-cache", "always", "--no-progress")
    result = cli(*args, "--cache", "other.cache")
    assert result.exit_code == 3
    assert "warning: other.cache: none of its 1 tensors is in the model" in result.stderr


@pytest.fixture
def tensorrt_8(monkeypatch):
    """This process 'has' TensorRT 8.6 bindings that load (no such wheel installs here)."""
    from trtcalib.trt import env, workflow
    from trtcalib.trt.loader import TensorRTInfo

    info = TensorRTInfo("8.6.1.6", "tensorrt", True, None)
    monkeypatch.setattr(workflow, "probe_tensorrt", lambda: info)
    monkeypatch.setattr(env, "probe_tensorrt", lambda: info)
    monkeypatch.setattr(env, "probe_builder", lambda: None)


def test_tensorrt_8_is_not_taken_for_tensorrt_10(cli, workdir, tensorrt_8):
    """TensorRT 8 has another cache header and API: prepare a TRT 10 build, stop at exit 3."""
    result = cli(*BUILD)
    assert result.exit_code == 3, result.stderr
    assert (
        "TensorRT 8.6.1.6 is installed, but trtcalib builds for TensorRT 10 or 11" in result.stderr
    )
    line = _one_error_line(result.stderr)
    assert "TensorRT 10 is needed but this machine has TensorRT 8.6.1.6" in line
    assert read_cache(workdir / CACHE).trt_version == 101601  # a TRT 10 header, not 8601
    paths = {p["name"]: p for p in json.loads(cli("env", "--json").stdout)["build_paths"]}
    for name in ("TensorRT 10 INT8 engine (calibrators)", "TensorRT 11 Q/DQ engine"):
        assert paths[name]["runs_here"] is False
        assert "TensorRT 8.6.1.6 is not supported" in paths[name]["reason"]


# ------------------------------------------------------------------ env


def test_env_json_without_tensorrt(cli, no_tensorrt):
    result = cli("env", "--json")
    assert result.exit_code == 0
    env = json.loads(result.stdout)
    assert env["tensorrt"]["loaded"] is False
    paths = {p["name"]: p for p in env["build_paths"]}
    assert paths["CPU calibration, cache and Q/DQ model"]["runs_here"] is True
    assert not any(p["runs_here"] for name, p in paths.items() if "engine" in name)
    assert {c["backend"] for c in env["cuda"]} == {"cuda-python", "pycuda"}


def test_env_table_with_real_tensorrt_10(cli, trt10):
    result = cli("env")
    assert result.exit_code == 0
    assert "10.16.1.11 (implicit: calibrators)" in result.stdout
    assert "could not create a builder" in result.stdout
    env = json.loads(cli("env", "--json").stdout)
    assert env["tensorrt"]["quantization"] == "implicit" and env["tensorrt"]["loaded"] is True


def test_env_with_real_tensorrt_11(workdir, env_for):
    proc = subprocess.run(
        [sys.executable, "-m", "trtcalib", "env", "--json"],
        env=env_for(11),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout)
    assert env["tensorrt"]["version"] == "11.4.0.106"
    assert env["tensorrt"]["quantization"] == "explicit"
    paths = {p["name"]: p for p in env["build_paths"]}
    assert "no calibrators" in paths["TensorRT 10 INT8 engine (calibrators)"]["reason"]


def test_qdq_model_gets_the_usual_file_mode(cli, workdir, no_tensorrt):
    """The Q/DQ model is a user output to copy to the GPU host: not a 0600 temp file."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        assert cli(*BUILD, "--trt-version", "11").exit_code == 3
    finally:
        os.umask(old)
    qdq_path = workdir / "engines" / "model.entropy.b8.qdq.onnx"
    assert stat.S_IMODE(qdq_path.stat().st_mode) == 0o644


def test_tensorrt_11_reuses_a_tensorrt_10_cache_of_the_same_calibration(cli, workdir, no_tensorrt):
    """TensorRT 11 reads no cache, only its scales: the header's TensorRT version is no reason to
    recalibrate (and overwrite the TensorRT 10 cache) when model, data and settings match."""
    assert cli(*BUILD).exit_code == 3  # TensorRT 10 target: CPU calibration, TRT-101601 cache
    before = (workdir / CACHE).read_bytes()
    result = cli(*BUILD, "--trt-version", "11")
    assert result.exit_code == 3
    assert "reusing caches/model.entropy.b8.cache" in result.stderr
    assert "calibrating on the CPU" not in result.stderr
    assert (workdir / CACHE).read_bytes() == before  # still the TensorRT 10 cache
    model = onnx.load(str(workdir / "engines" / "model.entropy.b8.qdq.onnx"))
    assert "QuantizeLinear" in [node.op_type for node in model.graph.node]


@pytest.mark.parametrize(
    "content",
    [
        b"TRT-8601-EntropyCalibration2\r\ninput: 3c010a14\r\n",  # TensorRT 8, another target
        b"TRT-101601-EntropyCalibration2\ninput: 3c010a14\n",  # TensorRT 10, cannot be checked
    ],
    ids=["trt8", "trt10"],
)
def test_auto_never_overwrites_a_cache_without_provenance(cli, workdir, no_tensorrt, content):
    """`--cache their.cache` written by TensorRT: auto can neither check nor silently replace it."""
    (workdir / "their.cache").write_bytes(content)
    result = cli(*BUILD, "--cache", "their.cache")
    assert result.exit_code == 2
    line = _one_error_line(result.stderr)
    assert "their.cache" in line and "--reuse-cache always" in line
    assert (workdir / "their.cache").read_bytes() == content
    assert not (workdir / "their.cache.json").exists()
    assert "calibrating" not in result.stderr
    # never: the user said so, it is recalibrated and replaced
    again = cli(*BUILD, "--cache", "their.cache", "--reuse-cache", "never")
    assert again.exit_code == 3
    assert read_provenance(workdir / "their.cache") is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--cache", "calib.npz"), "--cache calib.npz: is the --data source"),
        (("--cache", "model.onnx"), "--cache model.onnx: is the model"),
        (("--engine", "model.onnx"), "--engine model.onnx: is the model"),
        (("--engine", "e.bin", "--cache", "e.bin"), "--cache and --engine are the same file"),
        (
            ("--engine", "e.bin", "--cache", "e.timing"),
            "its timing cache) e.timing: is the --cache",
        ),
        (("--engine", "c.cache.json", "--cache", "c.cache"), "is the --cache's provenance sidecar"),
    ],
)
def test_outputs_never_replace_the_inputs(cli, workdir, no_tensorrt, args, message):
    """`--reuse-cache never --cache calib.npz` wrote the cache over the calibration data."""
    before = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
    result = cli(*BUILD, "--reuse-cache", "never", *args)
    assert result.exit_code == 2
    assert message in _one_error_line(result.stderr)
    after = {p.name: p.read_bytes() for p in workdir.iterdir() if p.is_file()}
    assert after == before
    assert not (workdir / "caches").exists() and not (workdir / "engines").exists()


def test_qdq_model_path_derived_from_the_engine_never_replaces_the_model(cli, workdir, no_tensorrt):
    (workdir / "model.onnx").rename(workdir / "m.qdq.onnx")
    before = (workdir / "m.qdq.onnx").read_bytes()
    result = cli(
        "build",
        "m.qdq.onnx",
        "--data",
        "calib.npz",
        "--batch",
        "8",
        "--no-progress",
        "--trt-version",
        "11",
        "--engine",
        "m.engine",
    )
    assert result.exit_code == 2
    assert "is the model" in _one_error_line(result.stderr)
    assert (workdir / "m.qdq.onnx").read_bytes() == before

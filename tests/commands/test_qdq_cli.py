"""`trtcalib qdq`, `trtcalib eval`, `trtcalib compare`: outputs and every bad input."""

from __future__ import annotations

import json
import struct

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tinymodels


def hex_of(scale: float) -> str:
    return format(struct.unpack(">I", struct.pack(">f", scale))[0], "x")


def write_trt_cache(path, scales: dict[str, float], header="TRT-100900-EntropyCalibration2"):
    lines = [header] + [f"{name}: {hex_of(s)}" for name, s in scales.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


SCALES = {"input": 1.0 / 127, "relu1": 0.02, "flat": 0.01}


@pytest.fixture
def files(tmp_path):
    model = tinymodels.save(tinymodels.conv_model(), tmp_path)
    cache = write_trt_cache(tmp_path / "model.cache", SCALES)
    x = np.random.default_rng(0).uniform(-1, 1, (24, 3, 8, 8)).astype(np.float32)
    labels = np.random.default_rng(1).integers(0, 4, 24)
    data = tmp_path / "data.npz"
    np.savez(data, input=x, labels=labels)
    plain = tmp_path / "plain.npz"
    np.savez(plain, input=x)
    np.save(tmp_path / "labels.npy", labels)
    return {"dir": tmp_path, "model": model, "cache": cache, "data": data, "plain": plain}


def listing(directory) -> set[str]:
    return {p.name for p in directory.iterdir()}


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: "), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------ trtcalib qdq


def test_qdq_writes_default_output_in_the_current_directory(cli, files, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    result = cli("qdq", files["model"], "--cache", files["cache"])
    assert result.exit_code == 0, result.stderr
    out = work / "model.qdq.onnx"
    assert out.is_file() and str(out) in result.stdout.replace("\n", "")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    q_inputs = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    assert {"input", "relu1", "flat", "w1", "w2", "wfc"} == q_inputs
    ort.InferenceSession(str(out)).run(None, {"input": np.ones((2, 3, 8, 8), np.float32)})
    assert listing(work) == {"model.qdq.onnx"}  # no temp files left


def test_qdq_explicit_output_exclude_and_missing_warning(cli, files):
    write_trt_cache(files["dir"] / "partial.cache", {"input": 0.01, "relu1": 0.02})
    out = files["dir"] / "out" / "int8.onnx"
    out.parent.mkdir()
    result = cli(
        "qdq", files["model"], "-c", files["dir"] / "partial.cache", "-o", out, "-x", "Gemm"
    )
    assert result.exit_code == 0, result.stderr
    model = onnx.load(str(out))
    fc = next(n for n in model.graph.node if n.name == "fc")
    assert list(fc.input) == ["flat", "wfc", "bfc"]  # excluded: all float
    # the only activation left without a scale is flat, but its only reader is excluded
    assert "missing" not in result.stderr


def test_qdq_warns_about_tensors_without_scale(cli, files):
    write_trt_cache(files["dir"] / "partial.cache", {"input": 0.01, "relu1": 0.02})
    result = cli(
        "qdq", files["model"], "-c", files["dir"] / "partial.cache", "-o", files["dir"] / "o.onnx"
    )
    assert result.exit_code == 0
    assert "warning:" in result.stderr and "flat" in result.stderr


def test_qdq_reports_skipped_zero_and_inf_scales(cli, files):
    cache = write_trt_cache(
        files["dir"] / "odd.cache", {"input": 0.01, "relu1": 0.0, "flat": float("inf")}
    )
    result = cli("qdq", files["model"], "-c", cache, "-o", files["dir"] / "o.onnx")
    assert result.exit_code == 0, result.stderr
    assert "relu1: left in float (scale is 0" in result.stderr
    assert "flat: left in float (scale is inf" in result.stderr


def test_qdq_upgrades_old_opset_and_says_so(cli, tmp_path):
    model = tinymodels.save(tinymodels.conv_model(opset=11), tmp_path)
    cache = write_trt_cache(tmp_path / "c.cache", SCALES)
    result = cli("qdq", model, "-c", cache, "-o", tmp_path / "o.onnx")
    assert result.exit_code == 0, result.stderr
    assert "opset 11 -> 13" in result.stderr
    assert onnx.load(str(tmp_path / "o.onnx")).opset_import[0].version == 13


def test_qdq_refuses_to_overwrite_the_input_model(cli, files):
    before = files["model"].read_bytes()
    result = cli("qdq", files["model"], "-c", files["cache"], "-o", files["model"])
    assert_one_line_error(result, "is the model")
    assert files["model"].read_bytes() == before


def test_outputs_never_replace_external_weights_nor_land_in_a_data_folder(cli, files):
    folder = files["dir"]
    model = folder / "ext.onnx"
    onnx.save(tinymodels.conv_model(), str(model), save_as_external_data=True,
              location="ext.weights", size_threshold=0)  # fmt: skip
    weights = (folder / "ext.weights").read_bytes()
    result = cli("qdq", model, "-c", files["cache"], "-o", folder / "ext.weights")
    assert_one_line_error(result, "is the model's external weights file")
    assert (folder / "ext.weights").read_bytes() == weights
    # a report written into a --data folder would be read back as data next time
    data = folder / "arrays"
    data.mkdir()
    np.save(data / "x.npy", np.load(files["plain"])["input"])
    report = data / "report.npz"
    result = cli("eval", files["model"], "-c", files["cache"], "-d", data, "--json", report)
    assert_one_line_error(result, "is inside the --data source")
    assert not report.exists()
    # a JSON report there is never read as data: allowed
    result = cli(
        "eval", files["model"], "-c", files["cache"], "-d", data, "--json", data / "r.json"
    )
    assert result.exit_code == 0, result.stderr


def test_outputs_never_replace_the_provenance_sidecar_of_the_cache(cli, files):
    """The sidecar (CACHE.json) is what makes the cache reusable: qdq -o / eval --json must not
    turn it into an ONNX file or a report, even when it does not exist yet."""
    side = files["cache"].with_name(files["cache"].name + ".json")
    for command in (
        ("qdq", files["model"], "--cache", files["cache"], "-o", side),
        ("eval", files["model"], "--cache", files["cache"], "-d", files["data"], "--json", side),
    ):
        result = cli(*command)
        assert_one_line_error(result, "provenance sidecar", str(side))
        assert not side.exists()


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("missing model", ["nope.onnx", "no such file"]),
        ("not onnx", ["junk.onnx", "not an ONNX model"]),
        ("missing cache", ["none.cache"]),
        ("bad cache", ["bad.cache"]),
        ("other model cache", ["other.cache: calibration cache does not match", "relu1"]),
        ("unknown exclude", ["--exclude", "ghost"]),
        ("output folder missing", ["does not exist"]),
        ("output is a folder", ["is a directory"]),
    ],
)
def test_qdq_bad_inputs(cli, files, case, fragments):
    d = files["dir"]
    (d / "junk.onnx").write_bytes(b"this is not protobuf at all \x00\xff")
    (d / "bad.cache").write_text("TRT-100900-EntropyCalibration2\nrelu1 no colon here\n")
    write_trt_cache(d / "other.cache", {"input": 0.01, "some/other/tensor": 0.1, "x": 0.2})
    (d / "adir").mkdir()
    args = {
        "missing model": [d / "nope.onnx", "-c", files["cache"]],
        "not onnx": [d / "junk.onnx", "-c", files["cache"]],
        "missing cache": [files["model"], "-c", d / "none.cache"],
        "bad cache": [files["model"], "-c", d / "bad.cache"],
        "other model cache": [files["model"], "-c", d / "other.cache"],
        "unknown exclude": [files["model"], "-c", files["cache"], "--exclude", "ghost"],
        "output folder missing": [files["model"], "-c", files["cache"], "-o", d / "no/x.onnx"],
        "output is a folder": [files["model"], "-c", files["cache"], "-o", d / "adir"],
    }[case]
    before = listing(d)
    result = cli("qdq", *args, "-o", d / "out.onnx") if "-o" not in args else cli("qdq", *args)
    assert_one_line_error(result, *fragments)
    assert listing(d) == before  # nothing written
    assert list((d / "adir").iterdir()) == []


def test_qdq_requires_cache_option(cli, files):
    result = cli("qdq", files["model"])
    assert result.exit_code == 2
    assert "--cache" in result.stderr


def test_qdq_help_teaches(cli):
    result = cli("qdq", "--help")
    assert result.exit_code == 0
    for text in ("--cache", "--exclude", "qdq.onnx", "Example"):
        assert text in result.stdout


# ------------------------------------------------------------------ trtcalib eval


def test_eval_prints_metrics_and_writes_json(cli, files):
    out = files["dir"] / "report.json"
    result = cli(
        "eval", files["model"], "-c", files["cache"], "-d", files["data"], "--json", out, "-b", "5"
    )
    assert result.exit_code == 0, result.stderr
    assert "top-1 agreement" in result.stdout and "SQNR" in result.stdout
    assert "labels" in result.stderr  # took the labels array of the data file
    report = json.loads(out.read_text())
    assert report["report"]["num_samples"] == 24
    assert report["report"]["accuracy_fp32"] is not None
    assert {t["name"] for t in report["report"]["tensors"]} == {"input", "relu1", "flat"}
    assert report["placement"]["quantized"] == ["input", "relu1", "flat"]
    # the accuracy printed is computed against the labels: check it independently
    labels = np.load(files["data"])["labels"]
    x = np.load(files["data"])["input"]
    session = ort.InferenceSession(files["model"].read_bytes())
    fp32 = session.run(None, {"input": x})[0].argmax(1)
    assert report["report"]["accuracy_fp32"] == pytest.approx(np.mean(fp32 == labels))


def test_eval_with_labels_file_and_sensitivity(cli, files):
    result = cli(
        "eval", files["model"], "-c", files["cache"], "-d", files["plain"],
        "--labels", files["dir"] / "labels.npy", "--sensitivity", "--top", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "Sensitivity" in result.stdout
    # only the top 2 of the 4 layers are listed, by ONNX node name
    shown = [name for name in ("conv1", "conv2", "add1", "fc") if f" {name} " in result.stdout]
    assert len(shown) == 2


def test_eval_sensitivity_skip_mode_writes_ranking_to_json(cli, files):
    out = files["dir"] / "r.json"
    result = cli(
        "eval", files["model"], "-c", files["cache"], "-d", files["plain"],
        "--sensitivity", "--sensitivity-mode", "skip", "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    ranking = json.loads(out.read_text())["sensitivity"]
    assert ranking["mode"] == "skip"
    assert {row["node"] for row in ranking["layers"]} == {"conv1", "conv2", "add1", "fc"}


def test_eval_allow_partial_also_ranks_the_partial_model(cli, files):
    """--allow-partial evaluated a partial model; --sensitivity must rank that same model."""
    partial = write_trt_cache(files["dir"] / "partial.cache", {"input": 1.0 / 127})
    args = ("eval", files["model"], "-c", partial, "-d", files["plain"], "--sensitivity")
    assert cli(*args).exit_code == 2  # too few scales without --allow-partial
    result = cli(*args, "--allow-partial")
    assert result.exit_code == 0, result.stderr
    assert "Sensitivity" in result.stdout


def _sequence_model():
    """[N, 4] -> MatMul -> [N, 2, 3]: a class per position, not per sample."""
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(2).normal(size=(4, 6)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["input", "w"], ["mm"]),
        helper.make_node("Reshape", ["mm", "shape"], ["out"]),
    ]
    return tinymodels.make(
        nodes,
        "seq",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 2, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, 2, 3]), "shape")],
    )


def test_eval_labels_with_a_per_position_classifier_is_a_one_line_error(cli, tmp_path):
    model = tinymodels.save(_sequence_model(), tmp_path)
    cache = write_trt_cache(tmp_path / "seq.cache", {"input": 0.02, "mm": 0.05})
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", input=x, labels=np.zeros(10, np.int64))
    result = cli("eval", model, "-c", cache, "-d", tmp_path / "d.npz")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.stderr
    assert "labels are one class per sample" in errors[0]
    assert "'out' has shape [10, 2, 3]" in errors[0]
    np.savez(tmp_path / "plain.npz", input=x)  # no labels: agreement per position still works
    result = cli(
        "eval", model, "-c", cache, "-d", tmp_path / "plain.npz", "--json", tmp_path / "r.json"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["report"]["classifier_output"] == "out"


def test_eval_says_when_the_model_fixes_the_batch(cli, tmp_path):
    model = tinymodels.save(tinymodels.conv_model(batch=4), tmp_path)
    cache = write_trt_cache(tmp_path / "c.cache", SCALES)
    np.savez(tmp_path / "d.npz", input=np.zeros((6, 3, 8, 8), np.float32))
    result = cli("eval", model, "-c", cache, "-d", tmp_path / "d.npz", "--batch", "2")
    assert result.exit_code == 0, result.stderr
    assert "--batch 2: the model fixes a batch of 4" in result.stderr
    result = cli("eval", model, "-c", cache, "-d", tmp_path / "d.npz")  # no --batch: no warning
    assert "fixes a batch" not in result.stderr


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--labels", "{d}/missing.npy"], ["missing.npy", "no such labels file"]),
        (["--labels", "{d}/short.npy"], ["short.npy: 23 labels for the 24 samples of"]),
        (["--labels", "{d}/plain.npz:nokey"], ["no array 'nokey'"]),
        (["--sensitivity", "--sensitivity-mode", "sideways"], ["--sensitivity-mode"]),
        (["--sensitivity-mode", "skip"], ["--sensitivity-mode: only applies with --sensitivity"]),
        (["--sensitivity-samples", "8"], ["--sensitivity-samples: only applies with"]),
        (["--json", "{d}/nodir/r.json"], ["does not exist"]),
        (["--exclude", "ghost"], ["ghost"]),
    ],
)
def test_eval_bad_inputs(cli, files, extra, fragments):
    d = files["dir"]
    np.save(d / "short.npy", np.zeros(23, np.int64))
    before = listing(d)
    args = [a.format(d=d) for a in extra]
    result = cli("eval", files["model"], "-c", files["cache"], "-d", files["plain"], *args)
    assert_one_line_error(result, *fragments)
    assert listing(d) == before


def test_eval_missing_data_and_bad_top(cli, files):
    result = cli("eval", files["model"], "-c", files["cache"], "-d", files["dir"] / "no.npz")
    assert_one_line_error(result, "no.npz")
    result = cli("eval", files["model"], "-c", files["cache"], "-d", files["data"], "--top", "0")
    assert result.exit_code == 2 and "--top" in result.stderr


# ------------------------------------------------------------------ trtcalib compare


def test_compare_runs_each_calibrator_in_one_table(cli, files):
    out = files["dir"] / "cmp.json"
    result = cli(
        "compare", files["model"], "-d", files["plain"], "--calibrators", "minmax,percentile",
        "--eval-data", files["data"], "--json", out, "-b", "8",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "minmax" in result.stdout and "percentile" in result.stdout
    assert "INT8 acc" in result.stdout  # labels came from --eval-data's 'labels' array
    assert "calibration data" not in result.stderr  # held-out data given: no warning
    payload = json.loads(out.read_text())
    assert [r["calibrator"] for r in payload["results"]] == ["minmax", "percentile"]
    assert payload["results"][0]["algorithm"] == "MinMaxCalibration"
    # minmax never clips the calibration data: the input's clipped fraction on it is 0
    tensors = {t["name"]: t for t in payload["results"][0]["report"]["tensors"]}
    assert tensors["input"]["clipped"] == 0.0


def test_compare_reads_the_calibration_data_once(cli, files, monkeypatch):
    # the calibrators share one histogram pass (same batch and policy): one capture per batch
    from trtcalib.capture import ActivationCapture

    runs = []
    real = ActivationCapture.run
    monkeypatch.setattr(ActivationCapture, "run", lambda self, a: runs.append(1) or real(self, a))
    result = cli(
        "compare", files["model"], "-d", files["plain"], "--calibrators", "entropy,minmax,mse",
        "--eval-data", files["data"], "-b", "8", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert len(runs) == -(-len(np.load(files["plain"])["input"]) // 8)


def test_compare_without_eval_data_warns(cli, files):
    result = cli("compare", files["model"], "-d", files["plain"], "--calibrators", "minmax")
    assert result.exit_code == 0, result.stderr
    assert "warning:" in result.stderr and "--eval-data" in result.stderr


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--calibrators", "entropy,bogus"], ["bogus", "available"]),
        (["--calibrators", " , "], ["--calibrators"]),
        (["--histogram", "fuzzy"], ["--histogram"]),
        (["--eval-data", "{d}/none.npz"], ["none.npz"]),
        (["--labels", "{d}/none.npy"], ["none.npy"]),
        (["--json", "{d}/nodir/x.json"], ["does not exist"]),
    ],
)
def test_compare_bad_inputs(cli, files, extra, fragments):
    d = files["dir"]
    before = listing(d)
    args = [a.format(d=d) for a in extra]
    result = cli("compare", files["model"], "-d", files["plain"], *args)
    assert_one_line_error(result, *fragments)
    assert listing(d) == before


# ------------------------------------------------------------------ end to end


def test_calibrate_then_qdq_round_trips_known_ranges(cli, tmp_path):
    """minmax cache from `trtcalib calibrate` -> `trtcalib qdq`: Q scales = float32(max|x|)/127.

    The input's range is known by construction (one element set to -2.5); the ReLU and Flatten
    ranges are measured here with plain onnxruntime.
    """
    model_path = tinymodels.save(tinymodels.conv_model(), tmp_path)
    x = np.random.default_rng(4).uniform(-1, 1, (16, 3, 8, 8)).astype(np.float32)
    x[3, 1, 2, 2] = -2.5
    np.savez(tmp_path / "calib.npz", input=x)
    cache = tmp_path / "model.cache"
    result = cli(
        "calibrate", model_path, "--data", tmp_path / "calib.npz", "--calibrator", "minmax",
        "--cache", cache, "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "q.onnx"
    assert cli("qdq", model_path, "--cache", cache, "-o", out).exit_code == 0

    probe = onnx.load(str(model_path))
    for name in ("relu1", "flat"):
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    relu1, flat = ort.InferenceSession(probe.SerializeToString()).run(
        ["relu1", "flat"], {"input": x}
    )
    expected = {
        "input": np.float32(2.5) / np.float32(127),
        "relu1": np.float32(np.abs(relu1).max()) / np.float32(127),
        "flat": np.float32(np.abs(flat).max()) / np.float32(127),
    }
    qdq = onnx.load(str(out))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in qdq.graph.initializer}
    got = {
        n.input[0]: inits[n.input[1]]
        for n in qdq.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] in expected
    }
    assert set(got) == set(expected)
    for name, scale in expected.items():
        assert got[name].tobytes() == np.float32(scale).tobytes(), name


# ------------------------------------------------------------------ outputs never replace inputs


@pytest.mark.parametrize("target", ["model", "cache"])
def test_qdq_refuses_an_output_that_is_an_input(cli, files, target):
    before = {k: files[k].read_bytes() for k in ("model", "cache")}
    result = cli("qdq", files["model"], "--cache", files["cache"], "-o", files[target])
    assert_one_line_error(result, "--output", "choose another path")
    assert {k: files[k].read_bytes() for k in before} == before


@pytest.mark.parametrize("target", ["model", "cache", "data", "labels"])
def test_eval_json_refuses_an_input(cli, files, target):
    files["labels"] = files["dir"] / "labels.npy"
    keep = ("model", "cache", "data", "labels")
    before = {k: files[k].read_bytes() for k in keep}
    listing_before = listing(files["dir"])
    result = cli(
        "eval", files["model"], "-c", files["cache"], "-d", files["data"],
        "--labels", files["labels"], "--json", files[target], "--no-progress",
    )  # fmt: skip
    assert_one_line_error(result, "--json", str(files[target]), "choose another path")
    assert {k: files[k].read_bytes() for k in keep} == before
    assert listing(files["dir"]) == listing_before


@pytest.mark.parametrize("target", ["model", "data", "plain"])
def test_compare_json_refuses_an_input(cli, files, target):
    before = {k: files[k].read_bytes() for k in ("model", "data", "plain")}
    result = cli(
        "compare", files["model"], "-d", files["data"], "--eval-data", files["plain"],
        "--calibrators", "minmax", "--json", files[target],
    )  # fmt: skip
    assert_one_line_error(result, "--json", "choose another path")
    assert {k: files[k].read_bytes() for k in before} == before


# ------------------------------------------------------------------ file modes, --no-progress


def test_qdq_and_eval_json_get_the_usual_file_mode(cli, files):
    import os

    old = os.umask(0o022)
    try:
        out, report = files["dir"] / "q.onnx", files["dir"] / "e.json"
        assert cli("qdq", files["model"], "-c", files["cache"], "-o", out).exit_code == 0
        r = cli("eval", files["model"], "-c", files["cache"], "-d", files["data"],
                "--json", report)  # fmt: skip
        assert r.exit_code == 0, r.stderr
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644  # what open() gives under umask 022
    assert report.stat().st_mode & 0o777 == 0o644
    assert json.loads(report.read_text())["cache"] == str(files["cache"])


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_eval_and_compare_take_no_progress(cli, files, command):
    args = ["-d", files["data"]]
    if command == "eval":
        args += ["-c", files["cache"]]
    else:
        args += ["--eval-data", files["plain"], "--calibrators", "minmax"]
    shown = cli(command, files["model"], *args, "--progress")
    quiet = cli(command, files["model"], *args, "--no-progress")
    assert shown.exit_code == 0 and quiet.exit_code == 0, shown.stderr + quiet.stderr
    assert "evaluating" in shown.stderr and "━" in shown.stderr
    assert "evaluating" not in quiet.stderr and "━" not in quiet.stderr


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_labels_help_names_text_files(cli, command):
    r = cli(command, "--help")
    assert r.exit_code == 0
    text = " ".join(r.stdout.replace("│", " ").split())
    assert "FILE.txt (one integer per line)" in text
    assert "--no-progress" in text


def test_eval_reads_text_labels(cli, files):
    labels = np.load(files["dir"] / "labels.npy")
    (files["dir"] / "labels.txt").write_text("".join(f"{v}\n" for v in labels))
    out = files["dir"] / "e.json"
    r = cli("eval", files["model"], "-c", files["cache"], "-d", files["plain"],
            "--labels", files["dir"] / "labels.txt", "--json", out, "--no-progress")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert json.loads(out.read_text())["report"]["accuracy_fp32"] is not None


def test_json_reports_are_standard_json_even_with_infinite_values(tmp_path):
    import json

    from trtcalib.commands.qdq import _write_json

    out = tmp_path / "report.json"
    _write_json(out, {"sqnr_db": float("inf"), "worst": [float("-inf"), float("nan"), 1.5]})
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    assert doc == {"sqnr_db": "inf", "worst": ["-inf", "nan", 1.5]}

"""`trtcalib cache show|diff|verify|convert` end to end, with bad-input tests for each."""

from __future__ import annotations

import csv
import io
import json
import struct

import numpy as np
import pytest
import tinymodels

from trtcalib.cache import CalibrationCache, Provenance, sidecar_path, write_cache
from trtcalib.fingerprint import model_fingerprint


def ref_scale(hex_text: str) -> float:
    return struct.unpack(">f", int(hex_text, 16).to_bytes(4, "big"))[0]


def strict_json(text: str):
    """json.loads that fails on the non-standard tokens Infinity/NaN."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON: {c}"))


CACHE_TEXT = (
    b"TRT-8601-EntropyCalibration2\r\n"
    b"input: 3C010A14\r\n"
    b"(Unnamed Layer* 46) [Constant]_output: 0\r\n"
    b"a: b: 3f800000\r\n"
    b"relu: 7f800000\r\n"
)


@pytest.fixture
def cache_file(tmp_path):
    path = tmp_path / "model.cache"
    path.write_bytes(CACHE_TEXT)
    return path


def assert_one_line_error(result, *words):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert err.startswith("error: ") or "Usage" in err, err
    if err.startswith("error: "):
        assert "\n" not in err, err
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in err, (word, err)


# ---------------------------------------------------------------- show


def test_show_table(cli, cache_file):
    result = cli("cache", "show", cache_file)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "EntropyCalibration2" in out and "8.6.1" in out
    assert "(Unnamed Layer* 46) [Constant]_output" in out  # not eaten as markup
    assert "a: b" in out
    assert "3C010A14" in out and "7f800000" in out
    assert "127.0" in out  # amax of scale 1.0
    assert "inf" in out


def test_show_mentions_provenance(cli, tmp_path, cache_file):
    assert "no provenance sidecar" in cli("cache", "show", cache_file).stdout
    path = tmp_path / "p.cache"
    write_cache(
        path,
        CalibrationCache.from_scales({"a": 1.0}),
        Provenance("percentile", params={"percentile": 99.9}, batch_size=16),
    )
    out = cli("cache", "show", path).stdout
    assert "provenance: percentile (percentile=99.9)" in out and "batch 16" in out
    sidecar_path(path).write_text("[]")
    result = cli("cache", "show", path)
    assert result.exit_code == 0 and "p.cache.json" in result.stderr  # a warning only


def test_show_json_is_exact(cli, cache_file):
    result = cli("cache", "show", cache_file, "--json")
    assert result.exit_code == 0, result.stderr
    data = strict_json(result.stdout)
    s = ref_scale("3c010a14")
    assert data == {
        "trt_version": 8601,
        "algorithm": "EntropyCalibration2",
        "tensors": {
            "input": {
                "scale": s,
                "amax": struct.unpack("f", struct.pack("f", 127 * s))[0],
                "hex": "3C010A14",
            },
            "(Unnamed Layer* 46) [Constant]_output": {"scale": 0.0, "amax": 0.0, "hex": "0"},
            "a: b": {"scale": 1.0, "amax": 127.0, "hex": "3f800000"},
            "relu": {"scale": "inf", "amax": "inf", "hex": "7f800000"},
        },
    }
    assert list(data["tensors"]) == [
        "input",
        "(Unnamed Layer* 46) [Constant]_output",
        "a: b",
        "relu",
    ]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", ["bad.cache:1", "empty"]),
        (b"hello: 3f800000\n", ["bad.cache:1", "header"]),
        (b"TRT-8601-MinMaxCalibration\nx: zz\n", ["bad.cache:2", "not hex"]),
        (b"\x89PNG\r\n\x1a\n\x00\x00", ["bad.cache"]),
    ],
)
def test_show_bad_cache(cli, tmp_path, content, words):
    path = tmp_path / "bad.cache"
    path.write_bytes(content)
    result = cli("cache", "show", path)
    assert_one_line_error(result, *words)
    assert result.stdout == ""


def test_show_missing_and_directory(cli, tmp_path):
    assert_one_line_error(cli("cache", "show", tmp_path / "none.cache"), "no such")
    assert_one_line_error(cli("cache", "show", tmp_path), "directory")


# ---------------------------------------------------------------- diff


@pytest.fixture
def two_caches(tmp_path):
    a = tmp_path / "a.cache"
    b = tmp_path / "b.cache"
    a.write_text(
        "TRT-101601-EntropyCalibration2\nx: 3f800000\ny: 40000000\nz: 3f000000\na_only: 0\n"
    )
    # y: 2.0 -> 2.5 (+25%), z: 0.5 -> 0.25 (-50%), x unchanged
    b.write_text(
        "TRT-101601-EntropyCalibration2\nz: 3e800000\ny: 40200000\nx: 3f800000\nb_only: 0\n"
    )
    return a, b


def test_diff_table_largest_first(cli, two_caches):
    result = cli("cache", "diff", *two_caches)
    assert result.exit_code == 1
    out = result.stdout
    rows = [line.split()[1] for line in out.splitlines() if line.startswith("│")]
    assert rows == ["z", "y", "x"]
    assert "50.000%" in out and "25.000%" in out
    assert "a_only" in out and "b_only" in out


def test_diff_json(cli, two_caches):
    result = cli("cache", "diff", *two_caches, "--json")
    assert result.exit_code == 1
    data = strict_json(result.stdout)
    assert [c["tensor"] for c in data["changes"]] == ["z", "y", "x"]
    assert [c["rel_change"] for c in data["changes"]] == [0.5, 0.25, 0.0]
    assert data["changes"][0]["amax_a"] == 63.5 and data["changes"][0]["amax_b"] == 31.75
    assert data["only_in_a"] == ["a_only"] and data["only_in_b"] == ["b_only"]
    assert data["exceeded"] == 2 and data["rtol"] == 0.01 and data["ok"] is False


@pytest.mark.parametrize(
    ("rtol", "shown"),
    [
        (None, "0.01 (1%)"),
        ("0.05", "0.05 (5%)"),
        ("0.001", "0.001 (0.1%)"),
        ("0.333", "0.333 (33.3%)"),
    ],
)
def test_diff_shows_the_tolerance_as_a_percent_like_its_table(cli, two_caches, rtol, shown):
    result = cli("cache", "diff", *two_caches, *([] if rtol is None else ["--rtol", rtol]))
    text = " ".join(result.stdout.split())
    assert f"(rtol {shown})" in text
    assert f"change by more than {shown};" in text


def test_diff_rtol_and_missing_decide_exit_code(cli, two_caches):
    assert cli("cache", "diff", *two_caches, "--rtol", "0.6").exit_code == 1  # one-sided names
    assert cli("cache", "diff", *two_caches, "--rtol", "0.6", "--allow-missing").exit_code == 0
    assert cli("cache", "diff", *two_caches, "--rtol", "0.4", "--allow-missing").exit_code == 1


def test_diff_identical_is_ok(cli, cache_file):
    result = cli("cache", "diff", cache_file, cache_file, "--rtol", "0")
    assert result.exit_code == 0, result.stdout
    assert "OK" in result.stdout


def test_diff_from_zero_is_infinite_change(cli, tmp_path):
    a = tmp_path / "a.cache"
    b = tmp_path / "b.cache"
    a.write_text("TRT-8601-MinMaxCalibration\nt: 0\n")
    b.write_text("TRT-8601-MinMaxCalibration\nt: 3f800000\n")
    result = cli("cache", "diff", a, b, "--json", "--rtol", "1000")
    assert result.exit_code == 1
    assert strict_json(result.stdout)["changes"][0]["rel_change"] == "inf"


def test_diff_bad_input(cli, two_caches, tmp_path):
    assert_one_line_error(cli("cache", "diff", *two_caches, "--rtol", "-1"), "--rtol")
    assert_one_line_error(cli("cache", "diff", two_caches[0], tmp_path / "x.cache"), "no such")
    assert cli("cache", "diff", two_caches[0]).exit_code == 2  # usage error


# ---------------------------------------------------------------- verify

CONV_ACTIVATIONS = ["input", "conv1", "relu1", "conv2", "add1", "pool", "flat", "logits"]


@pytest.fixture
def conv_model_file(tmp_path):
    return tinymodels.save(tinymodels.conv_model(), tmp_path)


def write_conv_cache(tmp_path, names, provenance=None, **kw):
    path = tmp_path / "conv.cache"
    scales = {name: 0.01 * (i + 1) for i, name in enumerate(names)}
    write_cache(path, CalibrationCache.from_scales(scales, **kw), provenance)
    return path


def test_verify_tensorrt_cache_without_sidecar(cli, tmp_path, conv_model_file):
    extra = ["ONNXTRT_Broadcast_3_output", "(Unnamed Layer* 46) [Constant]_output", "w1", "foo"]
    path = write_conv_cache(tmp_path, CONV_ACTIVATIONS + extra)
    result = cli("cache", "verify", path, "--model", conv_model_file, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    data = strict_json(result.stdout)
    assert data["reusable"] is True and data["has_provenance"] is False
    assert data["missing"] == []
    assert data["trt_internal"] == extra[:2]
    assert data["not_calibrated"] == ["w1"]  # an initializer: known, not an activation
    assert data["unknown"] == ["foo"]
    assert any("model" in u for u in data["unchecked"])

    text = cli("cache", "verify", path, "--model", conv_model_file)
    assert text.exit_code == 0
    assert "not checked" in text.stderr and "foo" in text.stdout
    assert "OK" in text.stdout


def test_verify_missing_tensors_fails(cli, tmp_path, conv_model_file):
    path = write_conv_cache(tmp_path, [n for n in CONV_ACTIVATIONS if n not in ("relu1", "pool")])
    result = cli("cache", "verify", path, "--model", conv_model_file, "--json")
    assert result.exit_code == 1
    data = strict_json(result.stdout)
    assert data["missing"] == ["relu1", "pool"] and data["reusable"] is False
    text = cli("cache", "verify", path, "-m", conv_model_file)
    assert text.exit_code == 1 and "relu1, pool" in text.stdout and "NOT REUSABLE" in text.stdout


def test_verify_int_outputs_are_not_required(cli, tmp_path):
    model = tmp_path / "two.onnx"
    tinymodels.save(tinymodels.two_input_model(), tmp_path, "two.onnx")
    path = write_conv_cache(tmp_path, ["a", "b", "prod", "act", "out"])  # no int64 "idx"
    assert cli("cache", "verify", path, "--model", model).exit_code == 0


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda text: text.replace("3c23d70a", "7fc00000", 1), "NaN or negative scales (1)"),
        (lambda text: text.replace("3c23d70a", "bf800000", 1), "NaN or negative scales (1)"),
        (
            lambda text: text.replace("EntropyCalibration2", "FooCalibration", 1),
            "header algorithm 'FooCalibration' is no TensorRT calibrator",
        ),
    ],
)
def test_verify_fails_a_cache_tensorrt_cannot_use(cli, tmp_path, conv_model_file, edit, words):
    path = tmp_path / "trt.cache"
    lines = ["TRT-101601-EntropyCalibration2"] + [f"{n}: 3c23d70a" for n in CONV_ACTIVATIONS]
    path.write_text(edit("\n".join(lines) + "\n"))
    result = cli("cache", "verify", path, "--model", conv_model_file)
    assert result.exit_code == 1, result.stdout
    assert words in result.stdout and "NOT REUSABLE" in result.stdout
    data = strict_json(cli("cache", "verify", path, "-m", conv_model_file, "--json").stdout)
    assert data["reusable"] is False and any(words in p for p in data["problems"])


def test_verify_fails_a_sidecar_that_cannot_vouch_for_the_model(cli, tmp_path, conv_model_file):
    """A sidecar without a model fingerprint, checked against another model: not 'OK'."""
    path = write_conv_cache(tmp_path, CONV_ACTIVATIONS, Provenance("entropy"))
    result = cli("cache", "verify", path, "--model", conv_model_file)
    assert result.exit_code == 1
    assert "not verifiable: model" in result.stdout and "NOT REUSABLE" in result.stdout


def test_verify_with_provenance(cli, tmp_path, conv_model_file):
    fp = model_fingerprint(tinymodels.conv_model())
    path = write_conv_cache(tmp_path, CONV_ACTIVATIONS, Provenance("entropy", model_fingerprint=fp))
    result = cli("cache", "verify", path, "--model", conv_model_file, "--json")
    assert result.exit_code == 0, result.stdout
    data = strict_json(result.stdout)
    assert data["has_provenance"] and data["unchecked"] == []

    other = tinymodels.save(tinymodels.conv_model(seed=1), tmp_path, "other.onnx")
    result = cli("cache", "verify", path, "--model", other)
    assert result.exit_code == 1
    assert "model changed" in result.stdout


def test_verify_accepts_tensors_left_out_on_request(cli, tmp_path, conv_model_file):
    """--tensors and a config skip leave tensors out on purpose: the sidecar says so."""
    x = np.random.default_rng(0).normal(size=(8, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    config = tmp_path / "skip.toml"
    config.write_text('[[override]]\ntensors = "logits"\nskip = true\n')
    runs = {"tensors": ("--tensors", "input,relu1"), "config": ("--config", config)}
    expected = {
        "tensors": [n for n in CONV_ACTIVATIONS if n not in ("input", "relu1")],
        "config": ["logits"],
    }
    for how, args in runs.items():
        path = tmp_path / f"{how}.cache"
        r = cli("calibrate", conv_model_file, "--data", tmp_path / "calib.npz", "--batch", "4",
                "--cache", path, "--no-progress", *args)  # fmt: skip
        assert r.exit_code == 0, r.stderr
        result = cli("cache", "verify", path, "--model", conv_model_file, "--json")
        data = strict_json(result.stdout)
        assert result.exit_code == 0, data
        assert data["left_out"] == expected[how] and data["missing"] == []
        # the excuse holds for this model only: another one gets the missing tensors reported
        other = tinymodels.save(tinymodels.conv_model(seed=1), tmp_path, "other.onnx")
        data = strict_json(cli("cache", "verify", path, "-m", other, "--json").stdout)
        assert data["left_out"] == [] and data["missing"] == expected[how]
    text = cli("cache", "verify", tmp_path / "config.cache", "--model", conv_model_file)
    assert "not calibrated by request" in text.stdout and "OK" in text.stdout


def test_verify_header_checks(cli, tmp_path, conv_model_file):
    path = write_conv_cache(tmp_path, CONV_ACTIVATIONS)  # TRT 10.16.1, EntropyCalibration2
    ok = cli(
        "cache",
        "verify",
        path,
        "-m",
        conv_model_file,
        "--calibrator",
        "entropy",
        "--trt-version",
        "10.9.0",
    )
    assert ok.exit_code == 0, ok.stdout
    old = cli("cache", "verify", path, "-m", conv_model_file, "--trt-version", "8.6.1")
    assert old.exit_code == 1 and "major version" in old.stdout
    minmax = cli("cache", "verify", path, "-m", conv_model_file, "--calibrator", "minmax")
    assert minmax.exit_code == 1 and "MinMaxCalibration" in minmax.stdout


def test_verify_bad_input(cli, tmp_path, conv_model_file, cache_file):
    assert_one_line_error(cli("cache", "verify", cache_file, "-m", tmp_path / "no.onnx"), "no.onnx")
    assert_one_line_error(
        cli("cache", "verify", cache_file, "-m", conv_model_file, "--trt-version", "x"),
        "--trt-version",
    )
    assert_one_line_error(
        cli("cache", "verify", cache_file, "-m", conv_model_file, "--calibrator", "nope"),
        "--calibrator",
    )
    assert_one_line_error(cli("cache", "verify", tmp_path / "no.cache", "-m", conv_model_file))
    assert cli("cache", "verify", cache_file).exit_code == 2  # --model is required
    sidecar_path(cache_file).write_text("{broken")
    assert_one_line_error(
        cli("cache", "verify", cache_file, "-m", conv_model_file), "model.cache.json"
    )


# ---------------------------------------------------------------- convert


def test_convert_json_round_trip(cli, tmp_path, cache_file):
    out = tmp_path / "scales.json"
    result = cli("cache", "convert", cache_file, "--to", "json", "--output", out)
    assert result.exit_code == 0, result.stderr
    data = strict_json(out.read_text())
    assert data == strict_json(cli("cache", "show", cache_file, "--json").stdout)

    back = tmp_path / "back.cache"
    result = cli("cache", "convert", out, "--to", "cache", "-o", back)
    assert result.exit_code == 0, result.stderr
    # same scales, same order; written in TensorRT's spelling except unchanged raw hex kept
    expected = (
        b"TRT-8601-EntropyCalibration2\n"
        b"input: 3c010a14\n"
        b"(Unnamed Layer* 46) [Constant]_output: 0\n"
        b"a: b: 3f800000\n"
        b"relu: 7f800000\n"
    )
    assert back.read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "back.cache",
        "model.cache",
        "scales.json",
    ]


def test_convert_to_stdout_and_retarget(cli, cache_file):
    result = cli("cache", "convert", cache_file, "--to", "cache", "--trt-version", "10.16.1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("TRT-101601-EntropyCalibration2\n")
    assert "input: 3c010a14\n" in result.stdout


def test_convert_csv(cli, cache_file):
    result = cli("cache", "convert", cache_file, "--to", "csv")
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["tensor", "scale", "amax", "hex"]
    assert rows[3] == ["a: b", "1.0", "127.0", "3f800000"]
    assert rows[4] == ["relu", "inf", "inf", "7f800000"]
    assert len(rows) == 5


def test_convert_json_scale_only(cli, tmp_path):
    src = tmp_path / "s.json"
    src.write_text(
        json.dumps(
            {
                "trt_version": None,
                "algorithm": "MinMaxCalibration",
                "tensors": {"x": {"scale": 0.5}, "y": {"scale": "inf"}},
            }
        )
    )
    out = tmp_path / "s.cache"
    result = cli("cache", "convert", src, "--to", "cache", "-o", out, "--trt-version", "8601")
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == b"TRT-8601-MinMaxCalibration\nx: 3f000000\ny: 7f800000\n"


def test_convert_json_without_algorithm_takes_the_option(cli, tmp_path):
    # hand-written scales: --algorithm fills the header as --trt-version fills the version
    src = tmp_path / "s.json"
    src.write_text(json.dumps({"tensors": {"x": {"scale": 0.5}}}))
    out = tmp_path / "s.cache"
    args = ("cache", "convert", src, "--to", "cache", "-o", out, "--trt-version", "10.16.1")
    result = cli(*args)
    assert_one_line_error(result, "no 'algorithm'", "--algorithm")
    assert not out.exists()
    result = cli(*args, "--algorithm", "minmax")
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == b"TRT-101601-MinMaxCalibration\nx: 3f000000\n"


@pytest.mark.parametrize(
    ("content", "args", "words"),
    [
        (None, ["--to", "xml"], ["--to"]),
        (
            '{"algorithm": "X", "trt_version": 8601, "tensors": {"a": {"hex": "zz"}}}',
            ["--to", "cache"],
            ["'a'"],
        ),
        (
            '{"algorithm": "X", "trt_version": 8601, "tensors": {"a": {"hex": "3f800000", '
            '"scale": 2.0}}}',
            ["--to", "cache"],
            ["disagree"],
        ),
        (
            '{"algorithm": "X", "trt_version": null, "tensors": {"a": {"scale": 1.0}}}',
            ["--to", "cache"],
            ["--trt-version"],
        ),
        ('{"algorithm": "X", "tensors": [1]}', ["--to", "cache"], ["tensors"]),
        ("{not json", ["--to", "cache"], ["JSON"]),
        (None, ["--to", "cache", "--trt-version", "abc"], ["--trt-version"]),
        (None, ["--to", "cache", "--algorithm", "a b"], ["--algorithm"]),
        (None, ["--to", "cache", "--algorithm", "FooCalibration"], ["not a TensorRT calibration"]),
        (
            '{"algorithm": "X", "trt_version": 8601, "tensors": {"a": {"scale": 1.0}}}',
            ["--to", "cache"],
            ["algorithm 'X' is no TensorRT calibration algorithm", "--algorithm"],
        ),
        (
            '{"algorithm": "X", "trt_version": 8601, "tensors": {"a": {"scale": -1.0}}}',
            ["--to", "json"],
            ["not usable by TensorRT"],
        ),
    ],
)
def test_convert_bad_input_writes_nothing(cli, tmp_path, cache_file, content, args, words):
    src = cache_file
    if content is not None:
        src = tmp_path / "in.json"
        src.write_text(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out.file"
    result = cli("cache", "convert", src, *args, "--output", out)
    assert_one_line_error(result, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_convert_refuses_to_overwrite_input_or_its_sidecar(cli, tmp_path, cache_file):
    before = cache_file.read_bytes()
    assert_one_line_error(
        cli("cache", "convert", cache_file, "--to", "json", "-o", f"{cache_file}.json"), "sidecar"
    )
    assert_one_line_error(cli("cache", "convert", cache_file, "--to", "json", "-o", cache_file))
    assert cache_file.read_bytes() == before
    assert not sidecar_path(cache_file).exists()


def test_convert_json_to_cache_never_deletes_its_input(cli, tmp_path, cache_file):
    # X.json is the sidecar of X: writing the cache X would remove it as a stale sidecar
    scales = tmp_path / "model.c.json"
    assert cli("cache", "convert", cache_file, "--to", "json", "-o", scales).exit_code == 0
    before = scales.read_bytes()
    result = cli("cache", "convert", scales, "--to", "cache", "-o", tmp_path / "model.c")
    assert_one_line_error(result, "would delete", "model.c.json")
    assert scales.read_bytes() == before
    assert not (tmp_path / "model.c").exists()


def test_convert_into_missing_folder(cli, tmp_path, cache_file):
    result = cli("cache", "convert", cache_file, "--to", "json", "-o", tmp_path / "no" / "x.json")
    assert_one_line_error(result, "does not exist")
    assert not (tmp_path / "no").exists()

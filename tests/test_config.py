"""--config FILE.toml: defaults and per-tensor overrides; every problem names file and key."""

from __future__ import annotations

import pytest

from trtcalib.config import CalibrateConfig, load_config
from trtcalib.errors import ConfigError

GOOD = """
[calibrate]
calibrator = "percentile"
percentile = 99.9
batch = 16
histogram = "trt"
growth = "square"
num_bins = 1024
tensors = ["conv1", "relu1"]
trt_version = "10.14.1"
last_batch = "pad"
[calibrate.params]
quantile = 0.5

[[override]]
tensors = "conv*"
calibrator = "minmax"

[[override]]
tensors = ["logits"]
skip = true
"""


def _write(tmp_path, text: str, name: str = "calib.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_config_is_read(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.get("calibrator") == "percentile"
    assert cfg.get("percentile") == 99.9
    assert cfg.get("batch") == 16
    assert cfg.get("tensors") == ["conv1", "relu1"]
    assert cfg.get("params") == {"quantile": 0.5}
    assert cfg.get("missing", "x") == "x"
    assert cfg.overrides == [
        {"tensors": "conv*", "calibrator": "minmax"},
        {"tensors": ["logits"], "skip": True},
    ]
    overrides = cfg.tensor_overrides("entropy", {})
    assert overrides.resolve("conv7", "entropy", {}).algorithm == "minmax"
    assert overrides.resolve("logits", "entropy", {}).skip
    assert overrides.resolve("relu1", "entropy", {}).algorithm == "entropy"


def test_empty_config_is_fine(tmp_path):
    cfg = load_config(_write(tmp_path, ""))
    assert cfg.defaults == {} and cfg.overrides == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[calibrate]\nbatch = \n", "invalid TOML"),
        ("[calibrate]\nbatch = 1\nbatch = 2\n", "invalid TOML"),
        ("[calib]\n", "unknown section 'calib'"),
        ("calibrator = 'entropy'\n", "unknown section 'calibrator'"),
        ("calibrate = 3\n", "'calibrate' must be a table"),
        ("[calibrate]\nbatchsize = 3\n", r"\[calibrate\] unknown key 'batchsize'"),
        ("[calibrate]\nbatch = 'x'\n", r"\[calibrate\] batch: must be a positive integer"),
        ("[calibrate]\nbatch = 0\n", r"\[calibrate\] batch: must be a positive integer"),
        ("[calibrate]\nbatch = true\n", r"\[calibrate\] batch: must be a positive integer"),
        ("[calibrate]\nhistogram = 'fuzzy'\n", r"histogram: must be one of exact, trt"),
        ("[calibrate]\ngrowth = 'cube'\n", r"growth: must be one of pow2, square"),
        ("[calibrate]\nlast_batch = 'x'\n", r"last_batch: must be one of keep, pad, drop"),
        ("[calibrate]\npercentile = 'high'\n", r"percentile: must be a number"),
        ("[calibrate]\npercentile = nan\n", r"percentile: must be a number"),
        ("[calibrate]\ntensors = 'conv1'\n", r"tensors: must be a non-empty list"),
        ("[calibrate]\ntensors = []\n", r"tensors: must be a non-empty list"),
        ("[calibrate]\ntrt_version = 'ten'\n", r"trt_version: must be a TensorRT version"),
        ("[calibrate]\ncalibrator = 3\n", r"calibrator: must be a non-empty string"),
        ("[calibrate]\nparams = { q = 'x' }\n", r"params: must be a table of numbers"),
        ("[calibrate]\npercentile = 101\n", r"percentile: must be a number in \(0, 100\]"),
        ("[calibrate]\npercentile = 0\n", r"percentile: must be a number in \(0, 100\]"),
        ("[calibrate]\nnum_bins = 100\n", r"num_bins: must be a power of two from 128"),
        ("[calibrate]\nnum_bins = 131072\n", r"num_bins: must be a power of two from 128"),
        ("[calibrate]\ncalibrator = 'nope'\n", r"calibrator: unknown calibrator \(available: "),
        ("override = 3\n", r"'override' must be an array of tables"),
        ("[[override]]\ncalibrator = 'minmax'\n", r"\[\[override\]\] #1: missing key 'tensors'"),
        (
            "[[override]]\ntensors = 'a'\n[[override]]\ntensors = 'b'\npercentile = 'x'\n",
            r"\[\[override\]\] #2 percentile: a calibrator parameter must be a number",
        ),
    ],
)
def test_bad_config_names_file_and_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert "\n" not in text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[override]]\ntensors = 'a'\ncalibrator = 'nope'\n", "unknown calibrator 'nope'"),
        ("[[override]]\ntensors = 3\n", "'tensors' must be a glob"),
        ("[[override]]\ntensors = 'a'\nskip = 'yes'\n", "'skip' must be true or false"),
        ("[[override]]\ntensors = 'a'\nbogus = 1\n", "unknown parameter 'bogus'"),
        (
            "[[override]]\ntensors = 'a'\ncalibrator = 'minmax'\nbogus = 1\n",
            "unknown parameter 'bogus'",
        ),
    ],
)
def test_bad_overrides_name_the_file_and_entry(tmp_path, text, message):
    path = _write(tmp_path, text)
    cfg = load_config(path)
    with pytest.raises(ConfigError, match=message) as info:
        cfg.tensor_overrides("entropy", {})
    assert str(info.value).startswith(f"{path}: override #1")


@pytest.mark.parametrize("kind", ["missing", "directory", "binary"])
def test_unreadable_config_files(tmp_path, kind):
    path = tmp_path / "c.toml"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=f"^{path}: "):
        load_config(path)


def test_default_config_is_empty():
    cfg = CalibrateConfig()
    assert cfg.get("batch") is None and cfg.overrides == []

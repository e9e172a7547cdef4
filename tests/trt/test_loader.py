"""Finding TensorRT: module names, versions, 'installed but libraries missing', lazy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from trtcalib.errors import TensorRTUnavailableError
from trtcalib.trt.loader import load_tensorrt, probe_tensorrt, quantization_mode

PROBE = (
    "import json\n"
    "from trtcalib.trt.loader import probe_tensorrt\n"
    "info = probe_tensorrt()\n"
    "print(json.dumps({'version': info.version, 'module': info.module, 'loaded': info.loaded,"
    " 'error': info.error, 'quantization': info.quantization}))\n"
)


def test_quantization_mode_follows_the_major_version():
    assert quantization_mode("10.16.1.11") == "implicit"
    assert quantization_mode("8.6.1") == "implicit"
    assert quantization_mode("11.4.0.106") == "explicit"
    assert quantization_mode(None) is None


def test_no_tensorrt_is_reported_not_raised(monkeypatch):
    for name in ("tensorrt", "tensorrt_bindings"):
        monkeypatch.setitem(sys.modules, name, None)
    info = probe_tensorrt()
    assert info.loaded is False and info.error
    with pytest.raises(TensorRTUnavailableError):
        load_tensorrt()


def test_import_trtcalib_trt_is_light_and_classes_are_lazy():
    from importwatch import watch_imports

    heavy = ("tensorrt", "tensorrt_bindings", "cuda", "pycuda", "trtcalib.trt.calibrators")
    # a star import too: it must not fetch the lazy classes (TensorRT would raise here)
    code = watch_imports(
        "import inspect, trtcalib.trt\nfrom trtcalib.trt import *\n"
        "assert probe_tensorrt and inspect.getmembers(trtcalib.trt)",
        heavy,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("major", [10, 11])
def test_bindings_without_libraries_name_the_missing_library(site_for, major):
    site = site_for(major)
    paths = ([str(site)] if site else []) + [os.getcwd()]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    env.pop("LD_LIBRARY_PATH", None)
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    if info["loaded"]:
        pytest.skip("real TensorRT libraries are present on this machine")
    assert info["version"].startswith(f"{major}.")
    assert f".so.{major} not found" in info["error"] and "libnv" in info["error"]


@pytest.mark.parametrize("major", [10, 11])
def test_stubbed_bindings_load_with_their_version(run_bindings, major):
    proc = run_bindings(major, PROBE)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["loaded"] is True and info["module"] == "tensorrt_bindings"
    assert info["quantization"] == ("implicit" if major == 10 else "explicit")


def test_tensorrt_11_has_no_calibrator_classes(run_bindings):
    code = (
        "import trtcalib.trt as t\n"
        "from trtcalib.errors import TensorRTUnavailableError\n"
        "try:\n    t.EntropyCalibrator2\nexcept TensorRTUnavailableError as exc:\n"
        "    print(exc)\n"
    )
    proc = run_bindings(11, code)
    assert proc.returncode == 0, proc.stderr
    assert "TensorRT 11.4.0.106 has no calibrators" in proc.stdout

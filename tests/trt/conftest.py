"""Real TensorRT Python bindings on a machine without TensorRT's libraries (no GPU, CI).

The bindings wheels (`tensorrt-cu12-bindings` 10.16.1.11 and 11.4.0.106) are real PyPI packages;
their extension links libnvinfer.so.<major>, libnvinfer_plugin.so.<major> and
libnvonnxparser.so.<major>, which only exist on a GPU host. We compile tiny C link stubs
(`_stubs/trt_link_stubs.c`, every factory returns NULL) under those sonames, so the REAL bindings
import: class hierarchies, enums and `get_algorithm()` answer from TensorRT's own code.

- TensorRT 10.16 (calibrators, the implicit path) is imported in THIS process (`trt10` fixture),
  with the stubs preloaded, from the environment when `pip install -e ".[dev]"` installed it, else
  from a `pip install --target` copy in `_stubs/build/`.
- TensorRT 11.4 (Q/DQ only, the explicit path) uses the same module name, so it can only run in a
  child process (`run_bindings` fixture) with PYTHONPATH and LD_LIBRARY_PATH pointing at the
  `_stubs/build/` copies. It is fetched from PyPI on first use (cached in `_stubs/build/`).
Offline: point TRTCALIB_TEST_WHEELS at a folder holding the wheels. No compiler or no wheel:
the tests that need them skip with the reason.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tinymodels

HERE = Path(__file__).parent
STUB_SOURCE = HERE / "_stubs" / "trt_link_stubs.c"
BUILD = HERE / "_stubs" / "build"
BINDINGS_VERSIONS = {10: "10.16.1.11", 11: "11.4.0.106"}
DISTRIBUTION = "tensorrt-cu12-bindings"
STUB_LIBRARIES = ("nvinfer", "nvinfer_plugin", "nvonnxparser")
REPO = HERE.parent.parent


def _atomic_dir(target: Path, fill) -> Path:
    """Fill a fresh temp dir next to `target`, then rename it into place (parallel-run safe)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=BUILD, prefix=f".{target.name}."))
    try:
        fill(tmp)
        with contextlib.suppress(OSError):  # OSError: another run won the race
            os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def build_stubs(major: int) -> Path:
    """Directory holding lib{nvinfer,nvinfer_plugin,nvonnxparser}.so.<major> stubs."""
    target = BUILD / f"stubs-{major}"
    source_mtime = STUB_SOURCE.stat().st_mtime
    libs = [target / f"lib{name}.so.{major}" for name in STUB_LIBRARIES]
    if all(lib.exists() and lib.stat().st_mtime >= source_mtime for lib in libs):
        return target
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc/gcc) to build the TensorRT link stubs")
    shutil.rmtree(target, ignore_errors=True)

    def fill(tmp: Path) -> None:
        for name in STUB_LIBRARIES:
            soname = f"lib{name}.so.{major}"
            cmd = [compiler, "-shared", "-fPIC", "-O0", f"-Wl,-soname,{soname}"]
            cmd += ["-o", str(tmp / soname), str(STUB_SOURCE)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                pytest.skip(f"could not compile TensorRT link stubs: {proc.stderr.strip()[:200]}")

    return _atomic_dir(target, fill)


def _installed_version() -> str | None:
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def bindings_site(major: int) -> Path | None:
    """Where `tensorrt_bindings` of that version imports from: None = this environment."""
    version = BINDINGS_VERSIONS[major]
    if _installed_version() == version:
        return None
    target = BUILD / f"bindings-{version}"
    if (target / "tensorrt_bindings" / "__init__.py").exists():
        return target
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    wheels = os.environ.get("TRTCALIB_TEST_WHEELS")
    if wheels:
        cmd += ["--find-links", wheels]

    def fill(tmp: Path) -> None:
        proc = subprocess.run(
            [*cmd, "--target", str(tmp), f"{DISTRIBUTION}=={version}"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
            pytest.skip(f"{DISTRIBUTION}=={version} not obtainable (no PyPI?): {last[:200]}")

    return _atomic_dir(target, fill)


def cuda_bindings_dir() -> Path:
    """A `pip install --target` copy of cuda-bindings (12.x) in _stubs/build/.

    A copy on PYTHONPATH rather than in the environment: cuda-bindings installs a .pth file that
    imports the `cuda` package into every Python process, which trtcalib's import-hygiene test
    would (rightly) report."""
    target = BUILD / "cuda-bindings"
    if (target / "cuda" / "bindings").is_dir():
        return target
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--target"]

    def fill(tmp: Path) -> None:
        spec = "cuda-bindings>=12.6,<13"
        proc = subprocess.run([*cmd, str(tmp), spec], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
            pytest.skip(f"{spec} not obtainable (no PyPI?): {last[:200]}")

    return _atomic_dir(target, fill)


@pytest.fixture(scope="session")
def cuda_bindings_site() -> Path:
    return cuda_bindings_dir()


def bindings_env(major: int) -> dict[str, str]:
    """Environment for a child process that imports the stubbed bindings of that major."""
    env = dict(os.environ)
    site = bindings_site(major)
    paths = [str(site)] if site else []
    paths += [str(REPO), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(
        p for p in (str(build_stubs(major)), env.get("LD_LIBRARY_PATH", "")) if p
    )
    return env


def _real_tensorrt_importable() -> bool:
    """True on a GPU host where TensorRT's libraries load without our stubs."""
    code = (
        "import importlib, sys\n"
        "for m in ('tensorrt', 'tensorrt_bindings'):\n"
        "    try:\n"
        "        importlib.import_module(m); sys.exit(0)\n"
        "    except ImportError:\n"
        "        pass\n"
        "sys.exit(1)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], env=env, timeout=120).returncode == 0


@pytest.fixture(scope="session")
def site_for():
    """site_for(major) -> folder to put on PYTHONPATH for those bindings (None: installed)."""
    return bindings_site


@pytest.fixture(scope="session")
def env_for():
    """env_for(major) -> environment for a child process with that TensorRT's real bindings."""
    return bindings_env


@pytest.fixture(scope="session")
def run_bindings():
    """run_bindings(major, code, *args) -> CompletedProcess: Python code in a child process
    that imports the real bindings of that TensorRT major through the stubs."""

    def run(major: int, code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            env=bindings_env(major),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=str(REPO),
        )

    return run


@pytest.fixture(scope="session")
def trt10():
    """The real TensorRT 10.16 bindings module, imported in this process through the stubs."""
    loaded = sys.modules.get("tensorrt_bindings")
    if loaded is not None and getattr(loaded, "__version__", None) == BINDINGS_VERSIONS[10]:
        return loaded
    if loaded is not None or "tensorrt" in sys.modules:
        pytest.skip("another TensorRT module is already imported in this process")
    if _real_tensorrt_importable():
        pytest.skip("real TensorRT libraries are present: stub tests skipped (run pytest -m gpu)")
    stubs = build_stubs(10)
    site = bindings_site(10)
    # preloading the stubs by path makes the dynamic linker satisfy the extension's NEEDED
    # sonames with them: no LD_LIBRARY_PATH (read only at process start) needed
    for name in STUB_LIBRARIES:
        ctypes.CDLL(str(stubs / f"lib{name}.so.10"), mode=ctypes.RTLD_GLOBAL)
    if site is not None:
        sys.path.insert(0, str(site))
    try:
        module = importlib.import_module("tensorrt_bindings")
    finally:
        if site is not None:
            sys.path.remove(str(site))
    if module.__version__ != BINDINGS_VERSIONS[10]:
        pytest.skip(f"tensorrt_bindings {module.__version__} imported, need 10.16.1.11")
    return module


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A folder with model.onnx (dynamic batch) and calib.npz (20 samples); cwd is there."""
    monkeypatch.chdir(tmp_path)
    tinymodels.save(tinymodels.conv_model(), tmp_path)
    rng = np.random.default_rng(3)
    np.savez(tmp_path / "calib.npz", input=rng.normal(size=(20, 3, 8, 8)).astype(np.float32))
    return tmp_path

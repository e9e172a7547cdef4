"""Every `trt.` attribute our code uses exists in the REAL TensorRT bindings of each version path
that uses it: 10.16 for the implicit (calibrator) path, 11.4 for the explicit (Q/DQ) path.

The attributes are found by reading our sources (AST), never from a hand-written list:
- attribute chains rooted at the name `trt` (`trt.BuilderFlag.INT8`, class bases, ...);
- attributes used on names annotated with a TensorRT type (`config: trt.IBuilderConfig` then
  `config.set_calibration_profile(...)` -> `IBuilderConfig.set_calibration_profile`).
Each module declares the versions it runs on in `TRT_MAJORS`.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import trtcalib.trt

TRT_SOURCES = Path(trtcalib.trt.__file__).parent

CHECK = """
import json, sys
import tensorrt_bindings as trt
missing = []
for path in json.loads(sys.argv[1]):
    obj = trt
    for part in path.split("."):
        if not hasattr(obj, part):
            missing.append(path)
            break
        obj = getattr(obj, part)
print(json.dumps({"version": trt.__version__, "missing": missing}))
"""


def _chain(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id == "trt" and parts:
        return ".".join(reversed(parts))
    return None


def _annotated_type(annotation: ast.AST | None) -> str | None:
    if annotation is None:
        return None
    if isinstance(annotation, ast.BinOp):  # trt.Builder | None
        return _annotated_type(annotation.left) or _annotated_type(annotation.right)
    chain = _chain(annotation)
    return chain if chain and "." not in chain else None


def trt_uses(source: str) -> set[str]:
    """Dotted attribute paths on the TensorRT module that `source` uses."""
    tree = ast.parse(source)
    uses = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (chain := _chain(node)):
            uses.add(chain)
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        types: dict[str, str] = {}
        arguments = func.args.posonlyargs + func.args.args + func.args.kwonlyargs
        for arg in arguments:
            if kind := _annotated_type(arg.annotation):
                types[arg.arg] = kind
        for node in ast.walk(func):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and (kind := _annotated_type(node.annotation))
            ):
                types[node.target.id] = kind
        for node in ast.walk(func):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in types
            ):
                uses.add(f"{types[node.value.id]}.{node.attr}")
    return uses


def declared_majors(source: str) -> tuple[int, ...] | None:
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "TRT_MAJORS" for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    return None


def _uses_by_major() -> dict[int, dict[str, set[str]]]:
    result: dict[int, dict[str, set[str]]] = {10: {}, 11: {}}
    for path in sorted(TRT_SOURCES.glob("*.py")):
        source = path.read_text()
        uses = trt_uses(source)
        if not uses:
            continue
        majors = declared_majors(source)
        assert majors, f"{path.name} uses trt.* but declares no TRT_MAJORS"
        for major in majors:
            result[major][path.name] = uses
    return result


def _missing(run_bindings, major: int, paths: set[str]) -> dict:
    proc = run_bindings(major, CHECK, json.dumps(sorted(paths)))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_scanner_sees_the_calls_that_matter():
    uses = _uses_by_major()
    implicit = set().union(*uses[10].values())
    explicit = set().union(*uses[11].values())
    # spot checks that the scanner follows chains, class bases and annotated locals
    assert "BuilderFlag.INT8" in implicit
    assert "IInt8EntropyCalibrator2" in implicit
    assert "IBuilderConfig.set_calibration_profile" in implicit
    assert "IBuilderConfig.int8_calibrator" in implicit
    assert "NetworkDefinitionCreationFlag.STRONGLY_TYPED" in explicit
    assert "OnnxParser.parse_from_file" in explicit or "OnnxParser" in explicit
    assert not any(u.startswith("IInt8") or u.startswith("BuilderFlag.INT8") for u in explicit)


@pytest.mark.parametrize("major", [10, 11])
def test_every_trt_attribute_exists_in_the_real_bindings(run_bindings, major):
    uses = _uses_by_major()[major]
    assert uses, f"no module declares TensorRT {major}"
    result = _missing(run_bindings, major, set().union(*uses.values()))
    assert result["version"].startswith(f"{major}.")
    by_module = {
        name: sorted(set(result["missing"]) & module_uses) for name, module_uses in uses.items()
    }
    assert not result["missing"], f"missing in TensorRT {result['version']}: {by_module}"


def test_the_check_can_fail(run_bindings):
    """The same check reports what TensorRT 11 removed, so a wrong version path would show."""
    source = "def f(config: trt.IBuilderConfig):\n    config.set_flag(trt.BuilderFlag.INT8)\n"
    source += "    config.int8_calibrator = None\n    return trt.IInt8MinMaxCalibrator\n"
    paths = trt_uses(source)
    assert paths >= {"BuilderFlag.INT8", "IBuilderConfig.int8_calibrator", "IInt8MinMaxCalibrator"}
    result = _missing(run_bindings, 11, paths)
    assert set(result["missing"]) == {
        "BuilderFlag.INT8",
        "IBuilderConfig.int8_calibrator",
        "IInt8MinMaxCalibrator",
    }
    assert _missing(run_bindings, 10, paths)["missing"] == []

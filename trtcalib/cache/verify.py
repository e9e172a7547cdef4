"""Does a cache fit a model? Missing tensors, names the model does not know, provenance.

TensorRT's ONNX parser adds tensors of its own (`ONNXTRT_Broadcast_12_output`,
`(Unnamed Layer* 46) [Constant]_output`, ...) and TRT 10 writes them into caches; they are
reported separately from names that point at another model.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from trtcalib.cache.provenance import Provenance
from trtcalib.cache.reuse import ReuseDecision, missing_tensors_reason, reuse_decision

_TRT_INTERNAL = re.compile(r"^(ONNXTRT_.*|\(Unnamed Layer\* \d+\) \[.*\].*)$")


def is_trt_internal(name: str) -> bool:
    """Names TensorRT makes up for tensors without an ONNX name."""
    return bool(_TRT_INTERNAL.match(name))


def model_tensor_names(model: onnx.ModelProto) -> set[str]:
    """Every tensor name the model has: inputs, initializers, node outputs (subgraphs too)."""
    names: set[str] = set()

    def walk(graph: onnx.GraphProto) -> None:
        names.update(v.name for v in graph.input)
        names.update(t.name for t in graph.initializer)
        names.update(t.values.name for t in graph.sparse_initializer)
        for node in graph.node:
            names.update(n for n in node.output if n)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for sub in attr.graphs:
                        walk(sub)

    walk(model.graph)
    return names


def calibrated_tensor_names(model: onnx.ModelProto) -> list[str]:
    """The float activations TensorRT would calibrate (as trtcalib.capture sees them)."""
    from trtcalib.capture import ActivationCapture

    with ActivationCapture(model) as capture:
        return list(capture.tensor_names)


@dataclass
class VerifyReport:
    """What `trtcalib cache verify` found. `decision.reusable` decides the exit code."""

    decision: ReuseDecision
    missing: list[str] = field(default_factory=list)  # model activations not in the cache
    unknown: list[str] = field(default_factory=list)  # cache names the model does not have
    trt_internal: list[str] = field(default_factory=list)  # TensorRT-made names
    not_calibrated: list[str] = field(default_factory=list)  # known, but weights/int tensors
    # activations the sidecar says were left out on purpose (--tensors, a config `skip`)
    left_out: list[str] = field(default_factory=list)
    # what makes the cache unusable beyond the reuse reasons: NaN or negative scales, a header
    # TensorRT does not know, a sidecar that does not vouch for what it was asked about
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.decision.reusable and not self.problems


def verify_cache(
    cache_path: str | os.PathLike,
    model: onnx.ModelProto,
    *,
    algorithm: str | None = None,
    trt_version: int | None = None,
) -> VerifyReport:
    """Check the cache at `cache_path` against `model` (and optionally calibrator / TRT target)."""
    from trtcalib.fingerprint import model_fingerprint

    wanted = calibrated_tensor_names(model)
    fingerprint = model_fingerprint(model)
    decision = reuse_decision(
        Path(cache_path),
        model_fingerprint=fingerprint,
        algorithm=algorithm,
        trt_version=trt_version,
    )
    cache = decision.cache
    report = VerifyReport(decision)
    if cache is None:
        return report
    on_purpose = _left_out_on_purpose(decision.provenance, fingerprint, wanted)
    report.left_out = [n for n in wanted if n not in cache.scales and n in on_purpose]
    report.missing = [n for n in wanted if n not in cache.scales and n not in on_purpose]
    if report.missing:
        decision.reasons.append(missing_tensors_reason(report.missing))
        decision.reusable = False
    report.problems = _problems(decision)
    known = model_tensor_names(model)
    wanted_set = set(wanted)
    for name in cache.scales:
        if name in wanted_set:
            continue
        if name in known:
            report.not_calibrated.append(name)
        elif is_trt_internal(name):
            report.trt_internal.append(name)
        else:
            report.unknown.append(name)
    return report


def _left_out_on_purpose(prov: Provenance | None, fingerprint: str, wanted: list[str]) -> set[str]:
    """Activations the sidecar says were not calibrated by request: outside the --tensors
    list, or skipped by the --config file. A TensorRT cache (no sidecar) has no such excuse,
    nor has a sidecar made for another model."""
    if prov is None or prov.model_fingerprint != fingerprint:
        return set()
    left = {str(n) for n in prov.extra.get("skipped", []) or []}
    chosen = prov.params.get("tensors")
    if isinstance(chosen, list):
        left.update(n for n in wanted if n not in set(chosen))
    return left


def _problems(decision: ReuseDecision) -> list[str]:
    from trtcalib.cache.reuse import trt_algorithm_name

    cache = decision.cache
    problems = []
    bad = [name for name, scale in cache.scales.items() if math.isnan(scale) or scale < 0]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        problems.append(f"NaN or negative scales ({len(bad)}): {shown}")
    if trt_algorithm_name(cache.algorithm) is None:
        problems.append(
            f"header algorithm {cache.algorithm!r} is no TensorRT calibrator: TensorRT would not "
            "use this cache"
        )
    if decision.provenance is not None:  # a sidecar must vouch for what it was asked about
        problems.extend(f"not verifiable: {item}" for item in decision.unchecked)
    return problems

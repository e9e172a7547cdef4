"""May an existing cache be reused for (model, data, settings)? Lists every reason it may not.

Drives `--reuse-cache auto|always|never`. A cache without a sidecar (written by TensorRT) can only
be checked for its header (algorithm, TensorRT major version) and tensor names; what could not be
checked is listed in `unchecked`, and such a cache counts as `reusable` when those checks pass
(TensorRT's own caches must stay usable, e.g. by `cache verify` and `--reuse-cache always`).
`--reuse-cache auto` asks for more (`ReuseDecision.verified`): a sidecar that vouches for
everything compared, so a sidecar missing its cache checksum or a fingerprint is not enough.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trtcalib.cache.format import CalibrationCache, decode_trt_version, format_trt_version
from trtcalib.cache.io import StaleProvenanceError, read_cache, read_provenance
from trtcalib.cache.provenance import Provenance, jsonable


def trt_algorithm_name(algorithm: str) -> str | None:
    """The cache header name TensorRT uses for trtcalib calibrator `algorithm` (None: unknown).

    A name that already is a header name (e.g. "MinMaxCalibration") is returned unchanged.
    """
    from trtcalib.stats import available_algorithms, get_algorithm

    names = available_algorithms()
    if algorithm in names:
        return get_algorithm(algorithm).trt_algorithm
    headers = {get_algorithm(name).trt_algorithm for name in names} | {"EntropyCalibration"}
    return algorithm if algorithm in headers else None


@dataclass
class ReuseDecision:
    """`reusable` is True when `reasons` is empty. `unchecked`: what could not be verified."""

    reusable: bool
    reasons: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    cache: CalibrationCache | None = None
    provenance: Provenance | None = None

    def __bool__(self) -> bool:
        return self.reusable

    @property
    def verified(self) -> bool:
        """What `--reuse-cache auto` needs: a sidecar, nothing against reuse, and everything
        asked for actually compared (a sidecar missing a field proves nothing about it)."""
        return self.reusable and self.provenance is not None and not self.unchecked

    def why_not_verified(self) -> list[str]:
        """The reasons, then what the sidecar could not vouch for."""
        return self.reasons + [f"not verifiable: {item}" for item in self.unchecked]


def _short_fp(value: str | None) -> str:
    return "unknown" if not value else value[:12]


def _param_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    old, new = jsonable(dict(old)), jsonable(dict(new))
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if a != b:
            diffs.append(f"{key}={a} (cache) vs {b} (now)")
    return diffs


def _compare(reasons: list[str], unchecked: list[str], what: str, old: Any, new: Any) -> None:
    if new is None:
        return
    if old is None:
        unchecked.append(f"{what}: not recorded in the sidecar")
    elif old != new:
        reasons.append(f"{what} differs: cache {old!r}, now {new!r}")


def _compare_fingerprint(
    reasons: list[str], unchecked: list[str], what: str, message: str, old: Any, new: Any
) -> None:
    if new is None:
        return
    if old is None:
        unchecked.append(f"{what}: the sidecar has no {what} fingerprint")
    elif old != new:
        reasons.append(
            f"{message}: fingerprint {_short_fp(new)} now, {_short_fp(old)} when calibrated"
        )


def reuse_decision(
    cache_path: str | os.PathLike,
    *,
    model_fingerprint: str | None = None,
    data_fingerprint: str | None = None,
    algorithm: str | None = None,
    params: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    histogram: str | None = None,
    trt_version: int | None = None,
    tensor_names: Iterable[str] | None = None,
    same_release: bool = False,
    last_batch: str | None = None,
    ignore_params: Iterable[str] = (),
) -> ReuseDecision:
    """Compare the cache (and its sidecar) with the current run; None arguments are not checked.

    `trt_version` is compared by major version (what decides the workflow), or with
    `same_release` in full: a run that will write a cache for 10.9 must not hand out one
    labelled 10.8 (whether TensorRT accepts another release's cache is not documented).
    `ignore_params`: parameter keys not compared (e.g. `growth`, which only a `trt` histogram
    records, where the histogram policy is not compared either).

    A malformed cache or corrupt sidecar raises CacheFormatError (the user must look at it); a
    sidecar that describes another cache is a reason, not an error.
    """
    path = Path(cache_path)
    if not path.exists():
        return ReuseDecision(False, [f"no cache at {path}"])
    cache = read_cache(path)
    reasons: list[str] = []
    unchecked: list[str] = []
    try:
        prov = read_provenance(path)
    except StaleProvenanceError as exc:
        reasons.append(f"provenance does not match the cache: {exc}")
        prov = None
        stale = True
    else:
        stale = False

    # -- what the sidecar tells (first, so an algorithm change is reported once)
    sidecar_algorithm_differs = False
    if prov is None:
        why = "stale sidecar" if stale else "no provenance sidecar (cache written by TensorRT?)"
        wanted = {
            "model": model_fingerprint,
            "data": data_fingerprint,
            "algorithm parameters": params,
            "batch size": batch_size,
            "histogram policy": histogram,
        }
        unchecked.extend(f"{what}: {why}" for what, value in wanted.items() if value is not None)
    else:
        if prov.cache_sha256 is None:
            unchecked.append(
                "cache checksum: the sidecar has none, so an edit of the cache would go unnoticed"
            )
        _compare_fingerprint(
            reasons, unchecked, "model", "model changed", prov.model_fingerprint, model_fingerprint
        )
        if algorithm is not None and prov.algorithm != algorithm:
            sidecar_algorithm_differs = True
            reasons.append(
                f"algorithm differs: cache made with {prov.algorithm!r}, now {algorithm!r}"
            )
        elif params is not None:
            ignored = set(ignore_params)
            diffs = _param_differences(
                {k: v for k, v in prov.params.items() if k not in ignored},
                {k: v for k, v in params.items() if k not in ignored},
            )
            if diffs:
                reasons.append("algorithm parameters differ: " + "; ".join(diffs))
        _compare(reasons, unchecked, "histogram policy", prov.histogram, histogram)
        _compare(reasons, unchecked, "batch size", prov.batch_size, batch_size)
        before = prov.extra.get("last_batch")
        data_message = "data differs (content or order)"
        if last_batch is not None and before is not None and before != last_batch:
            # keep feeds the last partial batch, drop does not: the samples seen differ
            data_message = (
                f"data differs: the cache was made with --last-batch {before}, now {last_batch} "
                "(the last partial batch is fed or not), or the data changed"
            )
        _compare_fingerprint(
            reasons,
            unchecked,
            "data",
            data_message,
            prov.data_fingerprint,
            data_fingerprint,
        )

    # -- what the cache itself says (works without a sidecar)
    if algorithm is not None and not sidecar_algorithm_differs:
        wanted_header = trt_algorithm_name(algorithm)
        if wanted_header is None:
            unchecked.append(f"cache header: no known TensorRT algorithm for {algorithm!r}")
        elif wanted_header != cache.algorithm:
            reasons.append(
                f"algorithm differs: cache header says {cache.algorithm}, calibrator "
                f"{algorithm!r} needs {wanted_header} (TensorRT ignores a cache with another "
                "header)"
            )
    if trt_version is not None:
        target_major = decode_trt_version(trt_version)[0]
        if cache.trt_version is None:
            unchecked.append("TensorRT version: the cache header has none")
        elif cache.trt_major != target_major:
            reasons.append(
                f"TensorRT major version differs: cache {format_trt_version(cache.trt_version)}, "
                f"target {format_trt_version(trt_version)}"
            )
        elif same_release and cache.trt_version != trt_version:
            reasons.append(
                f"TensorRT version differs: cache {format_trt_version(cache.trt_version)}, "
                f"target {format_trt_version(trt_version)} (to relabel the scales instead: "
                "trtcalib cache convert CACHE --to cache --trt-version VERSION -o NEW)"
            )
    if tensor_names is not None:
        missing = [n for n in tensor_names if n not in cache.scales]
        if missing:
            reasons.append(missing_tensors_reason(missing))
    return ReuseDecision(not reasons, reasons, unchecked, cache, prov)


def missing_tensors_reason(missing: list[str]) -> str:
    """The reason for tensors a cache lacks (the first five named)."""
    shown = ", ".join(missing[:5])
    if len(missing) > 5:
        shown += f" and {len(missing) - 5} more"
    return f"tensors missing from the cache ({len(missing)}): {shown}"


def foreign_cache_warning(
    cache: CalibrationCache, path: str | os.PathLike, model: Any
) -> str | None:
    """A warning when none of the cache's tensors is an input or node output of `model` (an
    onnx.ModelProto): `--reuse-cache always` takes it unchecked, but a cache made for another
    model would give TensorRT no scale at all. Some misses are normal (TensorRT names its own
    layers' outputs), so only a cache without a single match is reported."""
    graph = model.graph
    names = {value.name for value in graph.input}
    names.update(out for node in graph.node for out in node.output)
    if not cache.scales or any(name in names for name in cache.scales):
        return None
    return (
        f"{path}: none of its {len(cache.scales)} tensors is in the model (made for another "
        "model?); TensorRT will find no scale in it"
    )

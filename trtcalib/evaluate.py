"""What INT8 costs in accuracy: run the FP32 and the Q/DQ model side by side with onnxruntime.

Both models see exactly the same batches. Reported: top-1 agreement and accuracy (when labels
are given) on the first classifier-like output, cosine similarity and SQNR of every output, and
for every quantized activation its SQNR -- locally (the DequantizeLinear output against its own
float input in the Q/DQ run: the noise this tensor's scale adds, clipping included) and against
the FP32 model (the error accumulated up to that tensor). onnxruntime rounds half to even and
saturates to [-128, 127] like TensorRT's IQuantizeLayer, so the Q/DQ run is what TensorRT
computes up to float summation order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import onnx
from onnx import numpy_helper

from trtcalib.errors import DataError, ModelError, first_line

SENSITIVITY_MODES = ("only", "skip")


# ---------------------------------------------------------------- metrics


def sqnr_db(signal_power: float, noise_power: float) -> float:
    """10 log10(sum ref^2 / sum (ref - test)^2); inf when the test is exact."""
    if noise_power <= 0.0:
        return math.inf
    if signal_power <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_power / noise_power)


def _per_sample_cosine(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    a = ref.reshape(len(ref), -1).astype(np.float64)
    b = test.reshape(len(test), -1).astype(np.float64)
    dot = (a * b).sum(axis=1)
    na = np.sqrt((a * a).sum(axis=1))
    nb = np.sqrt((b * b).sum(axis=1))
    both_zero = (na == 0) & (nb == 0)
    denom = np.where((na == 0) | (nb == 0), 1.0, na * nb)
    cos = np.where((na == 0) | (nb == 0), 0.0, dot / denom)
    return np.where(both_zero, 1.0, cos)


@dataclass
class _Power:
    signal: float = 0.0
    noise: float = 0.0

    def add(self, ref: np.ndarray, test: np.ndarray) -> None:
        r = ref.astype(np.float64)
        self.signal += float((r * r).sum())
        self.noise += float(np.square(r - test.astype(np.float64)).sum())

    @property
    def db(self) -> float:
        return sqnr_db(self.signal, self.noise)


@dataclass
class OutputMetrics:
    name: str
    cosine: float  # mean over samples of the per-sample cosine similarity
    min_cosine: float
    sqnr_db: float
    max_abs_error: float


@dataclass
class TensorMetrics:
    """One quantized activation. sqnr_db: DQ output vs its own float input (same Q/DQ run);
    sqnr_vs_fp32_db: DQ output vs the tensor in the FP32 model; clipped: fraction outside the
    INT8 range of its scale."""

    name: str
    scale: float
    sqnr_db: float
    sqnr_vs_fp32_db: float | None
    clipped: float


@dataclass
class EvalReport:
    num_samples: int
    outputs: list[OutputMetrics]
    tensors: list[TensorMetrics] = field(default_factory=list)
    classifier_output: str | None = None
    top1_agreement: float | None = None
    accuracy_fp32: float | None = None
    accuracy_int8: float | None = None

    def to_dict(self) -> dict:
        def clean(value):
            if isinstance(value, float) and not math.isfinite(value):
                return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        return clean(asdict(self))


# ---------------------------------------------------------------- sessions


def make_session(model: onnx.ModelProto, level: str = "basic"):
    """An onnxruntime CPU session from an in-memory model.

    "basic" keeps Q/DQ as separate QuantizeLinear/DequantizeLinear kernels (fake quantization,
    what TensorRT's arithmetic amounts to); "all" lets onnxruntime fuse them into its own INT8
    kernels, whose requantization differs from TensorRT's.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        if level == "basic"
        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        first = first_line(exc)
        raise ModelError(f"onnxruntime cannot load the model: {first}") from exc


def _run(session, arrays: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    feeds = {i.name: arrays[i.name] for i in session.get_inputs()}
    try:
        values = session.run(names, feeds)
    except Exception as exc:
        first = first_line(exc)
        raise DataError(f"onnxruntime failed on a batch: {first}") from exc
    return dict(zip(names, values, strict=True))


def _with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """A copy of `model` that also returns `names` (onnxruntime needs only the names)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    present = {out.name for out in copy.graph.output}
    for name in names:
        if name not in present:
            copy.graph.output.append(onnx.ValueInfoProto(name=name))
            present.add(name)
    return copy


@dataclass(frozen=True)
class _QPair:
    tensor: str  # float input of QuantizeLinear
    dq_output: str
    scale: float


def _activation_pairs(model: onnx.ModelProto) -> list[_QPair]:
    """The per-tensor Q -> DQ pairs on activations (not on constant weights) of a Q/DQ model."""
    from trtcalib.qdq.graph import GraphView

    view = GraphView(model.graph)  # weights may be initializers or Constant nodes
    inits = {init.name: init for init in model.graph.initializer}
    dq_by_input = {
        node.input[0]: node for node in model.graph.node if node.op_type == "DequantizeLinear"
    }
    pairs = []
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or view.is_constant(node.input[0]):
            continue
        dq = dq_by_input.get(node.output[0])
        scale_init = inits.get(node.input[1])
        if dq is None or scale_init is None:
            continue
        scale = numpy_helper.to_array(scale_init)
        if scale.size != 1:
            continue
        pairs.append(_QPair(node.input[0], dq.output[0], float(scale.reshape(()))))
    return pairs


def plan_batches(model: onnx.ModelProto, batch_size: int) -> tuple[int, str]:
    """(batch size, last-batch policy): a model with a fixed batch dim gets padded batches."""
    from trtcalib.data import fixed_batch_size
    from trtcalib.model import input_specs

    fixed = fixed_batch_size(input_specs(model))
    if fixed is not None:
        return fixed, "pad"
    return batch_size, "keep"


def _batches(source, batch_size: int, last: str) -> Iterator:
    from trtcalib.data import iter_batches

    return iter_batches(source, batch_size, last=last)


def _trim(value: np.ndarray, batch_size: int, num_real: int) -> np.ndarray:
    if num_real < batch_size and value.ndim and value.shape[0] == batch_size:
        return value[:num_real]
    return value


_NONE = np.empty(0)


def _classifier_output(
    model: onnx.ModelProto, sample: dict[str, np.ndarray], *, per_sample: bool = False
) -> str | None:
    """The first float output with classes in its last dim; with `per_sample` (labels given:
    one class per sample) an [N, classes] one first."""
    candidates = list(model.graph.output)
    if per_sample:
        candidates.sort(key=lambda out: sample.get(out.name, _NONE).ndim != 2)
    for out in candidates:
        value = sample.get(out.name)
        if (
            value is not None
            and np.issubdtype(value.dtype, np.floating)
            and value.ndim >= 2
            and value.shape[-1] > 1
        ):
            return out.name
    return None


# ---------------------------------------------------------------- evaluation


def evaluate(
    model: onnx.ModelProto,
    qdq_model: onnx.ModelProto,
    source,
    labels: np.ndarray | None = None,
    batch_size: int = 32,
    *,
    per_tensor: bool = True,
    max_samples: int | None = None,
    progress=None,
    labels_origin: str = "labels",
) -> EvalReport:
    """Run `model` (FP32) and `qdq_model` on the same batches of `source` and compare them.

    `labels`: integer class per sample, in source order (accuracy on the classifier output).
    `progress`: optional callable(num_samples_done) for a progress bar.
    """
    batch_size, last = plan_batches(model, batch_size)
    output_names = [out.name for out in model.graph.output]
    pairs = _activation_pairs(qdq_model) if per_tensor else []
    fp32_names = {name for node in model.graph.node for name in node.output if name}
    fp32_extra = [p.tensor for p in pairs if p.tensor in fp32_names]
    qdq_inputs = {i.name for i in qdq_model.graph.input}
    qdq_extra = [name for p in pairs for name in (p.tensor, p.dq_output) if name not in qdq_inputs]

    fp32_session = make_session(_with_outputs(model, fp32_extra))
    qdq_session = make_session(_with_outputs(qdq_model, qdq_extra))
    fp32_fetch = output_names + [n for n in fp32_extra if n not in output_names]
    qdq_fetch = output_names + [n for n in qdq_extra if n not in output_names]

    out_power = {name: _Power() for name in output_names}
    cosines: dict[str, list[np.ndarray]] = {name: [] for name in output_names}
    max_err = dict.fromkeys(output_names, 0.0)
    local_power = {p.tensor: _Power() for p in pairs}
    global_power = {p.tensor: _Power() for p in pairs}
    clipped = dict.fromkeys((p.tensor for p in pairs), 0)
    counted = dict.fromkeys((p.tensor for p in pairs), 0)
    classifier: str | None = None
    agree = 0
    positions = 0
    correct_fp32 = correct_int8 = 0
    seen = 0

    for batch in _batches(source, batch_size, last):
        arrays = batch.arrays
        n_real = batch.num_real
        if max_samples is not None and seen >= max_samples:
            break
        if max_samples is not None and seen + n_real > max_samples:
            n_real = max_samples - seen
        fp32 = _run(fp32_session, arrays, fp32_fetch)
        qdq = _run(qdq_session, arrays, qdq_fetch)
        size = batch.size
        fp32 = {k: _trim(v, size, n_real) for k, v in fp32.items()}
        qdq = {k: _trim(v, size, n_real) for k, v in qdq.items()}
        feeds = {k: _trim(v, size, n_real) for k, v in arrays.items()}

        for name in output_names:
            ref, test = fp32[name], qdq[name]
            if not np.issubdtype(ref.dtype, np.floating):
                continue
            out_power[name].add(ref, test)
            if ref.size:
                cosines[name].append(_per_sample_cosine(ref, test))
                err = float(np.abs(ref.astype(np.float64) - test).max())
                max_err[name] = max(max_err[name], err)
        if classifier is None and seen == 0:
            classifier = _classifier_output(model, fp32, per_sample=labels is not None)
            if classifier is not None and labels is not None:
                shape = fp32[classifier].shape
                if len(shape) != 2:  # [N, T, C]: a class per position, labels one per sample
                    raise DataError(
                        f"{labels_origin}: labels are one class per sample, but the classifier "
                        f"output '{classifier}' has shape {list(shape)} (one class per position); "
                        "accuracy needs an [N, classes] output (agreement is measured without "
                        "labels)"
                    )
                _check_label_range(labels, shape[-1], classifier, labels_origin)
        if classifier is not None:
            top_fp32 = np.argmax(fp32[classifier], axis=-1)
            top_int8 = np.argmax(qdq[classifier], axis=-1)
            agree += int((top_fp32 == top_int8).sum())
            positions += top_fp32.size
            if labels is not None:
                if seen + len(top_fp32) > len(labels):
                    raise DataError(
                        f"labels: {len(labels)} labels but the data has more samples "
                        f"(at least {seen + len(top_fp32)})"
                    )
                batch_labels = labels[seen : seen + len(top_fp32)].reshape(top_fp32.shape)
                correct_fp32 += int((top_fp32 == batch_labels).sum())
                correct_int8 += int((top_int8 == batch_labels).sum())
        for pair in pairs:
            local_ref = feeds[pair.tensor] if pair.tensor in feeds else qdq[pair.tensor]
            dq = qdq[pair.dq_output]
            local_power[pair.tensor].add(local_ref, dq)
            ratio = local_ref.astype(np.float64) / pair.scale
            clipped[pair.tensor] += int(((ratio > 127.5) | (ratio < -128.5)).sum())
            counted[pair.tensor] += local_ref.size
            if pair.tensor in feeds:
                global_power[pair.tensor].add(feeds[pair.tensor], dq)
            elif pair.tensor in fp32:
                global_power[pair.tensor].add(fp32[pair.tensor], dq)
        seen += n_real
        if progress is not None:
            progress(n_real)

    if labels is not None and classifier is not None and seen != len(labels):
        raise DataError(f"labels: {len(labels)} labels for {seen} samples")
    if labels is not None and classifier is None:
        raise DataError("labels given but the model has no classifier-like output [N, classes]")

    outputs = []
    for name in output_names:
        if not cosines[name]:
            continue
        cos = np.concatenate(cosines[name])
        outputs.append(
            OutputMetrics(
                name=name,
                cosine=float(cos.mean()),
                min_cosine=float(cos.min()),
                sqnr_db=out_power[name].db,
                max_abs_error=max_err[name],
            )
        )
    tensors = [
        TensorMetrics(
            name=p.tensor,
            scale=p.scale,
            sqnr_db=local_power[p.tensor].db,
            sqnr_vs_fp32_db=(
                global_power[p.tensor].db if global_power[p.tensor].signal > 0 else None
            ),
            clipped=clipped[p.tensor] / counted[p.tensor] if counted[p.tensor] else 0.0,
        )
        for p in pairs
    ]
    report = EvalReport(num_samples=seen, outputs=outputs, tensors=tensors)
    if classifier is not None and positions:
        report.classifier_output = classifier
        report.top1_agreement = agree / positions
        if labels is not None:
            report.accuracy_fp32 = correct_fp32 / positions
            report.accuracy_int8 = correct_int8 / positions
    return report


# ---------------------------------------------------------------- sensitivity


@dataclass
class LayerSensitivity:
    """How the model output moves when only this layer is quantized ("only") or when this
    layer alone stays in float ("skip"); `delta_db` is the change against the all-quantized
    model in "skip" mode (positive: leaving it in float helps)."""

    node: str
    op_type: str
    sqnr_db: float
    cosine: float
    top1_agreement: float | None
    delta_db: float | None = None


def _cache_batches(source, batch_size: int, last: str, max_samples: int | None) -> list:
    kept = []
    seen = 0
    for batch in _batches(source, batch_size, last):
        if max_samples is not None and seen + batch.num_real > max_samples:
            # exactly max_samples: the rows past it are cut (a fixed-batch model keeps its
            # batch size, and _trim drops their outputs as it does for padding)
            extra = seen + batch.num_real - max_samples
            arrays = batch.arrays
            if last == "keep":
                arrays = {name: value[: batch.size - extra] for name, value in arrays.items()}
            batch = replace(batch, arrays=arrays, num_real=batch.num_real - extra)
        kept.append(batch)
        seen += batch.num_real
        if max_samples is not None and seen >= max_samples:
            break
    return kept


def _output_quality(
    session, batches: list, reference: list[dict[str, np.ndarray]], names: list[str], classifier
) -> tuple[float, float, float | None]:
    power = _Power()
    cos_parts = []
    agree = positions = 0
    for batch, ref in zip(batches, reference, strict=True):
        out = _run(session, batch.arrays, names)
        for name in names:
            test = _trim(out[name], batch.size, batch.num_real)
            if not np.issubdtype(test.dtype, np.floating):
                continue
            power.add(ref[name], test)
            cos_parts.append(_per_sample_cosine(ref[name], test))
            if name == classifier:
                a = np.argmax(ref[name], axis=-1)
                b = np.argmax(test, axis=-1)
                agree += int((a == b).sum())
                positions += a.size
    cos = float(np.concatenate(cos_parts).mean()) if cos_parts else math.nan
    return power.db, cos, (agree / positions if positions else None)


def sensitivity(
    model: onnx.ModelProto,
    scales: dict[str, float],
    source,
    *,
    mode: str = "only",
    batch_size: int = 32,
    max_samples: int | None = 512,
    exclude: Sequence[str] = (),
    progress=None,
    min_coverage: float | None = None,
) -> list[LayerSensitivity]:
    """Rank the quantizable layers by the output error each causes, most harmful first.

    mode "only": quantize that layer alone (everything else float); rank by lowest output SQNR.
    mode "skip": quantize everything except that layer; rank by the largest SQNR gain.
    """
    from trtcalib.qdq import quantize_model

    if mode not in SENSITIVITY_MODES:
        raise ValueError(f"mode must be one of {', '.join(SENSITIVITY_MODES)}, not {mode!r}")
    # min_coverage as for the evaluated model (None: quantize_model's default), so that
    # --allow-partial ranks the layers of the partial model it just evaluated
    coverage = {} if min_coverage is None else {"min_coverage": min_coverage}
    full = quantize_model(model, scales, exclude, **coverage)
    layers = full.layers
    op_types = {node.name: node.op_type for node in full.model.graph.node}
    batch_size, last = plan_batches(model, batch_size)
    batches = _cache_batches(source, batch_size, last, max_samples)
    names = [out.name for out in model.graph.output]
    fp32_session = make_session(model)
    reference = []
    for batch in batches:
        out = _run(fp32_session, batch.arrays, names)
        reference.append({k: _trim(v, batch.size, batch.num_real) for k, v in out.items()})
    classifier = _classifier_output(model, reference[0]) if reference else None

    baseline_db = None
    if mode == "skip":
        baseline_db, _, _ = _output_quality(
            make_session(full.model), batches, reference, names, classifier
        )
    results = []
    for layer in layers:
        if mode == "only":
            # a residual Add is quantized only with the Conv it fuses into: measured together
            keep = {layer, full.fused_into.get(layer)}
            others = [name for name in layers if name not in keep]
            variant = quantize_model(model, scales, [*exclude, *others], min_coverage=0.0).model
        else:
            try:
                variant = quantize_model(model, scales, [*exclude, layer], min_coverage=0.0).model
            except ModelError:  # that was the last quantized layer: all float without it
                variant = model
        db, cos, agreement = _output_quality(
            make_session(variant), batches, reference, names, classifier
        )
        delta = None if baseline_db is None else db - baseline_db
        results.append(LayerSensitivity(layer, op_types.get(layer, "?"), db, cos, agreement, delta))
        if progress is not None:
            progress(1)
    if mode == "only":
        results.sort(key=lambda r: (r.sqnr_db, r.node))
    else:
        results.sort(key=lambda r: (-(r.delta_db or 0.0), r.node))
    return results


# ---------------------------------------------------------------- labels


def _labels_array(values: np.ndarray, origin: str) -> np.ndarray:
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise DataError(
            f"{origin}: labels must be one class index per sample (shape [N]), got shape "
            f"{list(values.shape)}"
        )
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    if (
        np.issubdtype(values.dtype, np.floating)
        and np.all(np.isfinite(values))
        and np.all(values == np.round(values))
    ):
        return values.astype(np.int64)
    raise DataError(f"{origin}: labels must be integer class indices, got {values.dtype}")


def _check_label_range(
    labels: np.ndarray, num_classes: int, output: str, origin: str = "labels"
) -> None:
    """A label outside [0, classes) is a wrong labels file, not a wrong prediction."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{origin}: {bad.size} labels outside the {num_classes} classes of '{output}' "
            f"(first: label {int(labels[i])} of sample {i}); wrong labels file?"
        )


def _text_labels(path) -> np.ndarray:
    """One integer class per line (blank lines ignored), as samples/images/labels.txt."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read labels ({exc})") from None
    values = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            values.append(int(text))
        except ValueError:
            raise DataError(
                f"{path}:{number}: expected one integer class per line, got {text[:40]!r}"
            ) from None
    if not values:
        raise DataError(f"{path}: no labels (expected one integer class per line)")
    return np.asarray(values, dtype=np.int64)


def _npz_keys(path: str) -> list[str]:
    with np.load(path, allow_pickle=False) as archive:
        return list(archive.files)


def load_labels(spec: str) -> np.ndarray:
    """Labels from FILE.npy, FILE.npz (its 'labels' array, or its only array), FILE.npz:KEY or
    FILE.txt (one integer per line)."""
    from pathlib import Path

    path_text, key = spec, None
    if not Path(spec).exists() and ":" in spec:
        path_text, key = spec.rsplit(":", 1)
    path = Path(path_text)
    if not path.exists():
        raise DataError(f"{path}: no such labels file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a .npy, .npz or .txt labels file")
    suffix = path.suffix.lower()
    if suffix == ".txt":
        if key is not None:
            raise DataError(f"{path}: a .txt labels file has no keys (got ':{key}')")
        return _text_labels(path)
    try:
        if suffix == ".npy":
            if key is not None:
                raise DataError(f"{path}: a .npy file has no keys (got ':{key}')")
            values = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = list(archive.files)
                if key is None:
                    if "labels" in keys:
                        key = "labels"
                    elif len(keys) == 1:
                        key = keys[0]
                    else:
                        raise DataError(
                            f"{path}: holds {', '.join(keys) or 'no arrays'}; name one as "
                            f"{path}:KEY"
                        )
                if key not in keys:
                    raise DataError(f"{path}: no array '{key}' (has: {', '.join(keys) or 'none'})")
                values = archive[key]
        else:
            raise DataError(f"{path}: labels must be a .npy, .npz or .txt file")
    except DataError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read labels ({type(exc).__name__}: {exc})") from None
    return _labels_array(values, str(path) + (f":{key}" if key else ""))


def labels_from_data(data_spec: str) -> np.ndarray | None:
    """The 'labels' array of a --data .npz, or None when there is none."""
    from pathlib import Path

    path = Path(data_spec)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return None
    try:
        if "labels" not in _npz_keys(str(path)):
            return None
    except (ValueError, OSError, EOFError):
        return None
    return load_labels(f"{path}:labels")


def select_labels(labels: np.ndarray, source, origin: str) -> np.ndarray:
    """The labels of the samples `source` yields: its own --subset-len/--sample-method choice
    (a random subset of a script is a reservoir sample, of a file an index draw), so the labels
    stay aligned with the samples. DataError when `labels` does not cover the whole source."""
    return labels[source.label_rows(len(labels), origin)]

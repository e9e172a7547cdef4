"""Accuracy of every studied setting through the Q/DQ model (trtcalib.qdq + trtcalib.evaluate)."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

from trtcalib.errors import DataError
from trtcalib.study.results import StudyResult


def accuracy_sweep(
    model: onnx.ModelProto,
    source: object,
    labels: np.ndarray,
    result: StudyResult,
    *,
    progress: bool = True,
    labels_origin: str = "labels",
) -> dict[str, Any]:
    """Top-1 accuracy of the Q/DQ model for the exact reference and every (batch size, order).

    Settings whose scales are identical (common at large batches) are evaluated once.
    `labels_origin` names the labels in errors (e.g. "--labels eval.npz:labels").
    """
    from trtcalib.console import make_progress
    from trtcalib.evaluate import evaluate
    from trtcalib.qdq import quantize_model
    from trtcalib.stats import scale_from_amax

    def scales_for(policy: str, batch: int, order: int) -> dict[str, float]:
        return {
            r.tensor: float(scale_from_amax(r.amax))
            for r in result.runs
            if r.policy == policy and r.batch_size == batch and r.order == order
        }

    settings = [("exact", 0, -1)] + [
        ("trt", b, k) for b in result.batch_sizes for k in range(result.orders)
    ]
    memo: dict[tuple[tuple[str, float], ...], float] = {}
    accuracy: dict[tuple[str, int, int], float] = {}
    float_accuracy = None
    with make_progress("settings") as bar:
        task = bar.add_task("Q/DQ accuracy", total=len(settings), visible=progress)
        for policy, b, k in settings:
            scales = scales_for(policy, b, k)
            key = tuple(sorted(scales.items()))
            if key not in memo:
                qdq = quantize_model(model, scales)
                report = evaluate(
                    model, qdq.model, source, labels, per_tensor=False, labels_origin=labels_origin
                )
                if report.accuracy_int8 is None:
                    raise DataError(
                        "labels given but the model has no classifier-like output [N, classes]"
                    )
                memo[key] = report.accuracy_int8
                float_accuracy = report.accuracy_fp32
            accuracy[(policy, b, k)] = memo[key]
            bar.advance(task)
    return {
        "metric": "top-1 accuracy",
        "float": float_accuracy,
        "exact": accuracy[("exact", 0, -1)],
        "distinct_scale_sets": len(memo),
        "settings": [
            {"batch_size": b, "order": k, "accuracy": accuracy[("trt", b, k)]}
            for b in result.batch_sizes
            for k in range(result.orders)
        ],
    }

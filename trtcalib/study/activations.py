"""One inference pass over the data, keeping every activation per sample for the replays."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

from trtcalib.console import warn
from trtcalib.study.store import DEFAULT_MEMORY_LIMIT, ActivationStore, StoreWriter

CAPTURE_BATCH = 64  # inference batch when the model's batch dim is dynamic (any size works)


def capture_batch_size(model: onnx.ModelProto) -> tuple[int, str]:
    """The batch to run inference with: the model's fixed batch dim if it has one."""
    from trtcalib.data import fixed_batch_size
    from trtcalib.model import input_specs

    fixed = fixed_batch_size(input_specs(model))
    if fixed is not None:
        return fixed, "pad"
    return CAPTURE_BATCH, "keep"


def capture_activations(
    model: onnx.ModelProto,
    source: object,
    tensors: Sequence[str] | None = None,
    *,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    force_memmap: bool = False,
    progress: bool = True,
) -> ActivationStore:
    """Run `model` once over `source` (a trtcalib.data BatchSource) and keep the activations.

    A tensor whose leading dim is not the batch (e.g. reshaped across samples) cannot be split
    per sample and is left out with a warning. The activations are stored as float32.
    """
    from trtcalib.capture import ActivationCapture
    from trtcalib.console import make_progress
    from trtcalib.data import iter_batches
    from trtcalib.stats._kernels import warm_up_in_background

    batch_size, last = capture_batch_size(model)
    warm_up_in_background()  # numba's start-up overlaps with the inference pass
    capture = ActivationCapture(model, tensors)
    total = getattr(source, "num_samples", None)
    writer = StoreWriter(total, memory_limit=memory_limit, force_memmap=force_memmap)
    names: list[str] | None = None
    dropped: set[str] = set()
    try:
        with make_progress("samples") as bar:
            task = bar.add_task("capturing activations", total=total, visible=progress)
            for batch in iter_batches(source, batch_size, last=last):
                acts = capture.run(batch.arrays)
                rows = batch.num_real
                if names is None:
                    names = []
                    for name in capture.tensor_names:
                        a = acts[name]
                        if a.ndim == 0 or a.shape[0] != batch.size:
                            dropped.add(name)
                        else:
                            names.append(name)
                chunk = {}
                for name in names:
                    a = np.asarray(acts[name])
                    if a.ndim == 0 or a.shape[0] != batch.size:
                        raise _leading_dim_error(name, a.shape, batch.size)
                    chunk[name] = a[:rows]
                if chunk:
                    writer.add(chunk)
                bar.advance(task, rows)
    except BaseException:
        writer.abort()
        raise
    finally:
        capture.close()
    for name in sorted(dropped):
        warn(f"tensor {name}: leading dim is not the batch, left out of the study")
    store = writer.finish()
    return store


def _leading_dim_error(name: str, shape: tuple[int, ...], batch: int) -> Exception:
    from trtcalib.errors import DataError

    return DataError(
        f"tensor {name}: shape {list(shape)} does not start with the batch size {batch}"
    )

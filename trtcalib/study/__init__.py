"""Batch-size sensitivity study (TensorRT issue #774): capture once, replay many batchings.

```python
from trtcalib.study import StudySettings, run_batch_size_study, write_results
result, store = run_batch_size_study("model.onnx", "calib.npz", StudySettings(orders=5))
write_results(result, "study-out/model"); store.close()
```
"""

from trtcalib.study.batch_size import (
    DEFAULT_BATCHES,
    StudySettings,
    check_batches_fit,
    parse_batches,
    run_batch_size_study,
    study_store,
)
from trtcalib.study.replay import RunResult, feed_plan, order_permutation, replay, sweep
from trtcalib.study.results import (
    ACCURACY_CSV_COLUMNS,
    CSV_COLUMNS,
    JSON_SCHEMA,
    SettingSummary,
    StudyResult,
    TensorSummary,
    rel_error,
    summary_table,
    write_results,
)
from trtcalib.study.store import ActivationStore, StoreWriter, store_from_arrays

__all__ = [
    "ACCURACY_CSV_COLUMNS",
    "CSV_COLUMNS",
    "DEFAULT_BATCHES",
    "JSON_SCHEMA",
    "ActivationStore",
    "RunResult",
    "SettingSummary",
    "StoreWriter",
    "StudyResult",
    "StudySettings",
    "TensorSummary",
    "check_batches_fit",
    "feed_plan",
    "order_permutation",
    "parse_batches",
    "rel_error",
    "replay",
    "run_batch_size_study",
    "store_from_arrays",
    "study_store",
    "summary_table",
    "sweep",
    "write_results",
]

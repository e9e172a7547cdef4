"""Calibration data: sources for `--data`, subsetting, and batching.

```python
from trtcalib.data import open_source, DataOptions, ImageOptions, iter_batches
src = open_source("calib.npz", input_specs(model), DataOptions(subset_len=500))
for batch in iter_batches(src, 32, last="keep"):   # Batch(arrays, index, num_real)
    ...
```
Sources: file.npz | file.npy | directory of .npy/.npz | image folder | script.py[:func].
CLI commands share the `--data` options from `trtcalib.data.cli_options`.
"""

from trtcalib.data.batching import Batch, batch_beyond_data, iter_batches
from trtcalib.data.options import (
    LAST_BATCH_POLICIES,
    DataOptions,
    ImageOptions,
    data_options_from_cli,
)
from trtcalib.data.sources import BatchSource, open_source
from trtcalib.data.validate import fixed_batch_size

__all__ = [
    "LAST_BATCH_POLICIES",
    "Batch",
    "batch_beyond_data",
    "BatchSource",
    "DataOptions",
    "ImageOptions",
    "data_options_from_cli",
    "fixed_batch_size",
    "iter_batches",
    "open_source",
]

"""A Polygraphy-style data loader for trtcalib (and `polygraphy --data-loader-script`).

    trtcalib calibrate samples/mnist/model.onnx --data samples/load_data.py --batch 32
    trtcalib calibrate samples/mnist/model.onnx --data samples/load_data.py:load_data

`load_data()` yields `{input_name: array}` dicts. Each array is either ONE sample (here
[1, 28, 28]) or a BATCH with a leading sample dim (here [B, 1, 28, 28]); trtcalib re-batches
to --batch either way. Put any preprocessing you need in here; this one reads the MNIST
calibration split next to this file and yields it in batches of 100.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CALIB = Path(__file__).resolve().parent / "mnist" / "calib.npz"
INPUT_NAME = "input"  # the model's input name (see `trtcalib calibrate --help` / Netron)
BATCH = 100


def load_data():
    if not CALIB.is_file():
        raise FileNotFoundError(
            f"{CALIB} is missing: recreate it with `python samples/mnist/make_sample.py` "
            "(see samples/README.md), or edit load_data() to read your own data"
        )
    # allow_pickle=False: never unpickle data files (they could run code)
    with np.load(CALIB, allow_pickle=False) as archive:
        images = archive[INPUT_NAME]  # float32 [N, 1, 28, 28], pixels in [0, 1]
    for start in range(0, len(images), BATCH):
        yield {INPUT_NAME: images[start : start + BATCH]}


if __name__ == "__main__":
    total = 0
    for item in load_data():
        total += len(item[INPUT_NAME])
    print(f"load_data() yields {total} samples for input '{INPUT_NAME}'")

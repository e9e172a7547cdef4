"""Write the image-folder example: 16 digits (every class 0-9) from the MNIST sample's eval split.

    python samples/images/make_images.py

Picks the first image of each digit plus the next lowest-numbered ones up to 16, and writes
`eval_NNNN.png` (NNNN = row in eval.npz; 28x28 8-bit grayscale, pixel = round(255 * x)) and
`labels.txt` (one integer class per line, in the sorted order of the file names, which is the
order trtcalib's image-folder source reads them). Needs numpy and Pillow only. Use with:

    trtcalib calibrate samples/mnist/model.onnx --data samples/images \\
        --channels gray --scale 0.00392156862745098 --layout nchw --batch 4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
EVAL_NPZ = HERE.parent / "mnist" / "eval.npz"
COUNT = 16


def to_pixels(x: np.ndarray) -> np.ndarray:
    """float [1, 28, 28] in [0, 1] -> uint8 [28, 28]; exact for data made as uint8/255."""
    return np.clip(np.rint(x[0] * 255.0), 0, 255).astype(np.uint8)


def pick(labels: np.ndarray, count: int = COUNT) -> list[int]:
    """Rows to export: the first of every class present, then the lowest others, in row order."""
    chosen = {int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)}
    rest = (i for i in range(len(labels)) if i not in chosen)
    while len(chosen) < min(count, len(labels)):
        chosen.add(next(rest))
    return sorted(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=EVAL_NPZ, help="eval .npz (input, labels)")
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args()

    with np.load(args.eval, allow_pickle=False) as data:
        images, labels = data["input"], data["labels"]
    rows = pick(labels)
    args.out.mkdir(parents=True, exist_ok=True)
    for row in rows:  # zero-padded row numbers: sorted file names == row order
        Image.fromarray(to_pixels(images[row])).save(args.out / f"eval_{row:04d}.png")
    (args.out / "labels.txt").write_text("".join(f"{int(labels[r])}\n" for r in rows))
    print(f"wrote {len(rows)} images + labels.txt to {args.out}: {[int(labels[r]) for r in rows]}")


if __name__ == "__main__":
    main()

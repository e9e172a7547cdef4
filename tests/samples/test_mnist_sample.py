"""The committed MNIST sample (samples/mnist) and image-folder example (samples/images) agree.

Checks the files as shipped, independently of how make_sample.py produced them: the model is valid
ONNX with the documented input, the data matches it, the splits are disjoint, and the model is
actually accurate (a threshold, not a number copied from a run).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "samples" / "mnist"
IMAGES = ROOT / "samples" / "images"
MIN_ACCURACY = 0.95  # a small CNN on real MNIST digits; random guessing would be 0.10
MAX_SAMPLE_BYTES = 4 * 1024 * 1024  # commit-size hygiene for model + data


def _load_npz(name: str) -> dict[str, np.ndarray]:
    with np.load(MNIST / name, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return onnx.load(str(MNIST / "model.onnx"))


@pytest.fixture(scope="module")
def calib() -> dict[str, np.ndarray]:
    return _load_npz("calib.npz")


@pytest.fixture(scope="module")
def evals() -> dict[str, np.ndarray]:
    return _load_npz("eval.npz")


@pytest.fixture(scope="module")
def session() -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(MNIST / "model.onnx"), opts, providers=["CPUExecutionProvider"])


def _predict(session: ort.InferenceSession, x: np.ndarray, batch: int) -> np.ndarray:
    starts = range(0, len(x), batch)
    return np.concatenate([session.run(["logits"], {"input": x[i : i + batch]})[0] for i in starts])


def _row_hashes(x: np.ndarray) -> list[str]:
    return [hashlib.sha256(np.ascontiguousarray(row).tobytes()).hexdigest() for row in x]


def test_files_are_small():
    total = sum((MNIST / n).stat().st_size for n in ("model.onnx", "calib.npz", "eval.npz"))
    assert total <= MAX_SAMPLE_BYTES


def test_model_passes_checker_and_has_documented_io(model):
    onnx.checker.check_model(model, full_check=True)
    assert any(o.domain in ("", "ai.onnx") and o.version == 17 for o in model.opset_import)
    initializers = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    assert [i.name for i in inputs] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    tensor = inputs[0].type.tensor_type
    assert tensor.elem_type == onnx.TensorProto.FLOAT
    dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
    assert dims == ["N", 1, 28, 28]
    out_shape = model.graph.output[0].type.tensor_type.shape
    out_dims = [d.dim_param or d.dim_value for d in out_shape.dim]
    assert out_dims == ["N", 10]


def test_model_uses_only_tensorrt_friendly_ops(model):
    allowed = {"Conv", "Relu", "MaxPool", "Flatten", "Reshape", "Gemm", "MatMul", "Add"}
    assert {node.op_type for node in model.graph.node} <= allowed


@pytest.mark.parametrize("name", ["calib.npz", "eval.npz"])
def test_data_matches_model_input(name):
    data = _load_npz(name)
    x = data["input"]
    assert x.dtype == np.float32
    assert x.ndim == 4 and x.shape[1:] == (1, 28, 28) and x.shape[0] >= 100
    assert np.isfinite(x).all()
    assert x.min() >= 0.0 and x.max() <= 1.0
    # Plain x/255 pixels: every value is a whole number of 1/255 steps, and both ends are used.
    steps = x * 255.0
    assert np.abs(steps - np.rint(steps)).max() < 1e-3
    assert x.min() == 0.0 and x.max() == 1.0


def test_npz_holds_only_the_documented_arrays(calib, evals):
    assert set(calib) == {"input"}
    assert set(evals) == {"input", "labels"}


def test_eval_labels_are_digits(evals):
    labels = evals["labels"]
    assert labels.dtype == np.int64
    assert labels.shape == (len(evals["input"]),)
    assert labels.min() >= 0 and labels.max() <= 9
    assert set(np.unique(labels).tolist()) == set(range(10))


def test_calibration_and_eval_splits_share_no_image(calib, evals):
    calib_hashes = set(_row_hashes(calib["input"]))
    eval_hashes = _row_hashes(evals["input"])
    assert len(set(eval_hashes)) == len(eval_hashes)  # no duplicate inside eval either
    assert len(calib_hashes) == len(calib["input"])
    assert calib_hashes.isdisjoint(eval_hashes)


def test_fp32_accuracy_on_held_out_split(session, evals):
    predictions = _predict(session, evals["input"], batch=32).argmax(axis=1)
    accuracy = float((predictions == evals["labels"]).mean())
    assert accuracy >= MIN_ACCURACY, f"FP32 accuracy {accuracy:.4f} < {MIN_ACCURACY}"


def test_batch_size_does_not_change_predictions(session, evals):
    x = evals["input"][:256]
    logits_1 = _predict(session, x, batch=1)
    logits_32 = _predict(session, x, batch=32)
    assert logits_1.shape == logits_32.shape == (len(x), 10)
    np.testing.assert_array_equal(logits_1.argmax(axis=1), logits_32.argmax(axis=1))
    np.testing.assert_allclose(logits_1, logits_32, rtol=1e-4, atol=1e-4)


def _image_files() -> list[Path]:
    return sorted(IMAGES.glob("*.png"))


def test_image_folder_example_matches_eval_rows(evals):
    files = _image_files()
    assert 10 <= len(files) <= 32
    labels = [int(line) for line in (IMAGES / "labels.txt").read_text().split()]
    assert len(labels) == len(files)
    for path, label in zip(files, labels, strict=True):
        row = int(path.stem.split("_")[1])  # eval_NNNN.png is row NNNN of eval.npz
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == (28, 28)
            pixels = np.asarray(image)
        expected = np.rint(evals["input"][row, 0] * 255.0).astype(np.uint8)
        np.testing.assert_array_equal(pixels, expected, err_msg=path.name)
        assert label == int(evals["labels"][row]), path.name
    assert set(labels) == set(range(10))


def test_image_folder_example_reads_as_model_input(evals):
    """The documented flags turn the PNGs back into the eval rows the model expects."""
    from trtcalib.data import DataOptions, ImageOptions, open_source
    from trtcalib.model import input_specs, load_model

    options = DataOptions(
        image=ImageOptions(scale=0.00392156862745098, channels="gray", layout="nchw")
    )
    source = open_source(IMAGES, input_specs(load_model(MNIST / "model.onnx")), options)
    x = np.concatenate([chunk["input"] for chunk in source.samples()])
    rows = [int(p.stem.split("_")[1]) for p in _image_files()]
    assert x.dtype == np.float32 and x.shape == (len(rows), 1, 28, 28)
    # float32(p) * (1/255) may differ from float32(p / 255) in the last bit.
    np.testing.assert_allclose(x, evals["input"][rows], rtol=0, atol=1e-6)

"""open_source dispatch, option parsing, the shared CLI options and the samples/load_data.py
example."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from trtcalib.data import DataOptions, ImageOptions, data_options_from_cli, open_source
from trtcalib.data import cli_options as dopt
from trtcalib.errors import ConfigError, DataError
from trtcalib.model import InputSpec

F32 = np.dtype(np.float32)
ONE = [InputSpec("input", ("N", 1, 28, 28), F32)]
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_no_such_file_and_unknown_extension(tmp_path):
    with pytest.raises(DataError, match=r"missing\.npz: no such file or folder"):
        open_source(tmp_path / "missing.npz", ONE)
    (tmp_path / "calib.csv").write_text("1,2,3")
    with pytest.raises(DataError, match=r"calib\.csv: unknown data format '\.csv'"):
        open_source(tmp_path / "calib.csv", ONE)


def test_model_without_inputs(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 2), np.float32))
    with pytest.raises(DataError, match="the model has no inputs"):
        open_source(tmp_path / "x.npy", [])


def test_dispatch_kinds(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 28, 28), np.float32))
    np.savez(tmp_path / "x.npz", input=np.zeros((2, 1, 28, 28), np.float32))
    (tmp_path / "s.py").write_text(
        "import numpy as np\ndef f():\n    yield {'input': np.zeros((1, 28, 28))}\n"
    )
    assert open_source(tmp_path / "x.npy", ONE).kind == "npy"
    assert open_source(str(tmp_path / "x.npz"), ONE).kind == "npz"
    assert open_source(f"{tmp_path / 's.py'}:f", ONE).kind == "script"


def test_parse_cli_values():
    opts = data_options_from_cli(
        subset_len=10,
        sample_method="Random",
        seed=7,
        resize="256",
        crop="224",
        mean="0.485, 0.456,0.406",
        std="0.229 0.224 0.225",
        scale="1/255",
        layout="NHWC",
        channels="BGR",
    )
    assert opts == DataOptions(
        subset_len=10,
        sample_method="random",
        seed=7,
        image=ImageOptions(
            resize=256,
            crop=(224, 224),
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
            scale=1 / 255,
            layout="nhwc",
            channels="bgr",
        ),
    )
    assert data_options_from_cli(resize="224x200").image.resize == (224, 200)
    assert data_options_from_cli(scale="0.5").image.scale == 0.5


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"subset_len": 0}, "--subset-len must be at least 1"),
        ({"sample_method": "shuffle"}, "--sample-method must be one of sequential, random"),
        ({"resize": "big"}, "--resize: cannot parse 'big'"),
        ({"crop": "0x4"}, "--crop must be HxW with positive integers"),
        ({"mean": "a,b"}, "--mean: cannot parse 'a'"),
        ({"std": "1,0,1"}, "--std must not contain 0"),
        ({"scale": "1/0"}, "--scale: cannot parse '1/0'"),
        ({"scale": "-1"}, "--scale must be positive"),
        ({"layout": "chw"}, "--layout must be one of nchw, nhwc"),
        ({"channels": "rgba"}, "--channels must be one of rgb, bgr, gray"),
        ({"interpolation": "magic"}, "--interpolation must be one of"),
    ],
)
def test_bad_cli_values_are_one_line_config_errors(kwargs, message):
    with pytest.raises(ConfigError) as info:
        data_options_from_cli(**kwargs)
    assert message in str(info.value) and "\n" not in str(info.value)


def _demo_app(images: bool = True):
    app = typer.Typer()

    @app.command()
    @dopt.with_data_options(images=images)
    def demo(
        data: dopt.DataArg,
        last_batch: dopt.LastBatch = "keep",
        *,
        data_options: DataOptions,
    ) -> None:
        options = data_options
        typer.echo(f"{data}|{options.subset_len}|{options.image.resize}|{last_batch}")

    return app


def test_shared_typer_options():
    runner = CliRunner()
    app = _demo_app()
    r = runner.invoke(
        app, ["--data", "d.npz", "--subset-len", "5", "--resize", "32x16", "--last-batch", "pad"]
    )
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "d.npz|5|(32, 16)|pad"
    r = runner.invoke(app, ["--data", "d.npz", "--subset-len", "0"])
    # DataOptions says it (trtcalib's one-line error), not a click usage box
    assert isinstance(r.exception, ConfigError) and "--subset-len must be at least 1" in str(
        r.exception
    )
    r = runner.invoke(app, ["--help"])
    for option in (
        "--data",
        "--subset-len",
        "--sample-method",
        "--seed",
        "--resize",
        "--crop",
        "--mean",
        "--std",
        "--scale",
        "--layout",
        "--channels",
        "--last-batch",
    ):
        assert option in r.output


def test_shared_typer_options_without_images():
    runner = CliRunner()
    app = _demo_app(images=False)
    r = runner.invoke(app, ["--data", "d.npz", "--subset-len", "3", "--seed", "7"])
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "d.npz|3|None|keep"
    r = runner.invoke(app, ["--data", "d.npz", "--resize", "32"])
    assert r.exit_code == 2 and "--resize" in r.output  # no such option without images
    r = runner.invoke(app, ["--data", "d.npz", "--sample-method", "shuffle"])
    assert isinstance(r.exception, ConfigError) and "--sample-method" in str(r.exception)


def test_sample_load_data_script_reads_the_mnist_split():
    calib = SAMPLES / "mnist" / "calib.npz"
    if not calib.is_file():
        pytest.skip("samples/mnist/calib.npz not created yet")
    with np.load(calib, allow_pickle=False) as archive:
        expected = archive["input"]
    src = open_source(SAMPLES / "load_data.py", ONE)
    got = np.concatenate([c["input"] for c in src.samples()])
    np.testing.assert_array_equal(got, expected)


def test_sample_load_data_script_explains_a_missing_split(tmp_path):
    shutil.copy(SAMPLES / "load_data.py", tmp_path / "load_data.py")
    with pytest.raises(
        DataError,
        match=r"load_data raised FileNotFoundError: .*calib\.npz is "
        r"missing: recreate it with .*make_sample\.py",
    ):
        open_source(tmp_path / "load_data.py", ONE)


def test_fixed_batch_size():
    from trtcalib.data import fixed_batch_size

    assert fixed_batch_size([InputSpec("x", (1, 3, 4, 4), F32)]) == 1
    assert fixed_batch_size([InputSpec("x", ("N", 3), F32)]) is None
    assert fixed_batch_size([InputSpec("a", (8, 3), F32), InputSpec("b", (8,), F32)]) == 8
    assert fixed_batch_size([InputSpec("a", (8, 3), F32), InputSpec("b", (4,), F32)]) is None
    # a dynamic input runs at the batch another input fixes
    assert fixed_batch_size([InputSpec("a", (8, 3), F32), InputSpec("b", ("N",), F32)]) == 8
    assert fixed_batch_size([InputSpec("x", (0, 3), F32)]) is None


def test_scalar_from_script(tmp_path):
    (tmp_path / "s.py").write_text("def load_data():\n    yield {'input': 3.0}\n")
    with pytest.raises(DataError, match=r"item 0: input 'input' is a scalar"):
        open_source(tmp_path / "s.py", ONE)


@pytest.mark.parametrize("kind", ["npz", "folder", "script"])
def test_image_options_for_arrays_or_scripts_are_an_error_not_ignored(tmp_path, kind):
    x = np.zeros((4, 3, 8, 8), np.float32)
    if kind == "npz":
        spec = tmp_path / "x.npz"
        np.savez(spec, input=x)
    elif kind == "folder":
        spec = tmp_path / "arrays"
        spec.mkdir()
        np.save(spec / "a.npy", x)
    else:
        spec = tmp_path / "load.py"
        spec.write_text("import numpy as np\ndef load_data():\n    yield {}\n")
    options = DataOptions(image=ImageOptions(resize=10, mean=(0.5, 0.5, 0.5)))
    specs = [InputSpec("input", ("N", 3, 8, 8), np.dtype(np.float32))]
    with pytest.raises(ConfigError, match=r"--resize, --mean: image options, but .*"):
        open_source(spec, specs, options)

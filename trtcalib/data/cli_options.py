"""Typer options for `--data` shared by every command that reads data (calibrate, build, eval,
compare, study), so they are spelled, documented and parsed the same way everywhere.

Use in a command: declare `data: dopt.DataArg` and let `with_data_options()` add the subset and
image options and hand the command one parsed `DataOptions`::

    from trtcalib.data import cli_options as dopt

    @dopt.with_data_options()            # images=False: only --subset-len/--sample-method/--seed
    def calibrate(model: Path, data: dopt.DataArg, *, data_options: DataOptions):
        ...

Or declare the options one by one (`subset_len: dopt.SubsetLen = None`, ...) and call
`dopt.data_options(subset_len=..., ...)`. Bad values raise a one-line ConfigError (exit 2).
"""

from __future__ import annotations

import functools
import inspect
from typing import Annotated

import typer

from trtcalib.commands._common import with_default
from trtcalib.data.options import data_options_from_cli

PANEL = "Data"
IMAGE_PANEL = "Image folders"

DataArg = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help=(
            "The samples to run the model on: FILE.npz (one array per model input, named "
            "like the input; leading dim = samples; extra arrays such as 'labels' are "
            "ignored; a one-input model takes an .npz's only array whatever its key), FILE.npy "
            "(one-input models), a folder of .npy/.npz files (read in name order), an image "
            "folder (jpg/png/bmp, recursive), or SCRIPT.py[:FUNC] whose FUNC (default "
            "load_data) yields {input_name: array} per sample or per batch."
        ),
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
DataOptional = with_default(
    DataArg,
    "Optional here: not needed when a reusable calibration cache exists.",
    str | None,
)
SubsetLen = Annotated[
    int | None,
    typer.Option(
        "--subset-len",
        help="Use only N samples of the data. Default: all.",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
SampleMethod = Annotated[
    str,
    typer.Option(
        "--sample-method",
        help=(
            "How --subset-len picks samples: 'sequential' (the first N) or 'random' (N distinct "
            "samples chosen with --seed, read in their original order). Default: sequential."
        ),
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
Seed = Annotated[
    int,
    typer.Option(
        "--seed",
        help="Seed for --sample-method random. Default: 0.",
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
LastBatch = Annotated[
    str | None,
    typer.Option(
        "--last-batch",
        help=(
            "The last partial batch: 'keep' it (a smaller batch), 'pad' it by repeating its last "
            "sample (a full OPT-shape batch, as TensorRT needs), or 'drop' it. Default: keep."
        ),
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
# TensorRT calibrates only full batches at the profile's OPT shape: build cannot keep a short one
LastBatchForTensorRT = with_default(
    LastBatch,
    "Default here: drop, because TensorRT calibrates only full batches at the OPT shape "
    "(keep is refused).",
)
Resize = Annotated[
    str | None,
    typer.Option(
        "--resize",
        help=(
            "Resize images to HxW (e.g. 224x224), or N to scale the short side to N keeping the "
            "aspect ratio. Default: the model input's HxW, or no resize when --crop is given."
        ),
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]
Crop = Annotated[
    str | None,
    typer.Option(
        "--crop",
        help=(
            "Center-crop HxW (or N for NxN) after --resize. Default: the model input's HxW "
            "when the resized image is larger."
        ),
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]
Mean = Annotated[
    str | None,
    typer.Option(
        "--mean",
        help=(
            "Per-channel mean subtracted after --scale, e.g. 0.485,0.456,0.406 "
            "(input = (pixel*scale - mean) / std). Default: 0."
        ),
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]
Std = Annotated[
    str | None,
    typer.Option(
        "--std",
        help="Per-channel std to divide by, e.g. 0.229,0.224,0.225. Default: 1.",
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]
Scale = Annotated[
    str | None,
    typer.Option(
        "--scale",
        help="Multiply pixel values (0-255) by this first, e.g. 1/255 or 1. Default: 1/255.",
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]
Layout = Annotated[
    str | None,
    typer.Option(
        "--layout",
        help="nchw or nhwc. Default: from the model input shape ([N,3,H,W] -> nchw).",
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]
Channels = Annotated[
    str | None,
    typer.Option(
        "--channels",
        help="rgb, bgr or gray. Default: gray for 1 channel, rgb for 3.",
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]
Interpolation = Annotated[
    str,
    typer.Option(
        "--interpolation",
        help="Resize filter: nearest, bilinear, bicubic, lanczos, box or hamming (Pillow). "
        "Default: bilinear.",
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]


# DataOptions from the values of the options above (same names)
data_options = data_options_from_cli

# (name, annotation, default) of the options `with_data_options` adds; the first three subset
_OPTIONS = [
    ("subset_len", SubsetLen, None),
    ("sample_method", SampleMethod, "sequential"),
    ("seed", Seed, 0),
    ("resize", Resize, None),
    ("crop", Crop, None),
    ("mean", Mean, None),
    ("std", Std, None),
    ("scale", Scale, None),
    ("layout", Layout, None),
    ("channels", Channels, None),
    ("interpolation", Interpolation, "bilinear"),
]


def with_data_options(*, images: bool = True):
    """Add the subset options (and with `images`, the image-folder options) to a typer command
    and pass it `data_options=DataOptions(...)` instead of their raw values."""
    options = _OPTIONS if images else _OPTIONS[:3]

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != "data_options"]
        # right after `data`, so --help lists the Data and Image folders panels first; what
        # follows becomes keyword-only (typer passes everything by name) so order stays valid
        at = next((i + 1 for i, p in enumerate(kept) if p.name == "data"), len(kept))
        keyword = inspect.Parameter.KEYWORD_ONLY
        added = [
            inspect.Parameter(name, keyword, default=d, annotation=a) for name, a, d in options
        ]
        rest = [p.replace(kind=keyword) for p in kept[at:]]

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            values = {name: kwargs.pop(name) for name, _, _ in options}
            return func(*args, data_options=data_options(**values), **kwargs)

        params = kept[:at] + added + rest
        wrapper.__signature__ = signature.replace(parameters=params)
        # evaluated annotations: typer resolves them in this module, not the command's
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate

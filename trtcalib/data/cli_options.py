"""Typer options for `--data` shared by every command that reads data (calibrate, build, eval,
study), so they are spelled, documented and parsed the same way everywhere.

Use in a command::

    from trtcalib.data import cli_options as dopt

    def calibrate(
        model: Path,
        data: dopt.DataArg,
        subset_len: dopt.SubsetLen = None,
        sample_method: dopt.SampleMethod = "sequential",
        seed: dopt.Seed = 0,
        resize: dopt.Resize = None,
        crop: dopt.Crop = None,
        mean: dopt.Mean = None,
        std: dopt.Std = None,
        scale: dopt.Scale = None,
        layout: dopt.Layout = None,
        channels: dopt.Channels = None,
        interpolation: dopt.Interpolation = "bilinear",
        last_batch: dopt.LastBatch = "keep",   # the TensorRT path passes its own default
    ):
        options = dopt.data_options(subset_len=subset_len, sample_method=sample_method,
                                    seed=seed, resize=resize, ...)  # same names as above

`data_options(...)` takes exactly the values above (by keyword) and returns DataOptions; bad
values raise a one-line ConfigError (exit 2).
"""

from __future__ import annotations

from typing import Annotated

import typer

from trtcalib.data.options import DataOptions, data_options_from_cli

PANEL = "Data"
IMAGE_PANEL = "Image folders"

DataArg = Annotated[
    str,
    typer.Option(
        "--data",
        "-d",
        help=(
            "Calibration data: FILE.npz (one array per model input, named like the input; "
            "leading dim = samples; extra arrays such as 'labels' are ignored), FILE.npy "
            "(one-input models), a folder of .npy/.npz files (read in name order), an image "
            "folder (jpg/png/bmp, recursive), or SCRIPT.py[:FUNC] whose FUNC (default "
            "load_data) yields {input_name: array} per sample or per batch."
        ),
        rich_help_panel=PANEL,
        show_default=False,
    ),
]
SubsetLen = Annotated[
    int | None,
    typer.Option(
        "--subset-len",
        min=1,
        help="Use only N samples of the data (default: all).",
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
            "samples chosen with --seed, read in their original order)."
        ),
        rich_help_panel=PANEL,
    ),
]
Seed = Annotated[
    int,
    typer.Option("--seed", help="Seed for --sample-method random.", rich_help_panel=PANEL),
]
LastBatch = Annotated[
    str,
    typer.Option(
        "--last-batch",
        help=(
            "The last partial batch: 'keep' it (smaller), 'pad' it by repeating its last "
            "sample (TensorRT needs full OPT-shape batches), or 'drop' it."
        ),
        rich_help_panel=PANEL,
    ),
]
Resize = Annotated[
    str | None,
    typer.Option(
        "--resize",
        help=(
            "Resize images to HxW (e.g. 224x224), or N to scale the short side to N keeping the "
            "aspect ratio. Default: the model input's HxW."
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
            "(input = (pixel*scale - mean) / std). Default 0."
        ),
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]
Std = Annotated[
    str | None,
    typer.Option(
        "--std",
        help="Per-channel std to divide by, e.g. 0.229,0.224,0.225. Default 1.",
        rich_help_panel=IMAGE_PANEL,
        show_default=False,
    ),
]
Scale = Annotated[
    str | None,
    typer.Option(
        "--scale",
        help="Multiply pixel values (0-255) by this first, e.g. 1/255 (the default) or 1.",
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
        help="Resize filter: nearest, bilinear, bicubic, lanczos, box or hamming (Pillow).",
        rich_help_panel=IMAGE_PANEL,
    ),
]


def data_options(
    *,
    subset_len: int | None = None,
    sample_method: str = "sequential",
    seed: int = 0,
    resize: str | None = None,
    crop: str | None = None,
    mean: str | None = None,
    std: str | None = None,
    scale: str | None = None,
    layout: str | None = None,
    channels: str | None = None,
    interpolation: str = "bilinear",
) -> DataOptions:
    """DataOptions from the values of the options above (same names)."""
    return data_options_from_cli(
        subset_len=subset_len,
        sample_method=sample_method,
        seed=seed,
        resize=resize,
        crop=crop,
        mean=mean,
        std=std,
        scale=scale,
        layout=layout,
        channels=channels,
        interpolation=interpolation,
    )

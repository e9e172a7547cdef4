"""Image folders as calibration data (Pillow).

Per image: decode -> convert to RGB or L -> resize -> center crop -> float32 -> RGB->BGR if asked
-> x * scale -> (x - mean) / std -> NCHW or NHWC. Options left unset are chosen from the model
input shape (see `ImageOptions`), and the output shape is checked against the model before any
image is decoded.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trtcalib.data.options import DataOptions, ImageOptions, Size
from trtcalib.data.sources import BatchSource
from trtcalib.data.subset import describe_selection, make_selection
from trtcalib.data.validate import format_shape
from trtcalib.errors import ConfigError, DataError
from trtcalib.model import InputSpec

IMAGES_PER_CHUNK = 32


@dataclass(frozen=True)
class ImagePlan:
    """Resolved preprocessing for one model input (no `None` left except data-given sizes)."""

    resize: Size | int | None
    crop: Size | None
    mean: np.ndarray  # float32[C]
    std: np.ndarray
    scale: float
    layout: str
    channels: str
    interpolation: str

    @property
    def num_channels(self) -> int:
        return 1 if self.channels == "gray" else 3

    @property
    def out_hw(self) -> Size | None:
        """(H, W) of every output image, or None when the images' own size decides."""
        if self.crop is not None:
            return self.crop
        if isinstance(self.resize, tuple):
            return self.resize
        return None

    def describe(self) -> str:
        parts = []
        if isinstance(self.resize, int):
            parts.append(f"resize short side {self.resize} ({self.interpolation})")
        elif self.resize is not None:
            parts.append(f"resize {self.resize[0]}x{self.resize[1]} ({self.interpolation})")
        if self.crop is not None:
            parts.append(f"center crop {self.crop[0]}x{self.crop[1]}")
        parts.append(self.channels)
        parts.append(f"x*{self.scale:.6g}")
        if np.any(self.mean != 0):
            parts.append("mean " + ",".join(f"{v:g}" for v in self.mean))
        if np.any(self.std != 1):
            parts.append("std " + ",".join(f"{v:g}" for v in self.std))
        parts.append(self.layout)
        return ", ".join(parts)


def _per_channel(
    option: str, values: tuple[float, ...] | None, default: float, n: int
) -> np.ndarray:
    if values is None:
        return np.full(n, default, dtype=np.float32)
    if len(values) not in (1, n):
        wanted = "1 value" if n == 1 else f"1 or {n} values"
        raise ConfigError(f"{option} needs {wanted} for {n} channel(s), got {len(values)}")
    return np.broadcast_to(np.asarray(values, dtype=np.float32), (n,)).copy()


def resolve_plan(spec: InputSpec, options: ImageOptions, where: str) -> ImagePlan:
    """Fill the unset image options from the model input shape and check they fit it."""
    shape = spec.shape
    if shape and len(shape) != 4:
        raise DataError(
            f"{where}: input '{spec.name}' has shape {spec.shape_str()}; an image folder "
            "feeds a 4-D input [N,C,H,W] or [N,H,W,C]"
        )

    def fixed(axis: int) -> int | None:
        return shape[axis] if shape and isinstance(shape[axis], int) else None

    layout = options.layout
    if layout is None:
        if fixed(1) in (1, 3):
            layout = "nchw"
        elif fixed(3) in (1, 3):
            layout = "nhwc"
        else:
            layout = "nchw"
    c_axis, h_axis, w_axis = (1, 2, 3) if layout == "nchw" else (3, 1, 2)
    model_c = fixed(c_axis)
    channels = options.channels or ("gray" if model_c == 1 else "rgb")
    n_ch = 1 if channels == "gray" else 3
    if model_c is not None and model_c not in (1, 3):
        # no --channels can fix this: the layout (or the model input) is not an image's
        raise DataError(
            f"{where}: input '{spec.name}' {spec.shape_str()} has {model_c} channels in "
            f"{layout} layout; images have 1 (gray) or 3 (rgb/bgr): check --layout"
        )
    if model_c is not None and model_c != n_ch:
        raise DataError(
            f"{where}: input '{spec.name}' {spec.shape_str()} has {model_c} channel(s) in "
            f"{layout} layout, but {channels} images have {n_ch}; check --layout/--channels"
        )
    model_hw = (fixed(h_axis), fixed(w_axis))
    model_hw = model_hw if None not in model_hw else None

    resize, crop = options.resize, options.crop
    if resize is None and crop is None:
        resize = model_hw
    elif crop is None and model_hw is not None and resize != model_hw:
        crop = model_hw  # e.g. --resize 256 on a 224x224 model: center crop 224x224
    if crop is not None and resize is not None:
        _check_crop_fits(resize, crop, implied=options.crop is None, spec=spec)
    plan = ImagePlan(
        resize=resize,
        crop=crop,
        mean=_per_channel("--mean", options.mean, 0.0, n_ch),
        std=_per_channel("--std", options.std, 1.0, n_ch),
        scale=1 / 255 if options.scale is None else options.scale,
        layout=layout,
        channels=channels,
        interpolation=options.interpolation,
    )
    out = plan.out_hw
    if model_hw is not None and out is not None and out != model_hw:
        raise DataError(
            f"{where}: input '{spec.name}' expects {model_hw[0]}x{model_hw[1]} images "
            f"({spec.shape_str()}), but the preprocessing gives {out[0]}x{out[1]}"
        )
    return plan


def _check_crop_fits(
    resize: int | tuple[int, int], crop: tuple[int, int], implied: bool, spec: InputSpec
) -> None:
    """Refuse a crop no resized image can hold, before reading any image."""
    if isinstance(resize, tuple):
        too_big = crop[0] > resize[0] or crop[1] > resize[1]
        given = f"--resize {resize[0]}x{resize[1]}"
    else:  # the short side becomes `resize`, so a crop side above it never fits
        too_big = min(crop) > resize
        given = f"--resize {resize} (short side)"
    if not too_big:
        return
    if implied:
        raise ConfigError(
            f"input '{spec.name}' {spec.shape_str()} needs a {crop[0]}x{crop[1]} center crop, "
            f"larger than {given}: resize to at least the model's size"
        )
    raise ConfigError(f"--crop {crop[0]}x{crop[1]} is larger than {given}")


def _resample(name: str) -> int:
    from PIL import Image

    return {
        "nearest": Image.Resampling.NEAREST,
        "bilinear": Image.Resampling.BILINEAR,
        "bicubic": Image.Resampling.BICUBIC,
        "lanczos": Image.Resampling.LANCZOS,
        "box": Image.Resampling.BOX,
        "hamming": Image.Resampling.HAMMING,
    }[name]


# Pillow modes holding more than 8 bits per value: 16-bit grayscale PNG/TIFF ("I;16*"), 32-bit
# integer ("I") and float ("F") images. Pillow's convert() to L/RGB clips them to 0..255 (a 16-bit
# PNG becomes almost all 255), so the data would be silently wrong; 16-bit RGB PNGs open as 8-bit
# "RGB" (Pillow keeps the high byte) and are fine.
def _check_eight_bit(path: Path, mode: str) -> None:
    if mode in ("I", "F") or mode.startswith("I;16"):
        raise DataError(
            f"{path}: image mode {mode} (more than 8 bits per pixel); trtcalib reads 8-bit images, "
            "whose values --scale/--mean/--std refer to: convert the images, or give the "
            "preprocessed arrays as .npy/.npz"
        )


def load_image(path: Path, plan: ImagePlan) -> np.ndarray:
    """One image as float32 [C,H,W] (nchw) or [H,W,C] (nhwc)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            _check_eight_bit(path, opened.mode)
            image = opened.convert("L" if plan.channels == "gray" else "RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        # Pillow reports truncated/corrupt files as OSError or SyntaxError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{path}: cannot read image ({reason})") from None
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from None
    resample = _resample(plan.interpolation)
    if isinstance(plan.resize, tuple):
        height, width = plan.resize
        image = image.resize((width, height), resample)
    elif isinstance(plan.resize, int):
        w, h = image.size
        short = plan.resize
        # torchvision's rule: the short side becomes `short`, the long side int(short*long/short)
        size = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
        if size != image.size:
            image = image.resize(size, resample)
    if plan.crop is not None:
        ch, cw = plan.crop
        w, h = image.size
        if ch > h or cw > w:
            raise DataError(
                f"{path}: image is {h}x{w} after resizing, smaller than the {ch}x{cw} crop"
            )
        top = int(round((h - ch) / 2.0))
        left = int(round((w - cw) / 2.0))
        image = image.crop((left, top, left + cw, top + ch))
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if plan.channels == "bgr":
        pixels = pixels[:, :, ::-1]
    pixels = (pixels * np.float32(plan.scale) - plan.mean) / plan.std
    if plan.layout == "nchw":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels, dtype=np.float32)


class ImageSource(BatchSource):
    """A folder of images (recursive, sorted by relative path) for a one-input model."""

    kind = "images"
    fresh_arrays = True  # each chunk is a new np.stack of decoded images

    def __init__(
        self, spec: str, files: list[Path], inputs: Sequence[InputSpec], options: DataOptions
    ) -> None:
        super().__init__(spec, inputs, options)
        if len(self.inputs) != 1:
            raise DataError(
                f"{spec}: an image folder feeds one input, but the model has "
                f"{len(self.inputs)} ({', '.join(self.input_names)}); use an .npz or a script"
            )
        self.input = self.inputs[0]
        if np.dtype(self.input.dtype).kind != "f":
            raise DataError(
                f"{spec}: input '{self.input.name}' is {np.dtype(self.input.dtype)}; image "
                "folders feed float inputs only (use an .npz or a script)"
            )
        self.plan = resolve_plan(self.input, options.image, spec)
        self.files = files
        self.selection = make_selection(len(files), options, spec)
        out = self.plan.out_hw
        if out is not None:
            chw = (self.plan.num_channels, *out)
            shape = (len(files), *(chw if self.plan.layout == "nchw" else (*out, chw[0])))
            self.checker.check_meta(self.input.name, shape, np.dtype(np.float32), spec)

    @property
    def num_samples(self) -> int:
        return self.selection.count

    def describe(self) -> str:
        return (
            f"{self.spec}: {describe_selection(self.selection, self.options, unit='images')}"
            f"; {self.plan.describe()} -> input '{self.input.name}' "
            f"{np.dtype(self.input.dtype)} {format_shape(('N',) + tuple(self.input.shape[1:]))}"
        )

    def _selected_files(self) -> list[Path]:
        sel = self.selection
        if sel.indices is not None:
            return [self.files[i] for i in sel.indices]
        return self.files[: sel.count]

    def _chunks(self) -> Iterator[dict[str, np.ndarray]]:
        files = self._selected_files()
        name = self.input.name
        first_shape: tuple[int, ...] | None = None
        for start in range(0, len(files), IMAGES_PER_CHUNK):
            images = []
            for path in files[start : start + IMAGES_PER_CHUNK]:
                image = load_image(path, self.plan)
                if first_shape is None:
                    first_shape = image.shape
                elif image.shape != first_shape:
                    raise DataError(
                        f"{path}: image gives shape {format_shape(image.shape)}, earlier images "
                        f"{format_shape(first_shape)}; set --resize/--crop"
                    )
                images.append(image)
            yield {name: self.checker.convert(name, np.stack(images), str(files[start].parent))}

"""Options for reading calibration data: subsetting and image preprocessing.

`data_options_from_cli` turns the raw strings of the shared CLI options (see `cli_options.py`)
into a validated `DataOptions`, so every command parses them the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from trtcalib.errors import ConfigError

SAMPLE_METHODS = ("sequential", "random")
LAYOUTS = ("nchw", "nhwc")
CHANNELS = ("rgb", "bgr", "gray")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")
LAST_BATCH_POLICIES = ("keep", "pad", "drop")

Size = tuple[int, int]


@dataclass(frozen=True)
class ImageOptions:
    """How an image folder becomes an input tensor.

    Per image: decode (Pillow) -> convert to `channels` -> resize -> center crop -> float32
    -> x * scale -> (x - mean) / std -> `layout`. `None` means "choose from the model input":
    resize to the model's HxW, layout/channels from where the 1- or 3-sized dim sits,
    scale 1/255 (pixels in [0, 1]), mean 0, std 1.
    """

    resize: Size | int | None = None  # (H, W) exact, or an int for the SHORT side (aspect kept)
    crop: Size | None = None  # center crop (H, W) after resizing
    mean: tuple[float, ...] | None = None  # per channel, in the units after `scale`
    std: tuple[float, ...] | None = None
    scale: float | None = None  # None -> 1/255
    layout: str | None = None  # "nchw" | "nhwc"
    channels: str | None = None  # "rgb" | "bgr" | "gray"
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if isinstance(self.resize, int) and not isinstance(self.resize, bool):
            if self.resize < 1:
                raise ConfigError(f"--resize must be positive, got {self.resize}")
        elif self.resize is not None:
            _check_size("--resize", self.resize)
        if self.crop is not None:
            _check_size("--crop", self.crop)
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.channels is not None and self.channels not in CHANNELS:
            raise ConfigError(
                f"--channels must be one of {', '.join(CHANNELS)}, got {self.channels!r}"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"--interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )
        if self.std is not None and any(s == 0 for s in self.std):
            raise ConfigError("--std must not contain 0")
        if self.scale is not None and not self.scale > 0:
            raise ConfigError(f"--scale must be positive, got {self.scale}")


@dataclass(frozen=True)
class DataOptions:
    """Which samples to read. A random subset keeps the samples in source order (see subset.py)."""

    subset_len: int | None = None
    sample_method: str = "sequential"
    seed: int = 0
    image: ImageOptions = field(default_factory=ImageOptions)

    def __post_init__(self) -> None:
        if self.subset_len is not None and self.subset_len < 1:
            raise ConfigError(f"--subset-len must be at least 1, got {self.subset_len}")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            # numpy's default_rng refuses it with a traceback; say so before any data is read
            raise ConfigError(f"--seed must be a non-negative integer, got {seed!r}")
        if self.sample_method not in SAMPLE_METHODS:
            raise ConfigError(
                f"--sample-method must be one of {', '.join(SAMPLE_METHODS)}, "
                f"got {self.sample_method!r}"
            )


def _check_size(option: str, size: object) -> None:
    if (
        not isinstance(size, tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and v >= 1 for v in size)
    ):
        raise ConfigError(f"{option} must be HxW with positive integers, got {size!r}")


def parse_size(option: str, text: str, *, allow_short_side: bool) -> Size | int:
    """'224x224' or '224,224' -> (224, 224); '256' -> 256 (short side) or (256, 256)."""
    text = text.strip().lower()
    match = re.fullmatch(r"(\d+)\s*[x,]\s*(\d+)", text)
    if match:
        size = (int(match.group(1)), int(match.group(2)))
        _check_size(option, size)
        return size
    if re.fullmatch(r"\d+", text) and int(text) >= 1:
        return int(text) if allow_short_side else (int(text), int(text))
    raise ConfigError(f"{option}: cannot parse {text!r}, expected HxW (e.g. 224x224) or N")


def parse_number(option: str, text: str) -> float:
    """'0.5', '1/255', '1e-3' -> float."""
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"{option}: cannot parse {text!r} as a number") from None


def parse_floats(option: str, text: str) -> tuple[float, ...]:
    """'0.485,0.456,0.406' (commas or spaces) -> tuple of floats; '1/255' parts allowed."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if not parts:
        raise ConfigError(f"{option}: expected one or more numbers, got {text!r}")
    return tuple(parse_number(option, p) for p in parts)


def data_options_from_cli(
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
    """Build DataOptions from the raw CLI strings; bad values raise a one-line ConfigError."""
    image = ImageOptions(
        resize=None if resize is None else parse_size("--resize", resize, allow_short_side=True),
        crop=None if crop is None else parse_size("--crop", crop, allow_short_side=False),  # type: ignore[arg-type]
        mean=None if mean is None else parse_floats("--mean", mean),
        std=None if std is None else parse_floats("--std", std),
        scale=None if scale is None else parse_number("--scale", scale),
        layout=None if layout is None else layout.lower(),
        channels=None if channels is None else channels.lower(),
        interpolation=interpolation.lower(),
    )
    return DataOptions(
        subset_len=subset_len,
        sample_method=sample_method.lower(),
        seed=seed,
        image=image,
    )

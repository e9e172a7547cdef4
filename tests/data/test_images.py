"""Image folders: preprocessing checked against independent numpy computations, defaults from the
model input shape, and every error path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from trtcalib.data import DataOptions, ImageOptions, iter_batches, open_source
from trtcalib.data import images as images_module
from trtcalib.errors import ConfigError, DataError
from trtcalib.model import InputSpec

F32 = np.dtype(np.float32)


def spec(*shape, dtype=F32, name="input"):
    return [InputSpec(name, tuple(shape), np.dtype(dtype))]


def write(path, pixels: np.ndarray, fmt: str | None = None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def read_all(src):
    return np.concatenate([c[src.input_names[0]] for c in src.samples()])


def rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_defaults_from_nchw_model_no_resize_needed(tmp_path):
    px = [rgb(6, 8, s) for s in range(3)]
    for i, p in enumerate(px):
        write(tmp_path / "imgs" / f"{i}.png", p)
    src = open_source(tmp_path / "imgs", spec("N", 3, 6, 8))
    got = read_all(src)
    expected = np.stack([p.transpose(2, 0, 1) for p in px]).astype(np.float64) / 255.0
    assert got.shape == (3, 3, 6, 8) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert src.num_samples == 3 and "nchw" in src.describe()


def test_crop_mean_std_scale_against_numpy(tmp_path):
    px = rgb(10, 12, 1)
    write(tmp_path / "imgs" / "a.png", px)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    options = DataOptions(image=ImageOptions(resize=(10, 12), mean=mean, std=std))
    got = read_all(open_source(tmp_path / "imgs", spec("N", 3, 6, 8), options))
    crop = px[2:8, 2:10].astype(np.float64)  # center: (10-6)/2 = 2 rows, (12-8)/2 = 2 cols
    expected = ((crop / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_odd_crop_margin_follows_torchvision_rounding(tmp_path):
    px = rgb(9, 13, 2)
    write(tmp_path / "i" / "a.png", px)
    options = DataOptions(image=ImageOptions(crop=(6, 8), scale=1.0))
    got = read_all(open_source(tmp_path / "i", spec("N", 3, "h", "w"), options))
    # torchvision center_crop: top = int(round((9-6)/2)) = round(1.5) = 2, left = round(2.5) = 2
    np.testing.assert_array_equal(got[0], px[2:8, 2:10].transpose(2, 0, 1).astype(np.float32))


def test_bgr_nhwc_scale_one(tmp_path):
    px = rgb(5, 7, 3)
    write(tmp_path / "i" / "a.bmp", px)
    options = DataOptions(image=ImageOptions(channels="bgr", scale=1.0, mean=(10.0, 20.0, 30.0)))
    src = open_source(tmp_path / "i", spec("N", 5, 7, 3), options)
    got = read_all(src)
    expected = px[:, :, ::-1].astype(np.float32) - np.array([10, 20, 30], np.float32)
    np.testing.assert_array_equal(got[0], expected)
    assert "nhwc" in src.describe() and "bgr" in src.describe()


def test_gray_from_one_channel_model(tmp_path):
    px = rgb(4, 4, 4)
    write(tmp_path / "i" / "a.png", px)
    got = read_all(open_source(tmp_path / "i", spec("N", 1, 4, 4)))
    # ITU-R 601-2 luma, as documented for Pillow's convert("L")
    luma = px[..., 0] * 0.299 + px[..., 1] * 0.587 + px[..., 2] * 0.114
    assert got.shape == (1, 1, 4, 4)
    np.testing.assert_allclose(got[0, 0] * 255.0, luma, atol=1.0)


def test_gray_png_into_rgb_model_is_replicated(tmp_path):
    px = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    write(tmp_path / "i" / "g.png", px)
    got = read_all(
        open_source(tmp_path / "i", spec("N", 3, 3, 4), DataOptions(image=ImageOptions(scale=1.0)))
    )
    for c in range(3):
        np.testing.assert_array_equal(got[0, c], px.astype(np.float32))


def test_nearest_upscale_is_pixel_repetition(tmp_path):
    px = rgb(3, 5, 5)
    write(tmp_path / "i" / "a.png", px)
    options = DataOptions(image=ImageOptions(interpolation="nearest", scale=1.0))
    got = read_all(open_source(tmp_path / "i", spec("N", 3, 6, 10), options))
    expected = np.repeat(np.repeat(px, 2, axis=0), 2, axis=1).transpose(2, 0, 1)
    np.testing.assert_array_equal(got[0], expected.astype(np.float32))


def test_short_side_resize_box_is_block_mean(tmp_path):
    px = rgb(8, 16, 6)
    write(tmp_path / "i" / "a.png", px)
    options = DataOptions(image=ImageOptions(resize=4, interpolation="box", scale=1.0))
    got = read_all(open_source(tmp_path / "i", spec("N", 3, "h", "w"), options))
    assert got.shape == (1, 3, 4, 8)  # short side 8 -> 4, long side 16 -> 8
    blocks = px.astype(np.float64).reshape(4, 2, 8, 2, 3).mean(axis=(1, 3))
    # Pillow resamples 8-bit images in fixed point: within one grey level of the exact mean
    np.testing.assert_allclose(got[0], blocks.transpose(2, 0, 1), atol=1.0)


def test_resize_short_side_then_model_crop(tmp_path):
    write(tmp_path / "i" / "a.png", rgb(20, 30, 7))
    options = DataOptions(image=ImageOptions(resize=10))
    src = open_source(tmp_path / "i", spec("N", 3, 8, 8), options)
    assert read_all(src).shape == (1, 3, 8, 8)
    assert "center crop 8x8" in src.describe()


def test_jpeg_and_recursive_sorted_order(tmp_path):
    root = tmp_path / "imgs"
    for rel, value in [("b/1.png", 30), ("a/2.jpg", 20), ("a/10.jpeg", 10), ("c.PNG", 40)]:
        write(root / rel, np.full((4, 4, 3), value, np.uint8))
    (root / "labels.txt").write_text("not an image")
    got = read_all(
        open_source(root, spec("N", 3, 4, 4), DataOptions(image=ImageOptions(scale=1.0)))
    )
    # sorted by relative path: a/10.jpeg, a/2.jpg, b/1.png, c.PNG
    np.testing.assert_allclose(got.mean(axis=(1, 2, 3)), [10, 20, 30, 40], atol=1.0)


def test_random_subset_decodes_only_chosen_images(tmp_path, monkeypatch):
    for i in range(12):
        write(tmp_path / "i" / f"{i:02d}.png", np.full((2, 2, 3), i * 10, np.uint8))
    decoded = []
    real = images_module.load_image

    def counting(path, plan):
        decoded.append(path.name)
        return real(path, plan)

    monkeypatch.setattr(images_module, "load_image", counting)
    options = DataOptions(
        subset_len=4, sample_method="random", seed=3, image=ImageOptions(scale=1.0)
    )
    src = open_source(tmp_path / "i", spec("N", 3, 2, 2), options)
    batches = list(iter_batches(src, 3, "pad"))
    values = np.concatenate([b.arrays["input"][: b.num_real, 0, 0, 0] for b in batches]) / 10
    chosen = np.sort(np.random.default_rng(3).choice(12, size=4, replace=False))
    np.testing.assert_array_equal(values, chosen)
    assert decoded == [f"{i:02d}.png" for i in chosen]
    assert "4 of 12 images (random, seed 3)" in src.describe()


def test_float16_model_input(tmp_path):
    write(tmp_path / "i" / "a.png", rgb(2, 2))
    got = read_all(open_source(tmp_path / "i", spec("N", 3, 2, 2, dtype=np.float16)))
    assert got.dtype == np.float16


# -- errors --------------------------------------------------------------------------------------
def test_corrupt_and_truncated_images_are_named(tmp_path):
    write(tmp_path / "i" / "good.png", rgb(4, 4))
    (tmp_path / "i" / "zbad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    src = open_source(tmp_path / "i", spec("N", 3, 4, 4))
    with pytest.raises(DataError, match=r"zbad\.png: cannot read image"):
        read_all(src)
    good = write(tmp_path / "t" / "big.jpg", rgb(64, 64), "JPEG")
    good.write_bytes(good.read_bytes()[:300])
    with pytest.raises(DataError, match=r"big\.jpg: cannot read image"):
        read_all(open_source(tmp_path / "t", spec("N", 3, 64, 64)))


def test_images_deeper_than_8_bits_are_refused_not_clipped(tmp_path):
    # a 16-bit grayscale PNG: Pillow's convert("RGB") clips it, 62 of these 64 pixels to 255
    write(tmp_path / "i" / "a.png", rgb(8, 8))
    write(tmp_path / "i" / "deep.png", (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16))
    mode = Image.open(tmp_path / "i" / "deep.png").mode
    assert mode.startswith("I")  # "I;16" (Pillow 10-12), "I" in older ones
    src = open_source(tmp_path / "i", spec("N", 3, 8, 8))
    with pytest.raises(DataError, match=rf"deep\.png: image mode {mode} \(more than 8 bits"):
        read_all(src)


def test_empty_folder(tmp_path):
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"e: empty data folder"):
        open_source(tmp_path / "e", spec("N", 3, 4, 4))


def test_hidden_files_and_folders_are_skipped(tmp_path):
    # macOS AppleDouble files are not images; a checkpoint folder holds copies
    write(tmp_path / "h" / "cat" / "a.png", rgb(4, 4, 1))
    (tmp_path / "h" / "cat" / "._a.png").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    write(tmp_path / "h" / ".ipynb_checkpoints" / "b.png", rgb(4, 4, 2))
    src = open_source(tmp_path / "h", spec("N", 3, 4, 4))
    assert src.num_samples == 1
    np.testing.assert_allclose(read_all(src)[0], rgb(4, 4, 1).transpose(2, 0, 1) / 255.0, 1e-6)
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    with pytest.raises(DataError, match=r"only: empty data folder"):
        open_source(tmp_path / "only", spec("N", 3, 4, 4))


def test_mixed_folder(tmp_path):
    write(tmp_path / "m" / "a.png", rgb(2, 2))
    np.save(tmp_path / "m" / "x.npy", np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(DataError, match=r"mixes \.npy/\.npz files and images \(a\.png\)"):
        open_source(tmp_path / "m", spec("N", 3, 2, 2))


def test_image_folder_for_two_input_model(tmp_path):
    write(tmp_path / "i" / "a.png", rgb(2, 2))
    inputs = spec("N", 3, 2, 2) + spec("N", 3, 2, 2, name="other")
    with pytest.raises(DataError, match=r"image folder feeds one input.*input, other"):
        open_source(tmp_path / "i", inputs)


def test_image_folder_for_int_or_2d_input(tmp_path):
    write(tmp_path / "i" / "a.png", rgb(2, 2))
    with pytest.raises(DataError, match=r"input 'input' is uint8; image folders feed float"):
        open_source(tmp_path / "i", spec("N", 3, 2, 2, dtype=np.uint8))
    with pytest.raises(DataError, match=r"input 'input' has shape \[N, 12\]; an image folder"):
        open_source(tmp_path / "i", spec("N", 12))


def test_channel_mismatch(tmp_path):
    write(tmp_path / "i" / "a.png", rgb(2, 2))
    with pytest.raises(DataError, match=r"3 channel\(s\) in nchw layout, but gray images have 1"):
        open_source(
            tmp_path / "i", spec("N", 3, 2, 2), DataOptions(image=ImageOptions(channels="gray"))
        )


def test_output_size_mismatch_before_decoding(tmp_path):
    (tmp_path / "i").mkdir()
    (tmp_path / "i" / "a.png").write_bytes(b"never decoded")
    with pytest.raises(DataError, match=r"expects 6x8 images .* gives 5x5"):
        open_source(
            tmp_path / "i",
            spec("N", 3, 6, 8),
            DataOptions(image=ImageOptions(resize=(10, 10), crop=(5, 5))),
        )


def test_images_of_different_sizes_without_resize(tmp_path):
    write(tmp_path / "i" / "a.png", rgb(4, 4))
    write(tmp_path / "i" / "b.png", rgb(4, 5))
    with pytest.raises(
        DataError,
        match=r"b\.png: image gives shape \[3, 4, 5\], earlier images "
        r"\[3, 4, 4\]; set --resize/--crop",
    ):
        read_all(open_source(tmp_path / "i", spec("N", 3, "h", "w")))


def test_crop_larger_than_image(tmp_path):
    write(tmp_path / "i" / "a.png", rgb(4, 4))
    with pytest.raises(
        DataError,
        match=r"a\.png: image is 4x4 after resizing, smaller than the "
        r"6x6 crop",
    ):
        read_all(
            open_source(
                tmp_path / "i", spec("N", 3, "h", "w"), DataOptions(image=ImageOptions(crop=(6, 6)))
            )
        )


def test_crop_larger_than_resize_and_bad_mean(tmp_path):
    write(tmp_path / "i" / "a.png", rgb(4, 4))
    with pytest.raises(ConfigError, match=r"--crop 6x6 is larger than --resize 4x4"):
        open_source(
            tmp_path / "i",
            spec("N", 3, "h", "w"),
            DataOptions(image=ImageOptions(resize=(4, 4), crop=(6, 6))),
        )
    with pytest.raises(ConfigError, match=r"--crop 6x5 is larger than --resize 4 \(short side\)"):
        open_source(
            tmp_path / "i",
            spec("N", 3, "h", "w"),
            DataOptions(image=ImageOptions(resize=4, crop=(6, 5))),
        )
    # the model implies the crop: the message must not blame a --crop the user never gave
    for resize, given in (((3, 5), "--resize 3x5"), (3, r"--resize 3 \(short side\)")):
        with pytest.raises(
            ConfigError,
            match=rf"input 'input' \[N, 3, 4, 4\] needs a 4x4 center crop, larger than {given}",
        ):
            open_source(
                tmp_path / "i", spec("N", 3, 4, 4), DataOptions(image=ImageOptions(resize=resize))
            )
    with pytest.raises(ConfigError, match=r"--mean needs 1 or 3 values for 3 channel\(s\), got 2"):
        open_source(
            tmp_path / "i", spec("N", 3, 4, 4), DataOptions(image=ImageOptions(mean=(0.5, 0.5)))
        )


def test_mean_count_message_for_one_channel(tmp_path):
    write(tmp_path / "i" / "a.png", rgb(4, 4))
    with pytest.raises(ConfigError, match=r"--mean needs 1 value for 1 channel\(s\), got 2$"):
        open_source(
            tmp_path / "i", spec("N", 1, 4, 4), DataOptions(image=ImageOptions(mean=(0.5, 0.5)))
        )


def test_layout_that_puts_a_spatial_dim_on_channels_blames_the_layout(tmp_path):
    """--layout nhwc on an [N,1,28,28] model reads 28 channels: no --channels can fit that,
    so the message must point at --layout, not claim 'rgb images' the user never asked for."""
    write(tmp_path / "i" / "a.png", rgb(28, 28))
    with pytest.raises(DataError, match=r"has 28 channels in nhwc layout; .*check --layout$"):
        open_source(
            tmp_path / "i", spec("N", 1, 28, 28), DataOptions(image=ImageOptions(layout="nhwc"))
        )

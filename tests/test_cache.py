"""TensorRT calibration cache format: hex, versions, parsing, exact round trips, errors.

Expected values come from the format facts (TENSORRT-CALIBRATION.md §3) and from `struct`,
an independent float32 encoder, never from the code under test.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trtcalib.cache import (
    DEFAULT_TRT_VERSION,
    TRT_ALGORITHMS,
    CalibrationCache,
    decode_trt_version,
    encode_trt_version,
    hex_to_scale,
    parse_cache,
    read_cache,
    scale_to_hex,
)
from trtcalib.errors import CacheFormatError


def ref_hex(scale: float) -> str:
    """TensorRT's spelling, computed with struct (independent of numpy)."""
    return format(struct.unpack(">I", struct.pack(">f", scale))[0], "x")


def ref_scale(hex_text: str) -> float:
    """The decode rule quoted in TENSORRT-CALIBRATION.md §3."""
    return struct.unpack(">f", int(hex_text, 16).to_bytes(4, "big"))[0]


# ---------------------------------------------------------------- scale <-> hex


@pytest.mark.parametrize(
    ("scale", "expected"),
    [
        (1.0, "3f800000"),
        (2.0, "40000000"),
        (0.0, "0"),
        (math.inf, "7f800000"),
        (-1.0, "bf800000"),
        (1e-45, "1"),  # smallest subnormal: no zero padding
    ],
)
def test_scale_to_hex_known_bits(scale, expected):
    assert scale_to_hex(scale) == expected


def test_images_in_unit_range_give_trt_entropy_hex():
    # TRT 8 entropy on [0,1] images: scale = (2048.5/2048) * 1 / 127 -> 3c010a14 (§3/§4 facts)
    assert scale_to_hex((2048.5 / 2048) / 127) == "3c010a14"
    assert hex_to_scale("3c010a14") == pytest.approx((2048.5 / 2048) / 127, rel=1e-7)


@pytest.mark.parametrize("text", ["3C010A14", "3c010a14", "03c010a14"[1:], "0003f800"])
def test_hex_to_scale_accepts_case_and_padding(text):
    assert hex_to_scale(text) == ref_scale(text)


@pytest.mark.parametrize("text", ["", "0x1", "3f80000g", "123456789", "-1", " "])
def test_hex_to_scale_rejects(text):
    with pytest.raises(ValueError):
        hex_to_scale(text)


@given(st.integers(0, 2**32 - 1))
def test_hex_round_trip_all_bit_patterns(bits):
    spelled = format(bits, "x")
    scale = hex_to_scale(spelled)
    if math.isnan(scale):
        assert math.isnan(ref_scale(spelled))
    else:
        assert scale == ref_scale(spelled)
        # one spelling per value, except -0.0, written "0" like 0.0 (nothing to quantize)
        assert scale_to_hex(scale) == ("0" if scale == 0 else spelled)


@given(st.floats(width=32, allow_nan=False))
def test_scale_to_hex_matches_struct(value):
    assert scale_to_hex(value) == ("0" if value == 0 else ref_hex(value))


def test_a_byte_order_mark_before_the_header_is_ignored():
    cache = parse_cache(b"\xef\xbb\xbfTRT-8601-EntropyCalibration2\ninput: 3c010a14\n")
    assert cache.algorithm == "EntropyCalibration2" and list(cache.scales) == ["input"]


def test_to_bytes_refuses_a_name_put_straight_into_the_scales_dict():
    cache = CalibrationCache.from_scales({"a": 1.0}, trt_version=8601)
    cache.scales["bad\nname"] = 1.0
    with pytest.raises(CacheFormatError, match="line break"):
        cache.to_bytes()


def test_negative_zero_is_written_as_zero():
    assert scale_to_hex(-0.0) == "0"
    assert b"t: 0\n" in CalibrationCache.from_scales({"t": -0.0}, trt_version=8601).to_bytes()


# ---------------------------------------------------------------- versions


@pytest.mark.parametrize(
    ("version", "code"),
    [
        ("8.6.1", 8601),
        ("8.4.3", 8403),
        ("7.1.3", 7103),
        ("10.9.0", 100900),
        ("10.14.1", 101401),
        ("10.16.1.11", 101601),  # build number ignored
        ((10, 0, 1), 100001),
        ("11.4.0", 110400),
    ],
)
def test_encode_trt_version(version, code):
    assert encode_trt_version(version) == code
    parts = tuple(int(p) for p in (version.split(".") if isinstance(version, str) else version))
    assert decode_trt_version(code) == parts[:3]


def test_default_trt_version_is_newest_10x():
    assert DEFAULT_TRT_VERSION == 101601
    assert decode_trt_version(DEFAULT_TRT_VERSION) == (10, 16, 1)


@pytest.mark.parametrize("bad", ["8.10.0", "10.1.100", "ten", "", "0.1.0", (8, -1, 0), True])
def test_encode_trt_version_rejects(bad):
    with pytest.raises(ValueError):
        encode_trt_version(bad)


@pytest.mark.parametrize("bad", [0, 999, 12345, 89999, 1000000, -8601, True, "8601"])
def test_decode_trt_version_rejects(bad):
    with pytest.raises(ValueError):
        decode_trt_version(bad)


@given(st.integers(1, 8), st.integers(0, 9), st.integers(0, 99))
def test_old_scheme_round_trip(major, minor, patch):
    code = encode_trt_version((major, minor, patch))
    assert code == major * 1000 + minor * 100 + patch
    assert decode_trt_version(code) == (major, minor, patch)


@given(st.integers(10, 99), st.integers(0, 99), st.integers(0, 99))
def test_new_scheme_round_trip(major, minor, patch):
    code = encode_trt_version(f"{major}.{minor}.{patch}")
    assert code == major * 10000 + minor * 100 + patch
    assert decode_trt_version(code) == (major, minor, patch)


# ---------------------------------------------------------------- real-format caches

TRT8_CACHE = (
    b"TRT-8601-EntropyCalibration2\n"
    b"input: 3c010a14\n"
    b"conv1: 3d9a1b2c\n"
    b"(Unnamed Layer* 46) [Constant]_output: 0\n"
    b"relu1: 7f800000\n"
    b"output: 3e2b3c4d\n"
)

TRT10_CACHE = (
    b"TRT-101401-MinMaxCalibration\n"
    b"ONNXTRT_Broadcast_12_output: 3c8e4f10\n"
    b"input: 3c010204\n"
    b"(Unnamed Layer* 46) [Constant]_output: 3b800000\n"
    b"encoder/layer.0/attn: scores: 3f000000\n"
    b"zeros: 0\n"
    b"inf_act: 7f800000\n"
)


def test_trt8_cache_parses():
    cache = parse_cache(TRT8_CACHE)
    assert cache.trt_version == 8601
    assert cache.algorithm == "EntropyCalibration2"
    assert list(cache.scales) == [
        "input",
        "conv1",
        "(Unnamed Layer* 46) [Constant]_output",
        "relu1",
        "output",
    ]
    assert cache.scales["input"] == ref_scale("3c010a14")
    assert cache.scales["(Unnamed Layer* 46) [Constant]_output"] == 0.0
    assert cache.scales["relu1"] == math.inf
    assert cache.to_bytes() == TRT8_CACHE


def test_trt10_cache_parses_names_with_colons_and_keeps_order():
    cache = parse_cache(TRT10_CACHE)
    assert cache.trt_version == 101401 and cache.trt_major == 10
    assert cache.algorithm == "MinMaxCalibration"
    assert list(cache.scales)[0] == "ONNXTRT_Broadcast_12_output"  # file order, not sorted
    assert cache.scales["encoder/layer.0/attn: scores"] == 0.5  # split at the LAST ':'
    assert cache.scales["(Unnamed Layer* 46) [Constant]_output"] == 2.0**-8
    assert cache.scales["zeros"] == 0.0
    assert cache.amax["inf_act"] == math.inf
    assert cache.amax["encoder/layer.0/attn: scores"] == 63.5
    assert cache.to_bytes() == TRT10_CACHE


@pytest.mark.parametrize(
    "variant",
    [
        TRT10_CACHE.replace(b"\n", b"\r\n"),  # CRLF
        TRT10_CACHE.rstrip(b"\n"),  # no trailing newline
        TRT10_CACHE.replace(b"3c8e4f10", b"3C8E4F10"),  # upper-case hex
        TRT10_CACHE.replace(b"3b800000", b"03b800000"[1:]).replace(b"3f000000", b"3F000000"),
        TRT8_CACHE.replace(b"\n", b"\r\n").rstrip(b"\r\n"),
        TRT8_CACHE + b"\n",  # a blank line at the end
    ],
)
def test_writing_what_we_read_gives_same_bytes(variant):
    cache = parse_cache(variant)
    assert cache.to_bytes() == variant
    # and the values are those of the canonical file
    canonical = parse_cache(TRT10_CACHE if variant.startswith(b"TRT-101401") else TRT8_CACHE)
    assert cache == canonical


def test_upper_case_hex_is_decoded():
    cache = parse_cache(b"TRT-8601-MinMaxCalibration\r\na: 3F800000\r\n")
    assert cache.scales == {"a": 1.0}
    assert cache.hex("a") == "3F800000"


def test_modified_cache_keeps_line_endings_and_untouched_spelling():
    data = b"TRT-8601-MinMaxCalibration\r\na: 3F800000\r\nb: 40000000"
    cache = parse_cache(data)
    cache.scales["b"] = 4.0
    cache.scales["c: d"] = 0.0
    expected = b"TRT-8601-MinMaxCalibration\r\na: 3F800000\r\nb: 40800000\r\nc: d: 0"
    assert cache.to_bytes() == expected
    assert parse_cache(expected).scales == {"a": 1.0, "b": 4.0, "c: d": 0.0}


def test_from_scales_writes_tensorrt_spelling():
    scales = {"input": 1 / 127, "(Unnamed Layer* 46) [Constant]_output": 0.0, "x": math.inf}
    cache = CalibrationCache.from_scales(scales)
    expected = (
        "TRT-101601-EntropyCalibration2\n"
        f"input: {ref_hex(1 / 127)}\n"
        "(Unnamed Layer* 46) [Constant]_output: 0\n"
        "x: 7f800000\n"
    ).encode()
    assert cache.to_bytes() == expected


def test_from_scales_rounds_to_float32_and_sets_header():
    cache = CalibrationCache.from_scales(
        {"a": 0.1}, algorithm="MinMaxCalibration", trt_version=8601
    )
    assert cache.scales["a"] == struct.unpack(">f", struct.pack(">f", 0.1))[0]
    assert cache.to_bytes().startswith(b"TRT-8601-MinMaxCalibration\n")
    assert cache.amax["a"] == pytest.approx(12.7, rel=1e-6)


@pytest.mark.parametrize("algorithm", TRT_ALGORITHMS)
def test_all_tensorrt_algorithm_names_round_trip(algorithm):
    data = f"TRT-100900-{algorithm}\na: 3f800000\n".encode()
    assert parse_cache(data).algorithm == algorithm
    assert CalibrationCache.from_scales({"a": 1.0}, algorithm, 100900).to_bytes() == data


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "", "nul\x00"])
def test_from_scales_rejects_unwritable_names(name):
    with pytest.raises(CacheFormatError):
        CalibrationCache.from_scales({name: 1.0})


@pytest.mark.parametrize("bad", [{"algorithm": "Entropy Calibration"}, {"trt_version": 12345}])
def test_from_scales_rejects_bad_header(bad):
    with pytest.raises(CacheFormatError):
        CalibrationCache.from_scales({"a": 1.0}, **bad)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (b"", 1, "empty"),
        (b"\n\n  \n", 1, "empty"),
        (b"input: 3f800000\n", 1, "header"),
        (b"TRT-abc-EntropyCalibration2\n", 1, "header"),
        (b"TRT-8601-\n", 1, "header"),
        (b"TRT-12345-EntropyCalibration2\n", 1, "version"),
        (b"TRT-8601-EntropyCalibration2\ninput 3f800000\n", 2, "':'"),
        (b"TRT-8601-EntropyCalibration2\na: 3f800000\nb: xyz\n", 3, "not hex"),
        (b"TRT-8601-EntropyCalibration2\na: 0x3f800000\n", 2, "not hex"),
        (b"TRT-8601-EntropyCalibration2\na: 3f8000000\n", 2, "8"),
        (b"TRT-8601-EntropyCalibration2\na:\n", 2, "no value"),
        (b"TRT-8601-EntropyCalibration2\n: 3f800000\n", 2, "empty tensor name"),
        (b"TRT-8601-EntropyCalibration2\na: 1\nb: 2\na: 3\n", 4, "twice"),
        (b"TRT-8601-EntropyCalibration2\na: 1\n\xff\xfe\x00garbage", 3, "binary"),
        (b"TRT-8601-EntropyCalibration2\na: 1\nb\xe9: 2\n", 3, "UTF-8"),
        (b"TRT-8601-EntropyCalibration2\na: 1\rb: 2\n", 2, "carriage return"),
    ],
)
def test_bad_caches_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.cache"
    path.write_bytes(content)
    with pytest.raises(CacheFormatError) as info:
        read_cache(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert words.lower() in message.lower()
    assert "\n" not in message


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(CacheFormatError, match="is a directory"):
        read_cache(tmp_path)


def test_missing_file(tmp_path):
    with pytest.raises(CacheFormatError, match="no such"):
        read_cache(tmp_path / "nope.cache")


def test_duplicate_error_names_first_line():
    with pytest.raises(CacheFormatError, match="first at line 2"):
        parse_cache(b"TRT-8601-MinMaxCalibration\nx: 1\ny: 2\nx: 3\n", source="c")


# ---------------------------------------------------------------- properties

names = st.text(
    alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() != "")
scales = st.integers(0, 2**32 - 1).map(lambda bits: ref_scale(format(bits, "x")))
versions = st.sampled_from([8601, 8403, 7103, 100900, 101401, 101601, 110400])


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=200)
@given(
    st.dictionaries(names, scales, max_size=20),
    st.sampled_from(TRT_ALGORITHMS),
    versions,
)
def test_parse_of_serialise_is_identity(table, algorithm, version):
    cache = CalibrationCache.from_scales(table, algorithm=algorithm, trt_version=version)
    back = parse_cache(cache.to_bytes())
    assert back == cache
    assert list(back.scales) == list(table)
    for name, value in table.items():
        got = back.scales[name]
        assert (math.isnan(got) and math.isnan(value)) or got == value
    assert back.to_bytes() == cache.to_bytes()


@settings(max_examples=200)
@given(
    st.dictionaries(names, st.integers(0, 2**32 - 1), min_size=1, max_size=10),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
def test_any_spelling_round_trips_bytes(table, crlf, trailing, upper):
    newline = "\r\n" if crlf else "\n"
    lines = ["TRT-8601-EntropyCalibration2"]
    for name, bits in table.items():
        spelled = format(bits, "X" if upper else "x")
        lines.append(f"{name}: {spelled}")
    data = (newline.join(lines) + (newline if trailing else "")).encode()
    cache = parse_cache(data)
    assert cache.to_bytes() == data
    assert list(cache.scales) == list(table)


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_cache_format_error(data):
    try:
        parse_cache(data)
    except CacheFormatError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300)
@given(st.binary(max_size=40), st.integers(0, len(TRT10_CACHE)))
def test_corrupted_real_cache_raises_only_cache_format_error(noise, where):
    data = TRT10_CACHE[:where] + noise + TRT10_CACHE[where:]
    try:
        cache = parse_cache(data)
    except CacheFormatError:
        return
    assert parse_cache(cache.to_bytes()) == cache


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_random_text_after_header_raises_only_cache_format_error(text):
    try:
        cache = parse_cache(("TRT-101601-EntropyCalibration2\n" + text).encode())
    except CacheFormatError:
        return
    assert parse_cache(cache.to_bytes()) == cache

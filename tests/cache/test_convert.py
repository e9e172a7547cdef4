"""JSON/CSV views of a cache: round trips and fuzzing of the JSON readers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trtcalib.cache import CalibrationCache, Provenance, parse_cache
from trtcalib.cache.convert import cache_from_json, cache_to_json
from trtcalib.errors import CacheFormatError

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["inf", "-inf", "nan", "3f800000", "zz", "float32", "EntropyCalibration2"])
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "trt_version",
                    "algorithm",
                    "tensors",
                    "hex",
                    "scale",
                    "amax",
                    "format_version",
                    "params",
                    "inputs",
                    "name",
                    "shape",
                    "dtype",
                    "batch_size",
                    "min",
                    "max",
                    "x",
                ]
            ),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)


def test_json_round_trip_keeps_bits_and_order():
    cache = parse_cache(
        b"TRT-101401-MinMaxCalibration\nz: 7f800000\n(Unnamed Layer* 1) [Constant]_output: 0\n"
        b"a: 3c010a14\n"
    )
    back = cache_from_json(cache_to_json(cache))
    assert back == cache
    assert list(back.scales) == ["z", "(Unnamed Layer* 1) [Constant]_output", "a"]
    assert back.scales["z"] == math.inf


@pytest.mark.parametrize(
    "text",
    [
        '{"algorithm": "bad name", "trt_version": 8601, "tensors": {}}',
        '{"algorithm": "X", "trt_version": 12, "tensors": {}}',
        '{"algorithm": "X", "trt_version": 8601, "tensors": {"a\\nb": {"scale": 1}}}',
        '{"algorithm": "X", "trt_version": 8601, "tensors": {"a": {}}}',
        '{"algorithm": "X", "trt_version": true, "tensors": {}}',
    ],
)
def test_bad_json_names_the_source(text):
    with pytest.raises(CacheFormatError) as info:
        cache_from_json(text, source="s.json")
    assert str(info.value).startswith("s.json: ")


@settings(max_examples=200)
@given(json_values)
def test_any_json_raises_only_cache_format_error(value):
    try:
        cache = cache_from_json(json.dumps(value))
    except CacheFormatError:
        return
    assert cache_from_json(cache_to_json(cache)) == cache


@settings(max_examples=200)
@given(json_values)
def test_any_sidecar_json_raises_only_cache_format_error(value):
    if isinstance(value, dict):
        value.setdefault("format_version", 1)
        value.setdefault("algorithm", "entropy")
    try:
        Provenance.from_json(json.dumps(value), source="c.cache.json")
    except CacheFormatError as exc:
        assert str(exc).startswith("c.cache.json: ")


@given(
    st.dictionaries(
        st.sampled_from(["a", "b: c", "(Unnamed Layer* 2) [Shuffle]_output"]),
        st.floats(width=32, min_value=0.0, allow_nan=False),  # TensorRT scales: >= 0 or inf
        min_size=1,
    )
)
def test_json_round_trip_property(scales):
    cache = CalibrationCache.from_scales(scales, "EntropyCalibration2", 8601)
    assert cache_from_json(cache_to_json(cache)) == cache


@pytest.mark.parametrize(
    ("scale", "message"),
    [
        ("1" + "0" * 400, "tensor 'a'"),  # a JSON integer too large for a float: no traceback
        ("1e40", "beyond the float32 range"),  # finite, but would be written as inf (7f800000)
        ("-1", "scale -1.0 is not usable by TensorRT"),
        ('"nan"', "scale nan is not usable by TensorRT"),
        ("1e-50", "below the float32 range"),  # positive, but would be written as 0
    ],
    ids=["huge-integer", "1e40", "negative", "nan", "1e-50"],
)
def test_json_scale_outside_float32_is_a_one_line_error(scale, message):
    text = '{"trt_version": 8601, "algorithm": "MinMaxCalibration", "tensors": {"a": {"scale": '
    with pytest.raises(CacheFormatError, match=message):
        cache_from_json(text + scale + "}}}", "s.json")


def test_json_negative_hex_and_no_tensors_are_errors():
    head = '{"trt_version": 8601, "algorithm": "MinMaxCalibration", "tensors": '
    with pytest.raises(CacheFormatError, match="scale -1.0 is not usable"):
        cache_from_json(head + '{"a": {"hex": "bf800000"}}}', "s.json")
    with pytest.raises(CacheFormatError, match=r"s\.json: 'tensors' is empty"):
        cache_from_json(head + "{}}", "s.json")


def test_json_hex_that_is_not_a_string_is_named():
    text = '{"trt_version": 8601, "algorithm": "MinMaxCalibration", "tensors": {"a": {"hex": 5}}}'
    with pytest.raises(CacheFormatError, match=r"s\.json: tensor 'a': 'hex' must be a string"):
        cache_from_json(text, "s.json")


def test_json_largest_float32_scale_is_kept():
    largest = float(np.finfo(np.float32).max)
    text = json.dumps(
        {
            "trt_version": 8601,
            "algorithm": "MinMaxCalibration",
            "tensors": {"a": {"scale": largest}},
        }
    )
    assert cache_from_json(text).to_bytes() == b"TRT-8601-MinMaxCalibration\na: 7f7fffff\n"

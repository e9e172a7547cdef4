""".npz / .npy / directory sources: reading, key matching, validation and every error path."""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np
import pytest
import tinymodels

from trtcalib.data import DataOptions, iter_batches, open_source
from trtcalib.data import arrays as arrays_module
from trtcalib.errors import DataError
from trtcalib.model import InputSpec, input_specs

F32 = np.dtype(np.float32)


def one_input(shape=("N", 3, 4, 4), dtype=F32, name="input"):
    return [InputSpec(name, tuple(shape), np.dtype(dtype))]


def two_inputs():
    return [InputSpec("a", ("N", 4), F32), InputSpec("b", ("N", 4), F32)]


def read_all(src):
    chunks = list(src.samples())
    return {k: np.concatenate([c[k] for c in chunks]) for k in src.input_names}


def test_npz_one_array_per_input(tmp_path):
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(10, 4)), rng.normal(size=(10, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", b=b, a=a, labels=np.arange(10))
    src = open_source(tmp_path / "d.npz", two_inputs())
    assert src.num_samples == 10
    assert src.input_names == ["a", "b"]
    got = read_all(src)
    assert got["a"].dtype == np.float32 and got["b"].dtype == np.float32
    np.testing.assert_array_equal(got["a"], a.astype(np.float32))
    np.testing.assert_array_equal(got["b"], b)
    assert "labels" in src.describe()  # extra keys are ignored but reported


def test_npz_from_real_model_inputs(tmp_path):
    model = tinymodels.conv_model()
    x = np.random.default_rng(1).random((7, 3, 8, 8), dtype=np.float32)
    np.savez_compressed(tmp_path / "c.npz", input=x)
    src = open_source(tmp_path / "c.npz", input_specs(model))
    np.testing.assert_array_equal(read_all(src)["input"], x)


def test_single_array_npz_any_key_for_one_input_model(tmp_path):
    x = np.ones((3, 3, 4, 4), np.float32)
    np.savez(tmp_path / "d.npz", whatever=x)
    np.testing.assert_array_equal(
        read_all(open_source(tmp_path / "d.npz", one_input()))["input"], x
    )


def test_npy_and_mmap(tmp_path, monkeypatch):
    x = np.arange(5 * 48, dtype=np.float32).reshape(5, 3, 4, 4)
    np.save(tmp_path / "x.npy", x)
    calls = []
    real_load = np.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(arrays_module.np, "load", spy)
    src = open_source(tmp_path / "x.npy", one_input())
    np.testing.assert_array_equal(read_all(src)["input"], x)
    assert calls and all(
        c.get("mmap_mode") == "r" and c.get("allow_pickle") is False for c in calls
    )


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 7, 100])
def test_small_chunks_stream_the_same_rows(tmp_path, chunk_rows):
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, 4)).astype(np.float32), rng.normal(size=(7, 4)).astype(np.float32)
    np.savez(tmp_path / "d.npz", a=a, b=b)
    src = open_source(tmp_path / "d.npz", two_inputs())
    src._chunk_rows = chunk_rows
    sizes = [len(c["a"]) for c in src.samples()]
    assert max(sizes) <= chunk_rows
    got = read_all(src)
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)


def test_fortran_order_and_big_endian_members(tmp_path):
    x = np.asfortranarray(np.arange(60, dtype=np.float64).reshape(5, 3, 2, 2)[:, :, :, :])
    y = np.arange(5 * 48, dtype=">f4").reshape(5, 3, 4, 4)
    np.savez(tmp_path / "f.npz", input=np.asfortranarray(y))
    np.save(tmp_path / "b.npy", y)
    assert x.flags.f_contiguous
    for name in ("f.npz", "b.npy"):
        got = read_all(open_source(tmp_path / name, one_input()))["input"]
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, y.astype(np.float32))


def test_directory_concatenates_in_name_order(tmp_path):
    parts = [np.full((n, 3, 4, 4), i, np.float32) for i, n in enumerate([2, 3, 1])]
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "b_1.npy", parts[1])
    np.savez(tmp_path / "d" / "a_0.npz", input=parts[0])
    np.save(tmp_path / "d" / "c_2.npy", parts[2])
    (tmp_path / "d" / "README.txt").write_text("ignored")
    (tmp_path / "d" / "._a_0.npz").write_bytes(b"\x00\x05\x16\x07")  # macOS AppleDouble
    src = open_source(tmp_path / "d", one_input())
    assert src.num_samples == 6
    np.testing.assert_array_equal(read_all(src)["input"], np.concatenate(parts))
    assert "3 files" in src.describe()


def test_directory_validates_every_file_before_reading(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "1.npy", np.zeros((2, 3, 4, 4), np.float32))
    np.save(tmp_path / "d" / "2.npy", np.zeros((2, 3, 5, 4), np.float32))
    with pytest.raises(DataError, match=r"2\.npy.*input 'input'.*\[N, 3, 4, 4\].*\[2, 3, 5, 4\]"):
        open_source(tmp_path / "d", one_input())


def test_symbolic_dims_must_agree_across_files(tmp_path):
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "1.npy", np.zeros((2, 5), np.float32))
    np.save(tmp_path / "d" / "2.npy", np.zeros((2, 6), np.float32))
    with pytest.raises(DataError, match=r"2\.npy.*dim 1 \(seq\) was 5"):
        open_source(tmp_path / "d", [InputSpec("x", ("N", "seq"), F32)])


def test_shared_symbol_must_agree_between_inputs(tmp_path):
    np.savez(tmp_path / "d.npz", ids=np.zeros((2, 5), np.int64), mask=np.zeros((2, 6), np.int64))
    inputs = [
        InputSpec("ids", ("N", "seq"), np.dtype(np.int64)),
        InputSpec("mask", ("N", "seq"), np.dtype(np.int64)),
    ]
    with pytest.raises(DataError, match=r"input 'mask'.*dim 'seq' is 5 for input 'ids'"):
        open_source(tmp_path / "d.npz", inputs)


def test_symbolic_dim_free_and_none_dim(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 9), np.float32))
    src = open_source(tmp_path / "x.npy", [InputSpec("x", ("N", None), F32)])
    assert read_all(src)["x"].shape == (3, 9)


def test_int_into_float_cast_with_a_warning(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.arange(2 * 48, dtype=np.uint8).reshape(2, 3, 4, 4))
    got = read_all(open_source(tmp_path / "x.npy", one_input()))["input"]
    assert got.dtype == np.float32 and got[1, 2, 3, 3] == 95.0
    err = capsys.readouterr().err
    assert "warning: " in err and "cast to float32 as it is, without scaling" in err


def test_int_inputs_take_ints_and_check_range(tmp_path):
    np.save(tmp_path / "ok.npy", np.array([[1, 2]], np.int64))
    got = read_all(open_source(tmp_path / "ok.npy", [InputSpec("i", ("N", 2), np.dtype(np.int32))]))
    assert got["i"].dtype == np.int32
    np.save(tmp_path / "big.npy", np.array([[1, 2**40]], np.int64))
    src = open_source(tmp_path / "big.npy", [InputSpec("i", ("N", 2), np.dtype(np.int32))])
    with pytest.raises(DataError, match=r"big\.npy: input 'i' values .* do not fit int32"):
        read_all(src)


def test_floats_are_not_truncated_into_int_inputs(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((2, 2), np.float32))
    with pytest.raises(DataError, match=r"f\.npy: input 'i' expects int64, found float32"):
        open_source(tmp_path / "f.npy", [InputSpec("i", ("N", 2), np.dtype(np.int64))])


@pytest.mark.parametrize(
    "array, what",
    [
        (np.array([["a", "b"]]), "strings"),
        (np.zeros((2, 2), np.complex64), "complex"),
        (np.zeros(2, dtype=[("x", "f4"), ("y", "f4")]), "structured"),
    ],
)
def test_nonsense_dtypes_refused(tmp_path, array, what):
    np.save(tmp_path / "s.npy", array)
    with pytest.raises(DataError, match=rf"s\.npy: .*{what}"):
        open_source(tmp_path / "s.npy", [InputSpec("x", ("N", 2), F32)])


def test_pickled_objects_never_loaded(tmp_path):
    obj = np.array([{"evil": 1}, None], dtype=object)
    np.save(tmp_path / "o.npy", obj, allow_pickle=True)
    np.savez(tmp_path / "o.npz", input=obj, other=np.zeros(2))
    for name in ("o.npy", "o.npz"):
        with pytest.raises(DataError, match=rf"{name}.*pickled objects are not loaded"):
            open_source(tmp_path / name, one_input(("N",)))


def test_missing_input_name(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((2, 4), np.float32), c=np.zeros((2, 4), np.float32))
    with pytest.raises(DataError, match=r"d\.npz: no array for model input 'b' \(arrays: a, c"):
        open_source(tmp_path / "d.npz", two_inputs())


def test_npy_for_two_input_model(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 4), np.float32))
    with pytest.raises(DataError, match=r"x\.npy: an \.npy holds one array .* 2 inputs \(a, b\)"):
        open_source(tmp_path / "x.npy", two_inputs())


def test_wrong_rank_and_wrong_fixed_dim(tmp_path):
    np.save(tmp_path / "r.npy", np.zeros((3, 4, 4), np.float32))
    with pytest.raises(
        DataError,
        match=r"input 'input' expects shape \[N, 3, 4, 4\], found "
        r"\[3, 4, 4\] \(the leading dim must count",
    ):
        open_source(tmp_path / "r.npy", one_input())
    np.save(tmp_path / "d.npy", np.zeros((3, 1, 4, 4), np.float32))
    with pytest.raises(DataError, match=r"found \[3, 1, 4, 4\] \(dim 1 must be 3\)"):
        open_source(tmp_path / "d.npy", one_input())


def test_mismatched_sample_counts(tmp_path):
    np.savez(tmp_path / "d.npz", a=np.zeros((3, 4), np.float32), b=np.zeros((4, 4), np.float32))
    with pytest.raises(
        DataError,
        match=r"d\.npz: inputs hold different numbers of samples "
        r"\('a' 3, 'b' 4\)",
    ):
        open_source(tmp_path / "d.npz", two_inputs())


def test_zero_samples(tmp_path):
    np.save(tmp_path / "z.npy", np.zeros((0, 3, 4, 4), np.float32))
    with pytest.raises(DataError, match=r"z\.npy: zero samples"):
        open_source(tmp_path / "z.npy", one_input())


def test_scalar_array(tmp_path):
    np.save(tmp_path / "s.npy", np.float32(3))
    with pytest.raises(DataError, match=r"s\.npy: is a scalar"):
        open_source(tmp_path / "s.npy", one_input())


def test_corrupt_files(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"bad\.npz: not a valid \.npz"):
        open_source(tmp_path / "bad.npz", one_input())
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match=r"bad\.npy: not a valid \.npy"):
        open_source(tmp_path / "bad.npy", one_input())
    with zipfile.ZipFile(tmp_path / "empty.npz", "w") as zf:
        zf.writestr("notes.txt", "hi")
    with pytest.raises(DataError, match=r"empty\.npz: \.npz holds no arrays"):
        open_source(tmp_path / "empty.npz", one_input())


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array)
    return buf.getvalue()


def test_damaged_header_names_the_file(tmp_path):
    # numpy tokenizes the header text: an unclosed bracket raised tokenize.TokenError (traceback)
    good = _npy_bytes(np.zeros((4, 3, 4, 4), np.float32))
    start = good.index(b"{")
    damaged = good[:start] + b"{'descr': '<f4', 'shape': ((" + good[start + 28 :]
    (tmp_path / "h.npy").write_bytes(damaged)
    with pytest.raises(DataError, match=r"h\.npy: not a valid \.npy array \(its header"):
        open_source(tmp_path / "h.npy", one_input())
    with zipfile.ZipFile(tmp_path / "h.npz", "w") as zf:
        zf.writestr("input.npy", damaged)
    with pytest.raises(DataError, match=r"h\.npz array 'input': not a valid \.npy array"):
        open_source(tmp_path / "h.npz", one_input())


def _npz_with_bad_deflate_block(path, payload: bytes, good: int) -> None:
    """A deflated member whose first `good` bytes inflate and whose next block has the
    reserved type 3, which zlib rejects ("invalid block type")."""
    packer = zlib.compressobj(wbits=-15)
    stream = packer.compress(payload[:good]) + packer.flush(zlib.Z_FULL_FLUSH) + b"\x07\x00"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("input.npy", stream)
    raw = bytearray(path.read_bytes())
    central = raw.index(b"PK\x01\x02")
    for method_at, size_at in ((8, 22), (central + 10, central + 24)):  # local, central entry
        raw[method_at : method_at + 2] = zipfile.ZIP_DEFLATED.to_bytes(2, "little")
        raw[size_at : size_at + 4] = len(payload).to_bytes(4, "little")
    path.write_bytes(bytes(raw))


def test_damaged_npz_data_names_the_member(tmp_path):
    # past the header: a broken deflate stream raised zlib.error, a traceback
    payload = _npy_bytes(np.ones((400, 3, 4, 4), np.float32))
    _npz_with_bad_deflate_block(tmp_path / "d.npz", payload, good=len(payload) // 2)
    src = open_source(tmp_path / "d.npz", one_input())
    with pytest.raises(DataError, match=r"d\.npz array 'input': corrupt data \(.*invalid block"):
        read_all(src)
    # and a stored member whose bytes no longer match their CRC
    with zipfile.ZipFile(tmp_path / "c.npz", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("input.npy", payload)
    raw = bytearray((tmp_path / "c.npz").read_bytes())
    raw[len(payload) // 2] ^= 0xFF
    (tmp_path / "c.npz").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"c\.npz array 'input': corrupt data \(Bad CRC"):
        read_all(open_source(tmp_path / "c.npz", one_input()))


def test_truncated_npz_member(tmp_path):
    x = np.zeros((50, 3, 4, 4), np.float32)
    data = _npy_bytes(x)[:-100]  # header claims 50 rows, data stops short
    with zipfile.ZipFile(tmp_path / "t.npz", "w") as zf:
        zf.writestr("input.npy", data)
    src = open_source(tmp_path / "t.npz", one_input())
    with pytest.raises(DataError, match=r"t\.npz array 'input': file is truncated"):
        read_all(src)


def test_nan_inf_warned_once_per_input_with_counts(tmp_path, capsys):
    a = np.zeros((6, 4), np.float32)
    a[1, 2] = np.nan
    a[4, 0] = np.nan
    a[5, 3] = np.inf
    b = np.ones((6, 4), np.float64)
    b[0, 0] = -np.inf
    b[2, 1] = 1e300  # overflows float32 -> inf
    np.savez(tmp_path / "d.npz", a=a, b=b)
    src = open_source(tmp_path / "d.npz", two_inputs())
    src._chunk_rows = 2
    capsys.readouterr()
    list(iter_batches(src, 4))
    err = capsys.readouterr().err
    assert "input 'a' has 2 NaN and 1 Inf values" in err
    assert "input 'b' has 0 NaN and 2 Inf values" in err
    assert err.count("warning:") == 2
    list(src.samples())
    assert "warning" not in capsys.readouterr().err  # once per input, not per pass


def test_random_subset_reads_only_chosen_rows_in_order(tmp_path):
    x = np.arange(40, dtype=np.float32).reshape(40, 1) * np.ones((1, 4), np.float32)
    np.save(tmp_path / "x.npy", x[:15])
    np.savez(tmp_path / "y.npz", x=x[15:])
    (tmp_path / "d").mkdir()
    (tmp_path / "x.npy").rename(tmp_path / "d" / "0.npy")
    (tmp_path / "y.npz").rename(tmp_path / "d" / "1.npz")
    options = DataOptions(subset_len=9, sample_method="random", seed=5)
    src = open_source(tmp_path / "d", [InputSpec("x", ("N", 4), F32)], options)
    src._chunk_rows = 4
    got = read_all(src)["x"][:, 0]
    assert src.num_samples == 9 and len(got) == 9
    assert len(set(got.tolist())) == 9 and np.all(np.diff(got) > 0)  # distinct, source order
    # documented selection rule (subset.py): sorted(default_rng(seed).choice(total, n, False))
    expected = np.sort(np.random.default_rng(5).choice(40, size=9, replace=False))
    np.testing.assert_array_equal(got, expected.astype(np.float32))
    again = open_source(tmp_path / "d", [InputSpec("x", ("N", 4), F32)], options)
    np.testing.assert_array_equal(read_all(again)["x"][:, 0], got)


def test_sequential_subset(tmp_path, capsys):
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    np.save(tmp_path / "x.npy", x)
    spec = [InputSpec("x", ("N", 2), F32)]
    src = open_source(tmp_path / "x.npy", spec, DataOptions(subset_len=3))
    np.testing.assert_array_equal(read_all(src)["x"], x[:3])
    assert "3 of 10 samples (first)" in src.describe()
    src = open_source(tmp_path / "x.npy", spec, DataOptions(subset_len=30))
    assert "30 is more than the 10 samples" in capsys.readouterr().err
    assert src.num_samples == 10


@pytest.mark.parametrize("name", ["big.npz", "big.npy", "dir"])
def test_memory_is_bounded_by_a_batch_and_a_chunk(tmp_path, monkeypatch, name):
    """Reading 8 MiB through batches of 16 KiB with 64 KiB chunks never holds the whole data."""
    import tracemalloc

    from trtcalib.data import sources

    x = np.arange(2048 * 1024, dtype=np.float32).reshape(2048, 1024)  # 8 MiB, 4 KiB per sample
    if name == "big.npz":
        np.savez(tmp_path / name, x=x)
    elif name == "big.npy":
        np.save(tmp_path / name, x)
    else:
        (tmp_path / name).mkdir()
        for i in range(4):
            np.save(tmp_path / name / f"{i}.npy", x[i * 512 : (i + 1) * 512])
    del x
    monkeypatch.setattr(sources, "CHUNK_BYTES", 64 * 1024)
    src = open_source(tmp_path / name, [InputSpec("x", ("N", 1024), F32)])
    tracemalloc.start()
    try:
        count = 0
        for batch in iter_batches(src, 4):
            assert batch.arrays["x"][0, 0] == count * 1024
            count += batch.size
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 2048
    assert peak < 1024 * 1024, peak  # well under the 8 MiB of data

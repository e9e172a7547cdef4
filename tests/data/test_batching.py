"""iter_batches: any chunking and any batch size give the same samples in order; keep/pad/drop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trtcalib.data import Batch, iter_batches
from trtcalib.errors import ConfigError, DataError


def make_chunks(sizes: list[int]) -> list[dict[str, np.ndarray]]:
    """Chunks of a stream whose sample i is a=[i, i], b=[[-i]] (two inputs, different ranks)."""
    chunks, start = [], 0
    for n in sizes:
        idx = np.arange(start, start + n, dtype=np.float32)
        chunks.append({"a": np.stack([idx, idx], axis=1), "b": -idx.reshape(n, 1, 1)})
        start += n
    return chunks


chunk_sizes = st.lists(st.integers(min_value=0, max_value=13), min_size=0, max_size=12)
batch_sizes = st.integers(min_value=1, max_value=17)
policies = st.sampled_from(["keep", "pad", "drop"])


@settings(max_examples=300, deadline=None)
@given(sizes=chunk_sizes, batch=batch_sizes, last=policies)
def test_any_chunking_gives_same_samples_in_order(sizes, batch, last):
    total = sum(sizes)
    full, rest = divmod(total, batch)
    if full == 0 and (last == "drop" or total == 0):
        with pytest.raises(DataError):
            list(iter_batches(make_chunks(sizes), batch, last))
        return
    batches = list(iter_batches(make_chunks(sizes), batch, last))
    expected_count = {
        "keep": math.ceil(total / batch),
        "pad": math.ceil(total / batch),
        "drop": full,
    }[last]
    assert len(batches) == expected_count
    assert [b.index for b in batches] == list(range(expected_count))
    real = []
    for i, b in enumerate(batches):
        is_last_partial = i == full and rest
        assert b.arrays["a"].shape[1:] == (2,) and b.arrays["b"].shape[1:] == (1, 1)
        if not is_last_partial:
            assert b.size == batch and b.num_real == batch
        elif last == "keep":
            assert b.size == rest and b.num_real == rest
        else:  # pad
            assert b.size == batch and b.num_real == rest and b.padded == batch - rest
            for name in ("a", "b"):
                pads = b.arrays[name][rest:]
                assert np.array_equal(
                    pads, np.repeat(b.arrays[name][rest - 1 : rest], len(pads), 0)
                )
        assert len(b.arrays["a"]) == len(b.arrays["b"]) == b.size
        real.append(b.arrays["a"][: b.num_real, 0])
        np.testing.assert_array_equal(
            b.arrays["b"][: b.num_real, 0, 0], -b.arrays["a"][: b.num_real, 0]
        )
    got = np.concatenate(real)
    n_real = total if last != "drop" else full * batch
    np.testing.assert_array_equal(got, np.arange(n_real, dtype=np.float32))


@settings(max_examples=200, deadline=None)
@given(sizes=chunk_sizes.filter(lambda s: sum(s) > 0), batch=batch_sizes)
def test_batches_are_produced_lazily(sizes, batch):
    """Memory bound: when a batch comes out, less than one batch + one chunk has been pulled
    beyond what was already handed out."""
    pulled = [0]
    last_chunk = [0]  # size of the last non-empty chunk pulled

    def stream():
        for chunk in make_chunks(sizes):
            pulled[0] += len(chunk["a"])
            if len(chunk["a"]):
                last_chunk[0] = len(chunk["a"])
            yield chunk

    handed = 0
    for b in iter_batches(stream(), batch, "keep"):
        handed += b.size
        assert pulled[0] - handed < batch + last_chunk[0]
        # the last chunk pulled was needed for this batch: nothing is read ahead
        assert pulled[0] - last_chunk[0] < handed


def test_aligned_chunks_are_passed_without_copy():
    chunks = make_chunks([4, 4, 8])
    batches = list(iter_batches(chunks, 4))
    assert np.shares_memory(batches[0].arrays["a"], chunks[0]["a"])
    assert np.shares_memory(batches[1].arrays["a"], chunks[1]["a"])
    assert np.shares_memory(batches[3].arrays["b"], chunks[2]["b"])  # a view of a bigger chunk


def test_accepts_a_source_object():
    class Src:
        spec = "src"

        def samples(self):
            return iter(make_chunks([3, 2]))

    batches = list(iter_batches(Src(), 2, "pad"))
    assert [(b.size, b.num_real) for b in batches] == [(2, 2), (2, 2), (2, 1)]
    assert isinstance(batches[0], Batch)


def test_drop_with_too_few_samples_names_source():
    class Src:
        spec = "calib.npz"

        def samples(self):
            return iter(make_chunks([3]))

    with pytest.raises(DataError, match=r"calib\.npz: only 3 samples, fewer than one batch of 8"):
        list(iter_batches(Src(), 8, "drop"))


@pytest.mark.parametrize("batch", [0, -1, 2.5, True])
def test_bad_batch_size(batch):
    with pytest.raises(ConfigError, match="batch size must be a positive integer"):
        list(iter_batches(make_chunks([2]), batch))


def test_bad_policy():
    with pytest.raises(ConfigError, match="keep, pad, drop"):
        list(iter_batches(make_chunks([2]), 2, "wrap"))


def test_chunks_that_cannot_share_a_batch_name_the_input():
    chunks = [
        {"a": np.zeros((3, 2), np.float32)},
        {"a": np.zeros((3, 5), np.float32)},
    ]
    with pytest.raises(
        DataError, match=r"input 'a': batch 0 mixes samples of shape \[2\] and \[5\]"
    ):
        list(iter_batches(chunks, 4))
    renamed = [{"a": np.zeros((3, 2), np.float32)}, {"b": np.zeros((3, 2), np.float32)}]
    with pytest.raises(DataError, match=r"batch 0: its chunks name different inputs"):
        list(iter_batches(renamed, 4))


def test_a_chunk_whose_inputs_disagree_on_the_sample_count_is_an_error():
    chunks = [
        {"a": np.zeros((4, 2)), "b": np.zeros((4, 2))},
        {"a": np.zeros((4, 2)), "b": np.zeros((3, 2))},
    ]
    with pytest.raises(
        DataError, match=r"chunk 1: its inputs hold different sample counts \('a' 4, 'b' 3\)"
    ):
        list(iter_batches(chunks, 4))

"""trtcalib.study: replay machinery, the batch-size effect on synthetic streams, result files.

Expected values are derived by hand from the `trt` policy's definition (range = first batch's
max |x|, doubled until a later batch fits; a value x goes to bin floor(x * n / R), x == R to the
last bin), never from running the study code.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from trtcalib.errors import ConfigError, DataError
from trtcalib.study import (
    CSV_COLUMNS,
    JSON_SCHEMA,
    StudySettings,
    feed_plan,
    order_permutation,
    parse_batches,
    rel_error,
    replay,
    store_from_arrays,
    study_store,
    write_results,
)
from trtcalib.study.results import csv_text

N_BINS = 2048


def max_last_stream() -> np.ndarray:
    """8 samples of 2048 values on the grid (i + 0.5) / 2048 in [0, 1); sample 0 holds 1.0
    exactly, the LAST sample holds 3.0: the maximum arrives last."""
    base = (np.arange(N_BINS, dtype=np.float64) + 0.5) / N_BINS
    data = np.tile(base, (8, 1))
    data[0, -1] = 1.0
    data[7, -1] = 3.0
    return data.astype(np.float32)


def run(data, calibrator="entropy", batches=(1, 8), orders=1, **kw):
    store = store_from_arrays({"x": data})
    try:
        settings = StudySettings(batch_sizes=tuple(batches), orders=orders, calibrator=calibrator)
        settings = StudySettings(**{**settings.__dict__, **kw})
        return study_store(store, settings)
    finally:
        store.close()


# ------------------------------------------------------------------ the batch-size effect


@pytest.mark.parametrize("replay_method", ["auto", "collector"])
def test_max_last_trt_depends_on_batch_size_exact_and_minmax_do_not(replay_method):
    data = max_last_stream()
    result = run(data, "entropy", batches=(1, 8), replay=replay_method)
    t = result.tensors[0]
    b1, ball = t.setting(1), t.setting(8)
    by = {(r.policy, r.batch_size): r for r in result.runs}
    # batch 1: range starts at 1.0 (sample 0), samples 1..6 (max < 1) fit, sample 7 (3.0)
    # doubles it twice 1 -> 2 -> 4 in ONE growth event
    assert by["trt", 1].range_max == 4.0
    assert by["trt", 1].growth_events == 1
    # batch = all: one batch, range = its max 3.0, no growth
    assert by["trt", 8].range_max == 3.0
    assert by["trt", 8].growth_events == 0
    # bins: at range 4 the [0,1) grid fills bins 0..511 (1.0 was put in the last bin while the
    # range was 1, the merges keep it in bin 2047 // 4 = 511), 3.0 lands in bin 1536
    assert by["trt", 1].empty_bin_fraction == (N_BINS - 513) / N_BINS
    # at range 3 the grid and 1.0 fill bins 0..682 (1.0 * 2048 / 3 = 682.7), 3.0 the last bin
    assert by["trt", 8].empty_bin_fraction == (N_BINS - 684) / N_BINS
    # the effect the study exists to show
    assert b1.amax[0] != ball.amax[0]

    # exact: independent of the batch size
    exact_b1 = run(data, "entropy", batches=(1,)).tensors[0].exact_amax
    exact_ball = run(data, "entropy", batches=(8,)).tensors[0].exact_amax
    assert exact_b1 == exact_ball == t.exact_amax
    # minmax: max |x| = 3.0 whatever the histogram did
    mm = run(data, "minmax", batches=(1, 8), replay=replay_method).tensors[0]
    assert mm.setting(1).amax == [3.0]
    assert mm.setting(8).amax == [3.0]
    assert mm.exact_amax == 3.0
    assert mm.sensitivity == 0.0


def test_exact_policy_is_the_same_in_every_order_and_batching():
    rng = np.random.default_rng(3)
    data = np.abs(rng.standard_normal((30, 50))).astype(np.float32)
    data[17, 3] = 9.0
    a = run(data, batches=(1, 3, 30), orders=3)
    b = run(data[::-1].copy(), batches=(2, 5), orders=2)
    assert a.tensors[0].exact_amax == b.tensors[0].exact_amax


# ------------------------------------------------------------------ replay machinery


def test_feed_plan_coalesces_only_batches_that_cannot_grow():
    # batch maxima (batch 1): 1, .5, 2, .3, .2, 3 -> records (new running max) at 0, 2, 5
    sample_max = np.array([1, 0.5, 2, 0.3, 0.2, 3])
    segments, n = feed_plan(sample_max, 1)
    assert n == 6
    assert segments == [(0, 1), (1, 2), (2, 3), (3, 5), (5, 6)]
    # batch 2: maxima 1, 2, 3 -> every batch is a record, nothing merged
    assert feed_plan(sample_max, 2) == ([(0, 2), (2, 4), (4, 6)], 3)
    # an equal max is not a record (it cannot exceed the range)
    assert feed_plan(np.array([2.0, 2.0, 2.0, 1.0]), 1) == ([(0, 1), (1, 4)], 4)
    assert feed_plan(sample_max, 1, coalesce=False)[0] == [(i, i + 1) for i in range(6)]


@pytest.mark.parametrize("growth", ["pow2", "square"])
def test_coalesced_replay_equals_batch_by_batch(growth):
    rng = np.random.default_rng(7)
    data = (rng.standard_normal((60, 5, 7)) * rng.uniform(0.2, 3, (60, 1, 1))).astype(np.float32)
    smax = np.abs(data).reshape(60, -1).max(axis=1)
    for order in (0, 1, 2):
        perm = order_permutation(60, order, seed=5)
        for b in (1, 3, 7, 60):
            fast, nb = replay(data, smax, perm, b, name="t", growth=growth, num_bins=256,
                              coalesce=True)  # fmt: skip
            slow, nb2 = replay(data, smax, perm, b, name="t", growth=growth, num_bins=256,
                               coalesce=False)  # fmt: skip
            assert nb == nb2 == math.ceil(60 / b)
            assert fast.range_max == slow.range_max
            assert fast.growth_events == slow.growth_events
            np.testing.assert_allclose(fast.counts, slow.counts, rtol=1e-12, atol=1e-9)


def test_order_zero_is_data_order_and_shuffles_are_seeded():
    assert order_permutation(5, 0, seed=1).tolist() == [0, 1, 2, 3, 4]
    a = order_permutation(100, 2, seed=1)
    assert sorted(a.tolist()) == list(range(100))
    assert a.tolist() == order_permutation(100, 2, seed=1).tolist()
    assert a.tolist() != order_permutation(100, 3, seed=1).tolist()
    assert a.tolist() != order_permutation(100, 2, seed=2).tolist()


def test_orders_change_trt_results_but_not_exact():
    # one large value in one sample: in data order it arrives last; shuffles move it
    data = np.tile((np.arange(64, dtype=np.float32) + 0.5) / 64, (40, 1))
    data[39, 0] = 5.0
    result = run(data, batches=(1,), orders=4, seed=0)
    rs = [r for r in result.runs if r.policy == "trt"]
    # data order: range 1 grows at the very last sample by doublings 63.5/64 -> ... >= 5
    first_max = 63.5 / 64
    assert rs[0].range_max == pytest.approx(first_max * 8)  # 0.99 * 2^3 = 7.94 >= 5
    assert rs[0].growth_events == 1


@pytest.mark.parametrize("replay_method", ["auto", "collector"])
def test_jobs_two_gives_the_same_results_as_jobs_one(replay_method):
    rng = np.random.default_rng(11)
    arrays = {
        "a": np.abs(rng.standard_normal((50, 20))).astype(np.float32),
        "b": rng.uniform(-2, 2, (50, 3, 4)).astype(np.float32),
    }
    arrays["a"][44, 2] = 12.0
    results = []
    for jobs in (1, 2):
        store = store_from_arrays(arrays)
        try:
            s = StudySettings(batch_sizes=(1, 5, 25), orders=3, jobs=jobs, replay=replay_method)
            results.append(study_store(store, s))
        finally:
            store.close()
    assert results[0].runs == results[1].runs
    assert csv_text(results[0]) == csv_text(results[1])


def test_a_tensor_with_the_same_values_is_not_replayed_but_gets_the_same_runs(monkeypatch):
    import sys

    replay_module = sys.modules["trtcalib.study.replay"]
    rng = np.random.default_rng(12)
    pool = rng.standard_normal((40, 2, 3)).astype(np.float32)
    arrays = {"pool": pool, "flat": pool.reshape(40, 6).copy(), "other": pool[:, ::-1].copy()}
    replayed = []
    real = replay_module.run_tensor
    monkeypatch.setattr(
        replay_module,
        "run_tensor",
        lambda store, name, *a: replayed.append(name) or real(store, name, *a),
    )
    store = store_from_arrays(arrays)
    try:
        s = StudySettings(batch_sizes=(1, 4, 40), orders=2)
        both = study_store(store, s)
        first = list(replayed)
        alone = study_store(store_from_arrays({"flat": arrays["flat"]}), s)
    finally:
        store.close()
    assert sorted(first) == ["other", "pool"]  # "other": the same values in another order
    done = []
    store = store_from_arrays(arrays)
    try:
        spec = s.replay_spec()
        replay_module.sweep(store, store.names, (1, 4), 2, spec, on_task_done=done.append)
    finally:
        store.close()
    assert sum(done) == 3 * (2 + 1)  # the progress bar's total: every tensor, copies included
    flat_runs = [r for r in both.runs if r.tensor == "flat"]
    assert flat_runs == alone.runs
    assert len(flat_runs) == len([r for r in both.runs if r.tensor == "pool"])


# ------------------------------------------------------------------ storage


def test_memmap_store_gives_the_same_results_and_cleans_up(tmp_path):
    rng = np.random.default_rng(2)
    arrays = {"x": rng.standard_normal((30, 4, 4)).astype(np.float32)}
    mem = store_from_arrays(arrays)
    disk = store_from_arrays(arrays, memory_limit=10)  # 10 bytes: must go to files
    assert mem.mode == "memory"
    assert disk.mode == "memmap" and "exceed" in disk.reason
    directory = disk.directory
    assert directory is not None and any(directory.iterdir())
    np.testing.assert_array_equal(np.asarray(disk.get("x")), arrays["x"])
    s = StudySettings(batch_sizes=(1, 6), orders=2)
    assert study_store(mem, s).runs == study_store(disk, s).runs
    disk.close()
    mem.close()
    assert not directory.exists()


def test_sample_max_ignores_nan_and_inf():
    x = np.ones((3, 4), dtype=np.float32)
    x[1, 0] = np.nan
    x[2, 1] = -np.inf
    x[0, 2] = -7.0
    store = store_from_arrays({"x": x})
    assert store.sample_max("x").tolist() == [7.0, 1.0, 1.0]
    assert store.all_finite("x") is False
    assert store.nonfinite_counts("x") == (1, 1)
    store.close()
    finite = store_from_arrays({"x": np.ones((2, 2), np.float32)})
    assert finite.nonfinite_counts("x") == (0, 0)
    finite.close()


# ------------------------------------------------------------------ inputs


@pytest.mark.parametrize(
    "text, expected", [("1,2,4", [1, 2, 4]), ("8, 1 ,8", [1, 8]), ("128", [128])]
)
def test_parse_batches(text, expected):
    assert parse_batches(text) == expected


@pytest.mark.parametrize("text", ["", "1,,2", "1,x", "0", "-4", "2.5", ","])
def test_parse_batches_rejects(text):
    with pytest.raises(ConfigError) as info:
        parse_batches(text)
    assert "--batches" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("cpus, jobs, limit_mb, per_tensor_mb", [
    (1, 1, 512, 512), (4, 1, 512, 128), (4, 2, 512, 256), (8, 1, 256, 64), (2, 1, 0, 64),
])  # fmt: skip
def test_sorted_copies_share_the_memory_limit(monkeypatch, cpus, jobs, limit_mb, per_tensor_mb):
    # each thread (or worker) sorts one tensor at a time: together they stay within the limit
    monkeypatch.setattr("os.cpu_count", lambda: cpus)
    spec = StudySettings(jobs=jobs, memory_limit=limit_mb << 20).replay_spec()
    assert spec.sort_limit == per_tensor_mb << 20
    assert spec.threads == (cpus if jobs == 1 else 1)


def test_settings_reject_bad_values():
    store = store_from_arrays({"x": np.ones((4, 2), np.float32)})
    for kw in ({"orders": 0}, {"jobs": 0}, {"growth": "cube"}, {"calibrator": "nope"},
               {"num_bins": 100}):  # fmt: skip
        with pytest.raises(ConfigError):
            study_store(store, StudySettings(**{"batch_sizes": (1,), **kw}))
    with pytest.raises(ConfigError, match="larger than the 4 samples"):
        study_store(store, StudySettings(batch_sizes=(1, 5)))
    store.close()
    with pytest.raises(DataError):
        study_store(store_from_arrays({}), StudySettings(batch_sizes=(1,)))


# ------------------------------------------------------------------ result files


def test_rel_error():
    assert rel_error(1.1, 1.0) == pytest.approx(0.1)
    assert rel_error(0.9, 1.0) == pytest.approx(-0.1)
    assert rel_error(0.0, 0.0) == 0.0
    assert rel_error(1.0, 0.0) == math.inf


def test_results_json_and_csv_schema(tmp_path):
    rng = np.random.default_rng(5)
    arrays = {
        "conv": np.abs(rng.standard_normal((12, 2, 3))).astype(np.float32),
        "fc": rng.standard_normal((12, 4)).astype(np.float32),
    }
    arrays["fc"][11, 0] = 20.0
    store = store_from_arrays(arrays)
    result = study_store(store, StudySettings(batch_sizes=(1, 4), orders=2, seed=3))
    store.close()
    paths = write_results(result, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["results.csv", "results.json"]

    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["schema"] == JSON_SCHEMA
    assert doc["batch_sizes"] == [1, 4] and doc["orders"] == 2 and doc["seed"] == 3
    assert doc["num_samples"] == 12 and doc["calibrator"] == "entropy"
    assert doc["params"] == {"bin0_as_bin1": 1.0}  # the default that ran, not only typed ones
    assert doc["histogram"] == "trt" and doc["reference_histogram"] == "exact"
    assert doc["storage"]["mode"] == "memory"
    assert [t["name"] for t in doc["tensors"]] == ["conv", "fc"]
    for t in doc["tensors"]:
        assert set(t) == {"name", "exact_amax", "exact_range_max", "exact_empty_bin_fraction",
                          "global_max", "sensitivity", "settings"}  # fmt: skip
        assert [s["batch_size"] for s in t["settings"]] == [1, 4]
        for s in t["settings"]:
            assert len(s["amax"]) == len(s["rel_error"]) == len(s["growth_events"]) == 2
            assert s["amax_min"] == min(s["amax"]) and s["amax_max"] == max(s["amax"])
            assert s["num_batches"] == 12 // s["batch_size"]
            for a, e in zip(s["amax"], s["rel_error"], strict=True):
                assert e == pytest.approx((a - t["exact_amax"]) / t["exact_amax"])
    fc = doc["tensors"][1]
    assert fc["global_max"] == 20.0

    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / "results.csv").read_text())))
    assert list(rows[0]) == CSV_COLUMNS
    assert len(rows) == 2 * 2 * 2  # tensors x batch sizes x orders
    for row in rows:
        exact = float(row["exact_amax"])
        assert float(row["rel_error"]) == pytest.approx((float(row["amax"]) - exact) / exact)
        assert int(row["num_batches"]) == 12 // int(row["batch_size"])
        assert 0.0 <= float(row["empty_bin_fraction"]) <= 1.0
    # nothing left behind by the atomic writes
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["results.csv", "results.json"]


def test_json_writes_infinite_values_as_strings(tmp_path):
    x = np.ones((4, 3), dtype=np.float32)
    x[3, 0] = np.inf
    store = store_from_arrays({"x": x})
    result = study_store(store, StudySettings(batch_sizes=(1, 2), orders=1, calibrator="minmax"))
    store.close()
    write_results(result, tmp_path)
    doc = json.loads((tmp_path / "results.json").read_text())  # strict JSON: no Infinity token
    assert doc["tensors"][0]["exact_amax"] == "inf"
    # an inf amax cannot go on a log-scaled plot: no tensor left, no PNG (matplotlib raised)
    from trtcalib.study.plots import pick_histogram_case, plot_amax_vs_batch

    assert result.most_sensitive(4, finite_only=True) == []
    assert plot_amax_vs_batch(result, tmp_path / "amax.png") is None
    assert pick_histogram_case(result) is None and not (tmp_path / "amax.png").exists()


def test_store_writer_unknown_count_and_spill():
    from trtcalib.study import StoreWriter

    rows = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    unknown = StoreWriter(None)
    unknown.add({"t": rows[:3]})
    unknown.add({"t": rows[3:]})
    store = unknown.finish()
    assert store.mode == "memmap" and "does not say" in store.reason
    np.testing.assert_array_equal(np.asarray(store.get("t")), rows)
    store.close()
    # a source that announced 4 samples but holds 6: moved to files, nothing lost
    liar = StoreWriter(4)
    liar.add({"t": rows[:3]})
    assert liar.mode == "memory"
    liar.add({"t": rows[3:]})
    store = liar.finish()
    assert store.mode == "memmap" and store.num_samples == 6
    np.testing.assert_array_equal(np.asarray(store.get("t")), rows)
    store.close()

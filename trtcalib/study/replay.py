"""Replaying captured activations through TensorCollectors in different batchings.

A run is one (tensor, batch size, order): the samples, permuted by the order, are cut into
batches of that size (the last one may be smaller) and fed to `TensorCollector(histogram="trt")`.

Why consecutive batches may be fed as one array ("coalescing"): the `trt` range policy only acts
when a batch's max |x| exceeds the current range, and the range always covers every value seen.
A batch whose max is not above the max of all earlier batches can therefore never grow the range;
a run of such batches adds exactly the same counts whether fed one by one or concatenated. The
first batch and every batch that sets a new running max are still fed on their own, so the
collector sees every range decision it would see batch by batch. This turns the 1000s of tiny
batch-1 calls into a handful, and is checked against batch-by-batch feeding in the tests.
Tensors holding inf/NaN are fed batch by batch (their range behaviour is the collector's call).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trtcalib.study.store import ActivationStore, StoreHandle

MAX_FEED_ELEMENTS = 1 << 22  # elements per collect() call: bounds the copy of a shuffled gather


@dataclass(frozen=True)
class RunResult:
    """What one replay produced for one tensor."""

    tensor: str
    policy: str  # "trt" | "exact"
    batch_size: int  # 0 for the exact reference (it does not depend on the batch size)
    order: int  # -1 for the exact reference
    amax: float
    range_max: float
    growth_events: int
    empty_bin_fraction: float
    num_batches: int
    global_max: float  # max finite |x| of the tensor (what minmax would give)


@dataclass(frozen=True)
class ReplaySpec:
    """Everything a worker needs besides the activations (picklable)."""

    algorithm: str = "entropy"
    params: tuple[tuple[str, float], ...] = ()
    growth: str = "pow2"
    num_bins: int = 2048
    seed: int = 0
    coalesce: bool = True
    method: str = "auto"  # "auto": sorted replay where it applies (pow2, finite); "collector"
    sort_limit: int = 1 << 30  # bytes of sorted values one tensor may take
    threads: int = 1  # threads for the amax computations of one tensor (sorted replay)


def same_value_tensors(store: ActivationStore, names: Sequence[str]) -> dict[str, str]:
    """{tensor: earlier tensor with identical values per sample, in memory order}.

    Replays only see values in sample order, so such tensors give identical runs. Checked on the
    data, not the graph: equal per-sample size and per-sample max first (cheap), then the bytes.
    """
    copies: dict[str, str] = {}
    originals: list[str] = []
    for name in names:
        data = store.get(name)
        for other in originals:
            ref = store.get(other)
            if (
                ref.dtype == data.dtype
                and ref.size == data.size
                and np.array_equal(store.sample_max(other), store.sample_max(name))
                and _equal_values(ref, data)
            ):
                copies[name] = other
                break
        else:
            originals.append(name)
    return copies


def _equal_values(a: np.ndarray, b: np.ndarray, chunk: int = 1 << 22) -> bool:
    """a and b hold equal values in memory order (compared in slices: no full-size mask)."""
    fa, fb = a.reshape(-1), b.reshape(-1)
    return all(
        np.array_equal(fa[i : i + chunk], fb[i : i + chunk]) for i in range(0, fa.size, chunk)
    )


def order_permutation(num_samples: int, order: int, seed: int) -> np.ndarray:
    """Order 0 is the data order; order k >= 1 a seeded shuffle, the same in every process."""
    if order == 0:
        return np.arange(num_samples)
    return np.random.default_rng([seed, order]).permutation(num_samples)


def feed_plan(
    sample_max: np.ndarray, batch_size: int, *, coalesce: bool = True
) -> tuple[list[tuple[int, int]], int]:
    """Segments [start, stop) of positions in the permuted order to pass to collect().

    `sample_max` is max |x| per sample, already in the permuted order. Returns the segments and
    the number of batches they stand for.
    """
    n = len(sample_max)
    starts = np.arange(0, n, batch_size)
    num_batches = len(starts)
    if not coalesce or num_batches <= 2:
        return [(int(s), int(min(s + batch_size, n))) for s in starts], num_batches
    batch_max = np.maximum.reduceat(sample_max, starts)
    before = np.maximum.accumulate(batch_max)[:-1]  # max of all batches before batch i (i >= 1)
    record = np.concatenate([[True], batch_max[1:] > before])
    segments: list[tuple[int, int]] = []
    run_start: int | None = None
    for i in range(num_batches):
        start, stop = int(starts[i]), int(min(starts[i] + batch_size, n))
        if record[i]:
            if run_start is not None:
                segments.append((run_start, start))
                run_start = None
            segments.append((start, stop))
        elif run_start is None:
            run_start = start
    if run_start is not None:
        segments.append((run_start, n))
    return segments, num_batches


def _split(segment: tuple[int, int], rows_per_feed: int) -> list[tuple[int, int]]:
    start, stop = segment
    return [(s, min(s + rows_per_feed, stop)) for s in range(start, stop, rows_per_feed)]


class _AmaxMemo:
    """compute_amax is a pure function of the histogram: identical histograms (common at large
    batch sizes, where the first batch already holds the max) are computed once."""

    def __init__(self, algorithm: str, params: dict[str, float]) -> None:
        self.algorithm = algorithm
        self.params = params
        self.cache: dict[tuple[bytes, float, float], float] = {}

    @staticmethod
    def key(stats: object) -> tuple[bytes, float, float]:
        counts = np.asarray(stats.counts)  # type: ignore[attr-defined]
        return (counts.tobytes(), float(stats.range_max), float(stats.amax))  # type: ignore[attr-defined]

    def __call__(self, stats: object) -> float:
        from trtcalib.stats import compute_amax

        key = self.key(stats)
        if key not in self.cache:
            self.cache[key] = float(compute_amax(stats, self.algorithm, **self.params))
        return self.cache[key]

    def prefill(self, many: Sequence[object], threads: int) -> None:
        """Compute the distinct histograms' amax on `threads` threads (the compiled KL sweep
        releases the GIL), so the later calls are lookups."""
        from concurrent.futures import ThreadPoolExecutor

        from trtcalib.stats import compute_amax

        todo: dict[tuple[bytes, float, float], object] = {}
        for stats in many:
            key = self.key(stats)
            if key not in self.cache:
                todo.setdefault(key, stats)
        if threads <= 1 or len(todo) < 2:
            for key, stats in todo.items():
                self.cache[key] = float(compute_amax(stats, self.algorithm, **self.params))
            return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            values = pool.map(
                lambda st: float(compute_amax(st, self.algorithm, **self.params)), todo.values()
            )
            self.cache.update(zip(todo.keys(), values, strict=True))


def replay(
    data: np.ndarray,
    sample_max: np.ndarray,
    perm: np.ndarray,
    batch_size: int,
    *,
    name: str,
    growth: str,
    num_bins: int,
    coalesce: bool,
    histogram: str = "trt",
):
    """Feed one TensorCollector with `data` permuted by `perm`, in batches of `batch_size`.

    Returns (TensorStats, number of batches).
    """
    from trtcalib.stats import TensorCollector

    kwargs = {"growth": growth} if histogram == "trt" else {}
    collector = TensorCollector(name, num_bins=num_bins, histogram=histogram, **kwargs)
    segments, num_batches = feed_plan(sample_max[perm], batch_size, coalesce=coalesce)
    per_sample = max(1, int(np.prod(data.shape[1:], dtype=np.int64)))
    rows_per_feed = max(batch_size, MAX_FEED_ELEMENTS // per_sample)
    identity = bool(perm[0] == 0 and np.all(perm[1:] > perm[:-1])) if len(perm) else True
    for segment in segments:
        for start, stop in _split(segment, rows_per_feed):
            # sorting the indices keeps memmap reads sequential; a histogram ignores order
            rows = slice(start, stop) if identity else np.sort(perm[start:stop])
            batch = np.asarray(data[rows])
            collector.collect(batch)
    return collector.result(), num_batches


def uses_sorted_replay(store: ActivationStore, name: str, spec: ReplaySpec) -> bool:
    """Sorted replay reproduces pow2 growth on finite data; it needs 8 bytes per element."""
    if spec.method == "collector" or spec.growth != "pow2" or not store.all_finite(name):
        return False
    return store.get(name).size * 8 <= spec.sort_limit


def run_tensor(
    store: ActivationStore,
    name: str,
    orders: Sequence[int],
    batch_sizes: Sequence[int],
    spec: ReplaySpec,
) -> list[RunResult]:
    """All batch sizes x `orders` of one tensor (order -1: the exact reference)."""
    memo = _AmaxMemo(spec.algorithm, dict(spec.params))
    sorted_orders = [k for k in orders if uses_sorted_replay(store, name, spec)]
    other = [k for k in orders if k not in sorted_orders]
    if not sorted_orders:
        return [r for k in other for r in run_tensor_order(store, name, k, batch_sizes, spec, memo)]
    from concurrent.futures import ThreadPoolExecutor

    from trtcalib.study.sorted_replay import SortedTensor

    store.sample_max(name)  # computed once, before threads share it
    collected: list[list[RunResult]] = []
    if other:
        # the sort and the collector runs both release the GIL: overlap them
        with ThreadPoolExecutor(max_workers=max(1, spec.threads)) as pool:
            sorting = pool.submit(SortedTensor, store.get(name))
            collected = [run_tensor_order(store, name, k, batch_sizes, spec, memo) for k in other]
            st = sorting.result()
    else:
        st = SortedTensor(store.get(name))
    if -1 in sorted_orders:
        exact = _sorted_exact(name, st, spec.num_bins)
        if exact is None:  # a range too small for the sorted path: replay it
            collected.append(run_tensor_order(store, name, -1, batch_sizes, spec, memo))
        else:
            collected.append([_result(name, "exact", 0, -1, exact, memo, 1, st.absmax)])
    runs = [(k, *run) for k in sorted_orders if k >= 0 for run in _sorted_stats(store, name, k,
            batch_sizes, spec, st)]  # fmt: skip
    memo.prefill([stats for _, _, _, stats in runs], spec.threads)
    out = [r for rs in collected for r in rs]
    out += [
        _result(name, "trt", b, k, stats, memo, num_batches, st.absmax)
        for k, b, num_batches, stats in runs
    ]
    return out


def _stats_from_sorted(name, st, policy, counts, range_max, growth, batches):
    """TensorStats of finite data known through its SortedTensor `st`."""
    from trtcalib.stats import TensorStats

    return TensorStats(
        name=name,
        histogram=policy,
        counts=counts,
        range_max=range_max,
        amax=st.absmax,
        min=st.min,
        max=st.max,
        moving_min=None,
        moving_max=None,
        count=st.count,
        nan_count=0,
        inf_count=0,
        growth_events=growth,
        batches=batches,
    )


def _sorted_exact(name: str, st, num_bins: int):
    """The exact policy's TensorStats from the sorted values (None: replay it instead)."""
    found = st.exact_histogram(num_bins)
    if found is None:
        return None
    counts, range_max = found
    return _stats_from_sorted(name, st, "exact", counts, range_max, 0, 1)


def _sorted_stats(store, name, order, batch_sizes, spec, st) -> list[tuple[int, int, object]]:
    from trtcalib.study.sorted_replay import run_pow2

    sample_max = store.sample_max(name)
    perm = order_permutation(store.num_samples, order, spec.seed)
    runs = []
    for b in batch_sizes:
        counts, range_max, growth, num_batches = run_pow2(st, sample_max, perm, b, spec.num_bins)
        stats = _stats_from_sorted(name, st, "trt", counts, range_max, growth, num_batches)
        runs.append((b, num_batches, stats))
    return runs


def run_tensor_order(
    store: ActivationStore,
    name: str,
    order: int,
    batch_sizes: Sequence[int],
    spec: ReplaySpec,
    memo: _AmaxMemo | None = None,
) -> list[RunResult]:
    """All batch sizes of one tensor in one order through real TensorCollectors (order -1: the
    exact reference)."""
    data = store.get(name)
    sample_max = store.sample_max(name)
    coalesce = spec.coalesce and store.all_finite(name)
    global_max = float(sample_max.max()) if len(sample_max) else 0.0
    memo = memo or _AmaxMemo(spec.algorithm, dict(spec.params))
    n = store.num_samples
    if order < 0:
        # the exact policy is independent of batching by contract: feed it in large chunks
        per_sample = max(1, int(np.prod(data.shape[1:], dtype=np.int64)))
        stats, _ = replay(
            data,
            sample_max,
            np.arange(n),
            max(1, MAX_FEED_ELEMENTS // per_sample),
            name=name,
            growth=spec.growth,
            num_bins=spec.num_bins,
            coalesce=False,
            histogram="exact",
        )
        return [_result(name, "exact", 0, -1, stats, memo, 1, global_max)]
    perm = order_permutation(n, order, spec.seed)
    out = []
    for b in batch_sizes:
        stats, num_batches = replay(
            data,
            sample_max,
            perm,
            b,
            name=name,
            growth=spec.growth,
            num_bins=spec.num_bins,
            coalesce=coalesce,
        )
        out.append(_result(name, "trt", b, order, stats, memo, num_batches, global_max))
    return out


def _result(
    name: str,
    policy: str,
    batch_size: int,
    order: int,
    stats: object,
    memo: _AmaxMemo,
    num_batches: int,
    global_max: float,
) -> RunResult:
    return RunResult(
        tensor=name,
        policy=policy,
        batch_size=batch_size,
        order=order,
        amax=memo(stats),
        range_max=float(stats.range_max),  # type: ignore[attr-defined]
        growth_events=int(stats.growth_events),  # type: ignore[attr-defined]
        empty_bin_fraction=float(stats.empty_bin_fraction),  # type: ignore[attr-defined]
        num_batches=num_batches,
        global_max=global_max,
    )


# --- worker-process side ---------------------------------------------------------------------

_worker_store: ActivationStore | None = None


def _worker_init(handle: StoreHandle) -> None:
    global _worker_store
    _worker_store = ActivationStore.from_handle(handle)


def _worker_task(
    args: tuple[str, tuple[int, ...], tuple[int, ...], ReplaySpec],
) -> list[RunResult]:
    assert _worker_store is not None
    name, orders, batch_sizes, spec = args
    return run_tensor(_worker_store, name, orders, batch_sizes, spec)


def sweep(
    store: ActivationStore,
    names: Sequence[str],
    batch_sizes: Sequence[int],
    orders: int,
    spec: ReplaySpec,
    *,
    jobs: int = 1,
    on_task_done=None,
) -> list[RunResult]:
    """Every tensor x order (all batch sizes) plus one exact run per tensor.

    A task is one tensor with all its orders (sorted replay sorts a tensor once), or one tensor
    and order on the collector path. Tasks are independent and seeded by (seed, order), so the
    results do not depend on `jobs`; they come back sorted by tensor (in `names` order), policy,
    batch size, order. A tensor holding the same values, sample by sample and in the same order,
    as an earlier one (Flatten, Reshape, Identity, Squeeze, Unsqueeze outputs) is not replayed:
    its runs are the earlier tensor's, renamed.
    """
    copies = same_value_tensors(store, names)
    tasks: list[tuple[str, tuple[int, ...]]] = []
    for name in names:
        if name in copies:
            continue
        if uses_sorted_replay(store, name, spec):
            tasks.append((name, (-1, *range(orders))))
        else:
            tasks.extend((name, (order,)) for order in (-1, *range(orders)))
    # the biggest tensors first, so the workers finish at about the same time
    sizes = {name: store.get(name).size for name in names}
    tasks.sort(key=lambda task: sizes[task[0]], reverse=True)
    results: list[RunResult] = []
    if on_task_done:
        for _ in copies:  # nothing to replay: done already
            on_task_done(orders + 1)
    if jobs <= 1 and spec.threads > 1 and len(tasks) > 1:
        # one process: tensors overlap on threads (sorting and the compiled histogram and KL
        # kernels release the GIL), as calibrate's collectors do
        from concurrent.futures import ThreadPoolExecutor, as_completed

        with ThreadPoolExecutor(max_workers=spec.threads) as pool:
            for name in {name for name, _ in tasks}:
                store.sample_max(name)  # fill the cache before threads share the store
            futures = {
                pool.submit(run_tensor, store, name, task_orders, batch_sizes, spec): len(
                    task_orders
                )
                for name, task_orders in tasks
            }
            for future in as_completed(futures):
                results.extend(future.result())
                if on_task_done:
                    on_task_done(futures[future])
    elif jobs <= 1:
        for name, task_orders in tasks:
            results.extend(run_tensor(store, name, task_orders, batch_sizes, spec))
            if on_task_done:
                on_task_done(len(task_orders))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: the parent may hold onnxruntime and progress-bar threads
        with ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(store.handle(),),
        ) as pool:
            futures = {
                pool.submit(_worker_task, (name, task_orders, tuple(batch_sizes), spec)): len(
                    task_orders
                )
                for name, task_orders in tasks
            }
            for future in as_completed(futures):
                results.extend(future.result())
                if on_task_done:
                    on_task_done(futures[future])
    by_tensor: dict[str, list[RunResult]] = {}
    for r in results:
        by_tensor.setdefault(r.tensor, []).append(r)
    for name, original in copies.items():
        results.extend(dataclasses.replace(r, tensor=name) for r in by_tensor[original])
    rank = {name: i for i, name in enumerate(names)}
    results.sort(key=lambda r: (rank[r.tensor], r.policy != "exact", r.batch_size, r.order))
    return results

"""The hot loops: a batch summary pass, a bin-filling pass, and the entropy KL sweep.

numba (when installed) fuses each pass into one loop over the data; without numba the same
functions run as numpy expressions. Both paths give bit-identical results: bin indices are
`floor(float64(|x|) * scale)` in both (tests compare them). Set TRTCALIB_NO_NUMBA=1 to force the
numpy path.

Per-batch cost of `TensorCollector.collect` (float32): numpy's SIMD min/max (all-finite batches;
an integer-bits kernel otherwise), then the fill. The `trt` fill counts into four int32
sub-histograms; the `exact` fill (count + smallest/largest |x| per fine bin) updates its float64
arrays in place, or for large float32 batches goes through a compact uint32 table indexed in
float32 (exact for its power-of-two scales). benchmarks/bench_stats.py measures them.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class BatchSummary(NamedTuple):
    nan_count: int
    inf_count: int
    finite_count: int
    min: float  # smallest finite value (+inf if none)
    max: float  # largest finite value (-inf if none)
    absmax: float  # largest finite |x| (0.0 if none)


def _summary_numpy(flat: np.ndarray) -> BatchSummary:
    nan = np.isnan(flat)
    nan_count = int(nan.sum())
    finite = np.isfinite(flat)
    finite_count = int(finite.sum())
    inf_count = flat.size - finite_count - nan_count
    if finite_count == 0:
        return BatchSummary(nan_count, inf_count, 0, np.inf, -np.inf, 0.0)
    vals = flat if finite_count == flat.size else flat[finite]
    lo = float(vals.min())
    hi = float(vals.max())
    return BatchSummary(nan_count, inf_count, finite_count, lo, hi, max(abs(lo), abs(hi)))


def _fill_numpy(flat: np.ndarray, counts: np.ndarray, scale: float) -> None:
    """counts[min(floor(|x| * scale), n-1)] += 1 for every finite x (float64 arithmetic)."""
    n = counts.shape[0]
    a = np.abs(flat.astype(np.float64))
    if not np.isfinite(a).all():
        a = a[np.isfinite(a)]
    a *= scale
    np.minimum(a, n - 1, out=a)
    counts += np.bincount(a.astype(np.intp), minlength=n)[:n]


def _fill_minmax_numpy(
    flat: np.ndarray, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: float
) -> None:
    n = counts.shape[0]
    a = np.abs(flat.astype(np.float64))
    if not np.isfinite(a).all():
        a = a[np.isfinite(a)]
    idx = np.minimum(a * scale, n - 1).astype(np.intp)
    counts += np.bincount(idx, minlength=n)[:n]
    np.minimum.at(lo, idx, a)  # slow (~20 ns/element) but only without numba
    np.maximum.at(hi, idx, a)


_NUMBA_HIGHLIGHT_SWITCH = "NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING"


def _import_numba():
    """Import numba with its coloured error messages switched off.

    With colorama installed, numba.core.errors wraps every message it builds (thousands per
    compile, most of them caught inside numba) in colorama's init()/deinit(), which replace
    sys.stdout and sys.stderr process-wide and then put back whatever they saw. Compiling in the
    warm-up thread or the worker pool while another thread swaps those streams (pytest's
    capture, rich's live display) leaves a stale stream behind, and later output goes astray:
    this made CI fail at random on a cold numba cache. numba reads the switch once, when
    numba.core.errors is first imported; a process that imported numba earlier keeps its choice.
    """
    if "numba.core.errors" in sys.modules:
        import numba

        return numba
    saved = os.environ.get(_NUMBA_HIGHLIGHT_SWITCH)
    os.environ[_NUMBA_HIGHLIGHT_SWITCH] = "1"
    try:
        import numba
    finally:  # leave the environment (and so child processes) as it was
        if saved is None:
            os.environ.pop(_NUMBA_HIGHLIGHT_SWITCH, None)
        else:
            os.environ[_NUMBA_HIGHLIGHT_SWITCH] = saved
    return numba


def _build_numba():
    # The kernels never call one another: a kernel that calls another jitted function through
    # this closure cannot be cached by numba, and would be compiled again in every process
    # (~1-1.5 s each, measured). Hence the repeated scatter loops.
    numba = _import_numba()

    @numba.njit(cache=True, nogil=True)
    def summary(flat):
        nan_count = 0
        inf_count = 0
        finite_count = 0
        lo = np.inf
        hi = -np.inf
        for i in range(flat.shape[0]):
            v = np.float64(flat[i])
            if v != v:
                nan_count += 1
            elif v - v != 0.0:  # +/-inf
                inf_count += 1
            else:
                finite_count += 1
                if v < lo:
                    lo = v
                if v > hi:
                    hi = v
        return nan_count, inf_count, finite_count, lo, hi

    @numba.njit(cache=True, nogil=True)
    def summary_f32(bits):
        # `summary` for float32 seen as int32 bits, in integer arithmetic so the loop
        # vectorises without fastmath: NaN/inf from the exponent bits, and min/max over keys
        # that order like the floats (negative values get their magnitude bits flipped).
        # -0.0 orders below +0.0 here while `summary` keeps the first of equal values, so the
        # caller reruns `summary` when both zeros occur and a zero is the min or max.
        nan_count = 0
        inf_count = 0
        kmin = np.int32(0x7FFFFFFF)
        kmax = np.int32(-0x80000000)
        pos_zero = False
        neg_zero = False
        for i in range(bits.shape[0]):
            b = bits[i]
            mag = b & np.int32(0x7FFFFFFF)
            nan_count += mag > np.int32(0x7F800000)
            inf_count += mag == np.int32(0x7F800000)
            bad = mag >= np.int32(0x7F800000)
            key = b ^ ((b >> np.int32(31)) & np.int32(0x7FFFFFFF))
            kmin = min(kmin, np.int32(0x7FFFFFFF) if bad else key)
            kmax = max(kmax, np.int32(-0x80000000) if bad else key)
            pos_zero |= b == np.int32(0)
            neg_zero |= b == np.int32(-0x80000000)
        return nan_count, inf_count, kmin, kmax, pos_zero, neg_zero

    @numba.njit(cache=True, nogil=True)
    def fill(flat, counts, scale, check, relu):
        # Two steps per chunk: bin indices (a vectorised loop), then increments spread over four
        # int32 sub-histograms (4 x 8 KiB at 2048 bins: they stay in L1, and repeated hits on one
        # bin do not wait on each other). Unsigned indices spare numba's negative-index fix-up.
        # With `check`, non-finite values get the dummy bin n and are dropped. The caller keeps
        # calls below 2**31 elements, so the int32 counts cannot overflow.
        n = counts.shape[0]
        last = np.float64(n - 1)
        chunk = 4096
        idx = np.empty(chunk, np.uint32)
        s0 = np.zeros(n + 1, np.int32)
        s1 = np.zeros(n + 1, np.int32)
        s2 = np.zeros(n + 1, np.int32)
        s3 = np.zeros(n + 1, np.int32)
        dummy = np.uint32(n)
        m = flat.shape[0]
        for start in range(0, m, chunk):
            size = min(chunk, m - start)
            blk = flat[start : start + size]
            if check:
                for i in range(size):
                    a = abs(np.float64(blk[i]))
                    idx[i] = np.uint32(min(a * scale, last)) if a - a == 0.0 else dummy
            elif relu:  # max(x, 0) of finite data: a ReLU output from its input
                for i in range(size):
                    idx[i] = np.uint32(min(max(np.float64(blk[i]), 0.0) * scale, last))
            else:
                for i in range(size):
                    idx[i] = np.uint32(min(abs(np.float64(blk[i])) * scale, last))
            j = 0
            while j + 4 <= size:
                s0[idx[j]] += 1
                s1[idx[j + 1]] += 1
                s2[idx[j + 2]] += 1
                s3[idx[j + 3]] += 1
                j += 4
            while j < size:
                s0[idx[j]] += 1
                j += 1
        for b in range(n):
            # integer sums below 2**53: exact in float64, so the grouping does not matter
            counts[b] += np.float64(np.int64(s0[b]) + s1[b] + s2[b] + s3[b])

    @numba.njit(cache=True, nogil=True)
    def fill_summary(flat, scale, n, limit):
        # `fill` for a float32 batch assumed finite and inside the range, counting into a new
        # array (the caller adds it only once the returned magnitude proves the assumption)
        # and returning the summary's magnitude and min / max keys from the index loop; a
        # chunk with magnitude bits above `limit` ends the call (see fill_table_summary).
        last = np.float64(n - 1)
        ibits = flat.view(np.int32)
        low7 = np.int32(0x7FFFFFFF)
        chunk = 4096
        idx = np.empty(chunk, np.uint32)
        s0 = np.zeros(n + 1, np.int32)
        s1 = np.zeros(n + 1, np.int32)
        s2 = np.zeros(n + 1, np.int32)
        s3 = np.zeros(n + 1, np.int32)
        dummy = np.uint32(n)
        top = np.uint32(0)
        kmin = np.int32(0x7FFFFFFF)
        kmax = np.int32(-0x80000000)
        m = flat.shape[0]
        for start in range(0, m, chunk):
            size = min(chunk, m - start)
            blk = flat[start : start + size]
            ib = ibits[start : start + size]
            lo = np.int32(0x7FFFFFFF)
            hi = np.int32(-0x80000000)
            for i in range(size):
                a = abs(np.float64(blk[i]))
                idx[i] = np.uint32(min(a * scale, last)) if a == a else dummy
                b = ib[i]
                key = np.int32(b ^ ((b >> 31) & low7))
                lo = min(lo, key)
                hi = max(hi, key)
            # the largest magnitude from the extreme keys (see fill_signed_summary)
            t = max(
                np.uint32(hi) if hi > 0 else np.uint32(0),
                np.uint32(-1 - lo) if lo < 0 else np.uint32(0),
            )
            top = max(top, t)
            if top > limit:
                return s0.astype(np.float64)[:n], top, kmin, kmax
            kmin = min(kmin, lo)
            kmax = max(kmax, hi)
            j = 0
            while j + 4 <= size:
                s0[idx[j]] += 1
                s1[idx[j + 1]] += 1
                s2[idx[j + 2]] += 1
                s3[idx[j + 3]] += 1
                j += 4
            while j < size:
                s0[idx[j]] += 1
                j += 1
        counts = np.empty(n)
        for b in range(n):
            counts[b] = np.float64(np.int64(s0[b]) + s1[b] + s2[b] + s3[b])
        return counts, top, kmin, kmax

    @numba.njit(cache=True, nogil=True)
    def fill_minmax(flat, counts, lo, hi, scale, check, relu):
        # The general case (float64 arithmetic, any float dtype and scale): indices per chunk,
        # then one pass updating the count, smallest and largest |x| of each bin.
        n = counts.shape[0]
        last = np.float64(n - 1)
        chunk = 4096
        idx = np.empty(chunk, np.uint32)
        dummy = np.uint32(n)
        m = flat.shape[0]
        for start in range(0, m, chunk):
            size = min(chunk, m - start)
            blk = flat[start : start + size]
            for i in range(size):
                a = max(np.float64(blk[i]), 0.0) if relu else abs(np.float64(blk[i]))
                if check and a - a != 0.0:  # NaN or inf
                    idx[i] = dummy
                else:
                    idx[i] = np.uint32(min(a * scale, last))
            for i in range(size):
                k = idx[i]
                if k != dummy:
                    a = max(np.float64(blk[i]), 0.0) if relu else abs(np.float64(blk[i]))
                    counts[k] += 1.0
                    if a < lo[k]:
                        lo[k] = a
                    if a > hi[k]:
                        hi[k] = a

    @numba.njit(cache=True, nogil=True)
    def fill_table_f32(flat, table, scale, check, relu):
        # float32 data and a power-of-two scale that is a normal float32: |x| * scale is exact
        # in float32 (or below 1 when it underflows, or clamped when it overflows), so the bin
        # indices equal the float64 ones, computed 16 lanes at a time. The per-bin state is one
        # uint32 table row (count, lo bits, hi bits, pad), prepared and merged by the caller:
        # one cache line per element instead of three float64 arrays; for finite |x| >= 0 the
        # float32 bit patterns order like the values. Zeros (relu halves, image borders) are
        # counted apart and returned, non-finite values dropped: both through eight rotating
        # dummy rows after the n real ones, so runs of them do not queue on one row.
        n = table.shape[0] // 4 - 8
        s32 = np.float32(scale)
        last = np.float32(n - 1)
        bits = flat.view(np.uint32)
        chunk = 4096
        idx = np.empty(chunk, np.uint32)
        zeros = 0
        m = flat.shape[0]
        for start in range(0, m, chunk):
            size = min(chunk, m - start)
            blk = flat[start : start + size]
            for i in range(size):
                # relu (finite data only): max(x, 0), so every x <= 0 is a zero (its bits,
                # read below for the bounds, then only touch a dummy row)
                a = max(blk[i], np.float32(0.0)) if relu else abs(blk[i])
                z = a == np.float32(0.0)
                zeros += z
                skip = z or (check and a - a != np.float32(0.0))
                k = np.uint32(n + (i & 7)) if skip else np.uint32(min(a * s32, last))
                idx[i] = np.uint32(4) * k
            for i in range(size):
                g = bits[start + i] & np.uint32(0x7FFFFFFF)
                r = idx[i]
                table[r] += np.uint32(1)
                if g < table[r + 1]:
                    table[r + 1] = g
                if g > table[r + 2]:
                    table[r + 2] = g
        return zeros

    @numba.njit(cache=True, nogil=True)
    def fill_table_summary(flat, begin, table, scale, limit):
        # `fill_table_f32` (all-finite path) from flat[begin:] that also returns what the batch
        # summary would have found -- zeros, the order-preserving min / max keys -- from its
        # vectorised index loop, so the data is not read a second time for min/max. A chunk
        # whose magnitude bits exceed `limit` (beyond the current range, or NaN / inf, whose
        # bits are above any finite limit) is not binned: the call returns its position and
        # magnitude, everything before it being in the table, so the caller can re-anchor (the
        # exact policy's state does not depend on how a batch is split) and go on from there.
        n = table.shape[0] // 4 - 8
        s32 = np.float32(scale)
        last = np.float32(n - 1)
        bits = flat.view(np.uint32)
        ibits = flat.view(np.int32)
        low7 = np.int32(0x7FFFFFFF)
        chunk = 4096
        idx = np.empty(chunk, np.uint32)
        zeros = 0
        kmin = np.int32(0x7FFFFFFF)
        kmax = np.int32(-0x80000000)
        m = flat.shape[0]
        for start in range(begin, m, chunk):
            size = min(chunk, m - start)
            blk = flat[start : start + size]
            ib = ibits[start : start + size]
            lo = np.int32(0x7FFFFFFF)
            hi = np.int32(-0x80000000)
            zc = 0
            for i in range(size):
                a = abs(blk[i])
                z = a == np.float32(0.0)
                zc += z
                # NaN to a dummy row too (it has no index; such a chunk is never binned)
                skip = z or a != a
                k = np.uint32(n + (i & 7)) if skip else np.uint32(min(a * s32, last))
                idx[i] = np.uint32(4) * k
                b = ib[i]
                key = np.int32(b ^ ((b >> 31) & low7))
                lo = min(lo, key)
                hi = max(hi, key)
            # the chunk's largest magnitude from its extreme keys (see fill_signed_summary);
            # NaN and inf show up as >= inf bits
            t = max(
                np.uint32(hi) if hi > 0 else np.uint32(0),
                np.uint32(-1 - lo) if lo < 0 else np.uint32(0),
            )
            if t > limit:
                return start, zeros, t, kmin, kmax
            zeros += zc
            kmin = min(kmin, lo)
            kmax = max(kmax, hi)
            for i in range(size):
                g = bits[start + i] & np.uint32(0x7FFFFFFF)
                r = idx[i]
                table[r] += np.uint32(1)
                if g < table[r + 1]:
                    table[r + 1] = g
                if g > table[r + 2]:
                    table[r + 2] = g
        return m, zeros, np.uint32(0), kmin, kmax

    @numba.njit(cache=True, nogil=True)
    def fill_signed_summary(flat, begin, table, spos, sneg, lpos, lneg):
        # `fill_table_summary` with the positive and the negative values apart: `table` is two
        # tables of n + 8 rows, positives then magnitudes of negatives, each half with its own
        # power-of-two scale and magnitude limit (a chunk beyond either limit stops the call,
        # as does NaN / inf). One read of a Relu's input then gives the |x| state (both halves)
        # and the Relu's (the positive half plus the zeros). Returns where it stopped, the
        # zeros, the chunk's top magnitude per sign and the keys. The tops come from the
        # chunk's smallest and largest key (key k < 0 is a negative of magnitude bits -1 - k),
        # not from per-element maxima: ~11% less time per value (measured).
        half = table.shape[0] // 2
        n = half // 4 - 8
        sp = np.float32(spos)
        sn = np.float32(sneg)
        last = np.float32(n - 1)
        bits = flat.view(np.uint32)
        ibits = flat.view(np.int32)
        low7 = np.int32(0x7FFFFFFF)
        chunk = 4096
        idx = np.empty(chunk, np.uint32)
        zeros = 0
        kmin = np.int32(0x7FFFFFFF)
        kmax = np.int32(-0x80000000)
        m = flat.shape[0]
        for start in range(begin, m, chunk):
            size = min(chunk, m - start)
            blk = flat[start : start + size]
            ib = ibits[start : start + size]
            lo = np.int32(0x7FFFFFFF)
            hi = np.int32(-0x80000000)
            zc = 0
            for i in range(size):
                b = ib[i]
                neg = b < 0
                a = abs(blk[i])
                z = a == np.float32(0.0)
                zc += z
                skip = z or a != a
                scale = sn if neg else sp
                k = np.uint32(n + (i & 7)) if skip else np.uint32(min(a * scale, last))
                idx[i] = np.uint32(4) * k + (np.uint32(half) if neg else np.uint32(0))
                key = np.int32(b ^ ((b >> 31) & low7))
                lo = min(lo, key)
                hi = max(hi, key)
            # NaN keys lie beyond the infinities: a NaN chunk is above a limit too
            tp = np.uint32(hi) if hi > 0 else np.uint32(0)
            tn = np.uint32(-1 - lo) if lo < 0 else np.uint32(0)
            if tp > lpos or tn > lneg:
                return start, zeros, tp, tn, kmin, kmax
            zeros += zc
            kmin = min(kmin, lo)
            kmax = max(kmax, hi)
            for i in range(size):
                g = bits[start + i] & np.uint32(0x7FFFFFFF)
                r = idx[i]
                table[r] += np.uint32(1)
                if g < table[r + 1]:
                    table[r + 1] = g
                if g > table[r + 2]:
                    table[r + 2] = g
        return m, zeros, np.uint32(0), np.uint32(0), kmin, kmax

    @numba.njit(cache=True, nogil=True)
    def merge_table(table, n, counts, lo, hi):
        # Add the rows of `fill_table_f32` into counts/lo/hi, then reset the rows it touched
        # (the dummies too) to (0, ~0, 0, 0), so the next call need not clear the whole table.
        # Hit rows are listed first: a compacting loop, which cannot be vectorised into the
        # gathers that made a plain loop over all rows slow (~10 ns per row).
        vals = table.view(np.float32)
        hits = np.empty(n + 8, np.intp)
        w = 0
        for k in range(n + 8):
            hits[w] = k
            w += table[4 * k] != 0
        for j in range(w):
            k = hits[j]
            r = 4 * k
            if k < n:
                counts[k] += np.float64(table[r])
                a = np.float64(vals[r + 1])
                if a < lo[k]:
                    lo[k] = a
                a = np.float64(vals[r + 2])
                if a > hi[k]:
                    hi[k] = a
            table[r] = 0
            table[r + 1] = np.uint32(0xFFFFFFFF)
            table[r + 2] = 0

    @numba.njit(cache=True, nogil=True)
    def kl_sweep(b, start, quant_bins):
        # Same sums as entropy.kl_divergences (see its docstring), candidate by candidate.
        # A group's term G ln(G / n_nz) depends only on its first bin and its size, and the
        # groups of candidate i all have size i // q or that + 1: so the terms are computed once
        # per (size, first bin) -- ~n * n/q logs instead of ~n * q, the cost of the sweep -- in
        # exactly the expression a per-group loop uses, and each candidate adds its q terms in
        # group order: the same float64 operations, so bit-identical KL values (tested against
        # the per-group loop). Rows are kept for two sizes at a time (slot = size & 1). Beyond
        # n = q * q bins the table would take more logs than the per-group loop, used there,
        # as for candidates i < q (groups of size 0, which the table has no row for).
        n = b.shape[0]
        csum = np.zeros(n + 1)
        cnz = np.zeros(n + 1, np.int64)
        cblogb = np.zeros(n + 1)
        for k in range(n):
            v = b[k]
            csum[k + 1] = csum[k] + v
            cnz[k + 1] = cnz[k] + (1 if v > 0 else 0)
            cblogb[k + 1] = cblogb[k] + (v * np.log(v) if v > 0 else 0.0)
        total = csum[n]
        t_log_t = total * np.log(total)
        out = np.empty(n + 1 - start)
        table = n <= quant_bins * quant_bins
        terms = np.empty(2 * n)
        slot_size = np.zeros(2, np.int64)
        edges = np.zeros(quant_bins + 1, np.int64)
        shift = 0  # q a power of two (128): group edges by a shift instead of a division
        while (1 << shift) < quant_bins:
            shift += 1
        pow2 = (1 << shift) == quant_bins
        for i in range(start, n + 1):
            s = csum[i]
            o = total - s
            if s <= 0.0 or (o > 0.0 and b[i - 1] == 0.0):
                out[i - start] = np.inf
                continue
            # group g is bins [ceil(g * i / q), ceil((g + 1) * i / q))
            if pow2:
                for g in range(1, quant_bins + 1):
                    edges[g] = (g * i + quant_bins - 1) >> shift
            else:
                for g in range(1, quant_bins + 1):
                    edges[g] = (g * i + quant_bins - 1) // quant_bins
            q = 0.0
            if table and i >= quant_bins:  # below q candidates, groups can be empty
                small = i // quant_bins
                for size in range(max(small, 1), small + 2):
                    slot = size & 1
                    if slot_size[slot] != size:
                        for lo in range(n - size + 1):
                            mass = csum[lo + size] - csum[lo]
                            nz = cnz[lo + size] - cnz[lo]
                            terms[slot * n + lo] = mass * np.log(mass / nz) if mass > 0.0 else 0.0
                        slot_size[slot] = size
                lo = 0
                for g in range(quant_bins):
                    hi = edges[g + 1]
                    q += terms[((hi - lo) & 1) * n + lo]
                    lo = hi
            else:
                for g in range(quant_bins):
                    mass = csum[edges[g + 1]] - csum[edges[g]]
                    nz = cnz[edges[g + 1]] - cnz[edges[g]]
                    if mass > 0.0:
                        q += mass * np.log(mass / nz)
            if o > 0.0:
                # the outliers go with the last group's level: G_last / n_last
                lo = edges[quant_bins - 1]
                g_last = csum[i] - csum[lo]
                nz = cnz[i] - cnz[lo]
                q += o * np.log(g_last / (nz if nz > 0 else 1))
            last = b[i - 1] + o
            p = cblogb[i - 1] + (last * np.log(last) if last > 0.0 else 0.0) - t_log_t
            out[i - start] = (p - q + total * np.log(s)) / total
        return out

    @numba.njit(cache=True, nogil=True)
    def qdq_errors(centres, weights, amaxes, total):
        out = np.empty(amaxes.shape[0])
        for c in range(amaxes.shape[0]):
            a = amaxes[c]
            if not a > 0.0:
                out[c] = np.inf
                continue
            s = a / 127.0
            err = 0.0
            for j in range(centres.shape[0]):
                x = centres[j]
                q = min(np.rint(x / s), 127.0) * s  # rint: half to even
                err += (x - q) * (x - q) * weights[j]
            out[c] = err / total
        return out

    return (
        summary,
        fill,
        kl_sweep,
        fill_minmax,
        qdq_errors,
        fill_table_f32,
        summary_f32,
        merge_table,
        fill_table_summary,
        fill_summary,
        fill_signed_summary,
    )


_numba_kernels = None
_numba_tried = False
_numba_lock = threading.Lock()
_warm_up_thread: threading.Thread | None = None
_warm_up_lock = threading.Lock()


def numba_kernels():
    """Compiled kernels (summary, fill, kl_sweep, fill_minmax, qdq_errors, fill_table_f32,
    summary_f32, merge_table, fill_table_summary, fill_summary, fill_signed_summary), or None
    without numba."""
    global _numba_kernels, _numba_tried
    if _numba_tried:
        return _numba_kernels
    with _numba_lock:  # a second thread waits for the build instead of seeing None
        if not _numba_tried:
            try:
                if os.environ.get("TRTCALIB_NO_NUMBA", "") in ("", "0"):
                    _numba_kernels = _build_numba()
            except ImportError:
                _numba_kernels = None
            except Exception as exc:  # a broken numba / llvmlite install: say so, go on
                warnings.warn(f"numba unusable ({exc}); using the numpy kernels", stacklevel=2)
                _numba_kernels = None
            finally:
                _numba_tried = True
    return _numba_kernels


def warm_up_in_background(notify: Callable[[str], None] | None = None) -> threading.Thread | None:
    """Import numba and load (or compile) the kernels for float32 data in a daemon thread.

    numba costs ~0.4 s to import and ~0.35 s more at the first call of a kernel in a process
    (~0.85 s where scipy is installed: numba then imports scipy.linalg to look for a BLAS),
    then ~10 ms per kernel (cache loads, measured): started before onnxruntime loads the model,
    that overlaps with the session start instead of delaying it and the first batch's
    statistics (a caller that needs the kernels meanwhile waits in `numba_kernels`). Calls with
    other types still compile on first use. Nothing is started without numba. One thread per
    process: a later call returns the first one's thread, so callers can start it as early as
    they know statistics will follow. `notify(message)` is called (from that thread) when the
    kernels are being compiled rather than loaded from numba's cache: the first run after an
    install spends ~10 s there, which a user should not mistake for a hang.
    """
    global _warm_up_thread
    if _numba_tried and _numba_kernels is None:
        return None
    if importlib.util.find_spec("numba") is None:
        return None
    with _warm_up_lock:
        if _warm_up_thread is not None:
            return _warm_up_thread
        _warm_up_thread = threading.Thread(
            target=_warm_up, args=(notify,), name="trtcalib-kernel-warm-up"
        )
        _warm_up_thread.daemon = True
        _warm_up_thread.start()
    return _warm_up_thread


def _warm_up(notify: Callable[[str], None] | None) -> None:
    """Call every float32 kernel once on tiny data (see `warm_up_in_background`)."""
    kernels = numba_kernels()
    if kernels is None:
        return
    x = np.linspace(-1.0, 1.0, 64, dtype=np.float32)
    n = 128
    scale = 64.0
    counts, lo, hi = np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf)
    table = np.zeros(4 * (n + 8), np.uint32)
    table[1::4] = 0xFFFFFFFF
    kernels[6](x.view(np.int32))
    # numba counts a signature it did not find in its on-disk cache (then compiled) as a miss
    if notify is not None and getattr(getattr(kernels[6], "stats", None), "cache_misses", None):
        notify(
            "numba is compiling trtcalib's statistics kernels: once after an install, ~10 s "
            "(later runs load them from its cache)"
        )
    kernels[1](x, counts, scale, False, False)
    kernels[3](x, counts, lo, hi, scale, False, False)
    kernels[5](x, table, scale, False, False)
    kernels[7](table, n, counts, lo, hi)
    kernels[8](x, 0, table, scale, np.uint32(0x3F800000))
    kernels[7](table, n, counts, lo, hi)
    kernels[9](x, scale, n, np.uint32(0x3F800000))
    signed = np.concatenate([table, table])
    kernels[10](x, 0, signed, scale, scale, np.uint32(0x3F800000), np.uint32(0x3F800000))
    kernels[7](signed[: table.shape[0]], n, counts, lo, hi)
    kernels[7](signed[table.shape[0] :], n, counts, lo, hi)
    kernels[2](np.arange(256, dtype=np.float64), 128, 128)


def _key_to_float32(key: int) -> float:
    """Invert the sortable-int32 key of `summary_f32` back to the float32 value."""
    bits = key ^ ((key >> 31) & 0x7FFFFFFF)
    return float(np.array(bits, dtype=np.int32).view(np.float32))


def batch_summary(flat: np.ndarray, *, use_numba: bool | None = None) -> BatchSummary:
    """NaN/inf/finite counts, finite min/max and max |x| of a 1-D float array."""
    # Fast path: numpy's SIMD min/max propagate NaN and keep inf, so two finite results
    # prove the batch is all finite (the common case) at ~0.4 ns/element.
    lo, hi = flat.min(), flat.max()
    if np.isfinite(lo) and np.isfinite(hi):
        lo, hi = float(lo), float(hi)
        return BatchSummary(0, 0, flat.size, lo, hi, max(abs(lo), abs(hi)))
    kernels = numba_kernels() if use_numba is not False else None
    if kernels is None or flat.dtype not in (np.float32, np.float64):
        return _summary_numpy(flat)
    if flat.dtype == np.float32 and flat.ndim == 1 and flat.flags.c_contiguous:
        nan_count, inf_count, kmin, kmax, pos_zero, neg_zero = kernels[6](flat.view(np.int32))
        finite_count = flat.size - nan_count - inf_count
        if finite_count == 0:
            return BatchSummary(nan_count, inf_count, 0, np.inf, -np.inf, 0.0)
        lo, hi = _key_to_float32(kmin), _key_to_float32(kmax)
        if not (pos_zero and neg_zero and (lo == 0.0 or hi == 0.0)):
            return BatchSummary(nan_count, inf_count, finite_count, lo, hi, max(abs(lo), abs(hi)))
    nan_count, inf_count, finite_count, lo, hi = kernels[0](flat)
    if finite_count == 0:
        return BatchSummary(nan_count, inf_count, 0, np.inf, -np.inf, 0.0)
    return BatchSummary(nan_count, inf_count, finite_count, lo, hi, max(abs(lo), abs(hi)))


def kl_sweep_numba(counts: np.ndarray, start: int, quant_bins: int) -> np.ndarray | None:
    """Compiled KL sweep, or None without numba (the caller then uses its numpy version)."""
    kernels = numba_kernels()
    if kernels is None:
        return None
    return kernels[2](np.ascontiguousarray(counts, dtype=np.float64), start, quant_bins)


# The compiled fills count in (u)int32 per call: longer arrays are fed in slices of this size.
_SLICE = 1 << 30


def _slices(flat: np.ndarray):
    for start in range(0, flat.shape[0], _SLICE):
        yield flat[start : start + _SLICE]


def fill_counts(
    flat: np.ndarray,
    counts: np.ndarray,
    scale: float,
    *,
    use_numba: bool | None = None,
    all_finite: bool = False,
    relu: bool = False,
) -> None:
    """Add every finite |x| of `flat` to float64 `counts`: bin = min(floor(|x|*scale), n-1).

    `all_finite=True` promises that `flat` holds no NaN/inf (the check is then skipped).
    `relu=True` bins max(x, 0) instead of |x|; it needs `all_finite`.
    """
    if relu and not all_finite:
        raise ValueError("relu binning needs finite data (all_finite=True)")
    kernels = numba_kernels() if use_numba is not False else None
    if kernels is None or flat.dtype not in (np.float32, np.float64):
        _fill_numpy(np.maximum(flat, flat.dtype.type(0)) if relu else flat, counts, scale)
    else:
        for part in _slices(flat):
            kernels[1](part, counts, float(scale), not all_finite, relu)


def _is_float32_power_of_two(scale: float) -> bool:
    mantissa, exponent = math.frexp(scale)  # scale = mantissa * 2**exponent
    return mantissa == 0.5 and -125 <= exponent <= 128  # 2**-126 .. 2**127: normal float32


def fill_counts_minmax(
    flat: np.ndarray,
    counts: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    scale: float,
    *,
    use_numba: bool | None = None,
    all_finite: bool = False,
    relu: bool = False,
) -> None:
    """`fill_counts` that also keeps the smallest (`lo`) and largest (`hi`) |x| of each bin,
    updated in place (the exact policy's float64 kernel; its large float32 batches go through
    a persistent row table instead: `fill_table_into`)."""
    if relu and not all_finite:
        raise ValueError("relu binning needs finite data (all_finite=True)")
    kernels = numba_kernels() if use_numba is not False else None
    if kernels is None or flat.dtype not in (np.float32, np.float64):
        values = np.maximum(flat, flat.dtype.type(0)) if relu else flat
        _fill_minmax_numpy(values, counts, lo, hi, scale)
        return
    for part in _slices(flat):
        kernels[3](part, counts, lo, hi, float(scale), not all_finite, relu)


def add_zeros(counts: np.ndarray, lo: np.ndarray, hi: np.ndarray, zeros: int) -> None:
    """The zeros a table kernel sent to its dummy rows: bin 0, whose bounds then include 0."""
    if zeros:
        counts[0] += zeros
        lo[0] = min(lo[0], 0.0)
        hi[0] = max(hi[0], 0.0)


def _magnitude(bits) -> float:
    """The float32 whose bits are `bits` (a kernel's top magnitude), as a Python float."""
    return float(np.array(bits, dtype=np.uint32).view(np.float32))


def _summary_of(size: int, top, kmin, kmax) -> BatchSummary:
    """The BatchSummary of a finite float32 batch from the kernels' magnitude and keys."""
    absmax = _magnitude(top)
    return BatchSummary(0, 0, size, _key_to_float32(int(kmin)), _key_to_float32(int(kmax)), absmax)


def _float32_bits_at_most(value: float) -> int:
    """Bits of the largest finite float32 <= value (value >= 0): a float32 magnitude is <= value
    exactly when its bits are <= these."""
    f = np.float32(min(value, float(np.finfo(np.float32).max)))
    if float(f) > value:  # rounded up: step down one
        f = np.nextafter(f, np.float32(0))
    return int(np.array(f).view(np.uint32))


def _foldable(flat: np.ndarray) -> bool:
    return flat.dtype == np.float32 and flat.ndim == 1 and flat.flags.c_contiguous


def fill_counts_summarized(
    flat: np.ndarray, counts: np.ndarray, scale: float, range_max: float
) -> BatchSummary | None:
    """`fill_counts` and `batch_summary` of a float32 batch in one pass over the data, for a
    batch that is finite with max |x| <= `range_max` (it cannot grow a `trt` range). None, with
    nothing added, otherwise or without the compiled kernels."""
    kernels = numba_kernels()
    if kernels is None or not _foldable(flat) or not 0 < flat.shape[0] < _SLICE:
        return None
    limit = _float32_bits_at_most(range_max)  # magnitudes above it would grow the range
    add, top, kmin, kmax = kernels[9](flat, float(scale), counts.shape[0], np.uint32(limit))
    if int(top) > limit:  # beyond the range, NaN or inf
        return None
    counts += add
    return _summary_of(flat.shape[0], top, kmin, kmax)


def new_table(num_fine_bins: int) -> np.ndarray:
    """An empty uint32 table of rows (count, lo bits, hi bits, pad) for `fill_table_run`:
    `num_fine_bins` rows and the 8 dummy rows of the table kernels."""
    table = np.zeros(4 * (num_fine_bins + 8), np.uint32)
    table[1::4] = 0xFFFFFFFF
    return table


def table_applies(flat: np.ndarray, scale: float) -> bool:
    """Whether `fill_table_run` may take this batch: compiled kernels, a contiguous float32
    array and a power-of-two scale that is a normal float32 (bins then exact in float32)."""
    return numba_kernels() is not None and _foldable(flat) and _is_float32_power_of_two(scale)


class TableRun(NamedTuple):
    """What `fill_table_run` binned: flat[begin:stop], all finite; `top` the magnitude of the
    chunk at `stop` when stop < len(flat) (beyond the range, or NaN / inf)."""

    stop: int
    zeros: int
    min: float  # smallest value binned (+inf if nothing was)
    max: float  # largest value binned (-inf if nothing was)
    top: float


def fill_table_run(
    flat: np.ndarray, begin: int, table: np.ndarray, scale: float, range_max: float | None
) -> TableRun:
    """Bin flat[begin:] (|x| < range_max, a power of two) into a persistent `table` and
    summarise it in the same pass, up to the first chunk that holds a value >= range_max,
    NaN or inf (see `fill_table_summary`); range None bins zeros only. Zeros go to the dummy
    rows: the caller adds them."""
    kernels = numba_kernels()
    limit = np.uint32(_limit_bits(range_max))
    stop, zeros, top, kmin, kmax = kernels[8](flat, begin, table, float(scale), limit)
    binned = stop > begin
    return TableRun(
        int(stop),
        int(zeros),
        _key_to_float32(int(kmin)) if binned else math.inf,
        _key_to_float32(int(kmax)) if binned else -math.inf,
        _magnitude(top),
    )


def fill_table_into(
    flat: np.ndarray, table: np.ndarray, scale: float, *, all_finite: bool, relu: bool = False
) -> int:
    """`fill_table_f32` of a whole batch into a persistent `table` (see `table_applies`);
    returns the zeros, which the caller adds to bin 0 (they went to the dummy rows)."""
    return int(numba_kernels()[5](flat, table, float(scale), not all_finite, relu))


class SignedRun(NamedTuple):
    """What `fill_signed_run` binned: flat[begin:stop], all finite; `top_pos` / `top_neg` the
    largest positive / negative magnitude of the chunk at `stop` when stop < len(flat) (one of
    them beyond its limit, or NaN / inf)."""

    stop: int
    zeros: int  # +0.0 and -0.0
    min: float  # smallest value binned (+inf if nothing was)
    max: float  # largest value binned (-inf if nothing was)
    top_pos: float
    top_neg: float


def signed_table(num_fine_bins: int) -> np.ndarray:
    """Two `new_table`s end to end (positives, then negatives) for `fill_signed_run`."""
    return np.concatenate([new_table(num_fine_bins), new_table(num_fine_bins)])


def _limit_bits(range_max: float | None) -> int:
    """Largest magnitude bits binned below range_max (a power of two); 0 bins nothing > 0."""
    if range_max is None:
        return 0
    with np.errstate(over="ignore"):  # a range beyond float32: inf bits, above every finite
        return int(np.array(range_max, dtype=np.float32).view(np.uint32)) - 1


def fill_signed_run(
    flat: np.ndarray,
    begin: int,
    table: np.ndarray,
    scales: tuple[float, float],
    ranges: tuple[float | None, float | None],
) -> SignedRun:
    """Bin flat[begin:] into a `signed_table`: x > 0 into the first half at scales[0], -x for
    x < 0 into the second at scales[1], zeros counted apart; up to the first chunk holding a
    positive >= ranges[0], a negative <= -ranges[1] (a range None takes no value of its sign),
    NaN or inf (see `fill_signed_summary`). Float32, contiguous, compiled kernels only."""
    kernels = numba_kernels()
    lpos, lneg = (np.uint32(_limit_bits(r)) for r in ranges)
    stop, zeros, tp, tn, kmin, kmax = kernels[10](
        flat, begin, table, float(scales[0]), float(scales[1]), lpos, lneg
    )
    binned = stop > begin
    return SignedRun(
        int(stop),
        int(zeros),
        _key_to_float32(int(kmin)) if binned else math.inf,
        _key_to_float32(int(kmax)) if binned else -math.inf,
        _magnitude(tp),
        _magnitude(tn),
    )


def merge_table_into(table: np.ndarray, counts: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Add a table's rows into counts/lo/hi and reset the table (see `merge_table`)."""
    numba_kernels()[7](table, counts.shape[0], counts, lo, hi)


def qdq_errors_numba(
    centres: np.ndarray, weights: np.ndarray, amaxes: np.ndarray, total: float
) -> np.ndarray | None:
    """Compiled quant-dequant errors, or None without numba (the caller uses numpy)."""
    kernels = numba_kernels()
    if kernels is None:
        return None
    return kernels[4](
        np.ascontiguousarray(centres, np.float64),
        np.ascontiguousarray(weights, np.float64),
        np.ascontiguousarray(amaxes, np.float64),
        float(total),
    )

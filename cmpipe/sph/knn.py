"""Exact k nearest neighbours of every particle: a k-d tree of leaf buckets, searched per bucket.

The tree splits the widest side of each node's bounding box at the median (quickselect) down to
leaves of at most :data:`LEAF_SIZE` particles. Each leaf then gathers its candidates once: every
particle inside the leaf's box widened by a radius ``r`` guessed from the leaf's own density
(``r = 1.3 (3 k V / 4 pi m)^(1/3)``, ``m`` particles in box volume ``V``). Each of the leaf's
particles selects its ``k`` nearest among those candidates; the answer is exact when the k-th
distance is at most ``r`` (every particle closer than ``r`` to a point of the box is a
candidate), otherwise ``r`` grows and the leaf is searched again for the particles that failed
(a quarter of the leaves at 1e6 clustered particles). Candidates are shared by the leaf's
particles and copied contiguously, so the distance loop streams through memory. Each particle
keeps the candidates within ``r`` without branches (~60 of ~430 at k = 32) and orders them by a
bucket sort on ``d^2 / r^2`` (monotone, so only the few inversions inside a bucket are left to an
insertion sort; a quickselect takes over where buckets are crowded, e.g. coincident points):
the same sort gives ``H`` and the ascending order in which the density is summed. Indices and
masses are in tree order, so neighbours' masses are near in memory. The tree's top
:data:`TOP_DEPTH` levels are split serially, the subtrees below in parallel. This is 2.7-5x
faster than scipy's cKDTree (per-particle tree walks; pykdtree is similar) on clustered sets
(1e5-4e6, ``bench/knn.py``).

Distances are computed as scipy's cKDTree does, ``sqrt((dx^2 + dy^2) + dz^2)`` in float64
without fused multiply-adds, so the k-th distances are bitwise equal to cKDTree's; neighbours are
returned in ascending distance (ties, which only coincident or equidistant particles have, in
the order found). Threads: numba's (``numba.set_num_threads``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .kernels import _C3D

__all__ = ["LEAF_SIZE", "build_tree", "knn_support_density"]

#: Most particles in a leaf bucket (measured optimum on the clustered set, ``bench/knn.py``).
LEAF_SIZE = 16
#: Search radius guess = GUESS_FACTOR x the radius holding k particles at the leaf's density.
GUESS_FACTOR = 1.3
#: Levels of the tree split serially; the 2^TOP_DEPTH subtrees below are built in parallel.
TOP_DEPTH = 3
#: Buckets of ``d^2 / r^2`` that order a particle's candidates inside the search radius.
N_BINS = 64
#: Most candidates the bucket sort handles; beyond, quickselect (:func:`_smallest`).
BIN_LIMIT = 256


@numba.njit(cache=True, nogil=True)
def _nth_element(perm, xyz, dim, lo, hi, nth):  # pragma: no cover - compiled
    """Reorder rows ``lo:hi`` of ``xyz`` (and ``perm`` with them) so that ``xyz[nth, dim]`` has
    rank ``nth - lo``, no larger value before it, no smaller after (Hoare quickselect)."""
    hi -= 1
    while lo < hi:
        a, b, c = xyz[lo, dim], xyz[(lo + hi) >> 1, dim], xyz[hi, dim]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while xyz[i, dim] < pivot:
                i += 1
            while xyz[j, dim] > pivot:
                j -= 1
            if i <= j:
                perm[i], perm[j] = perm[j], perm[i]
                for d in range(3):
                    xyz[i, d], xyz[j, d] = xyz[j, d], xyz[i, d]
                i += 1
                j -= 1
        if nth <= j:
            hi = j
        elif nth >= i:
            lo = i
        else:
            return


@numba.njit(cache=True, nogil=True)
def _split_nodes(perm, xyz, root, first, leaf_size, max_depth, start, end, child, box):  # pragma: no cover - compiled
    """Split node ``root`` (its ``start, end`` set) and its descendants, depth first, numbering
    new nodes from ``first``: bounds, then a median split of the widest side, down to
    ``leaf_size`` particles or a box of zero extent (a leaf, ``child = -1``). A splittable node
    ``max_depth`` levels below ``root`` is left for later (``child = -2``). Returns the next
    free node number."""
    stack, depth = np.empty(256, np.int64), np.empty(256, np.int64)
    stack[0], depth[0], top, n_nodes = root, 0, 1, first
    while top > 0:
        top -= 1
        nd, dep = stack[top], depth[top]
        s, e = start[nd], end[nd]
        lx, ly, lz, hx, hy, hz = np.inf, np.inf, np.inf, -np.inf, -np.inf, -np.inf
        for t in range(s, e):
            x, y, z = xyz[t, 0], xyz[t, 1], xyz[t, 2]
            lx, ly, lz, hx, hy, hz = min(lx, x), min(ly, y), min(lz, z), max(hx, x), max(hy, y), max(hz, z)
        box[nd, 0], box[nd, 1], box[nd, 2], box[nd, 3], box[nd, 4], box[nd, 5] = lx, ly, lz, hx, hy, hz
        dim = 0
        for d in range(1, 3):
            if box[nd, 3 + d] - box[nd, d] > box[nd, 3 + dim] - box[nd, dim]:
                dim = d
        child[nd] = -1
        if e - s <= leaf_size or box[nd, 3 + dim] == box[nd, dim]:
            continue
        if dep == max_depth:
            child[nd] = -2
            continue
        mid = (s + e) >> 1
        _nth_element(perm, xyz, dim, s, e, mid)
        child[nd] = n_nodes
        start[n_nodes], end[n_nodes], start[n_nodes + 1], end[n_nodes + 1] = s, mid, mid, e
        stack[top], stack[top + 1] = n_nodes + 1, n_nodes
        depth[top], depth[top + 1] = dep + 1, dep + 1
        top += 2
        n_nodes += 2
    return n_nodes


@numba.njit(parallel=True, cache=True, nogil=True)
def build_tree(pos, leaf_size):  # pragma: no cover - compiled
    """k-d tree of ``pos`` (N, 3): ``perm`` (tree order of the particles), ``xyz = pos[perm]``
    and per node ``start, end`` (its range of ``perm``), ``child`` (first child, the second
    follows; -1 at a leaf) and ``box`` (tight bounds lo xyz, hi xyz). Coincident particles stay
    in one leaf. The top :data:`TOP_DEPTH` levels are split serially; the subtrees below are
    built in parallel, each in its own slot of the node arrays, then packed."""
    n = pos.shape[0]
    perm = np.arange(n)
    xyz = pos.copy()
    cap = 4 * (n // max(leaf_size // 2, 1)) + 4 + 6 * (1 << TOP_DEPTH)  # + the top nodes' and slots' slack
    start, end = np.empty(cap, np.int64), np.empty(cap, np.int64)
    child, box = np.empty(cap, np.int64), np.empty((cap, 6))
    start[0], end[0] = 0, n
    n_top = _split_nodes(perm, xyz, 0, 1, leaf_size, TOP_DEPTH, start, end, child, box)
    roots = np.nonzero(child[:n_top] == -2)[0]
    slot = np.empty(roots.size + 1, np.int64)  # node numbers reserved for each subtree
    slot[0] = n_top
    for r in range(roots.size):
        slot[r + 1] = slot[r] + 4 * ((end[roots[r]] - start[roots[r]]) // max(leaf_size // 2, 1)) + 4
    used = np.empty(roots.size, np.int64)
    for r in numba.prange(roots.size):
        used[r] = _split_nodes(perm, xyz, roots[r], slot[r], leaf_size, 64, start, end, child, box) - slot[r]
    packed = np.empty(roots.size + 1, np.int64)
    packed[0] = n_top
    for r in range(roots.size):
        packed[r + 1] = packed[r] + used[r]
    n_nodes = packed[-1]
    out_start, out_end = np.empty(n_nodes, np.int64), np.empty(n_nodes, np.int64)
    out_child, out_box = np.empty(n_nodes, np.int64), np.empty((n_nodes, 6))
    for r in numba.prange(roots.size + 1):  # r = 0: the top nodes; r > 0: subtree r - 1
        lo, hi = (0, n_top) if r == 0 else (slot[r - 1], slot[r - 1] + used[r - 1])
        for nd in range(lo, hi):
            sub = r - 1 if r > 0 else np.searchsorted(roots, nd)  # whose slot the children are in
            to = nd if r == 0 else nd - slot[sub] + packed[sub]
            c = child[nd]
            out_child[to] = c - slot[sub] + packed[sub] if c >= n_top else c
            out_start[to], out_end[to] = start[nd], end[nd]
            for d in range(6):
                out_box[to, d] = box[nd, d]
    return perm, xyz, out_start, out_end, out_child, out_box


@numba.njit(cache=True, nogil=True)
def _gather(xyz, start, end, child, box, lo, hi, cand, hits):  # pragma: no cover - compiled
    """Particles inside the box ``[lo, hi]`` (3 each) into the rows x, y, z, index of ``cand``
    (4, capacity); ``hits`` is scratch for leaf ids. Both are grown as needed (outside the copy
    loop: an array that may be reallocated inside it slows the loop 10x). Returns them and the
    count."""
    n_hits, total = 0, 0
    stack = np.empty(128, np.int64)
    stack[0], top = 0, 1
    while top > 0:
        top -= 1
        nd = stack[top]
        if (box[nd, 0] > hi[0] or box[nd, 1] > hi[1] or box[nd, 2] > hi[2]
                or box[nd, 3] < lo[0] or box[nd, 4] < lo[1] or box[nd, 5] < lo[2]):
            continue
        if child[nd] >= 0:
            stack[top], stack[top + 1] = child[nd] + 1, child[nd]
            top += 2
            continue
        if n_hits == hits.size:
            more = np.empty(2 * hits.size, np.int64)
            more[:n_hits] = hits
            hits = more
        hits[n_hits] = nd
        n_hits += 1
        total += end[nd] - start[nd]
    if total > cand.shape[1]:
        cand = np.empty((4, 2 * total))
    return cand, hits, _copy_inside(xyz, start, end, hits[:n_hits], lo, hi, cand)


@numba.njit(cache=True, nogil=True)
def _copy_inside(xyz, start, end, hits, lo, hi, cand):  # pragma: no cover - compiled
    """Copy (without branches: every particle is written, the count advances for those inside)."""
    nc = 0
    lx, ly, lz, hx, hy, hz = lo[0], lo[1], lo[2], hi[0], hi[1], hi[2]
    for h in range(hits.size):
        for t in range(start[hits[h]], end[hits[h]]):
            x, y, z = xyz[t, 0], xyz[t, 1], xyz[t, 2]
            cand[0, nc], cand[1, nc], cand[2, nc], cand[3, nc] = x, y, z, t
            nc += (lx <= x) & (x <= hx) & (ly <= y) & (y <= hy) & (lz <= z) & (z <= hz)
    return nc


@numba.njit(cache=True, nogil=True)
def _within(qx, qy, qz, cand, nc, r2, buf_d, buf_j, tmp):  # pragma: no cover - compiled
    """Squared distances from ``(qx, qy, qz)`` to the first ``nc`` candidates (into ``tmp``, a
    loop the compiler vectorises); those at most ``r2`` into ``buf_d, buf_j`` (written without
    branches: every distance is stored, the count advances only for those inside; capacities
    at least ``nc``). Returns their count."""
    cx, cy, cz, cj = cand[0], cand[1], cand[2], cand[3]
    for c in range(nc):
        dx = qx - cx[c]
        dy = qy - cy[c]
        dz = qz - cz[c]
        tmp[c] = dx * dx + dy * dy + dz * dz
    nb = 0
    for c in range(nc):
        d2 = tmp[c]
        buf_d[nb] = d2
        buf_j[nb] = np.int64(cj[c])
        nb += d2 <= r2
    return nb


@numba.njit(cache=True, nogil=True, inline="always")
def _insertion_sort(keys, values, n):  # pragma: no cover - compiled
    """Sort ``keys[:n]`` ascending in place, moving ``values[:n]`` with them (stable)."""
    for t in range(1, n):
        v, w, u = keys[t], values[t], t
        while u > 0 and keys[u - 1] > v:
            keys[u], values[u] = keys[u - 1], values[u - 1]
            u -= 1
        keys[u], values[u] = v, w


@numba.njit(cache=True, nogil=True)
def _k_smallest_binned(buf_d, buf_j, nb, k, r2, out_d, out_j, cnt):  # pragma: no cover - compiled
    """The ``k`` smallest of ``buf_d[:nb]`` (all at most ``r2``), ascending, with ``buf_j``, into
    ``out_d, out_j`` (capacity ``nb``): a bucket sort on ``d2 / r2`` (:data:`N_BINS` bins,
    monotone in ``d2``, so the buckets are ordered) and an insertion sort of the buckets that
    hold the first ``k``. Returns False, leaving the outputs unordered, when those buckets hold
    more than :data:`BIN_LIMIT` (clustered or coincident points: the caller selects instead)."""
    scale = N_BINS / r2 if r2 > 0.0 else 0.0
    cnt[:] = 0
    for c in range(nb):
        cnt[min(np.int64(buf_d[c] * scale), N_BINS - 1)] += 1
    cum, b = 0, 0
    while cum + cnt[b] < k:
        cum += cnt[b]
        b += 1
    if cum + cnt[b] > BIN_LIMIT:
        return False
    total = 0
    for t in range(N_BINS):  # bucket offsets
        total, cnt[t] = total + cnt[t], total
    for c in range(nb):
        t = min(np.int64(buf_d[c] * scale), N_BINS - 1)
        out_d[cnt[t]], out_j[cnt[t]] = buf_d[c], buf_j[c]
        cnt[t] += 1
    _insertion_sort(out_d, out_j, cnt[b])  # only the inversions inside buckets remain
    return True


@numba.njit(cache=True, nogil=True)
def _smallest(buf_d, buf_j, nb, k, ordered):  # pragma: no cover - compiled
    """Move the ``k`` smallest of ``buf_d[:nb]`` (with ``buf_j``) to the front (quickselect);
    with ``ordered`` also sort those ascending. Returns the k-th smallest."""
    lo, hi, nth = 0, nb - 1, k - 1
    while lo < hi:
        a, b, c = buf_d[lo], buf_d[(lo + hi) >> 1], buf_d[hi]
        pivot = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while buf_d[i] < pivot:
                i += 1
            while buf_d[j] > pivot:
                j -= 1
            if i <= j:
                buf_d[i], buf_d[j] = buf_d[j], buf_d[i]
                buf_j[i], buf_j[j] = buf_j[j], buf_j[i]
                i += 1
                j -= 1
        if nth <= j:
            hi = j
        elif nth >= i:
            lo = i
        else:
            break
    kth = buf_d[k - 1]
    if ordered:
        _insertion_sort(buf_d, buf_j, k)
    return kth


@numba.njit(cache=True, nogil=True)
def _gather_density(i, bd2, bj, support, mass):  # pragma: no cover - compiled
    """``sum_{j != i} m_j W(r_ij, H)`` over the neighbours in ascending distance (cKDTree's
    order, so the same sum bit for bit)."""
    inv_h = 1.0 / support
    acc = 0.0
    for c in range(bd2.size):
        j = bj[c]
        q = math.sqrt(bd2[c]) * inv_h
        if j != i and q < 1.0:
            a = 1.0 - q
            acc += mass[j] * a * a * a * a * (1.0 + 4.0 * q)
    return _C3D * acc * inv_h * inv_h * inv_h


@numba.njit(cache=True, nogil=True)
def _leaf_radius(box, nd, m, k):  # pragma: no cover - compiled
    """First guess of the search radius of leaf ``nd`` holding ``m`` particles."""
    sx, sy, sz = box[nd, 3] - box[nd, 0], box[nd, 4] - box[nd, 1], box[nd, 5] - box[nd, 2]
    vol = sx * sy * sz
    if vol > 0.0:
        return GUESS_FACTOR * (3.0 * k * vol / (4.0 * math.pi * m)) ** (1.0 / 3.0)
    return max(sx, sy, sz)


@numba.njit(cache=True, nogil=True)
def _one(tt, xyz, cand, nc, r2, k, want_density, min_support, mass_t, kth, density, buf_d, buf_j, out_d, out_j,
         cnt):  # pragma: no cover - compiled
    """k-th distance (and density) of the particle at tree position ``tt`` from the first
    ``nc`` candidates; ``buf_d, buf_j, out_d, out_j`` (capacities >= ``nc``) and ``cnt`` are scratch.
    Returns the count within ``sqrt(r2)``; nothing is written when it is below ``k``."""
    nb = _within(xyz[tt, 0], xyz[tt, 1], xyz[tt, 2], cand, nc, r2, buf_d, buf_j, out_d)  # out_d: scratch here
    if nb < k:
        return nb
    if _k_smallest_binned(buf_d, buf_j, nb, k, r2, out_d, out_j, cnt):
        kth[tt] = math.sqrt(out_d[k - 1])
        if want_density:
            density[tt] = _gather_density(tt, out_d[:k], out_j[:k], max(kth[tt], min_support), mass_t)
    else:
        kth[tt] = math.sqrt(_smallest(buf_d, buf_j, nb, k, want_density))
        if want_density:
            density[tt] = _gather_density(tt, buf_d[:k], buf_j[:k], max(kth[tt], min_support), mass_t)
    return nb


@numba.njit(parallel=True, cache=True, nogil=True)
def knn_support_density(pos, k, mass, want_density, min_support, leaf_size):  # pragma: no cover - compiled
    """Distance to the k-th nearest neighbour (self counted) of every particle, and with
    ``want_density`` the gather density ``sum_{j != i} m_j W(r_ij, max(H_i, min_support))``.

    Returns ``(kth_distance, density, n_retries)``; ``density`` is empty without
    ``want_density``; ``n_retries`` counts leaves whose first radius was too small.
    """
    n = pos.shape[0]
    perm, xyz, start, end, child, box = build_tree(pos, leaf_size)
    leaves = np.nonzero(child < 0)[0]
    root_size = max(box[0, 3] - box[0, 0], box[0, 4] - box[0, 1], box[0, 5] - box[0, 2])
    r_min = root_size * 2.0**-30
    mass_t = mass[perm] if want_density else mass
    kth_t = np.empty(n)
    density_t = np.empty(n if want_density else 0)
    retries = np.zeros(leaves.size, np.int64)
    for li in numba.prange(leaves.size):
        nd = leaves[li]
        m = end[nd] - start[nd]
        r = _leaf_radius(box, nd, m, k)
        cand, hits = np.empty((4, 32 * m)), np.empty(64, np.int64)
        buf_d, buf_j, out_d, out_j = np.empty(32 * m), np.empty(32 * m, np.int64), np.empty(32 * m), np.empty(32 * m, np.int64)
        cnt = np.empty(N_BINS, np.int64)
        lo, hi = np.empty(3), np.empty(3)
        todo = np.arange(start[nd], end[nd])
        while todo.size:
            reach = r * (1.0 + 1e-9)
            for d in range(3):
                lo[d], hi[d] = box[nd, d] - reach, box[nd, 3 + d] + reach
            cand, hits, nc = _gather(xyz, start, end, child, box, lo, hi, cand, hits)
            if buf_d.size < nc:
                c2 = cand.shape[1]
                buf_d, buf_j, out_d, out_j = np.empty(c2), np.empty(c2, np.int64), np.empty(c2), np.empty(c2, np.int64)
            n_fail, grow = 0, 1.0
            for t in range(todo.size):
                nb = _one(todo[t], xyz, cand, nc, r * r, k, want_density, min_support, mass_t, kth_t, density_t,
                          buf_d, buf_j, out_d, out_j, cnt)
                if nb < k:  # fewer than k within r: the k-th neighbour is farther
                    todo[n_fail] = todo[t]
                    n_fail += 1
                    grow = max(grow, 2.0 if nb == 0 else 1.2 * (k / nb) ** (1.0 / 3.0))
            todo = todo[:n_fail]
            retries[li] |= n_fail > 0
            r = max(grow * r, r_min)
    kth = np.empty(n)
    density = np.empty(n if want_density else 0)
    for t in numba.prange(n):  # back to the input order
        kth[perm[t]] = kth_t[t]
        if want_density:
            density[perm[t]] = density_t[t]
    return kth, density, retries.sum()

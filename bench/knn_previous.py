"""The previous k-NN (cmpipe/sph/knn.py at 9c738f8, kept verbatim for bench/knn.py's same-run ratio).

Exact k nearest neighbours of every particle: a k-d tree of leaf buckets, searched per bucket.

The tree splits the widest side of each node's bounding box at the median (quickselect) down to
leaves of at most :data:`LEAF_SIZE` particles. Each leaf then gathers its candidates once: every
particle inside the leaf's box widened by a radius ``r`` guessed from the leaf's own density
(``r = 1.3 (3 k V / 4 pi m)^(1/3)``, ``m`` particles in box volume ``V``). Each of the leaf's
particles selects its ``k`` nearest among those candidates; the answer is exact when the k-th
distance is at most ``r`` (every particle closer than ``r`` to a point of the box is a
candidate), otherwise ``r`` doubles and the leaf is searched again (a few % of the leaves).
Candidates are shared by the leaf's particles and copied contiguously, so the distance loop
streams through memory; this is 3-6x faster than per-particle tree walks (scipy's cKDTree,
pykdtree) on clustered sets (``bench/knn.py``).

Distances are computed as scipy's cKDTree does, ``sqrt((dx^2 + dy^2) + dz^2)`` in float64
without fused multiply-adds, so the k-th distances are bitwise equal to cKDTree's; neighbours are
returned in ascending distance (ties, which only coincident or equidistant particles have, in
the order found). Threads: numba's (``numba.set_num_threads``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from cmpipe.sph.kernels import _C3D

__all__ = ["LEAF_SIZE", "build_tree", "knn_support_density"]

#: Most particles in a leaf bucket (measured optimum on the clustered set, ``bench/knn.py``).
LEAF_SIZE = 16
#: Search radius guess = GUESS_FACTOR x the radius holding k particles at the leaf's density.
GUESS_FACTOR = 1.3


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
def build_tree(pos, leaf_size):  # pragma: no cover - compiled
    """k-d tree of ``pos`` (N, 3): ``perm`` (tree order of the particles), ``xyz = pos[perm]``
    and per node ``start, end`` (its range of ``perm``), ``child`` (first child, the second
    follows; -1 at a leaf) and ``box`` (tight bounds lo xyz, hi xyz). Coincident particles stay
    in one leaf."""
    n = pos.shape[0]
    perm = np.arange(n)
    xyz = pos.copy()
    cap = 4 * (n // max(leaf_size // 2, 1)) + 4
    start = np.empty(cap, np.int64)
    end = np.empty(cap, np.int64)
    child = np.full(cap, -1, np.int64)
    box = np.empty((cap, 6))
    stack = np.empty(cap, np.int64)
    start[0], end[0], n_nodes, top = 0, n, 1, 1
    stack[0] = 0
    while top > 0:
        top -= 1
        nd = stack[top]
        s, e = start[nd], end[nd]
        for d in range(3):
            box[nd, d], box[nd, 3 + d] = np.inf, -np.inf
        for t in range(s, e):
            for d in range(3):
                v = xyz[t, d]
                box[nd, d] = min(box[nd, d], v)
                box[nd, 3 + d] = max(box[nd, 3 + d], v)
        dim = 0
        for d in range(1, 3):
            if box[nd, 3 + d] - box[nd, d] > box[nd, 3 + dim] - box[nd, dim]:
                dim = d
        if e - s <= leaf_size or box[nd, 3 + dim] == box[nd, dim]:
            continue
        mid = (s + e) >> 1
        _nth_element(perm, xyz, dim, s, e, mid)
        child[nd] = n_nodes
        start[n_nodes], end[n_nodes], start[n_nodes + 1], end[n_nodes + 1] = s, mid, mid, e
        stack[top], stack[top + 1] = n_nodes + 1, n_nodes
        top += 2
        n_nodes += 2
    return perm, xyz, start[:n_nodes].copy(), end[:n_nodes].copy(), child[:n_nodes].copy(), box[:n_nodes].copy()


@numba.njit(cache=True, nogil=True)
def _gather(xyz, perm, start, end, child, box, lo, hi, cand, hits):  # pragma: no cover - compiled
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
    return cand, hits, _copy_inside(xyz, perm, start, end, hits[:n_hits], lo, hi, cand)


@numba.njit(cache=True, nogil=True)
def _copy_inside(xyz, perm, start, end, hits, lo, hi, cand):  # pragma: no cover - compiled
    nc = 0
    for h in range(hits.size):
        for t in range(start[hits[h]], end[hits[h]]):
            x, y, z = xyz[t, 0], xyz[t, 1], xyz[t, 2]
            if lo[0] <= x <= hi[0] and lo[1] <= y <= hi[1] and lo[2] <= z <= hi[2]:
                cand[0, nc], cand[1, nc], cand[2, nc], cand[3, nc] = x, y, z, perm[t]
                nc += 1
    return nc


@numba.njit(cache=True, nogil=True)
def _within(qx, qy, qz, cand, nc, r2, d2, buf_d, buf_j):  # pragma: no cover - compiled
    """Squared distances from ``(qx, qy, qz)`` to the first ``nc`` candidates; those at most
    ``r2`` into ``buf_d, buf_j`` (grown as needed). Returns the buffers and their count."""
    cx, cy, cz = cand[0], cand[1], cand[2]
    for c in range(nc):
        dx = qx - cx[c]
        dy = qy - cy[c]
        dz = qz - cz[c]
        d2[c] = dx * dx + dy * dy + dz * dz
    nb = 0
    for c in range(nc):
        nb += d2[c] <= r2
    if nb > buf_d.size:  # grown once, outside the loops (an allocation inside one costs 25x)
        buf_d, buf_j = np.empty(2 * nb), np.empty(2 * nb, np.int64)
    nb = 0
    for c in range(nc):
        if d2[c] <= r2:
            buf_d[nb] = d2[c]
            buf_j[nb] = np.int64(cand[3, c])
            nb += 1
    return buf_d, buf_j, nb


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
        for t in range(1, k):
            v, w, u = buf_d[t], buf_j[t], t
            while u > 0 and buf_d[u - 1] > v:
                buf_d[u], buf_j[u] = buf_d[u - 1], buf_j[u - 1]
                u -= 1
            buf_d[u], buf_j[u] = v, w
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
    kth = np.empty(n)
    density = np.empty(n if want_density else 0)
    retries = np.zeros(leaves.size, np.int64)
    for li in numba.prange(leaves.size):
        nd = leaves[li]
        m = end[nd] - start[nd]
        r = _leaf_radius(box, nd, m, k)
        cand, hits = np.empty((4, 32 * m)), np.empty(64, np.int64)
        d2, buf_d, buf_j = np.empty(32 * m), np.empty(4 * k), np.empty(4 * k, np.int64)
        lo, hi = np.empty(3), np.empty(3)
        todo = np.arange(start[nd], end[nd])
        while todo.size:
            reach = r * (1.0 + 1e-9)
            for d in range(3):
                lo[d], hi[d] = box[nd, d] - reach, box[nd, 3 + d] + reach
            cand, hits, nc = _gather(xyz, perm, start, end, child, box, lo, hi, cand, hits)
            if d2.size < nc:
                d2 = np.empty(cand.shape[1])
            n_fail, grow = 0, 1.0
            for t in range(todo.size):
                tt = todo[t]
                i = perm[tt]
                buf_d, buf_j, nb = _within(xyz[tt, 0], xyz[tt, 1], xyz[tt, 2], cand, nc, r * r, d2, buf_d, buf_j)
                if nb < k:  # fewer than k within r: the k-th neighbour is farther
                    todo[n_fail] = tt
                    n_fail += 1
                    grow = max(grow, 2.0 if nb == 0 else 1.2 * (k / nb) ** (1.0 / 3.0))
                    continue
                kth[i] = math.sqrt(_smallest(buf_d, buf_j, nb, k, want_density))
                if want_density:
                    density[i] = _gather_density(i, buf_d[:k], buf_j[:k], max(kth[i], min_support), mass)
            todo = todo[:n_fail]
            retries[li] += n_fail > 0
            r = max(grow * r, r_min)
    return kth, density, retries.sum()

"""Which particles lie within a radius of each of a few centres: the gas that the mock's
companions (the merger secondary and the neighbour halos) heat, :func:`ball_members`.

A uniform grid of cells (counting sort, O(N)) replaces the k-d tree this used to build per halo
(scipy's cKDTree, 0.05-0.15 s a halo at m_pair = 1e9 for a few hundred small balls). The
membership test is cKDTree's: ``(dx^2 + dy^2) + dz^2 <= r^2`` in float64, without fused
multiply-adds, so the members are those of ``cKDTree.query_ball_point`` (the tests' oracle,
``tests/test_mock.py``), in ascending order.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["ball_members"]

#: Most cells along the widest side of the particles' bounding box.
GRID_CELLS = 64


@numba.njit(cache=True, nogil=True)
def _cells(pos, lo, inv_cell, shape):  # pragma: no cover - compiled
    """Counting sort of the particles by cell: ``(start, order)``, the particles of cell ``c``
    being ``order[start[c]:start[c + 1]]`` in ascending index."""
    n = pos.shape[0]
    nx, ny, nz = shape[0], shape[1], shape[2]
    cell = np.empty(n, np.int64)
    start = np.zeros(nx * ny * nz + 1, np.int64)
    for i in range(n):
        ix = min(max(int((pos[i, 0] - lo[0]) * inv_cell), 0), nx - 1)
        iy = min(max(int((pos[i, 1] - lo[1]) * inv_cell), 0), ny - 1)
        iz = min(max(int((pos[i, 2] - lo[2]) * inv_cell), 0), nz - 1)
        c = (ix * ny + iy) * nz + iz
        cell[i] = c
        start[c + 1] += 1
    for c in range(nx * ny * nz):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    for i in range(n):
        order[fill[cell[i]]] = i
        fill[cell[i]] += 1
    return start, order


@numba.njit(cache=True, nogil=True)
def _scan(pos, start, order, lo, inv_cell, shape, centre, radius, out, n_out):  # pragma: no cover - compiled
    """Members of one ball (``out`` None-like when ``n_out < 0``: count only). The cell range is
    widened by one cell each side, so rounding in the cell index never drops a member."""
    cx, cy, cz = centre[0], centre[1], centre[2]
    r2 = radius * radius
    rng = np.empty((3, 2), np.int64)
    for d in range(3):
        rng[d, 0] = min(max(int(np.floor((centre[d] - radius - lo[d]) * inv_cell)) - 1, 0), shape[d] - 1)
        rng[d, 1] = min(max(int(np.floor((centre[d] + radius - lo[d]) * inv_cell)) + 1, 0), shape[d] - 1)
    count = 0
    for ix in range(rng[0, 0], rng[0, 1] + 1):
        for iy in range(rng[1, 0], rng[1, 1] + 1):
            base = (ix * shape[1] + iy) * shape[2]
            for c in range(base + rng[2, 0], base + rng[2, 1] + 1):
                for t in range(start[c], start[c + 1]):
                    j = order[t]
                    dx = pos[j, 0] - cx
                    dy = pos[j, 1] - cy
                    dz = pos[j, 2] - cz
                    if (dx * dx + dy * dy) + dz * dz <= r2:
                        if n_out >= 0:
                            out[n_out + count] = j
                        count += 1
    return count


@numba.njit(cache=True, nogil=True)
def _members(pos, centres, radii, lo, inv_cell, shape):  # pragma: no cover - compiled
    start, order = _cells(pos, lo, inv_cell, shape)
    m = centres.shape[0]
    offsets = np.zeros(m + 1, np.int64)
    dummy = np.empty(0, np.int64)
    for b in range(m):
        offsets[b + 1] = offsets[b] + _scan(pos, start, order, lo, inv_cell, shape, centres[b], radii[b], dummy, -1)
    idx = np.empty(offsets[m], np.int64)
    for b in range(m):
        _scan(pos, start, order, lo, inv_cell, shape, centres[b], radii[b], idx, offsets[b])
        idx[offsets[b]:offsets[b + 1]] = np.sort(idx[offsets[b]:offsets[b + 1]])
    return offsets, idx


def ball_members(pos_mpc: np.ndarray, centres_mpc: np.ndarray, radii_mpc: np.ndarray) -> list[np.ndarray]:
    """Indices of the particles within each ball, as ``cKDTree(pos).query_ball_point(c, r)``.

    Parameters
    ----------
    pos_mpc : (N, 3) float64
        Particle positions [Mpc].
    centres_mpc : (M, 3) float64
        Ball centres [Mpc].
    radii_mpc : (M,) float64
        Ball radii [Mpc] (a particle at distance exactly ``r`` is a member).

    Returns
    -------
    list of M (n_b,) int64 arrays
        Each ball's members, ascending.
    """
    pos = np.ascontiguousarray(pos_mpc, dtype=np.float64)
    centres = np.ascontiguousarray(np.reshape(centres_mpc, (-1, 3)), dtype=np.float64)
    radii = np.ascontiguousarray(radii_mpc, dtype=np.float64).reshape(-1)
    if radii.shape[0] != centres.shape[0]:
        raise ValueError(f"{centres.shape[0]} centres but {radii.shape[0]} radii")
    if pos.shape[0] == 0 or centres.shape[0] == 0:
        return [np.zeros(0, np.int64) for _ in range(centres.shape[0])]
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    side = float(np.max(hi - lo))
    cell = side / GRID_CELLS if side > 0 else 1.0
    shape = np.maximum(np.ceil((hi - lo) / cell).astype(np.int64), 1)
    offsets, idx = _members(pos, centres, radii, lo, 1.0 / cell, shape)
    return [idx[offsets[b]:offsets[b + 1]] for b in range(centres.shape[0])]

"""Smoothing lengths and SPH densities from the k nearest neighbours.

A particle's smoothing length is the kernel's support radius ``H_i``: the distance to its
``k``-th nearest neighbour, counting the particle itself as the first (so the sphere of radius
``H_i`` holds ``k`` particles, the last on its boundary with zero weight). Densities are the
gather estimate ``rho_i = sum_{j != i} m_j W(|r_i - r_j|, H_i)`` over those neighbours
(Wendland C2), *without* the particle's own ``m_i W(0, H_i)`` term. For Poisson-sampled
particles (the mock clusters) that estimate is unbiased: given ``H_i`` the ``k - 2`` others
inside are uniform in the sphere, so ``E[rho_i] = m (k - 2) E[1 / V_k] = rho`` for a uniform
density, whereas the self term adds ``14 / (k - 2)`` of it (+47 % at k = 32, measured). Glass-like
simulation particles carry their own ``Density``, which the reader keeps.

The search uses scipy's cKDTree on all cores and queries in the tree's own spatial order
(``pos[tree.indices]``), which keeps each worker's queries in cache (3x faster than random
order on 4e6 particles, identical results; ``../shared/NOTES-SPH.md``). Smoothing lengths do not
change under rotation: compute them once per halo and reuse them for every sightline.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.spatial import cKDTree

from .kernels import _C3D

__all__ = ["MIN_SUPPORT_MPC", "knn_volume_density", "smoothing_lengths", "smoothing_lengths_and_density"]

#: Floor on H [Mpc], so coincident particles never give a zero-size kernel.
MIN_SUPPORT_MPC = 1e-6
#: Particles queried per call: bounds the (chunk, k) distance and index arrays in memory.
_QUERY_CHUNK = 500_000


def _effective_k(n_particles: int, n_neighbours: int) -> int:
    if n_neighbours < 2:
        raise ValueError(f"n_neighbours must be >= 2, got {n_neighbours}")
    if n_particles < 2:
        raise ValueError(f"smoothing lengths need at least 2 particles, got {n_particles}")
    return min(n_neighbours, n_particles)


def _workers(num_threads: int) -> int:
    return -1 if num_threads <= 0 else num_threads


@numba.njit(parallel=True, cache=True, nogil=True)
def _gather_density(dist, nbr, idx, support, mass, out):  # pragma: no cover - compiled
    """``out[idx[r]] = sum_j m_nbr W(dist, H)`` over row r's neighbours, the particle itself
    (which the query returns among them, at distance 0) excluded."""
    for r in numba.prange(dist.shape[0]):
        i = idx[r]
        inv_h = 1.0 / support[r]
        acc = 0.0
        for c in range(dist.shape[1]):
            j = nbr[r, c]
            q = dist[r, c] * inv_h
            if j != i and q < 1.0:
                a = 1.0 - q
                acc += mass[j] * a * a * a * a * (1.0 + 4.0 * q)
        out[i] = _C3D * acc * inv_h * inv_h * inv_h


def _tree_order_chunks(pos: np.ndarray) -> tuple[cKDTree, list[np.ndarray]]:
    """The tree of ``pos`` and its particle indices in the tree's spatial order, in chunks of
    at most ``_QUERY_CHUNK`` (querying in this order keeps each worker's walk in cache)."""
    tree = cKDTree(pos)
    order = tree.indices
    return tree, [order[start : start + _QUERY_CHUNK] for start in range(0, order.size, _QUERY_CHUNK)]


def smoothing_lengths(pos_mpc: np.ndarray, n_neighbours: int = 32, num_threads: int = 0) -> np.ndarray:
    """Kernel support radius of every particle from its ``n_neighbours`` nearest neighbours.

    Parameters
    ----------
    pos_mpc : (N, 3) float64
        Particle positions [Mpc].
    n_neighbours : int
        Neighbours inside the support, the particle itself included (capped at N).
    num_threads : int
        cKDTree query workers; 0 uses every core.

    Returns
    -------
    (N,) float64
        ``H`` [Mpc], at least :data:`MIN_SUPPORT_MPC`.
    """
    pos = np.ascontiguousarray(pos_mpc, dtype=np.float64)
    k = _effective_k(pos.shape[0], n_neighbours)
    tree, chunks = _tree_order_chunks(pos)
    support = np.empty(pos.shape[0])
    for idx in chunks:
        dist, _ = tree.query(pos[idx], k=[k], workers=_workers(num_threads))
        support[idx] = dist[:, 0]
    return np.maximum(support, MIN_SUPPORT_MPC)


def smoothing_lengths_and_density(
    pos_mpc: np.ndarray, mass_msun: np.ndarray, n_neighbours: int = 32, num_threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Support radii and SPH (gather) densities of every particle.

    Parameters
    ----------
    pos_mpc : (N, 3) float64
        Particle positions [Mpc].
    mass_msun : (N,) float64
        Particle masses [Msun].
    n_neighbours : int
        Neighbours inside the support, the particle itself included (capped at N).
    num_threads : int
        cKDTree query workers; 0 uses every core.

    Returns
    -------
    support_mpc : (N,) float64
        ``H`` [Mpc].
    density_msun_mpc3 : (N,) float64
        ``rho_i = sum_{j != i} m_j W(r_ij, H_i)`` [Msun Mpc^-3].
    """
    pos = np.ascontiguousarray(pos_mpc, dtype=np.float64)
    mass = np.asarray(mass_msun, dtype=np.float64)
    k = _effective_k(pos.shape[0], n_neighbours)
    tree, chunks = _tree_order_chunks(pos)
    support = np.empty(pos.shape[0])
    density = np.empty(pos.shape[0])
    for idx in chunks:
        dist, nbr = tree.query(pos[idx], k=k, workers=_workers(num_threads))
        h = np.maximum(dist[:, -1], MIN_SUPPORT_MPC)
        support[idx] = h
        _gather_density(dist, nbr, idx, h, mass, density)
    return support, density


def knn_volume_density(support_mpc: np.ndarray, mass_msun: np.ndarray | float, n_neighbours: int) -> np.ndarray:
    """Density whose inverse is an unbiased particle volume: ``(k - 1) m / (4 pi H^3 / 3)``.

    For Poisson-sampled particles the sphere of radius ``H`` (the distance to the k-th nearest
    neighbour, self counted) holds ``k - 1`` others, so its volume is Gamma(k - 1, n)
    distributed with mean ``(k - 1) / n``: ``V = m / rho = 4 pi H^3 / (3 (k - 1))`` then has
    mean ``1 / n`` exactly. The gather density's inverse is biased high by its noise (Jensen:
    about +20 % at k = 32), which would bias every SPH line-of-sight integral
    ``sum_j A_j V_j W``; use this density where particles are Poisson samples (the mock).

    Parameters
    ----------
    support_mpc : (N,) float64
        Support radii ``H`` from :func:`smoothing_lengths` with the same ``n_neighbours`` [Mpc].
    mass_msun : float or (N,) float64
        Particle mass [Msun] (equal masses, as in the mock).
    n_neighbours : int
        ``k`` used for ``H``.

    Returns
    -------
    (N,) float64
        Density [Msun Mpc^-3].
    """
    if n_neighbours < 2:
        raise ValueError(f"n_neighbours must be >= 2, got {n_neighbours}")
    support = np.asarray(support_mpc, dtype=np.float64)
    return (n_neighbours - 1) * np.asarray(mass_msun, dtype=np.float64) / (4.0 / 3.0 * np.pi * support**3)

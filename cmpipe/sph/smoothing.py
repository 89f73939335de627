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

The search is :func:`cmpipe.sph.knn.knn_support_density`: a k-d tree of leaf buckets whose
particles share one candidate list, with distances computed as scipy's cKDTree computes them, so
``H`` and the densities are bitwise equal to the cKDTree query it replaced (the tests' oracle)
and 2.7-5x faster (``bench/knn.py``, 2026-12-03). Smoothing lengths do not change under rotation: compute them
once per halo and reuse them for every sightline.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from .knn import LEAF_SIZE, knn_support_density

__all__ = ["MIN_SUPPORT_MPC", "knn_volume_density", "smoothing_lengths", "smoothing_lengths_and_density"]

#: Floor on H [Mpc], so coincident particles never give a zero-size kernel.
MIN_SUPPORT_MPC = 1e-6


def _effective_k(n_particles: int, n_neighbours: int) -> int:
    if n_neighbours < 2:
        raise ValueError(f"n_neighbours must be >= 2, got {n_neighbours}")
    if n_particles < 2:
        raise ValueError(f"smoothing lengths need at least 2 particles, got {n_particles}")
    return min(n_neighbours, n_particles)


def _with_threads(num_threads: int, fn: Callable[[], tuple]) -> tuple:
    """``fn()`` on ``num_threads`` numba threads (0: numba's current setting)."""
    if num_threads <= 0:
        return fn()
    previous = numba.get_num_threads()
    numba.set_num_threads(min(num_threads, int(numba.config.NUMBA_NUM_THREADS)))
    try:
        return fn()
    finally:
        numba.set_num_threads(previous)


def _search(pos_mpc: np.ndarray, mass: np.ndarray | None, n_neighbours: int, num_threads: int) -> tuple:
    pos = np.ascontiguousarray(pos_mpc, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos_mpc must have shape (N, 3), got {pos.shape}")
    k = _effective_k(pos.shape[0], n_neighbours)
    want = mass is not None
    m = np.ascontiguousarray(mass, dtype=np.float64) if want else np.zeros(0)
    kth, density, _ = _with_threads(
        num_threads, lambda: knn_support_density(pos, k, m, want, MIN_SUPPORT_MPC, LEAF_SIZE))
    return np.maximum(kth, MIN_SUPPORT_MPC), density


def smoothing_lengths(pos_mpc: np.ndarray, n_neighbours: int = 32, num_threads: int = 0) -> np.ndarray:
    """Kernel support radius of every particle from its ``n_neighbours`` nearest neighbours.

    Parameters
    ----------
    pos_mpc : (N, 3) float64
        Particle positions [Mpc].
    n_neighbours : int
        Neighbours inside the support, the particle itself included (capped at N).
    num_threads : int
        Threads of the search (numba's); 0 uses numba's current setting (every core by default).

    Returns
    -------
    (N,) float64
        ``H`` [Mpc], at least :data:`MIN_SUPPORT_MPC`.
    """
    return _search(pos_mpc, None, n_neighbours, num_threads)[0]


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
        Threads of the search (numba's); 0 uses numba's current setting (every core by default).

    Returns
    -------
    support_mpc : (N,) float64
        ``H`` [Mpc].
    density_msun_mpc3 : (N,) float64
        ``rho_i = sum_{j != i} m_j W(r_ij, H_i)`` [Msun Mpc^-3].
    """
    mass = np.asarray(mass_msun, dtype=np.float64)
    if mass.shape != (np.shape(pos_mpc)[0],):
        raise ValueError(f"mass_msun has shape {mass.shape}, expected ({np.shape(pos_mpc)[0]},)")
    return _search(pos_mpc, mass, n_neighbours, num_threads)


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

"""Radial (azimuthally averaged) profiles of maps about the map centre, and their summaries.

The halo centre is the geometric centre of the map: pixel ``i`` has its centre at
``(i + 0.5 - N / 2) * pixel_mpc`` [Mpc] along each axis.
"""

from __future__ import annotations

import numpy as np

from cmpipe.evaluation.metrics._binning import bin_sums, flatten_maps

__all__ = [
    "fractional_error",
    "pixel_radii_mpc",
    "profile_summary",
    "radial_bin_edges",
    "radial_profile",
]


def pixel_radii_mpc(npix: int, pixel_mpc: float) -> np.ndarray:
    """Distance of each pixel centre from the map centre.

    Parameters
    ----------
    npix : int
        Map side ``N`` [pixels].
    pixel_mpc : float
        Pixel side [Mpc].

    Returns
    -------
    ndarray, shape (N, N)
        Radii [Mpc].
    """
    x = (np.arange(npix) + 0.5 - npix / 2.0) * pixel_mpc
    return np.hypot(x[:, None], x[None, :])


def radial_bin_edges(npix: int, pixel_mpc: float, n_bins: int | None = None) -> np.ndarray:
    """Annulus edges from the centre to the edge of the map (``N / 2`` pixels).

    Parameters
    ----------
    npix : int
        Map side ``N`` [pixels].
    pixel_mpc : float
        Pixel side [Mpc].
    n_bins : int, optional
        Number of equal-width annuli; default ``N // 2`` (one pixel wide when ``N`` is even).

    Returns
    -------
    ndarray, shape (n_bins + 1,)
        Edges [Mpc], from 0 to ``N / 2 * pixel_mpc``.
    """
    if n_bins is None:
        n_bins = npix // 2
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    return np.linspace(0.0, npix / 2.0 * pixel_mpc, n_bins + 1)


def _annulus_index(npix: int, pixel_mpc: float, edges_mpc: np.ndarray) -> np.ndarray:
    """Annulus of each pixel (``edges[b] <= r < edges[b + 1]``), -1 outside; shape (N * N,)."""
    r = pixel_radii_mpc(npix, pixel_mpc).ravel()
    idx = np.searchsorted(edges_mpc, r, side="right") - 1
    idx[(r < edges_mpc[0]) | (r >= edges_mpc[-1])] = -1
    return idx


def radial_profile(
    maps: np.ndarray, pixel_mpc: float, edges_mpc: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the pixels whose centres fall in each annulus about the map centre.

    Parameters
    ----------
    maps : array_like, shape (..., N, N)
        Maps (any leading batch axes), e.g. surface densities.
    pixel_mpc : float
        Pixel side [Mpc].
    edges_mpc : array_like, shape (n_bins + 1,), optional
        Increasing annulus edges [Mpc]; a pixel belongs to annulus ``b`` when
        ``edges[b] <= r < edges[b + 1]``. Default :func:`radial_bin_edges`.

    Returns
    -------
    r_mid_mpc : ndarray, shape (n_bins,)
        Annulus mid-points [Mpc].
    profile : ndarray, shape (..., n_bins)
        Mean pixel value per annulus [map unit]; NaN for an annulus holding no pixel centre.
    """
    flat, lead, npix = flatten_maps(maps)
    if edges_mpc is None:
        edges_mpc = radial_bin_edges(npix, pixel_mpc)
    edges = np.asarray(edges_mpc, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges_mpc must be a strictly increasing 1D array of >= 2 edges")
    n_bins = edges.size - 1
    idx = _annulus_index(npix, pixel_mpc, edges)
    counts = np.bincount(idx[idx >= 0], minlength=n_bins).astype(np.float64)
    sums = bin_sums(flat.astype(np.float64, copy=False), idx, n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        prof = np.where(counts > 0, sums / counts, np.nan)
    r_mid = 0.5 * (edges[1:] + edges[:-1])
    return r_mid, prof.reshape(*lead, n_bins)


def profile_summary(profiles: np.ndarray, axis: int = 0) -> dict[str, np.ndarray]:
    """Mean, median and 68 % spread of profiles across clusters.

    Parameters
    ----------
    profiles : array_like, shape (B, ..., n_bins) (clusters along ``axis``)
        One profile per cluster.
    axis : int
        The cluster axis.

    Returns
    -------
    dict
        ``"mean"``, ``"median"``, ``"p16"``, ``"p84"``: arrays with ``axis`` removed. NaNs
        propagate (no NaN-skipping).
    """
    p = np.asarray(profiles, dtype=np.float64)
    lo, med, hi = np.percentile(p, [16.0, 50.0, 84.0], axis=axis)
    return {"mean": p.mean(axis=axis), "median": med, "p16": lo, "p84": hi}


def fractional_error(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``(pred - true) / true``, NaN wherever ``true == 0`` (whatever ``pred`` is).

    Parameters
    ----------
    pred, true : array_like
        Broadcastable arrays in the same unit.

    Returns
    -------
    ndarray
        Dimensionless fractional error, broadcast shape; no warnings are raised.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    diff, den = np.broadcast_arrays(pred - true, true)
    out = np.full(diff.shape, np.nan)
    np.divide(diff, den, out=out, where=den != 0)
    return out

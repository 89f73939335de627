"""Batched sums and means of array elements over integer bins (one ``np.bincount`` call)."""

from __future__ import annotations

import numpy as np


def flatten_maps(maps: np.ndarray) -> tuple[np.ndarray, tuple[int, ...], int]:
    """Check that ``maps`` is ``(..., N, N)`` and reshape it to ``(M, N * N)``.

    Parameters
    ----------
    maps : array_like, shape (..., N, N)
        Square maps.

    Returns
    -------
    flat : ndarray, shape (M, N * N)
        The maps, one per row (``M`` = product of the leading axes, 1 if there are none).
    lead : tuple of int
        The leading shape ``...``.
    npix : int
        ``N``.
    """
    maps = np.asarray(maps)
    if maps.ndim < 2 or maps.shape[-1] != maps.shape[-2]:
        raise ValueError(f"expected square maps of shape (..., N, N), got {maps.shape}")
    npix = maps.shape[-1]
    lead = maps.shape[:-2]
    return maps.reshape(-1, npix * npix), lead, npix


def bin_sums(values: np.ndarray, bins: np.ndarray, n_bins: int) -> np.ndarray:
    """Sum each row of ``values`` over the integer ``bins`` of its columns.

    Parameters
    ----------
    values : ndarray, shape (M, P)
        Real values, one row per map.
    bins : ndarray of int, shape (P,)
        Bin of each column, ``0 .. n_bins - 1``; negative bins are left out.
    n_bins : int
        Number of bins.

    Returns
    -------
    ndarray, shape (M, n_bins)
        ``out[m, b] = sum(values[m, bins == b])`` (0 for an empty bin).
    """
    keep = bins >= 0
    vals = values[:, keep]
    b = bins[keep]
    n_rows = vals.shape[0]
    index = (np.arange(n_rows, dtype=np.int64)[:, None] * n_bins + b[None, :]).ravel()
    sums = np.bincount(index, weights=vals.ravel(), minlength=n_rows * n_bins)
    return sums.reshape(n_rows, n_bins)

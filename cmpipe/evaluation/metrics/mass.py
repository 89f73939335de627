"""Total and aperture masses of surface-density maps and their fractional errors."""

from __future__ import annotations

import numpy as np

from cmpipe.evaluation.metrics.profiles import fractional_error, pixel_radii_mpc

__all__ = ["aperture_mask", "mass_fractional_error", "total_mass"]


def aperture_mask(npix: int, pixel_mpc: float, radius_mpc: float) -> np.ndarray:
    """Pixels whose centres lie within ``radius_mpc`` of the map centre.

    Parameters
    ----------
    npix : int
        Map side ``N`` [pixels].
    pixel_mpc : float
        Pixel side [Mpc].
    radius_mpc : float
        Aperture radius [Mpc] (a pixel centre at exactly the radius is inside).

    Returns
    -------
    ndarray of bool, shape (N, N)
    """
    return pixel_radii_mpc(npix, pixel_mpc) <= radius_mpc


def total_mass(
    maps: np.ndarray, pixel_area_mpc2: float, mask: np.ndarray | None = None
) -> np.ndarray:
    """Sum of the pixels times the pixel area.

    Parameters
    ----------
    maps : array_like, shape (..., N, N)
        Surface density in units of ``X Mpc^-2``.
    pixel_area_mpc2 : float
        Pixel area [Mpc^2].
    mask : array_like of bool, shape (N, N) or broadcastable to maps, optional
        Pixels to include (e.g. :func:`aperture_mask`); default all.

    Returns
    -------
    ndarray, shape (...)
        Mass in units of ``X``.
    """
    m = np.asarray(maps, dtype=np.float64)
    if mask is not None:
        m = np.where(np.asarray(mask, dtype=bool), m, 0.0)
    return m.sum(axis=(-2, -1)) * pixel_area_mpc2


def mass_fractional_error(
    pred: np.ndarray,
    true: np.ndarray,
    pixel_mpc: float,
    radius_mpc: float | np.ndarray | None = None,
) -> np.ndarray:
    """``(M_pred - M_true) / M_true`` of the total or aperture mass of each map.

    Parameters
    ----------
    pred, true : array_like, shape (..., N, N)
        Surface-density maps; leading axes broadcast (e.g. samples ``(S, B, N, N)`` against
        truths ``(B, N, N)``).
    pixel_mpc : float
        Pixel side [Mpc].
    radius_mpc : float or array_like, optional
        Aperture radius [Mpc]: None for the whole map, a scalar for one aperture, or an array
        broadcastable to the broadcast leading shape (e.g. ``(B,)`` or ``(B, 1)`` per cluster,
        R500 of each map).

    Returns
    -------
    ndarray, shape (broadcast(...),)
        Dimensionless fractional mass error; NaN where ``M_true == 0``.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    npix = true.shape[-1]
    area = pixel_mpc**2
    if radius_mpc is None:
        mask = None
    else:
        radius = np.asarray(radius_mpc, dtype=np.float64)
        mask = pixel_radii_mpc(npix, pixel_mpc) <= radius[..., None, None]
    return fractional_error(total_mass(pred, area, mask), total_mass(true, area, mask))

"""Radially binned 2D power and cross spectra, the bias b(k) and correlation r(k).

Conventions (SPEC section 6; NOTES-METRICS-SAMPLERS.md)
--------------------------------------------------------
An ``N x N`` map of side ``L = N * pixel_mpc`` [Mpc] has the fundamental mode
``k_F = 2 pi / L`` and the Nyquist mode ``k_Nyq = pi / pixel_mpc`` [Mpc^-1]. Each map has its
mean subtracted, is Fourier transformed (``numpy.fft.fft2``, no normalisation) and

    P(k) = < |F(k)|^2 > L^2 / N^4          [map unit^2 Mpc^2]

averaged over the modes of a ring. With this normalisation white noise of pixel variance
``s^2`` has ``P = s^2 pixel_mpc^2`` and Parseval reads
``sum over all non-DC modes of |F|^2 L^2 / N^4 = L^2 * var(map)``.

Ring ``b = 1 .. N // 2`` holds the integer modes ``(ix, iy)`` with
``(b - 1/2)^2 <= ix^2 + iy^2 < (b + 1/2)^2``, decided in integer arithmetic (float digitising
misplaces modes). The DC mode and the corner modes beyond the last ring are left out. The
``k`` of a ring is the mean ``|k|`` of its modes. No pixel-window correction is applied.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from cmpipe.evaluation.metrics._binning import bin_sums, flatten_maps

__all__ = [
    "bias_and_correlation",
    "cross_spectrum",
    "k_bins",
    "large_small_means",
    "log_k_weights",
    "power_spectrum",
    "scale_split_k",
]


def _isqrt(x: np.ndarray) -> np.ndarray:
    """Exact integer square root ``floor(sqrt(x))`` of a non-negative int64 array."""
    s = np.floor(np.sqrt(x.astype(np.float64))).astype(np.int64)
    s -= (s * s > x).astype(np.int64)
    s += ((s + 1) * (s + 1) <= x).astype(np.int64)
    return s


@lru_cache(maxsize=32)
def _k_bins_cached(npix: int, pixel_mpc: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if npix < 2:
        raise ValueError(f"npix must be >= 2, got {npix}")
    if not pixel_mpc > 0:
        raise ValueError(f"pixel_mpc must be > 0, got {pixel_mpc}")
    freq = np.rint(np.fft.fftfreq(npix) * npix).astype(np.int64)  # integer mode indices
    k2 = freq[:, None] ** 2 + freq[None, :] ** 2  # (iy, ix) like fft2 of maps[..., iy, ix]
    ring = (_isqrt(4 * k2) + 1) // 2  # (2b-1)^2 <= 4 k2 < (2b+1)^2
    n_bins = npix // 2
    bin_index = np.where((ring >= 1) & (ring <= n_bins), ring - 1, -1).astype(np.int64)
    flat = bin_index.ravel()
    n_modes = np.bincount(flat[flat >= 0], minlength=n_bins).astype(np.int64)
    k_fund = 2.0 * math.pi / (npix * pixel_mpc)
    kmag = np.sqrt(k2.astype(np.float64)).ravel()
    k_mean = bin_sums(kmag[None, :], flat, n_bins)[0] / n_modes * k_fund
    for arr in (k_mean, bin_index, n_modes):
        arr.setflags(write=False)
    return k_mean, bin_index, n_modes


def k_bins(npix: int, pixel_mpc: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rings of integer ``|k| / k_F`` used by every spectrum in this module.

    Parameters
    ----------
    npix : int
        Map side ``N`` [pixels].
    pixel_mpc : float
        Pixel side [Mpc].

    Returns
    -------
    k_mpc_inv : ndarray, shape (nbins,)
        Mean ``|k|`` of the modes of each ring [Mpc^-1], ``nbins = N // 2``.
    bin_index : ndarray of int64, shape (N, N)
        Ring (0-based: ring ``b`` is index ``b - 1``) of each mode of ``numpy.fft.fft2``
        (indexed ``[iy, ix]`` in FFT order); -1 for the DC mode and for the modes beyond the
        last ring.
    n_modes : ndarray of int64, shape (nbins,)
        Number of modes in each ring.

    Notes
    -----
    The returned arrays are cached and read-only.
    """
    return _k_bins_cached(int(npix), float(pixel_mpc))


def _fft(maps: np.ndarray) -> tuple[np.ndarray, tuple[int, ...], int]:
    """Mean-subtracted unnormalised FFT of ``(..., N, N)`` maps, flattened to ``(M, N * N)``."""
    flat, lead, npix = flatten_maps(maps)
    flat = flat.astype(np.float64, copy=False)
    flat = flat - flat.mean(axis=1, keepdims=True)
    f = np.fft.fft2(flat.reshape(-1, npix, npix)).reshape(-1, npix * npix)
    return f, lead, npix


def _binned(mode_power: np.ndarray, lead: tuple[int, ...], npix: int, pixel_mpc: float):
    """Average ``(M, N * N)`` unnormalised mode powers over rings; apply ``L^2 / N^4``."""
    k, bin_index, n_modes = k_bins(npix, pixel_mpc)
    length = npix * pixel_mpc
    sums = bin_sums(mode_power, bin_index.ravel(), k.size)
    p = sums / n_modes * (length**2 / float(npix) ** 4)
    return k, p.reshape(*lead, k.size)


def power_spectrum(maps: np.ndarray, pixel_mpc: float) -> tuple[np.ndarray, np.ndarray]:
    """Ring-averaged 2D power spectrum of each map.

    Parameters
    ----------
    maps : array_like, shape (..., N, N)
        Maps on a square grid (any leading batch axes).
    pixel_mpc : float
        Pixel side [Mpc].

    Returns
    -------
    k : ndarray, shape (nbins,)
        Ring wavenumbers [Mpc^-1] (see :func:`k_bins`).
    P : ndarray, shape (..., nbins)
        Power [map unit^2 Mpc^2].
    """
    f, lead, npix = _fft(maps)
    return _binned(f.real**2 + f.imag**2, lead, npix, pixel_mpc)


def cross_spectrum(a: np.ndarray, b: np.ndarray, pixel_mpc: float) -> tuple[np.ndarray, np.ndarray]:
    """Ring-averaged cross spectrum ``Re(F_a conj(F_b))`` with the normalisation of P(k).

    Parameters
    ----------
    a, b : array_like, shape (..., N, N)
        Maps; leading axes broadcast against each other.
    pixel_mpc : float
        Pixel side [Mpc].

    Returns
    -------
    k : ndarray, shape (nbins,)
        Ring wavenumbers [Mpc^-1].
    P_ab : ndarray, shape (broadcast(...), nbins)
        Cross power [unit_a unit_b Mpc^2].
    """
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    fa, lead, npix = _fft(a)
    fb, _, _ = _fft(b)
    return _binned(fa.real * fb.real + fa.imag * fb.imag, lead, npix, pixel_mpc)


def bias_and_correlation(
    gen: np.ndarray, true: np.ndarray, pixel_mpc: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bias ``b(k) = sqrt(P_gen / P_true)`` and correlation ``r(k) = P_x / sqrt(P_gen P_true)``.

    Parameters
    ----------
    gen, true : array_like, shape (..., N, N)
        Generated and true maps; leading axes broadcast (e.g. ``gen`` of shape
        ``(S, B, C, N, N)`` against ``true`` of shape ``(B, C, N, N)``).
    pixel_mpc : float
        Pixel side [Mpc].

    Returns
    -------
    k : ndarray, shape (nbins,)
        Ring wavenumbers [Mpc^-1].
    b : ndarray, shape (broadcast(...), nbins)
        Bias per map, dimensionless; NaN (or inf) where a power is zero.
    r : ndarray, shape (broadcast(...), nbins)
        Cross-correlation coefficient per map in ``[-1, 1]``; NaN where a power is zero.
    """
    gen, true = np.broadcast_arrays(np.asarray(gen), np.asarray(true))
    fg, lead, npix = _fft(gen)
    ft, _, _ = _fft(true)
    k, p_gen = _binned(fg.real**2 + fg.imag**2, lead, npix, pixel_mpc)
    _, p_true = _binned(ft.real**2 + ft.imag**2, lead, npix, pixel_mpc)
    _, p_x = _binned(fg.real * ft.real + fg.imag * ft.imag, lead, npix, pixel_mpc)
    with np.errstate(divide="ignore", invalid="ignore"):
        bias = np.sqrt(p_gen / p_true)
        corr = p_x / np.sqrt(p_gen * p_true)
    return k, bias, corr


def scale_split_k(npix: int, pixel_mpc: float) -> float:
    """Default large/small-scale split ``k_s = sqrt(k_F k_Nyq)`` [Mpc^-1].

    Parameters
    ----------
    npix : int
        Map side ``N`` [pixels].
    pixel_mpc : float
        Pixel side [Mpc].

    Returns
    -------
    float
        ``sqrt(2 pi / (N pixel_mpc) * pi / pixel_mpc)`` [Mpc^-1].
    """
    k_fund = 2.0 * math.pi / (npix * pixel_mpc)
    k_nyq = math.pi / pixel_mpc
    return math.sqrt(k_fund * k_nyq)


def log_k_weights(k: np.ndarray) -> np.ndarray:
    """Width in ``ln k`` of each ring: weights that make a mean over rings a mean in log k.

    Ring ``i`` is taken to span ``ln k`` from the midpoint with its lower neighbour to the
    midpoint with its upper one (the end rings: symmetric about their own ``ln k``). A
    weighted mean with these weights is the mean of the piecewise-constant ``v(ln k)``
    over ``ln k``: each decade of k counts the same, not each of the (linearly spaced,
    far more numerous) small-scale rings.

    Parameters
    ----------
    k : array_like, shape (nbins,)
        Increasing ring wavenumbers, > 0 [Mpc^-1].

    Returns
    -------
    ndarray, shape (nbins,)
        Weights [dimensionless, ln k units]; all 1 for a single ring.
    """
    lk = np.log(np.asarray(k, dtype=np.float64))
    if lk.size < 2:
        return np.ones(lk.size)
    mid = 0.5 * (lk[1:] + lk[:-1])
    lower = np.concatenate([[lk[0] - (mid[0] - lk[0])], mid])
    upper = np.concatenate([mid, [lk[-1] + (lk[-1] - mid[-1])]])
    return upper - lower


def large_small_means(
    k: np.ndarray, values: np.ndarray, k_split: float, weighting: str = "log"
) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a binned quantity over large scales (``k < k_split``) and small scales.

    Parameters
    ----------
    k : array_like, shape (nbins,)
        Ring wavenumbers [Mpc^-1].
    values : array_like, shape (..., nbins)
        E.g. ``b(k)`` or ``r(k)`` per map.
    k_split : float
        Split [Mpc^-1]; rings with ``k >= k_split`` are small scales.
    weighting : {"log", "uniform"}
        ``log`` (default): each ring weighted by its width in ``ln k`` (:func:`log_k_weights`
        of all rings), i.e. the mean over bins equally spaced in log k; ``uniform``: every
        ring the same (the small-scale side is then dominated by its many high-k rings).

    Returns
    -------
    large, small : ndarray, shape (...)
        Weighted means over the rings on each side (NaNs propagate); NaN if a side has no
        ring.
    """
    k = np.asarray(k, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.shape[-1] != k.size:
        raise ValueError(f"values last axis {values.shape[-1]} != len(k) {k.size}")
    if weighting not in ("log", "uniform"):
        raise ValueError(f"weighting must be 'log' or 'uniform', got {weighting!r}")
    weights = log_k_weights(k) if weighting == "log" else np.ones(k.size)
    large_sel = k < k_split

    def side(sel: np.ndarray) -> np.ndarray:
        if not sel.any():
            return np.full(values.shape[:-1], np.nan)
        w = weights[sel]
        return (values[..., sel] * w).sum(axis=-1) / w.sum()

    return side(large_sel), side(~large_sel)

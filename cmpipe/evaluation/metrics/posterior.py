"""Per-pixel posterior summaries: standardized errors and the convergence of the posterior mean.

:func:`mean_convergence` is the convergence criterion of the report; the older
:func:`sample_variance_convergence` (first n samples against all S of the same draws: 0 at
n = S by construction) is kept for reference only.

These follow the paper's section 4.1 (Figs. 5 and 6). The standardized-error histogram is a
weak calibration test on its own; see :mod:`cmpipe.evaluation.metrics.calibration` for rank and TARP
tests.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "Z_EDGES",
    "mean_convergence",
    "sample_variance_convergence",
    "samples_to_converge",
    "standardized_error_histogram",
    "standardized_errors",
]

#: Default bin edges of the standardized-error histogram: 100 bins of width 0.1 on [-5, 5].
Z_EDGES: np.ndarray = np.linspace(-5.0, 5.0, 101)
Z_EDGES.setflags(write=False)


def standardized_errors(
    samples: np.ndarray, truth: np.ndarray, axis: int = 0, min_std: float = 0.0
) -> np.ndarray:
    """``z = (mean(samples) - truth) / std(samples, ddof=1)`` per pixel (paper eq. 12).

    Parameters
    ----------
    samples : array_like, shape (S, ..., N, N) (samples along ``axis``)
        Posterior samples, ``S >= 2``.
    truth : array_like, shape (..., N, N)
        True maps, broadcastable to ``samples`` with ``axis`` removed.
    axis : int
        Sample axis.
    min_std : float
        Pixels whose sample standard deviation is ``<= min_std`` get NaN (e.g. empty map
        borders where every sample is 0). Same unit as the maps.

    Returns
    -------
    ndarray, shape (..., N, N)
        Dimensionless standardized errors.

    Notes
    -----
    For a calibrated posterior (truth and the ``S`` samples exchangeable draws) and Gaussian
    pixels, ``z = sqrt(1 + 1/S) t_{S-1}``: mean 0 and standard deviation
    ``sqrt((1 + 1/S)(S - 1)/(S - 3))`` (1.03 for ``S = 50``), not exactly 1.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.shape[axis] < 2:
        raise ValueError("need at least 2 samples")
    mean = x.mean(axis=axis)
    std = x.std(axis=axis, ddof=1)
    diff, std = np.broadcast_arrays(mean - np.asarray(truth, dtype=np.float64), std)
    out = np.full(diff.shape, np.nan)
    np.divide(diff, std, out=out, where=std > min_std)
    return out


def standardized_error_histogram(
    z: np.ndarray, edges: np.ndarray = Z_EDGES, clip: bool = True
) -> np.ndarray:
    """Counts of standardized errors in bins.

    Parameters
    ----------
    z : array_like, any shape
        Standardized errors; NaNs (masked pixels) are ignored.
    edges : array_like, shape (n_bins + 1,)
        Increasing bin edges; default :data:`Z_EDGES`.
    clip : bool
        If True (default) values below ``edges[0]`` count in the first bin and values above
        ``edges[-1]`` in the last, so the counts sum to the number of finite values. If False
        they are left out (compare the sum with ``np.isfinite(z).sum()`` to count them).

    Returns
    -------
    ndarray of int64, shape (n_bins,)
        Counts (divide by ``counts.sum() * np.diff(edges)`` for a density).
    """
    edges = np.asarray(edges, dtype=np.float64)
    v = np.asarray(z, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if clip:
        v = np.clip(v, edges[0], edges[-1])
    counts, _ = np.histogram(v, bins=edges)
    return counts.astype(np.int64)


def sample_variance_convergence(
    samples: np.ndarray, n_values: np.ndarray | None = None, percentile: float = 95.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How fast the pixel-wise sample variance converges with the number of samples (Fig. 5).

    Definition: ``var_n`` is the unbiased (``ddof=1``) variance of each pixel over the first
    ``n`` samples and ``var_S`` over all ``S``. Over the pixels with ``var_S > 0`` (all
    non-sample axes pooled; call once per channel to separate channels) this returns the
    ``percentile`` of ``|var_n / var_S - 1|`` and the mean of ``var_n / var_S``. The deviation
    is exactly 0 at ``n = S``.

    Parameters
    ----------
    samples : array_like, shape (S, ...)
        Posterior samples along axis 0, ``S >= 2``.
    n_values : array_like of int, optional
        Sample counts to evaluate, each in ``2 .. S``; default ``2, 3, ..., S``.
    percentile : float
        Percentile of the deviation over pixels, in [0, 100].

    Returns
    -------
    n_values : ndarray of int64, shape (K,)
    deviation : ndarray, shape (K,)
        ``percentile`` of ``|var_n / var_S - 1|`` over pixels.
    mean_ratio : ndarray, shape (K,)
        Mean over pixels of ``var_n / var_S``.
    """
    x = np.asarray(samples, dtype=np.float64)
    n_samples = x.shape[0]
    if n_samples < 2:
        raise ValueError("need at least 2 samples")
    x = x.reshape(n_samples, -1)
    if n_values is None:
        n_values = np.arange(2, n_samples + 1)
    n_values = np.asarray(n_values, dtype=np.int64)
    if np.any(n_values < 2) or np.any(n_values > n_samples):
        raise ValueError(f"n_values must lie in 2 .. {n_samples}")
    var_all = x.var(axis=0, ddof=1)
    keep = var_all > 0
    if not keep.any():
        raise ValueError("every pixel has zero variance over the samples")
    x = x[:, keep] - x[:, keep].mean(axis=0)  # shift: less cancellation in the running sums
    var_all = var_all[keep]
    wanted = set(int(n) for n in n_values)
    ratios: dict[int, np.ndarray] = {}
    s1 = np.zeros(x.shape[1])
    s2 = np.zeros(x.shape[1])
    for i in range(n_samples):
        s1 += x[i]
        s2 += x[i] * x[i]
        n = i + 1
        if n in wanted:
            var_n = (s2 - s1 * s1 / n) / (n - 1)
            ratios[n] = var_n / var_all
    deviation = np.array([np.percentile(np.abs(ratios[n] - 1.0), percentile) for n in n_values])
    mean_ratio = np.array([ratios[n].mean() for n in n_values])
    return n_values, deviation, mean_ratio


def mean_convergence(
    samples: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None,
    n_values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Monte-Carlo error of the n-sample posterior mean against its actual error (Fig. 5).

    Per pixel (inside ``mask``): the Monte-Carlo error of the mean of the first ``n`` samples,
    ``sigma / sqrt(n)`` (``sigma``: the std, ``ddof=1``, of all ``S`` samples, the best
    estimate of the posterior width), against the actual error of that mean,
    ``|mean_n - truth|``. Their ratio is small once sampling noise is a small part of the
    error: more samples would not make the mean better. Unlike a comparison of the first
    ``n`` samples with all ``S`` of the same draws, nothing here vanishes at ``n = S``: a
    posterior whose mean misses the truth by much more than ``sigma / sqrt(S)`` converges
    early, a calibrated one (error ~ sigma) needs ``n`` of order ``1 / fraction^2``, and
    one with too few samples never does.

    Parameters
    ----------
    samples : array_like, shape (S, N, N) (or (S, ...))
        Posterior samples, ``S >= 2``.
    truth : array_like, shape (N, N)
        True map.
    mask : array_like of bool, shape (N, N), optional
        Pixels used (e.g. inside R200m); default all.
    n_values : array_like of int, optional
        Sample counts in ``1 .. S``; default ``2 .. S``.

    Returns
    -------
    n_values : ndarray of int64, shape (K,)
    ratio : ndarray, shape (K,)
        Median over the pixels of ``(sigma / sqrt(n)) / |mean_n - truth|`` (a pixel whose
        mean hits the truth exactly counts as +inf); NaN without pixels of positive spread.
    mc_error, mean_error : ndarray, shape (K,)
        Medians over the pixels of ``sigma / sqrt(n)`` and of ``|mean_n - truth|`` [map unit].
    """
    x = np.asarray(samples, dtype=np.float64)
    s = x.shape[0]
    if s < 2:
        raise ValueError("need at least 2 samples")
    t = np.broadcast_to(np.asarray(truth, dtype=np.float64), x.shape[1:])
    m = np.ones(x.shape[1:], bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), x.shape[1:])
    x, t = x[:, m], t[m]
    n_values = np.arange(2, s + 1) if n_values is None else np.asarray(n_values, dtype=np.int64)
    if np.any(n_values < 1) or np.any(n_values > s):
        raise ValueError(f"n_values must lie in 1 .. {s}")
    sigma = x.std(axis=0, ddof=1)
    keep = sigma > 0
    x, t, sigma = x[:, keep], t[keep], sigma[keep]
    if not keep.any():
        nan = np.full(n_values.size, np.nan)
        return n_values, nan, nan.copy(), nan.copy()
    running = np.cumsum(x - t, axis=0)  # sum of (sample - truth) over the first n samples
    ratio, mc, err = (np.empty(n_values.size) for _ in range(3))
    for j, n in enumerate(n_values):
        e = np.abs(running[n - 1]) / n
        mc_n = sigma / np.sqrt(n)
        with np.errstate(divide="ignore"):
            ratio[j] = np.median(np.where(e > 0, mc_n / np.where(e > 0, e, 1.0), np.inf))
        mc[j], err[j] = np.median(mc_n), np.median(e)
    return n_values, ratio, mc, err


def samples_to_converge(
    n_values: np.ndarray, deviation: np.ndarray, tolerance: float
) -> int | None:
    """Smallest ``n`` from which the deviation stays below ``tolerance``.

    Parameters
    ----------
    n_values : array_like of int, shape (K,)
        Increasing sample counts.
    deviation : array_like, shape (K,)
        E.g. the deviation of :func:`sample_variance_convergence`.
    tolerance : float
        Threshold (strict: ``deviation < tolerance``).

    Returns
    -------
    int or None
        ``n_values[i]`` for the smallest ``i`` with ``deviation[j] < tolerance`` for every
        ``j >= i``; None if the last deviation is not below ``tolerance``.
    """
    n_values = np.asarray(n_values)
    below = np.asarray(deviation) < tolerance
    if below.size == 0 or not below[-1]:
        return None
    above = np.flatnonzero(~below)
    first = 0 if above.size == 0 else above[-1] + 1
    return int(n_values[first])

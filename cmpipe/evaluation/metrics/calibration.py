"""Calibration tests of posterior samples: interval coverage, ranks and TARP.

Per-pixel ranks pooled over all pixels are not a valid test (pixels are correlated); use
these on scalar summaries per cluster (total mass, mass within R, profile bins) or, for whole
maps, TARP (Lemos et al. 2023, "Sampling-based accuracy testing of posterior estimators for
general inference", ICML).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DEFAULT_LEVELS",
    "coverage",
    "max_coverage_deviation",
    "rank_bin_probabilities",
    "rank_histogram",
    "rank_statistic",
    "tarp_coverage",
]

#: Default credibility levels of :func:`coverage`.
DEFAULT_LEVELS: np.ndarray = np.linspace(0.1, 0.9, 9)
DEFAULT_LEVELS.setflags(write=False)


def coverage(
    samples: np.ndarray,
    truth: np.ndarray,
    levels: np.ndarray = DEFAULT_LEVELS,
    axis: int = 0,
) -> np.ndarray:
    """Fraction of truths inside the central credible interval of each level.

    The interval of level ``a`` runs between the sample quantiles ``(1 - a) / 2`` and
    ``(1 + a) / 2``, computed with ``method="weibull"`` (position ``p (S + 1)`` among the
    sorted samples), which makes the coverage unbiased for a truth exchangeable with the
    samples, even for small ``S``.

    Parameters
    ----------
    samples : array_like, shape (S, ...) (samples along ``axis``)
        Posterior samples of pixels or of scalar summaries.
    truth : array_like, shape (...)
        True values, broadcastable to ``samples`` with ``axis`` removed.
    levels : array_like, shape (L,)
        Credibility levels in (0, 1).
    axis : int
        Sample axis.

    Returns
    -------
    ndarray, shape (L,)
        Observed coverage per level, pooled over all truth elements. Above ``levels``:
        over-dispersed (under-confident) posterior; below: over-confident.
    """
    levels = np.asarray(levels, dtype=np.float64)
    if np.any((levels <= 0) | (levels >= 1)):
        raise ValueError("levels must lie in (0, 1)")
    x = np.moveaxis(np.asarray(samples, dtype=np.float64), axis, 0)
    q = np.concatenate([(1.0 - levels) / 2.0, (1.0 + levels) / 2.0])
    bounds = np.quantile(x, q, axis=0, method="weibull")  # (2L, ...)
    lo, hi = bounds[: levels.size], bounds[levels.size :]
    t = np.broadcast_to(np.asarray(truth, dtype=np.float64), x.shape[1:])
    inside = (t >= lo) & (t <= hi)
    return inside.reshape(levels.size, -1).mean(axis=1)


def rank_statistic(samples: np.ndarray, truth: np.ndarray, axis: int = 0) -> np.ndarray:
    """Rank of the truth among the samples: the number of samples strictly below it.

    Parameters
    ----------
    samples : array_like, shape (S, ...) (samples along ``axis``)
        Posterior samples.
    truth : array_like, shape (...)
        True values, broadcastable to ``samples`` with ``axis`` removed.
    axis : int
        Sample axis.

    Returns
    -------
    ndarray of int64, shape (...)
        Ranks in ``0 .. S``; uniform on those ``S + 1`` values for a calibrated posterior
        (continuous values; ties are not broken).
    """
    x = np.moveaxis(np.asarray(samples), axis, 0)
    return (x < np.asarray(truth)).sum(axis=0).astype(np.int64)


def rank_bin_probabilities(n_samples: int, n_bins: int) -> np.ndarray:
    """Expected fraction of uniform ranks ``0 .. S`` in each bin of :func:`rank_histogram`.

    Parameters
    ----------
    n_samples : int
        ``S``.
    n_bins : int
        Number of bins, ``<= S + 1``.

    Returns
    -------
    ndarray, shape (n_bins,)
        Probabilities (all ``1 / n_bins`` when ``n_bins`` divides ``S + 1``).
    """
    per_value = np.arange(n_samples + 1) * n_bins // (n_samples + 1)
    return np.bincount(per_value, minlength=n_bins) / (n_samples + 1)


def rank_histogram(ranks: np.ndarray, n_samples: int, n_bins: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Histogram of ranks ``0 .. S``: rank ``j`` goes to bin ``j * n_bins // (S + 1)``.

    Parameters
    ----------
    ranks : array_like of int, any shape
        From :func:`rank_statistic`.
    n_samples : int
        ``S``.
    n_bins : int
        Number of bins, ``1 <= n_bins <= S + 1``. Choose a divisor of ``S + 1`` for equal
        expected counts; otherwise see :func:`rank_bin_probabilities`.
    weights : array_like of float, optional
        One weight per rank (e.g. ``1 / n_images`` of the rank's halo); default 1 each.

    Returns
    -------
    ndarray, shape (n_bins,)
        int64 counts, or float64 sums of ``weights``.
    """
    if not 1 <= n_bins <= n_samples + 1:
        raise ValueError(f"n_bins must lie in 1 .. {n_samples + 1}")
    r = np.asarray(ranks, dtype=np.int64).ravel()
    if r.size and (r.min() < 0 or r.max() > n_samples):
        raise ValueError(f"ranks must lie in 0 .. {n_samples}")
    bins = r * n_bins // (n_samples + 1)
    if weights is None:
        return np.bincount(bins, minlength=n_bins).astype(np.int64)
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape != r.shape:
        raise ValueError(f"{w.size} weights for {r.size} ranks")
    return np.bincount(bins, weights=w, minlength=n_bins)


def tarp_coverage(
    samples: np.ndarray,
    truth: np.ndarray,
    n_refs: int = 10,
    seed: int = 0,
    levels: np.ndarray | None = None,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """TARP expected coverage probability (Lemos et al. 2023) of whole-map posteriors.

    For each case ``i`` a reference point ``r_i`` is drawn uniformly in the box spanned by the
    truths (per dimension, from their min to max). With ``f_i`` the fraction of samples
    closer to ``r_i`` than the truth (Euclidean distance), the expected coverage is
    ``ecp(alpha) = mean_i [f_i < alpha]``; a calibrated posterior gives ``ecp = alpha``. The
    curve is averaged over ``n_refs`` independent draws of the references.

    Parameters
    ----------
    samples : array_like, shape (S, B, ...)
        ``S`` samples for each of ``B`` cases; trailing axes (e.g. channels and pixels) are
        flattened to ``D`` dimensions.
    truth : array_like, shape (B, ...)
        True values.
    n_refs : int
        Number of independent reference draws averaged over.
    seed : int
        Seed of ``numpy.random.default_rng`` for the references.
    levels : array_like, shape (K,), optional
        Credibility levels ``alpha``; default ``np.linspace(0, 1, 101)``.
    normalize : bool
        Rescale each dimension by the min and max of the truths (as the ``tarp`` package)
        before measuring distances, so that no dimension dominates by its unit.

    Returns
    -------
    alpha : ndarray, shape (K,)
    ecp : ndarray, shape (K,)
        Expected coverage probability at each level. Below the diagonal: over-confident
        (under-dispersed) posterior; above: under-confident.

    Notes
    -----
    Memory is ``O(S B D)`` (the inputs) plus ``O(S B)``: distances use
    ``|x - r|^2 = |x|^2 - 2 x.r + |r|^2`` with ``|x|^2`` computed once.
    """
    x = np.asarray(samples, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    n_samples, n_cases = x.shape[:2]
    if t.shape[0] != n_cases or t.shape[1:] != x.shape[2:]:
        raise ValueError(f"truth shape {t.shape} does not match samples shape {x.shape}")
    x = x.reshape(n_samples, n_cases, -1)
    t = t.reshape(n_cases, -1)
    low, high = t.min(axis=0), t.max(axis=0)
    if normalize:
        scale = np.where(high > low, high - low, 1.0)
        x = (x - low) / scale
        t = (t - low) / scale
        low, high = t.min(axis=0), t.max(axis=0)
    alpha = np.linspace(0.0, 1.0, 101) if levels is None else np.asarray(levels, np.float64)
    rng = np.random.default_rng(seed)
    x_sq = np.einsum("sbd,sbd->sb", x, x)
    ecp = np.zeros(alpha.size)
    for _ in range(n_refs):
        ref = rng.uniform(low, high, size=t.shape)  # (B, D)
        ref_sq = np.einsum("bd,bd->b", ref, ref)
        d_samples = x_sq - 2.0 * np.einsum("sbd,bd->sb", x, ref) + ref_sq
        d_truth = np.einsum("bd,bd->b", t - ref, t - ref)
        frac = (d_samples < d_truth).mean(axis=0)  # (B,)
        ecp += (frac[None, :] < alpha[:, None]).mean(axis=1)
    return alpha, ecp / n_refs


def max_coverage_deviation(expected: np.ndarray, observed: np.ndarray) -> float:
    """Largest absolute difference between observed and expected coverage.

    Parameters
    ----------
    expected, observed : array_like, shape (K,)
        E.g. ``levels`` and :func:`coverage`, or ``alpha`` and ``ecp`` of
        :func:`tarp_coverage`.

    Returns
    -------
    float
        ``max |observed - expected|`` (dimensionless).
    """
    return float(np.max(np.abs(np.asarray(observed) - np.asarray(expected))))

"""Halo-level statistics: average the images of a halo, then summarise over halos (plain numpy/pandas).

Images of one halo (rotations, sightlines) are not independent test cases: a halo seen ten
times must weigh as much as one seen once. Every summary of :mod:`cmpipe.evaluation.report` therefore
first averages the image-level values of each halo (:func:`halo_means`), then takes a
statistic over halos (median or mean) with a 68 % interval from a bootstrap over halos
(:func:`bootstrap`: :data:`N_BOOTSTRAP` resamples of the halos with replacement, seeded with
:data:`BOOTSTRAP_SEED`, percentile interval). A summary over fewer than :data:`MIN_HALOS`
halos is not a number: its value and interval are NaN and its ``note`` says "too few halos".

Skill against baselines (:func:`paired_skill`): ``1 - err_model / err_baseline`` of a
statistic of per-halo errors, with the same halos resampled for both (paired bootstrap), so
the interval reflects which halos were tested, not two independent draws.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "BOOTSTRAP_SEED",
    "CONFIDENCE",
    "MIN_HALOS",
    "N_BOOTSTRAP",
    "Summary",
    "bootstrap",
    "halo_means",
    "paired_skill",
    "summarise",
]

#: Bootstrap resamples of the halos.
N_BOOTSTRAP = 1000
#: Seed of ``numpy.random.default_rng`` for every bootstrap (results are reproducible).
BOOTSTRAP_SEED = 20240515
#: Central probability of every interval (the 16th to 84th percentile of the bootstrap).
CONFIDENCE = 0.68
#: Fewer halos than this: "too few halos", no number.
MIN_HALOS = 3
#: The note of a summary with too few halos.
TOO_FEW = "too few halos"

def _std(x: np.ndarray, axis: int = 0) -> np.ndarray:
    return np.std(x, axis=axis, ddof=1)


_STATISTICS: dict[str, Callable[..., np.ndarray]] = {"median": np.median, "mean": np.mean, "std": _std}


@dataclass(frozen=True)
class Summary:
    """A statistic over halos with its bootstrap interval.

    Attributes
    ----------
    value, lo, hi : float
        The statistic and its 68 % bootstrap interval (NaN with too few halos).
    n_halos, n_images : int
        Halos (with a finite value) and the images behind them.
    statistic : str
        ``median`` or ``mean`` over halos.
    note : str
        ``""`` or :data:`TOO_FEW`.
    """

    value: float
    lo: float
    hi: float
    n_halos: int
    n_images: int
    statistic: str
    note: str = ""

    def text(self, fmt: str = "{:.3g}") -> str:
        """``value [lo, hi]``, or the note."""
        if self.note:
            return self.note
        return f"{fmt.format(self.value)} [{fmt.format(self.lo)}, {fmt.format(self.hi)}]"


def halo_means(df: pd.DataFrame, columns: str | Sequence[str], halo: str = "halo_id",
               image: str = "image_index") -> pd.DataFrame:
    """Mean of image-level values per halo.

    Parameters
    ----------
    df : DataFrame
        One row per image (and whatever else was already averaged out), with ``halo`` and
        ``image`` columns.
    columns : str or sequence of str
        Value columns; NaNs are skipped within a halo (a halo with no finite value gets NaN).
    halo, image : str
        Column names.

    Returns
    -------
    DataFrame
        Indexed by halo (sorted): the mean of each column, ``n_images`` (distinct images of
        the halo) and, if present, the halo's ``log10_m200m_msun_h``.
    """
    columns = [columns] if isinstance(columns, str) else list(columns)
    grouped = df.groupby(halo, sort=True)
    out = grouped[columns].mean()
    out["n_images"] = grouped[image].nunique() if image in df else grouped.size()
    if "log10_m200m_msun_h" in df and "log10_m200m_msun_h" not in columns:
        out["log10_m200m_msun_h"] = grouped["log10_m200m_msun_h"].first()
    return out


def _resample_index(n: int, n_boot: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap(values: np.ndarray, statistic: str = "median", n_boot: int = N_BOOTSTRAP,
              seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A statistic over halos (axis 0) and its percentile bootstrap interval.

    Parameters
    ----------
    values : array_like, shape (H, ...)
        One value (or row) per halo; the halos with a NaN anywhere in their row are left out.
    statistic : {"median", "mean", "std"}
        ``std``: the spread over halos (``ddof=1``), e.g. a scatter.
    n_boot : int
        Resamples of the halos with replacement.
    seed : int
    confidence : float
        Central probability of the interval.

    Returns
    -------
    value, lo, hi : ndarray, shape (...)
        NaN if fewer than :data:`MIN_HALOS` halos remain.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)] if x.size else x.reshape((0, *x.shape[1:]))
    fn = _STATISTICS[statistic]
    if x.shape[0] < MIN_HALOS:
        nan = np.full(x.shape[1:], np.nan)
        return nan, nan.copy(), nan.copy()
    idx = _resample_index(x.shape[0], n_boot, seed)
    boots = fn(x[idx], axis=1)
    q = 50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)
    lo, hi = np.percentile(boots, q, axis=0)
    return fn(x, axis=0), lo, hi


def summarise(per_halo: pd.Series | np.ndarray, n_images: int | pd.Series | np.ndarray | None = None,
              statistic: str = "median", **kwargs) -> Summary:
    """:class:`Summary` of one per-halo value (NaN halos left out).

    Parameters
    ----------
    per_halo : Series or array, shape (H,)
        E.g. a column of :func:`halo_means`.
    n_images : int or array, optional
        Total images, or the images of each halo (summed over the halos kept); default H.
    statistic : {"median", "mean"}
    **kwargs
        Of :func:`bootstrap`.
    """
    x = np.asarray(per_halo, dtype=np.float64)
    keep = np.isfinite(x)
    if n_images is None:
        n_img = int(keep.sum())
    elif np.ndim(n_images) == 0:
        n_img = int(n_images)
    else:
        n_img = int(np.asarray(n_images)[keep].sum())
    value, lo, hi = bootstrap(x[keep], statistic, **kwargs)
    note = TOO_FEW if keep.sum() < MIN_HALOS else ""
    return Summary(float(value), float(lo), float(hi), int(keep.sum()), n_img, statistic, note)


def paired_skill(model: pd.Series, baseline: pd.Series, statistic: str = "median", n_boot: int = N_BOOTSTRAP,
                 seed: int = BOOTSTRAP_SEED, confidence: float = CONFIDENCE) -> Summary:
    """Skill ``1 - stat(model errors) / stat(baseline errors)`` over the halos both have.

    Parameters
    ----------
    model, baseline : Series
        Per-halo errors (>= 0, lower is better), indexed by halo.
    statistic : {"median", "mean"}

    Returns
    -------
    Summary
        1: no error; 0: as good as the baseline; < 0: worse. The interval resamples the
        common halos once for both (paired). NaN when the baseline's statistic is 0 or fewer
        than :data:`MIN_HALOS` common halos.
    """
    both = pd.concat([model.rename("m"), baseline.rename("b")], axis=1, join="inner").dropna()
    m, b = both["m"].to_numpy(np.float64), both["b"].to_numpy(np.float64)
    n = m.size
    if n < MIN_HALOS:
        return Summary(np.nan, np.nan, np.nan, n, n, statistic, TOO_FEW)
    fn = _STATISTICS[statistic]
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 1.0 - fn(m) / fn(b) if fn(b) > 0 else np.nan
        idx = _resample_index(n, n_boot, seed)
        boots = 1.0 - fn(m[idx], axis=1) / fn(b[idx], axis=1)
    boots = boots[np.isfinite(boots)]
    q = 50.0 * (1.0 - confidence), 50.0 * (1.0 + confidence)
    lo, hi = np.percentile(boots, q) if boots.size else (np.nan, np.nan)
    return Summary(float(value), float(lo), float(hi), n, n, statistic)

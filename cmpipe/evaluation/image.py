"""Per-image evaluation of posterior samples: the rows of every result table (no Ray, no torch).

:func:`evaluate_image` turns one test image's posterior samples, truth and condition maps
(physical units, on the model's grid) into the rows of the tables of
:mod:`cmpipe.store.tables`, with the metrics of :mod:`cmpipe.evaluation.metrics` (the paper's section 4:
masses within R500c, R200m and the whole map, profiles, spectra against the truth and the input
baseline, the convergence of the posterior mean, standardized errors, coverage). Standardized
errors, pixel coverage and the convergence are computed inside R200m (the headline: where the
cluster is) and, apart from the convergence, outside it (secondary); empty background pixels
never enter a headline. The inference actors call it on each image, the baselines of
:mod:`cmpipe.evaluation.baselines` too; the report only aggregates the rows (:mod:`cmpipe.evaluation.halo_stats`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cmpipe.store.schema import TARGET_CHANNELS as TARGETS

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import CosmologyConfig

#: The model's generated channels and its default condition channels, in the model's order
#: (:data:`cmpipe.model.dataset.TARGET_CHANNELS`, :data:`cmpipe.model.dataset.CONDITION_CHANNELS`;
#: ``model.conditions`` may name others).
CONDITIONS = ("sz_y", "xray_sb")

#: Credible levels of the coverage table [dimensionless].
COVERAGE_LEVELS = np.round(np.linspace(0.1, 0.9, 9), 10)


@dataclass(frozen=True)
class Grid:
    """The model's map grid and what turns its maps into masses.

    Attributes
    ----------
    npix : int
        Pixels per side (``model.resolution``).
    pixel_mpc : float
        Pixel side [Mpc].
    depth_mpc : float
        Projection depth L [Mpc].
    rho_bar_msun_mpc3 : dict
        Cosmic mean density of each target channel's component [Msun Mpc^-3]: a map value
        times ``rho_bar * L * pixel_mpc**2`` is a mass [Msun].
    k_split_mpc_inv : float
        Large / small scale boundary [Mpc^-1].
    convergence_tolerance : float
        Fraction: converged once the Monte-Carlo error of the posterior mean is below this
        fraction of its actual error (:func:`cmpipe.evaluation.metrics.mean_convergence`).
    """

    npix: int
    pixel_mpc: float
    depth_mpc: float
    rho_bar_msun_mpc3: Mapping[str, float]
    k_split_mpc_inv: float
    convergence_tolerance: float

    def mass_per_unit_msun(self, channel: str) -> float:
        """Mass of one pixel of map value 1 [Msun]."""
        return float(self.rho_bar_msun_mpc3[channel]) * self.depth_mpc * self.pixel_mpc**2


def make_grid(npix: int, store_attrs: Mapping[str, Any], cosmology: CosmologyConfig, *, k_split_mpc_inv: float,
              convergence_tolerance: float) -> Grid:
    """The :class:`Grid` of a model of ``npix`` pixels per side on a store.

    Parameters
    ----------
    npix : int
        Pixels per side of the model's maps (``model.resolution``).
    store_attrs : mapping
        The image store's ``npix``, ``pixel_mpc`` [Mpc] and ``depth_mpc`` [Mpc].
    cosmology : CosmologyConfig
        Gives the mean baryon and dark-matter densities.
    k_split_mpc_inv : float
        Large / small scale boundary [Mpc^-1]; 0: ``sqrt(k_F k_Nyq)`` of the model's grid.
    convergence_tolerance : float
        ``evaluate.convergence_tolerance`` [dimensionless].
    """
    from cmpipe.evaluation.metrics import scale_split_k
    from cmpipe.physics.cosmology import mean_densities

    npix = int(npix)
    pixel = float(store_attrs["pixel_mpc"]) * int(store_attrs["npix"]) / npix
    rho = mean_densities(cosmology)
    k_split = k_split_mpc_inv or scale_split_k(npix, pixel)
    return Grid(npix=npix, pixel_mpc=pixel, depth_mpc=float(store_attrs["depth_mpc"]),
                rho_bar_msun_mpc3={"gas_sigma": rho.baryon, "dm_sigma": rho.dark_matter},
                k_split_mpc_inv=float(k_split), convergence_tolerance=float(convergence_tolerance))


def _rank(values: np.ndarray, truth: float) -> int:
    return int(np.sum(values < truth))


#: Normal-consistent scale of the median absolute deviation.
MAD_TO_SIGMA = 1.4826


def z_moments(z: np.ndarray) -> tuple[float, float, float, int]:
    """Mean, std and robust width ``1.4826 * median |z - median z|`` of the finite raw values (never
    a clipped histogram), and their number; NaN without values."""
    z = np.asarray(z, dtype=np.float64)
    z = z[np.isfinite(z)]
    if not z.size:
        return float("nan"), float("nan"), float("nan"), 0
    med = np.median(z)
    return float(z.mean()), float(z.std()), float(MAD_TO_SIGMA * np.median(np.abs(z - med))), int(z.size)


#: The tables :func:`evaluate_image` fills, in order.
_TABLES = ("clusters", "profiles", "spectra", "convergence", "zhist", "coverage")


class _Rows:
    """The rows of every table for one image, as columns of lists; each row starts with the
    image's key (``image_index``, ``halo_id``, ``log10_m200m_msun_h``) and its ``channel``."""

    def __init__(self, key: Mapping[str, Any]) -> None:
        self.key = key
        self.tables: dict[str, dict[str, list[Any]]] = {n: {} for n in _TABLES}

    def add(self, table: str, nrows: int, channel: str, /, **cols: Any) -> None:
        """Append ``nrows`` rows to ``table``: each column value broadcast to ``nrows``."""
        out = self.tables[table]
        base = {"image_index": self.key["image_index"], "halo_id": self.key["halo_id"],
                "log10_m200m_msun_h": self.key["log10_m200m_msun_h"], "channel": channel}
        for name, value in {**base, **cols}.items():
            column = np.broadcast_to(np.asarray(value), (nrows,)).tolist()
            out.setdefault(name, []).extend(column)


@dataclass(frozen=True)
class _Masses:
    """One channel's masses [Msun]: the samples' (S,), the truth's and the posterior mean's,
    over the whole map, within R200m (``a_``), outside it (``o_``) and within R500c (``f_``;
    NaN and rank -1 without R500c)."""

    m_samples: np.ndarray
    m_true: float
    m_pred: float
    a_samples: np.ndarray
    a_true: float
    a_pred: float
    o_samples: np.ndarray
    o_true: float
    f_samples: np.ndarray
    f_true: float
    f_pred: float
    f_rank: int


def _masses(sc: np.ndarray, tc: np.ndarray, mc: np.ndarray, unit_mass: float, aperture: np.ndarray,
            ap500: np.ndarray | None) -> _Masses:
    """Masses of the samples ``sc`` (S, R, R), the truth ``tc`` and the mean ``mc`` (R, R): whole
    map, within R200m and within R500c (projected), outside R200m; ``unit_mass`` [Msun]."""
    m_samples = sc.sum(axis=(-2, -1)) * unit_mass
    m_true, m_pred = tc.sum() * unit_mass, mc.sum() * unit_mass
    a_samples = sc[:, aperture].sum(axis=-1) * unit_mass
    a_true, a_pred = tc[aperture].sum() * unit_mass, mc[aperture].sum() * unit_mass
    o_samples, o_true = m_samples - a_samples, m_true - a_true
    if ap500 is not None:
        f_samples = sc[:, ap500].sum(axis=-1) * unit_mass
        f_true, f_pred = tc[ap500].sum() * unit_mass, mc[ap500].sum() * unit_mass
        f_rank = _rank(f_samples, f_true)
    else:
        f_samples, f_true, f_pred, f_rank = np.full(sc.shape[0], np.nan), np.nan, np.nan, -1
    return _Masses(m_samples, m_true, m_pred, a_samples, a_true, a_pred, o_samples, o_true, f_samples, f_true,
                   f_pred, f_rank)


@dataclass(frozen=True)
class _Spread:
    """One channel's standardized pixel errors inside (``z_in``) and outside (``z_out``) R200m
    and the convergence of the posterior mean inside R200m (:func:`cmpipe.evaluation.metrics.mean_convergence`;
    ``n_converged`` None: never)."""

    z_in: np.ndarray
    z_out: np.ndarray
    n_values: np.ndarray
    ratio: np.ndarray
    mc_error: np.ndarray
    mean_error: np.ndarray
    n_converged: int | None


def _spread(sc: np.ndarray, tc: np.ndarray, aperture: np.ndarray, tolerance: float) -> _Spread:
    """Standardized pixel errors (raw values) inside and outside R200m and the convergence of the
    posterior mean inside R200m. All samples identical (zero spread; float rounding of the mean
    can leave a ~1 ulp std): no z, no convergence."""
    from cmpipe.evaluation import metrics

    s = sc.shape[0]
    flat = bool(np.all(sc == sc[:1]))
    z = metrics.standardized_errors(sc, tc, axis=0) if not flat else np.full(tc.shape, np.nan)
    if not flat:
        n_values, ratio, mc_err, mean_err = metrics.mean_convergence(sc, tc, aperture)
    else:  # zero spread everywhere (e.g. model.kind unet's point estimate): nothing converges
        n_values = np.arange(2, s + 1)
        ratio = mc_err = np.full(len(n_values), np.nan)
        mean_err = np.array([np.median(np.abs(sc[:n].mean(axis=0) - tc)[aperture]) for n in n_values])
    n_conv = metrics.samples_to_converge(n_values, np.nan_to_num(ratio, nan=np.inf), tolerance)
    return _Spread(z[aperture], z[~aperture], n_values, ratio, mc_err, mean_err, n_conv)


def _add_cluster_row(rows: _Rows, channel: str, m: _Masses, spread: _Spread, s: int, r200m_mpc: float,
                     r500c_mpc: float | None, seconds: float) -> None:
    """The ``clusters`` row of one channel: masses, their errors and ranks, z moments, convergence."""
    zi_mean, zi_std, zi_mad, zi_n = z_moments(spread.z_in)
    zo_mean, zo_std, zo_mad, zo_n = z_moments(spread.z_out)
    n_conv = spread.n_converged
    with np.errstate(divide="ignore", invalid="ignore"):
        f_err = (m.f_pred - m.f_true) / m.f_true
    rows.add("clusters", 1, channel, r200m_mpc=r200m_mpc,
             r500c_mpc=np.nan if r500c_mpc is None else float(r500c_mpc),
             mass_true_msun=m.m_true, mass_pred_msun=m.m_pred,
             mass_frac_error=(m.m_pred - m.m_true) / m.m_true, mass_std_frac=m.m_samples.std(ddof=1) / m.m_true,
             mass_rank=_rank(m.m_samples, m.m_true), mass_r200m_true_msun=m.a_true, mass_r200m_pred_msun=m.a_pred,
             mass_r200m_frac_error=(m.a_pred - m.a_true) / m.a_true, mass_r200m_rank=_rank(m.a_samples, m.a_true),
             mass_r500c_true_msun=m.f_true, mass_r500c_pred_msun=m.f_pred, mass_r500c_frac_error=f_err,
             mass_r500c_rank=m.f_rank, mass_outside_r200m_rank=_rank(m.o_samples, m.o_true),
             z_mean_r200m=zi_mean, z_std_r200m=zi_std, z_mad_r200m=zi_mad, n_z_r200m=zi_n,
             z_mean_outside=zo_mean, z_std_outside=zo_std, z_mad_outside=zo_mad, n_z_outside=zo_n,
             n_converged=int(n_conv) if n_conv is not None else s + 1, n_samples=s, seconds=seconds)


def _add_spread_rows(rows: _Rows, channel: str, spread: _Spread) -> None:
    """The ``zhist`` rows (inside and outside R200m) and the ``convergence`` rows of one channel."""
    from cmpipe.evaluation import metrics

    for region, zr in (("r200m", spread.z_in), ("outside", spread.z_out)):
        counts = metrics.standardized_error_histogram(zr, metrics.Z_EDGES)
        rows.add("zhist", len(counts), channel, region=region, bin=np.arange(len(counts)), z_lo=metrics.Z_EDGES[:-1],
                 z_hi=metrics.Z_EDGES[1:], count=counts)
    rows.add("convergence", len(spread.n_values), channel, n=spread.n_values, ratio=spread.ratio,
             mc_error=spread.mc_error, mean_error=spread.mean_error)


def _add_profile_rows(rows: _Rows, channel: str, sc: np.ndarray, tc: np.ndarray, mc: np.ndarray, pixel_mpc: float,
                      edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``profiles`` rows of one channel; returns the samples' profiles (S, nb) and the true one (nb,)."""
    from cmpipe.evaluation import metrics

    r_mid, prof_true = metrics.radial_profile(tc, pixel_mpc, edges)
    _, prof_samples = metrics.radial_profile(sc, pixel_mpc, edges)
    _, prof_mean = metrics.radial_profile(mc, pixel_mpc, edges)
    nb = len(r_mid)
    rows.add("profiles", nb, channel, bin=np.arange(nb), r_mpc=r_mid, true=prof_true, pred_mean=prof_mean,
             pred_std=prof_samples.std(axis=0, ddof=1), frac_error=metrics.fractional_error(prof_mean, prof_true))
    return prof_samples, prof_true


def _add_spectra_rows(rows: _Rows, channel: str, sc: np.ndarray, tc: np.ndarray, mc: np.ndarray,
                      condition: np.ndarray, conditions: Sequence[str], pixel_mpc: float, k: np.ndarray) -> None:
    """The ``spectra`` rows of one channel: posterior mean, single samples (spectra averaged over
    samples), input baselines (no ``b``); ``k`` [Mpc^-1] the bins' wavenumbers."""
    from cmpipe.evaluation import metrics

    nk = len(k)
    _, p_true = metrics.power_spectrum(tc, pixel_mpc)
    comparisons = {"posterior_mean": mc[None], "sample": sc,
                   **{f"input_{name}": condition[j][None] for j, name in enumerate(conditions)}}
    for name, other in comparisons.items():
        _, p_other = metrics.power_spectrum(other, pixel_mpc)
        _, p_cross = metrics.cross_spectrum(other, tc[None], pixel_mpc)
        p_other, p_cross = p_other.mean(axis=0), p_cross.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = p_cross / np.sqrt(p_other * p_true)
            b = np.sqrt(p_other / p_true) if not name.startswith("input") else np.full(nk, np.nan)
        rows.add("spectra", nk, channel, comparison=name, bin=np.arange(1, nk + 1), k_mpc_inv=k, p_true=p_true,
                 p_other=p_other, p_cross=p_cross, b=b, r=r)


def _add_coverage_rows(rows: _Rows, channel: str, sc: np.ndarray, tc: np.ndarray, aperture: np.ndarray,
                       m: _Masses, profiles: tuple[np.ndarray, np.ndarray], with_r500c: bool) -> None:
    """The ``coverage`` rows of one channel: central credible intervals of pixels, masses and
    profile bins (``profiles``: the samples' and the true profiles)."""
    from cmpipe.evaluation import metrics

    prof_samples, prof_true = profiles
    quantities = [("pixels_r200m", sc[:, aperture], tc[aperture]),
                  ("pixels_outside", sc[:, ~aperture], tc[~aperture]),
                  ("mass", m.m_samples[:, None], np.array([m.m_true])),
                  ("mass_r200m", m.a_samples[:, None], np.array([m.a_true])),
                  ("profile", prof_samples, prof_true)]
    if with_r500c:
        quantities.append(("mass_r500c", m.f_samples[:, None], np.array([m.f_true])))
    for quantity, smp, tru in quantities:
        if quantity == "pixels_outside":  # empty background (zero in truth and every sample) left out
            keep = np.any(smp != 0, axis=0) | (tru != 0)
            smp, tru = smp[:, keep], tru[keep]
        if tru.size == 0:
            continue
        covered = metrics.coverage(smp, tru, levels=COVERAGE_LEVELS, axis=0)
        rows.add("coverage", len(COVERAGE_LEVELS), channel, quantity=quantity, level=COVERAGE_LEVELS, covered=covered)


def _check_shapes(samples: np.ndarray, truth: np.ndarray, condition: np.ndarray, conditions: Sequence[str],
                  npix: int, key: Mapping[str, Any]) -> None:
    """A ValueError naming the image unless ``samples`` (S, 2, R, R), ``truth`` (2, R, R) with
    ``R == npix``, and one ``condition`` map per name of ``conditions``."""
    if condition.shape[0] != len(conditions):
        raise ValueError(f"image {key['image_index']}: {condition.shape[0]} condition maps for the conditions "
                         f"{conditions}")
    if samples.shape[1:] != truth.shape or truth.shape != (2, npix, npix):
        raise ValueError(f"image {key['image_index']}: samples {samples.shape} and truth {truth.shape} "
                         f"do not match the grid of {npix} pixels")


def evaluate_image(
    samples: np.ndarray,
    truth: np.ndarray,
    condition: np.ndarray,
    grid: Grid,
    key: Mapping[str, Any],
    r200m_mpc: float,
    seconds: float = 0.0,
    conditions: Sequence[str] = CONDITIONS,
    r500c_mpc: float | None = None,
) -> dict[str, dict[str, list[Any]]]:
    """Every table's rows for one test image.

    Parameters
    ----------
    samples : ndarray, shape (S, 2, R, R)
        Posterior samples of (gas_sigma, dm_sigma), physical.
    truth : ndarray, shape (2, R, R)
        The true maps.
    condition : ndarray, shape (C_cond, R, R)
        The input maps of ``conditions``.
    grid : Grid
    key : mapping
        ``image_index``, ``halo_id``, ``log10_m200m_msun_h`` of the image.
    r200m_mpc : float
        R200m of the halo [Mpc] (aperture of the R200m masses).
    seconds : float
        Sampling time attributed to the image [s].
    conditions : sequence of str
        The channels of ``condition``, in order (``model.conditions``): one ``input_<name>``
        spectra comparison each.
    r500c_mpc : float, optional
        R500c of the halo [Mpc] (aperture of the R500c masses); None: those columns are NaN.

    Returns
    -------
    dict
        Table name -> dict of columns (:func:`cmpipe.store.tables.to_table`).

    Notes
    -----
    Samples with zero spread in every pixel of a channel (the deterministic baseline's repeated
    point estimate, ``model.kind: unet``) are accepted: that channel's standardized errors are
    all NaN (``z_*`` NaN, an all-zero histogram), its convergence rows have NaN ``ratio`` and
    ``mc_error`` and ``n_converged = n_samples + 1`` (never converged),
    and its credible intervals have zero width (coverage: the fraction of truths equal to the
    prediction, about 0).
    """
    from cmpipe.evaluation import metrics

    samples = np.asarray(samples, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    condition = np.asarray(condition, dtype=np.float64)
    conditions = tuple(conditions)
    _check_shapes(samples, truth, condition, conditions, grid.npix, key)
    s = samples.shape[0]
    rows = _Rows(key)
    mean = samples.mean(axis=0)
    edges = metrics.radial_bin_edges(grid.npix, grid.pixel_mpc)
    aperture = metrics.aperture_mask(grid.npix, grid.pixel_mpc, r200m_mpc)
    ap500 = metrics.aperture_mask(grid.npix, grid.pixel_mpc, r500c_mpc) if r500c_mpc is not None else None
    k, _ = metrics.power_spectrum(truth[0], grid.pixel_mpc)
    for c, channel in enumerate(TARGETS):
        sc, tc, mc = samples[:, c], truth[c], mean[c]
        masses = _masses(sc, tc, mc, grid.mass_per_unit_msun(channel), aperture, ap500)
        spread = _spread(sc, tc, aperture, grid.convergence_tolerance)
        _add_cluster_row(rows, channel, masses, spread, s, r200m_mpc, r500c_mpc, seconds)
        _add_spread_rows(rows, channel, spread)
        profiles = _add_profile_rows(rows, channel, sc, tc, mc, grid.pixel_mpc, edges)
        _add_spectra_rows(rows, channel, sc, tc, mc, condition, conditions, grid.pixel_mpc, k)
        _add_coverage_rows(rows, channel, sc, tc, aperture, masses, profiles, ap500 is not None)
    return rows.tables

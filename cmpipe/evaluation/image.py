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
from typing import Any

import numpy as np

#: The model's generated channels and its default condition channels, in the model's order
#: (:data:`cmpipe.model.dataset.TARGET_CHANNELS`, :data:`cmpipe.model.dataset.CONDITION_CHANNELS`;
#: ``model.conditions`` may name others).
TARGETS = ("gas_sigma", "dm_sigma")
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


def grid_from_config(cfg: Any, store_attrs: Mapping[str, Any]) -> Grid:
    """The :class:`Grid` of a config's model on a store (``npix``, ``pixel_mpc``, ``depth_mpc``)."""
    from cmpipe.evaluation.metrics import scale_split_k
    from cmpipe.physics.cosmology import mean_densities

    npix = int(cfg.model.resolution)
    pixel = float(store_attrs["pixel_mpc"]) * int(store_attrs["npix"]) / npix
    rho = mean_densities(cfg.cosmology)
    k_split = cfg.evaluate.k_split_mpc_inv or scale_split_k(npix, pixel)
    return Grid(npix=npix, pixel_mpc=pixel, depth_mpc=float(store_attrs["depth_mpc"]),
                rho_bar_msun_mpc3={"gas_sigma": rho.baryon, "dm_sigma": rho.dark_matter},
                k_split_mpc_inv=float(k_split), convergence_tolerance=float(cfg.evaluate.convergence_tolerance))


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
    if condition.shape[0] != len(conditions):
        raise ValueError(f"image {key['image_index']}: {condition.shape[0]} condition maps for the conditions {conditions}")
    s = samples.shape[0]
    if samples.shape[1:] != truth.shape or truth.shape != (2, grid.npix, grid.npix):
        raise ValueError(f"image {key['image_index']}: samples {samples.shape} and truth {truth.shape} "
                         f"do not match the grid of {grid.npix} pixels")
    tables: dict[str, dict[str, list[Any]]] = {n: {} for n in
                                               ("clusters", "profiles", "spectra", "convergence", "zhist", "coverage")}

    def add(table: str, nrows: int, channel: str, /, **cols: Any) -> None:
        out = tables[table]
        base = {"image_index": key["image_index"], "halo_id": key["halo_id"],
                "log10_m200m_msun_h": key["log10_m200m_msun_h"], "channel": channel}
        for name, value in {**base, **cols}.items():
            column = np.broadcast_to(np.asarray(value), (nrows,)).tolist()
            out.setdefault(name, []).extend(column)

    mean = samples.mean(axis=0)
    edges = metrics.radial_bin_edges(grid.npix, grid.pixel_mpc)
    aperture = metrics.aperture_mask(grid.npix, grid.pixel_mpc, r200m_mpc)
    ap500 = metrics.aperture_mask(grid.npix, grid.pixel_mpc, r500c_mpc) if r500c_mpc is not None else None
    k, _ = metrics.power_spectrum(truth[0], grid.pixel_mpc)
    nk = len(k)
    for c, channel in enumerate(TARGETS):
        unit_mass = grid.mass_per_unit_msun(channel)
        sc, tc, mc = samples[:, c], truth[c], mean[c]
        # Masses: whole map, within R200m and within R500c (projected), outside R200m.
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
            f_samples, f_true, f_pred, f_rank = np.full(s, np.nan), np.nan, np.nan, -1
        # Standardized pixel errors (raw values) inside and outside R200m, their histograms and
        # the convergence of the posterior mean inside R200m. All samples identical (zero
        # spread; float rounding of the mean can leave a ~1 ulp std): no z, no convergence.
        flat = bool(np.all(sc == sc[:1]))
        z = metrics.standardized_errors(sc, tc, axis=0) if not flat else np.full(tc.shape, np.nan)
        z_in, z_out = z[aperture], z[~aperture]
        zi_mean, zi_std, zi_mad, zi_n = z_moments(z_in)
        zo_mean, zo_std, zo_mad, zo_n = z_moments(z_out)
        if not flat:
            n_values, ratio, mc_err, mean_err = metrics.mean_convergence(sc, tc, aperture)
        else:  # zero spread everywhere (e.g. model.kind unet's point estimate): nothing converges
            n_values = np.arange(2, s + 1)
            ratio = mc_err = np.full(len(n_values), np.nan)
            mean_err = np.array([np.median(np.abs(sc[:n].mean(axis=0) - tc)[aperture]) for n in n_values])
        n_conv = metrics.samples_to_converge(n_values, np.nan_to_num(ratio, nan=np.inf), grid.convergence_tolerance)
        with np.errstate(divide="ignore", invalid="ignore"):
            f_err = (f_pred - f_true) / f_true
        add("clusters", 1, channel, r200m_mpc=r200m_mpc,
            r500c_mpc=np.nan if r500c_mpc is None else float(r500c_mpc),
            mass_true_msun=m_true, mass_pred_msun=m_pred,
            mass_frac_error=(m_pred - m_true) / m_true, mass_std_frac=m_samples.std(ddof=1) / m_true,
            mass_rank=_rank(m_samples, m_true), mass_r200m_true_msun=a_true, mass_r200m_pred_msun=a_pred,
            mass_r200m_frac_error=(a_pred - a_true) / a_true, mass_r200m_rank=_rank(a_samples, a_true),
            mass_r500c_true_msun=f_true, mass_r500c_pred_msun=f_pred, mass_r500c_frac_error=f_err,
            mass_r500c_rank=f_rank, mass_outside_r200m_rank=_rank(o_samples, o_true),
            z_mean_r200m=zi_mean, z_std_r200m=zi_std, z_mad_r200m=zi_mad, n_z_r200m=zi_n,
            z_mean_outside=zo_mean, z_std_outside=zo_std, z_mad_outside=zo_mad, n_z_outside=zo_n,
            n_converged=int(n_conv) if n_conv is not None else s + 1, n_samples=s, seconds=seconds)
        for region, zr in (("r200m", z_in), ("outside", z_out)):
            counts = metrics.standardized_error_histogram(zr, metrics.Z_EDGES)
            add("zhist", len(counts), channel, region=region, bin=np.arange(len(counts)), z_lo=metrics.Z_EDGES[:-1],
                z_hi=metrics.Z_EDGES[1:], count=counts)
        add("convergence", len(n_values), channel, n=n_values, ratio=ratio, mc_error=mc_err, mean_error=mean_err)
        # Radial profiles.
        r_mid, prof_true = metrics.radial_profile(tc, grid.pixel_mpc, edges)
        _, prof_samples = metrics.radial_profile(sc, grid.pixel_mpc, edges)
        _, prof_mean = metrics.radial_profile(mc, grid.pixel_mpc, edges)
        nb = len(r_mid)
        add("profiles", nb, channel, bin=np.arange(nb), r_mpc=r_mid, true=prof_true, pred_mean=prof_mean,
            pred_std=prof_samples.std(axis=0, ddof=1), frac_error=metrics.fractional_error(prof_mean, prof_true))
        # Spectra: posterior mean, single samples (spectra averaged over samples), input baselines.
        _, p_true = metrics.power_spectrum(tc, grid.pixel_mpc)
        comparisons = {"posterior_mean": mc[None], "sample": sc,
                       **{f"input_{name}": condition[j][None] for j, name in enumerate(conditions)}}
        for name, other in comparisons.items():
            _, p_other = metrics.power_spectrum(other, grid.pixel_mpc)
            _, p_cross = metrics.cross_spectrum(other, tc[None], grid.pixel_mpc)
            p_other, p_cross = p_other.mean(axis=0), p_cross.mean(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = p_cross / np.sqrt(p_other * p_true)
                b = np.sqrt(p_other / p_true) if not name.startswith("input") else np.full(nk, np.nan)
            add("spectra", nk, channel, comparison=name, bin=np.arange(1, nk + 1), k_mpc_inv=k, p_true=p_true,
                p_other=p_other, p_cross=p_cross, b=b, r=r)
        # Coverage of central credible intervals: pixels, masses and profile bins.
        quantities = [("pixels_r200m", sc[:, aperture], tc[aperture]),
                      ("pixels_outside", sc[:, ~aperture], tc[~aperture]),
                      ("mass", m_samples[:, None], np.array([m_true])),
                      ("mass_r200m", a_samples[:, None], np.array([a_true])),
                      ("profile", prof_samples, prof_true)]
        if ap500 is not None:
            quantities.append(("mass_r500c", f_samples[:, None], np.array([f_true])))
        for quantity, smp, tru in quantities:
            if quantity == "pixels_outside":  # empty background (zero in truth and every sample) left out
                keep = np.any(smp != 0, axis=0) | (tru != 0)
                smp, tru = smp[:, keep], tru[keep]
            if tru.size == 0:
                continue
            covered = metrics.coverage(smp, tru, levels=COVERAGE_LEVELS, axis=0)
            add("coverage", len(COVERAGE_LEVELS), channel, quantity=quantity, level=COVERAGE_LEVELS, covered=covered)
    return tables

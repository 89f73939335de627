"""Figures of the mock-cluster validation (:mod:`cmpipe.physics.validate`): one Figure per check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from cmpipe.mapmaking.maps import HaloMaps
    from cmpipe.physics.validate import BootstrapFit, PowerLawFit, StackedProfile, ValidationResult

__all__ = [
    "plot_observed_relation",
    "plot_observed_relations",
    "plot_profile",
    "plot_scaling_relation",
    "plot_showcase_maps",
    "plot_validation",
]

_LABELS = {
    "dm_density": (r"$\rho_\mathrm{DM} / \bar\rho_\mathrm{m}$", "Dark-matter density", True),
    "gas_density": (r"$\rho_\mathrm{gas} / \bar\rho_\mathrm{m}$", "Gas density", True),
    "pressure": (r"$P_e / P_{500}$ (volume-weighted)", "Electron pressure vs DPP", True),
    "fgas": (r"$f_\mathrm{gas}(<r) / f_b$", "Gas fraction", False),
}


def plot_profile(profile: StackedProfile) -> Figure:
    """A stacked profile (mean, per-halo curves) with the model overplotted, and the residual.

    Parameters
    ----------
    profile : StackedProfile
        From :func:`cmpipe.physics.validate.stack_checks`.

    Returns
    -------
    matplotlib.figure.Figure
        Top: the profile (log axes unless the quantity is a fraction); bottom:
        ``measured / model - 1`` with the halo-to-halo spread of the ratio as a band.
    """
    from matplotlib.figure import Figure

    ylabel, title, logy = _LABELS.get(profile.name, (profile.name, profile.name, True))
    fig = Figure(figsize=(5.5, 5.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(2.5, 1))
    for row in profile.per_halo:
        top.plot(profile.x, row, color="0.75", lw=0.6)
    top.plot(profile.x, profile.measured, "o-", color="C0", ms=3, label=f"particles (mean of {len(profile.per_halo)})")
    top.plot(profile.x, profile.model, "--", color="C3", label="input model")
    top.set_xscale("log")
    if logy:
        top.set_yscale("log")
    top.set_ylabel(ylabel)
    top.set_title(title)
    top.legend(fontsize="small")
    bottom.fill_between(profile.x, profile.deviation - profile.spread, profile.deviation + profile.spread,
                        color="C0", alpha=0.2, lw=0, label="halo spread")
    bottom.plot(profile.x, profile.deviation, "o-", color="C0", ms=3)
    bottom.axhline(0.0, color="C3", ls="--", lw=0.8)
    for level in (-0.05, 0.05):
        bottom.axhline(level, color="0.5", ls=":", lw=0.8)
    bottom.set_ylim(-0.3, 0.3)
    bottom.set_xlabel(f"r / {profile.x_unit}")
    bottom.set_ylabel("mean / model - 1")
    return fig


def plot_scaling_relation(
    m500c_msun: np.ndarray, values: np.ndarray, fit: PowerLawFit, *, ylabel: str, title: str,
    self_similar_slope: float, reference: tuple[str, np.ndarray, np.ndarray] | None = None,
    model: np.ndarray | None = None,
) -> Figure:
    """One scaling relation: the halos, the fit, the self-similar slope through the fit's pivot,
    and an optional reference curve and per-halo model values.

    Parameters
    ----------
    m500c_msun, values : (H,) float64
        M500c [Msun] and the observable.
    fit : PowerLawFit
        Fit of ``values`` against ``m500c_msun``.
    ylabel, title : str
    self_similar_slope : float
    reference : (label, m500c_msun, values), optional
        A published relation to draw.
    model : (H,) float64, optional
        The observable of each halo's input model.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    m = np.geomspace(m500c_msun.min() / 1.3, m500c_msun.max() * 1.3, 50)
    ax.loglog(m500c_msun, values, "o", color="C0", label="mock halos")
    if model is not None:
        ax.loglog(m500c_msun, model, "x", color="C2", label="input model")
    ax.loglog(m, fit(m), "-", color="C0",
              label=f"fit: slope {fit.slope:.3f} ± {fit.slope_error:.3f}, σ_ln {fit.scatter_ln:.3f}")
    m_mid = float(np.exp(np.mean(np.log(m500c_msun))))
    ax.loglog(m, fit(np.array([m_mid]))[0] * (m / m_mid) ** self_similar_slope, ":", color="0.3",
              label=f"self-similar slope {self_similar_slope:.3g} (through the fit at the mean mass)")
    if reference is not None:
        label, rm, rv = reference
        ax.loglog(rm, rv, "--", color="C3", label=label)
    ax.set_xlabel(r"$M_{500c}$ [$M_\odot$]")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    return fig


def plot_validation(result: ValidationResult) -> dict[str, Figure]:
    """Every figure of a validation: name -> Figure (``profile_<name>``, ``y500_m500c``,
    ``lx500_m500c``)."""
    from cmpipe.physics.validate import SELF_SIMILAR_LX_SLOPE, SELF_SIMILAR_Y_SLOPE, arnaud10_y500_mpc2

    figs = {f"profile_{name}": plot_profile(p) for name, p in result.profiles.items()}
    m = np.geomspace(result.m500c_msun.min() / 1.3, result.m500c_msun.max() * 1.3, 50)
    figs["y500_m500c"] = plot_scaling_relation(
        result.m500c_msun, result.y500_mpc2, result.y_m,
        ylabel=r"$E(z)^{-2/3}\,Y_{500}\,D_A^2$ [Mpc$^2$] (spherical)", title="Y500 - M500c",
        self_similar_slope=SELF_SIMILAR_Y_SLOPE,
        reference=("Arnaud et al. 2010 eq. 22", m, arnaud10_y500_mpc2(m, result.h)),
        model=result.y500_model_mpc2,
    )
    figs["lx500_m500c"] = plot_scaling_relation(
        result.m500c_msun, result.lx500_erg_s, result.lx_m,
        ylabel=r"$L_{X,\mathrm{bol}}(<R_{500c})$ [erg s$^{-1}$]", title="L_X - M500c",
        self_similar_slope=SELF_SIMILAR_LX_SLOPE,
    )
    return figs


def plot_observed_relation(
    m500c_msun: np.ndarray, values: np.ndarray, fit: BootstrapFit | None, *, ylabel: str, title: str,
    lines: Sequence[tuple[str, np.ndarray, np.ndarray]] = (),
    bands: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = (),
    logy: bool = True,
) -> Figure:
    """Mock halos against published relations: points, the mock's fit, reference curves and bands.

    Parameters
    ----------
    m500c_msun, values : (H,) float64
        M500c [Msun] and the observable of each mock halo (measured from its particles).
    fit : BootstrapFit or None
        The mock's fit (drawn with its slope, scatter and their bootstrap errors in the legend).
    ylabel, title : str
    lines : sequence of (label, m500c_msun (K,), values (K,))
        Published relations (dashed).
    bands : sequence of (label, m500c_msun (K,), low (K,), high (K,))
        Published scatter bands or ranges (shaded).
    logy : bool
        Log y axis (x is always log).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.8, 4.6), layout="constrained")
    ax = fig.subplots()
    for i, (label, bm, lo, hi) in enumerate(bands):
        ax.fill_between(bm, lo, hi, color=f"C{3 + i}", alpha=0.2, lw=0, label=label)
    for i, (label, lm, lv) in enumerate(lines):
        ax.plot(lm, lv, "--", color=f"C{3 + i}", label=label)
    ax.plot(m500c_msun, values, "o", color="C0", ms=4, label=f"mock halos (particles, N = {len(values)})")
    if fit is not None:
        m = np.geomspace(np.nanmin(m500c_msun) / 1.2, np.nanmax(m500c_msun) * 1.2, 50)
        ax.plot(m, fit(m), "-", color="C0",
                label=f"mock fit: slope {fit.slope:.2f} ± {fit.slope_error:.2f}, "
                      f"scatter {fit.scatter_dex:.3f} ± {fit.scatter_dex_error:.3f} dex")
    ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(r"$M_{500c}$ [$M_\odot$] (true, from the particles' halo)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="x-small")
    return fig


def plot_observed_relations(result: ValidationResult, fits: dict[str, BootstrapFit]) -> dict[str, Figure]:
    """The mock's f_gas,500, T, L_X (bolometric and 0.1-2.4 keV) and Y500 against M500c with the
    published relations of :mod:`cmpipe.physics.observed`: name -> Figure (``observed_<name>``).

    Parameters
    ----------
    result : ValidationResult
        Per-halo values (:func:`cmpipe.physics.validate.stack_checks`).
    fits : dict of str -> BootstrapFit
        The mock's fits by name (``fgas``, ``t``, ``lx_bol``, ``lx_soft``, ``y``); a missing name
        draws no fit.
    """
    from cmpipe.physics import observed as obs

    h, m500 = result.h, result.m500c_msun
    m = np.geomspace(min(1e13, np.nanmin(m500) / 1.2), max(2e15, np.nanmax(m500) * 1.2), 60)
    figs = {}
    fg_bands = []
    for ref in (obs.FGAS_GROUPS, obs.FGAS_CLUSTERS):
        hi_m = min(ref.m500_max_msun, m[-1])
        bm = np.array([ref.m500_min_msun, hi_m])
        fg_bands.append((f"{ref.label}: {ref.fgas_min:g}-{ref.fgas_max:g} (issue 16: Sun+09, Gonzalez+13, Lovisari+15)",
                         bm, np.full(2, ref.fgas_min), np.full(2, ref.fgas_max)))
    figs["observed_fgas500_m500c"] = plot_observed_relation(
        m500, result.fgas500, fits.get("fgas"), ylabel=r"$f_\mathrm{gas,500} = M_\mathrm{gas}/M_\mathrm{tot}\,(<R_{500c})$",
        title="f_gas,500 - M500c", bands=fg_bands, logy=False,
    )
    vk = obs.VIKHLININ09_MT
    t = vk.t_kev(m, h)
    figs["observed_t_m500c"] = plot_observed_relation(
        m500, result.tmw_kev, fits.get("t"), ylabel=r"$T_\mathrm{mw}(0.15$-$1\,R_{500c})$ [keV]", title="M500c - T",
        lines=[(rf"Vikhlinin+09: M500 = 3.02e14 h$^{{-1}}$ M$_\odot$ (T/5 keV)$^{{1.53}}$, h = {h:g}", m, t)],
        bands=[("±10 % (issue 16's tolerance; no published scatter used)", m, 0.9 * t, 1.1 * t)],
    )
    lb = obs.LX_BOL_SUMMARY
    lx_fit = fits.get("lx_bol")
    lines, bands = [], []
    if lx_fit is not None:
        a = lx_fit.normalisation
        for slope in lb.slope_range:
            lines.append((f"slope {slope:g} through the mock at 3e14 (issue 16: Pratt+09, Lovisari+15)", m,
                          a * (m / lx_fit.pivot) ** slope))
        mid = a * (m / lx_fit.pivot) ** np.mean(lb.slope_range)
        s = lb.scatter_dex_range[1]
        bands.append((f"±{s:g} dex about slope {np.mean(lb.slope_range):g} (issue 16's scatter, upper end)", m,
                      mid * 10**-s, mid * 10**s))
    figs["observed_lx_bol_m500c"] = plot_observed_relation(
        m500, result.lx500_erg_s, lx_fit, ylabel=r"$L_{X,\mathrm{bol}}(<R_{500c})$ [erg s$^{-1}$]",
        title="L_X,bol - M500c (slope and scatter only)", lines=lines, bands=bands,
    )
    pr = obs.PRATT09_LX_SOFT
    lref = pr.lx_erg_s(m, h)
    figs["observed_lx_soft_m500c"] = plot_observed_relation(
        m500, result.lx500_soft_erg_s, fits.get("lx_soft"), ylabel=r"$L_X[0.1$-$2.4\,\mathrm{keV}](<R_{500c})$ [erg s$^{-1}$]",
        title="L_X[0.1-2.4 keV] - M500c",
        lines=[("Pratt+09 Table B.2, BCES(Y|X), MB-corrected", m, lref)],
        bands=[(r"±0.41 in ln L (Pratt+09's L-Y$_X$ intrinsic scatter)", m, lref * np.exp(-0.41), lref * np.exp(0.41))],
    )
    ar = obs.ARNAUD10_YM
    figs["observed_y500_m500c"] = plot_observed_relation(
        m500, result.y500_mpc2, fits.get("y"), ylabel=r"$E(z)^{-2/3}\,Y_{500}\,D_A^2$ [Mpc$^2$] (spherical)",
        title="Y500 - M500c", lines=[("Arnaud+10 eq. 22 (no scatter band: none used)", m, ar.y500_mpc2(m, h))],
    )
    return figs


def plot_showcase_maps(maps: Sequence[HaloMaps]) -> list[Figure]:
    """The four maps of each showcase halo (:func:`cmpipe.plots.maps.plot_halo_maps`)."""
    from cmpipe.plots.maps import plot_halo_maps

    return [plot_halo_maps(m) for m in maps]

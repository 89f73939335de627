"""Figures of the mock-cluster validation (:mod:`cmpipe.physics.validate`): one Figure per check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from cmpipe.maps import HaloMaps
    from cmpipe.physics.validate import PowerLawFit, StackedProfile, ValidationResult

__all__ = [
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


def plot_showcase_maps(maps: Sequence[HaloMaps]) -> list[Figure]:
    """The four maps of each showcase halo (:func:`cmpipe.plots.maps.plot_halo_maps`)."""
    from cmpipe.plots.maps import plot_halo_maps

    return [plot_halo_maps(m) for m in maps]

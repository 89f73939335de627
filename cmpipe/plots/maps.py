"""The four maps of one halo as one figure (the layout of the paper's Figure 2)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from cmpipe.mapmaking.maps import HaloMaps

__all__ = ["plot_halo_maps"]

_TITLES = {
    "sz_y": ("SZ", r"$\log_{10}\,y$"),
    "xray_sb": ("X-ray", r"$\log_{10}\,S_X$ [erg s$^{-1}$ cm$^{-2}$ sr$^{-1}$]"),
    "gas_sigma": ("Gas", r"$\log_{10}\,\Sigma_\mathrm{gas}/(\bar\rho_\mathrm{gas} L)$"),
    "dm_sigma": ("Dark matter", r"$\log_{10}\,\Sigma_\mathrm{DM}/(\bar\rho_\mathrm{DM} L)$"),
}


#: Decades of dynamic range shown below each map's maximum.
DECADES_SHOWN = 4.5


def _log_image(data: np.ndarray) -> np.ndarray:
    """log10 of the map, floored ``DECADES_SHOWN`` decades below its maximum."""
    top = float(data.max())
    if top <= 0:
        return np.zeros_like(data)
    return np.log10(np.maximum(data, top * 10.0 ** (-DECADES_SHOWN)))


def plot_halo_maps(maps: HaloMaps, *, cmap: str = "magma", show_r200m: bool = True) -> Figure:
    """One panel per channel, log colour scale with the unit on each colour bar.

    Parameters
    ----------
    maps : HaloMaps
        The maps of one halo along one sightline.
    cmap : str
        matplotlib colour map.
    show_r200m : bool
        Draw a dashed circle at R200m.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    n = len(maps.channels)
    fig = Figure(figsize=(3.6 * n, 3.9), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    half = 0.5 * maps.npix * maps.pixel_mpc
    for ax, name, data in zip(axes, maps.channels, maps.data):
        title, label = _TITLES.get(name, (name, name))
        im = ax.imshow(_log_image(data), origin="lower", extent=(-half, half, -half, half), cmap=cmap)
        if show_r200m:
            ax.add_patch(Circle((0.0, 0.0), maps.r200m_mpc, fill=False, ls="--", lw=0.8, color="w"))
        ax.set_title(title)
        ax.set_xlabel("map x [Mpc]")
        fig.colorbar(im, ax=ax, orientation="horizontal", label=label, shrink=0.9)
    axes[0].set_ylabel("map y [Mpc]")
    fig.suptitle(
        f"halo {maps.halo_id}: log10 M200m = {maps.log10_m200m_msun:.2f} [Msun], "
        f"sightline axis {maps.axis}, {maps.npix}x{maps.npix} px of {maps.pixel_mpc:g} Mpc, "
        f"depth {maps.depth_mpc:g} Mpc ({maps.backend})"
    )
    return fig

"""The halo catalog's mass distribution (the left panel of the paper's Figure 1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    from matplotlib.figure import Figure

    from cmpipe.config import CatalogConfig, CosmologyConfig

__all__ = ["mass_bin_edges", "plot_mass_function"]

#: Width of the mass bins [dex].
BIN_DEX = 0.1


def mass_bin_edges(cat: CatalogConfig, width_dex: float = BIN_DEX) -> np.ndarray:
    """Edges of ``width_dex`` bins from the catalog's lower mass bound up to its upper one.

    The last bin ends at the upper bound (narrower if the range is not a whole number of bins).

    Returns
    -------
    (B + 1,) ndarray
        Edges [log10 Msun/h].
    """
    lo, hi = cat.log10_m_min_msun_h, cat.log10_m_max_msun_h
    n = max(int(np.ceil((hi - lo) / width_dex - 1e-9)), 1)
    edges = lo + width_dex * np.arange(n + 1)
    edges[-1] = hi
    return edges


def plot_mass_function(table: pa.Table, cat: CatalogConfig, cosmology: CosmologyConfig) -> Figure:
    """Histogram of log10 M200m per 0.1 dex against the counts the mass function expects.

    The catalog's counts are a step histogram; the expected counts (Tinker et al. 2008
    between the bounds in ``box`` mode, uniform in ``flat`` mode, from
    :func:`cmpipe.physics.catalog.expected_counts`) are points with Poisson error bars
    (sqrt of the expected count). Log count axis.

    Parameters
    ----------
    table : pyarrow.Table
        A catalog (:func:`cmpipe.physics.catalog.make_catalog`).
    cat, cosmology : CatalogConfig, CosmologyConfig
        The ``catalog`` and ``cosmology`` sections that made it.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    from cmpipe.physics.catalog import expected_counts

    log10_m = table.column("log10_m200m_msun_h").to_numpy()
    edges = mass_bin_edges(cat)
    counts, _ = np.histogram(log10_m, bins=edges)
    expected = expected_counts(edges, cat, cosmology)
    centres = 0.5 * (edges[1:] + edges[:-1])

    fig = Figure(figsize=(5.0, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.stairs(counts, edges, color="k", lw=1.5, label=f"catalog ({table.num_rows} halos)")
    model = "Tinker et al. 2008" if cat.mode == "box" else "uniform in log M"
    ax.errorbar(
        centres, expected, yerr=np.sqrt(expected), fmt="o", ms=3.5, color="C3", capsize=2,
        label=f"expected: {model} (Poisson errors)",
    )
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(r"$\log_{10}\,M_\mathrm{200m}$ [$h^{-1}\,M_\odot$]")
    ax.set_ylabel(f"halos per {BIN_DEX:g} dex")
    ax.set_title(f"Halo catalog, {cat.mode} mode, z = {cosmology.redshift:g}", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return fig

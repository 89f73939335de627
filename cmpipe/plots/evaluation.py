"""Figures of the evaluation report (the paper's section 4): arrays or tables in, Figure out.

Every function is pure: it takes numpy arrays (or small dicts of them, aggregated by
:mod:`cmpipe.evaluation.report`) and returns a :class:`matplotlib.figure.Figure`; nothing is shown or
saved here. Channels are the model's targets ``gas_sigma`` and ``dm_sigma``; mass bins are
``"low"`` and ``"high"`` (split at ``evaluate.mass_split_log10_msun_h``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "plot_calibration",
    "plot_convergence",
    "plot_mass_error_comparison",
    "plot_profile_comparison",
    "plot_spectral_comparison",
    "plot_example_maps",
    "plot_mass_distribution",
    "plot_mass_errors",
    "plot_profiles",
    "plot_spectral_ratio",
    "plot_standardized_errors",
    "plot_truth_vs_mean",
]

#: Display names of the channels.
CHANNEL_LABELS = {"sz_y": "SZ y", "xray_sb": "X-ray S_X", "gas_sigma": "gas", "dm_sigma": "dark matter"}
#: Colours of the mass bins and of the spectra comparisons.
BIN_COLOURS = {"low": "C0", "high": "C3"}
COMPARISON_COLOURS = {"sample": "C0", "posterior_mean": "C2", "input_sz_y": "C1", "input_xray_sb": "C4"}
#: Decades of dynamic range shown below each map's maximum in log-scaled panels.
DECADES_SHOWN = 4.5


def _label(channel: str) -> str:
    return CHANNEL_LABELS.get(channel, channel)


def _log_map(data: np.ndarray, top: float | None = None) -> np.ndarray:
    """log10 of a map, floored ``DECADES_SHOWN`` decades below ``top`` (default its maximum)."""
    data = np.asarray(data, dtype=np.float64)
    finite = data[np.isfinite(data)]
    top = float(finite.max()) if top is None and finite.size else (top or 0.0)
    if top <= 0:
        return np.zeros_like(data)
    return np.log10(np.clip(np.nan_to_num(data, nan=0.0), top * 10.0 ** (-DECADES_SHOWN), None))


def _no_data(ax, text: str = "no images") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def plot_mass_distribution(
    halo_log10_m: np.ndarray,
    split_log10_m: Mapping[str, np.ndarray],
    test_range: tuple[float, float],
    bins: int = 30,
    tested: tuple[float, float] | None = None,
) -> Figure:
    """Histograms of log10 M200m of the halos and of the images of each split (Fig. 1).

    Parameters
    ----------
    halo_log10_m : ndarray, shape (H,)
        log10 M200m of each unique halo [log10 Msun/h].
    split_log10_m : mapping
        Split name (``train``, ``val``, ``test``) -> log10 M200m of its images [log10 Msun/h].
    test_range : (float, float)
        The configured test mass range [log10 Msun/h] (dotted lines).
    tested : (float, float), optional
        The range the evaluated test halos actually span [log10 Msun/h], shaded (nothing is
        shaded where no test halo was evaluated).
    bins : int
        Number of bins spanning all values.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    values = [np.asarray(halo_log10_m, np.float64)] + [np.asarray(v, np.float64) for v in split_log10_m.values()]
    allv = np.concatenate(values) if values else np.array([])
    allv = allv[np.isfinite(allv)]
    lo, hi = (float(allv.min()), float(allv.max())) if allv.size else test_range
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    if tested is not None:
        ax.axvspan(*tested, color="0.85", zorder=0, label=f"evaluated test halos ({tested[0]:.2f}-{tested[1]:.2f})")
    for x in test_range:
        ax.axvline(x, color="0.4", ls=":", lw=0.9)
    ax.plot([], [], color="0.4", ls=":", lw=0.9, label="configured test range")
    ax.hist(values[0], bins=edges, histtype="step", color="k", lw=1.5, label=f"halos ({values[0].size})")
    for i, (name, v) in enumerate(split_log10_m.items()):
        ax.hist(np.asarray(v, np.float64), bins=edges, histtype="step", color=f"C{i}", label=f"{name} images ({len(v)})")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\log_{10} M_\mathrm{200m}$ [$h^{-1} M_\odot$]")
    ax.set_ylabel("count")
    ax.legend(fontsize="small")
    return fig


def plot_example_maps(
    maps: np.ndarray,
    channels: Sequence[str],
    units: Mapping[str, str],
    pixel_mpc: float,
    log10_m: np.ndarray,
) -> Figure:
    """The input and target maps of a few test images, one row each (Fig. 2).

    Parameters
    ----------
    maps : ndarray, shape (K, C, R, R)
        Physical maps (e.g. y, S_X, gas, DM) of ``K`` images.
    channels : sequence of str, length C
        Channel names.
    units : mapping
        Channel -> unit string (the posterior store's ``channel_units``).
    pixel_mpc : float
        Pixel side [Mpc].
    log10_m : ndarray, shape (K,)
        log10 M200m of each image [log10 Msun/h].

    Returns
    -------
    matplotlib.figure.Figure
        Log colour scale, ``DECADES_SHOWN`` decades below each map's maximum.
    """
    from matplotlib.figure import Figure

    maps = np.asarray(maps, dtype=np.float64)
    k, c = maps.shape[:2]
    fig = Figure(figsize=(3.2 * c, 3.3 * max(k, 1)), layout="constrained")
    axes = fig.subplots(max(k, 1), c, squeeze=False)
    half = 0.5 * maps.shape[-1] * pixel_mpc if maps.ndim == 4 else 1.0
    if k == 0:
        for ax in axes[0]:
            _no_data(ax)
        return fig
    for i in range(k):
        for j, name in enumerate(channels):
            ax = axes[i, j]
            im = ax.imshow(_log_map(maps[i, j]), origin="lower", extent=(-half, half, -half, half), cmap="magma")
            fig.colorbar(im, ax=ax, shrink=0.85, label=f"log10 [{units.get(name, '')}]")
            ax.set_title(f"{_label(name)}, log M = {log10_m[i]:.2f}", fontsize="small")
            if i == k - 1:
                ax.set_xlabel("x [Mpc]")
        axes[i, 0].set_ylabel("y [Mpc]")
    return fig


def plot_truth_vs_mean(
    truth: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    channels: Sequence[str],
    units: Mapping[str, str],
    pixel_mpc: float,
    log10_m: np.ndarray,
) -> Figure:
    """True map, posterior mean and posterior std per channel for a few test images (Fig. 4).

    Parameters
    ----------
    truth, mean, std : ndarray, shape (K, 2, R, R)
        True maps, posterior-mean maps and posterior std maps (physical units).
    channels : sequence of str, length 2
    units : mapping
        Channel -> unit string.
    pixel_mpc : float
        Pixel side [Mpc].
    log10_m : ndarray, shape (K,)
        log10 M200m [log10 Msun/h].

    Returns
    -------
    matplotlib.figure.Figure
        One row per image; per channel the truth and mean share one log colour scale (floored
        ``DECADES_SHOWN`` decades below the truth's maximum), then the std (own log scale).
    """
    from matplotlib.figure import Figure

    truth, mean, std = (np.asarray(a, dtype=np.float64) for a in (truth, mean, std))
    k = truth.shape[0]
    ncol = 3 * len(channels)
    fig = Figure(figsize=(2.7 * ncol, 2.6 * max(k, 1)), layout="constrained")
    axes = fig.subplots(max(k, 1), ncol, squeeze=False)
    if k == 0:
        for ax in axes[0]:
            _no_data(ax)
        return fig
    half = 0.5 * truth.shape[-1] * pixel_mpc
    ext = (-half, half, -half, half)
    for i in range(k):
        for c, name in enumerate(channels):
            top = float(np.nanmax(truth[i, c])) if np.isfinite(truth[i, c]).any() else 0.0
            lt, lm = _log_map(truth[i, c], top), _log_map(mean[i, c], top)
            vmin, vmax = float(min(lt.min(), lm.min())), float(max(lt.max(), lm.max()))
            for j, (what, img) in enumerate((("true", lt), ("mean", lm))):
                ax = axes[i, 3 * c + j]
                im = ax.imshow(img, origin="lower", extent=ext, cmap="magma", vmin=vmin, vmax=vmax)
                ax.set_title(f"{what} {_label(name)}, log M={log10_m[i]:.2f}", fontsize="x-small")
            fig.colorbar(im, ax=axes[i, 3 * c: 3 * c + 2], shrink=0.8, label=f"log10 [{units.get(name, '')}]")
            ax = axes[i, 3 * c + 2]
            im = ax.imshow(_log_map(std[i, c]), origin="lower", extent=ext, cmap="viridis")
            ax.set_title(f"std {_label(name)}", fontsize="x-small")
            fig.colorbar(im, ax=ax, shrink=0.8, label="log10 std")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_convergence(
    n_values: np.ndarray,
    summary: Mapping[str, Mapping[str, np.ndarray]],
    tolerance: float,
    n_converged: Mapping[str, int | None],
) -> Figure:
    """Monte-Carlo error of the n-sample posterior mean over its actual error vs n (Fig. 5).

    Parameters
    ----------
    n_values : ndarray, shape (K,)
        Sample counts ``n``.
    summary : mapping
        Channel -> ``{"median", "p16", "p84"}`` arrays of shape (K,) over halos (dimensionless):
        the median over pixels within R200m of ``(sigma / sqrt(n)) / |mean_n - truth|``.
    tolerance : float
        ``evaluate.convergence_tolerance``.
    n_converged : mapping
        Channel -> the ``n`` from which the median stays below ``tolerance`` (None: never).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.subplots()
    n = np.asarray(n_values)
    for i, (channel, s) in enumerate(summary.items()):
        nc = n_converged.get(channel)
        conv = f"converged at n = {nc}" if nc is not None else "not converged"
        ax.fill_between(n, s["p16"], s["p84"], color=f"C{i}", alpha=0.2, lw=0)
        ax.plot(n, s["median"], color=f"C{i}", label=f"{_label(channel)} (median; {conv})")
        if nc is not None:
            ax.axvline(nc, color=f"C{i}", ls=":", lw=0.8)
    ax.axhline(tolerance, color="k", ls="--", lw=0.8, label=f"tolerance {tolerance:g}")
    if not summary:
        _no_data(ax)
    ax.set_xlabel("number of samples n")
    ax.set_ylabel(r"$(\sigma / \sqrt{n}) \,/\, |\bar{x}_n - x_\mathrm{true}|$ (median, $r < R_\mathrm{200m}$)")
    ax.set_yscale("log")
    vals = np.concatenate([np.asarray(v[q], np.float64) for v in summary.values() for q in ("p16", "median", "p84")]
                          + [np.array([tolerance])])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    ax.set_ylim(vals.min() / 1.5, vals.max() * 1.5)
    ax.legend(fontsize="small")
    return fig


def plot_standardized_errors(
    edges: np.ndarray,
    counts: Mapping[str, np.ndarray],
    z_std: Mapping[str, float | tuple[float, float]],
) -> Figure:
    """Density of the standardized pixel errors with N(0, 1) overlaid (Fig. 6).

    Parameters
    ----------
    edges : ndarray, shape (B + 1,)
        Bin edges (:data:`cmpipe.evaluation.metrics.Z_EDGES`).
    counts : mapping
        Channel -> counts of shape (B,) summed over images.
    z_std : mapping
        Channel -> the std of z, or ``(std, robust width)``, computed from the raw values (the
        histogram clips values beyond the edges into its end bins: for the eye only).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    edges = np.asarray(edges, dtype=np.float64)
    fig = Figure(figsize=(4.5 * max(len(counts), 1), 3.8), layout="constrained")
    axes = fig.subplots(1, max(len(counts), 1), squeeze=False)[0]
    x = np.linspace(edges[0], edges[-1], 400)
    gauss = np.exp(-0.5 * x**2) / np.sqrt(2.0 * np.pi)
    for ax, (channel, cts) in zip(axes, counts.items()):
        cts = np.asarray(cts, dtype=np.float64)
        total = cts.sum()
        if total > 0:
            ax.stairs(cts / (total * np.diff(edges)), edges, color="C0", label="test pixels")
        else:
            _no_data(ax, "no pixels")
        ax.plot(x, gauss, "k--", lw=0.8, label="N(0, 1)")
        w = z_std.get(channel, np.nan)
        std, mad = (w if isinstance(w, tuple) else (w, np.nan))
        ax.set_title(f"{_label(channel)}: std(z) = {std:.3f}" + (f", 1.48 MAD = {mad:.3f}" if np.isfinite(mad) else ""),
                     fontsize="small")
        ax.set_xlabel(r"$z = (\mu - x_\mathrm{true}) / \sigma$")
        ax.set_ylabel("density")
        ax.legend(fontsize="small")
    return fig


def _reference_band(ax, bias: float, scatter: float) -> None:
    """de Andres et al. (2024): bias +- scatter (not +-(bias + scatter))."""
    ax.axhspan(bias - scatter, bias + scatter, color="0.9", zorder=0,
               label=f"de Andres+24: bias {bias:+.0%} $\\pm$ scatter {scatter:.0%}")


def _band(ax, x, stats, colour, label, ls="-"):
    ax.fill_between(x, stats["p16"], stats["p84"], color=colour, alpha=0.18, lw=0)
    ax.plot(x, stats["mean"], color=colour, ls=ls, label=label)


def plot_profiles(
    summary: Mapping[tuple[str, str], Mapping[str, object]],
    channels: Sequence[str],
    mass_bins: Sequence[str] = ("low", "high"),
) -> Figure:
    """Stacked true and posterior-mean radial profiles and their fractional error (Fig. 7).

    Parameters
    ----------
    summary : mapping
        ``(channel, mass_bin)`` -> ``{"r_mpc": (nb,), "n_images": int, "true", "pred",
        "frac"}`` where the last three are dicts ``{"mean", "p16", "p84"}`` of shape (nb,)
        over images (:func:`cmpipe.evaluation.report.profile_summary_by_bin`).
    channels : sequence of str
        One column each.
    mass_bins : sequence of str
        One colour each.

    Returns
    -------
    matplotlib.figure.Figure
        Top row: profiles (solid: truth, dashed: posterior mean; bands: 16-84 percentiles over
        halos); bottom row: mean fractional error over halos with its 16-84 band, the median
        |fractional error| (dotted) and the +-5 % reference.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(channels), 6.0), layout="constrained")
    axes = fig.subplots(2, len(channels), squeeze=False, sharex="col", height_ratios=(2.2, 1))
    for j, channel in enumerate(channels):
        top, bottom = axes[0, j], axes[1, j]
        any_data = False
        for b in mass_bins:
            s = summary.get((channel, b))
            if not s or not s["n_images"]:
                continue
            any_data = True
            colour = BIN_COLOURS.get(b, "C5")
            r = np.asarray(s["r_mpc"])
            _band(top, r, s["true"], colour, f"{b} mass truth ({s.get('n_halos', '?')} halos, {s['n_images']} images)")
            top.plot(r, s["pred"]["mean"], color=colour, ls="--", label=f"{b} mass posterior mean")
            _band(bottom, r, s["frac"], colour, f"{b} mass (signed)")
            if "abs_frac" in s:
                bottom.plot(r, s["abs_frac"]["median"], color=colour, ls=":", label=f"{b} mass median |error|")
        if not any_data:
            _no_data(top)
        else:
            top.set_yscale("log")
        bottom.axhspan(-0.05, 0.05, color="0.9", zorder=0, label=r"$\pm$5 %")
        bottom.axhline(0.0, color="k", lw=0.6)
        top.set_title(_label(channel))
        top.set_ylabel("mean map value in annulus")
        top.legend(fontsize="x-small")
        bottom.set_xlabel("r [Mpc]")
        bottom.set_ylabel("(pred - true) / true")
        bottom.legend(fontsize="x-small")
    return fig


def _finish_spectral_axis(ax, drawn: bool, channel: str, mass_bin: str, quantity: str, k_split: float,
                          bottom_row: bool, legend_size: str) -> None:
    """The common decoration of a b(k) or r(k) panel: unity and k_split lines, log k, labels."""
    if not drawn:
        _no_data(ax)
    ax.axhline(1.0, color="k", ls="--", lw=0.7)
    ax.axvline(k_split, color="0.4", ls=":", lw=0.9, label=f"k_split = {k_split:.2f}")
    ax.set_xscale("log")
    from matplotlib.ticker import LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="both", labelsize="small")
    ax.set_title(f"{_label(channel)}, {mass_bin} mass", fontsize="small")
    ax.set_ylabel(f"{quantity}(k)")
    if bottom_row:
        ax.set_xlabel(r"k [Mpc$^{-1}$]")
    ax.legend(fontsize=legend_size)


def plot_spectral_ratio(
    summary: Mapping[tuple[str, str, str], Mapping[str, np.ndarray]],
    quantity: str,
    channels: Sequence[str],
    comparisons: Sequence[str],
    k_split: float,
    mass_bins: Sequence[str] = ("low", "high"),
) -> Figure:
    """b(k) (Fig. 8) or r(k) (Fig. 9) per channel (columns) and mass bin (rows).

    Parameters
    ----------
    summary : mapping
        ``(channel, mass_bin, comparison)`` -> ``{"k": (nk,) [Mpc^-1], "mean", "p16", "p84":
        (nk,), "n_images": int}`` over images.
    quantity : {"b", "r"}
        Label and reference line (1).
    channels, comparisons, mass_bins : sequence of str
    k_split : float
        Large / small scale split [Mpc^-1], a vertical line.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8 * len(channels), 3.4 * len(mass_bins)), layout="constrained")
    axes = fig.subplots(len(mass_bins), len(channels), squeeze=False, sharex=True)
    for i, b in enumerate(mass_bins):
        for j, channel in enumerate(channels):
            ax = axes[i, j]
            drawn = False
            for comp in comparisons:
                s = summary.get((channel, b, comp))
                if not s or not s["n_images"]:
                    continue
                drawn = True
                n = f"{s.get('n_halos', s['n_images'])} halos"
                if comp.startswith("baseline_"):
                    ax.plot(np.asarray(s["k"]), s["mean"], color="0.3", ls=(0, (3, 1, 1, 1)), lw=1.0, label=f"{comp} ({n})")
                    continue
                _band(ax, np.asarray(s["k"]), s, COMPARISON_COLOURS.get(comp, "C7"), f"{comp} ({n})")
            _finish_spectral_axis(ax, drawn, channel, b, quantity, k_split, i == len(mass_bins) - 1, "x-small")
    return fig


def plot_mass_errors(
    data: Mapping[str, Mapping[str, np.ndarray]],
    mass_split: float,
    reference_bias: float = 0.01,
    reference_scatter: float = 0.03,
) -> Figure:
    """Total-mass fractional error vs log10 M200m, per channel (whole map and within R200m).

    Parameters
    ----------
    data : mapping
        Channel -> ``{"log10_m": (M,), "whole": (M,), "r200m": (M,)}`` and optionally
        ``"r500c"`` (fractional errors per image, dimensionless).
    mass_split : float
        Low / high mass boundary [log10 Msun/h].
    reference_bias, reference_scatter : float
        de Andres et al. (2024): the band ``bias - scatter .. bias + scatter`` is shaded.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8 * max(len(data), 1), 3.8), layout="constrained")
    axes = fig.subplots(1, max(len(data), 1), squeeze=False)[0]
    for ax, (channel, d) in zip(axes, data.items()):
        _reference_band(ax, reference_bias, reference_scatter)
        if "r500c" in d and np.isfinite(np.asarray(d["r500c"], np.float64)).any():
            ax.plot(d["log10_m"], d["r500c"], "^", ms=4, mfc="none", color="C2", label=r"within $R_\mathrm{500c}$")
        ax.plot(d["log10_m"], d["whole"], "o", ms=4, color="C0", label="whole map")
        ax.plot(d["log10_m"], d["r200m"], "s", ms=4, mfc="none", color="C3", label=r"within $R_\mathrm{200m}$")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.axvline(mass_split, color="0.4", ls=":", lw=0.9)
        ax.set_title(_label(channel))
        ax.set_xlabel(r"$\log_{10} M_\mathrm{200m}$ [$h^{-1} M_\odot$]")
        ax.set_ylabel("(M_pred - M_true) / M_true")
        ax.legend(fontsize="x-small")
    return fig


def plot_calibration(
    coverage: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    ranks: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    tarp: Mapping[str, tuple[np.ndarray, np.ndarray]] | None,
    tarp_note: str = "",
) -> Figure:
    """Calibration per channel (rows): interval coverage, rank histograms, TARP.

    Parameters
    ----------
    coverage : mapping
        Channel -> quantity -> ``(levels, observed)``, each of shape (L,) (mean over images).
    ranks : mapping
        Channel -> rank name -> ``(counts, expected)``, each of shape (n_bins,) (expected:
        uniform ranks, :func:`cmpipe.evaluation.metrics.rank_bin_probabilities` times the count).
    tarp : mapping or None
        Channel -> ``(alpha, ecp)``; None when not available.
    tarp_note : str
        Why ``tarp`` is None: the TARP column is then left out and this note is the figure's
        subtitle (no empty panels).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    channels = list(coverage) or list(ranks)
    rank_names = sorted({name for c in ranks.values() for name in c})
    with_tarp = tarp is not None
    ncol = 1 + len(rank_names) + int(with_tarp)
    fig = Figure(figsize=(3.6 * ncol, 3.4 * max(len(channels), 1)), layout="constrained")
    axes = fig.subplots(max(len(channels), 1), ncol, squeeze=False)
    for i, channel in enumerate(channels):
        ax = axes[i, 0]
        for q, (levels, obs) in coverage.get(channel, {}).items():
            ax.plot(levels, obs, "o-", ms=3, label=q)
        ax.plot([0, 1], [0, 1], "k--", lw=0.7)
        ax.set_xlabel("credible level")
        ax.set_ylabel("observed coverage")
        ax.set_title(f"{_label(channel)}: interval coverage", fontsize="small")
        ax.legend(fontsize="x-small")
        for j, name in enumerate(rank_names):
            ax = axes[i, 1 + j]
            counts, expected = ranks.get(channel, {}).get(name, (np.zeros(0), np.zeros(0)))
            if len(counts):
                x = np.arange(len(counts))
                ax.bar(x, counts, width=0.9, color="C0", alpha=0.7, label="observed")
                ax.step(np.append(x, x[-1] + 1) - 0.5, np.append(expected, expected[-1]), where="post",
                        color="k", ls="--", lw=0.8, label="uniform")
                ax.legend(fontsize="x-small")
            else:
                _no_data(ax)
            ax.set_xlabel("rank bin")
            ax.set_ylabel("halos (images weighted 1 / n_images of their halo)", fontsize="x-small")
            ax.set_title(f"{_label(channel)}: {name}", fontsize="small")
        if not with_tarp:
            continue
        ax = axes[i, -1]
        if channel in tarp:
            alpha, ecp = tarp[channel]
            ax.plot(alpha, ecp, color="C2", label="TARP")
            ax.legend(fontsize="x-small")
        else:
            _no_data(ax, "TARP not available")
        ax.plot([0, 1], [0, 1], "k--", lw=0.7)
        ax.set_xlabel("credibility level")
        ax.set_ylabel("expected coverage")
        ax.set_title(f"{_label(channel)}: TARP (whole maps)", fontsize="small")
    if not with_tarp:
        fig.suptitle(f"TARP: {tarp_note or 'not available'}", fontsize="small")
    return fig


# --------------------------------------------------------------------------- comparison of models


def plot_profile_comparison(
    summaries: Mapping[str, Mapping[tuple[str, str], Mapping[str, object]]],
    channels: Sequence[str],
    mass_bin: str = "all",
) -> Figure:
    """Fractional error of the posterior-mean radial profiles vs r, one colour per model.

    Parameters
    ----------
    summaries : mapping
        Model label -> :func:`cmpipe.evaluation.report.profile_summary_by_bin` of its results (on the
        same images).
    channels : sequence of str
        One column each.
    mass_bin : str
        ``"low"``, ``"high"`` or ``"all"``.

    Returns
    -------
    matplotlib.figure.Figure
        Mean over images of ``(pred - true) / true`` with its 16-84 % band per model and the
        +-5 % reference band.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0 * len(channels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(channels), squeeze=False)[0]
    for ax, channel in zip(axes, channels):
        drawn = False
        for i, (label, summary) in enumerate(summaries.items()):
            s = summary.get((channel, mass_bin))
            if not s or not s["n_images"]:
                continue
            drawn = True
            _band(ax, np.asarray(s["r_mpc"]), s["frac"], f"C{i}", f"{label} ({s['n_images']})")
        if not drawn:
            _no_data(ax)
        ax.axhspan(-0.05, 0.05, color="0.9", zorder=0, label=r"$\pm$5 %")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_title(f"{_label(channel)} ({mass_bin} masses)")
        ax.set_xlabel("r [Mpc]")
        ax.set_ylabel("(pred - true) / true")
        ax.legend(fontsize="x-small")
    return fig


def plot_spectral_comparison(
    summaries: Mapping[str, Mapping[tuple[str, str, str], Mapping[str, np.ndarray]]],
    quantity: str,
    channels: Sequence[str],
    k_split: float,
    comparisons: Sequence[str] = ("posterior_mean", "sample"),
    baselines: Sequence[str] = (),
    mass_bins: Sequence[str] = ("low", "high"),
) -> Figure:
    """b(k) or r(k) of several models side by side: channels (columns), mass bins (rows).

    Parameters
    ----------
    summaries : mapping
        Model label -> :func:`cmpipe.evaluation.report.spectra_summary_by_bin` of its results (same
        images). One colour per model; ``posterior_mean``: solid line with its 16-84 % band,
        ``sample``: dashed line without a band (other comparisons: dotted).
    quantity : {"b", "r"}
    channels : sequence of str
    k_split : float
        Large / small scale split [Mpc^-1], a vertical line.
    comparisons : sequence of str
        Drawn per model.
    baselines : sequence of str
        Comparisons drawn once, from the first model that has them (the inputs' r(k): the same
        condition and true maps whatever the model), in grey.
    mass_bins : sequence of str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    styles = {"posterior_mean": "-", "sample": "--"}
    greys = ("0.45", "0.7", "0.2")
    fig = Figure(figsize=(4.8 * len(channels), 3.4 * len(mass_bins)), layout="constrained")
    axes = fig.subplots(len(mass_bins), len(channels), squeeze=False, sharex=True)
    for i, b in enumerate(mass_bins):
        for j, channel in enumerate(channels):
            ax = axes[i, j]
            drawn = False
            for m, (label, summary) in enumerate(summaries.items()):
                for comp in comparisons:
                    s = summary.get((channel, b, comp))
                    if not s or not s["n_images"]:
                        continue
                    drawn = True
                    k, name = np.asarray(s["k"]), f"{label}: {comp} ({s['n_images']})"
                    if comp == "posterior_mean":
                        _band(ax, k, s, f"C{m}", name)
                    else:
                        ax.plot(k, s["mean"], color=f"C{m}", ls=styles.get(comp, ":"), label=name)
            for g, comp in enumerate(baselines):
                s = next((summary[(channel, b, comp)] for summary in summaries.values()
                          if (channel, b, comp) in summary and summary[(channel, b, comp)]["n_images"]), None)
                if s is not None:
                    drawn = True
                    ax.plot(np.asarray(s["k"]), s["mean"], color=greys[g % len(greys)], ls="-.", lw=1.0, label=comp)
            _finish_spectral_axis(ax, drawn, channel, b, quantity, k_split, i == len(mass_bins) - 1, "xx-small")
    return fig


def plot_mass_error_comparison(
    data: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    channels: Sequence[str],
    mass_split: float,
    reference_bias: float = 0.01,
    reference_scatter: float = 0.03,
) -> Figure:
    """Whole-map total-mass fractional error vs log10 M200m, one colour per model.

    Parameters
    ----------
    data : mapping
        Model label -> channel -> ``{"log10_m": (M,), "whole": (M,)}`` (fractional error of the
        posterior-mean map's mass, dimensionless).
    channels : sequence of str
        One column each.
    mass_split : float
        Low / high mass boundary [log10 Msun/h].
    reference_bias, reference_scatter : float
        de Andres et al. (2024): the band ``bias - scatter .. bias + scatter`` is shaded.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    markers = "os^Dv<>p"
    fig = Figure(figsize=(4.8 * len(channels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(channels), squeeze=False)[0]
    for ax, channel in zip(axes, channels):
        _reference_band(ax, reference_bias, reference_scatter)
        drawn = False
        for m, (label, per_channel) in enumerate(data.items()):
            d = per_channel.get(channel)
            if d is None or not len(d["log10_m"]):
                continue
            drawn = True
            ax.plot(d["log10_m"], d["whole"], markers[m % len(markers)], ms=4, mfc="none", color=f"C{m}",
                    label=f"{label} ({len(d['log10_m'])})")
        if not drawn:
            _no_data(ax)
        ax.axhline(0.0, color="k", lw=0.6)
        ax.axvline(mass_split, color="0.4", ls=":", lw=0.9)
        ax.set_title(f"{_label(channel)}: whole map")
        ax.set_xlabel(r"$\log_{10} M_\mathrm{200m}$ [$h^{-1} M_\odot$]")
        ax.set_ylabel("(M_pred - M_true) / M_true")
        ax.legend(fontsize="x-small")
    return fig

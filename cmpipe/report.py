"""The evaluation report of ``cmpipe report``: figures, Table 1 and summaries from the result tables.

Reads only what ``cmpipe infer`` wrote under a results directory: the Parquet tables
``RESULTS/tables/*`` (:mod:`cmpipe.store.tables`), ``RESULTS/images.parquet`` and
``RESULTS/posterior.zarr`` (:mod:`cmpipe.store.posterior`; its ``config_yaml`` attribute gives
the ``evaluate`` settings). Never the model or the image store.

Aggregation is done by small named functions (:func:`table1`, :func:`mass_error_summary`,
:func:`profile_summary_by_bin`, :func:`spectra_summary_by_bin`, :func:`convergence_summary`,
:func:`zhist_summary`, :func:`coverage_summary`, :func:`rank_summary`); figures come from
:mod:`cmpipe.plots.evaluation`. Mass bins: ``low`` is ``log10 M200m <
evaluate.mass_split_log10_msun_h``, ``high`` the rest. A bin without images gives NaN cells
(written "no images"), never an error.

:func:`compare_reports` puts two or more results directories (e.g. the diffusion model and the
U-Net baseline, ``model.kind`` ``score`` / ``unet``) side by side with the same metrics, on the
images they have in common.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cmpipe.evaluate import TARGETS

logger = logging.getLogger(__name__)

__all__ = [
    "MASS_BINS",
    "REFERENCES",
    "compare_reports",
    "convergence_summary",
    "coverage_summary",
    "headline_numbers",
    "make_report",
    "mass_bin",
    "mass_error_summary",
    "profile_summary_by_bin",
    "rank_summary",
    "report_settings",
    "spectra_summary_by_bin",
    "table1",
    "zhist_summary",
]

#: Mass bins of the split figures and tables.
MASS_BINS = ("low", "high")
#: The paper's (and de Andres et al. 2024's) reference figures, quoted beside ours.
REFERENCES = {
    "profile_central": "1-2 % within the central Mpc (paper, Fig. 7)",
    "profile_edge": "<= 5 % at the map edge (paper, Fig. 7)",
    "mass_bias": "~1 % (de Andres et al. 2024)",
    "mass_scatter": "<= 3 % (de Andres et al. 2024)",
    "z_std": "< 1: narrower than N(0, 1), under-confident (paper, Fig. 6)",
    "n_converged": "~40 samples (paper, Fig. 5)",
}
_TABLES = ("clusters", "profiles", "spectra", "convergence", "zhist", "coverage")
#: What :func:`make_report` writes into its directory (marked ``report``; anything else there is refused).
REPORT_NAMES = ("fig*.png", "table1.csv", "table1.md", "mass_errors.csv", "mass_errors.md", "calibration.md",
                "report.md", "profile_errors.csv")
#: What :func:`compare_reports` writes into its directory (marked ``comparison``).
COMPARISON_NAMES = ("comparison*.png", "comparison_*.csv", "comparison.md")


def _check_results_dir(results: Path) -> Path:
    """``results`` is an existing directory (else a one-line error naming it, before anything is made)."""
    from cmpipe.store.tables import TableError

    if not results.is_dir():
        raise TableError(f"results directory {results} does not exist or is not a directory (run `cmpipe infer` first)")
    return results


# --------------------------------------------------------------------------- reading


def report_settings(attrs: Mapping[str, Any]) -> dict[str, float]:
    """The ``evaluate`` settings of the run, from the posterior store's root attributes.

    Parameters
    ----------
    attrs : mapping
        ``posterior.zarr`` attributes: ``config_yaml``, ``resolution``, ``pixel_mpc`` [Mpc].

    Returns
    -------
    dict
        ``mass_split`` [log10 Msun/h], ``k_split`` [Mpc^-1] (``sqrt(k_F k_Nyq)`` of the model's
        grid when the config says 0), ``tolerance``, ``test_min``, ``test_max`` [log10 Msun/h].
    """
    import yaml

    from cmpipe.config import config_from_dict
    from cmpipe.metrics import scale_split_k

    cfg = config_from_dict(yaml.safe_load(attrs["config_yaml"]), "posterior.zarr config_yaml")
    ev = cfg.evaluate
    k_split = ev.k_split_mpc_inv or scale_split_k(int(attrs["resolution"]), float(attrs["pixel_mpc"]))
    return {"mass_split": float(ev.mass_split_log10_msun_h), "k_split": float(k_split),
            "tolerance": float(ev.convergence_tolerance), "test_min": float(ev.test_log10_m_min_msun_h),
            "test_max": float(ev.test_log10_m_max_msun_h)}


def _read_tables(results: Path) -> dict[str, pd.DataFrame]:
    from cmpipe.store.tables import read_images_table, read_table

    frames = {name: read_table(results, name).to_pandas() for name in _TABLES}
    frames["images"] = read_images_table(results).to_pandas()
    return frames


def _read_results(results: Path) -> tuple[dict[str, pd.DataFrame], Any, dict[str, Any], dict[str, float]]:
    """``(tables, posterior group, its attrs, report_settings)`` of a results directory."""
    from cmpipe.store.posterior import open_posterior

    frames = _read_tables(results)
    group = open_posterior(results)
    attrs = dict(group.attrs)
    return frames, group, attrs, report_settings(attrs)


def mass_bin(log10_m: np.ndarray | pd.Series, mass_split: float) -> np.ndarray:
    """``"low"`` where ``log10_m < mass_split`` [log10 Msun/h], else ``"high"``."""
    return np.where(np.asarray(log10_m, dtype=np.float64) < mass_split, "low", "high")


def _in_bin(df: pd.DataFrame, b: str, mass_split: float) -> pd.DataFrame:
    return df[mass_bin(df["log10_m200m_msun_h"], mass_split) == b]


def _mean(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """Mean that gives NaN (no warning) on an empty axis."""
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0 or (axis is not None and x.shape[axis] == 0):
        shape = () if axis is None else tuple(s for i, s in enumerate(x.shape) if i != axis)
        return np.full(shape, np.nan) if shape else float("nan")
    return x.mean(axis=axis)


def _per_image(df: pd.DataFrame, value: str, column: str = "bin") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_index (M,), column values (K,), values (M, K))`` of a long table."""
    wide = df.pivot_table(index="image_index", columns=column, values=value, aggfunc="first", dropna=False)
    return wide.index.to_numpy(), wide.columns.to_numpy(), wide.to_numpy(dtype=np.float64)


def _stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, 16th and 84th percentiles over axis 0 (NaN when there are no rows)."""
    if values.shape[0] == 0:
        nan = np.full(values.shape[1:], np.nan)
        return {"mean": nan, "p16": nan, "p84": nan}
    p16, p84 = np.percentile(values, [16.0, 84.0], axis=0)
    return {"mean": values.mean(axis=0), "p16": p16, "p84": p84}


# --------------------------------------------------------------------------- aggregation


def table1(
    spectra: pd.DataFrame,
    mass_split: float,
    k_split: float,
    comparisons: Sequence[str] = ("sample", "posterior_mean"),
) -> pd.DataFrame:
    """The paper's Table 1: bias and correlation on large and small scales per channel and mass bin.

    For each comparison, channel and mass bin: per image, ``b_large`` is the unweighted mean
    of ``b(k)`` over the k bins with ``k_mpc_inv < k_split`` and ``b_small`` over those with
    ``k_mpc_inv >= k_split`` (:func:`cmpipe.metrics.large_small_means`; likewise ``r``); the
    cell is the unweighted mean of these per-image values over the images of the mass bin
    (NaN if the bin has no image; NaNs propagate). ``comparison="sample"`` is the paper's
    generated maps (single samples; their spectra averaged over the samples of an image),
    ``"posterior_mean"`` the n-sample mean map.

    Parameters
    ----------
    spectra : DataFrame
        The ``spectra`` table.
    mass_split : float
        Low / high mass boundary [log10 Msun/h].
    k_split : float
        Large / small scale boundary [Mpc^-1].
    comparisons : sequence of str

    Returns
    -------
    DataFrame
        Columns ``comparison, channel, mass_bin, n_images, b_large, b_small, r_large,
        r_small`` (dimensionless); rows ordered comparison x [gas, DM] x [low, high].
    """
    from cmpipe.metrics import large_small_means

    rows = []
    for comp in comparisons:
        for channel in TARGETS:
            sel = spectra[(spectra["comparison"] == comp) & (spectra["channel"] == channel)]
            for b in MASS_BINS:
                part = _in_bin(sel, b, mass_split)
                row: dict[str, Any] = {"comparison": comp, "channel": channel, "mass_bin": b}
                images = part["image_index"].unique()
                row["n_images"] = int(images.size)
                for q in ("b", "r"):
                    _, _, values = _per_image(part, q) if len(part) else (None, None, np.zeros((0, 0)))
                    _, _, kk = _per_image(part, "k_mpc_inv") if len(part) else (None, None, np.zeros((0, 0)))
                    if values.shape[0] == 0:
                        large = small = np.zeros(0)
                    else:
                        large, small = large_small_means(kk[0], values, k_split)
                    row[f"{q}_large"] = float(_mean(large))
                    row[f"{q}_small"] = float(_mean(small))
                rows.append(row)
    return pd.DataFrame(rows, columns=["comparison", "channel", "mass_bin", "n_images",
                                       "b_large", "b_small", "r_large", "r_small"])


def mass_error_summary(clusters: pd.DataFrame, mass_split: float) -> pd.DataFrame:
    """Total-mass fractional error statistics per channel, aperture and mass bin.

    Parameters
    ----------
    clusters : DataFrame
        The ``clusters`` table (``mass_frac_error``: whole map; ``mass_r200m_frac_error``:
        within R200m; both ``(pred - true) / true`` of the posterior-mean map).
    mass_split : float
        Low / high mass boundary [log10 Msun/h].

    Returns
    -------
    DataFrame
        Columns ``channel, aperture ("whole" | "r200m"), mass_bin ("low" | "high" | "all"),
        n_images, bias`` (mean), ``scatter`` (std with ddof=1; NaN below 2 images),
        ``median``, ``ref_bias`` (0.01), ``ref_scatter`` (0.03): de Andres et al. 2024. All
        dimensionless fractions; NaN for a bin without images.
    """
    rows = []
    for channel in TARGETS:
        sel = clusters[clusters["channel"] == channel]
        for aperture, col in (("whole", "mass_frac_error"), ("r200m", "mass_r200m_frac_error")):
            for b in (*MASS_BINS, "all"):
                part = sel if b == "all" else _in_bin(sel, b, mass_split)
                x = part[col].to_numpy(dtype=np.float64)
                rows.append({
                    "channel": channel, "aperture": aperture, "mass_bin": b, "n_images": int(x.size),
                    "bias": float(_mean(x)),
                    "scatter": float(x.std(ddof=1)) if x.size >= 2 else float("nan"),
                    "median": float(np.median(x)) if x.size else float("nan"),
                    "ref_bias": 0.01, "ref_scatter": 0.03,
                })
    return pd.DataFrame(rows)


def profile_summary_by_bin(profiles: pd.DataFrame, mass_split: float) -> dict[tuple[str, str], dict[str, Any]]:
    """Stacked profiles per channel and mass bin (Fig. 7).

    Parameters
    ----------
    profiles : DataFrame
        The ``profiles`` table.
    mass_split : float
        [log10 Msun/h].

    Returns
    -------
    dict
        ``(channel, mass_bin)`` (mass bins ``low``, ``high``, ``all``) -> ``{"r_mpc": (nb,)
        [Mpc], "n_images": int, "true", "pred", "frac"}``; the last three are ``{"mean",
        "p16", "p84"}`` over images of the true profile, the posterior-mean profile
        [channel unit] and the fractional error ``(pred - true) / true``.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    bins = np.sort(profiles["bin"].unique())
    r = profiles.groupby("bin")["r_mpc"].first().reindex(bins).to_numpy(dtype=np.float64)
    for channel in TARGETS:
        sel = profiles[profiles["channel"] == channel]
        for b in (*MASS_BINS, "all"):
            part = sel if b == "all" else _in_bin(sel, b, mass_split)
            entry: dict[str, Any] = {"r_mpc": r, "n_images": int(part["image_index"].nunique())}
            for key, col in (("true", "true"), ("pred", "pred_mean"), ("frac", "frac_error")):
                values = _per_image(part, col)[2] if len(part) else np.zeros((0, r.size))
                entry[key] = _stats(values)
            out[(channel, b)] = entry
    return out


def spectra_summary_by_bin(
    spectra: pd.DataFrame, mass_split: float, quantity: str
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Mean and 16-84 % band over images of ``b(k)`` or ``r(k)`` (Figs. 8, 9).

    Returns
    -------
    dict
        ``(channel, mass_bin, comparison)`` -> ``{"k": (nk,) [Mpc^-1], "mean", "p16",
        "p84": (nk,), "n_images": int}``.
    """
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for (channel, comp), sel in spectra.groupby(["channel", "comparison"]):
        k = sel.groupby("bin")["k_mpc_inv"].first().to_numpy(dtype=np.float64)
        for b in MASS_BINS:
            part = _in_bin(sel, b, mass_split)
            values = _per_image(part, quantity)[2] if len(part) else np.zeros((0, k.size))
            out[(channel, b, comp)] = {"k": k, "n_images": int(values.shape[0]), **_stats(values)}
    return out


def convergence_summary(
    convergence: pd.DataFrame, tolerance: float
) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], dict[str, int | None]]:
    """Median and 16-84 % band over images of the 95th-percentile variance deviation (Fig. 5).

    Returns
    -------
    n_values : ndarray, shape (K,)
    summary : dict
        Channel -> ``{"median", "p16", "p84"}`` of shape (K,).
    n_converged : dict
        Channel -> :func:`cmpipe.metrics.samples_to_converge` of the median (None: never).
    """
    from cmpipe.metrics import samples_to_converge

    summary, conv = {}, {}
    n_values = np.sort(convergence["n"].unique())
    for channel in TARGETS:
        part = convergence[convergence["channel"] == channel]
        if not len(part):
            continue
        _, n, values = _per_image(part, "p95_deviation", "n")
        p16, med, p84 = np.percentile(values, [16.0, 50.0, 84.0], axis=0)
        summary[channel] = {"median": med, "p16": p16, "p84": p84}
        conv[channel] = samples_to_converge(n, med, tolerance)
        n_values = n
    return n_values, summary, conv


def zhist_summary(zhist: pd.DataFrame) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, float]]:
    """Standardized-error counts summed over images, and the std of z from the histogram (Fig. 6).

    The std is ``sqrt(sum c_i (x_i - mu)^2 / sum c_i)`` with bin centres ``x_i`` and
    ``mu = sum c_i x_i / sum c_i`` (values beyond the edges were clipped into the end bins).

    Returns
    -------
    edges : ndarray, shape (B + 1,)
    counts : dict
        Channel -> counts (B,).
    z_std : dict
        Channel -> std of z (NaN without pixels).
    """
    from cmpipe.metrics import Z_EDGES

    edges = np.asarray(Z_EDGES, dtype=np.float64)
    centres = 0.5 * (edges[1:] + edges[:-1])
    counts, stds = {}, {}
    for channel in TARGETS:
        part = zhist[zhist["channel"] == channel]
        c = np.zeros(centres.size)
        if len(part):
            sums = part.groupby("bin")["count"].sum()
            c[sums.index.to_numpy()] = sums.to_numpy(dtype=np.float64)
        counts[channel] = c
        total = c.sum()
        if total > 0:
            mu = float((c * centres).sum() / total)
            stds[channel] = float(np.sqrt((c * (centres - mu) ** 2).sum() / total))
        else:
            stds[channel] = float("nan")
    return edges, counts, stds


def coverage_summary(coverage: pd.DataFrame) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Observed coverage averaged over images per channel and quantity.

    Returns
    -------
    dict
        Channel -> quantity -> ``(levels (L,), observed (L,))``.
    """
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for (channel, quantity), part in coverage.groupby(["channel", "quantity"], sort=False):
        mean = part.groupby("level")["covered"].mean()
        out.setdefault(channel, {})[quantity] = (mean.index.to_numpy(dtype=np.float64),
                                                 mean.to_numpy(dtype=np.float64))
    return out


def rank_summary(clusters: pd.DataFrame, max_bins: int = 10) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Rank histograms of the true masses among the sample masses, with the uniform expectation.

    Returns
    -------
    dict
        Channel -> ``mass_rank`` | ``mass_r200m_rank`` -> ``(counts, expected)`` of shape
        (n_bins,), ``n_bins = min(max_bins, S + 1)``; expected from
        :func:`cmpipe.metrics.rank_bin_probabilities` times the number of images.
    """
    from cmpipe.metrics import rank_bin_probabilities, rank_histogram

    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for channel in TARGETS:
        part = clusters[clusters["channel"] == channel]
        if not len(part):
            continue
        s = int(part["n_samples"].max())
        n_bins = min(max_bins, s + 1)
        for col in ("mass_rank", "mass_r200m_rank"):
            counts = rank_histogram(part[col].to_numpy(), s, n_bins)
            out.setdefault(channel, {})[col] = (counts, rank_bin_probabilities(s, n_bins) * len(part))
    return out


def _coverage_deviations(cov: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]) -> list[dict[str, Any]]:
    """Rows ``channel, quantity, max_coverage_deviation`` of a :func:`coverage_summary`."""
    from cmpipe.metrics import max_coverage_deviation

    return [{"channel": channel, "quantity": quantity, "max_coverage_deviation": max_coverage_deviation(lv, obs)}
            for channel, quantities in cov.items() for quantity, (lv, obs) in quantities.items()]


def _tarp(group, done_rows: np.ndarray) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]] | None, str]:
    """TARP on whole maps per channel from the ``samples`` array, or (None, why not)."""
    from cmpipe.metrics import tarp_coverage

    if "samples" not in group:
        return None, "not available: infer.save_samples=false"
    if done_rows.size < 2:
        return None, "not available: fewer than 2 images"
    samples = np.stack([np.asarray(group["samples"][int(i)]) for i in done_rows], axis=1)  # (S, M, 2, R, R)
    truth = np.stack([np.asarray(group["truth"][int(i)]) for i in done_rows])  # (M, 2, R, R)
    return {channel: tarp_coverage(samples[:, :, c], truth[:, c]) for c, channel in enumerate(TARGETS)}, ""


def headline_numbers(
    profiles: Mapping[tuple[str, str], Mapping[str, Any]],
    masses: pd.DataFrame,
    z_std: Mapping[str, float],
    n_converged: Mapping[str, int | None],
    central_mpc: float = 1.0,
) -> dict[str, float]:
    """The report's headline numbers per channel.

    ``profile_central_<channel>``: mean over the radial bins with ``r < central_mpc`` [Mpc]
    of ``|mean over images of the fractional profile error|`` (all images);
    ``profile_edge_<channel>``: the same at the outermost bin; ``mass_bias_<channel>``,
    ``mass_scatter_<channel>``: whole-map mass error over all images
    (:func:`mass_error_summary`); ``z_std_<channel>``; ``n_converged_<channel>`` (NaN: never).
    """
    out: dict[str, float] = {}
    for channel in TARGETS:
        p = profiles.get((channel, "all"))
        if p is not None and p["n_images"]:
            frac = np.abs(np.asarray(p["frac"]["mean"]))
            central = np.asarray(p["r_mpc"]) < central_mpc
            out[f"profile_central_{channel}"] = float(_mean(frac[central]))
            out[f"profile_edge_{channel}"] = float(frac[-1])
        else:
            out[f"profile_central_{channel}"] = out[f"profile_edge_{channel}"] = float("nan")
        row = masses[(masses["channel"] == channel) & (masses["aperture"] == "whole") & (masses["mass_bin"] == "all")]
        out[f"mass_bias_{channel}"] = float(row["bias"].iloc[0]) if len(row) else float("nan")
        out[f"mass_scatter_{channel}"] = float(row["scatter"].iloc[0]) if len(row) else float("nan")
        out[f"z_std_{channel}"] = float(z_std.get(channel, np.nan))
        nc = n_converged.get(channel)
        out[f"n_converged_{channel}"] = float(nc) if nc is not None else float("nan")
    return out


# --------------------------------------------------------------------------- writing


def _fmt(x: Any) -> str:
    if isinstance(x, (float, np.floating)):
        return "nan" if not np.isfinite(x) else f"{x:.4g}"
    return str(x)


def _markdown_table(df: pd.DataFrame, empty_note: str | None = "no images") -> str:
    """A pipe table; rows with ``n_images == 0`` show ``empty_note`` in their NaN cells."""
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for _, row in df.iterrows():
        empty = "n_images" in row and row["n_images"] == 0 and empty_note
        cells = [empty_note if (empty and isinstance(v, float) and not np.isfinite(v)) else _fmt(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


def _example_rows(log10_m: np.ndarray, done: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` done rows of the posterior store spread evenly in log10 M."""
    rows = np.flatnonzero(done)
    if rows.size == 0:
        return rows
    rows = rows[np.argsort(log10_m[rows], kind="stable")]
    pick = np.unique(np.round(np.linspace(0, rows.size - 1, min(k, rows.size))).astype(int))
    return rows[pick]


def make_report(results: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Write the evaluation report of a results directory of ``cmpipe infer``.

    Parameters
    ----------
    results : str or path-like
        Holds ``tables/``, ``images.parquet`` and ``posterior.zarr``.
    out : str or path-like, optional
        Output directory; default ``RESULTS/report``. New, empty, or a report directory of
        cmpipe (it is marked as one); any other directory is refused before any work.

    Returns
    -------
    dict
        Every written file's name (e.g. ``"fig1_mass_distribution.png"``, ``"table1.csv"``)
        -> its path; ``"report"`` -> the path of ``report.md``; ``"numbers"`` -> the headline
        numbers (:func:`headline_numbers`) plus ``calibration_<channel>_<quantity>`` (max
        coverage deviation) and ``tarp_<channel>`` where available.

    Raises
    ------
    cmpipe.store.tables.TableError
        If ``results``, a table or ``images.parquet`` is missing or unreadable (naming its path).
    cmpipe.outputs.OutputError
        If ``out`` cannot be written or holds files cmpipe did not write (naming it).
    cmpipe.store.posterior.PosteriorStoreError
        If the posterior store is missing.
    """
    from cmpipe.metrics import max_coverage_deviation
    from cmpipe.plots import evaluation as plots

    from cmpipe.outputs import claim_directory

    results = _check_results_dir(Path(results))
    out = claim_directory(Path(out) if out is not None else results / "report", "report", names=REPORT_NAMES,
                          what="report directory")
    frames, group, attrs, settings = _read_results(results)
    split, k_split, tol = settings["mass_split"], settings["k_split"], settings["tolerance"]
    units = dict(attrs.get("channel_units") or {})
    pixel = float(attrs["pixel_mpc"])
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}
    numbers: dict[str, float] = {}

    def save(fig, name: str) -> None:
        written[name] = _save(fig, out / name)

    # Fig. 1: mass distribution.
    images = frames["images"]
    halos = images.drop_duplicates("halo_id")["log10_m200m_msun_h"].to_numpy()
    by_split = {s: g["log10_m200m_msun_h"].to_numpy() for s, g in images.groupby("split", sort=True)}
    save(plots.plot_mass_distribution(halos, by_split, (settings["test_min"], settings["test_max"])),
         "fig1_mass_distribution.png")

    # Figs. 2 and 4: maps of a few test images from the posterior store.
    log10_m = np.asarray(group["log10_m200m_msun_h"][:], dtype=np.float64)
    done = np.asarray(group["done"][:]) == 1
    rows = _example_rows(log10_m, done, 3)
    maps = np.stack([np.concatenate([group["condition"][int(i)], group["truth"][int(i)]]) for i in rows]) \
        if rows.size else np.zeros((0, 4, 1, 1))
    save(plots.plot_example_maps(maps, ("sz_y", "xray_sb", *TARGETS), units, pixel, log10_m[rows]),
         "fig2_example_maps.png")
    rows6 = _example_rows(log10_m, done, 6)
    arrays = {name: (np.stack([np.asarray(group[name][int(i)]) for i in rows6]) if rows6.size
                     else np.zeros((0, 2, 1, 1))) for name in ("truth", "mean", "std")}
    save(plots.plot_truth_vs_mean(arrays["truth"], arrays["mean"], arrays["std"], TARGETS, units, pixel,
                                  log10_m[rows6]), "fig4_truth_vs_mean.png")

    # Fig. 5: convergence; Fig. 6: standardized errors.
    n_values, conv, n_conv = convergence_summary(frames["convergence"], tol)
    save(plots.plot_convergence(n_values, conv, tol, n_conv), "fig5_convergence.png")
    edges, counts, z_std = zhist_summary(frames["zhist"])
    save(plots.plot_standardized_errors(edges, counts, z_std), "fig6_standardized_errors.png")

    # Fig. 7: profiles; Figs. 8, 9: spectra.
    prof = profile_summary_by_bin(frames["profiles"], split)
    save(plots.plot_profiles(prof, TARGETS), "fig7_profiles.png")
    save(plots.plot_spectral_ratio(spectra_summary_by_bin(frames["spectra"], split, "b"), "b", TARGETS,
                                   ("sample", "posterior_mean"), k_split), "fig8_bias.png")
    save(plots.plot_spectral_ratio(spectra_summary_by_bin(frames["spectra"], split, "r"), "r", TARGETS,
                                   ("sample", "posterior_mean", "input_sz_y", "input_xray_sb"), k_split),
         "fig9_correlation.png")

    # Table 1.
    t1 = table1(frames["spectra"], split, k_split)
    t1.to_csv(out / "table1.csv", index=False)
    written["table1.csv"] = out / "table1.csv"
    t1_md = (f"Table 1: b and r averaged over k < {k_split:.3f} Mpc^-1 (large) and k >= it (small) per image, "
             f"then over the images of the mass bin (low: log10 M200m < {split:g}).\n\n" + _markdown_table(t1))
    (out / "table1.md").write_text(t1_md)
    written["table1.md"] = out / "table1.md"

    # Mass errors.
    masses = mass_error_summary(frames["clusters"], split)
    masses.to_csv(out / "mass_errors.csv", index=False)
    written["mass_errors.csv"] = out / "mass_errors.csv"
    mass_md = ("Total-mass fractional error (posterior mean vs truth): bias = mean, scatter = std (ddof 1); "
               "reference: de Andres et al. 2024, ~1 % bias, <= 3 % scatter.\n\n" + _markdown_table(masses))
    (out / "mass_errors.md").write_text(mass_md)
    written["mass_errors.md"] = out / "mass_errors.md"
    cl = frames["clusters"]
    mass_data = {c: {"log10_m": g["log10_m200m_msun_h"].to_numpy(), "whole": g["mass_frac_error"].to_numpy(),
                     "r200m": g["mass_r200m_frac_error"].to_numpy()}
                 for c in TARGETS for g in [cl[cl["channel"] == c]]}
    save(plots.plot_mass_errors(mass_data, split), "fig_mass_error.png")

    # Calibration.
    cov = coverage_summary(frames["coverage"])
    ranks = rank_summary(cl)
    tarp, tarp_note = _tarp(group, np.flatnonzero(done))
    save(plots.plot_calibration(cov, ranks, tarp, tarp_note), "fig_calibration.png")
    cal_rows = _coverage_deviations(cov)
    numbers.update({f"calibration_{r['channel']}_{r['quantity']}": r["max_coverage_deviation"] for r in cal_rows})
    if tarp is not None:
        for channel, (alpha, ecp) in tarp.items():
            dev = max_coverage_deviation(alpha, ecp)
            numbers[f"tarp_{channel}"] = dev
            cal_rows.append({"channel": channel, "quantity": "tarp (whole maps)", "max_coverage_deviation": dev})
    cal = pd.DataFrame(cal_rows, columns=["channel", "quantity", "max_coverage_deviation"])
    cal_md = ("Calibration: max |observed - expected| coverage over the credible levels, averaged over images "
              "(0: calibrated).\n\n" + _markdown_table(cal) + "\nTARP (whole maps): "
              + ("see the tarp rows above.\n" if tarp is not None else f"{tarp_note}\n"))
    (out / "calibration.md").write_text(cal_md)
    written["calibration.md"] = out / "calibration.md"

    # Headline numbers and the index.
    numbers.update(headline_numbers(prof, masses, z_std, n_conv))
    written["report.md"] = _write_index(out, written, numbers, t1_md, mass_md, cal_md, settings,
                                        int(done.sum()))
    written["report"] = written["report.md"]
    written["numbers"] = numbers
    logger.info("report of %d images written to %s", int(done.sum()), out)
    return written


_CAPTIONS = {
    "fig1_mass_distribution.png": "Fig. 1: mass distribution of the halos and of each split's images",
    "fig2_example_maps.png": "Fig. 2: example test inputs (y, S_X) and targets (gas, DM)",
    "fig4_truth_vs_mean.png": "Fig. 4: truth, posterior mean and posterior std",
    "fig5_convergence.png": "Fig. 5: sample-variance convergence",
    "fig6_standardized_errors.png": "Fig. 6: standardized pixel errors",
    "fig7_profiles.png": "Fig. 7: radial profiles and their fractional error",
    "fig8_bias.png": "Fig. 8: bias b(k)",
    "fig9_correlation.png": "Fig. 9: cross-correlation r(k), with the input baselines",
    "fig_mass_error.png": "Total-mass fractional error vs mass",
    "fig_calibration.png": "Calibration: interval coverage, mass rank histograms, TARP",
}


#: The headline numbers' keys (``<key>_<channel>``) and descriptions, in the reports' order.
_HEADLINES = (("profile_central", "mean abs profile frac error, r < 1 Mpc"),
              ("profile_edge", "abs profile frac error, outermost bin"),
              ("mass_bias", "mass frac error bias (whole map)"),
              ("mass_scatter", "mass frac error scatter (whole map)"),
              ("z_std", "std of standardized errors"),
              ("n_converged", "samples to converge (median)"))


def _write_index(out: Path, written: Mapping[str, Any], numbers: Mapping[str, float], t1_md: str, mass_md: str,
                 cal_md: str, settings: Mapping[str, float], n_images: int) -> Path:
    lines = ["# cmpipe evaluation report", "",
             f"{n_images} test images; mass split log10 M200m = {settings['mass_split']:g} [Msun/h]; "
             f"k_split = {settings['k_split']:.3f} Mpc^-1; convergence tolerance {settings['tolerance']:g}.", "",
             "## Headline numbers", "", "| quantity | gas | DM | reference |", "|---|---|---|---|"]
    for key, label in _HEADLINES:
        g, d = (numbers.get(f"{key}_{c}", np.nan) for c in TARGETS)
        lines.append(f"| {label} | {_fmt(g)} | {_fmt(d)} | {REFERENCES[key]} |")
    lines += ["", "## Table 1", "", t1_md, "## Mass errors", "", mass_md, "## Calibration", "", cal_md,
              "## Figures", ""]
    for name, caption in _CAPTIONS.items():
        if name in written:
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


# --------------------------------------------------------------------------- comparison of results


def _model_info(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``kind`` (``model.kind``), ``point_estimate`` (a U-Net: every sample is the same map),
    ``sampler``, ``steps``, ``n_samples`` of a posterior store's attributes."""
    import yaml

    cfg = yaml.safe_load(attrs.get("config_yaml") or "") or {}
    kind = str((cfg.get("model") or {}).get("kind", "score"))
    return {"kind": kind, "point_estimate": kind == "unet", "sampler": attrs.get("sampler"),
            "steps": attrs.get("steps"), "n_samples": attrs.get("n_samples")}


def _evaluated_images(frames: Mapping[str, pd.DataFrame]) -> np.ndarray:
    """Sorted ``image_index`` of the images with rows in the ``clusters`` table."""
    return np.unique(frames["clusters"]["image_index"].to_numpy(dtype=np.int64))


def compare_reports(
    results: Mapping[str, str | os.PathLike[str]], out: str | os.PathLike[str]
) -> dict[str, Any]:
    """Compare two or more results directories of ``cmpipe infer`` side by side.

    Each directory is read as :func:`make_report` reads it (tables, posterior-store attributes
    and ``evaluate`` settings); every table is then restricted to the images evaluated in all
    of them (``image_index``), and the same aggregations are applied per model: Table 1
    (:func:`table1`, comparisons ``sample`` and ``posterior_mean``), mass errors
    (:func:`mass_error_summary`), profiles, b(k) and r(k) and the headline numbers
    (:func:`headline_numbers`); interval-coverage calibration for models that sample (not for
    ``model.kind: unet``, a point estimate). Each model uses its own ``evaluate`` settings
    (mass split, k split); differing settings are warned about in the text.

    Parameters
    ----------
    results : mapping
        Model label (e.g. ``"diffusion"``, ``"U-Net"``) -> results directory; at least two.
    out : str or path-like
        Output directory: new, empty, or a comparison directory of cmpipe (it is marked as one).

    Returns
    -------
    dict
        Written file name (``comparison.md``, ``comparison_table1.csv``,
        ``comparison_mass_errors.csv``, ``comparison_profiles.png``, ``comparison_bias.png``,
        ``comparison_correlation.png``, ``comparison_mass_error.png``) -> path; ``"report"`` ->
        the path of ``comparison.md``; ``"numbers"`` -> label -> headline numbers (plus
        ``calibration_<channel>_<quantity>`` for sampling models); ``"images"`` -> label ->
        sorted ``image_index`` evaluated there; ``"common_images"`` -> those compared.

    Raises
    ------
    ValueError
        If fewer than two results are given, or they have no evaluated image in common.
    cmpipe.store.tables.TableError, cmpipe.store.posterior.PosteriorStoreError
        As :func:`make_report`.
    """
    from cmpipe.plots import evaluation as plots

    if len(results) < 2:
        raise ValueError(f"compare_reports needs at least two results directories; got {len(results)}")
    from cmpipe.outputs import claim_directory

    for path in results.values():
        _check_results_dir(Path(path))
    out = claim_directory(out, "comparison", names=COMPARISON_NAMES, what="comparison directory")
    loaded = {}
    for label, path in results.items():
        frames, _, attrs, settings = _read_results(Path(path))
        loaded[label] = {"path": Path(path), "frames": frames, "settings": settings, "info": _model_info(attrs),
                         "images": _evaluated_images(frames)}
    images = {label: d["images"] for label, d in loaded.items()}
    common = images[next(iter(images))]
    for idx in images.values():
        common = np.intersect1d(common, idx)
    if common.size == 0:
        raise ValueError("the results have no evaluated image in common: "
                         + ", ".join(f"{label}: {idx.size} images" for label, idx in images.items()))
    differ = any(not np.array_equal(idx, common) for idx in images.values())

    t1_parts, mass_parts, numbers, prof, spec_b, spec_r, mass_data, cal_parts = [], [], {}, {}, {}, {}, {}, []
    for label, d in loaded.items():
        f = {name: frame[frame["image_index"].isin(common)] for name, frame in d["frames"].items()
             if name != "images"}
        split, k_split = d["settings"]["mass_split"], d["settings"]["k_split"]
        t1_parts.append(table1(f["spectra"], split, k_split).assign(model=label))
        masses = mass_error_summary(f["clusters"], split)
        mass_parts.append(masses.assign(model=label))
        prof[label] = profile_summary_by_bin(f["profiles"], split)
        spec_b[label] = spectra_summary_by_bin(f["spectra"], split, "b")
        spec_r[label] = spectra_summary_by_bin(f["spectra"], split, "r")
        _, _, n_conv = convergence_summary(f["convergence"], d["settings"]["tolerance"])
        _, _, z_std = zhist_summary(f["zhist"])
        numbers[label] = headline_numbers(prof[label], masses, z_std, n_conv)
        if not d["info"]["point_estimate"]:
            rows = _coverage_deviations(coverage_summary(f["coverage"]))
            numbers[label].update({f"calibration_{r['channel']}_{r['quantity']}": r["max_coverage_deviation"]
                                   for r in rows})
            cal_parts += [{"model": label, **r} for r in rows]
        cl = f["clusters"]
        mass_data[label] = {c: {"log10_m": g["log10_m200m_msun_h"].to_numpy(), "whole": g["mass_frac_error"].to_numpy()}
                            for c in TARGETS for g in [cl[cl["channel"] == c]]}
    t1 = pd.concat(t1_parts, ignore_index=True)
    t1 = t1[["model", *[c for c in t1.columns if c != "model"]]]
    masses = pd.concat(mass_parts, ignore_index=True)
    masses = masses[["model", *[c for c in masses.columns if c != "model"]]]

    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Any] = {}

    def save(fig, name: str) -> None:
        written[name] = _save(fig, out / name)

    first = next(iter(loaded.values()))["settings"]
    save(plots.plot_profile_comparison(prof, TARGETS), "comparison_profiles.png")
    save(plots.plot_spectral_comparison(spec_b, "b", TARGETS, first["k_split"]), "comparison_bias.png")
    save(plots.plot_spectral_comparison(spec_r, "r", TARGETS, first["k_split"],
                                        baselines=("input_sz_y", "input_xray_sb")), "comparison_correlation.png")
    save(plots.plot_mass_error_comparison(mass_data, TARGETS, first["mass_split"]), "comparison_mass_error.png")
    for name, frame in (("comparison_table1.csv", t1), ("comparison_mass_errors.csv", masses)):
        frame.to_csv(out / name, index=False)
        written[name] = out / name

    # The text.
    lines = ["# cmpipe comparison report", "", "| model | results | model.kind | sampler | steps | n_samples | "
             "images evaluated | mass split | k_split [Mpc^-1] |", "|---|---|---|---|---|---|---|---|---|"]
    for label, d in loaded.items():
        info, st = d["info"], d["settings"]
        sampler = "point estimate" if info["point_estimate"] else info["sampler"]
        lines.append(f"| {label} | {d['path']} | {info['kind']} | {sampler} | {info['steps']} | {info['n_samples']} "
                     f"| {images[label].size} | {st['mass_split']:g} | {st['k_split']:.3f} |")
    lines.append("")
    if differ:
        lines += ["**Warning: the models' image sets differ** ("
                  + ", ".join(f"{label}: {idx.size}" for label, idx in images.items())
                  + f" images); every number and figure below is on the {common.size} images common to all.", ""]
    else:
        lines += [f"All models were evaluated on the same {common.size} images.", ""]
    keys = ("mass_split", "k_split", "tolerance")
    if any(any(d["settings"][k] != first[k] for k in keys) for d in loaded.values()):
        lines += ["**Warning: the models' evaluate settings (mass split, k split or convergence tolerance) "
                  "differ**; each model's numbers use its own.", ""]
    unets = [label for label, d in loaded.items() if d["info"]["point_estimate"]]
    lines += ["Compare like with like: a point estimate (the U-Net, `model.kind: unet`) against the diffusion "
              "model's posterior mean (`posterior_mean` rows); the diffusion model's single samples (`sample` rows) "
              "are the generative comparison. A point estimate's \"samples\" are the estimate itself, so its "
              "`sample` and `posterior_mean` rows coincide; and a point estimate, like any mean, has "
              "b(k) = r(k) < 1 on the scales where the inputs lack the information (the power there is "
              "averaged away), where a calibrated sample keeps b ~ 1 with a lower r."
              + (f" Point estimates here: {', '.join(unets)}." if unets else ""), "",
              "## Headline numbers", "", "| quantity | channel | " + " | ".join(loaded) + " | reference |",
              "|---|---|" + "---|" * len(loaded) + "---|"]
    for key, desc in _HEADLINES:
        for channel in TARGETS:
            cells = " | ".join(_fmt(numbers[label].get(f"{key}_{channel}", np.nan)) for label in loaded)
            lines.append(f"| {desc} | {channel} | {cells} | {REFERENCES[key]} |")
    lines += ["", "## Table 1", "",
              "b and r averaged over k < k_split (large) and k >= k_split (small) per image, then over the "
              "images of the mass bin, per model.", "", _markdown_table(t1),
              "## Mass errors", "",
              "Total-mass fractional error of the posterior-mean (point-estimate) map: bias = mean, scatter = std "
              "(ddof 1); reference: de Andres et al. 2024, ~1 % bias, <= 3 % scatter.", "",
              _markdown_table(masses), "## Calibration", ""]
    if cal_parts:
        lines += ["Max |observed - expected| interval coverage over the credible levels (0: calibrated), models "
                  "that sample only.", "", _markdown_table(pd.DataFrame(cal_parts))]
    lines += [f"Not applicable to {label} (a point estimate has no spread)." for label in unets] + [""]
    lines += ["## Images evaluated", ""]
    for label, idx in images.items():
        extra = np.setdiff1d(idx, common)
        lines.append(f"- {label}: {idx.size} images" + (f"; not in every model, left out: {extra.tolist()}"
                                                         if extra.size else ""))
    lines += [f"- compared: {common.tolist()}", "", "## Figures", ""]
    for name, caption in (("comparison_profiles.png", "Fractional error of the radial profiles"),
                          ("comparison_bias.png", "Bias b(k)"),
                          ("comparison_correlation.png", "Cross-correlation r(k), with the inputs' baselines"),
                          ("comparison_mass_error.png", "Total-mass fractional error vs mass")):
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    path = out / "comparison.md"
    path.write_text("\n".join(lines))
    written["comparison.md"] = written["report"] = path
    written["numbers"] = numbers
    written["images"] = images
    written["common_images"] = common
    logger.info("comparison of %s on %d images written to %s", ", ".join(loaded), common.size, out)
    return written

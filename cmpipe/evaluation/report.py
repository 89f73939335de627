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

The ``evaluate`` settings are those the results were made with: the caller passes the parser of
the posterior store's ``config_yaml`` (:func:`cmpipe.stages.report.recorded_evaluate`); this
module never sees a whole :class:`cmpipe.config.Config`. :mod:`cmpipe.evaluation.compare` puts
two or more results directories side by side with the same aggregations.

The results and the report directory may be object-store URLs (:mod:`cmpipe.store.location`):
tables are listed afresh and read object by object; each figure, CSV and Markdown file is written
whole (a temporary file renamed into place on disk, one PUT on an object store), with the same
bytes either way.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cmpipe.evaluation.image import TARGETS
from cmpipe.evaluation.halo_stats import (
    BOOTSTRAP_SEED,
    MIN_HALOS,
    N_BOOTSTRAP,
    TOO_FEW,
    Summary,
    halo_means,
    paired_skill,
    summarise,
)
from cmpipe.store.location import AnyPath, as_path, is_remote, save_figure, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import EvaluateConfig

logger = logging.getLogger(__name__)

__all__ = [
    "MASS_BINS",
    "REFERENCES",
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
    "n_converged": "~40 samples (paper, Fig. 5; by another criterion)",
}
_TABLES = ("clusters", "profiles", "spectra", "convergence", "zhist", "coverage")
#: What :func:`make_report` writes into its directory (marked ``report``; anything else there is refused).
REPORT_NAMES = ("fig*.png", "table1.csv", "table1.md", "mass_errors.csv", "mass_errors.md", "calibration.md",
                "report.md", "profile_errors.csv")


def _check_results_dir(results: str | os.PathLike[str]) -> AnyPath:
    """``results`` (a path or URL) is an existing directory (else a one-line error naming it,
    before anything is made)."""
    from cmpipe.store.location import check_reachable
    from cmpipe.store.tables import TableError, refreshed

    results = as_path(results)
    check_reachable(results, "results directory")
    if not refreshed(results).is_dir():
        raise TableError(f"results directory {results} does not exist or is not a directory (run `cmpipe infer` first)")
    return results


# --------------------------------------------------------------------------- reading


def report_settings(attrs: Mapping[str, Any], evaluate: EvaluateConfig) -> dict[str, float]:
    """The ``evaluate`` settings of the run, with the k split resolved on the model's grid.

    Parameters
    ----------
    attrs : mapping
        ``posterior.zarr`` attributes: ``resolution``, ``pixel_mpc`` [Mpc].
    evaluate : EvaluateConfig
        The ``evaluate`` section the results were made with (recorded in ``config_yaml``).

    Returns
    -------
    dict
        ``mass_split`` [log10 Msun/h] (0 in the config: the log midpoint of the test halos'
        masses, set by :func:`resolve_mass_split`), ``k_split`` [Mpc^-1] (``sqrt(k_F k_Nyq)``
        of the model's grid when the config says 0), ``tolerance``, ``test_min``, ``test_max``
        [log10 Msun/h].
    """
    from cmpipe.evaluation.metrics import scale_split_k

    k_split = evaluate.k_split_mpc_inv or scale_split_k(int(attrs["resolution"]), float(attrs["pixel_mpc"]))
    return {"mass_split": float(evaluate.mass_split_log10_msun_h), "k_split": float(k_split),
            "tolerance": float(evaluate.convergence_tolerance), "test_min": float(evaluate.test_log10_m_min_msun_h),
            "test_max": float(evaluate.test_log10_m_max_msun_h)}


def resolve_mass_split(settings: dict[str, float], clusters: pd.DataFrame) -> dict[str, float]:
    """``settings`` with ``mass_split`` set to the log midpoint of the evaluated halos' log10 M200m
    range when it is 0 (the default), so that both bins hold halos; unchanged otherwise."""
    if settings["mass_split"] <= 0:
        m = clusters.drop_duplicates("halo_id")["log10_m200m_msun_h"].to_numpy(np.float64)
        mid = 0.5 * (m.min() + m.max()) if m.size else 0.5 * (settings["test_min"] + settings["test_max"])
        settings = {**settings, "mass_split": float(mid)}
    return settings


def _read_tables(results: AnyPath, images: bool = True) -> dict[str, pd.DataFrame]:
    from cmpipe.store.tables import images_path, read_images_table, read_table

    frames = {name: read_table(results, name).to_pandas() for name in _TABLES}
    if images or images_path(results).is_file():
        frames["images"] = read_images_table(results).to_pandas()
    return frames


def find_baselines(results: str | os.PathLike[str]) -> dict[str, AnyPath]:
    """The baselines' results directories ``RESULTS/baselines/<name>/`` holding ``tables/`` (by
    name; listed afresh, :func:`cmpipe.store.tables.refreshed`)."""
    from cmpipe.store.tables import refreshed

    root = refreshed(as_path(results) / "baselines")
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir(), key=lambda p: p.name) if refreshed(p / "tables").is_dir()}


def read_baselines(results: str | os.PathLike[str]) -> dict[str, dict[str, pd.DataFrame]]:
    """Tables of every baseline of :func:`find_baselines` (the same tables as the model's)."""
    return {name: _read_tables(path, images=False) for name, path in find_baselines(results).items()}


def _read_results(
    results: AnyPath, evaluate_of: Callable[[str], EvaluateConfig]
) -> tuple[dict[str, pd.DataFrame], Any, dict[str, Any], dict[str, float]]:
    """``(tables, posterior group, its attrs, report_settings)`` of a results directory;
    ``evaluate_of`` parses the store's ``config_yaml`` into its ``evaluate`` section."""
    from cmpipe.store.posterior import open_posterior

    frames = _read_tables(results)
    group = open_posterior(results)
    attrs = dict(group.attrs)
    return frames, group, attrs, report_settings(attrs, evaluate_of(attrs["config_yaml"]))


def channel_units(attrs: Mapping[str, Any]) -> dict[str, str]:
    """Channel -> unit of a posterior store, from its ``channel_units``; a unit equal to its channel's
    name (stores written before that was fixed) is replaced by :data:`cmpipe.mapmaking.maps.CHANNEL_UNITS`."""
    from cmpipe.mapmaking.maps import CHANNEL_UNITS

    units = dict(attrs.get("channel_units") or {})
    return {**CHANNEL_UNITS, **{c: u for c, u in units.items() if u and u != c}}


def mass_bin(log10_m: np.ndarray | pd.Series, mass_split: float) -> np.ndarray:
    """``"low"`` where ``log10_m < mass_split`` [log10 Msun/h], else ``"high"``."""
    return np.where(np.asarray(log10_m, dtype=np.float64) < mass_split, "low", "high")


def _in_bin(df: pd.DataFrame, b: str, mass_split: float) -> pd.DataFrame:
    if b == "all":
        return df
    return df[mass_bin(df["log10_m200m_msun_h"], mass_split) == b]


def _per_image(df: pd.DataFrame, value: str, column: str = "bin") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_index (M,), column values (K,), values (M, K))`` of a long table."""
    wide = df.pivot_table(index="image_index", columns=column, values=value, aggfunc="first", dropna=False)
    return wide.index.to_numpy(), wide.columns.to_numpy(), wide.to_numpy(dtype=np.float64)


def _halo_of(df: pd.DataFrame) -> pd.Series:
    """``image_index`` -> ``halo_id`` of a table."""
    return df.drop_duplicates("image_index").set_index("image_index")["halo_id"]


def _per_halo_curves(df: pd.DataFrame, value: str, column: str = "bin") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(column values (K,), per-halo mean curves (H, K), images per halo (H,))`` of a long table:
    each halo's images are averaged first (NaNs skipped), so every halo weighs the same."""
    if not len(df):
        return np.zeros(0), np.zeros((0, 0)), np.zeros(0, int)
    images, cols, values = _per_image(df, value, column)
    halos = _halo_of(df).reindex(images).to_numpy()
    frame = pd.DataFrame(values, index=halos)
    with np.errstate(all="ignore"):
        grouped = frame.groupby(level=0, sort=True)
        curves = grouped.mean().to_numpy(dtype=np.float64)
        counts = grouped.size().to_numpy()
    return cols, curves, counts


def _band_over_halos(curves: np.ndarray) -> dict[str, np.ndarray]:
    """Mean, median and 16th / 84th percentiles over halos (axis 0), NaN-skipping; NaN without halos."""
    if curves.shape[0] == 0:
        nan = np.full(curves.shape[1:], np.nan)
        return {"mean": nan, "median": nan, "p16": nan, "p84": nan}
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p16, med, p84 = np.nanpercentile(curves, [16.0, 50.0, 84.0], axis=0)
        return {"mean": np.nanmean(curves, axis=0), "median": med, "p16": p16, "p84": p84}


def _cells(prefix: str, summary: Summary) -> dict[str, Any]:
    return {prefix: summary.value, f"{prefix}_lo": summary.lo, f"{prefix}_hi": summary.hi}


# --------------------------------------------------------------------------- aggregation over halos


def table1(
    spectra: pd.DataFrame,
    mass_split: float,
    k_split: float,
    comparisons: Sequence[str] = ("sample", "posterior_mean"),
) -> pd.DataFrame:
    """The paper's Table 1: bias and correlation on large and small scales per channel and mass bin.

    For each comparison, channel and mass bin: per image, ``b_large`` is the mean of ``b(k)``
    over the k bins with ``k_mpc_inv < k_split``, each bin weighted by its width in ``ln k``
    (bins equally spaced in log k, :func:`cmpipe.evaluation.metrics.large_small_means`), ``b_small`` over
    ``k_mpc_inv >= k_split``; likewise ``r``. The images of each halo are averaged, then the
    cell is the mean over halos with a 68 % bootstrap interval over halos
    (:mod:`cmpipe.evaluation.halo_stats`; ``_lo``, ``_hi`` columns). Fewer than
    :data:`cmpipe.evaluation.halo_stats.MIN_HALOS` halos: NaN cells, ``note`` "too few halos".

    Returns
    -------
    DataFrame
        Columns ``comparison, channel, mass_bin, n_halos, n_images, b_large, b_large_lo,
        b_large_hi, ... r_small_hi, note`` (dimensionless); rows comparison x [gas, DM] x
        [low, high].
    """
    from cmpipe.evaluation.metrics import large_small_means

    rows = []
    for comp in comparisons:
        for channel in TARGETS:
            sel = spectra[(spectra["comparison"] == comp) & (spectra["channel"] == channel)]
            for b in MASS_BINS:
                part = _in_bin(sel, b, mass_split)
                per_image = pd.DataFrame({"image_index": part["image_index"].unique()})
                per_image["halo_id"] = _halo_of(part).reindex(per_image["image_index"]).to_numpy()
                for q in ("b", "r"):
                    if len(part):
                        _, kk, values = _per_image(part, q)
                        _, _, ks = _per_image(part, "k_mpc_inv")
                        large, small = large_small_means(ks[0], values, k_split)
                    else:
                        large = small = np.zeros(0)
                    per_image[f"{q}_large"], per_image[f"{q}_small"] = large, small
                cols = ["b_large", "b_small", "r_large", "r_small"]
                halos = halo_means(per_image, cols)
                row: dict[str, Any] = {"comparison": comp, "channel": channel, "mass_bin": b,
                                       "n_halos": int(len(halos)), "n_images": int(len(per_image))}
                for col in cols:
                    row.update(_cells(col, summarise(halos[col], halos["n_images"], "mean")))
                row["note"] = TOO_FEW if len(halos) < MIN_HALOS else ""
                rows.append(row)
    columns = ["comparison", "channel", "mass_bin", "n_halos", "n_images"]
    columns += [f"{c}{s}" for c in ("b_large", "b_small", "r_large", "r_small") for s in ("", "_lo", "_hi")]
    return pd.DataFrame(rows, columns=[*columns, "note"])


#: Mass apertures: (name, fractional-error column); the first two are the headline masses.
APERTURES = (("r500c", "mass_r500c_frac_error"), ("r200m", "mass_r200m_frac_error"), ("whole", "mass_frac_error"))


def mass_error_summary(clusters: pd.DataFrame, mass_split: float) -> pd.DataFrame:
    """Mass errors within R500c, R200m (headline) and the whole map (secondary), over halos.

    Per image the fractional error ``(pred - true) / true`` of the posterior-mean map's mass;
    per halo the mean of ``|error|`` over its images (errors never cancel) and, separately, the
    mean signed error. Over halos: ``abs_error`` = median of the per-halo ``|error|``,
    ``bias`` = mean of the per-halo signed errors, ``scatter`` = their std (ddof 1), each with
    a 68 % bootstrap interval over halos (``_lo``, ``_hi``).

    Returns
    -------
    DataFrame
        Columns ``channel, aperture (r500c | r200m | whole), mass_bin (low | high | all),
        n_halos, n_images, abs_error[_lo, _hi], bias[_lo, _hi], scatter[_lo, _hi], ref_bias
        (0.01), ref_scatter (0.03)`` (de Andres et al. 2024), ``note``. Dimensionless.
    """
    rows = []
    for channel in TARGETS:
        sel = clusters[clusters["channel"] == channel]
        for aperture, col in APERTURES:
            for b in (*MASS_BINS, "all"):
                part = _in_bin(sel, b, mass_split)
                part = part.assign(abs_err=part[col].abs(), err=part[col])
                halos = halo_means(part, ["abs_err", "err"])
                finite = halos["err"].notna()
                row: dict[str, Any] = {"channel": channel, "aperture": aperture, "mass_bin": b,
                                       "n_halos": int(finite.sum()),
                                       "n_images": int(halos.loc[finite, "n_images"].sum())}
                row.update(_cells("abs_error", summarise(halos["abs_err"], halos["n_images"], "median")))
                row.update(_cells("bias", summarise(halos["err"], halos["n_images"], "mean")))
                row.update(_cells("scatter", summarise(halos["err"], halos["n_images"], "std")))
                row.update({"ref_bias": 0.01, "ref_scatter": 0.03, "note": TOO_FEW if finite.sum() < MIN_HALOS else ""})
                rows.append(row)
    return pd.DataFrame(rows)


#: Radial ranges of the profile errors: name -> description.
PROFILE_RANGES = {"central": "r < 1 Mpc", "outer": "1 Mpc <= r < R200m", "edge": "outermost radial bin"}


def profile_errors(profiles: pd.DataFrame, r200m_mpc: pd.Series | Mapping[int, float] | None = None,
                   central_mpc: float = 1.0) -> pd.DataFrame:
    """Per image and channel: mean over the radial bins of a range of |fractional error| and of the
    signed fractional error of the posterior-mean profile.

    Parameters
    ----------
    profiles : DataFrame
        The ``profiles`` table.
    r200m_mpc : Series or mapping, optional
        ``image_index`` -> R200m [Mpc] (the ``clusters`` table's); without it the ``outer``
        range is NaN.
    central_mpc : float
        [Mpc].

    Returns
    -------
    DataFrame
        Columns ``image_index, halo_id, log10_m200m_msun_h, channel, range`` (see
        :data:`PROFILE_RANGES`), ``abs_error``, ``signed_error`` (dimensionless; NaN for an
        empty range).
    """
    if not len(profiles):
        return pd.DataFrame(columns=["image_index", "halo_id", "log10_m200m_msun_h", "channel", "range",
                                     "abs_error", "signed_error"])
    df = profiles[["image_index", "halo_id", "log10_m200m_msun_h", "channel", "bin", "r_mpc", "frac_error"]].copy()
    r200 = pd.Series(dict(r200m_mpc) if r200m_mpc is not None and not isinstance(r200m_mpc, pd.Series)
                     else r200m_mpc, dtype=np.float64) if r200m_mpc is not None else None
    df["r200m"] = df["image_index"].map(r200) if r200 is not None else np.nan
    last = df.groupby("image_index")["bin"].transform("max")
    masks = {"central": df["r_mpc"] < central_mpc,
             "outer": (df["r_mpc"] >= central_mpc) & (df["r_mpc"] < df["r200m"]),
             "edge": df["bin"] == last}
    keys = ["image_index", "halo_id", "log10_m200m_msun_h", "channel"]
    parts = []
    base = df[keys].drop_duplicates()
    for name, mask in masks.items():
        sub = df[mask].assign(abs_error=lambda d: d["frac_error"].abs(), signed_error=lambda d: d["frac_error"])
        agg = sub.groupby(keys, sort=False)[["abs_error", "signed_error"]].mean().reset_index()
        parts.append(base.merge(agg, on=keys, how="left").assign(range=name))
    out = pd.concat(parts, ignore_index=True)
    return out[["image_index", "halo_id", "log10_m200m_msun_h", "channel", "range", "abs_error", "signed_error"]]


def profile_error_summary(errors: pd.DataFrame, mass_split: float) -> pd.DataFrame:
    """Profile errors over halos, from :func:`profile_errors`.

    Per halo the mean over its images; over halos ``abs_error`` = the median of the per-halo
    mean |fractional error| with its 68 % bootstrap interval (``_lo``, ``_hi``), ``p16``,
    ``p84`` = the 68 % range over halos, and ``bias`` = the mean over halos of the signed
    error (reported separately, never as the headline) with its interval.

    Returns
    -------
    DataFrame
        Columns ``channel, range, mass_bin, n_halos, n_images, abs_error[_lo, _hi], p16, p84,
        bias[_lo, _hi], note``.
    """
    rows = []
    for channel in TARGETS:
        for rng_name in PROFILE_RANGES:
            sel = errors[(errors["channel"] == channel) & (errors["range"] == rng_name)]
            for b in (*MASS_BINS, "all"):
                halos = halo_means(_in_bin(sel, b, mass_split), ["abs_error", "signed_error"])
                a = halos["abs_error"].to_numpy(np.float64)
                fin = np.isfinite(a)
                row: dict[str, Any] = {"channel": channel, "range": rng_name, "mass_bin": b,
                                       "n_halos": int(fin.sum()), "n_images": int(halos["n_images"][fin].sum())}
                row.update(_cells("abs_error", summarise(halos["abs_error"], halos["n_images"], "median")))
                few = fin.sum() < MIN_HALOS
                p16, p84 = (np.percentile(a[fin], [16.0, 84.0]) if not few else (np.nan, np.nan))
                row.update({"p16": float(p16), "p84": float(p84)})
                row.update(_cells("bias", summarise(halos["signed_error"], halos["n_images"], "mean")))
                row["note"] = TOO_FEW if few else ""
                rows.append(row)
    return pd.DataFrame(rows)


def profile_summary_by_bin(profiles: pd.DataFrame, mass_split: float) -> dict[tuple[str, str], dict[str, Any]]:
    """Stacked profiles per channel and mass bin over halos (Fig. 7).

    Returns
    -------
    dict
        ``(channel, mass_bin)`` (``low``, ``high``, ``all``) -> ``{"r_mpc": (nb,) [Mpc],
        "n_halos", "n_images", "true", "pred", "frac", "abs_frac"}``; the last four are
        ``{"mean", "median", "p16", "p84"}`` over halos (each halo's images averaged first) of
        the true and posterior-mean profiles [channel unit], the signed and the absolute
        fractional error.
    """
    out: dict[tuple[str, str], dict[str, Any]] = {}
    bins = np.sort(profiles["bin"].unique())
    r = profiles.groupby("bin")["r_mpc"].first().reindex(bins).to_numpy(dtype=np.float64)
    profiles = profiles.assign(abs_frac=profiles["frac_error"].abs())
    for channel in TARGETS:
        sel = profiles[profiles["channel"] == channel]
        for b in (*MASS_BINS, "all"):
            part = _in_bin(sel, b, mass_split)
            entry: dict[str, Any] = {"r_mpc": r, "n_images": int(part["image_index"].nunique()),
                                     "n_halos": int(part["halo_id"].nunique())}
            for key, col in (("true", "true"), ("pred", "pred_mean"), ("frac", "frac_error"), ("abs_frac", "abs_frac")):
                _, curves, _ = _per_halo_curves(part, col)
                entry[key] = _band_over_halos(curves if curves.size else np.zeros((0, r.size)))
            out[(channel, b)] = entry
    return out


def spectra_summary_by_bin(
    spectra: pd.DataFrame, mass_split: float, quantity: str
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Mean and 16-84 % band over halos of ``b(k)`` or ``r(k)`` (Figs. 8, 9); images of a halo averaged first.

    Returns
    -------
    dict
        ``(channel, mass_bin, comparison)`` -> ``{"k": (nk,) [Mpc^-1], "mean", "median",
        "p16", "p84": (nk,), "n_halos": int, "n_images": int}``.
    """
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for (channel, comp), sel in spectra.groupby(["channel", "comparison"]):
        k = sel.groupby("bin")["k_mpc_inv"].first().to_numpy(dtype=np.float64)
        for b in MASS_BINS:
            part = _in_bin(sel, b, mass_split)
            _, curves, _ = _per_halo_curves(part, quantity)
            curves = curves if curves.size else np.zeros((0, k.size))
            out[(channel, b, comp)] = {"k": k, "n_halos": int(curves.shape[0]),
                                       "n_images": int(part["image_index"].nunique()), **_band_over_halos(curves)}
    return out


def convergence_summary(
    convergence: pd.DataFrame, tolerance: float
) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]], dict[str, int | None]]:
    """Median and 16-84 % band over halos of the convergence ratio (Fig. 5).

    The ratio is the Monte-Carlo error of the n-sample posterior mean over its actual error
    (median over the pixels within R200m, :func:`cmpipe.evaluation.metrics.mean_convergence`); each
    halo's images are averaged first.

    Returns
    -------
    n_values : ndarray, shape (K,)
    summary : dict
        Channel -> ``{"median", "p16", "p84"}`` of shape (K,), and ``n_halos``.
    n_converged : dict
        Channel -> :func:`cmpipe.evaluation.metrics.samples_to_converge` of the median curve with
        ``tolerance`` (None: never, e.g. too few samples or a point estimate).
    """
    from cmpipe.evaluation.metrics import samples_to_converge

    summary, conv = {}, {}
    n_values = np.sort(convergence["n"].unique())
    for channel in TARGETS:
        part = convergence[convergence["channel"] == channel]
        if not len(part):
            continue
        n, curves, _ = _per_halo_curves(part, "ratio", "n")
        band = _band_over_halos(curves)
        if not np.isfinite(band["median"]).any():
            conv[channel] = None
            continue
        summary[channel] = {"median": band["median"], "p16": band["p16"], "p84": band["p84"],
                            "n_halos": int(curves.shape[0])}
        conv[channel] = samples_to_converge(n, np.nan_to_num(band["median"], nan=np.inf), tolerance)
        n_values = n
    return n_values, summary, conv


def zhist_summary(zhist: pd.DataFrame, region: str = "r200m") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Standardized-error counts of one region summed over images, for Fig. 6 only.

    The end bins hold the values beyond the edges (clipped): no spread is computed from these
    counts; the numbers are :func:`z_summary`'s, from the raw values.

    Returns
    -------
    edges : ndarray, shape (B + 1,)
    counts : dict
        Channel -> counts (B,).
    """
    from cmpipe.evaluation.metrics import Z_EDGES

    edges = np.asarray(Z_EDGES, dtype=np.float64)
    counts = {}
    if "region" in zhist:
        zhist = zhist[zhist["region"] == region]
    for channel in TARGETS:
        part = zhist[zhist["channel"] == channel]
        c = np.zeros(edges.size - 1)
        if len(part):
            sums = part.groupby("bin")["count"].sum()
            c[sums.index.to_numpy()] = sums.to_numpy(dtype=np.float64)
        counts[channel] = c
    return edges, counts


def z_summary(clusters: pd.DataFrame) -> pd.DataFrame:
    """Width of the standardized pixel errors inside R200m (headline) and outside, over halos.

    From the raw per-image moments of the ``clusters`` table (never a clipped histogram):
    per halo the mean over its images of ``z_mean``, ``z_std`` and ``z_mad`` (1.4826 MAD), then
    the median over halos with a 68 % bootstrap interval. A calibrated posterior gives a width
    near 1 (1.03 for 50 samples); > 1 is over-confident, < 1 under-confident.

    Returns
    -------
    DataFrame
        Columns ``channel, region (r200m | outside), n_halos, n_images, z_mean[_lo, _hi],
        z_std[_lo, _hi], z_mad[_lo, _hi], verdict, note``.
    """
    rows = []
    for channel in TARGETS:
        sel = clusters[clusters["channel"] == channel]
        for region in ("r200m", "outside"):
            cols = {f"z_mean_{region}": "z_mean", f"z_std_{region}": "z_std", f"z_mad_{region}": "z_mad"}
            part = sel.rename(columns=cols)
            halos = halo_means(part, list(cols.values())) if len(part) else pd.DataFrame(
                columns=[*cols.values(), "n_images"])
            row: dict[str, Any] = {"channel": channel, "region": region}
            for col in cols.values():
                summ = summarise(halos[col], halos["n_images"], "median")
                row.update(_cells(col, summ))
            row["n_halos"], row["n_images"] = summ.n_halos, summ.n_images
            row["verdict"] = _width_verdict(row["z_std_lo"], row["z_std_hi"])
            row["note"] = summ.note
            rows.append(row)
    cols = ["channel", "region", "n_halos", "n_images"]
    cols += [f"{c}{s}" for c in ("z_mean", "z_std", "z_mad") for s in ("", "_lo", "_hi")]
    return pd.DataFrame(rows, columns=[*cols, "verdict", "note"])


def _width_verdict(lo: float, hi: float, tolerance: float = 0.1) -> str:
    """``over-confident`` if the interval of the z width lies above ``1 + tolerance``, ``under-confident``
    below ``1 - tolerance``, else ``consistent``; ``-`` without a number."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "-"
    if lo > 1.0 + tolerance:
        return "over-confident"
    if hi < 1.0 - tolerance:
        return "under-confident"
    return "consistent"


def coverage_summary(coverage: pd.DataFrame) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Observed coverage per channel and quantity: images of a halo averaged, then the mean over halos.

    Returns
    -------
    dict
        Channel -> quantity -> ``(levels (L,), observed (L,))``.
    """
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for (channel, quantity), part in coverage.groupby(["channel", "quantity"], sort=False):
        levels, curves, _ = _per_halo_curves(part, "covered", "level")
        out.setdefault(channel, {})[quantity] = (np.asarray(levels, dtype=np.float64), np.nanmean(curves, axis=0))
    return out


def calibration_summary(coverage: pd.DataFrame) -> pd.DataFrame:
    """Interval coverage per channel and quantity over halos, with a verdict.

    Per halo the observed coverage at each credible level (its images averaged); over halos
    the mean. ``max_coverage_deviation`` = max over levels of |observed - expected|;
    ``mean_deviation`` = mean over levels of (observed - expected), with a 68 % bootstrap
    interval over halos: its interval below -0.05 is ``over-confident`` (intervals too
    narrow), above 0.05 ``under-confident``, else ``consistent``.

    Returns
    -------
    DataFrame
        Columns ``channel, quantity, n_halos, n_images, max_coverage_deviation,
        mean_deviation[_lo, _hi], verdict, note``.
    """
    rows = []
    for (channel, quantity), part in coverage.groupby(["channel", "quantity"], sort=False):
        levels, curves, counts = _per_halo_curves(part, "covered", "level")
        levels = np.asarray(levels, dtype=np.float64)
        dev = np.nanmean(curves - levels[None, :], axis=1)
        summ = summarise(dev, counts, "mean")
        mean_curve = np.nanmean(curves, axis=0)
        verdict = "-" if summ.note else ("over-confident" if summ.hi < -0.05 else
                                         "under-confident" if summ.lo > 0.05 else "consistent")
        rows.append({"channel": channel, "quantity": quantity, "n_halos": summ.n_halos, "n_images": summ.n_images,
                     "max_coverage_deviation": float(np.max(np.abs(mean_curve - levels))),
                     **_cells("mean_deviation", summ), "verdict": verdict, "note": summ.note})
    return pd.DataFrame(rows, columns=["channel", "quantity", "n_halos", "n_images", "max_coverage_deviation",
                                       "mean_deviation", "mean_deviation_lo", "mean_deviation_hi", "verdict", "note"])


def rank_summary(clusters: pd.DataFrame, max_bins: int = 10) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Rank histograms of the true masses among the sample masses, over halos, with the uniform
    expectation: within R200m (headline), outside R200m and within R500c.

    Each image's rank counts ``1 / n_images`` of its halo, so every halo weighs 1 whatever its
    number of images (a halo seen ten times does not fill ten counts); the counts sum to the
    number of halos with a rank, and so does the expectation.

    Returns
    -------
    dict
        Channel -> ``mass_r200m_rank`` | ``mass_outside_r200m_rank`` | ``mass_r500c_rank`` ->
        ``(counts, expected)`` of shape (n_bins,), ``n_bins = min(max_bins, S + 1)``; ``counts``
        [halos] may be fractional where a halo's images fall in different bins.
    """
    from cmpipe.evaluation.metrics import rank_bin_probabilities, rank_histogram

    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for channel in TARGETS:
        part = clusters[clusters["channel"] == channel]
        if not len(part):
            continue
        s = int(part["n_samples"].max())
        n_bins = min(max_bins, s + 1)
        for col in ("mass_r200m_rank", "mass_outside_r200m_rank", "mass_r500c_rank"):
            if col not in part:
                continue
            valid = part[part[col] >= 0]
            if not len(valid):
                continue
            _, inverse, per_halo = np.unique(valid["halo_id"].to_numpy(), return_inverse=True, return_counts=True)
            counts = rank_histogram(valid[col].to_numpy(), s, n_bins, weights=1.0 / per_halo[inverse])
            out.setdefault(channel, {})[col] = (counts, rank_bin_probabilities(s, n_bins) * len(per_halo))
    return out


def _coverage_deviations(cov: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]) -> list[dict[str, Any]]:
    """Rows ``channel, quantity, max_coverage_deviation`` of a :func:`coverage_summary`."""
    from cmpipe.evaluation.metrics import max_coverage_deviation

    return [{"channel": channel, "quantity": quantity, "max_coverage_deviation": max_coverage_deviation(lv, obs)}
            for channel, quantities in cov.items() for quantity, (lv, obs) in quantities.items()]


def _tarp(group, done_rows: np.ndarray) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]] | None, str]:
    """TARP on whole maps per channel from the ``samples`` array, or (None, why not)."""
    from cmpipe.evaluation.metrics import tarp_coverage

    if group is None or "samples" not in group:
        return None, "not available: infer.save_samples=false (no samples saved)"
    if done_rows.size < 2:
        return None, "not available: fewer than 2 images"
    samples = np.stack([np.asarray(group["samples"][int(i)]) for i in done_rows], axis=1)  # (S, M, 2, R, R)
    truth = np.stack([np.asarray(group["truth"][int(i)]) for i in done_rows])  # (M, 2, R, R)
    return {channel: tarp_coverage(samples[:, :, c], truth[:, c]) for c, channel in enumerate(TARGETS)}, ""


#: The headline metrics: key -> (description, statistic over halos, lower-is-better error (gets a skill)).
#: Per halo: the mean over its images of the image-level value.
HEADLINES: dict[str, tuple[str, str, bool]] = {
    "profile_central": ("profile abs frac error, r < 1 Mpc (median over halos)", "median", True),
    "profile_outer": ("profile abs frac error, 1 Mpc - R200m (median over halos)", "median", True),
    "profile_edge": ("profile abs frac error, outermost bin (median over halos)", "median", True),
    "profile_bias_central": ("profile signed frac error, r < 1 Mpc (mean over halos)", "mean", False),
    "mass_r500c": ("abs mass frac error within R500c (median over halos)", "median", True),
    "mass_r200m": ("abs mass frac error within R200m (median over halos)", "median", True),
    "mass_r200m_bias": ("mass signed frac error within R200m (mean over halos)", "mean", False),
    "mass_r200m_scatter": ("mass frac error scatter within R200m (std over halos)", "std", True),
    "mass_whole": ("abs mass frac error, whole map (secondary; median over halos)", "median", True),
    "z_std_r200m": ("std of standardized errors within R200m (raw; median over halos)", "median", False),
    "z_mad_r200m": ("1.4826 MAD of standardized errors within R200m", "median", False),
    "z_std_outside": ("std of standardized errors outside R200m (secondary)", "median", False),
    "n_converged": ("samples until the mean's MC error < tolerance x its error (median over halos)", "median", False),
}
#: Keys of :data:`HEADLINES` shown on the terminal.
TERMINAL_HEADLINES = ("profile_central", "profile_outer", "mass_r500c", "mass_r200m", "z_std_r200m")


def halo_values(frames: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, pd.Series]]:
    """Per-halo values of every :data:`HEADLINES` metric: key -> channel -> Series (index halo_id).

    Each is the mean over the halo's images of the image-level value (absolute errors are
    made absolute per image, before any averaging).
    """
    cl = frames["clusters"]
    r200 = cl.drop_duplicates("image_index").set_index("image_index")["r200m_mpc"]
    perr = profile_errors(frames["profiles"], r200)
    out: dict[str, dict[str, pd.Series]] = {k: {} for k in HEADLINES}
    for channel in TARGETS:
        c = cl[cl["channel"] == channel]
        img = pd.DataFrame({"image_index": c["image_index"], "halo_id": c["halo_id"],
                            "mass_r500c": c["mass_r500c_frac_error"].abs(),
                            "mass_r200m": c["mass_r200m_frac_error"].abs(),
                            "mass_r200m_bias": c["mass_r200m_frac_error"],
                            "mass_r200m_scatter": c["mass_r200m_frac_error"],
                            "mass_whole": c["mass_frac_error"].abs(),
                            "z_std_r200m": c["z_std_r200m"], "z_mad_r200m": c["z_mad_r200m"],
                            "z_std_outside": c["z_std_outside"],
                            "n_converged": c["n_converged"].astype(np.float64)})
        for key in img.columns[2:]:
            out[key][channel] = img.groupby("halo_id", sort=True)[key].mean()
        p = perr[perr["channel"] == channel]
        for rng_name in PROFILE_RANGES:
            q = p[p["range"] == rng_name]
            out[f"profile_{rng_name}"][channel] = q.groupby("halo_id", sort=True)["abs_error"].mean()
        q = p[p["range"] == "central"]
        out["profile_bias_central"][channel] = q.groupby("halo_id", sort=True)["signed_error"].mean()
    return out


def headline_numbers(values: Mapping[str, Mapping[str, pd.Series]], n_images: int | None = None) -> dict[str, float]:
    """The headline numbers with their 68 % halo-bootstrap intervals.

    Parameters
    ----------
    values : mapping
        :func:`halo_values`.
    n_images : int, optional
        Images behind them (``n_images``).

    Returns
    -------
    dict
        ``<key>_<channel>``, ``<key>_<channel>_lo``, ``<key>_<channel>_hi`` for each key of
        :data:`HEADLINES` (NaN with fewer than :data:`cmpipe.evaluation.halo_stats.MIN_HALOS` halos), and
        ``n_halos``, ``n_images``.
    """
    out: dict[str, float] = {}
    n_halos = 0
    for key, (_, stat, _) in HEADLINES.items():
        for channel in TARGETS:
            series = values.get(key, {}).get(channel, pd.Series(dtype=np.float64))
            summ = summarise(series, None, stat)
            out[f"{key}_{channel}"], out[f"{key}_{channel}_lo"], out[f"{key}_{channel}_hi"] = summ.value, summ.lo, summ.hi
            n_halos = max(n_halos, summ.n_halos)
    out["n_halos"] = float(n_halos)
    if n_images is not None:
        out["n_images"] = float(n_images)
    return out


def skill_numbers(model: Mapping[str, Mapping[str, pd.Series]],
                  baselines: Mapping[str, Mapping[str, Mapping[str, pd.Series]]]) -> dict[str, dict[str, Any]]:
    """Skill of the model against the best baseline per error metric and channel.

    For each lower-is-better key of :data:`HEADLINES`: the best baseline is the one with the
    smallest statistic over the halos it shares with the model; skill = ``1 - err_model /
    err_best`` (:func:`cmpipe.evaluation.halo_stats.paired_skill`, paired bootstrap over the common
    halos). 1: perfect; 0: no better than the best baseline; < 0: worse.

    Returns
    -------
    dict
        ``<key>_<channel>`` -> ``{"best": name, "skill": Summary, "better_than": [names],
        "not_better_than": [names]}``; empty without baselines.
    """
    out: dict[str, dict[str, Any]] = {}
    if not baselines:
        return out
    for key, (_, stat, is_error) in HEADLINES.items():
        if not is_error:
            continue
        for channel in TARGETS:
            m = model.get(key, {}).get(channel)
            if m is None:
                continue
            skills = {name: paired_skill(m, b[key][channel], stat) for name, b in baselines.items()
                      if channel in b.get(key, {})}
            if not skills:
                continue
            errs, own = {}, {}
            for name, b in baselines.items():
                if channel in b.get(key, {}):
                    common = b[key][channel].reindex(m.dropna().index).dropna()
                    errs[name] = summarise(common, None, stat).value
                    own[name] = summarise(m.reindex(common.index), None, stat).value
            finite = {n: e for n, e in errs.items() if np.isfinite(e)}
            best = min(finite, key=finite.get) if finite else next(iter(skills))
            # Not better: the model's error on the common halos is not below the baseline's (this
            # also covers a baseline with zero error, where the skill ratio is undefined).
            worse = [n for n in finite if np.isfinite(own[n]) and own[n] >= finite[n]]
            out[f"{key}_{channel}"] = {
                "best": best, "skill": skills[best],
                "better_than": [n for n in finite if n not in worse and np.isfinite(own[n])],
                "not_better_than": worse}
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


def _save(fig, path: AnyPath) -> AnyPath:
    save_figure(fig, path, dpi=110)
    return path


def _example_rows(log10_m: np.ndarray, done: np.ndarray, k: int, halo_id: np.ndarray | None = None) -> np.ndarray:
    """Up to ``k`` done rows of the posterior store spread evenly in log10 M, one per halo (its first image)."""
    rows = np.flatnonzero(done)
    if halo_id is not None and rows.size:
        _, first = np.unique(np.asarray(halo_id)[rows], return_index=True)
        rows = rows[np.sort(first)]
    if rows.size == 0:
        return rows
    rows = rows[np.argsort(log10_m[rows], kind="stable")]
    pick = np.unique(np.round(np.linspace(0, rows.size - 1, min(k, rows.size))).astype(int))
    return rows[pick]


@dataclass
class _Outputs:
    """An output directory (a path or URL) and what has been written into it (file name -> path);
    every file written whole (:func:`cmpipe.store.location.write_bytes_atomic`)."""

    out: AnyPath
    written: dict[str, Any] = field(default_factory=dict)

    def figure(self, fig, name: str) -> None:
        """Save ``fig`` as ``name`` (:func:`_save`)."""
        self.written[name] = _save(fig, self.out / name)

    def csv(self, frame: pd.DataFrame, name: str) -> None:
        """Write ``frame`` as ``name`` (no index)."""
        write_text_atomic(self.out / name, frame.to_csv(index=False))
        self.written[name] = self.out / name

    def text(self, text: str, name: str) -> None:
        """Write ``text`` as ``name``."""
        write_text_atomic(self.out / name, text)
        self.written[name] = self.out / name


def make_report(
    results: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    evaluate_of: Callable[[str], EvaluateConfig],
) -> dict[str, Any]:
    """Write the evaluation report of a results directory of ``cmpipe infer``.

    Parameters
    ----------
    results : str, path-like or URL
        Holds ``tables/``, ``images.parquet`` and ``posterior.zarr``.
    out : str, path-like or URL, optional
        Output directory; default ``RESULTS/report``. New, empty, or a report directory of
        cmpipe (it is marked as one); any other directory is refused before any work.
    evaluate_of : callable
        The ``evaluate`` section the results were made with, from the ``config_yaml``
        attribute of the posterior store (:func:`cmpipe.stages.report.recorded_evaluate`);
        called once the tables are read, so a missing table is reported first.

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
    cmpipe.store.outputs.OutputError
        If ``out`` cannot be written or holds files cmpipe did not write (naming it).
    cmpipe.store.posterior.PosteriorStoreError
        If the posterior store is missing.
    """
    from cmpipe.store.outputs import claim_directory

    results = _check_results_dir(results)
    out = claim_directory(out if out is not None else results / "report", "report", names=REPORT_NAMES,
                          what="report directory")
    frames, group, attrs, settings = _read_results(results, evaluate_of)
    settings = resolve_mass_split(settings, frames["clusters"])
    units = channel_units(attrs)
    baselines = read_baselines(results)
    if not is_remote(out):
        out.mkdir(parents=True, exist_ok=True)
    files = _Outputs(out)
    cl = frames["clusters"]
    n_halos, n_images = int(cl["halo_id"].nunique()), int(cl["image_index"].nunique())
    counts_note = f"n_halos = {n_halos}, n_images = {n_images}"

    _mass_distribution_figure(files, frames, settings)
    done = _example_map_figures(files, group, attrs, units)
    zsum = _convergence_figures(files, frames, settings["tolerance"])
    _profile_and_spectra_figures(files, frames, baselines, settings["mass_split"], settings["k_split"])
    t1_md = _table1_section(files, frames["spectra"], settings["mass_split"], settings["k_split"])
    mass_md, prof_md = _mass_and_profile_sections(files, frames, settings["mass_split"])
    cal_md, numbers = _calibration_section(files, frames, group, done, zsum)

    # Headline numbers against the baselines, and the index.
    headline, base_numbers, skills = _headline_and_skills(frames, baselines, n_images)
    numbers.update(headline)
    headline_md, verdicts = _headline_markdown({"model": numbers, **base_numbers}, skills, list(baselines))
    written = files.written
    written["headline_text"] = _headline_text({"model": numbers, **base_numbers}, skills, list(baselines),
                                              counts_note)
    written["report.md"] = _write_index(out, written, headline_md, verdicts, t1_md, mass_md, prof_md, cal_md,
                                        settings, counts_note, list(baselines))
    written["report"] = written["report.md"]
    written["numbers"] = numbers
    written["baseline_numbers"] = base_numbers
    written["skills"] = skills
    logger.info("report of %d images of %d halos written to %s", n_images, n_halos, out)
    return written


def _mass_distribution_figure(files: _Outputs, frames: Mapping[str, pd.DataFrame],
                              settings: Mapping[str, float]) -> None:
    """Fig. 1: mass distribution (the shaded range is the one the evaluated test halos span)."""
    from cmpipe.plots import evaluation as plots

    images, cl = frames["images"], frames["clusters"]
    halos = images.drop_duplicates("halo_id")["log10_m200m_msun_h"].to_numpy()
    by_split = {s: g["log10_m200m_msun_h"].to_numpy() for s, g in images.groupby("split", sort=True)}
    tested = cl["log10_m200m_msun_h"].to_numpy(np.float64)
    reached = (float(tested.min()), float(tested.max())) if tested.size else None
    files.figure(plots.plot_mass_distribution(halos, by_split, (settings["test_min"], settings["test_max"]),
                                              tested=reached), "fig1_mass_distribution.png")


def _example_map_figures(files: _Outputs, group, attrs: Mapping[str, Any], units: Mapping[str, str]) -> np.ndarray:
    """Figs. 2 and 4: maps of a few test images (distinct halos) from the posterior store.

    Returns
    -------
    ndarray of bool, shape (N,)
        Which rows of the posterior store are done.
    """
    from cmpipe.plots import evaluation as plots

    pixel = float(attrs["pixel_mpc"])
    log10_m = np.asarray(group["log10_m200m_msun_h"][:], dtype=np.float64)
    halo_ids = np.asarray(group["halo_id"][:], dtype=np.int64)
    done = np.asarray(group["done"][:]) == 1
    rows = _example_rows(log10_m, done, 3, halo_ids)
    maps = np.stack([np.concatenate([group["condition"][int(i)], group["truth"][int(i)]]) for i in rows]) \
        if rows.size else np.zeros((0, 4, 1, 1))
    conds = tuple(attrs.get("conditions") or ("sz_y", "xray_sb"))
    files.figure(plots.plot_example_maps(maps, (*conds, *TARGETS), units, pixel, log10_m[rows]),
                 "fig2_example_maps.png")
    rows6 = _example_rows(log10_m, done, 6, halo_ids)
    arrays = {name: (np.stack([np.asarray(group[name][int(i)]) for i in rows6]) if rows6.size
                     else np.zeros((0, 2, 1, 1))) for name in ("truth", "mean", "std")}
    files.figure(plots.plot_truth_vs_mean(arrays["truth"], arrays["mean"], arrays["std"], TARGETS, units, pixel,
                                          log10_m[rows6]), "fig4_truth_vs_mean.png")
    return done


def _convergence_figures(files: _Outputs, frames: Mapping[str, pd.DataFrame], tolerance: float) -> pd.DataFrame:
    """Fig. 5: convergence of the posterior mean; Fig. 6: standardized errors (numbers from raw
    values). Returns :func:`z_summary` of the ``clusters`` table."""
    from cmpipe.plots import evaluation as plots

    n_values, conv, n_conv = convergence_summary(frames["convergence"], tolerance)
    files.figure(plots.plot_convergence(n_values, conv, tolerance, n_conv), "fig5_convergence.png")
    zsum = z_summary(frames["clusters"])
    edges, counts = zhist_summary(frames["zhist"], "r200m")
    z_in = {r.channel: (r.z_std, r.z_mad) for r in zsum[zsum.region == "r200m"].itertuples()}
    files.figure(plots.plot_standardized_errors(edges, counts, z_in), "fig6_standardized_errors.png")
    return zsum


def _profile_and_spectra_figures(files: _Outputs, frames: Mapping[str, pd.DataFrame],
                                 baselines: Mapping[str, Mapping[str, pd.DataFrame]], split: float,
                                 k_split: float) -> None:
    """Fig. 7: profiles; Figs. 8, 9: spectra (the baselines' r(k) beside the inputs').

    ``split`` [log10 Msun/h], ``k_split`` [Mpc^-1]."""
    from cmpipe.plots import evaluation as plots

    prof = profile_summary_by_bin(frames["profiles"], split)
    files.figure(plots.plot_profiles(prof, TARGETS), "fig7_profiles.png")
    spec_b = spectra_summary_by_bin(frames["spectra"], split, "b")
    spec_r = spectra_summary_by_bin(frames["spectra"], split, "r")
    for name, bf in baselines.items():
        for key, value in spectra_summary_by_bin(bf["spectra"][bf["spectra"]["comparison"] == "posterior_mean"],
                                                 split, "r").items():
            spec_r[(key[0], key[1], f"baseline_{name}")] = value
    files.figure(plots.plot_spectral_ratio(spec_b, "b", TARGETS, ("sample", "posterior_mean"), k_split),
                 "fig8_bias.png")
    files.figure(plots.plot_spectral_ratio(spec_r, "r", TARGETS, ("sample", "posterior_mean", "input_sz_y",
                                                                  "input_xray_sb",
                                                                  *[f"baseline_{n}" for n in baselines]), k_split),
                 "fig9_correlation.png")


def _table1_section(files: _Outputs, spectra: pd.DataFrame, split: float, k_split: float) -> str:
    """Table 1 as ``table1.csv`` and ``table1.md``; returns the Markdown."""
    t1 = table1(spectra, split, k_split)
    files.csv(t1, "table1.csv")
    t1_md = (f"Table 1: b and r per image averaged over k < {k_split:.3f} Mpc^-1 (large) and k >= it (small), each "
             "k bin weighted by its width in ln k (bins equally spaced in log k); the images of a halo averaged; "
             f"then the mean over the halos of the mass bin (low: log10 M200m < {split:.3g}) with its 68 % bootstrap "
             f"interval over halos ({N_BOOTSTRAP} resamples, seed {BOOTSTRAP_SEED}). Fewer than {MIN_HALOS} halos: "
             f"{TOO_FEW}.\n\n" + _interval_table(t1, ("b_large", "b_small", "r_large", "r_small")))
    files.text(t1_md, "table1.md")
    return t1_md


def _mass_and_profile_sections(files: _Outputs, frames: Mapping[str, pd.DataFrame], split: float) -> tuple[str, str]:
    """Mass and profile errors (``mass_errors.csv``, ``profile_errors.csv``, ``mass_errors.md``,
    ``fig_mass_error.png``); returns the Markdown of both."""
    from cmpipe.plots import evaluation as plots

    cl = frames["clusters"]
    masses = mass_error_summary(cl, split)
    files.csv(masses, "mass_errors.csv")
    r200 = cl.drop_duplicates("image_index").set_index("image_index")["r200m_mpc"]
    perr = profile_error_summary(profile_errors(frames["profiles"], r200), split)
    files.csv(perr, "profile_errors.csv")
    mass_md = ("Mass fractional error of the posterior-mean map within R500c and R200m (headline) and over the whole "
               "map (secondary). Per halo the mean over its images of |error| (abs_error) and of the signed error; "
               "abs_error = median over halos, bias = mean over halos of the signed error, scatter = its std over "
               "halos; [68 % bootstrap interval over halos]. Reference: de Andres et al. 2024, ~1 % bias, <= 3 % "
               "scatter.\n\n" + _interval_table(masses, ("abs_error", "bias", "scatter"),
                                                  extra=("ref_bias", "ref_scatter")))
    files.text(mass_md, "mass_errors.md")
    prof_md = ("Profile fractional error of the posterior mean per halo: the mean of |error| over the radial bins of "
               "each range (images of a halo averaged); abs_error = median over halos [68 % bootstrap interval], "
               "p16-p84 = the 68 % range over halos; bias = mean signed error over halos, reported separately.\n\n"
               + _interval_table(perr, ("abs_error", "bias"), extra=("p16", "p84"), key=("channel", "range",
                                                                                          "mass_bin")))
    mass_data = {c: {"log10_m": g["log10_m200m_msun_h"].to_numpy(), "whole": g["mass_frac_error"].to_numpy(),
                     "r200m": g["mass_r200m_frac_error"].to_numpy(), "r500c": g["mass_r500c_frac_error"].to_numpy()}
                 for c in TARGETS for g in [cl[cl["channel"] == c]]}
    files.figure(plots.plot_mass_errors(mass_data, split), "fig_mass_error.png")
    return mass_md, prof_md


def _calibration_section(files: _Outputs, frames: Mapping[str, pd.DataFrame], group, done: np.ndarray,
                         zsum: pd.DataFrame) -> tuple[str, dict[str, float]]:
    """Calibration (inside R200m the headline; outside secondary): ``fig_calibration.png`` and
    ``calibration.md``.

    Returns
    -------
    markdown : str
    numbers : dict
        ``calibration_<channel>_<quantity>`` (max coverage deviation), then ``tarp_<channel>``
        where TARP is available.
    """
    from cmpipe.evaluation.metrics import max_coverage_deviation
    from cmpipe.plots import evaluation as plots

    cov = coverage_summary(frames["coverage"])
    ranks = rank_summary(frames["clusters"])
    tarp, tarp_note = _tarp(group, np.flatnonzero(done))
    files.figure(plots.plot_calibration(cov, ranks, tarp, tarp_note), "fig_calibration.png")
    cal = calibration_summary(frames["coverage"])
    numbers = {f"calibration_{r.channel}_{r.quantity}": r.max_coverage_deviation for r in cal.itertuples()}
    tarp_rows = []
    if tarp is not None:
        for channel, (alpha, ecp) in tarp.items():
            dev = max_coverage_deviation(alpha, ecp)
            numbers[f"tarp_{channel}"] = dev
            tarp_rows.append(f"| {channel} | {dev:.3g} |")
    cal_md = ("Calibration: interval coverage per halo (images averaged), mean over halos; max |observed - expected| "
              "over the credible levels (0: calibrated) and the mean signed deviation [68 % bootstrap interval over "
              "halos]: below 0 the intervals are too narrow (over-confident).\n\n"
              + _interval_table(cal, ("mean_deviation",), extra=("max_coverage_deviation", "verdict"),
                                key=("channel", "quantity"))
              + "\nWidth of the standardized pixel errors from the raw values (std and 1.4826 MAD; median over "
                "halos [68 % interval]); > 1: over-confident.\n\n"
              + _interval_table(zsum, ("z_mean", "z_std", "z_mad"), extra=("verdict",), key=("channel", "region"))
              + "\nTARP (whole maps): "
              + ("\n\n| channel | max deviation |\n|---|---|\n" + "\n".join(tarp_rows) + "\n" if tarp is not None
                 else f"{tarp_note}; the TARP panels are left out of fig_calibration.png.\n"))
    files.text(cal_md, "calibration.md")
    return cal_md, numbers


def _headline_and_skills(
    frames: Mapping[str, pd.DataFrame], baselines: Mapping[str, Mapping[str, pd.DataFrame]], n_images: int
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
    """The model's headline numbers (:func:`headline_numbers`) followed by ``skill_<key>_<channel>``
    (with ``_lo``, ``_hi``), the baselines' headline numbers, and the skills (:func:`skill_numbers`)."""
    values = halo_values(frames)
    numbers = headline_numbers(values, n_images)
    base_values = {name: halo_values(bf) for name, bf in baselines.items()}
    base_numbers = {name: headline_numbers(v) for name, v in base_values.items()}
    skills = skill_numbers(values, base_values)
    for key, sk in skills.items():
        numbers[f"skill_{key}"], numbers[f"skill_{key}_lo"], numbers[f"skill_{key}_hi"] = (
            sk["skill"].value, sk["skill"].lo, sk["skill"].hi)
    return numbers, base_numbers, skills


_CAPTIONS = {
    "fig1_mass_distribution.png": "Fig. 1: mass distribution of the halos and of each split's images",
    "fig2_example_maps.png": "Fig. 2: example test inputs and targets (distinct halos)",
    "fig4_truth_vs_mean.png": "Fig. 4: truth, posterior mean and posterior std (distinct halos)",
    "fig5_convergence.png": "Fig. 5: Monte-Carlo error of the posterior mean over its actual error, within R200m",
    "fig6_standardized_errors.png": "Fig. 6: standardized pixel errors within R200m",
    "fig7_profiles.png": "Fig. 7: radial profiles and their fractional error (over halos)",
    "fig8_bias.png": "Fig. 8: bias b(k)",
    "fig9_correlation.png": "Fig. 9: cross-correlation r(k), with the input and trivial baselines",
    "fig_mass_error.png": "Mass fractional error vs mass",
    "fig_calibration.png": "Calibration: interval coverage, mass rank histograms, TARP",
}


def _interval_table(df: pd.DataFrame, columns: Sequence[str], extra: Sequence[str] = (),
                    key: Sequence[str] | None = None) -> str:
    """A pipe table: key columns, ``n_halos``, ``n_images``, each of ``columns`` as ``value [lo, hi]``
    (or "too few halos"), then ``extra``."""
    if key is None:
        key = [c for c in ("comparison", "channel", "aperture", "range", "region", "quantity", "mass_bin")
               if c in df.columns]
    head = [*key, "n_halos", "n_images", *columns, *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in df.iterrows():
        few = str(row.get("note", "")) == TOO_FEW
        cells = [str(row[k]) for k in key] + [str(int(row["n_halos"])), str(int(row["n_images"]))]
        for c in columns:
            cells.append(TOO_FEW if few or not np.isfinite(row[c])
                         else f"{_fmt(row[c])} [{_fmt(row[f'{c}_lo'])}, {_fmt(row[f'{c}_hi'])}]")
        cells += [_fmt(row[c]) for c in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(numbers: Mapping[str, float], name: str) -> str:
    v = numbers.get(name, np.nan)
    if not np.isfinite(v):
        return TOO_FEW if name in numbers else "-"
    return f"{_fmt(v)} [{_fmt(numbers.get(name + '_lo', np.nan))}, {_fmt(numbers.get(name + '_hi', np.nan))}]"


def _headline_markdown(numbers: Mapping[str, Mapping[str, float]], skills: Mapping[str, Mapping[str, Any]],
                       baselines: Sequence[str]) -> tuple[str, list[str]]:
    """The headline table (model, baselines, skill against the best baseline) and the sentences
    saying where the model is not better than a baseline."""
    labels = list(numbers)
    head = ["quantity", "channel", *labels, "n_halos"] + (["skill vs best baseline"] if baselines else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    verdicts: list[str] = []
    for key, (desc, _, is_error) in HEADLINES.items():
        for channel in TARGETS:
            name = f"{key}_{channel}"
            cells = [desc, channel, *[_num(numbers[lb], name) for lb in labels], _fmt(int(numbers["model"]["n_halos"]))]
            if baselines:
                sk = skills.get(name)
                cells.append(f"{sk['skill'].text()} (vs {sk['best']})" if sk else "-")
                if sk:
                    for b in sk["not_better_than"]:
                        verdicts.append(f"The model is **not better** than the `{b}` baseline at {desc}, {channel}: "
                                        f"{_fmt(numbers['model'][name])} against {_fmt(numbers[b][name])}.")
                    s = sk["skill"]
                    if sk["best"] in sk["better_than"] and np.isfinite(s.lo) and s.lo <= 0:
                        verdicts.append(f"At {desc}, {channel}, the model's advantage over `{sk['best']}` is within "
                                        f"the halo-to-halo uncertainty (skill {s.text()}).")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", verdicts


def _headline_text(numbers: Mapping[str, Mapping[str, float]], skills: Mapping[str, Mapping[str, Any]],
                   baselines: Sequence[str], counts_note: str) -> str:
    """The compact headline table printed by ``cmpipe report``."""
    labels = list(numbers)
    rows = [["metric", "chan", *labels] + (["skill"] if baselines else [])]
    for key in TERMINAL_HEADLINES:
        for channel in TARGETS:
            name = f"{key}_{channel}"
            row = [key, "gas" if channel == "gas_sigma" else "DM", *[_num(numbers[lb], name) for lb in labels]]
            if baselines:
                sk = skills.get(name)
                row.append(f"{sk['skill'].text('{:.2f}')} vs {sk['best']}" if sk else "-")
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = [f"headline over halos, median [68 % halo-bootstrap interval]; {counts_note}"
            + ("" if baselines else "; no baselines found under RESULTS/baselines/")]
    text += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(text)


def _write_index(out: AnyPath, written: Mapping[str, Any], headline_md: str, verdicts: Sequence[str], t1_md: str,
                 mass_md: str, prof_md: str, cal_md: str, settings: Mapping[str, float], counts_note: str,
                 baselines: Sequence[str]) -> AnyPath:
    lines = ["# cmpipe evaluation report", "",
             f"{counts_note} (test set); every number is a statistic over halos (the images of a halo averaged "
             f"first) with a 68 % bootstrap interval over halos ({N_BOOTSTRAP} resamples, seed {BOOTSTRAP_SEED}); "
             f"fewer than {MIN_HALOS} halos: {TOO_FEW}. Mass split log10 M200m = {settings['mass_split']:.3g} [Msun/h]; "
             f"k_split = {settings['k_split']:.3f} Mpc^-1; convergence: the Monte-Carlo error of the posterior mean "
             f"below {settings['tolerance']:g} of its actual error.", "",
             "## Headline numbers", ""]
    if baselines:
        lines += [f"Model beside the trivial baselines ({', '.join(f'`{b}`' for b in baselines)}; "
                  "`RESULTS/baselines/`), evaluated with the same metrics on the same test images. Skill = "
                  "1 - error(model) / error(best baseline) (paired bootstrap over the common halos): 1 perfect, "
                  "0 no better than the best baseline, < 0 worse.", ""]
    else:
        lines += ["No baselines found under `RESULTS/baselines/`: nothing tells whether these numbers beat a "
                  "trivial predictor (run the baselines).", ""]
    lines += [headline_md, ""]
    if verdicts:
        lines += ["### Where the model is not better than a baseline", ""] + [f"- {v}" for v in verdicts] + [""]
    elif baselines:
        lines += ["The model is better than every baseline on every headline error.", ""]
    lines += ["References: " + "; ".join(f"{k}: {v}" for k, v in REFERENCES.items()), ""]
    lines += ["## Table 1", "", t1_md, "## Mass errors", "", mass_md, "## Profile errors", "", prof_md,
              "## Calibration", "", cal_md, "## Figures", ""]
    for name, caption in _CAPTIONS.items():
        if name in written:
            lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    path = out / "report.md"
    write_text_atomic(path, "\n".join(lines))
    return path

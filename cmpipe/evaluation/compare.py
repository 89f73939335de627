"""Two or more results directories side by side (``cmpipe compare``), on the images they share.

:func:`compare_reports` reads each results directory of ``cmpipe infer`` as
:func:`cmpipe.evaluation.report.make_report` does (e.g. the diffusion model and the U-Net
baseline, ``model.kind`` ``score`` / ``unet``), restricts every table to the images evaluated in
all of them, and applies the report's aggregations per model: Table 1, mass errors, profiles,
b(k) and r(k), the headline numbers and, for models that sample, the calibration.

Every results directory and the comparison directory may be an object-store URL
(:mod:`cmpipe.store.location`), read and written as the report does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cmpipe.evaluation.halo_stats import BOOTSTRAP_SEED, N_BOOTSTRAP
from cmpipe.evaluation.image import TARGETS
from cmpipe.evaluation.report import (
    HEADLINES,
    _check_results_dir,
    _coverage_deviations,
    _interval_table,
    _markdown_table,
    _num,
    _Outputs,
    _read_results,
    coverage_summary,
    halo_values,
    headline_numbers,
    mass_error_summary,
    profile_summary_by_bin,
    read_baselines,
    resolve_mass_split,
    skill_numbers,
    spectra_summary_by_bin,
    table1,
)
from cmpipe.store.location import as_path, is_remote, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import EvaluateConfig

logger = logging.getLogger(__name__)

__all__ = ["COMPARISON_NAMES", "compare_reports"]

#: What :func:`compare_reports` writes into its directory (marked ``comparison``).
COMPARISON_NAMES = ("comparison*.png", "comparison_*.csv", "comparison.md")
#: The comparison's figures: file name -> caption.
_FIGURES = {"comparison_profiles.png": "Fractional error of the radial profiles",
            "comparison_bias.png": "Bias b(k)",
            "comparison_correlation.png": "Cross-correlation r(k), with the inputs' baselines",
            "comparison_mass_error.png": "Total-mass fractional error vs mass"}


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
    results: Mapping[str, str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    evaluate_of: Callable[[str], EvaluateConfig],
) -> dict[str, Any]:
    """Compare two or more results directories of ``cmpipe infer`` side by side.

    Each directory is read as :func:`cmpipe.evaluation.report.make_report` reads it (tables,
    posterior-store attributes and ``evaluate`` settings); every table is then restricted to the
    images evaluated in all of them (``image_index``), and the same aggregations are applied per
    model: Table 1 (:func:`cmpipe.evaluation.report.table1`, comparisons ``sample`` and
    ``posterior_mean``), mass errors (:func:`cmpipe.evaluation.report.mass_error_summary`),
    profiles, b(k) and r(k) and the headline numbers
    (:func:`cmpipe.evaluation.report.headline_numbers`); interval-coverage calibration for models
    that sample (not for ``model.kind: unet``, a point estimate). Each model uses its own
    ``evaluate`` settings (mass split, k split); differing settings are warned about in the text.

    Parameters
    ----------
    results : mapping
        Model label (e.g. ``"diffusion"``, ``"U-Net"``) -> results directory (a path or URL); at least two.
    out : str, path-like or URL
        Output directory: new, empty, or a comparison directory of cmpipe (it is marked as one).
    evaluate_of : callable
        The ``evaluate`` section a results directory was made with, from its posterior store's
        ``config_yaml`` (:func:`cmpipe.stages.report.recorded_evaluate`).

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
        As :func:`cmpipe.evaluation.report.make_report`.
    """
    from cmpipe.store.outputs import claim_directory

    if len(results) < 2:
        raise ValueError(f"compare_reports needs at least two results directories; got {len(results)}")
    for path in results.values():
        _check_results_dir(path)
    out = claim_directory(out, "comparison", names=COMPARISON_NAMES, what="comparison directory")
    loaded, baselines = _load_results(results, evaluate_of)
    images = {label: d["images"] for label, d in loaded.items()}
    common = _common_images(images)
    models = {}
    for label, d in loaded.items():
        f = _restricted(d["frames"], common)
        d["settings"] = resolve_mass_split(d["settings"], f["clusters"])  # on the common images
        models[label] = _model_summaries(label, f, d["settings"], d["info"]["point_estimate"], int(common.size))
    base_values = {name: halo_values(_restricted(bf, common)) for name, bf in baselines.items()}
    base_numbers = {name: headline_numbers(v) for name, v in base_values.items()}
    skills = {label: skill_numbers(models[label]["values"], base_values) for label in loaded}
    numbers = {label: m["numbers"] for label, m in models.items()}
    t1 = _stacked([m["table1"] for m in models.values()])
    masses = _stacked([m["masses"] for m in models.values()])

    if not is_remote(out):
        out.mkdir(parents=True, exist_ok=True)
    files = _Outputs(out)
    _comparison_figures(files, models, next(iter(loaded.values()))["settings"])
    files.csv(t1, "comparison_table1.csv")
    files.csv(masses, "comparison_mass_errors.csv")
    cal_parts = [row for m in models.values() for row in m["calibration"]]
    text = (_comparison_header(loaded, images, common)
            + _comparison_headlines(list(loaded), baselines, {**numbers, **base_numbers}, skills)
            + _comparison_tables(t1, masses, cal_parts, [lb for lb, d in loaded.items() if d["info"]["point_estimate"]])
            + _comparison_images(images, common))
    path = out / "comparison.md"
    write_text_atomic(path, "\n".join(text))
    written = files.written
    written["comparison.md"] = written["report"] = path
    written["numbers"] = numbers
    written["baseline_numbers"] = base_numbers
    written["skills"] = skills
    written["images"] = images
    written["common_images"] = common
    logger.info("comparison of %s on %d images written to %s", ", ".join(loaded), common.size, out)
    return written


def _load_results(
    results: Mapping[str, str | os.PathLike[str]], evaluate_of: Callable[[str], EvaluateConfig]
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, pd.DataFrame]]]:
    """Each results directory read: label -> ``path``, ``frames``, ``settings``, ``info``
    (:func:`_model_info`), ``images`` (:func:`_evaluated_images`); and the baselines' tables by
    name (the first results directory holding a baseline of that name gives it)."""
    loaded = {}
    baselines: dict[str, dict[str, pd.DataFrame]] = {}
    for label, path in results.items():
        frames, _, attrs, settings = _read_results(as_path(path), evaluate_of)
        loaded[label] = {"path": as_path(path), "frames": frames, "settings": settings, "info": _model_info(attrs),
                         "images": _evaluated_images(frames)}
        for name, bf in read_baselines(path).items():
            baselines.setdefault(name, bf)
    return loaded, baselines


def _common_images(images: Mapping[str, np.ndarray]) -> np.ndarray:
    """The sorted ``image_index`` evaluated in every model (a ValueError if none)."""
    common = images[next(iter(images))]
    for idx in images.values():
        common = np.intersect1d(common, idx)
    if common.size == 0:
        raise ValueError("the results have no evaluated image in common: "
                         + ", ".join(f"{label}: {idx.size} images" for label, idx in images.items()))
    return common


def _restricted(frames: Mapping[str, pd.DataFrame], common: np.ndarray) -> dict[str, pd.DataFrame]:
    """The tables (never ``images``) restricted to the images ``common``."""
    return {name: frame[frame["image_index"].isin(common)] for name, frame in frames.items() if name != "images"}


def _model_summaries(label: str, f: Mapping[str, pd.DataFrame], settings: Mapping[str, float],
                     point_estimate: bool, n_common: int) -> dict[str, Any]:
    """One model's aggregations on the common images: ``table1``, ``masses`` (with a ``model``
    column), ``prof``, ``spec_b``, ``spec_r``, ``values`` (:func:`halo_values`), ``numbers``
    (headline numbers, plus ``calibration_<channel>_<quantity>`` unless a point estimate),
    ``calibration`` (rows of the calibration table) and ``mass_data`` (for the mass-error figure)."""
    split, k_split = settings["mass_split"], settings["k_split"]
    out: dict[str, Any] = {"table1": table1(f["spectra"], split, k_split).assign(model=label),
                           "masses": mass_error_summary(f["clusters"], split).assign(model=label),
                           "prof": profile_summary_by_bin(f["profiles"], split),
                           "spec_b": spectra_summary_by_bin(f["spectra"], split, "b"),
                           "spec_r": spectra_summary_by_bin(f["spectra"], split, "r"),
                           "values": halo_values(f), "calibration": []}
    out["numbers"] = headline_numbers(out["values"], n_common)
    if not point_estimate:
        rows = _coverage_deviations(coverage_summary(f["coverage"]))
        out["numbers"].update({f"calibration_{r['channel']}_{r['quantity']}": r["max_coverage_deviation"]
                               for r in rows})
        out["calibration"] = [{"model": label, **r} for r in rows]
    cl = f["clusters"]
    out["mass_data"] = {c: {"log10_m": g["log10_m200m_msun_h"].to_numpy(), "whole": g["mass_frac_error"].to_numpy()}
                        for c in TARGETS for g in [cl[cl["channel"] == c]]}
    return out


def _stacked(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The models' tables one under the other, the ``model`` column first."""
    frame = pd.concat(parts, ignore_index=True)
    return frame[["model", *[c for c in frame.columns if c != "model"]]]


def _comparison_figures(files: _Outputs, models: Mapping[str, Mapping[str, Any]],
                        first: Mapping[str, float]) -> None:
    """The four figures of :data:`_FIGURES`; the k split and mass split drawn are the first model's."""
    from cmpipe.plots import evaluation as plots

    prof = {label: m["prof"] for label, m in models.items()}
    spec_b = {label: m["spec_b"] for label, m in models.items()}
    spec_r = {label: m["spec_r"] for label, m in models.items()}
    mass_data = {label: m["mass_data"] for label, m in models.items()}
    files.figure(plots.plot_profile_comparison(prof, TARGETS), "comparison_profiles.png")
    files.figure(plots.plot_spectral_comparison(spec_b, "b", TARGETS, first["k_split"]), "comparison_bias.png")
    files.figure(plots.plot_spectral_comparison(spec_r, "r", TARGETS, first["k_split"],
                                                baselines=("input_sz_y", "input_xray_sb")),
                 "comparison_correlation.png")
    files.figure(plots.plot_mass_error_comparison(mass_data, TARGETS, first["mass_split"]),
                 "comparison_mass_error.png")


def _comparison_header(loaded: Mapping[str, Mapping[str, Any]], images: Mapping[str, np.ndarray],
                       common: np.ndarray) -> list[str]:
    """Lines: the models' table, the image-set and settings warnings and the like-with-like note."""
    lines = ["# cmpipe comparison report", "", "| model | results | model.kind | sampler | steps | n_samples | "
             "images evaluated | mass split | k_split [Mpc^-1] |", "|---|---|---|---|---|---|---|---|---|"]
    for label, d in loaded.items():
        info, st = d["info"], d["settings"]
        sampler = "point estimate" if info["point_estimate"] else info["sampler"]
        lines.append(f"| {label} | {d['path']} | {info['kind']} | {sampler} | {info['steps']} | {info['n_samples']} "
                     f"| {images[label].size} | {st['mass_split']:g} | {st['k_split']:.3f} |")
    lines.append("")
    if any(not np.array_equal(idx, common) for idx in images.values()):
        lines += ["**Warning: the models' image sets differ** ("
                  + ", ".join(f"{label}: {idx.size}" for label, idx in images.items())
                  + f" images); every number and figure below is on the {common.size} images common to all.", ""]
    else:
        lines += [f"All models were evaluated on the same {common.size} images.", ""]
    first = next(iter(loaded.values()))["settings"]
    if any(any(d["settings"][k] != first[k] for k in ("mass_split", "k_split", "tolerance")) for d in loaded.values()):
        lines += ["**Warning: the models' evaluate settings (mass split, k split or convergence tolerance) "
                  "differ**; each model's numbers use its own.", ""]
    unets = [label for label, d in loaded.items() if d["info"]["point_estimate"]]
    lines += ["Compare like with like: a point estimate (the U-Net, `model.kind: unet`) against the diffusion "
              "model's posterior mean (`posterior_mean` rows); the diffusion model's single samples (`sample` rows) "
              "are the generative comparison. A point estimate's \"samples\" are the estimate itself, so its "
              "`sample` and `posterior_mean` rows coincide; and a point estimate, like any mean, has "
              "b(k) = r(k) < 1 on the scales where the inputs lack the information (the power there is "
              "averaged away), where a calibrated sample keeps b ~ 1 with a lower r."
              + (f" Point estimates here: {', '.join(unets)}." if unets else ""), ""]
    return lines


def _comparison_headlines(models: Sequence[str], baselines: Sequence[str],
                          all_numbers: Mapping[str, Mapping[str, float]],
                          skills: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Lines: the headline numbers of the models and baselines, each model's skill, and where a
    model is not better than a baseline."""
    lines = ["## Headline numbers", "",
             f"Statistics over halos (images of a halo averaged first) with 68 % bootstrap intervals over halos "
             f"({N_BOOTSTRAP} resamples, seed {BOOTSTRAP_SEED})"
             + (f"; beside the trivial baselines {', '.join(f'`{b}`' for b in baselines)} (found under the results' "
                "`baselines/`), with each model's skill = 1 - error(model) / error(best baseline)." if baselines
                else "; no baselines found under the results' `baselines/`: no skill column."), ""]
    labels = [*models, *baselines]
    head = ["quantity", "channel", *labels] + [f"skill {lb}" for lb in models if baselines]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    not_better: list[str] = []
    for key, (desc, _, _) in HEADLINES.items():
        for channel in TARGETS:
            name = f"{key}_{channel}"
            cells = [desc, channel, *[_num(all_numbers[lb], name) for lb in labels]]
            for lb in (models if baselines else ()):
                sk = skills[lb].get(name)
                cells.append(f"{sk['skill'].text()} (vs {sk['best']})" if sk else "-")
                for b in (sk or {}).get("not_better_than", []):
                    not_better.append(f"{lb} is **not better** than the `{b}` baseline at {desc}, {channel}.")
            lines.append("| " + " | ".join(cells) + " |")
    if not_better:
        lines += ["", "Where a model is not better than a baseline:", ""] + [f"- {v}" for v in not_better]
    return lines


def _comparison_tables(t1: pd.DataFrame, masses: pd.DataFrame, cal_parts: Sequence[Mapping[str, Any]],
                       unets: Sequence[str]) -> list[str]:
    """Lines: Table 1, mass errors and calibration of every model (``unets``: the point estimates)."""
    lines = ["", "## Table 1", "",
             "b and r per image averaged over k < k_split (large) and k >= k_split (small), k bins weighted by "
             "their width in ln k; the images of a halo averaged; the mean over halos [68 % bootstrap interval], "
             "per model.", "", _interval_table(t1, ("b_large", "b_small", "r_large", "r_small"),
                                                key=("model", "comparison", "channel", "mass_bin")),
             "## Mass errors", "",
             "Mass fractional error of the posterior-mean (point-estimate) map within R500c, R200m and the whole "
             "map: abs_error = median over halos of the per-halo mean |error|, bias = mean signed error over halos, "
             "scatter = its std over halos [68 % intervals]; reference: de Andres et al. 2024, ~1 % bias, <= 3 % "
             "scatter.", "",
             _interval_table(masses, ("abs_error", "bias", "scatter"), key=("model", "channel", "aperture",
                                                                            "mass_bin")), "## Calibration", ""]
    if cal_parts:
        lines += ["Max |observed - expected| interval coverage over the credible levels (0: calibrated), models "
                  "that sample only.", "", _markdown_table(pd.DataFrame(cal_parts))]
    lines += [f"Not applicable to {label} (a point estimate has no spread)." for label in unets] + [""]
    return lines


def _comparison_images(images: Mapping[str, np.ndarray], common: np.ndarray) -> list[str]:
    """Lines: the images each model was evaluated on, those compared, and the figures."""
    lines = ["## Images evaluated", ""]
    for label, idx in images.items():
        extra = np.setdiff1d(idx, common)
        lines.append(f"- {label}: {idx.size} images" + (f"; not in every model, left out: {extra.tolist()}"
                                                         if extra.size else ""))
    lines += [f"- compared: {common.tolist()}", "", "## Figures", ""]
    for name, caption in _FIGURES.items():
        lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
    return lines

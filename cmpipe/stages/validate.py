"""The validate-mock stage: the mock clusters against their input model and observed relations
(profiles, f_gas, M-T, Y-M, L_X-M, the stacked profiles to the map edge, line-of-sight halos,
showcase maps), written as figures, ``validation.json`` and ``validate.md`` (Ray-free;
``cmpipe validate-mock``)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cmpipe.store.location import AnyPath, as_path, save_figure, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from cmpipe.config import Config
    from cmpipe.physics.observed import RelationComparison
    from cmpipe.physics.validate import LineOfSightCheck, ValidationResult

__all__ = ["SHOWCASE_LOG10_M", "ValidateResult", "run", "summary_text", "validation_config"]

logger = logging.getLogger(__name__)

#: log10 M200m [Msun/h] of the showcase halos whose maps validate-mock draws.
SHOWCASE_LOG10_M = (13.5, 14.5, 15.2)


@dataclass(frozen=True)
class ValidateResult:
    """What :func:`run` measured and wrote."""

    out: AnyPath
    result: ValidationResult
    comparisons: list[RelationComparison]
    los: LineOfSightCheck | None
    written: list[AnyPath]


def validation_config(cfg: Config, n_halos: int, seed: int | None) -> Config:
    """``cfg`` with a flat-in-log catalog of ``n_halos`` halos of catalog seed ``seed`` (default:
    ``catalog.seed``) and the mock source."""
    seed = cfg.catalog.seed if seed is None else seed
    catalog = dataclasses.replace(cfg.catalog, mode="flat", n_halos=n_halos, seed=seed)
    return dataclasses.replace(cfg, catalog=catalog, source=dataclasses.replace(cfg.source, kind="mock"))


def _measure(cfg: Config) -> tuple[ValidationResult, list[RelationComparison], LineOfSightCheck | None]:
    """Measure every halo of ``cfg``'s catalog and compare with the observed relations.

    The halos are measured without line-of-sight neighbours (an X-ray analysis masks them, and
    they are no part of the stacked profile); the neighbours are checked apart.
    """
    import numpy as np

    from cmpipe.physics.observed import compare_relations
    from cmpipe.physics.validate import line_of_sight_check, validate_source
    from cmpipe.stages.source import mock_source

    with_neighbours = bool(getattr(cfg.mock, "neighbours", False))
    cfg_iso = dataclasses.replace(cfg, mock=dataclasses.replace(cfg.mock, neighbours=False)) if with_neighbours else cfg
    start = time.perf_counter()

    def progress(i: int, n: int, c) -> None:
        logger.info(
            "halo %d/%d (id %d): log10 M200m %.2f [Msun], %d gas + %d DM particles, %.1f s",
            i + 1, n, c.halo_id, np.log10(c.m200m_msun), c.n_gas, c.n_dm, time.perf_counter() - start,
        )

    result = validate_source(mock_source(cfg_iso), progress=progress)
    comparisons = compare_relations(result, seed=cfg.catalog.seed)
    los = None
    if with_neighbours:
        los = line_of_sight_check(
            mock_source(cfg), mock_source(cfg_iso), result,
            progress=lambda i, n: logger.info("line of sight %d/%d, %.1f s", i + 1, n, time.perf_counter() - start),
        )
    return result, comparisons, los


def _t_sl_figure(result: ValidationResult, fit) -> Figure:
    """The judged T_sl against M500c,HSE, with Vikhlinin et al. (2009) M-T and its 10 % band."""
    import numpy as np

    from cmpipe.physics.observed import VIKHLININ09_MT
    from cmpipe.plots.validation import plot_observed_relation

    h, m_hse = result.h, result.m500c_hse_msun
    m = np.geomspace(min(1e13, np.nanmin(m_hse) / 1.2), max(2e15, np.nanmax(m_hse) * 1.2), 60)
    t = VIKHLININ09_MT.t_kev(m, h)
    fig = plot_observed_relation(
        m_hse, result.tsl_kev, fit, ylabel=r"$T_\mathrm{sl}(0.15$-$1\,R_{500c})$ [keV]",
        title="M500c,HSE - T_sl (X-ray-like mass and temperature)",
        lines=[(rf"Vikhlinin+09: M500 = 3.02e14 h$^{{-1}}$ M$_\odot$ (T/5 keV)$^{{1.53}}$, h = {h:g}", m, t)],
        bands=[("±10 % (issue 16's tolerance)", m, 0.9 * t, 1.1 * t)],
    )
    fig.axes[0].set_xlabel(r"$M_{500c,\mathrm{HSE}}$ [$M_\odot$] (hydrostatic, thermal pressure only)")
    return fig


def _observed_figures(result: ValidationResult, comparisons: list[RelationComparison]) -> dict[str, Figure]:
    """The observed-relation figures: T_mw against the true M500c, the judged T_sl against
    M500c,HSE, and f_gas,500 with the Vikhlinin et al. (2009) relation."""
    import numpy as np

    from cmpipe.physics.observed import VIKHLININ09_FGAS, fits_by_name
    from cmpipe.plots.validation import plot_observed_relations

    fits = fits_by_name(comparisons)
    # plot_observed_relations draws T_mw against the true M500c: give it that fit, and draw the
    # judged T_sl against M500c,HSE apart (observed_t_m500c).
    mw_fits = {**fits, "t": fits["t_mw"]} if "t_mw" in fits else fits
    observed = plot_observed_relations(result, mw_fits)
    figures = {}
    if "t_mw" in fits:
        figures["observed_t_mw_m500c"] = observed.pop("observed_t_m500c")
        observed["observed_t_m500c"] = _t_sl_figure(result, fits["t"])
    h, m500 = result.h, result.m500c_msun
    ax = observed["observed_fgas500_m500c"].axes[0]
    mf = np.geomspace(min(1e13, np.nanmin(m500) / 1.2), max(2e15, np.nanmax(m500) * 1.2), 60)
    ax.plot(mf, VIKHLININ09_FGAS.fgas500(mf, h), "--", color="C6",
            label=r"Vikhlinin+09: 0.0764 h$^{-1.5}$ + 0.037 log$_{10}$(M h / 1e15 M$_\odot$)")
    ax.legend(fontsize="x-small")
    figures.update(observed)
    return figures


def _figures(result: ValidationResult, comparisons: list[RelationComparison]) -> dict[str, Figure]:
    """Every validation figure by file stem: profiles, relations, outskirts."""
    from cmpipe.plots.validation import plot_profile, plot_validation

    figures = {**plot_validation(result)}
    figures.update(_observed_figures(result, comparisons))
    for name, jumps in result.outskirts.items():
        figures[f"profile_{name}_outskirts"] = plot_profile(jumps.as_stacked_profile())
        figures[f"profile_{name}_outskirts"].axes[0].set_title(
            f"{name.upper() if name == 'dm' else 'Gas'} density to the map edge (ellipsoidal shells): "
            f"max jump {jumps.max_abs_jump_sigma:.1f} sigma", fontsize="small")
    return figures


def _showcase_maps(cfg: Config, showcase: Sequence[float]) -> list:
    """The four maps along one sightline of one halo of each showcase log10 M200m [Msun/h]."""
    from cmpipe.mapmaking.maps import prepare_halo_with_config, sightline_maps_with_config
    from cmpipe.stages.generate import map_settings
    from cmpipe.stages.source import mock_source

    maps = []
    for log10_m in showcase:
        one = dataclasses.replace(
            cfg.catalog, n_halos=1, log10_m_min_msun_h=log10_m - 0.005, log10_m_max_msun_h=log10_m + 0.005
        )
        one_cfg = dataclasses.replace(cfg, catalog=one)
        t0 = time.perf_counter()
        halo = mock_source(one_cfg).load(0)
        settings = map_settings(one_cfg)
        maps.append(sightline_maps_with_config(prepare_halo_with_config(halo, settings), settings, None, 2))
        logger.info("showcase halo log10 M200m %.2f [Msun/h]: %d gas + %d DM particles, maps in %.1f s",
                    log10_m, halo.gas.n, halo.dm.n, time.perf_counter() - t0)
    return maps


def _write_reports(
    cfg: Config, out: AnyPath, measured: tuple, showcase: Sequence[float]
) -> None:
    """``validation.json`` and ``validate.md`` in ``out``."""
    from cmpipe.physics.observed import validation_markdown
    from cmpipe.physics.validate import profile_checks_markdown

    result, comparisons, los = measured
    numbers = result.to_dict()
    numbers["showcase_log10_m200m_msun_h"] = list(showcase)
    numbers["observed"] = [c.to_dict() for c in comparisons]
    numbers["line_of_sight"] = None if los is None else los.summary()
    numbers["neighbours_in_measurements"] = False
    write_text_atomic(out / "validation.json", json.dumps(numbers, indent=1) + "\n")
    catalog = cfg.catalog
    header = (f"`cmpipe validate-mock --n-halos {catalog.n_halos}`, catalog seed {catalog.seed}, log10 M200m "
              f"{catalog.log10_m_min_msun_h:g}-{catalog.log10_m_max_msun_h:g} [Msun/h], pair mass "
              f"{cfg.mock.pair_mass_msun_h:g} Msun/h; halos measured without line-of-sight neighbours. "
              "T_sl: spectroscopic-like (Mazzotta et al. 2004) in 0.15-1 R500c; M500c,HSE: hydrostatic mass "
              "(thermal pressure only) inside its own R500c. Figures: `observed_*.png`, "
              "`profile_*_outskirts.png`.")
    write_text_atomic(out / "validate.md", validation_markdown(comparisons, int(result.halo_ids.size), header) + "\n"
                      + profile_checks_markdown(result, los))


def run(
    cfg: Config, paths: Mapping[str, AnyPath], n_halos: int = 24, seed: int | None = None,
    showcase: Sequence[float] = SHOWCASE_LOG10_M,
) -> ValidateResult:
    """Validate the mock clusters of :func:`validation_config` and write everything into
    ``paths["out"]`` (the figures, ``maps_*.png``, ``validation.json``, ``validate.md`` and the
    resolved config).

    Parameters
    ----------
    cfg : Config
    paths : mapping
        ``"out"``: the output directory (existing), or an object-store URL (each file written
        whole).
    n_halos, seed : int
        The validation catalog's size (at least 2) and seed (default: ``catalog.seed``).
    showcase : sequence of float
        log10 M200m [Msun/h] of the halos whose maps are drawn.
    """
    from cmpipe.config import save_resolved_config
    from cmpipe.plots.validation import plot_showcase_maps

    cfg = validation_config(cfg, n_halos, seed)
    out = as_path(paths["out"])
    measured = _measure(cfg)
    result, comparisons, los = measured
    written = []
    for name, fig in _figures(result, comparisons).items():
        written.append(out / f"{name}.png")
        save_figure(fig, written[-1], dpi=120)
    for log10_m, fig in zip(showcase, plot_showcase_maps(_showcase_maps(cfg, showcase))):
        written.append(out / f"maps_{log10_m:.1f}.png")
        save_figure(fig, written[-1], dpi=110)
    _write_reports(cfg, out, measured, showcase)
    save_resolved_config(cfg, out)
    return ValidateResult(out=out, result=result, comparisons=comparisons, los=los, written=written)


def _comparison_columns(c: RelationComparison) -> tuple[str, str, str]:
    """Slope, value at 3e14 Msun and scatter columns of one comparison in :func:`summary_text`."""
    fit = c.numbers.get("mock_fit") if c.name in ("t_m500c", "t_mw_m500c", "lx_bol_m500c", "lx_soft_m500c",
                                                  "y500_m500c") else None
    if fit is not None:
        return (f"{fit['slope']:.2f}±{fit['slope_error']:.2f}", f"{fit['normalisation']:.3g}",
                f"{fit['scatter_dex']:.3f}±{fit['scatter_dex_error']:.3f}")
    if c.name == "fgas_m500c":
        fit = c.numbers["mock_fit"]
        return (f"{fit['slope_per_dex']:.3f}/dex", f"{fit['value_at_pivot']:.3f}",
                f"{fit['scatter_dex']:.3f}±{fit['scatter_dex_error']:.3f}")
    if c.consistent is not None:
        return ("", f"{c.numbers['mean']:.3f}", "")
    return ("", "no halos", "")


def summary_text(res: ValidateResult) -> str:
    """The table ``cmpipe validate-mock`` prints: model checks, then the observed relations."""
    import numpy as np

    result, los = res.result, res.los
    lines = [f"{'check':<34} {'value':>10}  reference"]
    for name, p in result.profiles.items():
        lo, hi = (0.1, 1.0)
        lines.append(f"{name + f' max|dev| {lo:g}-{hi:g} ' + p.x_unit:<34} {p.max_abs_deviation(lo, hi):>10.3f}  0")
    lines += [
        f"{'f_gas(<R500c)/f_b mean [min, max]':<34} {np.mean(result.fgas_r500c):>10.3f}  "
        f"[{np.min(result.fgas_r500c):.3f}, {np.max(result.fgas_r500c):.3f}]; mass-dependent (fgas_m500c below)",
        f"{'Y500-M500c slope':<34} {result.y_m.slope:>10.3f}  5/3 (Arnaud+10: 1.79); +- {result.y_m.slope_error:.3f}",
        f"{'Y500-M500c scatter sigma_ln':<34} {result.y_m.scatter_ln:>10.3f}",
        f"{'Y500 at 3e14 Msun [Mpc^2]':<34} {result.y_m.normalisation:>10.3g}  "
        f"Arnaud+10: {result.arnaud10_y500_at_pivot_mpc2:.3g}",
        f"{'L_X-M500c slope':<34} {result.lx_m.slope:>10.3f}  4/3; +- {result.lx_m.slope_error:.3f}",
        f"{'L_X-M500c scatter sigma_ln':<34} {result.lx_m.scatter_ln:>10.3f}",
        f"{'L_X at 3e14 Msun [erg/s]':<34} {result.lx_m.normalisation:>10.3g}",
    ]
    for name, jumps in result.outskirts.items():
        lines.append(f"{name + ' max|jump| to map edge [sigma]':<34} {jumps.max_abs_jump_sigma:>10.2f}  "
                     f"<= {jumps.threshold_sigma:g} (at {jumps.x_at_max:.2f} R200m)")
    if los is not None:
        s_los = los.summary()
        lines.append(f"{'line-of-sight DM excess [Msun]':<34} {s_los['mean_excess_dm_msun']:>10.3g}  "
                     f"expected {s_los['mean_expected_dm_msun']:.3g} (95 %: {s_los['realisations_95_msun'][0]:.3g}-"
                     f"{s_los['realisations_95_msun'][1]:.3g})")
    lines += ["", f"{'against observations':<16} {'slope':>13} {'at 3e14 Msun':>12} {'scatter dex':>13}  verdict"]
    for c in res.comparisons:
        cols = _comparison_columns(c)
        lines.append(f"{c.name:<16} {cols[0]:>13} {cols[1]:>12} {cols[2]:>13}  {c.verdict}")
    return "\n".join(lines)

"""Published scaling relations (:mod:`cmpipe.physics.observed`) and the bootstrap fit over halos
(:func:`cmpipe.physics.validate.bootstrap_power_law`). Plain numpy, no mock halos: every number is
seeded and each test names its oracle and tolerance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cmpipe.physics import observed as obs
from cmpipe.physics.validate import ValidationResult, arnaud10_y500_mpc2, bootstrap_power_law, fit_power_law


def test_vikhlinin09_mt_reproduces_the_paper_at_its_pivot():
    """Oracle: Vikhlinin et al. (2009), E(z) M500 = 3.02e14 h^-1 Msun (T / 5 keV)^1.53. At T = 5 keV
    and h = 1 the mass is 3.02e14 Msun; with h = 0.7, 3.02e14 / 0.7; doubling T multiplies M by
    2^1.53; T(M) inverts M(T). Tolerance: 1e-12 (closed forms)."""
    vk = obs.VIKHLININ09_MT
    assert vk.m500_msun(np.array([5.0]), h=1.0)[0] == pytest.approx(3.02e14, rel=1e-12)
    assert vk.m500_msun(np.array([5.0]), h=0.7)[0] == pytest.approx(3.02e14 / 0.7, rel=1e-12)
    assert vk.m500_msun(np.array([10.0]), h=0.7)[0] / vk.m500_msun(np.array([5.0]), h=0.7)[0] == pytest.approx(
        2**1.53, rel=1e-12)
    assert vk.m500_msun(np.array([5.0]), h=0.7, e_z=1.2)[0] == pytest.approx(3.02e14 / 0.7 / 1.2, rel=1e-12)
    t = np.array([1.0, 3.0, 8.0])
    np.testing.assert_allclose(vk.t_kev(vk.m500_msun(t, h=0.7), h=0.7), t, rtol=1e-12)
    assert vk.t_slope()[0] == pytest.approx(1 / 1.53, rel=1e-12)


def test_pratt09_soft_lx_reproduces_table_b2():
    """Oracle: Pratt et al. (2009) Table B.2, h(z)^(-7/3) L[0.1-2.4] = 0.83e44 h70^-2 erg/s
    (M / 2e14 h70^-1 Msun)^1.62: at h = 0.7 and M = 2e14 Msun, 0.83e44 erg/s; with h = 1 the mass
    scales by h70 and L by h70^-2. Tolerance: 1e-12."""
    pr = obs.PRATT09_LX_SOFT
    assert pr.lx_erg_s(np.array([2e14]), h=0.7)[0] == pytest.approx(0.83e44, rel=1e-12)
    assert pr.lx_erg_s(np.array([4e14]), h=0.7)[0] == pytest.approx(0.83e44 * 2**1.62, rel=1e-12)
    h70 = 1.0 / 0.7
    assert pr.lx_erg_s(np.array([2e14 / h70]), h=1.0)[0] == pytest.approx(0.83e44 / h70**2, rel=1e-12)
    assert pr.band_kev == (0.1, 2.4)


def test_arnaud10_ym_reproduces_eq22_and_the_existing_formula():
    """Oracle: Arnaud et al. (2010) eq. 22, 10^-4.739 Mpc^2 at 3e14 Msun (h = 0.7), slope 1.79, and
    :func:`cmpipe.physics.validate.arnaud10_y500_mpc2` (the same equation written before).
    Tolerance: 1e-12."""
    ar = obs.ARNAUD10_YM
    assert ar.y500_mpc2(np.array([3e14]), h=0.7)[0] == pytest.approx(10**-4.739, rel=1e-12)
    m = np.geomspace(1e13, 1e15, 7)
    for h in (0.7, 0.68):
        np.testing.assert_allclose(ar.y500_mpc2(m, h), arnaud10_y500_mpc2(m, h), rtol=1e-12)


def test_fgas_ranges_are_issue_16s():
    """Oracle: issue 16, groups 0.05-0.09 at M500 ~ 3e13 Msun, clusters 0.11-0.13 above 5e14."""
    assert (obs.FGAS_GROUPS.fgas_min, obs.FGAS_GROUPS.fgas_max) == (0.05, 0.09)
    assert obs.FGAS_GROUPS.m500_min_msun < 3e13 < obs.FGAS_GROUPS.m500_max_msun
    assert (obs.FGAS_CLUSTERS.fgas_min, obs.FGAS_CLUSTERS.fgas_max, obs.FGAS_CLUSTERS.m500_min_msun) == (0.11, 0.13, 5e14)
    assert obs.LX_BOL_SUMMARY.slope_range == (1.6, 2.0)


def synthetic(n: int, slope: float, norm: float, scatter_dex: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` halos flat in log M500c over 1e13-1e15 Msun with ``y = norm (M / 3e14)^slope 10^N(0, scatter)``."""
    rng = np.random.default_rng(seed)
    m = 10.0 ** rng.uniform(13.0, 15.0, n)
    return m, norm * (m / 3e14) ** slope * 10.0 ** rng.normal(0.0, scatter_dex, n)


def test_bootstrap_recovers_a_known_relation():
    """Oracle: 200 halos drawn from y = 2 (M / 3e14)^1.7 with 0.1 dex of log-normal scatter (seed 3).
    Tolerance: slope, ln normalisation and scatter within 3 bootstrap sigma of the truth; the
    bootstrap slope error within 30 % of the least-squares standard error (both ~0.012 here); the
    scatter within 15 % of 0.1 dex. The same seed gives the same numbers."""
    m, y = synthetic(200, 1.7, 2.0, 0.1, seed=3)
    fit = bootstrap_power_law(m, y, 3e14, n_boot=1000, seed=0)
    assert abs(fit.slope - 1.7) < 3 * fit.slope_error
    assert abs(np.log(fit.normalisation / 2.0)) < 3 * fit.normalisation_rel_error
    assert abs(fit.scatter_dex - 0.1) < 3 * fit.scatter_dex_error
    assert fit.scatter_dex == pytest.approx(0.1, rel=0.15)
    assert fit.slope_error == pytest.approx(fit_power_law(m, y, 3e14).slope_error, rel=0.3)
    assert 0.0 < fit.scatter_dex_error < 0.02 and fit.n == 200
    assert bootstrap_power_law(m, y, 3e14, n_boot=1000, seed=0) == fit


def test_bootstrap_drops_bad_points_and_needs_three():
    """Non-finite or non-positive pairs are dropped; fewer than 3 left is an error."""
    m, y = synthetic(20, 1.0, 1.0, 0.05, seed=1)
    y[0], y[1] = np.nan, -1.0
    assert bootstrap_power_law(m, y, 3e14, n_boot=50).n == 18
    with pytest.raises(ValueError, match="at least 3"):
        bootstrap_power_law(m[:2], y[2:4], 3e14)


def result_on_published(m500: np.ndarray, scale: float = 1.0, h: float = 0.7, hse: bool = True,
                        cc_lx_factor: float = 1.0) -> ValidationResult:
    """A :class:`ValidationResult` whose halos lie on the published relations (times ``scale``),
    alternately 0.05 dex above and below them (L_X,bol: slope 1.8, 0.35 dex; f_gas,500: Vikhlinin
    et al. 2009 with 0.12 dex). The hydrostatic mass is 0.8 M500c and T_sl lies on the M-T
    relation at it; T_mw is 0.72 x the relation at the true mass. Every third halo is a cool core,
    its L_X,bol times ``cc_lx_factor``. ``hse=False``: a mock without T_sl and hydrostatic masses."""
    sign = (-1.0) ** np.arange(m500.size)
    noise = lambda: 10.0 ** (0.05 * sign)  # noqa: E731
    dummy = fit_power_law(np.array([1.0, 2.0]), np.array([1.0, 2.0]), 1.0)
    fgas = obs.VIKHLININ09_FGAS.fgas500(m500, h) * 10.0 ** (0.12 * sign) * scale
    cool = (np.arange(m500.size) % 3 == 0).astype(np.float64)
    lx_bol = 3e44 * (m500 / 3e14) ** 1.8 * 10.0 ** (0.35 * sign) * scale * np.where(cool == 1.0, cc_lx_factor, 1.0)
    m_hse = 0.8 * m500
    extra = {} if not hse else {
        "tsl_kev": obs.VIKHLININ09_MT.t_kev(m_hse, h) * noise() * scale, "m500c_hse_msun": m_hse,
        "m_hse_at_r500c_msun": 0.85 * m500, "is_cool_core": cool,
    }
    return ValidationResult(
        profiles={}, halo_ids=np.arange(m500.size), m500c_msun=m500,
        y500_mpc2=obs.ARNAUD10_YM.y500_mpc2(m500, h) * noise() * scale, y500_model_mpc2=np.ones_like(m500),
        lx500_erg_s=lx_bol, fgas_r500c=fgas / 0.15, y_m=dummy, y_m_model=dummy, lx_m=dummy,
        arnaud10_y500_at_pivot_mpc2=1.0, h=h, fgas500=fgas,
        lx500_soft_erg_s=obs.PRATT09_LX_SOFT.lx_erg_s(m500, h) * noise() * scale,
        tmw_kev=obs.VIKHLININ09_MT.t_kev(m500, h) * noise() * scale * (0.72 if hse else 1.0), **extra,
    )


ALL_ROWS = ["fgas_groups", "fgas_clusters", "fgas_m500c", "t_m500c", "t_mw_m500c", "lx_bol_m500c", "lx_soft_m500c",
            "y500_m500c"]


def test_compare_relations_verdicts():
    """Oracle: halos drawn on the published relations are judged consistent everywhere (T_sl at
    the hydrostatic mass; the T_mw row at the true mass is for information, not judged); the same
    halos with every observable doubled are judged not consistent for T, L_X[0.1-2.4], Y, the
    f_gas windows and the Vikhlinin f_gas-M relation (the bolometric comparison has no
    normalisation, so it stays consistent). The markdown table has one row per relation."""
    m500 = np.geomspace(2.5e13, 1e15, 30)
    good = obs.compare_relations(result_on_published(m500), seed=0, n_boot=300)
    names = [c.name for c in good]
    assert names == ALL_ROWS
    judged = [c for c in good if c.name != "t_mw_m500c"]
    assert all(c.consistent for c in judged), [c.verdict for c in judged if not c.consistent]
    by_name = {c.name: c for c in good}
    assert by_name["t_mw_m500c"].consistent is None and "not judged" in by_name["t_mw_m500c"].verdict
    assert by_name["t_mw_m500c"].numbers["ratio_t_mock_over_published"] == pytest.approx(0.72, rel=0.05)
    assert by_name["t_m500c"].numbers["m500c_hse_over_true"] == pytest.approx(0.8, rel=1e-12)
    assert by_name["t_m500c"].numbers["ratio_t_mock_over_published"] == pytest.approx(1.0, rel=0.05)
    assert "M500c,HSE" in by_name["t_m500c"].relation and "T_sl" in by_name["t_m500c"].relation
    bad = {c.name: c for c in obs.compare_relations(result_on_published(m500, scale=2.0), seed=0, n_boot=300)}
    for name in ("fgas_groups", "fgas_clusters", "fgas_m500c", "t_m500c", "lx_soft_m500c", "y500_m500c"):
        assert bad[name].consistent is False and bad[name].verdict.startswith("NOT consistent"), name
    assert bad["t_m500c"].numbers["ratio_t_mock_over_published"] == pytest.approx(2.0, rel=0.05)
    assert bad["lx_bol_m500c"].consistent
    md = obs.validation_markdown(good, n_halos=30)
    assert md.count("\n| ") == 2 + len(good) - 1 and "| relation | mock | published (ref) | verdict |" in md
    assert set(obs.fits_by_name(good)) == {"fgas", "t", "t_mw", "lx_bol", "lx_soft", "y"}


def test_vikhlinin09_fgas_reproduces_the_paper():
    """Oracle: Vikhlinin et al. (2009), f_gas = 0.0764 h^-1.5 + 0.037 log10(M500 / 1e15 h^-1 Msun):
    0.0764 at h = 1 and 1e15 Msun; at h = 0.7, 0.0764 / 0.7^1.5 + 0.037 log10(0.7 M / 1e15 Msun),
    i.e. 0.0684 at 3e13 Msun and 0.1136 at 5e14 Msun (issue 16's group and cluster values).
    Tolerance: 1e-12 (closed forms), 5e-4 for the rounded values."""
    vf = obs.VIKHLININ09_FGAS
    assert vf.fgas500(np.array([1e15]), h=1.0)[0] == pytest.approx(0.0764, rel=1e-12)
    m = np.array([3e13, 5e14])
    np.testing.assert_allclose(vf.fgas500(m, 0.7), 0.0764 / 0.7**1.5 + 0.037 * np.log10(0.7 * m / 1e15), rtol=1e-12)
    np.testing.assert_allclose(vf.fgas500(m, 0.7), [0.0684, 0.1136], atol=5e-4)
    assert vf.fgas500_error(np.array([1e15]), h=1.0)[0] == pytest.approx(0.004, rel=1e-12)


def test_fgas_relation_recovers_its_scatter_and_slope():
    """Oracle: 30 halos on the Vikhlinin et al. (2009) relation with +-0.12 dex alternating
    scatter: the fitted value at 3e14 Msun within 5 % of the relation's (the log-normal scatter
    raises the mean by ~4 %), the slope within 0.01 per dex of 0.037 and the scatter within 0.02
    dex of 0.12; the T_mw row falls back to the judged M-T row without hydrostatic masses."""
    m500 = np.geomspace(2.5e13, 1e15, 30)
    res = result_on_published(m500)
    row = next(c for c in obs.compare_relations(res, n_boot=200) if c.name == "fgas_m500c")
    fit = row.numbers["mock_fit"]
    assert fit["value_at_pivot"] == pytest.approx(obs.VIKHLININ09_FGAS.fgas500(np.array([3e14]), 0.7)[0], rel=0.05)
    assert fit["slope_per_dex"] == pytest.approx(0.037, abs=0.01)
    assert fit["scatter_dex"] == pytest.approx(0.12, abs=0.02)
    rows = {c.name: c for c in obs.compare_relations(result_on_published(m500, hse=False), n_boot=100)}
    assert "t_mw_m500c" not in rows and rows["t_m500c"].consistent and "T_mw" in rows["t_m500c"].relation


def test_lx_cool_cores_fitted_apart():
    """Oracle: cool cores (every third halo) made 2x brighter at fixed mass: the ratio of the two
    populations' fitted L_X,bol at the pivot is 2 within 20 % (each has 0.35 dex of scatter over
    10-20 halos) and the table says so."""
    m500 = np.geomspace(2.5e13, 1e15, 30)
    row = next(c for c in obs.compare_relations(result_on_published(m500, cc_lx_factor=2.0), n_boot=200)
               if c.name == "lx_bol_m500c")
    by_core = row.numbers["by_core"]
    assert by_core["cool_core"]["n"] == 10 and by_core["disturbed"]["n"] == 20
    assert by_core["ratio_cool_core_over_disturbed_at_pivot"] == pytest.approx(2.0, rel=0.2)
    assert "cool cores (N = 10)" in row.mock


def test_no_halo_in_a_window_is_not_compared():
    """A catalog below 5e14 Msun has no cluster to compare: consistent is None, said in words."""
    m500 = np.geomspace(2.5e13, 2e14, 8)
    res = obs.compare_relations(result_on_published(m500), n_boot=100)
    clusters = next(c for c in res if c.name == "fgas_clusters")
    assert clusters.consistent is None and "no halo" in clusters.verdict
    assert dataclasses.asdict(clusters)["numbers"]["n"] == 0

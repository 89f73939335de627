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


def result_on_published(m500: np.ndarray, scale: float = 1.0, h: float = 0.7) -> ValidationResult:
    """A :class:`ValidationResult` whose halos lie on the published relations (times ``scale``),
    alternately 0.05 dex above and below them (L_X,bol: slope 1.8, 0.35 dex), and whose f_gas
    sits in the middle of the observed ranges."""
    sign = (-1.0) ** np.arange(m500.size)
    noise = lambda: 10.0 ** (0.05 * sign)  # noqa: E731
    dummy = fit_power_law(np.array([1.0, 2.0]), np.array([1.0, 2.0]), 1.0)
    fgas = np.where(m500 < 1e14, 0.07, 0.12) * scale
    lx_bol = 3e44 * (m500 / 3e14) ** 1.8 * 10.0 ** (0.35 * sign) * scale
    return ValidationResult(
        profiles={}, halo_ids=np.arange(m500.size), m500c_msun=m500,
        y500_mpc2=obs.ARNAUD10_YM.y500_mpc2(m500, h) * noise() * scale, y500_model_mpc2=np.ones_like(m500),
        lx500_erg_s=lx_bol, fgas_r500c=fgas / 0.15, y_m=dummy, y_m_model=dummy, lx_m=dummy,
        arnaud10_y500_at_pivot_mpc2=1.0, h=h, fgas500=fgas,
        lx500_soft_erg_s=obs.PRATT09_LX_SOFT.lx_erg_s(m500, h) * noise() * scale,
        tmw_kev=obs.VIKHLININ09_MT.t_kev(m500, h) * noise() * scale,
    )


def test_compare_relations_verdicts():
    """Oracle: halos drawn on the published relations are judged consistent everywhere; the same
    halos with every observable doubled are judged not consistent for T, L_X[0.1-2.4], Y and both
    f_gas windows (the bolometric comparison has no normalisation, so it stays consistent). The
    markdown table has one row per relation."""
    m500 = np.geomspace(2.5e13, 1e15, 30)
    good = obs.compare_relations(result_on_published(m500), seed=0, n_boot=300)
    names = [c.name for c in good]
    assert names == ["fgas_groups", "fgas_clusters", "t_m500c", "lx_bol_m500c", "lx_soft_m500c", "y500_m500c"]
    assert all(c.consistent for c in good), [c.verdict for c in good if not c.consistent]
    bad = {c.name: c for c in obs.compare_relations(result_on_published(m500, scale=2.0), seed=0, n_boot=300)}
    for name in ("fgas_groups", "fgas_clusters", "t_m500c", "lx_soft_m500c", "y500_m500c"):
        assert bad[name].consistent is False and bad[name].verdict.startswith("NOT consistent"), name
    assert bad["t_m500c"].numbers["ratio_t_mock_over_published"] == pytest.approx(2.0, rel=0.05)
    assert bad["lx_bol_m500c"].consistent
    md = obs.validation_markdown(good, n_halos=30)
    assert md.count("\n| ") == 2 + len(good) - 1 and "| relation | mock | published (ref) | verdict |" in md
    assert set(obs.fits_by_name(good)) == {"fgas", "t", "lx_bol", "lx_soft", "y"}


def test_no_halo_in_a_window_is_not_compared():
    """A catalog below 5e14 Msun has no cluster to compare: consistent is None, said in words."""
    m500 = np.geomspace(2.5e13, 2e14, 8)
    res = obs.compare_relations(result_on_published(m500), n_boot=100)
    clusters = next(c for c in res if c.name == "fgas_clusters")
    assert clusters.consistent is None and "no halo" in clusters.verdict
    assert dataclasses.asdict(clusters)["numbers"]["n"] == 0

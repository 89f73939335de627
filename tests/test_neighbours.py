"""Neighbouring halos (:mod:`cmpipe.physics.neighbours`): every test names its oracle and tolerance.

Oracles: scipy quadrature of the model written out afresh from colossus (mass function, bias,
correlation function) with its own unit conversions; the catalog's cumulative number density;
the probability integral transform of drawn distances under an independently integrated
conditional CDF (KS test); the sample means of seeded realisations (Poisson shot noise, 4
standard errors). Every realisation is seeded, so every number here is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from cmpipe.config import load_config
from cmpipe.physics.catalog import cumulative_number_density, mass_function_dndlnm
from cmpipe.physics.cosmology import colossus_cosmology, mean_densities, r200m_mpc
from cmpipe.physics.neighbours import (
    Neighbours,
    draw_neighbours,
    expected_neighbour_count,
    expected_neighbour_mass_msun,
    host_bias,
    resolved_fractions,
)

COSMO = load_config("demo").cosmology
H = COSMO.h
#: Host of the small-sphere tests: M200m = 1e14 Msun/h, in Msun.
HOST_MSUN = 1e14 / H


def _bias(m_msun_h, cosmo_cfg) -> np.ndarray:
    from colossus.lss import bias

    colossus_cosmology(cosmo_cfg)
    return np.asarray(bias.haloBias(m_msun_h, cosmo_cfg.redshift, "200m", model="tinker10"), dtype=np.float64)


def _xi_phys(r_mpc, cosmo_cfg) -> np.ndarray:
    """xi_lin straight from colossus at physical separations [Mpc]."""
    cosmo = colossus_cosmology(cosmo_cfg)
    z = cosmo_cfg.redshift
    return np.asarray(cosmo.correlationFunction(np.asarray(r_mpc) * (1.0 + z) * cosmo_cfg.h, z), dtype=np.float64)


def _quadrature_mass_and_count(host_msun, cosmo_cfg, radius_mpc, lo, hi) -> tuple[float, float]:
    """Expected total M200m [Msun] and count by nested scipy quadrature (independent oracle).

    dN/dlnM = n(M) h^3 (1+z)^3 [Mpc^-3] x int_{r_ex}^{R} 4 pi r^2 (1 + b b_h xi) dr, with
    r_ex = R200m(host) + R200m(M); xi > 0 inside R is asserted (no clipping needed).
    """
    h, z = cosmo_cfg.h, cosmo_cfg.redshift
    b_h = float(_bias(host_msun * h, cosmo_cfg))
    r_h = float(r200m_mpc(host_msun, cosmo_cfg))
    assert _xi_phys(radius_mpc, cosmo_cfg) > 0

    def per_lnm(ln_m: float) -> np.ndarray:
        m = math.exp(ln_m)  # Msun/h
        r_ex = r_h + float(r200m_mpc(m / h, cosmo_cfg))
        if r_ex >= radius_mpc:
            return np.zeros(2)
        # 96-point Gauss-Legendre in ln r (the module: trapezoid on 256 geometric nodes).
        x, _ = integrate.fixed_quad(lambda u: 4 * math.pi * np.exp(3 * u) * _xi_phys(np.exp(u), cosmo_cfg),
                                    math.log(r_ex), math.log(radius_mpc), n=96)
        shell = 4 * math.pi / 3 * (radius_mpc**3 - r_ex**3) + float(_bias(m, cosmo_cfg)) * b_h * x
        n = float(mass_function_dndlnm(math.log10(m), cosmo_cfg)) * h**3 * (1 + z) ** 3
        return np.array([n * shell, n * shell * m / h])

    count, mass = integrate.quad_vec(per_lnm, lo * math.log(10), hi * math.log(10), epsrel=1e-7)[0]
    return float(mass), float(count)


def _draws(seed: int, n_draws: int, *args, **kwargs) -> list[Neighbours]:
    rng = np.random.default_rng(seed)
    return [draw_neighbours(*args, rng, **kwargs) for _ in range(n_draws)]


# --------------------------------------------------------------------------------------------
# 1. Expected count and mass: quadrature oracle, and the mean of realisations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("redshift", [0.0, 0.5])
def test_expected_mass_and_count_match_quadrature(redshift):
    """Oracle: nested scipy quadrature (quad_vec in ln M, Gauss-Legendre in ln r) of
    n(M) [h^3 (1+z)^3] (M / h) [1 + b b_h xi] 4 pi r^2 from colossus; tolerance 1e-3 relative
    (the module's 0.01 dex and 256-node trapezoid rules agree to ~1e-5). z = 0.5 checks the
    comoving-to-physical conversions, which are identities at z = 0 for the (1+z) factors."""
    cosmo = load_config("demo", [f"cosmology.redshift={redshift}"]).cosmology
    args = (HOST_MSUN, cosmo, 5.0, 12.0, 15.0)
    mass, count = _quadrature_mass_and_count(*args)
    assert expected_neighbour_mass_msun(*args) == pytest.approx(mass, rel=1e-3)
    assert expected_neighbour_count(*args) == pytest.approx(count, rel=1e-3)


def test_realisations_mean_count_and_mass():
    """Oracle: the sample mean of 2000 seeded realisations; tolerance 4 standard errors of the
    mean (the sample standard deviation / sqrt(2000)). The count is also checked to be
    Poisson: its variance equals its mean within 4 standard errors of the variance."""
    args = (HOST_MSUN, COSMO, 5.0, 12.0, 15.0)
    draws = _draws(11, 2000, *args)
    counts = np.array([d.n for d in draws], dtype=float)
    masses = np.array([d.m200m_msun.sum() for d in draws])
    n_exp, m_exp = expected_neighbour_count(*args), expected_neighbour_mass_msun(*args)
    assert abs(counts.mean() - n_exp) < 4 * counts.std() / math.sqrt(counts.size)
    assert abs(masses.mean() - m_exp) < 4 * masses.std() / math.sqrt(masses.size)
    # Var of a sample variance of a Poisson variable: (mu + 2 mu^2) / n (4th cumulant mu).
    assert abs(counts.var() - n_exp) < 4 * math.sqrt((n_exp + 2 * n_exp**2) / counts.size)


def test_neighbour_columns_and_geometry():
    """Oracles: R200m from :func:`cmpipe.physics.cosmology.r200m_mpc`, M = 10^log10 M / h,
    every centre inside the sphere and outside the exclusion radius R200m(host) + R200m(M)
    (exact); isotropy: the mean unit vector of ~1500 neighbours is 0 within 4 sigma
    (sigma = sqrt(1/3 / K) per component)."""
    radius = 6.0
    draws = _draws(5, 200, HOST_MSUN, COSMO, radius, 12.0, 15.5)
    logm = np.concatenate([d.log10_m200m_msun_h for d in draws])
    m = np.concatenate([d.m200m_msun for d in draws])
    r200 = np.concatenate([d.r200m_mpc for d in draws])
    centre = np.concatenate([d.centre_mpc for d in draws])
    c = np.concatenate([d.c200m for d in draws])
    assert centre.shape == (logm.size, 3) and logm.size > 1000
    assert np.all((logm >= 12.0) & (logm <= 15.5))
    np.testing.assert_allclose(m, 10.0**logm / H, rtol=1e-12)
    np.testing.assert_allclose(r200, r200m_mpc(m, COSMO), rtol=1e-12)
    dist = np.linalg.norm(centre, axis=1)
    assert np.all(dist <= radius * (1 + 1e-12))
    assert np.all(dist >= float(r200m_mpc(HOST_MSUN, COSMO)) + r200 - 1e-9)
    assert np.all((c > 2.0) & (c < 20.0))
    unit = centre / dist[:, None]
    assert np.all(np.abs(unit.mean(axis=0)) < 4 * math.sqrt(1 / 3 / unit.shape[0]))


def test_sphere_inside_exclusion_is_empty():
    """Oracle: halo exclusion. A sphere smaller than R200m(host) + R200m(M_min) holds nothing."""
    radius = 0.99 * float(r200m_mpc(HOST_MSUN, COSMO) + r200m_mpc(1e12 / H, COSMO))
    assert expected_neighbour_count(HOST_MSUN, COSMO, radius, 12.0, 15.0) == 0.0
    assert expected_neighbour_mass_msun(HOST_MSUN, COSMO, radius, 12.0, 15.0) == 0.0
    empty = draw_neighbours(HOST_MSUN, COSMO, radius, 12.0, 15.0, np.random.default_rng(0))
    assert empty.n == 0 and empty.centre_mpc.shape == (0, 3) and empty.c200m.shape == (0,)


# --------------------------------------------------------------------------------------------
# 2. No clustering: the mass function's number density times the volume
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("lo", "hi"), [(12.0, 13.0), (13.0, 15.0)])
def test_unclustered_count_is_number_density_times_volume(lo, hi):
    """Oracle: :func:`cmpipe.physics.catalog.cumulative_number_density` [(Mpc/h)^-3] times the
    sphere's volume in (Mpc/h)^3 (V h^3 at z = 0), less the excluded volume
    int n(M) (4 pi / 3) r_ex(M)^3 dlnM (scipy quad); tolerance 1e-4 relative. With clustering
    the count is larger (b b_h xi > 0 inside 20 Mpc)."""
    radius = 20.0
    r_h = float(r200m_mpc(HOST_MSUN, COSMO))
    n_cum = float(cumulative_number_density(lo, COSMO, hi))

    def excluded(ln_m: float) -> float:
        r_ex = r_h + float(r200m_mpc(math.exp(ln_m) / H, COSMO))
        return float(mass_function_dndlnm(ln_m / math.log(10), COSMO)) * 4 * math.pi / 3 * r_ex**3

    v_ex, _ = integrate.quad(excluded, lo * math.log(10), hi * math.log(10), epsrel=1e-8)
    oracle = (n_cum * 4 * math.pi / 3 * radius**3 - v_ex) * H**3
    flat = expected_neighbour_count(HOST_MSUN, COSMO, radius, lo, hi, host_bias_override=0.0)
    assert flat == pytest.approx(oracle, rel=1e-4)
    assert expected_neighbour_count(HOST_MSUN, COSMO, radius, lo, hi) > 1.05 * flat


# --------------------------------------------------------------------------------------------
# 3. The radial distribution follows 1 + b b_h xi
# --------------------------------------------------------------------------------------------


def test_radial_distribution_follows_clustering():
    """Oracle: the probability integral transform. Each drawn distance r_k of a neighbour of
    mass M_k goes through the conditional CDF F(r | M_k) integrated afresh (Simpson's rule on
    20,001 nodes of colossus' xi, the bias from colossus at M_k); the values must be uniform
    (KS p > 0.01, about 2000 neighbours of a 1e15 Msun/h host). The test can fail: the same
    distances under the unclustered CDF (volume only) are rejected (p < 1e-6)."""
    host = 1e15 / H
    radius = 8.0
    draws = _draws(3, 120, host, COSMO, radius, 12.0, 13.5)
    logm = np.concatenate([d.log10_m200m_msun_h for d in draws])
    dist = np.linalg.norm(np.concatenate([d.centre_mpc for d in draws]), axis=1)
    assert logm.size > 1000

    b_h = host_bias(host, COSMO)
    r_grid = np.linspace(0.05, radius, 20001)
    x_grid = integrate.cumulative_simpson(4 * np.pi * r_grid**2 * _xi_phys(r_grid, COSMO), x=r_grid, initial=0.0)
    assert np.all(_xi_phys(r_grid, COSMO) > 0)  # the bracket is never clipped here
    r_ex = float(r200m_mpc(host, COSMO)) + r200m_mpc(10.0**logm / H, COSMO)
    b = _bias(10.0**logm, COSMO)

    def cdf(r, bh):
        def g(x):
            return 4 * np.pi / 3 * x**3 + b * bh * np.interp(x, r_grid, x_grid)

        return (g(r) - g(r_ex)) / (g(radius) - g(r_ex))

    assert stats.kstest(cdf(dist, b_h), "uniform").pvalue > 0.01
    assert stats.kstest(cdf(dist, 0.0), "uniform").pvalue < 1e-6
    # Denser near the host: more than the volume share inside 3 Mpc.
    inner = dist < 3.0
    assert inner.mean() > 2 * np.mean(cdf(np.full_like(dist, 3.0), 0.0))


# --------------------------------------------------------------------------------------------
# 4. Determinism and the mean-density bookkeeping
# --------------------------------------------------------------------------------------------


def test_same_seed_same_neighbours():
    """Oracle: exact equality. Same seed, same neighbours; another seed, other ones; the
    concentration scatter changes c200m only (its normals are always drawn, last)."""
    args = (HOST_MSUN, COSMO, 9.05, 12.0, 15.5)
    a = draw_neighbours(*args, np.random.default_rng(42))
    b = draw_neighbours(*args, np.random.default_rng(42))
    c = draw_neighbours(*args, np.random.default_rng(43))
    rng_s = np.random.default_rng(42)
    s = draw_neighbours(*args, rng_s, concentration_scatter_dex=0.16)
    rng_0 = np.random.default_rng(42)
    draw_neighbours(*args, rng_0)
    assert a.n > 0
    for name in ("log10_m200m_msun_h", "m200m_msun", "r200m_mpc", "c200m", "centre_mpc"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in ("log10_m200m_msun_h", "m200m_msun", "r200m_mpc", "centre_mpc"):
        np.testing.assert_array_equal(getattr(a, name), getattr(s, name))
    assert not np.array_equal(a.c200m, s.c200m)
    assert rng_s.random() == rng_0.random()
    assert a.n != c.n or not np.array_equal(a.centre_mpc, c.centre_mpc)


def test_resolved_fractions():
    """Oracles: scipy quad of n(M) M [b(M)] / rho_m, with rho_m the comoving mean density
    from :func:`cmpipe.physics.cosmology.mean_densities` (physical Msun Mpc^-3 at z = 0, over
    h^2 for (Msun/h) (Mpc/h)^-3); tolerance 1e-4. Bounds: in (0, 1), growing as m_min falls; a
    constant weight of 0.5 halves both."""
    rho = mean_densities(COSMO).matter / H**2

    def quad(lo, hi, with_bias):
        def f(ln_m):
            m = math.exp(ln_m)
            out = float(mass_function_dndlnm(ln_m / math.log(10), COSMO)) * m / rho
            return out * float(_bias(m, COSMO)) if with_bias else out

        return integrate.quad(f, lo * math.log(10), hi * math.log(10), epsrel=1e-8)[0]

    fr = resolved_fractions(12.0, 15.5, COSMO)
    assert fr.collapsed == pytest.approx(quad(12.0, 15.5, False), rel=1e-4)
    assert fr.bias_weighted == pytest.approx(quad(12.0, 15.5, True), rel=1e-4)
    assert 0 < fr.collapsed < fr.bias_weighted < 1
    assert (fr.weighted_collapsed, fr.weighted_bias_weighted) == (fr.collapsed, fr.bias_weighted)
    lower = resolved_fractions(11.0, 15.5, COSMO)
    assert fr.collapsed < lower.collapsed < 1 and fr.bias_weighted < lower.bias_weighted < 1
    half = resolved_fractions(12.0, 15.5, COSMO, weight=lambda x: np.full_like(x, 0.5))
    assert half.weighted_collapsed == pytest.approx(0.5 * fr.collapsed, rel=1e-12)
    assert half.weighted_bias_weighted == pytest.approx(0.5 * fr.bias_weighted, rel=1e-12)
    assert half.collapsed == fr.collapsed


def test_bad_arguments():
    """Oracle: the documented ValueErrors."""
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="log10_m_min"):
        draw_neighbours(HOST_MSUN, COSMO, 5.0, 13.0, 12.0, rng)
    with pytest.raises(ValueError, match="radius_mpc"):
        expected_neighbour_count(HOST_MSUN, COSMO, -1.0, 12.0, 13.0)
    with pytest.raises(ValueError, match="m200m_host_msun"):
        expected_neighbour_count(0.0, COSMO, 5.0, 12.0, 13.0)
    with pytest.raises(ValueError, match="concentration_scatter_dex"):
        draw_neighbours(HOST_MSUN, COSMO, 5.0, 12.0, 13.0, rng, concentration_scatter_dex=-0.1)

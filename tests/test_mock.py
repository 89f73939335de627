"""Mock clusters (:mod:`cmpipe.physics.mock`): every test names its oracle and tolerance.

Small, fast halos: m_pair = 1e10 Msun/h, M200m in 10^13.5-10^14.5 Msun/h, maps 64 x 64 of
0.1 Mpc (6.4 Mpc deep). Each realisation is seeded, so every number here is deterministic; the
tolerances are the shot noise (Poisson, 4 sigma) of the particles involved, plus the stated
systematic where SPH smoothing enters.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy import integrate

from cmpipe.config import ConfigError, load_config
from cmpipe.maps import prepare_halo_with_config, sightline_maps_with_config
from cmpipe.physics.catalog import halo_parameters, orientation_matrix
from cmpipe.physics.cosmology import mean_densities
from cmpipe.physics.halo import HaloSource
from cmpipe.physics.hdf5io import read_halo_hdf5, write_halo_hdf5
from cmpipe.physics.mock import (
    IGM_TEMPERATURE_FLOOR_K,
    MockHaloSource,
    dpp_electron_pressure_kev_cm3,
    nfw_mass_fraction,
    nonthermal_fraction,
)
from cmpipe.physics.plasma import Plasma, constants
from cmpipe.physics.sources import open_source

F_B = 0.045 / 0.30
SMALL = ["maps.npix=64", "maps.pixel_mpc=0.1", "maps.depth_mpc=6.4", "catalog.mode=flat",
         "catalog.concentration_scatter_dex=0.0", "source.kind=mock"]
#: Every knob off: a spherical truncated NFW halo, gas following it, nothing else.
ALL_OFF = ["mock.infall=false", "mock.triaxial=false", "mock.gas_shape=false", "mock.background=false",
           "mock.scatter=false", "mock.substructure=false", "mock.gas_from_hse=false"]
#: Spherical halo with the physical gas: HSE gas, infall to 3 R200m, no background, no scatter.
SPHERICAL_GAS = ["mock.triaxial=false", "mock.gas_shape=false", "mock.background=false", "mock.scatter=false"]


def mock_config(lo: float, hi: float, n: int, *extra: str):
    return load_config("demo", [*SMALL, f"catalog.log10_m_min_msun_h={lo}", f"catalog.log10_m_max_msun_h={hi}",
                                f"catalog.n_halos={n}", *extra])


@pytest.fixture(scope="module")
def spherical_gas():
    """Four halos in [10^13.5, 10^14.5] with HSE gas (spherical, no background, no scatter)."""
    src = MockHaloSource.from_config(mock_config(13.5, 14.5, 4, *SPHERICAL_GAS))
    return src, [src.load(i) for i in src.halo_ids()]


# --------------------------------------------------------------------------------------------
# Config and the source interface
# --------------------------------------------------------------------------------------------


def test_config_validation():
    with pytest.raises(ConfigError, match=r"mock\.substructure.*not implemented yet"):
        load_config("demo", ["mock.substructure=true"])
    with pytest.raises(ConfigError, match=r"mock\.infall_extent_r200m must exceed"):
        load_config("demo", ["mock.infall_extent_r200m=0.5"])
    with pytest.raises(ConfigError, match=r"mock\.pair_mass_msun_h must be > 0"):
        load_config("demo", ["mock.pair_mass_msun_h=0"])
    load_config("demo", ["mock.infall=false", "mock.infall_extent_r200m=0.5"])  # unused extent: fine
    assert load_config("paper").mock.pair_mass_msun_h == 1e9
    assert load_config("demo").mock.pair_mass_msun_h == 1e10


def test_source_follows_the_catalog():
    """Oracle: :func:`halo_parameters` (ids, M200m in Msun, R200m) and pickling (Ray)."""
    cfg = mock_config(13.5, 14.5, 5)
    src = open_source(cfg)
    assert isinstance(src, MockHaloSource) and isinstance(src, HaloSource)
    assert tuple(src.halo_ids()) == tuple(range(5))
    row = halo_parameters(cfg, 3)
    props = src.properties(3)
    assert props.m200m_msun == row["m200m_msun_h"] / cfg.cosmology.h and props.r200m_mpc == row["r200m_mpc"]
    assert pickle.loads(pickle.dumps(src)) == src


def test_profile_formulas():
    """Oracles: the closed forms of the module docstring at hand-checked points."""
    assert nfw_mass_fraction(np.array([1.0]), 5.0)[0] == pytest.approx(1.0, rel=1e-15)
    # f_nt(0) = 1 - 2A, f_nt(inf) = 1 - A (Nelson et al. 2014).
    assert nonthermal_fraction(np.array([0.0, 1e3]), 1.0) == pytest.approx([1 - 2 * 0.452, 1 - 0.452], rel=1e-12)
    # P_e at c500 x = 1 for M500c = 3e14 / h70 Msun, h = 0.7, z = 0: 1.65e-3 P0 / 2^((b - g)/a).
    p = dpp_electron_pressure_kev_cm3(np.array([1.0 / 1.217]), 3e14, 1.0, 0.7)
    assert p[0] == pytest.approx(1.65e-3 * 5.048 / 2.0 ** ((5.490 - 0.433) / 1.192), rel=1e-12)


# --------------------------------------------------------------------------------------------
# Particles
# --------------------------------------------------------------------------------------------


def test_fixed_particle_masses_and_counts_scale_with_mass():
    """Oracle: N = round(M200m / m_pair) for a truncated NFW with the gas following the DM
    (every knob off), exactly; particle masses (1 - f_b) m_pair and f_b m_pair, identical across
    halos; with every knob on the masses stay the same."""
    cfg = mock_config(13.5, 14.5, 3, *ALL_OFF)
    src = MockHaloSource.from_config(cfg)
    m_pair = cfg.mock.pair_mass_msun_h / cfg.cosmology.h
    for hid in src.halo_ids():
        halo = src.load(hid)
        n = int(round(src.properties(hid).m200m_msun / m_pair))
        assert halo.dm.n == n and halo.gas.n == n
        assert np.all(halo.dm.mass_msun == (1.0 - F_B) * m_pair)
        assert np.all(halo.gas.mass_msun == F_B * m_pair)
    full = MockHaloSource.from_config(mock_config(13.5, 14.5, 1)).load(0)
    assert np.all(full.dm.mass_msun == (1.0 - F_B) * m_pair) and np.all(full.gas.mass_msun == F_B * m_pair)


def test_one_halo_regenerates_alone_identically():
    """Oracle: exact equality of halo 2 from two catalogs of different sizes (it draws only from
    SeedSequence([seed, 2, 1])); another id or catalog seed gives other particles."""
    a = MockHaloSource.from_config(mock_config(13.5, 14.0, 3, "mock.infall=false")).load(2)
    b = MockHaloSource.from_config(mock_config(13.5, 14.0, 6, "mock.infall=false")).load(2)
    for x, y in ((a.dm.pos_mpc, b.dm.pos_mpc), (a.gas.pos_mpc, b.gas.pos_mpc),
                 (a.gas.temperature_k, b.gas.temperature_k), (a.gas.density_msun_mpc3, b.gas.density_msun_mpc3)):
        np.testing.assert_array_equal(x, y)
    other = MockHaloSource.from_config(mock_config(13.5, 14.0, 3, "mock.infall=false", "catalog.seed=1")).load(2)
    assert other.dm.n != a.dm.n or not np.array_equal(other.dm.pos_mpc, a.dm.pos_mpc)


def test_projected_dm_matches_truncated_nfw():
    """Oracle: the projected truncated NFW, Sigma(R) = 2 int_0^sqrt(R200^2 - R^2) rho dl by
    quadrature, integrated over the same pixels (5 x 5 sub-samples), against the dm_sigma map of
    one 10^14.5 halo with every knob off, in six log annuli over 0.1-1 R200m.
    Tolerance: 4 sigma of the annulus' Poisson shot noise (1.3-2 %); measured deviations
    -2.8 % to +2.1 % (at most 1.4 sigma; SPH smoothing moves mass across the edges)."""
    cfg = mock_config(14.49, 14.5, 1, *ALL_OFF, "maps.channels=[dm_sigma]")
    src = MockHaloSource.from_config(cfg)
    row = src.parameters(0)
    halo = src.load(0)
    maps = sightline_maps_with_config(prepare_halo_with_config(halo, cfg), cfg, None, 2)
    npix, px = cfg.maps.npix, cfg.maps.pixel_mpc
    mass_map = maps.channel("dm_sigma") * mean_densities(cfg.cosmology).dark_matter * cfg.maps.depth_mpc * px**2
    assert mass_map.sum() == pytest.approx(halo.dm.mass_msun.sum(), rel=1e-3)

    r200, c = row["r200m_mpc"], row["c200m"]
    m_dm = (1.0 - F_B) * row["m200m_msun_h"] / cfg.cosmology.h
    rs = r200 / c
    rho0 = m_dm / (4.0 * np.pi * rs**3 * (np.log1p(c) - c / (1.0 + c)))
    grid = np.geomspace(0.01 * r200, r200, 300)
    sigma = np.array([
        2.0 * integrate.quad(lambda l: rho0 / ((np.hypot(r, l) / rs) * (1.0 + np.hypot(r, l) / rs) ** 2),
                             0.0, np.sqrt(r200**2 - r**2), limit=200)[0]
        for r in grid
    ])
    sub = 5
    edges_sub = (np.arange(npix * sub) + 0.5) * px / sub - 0.5 * npix * px
    r_sub = np.hypot(*np.meshgrid(edges_sub, edges_sub))
    analytic = (np.interp(r_sub, grid, sigma, right=0.0) * (px / sub) ** 2).reshape(npix, sub, npix, sub).sum(axis=(1, 3))
    centres = (np.arange(npix) + 0.5) * px - 0.5 * npix * px
    r_pix = np.hypot(*np.meshgrid(centres, centres))
    edges = np.geomspace(0.1, 1.0, 7) * r200
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (r_pix >= lo) & (r_pix < hi)
        expected = analytic[sel].sum()
        shot = 1.0 / np.sqrt(expected / halo.dm.mass_msun[0])
        assert mass_map[sel].sum() / expected == pytest.approx(1.0, abs=4.0 * shot), (lo / r200, hi / r200)


def test_gas_pressure_follows_the_dpp(spherical_gas):
    """Oracles: (1) per particle, P_e = 0.518 n k T recomputed from the particle's T and SPH
    density equals the DPP at its radius to 1e-12 (T = mu m_p P_th / (k rho_SPH) by
    construction; no particle inside 3 R200m hits the 1e4 K floor). (2) The SPH-volume-weighted
    mean P_e in radial shells over 0.1-2 R500c, sum(P_e V) / sum(V) with V = m / rho_SPH, against
    the volume-averaged DPP of the shell: within 3 % (measured 0.3-0.6 %; the SPH density noise
    enters through the weights V). The volumes themselves sum to about 1.2 times the shell
    volume (E[m / rho_SPH] > m / rho for the unbiased gather density at k = 32)."""
    src, halos = spherical_gas
    plasma, k = Plasma(), constants()
    msun_mpc3_g_cm3 = k.msun_g / k.mpc_cm**3
    for hid, halo in zip(src.halo_ids(), halos):
        prof, row = src.profiles(hid), src.parameters(hid)
        gas = halo.gas
        r = np.linalg.norm(gas.pos_mpc, axis=1)
        n_e = plasma.electrons_per_proton_mass * gas.density_msun_mpc3 * msun_mpc3_g_cm3 / k.proton_mass_g
        p_e = n_e * k.boltzmann_kev_per_k * gas.temperature_k
        assert np.all(gas.temperature_k > IGM_TEMPERATURE_FLOOR_K)
        np.testing.assert_allclose(p_e, prof.electron_pressure_kev_cm3(r), rtol=1e-12)
        volume = gas.mass_msun / gas.density_msun_mpc3
        edges = np.geomspace(0.1, 2.0, 6) * row["r500c_mpc"]
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (r >= lo) & (r < hi)
            rr = np.geomspace(lo, hi, 400)
            dpp = np.trapezoid(prof.electron_pressure_kev_cm3(rr) * rr**2, rr) / np.trapezoid(rr**2, rr)
            assert np.sum(p_e[sel] * volume[sel]) / np.sum(volume[sel]) == pytest.approx(dpp, rel=0.03)


def test_gas_fraction_inside_r500c(spherical_gas):
    """Oracle: SPEC section 4, f_gas(<R500c) / f_b in 0.82-0.90 for the stack, with
    f_gas = M_gas / (M_gas + M_DM) from the particles inside R500c (no scatter, median c).
    Measured: 0.849-0.901 per halo, 0.884 stacked. Each halo also matches its tabulated profile
    within 4 sigma of the gas particles' shot noise."""
    src, halos = spherical_gas
    gas_sum = total_sum = 0.0
    for hid, halo in zip(src.halo_ids(), halos):
        r500 = src.parameters(hid)["r500c_mpc"]
        inside_gas = np.linalg.norm(halo.gas.pos_mpc, axis=1) < r500
        m_gas = halo.gas.mass_msun[inside_gas].sum()
        m_dm = halo.dm.mass_msun[np.linalg.norm(halo.dm.pos_mpc, axis=1) < r500].sum()
        prof = src.profiles(hid)
        expected = np.interp(r500, prof.r_mpc, prof.gas_enclosed_msun)
        assert m_gas == pytest.approx(expected, rel=4.0 / np.sqrt(inside_gas.sum()))
        gas_sum += m_gas
        total_sum += m_gas + m_dm
    assert 0.82 <= gas_sum / total_sum / F_B <= 0.90


def test_triaxial_shape_from_the_inertia_tensor():
    """Oracle: for a density of the ellipsoidal radius the second-moment tensor has eigenvalues
    in the ratio 1 : q^2 : s^2 along the catalog orientation's columns. One 10^14.5 halo
    (31,000 DM particles, no infall, no background): q and s within 0.02 (measured 0.003 and
    0.0004), axes within 3 deg where the axis ratios differ by more than 0.05."""
    cfg = mock_config(14.49, 14.5, 1, "mock.infall=false", "mock.background=false")
    src = MockHaloSource.from_config(cfg)
    row = src.parameters(0)
    pos = src.load(0).dm.pos_mpc
    lam, vec = np.linalg.eigh(pos.T @ pos / pos.shape[0])
    lam, vec = lam[::-1], vec[:, ::-1]
    q, s = row["shape_q"], row["shape_s"]
    assert np.sqrt(lam[1] / lam[0]) == pytest.approx(q, abs=0.02)
    assert np.sqrt(lam[2] / lam[0]) == pytest.approx(s, abs=0.02)
    rot = orientation_matrix(np.array([row["orient_w"], row["orient_x"], row["orient_y"], row["orient_z"]]))
    ratios = np.array([1.0, q, s])
    for i in range(3):
        if np.all(np.abs(np.delete(ratios, i) - ratios[i]) > 0.05):
            assert abs(vec[:, i] @ rot[:, i]) > np.cos(np.deg2rad(3.0))


def test_background_is_the_cosmic_mean():
    """Oracle: :func:`mean_densities`; the number of DM and gas particles in the shell
    2-5 Mpc around a 10^13.5 halo (outer radius R200m = 1.1 Mpc, background sphere 5.5 Mpc)
    equals rho_bar V / m within 4 Poisson sigma (measured -0.2 and -0.8 sigma)."""
    cfg = mock_config(13.5, 13.51, 1, "mock.infall=false")
    src = MockHaloSource.from_config(cfg)
    halo = src.load(0)
    assert src.background_radius_mpc() > 5.0 and src.outer_radius_mpc(src.parameters(0)) < 2.0
    means = mean_densities(cfg.cosmology)
    shell = 4.0 / 3.0 * np.pi * (5.0**3 - 2.0**3)
    for part, rho in ((halo.dm, means.dark_matter), (halo.gas, means.baryon)):
        r = np.linalg.norm(part.pos_mpc, axis=1)
        expected = rho * shell / part.mass_msun[0]
        assert abs(np.count_nonzero((r >= 2.0) & (r < 5.0)) - expected) < 4.0 * np.sqrt(expected)


def test_hdf5_round_trip_gives_the_same_maps(tmp_path):
    """Oracle: the maps of the halo in memory; those of the same halo written with
    :func:`write_halo_hdf5` and read back agree to 1e-12 (every knob on)."""
    cfg = mock_config(13.5, 13.6, 1)
    halo = MockHaloSource.from_config(cfg).load(0)
    path = write_halo_hdf5(tmp_path / "halo.hdf5", halo, h=cfg.cosmology.h)
    back = read_halo_hdf5(path)
    direct = sightline_maps_with_config(prepare_halo_with_config(halo, cfg), cfg, None, 2).data
    again = sightline_maps_with_config(prepare_halo_with_config(back, cfg), cfg, None, 2).data
    assert np.all(direct[:, 32, 32] > 0)
    np.testing.assert_allclose(again, direct, rtol=1e-12, atol=0.0)


def test_compton_y_map_matches_projected_dpp():
    """Oracle: y(R) = sigma_T/(m_e c^2) 2 int_0^L P_e(sqrt(R^2 + l^2)) dl, the DPP integrated by
    quadrature to the halo's outer radius or the slab face (whichever is nearer), averaged over
    the map's pixel centres in annuli of 0.1-1 R200m; two spherical halos near 10^14.4 Msun/h.
    Tolerance 5 %: measured 0.97-1.00. The particle volumes m / rho use the k-NN volume density,
    whose inverse is unbiased for Poisson particles (the gather density's inverse made y ~20 %
    high); what remains is the k-NN volume's bias in the pressure gradient and shot noise."""
    cfg = mock_config(14.3, 14.5, 2, *SPHERICAL_GAS)
    src = MockHaloSource.from_config(cfg)
    coeff = constants().compton_y_cm3_per_kev_mpc
    centres = (np.arange(cfg.maps.npix) + 0.5) * cfg.maps.pixel_mpc - 0.5 * cfg.maps.npix * cfg.maps.pixel_mpc
    rr = np.hypot(*np.meshgrid(centres, centres))
    half_depth = 0.5 * cfg.maps.depth_mpc
    for hid in src.halo_ids():
        prof = src.profiles(hid)
        y = sightline_maps_with_config(prepare_halo_with_config(src.load(hid), cfg), cfg, None, 2).channel("sz_y")

        def y_analytic(radius: float) -> float:
            reach = min(np.sqrt(max(prof.outer_mpc**2 - radius**2, 0.0)), half_depth)
            column = integrate.quad(lambda l: float(prof.electron_pressure_kev_cm3(np.hypot(radius, l))), 0.0, reach, limit=200)[0]
            return 2.0 * coeff * column

        edges = np.array([0.1, 0.2, 0.35, 0.5, 0.75, 1.0]) * prof.r200m_mpc
        for lo, hi in zip(edges[:-1], edges[1:]):
            ring = (rr >= lo) & (rr < hi)
            want = np.mean([y_analytic(r) for r in rr[ring]])
            assert y[ring].mean() == pytest.approx(want, rel=0.05), (hid, lo, hi)

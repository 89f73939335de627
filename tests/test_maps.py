"""The four maps of a halo against analytic answers (SPEC section 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmpipe.mapmaking.maps import (
    CHANNEL_UNITS,
    CHANNELS,
    HaloMaps,
    prepare_halo,
    random_rotation,
    rotate_to_sightline,
    sightline_maps,
)
from cmpipe.physics.halo import DarkMatterParticles, GasParticles, Halo, HaloProperties
from cmpipe.physics.plasma import Plasma, constants

# Plain SI/cgs numbers for the oracles, independent of astropy (CODATA 2018 / IAU 2015).
SIGMA_T_CM2 = 6.6524587321e-25
ME_C2_KEV = 510.99895
KB_KEV_PER_K = 8.617333262e-8
MP_G = 1.67262192369e-24
MSUN_G = 1.98840987e33
MPC_CM = 3.0856775814913673e24

NPIX, PIX, DEPTH = 64, 0.1, 6.4
RHO_GAS, RHO_DM = 6.0e9, 3.5e10  # stand-in mean densities [Msun Mpc^-3]
RMAX = 2.2  # truncation radius of the test spheres [Mpc]; the field reaches 3.2 Mpc


def _plummer(n: int, mass_msun: float, a_mpc: float, rng: np.random.Generator, rmax: float) -> np.ndarray:
    """Positions of a Plummer sphere truncated at rmax (inverse CDF)."""
    frac_max = rmax**3 / (rmax**2 + a_mpc**2) ** 1.5
    u = rng.random(n) * frac_max
    r = a_mpc / np.sqrt(u ** (-2.0 / 3.0) - 1.0)
    v = rng.normal(size=(n, 3))
    return r[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)


def _annulus_profile(image: np.ndarray, edges: np.ndarray) -> np.ndarray:
    c = (np.arange(NPIX) + 0.5) * PIX - 0.5 * NPIX * PIX
    rr = np.hypot(*np.meshgrid(c, c, indexing="xy"))
    return np.array([image[(rr >= lo) & (rr < hi)].mean() for lo, hi in zip(edges[:-1], edges[1:])])


def _annulus_average(func, edges: np.ndarray) -> np.ndarray:
    """Area-weighted average of a radial function over pixel centres in each annulus (same
    sampling as the map, so pixelisation does not enter the comparison)."""
    fine = 8
    c = ((np.arange(NPIX * fine) + 0.5) * PIX / fine) - 0.5 * NPIX * PIX
    rr = np.hypot(*np.meshgrid(c, c, indexing="xy"))
    # pixel-average the function first, then average the pixels of each annulus
    pix = func(rr).reshape(NPIX, fine, NPIX, fine).mean(axis=(1, 3))
    cc = (np.arange(NPIX) + 0.5) * PIX - 0.5 * NPIX * PIX
    rp = np.hypot(*np.meshgrid(cc, cc, indexing="xy"))
    return np.array([pix[(rp >= lo) & (rp < hi)].mean() for lo, hi in zip(edges[:-1], edges[1:])])


@pytest.fixture(scope="module")
def isothermal_plummer():
    """An isothermal Plummer gas sphere (T = 5e7 K) plus a Plummer DM sphere, 6e4 particles each."""
    rng = np.random.default_rng(42)
    n, a, t_k = 60_000, 0.4, 5.0e7
    m_gas, m_dm = 1.0e13, 6.0e13
    gas_pos = _plummer(n, m_gas, a, rng, rmax=RMAX)
    dm_pos = _plummer(n, m_dm, a, rng, rmax=RMAX)
    frac = RMAX**3 / (RMAX**2 + a**2) ** 1.5  # mass fraction inside rmax of the untruncated sphere
    halo = Halo(
        props=HaloProperties(halo_id=7, m200m_msun=m_gas + m_dm, r200m_mpc=1.5),
        gas=GasParticles(pos_mpc=gas_pos, mass_msun=np.full(n, m_gas * frac / n), temperature_k=np.full(n, t_k)),
        dm=DarkMatterParticles(pos_mpc=dm_pos, mass_msun=np.full(n, m_dm * frac / n)),
    ).validate()
    prepared = prepare_halo(
        halo, mean_gas_density_msun_mpc3=RHO_GAS, mean_dm_density_msun_mpc3=RHO_DM, depth_mpc=DEPTH, n_neighbours=32
    )
    maps = sightline_maps(prepared, rotation=None, axis=2, npix=NPIX, pixel_mpc=PIX)
    return dict(halo=halo, prepared=prepared, maps=maps, a=a, t_k=t_k, m_gas=m_gas, m_dm=m_dm)


def _plummer_sigma(r, mass, a, rmax=RMAX):
    """Closed-form projection of a Plummer sphere of total (untruncated) mass ``mass`` truncated
    at ``rmax``: 2 int_0^L rho dl with L = sqrt(rmax^2 - R^2) and
    int (A + l^2)^(-5/2) dl = l (2 l^2 + 3 A) / (3 A^2 (A + l^2)^(3/2)), A = a^2 + R^2.
    For rmax -> infinity it is M a^2 / (pi (a^2 + R^2)^2)."""
    big_a = a**2 + r**2
    ell = np.sqrt(np.clip(rmax**2 - r**2, 0.0, None))
    column = ell * (2 * ell**2 + 3 * big_a) / (3 * big_a**2 * (big_a + ell**2) ** 1.5)
    return 3.0 * mass * a**2 / (4.0 * np.pi) * 2.0 * column


def test_plasma_composition_matches_spec():
    """Oracle: SPEC section 3 (X = 0.76: n_e = 0.880 rho/m_p, sum Z^2 n_i = 1.000 rho/m_p,
    mu = 0.588, P_e/P_th = 0.518; sigma_T/(m_e c^2) = 4.017e-3 cm^3 keV^-1 Mpc^-1). Tolerance:
    the SPEC's quoted digits."""
    p = Plasma()
    assert p.electrons_per_proton_mass == pytest.approx(0.880, abs=5e-4)
    assert p.ion_z2_per_proton_mass == pytest.approx(1.000, abs=5e-4)
    assert p.mean_molecular_weight == pytest.approx(0.588, abs=5e-4)
    assert p.electron_pressure_fraction == pytest.approx(0.518, abs=5e-4)
    assert constants().compton_y_cm3_per_kev_mpc == pytest.approx(4.017e-3, abs=5e-7)
    assert constants().compton_y_cm3_per_kev_mpc == pytest.approx(SIGMA_T_CM2 / ME_C2_KEV * MPC_CM, rel=1e-6)


def test_surface_density_channels_conserve_particle_mass(isothermal_plummer):
    """Oracle: mass conservation. Sigma/(rho_bar L) summed over the map times pixel area,
    rho_bar and L equals the mass of particles in the slab (all lie inside the field): rel 1e-10."""
    halo, maps = isothermal_plummer["halo"], isothermal_plummer["maps"]
    for name, mass, pos, rho in (
        ("gas_sigma", halo.gas.mass_msun, halo.gas.pos_mpc, RHO_GAS),
        ("dm_sigma", halo.dm.mass_msun, halo.dm.pos_mpc, RHO_DM),
    ):
        in_slab = np.abs(pos[:, 2]) <= DEPTH / 2
        support = isothermal_plummer["prepared"].gas_support_mpc if name == "gas_sigma" else isothermal_plummer["prepared"].dm_support_mpc
        assert np.max(np.abs(pos[:, :2]) + support[:, None]) < 0.5 * NPIX * PIX  # every kernel in the field
        got = maps.channel(name).sum() * PIX**2 * rho * DEPTH
        assert got == pytest.approx(mass[in_slab].sum(), rel=1e-10)


def test_gas_surface_density_follows_analytic_plummer_projection(isothermal_plummer):
    """Oracle: the closed-form projection of the truncated Plummer sphere (``_plummer_sigma``;
    the slab holds the whole sphere), pixel- and annulus-averaged. Tolerance 3 %: Poisson noise
    (> 1000 particles per annulus, ~2 % at 3 sigma) plus kernel smoothing; measured <= 1 %."""
    d = isothermal_plummer
    edges = np.array([0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5])
    got = _annulus_profile(d["maps"].channel("gas_sigma"), edges) * RHO_GAS * DEPTH
    want = _annulus_average(lambda r: _plummer_sigma(r, d["m_gas"], d["a"]), edges)
    np.testing.assert_allclose(got, want, rtol=0.03)


def test_compton_y_of_isothermal_sphere_matches_analytic_integral(isothermal_plummer):
    """Oracle: for isothermal gas y(R) = sigma_T k T / (m_e c^2) * N_e(R) with
    N_e = 0.880 Sigma_gas / m_p, computed in plain cgs numbers (not through cmpipe's constants).
    Tolerance 3 % (the surface-density tolerance: y is proportional to Sigma here)."""
    d = isothermal_plummer
    edges = np.array([0.0, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5])
    kt_kev = KB_KEV_PER_K * d["t_k"]

    def y_analytic(r):
        sigma_g_cm2 = _plummer_sigma(r, d["m_gas"], d["a"]) * MSUN_G / MPC_CM**2
        return SIGMA_T_CM2 * kt_kev / ME_C2_KEV * 0.880 * sigma_g_cm2 / MP_G

    got = _annulus_profile(d["maps"].channel("sz_y"), edges)
    np.testing.assert_allclose(got, _annulus_average(y_analytic, edges), rtol=0.03)


def test_xray_surface_brightness_of_isothermal_plummer_sphere(isothermal_plummer):
    """Oracle: S_X(R) = 1.4e-27 g_B T^1/2 (0.880)(1.000) rho0^2 / m_p^2 * a (1 + R^2/a^2)^(-9/2)
    * B(1/2, 9/2) / (4 pi), B(1/2, 9/2) = 105 pi / 384, for rho = rho0 (1 + r^2/a^2)^(-5/2).
    The particle weight m_j rho_j is linear in the SPH density, which is unbiased for Poisson
    particles, so only noise and kernel smoothing remain (the truncation at 2.2 Mpc removes
    < 1e-4 of these rho^2 columns). Tolerance 8 % in 0.1-1 Mpc (noise of the density estimate
    plus smoothing of the steep rho^2 profile at k = 32 neighbours); measured <= 4 %."""
    d = isothermal_plummer
    a = d["a"]
    rho0_cgs = 3.0 * d["m_gas"] / (4.0 * np.pi * a**3) * MSUN_G / MPC_CM**3
    edges = np.array([0.1, 0.2, 0.35, 0.5, 0.75, 1.0])

    def sx(r):
        column = rho0_cgs**2 * a * MPC_CM * (1.0 + (r / a) ** 2) ** -4.5 * (105.0 * np.pi / 384.0)
        return 1.4e-27 * 1.2 * np.sqrt(d["t_k"]) * 0.880 * 1.000 * column / MP_G**2 / (4.0 * np.pi)

    got = _annulus_profile(d["maps"].channel("xray_sb"), edges)
    np.testing.assert_allclose(got, _annulus_average(sx, edges), rtol=0.08)


def test_channel_order_units_and_npz_round_trip(isothermal_plummer, tmp_path):
    """Oracle: the map contract (channel names and units in order) and an exact .npz round trip."""
    maps = isothermal_plummer["maps"]
    assert maps.channels == CHANNELS
    assert maps.units == tuple(CHANNEL_UNITS[c] for c in CHANNELS)
    assert maps.units[1] == "erg s-1 cm-2 sr-1"  # astropy unit strings (issue 21)
    back = HaloMaps.load_npz(maps.save_npz(tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.data, maps.data)
    assert (back.channels, back.pixel_mpc, back.depth_mpc, back.halo_id, back.axis) == (
        maps.channels, maps.pixel_mpc, maps.depth_mpc, maps.halo_id, maps.axis
    )
    with pytest.raises(KeyError, match="kappa"):
        maps.channel("kappa")


def test_subset_of_channels_in_requested_order(isothermal_plummer):
    """Oracle: the full map set; a subset in another order returns the same arrays (exact)."""
    full = isothermal_plummer["maps"]
    sub = sightline_maps(isothermal_plummer["prepared"], rotation=None, axis=2, npix=NPIX, pixel_mpc=PIX,
                         channels=("dm_sigma", "sz_y"))
    np.testing.assert_array_equal(sub.data[0], full.channel("dm_sigma"))
    np.testing.assert_array_equal(sub.data[1], full.channel("sz_y"))
    with pytest.raises(ValueError, match="unknown map channels"):  # (kappa is a channel now: tests/test_kappa.py)
        sightline_maps(isothermal_plummer["prepared"], rotation=None, axis=2, npix=NPIX, pixel_mpc=PIX,
                       channels=("shear",))


def test_quarter_turn_about_the_sightline_rotates_the_map(isothermal_plummer):
    """Oracle: rotating positions by +90 degrees about z turns the axis-2 map by +90 degrees
    (np.rot90 with k=-1 on [iy, ix]: a point at +x moves to +y, i.e. new[a, b] = old[N-1-b, a]); the pixel grid is symmetric, so equality holds to
    float round-off (rtol 1e-9)."""
    prepared = isothermal_plummer["prepared"]
    quarter = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    turned = sightline_maps(prepared, rotation=quarter, axis=2, npix=NPIX, pixel_mpc=PIX)
    np.testing.assert_allclose(turned.data, np.rot90(isothermal_plummer["maps"].data, k=-1, axes=(1, 2)),
                               rtol=1e-9, atol=1e-12 * isothermal_plummer["maps"].data.max())


def test_axes_pick_cyclic_map_planes():
    """Oracle: the documented convention (axis 2: (x, y); 0: (y, z); 1: (z, x)), exact."""
    pos = np.array([[1.0, 2.0, 3.0]])
    assert [float(c[0]) for c in rotate_to_sightline(pos, None, 2)] == [1.0, 2.0, 3.0]
    assert [float(c[0]) for c in rotate_to_sightline(pos, None, 0)] == [2.0, 3.0, 1.0]
    assert [float(c[0]) for c in rotate_to_sightline(pos, None, 1)] == [3.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="axis"):
        rotate_to_sightline(pos, None, 3)
    with pytest.raises(ValueError, match="rotation"):
        rotate_to_sightline(pos, np.diag([1.0, 1.0, -1.0]), 2)


def test_random_rotations_are_proper_seeded_and_uniform():
    """Oracle: R R^T = 1 and det R = 1 (1e-12); same seed, same matrix; for Haar-uniform
    rotations the rotated z axis is uniform on the sphere, so its z component is U(-1, 1):
    mean 0 and variance 1/3 within 4 sigma for 4000 draws."""
    np.testing.assert_array_equal(random_rotation(5), random_rotation(5))
    rng = np.random.default_rng(0)
    zs = []
    for _ in range(4000):
        r = random_rotation(rng)
        assert np.allclose(r @ r.T, np.eye(3), atol=1e-12) and math.isclose(np.linalg.det(r), 1.0, abs_tol=1e-12)
        zs.append(r[2, 2])
    zs = np.array(zs)
    assert abs(zs.mean()) < 4 * math.sqrt(1 / 3 / 4000)
    assert abs(zs.var() - 1 / 3) < 4 * math.sqrt(4 / 45 / 4000)


def test_rotation_keeps_projected_mass(isothermal_plummer):
    """Oracle: rotation-invariant total mass of particles within the slab and field: the DM
    map's total equals the mass of the rotated particles in view (rel 1e-10)."""
    d = isothermal_plummer
    rot = random_rotation(3)
    maps = sightline_maps(d["prepared"], rotation=rot, axis=1, npix=NPIX, pixel_mpc=PIX)
    x, y, z = rotate_to_sightline(d["halo"].dm.pos_mpc, rot, 1)
    in_view = np.abs(z) <= DEPTH / 2
    got = maps.channel("dm_sigma").sum() * PIX**2 * RHO_DM * DEPTH
    assert got == pytest.approx(d["halo"].dm.mass_msun[in_view].sum(), rel=1e-10)


def test_given_smoothing_lengths_and_densities_are_used():
    """Oracle: a halo that carries H and rho keeps them (exact); y weights follow
    P_e V = 0.880 (rho/m_p) k T (m/rho) (rel 1e-12)."""
    rng = np.random.default_rng(1)
    n = 500
    pos = rng.normal(scale=0.3, size=(n, 3))
    h = np.full(n, 0.25)
    rho = rng.uniform(1e13, 2e13, n)
    halo = Halo(
        props=HaloProperties(halo_id=1, m200m_msun=1e14, r200m_mpc=1.0),
        gas=GasParticles(pos_mpc=pos, mass_msun=np.full(n, 1e9), temperature_k=np.full(n, 1e7),
                         smoothing_length_mpc=h, density_msun_mpc3=rho),
        dm=DarkMatterParticles(pos_mpc=pos, mass_msun=np.full(n, 5e9), smoothing_length_mpc=h * 2),
    )
    p = prepare_halo(halo, mean_gas_density_msun_mpc3=RHO_GAS, mean_dm_density_msun_mpc3=RHO_DM, depth_mpc=DEPTH)
    np.testing.assert_array_equal(p.gas_support_mpc, h)
    np.testing.assert_array_equal(p.dm_support_mpc, h * 2)
    vol_cm3 = 1e9 / rho * MPC_CM**3
    n_e = 0.880 * rho * MSUN_G / MPC_CM**3 / MP_G
    y_w_mpc2 = SIGMA_T_CM2 / ME_C2_KEV * n_e * KB_KEV_PER_K * 1e7 * vol_cm3 / MPC_CM**2
    np.testing.assert_allclose(p.gas_weights[0], y_w_mpc2, rtol=1e-6)

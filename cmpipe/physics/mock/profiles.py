"""Radial profiles of the mock halos (:mod:`cmpipe.physics.mock`): NFW, the DK14 transition
term, the two-halo term, the pressure shapes (DPP, Arnaud et al. 2010), non-thermal support and
the gas from hydrostatic equilibrium, tabulated as :class:`MockProfiles`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import CosmologyConfig, MapsConfig, MockConfig, PlasmaConfig
    from cmpipe.physics.plasma import Plasma

#: DPP (He et al. 2021) generalised-NFW parameters [P0, c500, a, b, g].
DPP_PARAMETERS = (5.048, 1.217, 1.192, 5.490, 0.433)
#: Arnaud et al. (2010, A&A 517, A92, section 6 and appendix C) GNFW fits of the REXCESS cool-core
#: and morphologically disturbed sub-samples, in the order of :data:`DPP_PARAMETERS`
#: [P0 (h70^-3/2), c500, a (alpha), b (beta), g (gamma)]. With ``observed_baryons`` only the shape
#: is used: the amplitude follows from the gas fraction.
A10_COOL_CORE = (3.249, 1.128, 1.2223, 5.4905, 0.7736)
A10_DISTURBED = (3.202, 1.083, 1.4063, 5.4905, 0.3798)
#: Floor of the extrapolated f_gas,500 relation (galaxy-scale neighbours) [dimensionless].
FGAS_FLOOR = 0.01
#: Diemer & Kravtsov (2014) transition term ``[1 + (r / r_t)^beta]^(-gamma / beta)`` of mass-selected
#: halos: beta, gamma and ``r_t / R200m = 1.9 - 0.18 nu`` (their eq. 6 and section 3.3).
DK14_BETA, DK14_GAMMA = 4.0, 8.0
DK14_RT = (1.9, 0.18)
#: Nelson et al. (2014) non-thermal pressure fraction parameters (A, B, gamma).
NELSON14_PARAMETERS = (0.452, 0.841, 1.628)
#: Temperature floor of the gas [K] (IGM at the mean density, T0 of the T-rho relation).
IGM_TEMPERATURE_FLOOR_K = 1e4
#: Radial table: points, and the innermost radius in units of R200m.
_N_TABLE = 4096
_X_MIN = 1e-5


def nfw_mass_fraction(x: np.ndarray, concentration: float) -> np.ndarray:
    """``M(<r) / M200m = m(c x) / m(c)`` of an untruncated NFW profile, ``x = r / R200m``."""
    y = np.asarray(x, dtype=np.float64) * concentration
    return (np.log1p(y) - y / (1.0 + y)) / (np.log1p(concentration) - concentration / (1.0 + concentration))



def dpp_electron_pressure_kev_cm3(
    r_mpc: np.ndarray, m500c_msun: float, r500c_mpc: float, h: float, e_z: float = 1.0
) -> np.ndarray:
    """DPP electron pressure ``P_e(r)`` [keV cm^-3] (module docstring; He et al. 2021).

    Parameters
    ----------
    r_mpc : array
        Radius [physical Mpc].
    m500c_msun, r500c_mpc : float
        M500c [Msun] and R500c [Mpc].
    h : float
        Dimensionless Hubble parameter (``h70 = h / 0.7``).
    e_z : float
        ``E(z) = H(z) / H0``.
    """
    return gnfw_electron_pressure_kev_cm3(r_mpc, m500c_msun, r500c_mpc, h, e_z, DPP_PARAMETERS)


def gnfw_electron_pressure_kev_cm3(
    r_mpc: np.ndarray, m500c_msun: float, r500c_mpc: float, h: float, e_z: float,
    params: tuple[float, float, float, float, float],
) -> np.ndarray:
    """Generalised-NFW electron pressure [keV cm^-3] of Arnaud et al. (2010),
    ``P500 P0 / [(c500 x)^g (1 + (c500 x)^a)^((b - g) / a)]``, ``x = r / R500c``, ``params`` in the
    order ``[P0, c500, a, b, g]`` (:data:`DPP_PARAMETERS`, :data:`A10_COOL_CORE`), ``P500`` as in
    :func:`dpp_electron_pressure_kev_cm3`."""
    p0, c500, a, b, g = params
    h70 = h / 0.7
    p500 = 1.65e-3 * e_z ** (8.0 / 3.0) * (m500c_msun * h70 / 3e14) ** (2.0 / 3.0) * h70**2
    cx = c500 * np.asarray(r_mpc, dtype=np.float64) / r500c_mpc
    return p500 * p0 / (cx**g * (1.0 + cx**a) ** ((b - g) / a))


def vikhlinin09_fgas500(m500c_msun: np.ndarray, h: float) -> np.ndarray:
    """Mean gas fraction inside R500c of Vikhlinin et al. (2009, ApJ 692, 1033),
    ``f_gas = 0.0764 h^-1.5 + 0.037 log10(M500 / 1e15 h^-1 Msun)`` [dimensionless], floored at
    :data:`FGAS_FLOOR` below its calibrated range (1e14-1e15 h^-1 Msun; 0.068 at M500c = 3e13 Msun,
    0.113 at 5e14 Msun for h = 0.7): the published relation of
    :data:`cmpipe.physics.observed.VIKHLININ09_FGAS`, which validate-mock compares with."""
    from cmpipe.physics.observed import VIKHLININ09_FGAS

    return np.maximum(VIKHLININ09_FGAS.fgas500(m500c_msun, h), FGAS_FLOOR)


def dk14_transition(r_mpc: np.ndarray, r_t_mpc: float) -> np.ndarray:
    """Diemer & Kravtsov (2014) transition term ``[1 + (r / r_t)^4]^(-2)`` (beta = 4, gamma = 8)."""
    x = np.asarray(r_mpc, dtype=np.float64) / r_t_mpc
    return (1.0 + x**DK14_BETA) ** (-DK14_GAMMA / DK14_BETA)


def nonthermal_fraction(r_mpc: np.ndarray, r200m_mpc: float) -> np.ndarray:
    """Nelson et al. (2014) ``f_nt(r) = 1 - A {1 + exp[-(r / (B R200m))^gamma]}``."""
    a, b, gamma = NELSON14_PARAMETERS
    return 1.0 - a * (1.0 + np.exp(-((np.asarray(r_mpc, dtype=np.float64) / (b * r200m_mpc)) ** gamma)))


@lru_cache(maxsize=1)
def _units() -> tuple[float, float, float]:
    """G [Mpc (km/s)^2 Msun^-1], 1 keV cm^-3 in Msun Mpc^-3 (km/s)^2, 1 Msun Mpc^-3 in g cm^-3."""
    from astropy import constants as c
    from astropy import units as u

    g = float(c.G.to_value(u.Mpc * (u.km / u.s) ** 2 / u.Msun))
    kev_cm3 = float((1.0 * u.keV / u.cm**3).to_value(u.Msun / u.Mpc**3 * (u.km / u.s) ** 2))
    msun_mpc3_in_g_cm3 = float((1.0 * u.Msun / u.Mpc**3).to_value(u.g / u.cm**3))
    return g, kev_cm3, msun_mpc3_in_g_cm3


@lru_cache(maxsize=8)
def _xi_table(cosmo_cfg: CosmologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Linear matter correlation function at the config's redshift on a log grid of comoving
    separations [Mpc/h] (colossus ``correlationFunction``)."""
    from cmpipe.physics.cosmology import colossus_cosmology

    cosmo = colossus_cosmology(cosmo_cfg)
    r = np.geomspace(0.01, 200.0, 400)
    return r, np.asarray(cosmo.correlationFunction(r, cosmo_cfg.redshift), dtype=np.float64)


#: log10 M200m [Msun/h] range of the one concentration table a process needs: the gas fractions'
#: and, unless a subhalo falls outside it, every halo's subhalos (one spline per process, not one
#: per halo's subhalo mass range: each cost ~0.3 s of colossus in every worker).
CONCENTRATION_TABLE_LOG10_M = (10.0, 17.0)


@lru_cache(maxsize=16)
def _log_concentration_table(cosmo_cfg: CosmologyConfig, lo: float, hi: float):
    """Cubic spline of log10 of the Diemer & Joyce (2019) median c200m against log10 M200m
    [Msun/h] on ``[lo, hi]``, from colossus every 0.05 dex (the subhalos' concentrations)."""
    from scipy.interpolate import CubicSpline

    from cmpipe.physics.catalog import median_concentration

    grid = np.linspace(lo, hi, max(int(round((hi - lo) / 0.05)), 3) + 1)
    return CubicSpline(grid, np.log10(median_concentration(grid, cosmo_cfg)))


def _cap(limit: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``min(1, limit / value)`` element-wise, 1 where ``value`` is 0."""
    out = np.ones_like(value)
    np.divide(limit, value, out=out, where=value > 0)
    return np.minimum(out, 1.0)


def _density(r: np.ndarray, enclosed: np.ndarray) -> np.ndarray:
    """``dM/dV = (dM/dr) / (4 pi r^2)`` of a tabulated enclosed mass [mass Mpc^-3]."""
    dm_dr = np.gradient(enclosed, r)
    return dm_dr / (4.0 * np.pi * np.maximum(r, r[1]) ** 2)


def _cumulative(r: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``int_0^r 4 pi r'^2 rho dr'`` on the grid (trapezoid; ``r[0] = 0``)."""
    f = 4.0 * np.pi * r**2 * rho
    return np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(r))])


def neighbour_gas_depletion(log10_m200m_msun_h: np.ndarray, cosmo_cfg: CosmologyConfig) -> np.ndarray:
    """Gas mass over ``f_b M200m`` of a neighbour halo [dimensionless]: its f_gas,500 from
    :func:`vikhlinin09_fgas500` at its M500c (Diemer & Joyce 2019 median concentration, the
    0.05-dex spline of :func:`_log_concentration_table`) over
    ``f_b``, at most 1. A neighbour's gas is ``f_gas,500 M200m``."""
    from cmpipe.physics.cosmology import r500c_from_m200m

    lm = np.asarray(log10_m200m_msun_h, dtype=np.float64)
    m200m = 10.0**lm / cosmo_cfg.h
    lo, hi = CONCENTRATION_TABLE_LOG10_M
    conc = 10.0 ** _log_concentration_table(cosmo_cfg, lo, hi)(np.clip(lm, lo, hi))
    _, m500c = r500c_from_m200m(m200m, conc, cosmo_cfg)
    f_b = cosmo_cfg.omega_b / cosmo_cfg.omega_m
    return np.minimum(vikhlinin09_fgas500(m500c, cosmo_cfg.h) / f_b, 1.0)


@lru_cache(maxsize=16)
def _resolved_fractions(cosmo_cfg: CosmologyConfig, lo: float, hi: float, bias_weighted: bool) -> tuple[float, float]:
    """``(DM share, gas share)`` of the mean densities in resolved neighbours, or with
    ``bias_weighted`` ``(collapsed, bias-weighted share of the two-halo term)``."""
    from cmpipe.physics.neighbours import resolved_fractions

    fr = resolved_fractions(lo, hi, cosmo_cfg, weight=lambda lm: neighbour_gas_depletion(lm, cosmo_cfg))
    if bias_weighted:
        return fr.collapsed, fr.bias_weighted
    return fr.collapsed, fr.weighted_collapsed


@dataclass(frozen=True)
class MockProfiles:
    """Spherical (ellipsoidal-radius) profiles of one mock halo, tabulated.

    Attributes
    ----------
    r_mpc : (K,) float64
        Radius grid from 0 to the outer radius [physical Mpc].
    dm_enclosed_msun, gas_enclosed_msun : (K,) float64
        DM and gas mass inside each radius [Msun] (the halo alone, no background).
    outer_mpc : float
        Outer radius of the halo's particles [Mpc].
    p500_scale : float
        Factor on the DPP pressure (the catalog's ``pressure_factor`` or 1).
    m500c_msun, r500c_mpc, r200m_mpc, h, e_z : float
        What :meth:`thermal_pressure_kev_cm3` needs.
    electron_pressure_fraction : float
        ``P_e / P_th``.
    gnfw : tuple of 5 floats
        Pressure shape ``[P0, c500, a, b, g]`` (:data:`DPP_PARAMETERS` or an Arnaud et al. 2010
        family with the halo's c500); ``P_e = p500_scale P500 GNFW(r)``.
    hse_mass_msun : (K,) float64 or None
        Hydrostatic mass from the thermal pressure alone, ``-r^2 (dP_th/dr) / (G rho_gas)`` [Msun]
        on ``r_mpc`` (None without ``gas_from_hse``): what an X-ray analysis assuming hydrostatic
        equilibrium would measure, ``(1 - b) M`` with b the hydrostatic bias.
    background_dm_msun_mpc3, background_gas_msun_mpc3 : float
        Densities of the uniform background particles [Msun Mpc^-3] (0 without ``background``).
    background_inside : bool
        True when the background fills the whole sphere, halo included (``transition``); false
        when it lies only outside the halo's outer ellipsoid ``outer_mpc``.
    fgas500_target : float
        The prescribed gas fraction inside R500c (``observed_baryons``; NaN otherwise).
    pressure_cap : (K,) float64 or None
        Factor <= 1 on the pressure (and gas density) on ``r_mpc`` where the hydrostatic gas
        would exceed ``f_b`` times the halo's own matter density (``observed_baryons``).
    """

    r_mpc: np.ndarray
    dm_enclosed_msun: np.ndarray
    gas_enclosed_msun: np.ndarray
    outer_mpc: float
    p500_scale: float
    m500c_msun: float
    r500c_mpc: float
    r200m_mpc: float
    h: float
    e_z: float
    electron_pressure_fraction: float
    gnfw: tuple[float, float, float, float, float] = DPP_PARAMETERS
    hse_mass_msun: np.ndarray | None = None
    background_dm_msun_mpc3: float = 0.0
    background_gas_msun_mpc3: float = 0.0
    background_inside: bool = False
    fgas500_target: float = float("nan")
    pressure_cap: np.ndarray | None = None

    def electron_pressure_kev_cm3(self, r_mpc: np.ndarray) -> np.ndarray:
        """GNFW ``P_e(r)`` times the pressure factor (and the cap) [keV cm^-3]."""
        r = np.maximum(np.asarray(r_mpc, dtype=np.float64), _X_MIN * self.r200m_mpc)
        p = self.p500_scale * gnfw_electron_pressure_kev_cm3(r, self.m500c_msun, self.r500c_mpc, self.h, self.e_z, self.gnfw)
        if self.pressure_cap is not None:
            p = p * np.interp(r, self.r_mpc, self.pressure_cap)
        return p

    def hydrostatic_mass_msun(self, r_mpc: np.ndarray) -> np.ndarray:
        """Hydrostatic mass from the thermal pressure alone at ``r_mpc`` [Msun] (NaN without
        ``gas_from_hse``)."""
        r = np.asarray(r_mpc, dtype=np.float64)
        if self.hse_mass_msun is None:
            return np.full(r.shape, np.nan)
        return np.interp(r, self.r_mpc, self.hse_mass_msun)

    def thermal_pressure_kev_cm3(self, r_mpc: np.ndarray) -> np.ndarray:
        """``P_th = P_e / (P_e / P_th)`` [keV cm^-3]."""
        return self.electron_pressure_kev_cm3(r_mpc) / self.electron_pressure_fraction



# --------------------------------------------------------------------------------------------
# The profiles of one halo from its catalog row
# --------------------------------------------------------------------------------------------


def plasma_of(plasma_cfg: PlasmaConfig) -> Plasma:
    """The :class:`~cmpipe.physics.plasma.Plasma` of the ``plasma`` section."""
    from cmpipe.physics.plasma import Plasma

    return Plasma(plasma_cfg.hydrogen_mass_fraction, plasma_cfg.gaunt_factor)


def background_radius_mpc(maps: MapsConfig) -> float:
    """Radius of the sphere circumscribing the projection box [Mpc] (the background's extent)."""
    width = maps.npix * maps.pixel_mpc
    return 0.5 * float(np.sqrt(2.0 * width**2 + maps.depth_mpc**2))


def outer_radius_mpc(row: dict, mock: MockConfig, background_radius: float) -> float:
    """Outer radius of the halo's particles [Mpc]: the background sphere of radius
    ``background_radius`` [Mpc] (``transition``), else the infall extent or the truncation."""
    if mock.transition:
        return background_radius
    extent = mock.infall_extent_r200m if mock.infall else mock.truncation_r200m
    return float(extent * row["r200m_mpc"])


def neighbour_mass_range_log10_msun_h(mock: MockConfig) -> tuple[float, float]:
    """log10 M200m [Msun/h] of the resolved neighbour halos: from ``neighbour_min_particles``
    particle pairs to 10^15.5."""
    lo = float(np.log10(mock.neighbour_min_particles * mock.pair_mass_msun_h))
    return lo, max(15.5, lo + 0.1)


def resolved_neighbour_fractions(
    cosmology: CosmologyConfig, mock: MockConfig, bias_weighted: bool = False
) -> tuple[float, float]:
    """Shares of the mean density in resolved neighbour halos (0 without ``neighbours``):
    ``(DM, gas)`` of the mean densities, or with ``bias_weighted`` ``(collapsed,
    bias-weighted)`` of the two-halo term (:func:`cmpipe.physics.neighbours.resolved_fractions`)."""
    if not (mock.neighbours and mock.transition):
        return 0.0, 0.0
    return _resolved_fractions(cosmology, *neighbour_mass_range_log10_msun_h(mock), bias_weighted)


def transition_radius_mpc(row: dict, cosmology: CosmologyConfig) -> float:
    """``r_t = (1.9 - 0.18 nu) R200m`` of Diemer & Kravtsov (2014) [Mpc], ``nu`` the peak height."""
    from colossus.lss import peaks

    from cmpipe.physics.cosmology import colossus_cosmology

    colossus_cosmology(cosmology)
    nu = float(peaks.peakHeight(float(row["m200m_msun_h"]), cosmology.redshift))
    return (DK14_RT[0] - DK14_RT[1] * nu) * float(row["r200m_mpc"])


def own_mass_msun(row: dict, r: np.ndarray, cosmology: CosmologyConfig, mock: MockConfig) -> np.ndarray:
    """Total matter of the halo itself inside ``r`` [Msun]: NFW times the DK14 transition term
    normalised to M200m at R200m (``transition``), else the NFW truncated at
    ``truncation_r200m``."""
    m200m = float(row["m200m_msun_h"]) / cosmology.h
    r200m, c = float(row["r200m_mpc"]), float(row["c200m"])
    if not mock.transition:
        r_trunc = mock.truncation_r200m * r200m
        return m200m * nfw_mass_fraction(np.minimum(r, r_trunc) / r200m, c)
    rs = r200m / c
    x = np.maximum(r, _X_MIN * r200m) / rs
    rho = dk14_transition(r, transition_radius_mpc(row, cosmology)) / (x * (1.0 + x) ** 2)
    enc = _cumulative(r, np.where(r > 0, rho, 0.0))
    return m200m * enc / float(np.interp(r200m, r, enc))


def two_halo_enclosed_msun(row: dict, r: np.ndarray, cosmology: CosmologyConfig, mock: MockConfig) -> np.ndarray:
    """Smooth matter around the halo beyond its own profile [Msun inside r].

    ``transition``: the two-halo term ``rho_bar_m b xi_lin(r) [1 - f_t(r)] (1 - F)``, with the
    DK14 transition term ``f_t`` keeping it out of the halo (exclusion) and ``F`` the share of the
    two-halo term in resolved neighbour halos (``neighbours``), which are made as particles.
    Otherwise the old infall shell ``rho_bar_m [1 + b xi_lin]`` beyond the truncation radius."""
    from colossus.lss import bias

    from cmpipe.physics.cosmology import colossus_cosmology, mean_densities

    h, z = cosmology.h, cosmology.redshift
    if not (mock.transition or mock.infall):
        return np.zeros_like(r)
    colossus_cosmology(cosmology)  # haloBias uses colossus' current cosmology
    b = float(bias.haloBias(float(row["m200m_msun_h"]), z, "200m", model="tinker10"))
    r_tab, xi_tab = _xi_table(cosmology)
    r_com = np.clip(r * (1.0 + z) * h, r_tab[0], r_tab[-1])
    xi = np.exp(np.interp(np.log(r_com), np.log(r_tab), np.log(np.maximum(xi_tab, 1e-30))))
    rho_m = mean_densities(cosmology).matter
    if mock.transition:
        _, resolved_bias = resolved_neighbour_fractions(cosmology, mock, bias_weighted=True)
        exclusion = 1.0 - dk14_transition(r, transition_radius_mpc(row, cosmology))
        rho = rho_m * b * xi * exclusion * (1.0 - resolved_bias)
    else:
        r_trunc = mock.truncation_r200m * float(row["r200m_mpc"])
        rho = np.where(r > r_trunc, rho_m * (1.0 + b * xi), 0.0)
    return _cumulative(r, rho)


@dataclass(frozen=True)
class _GasProfile:
    """The gas part of :class:`MockProfiles` while it is built (same fields and units)."""

    enclosed_msun: np.ndarray
    p500_scale: float = 1.0
    fgas500_target: float = float("nan")
    pressure_cap: np.ndarray | None = None
    hse_mass_msun: np.ndarray | None = None


def _pressure_shape(row: dict, mock: MockConfig) -> tuple[float, float, float, float, float]:
    """GNFW ``[P0, c500, a, b, g]``: DPP, or with ``observed_baryons`` the Arnaud et al. (2010)
    cool-core or disturbed family with the row's scattered c500."""
    if not mock.observed_baryons:
        return DPP_PARAMETERS
    family = A10_COOL_CORE if bool(row["is_cool_core"]) else A10_DISTURBED
    c500 = family[1] * (float(row["pressure_c500_factor"]) if mock.scatter else 1.0)
    return (family[0], c500, *family[2:])


def _hydrostatic_gas(
    row: dict, r: np.ndarray, m_tot: np.ndarray, base: MockProfiles, mock: MockConfig
) -> tuple[np.ndarray, np.ndarray]:
    """``(rho_gas [Msun Mpc^-3], hydrostatic mass [Msun])`` on ``r`` from the unit-amplitude
    thermal pressure of ``base``, with non-thermal support (module docstring, ``Gas``)."""
    g_newton, kev_cm3, _ = _units()
    r200m, c = base.r200m_mpc, float(row["c200m"])
    m200m = float(row["m200m_msun_h"]) / base.h
    rr = r[1:]
    p_th = base.thermal_pressure_kev_cm3(rr) * kev_cm3
    f_nt = np.zeros_like(rr)
    if mock.nonthermal_support:
        scale = float(row["nonthermal_radius_factor"]) if (mock.observed_baryons and mock.scatter) else 1.0
        f_nt = nonthermal_fraction(rr, scale * r200m)
    p_tot = p_th / (1.0 - f_nt)
    dp_tot, dp_th = np.gradient(p_tot, rr), np.gradient(p_th, rr)
    m_hse_tot = m_tot[1:] if mock.transition else m200m * nfw_mass_fraction(rr / r200m, c)
    rho_gas = np.concatenate([[0.0], np.maximum(-dp_tot * rr**2 / (g_newton * m_hse_tot), 0.0)])
    hse_mass = np.concatenate([[0.0], m_hse_tot * dp_th / np.where(dp_tot < 0, dp_tot, -1e-300)])
    return rho_gas, hse_mass


def _observed_gas(
    row: dict, r: np.ndarray, m_tot: np.ndarray, dm_enc: np.ndarray, rho_gas: np.ndarray,
    hse_mass: np.ndarray, cosmology: CosmologyConfig, scatter: bool,
) -> _GasProfile:
    """The hydrostatic gas scaled to the prescribed f_gas,500 inside R500c (``observed_baryons``).

    HSE is linear in the pressure: density and pressure scale together, T is unchanged. Outside
    equilibrium the gas density never exceeds the cosmic share f_b of the halo's own matter
    density (the infall region beyond ~R200m of massive clusters); there the temperature stays
    the hydrostatic one and the pressure follows, P = n k T (``pressure_cap``). A few fixed-point
    steps keep the prescribed gas mass inside R500c (30 steps: within 0.1 % of it, or up to ~1 %
    short when f_gas,500 nears f_b and the cap binds over much of R500c), with
    M_gas / (M_gas + M_DM) = f_gas,500 inside R500c and the DM the particles hold.
    """
    h = cosmology.h
    f_b = cosmology.omega_b / cosmology.omega_m
    m500c, r500c = float(row["m500c_msun_h"]) / h, float(row["r500c_mpc"])
    fgas_target = float(vikhlinin09_fgas500(m500c, h))
    if scatter:
        fgas_target *= float(row["fgas500_factor"])
    fgas_target = min(fgas_target, f_b)
    dm500 = float(np.interp(r500c, r, dm_enc))
    gas_target = fgas_target / (1.0 - fgas_target) * dm500
    rho_cap = f_b * _density(r, m_tot)
    amplitude, cap = 1.0, np.ones_like(r)
    for _ in range(30):
        cap = _cap(rho_cap, amplitude * rho_gas)
        enc = _cumulative(r, rho_gas * cap)
        amplitude = gas_target / float(np.interp(r500c, r, enc))
    cap = _cap(rho_cap, amplitude * rho_gas)
    return _GasProfile(amplitude * _cumulative(r, rho_gas * cap), amplitude, fgas_target, cap, hse_mass)


def _gas_profile(
    row: dict, r: np.ndarray, m_tot: np.ndarray, dm_enc: np.ndarray, base: MockProfiles,
    cosmology: CosmologyConfig, mock: MockConfig,
) -> _GasProfile:
    """The halo's own gas: hydrostatic (``gas_from_hse``, scaled to f_gas,500 with
    ``observed_baryons``) or ``f_b`` times its matter; the DPP model's scatters without
    ``observed_baryons`` (the HSE density uses the mean pressure, the two scatters independent)."""
    f_b = cosmology.omega_b / cosmology.omega_m
    if not mock.gas_from_hse:
        gas = _GasProfile(m_tot * f_b)
    else:
        rho_gas, hse_mass = _hydrostatic_gas(row, r, m_tot, base, mock)
        if mock.observed_baryons:
            gas = _observed_gas(row, r, m_tot, dm_enc, rho_gas, hse_mass, cosmology, mock.scatter)
        else:
            gas = _GasProfile(_cumulative(r, rho_gas), hse_mass_msun=hse_mass)
    if not mock.observed_baryons and mock.scatter:
        gas = replace(gas, enclosed_msun=gas.enclosed_msun * float(row["gas_fraction_factor"]),
                      p500_scale=float(row["pressure_factor"]))
    return gas


def _background_densities(cosmology: CosmologyConfig, mock: MockConfig) -> tuple[float, float]:
    """``(DM, gas)`` densities of the uniform background [Msun Mpc^-3]: the cosmic means less
    the shares in resolved neighbours (0 without ``background``)."""
    from cmpipe.physics.cosmology import mean_densities

    if not mock.background:
        return 0.0, 0.0
    means = mean_densities(cosmology)
    resolved_dm, resolved_gas = resolved_neighbour_fractions(cosmology, mock)
    return means.dark_matter * (1.0 - resolved_dm), means.baryon * (1.0 - resolved_gas)


def halo_profiles(
    row: dict, r_out_mpc: float, cosmology: CosmologyConfig, plasma: PlasmaConfig, mock: MockConfig
) -> MockProfiles:
    """Tabulated DM and gas enclosed masses and the pressure profile of one halo.

    Parameters
    ----------
    row : dict
        The halo's catalog row (:func:`cmpipe.physics.catalog.halo_parameters`).
    r_out_mpc : float
        Outer radius of the table [physical Mpc] (:func:`outer_radius_mpc`).
    cosmology, plasma, mock
        The config sections.
    """
    from cmpipe.physics.cosmology import colossus_cosmology

    h, f_b = cosmology.h, cosmology.omega_b / cosmology.omega_m
    r200m = float(row["r200m_mpc"])
    r = np.concatenate([[0.0], np.geomspace(_X_MIN * r200m, r_out_mpc, _N_TABLE)])
    # Total matter of the halo itself [Msun], M_tot(<r), and its DM; then the smooth outer term.
    m_tot = own_mass_msun(row, r, cosmology, mock)
    two_halo = two_halo_enclosed_msun(row, r, cosmology, mock)
    dm_enc = (1.0 - f_b) * m_tot
    dm_enc = dm_enc + (1.0 - f_b) * two_halo
    base = MockProfiles(
        r_mpc=r, dm_enclosed_msun=dm_enc, gas_enclosed_msun=dm_enc, outer_mpc=r_out_mpc, p500_scale=1.0,
        m500c_msun=float(row["m500c_msun_h"]) / h, r500c_mpc=float(row["r500c_mpc"]), r200m_mpc=r200m, h=h,
        e_z=float(colossus_cosmology(cosmology).Ez(cosmology.redshift)),
        electron_pressure_fraction=plasma_of(plasma).electron_pressure_fraction, gnfw=_pressure_shape(row, mock),
    )
    gas = _gas_profile(row, r, m_tot, dm_enc, base, cosmology, mock)
    gas_enc = gas.enclosed_msun + f_b * two_halo if mock.transition else gas.enclosed_msun  # the infall shell: DM only
    bg_dm, bg_gas = _background_densities(cosmology, mock)
    return replace(
        base, gas_enclosed_msun=gas_enc, p500_scale=gas.p500_scale, hse_mass_msun=gas.hse_mass_msun,
        background_dm_msun_mpc3=bg_dm, background_gas_msun_mpc3=bg_gas, background_inside=mock.transition,
        fgas500_target=gas.fgas500_target, pressure_cap=gas.pressure_cap,
    )

"""Mock galaxy clusters: particle halos drawn from the catalog (``../shared/SPEC.md`` section 4).

A stand-in for the HYPER simulation's halos: every halo of the catalog
(:mod:`cmpipe.physics.catalog`) becomes dark-matter and gas particles of *fixed* masses
``m_DM = (1 - f_b) m_pair`` and ``m_gas = f_b m_pair`` (never a fixed count per halo), drawn from
``SeedSequence([catalog.seed, halo_id, 1])`` alone, so any one halo regenerates identically
without the others. Every realism knob of the ``mock`` config section can be switched off.

Dark matter
    NFW with the catalog's ``c200m`` (Navarro, Frenk & White 1997), ``rho ~ 1 / [y (1 + y)^2]``,
    ``y = c r / R200m``, holding ``(1 - f_b) M200m`` inside R200m and truncated at
    ``truncation_r200m R200m``. With ``infall`` a shell from the truncation radius to
    ``infall_extent_r200m R200m`` follows the halo-matter cross-correlation,
    ``rho_DM(r) = (1 - f_b) rho_bar_m [1 + b xi_mm(r)]`` with the Tinker et al. (2010) bias
    ``b(M200m)`` and the linear matter correlation function (colossus ``haloBias`` and
    ``correlationFunction``, comoving Mpc/h; ``r_com = (1 + z) h r_phys``). Radii come from the
    inverse of the tabulated enclosed mass, directions are isotropic.
Triaxiality (``triaxial``)
    A volume-preserving stretch by axis lengths ``(a, b, c) = (1, q, s) / (q s)^(1/3)`` along
    x, y, z, then the catalog orientation (``x = R x_principal``,
    :func:`cmpipe.physics.catalog.orientation_matrix`). Densities become functions of the
    ellipsoidal radius ``r_e = |R^T x / (a, b, c)|``, with the same enclosed mass as the sphere.
Gas
    Electron pressure: the debiased pressure profile DPP (He et al. 2021) in the generalised
    NFW form of Arnaud et al. (2010), ``P_e = P500 P0 / [(c500 x)^g (1 + (c500 x)^a)^((b - g)/a)]``,
    ``x = r / R500c``, ``[P0, c500, a, b, g] = [5.048, 1.217, 1.192, 5.490, 0.433]``,
    ``P500 = 1.65e-3 E(z)^(8/3) (M500c / 3e14 h70^-1 Msun)^(2/3) h70^2 keV cm^-3``, times the
    catalog's ``pressure_factor`` with ``scatter``. Thermal pressure ``P_th = P_e / 0.518``
    (:attr:`cmpipe.physics.plasma.Plasma.electron_pressure_fraction`).
    With ``gas_from_hse`` the gas density follows from hydrostatic equilibrium with non-thermal
    support (Nelson et al. 2014): ``P_tot = P_th / (1 - f_nt)``,
    ``f_nt(r) = 1 - A {1 + exp[-(r / (B R200m))^gamma]}``, ``A, B, gamma = 0.452, 0.841, 1.628``
    (``f_nt(0) = 0.096``, ``f_nt(inf) = 0.548``; without ``nonthermal_support`` ``f_nt = 0``) and
    ``rho_gas = -(dP_tot/dr) r^2 / (G M_tot(<r))``, ``M_tot = M200m m(c r/R200m) / m(c)``,
    ``m(y) = ln(1 + y) - y / (1 + y)`` (the untruncated NFW total mass, gas included). The HSE
    density uses the *mean* pressure (no ``pressure_factor``); with ``scatter`` it is scaled by
    the catalog's ``gas_fraction_factor`` (the two scatters stay independent, so the temperature
    carries their ratio). Without ``gas_from_hse`` the gas follows the DM profile times
    ``f_b / (1 - f_b)`` (NFW, infall shell included). Gas particles reach the same outer radius
    as the DM. With ``gas_shape`` the gas is rounder, axis ratios ``1 - 0.5 (1 - q)`` and
    ``1 - 0.5 (1 - s)``, and tilted from the DM axes by the catalog's ``gas_misalignment_deg``
    about a random axis; without it the gas is spherical.
Background (``background``)
    Uniform DM and gas particles at the cosmic mean densities ``rho_bar_m - rho_bar_b`` and
    ``rho_bar_b`` (:func:`cmpipe.physics.cosmology.mean_densities`), inside the sphere
    circumscribing the projection box (``npix pixel_mpc`` wide, ``depth_mpc`` deep, so any
    rotation of the halo still fills the slab) and outside the halo's outer (ellipsoidal)
    boundary, at the same particle masses.
Temperature
    ``T = mu m_p P_th(r_e) / (k_B rho)`` for every gas particle, with ``rho`` the density of its
    ``n_neighbours_temperature`` nearest gas neighbours, ``(k - 1) m / (4 pi H^3 / 3)``
    (:func:`cmpipe.sph.smoothing.knn_volume_density`), whose inverse, the particle volume that
    weights the SPH maps, is unbiased for Poisson-sampled particles (the gather density's
    inverse is ~20 % high at k = 32, and y = sum P_e V W would carry it): clumps are isobaric,
    denser and cooler. Far out the profile's pressure would give absurdly cold gas, so
    ``T = max(T, 1e4 K)`` (a floor standing in for the IGM temperature-density relation,
    ``T0 = 1e4 K``). The gas particles carry these densities and smoothing lengths, which
    :func:`cmpipe.maps.prepare_halo` then reuses.

Not implemented yet: substructure (``mock.substructure`` is rejected), mergers and clumping
(their catalog columns are ignored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from cmpipe.physics.halo import DarkMatterParticles, GasParticles, Halo, HaloProperties

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config, CosmologyConfig

__all__ = [
    "DPP_PARAMETERS",
    "IGM_TEMPERATURE_FLOOR_K",
    "NELSON14_PARAMETERS",
    "MockHaloSource",
    "MockProfiles",
    "dpp_electron_pressure_kev_cm3",
    "nfw_mass_fraction",
    "nonthermal_fraction",
]

#: DPP (He et al. 2021) generalised-NFW parameters [P0, c500, a, b, g].
DPP_PARAMETERS = (5.048, 1.217, 1.192, 5.490, 0.433)
#: Nelson et al. (2014) non-thermal pressure fraction parameters (A, B, gamma).
NELSON14_PARAMETERS = (0.452, 0.841, 1.628)
#: Temperature floor of the gas [K] (IGM at the mean density, T0 of the T-rho relation).
IGM_TEMPERATURE_FLOOR_K = 1e4
#: Radial table: points, and the innermost radius in units of R200m.
_N_TABLE = 4096
_X_MIN = 1e-5
#: Stream index that SeedSequence([catalog.seed, halo_id, _STREAM]) reserves for the particles.
_STREAM = 1


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
    p0, c500, a, b, g = DPP_PARAMETERS
    h70 = h / 0.7
    p500 = 1.65e-3 * e_z ** (8.0 / 3.0) * (m500c_msun * h70 / 3e14) ** (2.0 / 3.0) * h70**2
    cx = c500 * np.asarray(r_mpc, dtype=np.float64) / r500c_mpc
    return p500 * p0 / (cx**g * (1.0 + cx**a) ** ((b - g) / a))


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


def _cumulative(r: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``int_0^r 4 pi r'^2 rho dr'`` on the grid (trapezoid; ``r[0] = 0``)."""
    f = 4.0 * np.pi * r**2 * rho
    return np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(r))])


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

    def electron_pressure_kev_cm3(self, r_mpc: np.ndarray) -> np.ndarray:
        """DPP ``P_e(r)`` times the pressure factor [keV cm^-3]."""
        r = np.maximum(np.asarray(r_mpc, dtype=np.float64), _X_MIN * self.r200m_mpc)
        return self.p500_scale * dpp_electron_pressure_kev_cm3(r, self.m500c_msun, self.r500c_mpc, self.h, self.e_z)

    def thermal_pressure_kev_cm3(self, r_mpc: np.ndarray) -> np.ndarray:
        """``P_th = P_e / (P_e / P_th)`` [keV cm^-3]."""
        return self.electron_pressure_kev_cm3(r_mpc) / self.electron_pressure_fraction


def _isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _axes(q: float, s: float) -> np.ndarray:
    """Axis lengths ``(1, q, s) / (q s)^(1/3)`` (product 1: the stretch keeps volumes)."""
    return np.array([1.0, q, s]) / np.cbrt(q * s)


def _axis_angle(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(axis * angle_rad).as_matrix()


def _ellipsoidal_radius(pos: np.ndarray, axes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``|R^T x / axes|`` per row of ``pos`` (the radius the profile is a function of)."""
    principal = pos @ rotation  # rows: R^T x
    return np.linalg.norm(principal / axes, axis=1)


def _sample(
    r_grid: np.ndarray, enclosed: np.ndarray, particle_mass: float, axes: np.ndarray, rotation: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Positions [Mpc] of ``round(M_total / m)`` particles: inverse-CDF radii, isotropic
    directions, then the stretch ``axes`` and ``rotation``."""
    n = int(round(enclosed[-1] / particle_mass))
    radii = np.interp(rng.random(n) * enclosed[-1], enclosed, r_grid)
    principal = radii[:, None] * _isotropic(n, rng) * axes
    return principal @ rotation.T


@dataclass(frozen=True)
class MockHaloSource:
    """Mock clusters over the halo catalog; implements :class:`~cmpipe.physics.halo.HaloSource`.

    Cheap to build and picklable (it holds only the config); every halo is made from its
    catalog row (:func:`cmpipe.physics.catalog.halo_parameters`) and
    ``SeedSequence([catalog.seed, halo_id, 1])``.

    Attributes
    ----------
    cfg : Config
        Uses ``catalog``, ``cosmology``, ``plasma``, ``maps`` (background extent) and ``mock``.
    """

    cfg: Config

    @classmethod
    def from_config(cls, cfg: Config) -> MockHaloSource:
        """The mock source of ``cfg``."""
        return cls(cfg)

    def halo_ids(self) -> Sequence[int]:
        """The catalog's ids, ``0 .. catalog.n_halos - 1``."""
        return tuple(range(self.cfg.catalog.n_halos))

    def parameters(self, halo_id: int) -> dict:
        """The halo's catalog row (:func:`cmpipe.physics.catalog.halo_parameters`)."""
        from cmpipe.physics.catalog import halo_parameters

        return halo_parameters(self.cfg, int(halo_id))

    def properties(self, halo_id: int) -> HaloProperties:
        """M200m [Msun], R200m [Mpc] and redshift from the catalog row (no particles made)."""
        return self._properties(self.parameters(halo_id))

    def _properties(self, row: dict) -> HaloProperties:
        return HaloProperties(
            halo_id=int(row["halo_id"]),
            m200m_msun=float(row["m200m_msun_h"]) / self.cfg.cosmology.h,
            r200m_mpc=float(row["r200m_mpc"]),
            redshift=self.cfg.cosmology.redshift,
        )

    # ----------------------------------------------------------------------------------------

    def outer_radius_mpc(self, row: dict) -> float:
        """Outer radius of the halo's particles [Mpc]: the infall extent or the truncation."""
        mock = self.cfg.mock
        extent = mock.infall_extent_r200m if mock.infall else mock.truncation_r200m
        return float(extent * row["r200m_mpc"])

    def profiles(self, halo_id: int) -> MockProfiles:
        """Tabulated DM and gas enclosed masses and the pressure profile of one halo."""
        return self._profiles(self.parameters(halo_id))

    def _profiles(self, row: dict) -> MockProfiles:
        from cmpipe.physics.cosmology import colossus_cosmology, mean_densities
        from cmpipe.physics.plasma import Plasma

        cfg, mock = self.cfg, self.cfg.mock
        h, z = cfg.cosmology.h, cfg.cosmology.redshift
        f_b = cfg.cosmology.omega_b / cfg.cosmology.omega_m
        m200m = float(row["m200m_msun_h"]) / h
        r200m, c = float(row["r200m_mpc"]), float(row["c200m"])
        r_trunc = mock.truncation_r200m * r200m
        r_out = self.outer_radius_mpc(row)
        r = np.concatenate([[0.0], np.geomspace(_X_MIN * r200m, r_out, _N_TABLE)])

        # Dark matter: truncated NFW, plus the infall shell.
        dm_enc = (1.0 - f_b) * m200m * nfw_mass_fraction(np.minimum(r, r_trunc) / r200m, c)
        infall_rho = np.zeros_like(r)
        if mock.infall:
            from colossus.lss import bias

            colossus_cosmology(cfg.cosmology)  # haloBias uses colossus' current cosmology
            b = float(bias.haloBias(m200m * h, z, "200m", model="tinker10"))
            r_tab, xi_tab = _xi_table(cfg.cosmology)
            r_com = np.clip(r * (1.0 + z) * h, r_tab[0], r_tab[-1])
            xi = np.exp(np.interp(np.log(r_com), np.log(r_tab), np.log(np.maximum(xi_tab, 1e-30))))
            rho_m = mean_densities(cfg.cosmology).matter
            infall_rho = np.where(r > r_trunc, rho_m * (1.0 + b * xi), 0.0)
        dm_enc = dm_enc + (1.0 - f_b) * _cumulative(r, infall_rho)

        # Pressure and gas.
        plasma = Plasma(cfg.plasma.hydrogen_mass_fraction, cfg.plasma.gaunt_factor)
        e_z = float(colossus_cosmology(cfg.cosmology).Ez(z))
        scatter = mock.scatter
        base = MockProfiles(
            r_mpc=r, dm_enclosed_msun=dm_enc, gas_enclosed_msun=dm_enc, outer_mpc=r_out, p500_scale=1.0,
            m500c_msun=float(row["m500c_msun_h"]) / h, r500c_mpc=float(row["r500c_mpc"]), r200m_mpc=r200m,
            h=h, e_z=e_z, electron_pressure_fraction=plasma.electron_pressure_fraction,
        )
        if mock.gas_from_hse:
            g_newton, kev_cm3, _ = _units()
            rr = r[1:]
            p_tot = base.thermal_pressure_kev_cm3(rr) * kev_cm3
            if mock.nonthermal_support:
                p_tot = p_tot / (1.0 - nonthermal_fraction(rr, r200m))
            dp_dr = np.gradient(p_tot, rr)
            m_tot = m200m * nfw_mass_fraction(rr / r200m, c)
            rho_gas = np.concatenate([[0.0], np.maximum(-dp_dr * rr**2 / (g_newton * m_tot), 0.0)])
            gas_enc = _cumulative(r, rho_gas)
        else:
            gas_enc = dm_enc * f_b / (1.0 - f_b)
        if scatter:
            gas_enc = gas_enc * float(row["gas_fraction_factor"])
        return MockProfiles(
            r_mpc=r, dm_enclosed_msun=dm_enc, gas_enclosed_msun=gas_enc, outer_mpc=r_out,
            p500_scale=float(row["pressure_factor"]) if scatter else 1.0,
            m500c_msun=base.m500c_msun, r500c_mpc=base.r500c_mpc, r200m_mpc=r200m, h=h, e_z=e_z,
            electron_pressure_fraction=base.electron_pressure_fraction,
        )

    def particle_masses_msun(self) -> tuple[float, float]:
        """``(m_DM, m_gas) = ((1 - f_b) m_pair, f_b m_pair)`` [Msun]."""
        f_b = self.cfg.cosmology.omega_b / self.cfg.cosmology.omega_m
        m_pair = self.cfg.mock.pair_mass_msun_h / self.cfg.cosmology.h
        return (1.0 - f_b) * m_pair, f_b * m_pair

    def background_radius_mpc(self) -> float:
        """Radius of the sphere circumscribing the projection box [Mpc] (the background's extent)."""
        width = self.cfg.maps.npix * self.cfg.maps.pixel_mpc
        return 0.5 * float(np.sqrt(2.0 * width**2 + self.cfg.maps.depth_mpc**2))

    def _background(
        self, density: float, particle_mass: float, r_out: float, axes: np.ndarray, rotation: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Uniform positions at ``density`` in the background sphere, outside the halo's
        ellipsoid of outer radius ``r_out``."""
        radius = self.background_radius_mpc()
        n = int(round(density * 4.0 / 3.0 * np.pi * radius**3 / particle_mass))
        pos = radius * np.cbrt(rng.random(n))[:, None] * _isotropic(n, rng)
        return pos[_ellipsoidal_radius(pos, axes, rotation) >= r_out]

    def load(self, halo_id: int) -> Halo:
        """The particles of one halo, deterministic for ``(catalog.seed, halo_id)``."""
        from cmpipe.physics.catalog import orientation_matrix
        from cmpipe.physics.cosmology import mean_densities
        from cmpipe.physics.plasma import Plasma, constants
        from cmpipe.sph.smoothing import knn_volume_density, smoothing_lengths

        cfg, mock = self.cfg, self.cfg.mock
        row = self.parameters(halo_id)
        props = self._properties(row)
        prof = self._profiles(row)
        rng = np.random.default_rng(np.random.SeedSequence([cfg.catalog.seed, props.halo_id, _STREAM]))
        m_dm, m_gas = self.particle_masses_msun()
        q, s = float(row["shape_q"]), float(row["shape_s"])
        orient = orientation_matrix(np.array([row["orient_w"], row["orient_x"], row["orient_y"], row["orient_z"]]))

        # Geometry of the DM and of the gas. The misalignment axis is drawn whatever the knobs,
        # so that switching one knob leaves the other draws alone.
        tilt_axis = _isotropic(1, rng)[0]
        dm_axes, dm_rot = (_axes(q, s), orient) if mock.triaxial else (np.ones(3), np.eye(3))
        if mock.gas_shape:
            gas_axes = _axes(1.0 - 0.5 * (1.0 - q), 1.0 - 0.5 * (1.0 - s))
            gas_rot = _axis_angle(tilt_axis, np.deg2rad(float(row["gas_misalignment_deg"]))) @ orient
        else:
            gas_axes, gas_rot = np.ones(3), np.eye(3)

        dm_pos = _sample(prof.r_mpc, prof.dm_enclosed_msun, m_dm, dm_axes, dm_rot, rng)
        gas_pos = _sample(prof.r_mpc, prof.gas_enclosed_msun, m_gas, gas_axes, gas_rot, rng)
        if mock.background:
            means = mean_densities(cfg.cosmology)
            bg_dm = self._background(means.dark_matter, m_dm, prof.outer_mpc, dm_axes, dm_rot, rng)
            bg_gas = self._background(means.baryon, m_gas, prof.outer_mpc, gas_axes, gas_rot, rng)
            dm_pos = np.concatenate([dm_pos, bg_dm])
            gas_pos = np.concatenate([gas_pos, bg_gas])

        # Temperatures from the profile pressure and each particle's density. The density is the
        # k-NN volume estimate, whose inverse (the particle volume m / rho that weights every SPH
        # line-of-sight integral) is unbiased for these Poisson-sampled particles; the gather
        # density's inverse would bias y high by ~20 % at k = 32.
        gas_mass = np.full(gas_pos.shape[0], m_gas)
        support = smoothing_lengths(gas_pos, mock.n_neighbours_temperature, cfg.sph.num_threads)
        density = knn_volume_density(support, m_gas, mock.n_neighbours_temperature)
        plasma = Plasma(cfg.plasma.hydrogen_mass_fraction, cfg.plasma.gaunt_factor)
        k = constants()
        _, _, to_g_cm3 = _units()
        p_th = prof.thermal_pressure_kev_cm3(_ellipsoidal_radius(gas_pos, gas_axes, gas_rot))
        n_particles_cm3 = density * to_g_cm3 / (plasma.mean_molecular_weight * k.proton_mass_g)
        temperature = np.maximum(p_th / (n_particles_cm3 * k.boltzmann_kev_per_k), IGM_TEMPERATURE_FLOOR_K)

        halo = Halo(
            props=props,
            gas=GasParticles(
                pos_mpc=gas_pos, mass_msun=gas_mass, smoothing_length_mpc=support,
                temperature_k=temperature, density_msun_mpc3=density,
            ),
            dm=DarkMatterParticles(pos_mpc=dm_pos, mass_msun=np.full(dm_pos.shape[0], m_dm)),
        )
        return halo.validate(source="mock source")

"""Particle components of the mock halos (:mod:`cmpipe.physics.mock`): the merger secondary and
its shock, subhalos, gas clumps, clumping, and the sampling geometry they share."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from cmpipe.physics.mock.profiles import (
    _N_TABLE,
    _X_MIN,
    MockProfiles,
    _cumulative,
    CONCENTRATION_TABLE_LOG10_M,
    _log_concentration_table,
    _units,
    neighbour_gas_depletion,
    neighbour_mass_range_log10_msun_h,
    nfw_mass_fraction,
    plasma_of,
)

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import CosmologyConfig, MockConfig, PlasmaConfig

#: Stream index that SeedSequence([catalog.seed, halo_id, _STREAM]) reserves for the particles.
_STREAM = 1
#: Resolved gas clumps: radial range [R200m], fewest particles, largest mass [gas particles],
#: Plummer scale radius at 1e11 Msun [Mpc] (a ~ m^(1/3)).
GAS_CLUMP_RANGE_R200M = (0.3, 2.0)
GAS_CLUMP_MIN_PARTICLES = 32
GAS_CLUMP_MAX_PARTICLES = 1000
GAS_CLUMP_SCALE_MPC = 0.03
#: Cap on the clumping factor C(r) (SPEC section 4).
CLUMPING_CAP = 3.0
#: Largest gas-DM offset of a merger's secondary [Mpc] (SPEC section 4: <= 300 kpc).
MERGER_MAX_LAG_MPC = 0.3
#: Merger shock geometry [R200m of the secondary]: stand-off of the front beyond the secondary's
#: DM, downstream thickness of the shocked layer, radius of its lateral cap.
SHOCK_STANDOFF_R200M = 0.25
SHOCK_THICKNESS_R200M = 0.5
SHOCK_CAP_R200M = 1.0
#: Evolved subhalo mass function dN/dln(psi) = A psi^-SLOPE exp(-CUTOFF psi^3) (SPEC section 4).
SUBHALO_MF_SLOPE = 0.9
SUBHALO_MF_CUTOFF = 12.27
#: Lower end of the psi range that holds the mass fraction f_sub (A = f_sub / 5.0500).
SUBHALO_NORM_PSI_MIN = 1e-4
#: Fewest DM particles of a subhalo (psi >= 32 m_pair / M200m).
SUBHALO_MIN_PARTICLES = 32
#: Einasto radial distribution of the subhalos: alpha and r_-2 [R200m].
SUBHALO_EINASTO = (0.678, 0.81)
#: Fraction of its baryons f_b m a subhalo keeps as gas (the rest is stripped into the host).
SUBHALO_GAS_RETAINED = 0.1
#: Largest total subhalo mass [M200m]; later-drawn subhalos beyond it are dropped.
SUBHALO_MAX_MASS_FRACTION = 0.5


def clumping_factor(r_mpc: np.ndarray, r200m_mpc: float, c0: float) -> np.ndarray:
    """Clumping factor ``C(r) = <rho^2>/<rho>^2 = min(1 + C0 (r / R200m)^2, 3)`` (SPEC section 4)."""
    x = np.asarray(r_mpc, dtype=np.float64) / r200m_mpc
    return np.minimum(1.0 + c0 * x**2, CLUMPING_CAP)


def clumping_boost(r_mpc: np.ndarray, r200m_mpc: float, c0: float, normals: np.ndarray) -> np.ndarray:
    """Per-particle density factors ``f = exp(sigma^2 / 2 + sigma z)``, ``sigma^2 = ln C(r)``, from
    standard normals ``z``: ``<1/f> = 1`` (volumes kept) and ``<f> = C`` (module docstring)."""
    sigma2 = np.log(clumping_factor(r_mpc, r200m_mpc, c0))
    return np.exp(0.5 * sigma2 + np.sqrt(sigma2) * normals)


def rankine_hugoniot_jumps(mach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rankine-Hugoniot jumps of a gamma = 5/3 shock at Mach ``M``: density compression
    ``r = 4 M^2 / (M^2 + 3)`` and pressure ratio ``p = (5 M^2 - 1) / 4``."""
    m2 = np.asarray(mach, dtype=np.float64) ** 2
    return 4.0 * m2 / (m2 + 3.0), (5.0 * m2 - 1.0) / 4.0


@dataclass(frozen=True)
class MockShock:
    """The merger shock of one halo (module docstring, ``Shocks``).

    Attributes
    ----------
    mach : float
        The catalog's ``merger_mach``.
    direction : (3,) float64
        Unit vector ``n`` from the primary's centre to the secondary.
    front_mpc : float
        ``t_f``: distance of the front plane from the primary's centre along ``n`` [Mpc].
    thickness_mpc : float
        Downstream thickness of the shocked layer [Mpc].
    cap_radius_mpc : float
        Lateral radius of the shocked layer about the merger axis [Mpc].
    """

    mach: float
    direction: np.ndarray
    front_mpc: float
    thickness_mpc: float
    cap_radius_mpc: float

    @property
    def compression(self) -> float:
        """``rho_2 / rho_1 = 4 M^2 / (M^2 + 3)``."""
        return float(rankine_hugoniot_jumps(self.mach)[0])

    @property
    def pressure_jump(self) -> float:
        """``P_2 / P_1 = (5 M^2 - 1) / 4``."""
        return float(rankine_hugoniot_jumps(self.mach)[1])

    def weights(self, pos_mpc: np.ndarray, smoothing_mpc: np.ndarray) -> np.ndarray:
        """Shock weight ``w`` in [0, 1] per position: the product of linear ramps
        ``clip(1/2 + s / H, 0, 1)`` across the front, the back of the layer and the cap
        (``s`` the signed distance inside, ``H`` the smoothing length)."""
        pos = np.asarray(pos_mpc, dtype=np.float64)
        h = np.asarray(smoothing_mpc, dtype=np.float64)
        t = pos @ self.direction
        lateral = np.linalg.norm(pos - t[:, None] * self.direction, axis=1)
        w = np.ones(pos.shape[0])
        for inside in (self.front_mpc - t, t - (self.front_mpc - self.thickness_mpc), self.cap_radius_mpc - lateral):
            w = w * np.clip(0.5 + inside / h, 0.0, 1.0)
        return w


@dataclass(frozen=True)
class MockSecondary:
    """The secondary halo of a merger (module docstring, ``Mergers``).

    Attributes
    ----------
    m200m_msun, r200m_mpc, concentration : float
        M_s = xi M200m [Msun], its R200m [Mpc] and median c200m.
    dm_centre_mpc, gas_centre_mpc : (3,) float64
        Centres of its DM and of its (lagging) gas [Mpc], relative to the primary's centre.
    truncation_mpc : float
        Truncation radius of both [Mpc].
    virial_temperature_k : float
        ``T200m_s`` [K], the temperature of its gas.
    gas_mass_msun : float
        Its gas mass [Msun]: ``f_b M_s``, or with ``observed_baryons`` ``f_gas,500 M_s``
        (:func:`neighbour_gas_depletion`).
    post_pericentre : bool
        Seen after pericentre: only then does its gas lag (and a shock exist).

    Neighbour halos (``neighbours``) are made with the same class: no lag, their own R200m as
    truncation, the same isothermal gas.
    """

    m200m_msun: float
    r200m_mpc: float
    concentration: float
    dm_centre_mpc: np.ndarray
    gas_centre_mpc: np.ndarray
    truncation_mpc: float
    virial_temperature_k: float
    gas_mass_msun: float
    post_pericentre: bool = True

    def gas_density_msun_mpc3(self, r_mpc: np.ndarray) -> np.ndarray:
        """Truncated NFW gas density at distance ``r`` from the gas centre [Msun Mpc^-3]."""
        c, r200 = self.concentration, self.r200m_mpc
        rs = r200 / c
        rho0 = self.gas_mass_msun / (4.0 * np.pi * rs**3 * (np.log1p(c) - c / (1.0 + c)))
        r = np.maximum(np.asarray(r_mpc, dtype=np.float64), _X_MIN * r200)
        y = r / rs
        return np.where(r <= self.truncation_mpc, rho0 / (y * (1.0 + y) ** 2), 0.0)


@lru_cache(maxsize=1)
def subhalo_mf_normalisation() -> float:
    """``I = int_{1e-4}^{1} psi^0.1 exp(-12.27 psi^3) dln(psi) = 5.0500`` (by quadrature), so that
    ``A = f_sub / I`` puts the mass fraction ``f_sub`` in subhalos with ``psi`` in ``[1e-4, 1]``
    (the SPEC's ``A = f_sub / 5.05``)."""
    from scipy import integrate

    return float(integrate.quad(
        lambda p: p ** (-SUBHALO_MF_SLOPE) * np.exp(-SUBHALO_MF_CUTOFF * p**3), SUBHALO_NORM_PSI_MIN, 1.0,
        limit=200, epsabs=0.0, epsrel=1e-10,
    )[0])


def subhalo_mass_function(psi: np.ndarray, f_sub: float) -> np.ndarray:
    """``dN/dln(psi) = A psi^-0.9 exp(-12.27 psi^3)``, ``A = f_sub / I``
    (:func:`subhalo_mf_normalisation`), ``psi = m / M200m``."""
    psi = np.asarray(psi, dtype=np.float64)
    return f_sub / subhalo_mf_normalisation() * psi ** (-SUBHALO_MF_SLOPE) * np.exp(-SUBHALO_MF_CUTOFF * psi**3)


@dataclass(frozen=True)
class MockSubhalos:
    """The resolved subhalos of one mock halo (module docstring, ``Substructure``).

    Attributes
    ----------
    psi : (S,) float64
        ``m / M200m``.
    mass_msun, concentration, r200m_mpc, truncation_mpc : (S,) float64
        Mass m [Msun], median c200m, R200m of an isolated halo of mass m [Mpc], and the tidal
        (Jacobi) truncation radius [Mpc].
    centre_mpc : (S, 3) float64
        Centres [Mpc], relative to the host's centre.
    n_dm, n_gas : (S,) int64
        DM particles ``round(m / m_pair)`` and retained gas particles ``round(0.1 m / m_pair)``.
    """

    psi: np.ndarray
    mass_msun: np.ndarray
    concentration: np.ndarray
    r200m_mpc: np.ndarray
    truncation_mpc: np.ndarray
    centre_mpc: np.ndarray
    n_dm: np.ndarray
    n_gas: np.ndarray


@dataclass(frozen=True)
class MockGasClumps:
    """Resolved gas clumps of one halo (module docstring, ``Gas clumps``).

    Attributes
    ----------
    n_gas : (K,) int64
        Gas particles per clump [count].
    centre_mpc : (K, 3) float64
        Centres relative to the halo [Mpc].
    scale_mpc : (K,) float64
        Plummer scale radii [Mpc].
    """

    n_gas: np.ndarray
    centre_mpc: np.ndarray
    scale_mpc: np.ndarray



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


def _remove_matching_radii(host_r: np.ndarray, new_r: np.ndarray) -> np.ndarray:
    """Mask keeping all but ``new_r.size`` of the particles of radii ``host_r``: the removed ones
    are those whose radii best match ``new_r`` (the radii of the particles that replace them), so
    the removed mass has the radial distribution of the added mass. Deterministic (no random
    numbers).

    Matching in rank: with ``hs`` the sorted ``host_r`` and ``t`` the sorted ``new_r``, the
    fractional rank ``u_i`` of ``t_i`` among ``hs`` (linear interpolation, clipped to the ends)
    is its nearest host particle's rank. The removed ranks ``j_i = i + k_i`` must be distinct and
    increasing, i.e. ``k`` non-decreasing: ``k`` is the least-squares non-decreasing fit
    (isotonic regression, pool-adjacent-violators) to ``u_i - i``, rounded and clipped to
    ``[0, N - n]``. Where the added radii are sparse this is the nearest host particle of each;
    where they crowd more than the host particles (a subhalo's core), the run of removed host
    particles is centred on them instead of pushed to one side."""
    from scipy.optimize import isotonic_regression

    n, n_host = new_r.shape[0], host_r.shape[0]
    if n > n_host:
        raise ValueError(f"subhalos need {n} host particles, only {n_host} in the host profile")
    keep = np.ones(n_host, dtype=bool)
    if n == 0:
        return keep
    order, sorted_r = _stable_argsort(host_r)
    rank = np.interp(np.sort(new_r), sorted_r, np.arange(n_host, dtype=np.float64))
    i = np.arange(n)
    k = np.clip(np.rint(isotonic_regression(rank - i).x), 0, n_host - n).astype(np.int64)
    keep[order[k + i]] = False
    return keep




def _stable_argsort(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(np.argsort(x, kind="stable"), x[order])``: numpy's default (vectorised) sort, 1.4x
    faster on 5e5 floats, whose order is the stable one whenever the values are distinct
    (checked: strictly increasing once sorted); ties or NaNs fall back to the stable sort."""
    order = np.argsort(x)
    xs = x[order]
    if not np.all(xs[1:] > xs[:-1]):
        order = np.argsort(x, kind="stable")
        xs = x[order]
    return order, xs


def keep_unmatched(pos_mpc: np.ndarray, n_host: int, new_pos_mpc: np.ndarray) -> np.ndarray:
    """Mask over the rows of ``pos_mpc``: of its first ``n_host`` (the host profile's particles)
    those whose radii best match the radii of ``new_pos_mpc`` go (:func:`_remove_matching_radii`),
    the rest stay; no random numbers."""
    keep = _remove_matching_radii(np.linalg.norm(pos_mpc[:n_host], axis=1), np.linalg.norm(new_pos_mpc, axis=1))
    return np.concatenate([keep, np.ones(pos_mpc.shape[0] - n_host, dtype=bool)])


def knob_generators(catalog_seed: int, halo_id: int) -> list[np.random.Generator]:
    """Generators of the clumping, merger, substructure, neighbour and gas-clump draws: the
    children of ``SeedSequence([catalog.seed, halo_id, 1])`` (independent of the particles'
    stream; the first three are those of ``spawn(3)``, so adding the last two changed none)."""
    children = np.random.SeedSequence([catalog_seed, int(halo_id), _STREAM]).spawn(5)
    return [np.random.default_rng(c) for c in children]


def particle_masses_msun(cosmology: CosmologyConfig, mock: MockConfig) -> tuple[float, float]:
    """``(m_DM, m_gas) = ((1 - f_b) m_pair, f_b m_pair)`` [Msun]."""
    f_b = cosmology.omega_b / cosmology.omega_m
    m_pair = mock.pair_mass_msun_h / cosmology.h
    return (1.0 - f_b) * m_pair, f_b * m_pair


def sample_background(
    density: float, particle_mass: float, r_out: float, axes: np.ndarray, rotation: np.ndarray,
    radius_mpc: float, rng: np.random.Generator,
) -> np.ndarray:
    """Uniform positions at ``density`` [Msun Mpc^-3] in the background sphere of radius
    ``radius_mpc``, outside the halo's ellipsoid of outer radius ``r_out`` [Mpc]."""
    n = int(round(density * 4.0 / 3.0 * np.pi * radius_mpc**3 / particle_mass))
    pos = radius_mpc * np.cbrt(rng.random(n))[:, None] * _isotropic(n, rng)
    return pos[_ellipsoidal_radius(pos, axes, rotation) >= r_out]


def make_secondary(
    row: dict, cosmology: CosmologyConfig, plasma: PlasmaConfig, mock: MockConfig
) -> MockSecondary | None:
    """The merger secondary of a catalog row (module docstring, ``Mergers``), or None when the
    row is not a merger."""
    from cmpipe.physics.analytic import virial_temperature_k
    from cmpipe.physics.catalog import median_concentration
    from cmpipe.physics.cosmology import r200m_mpc

    if not bool(row["is_merger"]):
        return None
    h = cosmology.h
    f_b = cosmology.omega_b / cosmology.omega_m
    r200m = float(row["r200m_mpc"])
    m_s = float(row["merger_mass_ratio"]) * float(row["m200m_msun_h"]) / h
    r_s = float(r200m_mpc(m_s, cosmology))
    c_s = float(median_concentration(np.log10(m_s * h), cosmology))
    direction = np.array([row["merger_dir_x"], row["merger_dir_y"], row["merger_dir_z"]], dtype=np.float64)
    direction = direction / np.linalg.norm(direction)
    separation = float(row["merger_separation_r200m"]) * r200m
    post = bool(row.get("is_post_pericentre", True)) or not mock.observed_baryons
    lag = min(float(row["merger_gas_lag_fraction"]) * separation, MERGER_MAX_LAG_MPC) if post else 0.0
    mu = plasma_of(plasma).mean_molecular_weight
    gas_fraction = f_b
    if mock.observed_baryons:
        gas_fraction = f_b * float(neighbour_gas_depletion(np.log10(m_s * h), cosmology))
    return MockSecondary(
        m200m_msun=m_s, r200m_mpc=r_s, concentration=c_s,
        dm_centre_mpc=separation * direction, gas_centre_mpc=(separation - lag) * direction,
        truncation_mpc=(1.0 if mock.transition else mock.truncation_r200m) * r_s,
        virial_temperature_k=virial_temperature_k(m_s, r_s, mu), gas_mass_msun=gas_fraction * m_s,
        post_pericentre=post,
    )


def make_shock(row: dict, sec: MockSecondary | None) -> MockShock | None:
    """The merger shock ahead of the secondary ``sec`` (module docstring, ``Shocks``), or None
    without a secondary seen after pericentre."""
    if sec is None or not sec.post_pericentre:
        return None
    separation = float(np.linalg.norm(sec.dm_centre_mpc))
    return MockShock(
        mach=float(row["merger_mach"]), direction=sec.dm_centre_mpc / separation,
        front_mpc=separation + SHOCK_STANDOFF_R200M * sec.r200m_mpc,
        thickness_mpc=SHOCK_THICKNESS_R200M * sec.r200m_mpc, cap_radius_mpc=SHOCK_CAP_R200M * sec.r200m_mpc,
    )


def secondary_particles(
    sec: MockSecondary, cosmology: CosmologyConfig, mock: MockConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """DM and gas positions [Mpc] of the secondary (truncated NFW, spherical)."""
    m_dm, m_gas = particle_masses_msun(cosmology, mock)
    f_b = cosmology.omega_b / cosmology.omega_m
    r = np.concatenate([[0.0], np.geomspace(_X_MIN * sec.r200m_mpc, sec.truncation_mpc, _N_TABLE)])
    shape = nfw_mass_fraction(r / sec.r200m_mpc, sec.concentration)
    ones, eye = np.ones(3), np.eye(3)
    shape = shape / shape[-1]
    dm = _sample(r, (1.0 - f_b) * sec.m200m_msun * shape, m_dm, ones, eye, rng) + sec.dm_centre_mpc
    gas = _sample(r, sec.gas_mass_msun * shape, m_gas, ones, eye, rng) + sec.gas_centre_mpc
    return dm, gas


def _subhalo_psi(row: dict, psi_min: float, rng: np.random.Generator) -> np.ndarray:
    """``m / M200m`` of the resolved subhalos: a Poisson number over ``[psi_min, 1]``, masses by
    the inverse cumulative, those beyond a total of 0.5 M200m dropped."""
    psi = np.zeros(0)
    if psi_min < 1.0:
        ln_psi = np.linspace(np.log(psi_min), 0.0, 2048)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(ln_psi) * (
            subhalo_mass_function(np.exp(ln_psi[1:]), float(row["f_sub"]))
            + subhalo_mass_function(np.exp(ln_psi[:-1]), float(row["f_sub"]))))])
        n = int(rng.poisson(cum[-1]))
        psi = np.exp(np.interp(rng.random(n) * cum[-1], cum, ln_psi))
        psi = psi[np.cumsum(psi) <= SUBHALO_MAX_MASS_FRACTION]
    return psi


def make_subhalos(
    row: dict, axes: np.ndarray, rotation: np.ndarray, rng: np.random.Generator,
    cosmology: CosmologyConfig, mock: MockConfig,
) -> MockSubhalos:
    """The resolved subhalos of one halo (module docstring, ``Substructure``), stretched by
    ``axes`` and turned by ``rotation`` like the host DM."""
    from cmpipe.physics.cosmology import r200m_mpc

    h = cosmology.h
    m200m = float(row["m200m_msun_h"]) / h
    r200m, c_host = float(row["r200m_mpc"]), float(row["c200m"])
    m_pair = mock.pair_mass_msun_h / h
    psi = _subhalo_psi(row, SUBHALO_MIN_PARTICLES * m_pair / m200m, rng)
    n = psi.shape[0]
    # Einasto number density n(r) ~ exp(-(2/alpha) [(r/r_-2)^alpha - 1]) inside R200m.
    alpha, r_2 = SUBHALO_EINASTO
    r = np.linspace(0.0, r200m, 2048)
    rho = np.exp(-(2.0 / alpha) * ((r / (r_2 * r200m)) ** alpha - 1.0))
    enc = _cumulative(r, rho)
    radius = np.interp(rng.random(n) * enc[-1], enc, r)
    centre = (radius[:, None] * _isotropic(n, rng) * axes) @ rotation.T
    mass = psi * m200m
    r_iso = np.asarray(r200m_mpc(mass, cosmology), dtype=np.float64).reshape(n)
    conc = np.zeros(0)
    if n:
        log_m = np.log10(mass * h)
        lo = min(CONCENTRATION_TABLE_LOG10_M[0], float(np.floor(log_m.min())))
        hi = max(CONCENTRATION_TABLE_LOG10_M[1], float(np.ceil(log_m.max())))
        conc = 10.0 ** _log_concentration_table(cosmology, lo, hi)(log_m)
    # Jacobi radius r_t = d [m / (3 M_host(<d))]^(1/3), at most the isolated R200m.
    m_host = m200m * nfw_mass_fraction(np.maximum(radius, _X_MIN * r200m) / r200m, c_host)
    r_t = np.minimum(radius * np.cbrt(mass / (3.0 * m_host)), r_iso)
    r_t = np.maximum(r_t, _X_MIN * r200m)
    n_dm = np.rint(mass / m_pair).astype(np.int64)
    n_gas = np.rint(SUBHALO_GAS_RETAINED * mass / m_pair).astype(np.int64)
    return MockSubhalos(psi=psi, mass_msun=mass, concentration=conc, r200m_mpc=r_iso, truncation_mpc=r_t,
                        centre_mpc=centre, n_dm=n_dm, n_gas=n_gas)


def subhalo_particles(subs: MockSubhalos, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """DM and retained-gas positions [Mpc]: per subhalo, NFW radii (its concentration, scale
    radius R200m / c) inside its truncation radius, isotropic, around its centre."""
    dm, gas = [np.zeros((0, 3))], [np.zeros((0, 3))]
    for i in range(subs.psi.shape[0]):
        rt = subs.truncation_mpc[i]
        x = np.concatenate([[0.0], np.geomspace(_X_MIN * rt, rt, 512)])
        shape = nfw_mass_fraction(x / subs.r200m_mpc[i], subs.concentration[i])
        for n_part, out in ((subs.n_dm[i], dm), (subs.n_gas[i], gas)):
            radii = np.interp(rng.random(n_part) * shape[-1], shape, x)
            out.append(radii[:, None] * _isotropic(int(n_part), rng) + subs.centre_mpc[i])
    return np.concatenate(dm), np.concatenate(gas)


def make_gas_clumps(
    prof: MockProfiles, axes: np.ndarray, rotation: np.ndarray, rng: np.random.Generator,
    cosmology: CosmologyConfig, mock: MockConfig,
) -> MockGasClumps:
    """Resolved gas clumps of one halo (``gas_clumps``): particle counts log-uniform in
    [32, 1000] drawn until they hold ``gas_clump_fraction`` of the halo's gas between 0.3 and
    2 R200m; centres from that gas's radial distribution, isotropic, stretched like the gas;
    Plummer scale radius ``0.03 Mpc (m / 1e11 Msun)^(1/3)``."""
    _, m_gas = particle_masses_msun(cosmology, mock)
    lo, hi = (f * prof.r200m_mpc for f in GAS_CLUMP_RANGE_R200M)
    enc_lo, enc_hi = np.interp([lo, hi], prof.r_mpc, prof.gas_enclosed_msun)
    budget = mock.gas_clump_fraction * (enc_hi - enc_lo) / m_gas  # particles
    counts: list[int] = []
    log_lo, log_hi = np.log(GAS_CLUMP_MIN_PARTICLES), np.log(GAS_CLUMP_MAX_PARTICLES)
    while budget >= GAS_CLUMP_MIN_PARTICLES and sum(counts) < budget:
        counts.append(int(round(np.exp(log_lo + (log_hi - log_lo) * rng.random()))))
    n = np.array(counts, dtype=np.int64)
    radius = np.interp(enc_lo + (enc_hi - enc_lo) * rng.random(n.size), prof.gas_enclosed_msun, prof.r_mpc)
    centre = (radius[:, None] * _isotropic(n.size, rng) * axes) @ rotation.T
    scale = GAS_CLUMP_SCALE_MPC * np.cbrt(n * m_gas / 1e11)
    return MockGasClumps(n_gas=n, centre_mpc=centre, scale_mpc=scale)


def gas_clump_particles(clumps: MockGasClumps, rng: np.random.Generator) -> np.ndarray:
    """Gas positions [Mpc]: Plummer spheres truncated at 5 scale radii about each centre."""
    out = [np.zeros((0, 3))]
    u_max = 125.0 / 26.0**1.5  # M(<5a) / M of a Plummer sphere
    for n, centre, a in zip(clumps.n_gas.tolist(), clumps.centre_mpc, clumps.scale_mpc):
        u = rng.random(n) * u_max
        r = a / np.sqrt(u ** (-2.0 / 3.0) - 1.0)
        out.append(r[:, None] * _isotropic(n, rng) + centre)
    return np.concatenate(out)


def make_neighbours(
    m200m_msun: float, radius_mpc: float, cosmology: CosmologyConfig, plasma: PlasmaConfig, mock: MockConfig,
    rng: np.random.Generator,
) -> list[MockSecondary]:
    """The neighbour halos about a halo of M200m ``m200m_msun`` [Msun] (``neighbours``): masses
    and positions from :func:`cmpipe.physics.neighbours.draw_neighbours` in the background sphere
    of radius ``radius_mpc``, each a truncated NFW (its R200m) of ``(1 - f_b) M`` DM and
    ``f_gas,500 M`` isothermal gas."""
    from cmpipe.physics.neighbours import draw_neighbours

    lo, hi = neighbour_mass_range_log10_msun_h(mock)
    found = draw_neighbours(m200m_msun, cosmology, radius_mpc, lo, hi, rng)
    mu = plasma_of(plasma).mean_molecular_weight
    f_b = cosmology.omega_b / cosmology.omega_m
    depletion = neighbour_gas_depletion(found.log10_m200m_msun_h, cosmology) if found.n else np.zeros(0)
    t_vir = virial_temperatures_k(found.m200m_msun, found.r200m_mpc, mu)
    return [
        MockSecondary(
            m200m_msun=float(found.m200m_msun[i]), r200m_mpc=float(found.r200m_mpc[i]),
            concentration=float(found.c200m[i]), dm_centre_mpc=found.centre_mpc[i], gas_centre_mpc=found.centre_mpc[i],
            truncation_mpc=float(found.r200m_mpc[i]), virial_temperature_k=float(t_vir[i]),
            gas_mass_msun=float(f_b * depletion[i] * found.m200m_msun[i]), post_pericentre=False,
        )
        for i in range(found.n)
    ]


def virial_temperatures_k(m200m_msun: np.ndarray, r200m_mpc: np.ndarray, mean_molecular_weight: float) -> np.ndarray:
    """``T200m = mu m_p G M200m / (2 k_B R200m)`` [K] of many halos in one astropy expression:
    the same operations, in the same order, as the scalar
    :func:`cmpipe.physics.analytic.virial_temperature_k` (bitwise equal, ``tests/test_mock.py``),
    without its ~0.4 ms of unit handling per halo (hundreds of neighbours a halo)."""
    from astropy import constants as c
    from astropy import units as u

    m = np.asarray(m200m_msun, dtype=np.float64)
    r = np.asarray(r200m_mpc, dtype=np.float64)
    kt = mean_molecular_weight * c.m_p * c.G * (m * u.Msun) / (2.0 * r * u.Mpc)
    return np.asarray((kt / c.k_B).to_value(u.K), dtype=np.float64)


def companion_pressure_kev_cm3(
    gas_pos: np.ndarray, companions: list[MockSecondary], plasma: PlasmaConfig
) -> np.ndarray:
    """Thermal pressure [keV cm^-3] of the secondary's and the neighbours' isothermal gas at
    each gas position, ``rho_s(r) k_B T_s / (mu m_p)``, zero beyond each one's truncation radius.
    Only the particles within that radius are visited (:func:`cmpipe.physics.mock.balls.ball_members`,
    cKDTree's members; the neighbours are hundreds at m_pair = 1e9), so the sum equals the sum
    over every particle."""
    from cmpipe.physics.mock.balls import ball_members
    from cmpipe.physics.plasma import constants

    out = np.zeros(gas_pos.shape[0])
    if not companions:
        return out
    k = constants()
    _, _, to_g_cm3 = _units()
    mu = plasma_of(plasma).mean_molecular_weight
    members = ball_members(gas_pos, np.array([comp.gas_centre_mpc for comp in companions], dtype=np.float64),
                           np.array([comp.truncation_mpc for comp in companions], dtype=np.float64))
    for comp, idx in zip(companions, members):
        if idx.size == 0:
            continue
        rho_s = comp.gas_density_msun_mpc3(np.linalg.norm(gas_pos[idx] - comp.gas_centre_mpc, axis=1))
        out[idx] += rho_s * to_g_cm3 / (mu * k.proton_mass_g) * k.boltzmann_kev_per_k * comp.virial_temperature_k
    return out

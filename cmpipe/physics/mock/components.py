"""Particle components of the mock halos (:mod:`cmpipe.physics.mock`): the merger secondary and
its shock, subhalos, gas clumps, clumping, and the sampling geometry they share."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from cmpipe.physics.mock.profiles import _X_MIN

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
    order = np.argsort(host_r, kind="stable")
    rank = np.interp(np.sort(new_r), host_r[order], np.arange(n_host, dtype=np.float64))
    i = np.arange(n)
    k = np.clip(np.rint(isotonic_regression(rank - i).x), 0, n_host - n).astype(np.int64)
    keep[order[k + i]] = False
    return keep



"""Neighbouring and line-of-sight halos around a mock cluster, clustered about it.

A simulation's projection of a cluster holds, besides the cluster (the *host*, at the origin),
every other halo in the projected volume; near the host there are more of them than on average
because halos cluster. This module draws those *neighbours* for a mock: masses from the halo mass
function, positions from the host-neighbour correlation function, with halo exclusion.

Model
-----
The mean number of neighbours per unit ln M200m and per unit (physical) volume at distance
``r`` from a host of mass ``M_h`` is

    dN / (dlnM dV) = n(M) [1 + b(M) b(M_h) xi_lin(r)]_+     for r > r_ex(M),  else 0,

* ``n(M) = dn/dlnM``: the Tinker et al. (2008, ApJ 688, 709) mass function of M200m
  (:func:`cmpipe.physics.catalog.mass_function_dndlnm`, comoving (Mpc/h)^-3);
* ``b(M)``: the Tinker et al. (2010, ApJ 724, 878) linear halo bias of M200m (colossus
  ``haloBias(..., model='tinker10')``); the host's bias ``b(M_h)`` from the same fit;
* ``xi_lin``: the linear matter correlation function (colossus ``correlationFunction``, Eisenstein
  & Hu 1998 transfer function); the halo-halo correlation is the linear-bias model
  ``xi_hh(r) = b1 b2 xi_lin(r)`` (e.g. Cooray & Sheth 2002, Phys. Rep. 372, 1, section 4), and
  ``[x]_+ = max(x, 0)`` keeps the density non-negative;
* halo exclusion: no neighbour centre within ``r_ex(M) = R200m(M_h) + R200m(M)`` of the host
  (two halos' R200m spheres do not overlap; the simplest form of exclusion, cf. Tinker et al.
  2005, ApJ 631, 41).

Within a sphere of radius ``R`` about the host, the expected count is
``N = int dlnM n(M) int_{r_ex(M)}^{R} 4 pi r^2 [1 + b b_h xi]_+ dr``; the realisation draws a
Poisson count with that mean, then each neighbour's mass from the marginal distribution of
ln M and its distance from the conditional distribution of r given M (both by inverse CDF of
tabulated cumulative distributions), and an isotropic direction. The caller passes the radius of
the sphere circumscribing its projection box and keeps the neighbours inside the box; the
sphere is isotropic, so that selection is unbiased.

Units and conventions
---------------------
Positions and radii are *physical* Mpc relative to the host (no little h). Masses are Msun/h
where the name says ``_msun_h``, else Msun. The mass function is comoving: ``n`` in
(Mpc/h)^-3 comoving is ``n h^3 (1 + z)^3`` per physical Mpc^3; ``xi_lin`` takes comoving
separations, ``r_com = (1 + z) h r`` [Mpc/h]. The redshift is ``cosmo_cfg.redshift``.

Tables: the mass grid is every :data:`MASS_STEP_DEX` dex (n, b, R200m there; b interpolated
linearly between nodes); the radial integrals use :data:`N_RADIAL` geometric nodes from each
mass's exclusion radius to ``R`` (trapezoid rule); ``xi_lin`` is tabulated every 0.01 in ln r
(linear interpolation). The marginal CDF of ln M is the cumulative trapezoid on the mass grid
(linear in between: the sampled density is piecewise constant per 0.01 dex, relative errors of
the moments ~1e-4). The concentrations are the Diemer & Joyce (2019, ApJ 871, 168) median c200m
(:func:`cmpipe.physics.catalog.median_concentration`, splined every 0.05 dex), optionally times a
log-normal scatter.

Draw order from the generator passed in (fixed; deterministic for a given generator state)
--------------------------------------------------------------------------------------------
1. ``K = rng.poisson(expected count)``
2. ``rng.random(K)``: mass, inverse CDF of the marginal of ln M
3. ``rng.random(K)``: distance, inverse CDF of r given the drawn M
4. ``rng.random(K)``: direction, ``cos(theta) = 2 U - 1``
5. ``rng.random(K)``: direction, ``phi = 2 pi U``
6. ``rng.standard_normal(K)``: concentration scatter, always drawn (even with no scatter), so a
   scatter setting never changes the other columns or the generator's later state.

Mean-density bookkeeping
------------------------
A mock that also has a uniform background and a smooth two-halo term must not count these
halos twice: :func:`resolved_fractions` gives the fraction of the mean matter density in halos
of the drawn mass range (``int n M dlnM / rho_m``) and their share of the two-halo term
(``int n M b dlnM / rho_m``). Over all masses both would be 1 for a mass function normalised
to the mean density and a bias consistent with it (Tinker et al. 2010); the fits are not exactly
so (about 0.73 and 0.83 from 10^5 to 10^16.5 Msun/h at z = 0 in the demo cosmology).

The linear-bias model overestimates the clustering of the most massive neighbours within a few
Mpc of the host (non-linear and scale-dependent bias, Tinker et al. 2005), and the exclusion is a
hard sphere; both are simplifications of what a simulation's projection holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import CosmologyConfig

__all__ = [
    "Neighbours",
    "ResolvedFractions",
    "draw_neighbours",
    "expected_neighbour_count",
    "expected_neighbour_mass_msun",
    "host_bias",
    "resolved_fractions",
]

#: Step of the mass grid [dex] (n(M), b(M), R200m(M) and the marginal CDF of ln M).
MASS_STEP_DEX = 0.01
#: Step of the median-concentration spline [dex].
CONCENTRATION_STEP_DEX = 0.05
#: Radial nodes per mass, geometric from the exclusion radius to the sphere's radius.
N_RADIAL = 256
#: Range of the xi_lin table [comoving Mpc/h] (colossus' own table covers 1e-3 .. 500).
XI_R_MIN_MPC_H, XI_R_MAX_MPC_H = 1e-3, 500.0
#: Step of the xi_lin table in ln r.
XI_STEP_LN = 0.01


@dataclass(frozen=True)
class Neighbours:
    """Neighbouring halos of one host, in draw order.

    Attributes
    ----------
    log10_m200m_msun_h : (K,) float64
        log10 M200m [log10 Msun/h].
    m200m_msun : (K,) float64
        M200m [Msun] (no little h).
    r200m_mpc : (K,) float64
        R200m [physical Mpc].
    c200m : (K,) float64
        NFW concentration R200m / r_s [dimensionless].
    centre_mpc : (K, 3) float64
        Centres relative to the host [physical Mpc].
    """

    log10_m200m_msun_h: np.ndarray
    m200m_msun: np.ndarray
    r200m_mpc: np.ndarray
    c200m: np.ndarray
    centre_mpc: np.ndarray

    @property
    def n(self) -> int:
        """Number of neighbours K."""
        return int(self.m200m_msun.size)


@dataclass(frozen=True)
class ResolvedFractions:
    """Shares of the mean matter density held by halos of a mass range (comoving, any z).

    Attributes
    ----------
    collapsed : float
        ``int n(M) M dlnM / rho_m``: fraction of the mean matter density in those halos.
    bias_weighted : float
        ``int n(M) M b(M) dlnM / rho_m``: their share of the linear two-halo term.
    weighted_collapsed, weighted_bias_weighted : float
        The same with a per-mass weight ``w(M)`` in the integrands (e.g. a gas depletion);
        equal to the unweighted ones when no weight is given.
    """

    collapsed: float
    bias_weighted: float
    weighted_collapsed: float
    weighted_bias_weighted: float


# --------------------------------------------------------------------------------------------
# Cached tables
# --------------------------------------------------------------------------------------------


def _check_mass_range(lo: float, hi: float) -> None:
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"need log10_m_min_msun_h < log10_m_max_msun_h, got {lo} and {hi}")


@lru_cache(maxsize=16)
def _mass_table(cosmo_cfg: CosmologyConfig, lo: float, hi: float) -> tuple[np.ndarray, ...]:
    """Mass grid and what lives on it, read-only.

    Returns
    -------
    log10_m : (M,) log10 M200m [log10 Msun/h], every <= :data:`MASS_STEP_DEX` dex
    dndlnm_com : (M,) Tinker et al. (2008) dn/dlnM [comoving (Mpc/h)^-3]
    bias : (M,) Tinker et al. (2010) b(M) [dimensionless]
    r200m : (M,) R200m [physical Mpc]
    """
    from colossus.lss import bias as colossus_bias

    from cmpipe.physics.catalog import mass_function_dndlnm
    from cmpipe.physics.cosmology import colossus_cosmology, r200m_mpc

    _check_mass_range(lo, hi)
    n = max(int(math.ceil((hi - lo) / MASS_STEP_DEX - 1e-9)), 2) + 1
    log10_m = np.linspace(lo, hi, n)
    dndlnm = mass_function_dndlnm(log10_m, cosmo_cfg)
    colossus_cosmology(cosmo_cfg)  # haloBias uses colossus' current cosmology
    b = np.asarray(colossus_bias.haloBias(10.0**log10_m, cosmo_cfg.redshift, "200m", model="tinker10"),
                   dtype=np.float64)
    r200m = np.asarray(r200m_mpc(10.0**log10_m / cosmo_cfg.h, cosmo_cfg), dtype=np.float64)
    out = (log10_m, dndlnm, b, r200m)
    for a in out:
        a.setflags(write=False)
    return out


@lru_cache(maxsize=8)
def _xi_table(cosmo_cfg: CosmologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(ln r_com, xi_lin)``: the linear matter correlation function at ``cosmo_cfg.redshift``
    on comoving separations [Mpc/h] every :data:`XI_STEP_LN` in ln r (colossus)."""
    from cmpipe.physics.cosmology import colossus_cosmology

    cosmo = colossus_cosmology(cosmo_cfg)
    ln_r = np.linspace(math.log(XI_R_MIN_MPC_H), math.log(XI_R_MAX_MPC_H),
                       int(math.ceil(math.log(XI_R_MAX_MPC_H / XI_R_MIN_MPC_H) / XI_STEP_LN)) + 1)
    # Clip the end nodes into colossus' table (exp(log(x)) can overshoot by an ulp).
    r = np.clip(np.exp(ln_r), XI_R_MIN_MPC_H, XI_R_MAX_MPC_H)
    xi = np.asarray(cosmo.correlationFunction(r, cosmo_cfg.redshift), dtype=np.float64)
    ln_r.setflags(write=False)
    xi.setflags(write=False)
    return ln_r, xi


def _xi_physical(r_mpc: np.ndarray, cosmo_cfg: CosmologyConfig) -> np.ndarray:
    """xi_lin at physical separations ``r_mpc`` [Mpc] (comoving ``(1 + z) h r`` [Mpc/h])."""
    ln_r, xi = _xi_table(cosmo_cfg)
    r_com = np.asarray(r_mpc, dtype=np.float64) * (1.0 + cosmo_cfg.redshift) * cosmo_cfg.h
    if r_com.size and (r_com.min() < XI_R_MIN_MPC_H or r_com.max() > XI_R_MAX_MPC_H):
        raise ValueError(f"separations must lie in [{XI_R_MIN_MPC_H}, {XI_R_MAX_MPC_H}] comoving Mpc/h")
    return np.interp(np.log(r_com), ln_r, xi)


@lru_cache(maxsize=16)
def _log_concentration_spline(cosmo_cfg: CosmologyConfig, lo: float, hi: float):
    """Cubic spline of log10 of the Diemer & Joyce (2019) median c200m against log10 M200m
    [Msun/h] on ``[lo, hi]``, from colossus every <= :data:`CONCENTRATION_STEP_DEX` dex."""
    from scipy.interpolate import CubicSpline

    from cmpipe.physics.catalog import median_concentration

    n = max(int(math.ceil((hi - lo) / CONCENTRATION_STEP_DEX - 1e-9)), 3) + 1
    grid = np.linspace(lo, hi, n)
    return CubicSpline(grid, np.log10(median_concentration(grid, cosmo_cfg)))


def host_bias(m200m_host_msun: float, cosmo_cfg: CosmologyConfig) -> float:
    """Tinker et al. (2010) linear bias of a host of M200m ``m200m_host_msun`` [Msun]."""
    from colossus.lss import bias as colossus_bias

    from cmpipe.physics.cosmology import colossus_cosmology

    colossus_cosmology(cosmo_cfg)
    m_h = float(m200m_host_msun) * cosmo_cfg.h
    return float(colossus_bias.haloBias(m_h, cosmo_cfg.redshift, "200m", model="tinker10"))


def _radial_rows(
    r_ex_mpc: np.ndarray, bias: np.ndarray, b_host: float, radius_mpc: float, cosmo_cfg: CosmologyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Radial nodes and cumulative volume integrals, one row per neighbour mass.

    Row ``i`` has :data:`N_RADIAL` geometric nodes ``r`` from ``min(r_ex[i], R)`` to ``R``
    [Mpc] and ``cum[i, j] = int_{r_ex}^{r_ij} 4 pi r^2 [1 + b_i b_host xi_lin(r)]_+ dr``
    [physical Mpc^3] (trapezoid in ln r); ``cum[i, -1]`` is the row's total (0 when
    ``r_ex >= R``).
    """
    r_ex = np.minimum(np.asarray(r_ex_mpc, dtype=np.float64), radius_mpc)
    t = np.linspace(0.0, 1.0, N_RADIAL)
    ln_lo = np.log(r_ex)[:, None]
    ln_r = ln_lo + (math.log(radius_mpc) - ln_lo) * t[None, :]
    r = np.exp(ln_r)
    r[:, -1] = radius_mpc
    bracket = np.maximum(1.0 + np.asarray(bias)[:, None] * b_host * _xi_physical(r, cosmo_cfg), 0.0)
    f = 4.0 * np.pi * r**3 * bracket  # integrand per unit ln r
    steps = 0.5 * (f[:, 1:] + f[:, :-1]) * np.diff(ln_r, axis=1)
    cum = np.concatenate([np.zeros((r.shape[0], 1)), np.cumsum(steps, axis=1)], axis=1)
    return r, cum


@dataclass(frozen=True)
class _Table:
    """Per-host table: the marginal of ln M and what the conditional of r needs."""

    log10_m: np.ndarray  # (M,) [log10 Msun/h]
    bias: np.ndarray  # (M,) neighbours' b(M)
    b_host: float
    count_per_lnm: np.ndarray  # (M,) dN/dlnM in the sphere [dimensionless]
    cdf: np.ndarray  # (M,) marginal CDF of ln M, 0 .. 1 (zeros if count is 0)
    count: float  # expected count
    mass_msun: float  # expected total M200m [Msun]


@lru_cache(maxsize=32)
def _table(
    m200m_host_msun: float, cosmo_cfg: CosmologyConfig, radius_mpc: float, lo: float, hi: float,
    b_host: float | None,
) -> _Table:
    from cmpipe.physics.cosmology import r200m_mpc

    if not (m200m_host_msun > 0.0 and math.isfinite(m200m_host_msun)):
        raise ValueError(f"m200m_host_msun must be positive and finite, got {m200m_host_msun}")
    if not (radius_mpc > 0.0 and math.isfinite(radius_mpc)):
        raise ValueError(f"radius_mpc must be positive and finite, got {radius_mpc}")
    log10_m, dndlnm_com, bias, r200m = _mass_table(cosmo_cfg, lo, hi)
    if b_host is None:
        b_host = host_bias(m200m_host_msun, cosmo_cfg)
    h, z = cosmo_cfg.h, cosmo_cfg.redshift
    n_phys = dndlnm_com * h**3 * (1.0 + z) ** 3  # per physical Mpc^3
    r_ex = float(r200m_mpc(m200m_host_msun, cosmo_cfg)) + r200m
    _, cum = _radial_rows(r_ex, bias, b_host, radius_mpc, cosmo_cfg)
    per_lnm = n_phys * cum[:, -1]
    d_lnm = np.diff(log10_m) * math.log(10.0)
    steps = 0.5 * (per_lnm[1:] + per_lnm[:-1]) * d_lnm
    cdf = np.concatenate([[0.0], np.cumsum(steps)])
    count = float(cdf[-1])
    m_msun = 10.0**log10_m / h
    mass = float(np.sum(0.5 * (per_lnm[1:] * m_msun[1:] + per_lnm[:-1] * m_msun[:-1]) * d_lnm))
    if count > 0.0:
        cdf = cdf / count
        cdf[-1] = 1.0
    for a in (per_lnm, cdf):
        a.setflags(write=False)
    return _Table(log10_m=log10_m, bias=bias, b_host=float(b_host), count_per_lnm=per_lnm, cdf=cdf,
                  count=count, mass_msun=mass)


def _get_table(
    m200m_host_msun: float, cosmo_cfg: CosmologyConfig, radius_mpc: float, lo: float, hi: float,
    b_host: float | None,
) -> _Table:
    _check_mass_range(float(lo), float(hi))
    return _table(float(m200m_host_msun), cosmo_cfg, float(radius_mpc), float(lo), float(hi),
                  None if b_host is None else float(b_host))


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def expected_neighbour_count(
    m200m_host_msun: float,
    cosmo_cfg: CosmologyConfig,
    radius_mpc: float,
    log10_m_min_msun_h: float,
    log10_m_max_msun_h: float,
    host_bias_override: float | None = None,
) -> float:
    """Mean number of neighbours of a host within a sphere, halo exclusion applied.

    ``N = int dlnM n(M) int_{r_ex(M)}^{R} 4 pi r^2 [1 + b(M) b_host xi_lin(r)]_+ dr`` (module
    docstring), in physical volume.

    Parameters
    ----------
    m200m_host_msun : float
        Host M200m [Msun] (no little h).
    cosmo_cfg : CosmologyConfig
    radius_mpc : float
        Radius R of the sphere about the host [physical Mpc].
    log10_m_min_msun_h, log10_m_max_msun_h : float
        Neighbours' log10 M200m range [log10 Msun/h].
    host_bias_override : float or None
        The host's bias b_host; None (default) for the Tinker et al. (2010) bias of its mass,
        0 for unclustered neighbours (the mean density, with exclusion).

    Returns
    -------
    float
        Expected count [dimensionless].
    """
    return _get_table(m200m_host_msun, cosmo_cfg, radius_mpc, log10_m_min_msun_h, log10_m_max_msun_h,
                      host_bias_override).count


def expected_neighbour_mass_msun(
    m200m_host_msun: float,
    cosmo_cfg: CosmologyConfig,
    radius_mpc: float,
    log10_m_min_msun_h: float,
    log10_m_max_msun_h: float,
    host_bias_override: float | None = None,
) -> float:
    """Mean total M200m of the neighbours within the sphere [Msun] (no little h).

    ``int dlnM n(M) M int_{r_ex(M)}^{R} 4 pi r^2 [1 + b b_host xi_lin]_+ dr``; parameters as
    :func:`expected_neighbour_count`.
    """
    return _get_table(m200m_host_msun, cosmo_cfg, radius_mpc, log10_m_min_msun_h, log10_m_max_msun_h,
                      host_bias_override).mass_msun


def draw_neighbours(
    m200m_host_msun: float,
    cosmo_cfg: CosmologyConfig,
    radius_mpc: float,
    log10_m_min_msun_h: float,
    log10_m_max_msun_h: float,
    rng: np.random.Generator,
    concentration_scatter_dex: float = 0.0,
    host_bias_override: float | None = None,
) -> Neighbours:
    """Draw the neighbouring halos of a host within a sphere about it (module docstring).

    Parameters
    ----------
    m200m_host_msun : float
        Host M200m [Msun] (no little h).
    cosmo_cfg : CosmologyConfig
    radius_mpc : float
        Radius R of the sphere about the host [physical Mpc], e.g. the radius of the sphere
        circumscribing the projection box.
    log10_m_min_msun_h, log10_m_max_msun_h : float
        Neighbours' log10 M200m range [log10 Msun/h].
    rng : numpy.random.Generator
        The only source of randomness, drawn in the fixed order of the module docstring.
    concentration_scatter_dex : float
        Log-normal scatter of c200m about the median [dex] (e.g. 0.16); 0 for the median.
    host_bias_override : float or None
        As in :func:`expected_neighbour_count`.

    Returns
    -------
    Neighbours
        K neighbours, K Poisson with mean :func:`expected_neighbour_count`, in draw order.
    """
    from cmpipe.physics.cosmology import r200m_mpc

    if concentration_scatter_dex < 0.0:
        raise ValueError(f"concentration_scatter_dex must be >= 0, got {concentration_scatter_dex}")
    lo, hi = float(log10_m_min_msun_h), float(log10_m_max_msun_h)
    table = _get_table(m200m_host_msun, cosmo_cfg, radius_mpc, lo, hi, host_bias_override)
    h = cosmo_cfg.h

    k = int(rng.poisson(table.count))
    u_mass = rng.random(k)
    u_radius = rng.random(k)
    u_cos = rng.random(k)
    u_phi = rng.random(k)
    g_conc = rng.standard_normal(k)

    # Mass: inverse of the (piecewise-linear) marginal CDF of ln M. Where the CDF is flat
    # (no weight), np.interp returns the left end of the flat part, never a zero-weight mass
    # with weight on both sides.
    log10_m = np.clip(np.interp(u_mass, table.cdf, table.log10_m), lo, hi)
    m_msun = 10.0**log10_m / h
    r200m = np.asarray(r200m_mpc(m_msun, cosmo_cfg), dtype=np.float64).reshape(k)

    # Distance: inverse of the conditional CDF of r given the drawn mass (its own row).
    centre = np.zeros((k, 3))
    if k:
        b = np.interp(log10_m, table.log10_m, table.bias)
        r_ex = float(r200m_mpc(m200m_host_msun, cosmo_cfg)) + r200m
        r_rows, cum = _radial_rows(r_ex, b, table.b_host, float(radius_mpc), cosmo_cfg)
        target = u_radius * cum[:, -1]
        r = np.array([np.interp(t, c, rr) for t, c, rr in zip(target, cum, r_rows, strict=True)])
        cos_t = 2.0 * u_cos - 1.0
        sin_t = np.sqrt(np.maximum(1.0 - cos_t**2, 0.0))
        phi = 2.0 * np.pi * u_phi
        centre = r[:, None] * np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)

    c200m = 10.0 ** (_log_concentration_spline(cosmo_cfg, lo, hi)(log10_m) + concentration_scatter_dex * g_conc)
    return Neighbours(
        log10_m200m_msun_h=log10_m, m200m_msun=m_msun, r200m_mpc=r200m,
        c200m=np.asarray(c200m, dtype=np.float64).reshape(k), centre_mpc=centre,
    )


def resolved_fractions(
    log10_m_min_msun_h: float,
    log10_m_max_msun_h: float,
    cosmo_cfg: CosmologyConfig,
    weight: Callable[[np.ndarray], np.ndarray] | None = None,
) -> ResolvedFractions:
    """Shares of the mean matter density (and of the two-halo term) in halos of a mass range.

    ``collapsed = int n(M) M dlnM / rho_m`` and ``bias_weighted = int n(M) M b(M) dlnM /
    rho_m`` over log10 M200m in the range, with ``n`` the Tinker et al. (2008) dn/dlnM
    [comoving (Mpc/h)^-3], ``M`` [Msun/h], ``b`` the Tinker et al. (2010) bias and ``rho_m``
    the comoving mean matter density [(Msun/h) (Mpc/h)^-3] (colossus ``rho_m(0)``, in Msun h^2
    kpc^-3, times 1e9). Trapezoid in ln M every <= :data:`MASS_STEP_DEX` dex. A caller with a
    uniform background and a smooth two-halo term scales them by ``1 - collapsed`` and
    ``1 - bias_weighted`` to avoid counting these halos twice.

    Parameters
    ----------
    log10_m_min_msun_h, log10_m_max_msun_h : float
        log10 M200m range [log10 Msun/h].
    cosmo_cfg : CosmologyConfig
    weight : callable or None
        ``weight(log10_m_msun_h) -> array`` of the same shape, a per-mass factor in the
        integrands of the ``weighted_*`` fields (e.g. the halos' gas fraction over the cosmic
        one); None for 1.

    Returns
    -------
    ResolvedFractions
    """
    from cmpipe.physics.cosmology import colossus_cosmology

    lo, hi = float(log10_m_min_msun_h), float(log10_m_max_msun_h)
    _check_mass_range(lo, hi)
    log10_m, dndlnm_com, bias, _ = _mass_table(cosmo_cfg, lo, hi)
    rho_m_com = float(colossus_cosmology(cosmo_cfg).rho_m(0.0)) * 1e9  # (Msun/h) / (Mpc/h)^3
    ln_m = log10_m * math.log(10.0)
    f = dndlnm_com * 10.0**log10_m / rho_m_com
    w = np.ones_like(f) if weight is None else np.broadcast_to(np.asarray(weight(log10_m), dtype=np.float64), f.shape)
    return ResolvedFractions(
        collapsed=float(np.trapezoid(f, ln_m)),
        bias_weighted=float(np.trapezoid(f * bias, ln_m)),
        weighted_collapsed=float(np.trapezoid(f * w, ln_m)),
        weighted_bias_weighted=float(np.trapezoid(f * bias * w, ln_m)),
    )

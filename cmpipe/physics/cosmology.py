"""Cosmology through colossus: the background densities and halo radii cmpipe needs.

colossus caches tabulated quantities under ``~/.colossus`` unless told otherwise; cmpipe always
builds its cosmology with ``persistence=""`` so nothing is written outside the run's own folder.
All densities are *physical* at the configured redshift, in Msun Mpc^-3 (no little h).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from colossus.cosmology.cosmology import Cosmology

    from cmpipe.config import CosmologyConfig

__all__ = ["ARCMIN_RAD", "MeanDensities", "angular_diameter_distance_mpc", "colossus_cosmology", "mean_densities",
           "pixel_arcmin", "r200m_mpc", "r500c_from_m200m", "rho_crit_msun_mpc3", "sigma_crit_msun_mpc2"]

#: colossus gives densities in Msun h^2 kpc^-3: times 1e9 h^2 for Msun Mpc^-3.
_KPC3_TO_MPC3 = 1e9
#: arcmin in radians.
ARCMIN_RAD = math.pi / (180.0 * 60.0)


@lru_cache(maxsize=8)
def _cosmology(omega_m: float, omega_b: float, h: float, sigma8: float, ns: float) -> Cosmology:
    from colossus.cosmology import cosmology

    params = {"flat": True, "H0": 100.0 * h, "Om0": omega_m, "Ob0": omega_b, "sigma8": sigma8, "ns": ns}
    name = f"cmpipe_{omega_m}_{omega_b}_{h}_{sigma8}_{ns}"
    return cosmology.setCosmology(name, params=params, persistence="")


def colossus_cosmology(cfg: CosmologyConfig) -> Cosmology:
    """The colossus ``Cosmology`` of ``cfg`` (flat LCDM), also made colossus' current one.

    Built once per parameter set, with persistence off (nothing written to ``~/.colossus``).
    """
    from colossus.cosmology import cosmology

    cosmo = _cosmology(cfg.omega_m, cfg.omega_b, cfg.h, cfg.sigma8, cfg.ns)
    cosmology.setCurrent(cosmo)
    return cosmo


@dataclass(frozen=True)
class MeanDensities:
    """Cosmic mean densities at one redshift [physical Msun Mpc^-3]."""

    matter: float
    baryon: float

    @property
    def dark_matter(self) -> float:
        """Mean dark-matter density ``rho_m - rho_b`` [Msun Mpc^-3]."""
        return self.matter - self.baryon


def mean_densities(cfg: CosmologyConfig) -> MeanDensities:
    """Mean matter and baryon densities at ``cfg.redshift`` [physical Msun Mpc^-3]."""
    cosmo = colossus_cosmology(cfg)
    scale = _KPC3_TO_MPC3 * cfg.h**2
    return MeanDensities(
        matter=float(cosmo.rho_m(cfg.redshift)) * scale,
        baryon=float(cosmo.rho_b(cfg.redshift)) * scale,
    )


def r200m_mpc(m200m_msun: float | np.ndarray, cfg: CosmologyConfig) -> np.ndarray:
    """R200m [physical Mpc] of halos of mass M200m [Msun]: ``M = 200 rho_m (4 pi / 3) R^3``."""
    rho_m = mean_densities(cfg).matter
    return np.cbrt(3.0 * np.asarray(m200m_msun, dtype=np.float64) / (4.0 * np.pi * 200.0 * rho_m))


def rho_crit_msun_mpc3(cfg: CosmologyConfig) -> float:
    """Critical density at ``cfg.redshift`` [physical Msun Mpc^-3]."""
    cosmo = colossus_cosmology(cfg)
    return float(cosmo.rho_c(cfg.redshift)) * _KPC3_TO_MPC3 * cfg.h**2


def r500c_from_m200m(
    m200m_msun: float | np.ndarray, c200m: float | np.ndarray, cfg: CosmologyConfig
) -> tuple[np.ndarray, np.ndarray]:
    """R500c and M500c of NFW halos given M200m and the concentration c200m = R200m / r_s.

    Solves ``M_NFW(< R) = 500 rho_c (4 pi / 3) R^3`` with ``M_NFW(< R) = M200m mu(R / r_s) /
    mu(c200m)``, ``mu(x) = ln(1 + x) - x / (1 + x)`` (bisection in ``ln R``, 60 steps:
    relative precision ~1e-15), at ``cfg.redshift``.

    Parameters
    ----------
    m200m_msun : float or array
        M200m [Msun] (not Msun/h).
    c200m : float or array
        NFW concentration (broadcast against ``m200m_msun``).
    cfg : CosmologyConfig

    Returns
    -------
    r500c_mpc : ndarray
        [physical Mpc].
    m500c_msun : ndarray
        [Msun].
    """
    m200m, c = np.broadcast_arrays(np.asarray(m200m_msun, dtype=np.float64), np.asarray(c200m, dtype=np.float64))
    r200m = r200m_mpc(m200m, cfg)
    rs = r200m / c

    def mu(x):
        return np.log1p(x) - x / (1.0 + x)

    target = 500.0 * rho_crit_msun_mpc3(cfg) * 4.0 * np.pi / 3.0
    norm = m200m / mu(c)
    lo, hi = np.log(r200m * 1e-3), np.log(r200m)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        r = np.exp(mid)
        above = norm * mu(r / rs) > target * r**3  # mean density above 500 rho_c: R500c is further out
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    r500 = np.exp(0.5 * (lo + hi))
    return r500, norm * mu(r500 / rs)


def angular_diameter_distance_mpc(redshift: float, cfg: CosmologyConfig) -> float:
    """D_A at ``redshift`` [physical Mpc] (colossus; its distances are in Mpc/h).

    Raises
    ------
    ValueError
        At ``redshift <= 0``: ``D_A(0) = 0``, there is no finite angular scale (callers that can
        do without one, like the FITS header's ``ARCMINPX``, check first).
    """
    if redshift <= 0:
        raise ValueError(f"instrument.redshift must be > 0 for angular scales; got {redshift}")
    return float(colossus_cosmology(cfg).angularDiameterDistance(redshift)) / cfg.h


def pixel_arcmin(pixel_mpc: float, redshift: float, cfg: CosmologyConfig) -> float:
    """Angular side of a pixel of ``pixel_mpc`` [physical Mpc] at ``redshift`` [arcmin],
    ``pixel_mpc / D_A`` (ValueError at ``redshift <= 0``: :func:`angular_diameter_distance_mpc`)."""
    return pixel_mpc / angular_diameter_distance_mpc(redshift, cfg) / ARCMIN_RAD


def sigma_crit_msun_mpc2(z_lens: float, z_source: float, cfg: CosmologyConfig) -> float:
    """Critical surface density of lensing ``c^2 / (4 pi G) D_s / (D_l D_ls)`` [physical Msun Mpc^-2].

    Physical angular-diameter distances of the flat cosmology of ``cfg`` (colossus, radiation
    included as colossus does): ``D = D_M / (1 + z)`` and ``D_ls = (D_M(z_s) - D_M(z_l)) /
    (1 + z_s)``, ``D_M`` the comoving distance; ``c`` and ``G`` from ``astropy.constants``.

    Parameters
    ----------
    z_lens, z_source : float
        Lens and source redshifts, ``0 < z_lens < z_source``.
    cfg : CosmologyConfig
    """
    if not 0.0 < z_lens < z_source:
        raise ValueError(f"sigma_crit needs 0 < z_lens < z_source; got z_lens={z_lens}, z_source={z_source}")
    return _sigma_crit(float(z_lens), float(z_source), cfg.omega_m, cfg.omega_b, cfg.h, cfg.sigma8, cfg.ns)


@lru_cache(maxsize=32)
def _sigma_crit(z_l: float, z_s: float, omega_m: float, omega_b: float, h: float, sigma8: float, ns: float) -> float:
    from astropy import constants as const
    from astropy import units as u

    cosmo = _cosmology(omega_m, omega_b, h, sigma8, ns)
    dm_l = float(cosmo.comovingDistance(z_min=0.0, z_max=z_l, transverse=True)) / h  # Mpc
    dm_s = float(cosmo.comovingDistance(z_min=0.0, z_max=z_s, transverse=True)) / h
    d_l, d_s, d_ls = dm_l / (1.0 + z_l), dm_s / (1.0 + z_s), (dm_s - dm_l) / (1.0 + z_s)
    factor = float((const.c**2 / (4.0 * np.pi * const.G)).to_value(u.Msun / u.Mpc))
    return factor * d_s / (d_l * d_ls)

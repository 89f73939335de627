"""Analytic halos: particle realisations of spherical profiles with known projections.

Not the mock cluster generator (that one adds triaxiality, substructure, mergers, clumping and a
pressure profile): these halos exist so that every stage can be checked against an analytic
answer, and so the demo runs before any simulation data is at hand.

Each halo of mass M200m is a spherical NFW profile truncated at R200m with concentration ``c``,
realised by equal numbers of dark-matter and gas particles (masses ``(1 - f_b) m_pair`` and
``f_b m_pair``, never a fixed count per halo): the dark matter holds ``(1 - f_b) M200m``, the gas
``f_b M200m`` with the same profile, isothermal at the virial temperature
``k T200m = mu m_p G M200m / (2 R200m)``. Radii come from the inverse of the enclosed-mass
function, directions are isotropic; every halo has its own seed derived from the source seed and
its id, so any one halo regenerates alone, identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cmpipe.physics.halo import DarkMatterParticles, GasParticles, Halo, HaloProperties

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import CosmologyConfig, PlasmaConfig, SourceConfig

__all__ = ["AnalyticHaloSource", "nfw_enclosed_fraction", "sample_nfw_radii", "virial_temperature_k"]


def nfw_enclosed_fraction(x: np.ndarray, concentration: float) -> np.ndarray:
    """Fraction of a truncated NFW halo's mass inside ``x = r / R200m`` (1 beyond ``x = 1``)."""
    def m(y: np.ndarray) -> np.ndarray:
        return np.log1p(y) - y / (1.0 + y)

    xc = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0) * concentration
    return m(xc) / m(np.asarray(concentration, dtype=np.float64))


def sample_nfw_radii(n: int, concentration: float, r200m_mpc: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` radii [Mpc] drawn from an NFW profile truncated at R200m (inverse CDF, tabulated)."""
    grid = np.concatenate([[0.0], np.geomspace(1e-6, 1.0, 4096)])
    cdf = nfw_enclosed_fraction(grid, concentration)
    return np.interp(rng.random(n), cdf, grid) * r200m_mpc


def _isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def virial_temperature_k(m200m_msun: float, r200m_mpc: float, mean_molecular_weight: float) -> float:
    """``T200m = mu m_p G M200m / (2 k_B R200m)`` [K]."""
    from astropy import constants as c
    from astropy import units as u

    kt = mean_molecular_weight * c.m_p * c.G * (m200m_msun * u.Msun) / (2.0 * r200m_mpc * u.Mpc)
    return float((kt / c.k_B).to_value(u.K))


@dataclass(frozen=True)
class AnalyticHaloSource:
    """Spherical NFW halos with isothermal gas; implements :class:`~cmpipe.physics.halo.HaloSource`.

    Attributes
    ----------
    log10_m200m_msun_h : tuple of float
        log10 M200m [Msun/h] of halo 0, 1, ...
    pair_mass_msun_h : float
        Mass of one DM plus one gas particle [Msun/h].
    omega_m, omega_b, h : float
        Cosmology (baryon fraction f_b = omega_b / omega_m; h converts Msun/h to Msun).
    r200m_mpc : tuple of float
        R200m of each halo [physical Mpc] (from :func:`cmpipe.physics.cosmology.r200m_mpc`).
    seed : int
        Source seed; halo ``i`` uses ``SeedSequence([seed, i])``.
    concentration : float
        NFW concentration ``R200m / r_s``.
    mean_molecular_weight : float
        ``mu`` of the gas (0.588 for X = 0.76).
    redshift : float
        Redshift recorded on the halos.
    """

    log10_m200m_msun_h: tuple[float, ...]
    pair_mass_msun_h: float
    omega_m: float
    omega_b: float
    h: float
    r200m_mpc: tuple[float, ...]
    seed: int = 0
    concentration: float = 5.0
    mean_molecular_weight: float = 0.588
    redshift: float = 0.0

    @classmethod
    def from_sections(
        cls, source: SourceConfig, cosmology: CosmologyConfig, plasma: PlasmaConfig
    ) -> AnalyticHaloSource:
        """The analytic source described by the ``source``, ``cosmology`` and ``plasma`` sections
        (:func:`cmpipe.stages.source.analytic_source` passes a config's)."""
        from cmpipe.physics.cosmology import r200m_mpc
        from cmpipe.physics.plasma import Plasma

        masses = tuple(float(m) for m in source.analytic_log10_m200m_msun_h)
        m_msun = 10.0 ** np.asarray(masses) / cosmology.h
        return cls(
            log10_m200m_msun_h=masses,
            pair_mass_msun_h=source.analytic_pair_mass_msun_h,
            omega_m=cosmology.omega_m,
            omega_b=cosmology.omega_b,
            h=cosmology.h,
            r200m_mpc=tuple(float(r) for r in np.atleast_1d(r200m_mpc(m_msun, cosmology))),
            seed=source.seed,
            mean_molecular_weight=Plasma(plasma.hydrogen_mass_fraction).mean_molecular_weight,
            redshift=cosmology.redshift,
        )

    def __post_init__(self) -> None:
        if len(self.r200m_mpc) != len(self.log10_m200m_msun_h):
            raise ValueError("AnalyticHaloSource needs one R200m per mass")

    def halo_ids(self) -> Sequence[int]:
        """Ids 0 .. n-1, one per configured mass."""
        return tuple(range(len(self.log10_m200m_msun_h)))

    def _check(self, halo_id: int) -> int:
        if halo_id not in self.halo_ids():
            raise KeyError(f"halo {halo_id} is not in the analytic source (ids 0..{len(self.log10_m200m_msun_h) - 1})")
        return int(halo_id)

    def properties(self, halo_id: int) -> HaloProperties:
        """Mass, radius and redshift of one halo (no particles made)."""
        i = self._check(halo_id)
        return HaloProperties(
            halo_id=i,
            m200m_msun=float(10.0 ** self.log10_m200m_msun_h[i] / self.h),
            r200m_mpc=self.r200m_mpc[i],
            redshift=self.redshift,
        )

    def load(self, halo_id: int) -> Halo:
        """Particles of one halo, deterministic for a given (seed, id)."""
        props = self.properties(halo_id)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, props.halo_id]))
        f_b = self.omega_b / self.omega_m
        m_pair_msun = self.pair_mass_msun_h / self.h
        n = max(2, int(round(props.m200m_msun / m_pair_msun)))
        m_dm = (1.0 - f_b) * m_pair_msun
        m_gas = f_b * m_pair_msun
        dm_pos = sample_nfw_radii(n, self.concentration, props.r200m_mpc, rng)[:, None] * _isotropic(n, rng)
        gas_pos = sample_nfw_radii(n, self.concentration, props.r200m_mpc, rng)[:, None] * _isotropic(n, rng)
        t200 = virial_temperature_k(props.m200m_msun, props.r200m_mpc, self.mean_molecular_weight)
        halo = Halo(
            props=props,
            gas=GasParticles(pos_mpc=gas_pos, mass_msun=np.full(n, m_gas), temperature_k=np.full(n, t200)),
            dm=DarkMatterParticles(pos_mpc=dm_pos, mass_msun=np.full(n, m_dm)),
        )
        return halo.validate(source="analytic source")

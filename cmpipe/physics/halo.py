"""One interface for a halo's particles, whatever made them.

Every data source (the HDF5 reader for real simulation halos, the mock cluster generator)
hands the rest of cmpipe the same frozen objects, in one internal unit system:

========================  =====================================================
quantity                  unit
========================  =====================================================
length, position          physical Mpc (no little h), relative to the halo centre
mass                      Msun (no little h)
density                   Msun Mpc^-3 (physical)
temperature               K
smoothing length ``H``    Mpc, the kernel's *compact support radius* (W = 0 at r >= H)
========================  =====================================================

Halo masses are also given in Msun/h where the field quotes them (catalog bounds), always
with ``_msun_h`` in the name. Conversions from a file's own units and smoothing-length
convention happen once, at the reader (:mod:`cmpipe.physics.hdf5io`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "DarkMatterParticles",
    "GasParticles",
    "Halo",
    "HaloError",
    "HaloProperties",
    "HaloSource",
]


class HaloError(ValueError):
    """Bad halo data. The message names the file (or source), the halo and the field."""


@dataclass(frozen=True)
class HaloProperties:
    """Scalar properties of one halo.

    Attributes
    ----------
    halo_id : int
        Identifier, unique within its source.
    m200m_msun : float
        M200m, mass inside the radius enclosing 200 times the mean matter density [Msun].
    r200m_mpc : float
        R200m [physical Mpc].
    centre_mpc : tuple of 3 floats
        Centre of the halo in the parent simulation's frame [physical Mpc]. Particle
        positions are stored relative to it.
    redshift : float
        Redshift of the snapshot.
    m500c_msun : float
        M500c, mass inside the radius enclosing 500 times the critical density [Msun]; NaN
        where the source has none.
    r500c_mpc : float
        R500c [physical Mpc]; NaN where the source has none.
    """

    halo_id: int
    m200m_msun: float
    r200m_mpc: float
    centre_mpc: tuple[float, float, float] = (0.0, 0.0, 0.0)
    redshift: float = 0.0
    m500c_msun: float = math.nan
    r500c_mpc: float = math.nan

    def _key(self) -> tuple:
        """The fields, NaN as None: "not given" compares equal (also after pickling, where
        ``math.nan`` becomes another NaN object and ``nan != nan``)."""
        return tuple(None if isinstance(v, float) and math.isnan(v) else v
                     for v in (getattr(self, f.name) for f in fields(self)))

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def log10_m200m_msun_h(self, h: float) -> float:
        """log10 of M200m in Msun/h, given the dimensionless Hubble parameter ``h``."""
        return float(np.log10(self.m200m_msun * h))


def _check_array(
    name: str, arr: np.ndarray | None, shape_tail: tuple[int, ...], n: int | None, where: str
) -> None:
    if arr is None:
        return
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise HaloError(f"{where}: field {name!r} has shape {arr.shape}, expected (N{', ' if shape_tail else ''}{', '.join(map(str, shape_tail))})")
    if n is not None and arr.shape[0] != n:
        raise HaloError(f"{where}: field {name!r} has {arr.shape[0]} entries, expected {n} (mismatched array lengths)")
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise HaloError(f"{where}: field {name!r} holds {bad} non-finite values (NaN or inf)")


def _check_positive(name: str, arr: np.ndarray | None, where: str, allow_zero: bool = False) -> None:
    if arr is None:
        return
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        kind = "negative" if allow_zero else "non-positive"
        raise HaloError(f"{where}: field {name!r} holds {int(np.count_nonzero(bad))} {kind} values")


@dataclass(frozen=True)
class DarkMatterParticles:
    """Dark-matter particles of one halo.

    Attributes
    ----------
    pos_mpc : (N, 3) float64
        Positions relative to the halo centre [physical Mpc].
    mass_msun : (N,) float64
        Particle masses [Msun].
    smoothing_length_mpc : (N,) float64 or None
        Kernel support radius H [Mpc]; None means "compute from the k nearest neighbours".
    """

    pos_mpc: np.ndarray
    mass_msun: np.ndarray
    smoothing_length_mpc: np.ndarray | None = None

    @property
    def n(self) -> int:
        """Number of particles."""
        return int(self.mass_msun.shape[0])

    def validate(self, where: str) -> None:
        """Raise :class:`HaloError` naming ``where`` and the field if anything is malformed."""
        _check_array("Coordinates", self.pos_mpc, (3,), None, where)
        n = self.pos_mpc.shape[0]
        _check_array("Masses", self.mass_msun, (), n, where)
        _check_positive("Masses", self.mass_msun, where)
        _check_array("SmoothingLength", self.smoothing_length_mpc, (), n, where)
        _check_positive("SmoothingLength", self.smoothing_length_mpc, where)


@dataclass(frozen=True)
class GasParticles(DarkMatterParticles):
    """Gas particles of one halo: the dark-matter fields plus thermodynamics.

    Attributes
    ----------
    temperature_k : (N,) float64
        Gas temperature [K].
    density_msun_mpc3 : (N,) float64 or None
        SPH density [Msun Mpc^-3]; None means "compute it with the SPH kernel".
    """

    temperature_k: np.ndarray = field(default_factory=lambda: np.empty(0))
    density_msun_mpc3: np.ndarray | None = None

    def validate(self, where: str) -> None:
        super().validate(where)
        n = self.pos_mpc.shape[0]
        _check_array("Temperature", self.temperature_k, (), n, where)
        _check_positive("Temperature", self.temperature_k, where)
        _check_array("Density", self.density_msun_mpc3, (), n, where)
        _check_positive("Density", self.density_msun_mpc3, where)


@dataclass(frozen=True)
class Halo:
    """A halo: its properties, gas particles and dark-matter particles."""

    props: HaloProperties
    gas: GasParticles
    dm: DarkMatterParticles

    def validate(self, source: str = "<memory>") -> Halo:
        """Check every field; errors name ``source``, the halo id and the field. Returns self."""
        pid = self.props.halo_id
        self.gas.validate(f"{source}, halo {pid}, PartType0 (gas)")
        self.dm.validate(f"{source}, halo {pid}, PartType1 (dark matter)")
        for name, value in (("M200m", self.props.m200m_msun), ("R200m", self.props.r200m_mpc)):
            if not np.isfinite(value) or value <= 0:
                raise HaloError(f"{source}, halo {pid}: attribute {name!r} = {value!r} must be finite and > 0")
        return self


@runtime_checkable
class HaloSource(Protocol):
    """Anything that yields halos by id: the HDF5 reader, the mock generator.

    Implementations must be cheap to construct and picklable (Ray ships them to workers);
    :meth:`load` does the heavy work for one halo and is deterministic for a given id.
    """

    def halo_ids(self) -> Sequence[int]:
        """All halo ids this source can load, in a stable order."""
        ...

    def properties(self, halo_id: int) -> HaloProperties:
        """Scalar properties of one halo, without loading its particles."""
        ...

    def load(self, halo_id: int) -> Halo:
        """The halo's particles, validated, in cmpipe's internal units."""
        ...


def iter_halos(source: HaloSource) -> Iterator[Halo]:
    """Load every halo of ``source`` in id order (convenience for small sources)."""
    for hid in source.halo_ids():
        yield source.load(hid)

"""The contract between a snapshot format and the extraction.

Units are cmpipe's internal ones (:mod:`cmpipe.physics.halo`): physical Mpc (no little h),
Msun (no little h), K, SPH smoothing lengths as the kernel's compact support radius ``H``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from cmpipe.physics.halo import DarkMatterParticles, GasParticles, HaloError

__all__ = ["CatalogHalo", "SnapshotError", "SnapshotInfo", "SnapshotReader", "wrap_relative"]


class SnapshotError(HaloError):
    """A snapshot or catalog that cannot be used: the message names the file, the halo (if any)
    and the field (or the header attribute)."""


@dataclass(frozen=True)
class SnapshotInfo:
    """What a snapshot is, from its own metadata.

    Attributes
    ----------
    path : str
        The snapshot (a file, or the first file of a multi-file snapshot).
    redshift : float
    h : float
        H0 / (100 km/s/Mpc).
    box_mpc : float
        Side of the periodic (cubic) box [physical Mpc].
    n_gas, n_dm : int
        Gas and dark-matter particles in the whole snapshot.
    ignored : tuple of str
        Particle types present and ignored (e.g. ``("stars", "black_holes")``).
    """

    path: str
    redshift: float
    h: float
    box_mpc: float
    n_gas: int
    n_dm: int
    ignored: tuple[str, ...] = ()


@dataclass(frozen=True)
class CatalogHalo:
    """One halo of the snapshot's halo catalog.

    Attributes
    ----------
    halo_id : int
        The catalog's own index or id (unique within the catalog).
    centre_mpc : tuple of 3 floats
        Centre in the box frame [physical Mpc], in ``[0, box_mpc)``.
    m200m_msun : float
        M200m [Msun].
    r200m_mpc : float
        R200m [physical Mpc].
    m500c_msun, r500c_mpc : float
        M500c [Msun] and R500c [physical Mpc]; NaN where the catalog has none.
    """

    halo_id: int
    centre_mpc: tuple[float, float, float]
    m200m_msun: float
    r200m_mpc: float
    m500c_msun: float = math.nan
    r500c_mpc: float = math.nan


@runtime_checkable
class SnapshotReader(Protocol):
    """A snapshot with its halo catalog. ``info`` and ``halos()`` read metadata only;
    ``region`` reads only the particles it needs where the format allows (SWIFT's top-level
    cells, the files of a multi-file Gadget snapshot that overlap the region)."""

    info: SnapshotInfo

    def halos(self) -> Sequence[CatalogHalo]:
        """Every halo of the catalog (with a positive M200m), in catalog order."""
        ...

    def region(self, centre_mpc: Sequence[float], radius_mpc: float) -> tuple[GasParticles, DarkMatterParticles]:
        """Gas and dark-matter particles within ``radius_mpc`` [physical Mpc] of ``centre_mpc``
        [physical Mpc, box frame], positions relative to the centre after the periodic
        (minimum-image) wrap, in internal units: gas with temperature [K], density
        [Msun Mpc^-3] where the snapshot has one (else None) and smoothing length ``H``
        [Mpc] (None where the snapshot has none: AREPO cells give one from ``Masses`` and
        ``Density``); dark matter without smoothing lengths unless the snapshot has them.

        Raises
        ------
        SnapshotError
            If ``radius_mpc`` exceeds half the box (the region would overlap itself).
        """
        ...


def wrap_relative(pos_mpc: np.ndarray, centre_mpc: Sequence[float], box_mpc: float) -> np.ndarray:
    """Positions relative to ``centre_mpc`` under the periodic minimum-image convention
    [physical Mpc], each component in ``[-box/2, box/2)``."""
    d = np.asarray(pos_mpc, dtype=np.float64) - np.asarray(centre_mpc, dtype=np.float64)
    return d - box_mpc * np.floor(d / box_mpc + 0.5)

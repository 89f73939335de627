"""Cut halos out of a snapshot into cmpipe's one-halo HDF5 layout (``cmpipe extract-halos``).

Ray-free: :func:`extract_halo` is the unit of work (one halo), :func:`extract_halos` the serial
loop and :func:`summarise` the report; :mod:`cmpipe.pipeline.extract` runs the same unit in Ray
tasks. Per halo:

1. the extraction radius is ``max(radius_mpc, slab radius)``, the slab radius
   ``sqrt(2 (L/2)^2 + (D/2)^2)`` being that of the sphere holding the projection slab of a map
   of side ``L = npix * pixel_mpc`` and depth ``D`` (:func:`slab_radius_mpc`); it must stay below
   half the box;
2. ``reader.region(centre, radius)`` gives the gas and dark matter around the catalog centre;
3. the particle mass (gas + DM) inside R200m is compared with the catalog's M200m: a ratio
   outside ``1 +- mass_tolerance`` is logged and reported as a warning (stars and black holes
   are ignored, so a ratio a little below 1 is expected for real haloes);
4. the halo (M200m, R200m, centre, redshift, M500c, R500c) is written with
   :func:`cmpipe.physics.hdf5io.write_halo_hdf5` to ``OUT/halo_{id:06d}.hdf5``: physical Mpc,
   Msun, temperatures in K, smoothing lengths as the kernel support H. An existing file is
   skipped, never rewritten (the extraction is resumable).

``OUT`` may be an object-store URL (``s3://bucket/halos``): each halo file is then written whole
in one PUT, and a rerun skips the halos whose object exists. The snapshot and its catalog are
read from local (or network-mounted) disk only: :func:`open_snapshot` refuses a URL, naming it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmpipe.physics.halo import Halo, HaloError, HaloProperties
from cmpipe.physics.snapshots.base import CatalogHalo, SnapshotError, SnapshotReader
from cmpipe.store.location import AnyPath, as_path, is_url

__all__ = [
    "FORMATS",
    "ExtractionSettings",
    "extract_halo",
    "extract_halos",
    "extraction_radius_mpc",
    "halo_file",
    "open_snapshot",
    "select_halos",
    "slab_radius_mpc",
    "summarise",
]

logger = logging.getLogger(__name__)

#: Snapshot formats of :func:`open_snapshot` (``cmpipe extract-halos --format``).
FORMATS: tuple[str, ...] = ("gadget", "swift")


def open_snapshot(fmt: str, snapshot: str | Path, catalog: str | Path) -> SnapshotReader:
    """The reader of ``fmt`` (:data:`FORMATS`) over ``snapshot`` and its halo ``catalog``; the
    format's module is imported only here (swiftsimio only for ``swift``).

    Raises
    ------
    SnapshotError
        For an unknown format, a snapshot or catalog given as an object-store URL (not
        supported: the readers need local files), or what the reader raises for bad files.
    """
    for what, path in (("snapshot", snapshot), ("catalog", catalog)):
        if is_url(path):
            raise SnapshotError(
                f"{what} {path}: snapshots and halo catalogs are read from local disk only (the {fmt} reader "
                "opens many files by name); copy them to a local or shared file system first. The extracted "
                "halos (--out) may go to a bucket."
            )
    if fmt == "gadget":
        from cmpipe.physics.snapshots.gadget import GadgetSnapshot

        return GadgetSnapshot(snapshot, catalog)
    if fmt == "swift":
        from cmpipe.physics.snapshots.swift import SwiftSnapshot

        return SwiftSnapshot(snapshot, catalog)
    raise SnapshotError(f"snapshot format {fmt!r} is not known; known formats: {', '.join(FORMATS)}")


@dataclass(frozen=True)
class ExtractionSettings:
    """What to extract and how far out.

    Attributes
    ----------
    npix : int
        Pixels per map side.
    pixel_mpc : float
        Pixel side [physical Mpc].
    depth_mpc : float
        Projection depth [physical Mpc].
    radius_mpc : float
        Requested extraction radius [physical Mpc]; raised to the slab radius if smaller.
    log10_m_min_msun_h, log10_m_max_msun_h : float
        Bounds of log10 M200m [Msun/h] (inclusive).
    ids : tuple of int or None
        Only these catalog ids (still within the mass bounds); None: all.
    mass_tolerance : float
        Relative tolerance of the particle mass inside R200m against the catalog's M200m.
    """

    npix: int
    pixel_mpc: float
    depth_mpc: float
    radius_mpc: float = 0.0
    log10_m_min_msun_h: float = -math.inf
    log10_m_max_msun_h: float = math.inf
    ids: tuple[int, ...] | None = None
    mass_tolerance: float = 0.1

    @property
    def slab_radius_mpc(self) -> float:
        """Radius of the sphere holding the projection slab [physical Mpc]."""
        return slab_radius_mpc(self.npix, self.pixel_mpc, self.depth_mpc)

    @property
    def extraction_radius_mpc(self) -> float:
        """``max(radius_mpc, slab radius)`` [physical Mpc]."""
        return extraction_radius_mpc(self.radius_mpc, self.npix, self.pixel_mpc, self.depth_mpc)


def slab_radius_mpc(npix: int, pixel_mpc: float, depth_mpc: float) -> float:
    """``sqrt(2 (L/2)^2 + (D/2)^2)`` [Mpc]: the sphere around the centre that holds the whole
    projection slab of a map of side ``L = npix * pixel_mpc`` [Mpc] and depth ``D`` [Mpc]."""
    half_side, half_depth = 0.5 * npix * pixel_mpc, 0.5 * depth_mpc
    return math.sqrt(2.0 * half_side**2 + half_depth**2)


def extraction_radius_mpc(radius_mpc: float, npix: int, pixel_mpc: float, depth_mpc: float) -> float:
    """``max(radius_mpc, slab_radius_mpc(npix, pixel_mpc, depth_mpc))`` [Mpc]."""
    return max(float(radius_mpc), slab_radius_mpc(npix, pixel_mpc, depth_mpc))


def halo_file(out: AnyPath, halo_id: int) -> AnyPath:
    """``out / f"halo_{halo_id:06d}.hdf5"`` (``out`` a local directory or a URL)."""
    return as_path(out) / f"halo_{int(halo_id):06d}.hdf5"


def select_halos(halos: Iterable[CatalogHalo], h: float, settings: ExtractionSettings,
                 where: str = "catalog") -> list[CatalogHalo]:
    """The halos with log10 M200m [Msun/h] within the bounds and, if ``settings.ids``, among them.

    Raises
    ------
    SnapshotError
        If ``settings.ids`` names halos the catalog does not have (``where`` names the catalog).
    """
    halos = list(halos)
    if settings.ids is not None:
        known = {c.halo_id for c in halos}
        missing = sorted(set(settings.ids) - known)
        if missing:
            raise SnapshotError(f"{where}: halos {missing} are not in the catalog (or have M200m <= 0)")
        wanted = set(settings.ids)
        halos = [c for c in halos if c.halo_id in wanted]
    lo, hi = settings.log10_m_min_msun_h, settings.log10_m_max_msun_h
    return [c for c in halos if lo <= math.log10(c.m200m_msun * h) <= hi]


def _mass_ratio(halo: Halo) -> float:
    """Particle mass (gas + DM) inside R200m over the catalog's M200m."""
    r2 = halo.props.r200m_mpc**2
    inside = 0.0
    for part in (halo.gas, halo.dm):
        inside += float(part.mass_msun[np.einsum("ij,ij->i", part.pos_mpc, part.pos_mpc) <= r2].sum())
    return inside / halo.props.m200m_msun


def _row(c: CatalogHalo, status: str, path: AnyPath, **kw: Any) -> dict[str, Any]:
    row = {"halo_id": c.halo_id, "status": status, "path": str(path), "reason": "", "warning": "",
           "n_gas": 0, "n_dm": 0, "mass_ratio": math.nan, "radius_mpc": math.nan, "holds_slab": False,
           "seconds": 0.0}
    row.update(kw)
    return row


def _cut(reader: SnapshotReader, c: CatalogHalo, radius: float) -> Halo:
    """The halo ``c`` with its particles within ``radius`` [Mpc], validated."""
    gas, dm = reader.region(c.centre_mpc, radius)
    props = HaloProperties(halo_id=c.halo_id, m200m_msun=c.m200m_msun, r200m_mpc=c.r200m_mpc,
                           centre_mpc=tuple(c.centre_mpc), redshift=reader.info.redshift,
                           m500c_msun=c.m500c_msun, r500c_mpc=c.r500c_mpc)
    where = f"{reader.info.path}, halo {c.halo_id}"
    if gas.n == 0 or dm.n == 0:
        raise SnapshotError(f"{where}: no {'gas' if gas.n == 0 else 'dark-matter'} particles within {radius:.4g} Mpc "
                            "of the centre (does the snapshot hold this region?)")
    return Halo(props=props, gas=gas, dm=dm).validate(source=where)


def extract_halo(reader: SnapshotReader, c: CatalogHalo, out: AnyPath, settings: ExtractionSettings) -> dict[str, Any]:
    """Extract one halo to :func:`halo_file` unless it exists; one summary row.

    Returns
    -------
    dict
        ``halo_id``, ``status`` (``written``, ``skipped`` or ``failed``), ``path``, ``reason``
        (why it failed), ``warning`` (mass check), ``n_gas``, ``n_dm``, ``mass_ratio`` (particle
        mass inside R200m / M200m), ``radius_mpc``, ``holds_slab``, ``seconds``.
    """
    from cmpipe.physics.hdf5io import write_halo_hdf5

    t0 = time.perf_counter()
    path = halo_file(out, c.halo_id)
    if path.exists():
        return _row(c, "skipped", path)
    radius = settings.extraction_radius_mpc
    holds = radius >= settings.slab_radius_mpc
    try:
        if radius >= 0.5 * reader.info.box_mpc:
            raise SnapshotError(f"{reader.info.path}, halo {c.halo_id}: extraction radius {radius:.4g} Mpc is not "
                                f"below half the box ({0.5 * reader.info.box_mpc:.4g} Mpc): use smaller maps")
        halo = _cut(reader, c, radius)
    except HaloError as e:
        text = str(e) if f"halo {c.halo_id}" in str(e) else f"halo {c.halo_id}: {e}"
        logger.error("%s", text)
        return _row(c, "failed", path, reason=text, radius_mpc=radius, holds_slab=holds,
                    seconds=time.perf_counter() - t0)
    ratio = _mass_ratio(halo)
    warning = ""
    if abs(ratio - 1.0) > settings.mass_tolerance:
        warning = (f"halo {c.halo_id}: particle mass inside R200m is {ratio:.3f} x the catalog's M200m "
                   f"(tolerance {settings.mass_tolerance:g})")
        logger.warning("%s", warning)
    try:
        write_halo_hdf5(path, halo, h=reader.info.h)
    except FileExistsError:  # another task wrote it meanwhile: keep theirs
        return _row(c, "skipped", path)
    return _row(c, "written", path, warning=warning, n_gas=halo.gas.n, n_dm=halo.dm.n, mass_ratio=ratio,
                radius_mpc=radius, holds_slab=holds, seconds=time.perf_counter() - t0)


def summarise(rows: Sequence[dict[str, Any]], reader: SnapshotReader, seconds: float) -> dict[str, Any]:
    """The extraction's summary: counts by status, failures with reasons, warnings, particles
    written, mass ratios, throughput and the ignored particle types."""
    written = [r for r in rows if r["status"] == "written"]
    particles = sum(r["n_gas"] + r["n_dm"] for r in written)
    return {
        "snapshot": reader.info.path,
        "halos": len(rows),
        "written": len(written),
        "skipped": sum(r["status"] == "skipped" for r in rows),
        "failed": sum(r["status"] == "failed" for r in rows),
        "failures": [{"halo_id": r["halo_id"], "reason": r["reason"]} for r in rows if r["status"] == "failed"],
        "warnings": [r["warning"] for r in rows if r["warning"]],
        "particles": particles,
        "mass_ratios": {r["halo_id"]: r["mass_ratio"] for r in written},
        "seconds": seconds,
        "particles_per_s": particles / seconds if seconds > 0 else math.nan,
        "halos_per_min": 60.0 * len(written) / seconds if seconds > 0 else math.nan,
        "ignored": list(reader.info.ignored),
        "rows": list(rows),
    }


def extract_halos(reader: SnapshotReader, out: AnyPath, settings: ExtractionSettings) -> dict[str, Any]:
    """Extract every selected halo of ``reader`` to ``out`` (created if needed), one after another.

    Returns
    -------
    dict
        :func:`summarise` of the rows of :func:`extract_halo`.

    Raises
    ------
    SnapshotError
        For a bad catalog or unknown ids (per-halo problems are failed rows instead).
    """
    t0 = time.perf_counter()
    out = as_path(out)
    if not is_url(out):
        out.mkdir(parents=True, exist_ok=True)  # a prefix on an object store: nothing to create
    selected = select_halos(reader.halos(), reader.info.h, settings, where=reader.info.path)
    rows = [extract_halo(reader, c, out, settings) for c in selected]
    return summarise(rows, reader, time.perf_counter() - t0)

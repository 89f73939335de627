"""Gadget-4 / AREPO HDF5 snapshots (IllustrisTNG-style) and their FoF/SUBFIND group catalogs.

The files
---------
A snapshot is one file (``snap_099.hdf5``) or several (``snap_099.0.hdf5``, ``snap_099.1.hdf5``,
... as many as ``Header/NumFilesPerSnapshot``; pass any one of them). Each holds ``/Header`` and
``/PartType0`` (gas) ... ``/PartType5``; the catalog (``fof_subhalo_tab_099.hdf5`` or
``fof_subhalo_tab_099.0.hdf5`` ...) holds ``/Header`` and ``/Group``.

Units: the code units ``UnitLength_in_cm``, ``UnitMass_in_g`` and ``UnitVelocity_in_cm_per_s``
are **required**. They are taken from ``/Header`` (IllustrisTNG writes them there), else from
``/Parameters`` (Gadget-4 writes them there), else from ``/Config``; a file without them is
refused (no TNG defaults are assumed: a CAMELS or Three Hundred run may use other units). A
group catalog without its own units uses the snapshot's.

Comoving h-units (Gadget's convention, ``ComovingIntegrationOn`` = 1, the default when
``/Parameters`` does not say): a stored length ``x`` is ``x UnitLength a / h`` physical, a mass
``m UnitMass / h``, a density ``rho UnitMass h^2 / (UnitLength^3 a^3)``, with ``a = 1/(1 + z)``
(checked against ``Header/Time``). Internal energies are physical, in ``UnitVelocity^2``.

Conversions (once, here)
------------------------
* Masses: ``Masses`` where the group has it, else ``Header/MassTable[type]`` (the usual case for
  dark matter); neither is an error.
* Temperature: ``T = (gamma - 1) u mu m_p / k_B``, gamma = 5/3, ``mu = 4 / (1 + 3 X + 4 X x_e)``
  with ``x_e`` = ``ElectronAbundance`` (electrons per hydrogen nucleus) and X = 0.76 (the
  hydrogen mass fraction, a constructor argument). Without ``ElectronAbundance`` (a non-cooling
  Gadget run) the gas is taken fully ionised, ``x_e = 1 + (1 - X) / (2 X)``, mu = 0.588.
* Smoothing lengths: Gadget-4 SPH's ``SmoothingLength`` is the kernel support ``H`` itself. AREPO
  cells have none: ``H = (3 N_ngb m / (4 pi rho))^(1/3)``, i.e. the radius of the sphere of the
  cell's volume ``V = m / rho`` times ``N_ngb^(1/3)``, the radius holding ``N_ngb`` cells of that
  volume (``N_ngb`` = ``cell_neighbours``, default 32, the k of cmpipe's own k-NN smoothing, so
  that a cell's kernel reaches as far as cmpipe's smoothing would take it). Dark matter gets no
  smoothing length (cmpipe computes one from its neighbours).
* Catalog: ``Group/GroupPos`` (centre), ``Group_M_Mean200`` and ``Group_R_Mean200`` (M200m,
  R200m), and ``Group_M_Crit500`` and ``Group_R_Crit500`` where present (else NaN). A halo's id is
  its global FoF group index (files concatenated in order); groups with ``Group_M_Mean200`` <= 0
  are left out.

Stars (``PartType4``), black holes (``PartType5``), tracers (``PartType3``) and boundary/low-
resolution particles (``PartType2``) are ignored and listed in ``info.ignored``.

Reading only what a region needs: the first region query scans each file's coordinates once,
in chunks of ``chunk_rows`` rows, for the bounding box of every chunk (an index cached on the
reader and carried when it is pickled to Ray workers; Gadget and AREPO write particles along a
space-filling curve, so chunk boxes are compact). A region then opens only the files, and reads
only the chunks, whose boxes it overlaps (periodically).

Every problem raises :class:`~cmpipe.physics.snapshots.base.SnapshotError` naming the file, the
halo where there is one, and the field or header attribute.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import h5py
import numpy as np

from cmpipe.physics.halo import DarkMatterParticles, GasParticles
from cmpipe.physics.snapshots.base import CatalogHalo, SnapshotError, SnapshotInfo, wrap_relative

__all__ = [
    "DEFAULT_CELL_NEIGHBOURS",
    "GadgetSnapshot",
    "GadgetUnits",
    "cell_support_mpc",
    "gadget_temperature_k",
    "mean_molecular_weight",
]

#: Cells whose volume fills an AREPO cell's kernel support (cmpipe's k-NN ``k``).
DEFAULT_CELL_NEIGHBOURS = 32.0
#: Rows of a dataset read at once when scanning coordinates [particles].
CHUNK_ROWS = 1 << 20
_GAS, _DM = 0, 1
_IGNORED = {2: "PartType2 (boundary/low-resolution)", 3: "PartType3 (tracers)", 4: "PartType4 (stars)",
            5: "PartType5 (black holes)"}
_UNIT_NAMES = ("UnitLength_in_cm", "UnitMass_in_g", "UnitVelocity_in_cm_per_s")
_MULTI = re.compile(r"^(?P<stem>.*)\.(?P<index>\d+)\.hdf5$")


@lru_cache(maxsize=1)
def _constants() -> dict[str, float]:
    """Mpc [cm], Msun [g] and m_p / k_B [K s^2 cm^-2] from astropy (lazy: it is slow to import)."""
    from astropy import constants as c
    from astropy import units as u

    return {"mpc_cm": float(u.Mpc.to(u.cm)), "msun_g": float(c.M_sun.cgs.value),
            "mp_over_kb_cgs": float(c.m_p.cgs.value / c.k_B.cgs.value)}


def mean_molecular_weight(electron_abundance: np.ndarray, hydrogen_mass_fraction: float = 0.76) -> np.ndarray:
    """``mu = 4 / (1 + 3 X + 4 X x_e)`` [proton masses] from the electron abundance ``x_e``
    (electrons per hydrogen nucleus) and the hydrogen mass fraction X."""
    x = float(hydrogen_mass_fraction)
    return 4.0 / (1.0 + 3.0 * x + 4.0 * x * np.asarray(electron_abundance, dtype=np.float64))


def gadget_temperature_k(u_cm2_s2: np.ndarray, electron_abundance: np.ndarray,
                         hydrogen_mass_fraction: float = 0.76, gamma: float = 5.0 / 3.0) -> np.ndarray:
    """``T = (gamma - 1) u mu m_p / k_B`` [K] from the specific internal energy ``u`` [cm^2 s^-2]
    and the electron abundance (see :func:`mean_molecular_weight`)."""
    mu = mean_molecular_weight(electron_abundance, hydrogen_mass_fraction)
    return (gamma - 1.0) * np.asarray(u_cm2_s2, dtype=np.float64) * mu * _constants()["mp_over_kb_cgs"]


def cell_support_mpc(mass_msun: np.ndarray, density_msun_mpc3: np.ndarray,
                     neighbours: float = DEFAULT_CELL_NEIGHBOURS) -> np.ndarray:
    """Kernel support ``H = (3 N m / (4 pi rho))^(1/3)`` [Mpc] of AREPO cells of mass [Msun] and
    density [Msun Mpc^-3]: the radius of a sphere holding ``N`` cells of volume ``m / rho``."""
    volume = np.asarray(mass_msun, dtype=np.float64) / np.asarray(density_msun_mpc3, dtype=np.float64)
    return np.cbrt(3.0 * neighbours * volume / (4.0 * np.pi))


@dataclass(frozen=True)
class GadgetUnits:
    """Code units of a Gadget/AREPO file and the factors from stored values to internal units.

    Attributes
    ----------
    length_cm, mass_g, velocity_cm_s : float
        ``UnitLength_in_cm``, ``UnitMass_in_g``, ``UnitVelocity_in_cm_per_s`` (per h for lengths
        and masses, as Gadget stores them).
    h : float
        ``HubbleParam``.
    a : float
        Scale factor applied to lengths (1 when not comoving).
    """

    length_cm: float
    mass_g: float
    velocity_cm_s: float
    h: float
    a: float

    @property
    def length_mpc(self) -> float:
        """Stored length -> physical Mpc."""
        return self.length_cm / _constants()["mpc_cm"] * self.a / self.h

    @property
    def mass_msun(self) -> float:
        """Stored mass -> Msun."""
        return self.mass_g / _constants()["msun_g"] / self.h

    @property
    def density_msun_mpc3(self) -> float:
        """Stored density -> physical Msun Mpc^-3."""
        return self.mass_msun / self.length_mpc**3

    @property
    def energy_cm2_s2(self) -> float:
        """Stored specific internal energy -> cm^2 s^-2."""
        return self.velocity_cm_s**2


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise SnapshotError(f"{path}: file does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise SnapshotError(f"{path}: cannot open as HDF5 ({e})") from e


def _attr(f: h5py.File, path: Path, group: str, name: str, required: bool = True) -> np.ndarray | None:
    """Attribute ``/group/name`` as a float64 array (None if absent and not required)."""
    g = f.get(group)
    if g is None or name not in g.attrs:
        if required:
            raise SnapshotError(f"{path}: header attribute /{group}/{name}: missing")
        return None
    value = np.asarray(g.attrs[name])
    if value.dtype.kind not in "iuf" or not np.all(np.isfinite(value)):
        raise SnapshotError(f"{path}: header attribute /{group}/{name}: value {value.tolist()!r} is not finite real")
    return value.astype(np.float64)


def _scalar(f: h5py.File, path: Path, group: str, name: str, required: bool = True) -> float | None:
    value = _attr(f, path, group, name, required)
    return None if value is None else float(value.reshape(-1)[0])


def _code_units(f: h5py.File, path: Path) -> tuple[float, float, float] | None:
    """The three unit attributes from ``/Header``, else ``/Parameters``, else ``/Config``; None if
    none of the groups has all three. A group with some but not all is an error."""
    for group in ("Header", "Parameters", "Config"):
        found = [_scalar(f, path, group, name, required=False) for name in _UNIT_NAMES]
        if all(v is not None for v in found):
            for name, v in zip(_UNIT_NAMES, found):
                if v <= 0:
                    raise SnapshotError(f"{path}: unit attribute /{group}/{name} = {v!r}: not > 0 (unknown unit)")
            return found[0], found[1], found[2]
        if any(v is not None for v in found):
            missing = [n for n, v in zip(_UNIT_NAMES, found) if v is None]
            raise SnapshotError(f"{path}: unit attributes /{group}/{', '.join(missing)}: missing (unknown units)")
    return None


def _scale_factor(f: h5py.File, path: Path, redshift: float) -> float:
    """``a = 1/(1+z)`` when comoving (checked against ``Header/Time``), else 1."""
    comoving = _scalar(f, path, "Parameters", "ComovingIntegrationOn", required=False)
    if comoving is not None and comoving == 0:
        return 1.0
    a = 1.0 / (1.0 + redshift)
    time = _scalar(f, path, "Header", "Time", required=False)
    if time is not None and not math.isclose(time, a, rel_tol=1e-4):
        raise SnapshotError(f"{path}: header attribute /Header/Time = {time!r} is not 1/(1 + Redshift) = {a!r}")
    return a


def _num_part_total(f: h5py.File, path: Path) -> np.ndarray:
    """``NumPart_Total`` (+ ``NumPart_Total_HighWord`` * 2^32) as 6 int64."""
    low = _attr(f, path, "Header", "NumPart_Total")
    high = _attr(f, path, "Header", "NumPart_Total_HighWord", required=False)
    total = low.astype(np.int64)
    if high is not None:
        total = total + (high.astype(np.int64) << 32)
    if total.shape != (6,):
        raise SnapshotError(f"{path}: header attribute /Header/NumPart_Total has shape {total.shape}, expected (6,)")
    return total


def _numbered_files(path: Path, count: int) -> tuple[Path, ...]:
    """``path`` alone, or the ``count`` files ``stem.0.hdf5`` ... of a multi-file set."""
    m = _MULTI.match(path.name)
    if count <= 1 and m is None:
        return (path,)
    if m is None:
        raise SnapshotError(f"{path}: header says {count} files per snapshot but the name is not STEM.N.hdf5")
    files = tuple(path.with_name(f"{m['stem']}.{i}.hdf5") for i in range(count))
    for p in files:
        if not p.is_file():
            raise SnapshotError(f"{path}: file {p.name} of the {count}-file set does not exist")
    return files


def _overlaps(lo: np.ndarray, hi: np.ndarray, centre: np.ndarray, radius: float, box: float) -> bool:
    """Whether the sphere (``centre``, ``radius``) meets the box [lo, hi] under periodic wrap
    (all in stored units; per axis, the minimum-image distance from the centre to the interval)."""
    d2 = 0.0
    for k in range(3):
        if hi[k] - lo[k] >= box:
            continue
        mid, half = 0.5 * (lo[k] + hi[k]), 0.5 * (hi[k] - lo[k])
        d = float(centre[k]) - mid
        off = abs(d - box * math.floor(d / box + 0.5))
        d2 += max(0.0, off - half) ** 2
    return d2 <= radius * radius


#: Datasets each particle type needs (``Masses`` may come from ``MassTable``) and may use.
_REQUIRED = {_GAS: ("Coordinates", "InternalEnergy", "Density"), _DM: ("Coordinates",)}
_OPTIONAL = {_GAS: ("Masses", "ElectronAbundance", "SmoothingLength"), _DM: ("Masses",)}


def _check_fields(f: h5py.File, path: Path, ptype: int, mass_table: np.ndarray) -> None:
    """The datasets ``ptype`` needs are in ``f`` (a file holding particles of that type)."""
    group = f.get(f"PartType{ptype}")
    if group is None:
        raise SnapshotError(f"{path}: group /PartType{ptype}: missing (the header counts particles of this type)")
    for name in _REQUIRED[ptype]:
        if name not in group:
            raise SnapshotError(f"{path}: dataset /PartType{ptype}/{name}: missing")
    if "Masses" not in group and mass_table[ptype] <= 0:
        raise SnapshotError(f"{path}: dataset /PartType{ptype}/Masses: missing, and /Header/MassTable[{ptype}] = "
                            f"{mass_table[ptype]!r} gives no mass")


def _select_chunks(group: h5py.Group, path: Path, ptype: int, names: Sequence[str], centre: np.ndarray,
                   radius: float, box: float, ranges: Sequence[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The datasets ``names`` of one file's ``group`` for particles within ``radius`` of
    ``centre`` (stored units), reading only the row ``ranges``; ``Coordinates`` becomes relative
    (wrapped)."""
    coords = group["Coordinates"]
    n = coords.shape[0]
    for name in names:
        if group[name].shape[0] != n:
            raise SnapshotError(f"{path}: dataset /PartType{ptype}/{name} has {group[name].shape[0]} entries, "
                                f"/PartType{ptype}/Coordinates {n}")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start, stop in ranges:
        rel = wrap_relative(coords[start:stop], centre, box)
        keep = np.einsum("ij,ij->i", rel, rel) <= radius * radius
        if not keep.any():
            continue
        parts["Coordinates"].append(rel[keep])
        for name in names:
            if name != "Coordinates":
                parts[name].append(np.asarray(group[name][start:stop], dtype=np.float64)[keep])
    return {name: np.concatenate(v) if v else np.empty((0, 3) if name == "Coordinates" else 0)
            for name, v in parts.items()}


#: One chunk of rows of a file's particle type and its bounding box [stored units].
_Chunk = tuple[int, int, np.ndarray, np.ndarray]


def _chunk_extents(group: h5py.Group, path: Path, ptype: int, chunk_rows: int) -> list[_Chunk]:
    """(start, stop, lo, hi) of every ``chunk_rows`` rows of the group's ``Coordinates``: one
    pass over them (Gadget and AREPO order particles along a space-filling curve, so the boxes
    of a file's chunks are compact)."""
    coords = group["Coordinates"]
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise SnapshotError(f"{path}: dataset /PartType{ptype}/Coordinates has shape {coords.shape}, expected (N, 3)")
    chunks = []
    for start in range(0, coords.shape[0], chunk_rows):
        block = np.asarray(coords[start:start + chunk_rows], dtype=np.float64)
        chunks.append((start, start + block.shape[0], block.min(axis=0), block.max(axis=0)))
    return chunks


@dataclass(frozen=True)
class _Meta:
    """What the first snapshot file says, checked."""

    files: tuple[Path, ...]
    units: GadgetUnits
    box: float  # stored units
    redshift: float
    mass_table: np.ndarray  # (6,) stored units
    totals: np.ndarray  # (6,) int


def _read_meta(path: Path) -> _Meta:
    """Header, units and file list of a snapshot (any one of its files)."""
    with _open(path) as f:
        z = _scalar(f, path, "Header", "Redshift")
        h = _scalar(f, path, "Header", "HubbleParam")
        box = _scalar(f, path, "Header", "BoxSize")
        mass_table = _attr(f, path, "Header", "MassTable")
        totals = _num_part_total(f, path)
        nfiles = int(_scalar(f, path, "Header", "NumFilesPerSnapshot", required=False) or 1)
        code = _code_units(f, path)
        if code is None:
            raise SnapshotError(f"{path}: unit attributes {', '.join(_UNIT_NAMES)}: missing from /Header, "
                                "/Parameters and /Config (unknown units)")
        a = _scale_factor(f, path, z)
    for name, value in (("HubbleParam", h), ("BoxSize", box)):
        if value <= 0:
            raise SnapshotError(f"{path}: header attribute /Header/{name} = {value!r}: not > 0")
    if mass_table.shape != (6,):
        raise SnapshotError(f"{path}: header attribute /Header/MassTable has shape {mass_table.shape}, expected (6,)")
    units = GadgetUnits(*code, h=h, a=a)
    return _Meta(_numbered_files(path, nfiles), units, box, z, mass_table, totals)


_GROUP_FIELDS = ("GroupPos", "Group_M_Mean200", "Group_R_Mean200")
_GROUP_OPTIONAL = ("Group_M_Crit500", "Group_R_Crit500", "GroupLenType")


def _catalog_units(f: h5py.File, path: Path, meta: _Meta) -> GadgetUnits:
    """The catalog's own units where it has them (Gadget-4), else the snapshot's (TNG); its
    ``BoxSize`` and ``Redshift`` must match the snapshot's."""
    z = _scalar(f, path, "Header", "Redshift")
    if not math.isclose(z, meta.redshift, rel_tol=1e-5, abs_tol=1e-5):
        raise SnapshotError(f"{path}: header attribute /Header/Redshift = {z!r} does not match the snapshot's "
                            f"{meta.redshift!r} ({meta.files[0]})")
    code = _code_units(f, path)
    h = _scalar(f, path, "Header", "HubbleParam", required=False) or meta.units.h
    units = meta.units if code is None else GadgetUnits(*code, h=h, a=meta.units.a)
    box = _scalar(f, path, "Header", "BoxSize")
    box_mpc, want = box * units.length_mpc, meta.box * meta.units.length_mpc
    if not math.isclose(box_mpc, want, rel_tol=1e-6):
        raise SnapshotError(f"{path}: header attribute /Header/BoxSize = {box!r} ({box_mpc:.6g} Mpc) does not match "
                            f"the snapshot's {meta.box!r} ({want:.6g} Mpc, {meta.files[0]})")
    return units


def _read_groups(path: Path, meta: _Meta) -> tuple[dict[str, np.ndarray], GadgetUnits]:
    """The ``/Group`` fields of every file of the catalog (concatenated; ``GroupLenType`` summed
    over all groups, shape (6,)), and its units."""
    with _open(path) as f:
        nfiles = int(_scalar(f, path, "Header", "NumFiles", required=False) or 1)
    files = _numbered_files(path, nfiles)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _GROUP_FIELDS + _GROUP_OPTIONAL}
    units = None
    for p in files:
        with _open(p) as f:
            units = _catalog_units(f, p, meta)
            ngroups = int(_scalar(f, p, "Header", "Ngroups_ThisFile", required=False) or 0)
            group = f.get("Group")
            if group is None:
                if ngroups:
                    raise SnapshotError(f"{p}: group /Group: missing ({ngroups} groups in this file)")
                continue
            for name in _GROUP_FIELDS + _GROUP_OPTIONAL:
                if name == "GroupLenType" and name in group:  # only its sum is needed: keep that
                    parts[name].append(np.asarray(group[name][()], dtype=np.int64).sum(axis=0, keepdims=True))
                elif name in group:
                    parts[name].append(np.asarray(group[name][()], dtype=np.float64))
                elif name in _GROUP_FIELDS:
                    raise SnapshotError(f"{p}: dataset /Group/{name}: missing")
    out = {name: np.concatenate(v) for name, v in parts.items() if v}
    if "GroupLenType" in out:
        out["GroupLenType"] = out["GroupLenType"].sum(axis=0)
    for name in _GROUP_FIELDS:
        out.setdefault(name, np.empty((0, 3) if name == "GroupPos" else 0))
    return out, units


def _check_lengths(groups: dict[str, np.ndarray], path: Path, totals: np.ndarray, snapshot: Path) -> None:
    """Every field has one row per group; ``GroupLenType`` sums do not exceed the snapshot's counts."""
    n = groups["Group_M_Mean200"].shape[0]
    for name, arr in groups.items():
        if name != "GroupLenType" and arr.shape[0] != n:
            raise SnapshotError(f"{path}: dataset /Group/{name} has {arr.shape[0]} rows, "
                                f"/Group/Group_M_Mean200 {n}")
    if "GroupLenType" in groups:  # summed over the groups by _read_groups
        used = groups["GroupLenType"]
        if used.shape == (6,) and np.any(used > totals):
            ptype = int(np.argmax(used > totals))
            raise SnapshotError(f"{path}: dataset /Group/GroupLenType: groups hold {int(used[ptype])} particles of "
                                f"PartType{ptype}, the snapshot {snapshot} only {int(totals[ptype])} "
                                "(catalog of another snapshot?)")


class GadgetSnapshot:
    """A Gadget-4 / AREPO HDF5 snapshot and its FoF/SUBFIND catalog: a
    :class:`~cmpipe.physics.snapshots.base.SnapshotReader` (see the module docstring for units).

    Parameters
    ----------
    snapshot : str or os.PathLike
        The snapshot file, or any file of a multi-file snapshot (``snap_099.0.hdf5``).
    catalog : str or os.PathLike
        The group catalog file, or any file of a multi-file catalog.
    hydrogen_mass_fraction : float
        X of the temperature formula (0.76).
    cell_neighbours : float
        ``N_ngb`` of the AREPO cell support ``H = (3 N_ngb m / (4 pi rho))^(1/3)`` (32).
    chunk_rows : int
        Rows per chunk of the bounding-box index and of the reads.

    Raises
    ------
    SnapshotError
        A missing file, header attribute, unit or required dataset (checked in the first file
        holding each particle type).
    """

    def __init__(self, snapshot, catalog, *, hydrogen_mass_fraction: float = 0.76,
                 cell_neighbours: float = DEFAULT_CELL_NEIGHBOURS, chunk_rows: int = CHUNK_ROWS) -> None:
        self._meta = _read_meta(Path(snapshot).absolute())
        self._catalog = Path(catalog).absolute()
        self._x = float(hydrogen_mass_fraction)
        self._neighbours = float(cell_neighbours)
        self._chunk_rows = int(chunk_rows)
        self._counts = self._file_counts()
        self._extents: dict[tuple[int, int], list[_Chunk]] = {}
        m = self._meta
        self.info = SnapshotInfo(
            path=str(m.files[0]), redshift=m.redshift, h=m.units.h, box_mpc=m.box * m.units.length_mpc,
            n_gas=int(m.totals[_GAS]), n_dm=int(m.totals[_DM]),
            ignored=tuple(name for t, name in _IGNORED.items() if m.totals[t] > 0),
        )

    def __repr__(self) -> str:
        return f"GadgetSnapshot({str(self._meta.files[0])!r}, {str(self._catalog)!r})"

    def _file_counts(self) -> np.ndarray:
        """``NumPart_ThisFile`` of every file, (n_files, 6); checks the fields of each type once."""
        counts = []
        checked: set[int] = set()
        for p in self._meta.files:
            with _open(p) as f:
                n = _attr(f, p, "Header", "NumPart_ThisFile").astype(np.int64)
                for ptype in (_GAS, _DM):
                    if n[ptype] > 0 and ptype not in checked:
                        _check_fields(f, p, ptype, self._meta.mass_table)
                        checked.add(ptype)
            counts.append(n)
        counts = np.array(counts)
        if not np.array_equal(counts.sum(axis=0), self._meta.totals):
            raise SnapshotError(f"{self._meta.files[0]}: header attribute /Header/NumPart_Total = "
                                f"{self._meta.totals.tolist()} is not the sum of the files' NumPart_ThisFile "
                                f"{counts.sum(axis=0).tolist()}")
        return counts

    def halos(self) -> list[CatalogHalo]:
        """Every FoF group with ``Group_M_Mean200`` > 0, id = global group index, internal units."""
        groups, units = _read_groups(self._catalog, self._meta)
        _check_lengths(groups, self._catalog, self._meta.totals, self._meta.files[0])
        lf, mf, box = units.length_mpc, units.mass_msun, self.info.box_mpc
        nan = np.full(groups["Group_M_Mean200"].shape[0], np.nan)
        m500, r500 = groups.get("Group_M_Crit500", nan), groups.get("Group_R_Crit500", nan)
        out = []
        for i in np.flatnonzero(groups["Group_M_Mean200"] > 0):
            c = np.mod(groups["GroupPos"][i] * lf, box)
            ok500 = m500[i] > 0 and r500[i] > 0
            out.append(CatalogHalo(
                halo_id=int(i), centre_mpc=(float(c[0]), float(c[1]), float(c[2])),
                m200m_msun=float(groups["Group_M_Mean200"][i] * mf), r200m_mpc=float(groups["Group_R_Mean200"][i] * lf),
                m500c_msun=float(m500[i] * mf) if ok500 else math.nan,
                r500c_mpc=float(r500[i] * lf) if ok500 else math.nan,
            ))
        return out

    def scan_extents(self) -> None:
        """Compute (and cache) the bounding box of every chunk of every file, per particle type:
        one pass over the coordinates. Done lazily by :meth:`region`; call it before pickling
        the reader to Ray workers, so that they share it."""
        for i, p in enumerate(self._meta.files):
            todo = [t for t in (_GAS, _DM) if self._counts[i, t] > 0 and (i, t) not in self._extents]
            if not todo:
                continue
            with _open(p) as f:
                for t in todo:
                    _check_fields(f, p, t, self._meta.mass_table)
                    self._extents[(i, t)] = _chunk_extents(f[f"PartType{t}"], p, t, self._chunk_rows)

    def _chunks_for(self, ptype: int, centre: np.ndarray, radius: float) -> dict[int, list[tuple[int, int]]]:
        """File index -> row ranges of ``ptype`` whose boxes meet the sphere (stored units)."""
        self.scan_extents()
        out: dict[int, list[tuple[int, int]]] = {}
        for (i, t), chunks in sorted(self._extents.items()):
            if t != ptype:
                continue
            ranges = [(a, b) for a, b, lo, hi in chunks if _overlaps(lo, hi, centre, radius, self._meta.box)]
            if ranges:
                out[i] = ranges
        return out

    def _read_type(self, ptype: int, centre: np.ndarray, radius: float) -> dict[str, np.ndarray]:
        """Fields of ``ptype`` within ``radius`` of ``centre`` (stored units), all files."""
        parts: list[dict[str, np.ndarray]] = []
        for i, ranges in self._chunks_for(ptype, centre, radius).items():
            p = self._meta.files[i]
            with _open(p) as f:
                _check_fields(f, p, ptype, self._meta.mass_table)
                group = f[f"PartType{ptype}"]
                names = [n for n in _REQUIRED[ptype] + _OPTIONAL[ptype] if n in group]
                parts.append(_select_chunks(group, p, ptype, names, centre, radius, self._meta.box, ranges))
        if not parts:
            return {"Coordinates": np.empty((0, 3))}
        keys = set.intersection(*(set(d) for d in parts))
        return {k: np.concatenate([d[k] for d in parts]) for k in keys}

    def _masses_msun(self, fields: dict[str, np.ndarray], ptype: int) -> np.ndarray:
        u = self._meta.units
        if "Masses" in fields:
            return fields["Masses"] * u.mass_msun
        return np.full(fields["Coordinates"].shape[0], self._meta.mass_table[ptype] * u.mass_msun)

    def _gas(self, fields: dict[str, np.ndarray]) -> GasParticles:
        u = self._meta.units
        mass = self._masses_msun(fields, _GAS)
        density = fields.get("Density", np.empty(0)) * u.density_msun_mpc3
        if "ElectronAbundance" in fields:
            x_e = fields["ElectronAbundance"]
        else:  # fully ionised H and He: 1 electron per H, 2 per He (Y / 4 He per unit mass)
            x_e = np.full(mass.shape[0], 1.0 + (1.0 - self._x) / (2.0 * self._x))
        temperature = gadget_temperature_k(fields.get("InternalEnergy", np.empty(0)) * u.energy_cm2_s2, x_e, self._x)
        if "SmoothingLength" in fields:
            support = fields["SmoothingLength"] * u.length_mpc
        else:
            support = cell_support_mpc(mass, density, self._neighbours)
        return GasParticles(pos_mpc=fields["Coordinates"] * u.length_mpc, mass_msun=mass, smoothing_length_mpc=support,
                            temperature_k=temperature, density_msun_mpc3=density)

    def region(self, centre_mpc: Sequence[float], radius_mpc: float) -> tuple[GasParticles, DarkMatterParticles]:
        """Gas and dark matter within ``radius_mpc`` [physical Mpc] of ``centre_mpc`` [physical Mpc,
        box frame], relative to it (minimum image), in internal units (see the module docstring).

        Raises
        ------
        SnapshotError
            If ``radius_mpc`` is not below half the box, or a file lacks a field it needs.
        """
        if not 0 < radius_mpc < 0.5 * self.info.box_mpc:
            raise SnapshotError(f"{self.info.path}: region radius {radius_mpc!r} Mpc must be > 0 and below half the "
                                f"box ({0.5 * self.info.box_mpc:.6g} Mpc)")
        lf = self._meta.units.length_mpc
        centre, radius = np.asarray(centre_mpc, dtype=np.float64) / lf, radius_mpc / lf
        gas = self._gas(self._read_type(_GAS, centre, radius))
        dm_fields = self._read_type(_DM, centre, radius)
        dm = DarkMatterParticles(pos_mpc=dm_fields["Coordinates"] * lf, mass_msun=self._masses_msun(dm_fields, _DM))
        return gas, dm

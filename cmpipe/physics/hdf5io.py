"""Read and write real simulation halos in HDF5: one halo per file, Gadget/SWIFT-like layout.

The layout (a data contract: files written by other codes must follow it)
--------------------------------------------------------------------------

Units are named by the ``/Header`` attributes and apply to every group. "req." says whether
the entry must be present; ``N`` is the number of particles of the group. Other groups,
datasets and attributes (``Velocities``, ``ParticleIDs``, ...) are allowed and ignored.

===============================  ====  ==========  =====================  ================================================
path                             req.  shape       unit                   meaning
===============================  ====  ==========  =====================  ================================================
``/Header`` (group)              yes
  ``Redshift`` (attr)            yes   scalar      --                     redshift z of the snapshot (float > -1)
  ``HubbleParam`` (attr)         yes   scalar      --                     h = H0 / (100 km/s/Mpc) (float > 0)
  ``LengthUnit`` (attr)          yes   string      --                     ``"Mpc"``, ``"kpc"``, ``"Mpc/h"`` or ``"kpc/h"``
  ``Comoving`` (attr)            yes   bool        --                     lengths are comoving: multiply by a = 1/(1+z)
                                                                          (bool, or integer 0/1)
  ``MassUnit`` (attr)            yes   string      --                     ``"Msun"``, ``"Msun/h"``, ``"1e10 Msun"`` or
                                                                          ``"1e10 Msun/h"``
  ``InternalEnergyUnit`` (attr)  [1]   string      --                     ``"(km/s)^2"``
  ``TemperatureUnit`` (attr)     [2]   string      --                     ``"K"``
  ``SmoothingLengthConvention``  yes   string      --                     ``"support"``: the stored value is the kernel's
  (attr)                                                                  support radius H (Gadget-2/3/4); ``"swift"``:
                                                                          SWIFT/swiftsimio h, H = 1.936492 h (3D Wendland
                                                                          C2); ``"pynbody"``: H = 2 h
  ``Kernel`` (attr)              yes   string      --                     ``"WendlandC2"``
``/Halo`` (group)                yes
  ``HaloID`` (attr)              yes   scalar      --                     integer, unique within a source
  ``M200m`` (attr)               yes   scalar      MassUnit               mass within R200m (> 0)
  ``R200m`` (attr)               yes   scalar      LengthUnit             radius enclosing 200 x the mean matter density
                                                                          (> 0)
  ``Centre`` (attr)              yes   (3,)        LengthUnit             halo centre in the simulation frame
  ``BoxSize`` (attr)             no    () or (3,)  LengthUnit             periodic box side(s): coordinates are wrapped
                                                                          around the centre (minimum image)
  ``M500c`` (attr)               no    scalar      MassUnit               mass within R500c (> 0); NaN when absent
  ``R500c`` (attr)               no    scalar      LengthUnit             radius enclosing 500 x the critical density
                                                                          (> 0); NaN when absent
``/PartType0`` (group, gas)      yes
  ``Coordinates``                yes   (N, 3)      LengthUnit             absolute positions (simulation frame)
  ``Masses``                     yes   (N,)        MassUnit               particle masses (> 0)
  ``Density``                    no    (N,)        MassUnit/LengthUnit^3  SPH density (> 0)
  ``InternalEnergy``             [3]   (N,)        InternalEnergyUnit     specific internal energy u (> 0), physical
                                                                          (no a-factor)
  ``Temperature``                [3]   (N,)        TemperatureUnit        temperature (> 0)
  ``SmoothingLength``            no    (N,)        LengthUnit             per ``SmoothingLengthConvention`` (> 0)
``/PartType1`` (group, DM)       yes
  ``Coordinates``                yes   (N, 3)      LengthUnit             absolute positions (simulation frame)
  ``Masses``                     yes   (N,)        MassUnit               particle masses (> 0)
  ``SmoothingLength``            no    (N,)        LengthUnit             per ``SmoothingLengthConvention`` (> 0)
===============================  ====  ==========  =====================  ================================================

| [1] required when ``/PartType0/InternalEnergy`` is present; checked whenever present.
| [2] required when ``/PartType0/Temperature`` is present; checked whenever present.
| [3] exactly one of ``InternalEnergy`` and ``Temperature``.

Datasets hold real numbers (integer or floating point; read as float64) and must be finite.
``Comoving`` applies to lengths only (coordinates, ``Centre``, ``R200m``, ``BoxSize``, smoothing
lengths, and densities through LengthUnit^3); ``InternalEnergy`` is physical (SWIFT stores a
comoving u with a-exponent -2: convert it before writing this layout).

Conversion to cmpipe's internal units happens once, in :func:`read_halo_hdf5`: positions become
physical Mpc relative to ``Centre`` (after the periodic wrap when ``BoxSize`` is given), masses
Msun, densities Msun Mpc^-3 (physical), smoothing lengths the support radius H in physical Mpc,
and internal energies temperatures, ``T = (gamma - 1) u mu m_p / k_B`` with gamma = 5/3 and the
reader's ``mean_molecular_weight`` mu (default 0.588, fully ionised primordial gas with X = 0.76).

Every problem raises :class:`~cmpipe.physics.halo.HaloError` (a ``ValueError``) whose message
names the file, the halo id (``halo <unknown>`` before ``/Halo/HaloID`` has been read) and the
attribute or dataset, with what the layout expects there.

Files and directories may be object-store URLs (``s3://bucket/halos/``; :mod:`cmpipe.store.location`):
h5py reads through an fsspec file object, fetching only the byte ranges it needs (the index of
an :class:`HDF5HaloSource` reads attributes, not particles). A halo file is written whole: built
in memory, then one PUT (an object store has no rename); without ``overwrite`` an existing
object is checked for just before the PUT (one writer per halo, as in ``extract-halos``, where
each halo belongs to one task). A missing bucket or unknown scheme raises
:class:`~cmpipe.store.location.LocationError` naming the URL.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import operator
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cmpipe.physics import units
from cmpipe.physics.halo import DarkMatterParticles, GasParticles, Halo, HaloError, HaloProperties
from cmpipe.store.location import as_path, check_reachable, is_remote, write_bytes_atomic

__all__ = [
    "HALO_FILE_SUFFIXES",
    "HDF5HaloSource",
    "read_halo_hdf5",
    "read_halo_properties_hdf5",
    "write_halo_hdf5",
]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike

#: File name suffixes an :class:`HDF5HaloSource` picks up in a directory.
HALO_FILE_SUFFIXES: tuple[str, ...] = (".hdf5", ".h5")
_THERMAL_FIELDS: tuple[str, ...] = ("Temperature", "InternalEnergy")
_GAS, _DM = "PartType0", "PartType1"

#: What the layout expects of each entry, quoted in error messages.
_EXPECT: dict[str, str] = {
    "/Header": "a group holding the unit attributes",
    "/Halo": "a group holding HaloID, M200m, R200m, Centre (and optionally BoxSize)",
    f"/{_GAS}": "a group holding the gas particle datasets",
    f"/{_DM}": "a group holding the dark-matter particle datasets",
    "/Header/Redshift": "a finite float > -1",
    "/Header/HubbleParam": "a finite float > 0",
    "/Header/Comoving": "a bool (or integer 0/1)",
    "/Header/LengthUnit": f"one of {', '.join(map(repr, units.LENGTH_UNITS))}",
    "/Header/MassUnit": f"one of {', '.join(map(repr, units.MASS_UNITS))}",
    "/Header/InternalEnergyUnit": f"one of {', '.join(map(repr, units.INTERNAL_ENERGY_UNITS))}",
    "/Header/TemperatureUnit": f"one of {', '.join(map(repr, units.TEMPERATURE_UNITS))}",
    "/Header/SmoothingLengthConvention": f"one of {', '.join(map(repr, units.SMOOTHING_CONVENTIONS))}",
    "/Header/Kernel": f"one of {', '.join(map(repr, units.KERNELS))}",
    "/Halo/HaloID": "an integer",
    "/Halo/M200m": "a finite float > 0 in MassUnit",
    "/Halo/R200m": "a finite float > 0 in LengthUnit",
    "/Halo/Centre": "3 finite floats in LengthUnit",
    "/Halo/BoxSize": "a finite float > 0, or 3 of them, in LengthUnit",
    "/Halo/M500c": "a finite float > 0 in MassUnit (or absent)",
    "/Halo/R500c": "a finite float > 0 in LengthUnit (or absent)",
    "Coordinates": "an (N, 3) real array in LengthUnit",
    "Masses": "an (N,) real array in MassUnit, > 0",
    "Density": "an (N,) real array in MassUnit/LengthUnit^3, > 0",
    "InternalEnergy": "an (N,) real array in InternalEnergyUnit, > 0",
    "Temperature": "an (N,) real array in TemperatureUnit, > 0",
    "SmoothingLength": "an (N,) real array in LengthUnit, > 0",
}


# ----------------------------------------------------------------------------- reading helpers


class _Ctx:
    """Where we are in a file, for error messages: path, and the halo id once known."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.halo_id: int | None = None

    @property
    def where(self) -> str:
        hid = "<unknown>" if self.halo_id is None else str(self.halo_id)
        return f"{self.path}, halo {hid}"

    def error(self, entry: str, problem: str, cls: type[HaloError] = HaloError, expect: str | None = None) -> HaloError:
        """An error about ``entry`` (``/Group``, ``/Group/Name``), with what the layout expects there."""
        if entry.count("/") == 1:
            kind = "group"
        else:
            kind = "attribute" if entry.startswith(("/Header/", "/Halo/")) else "dataset"
        if expect is None:
            expect = _EXPECT.get(entry) or _EXPECT.get(entry.rsplit("/", 1)[-1], "")
        tail = f"; the layout expects {expect}" if expect else ""
        return cls(f"{self.where}, {kind} {entry}: {problem}{tail}")


@contextlib.contextmanager
def _open(path: Any) -> Iterator[h5py.File]:
    """Open ``path`` (local, or a URL read through an fsspec file object) read-only, turning every
    failure to open it into a :class:`HaloError`."""
    if not path.exists():
        raise HaloError(f"{path}: file does not exist")
    if path.is_dir():
        raise HaloError(f"{path}: is a directory, not an HDF5 halo file")
    if not is_remote(path):
        try:
            if not h5py.is_hdf5(path):
                raise HaloError(f"{path}: not an HDF5 file (no HDF5 signature)")
            f = h5py.File(path, "r")
        except OSError as e:
            raise HaloError(f"{path}: cannot open as HDF5 ({e})") from e
        with f:
            yield f
        return
    with path.open("rb") as raw:
        try:
            f = h5py.File(raw, "r")
        except OSError as e:
            raise HaloError(f"{path}: not an HDF5 file, or cannot open it as HDF5 ({e})") from e
        with f:
            yield f


def _group(ctx: _Ctx, f: h5py.File, name: str) -> h5py.Group:
    obj = f.get(name)
    if obj is None:
        raise ctx.error(f"/{name}", "missing")
    if not isinstance(obj, h5py.Group):
        raise ctx.error(f"/{name}", "is not a group")
    return obj


def _raw_attr(ctx: _Ctx, group: h5py.Group, name: str, required: bool = True) -> object:
    entry = f"{group.name}/{name}"
    if name not in group.attrs:
        if required:
            raise ctx.error(entry, "missing", units.UnitError if group.name == "/Header" else HaloError)
        return None
    try:
        return group.attrs[name]
    except (OSError, TypeError) as e:  # unreadable attribute type
        raise ctx.error(entry, f"cannot be read ({e})") from e


def _as_str(value: object) -> object:
    """Decode HDF5 string flavours (bytes, numpy scalars, 1-element arrays) to ``str``."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, np.str_):
        return str(value)
    return value


def _show(value: object) -> object:
    """A plain-Python view of an attribute value for messages (``2``, not ``np.int64(2)``)."""
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def _str_attr(ctx: _Ctx, group: h5py.Group, name: str, accepted: tuple[str, ...], required: bool = True) -> str | None:
    raw = _raw_attr(ctx, group, name, required)
    if raw is None:
        return None
    value = _as_str(raw)
    if not isinstance(value, str) or value not in accepted:
        raise ctx.error(f"{group.name}/{name}", f"value {_show(value)!r} is not accepted", units.UnitError)
    return value


def _float_attr(ctx: _Ctx, group: h5py.Group, name: str, shapes: tuple[tuple[int, ...], ...] = ((),),
                required: bool = True) -> np.ndarray | None:
    """A real-valued attribute as a float64 array of one of ``shapes`` (1-element arrays count as scalars)."""
    raw = _raw_attr(ctx, group, name, required)
    if raw is None:
        return None
    arr = np.asarray(raw)
    entry = f"{group.name}/{name}"
    if arr.dtype.kind not in "iuf":
        raise ctx.error(entry, f"value {_show(raw)!r} is not a real number")
    if () in shapes and arr.size == 1:
        arr = arr.reshape(())
    if arr.shape not in shapes:
        raise ctx.error(entry, f"has shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ctx.error(entry, f"value {_show(raw)!r} is not finite")
    return arr


def _int_attr(ctx: _Ctx, group: h5py.Group, name: str) -> int:
    raw = _raw_attr(ctx, group, name)
    arr = np.asarray(raw)
    if arr.dtype.kind not in "iu" or arr.size != 1:
        raise ctx.error(f"{group.name}/{name}", f"value {_show(raw)!r} is not an integer")
    return int(arr.reshape(-1)[0])


def _bool_attr(ctx: _Ctx, group: h5py.Group, name: str) -> bool:
    raw = _raw_attr(ctx, group, name)
    arr = np.asarray(raw)
    if arr.size == 1 and (arr.dtype.kind == "b" or (arr.dtype.kind in "iu" and int(arr.reshape(-1)[0]) in (0, 1))):
        return bool(arr.reshape(-1)[0])
    raise ctx.error(f"{group.name}/{name}", f"value {_show(raw)!r} is not a bool", units.UnitError)


@dataclass(frozen=True)
class _Header:
    """The parsed ``/Header`` and ``/Halo`` of one file, with its unit factors to internal units."""

    redshift: float
    h: float
    comoving: bool
    length_unit: str
    mass_unit: str
    convention: str
    kernel: str
    internal_energy_unit: str | None
    temperature_unit: str | None
    length_mpc: float  # stored length * length_mpc = physical Mpc
    mass_msun: float  # stored mass * mass_msun = Msun
    support: float  # stored smoothing length * support = H (same length unit)
    centre: np.ndarray  # (3,) in the file's length unit
    box: np.ndarray | None  # () or (3,) in the file's length unit
    props: HaloProperties


def _read_header(ctx: _Ctx, f: h5py.File) -> _Header:
    """Parse ``/Halo`` (HaloID first, so later messages name the halo) and ``/Header``."""
    halo = _group(ctx, f, "Halo")
    ctx.halo_id = _int_attr(ctx, halo, "HaloID")
    hdr = _group(ctx, f, "Header")
    z = float(_float_attr(ctx, hdr, "Redshift"))
    if z <= -1:
        raise ctx.error("/Header/Redshift", f"value {z!r} is not > -1")
    h = float(_float_attr(ctx, hdr, "HubbleParam"))
    if h <= 0:
        raise ctx.error("/Header/HubbleParam", f"value {h!r} is not > 0")
    length_unit = _str_attr(ctx, hdr, "LengthUnit", units.LENGTH_UNITS)
    comoving = _bool_attr(ctx, hdr, "Comoving")
    mass_unit = _str_attr(ctx, hdr, "MassUnit", units.MASS_UNITS)
    convention = _str_attr(ctx, hdr, "SmoothingLengthConvention", units.SMOOTHING_CONVENTIONS)
    kernel = _str_attr(ctx, hdr, "Kernel", units.KERNELS)
    u_unit = _str_attr(ctx, hdr, "InternalEnergyUnit", units.INTERNAL_ENERGY_UNITS, required=False)
    t_unit = _str_attr(ctx, hdr, "TemperatureUnit", units.TEMPERATURE_UNITS, required=False)
    assert length_unit is not None and mass_unit is not None and convention is not None and kernel is not None
    lf = units.length_to_mpc(length_unit, h, z, comoving)
    mf = units.mass_to_msun(mass_unit, h)
    sf = units.smoothing_length_to_support(convention, kernel)

    m200 = float(_float_attr(ctx, halo, "M200m"))
    r200 = float(_float_attr(ctx, halo, "R200m"))
    for name, value in (("M200m", m200), ("R200m", r200)):
        if value <= 0:
            raise ctx.error(f"/Halo/{name}", f"value {value!r} is not > 0")
    centre = _float_attr(ctx, halo, "Centre", shapes=((3,),))
    box = _float_attr(ctx, halo, "BoxSize", shapes=((), (3,)), required=False)
    if box is not None and np.any(box <= 0):
        raise ctx.error("/Halo/BoxSize", f"value {box.tolist()!r} is not > 0")
    assert centre is not None
    c = centre * lf
    props = HaloProperties(
        halo_id=ctx.halo_id,
        m200m_msun=m200 * mf,
        r200m_mpc=r200 * lf,
        centre_mpc=(float(c[0]), float(c[1]), float(c[2])),
        redshift=z,
        m500c_msun=_optional_positive(ctx, halo, "M500c", mf),
        r500c_mpc=_optional_positive(ctx, halo, "R500c", lf),
    )
    return _Header(z, h, comoving, length_unit, mass_unit, convention, kernel, u_unit, t_unit,
                   lf, mf, sf, centre, box, props)


def _optional_positive(ctx: _Ctx, group: h5py.Group, name: str, factor: float) -> float:
    """An optional scalar attribute > 0 times ``factor``; ``math.nan`` itself when absent (so
    that properties read back compare equal to the defaults of :class:`HaloProperties`)."""
    value = _float_attr(ctx, group, name, required=False)
    if value is None:
        return math.nan
    if float(value) <= 0:
        raise ctx.error(f"{group.name}/{name}", f"value {float(value)!r} is not > 0")
    return float(value) * factor


def _datasets(ctx: _Ctx, group: h5py.Group, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, h5py.Dataset]:
    """The group's datasets of interest, with their shapes and lengths checked (no data read)."""
    found: dict[str, h5py.Dataset] = {}
    for name in required + optional:
        entry = f"{group.name}/{name}"
        obj = group.get(name)
        if obj is None:
            if name in required:
                raise ctx.error(entry, "missing")
            continue
        if not isinstance(obj, h5py.Dataset):
            raise ctx.error(entry, "is not a dataset")
        if obj.dtype.kind not in "iuf":
            raise ctx.error(entry, f"has dtype {obj.dtype}, not a real number type")
        want_ndim = 2 if name == "Coordinates" else 1
        if len(obj.shape) != want_ndim or (name == "Coordinates" and obj.shape[1] != 3):
            raise ctx.error(entry, f"has shape {obj.shape}")
        found[name] = obj
    n = found["Coordinates"].shape[0]
    for name, ds in found.items():
        if ds.shape[0] != n:
            raise ctx.error(
                f"{group.name}/{name}",
                f"has {ds.shape[0]} entries but {group.name}/Coordinates has {n} (mismatched array lengths)",
            )
    return found


def _read(ctx: _Ctx, ds: h5py.Dataset, positive: bool) -> np.ndarray:
    try:
        arr = np.asarray(ds[()], dtype=np.float64)
    except (OSError, TypeError, ValueError) as e:
        raise ctx.error(ds.name, f"cannot be read ({e})") from e
    bad = ~np.isfinite(arr)
    if np.any(bad):
        raise ctx.error(ds.name, f"holds {int(np.count_nonzero(bad))} non-finite values (NaN or inf)")
    if positive:
        bad = arr <= 0
        if np.any(bad):
            raise ctx.error(ds.name, f"holds {int(np.count_nonzero(bad))} negative or zero values")
    return arr


def _positions(ctx: _Ctx, ds: h5py.Dataset, hdr: _Header) -> np.ndarray:
    """Absolute stored coordinates -> physical Mpc relative to the centre (minimum image if periodic)."""
    rel = _read(ctx, ds, positive=False) - hdr.centre
    if hdr.box is not None:
        rel -= hdr.box * np.round(rel / hdr.box)
    return rel * hdr.length_mpc


def _smoothing(ctx: _Ctx, found: dict[str, h5py.Dataset], hdr: _Header) -> np.ndarray | None:
    ds = found.get("SmoothingLength")
    return None if ds is None else _read(ctx, ds, positive=True) * (hdr.support * hdr.length_mpc)


# ----------------------------------------------------------------------------- public readers


def read_halo_properties_hdf5(path: PathLike) -> HaloProperties:
    """Scalar properties of the halo in ``path``, from attributes only (no particle data read).

    Parameters
    ----------
    path : str or os.PathLike
        A halo file in the layout of this module.

    Returns
    -------
    HaloProperties
        Id, M200m [Msun], R200m [physical Mpc], centre [physical Mpc, simulation frame], redshift,
        M500c [Msun] and R500c [physical Mpc] (NaN when the file has none).

    Raises
    ------
    HaloError
        If the file is missing, not HDF5, or ``/Header`` or ``/Halo`` break the layout.
    """
    p = as_path(path)
    ctx = _Ctx(p)
    with _open(p) as f:
        return _read_header(ctx, f).props


def read_halo_hdf5(path: PathLike, *, mean_molecular_weight: float = units.MU_PRIMORDIAL_IONISED) -> Halo:
    """Read one halo file, converting everything to cmpipe's internal units.

    Parameters
    ----------
    path : str or os.PathLike
        A halo file in the layout of this module.
    mean_molecular_weight : float
        mu used to turn ``InternalEnergy`` into temperature, in proton masses; default 0.588
        (fully ionised primordial gas, X = 0.76). Unused when the file stores ``Temperature``.

    Returns
    -------
    Halo
        Validated: positions (N, 3) physical Mpc relative to the centre, masses Msun, densities
        Msun Mpc^-3 (physical), temperatures K, smoothing lengths the support radius H in Mpc.

    Raises
    ------
    HaloError
        Naming the file, the halo id and the field, for any departure from the layout.
    """
    p = as_path(path)
    ctx = _Ctx(p)
    with _open(p) as f:
        hdr = _read_header(ctx, f)

        g = _group(ctx, f, _GAS)
        found = _datasets(ctx, g, ("Coordinates", "Masses"), ("Density", "InternalEnergy", "Temperature", "SmoothingLength"))
        thermal = [name for name in _THERMAL_FIELDS if name in found]
        if len(thermal) != 1:
            what = "both" if thermal else "neither"
            raise ctx.error(
                f"/{_GAS}",
                f"{what} of datasets InternalEnergy and Temperature present",
                expect="exactly one of /PartType0/InternalEnergy and /PartType0/Temperature",
            )
        if thermal[0] == "Temperature":
            if hdr.temperature_unit is None:
                raise ctx.error("/Header/TemperatureUnit", f"missing (required with /{_GAS}/Temperature)", units.UnitError)
            temperature = _read(ctx, found["Temperature"], positive=True)
        else:
            if hdr.internal_energy_unit is None:
                raise ctx.error(
                    "/Header/InternalEnergyUnit", f"missing (required with /{_GAS}/InternalEnergy)", units.UnitError
                )
            k = units.internal_energy_to_kelvin(hdr.internal_energy_unit, mean_molecular_weight)
            temperature = _read(ctx, found["InternalEnergy"], positive=True) * k
        density = None
        if "Density" in found:
            density = _read(ctx, found["Density"], positive=True) * (hdr.mass_msun / hdr.length_mpc**3)
        gas = GasParticles(
            pos_mpc=_positions(ctx, found["Coordinates"], hdr),
            mass_msun=_read(ctx, found["Masses"], positive=True) * hdr.mass_msun,
            smoothing_length_mpc=_smoothing(ctx, found, hdr),
            temperature_k=temperature,
            density_msun_mpc3=density,
        )

        g = _group(ctx, f, _DM)
        found = _datasets(ctx, g, ("Coordinates", "Masses"), ("SmoothingLength",))
        dm = DarkMatterParticles(
            pos_mpc=_positions(ctx, found["Coordinates"], hdr),
            mass_msun=_read(ctx, found["Masses"], positive=True) * hdr.mass_msun,
            smoothing_length_mpc=_smoothing(ctx, found, hdr),
        )
    halo = Halo(props=hdr.props, gas=gas, dm=dm).validate(source=str(p))
    logger.debug("read halo %d from %s: %d gas, %d dark-matter particles", hdr.props.halo_id, p, gas.n, dm.n)
    return halo


# ----------------------------------------------------------------------------- writer


def _write_header(
    f: h5py.File, props: HaloProperties, centre: np.ndarray, *, h: float, length_unit: str, comoving: bool,
    mass_unit: str, smoothing_convention: str, lf: float, mf: float,
) -> None:
    """The ``Header`` and ``Halo`` groups of :func:`write_halo_hdf5` (``lf``, ``mf``: the file's
    length and mass units in Mpc and Msun)."""
    hdr = f.create_group("Header")
    hdr.attrs["Redshift"] = float(props.redshift)
    hdr.attrs["HubbleParam"] = float(h)
    hdr.attrs["LengthUnit"] = length_unit
    hdr.attrs["Comoving"] = np.bool_(comoving)
    hdr.attrs["MassUnit"] = mass_unit
    hdr.attrs["InternalEnergyUnit"] = units.INTERNAL_ENERGY_UNITS[0]
    hdr.attrs["TemperatureUnit"] = units.TEMPERATURE_UNITS[0]
    hdr.attrs["SmoothingLengthConvention"] = smoothing_convention
    hdr.attrs["Kernel"] = units.KERNELS[0]

    hal = f.create_group("Halo")
    hal.attrs["HaloID"] = np.int64(props.halo_id)
    hal.attrs["M200m"] = float(props.m200m_msun) / mf
    hal.attrs["R200m"] = float(props.r200m_mpc) / lf
    hal.attrs["Centre"] = centre / lf
    if math.isfinite(props.m500c_msun) and math.isfinite(props.r500c_mpc):
        hal.attrs["M500c"] = float(props.m500c_msun) / mf
        hal.attrs["R500c"] = float(props.r500c_mpc) / lf


def write_halo_hdf5(
    path: PathLike,
    halo: Halo,
    *,
    length_unit: str = "Mpc",
    mass_unit: str = "Msun",
    smoothing_convention: str = "support",
    thermal: str = "Temperature",
    h: float = 0.7,
    comoving: bool = False,
    overwrite: bool = False,
    mean_molecular_weight: float = units.MU_PRIMORDIAL_IONISED,
) -> Path:
    """Write ``halo`` (internal units) to ``path`` in this module's layout and units.

    The file is written to a hidden temporary file in the same directory and renamed into
    place, so readers never see a partial file; at a URL it is built in memory and written in
    one PUT.

    Parameters
    ----------
    path : str, os.PathLike or URL
        Destination file (``.hdf5`` or ``.h5`` to be found by :class:`HDF5HaloSource`).
    halo : Halo
        The halo, in cmpipe's internal units; validated before writing.
    length_unit : str
        ``LengthUnit`` of the file: ``"Mpc"``, ``"kpc"``, ``"Mpc/h"`` or ``"kpc/h"``.
    mass_unit : str
        ``MassUnit``: ``"Msun"``, ``"Msun/h"``, ``"1e10 Msun"`` or ``"1e10 Msun/h"``.
    smoothing_convention : str
        ``SmoothingLengthConvention``: ``"support"``, ``"swift"`` or ``"pynbody"``.
    thermal : str
        ``"Temperature"`` (K) or ``"InternalEnergy"`` ((km/s)^2, using ``mean_molecular_weight``).
    h : float
        ``HubbleParam``, used by the ``/h`` units.
    comoving : bool
        Write comoving lengths (physical * (1 + z), z = ``halo.props.redshift``).
    overwrite : bool
        Replace an existing file; otherwise an existing ``path`` raises ``FileExistsError``.
    mean_molecular_weight : float
        mu for ``thermal="InternalEnergy"``; read the file back with the same value.

    Returns
    -------
    pathlib.Path or upath.UPath
        ``path``.

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is false.
    ValueError
        (:class:`~cmpipe.physics.units.UnitError`) for an unknown unit, convention or ``thermal``;
        :class:`HaloError` if ``halo`` does not validate.
    """
    p = as_path(path)
    halo.validate(source=f"{p} (writing)")
    units.check_choice("thermal", thermal, _THERMAL_FIELDS)
    props = halo.props
    centre = np.asarray(props.centre_mpc, dtype=np.float64)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise HaloError(f"{p} (writing), halo {props.halo_id}: centre_mpc = {props.centre_mpc!r} must be 3 finite floats")
    lf = units.length_to_mpc(length_unit, h, props.redshift, comoving)
    mf = units.mass_to_msun(mass_unit, h)
    sf = units.smoothing_length_to_support(smoothing_convention, "WendlandC2")
    kelvin_per_u = units.internal_energy_to_kelvin("(km/s)^2", mean_molecular_weight) if thermal == "InternalEnergy" else 1.0
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    if not is_remote(p) and not p.parent.is_dir():
        raise FileNotFoundError(f"{p}: directory {p.parent} does not exist")

    def fill(f: h5py.File) -> None:
        _write_header(f, props, centre, h=h, length_unit=length_unit, comoving=comoving, mass_unit=mass_unit,
                      smoothing_convention=smoothing_convention, lf=lf, mf=mf)
        _write_particles(f, halo, centre, lf=lf, mf=mf, sf=sf, thermal=thermal, kelvin_per_u=kelvin_per_u)

    if is_remote(p):
        _put_whole(p, fill, overwrite)
    else:
        _write_local(p, fill, overwrite)
    logger.debug("wrote halo %d to %s (%s, %s, %s)", props.halo_id, p, length_unit, mass_unit, smoothing_convention)
    return p


def _write_particles(f: h5py.File, halo: Halo, centre: np.ndarray, *, lf: float, mf: float, sf: float, thermal: str,
                     kelvin_per_u: float) -> None:
    """The ``PartType0`` and ``PartType1`` groups of :func:`write_halo_hdf5` (``lf``, ``mf``: the
    file's length and mass units in Mpc and Msun; ``sf``: stored smoothing length to support;
    ``kelvin_per_u``: K per unit of the stored thermal field)."""

    def particles(name: str, part: DarkMatterParticles) -> h5py.Group:
        g = f.create_group(name)
        g.create_dataset("Coordinates", data=(centre + np.asarray(part.pos_mpc, dtype=np.float64)) / lf)
        g.create_dataset("Masses", data=np.asarray(part.mass_msun, dtype=np.float64) / mf)
        if part.smoothing_length_mpc is not None:
            g.create_dataset("SmoothingLength", data=np.asarray(part.smoothing_length_mpc, dtype=np.float64) / (sf * lf))
        return g

    gas = particles(_GAS, halo.gas)
    if halo.gas.density_msun_mpc3 is not None:
        gas.create_dataset("Density", data=np.asarray(halo.gas.density_msun_mpc3, dtype=np.float64) * (lf**3 / mf))
    gas.create_dataset(thermal, data=np.asarray(halo.gas.temperature_k, dtype=np.float64) / kelvin_per_u)
    particles(_DM, halo.dm)


def _write_local(p: Path, fill: Any, overwrite: bool) -> None:
    """``fill(h5py.File)`` into a hidden temporary file beside ``p``, then renamed (``overwrite``)
    or hard-linked without replacing (no-clobber) into place."""
    tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}.tmp")
    try:
        with h5py.File(tmp, "w-") as f:
            fill(f)
        if overwrite:
            os.replace(tmp, p)
        else:
            _link_no_clobber(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def _put_whole(p: Any, fill: Any, overwrite: bool) -> None:
    """``fill(h5py.File)`` in memory, then one PUT of the whole file to the URL ``p``. Without
    ``overwrite`` an existing object is refused, checked just before the PUT (object stores have
    no atomic no-clobber rename; one writer per halo makes the check enough)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        fill(f)
    if not overwrite and p.exists():
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it")
    write_bytes_atomic(p, buffer.getvalue())


def _link_no_clobber(src: Path, dst: Path) -> None:
    """Make ``src`` appear at ``dst`` atomically, failing if ``dst`` exists."""
    try:
        os.link(src, dst)  # atomic and refuses to replace; ``src`` is unlinked by the caller
    except FileExistsError:
        raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it") from None
    except OSError:  # no hard links on this file system: check, then rename
        if dst.exists():
            raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it") from None
        os.replace(src, dst)


# ----------------------------------------------------------------------------- source


def _expand(item: PathLike) -> list[Path]:
    """The halo files of ``item`` (a file or a directory; a URL, or a local path made absolute)."""
    check_reachable(as_path(item), "halo source")
    p = _expand_label(item)
    if p.is_dir():
        files = sorted(
            q for q in p.iterdir() if q.suffix in HALO_FILE_SUFFIXES and not q.name.startswith(".") and q.is_file()
        )
        if not files:
            raise HaloError(f"{p}: directory holds no {' or '.join('*' + s for s in HALO_FILE_SUFFIXES)} files")
        return files
    if not p.exists():
        raise HaloError(f"{p}: file does not exist")
    return [p]


def _expand_label(item: PathLike) -> Any:
    """``item`` as the source names it: a URL, or the absolute local path."""
    p = as_path(item)
    return p if is_remote(p) else p.absolute()


class HDF5HaloSource:
    """A :class:`~cmpipe.physics.halo.HaloSource` over halo files in this module's layout.

    Construction only lists files (cheap); the halo id -> file index is built from the files'
    attributes on first use and travels with the object when pickled (Ray ships it to workers).

    Parameters
    ----------
    paths : str, os.PathLike, URL, or iterable of them
        A halo file, a directory (every ``*.hdf5`` and ``*.h5`` file directly in it, hidden
        files excepted), or a list of files and directories. Local paths are made absolute;
        URLs (``s3://bucket/halos``) are read through fsspec.
    mean_molecular_weight : float
        Passed to :func:`read_halo_hdf5` for files storing ``InternalEnergy``.

    Raises
    ------
    HaloError
        If a path does not exist or a directory holds no halo files (at construction), or if
        two files hold the same ``HaloID`` (when the index is built; the message names both).
    """

    def __init__(
        self,
        paths: PathLike | Iterable[PathLike],
        *,
        mean_molecular_weight: float = units.MU_PRIMORDIAL_IONISED,
    ) -> None:
        items = [paths] if isinstance(paths, (str, os.PathLike)) or is_remote(paths) else list(paths)
        if not items:
            raise HaloError("HDF5HaloSource: no paths given")
        files: dict[Path, None] = {}
        for item in items:
            files.update(dict.fromkeys(_expand(item)))
        self._label = str(_expand_label(items[0])) if len(items) == 1 else f"{len(items)} paths"
        self._files: tuple[Path, ...] = tuple(files)
        self._mu = float(mean_molecular_weight)
        self._index: dict[int, tuple[Path, HaloProperties]] | None = None

    def __repr__(self) -> str:
        return f"HDF5HaloSource({self._label!r}, {len(self._files)} files)"

    def __len__(self) -> int:
        return len(self._files)

    @property
    def files(self) -> tuple[Path, ...]:
        """The halo files, absolute, in sorted-per-directory order."""
        return self._files

    def _ensure_index(self) -> dict[int, tuple[Path, HaloProperties]]:
        if self._index is None:
            index: dict[int, tuple[Path, HaloProperties]] = {}
            for path in self._files:
                props = read_halo_properties_hdf5(path)
                if props.halo_id in index:
                    raise HaloError(
                        f"halo {props.halo_id} appears in two files of {self!r}: {index[props.halo_id][0]} and {path}"
                    )
                index[props.halo_id] = (path, props)
            self._index = dict(sorted(index.items()))
        return self._index

    def _entry(self, halo_id: int) -> tuple[Path, HaloProperties]:
        index = self._ensure_index()
        try:
            return index[operator.index(halo_id)]
        except (KeyError, TypeError):
            raise KeyError(f"halo {halo_id!r} is not in {self!r}") from None

    def halo_ids(self) -> tuple[int, ...]:
        """All halo ids, ascending."""
        return tuple(self._ensure_index())

    def path(self, halo_id: int) -> Path:
        """The file holding ``halo_id``; ``KeyError`` naming the id and source if unknown."""
        return self._entry(halo_id)[0]

    def properties(self, halo_id: int) -> HaloProperties:
        """Scalar properties of one halo, from the file's attributes only."""
        return self._entry(halo_id)[1]

    def load(self, halo_id: int) -> Halo:
        """Read and validate one halo, in internal units."""
        path, _ = self._entry(halo_id)
        halo = read_halo_hdf5(path, mean_molecular_weight=self._mu)
        if halo.props.halo_id != operator.index(halo_id):
            raise HaloError(f"{path}: holds halo {halo.props.halo_id}, indexed as halo {halo_id}; file changed?")
        return halo

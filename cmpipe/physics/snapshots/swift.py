"""SWIFT snapshots through swiftsimio, with SOAP or VELOCIraptor halo catalogs.

:class:`SwiftSnapshot` implements :class:`~cmpipe.physics.snapshots.base.SnapshotReader`.
Conversions, each done once here:

- **Units** come from the snapshot's own metadata through swiftsimio's ``cosmo_array``
  (unyt units plus the a-exponent of every dataset): ``.to_physical()`` then physical Mpc,
  Msun, K, Msun Mpc^-3.
- **Smoothing lengths**: SWIFT stores the kernel's ``h`` (twice its standard deviation), not
  the support radius; ``H = gamma_K h`` with ``gamma_K`` of the snapshot's kernel
  (``HydroScheme/Kernel function``; 1.936492 for the 3D Wendland C2 kernel,
  :data:`cmpipe.physics.units.SWIFT_KERNEL_GAMMA`).
- **Temperature** from ``Temperatures`` where the snapshot has it, else from the physical
  specific internal energy: ``T = (gamma - 1) mu m_p u / k_B`` with hydrogen mass fraction
  0.76 and *full ionisation* (mu = 0.588), ``gamma`` the snapshot's adiabatic index (5/3 if
  absent). This is wrong for cold, neutral gas (which hardly enters SZ or X-ray maps).
- **Region reads**: a ``swiftsimio.mask`` ``constrain_spatial`` box over the top-level cell
  metadata (``Cells``) reads only the cells the sphere touches; swiftsimio matches the box
  against the periodic copies of each cell, so a region across the box edge needs one box
  with bounds in ``[-L/2, 3L/2]``. A snapshot without cell metadata (initial conditions) is
  read whole, with a log message.
- **Catalogs** (detected from the file): SOAP (``SO/200_mean/TotalMass``, ``SORadius``,
  ``InputHalos/HaloCentre``, ``SO/500_crit/...``; units from each dataset's "Conversion factor
  to physical CGS" attribute) or a VELOCIraptor ``.properties`` file (``Mass_200mean``,
  ``R_200mean``, ``Xcminpot``/``Xc``..., ``SO_Mass_500_rhocrit``; units from ``UnitInfo`` and
  ``SimulationInfo``, comoving with 1/h or physical as ``Comoving_or_Physical`` says).

Stars, black holes, neutrinos, sinks and boundary particles are ignored and listed in
``info.ignored``. swiftsimio and unyt are imported lazily (``import cmpipe`` stays cheap).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmpipe.physics import units
from cmpipe.physics.halo import DarkMatterParticles, GasParticles
from cmpipe.physics.snapshots.base import CatalogHalo, SnapshotError, SnapshotInfo, wrap_relative

__all__ = [
    "HYDROGEN_MASS_FRACTION",
    "KERNEL_GAMMA_3D",
    "SwiftMetadata",
    "SwiftSnapshot",
    "kernel_support_factor",
    "read_catalog",
    "read_swift_info",
    "region_mask",
]

logger = logging.getLogger(__name__)

#: H / h of SWIFT's 3D kernels (SWIFT's ``kernel_gamma``, src/kernel_hydro.h), by the
#: ``HydroScheme/Kernel function`` string.
KERNEL_GAMMA_3D: dict[str, float] = {
    "Cubic spline (M4)": 1.825742,
    "Quartic spline (M5)": 2.018932,
    "Quintic spline (M6)": 2.195775,
    "Wendland C2": units.SWIFT_KERNEL_GAMMA,
    "Wendland C4": 2.207940,
    "Wendland C6": 2.449490,
}
#: Hydrogen mass fraction of the temperature-from-internal-energy fallback (fully ionised).
HYDROGEN_MASS_FRACTION: float = 0.76
#: swiftsimio particle groups read (gas, dark matter) and those ignored.
_IGNORED_GROUPS: tuple[str, ...] = ("stars", "black_holes", "neutrinos", "sinks", "boundary")
#: Relative tolerance of the catalog-snapshot match (box size, scale factor).
_MATCH_RTOL = 1e-3


def _text(value: object) -> str:
    """A string attribute as str (h5py returns bytes, str or a length-1 array)."""
    if isinstance(value, np.ndarray):
        value = value.ravel()[0] if value.size else ""
    if isinstance(value, (bytes, np.bytes_)):
        return value.decode("utf-8", "replace").strip()
    return str(value).strip()


def _scalar(value: object, where: str) -> float:
    """A numeric attribute (possibly a length-1 array or a byte string) as float."""
    try:
        if isinstance(value, (bytes, np.bytes_, str)):
            return float(_text(value))
        return float(np.asarray(value, dtype=np.float64).ravel()[0])
    except (TypeError, ValueError, IndexError):
        raise SnapshotError(f"{where} = {value!r} is not a number") from None


def kernel_support_factor(kernel: str, path: str) -> float:
    """``H / h`` of the SWIFT kernel named ``kernel`` (3D); SnapshotError naming ``path`` if unknown."""
    try:
        return KERNEL_GAMMA_3D[kernel]
    except KeyError:
        raise SnapshotError(
            f"{path}: HydroScheme attribute 'Kernel function' = {kernel!r} is not a known SWIFT 3D kernel; "
            f"known: {', '.join(map(repr, KERNEL_GAMMA_3D))}"
        ) from None


@dataclass(frozen=True)
class SwiftMetadata:
    """A SWIFT snapshot's metadata as the reader uses it.

    Attributes
    ----------
    info : SnapshotInfo
        Redshift, h, physical box side [Mpc], particle counts, ignored particle types.
    scale_factor : float
        a = 1 / (1 + z), the comoving-to-physical length factor of the cell metadata.
    support_per_h : float
        ``H / h`` of the snapshot's kernel (1.936492 for Wendland C2).
    adiabatic_index : float
        The hydro scheme's gamma (5/3 where the snapshot does not say).
    has_cells : bool
        Whether the snapshot has top-level cell metadata (masked reads).
    gas_fields : frozenset of str
        Dataset names of ``PartType0``.
    """

    info: SnapshotInfo
    scale_factor: float
    support_per_h: float
    adiabatic_index: float
    has_cells: bool
    gas_fields: frozenset[str]


def _metadata_attr(md: object, name: str, path: str, field: str) -> object:
    value = getattr(md, name, None)
    if value is None:
        raise SnapshotError(f"{path}: missing {field} (not a SWIFT snapshot of a cosmological run?)")
    return value


def _hydro_kernel(md: object, path: str) -> tuple[float, float]:
    """``(H / h, adiabatic index)`` from the ``HydroScheme`` group."""
    hydro = getattr(md, "hydro_scheme", None)
    if not hydro or "Kernel function" not in hydro:
        raise SnapshotError(f"{path}: missing HydroScheme attribute 'Kernel function' (needed for H = gamma_K h)")
    dim = int(_scalar(hydro.get("Dimension", 3), f"{path}: HydroScheme/Dimension"))
    if dim != 3:
        raise SnapshotError(f"{path}: HydroScheme attribute 'Dimension' = {dim}; only 3D snapshots are read")
    factor = kernel_support_factor(_text(hydro["Kernel function"]), path)
    if "Kernel target N_ngb" in hydro:
        logger.debug("%s: kernel %s, target N_ngb %.1f", path, _text(hydro["Kernel function"]),
                     _scalar(hydro["Kernel target N_ngb"], "Kernel target N_ngb"))
    gamma = 5.0 / 3.0
    if "Adiabatic index" in hydro:
        gamma = _scalar(hydro["Adiabatic index"], f"{path}: HydroScheme/Adiabatic index")
    return factor, gamma


def _file_layout(path: str) -> tuple[bool, frozenset[str], frozenset[str]]:
    """``(has Cells, gas dataset names, dark-matter dataset names)`` straight from HDF5."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            gas = frozenset(f["PartType0"].keys()) if "PartType0" in f else frozenset()
            dm = frozenset(f["PartType1"].keys()) if "PartType1" in f else frozenset()
            return "Cells" in f, gas, dm
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot open as HDF5 ({exc})") from None


def _check_fields(path: str, gas: frozenset[str], dm: frozenset[str]) -> None:
    need = [("PartType0", gas, f) for f in ("Coordinates", "Masses", "SmoothingLengths")]
    need += [("PartType1", dm, f) for f in ("Coordinates", "Masses")]
    for group, present, name in need:
        if name not in present:
            raise SnapshotError(f"{path}: missing field {group}/{name}")
    if not gas & {"Temperatures", "InternalEnergies", "InternalEnergy"}:
        raise SnapshotError(f"{path}: missing field PartType0/Temperatures (or PartType0/InternalEnergies)")


def read_swift_info(path: str | Path) -> SwiftMetadata:
    """Read a SWIFT snapshot's metadata (no particles) and check the fields the reader needs.

    Raises
    ------
    SnapshotError
        Naming the file and the missing or unknown field or attribute.
    """
    import swiftsimio

    p = str(path)
    has_cells, gas, dm = _file_layout(p)
    _check_fields(p, gas, dm)
    try:
        md = swiftsimio.load(p).metadata
    except (KeyError, ValueError, OSError) as exc:
        raise SnapshotError(f"{p}: swiftsimio cannot read the snapshot metadata ({exc!r})") from None
    z = float(_metadata_attr(md, "redshift", p, "Header attribute 'Redshift'"))
    a = float(_metadata_attr(md, "scale_factor", p, "Header attribute 'Scale-factor'"))
    cosmo = getattr(md, "cosmology_raw", None) or {}
    if "h" not in cosmo:
        raise SnapshotError(f"{p}: missing Cosmology attribute 'h'")
    box = _metadata_attr(md, "boxsize", p, "Header attribute 'BoxSize'").to_physical().to_value("Mpc")
    if not np.allclose(box, box[0], rtol=1e-6):
        raise SnapshotError(f"{p}: Header attribute 'BoxSize' = {box} is not cubic")
    support, gamma = _hydro_kernel(md, p)
    ignored = tuple(g for g in _IGNORED_GROUPS if int(getattr(md, f"n_{g}", 0) or 0) > 0)
    info = SnapshotInfo(path=p, redshift=z, h=_scalar(cosmo["h"], f"{p}: Cosmology/h"), box_mpc=float(box[0]),
                        n_gas=int(md.n_gas), n_dm=int(md.n_dark_matter), ignored=ignored)
    return SwiftMetadata(info, a, support, gamma, has_cells, gas)


def region_mask(path: str, meta: SwiftMetadata, centre_mpc: np.ndarray, radius_mpc: float) -> object | None:
    """A ``swiftsimio.mask`` of the top-level cells overlapping the cube around a sphere.

    Parameters
    ----------
    path : str
        The snapshot.
    meta : SwiftMetadata
        Its metadata (:func:`read_swift_info`).
    centre_mpc : (3,) float64
        Sphere centre [physical Mpc], in ``[0, box)``.
    radius_mpc : float
        Sphere radius [physical Mpc], below half the box.

    Returns
    -------
    swiftsimio.masks.SWIFTMask or None
        None where the snapshot has no cell metadata (it is then read whole). The bounds are
        comoving (the cell metadata's frame) and lie in ``[-L/2, 3L/2]``, which swiftsimio
        matches against the periodic copies of each cell.
    """
    if not meta.has_cells:
        logger.info("%s has no Cells metadata: reading the whole snapshot for each region", path)
        return None
    import swiftsimio
    import unyt

    a = meta.scale_factor
    lo, hi = (centre_mpc - radius_mpc) / a, (centre_mpc + radius_mpc) / a
    mask = swiftsimio.mask(path)
    bounds = swiftsimio.cosmo_array(np.stack([lo, hi], axis=1), unyt.Mpc, comoving=True, scale_factor=a,
                                    scale_exponent=1)
    mask.constrain_spatial(bounds)
    return mask


def _physical(arr: object, unit: str) -> np.ndarray:
    """A swiftsimio cosmo_array as plain float64 in physical ``unit``."""
    return np.asarray(arr.to_physical().to_value(unit), dtype=np.float64)


def _select(group: object, centre_mpc: np.ndarray, radius_mpc: float, box_mpc: float) -> tuple[np.ndarray, np.ndarray]:
    """``(relative positions [Mpc], index)`` of the particles of ``group`` within the sphere."""
    rel = wrap_relative(_physical(group.coordinates, "Mpc"), centre_mpc, box_mpc)
    keep = np.flatnonzero(np.einsum("ij,ij->i", rel, rel) <= radius_mpc * radius_mpc)
    return rel[keep], keep


def _gas_temperature_k(gas: object, keep: np.ndarray, meta: SwiftMetadata) -> np.ndarray:
    """Temperatures [K], or from the physical internal energy with X = 0.76, full ionisation."""
    if "Temperatures" in meta.gas_fields:
        return _physical(gas.temperatures, "K")[keep]
    u = gas.internal_energies if "InternalEnergies" in meta.gas_fields else gas.internal_energy
    mu = 4.0 / (3.0 + 5.0 * HYDROGEN_MASS_FRACTION)
    factor = units.internal_energy_to_kelvin("(km/s)^2", mean_molecular_weight=mu, gamma=meta.adiabatic_index)
    return _physical(u, "km**2/s**2")[keep] * factor


def _read_gas(data: object, centre: np.ndarray, radius: float, meta: SwiftMetadata) -> GasParticles:
    gas = data.gas
    rel, keep = _select(gas, centre, radius, meta.info.box_mpc)
    density = _physical(gas.densities, "Msun/Mpc**3")[keep] if "Densities" in meta.gas_fields else None
    return GasParticles(
        pos_mpc=rel,
        mass_msun=_physical(gas.masses, "Msun")[keep],
        smoothing_length_mpc=_physical(gas.smoothing_lengths, "Mpc")[keep] * meta.support_per_h,
        temperature_k=_gas_temperature_k(gas, keep, meta),
        density_msun_mpc3=density,
    )


def _read_dm(data: object, centre: np.ndarray, radius: float, meta: SwiftMetadata) -> DarkMatterParticles:
    dm = data.dark_matter
    rel, keep = _select(dm, centre, radius, meta.info.box_mpc)
    return DarkMatterParticles(pos_mpc=rel, mass_msun=_physical(dm.masses, "Msun")[keep])


class SwiftSnapshot:
    """A SWIFT snapshot and its SOAP or VELOCIraptor catalog (a :class:`SnapshotReader`).

    Cheap to construct (metadata only) and picklable: it holds paths and small values (the
    catalog, read on the first :meth:`halos`, is cached but not pickled).

    Parameters
    ----------
    snapshot_path : str or Path
        The snapshot (a single file or the virtual file of a distributed snapshot).
    catalog_path : str or Path
        The SOAP ``halo_properties`` file or the VELOCIraptor ``.properties`` file.

    Raises
    ------
    SnapshotError
        Missing fields or metadata, an unknown kernel, or a catalog that does not match the
        snapshot (box size, redshift); the message names the file(s) and the field.
    """

    def __init__(self, snapshot_path: str | Path, catalog_path: str | Path) -> None:
        self.snapshot_path = str(snapshot_path)
        self.catalog_path = str(catalog_path)
        self._meta = read_swift_info(self.snapshot_path)
        self.info: SnapshotInfo = self._meta.info
        self._halos: tuple[CatalogHalo, ...] | None = None

    def __getstate__(self) -> dict[str, object]:
        """Pickle without the cached catalog (Ray tasks get paths and metadata, not a million halos)."""
        return {**self.__dict__, "_halos": None}

    def halos(self) -> Sequence[CatalogHalo]:
        """Every halo of the catalog with a positive M200m (field halos only), in catalog order."""
        if self._halos is None:
            self._halos = read_catalog(self.catalog_path, self.info)
        return self._halos

    def region(self, centre_mpc: Sequence[float], radius_mpc: float) -> tuple[GasParticles, DarkMatterParticles]:
        """Gas and dark matter within ``radius_mpc`` [physical Mpc] of ``centre_mpc`` [physical Mpc],
        positions relative to the centre (minimum image), in internal units (H, K, Msun Mpc^-3)."""
        import swiftsimio

        box = self.info.box_mpc
        radius = float(radius_mpc)
        if not (math.isfinite(radius) and 0.0 < radius < 0.5 * box):
            raise SnapshotError(
                f"{self.snapshot_path}: region radius {radius_mpc!r} Mpc must be in (0, box/2 = {0.5 * box:g}) Mpc"
            )
        centre = np.mod(np.asarray(centre_mpc, dtype=np.float64).reshape(3), box)
        mask = region_mask(self.snapshot_path, self._meta, centre, radius)
        data = swiftsimio.load(self.snapshot_path, mask=mask)
        return _read_gas(data, centre, radius, self._meta), _read_dm(data, centre, radius, self._meta)


# --- catalogs -------------------------------------------------------------------------------


#: SWIFT/SOAP dataset attributes: the factor to physical cgs, and the one without the a-factor.
_PHYSICAL_CGS = "Conversion factor to physical CGS (including cosmological corrections)"
_COMOVING_CGS = "Conversion factor to CGS (not including cosmological corrections)"


def _cgs_to(unit: str) -> float:
    """Size of one cgs unit (g or cm) in ``unit`` (Msun or Mpc), from unyt (swiftsimio's units)."""
    import unyt

    base = unyt.g if unit == "Msun" else unyt.cm
    return float((1.0 * base).to_value(unit))


def _soap_dataset(f: object, name: str, unit: str, a: float, path: str) -> np.ndarray:
    """A SOAP dataset in physical ``unit`` (Msun or Mpc), from its own unit attributes."""
    if name not in f:
        raise SnapshotError(f"{path}: missing SOAP field {name}")
    ds = f[name]
    attrs = ds.attrs
    if _PHYSICAL_CGS in attrs:
        cgs = _scalar(attrs[_PHYSICAL_CGS], f"{path}: {name}")
    elif _COMOVING_CGS in attrs and "a-scale exponent" in attrs:
        cgs = _scalar(attrs[_COMOVING_CGS], f"{path}: {name}")
        cgs *= a ** _scalar(attrs["a-scale exponent"], f"{path}: {name} a-scale exponent")
    else:
        raise SnapshotError(f"{path}: SOAP field {name} has no {_PHYSICAL_CGS!r} attribute (unknown units)")
    return np.asarray(ds[...], dtype=np.float64) * cgs * _cgs_to(unit)


def _soap_header(f: object, path: str) -> tuple[float, float]:
    """``(scale factor, box side [physical Mpc])`` of a SOAP file."""
    if "Header" not in f:
        raise SnapshotError(f"{path}: missing SOAP group Header")
    hdr = f["Header"].attrs
    if "BoxSize" not in hdr or not {"Scale-factor", "Redshift"} & set(hdr):
        raise SnapshotError(f"{path}: missing SOAP Header attribute 'BoxSize' or 'Scale-factor'")
    if "Scale-factor" in hdr:
        a = _scalar(hdr["Scale-factor"], f"{path}: Header/Scale-factor")
    else:
        a = 1.0 / (1.0 + _scalar(hdr["Redshift"], f"{path}: Header/Redshift"))
    length_cgs = 1.0 / _cgs_to("Mpc")  # BoxSize in comoving Mpc unless the Units group says otherwise
    if "Units" in f and "Unit length in cgs (U_L)" in f["Units"].attrs:
        length_cgs = _scalar(f["Units"].attrs["Unit length in cgs (U_L)"], f"{path}: Units/Unit length in cgs (U_L)")
    return a, _scalar(hdr["BoxSize"], f"{path}: Header/BoxSize") * length_cgs * _cgs_to("Mpc") * a


def _read_soap(f: object, path: str) -> tuple[float, float, dict[str, np.ndarray]]:
    """``(a, box [Mpc], columns)`` of a SOAP catalog, in physical Msun and Mpc."""
    a, box = _soap_header(f, path)
    cols = {
        "m200m": _soap_dataset(f, "SO/200_mean/TotalMass", "Msun", a, path),
        "r200m": _soap_dataset(f, "SO/200_mean/SORadius", "Mpc", a, path),
        "centre": _soap_dataset(f, "InputHalos/HaloCentre", "Mpc", a, path).reshape(-1, 3),
    }
    n = cols["m200m"].shape[0]
    for key, name, unit in (("m500c", "SO/500_crit/TotalMass", "Msun"), ("r500c", "SO/500_crit/SORadius", "Mpc")):
        cols[key] = _soap_dataset(f, name, unit, a, path) if name in f else np.full(n, np.nan)
    cols["id"] = np.arange(n, dtype=np.int64)
    cols["keep"] = f["InputHalos/IsCentral"][...].astype(bool) if "InputHalos/IsCentral" in f else np.ones(n, bool)
    return a, box, cols


def _vr_attrs(f: object, group: str) -> dict[str, object]:
    """VELOCIraptor attributes of ``group``, falling back to the file's root attributes."""
    out = dict(f.attrs)
    if group in f:
        out.update(dict(f[group].attrs))
    return out


def _vr_units(f: object, path: str) -> tuple[float, float, float]:
    """``(a, length factor to physical Mpc, mass factor to Msun)`` of a VELOCIraptor file."""
    unit, sim = _vr_attrs(f, "UnitInfo"), _vr_attrs(f, "SimulationInfo")
    for key, d in (("Comoving_or_Physical", unit), ("Length_unit_to_kpc", unit), ("Mass_unit_to_solarmass", unit)):
        if key not in d:
            raise SnapshotError(f"{path}: missing VELOCIraptor UnitInfo attribute {key!r}")
    a_key = "ScaleFactor" if "ScaleFactor" in sim else "Time"
    if a_key not in sim:
        raise SnapshotError(f"{path}: missing VELOCIraptor SimulationInfo attribute 'ScaleFactor'")
    a = _scalar(sim[a_key], f"{path}: SimulationInfo/{a_key}")
    length = _scalar(unit["Length_unit_to_kpc"], f"{path}: UnitInfo/Length_unit_to_kpc") * 1e-3
    mass = _scalar(unit["Mass_unit_to_solarmass"], f"{path}: UnitInfo/Mass_unit_to_solarmass")
    comoving = int(_scalar(unit["Comoving_or_Physical"], f"{path}: UnitInfo/Comoving_or_Physical"))
    if comoving not in (0, 1):
        raise SnapshotError(f"{path}: UnitInfo attribute 'Comoving_or_Physical' = {comoving} must be 0 or 1")
    if comoving:  # comoving lengths in units/h, masses in units/h
        if "h_val" not in sim:
            raise SnapshotError(f"{path}: missing VELOCIraptor SimulationInfo attribute 'h_val'")
        h = _scalar(sim["h_val"], f"{path}: SimulationInfo/h_val")
        length, mass = length * a / h, mass / h
    return a, length, mass


def _vr_column(f: object, names: Sequence[str], path: str, required: bool = True) -> np.ndarray | None:
    for name in names:
        if name in f:
            return np.asarray(f[name][...], dtype=np.float64)
    if required:
        raise SnapshotError(f"{path}: missing VELOCIraptor field {' or '.join(names)}")
    return None


def _read_velociraptor(f: object, path: str) -> tuple[float, float, dict[str, np.ndarray]]:
    """``(a, box [Mpc], columns)`` of a VELOCIraptor properties file (centre: potential minimum
    ``Xcminpot`` where present, else ``Xc``)."""
    a, length, mass = _vr_units(f, path)
    cols = {"m200m": _vr_column(f, ["Mass_200mean"], path) * mass, "r200m": _vr_column(f, ["R_200mean"], path) * length}
    xyz = [_vr_column(f, [f"{c}cminpot", f"{c}c"], path) for c in "XYZ"]
    cols["centre"] = np.stack(xyz, axis=1) * length
    n = cols["m200m"].shape[0]
    m500 = _vr_column(f, ["SO_Mass_500_rhocrit", "Mass_500crit"], path, required=False)
    r500 = _vr_column(f, ["SO_R_500_rhocrit", "R_500crit"], path, required=False)
    cols["m500c"] = m500 * mass if m500 is not None else np.full(n, np.nan)
    cols["r500c"] = r500 * length if r500 is not None else np.full(n, np.nan)
    cols["id"] = np.asarray(f["ID"][...], dtype=np.int64) if "ID" in f else np.arange(n, dtype=np.int64)
    cols["keep"] = np.asarray(f["hostHaloID"][...]) < 0 if "hostHaloID" in f else np.ones(n, bool)
    sim = _vr_attrs(f, "SimulationInfo")
    if "Period" not in sim:
        raise SnapshotError(f"{path}: missing VELOCIraptor SimulationInfo attribute 'Period'")
    return a, _scalar(sim["Period"], f"{path}: SimulationInfo/Period") * length, cols


def _check_match(path: str, info: SnapshotInfo, a: float, box_mpc: float) -> None:
    z = 1.0 / a - 1.0
    if not math.isclose(a, 1.0 / (1.0 + info.redshift), rel_tol=_MATCH_RTOL):
        raise SnapshotError(f"catalog {path} (redshift {z:.4f}, scale factor) does not match snapshot {info.path} "
                            f"(redshift {info.redshift:.4f})")
    if not math.isclose(box_mpc, info.box_mpc, rel_tol=_MATCH_RTOL):
        raise SnapshotError(f"catalog {path} (box size {box_mpc:.6g} Mpc) does not match snapshot {info.path} "
                            f"(BoxSize {info.box_mpc:.6g} physical Mpc)")


def read_catalog(path: str | Path, info: SnapshotInfo) -> tuple[CatalogHalo, ...]:
    """Field halos with M200m > 0 of a SOAP or VELOCIraptor catalog (detected from the file), in
    physical Mpc and Msun, centres wrapped into ``[0, box)``.

    Raises
    ------
    SnapshotError
        Neither format, a missing field or unit attribute, or a catalog whose box size or
        redshift does not match the snapshot ``info`` (the message names both files).
    """
    import h5py

    p = str(path)
    try:
        with h5py.File(p, "r") as f:
            if "SO" in f and "InputHalos" in f:
                a, box, cols = _read_soap(f, p)
            elif "Mass_200mean" in f:
                a, box, cols = _read_velociraptor(f, p)
            else:
                raise SnapshotError(f"{p}: neither a SOAP catalog (groups SO, InputHalos) nor a VELOCIraptor "
                                    "properties file (field Mass_200mean)")
    except OSError as exc:
        raise SnapshotError(f"{p}: cannot open as HDF5 ({exc})") from None
    _check_match(p, info, a, box)
    centre = np.mod(cols["centre"], info.box_mpc)
    ok = np.flatnonzero(cols["keep"] & (cols["m200m"] > 0) & (cols["r200m"] > 0))
    return tuple(
        CatalogHalo(halo_id=int(cols["id"][i]), centre_mpc=tuple(float(x) for x in centre[i]),
                    m200m_msun=float(cols["m200m"][i]), r200m_mpc=float(cols["r200m"][i]),
                    m500c_msun=float(cols["m500c"][i]), r500c_mpc=float(cols["r500c"][i]))
        for i in ok
    )

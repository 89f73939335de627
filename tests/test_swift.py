"""The SWIFT reader (cmpipe.physics.snapshots.swift) on snapshots written by swiftsimio's own Writer.

The fixture writes a z = 0.5 SWIFT snapshot (a = 2/3, comoving box 10 Mpc, h = 0.7) holding a
truncated Plummer sphere of gas and dark matter placed across the periodic corner of the box,
over a sparse uniform background, with swiftsimio.Writer; then adds, with h5py, what a real
SWIFT snapshot has and an initial-conditions file lacks (Redshift, Cosmology, HydroScheme, the
top-level Cells metadata over particles sorted by cell, Temperatures or InternalEnergies,
Densities). A SOAP-layout catalog and a VELOCIraptor properties file are written with h5py
following the published layouts.

Oracles: the arrays written (converted by hand: comoving * a, h * 1.936492), a brute-force
numpy minimum-image selection, the closed-form Plummer projection, and the catalog values
converted by hand.
"""

from __future__ import annotations

import math
import pickle

import h5py
import numpy as np
import pytest

swiftsimio = pytest.importorskip("swiftsimio")
unyt = pytest.importorskip("unyt")

from scipy.spatial import cKDTree  # noqa: E402

from cmpipe.mapmaking.maps import prepare_halo, sightline_maps  # noqa: E402
from cmpipe.physics.halo import Halo, HaloProperties  # noqa: E402
from cmpipe.physics.snapshots.base import SnapshotError, SnapshotReader  # noqa: E402
from cmpipe.physics.snapshots.swift import SwiftSnapshot, read_catalog, read_swift_info, region_mask  # noqa: E402

Z, H_LITTLE = 0.5, 0.7
A = 1.0 / (1.0 + Z)
BOX_COMOVING = 10.0  # Mpc
BOX = BOX_COMOVING * A  # physical Mpc
CENTRE_COMOVING = np.array([9.7, 0.2, 5.0])  # across the x = L and y = 0 faces
CENTRE = CENTRE_COMOVING * A
PLUMMER_A, RMAX = 0.25, 1.2  # physical Mpc
M_GAS, M_DM = 1.5e13, 8.5e13  # untruncated Plummer masses [Msun]
N_HALO, N_BACKGROUND, N_STARS = 3000, 400, 5
T_GAS = 5.0e7  # K
GAMMA_C2 = 1.936492
MPC_CM = float((1.0 * unyt.Mpc).to_value("cm"))
MSUN_G = float((1.0 * unyt.Msun).to_value("g"))
NCELL = 4  # top-level cells per side


def _plummer(n: int, rng: np.random.Generator) -> np.ndarray:
    """Positions [physical Mpc] of a Plummer sphere truncated at RMAX (inverse CDF), centred on 0."""
    frac_max = RMAX**3 / (RMAX**2 + PLUMMER_A**2) ** 1.5
    u = rng.random(n) * frac_max
    r = PLUMMER_A / np.sqrt(u ** (-2.0 / 3.0) - 1.0)
    v = rng.normal(size=(n, 3))
    return r[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)


def _plummer_sigma(r: np.ndarray, mass: float) -> np.ndarray:
    """Closed-form projection of the Plummer sphere truncated at RMAX [Msun Mpc^-2] (as in
    tests/test_maps.py): 2 int_0^L rho dl, L = sqrt(RMAX^2 - R^2)."""
    big_a = PLUMMER_A**2 + r**2
    ell = np.sqrt(np.clip(RMAX**2 - r**2, 0.0, None))
    column = ell * (2 * ell**2 + 3 * big_a) / (3 * big_a**2 * (big_a + ell**2) ** 1.5)
    return 3.0 * mass * PLUMMER_A**2 / (4.0 * np.pi) * 2.0 * column


def _particles(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Physical positions (in the box frame), masses, H, T and SPH densities of gas and DM."""
    frac = RMAX**3 / (RMAX**2 + PLUMMER_A**2) ** 1.5
    out = {}
    for kind, mass in (("gas", M_GAS), ("dm", M_DM)):
        pos = np.concatenate([_plummer(N_HALO, rng) + CENTRE, rng.random((N_BACKGROUND, 3)) * BOX])
        out[f"{kind}_pos"] = np.mod(pos, BOX)
        out[f"{kind}_mass"] = np.full(pos.shape[0], mass * frac / N_HALO)
    tree = cKDTree(out["gas_pos"], boxsize=BOX)
    support = tree.query(out["gas_pos"], k=33)[0][:, -1]  # 32 neighbours besides itself
    out["gas_H"] = support
    q = tree.query(out["gas_pos"], k=33)[0] / support[:, None]
    w = 21.0 / (2.0 * np.pi * support[:, None] ** 3) * np.clip(1 - q, 0, None) ** 4 * (1 + 4 * q)
    out["gas_rho"] = (w * out["gas_mass"][0]).sum(axis=1)
    out["gas_T"] = np.full(out["gas_pos"].shape[0], T_GAS)
    return out


_PART_TYPES = ("PartType0", "PartType1", "PartType4", "PartType5")  # gas, DM, stars, black holes


def _cell_order(pos_comoving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order by top-level cell and the cell index of each sorted particle."""
    ijk = np.minimum((pos_comoving / (BOX_COMOVING / NCELL)).astype(int), NCELL - 1)
    cell = (ijk[:, 0] * NCELL + ijk[:, 1]) * NCELL + ijk[:, 2]
    order = np.argsort(cell, kind="stable")
    return order, cell[order]


def _cosmo(values, unit, exponent):
    """A comoving cosmo_array of a *copy* (the Writer converts its input to base units in place)."""
    values = np.array(values, dtype=np.float64)
    return swiftsimio.cosmo_array(values, unit, comoving=True, scale_factor=A, scale_exponent=exponent)


def _write_with_writer(path, parts: dict[str, np.ndarray]) -> None:
    """Write gas and DM with swiftsimio.Writer (comoving values, SWIFT's h = H / 1.936492)."""
    from swiftsimio.metadata.writer.unit_systems import cosmo_units

    w = swiftsimio.Writer(unit_system=cosmo_units, boxsize=_cosmo([BOX_COMOVING] * 3, unyt.Mpc, 1), scale_factor=A)
    n_gas, n_dm = parts["gas_pos"].shape[0], parts["dm_pos"].shape[0]
    w.gas.coordinates = _cosmo(parts["gas_pos"] / A, unyt.Mpc, 1)
    w.gas.velocities = _cosmo(np.zeros((n_gas, 3)), unyt.km / unyt.s, 0)
    w.gas.masses = _cosmo(parts["gas_mass"], unyt.Msun, 0)
    w.gas.smoothing_lengths = _cosmo(parts["gas_H"] / GAMMA_C2 / A, unyt.Mpc, 1)
    mu = 4.0 / (3.0 + 5.0 * 0.76)  # X = 0.76, fully ionised
    u_phys = unyt.kb * T_GAS * unyt.K / (2.0 / 3.0 * mu * unyt.mp)
    w.gas.internal_energy = _cosmo(np.full(n_gas, u_phys.to_value("km**2/s**2") * A**2), unyt.km**2 / unyt.s**2, -2)
    w.dark_matter.coordinates = _cosmo(parts["dm_pos"] / A, unyt.Mpc, 1)
    w.dark_matter.velocities = _cosmo(np.zeros((n_dm, 3)), unyt.km / unyt.s, 0)
    w.dark_matter.masses = _cosmo(parts["dm_mass"], unyt.Msun, 0)
    for group, n in ((w.stars, N_STARS), (w.black_holes, 1)):  # ignored by the reader
        group.coordinates = _cosmo(np.tile(CENTRE_COMOVING, (n, 1)), unyt.Mpc, 1)
        group.velocities = _cosmo(np.zeros((n, 3)), unyt.km / unyt.s, 0)
        group.masses = _cosmo(np.full(n, 1e10), unyt.Msun, 0)
    w.stars.smoothing_lengths = _cosmo(np.full(N_STARS, 0.01), unyt.Mpc, 1)
    w.write(str(path))


def _add_dataset(group, name: str, values: np.ndarray, cgs: float, dims: dict[str, float], a_exp: float) -> None:
    """A dataset with SWIFT's unit attributes (as the Writer writes them)."""
    ds = group.create_dataset(name, data=values)
    ds.attrs["Conversion factor to CGS (not including cosmological corrections)"] = [cgs]
    ds.attrs["Conversion factor to physical CGS (including cosmological corrections)"] = [cgs * A**a_exp]
    for key in ("U_I", "U_L", "U_M", "U_T", "U_t"):
        ds.attrs[f"{key} exponent"] = [dims.get(key, 0.0)]
    ds.attrs["a-scale exponent"] = [a_exp]
    ds.attrs["h-scale exponent"] = [0.0]


def _fix_a_exponents(f) -> None:
    """swiftsimio 12.4's Writer writes 'a-scale exponent' = 1 for a^0 fields (it reads the
    exponent of the sympy expression ``1`` as 1.0); SWIFT writes 0 for masses and velocities."""
    for group in _PART_TYPES:
        for name in ("Masses", "Velocities"):
            ds = f[f"{group}/{name}"]
            ds.attrs["a-scale exponent"] = [0.0]
            ds.attrs["Conversion factor to physical CGS (including cosmological corrections)"] = ds.attrs[
                "Conversion factor to CGS (not including cosmological corrections)"
            ]


def _add_cells(f) -> None:
    """Top-level cell metadata of a NCELL^3 grid (particles already sorted by cell)."""
    size = BOX_COMOVING / NCELL
    idx = np.arange(NCELL**3)
    ijk = np.stack([idx // NCELL**2, (idx // NCELL) % NCELL, idx % NCELL], axis=1)
    cells = f.create_group("Cells")
    cells.create_dataset("Centres", data=(ijk + 0.5) * size)
    meta = cells.create_group("Meta-data")
    meta.attrs["size"] = [size] * 3
    meta.attrs["dimension"] = [NCELL] * 3
    meta.attrs["nr_cells"] = NCELL**3
    for sub in ("Counts", "OffsetsInFile", "MinPositions", "MaxPositions"):
        cells.create_group(sub)
    for group in _PART_TYPES:
        pos = f[f"{group}/Coordinates"][...]
        _, cell = _cell_order(pos)
        assert np.all(np.diff(cell) >= 0)
        counts = np.bincount(cell, minlength=NCELL**3)
        cells[f"Counts/{group}"] = counts
        cells[f"OffsetsInFile/{group}"] = np.concatenate([[0], np.cumsum(counts)[:-1]])
        lo = np.array([pos[cell == c].min(axis=0) if counts[c] else (ijk[c] + 0.5) * size for c in idx])
        hi = np.array([pos[cell == c].max(axis=0) if counts[c] else (ijk[c] + 0.5) * size for c in idx])
        cells[f"MinPositions/{group}"] = lo
        cells[f"MaxPositions/{group}"] = hi


def _add_snapshot_metadata(f, parts: dict[str, np.ndarray], temperatures: bool) -> None:
    f["Header"].attrs["Redshift"] = [Z]
    cosmo = f.create_group("Cosmology")
    for key, value in (("h", H_LITTLE), ("Redshift", Z), ("Scale-factor", A), ("Cosmological run", 1),
                       ("Omega_m", 0.3), ("Omega_b", 0.05), ("Omega_lambda", 0.7), ("Omega_r", 0.0), ("w_0", -1.0),
                       ("w_a", 0.0), ("H0 [internal units]", H_LITTLE * 100.0)):
        cosmo.attrs[key] = [value]
    hydro = f.create_group("HydroScheme")
    hydro.attrs["Kernel function"] = np.bytes_("Wendland C2")
    hydro.attrs["Kernel target N_ngb"] = [32.0]
    hydro.attrs["Dimension"] = [3]
    hydro.attrs["Adiabatic index"] = [5.0 / 3.0]
    gas = f["PartType0"]
    del gas["InternalEnergies"]  # the Writer's soft link; snapshots hold the dataset itself
    gas.move("InternalEnergy", "InternalEnergies")  # (initial conditions use the singular)
    if temperatures:
        _add_dataset(gas, "Temperatures", parts["gas_T"], 1.0, {"U_T": 1.0}, 0.0)
    rho_cgs = MSUN_G / MPC_CM**3 * 1e10
    _add_dataset(gas, "Densities", parts["gas_rho"] * A**3 / 1e10, rho_cgs, {"U_M": 1.0, "U_L": -3.0}, -3.0)


def write_snapshot(path, seed: int = 3, temperatures: bool = True) -> dict[str, np.ndarray]:
    """Write the test snapshot; return the physical arrays in file order (the oracle)."""
    parts = _particles(np.random.default_rng(seed))
    for kind in ("gas", "dm"):
        order, _ = _cell_order(parts[f"{kind}_pos"] / A)
        for key in [k for k in parts if k.startswith(kind)]:
            parts[key] = parts[key][order]
    _write_with_writer(path, parts)
    with h5py.File(path, "r+") as f:
        _fix_a_exponents(f)
        _add_snapshot_metadata(f, parts, temperatures)
        _add_cells(f)
    return parts


def _soap_attrs(ds, cgs: float, a_exp: float) -> None:
    ds.attrs["Conversion factor to CGS (not including cosmological corrections)"] = [cgs]
    ds.attrs["Conversion factor to physical CGS (including cosmological corrections)"] = [cgs * A**a_exp]
    ds.attrs["a-scale exponent"] = [a_exp]
    ds.attrs["h-scale exponent"] = [0.0]


CATALOG = {  # two halos: the Plummer sphere and a far one; SOAP also lists a satellite (zeros)
    "m200m_msun": np.array([9.3e13, 2.0e13, 0.0]),
    "r200m_mpc": np.array([1.1, 0.6, 0.0]),  # physical
    "m500c_msun": np.array([5.0e13, 1.1e13, 0.0]),
    "r500c_mpc": np.array([0.5, 0.3, 0.0]),
    "centre_mpc": np.array([CENTRE, [1.0, 2.0, 3.0], [1.1, 2.0, 3.0]]),  # physical
}


def write_soap(path, box_comoving: float = BOX_COMOVING, scale_factor: float = A) -> None:
    """SOAP layout: comoving Mpc and 1e10 Msun, unit attributes per dataset, centrals flagged."""
    with h5py.File(path, "w") as f:
        f.create_group("Header").attrs.update({"BoxSize": [box_comoving] * 3, "Scale-factor": [scale_factor],
                                               "Redshift": [1 / scale_factor - 1]})
        f.create_group("Units").attrs["Unit length in cgs (U_L)"] = [MPC_CM]
        for name, values, cgs, a_exp in (
            ("SO/200_mean/TotalMass", CATALOG["m200m_msun"] / 1e10, 1e10 * MSUN_G, 0.0),
            ("SO/200_mean/SORadius", CATALOG["r200m_mpc"] / A, MPC_CM, 1.0),
            ("SO/500_crit/TotalMass", CATALOG["m500c_msun"] / 1e10, 1e10 * MSUN_G, 0.0),
            ("SO/500_crit/SORadius", CATALOG["r500c_mpc"] / A, MPC_CM, 1.0),
            ("InputHalos/HaloCentre", CATALOG["centre_mpc"] / A, MPC_CM, 1.0),
        ):
            _soap_attrs(f.create_dataset(name, data=values), cgs, a_exp)
        f["InputHalos/IsCentral"] = np.array([1, 1, 0], dtype=np.int8)
        f["InputHalos/HaloCatalogueIndex"] = np.array([10, 11, 12])


def write_velociraptor(path, physical: bool = False) -> None:
    """VELOCIraptor properties: comoving Mpc/h and 1e10 Msun/h (Comoving_or_Physical = 1), or
    physical kpc and Msun (0)."""
    h = H_LITTLE
    lk, mu = (1.0, 1.0) if physical else (1000.0, 1e10)
    to_file = 1.0 / lk if physical else h / A / lk  # physical kpc -> file length unit
    length = lambda x: x * 1000.0 * to_file  # noqa: E731  physical Mpc -> file units
    mass = lambda m: m * (1.0 if physical else h) / mu  # noqa: E731  Msun -> file units
    with h5py.File(path, "w") as f:
        f.create_group("UnitInfo").attrs.update({
            "Comoving_or_Physical": b"0" if physical else b"1", "Length_unit_to_kpc": str(lk).encode(),
            "Mass_unit_to_solarmass": str(mu).encode(), "Cosmological_Sim": b"1"})
        f.create_group("SimulationInfo").attrs.update({"ScaleFactor": A, "h_val": h, "Period": length(BOX),
                                                       "Cosmological_Sim": 1})
        f["Mass_200mean"] = mass(CATALOG["m200m_msun"])
        f["R_200mean"] = length(CATALOG["r200m_mpc"])
        f["SO_Mass_500_rhocrit"] = mass(CATALOG["m500c_msun"])
        f["SO_R_500_rhocrit"] = length(CATALOG["r500c_mpc"])
        for i, c in enumerate("XYZ"):
            f[f"{c}cminpot"] = length(CATALOG["centre_mpc"][:, i])
            f[f"{c}c"] = length(CATALOG["centre_mpc"][:, i] + 0.05)  # centre of mass: not used
        f["ID"] = np.array([1, 2, 3])
        f["hostHaloID"] = np.array([-1, -1, 1])


@pytest.fixture(scope="module")
def snap(tmp_path_factory):
    d = tmp_path_factory.mktemp("swift")
    parts = write_snapshot(d / "snap_0001.hdf5")
    write_soap(d / "halo_properties_0001.hdf5")
    write_velociraptor(d / "vr_0001.properties")
    write_velociraptor(d / "vr_physical_0001.properties", physical=True)
    write_soap(d / "soap_cgs_0001.hdf5")
    with h5py.File(d / "soap_cgs_0001.hdf5", "r+") as f:  # only the comoving factor and a-exponent
        for name in ("SO/200_mean/TotalMass", "SO/200_mean/SORadius", "SO/500_crit/TotalMass",
                     "SO/500_crit/SORadius", "InputHalos/HaloCentre"):
            del f[name].attrs["Conversion factor to physical CGS (including cosmological corrections)"]
    return dict(dir=d, parts=parts, path=d / "snap_0001.hdf5", soap=d / "halo_properties_0001.hdf5",
                soap_cgs=d / "soap_cgs_0001.hdf5", vr=d / "vr_0001.properties",
                vr_physical=d / "vr_physical_0001.properties")


def test_info_from_snapshot_metadata(snap):
    """Oracle: the values written (z, h, physical box = a * comoving box, counts)."""
    reader = SwiftSnapshot(snap["path"], snap["soap"])
    assert isinstance(reader, SnapshotReader)
    info = reader.info
    assert info.redshift == pytest.approx(Z, rel=1e-12)
    assert info.h == pytest.approx(H_LITTLE, rel=1e-12)
    assert info.box_mpc == pytest.approx(BOX, rel=1e-12)
    assert (info.n_gas, info.n_dm) == (N_HALO + N_BACKGROUND, N_HALO + N_BACKGROUND)
    assert info.ignored == ("stars", "black_holes")
    assert len(reader.halos()) == 2
    clone = pickle.loads(pickle.dumps(reader))
    assert clone.info == info and clone._halos is None and clone.halos() == reader.halos()


@pytest.mark.parametrize("catalog", ["soap", "soap_cgs", "vr", "vr_physical"])
def test_halos_equal_catalog_after_unit_conversion(snap, catalog):
    """Oracle: CATALOG (physical Msun and Mpc) converted by hand to SOAP's comoving Mpc /
    1e10 Msun (with or without the physical-CGS attribute), to VELOCIraptor's comoving Mpc/h,
    1e10 Msun/h and to its physical kpc, Msun; rtol 1e-9. Satellites (SOAP IsCentral = 0, VR
    hostHaloID >= 0) are left out; VR's centre is Xcminpot."""
    halos = SwiftSnapshot(snap["path"], snap[catalog]).halos()
    assert len(halos) == 2
    ids = [0, 1] if catalog.startswith("soap") else [1, 2]  # SOAP: the row index; VELOCIraptor: ID
    for i, halo in enumerate(halos):
        assert halo.halo_id == ids[i]
        assert halo.m200m_msun == pytest.approx(CATALOG["m200m_msun"][i], rel=1e-9)
        assert halo.r200m_mpc == pytest.approx(CATALOG["r200m_mpc"][i], rel=1e-9)
        assert halo.m500c_msun == pytest.approx(CATALOG["m500c_msun"][i], rel=1e-9)
        assert halo.r500c_mpc == pytest.approx(CATALOG["r500c_mpc"][i], rel=1e-9)
        np.testing.assert_allclose(halo.centre_mpc, CATALOG["centre_mpc"][i], rtol=1e-9)


def _brute_force(pos: np.ndarray, centre: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Independent minimum-image selection: try all 27 periodic images, keep the nearest."""
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) * BOX
    cand = pos[:, None, :] + shifts[None] - centre
    d2 = (cand**2).sum(axis=2)
    best = d2.argmin(axis=1)
    rel = cand[np.arange(pos.shape[0]), best]
    keep = np.flatnonzero(d2[np.arange(pos.shape[0]), best] <= radius**2)
    return rel[keep], keep


def _sorted(rel: np.ndarray) -> np.ndarray:
    return rel[np.lexsort(rel.T)]


@pytest.mark.parametrize("radius", [0.5, 1.6])
def test_region_matches_brute_force_in_physical_units(snap, radius):
    """Oracle: a brute-force 27-image selection of the written arrays (converted by hand to
    physical: comoving * a). Same particles (as sets of positions, atol 1e-9 Mpc), masses as
    written (rtol 1e-12; Masses are a^0), H = 1.936492 h (rtol 1e-9), T and density as written."""
    reader = SwiftSnapshot(snap["path"], snap["soap"])
    gas, dm = reader.region(CENTRE, radius)
    parts = snap["parts"]
    for got, kind in ((gas, "gas"), (dm, "dm")):
        want_rel, keep = _brute_force(parts[f"{kind}_pos"], CENTRE, radius)
        assert got.n == keep.size > 100
        np.testing.assert_allclose(_sorted(got.pos_mpc), _sorted(want_rel), atol=1e-9)
        order_got, order_want = np.lexsort(got.pos_mpc.T), np.lexsort(want_rel.T)
        np.testing.assert_allclose(got.mass_msun[order_got], parts[f"{kind}_mass"][keep][order_want], rtol=1e-12)
    assert np.all(np.abs(gas.pos_mpc) <= radius + 1e-12)
    og, ow = np.lexsort(gas.pos_mpc.T), np.lexsort(_brute_force(parts["gas_pos"], CENTRE, radius)[0].T)
    keep = _brute_force(parts["gas_pos"], CENTRE, radius)[1]
    np.testing.assert_allclose(gas.smoothing_length_mpc[og], parts["gas_H"][keep][ow], rtol=1e-9)
    np.testing.assert_allclose(gas.temperature_k, T_GAS, rtol=1e-9)
    np.testing.assert_allclose(gas.density_msun_mpc3[og], parts["gas_rho"][keep][ow], rtol=1e-9)
    assert dm.smoothing_length_mpc is None


def test_region_reads_only_the_cells_it_needs(snap):
    """Oracle: the mask of a small region across the corner holds the 8 corner cells only
    (counted from the written cell grid), not the whole box; region() returns the same particles
    as a read of the whole file (brute force above)."""
    meta = read_swift_info(snap["path"])
    mask = region_mask(str(snap["path"]), meta, np.mod(CENTRE, BOX), 0.3)
    # comoving bounds x [9.25, 10.15], y [-0.25, 0.65], z [4.55, 5.45]: two cells per axis
    assert mask.cell_mask["gas"].sum() == 8
    assert mask.gas_size < N_HALO + N_BACKGROUND


def test_snapshot_without_cells_is_read_whole(tmp_path):
    """Oracle: brute force. Without Cells metadata (initial conditions) the whole file is read and
    the region is the same set of particles."""
    p = tmp_path / "snap.hdf5"
    parts = write_snapshot(p)
    with h5py.File(p, "r+") as f:
        del f["Cells"]
    write_soap(tmp_path / "soap.hdf5")
    reader = SwiftSnapshot(p, tmp_path / "soap.hdf5")
    assert region_mask(str(p), read_swift_info(p), CENTRE, 0.5) is None
    gas, dm = reader.region(CENTRE, 0.5)
    for got, kind in ((gas, "gas"), (dm, "dm")):
        np.testing.assert_allclose(_sorted(got.pos_mpc), _sorted(_brute_force(parts[f"{kind}_pos"], CENTRE, 0.5)[0]),
                                   atol=1e-9)


def test_temperature_from_internal_energy(tmp_path):
    """Oracle: without Temperatures, T from the physical internal energy with X = 0.76 and full
    ionisation equals the T that produced u. rtol 1e-5: the test makes u with unyt's m_p / k_B,
    the reader inverts it with astropy's (measured 3.7e-6)."""
    write_snapshot(tmp_path / "snap.hdf5", temperatures=False)
    write_soap(tmp_path / "soap.hdf5")
    gas, _ = SwiftSnapshot(tmp_path / "snap.hdf5", tmp_path / "soap.hdf5").region(CENTRE, 0.5)
    np.testing.assert_allclose(gas.temperature_k, T_GAS, rtol=1e-5)


def test_extracted_halo_projects_to_analytic_plummer(snap):
    """Oracle: the closed-form projection of the truncated Plummer spheres (gas and DM), pixel-
    and annulus-averaged (as tests/test_maps.py). The region (1.6 Mpc > RMAX) holds the whole
    sphere plus a little uniform background (N_BACKGROUND particles over the box, added
    analytically as its mean density times the chord of the 1.6 Mpc sphere). Tolerance: 4 sigma Poisson per annulus (sigma = 1/sqrt(N expected)), as
    tests/test_sph.py."""
    reader = SwiftSnapshot(snap["path"], snap["soap"])
    gas, dm = reader.region(CENTRE, 1.6)
    halo = Halo(HaloProperties(halo_id=0, m200m_msun=9.3e13, r200m_mpc=1.1, redshift=Z), gas, dm).validate()
    npix, pix, depth, rho_g, rho_d = 32, 0.1, 3.2, 6.0e9, 3.5e10
    prepared = prepare_halo(halo, mean_gas_density_msun_mpc3=rho_g, mean_dm_density_msun_mpc3=rho_d, depth_mpc=depth)
    maps = sightline_maps(prepared, rotation=None, axis=2, npix=npix, pixel_mpc=pix, channels=("gas_sigma", "dm_sigma"))
    c = (np.arange(npix) + 0.5) * pix - 0.5 * npix * pix
    rr = np.hypot(*np.meshgrid(c, c, indexing="xy"))
    fine = 8
    cf = (np.arange(npix * fine) + 0.5) * pix / fine - 0.5 * npix * pix
    rf = np.hypot(*np.meshgrid(cf, cf, indexing="xy"))
    edges = np.array([0.0, 0.15, 0.3, 0.5, 0.8, 1.1])
    vol = BOX**3
    cases = (("gas_sigma", M_GAS, gas.mass_msun[0], rho_g), ("dm_sigma", M_DM, dm.mass_msun[0], rho_d))
    for name, mass, m_part, rho in cases:
        bg = N_BACKGROUND * m_part / vol
        chord = 2.0 * np.sqrt(np.clip(1.6**2 - rf**2, 0, None))
        model = _plummer_sigma(rf, mass) + bg * np.minimum(chord, depth)
        model = model.reshape(npix, fine, npix, fine).mean(axis=(1, 3))
        image = maps.channel(name) * rho * depth
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (rr >= lo) & (rr < hi)
            got, want = image[sel].mean(), model[sel].mean()
            n_expected = want * sel.sum() * pix**2 / m_part
            print(f"{name} [{lo}, {hi}) Mpc: {got / want - 1:+.4f} (4 sigma {4.0 / math.sqrt(n_expected):.4f})")
            assert abs(got / want - 1) < 4.0 / math.sqrt(n_expected), (name, lo, hi, got / want, n_expected)


def test_missing_field_names_file_and_field(tmp_path):
    """A snapshot without SmoothingLengths, or without HydroScheme's kernel: SnapshotError naming
    the file and the field."""
    p = tmp_path / "snap.hdf5"
    write_snapshot(p)
    with h5py.File(p, "r+") as f:
        del f["PartType0/SmoothingLengths"]
    with pytest.raises(SnapshotError, match=r"snap\.hdf5.*PartType0/SmoothingLengths"):
        SwiftSnapshot(p, p)
    q = tmp_path / "snap2.hdf5"
    write_snapshot(q)
    with h5py.File(q, "r+") as f:
        del f["HydroScheme"]
    with pytest.raises(SnapshotError, match=r"snap2\.hdf5.*Kernel function"):
        SwiftSnapshot(q, q)
    with h5py.File(q, "r+") as f:
        f.create_group("HydroScheme").attrs["Kernel function"] = np.bytes_("Gaussian")
    with pytest.raises(SnapshotError, match=r"snap2\.hdf5.*'Gaussian'"):
        SwiftSnapshot(q, q)
    with h5py.File(q, "r+") as f:
        f["HydroScheme"].attrs["Kernel function"] = np.bytes_("Wendland C2")
        del f["Cosmology"].attrs["h"]
    with pytest.raises(SnapshotError, match=r"snap2\.hdf5.*Cosmology attribute 'h'"):
        SwiftSnapshot(q, q)


def test_mismatched_or_unknown_catalog_names_both_files(snap, tmp_path):
    """A catalog of another box or redshift: SnapshotError naming both files; a file of neither
    format, or a SOAP field without unit attributes: SnapshotError naming file and field."""
    write_soap(tmp_path / "box.hdf5", box_comoving=12.0)
    with pytest.raises(SnapshotError, match=r"box\.hdf5.*box size.*snap_0001\.hdf5"):
        SwiftSnapshot(snap["path"], tmp_path / "box.hdf5").halos()
    write_soap(tmp_path / "z.hdf5", scale_factor=0.5)
    with pytest.raises(SnapshotError, match=r"z\.hdf5.*redshift.*snap_0001\.hdf5"):
        SwiftSnapshot(snap["path"], tmp_path / "z.hdf5").halos()
    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f["Group_M_Mean200"] = np.ones(2)
    with pytest.raises(SnapshotError, match=r"other\.hdf5.*SOAP.*VELOCIraptor"):
        read_catalog(tmp_path / "other.hdf5", SwiftSnapshot(snap["path"], snap["soap"]).info)
    write_soap(tmp_path / "nounits.hdf5")
    with h5py.File(tmp_path / "nounits.hdf5", "r+") as f:
        for key in list(f["SO/200_mean/SORadius"].attrs):
            del f["SO/200_mean/SORadius"].attrs[key]
    with pytest.raises(SnapshotError, match=r"nounits\.hdf5.*SO/200_mean/SORadius"):
        SwiftSnapshot(snap["path"], tmp_path / "nounits.hdf5").halos()


def test_region_radius_beyond_half_box_is_refused(snap):
    reader = SwiftSnapshot(snap["path"], snap["soap"])
    with pytest.raises(SnapshotError, match="snap_0001.hdf5.*box/2"):
        reader.region(CENTRE, 0.6 * BOX)


def test_extract_halos_cli_writes_the_swift_halos(snap, tmp_path, capsys):
    """``cmpipe extract-halos --format swift --serial``: the SOAP halos written in the one-halo
    layout; read back, M200m/R200m/M500c equal the catalog's (rtol 1e-9) and the particles are
    the region's (the same count as the reader's region at the extraction radius); a rerun
    skips both."""
    from cmpipe.cli import main
    from cmpipe.physics.hdf5io import HDF5HaloSource

    out = tmp_path / "halos"
    sets = [a for o in ("maps.npix=16", "maps.pixel_mpc=0.2", "maps.depth_mpc=2.0") for a in ("--set", o)]
    args = ["extract-halos", "--format", "swift", "--snapshot", str(snap["path"]), "--catalog", str(snap["soap"]),
            "--serial", "--out", str(out), *sets]
    assert main(args) == 0
    assert "2 halos written" in capsys.readouterr().out
    source = HDF5HaloSource(out)
    reader = SwiftSnapshot(snap["path"], snap["soap"])
    radius = float(np.sqrt(2 * 1.6**2 + 1.0**2))  # the slab's sphere: sqrt(2 (L/2)^2 + (D/2)^2)
    for i, hid in enumerate(source.halo_ids()):
        halo = source.load(hid)
        assert halo.props.m200m_msun == pytest.approx(CATALOG["m200m_msun"][i], rel=1e-9)
        assert halo.props.r200m_mpc == pytest.approx(CATALOG["r200m_mpc"][i], rel=1e-9)
        assert halo.props.m500c_msun == pytest.approx(CATALOG["m500c_msun"][i], rel=1e-9)
        gas, dm = reader.region(CATALOG["centre_mpc"][i], radius)
        assert (halo.gas.n, halo.dm.n) == (gas.n, dm.n)
    assert main(args) == 0
    assert "0 halos written, 2 skipped" in capsys.readouterr().out

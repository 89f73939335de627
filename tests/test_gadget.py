"""The Gadget-4 / AREPO reader on small snapshots written here with h5py (tests/gadget_files.py):
IllustrisTNG layout, comoving ckpc/h and 1e10 Msun/h, ``MassTable`` dark-matter masses, two files
split in x, a FoF catalog over two files, a Plummer sphere of gas and DM centred near a box
corner (it straddles the periodic boundary on three axes) and one in the middle, and stars.

Oracles: unit factors typed here from the TNG specification (ckpc/h -> Mpc: * 1e-3 a / h; 1e10
Msun/h -> Msun: * UnitMass_in_g / Msun / h); the minimum-image wrap by brute force over the
particles the test wrote; temperatures from scipy.constants (independent of the reader's
astropy); the Plummer surface density in closed form (tests/test_sph.py's slab formula).
"""

from __future__ import annotations

import math
import shutil

import h5py
import numpy as np
import pytest
from scipy import constants as sc

from cmpipe.physics.snapshots.base import SnapshotError, SnapshotReader
from cmpipe.physics.snapshots.gadget import GadgetSnapshot, cell_support_mpc, mean_molecular_weight
from gadget_files import (
    MPC_CM,
    MSUN_G,
    UNIT_LENGTH_CM,
    UNIT_MASS_G,
    plummer_snapshot,
    write_catalog,
    write_snapshot,
)

CORNER = [0.1, 9.4, 0.2]  # near the corner of the 9.52 Mpc box: the halo wraps on all three axes
MIDDLE = [4.7, 4.7, 4.7]
A_MPC, M_GAS, M_DM = 0.3, 1.6e13, 8.4e13


@pytest.fixture(scope="module")
def snap():
    return plummer_snapshot(np.random.default_rng(19), [CORNER, MIDDLE], stars=20)


@pytest.fixture(scope="module")
def files(snap, tmp_path_factory):
    return write_snapshot(tmp_path_factory.mktemp("tng"), snap)


@pytest.fixture(scope="module")
def reader(files):
    return GadgetSnapshot(*files)


def test_reader_implements_the_contract_and_reads_the_header(reader, snap):
    assert isinstance(reader, SnapshotReader)
    info = reader.info
    assert info.redshift == 0.5 and info.h == 0.7
    assert info.box_mpc == pytest.approx(snap.box_mpc, rel=1e-12)
    assert (info.n_gas, info.n_dm) == (8000, 8000)
    assert info.ignored == ("PartType4 (stars)",)


def test_catalog_values_convert_by_the_published_factors(reader, files, snap):
    """M200m = Group_M_Mean200 * UnitMass_in_g / Msun / h; R200m = Group_R_Mean200 * 1 kpc * a / h
    (factors typed here, rtol 1e-12 on the float32 values of the file)."""
    a, h = 1.0 / 1.5, 0.7
    with h5py.File(files[1]) as f:  # the first catalog file holds group 0
        m_raw = float(f["Group/Group_M_Mean200"][0])
        r_raw = float(f["Group/Group_R_Mean200"][0])
        m500_raw = float(f["Group/Group_M_Crit500"][0])
        pos_raw = f["Group/GroupPos"][0]
    halos = reader.halos()
    assert [c.halo_id for c in halos] == [0, 1]
    c = halos[0]
    assert c.m200m_msun == pytest.approx(m_raw * UNIT_MASS_G / MSUN_G / h, rel=1e-12)
    assert c.r200m_mpc == pytest.approx(r_raw * UNIT_LENGTH_CM / MPC_CM * a / h, rel=1e-12)
    assert c.m500c_msun == pytest.approx(m500_raw * UNIT_MASS_G / MSUN_G / h, rel=1e-12)
    np.testing.assert_allclose(c.centre_mpc, pos_raw * UNIT_LENGTH_CM / MPC_CM * a / h, rtol=1e-12)
    # and they are the physical values the snapshot was built from (float32 storage: rtol 1e-6)
    assert c.m200m_msun == pytest.approx(snap.groups[0]["m200m_msun"], rel=1e-6)
    assert c.r200m_mpc == pytest.approx(1.0, rel=1e-6) and c.r500c_mpc == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_allclose(c.centre_mpc, CORNER, rtol=1e-9)


def _brute_force(pos_mpc: np.ndarray, centre, radius: float, box: float) -> np.ndarray:
    d = pos_mpc - np.asarray(centre)
    d -= box * np.round(d / box)
    return d[np.linalg.norm(d, axis=1) <= radius]


def _sorted(pos: np.ndarray) -> np.ndarray:
    return pos[np.lexsort(pos.T)]


def test_region_wraps_across_the_corner(reader, snap):
    """Oracle: brute-force minimum image over every particle written (positions to 1e-9 Mpc)."""
    radius = 2.5
    gas, dm = reader.region(CORNER, radius)
    want_gas = _brute_force(snap.gas_pos_mpc, CORNER, radius, snap.box_mpc)
    want_dm = _brute_force(snap.dm_pos_mpc, CORNER, radius, snap.box_mpc)
    assert gas.n == len(want_gas) > 3000 and dm.n == len(want_dm) > 3000
    np.testing.assert_allclose(_sorted(gas.pos_mpc), _sorted(want_gas), atol=1e-9)
    np.testing.assert_allclose(_sorted(dm.pos_mpc), _sorted(want_dm), atol=1e-9)
    # the halo straddles the boundary: particles on both sides of the centre on every axis
    assert np.all(gas.pos_mpc.min(axis=0) < -1.0) and np.all(gas.pos_mpc.max(axis=0) > 1.0)
    np.testing.assert_allclose(dm.mass_msun, snap.dm_mass_msun, rtol=1e-12)  # from MassTable[1]


def test_temperature_from_internal_energy_and_electron_abundance(reader):
    """Oracle: T = (gamma - 1) u mu m_p / k_B, mu = 4 / (1 + 3 X + 4 X x_e), X = 0.76, with
    scipy's CODATA constants (u = 1e6 (km/s)^2, x_e = 1.1 as written; rtol 1e-6)."""
    gas, _ = reader.region(MIDDLE, 1.0)
    mu = 4.0 / (1.0 + 3 * 0.76 + 4 * 0.76 * np.float32(1.1))
    want = (2.0 / 3.0) * 1e6 * 1e6 * mu * sc.m_p / sc.k
    np.testing.assert_allclose(gas.temperature_k, want, rtol=1e-6)
    # fully ionised primordial gas: x_e = 1 + Y / (2 X) gives the 0.588 of cmpipe's mock plasma
    assert mean_molecular_weight(1.0 + 0.24 / (2 * 0.76)) == pytest.approx(4.0 / (3.0 + 5 * 0.76), rel=1e-12)


def test_density_converts_and_cells_get_the_support_of_32_neighbours(reader):
    """Density: the Plummer density the test wrote, back in Msun Mpc^-3 after the a^3/h^2 units
    (rtol 1e-6, float32). AREPO support: H = (3 N m / (4 pi rho))^(1/3), N = 32 (rtol 1e-12), and
    in the core, where the density is nearly flat, the kernel of the innermost 200 cells holds
    33 +- 15 % cells (itself and 32 neighbours; Poisson counts average to within ~2 %)."""
    gas, _ = reader.region(MIDDLE, 2.0)
    r = np.linalg.norm(gas.pos_mpc, axis=1)
    rho = 3.0 * M_GAS / (4 * np.pi * A_MPC**3) * (1 + (r / A_MPC) ** 2) ** -2.5
    np.testing.assert_allclose(gas.density_msun_mpc3, rho, rtol=1e-6)
    np.testing.assert_allclose(gas.smoothing_length_mpc, np.cbrt(3 * 32 * gas.mass_msun / (4 * np.pi * rho)), rtol=1e-6)
    assert cell_support_mpc(np.array([4 * np.pi / 3]), np.array([1.0]), 1.0)[0] == pytest.approx(1.0, rel=1e-12)
    inner = np.argsort(r)[:200]
    d = np.linalg.norm(gas.pos_mpc[inner, None, :] - gas.pos_mpc[None, :, :], axis=2)
    counts = (d < gas.smoothing_length_mpc[inner, None]).sum(axis=1)
    assert counts.mean() == pytest.approx(33.0, rel=0.15)


def test_units_from_the_parameters_group_as_gadget4_writes_them(snap, reader, tmp_path):
    s, c = write_snapshot(tmp_path, snap, units_in="Parameters")
    other = GadgetSnapshot(s, c)
    assert other.halos() == reader.halos()
    assert other.info.box_mpc == reader.info.box_mpc


def test_only_overlapping_files_are_read(snap, tmp_path):
    """File 1 holds x >= 4.76 Mpc. After the bounding boxes are scanned it is removed: a region
    at x ~ 2 Mpc (radius 1) is still read; one reaching into x >= 4.76 names the missing file."""
    s, c = write_snapshot(tmp_path, snap)
    r = GadgetSnapshot(s, c)
    r.scan_extents()
    (tmp_path / "snap_099.1.hdf5").unlink()
    gas, dm = r.region([2.0, 4.7, 4.7], 1.0)
    assert gas.n == len(_brute_force(snap.gas_pos_mpc, [2.0, 4.7, 4.7], 1.0, snap.box_mpc)) > 0
    with pytest.raises(SnapshotError, match=r"snap_099\.1\.hdf5: file does not exist"):
        r.region(MIDDLE, 1.0)


def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


def _del_attrs(group, names):
    for n in names:
        del group.attrs[n]


BAD_SNAPSHOTS = {
    "missing InternalEnergy": (lambda f: f["PartType0"].__delitem__("InternalEnergy"),
                               r"snap_099\.0\.hdf5: dataset /PartType0/InternalEnergy: missing"),
    "missing units": (lambda f: _del_attrs(f["Header"], ["UnitLength_in_cm", "UnitMass_in_g",
                                                          "UnitVelocity_in_cm_per_s"]),
                      r"snap_099\.0\.hdf5: unit attributes UnitLength_in_cm.*missing.*unknown units"),
    "partial units": (lambda f: _del_attrs(f["Header"], ["UnitMass_in_g"]),
                      r"/Header/UnitMass_in_g: missing \(unknown units\)"),
    "DM without masses": (lambda f: f["Header"].attrs.__setitem__("MassTable", np.zeros(6)),
                          r"dataset /PartType1/Masses: missing, and /Header/MassTable\[1\]"),
    "time is not a(z)": (lambda f: f["Header"].attrs.__setitem__("Time", 0.9),
                         r"/Header/Time = 0.9 is not 1/\(1 \+ Redshift\)"),
}


@pytest.mark.parametrize("case", sorted(BAD_SNAPSHOTS))
def test_bad_snapshot_names_file_and_field(snap, tmp_path, case):
    s, c = write_snapshot(tmp_path, snap)
    edit, message = BAD_SNAPSHOTS[case]
    _edit(s, edit)
    with pytest.raises(SnapshotError, match=message):
        GadgetSnapshot(s, c)


@pytest.mark.parametrize("kw, message", [
    ({"box_factor": 1.01}, r"fof_subhalo_tab_099\.0\.hdf5: header attribute /Header/BoxSize = .* does not match"),
    ({"redshift": 0.6}, r"fof_subhalo_tab_099\.0\.hdf5: header attribute /Header/Redshift = 0\.6 does not match"),
])
def test_catalog_of_another_snapshot_is_refused(snap, files, tmp_path, kw, message):
    for p in files[0].parent.glob("snap_*"):
        shutil.copy(p, tmp_path / p.name)
    cat = write_catalog(tmp_path, snap, [8000, 8000, 0, 0, 20, 0], **kw)
    with pytest.raises(SnapshotError, match=message):
        GadgetSnapshot(tmp_path / "snap_099.0.hdf5", cat).halos()


def test_catalog_counting_more_particles_than_the_snapshot_is_refused(snap, files, tmp_path):
    for p in files[0].parent.glob("snap_*"):
        shutil.copy(p, tmp_path / p.name)
    cat = write_catalog(tmp_path, snap, [0] * 6)
    _edit(cat, lambda f: f["Group/GroupLenType"].__setitem__(0, [9000, 0, 0, 0, 0, 0]))
    with pytest.raises(SnapshotError, match=r"GroupLenType: groups hold 9000 particles of PartType0"):
        GadgetSnapshot(tmp_path / "snap_099.0.hdf5", cat).halos()


def test_catalog_without_m200m_names_the_field(snap, files, tmp_path):
    for p in files[0].parent.glob("snap_*"):
        shutil.copy(p, tmp_path / p.name)
    cat = write_catalog(tmp_path, snap, [0] * 6)
    _edit(cat, lambda f: f["Group"].__delitem__("Group_M_Mean200"))
    with pytest.raises(SnapshotError, match=r"fof_subhalo_tab_099\.0\.hdf5: dataset /Group/Group_M_Mean200: missing"):
        GadgetSnapshot(tmp_path / "snap_099.0.hdf5", cat).halos()


def test_region_beyond_half_the_box_is_refused(reader):
    with pytest.raises(SnapshotError, match="below half the box"):
        reader.region(MIDDLE, 0.5 * reader.info.box_mpc)


def test_small_chunks_read_the_same_region_from_fewer_rows(snap, files):
    """Chunks of 500 rows: the region equals the brute force (as above), and the chunk index
    keeps fewer rows than the files hold (the halo in the middle is far from the corner one)."""
    r = GadgetSnapshot(*files, chunk_rows=500)
    gas, _ = r.region(MIDDLE, 2.0)
    np.testing.assert_allclose(_sorted(gas.pos_mpc), _sorted(_brute_force(snap.gas_pos_mpc, MIDDLE, 2.0, snap.box_mpc)),
                               atol=1e-9)
    lf = r._meta.units.length_mpc
    ranges = r._chunks_for(0, np.asarray(MIDDLE) / lf, 2.0 / lf)
    rows = sum(b - a for rr in ranges.values() for a, b in rr)
    assert gas.n <= rows < 0.75 * snap.gas_pos_mpc.shape[0]


def test_reader_pickles_with_its_extents(reader):
    import pickle

    reader.scan_extents()
    again = pickle.loads(pickle.dumps(reader))
    gas, _ = again.region(CORNER, 1.0)
    assert gas.n == reader.region(CORNER, 1.0)[0].n > 0
    assert math.isclose(again.info.box_mpc, reader.info.box_mpc)

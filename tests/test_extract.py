"""extract-halos: the Ray-free extraction, the Ray fan-out and the CLI, on the Gadget-4 / AREPO
snapshots of tests/gadget_files.py (Plummer spheres of gas and DM, one across the box corner).

Oracles: the Plummer surface density of the slab in closed form, averaged over each pixel
(tests/test_sph.py's comparison and tolerance: 4 Poisson sigma per annulus); the catalog values
after the published unit factors; the serial extraction for the Ray one (identical files); the
slab geometry by hand.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

from cmpipe.cli import main
from cmpipe.physics.hdf5io import read_halo_hdf5, read_halo_properties_hdf5
from cmpipe.physics.snapshots.base import CatalogHalo, SnapshotError
from cmpipe.physics.snapshots.extract import (
    ExtractionSettings,
    extract_halos,
    halo_file,
    open_snapshot,
    select_halos,
    slab_radius_mpc,
)
from cmpipe.physics.snapshots.gadget import GadgetSnapshot
from cmpipe.sph.projection import MapGrid, project
from cmpipe.sph.smoothing import smoothing_lengths
from gadget_files import plummer_snapshot, write_snapshot
from tiny_stores import TINY_MODEL

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

CORNER, MIDDLE = [0.1, 9.4, 0.2], [4.7, 4.7, 4.7]
A_MPC, M_GAS, M_DM = 0.3, 1.6e13, 8.4e13
SETTINGS = ExtractionSettings(npix=32, pixel_mpc=0.1, depth_mpc=3.2)
MAPS = ["maps.npix=32", "maps.pixel_mpc=0.1", "maps.depth_mpc=3.2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    snap = plummer_snapshot(np.random.default_rng(7), [CORNER, MIDDLE], stars=10)
    return write_snapshot(tmp_path_factory.mktemp("tng"), snap)


@pytest.fixture(scope="module")
def extracted(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("halos")
    return out, extract_halos(GadgetSnapshot(*files), out, SETTINGS)


def test_slab_radius_holds_the_projection_slab():
    """The sphere through the slab's corners (+-L/2, +-L/2, +-D/2): radius sqrt(2 (L/2)^2 + (D/2)^2)."""
    assert slab_radius_mpc(32, 0.1, 3.2) == pytest.approx(1.6 * math.sqrt(3.0), rel=1e-14)
    s = ExtractionSettings(npix=128, pixel_mpc=0.1, depth_mpc=12.8, radius_mpc=3.0)
    corner = np.array([6.4, 6.4, 6.4])
    assert s.extraction_radius_mpc == pytest.approx(np.linalg.norm(corner), rel=1e-14)
    assert ExtractionSettings(npix=8, pixel_mpc=0.1, depth_mpc=0.8, radius_mpc=3.0).extraction_radius_mpc == 3.0


def test_selection_by_mass_in_msun_h_and_ids():
    halos = [CatalogHalo(i, (0.0, 0.0, 0.0), m / 0.7, 1.0) for i, m in enumerate([1e13, 1e14, 1e15])]
    s = ExtractionSettings(8, 0.1, 0.8, log10_m_min_msun_h=13.5, log10_m_max_msun_h=15.0)
    assert [c.halo_id for c in select_halos(halos, 0.7, s)] == [1, 2]
    s = ExtractionSettings(8, 0.1, 0.8, ids=(0, 1), log10_m_min_msun_h=13.5)
    assert [c.halo_id for c in select_halos(halos, 0.7, s)] == [1]
    with pytest.raises(SnapshotError, match=r"snap\.hdf5: halos \[7\] are not in the catalog"):
        select_halos(halos, 0.7, ExtractionSettings(8, 0.1, 0.8, ids=(0, 7)), where="snap.hdf5")


def test_extracted_properties_equal_the_catalog(extracted, files):
    out, summary = extracted
    assert (summary["written"], summary["skipped"], summary["failed"]) == (2, 0, 0)
    assert summary["warnings"] == [] and summary["ignored"] == ["PartType4 (stars)"]
    assert all(abs(r - 1.0) < 0.1 for r in summary["mass_ratios"].values())
    assert all(r["holds_slab"] for r in summary["rows"])
    for c in GadgetSnapshot(*files).halos():
        props = read_halo_properties_hdf5(halo_file(out, c.halo_id))
        assert props.m200m_msun == pytest.approx(c.m200m_msun, rel=1e-12)
        assert props.r200m_mpc == pytest.approx(c.r200m_mpc, rel=1e-12)
        assert props.m500c_msun == pytest.approx(c.m500c_msun, rel=1e-12)
        assert props.r500c_mpc == pytest.approx(c.r500c_mpc, rel=1e-12)
        np.testing.assert_allclose(props.centre_mpc, c.centre_mpc, rtol=1e-12)
        assert props.redshift == 0.5


def plummer_sigma_slab(r_perp: np.ndarray, m_msun: float, half_depth: float) -> np.ndarray:
    """Plummer surface density over |z| <= Z [Msun Mpc^-2] (derivation in tests/test_sph.py)."""
    a2, zz = A_MPC**2, half_depth
    b2 = a2 + r_perp**2
    return m_msun * a2 * zz * (2 * zz**2 + 3 * b2) / (2 * np.pi * b2**2 * (zz**2 + b2) ** 1.5)


def _annuli_deviation(sigma_map: np.ndarray, m_msun: float, m_part: float, grid: MapGrid) -> list:
    """(lo, hi, relative deviation, Poisson sigma) per annulus against the pixel-averaged slab profile."""
    centres = (np.arange(grid.npix) + 0.5) * grid.pixel_mpc - 0.5 * grid.extent_mpc
    cx, cy = np.meshgrid(centres, centres)
    nsub = 8
    offsets = ((np.arange(nsub) + 0.5) / nsub - 0.5) * grid.pixel_mpc
    analytic = sum(plummer_sigma_slab(np.hypot(cx + ox, cy + oy), m_msun, 0.5 * grid.depth_mpc)
                   for ox in offsets for oy in offsets) / nsub**2
    r_pix = np.hypot(cx, cy)
    edges = (0.1, 0.2, 0.3, 0.45, 0.65, 0.9, 1.2, 1.5)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (r_pix >= lo) & (r_pix < hi)
        got, want = sigma_map[sel].mean(), analytic[sel].mean()
        n_expected = want * sel.sum() * grid.pixel_area_mpc2 / m_part
        rows.append((lo, hi, got / want - 1.0, 1.0 / math.sqrt(n_expected)))
    return rows


def test_extracted_corner_halo_projects_to_the_analytic_plummer_profile(extracted):
    """The halo across the corner, read back from its cmpipe file and projected (fast backend,
    32 x 32 of 0.1 Mpc, depth 3.2 Mpc): gas with the AREPO cell supports the reader gave, DM with
    k = 32 neighbour supports. Oracle and tolerance as tests/test_sph.py: the slab-restricted
    Plummer profile averaged over each annulus' pixels, within 4 Poisson sigma (sigma 2-7 % for
    4000 particles per component). A wrap or unit error (a factor a = 2/3 or h = 0.7 in lengths)
    moves the profile by far more."""
    out, _ = extracted
    halo = read_halo_hdf5(halo_file(out, 0))
    grid = MapGrid(npix=32, pixel_mpc=0.1, depth_mpc=3.2)
    report = {}
    for name, part, m_total in (("gas", halo.gas, M_GAS), ("dm", halo.dm, M_DM)):
        x, y, z = part.pos_mpc.T.copy()
        support = part.smoothing_length_mpc
        if support is None:
            support = smoothing_lengths(part.pos_mpc, 32)
        sigma = project(x, y, z, support, part.mass_msun, grid, backend="fast")
        report[name] = _annuli_deviation(sigma, m_total, float(part.mass_msun[0]), grid)
    bad = {k: [row for row in rows if abs(row[2]) > 4.0 * row[3]] for k, rows in report.items()}
    assert bad == {"gas": [], "dm": []}, f"annuli (lo, hi, rel dev, sigma) beyond 4 sigma: {report}"


def test_rerun_skips_written_halos_and_never_rewrites_them(files, tmp_path):
    reader = GadgetSnapshot(*files)
    first = extract_halos(reader, tmp_path, ExtractionSettings(32, 0.1, 3.2, ids=(0,)))
    assert first["written"] == 1
    with h5py.File(halo_file(tmp_path, 0), "r+") as f:
        f.attrs["marker"] = "kept"
    again = extract_halos(reader, tmp_path, SETTINGS)
    assert (again["written"], again["skipped"]) == (1, 1)
    assert [r["status"] for r in again["rows"]] == ["skipped", "written"]
    with h5py.File(halo_file(tmp_path, 0)) as f:
        assert f.attrs["marker"] == "kept"


def test_catalog_mass_off_by_half_warns_but_writes(files, tmp_path):
    import shutil

    for p in files[0].parent.glob("*.hdf5"):
        shutil.copy(p, tmp_path / p.name)
    with h5py.File(tmp_path / files[1].name, "r+") as f:
        f["Group/Group_M_Mean200"][0] *= 1.5
    reader = GadgetSnapshot(tmp_path / files[0].name, tmp_path / files[1].name)
    summary = extract_halos(reader, tmp_path / "out", SETTINGS)
    assert summary["written"] == 2
    assert len(summary["warnings"]) == 1
    assert summary["warnings"][0].startswith("halo 0: particle mass inside R200m is 0.6")


def test_radius_beyond_half_the_box_fails_each_halo_with_its_reason(files, tmp_path):
    summary = extract_halos(GadgetSnapshot(*files), tmp_path, ExtractionSettings(32, 0.1, 3.2, radius_mpc=5.0))
    assert (summary["written"], summary["failed"]) == (0, 2)
    assert [f["halo_id"] for f in summary["failures"]] == [0, 1]
    assert all(f"halo {f['halo_id']}: extraction radius 5 Mpc is not below half the box" in f["reason"]
               for f in summary["failures"])
    assert not list(tmp_path.glob("halo_*.hdf5"))


def test_unknown_format_is_refused(files):
    with pytest.raises(SnapshotError, match="snapshot format 'ramses' is not known; known formats: gadget, swift"):
        open_snapshot("ramses", *files)


def _cli(files, out, *extra):
    return ["extract-halos", "--format", "gadget", "--snapshot", str(files[0]), "--catalog", str(files[1]),
            "--out", str(out), *[a for o in MAPS for a in ("--set", o)], *extra]


def test_cli_errors_are_one_line(files, tmp_path, capsys):
    assert main(_cli(files, tmp_path / "o", "--serial", "--ids", "0,9")) == 2
    assert "halos [9] are not in the catalog" in capsys.readouterr().err
    assert main(_cli(files, tmp_path / "o", "--serial", "--radius-mpc", "5")) == 1
    assert "cmpipe: failed: " in capsys.readouterr().err
    argv = _cli(files, tmp_path / "o", "--serial")
    argv.remove("--out")
    argv.remove(str(tmp_path / "o"))
    assert main(argv) == 2
    assert "extract-halos needs --out" in capsys.readouterr().err


def test_ray_extraction_writes_the_serial_files(ray_local, files, extracted, tmp_path):
    from cmpipe.config import load_config
    from cmpipe.pipeline.extract import extract_with_ray

    serial_out, _ = extracted
    summary = extract_with_ray(load_config("demo", MAPS), {"halos": tmp_path}, fmt="gadget", snapshot=files[0],
                               catalog=files[1])
    assert summary["written"] == 2 and [r["halo_id"] for r in summary["rows"]] == [0, 1]
    for hid in (0, 1):
        a, b = read_halo_hdf5(halo_file(serial_out, hid)), read_halo_hdf5(halo_file(tmp_path, hid))
        assert a.props == b.props
        np.testing.assert_array_equal(_sorted(a.gas.pos_mpc), _sorted(b.gas.pos_mpc))
        np.testing.assert_array_equal(np.sort(a.gas.smoothing_length_mpc), np.sort(b.gas.smoothing_length_mpc))
    again = extract_with_ray(load_config("demo", MAPS), {"halos": tmp_path}, fmt="gadget", snapshot=files[0],
                             catalog=files[1])
    assert (again["written"], again["skipped"]) == (0, 2)


def _sorted(pos: np.ndarray) -> np.ndarray:
    return pos[np.lexsort(pos.T)]


def test_extract_generate_train_end_to_end(ray_local, tmp_path, capsys):
    """``extract-halos`` (Ray tasks) -> ``generate --serial`` with source.kind=hdf5 -> a 2-step
    ``train --serial`` of the tiny model, on four extracted Plummer halos."""
    centres = [CORNER, MIDDLE, [0.1, 4.7, 4.7], [4.7, 0.1, 9.4]]
    files = write_snapshot(tmp_path / "sim", plummer_snapshot(np.random.default_rng(3), centres))
    halos = tmp_path / "halos"
    assert main(_cli(files, halos)) == 0
    assert "4 halos written" in capsys.readouterr().out
    gen = [*MAPS, "source.kind=hdf5", f"source.path={halos}", "generate.images_per_0p1dex=12",
           "generate.max_rotations_per_halo=1", "generate.test_images_per_halo=0",
           "generate.split_fractions=[0.5, 0.5, 0.0]", "generate.chunk_images=4", "sph.num_threads=1"]
    sets = [a for o in [*gen, *TINY_MODEL] for a in ("--set", o)]
    store = tmp_path / "out" / "images.zarr"
    assert main(["generate", "--serial", "--store", str(store), "--out", str(tmp_path / "out"), *sets]) == 0
    assert "12 images of 4 halos" in capsys.readouterr().out
    run = tmp_path / "out" / "run"
    assert main(["train", "--store", str(store), "--run", str(run), "--serial", "--max-steps", "2",
                 "--out", str(tmp_path / "out"), *sets]) == 0
    assert (run / "metrics.csv").exists()


# ----------------------------------------------------------------------------- M500c / R500c in the halo files


def test_m500c_r500c_round_trip_and_absent_is_nan(extracted, tmp_path):
    """Written in the file's units and read back (rtol 1e-12); a file without them (every file
    written before issue 19) reads NaN and compares equal to the defaults, also after pickling;
    a non-positive value names the attribute."""
    import dataclasses
    import pickle

    from cmpipe.physics.halo import HaloError, HaloProperties
    from cmpipe.physics.hdf5io import write_halo_hdf5

    out, _ = extracted
    halo = read_halo_hdf5(halo_file(out, 1))
    path = write_halo_hdf5(tmp_path / "kpc.hdf5", halo, length_unit="kpc/h", mass_unit="1e10 Msun/h", comoving=True)
    back = read_halo_properties_hdf5(path)
    assert back.m500c_msun == pytest.approx(halo.props.m500c_msun, rel=1e-12)
    assert back.r500c_mpc == pytest.approx(halo.props.r500c_mpc, rel=1e-12)
    plain = dataclasses.replace(halo, props=dataclasses.replace(halo.props, m500c_msun=math.nan, r500c_mpc=math.nan))
    path = write_halo_hdf5(tmp_path / "plain.hdf5", plain)
    with h5py.File(path) as f:
        assert "M500c" not in f["Halo"].attrs and "R500c" not in f["Halo"].attrs
    props = read_halo_properties_hdf5(path)
    assert math.isnan(props.m500c_msun) and props == plain.props == pickle.loads(pickle.dumps(props))
    assert HaloProperties(1, 1.0, 1.0, m500c_msun=float("nan")) == HaloProperties(1, 1.0, 1.0)
    with h5py.File(path, "r+") as f:
        f["Halo"].attrs["M500c"] = -1.0
    with pytest.raises(HaloError, match=r"plain\.hdf5, halo 1, attribute /Halo/M500c: value -1\.0 is not > 0"):
        read_halo_properties_hdf5(path)

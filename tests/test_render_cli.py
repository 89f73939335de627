"""``cmpipe render-halo`` and ``cmpipe demo`` through the CLI, on tiny halos."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from cmpipe.cli import main
from cmpipe.config import load_config
from cmpipe.mapmaking.maps import HaloMaps
from cmpipe.physics.hdf5io import write_halo_hdf5
from cmpipe.stages.source import analytic_source

TINY = ["source.kind=analytic", "maps.npix=32", "maps.pixel_mpc=0.2", "maps.depth_mpc=6.4", "source.analytic_log10_m200m_msun_h=[13.5]",
        "source.analytic_pair_mass_msun_h=2e10"]


def _set(args):
    out = []
    for a in args:
        out += ["--set", a]
    return out


@pytest.fixture(scope="module")
def halo_file(tmp_path_factory):
    cfg = load_config("demo", TINY)
    path = tmp_path_factory.mktemp("halos") / "halo_000000.hdf5"
    write_halo_hdf5(path, analytic_source(cfg).load(0), h=0.7, smoothing_convention="swift")
    return path


def test_render_halo_from_hdf5_writes_png_npz_and_config(halo_file, tmp_path, capsys):
    """Oracle: the files the command promises exist; the .npz holds 4 channels of 32 x 32 pixels
    of 0.2 Mpc with units; the DM map's mass equals the particles' mass (rel 1e-9)."""
    out = tmp_path / "render"
    status = main(["render-halo", "--input", str(halo_file), "--halo-id", "0", "--axis", "1", "--rotation-seed", "4",
                   "--out", str(out), *_set(TINY)])
    assert status == 0
    stem = "halo_000000_rot4_axis1"
    assert (out / f"{stem}.png").stat().st_size > 10_000
    assert (out / "config.resolved.yaml").exists()
    maps = HaloMaps.load_npz(out / f"{stem}.npz")
    assert maps.data.shape == (4, 32, 32) and maps.pixel_mpc == 0.2 and maps.axis == 1
    assert maps.units[1] == "erg s-1 cm-2 sr-1"
    assert str(out / f"{stem}.png") in capsys.readouterr().out
    with h5py.File(halo_file) as f:
        dm_mass_internal = f["PartType1/Masses"][:].sum()  # written in Msun (writer's default)
    from cmpipe.physics.cosmology import mean_densities

    cfg = load_config("demo", TINY)
    got = maps.channel("dm_sigma").sum() * 0.2**2 * mean_densities(cfg.cosmology).dark_matter * 6.4
    assert got == pytest.approx(dm_mass_internal, rel=1e-9)


def test_render_halo_reports_bad_hdf5_with_file_halo_and_field(halo_file, tmp_path, capsys):
    """Oracle: the error contract: exit status 2 and a message naming file, halo and field."""
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(halo_file.read_bytes())
    with h5py.File(bad, "r+") as f:
        coords = f["PartType0/Coordinates"][:]
        coords[3, 1] = np.nan
        f["PartType0/Coordinates"][:] = coords
    status = main(["render-halo", "--input", str(bad), "--out", str(tmp_path / "o"), *_set(TINY)])
    err = capsys.readouterr().err
    assert status == 2
    assert "bad.hdf5" in err and "halo 0" in err and "Coordinates" in err


def test_demo_runs_and_conserves_mass(tmp_path, capsys):
    """Oracle: mass conservation in the summary (projected / in-view particle mass = 1 to 1e-9)
    and the files the demo promises; a second run reuses the halo files (idempotent)."""
    out = tmp_path / "demo"
    assert main(["project-halos", "--out", str(out), *_set(TINY)]) == 0
    rows = json.loads((out / "summary.json").read_text())
    assert len(rows) == 1
    assert rows[0]["gas_mass_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert rows[0]["dm_mass_ratio"] == pytest.approx(1.0, abs=1e-9)
    assert rows[0]["central_y"] > 0 and rows[0]["central_sx_erg_s_cm2_sr"] > 0
    assert (out / "maps" / "halo_000000_axis2.png").exists()
    assert len(list((out / "maps").glob("*.npz"))) == 4
    halo_file = out / "halos" / "halo_000000.hdf5"
    first = halo_file.stat().st_mtime_ns
    assert main(["project-halos", "--out", str(out), *_set(TINY)]) == 0
    assert halo_file.stat().st_mtime_ns == first
    assert "gas map/part" in capsys.readouterr().out

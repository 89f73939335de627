"""FITS maps, HDF5 halo files, reconstructions and the Python API at object-store URLs, against a
real S3 API on localhost (moto's server mode: ``s3_server``/``s3_bucket`` in conftest).

Oracles: the same call on local disk. FITS written to the bucket are byte for byte the local
file, and read back to the same header and data; halo files on the bucket read to the same
arrays as the local files; a reconstruction whose checkpoint, inputs and outputs all live in the
bucket equals (data and headers) the local one with the same seed; extract-halos and render-halo
write to the bucket what they write to disk. User errors (a missing bucket, an unknown scheme,
a snapshot URL) exit 2 with one line naming the URL, and nothing is written.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import yaml
import zarr
from astropy.io import fits

from cmpipe.cli import main
from cmpipe.physics.hdf5io import HDF5HaloSource, read_halo_hdf5, write_halo_hdf5
from cmpipe.store.fits import FitsError, read_fits_header, read_map_fits, write_map_fits
from cmpipe.store.location import as_path, zarr_store

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

TINY_HALOS = ["source.kind=analytic", "maps.npix=32", "maps.pixel_mpc=0.2", "maps.depth_mpc=6.4",
              "source.analytic_log10_m200m_msun_h=[13.5, 13.6]", "source.analytic_pair_mass_msun_h=2e10"]


def _set(*keys: str) -> list[str]:
    return [a for k in keys for a in ("--set", k)]


def _one_line_error(err: str, *names: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cmpipe: error: "), lines[0]
    for name in names:
        assert name in lines[0], (name, lines[0])
    return lines[0]


def _upload(local_dir, url: str) -> str:
    """Every file under ``local_dir`` put under the prefix ``url`` (same relative names)."""
    root = as_path(url)
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        (root / path.relative_to(local_dir).as_posix()).write_bytes(path.read_bytes())
    return url


def _assert_same_fits(a, b) -> None:
    """Same HDUs, names, headers (every card) and data (array_equal)."""
    with fits.open(a) as ha, fits.open(b) as hb:
        assert [h.name for h in ha] == [h.name for h in hb]
        for x, y in zip(ha, hb):
            assert list(x.header.items()) == list(y.header.items()), x.name
            if x.data is None:
                assert y.data is None
            else:
                np.testing.assert_array_equal(x.data, y.data)


# --------------------------------------------------------------------------------------- FITS


def test_fits_written_to_a_bucket_equal_the_local_file(s3_bucket, tmp_path):
    rng = np.random.default_rng(3)
    cube, plane = rng.random((2, 8, 8)), rng.random((8, 8)).astype(np.float32)
    kw = dict(pixel_mpc=0.25, channel_names=["gas_sigma", "dm_sigma"], units=["", ""], redshift=0.1,
              arcmin_per_pixel=0.5, extra_header={"SEED": 3}, extensions={"MEAN": cube, "STD": cube / 2})
    local = write_map_fits(tmp_path / "m.fits", None, **kw)
    url = write_map_fits(f"{s3_bucket}/maps/m.fits", None, **kw)
    assert str(url) == f"{s3_bucket}/maps/m.fits"
    assert url.read_bytes() == local.read_bytes()
    assert list(read_fits_header(url, "MEAN").items()) == list(read_fits_header(local, "MEAN").items())
    for hdu in ("MEAN", "STD"):
        got, want = read_map_fits(url, hdu=hdu, channel="dm_sigma"), read_map_fits(local, hdu=hdu, channel="dm_sigma")
        np.testing.assert_array_equal(got.data, want.data)
        assert (got.pixel_mpc, got.unit, got.centre_pix) == (want.pixel_mpc, want.unit, want.centre_pix)
        assert got.path == str(url)

    one = write_map_fits(f"{s3_bucket}/maps/y.fits", plane, pixel_mpc=0.1, channel_names="sz_y", units="")
    assert one.read_bytes() == write_map_fits(tmp_path / "y.fits", plane, pixel_mpc=0.1, channel_names="sz_y",
                                              units="").read_bytes()
    with pytest.raises(FileExistsError, match=f"{s3_bucket}/maps/y.fits exists"):
        write_map_fits(one, plane, pixel_mpc=0.1, channel_names="sz_y", units="")


def test_fits_read_errors_name_the_url(s3_bucket):
    with pytest.raises(FileNotFoundError, match=f"{s3_bucket}/none.fits"):
        read_map_fits(f"{s3_bucket}/none.fits")
    (as_path(s3_bucket) / "text.fits").write_bytes(b"not a FITS file\n" * 200)
    with pytest.raises(FitsError, match=f"{s3_bucket}/text.fits: not a readable FITS file"):
        read_map_fits(f"{s3_bucket}/text.fits")


# ------------------------------------------------------------------------------------- HDF5


@pytest.fixture(scope="module")
def halo_dir(tmp_path_factory):
    """Two tiny analytic halos in cmpipe's HDF5 layout on local disk (different unit conventions)."""
    from cmpipe.config import load_config
    from cmpipe.stages.source import analytic_source

    source = analytic_source(load_config("demo", TINY_HALOS))
    out = tmp_path_factory.mktemp("halos")
    write_halo_hdf5(out / "halo_000000.hdf5", source.load(0), h=0.7, smoothing_convention="swift")
    write_halo_hdf5(out / "halo_000001.h5", source.load(1), h=0.7, length_unit="kpc/h", comoving=True,
                    thermal="InternalEnergy")
    return out


def _assert_same_halo(a, b) -> None:
    assert dataclasses.asdict(a.props) == dataclasses.asdict(b.props)
    for part in ("gas", "dm"):
        for name, value in vars(getattr(a, part)).items():
            other = getattr(getattr(b, part), name)
            if value is None:
                assert other is None, name
            else:
                np.testing.assert_array_equal(value, other, err_msg=f"{part}.{name}")


def test_hdf5_halo_files_on_a_bucket_read_as_the_local_files(halo_dir, s3_bucket):
    url = _upload(halo_dir, f"{s3_bucket}/halos")
    (as_path(url) / ".hidden.hdf5").write_bytes(b"x")  # hidden objects are not halo files
    remote, local = HDF5HaloSource(url), HDF5HaloSource(halo_dir)
    assert repr(remote) == f"HDF5HaloSource('{url}', 2 files)"
    assert remote.halo_ids() == local.halo_ids() == (0, 1)
    for hid in (0, 1):
        assert remote.properties(hid) == local.properties(hid)
        _assert_same_halo(remote.load(hid), local.load(hid))
    one = HDF5HaloSource(f"{url}/halo_000001.h5")  # a single file by URL
    _assert_same_halo(one.load(1), local.load(1))


def test_write_halo_hdf5_to_a_bucket_is_whole_and_no_clobber(halo_dir, s3_bucket):
    halo = read_halo_hdf5(halo_dir / "halo_000000.hdf5")
    url = f"{s3_bucket}/out/halo_000000.hdf5"
    write_halo_hdf5(url, halo, h=0.7, smoothing_convention="swift")
    _assert_same_halo(read_halo_hdf5(url), halo)
    with pytest.raises(FileExistsError, match=f"{url} exists"):
        write_halo_hdf5(url, halo)
    write_halo_hdf5(url, halo, mass_unit="1e10 Msun/h", overwrite=True)
    np.testing.assert_allclose(read_halo_hdf5(url).gas.mass_msun, halo.gas.mass_msun, rtol=1e-14)
    assert [p.name for p in as_path(f"{s3_bucket}/out").iterdir()] == ["halo_000000.hdf5"]  # no temporary left


def test_render_halo_from_and_to_a_bucket_equals_local(halo_dir, s3_bucket, tmp_path, capsys):
    from cmpipe.mapmaking.maps import HaloMaps

    url = _upload(halo_dir, f"{s3_bucket}/halos")
    argv = ["render-halo", "--halo-id", "0", "--axis", "2", *_set(*TINY_HALOS)]
    assert main([*argv, "--input", str(halo_dir), "--out", str(tmp_path / "local")]) == 0
    assert main([*argv, "--input", url, "--out", f"{s3_bucket}/render"]) == 0
    stem = "halo_000000_rot-1_axis2"
    out = as_path(f"{s3_bucket}/render")
    assert f"{s3_bucket}/render/{stem}.png" in capsys.readouterr().out
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert saved["source"]["kind"] == "hdf5" and saved["source"]["path"] == url
    (tmp_path / "remote.npz").write_bytes((out / f"{stem}.npz").read_bytes())
    got, want = HaloMaps.load_npz(tmp_path / "remote.npz"), HaloMaps.load_npz(tmp_path / "local" / f"{stem}.npz")
    np.testing.assert_array_equal(got.data, want.data)


def test_extract_halos_to_a_bucket_equals_local(tmp_path, s3_bucket, capsys):
    from gadget_files import plummer_snapshot, write_snapshot

    snap, catalog = write_snapshot(tmp_path / "snap", plummer_snapshot(np.random.default_rng(7), [[4.7, 4.7, 4.7]]))
    argv = ["extract-halos", "--format", "gadget", "--snapshot", str(snap), "--catalog", str(catalog), "--serial",
            *_set("maps.npix=32", "maps.pixel_mpc=0.1", "maps.depth_mpc=3.2")]
    assert main([*argv, "--out", str(tmp_path / "halos")]) == 0
    url = f"{s3_bucket}/halos"
    assert main([*argv, "--out", url]) == 0
    assert "1 halos written" in capsys.readouterr().out
    _assert_same_halo(read_halo_hdf5(f"{url}/halo_000000.hdf5"), read_halo_hdf5(tmp_path / "halos" / "halo_000000.hdf5"))
    summary = json.loads((as_path(url) / "extraction.json").read_text())
    assert summary["written"] == 1 and summary["rows"][0]["path"] == f"{url}/halo_000000.hdf5"
    assert (as_path(url) / "config.resolved.yaml").is_file()
    assert main([*argv, "--out", url]) == 0  # resumable: the halo object exists
    assert "0 halos written, 1 skipped" in capsys.readouterr().out
    assert HDF5HaloSource(url).halo_ids() == (0,)


# ------------------------------------------------------------------------------- reconstruct


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny store and a 2-step training run on local disk (tests/tiny_stores.py), and the test
    split's first image exported as FITS."""
    from tiny_stores import inference_config, make_run, make_store

    from cmpipe.stages.reconstruct import export_store_fits
    from cmpipe.store.zarr_store import open_store

    root = tmp_path_factory.mktemp("s3_recon")
    store = make_store(inference_config(), root)
    run = make_run(inference_config(), store, root)
    group = open_store(store)
    index = int(np.flatnonzero((group["split"][:] == 2) & (group["image_failed"][:] == 0))[0])
    sz, xray = export_store_fits(store, [index], root / "fits")[:2]
    return store, run, index, sz, xray


def test_export_store_fits_to_a_bucket_equals_local(tiny_run, s3_bucket):
    from cmpipe.stages.reconstruct import export_store_fits

    store, _, index, sz, xray = tiny_run
    paths = export_store_fits(store, [index], f"{s3_bucket}/fits")
    assert [str(p) for p in paths[:2]] == [f"{s3_bucket}/fits/{sz.name}", f"{s3_bucket}/fits/{xray.name}"]
    assert paths[0].read_bytes() == sz.read_bytes() and paths[1].read_bytes() == xray.read_bytes()


def test_reconstruct_with_everything_on_a_bucket_equals_local(tiny_run, s3_bucket, tmp_path):
    """Checkpoint (a run directory), inputs and outputs in the bucket; the run's config (for the
    model grid) read from the bucket too. Then ``reconstruct_many`` over the bucket's inputs: the
    cluster done before is skipped (no Ray) and reconstructions.csv is written whole to the
    bucket; and ``cmpipe.Reconstructor`` loads the bucket's checkpoint."""
    from tiny_stores import inference_config

    from cmpipe.pipeline.reconstruct import find_fits_pairs, reconstruct_many
    from cmpipe.stages.reconstruct import reconstruct

    _, run, _, sz, xray = tiny_run
    remote_run = _upload(run, f"{s3_bucket}/run")
    fits_url = _upload(sz.parent, f"{s3_bucket}/fits")
    cfg = inference_config()
    infer = dataclasses.replace(cfg.infer, steps=2, sampler="em")
    kw = dict(n_samples=2, seed=3, save_samples=True, infer_cfg=infer)
    name = sz.name.replace("sz_y", "", 1).removesuffix(".fits")
    local = reconstruct(run, sz, xray, tmp_path / f"{name}recon.fits", **kw)
    remote = reconstruct(remote_run, f"{fits_url}/{sz.name}", f"{fits_url}/{xray.name}",
                         f"{s3_bucket}/recon/{name}recon.fits", **kw)
    assert str(remote["fits"]) == f"{s3_bucket}/recon/{name}recon.fits" and remote["grid_source"].startswith(s3_bucket)
    (tmp_path / "remote.fits").write_bytes(remote["fits"].read_bytes())
    _assert_same_fits(tmp_path / "remote.fits", local["fits"])
    assert remote["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The Python API on the same bucket run: the samples of image_seed(3, 0), as reconstruct's.
    import cmpipe

    rec = cmpipe.Reconstructor(remote_run, steps=2)
    post = rec.sample(read_map_fits(sz).data, read_map_fits(xray).data, pixel_mpc=0.4, n_samples=2, seed=3)
    with fits.open(local["fits"]) as hdul:
        np.testing.assert_array_equal(post.samples.mean(axis=0), hdul["MEAN"].data)
    assert rec.sigma_unit_msun_mpc2 != {} and str(rec.checkpoint).startswith(remote_run)

    pairs = find_fits_pairs(fits_url)
    assert [(p["name"], p["sz"]) for p in pairs] == [(name, f"{fits_url}/{sz.name}")]
    table = as_path(f"{s3_bucket}/clusters.csv")  # paths relative to the table's prefix
    table.write_text(f"name,sz,xray\n{name},fits/{sz.name},fits/{xray.name}\n")
    assert find_fits_pairs(table) == pairs
    summary = reconstruct_many(cfg, remote_run, fits_url, f"{s3_bucket}/recon", n_samples=2)
    assert (summary["clusters"], summary["done_before"], summary["reconstructed"]) == (1, 1, 0)
    table = as_path(f"{s3_bucket}/recon/reconstructions.csv").read_text()
    assert f"{s3_bucket}/recon/{name}recon.fits" in table and table.count("\n") == 2


def test_api_open_store_at_a_url_equals_local(tiny_run, s3_bucket):
    import cmpipe

    store = tiny_run[0]
    url = _upload(store, f"{s3_bucket}/images.zarr")
    got, want = cmpipe.open_store(url), cmpipe.open_store(store)
    np.testing.assert_array_equal(got["maps"].values, want["maps"].values)
    assert list(got["channel"].values) == list(want["channel"].values)


# -------------------------------------------------------------------------------- user errors


def test_reconstruct_errors_name_the_url_and_write_nothing(tiny_run, s3_bucket, tmp_path, capsys):
    _, run, _, sz, xray = tiny_run
    out = tmp_path / "out" / "recon.fits"
    base = ["reconstruct", "--samples", "2", "--recon", str(out)]
    missing = "s3://cmpipe-no-such-bucket/run"
    assert main([*base, "--checkpoint", missing, "--sz", str(sz), "--xray", str(xray)]) == 2
    _one_line_error(capsys.readouterr().err, missing, "does not exist")
    assert main([*base, "--checkpoint", str(run), "--sz", "nosuch://b/y.fits", "--xray", str(xray)]) == 2
    _one_line_error(capsys.readouterr().err, "nosuch://b/y.fits", "unknown URL scheme")
    assert main([*base, "--checkpoint", str(run), "--inputs", "s3://cmpipe-no-such-bucket/fits"]) == 2
    _one_line_error(capsys.readouterr().err, "s3://cmpipe-no-such-bucket/fits")
    assert main(["reconstruct", "--checkpoint", str(run), "--sz", str(sz), "--xray", str(xray),
                 "--recon", "s3://cmpipe-no-such-bucket/recon.fits"]) == 2
    _one_line_error(capsys.readouterr().err, "s3://cmpipe-no-such-bucket/recon.fits")
    assert not (tmp_path / "out").exists()


def test_halo_url_errors_name_the_url_and_write_nothing(s3_bucket, tmp_path, capsys):
    halos = "s3://cmpipe-no-such-bucket/halos"
    assert main(["render-halo", "--input", halos, "--out", str(tmp_path / "r"), *_set(*TINY_HALOS)]) == 2
    _one_line_error(capsys.readouterr().err, halos, "does not exist")
    assert main(["render-halo", "--input", f"{s3_bucket}/none", "--out", str(tmp_path / "r"), *_set(*TINY_HALOS)]) == 2
    _one_line_error(capsys.readouterr().err, f"{s3_bucket}/none")
    extract = ["extract-halos", "--format", "gadget", "--serial"]
    assert main([*extract, "--snapshot", f"{s3_bucket}/snap.hdf5", "--catalog", f"{s3_bucket}/fof.hdf5",
                 "--out", str(tmp_path / "x")]) == 2
    _one_line_error(capsys.readouterr().err, f"{s3_bucket}/snap.hdf5", "local disk only")
    assert main([*extract, "--snapshot", "s.hdf5", "--catalog", "c.hdf5", "--out", halos]) == 2
    _one_line_error(capsys.readouterr().err, halos, "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert list(as_path(s3_bucket).iterdir()) == []


def test_project_halos_on_a_bucket_equals_local(s3_bucket, tmp_path, capsys):
    """``cmpipe project-halos --out s3://...``: the halo files, maps, summary and training set on
    the bucket are the local run's (the resolved config differs only in ``run.out``)."""
    keys = _set(*TINY_HALOS, "generate.images_per_0p1dex=2", "generate.chunk_images=4")
    local, remote = tmp_path / "demo", as_path(f"{s3_bucket}/demo")
    assert main(["project-halos", "--out", str(local), *keys]) == 0
    assert main(["project-halos", "--out", str(remote), *keys]) == 0
    capsys.readouterr()
    names = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    remote_names = sorted(str(p)[len(str(remote)) + 1:] for p in remote.rglob("*") if p.is_file())
    assert names == remote_names
    def summary(out):  # the rows without their wall-clock seconds
        return [{k: v for k, v in row.items() if k != "seconds"} for row in json.loads((out / "summary.json").read_text())]

    assert summary(local) == summary(remote)
    for name in names:
        if name.startswith("maps/") and name.endswith(".npz"):
            with np.load(local / name) as a, np.load(io.BytesIO((remote / name).read_bytes())) as b:
                assert sorted(a.files) == sorted(b.files)
                for key in a.files:
                    np.testing.assert_array_equal(a[key], b[key], err_msg=name)
        elif name.startswith("halos/"):
            assert (local / name).read_bytes() == (remote / name).read_bytes(), name
    np.testing.assert_array_equal(zarr.open_group(str(local / "store.zarr"), mode="r")["maps"][...],
                                  zarr.open_group(zarr_store(remote / "store.zarr", read_only=True), mode="r")["maps"][...])

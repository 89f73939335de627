"""FITS maps in and out (``cmpipe.store.fits``) and reconstruction from FITS (``cmpipe.stages.reconstruct``).

Oracles: exact round trips (the arrays as written, the header values as written); astropy's unit
conversion factors (1 m^-2 = 1e-4 cm^-2, 1 kpc = 1e-3 Mpc); ``block_mean`` of the crop (exact)
and the mean of a constant map (1e-12 relative) or of a smooth Gaussian (1 % relative); the
model's documented grid (shape, WCS keywords) for the end-to-end run on a tiny store and
checkpoint (as ``tests/test_infer_ray.py`` builds them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from cmpipe import __version__
from cmpipe.config import load_config
from cmpipe.store.fits import FitsError, area_resample, check_and_resample, read_map_fits, write_map_fits
from cmpipe.model.dataset import block_mean

XRAY = "erg s-1 cm-2 sr-1"


def _map(n: int = 16, seed: int = 0, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).lognormal(size=(n, n)).astype(dtype)


def _write_plain(path, data, cards):
    """A FITS file with exactly the given header cards (no cmpipe writer)."""
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    hdu.writeto(path)
    return path


def _linear(pixel, unit="Mpc", n=16):
    c = (n + 1) / 2
    return {"CTYPE1": "X", "CTYPE2": "Y", "CUNIT1": unit, "CUNIT2": unit, "CDELT1": pixel, "CDELT2": pixel,
            "CRPIX1": c, "CRPIX2": c, "CRVAL1": 0.0, "CRVAL2": 0.0}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_keeps_map_units_and_wcs(tmp_path, dtype):
    # Oracle: the array, pixel size, unit and centre as written (exact).
    data = _map(16, dtype=dtype)[:, :12]  # non-square, to catch an x/y swap
    path = write_map_fits(tmp_path / "x.fits", data, pixel_mpc=0.25, channel_names="xray_sb",
                          units="erg s^-1 cm^-2 sr^-1", extra_header={"HALO_ID": 7})
    with fits.open(path) as hdul:
        h = hdul[0].header
        assert hdul[0].data.dtype == np.dtype(dtype).newbyteorder(">")
        assert (h["NAXIS1"], h["NAXIS2"]) == (12, 16)
        assert (h["CUNIT1"], h["CDELT1"], h["CRPIX1"], h["CRPIX2"]) == ("Mpc", 0.25, 6.5, 8.5)
        assert (h["BUNIT"], h["CHANNEL"], h["CMPIPE"], h["HALO_ID"]) == (XRAY, "xray_sb", __version__, 7)
    image = read_map_fits(path)
    assert image.data.dtype == np.float64 and np.array_equal(image.data, data.astype(np.float64))
    assert (image.pixel_mpc, image.unit, image.channel) == (0.25, XRAY, "xray_sb")
    # cmpipe's grid: pixel centres at (i + 0.5) p - n p / 2, so (0, 0) Mpc is at (n - 1) / 2.
    assert image.centre_pix == (5.5, 7.5)
    assert image.notes == ()


def test_dimensionless_map_has_no_bunit_and_redshift_gives_angular_scale(tmp_path):
    # Oracle: D_A from colossus independently (arcmin = pixel / D_A * 180 * 60 / pi).
    from cmpipe.physics.cosmology import colossus_cosmology
    from cmpipe.stages.reconstruct import fits_arcmin_per_pixel

    cosmo_cfg = load_config("demo").cosmology
    path = write_map_fits(tmp_path / "y.fits", _map(), pixel_mpc=0.1, channel_names="sz_y",
                          units="dimensionless (Compton-y)", redshift=0.5,
                          arcmin_per_pixel=fits_arcmin_per_pixel(0.1, 0.5, cosmo_cfg))
    header = fits.getheader(path)
    assert "BUNIT" not in header and header["REDSHIFT"] == 0.5
    cosmo = colossus_cosmology(cosmo_cfg)
    d_a = cosmo.angularDiameterDistance(0.5) / cosmo.h
    assert header["ARCMINPX"] == pytest.approx(0.1 / d_a * 180 * 60 / np.pi, rel=1e-12)
    assert read_map_fits(path).unit == ""


def test_extensions_cubes_and_channels(tmp_path):
    # Oracle: the planes as written, the per-plane names and units.
    mean = np.stack([_map(8, 1), _map(8, 2)])
    path = write_map_fits(tmp_path / "p.fits", None, pixel_mpc=0.5, channel_names=["gas_sigma", "dm_sigma"],
                          units=["", ""], extensions={"MEAN": mean, "SAMPLES": mean[None].repeat(3, 0)})
    with fits.open(path) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "MEAN", "SAMPLES"]
        assert hdul["SAMPLES"].data.shape == (3, 2, 8, 8)
    image = read_map_fits(path, hdu="MEAN", channel="dm_sigma")
    assert np.array_equal(image.data, mean[1]) and image.channel == "dm_sigma" and image.pixel_mpc == 0.5
    with pytest.raises(FitsError, match="pass channel="):
        read_map_fits(path, hdu="MEAN")


def test_kpc_cd_matrix_and_mirrored_axis(tmp_path):
    # Oracle: 1 kpc = 1e-3 Mpc (astropy); a negative CDELT1 reverses the x axis.
    data = _map()
    image = read_map_fits(_write_plain(tmp_path / "k.fits", data, _linear(250.0, "kpc")))
    assert image.pixel_mpc == pytest.approx(0.25, rel=1e-15)
    cards = _linear(0.25)
    del cards["CDELT1"], cards["CDELT2"]
    cards.update({"CD1_1": -0.25, "CD2_2": 0.25, "CD1_2": 0.0, "CD2_1": 0.0})
    image = read_map_fits(_write_plain(tmp_path / "cd.fits", data, cards))
    assert image.pixel_mpc == 0.25 and np.array_equal(image.data, data[:, ::-1])
    assert image.centre_pix == (7.5, 7.5) and "mirrored" in image.notes[0]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"CDELT1": None, "CDELT2": None}, "no pixel scale"),
        ({"CDELT2": 0.3}, "non-square"),
        ({"CUNIT1": None, "CUNIT2": None}, "CUNIT1/CUNIT2 missing"),
        ({"CUNIT1": "deg", "CUNIT2": "deg"}, "not a length"),
        ({"BUNIT": "furlongs per fortnight squared"}, "not a unit"),
        ({"PC1_1": 0.8, "PC1_2": -0.6, "PC2_1": 0.6, "PC2_2": 0.8}, "rotated"),
    ],
)
def test_unusable_headers_are_refused_naming_the_file(tmp_path, change, match):
    # Oracle: the documented refusals, each naming the file.
    cards = _linear(0.1)
    for key, value in change.items():
        if value is None:
            del cards[key]
        else:
            cards[key] = value
    path = _write_plain(tmp_path / "bad.fits", _map(), cards)
    with pytest.raises(FitsError, match=match) as info:
        read_map_fits(path)
    assert str(path) in str(info.value)


def _image(tmp_path, data, pixel, unit=XRAY, name="m.fits"):
    path = write_map_fits(tmp_path / name, data, pixel_mpc=pixel, channel_names="xray_sb", units=unit)
    return read_map_fits(path)


def test_compatible_unit_is_converted_and_wrong_unit_refused(tmp_path):
    # Oracle: 1 erg s-1 m-2 sr-1 = 1e-4 erg s-1 cm-2 sr-1 (astropy, relative 1e-15).
    data = _map()
    image = _image(tmp_path, data, 0.1, unit="erg s-1 m-2 sr-1")
    out, messages = check_and_resample(image, channel="xray_sb", expected_unit=XRAY, model_pixel_mpc=0.1, model_npix=16)
    np.testing.assert_allclose(out, data * 1e-4, rtol=1e-15)
    assert any("factor 0.0001" in m for m in messages)
    same = read_map_fits(_write_plain(tmp_path / "same.fits", data, {**_linear(0.1), "BUNIT": "erg / (s cm2 sr)"}))
    out, messages = check_and_resample(same, channel="xray_sb", expected_unit=XRAY, model_pixel_mpc=0.1, model_npix=16)
    assert np.array_equal(out, data) and messages == []
    wrong = _image(tmp_path, data, 0.1, unit="W m-2", name="wrong.fits")
    with pytest.raises(FitsError, match=r"'W m-2'.*'erg s-1 cm-2 sr-1'") as info:
        check_and_resample(wrong, channel="xray_sb", expected_unit=XRAY, model_pixel_mpc=0.1, model_npix=16)
    assert "wrong.fits" in str(info.value)


def test_half_pixel_map_is_block_averaged_and_cropped(tmp_path):
    # Oracle: block_mean of the centred crop (exact); its mean equals the crop's (1e-14).
    data = _map(40)
    image = _image(tmp_path, data, 0.05)
    out, messages = check_and_resample(image, channel="xray_sb", expected_unit=XRAY, model_pixel_mpc=0.1, model_npix=16)
    crop = data[4:36, 4:36]
    assert np.array_equal(out, block_mean(crop, 2))
    assert out.mean() == pytest.approx(crop.mean(), rel=1e-14)
    assert any("2x2" in m and "factor 2" in m for m in messages) and any("cropped" in m for m in messages)


def test_too_small_or_too_coarse_image_is_refused(tmp_path):
    # Oracle: the documented refusals with their reasons.
    image = _image(tmp_path, _map(30), 0.05)  # 1.5 Mpc, the model needs 1.6 Mpc
    with pytest.raises(FitsError, match="too small") as info:
        check_and_resample(image, channel="xray_sb", expected_unit=XRAY, model_pixel_mpc=0.1, model_npix=16)
    assert "m.fits" in str(info.value) and "1.6 x 1.6 Mpc" in str(info.value)
    coarse = _image(tmp_path, _map(16), 0.2, name="coarse.fits")
    with pytest.raises(FitsError, match="upsampling"):
        check_and_resample(coarse, channel="xray_sb", expected_unit=XRAY, model_pixel_mpc=0.1, model_npix=8)


def test_non_integer_ratio_preserves_the_mean(tmp_path):
    # Oracles: a constant stays constant (1e-12 relative); a smooth Gaussian's mean over the
    # field is kept within 1 % (the mean of the analytic profile over the same field).
    n, pixel, model_pixel, model_n = 45, 0.07, 0.16, 16
    const = _image(tmp_path, np.full((n, n), 3.5), pixel, name="c.fits")
    out, messages = check_and_resample(const, channel="xray_sb", expected_unit=XRAY, model_pixel_mpc=model_pixel,
                                       model_npix=model_n)
    np.testing.assert_allclose(out, 3.5, rtol=1e-12)
    assert any("area weighting" in m and "2.28571" in m for m in messages)
    x = (np.arange(n) + 0.5) * pixel - n * pixel / 2
    gauss = np.exp(-(x[None, :] ** 2 + x[:, None] ** 2) / (2 * 0.6**2))
    out, _ = check_and_resample(_image(tmp_path, gauss, pixel, name="g.fits"), channel="xray_sb", expected_unit=XRAY,
                                model_pixel_mpc=model_pixel, model_npix=model_n)
    xm = (np.arange(model_n) + 0.5) * model_pixel - model_n * model_pixel / 2
    fine = np.linspace(-model_n * model_pixel / 2, model_n * model_pixel / 2, 4001)
    truth_mean = np.mean(np.exp(-fine**2 / (2 * 0.6**2))) ** 2
    assert out.mean() == pytest.approx(truth_mean, rel=0.01)
    assert out[model_n // 2, model_n // 2] > out[0, 0] and np.allclose(out, out.T, rtol=1e-12)
    assert xm[model_n // 2] > 0  # the grid is centred: the peak lies between the middle pixels


def test_area_resample_integer_ratio_equals_block_mean():
    # Oracle: two independent implementations (overlap matrices vs reshape-mean), 1e-13.
    data = _map(12)
    np.testing.assert_allclose(area_resample(data, 0.0, 0.0, 3.0, 4), block_mean(data, 3), rtol=1e-13)


@pytest.mark.parametrize("content", [b"", b"name,sz\nfoo,bar\n", b"SIMPLE  =                    T" + b" " * 100],
                         ids=["empty", "text", "bare-card"])
def test_non_fits_file_is_a_fits_error_naming_it(tmp_path, content):
    path = tmp_path / "map.fits"
    path.write_bytes(content)
    with pytest.raises(FitsError, match=f"{path}: not a readable FITS file"):
        read_map_fits(path)
    truncated = tmp_path / "truncated.fits"
    write_map_fits(truncated, _map(64), pixel_mpc=0.1, channel_names="sz_y", units="")
    truncated.write_bytes(truncated.read_bytes()[:2880 + 1000])
    with pytest.raises(FitsError, match="truncated.fits: not a readable FITS file .*truncated"):
        read_map_fits(truncated)
    with pytest.raises(FileNotFoundError):
        read_map_fits(tmp_path / "missing.fits")


# ---------------------------------------------------------------------------------- end to end

from tiny_stores import inference_config as _cfg  # noqa: E402
from tiny_stores import make_run, make_store  # noqa: E402


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    store = make_store(_cfg(), tmp_path_factory.mktemp("fits_store"))
    return store, make_run(_cfg(), store, tmp_path_factory.mktemp("fits_run"))


def test_export_and_reconstruct_end_to_end(tiny_run, tmp_path):
    # Oracles: the store's maps as exported (exact, float32); the model grid (16 x 16 pixels of
    # 0.4 * 32 / 16 = 0.8 Mpc) in the output's shape and WCS; finite posterior maps.
    from cmpipe.stages.reconstruct import export_store_fits, model_grid, reconstruct
    from cmpipe.store.zarr_store import open_store

    store, run = tiny_run
    group = open_store(store)
    test_code = list(group.attrs["split_names"]).index("test")
    index = int(np.flatnonzero((group["split"][:] == test_code) & (group["image_failed"][:] == 0))[0])
    paths = export_store_fits(store, [index], tmp_path / "fits")
    assert [p.name for p in paths] == [f"image_{index:06d}_{c}.fits" for c in ("sz_y", "xray_sb", "gas_sigma", "dm_sigma")]
    xray = read_map_fits(paths[1])
    assert xray.unit == XRAY and xray.pixel_mpc == pytest.approx(0.4) and xray.data.shape == (32, 32)
    assert np.array_equal(xray.data, np.asarray(group["maps"][index, 1], dtype=np.float64))

    grid = model_grid(run)
    assert (grid.npix, grid.pixel_mpc) == (16, pytest.approx(0.8))
    infer = dataclasses.replace(_cfg().infer, steps=4, sampler="em")
    result = reconstruct(run, paths[0], paths[1], tmp_path / "out" / "recon.fits", n_samples=2, seed=3,
                         save_samples=True, infer_cfg=infer)
    assert any("block-averaged by 2x2" in m for m in result["messages"])
    with fits.open(result["fits"]) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "MEAN", "STD", "SAMPLES"]
        for name in ("MEAN", "STD"):
            h, data = hdul[name].header, hdul[name].data
            assert data.shape == (2, 16, 16) and np.all(np.isfinite(data))
            assert (h["CUNIT1"], h["CUNIT2"], h["CHNAME1"], h["CHNAME2"]) == ("Mpc", "Mpc", "gas_sigma", "dm_sigma")
            assert h["CDELT1"] == pytest.approx(0.8) and h["CRPIX1"] == 8.5 and h["BUNIT"] == ""
        assert hdul["SAMPLES"].data.shape == (2, 2, 16, 16)
        assert np.all(hdul["STD"].data >= 0)
    assert result["png"].is_file() and result["png"].stat().st_size > 0
    with pytest.raises(FitsError, match="contradicts"):
        model_grid(run, pixel_mpc=0.5)


def test_model_grid_of_a_bare_checkpoint(tiny_run, tmp_path):
    # Oracles: a checkpoint alone (no config.resolved.yaml beside it) records the store's map grid
    # in its hyper-parameters (0.4 Mpc x 32 / 16 = 0.8 Mpc); one written before that (no
    # hyperparameters["maps"]) needs the caller's pixel_mpc, used as given.
    import json
    import shutil

    from cmpipe.model.training import latest_checkpoint
    from cmpipe.stages.reconstruct import model_grid

    _, run = tiny_run
    ckpt = latest_checkpoint(run)
    bare = tmp_path / ckpt.name
    shutil.copy(ckpt, bare)
    shutil.copy(ckpt.with_suffix(".json"), bare.with_suffix(".json"))
    grid = model_grid(bare)
    assert (grid.npix, grid.pixel_mpc, grid.config) == (16, pytest.approx(0.8), None)
    meta = json.loads(bare.with_suffix(".json").read_text())
    old = {k: v for k, v in meta["hyperparameters"].items() if k != "maps"}
    with pytest.raises(FitsError, match="records no map pixel size"):
        model_grid(bare, hyperparameters=old)
    grid = model_grid(bare, hyperparameters=old, pixel_mpc=0.8)
    assert (grid.npix, grid.pixel_mpc, grid.config) == (16, 0.8, None)


def test_cli_reconstruct_from_maps_the_generator_exported(tiny_run, tmp_path, capsys):
    """``cmpipe reconstruct`` on the FITS files of the store's test split (as ``cmpipe generate
    --export-fits test`` writes them): a FITS with MEAN and STD of the model's shape."""
    from cmpipe.cli import main
    from cmpipe.stages.reconstruct import export_store_fits
    from cmpipe.store.zarr_store import open_store

    store, run = tiny_run
    group = open_store(store)
    index = int(np.flatnonzero(group["split"][:] == 2)[0])
    sz, xray, *_ = export_store_fits(store, [index], tmp_path / "fits")
    out = tmp_path / "recon.fits"
    sets = [a for s in ["infer.steps=4", "infer.sampler=em"] for a in ("--set", s)]
    argv = ["reconstruct", "--checkpoint", str(run), "--sz", str(sz), "--xray", str(xray), "--recon", str(out),
            "--samples", "2", *sets]
    assert main(argv) == 0
    assert "block-averaged" in capsys.readouterr().out
    with fits.open(out) as hdul:
        assert hdul["MEAN"].data.shape == (2, 16, 16) and hdul["STD"].data.shape == (2, 16, 16)
    bad = tmp_path / "bad.fits"
    with fits.open(xray) as hdul:
        hdul[0].header["BUNIT"] = "W m-2"
        hdul.writeto(bad)
    assert main([*argv[:5], "--xray", str(bad), "--recon", str(tmp_path / "recon_bad.fits"), *argv[9:]]) == 2
    assert "W m-2" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
def test_reconstruct_many_with_ray_data(tiny_run, ray_local, tmp_path, capsys):
    """``cmpipe reconstruct --inputs DIR``: every exported test image through a Ray Data actor pool;
    each output equals the one-cluster reconstruction with the cluster's seed (seed + its rank in
    name order: independent of batching); a rerun skips what is written. The table form reads the
    same pairs."""
    from cmpipe.cli import main
    from cmpipe.pipeline.reconstruct import find_fits_pairs
    from cmpipe.stages.reconstruct import export_store_fits, reconstruct
    from cmpipe.store.zarr_store import open_store

    store, run = tiny_run
    group = open_store(store)
    indices = [int(i) for i in np.flatnonzero(group["split"][:] == 2)[:2]]
    export_store_fits(store, indices, tmp_path / "fits")
    pairs = find_fits_pairs(tmp_path / "fits")
    assert [p["name"] for p in pairs] == [f"image_{i:06d}_" for i in indices]
    table = tmp_path / "clusters.csv"
    table.write_text("name,sz,xray\n" + "".join(f"{p['name']},fits/{Path(p['sz']).name},fits/{Path(p['xray']).name}\n"
                                                 for p in pairs))
    assert [(p["sz"], p["xray"]) for p in find_fits_pairs(table)] == [(p["sz"], p["xray"]) for p in pairs]
    sets = [a for s in ["infer.steps=4", "infer.sampler=em", "infer.images_per_batch=1", "infer.actors=1",
                        "infer.cpus_per_actor=1", "infer.gpus_per_actor=0", "infer.threads_per_actor=1"]
            for a in ("--set", s)]
    argv = ["reconstruct", "--checkpoint", str(run), "--inputs", str(tmp_path / "fits"), "--recon", str(tmp_path / "out"),
            "--samples", "2", "--seed", "5", *sets]
    assert main(argv) == 0
    assert "2 clusters: 0 done before, 2 reconstructed" in capsys.readouterr().out
    infer = dataclasses.replace(_cfg(*[s for s in sets if s != "--set"]).infer, n_samples=2)
    for k, p in enumerate(pairs):
        one = reconstruct(run, p["sz"], p["xray"], tmp_path / f"one{k}.fits", n_samples=2, seed=5 + k, infer_cfg=infer,
                          quicklook=False)
        with fits.open(one["fits"]) as a, fits.open(tmp_path / "out" / f"{p['name']}recon.fits") as b:
            np.testing.assert_allclose(b["MEAN"].data, a["MEAN"].data, rtol=1e-5)
    assert main(argv) == 0
    assert "2 done before, 0 reconstructed" in capsys.readouterr().out
    assert (tmp_path / "out" / "reconstructions.csv").read_text().count("recon.fits") == 2

"""``cmpipe reconstruct`` on maps with a sky (RA/Dec) WCS, and observer-ready outputs (issue 21).

Oracles: astropy's ``FlatLambdaCDM`` (the header's cosmology, radiation included as colossus
includes it) for the angular diameter distance (relative 1e-5: colossus interpolates its
distance table) and the mean densities (relative 1e-9); :func:`cmpipe.store.fits.area_resample`
where the footprints are axis-aligned (1e-12), the integral of the map where they are rotated
(exact up to rounding, 1e-12), an analytic Gaussian sampled on another projection (2 % of the
peak: pixelisation); the reconstruction of the same maps with a physical WCS (the TAN map has
the same pixels: relative 1e-5, the distance codes' difference); ``CCDData.read`` and
``astropy.wcs`` reading the outputs back.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.wcs import WCS
from tiny_stores import inference_config as _cfg
from tiny_stores import make_run, make_store

from cmpipe.store.fits import (
    FitsError, area_resample, check_and_resample, polygon_resample, read_input_fits, read_map_fits,
    reproject_to_grid, sky_grid_wcs, write_map_fits,
)

Z = 0.3
RA, DEC = 150.0, 2.0
SETS = [a for s in ["infer.steps=2", "infer.sampler=em"] for a in ("--set", s)]


def _astropy(cosmo_cfg):
    from astropy.cosmology import FlatLambdaCDM

    return FlatLambdaCDM(H0=100.0 * cosmo_cfg.h, Om0=cosmo_cfg.omega_m, Ob0=cosmo_cfg.omega_b, Tcmb0=2.7255,
                         Neff=3.046, m_nu=0.0 * u.eV)


def _d_a():
    """D_A(Z) [Mpc] from astropy, for the test config's cosmology."""
    return _astropy(_cfg().cosmology).angular_diameter_distance(Z).to_value(u.Mpc)


def _tan_cards(n, pixel_mpc, redshift=Z, ctype=("RA---TAN", "DEC--TAN")):
    """A north-up, east-left sky WCS of ``n`` pixels of ``pixel_mpc`` at ``redshift``, centred on (RA, DEC)."""
    pix = np.degrees(pixel_mpc / _d_a())
    cards = {"CTYPE1": ctype[0], "CTYPE2": ctype[1], "CUNIT1": "deg", "CUNIT2": "deg", "CRPIX1": (n + 1) / 2,
             "CRPIX2": (n + 1) / 2, "CRVAL1": RA, "CRVAL2": DEC, "CDELT1": -pix, "CDELT2": pix, "RADESYS": "ICRS"}
    if redshift is not None:
        cards["REDSHIFT"] = redshift
    return cards


def _on_sky(src, dst, **kw):
    """A copy of cmpipe FITS map ``src`` (physical WCS) with the same pixels on the sky (TAN)."""
    with fits.open(src) as hdul:
        data, header = hdul[0].data, hdul[0].header
        hdu = fits.PrimaryHDU(data)
        for key, value in _tan_cards(data.shape[-1], header["CDELT1"], **kw).items():
            hdu.header[key] = value
        if "BUNIT" in header:
            hdu.header["BUNIT"] = header["BUNIT"]
        hdu.writeto(dst)
    return dst


# ------------------------------------------------------------------------------- resampling


def test_polygon_resample_is_area_weighting_and_conserves_the_integral():
    # Oracles: area_resample on an axis-aligned grid (1e-12); on a grid rotated by 0.3 rad,
    # the integral of a map that vanishes outside the grid's footprint (1e-12 relative); a
    # mirrored grid gives the mirrored map.
    rng = np.random.default_rng(0)
    data = rng.lognormal(size=(40, 50))
    edges = np.arange(21) * 1.7
    cx, cy = np.meshgrid(3.3 + edges, 2.7 + edges)
    out, coverage = polygon_resample(data, cx, cy)
    np.testing.assert_allclose(out, area_resample(data, 3.3, 2.7, 1.7, 20), rtol=1e-12)
    assert np.all(coverage == pytest.approx(1.0, abs=1e-12))

    c, s = np.cos(0.3), np.sin(0.3)
    u_, v_ = np.meshgrid(np.arange(15) * 1.3 - 9.1, np.arange(15) * 1.3 - 9.1)
    x, y = 25 + c * u_ - s * v_, 20 + s * u_ + c * v_
    blob = np.zeros_like(data)
    blob[15:25, 20:30] = rng.lognormal(size=(10, 10))  # inside the rotated footprint
    out, coverage = polygon_resample(blob, x, y, max_pairs=500)  # and in chunks
    area = 1.3**2
    assert out.sum() * area == pytest.approx(blob.sum(), rel=1e-12)
    mirrored, _ = polygon_resample(blob, x[:, ::-1], y[:, ::-1])
    np.testing.assert_allclose(mirrored[:, ::-1], out, rtol=1e-12, atol=1e-15)


def test_tan_map_reprojects_as_the_physical_map(tmp_path):
    # Oracle: the same pixels with a physical WCS through check_and_resample (block means of
    # 2 x 2): the TAN projection at its tangent point is linear, so 1e-10.
    data = np.random.default_rng(1).lognormal(size=(32, 32))
    phys = read_map_fits(write_map_fits(tmp_path / "p.fits", data, pixel_mpc=0.4, channel_names="xray_sb",
                                        units="erg s-1 cm-2 sr-1"))
    want, _ = check_and_resample(phys, channel="xray_sb", expected_unit="erg s-1 cm-2 sr-1",
                                 model_pixel_mpc=0.8, model_npix=12)
    hdu = fits.PrimaryHDU(data)
    for key, value in {**_tan_cards(32, 0.4), "BUNIT": "erg s-1 cm-2 arcmin-2"}.items():
        hdu.header[key] = value
    hdu.writeto(tmp_path / "s.fits")
    sky = read_input_fits(tmp_path / "s.fits")
    grid = sky_grid_wcs(12, np.degrees(0.8 / _d_a()), sky.centre(), sky.wcs)
    got, messages = reproject_to_grid(sky, channel="xray_sb", expected_unit="erg s-1 cm-2 sr-1", grid_wcs=grid,
                                      model_npix=12, model_pixel_mpc=0.8)
    per_sr = (1 / u.arcmin**2).to_value(1 / u.sr)  # the map's unit per arcmin^2, converted
    np.testing.assert_allclose(got, want * per_sr, rtol=1e-10)
    assert any("factor 2" in m and "arcmin" in m for m in messages)


def test_rotated_map_in_another_projection_and_frame(tmp_path):
    # Oracle: an analytic Gaussian (sigma 1.5 Mpc) written on a Galactic-frame SIN map rotated by
    # 30 degrees, reprojected onto an ICRS TAN grid about its centre: the Gaussian's mean over
    # each model pixel (erf) within 0.5 % of the peak (the input's 0.2 Mpc pixels smooth it by
    # about p^2 / (12 sigma^2) = 0.15 %), and its integral within 0.2 %.
    from astropy.coordinates import SkyCoord
    from scipy.special import ndtr

    n, pix_mpc, sigma = 96, 0.2, 1.5
    centre = SkyCoord(RA, DEC, unit="deg", frame="icrs").galactic
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["GLON-SIN", "GLAT-SIN"]
    wcs.wcs.crval = [centre.l.deg, centre.b.deg]
    wcs.wcs.crpix = [(n + 1) / 2, (n + 1) / 2]
    pix = np.degrees(pix_mpc / _d_a())
    wcs.wcs.cd = pix * np.array([[-np.cos(np.pi / 6), np.sin(np.pi / 6)], [np.sin(np.pi / 6), np.cos(np.pi / 6)]])
    iy, ix = np.mgrid[:n, :n]
    sep = wcs.pixel_to_world(ix, iy).separation(centre).rad * _d_a()  # [Mpc]
    hdu = fits.PrimaryHDU(np.exp(-0.5 * (sep / sigma) ** 2), header=wcs.to_header())
    hdu.header["REDSHIFT"] = Z
    hdu.writeto(tmp_path / "g.fits")
    sky = read_input_fits(tmp_path / "g.fits", channel="sz_y")
    grid = sky_grid_wcs(16, np.degrees(0.8 / _d_a()), SkyCoord(RA, DEC, unit="deg"), WCS(_tan_cards(16, 0.8)))
    got, _ = reproject_to_grid(sky, channel="sz_y", expected_unit="", grid_wcs=grid, model_npix=16,
                               model_pixel_mpc=0.8)
    edges = (np.arange(17) - 8) * 0.8 / sigma  # model pixel edges [sigma] (the TAN grid about the centre)
    frac = np.diff(ndtr(edges))
    want = np.outer(frac, frac) * 2 * np.pi * (sigma / 0.8) ** 2  # mean of the Gaussian over each pixel
    np.testing.assert_allclose(got, want, atol=0.005)
    assert got.sum() == pytest.approx(want.sum(), rel=0.002)


# ------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def sky_run(tmp_path_factory):
    """A tiny store and 2-step run; one test image exported with its physical WCS and on the sky
    at z = 0.3 (TAN, the store's pixels)."""
    from cmpipe.stages.reconstruct import export_store_fits
    from cmpipe.store.zarr_store import open_store

    store = make_store(_cfg(), tmp_path_factory.mktemp("sky_store"))
    run = make_run(_cfg(), store, tmp_path_factory.mktemp("sky_run"))
    group = open_store(store)
    index = int(np.flatnonzero(group["split"][:] == 2)[0])
    out = tmp_path_factory.mktemp("sky_fits")
    sz, xray, *_ = export_store_fits(store, [index], out)
    return run, (sz, xray), (_on_sky(sz, out / "sky_sz_y.fits"), _on_sky(xray, out / "sky_xray_sb.fits"))


def test_sky_maps_reconstruct_with_an_observer_ready_header(sky_run, tmp_path, capsys):
    # Oracles: astropy's D_A (pixel scale, DA_MPC, MSUNSRn: 1e-5) and mean densities (RHOLn,
    # MSUNMPCn: 1e-9); the reconstruction of the physical-WCS maps with the same seed (1e-5);
    # CCDData.read and astropy.wcs reading the HDUs; --physical-units = the factors times the maps.
    from astropy.nddata import CCDData

    from cmpipe.cli import main
    from cmpipe.stages.reconstruct import reconstruct

    run, (sz, xray), (sky_sz, sky_xray) = sky_run
    infer = dataclasses.replace(_cfg().infer, steps=2, sampler="em")
    physical = reconstruct(run, sz, xray, tmp_path / "phys.fits", n_samples=2, seed=3, infer_cfg=infer,
                           quicklook=False)
    out = tmp_path / "sky.fits"
    result = reconstruct(run, sky_sz, sky_xray, out, n_samples=2, seed=3, infer_cfg=infer, quicklook=False)
    assert any("reprojected" in m for m in result["messages"]) and result["redshift"] == Z

    astro = _astropy(_cfg().cosmology)
    d_a = astro.angular_diameter_distance(Z).to_value(u.Mpc)
    rho_b = (astro.critical_density0 * astro.Ob0).to_value(u.Msun / u.Mpc**3)  # cosmology.redshift = 0
    rho_dm = (astro.critical_density0 * (astro.Om0 - astro.Ob0)).to_value(u.Msun / u.Mpc**3)
    with fits.open(out) as hdul:
        h = hdul["MEAN"].header
        assert (h["CTYPE1"], h["CTYPE2"], h["RADESYS"], h["BUNIT"]) == ("RA---TAN", "DEC--TAN", "ICRS", "")
        assert (h["CRVAL1"], h["CRVAL2"], h["CRPIX1"]) == (pytest.approx(RA), pytest.approx(DEC), 8.5)
        assert -h["CDELT1"] == pytest.approx(h["CDELT2"], rel=1e-15)
        assert h["CDELT2"] == pytest.approx(np.degrees(0.8 / d_a), rel=1e-5)
        assert h["REDSHIFT"] == Z and h["DA_MPC"] == pytest.approx(d_a, rel=1e-5)
        assert (h["H0"], h["OM0"], h["OB0"]) == (astro.H0.value, astro.Om0, astro.Ob0)
        for n, rho in ((1, rho_b), (2, rho_dm)):
            assert h[f"MSUNMPC{n}"] == h[f"RHOL{n}"] == pytest.approx(rho * h["DEPTHMPC"], rel=1e-9)
            assert h[f"MSUNSR{n}"] == pytest.approx(rho * h["DEPTHMPC"] * d_a**2, rel=1e-5)
        assert WCS(h, key="P").wcs.cdelt[0] == pytest.approx(0.8)
        np.testing.assert_allclose(hdul["MEAN"].data, fits.getdata(physical["fits"], "MEAN"), rtol=1e-5, atol=1e-6)
        mean, factors = hdul["MEAN"].data, (h["MSUNMPC1"], h["MSUNMPC2"])
    for name in ("MEAN", "STD"):
        ccd = CCDData.read(out, hdu=name)
        assert ccd.unit == u.dimensionless_unscaled and ccd.data.shape == (2, 16, 16)
        scale = ccd.wcs.celestial.proj_plane_pixel_scales()
        assert scale[0].to_value(u.rad) == pytest.approx(0.8 / d_a, rel=1e-5)

    surface = tmp_path / "surface.fits"
    assert main(["reconstruct", "--checkpoint", str(run), "--sz", str(sky_sz), "--xray", str(sky_xray), "--samples",
                 "2", "--seed", "3", *SETS, "--recon", str(surface), "--physical-units"]) == 0
    assert "reprojected" in capsys.readouterr().out
    ccd = CCDData.read(surface, hdu="MEAN")
    assert ccd.unit == u.Msun / u.Mpc**2 and ccd.header["MSUNMPC1"] == 1.0
    np.testing.assert_allclose(ccd.data, mean * np.asarray(factors)[:, None, None], rtol=1e-12)


def _one_line(err, *parts):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cmpipe: error: "), err
    for part in parts:
        assert str(part) in lines[0], (part, lines[0])


def test_sky_inputs_refused_in_one_line(sky_run, tmp_path, capsys):
    # Oracle: the documented refusals (no redshift, mixed WCSs, --kappa for a model without the
    # condition), one line naming the file or option, nothing written.
    from cmpipe.cli import main

    run, (sz, xray), (sky_sz, _) = sky_run
    no_z = _on_sky(xray, tmp_path / "noz_xray_sb.fits", redshift=None)
    out = tmp_path / "r.fits"
    base = ["reconstruct", "--checkpoint", str(run), "--recon", str(out), "--samples", "2", *SETS]
    with fits.open(sky_sz) as hdul:
        hdul[0].header.remove("REDSHIFT")
        hdul.writeto(tmp_path / "noz_sz_y.fits")
    assert main([*base, "--sz", str(tmp_path / "noz_sz_y.fits"), "--xray", str(no_z)]) == 2
    _one_line(capsys.readouterr().err, no_z, "--redshift")
    assert main([*base, "--sz", str(sky_sz), "--xray", str(xray)]) == 2
    _one_line(capsys.readouterr().err, "mix celestial and physical")
    assert main([*base, "--sz", str(sz), "--xray", str(xray), "--kappa", str(sz)]) == 2
    _one_line(capsys.readouterr().err, "takes no --kappa", "sz_y, xray_sb")
    assert not out.exists() and not out.with_suffix(".png").exists()


class _KappaSampler:
    """A stand-in for the sampler of a model with conditions (sz_y, xray_sb, kappa): records
    the condition maps it is given, returns zeros."""

    def __init__(self, hyperparameters):
        self.hyperparameters = {**hyperparameters, "channels": {"x": ["gas_sigma", "dm_sigma"],
                                                                "cond": ["sz_y", "xray_sb", "kappa"]}}
        self.resolution = int(hyperparameters["resolution"])
        self.seen = None

    def sample(self, condition, n_samples, seeds):
        self.seen = condition
        return np.zeros((len(seeds), n_samples, 2, self.resolution, self.resolution))


def test_kappa_joins_the_inputs_of_a_kappa_model(sky_run, tmp_path):
    # Oracle: the third condition the sampler sees is the kappa map's 2 x 2 block means (1e-4:
    # the map's pixels are placed with astropy's D_A, the model grid's with colossus');
    # the header names the conditions; without --kappa the model's conditions are named.
    from cmpipe.model.training import latest_checkpoint, load_checkpoint
    from cmpipe.stages.reconstruct import reconstruct

    run, (sz, xray), (sky_sz, sky_xray) = sky_run
    kappa = np.random.default_rng(2).uniform(0.0, 0.3, size=(32, 32))
    sky_kappa = tmp_path / "sky_kappa.fits"
    fits.PrimaryHDU(kappa, header=fits.Header(_tan_cards(32, 0.4).items())).writeto(sky_kappa)
    sampler = _KappaSampler(load_checkpoint(latest_checkpoint(run)).hyperparameters)
    infer = dataclasses.replace(_cfg().infer, steps=2, sampler="em")
    result = reconstruct(run, sky_sz, sky_xray, tmp_path / "k.fits", kappa_path=sky_kappa, n_samples=2,
                         sampler=sampler, infer_cfg=infer, quicklook=False)
    assert sampler.seen.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(sampler.seen[0, 2], kappa.reshape(16, 2, 16, 2).mean(axis=(1, 3)), rtol=1e-4)
    assert fits.getheader(result["fits"], "MEAN")["CONDS"] == "sz_y,xray_sb,kappa"
    with pytest.raises(FitsError, match=r"conditions sz_y, xray_sb, kappa: give --kappa \(kappa\)"):
        reconstruct(run, sz, xray, tmp_path / "k2.fits", n_samples=2, sampler=sampler, infer_cfg=infer)


def test_batch_inputs_pick_up_kappa_partners(tmp_path):
    # Oracle: the documented names: <name>kappa<rest>.fits joins its cluster where it exists ('' where
    # not), and a table's optional kappa column (relative to the table) is read the same.
    from cmpipe.pipeline.reconstruct import find_fits_pairs

    for name in ("a_sz_y.fits", "a_xray_sb.fits", "a_kappa.fits", "b_sz_y.fits", "b_xray_sb.fits"):
        (tmp_path / name).write_bytes(b"")
    pairs = find_fits_pairs(tmp_path)
    assert [(p["name"], p["kappa"]) for p in pairs] == [("a_", str(tmp_path / "a_kappa.fits")), ("b_", "")]
    table = tmp_path / "clusters.csv"
    table.write_text("name,sz,xray,kappa\na_,a_sz_y.fits,a_xray_sb.fits,a_kappa.fits\nb_,b_sz_y.fits,b_xray_sb.fits,\n")
    assert find_fits_pairs(table) == pairs

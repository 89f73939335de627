"""Instrument effects on the condition maps (``cmpipe.mapmaking.instrument``) and in the generated store.

Oracles: the second moment of a beamed point source is the beam's sigma squared (FFT
convolution of a delta; the transfer function cut at the Nyquist frequency changes the variance
by ~3e-4 for a beam of 1 px sigma, so the measured FWHM agrees to 1e-3); noise
levels are statistical (16,384 pixels: white noise rms within 3 %, correlated noise within 10 %,
fewer independent modes); the photon-count map is unbiased (mean within 4 standard errors) with
the Poisson variance (within 5 %); masked pixels are the discs' (count within the pixelisation of
their edges); in a store, only the condition channels change, the targets are bit-identical to
a clean store, and the noise is reproducible.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmpipe.config import load_config
from cmpipe.mapmaking.instrument import (
    apply_instrument,
    correlated_noise,
    pixel_arcmin,
    xray_counts_per_unit,
)

CHANNELS = ("sz_y", "xray_sb", "gas_sigma", "dm_sigma")


def _cfg(*extra: str):
    return load_config("demo", list(extra))


def _maps(n: int = 128) -> np.ndarray:
    x = np.arange(n) + 0.5 - n / 2
    r2 = x[None, :] ** 2 + x[:, None] ** 2
    base = 1.0 / (1.0 + r2 / 100.0)
    return np.stack([1e-5 * base, 1e-3 * base, 10 * base, 50 * base])


def test_beam_of_a_point_source_has_the_configured_fwhm():
    cfg = _cfg("instrument.beam_fwhm_arcmin=2.0", "instrument.redshift=0.1")
    maps = np.zeros((4, 128, 128))
    maps[0, 64, 64] = 1.0
    out = apply_instrument(maps, CHANNELS, cfg.instrument, cfg.cosmology, cfg.lensing, 0.1, seed=1)
    img = out[0]
    assert img.sum() == pytest.approx(1.0, rel=1e-12)  # the beam conserves flux
    iy, ix = np.indices(img.shape)
    var_x = float(((ix - 64) ** 2 * img).sum())
    fwhm_px = math.sqrt(var_x) * 2.0 * math.sqrt(2.0 * math.log(2.0))
    fwhm_arcmin = fwhm_px * pixel_arcmin(0.1, 0.1, cfg.cosmology)
    assert fwhm_arcmin == pytest.approx(2.0, rel=1e-3)
    assert np.array_equal(out[1:], maps[1:])  # only y is beamed


def test_pixel_scale_follows_the_angular_diameter_distance():
    """Oracle: astropy's FlatLambdaCDM with the same parameters (D_A agrees to 1e-3: radiation)."""
    from astropy.cosmology import FlatLambdaCDM

    cfg = _cfg()
    c = cfg.cosmology
    astro = FlatLambdaCDM(H0=100 * c.h, Om0=c.omega_m, Ob0=c.omega_b)
    expected = (0.1 / astro.angular_diameter_distance(0.05).to_value("Mpc")) * 180 * 60 / math.pi
    assert pixel_arcmin(0.1, 0.05, c) == pytest.approx(expected, rel=1e-3)


def test_white_and_correlated_noise_have_the_configured_rms():
    cfg = _cfg("instrument.y_white_noise=1e-6")
    clean = _maps()
    out = apply_instrument(clean, CHANNELS, cfg.instrument, cfg.cosmology, cfg.lensing, 0.1, seed=3)
    assert np.std(out[0] - clean[0]) == pytest.approx(1e-6, rel=0.03)
    rng = np.random.default_rng(0)
    red = correlated_noise((128, 128), 2.0, 3.0, rng)
    assert np.std(red) == pytest.approx(2.0, rel=0.10)
    lag = np.mean(red * np.roll(red, 3, axis=1)) / np.var(red)
    assert lag == pytest.approx(math.exp(-9 / (4 * 9.0)), abs=0.1)  # Gaussian autocorrelation at 3 px


def test_photon_counts_are_unbiased_with_poisson_variance():
    cfg = _cfg("instrument.xray_exposure_s=5e4", "instrument.xray_background=2e-4", "instrument.redshift=0.1")
    clean = np.zeros((4, 128, 128))
    clean[1] = 1e-3
    out = apply_instrument(clean, CHANNELS, cfg.instrument, cfg.cosmology, cfg.lensing, 0.1, seed=5)
    per_unit = xray_counts_per_unit(cfg.instrument, 0.1, cfg.cosmology)
    expected_var = (1e-3 + 2e-4) / per_unit  # Poisson: counts variance = mean, rescaled
    assert per_unit * (1e-3 + 2e-4) > 10  # enough counts for the test to mean something
    assert abs(out[1].mean() - 1e-3) < 4 * math.sqrt(expected_var / out[1].size)
    assert np.var(out[1]) == pytest.approx(expected_var, rel=0.05)


def test_point_source_mask_zeroes_discs_in_both_conditions():
    cfg = _cfg("instrument.mask_sources=5", "instrument.mask_radius_mpc=0.4")
    clean = _maps()
    out = apply_instrument(clean, CHANNELS, cfg.instrument, cfg.cosmology, cfg.lensing, 0.1, seed=7)
    masked = out[0] == 0
    assert np.array_equal(masked, out[1] == 0) and np.array_equal(out[2:], clean[2:])
    assert 0 < masked.sum() <= 5 * math.pi * 4.5**2


def test_instrument_off_is_the_identity():
    clean, cfg = _maps(), _cfg()
    assert np.array_equal(apply_instrument(clean, CHANNELS, cfg.instrument, cfg.cosmology, cfg.lensing, 0.1, seed=0), clean)


def test_store_conditions_are_observed_and_targets_stay_clean(tmp_path):
    from cmpipe.stages.generate import generate_serial
    from cmpipe.store import open_store
    from tiny_stores import TRAINING_STORE

    noisy = ["instrument.y_white_noise=1e-7", "instrument.xray_exposure_s=1e4", "instrument.beam_fwhm_arcmin=1.0"]
    clean_cfg = load_config("demo", TRAINING_STORE)
    noisy_cfg = load_config("demo", [*TRAINING_STORE, *noisy])
    generate_serial(clean_cfg, tmp_path / "clean.zarr")
    generate_serial(noisy_cfg, tmp_path / "noisy.zarr")
    generate_serial(noisy_cfg, tmp_path / "again.zarr")
    a, b, c = (open_store(tmp_path / n) for n in ("clean.zarr", "noisy.zarr", "again.zarr"))
    assert a.attrs["store_fingerprint"] != b.attrs["store_fingerprint"]  # the effects are recorded
    channels = list(a.attrs["channels"])
    ma, mb, mc = a["maps"][:], b["maps"][:], c["maps"][:]
    for name in ("gas_sigma", "dm_sigma"):
        assert np.array_equal(ma[:, channels.index(name)], mb[:, channels.index(name)])
    for name in ("sz_y", "xray_sb"):
        assert not np.array_equal(ma[:, channels.index(name)], mb[:, channels.index(name)])
    assert np.array_equal(mb, mc)  # reproducible: seeded by each image's seed

"""The weak-lensing convergence channel ``kappa`` and configurable model conditions.

Oracles: mass conservation of the projection (the kappa map against the gas and DM maps it is
made of, and against the halo's particle masses), an independent astropy ``FlatLambdaCDM``
Sigma_crit, the configured shape-noise rms, and shapes of a tiny model trained with
``model.conditions=[sz_y, xray_sb, kappa]``. Each test names its tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cmpipe.config import ConfigError, load_config
from cmpipe.mapmaking.instrument import apply_instrument, kappa_noise_rms
from cmpipe.mapmaking.maps import CHANNEL_UNITS, prepare_halo_with_config, sightline_maps, sightline_maps_with_config
from cmpipe.physics.cosmology import mean_densities, sigma_crit_msun_mpc2
from cmpipe.stages.generate import map_settings
from cmpipe.stages.source import analytic_source
from tiny_stores import TINY_MODEL, TRAINING_STORE

KAPPA_CHANNELS = "maps.channels=[sz_y, xray_sb, gas_sigma, dm_sigma, kappa]"
# One NFW halo of 10^14 Msun/h (R200m about 1.7 Mpc) on a 6.4 Mpc map and slab: every particle's
# kernel lies inside the map and the slab.
NFW = ["source.kind=analytic", "source.analytic_log10_m200m_msun_h=[14.0]", "source.analytic_pair_mass_msun_h=1e10",
       "maps.npix=64", "maps.pixel_mpc=0.1", "maps.depth_mpc=6.4", "sph.num_threads=1", KAPPA_CHANNELS]


@pytest.fixture(scope="module")
def nfw():
    cfg = load_config("demo", NFW)
    halo = analytic_source(cfg).load(0)
    prepared = prepare_halo_with_config(halo, map_settings(cfg))
    maps = sightline_maps_with_config(prepared, map_settings(cfg), None, 2)
    return cfg, halo, prepared, maps


def test_kappa_map_integrates_to_the_projected_mass(nfw):
    """Oracle: sum(kappa) * pixel area * Sigma_crit equals the gas + DM mass of the gas_sigma and
    dm_sigma maps (each times its rho_bar L pixel area) to rel 1e-10, and the halo's particle mass
    (all inside the slab and the map) to rel 1e-3."""
    cfg, halo, _, maps = nfw
    assert maps.channels[-1] == "kappa" and maps.units[-1] == CHANNEL_UNITS["kappa"] == "1"
    rho = mean_densities(cfg.cosmology)
    area = cfg.maps.pixel_mpc**2
    sigma_crit = sigma_crit_msun_mpc2(cfg.lensing.z_lens, cfg.lensing.z_source, cfg.cosmology)
    kappa_mass = maps.channel("kappa").sum() * area * sigma_crit
    map_mass = (maps.channel("gas_sigma").sum() * rho.baryon + maps.channel("dm_sigma").sum() * rho.dark_matter) \
        * cfg.maps.depth_mpc * area
    assert kappa_mass == pytest.approx(map_mass, rel=1e-10)
    particles = halo.gas.mass_msun.sum() + halo.dm.mass_msun.sum()
    assert np.all(np.abs(halo.dm.pos_mpc[:, 2]) < cfg.maps.depth_mpc / 2)
    assert kappa_mass == pytest.approx(particles, rel=1e-3)
    assert np.all(maps.channel("kappa") >= 0) and maps.channel("kappa").max() > 0


def test_kappa_alone_equals_kappa_among_all_channels(nfw):
    """Oracle: the full channel set (exact equality): kappa is made from gas and DM projections
    even where those are not requested; the other channels do not change when kappa is added."""
    cfg, _, prepared, maps = nfw
    sigma_crit = sigma_crit_msun_mpc2(cfg.lensing.z_lens, cfg.lensing.z_source, cfg.cosmology)
    alone = sightline_maps(prepared, rotation=None, axis=2, npix=64, pixel_mpc=0.1, channels=["kappa"],
                           sigma_crit_msun_mpc2=sigma_crit, num_threads=1)
    np.testing.assert_array_equal(alone.data[0], maps.channel("kappa"))
    default = sightline_maps(prepared, rotation=None, axis=2, npix=64, pixel_mpc=0.1, num_threads=1)
    np.testing.assert_array_equal(default.data, maps.data[:4])
    with pytest.raises(ValueError, match="sigma_crit"):
        sightline_maps(prepared, rotation=None, axis=2, npix=64, pixel_mpc=0.1, channels=["kappa"])


def test_sigma_crit_matches_astropy():
    """Oracle: astropy FlatLambdaCDM (no radiation; colossus includes it) angular-diameter
    distances and constants, rel 1e-3, at two lens / source pairs."""
    from astropy import constants as const
    from astropy import units as u
    from astropy.cosmology import FlatLambdaCDM

    cfg = load_config("demo")
    c = cfg.cosmology
    astro = FlatLambdaCDM(H0=100.0 * c.h, Om0=c.omega_m, Ob0=c.omega_b)
    for z_l, z_s in ((0.3, 1.0), (0.1, 0.6)):
        d_s, d_l = astro.angular_diameter_distance(z_s), astro.angular_diameter_distance(z_l)
        d_ls = astro.angular_diameter_distance(z_l, z_s)
        want = (const.c**2 / (4 * math.pi * const.G) * d_s / (d_l * d_ls)).to_value(u.Msun / u.Mpc**2)
        assert sigma_crit_msun_mpc2(z_l, z_s, c) == pytest.approx(want, rel=1e-3)


def test_lensing_config_is_validated():
    """Oracle: the documented ranges (0 < z_lens < z_source; conditions non-empty, no targets,
    no repeats, known channels)."""
    for bad in (["lensing.z_lens=0"], ["lensing.z_source=0.2"], ["instrument.kappa_galaxy_density_arcmin2=0"],
                ["instrument.kappa_shape_noise=-1"], ["model.conditions=[]"], ["model.conditions=[sz_y, gas_sigma]"],
                ["model.conditions=[sz_y, sz_y]"], ["model.conditions=[lensing]"], ["maps.channels=[kappa, kappa]"]):
        with pytest.raises(ConfigError):
            load_config("demo", bad)
    cfg = load_config("demo", [KAPPA_CHANNELS, "model.conditions=[kappa, sz_y]"])
    assert cfg.model.conditions == ("kappa", "sz_y") and cfg.maps.channels[-1] == "kappa"
    assert load_config("demo").model.conditions == ("sz_y", "xray_sb")


def test_shape_noise_has_the_configured_rms():
    """Oracle: sigma_e / sqrt(n_gal * Omega_pix) with the pixel angle from astropy's D_A at
    lensing.z_lens; the sample rms of 512^2 pixels within 3 % (its statistical error is 0.1 %);
    the other channels untouched, and the y noise draws the same with and without shape noise."""
    from astropy.cosmology import FlatLambdaCDM

    base = load_config("demo", [KAPPA_CHANNELS, "instrument.y_white_noise=1e-6"])
    cfg = load_config("demo", [KAPPA_CHANNELS, "instrument.y_white_noise=1e-6", "instrument.kappa_shape_noise=0.3",
                               "instrument.kappa_galaxy_density_arcmin2=20", "lensing.z_lens=0.2"])
    c = cfg.cosmology
    d_a = FlatLambdaCDM(H0=100.0 * c.h, Om0=c.omega_m, Ob0=c.omega_b).angular_diameter_distance(0.2).value
    pix = 0.05
    omega_arcmin2 = (pix / d_a * 180 * 60 / math.pi) ** 2
    want = 0.3 / math.sqrt(20 * omega_arcmin2)
    assert kappa_noise_rms(cfg.instrument, cfg.cosmology, cfg.lensing, pix) == pytest.approx(want, rel=1e-3)
    clean = np.zeros((5, 512, 512))
    clean[4] = 0.1
    out = apply_instrument(clean, cfg.maps.channels, cfg.instrument, cfg.cosmology, cfg.lensing, pix, seed=11)
    noise = out[4] - 0.1
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(want, rel=0.03)
    assert abs(noise.mean()) < 5 * want / 512
    np.testing.assert_array_equal(out[1:4], clean[1:4])
    np.testing.assert_array_equal(out[0], apply_instrument(clean, base.maps.channels, base.instrument, base.cosmology, base.lensing, pix, seed=11)[0])
    off = apply_instrument(clean, base.maps.channels, base.instrument, base.cosmology, base.lensing, pix, seed=11)
    np.testing.assert_array_equal(off[4], clean[4])


STORE = [*TRAINING_STORE, KAPPA_CHANNELS, "instrument.kappa_shape_noise=0.3"]


@pytest.fixture(scope="module")
def kappa_store(tmp_path_factory):
    """The training store with kappa (shape noise on) as a fifth channel."""
    from cmpipe.stages.generate import generate_serial

    path = tmp_path_factory.mktemp("kappa_store") / "images.zarr"
    generate_serial(load_config("demo", STORE), path)
    return path


@pytest.mark.parametrize("kind", ["score", "unet"])
def test_three_condition_model_trains_and_samples(kind, kappa_store, tmp_path_factory):
    """Oracle: shapes (the network's input has 2 + 3 channels; samples (B, S, 2, R, R)), finite
    values, the checkpoint's recorded conditions, and the sampler refusing 2-channel input."""
    from cmpipe.model.dataset import StoreDataset, denormalise
    from cmpipe.model.inference import load_posterior_sampler
    from cmpipe.model.training import latest_checkpoint, load_checkpoint
    from cmpipe.stages.train import run as train_run
    from cmpipe.store import open_store

    conditions = ("sz_y", "xray_sb", "kappa")
    cfg = load_config("demo", [*STORE, *TINY_MODEL, f"model.kind={kind}", "model.conditions=[sz_y, xray_sb, kappa]"])
    store = kappa_store
    assert open_store(store).attrs["channels"][-1] == "kappa"
    run = tmp_path_factory.mktemp(f"kappa_run_{kind}")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = train_run(cfg, {"store": store, "run": run}, max_steps=2)
        assert out["step"] == 2 and np.isfinite(out["last"].loss)
        hp = load_checkpoint(latest_checkpoint(run)).hyperparameters
        assert hp["channels"] == {"x": ["gas_sigma", "dm_sigma"], "cond": list(conditions)}
        sampler = load_posterior_sampler(run, cfg.infer, "cpu", open_store(store).attrs["store_fingerprint"])
        assert sampler.conditions == conditions
        ds = StoreDataset(store, "val", resolution=16, conditions=conditions)
        x, c = ds[0]
        assert x.shape == (2, 16, 16) and c.shape == (3, 16, 16)
        cond = denormalise(np.stack([ds[i][1].numpy() for i in range(2)]).astype(np.float64), conditions,
                           sampler.normalisation)
        if kind == "score":
            sampler.steps = 2  # a cheap check of shapes
        samples = sampler.sample(cond, 2, [1, 2])
        assert samples.shape == (2, 2, 2, 16, 16) and np.isfinite(samples).all()
        with pytest.raises(ValueError, match=r"\(B, 3, 16, 16\)"):
            sampler.sample(cond[:, :2], 2, [1, 2])
    finally:
        torch.set_num_threads(before)


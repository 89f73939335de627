"""The public Python API (README "Python API"): every stage from a notebook, without the CLI or Ray,
and every output opened as xarray or arrays with units."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

#: Tiny mock run: 8 halos of 10^13.5-10^14 at m_pair 1e11, 32 x 32 maps of 0.4 Mpc seen at 16 x 16,
#: two training steps, two samples of two EDM steps.
TINY = [
    "catalog.n_halos=8", "catalog.log10_m_max_msun_h=14.0", "mock.pair_mass_msun_h=1e11",
    "maps.npix=32", "maps.pixel_mpc=0.4", "sph.num_threads=1",
    "generate.images_per_0p1dex=6", "generate.chunk_images=4", "generate.split_fractions=[0.5, 0.2, 0.3]",
    "model.resolution=16", "model.nf=8", "model.ch_mult=[1, 2]",
    "train.batch_size=4", "train.max_steps=2", "train.warmup_steps=1", "train.checkpoint_every=2",
    "train.val_every=2", "train.val_batches=1", "train.num_workers=0",
    "infer.n_samples=2", "infer.steps=2", "infer.batch_size=8", "infer.threads_per_actor=1",
    "evaluate.test_log10_m_max_msun_h=14.0",
]


def test_import_cmpipe_is_cheap_and_lists_the_api():
    code = ("import sys, cmpipe; heavy = [m for m in ('ray', 'torch', 'zarr', 'numba') if m in sys.modules]; "
            "print(heavy, sorted(n for n in dir(cmpipe) if not n.startswith('_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[]")
    for name in ("load_config", "run_catalog", "run_generate", "run_train", "run_infer", "run_report",
                 "run_render", "open_store", "open_posterior", "Reconstructor", "pipeline_paths"):
        assert name in out


def test_unknown_attribute_is_an_attribute_error():
    import cmpipe

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cmpipe.nope  # noqa: B018


def test_every_stage_from_python_and_every_output_opened(tmp_path):
    import cmpipe

    cfg = cmpipe.load_config("demo", [*TINY, f"run.out={tmp_path / 'nb'}"])
    paths = cmpipe.pipeline_paths(cfg.run.out)
    cmpipe.run_catalog(cfg, paths)
    cmpipe.run_generate(cfg, paths)
    cmpipe.run_train(cfg, paths)
    cmpipe.run_infer(cfg, paths)
    report = cmpipe.run_report(cfg, paths)
    assert (paths["report"] / "report.md").is_file() and report

    maps = cmpipe.open_store(paths["store"])
    gas = maps["maps"].sel(channel="gas_sigma")
    assert gas.dims == ("image", "y", "x") and gas.shape[1:] == (32, 32)
    np.testing.assert_allclose(maps["x"].values[[0, -1]], [-6.2, 6.2])  # pixel centres [Mpc]
    assert maps["x"].attrs["units"] == "Mpc"

    post = cmpipe.open_posterior(paths["results"])
    assert post["mean"].dims == ("image", "target", "y", "x")
    assert list(post["target"].values) == ["gas_sigma", "dm_sigma"]
    assert post["condition"].dims == ("image", "condition_channel", "y", "x")
    assert list(post["condition_channel"].values) == ["sz_y", "xray_sb"]
    n_test = post.sizes["image"]
    assert n_test >= 1 and bool(post["done"].values.all())

    # The Reconstructor puts full-resolution store maps on the model grid exactly as inference
    # did (block means), and its samples carry units.
    image = int(post["image_index"].values[0])
    y = maps["maps"].sel(channel="sz_y").isel(image=image).values
    s_x = maps["maps"].sel(channel="xray_sb").isel(image=image).values
    rec = cmpipe.Reconstructor(paths["run"])
    out = rec.sample(y, s_x, pixel_mpc=cfg.maps.pixel_mpc, n_samples=3, seed=1)
    np.testing.assert_allclose(out.condition, post["condition"].isel(image=0).values, rtol=1e-6)
    assert out.samples.shape == (3, 2, 16, 16) and out.pixel_mpc == pytest.approx(0.8)
    again = rec.sample(y, s_x, pixel_mpc=cfg.maps.pixel_mpc, n_samples=3, seed=1)
    np.testing.assert_array_equal(out.samples, again.samples)
    physical = out.mean("gas_sigma", physical=True)
    assert physical.unit.is_equivalent("solMass / Mpc2") and physical.shape == (16, 16)
    ratio = physical.value / out.mean("gas_sigma").value
    finite = np.isfinite(ratio)
    np.testing.assert_allclose(ratio[finite], out.sigma_unit_msun_mpc2["gas_sigma"], rtol=1e-12)


def test_reconstructor_refuses_a_bad_map(tmp_path):
    from cmpipe.api import _on_model_grid

    with pytest.raises(ValueError, match="sz_y: a 2-d map is needed"):
        _on_model_grid("sz_y", np.zeros(5), 0.1, 0.2, 4)

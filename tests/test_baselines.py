"""The trivial baselines (:mod:`cmpipe.evaluation.baselines`): known answers, and the model's results layout.

Oracles: the mass oracle applied to its own training halos gives back each halo's mean map (k = 1)
and the mean over all halos (k = H), exactly (float rounding), and its samples average to its
prediction when k divides their number; the pixel regression fitted to synthetic maps drawn from
a known log-linear law recovers its coefficients and its residual width per radial bin (to the
statistical tolerance stated at each assertion); on a tiny store (``INFERENCE_STORE``, serial,
no Ray) the baselines' results have the documented Arrow schemas, one row set per selected test
image (:func:`cmpipe.stages.infer.select_test_images`, the model's images) and a complete
``posterior.zarr``; a rerun skips them, other settings redo them.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from tiny_stores import INFERENCE_STORE, TINY_INFER, TINY_MODEL, make_store
from tiny_stores import inference_config as _cfg

from cmpipe.evaluation.baselines import (
    BASELINES,
    block_mean,
    fit_mass_oracle,
    fit_pixel_regression,
    regression_feature_names,
    run_baselines,
)
from cmpipe.evaluation.metrics import pixel_radii_mpc, radial_bin_edges, radial_profile


# ----------------------------------------------------------------------------- mass oracle


def _halo_images(rng, n_halos=6, per_halo=3, npix=8):
    halo = np.repeat(np.arange(n_halos) * 5 + 2, per_halo)
    logm = np.repeat(np.linspace(13.6, 14.9, n_halos), per_halo)
    truth = rng.lognormal(size=(len(halo), 2, npix, npix))
    return halo, logm, truth


def test_mass_oracle_reproduces_its_own_training_halos():
    rng = np.random.default_rng(0)
    halo, logm, truth = _halo_images(rng)
    means = truth.reshape(6, 3, 2, 8, 8).mean(axis=1)  # each halo's images averaged first
    one = fit_mass_oracle(halo, logm, truth, k=1)
    for h in range(6):
        np.testing.assert_allclose(one.predict(logm[3 * h]), means[h], rtol=1e-13)
        # its samples: the halo map itself, n times
        np.testing.assert_allclose(one.sample(logm[3 * h], 4, rng), np.broadcast_to(means[h], (4, 2, 8, 8)), rtol=1e-13)
    every = fit_mass_oracle(halo, logm, truth, k=10)  # more than there are: all 6
    assert every.k == 6
    np.testing.assert_allclose(every.predict(14.0), means.mean(axis=0), rtol=1e-13)
    # the mean profile of the halos, too (the profile is linear in the map)
    edges = radial_bin_edges(8, 0.5)
    np.testing.assert_allclose(radial_profile(every.predict(14.0), 0.5, edges)[1],
                               radial_profile(means, 0.5, edges)[1].mean(axis=0), rtol=1e-13)


def test_mass_oracle_samples_are_its_neighbours_balanced_and_seeded():
    rng = np.random.default_rng(1)
    halo, logm, truth = _halo_images(rng)
    oracle = fit_mass_oracle(halo, logm, truth, k=3)
    rows = oracle.neighbours(14.0)  # masses 13.6, 13.86, 14.12, ...: the three nearest to 14.0
    np.testing.assert_array_equal(np.sort(oracle.halo_id[rows]), [7, 12, 17])
    samples = oracle.sample(14.0, 12, np.random.default_rng(5))
    np.testing.assert_allclose(samples.mean(axis=0), oracle.predict(14.0), rtol=1e-12)  # k divides n: exact
    hits = [int(np.argmin(np.abs(oracle.maps[rows] - s).sum(axis=(1, 2, 3)))) for s in samples]
    assert np.bincount(hits, minlength=3).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(samples, oracle.sample(14.0, 12, np.random.default_rng(5)))
    assert oracle.sample(14.0, 7, np.random.default_rng(5)).shape == (7, 2, 8, 8)


# ----------------------------------------------------------------------------- pixel regression


def test_pixel_regression_recovers_a_log_linear_law():
    """Synthetic: log10 gas = 1 + 0.8 log10 y - 0.3 log10 S_X - 0.5 r, log10 DM = -2 + 0.5 log10 y +
    0.2 r, plus Gaussian noise of std 0.05 + 0.1 r / r_max [dex] (0.05 to 0.15 by radial bin)."""
    rng = np.random.default_rng(2)
    n, npix, pixel = 300, 16, 0.25
    r = pixel_radii_mpc(npix, pixel)
    edges = radial_bin_edges(npix, pixel)
    r_max = edges[-1]
    logy = rng.normal(-5.0, 0.7, (n, npix, npix))
    logsx = rng.normal(-12.0, 0.6, (n, npix, npix))
    sigma = 0.05 + 0.1 * np.minimum(r, r_max) / r_max
    gas = 1.0 + 0.8 * logy - 0.3 * logsx - 0.5 * r + sigma * rng.standard_normal((n, npix, npix))
    dm = -2.0 + 0.5 * logy + 0.2 * r + sigma * rng.standard_normal((n, npix, npix))
    cond = np.stack([10.0**logy, 10.0**logsx], axis=1)
    truth = np.stack([10.0**gas, 10.0**dm], axis=1)
    cond[0, 0, 0, 0] = 0.0  # a zero pixel is floored (at 3 sigma of log10 y), not -inf
    fit = fit_pixel_regression(cond, truth, conditions=("sz_y", "xray_sb"), pixel_mpc=pixel,
                               condition_floors=[1e-7, 1e-14], target_floors=[1e-30, 1e-30])
    names = regression_feature_names(("sz_y", "xray_sb"))
    coef = dict(zip(names, fit.coef[0])), dict(zip(names, fit.coef[1]))
    # The linear terms are centred on the offsets (the first batch's means): the intercept is the
    # law at the offsets, the linear coefficients its slopes, the quadratic ones 0. 77k pixels of
    # noise ~0.1 dex: standard errors <= 1e-3; tolerances 5x that.
    laws = ({"log10_sz_y": 0.8, "log10_xray_sb": -0.3, "r_mpc": -0.5}, {"log10_sz_y": 0.5, "r_mpc": 0.2})
    for got, law, const in zip(coef, laws, (1.0, -2.0)):
        at_offsets = const + sum(law.get(n, 0.0) * o for n, o in zip(names[1:4], fit.offsets))
        assert got["1"] == pytest.approx(at_offsets, abs=5e-3)
        for name in names[1:]:
            assert got[name] == pytest.approx(law.get(name, 0.0), abs=5e-3), name
    # residual std per radial bin: >= 1,200 pixels each (the innermost: 4 per image), se <= 2 %
    mid = 0.5 * (edges[1:] + edges[:-1])
    expected = 0.05 + 0.1 * np.minimum(mid, r_max) / r_max
    for c in range(2):
        np.testing.assert_allclose(fit.residual_std[c, :-1], expected[:-1], rtol=0.08)
    # the mean prediction: the law itself, within the noise of the fit
    pred = fit.predict_log10(cond[1])
    np.testing.assert_allclose(pred[0], 1.0 + 0.8 * logy[1] - 0.3 * logsx[1] - 0.5 * r, atol=0.02)
    samples = fit.sample(cond[1], 400, np.random.default_rng(0))
    spread = np.log10(samples).std(axis=0)
    np.testing.assert_allclose(spread.mean(), np.mean(fit.residual_std[:, np.clip(
        np.searchsorted(edges, r, side="right") - 1, 0, len(edges) - 2)]), rtol=0.05)


def test_block_mean_is_the_models():
    from cmpipe.model.dataset import block_mean as model_block_mean

    maps = np.random.default_rng(3).random((2, 3, 16, 16))
    np.testing.assert_array_equal(block_mean(maps, 4), model_block_mean(maps, 4))


# ----------------------------------------------------------------------------- on a store



@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(_cfg(), tmp_path_factory.mktemp("baseline_store"))


def _run(cfg, store, out, **kw):
    from cmpipe.stages.infer import grid_from_config
    from cmpipe.stages.infer import select_test_images
    from cmpipe.store import open_store

    grid = grid_from_config(cfg, dict(open_store(store).attrs))
    return run_baselines(store, out, selected=select_test_images(cfg, store), grid=grid, n_samples=cfg.infer.n_samples,
                         seed=cfg.infer.seed, conditions=cfg.model.conditions, **kw)


@pytest.fixture(scope="module")
def results(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("baseline_results") / "results"
    cfg = _cfg("infer.save_samples=true")
    return cfg, out, _run(cfg, store, out, save_samples=True)


def test_baseline_results_have_the_models_layout(results, store):
    from cmpipe.stages.infer import select_test_images
    from cmpipe.store.posterior import open_posterior
    from cmpipe.store.tables import SCHEMAS, read_images_table, read_table

    cfg, out, summary = results
    selected = set(select_test_images(cfg, store)["image_index"].tolist())
    assert set(summary) == set(BASELINES) and not any(s["skipped"] for s in summary.values())
    for name in BASELINES:
        directory = out / "baselines" / name
        for table, schema in SCHEMAS.items():
            got = read_table(directory, table)
            assert got.schema.equals(schema, check_metadata=True), (name, table)
            assert set(got.column("image_index").to_pylist()) == selected, (name, table)
        clusters = read_table(directory, "clusters").to_pydict()
        assert len(clusters["image_index"]) == 2 * len(selected)
        assert set(clusters["n_samples"]) == {cfg.infer.n_samples}
        assert np.all(np.isfinite(clusters["mass_pred_msun"])) and np.all(np.array(clusters["mass_pred_msun"]) > 0)
        images = read_images_table(directory).to_pydict()
        assert {i for i, s in zip(images["image_index"], images["selected"]) if s} == selected
        group = open_posterior(directory, require_complete=True)
        assert group.attrs["sampler"] == name and group.attrs["resolution"] == cfg.model.resolution
        samples = group["samples"][:]
        assert samples.shape == (len(selected), cfg.infer.n_samples, 2, 16, 16) and np.all(np.isfinite(samples))
        np.testing.assert_allclose(group["mean"][:], samples.astype(np.float64).mean(axis=1), rtol=1e-5)
        record = json.loads((directory / "baseline.json").read_text())
        assert record["identity"]["image_index"] == sorted(selected)
    fit = json.loads((out / "baselines" / "pixel_regression" / "baseline.json").read_text())["fit"]
    assert fit["features"][:4] == ["1", "log10_sz_y", "log10_xray_sb", "r_mpc"] and fit["training_pixels"] > 0


def test_baselines_rerun_skips_and_other_settings_redo(results, store):
    from cmpipe.store.tables import read_table

    cfg, out, _ = results
    before = read_table(out / "baselines" / "mass_oracle", "clusters").to_pydict()
    again = _run(cfg, store, out, save_samples=True)
    assert all(s["skipped"] for s in again.values())
    other = dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, n_samples=6))
    redo = _run(other, store, out, names=("mass_oracle",))
    assert not redo["mass_oracle"]["skipped"]
    assert set(read_table(out / "baselines" / "mass_oracle", "clusters").column("n_samples").to_pylist()) == {6}
    back = _run(cfg, store, out, names=("mass_oracle",), save_samples=True)  # same seeds: the same rows
    after = read_table(out / "baselines" / "mass_oracle", "clusters").to_pydict()
    assert not back["mass_oracle"]["skipped"]
    assert {k: v for k, v in after.items() if k != "seconds"} == {k: v for k, v in before.items() if k != "seconds"}


def test_cmpipe_baselines_command(store, tmp_path, capsys):
    """``cmpipe baselines --store S --out R``: the same results as the library call, then skipped."""
    from cmpipe.cli import main
    from cmpipe.stages.infer import select_test_images
    from cmpipe.store.tables import read_table

    overrides = [a for o in [*INFERENCE_STORE, *TINY_MODEL, *TINY_INFER] for a in ("--set", o)]
    out = tmp_path / "results"
    assert main(["baselines", "--config", "demo", *overrides, "--store", str(store), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(f"{name}: {out / 'baselines' / name}" in printed for name in BASELINES)
    selected = set(select_test_images(_cfg(), store)["image_index"].tolist())
    for name in BASELINES:
        assert set(read_table(out / "baselines" / name, "profiles").column("image_index").to_pylist()) == selected
    assert main(["baselines", "--config", "demo", *overrides, "--store", str(store), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("done before") == len(BASELINES)

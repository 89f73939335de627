"""Halo-level statistics and the honest evaluation of issue 15, on cases with known answers.

Oracles: hand-made per-halo values (exact); the coverage of the seeded bootstrap interval over
many synthetic data sets of known mean (68 % +- 5 %); R500c against colossus'
``changeMassDefinition`` (1e-5); evaluate_image on constructed posteriors: a posterior 3x too
narrow inside R200m and right outside is called over-confident inside R200m only; a report
whose model equals the truth has zero error and skill 1 against a baseline; a model worse than
a baseline is said to be so in words; rank histograms count each halo once (hand-counted bins).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cmpipe.evaluation.image import Grid, evaluate_image
from cmpipe.evaluation.halo_stats import MIN_HALOS, TOO_FEW, bootstrap, halo_means, paired_skill, summarise
from cmpipe.evaluation.metrics import scale_split_k
from cmpipe.evaluation.report import (
    calibration_summary,
    mass_error_summary,
    profile_error_summary,
    profile_errors,
    rank_summary,
    z_summary,
)
from cmpipe.store.tables import to_table


def test_halo_averaging_before_summary():
    """A halo with 10 images weighs the same as one with 1."""
    df = pd.DataFrame({"image_index": np.arange(12), "halo_id": [1] * 10 + [2, 3], "x": [1.0] * 10 + [0.0, 0.0]})
    halos = halo_means(df, "x")
    assert halos["x"].tolist() == [1.0, 0.0, 0.0] and halos["n_images"].tolist() == [10, 1, 1]
    s = summarise(halos["x"], halos["n_images"], "mean")
    assert s.value == pytest.approx(1 / 3) and s.n_halos == 3 and s.n_images == 12
    assert df["x"].mean() == pytest.approx(10 / 12)  # what an image average would have said


def test_signed_errors_do_not_cancel():
    """+x and -x on alternating halos: mean |error| x, bias 0 (reported separately)."""
    x = 0.07
    err = np.array([x, -x, x, -x])
    clusters = pd.DataFrame({"image_index": np.arange(4), "halo_id": np.arange(4), "log10_m200m_msun_h": 14.0,
                             "channel": "gas_sigma", "mass_frac_error": err, "mass_r200m_frac_error": err,
                             "mass_r500c_frac_error": err})
    row = mass_error_summary(clusters, 14.5).query("aperture == 'r200m' and mass_bin == 'all' and "
                                                   "channel == 'gas_sigma'").iloc[0]
    assert row.abs_error == pytest.approx(x) and row.bias == pytest.approx(0.0, abs=1e-15)
    profiles = pd.DataFrame({"image_index": np.repeat(np.arange(4), 3), "halo_id": np.repeat(np.arange(4), 3),
                             "log10_m200m_msun_h": 14.0, "channel": "gas_sigma", "bin": np.tile([0, 1, 2], 4),
                             "r_mpc": np.tile([0.25, 0.75, 1.25], 4), "frac_error": np.repeat(err, 3)})
    summary = profile_error_summary(profile_errors(profiles, {i: 2.0 for i in range(4)}), 14.5)
    central = summary.query("channel == 'gas_sigma' and range == 'central' and mass_bin == 'all'").iloc[0]
    assert central.abs_error == pytest.approx(x) and central.bias == pytest.approx(0.0, abs=1e-15)


def test_too_few_halos_is_not_a_number():
    s = summarise(np.array([0.1, 0.2]))
    assert np.isnan(s.value) and s.note == TOO_FEW and s.text() == TOO_FEW and MIN_HALOS == 3


def test_bootstrap_interval_covers_at_its_stated_rate():
    """Known-variance data sets (30 halos, N(mu, 1)): the 68 % interval of the mean covers mu in
    68 +- 5 % of 400 data sets (the percentile bootstrap runs slightly narrow at n = 30)."""
    rng = np.random.default_rng(3)
    mu, hits = 2.0, 0
    for _ in range(400):
        _, lo, hi = bootstrap(rng.normal(mu, 1.0, size=30), "mean", n_boot=500)
        hits += lo <= mu <= hi
    assert abs(hits / 400 - 0.68) < 0.05
    # Seeded: the same data give the same interval.
    data = rng.normal(size=20)
    assert bootstrap(data)[1] == bootstrap(data)[1]


def test_paired_skill():
    base = pd.Series([0.1, 0.2, 0.3, 0.4], index=[1, 2, 3, 4])
    perfect = paired_skill(base * 0.0, base)
    assert perfect.value == 1.0 and perfect.lo == 1.0 and perfect.hi == 1.0
    assert paired_skill(base, base).value == 0.0
    assert paired_skill(2 * base, base).value == pytest.approx(-1.0)


def test_r500c_against_colossus():
    from colossus.halo import mass_defs

    from cmpipe.config import load_config
    from cmpipe.physics.cosmology import r500c_from_m200m

    cfg = load_config("demo").cosmology
    m = np.array([3e13, 1e14, 1e15]) / cfg.h
    r, m500 = r500c_from_m200m(m, np.array([7.0, 5.0, 4.0]), cfg)
    m_ref, r_ref, _ = mass_defs.changeMassDefinition(m * cfg.h, np.array([7.0, 5.0, 4.0]), cfg.redshift, "200m",
                                                     "500c", profile="nfw")
    np.testing.assert_allclose(m500, m_ref / cfg.h, rtol=1e-5)
    np.testing.assert_allclose(r, r_ref / 1000 / cfg.h / (1 + cfg.redshift), rtol=1e-5)


NPIX, PIXEL = 32, 0.25


def _grid() -> Grid:
    return Grid(npix=NPIX, pixel_mpc=PIXEL, depth_mpc=8.0, rho_bar_msun_mpc3={"gas_sigma": 6e9, "dm_sigma": 3e10},
                k_split_mpc_inv=scale_split_k(NPIX, PIXEL), convergence_tolerance=0.2)


def test_posterior_too_narrow_inside_r200m_is_over_confident_there():
    """Truth ~ N(mu, s), samples ~ N(mu, s / 3) within R200m and N(mu, s) outside: over-confident within
    R200m, consistent outside, from coverage and from the raw z width (~3 inside, ~1 outside)."""
    rng = np.random.default_rng(4)
    x = (np.arange(NPIX) + 0.5 - NPIX / 2) * PIXEL
    r = np.hypot(x[:, None], x[None, :])
    r200 = 2.0
    inside = r <= r200
    rows: dict[str, dict[str, list]] = {}
    for i in range(6):
        mu = np.stack([10.0 / (1 + r), 50.0 / (1 + r)])
        s = 0.1 * mu
        truth = mu + s * rng.standard_normal(mu.shape)
        width = np.where(inside, s / 3, s)
        samples = mu + width * rng.standard_normal((40, *mu.shape))
        key = {"image_index": i, "halo_id": i, "log10_m200m_msun_h": 14.0}
        out = evaluate_image(samples, truth, truth[:1] ** 2 * 0 + 1.0 + 0 * truth[:1], _grid(), key, r200,
                             conditions=("sz_y",), r500c_mpc=1.0)
        for name, cols in out.items():
            for col, vals in cols.items():
                rows.setdefault(name, {}).setdefault(col, []).extend(vals)
    cov = to_table("coverage", rows["coverage"]).to_pandas()
    cal = calibration_summary(cov).set_index(["channel", "quantity"])
    for c in ("gas_sigma", "dm_sigma"):
        assert cal.loc[(c, "pixels_r200m"), "verdict"] == "over-confident"
        assert cal.loc[(c, "pixels_outside"), "verdict"] == "consistent"
    z = z_summary(to_table("clusters", rows["clusters"]).to_pandas()).set_index(["channel", "region"])
    for c in ("gas_sigma", "dm_sigma"):
        assert z.loc[(c, "r200m"), "verdict"] == "over-confident" and z.loc[(c, "r200m"), "z_std"] > 2.5
        assert z.loc[(c, "outside"), "verdict"] == "consistent"
        assert z.loc[(c, "r200m"), "z_mad"] == pytest.approx(3.0, rel=0.15)


def test_model_equal_to_truth_has_zero_error_and_perfect_skill(tmp_path):
    """A model whose every sample is the truth, beside a baseline that is 1.3 x the truth and one that is
    the truth too: zero errors, skill 1 against the best non-perfect... and the report says in words that
    it is not better than the perfect baseline."""
    from test_report import _build

    from cmpipe.evaluation.report import make_report
    from cmpipe.stages.report import recorded_evaluate

    log10_m = np.linspace(13.6, 14.9, 6)
    results = _build(tmp_path / "res", log10_m, save_samples=False, kind="perfect", ns=3)
    _build(tmp_path / "res" / "baselines" / "scaled", log10_m, save_samples=False, kind="scaled", ns=3,
           tables_only=True)
    written = make_report(results, evaluate_of=recorded_evaluate)
    numbers = written["numbers"]
    for c in ("gas_sigma", "dm_sigma"):
        for key in ("profile_central", "profile_outer", "mass_r500c", "mass_r200m", "mass_whole"):
            assert numbers[f"{key}_{c}"] == pytest.approx(0.0, abs=1e-6)
            assert numbers[f"skill_{key}_{c}"] == pytest.approx(1.0, abs=1e-5)
        assert written["baseline_numbers"]["scaled"][f"mass_r200m_{c}"] == pytest.approx(0.3, rel=1e-6)
    text = written["report"].read_text()
    assert "skill vs best baseline" in text and "`scaled`" in text and "not better" not in text
    assert "scaled" in written["headline_text"]
    # A second baseline that is perfect too: the model is not better than it, and says so.
    _build(tmp_path / "res" / "baselines" / "oracle", log10_m, save_samples=False, kind="perfect", ns=3,
           tables_only=True)
    written = make_report(results, evaluate_of=recorded_evaluate)
    text = written["report"].read_text()
    assert "not better** than the `oracle` baseline" in text


def test_rank_histogram_counts_each_halo_once():
    """Halo 1 has 10 images, all of rank 0; halos 2 and 3 one image each, of rank 9 (S = 9, 10
    bins of one rank each). Per image, bin 0 would hold 10 of 12 counts; per halo it holds 1 of 3,
    and the expectation is 3 halos spread uniformly."""
    rows = []
    for image, (halo, rank) in enumerate([(1, 0)] * 10 + [(2, 9), (3, 9)]):
        rows.append({"image_index": image, "halo_id": halo, "channel": "gas_sigma", "n_samples": 9,
                     "mass_r200m_rank": rank, "mass_outside_r200m_rank": -1, "mass_r500c_rank": rank})
    counts, expected = rank_summary(pd.DataFrame(rows))["gas_sigma"]["mass_r200m_rank"]
    np.testing.assert_allclose(counts, [1, 0, 0, 0, 0, 0, 0, 0, 0, 2])
    np.testing.assert_allclose(expected, np.full(10, 0.3))
    assert "mass_outside_r200m_rank" not in rank_summary(pd.DataFrame(rows))["gas_sigma"]

"""``cmpipe.evaluation.report``: the report of a synthetic results directory written with the real writers.

Oracles: Table 1 and the mass-error summary against independent numpy computations from the
tables, halo by halo (1e-12); files exist and PNGs are non-trivial; an empty mass bin gives NaN
cells ("too few halos"). Baselines under ``RESULTS/baselines/<name>/`` are found and shown with a
skill column; a perfect prediction has zero error and skill 1; a model worse than a baseline is
said to be so in words. The
comparison of results directories (:func:`compare_reports`): a diffusion-like result (noisy
samples) against a U-Net-like one (every sample the same smoothed truth) on the same images, and
with a third on a subset of them (the numbers are on the common images).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cmpipe.config import config_to_yaml, load_config
from cmpipe.evaluation.image import Grid, evaluate_image
from cmpipe.evaluation.metrics import scale_split_k
from cmpipe.evaluation.halo_stats import BOOTSTRAP_SEED, N_BOOTSTRAP
from cmpipe.evaluation.metrics import log_k_weights
from cmpipe.evaluation.compare import compare_reports
from cmpipe.evaluation.report import calibration_summary, make_report, mass_error_summary, table1, z_summary
from cmpipe.stages.report import recorded_evaluate
from cmpipe.store.posterior import open_or_create, write_image
from cmpipe.store.tables import TableError, read_table, to_table, write_images_table, write_part

NPIX, PIXEL, NS = 16, 0.8, 50
FILES = ["fig1_mass_distribution.png", "fig2_example_maps.png", "fig4_truth_vs_mean.png", "fig5_convergence.png",
         "fig6_standardized_errors.png", "fig7_profiles.png", "fig8_bias.png", "fig9_correlation.png",
         "table1.md", "table1.csv", "mass_errors.md", "mass_errors.csv", "fig_mass_error.png",
         "fig_calibration.png", "calibration.md", "report.md", "profile_errors.csv"]
#: Halo of each image of the `full` fixture: 7 halos, one of them seen twice.
HALOS_8 = np.array([100, 100, 101, 102, 103, 104, 105, 106])


def _beta(amplitude: float, rc_mpc: float, beta: float) -> np.ndarray:
    x = (np.arange(NPIX) + 0.5 - NPIX / 2) * PIXEL
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    return amplitude * (1.0 + r2 / rc_mpc**2) ** (-1.5 * beta + 0.5)


def _smooth(maps: np.ndarray) -> np.ndarray:
    """3x3 box mean (periodic) of the last two axes."""
    return sum(np.roll(maps, (dy, dx), axis=(-2, -1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0


def _build(results, log10_m: np.ndarray, save_samples: bool, seed: int = 0, unet: bool = False, ns: int = NS,
           halos: np.ndarray | None = None, kind: str = "noisy", tables_only: bool = False):
    """A results directory; ``unet``: every sample is the smoothed truth (a point estimate).

    ``kind``: ``noisy`` (samples = truth (1 + 0.1 N(0, 1))), ``perfect`` (every sample is the
    truth), ``scaled`` (every sample is 1.3 x the truth: a biased point estimate).
    ``tables_only``: only ``tables/`` (a baseline's results directory)."""
    rng = np.random.default_rng(seed)
    cfg = load_config("demo", ["model.resolution=16", f"infer.save_samples={str(save_samples).lower()}",
                               f"model.kind={'unet' if unet else 'score'}"])
    grid = Grid(npix=NPIX, pixel_mpc=PIXEL, depth_mpc=12.8, rho_bar_msun_mpc3={"gas_sigma": 6e9, "dm_sigma": 3e10},
                k_split_mpc_inv=scale_split_k(NPIX, PIXEL), convergence_tolerance=0.5)
    m = len(log10_m)
    halos = np.arange(m) + 100 if halos is None else np.asarray(halos)
    meta = {"image_index": np.arange(m) * 3, "halo_id": halos, "log10_m200m_msun_h": log10_m}
    group = None if tables_only else open_or_create(results, meta, {
        "targets": ["gas_sigma", "dm_sigma"], "conditions": ["sz_y", "xray_sb"],
        "channel_units": {"sz_y": "1", "xray_sb": "erg s^-1 cm^-2 sr^-1", "gas_sigma": "1", "dm_sigma": "1"},
        "pixel_mpc": PIXEL, "resolution": NPIX, "depth_mpc": 12.8, "n_samples": ns,
        "sampler": "unet" if unet else "em", "steps": 1 if unet else 10,
        "denoise": True, "seed": 0, "save_samples": save_samples, "checkpoint": "none", "checkpoint_step": 0,
        "store": "none", "store_fingerprint": "x", "config_yaml": config_to_yaml(cfg)})
    for i in range(m):
        scale = 10.0 ** (log10_m[i] - 14.0)
        truth = np.stack([_beta(50 * scale, 0.5 + 0.2 * scale, 0.7), _beta(300 * scale, 0.3, 0.75)])
        if unet:
            samples = np.repeat(_smooth(truth)[None], ns, axis=0)
        elif kind == "perfect":
            samples = np.repeat(truth[None], ns, axis=0)
        elif kind == "scaled":
            samples = np.repeat(1.3 * truth[None], ns, axis=0)
        else:
            samples = truth * (1.0 + 0.1 * rng.standard_normal((ns, 2, NPIX, NPIX)))
        condition = np.stack([1e-5 * truth[0] ** 1.2, 1e-3 * truth[0] ** 2]) * (1 + 0.05 * rng.random((2, NPIX, NPIX)))
        key = {k: meta[k][i] for k in meta}
        r200 = 1.5 * scale ** (1 / 3)
        rows = evaluate_image(samples, truth, condition, grid, key, r200m_mpc=r200, r500c_mpc=0.6 * r200)
        for name, cols in rows.items():
            write_part(results, name, to_table(name, cols), [int(key["image_index"])])
        if tables_only:
            continue
        write_image(group, i, {"truth": truth, "condition": condition, "mean": samples.mean(0),
                               "std": samples.std(0, ddof=1), "samples": samples})
    if tables_only:
        return results
    split = np.where(np.arange(m + 4) < m, "test", "train")
    write_images_table(results, {
        "image_index": np.arange(m + 4) * 3, "halo_id": np.concatenate([halos, np.arange(4) + 900]),
        "log10_m200m_msun_h": np.concatenate([log10_m, [13.5, 14.0, 14.5, 15.0]]), "split": split,
        "failed": np.zeros(m + 4, bool), "selected": split == "test"})
    return results


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    results = _build(tmp_path_factory.mktemp("full"), np.linspace(13.6, 14.9, 8), save_samples=False, halos=HALOS_8)
    return results, make_report(results, evaluate_of=recorded_evaluate)


def test_every_file_written(full):
    results, written = full
    for name in FILES:
        path = written[name]
        assert path.is_file() and path.parent == results / "report", name
        if name.endswith(".png"):
            assert path.stat().st_size > 5000, name
    text = written["report"].read_text()
    for name in FILES:
        if name.endswith(".png"):
            assert f"]({name})" in text
    assert "not available: infer.save_samples=false" in (results / "report" / "calibration.md").read_text()
    numbers = written["numbers"]
    # samples = truth (1 + 0.1 noise): unbiased to < 1 %; z = (mean - truth) / std has std
    # 1 / sqrt(S) (the mean of S samples scatters by std / sqrt(S)).
    assert numbers["n_halos"] == 7 and numbers["n_images"] == 8
    for c in ("gas_sigma", "dm_sigma"):
        assert abs(numbers[f"mass_r200m_bias_{c}"]) < 0.01
        assert 0 < numbers[f"profile_central_{c}"] < 0.02
        assert numbers[f"profile_central_{c}_lo"] <= numbers[f"profile_central_{c}"] <= numbers[f"profile_central_{c}_hi"]
        assert numbers[f"z_std_r200m_{c}"] == pytest.approx(1 / np.sqrt(NS), rel=0.2)
        # The truth is the centre of its samples: over-dispersed, intervals cover it too often.
        assert 0.0 < numbers[f"calibration_{c}_pixels_r200m"] <= 0.9
    assert "n_halos = 7, n_images = 8" in text and f"{N_BOOTSTRAP} resamples, seed {BOOTSTRAP_SEED}" in text
    assert "No baselines found" in text and "too few halos" not in written["headline_text"]


def _split(clusters: pd.DataFrame) -> float:
    """The demo config's mass split (or, at 0, the log midpoint of the halos' masses)."""
    split = load_config("demo").evaluate.mass_split_log10_msun_h
    if split <= 0:
        m = clusters.drop_duplicates("halo_id").log10_m200m_msun_h
        split = 0.5 * (m.min() + m.max())
    return split


def _check_table1_row(row, spectra: pd.DataFrame, split: float) -> None:
    """A Table 1 row against numpy: per image the ln-k-weighted large / small-scale means of b and r,
    per halo their mean, then the mean over halos."""
    k_split = scale_split_k(NPIX, PIXEL)  # demo config: evaluate.k_split_mpc_inv = 0
    sel = spectra[(spectra.comparison == row.comparison) & (spectra.channel == row.channel)]
    low = sel.log10_m200m_msun_h < split
    sel = sel[low if row.mass_bin == "low" else ~low]
    images = np.unique(sel.image_index)
    halos = np.unique(sel.halo_id)
    assert row.n_images == images.size > 0 and row.n_halos == halos.size
    for q in ("b", "r"):
        per_halo_large, per_halo_small = [], []
        for h in halos:
            per_large, per_small = [], []
            for i in np.unique(sel[sel.halo_id == h].image_index):
                one = sel[sel.image_index == i].sort_values("bin")
                k, v = one.k_mpc_inv.to_numpy(), one[q].to_numpy()
                lk = np.log(k)
                edges = np.concatenate([[1.5 * lk[0] - 0.5 * lk[1]], 0.5 * (lk[1:] + lk[:-1]), [1.5 * lk[-1] - 0.5 * lk[-2]]])
                w = np.diff(edges)
                np.testing.assert_allclose(w, log_k_weights(k), rtol=1e-12)
                per_large.append(np.average(v[k < k_split], weights=w[k < k_split]))
                per_small.append(np.average(v[k >= k_split], weights=w[k >= k_split]))
            per_halo_large.append(np.mean(per_large))
            per_halo_small.append(np.mean(per_small))
        if halos.size < 3:
            assert np.isnan(row[f"{q}_large"]) and row.note == "too few halos"
            continue
        np.testing.assert_allclose(row[f"{q}_large"], np.mean(per_halo_large), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(row[f"{q}_small"], np.mean(per_halo_small), rtol=1e-12, atol=1e-12)
        assert row[f"{q}_large_lo"] <= row[f"{q}_large"] <= row[f"{q}_large_hi"]


def test_table1_matches_numpy(full):
    results, written = full
    spectra = read_table(results, "spectra").to_pandas()
    got = pd.read_csv(written["table1.csv"], keep_default_na=False, na_values=["nan", "NaN", ""])
    assert len(got) == 8
    split = _split(read_table(results, "clusters").to_pandas())
    for _, row in got.iterrows():
        _check_table1_row(row, spectra, split)
    assert "b_large" in written["table1.md"].read_text()


def test_mass_errors_match_numpy(full):
    results, written = full
    clusters = read_table(results, "clusters").to_pandas()
    split = 14.25
    got = mass_error_summary(clusters, split)
    assert set(got.aperture) == {"r500c", "r200m", "whole"}
    for _, row in got.iterrows():
        sel = clusters[clusters.channel == row.channel]
        if row.mass_bin != "all":
            low = sel.log10_m200m_msun_h < split
            sel = sel[low if row.mass_bin == "low" else ~low]
        col = {"whole": "mass_frac_error", "r200m": "mass_r200m_frac_error", "r500c": "mass_r500c_frac_error"}
        per_halo = sel.groupby("halo_id")[col[row.aperture]]
        signed, absolute = per_halo.mean().to_numpy(), per_halo.apply(lambda x: x.abs().mean()).to_numpy()
        assert row.n_images == len(sel) and row.n_halos == signed.size
        np.testing.assert_allclose([row["bias"], row["scatter"], row["abs_error"]],
                                   [signed.mean(), signed.std(ddof=1), np.median(absolute)], rtol=1e-12, atol=1e-15)
    on_disk = pd.read_csv(written["mass_errors.csv"])
    np.testing.assert_allclose(on_disk.bias, got.bias, rtol=1e-12)


def test_empty_high_bin_and_tarp(tmp_path):
    results = _build(tmp_path / "low", np.array([13.6, 13.8, 14.0]), save_samples=True, seed=1)
    written = make_report(results, evaluate_of=recorded_evaluate)
    t1 = pd.read_csv(written["table1.csv"])
    high = t1[t1.mass_bin == "high"]
    if load_config("demo").evaluate.mass_split_log10_msun_h > 0:  # 14.25: no test halo above it
        assert len(high) == 4 and (high.n_images == 0).all()
        assert high[["b_large", "b_small", "r_large", "r_small"]].isna().all().all()
        assert t1[t1.mass_bin == "low"][["b_large", "r_small"]].notna().all().all()
        masses = pd.read_csv(written["mass_errors.csv"])
        assert masses[masses.mass_bin == "high"][["bias", "scatter", "abs_error"]].isna().all().all()
    assert "too few halos" in written["table1.md"].read_text()
    assert "| gas_sigma | 0." in written["calibration.md"].read_text()  # the TARP rows
    assert np.isfinite(written["numbers"]["tarp_gas_sigma"])


def test_missing_tables_raise(tmp_path):
    with pytest.raises(TableError, match=str(tmp_path / "tables" / "clusters")):
        make_report(tmp_path, evaluate_of=recorded_evaluate)


def test_table1_empty_spectra():
    empty = read_table.__globals__["SCHEMAS"]["spectra"].empty_table().to_pandas()
    t1 = table1(empty, 14.25, 1.0)
    assert len(t1) == 8 and t1[["b_large", "r_small"]].isna().all().all() and (t1.n_images == 0).all()


COMPARISON_FILES = ["comparison.md", "comparison_table1.csv", "comparison_mass_errors.csv", "comparison_profiles.png",
                    "comparison_bias.png", "comparison_correlation.png", "comparison_mass_error.png"]
LOG10_M = np.linspace(13.6, 14.9, 8)  # the `full` fixture's images


@pytest.fixture(scope="module")
def models(full, tmp_path_factory):
    """label -> results: diffusion-like (`full`), U-Net-like on the same images, diffusion-like on 5 of them."""
    unet = _build(tmp_path_factory.mktemp("unet"), LOG10_M, save_samples=False, unet=True, ns=4, halos=HALOS_8)
    subset = _build(tmp_path_factory.mktemp("subset"), LOG10_M[:5], save_samples=False, seed=2, ns=8,
                    halos=HALOS_8[:5])
    return {"diffusion": full[0], "U-Net": unet, "subset": subset}


def _check_comparison(written, models: dict, common: np.ndarray) -> None:
    """Table 1 and mass errors of each model on the common images against numpy."""
    t1 = pd.read_csv(written["comparison_table1.csv"])
    masses = pd.read_csv(written["comparison_mass_errors.csv"])
    assert list(t1.model.unique()) == list(models) and len(t1) == 8 * len(models)
    for label, results in models.items():
        spectra = read_table(results, "spectra").to_pandas()
        spectra = spectra[spectra.image_index.isin(common)]
        clusters = read_table(results, "clusters").to_pandas()
        split = _split(clusters[clusters.image_index.isin(common)])
        for _, row in t1[t1.model == label].iterrows():
            _check_table1_row(row, spectra, split)
        for _, row in masses[(masses.model == label) & (masses.mass_bin == "all")].iterrows():
            sel = clusters[(clusters.channel == row.channel) & clusters.image_index.isin(common)]
            col = {"whole": "mass_frac_error", "r200m": "mass_r200m_frac_error", "r500c": "mass_r500c_frac_error"}
            x = sel.groupby("halo_id")[col[row.aperture]].mean().to_numpy()
            assert row.n_images == len(sel) == common.size
            np.testing.assert_allclose([row["bias"], row["scatter"]], [x.mean(), x.std(ddof=1)], rtol=1e-12)
            if row.aperture == "r200m":
                assert written["numbers"][label][f"mass_r200m_bias_{row.channel}"] == pytest.approx(x.mean(), rel=1e-12)


def test_compare_two_models(full, models, tmp_path):
    two = {k: models[k] for k in ("diffusion", "U-Net")}
    written = compare_reports(two, tmp_path / "cmp", evaluate_of=recorded_evaluate)
    for name in COMPARISON_FILES:
        assert written[name].is_file() and written[name].parent == tmp_path / "cmp", name
        if name.endswith(".png"):
            assert written[name].stat().st_size > 5000, name
            assert f"]({name})" in written["report"].read_text()
    common = np.arange(8) * 3
    np.testing.assert_array_equal(written["common_images"], common)
    _check_comparison(written, two, common)
    # Same images: the diffusion rows are make_report's Table 1.
    t1 = pd.read_csv(written["comparison_table1.csv"])
    own = pd.read_csv(full[1]["table1.csv"])
    cols = ["b_large", "b_small", "r_large", "r_small"]
    np.testing.assert_allclose(t1[t1.model == "diffusion"][cols].to_numpy(), own[cols].to_numpy(), rtol=1e-12)
    # A point estimate: its samples are the estimate, sample and posterior-mean rows coincide;
    # smoothing removes small-scale power (b < 1).
    unet = t1[t1.model == "U-Net"]
    np.testing.assert_allclose(unet[unet.comparison == "sample"][cols].to_numpy(),
                               unet[unet.comparison == "posterior_mean"][cols].to_numpy(), rtol=1e-6)
    assert (unet.b_small < 0.9).all()
    numbers = written["numbers"]
    assert set(numbers) == {"diffusion", "U-Net"}
    for c in ("gas_sigma", "dm_sigma"):
        # A point estimate: no standardized errors, never converged (n_samples + 1).
        assert np.isnan(numbers["U-Net"][f"z_std_r200m_{c}"]) and numbers["U-Net"][f"n_converged_{c}"] == 5
        assert (f"calibration_{c}_pixels_r200m" not in numbers["U-Net"]
                and f"calibration_{c}_pixels_r200m" in numbers["diffusion"])
        assert numbers["diffusion"][f"z_std_r200m_{c}"] == pytest.approx(full[1]["numbers"][f"z_std_r200m_{c}"],
                                                                         rel=1e-12)
    text = written["report"].read_text()
    assert "image sets differ" not in text and "same 8 images" in text
    assert "point estimate" in text and "| U-Net | " in text


def test_compare_differing_images(models, tmp_path):
    written = compare_reports(models, tmp_path / "cmp", evaluate_of=recorded_evaluate)
    common = np.arange(5) * 3
    np.testing.assert_array_equal(written["common_images"], common)
    assert written["images"]["diffusion"].size == 8 and written["images"]["subset"].size == 5
    _check_comparison(written, models, common)
    t1 = pd.read_csv(written["comparison_table1.csv"])
    assert (t1.groupby(["model", "comparison", "channel"]).n_images.sum() == 5).all()
    text = written["report"].read_text()
    assert "image sets differ" in text and "on the 5 images common to all" in text
    assert "left out: [15, 18, 21]" in text


def test_compare_needs_two(full, tmp_path):
    with pytest.raises(ValueError, match="at least two"):
        compare_reports({"diffusion": full[0]}, tmp_path, evaluate_of=recorded_evaluate)


def test_cli_compare(models, tmp_path, capsys):
    """``cmpipe compare --results LABEL=DIR ...``: the comparison report; bad arguments exit 2."""
    from cmpipe.cli import main

    args = ["compare", "--results", f"diffusion={models['diffusion']}", "--results", f"unet={models['U-Net']}",
            "--out", str(tmp_path / "cmp")]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().endswith("comparison.md")
    assert (tmp_path / "cmp" / "comparison_table1.csv").is_file()
    assert main(["compare", "--results", f"diffusion={models['diffusion']}"]) == 2
    assert main(["compare", "--results", "nolabel", "--results", "x=y"]) == 2

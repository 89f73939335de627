"""The shipped ``science`` configuration (issue 17), end to end on a tiny override so it cannot rot.

The real run (320 halos, 64 x 64, about 90 minutes on 2 cores) is a benchmark
(``bench/evidence.py``); here the same configuration, with its realistic mock, its sampler and its
U-Net baseline, runs from catalog to report on a handful of light halos, small maps and a few
steps, on the session's local Ray.
"""

from __future__ import annotations

import pytest

from cmpipe.config import load_config

# Ray Train 2.60's fit() creates a Ray Data DataContext whose initialisation sets its own
# deprecated fields and warns from ray.data.context: Ray's, not ours (as in test_train_ray.py).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

#: The science configuration shrunk to seconds: 10 mock halos of 10^13.5-10^14 at m_pair 1e11
#: (~3,000 particles each), 32 x 32 maps of 0.4 Mpc seen at 16 x 16, two steps of tiny networks,
#: 2 samples of 2 EDM steps. Everything else (mock knobs, sampler kind, U-Net baseline, report)
#: is the shipped science configuration's.
TINY_SCIENCE = [
    "catalog.n_halos=10", "catalog.log10_m_max_msun_h=14.0", "mock.pair_mass_msun_h=1e11",
    "maps.npix=32", "maps.pixel_mpc=0.4", "sph.num_threads=1",
    "generate.images_per_0p1dex=6", "generate.chunk_images=4", "generate.split_fractions=[0.5, 0.2, 0.3]",
    "model.resolution=16", "model.nf=8", "model.ch_mult=[1, 2]",
    "train.batch_size=4", "train.max_steps=2", "train.unet_baseline_steps=2", "train.warmup_steps=1",
    "train.checkpoint_every=2", "train.val_every=2", "train.val_batches=1", "train.num_workers=0",
    "infer.n_samples=2", "infer.steps=2", "infer.batch_size=8", "infer.threads_per_actor=1",
    "evaluate.test_log10_m_max_msun_h=14.0",
]


def test_science_config_is_the_issue17_design():
    """At least 300 halos, at least 60 test halos (one image each), 64 x 64, the realistic mock,
    the sampler that matched Euler-Maruyama at 1000 steps, and the U-Net baseline."""
    import numpy as np

    from cmpipe.config import config_fingerprint
    from cmpipe.mapmaking.plan import make_plan
    from cmpipe.stages.generate import source_catalog

    cfg = load_config("science")
    assert cfg.catalog.n_halos >= 300 and cfg.catalog.mode == "flat"
    # The plan (from the catalog, no particles) keeps every halo and at least 60 distinct test
    # halos in every quarter dex of the test range.
    plan = make_plan(source_catalog(cfg), cfg.generate, config_fingerprint=config_fingerprint(cfg))
    split, halo = np.asarray(plan["split"]), np.asarray(plan["halo_id"])
    assert len(np.unique(halo)) == cfg.catalog.n_halos
    test = split == 2
    assert len(np.unique(halo[test])) >= 60 and cfg.generate.test_images_per_halo == 1
    counts, _ = np.histogram(np.asarray(plan["log10_m200m_msun_h"])[test], bins=np.arange(13.5, 15.01, 0.25))
    assert counts.min() >= 8, counts
    assert cfg.model.resolution == 64 and cfg.maps.npix % cfg.model.resolution == 0
    demo = load_config("demo")
    assert cfg.mock == demo.mock and cfg.source.kind == "mock"  # the realistic mock, every knob as the demo's
    assert (cfg.infer.sampler, cfg.infer.steps) == ("edm", 49)  # 99 evaluations: matched em-1000 (bench/)
    assert cfg.train.unet_baseline_steps == cfg.train.max_steps  # the U-Net trained as long as the model
    # The learning curve (bench/evidence.py) evaluates every kept checkpoint.
    assert cfg.train.keep_checkpoints * cfg.train.checkpoint_every >= cfg.train.max_steps


@pytest.mark.usefixtures("ray_local")
def test_science_pipeline_end_to_end_on_a_tiny_override(tmp_path, capsys):
    """``cmpipe pipeline --config science`` from catalog to report: the model, the U-Net and the
    trivial baselines on the same test images, the U-Net in the report's headline as a baseline;
    a rerun resumes (nothing trained or sampled again) and leaves the tables unchanged."""
    from cmpipe.cli import main
    from cmpipe.store import validate_store
    from cmpipe.store.tables import read_table

    out = tmp_path / "science"
    args = ["pipeline", "--config", "science", "--out", str(out)]
    for item in TINY_SCIENCE:
        args += ["--set", item]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert validate_store(out / "images.zarr")["normalised"]
    assert sorted((out / "run" / "checkpoints").glob("step_*.pt"))
    assert sorted((out / "run_unet" / "checkpoints").glob("step_*.pt"))
    clusters = read_table(out / "results", "clusters").to_pandas()
    n_test = clusters["image_index"].nunique()
    assert n_test == 3 and clusters["halo_id"].nunique() == 3  # 10 halos x 0.3, one image each
    for name in ("unet", "mass_oracle", "pixel_regression"):
        base = read_table(out / "results" / "baselines" / name, "clusters").to_pandas()
        assert sorted(base["image_index"].unique()) == sorted(clusters["image_index"].unique()), name
    report = (out / "results" / "report" / "report.md").read_text(encoding="utf-8")
    assert "`unet`" in report and "`mass_oracle`" in report and "`pixel_regression`" in report
    assert "U-Net baseline steps 0 -> 2" in first

    assert main(args + ["--stages", "train,infer"]) == 0
    again = capsys.readouterr().out
    assert "U-Net baseline steps 2 -> 2" in again and "0 sampled now" in again
    assert "U-Net baseline (0 images now)" in again
    assert read_table(out / "results", "clusters").to_pandas().equals(clusters)

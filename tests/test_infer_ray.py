"""Posterior inference with Ray Data actors (``cmpipe.pipeline.infer``) on the shared local Ray.

One tiny store (6 test images of 16 x 16 at the model's resolution) and one tiny checkpoint (2
training steps, ``nf=8``); one Ray Data run samples every test image (4 samples, 4 Euler-Maruyama
steps) through an injected loader. Oracles: the documented Arrow schemas and the posterior
store's layout; the posterior mean and std recomputed from the saved samples (float32 rounding);
the same image sampled again outside Ray with the same seed (exact: seeds do not depend on
batching); a rerun finds every image done; an interrupted image's table part is removed and its
rows come back identical (deterministic seeds); the serial stage (``cmpipe infer --serial``, no
Ray) writes the Ray run's tables and posterior store exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tiny_stores import INFERENCE_STORE, TINY_INFER, TINY_MODEL, make_run, make_store
from tiny_stores import inference_config as _cfg

from cmpipe.model.sampling import image_seed
from cmpipe.model.training import CheckpointError, latest_checkpoint
from cmpipe.pipeline.infer import infer_with_ray
from cmpipe.stages.infer import InferError, select_test_images
from cmpipe.store.posterior import open_posterior
from cmpipe.store.tables import SCHEMAS, part_paths, read_images_table, read_table

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")



@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(_cfg(), tmp_path_factory.mktemp("infer_store"))


@pytest.fixture(scope="module")
def run(store, tmp_path_factory):
    return make_run(_cfg(), store, tmp_path_factory.mktemp("infer_run"))


def _marking_loader(marker_dir: str):
    """A loader closure (pickled by value into the actors) that leaves a file per call."""

    def loader(checkpoint, infer_cfg, device, fingerprint):
        import os
        import pathlib

        from cmpipe.model.inference import load_posterior_sampler

        pathlib.Path(marker_dir, f"loaded-{os.getpid()}").touch()
        return load_posterior_sampler(checkpoint, infer_cfg, device, fingerprint)

    return loader


@pytest.fixture(scope="module")
def results(ray_local, store, run, tmp_path_factory):
    out = tmp_path_factory.mktemp("infer_results") / "results"
    markers = tmp_path_factory.mktemp("markers")
    cfg = _cfg("infer.save_samples=true")
    summary = infer_with_ray(cfg, store, run, out, loader=_marking_loader(str(markers)))
    return cfg, out, summary, markers


def test_every_test_image_is_sampled_once(results, store):
    cfg, out, summary, markers = results
    selected = select_test_images(cfg, store)
    assert summary["images"] == summary["sampled"] == len(selected["image_index"]) == 6
    assert summary["done_before"] == 0 and list(markers.iterdir()), "the injected loader ran in the actors"
    for name, schema in SCHEMAS.items():
        table = read_table(out, name)
        assert table.schema.equals(schema, check_metadata=True), name
        per_image = table.group_by(["image_index", "channel"]).aggregate([]).num_rows
        assert per_image == 12, name  # 6 images x 2 channels
        assert set(table.column("image_index").to_pylist()) == set(selected["image_index"].tolist())
    clusters = read_table(out, "clusters").to_pydict()
    assert np.all(np.isfinite(clusters["mass_true_msun"])) and np.all(np.array(clusters["mass_true_msun"]) > 0)
    images = read_images_table(out).to_pydict()
    assert sum(images["selected"]) == 6 and set(images["split"]) <= {"train", "val", "test"}


def test_posterior_store_holds_mean_std_and_samples(results, store):
    from cmpipe.store import open_store

    cfg, out, *_ = results
    group = open_posterior(out, require_complete=True)
    assert group.attrs["sampler"] == "em" and group.attrs["n_samples"] == 4 and group.attrs["resolution"] == 16
    samples = group["samples"][:]
    assert samples.shape == (6, 4, 2, 16, 16) and np.all(np.isfinite(samples))
    np.testing.assert_allclose(group["mean"][:], samples.astype(np.float64).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(group["std"][:], samples.astype(np.float64).std(axis=1, ddof=1), rtol=1e-4, atol=1e-30)
    maps = open_store(store)["maps"].get_orthogonal_selection((group["image_index"][:], slice(None)))
    blocks = maps.astype(np.float64).reshape(6, 4, 16, 2, 16, 2).mean(axis=(3, 5))  # 32 -> 16 block means
    channels = list(open_store(store).attrs["channels"])
    order = [channels.index(c) for c in ("gas_sigma", "dm_sigma", "sz_y", "xray_sb")]
    np.testing.assert_allclose(group["truth"][:], blocks[:, order[:2]], rtol=1e-6)
    np.testing.assert_allclose(group["condition"][:], blocks[:, order[2:]], rtol=1e-6)


def test_samples_depend_only_on_the_image_seed(results, run):
    """Image 0 of the posterior store, sampled again in this process alone: identical."""
    from cmpipe.model.inference import load_posterior_sampler

    cfg, out, *_ = results
    group = open_posterior(out)
    sampler = load_posterior_sampler(run, cfg.infer, "cpu")
    again = sampler.sample(group["condition"][:1].astype(np.float64), 4,
                           [image_seed(cfg.infer.seed, int(group["image_index"][0]))])
    np.testing.assert_allclose(again[0], group["samples"][0], rtol=1e-5)


def test_serial_inference_writes_the_ray_runs_tables(results, store, run, tmp_path, capsys, monkeypatch):
    """``cmpipe infer --serial`` (:func:`cmpipe.stages.infer.run`), with no Ray, on the config of
    the Ray run: every table equal to the Ray run's, value for value (NaN == NaN; the sampling time
    aside), and ``posterior.zarr``'s images, means, stds and samples identical. Oracle: the Ray
    run; both call the same :func:`cmpipe.stages.infer.infer_batch` with the same seeds."""
    import json

    from cmpipe.cli import main

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr("cmpipe.pipeline.session.start_ray", no_ray)
    _, out, summary, _ = results
    serial = tmp_path / "results"
    overrides = [*INFERENCE_STORE, *TINY_MODEL, *TINY_INFER, "infer.save_samples=true"]
    assert main(["infer", "--serial", "--store", str(store), "--checkpoint", str(run), "--out", str(serial),
                 *[a for o in overrides for a in ("--set", o)]]) == 0
    assert capsys.readouterr().out.startswith(str(serial))
    got = json.loads((serial / "infer_summary.json").read_text())
    assert got["sampled"] == got["images"] == summary["images"] and set(got["baselines"]) == set(summary["baselines"])
    for name in SCHEMAS:
        ours, theirs = read_table(serial, name), read_table(out, name)
        assert ours.schema.equals(theirs.schema, check_metadata=True) and ours.num_rows == theirs.num_rows, name
        for key in theirs.column_names:
            if key != "seconds":
                np.testing.assert_array_equal(ours[key].to_numpy(), theirs[key].to_numpy(), err_msg=f"{name}.{key}")
    assert read_images_table(serial).equals(read_images_table(out))
    ours, theirs = open_posterior(serial, require_complete=True), open_posterior(out, require_complete=True)
    for key in ("image_index", "truth", "condition", "mean", "std", "samples"):
        np.testing.assert_array_equal(ours[key][:], theirs[key][:], err_msg=key)


def test_rerun_skips_done_images_and_redoes_interrupted_ones(results, store, run):
    cfg, out, summary, _ = results
    assert infer_with_ray(cfg, store, run, out)["sampled"] == 0  # nothing to do: no Ray pipeline at all
    before = read_table(out, "clusters").to_pydict()
    group = open_posterior(out, writable=True)
    group["done"][0] = 0  # as if killed after writing the tables of image row 0, before its maps
    first = int(group["image_index"][0])
    again = infer_with_ray(cfg, store, run, out)
    # the part of row 0 held its batch-mate too: both are sampled again (the tables lost both rows)
    assert again["done_before"] == 4 and again["sampled"] == 2 and again["removed_parts"] == len(SCHEMAS)
    after = read_table(out, "clusters").to_pydict()
    assert after["image_index"].count(first) == 2  # its two channels, once each
    for key in ("image_index", "channel", "mass_true_msun", "mass_pred_msun", "mass_rank", "z_std_r200m"):
        assert after[key] == before[key], key
    assert all(len(part_paths(out, name)) >= 1 for name in SCHEMAS)


def test_other_settings_need_another_results_directory(results, store, run):
    cfg, out, *_ = results
    from cmpipe.store.posterior import PosteriorStoreError

    other = dataclasses.replace(cfg, infer=dataclasses.replace(cfg.infer, steps=5))
    with pytest.raises(PosteriorStoreError, match="steps=4"):
        infer_with_ray(other, store, run, out)


def test_checkpoint_of_another_store_is_refused(run, store, tmp_path):
    import shutil

    from cmpipe.store import open_store

    other = tmp_path / "other.zarr"
    shutil.copytree(store, other)
    open_store(other, mode="r+").attrs["store_fingerprint"] = "f" * 16
    with pytest.raises(CheckpointError, match="ffffffffffffffff"):
        infer_with_ray(_cfg(), other, latest_checkpoint(run), tmp_path / "results")


def test_no_test_images_in_the_mass_range_is_an_error(store):
    with pytest.raises(InferError, match=r"no test images with log10 M200m in \[15.0, 15.5\)"):
        select_test_images(_cfg("evaluate.test_log10_m_min_msun_h=15.0", "evaluate.test_log10_m_max_msun_h=15.5"),
                           store)


def test_gpu_actors_without_gpus_fail_fast(ray_local, store, run, tmp_path):
    with pytest.raises(InferError, match="gpus_per_actor"):
        infer_with_ray(_cfg("infer.gpus_per_actor=1"), store, run, tmp_path / "results")


def test_report_from_the_results_has_every_figure(results, tmp_path, capsys):
    """``cmpipe report`` on the real inference results: every figure and table of the report."""
    from cmpipe.cli import main

    _, out, *_ = results
    assert main(["report", "--results", str(out), "--out", str(tmp_path / "report")]) == 0
    assert capsys.readouterr().out.strip().endswith("report.md")
    names = {p.name for p in (tmp_path / "report").iterdir()}
    figures = {"fig1_mass_distribution.png", "fig2_example_maps.png", "fig4_truth_vs_mean.png", "fig5_convergence.png",
               "fig6_standardized_errors.png", "fig7_profiles.png", "fig8_bias.png", "fig9_correlation.png",
               "fig_mass_error.png", "fig_calibration.png"}
    assert figures <= names and {"table1.md", "table1.csv", "mass_errors.csv", "calibration.md", "report.md"} <= names
    assert all((tmp_path / "report" / f).stat().st_size > 5000 for f in figures)
    assert "TARP" in (tmp_path / "report" / "calibration.md").read_text()


def test_corrupt_part_is_removed_with_its_batch_mates_and_redone(results, store, run, tmp_path, caplog):
    """A truncated part: the resume removes it and its batch's parts in every table, samples those
    images again, and every image's rows are then there once, equal to the clean run's."""
    import logging
    import shutil

    import pyarrow.parquet as pq

    from cmpipe.store.tables import TableError

    cfg, out, *_ = results
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    clean = {name: read_table(out, name) for name in SCHEMAS}
    victim = part_paths(copy, "spectra")[-1]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # truncated
    with pytest.raises(TableError, match=victim.name):  # the report names it, no pyarrow traceback
        read_table(copy, "spectra")
    batch = set(pq.read_table(out / "tables" / "clusters" / victim.name).column("image_index").to_pylist())
    with caplog.at_level(logging.WARNING, logger="cmpipe.store.tables"):
        again = infer_with_ray(cfg, store, run, copy)
    assert str(victim) in caplog.text
    assert again["sampled"] == len(batch) == 2 and again["removed_parts"] == len(SCHEMAS)
    for name in SCHEMAS:
        after, before = read_table(copy, name), clean[name]
        assert after.num_rows == before.num_rows, name
        for key in before.column_names:  # NaN == NaN here; the sampling time differs, nothing else
            if key != "seconds":
                np.testing.assert_array_equal(after[key].to_numpy(), before[key].to_numpy(), err_msg=f"{name}.{key}")
    ours, theirs = open_posterior(copy), open_posterior(out)
    assert ours["done"][:].all()
    for key in ("image_index", "mean", "std"):
        np.testing.assert_array_equal(ours[key][:], theirs[key][:], err_msg=key)


def _tree_digest(path):
    import hashlib

    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fault", ["missing store", "incomplete store", "another store's checkpoint"])
def test_infer_user_errors_stop_before_ray_and_lose_nothing(results, store, run, tmp_path, capsys, monkeypatch, fault):
    """Exit 2 with one line naming the path, found on the driver before Ray starts; every file
    of the results directory and the store byte-identical afterwards."""
    import shutil
    import time

    from cmpipe.cli import main
    from cmpipe.store import open_store

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr("cmpipe.pipeline.session.start_ray", no_ray)
    _, out, *_ = results
    res = tmp_path / "results"
    shutil.copytree(out, res)
    bad = tmp_path / "images.zarr"
    checkpoint, named = latest_checkpoint(run), str(bad)
    if fault != "missing store":
        shutil.copytree(store, bad)
    if fault == "incomplete store":
        open_store(bad, mode="r+")["chunk_done"][0] = 0
    if fault == "another store's checkpoint":
        open_store(bad, mode="r+").attrs["store_fingerprint"] = "f" * 16
        named = str(checkpoint)
    before = _tree_digest(res), _tree_digest(store), (_tree_digest(bad) if bad.exists() else {})
    t0 = time.perf_counter()
    status = main(["infer", "--store", str(bad), "--checkpoint", str(checkpoint), "--out", str(res),
                   *[a for o in [*INFERENCE_STORE, *TINY_MODEL, *TINY_INFER] for a in ("--set", o)]])
    seconds = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("cmpipe:")]
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("cmpipe: error: ") and named in lines[0]
    assert seconds < 20, f"{seconds:.1f} s: not found before the work"
    assert (_tree_digest(res), _tree_digest(store), (_tree_digest(bad) if bad.exists() else {})) == before


def test_infer_runs_the_baselines_on_the_same_images(results):
    """``cmpipe infer`` ends with the trivial baselines (:mod:`cmpipe.evaluation.baselines`) on the model's
    test images, in its results directory, with the model's tables' schemas and samples count."""
    from cmpipe.evaluation.baselines import BASELINES

    cfg, out, summary, _ = results
    assert set(summary["baselines"]) == set(BASELINES)
    model_images = set(read_table(out, "clusters").column("image_index").to_pylist())
    for name in BASELINES:
        for table, schema in SCHEMAS.items():
            got = read_table(out / "baselines" / name, table)
            assert got.schema.equals(schema, check_metadata=True), (name, table)
            assert set(got.column("image_index").to_pylist()) == model_images, (name, table)
        assert set(read_table(out / "baselines" / name, "clusters").column("n_samples").to_pylist()) == {4}
        group = open_posterior(out / "baselines" / name, require_complete=True)
        assert group.attrs["resolution"] == open_posterior(out).attrs["resolution"] == 16

"""Training, inference and the report with every path in a bucket (issue 20), against a real S3
API on localhost (moto's server mode, ``s3_server`` in conftest; Ray's workers and actors reach it
through the environment).

One tiny store (:data:`tiny_stores.INFERENCE_STORE`, generated locally and uploaded), one tiny
model. Oracle throughout: the same steps on local disk, in this process, with the same thread
count (one torch thread, as a Ray Train worker with one CPU and the inference actors use).

* Training: a serial run of 2 steps on the bucket writes the same checkpoint bytes as on disk
  (checkpoints are serialised in memory: their bytes depend on neither name nor process); Ray
  Train then resumes the bucket run to step 4 (its run state in the bucket through
  ``storage_filesystem``), equal tensor for tensor to a local serial resume, and the bucket holds
  one ``.pt`` object per checkpoint: Ray's are pointers to it, no copy. A truncated checkpoint
  object is named by its URL and skipped by a resume.
* Inference: Ray Data actors write the same tables and posterior store in the bucket as the
  serial stage on disk (the sampling time aside); a rerun samples nothing; after a deleted part
  and an interrupted image, a serial rerun on the bucket redoes exactly their batches and every
  table again equals the local one: each image's rows once.
* Report: checked end to end in ``tests/test_s3_pipeline.py`` (``cmpipe pipeline`` to a bucket
  writes the local run's report, byte for byte).
* A missing bucket: ``cmpipe train``, ``infer`` and ``report`` stop with one line naming the URL.
"""

from __future__ import annotations

import contextlib
import json
import uuid

import numpy as np
import pytest
import torch
from buckets import new_bucket
from tensor_oracles import tensors_equal
from tiny_stores import inference_config, make_store

from cmpipe.model.training import checkpoint_paths, load_checkpoint
from cmpipe.pipeline.train import POINTER_NAME
from cmpipe.store.location import as_path
from cmpipe.store.tables import SCHEMAS, part_paths, read_images_table, read_table

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@contextlib.contextmanager
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cfg():
    return inference_config()


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    """One bucket for the module (the steps build on each other)."""
    return new_bucket(s3_server)


@pytest.fixture(scope="module")
def stores(bucket, tmp_path_factory):
    """The local store and its copy in the bucket."""
    local = make_store(_cfg(), tmp_path_factory.mktemp("s3_store"))
    url = f"{bucket}/images.zarr"
    as_path(url).fs.put(str(local), url, recursive=True)
    return local, url


def _objects(url: str) -> list[str]:
    """Every object under ``url``, relative to it (a fresh listing)."""
    fs = as_path(url).fs
    fs.invalidate_cache()
    prefix = str(as_path(url).path).rstrip("/") + "/"
    return sorted(p[len(prefix):] for p in fs.find(prefix))


@pytest.fixture(scope="module")
def runs(stores, bucket, ray_local, tmp_path_factory):
    """Local: serial to step 2, then resumed serially to 4. Bucket: serial to 2, then Ray Train
    (one worker) resumed to 4. Returns the run directories and what the bucket held at step 2."""
    from cmpipe.pipeline.train import train_with_ray
    from cmpipe.stages.train import plot_loss, run as train_run

    local_store, store_url = stores
    local = tmp_path_factory.mktemp("s3_runs") / "run"
    url = f"{bucket}/run"
    with _one_thread():
        train_run(_cfg(), {"store": local_store, "run": local}, max_steps=2)
        train_run(_cfg(), {"store": store_url, "run": url}, max_steps=2)
    at_two = {name: (as_path(url) / name).read_bytes() for name in _objects(url)}
    with _one_thread():
        train_run(_cfg(), {"store": local_store, "run": local}, max_steps=4)
    ray = train_with_ray(_cfg(), store_url, url, num_workers=1, max_steps=4)
    plot_loss(local), plot_loss(url)
    return local, url, at_two, ray


def _rows(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return [{k: v for k, v in r.items() if k != "images_per_s"} for r in csv.DictReader(io.StringIO(text))]


def test_a_run_in_a_bucket_writes_the_local_checkpoint_bytes(runs):
    local, url, at_two, _ = runs
    ckpt = "checkpoints/step_00000002.pt"
    assert at_two[ckpt] == (local / ckpt).read_bytes()  # the one checkpoint, byte for byte
    assert at_two[ckpt.replace(".pt", ".json")] == (local / ckpt).with_suffix(".json").read_bytes()
    assert at_two["config.resolved.yaml"] == (local / "config.resolved.yaml").read_bytes()
    assert _rows(at_two["metrics.csv"].decode())[:2] == _rows((local / "metrics.csv").read_text())[:2]
    state = load_checkpoint(f"{url}/{ckpt}")  # torch.load(weights_only=True) of the object's bytes
    assert state.step == 2


def test_ray_train_resumes_from_the_bucket_and_keeps_one_copy(runs):
    local, url, _, ray = runs
    assert ray["start_step"] == 2 and ray["step"] == 4
    assert ray["metrics"]["checkpoint"] == f"{url}/checkpoints/step_00000004.pt" == str(ray["checkpoint"])
    objects = _objects(url)
    assert [o for o in objects if o.endswith(".pt")] == ["checkpoints/step_00000002.pt", "checkpoints/step_00000004.pt"]
    pointers = [o for o in objects if o.startswith("ray_results/") and "/step_" in o]
    assert pointers and all(o.endswith(f"/{POINTER_NAME}") for o in pointers), objects  # Ray's: a pointer each
    pointer = json.loads((as_path(url) / pointers[-1]).read_text())
    assert pointer == {"uri": f"{url}/checkpoints/step_00000004.pt", "step": 4}
    assert ray["ray_checkpoint"] is not None and str(ray["ray_checkpoint"]).endswith("step_00000004")
    assert [p.name for p in checkpoint_paths(url)] == [p.name for p in checkpoint_paths(local)]
    ours, theirs = load_checkpoint(f"{url}/checkpoints/step_00000004.pt"), load_checkpoint(checkpoint_paths(local)[-1])
    for field in ("model", "ema", "optimizer"):
        assert tensors_equal(getattr(ours, field), getattr(theirs, field)), field
    rows = _rows((as_path(url) / "metrics.csv").read_text())
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert rows == _rows((local / "metrics.csv").read_text())
    assert (as_path(url) / "loss.png").read_bytes() == (local / "loss.png").read_bytes()


def test_an_unreadable_checkpoint_in_the_bucket_is_named_and_skipped(runs, caplog):
    """The latest checkpoint object cut in half (as a copy cut by a kill): reading it names its
    URL; a resume falls back to the previous one, naming both. The object is restored after."""
    import logging

    from cmpipe.model.training import CheckpointReadError, resume_checkpoint

    _, url, _, _ = runs
    latest = as_path(f"{url}/checkpoints/step_00000004.pt")
    whole = latest.read_bytes()
    latest.write_bytes(whole[: len(whole) // 2])
    try:
        with pytest.raises(CheckpointReadError, match=f"^{latest}: not a readable checkpoint"):
            load_checkpoint(latest)
        with caplog.at_level(logging.WARNING, logger="cmpipe.model.training"):
            path, state = resume_checkpoint(url)
        assert str(path) == f"{url}/checkpoints/step_00000002.pt" and state.step == 2
        assert f"{latest} is unreadable" in caplog.text and f"previous checkpoint {path}" in caplog.text
    finally:
        latest.write_bytes(whole)


@pytest.mark.parametrize("command", ["train", "infer", "report"])
def test_a_missing_bucket_is_one_line_naming_the_url(command, s3_server, capsys):
    """Exit 2 before any work, one line naming the URL (no traceback, nothing started)."""
    from cmpipe.cli import main

    url = f"s3://cmpipe-no-such-bucket-{uuid.uuid4().hex[:8]}"
    argv = {"train": ["train", "--serial", "--store", f"{url}/images.zarr", "--run", f"{url}/run"],
            "infer": ["infer", "--serial", "--store", f"{url}/images.zarr", "--checkpoint", f"{url}/run",
                      "--out", f"{url}/results"],
            "report": ["report", "--results", f"{url}/results"]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and url in err and "does not exist" in err, err


# ----------------------------------------------------------------------------- inference


def _assert_tables_equal(ours, theirs):
    for name in SCHEMAS:
        a, b = read_table(ours, name), read_table(theirs, name)
        assert a.schema.equals(b.schema, check_metadata=True) and a.num_rows == b.num_rows, name
        for key in b.column_names:  # NaN == NaN; the sampling time differs, nothing else
            if key != "seconds":
                np.testing.assert_array_equal(a[key].to_numpy(), b[key].to_numpy(), err_msg=f"{name}.{key}")


@pytest.fixture(scope="module")
def results(stores, runs, bucket, ray_local, tmp_path_factory):
    """The step-2 checkpoint (the same bytes in both places): serial inference on disk, Ray Data
    inference in the bucket."""
    from cmpipe.pipeline.infer import infer_with_ray
    from cmpipe.stages.infer import run as infer_run

    (local_store, store_url), (local_run, run_url, _, _) = stores, runs
    ckpt = "checkpoints/step_00000002.pt"
    local = tmp_path_factory.mktemp("s3_results") / "results"
    url = f"{bucket}/results"
    infer_run(_cfg(), {"store": local_store, "run": local_run / ckpt, "results": local})
    summary = infer_with_ray(_cfg(), store_url, f"{run_url}/{ckpt}", url)
    return local, url, summary, (store_url, f"{run_url}/{ckpt}")


def test_inference_in_a_bucket_writes_the_local_tables(results):
    from cmpipe.evaluation.report import find_baselines
    from cmpipe.store.posterior import open_posterior

    local, url, summary, _ = results
    assert summary["sampled"] == summary["images"] == 6 and summary["results"] == url
    _assert_tables_equal(url, local)
    assert read_images_table(url).equals(read_images_table(local))
    ours, theirs = open_posterior(url, require_complete=True), open_posterior(local, require_complete=True)
    for key in ("image_index", "truth", "condition", "mean", "std"):
        np.testing.assert_array_equal(ours[key][:], theirs[key][:], err_msg=key)
    assert sorted(find_baselines(url)) == sorted(find_baselines(local)) == sorted(summary["baselines"])
    for name, path in find_baselines(url).items():
        _assert_tables_equal(path, find_baselines(local)[name])
    assert (as_path(url) / "infer_summary.json").is_file()


def test_reruns_in_a_bucket_write_each_images_rows_once(results, caplog):
    """A rerun samples nothing; then one part deleted (batch 0) and one image interrupted after
    its parts, before its ``done`` flag (batch 2): a serial rerun on the bucket removes those two
    batches' parts, samples their 4 images again, and every table equals the local one."""
    import logging

    from cmpipe.pipeline.infer import infer_with_ray
    from cmpipe.stages.infer import run as infer_run
    from cmpipe.store.posterior import open_posterior

    local, url, _, (store_url, ckpt_url) = results
    assert infer_with_ray(_cfg(), store_url, ckpt_url, url)["sampled"] == 0
    deleted = part_paths(url, "profiles")[0]
    deleted.unlink()
    group = open_posterior(url, writable=True)
    group["done"][5] = 0  # as if killed between the tables of image row 5 and its done flag
    with caplog.at_level(logging.WARNING, logger="cmpipe.store.tables"):
        again = infer_run(_cfg(), {"store": store_url, "run": ckpt_url, "results": url}, baselines=())
    assert deleted.name in caplog.text
    assert again["done_before"] == 2 and again["sampled"] == 4 and again["removed_parts"] == 2 * len(SCHEMAS) - 1
    _assert_tables_equal(url, local)
    clusters = read_table(url, "clusters").to_pydict()
    assert all(clusters["image_index"].count(i) == 2 for i in set(clusters["image_index"]))  # 2 channels, once
    assert open_posterior(url, require_complete=True)["done"][:].all()

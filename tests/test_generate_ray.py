"""The Ray generator (:mod:`cmpipe.pipeline.generate`) on the session's local Ray (2 CPUs).

Oracle: the serial generator's store (:func:`cmpipe.mapmaking.generate`) of the same config,
with one thread per chunk as the Ray tasks use (``sph.num_threads=1``): a content checksum of
every array and attribute must be identical, so the maps are bit-identical. A worker killed
mid-task, a driver stopped after two chunks, and a task that raises must all end, after the
retry or the resume, in that same store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr

from cmpipe.cli import main
from cmpipe.config import load_config
from cmpipe.stages.source import open_source
from cmpipe.pipeline import generate_with_ray
from cmpipe.store.schema import PLAN_ARRAYS
from cmpipe.stages.generate import generate_serial
from cmpipe.store import missing_chunks, open_store, validate_store
from tiny_stores import GENERATION_MASSES, GENERATION_STORE

# test_store.py's plan: 7 analytic halos, 18 images; chunks of 2 images: 9 chunks
MASSES = GENERATION_MASSES
OVERRIDES = [*GENERATION_STORE, "generate.chunk_images=2", "sph.num_threads=1"]
PER_IMAGE = (*PLAN_ARRAYS, "image_failed", "chunk_done")


def _cfg(*extra: str):
    return load_config("demo", [*OVERRIDES, *extra])


def _checksum(path) -> str:
    """SHA-256 over every array's bytes and the root attributes (content, not file layout)."""
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    h = hashlib.sha256()
    for name in sorted(group.array_keys()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(group[name][...]).tobytes())
    h.update(json.dumps(dict(group.attrs), sort_keys=True).encode())
    return h.hexdigest()


class _Wrapped:
    """A picklable source wrapper (pickled by value, see :func:`_by_value`) for fault injection."""

    def __init__(self, inner, halo_id: int, marker: str, fault: str):
        self.inner, self.halo_id, self.marker, self.fault = inner, halo_id, marker, fault

    def halo_ids(self):
        return self.inner.halo_ids()

    def properties(self, halo_id):
        return self.inner.properties(halo_id)

    def load(self, halo_id):
        if int(halo_id) == self.halo_id and self.fault == "raise":
            raise RuntimeError("injected bug")  # not a ValueError: a bug, not a bad halo
        if int(halo_id) == self.halo_id and not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)  # the worker dies mid-task, once
        return self.inner.load(halo_id)


@pytest.fixture
def _by_value():
    """Ray's workers cannot import this test module: pickle its classes by value."""
    import ray.cloudpickle

    module = sys.modules[__name__]
    ray.cloudpickle.register_pickle_by_value(module)
    yield
    ray.cloudpickle.unregister_pickle_by_value(module)


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    cfg = _cfg()
    path = tmp_path_factory.mktemp("serial") / "images.zarr"
    generate_serial(cfg, path)
    return cfg, path, _checksum(path)


def test_ray_store_equals_serial_and_rerun_does_nothing(ray_local, serial, tmp_path):
    cfg, reference, checksum = serial
    path = tmp_path / "images.zarr"
    summary = generate_with_ray(cfg, path, progress=False)
    assert summary["chunks_written"] == summary["chunks"] == 9 and summary["images"] == 18
    assert summary["failures"] == [] and summary["crashed_chunks"] == [] and summary["normalised"]
    assert summary["cpus"] == 2 and summary["images_per_s"] > 0
    assert summary["seconds"]["projection"] > 0 and summary["seconds"]["writing"] > 0
    ours, theirs = open_store(path), open_store(reference)
    np.testing.assert_array_equal(ours["maps"][:], theirs["maps"][:])  # NaN-free: equal bits
    for name in PER_IMAGE:
        np.testing.assert_array_equal(ours[name][:], theirs[name][:], err_msg=name)
    assert ours.attrs["normalisation"] == theirs.attrs["normalisation"]
    assert _checksum(path) == checksum
    assert ray_local.is_initialized()  # reused, not shut down
    # a complete store: nothing to do, nothing changed
    again = generate_with_ray(cfg, path, progress=False)
    assert again["chunks_written"] == 0 and again["images_per_s"] == 0.0
    assert _checksum(path) == checksum


def test_killed_worker_is_retried(ray_local, serial, tmp_path, _by_value):
    cfg, _, checksum = serial
    marker = tmp_path / "killed.pid"
    source = _Wrapped(open_source(cfg), 5, str(marker), "kill")
    summary = generate_with_ray(cfg, tmp_path / "images.zarr", progress=False, source=source)
    assert marker.exists() and int(marker.read_text()) != os.getpid()  # a worker died ...
    assert summary["crashed_chunks"] == [] and summary["failures"] == []  # ... and its chunk was retried
    assert _checksum(tmp_path / "images.zarr") == checksum


def test_stopped_driver_resumes_to_the_same_store(ray_local, serial, tmp_path):
    cfg, _, checksum = serial
    path = tmp_path / "images.zarr"
    first = generate_with_ray(cfg, path, progress=False, max_chunks=2)
    assert first["chunks_written"] == 2 and len(first["missing_chunks"]) == 7 and not first["normalised"]
    assert open_store(path).attrs["normalisation"] is None
    second = generate_with_ray(cfg, path, progress=False)
    assert second["chunks_written"] == 7 and second["missing_chunks"] == []
    assert _checksum(path) == checksum


def test_task_that_raises_is_recorded_then_resumed(ray_local, serial, tmp_path, _by_value):
    cfg, _, checksum = serial
    path = tmp_path / "images.zarr"
    source = _Wrapped(open_source(cfg), 4, "", "raise")
    summary = generate_with_ray(cfg, path, progress=False, source=source)
    rows = np.flatnonzero(open_store(path)["halo_id"][:] == 4)
    chunks = sorted({int(r) // 2 for r in rows})
    assert summary["crashed_chunks"] == chunks == summary["missing_chunks"]
    assert {f["halo_id"] for f in summary["failures"]} >= {4}
    assert all("injected bug" in f["error"] for f in summary["failures"])
    assert validate_store(path, require_complete=False)["missing_chunks"] == chunks
    # the resume redoes the chunk and clears its failure entries
    again = generate_with_ray(cfg, path, progress=False)
    assert again["chunks_written"] == len(chunks) and again["failures"] == []
    assert _checksum(path) == checksum


def test_bad_halo_is_recorded_and_cli_exits_nonzero(ray_local, tmp_path, capsys):
    from cmpipe.physics.hdf5io import write_halo_hdf5

    cfg = _cfg()
    source = open_source(cfg)
    halos = tmp_path / "halos"
    halos.mkdir()
    for hid in source.halo_ids():
        write_halo_hdf5(halos / f"halo_{hid}.hdf5", source.load(hid), h=cfg.cosmology.h)
    bad = 5  # the lone halo of its bin: always planned
    with h5py.File(halos / f"halo_{bad}.hdf5", "r+") as f:
        f["PartType0/Coordinates"][0] = np.nan
    store_path = tmp_path / "out" / "images.zarr"
    status = main(["generate", "--store", str(store_path), *[a for o in OVERRIDES for a in ("--set", o)],
                   "--set", "source.kind=hdf5", "--set", f"source.path={halos}", "--out", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert f"halo {bad}" in err
    assert missing_chunks(store_path) == []
    group = open_store(store_path)
    rows = np.flatnonzero(group["halo_id"][:] == bad)
    assert {f["halo_id"] for f in group.attrs["failures"]} == {bad}
    assert sorted(i for f in group.attrs["failures"] for i in f["images"]) == rows.tolist()
    maps = group["maps"][:]
    assert np.all(np.isnan(maps[rows]))
    assert np.all(np.isfinite(np.delete(maps, rows, axis=0)))
    assert validate_store(store_path)["failed_images"] == len(rows)
    shutil.rmtree(halos)


def test_cli_serial_refuses_an_address(capsys):
    assert main(["generate", "--serial", "--address", "auto", "--store", "unused.zarr"]) == 2
    assert "--serial runs without Ray" in capsys.readouterr().err


def test_job_entrypoint_is_the_generate_command():
    import runpy

    path = Path(__file__).parents[1] / "jobs" / "generate.py"
    namespace = runpy.run_path(str(path), run_name="not_main")
    assert namespace["main"] is main

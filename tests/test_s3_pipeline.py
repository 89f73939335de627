"""``cmpipe pipeline`` from catalog to report with ``--out s3://...`` (issue 20), against a real S3
API on localhost (moto's server mode, ``s3_server`` in conftest; Ray's tasks, Ray Train workers
and Ray Data actors reach it through the environment they inherit).

Oracle: the same command with a local ``--out``. Every output the run writes must be the local
run's: the catalog's columns, every array of the image store and of ``posterior.zarr``, the
checkpoint's bytes, every results table (apart from its wall-clock columns), the report's
Markdown and CSV files, and the set of files itself (the bucket holds the same names, and no
creation marker or temporary object is left behind). The resolved config differs in ``run.out``
only, and so do the fingerprints derived from it.
"""

from __future__ import annotations

import io
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from buckets import new_bucket
from tiny_stores import TINY_INFER, TINY_MODEL

from cmpipe.cli import main
from cmpipe.store.location import as_path, zarr_store
from cmpipe.store.tables import SCHEMAS, read_table

pytestmark = [pytest.mark.usefixtures("ray_local"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")]

#: The demo config on 10 mock halos of a drawn catalog (so the catalog stage runs), 32 x 32 maps,
#: the tiny model (2 steps) and sampler of the other tests.
TINY_PIPELINE = [
    "catalog.n_halos=10", "catalog.log10_m_max_msun_h=14.0", "mock.pair_mass_msun_h=1e11",
    "maps.npix=32", "maps.pixel_mpc=0.4", "sph.num_threads=1",
    "generate.images_per_0p1dex=6", "generate.chunk_images=4", "generate.split_fractions=[0.5, 0.2, 0.3]",
    *TINY_MODEL, "train.max_steps=2", *TINY_INFER, "evaluate.test_log10_m_max_msun_h=14.0",
]
#: Results-table columns that hold wall-clock time, not results.
CLOCK_COLUMNS = ("seconds",)


def _pipeline(out: str) -> float:
    args = ["pipeline", "--config", "demo", "--out", out]
    for item in TINY_PIPELINE:
        args += ["--set", item]
    start = time.perf_counter()
    assert main(args) == 0, out
    return time.perf_counter() - start


def _names(root) -> list[str]:
    prefix = len(str(root)) + 1
    return sorted(str(p)[prefix:] for p in root.rglob("*") if p.is_file())


def _read(root, name: str) -> bytes:
    return (root / name).read_bytes()


def _zarr_arrays(path) -> dict[str, np.ndarray]:
    group = zarr.open_group(zarr_store(path, read_only=True), mode="r")
    return {name: array[...] for name, array in group.arrays()}


@pytest.fixture(scope="module")
def runs(s3_server, tmp_path_factory):
    """The tiny pipeline on local disk and in a new bucket: (local out, bucket out, seconds each)."""
    local, remote = tmp_path_factory.mktemp("pipeline") / "out", as_path(f"{new_bucket(s3_server)}/run")
    seconds = (_pipeline(str(local)), _pipeline(str(remote)))
    print(f"\ntiny pipeline: local {seconds[0]:.1f} s, bucket {seconds[1]:.1f} s "
          f"({seconds[1] / seconds[0]:.2f}x)")
    return local, remote, seconds


def test_the_bucket_holds_the_local_runs_files(runs):
    local, remote, _ = runs
    names = _names(local)
    assert _names(remote) == names
    assert {"catalog.parquet", "results/report/report.md", "run/checkpoints/step_00000002.pt"} <= set(names)
    assert not [n for n in names if n.endswith((".creating", ".tmp"))]


def test_catalog_store_and_checkpoint_equal_the_local_run(runs):
    local, remote, _ = runs
    a = pq.read_table(local / "catalog.parquet")
    b = pq.read_table(io.BytesIO(_read(remote, "catalog.parquet")))
    assert a.schema.names == b.schema.names
    for name in a.schema.names:
        np.testing.assert_array_equal(a[name].to_numpy(zero_copy_only=False),
                                      b[name].to_numpy(zero_copy_only=False), err_msg=name)
    store_a, store_b = _zarr_arrays(local / "images.zarr"), _zarr_arrays(remote / "images.zarr")
    assert sorted(store_a) == sorted(store_b)
    for name, array in store_a.items():
        np.testing.assert_array_equal(array, store_b[name], err_msg=name)
    for name in _names(local / "run" / "checkpoints"):
        assert _read(local / "run" / "checkpoints", name) == _read(remote / "run" / "checkpoints", name), name


def test_results_and_report_equal_the_local_run(runs):
    local, remote, _ = runs
    for table in SCHEMAS:
        a = read_table(local / "results", table).to_pandas()
        b = read_table(remote / "results", table).to_pandas()
        clock = [c for c in a.columns if c.endswith(CLOCK_COLUMNS)]
        assert a.drop(columns=clock).equals(b.drop(columns=clock)), table
    post_a, post_b = _zarr_arrays(local / "results" / "posterior.zarr"), _zarr_arrays(remote / "results" / "posterior.zarr")
    assert sorted(post_a) == sorted(post_b)
    for name, array in post_a.items():
        np.testing.assert_array_equal(array, post_b[name], err_msg=name)
    report = [n for n in _names(local / "results" / "report") if n.endswith((".md", ".csv"))]
    assert "report.md" in report
    for name in report:
        assert _read(local / "results" / "report", name) == _read(remote / "results" / "report", name), name

"""The front half of the pipeline on an object store (issue 20): catalog, plan and image store at
``s3://`` URLs, against a real S3 API on localhost (moto's server, ``s3_server`` in conftest).

Oracle: the same run on local disk. The bucket's objects must equal the local directory's files
byte for byte (every chunk, shard, ``zarr.json`` with its attributes and consolidated metadata,
the plan and catalog Parquet files), for the serial and the Ray generator (one thread per chunk:
bit-identical maps), after a generation stopped midway (the driver, or a process that dies
mid-chunk) and resumed, and after a creation that was interrupted. A store made by another
config is refused with nothing deleted; an unusable URL is one line, exit status 2, before any
work.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cmpipe.cli import main
from cmpipe.config import load_config
from cmpipe.physics.catalog import META_CONFIG, META_FINGERPRINT, read_catalog
from cmpipe.stages.generate import generate_serial, plan_and_create_store
from cmpipe.stages.source import open_source
from cmpipe.store.location import as_path, write_text_atomic
from cmpipe.store.zarr_store import StoreError, creation_marker, missing_chunks, open_store
from tiny_stores import GENERATION_STORE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

# test_generate_ray.py's store (7 analytic halos, 18 images of 32 x 32) in 3 chunks of 6 images:
# every request to the in-process S3 server costs tens of ms, so few chunks
GEN = [*GENERATION_STORE, "generate.chunk_images=6", "sph.num_threads=1"]
CHUNKS = 3


def _sets(overrides) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def _local_files(root) -> dict[str, bytes]:
    """Every file under the local directory ``root``: relative name -> bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _bucket_objects(url: str) -> dict[str, bytes]:
    """Every object under the URL's prefix: relative key -> bytes (read afresh)."""
    root = as_path(url)
    fs = root.fs
    fs.invalidate_cache()
    prefix = str(root.path).rstrip("/") + "/"
    return {key[len(prefix):]: fs.cat_file(key) for key in sorted(fs.find(prefix))}


class _Stop(BaseException):
    """The process stopping (killed) while a chunk is being made: not an error cmpipe handles."""


class _DiesAt:
    """A source whose ``load`` of its ``n``-th halo stops the process (:class:`_Stop`)."""

    def __init__(self, inner, n: int):
        self.inner, self.n, self.loads = inner, n, 0

    def halo_ids(self):
        return self.inner.halo_ids()

    def properties(self, halo_id):
        return self.inner.properties(halo_id)

    def load(self, halo_id):
        self.loads += 1
        if self.loads == self.n:
            raise _Stop(f"killed while loading halo {halo_id}")
        return self.inner.load(halo_id)


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The oracle: the serial store and its plan on local disk (every file's bytes)."""
    cfg = load_config("demo", GEN)
    root = tmp_path_factory.mktemp("local")
    generate_serial(cfg, root / "images.zarr")
    return cfg, _local_files(root), root


def _same_files(got: dict[str, bytes], expected: dict[str, bytes], extra=()) -> None:
    """The bucket holds the oracle's files byte for byte, and nothing else but ``extra``."""
    assert [k for k in expected if got.get(k) != expected[k]] == []
    assert sorted(set(got) - set(expected)) == sorted(extra)


def test_serial_store_on_a_bucket_equals_the_local_one(local, s3_bucket, capsys):
    _, expected, _ = local
    url = f"{s3_bucket}/run"
    assert main(["generate", "--serial", "--store", f"{url}/images.zarr", *_sets(GEN)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{url}/images.zarr" and f"{CHUNKS} chunks written" in out[1] and "0 images failed" in out[1]
    # no creation marker, no temporary object left; the resolved config beside the store, as on disk
    _same_files(_bucket_objects(url), expected, extra=("config.resolved.yaml",))


def test_ray_store_on_a_bucket_equals_the_local_one_and_resumes(ray_local, local, s3_bucket):
    from cmpipe.pipeline.generate import generate_with_ray
    from cmpipe.pipeline.run import run_pipeline

    cfg, expected, _ = local
    url = f"{s3_bucket}/run"
    first = generate_with_ray(cfg, as_path(f"{url}/images.zarr"), progress=False, max_chunks=1)  # the driver stops
    assert first["chunks_written"] == 1 and first["missing_chunks"] == [1, 2] and not first["normalised"]
    assert missing_chunks(f"{url}/images.zarr") == [1, 2]
    # the resume, through `cmpipe pipeline --out s3://...`: URL paths, the bucket's state read afresh
    result = run_pipeline(cfg, url, stages=("catalog", "generate"), echo=lambda *a, **k: None)
    assert str(result["paths"]["report"]) == f"{url}/results/report"
    _same_files(_bucket_objects(url), expected, extra=(".cmpipe-artifact.json", "config.resolved.yaml"))


def test_interrupted_creation_and_generation_resume_to_the_same_store(local, s3_bucket):
    cfg, expected, root = local
    store = as_path(f"{s3_bucket}/images.zarr")
    # a creation stopped after its first objects: the marker beside the store, a bare group
    write_text_atomic(creation_marker(store), "{}")
    write_text_atomic(store / "zarr.json", '{"zarr_format": 3, "node_type": "group", "attributes": {}}')
    with pytest.raises(StoreError, match="creation was interrupted"):
        open_store(store)
    # made again, then the process dies loading the first halo of chunk 1
    first_chunk_halos = len(set(open_store(root / "images.zarr")["halo_id"][:6]))
    with pytest.raises(_Stop):
        _generate_with(cfg, store, _DiesAt(open_source(cfg), first_chunk_halos + 1))
    assert missing_chunks(store) == [1, 2] and open_store(store).attrs["normalisation"] is None
    assert generate_serial(cfg, store)["chunks_written"] == 2  # the resume
    _same_files(_bucket_objects(s3_bucket), expected)


def _generate_with(cfg, store, source) -> None:
    """``generate_serial``'s steps with a given source (it opens its own): plan, store, chunks."""
    from cmpipe.mapmaking.generate import write_chunk
    from cmpipe.stages.generate import map_settings, store_fingerprint
    from cmpipe.store.zarr_store import chunks_to_write, record_failures

    path, _, _ = plan_and_create_store(cfg, store, source)
    for chunk in chunks_to_write(path):
        record_failures(path, [write_chunk(path, chunk, map_settings(cfg), store_fingerprint(cfg), source)])


def test_a_resume_reads_the_bucket_not_a_stale_listing(local, s3_bucket, s3_server):
    """Another process (a Ray worker, another driver) rewrote the store after this one listed it:
    generate must read the bucket's state (resume: nothing to do), not its cached listing (whose
    object sizes and ETags are stale: s3fs then refuses the read)."""
    import boto3

    cfg, expected, _ = local
    client, bucket = boto3.client("s3", endpoint_url=s3_server), s3_bucket.split("://")[1]
    for key, data in expected.items():  # the complete store and plan, written by "another process" ...
        client.put_object(Bucket=bucket, Key=key, Body=data if key != "images.zarr/zarr.json" else b"{}")
    assert "zarr.json" in [p.name for p in as_path(f"{s3_bucket}/images.zarr").iterdir()]  # ... listed here
    client.put_object(Bucket=bucket, Key="images.zarr/zarr.json", Body=expected["images.zarr/zarr.json"])  # rewritten
    assert generate_serial(cfg, f"{s3_bucket}/images.zarr")["chunks_written"] == 0
    _same_files(_bucket_objects(s3_bucket), expected)


def test_a_store_of_another_config_is_refused_and_kept(local, s3_bucket, capsys):
    cfg, _, _ = local
    store = f"{s3_bucket}/run/images.zarr"
    plan_and_create_store(cfg, store, open_source(cfg))
    before = _bucket_objects(s3_bucket)
    other = load_config("demo", [*GEN, "maps.npix=16"])
    with pytest.raises(StoreError, match="store fingerprint"):
        plan_and_create_store(other, store, open_source(other))
    argv = ["generate", "--serial", "--store", store, *_sets(GEN), "--set", "maps.npix=16"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and store in err[0] and "store fingerprint" in err[0]
    assert _bucket_objects(s3_bucket) == before  # nothing deleted, nothing written
    # --overwrite deletes it (a cmpipe store) and starts over
    _, _, group = plan_and_create_store(other, store, open_source(other), overwrite=True)
    assert group.attrs["npix"] == 16 and missing_chunks(store) == [0, 1, 2]


@pytest.mark.parametrize("argv, url", [
    (["generate", "--serial", "--store", "s3://cmpipe-no-such-bucket/images.zarr"], "s3://cmpipe-no-such-bucket/images.zarr"),
    (["generate", "--serial", "--store", "nosuch://bucket/images.zarr"], "nosuch://bucket/images.zarr"),
    (["catalog", "--out", "s3://cmpipe-no-such-bucket/run"], "s3://cmpipe-no-such-bucket/run"),
    (["catalog", "--out", "nosuch://bucket/run"], "nosuch://bucket/run"),
], ids=["generate-bucket", "generate-scheme", "catalog-bucket", "catalog-scheme"])
def test_an_unusable_url_is_one_line_before_any_work(s3_server, tmp_path, monkeypatch, capsys, argv, url):
    monkeypatch.chdir(tmp_path)
    assert main([*argv, *_sets(GEN)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cmpipe: error: ") and url in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_catalog_on_a_bucket_equals_the_local_one(s3_bucket, tmp_path, capsys):
    overrides = ["catalog.n_halos=40"]
    assert main(["catalog", "--out", str(tmp_path), *_sets(overrides)]) == 0
    assert main(["catalog", "--out", f"{s3_bucket}/run", *_sets(overrides)]) == 0
    assert capsys.readouterr().out.splitlines()[-2] == f"{s3_bucket}/run/catalog.parquet"
    expected, got = _local_files(tmp_path), _bucket_objects(f"{s3_bucket}/run")
    assert sorted(got) == sorted(expected) == ["catalog.parquet", "config.resolved.yaml", "mass_function.png"]
    assert got["mass_function.png"] == expected["mass_function.png"]
    # the resolved configs (also in the catalog's metadata) differ only in run.out, and so in their fingerprints
    ours, theirs = (yaml.safe_load(files["config.resolved.yaml"]) for files in (got, expected))
    assert ours.pop("run")["out"] == f"{s3_bucket}/run" and theirs.pop("run")["out"] == str(tmp_path)
    assert ours.pop("_fingerprint") != theirs.pop("_fingerprint") and ours == theirs
    path_like = (META_CONFIG, META_FINGERPRINT)
    ours, theirs = (read_catalog(root / "catalog.parquet") for root in (as_path(f"{s3_bucket}/run"), tmp_path))
    assert ours.schema.equals(theirs.schema) and [f.metadata for f in ours.schema] == [f.metadata for f in theirs.schema]
    for name in ours.column_names:  # every value (NaN where the other has NaN)
        np.testing.assert_array_equal(ours[name].to_numpy(zero_copy_only=False), theirs[name].to_numpy(zero_copy_only=False))
    assert {k: v for k, v in ours.schema.metadata.items() if k not in path_like} \
        == {k: v for k, v in theirs.schema.metadata.items() if k not in path_like}

"""Paths that are object-store URLs (cmpipe.store.location), against a real S3 API on localhost
(moto's server mode, ``s3_server`` in conftest): parsing, clear errors before any work, and the
output-ownership rules of cmpipe.store.outputs on a bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cmpipe.store.location import LocationError, as_path, check_reachable, is_remote, write_text_atomic
from cmpipe.store.outputs import MARKER_NAME, OutputError, artifact_kind, claim_directory, remove_owned


def test_local_paths_stay_pathlib(tmp_path):
    assert as_path(str(tmp_path)) == tmp_path and type(as_path(str(tmp_path))) is type(tmp_path)
    assert as_path(f"file://{tmp_path}") == tmp_path
    assert not is_remote(tmp_path) and not is_remote(str(tmp_path))


def test_urls_keep_their_scheme(s3_bucket):
    path = as_path(f"{s3_bucket}/run") / "images.zarr"
    assert is_remote(path)
    assert str(path) == f"{s3_bucket}/run/images.zarr"  # not s3:/bucket/...
    assert path.name == "images.zarr" and str(path.parent) == f"{s3_bucket}/run"


def test_unknown_scheme_is_named():
    with pytest.raises(LocationError, match=r"nosuch://bucket/x.*unknown URL scheme 'nosuch'"):
        as_path("nosuch://bucket/x")


def test_missing_bucket_is_named_before_any_work(s3_server):
    url = "s3://cmpipe-no-such-bucket/run"
    with pytest.raises(LocationError, match=r"--out s3://cmpipe-no-such-bucket/run: the bucket 'cmpipe-no-such-bucket' does not exist"):
        check_reachable(as_path(url), "--out")
    with pytest.raises(LocationError, match="does not exist"):
        claim_directory(url, "pipeline", names=("catalog.parquet",), what="--out")


def test_claim_and_remove_on_a_bucket(s3_bucket):
    out = as_path(f"{s3_bucket}/run")
    claim_directory(out, "pipeline", names=("catalog.parquet",), what="--out")
    marker = json.loads((out / MARKER_NAME).read_text())
    assert marker["cmpipe_artifact"] == "pipeline" and artifact_kind(out) == "pipeline"
    claim_directory(out, "pipeline", names=("catalog.parquet",), what="--out")  # a rerun: accepted
    with pytest.raises(OutputError, match="is a cmpipe pipeline, not a report directory"):
        claim_directory(out, "report", names=("report.md",), what="--out")
    write_text_atomic(out / "catalog.parquet", "x")
    assert remove_owned(out, ("pipeline",)) and not out.exists()


def test_foreign_prefix_is_never_deleted(s3_bucket):
    mine = as_path(f"{s3_bucket}/theirs")
    write_text_atomic(mine / "paper.tex", "\\documentclass{article}")
    with pytest.raises(OutputError, match="paper.tex"):
        claim_directory(mine, "results", names=("tables",), what="--results")
    with pytest.raises(OutputError, match="did not make: refusing to delete"):
        remove_owned(mine, ("results",))
    assert (mine / "paper.tex").read_text() == "\\documentclass{article}"


def test_write_text_atomic_local_leaves_no_temporary(tmp_path: Path):
    write_text_atomic(tmp_path / "a.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]

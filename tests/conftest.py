"""Shared fixtures: one local Ray and one local S3 server for the whole session, started only by
tests that ask for them."""

from __future__ import annotations

import os

import pytest
from buckets import new_bucket

#: The S3 environment every boto/fsspec client of this session (and the Ray workers, which
#: inherit it) reads: moto's server on localhost, fake credentials.
S3_ENV_KEYS = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
               "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 API over HTTP on localhost: moto's server mode (``moto.server.ThreadedMotoServer``),
    its address in ``AWS_ENDPOINT_URL`` and fake credentials in the environment for the whole
    session (set before the session's Ray starts, so its workers reach it too). Yields the
    endpoint URL."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in S3_ENV_KEYS}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    empty = tmp_path_factory.mktemp("aws") / "none"
    os.environ.update(AWS_ENDPOINT_URL=f"http://{host}:{port}", AWS_ACCESS_KEY_ID="cmpipe-test",
                      AWS_SECRET_ACCESS_KEY="cmpipe-test", AWS_DEFAULT_REGION="us-east-1",
                      AWS_SHARED_CREDENTIALS_FILE=str(empty), AWS_CONFIG_FILE=str(empty))
    try:
        yield os.environ["AWS_ENDPOINT_URL"]
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A new, empty bucket on :func:`s3_server`; yields its URL ``s3://NAME``."""
    return new_bucket(s3_server)


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory, s3_server):
    """A local Ray with 2 CPUs and no dashboard, shared by every test that uses it.

    ``ray.init`` costs seconds and about 1 GB, so it happens once. Its files go to a per-run
    ``RAY_TMPDIR`` (a stale cluster file of an earlier run cannot break it), after the session's
    S3 server (its workers inherit the S3 environment); usage stats and
    token auth are off (nothing written to ``~/.ray``). It is shut down at the end of the
    session by ``ray.shutdown()``, which stops only what this ``ray.init`` started.
    """
    saved = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE", "RAY_ADDRESS")}
    tmp = tmp_path_factory.mktemp("ray")
    os.environ["RAY_TMPDIR"] = str(tmp)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    ray.init(
        address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
        _temp_dir=str(tmp), log_to_driver=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

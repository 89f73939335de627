"""Shared fixtures: one local Ray for the whole session, started only by tests that ask for it."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory):
    """A local Ray with 2 CPUs and no dashboard, shared by every test that uses it.

    ``ray.init`` costs seconds and about 1 GB, so it happens once. Its files go to a per-run
    ``RAY_TMPDIR`` (a stale cluster file of an earlier run cannot break it); usage stats and
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

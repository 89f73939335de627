"""The Ray session every pipeline stage shares: connect to a cluster or start a local Ray.

Object-store credentials are never passed through Ray: every task, actor and Train worker that
reads or writes an ``s3://`` (``gs://``, ``az://``) path takes them from its own environment, as
the driver does. A local Ray's workers inherit the driver's environment (``AWS_*``,
``AWS_ENDPOINT_URL``); on a cluster each node needs them (an instance role, a Kubernetes service
account, or environment variables in the cluster's spec: ``deploy/``)."""

from __future__ import annotations

import logging
import os

#: Ray Train 2.60's placement-group cleaner asks the State API, which lives in the dashboard,
#: once a second whether the training controller is alive; on a local Ray without dashboard every
#: query fails and logs this warning (hundreds of lines over a long training run).
_STATE_API_WARNING = "Failed to query Ray Train Controller actor state"
_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


class _DropStateApiWarning(logging.Filter):
    """Drops only :data:`_STATE_API_WARNING`; the cleaner's other messages pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_STATE_API_WARNING)


def quiet_local_workers() -> None:
    """``worker_process_setup_hook`` of the local Ray :func:`start_ray` starts (no dashboard):
    silences the State-API warning above in every worker process. A cluster started with
    ``ray start`` has a dashboard, where the query works and the warning is real.

    It also points ``RAY_ADDRESS`` at the worker's own Ray: the cleaner resolves the State API
    from ``auto``, which fails with a traceback when two local Rays run on one machine (two
    pipelines, or a pipeline beside the tests)."""
    import ray

    logging.getLogger(_CLEANER_LOGGER).addFilter(_DropStateApiWarning())
    if ray.is_initialized():
        os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def start_ray(address: str | None) -> bool:
    """Connect to (or start) Ray unless it is initialised; True if this call started it.

    ``address`` (``auto``, ``host:6379``, ``ray://host:10001``), else ``$RAY_ADDRESS``, else a
    local instance without dashboard (its workers run :func:`quiet_local_workers`). An
    initialised Ray is used as is (and left running).
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address)
    else:
        ray.init(address="local", include_dashboard=False,
                 runtime_env={"worker_process_setup_hook": "cmpipe.pipeline.session.quiet_local_workers"})
    return True

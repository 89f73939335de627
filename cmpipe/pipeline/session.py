"""The Ray session every pipeline stage shares: connect to a cluster or start a local Ray.

Object-store credentials are never passed through Ray: every task, actor and Train worker that
reads or writes an ``s3://`` (``gs://``, ``az://``) path takes them from its own environment, as
the driver does. A local Ray's workers inherit the driver's environment (``AWS_*``,
``AWS_ENDPOINT_URL``); on a cluster each node needs them (an instance role, a Kubernetes service
account, or environment variables in the cluster's spec: ``deploy/``).

What Ray prints on the driver follows cmpipe's verbosity (:mod:`cmpipe.progress`): below ``-v``,
:func:`start_ray` starts or joins Ray with ``log_to_driver=False`` (workers' output stays in the
files of :func:`ray_logs_dir`) and :func:`quiet_driver` quietens Ray's and Ray Data's driver-side
logging and progress; ``-v`` leaves Ray as it configures itself."""

from __future__ import annotations

import logging
import os

#: Ray Train 2.60's placement-group cleaner asks the State API, which lives in the dashboard,
#: once a second whether the training controller is alive; on a local Ray without dashboard every
#: query fails and logs this warning (hundreds of lines over a long training run).
_STATE_API_WARNING = "Failed to query Ray Train Controller actor state"
_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"
#: The log directory of the Ray session :func:`start_ray` last started (None: none yet).
_LOGS_DIR: str | None = None


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

    Below :data:`cmpipe.progress.VERBOSE` (``-v``) the driver is quiet (:func:`quiet_driver`):
    workers' output is not forwarded (``log_to_driver=False``: it stays in the log files of
    :func:`ray_logs_dir`), Ray's own driver log shows warnings and errors only, and Ray Data
    prints no progress; ``-v`` leaves Ray as Ray configures itself.
    """
    import ray

    from cmpipe.progress import VERBOSE, verbosity

    loud = verbosity() >= VERBOSE
    if ray.is_initialized():
        if not loud:
            quiet_driver()
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict = {} if loud else {"log_to_driver": False, "logging_level": _ray_level()}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(address="local", include_dashboard=False,
                 runtime_env={"worker_process_setup_hook": "cmpipe.pipeline.session.quiet_local_workers"}, **kwargs)
    if not loud:
        quiet_driver()
    global _LOGS_DIR
    _LOGS_DIR = _session_logs_dir()
    return True


def _session_logs_dir() -> str | None:
    """``<Ray session dir>/logs`` of this driver's node, or None where Ray does not say (a
    ``ray://`` client)."""
    import sys

    if "ray" not in sys.modules:  # no Ray here: nothing to import for the answer
        return None
    try:
        import ray

        node = ray._private.worker._global_node  # no public API names the session directory
        return None if node is None else os.path.join(node.get_session_dir_path(), "logs")
    except Exception:  # noqa: BLE001 - only a hint for the summary
        return None


def ray_logs_dir() -> str | None:
    """Where the workers' logs of this process's Ray session are (on this machine: ``worker-*.out``
    and ``.err`` of tasks, actors and Ray Train workers, ``ray-data/``, Ray Train's controller);
    on a cluster each node keeps its own workers' logs under its session directory. None if no
    Ray ran in this process."""
    return _LOGS_DIR if _LOGS_DIR is not None else _session_logs_dir()


def _ray_level() -> int:
    """The level of Ray's driver logger below ``-v``: WARNING, ERROR under ``-q``."""
    from cmpipe.progress import QUIET, verbosity

    return logging.ERROR if verbosity() <= QUIET else logging.WARNING


def quiet_driver() -> None:
    """Quiet Ray's driver side (idempotent): the ``ray`` logger at WARNING (ERROR under ``-q``),
    Ray Data's progress bars, progress dumps and execution-start lines off, and Ray Data's console
    log at ERROR (its warnings and every INFO line stay in ``<session>/logs/ray-data/``)."""
    logging.getLogger("ray").setLevel(_ray_level())
    quiet_ray_data()


def quiet_ray_data() -> None:
    """Ray Data without progress on the driver's terminal: ``DataContext.enable_progress_bars``,
    ``print_on_execution_start`` off; the console handler of the ``ray.data`` logger at ERROR
    (the file handlers keep everything). Set on the driver, where Ray Data's executor runs, before
    a dataset is made (it copies the context): :func:`start_ray` does it first."""
    import warnings

    import ray.data

    with warnings.catch_warnings():  # Ray 2.60 warns about its own defaults while making the context
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray\.data\.context")
        ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    for handler in logging.getLogger("ray.data").handlers:
        if not isinstance(handler, logging.FileHandler) and type(handler).__name__ != "SessionFileHandler":
            handler.setLevel(logging.ERROR)

"""Optional experiment tracking of a training run (``train.tracking``): TensorBoard or MLflow.

``metrics.csv`` and ``loss.png`` are always written; a tracker is one more sink of the same rows
(:class:`cmpipe.model.training.MetricsLog` hands it each row as it writes it), on rank 0 only, as
Ray Train's experiment-tracking guide does it (Ray Train 2.60 (V2) has no tracking callback: the
training function calls the tracking library on rank 0). So a serial run and a Ray run track the
same rows.

``tensorboard``
    tensorboardX event files in ``RUN/tensorboard/`` (``tensorboard --logdir RUN/tensorboard``):
    scalars ``train/loss``, ``train/loss_per_dim``, ``train/lr``, ``train/grad_norm``,
    ``train/images_per_s`` per step, ``val/loss`` where measured, the hyper-parameters as text at
    step 0. A resumed run purges the events past its checkpoint's step (``purge_step``), as
    ``metrics.csv`` drops its rows. On an object store the events are written to a local
    temporary directory and copied to ``RUN/tensorboard/`` when the run ends.
``mlflow``
    One MLflow run in ``$MLFLOW_TRACKING_URI`` (required), experiment
    ``$MLFLOW_EXPERIMENT_NAME`` (default ``cmpipe``): the hyper-parameters as params (flattened,
    ``model.nf``), the same metrics per step, sent in batches (``MlflowClient.log_batch``) every
    :data:`MLFLOW_BATCH_S` seconds and at the end. Its id is kept in ``RUN/mlflow_run_id``, so that a resumed
    training continues the same MLflow run. Needs the ``mlflow`` package (not a dependency).

A tracker that fails while training (a tracking server gone) is dropped with one warning; the
training goes on. :func:`check_tracking` finds a missing package or setting before any work.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from cmpipe.store.location import as_path, is_remote, write_bytes_atomic, write_text_atomic

__all__ = ["MLFLOW_RUN_ID", "TENSORBOARD_DIR", "TRACKERS", "TrackingError", "check_tracking", "open_tracker"]

logger = logging.getLogger(__name__)

#: The values of ``train.tracking``.
TRACKERS = ("none", "tensorboard", "mlflow")
#: TensorBoard's event files, under the run directory.
TENSORBOARD_DIR = "tensorboard"
#: The MLflow run id of a run directory (a resumed training continues that MLflow run).
MLFLOW_RUN_ID = "mlflow_run_id"
#: Seconds between two batches of metrics sent to MLflow (and at the end).
MLFLOW_BATCH_S = 10.0
#: The ``metrics.csv`` columns tracked, and their names in the trackers.
_SCALARS = {"loss": "train/loss", "loss_per_dim": "train/loss_per_dim", "lr": "train/lr",
            "grad_norm": "train/grad_norm", "images_per_s": "train/images_per_s", "val_loss": "val/loss"}


class TrackingError(ValueError):
    """``train.tracking`` asks for a tracker that cannot run here (package or setting missing)."""


def check_tracking(kind: str) -> None:
    """Raise :class:`TrackingError` if tracker ``kind`` cannot run in this environment: call it
    where the run starts (the driver), before any work.

    ``tensorboard`` needs tensorboardX; ``mlflow`` the ``mlflow`` package and
    ``$MLFLOW_TRACKING_URI``.
    """
    import importlib.util

    if kind not in TRACKERS:
        raise TrackingError(f"train.tracking must be one of {', '.join(TRACKERS)}; got {kind!r}")
    if kind == "tensorboard" and importlib.util.find_spec("tensorboardX") is None:
        raise TrackingError("train.tracking=tensorboard needs the tensorboardX package (pip install tensorboardX)")
    if kind == "mlflow":
        if importlib.util.find_spec("mlflow") is None:
            raise TrackingError("train.tracking=mlflow needs the mlflow package (pip install mlflow)")
        if not os.environ.get("MLFLOW_TRACKING_URI"):
            raise TrackingError("train.tracking=mlflow needs MLFLOW_TRACKING_URI (e.g. http://mlflow:5000, "
                                "or sqlite:///mlflow.db) in the environment of the driver and the workers")


def open_tracker(kind: str, run_dir: str | os.PathLike[str], start: int,
                 hyperparameters: Mapping[str, Any]) -> Any | None:
    """The tracker of ``kind`` for a run resuming at step ``start`` (None for ``none``): a
    callable ``tracker(row)`` taking each ``metrics.csv`` row, with ``close()``."""
    check_tracking(kind)
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir, start, hyperparameters)
    if kind == "mlflow":
        return MlflowTracker(run_dir, start, hyperparameters)
    return None


def _scalars(row: Mapping[str, Any]) -> dict[str, float]:
    """The tracked values of a row (empty cells, such as ``val_loss`` between validations, left out)."""
    return {name: float(row[key]) for key, name in _SCALARS.items() if row.get(key, "") not in ("", None)}


class TensorBoardTracker:
    """Event files in ``RUN/tensorboard/`` (tensorboardX); see the module docstring."""

    def __init__(self, run_dir: str | os.PathLike[str], start: int, hyperparameters: Mapping[str, Any]) -> None:
        from tensorboardX import SummaryWriter

        self.target = as_path(run_dir) / TENSORBOARD_DIR
        self._local: str | None = None
        if is_remote(self.target):
            self._local = tempfile.mkdtemp(prefix="cmpipe-tensorboard-")
            logdir = self._local
        else:
            self.target.mkdir(parents=True, exist_ok=True)
            logdir = str(self.target)
        # one file per (re)start: tensorboardX names files by the second, which a resume could share
        self.writer = SummaryWriter(logdir=logdir, purge_step=int(start) if start > 0 else None,
                                    filename_suffix=f".step{int(start)}.pid{os.getpid()}")
        if start == 0:
            text = json.dumps(hyperparameters, indent=1, default=str)
            self.writer.add_text("hyperparameters", "    " + text.replace("\n", "\n    "), 0)

    def __call__(self, row: Mapping[str, Any]) -> None:
        step = int(row["step"])
        for name, value in _scalars(row).items():
            self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.writer.close()
        if self._local is not None:  # an object store: the event files, each one object
            for name in sorted(os.listdir(self._local)):
                with open(os.path.join(self._local, name), "rb") as f:
                    write_bytes_atomic(self.target / name, f.read())
            shutil.rmtree(self._local, ignore_errors=True)
            self._local = None


def _flat(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    """``{"model": {"nf": 8}}`` -> ``{"model.nf": "8"}`` (values as text, at most 250 characters)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = str(value)[:250]
    return out


class MlflowTracker:
    """One MLflow run per run directory; see the module docstring."""

    def __init__(self, run_dir: str | os.PathLike[str], start: int, hyperparameters: Mapping[str, Any]) -> None:
        import mlflow

        self._mlflow = mlflow
        run_dir = as_path(run_dir)
        id_path = run_dir / MLFLOW_RUN_ID
        run_id = id_path.read_text().strip() if start > 0 and id_path.is_file() else None
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "cmpipe"))
        self.run = mlflow.start_run(run_id=run_id or None, run_name=None if run_id else run_dir.name)
        self.run_id = self.run.info.run_id
        if not run_id:
            mlflow.log_params(_flat("", dict(hyperparameters), {}))
            write_text_atomic(id_path, self.run_id + "\n")
        self._client = mlflow.tracking.MlflowClient()
        self._pending: list[Any] = []
        self._sent = time.monotonic()

    def __call__(self, row: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        now_ms, step = int(time.time() * 1000), int(row["step"])
        self._pending += [Metric(name, value, now_ms, step) for name, value in _scalars(row).items()]
        if time.monotonic() - self._sent >= MLFLOW_BATCH_S:
            self.flush()

    def flush(self) -> None:
        """Send the metrics held back, in batches of at most 1000 (MLflow's limit)."""
        for k in range(0, len(self._pending), 1000):
            self._client.log_batch(self.run_id, metrics=self._pending[k:k + 1000])
        self._pending = []
        self._sent = time.monotonic()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._mlflow.end_run()


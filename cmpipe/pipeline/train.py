"""Train the score model with Ray Train: data-parallel (DDP) workers running :mod:`cmpipe.model.training`'s loop.

Every worker runs :func:`_train_worker`: Ray's worker context (rank, world size, device,
``prepare_model``, an all-reduce, ``ray.train.report``) as a
:class:`~cmpipe.model.training.WorkerContext`, then the one training loop
(:func:`cmpipe.stages.train.train_process`: :func:`~cmpipe.model.training.prepare_run`, then
:func:`~cmpipe.model.training.train_loop`), as a single process runs it:

* each step's global batch (``train.batch_size`` images, the batch a single process would use at
  that step) is cut into ``world_size`` equal shards, shard ``rank`` for worker ``rank``
  (a batch size not divisible by the number of workers is refused);
* the network is built on ``ray.train.torch.get_device()`` from ``torch.manual_seed(train.seed)``
  (the same on every rank) and wrapped by ``ray.train.torch.prepare_model`` (DDP: gradients are
  averaged over the ranks, so a step equals one step on the global batch); Adam and the EMA are
  made over the wrapped parameters;
* the loss's noise and diffusion times come from ``torch.manual_seed(step_noise_seed(seed, step,
  rank))`` (:func:`~cmpipe.model.training.step_noise_seed`) before each step, a function of the
  step and the rank only: a resumed run draws what the uninterrupted one would (torch's RNG state
  in the checkpoint is rank 0's, and unused);
* the driver first runs :func:`~cmpipe.model.training.validate_run` (store, run directory,
  checkpoints: user errors are found in about a second, before Ray starts) and chooses the
  checkpoint to resume from, the latest readable one of ``run_dir`` (an unreadable newer one is
  skipped with a warning); every rank resumes from that one; rank 0 alone writes the
  checkpoints (:mod:`cmpipe.model.training`'s format), ``metrics.csv`` (the loss
  averaged over the ranks: the global batch's loss) and the validation loss (EMA weights);
* at every checkpoint step each rank calls ``ray.train.report``; rank 0's metrics name the
  checkpoint it wrote (``checkpoint``: its path or URL), and it attaches a *pointer* checkpoint
  (Ray's own recipe for checkpoints stored elsewhere): a directory holding only
  :data:`POINTER_NAME`, ``{"uri": <the cmpipe checkpoint>, "step": N}``, a few bytes. So
  ``Result.metrics`` and ``Result.checkpoint`` are set, and Ray Train's ``num_to_keep`` prunes
  only its pointers.

One copy of each checkpoint: cmpipe's ``<run_dir>/checkpoints/step_XXXXXXXX.pt``
(:mod:`cmpipe.model.training`'s format, loaded with ``torch.load(weights_only=True)``), the one a
rerun resumes from and inference loads; Ray Train never copies nor deletes it. Resuming rests on
cmpipe's rules (the latest readable checkpoint, :func:`cmpipe.model.training.resume_checkpoint`),
the same for a serial run and a Ray run, on disk or in a bucket. Ray Train's run state and the
pointers go to ``<run_dir>/ray_results/<name>``.

The run directory and the store may be object-store URLs (:mod:`cmpipe.store.location`); every
worker reaches them with the credentials of its environment. Ray Train's storage is then given as
``storage_filesystem``/``storage_path`` from :func:`cmpipe.store.location.arrow_filesystem`
(the same fsspec filesystem as every other cmpipe read and write: pyarrow's own S3 filesystem
ignores ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmpipe.pipeline.session import start_ray

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config

__all__ = ["TrainError", "train_with_ray"]

logger = logging.getLogger(__name__)

RAY_RESULTS = "ray_results"
#: The one file of a Ray Train pointer checkpoint: ``{"uri": cmpipe checkpoint path or URL, "step": N}``.
POINTER_NAME = "cmpipe_checkpoint.json"


class TrainError(ValueError):
    """A training run that cannot start as asked (no GPU in the cluster, an uneven batch split)."""


def _check_split(batch_size: int, num_workers: int) -> None:
    if num_workers < 1:
        raise TrainError(f"num_workers must be >= 1, got {num_workers}")
    if batch_size % num_workers:
        raise TrainError(
            f"train.batch_size={batch_size} (the global batch) cannot be split evenly over {num_workers} workers"
        )


def _check_gpus(num_workers: int) -> None:
    """A :class:`TrainError` unless the Ray cluster has a GPU for each of ``num_workers``."""
    import ray

    gpus = ray.cluster_resources().get("GPU", 0.0)
    if gpus < num_workers:
        raise TrainError(f"train.use_gpu is true but the Ray cluster has {gpus:g} GPUs for {num_workers} workers: "
                         "set train.use_gpu=false (CPU training) or use a cluster with GPUs")


def _mean_over_ranks(value: float, device: Any, world_size: int) -> float:
    """``value``'s mean over the ranks (a float64 all-reduce over the process group)."""
    import torch

    total = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total)
    return float(total) / world_size


def _report(metrics: dict[str, Any], path: Any | None) -> None:
    """``ray.train.report(metrics)``; with the cmpipe checkpoint ``path`` (a path or URL) named in
    ``metrics["checkpoint"]`` and a pointer checkpoint to it (:data:`POINTER_NAME`), if given.
    The checkpoint itself is never copied: cmpipe's file is the one copy."""
    import ray.train

    if path is None:
        ray.train.report(metrics)
        return
    tmp = Path(tempfile.mkdtemp(prefix="cmpipe-pointer-"))
    try:
        (tmp / POINTER_NAME).write_text(json.dumps({"uri": str(path), "step": metrics.get("step")}) + "\n")
        ray.train.report({**metrics, "checkpoint": str(path)}, checkpoint=ray.train.Checkpoint.from_directory(str(tmp)),
                         checkpoint_dir_name=path.stem)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def last_metrics_row(path: Any) -> dict[str, str] | None:
    """The last complete row of a ``metrics.csv`` (a path or URL) as ``{column: text}``, from its
    last few KiB only; None if it has no row yet (or does not exist)."""
    from cmpipe.model.training import METRICS_COLUMNS
    from cmpipe.store.tables import refreshed

    path = refreshed(path)
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except (FileNotFoundError, OSError):
        return None
    lines = tail.split("\n")[:-1]  # what follows the last newline is not a whole row yet
    for line in reversed(lines):
        cells = next(csv.reader([line.strip()]), [])
        if len(cells) == len(METRICS_COLUMNS) and cells[0].isdigit():
            return dict(zip(METRICS_COLUMNS, cells))
    return None


class _TrainProgress:
    """The training's progress on the driver while ``fit()`` runs: a thread reads the last row of
    rank 0's ``metrics.csv`` every ``poll_s`` seconds (rank 0 writes a row per step; on an object
    store the object is rewritten every ``METRICS_FLUSH_S`` seconds) and moves a
    :class:`cmpipe.progress.Progress` of steps to it, with the loss per dimension. Nothing to do
    with the training itself: a row it cannot read is skipped."""

    def __init__(self, run_dir: Any, start: int, max_steps: int, desc: str) -> None:
        from cmpipe.model.training import METRICS_NAME
        from cmpipe.progress import Progress
        from cmpipe.store.location import is_remote

        self.path = run_dir / METRICS_NAME
        self.poll_s = 10.0 if is_remote(run_dir) else 1.0
        self.bar = Progress(max_steps, desc, "steps", initial=start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="cmpipe-train-progress", daemon=True)

    def _poll(self) -> None:
        row = last_metrics_row(self.path)
        if row is not None:
            try:
                self.bar.moveto(int(row["step"]), loss=float(row["loss_per_dim"]))
            except ValueError:
                pass

    def _follow(self) -> None:
        while not self._stop.wait(self.poll_s):
            self._poll()

    def __enter__(self) -> _TrainProgress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if exc[0] is None:
            self._poll()
        self.bar.close()


def _absolute(path: str | os.PathLike[str]) -> Any:
    """An absolute local path (every worker finds it), or the object-store URL's path as is."""
    from cmpipe.store.location import as_path, is_remote

    path = as_path(path)
    return path if is_remote(path) else Path(path).resolve()


#: Environment variables a Ray Train worker gets from the driver when set there (where MLflow
#: runs, for ``train.tracking: mlflow``). Credentials are never passed through Ray (as for object
#: stores: :mod:`cmpipe.pipeline.session`): a tracking server's token comes from the nodes' own environment.
FORWARDED_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME")


def _worker_env(cpus_per_worker: int) -> dict[str, str]:
    """The Train workers' extra environment: ``OMP_NUM_THREADS``, and :data:`FORWARDED_ENV` as set here."""
    env = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
    return {**env, "OMP_NUM_THREADS": str(max(1, cpus_per_worker))}


def _train_worker(config: dict[str, Any]) -> None:
    """The loop of one Ray Train worker (see the module docstring)."""
    threads = max(1, int(config["cpus_per_worker"]))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    import ray.train
    import ray.train.torch

    from cmpipe.model.training import WorkerContext
    from cmpipe.stages.train import train_process

    cfg: Config = config["cfg"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    _check_split(cfg.train.batch_size, world)
    device = ray.train.torch.get_device()
    worker = WorkerContext(
        rank=rank, world_size=world, device=device, wrap_model=ray.train.torch.prepare_model,
        mean_over_ranks=functools.partial(_mean_over_ranks, device=device, world_size=world), report=_report,
    )
    # The driver validated the run and chose the checkpoint (None: fresh); every rank resumes from it.
    train_process(cfg, config["store_path"], config["run_dir"], max_steps=int(config["max_steps"]), worker=worker,
                  resume=config["resume"])


def train_with_ray(
    cfg: Config,
    store_path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    *,
    num_workers: int,
    use_gpu: bool | None = None,
    max_steps: int | None = None,
    address: str | None = None,
    cpus_per_worker: int = 1,
    name: str = "train",
    progress_label: str = "train",
) -> dict[str, Any]:
    """Train the score model on ``num_workers`` Ray Train workers (DDP), resuming from ``run_dir``.

    Parameters
    ----------
    cfg : Config
        ``model`` and ``train`` sections (``train.batch_size`` is the global batch).
    store_path : str, path-like or URL
        A complete, normalised image store every worker can read.
    run_dir : str, path-like or URL
        Where ``metrics.csv``, ``config.resolved.yaml``, ``checkpoints/`` and ``ray_results/`` go
        (a path or object-store URL every worker can write; rank 0 writes).
    num_workers : int
        Training processes, >= 1; must divide ``train.batch_size``.
    use_gpu : bool, optional
        One GPU per worker (default ``train.use_gpu``). Checked against the cluster first.
    max_steps : int, optional
        Total steps to reach (default ``train.max_steps``).
    address : str, optional
        Ray cluster address (default ``$RAY_ADDRESS``, else a local Ray); an initialised Ray is used as is.
    cpus_per_worker : int
        CPUs reserved per worker, also its torch / OpenMP threads.
    name : str
        ``RunConfig(name)``; Ray's files go to ``<run_dir>/ray_results/<name>``.
    progress_label : str
        The name of the training's progress display on the driver (:class:`cmpipe.progress.Progress`
        of steps, with the loss per dimension, from rank 0's ``metrics.csv``).

    Returns
    -------
    dict
        ``step``, ``start_step``, ``s_per_step`` (mean wall seconds per step inside the workers;
        None when the latest checkpoint already reached ``max_steps``: then nothing starts),
        ``wall_s`` (the whole ``fit()``), ``metrics`` (the last reported, rank 0's; its
        ``checkpoint`` names the checkpoint written then), ``checkpoint`` (the latest cmpipe
        checkpoint, the one copy: a path or URL), ``ray_checkpoint`` (the path of Ray's pointer
        to it, on Ray's storage filesystem, or None).

    Raises
    ------
    TrainError
        If ``use_gpu`` and the cluster has fewer GPUs than workers, or the batch does not split.
    StoreError, OutputError, CheckpointError
        From :func:`~cmpipe.model.training.validate_run` (:func:`cmpipe.stages.train.validate`),
        before Ray is started.
    """
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from cmpipe.model.tracking import check_tracking
    from cmpipe.model.training import latest_checkpoint
    from cmpipe.stages.train import validate
    from cmpipe.store.location import arrow_filesystem, is_remote

    tcfg = cfg.train
    use_gpu = tcfg.use_gpu if use_gpu is None else bool(use_gpu)
    _check_split(tcfg.batch_size, num_workers)
    max_steps = tcfg.max_steps if max_steps is None else int(max_steps)
    run_dir, store_path = _absolute(run_dir), _absolute(store_path)
    # What a worker would find after Ray's ~20 s start, found here in about a second (user errors
    # become one line); the checkpoint chosen here is the one every rank resumes from.
    check = validate(cfg, store_path, run_dir)
    check_tracking(tcfg.tracking)  # rank 0 opens the tracker: its package and settings checked here
    resume = check.latest
    if check.state is not None and check.state.step >= max_steps:  # done before: no Ray, no trainer
        logger.info("%s: the latest checkpoint is at step %d >= %d; nothing to train", run_dir, check.state.step,
                    max_steps)
        return {"step": check.state.step, "start_step": check.state.step, "s_per_step": None, "wall_s": 0.0,
                "metrics": {}, "checkpoint": latest_checkpoint(run_dir), "ray_checkpoint": None}
    started = start_ray(address)
    try:
        if use_gpu:
            _check_gpus(num_workers)
        resources = {"CPU": cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
        # Ray Train's run state, through cmpipe's fsspec filesystem on an object store.
        storage_fs, storage_path = arrow_filesystem(run_dir / RAY_RESULTS) if is_remote(run_dir) else (
            None, str(run_dir / RAY_RESULTS))
        trainer = TorchTrainer(
            _train_worker,
            train_loop_config={"cfg": cfg, "store_path": str(store_path), "run_dir": str(run_dir),
                               "resume": None if resume is None else str(resume),
                               "max_steps": max_steps, "cpus_per_worker": cpus_per_worker},
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
            run_config=RunConfig(
                name=name, storage_path=storage_path, storage_filesystem=storage_fs,
                checkpoint_config=CheckpointConfig(num_to_keep=tcfg.keep_checkpoints),  # pointers only
                worker_runtime_env={"env_vars": _worker_env(cpus_per_worker)},
            ),
        )
        t0 = time.perf_counter()
        with _TrainProgress(run_dir, 0 if check.state is None else check.state.step, max_steps, progress_label):
            result = trainer.fit()
        wall = time.perf_counter() - t0
    finally:
        if started:
            ray.shutdown()
    metrics = dict(result.metrics or {})
    return {
        "step": metrics.get("step"), "start_step": metrics.get("start_step"), "s_per_step": metrics.get("s_per_step"),
        "wall_s": wall, "metrics": metrics, "checkpoint": latest_checkpoint(run_dir),
        "ray_checkpoint": result.checkpoint.path if result.checkpoint is not None else None,
    }

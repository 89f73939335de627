"""Posterior inference over the test split with Ray Data (``cmpipe infer``).

The driver (:func:`infer_with_ray`) does what the Ray-free stage :mod:`cmpipe.stages.infer` does,
with the sampling on a Ray Data actor pool: :func:`cmpipe.stages.infer.prepare` (inputs checked,
``RESULTS/posterior.zarr`` opened or created, table parts of images a killed run left unfinished
removed, the images not yet done listed), then ``from_items`` of small image records and
``map_batches`` with :class:`InferenceActor` on an actor pool
(``ActorPoolStrategy(size=infer.actors)``, ``infer.cpus_per_actor`` CPUs and
``infer.gpus_per_actor`` GPUs each), then :func:`cmpipe.stages.infer.finish` (every image done,
the trivial baselines, ``infer_summary.json``). Each actor loads the model once
(:func:`cmpipe.stages.infer.load_worker`, through an injectable loader, default
:func:`cmpipe.model.inference.load_posterior_sampler`) and runs
:func:`cmpipe.stages.infer.infer_batch` on each batch of ``infer.images_per_batch`` images (image
``i`` from the seed ``[infer.seed, i]``, so the result does not depend on batching or the pool).
Actors return small records only. A rerun skips the images done.

The store, the checkpoint and the results may be object-store URLs (:mod:`cmpipe.store.location`):
the actors get them as strings and reach them with the credentials of their environment; each
batch's table parts are single-PUT objects, written before its images' ``done`` flags, and the
driver lists them afresh on a rerun (see :mod:`cmpipe.stages.infer`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from cmpipe.config import Config
from cmpipe.stages.infer import RESULTS_NAMES, InferError, InferPlan

logger = logging.getLogger(__name__)

__all__ = ["RESULTS_NAMES", "InferError", "InferenceActor", "infer_with_ray"]


class InferenceActor:
    """A Ray Data actor: one model, many batches of test images
    (:func:`cmpipe.stages.infer.infer_batch` on each).

    Parameters
    ----------
    cfg : Config
    store_path, results, checkpoint : str
    loader : callable, optional
        ``loader(checkpoint, infer_cfg, device, store_fingerprint) -> PosteriorSampler``;
        default :func:`cmpipe.model.inference.load_posterior_sampler`.
    """

    def __init__(self, cfg: Config, store_path: str, results: str, checkpoint: str,
                 loader: Callable[..., Any] | None = None) -> None:
        os.environ["OMP_NUM_THREADS"] = str(cfg.infer.threads_per_actor)
        import torch

        torch.set_num_threads(cfg.infer.threads_per_actor)
        from cmpipe.stages.infer import load_worker, worker_device

        self.worker = load_worker(cfg, store_path, results, checkpoint, device=worker_device(cfg.infer),
                                  loader=loader)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cmpipe.stages.infer import infer_batch

        return infer_batch(self.worker, batch)


def _check_gpus(cfg: Config) -> None:
    import ray

    if cfg.infer.gpus_per_actor > 0:
        gpus = ray.cluster_resources().get("GPU", 0.0)
        if gpus < cfg.infer.gpus_per_actor:
            raise InferError(
                f"infer.gpus_per_actor is {cfg.infer.gpus_per_actor:g} but the Ray cluster has {gpus:g} GPUs: "
                "set infer.gpus_per_actor=0 (CPU sampling) or use a cluster with GPUs"
            )


def _sample_with_ray(plan: InferPlan, address: str | None, loader: Callable[..., Any] | None) -> list[float]:
    """Run :class:`InferenceActor` over ``plan.todo`` on an actor pool; the sampling time of each image [s].
    Progress of images and samples on the driver (:class:`cmpipe.progress.Progress`)."""
    import ray

    from cmpipe.pipeline.session import start_ray
    from cmpipe.progress import Progress

    cfg, icfg, todo = plan.cfg, plan.cfg.infer, plan.todo
    seconds: list[float] = []
    started = start_ray(address)
    try:
        _check_gpus(cfg)
        ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo), 4 * icfg.actors)))
        out = ds.map_batches(
            InferenceActor,
            fn_constructor_kwargs={"cfg": cfg, "store_path": plan.store_path, "results": str(plan.results),
                                   "checkpoint": plan.checkpoint, "loader": loader},
            batch_size=icfg.images_per_batch, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=icfg.actors),
            num_cpus=icfg.cpus_per_actor, num_gpus=icfg.gpus_per_actor,
        )
        with Progress(len(todo), "infer", "images") as bar:
            for row in out.iter_rows():  # one row per image, as its actor finishes it
                seconds.append(float(row["seconds"]))
                bar.update(1, samples=len(seconds) * icfg.n_samples)
    finally:
        if started:
            ray.shutdown()
    return seconds


def infer_with_ray(
    cfg: Config,
    store_path: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str],
    results: str | os.PathLike[str],
    *,
    address: str | None = None,
    loader: Callable[..., Any] | None = None,
    baselines: Sequence[str] = ("mass_oracle", "pixel_regression"),
) -> dict[str, Any]:
    """Sample and evaluate every selected test image not yet done, with Ray Data; then the
    trivial ``baselines`` on the same images (:mod:`cmpipe.evaluation.baselines`, ``results/baselines/``).

    Parameters
    ----------
    cfg : Config
        ``infer`` and ``evaluate`` sections (and ``cosmology`` for R200m and masses).
    store_path : str, path-like or URL
        A complete, normalised image store every actor can read.
    checkpoint : str, path-like or URL
        A checkpoint file, or a run directory (its latest checkpoint), trained on this store.
    results : str, path-like or URL
        Output directory: ``posterior.zarr``, ``tables/``, ``config.resolved.yaml``,
        ``infer_summary.json``. New, empty or a results directory of cmpipe (it is marked as
        one); any other directory is refused before any work (:class:`cmpipe.store.outputs.OutputError`).
    address : str, optional
        Ray address (default ``$RAY_ADDRESS``, else a local Ray); an initialised Ray is used as is.
    loader : callable, optional
        The actors' model loader (tests pass a tiny model's).
    baselines : sequence of str
        Baselines to run after the model (:data:`cmpipe.evaluation.baselines.BASELINES`; empty: none).

    Returns
    -------
    dict
        ``images`` (selected), ``done_before``, ``sampled`` (this run), ``wall_s``,
        ``s_per_image`` (actor sampling time, mean), ``removed_parts``, ``checkpoint``,
        ``checkpoint_step``, ``results`` and ``baselines`` (name -> summary, when run).

    Raises
    ------
    StoreError, CheckpointError, OutputError, InferError, PosteriorStoreError
        Found on the driver before anything is written and before Ray starts (a second or
        two): the store is missing, incomplete, malformed (:func:`cmpipe.store.validate_store`)
        or not normalised; the checkpoint is missing, unloadable or trained on another store
        (:func:`cmpipe.model.training.load_for_inference` builds its model on the CPU);
        ``results`` cannot be written or is not cmpipe's; no test image is selected; ``results``
        holds a run of other settings.

    Notes
    -----
    Resuming, table parts of unfinished images (a killed run) and corrupt parts (truncated,
    unreadable) are removed with their batch-mates, and those images sampled again
    (:func:`cmpipe.store.tables.remove_parts_not_done`): every image's rows exist exactly once.
    """
    from cmpipe.stages.infer import finish, prepare

    plan = prepare(cfg, store_path, checkpoint, results)
    t0 = time.perf_counter()
    seconds = _sample_with_ray(plan, address, loader) if plan.todo else []
    return finish(plan, seconds, time.perf_counter() - t0, baselines)

"""Every stage in one call on one Ray session: ``cmpipe demo`` and ``cmpipe pipeline``.

Stages, in order (:data:`STAGES`), each resumable and each writing under ``OUT``:

==========  =======================================================  =============================
stage       what                                                     output
==========  =======================================================  =============================
catalog     the halo catalog of the mock source (Tinker08)           ``catalog.parquet``,
                                                                     ``mass_function.png``
generate    sightline plan and image store, one Ray task per chunk   ``images.zarr``, ``plan.parquet``
train       the score model with Ray Train (DDP); with               ``run/`` (checkpoints,
            ``train.unet_baseline_steps``, then the U-Net baseline   ``metrics.csv``, ``loss.png``),
                                                                     ``run_unet/``
infer       posterior samples of the test split, Ray Data actors;    ``results/`` (``posterior.zarr``,
            the trivial baselines and the U-Net on the same images   ``tables/``, ``baselines/``)
report      the paper's figures, Table 1, masses, calibration        ``results/report/``
==========  =======================================================  =============================

A rerun continues where a previous one stopped: the store resumes its missing chunks, training
its latest checkpoint, inference the images not done; the catalog and report are rewritten.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cmpipe.config import Config
from cmpipe.stages.paths import PIPELINE_NAMES, pipeline_paths
from cmpipe.store.location import AnyPath

logger = logging.getLogger(__name__)

#: The stages of :func:`run_pipeline`, in order.
STAGES = ("catalog", "generate", "train", "infer", "report")


class PipelineError(ValueError):
    """A stage failed in a way the user must fix (failed halos, unknown stage)."""


def unet_baseline_config(cfg: Config) -> Config:
    """The U-Net regression baseline's configuration: ``model.kind: unet`` and
    ``train.max_steps = train.unet_baseline_steps``, everything else as ``cfg`` (same store,
    network widths, batches, seeds, test images and evaluation)."""
    from dataclasses import replace

    return replace(cfg, model=replace(cfg.model, kind="unet"),
                   train=replace(cfg.train, max_steps=cfg.train.unet_baseline_steps))


def _stage_catalog(cfg: Config, paths: dict[str, AnyPath]) -> str:
    from cmpipe.stages import catalog

    if cfg.source.kind != "mock":
        return f"skipped (source.kind={cfg.source.kind}: no catalog)"
    table = catalog.run(cfg, paths, dpi=120).table
    return f"{table.num_rows} halos -> {paths['catalog']}"


def _stage_generate(cfg: Config, paths: dict[str, AnyPath], address: str | None) -> str:
    from cmpipe.pipeline.generate import generate_with_ray

    summary = generate_with_ray(cfg, paths["store"], address=address, progress=True)
    if summary["failures"] or summary.get("missing_chunks"):
        raise PipelineError(
            f"{paths['store']}: {summary['failed_images']} images failed, {len(summary.get('missing_chunks') or [])} "
            "chunks missing; see the store's failures and rerun (`cmpipe generate`) before training"
        )
    return (f"{summary['images']} images of {summary['halos']} halos ({summary['chunks_written']} chunks written, "
            f"{summary['images_per_s']:.2f} images/s) -> {paths['store']}")


def _stage_train(cfg: Config, paths: dict[str, AnyPath], address: str | None, workers: int,
                 cpus_per_worker: int | None) -> str:
    import ray

    from cmpipe.pipeline.train import train_with_ray
    from cmpipe.stages.train import plot_loss

    if cpus_per_worker is None:  # one machine: the workers share its CPUs; a cluster: one each
        local = len(ray.nodes()) == 1
        cpus_per_worker = max(1, int(ray.cluster_resources().get("CPU", 1)) // workers) if local else 1
    line = ""
    runs = [(cfg, paths["run"], "")]
    if cfg.train.unet_baseline_steps > 0:
        runs.append((unet_baseline_config(cfg), paths["run_unet"], "U-Net baseline "))
    for run_cfg, run_dir, label in runs:
        summary = train_with_ray(run_cfg, paths["store"], run_dir, num_workers=workers, address=address,
                                 cpus_per_worker=cpus_per_worker, progress_label="train" + (" U-Net" if label else ""))
        plot_loss(run_dir)
        line += ("; " if line else "") + (
            f"{label}steps {summary['start_step']} -> {summary['step']} on {workers} worker(s), "
            f"{summary['s_per_step'] or 0.0:.3f} s/step -> {summary['checkpoint']}")
    return line


def _stage_infer(cfg: Config, paths: dict[str, AnyPath], address: str | None) -> str:
    from cmpipe.pipeline.infer import infer_with_ray

    s = infer_with_ray(cfg, paths["store"], paths["run"], paths["results"], address=address)
    line = (f"{s['images']} test images ({s['sampled']} sampled now, {s['n_samples']} samples each, {s['sampler']} "
            f"{s['steps']} steps, {s['s_per_image']:.2f} s/image) -> {paths['results']}")
    if cfg.train.unet_baseline_steps > 0:  # the U-Net on the same images, a baseline beside the trivial ones
        u = infer_with_ray(unet_baseline_config(cfg), paths["store"], paths["run_unet"], paths["results_unet"],
                           address=address, baselines=())
        line += f"; U-Net baseline ({u['sampled']} images now) -> {paths['results_unet']}"
    return line


def _stage_report(cfg: Config, paths: dict[str, AnyPath]) -> str:
    from cmpipe.stages.report import run

    written = run(cfg, paths)
    return f"{len(written) - 2} files -> {written['report']}"


def run_pipeline(
    cfg: Config,
    out: str | Path | AnyPath,
    *,
    address: str | None = None,
    train_workers: int = 1,
    train_cpus_per_worker: int | None = None,
    stages: Sequence[str] = STAGES,
    echo: Any = print,
) -> dict[str, Any]:
    """Run ``stages`` of the pipeline into ``out`` on one Ray session.

    Parameters
    ----------
    cfg : Config
    out : str, path-like or URL
        Output directory (on a cluster: a path every node sees, or an object-store URL such as
        ``s3://bucket/run``, whose bucket and credentials are checked first); checked before Ray
        starts (:data:`PIPELINE_NAMES`): cmpipe's files are never written over the user's.
    address : str, optional
        Ray address (default ``$RAY_ADDRESS``, else a local Ray started here and stopped at the end).
    train_workers : int
        Ray Train workers (must divide ``train.batch_size``).
    train_cpus_per_worker : int, optional
        CPUs (and torch threads) per training worker; default: on a one-node Ray, its CPUs
        shared among the workers, else 1.
    stages : sequence of str
        A subset of :data:`STAGES` (run in the order of :data:`STAGES`).
    echo : callable
        Progress lines (one per stage start and end) go here.

    Returns
    -------
    dict
        ``paths`` (:func:`pipeline_paths`: URL paths for an object-store ``out``), ``seconds`` per
        stage, ``lines`` (the stage summaries), ``ray_logs`` (the log directory of the Ray
        session, where the workers' output went: :func:`cmpipe.pipeline.session.ray_logs_dir`;
        None if no stage used Ray).
    """
    import ray

    from cmpipe.config import save_resolved_config
    from cmpipe.pipeline.session import ray_logs_dir, start_ray
    from cmpipe.store.location import as_path, check_reachable, is_remote
    from cmpipe.store.outputs import claim_directory

    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise PipelineError(f"unknown stages {unknown}; the stages are {', '.join(STAGES)}")
    out = as_path(out)
    check_reachable(out, "--out")  # an object store's bucket and credentials, before any work
    paths = pipeline_paths(out if is_remote(out) else out.resolve())
    claim_directory(paths["out"], "pipeline", names=PIPELINE_NAMES, shared=True, what="--out")
    save_resolved_config(cfg, paths["out"])
    todo = [s for s in STAGES if s in stages]
    seconds: dict[str, float] = {}
    lines: dict[str, str] = {}
    uses_ray = any(s in ("generate", "train", "infer") for s in todo)
    started = start_ray(address) if uses_ray else False
    ray_logs = ray_logs_dir() if uses_ray else None
    try:
        for k, stage in enumerate(todo, 1):
            echo(f"[{k}/{len(todo)}] {stage} ...", flush=True)
            t0 = time.perf_counter()
            if stage == "catalog":
                line = _stage_catalog(cfg, paths)
            elif stage == "generate":
                line = _stage_generate(cfg, paths, address)
            elif stage == "train":
                line = _stage_train(cfg, paths, address, train_workers, train_cpus_per_worker)
            elif stage == "infer":
                line = _stage_infer(cfg, paths, address)
            else:
                line = _stage_report(cfg, paths)
            seconds[stage] = time.perf_counter() - t0
            lines[stage] = line
            echo(f"[{k}/{len(todo)}] {stage}: {line} ({seconds[stage]:.0f} s)", flush=True)
    finally:
        if started:
            ray.shutdown()
    return {"paths": paths, "seconds": seconds, "lines": lines, "ray_logs": ray_logs}

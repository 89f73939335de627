"""Posterior inference over the test split, without Ray (``cmpipe infer --serial``).

The stage selects the test images of the store within ``evaluate.test_log10_m_*``
(:func:`select_test_images`), opens or creates ``RESULTS/posterior.zarr``
(:mod:`cmpipe.store.posterior`), removes table parts of images a killed run left unfinished
(:func:`prepare`), and samples the images not yet done in batches of ``infer.images_per_batch``
with :func:`infer_batch`: read their maps from the store, draw ``infer.n_samples`` samples per
image (image ``i`` from :func:`cmpipe.model.sampling.image_seed` ``(infer.seed, i)``, so the
result does not depend on batching), evaluate them (:func:`cmpipe.evaluation.image.evaluate_image`),
write one Parquet part per table (:mod:`cmpipe.store.tables`) and then the image's posterior maps
with its ``done`` flag. A rerun skips the images done. :func:`finish` checks every image is done,
runs the trivial baselines on the same images (:func:`run_baselines_for_config`) and writes
``infer_summary.json``.

:func:`run` does it all in this process, with one :class:`InferWorker` (one model);
:func:`cmpipe.pipeline.infer.infer_with_ray` runs the same :func:`infer_batch` in Ray Data
actors (one worker each) between the same :func:`prepare` and :func:`finish`: both write the
same tables and posterior store for the same config.

The store, the checkpoint and the results directory may each be an object-store URL
(:mod:`cmpipe.store.location`). The guarantees are the same as on disk and rest on the same
order of writes: each batch writes its table parts (each one object, written whole in one PUT),
then each image's posterior maps, then its ``done`` flag; ``infer_summary.json`` last. A rerun
lists the parts afresh (fsspec's cached listings dropped: actors in other processes wrote them),
removes the parts of images not done and the unreadable ones with their batch-mates
(:func:`cmpipe.store.tables.remove_parts_not_done`), and samples those images again: every
image's rows exist exactly once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmpipe.config import Config
from cmpipe.evaluation.baselines import BASELINES
from cmpipe.store.schema import TARGET_CHANNELS

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.evaluation.image import Grid

logger = logging.getLogger(__name__)

__all__ = [
    "RESULTS_NAMES",
    "InferError",
    "InferPlan",
    "InferWorker",
    "finish",
    "halo_concentrations",
    "infer_batch",
    "load_worker",
    "prepare",
    "run",
    "run_baselines_for_config",
    "select_test_images",
]

#: What ``cmpipe infer`` writes in a results directory (marked ``results``; its default report goes
#: to ``report/``): a directory holding anything else is refused (:func:`cmpipe.store.outputs.claim_directory`).
RESULTS_NAMES = ("posterior.zarr", "tables", "images.parquet", "infer_summary.json", "config.resolved.yaml",
                 "report", "baselines", ".*.tmp")


class InferError(ValueError):
    """Inference cannot start: no test images, no GPU where one is asked for, a bad store."""


# ----------------------------------------------------------------------------- the test images


def grid_from_config(cfg: Config, store_attrs: Mapping[str, Any]) -> Grid:
    """:func:`cmpipe.evaluation.image.make_grid` of a configuration's ``model.resolution``,
    ``cosmology`` and ``evaluate`` sections."""
    from cmpipe.evaluation.image import make_grid

    return make_grid(int(cfg.model.resolution), store_attrs, cfg.cosmology,
                     k_split_mpc_inv=cfg.evaluate.k_split_mpc_inv,
                     convergence_tolerance=cfg.evaluate.convergence_tolerance)


def select_test_images(cfg: Config, store_path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The store's usable test images within ``[evaluate.test_log10_m_min, _max)``.

    Returns
    -------
    dict
        ``image_index``, ``halo_id``, ``log10_m200m_msun_h``, ``rotation_index``, ``axis``,
        ``r200m_mpc`` [physical Mpc], ``r500c_mpc`` [physical Mpc] and ``m500c_msun`` [Msun] (NFW
        with the halo's concentration, :func:`halo_concentrations`), in ascending store order.

    Raises
    ------
    InferError
        If there is none (naming the store and the mass range).
    """
    from cmpipe.model.dataset import SPLIT_CODES
    from cmpipe.physics.cosmology import r200m_mpc, r500c_from_m200m
    from cmpipe.store.zarr_store import open_store

    group = open_store(store_path)
    log10m = group["log10_m200m_msun_h"][:]
    ecfg = cfg.evaluate
    keep = ((group["split"][:] == SPLIT_CODES["test"]) & (group["image_failed"][:] == 0)
            & (log10m >= ecfg.test_log10_m_min_msun_h) & (log10m < ecfg.test_log10_m_max_msun_h))
    index = np.flatnonzero(keep)
    if index.size == 0:
        raise InferError(
            f"{store_path}: no test images with log10 M200m in [{ecfg.test_log10_m_min_msun_h}, "
            f"{ecfg.test_log10_m_max_msun_h}) (set evaluate.test_log10_m_* or generate.split_fractions)"
        )
    m_msun = 10.0 ** log10m[index] / cfg.cosmology.h
    halo_id = group["halo_id"][:][index].astype(np.int64)
    r500c, m500c = r500c_from_m200m(m_msun, halo_concentrations(cfg, halo_id, log10m[index]), cfg.cosmology)
    return {"image_index": index.astype(np.int64), "halo_id": halo_id,
            "log10_m200m_msun_h": log10m[index].astype(np.float64),
            "rotation_index": group["rotation_index"][:][index].astype(np.int32),
            "axis": group["axis"][:][index].astype(np.int8),
            "r200m_mpc": np.asarray(r200m_mpc(m_msun, cfg.cosmology), dtype=np.float64),
            "r500c_mpc": np.asarray(r500c, dtype=np.float64), "m500c_msun": np.asarray(m500c, dtype=np.float64)}


def halo_concentrations(cfg: Config, halo_id: np.ndarray, log10_m200m_msun_h: np.ndarray) -> np.ndarray:
    """NFW c200m of each halo: its catalog row's ``c200m`` for ``source.kind: mock`` (the halo's own,
    with scatter), else the Diemer & Joyce (2019) median at its mass (the store holds no profile fit)."""
    from cmpipe.physics.catalog import halo_parameters, median_concentration

    if cfg.source.kind == "mock":
        own = {int(h): float(halo_parameters(cfg.catalog, cfg.cosmology, int(h))["c200m"]) for h in np.unique(halo_id)}
        c = np.array([own[int(h)] for h in halo_id], dtype=np.float64)
        if np.all(np.isfinite(c)):
            return c
    return np.asarray(median_concentration(np.asarray(log10_m200m_msun_h, np.float64), cfg.cosmology), np.float64)


# ----------------------------------------------------------------------------- the unit of work


@dataclasses.dataclass
class InferWorker:
    """What one inference worker holds: the loaded model and where it reads and writes.

    Attributes
    ----------
    store_path, results : str
        The image store and the results directory.
    sampler : PosteriorSampler or RegressionSampler
        The loaded model (:mod:`cmpipe.model.inference`).
    grid : cmpipe.evaluation.image.Grid
        The model's grid and metric settings.
    maps : zarr.Array
        The store's ``maps``, shape (N, C, npix, npix).
    store_npix : int
        The store's map side [pixels] (a multiple of ``grid.npix``).
    channels : list of str
        The store's channels, in order.
    conditions : tuple of str
        The sampler's condition channels (the checkpoint's), else the config's.
    n_samples, seed : int
        ``infer.n_samples`` and ``infer.seed``.
    """

    store_path: str
    results: str
    sampler: Any
    grid: Grid
    maps: Any
    store_npix: int
    channels: list[str]
    conditions: tuple[str, ...]
    n_samples: int
    seed: int


def _with_resolution(cfg: Config, resolution: int) -> Config:
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, resolution=int(resolution)))


def load_worker(cfg: Config, store_path: str, results: str, checkpoint: str, *, device: str = "cpu",
                loader: Callable[..., Any] | None = None) -> InferWorker:
    """Load the model once for many :func:`infer_batch` calls.

    Parameters
    ----------
    cfg : Config
        ``infer``, ``model``, ``evaluate`` and ``cosmology`` sections.
    store_path, results, checkpoint : str
    device : str
        Torch device of the model.
    loader : callable, optional
        ``loader(checkpoint, infer_cfg, device, store_fingerprint) -> PosteriorSampler``;
        default :func:`cmpipe.model.inference.load_posterior_sampler`.
    """
    from cmpipe.model.inference import load_posterior_sampler
    from cmpipe.store.zarr_store import open_store

    group = open_store(store_path)
    attrs = dict(group.attrs)
    sampler = (loader or load_posterior_sampler)(checkpoint, cfg.infer, device, attrs["store_fingerprint"])
    if sampler.resolution != cfg.model.resolution:
        cfg = _with_resolution(cfg, sampler.resolution)
    return InferWorker(store_path=store_path, results=results, sampler=sampler, grid=grid_from_config(cfg, attrs),
                       maps=group["maps"], store_npix=int(attrs["npix"]), channels=list(attrs["channels"]),
                       conditions=tuple(getattr(sampler, "conditions", cfg.model.conditions)),
                       n_samples=cfg.infer.n_samples, seed=cfg.infer.seed)


def _read_image(worker: InferWorker, image_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The truth ``(2, R, R)`` and condition ``(C, R, R)`` maps of one image on the model's grid."""
    from cmpipe.evaluation.image import TARGETS
    from cmpipe.model.dataset import block_mean

    image = np.asarray(worker.maps[int(image_index)], dtype=np.float64)
    if not np.all(np.isfinite(image)):
        raise InferError(f"{worker.store_path}: image {image_index} has non-finite maps (not generated?)")
    factor = worker.store_npix // worker.grid.npix
    pick = lambda names: image[[worker.channels.index(c) for c in names]]  # noqa: E731
    missing = [c for c in worker.conditions if c not in worker.channels]
    if missing:
        raise InferError(f"{worker.store_path}: the store lacks the condition channels {missing} "
                         f"(it has {worker.channels})")
    truth, cond = pick(TARGETS), pick(worker.conditions)
    if factor > 1:
        truth, cond = block_mean(truth, factor), block_mean(cond, factor)
    return truth, cond


def infer_batch(worker: InferWorker, batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Sample, evaluate and write one batch of test images.

    Parameters
    ----------
    worker : InferWorker
    batch : mapping of arrays
        One row per image: ``row`` (its row in ``posterior.zarr``), ``image_index``, ``halo_id``,
        ``log10_m200m_msun_h``, ``r200m_mpc`` [Mpc], ``r500c_mpc`` [Mpc].

    Returns
    -------
    dict
        ``image_index`` and ``seconds`` (sampling time per image [s]): small records only.
    """
    from cmpipe.evaluation.image import evaluate_image
    from cmpipe.model.sampling import image_seed
    from cmpipe.store.posterior import open_posterior, write_images
    from cmpipe.store.tables import SCHEMAS, to_table, write_part

    images = [int(i) for i in batch["image_index"]]
    read = [_read_image(worker, i) for i in images]
    truth = np.stack([t for t, _ in read])
    cond = np.stack([c for _, c in read])
    t0 = time.perf_counter()
    samples = worker.sampler.sample(cond, worker.n_samples, [image_seed(worker.seed, i) for i in images])
    seconds = (time.perf_counter() - t0) / len(images)
    rows: dict[str, dict[str, list[Any]]] = {name: {} for name in SCHEMAS}
    for b, i in enumerate(images):
        key = {"image_index": i, "halo_id": int(batch["halo_id"][b]),
               "log10_m200m_msun_h": float(batch["log10_m200m_msun_h"][b])}
        tables = evaluate_image(samples[b], truth[b], cond[b], worker.grid, key, float(batch["r200m_mpc"][b]), seconds,
                                conditions=worker.conditions, r500c_mpc=float(batch["r500c_mpc"][b]))
        for name, columns in tables.items():
            for col, values in columns.items():
                rows[name].setdefault(col, []).extend(values)
    for name, columns in rows.items():
        write_part(worker.results, name, to_table(name, columns), images)
    write_images(open_posterior(worker.results, writable=True), [int(r) for r in batch["row"]], [
        {"truth": truth[b], "condition": cond[b], "mean": samples[b].mean(axis=0),
         "std": samples[b].std(axis=0, ddof=1), "samples": samples[b]} for b in range(len(images))
    ])
    return {"image_index": np.asarray(images, dtype=np.int64), "seconds": np.full(len(images), seconds)}


# ----------------------------------------------------------------------------- before and after


@dataclasses.dataclass
class InferPlan:
    """What :func:`prepare` found and set up, for the workers and :func:`finish`.

    Attributes
    ----------
    cfg : Config
        The config, with the checkpoint's ``model.resolution``.
    store_path, checkpoint : str
        Absolute paths, or object-store URLs.
    results : pathlib.Path or upath.UPath
        The claimed results directory (:func:`cmpipe.store.location.as_path`).
    checkpoint_step : int
    selected : dict of arrays
        :func:`select_test_images`.
    todo : list of dict
        The images still to sample: one record each (the rows of :func:`infer_batch`'s batches).
    done_before : int
        Images done before this run.
    removed_parts : int
        Table parts removed (of unfinished or corrupt images).
    """

    cfg: Config
    store_path: str
    checkpoint: str
    results: Any
    checkpoint_step: int
    selected: dict[str, np.ndarray]
    todo: list[dict[str, Any]]
    done_before: int
    removed_parts: int


def _check_store(store_path: str) -> dict[str, Any]:
    """The attributes of a complete, normalised store (else :class:`StoreError`)."""
    from cmpipe.store.zarr_store import StoreError, open_store, validate_store

    validate_store(store_path, require_complete=True)
    attrs = dict(open_store(store_path).attrs)
    if attrs.get("normalisation") is None:
        raise StoreError(f"{store_path}: the store has no normalisation (generation did not finish: rerun "
                         "`cmpipe generate` on it)")
    return attrs


def _check_checkpoint(checkpoint: str | os.PathLike[str], fingerprint: str) -> tuple[Any, dict[str, Any], int]:
    """The checkpoint file, its ``cmpipe`` hyper-parameters and step: loadable (on the CPU) and
    trained on the store of ``fingerprint``."""
    from cmpipe.model.inference import resolve_checkpoint
    from cmpipe.model.training import load_for_inference

    ckpt = resolve_checkpoint(checkpoint)
    model = load_for_inference(ckpt, "cpu", store_fingerprint=fingerprint)  # loadable, this store's
    return ckpt, model.hyperparameters["cmpipe"], int(model.hyperparameters["cmpipe_checkpoint"]["step"])


def _channel_units(attrs: Mapping[str, Any]) -> dict[str, str]:
    """Channel -> unit of the image store (its ``channel_units`` is a mapping, older stores a list)."""
    units = attrs["channel_units"]
    if isinstance(units, dict):
        return {c: str(units[c]) for c in attrs["channels"]}
    return {c: str(u) for c, u in zip(attrs["channels"], units)}


def _write_images_table(store_path: str, selected: Mapping[str, np.ndarray], results: Any) -> None:
    from cmpipe.model.dataset import SPLIT_CODES
    from cmpipe.store.tables import write_images_table
    from cmpipe.store.zarr_store import open_store

    group = open_store(store_path)
    names = {code: name for name, code in SPLIT_CODES.items()}
    n = group["split"].shape[0]
    write_images_table(results, {
        "image_index": np.arange(n), "halo_id": group["halo_id"][:], "log10_m200m_msun_h": group["log10_m200m_msun_h"][:],
        "split": [names[int(c)] for c in group["split"][:]], "failed": group["image_failed"][:] == 1,
        "selected": np.isin(np.arange(n), selected["image_index"]),
    })


def _open_results(cfg: Config, results: Any, selected: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
                  store_path: str, ckpt: Any, step: int, hyperparameters: Mapping[str, Any]) -> None:
    """Create (or check the settings of) ``posterior.zarr``; write the resolved config and ``images.parquet``."""
    from cmpipe.config import RESOLVED_CONFIG_NAME, config_to_yaml
    from cmpipe.model.inference import checkpoint_conditions
    from cmpipe.store.location import is_remote, write_text_atomic
    from cmpipe.store.posterior import open_or_create

    icfg = cfg.infer
    resolution = cfg.model.resolution
    if not is_remote(results):
        results.mkdir(parents=True, exist_ok=True)
    open_or_create(results, selected, {
        "targets": list(TARGET_CHANNELS), "conditions": list(checkpoint_conditions(hyperparameters)),
        "channel_units": _channel_units(attrs),
        "pixel_mpc": float(attrs["pixel_mpc"]) * int(attrs["npix"]) / resolution, "resolution": resolution,
        "depth_mpc": float(attrs["depth_mpc"]),
        "n_samples": icfg.n_samples, "sampler": icfg.sampler, "steps": icfg.steps, "denoise": icfg.denoise,
        "seed": icfg.seed, "save_samples": icfg.save_samples, "checkpoint": str(ckpt),
        "checkpoint_step": step, "store": store_path, "store_fingerprint": attrs["store_fingerprint"],
        "config_yaml": config_to_yaml(cfg),
    })
    write_text_atomic(results / RESOLVED_CONFIG_NAME, config_to_yaml(cfg))  # as cmpipe.config.save_resolved_config
    _write_images_table(store_path, selected, results)


def _resume(results: Any) -> tuple[set[int], int]:
    """The images done, after removing the table parts of unfinished images (and their batch-mates)."""
    from cmpipe.store.posterior import done_images, mark_not_done
    from cmpipe.store.tables import remove_parts_not_done

    done = done_images(results)
    removed, redo = remove_parts_not_done(results, done)
    if removed:
        logger.info("removed %d table parts of unfinished images (an interrupted run) or corrupt ones; %d finished "
                    "images in them are sampled again", len(removed), len(redo))
    if redo:
        mark_not_done(results, redo)
        done -= redo
    return done, len(removed)


def _todo(selected: Mapping[str, np.ndarray], done: set[int]) -> list[dict[str, Any]]:
    """One record per selected image not done, with its row in ``posterior.zarr``."""
    return [{"row": r, "image_index": int(i), "halo_id": int(h), "log10_m200m_msun_h": float(m),
             "r200m_mpc": float(rr), "r500c_mpc": float(r5)}
            for r, (i, h, m, rr, r5) in enumerate(zip(selected["image_index"], selected["halo_id"],
                                                      selected["log10_m200m_msun_h"], selected["r200m_mpc"],
                                                      selected["r500c_mpc"]))
            if int(i) not in done]


def _absolute(path: str | os.PathLike[str]) -> Any:
    """An absolute local path (what every actor finds), or an object-store URL's path as is."""
    from cmpipe.store.location import as_path, is_remote

    path = as_path(path)
    return path if is_remote(path) else Path(path).resolve()


def prepare(cfg: Config, store_path: str | os.PathLike[str], checkpoint: str | os.PathLike[str],
            results: str | os.PathLike[str]) -> InferPlan:
    """Check the inputs, claim ``results``, open its ``posterior.zarr`` and list the images to sample.

    Everything a worker would otherwise discover is checked here, before anything is written:
    the store is missing, incomplete, malformed (:func:`cmpipe.store.validate_store`) or not
    normalised (``StoreError``); the checkpoint is missing, unloadable or trained on another
    store (``CheckpointError``); ``results`` cannot be written or is not cmpipe's
    (``OutputError``); no test image is selected (:class:`InferError`). ``results`` holding a
    run of other settings is a ``PosteriorStoreError``. Resuming, table parts of unfinished
    images (a killed run) and corrupt parts are removed with their batch-mates, and those images
    sampled again (:func:`cmpipe.store.tables.remove_parts_not_done`). Any of the three paths
    may be an object-store URL: its bucket and credentials are checked first
    (:func:`cmpipe.store.location.check_reachable`, a ``LocationError`` naming the URL).
    """
    from cmpipe.store.location import as_path, check_reachable
    from cmpipe.store.outputs import claim_directory

    store_path, checkpoint, results = _absolute(store_path), as_path(checkpoint), _absolute(results)
    for path, what in ((store_path, "store"), (checkpoint, "checkpoint"), (results, "results directory")):
        check_reachable(path, what)
    store_path = str(store_path)
    attrs = _check_store(store_path)
    ckpt, hyperparameters, step = _check_checkpoint(checkpoint, attrs["store_fingerprint"])
    results = claim_directory(results, "results", names=RESULTS_NAMES, what="results directory")
    resolution = int(hyperparameters["model"]["resolution"])
    if resolution != cfg.model.resolution:
        logger.info("the checkpoint's model.resolution %d replaces the config's %d", resolution, cfg.model.resolution)
        cfg = _with_resolution(cfg, resolution)
    selected = select_test_images(cfg, store_path)
    _open_results(cfg, results, selected, attrs, store_path, ckpt, step, hyperparameters)
    done, removed = _resume(results)
    todo = _todo(selected, done)
    icfg = cfg.infer
    logger.info("%d test images selected, %d done before, %d to sample (%s, %d steps, %d samples each)",
                len(selected["image_index"]), len(done), len(todo), icfg.sampler, icfg.steps, icfg.n_samples)
    return InferPlan(cfg=cfg, store_path=store_path, checkpoint=str(ckpt), results=results, checkpoint_step=step,
                     selected=selected, todo=todo, done_before=len(done), removed_parts=removed)


def finish(plan: InferPlan, seconds: Sequence[float], wall_s: float,
           baselines: Sequence[str] = BASELINES) -> dict[str, Any]:
    """Check every selected image is done, run the ``baselines`` on them and write ``infer_summary.json``.

    Parameters
    ----------
    plan : InferPlan
    seconds : sequence of float
        Sampling time of each image sampled [s].
    wall_s : float
        Wall time of the sampling [s].
    baselines : sequence of str
        Baselines to run (:data:`cmpipe.evaluation.baselines.BASELINES`; empty: none).

    Returns
    -------
    dict
        The summary (see :func:`run`).
    """
    from cmpipe.store.posterior import done_images

    done_after = done_images(plan.results)
    missing = [int(i) for i in plan.selected["image_index"] if int(i) not in done_after]
    if missing:
        raise InferError(f"{plan.results}: {len(missing)} images not done after the run (first {missing[:5]}); "
                         "rerun to finish")
    icfg = plan.cfg.infer
    summary = {
        "images": len(plan.selected["image_index"]), "done_before": plan.done_before, "sampled": len(plan.todo),
        "wall_s": wall_s, "s_per_image": float(np.mean(seconds)) if len(seconds) else 0.0,
        "removed_parts": plan.removed_parts, "checkpoint": plan.checkpoint, "checkpoint_step": plan.checkpoint_step,
        "results": str(plan.results), "sampler": icfg.sampler, "steps": icfg.steps, "n_samples": icfg.n_samples,
    }
    if baselines:  # the trivial baselines on the same images (cmpipe.evaluation.baselines): seconds
        summary["baselines"] = run_baselines_for_config(plan.cfg, plan.store_path, plan.results, names=baselines,
                                                        selected=plan.selected)
    from cmpipe.store.location import write_text_atomic

    write_text_atomic(plan.results / "infer_summary.json", json.dumps(summary, indent=2) + "\n")  # the last write
    return summary


# ----------------------------------------------------------------------------- the stage


def worker_device(infer_cfg: Any) -> str:
    """The torch device of a worker: ``cuda`` when ``infer.gpus_per_actor > 0`` and CUDA is there, else ``cpu``."""
    import torch

    return "cuda" if infer_cfg.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Torch's intra-op threads set to ``threads`` (``infer.threads_per_actor``), then restored:
    a convolution's sums, and so the samples' last bits, depend on the thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batches(todo: Sequence[Mapping[str, Any]], size: int) -> list[dict[str, np.ndarray]]:
    """The records in batches of ``size``, as columns (the batches Ray Data hands to an actor)."""
    return [{key: np.asarray([r[key] for r in todo[lo:lo + size]]) for key in todo[0]}
            for lo in range(0, len(todo), max(1, int(size)))]


def run(cfg: Config, paths: Mapping[str, str | os.PathLike[str]], *, loader: Callable[..., Any] | None = None,
        baselines: Sequence[str] = BASELINES) -> dict[str, Any]:
    """Sample and evaluate every selected test image not yet done, in this process; then the
    trivial ``baselines`` on the same images.

    Parameters
    ----------
    cfg : Config
        ``infer``, ``model``, ``evaluate`` and ``cosmology`` sections.
    paths : mapping
        ``store`` (a complete, normalised image store), ``run`` (a checkpoint file or a run
        directory, its latest checkpoint, trained on this store) and ``results`` (the output
        directory: new, empty or cmpipe's results directory; see :func:`prepare`); each a path
        or an object-store URL.
    loader : callable, optional
        The model loader (tests pass a tiny model's; see :func:`load_worker`).
    baselines : sequence of str
        Baselines to run after the model (:data:`cmpipe.evaluation.baselines.BASELINES`; empty: none).

    Returns
    -------
    dict
        ``images`` (selected), ``done_before``, ``sampled`` (this run), ``wall_s``,
        ``s_per_image`` (sampling time, mean), ``removed_parts``, ``checkpoint``,
        ``checkpoint_step``, ``results``, ``sampler``, ``steps``, ``n_samples`` and ``baselines``
        (name -> summary, when run).

    Raises
    ------
    InferError
        As :func:`prepare`, and when ``infer.gpus_per_actor > 0`` without CUDA.
    """
    plan = prepare(cfg, paths["store"], paths["run"], paths["results"])
    icfg = plan.cfg.infer
    t0 = time.perf_counter()
    seconds: list[float] = []
    if plan.todo:
        device = worker_device(icfg)
        if icfg.gpus_per_actor > 0 and device == "cpu":
            raise InferError(f"infer.gpus_per_actor is {icfg.gpus_per_actor:g} but CUDA is not available: "
                             "set infer.gpus_per_actor=0 (CPU sampling) or run on a machine with a GPU")
        with _torch_threads(icfg.threads_per_actor):  # as an actor: the same threads, the same floats
            worker = load_worker(plan.cfg, plan.store_path, str(plan.results), plan.checkpoint, device=device,
                                 loader=loader)
            from cmpipe.progress import Progress

            with Progress(len(plan.todo), "infer", "images") as bar:
                for batch in _batches(plan.todo, icfg.images_per_batch):
                    done = infer_batch(worker, batch)["seconds"]
                    seconds.extend(float(s) for s in done)
                    bar.update(len(done), samples=len(seconds) * icfg.n_samples)
    return finish(plan, seconds, time.perf_counter() - t0, baselines)


def run_baselines_for_config(
    cfg: Config,
    store_path: str | os.PathLike[str],
    results_dir: str | os.PathLike[str],
    *,
    names: Sequence[str] = BASELINES,
    selected: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict[str, Any]]:
    """The stage boundary of ``cmpipe infer`` and ``cmpipe baselines``: a Config (and the model's
    results, when ``results_dir`` holds them) made into :func:`cmpipe.evaluation.baselines.run_baselines`'
    arguments.

    The model's ``posterior.zarr`` in ``results_dir``, if there is one, fixes the grid
    (``resolution``), ``conditions``, ``n_samples``, ``seed``, ``save_samples`` and the recorded
    config, so the baselines meet the model on its own terms; otherwise ``cfg``'s ``model`` and
    ``infer`` sections do. The test images are :func:`select_test_images` of ``cfg`` (or ``selected``).
    """
    import yaml

    from cmpipe.config import config_from_dict, config_to_yaml
    from cmpipe.evaluation.baselines import run_baselines
    from cmpipe.store.posterior import posterior_path
    from cmpipe.store.zarr_store import open_store

    icfg, mcfg = cfg.infer, cfg.model
    model: dict[str, Any] = {"resolution": mcfg.resolution, "conditions": tuple(mcfg.conditions),
                             "n_samples": icfg.n_samples, "seed": icfg.seed, "save_samples": icfg.save_samples}
    if posterior_path(results_dir).exists():
        from cmpipe.store.posterior import open_posterior

        pattrs = dict(open_posterior(results_dir).attrs)
        model.update({k: pattrs[k] for k in ("resolution", "n_samples", "seed", "save_samples") if k in pattrs})
        model["conditions"] = tuple(pattrs.get("conditions") or model["conditions"])
        if pattrs.get("config_yaml"):
            recorded = config_from_dict(yaml.safe_load(pattrs["config_yaml"]), "posterior.zarr config_yaml")
            cfg = dataclasses.replace(cfg, evaluate=recorded.evaluate, cosmology=recorded.cosmology)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, resolution=int(model["resolution"]),
                                                              conditions=model["conditions"]))
    grid = grid_from_config(cfg, dict(open_store(store_path).attrs))
    return run_baselines(
        store_path, results_dir, selected=selected if selected is not None else select_test_images(cfg, store_path),
        grid=grid, n_samples=int(model["n_samples"]), seed=int(model["seed"]), conditions=model["conditions"],
        names=names, save_samples=bool(model["save_samples"]), attrs={"config_yaml": config_to_yaml(cfg)},
    )

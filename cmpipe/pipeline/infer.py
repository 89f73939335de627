"""Posterior inference over the test split with Ray Data (``cmpipe infer``).

The driver (:func:`infer_with_ray`) selects the test images of the store within
``evaluate.test_log10_m_*``, opens or creates ``RESULTS/posterior.zarr``
(:mod:`cmpipe.store.posterior`), removes table parts of images a killed run left unfinished, and
hands the images not yet done to a Ray Data pipeline: ``from_items`` of small image records,
then ``map_batches`` with :class:`InferenceActor` on an actor pool
(``ActorPoolStrategy(size=infer.actors)``, ``infer.cpus_per_actor`` CPUs and
``infer.gpus_per_actor`` GPUs each). Each actor loads the model once, through an injectable
loader (default :func:`cmpipe.model.inference.load_posterior_sampler`), and for each batch of
``infer.images_per_batch`` images reads their maps from the store, draws ``infer.n_samples``
samples per image (image ``i`` from the seed ``[infer.seed, i]``, so the result does not depend
on batching or the pool), evaluates them (:func:`cmpipe.evaluation.image.evaluate_image`), writes one
Parquet part per table (:mod:`cmpipe.store.tables`) and then the image's posterior maps with its
``done`` flag. Actors return small records only. A rerun skips the images done.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmpipe.config import Config

logger = logging.getLogger(__name__)

__all__ = ["InferError", "InferenceActor", "image_seed", "infer_with_ray", "select_test_images"]


class InferError(ValueError):
    """Inference cannot start: no test images, no GPU where one is asked for, a bad store."""


def image_seed(seed: int, image_index: int) -> int:
    """The seed of image ``image_index``'s samples: a 63-bit integer from ``SeedSequence([seed, i])``."""
    return int(np.random.SeedSequence([int(seed), int(image_index)]).generate_state(2, dtype=np.uint64)[0] >> 1)


def select_test_images(cfg: Config, store_path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The store's usable test images within ``[evaluate.test_log10_m_min, _max)``.

    Returns
    -------
    dict
        ``image_index``, ``halo_id``, ``log10_m200m_msun_h``, ``r200m_mpc`` [physical Mpc],
        ``r500c_mpc`` [physical Mpc] and ``m500c_msun`` [Msun] (NFW with the halo's
        concentration, :func:`halo_concentrations`), in ascending store order.

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
            "r200m_mpc": np.asarray(r200m_mpc(m_msun, cfg.cosmology), dtype=np.float64),
            "r500c_mpc": np.asarray(r500c, dtype=np.float64), "m500c_msun": np.asarray(m500c, dtype=np.float64)}


def halo_concentrations(cfg: Config, halo_id: np.ndarray, log10_m200m_msun_h: np.ndarray) -> np.ndarray:
    """NFW c200m of each halo: its catalog row's ``c200m`` for ``source.kind: mock`` (the halo's own,
    with scatter), else the Diemer & Joyce (2019) median at its mass (the store holds no profile fit)."""
    from cmpipe.physics.catalog import halo_parameters, median_concentration

    if cfg.source.kind == "mock":
        own = {int(h): float(halo_parameters(cfg, int(h))["c200m"]) for h in np.unique(halo_id)}
        c = np.array([own[int(h)] for h in halo_id], dtype=np.float64)
        if np.all(np.isfinite(c)):
            return c
    return np.asarray(median_concentration(np.asarray(log10_m200m_msun_h, np.float64), cfg.cosmology), np.float64)


class InferenceActor:
    """A Ray Data actor: one model, many batches of test images.

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
        threads = str(cfg.infer.threads_per_actor)
        os.environ["OMP_NUM_THREADS"] = threads
        import torch

        torch.set_num_threads(cfg.infer.threads_per_actor)
        from cmpipe.evaluation.image import grid_from_config
        from cmpipe.model.inference import load_posterior_sampler
        from cmpipe.store.posterior import open_or_create  # noqa: F401  (import check)
        from cmpipe.store.zarr_store import open_store

        self.cfg = cfg
        self.store_path, self.results = store_path, results
        group = open_store(store_path)
        self.attrs = dict(group.attrs)
        self.maps = group["maps"]
        self.channels = list(self.attrs["channels"])
        device = "cuda" if cfg.infer.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"
        self.sampler = (loader or load_posterior_sampler)(checkpoint, cfg.infer, device, self.attrs["store_fingerprint"])
        if self.sampler.resolution != cfg.model.resolution:
            cfg = self.cfg = _with_resolution(cfg, self.sampler.resolution)
        self.grid = grid_from_config(cfg, self.attrs)
        #: The sampler's condition channels (the checkpoint's), else the config's.
        self.conditions: tuple[str, ...] = tuple(getattr(self.sampler, "conditions", cfg.model.conditions))

    def _read(self, image_index: int) -> tuple[np.ndarray, np.ndarray]:
        from cmpipe.evaluation.image import TARGETS
        from cmpipe.model.dataset import block_mean

        image = np.asarray(self.maps[int(image_index)], dtype=np.float64)
        if not np.all(np.isfinite(image)):
            raise InferError(f"{self.store_path}: image {image_index} has non-finite maps (not generated?)")
        factor = int(self.attrs["npix"]) // self.grid.npix
        pick = lambda names: image[[self.channels.index(c) for c in names]]  # noqa: E731
        missing = [c for c in self.conditions if c not in self.channels]
        if missing:
            raise InferError(f"{self.store_path}: the store lacks the condition channels {missing} (it has {self.channels})")
        truth, cond = pick(TARGETS), pick(self.conditions)
        if factor > 1:
            truth, cond = block_mean(truth, factor), block_mean(cond, factor)
        return truth, cond

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cmpipe.evaluation.image import evaluate_image
        from cmpipe.store.posterior import open_posterior, write_image
        from cmpipe.store.tables import SCHEMAS, to_table, write_part

        icfg = self.cfg.infer
        images = [int(i) for i in batch["image_index"]]
        read = [self._read(i) for i in images]
        truth = np.stack([t for t, _ in read])
        cond = np.stack([c for _, c in read])
        t0 = time.perf_counter()
        samples = self.sampler.sample(cond, icfg.n_samples, [image_seed(icfg.seed, i) for i in images])
        seconds = (time.perf_counter() - t0) / len(images)
        rows: dict[str, dict[str, list[Any]]] = {name: {} for name in SCHEMAS}
        for b, i in enumerate(images):
            key = {"image_index": i, "halo_id": int(batch["halo_id"][b]),
                   "log10_m200m_msun_h": float(batch["log10_m200m_msun_h"][b])}
            tables = evaluate_image(samples[b], truth[b], cond[b], self.grid, key, float(batch["r200m_mpc"][b]), seconds,
                                    conditions=self.conditions, r500c_mpc=float(batch["r500c_mpc"][b]))
            for name, columns in tables.items():
                for col, values in columns.items():
                    rows[name].setdefault(col, []).extend(values)
        for name, columns in rows.items():
            write_part(self.results, name, to_table(name, columns), images)
        group = open_posterior(self.results, writable=True)
        for b, i in enumerate(images):
            write_image(group, int(batch["row"][b]), {
                "truth": truth[b], "condition": cond[b], "mean": samples[b].mean(axis=0),
                "std": samples[b].std(axis=0, ddof=1), "samples": samples[b],
            })
        return {"image_index": np.asarray(images, dtype=np.int64), "seconds": np.full(len(images), seconds)}


def _write_images_table(store_path: str, selected: dict[str, np.ndarray], results: Path) -> None:
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


def _channel_units(attrs: dict[str, Any]) -> dict[str, str]:
    """Channel -> unit of the image store (its ``channel_units`` is a mapping, older stores a list)."""
    units = attrs["channel_units"]
    if isinstance(units, dict):
        return {c: str(units[c]) for c in attrs["channels"]}
    return {c: str(u) for c, u in zip(attrs["channels"], units)}


def _with_resolution(cfg: Config, resolution: int) -> Config:
    import dataclasses

    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, resolution=int(resolution)))


def _check_gpus(cfg: Config) -> None:
    import ray

    if cfg.infer.gpus_per_actor > 0:
        gpus = ray.cluster_resources().get("GPU", 0.0)
        if gpus < cfg.infer.gpus_per_actor:
            raise InferError(
                f"infer.gpus_per_actor is {cfg.infer.gpus_per_actor:g} but the Ray cluster has {gpus:g} GPUs: "
                "set infer.gpus_per_actor=0 (CPU sampling) or use a cluster with GPUs"
            )


#: What ``cmpipe infer`` writes in a results directory (marked ``results``; its default report goes
#: to ``report/``): a directory holding anything else is refused (:func:`cmpipe.store.outputs.claim_directory`).
RESULTS_NAMES = ("posterior.zarr", "tables", "images.parquet", "infer_summary.json", "config.resolved.yaml",
                 "report", "baselines", ".*.tmp")


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
    store_path : str or path-like
        A complete, normalised image store every actor can read.
    checkpoint : str or path-like
        A checkpoint file, or a run directory (its latest checkpoint), trained on this store.
    results : str or path-like
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
    import ray

    from cmpipe.config import config_to_yaml, save_resolved_config
    from cmpipe.model.inference import checkpoint_conditions
    from cmpipe.model.inference import resolve_checkpoint
    from cmpipe.model.training import load_for_inference
    from cmpipe.store.outputs import claim_directory
    from cmpipe.pipeline.session import start_ray
    from cmpipe.store.posterior import done_images, mark_not_done, open_or_create
    from cmpipe.store.tables import remove_parts_not_done
    from cmpipe.store.zarr_store import StoreError, open_store, validate_store

    # What a worker would otherwise discover, checked here before anything is written.
    store_path = str(Path(store_path).resolve())
    validate_store(store_path, require_complete=True)
    attrs = dict(open_store(store_path).attrs)
    if attrs.get("normalisation") is None:
        raise StoreError(f"{store_path}: the store has no normalisation (generation did not finish: rerun "
                         "`cmpipe generate` on it)")
    ckpt = resolve_checkpoint(checkpoint)
    model = load_for_inference(ckpt, "cpu", store_fingerprint=attrs["store_fingerprint"])  # loadable, this store's
    hyperparameters = model.hyperparameters["cmpipe"]
    step = int(model.hyperparameters["cmpipe_checkpoint"]["step"])
    del model
    results = claim_directory(Path(results).resolve(), "results", names=RESULTS_NAMES, what="results directory")
    resolution = int(hyperparameters["model"]["resolution"])
    if resolution != cfg.model.resolution:
        logger.info("the checkpoint's model.resolution %d replaces the config's %d", resolution, cfg.model.resolution)
        cfg = _with_resolution(cfg, resolution)
    selected = select_test_images(cfg, store_path)
    icfg = cfg.infer
    pixel = float(attrs["pixel_mpc"]) * int(attrs["npix"]) / resolution
    results.mkdir(parents=True, exist_ok=True)
    group = open_or_create(results, selected, {
        "targets": ["gas_sigma", "dm_sigma"], "conditions": list(checkpoint_conditions(hyperparameters)),
        "channel_units": _channel_units(attrs),
        "pixel_mpc": pixel, "resolution": resolution, "depth_mpc": float(attrs["depth_mpc"]),
        "n_samples": icfg.n_samples, "sampler": icfg.sampler, "steps": icfg.steps, "denoise": icfg.denoise,
        "seed": icfg.seed, "save_samples": icfg.save_samples, "checkpoint": str(ckpt),
        "checkpoint_step": step, "store": store_path, "store_fingerprint": attrs["store_fingerprint"],
        "config_yaml": config_to_yaml(cfg),
    })
    del group
    save_resolved_config(cfg, results)
    _write_images_table(store_path, selected, results)
    done = done_images(results)
    removed, redo = remove_parts_not_done(results, done)
    if removed:
        logger.info("removed %d table parts of unfinished images (an interrupted run) or corrupt ones; %d finished "
                    "images in them are sampled again", len(removed), len(redo))
    if redo:
        mark_not_done(results, redo)
        done -= redo
    todo = [{"row": r, "image_index": int(i), "halo_id": int(h), "log10_m200m_msun_h": float(m), "r200m_mpc": float(rr),
             "r500c_mpc": float(r5)}
            for r, (i, h, m, rr, r5) in enumerate(zip(selected["image_index"], selected["halo_id"],
                                                      selected["log10_m200m_msun_h"], selected["r200m_mpc"],
                                                      selected["r500c_mpc"]))
            if int(i) not in done]
    n_sel = len(selected["image_index"])
    logger.info("%d test images selected, %d done before, %d to sample (%s, %d steps, %d samples each)",
                n_sel, len(done), len(todo), icfg.sampler, icfg.steps, icfg.n_samples)
    t0 = time.perf_counter()
    seconds: list[float] = []
    if todo:
        started = start_ray(address)
        try:
            _check_gpus(cfg)
            ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo), 4 * icfg.actors)))
            out = ds.map_batches(
                InferenceActor,
                fn_constructor_kwargs={"cfg": cfg, "store_path": store_path, "results": str(results),
                                       "checkpoint": str(ckpt), "loader": loader},
                batch_size=icfg.images_per_batch, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=icfg.actors),
                num_cpus=icfg.cpus_per_actor, num_gpus=icfg.gpus_per_actor,
            )
            for row in out.iter_rows():
                seconds.append(float(row["seconds"]))
        finally:
            if started:
                ray.shutdown()
    wall = time.perf_counter() - t0
    done_after = done_images(results)
    missing = [int(i) for i in selected["image_index"] if int(i) not in done_after]
    if missing:
        raise InferError(f"{results}: {len(missing)} images not done after the run (first {missing[:5]}); rerun to finish")
    summary = {
        "images": n_sel, "done_before": len(done), "sampled": len(todo), "wall_s": wall,
        "s_per_image": float(np.mean(seconds)) if seconds else 0.0, "removed_parts": len(removed),
        "checkpoint": str(ckpt), "checkpoint_step": step, "results": str(results),
        "sampler": icfg.sampler, "steps": icfg.steps, "n_samples": icfg.n_samples,
    }
    if baselines:  # the trivial baselines on the same images (cmpipe.evaluation.baselines): Ray-free, seconds
        from cmpipe.evaluation.baselines import run_baselines_for_config

        summary["baselines"] = run_baselines_for_config(cfg, store_path, results, names=baselines, selected=selected)
    (results / "infer_summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary

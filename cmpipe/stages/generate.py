"""The generate stage: plan, create or resume the image store, write every missing chunk, normalise.

Ray-free and serial (:func:`run`, :func:`generate_serial`): chunk after chunk through
:func:`cmpipe.mapmaking.generate.write_chunk`, the unit of work the Ray tasks of
:mod:`cmpipe.pipeline.generate` also run, one chunk each; it is the reference the Ray generator
must reproduce. This module is where a :class:`cmpipe.config.Config` becomes the plain values and
sections of :mod:`cmpipe.store` and :mod:`cmpipe.mapmaking` (:func:`map_settings`,
:func:`store_fingerprint`, :func:`plan_and_create_store`, :func:`normalise_store`), and where a
store's config is read back (:func:`store_config`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cmpipe.mapmaking.generate import PLAN_NAME, SECONDS, plan_path, run_summary
from cmpipe.store.location import AnyPath, as_path

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import zarr

    from cmpipe.config import Config
    from cmpipe.mapmaking.maps import MapSettings
    from cmpipe.physics.halo import HaloSource

__all__ = [
    "PLAN_NAME",
    "create_store_for",
    "generate_serial",
    "map_settings",
    "normalise_store",
    "pair_mass_msun_h",
    "plan_and_create_store",
    "plan_path",
    "run",
    "source_catalog",
    "store_config",
    "store_fingerprint",
]

logger = logging.getLogger(__name__)


def store_fingerprint(cfg: Config) -> str:
    """Fingerprint of what the store's content depends on: ``cfg`` less ``run``, ``render``,
    ``model``, ``train``, ``infer``, ``evaluate`` and ``sph.num_threads``.

    ``sph.num_threads`` is a resource, not content: the Ray generator runs each chunk with one
    thread whatever the config says, and may resume a store the serial generator began. (The
    thread count partitions the particle sums, so maps made with different counts agree to
    float rounding; with equal counts they are bit-identical.)

    Parameters
    ----------
    cfg : Config

    Returns
    -------
    str
        :func:`cmpipe.config.config_fingerprint` of ``cfg`` with ``run``, ``render``,
        ``model``, ``train``, ``infer``, ``evaluate`` (they do not change the images) and ``sph.num_threads`` at their
        defaults.
    """
    from cmpipe.config import (
        EvaluateConfig,
        InferConfig,
        ModelConfig,
        RenderConfig,
        RunConfig,
        SphConfig,
        TrainConfig,
        config_fingerprint,
    )

    sph = dataclasses.replace(cfg.sph, num_threads=SphConfig().num_threads)
    return config_fingerprint(
        dataclasses.replace(cfg, run=RunConfig(), render=RenderConfig(), sph=sph, model=ModelConfig(), train=TrainConfig(),
                            infer=InferConfig(), evaluate=EvaluateConfig())
    )


def store_config(store_path: str | os.PathLike[str]) -> Config:
    """The resolved configuration that created the store (its ``config_yaml`` attribute)."""
    import yaml

    from cmpipe.config import config_from_dict
    from cmpipe.store.zarr_store import open_store

    return config_from_dict(yaml.safe_load(open_store(store_path).attrs["config_yaml"]), f"{store_path} config_yaml")


def map_settings(cfg: Config) -> MapSettings:
    """The sections of ``cfg`` the maps of one image depend on (:class:`cmpipe.mapmaking.maps.MapSettings`)."""
    from cmpipe.mapmaking.maps import MapSettings

    return MapSettings(maps=cfg.maps, sph=cfg.sph, plasma=cfg.plasma, cosmology=cfg.cosmology,
                       lensing=cfg.lensing, instrument=cfg.instrument)


def pair_mass_msun_h(cfg: Config) -> float | None:
    """m_pair [Msun/h] of the configured source, or None where the source does not fix it."""
    if cfg.source.kind == "mock":
        return float(cfg.mock.pair_mass_msun_h)
    if cfg.source.kind == "analytic":
        return float(cfg.source.analytic_pair_mass_msun_h)
    return None


def source_catalog(cfg: Config, source: HaloSource | None = None) -> pa.Table:
    """``halo_id`` and ``log10_m200m_msun_h`` of every halo of the configured source.

    ``source.kind: mock`` reads them from :func:`cmpipe.physics.catalog.make_catalog`; other
    sources from each halo's :meth:`properties` (:func:`cmpipe.mapmaking.generate.halo_catalog`,
    no particles loaded).

    Parameters
    ----------
    cfg : Config
    source : HaloSource, optional
        Default: :func:`cmpipe.stages.source.open_source` of ``cfg``.

    Returns
    -------
    pyarrow.Table
        ``halo_id`` (int64), ``log10_m200m_msun_h`` (float64, log10 Msun/h).
    """
    from cmpipe.mapmaking.generate import halo_catalog

    if cfg.source.kind == "mock" and source is None:
        from cmpipe.physics.catalog import make_catalog

        return make_catalog(cfg.catalog, cfg.cosmology).select(["halo_id", "log10_m200m_msun_h"])
    if source is None:
        from cmpipe.stages.source import open_source

        source = open_source(cfg)
    return halo_catalog(source, cfg.cosmology.h)


def create_store_for(
    store_path: str | os.PathLike[str], plan: pa.Table, cfg: Config, overwrite: bool = False
) -> zarr.Group:
    """:func:`cmpipe.store.create_store` of ``plan`` with the map geometry, chunk size,
    fingerprints (:func:`store_fingerprint`, :func:`cmpipe.config.config_fingerprint`) and YAML
    of ``cfg``: created, or reopened to resume if ``cfg`` made it."""
    from cmpipe.config import config_fingerprint, config_to_yaml
    from cmpipe.store.zarr_store import create_store

    return create_store(
        store_path, plan, channels=cfg.maps.channels, npix=cfg.maps.npix, pixel_mpc=cfg.maps.pixel_mpc,
        depth_mpc=cfg.maps.depth_mpc, chunk_images=cfg.generate.chunk_images,
        store_fingerprint=store_fingerprint(cfg), config_fingerprint=config_fingerprint(cfg),
        config_yaml=config_to_yaml(cfg), overwrite=overwrite,
    )


def plan_and_create_store(
    cfg: Config, store_path: str | os.PathLike[str] | AnyPath, source: Any, overwrite: bool = False
) -> tuple[AnyPath, Any, zarr.Group]:
    """The steps before any chunk, shared by the serial and the Ray generators.

    The source's halo catalog, the plan (written to :func:`plan_path`) and the store, created
    or reopened for a resume (:func:`create_store_for`).

    Returns
    -------
    (store_path, plan, group)
        The absolute store path (a ``pathlib.Path``, or a ``upath.UPath`` for an object-store
        URL), the plan (a pyarrow Table) and the open zarr group.
    """
    from cmpipe.config import config_fingerprint
    from cmpipe.mapmaking.plan import make_plan, write_plan

    store_path = as_path(store_path).absolute()
    catalog = source_catalog(cfg, None if cfg.source.kind == "mock" else source)
    plan = make_plan(catalog, cfg.generate, config_fingerprint=config_fingerprint(cfg))
    group = create_store_for(store_path, plan, cfg, overwrite)
    write_plan(plan, plan_path(store_path))
    return store_path, plan, group


def normalise_store(store_path: str | os.PathLike[str], cfg: Config) -> dict[str, Any]:
    """:func:`cmpipe.store.compute_normalisation` with ``cfg.generate``'s ``normalisation`` and
    ``log_floor_fraction``."""
    from cmpipe.store.zarr_store import compute_normalisation

    return compute_normalisation(
        store_path, kind=cfg.generate.normalisation, log_floor_fraction=cfg.generate.log_floor_fraction
    )


def generate_serial(
    cfg: Config, store_path: str | os.PathLike[str], overwrite: bool = False, progress: bool = False,
    retry_failed: bool = True,
) -> dict[str, Any]:
    """Make every image of the plan of ``cfg`` into the store at ``store_path``, serially.

    Steps: the halo catalog of the source (:func:`source_catalog`), the plan
    (:func:`cmpipe.mapmaking.plan.make_plan`, written to :func:`plan_path`), the store (created, or
    reopened if ``cfg`` made it: a resume), :func:`cmpipe.mapmaking.generate.write_chunk` for each chunk not
    yet done and (``retry_failed``) each done chunk holding failed images, the failures record,
    and the normalisation (:func:`normalise_store`). A complete store without
    failures is left as it is (only the normalisation is recomputed, identically).

    A rerun retries the halos that failed (a bad HDF5 file, since fixed): their images are made
    again, the others of their chunks kept; the failure entries of those that now succeed are
    cleared, those that fail again are replaced with the new error, and the normalisation is
    recomputed (:func:`cmpipe.store.chunks_to_write`).

    Parameters
    ----------
    cfg : Config
    store_path : str, path-like or URL
        The store directory (``.zarr`` by convention): a local path or an object-store URL
        (``s3://bucket/run/images.zarr``), with the same guarantees (:mod:`cmpipe.store.zarr_store`).
    overwrite : bool
        Start over, deleting a store made by another config.
    progress : bool
        Progress of the chunks (:class:`cmpipe.progress.Progress`: a bar on a terminal, else a
        line every ``$CMPIPE_PROGRESS_S`` seconds).
    retry_failed : bool
        Also redo the failed images of chunks already done (default); False leaves them failed.

    Returns
    -------
    dict
        ``store``, ``plan``, ``images``, ``halos``, ``chunks``, ``chunks_written``,
        ``failures`` (the store's whole record), ``failed_images``, ``seconds`` (sums of the
        chunks' ``particles``, ``smoothing``, ``projection``, ``writing``; ``wall``) and
        ``images_per_s`` (images written / wall seconds of the chunk loop; 0 if none).
    """
    from cmpipe.mapmaking.generate import write_chunk
    from cmpipe.progress import Progress
    from cmpipe.stages.source import open_source
    from cmpipe.store.zarr_store import chunks_to_write, clear_normalisation, missing_chunks, record_failures

    source = open_source(cfg)
    store_path, plan, group = plan_and_create_store(cfg, store_path, source, overwrite)
    n_chunks = int(group.attrs["n_chunks"])
    todo = chunks_to_write(store_path, retry_failed)
    retried = len(todo) - len(missing_chunks(store_path))
    logger.info("%s: %d images, %d chunks, %d to write (%d retried: they hold failed images)",
                store_path, plan.num_rows, n_chunks, len(todo), retried)
    clear_normalisation(store_path, todo)
    settings, fingerprint = map_settings(cfg), store_fingerprint(cfg)
    seconds = dict.fromkeys(SECONDS, 0.0)
    images_written = 0
    t0 = time.perf_counter()
    with Progress(len(todo), "generate", "chunks", enabled=progress) as bar:
        for chunk in todo:
            result = write_chunk(store_path, chunk, settings, fingerprint, source)
            images_written += result["images"]
            for key in seconds:
                seconds[key] += result["seconds"][key]
            record_failures(store_path, [result])
            bar.update(1, images=images_written)
    wall = time.perf_counter() - t0
    failures = record_failures(store_path, [])
    normalise_store(store_path, cfg)
    return run_summary(store_path, plan, n_chunks, len(todo), failures, seconds, wall, images_written)


def run(cfg: Config, paths: Mapping[str, str | os.PathLike[str]], *, overwrite: bool = False,
        progress: bool = False, retry_failed: bool = True) -> dict[str, Any]:
    """The generate stage, serially: :func:`generate_serial` into ``paths["store"]``.

    Parameters
    ----------
    cfg : Config
    paths : mapping
        ``store``: the store directory (the plan goes next to it, :func:`plan_path`).
    overwrite, progress, retry_failed : bool
        As :func:`generate_serial`.

    Returns
    -------
    dict
        :func:`generate_serial`'s summary.
    """
    return generate_serial(cfg, paths["store"], overwrite=overwrite, progress=progress, retry_failed=retry_failed)

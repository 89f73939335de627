"""The serial generator: plan, create or resume the store, write every missing chunk, normalise.

One process, chunk after chunk, through :func:`cmpipe.store.write_chunk`, the function the Ray
tasks of ``cmpipe.pipeline`` call; it is the reference the Ray generator must reproduce.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config

__all__ = ["PLAN_NAME", "generate_serial", "plan_path", "plan_and_create_store", "run_summary"]

logger = logging.getLogger(__name__)

#: File name of the plan, written next to the store.
PLAN_NAME = "plan.parquet"


def plan_path(store_path: str | os.PathLike[str]) -> Path:
    """Where the plan of a store lives: ``plan.parquet`` in the store's parent directory."""
    return Path(store_path).absolute().parent / PLAN_NAME


def plan_and_create_store(
    cfg: Config, store_path: str | os.PathLike[str], source: Any, overwrite: bool = False
) -> tuple[Path, Any, Any]:
    """The steps before any chunk, shared by the serial and the Ray generators.

    The source's halo catalog, the plan (written to :func:`plan_path`) and the store, created
    or reopened for a resume (:func:`cmpipe.store.create_store`).

    Returns
    -------
    (store_path, plan, group)
        The absolute store path, the plan (a pyarrow Table) and the open zarr group.
    """
    from cmpipe.config import config_fingerprint
    from cmpipe.mapmaking.plan import make_plan, write_plan
    from cmpipe.store.zarr_store import create_store, source_catalog

    store_path = Path(store_path).absolute()
    catalog = source_catalog(cfg, None if cfg.source.kind == "mock" else source)
    plan = make_plan(catalog, cfg.generate, config_fingerprint=config_fingerprint(cfg))
    group = create_store(store_path, plan, cfg, overwrite=overwrite)
    write_plan(plan, plan_path(store_path))
    return store_path, plan, group


def run_summary(
    store_path: Path, plan: Any, n_chunks: int, chunks_written: int, failures: list[dict],
    seconds: dict[str, float], wall: float, images_written: int,
) -> dict[str, Any]:
    """The summary both generators return (the Ray one adds its own keys); see
    :func:`generate_serial` for the keys."""
    return {
        "store": str(store_path),
        "plan": str(plan_path(store_path)),
        "images": plan.num_rows,
        "halos": len(set(plan["halo_id"].to_pylist())),
        "chunks": n_chunks,
        "chunks_written": chunks_written,
        "failures": failures,
        "failed_images": sum(len(f["images"]) for f in failures),
        "seconds": {**seconds, "wall": wall},
        "images_per_s": images_written / wall if images_written and wall > 0 else 0.0,
    }


def generate_serial(
    cfg: Config, store_path: str | os.PathLike[str], overwrite: bool = False, progress: bool = False,
    retry_failed: bool = True,
) -> dict[str, Any]:
    """Make every image of the plan of ``cfg`` into the store at ``store_path``, serially.

    Steps: the halo catalog of the source (:func:`cmpipe.store.source_catalog`), the plan
    (:func:`cmpipe.mapmaking.plan.make_plan`, written to :func:`plan_path`), the store (created, or
    reopened if ``cfg`` made it: a resume), :func:`cmpipe.store.write_chunk` for each chunk not
    yet done and (``retry_failed``) each done chunk holding failed images, the failures record,
    and the normalisation (:func:`cmpipe.store.compute_normalisation`). A complete store without
    failures is left as it is (only the normalisation is recomputed, identically).

    A rerun retries the halos that failed (a bad HDF5 file, since fixed): their images are made
    again, the others of their chunks kept; the failure entries of those that now succeed are
    cleared, those that fail again are replaced with the new error, and the normalisation is
    recomputed (:func:`cmpipe.store.chunks_to_write`).

    Parameters
    ----------
    cfg : Config
    store_path : str or path-like
        The store directory (``.zarr`` by convention).
    overwrite : bool
        Start over, deleting a store made by another config.
    progress : bool
        A tqdm bar over chunks (shown on terminals only).
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
    from tqdm import tqdm

    from cmpipe.physics.sources import open_halo_source
    from cmpipe.store.zarr_store import (
        chunks_to_write,
        clear_normalisation,
        compute_normalisation,
        missing_chunks,
        record_failures,
        write_chunk,
    )

    source = open_halo_source(cfg.source, catalog=cfg.catalog, cosmology=cfg.cosmology, plasma=cfg.plasma,
                              maps=cfg.maps, mock=cfg.mock, sph=cfg.sph)
    store_path, plan, group = plan_and_create_store(cfg, store_path, source, overwrite)
    n_chunks = int(group.attrs["n_chunks"])
    todo = chunks_to_write(store_path, retry_failed)
    retried = len(todo) - len(missing_chunks(store_path))
    logger.info("%s: %d images, %d chunks, %d to write (%d retried: they hold failed images)",
                store_path, plan.num_rows, n_chunks, len(todo), retried)
    clear_normalisation(store_path, todo)
    seconds = dict.fromkeys(("particles", "smoothing", "projection", "writing"), 0.0)
    images_written = 0
    t0 = time.perf_counter()
    for chunk in tqdm(todo, desc="chunks", unit="chunk", disable=None if progress else True):
        result = write_chunk(store_path, chunk, cfg, source=source)
        images_written += result["images"]
        for key in seconds:
            seconds[key] += result["seconds"][key]
        record_failures(store_path, [result])
    wall = time.perf_counter() - t0
    failures = record_failures(store_path, [])
    compute_normalisation(store_path, cfg)
    return run_summary(store_path, plan, n_chunks, len(todo), failures, seconds, wall, images_written)

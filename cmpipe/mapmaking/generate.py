"""The unit of work of the generator: make and write the maps of one chunk of the image store.

:func:`write_chunk` takes plain values and config sections (:class:`~cmpipe.mapmaking.maps.MapSettings`)
and an open halo source; :mod:`cmpipe.stages.generate` calls it chunk after chunk (the serial
generator, the reference) and the Ray tasks of :mod:`cmpipe.pipeline.generate` call the same
function, one chunk each. It returns small metadata, never arrays. Also here: the halo catalog
of a source (:func:`halo_catalog`), where the plan lives (:func:`plan_path`) and the summary
both generators return (:func:`run_summary`).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from cmpipe.store.location import AnyPath, as_path

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import zarr

    from cmpipe.mapmaking.maps import MapSettings
    from cmpipe.physics.halo import HaloSource

__all__ = ["PLAN_NAME", "SECONDS", "halo_catalog", "plan_path", "run_summary", "write_chunk"]

logger = logging.getLogger(__name__)

#: File name of the plan, written next to the store.
PLAN_NAME = "plan.parquet"
#: The timings of :func:`write_chunk` summed by the generators [s] (``total`` is the task's own).
SECONDS: tuple[str, ...] = ("particles", "smoothing", "projection", "writing")


def plan_path(store_path: str | os.PathLike[str] | AnyPath) -> AnyPath:
    """Where the plan of a store lives: ``plan.parquet`` in the store's parent directory (a local
    path, or the URL beside an object-store URL's store)."""
    return as_path(store_path).absolute().parent / PLAN_NAME


def halo_catalog(source: HaloSource, h: float) -> pa.Table:
    """``halo_id`` and ``log10_m200m_msun_h`` of every halo of ``source``, from each halo's
    :meth:`properties` (no particles loaded).

    Parameters
    ----------
    source : HaloSource
    h : float
        H0 / (100 km/s/Mpc), to express M200m in Msun/h.

    Returns
    -------
    pyarrow.Table
        ``halo_id`` (int64), ``log10_m200m_msun_h`` (float64, log10 Msun/h).
    """
    import pyarrow as pa

    ids = [int(i) for i in source.halo_ids()]
    logm = [source.properties(i).log10_m200m_msun_h(h) for i in ids]
    return pa.table({"halo_id": pa.array(ids, pa.int64()), "log10_m200m_msun_h": pa.array(logm, pa.float64())})


def run_summary(
    store_path: AnyPath, plan: Any, n_chunks: int, chunks_written: int, failures: list[dict],
    seconds: dict[str, float], wall: float, images_written: int,
) -> dict[str, Any]:
    """The summary both generators return (the Ray one adds its own keys); see
    :func:`cmpipe.stages.generate.generate_serial` for the keys."""
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


def _chunk_start(group: zarr.Group, sl: slice, chunk_index: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The chunk's maps and failure flags to fill, and the halos to (re)make, in order.

    A first run: all NaN, none failed, every halo of the chunk. A retry (the chunk done, holding
    failed images): the maps and flags as stored, only the halos of the failed images.
    """
    halo_ids = group["halo_id"][sl]
    maps_arr = group["maps"]
    before = group["image_failed"][sl]
    if bool(group["chunk_done"][chunk_index]) and bool(before.any()):  # keep the images that succeeded
        halos = list(dict.fromkeys(int(h) for h in halo_ids[before != 0]))
        logger.info("chunk %d: retrying the %d failed images of halos %s", chunk_index, int(before.sum()), halos)
        return np.asarray(maps_arr[sl], dtype=np.float32), before.astype(np.uint8), halos
    out = np.full((len(halo_ids), *maps_arr.shape[1:]), np.nan, dtype=np.float32)
    return out, np.zeros(len(halo_ids), dtype=np.uint8), list(dict.fromkeys(int(h) for h in halo_ids))


def _halo_images(
    source: HaloSource, halo_id: int, settings: MapSettings, rotations: np.ndarray, axes: np.ndarray,
    seeds: np.ndarray, seconds: dict[str, float],
) -> list[np.ndarray]:
    """The float32 maps of one halo's images (its ``rotations``, ``axes`` and ``seeds``), the
    instrument effects applied where any is on; adds its timings to ``seconds``."""
    from cmpipe.mapmaking.instrument import apply_instrument, instrument_active
    from cmpipe.mapmaking.maps import prepare_halo_with_config, sightline_maps_with_config

    observe = instrument_active(settings.instrument)
    t0 = time.perf_counter()
    halo = source.load(halo_id)
    t1 = time.perf_counter()
    prepared = prepare_halo_with_config(halo, settings)
    t2 = time.perf_counter()
    seconds["particles"] += t1 - t0
    seconds["smoothing"] += t2 - t1
    images = []
    for rotation, axis, seed in zip(rotations, axes, seeds):
        t0 = time.perf_counter()
        data = sightline_maps_with_config(prepared, settings, rotation, int(axis)).data
        if observe:
            data = apply_instrument(data, settings.maps.channels, settings.instrument, settings.cosmology,
                                    settings.lensing, settings.maps.pixel_mpc, int(seed))
        images.append(data.astype(np.float32))
        seconds["projection"] += time.perf_counter() - t0
    return images


def write_chunk(
    store_path: str | os.PathLike[str], chunk_index: int, settings: MapSettings, store_fingerprint: str,
    source: HaloSource,
) -> dict[str, Any]:
    """Make and write the maps of one chunk, then mark it done.

    Each halo of the chunk is loaded and prepared once (:func:`cmpipe.mapmaking.maps.prepare_halo_with_config`),
    then projected along each of its images' rotation and axis
    (:func:`cmpipe.mapmaking.maps.sightline_maps_with_config`), observed through the ``instrument``
    effects on y and S_X if any is on (:func:`cmpipe.mapmaking.instrument.apply_instrument`, seeded by the
    image's ``seed``), cast to float32. The whole shard of
    ``maps`` is written, then ``image_failed``, then ``chunk_done[chunk_index] = 1``. A halo that
    raises :class:`ValueError` (:class:`~cmpipe.physics.halo.HaloError` included) is a
    failure: its images stay NaN and are flagged in ``image_failed``; the chunk is still done.

    A retry: if the chunk is already done and holds failed images
    (:func:`cmpipe.store.failed_chunks`), only the halos of those images are loaded and
    projected again; the other images of the shard are read back and rewritten unchanged. The
    returned ``failures`` are then those of the retried halos that failed again (with their new
    error); :func:`cmpipe.store.record_failures` replaces the chunk's old entries with them.

    Parameters
    ----------
    store_path : str, path-like or URL
        The store (a local path or an object-store URL: a ``upath.UPath`` pickles, so Ray tasks
        take it as it is; each write is whole objects through zarr's ``FsspecStore``).
    chunk_index : int
    settings : MapSettings
        The sections the maps depend on.
    store_fingerprint : str
        The store's ``store_fingerprint`` attribute: :class:`cmpipe.store.StoreError` if it differs
        (:func:`cmpipe.stages.generate.store_fingerprint` of the config).
    source : HaloSource
        The halos (:func:`cmpipe.stages.source.open_source`).

    Returns
    -------
    dict
        ``chunk``, ``images``, ``halos``, ``seconds`` (``particles``, ``smoothing``,
        ``projection``, ``writing``, ``total``, and ``cpu``: the CPU seconds of this process
        during the task, which other jobs on the cores do not inflate) and ``failures``
        (``{chunk, halo_id, images, error}`` per failed halo).
    """
    from cmpipe.store.zarr_store import chunk_slice, open_store, require_fingerprint

    t_start, cpu_start = time.perf_counter(), time.process_time()
    group = open_store(store_path, mode="r+")
    require_fingerprint(group, store_fingerprint, store_path)
    sl = chunk_slice(group, chunk_index)
    halo_ids, seeds = group["halo_id"][sl], group["seed"][sl]
    rotations, axes = group["rotation"][sl], group["axis"][sl]
    out, failed, halos = _chunk_start(group, sl, chunk_index)
    seconds = dict.fromkeys(SECONDS, 0.0)
    failures: list[dict[str, Any]] = []
    for hid in halos:
        rows = np.flatnonzero(halo_ids == hid)
        try:
            out[rows] = _halo_images(source, hid, settings, rotations[rows], axes[rows], seeds[rows], seconds)
            failed[rows] = 0
        except ValueError as exc:
            out[rows] = np.nan
            failed[rows] = 1
            images = [int(sl.start + i) for i in rows]
            failures.append({"chunk": int(chunk_index), "halo_id": hid, "images": images, "error": f"{type(exc).__name__}: {exc}"})
            logger.warning("chunk %d: halo %d failed (%s); its %d images stay NaN", chunk_index, hid, exc, len(rows))
    t0 = time.perf_counter()
    group["maps"][sl] = out
    group["image_failed"][sl] = failed
    group["chunk_done"][chunk_index] = 1
    seconds["writing"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    seconds["cpu"] = time.process_time() - cpu_start
    images = int(sum(np.count_nonzero(halo_ids == h) for h in halos))
    return {"chunk": int(chunk_index), "images": images, "halos": len(halos), "seconds": seconds, "failures": failures}

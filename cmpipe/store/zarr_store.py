"""Create, fill, resume, normalise and validate the Zarr image store (:mod:`cmpipe.store.schema`).

Ray-free: :func:`write_chunk` is the unit of work (one chunk of images, each halo's particles
prepared once), called by the serial generator and by the Ray tasks of ``cmpipe.pipeline``; it
returns small metadata, never arrays. Only the driver writes the group's attributes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmpipe.store.outputs import (
    OutputError, artifact_kind, check_output_dir, check_removable, describe_contents, remove_owned,
)
from cmpipe.store.schema import PLAN_ARRAY_CHUNK, PLAN_ARRAYS, STORE_SCHEMA_VERSION

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import zarr

    from cmpipe.config import Config
    from cmpipe.physics.halo import HaloSource

__all__ = [
    "StoreError",
    "check_store_path",
    "chunks_to_write",
    "clear_normalisation",
    "compute_normalisation",
    "create_store",
    "failed_chunks",
    "missing_chunks",
    "open_store",
    "record_failures",
    "source_catalog",
    "store_config",
    "store_fingerprint",
    "validate_store",
    "write_chunk",
]

logger = logging.getLogger(__name__)

SPLIT_TRAIN = 0


class StoreError(ValueError):
    """A store that cannot be used as asked: another config's, incomplete, or malformed."""


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


def _consolidate(path: str | os.PathLike[str]) -> None:
    """Re-write zarr's consolidated metadata (xarray reads it; zarr warns it is not in spec v3)."""
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)
        zarr.consolidate_metadata(str(path))


def open_store(path: str | os.PathLike[str], mode: str = "r") -> zarr.Group:
    """Open an image store (fresh metadata, not the consolidated copy).

    Parameters
    ----------
    path : str or path-like
        The store directory.
    mode : {"r", "r+"}
        Read only, or read and write.

    Returns
    -------
    zarr.Group

    Raises
    ------
    StoreError
        If there is no cmpipe store at ``path`` or its schema version differs.
    """
    import zarr

    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: no Zarr store here")
    group = zarr.open_group(str(path), mode=mode, use_consolidated=False)
    version = group.attrs.get("cmpipe_store_schema_version")
    if version != STORE_SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema version {version!r}, this cmpipe reads {STORE_SCHEMA_VERSION}")
    return group


def source_catalog(cfg: Config, source: HaloSource | None = None) -> pa.Table:
    """``halo_id`` and ``log10_m200m_msun_h`` of every halo of the configured source.

    ``source.kind: mock`` reads them from :func:`cmpipe.physics.catalog.make_catalog`; other
    sources from each halo's :meth:`properties` (no particles loaded).

    Parameters
    ----------
    cfg : Config
    source : HaloSource, optional
        Default: :func:`cmpipe.physics.sources.open_halo_source` of ``cfg``'s sections.

    Returns
    -------
    pyarrow.Table
        ``halo_id`` (int64), ``log10_m200m_msun_h`` (float64, log10 Msun/h).
    """
    import pyarrow as pa

    if cfg.source.kind == "mock" and source is None:
        from cmpipe.physics.catalog import make_catalog

        return make_catalog(cfg.catalog, cfg.cosmology).select(["halo_id", "log10_m200m_msun_h"])
    if source is None:
        from cmpipe.physics.sources import open_halo_source

        source = open_halo_source(cfg.source, catalog=cfg.catalog, cosmology=cfg.cosmology, plasma=cfg.plasma,
                                  maps=cfg.maps, mock=cfg.mock, sph=cfg.sph)
    ids = [int(i) for i in source.halo_ids()]
    logm = [source.properties(i).log10_m200m_msun_h(cfg.cosmology.h) for i in ids]
    return pa.table({"halo_id": pa.array(ids, pa.int64()), "log10_m200m_msun_h": pa.array(logm, pa.float64())})


def check_store_path(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check, before any work, that an image store may be created, resumed or replaced at ``path``.

    Parameters
    ----------
    path : str or path-like
        The store directory.
    overwrite : bool
        Whether an existing store is to be deleted (only a cmpipe image store or an empty
        directory ever is: :func:`cmpipe.store.outputs.remove_owned`).

    Returns
    -------
    Path

    Raises
    ------
    cmpipe.store.outputs.OutputError
        If the store's directory is not writable, or ``path`` exists and is neither an image
        store nor an empty directory (naming what is there); nothing is deleted.
    """
    path = Path(path)
    check_output_dir(path.absolute().parent, what="directory of --store")
    if overwrite:
        check_removable(path, ("store",), what="--store")
    elif (path.exists() or path.is_symlink()) and artifact_kind(path) != "store" and not (
        path.is_dir() and not any(path.iterdir())
    ):
        raise OutputError(f"--store {path} is {describe_contents(path)}, not a cmpipe image store: choose a new path")
    return path


def create_store(path: str | os.PathLike[str], plan: pa.Table, cfg: Config, overwrite: bool = False) -> zarr.Group:
    """Create the store of ``plan``, or reopen it to resume if ``cfg`` made it.

    Parameters
    ----------
    path : str or path-like
        The store directory.
    plan : pyarrow.Table
        :func:`cmpipe.mapmaking.plan.make_plan` of ``cfg.generate`` (its rows are the images).
    cfg : Config
        The resolved configuration (its YAML and fingerprints go into the attributes).
    overwrite : bool
        Delete an existing store first, even one made by another config. Only a cmpipe image
        store (or an empty directory) is ever deleted (:func:`cmpipe.store.outputs.remove_owned`).

    Returns
    -------
    zarr.Group
        The store, open read-write.

    Raises
    ------
    cmpipe.store.outputs.OutputError
        If ``path`` exists and is neither an empty directory nor an image store (nothing is deleted).
    StoreError
        If a store exists at ``path`` with another :func:`store_fingerprint` (the message names
        both) or other images (halo, axis, seed) than ``plan``, and ``overwrite`` is false.
    """
    import zarr

    from cmpipe.config import config_fingerprint, config_to_yaml
    from cmpipe.mapmaking.maps import CHANNEL_UNITS
    from cmpipe.mapmaking.plan import SPLIT_NAMES, plan_rotations

    path = Path(path)
    fingerprint = store_fingerprint(cfg)
    check_store_path(path, overwrite)
    if overwrite:
        remove_owned(path, ("store",), what="--store")
    if path.exists() and any(path.iterdir()):
        group = open_store(path, mode="r+")
        found = group.attrs.get("store_fingerprint")
        if found != fingerprint:
            raise StoreError(
                f"{path} was made by a config with store fingerprint {found}, this config has {fingerprint}: "
                "use another path, or overwrite=True (--overwrite) to start over"
            )
        if group.attrs.get("n_images") != plan.num_rows or any(
            not np.array_equal(group[name][:], plan[name].to_numpy()) for name in ("halo_id", "axis", "seed")
        ):
            raise StoreError(
                f"{path} was planned differently (same config, but the source's halos changed?): "
                "use overwrite=True (--overwrite) to start over"
            )
        return group

    n = plan.num_rows
    if n == 0:
        raise StoreError("the plan has no images")
    k = cfg.generate.chunk_images
    n_chunks = math.ceil(n / k)
    channels = tuple(cfg.maps.channels)
    npix = cfg.maps.npix
    tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
    if tmp.exists():
        shutil.rmtree(tmp)
    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    maps = group.create_array(
        "maps", shape=(n, len(channels), npix, npix), dtype="float32",
        shards=(k, len(channels), npix, npix), chunks=(1, len(channels), npix, npix),
        fill_value=float("nan"), dimension_names=("image", "channel", "y", "x"),
    )
    maps.attrs.update({"channels": list(channels), "units": [CHANNEL_UNITS[c] for c in channels]})
    block = min(n, PLAN_ARRAY_CHUNK)
    values = {name: plan[name].to_numpy() for name in PLAN_ARRAYS if name != "rotation"}
    values["rotation"] = plan_rotations(plan)
    for name, (dtype, fill, unit) in PLAN_ARRAYS.items():
        shape = (n, 3, 3) if name == "rotation" else (n,)
        dims = ("image", "row", "col") if name == "rotation" else ("image",)
        arr = group.create_array(
            name, shape=shape, dtype=dtype, chunks=(block, *shape[1:]), fill_value=fill, dimension_names=dims
        )
        arr.attrs["unit"] = unit
        arr[...] = np.asarray(values[name], dtype=dtype)
    group.create_array("image_failed", shape=(n,), dtype="uint8", chunks=(k,), fill_value=0, dimension_names=("image",))
    group.create_array("chunk_done", shape=(n_chunks,), dtype="uint8", chunks=(1,), fill_value=0, dimension_names=("chunk",))
    group.attrs.update(
        {
            "cmpipe_store_schema_version": STORE_SCHEMA_VERSION,
            "store_fingerprint": fingerprint,
            "config_fingerprint": config_fingerprint(cfg),
            "config_yaml": config_to_yaml(cfg),
            "channels": list(channels),
            "channel_units": {c: CHANNEL_UNITS[c] for c in channels},
            "npix": npix,
            "pixel_mpc": cfg.maps.pixel_mpc,
            "depth_mpc": cfg.maps.depth_mpc,
            "n_images": n,
            "n_chunks": n_chunks,
            "chunk_images": k,
            "split_names": list(SPLIT_NAMES),
            "failures": [],
            "normalisation": None,
        }
    )
    _consolidate(tmp)
    os.replace(tmp, path)
    logger.info("created %s: %d images in %d chunks of %d", path, n, n_chunks, k)
    return open_store(path, mode="r+")


def _chunk_slice(group: zarr.Group, chunk_index: int) -> slice:
    n, k, n_chunks = group.attrs["n_images"], group.attrs["chunk_images"], group.attrs["n_chunks"]
    if not 0 <= chunk_index < n_chunks:
        raise StoreError(f"chunk {chunk_index} out of range 0 .. {n_chunks - 1}")
    return slice(chunk_index * k, min(n, (chunk_index + 1) * k))


def write_chunk(
    store_path: str | os.PathLike[str], chunk_index: int, cfg: Config, source: HaloSource | None = None
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

    A retry: if the chunk is already done and holds failed images (:func:`failed_chunks`), only
    the halos of those images are loaded and projected again; the other images of the shard are
    read back and rewritten unchanged. The returned ``failures`` are then those of the retried
    halos that failed again (with their new error); :func:`record_failures` replaces the chunk's
    old entries with them.

    Parameters
    ----------
    store_path : str or path-like
    chunk_index : int
    cfg : Config
        Must have the store's :func:`store_fingerprint`.
    source : HaloSource, optional
        Default: :func:`cmpipe.physics.sources.open_halo_source` of ``cfg``'s sections.

    Returns
    -------
    dict
        ``chunk``, ``images``, ``halos``, ``seconds`` (``particles``, ``smoothing``,
        ``projection``, ``writing``, ``total``) and ``failures`` (``{chunk, halo_id, images,
        error}`` per failed halo).
    """
    from cmpipe.mapmaking.instrument import apply_instrument, instrument_active
    from cmpipe.mapmaking.maps import prepare_halo_with_config, sightline_maps_with_config

    t_start = time.perf_counter()
    group = open_store(store_path, mode="r+")
    fingerprint = store_fingerprint(cfg)
    if group.attrs["store_fingerprint"] != fingerprint:
        raise StoreError(
            f"{store_path} has store fingerprint {group.attrs['store_fingerprint']}, the config {fingerprint}"
        )
    if source is None:
        from cmpipe.physics.sources import open_halo_source

        source = open_halo_source(cfg.source, catalog=cfg.catalog, cosmology=cfg.cosmology, plasma=cfg.plasma,
                                  maps=cfg.maps, mock=cfg.mock, sph=cfg.sph)
    sl = _chunk_slice(group, chunk_index)
    halo_ids = group["halo_id"][sl]
    seeds = group["seed"][sl]
    observe = instrument_active(cfg.instrument)
    rotations = group["rotation"][sl]
    axes = group["axis"][sl]
    maps_arr = group["maps"]
    before = group["image_failed"][sl]
    retry = bool(group["chunk_done"][chunk_index]) and bool(before.any())
    if retry:  # keep the images that succeeded; redo the failed halos only
        out = np.asarray(maps_arr[sl], dtype=np.float32)
        failed = before.astype(np.uint8)
        halos = list(dict.fromkeys(int(h) for h in halo_ids[before != 0]))
        logger.info("chunk %d: retrying the %d failed images of halos %s", chunk_index, int(before.sum()), halos)
    else:
        out = np.full((len(halo_ids), *maps_arr.shape[1:]), np.nan, dtype=np.float32)
        failed = np.zeros(len(halo_ids), dtype=np.uint8)
        halos = list(dict.fromkeys(int(h) for h in halo_ids))
    seconds = dict.fromkeys(("particles", "smoothing", "projection", "writing"), 0.0)
    failures: list[dict[str, Any]] = []
    for hid in halos:
        rows = np.flatnonzero(halo_ids == hid)
        try:
            t0 = time.perf_counter()
            halo = source.load(hid)
            t1 = time.perf_counter()
            prepared = prepare_halo_with_config(halo, cfg)
            t2 = time.perf_counter()
            seconds["particles"] += t1 - t0
            seconds["smoothing"] += t2 - t1
            for i in rows:
                t0 = time.perf_counter()
                maps = sightline_maps_with_config(prepared, cfg, rotations[i], int(axes[i]))
                data = maps.data
                if observe:
                    data = apply_instrument(data, cfg.maps.channels, cfg, cfg.maps.pixel_mpc, int(seeds[i]))
                out[i] = data.astype(np.float32)
                seconds["projection"] += time.perf_counter() - t0
            failed[rows] = 0
        except ValueError as exc:
            out[rows] = np.nan
            failed[rows] = 1
            images = [int(sl.start + i) for i in rows]
            failures.append({"chunk": int(chunk_index), "halo_id": hid, "images": images, "error": f"{type(exc).__name__}: {exc}"})
            logger.warning("chunk %d: halo %d failed (%s); its %d images stay NaN", chunk_index, hid, exc, len(rows))
    t0 = time.perf_counter()
    maps_arr[sl] = out
    group["image_failed"][sl] = failed
    group["chunk_done"][chunk_index] = 1
    seconds["writing"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - t_start
    images = int(sum(np.count_nonzero(halo_ids == h) for h in halos))
    return {"chunk": int(chunk_index), "images": images, "halos": len(halos), "seconds": seconds, "failures": failures}


def record_failures(store_path: str | os.PathLike[str], results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Merge the failures of chunk results into the ``failures`` attribute (driver only).

    The entries of every chunk in ``results`` replace that chunk's earlier entries (a chunk
    recomputed without failure clears them).

    Returns
    -------
    list of dict
        The whole ``failures`` record, sorted by chunk and halo.
    """
    results = list(results)
    group = open_store(store_path, mode="r+")
    redone = {int(r["chunk"]) for r in results}
    kept = [f for f in group.attrs.get("failures", []) if int(f["chunk"]) not in redone]
    merged = sorted(kept + [f for r in results for f in r["failures"]], key=lambda f: (f["chunk"], f["halo_id"]))
    if merged != group.attrs.get("failures", []):
        group.attrs["failures"] = merged
        _consolidate(store_path)
    return merged


def missing_chunks(store_path: str | os.PathLike[str]) -> list[int]:
    """Indices of the chunks not marked done, ascending."""
    group = open_store(store_path)
    return [int(i) for i in np.flatnonzero(group["chunk_done"][:] == 0)]


def failed_chunks(store_path: str | os.PathLike[str]) -> list[int]:
    """Indices of the chunks marked done that hold failed images, ascending.

    A chunk counts if an image of it is flagged in ``image_failed`` or if the ``failures``
    record names it (a run stopped between a retry's write and :func:`record_failures` leaves
    a stale entry, which the retry then clears).
    """
    group = open_store(store_path)
    done = group["chunk_done"][:] != 0
    k = int(group.attrs["chunk_images"])
    flagged = np.zeros(len(done), dtype=bool)
    rows = np.flatnonzero(group["image_failed"][:] != 0)
    flagged[rows // k] = True
    for failure in group.attrs.get("failures", []):
        flagged[int(failure["chunk"])] = True
    return [int(i) for i in np.flatnonzero(done & flagged)]


def chunks_to_write(store_path: str | os.PathLike[str], retry_failed: bool = True) -> list[int]:
    """The chunks a (re)run of generate writes: the missing ones and, with ``retry_failed``
    (the default), the done ones holding failed images (:func:`failed_chunks`), ascending.

    A halo that failed (a bad or unreadable file, since fixed) is so tried again: its images
    and failure entries are replaced by the retry's (:func:`write_chunk`,
    :func:`record_failures`). Where a retried image is in the train split, the store's
    ``normalisation`` is cleared first (:func:`clear_normalisation`): the generator recomputes
    it once every chunk is done.
    """
    todo = set(missing_chunks(store_path))
    if retry_failed:
        todo |= set(failed_chunks(store_path))
    return sorted(todo)


def clear_normalisation(store_path: str | os.PathLike[str], chunks: Iterable[int]) -> bool:
    """Set ``normalisation`` to None if a failed train image lies in ``chunks`` (driver only).

    The normalisation excludes failed images; retrying them may change it, so a store in the
    middle of a retry is not normalised (train and infer refuse it) until the generator
    recomputes it (:func:`compute_normalisation`).

    Returns
    -------
    bool
        Whether it was cleared.
    """
    group = open_store(store_path, mode="r+")
    if group.attrs.get("normalisation") is None:
        return False
    k, n = int(group.attrs["chunk_images"]), int(group.attrs["n_images"])
    failed, split = group["image_failed"][:], group["split"][:]
    for chunk in chunks:
        sl = slice(int(chunk) * k, min(n, (int(chunk) + 1) * k))
        if np.any((failed[sl] != 0) & (split[sl] == SPLIT_TRAIN)):
            group.attrs["normalisation"] = None
            _consolidate(store_path)
            logger.info("%s: normalisation cleared (failed train images are retried); recomputed when done", store_path)
            return True
    return False


def store_config(store_path: str | os.PathLike[str]) -> Config:
    """The resolved configuration that created the store (its ``config_yaml`` attribute)."""
    import yaml

    from cmpipe.config import config_from_dict

    return config_from_dict(yaml.safe_load(open_store(store_path).attrs["config_yaml"]), f"{store_path} config_yaml")


def compute_normalisation(store_path: str | os.PathLike[str], cfg: Config | None = None) -> dict[str, Any]:
    """Per-channel transform and min / max over the train split, written to ``normalisation``.

    ``generate.normalisation`` ``log``: ``t(x) = log10(max(x, floor))`` with ``floor =
    generate.log_floor_fraction * max(x)`` (the channel's maximum over the train images);
    ``linear``: ``t(x) = x``. ``min`` and ``max`` are those of ``t`` over the train images
    (failed images excluded), read chunk by chunk.

    Parameters
    ----------
    store_path : str or path-like
    cfg : Config, optional
        Its ``generate.normalisation`` and ``generate.log_floor_fraction`` are used; default:
        the store's own (:func:`store_config`).

    Returns
    -------
    dict
        The ``normalisation`` attribute (see :mod:`cmpipe.store.schema`).

    Raises
    ------
    StoreError
        While chunks are missing, if no train image exists, or (``log``) if a channel's train
        maximum is not > 0.
    """
    missing = missing_chunks(store_path)
    if missing:
        raise StoreError(f"{store_path}: {len(missing)} chunks are not done (first: {missing[:5]}); finish them first")
    if cfg is None:
        cfg = store_config(store_path)
    group = open_store(store_path, mode="r+")
    channels = list(group.attrs["channels"])
    split = group["split"][:]
    usable = (split == SPLIT_TRAIN) & (group["image_failed"][:] == 0)
    lo = np.full(len(channels), np.inf)
    hi = np.full(len(channels), -np.inf)
    total_lo = np.full(len(channels), np.inf)
    total_hi = np.full(len(channels), -np.inf)
    pixel_area = float(group.attrs["pixel_mpc"]) ** 2
    k = group.attrs["chunk_images"]
    maps = group["maps"]
    for c in range(group.attrs["n_chunks"]):
        sl = slice(c * k, min(maps.shape[0], (c + 1) * k))
        rows = np.flatnonzero(usable[sl])
        if len(rows) == 0:
            continue
        block = maps[sl][rows]
        lo = np.minimum(lo, block.min(axis=(0, 2, 3)))
        hi = np.maximum(hi, block.max(axis=(0, 2, 3)))
        totals = block.sum(axis=(2, 3), dtype=np.float64) * pixel_area  # (n, C) [unit Mpc^2]
        total_lo = np.minimum(total_lo, totals.min(axis=0))
        total_hi = np.maximum(total_hi, totals.max(axis=0))
    n_train = int(usable.sum())
    if n_train == 0:
        raise StoreError(f"{store_path}: no usable train images to normalise with")
    kind = cfg.generate.normalisation
    stats: dict[str, dict[str, float | None]] = {}
    for i, name in enumerate(channels):
        lo_i, hi_i = float(lo[i]), float(hi[i])
        if kind == "log":
            if not hi_i > 0:
                raise StoreError(f"{store_path}: channel {name!r} has train maximum {hi_i}; its log transform needs > 0")
            floor = cfg.generate.log_floor_fraction * hi_i
            stats[name] = {"floor": floor, "min": float(np.log10(max(lo_i, floor))), "max": float(np.log10(hi_i))}
        else:
            stats[name] = {"floor": None, "min": lo_i, "max": hi_i}
    record = {
        "kind": kind,
        "log_floor_fraction": cfg.generate.log_floor_fraction if kind == "log" else None,
        "split": "train",
        "n_images": n_train,
        "channels": stats,
        # Range of each map's total (sum x pixel area) over the train images: what
        # cmpipe.stages.reconstruct compares an observed map's total with (out-of-distribution flags).
        "totals": {name: {"min": float(total_lo[i]), "max": float(total_hi[i])} for i, name in enumerate(channels)},
        "totals_unit": "channel unit x Mpc^2",
    }
    if group.attrs.get("normalisation") != record:
        group.attrs["normalisation"] = record
        _consolidate(store_path)
    return record


def validate_store(path: str | os.PathLike[str], require_complete: bool = True) -> dict[str, Any]:
    """Check a store against the schema: version, arrays, dtypes, shapes, completion.

    Parameters
    ----------
    path : str or path-like
    require_complete : bool
        Also require every chunk done.

    Returns
    -------
    dict
        ``images``, ``chunks``, ``missing_chunks``, ``failed_images``, ``normalised``.

    Raises
    ------
    StoreError
        Naming the first problem found.
    """
    group = open_store(path)
    attrs = group.attrs
    n, n_chunks, k = attrs["n_images"], attrs["n_chunks"], attrs["chunk_images"]
    c, npix = len(attrs["channels"]), attrs["npix"]
    expected = {
        "maps": ("float32", (n, c, npix, npix)),
        "image_failed": ("uint8", (n,)),
        "chunk_done": ("uint8", (n_chunks,)),
        **{name: (dtype, (n, 3, 3) if name == "rotation" else (n,)) for name, (dtype, _, _) in PLAN_ARRAYS.items()},
    }
    names = set(group.array_keys())
    for name, (dtype, shape) in expected.items():
        if name not in names:
            raise StoreError(f"{path}: array {name!r} is missing")
        arr = group[name]
        if str(arr.dtype) != dtype or tuple(arr.shape) != shape:
            raise StoreError(f"{path}: array {name!r} is {arr.dtype} {arr.shape}, expected {dtype} {shape}")
    if n_chunks != math.ceil(n / k):
        raise StoreError(f"{path}: n_chunks {n_chunks} != ceil({n} / {k})")
    missing = [int(i) for i in np.flatnonzero(group["chunk_done"][:] == 0)]
    if require_complete and missing:
        raise StoreError(f"{path}: {len(missing)} of {n_chunks} chunks are not done (first: {missing[:5]})")
    failed = int(group["image_failed"][:].sum())
    recorded = sum(len(f["images"]) for f in attrs.get("failures", []))
    if failed != recorded:
        raise StoreError(f"{path}: {failed} images flagged failed, {recorded} in the failures record")
    return {
        "images": n,
        "chunks": n_chunks,
        "missing_chunks": missing,
        "failed_images": failed,
        "normalised": attrs.get("normalisation") is not None,
    }


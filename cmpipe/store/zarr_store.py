"""Create, resume, normalise and validate the Zarr image store (:mod:`cmpipe.store.schema`).

Pure I/O: plain values in (the plan, the map geometry, fingerprints and the config as strings),
no physics and no :class:`cmpipe.config.Config`. The maps of a chunk are made and written by
:func:`cmpipe.mapmaking.generate.write_chunk`; only the driver writes the group's attributes.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmpipe.store.outputs import (
    OutputError, artifact_kind, check_output_dir, check_removable, describe_contents, remove_owned,
)
from cmpipe.store.schema import (
    CHANNEL_UNITS, PLAN_ARRAY_CHUNK, PLAN_ARRAYS, SPLIT_NAMES, SPLIT_TRAIN, STORE_SCHEMA_VERSION,
)

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa
    import zarr

__all__ = [
    "StoreError",
    "check_store_path",
    "chunk_slice",
    "chunks_to_write",
    "clear_normalisation",
    "compute_normalisation",
    "create_store",
    "failed_chunks",
    "missing_chunks",
    "open_store",
    "record_failures",
    "require_fingerprint",
    "validate_store",
]

logger = logging.getLogger(__name__)


class StoreError(ValueError):
    """A store that cannot be used as asked: another config's, incomplete, or malformed."""


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

    from cmpipe.store.location import as_path, zarr_store

    path = as_path(path)  # a local path, or an object-store URL (zarr's FsspecStore)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: no Zarr store here")
    group = zarr.open_group(zarr_store(path, read_only=mode == "r"), mode=mode, use_consolidated=False)
    version = group.attrs.get("cmpipe_store_schema_version")
    if version != STORE_SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema version {version!r}, this cmpipe reads {STORE_SCHEMA_VERSION}")
    return group


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


def create_store(
    path: str | os.PathLike[str],
    plan: pa.Table,
    *,
    channels: Sequence[str],
    npix: int,
    pixel_mpc: float,
    depth_mpc: float,
    chunk_images: int,
    store_fingerprint: str,
    config_fingerprint: str,
    config_yaml: str,
    overwrite: bool = False,
) -> zarr.Group:
    """Create the store of ``plan``, or reopen it to resume if a config with ``store_fingerprint``
    made it.

    Parameters
    ----------
    path : str or path-like
        The store directory.
    plan : pyarrow.Table
        :func:`cmpipe.mapmaking.plan.make_plan`'s plan (its rows are the images).
    channels : sequence of str
        Map channels, in order (names of :data:`cmpipe.store.schema.CHANNEL_UNITS`).
    npix : int
        Map side [pixels].
    pixel_mpc, depth_mpc : float
        Pixel side and projection depth [Mpc].
    chunk_images : int
        Images per chunk (the shard of ``maps`` a chunk task owns).
    store_fingerprint, config_fingerprint, config_yaml : str
        The attributes of those names (:mod:`cmpipe.store.schema`): what the images depend on,
        the whole config's fingerprint, and the resolved config as YAML.
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
        If a store exists at ``path`` with another ``store_fingerprint`` (the message names
        both) or other images (halo, axis, seed) than ``plan``, and ``overwrite`` is false.
    """
    path = Path(path)
    check_store_path(path, overwrite)
    if overwrite:
        remove_owned(path, ("store",), what="--store")
    if path.exists() and any(path.iterdir()):
        return _reopen_for_resume(path, plan, store_fingerprint)
    n = plan.num_rows
    if n == 0:
        raise StoreError("the plan has no images")
    channels = tuple(channels)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
    if tmp.exists():
        shutil.rmtree(tmp)
    group = _create_arrays(tmp, plan, channels, npix, chunk_images)
    n_chunks = math.ceil(n / chunk_images)
    group.attrs.update(
        {
            "cmpipe_store_schema_version": STORE_SCHEMA_VERSION,
            "store_fingerprint": store_fingerprint,
            "config_fingerprint": config_fingerprint,
            "config_yaml": config_yaml,
            "channels": list(channels),
            "channel_units": {c: CHANNEL_UNITS[c] for c in channels},
            "npix": npix,
            "pixel_mpc": pixel_mpc,
            "depth_mpc": depth_mpc,
            "n_images": n,
            "n_chunks": n_chunks,
            "chunk_images": chunk_images,
            "split_names": list(SPLIT_NAMES),
            "failures": [],
            "normalisation": None,
        }
    )
    _consolidate(tmp)
    os.replace(tmp, path)
    logger.info("created %s: %d images in %d chunks of %d", path, n, n_chunks, chunk_images)
    return open_store(path, mode="r+")


def _reopen_for_resume(path: Path, plan: pa.Table, fingerprint: str) -> zarr.Group:
    """The existing store at ``path``, open read-write, if it has ``fingerprint`` and the
    images of ``plan``; else :class:`StoreError`."""
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


def _create_arrays(tmp: Path, plan: pa.Table, channels: tuple[str, ...], npix: int, k: int) -> zarr.Group:
    """A new Zarr 3 group at ``tmp`` with every array of the schema, the plan's written."""
    import zarr

    n = plan.num_rows
    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    maps = group.create_array(
        "maps", shape=(n, len(channels), npix, npix), dtype="float32",
        shards=(k, len(channels), npix, npix), chunks=(1, len(channels), npix, npix),
        fill_value=float("nan"), dimension_names=("image", "channel", "y", "x"),
    )
    maps.attrs.update({"channels": list(channels), "units": [CHANNEL_UNITS[c] for c in channels]})
    block = min(n, PLAN_ARRAY_CHUNK)
    values = {name: plan[name].to_numpy() for name in PLAN_ARRAYS if name != "rotation"}
    # the plan's rotation column (fixed-size lists of 9) as (N, 3, 3)
    flat = plan["rotation"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    values["rotation"] = np.asarray(flat, dtype=np.float64).reshape(-1, 3, 3)
    for name, (dtype, fill, unit) in PLAN_ARRAYS.items():
        shape = (n, 3, 3) if name == "rotation" else (n,)
        dims = ("image", "row", "col") if name == "rotation" else ("image",)
        arr = group.create_array(
            name, shape=shape, dtype=dtype, chunks=(block, *shape[1:]), fill_value=fill, dimension_names=dims
        )
        arr.attrs["unit"] = unit
        arr[...] = np.asarray(values[name], dtype=dtype)
    n_chunks = math.ceil(n / k)
    group.create_array("image_failed", shape=(n,), dtype="uint8", chunks=(k,), fill_value=0, dimension_names=("image",))
    group.create_array("chunk_done", shape=(n_chunks,), dtype="uint8", chunks=(1,), fill_value=0, dimension_names=("chunk",))
    return group


def chunk_slice(group: zarr.Group, chunk_index: int) -> slice:
    """The images of chunk ``chunk_index`` of an open store; :class:`StoreError` if out of range."""
    n, k, n_chunks = group.attrs["n_images"], group.attrs["chunk_images"], group.attrs["n_chunks"]
    if not 0 <= chunk_index < n_chunks:
        raise StoreError(f"chunk {chunk_index} out of range 0 .. {n_chunks - 1}")
    return slice(chunk_index * k, min(n, (chunk_index + 1) * k))


def require_fingerprint(group: zarr.Group, fingerprint: str, store_path: str | os.PathLike[str]) -> None:
    """Raise :class:`StoreError` unless the open store's ``store_fingerprint`` is ``fingerprint``."""
    if group.attrs["store_fingerprint"] != fingerprint:
        raise StoreError(
            f"{store_path} has store fingerprint {group.attrs['store_fingerprint']}, the config {fingerprint}"
        )


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


def compute_normalisation(
    store_path: str | os.PathLike[str], *, kind: str, log_floor_fraction: float
) -> dict[str, Any]:
    """Per-channel transform and min / max over the train split, written to ``normalisation``.

    ``kind`` ``log``: ``t(x) = log10(max(x, floor))`` with ``floor = log_floor_fraction *
    max(x)`` (the channel's maximum over the train images); ``linear``: ``t(x) = x``. ``min``
    and ``max`` are those of ``t`` over the train images (failed images excluded), read chunk
    by chunk.

    Parameters
    ----------
    store_path : str or path-like
    kind : {"log", "linear"}
        The transform (``generate.normalisation``).
    log_floor_fraction : float
        The floor of ``log`` as a fraction of the train maximum [dimensionless]
        (``generate.log_floor_fraction``).

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
    stats: dict[str, dict[str, float | None]] = {}
    for i, name in enumerate(channels):
        lo_i, hi_i = float(lo[i]), float(hi[i])
        if kind == "log":
            if not hi_i > 0:
                raise StoreError(f"{store_path}: channel {name!r} has train maximum {hi_i}; its log transform needs > 0")
            floor = log_floor_fraction * hi_i
            stats[name] = {"floor": floor, "min": float(np.log10(max(lo_i, floor))), "max": float(np.log10(hi_i))}
        else:
            stats[name] = {"floor": None, "min": lo_i, "max": hi_i}
    record = {
        "kind": kind,
        "log_floor_fraction": log_floor_fraction if kind == "log" else None,
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


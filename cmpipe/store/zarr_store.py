"""Create, resume, normalise and validate the Zarr image store (:mod:`cmpipe.store.schema`).

Pure I/O: plain values in (the plan, the map geometry, fingerprints and the config as strings),
no physics and no :class:`cmpipe.config.Config`. The maps of a chunk are made and written by
:func:`cmpipe.mapmaking.generate.write_chunk`; only the driver writes the group's attributes.

Where the store lives
---------------------
A local directory or an object-store URL (``s3://bucket/run/images.zarr``; zarr's
``FsspecStore`` through :func:`cmpipe.store.location.zarr_store`). The guarantees are the same:

* **creation is all or nothing.** On disk the store is built in a hidden sibling directory
  (``.NAME.PID.creating``) and renamed into place, so ``path`` holds a whole store or nothing.
  An object store has no rename: the store is built in place, and a marker object beside it,
  ``.NAME.creating`` (:func:`creation_marker`, outside the Zarr hierarchy), is written *first*,
  before any Zarr object, and deleted *last*, after every array, the attributes and the
  consolidated metadata. A store with its marker is a creation that was interrupted:
  :func:`open_store` refuses it (train, infer and a resume never read it), and
  :func:`create_store` deletes it and creates it again (the marker is only ever written while
  the store's prefix is empty, so what is under it is cmpipe's).
* **one writer per chunk; completion after the data.** A chunk task writes its shard of
  ``maps``, then its chunk of ``image_failed``, then ``chunk_done``: each a whole object (one
  PUT), and a later PUT is seen only after an earlier one completed (strong read-after-write
  consistency), so ``chunk_done`` is never seen before the data it marks.
* **resume from fresh state.** Chunk tasks write from other processes (Ray workers), so before
  deciding what is done every read here forgets the filesystem's cached listings
  (``fs.invalidate_cache()``): what a resume reads is the bucket's state, not a stale copy.
* **mismatched fingerprints are refused, nothing deleted**, as on disk.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from cmpipe.store.location import AnyPath, as_path, is_remote, remove_tree, write_text_atomic, zarr_store
from cmpipe.store.outputs import (
    OutputError, artifact_kind, check_output_dir, check_removable, describe_contents, remove_owned,
)
from cmpipe.store.schema import (
    CHANNEL_LONG_NAMES, CHANNEL_UNITS, MAPS_COORDINATES, PLAN_ARRAY_CHUNK, PLAN_ARRAYS, READABLE_STORE_SCHEMA_VERSIONS,
    SPLIT_NAMES, SPLIT_TRAIN, STORE_SCHEMA_VERSION, VARIABLE_ATTRS,
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
    "consolidate",
    "create_store",
    "creation_interrupted",
    "creation_marker",
    "failed_chunks",
    "missing_chunks",
    "open_store",
    "pixel_centres_mpc",
    "record_failures",
    "require_fingerprint",
    "validate_store",
    "write_coordinate",
]

logger = logging.getLogger(__name__)


class StoreError(ValueError):
    """A store that cannot be used as asked: another config's, incomplete, or malformed."""


def _fresh(path: AnyPath) -> AnyPath:
    """``path`` (:func:`cmpipe.store.location.as_path`'d), its filesystem's cached listings and
    object details forgotten if it is on an object store (other processes write there)."""
    path = as_path(path)
    if is_remote(path):
        path.fs.invalidate_cache()
    return path


def _zarr(path: AnyPath, read_only: bool) -> Any:
    """What ``zarr.open_group`` takes for ``path`` (a local path string, or a fresh
    ``FsspecStore``: its filesystem's cache forgotten)."""
    store = zarr_store(path, read_only=read_only)
    if is_remote(path):
        store.fs.invalidate_cache()
    return store


def consolidate(path: str | os.PathLike[str] | AnyPath) -> None:
    """Re-write zarr's consolidated metadata of the group at ``path`` (xarray reads it; zarr warns
    it is not in spec v3). Call it after every change of the group's metadata (arrays, attributes),
    never while another process changes them."""
    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part", category=UserWarning)
        zarr.consolidate_metadata(_zarr(as_path(path), read_only=False))


def creation_marker(path: str | os.PathLike[str] | AnyPath) -> AnyPath:
    """The object beside a store on an object store, ``.NAME.creating``, that exists while the store
    is being created (written first, deleted last; see the module docstring)."""
    path = as_path(path)
    return path.parent / f".{path.name}.creating"


def creation_interrupted(path: str | os.PathLike[str] | AnyPath) -> bool:
    """Whether ``path`` is a store whose creation on an object store was interrupted (its
    :func:`creation_marker` exists). Always False on disk (a store appears there whole, by a
    rename)."""
    path = _fresh(path)
    if not is_remote(path):
        return False
    marker = creation_marker(path)
    try:
        marker.fs.cat_file(marker.path, start=0)  # one GET (``exists``: a HEAD and, when missing, a LIST)
    except FileNotFoundError:
        return False
    return True


def open_store(path: str | os.PathLike[str], mode: str = "r") -> zarr.Group:
    """Open an image store (fresh metadata, not the consolidated copy; on an object store, fresh
    listings too).

    Parameters
    ----------
    path : str, path-like or URL
        The store directory (a local path or an object-store URL).
    mode : {"r", "r+"}
        Read only, or read and write.

    Returns
    -------
    zarr.Group

    Raises
    ------
    StoreError
        If there is no cmpipe store at ``path``, its creation was interrupted
        (:func:`creation_interrupted`), or its schema version is not one this cmpipe reads
        (:data:`cmpipe.store.schema.READABLE_STORE_SCHEMA_VERSIONS`) or, with ``mode="r+"``, not
        the one it writes (the message names both).
    """
    import zarr

    path = _fresh(path)
    if creation_interrupted(path):
        raise StoreError(
            f"{path}: the store's creation was interrupted ({creation_marker(path).name} is beside it); run "
            "cmpipe generate again to create it"
        )
    if not is_remote(path) and not (path / "zarr.json").is_file():
        raise StoreError(f"{path}: no Zarr store here")
    try:
        group = zarr.open_group(_zarr(path, read_only=mode == "r"), mode=mode, use_consolidated=False, zarr_format=3)
    except FileNotFoundError:  # on an object store: no zarr.json (zarr.errors.GroupNotFoundError)
        raise StoreError(f"{path}: no Zarr store here") from None
    version = group.attrs.get("cmpipe_store_schema_version")
    if version not in READABLE_STORE_SCHEMA_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_STORE_SCHEMA_VERSIONS)
        raise StoreError(f"{path}: store schema version {version!r}; this cmpipe reads versions {readable}")
    if mode != "r" and version != STORE_SCHEMA_VERSION:
        raise StoreError(
            f"{path}: store schema version {version!r}; this cmpipe reads it but writes only version "
            f"{STORE_SCHEMA_VERSION}: make the store again (cmpipe generate --overwrite) to resume or renormalise it"
        )
    return group


def check_store_path(path: str | os.PathLike[str] | AnyPath, overwrite: bool = False) -> AnyPath:
    """Check, before any work, that an image store may be created, resumed or replaced at ``path``.

    Parameters
    ----------
    path : str, path-like or URL
        The store directory (a local path or an object-store URL).
    overwrite : bool
        Whether an existing store is to be deleted (only a cmpipe image store or an empty
        directory ever is: :func:`cmpipe.store.outputs.remove_owned`).

    Returns
    -------
    pathlib.Path or upath.UPath
        :func:`cmpipe.store.location.as_path` of ``path``.

    Raises
    ------
    cmpipe.store.outputs.OutputError
        If the store's directory is not writable (on an object store: no such bucket, no
        credentials), or ``path`` exists and is neither an image store (a whole one, or one whose
        creation was interrupted: :func:`creation_marker`) nor an empty directory (naming what is
        there); nothing is deleted.
    cmpipe.store.location.LocationError
        If ``path`` is a URL of an unknown scheme or its filesystem is not installed.
    """
    path = _fresh(path)
    check_output_dir(path.absolute().parent, what="directory of --store")
    if creation_interrupted(path):
        return path  # cmpipe's own half-made store: create_store makes it again
    if overwrite:
        check_removable(path, ("store",), what="--store")
    elif (path.exists() or path.is_symlink()) and artifact_kind(path) != "store" and not (
        path.is_dir() and not any(path.iterdir())
    ):
        raise OutputError(f"--store {path} is {describe_contents(path)}, not a cmpipe image store: choose a new path")
    return path


def create_store(
    path: str | os.PathLike[str] | AnyPath,
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

    A new store appears whole: on disk by a rename of the directory it was built in, on an object
    store by deleting its :func:`creation_marker` last (see the module docstring). A store whose
    creation was interrupted is deleted and created again.

    Parameters
    ----------
    path : str, path-like or URL
        The store directory (a local path or an object-store URL).
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
    path = check_store_path(path, overwrite)
    if creation_interrupted(path):
        logger.warning("%s: its creation was interrupted (%s); creating it again", path, creation_marker(path))
        remove_tree(path)
    elif overwrite:
        remove_owned(path, ("store",), what="--store")
    path = _fresh(path)
    if path.exists() and any(path.iterdir()):
        return _reopen_for_resume(path, plan, store_fingerprint)
    n = plan.num_rows
    if n == 0:
        raise StoreError("the plan has no images")
    channels = tuple(channels)
    n_chunks = math.ceil(n / chunk_images)
    attrs = {
        "cmpipe_store_schema_version": STORE_SCHEMA_VERSION,
        "store_fingerprint": store_fingerprint,
        "config_fingerprint": config_fingerprint,
        "config_yaml": config_yaml,
        "channels": list(channels),
        "channel_units": {c: CHANNEL_UNITS[c] for c in channels},
        "channel_long_names": {c: CHANNEL_LONG_NAMES[c] for c in channels},
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
    if is_remote(path):
        _create_in_place(path, plan, channels, npix, chunk_images, attrs)
    else:
        _create_and_rename(path, plan, channels, npix, chunk_images, attrs)
    logger.info("created %s: %d images in %d chunks of %d", path, n, n_chunks, chunk_images)
    return open_store(path, mode="r+")


def _create_and_rename(
    path: AnyPath, plan: pa.Table, channels: tuple[str, ...], npix: int, k: int, attrs: dict[str, Any]
) -> None:
    """On disk: the whole store built in ``.NAME.PID.creating`` beside ``path``, renamed into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
    if tmp.exists():
        shutil.rmtree(tmp)
    group = _create_arrays(tmp, plan, channels, npix, k, float(attrs["pixel_mpc"]))
    group.update_attributes(attrs)  # one write of zarr.json, not one per key
    consolidate(tmp)
    os.replace(tmp, path)


def _create_in_place(
    path: AnyPath, plan: pa.Table, channels: tuple[str, ...], npix: int, k: int, attrs: dict[str, Any]
) -> None:
    """On an object store (no rename): the :func:`creation_marker` written first, the store built at
    ``path`` (arrays, plan values, attributes, consolidated metadata), the marker deleted last."""
    marker = creation_marker(path)
    write_text_atomic(marker, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": time.time()}))
    group = _create_arrays(path, plan, channels, npix, k, float(attrs["pixel_mpc"]))
    group.update_attributes(attrs)
    consolidate(path)
    marker.unlink()
    _fresh(path)


def _reopen_for_resume(path: AnyPath, plan: pa.Table, fingerprint: str) -> zarr.Group:
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


def _create_arrays(
    where: AnyPath, plan: pa.Table, channels: tuple[str, ...], npix: int, k: int, pixel_mpc: float
) -> zarr.Group:
    """A new Zarr 3 group at ``where`` with every array of the schema, the plan's and the
    coordinates written (each array's metadata, its CF attributes included, written once)."""
    import zarr

    n = plan.num_rows
    group = zarr.open_group(_zarr(where, read_only=False), mode="w", zarr_format=3)
    group.create_array(
        "maps", shape=(n, len(channels), npix, npix), dtype="float32",
        shards=(k, len(channels), npix, npix), chunks=(1, len(channels), npix, npix),
        fill_value=float("nan"), dimension_names=("image", "channel", "y", "x"),
        attributes={**VARIABLE_ATTRS["maps"], "coordinates": " ".join(MAPS_COORDINATES)},
    )
    block = min(n, PLAN_ARRAY_CHUNK)
    values = {name: plan[name].to_numpy() for name in PLAN_ARRAYS if name != "rotation"}
    # the plan's rotation column (fixed-size lists of 9) as (N, 3, 3)
    flat = plan["rotation"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    values["rotation"] = np.asarray(flat, dtype=np.float64).reshape(-1, 3, 3)
    values["image"] = np.arange(n, dtype=np.int64)
    for name, (dtype, fill) in {"image": ("int64", -1), **{m: v[:2] for m, v in PLAN_ARRAYS.items()}}.items():
        shape = (n, 3, 3) if name == "rotation" else (n,)
        dims = ("image", "row", "col") if name == "rotation" else ("image",)
        write_coordinate(group, name, np.asarray(values[name], dtype=dtype), dims, VARIABLE_ATTRS[name],
                         chunks=(block, *shape[1:]), fill_value=fill)
    write_coordinate(group, "channel", list(channels), ("channel",), VARIABLE_ATTRS["channel"])
    write_coordinate(group, "channel_units", [CHANNEL_UNITS[c] for c in channels], ("channel",),
                     VARIABLE_ATTRS["channel_units"])
    for axis in ("x", "y"):
        write_coordinate(group, axis, pixel_centres_mpc(npix, pixel_mpc), (axis,), VARIABLE_ATTRS[axis])
    n_chunks = math.ceil(n / k)
    group.create_array("image_failed", shape=(n,), dtype="uint8", chunks=(k,), fill_value=0, dimension_names=("image",),
                       attributes=VARIABLE_ATTRS["image_failed"])
    group.create_array("chunk_done", shape=(n_chunks,), dtype="uint8", chunks=(1,), fill_value=0,
                       dimension_names=("chunk",), attributes=VARIABLE_ATTRS["chunk_done"])
    return group


def pixel_centres_mpc(npix: int, pixel_mpc: float) -> np.ndarray:
    """Pixel centres [Mpc] of an ``npix``-pixel map axis centred on the halo, float64 (npix,):
    those of :class:`cmpipe.sph.projection.MapGrid`, ``(i + 0.5) pixel_mpc - npix pixel_mpc / 2``."""
    return (np.arange(npix) + 0.5) * float(pixel_mpc) - 0.5 * npix * float(pixel_mpc)


def write_coordinate(
    group: zarr.Group, name: str, values: Any, dims: Sequence[str], attributes: Mapping[str, Any], *,
    chunks: Sequence[int] | None = None, fill_value: Any = None,
) -> zarr.Array:
    """Create array ``name`` of ``group`` holding ``values`` whole (a coordinate or other array
    written once, by the single writer that creates the group).

    Parameters
    ----------
    values : array-like
        Numbers (their dtype is kept) or strings (stored as zarr's variable-length UTF-8 strings).
    dims : sequence of str
        Its ``dimension_names`` (an array named as its one dimension is xarray's index of it).
    attributes : mapping
        Its CF attributes (``long_name``, ``units``, ...).
    chunks : sequence of int, optional
        Default: one chunk.
    """
    strings = isinstance(values, (list, tuple))
    data = np.asarray(values, dtype=np.dtypes.StringDType()) if strings else np.asarray(values)
    array = group.create_array(
        name, shape=data.shape, dtype=str if strings else data.dtype, chunks=tuple(chunks or data.shape),
        fill_value=fill_value, dimension_names=tuple(dims), attributes=dict(attributes),
    )
    array[...] = data
    return array


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
        consolidate(store_path)
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
            consolidate(store_path)
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
        "totals_units": {name: _times_mpc2(_channel_unit(group.attrs, name)) for name in channels},
    }
    if group.attrs.get("normalisation") != record:
        group.attrs["normalisation"] = record
        consolidate(store_path)
    return record


def _channel_unit(attrs: Mapping[str, Any], channel: str) -> str:
    """A channel's astropy unit string from a store's root attributes (``channel_units``: a mapping)."""
    from cmpipe.store.schema import astropy_unit_string

    units = attrs.get("channel_units") or {}
    return astropy_unit_string(str(units[channel])) if isinstance(units, Mapping) else CHANNEL_UNITS[channel]


def _times_mpc2(unit: str) -> str:
    """The astropy unit string of ``unit`` times Mpc^2 (a map's sum times the pixel area)."""
    return "Mpc2" if unit in ("", "1") else f"{unit} Mpc2"


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
    if attrs["cmpipe_store_schema_version"] >= 2:
        strings = "StringDType()"  # zarr's variable-length UTF-8, as numpy's StringDType
        expected.update({"image": ("int64", (n,)), "channel": (strings, (c,)), "channel_units": (strings, (c,)),
                         "x": ("float64", (npix,)), "y": ("float64", (npix,))})
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


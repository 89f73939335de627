"""The posterior store's data contract: ``RESULTS/posterior.zarr``, written by ``cmpipe infer``.

A Zarr 3 group with one entry per inferred test image (``M`` images, ``S = infer.n_samples``,
targets ``gas_sigma``, ``dm_sigma`` and ``C`` conditions (the model's, attribute ``conditions``;
by default ``sz_y``, ``xray_sb``), ``R = model.resolution``). Maps are physical (the image store's
units, :data:`cmpipe.store.schema.CHANNEL_UNITS`) on the model's grid (block means of the store's
maps, pixel side ``pixel_mpc`` in the attrs). Every array carries zarr 3 ``dimension_names`` and
CF attributes (``long_name``; ``units``, astropy's spelling, where the values are a quantity), and
the metadata is consolidated, so ``xarray.open_zarr(RESULTS / "posterior.zarr")`` alone gives a
Dataset with coordinates (``.sel(target="gas_sigma")``, ``.sel(condition_channel="sz_y")``).

======================  ========  ===============  ================  ====================================
array                   dtype     shape            chunks            dims: meaning
======================  ========  ===============  ================  ====================================
``image``               int64     (M,)             (M,)              image: index coordinate, the image's
                                                                     index in the image store (its
                                                                     ``image``)
``image_index``         int64     (M,)             (M,)              image: the same (version 1's name)
``halo_id``             int64     (M,)             (M,)              image: halo within the source
``log10_m200m_msun_h``  float64   (M,)             (M,)              image: M200m [``dex(solMass / littleh)``]
``rotation_index``,     int32,    (M,)             (M,)              image: rotation and line of sight of
``axis``                int8                                         the image (when the writer knows them)
``target``              string    (2,)             (2,)              target: index coordinate, names
``target_units``        string    (2,)             (2,)              target: astropy unit of each
``condition_channel``   string    (C,)             (C,)              condition_channel: index coordinate
``condition_units``     string    (C,)             (C,)              condition_channel: astropy unit
``x``, ``y``            float64   (R,)             (R,)              x, y: pixel centres [Mpc] of the
                                                                     model grid, halo centre at 0
``truth``               float32   (M, 2, R, R)     (1, 2, R, R)      image, target, y, x: true gas, DM maps
``condition``           float32   (M, C, R, R)     (1, C, R, R)      image, condition_channel, y, x:
                                                                     condition maps (the model's input)
``mean``                float32   (M, 2, R, R)     (1, 2, R, R)      image, target, y, x: posterior mean
                                                                     (S samples)
``std``                 float32   (M, 2, R, R)     (1, 2, R, R)      posterior std (ddof 1)
``samples``             float32   (M, S, 2, R, R)  (1, S, 2, R, R)   image, sample, target, y, x: every
                                                                     sample (``infer.save_samples``)
``done``                uint8     (M,)             (1,)              image: 1: the image's maps and table
                                                                     rows are written (set last)
======================  ========  ===============  ================  ====================================

``image_index``, ``halo_id``, ``log10_m200m_msun_h``, ``rotation_index``, ``axis`` and the
``*_units`` arrays are non-dimension coordinates of the map arrays (their CF ``coordinates``).
``truth``, ``mean``, ``std`` and ``samples`` carry ``units`` when both targets share one (they
do: ``"1"``); ``condition`` has none (its channels differ): ``condition_units`` holds each.

Each image (row of the arrays) is written by exactly one actor call, whole chunks only, so actors
may run concurrently; they write chunks, never metadata, so the metadata consolidated at creation
(:func:`open_or_create`, after every array and attribute) stays true to the end. Root attributes:
``cmpipe_posterior_schema_version``, ``targets``, ``conditions``, ``channel_units`` (astropy
strings), ``pixel_mpc``, ``resolution``, ``n_samples``, ``sampler``, ``steps``, ``denoise``,
``seed``, ``checkpoint`` (path), ``checkpoint_step``, ``store`` (path), ``store_fingerprint``,
``config_yaml`` (the resolved config of the run). A rerun with another sampler, checkpoint or store
is refused (:func:`open_or_create`).

Version 2 (issue 21) added the coordinate arrays (``image``, ``target``, ``condition_channel``,
their units, ``x``, ``y``, ``rotation_index``, ``axis``), separate ``target`` and
``condition_channel`` dimensions (version 1 named both ``channel``), CF attributes and the
consolidated metadata. A version-1 store is read (the report, :func:`cmpipe.open_posterior`) but
not continued: ``cmpipe infer`` refuses it, naming both versions.

``RESULTS`` may be an object-store URL (:mod:`cmpipe.store.location`): the group is then opened
through zarr's ``FsspecStore``. Every chunk is one object written in one PUT, and an image's
``done`` chunk (one image per chunk) is written after its maps, so a reader that sees ``done``
sees the maps (S3's strong read-after-write consistency); whether the store exists is asked
afresh (:func:`cmpipe.store.tables.refreshed`), never from a listing cached before another
process wrote it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cmpipe.store.location import AnyPath, as_path, zarr_store
from cmpipe.store.schema import TARGET_CHANNELS, VARIABLE_ATTRS, astropy_unit_string
from cmpipe.store.tables import refreshed

#: Version of the posterior store's layout; bump on any change.
POSTERIOR_SCHEMA_VERSION = 2
#: Versions this cmpipe reads (it writes and continues only :data:`POSTERIOR_SCHEMA_VERSION`).
READABLE_POSTERIOR_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)

#: Per-image coordinates: name -> (dtype, CF attributes); ``rotation_index`` and ``axis`` only
#: when the writer's ``meta`` has them.
_IMAGE_COORDS: dict[str, tuple[str, dict[str, Any]]] = {
    "image_index": ("int64", {"long_name": "image index in the image store (= image)"}),
    "halo_id": ("int64", VARIABLE_ATTRS["halo_id"]),
    "log10_m200m_msun_h": ("float64", VARIABLE_ATTRS["log10_m200m_msun_h"]),
    "rotation_index": ("int32", VARIABLE_ATTRS["rotation_index"]),
    "axis": ("int8", VARIABLE_ATTRS["axis"]),
}
#: Map arrays: name -> (dimensions, long_name).
_MAP_ARRAYS: dict[str, tuple[tuple[str, ...], str]] = {
    "truth": (("image", "target", "y", "x"), "true target map on the model grid"),
    "condition": (("image", "condition_channel", "y", "x"), "condition map on the model grid (the model's input)"),
    "mean": (("image", "target", "y", "x"), "posterior mean of the samples"),
    "std": (("image", "target", "y", "x"), "posterior standard deviation of the samples (ddof 1)"),
    "samples": (("image", "sample", "target", "y", "x"), "posterior sample"),
}

#: Attributes a rerun must match to continue a posterior store.
IDENTITY_ATTRS = ("n_samples", "sampler", "steps", "denoise", "seed", "checkpoint_step", "store_fingerprint",
                  "resolution", "save_samples", "conditions")


class PosteriorStoreError(ValueError):
    """A posterior store that cannot be continued, or is incomplete."""


def posterior_path(results: str | os.PathLike[str]) -> AnyPath:
    """``RESULTS/posterior.zarr`` (a path or a URL; its fsspec listing cache dropped, so that
    ``exists()`` is asked afresh: :func:`cmpipe.store.tables.refreshed`)."""
    return refreshed(as_path(results) / "posterior.zarr")


def open_or_create(
    results: str | os.PathLike[str],
    meta: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
):
    """Open ``RESULTS/posterior.zarr``, creating it if absent (its metadata consolidated last).

    Parameters
    ----------
    results : str or path-like
    meta : mapping
        ``image_index``, ``halo_id``, ``log10_m200m_msun_h`` of the ``M`` images, in order, and
        optionally ``rotation_index`` and ``axis`` (coordinates when given).
    attrs : mapping
        Root attributes (see the module docstring); those of :data:`IDENTITY_ATTRS` and the
        image list must equal an existing store's. ``channel_units`` are written in astropy's
        spelling (:func:`cmpipe.store.schema.astropy_unit_string`).

    Raises
    ------
    PosteriorStoreError
        If an existing store was made by another sampler, checkpoint, store or image list
        (naming the attribute), or is of another schema version: use another results directory.
    """
    import zarr

    path = posterior_path(results)
    if path.exists():
        group = zarr.open_group(zarr_store(path), mode="r+", use_consolidated=False)
        version = group.attrs.get("cmpipe_posterior_schema_version")
        if version != POSTERIOR_SCHEMA_VERSION:
            raise PosteriorStoreError(
                f"{path}: posterior schema version {version!r}; this cmpipe continues only version "
                f"{POSTERIOR_SCHEMA_VERSION}: use another --out directory (or delete this one)"
            )
        for key in IDENTITY_ATTRS:
            if group.attrs.get(key) != attrs.get(key):
                raise PosteriorStoreError(
                    f"{path}: made with {key}={group.attrs.get(key)!r}, this run has {attrs.get(key)!r}; "
                    "use another --out directory (or delete this one) to infer with other settings"
                )
        if not np.array_equal(group["image_index"][:], np.asarray(meta["image_index"])):
            raise PosteriorStoreError(f"{path}: made for other test images; use another --out directory")
        return group
    attrs = dict(attrs)
    if "channel_units" in attrs:
        attrs["channel_units"] = {c: astropy_unit_string(str(u)) for c, u in dict(attrs["channel_units"]).items()}
    group = zarr.open_group(zarr_store(path), mode="w", zarr_format=3)
    _create_arrays(group, meta, attrs)
    group.update_attributes({"cmpipe_posterior_schema_version": POSTERIOR_SCHEMA_VERSION, **attrs})
    from cmpipe.store.zarr_store import consolidate

    consolidate(path)
    return group


def _create_arrays(group: Any, meta: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> None:
    """Every array of a new posterior store: the coordinates written, the maps empty (NaN)."""
    from cmpipe.store.zarr_store import pixel_centres_mpc, write_coordinate

    m, r, s = len(meta["image_index"]), int(attrs["resolution"]), int(attrs["n_samples"])
    targets = [str(t) for t in attrs.get("targets", TARGET_CHANNELS)]
    conditions = [str(c) for c in attrs.get("conditions", ("sz_y", "xray_sb"))]
    units = {c: astropy_unit_string(str(u)) for c, u in dict(attrs.get("channel_units") or {}).items()}
    image_chunks = (max(m, 1),)
    write_coordinate(group, "image", np.asarray(meta["image_index"], dtype=np.int64), ("image",),
                     {"long_name": "image index in the image store"}, chunks=image_chunks)
    coords = [name for name in _IMAGE_COORDS if name in meta]
    for name in coords:
        dtype, cf = _IMAGE_COORDS[name]
        write_coordinate(group, name, np.asarray(meta[name], dtype=dtype), ("image",), cf, chunks=image_chunks)
    for dim, names, what in (("target", targets, "target"), ("condition_channel", conditions, "condition")):
        write_coordinate(group, dim, names, (dim,), {"long_name": f"{what} channel"})
        if all(c in units for c in names):
            write_coordinate(group, f"{what}_units", [units[c] for c in names], (dim,),
                             {"long_name": f"astropy unit of the {what} channel's maps"})
            coords.append(f"{what}_units")
    for axis in ("x", "y"):
        write_coordinate(group, axis, pixel_centres_mpc(r, float(attrs["pixel_mpc"])), (axis,),
                         {**VARIABLE_ATTRS[axis], "long_name": f"pixel centre along the model grid's {axis} axis "
                                                               "(halo centre at 0), physical"})
    sizes = {"image": m, "sample": s, "target": len(targets), "condition_channel": len(conditions), "y": r, "x": r}
    target_units = {units.get(t) for t in targets}
    for name, (dims, long_name) in _MAP_ARRAYS.items():
        if name == "samples" and not attrs.get("save_samples"):
            continue
        own = "condition_units" if name == "condition" else "target_units"
        cf: dict[str, Any] = {"long_name": long_name,
                              "coordinates": " ".join(x for x in coords if not x.endswith("_units") or x == own)}
        if name != "condition" and len(target_units) == 1 and None not in target_units:
            cf["units"] = next(iter(target_units))  # both targets' unit (else: target_units)
        shape = tuple(sizes[d] for d in dims)
        group.create_array(name, shape=shape, chunks=(1, *shape[1:]), dtype="float32", fill_value=np.nan,
                           dimension_names=list(dims), attributes=cf)
    group.create_array("done", shape=(m,), chunks=(1,), dtype="uint8", fill_value=0, dimension_names=["image"],
                       attributes={"long_name": "the image's maps and table rows are written", "flag_values": [0, 1],
                                   "flag_meanings": "not_done done"})


def open_posterior(results: str | os.PathLike[str], require_complete: bool = False, writable: bool = False):
    """Open ``RESULTS/posterior.zarr`` (read-only unless ``writable``).

    Raises
    ------
    PosteriorStoreError
        If it does not exist, has a schema version this cmpipe does not read
        (:data:`READABLE_POSTERIOR_SCHEMA_VERSIONS`; with ``writable``, not the one it writes), or
        (``require_complete``) has images not done.
    """
    import zarr

    path = posterior_path(results)
    if not path.exists():
        raise PosteriorStoreError(f"{path}: no posterior store (run `cmpipe infer` first)")
    group = zarr.open_group(zarr_store(path, read_only=not writable), mode="r+" if writable else "r",
                            use_consolidated=False)
    version = group.attrs.get("cmpipe_posterior_schema_version")
    if version not in READABLE_POSTERIOR_SCHEMA_VERSIONS or (writable and version != POSTERIOR_SCHEMA_VERSION):
        readable = ", ".join(str(v) for v in READABLE_POSTERIOR_SCHEMA_VERSIONS)
        raise PosteriorStoreError(f"{path}: posterior schema version {version!r}; this cmpipe reads versions "
                                  f"{readable} and writes {POSTERIOR_SCHEMA_VERSION}")
    if require_complete:
        missing = int((group["done"][:] == 0).sum())
        if missing:
            raise PosteriorStoreError(f"{path}: {missing} of {group['done'].shape[0]} images not done; "
                                      "rerun `cmpipe infer` to finish them")
    return group


def done_images(results: str | os.PathLike[str]) -> set[int]:
    """Store indices of the images already done (empty if there is no posterior store)."""
    path = posterior_path(results)
    if not path.exists():
        return set()
    group = open_posterior(results)
    return set(int(i) for i in group["image_index"][:][group["done"][:] == 1])


def mark_not_done(results: str | os.PathLike[str], images: set[int]) -> None:
    """Clear the ``done`` flag of these store images (their table rows were removed)."""
    group = open_posterior(results, writable=True)
    index = group["image_index"][:]
    for row in np.flatnonzero(np.isin(index, sorted(images))):
        group["done"][int(row)] = 0


def write_images(group, rows: Sequence[int], images: Sequence[Mapping[str, np.ndarray]]) -> None:
    """Write several images' ``truth``, ``condition``, ``mean``, ``std`` (and ``samples``, if the
    store keeps them), then mark them done.

    Each array is opened once and the images' chunks (one image per chunk) are written together,
    concurrently by zarr: a few requests per batch on an object store, not a few per image. The
    ``done`` flags are written after every map of the batch.

    Parameters
    ----------
    group : zarr.Group
        The posterior store, writable (:func:`open_posterior`).
    rows : sequence of int
        The images' positions in the posterior store (distinct).
    images : sequence of mappings
        One per row: array name -> that image's array (cast to float32).
    """
    if len(rows) == 0:
        return
    index = np.asarray(rows, dtype=np.int64)
    for name in images[0]:
        try:
            array = group[name]
        except KeyError:
            if name == "samples":  # not kept (infer.save_samples false)
                continue
            raise
        array.oindex[index] = np.stack([np.asarray(image[name], dtype=np.float32) for image in images])
    group["done"].oindex[index] = np.ones(len(index), dtype=np.uint8)


def write_image(group, row: int, arrays: Mapping[str, np.ndarray]) -> None:
    """Write one image's ``truth``, ``condition``, ``mean``, ``std`` (and ``samples``), then
    mark it done (:func:`write_images` of one image). ``row`` is the image's position in the
    posterior store."""
    write_images(group, [row], [arrays])

"""The posterior store's data contract: ``RESULTS/posterior.zarr``, written by ``cmpipe infer``.

A Zarr 3 group with one entry per inferred test image (``M`` images, ``S = infer.n_samples``,
targets ``gas_sigma``, ``dm_sigma`` and ``C`` conditions (the model's, attribute ``conditions``;
by default ``sz_y``, ``xray_sb``), ``R = model.resolution``). Maps are physical (the store's units, :data:`cmpipe.mapmaking.maps.CHANNEL_UNITS`)
on the model's grid (block means of the store's maps, pixel side ``pixel_mpc`` in the attrs).

====================  ========  ===============  ================  ==============================
array                 dtype     shape            chunks            meaning
====================  ========  ===============  ================  ==============================
``image_index``       int64     (M,)             (M,)              index in the image store
``halo_id``           int64     (M,)             (M,)              halo within the source
``log10_m200m_msun_h`` float64  (M,)             (M,)              log10 M200m [log10 Msun/h]
``truth``             float32   (M, 2, R, R)     (1, 2, R, R)      true gas, DM maps
``condition``         float32   (M, C, R, R)     (1, C, R, R)      condition maps (the model's input)
``mean``              float32   (M, 2, R, R)     (1, 2, R, R)      posterior mean (S samples)
``std``               float32   (M, 2, R, R)     (1, 2, R, R)      posterior std (ddof 1)
``samples``           float32   (M, S, 2, R, R)  (1, S, 2, R, R)   every sample (``infer.save_samples``)
``done``              uint8     (M,)             (1,)              1: the image's maps and table rows
                                                                   are written (set last)
====================  ========  ===============  ================  ==============================

Each image (row of the arrays) is written by exactly one actor call, whole chunks only, so actors
may run concurrently. Root attributes: ``cmpipe_posterior_schema_version``, ``targets``,
``conditions``, ``channel_units``, ``pixel_mpc``, ``resolution``, ``n_samples``, ``sampler``,
``steps``, ``denoise``, ``seed``, ``checkpoint`` (path), ``checkpoint_step``,
``store`` (path), ``store_fingerprint``, ``config_yaml`` (the resolved config of the run).
A rerun with another sampler, checkpoint or store is refused (:func:`open_or_create`).

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
from cmpipe.store.tables import refreshed

#: Version of the posterior store's layout; bump on any change.
POSTERIOR_SCHEMA_VERSION = 1

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
    """Open ``RESULTS/posterior.zarr``, creating it if absent.

    Parameters
    ----------
    results : str or path-like
    meta : mapping
        ``image_index``, ``halo_id``, ``log10_m200m_msun_h`` of the ``M`` images, in order.
    attrs : mapping
        Root attributes (see the module docstring); those of :data:`IDENTITY_ATTRS` and the
        image list must equal an existing store's.

    Raises
    ------
    PosteriorStoreError
        If an existing store was made by another sampler, checkpoint, store or image list
        (naming the attribute): use another results directory.
    """
    import zarr

    path = posterior_path(results)
    if path.exists():
        group = zarr.open_group(zarr_store(path), mode="r+", use_consolidated=False)
        for key in IDENTITY_ATTRS:
            if group.attrs.get(key) != attrs.get(key):
                raise PosteriorStoreError(
                    f"{path}: made with {key}={group.attrs.get(key)!r}, this run has {attrs.get(key)!r}; "
                    "use another --out directory (or delete this one) to infer with other settings"
                )
        if not np.array_equal(group["image_index"][:], np.asarray(meta["image_index"])):
            raise PosteriorStoreError(f"{path}: made for other test images; use another --out directory")
        return group
    m = len(meta["image_index"])
    r = int(attrs["resolution"])
    s = int(attrs["n_samples"])
    group = zarr.open_group(zarr_store(path), mode="w", zarr_format=3)
    for name, dtype in (("image_index", "int64"), ("halo_id", "int64"), ("log10_m200m_msun_h", "float64")):
        arr = group.create_array(name, shape=(m,), chunks=(max(m, 1),), dtype=dtype, dimension_names=["image"])
        arr[:] = np.asarray(meta[name], dtype=dtype)
    dims = ["image", "channel", "y", "x"]
    n_cond = len(attrs.get("conditions", ("sz_y", "xray_sb")))
    for name in ("truth", "condition", "mean", "std"):
        c = n_cond if name == "condition" else 2
        group.create_array(name, shape=(m, c, r, r), chunks=(1, c, r, r), dtype="float32", fill_value=np.nan,
                           dimension_names=dims)
    if attrs.get("save_samples"):
        group.create_array("samples", shape=(m, s, 2, r, r), chunks=(1, s, 2, r, r), dtype="float32",
                           fill_value=np.nan, dimension_names=["image", "sample", "channel", "y", "x"])
    group.create_array("done", shape=(m,), chunks=(1,), dtype="uint8", fill_value=0, dimension_names=["image"])
    group.attrs.update({"cmpipe_posterior_schema_version": POSTERIOR_SCHEMA_VERSION, **dict(attrs)})
    return group


def open_posterior(results: str | os.PathLike[str], require_complete: bool = False, writable: bool = False):
    """Open ``RESULTS/posterior.zarr`` (read-only unless ``writable``).

    Raises
    ------
    PosteriorStoreError
        If it does not exist, has another schema version, or (``require_complete``) has images
        not done.
    """
    import zarr

    path = posterior_path(results)
    if not path.exists():
        raise PosteriorStoreError(f"{path}: no posterior store (run `cmpipe infer` first)")
    group = zarr.open_group(zarr_store(path, read_only=not writable), mode="r+" if writable else "r",
                            use_consolidated=False)
    version = group.attrs.get("cmpipe_posterior_schema_version")
    if version != POSTERIOR_SCHEMA_VERSION:
        raise PosteriorStoreError(f"{path}: schema version {version}, this cmpipe reads {POSTERIOR_SCHEMA_VERSION}")
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

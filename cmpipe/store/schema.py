"""The image store's data contract (one versioned source): arrays, dtypes, shapes, chunks, attrs.

A Zarr 3 group (a directory). ``N`` images, ``C`` channels (``maps.channels``), ``H = W =
maps.npix``, ``K = generate.chunk_images`` images per chunk, ``n_chunks = ceil(N / K)``. Every
array carries zarr 3 ``dimension_names``, so ``xarray.open_zarr(path)`` gives named dims.

=======================  ========  =================  ==================  ====================  =========================
array                    dtype     shape              chunks (write unit) dims                  unit / meaning
=======================  ========  =================  ==================  ====================  =========================
``maps``                 float32   (N, C, H, W)       shard (K, C, H, W)  image, channel, y, x  per channel: attr ``units``
                                                      of inner chunks                           (:data:`CHANNEL_UNITS`);
                                                      (1, C, H, W)                              ``[image, channel, iy, ix]``
                                                                                                on the grid of :mod:`cmpipe.mapmaking.maps`;
                                                                                                NaN (the fill) = not made / failed
``halo_id``              int64     (N,)               (min(N, 65536),)    image                 halo within the source
``log10_m200m_msun_h``   float64   (N,)               same                image                 log10(Msun/h), M200m
``rotation_index``       int32     (N,)               same                image                 rotation of the halo
``rotation``             float64   (N, 3, 3)          (min(N, 65536),3,3) image, row, col       R applied as x' = R x
``axis``                 int8      (N,)               same                image                 line of sight after R
``split``                int8      (N,)               same                image                 :data:`SPLIT_CODES`
``seed``                 uint64    (N,)               same                image                 seed of the rotation
``image_failed``         uint8     (N,)               (K,)                image                 1: its halo failed
``chunk_done``           uint8     (n_chunks,)        (1,)                chunk                 1: chunk written (after
                                                                                                its maps and image_failed)
=======================  ========  =================  ==================  ====================  =========================

The per-image arrays (``halo_id`` .. ``seed``) are written once, at creation, from the plan.
A chunk task owns shard ``k`` of ``maps``, chunk ``k`` of ``image_failed`` and element ``k``
of ``chunk_done``: one writer per chunk, so chunk tasks may run concurrently. Completion is
``chunk_done``, never the presence of a chunk (zarr skips chunks equal to the fill value).

Root attributes
---------------
==============================  ================================================================
attribute                       meaning
==============================  ================================================================
``cmpipe_store_schema_version`` :data:`STORE_SCHEMA_VERSION`
``store_fingerprint``           fingerprint of the config less ``run``, ``render``, ``model``
                                and ``train`` (they do not change the images): a store is only
                                resumed by a config with the same one
``config_fingerprint``          fingerprint of the whole resolved config that created it
``config_yaml``                 that config, as YAML (loads with ``load_config``)
``channels``, ``channel_units`` channel names in order; unit of each
``npix``, ``pixel_mpc``,        map size [pixels], pixel side [Mpc], projection depth [Mpc]
``depth_mpc``
``n_images``, ``n_chunks``,     N, n_chunks, K
``chunk_images``
``split_names``                 :data:`SPLIT_NAMES`, ``["train", "val", "test"]`` (code = index)
``failures``                    list of ``{chunk, halo_id, images, error}``, one per failed halo
                                and chunk, written by the driver (the single writer of attrs)
``normalisation``               null until :func:`cmpipe.store.compute_normalisation`; then
                                ``{kind, log_floor_fraction, split, n_images, channels: {name:
                                {floor, min, max}}}``: ``kind`` ``log`` maps x to
                                ``log10(max(x, floor))`` with ``floor = log_floor_fraction *``
                                the channel's train max, ``linear`` to x (floor null); ``min`` and
                                ``max`` are over the train images after that transform, so the
                                normalised map is ``(t(x) - min) / (max - min)``; ``totals:
                                {name: {min, max}}`` (``totals_unit``: channel unit x Mpc^2) is
                                the range over the train images of each map's sum times the
                                pixel area (stores normalised before it existed lack it;
                                ``cmpipe reconstruct`` then reports its total flags unknown)
==============================  ================================================================

The group's metadata is consolidated (zarr's consolidated metadata, re-written after every
attribute update) so that ``xarray.open_zarr(path)`` opens it without a warning.

On an object store (``s3://...``: the group is a prefix, each chunk, shard and ``zarr.json`` an
object) the contract is the same, plus one object beside the store while it is being created:
``.NAME.creating`` (:func:`cmpipe.store.zarr_store.creation_marker`), written before any Zarr
object and deleted after the consolidated metadata. A store with that marker is unfinished and is
never read (the next ``cmpipe generate`` makes it again). On disk the store is built in a hidden
sibling directory, ``.NAME.PID.creating``, and renamed into place instead. Open a store on a
bucket with ``zarr.open_group(zarr.storage.FsspecStore.from_url(url, read_only=True), mode="r")``
or ``xarray.open_zarr(url)``.
"""

from __future__ import annotations

__all__ = [
    "ALL_CHANNELS",
    "CHANNELS",
    "CHANNEL_UNITS",
    "CHUNK_ARRAYS",
    "IMAGE_ARRAYS",
    "PLAN_ARRAYS",
    "PLAN_ARRAY_CHUNK",
    "SPLIT_CODES",
    "SPLIT_NAMES",
    "SPLIT_TEST",
    "SPLIT_TRAIN",
    "SPLIT_VAL",
    "STORE_SCHEMA_VERSION",
]

STORE_SCHEMA_VERSION = 1

#: The default map channels (``maps.channels``), in the store's order.
CHANNELS: tuple[str, ...] = ("sz_y", "xray_sb", "gas_sigma", "dm_sigma")
#: Every channel cmpipe can make: the defaults and the optional convergence ``kappa``.
ALL_CHANNELS: tuple[str, ...] = (*CHANNELS, "kappa")
#: The model's targets (never conditions), in the order of its output channels.
TARGET_CHANNELS: tuple[str, ...] = ("gas_sigma", "dm_sigma")
#: The model's default conditions (``model.conditions``), in the order of its input channels.
CONDITION_CHANNELS: tuple[str, ...] = ("sz_y", "xray_sb")
#: Unit of each channel (the ``units`` attribute of ``maps``, ``channel_units`` of the root;
#: the quantities are described in :mod:`cmpipe.mapmaking.maps`).
CHANNEL_UNITS: dict[str, str] = {
    "sz_y": "dimensionless (Compton-y)",
    "xray_sb": "erg s^-1 cm^-2 sr^-1",
    "gas_sigma": "dimensionless (Sigma_gas / (rho_bar_gas L))",
    "dm_sigma": "dimensionless (Sigma_DM / (rho_bar_DM L))",
    "kappa": "dimensionless",
}

#: Split names of the ``split`` array (and the plan's ``split`` column): index = code.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: Split name -> its code in ``split``.
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLIT_NAMES)}
#: The codes of the three splits.
SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST = (SPLIT_CODES[name] for name in SPLIT_NAMES)

#: Per-image arrays written at creation from the plan: name -> (dtype, fill value, unit).
PLAN_ARRAYS: dict[str, tuple[str, object, str]] = {
    "halo_id": ("int64", -1, "-"),
    "log10_m200m_msun_h": ("float64", float("nan"), "log10(Msun/h)"),
    "rotation_index": ("int32", -1, "-"),
    "rotation": ("float64", float("nan"), "-"),
    "axis": ("int8", -1, "-"),
    "split": ("int8", -1, "-"),
    "seed": ("uint64", 0, "-"),
}
#: Per-image arrays written by the chunk tasks.
IMAGE_ARRAYS: tuple[str, ...] = ("maps", "image_failed")
#: Per-chunk arrays.
CHUNK_ARRAYS: tuple[str, ...] = ("chunk_done",)

#: Largest chunk of the per-image plan arrays [images].
PLAN_ARRAY_CHUNK = 65536

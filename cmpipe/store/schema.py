"""The image store's data contract (one versioned source): arrays, dtypes, shapes, chunks, attrs.

A Zarr 3 group (a directory). ``N`` images, ``C`` channels (``maps.channels``), ``H = W =
maps.npix``, ``K = generate.chunk_images`` images per chunk, ``n_chunks = ceil(N / K)``. Every
array carries zarr 3 ``dimension_names`` and CF attributes (:data:`VARIABLE_ATTRS`:
``long_name``; ``units``, an astropy unit string, where the values are a quantity;
``flag_values`` and ``flag_meanings`` for codes), and the metadata is consolidated, so that
``xarray.open_zarr(path)`` alone gives a Dataset with coordinates::

    ds = xr.open_zarr("runs/demo/images.zarr")
    ds.maps.sel(channel="gas_sigma")          # (image, y, x), coordinates x, y [Mpc], halo_id, ...
    ds.channel_units.sel(channel="xray_sb")   # 'erg s-1 cm-2 sr-1'

=======================  ========  =================  ==================  ====================  =========================
array                    dtype     shape              chunks (write unit) dims                  units / meaning
=======================  ========  =================  ==================  ====================  =========================
``maps``                 float32   (N, C, H, W)       shard (K, C, H, W)  image, channel, y, x  per channel: coordinate
                                                      of inner chunks                           ``channel_units``
                                                      (1, C, H, W)                              (:data:`CHANNEL_UNITS`);
                                                                                                ``[image, channel, iy, ix]``
                                                                                                on the grid of :mod:`cmpipe.mapmaking.maps`;
                                                                                                NaN (the fill) = not made / failed
``image``                int64     (N,)               (min(N, 65536),)    image                 index coordinate: 0 .. N-1,
                                                                                                the plan's ``image_index``
``channel``              string    (C,)               (C,)                channel               index coordinate: names
``channel_units``        string    (C,)               (C,)                channel               astropy unit of each channel
``x``, ``y``             float64   (W,), (H,)         whole               x, y                  pixel centres [Mpc], physical,
                                                                                                halo centre at 0
``halo_id``              int64     (N,)               (min(N, 65536),)    image                 halo within the source
``log10_m200m_msun_h``   float64   (N,)               same                image                 M200m, ``dex(solMass / littleh)``
``rotation_index``       int32     (N,)               same                image                 rotation of the halo
``rotation``             float64   (N, 3, 3)          (min(N, 65536),3,3) image, row, col       R applied as x' = R x
``axis``                 int8      (N,)               same                image                 line of sight after R
``split``                int8      (N,)               same                image                 :data:`SPLIT_CODES`
``seed``                 uint64    (N,)               same                image                 seed of the rotation
``image_failed``         uint8     (N,)               (K,)                image                 1: its halo failed
``chunk_done``           uint8     (n_chunks,)        (1,)                chunk                 1: chunk written (after
                                                                                                its maps and image_failed)
=======================  ========  =================  ==================  ====================  =========================

``image``, ``channel``, ``x`` and ``y`` are xarray's index coordinates (an array named as its
dimension); ``halo_id``, ``log10_m200m_msun_h``, ``rotation_index``, ``axis``, ``split`` and
``channel_units`` are non-dimension coordinates of ``maps`` (its CF ``coordinates``
attribute). ``maps`` has no single ``units`` (its channels differ): each channel's is
``channel_units``, also the root attribute ``channel_units``.

The per-image arrays (``image`` .. ``seed``) and the coordinates are written once, at creation,
by the driver, before the metadata is consolidated. A chunk task owns shard ``k`` of ``maps``,
chunk ``k`` of ``image_failed`` and element ``k`` of ``chunk_done``: one writer per chunk, so
chunk tasks may run concurrently; they write chunks only, never metadata, so the consolidated
metadata stays true. Completion is ``chunk_done``, never the presence of a chunk (zarr skips
chunks equal to the fill value).

Units
-----
Every unit string is astropy's (``astropy.units.Unit(s)`` parses it). Dimensionless is ``"1"``
(CF's spelling). Little h is astropy's ``littleh`` (:mod:`astropy.cosmology.units`), never
``h`` (which astropy reads as the hour): ``log10_m200m_msun_h`` is in ``dex(solMass / littleh)``,
i.e. log10 of M200m in Msun/h, h the run's ``cosmology.h`` (the source's ``HubbleParam`` for
simulations). ``littleh`` parses once astropy's cosmology units are enabled::

    import astropy.units as u, astropy.cosmology.units as cu
    u.add_enabled_units(cu)
    m = (ds.log10_m200m_msun_h.values * u.Unit(ds.log10_m200m_msun_h.units)).physical  # Msun / littleh
    m.to(u.solMass, cu.with_H0(cosmo.H0))                                                # Msun

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
``channels``, ``channel_units`` channel names in order; astropy unit of each (a mapping)
``channel_long_names``          channel -> what it is (:data:`CHANNEL_LONG_NAMES`)
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
                                {name: {min, max}}`` is the range over the train images of each
                                map's sum times the pixel area, in ``totals_units: {name:
                                unit}`` (the channel's unit times ``Mpc2``; version 1:
                                ``totals_unit``, a description) (stores normalised before
                                totals existed lack them; ``cmpipe reconstruct`` then reports
                                its total flags unknown)
==============================  ================================================================

The group's metadata is consolidated (zarr's consolidated metadata, re-written after every
attribute update: creation, failures, normalisation) so that ``xarray.open_zarr(path)`` opens it
from one read, without a warning.

Version 2 (issue 21) added the coordinate arrays ``image``, ``channel``, ``channel_units``,
``x``, ``y``, the CF attributes (``units``, ``long_name``, flags; version 1 had a custom ``unit``
key), the ``coordinates`` of ``maps``, ``channel_long_names``, and astropy unit strings
(version 1: ``dimensionless (...)``, ``erg s^-1 cm^-2 sr^-1``, ``log10(Msun/h)``). cmpipe reads a
version-1 store (train, infer, report, :func:`cmpipe.open_store`, which adds the coordinates)
but never writes one: resuming or normalising it is refused, naming both versions
(:data:`READABLE_STORE_SCHEMA_VERSIONS`).

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
    "CHANNEL_LONG_NAMES",
    "CHANNEL_UNITS",
    "CHUNK_ARRAYS",
    "DIMENSIONLESS",
    "IMAGE_ARRAYS",
    "LEGACY_UNITS",
    "LOG10_MSUN_H",
    "MAPS_COORDINATES",
    "MSUN_H",
    "PLAN_ARRAYS",
    "PLAN_ARRAY_CHUNK",
    "READABLE_STORE_SCHEMA_VERSIONS",
    "SPLIT_CODES",
    "SPLIT_NAMES",
    "SPLIT_TEST",
    "SPLIT_TRAIN",
    "SPLIT_VAL",
    "STORE_SCHEMA_VERSION",
    "VARIABLE_ATTRS",
    "astropy_unit_string",
]

STORE_SCHEMA_VERSION = 2
#: Store schema versions this cmpipe reads (it writes only :data:`STORE_SCHEMA_VERSION`).
READABLE_STORE_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)

#: astropy unit of a mass in Msun/h: ``littleh`` is :data:`astropy.cosmology.units.littleh`
#: (``Msun/h`` would be solar masses per hour in astropy).
MSUN_H = "solMass / littleh"
#: astropy unit of log10 of a mass in Msun/h.
LOG10_MSUN_H = "dex(solMass / littleh)"
#: CF's (and astropy's) spelling of a dimensionless unit.
DIMENSIONLESS = "1"

#: The default map channels (``maps.channels``), in the store's order.
CHANNELS: tuple[str, ...] = ("sz_y", "xray_sb", "gas_sigma", "dm_sigma")
#: Every channel cmpipe can make: the defaults and the optional convergence ``kappa``.
ALL_CHANNELS: tuple[str, ...] = (*CHANNELS, "kappa")
#: The model's targets (never conditions), in the order of its output channels.
TARGET_CHANNELS: tuple[str, ...] = ("gas_sigma", "dm_sigma")
#: The model's default conditions (``model.conditions``), in the order of its input channels.
CONDITION_CHANNELS: tuple[str, ...] = ("sz_y", "xray_sb")
#: astropy unit string of each channel (coordinate ``channel_units``, root attribute
#: ``channel_units``; the quantities are described in :mod:`cmpipe.mapmaking.maps`).
CHANNEL_UNITS: dict[str, str] = {
    "sz_y": DIMENSIONLESS,
    "xray_sb": "erg s-1 cm-2 sr-1",
    "gas_sigma": DIMENSIONLESS,
    "dm_sigma": DIMENSIONLESS,
    "kappa": DIMENSIONLESS,
}
#: What each channel is (root attribute ``channel_long_names``).
CHANNEL_LONG_NAMES: dict[str, str] = {
    "sz_y": "Compton-y",
    "xray_sb": "bolometric X-ray surface brightness",
    "gas_sigma": "gas surface density over its cosmic mean, Sigma_gas / (rho_bar_gas L)",
    "dm_sigma": "dark-matter surface density over its cosmic mean, Sigma_DM / (rho_bar_DM L)",
    "kappa": "weak-lensing convergence, (Sigma_gas + Sigma_DM) / Sigma_crit",
}
#: Unit strings of version-1 stores (not astropy's) -> the same unit in astropy's spelling.
LEGACY_UNITS: dict[str, str] = {
    "dimensionless (Compton-y)": DIMENSIONLESS,
    "erg s^-1 cm^-2 sr^-1": "erg s-1 cm-2 sr-1",
    "dimensionless (Sigma_gas / (rho_bar_gas L))": DIMENSIONLESS,
    "dimensionless (Sigma_DM / (rho_bar_DM L))": DIMENSIONLESS,
    "dimensionless": DIMENSIONLESS,
    "log10(Msun/h)": LOG10_MSUN_H,
    "Msun/h": MSUN_H,
}


def astropy_unit_string(unit: str) -> str:
    """``unit`` in astropy's spelling: a version-1 store's string (:data:`LEGACY_UNITS`) replaced,
    any other returned as is."""
    return LEGACY_UNITS.get(unit, unit)


#: Split names of the ``split`` array (and the plan's ``split`` column): index = code.
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: Split name -> its code in ``split``.
SPLIT_CODES: dict[str, int] = {name: code for code, name in enumerate(SPLIT_NAMES)}
#: The codes of the three splits.
SPLIT_TRAIN, SPLIT_VAL, SPLIT_TEST = (SPLIT_CODES[name] for name in SPLIT_NAMES)

#: Per-image arrays written at creation from the plan: name -> (dtype, fill value, astropy unit
#: or None where the values are not a quantity).
PLAN_ARRAYS: dict[str, tuple[str, object, str | None]] = {
    "halo_id": ("int64", -1, None),
    "log10_m200m_msun_h": ("float64", float("nan"), LOG10_MSUN_H),
    "rotation_index": ("int32", -1, None),
    "rotation": ("float64", float("nan"), DIMENSIONLESS),
    "axis": ("int8", -1, None),
    "split": ("int8", -1, None),
    "seed": ("uint64", 0, None),
}
#: Non-dimension coordinates of ``maps`` (its CF ``coordinates`` attribute).
MAPS_COORDINATES: tuple[str, ...] = ("halo_id", "log10_m200m_msun_h", "rotation_index", "axis", "split",
                                     "channel_units")
#: Per-image arrays written by the chunk tasks.
IMAGE_ARRAYS: tuple[str, ...] = ("maps", "image_failed")
#: Per-chunk arrays.
CHUNK_ARRAYS: tuple[str, ...] = ("chunk_done",)

#: Largest chunk of the per-image plan arrays [images].
PLAN_ARRAY_CHUNK = 65536

#: CF attributes of every array of the image store (``units`` from :data:`PLAN_ARRAYS` added to
#: those of the per-image arrays).
VARIABLE_ATTRS: dict[str, dict[str, object]] = {
    "maps": {"long_name": "projected maps, one per channel (units: coordinate channel_units)"},
    "image": {"long_name": "image index in the store (row of plan.parquet)"},
    "channel": {"long_name": "map channel"},
    "channel_units": {"long_name": "astropy unit of the channel's maps"},
    "x": {"long_name": "pixel centre along the map's x axis (halo centre at 0), physical", "units": "Mpc",
          "axis": "X"},
    "y": {"long_name": "pixel centre along the map's y axis (halo centre at 0), physical", "units": "Mpc",
          "axis": "Y"},
    "halo_id": {"long_name": "halo id within the source"},
    "log10_m200m_msun_h": {"long_name": "log10 M200m of the halo [Msun/h]"},
    "rotation_index": {"long_name": "rotation of the halo, 0 .. its rotations - 1"},
    "rotation": {"long_name": "rotation matrix R applied to the halo as x' = R x"},
    "axis": {"long_name": "line-of-sight axis after the rotation", "flag_values": [0, 1, 2],
             "flag_meanings": "x y z"},
    "split": {"long_name": "dataset split of the image", "flag_values": [0, 1, 2],
              "flag_meanings": "train val test"},
    "seed": {"long_name": "seed of the rotation (plan.parquet's seed column)"},
    "image_failed": {"long_name": "the image's halo failed to project", "flag_values": [0, 1],
                     "flag_meanings": "ok failed"},
    "chunk_done": {"long_name": "chunk written (after its maps and image_failed)", "flag_values": [0, 1],
                   "flag_meanings": "not_done done"},
}
for _name, (_dtype, _fill, _units) in PLAN_ARRAYS.items():
    if _units is not None:
        VARIABLE_ATTRS[_name]["units"] = _units

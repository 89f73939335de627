"""The sightline plan: which images of which halos to make, so that the mass distribution is flat.

Paper section 2.2: the number of images is flat in log mass, about ``generate.images_per_0p1dex``
per 0.1 dex; rare massive halos get more rotations (up to ``generate.max_rotations_per_halo``
each), common low-mass halos are subsampled; each rotation is projected along
``generate.axes_per_rotation`` cardinal axes; halos are split into train / val / test, all
images of one halo in one split. Pure numpy and pyarrow (scipy draws the rotations): no Ray,
no Zarr.

The flattening, per 0.1 dex bin
-------------------------------
Bins are absolute: bin ``b = floor(10 log10 M200m)`` holds ``[b / 10, (b + 1) / 10)`` in
log10 Msun/h. With ``T`` the target, ``A`` the axes per rotation, ``R`` the rotation cap and
``n`` the bin's halos, the bin needs ``K = ceil(T / A)`` rotations (``T`` rounded up to a
multiple of ``A`` images):

* ``n >= K``: ``K`` halos are drawn without replacement (seeded), one rotation each;
* ``n < K``: every halo gets ``K // n`` rotations and ``K % n`` halos drawn (seeded) one more
  (the most even share, so rotations per halo differ by at most one), each capped at ``R``.

So a bin holds ``A * min(K, n R)`` images: the target where the halos allow, fewer only where
the cap binds (the rarest, most massive halos). The draws of bin ``b`` use
``SeedSequence([generate.seed, 1, b])``.

Rotations and axes
------------------
Rotation ``r`` of halo ``h`` is Haar-uniform on SO(3), drawn by
:func:`cmpipe.mapmaking.maps.random_rotation` from the integer ``seed`` column, itself the first uint64
of ``SeedSequence([generate.seed, h, r]).generate_state(1, uint64)``; so any rotation can be
remade from its row alone, and a halo's rotation ``r`` does not depend on the other halos or on
the targets. Each rotation is projected along axes ``0 .. A - 1`` (after the rotation; the
rotation is uniform, so which ``A`` distinct axes does not matter).

The split
---------
By halo: the planned halos, ordered by mass bin and, within a bin, by a seeded random key
(``SeedSequence([generate.seed, 2])``), are dealt to the splits in turn, each halo to the split
furthest below its fraction so far (largest deficit ``k f_s - n_s``, ties to the lower split).
Every split's halo count is within one of its fraction of the total, and every run of
consecutive mass-ordered halos holds the splits in proportion (stratified by mass).

With ``generate.test_images_per_halo`` ``n > 0``, each test halo keeps only its first ``n``
images (rotation 0 axes ``0 .. A - 1``, then rotation 1, ...): many distinct test halos for
few test images, so summaries over halos are worth making (0, the default: every image). The
other splits, the rotations' seeds and the split itself do not change.

Order of the rows (chunk grouping)
----------------------------------
All images of one halo are contiguous (rotation, then axis order), and halos are ordered so
that each chunk of ``generate.chunk_images`` rows holds as few halos as possible: greedily,
a chunk starts with the largest remaining halo, and a partly filled chunk takes the largest
halo that fits in what is left, else the smallest remaining halo (which then straddles into the
next chunk). A chunk task then loads and prepares each of its halos once.

The data contract (:data:`PLAN_SCHEMA`, version :data:`PLAN_SCHEMA_VERSION` = 1)
--------------------------------------------------------------------------------
One row per image, in ``image_index`` order, none null; unit in each field's metadata
(``b"unit"``). Parquet key-value metadata: ``cmpipe.plan_schema_version``, ``cmpipe.generate``
(the ``generate`` settings as JSON) and, when given, ``cmpipe.config_fingerprint``.

==========================  ======================  ================================================
field                       unit                    meaning
==========================  ======================  ================================================
``image_index`` (int64)     ""                      0 .. N - 1, the row and the store's image index
``chunk_index`` (int32)     ""                      ``image_index // generate.chunk_images``
``halo_id`` (int64)         ""                      halo within the source
``log10_m200m_msun_h``      dex(solMass / littleh)  log10 M200m of the halo (float64)
``mass_bin`` (int32)        0.1 dex                 ``floor(10 log10 M200m)``
``rotation_index`` (int32)  ""                      0 .. rotations of the halo - 1
``axis`` (int8)             ""                      line of sight after the rotation: 0, 1, 2
``split`` (int8)            ""                      0 train, 1 val, 2 test
``seed`` (uint64)           ""                      seed of the rotation (see above)
``rotation``                ""                      fixed-size list of 9 float64: the rotation
                                                    matrix ``R``, row-major (``x' = R x``)
==========================  ======================  ================================================

Units are astropy unit strings (``""``: dimensionless; little h is astropy's ``littleh``, see
:mod:`cmpipe.store.schema`); the file also carries astropy's Parquet header
(:func:`cmpipe.store.tables.with_astropy_header`).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from cmpipe.store.location import AnyPath, as_path, is_remote, write_bytes_atomic
from cmpipe.store.schema import LOG10_MSUN_H, SPLIT_NAMES

__all__ = [
    "PLAN_SCHEMA",
    "PLAN_SCHEMA_VERSION",
    "SPLIT_NAMES",
    "PlanError",
    "make_plan",
    "mass_bins",
    "plan_rotations",
    "plan_summary",
    "read_plan",
    "write_plan",
]

PLAN_SCHEMA_VERSION = 1
# SPLIT_NAMES (split codes of the ``split`` column: index = code) is defined once, in
# cmpipe.store.schema, and re-exported here.

META_SCHEMA_VERSION = b"cmpipe.plan_schema_version"
META_GENERATE = b"cmpipe.generate"
META_FINGERPRINT = b"cmpipe.config_fingerprint"

# Second entries of the seed sequences of the plan's own draws (rotations use [seed, halo, r]).
_STREAM_SELECT = 1
_STREAM_SPLIT = 2


def _field(name: str, type_: pa.DataType, unit: str, description: str) -> pa.Field:
    return pa.field(name, type_, nullable=False, metadata={b"unit": unit.encode(), b"description": description.encode()})


PLAN_SCHEMA = pa.schema(
    [
        _field("image_index", pa.int64(), "", "row and store image index, 0 .. N-1"),
        _field("chunk_index", pa.int32(), "", "image_index // generate.chunk_images"),
        _field("halo_id", pa.int64(), "", "halo within the source"),
        _field("log10_m200m_msun_h", pa.float64(), LOG10_MSUN_H, "log10 M200m"),
        _field("mass_bin", pa.int32(), "0.1 dex", "floor(10 log10 M200m)"),
        _field("rotation_index", pa.int32(), "", "rotation of the halo, 0 .. n_rot-1"),
        _field("axis", pa.int8(), "", "line-of-sight axis after the rotation"),
        _field("split", pa.int8(), "", "0 train, 1 val, 2 test"),
        _field("seed", pa.uint64(), "", "seed of the rotation, SeedSequence([seed, halo, r])"),
        _field("rotation", pa.list_(pa.float64(), 9), "", "rotation matrix R, row-major, x' = R x"),
    ]
)


class PlanError(ValueError):
    """An impossible plan or a malformed plan table; the message says which."""


def mass_bins(log10_m200m_msun_h: np.ndarray) -> np.ndarray:
    """The 0.1 dex bin of each mass, ``floor(10 log10 M)`` (rounded to 1e-9 first).

    Parameters
    ----------
    log10_m200m_msun_h : array of float
        log10 M200m [log10 Msun/h].

    Returns
    -------
    ndarray of int64
        Bin ``b`` holds ``[b / 10, (b + 1) / 10)``.
    """
    x = np.asarray(log10_m200m_msun_h, dtype=np.float64)
    return np.floor(np.round(x * 10.0, 9)).astype(np.int64)


def rotation_seed(seed: int, halo_id: int, rotation_index: int) -> int:
    """The uint64 seed of a rotation: ``SeedSequence([seed, halo_id, rotation_index])``."""
    state = np.random.SeedSequence([int(seed), int(halo_id), int(rotation_index)]).generate_state(1, np.uint64)
    return int(state[0])


def _gen_dict(gen_cfg: Any) -> dict[str, Any]:
    keys = ("images_per_0p1dex", "max_rotations_per_halo", "axes_per_rotation", "split_fractions", "chunk_images", "seed")
    out = {k: (list(getattr(gen_cfg, k)) if k == "split_fractions" else getattr(gen_cfg, k)) for k in keys}
    if _test_images_per_halo(gen_cfg):  # recorded only when used: older plans' metadata unchanged
        out["test_images_per_halo"] = _test_images_per_halo(gen_cfg)
    return out


def _test_images_per_halo(gen_cfg: Any) -> int:
    """``generate.test_images_per_halo`` (0: every image; sections without the key: 0)."""
    return int(getattr(gen_cfg, "test_images_per_halo", 0) or 0)


def _rotations_per_halo(ids: np.ndarray, bins: np.ndarray, gen_cfg: Any) -> np.ndarray:
    """Rotations of each halo (0: not planned), per the flattening in the module docstring."""
    target, axes, cap = gen_cfg.images_per_0p1dex, gen_cfg.axes_per_rotation, gen_cfg.max_rotations_per_halo
    need = math.ceil(target / axes)
    rots = np.zeros(len(ids), dtype=np.int64)
    for b in np.unique(bins):
        members = np.flatnonzero(bins == b)
        members = members[np.argsort(ids[members], kind="stable")]
        n = len(members)
        rng = np.random.default_rng(np.random.SeedSequence([gen_cfg.seed, _STREAM_SELECT, int(b)]))
        if n >= need:
            chosen = rng.choice(n, size=need, replace=False)
            rots[members[chosen]] = 1
        else:
            share = np.full(n, need // n, dtype=np.int64)
            share[rng.choice(n, size=need % n, replace=False)] += 1
            rots[members] = np.minimum(share, cap)
    return rots


def _assign_splits(ids: np.ndarray, bins: np.ndarray, fractions: tuple[float, ...], seed: int) -> np.ndarray:
    """Split code of each halo (stratified by mass bin, seeded; see the module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_SPLIT]))
    key = rng.random(len(ids))
    order = np.lexsort((key, bins))
    frac = np.asarray(fractions, dtype=np.float64)
    counts = np.zeros(len(frac))
    split = np.empty(len(ids), dtype=np.int8)
    for k, i in enumerate(order, start=1):
        s = int(np.argmax(k * frac - counts))
        counts[s] += 1
        split[i] = s
    return split


def _chunk_order(counts: Mapping[int, int], chunk: int) -> list[int]:
    """Halo order that keeps each halo contiguous and touches few chunks (greedy)."""
    by_count: dict[int, list[int]] = {}
    for hid in sorted(counts, reverse=True):  # popped from the end: ascending halo id
        by_count.setdefault(counts[hid], []).append(hid)
    sizes = sorted(by_count)
    order: list[int] = []
    room = chunk

    def take(k: int) -> int:
        hid = by_count[k].pop()
        if not by_count[k]:
            del by_count[k]
            sizes.remove(k)
        return hid

    while sizes:
        if room == chunk:
            k = sizes[-1]
        else:
            fitting = [s for s in sizes if s <= room]
            k = fitting[-1] if fitting else sizes[0]
        order.append(take(k))
        room -= k
        room = chunk - ((-room) % chunk) if room <= 0 else room
    return order


def make_plan(catalog: pa.Table, gen_cfg: Any, *, config_fingerprint: str | None = None) -> pa.Table:
    """One row per image to make: halo, rotation, axis, split, seed (the module docstring).

    Parameters
    ----------
    catalog : pyarrow.Table
        At least ``halo_id`` (unique integers >= 0) and ``log10_m200m_msun_h``
        [log10 Msun/h], e.g. :func:`cmpipe.physics.catalog.make_catalog`.
    gen_cfg : GenerateConfig
        The ``generate`` section: ``images_per_0p1dex``, ``max_rotations_per_halo``,
        ``axes_per_rotation``, ``split_fractions``, ``chunk_images``, ``seed`` (and
        ``test_images_per_halo``, 0 when absent).
    config_fingerprint : str, optional
        Recorded in the table's metadata.

    Returns
    -------
    pyarrow.Table
        :data:`PLAN_SCHEMA`, ``image_index`` order.

    Raises
    ------
    PlanError
        On missing columns, repeated or negative halo ids, non-finite or negative masses, or an
        empty catalog.
    """
    from cmpipe.mapmaking.maps import random_rotation

    for name in ("halo_id", "log10_m200m_msun_h"):
        if name not in catalog.column_names:
            raise PlanError(f"the catalog has no column {name!r} (columns: {catalog.column_names})")
    ids = np.asarray(catalog["halo_id"].to_numpy(), dtype=np.int64)
    logm = np.asarray(catalog["log10_m200m_msun_h"].to_numpy(), dtype=np.float64)
    if len(ids) == 0:
        raise PlanError("the catalog is empty: nothing to plan")
    if len(np.unique(ids)) != len(ids) or ids.min() < 0:
        raise PlanError("catalog halo_id values must be unique and >= 0")
    if not np.all(np.isfinite(logm)) or logm.min() < 0:
        raise PlanError("catalog log10_m200m_msun_h values must be finite and >= 0")
    bins = mass_bins(logm)
    rots = _rotations_per_halo(ids, bins, gen_cfg)
    planned = np.flatnonzero(rots > 0)
    split = np.full(len(ids), -1, dtype=np.int8)
    split[planned] = _assign_splits(ids[planned], bins[planned], gen_cfg.split_fractions, gen_cfg.seed)

    axes = gen_cfg.axes_per_rotation
    test_cap = _test_images_per_halo(gen_cfg)
    n_images = rots * axes
    if test_cap:
        is_test = split == SPLIT_NAMES.index("test")
        n_images[is_test] = np.minimum(n_images[is_test], test_cap)
    row_of = {int(ids[i]): i for i in planned}
    order = _chunk_order({int(ids[i]): int(n_images[i]) for i in planned}, gen_cfg.chunk_images)
    cols: dict[str, list] = {name: [] for name in PLAN_SCHEMA.names}
    for hid in order:
        i = row_of[hid]
        for r in range(int(rots[i])):
            if r * axes >= n_images[i]:
                break
            seed = rotation_seed(gen_cfg.seed, hid, r)
            matrix = random_rotation(seed).reshape(9).tolist()
            for a in range(min(axes, int(n_images[i]) - r * axes)):
                cols["halo_id"].append(hid)
                cols["log10_m200m_msun_h"].append(float(logm[i]))
                cols["mass_bin"].append(int(bins[i]))
                cols["rotation_index"].append(r)
                cols["axis"].append(a)
                cols["split"].append(int(split[i]))
                cols["seed"].append(seed)
                cols["rotation"].append(matrix)
    n = len(cols["halo_id"])
    cols["image_index"] = list(range(n))
    cols["chunk_index"] = [k // gen_cfg.chunk_images for k in range(n)]
    meta = {
        META_SCHEMA_VERSION: str(PLAN_SCHEMA_VERSION).encode(),
        META_GENERATE: json.dumps(_gen_dict(gen_cfg), sort_keys=True).encode(),
    }
    if config_fingerprint is not None:
        meta[META_FINGERPRINT] = config_fingerprint.encode()
    arrays = [pa.array(cols[f.name], type=f.type) for f in PLAN_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=PLAN_SCHEMA.with_metadata(meta))


def plan_rotations(plan: pa.Table) -> np.ndarray:
    """The ``rotation`` column as an ``(N, 3, 3)`` float64 array."""
    flat = plan["rotation"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float64).reshape(-1, 3, 3)


def plan_summary(plan: pa.Table) -> dict[str, Any]:
    """Counts of a plan: images, halos, chunks, images and halos per split, images per bin."""
    split = plan["split"].to_numpy()
    halo = plan["halo_id"].to_numpy()
    bins, per_bin = np.unique(plan["mass_bin"].to_numpy(), return_counts=True)
    return {
        "images": plan.num_rows,
        "halos": int(len(np.unique(halo))),
        "chunks": int(plan["chunk_index"].to_numpy().max()) + 1 if plan.num_rows else 0,
        "images_per_split": {name: int(np.sum(split == s)) for s, name in enumerate(SPLIT_NAMES)},
        "halos_per_split": {name: int(len(np.unique(halo[split == s]))) for s, name in enumerate(SPLIT_NAMES)},
        "images_per_bin": {f"{b / 10:.1f}": int(c) for b, c in zip(bins, per_bin)},
    }


def _conform(table: pa.Table, where: str) -> pa.Table:
    meta = table.schema.metadata or {}
    version = meta.get(META_SCHEMA_VERSION)
    if version is not None and version != str(PLAN_SCHEMA_VERSION).encode():
        raise PlanError(f"{where}: plan schema version {version.decode()}, this cmpipe reads {PLAN_SCHEMA_VERSION}")
    missing = [n for n in PLAN_SCHEMA.names if n not in table.column_names]
    if missing:
        raise PlanError(f"{where}: plan lacks columns {missing}")
    try:
        out = table.select(PLAN_SCHEMA.names).cast(PLAN_SCHEMA.with_metadata(meta))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise PlanError(f"{where}: plan columns do not match the plan schema ({exc})") from None
    if out.num_rows and not np.array_equal(out["image_index"].to_numpy(), np.arange(out.num_rows)):
        raise PlanError(f"{where}: image_index must be 0 .. N-1 in order")
    return out


def write_plan(plan: pa.Table, path: str | os.PathLike[str] | AnyPath) -> AnyPath:
    """Write a plan to Parquet, whole: a temporary file renamed into place on disk, one PUT of the
    whole object on an object store (:func:`cmpipe.store.location.write_bytes_atomic`).

    Parameters
    ----------
    plan : pyarrow.Table
        From :func:`make_plan`; cast to :data:`PLAN_SCHEMA` (metadata kept).
    path : str, path-like or URL
        The ``.parquet`` file (a local path or an object-store URL); a local directory is created.

    Returns
    -------
    pathlib.Path or upath.UPath
    """
    import io

    import pyarrow.parquet as pq

    from cmpipe.store.tables import with_astropy_header

    path = as_path(path)
    if not is_remote(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    table = _conform(plan, "plan to write")
    buffer = io.BytesIO()
    pq.write_table(with_astropy_header(table), buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def read_plan(path: str | os.PathLike[str] | AnyPath) -> pa.Table:
    """Read a plan written by :func:`write_plan` (a local path or an object-store URL), checked and
    cast to :data:`PLAN_SCHEMA`."""
    import pyarrow.parquet as pq

    path = as_path(path)
    if not is_remote(path):
        return _conform(pq.read_table(path), str(path))
    path.fs.invalidate_cache()  # another process may have rewritten it
    with path.open("rb") as f:
        return _conform(pq.read_table(f), str(path))

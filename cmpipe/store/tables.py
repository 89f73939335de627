"""The result tables' data contract: one fixed Arrow schema per Parquet table (one versioned source).

``cmpipe infer`` writes, under ``RESULTS/tables/<table>/``, Parquet parts (one per Ray Data
batch, named by the store indices of its images); ``cmpipe report`` reads each table directory
as one table (:func:`read_table`). Every part is cast to the schema below before it is written
(:func:`to_table`), so the parts never drift. Units are in each field's metadata (key
``unit``; see "Units" below) and below. ``channel`` is a target channel, ``gas_sigma`` or ``dm_sigma``
(:data:`cmpipe.model.dataset.TARGET_CHANNELS`), on the model's grid (``model.resolution``
pixels of ``pixel_mpc`` = the store's ``pixel_mpc * npix / resolution``). "Posterior mean" is the
mean of the ``n_samples`` samples of one image. Masses are ``Sigma`` summed over pixels times the
pixel area: ``map * rho_bar * L * A_pix`` [Msun] with the channel's cosmic mean ``rho_bar``
(:mod:`cmpipe.mapmaking.maps`).

=============  =============================================================================
table          one row per
=============  =============================================================================
``clusters``   (image, channel): masses within R500c, R200m and the whole map, their errors
               and ranks; standardized-error moments (raw values) inside / outside R200m
``profiles``   (image, channel, radial bin): truth and posterior-mean profiles
``spectra``    (image, channel, comparison, k bin): P(k) of truth and of the other map, the
               cross spectrum, b(k) and r(k)
``convergence`` (image, channel, n): Monte-Carlo error of the n-sample posterior mean against
               its actual error, pixels inside R200m
``zhist``      (image, channel, region, bin): histogram of the standardized pixel errors inside
               R200m (``r200m``) and outside (``outside``); end bins hold the clipped values:
               for figures only, every number comes from the raw moments of ``clusters``
``coverage``   (image, channel, quantity, level): fraction of the truth inside the central
               credible interval of that level
=============  =============================================================================

Version 2 (issue 15) added R500c masses, the inside / outside R200m split of the standardized
errors, pixel coverage and ranks, and replaced the sample-variance convergence (0 at n = S by
construction) by :func:`cmpipe.evaluation.metrics.mean_convergence`. Baselines (``cmpipe.evaluation.baselines``)
write the same tables under ``RESULTS/baselines/<name>/tables/``.

``spectra.comparison``: ``posterior_mean`` (the n-sample mean against the truth),
``sample`` (single samples against the truth, spectra averaged over the samples),
``input_<condition>``, one per condition channel of the model (``model.conditions``; by
default ``input_sz_y`` / ``input_xray_sb``, with ``kappa`` also ``input_kappa``): the condition
map against the truth, the paper's linear baseline; ``b`` is NaN there, the maps have other units.

Units
-----
Each field's ``unit`` is an astropy unit string (``astropy.units.Unit(unit)`` parses it); ``""``
is dimensionless (ratios, counts of nothing physical, ids, names and flags). Little h is
astropy's ``littleh`` (:mod:`astropy.cosmology.units`; enable it with
``u.add_enabled_units(astropy.cosmology.units)``): ``log10_m200m_msun_h`` is in
``dex(solMass / littleh)``, h the run's ``cosmology.h`` (never ``Msun/h``, which astropy reads
as solar masses per hour). The targets' maps are dimensionless (:data:`cmpipe.store.schema.CHANNEL_UNITS`),
so their profiles and errors are too. ``spectra.p_other`` and ``p_cross`` have no ``unit``: it
depends on the row (Mpc2 times the compared map's unit squared, resp. its unit: ``Mpc2`` for
``posterior_mean``, ``sample`` and ``input_sz_y``, ``Mpc2 erg2 s-2 cm-4 sr-2`` (resp. ``Mpc2 erg
s-1 cm-2 sr-1``) for ``input_xray_sb``). Every file also carries astropy's own header
(:func:`with_astropy_header`), so ``astropy.table.Table.read(part)`` gives columns with units and
descriptions.

Every ``RESULTS`` may be an object-store URL (:mod:`cmpipe.store.location`). A part is written
whole or not at all: a temporary file renamed into place on disk, one PUT of the final object on
an object store (:func:`cmpipe.store.location.write_bytes_atomic`); no rename is used there. Which
parts exist is decided by listing ``tables/<table>/`` afresh (:func:`refreshed`: fsspec's listing
cache is dropped first, since Ray actors in other processes write the parts), and a part is kept
only if it reads whole (:func:`remove_parts_not_done`): so exactly-once rows rest on the atomic
PUT and on S3's strong list-after-write consistency, not on POSIX ``rename``.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cmpipe.store.location import AnyPath, as_path, is_remote, write_bytes_atomic
from cmpipe.store.schema import LOG10_MSUN_H

#: Version of every table's schema; bump on any change.
TABLE_SCHEMA_VERSION = 2

logger = logging.getLogger(__name__)


def _f(name: str, type_: pa.DataType, unit: str | None, doc: str) -> pa.Field:
    """A field with its ``unit`` (an astropy string; None: none, it depends on the row) and ``doc``."""
    metadata = {"doc": doc} if unit is None else {"unit": unit, "doc": doc}
    return pa.field(name, type_, nullable=False, metadata=metadata)


_KEY = [
    _f("image_index", pa.int64(), "", "image index in the image store"),
    _f("halo_id", pa.int64(), "", "halo within the source"),
    _f("log10_m200m_msun_h", pa.float64(), LOG10_MSUN_H, "log10 M200m of the halo"),
    _f("channel", pa.string(), "", "target channel: gas_sigma | dm_sigma"),
]

SCHEMAS: dict[str, pa.Schema] = {
    "clusters": pa.schema([
        *_KEY,
        _f("r200m_mpc", pa.float64(), "Mpc", "R200m of the halo (physical)"),
        _f("r500c_mpc", pa.float64(), "Mpc", "R500c of the halo (physical; NFW with its c200m); NaN: unknown"),
        _f("mass_true_msun", pa.float64(), "Msun", "true mass in the map"),
        _f("mass_pred_msun", pa.float64(), "Msun", "mass of the posterior mean map"),
        _f("mass_frac_error", pa.float64(), "", "(pred - true) / true, whole map"),
        _f("mass_std_frac", pa.float64(), "", "std of the sample masses / true mass, whole map"),
        _f("mass_rank", pa.int32(), "count", "samples with a mass below the true mass (0..n_samples)"),
        _f("mass_r200m_true_msun", pa.float64(), "Msun", "true mass within R200m (projected)"),
        _f("mass_r200m_pred_msun", pa.float64(), "Msun", "mass of the posterior mean within R200m"),
        _f("mass_r200m_frac_error", pa.float64(), "", "(pred - true) / true within R200m"),
        _f("mass_r200m_rank", pa.int32(), "count", "samples with a mass within R200m below the true one"),
        _f("mass_r500c_true_msun", pa.float64(), "Msun", "true mass within R500c (projected); NaN: R500c unknown"),
        _f("mass_r500c_pred_msun", pa.float64(), "Msun", "mass of the posterior mean within R500c"),
        _f("mass_r500c_frac_error", pa.float64(), "", "(pred - true) / true within R500c"),
        _f("mass_r500c_rank", pa.int32(), "count", "samples with a mass within R500c below the true one (-1: unknown)"),
        _f("mass_outside_r200m_rank", pa.int32(), "count", "samples with a mass outside R200m below the true one"),
        _f("z_mean_r200m", pa.float64(), "", "mean of the standardized pixel errors (mean - true) / std, r <= R200m"),
        _f("z_std_r200m", pa.float64(), "", "std of the raw standardized pixel errors, r <= R200m"),
        _f("z_mad_r200m", pa.float64(), "", "1.4826 median |z - median z|, r <= R200m (robust width)"),
        _f("n_z_r200m", pa.int64(), "count", "pixels with a standardized error, r <= R200m"),
        _f("z_mean_outside", pa.float64(), "", "mean of the standardized pixel errors, r > R200m"),
        _f("z_std_outside", pa.float64(), "", "std of the raw standardized pixel errors, r > R200m"),
        _f("z_mad_outside", pa.float64(), "", "1.4826 median |z - median z|, r > R200m"),
        _f("n_z_outside", pa.int64(), "count", "pixels with a standardized error (spread > 0), r > R200m"),
        _f("n_converged", pa.int32(), "count", "samples from which the Monte-Carlo error of the mean stays below "
                                               "evaluate.convergence_tolerance of its actual error, median over "
                                               "pixels within R200m (n_samples + 1: never)"),
        _f("n_samples", pa.int32(), "count", "posterior samples of the image"),
        _f("seconds", pa.float64(), "s", "sampling wall time of the image's batch, divided by its images"),
    ]),
    "profiles": pa.schema([
        *_KEY,
        _f("bin", pa.int32(), "", "radial bin"),
        _f("r_mpc", pa.float64(), "Mpc", "mid radius of the annulus"),
        _f("true", pa.float64(), "", "mean of the true map in the annulus (the target's unit)"),
        _f("pred_mean", pa.float64(), "", "mean of the posterior-mean map in the annulus (the target's unit)"),
        _f("pred_std", pa.float64(), "", "std over samples of the sample profiles (the target's unit)"),
        _f("frac_error", pa.float64(), "", "(pred_mean - true) / true"),
    ]),
    "spectra": pa.schema([
        *_KEY,
        _f("comparison", pa.string(), "", "posterior_mean | sample | input_<condition> (input_sz_y, input_xray_sb, ...)"),
        _f("bin", pa.int32(), "", "k bin (integer |k| / k_F)"),
        _f("k_mpc_inv", pa.float64(), "Mpc-1", "mean |k| of the bin's modes"),
        _f("p_true", pa.float64(), "Mpc2", "P(k) of the mean-subtracted true map"),
        _f("p_other", pa.float64(), None, "P(k) of the compared map [Mpc2 times its unit squared]"),
        _f("p_cross", pa.float64(), None, "cross spectrum [Mpc2 times the compared map's unit]"),
        _f("b", pa.float64(), "", "sqrt(p_other / p_true); NaN for inputs"),
        _f("r", pa.float64(), "", "p_cross / sqrt(p_other p_true)"),
    ]),
    "convergence": pa.schema([
        *_KEY,
        _f("n", pa.int32(), "count", "samples used"),
        _f("ratio", pa.float64(), "", "median over pixels within R200m of (sigma / sqrt(n)) / |mean_n - true|"),
        _f("mc_error", pa.float64(), "", "median over pixels within R200m of sigma / sqrt(n) (the target's unit)"),
        _f("mean_error", pa.float64(), "", "median over pixels within R200m of |mean_n - true| (the target's unit)"),
    ]),
    "zhist": pa.schema([
        *_KEY,
        _f("region", pa.string(), "", "r200m (r <= R200m) | outside"),
        _f("bin", pa.int32(), "", "bin of cmpipe.evaluation.metrics.Z_EDGES"),
        _f("z_lo", pa.float64(), "", "lower edge"),
        _f("z_hi", pa.float64(), "", "upper edge"),
        _f("count", pa.int64(), "count", "pixels"),
    ]),
    "coverage": pa.schema([
        *_KEY,
        _f("quantity", pa.string(), "", "pixels_r200m | pixels_outside (fraction of pixels; empty background left "
                                          "out) | mass | mass_r200m | mass_r500c | profile (fraction of bins)"),
        _f("level", pa.float64(), "", "credible level of the central interval"),
        _f("covered", pa.float64(), "", "fraction of the truth inside the interval"),
    ]),
}

for _name, _schema in SCHEMAS.items():
    SCHEMAS[_name] = _schema.with_metadata({
        "cmpipe_table": _name, "cmpipe_table_schema_version": str(TABLE_SCHEMA_VERSION),
    })


#: ``RESULTS/images.parquet``: every image of the store (all splits), for the mass
#: distribution of the report (Fig. 1); written once by ``cmpipe infer``.
IMAGES_SCHEMA = pa.schema([
    _f("image_index", pa.int64(), "", "image index in the image store"),
    _f("halo_id", pa.int64(), "", "halo within the source"),
    _f("log10_m200m_msun_h", pa.float64(), LOG10_MSUN_H, "log10 M200m of the halo"),
    _f("split", pa.string(), "", "train | val | test"),
    _f("failed", pa.bool_(), "", "the image's halo failed to project"),
    _f("selected", pa.bool_(), "", "a test image within evaluate.test_log10_m_* (sampled by cmpipe infer)"),
]).with_metadata({"cmpipe_table": "images", "cmpipe_table_schema_version": str(TABLE_SCHEMA_VERSION)})


class TableError(ValueError):
    """A result table is missing, unreadable (corrupt Parquet), or its schema is not this cmpipe's."""


def refreshed(path: str | os.PathLike[str] | AnyPath) -> AnyPath:
    """``path`` (:func:`cmpipe.store.location.as_path`), with fsspec's cached listings of it and
    its parents dropped on an object store, so that ``exists``, ``is_file``, ``is_dir`` and
    ``iterdir`` see what other processes (Ray actors, Train workers, an earlier run) wrote since
    this process last listed there. Local paths: nothing to drop."""
    path = as_path(path)
    if is_remote(path):
        path.fs.invalidate_cache(path.path)
    return path


#: The Parquet key-value metadata astropy reads its table header from (``astropy.io.misc.parquet``).
ASTROPY_HEADER_KEY = b"table_meta_yaml"


def with_astropy_header(table: pa.Table) -> pa.Table:
    """``table`` with astropy's own Parquet header added to its schema metadata (the rest kept).

    ``astropy.table.Table.read(path)`` of a Parquet file takes each column's ``unit`` and
    ``description`` from the YAML under :data:`ASTROPY_HEADER_KEY`, and each string column's
    width from ``table::len::NAME`` (else it warns): both are written here, from the fields'
    metadata (``unit``, when not empty, and ``doc`` or ``description``). The data are unchanged.
    """
    import pyarrow.compute as pc
    import yaml

    columns = []
    extra: dict[bytes, bytes] = {}
    for field in table.schema:
        meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
        entry = {"name": field.name}
        if meta.get("unit"):
            entry["unit"] = meta["unit"]
        description = meta.get("doc") or meta.get("description")
        if description:
            entry["description"] = description
        columns.append(entry)
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            longest = pc.max(pc.utf8_length(table.column(field.name))).as_py() if table.num_rows else None
            extra[f"table::len::{field.name}".encode()] = str(max(int(longest or 0), 1)).encode()
    header = yaml.safe_dump({"datatype": columns}, sort_keys=False, width=1000).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), ASTROPY_HEADER_KEY: header, **extra})


def _parquet_bytes(table: pa.Table) -> bytes:
    """``table`` as the bytes of one Parquet file (pyarrow's defaults, as ``pq.write_table``),
    with astropy's header (:func:`with_astropy_header`)."""
    buffer = io.BytesIO()
    pq.write_table(with_astropy_header(table), buffer)
    return buffer.getvalue()


def read_parquet(path: str | os.PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """``pyarrow.parquet.read_table``, a corrupt or truncated file raising :class:`TableError`
    that names it.

    Parameters
    ----------
    path : str or path-like
    columns : sequence of str, optional

    Returns
    -------
    pyarrow.Table

    Raises
    ------
    TableError
        If ``path`` is not a readable Parquet file (naming it and why).
    FileNotFoundError
        If there is no file at ``path``.
    """
    path = as_path(path)
    try:
        source = pa.BufferReader(path.read_bytes()) if is_remote(path) else path
        return pq.read_table(source, columns=None if columns is None else list(columns))
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise TableError(f"{path}: not a readable Parquet file (corrupt or truncated?): {reason[:200]}") from exc


def to_table(name: str, rows: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]]) -> pa.Table:
    """Rows (a list of dicts, or a dict of columns) as a table of schema ``SCHEMAS[name]``.

    Raises
    ------
    TableError
        If a column is missing or extra, naming it.
    """
    schema = SCHEMAS[name]
    columns = rows if isinstance(rows, Mapping) else (
        {f: [r[f] for r in rows] for f in schema.names} if rows else {f: [] for f in schema.names})
    missing = [f for f in schema.names if f not in columns]
    extra = [f for f in columns if f not in schema.names]
    if missing or extra:
        raise TableError(f"table {name}: missing columns {missing}, unknown columns {extra}")
    return pa.table({f: pa.array(columns[f], type=schema.field(f).type) for f in schema.names}, schema=schema)


_PART_RE = re.compile(r"part-(\d{8})-(\d{8})\.parquet")


def part_name(images: Sequence[int]) -> str:
    """File name of the part holding the rows of these store images: first and last index."""
    return f"part-{min(images):08d}-{max(images):08d}.parquet"


def write_part(results: str | os.PathLike[str], name: str, table: pa.Table, images: Sequence[int]) -> AnyPath:
    """Write one part of table ``name`` whole: a temporary file renamed into place on disk, one
    PUT of the final object on an object store (:func:`cmpipe.store.location.write_bytes_atomic`)."""
    directory = as_path(results) / "tables" / name
    if not is_remote(directory):
        directory.mkdir(parents=True, exist_ok=True)
    path = directory / part_name(images)
    write_bytes_atomic(path, _parquet_bytes(table))
    return path


def part_images(path: str | os.PathLike[str]) -> range:
    """The store images a part's name spans, ``first ..= last`` (a superset of its images)."""
    match = _PART_RE.fullmatch(as_path(path).name)
    if match is None:
        raise TableError(f"{path}: not a table part name (part-FIRST-LAST.parquet)")
    return range(int(match.group(1)), int(match.group(2)) + 1)


def part_paths(results: str | os.PathLike[str], name: str) -> list[AnyPath]:
    """The parts of table ``name``, in file-name order (listed afresh: :func:`refreshed`)."""
    directory = refreshed(as_path(results) / "tables" / name)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if _PART_RE.fullmatch(p.name))


def read_table(results: str | os.PathLike[str], name: str) -> pa.Table:
    """Every part of table ``name`` as one table, sorted by ``image_index`` (stable).

    Raises
    ------
    TableError
        If the table has no part, or a part's schema version differs (naming the file).
    """
    parts = part_paths(results, name)
    if not parts:
        raise TableError(f"{as_path(results) / 'tables' / name}: no Parquet parts (run `cmpipe infer` first)")
    tables = []
    for path in parts:
        table = read_parquet(path)
        version = (table.schema.metadata or {}).get(b"cmpipe_table_schema_version", b"?").decode()
        if version != str(TABLE_SCHEMA_VERSION):
            raise TableError(f"{path}: table schema version {version}, this cmpipe reads {TABLE_SCHEMA_VERSION}")
        tables.append(table.cast(SCHEMAS[name]))
    table = pa.concat_tables(tables)
    return table.sort_by([("image_index", "ascending")])


def images_path(results: str | os.PathLike[str]) -> AnyPath:
    """``RESULTS/images.parquet`` (its fsspec listing cache dropped: :func:`refreshed`)."""
    return refreshed(as_path(results) / "images.parquet")


def write_images_table(results: str | os.PathLike[str], columns: Mapping[str, Sequence[Any]]) -> AnyPath:
    """Write ``RESULTS/images.parquet`` (:data:`IMAGES_SCHEMA`) whole (as :func:`write_part`)."""
    path = images_path(results)
    table = pa.table({f: pa.array(columns[f], type=IMAGES_SCHEMA.field(f).type) for f in IMAGES_SCHEMA.names},
                     schema=IMAGES_SCHEMA)
    write_bytes_atomic(path, _parquet_bytes(table))
    return path


def read_images_table(results: str | os.PathLike[str]) -> pa.Table:
    """``RESULTS/images.parquet``.

    Raises
    ------
    TableError
        If it is missing.
    """
    path = images_path(results)
    if not path.is_file():
        raise TableError(f"{path}: missing (run `cmpipe infer` first)")
    return read_parquet(path).cast(IMAGES_SCHEMA)


def _read_parts(results: str | os.PathLike[str]) -> tuple[dict[AnyPath, set[int]], list[AnyPath]]:
    """Every part of every table, listed afresh: ``(readable part -> its images, corrupt parts)``.
    A part is readable only if every column decodes (:func:`read_parquet`)."""
    parts: dict[AnyPath, set[int]] = {}
    corrupt: list[AnyPath] = []
    for name in SCHEMAS:
        for p in part_paths(results, name):
            try:
                parts[p] = set(read_parquet(p).column("image_index").to_pylist())
            except TableError as exc:
                reason = str(exc)
            except KeyError:
                reason = f"{p}: no image_index column"
            else:
                continue
            logger.warning("%s; removed with its batch-mates, whose images are sampled again", reason)
            corrupt.append(p)
    return parts, corrupt


def _incomplete_batches(tables_dir: AnyPath, parts: Mapping[AnyPath, set[int]], corrupt: Sequence[AnyPath]) -> set[int]:
    """Images of the batches whose part is missing from a table that has parts (one batch writes
    one part of each table, the same name in each; a part deleted since, by hand or by a bucket's
    lifecycle rule, leaves its batch-mates without it)."""
    tables = {p.parent.name for p in (*parts, *corrupt)}
    found: dict[str, dict[str, set[int]]] = {}
    for p in (*parts, *corrupt):
        found.setdefault(p.name, {})[p.parent.name] = parts.get(p, set())
    lost: set[int] = set()
    for name, by_table in sorted(found.items()):
        missing = sorted(tables - set(by_table))
        if missing:
            logger.warning("%s: no part %s in table(s) %s; its batch's parts are removed and its images sampled again",
                           tables_dir, name, ", ".join(missing))
            lost |= set().union(*by_table.values())
    return lost


def remove_parts_not_done(results: str | os.PathLike[str], done: set[int]) -> tuple[list[AnyPath], set[int]]:
    """Delete every table part that holds an image not in ``done`` (left by a killed run).

    A part is written before its images are marked done, so after a crash a part may exist for
    images the rerun will sample again. Removing it also removes the rows of the part's other
    images, so those are returned, to be marked not done and sampled again; parts of other
    tables holding them go too (repeated until nothing changes). Every image's rows then exist
    exactly once after the rerun.

    A corrupt part (truncated or unreadable: every column is decoded, :func:`read_parquet`) is
    removed the same way, with a warning naming the file: its images are those of its
    batch-mates, the parts of the same name in the other tables (one batch writes one part per
    table); where none of them can be read either, every image its name spans
    (:func:`part_images`, a superset: redoing more images is safe). A batch whose part is missing
    from one of the tables (deleted since it was written) goes the same way, with a warning.

    On an object store the parts are listed afresh (:func:`part_paths`) and each is one object
    written in one PUT: a part exists whole or not at all, and no temporary object is ever left
    (on disk, the temporary files of a killed writer are deleted here).

    Returns
    -------
    removed : list of path
    redo : set of int
        Images of ``done`` whose rows were removed.
    """
    removed: list[AnyPath] = []
    tables_dir = as_path(results) / "tables"
    parts, corrupt = _read_parts(results)
    lost = _incomplete_batches(tables_dir, parts, corrupt)
    for p in corrupt:
        mates = [images for q, images in parts.items() if q.name == p.name]
        p.unlink()
        removed.append(p)
        lost |= set().union(*mates) if mates else set(part_images(p))
    changed = True
    while changed:
        changed = False
        for path, images in list(parts.items()):
            if not images <= done or images & lost:
                path.unlink()
                removed.append(path)
                del parts[path]
                lost |= images
                changed = True
    if not is_remote(tables_dir) and tables_dir.is_dir():
        for tmp in tables_dir.glob("*/.part-*.tmp"):
            tmp.unlink()
    return removed, lost & done

"""Reconstruction of many observed clusters with Ray Data (``cmpipe reconstruct --inputs``).

The inputs are pairs of FITS maps, one y and one S_X map per cluster, found by
:func:`find_fits_pairs` in a directory (``<name>sz_y<rest>.fits`` with its partner
``<name>xray_sb<rest>.fits``, the names ``cmpipe generate --export-fits`` writes, and
``<name>kappa<rest>.fits`` where it exists, for models trained with a ``kappa`` condition) or
listed in a table (CSV or Parquet with columns ``name``, ``sz``, ``xray`` and optionally
``kappa``; relative paths are relative to the table). Maps on the sky (a celestial WCS) are
placed with each cluster's own ``REDSHIFT`` header keyword and central pixel
(:func:`cmpipe.stages.reconstruct.reconstruct`). :func:`reconstruct_many` hands the clusters
whose output does not exist yet to a Ray Data actor pool (``infer.actors``,
``infer.cpus_per_actor``, ``infer.gpus_per_actor``); each actor loads the model once and runs
:func:`cmpipe.stages.reconstruct.reconstruct` per cluster, writing ``OUT/<name>recon.fits`` and
its PNG. Cluster ``i`` of the sorted list samples from seed ``seed + i``. A rerun skips clusters
already written; ``OUT/reconstructions.csv`` lists them all.

Nothing is lost and one bad cluster does not stop the others: before Ray starts, the outputs are
checked (none may be an input; an existing file in a directory cmpipe did not make is kept unless
``--overwrite``) and ``OUT`` is marked as a cmpipe ``reconstructions`` directory
(:mod:`cmpipe.store.outputs`). A cluster whose inputs are unusable (not FITS, wrong units, too small,
out of distribution under ``--strict``) is recorded in ``reconstructions.csv`` with ``status``
``failed`` and its one-line ``error``; the others go on, and a rerun retries it. Every row also
carries the out-of-distribution flags (:class:`cmpipe.stages.reconstruct.DistributionCheck`).

Every path may be an object-store URL (:mod:`cmpipe.store.location`): the checkpoint, the input
directory (a prefix: its ``*sz_y*.fits`` objects) or table (and the files it lists: URLs, or
paths relative to the table), and ``OUT``. Each reconstruction is written whole (one PUT per
FITS and PNG); ``reconstructions.csv`` is rewritten whole at the end of each run (one PUT, never
appended), so a reader sees the previous table or the new one. An interrupted run resumes as on
disk: a cluster is done when its FITS object exists, and only a whole object ever exists.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from cmpipe.config import Config
from cmpipe.store.location import AnyPath, as_path, check_reachable, is_url, write_text_atomic

logger = logging.getLogger(__name__)


def find_fits_pairs(source: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The clusters of a directory or table: ``[{name, sz, xray, kappa}]`` (``kappa`` '' when absent),
    sorted by name.

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist, a listed file is missing, or a y map has no S_X partner
        (naming it).
    ValueError
        If the directory holds no y map, or the table lacks a column.
    """
    source = as_path(source)
    check_reachable(source, "--inputs")
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such directory or table")
    pairs = _directory_pairs(source) if source.is_dir() else _table_pairs(source)
    return sorted(pairs, key=lambda p: p["name"])


def _directory_pairs(source: AnyPath) -> list[dict[str, str]]:
    """The ``<name>sz_y*.fits`` maps of a directory (a prefix of a bucket) and their partners."""
    pairs = []
    for sz in sorted(source.glob("*sz_y*.fits"), key=lambda p: p.name):
        xray = sz.with_name(sz.name.replace("sz_y", "xray_sb", 1))
        if not xray.is_file():
            raise FileNotFoundError(f"{sz}: no X-ray partner {xray.name} in {source}")
        kappa = sz.with_name(sz.name.replace("sz_y", "kappa", 1))
        pairs.append({"name": sz.name.replace("sz_y", "", 1).removesuffix(".fits"), "sz": str(sz), "xray": str(xray),
                      "kappa": str(kappa) if kappa.is_file() else ""})
    if not pairs:
        raise ValueError(f"{source}: no *sz_y*.fits maps (expected <name>sz_y.fits and <name>xray_sb.fits pairs)")
    return pairs


def _table_pairs(source: AnyPath) -> list[dict[str, str]]:
    """The rows of a CSV or Parquet table ``name, sz, xray``: URLs, absolute paths, or paths
    relative to the table (to its prefix, for a table on a bucket)."""
    if source.suffix == ".parquet":
        import pyarrow.parquet as pq

        with source.open("rb") as f:
            rows = pq.read_table(f).to_pylist()
    else:
        with source.open("r", newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    pairs = []
    for i, row in enumerate(rows):
        missing = [c for c in ("name", "sz", "xray") if c not in row]
        if missing:
            raise ValueError(f"{source}: row {i} lacks the columns {missing} (need name, sz, xray)")
        item = {"name": str(row["name"]), "kappa": ""}
        for key in ("sz", "xray", "kappa"):
            if key == "kappa" and not row.get("kappa"):
                continue
            value = str(row[key])
            path = as_path(value) if is_url(value) or Path(value).is_absolute() else source.parent / value
            if not path.is_file():
                raise FileNotFoundError(f"{source}: row {i} ({row['name']}): {path} does not exist")
            item[key] = str(path)
        pairs.append(item)
    return pairs


def output_path(out_dir: str | os.PathLike[str], name: str) -> AnyPath:
    """Where cluster ``name``'s reconstruction goes (a path, or a URL under a URL ``out_dir``)."""
    stem = name if name.endswith(("_", "-", ".")) or not name else f"{name}_"
    return as_path(out_dir) / f"{stem}recon.fits"


#: Columns of ``reconstructions.csv``, in order: the cluster, its status (``done`` or
#: ``failed``), the error of a failed one, the out-of-distribution warning, then the flags of
#: :meth:`cmpipe.stages.reconstruct.DistributionCheck.columns` (empty for failed clusters).
TABLE_COLUMNS = ("name", "sz", "xray", "kappa", "recon", "seed", "status", "error", "warning", "ood",
                 "ood_frac_sz_y", "total_sz_y_mpc2", "ood_total_sz_y",
                 "ood_frac_xray_sb", "total_xray_sb_mpc2", "ood_total_xray_sb")
_OOD_COLUMNS = TABLE_COLUMNS[TABLE_COLUMNS.index("ood"):]


def _one_line(exc: BaseException) -> str:
    """A user error as one line (an OSError as ``path: reason``)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _user_errors() -> tuple[type[BaseException], ...]:
    """Per-cluster errors that are the inputs' fault: recorded, and the batch goes on. Anything
    else is a bug and stops the batch."""
    from cmpipe.store.fits import FitsError
    from cmpipe.store.outputs import OutputError
    from cmpipe.stages.reconstruct import OutOfDistributionError

    return (FitsError, OutOfDistributionError, OutputError, OSError)


def _header_columns(path: AnyPath) -> dict[str, str]:
    """The out-of-distribution columns of a reconstruction written earlier, from its FITS
    primary header (``unknown`` for what it lacks: files written before the flags existed)."""
    from astropy.io import fits

    from cmpipe.store.fits import read_fits_header

    cols = dict.fromkeys(_OOD_COLUMNS, "unknown")
    try:
        header = read_fits_header(path, 0)
    except (OSError, ValueError):
        return cols

    def card(key: str) -> str:
        value = header.get(key)
        if value is None or isinstance(value, fits.card.Undefined):
            return "unknown"
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    cols["ood"] = card("OODFLAG")
    for i, (name, letter) in enumerate((("sz_y", "Y"), ("xray_sb", "X"))):
        cols[f"ood_frac_{name}"] = card(f"OODFRAC{i + 1}")
        cols[f"total_{name}_mpc2"] = card(f"TOTAL{letter}")
        cols[f"ood_total_{name}"] = card(f"OODTOT{letter}")
    return cols


class ReconstructActor:
    """A Ray Data actor: one loaded model, many clusters (see the module docstring).

    A cluster whose inputs are unusable (:func:`_user_errors`: not FITS, wrong units, too small,
    out of distribution under ``strict``, a missing file) comes back with ``status`` ``failed``
    and its one-line ``error``; the other clusters go on.
    """

    def __init__(self, cfg: Config, checkpoint: str, out_dir: str, n_samples: int, pixel_mpc: float | None,
                 save_samples: bool, strict: bool = False, max_ood_fraction: float | None = None,
                 physical_units: bool = False) -> None:
        os.environ["OMP_NUM_THREADS"] = str(cfg.infer.threads_per_actor)
        import dataclasses

        import torch

        torch.set_num_threads(cfg.infer.threads_per_actor)
        from cmpipe.model.inference import load_posterior_sampler
        from cmpipe.stages.reconstruct import OOD_MAX_FRACTION

        self.device = "cuda" if cfg.infer.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"
        self.infer_cfg = dataclasses.replace(cfg.infer, n_samples=n_samples)
        self.sampler = load_posterior_sampler(checkpoint, self.infer_cfg, self.device)
        self.checkpoint, self.out_dir = checkpoint, out_dir
        self.n_samples, self.pixel_mpc, self.save_samples = n_samples, pixel_mpc, save_samples
        self.strict, self.physical_units, self.cosmology = bool(strict), bool(physical_units), cfg.cosmology
        self.max_ood_fraction = OOD_MAX_FRACTION if max_ood_fraction is None else float(max_ood_fraction)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cmpipe.stages.reconstruct import reconstruct

        rows: list[dict[str, str]] = []
        seconds = []
        for name, sz, xray, kappa, seed in zip(*(batch[k] for k in ("name", "sz", "xray", "kappa", "seed"))):
            t0 = time.perf_counter()
            row = {"name": str(name), "fits": "", "status": "done", "error": "", "warning": "", "messages": "",
                   **dict.fromkeys(_OOD_COLUMNS, "")}
            try:
                result = reconstruct(self.checkpoint, str(sz), str(xray), output_path(self.out_dir, str(name)),
                                     n_samples=self.n_samples, seed=int(seed), pixel_mpc=self.pixel_mpc,
                                     save_samples=self.save_samples, device=self.device, infer_cfg=self.infer_cfg,
                                     overwrite=True, sampler=self.sampler, strict=self.strict,
                                     max_ood_fraction=self.max_ood_fraction, warn=False, kappa_path=str(kappa) or None,
                                     cosmology=self.cosmology, physical_units=self.physical_units)
            except _user_errors() as exc:
                row.update(status="failed", error=_one_line(exc))
            else:
                ood = result["ood"]
                row.update(fits=str(result["fits"]), messages=" | ".join(result["messages"]),
                           warning="; ".join(ood.reasons()),
                           **{k: str(v) for k, v in ood.columns().items()})
            rows.append(row)
            seconds.append(time.perf_counter() - t0)
        out = {key: np.asarray([r[key] for r in rows]) for key in rows[0]} if rows else {}
        out["seconds"] = np.asarray(seconds, dtype=np.float64)
        return out


def _preflight(pairs: list[dict[str, Any]], source: AnyPath, out_dir: AnyPath, overwrite: bool) -> None:
    """Refuse, before Ray starts, outputs that would replace an input, and (in a directory cmpipe
    did not make) files that exist without ``overwrite``; then mark ``out_dir`` as a cmpipe
    reconstructions directory."""
    from cmpipe.store.outputs import OutputError, artifact_kind, check_output_dir, mark_directory, same_path

    check_output_dir(out_dir, what="--recon")
    inputs = [as_path(p[k]) for p in pairs for k in ("sz", "xray", "kappa") if p[k]]
    inputs += [source] if source.is_file() else []
    table = out_dir / "reconstructions.csv"
    owned = artifact_kind(out_dir) == "reconstructions"
    for item, path in [(None, table)] + [(p, f) for p in pairs
                                         for f in (output_path(out_dir, p["name"]),
                                                   output_path(out_dir, p["name"]).with_suffix(".png"))]:
        for source_path in inputs:
            if same_path(path, source_path):
                whose = f" (cluster {item['name']})" if item else ""
                raise OutputError(f"--recon {out_dir}: the output {path}{whose} is also an input: an output never "
                                  "replaces an input; choose another output directory")
        if path.is_dir():
            raise OutputError(f"--recon {out_dir}: {path} is a directory, where an output file belongs")
        # Outputs of clusters done before are kept (skipped); the table and the outputs of the
        # clusters still to do are written: in a directory cmpipe did not make, only with --overwrite.
        done = item is not None and output_path(out_dir, item["name"]).is_file()
        if path.exists() and not owned and not overwrite and not done:
            raise OutputError(f"--recon {out_dir} is not a cmpipe reconstructions directory and {path} exists: "
                              "pass --overwrite to replace it, or choose another output directory")
    mark_directory(out_dir, "reconstructions")


def _add_done_before(pairs: list[dict[str, Any]], out_dir: AnyPath, rows: dict[str, dict[str, str]]) -> None:
    """Rows of the clusters reconstructed by an earlier run (not in ``rows``): done, their flags
    from their FITS headers."""
    if is_url(out_dir):
        out_dir.fs.invalidate_cache()  # the actors wrote objects this process has not listed
    for p in pairs:
        if p["name"] not in rows:
            rows[p["name"]] = {"status": "done", "error": "", "warning": "",
                               **_header_columns(output_path(out_dir, p["name"]))}


def _write_table(table: AnyPath, pairs: list[dict[str, Any]], out_dir: AnyPath,
                 rows: dict[str, dict[str, str]]) -> None:
    """``reconstructions.csv``, one row per cluster (:data:`TABLE_COLUMNS`), rewritten whole
    (a temporary file renamed into place on disk, one PUT on an object store)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(TABLE_COLUMNS)
    for p in pairs:
        row = {"name": p["name"], "sz": p["sz"], "xray": p["xray"], "kappa": p["kappa"],
               "recon": str(output_path(out_dir, p["name"])),
               "seed": p["seed"], **rows[p["name"]]}
        writer.writerow([row.get(c, "") for c in TABLE_COLUMNS])
    write_text_atomic(table, text.getvalue())


def reconstruct_many(
    cfg: Config,
    checkpoint: str | os.PathLike[str],
    source: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    n_samples: int = 50,
    seed: int = 0,
    pixel_mpc: float | None = None,
    save_samples: bool = False,
    address: str | None = None,
    overwrite: bool = False,
    strict: bool = False,
    max_ood_fraction: float | None = None,
    physical_units: bool = False,
) -> dict[str, Any]:
    """Reconstruct every cluster of ``source`` not yet written to ``out_dir``, with Ray Data.

    Before Ray starts: the inputs are listed (:func:`find_fits_pairs`), the checkpoint and its
    model grid resolved, and the outputs checked (none may be an input; in a directory cmpipe
    did not make, existing files are kept unless ``overwrite``); ``out_dir`` is then marked as a
    cmpipe ``reconstructions`` directory. A cluster whose inputs are unusable is recorded as
    ``failed`` with its error in ``reconstructions.csv`` and the others go on; a rerun retries
    it (clusters whose output exists are skipped unless ``overwrite``).

    Parameters
    ----------
    overwrite : bool
        Reconstruct every cluster again, replacing existing outputs (never an input).
    strict : bool
        Refuse (record as failed) clusters out of the training distribution, instead of
        reconstructing them with a warning (:func:`cmpipe.stages.reconstruct.check_distribution`).
    max_ood_fraction : float, optional
        Pixel-fraction threshold of that check (default
        :data:`cmpipe.stages.reconstruct.OOD_MAX_FRACTION`).
    physical_units : bool
        Write surface densities in Msun Mpc^-2 (:func:`cmpipe.stages.reconstruct.reconstruct`).

    Returns
    -------
    dict
        ``clusters`` (all), ``done_before``, ``reconstructed`` (this run), ``failed`` (list of
        ``(name, error)``), ``out_of_distribution`` (names of the clusters flagged, this run and
        before), ``wall_s``, ``table`` (``OUT/reconstructions.csv``: :data:`TABLE_COLUMNS`).

    Raises
    ------
    cmpipe.store.outputs.OutputError
        An output that would replace an input, or an existing file in a directory cmpipe did
        not make (without ``overwrite``); nothing is written then.
    """
    import ray

    from cmpipe.model.inference import resolve_checkpoint
    from cmpipe.pipeline.infer import _check_gpus
    from cmpipe.pipeline.session import start_ray
    from cmpipe.stages.reconstruct import model_grid

    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 for a posterior std; got {n_samples}")
    pairs = find_fits_pairs(source)
    out_dir = as_path(out_dir)
    out_dir = out_dir if is_url(out_dir) else out_dir.resolve()
    ckpt = str(resolve_checkpoint(checkpoint))
    model_grid(ckpt, pixel_mpc=pixel_mpc)  # no pixel size, or a contradicting one: refused here, not per cluster
    _preflight(pairs, as_path(source), out_dir, overwrite)
    for i, pair in enumerate(pairs):
        pair["seed"] = int(seed) + i
    todo = pairs if overwrite else [p for p in pairs if not output_path(out_dir, p["name"]).is_file()]
    logger.info("%d clusters in %s, %d already reconstructed, %d to do", len(pairs), source,
                len(pairs) - len(todo), len(todo))
    rows: dict[str, dict[str, str]] = {}
    t0 = time.perf_counter()
    if todo:
        started = start_ray(address)
        try:
            _check_gpus(cfg)
            ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo), 4 * cfg.infer.actors)))
            out = ds.map_batches(
                ReconstructActor,
                fn_constructor_kwargs={"cfg": cfg, "checkpoint": ckpt, "out_dir": str(out_dir), "n_samples": n_samples,
                                       "pixel_mpc": pixel_mpc, "save_samples": save_samples, "strict": strict,
                                       "max_ood_fraction": max_ood_fraction, "physical_units": physical_units},
                batch_size=cfg.infer.images_per_batch, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=cfg.infer.actors),
                num_cpus=cfg.infer.cpus_per_actor, num_gpus=cfg.infer.gpus_per_actor,
            )
            for row in out.iter_rows():
                name = str(row["name"])
                rows[name] = {c: str(row[c]) for c in ("status", "error", "warning", *_OOD_COLUMNS)}
                if row["status"] == "failed":
                    logger.error("%s failed: %s", name, row["error"])
                else:
                    logger.info("%s -> %s (%.1f s)", name, row["fits"], row["seconds"])
                    if row["warning"]:
                        logger.warning("%s: out of the training distribution: %s (reconstructed; ood=True in %s)",
                                       name, row["warning"], out_dir / "reconstructions.csv")
        finally:
            if started:
                ray.shutdown()
    _add_done_before(pairs, out_dir, rows)
    table = out_dir / "reconstructions.csv"
    _write_table(table, pairs, out_dir, rows)
    failed = [(p["name"], rows[p["name"]]["error"]) for p in pairs if rows[p["name"]]["status"] == "failed"]
    flagged = [p["name"] for p in pairs if rows[p["name"]]["ood"] == "True"]
    return {"clusters": len(pairs), "done_before": len(pairs) - len(todo), "reconstructed": len(todo) - len(failed),
            "failed": failed, "out_of_distribution": flagged, "wall_s": time.perf_counter() - t0, "table": table}

"""Reconstruction of many observed clusters with Ray Data (``cmpipe reconstruct --inputs``).

The inputs are pairs of FITS maps, one y and one S_X map per cluster, found by
:func:`find_fits_pairs` in a directory (``<name>sz_y<rest>.fits`` with its partner
``<name>xray_sb<rest>.fits``, the names ``cmpipe generate --export-fits`` writes) or listed in a
table (CSV or Parquet with columns ``name``, ``sz``, ``xray``; relative paths are relative to the
table). :func:`reconstruct_many` hands the clusters whose output does not exist yet to a Ray Data
actor pool (``infer.actors``, ``infer.cpus_per_actor``, ``infer.gpus_per_actor``); each actor
loads the model once and runs :func:`cmpipe.reconstruct.reconstruct` per cluster, writing
``OUT/<name>recon.fits`` and its PNG. Cluster ``i`` of the sorted list samples from seed
``seed + i``. A rerun skips clusters already written; ``OUT/reconstructions.csv`` lists them all.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from cmpipe.config import Config

logger = logging.getLogger(__name__)


def find_fits_pairs(source: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The clusters of a directory or table: ``[{name, sz, xray}]``, sorted by name.

    Raises
    ------
    FileNotFoundError
        If ``source`` does not exist, a listed file is missing, or a y map has no S_X partner
        (naming it).
    ValueError
        If the directory holds no y map, or the table lacks a column.
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such directory or table")
    pairs = []
    if source.is_dir():
        for sz in sorted(source.glob("*sz_y*.fits")):
            xray = sz.with_name(sz.name.replace("sz_y", "xray_sb", 1))
            if not xray.is_file():
                raise FileNotFoundError(f"{sz}: no X-ray partner {xray.name} in {source}")
            pairs.append({"name": sz.name.replace("sz_y", "", 1).removesuffix(".fits"), "sz": str(sz),
                          "xray": str(xray)})
        if not pairs:
            raise ValueError(f"{source}: no *sz_y*.fits maps (expected <name>sz_y.fits and <name>xray_sb.fits pairs)")
    else:
        if source.suffix == ".parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(source).to_pylist()
        else:
            with source.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        for i, row in enumerate(rows):
            missing = [c for c in ("name", "sz", "xray") if c not in row]
            if missing:
                raise ValueError(f"{source}: row {i} lacks the columns {missing} (need name, sz, xray)")
            item = {"name": str(row["name"])}
            for key in ("sz", "xray"):
                path = Path(row[key])
                path = path if path.is_absolute() else source.parent / path
                if not path.is_file():
                    raise FileNotFoundError(f"{source}: row {i} ({row['name']}): {path} does not exist")
                item[key] = str(path)
            pairs.append(item)
    return sorted(pairs, key=lambda p: p["name"])


def output_path(out_dir: str | os.PathLike[str], name: str) -> Path:
    """Where cluster ``name``'s reconstruction goes."""
    stem = name if name.endswith(("_", "-", ".")) or not name else f"{name}_"
    return Path(out_dir) / f"{stem}recon.fits"


class ReconstructActor:
    """A Ray Data actor: one loaded model, many clusters (see the module docstring)."""

    def __init__(self, cfg: Config, checkpoint: str, out_dir: str, n_samples: int, pixel_mpc: float | None,
                 save_samples: bool) -> None:
        os.environ["OMP_NUM_THREADS"] = str(cfg.infer.threads_per_actor)
        import dataclasses

        import torch

        torch.set_num_threads(cfg.infer.threads_per_actor)
        from cmpipe.model.inference import load_posterior_sampler

        self.device = "cuda" if cfg.infer.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"
        self.infer_cfg = dataclasses.replace(cfg.infer, n_samples=n_samples)
        self.sampler = load_posterior_sampler(checkpoint, self.infer_cfg, self.device)
        self.checkpoint, self.out_dir = checkpoint, out_dir
        self.n_samples, self.pixel_mpc, self.save_samples = n_samples, pixel_mpc, save_samples

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cmpipe.reconstruct import reconstruct

        fits, messages, seconds = [], [], []
        for name, sz, xray, seed in zip(batch["name"], batch["sz"], batch["xray"], batch["seed"]):
            t0 = time.perf_counter()
            result = reconstruct(self.checkpoint, str(sz), str(xray), output_path(self.out_dir, str(name)),
                                 n_samples=self.n_samples, seed=int(seed), pixel_mpc=self.pixel_mpc,
                                 save_samples=self.save_samples, device=self.device, infer_cfg=self.infer_cfg,
                                 overwrite=True, sampler=self.sampler)
            fits.append(str(result["fits"]))
            messages.append(" | ".join(result["messages"]))
            seconds.append(time.perf_counter() - t0)
        return {"name": np.asarray(batch["name"]), "fits": np.asarray(fits), "messages": np.asarray(messages),
                "seconds": np.asarray(seconds)}


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
) -> dict[str, Any]:
    """Reconstruct every cluster of ``source`` not yet written to ``out_dir``, with Ray Data.

    Returns
    -------
    dict
        ``clusters`` (all), ``done_before``, ``reconstructed`` (this run), ``wall_s``,
        ``table`` (``OUT/reconstructions.csv``: name, inputs, output).
    """
    import ray

    from cmpipe.model.inference import resolve_checkpoint
    from cmpipe.pipeline.session import start_ray
    from cmpipe.pipeline.infer import _check_gpus

    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 for a posterior std; got {n_samples}")
    pairs = find_fits_pairs(source)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = str(resolve_checkpoint(checkpoint))
    for i, pair in enumerate(pairs):
        pair["seed"] = int(seed) + i
    todo = [p for p in pairs if not output_path(out_dir, p["name"]).is_file()]
    logger.info("%d clusters in %s, %d already reconstructed, %d to do", len(pairs), source,
                len(pairs) - len(todo), len(todo))
    t0 = time.perf_counter()
    if todo:
        started = start_ray(address)
        try:
            _check_gpus(cfg)
            ds = ray.data.from_items(todo, override_num_blocks=max(1, min(len(todo), 4 * cfg.infer.actors)))
            out = ds.map_batches(
                ReconstructActor,
                fn_constructor_kwargs={"cfg": cfg, "checkpoint": ckpt, "out_dir": str(out_dir), "n_samples": n_samples,
                                       "pixel_mpc": pixel_mpc, "save_samples": save_samples},
                batch_size=cfg.infer.images_per_batch, batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=cfg.infer.actors),
                num_cpus=cfg.infer.cpus_per_actor, num_gpus=cfg.infer.gpus_per_actor,
            )
            for row in out.iter_rows():
                logger.info("%s -> %s (%.1f s)", row["name"], row["fits"], row["seconds"])
        finally:
            if started:
                ray.shutdown()
    table = out_dir / "reconstructions.csv"
    with table.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "sz", "xray", "recon", "seed"])
        for p in pairs:
            writer.writerow([p["name"], p["sz"], p["xray"], str(output_path(out_dir, p["name"])), p["seed"]])
    return {"clusters": len(pairs), "done_before": len(pairs) - len(todo), "reconstructed": len(todo),
            "wall_s": time.perf_counter() - t0, "table": table}

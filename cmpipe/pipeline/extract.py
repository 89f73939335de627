"""extract-halos on Ray: one task per few halos, the unit of work of the serial stage
(:func:`cmpipe.physics.snapshots.extract.extract_halo`).

The reader is built once in the driver (for a multi-file Gadget snapshot it first scans every
file's bounding box, so tasks open only the files they need), put in the object store and shared
by every task. Each task asks for ``num_cpus=1`` and runs single-threaded (numba, torch and
OpenMP threads set to 1); it writes whole halo files (atomically: a halo another task wrote
meanwhile is skipped; on an object store one PUT per halo, each halo owned by one task) and
returns only its summary rows. The output directory may be a URL (tasks get it as a string).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config
    from cmpipe.physics.snapshots.base import CatalogHalo, SnapshotReader
    from cmpipe.physics.snapshots.extract import ExtractionSettings

__all__ = ["extract_with_ray"]


def _one_thread() -> None:
    """numba, torch and OpenMP to one thread in this worker (where loaded)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    if "numba" in sys.modules:
        sys.modules["numba"].set_num_threads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _extract_task(reader: SnapshotReader, halos: list[CatalogHalo], out: str,
                  settings: ExtractionSettings) -> list[dict[str, Any]]:
    """Body of one Ray task: extract ``halos`` one after another."""
    from cmpipe.physics.snapshots.extract import extract_halo

    from cmpipe.store.location import as_path

    _one_thread()
    return [extract_halo(reader, c, as_path(out), settings) for c in halos]


def extract_with_ray(cfg: Config, paths: Mapping[str, Path], *, fmt: str, snapshot: str | Path,
                     catalog: str | Path, address: str | None = None, halos_per_task: int = 1,
                     **selection: Any) -> dict[str, Any]:
    """:func:`cmpipe.stages.extract.run` with the halos fanned out over Ray tasks.

    Parameters
    ----------
    cfg, paths, fmt, snapshot, catalog, **selection
        As :func:`cmpipe.stages.extract.run`.
    address : str, optional
        Ray cluster (default: ``$RAY_ADDRESS``, else a local Ray; an initialised Ray is used).
    halos_per_task : int
        Halos per task (> 0).

    Returns
    -------
    dict
        The summary (also written to ``extraction.json``), rows in catalog order. Progress of
        the halos on the driver (:class:`cmpipe.progress.Progress`) as the tasks finish.
    """
    import ray

    from cmpipe.physics.snapshots.extract import open_snapshot, select_halos, summarise
    from cmpipe.pipeline.session import start_ray
    from cmpipe.progress import Progress
    from cmpipe.stages.extract import extraction_settings, write_summary
    from cmpipe.store.location import as_path, is_url

    if halos_per_task < 1:
        raise ValueError(f"halos_per_task = {halos_per_task!r} must be >= 1")
    t0 = time.perf_counter()
    out = as_path(paths["halos"])
    if not is_url(out):  # a prefix on an object store: nothing to create
        out = out.absolute()
        out.mkdir(parents=True, exist_ok=True)
    settings = extraction_settings(cfg, **selection)
    reader = open_snapshot(fmt, snapshot, catalog)
    selected = select_halos(reader.halos(), reader.info.h, settings, where=reader.info.path)
    if hasattr(reader, "scan_extents"):
        reader.scan_extents()
    start_ray(address)
    reader_ref = ray.put(reader)
    remote = ray.remote(_extract_task).options(num_cpus=1)
    batches = [selected[i:i + halos_per_task] for i in range(0, len(selected), halos_per_task)]
    pending = {remote.remote(reader_ref, batch, str(out), settings): k for k, batch in enumerate(batches)}
    results: dict[int, list[dict[str, Any]]] = {}
    failed = 0
    with Progress(len(selected), "extract", "halos") as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            k = pending.pop(done[0])
            results[k] = ray.get(done[0])
            failed += sum(r["status"] == "failed" for r in results[k])
            bar.update(len(results[k]), failed=failed)
    rows = [row for k in range(len(batches)) for row in results[k]]
    summary = summarise(rows, reader, time.perf_counter() - t0)
    write_summary(summary, out)
    return summary

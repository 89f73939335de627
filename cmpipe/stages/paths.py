"""Where each stage reads and writes under one output directory (the ``paths`` of every stage's
``run(cfg, paths)``).

=================  =====================================  ======================================
key                path                                   written by
=================  =====================================  ======================================
``out``            ``OUT``                                 (the run directory)
``catalog``        ``OUT/catalog.parquet``                 catalog
``store``          ``OUT/images.zarr``                     generate
``run``            ``OUT/run``                             train (the score model)
``run_unet``       ``OUT/run_unet``                        train (the U-Net baseline)
``results``        ``OUT/results``                         infer
``report``         ``OUT/results/report``                  report
``results_unet``   ``OUT/results/baselines/unet``          infer (the U-Net baseline)
=================  =====================================  ======================================

``OUT`` may be an object-store URL (``s3://bucket/run``): every path is then the URL below it
(a ``upath.UPath``), never a local path made of the URL's text.
"""

from __future__ import annotations

import os

from cmpipe.store.location import AnyPath, as_path

__all__ = ["PIPELINE_NAMES", "pipeline_paths"]

#: What the stages (and ``catalog``, ``render-halo``, ``project-halos``, ``validate-mock``, which
#: share ``run.out``) write directly in the output directory. A new or empty one is marked
#: ``pipeline``; an unmarked one holding the user's files is used only if none is named so
#: (:func:`cmpipe.store.outputs.claim_directory`, ``shared``).
PIPELINE_NAMES = ("catalog.parquet", "mass_function.png", "images.zarr", "plan.parquet", "fits", "run", "results",
                  "config.resolved.yaml", "*.png", "*.npz", "validation", "summary.json", "halos", "maps",
                  "store.zarr", "run_unet", ".*.tmp", ".*.creating")


def pipeline_paths(out: str | os.PathLike[str] | AnyPath) -> dict[str, AnyPath]:
    """Where each stage writes under ``out`` (the table above): ``pathlib.Path`` values for a
    local ``out``, ``upath.UPath`` values for an object-store URL
    (:func:`cmpipe.store.location.as_path`; :class:`~cmpipe.store.location.LocationError` for an
    unknown scheme)."""
    out = as_path(out)
    return {"out": out, "catalog": out / "catalog.parquet", "store": out / "images.zarr", "run": out / "run",
            "run_unet": out / "run_unet", "results": out / "results", "report": out / "results" / "report",
            "results_unet": out / "results" / "baselines" / "unet"}

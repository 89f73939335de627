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
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PIPELINE_NAMES", "pipeline_paths"]

#: What the stages (and ``catalog``, ``render-halo``, ``project-halos``, ``validate-mock``, which
#: share ``run.out``) write directly in the output directory. A new or empty one is marked
#: ``pipeline``; an unmarked one holding the user's files is used only if none is named so
#: (:func:`cmpipe.store.outputs.claim_directory`, ``shared``).
PIPELINE_NAMES = ("catalog.parquet", "mass_function.png", "images.zarr", "plan.parquet", "fits", "run", "results",
                  "config.resolved.yaml", "*.png", "*.npz", "validation", "summary.json", "halos", "maps",
                  "store.zarr", "run_unet", ".*.tmp", ".*.creating")


def pipeline_paths(out: str | Path) -> dict[str, Path]:
    """Where each stage writes under ``out`` (the table above)."""
    out = Path(out)
    return {"out": out, "catalog": out / "catalog.parquet", "store": out / "images.zarr", "run": out / "run",
            "run_unet": out / "run_unet", "results": out / "results", "report": out / "results" / "report",
            "results_unet": out / "results" / "baselines" / "unet"}

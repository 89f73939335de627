"""cmpipe: galaxy-cluster gas and dark-matter mass maps from SZ and X-ray images.

Importing :mod:`cmpipe` is cheap and has no side effects: no heavy imports, no logging
set-up, no directories created. The public API (:mod:`cmpipe.api`) loads on first use:

- :func:`load_config`;
- the stages' Ray-free ``run(cfg, paths)``: :func:`run_catalog`, :func:`run_generate`,
  :func:`run_train`, :func:`run_infer`, :func:`run_report`, :func:`run_render`,
  :func:`run_reconstruct`;
- :func:`open_store`, :func:`open_posterior` (:class:`xarray.Dataset`);
- :class:`Reconstructor` (arrays in, posterior samples with their units out).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: Public name -> (module, attribute), imported on first access (PEP 562).
_API = {
    "load_config": ("cmpipe.config", "load_config"),
    "open_store": ("cmpipe.api", "open_store"),
    "open_posterior": ("cmpipe.api", "open_posterior"),
    "Reconstructor": ("cmpipe.api", "Reconstructor"),
    "Reconstruction": ("cmpipe.api", "Reconstruction"),
    "run_catalog": ("cmpipe.stages.catalog", "run"),
    "run_generate": ("cmpipe.stages.generate", "run"),
    "run_train": ("cmpipe.stages.train", "run"),
    "run_infer": ("cmpipe.stages.infer", "run"),
    "run_report": ("cmpipe.stages.report", "run"),
    "run_render": ("cmpipe.stages.render", "run"),
    "run_reconstruct": ("cmpipe.stages.reconstruct", "run"),
    "pipeline_paths": ("cmpipe.stages.paths", "pipeline_paths"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'cmpipe' has no attribute {name!r}")
    import importlib

    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

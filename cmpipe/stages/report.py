"""The ``report`` stage (``cmpipe report``, the pipeline's last stage) and ``cmpipe compare``.

Ray-free. The report reads only what ``cmpipe infer`` wrote; its ``evaluate`` settings are the
ones the results were made with, recorded as ``config_yaml`` in their posterior store (not the
caller's configuration): this module turns that recorded :class:`cmpipe.config.Config` into
its ``evaluate`` section for :mod:`cmpipe.evaluation.report` and
:mod:`cmpipe.evaluation.compare`. Every results and output directory may be an object-store URL
(:mod:`cmpipe.store.location`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config, EvaluateConfig

__all__ = ["recorded_evaluate", "run", "run_compare"]


def recorded_evaluate(config_yaml: str) -> EvaluateConfig:
    """The ``evaluate`` section of a configuration recorded with results (a posterior store's
    ``config_yaml`` attribute).

    Raises
    ------
    cmpipe.config.ConfigError
        If the recorded configuration is not a valid one (naming ``posterior.zarr config_yaml``).
    """
    import yaml

    from cmpipe.config import config_from_dict

    return config_from_dict(yaml.safe_load(config_yaml), "posterior.zarr config_yaml").evaluate


def run(cfg: Config | None, paths: Mapping[str, str | os.PathLike[str]]) -> dict[str, Any]:
    """Write the evaluation report of a results directory.

    Parameters
    ----------
    cfg : Config or None
        The caller's configuration; not used: the report's settings are those recorded with
        the results (:func:`recorded_evaluate`), the ones their tables were computed with.
    paths : mapping
        ``"results"``: the results directory of ``cmpipe infer``; ``"report"`` (optional, None:
        ``RESULTS/report``): the report directory.

    Returns
    -------
    dict
        :func:`cmpipe.evaluation.report.make_report`'s: written file name -> path, ``"report"``,
        ``"headline_text"``, ``"numbers"``, ``"baseline_numbers"``, ``"skills"``.
    """
    from cmpipe.evaluation.report import make_report

    return make_report(paths["results"], paths.get("report"), evaluate_of=recorded_evaluate)


def run_compare(cfg: Config | None, results: Mapping[str, str | os.PathLike[str]],
                out: str | os.PathLike[str]) -> dict[str, Any]:
    """Compare two or more results directories on their common images (``cmpipe compare``).

    Parameters
    ----------
    cfg : Config or None
        Not used, as in :func:`run`: each result's own recorded ``evaluate`` settings apply.
    results : mapping
        Model label -> results directory of ``cmpipe infer``; at least two.
    out : str or path-like
        The comparison directory.

    Returns
    -------
    dict
        :func:`cmpipe.evaluation.compare.compare_reports`'s.
    """
    from cmpipe.evaluation.compare import compare_reports

    return compare_reports(results, out, evaluate_of=recorded_evaluate)

"""The extract-halos stage: cut the selected halos of a simulation snapshot into cmpipe's one-halo
HDF5 layout, one after another (Ray-free; :mod:`cmpipe.pipeline.extract` fans the same unit of
work out over Ray tasks).

``paths["halos"]`` is the output directory (``halo_{id:06d}.hdf5`` files, plus
``extraction.json``, the summary of the last run); it then feeds ``cmpipe generate`` with
``source.kind: hdf5`` and ``source.path`` set to it. The map geometry that sets the extraction
radius comes from the config's ``maps`` section. The output directory may be an object-store URL
(every file written whole, in one PUT); the snapshot is read from local disk.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmpipe.store.location import AnyPath, as_path, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config
    from cmpipe.physics.snapshots.extract import ExtractionSettings

__all__ = ["SUMMARY_NAME", "extraction_settings", "run", "write_summary"]

#: The summary of the last extraction, in the output directory.
SUMMARY_NAME = "extraction.json"


def extraction_settings(cfg: Config, *, log10_m_min_msun_h: float | None = None,
                        log10_m_max_msun_h: float | None = None, ids: Sequence[int] | None = None,
                        radius_mpc: float = 0.0, mass_tolerance: float = 0.1) -> ExtractionSettings:
    """The :class:`~cmpipe.physics.snapshots.extract.ExtractionSettings` of ``cfg.maps`` (npix,
    pixel_mpc, depth_mpc) and the selection: log10 M200m bounds [Msun/h] (None: unbounded),
    catalog ids (None: all), requested radius [physical Mpc], mass tolerance (relative)."""
    from cmpipe.physics.snapshots.extract import ExtractionSettings

    return ExtractionSettings(
        npix=cfg.maps.npix, pixel_mpc=cfg.maps.pixel_mpc, depth_mpc=cfg.maps.depth_mpc, radius_mpc=float(radius_mpc),
        log10_m_min_msun_h=-math.inf if log10_m_min_msun_h is None else float(log10_m_min_msun_h),
        log10_m_max_msun_h=math.inf if log10_m_max_msun_h is None else float(log10_m_max_msun_h),
        ids=None if ids is None else tuple(int(i) for i in ids), mass_tolerance=float(mass_tolerance),
    )


def write_summary(summary: Mapping[str, Any], out: AnyPath) -> AnyPath:
    """``out / SUMMARY_NAME``: the summary as JSON (NaN mass ratios as null), replaced whole (a
    renamed temporary file on disk, one PUT on an object store)."""
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    path = as_path(out) / SUMMARY_NAME
    write_text_atomic(path, json.dumps(clean(dict(summary)), indent=1) + "\n")
    return path


def run(cfg: Config, paths: Mapping[str, Path], *, fmt: str, snapshot: str | Path, catalog: str | Path,
        **selection: Any) -> dict[str, Any]:
    """Extract the selected halos serially into ``paths["halos"]``.

    Parameters
    ----------
    cfg : Config
        Its ``maps`` section sets the slab the extraction radius must hold.
    paths : mapping
        ``halos``: the output directory (created if needed), or a URL.
    fmt : str
        ``gadget`` or ``swift``.
    snapshot, catalog : str or Path
        The snapshot (any file of a multi-file one) and its halo catalog.
    **selection
        ``log10_m_min_msun_h``, ``log10_m_max_msun_h``, ``ids``, ``radius_mpc``,
        ``mass_tolerance`` of :func:`extraction_settings`.

    Returns
    -------
    dict
        :func:`cmpipe.physics.snapshots.extract.summarise` (also written to ``extraction.json``).
    """
    from cmpipe.physics.snapshots.extract import extract_halos, open_snapshot

    out = as_path(paths["halos"])
    reader = open_snapshot(fmt, snapshot, catalog)
    summary = extract_halos(reader, out, extraction_settings(cfg, **selection))
    write_summary(summary, out)
    return summary

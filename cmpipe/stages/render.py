"""Quick look at one halo: its four maps along one sightline as a PNG and an ``.npz``.

``run.out`` may be an object-store URL and ``source.path`` an HDF5 halo file or directory at a
URL: the halo is read through fsspec, and each output is written whole (one PUT)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config
    from cmpipe.mapmaking.maps import HaloMaps
    from cmpipe.physics.halo import HaloSource

__all__ = ["RenderResult", "check_halo_id", "describe_halo_ids", "render_halo", "rotation_for_seed", "run"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderResult:
    """What :func:`render_halo` wrote, and the maps themselves."""

    maps: HaloMaps
    png: Path  # or upath.UPath: run.out may be a URL
    npz: Path | None


def rotation_for_seed(seed: int) -> np.ndarray | None:
    """The rotation of ``render.rotation_seed``: None (identity) for -1, else a seeded uniform one."""
    from cmpipe.mapmaking.maps import random_rotation

    return None if seed < 0 else random_rotation(seed)


def map_stem(halo_id: int, axis: int, rotation_seed: int) -> str:
    """File stem of one sightline's outputs, e.g. ``halo_000003_rot-1_axis2``."""
    return f"halo_{halo_id:06d}_rot{rotation_seed}_axis{axis}"


def describe_halo_ids(ids: Sequence[int], limit: int = 8) -> str:
    """The valid halo ids, for messages: ``"0 .. 23"`` if contiguous, else the first few."""
    ids = sorted(int(i) for i in ids)
    if not ids:
        return "none (the source has no halos)"
    if ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]} .. {ids[-1]}" if len(ids) > 1 else f"{ids[0]}"
    shown = ", ".join(str(i) for i in ids[:limit])
    return f"{shown}{', ...' if len(ids) > limit else ''} ({len(ids)} halos)"


def check_halo_id(source: HaloSource, halo_id: int, where: str = "the source") -> int:
    """``halo_id`` if ``source`` has it; ``where`` names the source in the message.

    Raises
    ------
    cmpipe.physics.halo.HaloError
        Naming the halo id and the source's valid ids.
    """
    from cmpipe.physics.halo import HaloError

    ids = source.halo_ids()
    if int(halo_id) not in set(int(i) for i in ids):
        raise HaloError(f"halo id {halo_id} is not in {where}; valid halo ids: {describe_halo_ids(ids)}")
    return int(halo_id)


def render_halo(cfg: Config, source: HaloSource | None = None) -> RenderResult:
    """Project halo ``cfg.render.halo_id`` of the configured source and save the figure.

    Writes ``<run.out>/<stem>.png`` (the paper's Figure 2 layout), ``<stem>.npz`` when
    ``render.save_npz`` (maps with channel names, units and pixel size; see
    :meth:`cmpipe.mapmaking.maps.HaloMaps.save_npz`) and ``config.resolved.yaml``.

    Raises
    ------
    cmpipe.store.outputs.OutputError
        If ``run.out`` is a file or not writable (before anything is computed).
    cmpipe.physics.halo.HaloError
        If the source has no halo ``render.halo_id`` (naming it and the valid ids).
    """
    from cmpipe.config import save_resolved_config
    from cmpipe.mapmaking.maps import prepare_halo_with_config, sightline_maps_with_config
    from cmpipe.stages.generate import map_settings
    from cmpipe.store.location import save_figure
    from cmpipe.store.outputs import check_output_dir
    from cmpipe.stages.source import open_source
    from cmpipe.plots.maps import plot_halo_maps

    source = open_source(cfg) if source is None else source  # a missing file or bucket: before --out is made
    out = check_output_dir(cfg.run.out, what="--out")
    r = cfg.render
    where = f"the {cfg.source.kind} source" + (f" {cfg.source.path}" if cfg.source.kind == "hdf5" else "")
    check_halo_id(source, r.halo_id, where)
    save_resolved_config(cfg, out)
    halo = source.load(r.halo_id)
    logger.info("halo %d: %d gas + %d DM particles", r.halo_id, halo.gas.n, halo.dm.n)
    settings = map_settings(cfg)
    prepared = prepare_halo_with_config(halo, settings)
    maps = sightline_maps_with_config(prepared, settings, rotation_for_seed(r.rotation_seed), r.axis)
    stem = map_stem(r.halo_id, r.axis, r.rotation_seed)
    png = out / f"{stem}.png"
    save_figure(plot_halo_maps(maps), png, dpi=110)
    npz = _save_npz(maps, out / f"{stem}.npz") if r.save_npz else None
    logger.info("wrote %s%s", png, f" and {npz}" if npz else "")
    return RenderResult(maps=maps, png=png, npz=npz)


def _save_npz(maps: HaloMaps, path: Any) -> Any:
    """:meth:`~cmpipe.mapmaking.maps.HaloMaps.save_npz` to ``path``, a local path or a URL (then
    written to a local temporary file and put whole, in one PUT)."""
    import tempfile

    from cmpipe.store.location import is_remote, write_bytes_atomic

    if not is_remote(path):
        return maps.save_npz(path)
    with tempfile.TemporaryDirectory(prefix="cmpipe-render-") as tmp:
        local = maps.save_npz(Path(tmp) / path.name)
        write_bytes_atomic(path, local.read_bytes())
    return path


def run(cfg: Config, paths: Mapping[str, Any] | None = None) -> RenderResult:
    """The render stage: :func:`render_halo` of ``cfg.render`` into ``paths["out"]`` (default
    ``cfg.run.out``)."""
    if paths is not None and "out" in paths:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out=str(paths["out"])))
    return render_halo(cfg)

"""``cmpipe project-halos``: the source's halos through the HDF5 halo layout to maps, with a summary.

Halos from the configured source are written in cmpipe's HDF5 halo layout and
read back through the HDF5 reader (so the path real simulation halos take is exercised), then
each halo is projected along the three axes (and one random rotation) into the four maps, with a
figure per halo and the maps as ``.npz``. The summary checks what a physicist checks first: the
projected gas and dark-matter mass against the particle mass, and the central y and S_X.
Then the training set: the sightline plan and the Zarr store of the same halos
(:func:`cmpipe.stages.generate.generate_serial`, ``store.zarr`` and ``plan.parquet``). (``cmpipe demo`` is the
whole pipeline: :mod:`cmpipe.pipeline.run`.)

Re-running is idempotent: halo files already written are reused, maps are recomputed.

``run.out`` may be an object-store URL (``s3://bucket/demo``): every file is then written whole
(one PUT). The HDF5 halo files and ``.npz`` maps are written to a local temporary directory
first (h5py and numpy write files) and uploaded; the halos are read back from that local copy.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmpipe.store.location import AnyPath, as_path, is_remote, save_figure, write_bytes_atomic, write_text_atomic

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config

__all__ = ["DemoRow", "format_summary", "project_halos"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoRow:
    """One halo's line of the demo summary."""

    halo_id: int
    log10_m200m_msun_h: float
    n_gas: int
    n_dm: int
    gas_mass_ratio: float
    dm_mass_ratio: float
    central_y: float
    central_sx_erg_s_cm2_sr: float
    seconds: float


def _mass_in_view_msun(pos_mpc: np.ndarray, mass_msun: np.ndarray, half_width_mpc: float, half_depth_mpc: float) -> float:
    """Mass of particles whose centres lie in the map's field and slab (axis 2) [Msun]."""
    inside = (
        (np.abs(pos_mpc[:, 0]) < half_width_mpc)
        & (np.abs(pos_mpc[:, 1]) < half_width_mpc)
        & (np.abs(pos_mpc[:, 2]) <= half_depth_mpc)
    )
    return float(mass_msun[inside].sum())


def _central(data: np.ndarray) -> float:
    """Mean of the central 2 x 2 pixels."""
    c = data.shape[-1] // 2
    return float(data[c - 1 : c + 1, c - 1 : c + 1].mean())


def _write_halo_files(source: Any, ids: list[int], halo_dir: Path, h: float, upload_to: AnyPath | None = None) -> None:
    """Each halo of ``source`` in the HDF5 halo layout in the local ``halo_dir``, unless its file
    exists (idempotent); each also uploaded into ``upload_to`` (an object-store URL) if given."""
    from cmpipe.physics.hdf5io import write_halo_hdf5

    for hid in ids:
        path = halo_dir / f"halo_{hid:06d}.hdf5"
        if not path.exists():
            write_halo_hdf5(path, source.load(hid), h=h)
        if upload_to is not None:
            write_bytes_atomic(upload_to / path.name, path.read_bytes())


def _save_file(path: AnyPath, write: Callable[[Path], Any]) -> None:
    """``write(file)`` into ``path``: directly on disk; for an object-store URL into a local
    temporary file, then uploaded whole (one PUT)."""
    if not is_remote(path):
        write(path)
        return
    with tempfile.TemporaryDirectory(prefix="cmpipe-") as tmp:
        local = Path(tmp) / path.name
        write(local)
        write_bytes_atomic(path, local.read_bytes())


def _sightline_maps(halo: Any, settings: Any, rotation_seed: int, hid: int, map_dir: AnyPath) -> Any:
    """The maps along the three axes and one random rotation (seeded by ``[rotation_seed, hid]``),
    each saved as ``.npz``, the axis-2 figure as PNG; returns the axis-2 maps."""
    from cmpipe.mapmaking.maps import prepare_halo_with_config, random_rotation, sightline_maps_with_config
    from cmpipe.plots.maps import plot_halo_maps

    prepared = prepare_halo_with_config(halo, settings)
    sightlines = [(None, 0, "axis0"), (None, 1, "axis1"), (None, 2, "axis2")]
    sightlines.append((random_rotation(np.random.SeedSequence([rotation_seed, hid])), 2, "random"))
    by_name = {}
    for rotation, axis, name in sightlines:
        maps = sightline_maps_with_config(prepared, settings, rotation, axis)
        _save_file(map_dir / f"halo_{hid:06d}_{name}.npz", maps.save_npz)
        by_name[name] = maps
    save_figure(plot_halo_maps(by_name["axis2"]), map_dir / f"halo_{hid:06d}_axis2.png", dpi=110)
    return by_name["axis2"]


def _summary_row(hid: int, halo: Any, ref: Any, settings: Any, h: float, seconds: float) -> DemoRow:
    """One halo's summary line: projected over particle mass in view, central y and S_X."""
    from cmpipe.physics.cosmology import mean_densities

    maps = settings.maps
    means = mean_densities(settings.cosmology)
    half_width, half_depth = 0.5 * maps.npix * maps.pixel_mpc, 0.5 * maps.depth_mpc
    pix_area, depth = maps.pixel_mpc**2, maps.depth_mpc
    return DemoRow(
        halo_id=hid,
        log10_m200m_msun_h=halo.props.log10_m200m_msun_h(h),
        n_gas=halo.gas.n,
        n_dm=halo.dm.n,
        gas_mass_ratio=float(ref.channel("gas_sigma").sum() * pix_area * means.baryon * depth)
        / _mass_in_view_msun(halo.gas.pos_mpc, halo.gas.mass_msun, half_width, half_depth),
        dm_mass_ratio=float(ref.channel("dm_sigma").sum() * pix_area * means.dark_matter * depth)
        / _mass_in_view_msun(halo.dm.pos_mpc, halo.dm.mass_msun, half_width, half_depth),
        central_y=_central(ref.channel("sz_y")),
        central_sx_erg_s_cm2_sr=_central(ref.channel("xray_sb")),
        seconds=seconds,
    )


def project_halos(cfg: Config) -> list[DemoRow]:
    """``cmpipe project-halos`` into ``cfg.run.out``: every halo of the source written as HDF5,
    read back through the HDF5 reader, projected along four sightlines, summarised (rows also
    written as ``summary.json``), then the training set of the same halos (``store.zarr``)."""
    from cmpipe.config import save_resolved_config
    from cmpipe.physics.hdf5io import HDF5HaloSource
    from cmpipe.stages.generate import generate_serial
    from cmpipe.stages.source import open_source

    out = as_path(cfg.run.out)
    halo_dir, map_dir = out / "halos", out / "maps"
    if not is_remote(out):
        halo_dir.mkdir(parents=True, exist_ok=True)
        map_dir.mkdir(parents=True, exist_ok=True)
    save_resolved_config(cfg, out)
    source = open_source(cfg)
    ids = list(source.halo_ids())
    logger.info("project-halos: %d halos from the %s source -> %s", len(ids), cfg.source.kind, out)
    with tempfile.TemporaryDirectory(prefix="cmpipe-halos-") as staging:
        local_halos = Path(staging) if is_remote(out) else halo_dir
        _write_halo_files(source, ids, local_halos, cfg.cosmology.h, upload_to=halo_dir if is_remote(out) else None)
        rows = _project_all(HDF5HaloSource(local_halos), ids, cfg, map_dir)
    write_text_atomic(out / "summary.json", json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
    print(format_summary(rows))
    store = generate_serial(cfg, out / "store.zarr", progress=True)
    print(
        f"\ntraining set: {store['images']} images of {store['halos']} halos in {store['store']} "
        f"({store['chunks_written']} chunks written, {store['images_per_s']:.1f} images/s, "
        f"{store['failed_images']} failed)"
    )
    print(f"maps, figures and halo files are in {out if is_remote(out) else out.resolve()} "
          "(summary.json, maps/, halos/, store.zarr)")
    return rows


def _project_all(reader: Any, ids: list[int], cfg: Config, map_dir: AnyPath) -> list[DemoRow]:
    """Each halo read back through ``reader``, projected (:func:`_sightline_maps`) and summarised."""
    from cmpipe.stages.generate import map_settings

    settings = map_settings(cfg)
    rows: list[DemoRow] = []
    for k, hid in enumerate(ids, start=1):
        start = time.perf_counter()
        halo = reader.load(hid)
        ref = _sightline_maps(halo, settings, cfg.source.seed, hid, map_dir)
        rows.append(_summary_row(hid, halo, ref, settings, cfg.cosmology.h, time.perf_counter() - start))
        logger.info("halo %d/%d done in %.1f s", k, len(ids), rows[-1].seconds)
    return rows


def format_summary(rows: list[DemoRow]) -> str:
    """The summary as an aligned text table."""
    head = (
        f"{'halo':>5} {'log10 M200m':>11} {'N gas':>9} {'N DM':>9} {'gas map/part':>12} "
        f"{'DM map/part':>11} {'y(0)':>9} {'S_X(0)':>9} {'s':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.halo_id:>5} {r.log10_m200m_msun_h:>11.2f} {r.n_gas:>9d} {r.n_dm:>9d} {r.gas_mass_ratio:>12.6f} "
            f"{r.dm_mass_ratio:>11.6f} {r.central_y:>9.2e} {r.central_sx_erg_s_cm2_sr:>9.2e} {r.seconds:>6.1f}"
        )
    lines.append("(log10 M200m in Msun/h; map/part: projected mass over the mass of particles in view;")
    lines.append(" y(0) and S_X(0) [erg s^-1 cm^-2 sr^-1]: mean of the central 2 x 2 pixels, axis 2)")
    return "\n".join(lines)

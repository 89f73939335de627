"""Benchmark of ``extract-halos`` on a generated Gadget-4 / AREPO snapshot: serial and Ray (2 workers).

A snapshot in the IllustrisTNG layout (``tests/gadget_files.py``: comoving ckpc/h, 1e10 Msun/h,
``MassTable`` dark matter, AREPO cells without smoothing lengths) is written to a temporary
directory: ``--halos`` Plummer spheres of gas and DM (``--particles`` of each per halo, a = 0.3
Mpc, truncated at 3 Mpc) on a cubic lattice in a box of ``--box-mpc`` physical Mpc, split over
``--files`` files by x, with its FoF catalog over two files. The halos are extracted for maps of
``--npix`` x ``--pixel-mpc`` and ``--depth-mpc`` (the extraction sphere holds the slab):

1. serially (:func:`cmpipe.stages.extract.run`; the first region query scans the files'
   bounding boxes, counted);
2. with Ray on a fresh local instance with ``num_cpus=2``
   (:func:`cmpipe.pipeline.extract.extract_with_ray`, ``--halos-per-task`` halos per task),
   after an untimed warm-up extraction of four halos into a scratch directory (worker start-up
   and imports).

Throughput: particles written per second and halos per minute over the whole call (reader
construction, catalog, extents, region reads, checks and writing). Prints figures, never asserts
them (shared machines are noisy). ``--out FILE.json`` saves them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _snapshot(directory: Path, args: argparse.Namespace) -> tuple[Path, Path]:
    import numpy as np
    from gadget_files import plummer_snapshot, write_snapshot

    k = round(args.halos ** (1 / 3))
    if k**3 != args.halos:
        raise SystemExit(f"--halos {args.halos} must be a cube (8, 27, 64, 125, ...)")
    step = args.box_mpc / k
    grid = (np.arange(k) + 0.5) * step
    centres = [[x, y, z] for x in grid for y in grid for z in grid]
    snap = plummer_snapshot(np.random.default_rng(0), centres, n_gas=args.particles, n_dm=args.particles,
                            box_mpc=args.box_mpc)
    return write_snapshot(directory, snap, n_files=args.files)


def _maps(args: argparse.Namespace) -> list[str]:
    return [f"maps.npix={args.npix}", f"maps.pixel_mpc={args.pixel_mpc}", f"maps.depth_mpc={args.depth_mpc}"]


def _figures(summary: dict) -> dict:
    return {k: summary[k] for k in ("written", "failed", "particles", "seconds", "particles_per_s", "halos_per_min")}


def _ray(cfg, files: tuple[Path, Path], work: Path, per_task: int) -> dict:
    import ray

    from cmpipe.pipeline.extract import extract_with_ray

    tmp = Path(tempfile.mkdtemp(prefix="cmpipe-bench-ray-"))
    os.environ.update({"RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"})
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20,
             _temp_dir=str(tmp), log_to_driver=False)
    try:
        extract_with_ray(cfg, {"halos": work / "warm"}, fmt="gadget", snapshot=files[0], catalog=files[1],
                         ids=[0, 1, 2, 3])
        return extract_with_ray(cfg, {"halos": work / "ray"}, fmt="gadget", snapshot=files[0], catalog=files[1],
                                halos_per_task=per_task)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; returns (and prints) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halos", type=int, default=64, help="halos, a cube number (default 64)")
    parser.add_argument("--particles", type=int, default=8000, help="gas and DM particles each per halo (8000)")
    parser.add_argument("--box-mpc", type=float, default=48.0, help="box side [physical Mpc] (48)")
    parser.add_argument("--files", type=int, default=8, help="snapshot files (8)")
    parser.add_argument("--npix", type=int, default=64)
    parser.add_argument("--pixel-mpc", type=float, default=0.1)
    parser.add_argument("--depth-mpc", type=float, default=6.4)
    parser.add_argument("--halos-per-task", type=int, default=4, help="halos per Ray task (4)")
    parser.add_argument("--out", type=Path, help="save the figures as JSON")
    args = parser.parse_args(argv)

    from cmpipe.config import load_config
    from cmpipe.stages.extract import run as extract_run

    work = Path(tempfile.mkdtemp(prefix="cmpipe-bench-extract-"))
    try:
        t0 = time.perf_counter()
        files = _snapshot(work / "sim", args)
        written_s = time.perf_counter() - t0
        cfg = load_config("demo", _maps(args))
        serial = extract_run(cfg, {"halos": work / "serial"}, fmt="gadget", snapshot=files[0], catalog=files[1])
        ray2 = _ray(cfg, files, work, args.halos_per_task)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    figures = {"halos": args.halos, "particles_in_snapshot": 2 * args.halos * args.particles, "files": args.files,
               "maps": _maps(args), "snapshot_written_s": written_s, "serial": _figures(serial),
               "ray_2": _figures(ray2)}
    for name in ("serial", "ray_2"):
        f = figures[name]
        print(f"{name:>6}: {f['written']} halos, {f['particles']:.3g} particles in {f['seconds']:.2f} s: "
              f"{f['particles_per_s']:.3g} particles/s, {f['halos_per_min']:.0f} halos/min")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


if __name__ == "__main__":
    main()

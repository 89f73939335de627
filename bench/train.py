"""Benchmark of training: the demo model serially, and through Ray Train with 1 and 2 DDP workers.

A small analytic store (18 images of 32x32: 12 train, 6 val, as the tests make) is trained with
the ``demo`` config's model and batch (``--set`` to change them; ``train.num_workers: 0``, so the
DataLoader reads in the training process) for ``--steps`` steps, three times into fresh run
directories: by :func:`cmpipe.model.training.train_loop` with ``--threads`` torch threads, and by
:func:`cmpipe.pipeline.train_with_ray` in one local Ray with ``num_cpus = --threads``: 1 worker
with all the CPUs (and threads), then 2 workers with half each (the same global batch, split).
Seconds per step are measured inside the loop (mean over all steps, the first included); the Ray
rows also give the wall time of ``fit()`` (worker start-up, process group, reports). images/s =
global batch / (s/step). With the same total CPUs, rate(2 workers) / rate(1 worker) is what DDP
gains or costs on one machine (threads vs processes plus the gradient all-reduce).

Prints figures, never asserts them (shared machines are noisy). ``--out FILE.json`` saves them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

STORE = [
    "source.kind=analytic", "source.analytic_log10_m200m_msun_h=[14.0, 14.1, 14.2, 14.3, 14.4, 14.5]",
    "source.analytic_pair_mass_msun_h=1e11", "maps.npix=32", "maps.pixel_mpc=0.4", "maps.depth_mpc=12.8",
    "generate.images_per_0p1dex=3", "generate.max_rotations_per_halo=1", "generate.chunk_images=4",
    "generate.split_fractions=[0.67, 0.33, 0.0]", "sph.num_threads=1",
]
TRAIN = ["train.num_workers=0", "train.checkpoint_every=1000000", "train.val_every=1000000", "train.use_gpu=false"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPUs for every run (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--out", type=Path, help="save the figures as JSON")
    args = parser.parse_args(argv)

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    from cmpipe.config import load_config
    from cmpipe.model.training import train_loop
    from cmpipe.store import generate_serial

    cfg = load_config("demo", [*STORE, *TRAIN, *args.set])
    batch = cfg.train.batch_size
    rows = []
    with tempfile.TemporaryDirectory(prefix="cmpipe-bench-train-") as tmp:
        tmp = Path(tmp)
        store = tmp / "images.zarr"
        generate_serial(cfg, store)
        torch.set_num_threads(args.threads)
        out = train_loop(cfg, store, tmp / "serial", max_steps=args.steps)
        rows.append({"run": f"serial, {args.threads} threads", "workers": 0, "s_per_step": out["s_per_step"],
                     "wall_s": None})
        print(f"model: {out['parameters']} parameters, "
              f"{cfg.model.resolution}x{cfg.model.resolution}, nf={cfg.model.nf}, ch_mult={list(cfg.model.ch_mult)}, "
              f"batch {batch}", flush=True)

        import ray

        from cmpipe.pipeline import train_with_ray

        os.environ["RAY_TMPDIR"] = str(tmp / "ray")
        ray.init(address="local", num_cpus=args.threads, include_dashboard=False, _temp_dir=str(tmp / "ray"),
                 log_to_driver=False)
        try:
            for workers in (1, 2):
                cpus = max(1, args.threads // workers)
                t0 = time.perf_counter()
                res = train_with_ray(cfg, store, tmp / f"ray{workers}", num_workers=workers, max_steps=args.steps,
                                     cpus_per_worker=cpus)
                rows.append({"run": f"Ray Train, {workers} worker(s) x {cpus} CPU", "workers": workers,
                             "s_per_step": res["s_per_step"], "wall_s": time.perf_counter() - t0})
        finally:
            ray.shutdown()

    print(f"{args.steps} steps, global batch {batch}, {args.threads} CPUs per run")
    print(f"{'run':40s} {'s/step':>8s} {'images/s':>9s} {'fit wall s':>11s}")
    for r in rows:
        r["images_per_s"] = batch / r["s_per_step"] if r["s_per_step"] else None
        wall = f"{r['wall_s']:11.1f}" if r["wall_s"] is not None else f"{'-':>11s}"
        print(f"{r['run']:40s} {r['s_per_step']:8.3f} {r['images_per_s']:9.1f} {wall}")
    one, two = rows[1]["images_per_s"], rows[2]["images_per_s"]
    print(f"DDP 1 -> 2 workers (same total CPUs): rate ratio {two / one:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"steps": args.steps, "batch": batch, "threads": args.threads, "rows": rows},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

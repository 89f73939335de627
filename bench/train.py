"""Benchmark of training: the demo model serially, and through Ray Train with 1 and 2 DDP workers.

A small analytic store (18 images of 32x32: 12 train, 6 val, as the tests make) is trained with
the ``demo`` config's model and batch (``--set`` to change them; ``train.num_workers: 0``, so the
DataLoader reads in the training process) for ``--steps`` steps, three times into fresh run
directories: by :func:`cmpipe.stages.train.run` with ``--threads`` torch threads, and by
:func:`cmpipe.pipeline.train_with_ray` in one local Ray with ``num_cpus = --threads``: 1 worker
with all the CPUs (and threads), then 2 workers with half each (the same global batch, split).
Seconds per step are measured inside the loop (mean over all steps, the first included); the Ray
rows also give the wall time of ``fit()`` (worker start-up, process group, reports). images/s =
global batch / (s/step). With the same total CPUs, rate(2 workers) / rate(1 worker) is what DDP
gains or costs on one machine (threads vs processes plus the gradient all-reduce).

Then the ``paper`` config's model (NCSN++ at 128x128 with the paper's widths, 2 residual blocks
per level): ``--paper-steps`` training steps (after one untimed warm-up) of ``--paper-batch``
random 128x128 images through :func:`cmpipe.model.training.train_step` on ``--device`` (CPU by
default; ``--device cuda`` on a GPU machine), for s/step and images/s at paper scale.
From its images/s, the hours of the paper's training (``paper`` config: ``train.max_steps`` steps
of ``train.batch_size`` images; GPU-hours on a GPU, else hours on the CPU threads, said so, and
extrapolated from ``--paper-batch`` when that is not the paper's batch). ``--no-paper`` skips
it; ``--paper-only`` runs only it (``bench/gpu.sh``).

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

from _machine import device_name  # bench/ is on sys.path when run as a script

STORE = [
    "source.kind=analytic", "source.analytic_log10_m200m_msun_h=[14.0, 14.1, 14.2, 14.3, 14.4, 14.5]",
    "source.analytic_pair_mass_msun_h=1e11", "maps.npix=32", "maps.pixel_mpc=0.4", "maps.depth_mpc=12.8",
    "generate.images_per_0p1dex=3", "generate.max_rotations_per_halo=1", "generate.chunk_images=4",
    "generate.split_fractions=[0.67, 0.33, 0.0]", "sph.num_threads=1",
]
TRAIN = ["train.num_workers=0", "train.checkpoint_every=1000000", "train.val_every=1000000", "train.use_gpu=false"]


def paper_model_rate(steps: int, batch: int, device: str, threads: int, precision: str = "fp32") -> dict:
    """s/step and images/s of the ``paper`` model on random 128x128 batches (one warm-up step).

    ``precision``: ``fp32``, or ``bf16`` = the forward and backward passes under
    ``torch.autocast(dtype=torch.bfloat16)`` with fp32 weights and optimizer (mixed precision; what
    bf16 training would cost; cmpipe's own training runs in fp32)."""
    import contextlib

    import torch

    from cmpipe.config import load_config
    from cmpipe.model.network import build_score_model, count_parameters
    from cmpipe.model.training import WarmupSchedule, make_ema, train_step

    torch.set_num_threads(threads)
    cfg = load_config("paper")
    res = 128
    sm = build_score_model(cfg.model, 10.0, device)
    opt = torch.optim.Adam(sm.model.parameters(), lr=cfg.train.lr)
    ema = make_ema(sm.model, cfg.train.ema_decay)
    gen = torch.Generator().manual_seed(0)
    data = (torch.rand(batch, 2, res, res, generator=gen), torch.rand(batch, 2, res, res, generator=gen))
    schedule = WarmupSchedule(cfg.train.lr, cfg.train.warmup_steps)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    autocast = (torch.autocast(device_type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    with autocast:
        train_step(sm, opt, ema, data, cfg.train.clip_norm, schedule, step=0)  # warm-up, untimed
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        with autocast:
            train_step(sm, opt, ema, data, cfg.train.clip_norm, schedule, step=step)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    s_per_step = (time.perf_counter() - t0) / steps
    images_per_s = batch / s_per_step
    # The paper's training: train.max_steps steps of train.batch_size images at the measured rate
    # (images/s measured at ``batch``; at another batch than the paper's an extrapolation).
    paper_images = cfg.train.max_steps * cfg.train.batch_size
    hours = paper_images / images_per_s / 3600.0
    out = {"parameters": count_parameters(sm.model), "resolution": res, "batch": batch, "device": device,
           "device_name": device_name(device), "precision": precision, "threads": threads, "steps": steps,
           "s_per_step": s_per_step,
           "images_per_s": images_per_s, "paper_steps": cfg.train.max_steps, "paper_batch": cfg.train.batch_size,
           "paper_training_hours": hours, "extrapolated_batch": batch != cfg.train.batch_size}
    print(f"paper model: {out['parameters']} parameters, {res}x{res}, nf={cfg.model.nf}, "
          f"ch_mult={list(cfg.model.ch_mult)}, {cfg.model.num_res_blocks} res blocks, batch {batch}, {precision} "
          f"on {device} "
          f"({out['device_name']}): {s_per_step:.2f} s/step, {images_per_s:.3f} images/s")
    unit = "GPU-hours" if device.startswith("cuda") else f"hours on {threads} CPU threads"
    note = (f" (measured at batch {batch}, not {cfg.train.batch_size}: images/s assumed constant)"
            if out["extrapolated_batch"] else "")
    print(f"  the paper's training, {cfg.train.max_steps} steps x batch {cfg.train.batch_size} = "
          f"{paper_images:.3g} images: {hours:,.1f} {unit}{note}")
    return out



def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPUs for every run (default: all)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--out", type=Path, help="save the figures as JSON")
    parser.add_argument("--no-paper", action="store_true", help="skip the paper-scale model")
    parser.add_argument("--paper-steps", type=int, default=2, help="timed steps of the paper model (default 2)")
    parser.add_argument("--paper-batch", type=int, default=1, help="images per step of the paper model (default 1)")
    parser.add_argument("--device", default="cpu", help="device of the paper model (default cpu)")
    parser.add_argument("--paper-only", action="store_true", help="only the paper-scale model (bench/gpu.sh)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="paper model: fp32, or bf16 autocast (mixed precision; default fp32)")
    args = parser.parse_args(argv)
    if args.paper_only:
        paper = paper_model_rate(args.paper_steps, args.paper_batch, args.device, args.threads, args.precision)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"paper": paper}, indent=2) + "\n")
        return 0

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import torch

    from cmpipe.config import load_config
    from cmpipe.stages.generate import generate_serial
    from cmpipe.stages.train import run as train_run

    cfg = load_config("demo", [*STORE, *TRAIN, *args.set])
    batch = cfg.train.batch_size
    rows = []
    with tempfile.TemporaryDirectory(prefix="cmpipe-bench-train-") as tmp:
        tmp = Path(tmp)
        store = tmp / "images.zarr"
        generate_serial(cfg, store)
        torch.set_num_threads(args.threads)
        out = train_run(cfg, {"store": store, "run": tmp / "serial"}, max_steps=args.steps)
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
    paper = (None if args.no_paper else
             paper_model_rate(args.paper_steps, args.paper_batch, args.device, args.threads, args.precision))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"steps": args.steps, "batch": batch, "threads": args.threads, "rows": rows,
                                        "paper": paper}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

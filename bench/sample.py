"""Benchmark of posterior sampling: network evaluations and samples/s per sampler and step count.

An untrained NCSN++ with the ``demo`` config's ``model`` section (``--paper``: the ``paper``
one, at 128x128, CUDA only) and sigma_max 1.0 samples one batch of ``--batch`` rows (2 condition
items x batch/2 samples, random conditions) with every sampler of
:data:`cmpipe.model.sampling.SAMPLERS` at a few step counts, through
:func:`cmpipe.model.sampling.sample_posterior` (``denoise=True``). An untrained network costs
what a trained one does. Reported: network evaluations per sample, wall seconds for the batch,
posterior samples per second, and milliseconds per batched network evaluation. A 2-step warm-up
run comes first (not timed).

``--paper-cost``: the ``paper`` model (128x128, on ``--device``, a CPU too, said so) evaluated
``--cost-evals`` times on ``--batch`` rows (after a warm-up), for rows per second; from it the
hours to sample the paper's whole test split (``paper`` config: the test images of its plan
within ``evaluate.test_log10_m_*``, ``infer.n_samples`` samples each) with the paper's
Euler-Maruyama at ``infer.steps``, with the stochastic EDM sampler at 49 steps (99 evaluations)
and with SDE-DPM-Solver++(2M) at 39 steps (40 evaluations), the samplers that matched it on the
demo model (``bench/sampler_quality.py``).

Prints figures, never asserts them (shared machines are noisy). ``--out FILE.json`` saves them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from _machine import device_name  # bench/ is on sys.path when run as a script

#: sampler -> step counts of the default run (about 1,600 batched evaluations in all).
DEFAULT_STEPS = {"em": [100, 500], "pc": [50, 250], "heun": [10, 32], "dpm2m": [10, 20, 40], "edm": [20, 49],
                 "dpm2m_sde": [39]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--batch", type=int, default=16, help="network rows per batch (default 16, even)")
    parser.add_argument("--paper", action="store_true", help="the paper's model at 128x128 (CUDA only)")
    parser.add_argument("--samplers", default=",".join(DEFAULT_STEPS), help="comma-separated (default: all)")
    parser.add_argument("--out", type=Path, help="save the figures as JSON")
    parser.add_argument("--paper-cost", action="store_true",
                        help="rows/s of the paper model and the hours to sample the paper's test split")
    parser.add_argument("--cost-evals", type=int, default=5, help="timed network evaluations of --paper-cost (5)")
    args = parser.parse_args(argv)
    if args.paper_cost:
        return paper_sampling_cost(args.device, args.threads, args.batch, args.cost_evals, args.out)

    import torch

    from cmpipe.config import load_config
    from cmpipe.model.network import build_score_model, count_parameters
    from cmpipe.model.sampling import SAMPLERS, model_score_function, network_evaluations, sample_posterior

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.paper:
        if device.type != "cuda" or not torch.cuda.is_available():
            print("--paper needs a CUDA device (--device cuda) and none is available: skipped")
            return 0
        model_cfg, resolution = load_config("paper").model, 128
    else:
        model_cfg = load_config("demo").model
        resolution = model_cfg.resolution
    names = [s for s in args.samplers.split(",") if s]
    unknown = sorted(set(names) - set(SAMPLERS))
    if unknown:
        parser.error(f"unknown samplers {unknown}; choose from {sorted(SAMPLERS)}")
    if args.batch < 2 or args.batch % 2:
        parser.error("--batch must be even and >= 2")

    torch.manual_seed(0)
    sm = build_score_model(model_cfg, 1.0, device).eval()
    score = model_score_function(sm)
    cond = torch.randn(2, 2, resolution, resolution, device=device)
    per_item = args.batch // 2
    label = "paper" if args.paper else "demo"
    print(f"model ({label}): {count_parameters(sm)} parameters, {resolution}x{resolution}, nf={model_cfg.nf}, "
          f"ch_mult={list(model_cfg.ch_mult)}, attention={model_cfg.attention}; batch {args.batch}; "
          f"device {device}, {args.threads} threads", flush=True)

    def run(name: str, steps: int) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        x = sample_posterior(score, cond, per_item, sampler=name, steps=steps, seeds=[0, 1], batch_size=args.batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        assert torch.isfinite(x).all()
        return time.perf_counter() - t0

    run("em", 2)  # warm-up
    rows = []
    print(f"{'sampler':8s} {'steps':>6s} {'evals/sample':>13s} {'wall s':>8s} {'samples/s':>10s} {'ms/eval':>8s}")
    for name in names:
        for steps in DEFAULT_STEPS.get(name, [20]):
            evals = network_evaluations(name, steps, denoise=True)
            wall = run(name, steps)
            row = {"sampler": name, "steps": steps, "evals_per_sample": evals, "wall_s": wall,
                   "samples_per_s": args.batch / wall, "ms_per_eval": 1e3 * wall / evals}
            rows.append(row)
            print(f"{name:8s} {steps:6d} {evals:13d} {wall:8.2f} {row['samples_per_s']:10.2f} "
                  f"{row['ms_per_eval']:8.1f}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"model": label, "resolution": resolution, "batch": args.batch,
                                        "device": str(device), "threads": args.threads, "rows": rows}, indent=2) + "\n")
    return 0



def paper_test_images() -> int:
    """Test images of the ``paper`` plan (its catalog, no particles) within ``evaluate.test_log10_m_*``."""
    import numpy as np

    from cmpipe.config import config_fingerprint, load_config
    from cmpipe.model.dataset import SPLIT_CODES
    from cmpipe.mapmaking.plan import make_plan
    from cmpipe.stages.generate import source_catalog

    cfg = load_config("paper", ["source.kind=mock"])
    plan = make_plan(source_catalog(cfg), cfg.generate, config_fingerprint=config_fingerprint(cfg))
    split = np.asarray(plan["split"])
    code = SPLIT_CODES["test"]
    is_test = (split == code) if split.dtype.kind in "iu" else (split == "test")
    logm = np.asarray(plan["log10_m200m_msun_h"])
    e = cfg.evaluate
    return int(np.sum(is_test & (logm >= e.test_log10_m_min_msun_h) & (logm < e.test_log10_m_max_msun_h)))


def paper_sampling_cost(device_arg: str, threads: int, batch: int, evals: int, out: Path | None) -> int:
    """Rows/s of the paper model and the hours of sampling the paper's test split (printed, saved)."""
    import torch

    from cmpipe.config import load_config
    from cmpipe.model.network import build_score_model, count_parameters
    from cmpipe.model.sampling import model_score_function, network_evaluations

    torch.set_num_threads(threads)
    device = torch.device(device_arg)
    cfg = load_config("paper")
    res = 128
    torch.manual_seed(0)
    sm = build_score_model(cfg.model, 1.0, device).eval()
    score = model_score_function(sm)
    x = torch.randn(batch, 2, res, res, device=device)
    cond = torch.randn(batch, 2, res, res, device=device)
    sigma = torch.full((batch,), 0.5, device=device)  # one mid-range noise level [normalised units]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():
        score(x, sigma, cond)  # warm-up
        sync()
        t0 = time.perf_counter()
        for _ in range(evals):
            score(x, sigma, cond)
        sync()
    s_per_eval = (time.perf_counter() - t0) / evals
    rows_per_s = batch / s_per_eval
    name = device_name(str(device))
    unit = "GPU-hours" if device.type == "cuda" else f"hours on {threads} CPU threads (no GPU measured)"
    n_test = paper_test_images()
    n_samples = cfg.infer.n_samples
    result = {"device": str(device), "device_name": name, "threads": threads, "batch": batch,
              "parameters": count_parameters(sm), "s_per_eval": s_per_eval, "rows_per_s": rows_per_s,
              "test_images": n_test, "n_samples": n_samples, "samplers": []}
    print(f"paper model: {result['parameters']} parameters, 128x128, batch {batch} on {device} ({name}): "
          f"{1e3 * s_per_eval:.1f} ms per batched evaluation, {rows_per_s:.2f} rows/s", flush=True)
    for sampler, steps in ((cfg.infer.sampler, cfg.infer.steps), ("edm", 49), ("dpm2m_sde", 39)):
        nfe = network_evaluations(sampler, steps, denoise=cfg.infer.denoise)
        samples_per_s = rows_per_s / nfe
        hours = n_test * n_samples / samples_per_s / 3600.0
        result["samplers"].append({"sampler": sampler, "steps": steps, "evals_per_sample": nfe,
                                   "samples_per_s": samples_per_s, "test_split_hours": hours})
        print(f"  {sampler} {steps} steps ({nfe} evaluations/sample): {samples_per_s:.4f} samples/s; the paper's "
              f"test split, {n_test} images x {n_samples} samples: {hours:,.1f} {unit}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

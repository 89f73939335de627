"""Quality against cost of the samplers: the same test images, checkpoint and seeds for each.

For every (sampler, steps) of ``--grid`` (default: Euler-Maruyama 1000 / 200 / 100 / 50,
predictor-corrector 100 / 50, Heun 32 / 16, DPM-Solver++(2M) 40 / 20 / 10), ``--samples``
posterior samples of each of the first ``--images`` test images of a store (within
``evaluate.test_log10_m_*``) are drawn in this process (no Ray) through
:class:`cmpipe.model.inference.PosteriorSampler` with a trained checkpoint, evaluated with
:func:`cmpipe.evaluation.image.evaluate_image` (the actors' code), and summarised:

- network evaluations per sample (exact, :func:`cmpipe.model.sampling.network_evaluations`) and
  posterior samples per second on this machine (``--threads`` torch threads);
- profile fractional error: mean over images and bins within 1 Mpc of |(mean profile - true)/true|;
- total-mass fractional error of the posterior mean (whole map): mean (bias) and std (scatter);
- r(k) of single samples against the truth, large and small scales (the scale split of the
  config), and the rms residual of the log10 posterior mean against the truth [dex];
- calibration: the largest deviation of the pixel coverage from the credible level, averaged
  over images (0: calibrated).

An entry may add sampler options, ``edm:20:s_churn=80:s_noise=1.003`` (keyword arguments of
:func:`cmpipe.model.sampling.sample_posterior`: EDM's churn schedule, ``snr`` of ``pc``, ``rho``).
The reference is the first entry (Euler-Maruyama with 1000 steps, the paper's sampler); a row
"matches" it when every metric is within ``--tolerance`` (relative; 0.02 absolute for r and
coverage) of the reference's. Prints figures, never asserts them. ``--out FILE.json`` saves them.

    .venv/bin/python bench/sampler_quality.py --store runs/demo/images.zarr --checkpoint runs/demo/run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DEFAULT_GRID = "em:1000,em:200,em:100,em:50,pc:100,pc:50,heun:32,heun:16,dpm2m:40,dpm2m:20,dpm2m:10"


def _summary(rows: list[dict], grid) -> dict[str, float]:
    from cmpipe.evaluation import metrics

    prof, mass, r_large, r_small, cover, rms = [], [], [], [], [], []
    for tables, extra in rows:
        p = tables["profiles"]
        r = np.asarray(p["r_mpc"])
        fe = np.abs(np.asarray(p["frac_error"], dtype=float))
        prof.append(np.nanmean(fe[r < 1.0]))
        mass.extend(tables["clusters"]["mass_frac_error"])
        s = tables["spectra"]
        sel = np.asarray(s["comparison"]) == "sample"
        k = np.asarray(s["k_mpc_inv"])[sel]
        rr = np.asarray(s["r"], dtype=float)[sel]
        r_large.append(np.nanmean(rr[k < grid.k_split_mpc_inv]))
        r_small.append(np.nanmean(rr[k >= grid.k_split_mpc_inv]))
        c = tables["coverage"]
        sel = np.asarray(c["quantity"]) == "pixels_r200m"  # the pixels within R200m
        cover.append(np.max(np.abs(np.asarray(c["covered"])[sel] - np.asarray(c["level"])[sel])))
        rms.append(extra)
    mass = np.asarray(mass, dtype=float)
    _ = metrics  # the metrics ran inside evaluate_image
    return {"profile_err_1mpc": float(np.mean(prof)), "mass_bias": float(mass.mean()),
            "mass_scatter": float(mass.std(ddof=1)) if mass.size > 1 else float("nan"),
            "r_large": float(np.mean(r_large)), "r_small": float(np.mean(r_small)),
            "coverage_dev": float(np.mean(cover)), "rms_dex": float(np.mean(rms))}


def _matches(row: dict, ref: dict, tol: float) -> bool:
    rel = ("profile_err_1mpc", "mass_scatter", "rms_dex")
    ok = all(row[k] <= ref[k] * (1 + tol) + 1e-3 for k in rel)
    ok &= abs(row["mass_bias"]) <= abs(ref["mass_bias"]) * (1 + tol) + 0.01
    ok &= all(row[k] >= ref[k] - 0.02 for k in ("r_large", "r_small"))
    ok &= row["coverage_dev"] <= ref["coverage_dev"] + 0.02
    return bool(ok)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, type=Path, help="a complete image store")
    parser.add_argument("--checkpoint", required=True, help="checkpoint file or run directory trained on it")
    parser.add_argument("--config", default="demo", help="config for evaluate.* and cosmology (default demo)")
    parser.add_argument("--grid", default=DEFAULT_GRID,
                        help="sampler:steps[:option=value...] list (e.g. edm:20:s_churn=80); the first is the reference")
    parser.add_argument("--images", type=int, default=6, help="test images (default 6)")
    parser.add_argument("--samples", type=int, default=16, help="samples per image (default 16)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tolerance", type=float, default=0.10, help="relative tolerance of 'matches' (0.10)")
    parser.add_argument("--out", type=Path, help="save the figures as JSON")
    args = parser.parse_args(argv)

    import dataclasses

    import torch

    from cmpipe.config import load_config
    from cmpipe.stages.infer import grid_from_config
    from cmpipe.model.inference import load_posterior_sampler, resolve_checkpoint
    from cmpipe.model.sampling import image_seed, network_evaluations
    from cmpipe.model.training import load_checkpoint
    from cmpipe.stages.infer import select_test_images
    from cmpipe.store.zarr_store import open_store

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    ckpt = resolve_checkpoint(args.checkpoint)
    hp = load_checkpoint(ckpt).hyperparameters
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, resolution=int(hp["model"]["resolution"])))
    group = open_store(args.store)
    attrs = dict(group.attrs)
    grid = grid_from_config(cfg, attrs)
    sel = select_test_images(cfg, args.store)
    order = np.argsort(sel["log10_m200m_msun_h"])
    pick = order[np.linspace(0, len(order) - 1, min(args.images, len(order))).astype(int)]
    channels = list(attrs["channels"])
    factor = int(attrs["npix"]) // grid.npix
    from cmpipe.model.dataset import block_mean

    truth, cond = [], []
    for i in sel["image_index"][pick]:
        image = np.asarray(group["maps"][int(i)], dtype=np.float64)
        truth.append(block_mean(image[[channels.index("gas_sigma"), channels.index("dm_sigma")]], factor))
        cond.append(block_mean(image[[channels.index("sz_y"), channels.index("xray_sb")]], factor))
    truth, cond = np.stack(truth), np.stack(cond)
    seeds = [image_seed(cfg.infer.seed, int(i)) for i in sel["image_index"][pick]]
    print(f"{len(pick)} test images x {args.samples} samples, checkpoint step {load_checkpoint(ckpt).step}, "
          f"{grid.npix} px of {grid.pixel_mpc:.2f} Mpc, k_split {grid.k_split_mpc_inv:.2f} 1/Mpc, {args.threads} threads")
    header = (f"{'sampler':>8} {'steps':>5} {'NFE':>5} {'samp/s':>7} {'prof<1Mpc':>9} {'m_bias':>7} {'m_scat':>7} "
              f"{'r_large':>7} {'r_small':>7} {'cov_dev':>7} {'rms_dex':>7}  matches")
    print(header)
    results, ref = [], None
    for entry in args.grid.split(","):
        name, steps, *opts = entry.split(":")
        options = {k: float(v) for k, v in (o.split("=", 1) for o in opts)}
        icfg = dataclasses.replace(cfg.infer, sampler=name, steps=int(steps), n_samples=args.samples)
        sampler = load_posterior_sampler(ckpt, icfg, args.device, attrs["store_fingerprint"])
        sampler.sampler_options = options
        t0 = time.perf_counter()
        samples = sampler.sample(cond, args.samples, seeds)
        wall = time.perf_counter() - t0
        rows = []
        for b, i in enumerate(pick):
            key = {"image_index": int(sel["image_index"][i]), "halo_id": int(sel["halo_id"][i]),
                   "log10_m200m_msun_h": float(sel["log10_m200m_msun_h"][i])}
            tables = __import__("cmpipe.evaluation.image", fromlist=["evaluate_image"]).evaluate_image(
                samples[b], truth[b], cond[b], grid, key, float(sel["r200m_mpc"][i]))
            rms = float(np.sqrt(np.mean((np.log10(samples[b].mean(axis=0)) - np.log10(np.maximum(truth[b], 1e-30))) ** 2)))
            rows.append((tables, rms))
        row = {"sampler": name + "".join(f" {k}={v:g}" for k, v in options.items()), "steps": int(steps), "nfe": network_evaluations(name, int(steps), icfg.denoise),
               "samples_per_s": samples.shape[0] * samples.shape[1] / wall, **_summary(rows, grid)}
        ref = ref or row
        row["matches_reference"] = _matches(row, ref, args.tolerance)
        results.append(row)
        print(f"{row['sampler']:>8} {row['steps']:>5} {row['nfe']:>5} {row['samples_per_s']:>7.2f} {row['profile_err_1mpc']:>9.3f} "
              f"{row['mass_bias']:>7.3f} {row['mass_scatter']:>7.3f} {row['r_large']:>7.3f} {row['r_small']:>7.3f} "
              f"{row['coverage_dev']:>7.3f} {row['rms_dex']:>7.3f}  {'ref' if row is ref else row['matches_reference']}",
              flush=True)
    cheap = [r for r in results[1:] if r["matches_reference"] and r["nfe"] <= 100]
    print("goal (a sampler matching the reference with <= 100 network evaluations):",
          "met by " + ", ".join(f"{r['sampler']}:{r['steps']}" for r in cheap) if cheap else "not met")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Quality against cost of the samplers: the same test images, checkpoint and seeds for each.

For every (sampler, steps) of ``--grid`` (default: Euler-Maruyama 1000 / 200 / 100 / 50,
predictor-corrector 100 / 50, Heun 32 / 16, DPM-Solver++(2M) 40 / 20 / 10, EDM 49 / 20,
SDE-DPM-Solver++(2M) 39), ``--samples`` posterior samples of each of ``--images`` test images
(``--split val``: validation images, to tune on) of a store, spread over the mass range (within
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
:func:`cmpipe.model.sampling.sample_posterior`: EDM's churn schedule and ``euler_last``, ``eta``,
``s_noise``, ``heun`` of ``dpm2m_sde``, ``snr`` of ``pc``, ``rho``).
The reference is the first entry (Euler-Maruyama with 1000 steps, the paper's sampler); a row
"matches" it when every metric is within ``--tolerance`` (relative; 0.02 absolute for r and
coverage) of the reference's; a row that does not match names the metrics that miss and their
limits. ``--reference-cache FILE.json`` reuses the reference row computed by an earlier run on
the same store, checkpoint, split, images, samples, seeds and device (it is the slowest row).
The goal line: a match with at most ``--goal-nfe`` (40) evaluations. Prints figures, never
asserts them. ``--out FILE.json`` saves them.

    .venv/bin/python bench/sampler_quality.py --store runs/demo/images.zarr --checkpoint runs/demo/run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

DEFAULT_GRID = ("em:1000,em:200,em:100,em:50,pc:100,pc:50,heun:32,heun:16,dpm2m:40,dpm2m:20,dpm2m:10,edm:49,edm:20,"
                "dpm2m_sde:39")


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


def _misses(row: dict, ref: dict, tol: float) -> list[str]:
    """The metrics of ``row`` outside the tolerance of ``ref``'s, each with its limit: [] matches."""
    out = []
    for k in ("profile_err_1mpc", "mass_scatter", "rms_dex"):  # relative (+1e-3)
        if not row[k] <= ref[k] * (1 + tol) + 1e-3:
            out.append(f"{k} {row[k]:.3f} > {ref[k] * (1 + tol) + 1e-3:.3f}")
    if not abs(row["mass_bias"]) <= abs(ref["mass_bias"]) * (1 + tol) + 0.01:
        out.append(f"|mass_bias| {abs(row['mass_bias']):.3f} > {abs(ref['mass_bias']) * (1 + tol) + 0.01:.3f}")
    for k in ("r_large", "r_small"):
        if not row[k] >= ref[k] - 0.02:
            out.append(f"{k} {row[k]:.3f} < {ref[k] - 0.02:.3f}")
    if not row["coverage_dev"] <= ref["coverage_dev"] + 0.02:
        out.append(f"coverage_dev {row['coverage_dev']:.3f} > {ref['coverage_dev'] + 0.02:.3f}")
    return out


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
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="images of this split: tune on val, report on test (default test)")
    parser.add_argument("--reference-cache", type=Path,
                        help="JSON of the reference row: reused when its store, checkpoint, split, images, samples, "
                             "seeds and reference entry are this run's, else computed and saved there")
    parser.add_argument("--goal-nfe", type=int, default=40, help="network evaluations of the goal (default 40)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    setup = _setup(args)
    print(f"{len(setup['pick'])} {args.split} images x {args.samples} samples, checkpoint step {setup['step']}, "
          f"{setup['grid'].npix} px of {setup['grid'].pixel_mpc:.2f} Mpc, k_split {setup['grid'].k_split_mpc_inv:.2f} "
          f"1/Mpc, {args.threads} threads")
    print(f"{'sampler':>8} {'steps':>5} {'NFE':>5} {'samp/s':>7} {'prof<1Mpc':>9} {'m_bias':>7} {'m_scat':>7} "
          f"{'r_large':>7} {'r_small':>7} {'cov_dev':>7} {'rms_dex':>7}  matches")
    entries = args.grid.split(",")
    ref = _cached_reference(args.reference_cache, setup["cache_key"], entries[0])
    if ref is not None:
        ref["matches_reference"], ref["cached"] = True, True
        _print_row(ref, ref, " (cached: " + str(args.reference_cache) + ")")
    results = [ref] if ref is not None else []
    for entry in entries[1:] if ref is not None else entries:
        row = _run_entry(entry, args, setup)
        ref = ref or row
        row["misses"] = _misses(row, ref, args.tolerance)
        row["matches_reference"] = not row["misses"]
        results.append(row)
        _print_row(row, ref)
        if row is ref and args.reference_cache:
            args.reference_cache.parent.mkdir(parents=True, exist_ok=True)
            args.reference_cache.write_text(json.dumps({"key": setup["cache_key"], "entry": entries[0], "row": row},
                                                       indent=2) + "\n", encoding="utf-8")
    cheap = [r for r in results[1:] if r["matches_reference"] and r["nfe"] <= args.goal_nfe]
    print(f"goal (a sampler matching the reference with <= {args.goal_nfe} network evaluations):",
          "met by " + ", ".join(f"{r['sampler']}:{r['steps']}" for r in cheap) if cheap else "not met")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def _select(cfg, store, split: str) -> dict:
    """The store's usable images of ``split`` in the test mass range, with R200m [Mpc]."""
    if split == "test":
        from cmpipe.stages.infer import select_test_images

        return select_test_images(cfg, store)
    from cmpipe.model.dataset import SPLIT_CODES
    from cmpipe.physics.cosmology import r200m_mpc
    from cmpipe.store.zarr_store import open_store

    group = open_store(store)
    log10m = group["log10_m200m_msun_h"][:]
    e = cfg.evaluate
    index = np.flatnonzero((group["split"][:] == SPLIT_CODES[split]) & (group["image_failed"][:] == 0)
                           & (log10m >= e.test_log10_m_min_msun_h) & (log10m < e.test_log10_m_max_msun_h))
    m_msun = 10.0 ** log10m[index] / cfg.cosmology.h
    return {"image_index": index.astype(np.int64), "halo_id": group["halo_id"][:][index].astype(np.int64),
            "log10_m200m_msun_h": log10m[index].astype(np.float64),
            "r200m_mpc": np.asarray(r200m_mpc(m_msun, cfg.cosmology), dtype=np.float64)}


def _setup(args) -> dict:
    """Config, checkpoint, grid, the picked images' truth and condition maps, and their seeds."""
    import dataclasses

    from cmpipe.config import load_config
    from cmpipe.model.dataset import block_mean
    from cmpipe.model.inference import resolve_checkpoint
    from cmpipe.model.sampling import image_seed
    from cmpipe.model.training import load_checkpoint
    from cmpipe.stages.infer import grid_from_config
    from cmpipe.store.zarr_store import open_store

    cfg = load_config(args.config)
    ckpt = resolve_checkpoint(args.checkpoint)
    loaded = load_checkpoint(ckpt)
    hp = loaded.hyperparameters
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, resolution=int(hp["model"]["resolution"])))
    group = open_store(args.store)
    attrs = dict(group.attrs)
    grid = grid_from_config(cfg, attrs)
    sel = _select(cfg, args.store, args.split)
    order = np.argsort(sel["log10_m200m_msun_h"])
    pick = order[np.linspace(0, len(order) - 1, min(args.images, len(order))).astype(int)]
    channels = list(attrs["channels"])
    factor = int(attrs["npix"]) // grid.npix
    truth, cond = [], []
    for i in sel["image_index"][pick]:
        image = np.asarray(group["maps"][int(i)], dtype=np.float64)
        truth.append(block_mean(image[[channels.index("gas_sigma"), channels.index("dm_sigma")]], factor))
        cond.append(block_mean(image[[channels.index("sz_y"), channels.index("xray_sb")]], factor))
    seeds = [image_seed(cfg.infer.seed, int(i)) for i in sel["image_index"][pick]]
    key = {"store_fingerprint": attrs["store_fingerprint"], "checkpoint": str(Path(ckpt).resolve()),
           "step": int(loaded.step), "split": args.split, "images": [int(i) for i in sel["image_index"][pick]],
           "samples": args.samples, "seeds": seeds, "device": args.device, "tolerance": args.tolerance}
    return {"cfg": cfg, "ckpt": ckpt, "attrs": attrs, "grid": grid, "sel": sel, "pick": pick, "step": loaded.step,
            "truth": np.stack(truth), "cond": np.stack(cond), "seeds": seeds, "cache_key": key}


def _cached_reference(path: Path | None, key: dict, entry: str) -> dict | None:
    if path is None or not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    return saved["row"] if saved.get("key") == key and saved.get("entry") == entry else None


def _run_entry(entry: str, args, setup: dict) -> dict:
    """Sample and evaluate one ``sampler:steps[:option=value...]`` entry: its summary row."""
    import dataclasses

    from cmpipe.evaluation.image import evaluate_image
    from cmpipe.model.inference import load_posterior_sampler
    from cmpipe.model.sampling import network_evaluations

    name, steps, *opts = entry.split(":")
    options = {k: float(v) for k, v in (o.split("=", 1) for o in opts)}
    cfg, sel, pick, truth = setup["cfg"], setup["sel"], setup["pick"], setup["truth"]
    icfg = dataclasses.replace(cfg.infer, sampler=name, steps=int(steps), n_samples=args.samples)
    sampler = load_posterior_sampler(setup["ckpt"], icfg, args.device, setup["attrs"]["store_fingerprint"])
    sampler.sampler_options = options
    t0 = time.perf_counter()
    samples = sampler.sample(setup["cond"], args.samples, setup["seeds"])
    wall = time.perf_counter() - t0
    rows = []
    for b, i in enumerate(pick):
        key = {"image_index": int(sel["image_index"][i]), "halo_id": int(sel["halo_id"][i]),
               "log10_m200m_msun_h": float(sel["log10_m200m_msun_h"][i])}
        tables = evaluate_image(samples[b], truth[b], setup["cond"][b], setup["grid"], key, float(sel["r200m_mpc"][i]))
        rms = float(np.sqrt(np.mean((np.log10(samples[b].mean(axis=0)) - np.log10(np.maximum(truth[b], 1e-30))) ** 2)))
        rows.append((tables, rms))
    return {"sampler": name + "".join(f" {k}={v:g}" for k, v in options.items()), "entry": entry,
            "steps": int(steps), "nfe": network_evaluations(name, int(steps), icfg.denoise, **options),
            "samples_per_s": samples.shape[0] * samples.shape[1] / wall, **_summary(rows, setup["grid"])}


def _print_row(row: dict, ref: dict, note: str = "") -> None:
    verdict = "ref" if row is ref else ("yes" if row["matches_reference"] else "no (" + ", ".join(row["misses"]) + ")")
    print(f"{row['sampler']:>8} {row['steps']:>5} {row['nfe']:>5} {row['samples_per_s']:>7.2f} "
          f"{row['profile_err_1mpc']:>9.3f} {row['mass_bias']:>7.3f} {row['mass_scatter']:>7.3f} {row['r_large']:>7.3f} "
          f"{row['r_small']:>7.3f} {row['coverage_dev']:>7.3f} {row['rms_dex']:>7.3f}  {verdict}{note}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())

"""Learning curve of the ``science`` run: the model and its baselines at three training lengths.

Issue 17's evidence. Given a ``science`` pipeline directory (``cmpipe pipeline --config science
--out OUT``; run here first with ``--run-pipeline`` when ``OUT`` holds no finished run), each of
``--steps`` (default 1000, 2000, 4000) evaluates the score model's checkpoint of that step and the
U-Net baseline's checkpoint of the same step on the same test images, beside the two trivial
baselines (``mass_oracle``, ``pixel_regression``; they do not train), with the report's own code
(:func:`cmpipe.evaluation.report.make_report`: halo-level values, 68 % halo-bootstrap intervals, skill =
1 - error(model) / error(best baseline), paired over halos). It prints, per training length:

- the headline errors (profile within 1 Mpc, mass within R500c and R200m; gas and DM) of the
  model, the U-Net and each trivial baseline, with their intervals and ``n_halos``;
- the skill over the best baseline, with its interval;

and writes ``OUT/evidence/learning_curve.{md,json,png}`` (the plot: skill against training steps
and images seen, and each predictor's error against steps).

Each point is an inference run under ``OUT/evidence/step_XXXXXXXX/`` (resumable like ``cmpipe
infer``); the last step at the configured ``infer.n_samples`` reuses ``OUT/results``. Sampling
costs most: ``--samples`` (default: the configuration's) trades posterior-mean noise for time,
the same at every point. Prints figures, never asserts them.

    .venv/bin/python bench/evidence.py --out runs/science --samples 10
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

#: (HEADLINES key, label) of the learning curve's metrics.
METRICS = (("profile_central", "profile err r<1 Mpc"), ("mass_r500c", "mass err <R500c"),
           ("mass_r200m", "mass err <R200m"))
CHANNELS = (("gas_sigma", "gas"), ("dm_sigma", "DM"))
TRIVIAL = ("mass_oracle", "pixel_regression")


def _checkpoint(run_dir: Path, step: int) -> Path:
    path = run_dir / "checkpoints" / f"step_{step:08d}.pt"
    if not path.is_file():
        kept = sorted(p.name for p in (run_dir / "checkpoints").glob("step_*.pt"))
        raise SystemExit(f"{path}: no checkpoint of step {step} (kept: {', '.join(kept) or 'none'}); "
                         "train.keep_checkpoints x train.checkpoint_every must cover the steps")
    return path


def _point(cfg, paths: dict[str, Path], step: int, samples: int) -> Path:
    """The results directory of one training length: model, U-Net and trivial baselines inferred."""
    from cmpipe.pipeline.infer import infer_with_ray
    from cmpipe.pipeline.run import unet_baseline_config
    from cmpipe.stages.infer import run_baselines_for_config

    if step == cfg.train.max_steps and samples == cfg.infer.n_samples and (paths["report"] / "report.md").is_file():
        return paths["results"]  # the pipeline's own results: same checkpoint, same settings
    point = paths["out"] / "evidence" / f"step_{step:08d}"
    pcfg = replace(cfg, infer=replace(cfg.infer, n_samples=samples))
    infer_with_ray(pcfg, paths["store"], _checkpoint(paths["run"], step), point, baselines=())
    if cfg.train.unet_baseline_steps > 0:
        ucfg = unet_baseline_config(pcfg)
        infer_with_ray(ucfg, paths["store"], _checkpoint(paths["run_unet"], step), point / "baselines" / "unet",
                       baselines=())
    run_baselines_for_config(pcfg, paths["store"], point, names=TRIVIAL)
    return point


def _numbers(results: Path) -> dict[str, Any]:
    """The report of one point (written to ``results/report``): numbers, baselines' numbers, skills."""
    from cmpipe.stages.report import run

    written = run(None, {"results": results, "report": results / "report"})
    skills = {k: {"best": v["best"], "skill": v["skill"].value, "lo": v["skill"].lo, "hi": v["skill"].hi,
                  "not_better_than": list(v["not_better_than"])} for k, v in written["skills"].items()}
    return {"model": written["numbers"], "baselines": written["baseline_numbers"], "skills": skills}


def _fmt(n: dict[str, float], key: str) -> str:
    v, lo, hi = n.get(key, np.nan), n.get(f"{key}_lo", np.nan), n.get(f"{key}_hi", np.nan)
    return "-" if not np.isfinite(v) else f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def _markdown(points: list[dict[str, Any]], batch: int) -> str:
    names = ["model", *[b for b in ("unet", *TRIVIAL) if any(b in p["baselines"] for p in points)]]
    head = ["steps", "images seen", "metric", "channel", *names, "n_halos", "best baseline", "skill vs best"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in points:
        for key, label in METRICS:
            for ch, chl in CHANNELS:
                k = f"{key}_{ch}"
                cells = [_fmt(p["model"], k)] + [_fmt(p["baselines"].get(b, {}), k) for b in names[1:]]
                sk = p["skills"].get(k)
                skill = "-" if sk is None else f"{sk['skill']:.2f} [{sk['lo']:.2f}, {sk['hi']:.2f}]"
                rows.append("| " + " | ".join([f"{p['step']}", f"{p['step'] * batch}", label, chl, *cells,
                                               f"{int(p['model'].get('n_halos', 0))}",
                                               "-" if sk is None else f"`{sk['best']}`", skill]) + " |")
    return "\n".join(rows) + "\n"


def _plot(points: list[dict[str, Any]], batch: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([p["step"] for p in points], dtype=float)
    fig, axes = plt.subplots(2, len(METRICS), figsize=(4.2 * len(METRICS), 7.0), sharex=True)
    for j, (key, label) in enumerate(METRICS):
        ax = axes[0, j]
        for ch, chl in CHANNELS:
            k = f"{key}_{ch}"
            s = np.array([[p["skills"].get(k, {}).get(q, np.nan) for q in ("skill", "lo", "hi")] for p in points])
            ax.errorbar(steps, s[:, 0], yerr=[s[:, 0] - s[:, 1], s[:, 2] - s[:, 0]], marker="o", capsize=3,
                        label=chl)
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_title(f"skill vs best baseline: {label}", fontsize=9)
        ax.set_xscale("log")
        ax.legend(fontsize=8)
        top = ax.secondary_xaxis("top", functions=(lambda x: x * batch, lambda x: x / batch))
        top.set_xlabel("training images seen")
        ax = axes[1, j]
        for ch, chl in CHANNELS:
            k = f"{key}_{ch}"
            for name, style in (("model", "-o"), ("unet", "--s"), *((b, ":") for b in TRIVIAL)):
                src = [p["model"] if name == "model" else p["baselines"].get(name, {}) for p in points]
                y = np.array([s.get(k, np.nan) for s in src], dtype=float)
                if np.isfinite(y).any():
                    ax.plot(steps, y, style, label=f"{name} {chl}", color="C0" if ch == "gas_sigma" else "C1",
                            alpha=1.0 if name == "model" else 0.6)
        ax.set_xlabel("training steps")
        ax.set_ylabel("median abs frac error over halos")
        ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/science"), help="the science pipeline directory")
    parser.add_argument("--config", default="science", help="its configuration (default science)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--steps", default="1000,2000,4000", help="training lengths, kept checkpoints of the run")
    parser.add_argument("--samples", type=int, default=0, help="posterior samples per image (0: the config's)")
    parser.add_argument("--run-pipeline", action="store_true", help="run (or resume) the pipeline first")
    parser.add_argument("--json", type=Path, help="also save the figures here")
    args = parser.parse_args(argv)

    from cmpipe.config import load_config
    from cmpipe.pipeline.run import run_pipeline
    from cmpipe.stages.paths import pipeline_paths

    cfg = load_config(args.config, args.set)
    paths = pipeline_paths(args.out.resolve())
    if args.run_pipeline or not (paths["report"] / "report.md").is_file():
        if not args.run_pipeline:
            raise SystemExit(f"{args.out}: no finished pipeline; pass --run-pipeline to run it (~90 min, 2 cores)")
        run_pipeline(cfg, paths["out"])
    samples = args.samples or cfg.infer.n_samples
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    points = []
    for step in steps:
        t0 = time.perf_counter()
        results = _point(cfg, paths, step, samples)
        numbers = _numbers(results)
        points.append({"step": step, "images_seen": step * cfg.train.batch_size, "samples": samples,
                       "results": str(results), "seconds": time.perf_counter() - t0, **numbers})
        print(f"step {step}: {results} ({points[-1]['seconds']:.0f} s)", file=sys.stderr, flush=True)
    md = _markdown(points, cfg.train.batch_size)
    evidence = paths["out"] / "evidence"
    evidence.mkdir(parents=True, exist_ok=True)
    header = (f"Learning curve of `{args.out}` ({args.config}): {samples} samples per test image, "
              f"{cfg.infer.sampler} {cfg.infer.steps} steps; median over halos [68 % halo-bootstrap interval].\n\n")
    (evidence / "learning_curve.md").write_text(header + md, encoding="utf-8")
    _plot(points, cfg.train.batch_size, evidence / "learning_curve.png")
    blob = json.dumps(points, indent=2, default=float)
    (evidence / "learning_curve.json").write_text(blob + "\n", encoding="utf-8")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(blob + "\n", encoding="utf-8")
    print(header + md)
    print(f"plot: {evidence / 'learning_curve.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

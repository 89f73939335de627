"""Benchmark of k-NN smoothing lengths: cmpipe's leaf-bucket search against scipy's cKDTree.

On the clustered particle sets of ``bench/projection.py`` (same generator and seeds; 12.8 Mpc
cube) it times, with 1 and 2 threads, ``smoothing_lengths`` and ``smoothing_lengths_and_density``
(k = 32) against the previous implementation (cKDTree, queried in the tree's order, and the
gather density summed in the same order), in the same run; prints the ratio, whether H and the
densities are bitwise equal, and whether the issue's goal (<= 1.5 s for 1e6 particles on
2 threads, both functions) is met. Each call is timed once after a warm-up (numba's cache).
Prints figures, never asserts them.

Run ``.venv/bin/python bench/knn.py`` (about 2 min on 2 cores); ``--sizes 1e5`` for a quick look.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from projection import clustered_particles  # noqa: E402

from cmpipe.sph.kernels import _C3D  # noqa: E402
from cmpipe.sph.smoothing import MIN_SUPPORT_MPC, smoothing_lengths, smoothing_lengths_and_density  # noqa: E402

K = 32
BOX_MPC = 12.8
GOAL_N, GOAL_S, GOAL_THREADS = 1_000_000, 1.5, 2


def ckdtree_previous(pos: np.ndarray, mass: np.ndarray | None, k: int, threads: int) -> tuple:
    """The previous implementation: cKDTree queried in tree order; density in numpy."""
    from scipy.spatial import cKDTree

    tree = cKDTree(pos)
    order = tree.indices
    dist, nbr = tree.query(pos[order], k=k, workers=threads)
    h = np.empty(pos.shape[0])
    h[order] = np.maximum(dist[:, -1], MIN_SUPPORT_MPC)
    if mass is None:
        return h, None
    inv_h = 1.0 / h[order]
    acc = np.zeros(order.size)
    for c in range(k):
        q = dist[:, c] * inv_h
        a = 1.0 - q
        term = mass[nbr[:, c]] * a * a * a * a * (1.0 + 4.0 * q)
        acc = np.where((nbr[:, c] != order) & (q < 1.0), acc + term, acc)
    rho = np.empty(pos.shape[0])
    rho[order] = _C3D * acc * inv_h * inv_h * inv_h
    return h, rho


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def bench(n: int, threads: int, seed: int) -> dict:
    pos = clustered_particles(n, BOX_MPC, np.random.default_rng([seed, n]))
    mass = np.ones(n)
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        t_new_h, h = _timed(lambda: smoothing_lengths(pos, K, threads))
        t_new_d, (h2, rho) = _timed(lambda: smoothing_lengths_and_density(pos, mass, K, threads))
        t_old_h, (oh, _) = _timed(lambda: ckdtree_previous(pos, None, K, threads))
        t_old_d, (oh2, orho) = _timed(lambda: ckdtree_previous(pos, mass, K, threads))
    finally:
        numba.set_num_threads(previous)
    return {
        "n": n, "threads": threads, "new_h_s": t_new_h, "new_density_s": t_new_d, "ckdtree_h_s": t_old_h,
        "ckdtree_density_s": t_old_d, "ratio_h": t_old_h / t_new_h, "ratio_density": t_old_d / t_new_d,
        "h_identical": bool(np.array_equal(h, oh) and np.array_equal(h2, oh2)),
        "density_identical": bool(np.array_equal(rho, orho)),
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e5,1e6,4e6", help="particle counts, comma-separated")
    p.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    p.add_argument("--seed", type=int, default=12345, help="seed of the particle sets (as bench/projection.py)")
    p.add_argument("--out", help="save the rows as JSON")
    args = p.parse_args(argv)
    warm = clustered_particles(2000, BOX_MPC, np.random.default_rng(0))
    smoothing_lengths_and_density(warm, np.ones(2000), K)  # numba cache / compile, not timed
    smoothing_lengths(warm, K)
    rows = []
    print(f"k = {K}, clustered set (bench/projection.py), seed {args.seed}; seconds (ratio = cKDTree / new)")
    print(f"{'N':>9} {'thr':>3} {'H new':>7} {'H cKD':>7} {'ratio':>5} {'H+rho new':>9} {'cKD':>7} {'ratio':>5}  identical H / rho")
    for n in (int(float(s)) for s in args.sizes.split(",")):
        for threads in (int(t) for t in args.threads.split(",")):
            r = bench(n, threads, args.seed)
            rows.append(r)
            print(f"{n:>9.0e} {threads:>3} {r['new_h_s']:7.2f} {r['ckdtree_h_s']:7.2f} {r['ratio_h']:5.2f} "
                  f"{r['new_density_s']:9.2f} {r['ckdtree_density_s']:7.2f} {r['ratio_density']:5.2f}  "
                  f"{r['h_identical']} / {r['density_identical']}", flush=True)
    for r in rows:
        if r["n"] == GOAL_N and r["threads"] == GOAL_THREADS:
            met = max(r["new_h_s"], r["new_density_s"]) <= GOAL_S and r["h_identical"] and r["density_identical"]
            print(f"goal (<= {GOAL_S} s for 1e6 on {GOAL_THREADS} threads, identical): "
                  f"{'MET' if met else 'NOT MET'} ({r['new_h_s']:.2f} / {r['new_density_s']:.2f} s)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()

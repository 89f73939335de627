"""Benchmark of store generation: serial vs Ray with 1 and 2 workers, and the paper's core-hours.

1. The same small store (the ``demo`` config with ``source.kind: mock`` and a small catalog and
   plan, ``--set`` to change it; ``sph.num_threads: 1``) is made into fresh directories: by
   :func:`cmpipe.stages.generate.generate_serial`, and by :func:`cmpipe.pipeline.generate_with_ray`
   in a fresh local Ray with ``num_cpus=1`` and then ``num_cpus=2``, ``--pairs`` times alternately
   (separate ``ray.init`` sessions, dashboard off, per-run ``RAY_TMPDIR``). Images per second
   count the chunk loop only (not ``ray.init``). Each process / Ray session first makes a tiny
   store, untimed, and each Ray session then warms every worker with one halo of the timed config
   (imports, numba's cache and the config's per-process tables: a cold worker's first chunk costs
   3-4 s more). Scaling efficiency = rate(2 workers) / (2 x rate(1 worker)), per pair and fastest
   over fastest (the speed of a shared machine's cores drifts between runs). The split of the
   task seconds (particles = halo load, smoothing = prepare, projection, writing) is summed over
   chunks. Every store's maps are compared with the serial one's (bit-identical expected).
2. Core-hours of the paper-scale catalog (``paper`` config): the plan is made from the paper's
   catalog (no particles), then each chunk's cost is estimated as in a task: for each distinct
   halo of the chunk ``t_halo(M)`` (load + prepare, once per chunk it appears in) plus, per image,
   ``t_proj(M)`` and ``t_write``. ``t_halo`` and ``t_proj`` are power laws in M200m fitted (least
   squares in log-log) to one-thread timings of a few mock halos at the paper's particle mass
   (``--paper-masses``, one-halo flat catalogs in a +-0.005 dex window). The process is first
   warmed up on a 10^12.5 halo of the same config (numba, and the colossus tables a worker
   computes once per process); each halo is then timed ``--repeats`` times, in CPU seconds of
   this process (``--clock``: core-seconds, which other jobs on a shared machine do not
   inflate), and the fastest call is the steady-state cost a worker pays per halo. The first call's excess is printed as
   the one-off warm-up (once per worker process, not per halo). ``t_write`` per image is the
   Ray run's, scaled by the pixel count. Sum / 3600 = core-hours.

``--compare-previous`` repeats part 2 with the previous k-NN (scipy cKDTree, ``bench/knn.py``)
patched into :mod:`cmpipe.sph.smoothing`, so the new and old core-hours come from one run.
``--previous-tree DIR`` repeats it with another checkout's cmpipe (e.g. ``git worktree add
/tmp/main-tree main``): the halos are timed in a subprocess with ``PYTHONPATH=DIR``, after this
process's own timings, so the code before and after a change is costed in one run.

Prints figures, never asserts them (shared machines are noisy). ``--out FILE.json`` saves them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# One thread per task, as in a Ray task (Ray sets OMP_NUM_THREADS=1 in the worker of a
# num_cpus=1 task; numpy's OpenBLAS reads it): without it the mock's (N, 3) x (3, 3) rotations
# run on 2 BLAS threads, 10-30x slower than on one when the other core is busy. Set before
# numpy is imported (this module imports it lazily).
os.environ.setdefault("OMP_NUM_THREADS", "1")
SMALL = [
    "source.kind=mock", "catalog.mode=flat", "catalog.n_halos=24", "catalog.log10_m_min_msun_h=13.5",
    "catalog.log10_m_max_msun_h=14.7", "generate.images_per_0p1dex=6", "generate.max_rotations_per_halo=2",
    "generate.chunk_images=4", "sph.num_threads=1",
]
#: A tiny store (4 one-image chunks of low-mass halos) made first in each process / Ray session,
#: untimed: imports, numba's cache loading and the per-process tables of this mock config (the
#: neighbours' concentration spline depends on the pair mass: 0.3 s once per worker) in every
#: worker (Ray reuses its workers). Same pair mass as the timed store.
WARM = ["catalog.n_halos=4", "catalog.log10_m_min_msun_h=13.0", "catalog.log10_m_max_msun_h=13.1",
        "generate.images_per_0p1dex=1", "generate.axes_per_rotation=1", "generate.chunk_images=1"]
WINDOW_DEX = 0.005
#: Clock of the paper halo timings: CPU seconds of this process (``--clock cpu``, the default:
#: core-seconds, unaffected by other jobs taking the cores of a shared machine, as they do
#: the wall clock) or ``time.perf_counter`` (``--clock wall``).
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = CLOCKS["cpu"]


def _ray_run(cfg, warm, path: Path, num_cpus: int) -> dict:
    import ray

    from cmpipe.pipeline import generate_with_ray

    tmp = Path(tempfile.mkdtemp(prefix="cmpipe-bench-ray-"))
    os.environ.update({"RAY_TMPDIR": str(tmp), "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"})
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, object_store_memory=200 * 2**20,
             _temp_dir=str(tmp), log_to_driver=False)
    try:
        warm_path = path.with_name(path.name + ".warm")
        generate_with_ray(warm, warm_path, progress=False)
        _warm_every_worker(cfg, num_cpus, warm_path)
        return generate_with_ray(cfg, path, progress=False)
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def _warm_every_worker(cfg, num_cpus: int, store: Path, hold_s: float = 1.0) -> None:
    """Halo 0 of ``cfg``'s own catalog (load, prepare, one sightline) and a read of ``store``'s
    maps (zarr's lazily imported API), untimed, on each of the ``num_cpus`` workers: ``num_cpus`` one-CPU tasks at once, each holding its CPU ``hold_s``
    after its halo, so no two share a worker. A worker's first halo of a config pays one-off
    costs that the steady state does not: imports, numba's cache loading, and the per-process
    tables keyed by the config, above all the concentration splines over the catalog's and the
    neighbours' mass ranges (colossus every 0.01 dex, ~0.4 s each). The warm-up store alone
    (another catalog, one chunk) had left them, and once a whole worker, to the timed run: a
    py-spy profile of the 2-worker run showed 4x the 1-worker run's samples in colossus's
    concentration, and a cold worker's first chunk took 3.4 s more."""
    import ray

    @ray.remote(num_cpus=1)
    def warm_one(cfg, store: str, hold_s: float) -> int:  # cmpipe imports only: this module is not on the workers' path
        import os
        import time

        os.environ["OMP_NUM_THREADS"] = "1"
        import numba

        from cmpipe.mapmaking.maps import prepare_halo_with_config, sightline_maps_with_config
        from cmpipe.stages.generate import map_settings
        from cmpipe.stages.source import mock_source
        from cmpipe.store import open_store

        numba.set_num_threads(1)
        open_store(store)["maps"][:1]
        settings = map_settings(cfg)
        sightline_maps_with_config(prepare_halo_with_config(mock_source(cfg).load(0), settings), settings, None, 0)
        time.sleep(hold_s)
        return os.getpid()

    pids = ray.get([warm_one.remote(cfg, str(store), hold_s) for _ in range(num_cpus)])
    if len(set(pids)) != num_cpus:
        print(f"  warning: the warm-up reached {len(set(pids))} of {num_cpus} workers")


def _split(summary: dict) -> str:
    s = summary["seconds"]
    parts = ("particles", "smoothing", "projection", "writing")
    tot = sum(s[p] for p in parts) or 1.0
    return ", ".join(f"{p} {s[p]:.1f} s ({100 * s[p] / tot:.0f} %)" for p in parts)


@contextlib.contextmanager
def _knn_clock(spent: list[float]):
    """Add the seconds spent in :mod:`cmpipe.sph.smoothing`'s k-NN searches to ``spent[0]``
    (wraps whichever implementation is in place; the callers import it at call time)."""
    from cmpipe.sph import smoothing

    saved = smoothing.smoothing_lengths, smoothing.smoothing_lengths_and_density

    def clocked(fn):
        def run(*args, **kwargs):
            t0 = _clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += _clock() - t0
        return run

    smoothing.smoothing_lengths, smoothing.smoothing_lengths_and_density = (clocked(f) for f in saved)
    try:
        yield
    finally:
        smoothing.smoothing_lengths, smoothing.smoothing_lengths_and_density = saved


def _time_halo(cfg, log10_m: float) -> tuple[float, float, float, float]:
    """(load, prepare, one sightline, k-NN within load + prepare) seconds of one mock halo of
    this mass, one thread (one call)."""
    from cmpipe.mapmaking.maps import prepare_halo_with_config, sightline_maps_with_config
    from cmpipe.stages.generate import map_settings
    from cmpipe.stages.source import mock_source

    cat = dataclasses_replace(cfg.catalog, mode="flat", n_halos=1, log10_m_min_msun_h=log10_m - WINDOW_DEX,
                              log10_m_max_msun_h=log10_m + WINDOW_DEX)
    one = dataclasses_replace(cfg, catalog=cat)
    src = mock_source(one)
    knn = [0.0]
    with _knn_clock(knn):
        t0 = _clock()
        halo = src.load(0)
        tl = _clock()
        prepared = prepare_halo_with_config(halo, map_settings(one))
        t1 = _clock()
    sightline_maps_with_config(prepared, map_settings(one), None, 2)
    return tl - t0, t1 - tl, _clock() - t1, knn[0]


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


def _paper_config():
    from cmpipe.config import load_config

    return load_config("paper", ["source.kind=mock", "sph.num_threads=1"])


def time_paper_halos(masses: list[float], repeats: int = 2) -> dict:
    """Steady-state (load, prepare, sightline) seconds of one halo per mass at the paper's
    particle mass, one thread: after a warm-up halo of the same config, the fastest of
    ``repeats`` calls per halo; the first call's excess over it is the one-off warm-up."""
    cfg = _paper_config()
    t0 = _clock()
    _time_halo(cfg, 12.5)  # numba, colossus tables: once per worker process, not timed
    warm_s = _clock() - t0
    rows = []
    for m in masses:
        calls = [_time_halo(cfg, m) for _ in range(max(repeats, 1))]
        best = min(calls, key=lambda c: c[0] + c[1])
        tl, tq, _, tk = best
        tp = min(c[2] for c in calls)
        first = sum(calls[0][:2]) - (tl + tq)
        rows.append({"log10_m200m_msun_h": m, "halo_s": tl + tq, "load_s": tl, "prepare_s": tq, "sightline_s": tp,
                     "knn_s": tk, "first_call_excess_s": first})
        print(f"  paper m_pair {cfg.mock.pair_mass_msun_h:g}: log10 M {m:.2f}: load + prepare {tl + tq:.2f} s "
              f"(load: particles + gas k-NN {tl:.2f} s, prepare: DM k-NN {tq:.2f} s; k-NN {tk:.2f} s, "
              f"the rest {tl + tq - tk:.2f} s), one sightline {tp:.2f} s; first call +{first:.2f} s", flush=True)
    return {"warm_up_s": warm_s, "repeats": repeats, "timings": rows}


def _time_in_tree(tree: str, masses: list[float], repeats: int, clock: str) -> dict:
    """:func:`time_paper_halos` in a subprocess importing cmpipe from checkout ``tree``."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--time-halos-only", "--repeats", str(repeats), "--clock", clock,
           "--paper-masses", ",".join(str(m) for m in masses)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    print("\n".join(line for line in out.splitlines() if not line.startswith("{")), flush=True)
    return json.loads(out.splitlines()[-1])


def paper_core_hours(halos: dict, t_write_per_image_px: float) -> dict:
    """Fit t_halo, t_proj to the halo timings (:func:`time_paper_halos`) at the paper's
    particle mass; sum over the paper's plan."""
    import numpy as np

    from cmpipe.config import config_fingerprint
    from cmpipe.mapmaking.plan import make_plan
    from cmpipe.stages.generate import source_catalog

    cfg = _paper_config()
    t0 = time.perf_counter()
    plan = make_plan(source_catalog(cfg), cfg.generate, config_fingerprint=config_fingerprint(cfg))
    plan_s = time.perf_counter() - t0
    rows = halos["timings"]
    x = np.array([r["log10_m200m_msun_h"] for r in rows])
    fit_h = np.polyfit(x, np.log10([r["halo_s"] for r in rows]), 1)
    fit_p = np.polyfit(x, np.log10([r["sightline_s"] for r in rows]), 1)
    logm = plan["log10_m200m_msun_h"].to_numpy()
    halo = plan["halo_id"].to_numpy()
    k = cfg.generate.chunk_images
    t_write = t_write_per_image_px * cfg.maps.npix**2
    sightline_s = float(np.sum(10 ** np.polyval(fit_p, logm)))
    halo_s, loads = 0.0, 0
    for c in range(math.ceil(plan.num_rows / k)):
        sl = slice(c * k, (c + 1) * k)
        _, first = np.unique(halo[sl], return_index=True)
        halo_s += float(np.sum(10 ** np.polyval(fit_h, logm[sl][first])))
        loads += len(first)
    total = halo_s + sightline_s + t_write * plan.num_rows
    return {
        "plan_images": plan.num_rows, "plan_halos": int(len(np.unique(halo))), "halo_loads": loads,
        "plan_seconds": plan_s, "timings": rows, "warm_up_s": halos["warm_up_s"], "repeats": halos["repeats"],
        "fit_halo_log10s": fit_h.tolist(), "fit_sightline_log10s": fit_p.tolist(),
        "core_seconds": total, "core_hours": total / 3600.0, "seconds_per_image": total / plan.num_rows,
        "parts_core_hours": {"halo": halo_s / 3600.0, "sightline": sightline_s / 3600.0,
                             "writing": t_write * plan.num_rows / 3600.0},
    }


@contextlib.contextmanager
def previous_knn():
    """Patch the previous implementation (cKDTree) into cmpipe.sph.smoothing (this process)."""
    import numpy as np

    from cmpipe.sph import smoothing

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from knn import ckdtree_oracle as ckdtree_previous

    saved = smoothing.smoothing_lengths, smoothing.smoothing_lengths_and_density

    def lengths(pos, n_neighbours=32, num_threads=0):
        pos = np.ascontiguousarray(pos, dtype=np.float64)
        return ckdtree_previous(pos, None, min(n_neighbours, pos.shape[0]), num_threads or -1)[0]

    def with_density(pos, mass, n_neighbours=32, num_threads=0):
        pos = np.ascontiguousarray(pos, dtype=np.float64)
        return ckdtree_previous(pos, np.asarray(mass, dtype=np.float64), min(n_neighbours, pos.shape[0]),
                                num_threads or -1)

    smoothing.smoothing_lengths, smoothing.smoothing_lengths_and_density = lengths, with_density
    try:
        yield
    finally:
        smoothing.smoothing_lengths, smoothing.smoothing_lengths_and_density = saved


def _print_paper(paper: dict, label: str) -> None:
    print(f"paper plan ({label}): {paper['plan_images']} images of {paper['plan_halos']} halos "
          f"({paper['halo_loads']} halo loads, chunks of 64); "
          f"t_halo = 10^({paper['fit_halo_log10s'][0]:.2f} log10 M {paper['fit_halo_log10s'][1]:+.2f}) s, "
          f"t_sightline = 10^({paper['fit_sightline_log10s'][0]:.2f} log10 M {paper['fit_sightline_log10s'][1]:+.2f}) s")
    parts = paper["parts_core_hours"]
    print(f"  estimate ({label}): {paper['seconds_per_image']:.2f} core-s per image, {paper['core_hours']:.1f} "
          f"core-hours (one thread per task; halo loads {parts['halo']:.1f}, sightlines {parts['sightline']:.1f}, "
          f"writing {parts['writing']:.1f}) + a one-off warm-up of {paper['warm_up_s']:.0f} s per worker process; "
          f"goal <= 8: {'MET' if paper['core_hours'] <= 8 else 'NOT MET'}")


def _small_store(cfg, warm, work: Path, pairs: int = 3) -> tuple[dict, float]:
    """Part 1: serial, then ``pairs`` alternating pairs of Ray runs with 1 and 2 workers (each a
    fresh Ray, every worker warmed); returns the figures and t_write per image px.

    The scaling efficiency is given per pair and as the fastest 2-worker run over twice the
    fastest 1-worker run: on a shared machine the speed of the cores drifts by 10-20 % from one
    minute to the next (measured: the same projection 12.5 ms, then 16 ms), which a single pair
    of runs minutes apart mistakes for scaling; the fastest of each is what the cores can do."""
    import numpy as np

    from cmpipe.stages.generate import generate_serial
    from cmpipe.store import open_store

    runs = {"serial": generate_serial(cfg, work / "serial.zarr")}
    tries: dict[int, list[dict]] = {1: [], 2: []}
    for k in range(pairs):
        for n in (1, 2):
            tries[n].append(_ray_run(cfg, warm, work / f"ray{n}_{k}.zarr", n))
    best = {n: max(range(pairs), key=lambda k, n=n: tries[n][k]["images_per_s"]) for n in (1, 2)}
    runs["ray_1cpu"], runs["ray_2cpu"] = tries[1][best[1]], tries[2][best[2]]
    ref = open_store(work / "serial.zarr")["maps"][:]
    identical = {f"ray_{n}cpu": all(bool(np.array_equal(open_store(work / f"ray{n}_{k}.zarr")["maps"][:], ref, equal_nan=True))
                                    for k in range(pairs)) for n in (1, 2)}
    s = runs["serial"]
    print(f"small store: {s['images']} images of {s['halos']} halos in {s['chunks']} chunks, "
          f"{cfg.maps.npix} px, m_pair {cfg.mock.pair_mass_msun_h:g} Msun/h; {pairs} alternating pairs of Ray runs")
    for name, r in runs.items():
        label = name if name == "serial" else f"{name} (fastest of {pairs})"
        print(f"  {label:<24} {r['images_per_s']:6.2f} images/s  wall {r['seconds']['wall']:6.1f} s  split: {_split(r)}")
    per_pair = [tries[2][k]["images_per_s"] / (2 * tries[1][k]["images_per_s"]) for k in range(pairs)]
    eff = runs["ray_2cpu"]["images_per_s"] / (2 * runs["ray_1cpu"]["images_per_s"])
    print(f"  scaling efficiency 2 vs 1 workers, per pair: {', '.join(f'{e:.2f}' for e in per_pair)} "
          f"(median {float(np.median(per_pair)):.2f}); fastest / fastest: {eff:.2f} "
          f"(goal >= 0.90: {'MET' if eff >= 0.9 else 'NOT MET'}); "
          f"Ray 2 workers / serial: {runs['ray_2cpu']['images_per_s'] / s['images_per_s']:.2f}x; "
          f"maps bit-identical to serial: {identical}")
    parts = _scaling_parts(runs["ray_1cpu"], runs["ray_2cpu"])
    print(f"  scaling = utilisation x task speed (fastest runs): the 2 workers spent {parts['utilisation']:.2f} of "
          f"the wall in tasks (the rest: Ray's scheduling, the last chunks' tail); a task ran "
          f"{parts['task_speed']:.2f}x as fast as with 1 worker (below 1: the two shared the cores with each other "
          f"and with other jobs); load average {os.getloadavg()[0]:.1f}")
    print(f"  in CPU seconds a task ran {parts['task_speed_cpu']:.2f}x as fast with 2 workers as with 1 (caches and "
          f"memory shared by the two); task wall / CPU seconds {parts['wall_per_cpu_1_worker']:.2f} with 1 worker, "
          f"{parts['wall_per_cpu_2_workers']:.2f} with 2 (above 1: the cores taken by other jobs)")
    r2 = runs["ray_2cpu"]
    t_write_px = r2["seconds"]["writing"] / max(r2["images"], 1) / cfg.maps.npix**2
    return {"runs": runs, "scaling_efficiency": eff, "scaling_efficiency_per_pair": per_pair,
            "scaling_parts": parts, "maps_identical": identical,
            "tries_images_per_s": {n: [t["images_per_s"] for t in tries[n]] for n in (1, 2)}}, t_write_px


def _scaling_parts(one: dict, two: dict) -> dict:
    """Scaling efficiency 2 vs 1 workers as a product: the 2 workers' utilisation (task
    seconds / (2 x wall)) times the task speed (task seconds per image with 1 worker over with 2).
    Tasks of 1 worker fill its wall (utilisation 1 assumed: its gaps are Ray's, as with 2)."""
    u2 = two["seconds"]["total"] / (2.0 * two["seconds"]["wall"])
    u1 = one["seconds"]["total"] / one["seconds"]["wall"]
    speed = (one["seconds"]["total"] / max(one["images"], 1)) / (two["seconds"]["total"] / max(two["images"], 1))
    cpu = (one["seconds"]["cpu"] / max(one["images"], 1)) / (two["seconds"]["cpu"] / max(two["images"], 1))
    return {"utilisation": u2 / u1, "task_speed": speed, "utilisation_1_worker": u1, "task_speed_cpu": cpu,
            "wall_per_cpu_1_worker": one["seconds"]["total"] / one["seconds"]["cpu"],
            "wall_per_cpu_2_workers": two["seconds"]["total"] / two["seconds"]["cpu"]}


def main(argv=None) -> int:  # long: argument handling and the three optional comparisons in sequence
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra override of the small config")
    parser.add_argument("--paper-masses", default="13.5,14.0,14.5,15.0",
                        help="log10 M200m [Msun/h] of the halos timed at the paper's particle mass ('' to skip)")
    parser.add_argument("--repeats", type=int, default=2, help="calls per timed paper halo (the fastest counts)")
    parser.add_argument("--out", help="save the figures as JSON")
    parser.add_argument("--compare-previous", action="store_true",
                        help="also cost the paper with the previous k-NN (cKDTree), in this run")
    parser.add_argument("--previous-tree", help="also cost the paper with the cmpipe of this checkout, in this run")
    parser.add_argument("--skip-small", action="store_true",
                        help="skip part 1 (t_write then taken as 2e-6 s per image per 128^2 px)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="alternating pairs of Ray runs with 1 and 2 workers (the fastest of each counts)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="clock of the paper halo timings: this process's CPU seconds, or wall seconds")
    parser.add_argument("--time-halos-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global _clock
    _clock = CLOCKS[args.clock]
    masses = [float(m) for m in args.paper_masses.split(",") if m.strip()]
    if args.time_halos_only:  # the subprocess of --previous-tree: timings as one JSON line
        print(json.dumps(time_paper_halos(masses, args.repeats)))
        return 0

    from cmpipe.config import load_config
    from cmpipe.stages.generate import generate_serial

    cfg = load_config("demo", [*SMALL, *args.overrides])
    work = Path(tempfile.mkdtemp(prefix="cmpipe-bench-gen-"))
    results: dict = {}
    try:
        warm = load_config("demo", [*SMALL, *WARM])
        generate_serial(warm, work / "warm.zarr")  # imports and numba compile, not timed
        if args.skip_small:
            results = {"config_overrides": [*SMALL, *args.overrides]}
            t_write_px = 2e-6 / 128**2
        else:
            results, t_write_px = _small_store(cfg, warm, work, args.pairs)
            results["config_overrides"] = [*SMALL, *args.overrides]
        if masses:
            paper = paper_core_hours(time_paper_halos(masses, args.repeats), t_write_px)
            results["paper"] = paper
            _print_paper(paper, "this tree")
            if args.compare_previous:
                with previous_knn():
                    old = paper_core_hours(time_paper_halos(masses, args.repeats), t_write_px)
                results["paper_previous_knn"] = old
                _print_paper(old, "previous k-NN, cKDTree")
                print(f"  core-hours this tree / previous k-NN: {paper['core_hours']:.1f} / {old['core_hours']:.1f} "
                      f"({old['core_hours'] / paper['core_hours']:.2f}x)")
            if args.previous_tree:
                old = paper_core_hours(_time_in_tree(args.previous_tree, masses, args.repeats, args.clock), t_write_px)
                results["paper_previous_tree"] = {**old, "tree": args.previous_tree}
                _print_paper(old, f"previous tree {args.previous_tree}")
                print(f"  core-hours this tree / previous tree: {paper['core_hours']:.1f} / {old['core_hours']:.1f} "
                      f"({old['core_hours'] / paper['core_hours']:.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

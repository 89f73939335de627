"""Benchmark of cmpipe's SPH projection: smoothing lengths, every backend, and swiftsimio.

For each particle count N it builds a seeded, clustered particle set (an NFW halo, subclumps
and a thin uniform background filling the 12.8 Mpc cube, so kernels span from far below a pixel
to many pixels, as in a real cluster), then times

1. smoothing lengths (``smoothing_lengths`` and ``smoothing_lengths_and_density``, k = 32);
2. every backend in :data:`cmpipe.sph.projection.BACKENDS` on 4 weight channels and on 1, with
   all threads and with 1, after a warm-up call that pays numba's compilation;
3. swiftsimio's low-level ``scatter`` backends (when installed) on the mass channel;
4. the previous ``fast`` (before issue 22, ``bench/fast_previous.py``) on 1 channel and 1 thread
   and on 4 channels, for fast / previous per core in the same run;

and measures each map's L1 distance from the ``exact`` backend and its total mass relative to
``exact``. It prints figures and never asserts them: timings on a shared machine are noisy.

Run ``.venv/bin/python bench/projection.py --sizes 1e5`` for a quick look; ``--help`` lists the
options.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numba
import numpy as np

from cmpipe.sph.projection import BACKENDS, MapGrid, default_num_threads, project
from cmpipe.sph.smoothing import smoothing_lengths, smoothing_lengths_and_density

try:  # run as a script (bench/ on sys.path) or imported from the repository root
    from fast_previous import project_fast_previous
except ImportError:  # pragma: no cover - depends on how it is run
    from bench.fast_previous import project_fast_previous

#: swiftsimio's 2D Wendland C2 convention: kernel support = KERNEL_GAMMA * h.
SWIFT_2D_KERNEL_GAMMA = 1.897367
#: Neighbours per smoothing length.
N_NEIGHBOURS = 32
#: Particles in a warm-up call (numba compiles, or loads its cache, on the first call).
WARMUP_PARTICLES = 1000
#: A call faster than this is repeated (for at most MAX_REPEAT_S in all) and the best kept.
REPEAT_BELOW_S = 0.2
MAX_REPEAT_S = 1.0
#: cmpipe backends slow enough to be timed once (4 channels, all threads) above SLOW_ONCE_ABOVE.
SLOW_BACKENDS = ("exact", "mesh3d")
SLOW_ONCE_ABOVE = 1e6
#: swiftsimio backends to time, and the largest N for each.
SWIFT_BACKENDS = {"fast": np.inf, "renormalised": np.inf, "subsampled": 1e6}
#: The issue's goals.
GOAL_SPEEDUP_PER_CORE = 2.0
GOAL_L1 = 0.001
GOAL_SMOOTHING_N = 1_000_000
GOAL_SMOOTHING_S = 1.5
#: The previous ``fast`` (before issue 22), timed beside the current one under this name.
PREVIOUS = "fast-previous"


@dataclass
class Row:
    """One timed projection."""

    n: int
    backend: str
    threads: int
    channels: int
    seconds: float
    particles_per_s: float
    l1_mass: float | None = None
    mass_ratio: float | None = None


# ----------------------------------------------------------------------------------------------
# 1. particles
# ----------------------------------------------------------------------------------------------
def _isotropic(radius: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Points at the given radii in uniformly random directions, shape (N, 3)."""
    vec = rng.normal(size=(radius.size, 3))
    return vec * (radius / np.linalg.norm(vec, axis=1))[:, None]


def _nfw_radii(n: int, r200: float, conc: float, r_max: float, rng: np.random.Generator) -> np.ndarray:
    """Radii [Mpc] drawn from an NFW mass profile truncated at ``r_max``."""
    rs = r200 / conc
    x = np.concatenate([[0.0], np.geomspace(1e-6, r_max / rs, 4096)])
    mu = np.log1p(x) - x / (1.0 + x)
    return rs * np.interp(rng.uniform(0.0, mu[-1], n), mu, x)


def _plummer_radii(n: int, a: float, r_max: float, rng: np.random.Generator) -> np.ndarray:
    """Radii [Mpc] drawn from a Plummer sphere of scale ``a`` truncated at ``r_max``."""
    u_max = r_max**3 / (r_max**2 + a**2) ** 1.5
    u = rng.uniform(0.0, u_max, n)
    return a / np.sqrt(u ** (-2.0 / 3.0) - 1.0)


def clustered_particles(
    n: int,
    box_mpc: float,
    rng: np.random.Generator,
    r200_mpc: float = 2.0,
    conc: float = 5.0,
    clump_fraction: float = 0.1,
    background_fraction: float = 0.005,
    n_clumps: int = 16,
) -> np.ndarray:
    """A mock cluster: NFW halo, Plummer subclumps and a uniform background.

    Parameters
    ----------
    n : int
        Number of particles.
    box_mpc : float
        Side of the cube centred on the origin that holds every particle [Mpc].
    rng : numpy.random.Generator
        Source of randomness.
    r200_mpc, conc : float
        The halo's R200 [Mpc] and NFW concentration; it is truncated at
        ``min(3 R200, box / 2)``.
    clump_fraction, background_fraction : float
        Fractions of the particles in subclumps and in the background.
    n_clumps : int
        Number of subclumps (Plummer spheres of scale 0.02-0.08 Mpc at 0.2-1.5 R200).

    Returns
    -------
    (N, 3) float64
        Positions [Mpc], in random order (no spatial sorting to help any backend).
    """
    half = 0.5 * box_mpc
    n_bg = int(round(background_fraction * n))
    n_clump = int(round(clump_fraction * n))
    n_halo = n - n_bg - n_clump
    parts = [_isotropic(_nfw_radii(n_halo, r200_mpc, conc, min(3.0 * r200_mpc, half), rng), rng)]
    shares = rng.dirichlet(np.full(n_clumps, 0.7))
    counts = rng.multinomial(n_clump, shares)
    centres = _isotropic(rng.uniform(0.2, 1.5, n_clumps) * r200_mpc, rng)
    for count, centre in zip(counts, centres):
        a = rng.uniform(0.02, 0.08)
        parts.append(centre + _isotropic(_plummer_radii(count, a, 10.0 * a, rng), rng))
    parts.append(rng.uniform(-half, half, size=(n_bg, 3)))
    pos = np.clip(np.concatenate(parts), -half, half)
    return pos[rng.permutation(n)]


def particle_weights(pos: np.ndarray, mass: np.ndarray, density: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Four positive weight channels like cmpipe's maps, shape (4, N).

    Mass; mass times a temperature-like profile (SZ-like); mass times density times the
    square root of that temperature (X-ray-like); mass times log-normal noise.
    """
    temperature = (1.0 + np.linalg.norm(pos, axis=1) / 0.4) ** -0.7
    return np.stack(
        [
            mass,
            mass * temperature,
            mass * density / np.median(density) * np.sqrt(temperature),
            mass * rng.lognormal(0.0, 0.5, mass.size),
        ]
    )


def support_quantiles(support_mpc: np.ndarray, pixel_mpc: float) -> dict[str, float]:
    """Quantiles of H / pixel, and the fraction of particles with H below one pixel."""
    qs = (0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0)
    h_pix = support_mpc / pixel_mpc
    out = {f"q{100 * q:g}": float(v) for q, v in zip(qs, np.quantile(h_pix, qs))}
    out["below_1px"] = float(np.mean(h_pix < 1.0))
    return out


# ----------------------------------------------------------------------------------------------
# timing helpers
# ----------------------------------------------------------------------------------------------
def timed(fn: Callable[[], object], repeat: bool = True) -> tuple[float, object]:
    """Run ``fn``; if it is fast, repeat it for up to MAX_REPEAT_S and keep the best time.

    Returns
    -------
    seconds : float
        Best wall-clock time of one call.
    result : object
        The last call's return value.
    """
    start = time.perf_counter()
    result = fn()
    best = time.perf_counter() - start
    spent = best
    while repeat and best < REPEAT_BELOW_S and spent < MAX_REPEAT_S:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        spent += elapsed
    return best, result


@contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Set numba's thread count inside the block."""
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def l1_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``sum |a - b| / sum |b|``."""
    return float(np.abs(a - b).sum() / np.abs(b).sum())


# ----------------------------------------------------------------------------------------------
# 2. smoothing lengths
# ----------------------------------------------------------------------------------------------
def bench_smoothing(pos: np.ndarray, mass: np.ndarray, threads: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """Time ``smoothing_lengths`` and ``smoothing_lengths_and_density`` (k = 32).

    Returns
    -------
    timings : dict
        Seconds and particles per second of each.
    support_mpc, density : (N,) float64
        H [Mpc] and the SPH density [mass unit Mpc^-3].
    """
    n = pos.shape[0]
    t_h, support = timed(lambda: smoothing_lengths(pos, N_NEIGHBOURS, threads), repeat=False)
    t_hd, (support2, density) = timed(
        lambda: smoothing_lengths_and_density(pos, mass, N_NEIGHBOURS, threads), repeat=False
    )
    if not np.allclose(support, support2):
        print("  WARNING: smoothing_lengths and smoothing_lengths_and_density disagree on H")
    timings = {
        "n": n,
        "threads": threads,
        "smoothing_lengths_s": t_h,
        "smoothing_lengths_per_s": n / t_h,
        "with_density_s": t_hd,
        "with_density_per_s": n / t_hd,
    }
    return timings, support, density


# ----------------------------------------------------------------------------------------------
# 3-4. cmpipe backends
# ----------------------------------------------------------------------------------------------
def warm_up_cmpipe(pos: np.ndarray, support: np.ndarray, weights: np.ndarray, grid: MapGrid) -> dict[str, float]:
    """First-call time of every backend on a few particles: numba compiles (or loads its cache)."""
    sl = slice(0, WARMUP_PARTICLES)
    x, y, z = pos[sl].T
    compile_s = {}
    for name in BACKENDS:
        start = time.perf_counter()
        project(x, y, z, support[sl], weights[:, sl], grid, backend=name)
        compile_s[name] = time.perf_counter() - start
    return compile_s


def bench_cmpipe(
    pos: np.ndarray, support: np.ndarray, weights: np.ndarray, grid: MapGrid, threads: int, run_exact: bool
) -> tuple[list[Row], dict[str, np.ndarray]]:
    """Time every cmpipe backend on 4 and 1 channels, with ``threads`` threads and with 1.

    Slow backends above SLOW_ONCE_ABOVE particles, and every backend on 1 channel, reuse the
    4-channel map for accuracy. Returns the rows and each backend's 4-channel map
    (``exact`` first, when run).
    """
    n = pos.shape[0]
    x, y, z = (np.ascontiguousarray(c) for c in pos.T)
    names = sorted(BACKENDS, key=lambda b: b != "exact")
    rows, maps = [], {}
    for name in names:
        if name == "exact" and not run_exact:
            continue
        configs = [(4, threads), (1, threads)] + ([(4, 1), (1, 1)] if threads > 1 else [])
        if name in SLOW_BACKENDS and n > SLOW_ONCE_ABOVE:
            configs = configs[:1]
        for channels, nthreads in configs:
            seconds, out = timed(
                lambda: project(x, y, z, support, weights[:channels], grid, backend=name, num_threads=nthreads),
                repeat=name not in SLOW_BACKENDS,
            )
            if channels == 4 and nthreads == threads:
                maps[name] = out
            rows.append(Row(n, name, nthreads, channels, seconds, n / seconds))
            print(f"  {name:>8}  {nthreads} thr  {channels} ch  {seconds:8.3f} s  {n / seconds / 1e6:8.2f} M/s", flush=True)
    return rows, maps


def bench_previous(
    pos: np.ndarray, support: np.ndarray, weights: np.ndarray, grid: MapGrid, threads: int, maps: dict[str, np.ndarray]
) -> list[Row]:
    """Time the previous ``fast`` (``bench/fast_previous.py``) like the current one: 1 channel on
    1 thread, and 4 channels on ``threads`` (that map joins ``maps`` for the accuracy)."""
    n = pos.shape[0]
    x, y, z = (np.ascontiguousarray(c) for c in pos.T)
    sl = slice(0, WARMUP_PARTICLES)
    project_fast_previous(x[sl], y[sl], z[sl], support[sl], weights[:1, sl], grid, 1)
    rows = []
    for channels, nthreads in ((1, 1), (4, threads)):
        w = np.ascontiguousarray(weights[:channels])
        seconds, out = timed(lambda: project_fast_previous(x, y, z, support, w, grid, nthreads))
        if channels == 4:
            maps[PREVIOUS] = out
        rows.append(Row(n, PREVIOUS, nthreads, channels, seconds, n / seconds))
        print(f"  {PREVIOUS:>13}  {nthreads} thr  {channels} ch  {seconds:8.3f} s  {n / seconds / 1e6:8.2f} M/s", flush=True)
    if "fast" in maps:
        print(f"  L1 of fast vs {PREVIOUS}, mass channel: {l1_distance(maps['fast'][0], out[0]):.4%}")
    return rows


def accuracy(rows: list[Row], maps: dict[str, np.ndarray]) -> None:
    """Fill each row's L1 distance from ``exact`` (mass channel) and mass ratio, and print the
    L1 distance of every channel."""
    if "exact" not in maps:
        return
    ref = maps["exact"]
    for name, m in maps.items():
        per_channel = [l1_distance(m[c], ref[c]) for c in range(ref.shape[0])]
        print(f"  L1 vs exact, {name:>8}: " + "  ".join(f"ch{c} {v:.4%}" for c, v in enumerate(per_channel)))
    for row in rows:
        if row.backend in maps:
            row.l1_mass = l1_distance(maps[row.backend][0], ref[0])
            row.mass_ratio = float(maps[row.backend][0].sum() / ref[0].sum())


# ----------------------------------------------------------------------------------------------
# 5. swiftsimio
# ----------------------------------------------------------------------------------------------
def swift_inputs(pos: np.ndarray, support: np.ndarray, mass: np.ndarray, grid: MapGrid) -> tuple[np.ndarray, ...]:
    """Positions in [0, 1], float32 masses and SWIFT's 2D ``h`` in units of the map side."""
    side = grid.extent_mpc
    keep = np.abs(pos[:, 2]) <= 0.5 * grid.depth_mpc  # the same slab as cmpipe's exact and fast
    x = np.ascontiguousarray((pos[keep, 0] + 0.5 * side) / side)
    y = np.ascontiguousarray((pos[keep, 1] + 0.5 * side) / side)
    h = np.ascontiguousarray(support[keep] / SWIFT_2D_KERNEL_GAMMA / side, dtype=np.float32)
    return x, y, np.ascontiguousarray(mass[keep], dtype=np.float32), h


def bench_swiftsimio(
    pos: np.ndarray, support: np.ndarray, mass: np.ndarray, grid: MapGrid, threads: int, exact: np.ndarray | None
) -> tuple[list[Row], dict[str, float]]:
    """Time swiftsimio's serial and parallel ``scatter`` backends on the mass channel.

    Their maps are indexed [x, y] in mass per unit-box area; they are transposed and divided by
    the map side squared to give mass per Mpc^2 like cmpipe's. Returns the rows and the
    first-call (compile) times; no rows when swiftsimio is not importable.
    """
    try:
        from swiftsimio.visualisation.projection_backends import backends, backends_parallel
    except ImportError:
        print("  swiftsimio is not importable: skipped")
        return [], {}
    n = pos.shape[0]
    x, y, m, h = swift_inputs(pos, support, mass, grid)
    to_cmpipe = 1.0 / grid.extent_mpc**2
    rows, compile_s = [], {}
    for name, max_n in SWIFT_BACKENDS.items():
        if n > max_n:
            print(f"  swiftsimio {name}: skipped above N = {max_n:.0e} (too slow)")
            continue
        for label, fn, nthreads in ((f"swift-{name}", backends[name], 1), (f"swift-{name}-par", backends_parallel[name], threads)):
            w = slice(0, WARMUP_PARTICLES)
            with numba_threads(nthreads):
                start = time.perf_counter()
                fn(x[w], y[w], m[w], h[w], grid.npix)
                compile_s[label] = time.perf_counter() - start
                seconds, img = timed(lambda: fn(x, y, m, h, grid.npix))
            row = Row(n, label, nthreads, 1, seconds, n / seconds)
            if exact is not None:
                sigma = np.asarray(img, dtype=np.float64).T * to_cmpipe
                row.l1_mass = l1_distance(sigma, exact[0])
                row.mass_ratio = float(sigma.sum() / exact[0].sum())
            rows.append(row)
            print(f"  {label:>22}  {nthreads} thr  1 ch  {seconds:8.3f} s  {n / seconds / 1e6:8.2f} M/s", flush=True)
    return rows, compile_s


# ----------------------------------------------------------------------------------------------
# 6. report
# ----------------------------------------------------------------------------------------------
def _rate(rows: list[Row], n: int, backend: str, threads: int, channels: int = 1) -> float | None:
    for r in rows:
        if (r.n, r.backend, r.threads, r.channels) == (n, backend, threads, channels):
            return r.particles_per_s
    return None


def speed_ratios(rows: list[Row], n: int, threads: int) -> dict[str, float | None]:
    """cmpipe fast / swiftsimio fast particle rates on 1 channel, per core and on all cores, and
    cmpipe fast / the previous fast per core."""
    a, b = _rate(rows, n, "fast", 1), _rate(rows, n, PREVIOUS, 1)
    out = {"vs_previous_per_core": a / b if a and b else None}
    for key, ours, theirs in (("per_core", 1, "swift-fast"), ("all_cores", threads, "swift-fast-par")):
        a, b = _rate(rows, n, "fast", ours), _rate(rows, n, theirs, 1 if key == "per_core" else threads)
        out[key] = a / b if a and b else None
    return out


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    """The results as aligned plain text."""
    header = ("N", "backend", "threads", "channels", "particles/s", "L1 vs exact", "mass/exact")
    lines = [
        (f"{r.n:.0e}", r.backend, str(r.threads), str(r.channels), f"{r.particles_per_s:.3e}",
         _fmt(r.l1_mass, ".4%"), _fmt(r.mass_ratio, ".6f"))
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    for line in lines:
        print("  ".join(c.rjust(w) for c, w in zip(line, widths)))


def print_smoothing(smoothing: list[dict]) -> None:
    """Smoothing-length timings as aligned plain text."""
    print(f"{'N':>6}  {'threads':>7}  {'H only [s]':>10}  {'H/s':>10}  {'H + rho [s]':>11}  {'(H+rho)/s':>10}")
    for s in smoothing:
        print(
            f"{s['n']:6.0e}  {s['threads']:7d}  {s['smoothing_lengths_s']:10.3f}  {s['smoothing_lengths_per_s']:10.3e}"
            f"  {s['with_density_s']:11.3f}  {s['with_density_per_s']:10.3e}"
        )


def goals(rows: list[Row], smoothing: list[dict], ratios: dict[int, dict]) -> list[str]:
    """One line per goal of the issue and size, saying whether it is met."""
    lines = []
    for n, ratio in ratios.items():
        l1 = next((r.l1_mass for r in rows if r.n == n and r.backend == "fast" and r.l1_mass is not None), None)
        per_core = ratio["per_core"]
        if per_core is None or l1 is None:
            verdict = "not measured (needs swiftsimio and exact)"
        else:
            met = per_core >= GOAL_SPEEDUP_PER_CORE and l1 <= GOAL_L1
            verdict = f"{'MET' if met else 'NOT MET'} ({per_core:.2f}x per core, L1 {l1:.3%})"
        lines.append(
            f"N={n:.0e}: fast >= {GOAL_SPEEDUP_PER_CORE:g}x swiftsimio 'fast' per core within {GOAL_L1:.1%} L1 of exact: {verdict}"
        )
    s = next((s for s in smoothing if s["n"] == GOAL_SMOOTHING_N), None)
    if s is None:
        verdict = f"not measured (N = {GOAL_SMOOTHING_N:.0e} not among --sizes)"
    else:
        met = s["smoothing_lengths_s"] <= GOAL_SMOOTHING_S
        verdict = f"{'MET' if met else 'NOT MET'} ({s['smoothing_lengths_s']:.2f} s on {s['threads']} threads)"
        if s["threads"] != 2:
            verdict += "; the goal is stated for 2 cores"
    lines.append(f"smoothing lengths of {GOAL_SMOOTHING_N:.0e} particles in <= {GOAL_SMOOTHING_S:g} s on 2 cores: {verdict}")
    return lines


# ----------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1e5,1e6,4e6", help="comma-separated particle counts")
    p.add_argument("--npix", type=int, default=128, help="pixels per map side")
    p.add_argument("--pixel-mpc", type=float, default=0.1, help="pixel size [Mpc]")
    p.add_argument("--threads", type=int, default=default_num_threads(), help="threads for 'all cores' (default: all)")
    p.add_argument("--seed", type=int, default=12345, help="seed of the particle sets")
    p.add_argument("--skip-exact-above", type=float, default=4e6, help="run the exact backend only up to this N")
    p.add_argument("--out", type=Path, default=None, help="write the results to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print its figures; returns the results written by ``--out``."""
    args = parse_args(argv)
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    threads = max(1, min(args.threads, default_num_threads()))
    grid = MapGrid(npix=args.npix, pixel_mpc=args.pixel_mpc, depth_mpc=args.npix * args.pixel_mpc)
    print(f"map {grid.npix}^2 x {grid.pixel_mpc} Mpc, slab {grid.depth_mpc} Mpc; {threads} threads; seed {args.seed}")
    t_start = time.perf_counter()
    rows: list[Row] = []
    smoothing, ratios, extras = [], {}, {}
    for n in sizes:
        print(f"\n=== N = {n:.0e} ===", flush=True)
        rng = np.random.default_rng([args.seed, n])
        pos = clustered_particles(n, grid.extent_mpc, rng)
        mass = np.full(n, 1e15 / n)  # Msun
        timing, support, density = bench_smoothing(pos, mass, threads)
        smoothing.append(timing)
        print(f"  smoothing lengths: {timing['smoothing_lengths_s']:.3f} s; with density: {timing['with_density_s']:.3f} s")
        quant = support_quantiles(support, grid.pixel_mpc)
        print("  H / pixel quantiles: " + "  ".join(f"{k} {v:.3g}" for k, v in quant.items()))
        weights = particle_weights(pos, mass, density, rng)
        compile_s = warm_up_cmpipe(pos, support, weights, grid)
        print("  first call (compile or cache load) [s]: " + "  ".join(f"{k} {v:.2f}" for k, v in compile_s.items()))
        n_rows, maps = bench_cmpipe(pos, support, weights, grid, threads, run_exact=n <= args.skip_exact_above)
        n_rows += bench_previous(pos, support, weights, grid, threads, maps)
        accuracy(n_rows, maps)
        s_rows, s_compile = bench_swiftsimio(pos, support, mass, grid, threads, maps.get("exact"))
        if s_compile:
            print("  swiftsimio first call [s]: " + "  ".join(f"{k} {v:.2f}" for k, v in s_compile.items()))
        rows += n_rows + s_rows
        ratios[n] = speed_ratios(rows, n, threads)
        print(f"  cmpipe fast / swiftsimio fast, 1 channel: per core {_fmt(ratios[n]['per_core'], '.2f')}x,"
              f" all cores {_fmt(ratios[n]['all_cores'], '.2f')}x (cmpipe projects 4 channels in one pass);"
              f" fast / {PREVIOUS} per core {_fmt(ratios[n]['vs_previous_per_core'], '.2f')}x")
        extras[n] = {"support_over_pixel": quant, "compile_s": {**compile_s, **s_compile}}
    total = time.perf_counter() - t_start

    print("\n=== projection ===")
    print_table(rows)
    print("(L1 vs exact and mass/exact: mass channel; swift-* rows project the mass channel only, and their"
          " L1 compares the same particles)")
    print("\n=== speed ratio cmpipe fast / swiftsimio fast, 1 channel (cmpipe does 4 channels in one pass) ===")
    for n, r in ratios.items():
        print(f"N={n:.0e}: per core {_fmt(r['per_core'], '.2f')}x, all {threads} cores {_fmt(r['all_cores'], '.2f')}x;"
              f" fast / {PREVIOUS} per core {_fmt(r['vs_previous_per_core'], '.2f')}x")
    print("\n=== smoothing lengths (k = 32) ===")
    print_smoothing(smoothing)
    print("\n=== goals ===")
    goal_lines = goals(rows, smoothing, ratios)
    print("\n".join(goal_lines))
    print(f"\ntotal time {total:.1f} s")

    results = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "threads": threads,
        "rows": [asdict(r) for r in rows],
        "smoothing": smoothing,
        "speed_ratio_fast_vs_swift_fast": {str(n): r for n, r in ratios.items()},
        "per_size": {str(n): e for n, e in extras.items()},
        "goals": goal_lines,
        "total_s": total,
    }
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()

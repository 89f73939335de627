"""Benchmark of the mock clusters: time and peak memory to make one halo and its maps.

For M200m = 10^13.5, 10^14.5 and 10^15.5 Msun/h at pair masses 1e10 and 1e9 Msun/h it makes
one mock halo with every realism knob of the config on (the ``demo`` config by default: 128 x 128
pixels of 0.1 Mpc, 12.8 Mpc deep), from a one-halo flat catalog in a +-0.005 dex window around
the mass, and times

1. ``MockHaloSource.load`` (particles, k-NN densities and temperatures);
2. ``prepare_halo_with_config`` plus one sightline (``sightline_maps_with_config``, all four
   channels).

Each case runs in a fresh subprocess (``python bench/mock.py --case LOG10M MPAIR``) that first
warms up numba on a tiny halo (10^12.5 Msun/h at 1e10, so compilation is not timed) and reports
its own peak resident set size, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (kilobytes on
Linux), after the warm-up (the baseline: interpreter, numpy, numba, astropy, colossus), after
``load`` and after the maps. The peak covers the whole process, so the figures are what one
worker needs. It prints figures and never asserts them: timings on a shared machine are noisy.

Run ``.venv/bin/python bench/mock.py --quick`` for the cases up to 1e6 particles per species
(skips 10^15.5 at 1e9, which takes minutes and several GB); ``--help`` lists the options.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

MASSES = (13.5, 14.5, 15.5)
PAIR_MASSES = (1e10, 1e9)
#: Half-width of the one-halo catalog's mass window [dex].
WINDOW_DEX = 0.005
#: --quick skips cases with more pairs than this inside R200m (M200m / m_pair).
QUICK_MAX_PAIRS = 1e6


def _config(config: str, log10_m: float, pair_mass: float, overrides: list[str]):
    from cmpipe.config import load_config

    return load_config(config, [
        "source.kind=mock", "catalog.mode=flat", "catalog.n_halos=1",
        f"catalog.log10_m_min_msun_h={log10_m - WINDOW_DEX}", f"catalog.log10_m_max_msun_h={log10_m + WINDOW_DEX}",
        f"mock.pair_mass_msun_h={pair_mass}", *overrides,
    ])


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(config: str, log10_m: float, pair_mass: float, overrides: list[str]) -> dict:
    """One case, in this process: warm-up, load, prepare + one sightline. Returns the figures."""
    from cmpipe.mapmaking.maps import prepare_halo_with_config, sightline_maps_with_config
    from cmpipe.stages.generate import map_settings
    from cmpipe.stages.source import mock_source

    warm_cfg = _config(config, 12.5, 1e10, overrides)
    warm = mock_source(warm_cfg)
    warm_settings = map_settings(warm_cfg)
    sightline_maps_with_config(prepare_halo_with_config(warm.load(0), warm_settings), warm_settings, None, 2)
    baseline = _maxrss_mb()

    cfg = _config(config, log10_m, pair_mass, overrides)
    src = mock_source(cfg)
    t0 = time.perf_counter()
    halo = src.load(0)
    t_load = time.perf_counter() - t0
    rss_load = _maxrss_mb()
    t0 = time.perf_counter()
    prepared = prepare_halo_with_config(halo, map_settings(cfg))
    t_prepare = time.perf_counter() - t0
    t0 = time.perf_counter()
    maps = sightline_maps_with_config(prepared, map_settings(cfg), None, 2)
    t_sightline = time.perf_counter() - t0
    return {
        "log10_m200m_msun_h": float(src.parameters(0)["log10_m200m_msun_h"]),
        "pair_mass_msun_h": pair_mass,
        "n_gas": int(halo.gas.n),
        "n_dm": int(halo.dm.n),
        "load_s": t_load,
        "prepare_s": t_prepare,
        "sightline_s": t_sightline,
        "maps_s": t_prepare + t_sightline,
        "rss_baseline_mb": baseline,
        "rss_after_load_mb": rss_load,
        "rss_peak_mb": _maxrss_mb(),
        "npix": int(maps.npix),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="demo", help="shipped config name or YAML (default: %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="config override (repeatable)")
    parser.add_argument("--masses", default=",".join(map(str, MASSES)), help="log10 M200m [Msun/h], comma-separated")
    parser.add_argument("--pair-masses", default=",".join(f"{m:g}" for m in PAIR_MASSES),
                        help="m_pair [Msun/h], comma-separated")
    parser.add_argument("--skip-above", type=float, default=float("inf"), metavar="N",
                        help="skip cases with more than N particle pairs inside R200m (M200m / m_pair)")
    parser.add_argument("--quick", action="store_true", help=f"--skip-above {QUICK_MAX_PAIRS:g}")
    parser.add_argument("--out", metavar="FILE.json", help="also save the results")
    parser.add_argument("--case", nargs=2, type=float, metavar=("LOG10M", "MPAIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.case is not None:  # the subprocess
        print(json.dumps(run_case(args.config, args.case[0], args.case[1], args.overrides)))
        return 0

    skip_above = min(args.skip_above, QUICK_MAX_PAIRS) if args.quick else args.skip_above
    masses = [float(m) for m in args.masses.split(",")]
    pairs = [float(m) for m in args.pair_masses.split(",")]
    header = (f"{'log10 M200m':>11} {'m_pair':>7} {'N_gas':>9} {'N_DM':>9} {'load s':>7} "
              f"{'maps s':>7} {'(prep':>7} {'+ 1 los)':>8} {'peak RSS MB':>11} {'(base':>6} {'load)':>6}")
    print(header)
    rows = []
    for pair in pairs:
        for m in masses:
            if 10.0**m / pair > skip_above:
                print(f"{m:>11.2f} {pair:>7.0e}  skipped ({10.0**m / pair:.1e} pairs > {skip_above:.1e})")
                continue
            cmd = [sys.executable, __file__, "--config", args.config, "--case", str(m), str(pair)]
            for o in args.overrides:
                cmd += ["--set", o]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                print(f"{m:>11.2f} {pair:>7.0e}  failed:\n{proc.stderr[-2000:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"{r['log10_m200m_msun_h']:>11.3f} {pair:>7.0e} {r['n_gas']:>9d} {r['n_dm']:>9d} {r['load_s']:>7.2f} "
                  f"{r['maps_s']:>7.2f} {r['prepare_s']:>7.2f} {r['sightline_s']:>8.2f} {r['rss_peak_mb']:>11.0f} "
                  f"{r['rss_baseline_mb']:>6.0f} {r['rss_after_load_mb']:>6.0f}", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

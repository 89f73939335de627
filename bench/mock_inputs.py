"""How much the inputs (y, S_X) alone say about the targets (gas, DM), older mock against the issue-16 one.

For the first ``--halos`` halos of the ``demo`` catalog (flat in log M200m, 10^13.5-10^15 Msun/h,
m_pair 1e10 Msun/h, 128 px of 0.1 Mpc, 12.8 Mpc deep, sightline along z, no rotation), the maps
of the mock with the issue-16 knobs off (``mock.transition``, ``observed_baryons``,
``neighbours``, ``gas_clumps`` and ``substructure`` false: the older model) and with every
default knob on; per halo the cross-correlation ``r(k)`` (:func:`cmpipe.evaluation.metrics.spectra.
bias_and_correlation`) of y and of S_X against the true gas and DM maps, averaged over
``k < k_s = sqrt(k_F k_Nyq)`` (large) and ``k >= k_s`` (small) with weights in ln k
(:func:`cmpipe.evaluation.metrics.spectra.log_k_weights`), on linear maps (``--log``: log10 maps, as the
store normalises them). Prints the median over halos and the lowest halo. An ``r`` near 1 means
the input alone fixes the target's shape on those scales. Prints figures, asserts nothing.

Run: ``.venv/bin/python bench/mock_inputs.py [--halos 8] [--log]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

#: The issue-16 knobs off: the older mock.
OLDER = ["mock.transition=false", "mock.observed_baryons=false", "mock.neighbours=false",
         "mock.gas_clumps=false", "mock.substructure=false"]
PAIRS = (("sz_y", "gas_sigma"), ("xray_sb", "gas_sigma"), ("sz_y", "dm_sigma"), ("xray_sb", "dm_sigma"))


def halo_correlations(maps, pixel_mpc: float, npix: int, log: bool) -> list[float]:
    """``[r_large, r_small]`` for each pair of :data:`PAIRS`, concatenated."""
    from cmpipe.evaluation.metrics.spectra import bias_and_correlation, log_k_weights, scale_split_k

    def field(name: str) -> np.ndarray:
        m = maps.channel(name)
        return np.log10(np.maximum(m, 1e-30)) if log else m

    out = []
    for a, b in PAIRS:
        k, _, r = bias_and_correlation(field(a), field(b), pixel_mpc)
        w, large = log_k_weights(k), k < scale_split_k(npix, pixel_mpc)
        out += [float(np.sum(w[large] * r[large]) / w[large].sum()),
                float(np.sum(w[~large] * r[~large]) / w[~large].sum())]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--halos", type=int, default=8, help="halos of the demo catalog [count]")
    parser.add_argument("--log", action="store_true", help="correlate log10 maps instead of linear ones")
    args = parser.parse_args(argv)

    from cmpipe.config import load_config
    from cmpipe.mapmaking.maps import prepare_halo_with_config, sightline_maps_with_config
    from cmpipe.stages.generate import map_settings
    from cmpipe.stages.source import mock_source

    header = " ".join(f"{a[:4]}-{b[:3]} L/S" for a, b in PAIRS)
    print(f"r(k) of the inputs against the targets, median over {args.halos} halos "
          f"({'log10' if args.log else 'linear'} maps): {header}")
    for name, extra in (("older mock", OLDER), ("issue-16 mock", [])):
        cfg = load_config("demo", [f"catalog.n_halos={args.halos}", *extra])
        src, settings = mock_source(cfg), map_settings(cfg)
        start = time.perf_counter()
        rows = np.array([
            halo_correlations(sightline_maps_with_config(prepare_halo_with_config(src.load(hid), settings), settings, None, 2),
                              cfg.maps.pixel_mpc, cfg.maps.npix, args.log)
            for hid in src.halo_ids()
        ])
        med = " ".join(f"{x:.4f}" for x in np.median(rows, axis=0))
        print(f"  {name:<14} {med}   lowest y-gas large {rows[:, 0].min():.4f}   ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

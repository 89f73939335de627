"""Golden maps: one analytic and one mock halo, all five channels, against committed files.

Oracle: ``tests/golden/*.npz``, made by this very code path (:func:`_make_maps`) and committed;
a change of any number in the chain halo -> smoothing -> projection -> instrument shows here.
The files are regenerated only on purpose: ``CMPIPE_REGENERATE_GOLDEN=1 pytest
tests/test_golden_maps.py`` rewrites them (then review and commit the diff).

Tolerance: rtol 1e-6 with an absolute floor of 1e-6 times each channel's largest value. On the
machine that made the files the maps are bit-identical (one thread, seeded); 1e-6 leaves room
for another CPU's or numpy's last-bit differences in libm, the FFT of the beam and numba's
vectorisation (float32 itself resolves 6e-8), while any real change of the maps is orders of
magnitude larger.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cmpipe.config import load_config
from cmpipe.mapmaking.instrument import apply_instrument
from cmpipe.mapmaking.maps import prepare_halo_with_config, random_rotation, sightline_maps_with_config
from cmpipe.stages.source import open_source
from cmpipe.stages.generate import map_settings

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("CMPIPE_REGENERATE_GOLDEN") == "1"
RTOL = 1e-6

#: 32 x 32 maps of 0.2 Mpc, 6.4 Mpc deep, every channel, one thread, every instrument effect on.
TINY = [
    "maps.npix=32", "maps.pixel_mpc=0.2", "maps.depth_mpc=6.4", "sph.num_threads=1",
    "maps.channels=[sz_y, xray_sb, gas_sigma, dm_sigma, kappa]",
    "instrument.beam_fwhm_arcmin=1.0", "instrument.y_white_noise=1e-6", "instrument.y_red_noise=1e-6",
    "instrument.xray_exposure_s=1e4", "instrument.mask_sources=2", "instrument.mask_radius_mpc=0.3",
    "instrument.kappa_shape_noise=0.3",
]
CASES = {
    "analytic": ["source.kind=analytic", "source.analytic_log10_m200m_msun_h=[14.0]"],
    "mock": ["source.kind=mock", "catalog.n_halos=2", "catalog.log10_m_min_msun_h=13.8",
             "catalog.log10_m_max_msun_h=14.0"],
}


def _make_maps(case: str) -> dict[str, np.ndarray]:
    """Halo 0 of the case's source, rotated by ``random_rotation(7)`` and seen along axis 1:
    the clean maps and the observed ones (image seed 11), float32 as in the store."""
    cfg = load_config("demo", [*TINY, *CASES[case]])
    halo = open_source(cfg).load(0)
    prepared = prepare_halo_with_config(halo, map_settings(cfg))
    clean = sightline_maps_with_config(prepared, map_settings(cfg), random_rotation(7), 1).data
    observed = apply_instrument(clean, cfg.maps.channels, cfg.instrument, cfg.cosmology, cfg.lensing, cfg.maps.pixel_mpc, 11)
    return {"clean": clean.astype(np.float32), "observed": observed.astype(np.float32),
            "channels": np.array(cfg.maps.channels)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_maps_match_the_golden_files(case):
    """Oracle: the committed golden maps (rtol 1e-6, see the module docstring)."""
    fresh = _make_maps(case)
    path = GOLDEN / f"maps_{case}.npz"
    if REGENERATE:
        GOLDEN.mkdir(exist_ok=True)
        np.savez_compressed(path, **fresh)
    with np.load(path, allow_pickle=False) as golden:
        assert list(golden["channels"]) == list(fresh["channels"])
        for key in ("clean", "observed"):
            want, got = golden[key], fresh[key]
            assert got.shape == want.shape == (5, 32, 32) and got.dtype == want.dtype == np.float32
            assert np.all(np.isfinite(want)) and np.any(want != 0)
            for c, name in enumerate(golden["channels"]):
                floor = RTOL * float(np.abs(want[c]).max())
                np.testing.assert_allclose(got[c], want[c], rtol=RTOL, atol=floor, err_msg=f"{case} {key} {name}")

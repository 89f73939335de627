"""The demo's test split is worth summarising, and ``generate.test_images_per_halo`` (catalog and
plan only: no particles, no maps).

Oracles: counts of the shipped demo plan (issue 15: at least 20 distinct test halos, at least 8
in each mass bin split at the log midpoint of the tested range, about the old 24 test images,
no fewer training images than the old 204); the plan of the same catalog without the cap, whose
other splits it must equal row for row.
"""

from __future__ import annotations

import types

import numpy as np
import pyarrow as pa
import pytest

from cmpipe.config import ConfigError, load_config
from cmpipe.stages.catalog import catalog_table
from cmpipe.mapmaking.plan import SPLIT_NAMES, make_plan

TEST = SPLIT_NAMES.index("test")


def _halos(plan, split: int) -> tuple[np.ndarray, np.ndarray]:
    sel = plan["split"].to_numpy() == split
    ids, first = np.unique(plan["halo_id"].to_numpy()[sel], return_index=True)
    return ids, plan["log10_m200m_msun_h"].to_numpy()[sel][first]


def test_demo_plan_has_enough_test_halos_in_each_mass_bin():
    cfg = load_config("demo")
    plan = make_plan(catalog_table(cfg), cfg.generate)
    ids, logm = _halos(plan, TEST)
    ev = cfg.evaluate
    tested = (logm >= ev.test_log10_m_min_msun_h) & (logm < ev.test_log10_m_max_msun_h)
    mid = 0.5 * (ev.test_log10_m_min_msun_h + ev.test_log10_m_max_msun_h)
    assert tested.sum() >= 20
    assert (tested & (logm < mid)).sum() >= 8 and (tested & (logm >= mid)).sum() >= 8
    n_test_images = int(np.sum(plan["split"].to_numpy() == TEST))
    assert n_test_images <= 28  # the demo's inference budget: ~24 images x 50 samples
    assert int(np.sum(plan["split"].to_numpy() == SPLIT_NAMES.index("train"))) >= 204


def _gen(**kw):
    base = dict(images_per_0p1dex=30, max_rotations_per_halo=4, axes_per_rotation=3,
                split_fractions=(0.6, 0.1, 0.3), chunk_images=8, seed=0, test_images_per_halo=0)
    return types.SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("cap", [1, 2, 4])
def test_test_images_per_halo_caps_only_the_test_halos(cap):
    rng = np.random.default_rng(1)
    logm = np.concatenate([13.5 + 0.3 * rng.random(60), [14.55, 14.56]])  # rare massive halos: 4 rotations
    catalog = pa.table({"halo_id": np.arange(len(logm)), "log10_m200m_msun_h": logm})
    full, capped = make_plan(catalog, _gen()), make_plan(catalog, _gen(test_images_per_halo=cap))
    per_halo = lambda plan, s: dict(zip(*np.unique(plan["halo_id"].to_numpy()[plan["split"].to_numpy() == s],  # noqa: E731
                                                   return_counts=True)))
    full_test, capped_test = per_halo(full, TEST), per_halo(capped, TEST)
    assert set(full_test) == set(capped_test) and max(full_test.values()) > cap
    assert all(capped_test[h] == min(n, cap) for h, n in full_test.items())
    for s in (0, 1):  # the other splits: the same images
        assert per_halo(full, s) == per_halo(capped, s)
    # the kept images are the first of each halo: rotation 0's axes first, same seeds and matrices
    key = lambda plan: {(h, r, a): (sd, s) for h, r, a, sd, s in zip(*(plan[c].to_pylist() for c in (  # noqa: E731
        "halo_id", "rotation_index", "axis", "seed", "split")))}
    full_rows, capped_rows = key(full), key(capped)
    assert all(full_rows[k] == v for k, v in capped_rows.items())
    for (h, r, a), (_, s) in capped_rows.items():
        if s == TEST:
            assert r * 3 + a < cap
    np.testing.assert_array_equal(capped["image_index"].to_numpy(), np.arange(capped.num_rows))
    np.testing.assert_array_equal(capped["chunk_index"].to_numpy(), np.arange(capped.num_rows) // 8)


def test_test_images_per_halo_must_not_be_negative():
    with pytest.raises(ConfigError, match="generate.test_images_per_halo must be >= 0"):
        load_config("demo", ["generate.test_images_per_halo=-1"])

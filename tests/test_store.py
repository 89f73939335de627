"""The sightline plan and the Zarr image store (Ray-free).

Oracles: the plan's per-bin counts against the closed form of the flattening (module docstring
of :mod:`cmpipe.mapmaking.plan`); the store's maps against a direct library computation
(``prepare_halo_with_config`` + ``sightline_maps_with_config`` with the plan's rotation and axis)
to float32 precision (rtol 1e-6); the normalisation against numpy over the train images
(exact up to float64 rounding, rtol 1e-12); resumability by a content checksum of every array
and attribute, which must be identical.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import types

import h5py
import numpy as np
import pyarrow as pa
import pytest
import xarray as xr
import zarr

from cmpipe.cli import main
from cmpipe.config import load_config
from cmpipe.mapmaking.maps import prepare_halo_with_config, sightline_maps_with_config
from cmpipe.stages.source import open_source
from cmpipe.mapmaking.plan import PLAN_SCHEMA, make_plan, mass_bins, plan_rotations, read_plan, write_plan
from cmpipe.store import (
    StoreError,
    missing_chunks,
    open_store,
    validate_store,
)
from cmpipe.stages.generate import create_store_for, generate_serial, map_settings, plan_path
from tiny_stores import GENERATION_MASSES, GENERATION_STORE

MASSES = GENERATION_MASSES
OVERRIDES = [*GENERATION_STORE, "generate.chunk_images=4"]


def _cfg(*extra: str):
    return load_config("demo", [*OVERRIDES, *extra])


def _gen(**kw):
    base = dict(images_per_0p1dex=30, max_rotations_per_halo=4, axes_per_rotation=3,
                split_fractions=(0.8, 0.1, 0.1), chunk_images=16, seed=0)
    return types.SimpleNamespace(**{**base, **kw})


def _checksum(path) -> str:
    """SHA-256 over every array's bytes and the root attributes (content, not file layout)."""
    group = zarr.open_group(str(path), mode="r", use_consolidated=False)
    h = hashlib.sha256()
    for name in sorted(group.array_keys()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(group[name][...]).tobytes())
    h.update(json.dumps(dict(group.attrs), sort_keys=True).encode())
    return h.hexdigest()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    cfg = _cfg()
    path = tmp_path_factory.mktemp("store") / "images.zarr"
    summary = generate_serial(cfg, path)
    return cfg, path, summary


# ----------------------------------------------------------------------------- plan


def test_plan_is_flat_capped_and_split_by_halo(tmp_path):
    rng = np.random.default_rng(3)
    logm = np.concatenate([13.5 + 0.1 * rng.random(500), 14.0 + 0.1 * rng.random(5), [15.01]])
    catalog = pa.table({"halo_id": np.arange(len(logm)) * 7, "log10_m200m_msun_h": logm})
    gen = _gen()
    plan = make_plan(catalog, gen)
    assert plan.schema.equals(PLAN_SCHEMA)
    assert plan.schema.field("log10_m200m_msun_h").metadata[b"unit"] == b"dex(solMass / littleh)"
    need = math.ceil(gen.images_per_0p1dex / gen.axes_per_rotation)
    bins, n_halos = np.unique(mass_bins(logm), return_counts=True)
    per_bin = dict(zip(*np.unique(plan["mass_bin"].to_numpy(), return_counts=True)))
    for b, n in zip(bins, n_halos):
        assert per_bin[b] == gen.axes_per_rotation * min(need, n * gen.max_rotations_per_halo)
    assert per_bin[150] == 3 * 4  # the lone massive halo: capped
    halo = plan["halo_id"].to_numpy()
    rot = plan["rotation_index"].to_numpy()
    split = plan["split"].to_numpy()
    for h in np.unique(halo):
        rows = halo == h
        assert len(np.unique(split[rows])) == 1
        assert rot[rows].max() < gen.max_rotations_per_halo
        # each rotation: axes_per_rotation distinct axes, one seed, one matrix
        for r in np.unique(rot[rows]):
            sel = rows & (rot == r)
            assert sorted(plan["axis"].to_numpy()[sel]) == [0, 1, 2]
            assert len(np.unique(plan["seed"].to_numpy()[sel])) == 1
    # split fractions by halo: within one halo of the target per split
    first = np.unique(halo, return_index=True)[1]
    counts = np.bincount(split[first], minlength=3)
    assert np.all(np.abs(counts - len(first) * np.array(gen.split_fractions)) <= 1)
    # rotations are proper and reproducible from the seed column
    mats = plan_rotations(plan)
    np.testing.assert_allclose(mats @ mats.transpose(0, 2, 1), np.broadcast_to(np.eye(3), mats.shape), atol=1e-12)
    from cmpipe.mapmaking.maps import random_rotation

    np.testing.assert_array_equal(mats[0], random_rotation(int(plan["seed"][0].as_py())))
    # deterministic, and the Parquet round trip keeps schema and values
    assert make_plan(catalog, gen).equals(plan)
    back = read_plan(write_plan(plan, tmp_path / "plan.parquet"))
    assert back.equals(plan)


def test_plan_groups_each_chunk_by_few_halos():
    rng = np.random.default_rng(5)
    logm = 13.5 + rng.exponential(0.3, 300)
    catalog = pa.table({"halo_id": np.arange(300), "log10_m200m_msun_h": logm})
    gen = _gen(images_per_0p1dex=60, max_rotations_per_halo=7, chunk_images=16)
    plan = make_plan(catalog, gen)
    halo = plan["halo_id"].to_numpy()
    chunk = plan["chunk_index"].to_numpy()
    np.testing.assert_array_equal(chunk, np.arange(plan.num_rows) // gen.chunk_images)
    # all sightlines of a halo contiguous
    starts = np.flatnonzero(np.r_[True, halo[1:] != halo[:-1]])
    assert len(starts) == len(np.unique(halo))
    # (chunk, halo) pairs: at most one straddle per chunk boundary over the ideal
    sizes = np.unique(halo, return_counts=True)[1]
    pairs = len(set(zip(chunk.tolist(), halo.tolist())))
    ideal = int(np.sum(np.ceil(sizes / gen.chunk_images)))
    assert ideal <= pairs <= ideal + chunk.max()
    # no worse than the same halos in halo-id order
    naive = np.sort(halo, kind="stable")
    naive_pairs = len(set(zip(chunk.tolist(), naive.tolist())))
    assert pairs <= naive_pairs


# ----------------------------------------------------------------------------- store


def test_store_opens_with_zarr_and_xarray(store):
    cfg, path, summary = store
    assert summary["images"] == 18 and summary["chunks"] == 5 and summary["failures"] == []
    assert summary["images_per_s"] > 0
    assert validate_store(path) == {"images": 18, "chunks": 5, "missing_chunks": [], "failed_images": 0, "normalised": True}
    group = zarr.open_group(str(path), mode="r")
    assert group["maps"].shape == (18, 4, 32, 32) and group["maps"].dtype == np.float32
    assert group["maps"].shards == (4, 4, 32, 32)
    assert group.attrs["channels"] == list(cfg.maps.channels)
    assert group.attrs["pixel_mpc"] == 0.2 and group.attrs["depth_mpc"] == 6.4
    ds = xr.open_zarr(path)
    assert ds["maps"].dims == ("image", "channel", "y", "x")
    assert ds["rotation"].dims == ("image", "row", "col")
    assert ds["chunk_done"].dims == ("chunk",)
    assert plan_path(path).is_file()


def test_store_maps_equal_direct_library_computation(store):
    cfg, path, _ = store
    plan = read_plan(plan_path(path))
    group = open_store(path)
    np.testing.assert_array_equal(group["halo_id"][:], plan["halo_id"].to_numpy())
    np.testing.assert_array_equal(group["rotation"][:], plan_rotations(plan))
    source = open_source(cfg)
    maps = group["maps"][:]
    rotations = plan_rotations(plan)
    prepared = {}
    for i, (hid, axis) in enumerate(zip(plan["halo_id"].to_pylist(), plan["axis"].to_pylist())):
        if hid not in prepared:
            prepared[hid] = prepare_halo_with_config(source.load(hid), map_settings(cfg))
        direct = sightline_maps_with_config(prepared[hid], map_settings(cfg), rotations[i], axis).data.astype(np.float32)
        np.testing.assert_allclose(maps[i], direct, rtol=1e-6, atol=0)


def test_normalisation_matches_numpy_over_train(store):
    cfg, path, _ = store
    group = open_store(path)
    maps = group["maps"][:].astype(np.float64)
    train = maps[group["split"][:] == 0]
    norm = group.attrs["normalisation"]
    assert norm["kind"] == "log" and norm["n_images"] == len(train)
    for c, name in enumerate(cfg.maps.channels):
        x = train[:, c]
        floor = cfg.generate.log_floor_fraction * x.max()
        t = np.log10(np.maximum(x, floor))
        stats = norm["channels"][name]
        np.testing.assert_allclose([stats["floor"], stats["min"], stats["max"]], [floor, t.min(), t.max()], rtol=1e-12)


def test_resume_recomputes_only_missing_chunk(store, tmp_path):
    cfg, original, _ = store
    path = tmp_path / "images.zarr"
    shutil.copytree(original, path)
    reference = _checksum(original)
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    group["maps"][8:12] = 0.0
    group["chunk_done"][2] = 0
    assert missing_chunks(path) == [2]
    summary = generate_serial(cfg, path)
    assert summary["chunks_written"] == 1
    assert _checksum(path) == reference
    # a complete store: nothing to do, nothing changed
    again = generate_serial(cfg, path)
    assert again["chunks_written"] == 0 and again["images_per_s"] == 0.0
    assert _checksum(path) == reference


def test_other_config_is_refused(store, tmp_path):
    cfg, original, _ = store
    path = tmp_path / "images.zarr"
    shutil.copytree(original, path)
    other = _cfg("generate.seed=1")
    plan = make_plan(pa.table({"halo_id": [0], "log10_m200m_msun_h": [14.0]}), other.generate)
    with pytest.raises(StoreError, match="store fingerprint") as info:
        generate_serial(other, path)
    from cmpipe.stages.generate import store_fingerprint

    assert store_fingerprint(cfg) in str(info.value) and store_fingerprint(other) in str(info.value)
    fresh = create_store_for(path, plan, other, overwrite=True)
    assert fresh.attrs["n_images"] == plan.num_rows and missing_chunks(path) == list(range(fresh.attrs["n_chunks"]))


def test_bad_halo_is_recorded_and_cli_exits_nonzero(tmp_path, capsys):
    from cmpipe.physics.hdf5io import write_halo_hdf5

    cfg = _cfg()
    source = open_source(cfg)
    halos = tmp_path / "halos"
    halos.mkdir()
    for hid in source.halo_ids():
        write_halo_hdf5(halos / f"halo_{hid}.hdf5", source.load(hid), h=cfg.cosmology.h)
    bad = 5  # the lone halo of its bin: always planned
    with h5py.File(halos / f"halo_{bad}.hdf5", "r+") as f:
        coords = f["PartType0/Coordinates"]
        coords[0] = np.nan
    store_path = tmp_path / "out" / "images.zarr"
    status = main(["generate", "--serial", "--store", str(store_path), *[a for o in OVERRIDES for a in ("--set", o)],
                   "--set", "source.kind=hdf5", "--set", f"source.path={halos}", "--out", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert f"halo {bad}" in err
    group = open_store(store_path)
    assert missing_chunks(store_path) == []
    failures = group.attrs["failures"]
    assert {f["halo_id"] for f in failures} == {bad}  # one entry per chunk it spans
    rows = np.flatnonzero(group["halo_id"][:] == bad)
    assert sorted(i for f in failures for i in f["images"]) == rows.tolist()
    maps = group["maps"][:]
    assert np.all(np.isnan(maps[rows]))
    others = np.setdiff1d(np.arange(len(maps)), rows)
    assert np.all(np.isfinite(maps[others]))
    assert validate_store(store_path)["failed_images"] == len(rows)


@pytest.mark.parametrize(
    "override",
    ["generate.split_fractions=[0.8, 0.1]", "generate.split_fractions=[0.5, 0.1, 0.1]",
     "generate.axes_per_rotation=4", "generate.normalisation=sqrt", "generate.log_floor_fraction=0",
     "generate.chunk_images=0"],
)
def test_generate_section_is_validated(override):
    from cmpipe.config import ConfigError

    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.")):
        load_config("demo", [override])


def test_store_package_is_pure_io():
    """Layering (issue 18): the image store's modules import nothing from the config, physics,
    SPH, map-making, stages or pipeline layers, not even for type checking (AST of the sources)."""
    import ast
    from pathlib import Path

    import cmpipe.store

    root = Path(cmpipe.store.__file__).parent
    banned = ("cmpipe.config", "cmpipe.physics", "cmpipe.sph", "cmpipe.mapmaking", "cmpipe.stages", "cmpipe.pipeline")
    for name in ("__init__.py", "schema.py", "zarr_store.py"):
        for node in ast.walk(ast.parse((root / name).read_text())):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            elif isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                continue
            assert not [m for m in modules if m.startswith(banned)], f"{name} imports {modules}"

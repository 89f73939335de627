"""CF-style xarray stores (issue 21): ``xarray.open_zarr`` alone opens ``images.zarr`` and
``posterior.zarr`` into Datasets with the documented coordinates and units
(:mod:`cmpipe.store.schema`, :mod:`cmpipe.store.posterior`), selection by channel name works,
and stores of the previous schema version are read (or refused when they would be written),
naming the versions.

Oracles: the raw Zarr arrays (a selection by name equals the array sliced by position, bit for
bit), the plan table (per-image coordinates), the pixel-centre formula of
:class:`cmpipe.sph.projection.MapGrid`, block means of the store's maps (the posterior's
``truth``, matched through the ``image`` coordinate, float32 rtol 1e-6), and the group's own
metadata (the consolidated copy equals it after the last write). One tiny serial generate, two
training steps and a serial inference without baselines (about 12 s).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr
import zarr
from tiny_stores import inference_config, make_run, make_store

from cmpipe.mapmaking.plan import read_plan
from cmpipe.store.schema import CHANNEL_UNITS, SPLIT_CODES, STORE_SCHEMA_VERSION

IMAGE_COORDS = {"halo_id", "log10_m200m_msun_h", "rotation_index", "axis", "split"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """(config, image store, results directory) of a tiny serial generate + train + infer."""
    from cmpipe.stages.infer import run as infer_run

    cfg = inference_config()
    root = tmp_path_factory.mktemp("cf")
    store = make_store(cfg, root)
    run = make_run(cfg, store, root)
    infer_run(cfg, {"store": store, "run": run, "results": root / "results"}, baselines=())
    return cfg, store, root / "results"


def _consolidated_is_current(path) -> None:
    """The consolidated metadata (what xarray reads) equals the group's own: attributes and every
    array's metadata (refreshed after the last write)."""
    fresh = zarr.open_group(str(path), mode="r", use_consolidated=False)
    consolidated = zarr.open_group(str(path), mode="r", use_consolidated=True)
    assert consolidated.metadata.consolidated_metadata is not None
    assert dict(consolidated.attrs) == dict(fresh.attrs)
    assert sorted(consolidated.array_keys()) == sorted(fresh.array_keys())
    as_json = lambda a: json.dumps(a.metadata.to_dict(), sort_keys=True, default=str)  # noqa: E731 (NaN fill: NaN)
    for name in fresh.array_keys():
        assert as_json(consolidated[name]) == as_json(fresh[name]), name


def _check_units(ds: xr.Dataset) -> None:
    """Every variable has a long_name; every units attribute parses in astropy (littleh enabled)."""
    import astropy.cosmology.units as cu
    import astropy.units as u

    with u.add_enabled_units(cu):
        for name, var in ds.variables.items():
            assert var.attrs.get("long_name"), name
            if "units" in var.attrs:
                u.Unit(var.attrs["units"], parse_strict="raise")


def test_image_store_opens_with_plain_xarray(outputs):
    cfg, store, _ = outputs
    ds = xr.open_zarr(store)  # consolidated metadata: no warning (warnings are errors)
    group = zarr.open_group(str(store), mode="r")
    assert group.attrs["cmpipe_store_schema_version"] == STORE_SCHEMA_VERSION == 2
    assert set(ds.indexes) == {"image", "channel", "x", "y"}
    assert IMAGE_COORDS | {"channel_units"} <= set(ds["maps"].coords)
    assert list(ds["channel"].values) == list(cfg.maps.channels)
    assert {c: ds["channel_units"].sel(channel=c).item() for c in cfg.maps.channels} == \
        {c: CHANNEL_UNITS[c] for c in cfg.maps.channels} == group.attrs["channel_units"]
    # selection by name is the raw array sliced by position, bit for bit
    gas = ds["maps"].sel(channel="gas_sigma")
    assert gas.dims == ("image", "y", "x")
    np.testing.assert_array_equal(gas.values, group["maps"][:, list(cfg.maps.channels).index("gas_sigma")])
    # pixel centres [Mpc] of MapGrid
    npix, pixel = cfg.maps.npix, cfg.maps.pixel_mpc
    centres = (np.arange(npix) + 0.5) * pixel - 0.5 * npix * pixel
    for axis in ("x", "y"):
        np.testing.assert_allclose(ds[axis].values, centres, rtol=0, atol=1e-12)
        assert ds[axis].attrs["units"] == "Mpc"
    # per-image coordinates are the plan's
    plan = read_plan(store.parent / "plan.parquet")
    np.testing.assert_array_equal(ds["image"].values, plan["image_index"].to_numpy())
    for name in IMAGE_COORDS:
        np.testing.assert_array_equal(ds[name].values, plan[name].to_numpy())
    assert ds["split"].attrs["flag_meanings"].split() == list(SPLIT_CODES)
    test = ds["maps"].isel(image=ds["split"].values == SPLIT_CODES["test"])
    assert test.sizes["image"] == int((plan["split"].to_numpy() == SPLIT_CODES["test"]).sum())
    assert "units" not in ds["maps"].attrs  # channels differ: channel_units holds each
    assert ds["log10_m200m_msun_h"].attrs["units"] == "dex(solMass / littleh)"
    _check_units(ds)
    _consolidated_is_current(store)
    import cmpipe

    xr.testing.assert_identical(cmpipe.open_store(store), ds)


def test_posterior_store_opens_with_plain_xarray(outputs):
    cfg, store, results = outputs
    post = xr.open_zarr(results / "posterior.zarr")
    maps = xr.open_zarr(store)
    assert zarr.open_group(str(results / "posterior.zarr"), mode="r").attrs["cmpipe_posterior_schema_version"] == 2
    assert set(post.indexes) == {"image", "target", "condition_channel", "x", "y"}
    assert post["mean"].dims == post["truth"].dims == post["std"].dims == ("image", "target", "y", "x")
    assert post["condition"].dims == ("image", "condition_channel", "y", "x")
    assert list(post["target"].values) == ["gas_sigma", "dm_sigma"]
    assert list(post["condition_channel"].values) == ["sz_y", "xray_sb"]
    assert post["mean"].attrs["units"] == "1" and "units" not in post["condition"].attrs
    assert post["condition_units"].sel(condition_channel="xray_sb").item() == "erg s-1 cm-2 sr-1"
    assert list(post["target_units"].values) == ["1", "1"]
    assert IMAGE_COORDS - {"split"} | {"image_index"} <= set(post["mean"].coords)
    np.testing.assert_array_equal(post["image"].values, post["image_index"].values)
    # the image coordinate is the image store's: per-image coordinates and maps line up by label
    on_store = maps.sel(image=post["image"])
    for name in IMAGE_COORDS - {"split"}:
        np.testing.assert_array_equal(post[name].values, on_store[name].values)
    assert bool((on_store["split"] == SPLIT_CODES["test"]).all())
    factor = cfg.maps.npix // cfg.model.resolution
    gas = on_store["maps"].sel(channel="gas_sigma").coarsen(x=factor, y=factor).mean()
    np.testing.assert_allclose(post["truth"].sel(target="gas_sigma").values, gas.values, rtol=1e-6, atol=0)
    np.testing.assert_allclose(post["x"].values, maps["x"].coarsen(x=factor).mean().values, rtol=0, atol=1e-12)
    xray = post["condition"].sel(condition_channel="xray_sb")
    assert xray.dims == ("image", "y", "x") and bool(np.isfinite(xray.values).all())
    assert bool(post["done"].values.all())
    _check_units(post)
    _consolidated_is_current(results / "posterior.zarr")
    import cmpipe

    xr.testing.assert_identical(cmpipe.open_posterior(results), post)


def _as_version_1_store(store, path) -> None:
    """A copy of ``store`` as schema version 1 wrote it: no coordinate arrays, no ``coordinates``."""
    shutil.copytree(store, path)
    for name in ("image", "channel", "channel_units", "x", "y"):
        shutil.rmtree(path / name)
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    del group["maps"].attrs["coordinates"]
    group.attrs["cmpipe_store_schema_version"] = 1
    from cmpipe.store.zarr_store import consolidate

    consolidate(path)


def test_version_1_image_store_is_read_and_never_written(outputs, tmp_path):
    import cmpipe
    from cmpipe.store import StoreError, open_store, validate_store

    _, store, _ = outputs
    old = tmp_path / "old.zarr"
    _as_version_1_store(store, old)
    assert validate_store(old)["images"] == open_store(store).attrs["n_images"]  # train / infer read it
    ds = cmpipe.open_store(old)  # given the coordinates a version-2 store carries
    np.testing.assert_array_equal(ds["maps"].sel(channel="dm_sigma").values,
                                  xr.open_zarr(store)["maps"].sel(channel="dm_sigma").values)
    np.testing.assert_array_equal(ds["x"].values, xr.open_zarr(store)["x"].values)
    with pytest.raises(StoreError, match=r"store schema version 1; this cmpipe reads it but writes only version 2"):
        open_store(old, mode="r+")
    zarr.open_group(str(old), mode="r+", use_consolidated=False).attrs["cmpipe_store_schema_version"] = 99
    with pytest.raises(StoreError, match=r"store schema version 99; this cmpipe reads versions 1, 2"):
        cmpipe.open_store(old)


def _version_1_posterior(results, m: int = 3, r: int = 4) -> None:
    """``results/posterior.zarr`` in the layout of schema version 1 (one ``channel`` dimension)."""
    group = zarr.open_group(str(results / "posterior.zarr"), mode="w", zarr_format=3)
    for name, dtype in (("image_index", "int64"), ("halo_id", "int64"), ("log10_m200m_msun_h", "float64")):
        group.create_array(name, shape=(m,), chunks=(m,), dtype=dtype, dimension_names=["image"])[:] = np.arange(m)
    rng = np.random.default_rng(0)
    for name in ("truth", "condition", "mean", "std"):
        arr = group.create_array(name, shape=(m, 2, r, r), chunks=(1, 2, r, r), dtype="float32",
                                 fill_value=np.nan, dimension_names=["image", "channel", "y", "x"])
        arr[...] = rng.random((m, 2, r, r), dtype=np.float32)
    group.create_array("done", shape=(m,), chunks=(1,), dtype="uint8", fill_value=0, dimension_names=["image"])[:] = 1
    group.attrs.update({"cmpipe_posterior_schema_version": 1, "targets": ["gas_sigma", "dm_sigma"],
                        "conditions": ["sz_y", "xray_sb"], "resolution": r, "pixel_mpc": 0.5})


def test_version_1_posterior_store_is_read_and_not_continued(tmp_path):
    import cmpipe
    from cmpipe.store.posterior import PosteriorStoreError, open_or_create, open_posterior

    _version_1_posterior(tmp_path)
    raw = zarr.open_group(str(tmp_path / "posterior.zarr"), mode="r")
    post = cmpipe.open_posterior(tmp_path)  # the version-2 dimensions and coordinates
    assert post["mean"].dims == ("image", "target", "y", "x")
    assert post["condition"].dims == ("image", "condition_channel", "y", "x")
    np.testing.assert_array_equal(post["mean"].sel(target="dm_sigma").values, raw["mean"][:, 1])
    np.testing.assert_array_equal(post["condition"].sel(condition_channel="sz_y").values, raw["condition"][:, 0])
    np.testing.assert_allclose(post["x"].values, [-0.75, -0.25, 0.25, 0.75], rtol=0, atol=1e-12)
    assert open_posterior(tmp_path, require_complete=True).attrs["cmpipe_posterior_schema_version"] == 1
    with pytest.raises(PosteriorStoreError, match=r"posterior schema version 1; this cmpipe reads versions 1, 2 "
                                                  r"and writes 2"):
        open_posterior(tmp_path, writable=True)
    meta = {"image_index": np.arange(3), "halo_id": np.arange(3), "log10_m200m_msun_h": np.arange(3.0)}
    with pytest.raises(PosteriorStoreError, match=r"posterior schema version 1; this cmpipe continues only version 2"):
        open_or_create(tmp_path, meta, {"resolution": 4, "n_samples": 2, "pixel_mpc": 0.5})

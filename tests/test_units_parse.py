"""Every unit string cmpipe writes parses in astropy and means what it says (issue 21).

The strings are collected from real outputs of a tiny run (a catalog, a serial generate with its
plan, two training steps, a serial inference with its baselines: every Parquet field's ``unit``
and astropy header, every Zarr array's ``units``, the stores' ``channel_units`` and
``normalisation.totals_units``) and from the schema definitions. Little h is astropy's
``littleh`` (:mod:`astropy.cosmology.units`), never ``h``, which astropy reads as the hour.

Oracles: astropy's parser (``parse_strict="raise"``); astropy's own equivalency ``with_H0`` for
the value of one ``solMass / littleh`` (1 / h Msun, rel 1e-12); the Parquet columns as pyarrow
reads them (``Table.read`` changes no value). About 14 s.
"""

from __future__ import annotations

import json

import astropy.cosmology.units as cu
import astropy.units as u
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr
from tiny_stores import inference_config, make_run, make_store

from cmpipe.store.schema import LOG10_MSUN_H, MSUN_H


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """(config, root) of a tiny run: ``catalog.parquet``, ``images.zarr`` and ``plan.parquet``,
    ``run/``, ``results/`` (the model's and the baselines' tables, images and posterior stores)."""
    from cmpipe.config import load_config
    from cmpipe.physics.catalog import write_catalog
    from cmpipe.stages.catalog import catalog_table
    from cmpipe.stages.infer import run as infer_run

    cfg = inference_config()
    root = tmp_path_factory.mktemp("units")
    write_catalog(catalog_table(load_config("demo", ["catalog.n_halos=3"])), root / "catalog.parquet")
    store = make_store(cfg, root)
    infer_run(cfg, {"store": store, "run": make_run(cfg, store, root), "results": root / "results"})
    return cfg, root


def _parquet_units(path) -> dict[str, str]:
    """``file:field -> unit`` of one Parquet file: each field's ``unit`` and astropy's header."""
    import yaml

    schema = pq.read_schema(path)
    out = {f"{path.name}:{f.name}": f.metadata[b"unit"].decode()
           for f in schema if f.metadata and b"unit" in f.metadata}
    header = yaml.safe_load(schema.metadata[b"table_meta_yaml"])
    out.update({f"{path.name}:{c['name']} (astropy)": c["unit"] for c in header["datatype"] if "unit" in c})
    return out


def _zarr_units(path) -> dict[str, str]:
    """``store:array -> units`` of one Zarr group, with its ``channel_units`` and ``totals_units``."""
    group = zarr.open_group(str(path), mode="r")
    out = {f"{path.name}:{name}": arr.attrs["units"] for name, arr in group.arrays() if "units" in arr.attrs}
    for name in ("channel_units", "target_units", "condition_units"):
        if name in group:
            out.update({f"{path.name}:{name}[{i}]": str(v) for i, v in enumerate(group[name][:])})
    out.update({f"{path.name}:channel_units.{c}": v for c, v in group.attrs["channel_units"].items()})
    totals = (group.attrs.get("normalisation") or {}).get("totals_units", {})
    out.update({f"{path.name}:totals_units.{c}": v for c, v in totals.items()})
    return out


def _schema_units() -> dict[str, str]:
    """``schema:field -> unit`` of every schema cmpipe defines."""
    from cmpipe.mapmaking.plan import PLAN_SCHEMA
    from cmpipe.physics.catalog import CATALOG_SCHEMA
    from cmpipe.store.schema import CHANNEL_UNITS, VARIABLE_ATTRS
    from cmpipe.store.tables import IMAGES_SCHEMA, SCHEMAS

    out = {}
    for name, schema in {"catalog": CATALOG_SCHEMA, "plan": PLAN_SCHEMA, "images": IMAGES_SCHEMA, **SCHEMAS}.items():
        out.update({f"{name}:{f.name}": f.metadata[b"unit"].decode() for f in schema if b"unit" in f.metadata})
    out.update({f"store:{name}": a["units"] for name, a in VARIABLE_ATTRS.items() if "units" in a})
    out.update({f"channel:{c}": v for c, v in CHANNEL_UNITS.items()})
    return out


def _every_unit(root) -> dict[str, str]:
    units = _schema_units()
    for path in sorted(root.rglob("*.parquet")):
        units.update({f"{path.relative_to(root).parent}/{k}": v for k, v in _parquet_units(path).items()})
    for path in sorted(root.rglob("*.zarr")):
        units.update({f"{path.relative_to(root).parent}/{k}": v for k, v in _zarr_units(path).items()})
    return units


def test_every_unit_string_cmpipe_writes_parses(outputs):
    _, root = outputs
    units = _every_unit(root)
    found = set(units.values())
    # not vacuous: every kind of output was read
    assert {"Mpc", "Msun", "count", "s", "deg", "Mpc-1", "Mpc2", "erg s-1 cm-2 sr-1", "erg s-1 cm-2 sr-1 Mpc2",
            "1", "", MSUN_H, LOG10_MSUN_H} <= found
    assert any(k.startswith("results/baselines/") for k in units) and any("plan.parquet" in k for k in units)
    bad = {}
    for where, text in units.items():
        try:
            if "littleh" in text:  # astropy's cosmology units: enabled by the reader
                with u.add_enabled_units(cu):
                    u.Unit(text, parse_strict="raise")
            else:
                u.Unit(text, parse_strict="raise")
        except ValueError as exc:
            bad[where] = f"{text!r}: {exc}"
    assert not bad, json.dumps(bad, indent=1)
    # no hour anywhere: a little h written as "h" would parse as one
    with u.add_enabled_units(cu):
        for where, text in units.items():
            unit = u.Unit(text)
            assert u.hour not in getattr(unit, "physical_unit", unit).bases, where


def test_little_h_means_little_h(outputs):
    """``Msun/h`` is solar masses per hour in astropy; cmpipe's ``solMass / littleh`` is 1/h Msun."""
    cfg, root = outputs
    assert u.Unit("Msun/h").is_equivalent(u.solMass / u.s)  # why cmpipe never writes it
    h = cfg.cosmology.h
    with u.add_enabled_units(cu):
        one = (1.0 * u.Unit(MSUN_H)).to(u.solMass, cu.with_H0(100 * h * u.km / u.s / u.Mpc))
        assert one.value == pytest.approx(1.0 / h, rel=1e-12)
        log_m = u.Dex(14.0, u.Unit(LOG10_MSUN_H))
        assert log_m.physical.to(u.solMass, cu.with_H0(100 * h * u.km / u.s / u.Mpc)).value == \
            pytest.approx(1e14 / h, rel=1e-12)


def test_astropy_table_read_picks_up_the_units(outputs):
    from astropy.table import Table

    from cmpipe.store.tables import read_table

    _, root = outputs
    part = sorted((root / "results" / "tables" / "clusters").glob("part-*.parquet"))[0]
    with u.add_enabled_units(cu):
        table = Table.read(part)  # no warning (warnings are errors): string widths are in the header too
        catalog = Table.read(root / "catalog.parquet")
        images = Table.read(root / "results" / "images.parquet")
    assert table["mass_true_msun"].unit == u.solMass and table["r200m_mpc"].unit == u.Mpc
    assert table["log10_m200m_msun_h"].unit == u.dex(u.solMass / cu.littleh)
    assert table["seconds"].unit == u.s and table["mass_true_msun"].description == "true mass in the map"
    assert catalog["m200m_msun_h"].unit == u.solMass / cu.littleh
    assert catalog["gas_misalignment_deg"].unit == u.deg
    assert images["log10_m200m_msun_h"].unit == u.dex(u.solMass / cu.littleh)
    arrow = pq.read_table(part)
    for name in ("mass_true_msun", "log10_m200m_msun_h", "channel", "image_index"):
        np.testing.assert_array_equal(np.asarray(table[name]), arrow[name].to_numpy(zero_copy_only=False))
    # the spectra's compared-map powers have no one unit (it depends on the row): none is claimed
    spectra = read_table(root / "results", "spectra")  # parts with their headers still concatenate
    assert b"unit" not in spectra.schema.field("p_other").metadata
    assert spectra.schema.field("p_true").metadata[b"unit"] == b"Mpc2"

"""The halo catalog (``cmpipe.physics.catalog``), its figure and ``cmpipe catalog``.

Every test names its oracle and tolerance. Statistical tests use seeded catalogs (fixed
seeds, so they are deterministic) and bounds of 4 sigma, or KS p-values > 1e-3. colossus
writes nothing to the home directory: the cosmology is built with persistence off and the
catalog keeps colossus' concentration tables in memory (checked below).
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats
from scipy.integrate import cumulative_simpson

from cmpipe.cli import main
from cmpipe.config import CatalogConfig, Config, ConfigError, config_fingerprint, load_config
from cmpipe.physics import catalog as cat
from cmpipe.physics.cosmology import colossus_cosmology, mean_densities
from cmpipe.stages.catalog import catalog_config, catalog_table

N_STAT = 2000


def _cfg(**catalog) -> Config:
    return Config(catalog=CatalogConfig(**catalog))


@pytest.fixture(scope="module")
def box_cfg() -> Config:
    return _cfg(n_halos=N_STAT, seed=11)


@pytest.fixture(scope="module")
def box(box_cfg) -> dict[str, np.ndarray]:
    """A 2000-halo box-mode catalog over the paper's bounds, as numpy columns."""
    table = catalog_table(box_cfg)
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _same(a, b) -> bool:
    """Exact equality, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"n_halos": 0},
        {"log10_m_min_msun_h": 15.0, "log10_m_max_msun_h": 14.0},
        {"log10_m_max_msun_h": 18.0},
        {"mode": "volume"},
        {"seed": -1},
        {"concentration_scatter_dex": -0.1},
        {"merger_fraction": 1.5},
    ],
)
def test_config_rejects_out_of_range(bad):
    """Oracle: the documented ranges; the error names the dotted key."""
    with pytest.raises(ConfigError, match=r"catalog\."):
        CatalogConfig(**bad)


def test_shipped_catalog_sections():
    """Oracle: the brief's values (demo: 128 halos flat in log mass to 10^15, issue 15's test set of
    >= 20 halos; paper: the defaults)."""
    assert load_config("paper").catalog == CatalogConfig()
    assert load_config("demo").catalog == CatalogConfig(n_halos=128, log10_m_max_msun_h=15.0, mode="flat")


# --------------------------------------------------------------------------------------------
# Mass function
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("log10_m", "reference"), [(13.5, 1.37e-4), (14.0, 2.95e-5), (14.5, 3.83e-6), (15.0, 1.79e-7)]
)
def test_cumulative_density_matches_spec(log10_m, reference):
    """Oracle: SPEC section 1's n(>M) at z = 0 [(Mpc/h)^-3], given to 3 significant figures
    (rounding <= 0.37 %). Tolerance 0.5 %; measured +0.31 %, -0.005 %, -0.06 %, +0.14 %."""
    n = cat.cumulative_number_density(log10_m, Config().cosmology)
    assert n == pytest.approx(reference, rel=5e-3)


def _oracle_cdf(cfg: Config):
    """CDF of log10 M between the bounds from colossus' dn/dlnM with Simpson's rule on its
    own 0.0005-dex grid (independent of the catalog's 0.001-dex trapezoid table)."""
    lo, hi = cfg.catalog.log10_m_min_msun_h, cfg.catalog.log10_m_max_msun_h
    grid = np.linspace(lo, hi, int(round((hi - lo) / 5e-4)) + 1)
    cum = cumulative_simpson(cat.mass_function_dndlnm(grid, cfg.cosmology), x=grid, initial=0.0)
    return lambda x: np.interp(x, grid, cum / cum[-1])


def test_box_masses_follow_the_mass_function(box, box_cfg):
    """Oracle: KS test of 2000 box-mode masses against the Tinker08 CDF (p > 1e-3; measured
    p = 0.60), all masses inside the bounds; expected_counts against the same CDF (rel 1e-5)."""
    log10_m = box["log10_m200m_msun_h"]
    assert log10_m.min() >= 13.5 and log10_m.max() <= 15.5
    cdf = _oracle_cdf(box_cfg)
    assert stats.kstest(log10_m, cdf).pvalue > 1e-3
    edges = np.array([13.5, 14.0, 14.5, 15.0, 15.5])
    expected = cat.expected_counts(edges, box_cfg.catalog, box_cfg.cosmology)
    assert expected.sum() == pytest.approx(N_STAT, rel=1e-12)
    np.testing.assert_allclose(expected, N_STAT * np.diff(cdf(edges)), rtol=1e-5)


def test_flat_masses_are_uniform_in_log_mass():
    """Oracle: KS test of 1000 flat-mode masses against U(13.5, 15.5) (p > 1e-3; measured
    p = 0.67); expected_counts uniform (exact to 1e-12)."""
    cfg = _cfg(n_halos=1000, mode="flat", seed=5)
    log10_m = catalog_table(cfg).column("log10_m200m_msun_h").to_numpy()
    assert stats.kstest(log10_m, stats.uniform(13.5, 2.0).cdf).pvalue > 1e-3
    np.testing.assert_allclose(cat.expected_counts(np.linspace(13.5, 15.5, 5), cfg.catalog, cfg.cosmology), 250.0, rtol=1e-12)
    assert cat.expected_counts(np.array([12.0, 13.5, 16.0]), cfg.catalog, cfg.cosmology).tolist() == [0.0, 1000.0]


def test_equivalent_volume_matches_spec():
    """Oracle: SPEC section 1, 6,233 halos above 10^13.5 Msun/h fill about (357 Mpc/h)^3
    (tolerance 1 Mpc/h on the side; measured 356.6)."""
    assert np.cbrt(cat.equivalent_volume_mpc3_h3(Config().catalog, Config().cosmology)) == pytest.approx(357.0, abs=1.0)


# --------------------------------------------------------------------------------------------
# Reproducibility
# --------------------------------------------------------------------------------------------


def test_halo_parameters_equal_catalog_rows_and_prefix():
    """Oracle: exact equality. Each halo alone (halo_parameters) equals its catalog row, and a
    catalog of 10 halos is the prefix of one of 20."""
    cfg20 = _cfg(n_halos=20, seed=3)
    rows = catalog_table(cfg20).to_pylist()
    for i in (0, 7, 19):
        alone = cat.halo_parameters(cfg20.catalog, cfg20.cosmology, i)
        assert list(alone) == list(rows[i])
        assert all(_same(alone[k], rows[i][k]) for k in alone), i
    cfg10 = dataclasses.replace(cfg20, catalog=dataclasses.replace(cfg20.catalog, n_halos=10))
    rows10 = catalog_table(cfg10).to_pylist()
    for a, b in zip(rows10, rows[:10]):
        assert all(_same(a[k], b[k]) for k in a)
    with pytest.raises(cat.CatalogError, match="halo_id"):
        cat.halo_parameters(cfg20.catalog, cfg20.cosmology, 20)


def test_mode_and_scatter_do_not_shift_other_draws():
    """Oracle: the fixed draw order. Switching the mass mode, the concentration scatter and the
    merger fraction changes only their own columns (and what depends on mass); the rest are
    exactly equal."""
    base = catalog_table(_cfg(n_halos=12, seed=2)).to_pydict()
    other = catalog_table(
        _cfg(n_halos=12, seed=2, mode="flat", concentration_scatter_dex=0.0, merger_fraction=1.0)
    ).to_pydict()
    unchanged = ["orient_w", "orient_x", "orient_y", "orient_z", "f_sub", "gas_fraction_factor",
                 "pressure_factor", "clumping_c0", "gas_misalignment_deg"]
    for name in unchanged:
        assert base[name] == other[name], name
    merged = np.array(base["is_merger"])
    for name in ("merger_mass_ratio", "merger_mach", "merger_dir_z"):
        assert np.array_equal(np.array(base[name])[merged], np.array(other[name])[merged])
    assert all(other["is_merger"])


def test_golden_draws_of_seed_0():
    """Oracle: values of halos 0 and 1 of seed 0 recorded when the draw order was fixed
    (numpy's SeedSequence/PCG64 streams are stable); they change only on purpose (rel 1e-12).
    Only columns that do not depend on colossus."""
    h0 = cat.halo_parameters(_cfg(n_halos=2).catalog, _cfg(n_halos=2).cosmology, 0)
    h1 = cat.halo_parameters(_cfg(n_halos=2).catalog, _cfg(n_halos=2).cosmology, 1)
    golden0 = {"f_sub": 0.1378832385251697, "gas_fraction_factor": 0.9320456138633475,
               "pressure_factor": 0.8271136072529268, "clumping_c0": 1.3158535541215322,
               "gas_misalignment_deg": 0.619889690208654, "orient_w": 0.7068552013402329,
               "orient_z": 0.5600231812510365}
    golden1 = {"merger_mass_ratio": 0.31799743235660316, "merger_separation_r200m": 1.4505259905970636,
               "merger_gas_lag_fraction": 0.1382674679446841, "merger_mach": 2.3696311860566164,
               "merger_dir_z": -0.37064314880023086}
    assert h0["is_merger"] is False and math.isnan(h0["merger_mass_ratio"]) and h1["is_merger"] is True
    assert {k: h0[k] for k in golden0} == pytest.approx(golden0, rel=1e-12)
    assert {k: h1[k] for k in golden1} == pytest.approx(golden1, rel=1e-12)


# --------------------------------------------------------------------------------------------
# Per-halo distributions
# --------------------------------------------------------------------------------------------


def test_concentration_scatter_about_the_colossus_median(box, box_cfg):
    """Oracles: colossus ``concentration(M, '200m', z, 'diemer19')`` called directly on 30
    halos equals the catalog's tabulated median (rel 1e-6; measured 6e-10); the log10 scatter
    of c about it over 2000 halos is 0.16 dex within 4 sigma (sigma = 0.16 / sqrt(2 (N-1)) =
    0.0025; measured 0.1617) and its mean is 0 within 4 sigma (0.014; measured 0.0026)."""
    log10_m = box["log10_m200m_msun_h"]
    table = cat._median_concentration_table(box_cfg.cosmology, 13.5, 15.5)
    direct = cat.median_concentration(log10_m[:30], box_cfg.cosmology)
    np.testing.assert_allclose(10.0 ** table(log10_m[:30]), direct, rtol=1e-6)
    resid = np.log10(box["c200m"]) - table(log10_m)
    assert abs(resid.std(ddof=1) - 0.16) < 4 * 0.16 / math.sqrt(2 * (N_STAT - 1))
    assert abs(resid.mean()) < 4 * 0.16 / math.sqrt(N_STAT)


def test_colossus_writes_nothing_to_home(tmp_path):
    """Oracle: the file system. A fresh interpreter with HOME at an empty folder builds a
    catalog (mass function, diemer19 concentrations, mass conversion) and the folder stays
    empty (colossus would otherwise create ``~/.colossus/cache/halo.concentration``)."""
    code = (
        "from cmpipe.config import CatalogConfig, Config\n"
        "from cmpipe.stages.catalog import catalog_table\n"
        "catalog_table(Config(catalog=CatalogConfig(n_halos=4, log10_m_max_msun_h=13.6)))\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, env=env, cwd=tmp_path)
    assert list(home.iterdir()) == []


def _clipped_normal_mean(mu, sigma, a, b):
    """E[clip(X, a, b)] for X ~ N(mu, sigma^2)."""
    al, be = (a - mu) / sigma, (b - mu) / sigma
    norm = stats.norm
    return (a * norm.cdf(al) + b * norm.sf(be)
            + mu * (norm.cdf(be) - norm.cdf(al)) + sigma * (norm.pdf(al) - norm.pdf(be)))


def test_shapes_allgood_and_jing_suto(box, box_cfg):
    """Oracles: 0.2 <= s <= q <= 1; mean s against the Allgood et al. 2006 relation
    0.54 (M/M*)^-0.05 clipped to [0.2, 1] (per-halo clipped-normal mean, M* from colossus
    ``nonLinearMass``), within 4 sigma (4 x 0.1 / sqrt(N) = 0.009; measured offset -0.002);
    t = (2 s/q - 1 - r_min)/(1 - r_min) follows Jing & Suto's 3/4 (1 - t^2) (KS p > 1e-3;
    measured p = 0.96)."""
    from colossus.lss import peaks

    s, q, m = box["shape_s"], box["shape_q"], box["m200m_msun_h"]
    assert s.min() >= 0.2 and np.all(q >= s) and q.max() <= 1.0
    colossus_cosmology(box_cfg.cosmology)
    mu = 0.54 * (m / peaks.nonLinearMass(0.0)) ** -0.05
    offset = np.mean(s - _clipped_normal_mean(mu, 0.1, 0.2, 1.0))
    assert abs(offset) < 4 * 0.1 / math.sqrt(N_STAT)
    r_min = np.maximum(s, 0.5)
    t = (2.0 * s / q - 1.0 - r_min) / (1.0 - r_min)
    assert stats.kstest(t, lambda x: (2.0 + 3.0 * x - x**3) / 4.0).pvalue > 1e-3


def test_orientations_are_uniform(box):
    """Oracle: Haar measure on SO(3). Unit quaternions with w >= 0; the rotated z axis has a
    uniform z component on [-1, 1] and the rotation angle theta has CDF
    (theta - sin theta) / pi (KS p > 1e-3 each; measured p = 0.90, 0.29)."""
    quat = np.stack([box["orient_w"], box["orient_x"], box["orient_y"], box["orient_z"]], axis=1)
    np.testing.assert_allclose(np.linalg.norm(quat, axis=1), 1.0, rtol=1e-12)
    assert quat[:, 0].min() >= 0.0
    rot = cat.orientation_matrix(quat)
    np.testing.assert_allclose(np.linalg.det(rot), 1.0, rtol=1e-12)
    assert stats.kstest(rot[:, 2, 2], stats.uniform(-1.0, 2.0).cdf).pvalue > 1e-3
    theta = 2.0 * np.arccos(np.clip(quat[:, 0], -1.0, 1.0))
    assert stats.kstest(theta, lambda x: (x - np.sin(x)) / np.pi).pvalue > 1e-3


def test_substructure_and_gas_scatter(box):
    """Oracles: the documented laws. f_sub in [0.02, 0.3]; ln of the gas-fraction and pressure
    factors have std 0.10 and 0.15, the misalignment 15 deg, each within 4 sigma
    (sigma / sqrt(2 (N-1)); measured 0.098, 0.151, 14.8 deg); C0 in [0.5, 1.5)."""
    assert box["f_sub"].min() >= 0.02 and box["f_sub"].max() <= 0.3
    for values, sigma in ((np.log(box["gas_fraction_factor"]), 0.10),
                          (np.log(box["pressure_factor"]), 0.15),
                          (box["gas_misalignment_deg"], 15.0)):
        assert abs(values.std(ddof=1) - sigma) < 4 * sigma / math.sqrt(2 * (N_STAT - 1))
    assert box["clumping_c0"].min() >= 0.5 and box["clumping_c0"].max() < 1.5


def test_mergers(box):
    """Oracles: merger fraction 0.3 within binomial 4 sigma (4 sqrt(0.21/N) = 0.041; measured
    0.3005); xi follows p(xi) ~ xi^-2 on [0.1, 1], CDF (10 - 1/xi)/9 (KS p > 1e-3; measured
    p = 0.45); separation, lag and Mach in their ranges; directions unit vectors; NaN in every
    merger column of the other halos."""
    merger = box["is_merger"]
    assert abs(merger.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / N_STAT)
    xi = box["merger_mass_ratio"][merger]
    assert xi.min() >= 0.1 and xi.max() <= 1.0
    assert stats.kstest(xi, lambda x: (10.0 - 1.0 / x) / 9.0).pvalue > 1e-3
    for name, (lo, hi) in {"merger_separation_r200m": (0.3, 1.5), "merger_gas_lag_fraction": (0.1, 0.4),
                           "merger_mach": (1.5, 3.0)}.items():
        assert box[name][merger].min() >= lo and box[name][merger].max() <= hi, name
    direction = np.stack([box[f"merger_dir_{a}"][merger] for a in "xyz"], axis=1)
    np.testing.assert_allclose(np.linalg.norm(direction, axis=1), 1.0, rtol=1e-12)
    for name in [f.name for f in cat.CATALOG_SCHEMA if f.name.startswith("merger_")]:
        assert np.all(np.isnan(box[name][~merger])), name


def test_radii_and_500c_masses(box, box_cfg):
    """Oracles: the definitions. M200m = 200 rho_m (4 pi/3) R200m^3 and M500c = 500 rho_c
    (4 pi/3) R500c^3 (physical, M in Msun = M/h; rel 1e-6; measured 1e-15), and the NFW mass ratio
    M500c/M200m = mu(c x)/mu(c), x = R500c/R200m, mu(y) = ln(1+y) - y/(1+y) (rel 1e-4;
    measured 1.1e-7, colossus interpolates)."""
    cosmo = box_cfg.cosmology
    h = cosmo.h
    m200, m500 = box["m200m_msun_h"] / h, box["m500c_msun_h"] / h
    r200, r500, c = box["r200m_mpc"], box["r500c_mpc"], box["c200m"]
    rho_m = mean_densities(cosmo).matter  # Msun Mpc^-3
    np.testing.assert_allclose(200 * rho_m * 4 * np.pi / 3 * r200**3, m200, rtol=1e-6)
    rho_c = colossus_cosmology(cosmo).rho_c(cosmo.redshift) * 1e9 * h**2  # Msun Mpc^-3
    np.testing.assert_allclose(500 * rho_c * 4 * np.pi / 3 * r500**3, m500, rtol=1e-6)
    mu = lambda y: np.log1p(y) - y / (1 + y)  # noqa: E731
    np.testing.assert_allclose(m500 / m200, mu(c * r500 / r200) / mu(c), rtol=1e-4)
    np.testing.assert_array_equal(box["log10_m200m_msun_h"], np.log10(box["m200m_msun_h"]))


# --------------------------------------------------------------------------------------------
# Parquet, figure, command line
# --------------------------------------------------------------------------------------------


def test_parquet_round_trip_keeps_values_units_and_metadata(tmp_path):
    """Oracle: exact equality of every column (NaN equal) after write/read; each field's unit
    metadata equal to CATALOG_SCHEMA's; the file's key-value metadata holds schema version 1
    and the config's fingerprint; the config read back equals the one that made it; no
    temporary file left."""
    cfg = _cfg(n_halos=12, seed=4)
    table = catalog_table(cfg)
    path = cat.write_catalog(table, tmp_path / "sub" / "catalog.parquet")
    back = cat.read_catalog(path)
    assert back.column_names == [f.name for f in cat.CATALOG_SCHEMA]
    for f in cat.CATALOG_SCHEMA:
        assert back.schema.field(f.name).type == f.type
        assert back.schema.field(f.name).metadata[b"unit"] == f.metadata[b"unit"]
        assert np.array_equal(back.column(f.name).to_numpy(zero_copy_only=False),
                              table.column(f.name).to_numpy(zero_copy_only=False),
                              equal_nan=f.type == pa.float64())
    meta = pq.read_metadata(path).metadata
    assert meta[b"cmpipe.catalog_schema_version"] == b"2"
    assert meta[b"cmpipe.config_fingerprint"] == config_fingerprint(cfg).encode()
    assert catalog_config(back) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["catalog.parquet"]


def test_parquet_rejects_foreign_tables(tmp_path):
    """Oracle: the schema contract. A table without the catalog metadata, or missing a field,
    is refused on write; a Parquet file of another schema version is refused on read."""
    table = catalog_table(_cfg(n_halos=3))
    with pytest.raises(cat.CatalogError, match="schema version"):
        cat.write_catalog(table.replace_schema_metadata({}), tmp_path / "a.parquet")
    with pytest.raises(cat.CatalogError, match="missing fields"):
        cat.write_catalog(table.drop_columns(["c200m"]), tmp_path / "b.parquet")
    meta = dict(table.schema.metadata)
    meta[b"cmpipe.catalog_schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), tmp_path / "c.parquet")
    with pytest.raises(cat.CatalogError, match="version 99"):
        cat.read_catalog(tmp_path / "c.parquet")


def test_mass_function_figure():
    """Oracle: the figure contract (a Figure; log count axis; labelled axes with units; one
    0.1-dex bin per 0.1 dex of the bounds)."""
    from cmpipe.plots.catalog import mass_bin_edges, plot_mass_function

    cfg = _cfg(n_halos=50, log10_m_max_msun_h=15.0)
    fig = plot_mass_function(catalog_table(cfg), cfg.catalog, cfg.cosmology)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert "M_" in ax.get_xlabel() and "odot" in ax.get_xlabel() and "dex" in ax.get_ylabel()
    np.testing.assert_allclose(mass_bin_edges(cfg.catalog), np.linspace(13.5, 15.0, 16), atol=1e-12)


def test_cli_catalog_writes_its_files(tmp_path, capsys):
    """Oracle: the files the command promises (catalog.parquet with n_halos rows, the PNG,
    config.resolved.yaml whose fingerprint is the catalog's) and its printed summary."""
    out = tmp_path / "run"
    status = main(["catalog", "--out", str(out), "--set", "catalog.n_halos=8"])
    assert status == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(out / "catalog.parquet")
    assert printed[1].startswith("8 halos (flat mode)")  # the demo config's catalog
    assert "mergers" in printed[1]
    table = cat.read_catalog(out / "catalog.parquet")
    assert table.num_rows == 8
    assert (out / "mass_function.png").stat().st_size > 0
    resolved = load_config(out / "config.resolved.yaml")
    assert table.schema.metadata[b"cmpipe.config_fingerprint"] == config_fingerprint(resolved).encode()
    assert resolved.catalog == CatalogConfig(n_halos=8, log10_m_max_msun_h=15.0, mode="flat")

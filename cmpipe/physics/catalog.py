"""The halo catalog of the mock clusters: one row of seeded parameters per halo.

Each halo's parameters come *only* from its own random generator,
``np.random.default_rng(np.random.SeedSequence([catalog.seed, halo_id]))``, so any single halo
regenerates alone and identically (:func:`halo_parameters`), and a catalog of ``N`` halos is the
prefix of a catalog of ``M > N`` halos with the same other settings. The other inputs are the
cosmology and the mass bounds, through tables that depend on nothing else.

Masses (``catalog.mode``)
-------------------------
``box``: log10 M200m drawn from the Tinker et al. (2008) mass function dn/dlnM between the
bounds, like the halos of a simulation volume (inverse CDF tabulated every 0.001 dex, linear in
between). ``flat``: uniform in log10 M between the bounds. Both use the same one uniform
variate, so the draws after it do not depend on the mode.

Draw order within one halo's generator
--------------------------------------
Fixed; a new column must draw *after* the last one so that earlier columns never change.
``U`` is ``rng.random()`` (uniform on [0, 1)), ``N`` is ``rng.standard_normal()``; every
variate is drawn for every halo, whatever the configuration (a merger's variates too), and
scaled afterwards, so a scatter of 0 or a merger fraction of 0 leaves the other columns as
they were.

==  ===========================  =========================================================
#   variate                      use
==  ===========================  =========================================================
0   U mass                       log10 M200m: inverse CDF (box) or uniform (flat)
1   N concentration              c200m = median x 10^(concentration_scatter_dex N)
2   N shape s                    s = clip(0.54 (M/M*)^-0.05 + 0.1 N, 0.2, 1)
3   U shape q                    q | s from the Jing & Suto (2002) conditional (inverse CDF)
4   U orientation 1              uniform rotation (Shoemake 1992 quaternion from 3 uniforms)
5   U orientation 2
6   U orientation 3
7   N substructure               f_sub = clip(0.10 + 0.04 N, 0.02, 0.3)
8   N gas fraction               gas_fraction_factor = exp(0.10 N)
9   N pressure                   pressure_factor = exp(0.15 N)
10  U clumping                   clumping_c0 = 0.5 + U
11  N gas misalignment           gas_misalignment_deg = 15 N
12  U merger                     is_merger = U < merger_fraction
13  U mass ratio                 xi = 1 / (10 - 9 U): p(xi) ~ xi^-2 on [0.1, 1]
14  U separation                 0.3 + 1.2 U [R200m]
15  U gas lag                    0.1 + 0.3 U [fraction of the separation]
16  U Mach                       1.5 + 1.5 U
17  U direction cos(theta)       2 U - 1
18  U direction phi              2 pi U
19  U cool core                  is_cool_core = U < cool_core_fraction
20  N pressure c500              pressure_c500_factor = 10^(pressure_c500_scatter_dex N)
21  N non-thermal                nonthermal_radius_factor = exp(nonthermal_scatter_ln N)
22  U merger phase               is_post_pericentre = is_merger and U < post fraction
23  N f_gas,500                  fgas500_factor = 10^(gas_fraction_scatter_dex N)
==  ===========================  =========================================================

Draws 8 and 9 (``gas_fraction_factor``, ``pressure_factor``) scale the older DPP gas model
(``mock.observed_baryons`` off); draws 19-23 the observed-baryons model and the merger phase.

The data contract (:data:`CATALOG_SCHEMA`, version :data:`CATALOG_SCHEMA_VERSION` = 2)
--------------------------------------------------------------------------------------
One row per halo, in halo-id order; every field float64 unless said, none null, its unit in
the field's metadata (``b"unit"``). The Parquet file's key-value metadata holds
``cmpipe.catalog_schema_version``, ``cmpipe.config_fingerprint`` (of the resolved
configuration that made it) and ``cmpipe.config`` (that configuration as YAML).

===============================  ======================  =================================================
field                            unit                    meaning
===============================  ======================  =================================================
``halo_id`` (int64)              ""                      0 .. n_halos - 1; the seed of the halo's draws
``m200m_msun_h``                 solMass / littleh       M200m
``log10_m200m_msun_h``           dex(solMass / littleh)  log10 M200m (the drawn value; M200m = 10^this)
``r200m_mpc``                    Mpc                     R200m, physical
``c200m``                        ""                      NFW concentration R200m / r_s, with scatter
``m500c_msun_h``                 solMass / littleh       M500c of the same NFW profile (colossus)
``r500c_mpc``                    Mpc                     R500c, physical
``shape_s``                      ""                      s = c/a (minor / major axis), in [0.2, 1]
``shape_q``                      ""                      q = b/a (intermediate / major), in [s, 1]
``orient_w`` .. ``orient_z``     ""                      unit quaternion (scalar first, w >= 0) of the
                                                         rotation taking the halo's principal frame
                                                         (a, b, c along x, y, z) to the catalog frame
``f_sub``                        ""                      mass fraction in subhalos, in [0.02, 0.3]
``gas_fraction_factor``          ""                      multiplies the gas fraction (log-normal)
``pressure_factor``              ""                      multiplies the pressure normalisation P0
``clumping_c0``                  ""                      C0 of the clumping factor 1 + C0 (r/R200m)^2
``gas_misalignment_deg``         deg                     gas axes' tilt from the DM axes
``is_merger`` (bool)             ""                      an ongoing merger
``merger_mass_ratio``            ""                      xi = M_secondary / M200m, in [0.1, 1]
``merger_separation_r200m``      ""                      centre distance of the secondary / R200m
``merger_gas_lag_fraction``      ""                      gas-DM offset of the secondary / separation
``merger_mach``                  ""                      Mach number of the merger shock
``merger_dir_x`` .. ``_z``       ""                      unit vector from the primary to the secondary
``is_cool_core`` (bool)          ""                      pressure from the Arnaud et al. (2010) cool-core
                                                         fit (else the morphologically disturbed one)
``pressure_c500_factor``         ""                      multiplies the pressure family's c500
``nonthermal_radius_factor``     ""                      multiplies B of the Nelson et al. (2014) f_nt(r)
``is_post_pericentre`` (bool)    ""                      a merger seen after pericentre (false if none)
``fgas500_factor``               ""                      multiplies the mean f_gas,500(M500c) relation
===============================  ======================  =================================================

The merger columns are NaN when ``is_merger`` is false (the variates are still drawn). The
lag's cap at 300 kpc (SPEC section 4) is applied by the particle generator, not here.

Units follow :mod:`cmpipe.physics.halo`: radii physical Mpc (no little h); masses Msun/h where
the name says ``_msun_h``. Each field's ``unit`` is an astropy unit string (``""``: dimensionless);
little h is astropy's ``littleh`` (:mod:`astropy.cosmology.units`, h = ``cosmology.h``; enable it
with ``u.add_enabled_units(astropy.cosmology.units)``), never ``Msun/h`` (astropy's ``h`` is the
hour). The file also carries astropy's Parquet header
(:func:`cmpipe.store.tables.with_astropy_header`): ``astropy.table.Table.read`` gives the units.

Model references: Tinker et al. 2008 (mass function), Diemer & Joyce 2019 (median c200m,
tabulated every 0.01 dex in log M and interpolated with a cubic spline), Allgood et al. 2006 (s,
with M200m and M* = colossus ``nonLinearMass``), Jing & Suto 2002 (q given s).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from cmpipe.store.location import AnyPath, as_path, is_remote, write_bytes_atomic
from cmpipe.store.schema import LOG10_MSUN_H, MSUN_H

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import CatalogConfig, CosmologyConfig

__all__ = [
    "CATALOG_SCHEMA",
    "CATALOG_SCHEMA_VERSION",
    "CatalogError",
    "catalog_config_yaml",
    "catalog_metadata",
    "catalog_summary",
    "cumulative_number_density",
    "equivalent_volume_mpc3_h3",
    "expected_counts",
    "halo_parameters",
    "make_catalog",
    "mass_function_dndlnm",
    "median_concentration",
    "orientation_matrix",
    "read_catalog",
    "write_catalog",
]

logger = logging.getLogger(__name__)

#: Version of :data:`CATALOG_SCHEMA`; bump it on any change of fields, types or meaning.
CATALOG_SCHEMA_VERSION = 2

#: Key-value metadata keys of a catalog table and its Parquet file.
META_SCHEMA_VERSION = b"cmpipe.catalog_schema_version"
META_FINGERPRINT = b"cmpipe.config_fingerprint"
META_CONFIG = b"cmpipe.config"

# --- Model constants (SPEC section 4), with their sources --------------------------------------
#: Allgood et al. (2006): <s> = S0 (M / M*)^SLOPE, scatter SIGMA; s clipped to [S_MIN, 1].
SHAPE_S0, SHAPE_SLOPE, SHAPE_SIGMA, SHAPE_S_MIN = 0.54, -0.05, 0.1, 0.2
#: Jing & Suto (2002): lower bound of a1/a2 is max(s, JS_R_MIN).
JS_R_MIN = 0.5
#: Subhalo mass fraction ~ N(mean, sigma) clipped to [min, max].
FSUB_MEAN, FSUB_SIGMA, FSUB_MIN, FSUB_MAX = 0.10, 0.04, 0.02, 0.3
#: Log-normal scatter (natural log) of the gas fraction and of the pressure normalisation.
GAS_FRACTION_SIGMA_LN, PRESSURE_SIGMA_LN = 0.10, 0.15
#: Clumping C0 ~ U(min, max).
CLUMPING_C0_MIN, CLUMPING_C0_MAX = 0.5, 1.5
#: Gas-DM misalignment ~ N(0, sigma) [deg].
GAS_MISALIGNMENT_SIGMA_DEG = 15.0
#: Mergers: mass ratio p(xi) ~ xi^-2 on [XI_MIN, 1]; separation, gas lag and Mach uniform.
XI_MIN = 0.1
SEPARATION_R200M = (0.3, 1.5)
GAS_LAG_FRACTION = (0.1, 0.4)
MACH = (1.5, 3.0)

#: Step of the mass-function CDF table [dex] and of the median-concentration table [dex].
MASS_TABLE_STEP_DEX = 0.001
CONCENTRATION_TABLE_STEP_DEX = 0.01
#: Upper mass limit standing in for infinity in cumulative densities [log10 Msun/h].
LOG10_M_INFINITY = 17.0

# The draws of one halo, in order (see the module docstring): (name, "U" or "N").
_DRAWS: tuple[tuple[str, str], ...] = (
    ("mass", "U"),
    ("concentration", "N"),
    ("shape_s", "N"),
    ("shape_q", "U"),
    ("orient_1", "U"),
    ("orient_2", "U"),
    ("orient_3", "U"),
    ("f_sub", "N"),
    ("gas_fraction", "N"),
    ("pressure", "N"),
    ("clumping", "U"),
    ("misalignment", "N"),
    ("is_merger", "U"),
    ("merger_xi", "U"),
    ("merger_separation", "U"),
    ("merger_lag", "U"),
    ("merger_mach", "U"),
    ("merger_cos_theta", "U"),
    ("merger_phi", "U"),
    ("cool_core", "U"),
    ("pressure_c500", "N"),
    ("nonthermal", "N"),
    ("merger_phase", "U"),
    ("fgas500", "N"),
)
_DRAW_INDEX = {name: i for i, (name, _) in enumerate(_DRAWS)}


def _field(name: str, type_: pa.DataType, unit: str, description: str) -> pa.Field:
    return pa.field(
        name, type_, nullable=False,
        metadata={b"unit": unit.encode(), b"description": description.encode()},
    )


_F64 = pa.float64()

#: The catalog's Arrow schema (version :data:`CATALOG_SCHEMA_VERSION`); units in each field's
#: metadata under ``b"unit"``. Tables are cast to it explicitly before writing.
CATALOG_SCHEMA: pa.Schema = pa.schema([
    _field("halo_id", pa.int64(), "", "halo id; seeds SeedSequence([catalog.seed, halo_id])"),
    _field("m200m_msun_h", _F64, MSUN_H, "M200m"),
    _field("log10_m200m_msun_h", _F64, LOG10_MSUN_H, "log10 M200m"),
    _field("r200m_mpc", _F64, "Mpc", "R200m, physical"),
    _field("c200m", _F64, "", "NFW concentration R200m / r_s, with log-normal scatter"),
    _field("m500c_msun_h", _F64, MSUN_H, "M500c of the same NFW profile"),
    _field("r500c_mpc", _F64, "Mpc", "R500c, physical"),
    _field("shape_s", _F64, "", "s = c/a, minor over major axis"),
    _field("shape_q", _F64, "", "q = b/a, intermediate over major axis"),
    _field("orient_w", _F64, "", "orientation quaternion, scalar part (>= 0)"),
    _field("orient_x", _F64, "", "orientation quaternion, x"),
    _field("orient_y", _F64, "", "orientation quaternion, y"),
    _field("orient_z", _F64, "", "orientation quaternion, z"),
    _field("f_sub", _F64, "", "mass fraction in subhalos"),
    _field("gas_fraction_factor", _F64, "", "log-normal factor on the gas fraction"),
    _field("pressure_factor", _F64, "", "log-normal factor on the pressure normalisation"),
    _field("clumping_c0", _F64, "", "C0 of the clumping factor 1 + C0 (r/R200m)^2"),
    _field("gas_misalignment_deg", _F64, "deg", "tilt of the gas axes from the DM axes"),
    _field("is_merger", pa.bool_(), "", "an ongoing merger"),
    _field("merger_mass_ratio", _F64, "", "xi = M_secondary / M200m; NaN if not a merger"),
    _field("merger_separation_r200m", _F64, "", "separation of the secondary / R200m; NaN if not a merger"),
    _field("merger_gas_lag_fraction", _F64, "", "gas-DM lag / separation; NaN if not a merger"),
    _field("merger_mach", _F64, "", "Mach number of the merger shock; NaN if not a merger"),
    _field("merger_dir_x", _F64, "", "unit vector to the secondary, x; NaN if not a merger"),
    _field("merger_dir_y", _F64, "", "unit vector to the secondary, y; NaN if not a merger"),
    _field("merger_dir_z", _F64, "", "unit vector to the secondary, z; NaN if not a merger"),
    _field("is_cool_core", pa.bool_(), "", "Arnaud et al. 2010 cool-core pressure (else disturbed)"),
    _field("pressure_c500_factor", _F64, "", "log-normal factor on the pressure family's c500"),
    _field("nonthermal_radius_factor", _F64, "", "log-normal factor on B of Nelson et al. 2014 f_nt(r)"),
    _field("is_post_pericentre", pa.bool_(), "", "a merger after pericentre; false if not a merger"),
    _field("fgas500_factor", _F64, "", "log-normal factor on the mean f_gas,500(M500c)"),
])


class CatalogError(ValueError):
    """A bad catalog: a file that is not a catalog of this schema version, or a bad halo id."""


# --------------------------------------------------------------------------------------------
# Mass function
# --------------------------------------------------------------------------------------------


def mass_function_dndlnm(log10_m_msun_h: float | np.ndarray, cosmo_cfg: CosmologyConfig) -> np.ndarray:
    """Tinker et al. (2008) halo mass function of M200m at ``cosmo_cfg.redshift``.

    Parameters
    ----------
    log10_m_msun_h : float or array
        log10 M200m [log10 Msun/h].
    cosmo_cfg : CosmologyConfig

    Returns
    -------
    ndarray, float64, same shape as the input
        dn/dlnM [comoving (Mpc/h)^-3].
    """
    from colossus.lss import mass_function

    from cmpipe.physics.cosmology import colossus_cosmology

    colossus_cosmology(cosmo_cfg)
    log10_m = np.asarray(log10_m_msun_h, dtype=np.float64)
    flat = np.atleast_1d(log10_m).ravel()
    dndlnm = mass_function.massFunction(
        10.0**flat, cosmo_cfg.redshift, q_in="M", mdef="200m", model="tinker08", q_out="dndlnM"
    )
    return np.asarray(dndlnm, dtype=np.float64).reshape(log10_m.shape)


def _integrate_dndlnm(lo: float, hi: float, cosmo_cfg: CosmologyConfig) -> float:
    """Integral of dn/dlnM over ln M from 10^lo to 10^hi [(Mpc/h)^-3] (trapezoid, <= 0.001 dex)."""
    if hi <= lo:
        return 0.0
    n = max(int(math.ceil((hi - lo) / MASS_TABLE_STEP_DEX)), 4) + 1
    grid = np.linspace(lo, hi, n)
    return float(np.trapezoid(mass_function_dndlnm(grid, cosmo_cfg), grid * np.log(10.0)))


def cumulative_number_density(
    log10_m_min_msun_h: float | np.ndarray,
    cosmo_cfg: CosmologyConfig,
    log10_m_max_msun_h: float = LOG10_M_INFINITY,
) -> np.ndarray:
    """Number density of halos with M200m between the bounds, n(> M_min) by default.

    Trapezoid rule in ln M on a grid of at most 0.001 dex (relative error < 1e-6).

    Parameters
    ----------
    log10_m_min_msun_h : float or array
        Lower bound(s) log10 M200m [log10 Msun/h].
    cosmo_cfg : CosmologyConfig
    log10_m_max_msun_h : float
        Upper bound [log10 Msun/h]; the default, 17, stands in for infinity.

    Returns
    -------
    ndarray, float64, shape of ``log10_m_min_msun_h``
        n [comoving (Mpc/h)^-3].
    """
    lo = np.asarray(log10_m_min_msun_h, dtype=np.float64)
    out = [_integrate_dndlnm(float(x), float(log10_m_max_msun_h), cosmo_cfg) for x in lo.ravel()]
    return np.asarray(out, dtype=np.float64).reshape(lo.shape)


@lru_cache(maxsize=16)
def _mass_cdf_table(cosmo_cfg: CosmologyConfig, lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """``(log10 M grid, CDF)`` of the mass function between the bounds (CDF from 0 to 1)."""
    n = max(int(math.ceil((hi - lo) / MASS_TABLE_STEP_DEX)), 4) + 1
    grid = np.linspace(lo, hi, n)
    f = mass_function_dndlnm(grid, cosmo_cfg)
    # Cumulative trapezoid in ln M.
    steps = 0.5 * (f[1:] + f[:-1]) * np.diff(grid) * np.log(10.0)
    cdf = np.concatenate([[0.0], np.cumsum(steps)])
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    grid.setflags(write=False)
    cdf.setflags(write=False)
    return grid, cdf


def _mass_cdf(log10_m: np.ndarray, cat: CatalogConfig, cosmology: CosmologyConfig) -> np.ndarray:
    """CDF of log10 M200m of the catalog's mode between its bounds, at ``log10_m``."""
    lo, hi = cat.log10_m_min_msun_h, cat.log10_m_max_msun_h
    x = np.clip(np.asarray(log10_m, dtype=np.float64), lo, hi)
    if cat.mode == "flat":
        return (x - lo) / (hi - lo)
    grid, cdf = _mass_cdf_table(cosmology, lo, hi)
    return np.interp(x, grid, cdf)


def expected_counts(bin_edges_log10: np.ndarray, cat: CatalogConfig, cosmology: CosmologyConfig) -> np.ndarray:
    """Expected number of catalog halos per bin of log10 M200m.

    ``box``: ``n_halos`` times the bin's share of the mass function between the bounds;
    ``flat``: ``n_halos`` times the bin's share of the log-mass range. Bins (or parts of bins)
    outside the bounds expect nothing.

    Parameters
    ----------
    bin_edges_log10 : (B + 1,) array
        Increasing bin edges [log10 Msun/h].
    cat, cosmology : CatalogConfig, CosmologyConfig
        The ``catalog`` and ``cosmology`` sections.

    Returns
    -------
    (B,) ndarray, float64
        Expected counts; they sum to ``n_halos`` when the bins cover the bounds.
    """
    edges = np.asarray(bin_edges_log10, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bin_edges_log10 must be a 1-D increasing array of at least 2 edges")
    return cat.n_halos * np.diff(_mass_cdf(edges, cat, cosmology))


def equivalent_volume_mpc3_h3(cat: CatalogConfig, cosmology: CosmologyConfig) -> float:
    """Comoving volume that holds ``n_halos`` halos between the mass bounds on average.

    ``V = n_halos / n(M_min < M200m < M_max)`` [(Mpc/h)^3], what a box-mode catalog stands
    for (the paper's 6,233 halos above 10^13.5 Msun/h: about (357 Mpc/h)^3).
    """
    n = cumulative_number_density(cat.log10_m_min_msun_h, cosmology, cat.log10_m_max_msun_h)
    return float(cat.n_halos / n)


# --------------------------------------------------------------------------------------------
# Concentration and shape
# --------------------------------------------------------------------------------------------


def _colossus_concentration_module():
    """colossus' concentration module, with its table storage kept in memory only.

    colossus 1.4 hard-codes persistence ``'rw'`` for the diemer19 tables (it would write
    ``~/.colossus/cache/halo.concentration``); install a non-persistent storage user first.
    """
    from colossus.halo import concentration
    from colossus.utils import storage

    user = concentration.storageUser
    if user is None or user.persistence_read or user.persistence_write:
        concentration.storageUser = storage.StorageUser(
            "halo.concentration", "", lambda: "concentration", lambda: "concentration", None
        )
    return concentration


def median_concentration(log10_m_msun_h: float | np.ndarray, cosmo_cfg: CosmologyConfig) -> np.ndarray:
    """Diemer & Joyce (2019) median c200m straight from colossus (one vectorised call).

    About 3 ms per halo (colossus converts each mass from 200c to 200m by root finding); the
    catalog interpolates a table of it instead (:func:`_median_concentration_table`).

    Parameters
    ----------
    log10_m_msun_h : float or array
        log10 M200m [log10 Msun/h].
    cosmo_cfg : CosmologyConfig

    Returns
    -------
    ndarray, float64, same shape
        Median c200m [dimensionless].
    """
    from cmpipe.physics.cosmology import colossus_cosmology

    concentration = _colossus_concentration_module()
    colossus_cosmology(cosmo_cfg)
    log10_m = np.asarray(log10_m_msun_h, dtype=np.float64)
    c = concentration.concentration(
        10.0 ** np.atleast_1d(log10_m).ravel(), "200m", cosmo_cfg.redshift, model="diemer19"
    )
    return np.asarray(c, dtype=np.float64).reshape(log10_m.shape)


@lru_cache(maxsize=16)
def _median_concentration_table(cosmo_cfg: CosmologyConfig, lo: float, hi: float):
    """Cubic spline of log10 c200m against log10 M200m, from colossus every <= 0.01 dex."""
    from scipy.interpolate import CubicSpline

    n = max(int(math.ceil((hi - lo) / CONCENTRATION_TABLE_STEP_DEX)), 3) + 1
    grid = np.linspace(lo, hi, n)
    return CubicSpline(grid, np.log10(median_concentration(grid, cosmo_cfg)))


@lru_cache(maxsize=16)
def _nonlinear_mass_msun_h(cosmo_cfg: CosmologyConfig) -> float:
    """M* at the configured redshift [Msun/h] (colossus ``peaks.nonLinearMass``)."""
    from colossus.lss import peaks

    from cmpipe.physics.cosmology import colossus_cosmology

    colossus_cosmology(cosmo_cfg)
    return float(peaks.nonLinearMass(cosmo_cfg.redshift))


def mean_shape_s(m200m_msun_h: np.ndarray, cosmo_cfg: CosmologyConfig) -> np.ndarray:
    """Allgood et al. (2006) mean minor-to-major axis ratio <s> = 0.54 (M/M*)^-0.05 (unclipped)."""
    m = np.asarray(m200m_msun_h, dtype=np.float64)
    return SHAPE_S0 * (m / _nonlinear_mass_msun_h(cosmo_cfg)) ** SHAPE_SLOPE


def _jing_suto_q(s: np.ndarray, u: np.ndarray) -> np.ndarray:
    """q = b/a given s = c/a, from Jing & Suto (2002) by inverse CDF.

    With x = a1/a2 (= s/q) on [r_min, 1], r_min = max(s, 0.5), and
    t = (2x - 1 - r_min) / (1 - r_min) on [-1, 1], the conditional density is
    3/4 (1 - t^2), whose CDF (2 + 3t - t^3)/4 = u inverts to t = 2 sin(arcsin(2u - 1) / 3).
    """
    r_min = np.maximum(s, JS_R_MIN)
    t = 2.0 * np.sin(np.arcsin(2.0 * u - 1.0) / 3.0)
    x = r_min + 0.5 * (1.0 - r_min) * (1.0 + t)
    return np.clip(s / x, s, 1.0)  # [s, 1] exactly; the clip only removes rounding


def orientation_matrix(quaternion_wxyz: np.ndarray) -> np.ndarray:
    """Rotation matrix of a catalog orientation (``orient_w, orient_x, orient_y, orient_z``).

    Parameters
    ----------
    quaternion_wxyz : (4,) or (N, 4) array
        Unit quaternion(s), scalar first.

    Returns
    -------
    (3, 3) or (N, 3, 3) ndarray
        ``R`` with ``x_catalog = R @ x_principal`` (the halo's a, b, c axes along x, y, z).
    """
    from scipy.spatial.transform import Rotation

    quat = np.asarray(quaternion_wxyz, dtype=np.float64)
    return Rotation.from_quat(quat, scalar_first=True).as_matrix()


# --------------------------------------------------------------------------------------------
# The catalog
# --------------------------------------------------------------------------------------------


def _draw_variates(seed: int, halo_ids: np.ndarray) -> np.ndarray:
    """``(len(halo_ids), len(_DRAWS))`` raw variates, halo ``i`` from ``SeedSequence([seed, i])``."""
    out = np.empty((halo_ids.size, len(_DRAWS)), dtype=np.float64)
    for row, halo_id in enumerate(halo_ids.tolist()):
        rng = np.random.default_rng(np.random.SeedSequence([seed, halo_id]))
        for col, (_, kind) in enumerate(_DRAWS):
            out[row, col] = rng.random() if kind == "U" else rng.standard_normal()
    return out


#: ``draw(name)``: the variates of one draw of :data:`_DRAWS`, one per halo.
_Draw = Callable[[str], np.ndarray]


def _log10_masses(cat: CatalogConfig, cosmo: CosmologyConfig, u: np.ndarray) -> np.ndarray:
    """log10 M200m [Msun/h] from uniform variates: the mass function's inverse CDF (``box``)
    or uniform in log M (``flat``)."""
    lo, hi = cat.log10_m_min_msun_h, cat.log10_m_max_msun_h
    if cat.mode == "box":
        grid, cdf = _mass_cdf_table(cosmo, lo, hi)
        return np.interp(u, cdf, grid)
    return lo + (hi - lo) * u


def _structure_columns(cat: CatalogConfig, cosmo: CosmologyConfig, draw: _Draw) -> dict[str, np.ndarray]:
    """Mass, concentration with the 500c mass and radius of the same NFW profile, and shape."""
    from colossus.halo import mass_defs

    from cmpipe.physics.cosmology import colossus_cosmology, r200m_mpc

    log10_m = _log10_masses(cat, cosmo, draw("mass"))
    m = 10.0**log10_m
    c_median = 10.0 ** _median_concentration_table(cosmo, cat.log10_m_min_msun_h, cat.log10_m_max_msun_h)(log10_m)
    c = c_median * 10.0 ** (cat.concentration_scatter_dex * draw("concentration"))
    colossus_cosmology(cosmo)
    m500c, r500c_kpc_h, _ = mass_defs.changeMassDefinition(m, c, cosmo.redshift, "200m", "500c")
    s = np.clip(mean_shape_s(m, cosmo) + SHAPE_SIGMA * draw("shape_s"), SHAPE_S_MIN, 1.0)
    return {
        "m200m_msun_h": m,
        "log10_m200m_msun_h": log10_m,
        "r200m_mpc": r200m_mpc(m / cosmo.h, cosmo),
        "c200m": c,
        "m500c_msun_h": np.asarray(m500c, dtype=np.float64),
        "r500c_mpc": np.asarray(r500c_kpc_h, dtype=np.float64) / (1000.0 * cosmo.h),
        "shape_s": s,
        "shape_q": _jing_suto_q(s, draw("shape_q")),
    }


def _orientation_columns(draw: _Draw) -> dict[str, np.ndarray]:
    """Orientation quaternion: Shoemake (1992), uniform on SO(3); sign fixed so that w >= 0."""
    u1, u2, u3 = draw("orient_1"), draw("orient_2"), draw("orient_3")
    a, b = np.sqrt(1.0 - u1), np.sqrt(u1)
    qx, qy = a * np.sin(2.0 * np.pi * u2), a * np.cos(2.0 * np.pi * u2)
    qz, qw = b * np.sin(2.0 * np.pi * u3), b * np.cos(2.0 * np.pi * u3)
    sign = np.where(qw < 0.0, -1.0, 1.0)
    return {"orient_w": sign * qw, "orient_x": sign * qx, "orient_y": sign * qy, "orient_z": sign * qz}


def _uniform(bounds: tuple[float, float], u: np.ndarray) -> np.ndarray:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _merger_columns(cat: CatalogConfig, draw: _Draw) -> dict[str, np.ndarray]:
    """The merger columns: NaN where not a merger (false for the phase)."""
    is_merger = draw("is_merger") < cat.merger_fraction
    nan_unless = lambda x: np.where(is_merger, x, np.nan)  # noqa: E731
    # Inverse CDF of p(xi) ~ xi^-2 on [XI_MIN, 1]: 1/xi = 1/XI_MIN - (1/XI_MIN - 1) U.
    xi = 1.0 / (1.0 / XI_MIN - (1.0 / XI_MIN - 1.0) * draw("merger_xi"))
    cos_t = 2.0 * draw("merger_cos_theta") - 1.0
    sin_t = np.sqrt(np.maximum(1.0 - cos_t**2, 0.0))
    phi = 2.0 * np.pi * draw("merger_phi")
    return {
        "is_merger": is_merger,
        "merger_mass_ratio": nan_unless(xi),
        "merger_separation_r200m": nan_unless(_uniform(SEPARATION_R200M, draw("merger_separation"))),
        "merger_gas_lag_fraction": nan_unless(_uniform(GAS_LAG_FRACTION, draw("merger_lag"))),
        "merger_mach": nan_unless(_uniform(MACH, draw("merger_mach"))),
        "merger_dir_x": nan_unless(sin_t * np.cos(phi)),
        "merger_dir_y": nan_unless(sin_t * np.sin(phi)),
        "merger_dir_z": nan_unless(cos_t),
        "is_post_pericentre": is_merger & (draw("merger_phase") < cat.merger_post_pericentre_fraction),
    }


def _baryon_columns(cat: CatalogConfig, draw: _Draw) -> dict[str, np.ndarray]:
    """Subhalo fraction, gas and pressure scatters, clumping, misalignment and cool cores."""
    return {
        "f_sub": np.clip(FSUB_MEAN + FSUB_SIGMA * draw("f_sub"), FSUB_MIN, FSUB_MAX),
        "gas_fraction_factor": np.exp(GAS_FRACTION_SIGMA_LN * draw("gas_fraction")),
        "pressure_factor": np.exp(PRESSURE_SIGMA_LN * draw("pressure")),
        "clumping_c0": _uniform((CLUMPING_C0_MIN, CLUMPING_C0_MAX), draw("clumping")),
        "gas_misalignment_deg": GAS_MISALIGNMENT_SIGMA_DEG * draw("misalignment"),
        "is_cool_core": draw("cool_core") < cat.cool_core_fraction,
        "pressure_c500_factor": 10.0 ** (cat.pressure_c500_scatter_dex * draw("pressure_c500")),
        "nonthermal_radius_factor": np.exp(cat.nonthermal_scatter_ln * draw("nonthermal")),
        "fgas500_factor": 10.0 ** (cat.gas_fraction_scatter_dex * draw("fgas500")),
    }


def _columns(cat: CatalogConfig, cosmo: CosmologyConfig, halo_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Every column of :data:`CATALOG_SCHEMA` for ``halo_ids`` (element-wise in the halos)."""
    v = _draw_variates(cat.seed, halo_ids)
    draw = lambda name: v[:, _DRAW_INDEX[name]]  # noqa: E731
    return {
        "halo_id": halo_ids.astype(np.int64),
        **_structure_columns(cat, cosmo, draw),
        **_orientation_columns(draw),
        **_merger_columns(cat, draw),
        **_baryon_columns(cat, draw),
    }


def catalog_metadata(config_fingerprint: str, config_yaml: str) -> dict[bytes, bytes]:
    """Key-value metadata of a catalog table: the schema version, and the fingerprint and
    resolved YAML of the whole configuration that made it (computed by the caller,
    :func:`cmpipe.stages.catalog.catalog_table`)."""
    return {
        META_SCHEMA_VERSION: str(CATALOG_SCHEMA_VERSION).encode(),
        META_FINGERPRINT: config_fingerprint.encode(),
        META_CONFIG: config_yaml.encode(),
    }


def _table(
    cat: CatalogConfig, cosmo: CosmologyConfig, halo_ids: np.ndarray, metadata: dict[bytes, bytes] | None = None
) -> pa.Table:
    columns = _columns(cat, cosmo, halo_ids)
    arrays = [pa.array(columns[f.name], type=f.type) for f in CATALOG_SCHEMA]
    schema = CATALOG_SCHEMA.with_metadata(metadata) if metadata is not None else CATALOG_SCHEMA
    return pa.Table.from_arrays(arrays, schema=schema)


def make_catalog(
    cat: CatalogConfig, cosmology: CosmologyConfig, metadata: dict[bytes, bytes] | None = None
) -> pa.Table:
    """The halo catalog of the ``catalog`` section, one row per halo in id order.

    Parameters
    ----------
    cat, cosmology : CatalogConfig, CosmologyConfig
        The ``catalog`` and ``cosmology`` sections.
    metadata : dict, optional
        The table's schema metadata, :func:`catalog_metadata` (schema version, config
        fingerprint and resolved config; :func:`write_catalog` needs them). Default: the
        schema's own.

    Returns
    -------
    pyarrow.Table
        ``n_halos`` rows of :data:`CATALOG_SCHEMA` (see the module docstring).
    """
    import time

    start = time.perf_counter()
    table = _table(cat, cosmology, np.arange(cat.n_halos, dtype=np.int64), metadata)
    logger.info(
        "catalog: %d halos (%s mode) in %.1f s", table.num_rows, cat.mode,
        time.perf_counter() - start,
    )
    return table


def halo_parameters(cat: CatalogConfig, cosmology: CosmologyConfig, halo_id: int) -> dict[str, Any]:
    """The catalog row of one halo, computed alone: equal, exactly, to row ``halo_id`` of
    :func:`make_catalog` (NaN where the row has NaN).

    Parameters
    ----------
    cat, cosmology : CatalogConfig, CosmologyConfig
        The ``catalog`` and ``cosmology`` sections.
    halo_id : int
        In ``0 .. cat.n_halos - 1``.

    Returns
    -------
    dict
        Field name -> Python ``int``, ``float`` or ``bool``, in schema order (units: the
        module docstring).

    Raises
    ------
    CatalogError
        If ``halo_id`` is not in the catalog.
    """
    n = cat.n_halos
    if isinstance(halo_id, bool) or not isinstance(halo_id, (int, np.integer)) or not 0 <= halo_id < n:
        raise CatalogError(
            f"halo_id must be an integer in [0, {n - 1}] (catalog.n_halos = {n}); got {halo_id!r}"
        )
    return _table(cat, cosmology, np.array([halo_id], dtype=np.int64)).to_pylist()[0]


def catalog_summary(table: pa.Table, cat: CatalogConfig, cosmology: CosmologyConfig) -> str:
    """One line: number of halos, mass range, mergers and, in box mode, the equivalent volume."""
    log10_m = table.column("log10_m200m_msun_h").to_numpy()
    mergers = int(np.count_nonzero(table.column("is_merger").to_numpy(zero_copy_only=False)))
    line = (
        f"{table.num_rows} halos ({cat.mode} mode), log10 M200m [Msun/h] "
        f"{log10_m.min():.3f} to {log10_m.max():.3f}, {mergers} mergers"
    )
    if cat.mode == "box":
        volume = equivalent_volume_mpc3_h3(cat, cosmology)
        line += f", equivalent volume {volume:.3e} (Mpc/h)^3 = ({np.cbrt(volume):.0f} Mpc/h)^3"
    return line


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


def _conform(table: pa.Table, where: str) -> pa.Table:
    """``table`` cast explicitly to :data:`CATALOG_SCHEMA`, keeping its schema metadata."""
    names = [f.name for f in CATALOG_SCHEMA]
    missing = [n for n in names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in names]
    if missing or extra:
        raise CatalogError(
            f"{where}: not a catalog of schema version {CATALOG_SCHEMA_VERSION}: "
            f"missing fields {missing}, unknown fields {extra}"
        )
    metadata = table.schema.metadata or {}
    try:
        return table.select(names).cast(CATALOG_SCHEMA.with_metadata(metadata), safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise CatalogError(f"{where}: a field does not cast to the catalog schema: {exc}") from None


def _check_metadata(metadata: dict[bytes, bytes] | None, where: str) -> None:
    metadata = metadata or {}
    version = metadata.get(META_SCHEMA_VERSION)
    if version != str(CATALOG_SCHEMA_VERSION).encode():
        raise CatalogError(
            f"{where}: catalog schema version {version.decode() if version else 'missing'}, "
            f"expected {CATALOG_SCHEMA_VERSION}"
        )
    if not metadata.get(META_FINGERPRINT):
        raise CatalogError(
            f"{where}: no config fingerprint ({META_FINGERPRINT.decode()}) in the metadata"
        )


def write_catalog(table: pa.Table, path: str | os.PathLike[str] | AnyPath) -> AnyPath:
    """Write a catalog to Parquet, whole: a temporary file renamed into place on disk, one PUT of
    the whole object on an object store (:func:`cmpipe.store.location.write_bytes_atomic`).

    Parameters
    ----------
    table : pyarrow.Table
        From :func:`make_catalog` (its schema metadata must hold the schema version and config
        fingerprint); cast explicitly to :data:`CATALOG_SCHEMA`.
    path : str, path-like or URL
        The ``.parquet`` file (a local path or an object-store URL); a local directory is created
        if missing.

    Returns
    -------
    pathlib.Path or upath.UPath
    """
    import io

    import pyarrow.parquet as pq

    from cmpipe.store.tables import with_astropy_header

    path = as_path(path)
    _check_metadata(table.schema.metadata, "catalog table")
    table = _conform(table, "catalog table")
    if not is_remote(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    pq.write_table(with_astropy_header(table), buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def read_catalog(path: str | os.PathLike[str] | AnyPath) -> pa.Table:
    """Read a catalog written by :func:`write_catalog` (a local path or an object-store URL),
    checking its schema version and fields.

    Returns
    -------
    pyarrow.Table
        Of :data:`CATALOG_SCHEMA` (units in the field metadata), with the file's key-value
        metadata (schema version, config fingerprint, config) as schema metadata.

    Raises
    ------
    CatalogError
        If the file is not a Parquet catalog of schema version :data:`CATALOG_SCHEMA_VERSION`.
    """
    import pyarrow.parquet as pq

    path = as_path(path)
    try:
        if is_remote(path):
            path.fs.invalidate_cache()  # another process may have rewritten it
            with path.open("rb") as f:
                table = pq.read_table(f)
        else:
            table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise CatalogError(f"{path}: cannot read a Parquet catalog: {exc}") from None
    _check_metadata(table.schema.metadata, str(path))
    return _conform(table, str(path))


def catalog_config_yaml(table: pa.Table) -> str:
    """The resolved configuration that made a catalog, as YAML (its ``cmpipe.config`` metadata;
    :func:`cmpipe.stages.catalog.catalog_config` parses it)."""
    text = (table.schema.metadata or {}).get(META_CONFIG)
    if not text:
        raise CatalogError(f"the catalog has no {META_CONFIG.decode()} metadata")
    return text.decode()

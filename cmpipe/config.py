"""Configuration: one frozen dataclass per pipeline stage, loaded from YAML.

A configuration file is a YAML mapping of *sections* (``cosmology``, ``catalog``, ``maps``,
``sph``, ``plasma``, ``source``, ``mock``, ``generate``, ``instrument``, ``lensing``, ``model``, ``train``, ``render``, ``run``) to mappings of *keys*. Every section and
every key may be omitted (the defaults are the paper's values); an unknown section or key is an error
that names the dotted key and the file. Values are checked and coerced against the dataclass
annotations (``int``, ``float``, ``str``, ``bool`` and homogeneous ``tuple[X, ...]``), then
each section validates its own ranges in ``__post_init__``.

Units follow :mod:`cmpipe.physics.halo`: lengths in physical Mpc (no little h), halo masses in
Msun/h only where the key says ``_msun_h``.

Examples
--------
>>> cfg = load_config("demo", ["maps.npix=64"])          # doctest: +SKIP
>>> cfg.maps.npix, config_fingerprint(cfg)               # doctest: +SKIP
(64, '3f1c...')

Adding a key: add an annotated field with its default to the section's dataclass, validate it
in ``_validate``, and document it in the shipped YAML files and the README's table (a test
checks the README lists every key). Adding a section: a new ``_Section`` subclass with a
``section`` class attribute, plus a field of that name on :class:`Config`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import importlib.resources
import json
import math
import numbers
import os
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from cmpipe import __version__

__all__ = [
    "CATALOG_MODES",
    "KNOWN_MAP_CHANNELS",
    "LensingConfig",
    "MAP_CHANNELS",
    "PROJECTION_BACKENDS",
    "SOURCE_KINDS",
    "CatalogConfig",
    "Config",
    "ConfigError",
    "CosmologyConfig",
    "GenerateConfig",
    "MapsConfig",
    "MockConfig",
    "ModelConfig",
    "PlasmaConfig",
    "RenderConfig",
    "RunConfig",
    "SourceConfig",
    "SphConfig",
    "TrainConfig",
    "config_fingerprint",
    "config_from_dict",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "save_resolved_config",
    "shipped_configs",
]

#: SPH projection backends (the registry itself lives in :mod:`cmpipe.sph`; this copy keeps
#: ``import cmpipe.config`` free of numba). ``exact`` is the slow reference.
PROJECTION_BACKENDS: tuple[str, ...] = ("exact", "mesh3d", "fast")
#: The default map channels (``maps.channels``).
MAP_CHANNELS: tuple[str, ...] = ("sz_y", "xray_sb", "gas_sigma", "dm_sigma")
#: Every map channel cmpipe knows how to make: the defaults plus the optional weak-lensing
#: convergence ``kappa`` (:mod:`cmpipe.mapmaking.maps`).
KNOWN_MAP_CHANNELS: tuple[str, ...] = (*MAP_CHANNELS, "kappa")
#: The model's target channels (:data:`cmpipe.model.dataset.TARGET_CHANNELS`): never conditions.
MODEL_TARGETS: tuple[str, ...] = ("gas_sigma", "dm_sigma")
#: Kinds of halo source: synthetic NFW halos, real halos in HDF5 files, mock clusters.
SOURCE_KINDS: tuple[str, ...] = ("analytic", "hdf5", "mock")
#: How the halo catalog draws masses: ``box`` from the mass function (like a simulation
#: volume), ``flat`` uniformly in log10 M.
CATALOG_MODES: tuple[str, ...] = ("box", "flat")
#: Logging levels accepted by ``run.log_level`` (case-insensitive, stored upper-case).
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Name of the resolved configuration written next to every artifact.
RESOLVED_CONFIG_NAME = "config.resolved.yaml"
#: Top-level key holding the fingerprint in a resolved file; ignored when loading.
FINGERPRINT_KEY = "_fingerprint"

_BARE_NAME = re.compile(r"[A-Za-z0-9_-]+")
# A decimal number as a string. PyYAML (YAML 1.1) reads ``1e10`` and ``1.0e10`` as *strings*
# (its float pattern needs a dot and a signed exponent), so float keys accept this form too.
_FLOAT_STRING = re.compile(r"[-+]?(\d[\d_]*\.?[\d_]*|\.\d[\d_]*)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """An invalid configuration. The message names the dotted key and where it came from.

    Parameters
    ----------
    message : str
        What is wrong, naming the dotted key (``maps.npix``) and, where known, the file or
        override that set it.
    keys : sequence of str, optional
        The dotted keys involved, so that the loader can add where each was set.
    """

    def __init__(self, message: str, keys: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.keys = tuple(keys)


# --------------------------------------------------------------------------------------------
# Type checking and coercion from annotations
# --------------------------------------------------------------------------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {value!r}"


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against annotation ``tp`` and return it in canonical form.

    ``int`` accepts integers (not bools, not floats); ``float`` accepts integers, floats and
    decimal strings such as ``"1e10"``, and must be finite; ``str`` and ``bool`` accept only
    their own type; ``tuple[X, ...]`` accepts a list or tuple and coerces each element.
    """
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{key}: unsupported annotation {tp!r} (use tuple[X, ...])")
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        raise ConfigError(
            f"{key}: expected a list of {args[0].__name__}, got {_describe(value)}", [key]
        )
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected a bool (true/false), got {_describe(value)}", [key])
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        raise ConfigError(f"{key}: expected an int, got {_describe(value)}", [key])
    if tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            out = float(value)
        elif isinstance(value, str) and _FLOAT_STRING.fullmatch(value.strip()):
            out = float(value.strip().replace("_", ""))
        else:
            raise ConfigError(f"{key}: expected a float, got {_describe(value)}", [key])
        if not math.isfinite(out):
            raise ConfigError(f"{key}: expected a finite float, got {out!r}", [key])
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(
            f"{key}: expected a str, got {_describe(value)} (quote it in YAML)", [key]
        )
    raise TypeError(f"{key}: unsupported annotation {tp!r}")


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields (not its class variables)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _require(condition: bool, message: str, *keys: str) -> None:
    if not condition:
        raise ConfigError(message, keys)


def _one_of(value: str, allowed: Sequence[str], key: str) -> None:
    _require(
        value in allowed,
        f"{key} must be one of {', '.join(allowed)}; got {value!r}",
        key,
    )


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    """Base of every section: coerces fields to their annotations, then validates."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for name, tp in _field_types(type(self)).items():
            value = _coerce(getattr(self, name), tp, f"{self.section}.{name}")
            object.__setattr__(self, name, value)
        self._validate()

    def _validate(self) -> None:
        """Check ranges and choices; raise :class:`ConfigError` naming the dotted key."""

    def _key(self, name: str) -> str:
        return f"{self.section}.{name}"


@dataclass(frozen=True)
class CosmologyConfig(_Section):
    """Flat LCDM cosmology of the simulations.

    Attributes
    ----------
    omega_m : float
        Total matter density parameter Omega_m at z = 0 [dimensionless].
    omega_b : float
        Baryon density parameter Omega_b at z = 0 [dimensionless], ``0 <= omega_b < omega_m``.
    h : float
        Dimensionless Hubble parameter, H0 / (100 km s^-1 Mpc^-1).
    sigma8 : float
        RMS linear matter fluctuation in spheres of 8 Mpc/h at z = 0 [dimensionless].
    ns : float
        Spectral index of the primordial power spectrum [dimensionless].
    redshift : float
        Redshift of the clusters (snapshot) [dimensionless], >= 0.
    """

    section: ClassVar[str] = "cosmology"

    omega_m: float = 0.30
    omega_b: float = 0.045
    h: float = 0.70
    sigma8: float = 0.80
    ns: float = 0.96
    redshift: float = 0.0

    def _validate(self) -> None:
        k = self._key
        _require(
            0.0 < self.omega_m <= 1.0, f"{k('omega_m')} must be in (0, 1]; got {self.omega_m}",
            k("omega_m"),
        )
        _require(
            0.0 <= self.omega_b < self.omega_m,
            f"{k('omega_b')} must satisfy 0 <= omega_b < omega_m; "
            f"got omega_b={self.omega_b}, omega_m={self.omega_m}",
            k("omega_b"), k("omega_m"),
        )
        _require(self.h > 0.0, f"{k('h')} must be > 0; got {self.h}", k("h"))
        _require(self.sigma8 > 0.0, f"{k('sigma8')} must be > 0; got {self.sigma8}", k("sigma8"))
        _require(self.ns > 0.0, f"{k('ns')} must be > 0; got {self.ns}", k("ns"))
        _require(
            self.redshift >= 0.0, f"{k('redshift')} must be >= 0; got {self.redshift}",
            k("redshift"),
        )


@dataclass(frozen=True)
class CatalogConfig(_Section):
    """The halo catalog of the mock clusters (:mod:`cmpipe.physics.catalog`).

    Attributes
    ----------
    n_halos : int
        Number of halos in the catalog [count], > 0.
    log10_m_min_msun_h : float
        Lower bound of log10 M200m [log10 Msun/h].
    log10_m_max_msun_h : float
        Upper bound of log10 M200m [log10 Msun/h], greater than the lower bound by at least
        0.01 dex and at most 17.
    mode : str
        One of :data:`CATALOG_MODES`: ``box`` draws masses from the Tinker et al. (2008)
        M200m mass function dn/dlnM between the bounds (a simulation volume); ``flat`` draws
        them uniformly in log10 M.
    seed : int
        Seed of the catalog, >= 0; halo ``i`` draws from ``SeedSequence([seed, i])``.
    concentration_scatter_dex : float
        Log-normal scatter of the concentration about the Diemer & Joyce (2019) median
        [dex], >= 0 (0 switches it off).
    merger_fraction : float
        Probability that a halo is an ongoing merger [dimensionless], in [0, 1].
    merger_post_pericentre_fraction : float
        Probability that a merger is seen after its first pericentre [dimensionless], in [0, 1];
        only then does the secondary's gas lag its DM (and the merger shock exist).
    cool_core_fraction : float
        Probability that a halo is a cool core [dimensionless], in [0, 1]: its pressure follows
        the Arnaud et al. (2010) cool-core fit, else the morphologically disturbed one. About
        0.3 in SZ (mass-) selected samples (Andrade-Santos et al. 2017; Rossetti et al. 2017).
    gas_fraction_scatter_dex : float
        Log-normal scatter of f_gas,500 about the Vikhlinin et al. (2009) f_gas-M relation
        [dex], >= 0.
    pressure_c500_scatter_dex : float
        Log-normal scatter of the pressure profile's concentration c500 about its family's
        value [dex], >= 0.
    nonthermal_scatter_ln : float
        Log-normal scatter of the radius scale B of the Nelson et al. (2014) non-thermal
        pressure fraction [natural log], >= 0.
    """

    section: ClassVar[str] = "catalog"

    n_halos: int = 6233
    log10_m_min_msun_h: float = 13.5
    log10_m_max_msun_h: float = 15.5
    mode: str = "box"
    seed: int = 0
    concentration_scatter_dex: float = 0.16
    merger_fraction: float = 0.3
    merger_post_pericentre_fraction: float = 0.5
    cool_core_fraction: float = 0.3
    gas_fraction_scatter_dex: float = 0.12
    pressure_c500_scatter_dex: float = 0.05
    nonthermal_scatter_ln: float = 0.25

    def _validate(self) -> None:
        k = self._key
        for name in ("merger_post_pericentre_fraction", "cool_core_fraction"):
            value = getattr(self, name)
            _require(0.0 <= value <= 1.0, f"{k(name)} must be in [0, 1]; got {value}", k(name))
        for name in ("gas_fraction_scatter_dex", "pressure_c500_scatter_dex", "nonthermal_scatter_ln"):
            value = getattr(self, name)
            _require(value >= 0.0, f"{k(name)} must be >= 0; got {value}", k(name))
        _require(self.n_halos > 0, f"{k('n_halos')} must be > 0; got {self.n_halos}", k("n_halos"))
        lo, hi = self.log10_m_min_msun_h, self.log10_m_max_msun_h
        _require(
            8.0 <= lo <= 17.0,
            f"{k('log10_m_min_msun_h')} must be in [8, 17]; got {lo}",
            k("log10_m_min_msun_h"),
        )
        _require(
            lo + 0.01 <= hi <= 17.0,
            f"{k('log10_m_max_msun_h')} must be at least 0.01 above log10_m_min_msun_h and "
            f"at most 17; got log10_m_min_msun_h={lo}, log10_m_max_msun_h={hi}",
            k("log10_m_max_msun_h"), k("log10_m_min_msun_h"),
        )
        _one_of(self.mode, CATALOG_MODES, k("mode"))
        _require(self.seed >= 0, f"{k('seed')} must be >= 0; got {self.seed}", k("seed"))
        _require(
            self.concentration_scatter_dex >= 0.0,
            f"{k('concentration_scatter_dex')} must be >= 0; "
            f"got {self.concentration_scatter_dex}",
            k("concentration_scatter_dex"),
        )
        _require(
            0.0 <= self.merger_fraction <= 1.0,
            f"{k('merger_fraction')} must be in [0, 1]; got {self.merger_fraction}",
            k("merger_fraction"),
        )


@dataclass(frozen=True)
class MapsConfig(_Section):
    """Geometry and content of the projected maps.

    Attributes
    ----------
    npix : int
        Pixels per map side; maps are ``(npix, npix)``.
    pixel_mpc : float
        Side of one pixel [physical Mpc]; the map spans ``npix * pixel_mpc``.
    depth_mpc : float
        Projection depth along the line of sight [physical Mpc].
    backend : str
        SPH projection backend, one of :data:`PROJECTION_BACKENDS` (``exact`` is the slow
        reference, ``mesh3d`` and ``fast`` the production ones).
    channels : tuple of str
        Map channels, in order, each one of :data:`KNOWN_MAP_CHANNELS`, no repeats (default
        :data:`MAP_CHANNELS`; ``kappa`` is the optional weak-lensing convergence).
    """

    section: ClassVar[str] = "maps"

    npix: int = 128
    pixel_mpc: float = 0.1
    depth_mpc: float = 12.8
    backend: str = "fast"
    channels: tuple[str, ...] = MAP_CHANNELS

    def _validate(self) -> None:
        k = self._key
        _require(self.npix > 0, f"{k('npix')} must be > 0; got {self.npix}", k("npix"))
        _require(
            self.pixel_mpc > 0.0, f"{k('pixel_mpc')} must be > 0; got {self.pixel_mpc}",
            k("pixel_mpc"),
        )
        _require(
            self.depth_mpc > 0.0, f"{k('depth_mpc')} must be > 0; got {self.depth_mpc}",
            k("depth_mpc"),
        )
        _one_of(self.backend, PROJECTION_BACKENDS, k("backend"))
        _require(len(self.channels) > 0, f"{k('channels')} must not be empty", k("channels"))
        for i, name in enumerate(self.channels):
            _one_of(name, KNOWN_MAP_CHANNELS, f"{k('channels')}[{i}]")
        _require(
            len(set(self.channels)) == len(self.channels),
            f"{k('channels')} must not repeat a channel; got {list(self.channels)}",
            k("channels"),
        )


@dataclass(frozen=True)
class SphConfig(_Section):
    """SPH smoothing and projection.

    Attributes
    ----------
    n_neighbours : int
        Number of neighbours that sets each particle's smoothing length where the source
        has none (e.g. dark matter) [count].
    num_threads : int
        Threads for the projection kernels [count]; 0 means all cores.
    """

    section: ClassVar[str] = "sph"

    n_neighbours: int = 32
    num_threads: int = 0

    def _validate(self) -> None:
        k = self._key
        _require(
            self.n_neighbours > 0, f"{k('n_neighbours')} must be > 0; got {self.n_neighbours}",
            k("n_neighbours"),
        )
        _require(
            self.num_threads >= 0,
            f"{k('num_threads')} must be >= 0 (0 = all cores); got {self.num_threads}",
            k("num_threads"),
        )


@dataclass(frozen=True)
class PlasmaConfig(_Section):
    """Plasma constants for the SZ and X-ray channels.

    Attributes
    ----------
    hydrogen_mass_fraction : float
        Hydrogen mass fraction X of the gas [dimensionless], in (0, 1].
    gaunt_factor : float
        Frequency-averaged free-free Gaunt factor of the X-ray emissivity [dimensionless].
    """

    section: ClassVar[str] = "plasma"

    hydrogen_mass_fraction: float = 0.76
    gaunt_factor: float = 1.2

    def _validate(self) -> None:
        k = self._key
        _require(
            0.0 < self.hydrogen_mass_fraction <= 1.0,
            f"{k('hydrogen_mass_fraction')} must be in (0, 1]; "
            f"got {self.hydrogen_mass_fraction}",
            k("hydrogen_mass_fraction"),
        )
        _require(
            self.gaunt_factor > 0.0, f"{k('gaunt_factor')} must be > 0; got {self.gaunt_factor}",
            k("gaunt_factor"),
        )


@dataclass(frozen=True)
class SourceConfig(_Section):
    """Where halo particles come from.

    Attributes
    ----------
    kind : str
        One of :data:`SOURCE_KINDS`: ``analytic`` (synthetic halos), ``hdf5`` (real halos) or
        ``mock`` (mock clusters over the halo catalog, settings in the ``mock`` section).
    path : str
        HDF5 file or directory of files, for ``kind: hdf5`` (required there).
    analytic_log10_m200m_msun_h : tuple of float
        log10 of M200m [Msun/h] of each analytic halo; halo ``i`` has the ``i``-th mass.
    analytic_pair_mass_msun_h : float
        Mass of one dark-matter plus one gas particle, m_pair [Msun/h]: equal numbers of each,
        m_DM = (1 - f_b) m_pair and m_gas = f_b m_pair with f_b = omega_b / omega_m.
    seed : int
        Seed of the analytic halos' random particles, >= 0.
    """

    section: ClassVar[str] = "source"

    kind: str = "mock"
    path: str = ""
    analytic_log10_m200m_msun_h: tuple[float, ...] = (14.0, 14.5)
    analytic_pair_mass_msun_h: float = 1e10
    seed: int = 0

    def _validate(self) -> None:
        k = self._key
        _one_of(self.kind, SOURCE_KINDS, k("kind"))
        if self.kind == "hdf5":
            _require(
                bool(self.path.strip()),
                f"{k('path')} must name an HDF5 file or directory when source.kind is hdf5",
                k("path"), k("kind"),
            )
        _require(
            len(self.analytic_log10_m200m_msun_h) > 0,
            f"{k('analytic_log10_m200m_msun_h')} must list at least one mass",
            k("analytic_log10_m200m_msun_h"),
        )
        _require(
            self.analytic_pair_mass_msun_h > 0.0,
            f"{k('analytic_pair_mass_msun_h')} must be > 0; "
            f"got {self.analytic_pair_mass_msun_h}",
            k("analytic_pair_mass_msun_h"),
        )
        _require(self.seed >= 0, f"{k('seed')} must be >= 0; got {self.seed}", k("seed"))


@dataclass(frozen=True)
class MockConfig(_Section):
    """Mock clusters over the halo catalog (:mod:`cmpipe.physics.mock`, ``source.kind: mock``).

    Every realism knob can be switched off (for tests against analytic profiles).

    Attributes
    ----------
    pair_mass_msun_h : float
        Mass of one dark-matter plus one gas particle, m_pair [Msun/h], > 0: fixed across halos,
        m_DM = (1 - f_b) m_pair, m_gas = f_b m_pair. The paper's scale: 1e9; fast: 1e10.
    truncation_r200m : float
        Radius where the NFW dark matter is truncated [R200m], > 0.
    infall : bool
        Add an infall shell ``(1 - f_b) rho_bar_m [1 + b xi_mm(r)]`` beyond the truncation.
    infall_extent_r200m : float
        Outer radius of the infall shell [R200m], > ``truncation_r200m`` when ``infall``.
    triaxial : bool
        Stretch the dark matter by the catalog's axis ratios and orientation.
    substructure : bool
        Subhalos from the evolved subhalo mass function (the catalog's ``f_sub``), Einasto
        radial distribution, truncated NFW, 90 % of their gas stripped; their particles replace
        host particles, so M200m is kept.
    clumping : bool
        Log-normal sub-resolution clumping of the gas density, clumping factor
        ``C(r) = <rho^2>/<rho>^2 = min(1 + C0 (r/R200m)^2, 3)`` with the catalog's ``clumping_c0``;
        volumes (hence y and the mass maps) unchanged in expectation, the emission measure
        raised by C.
    mergers : bool
        For the catalog's merging halos, a secondary halo (truncated NFW DM and gas, mass ratio,
        separation, direction and gas lag from the catalog).
    shocks : bool
        For merging halos (needs ``mergers``), a Rankine-Hugoniot merger shock at the catalog's
        ``merger_mach`` in the primary's ICM ahead of the secondary: a layer of the primary's gas
        (front 0.25 R200m_s beyond the secondary's DM, 0.5 R200m_s thick, cap radius R200m_s,
        edges smoothed over one smoothing length) gets its pressure times ``(5 M^2 - 1) / 4``
        and its density times ``4 M^2 / (M^2 + 3)``.
    gas_from_hse : bool
        Gas density from hydrostatic equilibrium with the DPP pressure; false: the DM profile
        times f_b / (1 - f_b).
    nonthermal_support : bool
        Non-thermal pressure support (Nelson et al. 2014) in the hydrostatic equilibrium.
    gas_shape : bool
        Rounder gas (half the DM's ellipticity) tilted by the catalog's misalignment; false:
        spherical gas.
    background : bool
        Uniform DM and gas at the cosmic mean densities around the halo, filling the
        projection box.
    scatter : bool
        Apply the catalog's gas-fraction and pressure factors.
    n_neighbours_temperature : int
        Neighbours of the SPH density that sets each gas particle's temperature [count], >= 2.
    transition : bool
        Smooth outskirts: the DM follows NFW times the Diemer & Kravtsov (2014) transition term
        (no truncation), plus the smooth two-halo term ``rho_bar_m b xi_lin`` outside it, and the
        background fills the whole sphere; replaces ``truncation_r200m`` and ``infall``.
    observed_baryons : bool
        Gas from the catalog's pressure family (Arnaud et al. 2010 cool-core or disturbed fits),
        its amplitude set by the Vikhlinin et al. (2009) f_gas,500-M relation with scatter, the
        non-thermal fraction scaled per halo; false: the DPP pressure at its P500 amplitude.
    neighbours : bool
        Neighbouring and line-of-sight halos from the mass function, clustered about the halo,
        in the projected sphere (:mod:`cmpipe.physics.neighbours`).
    neighbour_min_particles : int
        Fewest DM particles of a neighbour halo [count], >= 1: lighter halos stay in the smooth
        background and two-halo term.
    gas_clumps : bool
        Resolved gas clumps carrying ``gas_clump_fraction`` of the halo's gas between 0.3 and 2
        R200m, visible in the gas map.
    gas_clump_fraction : float
        Gas mass fraction in resolved clumps [dimensionless], in [0, 0.5].
    """

    section: ClassVar[str] = "mock"

    pair_mass_msun_h: float = 1e10
    truncation_r200m: float = 1.0
    infall: bool = True
    infall_extent_r200m: float = 3.0
    triaxial: bool = True
    substructure: bool = True
    clumping: bool = True
    mergers: bool = True
    shocks: bool = False
    gas_from_hse: bool = True
    nonthermal_support: bool = True
    gas_shape: bool = True
    background: bool = True
    scatter: bool = True
    n_neighbours_temperature: int = 32
    transition: bool = True
    observed_baryons: bool = True
    neighbours: bool = True
    neighbour_min_particles: int = 100
    gas_clumps: bool = True
    gas_clump_fraction: float = 0.03

    def _validate(self) -> None:
        k = self._key
        _require(
            self.neighbour_min_particles >= 1,
            f"{k('neighbour_min_particles')} must be >= 1; got {self.neighbour_min_particles}",
            k("neighbour_min_particles"),
        )
        _require(
            0.0 <= self.gas_clump_fraction <= 0.5,
            f"{k('gas_clump_fraction')} must be in [0, 0.5]; got {self.gas_clump_fraction}",
            k("gas_clump_fraction"),
        )
        _require(
            self.pair_mass_msun_h > 0.0,
            f"{k('pair_mass_msun_h')} must be > 0; got {self.pair_mass_msun_h}",
            k("pair_mass_msun_h"),
        )
        _require(
            self.truncation_r200m > 0.0,
            f"{k('truncation_r200m')} must be > 0; got {self.truncation_r200m}",
            k("truncation_r200m"),
        )
        if self.infall:
            _require(
                self.infall_extent_r200m > self.truncation_r200m,
                f"{k('infall_extent_r200m')} must exceed truncation_r200m when infall is true; "
                f"got infall_extent_r200m={self.infall_extent_r200m}, "
                f"truncation_r200m={self.truncation_r200m}",
                k("infall_extent_r200m"), k("truncation_r200m"),
            )
        _require(
            self.n_neighbours_temperature >= 2,
            f"{k('n_neighbours_temperature')} must be >= 2; got {self.n_neighbours_temperature}",
            k("n_neighbours_temperature"),
        )
        _require(
            self.mergers or not self.shocks,
            f"{k('shocks')} needs mock.mergers (the shock rides on a merger's secondary); "
            f"got shocks={self.shocks}, mergers={self.mergers}",
            k("shocks"),
        )


@dataclass(frozen=True)
class GenerateConfig(_Section):
    """The training set: sightline plan and image store (``cmpipe generate``, :mod:`cmpipe.mapmaking.plan`).

    Attributes
    ----------
    images_per_0p1dex : int
        Target images per 0.1 dex of log10 M200m [count], >= 1 (rounded up to a multiple of
        ``axes_per_rotation``); the paper: about 3000.
    max_rotations_per_halo : int
        Cap on the rotations of one halo [count], >= 1: rare massive halos get more rotations
        up to it; common low-mass halos are subsampled.
    axes_per_rotation : int
        Distinct cardinal axes projected per rotation [count], 1 to 3.
    split_fractions : tuple of float
        Train, val and test fractions of the halos, three values >= 0 summing to 1 (train > 0);
        all images of a halo are in one split.
    chunk_images : int
        Images per Zarr chunk (shard) along the image axis [count], >= 1: the unit of work and
        of writing.
    seed : int
        Seed of the plan (subsampling, split, rotations), >= 0.
    normalisation : str
        Transform before the global per-channel min-max over the train split: ``log``
        (log10 with a floor) or ``linear``.
    log_floor_fraction : float
        Floor of a channel's log transform as a fraction of the channel's maximum over the
        train images [dimensionless], in (0, 1): ``log10(max(x, fraction * max))``.
    test_images_per_halo : int
        Images kept per test halo [count], >= 0; 0: every planned image. A small value (1 or
        2) gives many distinct test halos for few test images (:mod:`cmpipe.mapmaking.plan`).
    """

    section: ClassVar[str] = "generate"

    images_per_0p1dex: int = 3000
    max_rotations_per_halo: int = 50
    axes_per_rotation: int = 3
    split_fractions: tuple[float, ...] = (0.8, 0.1, 0.1)
    chunk_images: int = 64
    seed: int = 0
    normalisation: str = "log"
    log_floor_fraction: float = 1e-6
    test_images_per_halo: int = 0

    def _validate(self) -> None:
        k = self._key
        _require(self.test_images_per_halo >= 0,
                 f"{k('test_images_per_halo')} must be >= 0 (0: every image); got {self.test_images_per_halo}",
                 k("test_images_per_halo"))
        for name in ("images_per_0p1dex", "max_rotations_per_halo", "chunk_images"):
            value = getattr(self, name)
            _require(value >= 1, f"{k(name)} must be >= 1; got {value}", k(name))
        _require(
            1 <= self.axes_per_rotation <= 3,
            f"{k('axes_per_rotation')} must be 1, 2 or 3; got {self.axes_per_rotation}",
            k("axes_per_rotation"),
        )
        fr = self.split_fractions
        _require(
            len(fr) == 3 and all(f >= 0.0 for f in fr) and fr[0] > 0.0 and abs(sum(fr) - 1.0) <= 1e-9,
            f"{k('split_fractions')} must be three fractions (train, val, test), each >= 0, "
            f"train > 0, summing to 1; got {list(fr)}",
            k("split_fractions"),
        )
        _require(self.seed >= 0, f"{k('seed')} must be >= 0; got {self.seed}", k("seed"))
        _one_of(self.normalisation, ("log", "linear"), k("normalisation"))
        _require(
            0.0 < self.log_floor_fraction < 1.0,
            f"{k('log_floor_fraction')} must be in (0, 1); got {self.log_floor_fraction}",
            k("log_floor_fraction"),
        )


@dataclass(frozen=True)
class InstrumentConfig(_Section):
    """Instrument effects on the condition maps, all off by default (:mod:`cmpipe.mapmaking.instrument`).

    Attributes
    ----------
    redshift : float
        Observing redshift setting angular scales (beam, pixel solid angle), > 0.
    beam_fwhm_arcmin : float
        FWHM of the Gaussian beam on y [arcmin], >= 0 (0: none).
    y_white_noise : float
        rms of white noise per pixel on y [dimensionless], >= 0.
    y_red_noise : float
        rms of correlated noise per pixel on y [dimensionless], >= 0.
    y_red_noise_scale_mpc : float
        Correlation length (Gaussian sigma) of that noise [Mpc], > 0.
    xray_exposure_s : float
        Exposure time [s], >= 0 (0: no photon noise on S_X).
    xray_effective_area_cm2 : float
        Effective area [cm^2], > 0.
    xray_photon_energy_kev : float
        Mean photon energy converting energy to counts [keV], > 0.
    xray_background : float
        Background surface brightness [erg s^-1 cm^-2 sr^-1], >= 0.
    mask_sources : int
        Point sources masked (discs set to 0 in y and S_X) [count], >= 0.
    mask_radius_mpc : float
        Radius of a masked disc [Mpc], > 0.
    kappa_shape_noise : float
        Galaxy shape noise sigma_e per ellipticity component on the ``kappa`` channel
        [dimensionless], >= 0 (0: none).
    kappa_galaxy_density_arcmin2 : float
        Source-galaxy density of the shape noise [arcmin^-2], > 0.
    """

    section: ClassVar[str] = "instrument"

    redshift: float = 0.05
    beam_fwhm_arcmin: float = 0.0
    y_white_noise: float = 0.0
    y_red_noise: float = 0.0
    y_red_noise_scale_mpc: float = 0.5
    xray_exposure_s: float = 0.0
    xray_effective_area_cm2: float = 500.0
    xray_photon_energy_kev: float = 1.0
    xray_background: float = 0.0
    mask_sources: int = 0
    mask_radius_mpc: float = 0.1
    kappa_shape_noise: float = 0.0
    kappa_galaxy_density_arcmin2: float = 30.0

    def _validate(self) -> None:
        k = self._key
        for name in ("redshift", "y_red_noise_scale_mpc", "xray_effective_area_cm2", "xray_photon_energy_kev",
                     "mask_radius_mpc", "kappa_galaxy_density_arcmin2"):
            value = getattr(self, name)
            _require(value > 0, f"{k(name)} must be > 0; got {value}", k(name))
        for name in ("beam_fwhm_arcmin", "y_white_noise", "y_red_noise", "xray_exposure_s", "xray_background",
                     "mask_sources", "kappa_shape_noise"):
            value = getattr(self, name)
            _require(value >= 0, f"{k(name)} must be >= 0; got {value}", k(name))


@dataclass(frozen=True)
class LensingConfig(_Section):
    """Lens and source redshifts of the weak-lensing convergence channel ``kappa``.

    ``kappa = Sigma_total / Sigma_crit``, ``Sigma_crit = c^2 / (4 pi G) D_s / (D_l D_ls)``
    (physical angular-diameter distances of the ``cosmology``; :mod:`cmpipe.mapmaking.maps`).

    Attributes
    ----------
    z_lens : float
        Redshift of the lens (the clusters), > 0.
    z_source : float
        Redshift of the source galaxies, > z_lens.
    """

    section: ClassVar[str] = "lensing"

    z_lens: float = 0.3
    z_source: float = 1.0

    def _validate(self) -> None:
        k = self._key
        _require(self.z_lens > 0.0, f"{k('z_lens')} must be > 0; got {self.z_lens}", k("z_lens"))
        _require(
            self.z_source > self.z_lens,
            f"{k('z_source')} must be > lensing.z_lens; got z_source={self.z_source}, z_lens={self.z_lens}",
            k("z_source"), k("z_lens"),
        )


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The score model (:mod:`cmpipe.model.network`): conditional NCSN++ under the VE SDE.

    Attributes
    ----------
    kind : str
        ``score`` (the conditional score-based diffusion model) or ``unet`` (the deterministic
        U-Net regression baseline of :mod:`cmpipe.model.unet`, de Andres et al. 2024: same data,
        training loop and checkpoints; ``nf``, ``ch_mult``, ``num_res_blocks`` set its widths,
        the other keys are unused).
    resolution : int
        Side of the maps the model sees [pixels], > 0: a divisor of ``maps.npix`` (block means
        of the store's maps) and a multiple of ``2**(len(ch_mult) - 1)``.
    nf : int
        Base number of feature maps of NCSN++ [count], > 0.
    ch_mult : tuple of int
        Feature multiplier per resolution level, each >= 1 (one level per entry).
    num_res_blocks : int
        Residual blocks per resolution level [count], >= 1.
    attention : bool
        Self-attention at the lowest resolution.
    fir : bool
        FIR-filtered up/down-sampling (2.5-4x slower on CPU).
    sigma_min : float
        Smallest noise level of the VE SDE [normalised units], > 0.
    sigma_max : float
        Largest noise level [normalised units]: 0 computes it from the training data (the
        largest pairwise distance between training images, Song & Ermon 2020); else > sigma_min.
    conditions : tuple of str
        The model's condition channels, in order: non-empty, no repeats, each a map channel
        (:data:`KNOWN_MAP_CHANNELS`) other than the targets ``gas_sigma``, ``dm_sigma``. The
        store must hold them.
    """

    section: ClassVar[str] = "model"
    KINDS: ClassVar[tuple[str, ...]] = ("score", "unet")

    kind: str = "score"
    resolution: int = 128
    nf: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention: bool = True
    fir: bool = False
    sigma_min: float = 0.01
    sigma_max: float = 0.0
    conditions: tuple[str, ...] = ("sz_y", "xray_sb")

    def _validate(self) -> None:
        k = self._key
        _one_of(self.kind, self.KINDS, k("kind"))
        _require(len(self.conditions) > 0, f"{k('conditions')} must not be empty", k("conditions"))
        allowed = tuple(c for c in KNOWN_MAP_CHANNELS if c not in MODEL_TARGETS)
        for i, name in enumerate(self.conditions):
            _one_of(name, allowed, f"{k('conditions')}[{i}]")
        _require(
            len(set(self.conditions)) == len(self.conditions),
            f"{k('conditions')} must not repeat a channel; got {list(self.conditions)}",
            k("conditions"),
        )
        for name in ("nf", "num_res_blocks"):
            value = getattr(self, name)
            _require(value >= 1, f"{k(name)} must be >= 1; got {value}", k(name))
        _require(
            len(self.ch_mult) >= 1 and all(m >= 1 for m in self.ch_mult),
            f"{k('ch_mult')} must be a non-empty list of ints >= 1; got {list(self.ch_mult)}",
            k("ch_mult"),
        )
        step = 2 ** (len(self.ch_mult) - 1)
        _require(
            self.resolution >= 1 and self.resolution % step == 0,
            f"{k('resolution')} must be a positive multiple of 2**(len(ch_mult) - 1) = {step}; "
            f"got {self.resolution}",
            k("resolution"), k("ch_mult"),
        )
        _require(self.sigma_min > 0.0, f"{k('sigma_min')} must be > 0; got {self.sigma_min}", k("sigma_min"))
        _require(
            self.sigma_max == 0.0 or self.sigma_max > self.sigma_min,
            f"{k('sigma_max')} must be 0 (from the data) or > sigma_min; "
            f"got sigma_max={self.sigma_max}, sigma_min={self.sigma_min}",
            k("sigma_max"), k("sigma_min"),
        )


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Training of the score model (:mod:`cmpipe.model.training`).

    Attributes
    ----------
    batch_size : int
        Images per optimizer step [count], >= 1 (over all workers under Ray Train).
    lr : float
        Adam learning rate after the warm-up, > 0.
    warmup_steps : int
        Steps of linear learning-rate warm-up [count], >= 0.
    clip_norm : float
        Gradient-norm clipping threshold, >= 0 (0: no clipping).
    ema_decay : float
        Decay of the exponential moving average of the weights, in [0, 1).
    max_steps : int
        Optimizer steps of the run [count], >= 1.
    checkpoint_every : int
        Steps between checkpoints [count], >= 1 (and one at the end).
    keep_checkpoints : int
        Checkpoints kept, the latest [count], >= 1.
    val_every : int
        Steps between validation losses [count], >= 1.
    val_batches : int
        Batches of the val split per validation loss [count], >= 1.
    num_workers : int
        DataLoader worker processes per training process [count], >= 0.
    augment : bool
        Random flips and quarter turns of the training images (same for maps and conditions).
    use_gpu : bool
        Train on GPUs (Ray Train); false: CPU.
    seed : int
        Seed of initialisation, batches, augmentation and noise, >= 0.
    unet_baseline_steps : int
        Steps of the U-Net regression baseline [count], >= 0: ``cmpipe pipeline`` / ``cmpipe demo``
        also train a ``model.kind: unet`` model on the same store with the other settings of this
        section (into ``OUT/run_unet``) and evaluate it on the same test images as a baseline
        (``RESULTS/baselines/unet``); 0: none.
    """

    section: ClassVar[str] = "train"

    batch_size: int = 32
    lr: float = 2e-4
    warmup_steps: int = 1000
    clip_norm: float = 1.0
    ema_decay: float = 0.999
    max_steps: int = 200000
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    val_every: int = 1000
    val_batches: int = 4
    num_workers: int = 1
    augment: bool = True
    use_gpu: bool = False
    seed: int = 0
    unet_baseline_steps: int = 0

    def _validate(self) -> None:
        k = self._key
        for name in ("batch_size", "max_steps", "checkpoint_every", "keep_checkpoints", "val_every", "val_batches"):
            value = getattr(self, name)
            _require(value >= 1, f"{k(name)} must be >= 1; got {value}", k(name))
        for name in ("warmup_steps", "num_workers", "seed", "unet_baseline_steps"):
            value = getattr(self, name)
            _require(value >= 0, f"{k(name)} must be >= 0; got {value}", k(name))
        _require(self.lr > 0.0, f"{k('lr')} must be > 0; got {self.lr}", k("lr"))
        _require(self.clip_norm >= 0.0, f"{k('clip_norm')} must be >= 0; got {self.clip_norm}", k("clip_norm"))
        _require(
            0.0 <= self.ema_decay < 1.0, f"{k('ema_decay')} must be in [0, 1); got {self.ema_decay}",
            k("ema_decay"),
        )


SAMPLER_NAMES = ("em", "pc", "heun", "dpm2m", "edm")


@dataclass(frozen=True)
class InferConfig(_Section):
    """Posterior sampling of the test split (:mod:`cmpipe.pipeline.infer`).

    Attributes
    ----------
    n_samples : int
        Posterior samples per test image [count], >= 2 (the paper: 50).
    sampler : str
        One of :data:`SAMPLER_NAMES`: ``em`` reverse-SDE Euler-Maruyama (the paper's), ``pc``
        predictor-corrector, ``heun`` probability-flow ODE (Heun, EDM schedule), ``dpm2m``
        DPM-Solver++(2M), ``edm`` the stochastic EDM sampler (Heun with churn)
        (:mod:`cmpipe.model.sampling`).
    steps : int
        Sampler steps [count], >= 1.
    denoise : bool
        End with one denoising (Tweedie) step at sigma_min.
    batch_size : int
        Network rows (image x sample) per forward pass [count], >= 1.
    images_per_batch : int
        Test images per Ray Data batch handed to an actor [count], >= 1.
    actors : int
        Size of the Ray Data actor pool [count], >= 1.
    cpus_per_actor : float
        CPUs reserved by one actor (fractional allowed), > 0.
    gpus_per_actor : float
        GPUs of one actor [count], >= 0 (0: CPU).
    threads_per_actor : int
        torch threads inside one actor [count], >= 1.
    save_samples : bool
        Also write every sample to ``posterior.zarr`` (else only the mean and standard deviation).
    seed : int
        Image ``i`` of the store samples from seed ``[seed, i]``: independent of batching, >= 0.
    """

    section: ClassVar[str] = "infer"

    n_samples: int = 50
    sampler: str = "em"
    steps: int = 1000
    denoise: bool = True
    batch_size: int = 64
    images_per_batch: int = 4
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 1.0
    threads_per_actor: int = 4
    save_samples: bool = False
    seed: int = 0

    def _validate(self) -> None:
        k = self._key
        _require(self.n_samples >= 2, f"{k('n_samples')} must be >= 2; got {self.n_samples}", k("n_samples"))
        _one_of(self.sampler, SAMPLER_NAMES, k("sampler"))
        for name in ("steps", "batch_size", "images_per_batch", "actors", "threads_per_actor"):
            value = getattr(self, name)
            _require(value >= 1, f"{k(name)} must be >= 1; got {value}", k(name))
        _require(self.cpus_per_actor > 0, f"{k('cpus_per_actor')} must be > 0; got {self.cpus_per_actor}",
                 k("cpus_per_actor"))
        _require(self.gpus_per_actor >= 0, f"{k('gpus_per_actor')} must be >= 0; got {self.gpus_per_actor}",
                 k("gpus_per_actor"))
        _require(self.seed >= 0, f"{k('seed')} must be >= 0; got {self.seed}", k("seed"))


@dataclass(frozen=True)
class EvaluateConfig(_Section):
    """The paper's section 4 metrics and report (:mod:`cmpipe.evaluation.image`, ``cmpipe report``).

    Attributes
    ----------
    test_log10_m_min_msun_h, test_log10_m_max_msun_h : float
        Test images outside [min, max) of log10 M200m [log10 Msun/h] are left out of the
        summaries (the paper tests on an inner mass range).
    mass_split_log10_msun_h : float
        Low / high mass boundary of Table 1 and the split figures [log10 Msun/h]; 0 (default):
        the log midpoint of the evaluated test halos' masses (:func:`cmpipe.evaluation.report.resolve_mass_split`).
    k_split_mpc_inv : float
        Large / small scale boundary of Table 1 [Mpc^-1]; 0: sqrt(k_F k_Nyq) of the model's grid.
    convergence_tolerance : float
        Converged once the Monte-Carlo error of the posterior mean, sigma / sqrt(n), is below this
        fraction of its actual error |mean_n - truth| (median over the pixels within R200m,
        :func:`cmpipe.evaluation.metrics.mean_convergence`) [dimensionless]; 0.25: a calibrated posterior
        needs about 35 samples.
    """

    section: ClassVar[str] = "evaluate"

    test_log10_m_min_msun_h: float = 13.75
    test_log10_m_max_msun_h: float = 15.25
    mass_split_log10_msun_h: float = 0.0
    k_split_mpc_inv: float = 0.0
    convergence_tolerance: float = 0.25

    def _validate(self) -> None:
        k = self._key
        _require(
            self.test_log10_m_min_msun_h < self.test_log10_m_max_msun_h,
            f"{k('test_log10_m_min_msun_h')} must be < {k('test_log10_m_max_msun_h')}",
            k("test_log10_m_min_msun_h"), k("test_log10_m_max_msun_h"),
        )
        _require(self.mass_split_log10_msun_h >= 0,
                 f"{k('mass_split_log10_msun_h')} must be >= 0 (0: the log midpoint of the test halos); "
                 f"got {self.mass_split_log10_msun_h}", k("mass_split_log10_msun_h"))
        _require(self.k_split_mpc_inv >= 0, f"{k('k_split_mpc_inv')} must be >= 0; got {self.k_split_mpc_inv}",
                 k("k_split_mpc_inv"))
        _require(self.convergence_tolerance > 0,
                 f"{k('convergence_tolerance')} must be > 0; got {self.convergence_tolerance}",
                 k("convergence_tolerance"))


@dataclass(frozen=True)
class RenderConfig(_Section):
    """Which halo to render and how (``cmpipe render-halo``).

    Attributes
    ----------
    halo_id : int
        Identifier of the halo within its source, >= 0.
    axis : int
        Line-of-sight axis: 0 (x), 1 (y) or 2 (z), applied after the rotation.
    rotation_seed : int
        Seed of a uniformly random rotation of the halo; -1 means no rotation (identity).
    save_npz : bool
        Also save the maps as a NumPy ``.npz`` next to the figures.
    """

    section: ClassVar[str] = "render"

    halo_id: int = 0
    axis: int = 2
    rotation_seed: int = -1
    save_npz: bool = True

    def _validate(self) -> None:
        k = self._key
        _require(
            self.halo_id >= 0, f"{k('halo_id')} must be >= 0; got {self.halo_id}", k("halo_id")
        )
        _require(
            self.axis in (0, 1, 2), f"{k('axis')} must be 0, 1 or 2; got {self.axis}", k("axis")
        )
        _require(
            self.rotation_seed >= -1,
            f"{k('rotation_seed')} must be >= 0, or -1 for no rotation; got {self.rotation_seed}",
            k("rotation_seed"),
        )


@dataclass(frozen=True)
class RunConfig(_Section):
    """Where a run writes, and how loudly.

    Attributes
    ----------
    out : str
        Output directory of the run (created when the run writes).
    log_level : str
        Logging level, one of :data:`LOG_LEVELS` (any case; stored upper-case).
    """

    section: ClassVar[str] = "run"

    out: str = "runs/default"
    log_level: str = "INFO"

    def _validate(self) -> None:
        k = self._key
        _require(bool(self.out.strip()), f"{k('out')} must not be empty", k("out"))
        object.__setattr__(self, "log_level", self.log_level.upper())
        _one_of(self.log_level, LOG_LEVELS, k("log_level"))


@dataclass(frozen=True)
class Config:
    """The whole configuration: one attribute per section.

    Build it with :func:`load_config`; ``Config()`` holds the defaults (the paper's values).
    Frozen and hashable, so it can be passed to Ray tasks and compared for equality.
    """

    cosmology: CosmologyConfig = field(default_factory=CosmologyConfig)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    maps: MapsConfig = field(default_factory=MapsConfig)
    sph: SphConfig = field(default_factory=SphConfig)
    plasma: PlasmaConfig = field(default_factory=PlasmaConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    mock: MockConfig = field(default_factory=MockConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    instrument: InstrumentConfig = field(default_factory=InstrumentConfig)
    lensing: LensingConfig = field(default_factory=LensingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    infer: InferConfig = field(default_factory=InferConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        for name, cls in _field_types(Config).items():
            value = getattr(self, name)
            if not isinstance(value, cls):
                raise ConfigError(
                    f"Config.{name} must be a {cls.__name__}, got {type(value).__name__}"
                )


def _sections() -> dict[str, type[_Section]]:
    """Section name -> section class, in :class:`Config` field order."""
    return dict(_field_types(Config))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def shipped_configs() -> tuple[str, ...]:
    """Names of the configurations shipped in ``cmpipe/configs`` (e.g. ``demo``, ``paper``).

    Returns
    -------
    tuple of str
        Sorted names, usable as ``load_config(name)`` and ``cmpipe ... --config name``.
    """
    root = importlib.resources.files("cmpipe.configs")
    return tuple(
        sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))
    )


def _read_config_text(name_or_path: str | os.PathLike[str]) -> tuple[str, str]:
    """Return ``(source label, YAML text)`` for a shipped name or a file path."""
    if isinstance(name_or_path, str) and _BARE_NAME.fullmatch(name_or_path):
        resource = importlib.resources.files("cmpipe.configs") / f"{name_or_path}.yaml"
        if resource.is_file():
            return str(resource), resource.read_text(encoding="utf-8")
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return str(path), path.read_text(encoding="utf-8")
    if path.is_dir():
        raise ConfigError(f"config {str(name_or_path)!r} is a directory, not a YAML file")
    raise ConfigError(
        f"no config {str(name_or_path)!r}: not a shipped config name "
        f"(shipped: {', '.join(shipped_configs())}) and no file at {path}"
    )


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects duplicate keys instead of keeping the last one."""


def _construct_unique_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r}", key_node.start_mark,
            )
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping
)


def _parse_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {source}:\n{exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source} must hold a mapping of sections, got {type(data).__name__}"
        )
    return data


def _unknown(what: str, name: str, where: str, known: Sequence[str]) -> ConfigError:
    close = difflib.get_close_matches(name.rsplit(".", 1)[-1], known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(f"unknown {what} {name!r} {where} ({hint}known: {', '.join(known)})")


def _section_class(section: Any, where: str) -> type[_Section]:
    sections = _sections()
    if not isinstance(section, str) or section not in sections:
        raise _unknown("section", str(section), where, list(sections))
    return sections[section]


def _check_key(cls: type[_Section], section: str, key: Any, where: str) -> str:
    known = list(_field_types(cls))
    if not isinstance(key, str) or key not in known:
        raise _unknown("key", f"{section}.{key}", where, known)
    return key


def _parse_override(item: str) -> tuple[str, str, Any]:
    """Split ``section.key=value``; parse the value with ``yaml.safe_load``."""
    where = f"in override {item!r}"
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    dotted, _, text = item.partition("=")
    section, dot, key = dotted.strip().partition(".")
    if not dot or not section or not key or "." in key:
        raise ConfigError(f"override {item!r} is not of the form section.key=value")
    cls = _section_class(section, where)
    _check_key(cls, section, key, where)
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse the value of override {item!r}:\n{exc}") from None
    if _field_types(cls)[key] is str and not isinstance(value, str):
        # For a str key the text is the value: --set run.out=2024 or source.path= (empty).
        value = text.strip()
    return section, key, value


def _build(raw: Mapping[str, Mapping[str, Any]], origins: Mapping[str, str]) -> Config:
    """Construct every section from raw values, adding where a bad key was set."""
    sections = {}
    for name, cls in _sections().items():
        try:
            sections[name] = cls(**raw.get(name, {}))
        except ConfigError as exc:
            # "maps.channels[1]" was set where "maps.channels" was.
            bases = (k.split("[", 1)[0] for k in exc.keys)
            where = [origins[k] for k in bases if k in origins]
            suffix = f" ({'; '.join(dict.fromkeys(where))})" if where else ""
            raise ConfigError(f"{exc}{suffix}", exc.keys) from None
    return Config(**sections)


def config_from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Config:
    """Build a :class:`Config` from a mapping of sections, as read from YAML.

    Parameters
    ----------
    data : mapping
        ``{section: {key: value}}``; sections and keys may be omitted (defaults apply). A
        top-level ``_fingerprint`` key (written by :func:`save_resolved_config`) is ignored.
    source : str
        Where ``data`` came from, for error messages (a file path).

    Returns
    -------
    Config

    Raises
    ------
    ConfigError
        On an unknown section or key (naming the dotted key and ``source``), a value of the
        wrong type, or a value out of range.
    """
    return _load(data, source, ())


def _load(data: Mapping[str, Any], source: str, overrides: Sequence[str]) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source} must hold a mapping of sections, got {type(data).__name__}")
    where = f"in {source}"
    raw: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for section, body in data.items():
        if section == FINGERPRINT_KEY:
            continue
        cls = _section_class(section, where)
        if body is None:  # an empty section: all defaults
            body = {}
        if not isinstance(body, Mapping):
            raise ConfigError(
                f"section {section!r} {where} must be a mapping of key: value, "
                f"got {_describe(body)}"
            )
        for key, value in body.items():
            _check_key(cls, section, key, where)
            raw.setdefault(section, {})[key] = value
            origins[f"{section}.{key}"] = where
    if isinstance(overrides, str):
        raise TypeError("overrides must be a sequence of 'section.key=value' strings, not a str")
    for item in overrides:
        section, key, value = _parse_override(item)
        raw.setdefault(section, {})[key] = value
        origins[f"{section}.{key}"] = f"from override {item!r}"
    return _build(raw, origins)


def load_config(name_or_path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> Config:
    """Load a configuration by shipped name or path, then apply overrides.

    Parameters
    ----------
    name_or_path : str or path-like
        A bare name (letters, digits, ``_``, ``-``) such as ``"demo"`` or ``"paper"`` picks
        ``cmpipe/configs/<name>.yaml``; anything else is a path to a YAML file.
    overrides : sequence of str
        ``"section.key=value"`` strings applied in order after the file. The value is parsed
        with ``yaml.safe_load`` (``maps.npix=64``, ``maps.channels=[sz_y, gas_sigma]``); for a
        str key the text itself is the value (``run.out=2024``, ``source.path=`` is empty).

    Returns
    -------
    Config
        The resolved, validated configuration.

    Raises
    ------
    ConfigError
        If the name or file does not exist (listing the shipped names), the YAML is invalid,
        a section or key is unknown (naming the dotted key and the file or override), or a
        value has the wrong type or is out of range.
    """
    source, text = _read_config_text(name_or_path)
    return _load(_parse_yaml(text, source), source, overrides)


# --------------------------------------------------------------------------------------------
# Serialisation
# --------------------------------------------------------------------------------------------


def config_to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict of a configuration (tuples become lists), in field order.

    Parameters
    ----------
    cfg : Config

    Returns
    -------
    dict
        ``{section: {key: value}}`` of JSON- and YAML-safe builtins.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in _sections():
        section = getattr(cfg, name)
        values = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
        out[name] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    return out


def config_fingerprint(cfg: Config) -> str:
    """Short, stable hash of a configuration: every key, ``run`` included.

    Parameters
    ----------
    cfg : Config

    Returns
    -------
    str
        First 16 hex characters of the SHA-256 of the canonical JSON (sorted keys, no
        spaces) of :func:`config_to_dict`.
    """
    canonical = json.dumps(config_to_dict(cfg), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def config_to_yaml(cfg: Config) -> str:
    """The resolved configuration as YAML text, with its fingerprint.

    The text loads back with :func:`load_config` to an equal :class:`Config` (the
    ``_fingerprint`` key is ignored by the loader).

    Parameters
    ----------
    cfg : Config

    Returns
    -------
    str
        A header comment, ``_fingerprint: <hex>``, then every section and key.
    """
    fingerprint = config_fingerprint(cfg)
    header = (
        f"# cmpipe {__version__} resolved configuration, fingerprint {fingerprint}.\n"
        "# Load it again with --config <this file>; _fingerprint is ignored when loading.\n"
    )
    body = {FINGERPRINT_KEY: fingerprint, **config_to_dict(cfg)}
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def save_resolved_config(cfg: Config, directory: str | os.PathLike[str]) -> Path:
    """Write ``config.resolved.yaml`` (with its fingerprint) into ``directory``.

    Parameters
    ----------
    cfg : Config
    directory : str or path-like
        Created if missing (with parents), typically ``cfg.run.out``.

    Returns
    -------
    pathlib.Path
        The file written. It loads back with :func:`load_config` to a config equal to
        ``cfg`` with the same fingerprint.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESOLVED_CONFIG_NAME
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(config_to_yaml(cfg), encoding="utf-8")
    os.replace(tmp, path)
    return path

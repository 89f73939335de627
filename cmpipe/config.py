"""Configuration: one frozen dataclass per pipeline stage, loaded from YAML.

A configuration file is a YAML mapping of *sections* (``cosmology``, ``catalog``, ``maps``,
``sph``, ``plasma``, ``source``, ``mock``, ``generate``, ``instrument``, ``lensing``, ``model``,
``train``, ``infer``, ``evaluate``, ``render``, ``run``) to mappings of *keys*. Every section and
every key may be omitted (the defaults are the paper's values); an unknown section or key is an error
that names the dotted key and the file. Values are checked and coerced against the dataclass
annotations (``int``, ``float``, ``str``, ``bool`` and homogeneous ``tuple[X, ...]``), then
against the ranges and choices declared with each key, then each section's cross-field rules.

Units follow :mod:`cmpipe.physics.halo`: lengths in physical Mpc (no little h), halo masses in
Msun/h only where the key says ``_msun_h``.

Examples
--------
>>> cfg = load_config("demo", ["maps.npix=64"])          # doctest: +SKIP
>>> cfg.maps.npix, config_fingerprint(cfg)               # doctest: +SKIP
(64, '3f1c...')

Adding a key: add an annotated field to the section's dataclass, declared once with
``_key(default, unit, meaning, *checks)`` (checks: :class:`Range`, :class:`OneOf`,
:class:`NonEmpty`, :class:`Distinct`); a rule between keys goes in the section's
``_validate``. The class docstring's ``Attributes`` and the README's key table are generated
from that declaration (``python tests/test_config_table.py`` rewrites the table; a test checks
it); set the key in the shipped YAML files too (a test checks they set every key). Adding a
section: a new ``_Section`` subclass with a ``section`` class attribute, plus a field of that
name on :class:`Config`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import hashlib
import importlib.resources
import importlib.util
import json
import math
import numbers
import os
import re
import textwrap
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from cmpipe import __version__
from cmpipe.store import schema as _schema
from cmpipe.store.location import is_url

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

#: The default map channels (``maps.channels``), every map channel cmpipe knows how to make (the
#: defaults plus the optional weak-lensing convergence ``kappa``) and the model's targets (never
#: conditions): the store schema's vocabulary (:mod:`cmpipe.store.schema`, plain constants).
MAP_CHANNELS: tuple[str, ...] = _schema.CHANNELS
KNOWN_MAP_CHANNELS: tuple[str, ...] = _schema.ALL_CHANNELS
MODEL_TARGETS: tuple[str, ...] = _schema.TARGET_CHANNELS
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
# Registries: their modules are the single source of the names
# --------------------------------------------------------------------------------------------


@functools.cache
def _registry_names(module: str, variable: str) -> tuple[str, ...]:
    """Names of a registry, read from its module's source without importing the module.

    The registries live beside numba (:mod:`cmpipe.sph.projection`) and torch
    (:mod:`cmpipe.model.sampling`); importing those to check one string would make every
    ``load_config`` (and every process that reads a store's config) load them. Reading the
    module-level literal ``variable = (...)``, or the keys of ``variable = {...}``, keeps
    building a :class:`Config` cheap; ``tests/test_config_table.py`` checks the names equal
    the imported registry's.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"cmpipe.model.sampling"``.
    variable : str
        Module-level name assigned a tuple of names or a dict keyed by name.

    Returns
    -------
    tuple of str
        The names, in source order.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise LookupError(f"no source for registry module {module}")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == variable for t in targets):
            value = node.value
            items = value.keys if isinstance(value, ast.Dict) else value.elts
            return tuple(ast.literal_eval(item) for item in items)
    raise LookupError(f"{module} assigns no {variable}")


def _projection_backends() -> tuple[str, ...]:
    """SPH projection backends, :data:`cmpipe.sph.projection.BACKEND_NAMES` (``exact`` first)."""
    return _registry_names("cmpipe.sph.projection", "BACKEND_NAMES")


def _sampler_names() -> tuple[str, ...]:
    """Posterior samplers, the keys of :data:`cmpipe.model.sampling.SAMPLERS`."""
    return _registry_names("cmpipe.model.sampling", "SAMPLERS")


def __getattr__(name: str) -> tuple[str, ...]:
    """``PROJECTION_BACKENDS`` and ``SAMPLER_NAMES``, read from their registries on first use."""
    if name == "PROJECTION_BACKENDS":
        return _projection_backends()
    if name == "SAMPLER_NAMES":
        return _sampler_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _type_name(tp: Any) -> str:
    """``float``, ``tuple of str``: an annotation as the docstrings write it."""
    if typing.get_origin(tp) is tuple:
        return f"tuple of {typing.get_args(tp)[0].__name__}"
    return tp.__name__


# --------------------------------------------------------------------------------------------
# Declared checks: ranges and choices as field metadata, checked in one place
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric key: ``Range(gt=0)`` reads "> 0", ``Range(ge=0, le=1)`` "in [0, 1]".

    ``note`` is added in parentheses ("0 = all cores"); ``text`` replaces the whole description.
    The lower bound (``gt`` or ``ge``) is required.
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    note: str = ""
    text: str = ""

    def describe(self, read: bool = True) -> str:
        """What a valid value is, as the error messages and docs say it."""
        if self.text:
            return self.text
        lower, opening = (self.gt, "(") if self.gt is not None else (self.ge, "[")
        if self.lt is None and self.le is None:
            words = f"{'>' if opening == '(' else '>='} {lower}"
        else:
            upper, closing = (self.lt, ")") if self.lt is not None else (self.le, "]")
            words = f"in {opening}{lower}, {upper}{closing}"
        return f"{words} ({self.note})" if self.note else words

    def check(self, value: float, key: str) -> None:
        """Raise :class:`ConfigError` naming ``key`` if ``value`` is out of range."""
        ok = (
            (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
            and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le)
        )
        _require(ok, f"{key} must be {self.describe()}; got {value}", key)


@dataclass(frozen=True)
class OneOf:
    """Allowed values of a key, or of each element of a list key.

    ``choices`` is a tuple, or a function returning one (a registry, read when first checked);
    ``label`` is what the generated docstring says instead, so that import reads no registry.
    """

    choices: tuple[Any, ...] | Callable[[], tuple[Any, ...]]
    label: str = ""

    def names(self) -> tuple[Any, ...]:
        """The allowed values, in order."""
        return self.choices() if callable(self.choices) else self.choices

    def describe(self, read: bool = True) -> str:
        """"one of a, b, c" for names, "0, 1 or 2" for numbers; ``label`` unless ``read``."""
        if self.label and not read:
            return self.label
        names = [str(c) for c in self.names()]
        if all(isinstance(c, str) for c in self.names()):
            return f"one of {', '.join(names)}"
        return f"{', '.join(names[:-1])} or {names[-1]}"

    def check(self, value: Any, key: str) -> None:
        """Raise :class:`ConfigError` naming ``key`` (``key[i]`` in a list) if not allowed."""
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                self.check(item, f"{key}[{i}]")
            return
        _require(value in self.names(), f"{key} must be {self.describe()}; got {value!r}", key)


@dataclass(frozen=True)
class NonEmpty:
    """A list with at least one element, or a str with more than white space."""

    text: str = "not be empty"

    def describe(self, read: bool = True) -> str:
        return "non-empty"

    def check(self, value: str | tuple[Any, ...], key: str) -> None:
        size = len(value.strip()) if isinstance(value, str) else len(value)
        _require(size > 0, f"{key} must {self.text}", key)


@dataclass(frozen=True)
class Distinct:
    """A list without repeats (of a ``what``: "channel")."""

    what: str

    def describe(self, read: bool = True) -> str:
        return "no repeats"

    def check(self, value: tuple[Any, ...], key: str) -> None:
        _require(
            len(set(value)) == len(value), f"{key} must not repeat a {self.what}; got {list(value)}", key
        )


Check = Range | OneOf | NonEmpty | Distinct


def _key(
    default: Any, unit: str, meaning: str, *checks: Check, convert: Callable[[Any], Any] | None = None
) -> Any:
    """Declare a section's key once: default, unit, meaning and checks.

    Parameters
    ----------
    default : object
        The default (the paper's value); immutable (tuples for lists).
    unit : str
        Physical unit (``"Mpc"``, ``"count"``; ``"-"`` when dimensionless or a name).
    meaning : str
        One line for the docstring and the README's key table (Markdown backticks allowed).
    *checks : Range, OneOf, NonEmpty or Distinct
        Checked, in order, after the value is coerced to the field's annotation.
    convert : callable, optional
        Applied after coercion, before the checks (``str.upper`` for ``run.log_level``).
    """
    metadata = {"unit": unit, "meaning": meaning, "checks": checks, "convert": convert}
    return field(default=default, metadata=metadata)


def key_valid(f: dataclasses.Field, read: bool = True) -> str:
    """The declared checks of a key, in words ("> 0", "one of box, flat"); "" when none.

    ``read=False`` names a registry instead of reading it (:class:`OneOf`'s ``label``).
    """
    return "; ".join(check.describe(read) for check in f.metadata["checks"])


def _document_keys(cls: type[_Section]) -> type[_Section]:
    """Append a numpydoc ``Attributes`` section, built from the keys' declarations, to the docstring."""
    lines = ["", "", "    Attributes", "    ----------"]
    for f, tp in zip(dataclasses.fields(cls), _field_types(cls).values()):
        unit, valid = f.metadata["unit"], key_valid(f, read=False)
        text = f.metadata["meaning"] + (f" [{unit}]" if unit != "-" else "")
        text += f"; must be {valid}" if valid else ""
        lines += [f"    {f.name} : {_type_name(tp)}, default {f.default!r}",
                  textwrap.fill(text, 100, initial_indent=" " * 8, subsequent_indent=" " * 8)]
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n".join(lines) + "\n"
    return cls


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Section:
    """Base of every section: coerces fields to their annotations, checks them, then the rules."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        fields = dataclasses.fields(self)
        for f, tp in zip(fields, _field_types(type(self)).values()):
            value = _coerce(getattr(self, f.name), tp, self._dotted(f.name))
            if f.metadata["convert"] is not None:
                value = f.metadata["convert"](value)
            object.__setattr__(self, f.name, value)
        for f in fields:
            for check in f.metadata["checks"]:
                check.check(getattr(self, f.name), self._dotted(f.name))
        self._validate()

    def _validate(self) -> None:
        """The section's cross-field rules; raise :class:`ConfigError` naming the dotted keys."""

    def _dotted(self, name: str) -> str:
        return f"{self.section}.{name}"


@_document_keys
@dataclass(frozen=True)
class CosmologyConfig(_Section):
    """Flat LCDM cosmology of the simulations."""

    section: ClassVar[str] = "cosmology"

    omega_m: float = _key(0.30, "-", "total matter density parameter Omega_m at z = 0", Range(gt=0, le=1))
    omega_b: float = _key(0.045, "-", "baryon density parameter Omega_b at z = 0 (0 <= omega_b < omega_m)")
    h: float = _key(0.70, "-", "H0 / (100 km s^-1 Mpc^-1)", Range(gt=0))
    sigma8: float = _key(0.80, "-", "rms linear matter fluctuation in 8 Mpc/h spheres at z = 0", Range(gt=0))
    ns: float = _key(0.96, "-", "spectral index of the primordial power spectrum", Range(gt=0))
    redshift: float = _key(0.0, "-", "redshift of the clusters", Range(ge=0))

    def _validate(self) -> None:
        _require(
            0.0 <= self.omega_b < self.omega_m,
            f"{self._dotted('omega_b')} must satisfy 0 <= omega_b < omega_m; "
            f"got omega_b={self.omega_b}, omega_m={self.omega_m}",
            self._dotted("omega_b"), self._dotted("omega_m"),
        )


@_document_keys
@dataclass(frozen=True)
class CatalogConfig(_Section):
    """The halo catalog of the mock clusters (:mod:`cmpipe.physics.catalog`)."""

    section: ClassVar[str] = "catalog"

    n_halos: int = _key(6233, "count", "halos in the catalog (`cmpipe catalog`)", Range(gt=0))
    log10_m_min_msun_h: float = _key(13.5, "log10 Msun/h", "lower bound of log10 M200m", Range(ge=8, le=17))
    log10_m_max_msun_h: float = _key(
        15.5, "log10 Msun/h", "upper bound of log10 M200m: at least 0.01 above the lower bound, at most 17"
    )
    mode: str = _key(
        "box", "-",
        "masses: `box` (drawn from the Tinker et al. 2008 M200m mass function between the bounds, like "
        "a simulation volume) or `flat` (uniform in log10 M)",
        OneOf(CATALOG_MODES),
    )
    seed: int = _key(
        0, "-", "seed of the catalog; halo i draws only from `SeedSequence([seed, i])`", Range(ge=0)
    )
    concentration_scatter_dex: float = _key(
        0.16, "dex", "log-normal scatter of c200m about the Diemer & Joyce 2019 median (0: none)",
        Range(ge=0),
    )
    merger_fraction: float = _key(
        0.3, "-", "probability that a halo is an ongoing merger", Range(ge=0, le=1)
    )
    merger_post_pericentre_fraction: float = _key(
        0.5, "-",
        "probability that a merger is seen after pericentre: only then does the secondary's gas lag "
        "its DM (and a shock exist)",
        Range(ge=0, le=1),
    )
    cool_core_fraction: float = _key(
        0.3, "-",
        "probability of a cool core: Arnaud et al. 2010 cool-core pressure shape, else the "
        "morphologically disturbed one (SZ-selected samples: ~0.3, Andrade-Santos et al. 2017)",
        Range(ge=0, le=1),
    )
    gas_fraction_scatter_dex: float = _key(
        0.12, "dex", "log-normal scatter of f_gas,500 about the Vikhlinin et al. 2009 f_gas-M relation",
        Range(ge=0),
    )
    pressure_c500_scatter_dex: float = _key(
        0.05, "dex", "log-normal scatter of the pressure profile's c500", Range(ge=0)
    )
    nonthermal_scatter_ln: float = _key(
        0.25, "-",
        "log-normal scatter (natural log) of B of the Nelson et al. 2014 non-thermal pressure fraction",
        Range(ge=0),
    )

    def _validate(self) -> None:
        lo, hi = self.log10_m_min_msun_h, self.log10_m_max_msun_h
        _require(
            lo + 0.01 <= hi <= 17.0,
            f"{self._dotted('log10_m_max_msun_h')} must be at least 0.01 above log10_m_min_msun_h and "
            f"at most 17; got log10_m_min_msun_h={lo}, log10_m_max_msun_h={hi}",
            self._dotted("log10_m_max_msun_h"), self._dotted("log10_m_min_msun_h"),
        )


@_document_keys
@dataclass(frozen=True)
class MapsConfig(_Section):
    """Geometry and content of the projected maps."""

    section: ClassVar[str] = "maps"

    npix: int = _key(128, "pixels", "pixels per map side (maps are npix x npix)", Range(gt=0))
    pixel_mpc: float = _key(0.1, "Mpc", "side of one pixel; the map spans npix x pixel_mpc", Range(gt=0))
    depth_mpc: float = _key(12.8, "Mpc", "projection depth along the line of sight", Range(gt=0))
    backend: str = _key(
        "fast", "-", "SPH projection backend: `exact` (slow reference), `mesh3d` or `fast`",
        OneOf(_projection_backends, "a name in :data:`cmpipe.sph.projection.BACKEND_NAMES`"),
    )
    channels: tuple[str, ...] = _key(
        MAP_CHANNELS, "-",
        "map channels, in order: Compton-y, X-ray surface brightness, gas and dark-matter surface "
        "density; optionally `kappa`, the weak-lensing convergence `Sigma_total / Sigma_crit` "
        "(see `lensing.*`)",
        NonEmpty(), OneOf(KNOWN_MAP_CHANNELS), Distinct("channel"),
    )


@_document_keys
@dataclass(frozen=True)
class SphConfig(_Section):
    """SPH smoothing and projection."""

    section: ClassVar[str] = "sph"

    n_neighbours: int = _key(
        32, "count", "neighbours that set a smoothing length where the source has none", Range(gt=0)
    )
    num_threads: int = _key(
        0, "count",
        "threads of the projection and k-NN smoothing; 0 = all cores (the Ray generation tasks use "
        "1; a resource, not part of the store fingerprint)",
        Range(ge=0, note="0 = all cores"),
    )


@_document_keys
@dataclass(frozen=True)
class PlasmaConfig(_Section):
    """Plasma constants for the SZ and X-ray channels."""

    section: ClassVar[str] = "plasma"

    hydrogen_mass_fraction: float = _key(
        0.76, "-", "hydrogen mass fraction X of the gas", Range(gt=0, le=1)
    )
    gaunt_factor: float = _key(1.2, "-", "free-free Gaunt factor of the X-ray emissivity", Range(gt=0))


@_document_keys
@dataclass(frozen=True)
class SourceConfig(_Section):
    """Where halo particles come from."""

    section: ClassVar[str] = "source"

    kind: str = _key(
        "mock", "-",
        "halo source: `mock` (mock clusters over the catalog, `mock.*`; the default), `hdf5` (real "
        "halos) or `analytic` (NFW + isothermal test halos)",
        OneOf(SOURCE_KINDS),
    )
    path: str = _key(
        "", "path", "HDF5 file or directory of files (a local path or an object-store URL, `s3://...`), "
        "required for kind `hdf5`",
    )
    analytic_log10_m200m_msun_h: tuple[float, ...] = _key(
        (14.0, 14.5), "log10 Msun/h", "M200m of each analytic halo (halo id = position)",
        NonEmpty("list at least one mass"),
    )
    analytic_pair_mass_msun_h: float = _key(
        1e10, "Msun/h",
        "mass of one DM plus one gas particle, m_pair (m_DM = (1 - f_b) m_pair, m_gas = f_b m_pair)",
        Range(gt=0),
    )
    seed: int = _key(0, "-", "seed of the analytic halos' particles", Range(ge=0))

    def _validate(self) -> None:
        if self.kind == "hdf5":
            _require(
                bool(self.path.strip()),
                f"{self._dotted('path')} must name an HDF5 file or directory when source.kind is hdf5",
                self._dotted("path"), self._dotted("kind"),
            )


@_document_keys
@dataclass(frozen=True)
class MockConfig(_Section):
    """Mock clusters over the halo catalog (:mod:`cmpipe.physics.mock`, ``source.kind: mock``).

    Every realism knob can be switched off (for tests against analytic profiles).
    """

    section: ClassVar[str] = "mock"

    pair_mass_msun_h: float = _key(
        1e10, "Msun/h",
        "mass of one DM plus one gas particle of the mock clusters, m_pair, fixed across halos "
        "(m_DM = (1 - f_b) m_pair, m_gas = f_b m_pair)",
        Range(gt=0),
    )
    truncation_r200m: float = _key(
        1.0, "R200m", "radius where the NFW dark matter is truncated (only with `transition: false`)",
        Range(gt=0),
    )
    infall: bool = _key(
        True, "-",
        "(only with `transition: false`) infall shell (1 - f_b) rho_bar_m [1 + b xi_mm(r)] (Tinker10 "
        "bias, linear correlation function) beyond the truncation",
    )
    infall_extent_r200m: float = _key(
        3.0, "R200m", "outer radius of the infall shell (> truncation_r200m when `infall`)"
    )
    triaxial: bool = _key(
        True, "-",
        "stretch the DM by the catalog's axis ratios (volume-preserving) and rotate it by the catalog "
        "orientation",
    )
    substructure: bool = _key(
        True, "-",
        "subhalos: evolved subhalo mass function dN/dln psi = A psi^-0.9 exp(-12.27 psi^3), A = f_sub "
        "/ 5.05 (catalog `f_sub`), resolved psi >= 32 m_pair / M200m, Einasto radii (alpha 0.678, "
        "r_-2 = 0.81 R200m), NFW truncated at the Jacobi radius, 10 % of their gas kept; their "
        "particles replace host particles at the same radii (M200m and the total radial profile kept)",
    )
    clumping: bool = _key(
        True, "-",
        "log-normal gas clumping, C(r) = <rho^2>/<rho>^2 = min(1 + C0 (r/R200m)^2, 3) with the "
        "catalog's `clumping_c0`: particle volumes (y, mass maps) kept in expectation, emission "
        "measure x C, isobaric S_X x C^(3/8)",
    )
    mergers: bool = _key(
        True, "-",
        "for the catalog's merging halos, a secondary (mass xi M200m, truncated NFW DM and gas, T200m) "
        "at the catalog separation and direction, its gas lagging its DM by min(lag fraction x "
        "separation, 0.3 Mpc)",
    )
    shocks: bool = _key(
        False, "-",
        "for the catalog's merging halos (needs `mock.mergers`), a Rankine-Hugoniot merger shock "
        "(gamma = 5/3) at the catalog's `merger_mach` M in the primary's gas ahead of the secondary: "
        "front 0.25 R200m_s beyond the secondary's DM, perpendicular to the merger axis, a layer 0.5 "
        "R200m_s thick, cap radius R200m_s, edges ramped over one smoothing length; pressure x "
        "(5 M^2 - 1)/4, density x 4 M^2/(M^2 + 3), positions, masses, smoothing lengths kept, T from "
        "P and rho",
    )
    gas_from_hse: bool = _key(
        True, "-",
        "gas density from hydrostatic equilibrium with the prescribed pressure (observed baryons, or "
        "the DPP); `false`: the DM profile times f_b / (1 - f_b)",
    )
    nonthermal_support: bool = _key(
        True, "-", "Nelson et al. (2014) non-thermal pressure support in the equilibrium"
    )
    gas_shape: bool = _key(
        True, "-",
        "rounder gas (half the DM ellipticity) tilted by the catalog's misalignment; `false`: "
        "spherical gas",
    )
    background: bool = _key(
        True, "-",
        "uniform DM and gas at the cosmic mean densities around the halo, filling the projection box",
    )
    scatter: bool = _key(True, "-", "apply the catalog's gas-fraction and pressure factors")
    n_neighbours_temperature: int = _key(
        32, "count",
        "neighbours of the k-NN volume density, (k - 1) m / (4 pi H^3 / 3), that sets each gas "
        "particle's temperature and SPH volume",
        Range(ge=2),
    )
    transition: bool = _key(
        True, "-",
        "smooth outskirts: NFW times the Diemer & Kravtsov 2014 transition term plus the smooth "
        "two-halo term, the background filling the whole sphere (replaces truncation and infall)",
    )
    observed_baryons: bool = _key(
        True, "-",
        "pressure shape from the Arnaud et al. 2010 cool-core or disturbed fit, amplitude from the "
        "Vikhlinin et al. 2009 f_gas,500-M relation with scatter, per-halo non-thermal support; "
        "`false`: DPP at its P500",
    )
    neighbours: bool = _key(
        True, "-",
        "neighbouring and line-of-sight halos from the Tinker mass function, clustered about the halo "
        "(linear bias), in the projected sphere",
    )
    neighbour_min_particles: int = _key(
        100, "count",
        "fewest DM particles of a neighbour halo; lighter halos stay in the smooth background",
        Range(ge=1),
    )
    gas_clumps: bool = _key(
        True, "-",
        "resolved gas clumps (Plummer spheres of 32-1000 particles) carrying gas mass between 0.3 and "
        "2 R200m",
    )
    gas_clump_fraction: float = _key(
        0.03, "-", "gas mass fraction in resolved clumps", Range(ge=0, le=0.5)
    )

    def _validate(self) -> None:
        if self.infall:
            _require(
                self.infall_extent_r200m > self.truncation_r200m,
                f"{self._dotted('infall_extent_r200m')} must exceed truncation_r200m when infall is "
                f"true; got infall_extent_r200m={self.infall_extent_r200m}, "
                f"truncation_r200m={self.truncation_r200m}",
                self._dotted("infall_extent_r200m"), self._dotted("truncation_r200m"),
            )
        _require(
            self.mergers or not self.shocks,
            f"{self._dotted('shocks')} needs mock.mergers (the shock rides on a merger's secondary); "
            f"got shocks={self.shocks}, mergers={self.mergers}",
            self._dotted("shocks"),
        )


@_document_keys
@dataclass(frozen=True)
class GenerateConfig(_Section):
    """The training set: sightline plan and image store (``cmpipe generate``, :mod:`cmpipe.mapmaking.plan`)."""

    section: ClassVar[str] = "generate"

    images_per_0p1dex: int = _key(
        3000, "count",
        "target images per 0.1 dex of log10 M200m (flat in mass, paper section 2.2), rounded up to a "
        "multiple of `axes_per_rotation`",
        Range(ge=1),
    )
    max_rotations_per_halo: int = _key(
        50, "count",
        "cap on the rotations of one halo: rare massive halos get more rotations up to it, common "
        "low-mass halos are subsampled",
        Range(ge=1),
    )
    axes_per_rotation: int = _key(3, "count", "distinct cardinal axes projected per rotation", OneOf((1, 2, 3)))
    split_fractions: tuple[float, ...] = _key(
        (0.8, 0.1, 0.1), "-",
        "train, val, test fractions of the halos (all images of a halo in one split; stratified by "
        "mass): three values >= 0, train > 0, sum 1",
    )
    chunk_images: int = _key(
        64, "count", "images per Zarr chunk (shard) along the image axis: the unit of work and of writing",
        Range(ge=1),
    )
    seed: int = _key(
        0, "-", "seed of the plan: subsampling, split, and rotation r of halo h from "
        "`SeedSequence([seed, h, r])`",
        Range(ge=0),
    )
    normalisation: str = _key(
        "log", "-",
        "per-channel transform before the global min-max over the train split: `log` (log10 with a "
        "floor) or `linear`",
        OneOf(("log", "linear")),
    )
    log_floor_fraction: float = _key(
        1e-6, "-",
        "floor of the log transform as a fraction of the channel's train maximum: "
        "log10(max(x, fraction x max))",
        Range(gt=0, lt=1),
    )
    test_images_per_halo: int = _key(
        0, "count",
        "images kept per test halo (rotation 0's axes first); 0: every planned image. 1 or 2 gives many "
        "distinct test halos for few test images",
        Range(ge=0, note="0: every image"),
    )

    def _validate(self) -> None:
        fr = self.split_fractions
        _require(
            len(fr) == 3 and all(f >= 0.0 for f in fr) and fr[0] > 0.0 and abs(sum(fr) - 1.0) <= 1e-9,
            f"{self._dotted('split_fractions')} must be three fractions (train, val, test), each >= 0, "
            f"train > 0, summing to 1; got {list(fr)}",
            self._dotted("split_fractions"),
        )


@_document_keys
@dataclass(frozen=True)
class InstrumentConfig(_Section):
    """Instrument effects on the condition maps, all off by default (:mod:`cmpipe.mapmaking.instrument`)."""

    section: ClassVar[str] = "instrument"

    redshift: float = _key(
        0.05, "-", "observing redshift setting the angular scales of the beam and the pixels", Range(gt=0)
    )
    beam_fwhm_arcmin: float = _key(0.0, "arcmin", "Gaussian beam FWHM on y (0: none)", Range(ge=0))
    y_white_noise: float = _key(0.0, "-", "white-noise rms per pixel on y", Range(ge=0))
    y_red_noise: float = _key(0.0, "-", "correlated-noise rms per pixel on y", Range(ge=0))
    y_red_noise_scale_mpc: float = _key(
        0.5, "Mpc", "correlation length (Gaussian sigma) of that noise", Range(gt=0)
    )
    xray_exposure_s: float = _key(
        0.0, "s", "exposure of the S_X photon counts (0: no photon noise)", Range(ge=0)
    )
    xray_effective_area_cm2: float = _key(500.0, "cm^2", "effective area", Range(gt=0))
    xray_photon_energy_kev: float = _key(
        1.0, "keV", "mean photon energy converting S_X to counts", Range(gt=0)
    )
    xray_background: float = _key(
        0.0, "erg s^-1 cm^-2 sr^-1", "background added before the Poisson draw and subtracted after",
        Range(ge=0),
    )
    mask_sources: int = _key(
        0, "count", "point sources masked (discs set to 0) in y and S_X", Range(ge=0)
    )
    mask_radius_mpc: float = _key(0.1, "Mpc", "radius of a masked disc", Range(gt=0))
    kappa_shape_noise: float = _key(
        0.0, "-",
        "galaxy shape noise sigma_e per component on `kappa`: white noise of rms "
        "`sigma_e / sqrt(n_gal Omega_pix)` per pixel, `Omega_pix` [arcmin^2] at `lensing.z_lens` "
        "(0: none)",
        Range(ge=0),
    )
    kappa_galaxy_density_arcmin2: float = _key(
        30.0, "arcmin^-2", "source-galaxy density `n_gal` of the shape noise", Range(gt=0)
    )


@_document_keys
@dataclass(frozen=True)
class LensingConfig(_Section):
    """Lens and source redshifts of the weak-lensing convergence channel ``kappa``.

    ``kappa = Sigma_total / Sigma_crit``, ``Sigma_crit = c^2 / (4 pi G) D_s / (D_l D_ls)``
    (physical angular-diameter distances of the ``cosmology``; :mod:`cmpipe.mapmaking.maps`).
    """

    section: ClassVar[str] = "lensing"

    z_lens: float = _key(
        0.3, "-",
        "lens (cluster) redshift of `Sigma_crit = c^2/(4 pi G) D_s/(D_l D_ls)` for `kappa` (and of the "
        "shape noise's pixel solid angle)",
        Range(gt=0),
    )
    z_source: float = _key(1.0, "-", "source-galaxy redshift of `Sigma_crit`, > `lensing.z_lens`")

    def _validate(self) -> None:
        _require(
            self.z_source > self.z_lens,
            f"{self._dotted('z_source')} must be > lensing.z_lens; "
            f"got z_source={self.z_source}, z_lens={self.z_lens}",
            self._dotted("z_source"), self._dotted("z_lens"),
        )


@_document_keys
@dataclass(frozen=True)
class ModelConfig(_Section):
    """The score model (:mod:`cmpipe.model.network`): conditional NCSN++ under the VE SDE."""

    section: ClassVar[str] = "model"
    KINDS: ClassVar[tuple[str, ...]] = ("score", "unet")

    kind: str = _key(
        "score", "-",
        "`score`: the conditional score-based diffusion model (posterior samples); `unet`: the "
        "deterministic U-Net regression baseline (de Andres et al. 2024, :mod:`cmpipe.model.unet`), same "
        "data, training loop, checkpoints and evaluation, its point estimate repeated as every "
        "\"sample\" (zero spread: NaN standardized errors, no sample-variance convergence); `nf`, "
        "`ch_mult`, `num_res_blocks` set its widths, the other keys are unused",
        OneOf(KINDS),
    )
    resolution: int = _key(
        128, "pixels",
        "side of the maps the model sees: a divisor of `maps.npix` (block means of the physical maps) "
        "and a positive multiple of 2^(len(ch_mult) - 1)",
    )
    nf: int = _key(128, "count", "base number of feature maps of NCSN++", Range(ge=1))
    ch_mult: tuple[int, ...] = _key(
        (1, 2, 2, 2), "-", "feature multiplier per resolution level (one level per entry), each >= 1"
    )
    num_res_blocks: int = _key(2, "count", "residual blocks per resolution level", Range(ge=1))
    attention: bool = _key(True, "-", "self-attention at the lowest resolution")
    fir: bool = _key(False, "-", "FIR-filtered up/down-sampling (2.5-4x slower on CPU)")
    sigma_min: float = _key(0.01, "normalised", "smallest noise level of the VE SDE", Range(gt=0))
    sigma_max: float = _key(
        0.0, "normalised",
        "largest noise level; 0: computed from the training data (largest pairwise distance of up to "
        "1000 normalised training images, Song & Ermon 2020), recorded in every checkpoint; else "
        "> sigma_min",
    )
    conditions: tuple[str, ...] = _key(
        ("sz_y", "xray_sb"), "-",
        "the model's condition channels, in order: map channels (`maps.channels`) other than the "
        "targets `gas_sigma`, `dm_sigma`, e.g. `[sz_y, xray_sb, kappa]`; recorded in checkpoints, used "
        "by inference and evaluation (one `input_<name>` spectra baseline each)",
        NonEmpty(), OneOf(tuple(c for c in KNOWN_MAP_CHANNELS if c not in MODEL_TARGETS)),
        Distinct("channel"),
    )

    def _validate(self) -> None:
        k = self._dotted
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
        _require(
            self.sigma_max == 0.0 or self.sigma_max > self.sigma_min,
            f"{k('sigma_max')} must be 0 (from the data) or > sigma_min; "
            f"got sigma_max={self.sigma_max}, sigma_min={self.sigma_min}",
            k("sigma_max"), k("sigma_min"),
        )


@_document_keys
@dataclass(frozen=True)
class TrainConfig(_Section):
    """Training of the score model (:mod:`cmpipe.model.training`)."""

    section: ClassVar[str] = "train"

    batch_size: int = _key(32, "count", "images per optimizer step, over all workers (Ray Train)", Range(ge=1))
    lr: float = _key(2e-4, "-", "Adam learning rate after the warm-up", Range(gt=0))
    warmup_steps: int = _key(1000, "count", "steps of linear learning-rate warm-up", Range(ge=0))
    clip_norm: float = _key(1.0, "-", "gradient-norm clipping threshold (0: none)", Range(ge=0))
    ema_decay: float = _key(
        0.999, "-", "decay of the exponential moving average of the weights (torch_ema, with its warm-up)",
        Range(ge=0, lt=1),
    )
    max_steps: int = _key(200000, "count", "optimizer steps of the run", Range(ge=1))
    checkpoint_every: int = _key(1000, "count", "steps between checkpoints, plus one at the end", Range(ge=1))
    keep_checkpoints: int = _key(3, "count", "latest checkpoints kept", Range(ge=1))
    val_every: int = _key(
        1000, "count", "steps between validation losses (EMA weights, fixed noise)", Range(ge=1)
    )
    val_batches: int = _key(4, "count", "val-split batches per validation loss", Range(ge=1))
    num_workers: int = _key(1, "count", "DataLoader worker processes per training process", Range(ge=0))
    augment: bool = _key(
        True, "-", "random flips and quarter turns of training images, the same for maps and conditions"
    )
    use_gpu: bool = _key(False, "-", "train on GPUs (Ray Train); `false`: CPU")
    seed: int = _key(0, "-", "seed of initialisation, batches, augmentation and loss noise", Range(ge=0))
    unet_baseline_steps: int = _key(
        0, "count",
        "steps of the U-Net regression baseline that `cmpipe pipeline` / `cmpipe demo` also train on "
        "the same store (`model.kind: unet`, the other `train` settings, into `OUT/run_unet/`) and "
        "evaluate on the same test images as a baseline (`RESULTS/baselines/unet/`); 0: none",
        Range(ge=0),
    )
    tracking: str = _key(
        "none", "-",
        "experiment tracking by rank 0, beside `metrics.csv` and `loss.png`: `tensorboard` (event files "
        "in `RUN/tensorboard/`), `mlflow` (a run in `$MLFLOW_TRACKING_URI`; needs the `mlflow` package), "
        "`none` (:mod:`cmpipe.model.tracking`)",
        OneOf(("none", "tensorboard", "mlflow")),
    )


@_document_keys
@dataclass(frozen=True)
class InferConfig(_Section):
    """Posterior sampling of the test split (:mod:`cmpipe.pipeline.infer`)."""

    section: ClassVar[str] = "infer"

    n_samples: int = _key(50, "count", "posterior samples per test image (the paper: 50)", Range(ge=2))
    sampler: str = _key(
        "em", "-",
        "`em` reverse-SDE Euler-Maruyama (the paper's), `pc` predictor-corrector, `heun` "
        "probability-flow ODE (Heun, EDM schedule), `dpm2m` DPM-Solver++(2M), `edm` the stochastic EDM "
        "sampler (Heun with churn), `dpm2m_sde` SDE-DPM-Solver++(2M) (:mod:`cmpipe.model.sampling`)",
        OneOf(_sampler_names, "a name in :data:`cmpipe.model.sampling.SAMPLERS`"),
    )
    steps: int = _key(1000, "count", "sampler steps", Range(ge=1))
    denoise: bool = _key(True, "-", "end with one denoising (Tweedie) step at sigma_min")
    batch_size: int = _key(64, "count", "network rows (image x sample) per forward pass", Range(ge=1))
    images_per_batch: int = _key(
        4, "count", "test images per Ray Data batch handed to an actor", Range(ge=1)
    )
    actors: int = _key(1, "count", "size of the Ray Data actor pool", Range(ge=1))
    cpus_per_actor: float = _key(1.0, "count", "CPUs reserved by one actor (fractional allowed)", Range(gt=0))
    gpus_per_actor: float = _key(1.0, "count", "GPUs of one actor (0: CPU)", Range(ge=0))
    threads_per_actor: int = _key(4, "count", "torch threads inside one actor", Range(ge=1))
    save_samples: bool = _key(
        False, "-", "also write every sample to `posterior.zarr` (else only the mean and standard deviation)"
    )
    seed: int = _key(
        0, "-", "test image i samples from seed [seed, i]: the same whatever the batching", Range(ge=0)
    )


@_document_keys
@dataclass(frozen=True)
class EvaluateConfig(_Section):
    """The paper's section 4 metrics and report (:mod:`cmpipe.evaluation.image`, ``cmpipe report``)."""

    section: ClassVar[str] = "evaluate"

    test_log10_m_min_msun_h: float = _key(
        13.75, "log10 Msun/h",
        "lower bound of the evaluated test masses: test images outside [min, max) of log10 M200m are "
        "left out of the summaries",
    )
    test_log10_m_max_msun_h: float = _key(
        15.25, "log10 Msun/h", "upper bound of the evaluated test masses, > the lower bound"
    )
    mass_split_log10_msun_h: float = _key(
        0.0, "log10 Msun/h",
        "low / high mass boundary of Table 1 and the split figures; 0: the log midpoint of the "
        "evaluated test halos' masses (:func:`cmpipe.evaluation.report.resolve_mass_split`)",
        Range(ge=0, note="0: the log midpoint of the test halos"),
    )
    k_split_mpc_inv: float = _key(
        0.0, "Mpc^-1", "large / small scale boundary of Table 1; 0: sqrt(k_F k_Nyq) of the model's grid",
        Range(ge=0),
    )
    convergence_tolerance: float = _key(
        0.25, "-",
        "converged once the Monte-Carlo error of the posterior mean, sigma / sqrt(n), is below this "
        "fraction of its actual error |mean_n - truth| (median over the pixels within R200m, "
        ":func:`cmpipe.evaluation.metrics.mean_convergence`); 0.25: a calibrated posterior needs "
        "about 35 samples",
        Range(gt=0),
    )

    def _validate(self) -> None:
        k = self._dotted
        _require(
            self.test_log10_m_min_msun_h < self.test_log10_m_max_msun_h,
            f"{k('test_log10_m_min_msun_h')} must be < {k('test_log10_m_max_msun_h')}",
            k("test_log10_m_min_msun_h"), k("test_log10_m_max_msun_h"),
        )


@_document_keys
@dataclass(frozen=True)
class RenderConfig(_Section):
    """Which halo to render and how (``cmpipe render-halo``)."""

    section: ClassVar[str] = "render"

    halo_id: int = _key(0, "-", "halo to render, within its source", Range(ge=0))
    axis: int = _key(
        2, "-", "line-of-sight axis: 0 (x), 1 (y) or 2 (z), applied after the rotation", OneOf((0, 1, 2))
    )
    rotation_seed: int = _key(
        -1, "-", "seed of a uniformly random rotation of the halo; -1 = no rotation",
        Range(ge=-1, text=">= 0, or -1 for no rotation"),
    )
    save_npz: bool = _key(True, "-", "also save the maps as a NumPy `.npz` next to the figures")


@_document_keys
@dataclass(frozen=True)
class RunConfig(_Section):
    """Where a run writes, and how loudly."""

    section: ClassVar[str] = "run"

    out: str = _key(
        "runs/default", "path",
        "output directory: a local path or an object-store URL (`s3://bucket/run`; `--out` overrides it)", NonEmpty(),
    )
    log_level: str = _key(
        "INFO", "-", "level of cmpipe's log on standard error (any case; stored upper-case); other libraries "
        "log at WARNING; `-q`: ERROR, `-v`: DEBUG", OneOf(LOG_LEVELS), convert=str.upper
    )


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
    if is_url(name_or_path):
        return _read_config_url(str(name_or_path))
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return str(path), path.read_text(encoding="utf-8")
    if path.is_dir():
        raise ConfigError(f"config {str(name_or_path)!r} is a directory, not a YAML file")
    raise ConfigError(
        f"no config {str(name_or_path)!r}: not a shipped config name "
        f"(shipped: {', '.join(shipped_configs())}) and no file at {path}"
    )


def _read_config_url(url: str) -> tuple[str, str]:
    """``(url, YAML text)`` of a config on an object store; :class:`ConfigError` naming the URL if
    it cannot be read (:class:`cmpipe.store.location.LocationError` for an unknown scheme, a
    missing bucket or missing credentials)."""
    from cmpipe.store.location import as_path, check_reachable

    path = as_path(url)
    check_reachable(path, "--config")
    try:
        return url, path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"no config at {url}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {url} cannot be read ({type(exc).__name__}: {exc})") from None


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
    directory : str, path-like or URL
        Created if missing (with parents), typically ``cfg.run.out``; on an object store (a URL)
        the prefix needs no creating and the file is one object, written whole.

    Returns
    -------
    pathlib.Path or upath.UPath
        The file written whole (a renamed temporary file, or one PUT). It loads back with
        :func:`load_config` to a config equal to ``cfg`` with the same fingerprint.
    """
    from cmpipe.store.location import as_path, is_remote, write_text_atomic

    directory = as_path(directory)
    if not is_remote(directory):
        directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESOLVED_CONFIG_NAME
    write_text_atomic(path, config_to_yaml(cfg))
    return path

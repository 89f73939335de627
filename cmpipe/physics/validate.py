"""Validation of the mock clusters against their input model (``../shared/SPEC.md`` section 4).

Plain numpy, no plotting (the figures are :mod:`cmpipe.plots.validation`). For each mock halo
(:class:`cmpipe.physics.mock.MockHaloSource`), centred on the origin as the mock makes it,
:func:`measure_halo` measures from the particles, in spherical shells or spheres, and
tabulates the same quantity from the halo's input model (:meth:`MockHaloSource.profiles`):

Geometry of the model
    The mock's profiles are functions of the ellipsoidal radius ``r_e = r f(u)``,
    ``f(u) = |R^T u / axes|`` for a direction ``u``, with axes ``(1, q, s) / (q s)^(1/3)`` for
    the DM (``mock.triaxial``) and ``(1, 1 - (1 - q)/2, 1 - (1 - s)/2)`` normalised likewise for
    the gas (``mock.gas_shape``), ``q, s`` from the catalog row (:func:`model_axes`; spheres
    when the knobs are off). Spherical averages do not depend on the rotation ``R``, so the
    model in spheres and shells is exact without it: the mass inside a sphere is
    ``M_sph(<r) = < M_e(r f(u)) / f(u)^3 >_u`` (``M_e`` the enclosed-mass table, substituting
    ``r_e = r' f`` along each ray) and a profile's shell mean ``< P(r f(u)) >_u`` averaged over
    the shell, ``<.>_u`` over :data:`N_DIRECTIONS` Fibonacci-sphere directions.
DM and gas density, against ``r / R200m``
    Particle mass in a shell over the shell's volume, normalised by the mean matter density
    ``rho_bar_m``. The model is the same shell mean of the input profile,
    ``[M_sph(<r_2) - M_sph(<r_1)] / V_shell`` from the enclosed-mass tables (the finite-difference
    derivative of the tables, averaged over the shell as the particles are), plus the mean
    background density outside the halo's outer (ellipsoidal) radius when ``mock.background``
    is on.
Electron pressure, against ``x = r / R500c``
    ``P_e = n_e k T`` per gas particle, ``n_e = (X + Y/2) rho / m_p`` from its SPH density,
    volume-weighted per shell, ``sum(P_e V) / sum(V)`` with ``V = m / rho``, in units of
    ``P500 = 1.65e-3 E(z)^(8/3) (M500c / 3e14 h70^-1 Msun)^(2/3) h70^2 keV cm^-3``; the model
    is the DPP (times the halo's pressure factor) averaged over the shell's volume.
Gas fraction, against ``x = r / R500c``
    ``f_gas(<r) / f_b = M_gas(<r) / [M_gas(<r) + M_DM(<r)] / f_b`` at the outer edge of each
    bin, against the same ratio of the enclosed-mass tables.
Y500 (spherical)
    ``Y500 = sigma_T / (m_e c^2) sum_{r < R500c} P_e V`` [Mpc^2] (the physical Y D_A^2), and
    ``E(z)^(-2/3) Y500`` fitted against M500c (:func:`fit_power_law`); the self-similar slope is
    5/3. Reference: Arnaud et al. (2010, A&A 517, A92), eq. 22, the spherical Y inside R500::

        E(z)^(-2/3) Y_sph(R500) D_A^2 = 10^(-4.739) (M500 / 3e14 h70^-1 Msun)^1.79 h70^-1 Mpc^2

    (:func:`arnaud10_y500_mpc2`). Arnaud's profile is the universal pressure profile
    (``P0 = 8.403 h70^-3/2``) with a mass-dependent slope; the mock's DPP is self-similar, so
    its slope is 5/3 and its normalisation lower. The model's own Y500 (the DPP integrated over
    the sphere) is tabulated too.
L_X (bolometric)
    ``L_X = sum_{r < R500c} eps V`` [erg s^-1], ``eps = 1.4e-27 T^(1/2) n_e sum(Z^2 n_i) g_B``
    erg s^-1 cm^-3 (:mod:`cmpipe.physics.plasma`), fitted against M500c (self-similar slope 4/3
    for bremsstrahlung at fixed gas fraction).

:func:`stack_checks` stacks the per-halo measurements: the stacked profile is the mean over
halos of the normalised measurement, the model the mean of the normalised model, and the
deviation ``stacked / model - 1`` per bin, with the halo-to-halo spread of ``measured / model``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config
    from cmpipe.physics.halo import Halo
    from cmpipe.physics.mock import MockHaloSource, MockProfiles

__all__ = [
    "ARNAUD10_Y500",
    "DEFAULT_EDGES",
    "BootstrapFit",
    "HaloChecks",
    "PowerLawFit",
    "StackedProfile",
    "ValidationResult",
    "arnaud10_y500_mpc2",
    "bootstrap_power_law",
    "fit_power_law",
    "measure_halo",
    "model_axes",
    "p500_kev_cm3",
    "stack_checks",
    "validate_source",
]

#: Radial bin edges [R200m for densities, R500c for pressure and gas fraction]: 16 log bins.
DEFAULT_EDGES = np.geomspace(0.05, 3.0, 17)
#: Arnaud et al. (2010) eq. 22: (log10 normalisation [Mpc^2 h70^-1], slope, pivot [h70^-1 Msun]).
ARNAUD10_Y500 = (-4.739, 1.79, 3e14)
#: Self-similar slopes of Y500-M500c and L_X-M500c.
SELF_SIMILAR_Y_SLOPE = 5.0 / 3.0
SELF_SIMILAR_LX_SLOPE = 4.0 / 3.0
#: Pivot of the power-law fits [Msun] (3e14 h70^-1 Msun at h = 0.7).
FIT_PIVOT_MSUN = 3e14
#: Band of the soft-band L_X [keV] (Pratt et al. 2009's [0.1-2.4]).
SOFT_BAND_KEV = (0.1, 2.4)
#: Annulus of the gas-mass-weighted temperature [R500c] (Vikhlinin et al. 2009's 0.15-1 R500).
T_ANNULUS_R500C = (0.15, 1.0)
#: Sub-shell points in the model's shell volume average.
_N_QUAD = 32
#: Directions of the model's spherical averages (Fibonacci sphere).
N_DIRECTIONS = 1024


def _fibonacci_directions(n: int = N_DIRECTIONS) -> np.ndarray:
    """``(n, 3)`` nearly uniform unit vectors (equal-area Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    cos_t = 1.0 - 2.0 * i / n
    phi = np.pi * (1.0 + np.sqrt(5.0)) * i
    sin_t = np.sqrt(1.0 - cos_t**2)
    return np.stack([sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t], axis=1)


def model_axes(row: dict, cfg: Config) -> tuple[np.ndarray, np.ndarray]:
    """Axis lengths of the DM and gas ellipsoids of one halo (module docstring), ``(3,)`` each,
    product 1; ones where ``mock.triaxial`` / ``mock.gas_shape`` is off."""
    q, s = float(row["shape_q"]), float(row["shape_s"])

    def axes(q_: float, s_: float) -> np.ndarray:
        return np.array([1.0, q_, s_]) / np.cbrt(q_ * s_)

    dm = axes(q, s) if cfg.mock.triaxial else np.ones(3)
    gas = axes(1.0 - 0.5 * (1.0 - q), 1.0 - 0.5 * (1.0 - s)) if cfg.mock.gas_shape else np.ones(3)
    return dm, gas


def _stretch_factors(axes: np.ndarray | None) -> np.ndarray:
    """``f(u) = |u / axes|`` over the Fibonacci directions (a single 1 for a sphere)."""
    if axes is None or np.all(np.asarray(axes) == 1.0):
        return np.ones(1)
    return np.linalg.norm(_fibonacci_directions() / np.asarray(axes, dtype=np.float64), axis=1)


def _direction_average(func, factors: np.ndarray):
    """``r -> < func(r f) >_u`` (a profile of ``r_e`` averaged over directions)."""

    def averaged(r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        return func(r[..., None] * factors).mean(axis=-1)

    return averaged


def p500_kev_cm3(m500c_msun: float, h: float, e_z: float) -> float:
    """``P500 = 1.65e-3 E(z)^(8/3) (M500c / 3e14 h70^-1 Msun)^(2/3) h70^2`` [keV cm^-3]
    (Arnaud et al. 2010), with M500c in Msun."""
    h70 = h / 0.7
    return 1.65e-3 * e_z ** (8.0 / 3.0) * (m500c_msun * h70 / 3e14) ** (2.0 / 3.0) * h70**2


def arnaud10_y500_mpc2(m500c_msun: np.ndarray, h: float, e_z: float = 1.0) -> np.ndarray:
    """Arnaud et al. (2010) eq. 22, ``Y_sph(R500) D_A^2`` [Mpc^2] at M500c [Msun].

    ``E(z)^(-2/3) Y D_A^2 = 10^(-4.739) (M500 / 3e14 h70^-1 Msun)^1.79 h70^-1 Mpc^2``, so this
    returns ``10^(-4.739) (M500 h70 / 3e14)^1.79 / h70 * E(z)^(2/3)``; pass ``e_z = 1`` for the
    ``E(z)^(-2/3)``-scaled quantity.
    """
    log_norm, slope, pivot = ARNAUD10_Y500
    h70 = h / 0.7
    m = np.asarray(m500c_msun, dtype=np.float64) * h70
    return 10.0**log_norm * (m / pivot) ** slope / h70 * e_z ** (2.0 / 3.0)


@dataclass(frozen=True)
class PowerLawFit:
    """Least-squares fit ``ln y = ln A + slope ln(x / pivot)``.

    Attributes
    ----------
    slope, slope_error : float
        Slope and its standard error (from the residual scatter; 0 for two points).
    normalisation : float
        ``A``, ``y`` at the pivot [units of y].
    pivot : float
        [units of x].
    scatter_ln : float
        RMS of the residuals in ``ln y`` (``n - 2`` degrees of freedom).
    n : int
        Points fitted.
    """

    slope: float
    slope_error: float
    normalisation: float
    pivot: float
    scatter_ln: float
    n: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The fitted ``y(x)``."""
        return self.normalisation * (np.asarray(x, dtype=np.float64) / self.pivot) ** self.slope


def fit_power_law(x: np.ndarray, y: np.ndarray, pivot: float) -> PowerLawFit:
    """Fit ``y = A (x / pivot)^slope`` by least squares in log space.

    Parameters
    ----------
    x, y : (N,) float64, N >= 2
        Positive values.
    pivot : float
        Pivot of ``x``.
    """
    lx = np.log(np.asarray(x, dtype=np.float64) / pivot)
    ly = np.log(np.asarray(y, dtype=np.float64))
    n = lx.size
    if n < 2:
        raise ValueError(f"a power-law fit needs at least 2 points; got {n}")
    design = np.stack([np.ones(n), lx], axis=1)
    coef, *_ = np.linalg.lstsq(design, ly, rcond=None)
    resid = ly - design @ coef
    dof = max(n - 2, 1)
    scatter = float(np.sqrt(np.sum(resid**2) / dof)) if n > 2 else 0.0
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    slope_error = scatter / np.sqrt(sxx) if sxx > 0 else float("nan")
    return PowerLawFit(
        slope=float(coef[1]), slope_error=float(slope_error), normalisation=float(np.exp(coef[0])),
        pivot=float(pivot), scatter_ln=scatter, n=n,
    )


@dataclass(frozen=True)
class BootstrapFit:
    """:func:`fit_power_law` on all halos, with errors from a bootstrap over halos.

    Attributes
    ----------
    slope, slope_error : float
        Slope and the standard deviation of the bootstrap slopes.
    normalisation : float
        ``y`` at the pivot [units of y].
    normalisation_rel_error : float
        Standard deviation of the bootstrap ``ln A`` (the relative error of ``A``).
    pivot : float
        [units of x].
    scatter_dex, scatter_dex_error : float
        RMS residual in ``log10 y`` (``n - 2`` degrees of freedom) and its bootstrap error.
    n, n_boot, seed : int
        Points, resamples and the seed of ``np.random.default_rng``.
    """

    slope: float
    slope_error: float
    normalisation: float
    normalisation_rel_error: float
    pivot: float
    scatter_dex: float
    scatter_dex_error: float
    n: int
    n_boot: int
    seed: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The fitted ``y(x)``."""
        return self.normalisation * (np.asarray(x, dtype=np.float64) / self.pivot) ** self.slope

    def to_dict(self) -> dict:
        return asdict(self)


def bootstrap_power_law(x: np.ndarray, y: np.ndarray, pivot: float, n_boot: int = 1000, seed: int = 0) -> BootstrapFit:
    """Fit ``y = A (x / pivot)^slope`` (:func:`fit_power_law`) and bootstrap it over the points.

    Parameters
    ----------
    x, y : (N,) float64, N >= 3
        Positive values (non-finite or non-positive pairs are dropped first).
    pivot : float
        Pivot of ``x``.
    n_boot : int
        Resamples with replacement; a resample with fewer than 3 distinct ``x`` is redrawn. Each
        error is the larger of the bootstraps' standard deviation and the least-squares one
        (slope ``s / sqrt(Sxx)``, ln A ``s sqrt(1/n + mean(ln x/pivot)^2 / Sxx)``, scatter
        ``s / sqrt(2 (n - 2))``), since a bootstrap over a few halos underestimates them.
    seed : int
        Seed of ``np.random.default_rng``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    n = x.size
    if n < 3:
        raise ValueError(f"a bootstrapped power-law fit needs at least 3 points; got {n}")
    best = fit_power_law(x, y, pivot)
    rng = np.random.default_rng(seed)
    stats = np.empty((n_boot, 3))
    i = 0
    while i < n_boot:
        idx = rng.integers(0, n, size=n)
        if np.unique(x[idx]).size < 3:
            continue
        f = fit_power_law(x[idx], y[idx], pivot)
        stats[i] = f.slope, np.log(f.normalisation), f.scatter_ln * np.sqrt((n - 2) / n)
        i += 1
    # The resamples' scatter uses the ML (1/n) normaliser: duplicated points make the n - 2
    # estimate meaningless; its spread, not its mean, is what is used.
    errs = np.std(stats, axis=0, ddof=1)
    # Floors from the least-squares (Gaussian) errors: a bootstrap over a few halos has few
    # distinct resamples and underestimates the errors (3 halos: only permutations, error 0).
    lx = np.log(x / pivot)
    sxx = float(np.sum((lx - lx.mean()) ** 2))
    s = best.scatter_ln
    gauss = (s / np.sqrt(sxx), s * np.sqrt(1.0 / n + lx.mean() ** 2 / sxx), s / np.sqrt(2.0 * max(n - 2, 1)))
    errs = np.maximum(errs, gauss)
    ln10 = np.log(10.0)
    return BootstrapFit(
        slope=best.slope, slope_error=float(errs[0]), normalisation=best.normalisation,
        normalisation_rel_error=float(errs[1]), pivot=float(pivot), scatter_dex=best.scatter_ln / ln10,
        scatter_dex_error=float(errs[2]) / ln10, n=n, n_boot=n_boot, seed=seed,
    )


@dataclass(frozen=True)
class HaloChecks:
    """What :func:`measure_halo` measures for one halo (bins: ``edges``, K = len(edges) - 1).

    Attributes
    ----------
    halo_id : int
    m200m_msun, m500c_msun, r200m_mpc, r500c_mpc : float
        Masses [Msun] and radii [Mpc] from the catalog row.
    edges : (K + 1,) float64
        Bin edges [R200m for the densities, R500c for pressure and gas fraction].
    dm_density, dm_density_model, gas_density, gas_density_model : (K,) float64
        Shell-mean densities over ``rho_bar_m`` [dimensionless].
    pressure, pressure_model : (K,) float64
        Volume-weighted ``P_e / P500`` [dimensionless].
    fgas, fgas_model : (K,) float64
        ``f_gas(< edges[1:] R500c) / f_b`` [dimensionless].
    fgas_r500c : float
        Measured ``f_gas(< R500c) / f_b``.
    fgas500 : float
        Measured ``f_gas,500 = M_gas(<R500c) / M_tot(<R500c)`` (not divided by f_b).
    y500_mpc2, y500_model_mpc2 : float
        Spherical Y inside R500c, ``E(z)^(-2/3)`` times ``Y D_A^2`` [Mpc^2], from the particles
        and from the DPP.
    lx500_erg_s : float
        Bolometric L_X inside R500c [erg s^-1].
    lx500_soft_erg_s : float
        L_X in 0.1-2.4 keV inside R500c [erg s^-1]: each particle's bremsstrahlung continuum times
        ``exp(-0.1 keV / kT) - exp(-2.4 keV / kT)`` (Gaunt factor constant in energy).
    tmw_kev : float
        Gas-mass-weighted temperature of the particles in 0.15-1 R500c [keV].
    n_gas, n_dm : int
        Particles of the halo (background included).
    """

    halo_id: int
    m200m_msun: float
    m500c_msun: float
    r200m_mpc: float
    r500c_mpc: float
    edges: np.ndarray
    dm_density: np.ndarray
    dm_density_model: np.ndarray
    gas_density: np.ndarray
    gas_density_model: np.ndarray
    pressure: np.ndarray
    pressure_model: np.ndarray
    fgas: np.ndarray
    fgas_model: np.ndarray
    fgas_r500c: float
    y500_mpc2: float
    y500_model_mpc2: float
    lx500_erg_s: float
    n_gas: int
    n_dm: int
    fgas500: float = float("nan")
    lx500_soft_erg_s: float = float("nan")
    tmw_kev: float = float("nan")


def _shell_mass(r_mpc: np.ndarray, mass: np.ndarray, edges_mpc: np.ndarray) -> np.ndarray:
    return np.histogram(r_mpc, bins=edges_mpc, weights=mass)[0]


def _model_enclosed(
    table_r: np.ndarray, table_m: np.ndarray, r_out: float, rho_bg: float, r: np.ndarray, factors: np.ndarray
) -> np.ndarray:
    """Mass of the model inside spheres of radius ``r`` [Msun]: ``< M_e(r f) / f^3 >_u`` from the
    table of ellipsoidal radius, plus a uniform background of density ``rho_bg`` where
    ``r_e >= r_out``, ``rho_bg < 4 pi / 3 max(r^3 - (r_out / f)^3, 0) >_u``."""
    re = np.asarray(r, dtype=np.float64)[:, None] * factors
    inside = np.interp(np.minimum(re, table_r[-1]), table_r, table_m) / factors**3
    outside = rho_bg * 4.0 / 3.0 * np.pi * np.maximum(re**3 - r_out**3, 0.0) / factors**3
    return (inside + outside).mean(axis=1)


def _shell_volumes(edges_mpc: np.ndarray) -> np.ndarray:
    return 4.0 / 3.0 * np.pi * np.diff(edges_mpc**3)


def _shell_average(func, edges_mpc: np.ndarray) -> np.ndarray:
    """Volume average of ``func(r)`` over each shell (log-spaced midpoint quadrature)."""
    out = np.empty(edges_mpc.size - 1)
    for i, (lo, hi) in enumerate(zip(edges_mpc[:-1], edges_mpc[1:])):
        sub = np.geomspace(lo, hi, _N_QUAD + 1)
        mid = np.sqrt(sub[1:] * sub[:-1])
        vol = np.diff(sub**3)
        out[i] = np.sum(func(mid) * vol) / np.sum(vol)
    return out


def _sphere_integral(func, r_max: float, r_min: float) -> float:
    """``int_0^r_max 4 pi r^2 func(r) dr`` on a log grid from ``r_min`` (power-law inner part
    neglected below ``r_min``)."""
    sub = np.geomspace(r_min, r_max, 513)
    mid = np.sqrt(sub[1:] * sub[:-1])
    return float(np.sum(func(mid) * 4.0 / 3.0 * np.pi * np.diff(sub**3)))


def measure_halo(
    halo: Halo, prof: MockProfiles, cfg: Config, edges: np.ndarray = DEFAULT_EDGES,
    dm_axes: np.ndarray | None = None, gas_axes: np.ndarray | None = None,
) -> HaloChecks:
    """Measure one halo's profiles, Y500 and L_X against its input model (module docstring).

    Parameters
    ----------
    halo : Halo
        The particles (:meth:`MockHaloSource.load`), centred on the origin; the gas needs
        temperatures and SPH densities.
    prof : MockProfiles
        The halo's input model (:meth:`MockHaloSource.profiles`).
    cfg : Config
        Cosmology, plasma and mock (background) settings.
    edges : (K + 1,) float64
        Bin edges [R200m for the densities, R500c for pressure and gas fraction].
    dm_axes, gas_axes : (3,) float64, optional
        Axis lengths of the model's DM and gas ellipsoids (:func:`model_axes`; default spheres).
    """
    from cmpipe.physics.cosmology import mean_densities
    from cmpipe.physics.plasma import BREMSSTRAHLUNG_CGS, Plasma, constants

    if halo.gas.density_msun_mpc3 is None:
        raise ValueError("measure_halo needs the gas particles' SPH densities (density_msun_mpc3)")
    edges = np.asarray(edges, dtype=np.float64)
    means = mean_densities(cfg.cosmology)
    f_b = cfg.cosmology.omega_b / cfg.cosmology.omega_m
    bg = cfg.mock.background
    rho_bg_dm, rho_bg_gas = (means.dark_matter, means.baryon) if bg else (0.0, 0.0)
    r200m, r500c = prof.r200m_mpc, prof.r500c_mpc
    f_dm, f_gas = _stretch_factors(dm_axes), _stretch_factors(gas_axes)
    pressure_of_r = _direction_average(prof.electron_pressure_kev_cm3, f_gas)

    r_dm = np.linalg.norm(halo.dm.pos_mpc, axis=1)
    r_gas = np.linalg.norm(halo.gas.pos_mpc, axis=1)
    m_dm, m_gas = halo.dm.mass_msun, halo.gas.mass_msun

    # Densities in shells of R200m.
    e200 = edges * r200m
    vol = _shell_volumes(e200)
    dm_model_enc = _model_enclosed(prof.r_mpc, prof.dm_enclosed_msun, prof.outer_mpc, rho_bg_dm, e200, f_dm)
    gas_model_enc = _model_enclosed(prof.r_mpc, prof.gas_enclosed_msun, prof.outer_mpc, rho_bg_gas, e200, f_gas)
    dm_density = _shell_mass(r_dm, m_dm, e200) / vol / means.matter
    gas_density = _shell_mass(r_gas, m_gas, e200) / vol / means.matter
    dm_density_model = np.diff(dm_model_enc) / vol / means.matter
    gas_density_model = np.diff(gas_model_enc) / vol / means.matter

    # Electron pressure and emissivity per gas particle.
    k = constants()
    plasma = Plasma(cfg.plasma.hydrogen_mass_fraction, cfg.plasma.gaunt_factor)
    rho = np.asarray(halo.gas.density_msun_mpc3, dtype=np.float64)
    rho_cgs = rho * (k.msun_g / k.mpc_cm**3)
    n_e = plasma.electrons_per_proton_mass * rho_cgs / k.proton_mass_g
    n_z2 = plasma.ion_z2_per_proton_mass * rho_cgs / k.proton_mass_g
    temperature = np.asarray(halo.gas.temperature_k, dtype=np.float64)
    p_e = n_e * k.boltzmann_kev_per_k * temperature  # keV cm^-3
    v_mpc3 = m_gas / rho
    p500 = p500_kev_cm3(prof.m500c_msun, prof.h, prof.e_z)

    e500 = edges * r500c
    pv = _shell_mass(r_gas, p_e * v_mpc3, e500)
    vv = _shell_mass(r_gas, v_mpc3, e500)
    with np.errstate(invalid="ignore", divide="ignore"):
        pressure = np.where(vv > 0, pv / np.where(vv > 0, vv, 1.0), np.nan) / p500
    pressure_model = _shell_average(pressure_of_r, e500) / p500

    # Gas fraction inside each outer bin edge.
    gas_enc = np.array([m_gas[r_gas < r].sum() for r in e500[1:]])
    dm_enc = np.array([m_dm[r_dm < r].sum() for r in e500[1:]])
    tot = gas_enc + dm_enc
    fgas = np.where(tot > 0, gas_enc / np.where(tot > 0, tot, 1.0), np.nan) / f_b
    g_mod = _model_enclosed(prof.r_mpc, prof.gas_enclosed_msun, prof.outer_mpc, rho_bg_gas, e500[1:], f_gas)
    d_mod = _model_enclosed(prof.r_mpc, prof.dm_enclosed_msun, prof.outer_mpc, rho_bg_dm, e500[1:], f_dm)
    fgas_model = g_mod / (g_mod + d_mod) / f_b
    in500_gas, in500_dm = r_gas < r500c, r_dm < r500c
    g500, d500 = m_gas[in500_gas].sum(), m_dm[in500_dm].sum()
    fgas_r500c = float(g500 / (g500 + d500) / f_b) if g500 + d500 > 0 else float("nan")

    # Y500 and L_X inside R500c.
    ez_y = prof.e_z ** (-2.0 / 3.0)
    y500 = float(k.compton_y_cm3_per_kev_mpc * np.sum(p_e[in500_gas] * v_mpc3[in500_gas])) * ez_y
    y500_model = k.compton_y_cm3_per_kev_mpc * _sphere_integral(pressure_of_r, r500c, 1e-6 * r500c) * ez_y
    eps = BREMSSTRAHLUNG_CGS * np.sqrt(temperature) * n_e * n_z2 * plasma.gaunt_factor  # erg s^-1 cm^-3
    lx500 = float(np.sum(eps[in500_gas] * v_mpc3[in500_gas]) * k.mpc_cm**3)
    kt_kev = k.boltzmann_kev_per_k * temperature
    lo_kev, hi_kev = SOFT_BAND_KEV
    band = np.exp(-lo_kev / kt_kev) - np.exp(-hi_kev / kt_kev)
    lx500_soft = float(np.sum((eps * band * v_mpc3)[in500_gas]) * k.mpc_cm**3)
    # Gas-mass-weighted temperature in 0.15-1 R500c.
    annulus = (r_gas >= T_ANNULUS_R500C[0] * r500c) & (r_gas < T_ANNULUS_R500C[1] * r500c)
    w = m_gas[annulus]
    tmw = float(np.sum(w * kt_kev[annulus]) / np.sum(w)) if w.sum() > 0 else float("nan")

    return HaloChecks(
        halo_id=int(halo.props.halo_id), m200m_msun=float(halo.props.m200m_msun), m500c_msun=prof.m500c_msun,
        r200m_mpc=r200m, r500c_mpc=r500c, edges=edges,
        dm_density=dm_density, dm_density_model=dm_density_model,
        gas_density=gas_density, gas_density_model=gas_density_model,
        pressure=pressure, pressure_model=pressure_model,
        fgas=fgas, fgas_model=fgas_model, fgas_r500c=fgas_r500c,
        y500_mpc2=y500, y500_model_mpc2=float(y500_model), lx500_erg_s=lx500,
        n_gas=int(halo.gas.n), n_dm=int(halo.dm.n),
        fgas500=float(g500 / (g500 + d500)) if g500 + d500 > 0 else float("nan"),
        lx500_soft_erg_s=lx500_soft, tmw_kev=tmw,
    )


@dataclass(frozen=True)
class StackedProfile:
    """A stacked radial profile against its model.

    Attributes
    ----------
    name : str
        ``dm_density``, ``gas_density``, ``pressure`` or ``fgas``.
    x_edges : (K + 1,) float64
        Bin edges [``x_unit``].
    x : (K,) float64
        Geometric bin centres (outer edges for the cumulative ``fgas``) [``x_unit``].
    x_unit : str
        ``R200m`` or ``R500c``.
    measured, model : (K,) float64
        Mean over halos of the normalised measurement and model.
    deviation : (K,) float64
        ``measured / model - 1``.
    spread : (K,) float64
        Halo-to-halo standard deviation of ``measured / model`` (per halo).
    per_halo : (H, K) float64
        Normalised measurement per halo.
    """

    name: str
    x_edges: np.ndarray
    x: np.ndarray
    x_unit: str
    measured: np.ndarray
    model: np.ndarray
    deviation: np.ndarray
    spread: np.ndarray
    per_halo: np.ndarray

    def max_abs_deviation(self, lo: float, hi: float) -> float:
        """Largest ``|deviation|`` over the bins whose ``x`` lies in ``[lo, hi]``."""
        sel = (self.x >= lo) & (self.x <= hi)
        return float(np.nanmax(np.abs(self.deviation[sel])))


@dataclass(frozen=True)
class ValidationResult:
    """Stacked profiles, scaling relations and the per-halo numbers.

    Attributes
    ----------
    profiles : dict of str -> StackedProfile
        ``dm_density``, ``gas_density`` (x in R200m), ``pressure``, ``fgas`` (x in R500c).
    m500c_msun, y500_mpc2, y500_model_mpc2, lx500_erg_s, fgas_r500c : (H,) float64
        Per halo (Y scaled by ``E(z)^(-2/3)``).
    fgas500, lx500_soft_erg_s, tmw_kev : (H,) float64
        Per halo: ``M_gas / M_tot`` inside R500c, L_X in 0.1-2.4 keV [erg s^-1], the
        gas-mass-weighted temperature in 0.15-1 R500c [keV] (:class:`HaloChecks`).
    y_m, y_m_model, lx_m : PowerLawFit
        Fits of Y500 (particles), Y500 (model) and L_X against M500c, pivot 3e14 Msun.
    arnaud10_y500_at_pivot_mpc2 : float
        Arnaud et al. (2010) eq. 22 at the pivot [Mpc^2].
    halo_ids : (H,) int64
    h : float
        Hubble parameter of the cosmology (for the Arnaud reference).
    """

    profiles: dict
    halo_ids: np.ndarray
    m500c_msun: np.ndarray
    y500_mpc2: np.ndarray
    y500_model_mpc2: np.ndarray
    lx500_erg_s: np.ndarray
    fgas_r500c: np.ndarray
    y_m: PowerLawFit
    y_m_model: PowerLawFit
    lx_m: PowerLawFit
    arnaud10_y500_at_pivot_mpc2: float
    h: float
    fgas500: np.ndarray = field(default_factory=lambda: np.empty(0))
    lx500_soft_erg_s: np.ndarray = field(default_factory=lambda: np.empty(0))
    tmw_kev: np.ndarray = field(default_factory=lambda: np.empty(0))

    def to_dict(self) -> dict:
        """JSON-ready numbers: fits, per-halo values and per-bin profile deviations."""

        def clean(a):
            arr = np.asarray(a, dtype=np.float64)
            return [None if not np.isfinite(v) else float(v) for v in arr.ravel()]

        return {
            "n_halos": int(self.halo_ids.size),
            "y500_m500c": {**asdict(self.y_m), "self_similar_slope": SELF_SIMILAR_Y_SLOPE,
                           "arnaud10_slope": ARNAUD10_Y500[1],
                           "arnaud10_at_pivot_mpc2": self.arnaud10_y500_at_pivot_mpc2,
                           "pivot_unit": "Msun", "normalisation_unit": "Mpc^2 (E(z)^-2/3 Y D_A^2)"},
            "y500_model_m500c": asdict(self.y_m_model),
            "lx500_m500c": {**asdict(self.lx_m), "self_similar_slope": SELF_SIMILAR_LX_SLOPE,
                            "pivot_unit": "Msun", "normalisation_unit": "erg/s"},
            "fgas_r500c_over_fb": {"mean": float(np.mean(self.fgas_r500c)), "min": float(np.min(self.fgas_r500c)),
                                   "max": float(np.max(self.fgas_r500c))},
            "halos": {
                "halo_id": [int(i) for i in self.halo_ids],
                "m500c_msun": clean(self.m500c_msun),
                "y500_mpc2": clean(self.y500_mpc2),
                "y500_model_mpc2": clean(self.y500_model_mpc2),
                "lx500_erg_s": clean(self.lx500_erg_s),
                "fgas_r500c_over_fb": clean(self.fgas_r500c),
                "fgas500": clean(self.fgas500),
                "lx500_soft_erg_s": clean(self.lx500_soft_erg_s),
                "tmw_kev": clean(self.tmw_kev),
            },
            "profiles": {
                name: {"x_unit": p.x_unit, "x": clean(p.x), "measured": clean(p.measured), "model": clean(p.model),
                       "deviation": clean(p.deviation), "spread": clean(p.spread)}
                for name, p in self.profiles.items()
            },
        }


def _stack(name: str, checks: Sequence[HaloChecks], unit: str, cumulative: bool = False) -> StackedProfile:
    edges = checks[0].edges
    meas = np.stack([getattr(c, name) for c in checks])
    model = np.stack([getattr(c, name + "_model") for c in checks])
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # empty bins: NaN, not a warning
        ratio = meas / model
        stacked, stacked_model = np.nanmean(meas, axis=0), np.mean(model, axis=0)
        deviation = stacked / stacked_model - 1.0
        spread = np.nanstd(ratio, axis=0) if len(checks) > 1 else np.zeros(edges.size - 1)
    x = edges[1:] if cumulative else np.sqrt(edges[1:] * edges[:-1])
    return StackedProfile(
        name=name, x_edges=edges, x=x, x_unit=unit, measured=stacked, model=stacked_model,
        deviation=deviation, spread=spread, per_halo=meas,
    )


def stack_checks(checks: Sequence[HaloChecks], h: float) -> ValidationResult:
    """Stack per-halo measurements and fit the scaling relations.

    Parameters
    ----------
    checks : sequence of HaloChecks
        From :func:`measure_halo`, all on the same bin edges (at least 2 halos for the fits).
    h : float
        Dimensionless Hubble parameter (the Arnaud et al. 2010 reference).
    """
    if len(checks) < 2:
        raise ValueError(f"stack_checks needs at least 2 halos; got {len(checks)}")
    if any(not np.array_equal(c.edges, checks[0].edges) for c in checks):
        raise ValueError("stack_checks needs every halo measured on the same bin edges")
    m500 = np.array([c.m500c_msun for c in checks])
    y = np.array([c.y500_mpc2 for c in checks])
    y_model = np.array([c.y500_model_mpc2 for c in checks])
    lx = np.array([c.lx500_erg_s for c in checks])
    profiles = {
        "dm_density": _stack("dm_density", checks, "R200m"),
        "gas_density": _stack("gas_density", checks, "R200m"),
        "pressure": _stack("pressure", checks, "R500c"),
        "fgas": _stack("fgas", checks, "R500c", cumulative=True),
    }
    return ValidationResult(
        profiles=profiles,
        halo_ids=np.array([c.halo_id for c in checks], dtype=np.int64),
        m500c_msun=m500, y500_mpc2=y, y500_model_mpc2=y_model, lx500_erg_s=lx,
        fgas_r500c=np.array([c.fgas_r500c for c in checks]),
        y_m=fit_power_law(m500, y, FIT_PIVOT_MSUN),
        y_m_model=fit_power_law(m500, y_model, FIT_PIVOT_MSUN),
        lx_m=fit_power_law(m500, lx, FIT_PIVOT_MSUN),
        arnaud10_y500_at_pivot_mpc2=float(arnaud10_y500_mpc2(np.array([FIT_PIVOT_MSUN]), h)[0]),
        h=h,
        fgas500=np.array([c.fgas500 for c in checks]),
        lx500_soft_erg_s=np.array([c.lx500_soft_erg_s for c in checks]),
        tmw_kev=np.array([c.tmw_kev for c in checks]),
    )


def validate_source(
    source: MockHaloSource, halo_ids: Sequence[int] | None = None, edges: np.ndarray = DEFAULT_EDGES,
    progress=None,
) -> ValidationResult:
    """Load each halo of ``source`` (one at a time), measure it and stack the checks.

    Parameters
    ----------
    source : MockHaloSource
    halo_ids : sequence of int, optional
        Halos to use (default: all of the source's).
    edges : (K + 1,) float64
        Bin edges (:data:`DEFAULT_EDGES`).
    progress : callable, optional
        ``progress(i, n, checks)`` after each halo (the CLI logs with it).
    """
    ids = list(source.halo_ids() if halo_ids is None else halo_ids)
    checks = []
    for i, hid in enumerate(ids):
        dm_axes, gas_axes = model_axes(source.parameters(hid), source.cfg)
        c = measure_halo(source.load(hid), source.profiles(hid), source.cfg, edges, dm_axes, gas_axes)
        checks.append(c)
        if progress is not None:
            progress(i, len(ids), c)
    return stack_checks(checks, source.cfg.cosmology.h)

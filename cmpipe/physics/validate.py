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
Temperatures in 0.15-1 R500c (a spherical shell, not a projected annulus)
    ``T_mw = sum m T / sum m`` (gas-mass-weighted) and the spectroscopic-like
    ``T_sl = sum w T / sum w``, ``w = n^2 T^(-3/4) V``, i.e. ``m rho T^(-3/4)`` per particle
    (Mazzotta et al. 2004, MNRAS 354, 10, eq. 14; derived for bremsstrahlung-dominated gas above
    ~3 keV, so only an approximation of a spectral fit for groups). ``T_sl`` is the one compared
    with X-ray spectral temperatures. It leaves out gas colder than :data:`T_SL_COLD_FRACTION`
    of the annulus' median temperature: the mock's isobaric gas clumps and stripped subhalo gas
    (a few % of the particles, at 1e-3-1e-2 keV), which would otherwise dominate the ``T^-3/4``
    weight (T_sl of 0.01-0.3 keV for 1-4 keV halos) but emit almost nothing in an X-ray band
    above 0.5 keV and are masked by X-ray analyses as clumps; ``T_sl`` changes by < 3 % between
    cuts at 0.1 and 0.3 of the median. ``T_mw`` keeps all the gas.
Hydrostatic mass
    ``M500c,HSE``: the mass an X-ray analysis assuming hydrostatic equilibrium with the thermal
    pressure alone would report, from the model's ``MockProfiles.hydrostatic_mass_msun(r) =
    -r^2 dP_th/dr / (G rho_gas)``, inside its own ``R500c,HSE`` (where ``M_HSE(<R) = 500
    rho_c 4 pi R^3 / 3``, as X-ray masses define their R500); also ``M_HSE(<R500c)`` at the true
    radius. NaN for a mock without that method.
Outskirts to the map edge and their discontinuities
    DM and gas densities over ``rho_bar_m`` in ellipsoidal shells of each species' own shape
    inside R200m (:func:`shape_from_particles`; a spherical average would blur a step in
    ellipsoidal radius over the spread of the axes), on :data:`OUTSKIRTS_EDGES` (0.1-10 R200m, 0.05
    dex), each halo up to its map edge (half the map side, ``npix pixel_mpc / 2``, in R200m), with
    the particle (Poisson) variance of each shell, ``sum m^2 / V^2``. :func:`density_jumps` stacks
    them and flags, per shell, the departure of the stacked ``ln rho`` from the quadratic in
    ``ln r`` fitted to its two neighbours on each side, in units of the particle noise: a
    truncation (a density step) stands out, a smooth profile stays within the noise.

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
    from cmpipe.config import CosmologyConfig, MapsConfig, MockConfig, PlasmaConfig
    from cmpipe.physics.halo import Halo
    from cmpipe.physics.mock import MockHaloSource, MockProfiles

__all__ = [
    "ARNAUD10_Y500",
    "DEFAULT_EDGES",
    "JUMP_THRESHOLD_SIGMA",
    "OUTSKIRTS_EDGES",
    "BootstrapFit",
    "DensityJumps",
    "LineOfSightCheck",
    "HaloChecks",
    "PowerLawFit",
    "StackedProfile",
    "ValidationResult",
    "arnaud10_y500_mpc2",
    "bootstrap_power_law",
    "density_jumps",
    "fit_power_law",
    "hydrostatic_m500c_msun",
    "line_of_sight_check",
    "measure_halo",
    "model_axes",
    "p500_kev_cm3",
    "profile_checks_markdown",
    "shape_from_particles",
    "shell_density",
    "spectroscopic_like_temperature_kev",
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
#: Annulus of the temperatures [R500c] (Vikhlinin et al. 2009's 0.15-1 R500).
T_ANNULUS_R500C = (0.15, 1.0)
#: Exponent of the spectroscopic-like weight ``n^2 T^-a`` (Mazzotta et al. 2004, eq. 14).
T_SL_EXPONENT = 0.75
#: Gas colder than this fraction of the annulus' median temperature is left out of ``T_sl``.
T_SL_COLD_FRACTION = 0.2
#: Shell edges of the outskirts profiles [R200m]: 0.1-10 R200m, 0.05 dex (40 shells).
OUTSKIRTS_EDGES = 10.0 ** np.linspace(-1.0, 1.0, 41)
#: Largest |jump| [particle-noise sigma] of a stacked density shell that :func:`density_jumps`
#: accepts: about 80 shells are tested (DM and gas), and ``P(|z| > 4) = 6e-5`` per shell.
JUMP_THRESHOLD_SIGMA = 4.0
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


def model_axes(row: dict, mock: MockConfig) -> tuple[np.ndarray, np.ndarray]:
    """Axis lengths of the DM and gas ellipsoids of one halo (module docstring), ``(3,)`` each,
    product 1; ones where ``mock.triaxial`` / ``mock.gas_shape`` is off."""
    q, s = float(row["shape_q"]), float(row["shape_s"])

    def axes(q_: float, s_: float) -> np.ndarray:
        return np.array([1.0, q_, s_]) / np.cbrt(q_ * s_)

    dm = axes(q, s) if mock.triaxial else np.ones(3)
    gas = axes(1.0 - 0.5 * (1.0 - q), 1.0 - 0.5 * (1.0 - s)) if mock.gas_shape else np.ones(3)
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
    tsl_kev : float
        Spectroscopic-like temperature of the particles in 0.15-1 R500c [keV] (module docstring).
    m500c_hse_msun, r500c_hse_mpc : float
        Hydrostatic M500c [Msun] inside its own R500c,HSE [Mpc] (:func:`hydrostatic_m500c_msun`;
        NaN for a mock without ``hydrostatic_mass_msun``).
    m_hse_at_r500c_msun : float
        Hydrostatic mass inside the true R500c [Msun] (NaN likewise).
    is_cool_core : bool or None
        The catalog's ``is_cool_core`` (None when the catalog has none).
    outskirts_edges : (J + 1,) float64
        Shell edges of the outskirts profiles [R200m] (:data:`OUTSKIRTS_EDGES`).
    dm_outskirts, gas_outskirts : (J,) float64
        Shell densities over ``rho_bar_m`` [dimensionless], NaN beyond the map edge.
    dm_outskirts_var, gas_outskirts_var : (J,) float64
        Their particle (Poisson) variances, ``sum m^2 / (V rho_bar_m)^2`` [dimensionless].
    dm_outskirts_model, gas_outskirts_model : (J,) float64
        The model's shell densities (halo tables plus the uniform background).
    map_edge_r200m : float
        Half the map side over R200m [dimensionless].
    sphere_radius_mpc : float
        Radius of the sphere inscribed in the projection box, ``min(npix pixel, depth) / 2`` [Mpc].
    sphere_dm_msun, sphere_gas_msun : float
        DM and gas particle mass inside that sphere [Msun].
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
    tsl_kev: float = float("nan")
    m500c_hse_msun: float = float("nan")
    r500c_hse_mpc: float = float("nan")
    m_hse_at_r500c_msun: float = float("nan")
    is_cool_core: bool | None = None
    outskirts_edges: np.ndarray = field(default_factory=lambda: OUTSKIRTS_EDGES.copy())
    dm_outskirts: np.ndarray = field(default_factory=lambda: np.full(OUTSKIRTS_EDGES.size - 1, np.nan))
    dm_outskirts_var: np.ndarray = field(default_factory=lambda: np.full(OUTSKIRTS_EDGES.size - 1, np.nan))
    dm_outskirts_model: np.ndarray = field(default_factory=lambda: np.full(OUTSKIRTS_EDGES.size - 1, np.nan))
    gas_outskirts: np.ndarray = field(default_factory=lambda: np.full(OUTSKIRTS_EDGES.size - 1, np.nan))
    gas_outskirts_var: np.ndarray = field(default_factory=lambda: np.full(OUTSKIRTS_EDGES.size - 1, np.nan))
    gas_outskirts_model: np.ndarray = field(default_factory=lambda: np.full(OUTSKIRTS_EDGES.size - 1, np.nan))
    map_edge_r200m: float = float("nan")
    sphere_radius_mpc: float = float("nan")
    sphere_dm_msun: float = float("nan")
    sphere_gas_msun: float = float("nan")


def _shell_mass(r_mpc: np.ndarray, mass: np.ndarray, edges_mpc: np.ndarray) -> np.ndarray:
    return np.histogram(r_mpc, bins=edges_mpc, weights=mass)[0]


def _model_enclosed(
    table_r: np.ndarray, table_m: np.ndarray, r_out: float, rho_bg: float, r: np.ndarray, factors: np.ndarray,
    background_inside: bool = False,
) -> np.ndarray:
    """Mass of the model inside spheres of radius ``r`` [Msun]: ``< M_e(r f) / f^3 >_u`` from the
    table of ellipsoidal radius, plus a uniform background of density ``rho_bg`` [Msun Mpc^-3]:
    where ``r_e >= r_out``, ``rho_bg < 4 pi / 3 max(r^3 - (r_out / f)^3, 0) >_u``, or with
    ``background_inside`` everywhere, ``rho_bg 4 pi r^3 / 3``."""
    re = np.asarray(r, dtype=np.float64)[:, None] * factors
    inside = np.interp(np.minimum(re, table_r[-1]), table_r, table_m) / factors**3
    if background_inside:
        outside = rho_bg * 4.0 / 3.0 * np.pi * np.asarray(r, dtype=np.float64)[:, None] ** 3 * np.ones_like(factors)
    else:
        outside = rho_bg * 4.0 / 3.0 * np.pi * np.maximum(re**3 - r_out**3, 0.0) / factors**3
    return (inside + outside).mean(axis=1)


def shell_density(r_mpc: np.ndarray, mass_msun: np.ndarray, edges_mpc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shell-mean density and its particle (Poisson) variance.

    Parameters
    ----------
    r_mpc, mass_msun : (N,) float64
        Particle radii [Mpc] and masses [Msun].
    edges_mpc : (K + 1,) float64
        Shell edges [Mpc].

    Returns
    -------
    density, variance : (K,) float64
        ``sum m / V`` [Msun Mpc^-3] and ``sum m^2 / V^2`` [Msun^2 Mpc^-6] (the variance of a
        Poisson sum of the particles' masses).
    """
    vol = _shell_volumes(np.asarray(edges_mpc, dtype=np.float64))
    m = np.asarray(mass_msun, dtype=np.float64)
    return _shell_mass(r_mpc, m, edges_mpc) / vol, _shell_mass(r_mpc, m**2, edges_mpc) / vol**2


def spectroscopic_like_temperature_kev(
    t_kev: np.ndarray, mass_msun: np.ndarray, density_msun_mpc3: np.ndarray, cold_fraction: float = T_SL_COLD_FRACTION,
) -> float:
    """Spectroscopic-like temperature of gas particles (Mazzotta et al. 2004, MNRAS 354, 10, eq. 14).

    ``T_sl = sum w T / sum w`` with ``w = n^2 T^(-3/4) V = m rho T^(-3/4)`` per particle, over the
    particles at least ``cold_fraction`` times the median temperature (module docstring).

    Parameters
    ----------
    t_kev, mass_msun, density_msun_mpc3 : (N,) float64
        Temperatures [keV], masses [Msun] and densities [Msun Mpc^-3] (any common units: only
        the ratios of the weights enter).
    cold_fraction : float
        Fraction of the median temperature below which gas is left out [dimensionless].

    Returns
    -------
    float
        ``T_sl`` [keV]; NaN for no particles.
    """
    t = np.asarray(t_kev, dtype=np.float64)
    if t.size == 0:
        return float("nan")
    hot = t >= cold_fraction * float(np.median(t))
    w = (np.asarray(mass_msun, dtype=np.float64) * np.asarray(density_msun_mpc3, dtype=np.float64)
         * t ** (-T_SL_EXPONENT))[hot]
    return float(np.sum(w * t[hot]) / np.sum(w))


def shape_from_particles(
    pos_mpc: np.ndarray, mass_msun: np.ndarray, r_max_mpc: float, n_iter: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Axes and orientation of a particle distribution from its second moments.

    The shape tensor ``S = sum m x x^T / sum m`` of the particles inside the ellipsoid of
    ellipsoidal radius ``r_max`` (a sphere at first), iterated: for a density that is any
    function of an ellipsoidal radius (plus a uniform part), inside an ellipsoid of the same
    shape, the eigenvalues of ``S`` are proportional to the squared axes, so the iteration's
    fixed point is the true shape.

    Parameters
    ----------
    pos_mpc : (N, 3) float64
        Positions about the centre [Mpc].
    mass_msun : (N,) float64
        Masses [Msun].
    r_max_mpc : float
        Ellipsoidal radius of the region used [Mpc] (R200m for a halo).
    n_iter : int
        Iterations.

    Returns
    -------
    axes : (3,) float64
        Axis lengths, product 1 (so ellipsoidal shells have the volumes of spherical ones).
    rotation : (3, 3) float64
        Columns: the principal directions (``|R^T x / axes|`` is the ellipsoidal radius).
    """
    pos = np.asarray(pos_mpc, dtype=np.float64)
    m = np.asarray(mass_msun, dtype=np.float64)
    axes, rot = np.ones(3), np.eye(3)
    for _ in range(n_iter):
        sel = np.linalg.norm((pos @ rot) / axes, axis=1) < r_max_mpc
        if np.count_nonzero(sel) < 10:
            break
        x, w = pos[sel], m[sel]
        tensor = (x * w[:, None]).T @ x / w.sum()
        evals, evecs = np.linalg.eigh(tensor)
        evals = np.maximum(evals[::-1], 1e-30)
        new_axes = np.sqrt(evals) / np.cbrt(np.prod(np.sqrt(evals)))
        rot = evecs[:, ::-1]
        converged = np.allclose(new_axes, axes, rtol=1e-4)
        axes = new_axes
        if converged:
            break
    return axes, rot


def hydrostatic_m500c_msun(prof: MockProfiles) -> tuple[float, float, float]:
    """The hydrostatic mass of a halo's model, as an X-ray analysis would define it.

    Parameters
    ----------
    prof : MockProfiles
        With ``hydrostatic_mass_msun(r_mpc)`` (thermal pressure alone, ``-r^2 dP_th/dr /
        (G rho_gas)``) [Msun]; M500c [Msun] and R500c [Mpc], whose ratio fixes ``500 rho_c``.

    Returns
    -------
    m500c_hse_msun, r500c_hse_mpc, m_hse_at_r500c_msun : float
        ``M_HSE`` inside ``R500c,HSE`` [Msun], the radius where ``M_HSE(<R) = M500c (R /
        R500c)^3`` [Mpc] (found on a log grid over 0.3-1.5 R500c, linear in between), and
        ``M_HSE`` inside the true R500c [Msun]; NaN without the method or a crossing.
    """
    fn = getattr(prof, "hydrostatic_mass_msun", None)
    nan = float("nan")
    if fn is None:
        return nan, nan, nan
    r500c, m500c = float(prof.r500c_mpc), float(prof.m500c_msun)
    at_r500c = float(np.asarray(fn(np.array([r500c])), dtype=np.float64)[0])
    r = np.geomspace(0.3, 1.5, 481) * r500c
    excess = np.asarray(fn(r), dtype=np.float64) - m500c * (r / r500c) ** 3
    cross = np.flatnonzero((excess[:-1] > 0) & (excess[1:] <= 0))
    if cross.size == 0:
        return nan, nan, at_r500c
    i = int(cross[0])
    t = excess[i] / (excess[i] - excess[i + 1])
    r_hse = float(np.exp(np.log(r[i]) + t * np.log(r[i + 1] / r[i])))
    return m500c * (r_hse / r500c) ** 3, r_hse, at_r500c


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


@dataclass(frozen=True)
class _Model:
    """A halo's input model for the checks: its profiles, uniform background
    ``(rho_bg_dm, rho_bg_gas)`` [Msun Mpc^-3] (``bg_inside``: it fills the halo too) and the
    direction-average stretch factors of the DM and gas ellipsoids."""

    prof: MockProfiles
    rho_bg_dm: float
    rho_bg_gas: float
    bg_inside: bool
    f_dm: np.ndarray
    f_gas: np.ndarray

    def enclosed(self, species: str, edges_mpc: np.ndarray, factors: np.ndarray | None = None) -> np.ndarray:
        """Model mass of ``species`` (``"dm"`` or ``"gas"``) inside each of ``edges_mpc`` [Msun],
        direction-averaged over ``factors`` (default: the species' own)."""
        prof = self.prof
        if species == "dm":
            table, rho_bg, own = prof.dm_enclosed_msun, self.rho_bg_dm, self.f_dm
        else:
            table, rho_bg, own = prof.gas_enclosed_msun, self.rho_bg_gas, self.f_gas
        f = own if factors is None else factors
        return _model_enclosed(prof.r_mpc, table, prof.outer_mpc, rho_bg, edges_mpc, f, self.bg_inside)


@dataclass(frozen=True)
class _GasState:
    """Per gas particle: radius [Mpc], mass [Msun], density [Msun Mpc^-3], temperature [K],
    ``n_e`` and ``sum n_Z Z^2`` [cm^-3], electron pressure [keV cm^-3] and volume ``m / rho`` [Mpc^3]."""

    r: np.ndarray
    m: np.ndarray
    rho: np.ndarray
    temperature: np.ndarray
    n_e: np.ndarray
    n_z2: np.ndarray
    p_e: np.ndarray
    v_mpc3: np.ndarray


def _gas_state(halo: Halo, plasma, k) -> _GasState:
    """Electron pressure and emissivity inputs per gas particle (``plasma`` a
    :class:`~cmpipe.physics.plasma.Plasma`, ``k`` its constants)."""
    m_gas = halo.gas.mass_msun
    rho = np.asarray(halo.gas.density_msun_mpc3, dtype=np.float64)
    rho_cgs = rho * (k.msun_g / k.mpc_cm**3)
    n_e = plasma.electrons_per_proton_mass * rho_cgs / k.proton_mass_g
    n_z2 = plasma.ion_z2_per_proton_mass * rho_cgs / k.proton_mass_g
    temperature = np.asarray(halo.gas.temperature_k, dtype=np.float64)
    p_e = n_e * k.boltzmann_kev_per_k * temperature  # keV cm^-3
    return _GasState(r=np.linalg.norm(halo.gas.pos_mpc, axis=1), m=m_gas, rho=rho, temperature=temperature,
                     n_e=n_e, n_z2=n_z2, p_e=p_e, v_mpc3=m_gas / rho)


def _density_checks(
    model: _Model, r_dm: np.ndarray, m_dm: np.ndarray, gas: _GasState, edges: np.ndarray, rho_m: float
) -> dict[str, np.ndarray]:
    """DM and gas densities in shells of R200m over ``rho_m`` [Msun Mpc^-3], measured and model."""
    e200 = edges * model.prof.r200m_mpc
    vol = _shell_volumes(e200)
    dm_model_enc = model.enclosed("dm", e200)
    gas_model_enc = model.enclosed("gas", e200)
    return {
        "dm_density": _shell_mass(r_dm, m_dm, e200) / vol / rho_m,
        "gas_density": _shell_mass(gas.r, gas.m, e200) / vol / rho_m,
        "dm_density_model": np.diff(dm_model_enc) / vol / rho_m,
        "gas_density_model": np.diff(gas_model_enc) / vol / rho_m,
    }


def _pressure_checks(prof: MockProfiles, gas: _GasState, edges: np.ndarray, pressure_of_r) -> dict[str, np.ndarray]:
    """Volume-weighted ``P_e / P500`` in shells of R500c, measured and model."""
    p500 = p500_kev_cm3(prof.m500c_msun, prof.h, prof.e_z)
    e500 = edges * prof.r500c_mpc
    pv = _shell_mass(gas.r, gas.p_e * gas.v_mpc3, e500)
    vv = _shell_mass(gas.r, gas.v_mpc3, e500)
    with np.errstate(invalid="ignore", divide="ignore"):
        pressure = np.where(vv > 0, pv / np.where(vv > 0, vv, 1.0), np.nan) / p500
    return {"pressure": pressure, "pressure_model": _shell_average(pressure_of_r, e500) / p500}


def _fgas_checks(
    model: _Model, r_dm: np.ndarray, m_dm: np.ndarray, gas: _GasState, edges: np.ndarray, f_b: float
) -> dict:
    """Gas fraction inside each outer bin edge [R500c] over ``f_b``, measured and model, and
    inside R500c."""
    r500c = model.prof.r500c_mpc
    e500 = edges * r500c
    gas_enc = np.array([gas.m[gas.r < r].sum() for r in e500[1:]])
    dm_enc = np.array([m_dm[r_dm < r].sum() for r in e500[1:]])
    tot = gas_enc + dm_enc
    fgas = np.where(tot > 0, gas_enc / np.where(tot > 0, tot, 1.0), np.nan) / f_b
    g_mod = model.enclosed("gas", e500[1:])
    d_mod = model.enclosed("dm", e500[1:])
    g500, d500 = gas.m[gas.r < r500c].sum(), m_dm[r_dm < r500c].sum()
    return {
        "fgas": fgas,
        "fgas_model": g_mod / (g_mod + d_mod) / f_b,
        "fgas_r500c": float(g500 / (g500 + d500) / f_b) if g500 + d500 > 0 else float("nan"),
        "fgas500": float(g500 / (g500 + d500)) if g500 + d500 > 0 else float("nan"),
    }


def _r500c_integrals(prof: MockProfiles, gas: _GasState, pressure_of_r, gaunt_factor: float, k) -> dict[str, float]:
    """Y500 and L_X (bolometric and soft band) inside R500c, and the gas-mass-weighted and
    spectroscopic-like temperatures in 0.15-1 R500c."""
    from cmpipe.physics.plasma import BREMSSTRAHLUNG_CGS

    r500c = prof.r500c_mpc
    in500 = gas.r < r500c
    ez_y = prof.e_z ** (-2.0 / 3.0)
    y500 = float(k.compton_y_cm3_per_kev_mpc * np.sum(gas.p_e[in500] * gas.v_mpc3[in500])) * ez_y
    y500_model = k.compton_y_cm3_per_kev_mpc * _sphere_integral(pressure_of_r, r500c, 1e-6 * r500c) * ez_y
    eps = BREMSSTRAHLUNG_CGS * np.sqrt(gas.temperature) * gas.n_e * gas.n_z2 * gaunt_factor  # erg s^-1 cm^-3
    kt_kev = k.boltzmann_kev_per_k * gas.temperature
    lo_kev, hi_kev = SOFT_BAND_KEV
    band = np.exp(-lo_kev / kt_kev) - np.exp(-hi_kev / kt_kev)
    annulus = (gas.r >= T_ANNULUS_R500C[0] * r500c) & (gas.r < T_ANNULUS_R500C[1] * r500c)
    w = gas.m[annulus]
    return {
        "y500_mpc2": y500,
        "y500_model_mpc2": float(y500_model),
        "lx500_erg_s": float(np.sum(eps[in500] * gas.v_mpc3[in500]) * k.mpc_cm**3),
        "lx500_soft_erg_s": float(np.sum((eps * band * gas.v_mpc3)[in500]) * k.mpc_cm**3),
        # Gas-mass-weighted temperature in 0.15-1 R500c.
        "tmw_kev": float(np.sum(w * kt_kev[annulus]) / np.sum(w)) if w.sum() > 0 else float("nan"),
        # Spectroscopic-like: w = n^2 T^-3/4 V = m rho T^-3/4 (Mazzotta et al. 2004, eq. 14), over
        # the hot phase only (module docstring).
        "tsl_kev": spectroscopic_like_temperature_kev(kt_kev[annulus], gas.m[annulus], gas.rho[annulus]),
    }


def _outskirts(halo: Halo, model: _Model, map_width_mpc: float, rho_m: float) -> dict:
    """Outskirts to the map edge: shell densities over ``rho_m``, their particle variance and
    the model, NaN beyond half the map width ``map_width_mpc`` [Mpc]."""
    r200m = model.prof.r200m_mpc
    map_edge = 0.5 * map_width_mpc / r200m
    eo = OUTSKIRTS_EDGES * r200m
    beyond = OUTSKIRTS_EDGES[1:] > map_edge
    out: dict = {"map_edge_r200m": float(map_edge)}
    for name, pos, m_p in (("dm", halo.dm.pos_mpc, halo.dm.mass_msun), ("gas", halo.gas.pos_mpc, halo.gas.mass_msun)):
        # In ellipsoidal shells of the particles' own shape inside R200m: a spherical average
        # blurs a step in ellipsoidal radius over the spread of the axes.
        axes, rot = shape_from_particles(pos, m_p, r200m)
        dens, var = shell_density(np.linalg.norm((pos @ rot) / axes, axis=1), m_p, eo)
        shell_model = np.diff(model.enclosed(name, eo, np.ones(1)))
        shell_model = shell_model / _shell_volumes(eo)
        values = [np.where(beyond, np.nan, a) for a in (dens / rho_m, var / rho_m**2, shell_model / rho_m)]
        out[f"{name}_outskirts"], out[f"{name}_outskirts_var"], out[f"{name}_outskirts_model"] = values
    return out


def _sphere_masses(halo: Halo, r_dm: np.ndarray, gas_r: np.ndarray, maps: MapsConfig) -> dict[str, float]:
    """DM and gas particle mass [Msun] in the sphere inscribed in the projection box."""
    sphere_r = 0.5 * min(maps.npix * maps.pixel_mpc, maps.depth_mpc)
    return {
        "sphere_radius_mpc": float(sphere_r),
        "sphere_dm_msun": float(halo.dm.mass_msun[r_dm < sphere_r].sum()),
        "sphere_gas_msun": float(halo.gas.mass_msun[gas_r < sphere_r].sum()),
    }


def measure_halo(
    halo: Halo, prof: MockProfiles, cosmology: CosmologyConfig, plasma: PlasmaConfig, maps: MapsConfig,
    mock: MockConfig, edges: np.ndarray = DEFAULT_EDGES, dm_axes: np.ndarray | None = None,
    gas_axes: np.ndarray | None = None, is_cool_core: bool | None = None,
) -> HaloChecks:
    """Measure one halo's profiles, Y500 and L_X against its input model (module docstring).

    Parameters
    ----------
    halo : Halo
        The particles (:meth:`MockHaloSource.load`), centred on the origin; the gas needs
        temperatures and SPH densities.
    prof : MockProfiles
        The halo's input model (:meth:`MockHaloSource.profiles`).
    cosmology, plasma, maps, mock : config sections
        Cosmology, plasma, the projection box (outskirts, inscribed sphere) and the mock's
        ``background`` setting.
    edges : (K + 1,) float64
        Bin edges [R200m for the densities, R500c for pressure and gas fraction].
    dm_axes, gas_axes : (3,) float64, optional
        Axis lengths of the model's DM and gas ellipsoids (:func:`model_axes`; default spheres).
    is_cool_core : bool, optional
        The catalog row's ``is_cool_core`` (:func:`validate_source` passes it).
    """
    from cmpipe.physics.cosmology import mean_densities
    from cmpipe.physics.plasma import Plasma, constants

    if halo.gas.density_msun_mpc3 is None:
        raise ValueError("measure_halo needs the gas particles' SPH densities (density_msun_mpc3)")
    edges = np.asarray(edges, dtype=np.float64)
    means = mean_densities(cosmology)
    f_b = cosmology.omega_b / cosmology.omega_m
    model = _Model(prof, *_background(prof, mock.background, means), _stretch_factors(dm_axes),
                   _stretch_factors(gas_axes))
    pressure_of_r = _direction_average(prof.electron_pressure_kev_cm3, model.f_gas)
    k = constants()
    gas = _gas_state(halo, Plasma(plasma.hydrogen_mass_fraction, plasma.gaunt_factor), k)
    r_dm, m_dm = np.linalg.norm(halo.dm.pos_mpc, axis=1), halo.dm.mass_msun
    m500_hse, r500_hse, m_hse_r500 = hydrostatic_m500c_msun(prof)
    row_cc = getattr(prof, "is_cool_core", None) if is_cool_core is None else is_cool_core
    return HaloChecks(
        halo_id=int(halo.props.halo_id), m200m_msun=float(halo.props.m200m_msun), m500c_msun=prof.m500c_msun,
        r200m_mpc=prof.r200m_mpc, r500c_mpc=prof.r500c_mpc, edges=edges,
        **_density_checks(model, r_dm, m_dm, gas, edges, means.matter),
        **_pressure_checks(prof, gas, edges, pressure_of_r),
        **_fgas_checks(model, r_dm, m_dm, gas, edges, f_b),
        **_r500c_integrals(prof, gas, pressure_of_r, plasma.gaunt_factor, k),
        n_gas=int(halo.gas.n), n_dm=int(halo.dm.n),
        m500c_hse_msun=m500_hse, r500c_hse_mpc=r500_hse, m_hse_at_r500c_msun=m_hse_r500,
        is_cool_core=None if row_cc is None else bool(row_cc),
        outskirts_edges=OUTSKIRTS_EDGES.copy(),
        **_outskirts(halo, model, maps.npix * maps.pixel_mpc, means.matter),
        **_sphere_masses(halo, r_dm, gas.r, maps),
    )


def _background(prof: MockProfiles, background: bool, means) -> tuple[float, float, bool]:
    """``(rho_bg_DM, rho_bg_gas [Msun Mpc^-3], inside)`` of the mock's uniform background: the
    profiles' own numbers when they carry them, else the cosmic means outside the halo's outer
    radius when ``mock.background`` is on (the mock before issue 16)."""
    bg = bool(background)
    dm = getattr(prof, "background_dm_msun_mpc3", means.dark_matter if bg else 0.0)
    gas = getattr(prof, "background_gas_msun_mpc3", means.baryon if bg else 0.0)
    return float(dm), float(gas), bool(getattr(prof, "background_inside", False))


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
class DensityJumps:
    """A stacked density profile to the map edge and its discontinuity check (:func:`density_jumps`).

    Attributes
    ----------
    name : str
        ``dm`` or ``gas``.
    x_edges : (K + 1,) float64
        Shell edges [R200m].
    x : (K,) float64
        Geometric shell centres [R200m].
    stacked, model : (K,) float64
        Mean over the halos covering each shell of the density over ``rho_bar_m`` and of the
        model's (NaN where no halo covers it).
    n_halos : (K,) int64
        Halos covering each shell (their map edge beyond its outer edge).
    jump_sigma : (K,) float64
        ``(ln rho_i - q_i) / sqrt(s_i^2 + var q_i)``: the stacked ``ln rho`` of shell ``i`` minus
        ``q_i``, the weighted quadratic in ``ln r`` through shells ``i-2, i-1, i+1, i+2`` (the
        halos covering all five), over the noise ``s`` and the fit's own. ``s^2`` is, per shell,
        the larger of the particle (Poisson) variance of the stacked mean, ``sum_h var_h / n^2``,
        and its halo-to-halo variance ``var_h(rho) / n`` (3 or more halos): gas clumps, subhalos
        and mergers move whole groups of particles together, which the Poisson variance of single
        particles misses. NaN where not tested (the first and last two shells).
    jump_sigma_particles, jump_sigma_halos : (K,) float64
        The same with only the particle noise, and with only the halo-to-halo noise (NaN below
        3 halos).
    max_abs_jump_sigma, x_at_max : float
        Largest ``|jump_sigma|`` and its shell centre [R200m].
    max_abs_jump_sigma_particles : float
        Largest ``|jump_sigma_particles|``.
    threshold_sigma : float
        The largest accepted ``|jump_sigma|``.
    per_halo : (H, K) float64
        Each halo's density over ``rho_bar_m`` (NaN beyond its map edge).
    """

    name: str
    x_edges: np.ndarray
    x: np.ndarray
    stacked: np.ndarray
    model: np.ndarray
    n_halos: np.ndarray
    jump_sigma: np.ndarray
    jump_sigma_particles: np.ndarray
    jump_sigma_halos: np.ndarray
    max_abs_jump_sigma: float
    x_at_max: float
    max_abs_jump_sigma_particles: float
    threshold_sigma: float
    per_halo: np.ndarray

    @property
    def passed(self) -> bool:
        """No shell departs from its neighbours' quadratic by more than the threshold."""
        return bool(self.max_abs_jump_sigma <= self.threshold_sigma)

    def as_stacked_profile(self) -> StackedProfile:
        """The profile as a :class:`StackedProfile` (``<name>_density``) for
        :func:`cmpipe.plots.validation.plot_profile`."""
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            model = self.model if np.any(np.isfinite(self.model)) else self.stacked
            spread = np.nanstd(self.per_halo / model, axis=0)
            deviation = self.stacked / model - 1.0
        return StackedProfile(name=f"{self.name}_density", x_edges=self.x_edges, x=self.x, x_unit="R200m",
                              measured=self.stacked, model=model, deviation=deviation, spread=spread,
                              per_halo=self.per_halo)

    def to_dict(self) -> dict:
        def clean(a):
            return [None if not np.isfinite(v) else float(v) for v in np.asarray(a, dtype=np.float64).ravel()]

        return {"x_unit": "R200m", "x": clean(self.x), "stacked": clean(self.stacked), "model": clean(self.model),
                "n_halos": [int(n) for n in self.n_halos], "jump_sigma": clean(self.jump_sigma),
                "jump_sigma_particles": clean(self.jump_sigma_particles),
                "jump_sigma_halos": clean(self.jump_sigma_halos),
                "max_abs_jump_sigma": float(self.max_abs_jump_sigma), "x_at_max": float(self.x_at_max),
                "max_abs_jump_sigma_particles": float(self.max_abs_jump_sigma_particles),
                "threshold_sigma": float(self.threshold_sigma), "passed": self.passed}


def _quadratic_jump(t: np.ndarray, y: np.ndarray, s2: np.ndarray) -> float:
    """``(y_2 - q(t_2)) / sqrt(s2_2 + var q)`` for 5 points, ``q`` the weighted quadratic through
    points 0, 1, 3, 4 (weights ``1 / s2``)."""
    nb = np.array([0, 1, 3, 4])
    tc = t - t[2]
    design = np.stack([np.ones(4), tc[nb], tc[nb] ** 2], axis=1)
    w = 1.0 / s2[nb]
    cov = np.linalg.inv(design.T @ (design * w[:, None]))
    beta = cov @ (design.T @ (w * y[nb]))
    return float((y[2] - beta[0]) / np.sqrt(s2[2] + cov[0, 0]))


def density_jumps(
    density: np.ndarray, variance: np.ndarray, x_edges: np.ndarray, x_max: np.ndarray, name: str = "",
    model: np.ndarray | None = None, threshold_sigma: float = JUMP_THRESHOLD_SIGMA,
) -> DensityJumps:
    """Stack shell densities of several halos and test each shell for a discontinuity.

    Shell ``i`` is compared with the quadratic in ``ln r`` fitted, weighted by the inverse noise,
    to the stacked ``ln rho`` of shells ``i-2, i-1, i+1, i+2``; the stack for that test is over the
    halos covering all five shells, so that the halo mix is the same along the window, and the
    noise of each shell is the larger of its particle and halo-to-halo noise
    (:class:`DensityJumps`). A smooth profile departs from that quadratic by much less than the
    noise of 0.05-dex shells
    (the quadratic's error is of fourth order in the shell width); a density step by a factor
    ``s`` between two shells departs by about ``ln(s) / 2``, e.g. 0.7 in ``ln rho`` for the
    pre-issue-16 mock's 3.9x DM step at R200m (measured on 24 halos at m_pair = 1e10 Msun/h: 41
    sigma of particle noise, 5 of halo-to-halo noise).

    Parameters
    ----------
    density, variance : (H, K) float64
        Per halo, shell densities (any unit, e.g. over ``rho_bar_m``) and their particle
        variances (the unit squared; :func:`shell_density`).
    x_edges : (K + 1,) float64
        Shell edges [R200m, or any radius unit shared by the halos]; ``ln r`` is the fit's axis.
    x_max : (H,) float64
        Map edge of each halo [same unit]: a shell counts for a halo only if its outer edge is
        inside.
    name : str
        ``dm`` or ``gas``.
    model : (H, K) float64, optional
        The input model's densities (stacked alongside, for plots).
    threshold_sigma : float
        Largest accepted ``|jump|`` [sigma] (:data:`JUMP_THRESHOLD_SIGMA`).
    """
    density = np.atleast_2d(np.asarray(density, dtype=np.float64))
    variance = np.atleast_2d(np.asarray(variance, dtype=np.float64))
    x_edges = np.asarray(x_edges, dtype=np.float64)
    n_h, k = density.shape
    if variance.shape != density.shape or x_edges.size != k + 1:
        raise ValueError(f"density {density.shape}, variance {variance.shape} and {x_edges.size} edges disagree")
    covered = x_edges[1:][None, :] <= np.asarray(x_max, dtype=np.float64).reshape(n_h, 1)
    covered &= np.isfinite(density) & np.isfinite(variance)
    x = np.sqrt(x_edges[1:] * x_edges[:-1])
    lt = np.log(x)
    per_halo = np.where(covered, density, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # shells no halo covers: NaN
        stacked = np.nanmean(per_halo, axis=0)
        model_stack = (np.nanmean(np.where(covered, model, np.nan), axis=0) if model is not None
                       else np.full(k, np.nan))
    jumps, jumps_p, jumps_h = (np.full(k, np.nan) for _ in range(3))
    for i in range(2, k - 2):
        win = slice(i - 2, i + 3)
        sel = covered[:, win].all(axis=1)
        n = int(sel.sum())
        if n == 0:
            continue
        mean = density[sel, win].mean(axis=0)
        var = variance[sel, win].sum(axis=0) / n**2
        if np.any(mean <= 0) or np.any(var <= 0):
            continue
        y = np.log(mean)
        jumps_p[i] = jumps[i] = _quadratic_jump(lt[win], y, var / mean**2)
        if n >= 3:
            var_h = density[sel, win].var(axis=0, ddof=1) / n
            if np.all(var_h > 0):
                jumps_h[i] = _quadratic_jump(lt[win], y, var_h / mean**2)
            jumps[i] = _quadratic_jump(lt[win], y, np.maximum(var, var_h) / mean**2)

    def worst_of(j: np.ndarray) -> tuple[float, float]:
        if not np.isfinite(j).any():
            return float("nan"), float("nan")
        at = int(np.nanargmax(np.abs(j)))
        return float(abs(j[at])), float(x[at])

    worst, x_worst = worst_of(jumps)
    return DensityJumps(
        name=name, x_edges=x_edges, x=x, stacked=stacked, model=model_stack, n_halos=covered.sum(axis=0),
        jump_sigma=jumps, jump_sigma_particles=jumps_p, jump_sigma_halos=jumps_h, max_abs_jump_sigma=worst,
        x_at_max=x_worst, max_abs_jump_sigma_particles=worst_of(jumps_p)[0], threshold_sigma=float(threshold_sigma),
        per_halo=per_halo,
    )


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
    tsl_kev, m500c_hse_msun, m_hse_at_r500c_msun : (H,) float64
        Per halo: the spectroscopic-like temperature in 0.15-1 R500c [keV], the hydrostatic
        M500c inside R500c,HSE and inside R500c [Msun] (NaN where the mock has none).
    is_cool_core : (H,) float64
        1 for a cool core, 0 for a disturbed halo, NaN when the catalog does not say.
    outskirts : dict of str -> DensityJumps
        ``dm`` and ``gas``: stacked densities to the map edge and their discontinuity check.
    sphere_radius_mpc, sphere_dm_msun, sphere_gas_msun : (H,) float64
        Per halo: the sphere inscribed in the projection box [Mpc] and the DM and gas particle
        mass inside it [Msun] (the line-of-sight check of :mod:`cmpipe.cli` compares them with
        and without neighbour halos).
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
    tsl_kev: np.ndarray = field(default_factory=lambda: np.empty(0))
    m500c_hse_msun: np.ndarray = field(default_factory=lambda: np.empty(0))
    m_hse_at_r500c_msun: np.ndarray = field(default_factory=lambda: np.empty(0))
    is_cool_core: np.ndarray = field(default_factory=lambda: np.empty(0))
    outskirts: dict = field(default_factory=dict)
    sphere_radius_mpc: np.ndarray = field(default_factory=lambda: np.empty(0))
    sphere_dm_msun: np.ndarray = field(default_factory=lambda: np.empty(0))
    sphere_gas_msun: np.ndarray = field(default_factory=lambda: np.empty(0))

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
                "tsl_kev": clean(self.tsl_kev),
                "m500c_hse_msun": clean(self.m500c_hse_msun),
                "m_hse_at_r500c_msun": clean(self.m_hse_at_r500c_msun),
                "is_cool_core": clean(self.is_cool_core),
                "sphere_radius_mpc": clean(self.sphere_radius_mpc),
                "sphere_dm_msun": clean(self.sphere_dm_msun),
                "sphere_gas_msun": clean(self.sphere_gas_msun),
            },
            "outskirts": {name: j.to_dict() for name, j in self.outskirts.items()},
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
        tsl_kev=np.array([c.tsl_kev for c in checks]),
        m500c_hse_msun=np.array([c.m500c_hse_msun for c in checks]),
        m_hse_at_r500c_msun=np.array([c.m_hse_at_r500c_msun for c in checks]),
        is_cool_core=np.array([np.nan if c.is_cool_core is None else float(c.is_cool_core) for c in checks]),
        outskirts=_stack_outskirts(checks),
        sphere_radius_mpc=np.array([c.sphere_radius_mpc for c in checks]),
        sphere_dm_msun=np.array([c.sphere_dm_msun for c in checks]),
        sphere_gas_msun=np.array([c.sphere_gas_msun for c in checks]),
    )


def _stack_outskirts(checks: Sequence[HaloChecks]) -> dict:
    """``dm`` and ``gas`` :class:`DensityJumps` of the halos' outskirts profiles (empty when
    they were measured on different edges)."""
    if any(not np.array_equal(c.outskirts_edges, checks[0].outskirts_edges) for c in checks):
        return {}
    x_max = np.array([c.map_edge_r200m for c in checks])
    return {
        name: density_jumps(
            np.stack([getattr(c, f"{name}_outskirts") for c in checks]),
            np.stack([getattr(c, f"{name}_outskirts_var") for c in checks]),
            checks[0].outskirts_edges, x_max, name,
            model=np.stack([getattr(c, f"{name}_outskirts_model") for c in checks]),
        )
        for name in ("dm", "gas")
    }


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
        row = source.parameters(hid)
        dm_axes, gas_axes = model_axes(row, source.mock)
        cc = row.get("is_cool_core")
        c = measure_halo(source.load(hid), source.profiles(hid), source.cosmology, source.plasma, source.maps,
                         source.mock, edges, dm_axes, gas_axes, None if cc is None else bool(cc))
        checks.append(c)
        if progress is not None:
            progress(i, len(ids), c)
    return stack_checks(checks, source.cosmology.h)


@dataclass(frozen=True)
class LineOfSightCheck:
    """Mass of the line-of-sight neighbour halos in the sphere inscribed in the projection box,
    against the mass function (:func:`line_of_sight_check`).

    Attributes
    ----------
    radius_mpc : float
        Radius of the sphere [Mpc].
    halo_ids : (H,) int64
    excess_dm_msun, excess_gas_msun : (H,) float64
        DM and gas particle mass inside the sphere with neighbours minus without, corrected for
        the change of the smooth model (background and two-halo term) [Msun].
    expected_dm_msun : (H,) float64
        ``(1 - f_b)`` times the mean total M200m of neighbours with centres in the sphere
        (:func:`cmpipe.physics.neighbours.expected_neighbour_mass_msun`) [Msun].
    drawn_dm_msun : (H,) float64
        ``(1 - f_b)`` times the M200m of the mock's drawn neighbours with centres in the sphere
        [Msun] (NaN where the source does not list its neighbours).
    realisation_means_dm_msun : (R,) float64
        The mean over the H halos of ``(1 - f_b)`` times the neighbour mass in the sphere, in R
        independent draws of the mass function for the same hosts
        (:func:`cmpipe.physics.neighbours.draw_neighbours`) [Msun]: the sampling distribution of
        the mean, heavy-tailed (a few massive neighbours carry most of the mass), so it, not a
        standard error, judges the measured mean.
    mass_range_log10_msun_h : (2,) float64
        The neighbours' log10 M200m range [log10 Msun/h].
    """

    radius_mpc: float
    halo_ids: np.ndarray
    excess_dm_msun: np.ndarray
    excess_gas_msun: np.ndarray
    expected_dm_msun: np.ndarray
    drawn_dm_msun: np.ndarray
    realisation_means_dm_msun: np.ndarray
    mass_range_log10_msun_h: tuple[float, float]

    def summary(self) -> dict:
        """Mean excess and expectation over halos, the excess's standard error, their ratio, the
        central 95 % of the realisations' means, and whether the measured mean lies inside it."""
        n = self.excess_dm_msun.size
        mean, expected = float(np.mean(self.excess_dm_msun)), float(np.mean(self.expected_dm_msun))
        se = float(np.std(self.excess_dm_msun, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        lo, hi = (np.percentile(self.realisation_means_dm_msun, [2.5, 97.5]) if self.realisation_means_dm_msun.size
                  else (float("nan"), float("nan")))
        return {"radius_mpc": self.radius_mpc, "n_halos": int(n), "mean_excess_dm_msun": mean,
                "standard_error_msun": se, "mean_expected_dm_msun": expected,
                "ratio": mean / expected if expected > 0 else float("nan"),
                "mean_drawn_dm_msun": float(np.mean(self.drawn_dm_msun)),
                "realisations_95_msun": [float(lo), float(hi)],
                "n_realisations": int(self.realisation_means_dm_msun.size),
                "mean_excess_gas_msun": float(np.mean(self.excess_gas_msun)),
                "mass_range_log10_msun_h": list(self.mass_range_log10_msun_h),
                "consistent": bool(lo <= mean <= hi)}


def line_of_sight_check(
    source_with: MockHaloSource, source_without: MockHaloSource, result: ValidationResult, progress=None,
    n_realisations: int = 200, seed: int = 0,
) -> LineOfSightCheck:
    """Measure the neighbour halos' mass in the sphere inscribed in the projection box.

    Parameters
    ----------
    source_with, source_without : MockHaloSource
        The same catalog with ``mock.neighbours`` on and off; ``result`` was measured on the
        second (its ``sphere_dm_msun``, ``sphere_gas_msun``).
    result : ValidationResult
    progress : callable, optional
        ``progress(i, n)`` after each halo.
    n_realisations, seed : int
        Independent draws of the neighbours of every host (``np.random.default_rng(seed)``) for
        the sampling distribution of the mean (:class:`LineOfSightCheck`).

    The excess is ``M_with(<R) - M_without(<R)`` of the particles plus ``S_without(<R) -
    S_with(<R)``, ``S`` the smooth model (the profiles' enclosed mass at R, spherical, plus the
    uniform background ``rho_bg 4 pi R^3 / 3``): the mock lowers its background and two-halo
    term by the neighbours' share of the mean density, which the correction adds back.
    """
    from cmpipe.physics.neighbours import draw_neighbours, expected_neighbour_mass_msun

    cosmology = source_with.cosmology
    f_b = cosmology.omega_b / cosmology.omega_m
    lo, hi = source_with.neighbour_mass_range_log10_msun_h()
    radius = float(result.sphere_radius_mpc[0])
    vol = 4.0 / 3.0 * np.pi * radius**3

    def smooth(prof) -> tuple[float, float]:
        dm = float(np.interp(radius, prof.r_mpc, prof.dm_enclosed_msun))
        gas = float(np.interp(radius, prof.r_mpc, prof.gas_enclosed_msun))
        return (dm + float(getattr(prof, "background_dm_msun_mpc3", 0.0)) * vol,
                gas + float(getattr(prof, "background_gas_msun_mpc3", 0.0)) * vol)

    ex_dm, ex_gas, expected, drawn = [], [], [], []
    rng = np.random.default_rng(seed)
    realisations = np.zeros(n_realisations)
    ids = [int(i) for i in result.halo_ids]
    for i, hid in enumerate(ids):
        halo = source_with.load(hid)
        in_dm = np.linalg.norm(halo.dm.pos_mpc, axis=1) < radius
        in_gas = np.linalg.norm(halo.gas.pos_mpc, axis=1) < radius
        s_with, s_without = smooth(source_with.profiles(hid)), smooth(source_without.profiles(hid))
        ex_dm.append(float(halo.dm.mass_msun[in_dm].sum()) - result.sphere_dm_msun[i] + s_without[0] - s_with[0])
        ex_gas.append(float(halo.gas.mass_msun[in_gas].sum()) - result.sphere_gas_msun[i] + s_without[1] - s_with[1])
        m200m = float(halo.props.m200m_msun)
        expected.append((1.0 - f_b) * expected_neighbour_mass_msun(m200m, cosmology, radius, lo, hi))
        listed = getattr(source_with, "neighbours", None)
        if callable(listed):
            found = listed(hid)
            drawn.append((1.0 - f_b) * sum(n.m200m_msun for n in found if np.linalg.norm(n.dm_centre_mpc) < radius))
        else:
            drawn.append(float("nan"))
        for k in range(n_realisations):
            realisations[k] += (1.0 - f_b) * draw_neighbours(m200m, cosmology, radius, lo, hi, rng).m200m_msun.sum()
        if progress is not None:
            progress(i, len(ids))
    return LineOfSightCheck(radius_mpc=radius, halo_ids=np.array(ids, dtype=np.int64),
                            excess_dm_msun=np.array(ex_dm), excess_gas_msun=np.array(ex_gas),
                            expected_dm_msun=np.array(expected), drawn_dm_msun=np.array(drawn),
                            realisation_means_dm_msun=realisations / max(len(ids), 1),
                            mass_range_log10_msun_h=(float(lo), float(hi)))


def profile_checks_markdown(result: ValidationResult, los: LineOfSightCheck | None = None) -> str:
    """The ``validate.md`` sections on the stacked profiles to the map edge (discontinuities)
    and on the line-of-sight halos."""
    lines = ["## Stacked density profiles to the map edge", "",
             "DM and gas densities in ellipsoidal shells of each species' own shape (0.05 dex, 0.1 R200m to each "
             "halo's map edge, half the map side), stacked over halos, without line-of-sight halos. Jump: a shell's "
             "stacked ln rho minus the quadratic in ln r through its two neighbours on each side, over the larger of "
             "the particle (Poisson) noise and the halo-to-halo noise of the stacked mean; accepted up to "
             f"{JUMP_THRESHOLD_SIGMA:g} sigma.", "",
             "| profile | shells tested | max abs jump [sigma] | at r/R200m | particle noise only [sigma] | verdict |",
             "|---|---|---|---|---|---|"]
    for name, j in result.outskirts.items():
        n_tested = int(np.isfinite(j.jump_sigma).sum())
        verdict = "smooth" if j.passed else "NOT smooth (a discontinuity)"
        lines.append(f"| {name} | {n_tested} | {j.max_abs_jump_sigma:.2f} | {j.x_at_max:.2f} | "
                     f"{j.max_abs_jump_sigma_particles:.2f} | {verdict} |")
    lines.append("")
    if los is None:
        lines += ["Line-of-sight halos: not checked (no neighbour halos in this mock).", ""]
        return "\n".join(lines)
    s = los.summary()
    lines += ["## Line-of-sight halos", "",
              f"DM mass of the neighbour halos (log10 M200m {s['mass_range_log10_msun_h'][0]:.2f}-"
              f"{s['mass_range_log10_msun_h'][1]:.2f} [Msun/h]) inside the sphere of radius {s['radius_mpc']:.2f} Mpc "
              f"inscribed in the projection box, from the particles (with neighbours minus without, the smooth "
              f"model's change added back), mean over {s['n_halos']} halos: {s['mean_excess_dm_msun']:.3g} ± "
              f"{s['standard_error_msun']:.2g} Msun; the drawn neighbours with centres inside: "
              f"{s['mean_drawn_dm_msun']:.3g} Msun; (1 - f_b) x the mass function's expectation "
              f"{s['mean_expected_dm_msun']:.3g} Msun (ratio {s['ratio']:.2f}), central 95 % of the mean over "
              f"{s['n_realisations']} draws of the mass function for these hosts {s['realisations_95_msun'][0]:.3g}-"
              f"{s['realisations_95_msun'][1]:.3g} Msun (heavy-tailed: rare massive neighbours carry most of the "
              f"mass): {'consistent' if s['consistent'] else 'NOT consistent'}. Gas excess "
              f"{s['mean_excess_gas_msun']:.3g} Msun.", ""]
    return "\n".join(lines)

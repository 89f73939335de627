"""Mock galaxy clusters: particle halos drawn from the catalog (``../shared/SPEC.md`` section 4).

A stand-in for the HYPER simulation's halos: every halo of the catalog
(:mod:`cmpipe.physics.catalog`) becomes dark-matter and gas particles of *fixed* masses
``m_DM = (1 - f_b) m_pair`` and ``m_gas = f_b m_pair`` (never a fixed count per halo), drawn from
``SeedSequence([catalog.seed, halo_id, 1])`` alone, so any one halo regenerates identically
without the others. Every realism knob of the ``mock`` config section can be switched off.

Dark matter
    NFW with the catalog's ``c200m`` (Navarro, Frenk & White 1997), ``rho ~ 1 / [y (1 + y)^2]``,
    ``y = c r / R200m``, holding ``(1 - f_b) M200m`` inside R200m and truncated at
    ``truncation_r200m R200m``. With ``infall`` a shell from the truncation radius to
    ``infall_extent_r200m R200m`` follows the halo-matter cross-correlation,
    ``rho_DM(r) = (1 - f_b) rho_bar_m [1 + b xi_mm(r)]`` with the Tinker et al. (2010) bias
    ``b(M200m)`` and the linear matter correlation function (colossus ``haloBias`` and
    ``correlationFunction``, comoving Mpc/h; ``r_com = (1 + z) h r_phys``). Radii come from the
    inverse of the tabulated enclosed mass, directions are isotropic.
Smooth outskirts (``transition``, default; issue 16)
    The halo's own matter follows NFW times the Diemer & Kravtsov (2014) transition term,
    ``rho ~ f_t(r) / [y (1 + y)^2]``, ``f_t = [1 + (r / r_t)^4]^(-2)``, ``r_t = (1.9 - 0.18 nu)
    R200m`` (``nu`` the peak height, colossus ``peakHeight``), normalised to hold M200m inside
    R200m: it steepens smoothly past ``r_t`` instead of being truncated. Around it lies the smooth
    two-halo term ``rho_bar_m b xi_lin(r) [1 - f_t(r)] (1 - F)`` (Tinker et al. 2010 bias ``b``;
    ``1 - f_t`` keeps it out of the halo, a smooth halo exclusion; ``F`` the bias-weighted share of
    the two-halo term in resolved neighbours, made as particles with ``neighbours``), DM and gas in
    the cosmic ratio, and a uniform background at ``(1 - f_coll)`` times the cosmic means fills the
    whole sphere (``f_coll`` the share of the mean density in resolved neighbours, the gas share
    weighted by their depletion). The profiles reach the background sphere's radius, so density
    is continuous everywhere and no radius proportional to R200m is marked in the maps.
    **M200m stays the primary's own**: the catalog's M200m is the mass of this own profile inside
    R200m; the two-halo term, background and neighbours come on top, as in a simulation.
Observed baryons (``observed_baryons``, default; issue 16)
    *Prescribed*: the shape of the thermal pressure and the gas mass inside R500c. The pressure
    shape is the Arnaud et al. (2010) GNFW fit of the REXCESS cool-core sub-sample for the
    catalog's cool cores (``is_cool_core``, fraction ``catalog.cool_core_fraction``) and of the
    morphologically disturbed sub-sample otherwise, its c500 scattered per halo
    (``pressure_c500_factor``). The non-thermal fraction is Nelson et al. (2014) with the radius
    scale ``B`` scattered per halo (``nonthermal_radius_factor``): ``f_nt(R500c)`` from about 0.1
    to 0.3, a hydrostatic bias ``1 - b = M_HSE / M`` of 0.85-0.95 at R500c. *Follows*: the gas
    density from hydrostatic equilibrium of the total pressure ``P_th / (1 - f_nt)`` in the
    halo's own total mass, ``rho_gas = -(dP_tot/dr) r^2 / (G M_tot)``; the pressure amplitude
    from the gas mass, ``M_gas / (M_gas + M_DM) = f_gas,500`` inside R500c (the DM the particles
    hold there) with the Vikhlinin et al. (2009)
    relation ``f_gas,500 = 0.0764 h^-1.5 + 0.037 log10(M500 / 1e15 h^-1 Msun)`` times
    ``fgas500_factor`` (0.12 dex), at most f_b (HSE is linear in the pressure, so the amplitude
    moves density and pressure together and leaves the temperature alone); the temperature
    ``T = mu m_p P_th / rho`` per particle (below). Where the hydrostatic density would exceed
    ``f_b`` times the halo's own matter density (the infall region of massive clusters) it is
    capped there and the pressure follows at the hydrostatic temperature (``pressure_cap``):
    beyond ~R200m the gas is not in equilibrium. Consequences, measured from the profiles: T is
    self-similar, the spectroscopic-like T at the hydrostatic mass 0.85-1.0 x Vikhlinin et al.
    (2009) M-T; ``L_X,bol ~ f_gas^2 M^(4/3)`` gives a slope of ~1.7, cool cores ~3x brighter.
    The merger secondary and neighbours keep ``f_gas,500(M) M`` of gas (:func:`neighbour_gas_depletion`).
Neighbours (``neighbours``, default; issue 16)
    Halos of M200m from ``neighbour_min_particles`` particle pairs to 10^15.5 Msun/h drawn from the
    Tinker et al. (2008) mass function in the background sphere, clustered about the halo with the
    linear bias ``1 + b(M) b_host xi_lin(r)``, excluded inside ``R200m_host + R200m``
    (:func:`cmpipe.physics.neighbours.draw_neighbours`). Each is a spherical NFW of its median
    concentration truncated at its R200m, ``(1 - f_b) M`` of DM and ``f_gas,500(M) M`` of
    isothermal gas at its virial temperature (its pressure adds to the temperature's, like the
    secondary's). They add to y, S_X, gas and DM alike.
Gas clumps (``gas_clumps``, default; issue 16)
    Resolved clumps carrying ``gas_clump_fraction`` of the gas between 0.3 and 2 R200m: particle
    counts log-uniform in [32, 1000], centres from that gas's radial distribution (stretched like
    the gas), Plummer spheres of scale radius ``0.03 Mpc (m / 1e11 Msun)^(1/3)`` truncated at five
    scale radii. Their particles replace as many host profile gas particles of matching radii
    (as the subhalos do), so the gas mass and its radial profile are kept while the gas map gains
    the clumps. Dense and isobaric with the host, they are cool and bright in S_X, faint in y.
Merger phase
    With ``observed_baryons`` the secondary's gas lags its DM only for mergers seen after
    pericentre (``is_post_pericentre``, fraction ``catalog.merger_post_pericentre_fraction``),
    and only those carry a shock; before pericentre gas and DM share their centre.
Triaxiality (``triaxial``)
    A volume-preserving stretch by axis lengths ``(a, b, c) = (1, q, s) / (q s)^(1/3)`` along
    x, y, z, then the catalog orientation (``x = R x_principal``,
    :func:`cmpipe.physics.catalog.orientation_matrix`). Densities become functions of the
    ellipsoidal radius ``r_e = |R^T x / (a, b, c)|``, with the same enclosed mass as the sphere.
Gas
    Electron pressure: the debiased pressure profile DPP (He et al. 2021) in the generalised
    NFW form of Arnaud et al. (2010), ``P_e = P500 P0 / [(c500 x)^g (1 + (c500 x)^a)^((b - g)/a)]``,
    ``x = r / R500c``, ``[P0, c500, a, b, g] = [5.048, 1.217, 1.192, 5.490, 0.433]``,
    ``P500 = 1.65e-3 E(z)^(8/3) (M500c / 3e14 h70^-1 Msun)^(2/3) h70^2 keV cm^-3``, times the
    catalog's ``pressure_factor`` with ``scatter``. Thermal pressure ``P_th = P_e / 0.518``
    (:attr:`cmpipe.physics.plasma.Plasma.electron_pressure_fraction`).
    With ``gas_from_hse`` the gas density follows from hydrostatic equilibrium with non-thermal
    support (Nelson et al. 2014): ``P_tot = P_th / (1 - f_nt)``,
    ``f_nt(r) = 1 - A {1 + exp[-(r / (B R200m))^gamma]}``, ``A, B, gamma = 0.452, 0.841, 1.628``
    (``f_nt(0) = 0.096``, ``f_nt(inf) = 0.548``; without ``nonthermal_support`` ``f_nt = 0``) and
    ``rho_gas = -(dP_tot/dr) r^2 / (G M_tot(<r))``, ``M_tot = M200m m(c r/R200m) / m(c)``,
    ``m(y) = ln(1 + y) - y / (1 + y)`` (the untruncated NFW total mass, gas included). The HSE
    density uses the *mean* pressure (no ``pressure_factor``); with ``scatter`` it is scaled by
    the catalog's ``gas_fraction_factor`` (the two scatters stay independent, so the temperature
    carries their ratio). Without ``gas_from_hse`` the gas follows the DM profile times
    ``f_b / (1 - f_b)`` (NFW, infall shell included). Gas particles reach the same outer radius
    as the DM. With ``gas_shape`` the gas is rounder, axis ratios ``1 - 0.5 (1 - q)`` and
    ``1 - 0.5 (1 - s)``, and tilted from the DM axes by the catalog's ``gas_misalignment_deg``
    about a random axis; without it the gas is spherical.
Background (``background``)
    Uniform DM and gas particles at the cosmic mean densities ``rho_bar_m - rho_bar_b`` and
    ``rho_bar_b`` (:func:`cmpipe.physics.cosmology.mean_densities`), inside the sphere
    circumscribing the projection box (``npix pixel_mpc`` wide, ``depth_mpc`` deep, so any
    rotation of the halo still fills the slab) and outside the halo's outer (ellipsoidal)
    boundary, at the same particle masses.
Temperature
    ``T = mu m_p P_th(r_e) / (k_B rho)`` for every gas particle, with ``rho`` the density of its
    ``n_neighbours_temperature`` nearest gas neighbours, ``(k - 1) m / (4 pi H^3 / 3)``
    (:func:`cmpipe.sph.smoothing.knn_volume_density`), whose inverse, the particle volume that
    weights the SPH maps, is unbiased for Poisson-sampled particles (the gather density's
    inverse is ~20 % high at k = 32, and y = sum P_e V W would carry it): clumps are isobaric,
    denser and cooler. Far out the profile's pressure would give absurdly cold gas, so
    ``T = max(T, 1e4 K)`` (a floor standing in for the IGM temperature-density relation,
    ``T0 = 1e4 K``). The gas particles carry these densities and smoothing lengths, which
    :func:`cmpipe.mapmaking.maps.prepare_halo` then reuses.

Mergers (``mergers``)
    For a catalog row with ``is_merger``, a secondary halo of mass ``M_s = xi M200m``
    (``merger_mass_ratio``; the primary keeps its catalog mass) centred at
    ``d = merger_separation_r200m R200m n`` along ``n = (merger_dir_x, _y, _z)``. Its DM is a
    truncated NFW of ``(1 - f_b) M_s`` inside ``truncation_r200m R200m_s``, ``R200m_s`` from
    ``M_s = 200 rho_bar_m (4 pi / 3) R^3`` (:func:`cmpipe.physics.cosmology.r200m_mpc`) and the
    Diemer & Joyce (2019) median concentration (:func:`cmpipe.physics.catalog.median_concentration`).
    Its gas, ``f_b M_s`` in the same truncated NFW shape, sits behind the DM, back toward the
    primary, by ``lag = min(merger_gas_lag_fraction |d|, 0.3 Mpc)`` (SPEC section 4: after
    pericentre the gas lags its DM by 10-40 % of the separation, at most 300 kpc), i.e. centred at
    ``d - lag n``. Same particle masses (so ``round(M_s / m_pair)`` particles of each species),
    spherical, isotropic. The secondary gas is isothermal at its own virial temperature,
    ``T200m_s = mu m_p G M_s / (2 k_B R200m_s)`` (:func:`cmpipe.physics.analytic.virial_temperature_k`):
    its thermal pressure ``P_s(r) = rho_gas,s(r) k_B T200m_s / (mu m_p)`` (zero beyond its
    truncation) adds to the primary's ``P_th`` wherever a gas particle is, and every gas
    particle's temperature follows from the sum as below. The merger shock is the ``shocks`` knob.
Shocks (``shocks``, needs ``mergers``)
    A merger shock in the primary's ICM ahead of the secondary, which after pericentre moves away
    from the primary along ``n``: a plane front perpendicular to ``n`` at
    ``t_f = |d| + 0.25 R200m_s`` (``t = x . n``; the stand-off ``0.25 R200m_s`` is about half the
    secondary's R500c), a downstream layer ``t_f - 0.5 R200m_s < t < t_f`` (so centred on the
    secondary's DM) and a lateral cap ``|x - t n| < R200m_s``. The Rankine-Hugoniot jumps for
    ``gamma = 5/3`` at the catalog's ``merger_mach`` M, density compression
    ``r = 4 M^2 / (M^2 + 3)`` and pressure ratio ``p = (5 M^2 - 1) / 4`` (temperature ratio
    ``p / r``), apply to the primary's own profile gas particles (not the background, the
    secondary's or the subhalos' gas) as ``P_th -> P_th p^w`` and ``rho -> rho r^w``, where the
    weight ``w = prod_b clip(1/2 + s_b / H, 0, 1)`` ramps linearly across each of the three
    boundaries ``b`` (front, back, cap; ``s_b`` the particle's signed distance inside it) over one
    smoothing length ``H`` (the particle's kernel support), so the jump is continuous in position
    and exact (``w = 1``) deeper than ``H / 2`` inside. Like the clumps, positions, masses and
    smoothing lengths are kept; the temperature follows from the jumped pressure and density
    (``T -> T (p / r)^w``). ``P_th`` here is the primary's plus the secondary's pressure, after
    clumping. A shocked particle's y weight ``P_e V = P_e m / rho`` is multiplied by
    ``(p / r)^w``: the pressure jump times the volume change ``1 / r``, i.e. the temperature jump
    (e.g. 2.08 at M = 2, 4.1 at M = 3); the y map rises by ``sum_i [(p/r)^w_i - 1] y_i`` over the
    shocked particles. The shock draws no random numbers.
Clumping (``clumping``)
    Sub-resolution clumps: every gas particle ``j`` (the background and the secondary's too) keeps
    its position, mass and smoothing length, but its density becomes ``rho_j f_j`` (volume
    ``V_j / f_j``), with ``ln f_j ~ N(sigma_j^2 / 2, sigma_j^2)``, ``sigma_j^2 = ln C(r_j)``,
    ``C(r) = min(1 + C0 (r / R200m)^2, 3)`` (SPEC section 4; ``C0`` the catalog's
    ``clumping_c0``, ``r`` the gas ellipsoidal radius from the primary's centre). Derivation:
    particles are equal-mass (Lagrangian) samples, so a particle average is a mass-weighted one.
    The volume stays the same in expectation iff ``<1/f> = exp(-mu + sigma^2/2) = 1``, i.e.
    ``mu = sigma^2 / 2``; the volume-weighted clumping factor is then
    ``<rho^2>_V / <rho>_V^2 = [sum (V/f) (rho f)^2 / sum (V/f)] / rho^2 = <f> = exp(mu + sigma^2/2)
    = exp(sigma^2) = C``. (This is the usual log-normal density field: volume-weighted
    ``ln(rho/<rho>) ~ N(-sigma^2/2, sigma^2)``, mass-weighted shifted by ``+sigma^2``.) Hence y and
    the gas mass maps, ``sum P_e V`` and ``sum m``, are unchanged in expectation (the particle
    volumes only gain scatter, ``Var(1/f) = C - 1``); the emission measure
    ``sum n_e n_i V ~ sum m rho f`` rises by exactly ``C`` in expectation. The clumps are isobaric
    (the temperature below uses ``rho f``, ``T ~ 1/f``), so the bremsstrahlung emissivity
    ``~ rho^2 T^(1/2) V ~ f^(1/2)`` and S_X rise by ``<f^(1/2)> = exp(mu/2 + sigma^2/8) = C^(3/8)``
    (C for a temperature-independent band emissivity).
Substructure (``substructure``)
    Evolved subhalo mass function (SPEC section 4), ``dN/dln(psi) = A psi^-0.9 exp(-12.27 psi^3)``,
    ``psi = m / M200m``, ``A = f_sub / I`` with ``I = int_{1e-4}^{1} psi^0.1 exp(-12.27 psi^3)
    dln(psi) = 5.0500`` (quadrature, :func:`subhalo_mf_normalisation`): ``f_sub`` (catalog) is
    the mass fraction in subhalos with ``psi`` in ``[1e-4, 1]``, which is the SPEC's
    ``A = f_sub / 5.05``; the function is then resolution-independent, and only the resolved
    subhalos, ``psi >= 32 m_pair / M200m`` (at least 32 DM particles), are made: a Poisson number
    with mean ``int dN`` over ``[psi_min, 1]``, masses by the inverse cumulative (their resolved
    mass fraction is ``A int_{psi_min}^1 psi^0.1 e^(-12.27 psi^3) dln psi``, e.g. 0.68 f_sub at
    ``psi_min = 3.2e-3``). Subhalos beyond a total of 0.5 M200m, in drawn order, are dropped.
    Centres: Einasto number density ``exp(-(2/alpha) [(r/r_-2)^alpha - 1])``, ``alpha = 0.678``,
    ``r_-2 = 0.81 R200m``, truncated at R200m, isotropic, then stretched and rotated like the
    host DM (``triaxial``). Each subhalo is an NFW of the Diemer & Joyce (2019) median
    concentration of its mass, scale radius ``R200m(m) / c`` (``R200m(m)`` as if isolated),
    truncated at its Jacobi radius ``r_t = d [m / (3 M_host(<d))]^(1/3)`` (``d`` its host-centric
    radius before the stretch, ``M_host`` the host's untruncated NFW), at most ``R200m(m)``; the
    truncated profile holds its whole mass (``psi`` is the bound mass). Its DM is
    ``round(m / m_pair)`` particles of ``m_DM`` (= ``(1 - f_b) m``); of its gas, 10 % of
    ``f_b m`` is kept, ``round(0.1 m / m_pair)`` particles in the same truncated NFW around its
    centre, the rest stripped into the host's ICM. The subhalos' DM and gas particles replace as
    many host profile particles, chosen deterministically (no random numbers) as those whose
    host-centric (spherical) radii best match the radii of the subhalos' particles
    (:func:`_remove_matching_radii`: each added particle's nearest host particle in radius, a
    distinct one for each, a crowded run centred on its added particles). The removed mass thus
    has the radial distribution of the added mass (Einasto-placed subhalos, not the concentrated
    NFW), so the spherically averaged DM and gas profiles stay the host's, up to the shuffling
    of mass within shells (the DM enclosed mass exactly where the subhalos' particles are
    sparse in radius), and the particle counts, M200m and the gas mass stay those of the halo
    without substructure. Their gas temperature
    follows from the host pressure like every particle's (dense and cool, isobaric).
Random numbers
    The neighbours and the gas clumps draw from the fourth and fifth children of the halo's seed
    sequence (``spawn(5)``, whose first three are those of ``spawn(3)``).
    Every draw above the three newer knobs comes from the halo's generator in a fixed order (the
    tilt axis, DM, gas, background DM, background gas). The newer knobs draw from the children
    of the halo's seed sequence, ``SeedSequence([catalog.seed, halo_id, 1]).spawn(3)`` (clumping,
    mergers, substructure), which leave the parent generator's numbers alone: a halo with the
    newer knobs off is identical to one made before they existed, switching one knob leaves the
    other knobs' numbers alone, and :meth:`MockHaloSource.subhalos` replays the subhalos without
    the particles. The clumping normals are drawn in particle order (the primary's gas, the
    background gas, the secondary's gas; the subhalos' gas last, those of removed host
    particles dropped), so switching ``mergers`` appends to them without changing the first ones.
    The shock (``shocks``) is deterministic and draws nothing, so it changes no stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from cmpipe.physics.halo import DarkMatterParticles, GasParticles, Halo, HaloProperties

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config, CosmologyConfig

__all__ = [
    "CLUMPING_CAP",
    "DPP_PARAMETERS",
    "MERGER_MAX_LAG_MPC",
    "IGM_TEMPERATURE_FLOOR_K",
    "NELSON14_PARAMETERS",
    "MockHaloSource",
    "MockProfiles",
    "MockSecondary",
    "MockShock",
    "MockSubhalos",
    "subhalo_mass_function",
    "subhalo_mf_normalisation",
    "clumping_boost",
    "clumping_factor",
    "dpp_electron_pressure_kev_cm3",
    "nfw_mass_fraction",
    "nonthermal_fraction",
    "rankine_hugoniot_jumps",
]

#: DPP (He et al. 2021) generalised-NFW parameters [P0, c500, a, b, g].
DPP_PARAMETERS = (5.048, 1.217, 1.192, 5.490, 0.433)
#: Arnaud et al. (2010, A&A 517, A92, section 6 and appendix C) GNFW fits of the REXCESS cool-core
#: and morphologically disturbed sub-samples, in the order of :data:`DPP_PARAMETERS`
#: [P0 (h70^-3/2), c500, a (alpha), b (beta), g (gamma)]. With ``observed_baryons`` only the shape
#: is used: the amplitude follows from the gas fraction.
A10_COOL_CORE = (3.249, 1.128, 1.2223, 5.4905, 0.7736)
A10_DISTURBED = (3.202, 1.083, 1.4063, 5.4905, 0.3798)
#: Floor of the extrapolated f_gas,500 relation (galaxy-scale neighbours) [dimensionless].
FGAS_FLOOR = 0.01
#: Diemer & Kravtsov (2014) transition term ``[1 + (r / r_t)^beta]^(-gamma / beta)`` of mass-selected
#: halos: beta, gamma and ``r_t / R200m = 1.9 - 0.18 nu`` (their eq. 6 and section 3.3).
DK14_BETA, DK14_GAMMA = 4.0, 8.0
DK14_RT = (1.9, 0.18)
#: Resolved gas clumps: radial range [R200m], fewest particles, largest mass [gas particles],
#: Plummer scale radius at 1e11 Msun [Mpc] (a ~ m^(1/3)).
GAS_CLUMP_RANGE_R200M = (0.3, 2.0)
GAS_CLUMP_MIN_PARTICLES = 32
GAS_CLUMP_MAX_PARTICLES = 1000
GAS_CLUMP_SCALE_MPC = 0.03
#: Nelson et al. (2014) non-thermal pressure fraction parameters (A, B, gamma).
NELSON14_PARAMETERS = (0.452, 0.841, 1.628)
#: Temperature floor of the gas [K] (IGM at the mean density, T0 of the T-rho relation).
IGM_TEMPERATURE_FLOOR_K = 1e4
#: Radial table: points, and the innermost radius in units of R200m.
_N_TABLE = 4096
_X_MIN = 1e-5
#: Stream index that SeedSequence([catalog.seed, halo_id, _STREAM]) reserves for the particles.
_STREAM = 1
#: Cap on the clumping factor C(r) (SPEC section 4).
CLUMPING_CAP = 3.0
#: Largest gas-DM offset of a merger's secondary [Mpc] (SPEC section 4: <= 300 kpc).
MERGER_MAX_LAG_MPC = 0.3
#: Merger shock geometry [R200m of the secondary]: stand-off of the front beyond the secondary's
#: DM, downstream thickness of the shocked layer, radius of its lateral cap.
SHOCK_STANDOFF_R200M = 0.25
SHOCK_THICKNESS_R200M = 0.5
SHOCK_CAP_R200M = 1.0
#: Evolved subhalo mass function dN/dln(psi) = A psi^-SLOPE exp(-CUTOFF psi^3) (SPEC section 4).
SUBHALO_MF_SLOPE = 0.9
SUBHALO_MF_CUTOFF = 12.27
#: Lower end of the psi range that holds the mass fraction f_sub (A = f_sub / 5.0500).
SUBHALO_NORM_PSI_MIN = 1e-4
#: Fewest DM particles of a subhalo (psi >= 32 m_pair / M200m).
SUBHALO_MIN_PARTICLES = 32
#: Einasto radial distribution of the subhalos: alpha and r_-2 [R200m].
SUBHALO_EINASTO = (0.678, 0.81)
#: Fraction of its baryons f_b m a subhalo keeps as gas (the rest is stripped into the host).
SUBHALO_GAS_RETAINED = 0.1
#: Largest total subhalo mass [M200m]; later-drawn subhalos beyond it are dropped.
SUBHALO_MAX_MASS_FRACTION = 0.5


def nfw_mass_fraction(x: np.ndarray, concentration: float) -> np.ndarray:
    """``M(<r) / M200m = m(c x) / m(c)`` of an untruncated NFW profile, ``x = r / R200m``."""
    y = np.asarray(x, dtype=np.float64) * concentration
    return (np.log1p(y) - y / (1.0 + y)) / (np.log1p(concentration) - concentration / (1.0 + concentration))


def clumping_factor(r_mpc: np.ndarray, r200m_mpc: float, c0: float) -> np.ndarray:
    """Clumping factor ``C(r) = <rho^2>/<rho>^2 = min(1 + C0 (r / R200m)^2, 3)`` (SPEC section 4)."""
    x = np.asarray(r_mpc, dtype=np.float64) / r200m_mpc
    return np.minimum(1.0 + c0 * x**2, CLUMPING_CAP)


def clumping_boost(r_mpc: np.ndarray, r200m_mpc: float, c0: float, normals: np.ndarray) -> np.ndarray:
    """Per-particle density factors ``f = exp(sigma^2 / 2 + sigma z)``, ``sigma^2 = ln C(r)``, from
    standard normals ``z``: ``<1/f> = 1`` (volumes kept) and ``<f> = C`` (module docstring)."""
    sigma2 = np.log(clumping_factor(r_mpc, r200m_mpc, c0))
    return np.exp(0.5 * sigma2 + np.sqrt(sigma2) * normals)


def rankine_hugoniot_jumps(mach: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rankine-Hugoniot jumps of a gamma = 5/3 shock at Mach ``M``: density compression
    ``r = 4 M^2 / (M^2 + 3)`` and pressure ratio ``p = (5 M^2 - 1) / 4``."""
    m2 = np.asarray(mach, dtype=np.float64) ** 2
    return 4.0 * m2 / (m2 + 3.0), (5.0 * m2 - 1.0) / 4.0


@dataclass(frozen=True)
class MockShock:
    """The merger shock of one halo (module docstring, ``Shocks``).

    Attributes
    ----------
    mach : float
        The catalog's ``merger_mach``.
    direction : (3,) float64
        Unit vector ``n`` from the primary's centre to the secondary.
    front_mpc : float
        ``t_f``: distance of the front plane from the primary's centre along ``n`` [Mpc].
    thickness_mpc : float
        Downstream thickness of the shocked layer [Mpc].
    cap_radius_mpc : float
        Lateral radius of the shocked layer about the merger axis [Mpc].
    """

    mach: float
    direction: np.ndarray
    front_mpc: float
    thickness_mpc: float
    cap_radius_mpc: float

    @property
    def compression(self) -> float:
        """``rho_2 / rho_1 = 4 M^2 / (M^2 + 3)``."""
        return float(rankine_hugoniot_jumps(self.mach)[0])

    @property
    def pressure_jump(self) -> float:
        """``P_2 / P_1 = (5 M^2 - 1) / 4``."""
        return float(rankine_hugoniot_jumps(self.mach)[1])

    def weights(self, pos_mpc: np.ndarray, smoothing_mpc: np.ndarray) -> np.ndarray:
        """Shock weight ``w`` in [0, 1] per position: the product of linear ramps
        ``clip(1/2 + s / H, 0, 1)`` across the front, the back of the layer and the cap
        (``s`` the signed distance inside, ``H`` the smoothing length)."""
        pos = np.asarray(pos_mpc, dtype=np.float64)
        h = np.asarray(smoothing_mpc, dtype=np.float64)
        t = pos @ self.direction
        lateral = np.linalg.norm(pos - t[:, None] * self.direction, axis=1)
        w = np.ones(pos.shape[0])
        for inside in (self.front_mpc - t, t - (self.front_mpc - self.thickness_mpc), self.cap_radius_mpc - lateral):
            w = w * np.clip(0.5 + inside / h, 0.0, 1.0)
        return w


@dataclass(frozen=True)
class MockSecondary:
    """The secondary halo of a merger (module docstring, ``Mergers``).

    Attributes
    ----------
    m200m_msun, r200m_mpc, concentration : float
        M_s = xi M200m [Msun], its R200m [Mpc] and median c200m.
    dm_centre_mpc, gas_centre_mpc : (3,) float64
        Centres of its DM and of its (lagging) gas [Mpc], relative to the primary's centre.
    truncation_mpc : float
        Truncation radius of both [Mpc].
    virial_temperature_k : float
        ``T200m_s`` [K], the temperature of its gas.
    gas_mass_msun : float
        Its gas mass [Msun]: ``f_b M_s``, or with ``observed_baryons`` ``f_gas,500 M_s``
        (:func:`neighbour_gas_depletion`).
    post_pericentre : bool
        Seen after pericentre: only then does its gas lag (and a shock exist).

    Neighbour halos (``neighbours``) are made with the same class: no lag, their own R200m as
    truncation, the same isothermal gas.
    """

    m200m_msun: float
    r200m_mpc: float
    concentration: float
    dm_centre_mpc: np.ndarray
    gas_centre_mpc: np.ndarray
    truncation_mpc: float
    virial_temperature_k: float
    gas_mass_msun: float
    post_pericentre: bool = True

    def gas_density_msun_mpc3(self, r_mpc: np.ndarray) -> np.ndarray:
        """Truncated NFW gas density at distance ``r`` from the gas centre [Msun Mpc^-3]."""
        c, r200 = self.concentration, self.r200m_mpc
        rs = r200 / c
        rho0 = self.gas_mass_msun / (4.0 * np.pi * rs**3 * (np.log1p(c) - c / (1.0 + c)))
        r = np.maximum(np.asarray(r_mpc, dtype=np.float64), _X_MIN * r200)
        y = r / rs
        return np.where(r <= self.truncation_mpc, rho0 / (y * (1.0 + y) ** 2), 0.0)


@lru_cache(maxsize=1)
def subhalo_mf_normalisation() -> float:
    """``I = int_{1e-4}^{1} psi^0.1 exp(-12.27 psi^3) dln(psi) = 5.0500`` (by quadrature), so that
    ``A = f_sub / I`` puts the mass fraction ``f_sub`` in subhalos with ``psi`` in ``[1e-4, 1]``
    (the SPEC's ``A = f_sub / 5.05``)."""
    from scipy import integrate

    return float(integrate.quad(
        lambda p: p ** (-SUBHALO_MF_SLOPE) * np.exp(-SUBHALO_MF_CUTOFF * p**3), SUBHALO_NORM_PSI_MIN, 1.0,
        limit=200, epsabs=0.0, epsrel=1e-10,
    )[0])


def subhalo_mass_function(psi: np.ndarray, f_sub: float) -> np.ndarray:
    """``dN/dln(psi) = A psi^-0.9 exp(-12.27 psi^3)``, ``A = f_sub / I``
    (:func:`subhalo_mf_normalisation`), ``psi = m / M200m``."""
    psi = np.asarray(psi, dtype=np.float64)
    return f_sub / subhalo_mf_normalisation() * psi ** (-SUBHALO_MF_SLOPE) * np.exp(-SUBHALO_MF_CUTOFF * psi**3)


@dataclass(frozen=True)
class MockSubhalos:
    """The resolved subhalos of one mock halo (module docstring, ``Substructure``).

    Attributes
    ----------
    psi : (S,) float64
        ``m / M200m``.
    mass_msun, concentration, r200m_mpc, truncation_mpc : (S,) float64
        Mass m [Msun], median c200m, R200m of an isolated halo of mass m [Mpc], and the tidal
        (Jacobi) truncation radius [Mpc].
    centre_mpc : (S, 3) float64
        Centres [Mpc], relative to the host's centre.
    n_dm, n_gas : (S,) int64
        DM particles ``round(m / m_pair)`` and retained gas particles ``round(0.1 m / m_pair)``.
    """

    psi: np.ndarray
    mass_msun: np.ndarray
    concentration: np.ndarray
    r200m_mpc: np.ndarray
    truncation_mpc: np.ndarray
    centre_mpc: np.ndarray
    n_dm: np.ndarray
    n_gas: np.ndarray


@dataclass(frozen=True)
class MockGasClumps:
    """Resolved gas clumps of one halo (module docstring, ``Gas clumps``).

    Attributes
    ----------
    n_gas : (K,) int64
        Gas particles per clump [count].
    centre_mpc : (K, 3) float64
        Centres relative to the halo [Mpc].
    scale_mpc : (K,) float64
        Plummer scale radii [Mpc].
    """

    n_gas: np.ndarray
    centre_mpc: np.ndarray
    scale_mpc: np.ndarray


def dpp_electron_pressure_kev_cm3(
    r_mpc: np.ndarray, m500c_msun: float, r500c_mpc: float, h: float, e_z: float = 1.0
) -> np.ndarray:
    """DPP electron pressure ``P_e(r)`` [keV cm^-3] (module docstring; He et al. 2021).

    Parameters
    ----------
    r_mpc : array
        Radius [physical Mpc].
    m500c_msun, r500c_mpc : float
        M500c [Msun] and R500c [Mpc].
    h : float
        Dimensionless Hubble parameter (``h70 = h / 0.7``).
    e_z : float
        ``E(z) = H(z) / H0``.
    """
    return gnfw_electron_pressure_kev_cm3(r_mpc, m500c_msun, r500c_mpc, h, e_z, DPP_PARAMETERS)


def gnfw_electron_pressure_kev_cm3(
    r_mpc: np.ndarray, m500c_msun: float, r500c_mpc: float, h: float, e_z: float,
    params: tuple[float, float, float, float, float],
) -> np.ndarray:
    """Generalised-NFW electron pressure [keV cm^-3] of Arnaud et al. (2010),
    ``P500 P0 / [(c500 x)^g (1 + (c500 x)^a)^((b - g) / a)]``, ``x = r / R500c``, ``params`` in the
    order ``[P0, c500, a, b, g]`` (:data:`DPP_PARAMETERS`, :data:`A10_COOL_CORE`), ``P500`` as in
    :func:`dpp_electron_pressure_kev_cm3`."""
    p0, c500, a, b, g = params
    h70 = h / 0.7
    p500 = 1.65e-3 * e_z ** (8.0 / 3.0) * (m500c_msun * h70 / 3e14) ** (2.0 / 3.0) * h70**2
    cx = c500 * np.asarray(r_mpc, dtype=np.float64) / r500c_mpc
    return p500 * p0 / (cx**g * (1.0 + cx**a) ** ((b - g) / a))


def vikhlinin09_fgas500(m500c_msun: np.ndarray, h: float) -> np.ndarray:
    """Mean gas fraction inside R500c of Vikhlinin et al. (2009, ApJ 692, 1033),
    ``f_gas = 0.0764 h^-1.5 + 0.037 log10(M500 / 1e15 h^-1 Msun)`` [dimensionless], floored at
    :data:`FGAS_FLOOR` below its calibrated range (1e14-1e15 h^-1 Msun; 0.068 at M500c = 3e13 Msun,
    0.113 at 5e14 Msun for h = 0.7): the published relation of
    :data:`cmpipe.physics.observed.VIKHLININ09_FGAS`, which validate-mock compares with."""
    from cmpipe.physics.observed import VIKHLININ09_FGAS

    return np.maximum(VIKHLININ09_FGAS.fgas500(m500c_msun, h), FGAS_FLOOR)


def dk14_transition(r_mpc: np.ndarray, r_t_mpc: float) -> np.ndarray:
    """Diemer & Kravtsov (2014) transition term ``[1 + (r / r_t)^4]^(-2)`` (beta = 4, gamma = 8)."""
    x = np.asarray(r_mpc, dtype=np.float64) / r_t_mpc
    return (1.0 + x**DK14_BETA) ** (-DK14_GAMMA / DK14_BETA)


def nonthermal_fraction(r_mpc: np.ndarray, r200m_mpc: float) -> np.ndarray:
    """Nelson et al. (2014) ``f_nt(r) = 1 - A {1 + exp[-(r / (B R200m))^gamma]}``."""
    a, b, gamma = NELSON14_PARAMETERS
    return 1.0 - a * (1.0 + np.exp(-((np.asarray(r_mpc, dtype=np.float64) / (b * r200m_mpc)) ** gamma)))


@lru_cache(maxsize=1)
def _units() -> tuple[float, float, float]:
    """G [Mpc (km/s)^2 Msun^-1], 1 keV cm^-3 in Msun Mpc^-3 (km/s)^2, 1 Msun Mpc^-3 in g cm^-3."""
    from astropy import constants as c
    from astropy import units as u

    g = float(c.G.to_value(u.Mpc * (u.km / u.s) ** 2 / u.Msun))
    kev_cm3 = float((1.0 * u.keV / u.cm**3).to_value(u.Msun / u.Mpc**3 * (u.km / u.s) ** 2))
    msun_mpc3_in_g_cm3 = float((1.0 * u.Msun / u.Mpc**3).to_value(u.g / u.cm**3))
    return g, kev_cm3, msun_mpc3_in_g_cm3


@lru_cache(maxsize=8)
def _xi_table(cosmo_cfg: CosmologyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Linear matter correlation function at the config's redshift on a log grid of comoving
    separations [Mpc/h] (colossus ``correlationFunction``)."""
    from cmpipe.physics.cosmology import colossus_cosmology

    cosmo = colossus_cosmology(cosmo_cfg)
    r = np.geomspace(0.01, 200.0, 400)
    return r, np.asarray(cosmo.correlationFunction(r, cosmo_cfg.redshift), dtype=np.float64)


@lru_cache(maxsize=16)
def _log_concentration_table(cosmo_cfg: CosmologyConfig, lo: float, hi: float):
    """Cubic spline of log10 of the Diemer & Joyce (2019) median c200m against log10 M200m
    [Msun/h] on ``[lo, hi]``, from colossus every 0.05 dex (the subhalos' concentrations)."""
    from scipy.interpolate import CubicSpline

    from cmpipe.physics.catalog import median_concentration

    grid = np.linspace(lo, hi, max(int(round((hi - lo) / 0.05)), 3) + 1)
    return CubicSpline(grid, np.log10(median_concentration(grid, cosmo_cfg)))


def _cap(limit: np.ndarray, value: np.ndarray) -> np.ndarray:
    """``min(1, limit / value)`` element-wise, 1 where ``value`` is 0."""
    out = np.ones_like(value)
    np.divide(limit, value, out=out, where=value > 0)
    return np.minimum(out, 1.0)


def _density(r: np.ndarray, enclosed: np.ndarray) -> np.ndarray:
    """``dM/dV = (dM/dr) / (4 pi r^2)`` of a tabulated enclosed mass [mass Mpc^-3]."""
    dm_dr = np.gradient(enclosed, r)
    return dm_dr / (4.0 * np.pi * np.maximum(r, r[1]) ** 2)


def _cumulative(r: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """``int_0^r 4 pi r'^2 rho dr'`` on the grid (trapezoid; ``r[0] = 0``)."""
    f = 4.0 * np.pi * r**2 * rho
    return np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(r))])


def neighbour_gas_depletion(log10_m200m_msun_h: np.ndarray, cosmo_cfg: CosmologyConfig) -> np.ndarray:
    """Gas mass over ``f_b M200m`` of a neighbour halo [dimensionless]: its f_gas,500 from
    :func:`vikhlinin09_fgas500` at its M500c (Diemer & Joyce 2019 median concentration, the
    0.05-dex spline of :func:`_log_concentration_table`) over
    ``f_b``, at most 1. A neighbour's gas is ``f_gas,500 M200m``."""
    from cmpipe.physics.cosmology import r500c_from_m200m

    lm = np.asarray(log10_m200m_msun_h, dtype=np.float64)
    m200m = 10.0**lm / cosmo_cfg.h
    conc = 10.0 ** _log_concentration_table(cosmo_cfg, 10.0, 17.0)(np.clip(lm, 10.0, 17.0))
    _, m500c = r500c_from_m200m(m200m, conc, cosmo_cfg)
    f_b = cosmo_cfg.omega_b / cosmo_cfg.omega_m
    return np.minimum(vikhlinin09_fgas500(m500c, cosmo_cfg.h) / f_b, 1.0)


@lru_cache(maxsize=16)
def _resolved_fractions(cosmo_cfg: CosmologyConfig, lo: float, hi: float, bias_weighted: bool) -> tuple[float, float]:
    """``(DM share, gas share)`` of the mean densities in resolved neighbours, or with
    ``bias_weighted`` ``(collapsed, bias-weighted share of the two-halo term)``."""
    from cmpipe.physics.neighbours import resolved_fractions

    fr = resolved_fractions(lo, hi, cosmo_cfg, weight=lambda lm: neighbour_gas_depletion(lm, cosmo_cfg))
    if bias_weighted:
        return fr.collapsed, fr.bias_weighted
    return fr.collapsed, fr.weighted_collapsed


@dataclass(frozen=True)
class MockProfiles:
    """Spherical (ellipsoidal-radius) profiles of one mock halo, tabulated.

    Attributes
    ----------
    r_mpc : (K,) float64
        Radius grid from 0 to the outer radius [physical Mpc].
    dm_enclosed_msun, gas_enclosed_msun : (K,) float64
        DM and gas mass inside each radius [Msun] (the halo alone, no background).
    outer_mpc : float
        Outer radius of the halo's particles [Mpc].
    p500_scale : float
        Factor on the DPP pressure (the catalog's ``pressure_factor`` or 1).
    m500c_msun, r500c_mpc, r200m_mpc, h, e_z : float
        What :meth:`thermal_pressure_kev_cm3` needs.
    electron_pressure_fraction : float
        ``P_e / P_th``.
    gnfw : tuple of 5 floats
        Pressure shape ``[P0, c500, a, b, g]`` (:data:`DPP_PARAMETERS` or an Arnaud et al. 2010
        family with the halo's c500); ``P_e = p500_scale P500 GNFW(r)``.
    hse_mass_msun : (K,) float64 or None
        Hydrostatic mass from the thermal pressure alone, ``-r^2 (dP_th/dr) / (G rho_gas)`` [Msun]
        on ``r_mpc`` (None without ``gas_from_hse``): what an X-ray analysis assuming hydrostatic
        equilibrium would measure, ``(1 - b) M`` with b the hydrostatic bias.
    background_dm_msun_mpc3, background_gas_msun_mpc3 : float
        Densities of the uniform background particles [Msun Mpc^-3] (0 without ``background``).
    background_inside : bool
        True when the background fills the whole sphere, halo included (``transition``); false
        when it lies only outside the halo's outer ellipsoid ``outer_mpc``.
    fgas500_target : float
        The prescribed gas fraction inside R500c (``observed_baryons``; NaN otherwise).
    pressure_cap : (K,) float64 or None
        Factor <= 1 on the pressure (and gas density) on ``r_mpc`` where the hydrostatic gas
        would exceed ``f_b`` times the halo's own matter density (``observed_baryons``).
    """

    r_mpc: np.ndarray
    dm_enclosed_msun: np.ndarray
    gas_enclosed_msun: np.ndarray
    outer_mpc: float
    p500_scale: float
    m500c_msun: float
    r500c_mpc: float
    r200m_mpc: float
    h: float
    e_z: float
    electron_pressure_fraction: float
    gnfw: tuple[float, float, float, float, float] = DPP_PARAMETERS
    hse_mass_msun: np.ndarray | None = None
    background_dm_msun_mpc3: float = 0.0
    background_gas_msun_mpc3: float = 0.0
    background_inside: bool = False
    fgas500_target: float = float("nan")
    pressure_cap: np.ndarray | None = None

    def electron_pressure_kev_cm3(self, r_mpc: np.ndarray) -> np.ndarray:
        """GNFW ``P_e(r)`` times the pressure factor (and the cap) [keV cm^-3]."""
        r = np.maximum(np.asarray(r_mpc, dtype=np.float64), _X_MIN * self.r200m_mpc)
        p = self.p500_scale * gnfw_electron_pressure_kev_cm3(r, self.m500c_msun, self.r500c_mpc, self.h, self.e_z, self.gnfw)
        if self.pressure_cap is not None:
            p = p * np.interp(r, self.r_mpc, self.pressure_cap)
        return p

    def hydrostatic_mass_msun(self, r_mpc: np.ndarray) -> np.ndarray:
        """Hydrostatic mass from the thermal pressure alone at ``r_mpc`` [Msun] (NaN without
        ``gas_from_hse``)."""
        r = np.asarray(r_mpc, dtype=np.float64)
        if self.hse_mass_msun is None:
            return np.full(r.shape, np.nan)
        return np.interp(r, self.r_mpc, self.hse_mass_msun)

    def thermal_pressure_kev_cm3(self, r_mpc: np.ndarray) -> np.ndarray:
        """``P_th = P_e / (P_e / P_th)`` [keV cm^-3]."""
        return self.electron_pressure_kev_cm3(r_mpc) / self.electron_pressure_fraction


def _isotropic(n: int, rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _axes(q: float, s: float) -> np.ndarray:
    """Axis lengths ``(1, q, s) / (q s)^(1/3)`` (product 1: the stretch keeps volumes)."""
    return np.array([1.0, q, s]) / np.cbrt(q * s)


def _axis_angle(axis: np.ndarray, angle_rad: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_rotvec(axis * angle_rad).as_matrix()


def _ellipsoidal_radius(pos: np.ndarray, axes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """``|R^T x / axes|`` per row of ``pos`` (the radius the profile is a function of)."""
    principal = pos @ rotation  # rows: R^T x
    return np.linalg.norm(principal / axes, axis=1)


def _sample(
    r_grid: np.ndarray, enclosed: np.ndarray, particle_mass: float, axes: np.ndarray, rotation: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Positions [Mpc] of ``round(M_total / m)`` particles: inverse-CDF radii, isotropic
    directions, then the stretch ``axes`` and ``rotation``."""
    n = int(round(enclosed[-1] / particle_mass))
    radii = np.interp(rng.random(n) * enclosed[-1], enclosed, r_grid)
    principal = radii[:, None] * _isotropic(n, rng) * axes
    return principal @ rotation.T


def _remove_matching_radii(host_r: np.ndarray, new_r: np.ndarray) -> np.ndarray:
    """Mask keeping all but ``new_r.size`` of the particles of radii ``host_r``: the removed ones
    are those whose radii best match ``new_r`` (the radii of the particles that replace them), so
    the removed mass has the radial distribution of the added mass. Deterministic (no random
    numbers).

    Matching in rank: with ``hs`` the sorted ``host_r`` and ``t`` the sorted ``new_r``, the
    fractional rank ``u_i`` of ``t_i`` among ``hs`` (linear interpolation, clipped to the ends)
    is its nearest host particle's rank. The removed ranks ``j_i = i + k_i`` must be distinct and
    increasing, i.e. ``k`` non-decreasing: ``k`` is the least-squares non-decreasing fit
    (isotonic regression, pool-adjacent-violators) to ``u_i - i``, rounded and clipped to
    ``[0, N - n]``. Where the added radii are sparse this is the nearest host particle of each;
    where they crowd more than the host particles (a subhalo's core), the run of removed host
    particles is centred on them instead of pushed to one side."""
    from scipy.optimize import isotonic_regression

    n, n_host = new_r.shape[0], host_r.shape[0]
    if n > n_host:
        raise ValueError(f"subhalos need {n} host particles, only {n_host} in the host profile")
    keep = np.ones(n_host, dtype=bool)
    if n == 0:
        return keep
    order = np.argsort(host_r, kind="stable")
    rank = np.interp(np.sort(new_r), host_r[order], np.arange(n_host, dtype=np.float64))
    i = np.arange(n)
    k = np.clip(np.rint(isotonic_regression(rank - i).x), 0, n_host - n).astype(np.int64)
    keep[order[k + i]] = False
    return keep


@dataclass(frozen=True)
class MockHaloSource:
    """Mock clusters over the halo catalog; implements :class:`~cmpipe.physics.halo.HaloSource`.

    Cheap to build and picklable (it holds only the config); every halo is made from its
    catalog row (:func:`cmpipe.physics.catalog.halo_parameters`) and
    ``SeedSequence([catalog.seed, halo_id, 1])``.

    Attributes
    ----------
    cfg : Config
        Uses ``catalog``, ``cosmology``, ``plasma``, ``maps`` (background extent) and ``mock``.
    """

    cfg: Config

    @classmethod
    def from_config(cls, cfg: Config) -> MockHaloSource:
        """The mock source of ``cfg``."""
        return cls(cfg)

    def halo_ids(self) -> Sequence[int]:
        """The catalog's ids, ``0 .. catalog.n_halos - 1``."""
        return tuple(range(self.cfg.catalog.n_halos))

    def parameters(self, halo_id: int) -> dict:
        """The halo's catalog row (:func:`cmpipe.physics.catalog.halo_parameters`)."""
        from cmpipe.physics.catalog import halo_parameters

        return halo_parameters(self.cfg, int(halo_id))

    def properties(self, halo_id: int) -> HaloProperties:
        """M200m [Msun], R200m [Mpc] and redshift from the catalog row (no particles made)."""
        return self._properties(self.parameters(halo_id))

    def _properties(self, row: dict) -> HaloProperties:
        return HaloProperties(
            halo_id=int(row["halo_id"]),
            m200m_msun=float(row["m200m_msun_h"]) / self.cfg.cosmology.h,
            r200m_mpc=float(row["r200m_mpc"]),
            redshift=self.cfg.cosmology.redshift,
        )

    # ----------------------------------------------------------------------------------------

    def outer_radius_mpc(self, row: dict) -> float:
        """Outer radius of the halo's particles [Mpc]: the background sphere (``transition``),
        else the infall extent or the truncation."""
        mock = self.cfg.mock
        if mock.transition:
            return self.background_radius_mpc()
        extent = mock.infall_extent_r200m if mock.infall else mock.truncation_r200m
        return float(extent * row["r200m_mpc"])

    def profiles(self, halo_id: int) -> MockProfiles:
        """Tabulated DM and gas enclosed masses and the pressure profile of one halo."""
        return self._profiles(self.parameters(halo_id))

    def _profiles(self, row: dict) -> MockProfiles:
        from cmpipe.physics.cosmology import colossus_cosmology, mean_densities
        from cmpipe.physics.plasma import Plasma

        cfg, mock = self.cfg, self.cfg.mock
        h, z = cfg.cosmology.h, cfg.cosmology.redshift
        f_b = cfg.cosmology.omega_b / cfg.cosmology.omega_m
        m200m = float(row["m200m_msun_h"]) / h
        r200m, c = float(row["r200m_mpc"]), float(row["c200m"])
        m500c, r500c = float(row["m500c_msun_h"]) / h, float(row["r500c_mpc"])
        r_out = self.outer_radius_mpc(row)
        r = np.concatenate([[0.0], np.geomspace(_X_MIN * r200m, r_out, _N_TABLE)])

        # Total matter of the halo itself [Msun], M_tot(<r), and its DM; then the smooth outer term.
        m_tot = self._own_mass_msun(row, r)
        dm_enc = (1.0 - f_b) * m_tot
        two_halo = self._two_halo_enclosed_msun(row, r)
        dm_enc = dm_enc + (1.0 - f_b) * two_halo

        # Pressure and gas.
        plasma = Plasma(cfg.plasma.hydrogen_mass_fraction, cfg.plasma.gaunt_factor)
        e_z = float(colossus_cosmology(cfg.cosmology).Ez(z))
        scatter = mock.scatter
        gnfw, p500_scale, fgas_target, pressure_cap = DPP_PARAMETERS, 1.0, float("nan"), None
        if mock.observed_baryons:
            family = A10_COOL_CORE if bool(row["is_cool_core"]) else A10_DISTURBED
            c500 = family[1] * (float(row["pressure_c500_factor"]) if scatter else 1.0)
            gnfw = (family[0], c500, *family[2:])
        base = MockProfiles(
            r_mpc=r, dm_enclosed_msun=dm_enc, gas_enclosed_msun=dm_enc, outer_mpc=r_out, p500_scale=p500_scale,
            m500c_msun=m500c, r500c_mpc=r500c, r200m_mpc=r200m, h=h, e_z=e_z,
            electron_pressure_fraction=plasma.electron_pressure_fraction, gnfw=gnfw,
        )
        hse_mass = None
        if mock.gas_from_hse:
            g_newton, kev_cm3, _ = _units()
            rr = r[1:]
            p_th = base.thermal_pressure_kev_cm3(rr) * kev_cm3
            f_nt = np.zeros_like(rr)
            if mock.nonthermal_support:
                scale = float(row["nonthermal_radius_factor"]) if (mock.observed_baryons and scatter) else 1.0
                f_nt = nonthermal_fraction(rr, scale * r200m)
            p_tot = p_th / (1.0 - f_nt)
            dp_tot, dp_th = np.gradient(p_tot, rr), np.gradient(p_th, rr)
            m_hse_tot = m_tot[1:] if mock.transition else m200m * nfw_mass_fraction(rr / r200m, c)
            rho_gas = np.concatenate([[0.0], np.maximum(-dp_tot * rr**2 / (g_newton * m_hse_tot), 0.0)])
            hse_mass = np.concatenate([[0.0], m_hse_tot * dp_th / np.where(dp_tot < 0, dp_tot, -1e-300)])
            gas_enc = _cumulative(r, rho_gas)
            if mock.observed_baryons:
                # The pressure amplitude follows from the prescribed gas mass inside R500c (30 steps: converged to < 1e-4 where the cap binds in a cool core).(HSE is
                # linear in the pressure: density and pressure scale together, T is unchanged).
                fgas_target = float(vikhlinin09_fgas500(m500c, h))
                if scatter:
                    fgas_target *= float(row["fgas500_factor"])
                fgas_target = min(fgas_target, f_b)
                # Outside equilibrium: the gas density never exceeds the cosmic share f_b of the
                # halo's own matter density (the infall region beyond ~R200m of massive
                # clusters); there the temperature stays the hydrostatic one and the pressure
                # follows, P = n k T (``pressure_cap``). A few fixed-point steps keep the
                # prescribed gas mass inside R500c (30 steps: within 0.1 % of it, or up to ~1 % short when
                # f_gas,500 nears f_b and the cap binds over much of R500c).
                # M_gas / (M_gas + M_DM) = f_gas,500 inside R500c, with the DM the particles hold.
                dm500 = float(np.interp(r500c, r, dm_enc))
                gas_target = fgas_target / (1.0 - fgas_target) * dm500
                rho_cap = f_b * _density(r, m_tot)
                amplitude, cap = 1.0, np.ones_like(r)
                for _ in range(30):
                    cap = _cap(rho_cap, amplitude * rho_gas)
                    enc = _cumulative(r, rho_gas * cap)
                    amplitude = gas_target / float(np.interp(r500c, r, enc))
                cap = _cap(rho_cap, amplitude * rho_gas)
                gas_enc, p500_scale = amplitude * _cumulative(r, rho_gas * cap), amplitude
                pressure_cap = cap
        else:
            gas_enc = m_tot * f_b
        if not mock.observed_baryons and scatter:
            # The DPP model: the HSE density uses the mean pressure, the two scatters stay independent.
            gas_enc = gas_enc * float(row["gas_fraction_factor"])
            p500_scale = float(row["pressure_factor"])
        if mock.transition:  # the older infall shell held DM only
            gas_enc = gas_enc + f_b * two_halo

        bg_dm = bg_gas = 0.0
        if mock.background:
            means = mean_densities(cfg.cosmology)
            resolved_dm, resolved_gas = self._resolved_neighbour_fractions()
            bg_dm, bg_gas = means.dark_matter * (1.0 - resolved_dm), means.baryon * (1.0 - resolved_gas)
        return MockProfiles(
            r_mpc=r, dm_enclosed_msun=dm_enc, gas_enclosed_msun=gas_enc, outer_mpc=r_out, p500_scale=p500_scale,
            m500c_msun=m500c, r500c_mpc=r500c, r200m_mpc=r200m, h=h, e_z=e_z,
            electron_pressure_fraction=base.electron_pressure_fraction, gnfw=gnfw, hse_mass_msun=hse_mass,
            background_dm_msun_mpc3=bg_dm, background_gas_msun_mpc3=bg_gas, background_inside=mock.transition,
            fgas500_target=fgas_target, pressure_cap=pressure_cap,
        )

    def transition_radius_mpc(self, row: dict) -> float:
        """``r_t = (1.9 - 0.18 nu) R200m`` of Diemer & Kravtsov (2014) [Mpc], ``nu`` the peak height."""
        from colossus.lss import peaks

        from cmpipe.physics.cosmology import colossus_cosmology

        colossus_cosmology(self.cfg.cosmology)
        nu = float(peaks.peakHeight(float(row["m200m_msun_h"]), self.cfg.cosmology.redshift))
        return (DK14_RT[0] - DK14_RT[1] * nu) * float(row["r200m_mpc"])

    def _own_mass_msun(self, row: dict, r: np.ndarray) -> np.ndarray:
        """Total matter of the halo itself inside ``r`` [Msun]: NFW times the DK14 transition term
        normalised to M200m at R200m (``transition``), else the NFW truncated at
        ``truncation_r200m``."""
        h = self.cfg.cosmology.h
        m200m = float(row["m200m_msun_h"]) / h
        r200m, c = float(row["r200m_mpc"]), float(row["c200m"])
        if not self.cfg.mock.transition:
            r_trunc = self.cfg.mock.truncation_r200m * r200m
            return m200m * nfw_mass_fraction(np.minimum(r, r_trunc) / r200m, c)
        rs = r200m / c
        x = np.maximum(r, _X_MIN * r200m) / rs
        rho = dk14_transition(r, self.transition_radius_mpc(row)) / (x * (1.0 + x) ** 2)
        enc = _cumulative(r, np.where(r > 0, rho, 0.0))
        return m200m * enc / float(np.interp(r200m, r, enc))

    def _two_halo_enclosed_msun(self, row: dict, r: np.ndarray) -> np.ndarray:
        """Smooth matter around the halo beyond its own profile [Msun inside r].

        ``transition``: the two-halo term ``rho_bar_m b xi_lin(r) [1 - f_t(r)] (1 - F)``, with the
        DK14 transition term ``f_t`` keeping it out of the halo (exclusion) and ``F`` the share of the
        two-halo term in resolved neighbour halos (``neighbours``), which are made as particles.
        Otherwise the old infall shell ``rho_bar_m [1 + b xi_lin]`` beyond the truncation radius."""
        from colossus.lss import bias

        from cmpipe.physics.cosmology import colossus_cosmology, mean_densities

        cfg, mock = self.cfg, self.cfg.mock
        h, z = cfg.cosmology.h, cfg.cosmology.redshift
        if not (mock.transition or mock.infall):
            return np.zeros_like(r)
        colossus_cosmology(cfg.cosmology)  # haloBias uses colossus' current cosmology
        b = float(bias.haloBias(float(row["m200m_msun_h"]), z, "200m", model="tinker10"))
        r_tab, xi_tab = _xi_table(cfg.cosmology)
        r_com = np.clip(r * (1.0 + z) * h, r_tab[0], r_tab[-1])
        xi = np.exp(np.interp(np.log(r_com), np.log(r_tab), np.log(np.maximum(xi_tab, 1e-30))))
        rho_m = mean_densities(cfg.cosmology).matter
        if mock.transition:
            _, resolved_bias = self._resolved_neighbour_fractions(bias_weighted=True)
            exclusion = 1.0 - dk14_transition(r, self.transition_radius_mpc(row))
            rho = rho_m * b * xi * exclusion * (1.0 - resolved_bias)
        else:
            r_trunc = mock.truncation_r200m * float(row["r200m_mpc"])
            rho = np.where(r > r_trunc, rho_m * (1.0 + b * xi), 0.0)
        return _cumulative(r, rho)

    def neighbour_mass_range_log10_msun_h(self) -> tuple[float, float]:
        """log10 M200m [Msun/h] of the resolved neighbour halos: from ``neighbour_min_particles``
        particle pairs to 10^15.5."""
        lo = float(np.log10(self.cfg.mock.neighbour_min_particles * self.cfg.mock.pair_mass_msun_h))
        return lo, max(15.5, lo + 0.1)

    def _resolved_neighbour_fractions(self, bias_weighted: bool = False) -> tuple[float, float]:
        """Shares of the mean density in resolved neighbour halos (0 without ``neighbours``):
        ``(DM, gas)`` of the mean densities, or with ``bias_weighted`` ``(collapsed,
        bias-weighted)`` of the two-halo term (:func:`cmpipe.physics.neighbours.resolved_fractions`)."""
        mock = self.cfg.mock
        if not (mock.neighbours and mock.transition):
            return 0.0, 0.0
        return _resolved_fractions(self.cfg.cosmology, *self.neighbour_mass_range_log10_msun_h(), bias_weighted)

    def secondary(self, halo_id: int) -> MockSecondary | None:
        """The merger secondary of one halo, or None when the catalog row is not a merger."""
        return self._secondary(self.parameters(halo_id))

    def _secondary(self, row: dict) -> MockSecondary | None:
        from cmpipe.physics.analytic import virial_temperature_k
        from cmpipe.physics.catalog import median_concentration
        from cmpipe.physics.cosmology import r200m_mpc
        from cmpipe.physics.plasma import Plasma

        if not bool(row["is_merger"]):
            return None
        cfg = self.cfg
        h = cfg.cosmology.h
        f_b = cfg.cosmology.omega_b / cfg.cosmology.omega_m
        r200m = float(row["r200m_mpc"])
        m_s = float(row["merger_mass_ratio"]) * float(row["m200m_msun_h"]) / h
        r_s = float(r200m_mpc(m_s, cfg.cosmology))
        c_s = float(median_concentration(np.log10(m_s * h), cfg.cosmology))
        direction = np.array([row["merger_dir_x"], row["merger_dir_y"], row["merger_dir_z"]], dtype=np.float64)
        direction = direction / np.linalg.norm(direction)
        separation = float(row["merger_separation_r200m"]) * r200m
        post = bool(row.get("is_post_pericentre", True)) or not cfg.mock.observed_baryons
        lag = min(float(row["merger_gas_lag_fraction"]) * separation, MERGER_MAX_LAG_MPC) if post else 0.0
        mu = Plasma(cfg.plasma.hydrogen_mass_fraction, cfg.plasma.gaunt_factor).mean_molecular_weight
        gas_fraction = f_b
        if cfg.mock.observed_baryons:
            gas_fraction = f_b * float(neighbour_gas_depletion(np.log10(m_s * h), cfg.cosmology))
        return MockSecondary(
            m200m_msun=m_s, r200m_mpc=r_s, concentration=c_s,
            dm_centre_mpc=separation * direction, gas_centre_mpc=(separation - lag) * direction,
            truncation_mpc=(1.0 if cfg.mock.transition else cfg.mock.truncation_r200m) * r_s,
            virial_temperature_k=virial_temperature_k(m_s, r_s, mu), gas_mass_msun=gas_fraction * m_s,
            post_pericentre=post,
        )

    def shock(self, halo_id: int) -> MockShock | None:
        """The merger shock of one halo (whatever ``mock.shocks``), or None if not a merger."""
        row = self.parameters(halo_id)
        return self._shock(row, self._secondary(row))

    def _shock(self, row: dict, sec: MockSecondary | None) -> MockShock | None:
        if sec is None or not sec.post_pericentre:
            return None
        separation = float(np.linalg.norm(sec.dm_centre_mpc))
        return MockShock(
            mach=float(row["merger_mach"]), direction=sec.dm_centre_mpc / separation,
            front_mpc=separation + SHOCK_STANDOFF_R200M * sec.r200m_mpc,
            thickness_mpc=SHOCK_THICKNESS_R200M * sec.r200m_mpc, cap_radius_mpc=SHOCK_CAP_R200M * sec.r200m_mpc,
        )

    def _secondary_particles(
        self, sec: MockSecondary, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """DM and gas positions [Mpc] of the secondary (truncated NFW, spherical)."""
        m_dm, m_gas = self.particle_masses_msun()
        f_b = self.cfg.cosmology.omega_b / self.cfg.cosmology.omega_m
        r = np.concatenate([[0.0], np.geomspace(_X_MIN * sec.r200m_mpc, sec.truncation_mpc, _N_TABLE)])
        shape = nfw_mass_fraction(r / sec.r200m_mpc, sec.concentration)
        ones, eye = np.ones(3), np.eye(3)
        shape = shape / shape[-1]
        dm = _sample(r, (1.0 - f_b) * sec.m200m_msun * shape, m_dm, ones, eye, rng) + sec.dm_centre_mpc
        gas = _sample(r, sec.gas_mass_msun * shape, m_gas, ones, eye, rng) + sec.gas_centre_mpc
        return dm, gas

    def _knob_generators(self, halo_id: int) -> list[np.random.Generator]:
        """Generators of the clumping, merger, substructure, neighbour and gas-clump draws: the
        children of ``SeedSequence([catalog.seed, halo_id, 1])`` (independent of the particles'
        stream; the first three are those of ``spawn(3)``, so adding the last two changed none)."""
        children = np.random.SeedSequence([self.cfg.catalog.seed, int(halo_id), _STREAM]).spawn(5)
        return [np.random.default_rng(c) for c in children]

    def subhalos(self, halo_id: int) -> MockSubhalos:
        """The resolved subhalos of one halo, as :meth:`load` makes them with ``substructure``."""
        from cmpipe.physics.catalog import orientation_matrix

        row = self.parameters(halo_id)
        if self.cfg.mock.triaxial:
            orient = orientation_matrix(np.array([row["orient_w"], row["orient_x"], row["orient_y"], row["orient_z"]]))
            axes, rot = _axes(float(row["shape_q"]), float(row["shape_s"])), orient
        else:
            axes, rot = np.ones(3), np.eye(3)
        return self._subhalos(row, axes, rot, self._knob_generators(int(row["halo_id"]))[2])

    def _subhalos(self, row: dict, axes: np.ndarray, rotation: np.ndarray, rng: np.random.Generator) -> MockSubhalos:
        from cmpipe.physics.cosmology import r200m_mpc

        cfg = self.cfg
        h = cfg.cosmology.h
        m200m = float(row["m200m_msun_h"]) / h
        r200m, c_host = float(row["r200m_mpc"]), float(row["c200m"])
        m_pair = cfg.mock.pair_mass_msun_h / h
        psi_min = SUBHALO_MIN_PARTICLES * m_pair / m200m
        psi = np.zeros(0)
        if psi_min < 1.0:
            ln_psi = np.linspace(np.log(psi_min), 0.0, 2048)
            cum = np.concatenate([[0.0], np.cumsum(0.5 * np.diff(ln_psi) * (
                subhalo_mass_function(np.exp(ln_psi[1:]), float(row["f_sub"]))
                + subhalo_mass_function(np.exp(ln_psi[:-1]), float(row["f_sub"]))))])
            n = int(rng.poisson(cum[-1]))
            psi = np.exp(np.interp(rng.random(n) * cum[-1], cum, ln_psi))
            psi = psi[np.cumsum(psi) <= SUBHALO_MAX_MASS_FRACTION]
        n = psi.shape[0]
        # Einasto number density n(r) ~ exp(-(2/alpha) [(r/r_-2)^alpha - 1]) inside R200m.
        alpha, r_2 = SUBHALO_EINASTO
        r = np.linspace(0.0, r200m, 2048)
        rho = np.exp(-(2.0 / alpha) * ((r / (r_2 * r200m)) ** alpha - 1.0))
        enc = _cumulative(r, rho)
        radius = np.interp(rng.random(n) * enc[-1], enc, r)
        centre = (radius[:, None] * _isotropic(n, rng) * axes) @ rotation.T
        mass = psi * m200m
        r_iso = np.asarray(r200m_mpc(mass, cfg.cosmology), dtype=np.float64).reshape(n)
        conc = np.zeros(0)
        if n:
            log_m = np.log10(mass * h)
            conc = 10.0 ** _log_concentration_table(cfg.cosmology, float(np.floor(log_m.min())), float(np.ceil(log_m.max())))(log_m)
        # Jacobi radius r_t = d [m / (3 M_host(<d))]^(1/3), at most the isolated R200m.
        m_host = m200m * nfw_mass_fraction(np.maximum(radius, _X_MIN * r200m) / r200m, c_host)
        r_t = np.minimum(radius * np.cbrt(mass / (3.0 * m_host)), r_iso)
        r_t = np.maximum(r_t, _X_MIN * r200m)
        n_dm = np.rint(mass / m_pair).astype(np.int64)
        n_gas = np.rint(SUBHALO_GAS_RETAINED * mass / m_pair).astype(np.int64)
        return MockSubhalos(psi=psi, mass_msun=mass, concentration=conc, r200m_mpc=r_iso, truncation_mpc=r_t,
                            centre_mpc=centre, n_dm=n_dm, n_gas=n_gas)

    def _subhalo_particles(self, subs: MockSubhalos, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """DM and retained-gas positions [Mpc]: per subhalo, NFW radii (its concentration, scale
        radius R200m / c) inside its truncation radius, isotropic, around its centre."""
        dm, gas = [np.zeros((0, 3))], [np.zeros((0, 3))]
        for i in range(subs.psi.shape[0]):
            rt = subs.truncation_mpc[i]
            x = np.concatenate([[0.0], np.geomspace(_X_MIN * rt, rt, 512)])
            shape = nfw_mass_fraction(x / subs.r200m_mpc[i], subs.concentration[i])
            for n_part, out in ((subs.n_dm[i], dm), (subs.n_gas[i], gas)):
                radii = np.interp(rng.random(n_part) * shape[-1], shape, x)
                out.append(radii[:, None] * _isotropic(int(n_part), rng) + subs.centre_mpc[i])
        return np.concatenate(dm), np.concatenate(gas)

    def gas_clumps(
        self, row: dict, prof: MockProfiles, axes: np.ndarray, rotation: np.ndarray, rng: np.random.Generator,
    ) -> MockGasClumps:
        """Resolved gas clumps of one halo (``gas_clumps``): particle counts log-uniform in
        [32, 1000] drawn until they hold ``gas_clump_fraction`` of the halo's gas between 0.3 and
        2 R200m; centres from that gas's radial distribution, isotropic, stretched like the gas;
        Plummer scale radius ``0.03 Mpc (m / 1e11 Msun)^(1/3)``."""
        _, m_gas = self.particle_masses_msun()
        lo, hi = (f * prof.r200m_mpc for f in GAS_CLUMP_RANGE_R200M)
        enc_lo, enc_hi = np.interp([lo, hi], prof.r_mpc, prof.gas_enclosed_msun)
        budget = self.cfg.mock.gas_clump_fraction * (enc_hi - enc_lo) / m_gas  # particles
        counts: list[int] = []
        log_lo, log_hi = np.log(GAS_CLUMP_MIN_PARTICLES), np.log(GAS_CLUMP_MAX_PARTICLES)
        while budget >= GAS_CLUMP_MIN_PARTICLES and sum(counts) < budget:
            counts.append(int(round(np.exp(log_lo + (log_hi - log_lo) * rng.random()))))
        n = np.array(counts, dtype=np.int64)
        radius = np.interp(enc_lo + (enc_hi - enc_lo) * rng.random(n.size), prof.gas_enclosed_msun, prof.r_mpc)
        centre = (radius[:, None] * _isotropic(n.size, rng) * axes) @ rotation.T
        scale = GAS_CLUMP_SCALE_MPC * np.cbrt(n * m_gas / 1e11)
        return MockGasClumps(n_gas=n, centre_mpc=centre, scale_mpc=scale)

    def _gas_clump_particles(self, clumps: MockGasClumps, rng: np.random.Generator) -> np.ndarray:
        """Gas positions [Mpc]: Plummer spheres truncated at 5 scale radii about each centre."""
        out = [np.zeros((0, 3))]
        u_max = 125.0 / 26.0**1.5  # M(<5a) / M of a Plummer sphere
        for n, centre, a in zip(clumps.n_gas.tolist(), clumps.centre_mpc, clumps.scale_mpc):
            u = rng.random(n) * u_max
            r = a / np.sqrt(u ** (-2.0 / 3.0) - 1.0)
            out.append(r[:, None] * _isotropic(n, rng) + centre)
        return np.concatenate(out)

    def neighbours(self, halo_id: int, rng: np.random.Generator | None = None) -> list[MockSecondary]:
        """The neighbour halos of one halo (``neighbours``): masses and positions from
        :func:`cmpipe.physics.neighbours.draw_neighbours` in the background sphere, each a
        truncated NFW (its R200m) of ``(1 - f_b) M`` DM and ``f_gas,500 M`` isothermal gas."""
        from cmpipe.physics.analytic import virial_temperature_k
        from cmpipe.physics.neighbours import draw_neighbours
        from cmpipe.physics.plasma import Plasma

        cfg = self.cfg
        if rng is None:
            rng = self._knob_generators(int(halo_id))[3]
        m200m = float(self.parameters(halo_id)["m200m_msun_h"]) / cfg.cosmology.h
        lo, hi = self.neighbour_mass_range_log10_msun_h()
        found = draw_neighbours(m200m, cfg.cosmology, self.background_radius_mpc(), lo, hi, rng)
        mu = Plasma(cfg.plasma.hydrogen_mass_fraction, cfg.plasma.gaunt_factor).mean_molecular_weight
        f_b = cfg.cosmology.omega_b / cfg.cosmology.omega_m
        depletion = neighbour_gas_depletion(found.log10_m200m_msun_h, cfg.cosmology) if found.n else np.zeros(0)
        return [
            MockSecondary(
                m200m_msun=float(found.m200m_msun[i]), r200m_mpc=float(found.r200m_mpc[i]),
                concentration=float(found.c200m[i]), dm_centre_mpc=found.centre_mpc[i], gas_centre_mpc=found.centre_mpc[i],
                truncation_mpc=float(found.r200m_mpc[i]),
                virial_temperature_k=virial_temperature_k(float(found.m200m_msun[i]), float(found.r200m_mpc[i]), mu),
                gas_mass_msun=float(f_b * depletion[i] * found.m200m_msun[i]), post_pericentre=False,
            )
            for i in range(found.n)
        ]

    def _companion_pressure_kev_cm3(self, gas_pos: np.ndarray, companions: list[MockSecondary]) -> np.ndarray:
        """Thermal pressure [keV cm^-3] of the secondary's and the neighbours' isothermal gas at
        each gas position, ``rho_s(r) k_B T_s / (mu m_p)``, zero beyond each one's truncation radius.
        Only the particles within that radius are visited (a k-d tree of the positions; the
        neighbours are hundreds at m_pair = 1e9), so the sum equals the sum over every particle."""
        from scipy.spatial import cKDTree

        from cmpipe.physics.plasma import Plasma, constants

        out = np.zeros(gas_pos.shape[0])
        if not companions:
            return out
        k, cfg = constants(), self.cfg
        _, _, to_g_cm3 = _units()
        mu = Plasma(cfg.plasma.hydrogen_mass_fraction, cfg.plasma.gaunt_factor).mean_molecular_weight
        tree = cKDTree(gas_pos, balanced_tree=False)
        for comp in companions:
            idx = np.asarray(tree.query_ball_point(comp.gas_centre_mpc, comp.truncation_mpc), dtype=np.int64)
            if idx.size == 0:
                continue
            idx.sort()
            rho_s = comp.gas_density_msun_mpc3(np.linalg.norm(gas_pos[idx] - comp.gas_centre_mpc, axis=1))
            out[idx] += rho_s * to_g_cm3 / (mu * k.proton_mass_g) * k.boltzmann_kev_per_k * comp.virial_temperature_k
        return out

    def particle_masses_msun(self) -> tuple[float, float]:
        """``(m_DM, m_gas) = ((1 - f_b) m_pair, f_b m_pair)`` [Msun]."""
        f_b = self.cfg.cosmology.omega_b / self.cfg.cosmology.omega_m
        m_pair = self.cfg.mock.pair_mass_msun_h / self.cfg.cosmology.h
        return (1.0 - f_b) * m_pair, f_b * m_pair

    def background_radius_mpc(self) -> float:
        """Radius of the sphere circumscribing the projection box [Mpc] (the background's extent)."""
        width = self.cfg.maps.npix * self.cfg.maps.pixel_mpc
        return 0.5 * float(np.sqrt(2.0 * width**2 + self.cfg.maps.depth_mpc**2))

    def _background(
        self, density: float, particle_mass: float, r_out: float, axes: np.ndarray, rotation: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Uniform positions at ``density`` in the background sphere, outside the halo's
        ellipsoid of outer radius ``r_out``."""
        radius = self.background_radius_mpc()
        n = int(round(density * 4.0 / 3.0 * np.pi * radius**3 / particle_mass))
        pos = radius * np.cbrt(rng.random(n))[:, None] * _isotropic(n, rng)
        return pos[_ellipsoidal_radius(pos, axes, rotation) >= r_out]

    def load(self, halo_id: int) -> Halo:
        """The particles of one halo, deterministic for ``(catalog.seed, halo_id)``."""
        from cmpipe.physics.catalog import orientation_matrix
        from cmpipe.physics.cosmology import mean_densities
        from cmpipe.physics.plasma import Plasma, constants
        from cmpipe.sph.smoothing import knn_volume_density, smoothing_lengths

        cfg, mock = self.cfg, self.cfg.mock
        row = self.parameters(halo_id)
        props = self._properties(row)
        prof = self._profiles(row)
        rng = np.random.default_rng(np.random.SeedSequence([cfg.catalog.seed, props.halo_id, _STREAM]))
        m_dm, m_gas = self.particle_masses_msun()
        q, s = float(row["shape_q"]), float(row["shape_s"])
        orient = orientation_matrix(np.array([row["orient_w"], row["orient_x"], row["orient_y"], row["orient_z"]]))

        # Geometry of the DM and of the gas. The misalignment axis is drawn whatever the knobs,
        # so that switching one knob leaves the other draws alone.
        tilt_axis = _isotropic(1, rng)[0]
        dm_axes, dm_rot = (_axes(q, s), orient) if mock.triaxial else (np.ones(3), np.eye(3))
        if mock.gas_shape:
            gas_axes = _axes(1.0 - 0.5 * (1.0 - q), 1.0 - 0.5 * (1.0 - s))
            gas_rot = _axis_angle(tilt_axis, np.deg2rad(float(row["gas_misalignment_deg"]))) @ orient
        else:
            gas_axes, gas_rot = np.ones(3), np.eye(3)

        dm_pos = _sample(prof.r_mpc, prof.dm_enclosed_msun, m_dm, dm_axes, dm_rot, rng)
        gas_pos = _sample(prof.r_mpc, prof.gas_enclosed_msun, m_gas, gas_axes, gas_rot, rng)
        n_primary_gas = gas_pos.shape[0]  # the primary's profile gas (the shock's medium)
        if mock.background:
            # Outside the halo's outer ellipsoid, or (transition) everywhere in the sphere.
            exclude = 0.0 if prof.background_inside else prof.outer_mpc
            bg_dm = self._background(prof.background_dm_msun_mpc3, m_dm, exclude, dm_axes, dm_rot, rng)
            bg_gas = self._background(prof.background_gas_msun_mpc3, m_gas, exclude, gas_axes, gas_rot, rng)
            dm_pos = np.concatenate([dm_pos, bg_dm])
            gas_pos = np.concatenate([gas_pos, bg_gas])

        # The newer knobs draw from their own child streams (module docstring, "Random numbers").
        clump_rng, merger_rng, sub_rng, neighbour_rng, gas_clump_rng = self._knob_generators(props.halo_id)
        secondary = self._secondary(row) if mock.mergers else None
        companions = [secondary] if secondary is not None else []
        if secondary is not None:
            sec_dm, sec_gas = self._secondary_particles(secondary, merger_rng)
            dm_pos = np.concatenate([dm_pos, sec_dm])
            gas_pos = np.concatenate([gas_pos, sec_gas])
        if mock.neighbours and mock.transition:
            for neighbour in self.neighbours(props.halo_id, neighbour_rng):
                nb_dm, nb_gas = self._secondary_particles(neighbour, neighbour_rng)
                dm_pos = np.concatenate([dm_pos, nb_dm])
                gas_pos = np.concatenate([gas_pos, nb_gas])
                companions.append(neighbour)
        clump_normals = clump_rng.standard_normal(gas_pos.shape[0]) if mock.clumping else None
        primary_gas = np.arange(gas_pos.shape[0]) < n_primary_gas
        n_profile_gas = int(round(prof.gas_enclosed_msun[-1] / m_gas))  # the host's own gas particles, first
        if mock.substructure:
            subs = self._subhalos(row, dm_axes, dm_rot, sub_rng)
            sub_dm, sub_gas = self._subhalo_particles(subs, sub_rng)
            # The subhalos' DM and retained gas replace host profile particles of matching
            # host-centric radii, drawing no random numbers: the removed mass follows the added
            # mass radially, so the spherically averaged profiles stay the host's (M200m and the
            # gas mass kept).
            n_dm_host = int(round(prof.dm_enclosed_msun[-1] / m_dm))
            n_gas_host = int(round(prof.gas_enclosed_msun[-1] / m_gas))
            keep_dm = _remove_matching_radii(np.linalg.norm(dm_pos[:n_dm_host], axis=1), np.linalg.norm(sub_dm, axis=1))
            keep_gas = _remove_matching_radii(np.linalg.norm(gas_pos[:n_gas_host], axis=1),
                                              np.linalg.norm(sub_gas, axis=1))
            keep_dm = np.concatenate([keep_dm, np.ones(dm_pos.shape[0] - n_dm_host, dtype=bool)])
            keep_gas = np.concatenate([keep_gas, np.ones(gas_pos.shape[0] - n_gas_host, dtype=bool)])
            dm_pos = np.concatenate([dm_pos[keep_dm], sub_dm])
            gas_pos = np.concatenate([gas_pos[keep_gas], sub_gas])
            primary_gas = np.concatenate([primary_gas[keep_gas], np.zeros(sub_gas.shape[0], dtype=bool)])
            if clump_normals is not None:
                clump_normals = np.concatenate([clump_normals[keep_gas], clump_rng.standard_normal(sub_gas.shape[0])])
            n_profile_gas -= sub_gas.shape[0]
        if mock.gas_clumps and mock.gas_from_hse:
            # Resolved clumps: gas particles gathered into Plummer spheres; as many host profile
            # gas particles of matching radii go, so the gas mass and its radial profile stay.
            clump_gas = self._gas_clump_particles(self.gas_clumps(row, prof, gas_axes, gas_rot, gas_clump_rng),
                                                  gas_clump_rng)
            keep = _remove_matching_radii(np.linalg.norm(gas_pos[:n_profile_gas], axis=1),
                                          np.linalg.norm(clump_gas, axis=1))
            keep = np.concatenate([keep, np.ones(gas_pos.shape[0] - n_profile_gas, dtype=bool)])
            gas_pos = np.concatenate([gas_pos[keep], clump_gas])
            primary_gas = np.concatenate([primary_gas[keep], np.zeros(clump_gas.shape[0], dtype=bool)])
            if clump_normals is not None:
                clump_normals = np.concatenate([clump_normals[keep], clump_rng.standard_normal(clump_gas.shape[0])])

        # Temperatures from the profile pressure and each particle's density. The density is the
        # k-NN volume estimate, whose inverse (the particle volume m / rho that weights every SPH
        # line-of-sight integral) is unbiased for these Poisson-sampled particles; the gather
        # density's inverse would bias y high by ~20 % at k = 32.
        gas_mass = np.full(gas_pos.shape[0], m_gas)
        support = smoothing_lengths(gas_pos, mock.n_neighbours_temperature, cfg.sph.num_threads)
        density = knn_volume_density(support, m_gas, mock.n_neighbours_temperature)
        plasma = Plasma(cfg.plasma.hydrogen_mass_fraction, cfg.plasma.gaunt_factor)
        k = constants()
        _, _, to_g_cm3 = _units()
        gas_r = _ellipsoidal_radius(gas_pos, gas_axes, gas_rot)
        p_th = prof.thermal_pressure_kev_cm3(gas_r)
        p_th = p_th + self._companion_pressure_kev_cm3(gas_pos, companions)
        if mock.clumping:
            density = density * clumping_boost(gas_r, prof.r200m_mpc, float(row["clumping_c0"]), clump_normals)
        shock = self._shock(row, secondary) if mock.shocks else None
        if shock is not None:
            w = np.where(primary_gas, shock.weights(gas_pos, support), 0.0)
            p_th = p_th * shock.pressure_jump**w
            density = density * shock.compression**w
        n_particles_cm3 = density * to_g_cm3 / (plasma.mean_molecular_weight * k.proton_mass_g)
        temperature = np.maximum(p_th / (n_particles_cm3 * k.boltzmann_kev_per_k), IGM_TEMPERATURE_FLOOR_K)

        halo = Halo(
            props=props,
            gas=GasParticles(
                pos_mpc=gas_pos, mass_msun=gas_mass, smoothing_length_mpc=support,
                temperature_k=temperature, density_msun_mpc3=density,
            ),
            dm=DarkMatterParticles(pos_mpc=dm_pos, mass_msun=np.full(dm_pos.shape[0], m_dm)),
        )
        return halo.validate(source="mock source")

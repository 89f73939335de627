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

from cmpipe.physics.mock.components import (
    CLUMPING_CAP,
    MERGER_MAX_LAG_MPC,
    MockGasClumps,
    MockSecondary,
    MockShock,
    MockSubhalos,
    _axes,
    clumping_boost,
    clumping_factor,
    rankine_hugoniot_jumps,
    subhalo_mass_function,
    subhalo_mf_normalisation,
)
from cmpipe.physics.mock.profiles import (
    A10_COOL_CORE,
    A10_DISTURBED,
    DPP_PARAMETERS,
    IGM_TEMPERATURE_FLOOR_K,
    NELSON14_PARAMETERS,
    MockProfiles,
    dk14_transition,
    dpp_electron_pressure_kev_cm3,
    gnfw_electron_pressure_kev_cm3,
    neighbour_gas_depletion,
    nfw_mass_fraction,
    nonthermal_fraction,
    vikhlinin09_fgas500,
)
from cmpipe.physics.mock.source import MockHaloSource

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
    "MockGasClumps",
    "A10_COOL_CORE",
    "A10_DISTURBED",
    "dk14_transition",
    "gnfw_electron_pressure_kev_cm3",
    "neighbour_gas_depletion",
    "vikhlinin09_fgas500",
    "subhalo_mass_function",
    "subhalo_mf_normalisation",
    "clumping_boost",
    "clumping_factor",
    "dpp_electron_pressure_kev_cm3",
    "nfw_mass_fraction",
    "nonthermal_fraction",
    "rankine_hugoniot_jumps",
]


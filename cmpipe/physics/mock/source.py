"""The mock halo source (:mod:`cmpipe.physics.mock`): :class:`MockHaloSource` makes one halo's
particles from its catalog row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from cmpipe.physics.halo import DarkMatterParticles, GasParticles, Halo, HaloProperties
from cmpipe.physics.mock.components import (
    GAS_CLUMP_MAX_PARTICLES,
    GAS_CLUMP_MIN_PARTICLES,
    GAS_CLUMP_RANGE_R200M,
    GAS_CLUMP_SCALE_MPC,
    MERGER_MAX_LAG_MPC,
    SHOCK_CAP_R200M,
    SHOCK_STANDOFF_R200M,
    SHOCK_THICKNESS_R200M,
    SUBHALO_EINASTO,
    SUBHALO_GAS_RETAINED,
    SUBHALO_MAX_MASS_FRACTION,
    SUBHALO_MIN_PARTICLES,
    MockGasClumps,
    MockSecondary,
    MockShock,
    MockSubhalos,
    _axes,
    _axis_angle,
    _ellipsoidal_radius,
    _isotropic,
    _remove_matching_radii,
    _sample,
    clumping_boost,
    subhalo_mass_function,
)
from cmpipe.physics.mock.profiles import (
    A10_COOL_CORE,
    A10_DISTURBED,
    DK14_RT,
    DPP_PARAMETERS,
    IGM_TEMPERATURE_FLOOR_K,
    _N_TABLE,
    _X_MIN,
    MockProfiles,
    _cap,
    _cumulative,
    _density,
    _log_concentration_table,
    _resolved_fractions,
    _units,
    _xi_table,
    dk14_transition,
    neighbour_gas_depletion,
    nfw_mass_fraction,
    nonthermal_fraction,
    vikhlinin09_fgas500,
)

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config

#: Stream index that SeedSequence([catalog.seed, halo_id, _STREAM]) reserves for the particles.
_STREAM = 1


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

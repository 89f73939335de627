"""The mock halo source (:mod:`cmpipe.physics.mock`): :class:`MockHaloSource` makes one halo's
particles from its catalog row, assembling the components of
:mod:`cmpipe.physics.mock.components` on the profiles of :mod:`cmpipe.physics.mock.profiles`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from cmpipe.physics.halo import DarkMatterParticles, GasParticles, Halo, HaloProperties
from cmpipe.physics.mock.components import (
    _STREAM,
    MockGasClumps,
    MockSecondary,
    MockShock,
    MockSubhalos,
    _axes,
    _axis_angle,
    _ellipsoidal_radius,
    _isotropic,
    _sample,
    clumping_boost,
    companion_pressure_kev_cm3,
    gas_clump_particles,
    keep_unmatched,
    knob_generators,
    make_gas_clumps,
    make_neighbours,
    make_secondary,
    make_shock,
    make_subhalos,
    particle_masses_msun,
    sample_background,
    secondary_particles,
    subhalo_particles,
)
from cmpipe.physics.mock.profiles import (
    IGM_TEMPERATURE_FLOOR_K,
    MockProfiles,
    _units,
    background_radius_mpc,
    halo_profiles,
    neighbour_mass_range_log10_msun_h,
    outer_radius_mpc,
    own_mass_msun,
    plasma_of,
    transition_radius_mpc,
    two_halo_enclosed_msun,
)

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import CatalogConfig, CosmologyConfig, MapsConfig, MockConfig, PlasmaConfig, SphConfig


@dataclass(frozen=True)
class _Geometry:
    """Axis lengths and rotations of the DM and of the gas of one halo."""

    dm_axes: np.ndarray
    dm_rot: np.ndarray
    gas_axes: np.ndarray
    gas_rot: np.ndarray


def _orientation(row: dict) -> np.ndarray:
    """The catalog row's orientation matrix."""
    from cmpipe.physics.catalog import orientation_matrix

    return orientation_matrix(np.array([row["orient_w"], row["orient_x"], row["orient_y"], row["orient_z"]]))


def _geometry(row: dict, mock: MockConfig, rng: np.random.Generator) -> _Geometry:
    """Geometry of the DM and of the gas. The misalignment axis is drawn whatever the knobs,
    so that switching one knob leaves the other draws alone."""
    q, s = float(row["shape_q"]), float(row["shape_s"])
    orient = _orientation(row)
    tilt_axis = _isotropic(1, rng)[0]
    dm_axes, dm_rot = (_axes(q, s), orient) if mock.triaxial else (np.ones(3), np.eye(3))
    if mock.gas_shape:
        gas_axes = _axes(1.0 - 0.5 * (1.0 - q), 1.0 - 0.5 * (1.0 - s))
        gas_rot = _axis_angle(tilt_axis, np.deg2rad(float(row["gas_misalignment_deg"]))) @ orient
    else:
        gas_axes, gas_rot = np.ones(3), np.eye(3)
    return _Geometry(dm_axes, dm_rot, gas_axes, gas_rot)


@dataclass
class _Particles:
    """The positions [Mpc] of one halo while :meth:`MockHaloSource.load` assembles them.

    ``primary_gas`` flags the primary's profile gas (the shock's medium); ``clump_normals`` are
    the clumping normals, one per gas particle (None without ``clumping``); the first
    ``n_profile_gas`` gas particles are the host's own profile gas.
    """

    dm_pos: np.ndarray
    gas_pos: np.ndarray
    n_primary_gas: int
    primary_gas: np.ndarray | None = None
    clump_normals: np.ndarray | None = None
    n_profile_gas: int = 0
    _dm_blocks: list[np.ndarray] = field(default_factory=list)
    _gas_blocks: list[np.ndarray] = field(default_factory=list)

    def append(self, dm: np.ndarray, gas: np.ndarray) -> None:
        """Add DM and gas positions at the end: queued, and joined by one concatenation in
        :meth:`gather` (joining per block re-copied every earlier particle: 0.1-0.5 s a halo
        with the hundreds of neighbours at m_pair = 1e9)."""
        self._dm_blocks.append(dm)
        self._gas_blocks.append(gas)

    def gather(self) -> None:
        """Join the queued blocks to ``dm_pos`` and ``gas_pos`` (same rows, same order)."""
        if self._dm_blocks:
            self.dm_pos = np.concatenate([self.dm_pos, *self._dm_blocks])
            self.gas_pos = np.concatenate([self.gas_pos, *self._gas_blocks])
            self._dm_blocks, self._gas_blocks = [], []

    def flag_gas(self, prof: MockProfiles, m_gas: float, clump_rng: np.random.Generator | None) -> None:
        """Flag the primary's gas, count the host profile's gas and draw the clumping normals
        (in particle order) once the gas so far is in place."""
        self.gather()
        self.clump_normals = clump_rng.standard_normal(self.gas_pos.shape[0]) if clump_rng is not None else None
        self.primary_gas = np.arange(self.gas_pos.shape[0]) < self.n_primary_gas
        self.n_profile_gas = int(round(prof.gas_enclosed_msun[-1] / m_gas))  # the host's own gas particles, first

    def replace_gas(self, keep: np.ndarray, new_gas: np.ndarray, clump_rng: np.random.Generator) -> None:
        """Keep the gas of mask ``keep`` and add ``new_gas`` (not primary) at the end."""
        self.gas_pos = np.concatenate([self.gas_pos[keep], new_gas])
        self.primary_gas = np.concatenate([self.primary_gas[keep], np.zeros(new_gas.shape[0], dtype=bool)])
        if self.clump_normals is not None:
            self.clump_normals = np.concatenate([self.clump_normals[keep], clump_rng.standard_normal(new_gas.shape[0])])


@dataclass(frozen=True)
class MockHaloSource:
    """Mock clusters over the halo catalog; implements :class:`~cmpipe.physics.halo.HaloSource`.

    Cheap to build and picklable (it holds only config sections); every halo is made from its
    catalog row (:func:`cmpipe.physics.catalog.halo_parameters`) and
    ``SeedSequence([catalog.seed, halo_id, 1])``. :func:`cmpipe.stages.source.mock_source` makes
    one from a whole config.

    Attributes
    ----------
    catalog, cosmology, plasma, maps, mock, sph
        The config sections: ``maps`` sets the background extent, ``sph`` the threads of the
        k-NN densities.
    """

    catalog: CatalogConfig
    cosmology: CosmologyConfig
    plasma: PlasmaConfig
    maps: MapsConfig
    mock: MockConfig
    sph: SphConfig

    def halo_ids(self) -> Sequence[int]:
        """The catalog's ids, ``0 .. catalog.n_halos - 1``."""
        return tuple(range(self.catalog.n_halos))

    def parameters(self, halo_id: int) -> dict:
        """The halo's catalog row (:func:`cmpipe.physics.catalog.halo_parameters`)."""
        from cmpipe.physics.catalog import halo_parameters

        return halo_parameters(self.catalog, self.cosmology, int(halo_id))

    def properties(self, halo_id: int) -> HaloProperties:
        """M200m [Msun], R200m [Mpc] and redshift from the catalog row (no particles made)."""
        return self._properties(self.parameters(halo_id))

    def _properties(self, row: dict) -> HaloProperties:
        return HaloProperties(
            halo_id=int(row["halo_id"]),
            m200m_msun=float(row["m200m_msun_h"]) / self.cosmology.h,
            r200m_mpc=float(row["r200m_mpc"]),
            redshift=self.cosmology.redshift,
        )

    # ----------------------------------------------------------------------------------------
    # Profiles (:mod:`cmpipe.physics.mock.profiles`)

    def outer_radius_mpc(self, row: dict) -> float:
        """Outer radius of the halo's particles [Mpc]: the background sphere (``transition``),
        else the infall extent or the truncation."""
        return outer_radius_mpc(row, self.mock, self.background_radius_mpc())

    def profiles(self, halo_id: int) -> MockProfiles:
        """Tabulated DM and gas enclosed masses and the pressure profile of one halo."""
        return self._profiles(self.parameters(halo_id))

    def _profiles(self, row: dict) -> MockProfiles:
        return halo_profiles(row, self.outer_radius_mpc(row), self.cosmology, self.plasma, self.mock)

    def transition_radius_mpc(self, row: dict) -> float:
        """``r_t = (1.9 - 0.18 nu) R200m`` of Diemer & Kravtsov (2014) [Mpc], ``nu`` the peak height."""
        return transition_radius_mpc(row, self.cosmology)

    def _own_mass_msun(self, row: dict, r: np.ndarray) -> np.ndarray:
        return own_mass_msun(row, r, self.cosmology, self.mock)

    def _two_halo_enclosed_msun(self, row: dict, r: np.ndarray) -> np.ndarray:
        return two_halo_enclosed_msun(row, r, self.cosmology, self.mock)

    def neighbour_mass_range_log10_msun_h(self) -> tuple[float, float]:
        """log10 M200m [Msun/h] of the resolved neighbour halos: from ``neighbour_min_particles``
        particle pairs to 10^15.5."""
        return neighbour_mass_range_log10_msun_h(self.mock)

    def particle_masses_msun(self) -> tuple[float, float]:
        """``(m_DM, m_gas) = ((1 - f_b) m_pair, f_b m_pair)`` [Msun]."""
        return particle_masses_msun(self.cosmology, self.mock)

    def background_radius_mpc(self) -> float:
        """Radius of the sphere circumscribing the projection box [Mpc] (the background's extent)."""
        return background_radius_mpc(self.maps)

    # ----------------------------------------------------------------------------------------
    # Components (:mod:`cmpipe.physics.mock.components`)

    def secondary(self, halo_id: int) -> MockSecondary | None:
        """The merger secondary of one halo, or None when the catalog row is not a merger."""
        return self._secondary(self.parameters(halo_id))

    def _secondary(self, row: dict) -> MockSecondary | None:
        return make_secondary(row, self.cosmology, self.plasma, self.mock)

    def shock(self, halo_id: int) -> MockShock | None:
        """The merger shock of one halo (whatever ``mock.shocks``), or None if not a merger."""
        row = self.parameters(halo_id)
        return make_shock(row, self._secondary(row))

    def _knob_generators(self, halo_id: int) -> list[np.random.Generator]:
        return knob_generators(self.catalog.seed, halo_id)

    def subhalos(self, halo_id: int) -> MockSubhalos:
        """The resolved subhalos of one halo, as :meth:`load` makes them with ``substructure``."""
        row = self.parameters(halo_id)
        if self.mock.triaxial:
            axes, rot = _axes(float(row["shape_q"]), float(row["shape_s"])), _orientation(row)
        else:
            axes, rot = np.ones(3), np.eye(3)
        return self._subhalos(row, axes, rot, self._knob_generators(int(row["halo_id"]))[2])

    def _subhalos(self, row: dict, axes: np.ndarray, rotation: np.ndarray, rng: np.random.Generator) -> MockSubhalos:
        return make_subhalos(row, axes, rotation, rng, self.cosmology, self.mock)

    def gas_clumps(
        self, row: dict, prof: MockProfiles, axes: np.ndarray, rotation: np.ndarray, rng: np.random.Generator,
    ) -> MockGasClumps:
        """Resolved gas clumps of one halo (:func:`cmpipe.physics.mock.components.make_gas_clumps`)."""
        return make_gas_clumps(prof, axes, rotation, rng, self.cosmology, self.mock)

    def neighbours(self, halo_id: int, rng: np.random.Generator | None = None) -> list[MockSecondary]:
        """The neighbour halos of one halo (``neighbours``;
        :func:`cmpipe.physics.mock.components.make_neighbours`)."""
        if rng is None:
            rng = self._knob_generators(int(halo_id))[3]
        m200m = float(self.parameters(halo_id)["m200m_msun_h"]) / self.cosmology.h
        return make_neighbours(m200m, self.background_radius_mpc(), self.cosmology, self.plasma, self.mock, rng)

    # ----------------------------------------------------------------------------------------
    # Particles

    def load(self, halo_id: int) -> Halo:
        """The particles of one halo, deterministic for ``(catalog.seed, halo_id)``.

        Draw order (module docstring, ``Random numbers``): the halo's generator for the tilt
        axis, DM, gas and background; then the knobs' child streams.
        """
        mock = self.mock
        row = self.parameters(halo_id)
        props = self._properties(row)
        prof = self._profiles(row)
        rng = np.random.default_rng(np.random.SeedSequence([self.catalog.seed, props.halo_id, _STREAM]))
        geom = _geometry(row, mock, rng)
        parts = self._host_particles(prof, geom, rng)
        clump_rng, merger_rng, sub_rng, neighbour_rng, gas_clump_rng = self._knob_generators(props.halo_id)
        secondary = self._secondary(row) if mock.mergers else None
        companions = self._add_companions(parts, row, secondary, merger_rng, neighbour_rng)
        parts.flag_gas(prof, self.particle_masses_msun()[1], clump_rng if mock.clumping else None)
        if mock.substructure:
            self._add_subhalos(parts, row, prof, geom, sub_rng, clump_rng)
        if mock.gas_clumps and mock.gas_from_hse:
            self._add_gas_clumps(parts, prof, geom, gas_clump_rng, clump_rng)
        m_dm = self.particle_masses_msun()[0]
        halo = Halo(
            props=props,
            gas=self._gas_particles(parts, row, prof, geom, secondary, companions),
            dm=DarkMatterParticles(pos_mpc=parts.dm_pos, mass_msun=np.full(parts.dm_pos.shape[0], m_dm)),
        )
        return halo.validate(source="mock source")

    def _host_particles(self, prof: MockProfiles, geom: _Geometry, rng: np.random.Generator) -> _Particles:
        """The host's profile DM and gas, then the uniform background (outside the halo's outer
        ellipsoid, or with ``transition`` everywhere in the sphere)."""
        m_dm, m_gas = self.particle_masses_msun()
        dm_pos = _sample(prof.r_mpc, prof.dm_enclosed_msun, m_dm, geom.dm_axes, geom.dm_rot, rng)
        gas_pos = _sample(prof.r_mpc, prof.gas_enclosed_msun, m_gas, geom.gas_axes, geom.gas_rot, rng)
        parts = _Particles(dm_pos, gas_pos, n_primary_gas=gas_pos.shape[0])
        if self.mock.background:
            exclude = 0.0 if prof.background_inside else prof.outer_mpc
            radius = self.background_radius_mpc()
            bg_dm = sample_background(prof.background_dm_msun_mpc3, m_dm, exclude, geom.dm_axes, geom.dm_rot, radius, rng)
            bg_gas = sample_background(prof.background_gas_msun_mpc3, m_gas, exclude, geom.gas_axes, geom.gas_rot,
                                       radius, rng)
            parts.append(bg_dm, bg_gas)
        return parts

    def _add_companions(
        self, parts: _Particles, row: dict, secondary: MockSecondary | None, merger_rng: np.random.Generator,
        neighbour_rng: np.random.Generator,
    ) -> list[MockSecondary]:
        """Add the merger secondary's and the neighbours' particles; return those halos (their
        isothermal gas adds to the pressure)."""
        companions = [secondary] if secondary is not None else []
        if secondary is not None:
            parts.append(*secondary_particles(secondary, self.cosmology, self.mock, merger_rng))
        if self.mock.neighbours and self.mock.transition:
            m200m = float(row["m200m_msun_h"]) / self.cosmology.h
            found = make_neighbours(m200m, self.background_radius_mpc(), self.cosmology, self.plasma, self.mock,
                                    neighbour_rng)
            for neighbour in found:
                parts.append(*secondary_particles(neighbour, self.cosmology, self.mock, neighbour_rng))
                companions.append(neighbour)
        return companions

    def _add_subhalos(
        self, parts: _Particles, row: dict, prof: MockProfiles, geom: _Geometry, sub_rng: np.random.Generator,
        clump_rng: np.random.Generator,
    ) -> None:
        """The subhalos' DM and retained gas replace host profile particles of matching
        host-centric radii, drawing no random numbers: the removed mass follows the added mass
        radially, so the spherically averaged profiles stay the host's (M200m and the gas mass
        kept)."""
        m_dm, m_gas = self.particle_masses_msun()
        subs = self._subhalos(row, geom.dm_axes, geom.dm_rot, sub_rng)
        sub_dm, sub_gas = subhalo_particles(subs, sub_rng)
        keep_dm = keep_unmatched(parts.dm_pos, int(round(prof.dm_enclosed_msun[-1] / m_dm)), sub_dm)
        keep_gas = keep_unmatched(parts.gas_pos, int(round(prof.gas_enclosed_msun[-1] / m_gas)), sub_gas)
        parts.dm_pos = np.concatenate([parts.dm_pos[keep_dm], sub_dm])
        parts.replace_gas(keep_gas, sub_gas, clump_rng)
        parts.n_profile_gas -= sub_gas.shape[0]

    def _add_gas_clumps(
        self, parts: _Particles, prof: MockProfiles, geom: _Geometry, gas_clump_rng: np.random.Generator,
        clump_rng: np.random.Generator,
    ) -> None:
        """Resolved clumps: gas particles gathered into Plummer spheres; as many host profile
        gas particles of matching radii go, so the gas mass and its radial profile stay."""
        clumps = make_gas_clumps(prof, geom.gas_axes, geom.gas_rot, gas_clump_rng, self.cosmology, self.mock)
        clump_gas = gas_clump_particles(clumps, gas_clump_rng)
        parts.replace_gas(keep_unmatched(parts.gas_pos, parts.n_profile_gas, clump_gas), clump_gas, clump_rng)

    def _gas_particles(
        self, parts: _Particles, row: dict, prof: MockProfiles, geom: _Geometry, secondary: MockSecondary | None,
        companions: list[MockSecondary],
    ) -> GasParticles:
        """Gas particles with temperatures from the profile pressure and each particle's density.

        The density is the k-NN volume estimate, whose inverse (the particle volume m / rho that
        weights every SPH line-of-sight integral) is unbiased for these Poisson-sampled particles;
        the gather density's inverse would bias y high by ~20 % at k = 32. Clumping and the shock
        then act on the density and the pressure.
        """
        from cmpipe.sph.smoothing import knn_volume_density, smoothing_lengths

        mock = self.mock
        _, m_gas = self.particle_masses_msun()
        gas_pos = parts.gas_pos
        support = smoothing_lengths(gas_pos, mock.n_neighbours_temperature, self.sph.num_threads)
        density = knn_volume_density(support, m_gas, mock.n_neighbours_temperature)
        gas_r = _ellipsoidal_radius(gas_pos, geom.gas_axes, geom.gas_rot)
        p_th = prof.thermal_pressure_kev_cm3(gas_r)
        p_th = p_th + companion_pressure_kev_cm3(gas_pos, companions, self.plasma)
        if mock.clumping:
            density = density * clumping_boost(gas_r, prof.r200m_mpc, float(row["clumping_c0"]), parts.clump_normals)
        shock = make_shock(row, secondary) if mock.shocks else None
        if shock is not None:
            w = np.where(parts.primary_gas, shock.weights(gas_pos, support), 0.0)
            p_th = p_th * shock.pressure_jump**w
            density = density * shock.compression**w
        return GasParticles(
            pos_mpc=gas_pos, mass_msun=np.full(gas_pos.shape[0], m_gas), smoothing_length_mpc=support,
            temperature_k=self._temperature_k(p_th, density), density_msun_mpc3=density,
        )

    def _temperature_k(self, p_th_kev_cm3: np.ndarray, density_msun_mpc3: np.ndarray) -> np.ndarray:
        """``T = mu m_p P_th / (k_B rho)`` [K], floored at :data:`IGM_TEMPERATURE_FLOOR_K`."""
        from cmpipe.physics.plasma import constants

        k = constants()
        _, _, to_g_cm3 = _units()
        n_particles_cm3 = density_msun_mpc3 * to_g_cm3 / (plasma_of(self.plasma).mean_molecular_weight * k.proton_mass_g)
        return np.maximum(p_th_kev_cm3 / (n_particles_cm3 * k.boltzmann_kev_per_k), IGM_TEMPERATURE_FLOOR_K)

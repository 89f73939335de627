"""Gadget-4 / AREPO-layout snapshots and FoF catalogs written with h5py, for the extraction tests
and ``bench/extract.py``.

Follows the IllustrisTNG file specification (https://www.tng-project.org/data/docs/specifications/):
``/Header`` with ``BoxSize``, ``Redshift``, ``Time``, ``HubbleParam``, ``MassTable``,
``NumPart_ThisFile``, ``NumPart_Total``, ``NumPart_Total_HighWord``, ``NumFilesPerSnapshot`` and
the code units; ``/PartType0`` cells with ``Coordinates`` (ckpc/h), ``Masses`` (1e10 Msun/h),
``Density`` (1e10 Msun/h / (ckpc/h)^3), ``InternalEnergy`` ((km/s)^2) and ``ElectronAbundance``
and no ``SmoothingLength`` (AREPO); ``/PartType1`` without ``Masses`` (``MassTable[1]``);
optional ``/PartType4`` stars. Files split the particles by x, so each covers a slab of the box.
The catalog ``fof_subhalo_tab_NNN.K.hdf5`` holds ``/Group/GroupPos``, ``Group_M_Mean200``,
``Group_R_Mean200``, ``Group_M_Crit500``, ``Group_R_Crit500`` and ``GroupLenType``.

Everything given to :func:`write_snapshot` is in physical Mpc, Msun, (km/s)^2 and Msun Mpc^-3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

UNIT_LENGTH_CM = 3.085678e21  # 1 kpc (per h), TNG's value
UNIT_MASS_G = 1.989e43  # 1e10 Msun (per h)
UNIT_VELOCITY_CM_S = 1e5  # 1 km/s
MPC_CM = 3.0856775814913673e24  # astropy's Mpc
MSUN_G = 1.988409870698051e33  # astropy's IAU 2015 nominal solar mass


@dataclass
class Snapshot:
    """Particles and groups in physical units, positions absolute in [0, box)."""

    box_mpc: float
    h: float
    redshift: float
    gas_pos_mpc: np.ndarray
    gas_mass_msun: np.ndarray
    gas_u_kms2: np.ndarray
    gas_xe: np.ndarray
    gas_density_msun_mpc3: np.ndarray
    dm_pos_mpc: np.ndarray
    dm_mass_msun: float
    groups: list[dict] = field(default_factory=list)  # centre_mpc, m200m_msun, r200m_mpc, m500c_msun, r500c_mpc
    star_pos_mpc: np.ndarray | None = None

    @property
    def length_mpc(self) -> float:
        """Stored ckpc/h -> physical Mpc."""
        return UNIT_LENGTH_CM / MPC_CM / (1.0 + self.redshift) / self.h

    @property
    def mass_msun(self) -> float:
        """Stored 1e10 Msun/h -> Msun."""
        return UNIT_MASS_G / MSUN_G / self.h


def _header(f: h5py.File, snap: Snapshot, n_this: list[int], n_total: list[int], n_files: int, units_in: str) -> None:
    hdr = f.create_group("Header")
    hdr.attrs["BoxSize"] = snap.box_mpc / snap.length_mpc
    hdr.attrs["Redshift"] = snap.redshift
    hdr.attrs["Time"] = 1.0 / (1.0 + snap.redshift)
    hdr.attrs["HubbleParam"] = snap.h
    hdr.attrs["Omega0"], hdr.attrs["OmegaLambda"], hdr.attrs["OmegaBaryon"] = 0.3, 0.7, 0.048
    table = np.zeros(6)
    table[1] = snap.dm_mass_msun / snap.mass_msun
    hdr.attrs["MassTable"] = table
    hdr.attrs["NumPart_ThisFile"] = np.array(n_this, dtype=np.int32)
    hdr.attrs["NumPart_Total"] = np.array(n_total, dtype=np.uint32)
    hdr.attrs["NumPart_Total_HighWord"] = np.zeros(6, dtype=np.uint32)
    hdr.attrs["NumFilesPerSnapshot"] = np.int32(n_files)
    if units_in:
        g = f.require_group(units_in)
        g.attrs["UnitLength_in_cm"] = UNIT_LENGTH_CM
        g.attrs["UnitMass_in_g"] = UNIT_MASS_G
        g.attrs["UnitVelocity_in_cm_per_s"] = UNIT_VELOCITY_CM_S


def _parts(snap: Snapshot, n_files: int) -> list[dict[int, np.ndarray]]:
    """Indices of each type per file: split by x into ``n_files`` slabs."""
    types = {0: snap.gas_pos_mpc, 1: snap.dm_pos_mpc}
    if snap.star_pos_mpc is not None:
        types[4] = snap.star_pos_mpc
    edges = np.linspace(0.0, snap.box_mpc, n_files + 1)
    return [{t: np.flatnonzero((pos[:, 0] >= edges[k]) & ((pos[:, 0] < edges[k + 1]) | (k == n_files - 1)))
             for t, pos in types.items()} for k in range(n_files)]


def _name(directory: Path, stem: str, k: int, n_files: int) -> Path:
    return directory / (f"{stem}.{k}.hdf5" if n_files > 1 else f"{stem}.hdf5")


def write_snapshot(directory: Path, snap: Snapshot, *, n_files: int = 2, units_in: str = "Header",
                   number: int = 99) -> tuple[Path, Path]:
    """Write the snapshot and its catalog to ``directory``; returns (first snapshot file, first
    catalog file). ``units_in``: the group holding the unit attributes (``Header`` as TNG,
    ``Parameters`` as Gadget-4, ``""`` for none)."""
    directory.mkdir(parents=True, exist_ok=True)
    lf, mf = snap.length_mpc, snap.mass_msun
    per_file = _parts(snap, n_files)
    n_total = [0] * 6
    for t in per_file[0]:
        n_total[t] = sum(len(p[t]) for p in per_file)
    for k, idx in enumerate(per_file):
        with h5py.File(_name(directory, f"snap_{number:03d}", k, n_files), "w") as f:
            n_this = [len(idx.get(t, [])) for t in range(6)]
            _header(f, snap, n_this, n_total, n_files, units_in)
            g = f.create_group("PartType0")
            i = idx[0]
            g["Coordinates"] = snap.gas_pos_mpc[i] / lf
            g["Masses"] = (snap.gas_mass_msun[i] / mf).astype(np.float32)
            g["Density"] = (snap.gas_density_msun_mpc3[i] / (mf / lf**3)).astype(np.float32)
            g["InternalEnergy"] = (snap.gas_u_kms2[i] * 1e10 / UNIT_VELOCITY_CM_S**2).astype(np.float32)
            g["ElectronAbundance"] = snap.gas_xe[i].astype(np.float32)
            f.create_group("PartType1")["Coordinates"] = snap.dm_pos_mpc[idx[1]] / lf
            if 4 in idx:
                stars = f.create_group("PartType4")
                stars["Coordinates"] = snap.star_pos_mpc[idx[4]] / lf
                stars["Masses"] = np.full(len(idx[4]), 1e-3, dtype=np.float32)
    return _name(directory, f"snap_{number:03d}", 0, n_files), write_catalog(directory, snap, n_total, number=number)


def write_catalog(directory: Path, snap: Snapshot, n_total: list[int], *, n_files: int = 2, number: int = 99,
                  box_factor: float = 1.0, redshift: float | None = None) -> Path:
    """The FoF catalog of ``snap.groups``, split over ``n_files`` files (the last may be empty)."""
    lf, mf = snap.length_mpc, snap.mass_msun
    chunks = np.array_split(np.arange(len(snap.groups)), n_files)
    for k, rows in enumerate(chunks):
        with h5py.File(_name(directory, f"fof_subhalo_tab_{number:03d}", k, n_files), "w") as f:
            hdr = f.create_group("Header")
            hdr.attrs["BoxSize"] = box_factor * snap.box_mpc / lf
            hdr.attrs["Redshift"] = snap.redshift if redshift is None else redshift
            hdr.attrs["Time"] = 1.0 / (1.0 + hdr.attrs["Redshift"])
            hdr.attrs["HubbleParam"] = snap.h
            hdr.attrs["Ngroups_ThisFile"] = np.int32(len(rows))
            hdr.attrs["Ngroups_Total"] = np.int32(len(snap.groups))
            hdr.attrs["NumFiles"] = np.int32(n_files)
            if not len(rows):
                continue
            gs = [snap.groups[r] for r in rows]
            g = f.create_group("Group")
            g["GroupPos"] = np.array([gr["centre_mpc"] for gr in gs]) / lf
            g["Group_M_Mean200"] = np.array([gr["m200m_msun"] for gr in gs], dtype=np.float32) / mf
            g["Group_R_Mean200"] = np.array([gr["r200m_mpc"] for gr in gs], dtype=np.float32) / lf
            g["Group_M_Crit500"] = np.array([gr.get("m500c_msun", 0.0) for gr in gs], dtype=np.float32) / mf
            g["Group_R_Crit500"] = np.array([gr.get("r500c_mpc", 0.0) for gr in gs], dtype=np.float32) / lf
            g["GroupLenType"] = np.zeros((len(gs), 6), dtype=np.int32)
    return _name(directory, f"fof_subhalo_tab_{number:03d}", 0, n_files)


# ----------------------------------------------------------------------------- Plummer haloes

def plummer_positions(rng: np.random.Generator, n: int, a_mpc: float, r_max_mpc: float) -> np.ndarray:
    """``n`` positions [Mpc] of a Plummer sphere of scale ``a_mpc`` truncated at ``r_max_mpc``
    (inverse CDF of M(<r) = M r^3 / (r^2 + a^2)^(3/2), restricted to r < r_max), centred on 0."""
    f_max = r_max_mpc**3 / (r_max_mpc**2 + a_mpc**2) ** 1.5
    u = rng.uniform(0.0, f_max, size=n)
    r = a_mpc / np.sqrt(u ** (-2.0 / 3.0) - 1.0)
    v = rng.normal(size=(n, 3))
    return r[:, None] * v / np.linalg.norm(v, axis=1, keepdims=True)


def plummer_density(r_mpc: np.ndarray, m_msun: float, a_mpc: float) -> np.ndarray:
    """Plummer density [Msun Mpc^-3] of total (untruncated) mass ``m_msun``."""
    return 3.0 * m_msun / (4.0 * np.pi * a_mpc**3) * (1.0 + (r_mpc / a_mpc) ** 2) ** -2.5


def plummer_enclosed(r_mpc: float, m_msun: float, a_mpc: float) -> float:
    """Plummer mass [Msun] inside ``r_mpc`` (untruncated mass ``m_msun``)."""
    return m_msun * r_mpc**3 / (r_mpc**2 + a_mpc**2) ** 1.5


def plummer_snapshot(rng: np.random.Generator, centres_mpc: list, *, n_gas: int = 4000, n_dm: int = 4000,
                     m_gas_msun: float = 1.6e13, m_dm_msun: float = 8.4e13, a_mpc: float = 0.3,
                     r_max_mpc: float = 3.0, box_mpc: float = 9.52, h: float = 0.7, redshift: float = 0.5,
                     u_kms2: float = 1e6, xe: float = 1.1, stars: int = 0) -> Snapshot:
    """Plummer haloes (gas and DM of scale ``a_mpc``, truncated at ``r_max_mpc``; the masses are
    those of the untruncated profiles) at ``centres_mpc`` (wrapped into the box), with their FoF
    groups: R200m := 1 Mpc and M200m the gas + DM mass inside it (R500c := 0.5 Mpc likewise)."""
    gas, dm, groups = [], [], []
    f_max = r_max_mpc**3 / (r_max_mpc**2 + a_mpc**2) ** 1.5
    for c in centres_mpc:
        gas.append(np.mod(plummer_positions(rng, n_gas, a_mpc, r_max_mpc) + c, box_mpc))
        dm.append(np.mod(plummer_positions(rng, n_dm, a_mpc, r_max_mpc) + c, box_mpc))
        groups.append({"centre_mpc": np.asarray(c, dtype=float),
                       "m200m_msun": plummer_enclosed(1.0, m_gas_msun + m_dm_msun, a_mpc),
                       "r200m_mpc": 1.0, "m500c_msun": plummer_enclosed(0.5, m_gas_msun + m_dm_msun, a_mpc),
                       "r500c_mpc": 0.5})
    gas_pos = np.concatenate(gas)
    rel = np.concatenate([np.mod(g - c + box_mpc / 2, box_mpc) - box_mpc / 2 for g, c in zip(gas, centres_mpc)])
    n = gas_pos.shape[0]
    return Snapshot(
        box_mpc=box_mpc, h=h, redshift=redshift, gas_pos_mpc=gas_pos,
        gas_mass_msun=np.full(n, m_gas_msun * f_max / n_gas), gas_u_kms2=np.full(n, u_kms2),
        gas_xe=np.full(n, xe), gas_density_msun_mpc3=plummer_density(np.linalg.norm(rel, axis=1), m_gas_msun, a_mpc),
        dm_pos_mpc=np.concatenate(dm), dm_mass_msun=m_dm_msun * f_max / n_dm, groups=groups,
        star_pos_mpc=rng.uniform(0, box_mpc, size=(stars, 3)) if stars else None,
    )

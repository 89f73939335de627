"""Tests of the HDF5 halo layout: :mod:`cmpipe.physics.hdf5io` and :mod:`cmpipe.physics.units`.

Oracles: round trips through the writer and reader (float64 round-off), files written directly
with h5py by :func:`write_raw` (independent of the writer) checked against hand-computed values
in plain SI numbers, and the error messages' contents (file name, halo id, field).
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cmpipe.physics import units
from cmpipe.physics.halo import DarkMatterParticles, GasParticles, Halo, HaloError, HaloProperties, HaloSource
from cmpipe.physics.hdf5io import HDF5HaloSource, read_halo_hdf5, read_halo_properties_hdf5, write_halo_hdf5

# Plain SI constants for hand computations (not astropy): CODATA values to the digits quoted.
M_P_KG = 1.67262192e-27
K_B_J_PER_K = 1.380649e-23
RTOL_CONST = 1e-8  # the truncated m_p above differs from CODATA 2022 by 3.6e-9 relative


# ----------------------------------------------------------------------------- fixtures


def make_halo(seed: int = 0, halo_id: int = 7, n_gas: int = 40, n_dm: int = 50, redshift: float = 0.3,
              optional: bool = True) -> Halo:
    """A small random halo in internal units; ``optional`` adds densities and smoothing lengths."""
    rng = np.random.default_rng(seed)
    centre = tuple(float(c) for c in rng.uniform(10.0, 90.0, 3))
    gas = GasParticles(
        pos_mpc=rng.normal(0.0, 0.8, (n_gas, 3)),
        mass_msun=rng.uniform(1e8, 2e8, n_gas),
        smoothing_length_mpc=rng.uniform(0.01, 0.2, n_gas) if optional else None,
        temperature_k=10 ** rng.uniform(6.0, 8.0, n_gas),
        density_msun_mpc3=10 ** rng.uniform(12.0, 15.0, n_gas) if optional else None,
    )
    dm = DarkMatterParticles(
        pos_mpc=rng.normal(0.0, 1.0, (n_dm, 3)),
        mass_msun=rng.uniform(1e9, 2e9, n_dm),
        smoothing_length_mpc=rng.uniform(0.02, 0.3, n_dm) if optional else None,
    )
    props = HaloProperties(halo_id=halo_id, m200m_msun=float(rng.uniform(1e14, 1e15)), r200m_mpc=float(rng.uniform(1.0, 2.5)),
                           centre_mpc=centre, redshift=redshift)
    return Halo(props=props, gas=gas, dm=dm).validate()


def assert_halo_close(got: Halo, want: Halo, rtol: float = 1e-12) -> None:
    """Equal up to float64 round-off: ``rtol`` everywhere; positions also get an absolute
    tolerance ``rtol * max|centre|``, the round-off of writing centre + relative and subtracting."""
    assert got.props.halo_id == want.props.halo_id
    for name in ("m200m_msun", "r200m_mpc", "redshift"):
        np.testing.assert_allclose(getattr(got.props, name), getattr(want.props, name), rtol=rtol, err_msg=name)
    np.testing.assert_allclose(got.props.centre_mpc, want.props.centre_mpc, rtol=rtol)
    atol = rtol * float(np.max(np.abs(want.props.centre_mpc)))
    for part in ("gas", "dm"):
        g, w = getattr(got, part), getattr(want, part)
        np.testing.assert_allclose(g.pos_mpc, w.pos_mpc, rtol=rtol, atol=atol, err_msg=f"{part} pos")
        np.testing.assert_allclose(g.mass_msun, w.mass_msun, rtol=rtol, err_msg=f"{part} mass")
        if w.smoothing_length_mpc is None:
            assert g.smoothing_length_mpc is None
        else:
            np.testing.assert_allclose(g.smoothing_length_mpc, w.smoothing_length_mpc, rtol=rtol, err_msg=f"{part} H")
    np.testing.assert_allclose(got.gas.temperature_k, want.gas.temperature_k, rtol=rtol)
    if want.gas.density_msun_mpc3 is None:
        assert got.gas.density_msun_mpc3 is None
    else:
        np.testing.assert_allclose(got.gas.density_msun_mpc3, want.gas.density_msun_mpc3, rtol=rtol)


_DROP = object()


def write_raw(path: Path, *, header: dict | None = None, halo: dict | None = None, gas: dict | None = None,
              dm: dict | None = None, drop_groups: tuple[str, ...] = ()) -> Path:
    """Write a halo file directly with h5py, independently of :func:`write_halo_hdf5`.

    Defaults: halo 7 at (50, 50, 50) Mpc, z = 0, h = 0.7, Mpc / Msun / support / K, two gas and
    two dark-matter particles. ``header``, ``halo``, ``gas`` and ``dm`` override entries; the
    value ``_DROP`` removes one.
    """
    hdr = {"Redshift": 0.0, "HubbleParam": 0.7, "LengthUnit": "Mpc", "Comoving": False, "MassUnit": "Msun",
           "InternalEnergyUnit": "(km/s)^2", "TemperatureUnit": "K", "SmoothingLengthConvention": "support",
           "Kernel": "WendlandC2"} | (header or {})
    hal = {"HaloID": 7, "M200m": 1e14, "R200m": 1.5, "Centre": [50.0, 50.0, 50.0]} | (halo or {})
    g0 = {"Coordinates": [[50.5, 50.0, 50.0], [49.0, 50.2, 50.1]], "Masses": [1e8, 2e8],
          "Temperature": [1e7, 2e7]} | (gas or {})
    g1 = {"Coordinates": [[50.0, 51.0, 50.0], [50.0, 50.0, 48.0]], "Masses": [1e9, 1e9]} | (dm or {})
    with h5py.File(path, "w") as f:
        for name, attrs in (("Header", hdr), ("Halo", hal)):
            if name in drop_groups:
                continue
            grp = f.create_group(name)
            for k, v in attrs.items():
                if v is not _DROP:
                    grp.attrs[k] = v
        for name, data in (("PartType0", g0), ("PartType1", g1)):
            if name in drop_groups:
                continue
            grp = f.create_group(name)
            for k, v in data.items():
                if v is not _DROP:
                    grp.create_dataset(k, data=np.asarray(v, dtype=np.float64))
    return path


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("comoving", [False, True])
@pytest.mark.parametrize("thermal", ["Temperature", "InternalEnergy"])
@pytest.mark.parametrize("convention", units.SMOOTHING_CONVENTIONS)
@pytest.mark.parametrize("mass_unit", units.MASS_UNITS)
@pytest.mark.parametrize("length_unit", units.LENGTH_UNITS)
def test_round_trip_every_unit_combination(tmp_path, length_unit, mass_unit, convention, thermal, comoving):
    """write -> read returns the same halo in internal units for every length unit x mass unit x
    smoothing convention x thermal field x comoving flag.

    Oracle: the halo written. Tolerance: rtol 1e-12 (float64 round-off of one multiply/divide
    pair); positions also atol 1e-12 * max|centre| (absolute frame, centre subtracted on read).
    """
    halo = make_halo(seed=1, redshift=0.7)
    path = write_halo_hdf5(tmp_path / "halo.hdf5", halo, length_unit=length_unit, mass_unit=mass_unit,
                           smoothing_convention=convention, thermal=thermal, h=0.6774, comoving=comoving)
    got = read_halo_hdf5(path)
    assert_halo_close(got, halo)
    with h5py.File(path, "r") as f:  # the file really is in the requested units and fields
        assert f["Header"].attrs["LengthUnit"] == length_unit
        assert f["Header"].attrs["MassUnit"] == mass_unit
        assert f["Header"].attrs["SmoothingLengthConvention"] == convention
        assert bool(f["Header"].attrs["Comoving"]) is comoving
        assert set(f["PartType0"]) == {"Coordinates", "Masses", "Density", "SmoothingLength", thermal}


def test_round_trip_without_optional_fields(tmp_path):
    """Density and SmoothingLength are written only when the halo has them and read back as None.

    Oracle: the halo written; rtol 1e-12 (positions atol 1e-12 * max|centre|).
    """
    halo = make_halo(seed=2, optional=False)
    path = write_halo_hdf5(tmp_path / "halo.h5", halo, length_unit="kpc/h", mass_unit="1e10 Msun/h")
    with h5py.File(path, "r") as f:
        assert set(f["PartType0"]) == {"Coordinates", "Masses", "Temperature"}
        assert set(f["PartType1"]) == {"Coordinates", "Masses"}
    assert_halo_close(read_halo_hdf5(path), halo)


def test_non_default_mean_molecular_weight_round_trip(tmp_path):
    """InternalEnergy written and read with the same mu = 1.22 returns the temperatures; read with
    the default mu = 0.588 they scale by 0.588 / 1.22. Oracle: T and the ratio; rtol 1e-12."""
    halo = make_halo(seed=3)
    path = write_halo_hdf5(tmp_path / "h.hdf5", halo, thermal="InternalEnergy", mean_molecular_weight=1.22)
    np.testing.assert_allclose(read_halo_hdf5(path, mean_molecular_weight=1.22).gas.temperature_k,
                               halo.gas.temperature_k, rtol=1e-12)
    np.testing.assert_allclose(read_halo_hdf5(path).gas.temperature_k, halo.gas.temperature_k * 0.588 / 1.22,
                               rtol=1e-12)


# ----------------------------------------------------------------------------- conversions vs hand values


def test_internal_energy_to_temperature_by_hand(tmp_path):
    """u [(km/s)^2] -> T = (2/3) u mu m_p / k_B, computed here in plain SI numbers.

    Oracle: u = 1e4 (km/s)^2 = 1e10 m^2/s^2 with mu = 0.588 gives 4.749e5 K (and u = 1e6 (km/s)^2,
    a cluster's ~1000 km/s sound speed, 4.749e7 K); mu = 1.22 scales T by 1.22/0.588.
    Tolerance: rtol 1e-8 (the SI constants here are truncated CODATA; astropy's differ by 4e-9).
    """
    u_kms2 = np.array([1e4, 1e6])
    path = write_raw(tmp_path / "u.hdf5", gas={"Temperature": _DROP, "InternalEnergy": u_kms2})
    t_hand = 2.0 / 3.0 * (u_kms2 * 1e6) * 0.588 * M_P_KG / K_B_J_PER_K
    assert t_hand[0] == pytest.approx(4.749e5, rel=1e-3)
    np.testing.assert_allclose(read_halo_hdf5(path).gas.temperature_k, t_hand, rtol=RTOL_CONST)
    np.testing.assert_allclose(read_halo_hdf5(path, mean_molecular_weight=1.22).gas.temperature_k,
                               t_hand * 1.22 / 0.588, rtol=RTOL_CONST)


@pytest.mark.parametrize(("convention", "factor"), [("support", 1.0), ("swift", 1.936492), ("pynbody", 2.0)])
def test_smoothing_length_conventions(tmp_path, convention, factor):
    """A stored smoothing length of 0.1 Mpc becomes H = factor * 0.1 Mpc.

    Oracle: the published factors (Gadget H itself; SWIFT kernel_gamma 1.936492 for the 3D
    Wendland C2 kernel; pynbody H = 2 h). Tolerance: rtol 1e-12.
    """
    path = write_raw(tmp_path / "s.hdf5", header={"SmoothingLengthConvention": convention},
                     gas={"SmoothingLength": [0.1, 0.2]}, dm={"SmoothingLength": [0.1, 0.3]})
    halo = read_halo_hdf5(path)
    np.testing.assert_allclose(halo.gas.smoothing_length_mpc, factor * np.array([0.1, 0.2]), rtol=1e-12)
    np.testing.assert_allclose(halo.dm.smoothing_length_mpc, factor * np.array([0.1, 0.3]), rtol=1e-12)


def test_comoving_kpc_per_h_at_z1_to_physical_mpc(tmp_path):
    """Comoving kpc/h at z = 1 with h = 0.7: 1 stored unit = 1 / (1000 * 0.7 * 2) Mpc = 1/1400 Mpc.

    Oracle, by hand: centre 35000 -> 25 Mpc; offsets (700, 0, -1400) -> (0.5, 0, -1) Mpc;
    R200m 2100 -> 1.5 Mpc; SmoothingLength 140 -> 0.1 Mpc; MassUnit 1e10 Msun/h: 0.07 -> 1e9 Msun;
    Density 1 (1e10 Msun/h) / (ckpc/h)^3 -> 1e10/0.7 * 1400^3 Msun / Mpc^3. Tolerance: rtol 1e-12
    (positions atol 1e-12 * 25 Mpc).
    """
    c = 35000.0
    path = write_raw(
        tmp_path / "c.hdf5",
        header={"LengthUnit": "kpc/h", "Comoving": True, "Redshift": 1.0, "HubbleParam": 0.7, "MassUnit": "1e10 Msun/h"},
        halo={"Centre": [c, c, c], "R200m": 2100.0, "M200m": 7000.0},
        gas={"Coordinates": [[c + 700, c, c - 1400], [c, c, c]], "Masses": [0.07, 0.07], "SmoothingLength": [140.0, 140.0],
             "Density": [1.0, 2.0]},
        dm={"Masses": [0.07, 0.14]},
    )
    halo = read_halo_hdf5(path)
    np.testing.assert_allclose(halo.props.centre_mpc, (25.0, 25.0, 25.0), rtol=1e-12)
    np.testing.assert_allclose(halo.props.r200m_mpc, 1.5, rtol=1e-12)
    np.testing.assert_allclose(halo.props.m200m_msun, 1e14, rtol=1e-12)
    np.testing.assert_allclose(halo.gas.pos_mpc, [[0.5, 0.0, -1.0], [0.0, 0.0, 0.0]], rtol=1e-12, atol=25e-12)
    np.testing.assert_allclose(halo.gas.smoothing_length_mpc, [0.1, 0.1], rtol=1e-12)
    np.testing.assert_allclose(halo.gas.mass_msun, [1e9, 1e9], rtol=1e-12)
    np.testing.assert_allclose(halo.dm.mass_msun, [1e9, 2e9], rtol=1e-12)
    np.testing.assert_allclose(halo.gas.density_msun_mpc3, np.array([1.0, 2.0]) * 1e10 / 0.7 * 1400.0**3, rtol=1e-12)


@pytest.mark.parametrize("box", [100.0, [100.0, 100.0, 100.0]], ids=["scalar", "vector"])
def test_periodic_wrap_with_box_size(tmp_path, box):
    """With BoxSize 100 Mpc, positions are wrapped to the minimum image around the centre.

    Oracle, by hand: centre (99, 50, 0.5); a particle at (1, 50, 99.5) on the far side of the box
    lands at (+2, 0, -1) next to the centre; one at (98, 51, 0.7) stays at (-1, 1, 0.2).
    Tolerance: atol 1e-12 Mpc (round-off of 100-sized numbers).
    """
    path = write_raw(tmp_path / "p.hdf5", halo={"Centre": [99.0, 50.0, 0.5], "BoxSize": box},
                     gas={"Coordinates": [[1.0, 50.0, 99.5], [98.0, 51.0, 0.7]]},
                     dm={"Coordinates": [[99.0, 50.0, 0.5], [49.0, 50.0, 0.5]]})
    halo = read_halo_hdf5(path)
    np.testing.assert_allclose(halo.gas.pos_mpc, [[2.0, 0.0, -1.0], [-1.0, 1.0, 0.2]], rtol=0, atol=1e-12)
    np.testing.assert_allclose(halo.dm.pos_mpc, [[0.0, 0.0, 0.0], [-50.0, 0.0, 0.0]], rtol=0, atol=1e-12)


def test_units_module_factors_and_errors():
    """Factors of :mod:`cmpipe.physics.units` against hand values (rtol 1e-15), and its errors
    (a ValueError and a HaloError) name the attribute and list every accepted value."""
    assert units.length_to_mpc("kpc/h", 0.7, 1.0, True) == pytest.approx(1 / 1400, rel=1e-15)
    assert units.length_to_mpc("Mpc", 0.7, 3.0, False) == 1.0
    assert units.mass_to_msun("1e10 Msun/h", 0.7) == pytest.approx(1e10 / 0.7, rel=1e-15)
    assert units.smoothing_length_to_support("swift") == 1.936492
    assert units.internal_energy_to_kelvin() == pytest.approx(2 / 3 * 1e6 * 0.588 * M_P_KG / K_B_J_PER_K, rel=RTOL_CONST)
    for call, name, accepted in (
        (lambda: units.length_to_mpc("pc", 0.7, 0.0, False), "LengthUnit", units.LENGTH_UNITS),
        (lambda: units.mass_to_msun("kg", 0.7), "MassUnit", units.MASS_UNITS),
        (lambda: units.smoothing_length_to_support("gadget"), "SmoothingLengthConvention", units.SMOOTHING_CONVENTIONS),
        (lambda: units.smoothing_length_to_support("swift", "CubicSpline"), "Kernel", units.KERNELS),
        (lambda: units.internal_energy_to_kelvin("erg/g"), "InternalEnergyUnit", units.INTERNAL_ENERGY_UNITS),
    ):
        with pytest.raises(units.UnitError) as info:
            call()
        assert isinstance(info.value, ValueError) and isinstance(info.value, HaloError)
        assert name in str(info.value)
        assert all(repr(a) in str(info.value) for a in accepted)
    with pytest.raises(units.UnitError, match="HubbleParam"):
        units.mass_to_msun("Msun/h", 0.0)


def test_import_is_cheap():
    """Importing cmpipe.physics, its halo and units modules loads neither h5py nor astropy.
    Oracle: ``sys.modules`` of a fresh interpreter."""
    root = Path(units.__file__).resolve().parents[2]
    code = ("import sys, cmpipe.physics, cmpipe.physics.halo, cmpipe.physics.units; "
            "bad = [m for m in ('h5py', 'astropy') if m in sys.modules]; assert not bad, bad")
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ----------------------------------------------------------------------------- source


def _three_file_dir(tmp_path: Path) -> tuple[Path, dict[int, Halo]]:
    d = tmp_path / "halos"
    d.mkdir()
    halos = {hid: make_halo(seed=hid, halo_id=hid, n_gas=10, n_dm=12) for hid in (11, 3, 5)}
    for name, hid, suffix in (("a", 11, ".hdf5"), ("b", 3, ".h5"), ("c", 5, ".hdf5")):
        write_halo_hdf5(d / f"{name}{suffix}", halos[hid], length_unit="Mpc/h", mass_unit="1e10 Msun/h")
    (d / "notes.txt").write_text("not a halo")  # ignored: wrong suffix
    (d / ".partial.hdf5").write_text("not a halo")  # ignored: hidden
    return d, halos


def test_source_over_directory(tmp_path):
    """HDF5HaloSource over a directory of three files: sorted ids, properties from attributes only
    (they still work after the particle groups are deleted, while load then fails), load, and
    unknown ids. Oracle: the halos written; rtol 1e-12 (positions atol 1e-12 * max|centre|)."""
    d, halos = _three_file_dir(tmp_path)
    src = HDF5HaloSource(d)
    assert isinstance(src, HaloSource)
    assert len(src) == 3
    assert src.halo_ids() == (3, 5, 11)
    assert_halo_close(src.load(3), halos[3])
    assert_halo_close(src.load(np.int64(11)), halos[11])

    with h5py.File(d / "c.hdf5", "r+") as f:  # halo 5: strip all particle data
        del f["PartType0"], f["PartType1"]
    fresh = HDF5HaloSource(d)
    props = fresh.properties(5)
    np.testing.assert_allclose(props.m200m_msun, halos[5].props.m200m_msun, rtol=1e-12)
    np.testing.assert_allclose(props.centre_mpc, halos[5].props.centre_mpc, rtol=1e-12)
    assert props.redshift == halos[5].props.redshift
    with pytest.raises(HaloError, match=r"c\.hdf5, halo 5, group /PartType0: missing"):
        fresh.load(5)

    with pytest.raises(KeyError, match=r"halo 99 .*halos"):
        src.properties(99)
    with pytest.raises(KeyError, match=r"halo 99 .*halos"):
        src.load(99)


def test_source_from_file_and_list(tmp_path):
    """A single file and a list of files give the same ids as the directory (oracle: ids written)."""
    d, _ = _three_file_dir(tmp_path)
    assert HDF5HaloSource(d / "b.h5").halo_ids() == (3,)
    assert HDF5HaloSource([d / "a.hdf5", str(d / "c.hdf5")]).halo_ids() == (5, 11)
    with pytest.raises(HaloError, match="missing.hdf5: file does not exist"):
        HDF5HaloSource(d / "missing.hdf5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HaloError, match="no .*hdf5"):
        HDF5HaloSource(tmp_path / "empty")


def test_source_duplicate_id_names_both_files(tmp_path):
    """Two files holding HaloID 3 is an error naming the id and both files."""
    d, halos = _three_file_dir(tmp_path)
    write_halo_hdf5(d / "z.hdf5", halos[3])
    with pytest.raises(HaloError, match=r"halo 3 appears in two files.*b\.h5.*z\.hdf5"):
        HDF5HaloSource(d).halo_ids()


def test_source_pickles(tmp_path):
    """pickle.dumps/loads gives an equivalent source, before and after its index is built.
    Oracle: the original source's ids and loads (exact equality)."""
    d, halos = _three_file_dir(tmp_path)
    src = HDF5HaloSource(d)
    before = pickle.loads(pickle.dumps(src))  # index not built yet
    assert src.halo_ids() == (3, 5, 11)
    after = pickle.loads(pickle.dumps(src))  # index built, travels with the pickle
    for copy in (before, after):
        assert copy.halo_ids() == (3, 5, 11)
        assert copy.properties(5) == src.properties(5)
        np.testing.assert_array_equal(copy.load(11).gas.pos_mpc, src.load(11).gas.pos_mpc)
    assert_halo_close(after.load(3), halos[3])


# ----------------------------------------------------------------------------- bad input

BAD_INPUTS = [
    # id, write_raw overrides, field expected in the message
    ("missing-dataset", {"dm": {"Masses": _DROP}}, "/PartType1/Masses"),
    ("missing-group", {"drop_groups": ("PartType1",)}, "/PartType1"),
    ("missing-header", {"drop_groups": ("Header",)}, "/Header"),
    ("nan-coordinates", {"gas": {"Coordinates": [[np.nan, 50.0, 50.0], [49.0, 50.0, 50.0]]}}, "/PartType0/Coordinates"),
    ("inf-coordinates", {"dm": {"Coordinates": [[np.inf, 50.0, 50.0], [49.0, 50.0, 50.0]]}}, "/PartType1/Coordinates"),
    ("negative-mass", {"gas": {"Masses": [1e8, -1e8]}}, "/PartType0/Masses"),
    ("zero-mass", {"dm": {"Masses": [0.0, 1e9]}}, "/PartType1/Masses"),
    ("negative-smoothing", {"dm": {"SmoothingLength": [0.1, -0.1]}}, "/PartType1/SmoothingLength"),
    ("mismatched-lengths", {"gas": {"Temperature": [1e7, 1e7, 1e7]}}, "/PartType0/Temperature"),
    ("mismatched-masses", {"dm": {"Masses": [1e9]}}, "/PartType1/Masses"),
    ("bad-coordinate-shape", {"gas": {"Coordinates": [[50.0, 50.0], [50.0, 50.0]]}}, "/PartType0/Coordinates"),
    ("unknown-length-unit", {"header": {"LengthUnit": "parsec"}}, "/Header/LengthUnit"),
    ("unknown-mass-unit", {"header": {"MassUnit": "kg"}}, "/Header/MassUnit"),
    ("unknown-convention", {"header": {"SmoothingLengthConvention": "gadget"}}, "/Header/SmoothingLengthConvention"),
    ("unknown-kernel", {"header": {"Kernel": "CubicSpline"}}, "/Header/Kernel"),
    ("unknown-temperature-unit", {"header": {"TemperatureUnit": "C"}}, "/Header/TemperatureUnit"),
    ("missing-length-unit", {"header": {"LengthUnit": _DROP}}, "/Header/LengthUnit"),
    ("missing-hubble", {"header": {"HubbleParam": _DROP}}, "/Header/HubbleParam"),
    ("missing-temperature-unit", {"header": {"TemperatureUnit": _DROP}}, "/Header/TemperatureUnit"),
    ("bad-comoving", {"header": {"Comoving": 2}}, "/Header/Comoving"),
    ("missing-thermal", {"gas": {"Temperature": _DROP}}, "InternalEnergy and Temperature"),
    ("both-thermal", {"gas": {"InternalEnergy": [1e4, 1e4]}}, "InternalEnergy and Temperature"),
    ("negative-temperature", {"gas": {"Temperature": [1e7, -5.0]}}, "/PartType0/Temperature"),
    ("bad-centre", {"halo": {"Centre": [1.0, 2.0]}}, "/Halo/Centre"),
    ("negative-r200m", {"halo": {"R200m": -1.0}}, "/Halo/R200m"),
    ("nan-m200m", {"halo": {"M200m": np.nan}}, "/Halo/M200m"),
]


@pytest.mark.parametrize(("overrides", "field"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_names_file_halo_and_field(tmp_path, overrides, field):
    """Each malformed file raises HaloError whose message contains the file name, ``halo 7`` and
    the field. Oracle: the message text (exact substrings)."""
    path = write_raw(tmp_path / "bad_halo.hdf5", **overrides)
    pattern = rf"bad_halo\.hdf5, halo 7\b.*{re.escape(field)}"
    with pytest.raises(HaloError, match=pattern):
        read_halo_hdf5(path)


def test_unknown_unit_lists_accepted_values(tmp_path):
    """An unknown LengthUnit raises a UnitError (a HaloError) naming the value and every accepted one."""
    path = write_raw(tmp_path / "u.hdf5", header={"LengthUnit": "parsec"})
    with pytest.raises(units.UnitError) as info:
        read_halo_properties_hdf5(path)
    msg = str(info.value)
    assert "u.hdf5, halo 7, attribute /Header/LengthUnit: value 'parsec'" in msg
    assert all(repr(a) in msg for a in units.LENGTH_UNITS)


def test_missing_halo_id_and_bytes_attributes(tmp_path):
    """Without /Halo/HaloID the message says ``halo <unknown>``; fixed-length byte-string unit
    attributes (as some Gadget writers store them) are accepted. Oracle: message text; rtol 1e-12."""
    path = write_raw(tmp_path / "noid.hdf5", halo={"HaloID": _DROP})
    with pytest.raises(HaloError, match=r"noid\.hdf5, halo <unknown>, attribute /Halo/HaloID: missing"):
        read_halo_hdf5(path)
    path = write_raw(tmp_path / "bytes.hdf5", header={"LengthUnit": np.bytes_(b"kpc"), "Comoving": 0})
    np.testing.assert_allclose(read_halo_hdf5(path).gas.pos_mpc[0], [0.5e-3, 0.0, 0.0], rtol=1e-12)


def test_not_hdf5_or_missing_file(tmp_path):
    """A text file and a missing path raise HaloError naming the file (no halo id is known yet)."""
    text = tmp_path / "halo_000.hdf5"
    text.write_text("this is not HDF5\n")
    for reader in (read_halo_hdf5, read_halo_properties_hdf5):
        with pytest.raises(HaloError, match=r"halo_000\.hdf5: not an HDF5 file"):
            reader(text)
        with pytest.raises(HaloError, match=r"nothere\.hdf5: file does not exist"):
            reader(tmp_path / "nothere.hdf5")


# ----------------------------------------------------------------------------- writer


def test_writer_refuses_to_overwrite(tmp_path):
    """An existing file is kept unless overwrite=True, which replaces it; no temporary files are
    left behind. Oracle: the HaloID read back and the directory listing."""
    path = tmp_path / "halo.hdf5"
    write_halo_hdf5(path, make_halo(seed=4, halo_id=1))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_halo_hdf5(path, make_halo(seed=5, halo_id=2))
    assert read_halo_properties_hdf5(path).halo_id == 1
    write_halo_hdf5(path, make_halo(seed=5, halo_id=2), overwrite=True)
    assert read_halo_properties_hdf5(path).halo_id == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["halo.hdf5"]


def test_writer_rejects_bad_arguments(tmp_path):
    """Unknown units, conventions or thermal fields raise ValueError before any file is created."""
    halo = make_halo(seed=6)
    for kwargs, name in (({"length_unit": "pc"}, "LengthUnit"), ({"mass_unit": "kg"}, "MassUnit"),
                         ({"smoothing_convention": "gadget"}, "SmoothingLengthConvention"),
                         ({"thermal": "Entropy"}, "thermal")):
        with pytest.raises(ValueError, match=name):
            write_halo_hdf5(tmp_path / "x.hdf5", halo, **kwargs)
    assert list(tmp_path.iterdir()) == []

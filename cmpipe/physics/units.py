"""Unit strings of halo files and their factors to cmpipe's internal units.

cmpipe works in physical Mpc, Msun, K and Msun Mpc^-3 (see :mod:`cmpipe.physics.halo`), with
smoothing lengths given as the kernel's compact support radius ``H``. Files name their units
with short strings (the ``/Header`` attributes of :mod:`cmpipe.physics.hdf5io`); this module
turns each string into one multiplicative factor, so that ``internal = stored * factor``.

=============================  ======================================  ==============================
attribute                      accepted values                         factor to internal units
=============================  ======================================  ==============================
``LengthUnit``                 ``Mpc``, ``kpc``, ``Mpc/h``, ``kpc/h``  to physical Mpc: / h for the
                                                                       ``/h`` units, * a = 1/(1+z)
                                                                       when comoving
``MassUnit``                   ``Msun``, ``Msun/h``, ``1e10 Msun``,    to Msun: / h for the ``/h``
                               ``1e10 Msun/h``                         units
``SmoothingLengthConvention``  ``support``, ``swift``, ``pynbody``     stored length to ``H``: 1,
                                                                       1.936492 (3D Wendland C2), 2
``Kernel``                     ``WendlandC2``                          selects the ``swift`` factor
``InternalEnergyUnit``         ``(km/s)^2``                            u to T: (gamma - 1) mu m_p / k_B
``TemperatureUnit``            ``K``                                   1
=============================  ======================================  ==============================

Every function raises :class:`UnitError` (a :class:`~cmpipe.physics.halo.HaloError`, hence a
``ValueError``) that names the attribute, the value it got and the accepted values. Physical
constants come from :mod:`astropy.constants`, imported only when a temperature factor is asked for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

from cmpipe.physics.halo import HaloError

__all__ = [
    "GAMMA_MONATOMIC",
    "INTERNAL_ENERGY_UNITS",
    "KERNELS",
    "LENGTH_UNITS",
    "MASS_UNITS",
    "MU_PRIMORDIAL_IONISED",
    "SMOOTHING_CONVENTIONS",
    "SWIFT_KERNEL_GAMMA",
    "TEMPERATURE_UNITS",
    "UnitError",
    "check_choice",
    "internal_energy_to_kelvin",
    "length_to_mpc",
    "mass_to_msun",
    "smoothing_length_to_support",
]

#: Accepted ``LengthUnit`` strings and their size in Mpc (before the 1/h and comoving factors).
_LENGTH_MPC: dict[str, tuple[float, bool]] = {
    "Mpc": (1.0, False),
    "kpc": (1e-3, False),
    "Mpc/h": (1.0, True),
    "kpc/h": (1e-3, True),
}
#: Accepted ``MassUnit`` strings and their size in Msun (before the 1/h factor).
_MASS_MSUN: dict[str, tuple[float, bool]] = {
    "Msun": (1.0, False),
    "Msun/h": (1.0, True),
    "1e10 Msun": (1e10, False),
    "1e10 Msun/h": (1e10, True),
}
LENGTH_UNITS: tuple[str, ...] = tuple(_LENGTH_MPC)
MASS_UNITS: tuple[str, ...] = tuple(_MASS_MSUN)
INTERNAL_ENERGY_UNITS: tuple[str, ...] = ("(km/s)^2",)
TEMPERATURE_UNITS: tuple[str, ...] = ("K",)
KERNELS: tuple[str, ...] = ("WendlandC2",)
SMOOTHING_CONVENTIONS: tuple[str, ...] = ("support", "swift", "pynbody")

#: H / h for SWIFT's 3D Wendland C2 kernel (SWIFT's ``kernel_gamma``; swiftsimio's h = 2 sigma).
SWIFT_KERNEL_GAMMA: float = 1.936492
#: Ratio of specific heats of a monatomic ideal gas.
GAMMA_MONATOMIC: float = 5.0 / 3.0
#: Mean molecular weight of fully ionised primordial gas with X = 0.76: 4 / (3 + 5 X) = 0.588.
MU_PRIMORDIAL_IONISED: float = 0.588

#: (km/s)^2 in (m/s)^2.
_KMS2_IN_SI = 1e6


class UnitError(HaloError):
    """An unknown, missing or malformed unit attribute; the message lists the accepted values."""


def _accepted(accepted: Sequence[str]) -> str:
    return ", ".join(repr(a) for a in accepted)


def check_choice(name: str, value: object, accepted: Sequence[str]) -> str:
    """Return ``value`` if it is one of the ``accepted`` strings, else raise :class:`UnitError`.

    Parameters
    ----------
    name : str
        Attribute name, used in the message (e.g. ``"LengthUnit"``).
    value : object
        The value found.
    accepted : sequence of str
        The accepted values, listed in the message.
    """
    if not isinstance(value, str) or value not in accepted:
        raise UnitError(f"{name} = {value!r} is not accepted; accepted values: {_accepted(accepted)}")
    return value


def _check_h(h: float) -> float:
    try:
        hf = float(h)
    except (TypeError, ValueError):
        raise UnitError(f"HubbleParam = {h!r} must be a finite number > 0") from None
    if not math.isfinite(hf) or hf <= 0:
        raise UnitError(f"HubbleParam = {h!r} must be a finite number > 0")
    return hf


def length_to_mpc(unit: str, h: float, redshift: float = 0.0, comoving: bool = False) -> float:
    """Factor turning a stored length into physical Mpc.

    Parameters
    ----------
    unit : str
        One of :data:`LENGTH_UNITS`: ``"Mpc"``, ``"kpc"``, ``"Mpc/h"``, ``"kpc/h"``.
    h : float
        Dimensionless Hubble parameter (H0 / 100 km/s/Mpc), used by the ``/h`` units.
    redshift : float
        Redshift of the snapshot, used when ``comoving``; must be > -1.
    comoving : bool
        Whether the stored lengths are comoving: they are then multiplied by a = 1 / (1 + z).

    Returns
    -------
    float
        ``physical_mpc = stored * factor``.
    """
    size, per_h = _LENGTH_MPC[check_choice("LengthUnit", unit, LENGTH_UNITS)]
    hf = _check_h(h)
    factor = size / hf if per_h else size
    if comoving:
        try:
            z = float(redshift)
        except (TypeError, ValueError):
            raise UnitError(f"Redshift = {redshift!r} must be a finite number > -1") from None
        if not math.isfinite(z) or z <= -1:
            raise UnitError(f"Redshift = {redshift!r} must be a finite number > -1")
        factor /= 1.0 + z
    return factor


def mass_to_msun(unit: str, h: float) -> float:
    """Factor turning a stored mass into Msun.

    Parameters
    ----------
    unit : str
        One of :data:`MASS_UNITS`: ``"Msun"``, ``"Msun/h"``, ``"1e10 Msun"``, ``"1e10 Msun/h"``.
    h : float
        Dimensionless Hubble parameter, used by the ``/h`` units.

    Returns
    -------
    float
        ``msun = stored * factor``.
    """
    size, per_h = _MASS_MSUN[check_choice("MassUnit", unit, MASS_UNITS)]
    hf = _check_h(h)
    return size / hf if per_h else size


def smoothing_length_to_support(convention: str, kernel: str = "WendlandC2") -> float:
    """Factor turning a stored smoothing length into the kernel's support radius ``H``.

    Parameters
    ----------
    convention : str
        One of :data:`SMOOTHING_CONVENTIONS`:

        - ``"support"``: Gadget-2/3/4, the stored value is ``H`` itself (factor 1);
        - ``"swift"``: SWIFT / swiftsimio ``h`` (twice the kernel's standard deviation);
          ``H = 1.936492 h`` for the 3D Wendland C2 kernel;
        - ``"pynbody"``: ``H = 2 h``.
    kernel : str
        One of :data:`KERNELS` (only ``"WendlandC2"`` for now).

    Returns
    -------
    float
        ``H = stored * factor`` (same length unit).
    """
    check_choice("Kernel", kernel, KERNELS)
    conv = check_choice("SmoothingLengthConvention", convention, SMOOTHING_CONVENTIONS)
    return {"support": 1.0, "swift": SWIFT_KERNEL_GAMMA, "pynbody": 2.0}[conv]


@lru_cache(maxsize=1)
def _mp_over_kb_si() -> float:
    from astropy import constants  # lazy: astropy costs ~0.5 s to import

    return float(constants.m_p.si.value / constants.k_B.si.value)


def internal_energy_to_kelvin(
    unit: str = "(km/s)^2",
    mean_molecular_weight: float = MU_PRIMORDIAL_IONISED,
    gamma: float = GAMMA_MONATOMIC,
) -> float:
    """Factor turning a specific internal energy into a temperature in K.

    ``T = (gamma - 1) u mu m_p / k_B`` for an ideal gas, with ``m_p`` and ``k_B`` from
    :mod:`astropy.constants`.

    Parameters
    ----------
    unit : str
        One of :data:`INTERNAL_ENERGY_UNITS` (only ``"(km/s)^2"`` for now).
    mean_molecular_weight : float
        mu, in proton masses; default 0.588 (fully ionised primordial gas, X = 0.76).
    gamma : float
        Ratio of specific heats; default 5/3.

    Returns
    -------
    float
        ``T_K = u * factor``.
    """
    check_choice("InternalEnergyUnit", unit, INTERNAL_ENERGY_UNITS)
    mu = float(mean_molecular_weight)
    if not math.isfinite(mu) or mu <= 0:
        raise UnitError(f"mean_molecular_weight = {mean_molecular_weight!r} must be a finite number > 0")
    g = float(gamma)
    if not math.isfinite(g) or g <= 1:
        raise UnitError(f"gamma = {gamma!r} must be a finite number > 1")
    return (g - 1.0) * mu * _mp_over_kb_si() * _KMS2_IN_SI

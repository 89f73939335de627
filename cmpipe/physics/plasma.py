"""The intracluster plasma: composition, and each gas particle's SZ and X-ray weights.

A fully ionised primordial plasma of hydrogen mass fraction ``X`` (helium ``Y = 1 - X``):

* electrons per proton mass: ``n_e m_p / rho = X + Y / 2`` (0.880 for X = 0.76);
* ions' ``sum Z^2 n_i m_p / rho = X + Y`` (1.000);
* mean molecular weight ``mu = 1 / (2 X + 3 Y / 4)`` (0.588);
* electron pressure ``P_e = n_e k T``, a fraction ``(X + Y/2) mu`` (0.518) of the thermal pressure.

The observables (``../shared/SPEC.md`` section 3, paper eqs. 4-7):

* Compton-y: ``y = sigma_T / (m_e c^2) int P_e dl``;
* bolometric free-free emissivity ``eps = 1.4e-27 T^(1/2) n_e sum(Z^2 n_i) g_B`` erg s^-1 cm^-3
  (T in K; Sarazin 1988), and surface brightness ``S_X = int eps dl / (4 pi (1 + z)^4)``
  in erg s^-1 cm^-2 sr^-1.

For SPH, a field ``A`` integrates along the sightline as ``sum_j A_j (m_j / rho_j) W2(R, H_j)``,
so each particle carries a *weight* ``A_j V_j`` (``V_j = m_j / rho_j`` its volume) that the
projection backends spread with the projected kernel [Mpc^-2].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["BREMSSTRAHLUNG_CGS", "PlasmaConstants", "Plasma", "constants", "gas_sz_xray_weights"]

#: Free-free emissivity prefactor [erg s^-1 cm^3 K^-1/2] (Rybicki & Lightman 1979; Sarazin 1988).
BREMSSTRAHLUNG_CGS = 1.4e-27


@dataclass(frozen=True)
class PlasmaConstants:
    """Physical constants in the units cmpipe's weights use (from astropy.constants)."""

    proton_mass_g: float
    boltzmann_kev_per_k: float
    msun_g: float
    mpc_cm: float
    #: sigma_T / (m_e c^2) times one Mpc [cm^3 keV^-1 Mpc^-1] (4.017e-3)
    compton_y_cm3_per_kev_mpc: float


@lru_cache(maxsize=1)
def constants() -> PlasmaConstants:
    """The constants, computed once from astropy."""
    from astropy import constants as c
    from astropy import units as u

    sigma_t_over_mec2 = (c.sigma_T / (c.m_e * c.c**2)).to(u.cm**3 / u.keV / u.Mpc)
    return PlasmaConstants(
        proton_mass_g=float(c.m_p.to_value(u.g)),
        boltzmann_kev_per_k=float(c.k_B.to_value(u.keV / u.K)),
        msun_g=float(c.M_sun.to_value(u.g)),
        mpc_cm=float(u.Mpc.to(u.cm)),
        compton_y_cm3_per_kev_mpc=float(sigma_t_over_mec2.value),
    )


@dataclass(frozen=True)
class Plasma:
    """Composition of a fully ionised primordial plasma.

    Attributes
    ----------
    hydrogen_mass_fraction : float
        ``X`` [dimensionless].
    gaunt_factor : float
        Frequency-averaged free-free Gaunt factor ``g_B`` [dimensionless].
    """

    hydrogen_mass_fraction: float = 0.76
    gaunt_factor: float = 1.2

    @property
    def helium_mass_fraction(self) -> float:
        """``Y = 1 - X``."""
        return 1.0 - self.hydrogen_mass_fraction

    @property
    def electrons_per_proton_mass(self) -> float:
        """``n_e m_p / rho = X + Y / 2``."""
        return self.hydrogen_mass_fraction + 0.5 * self.helium_mass_fraction

    @property
    def ion_z2_per_proton_mass(self) -> float:
        """``sum_i Z_i^2 n_i m_p / rho = X + Y``."""
        return self.hydrogen_mass_fraction + self.helium_mass_fraction

    @property
    def mean_molecular_weight(self) -> float:
        """``mu = 1 / (2 X + 3 Y / 4)``."""
        return 1.0 / (2.0 * self.hydrogen_mass_fraction + 0.75 * self.helium_mass_fraction)

    @property
    def electron_pressure_fraction(self) -> float:
        """``P_e / P_th = (X + Y / 2) mu``."""
        return self.electrons_per_proton_mass * self.mean_molecular_weight


def gas_sz_xray_weights(
    mass_msun: np.ndarray,
    density_msun_mpc3: np.ndarray,
    temperature_k: np.ndarray,
    plasma: Plasma,
    redshift: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-particle weights whose projection gives the Compton-y and X-ray maps.

    Parameters
    ----------
    mass_msun, density_msun_mpc3, temperature_k : (N,) float64
        Gas particle mass [Msun], SPH density [physical Msun Mpc^-3], temperature [K].
    plasma : Plasma
        Composition.
    redshift : float
        Redshift (cosmological dimming ``(1 + z)^-4`` of the surface brightness).

    Returns
    -------
    y_weight : (N,) float64
        ``sigma_T/(m_e c^2) P_e V`` [Mpc^2]: projected with the kernel [Mpc^-2] gives y.
    sx_weight : (N,) float64
        ``eps V / (4 pi (1+z)^4)`` [erg s^-1 cm^-2 sr^-1 Mpc^2]: projected gives S_X.
    """
    k = constants()
    rho_cgs = np.asarray(density_msun_mpc3, dtype=np.float64) * (k.msun_g / k.mpc_cm**3)
    n_e = plasma.electrons_per_proton_mass * rho_cgs / k.proton_mass_g  # cm^-3
    n_z2 = plasma.ion_z2_per_proton_mass * rho_cgs / k.proton_mass_g  # cm^-3
    temperature = np.asarray(temperature_k, dtype=np.float64)
    volume_mpc3 = np.asarray(mass_msun, dtype=np.float64) / np.asarray(density_msun_mpc3, dtype=np.float64)
    p_e_kev_cm3 = n_e * k.boltzmann_kev_per_k * temperature
    y_weight = k.compton_y_cm3_per_kev_mpc * p_e_kev_cm3 * volume_mpc3
    emissivity = BREMSSTRAHLUNG_CGS * np.sqrt(temperature) * n_e * n_z2 * plasma.gaunt_factor
    sx_weight = emissivity * volume_mpc3 * k.mpc_cm / (4.0 * np.pi * (1.0 + redshift) ** 4)
    return y_weight, sx_weight

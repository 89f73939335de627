"""Instrument effects on the condition maps (y, S_X, kappa): beam, noise, photon counts, masks.

Applied by the generator to each image's ``sz_y``, ``xray_sb`` and ``kappa`` channels after projection,
before they are written to the store (the targets, gas and DM, stay clean). Every effect is off
by default and is one value of the ``instrument`` config section
(:class:`cmpipe.config.InstrumentConfig`); the section is part of the store's fingerprint, so a
store records which effects made it. Each image draws its noise from its own seed (the store's
``seed`` of the image), so a store is reproducible and resumable.

Effects, in the order applied:

1. **Beam** on y: a circular Gaussian of FWHM ``beam_fwhm_arcmin`` [arcmin] at the observing
   redshift ``redshift`` (angular-diameter distance from colossus), FFT convolution with
   periodic wrapping (the maps fall to the background at their edges).
2. **White noise** on y: Gaussian, ``y_white_noise`` rms per pixel [dimensionless y].
3. **Correlated noise** on y: white noise smoothed by a Gaussian of ``y_red_noise_scale_mpc``
   [Mpc] (sigma), rescaled to ``y_red_noise`` rms per pixel [dimensionless y].
4. **Photon counts** on S_X: the expected counts per pixel are ``(S_X + xray_background) *
   Omega_pix * A_eff * t_exp / E_photon`` with ``Omega_pix`` the pixel's solid angle [sr] at
   ``redshift``, ``xray_effective_area_cm2``, ``xray_exposure_s``, mean photon energy
   ``xray_photon_energy_kev``; a Poisson draw, converted back to surface brightness with the
   expected background subtracted (unbiased: the mean of the noisy map is the true map).
5. **Point-source mask** on both conditions: ``mask_sources`` discs of radius
   ``mask_radius_mpc`` [Mpc] at uniformly random positions are set to 0.
6. **Shape noise** on kappa (where ``kappa`` is a channel): white Gaussian noise of rms
   ``kappa_shape_noise / sqrt(kappa_galaxy_density_arcmin2 * Omega_pix)`` per pixel, with
   ``Omega_pix`` the pixel's solid angle [arcmin^2] at the lens redshift ``lensing.z_lens``
   (:func:`kappa_noise_rms`). Drawn last, from its own stream, so turning it on leaves the
   other channels' draws unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from cmpipe.physics.cosmology import ARCMIN_RAD, pixel_arcmin

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import CosmologyConfig, InstrumentConfig, LensingConfig

#: keV in erg.
KEV_ERG = 1.602176634e-9


def gaussian_filter_fft(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """``image`` (H, W) convolved with a unit-integral Gaussian of ``sigma_px`` pixels (periodic)."""
    if sigma_px <= 0:
        return image.copy()
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.rfftfreq(image.shape[1])[None, :]
    transfer = np.exp(-2.0 * (math.pi * sigma_px) ** 2 * (kx**2 + ky**2))
    return np.fft.irfft2(np.fft.rfft2(image) * transfer, s=image.shape)


def beam_sigma_px(fwhm_arcmin: float, pixel_mpc: float, redshift: float, cosmology: CosmologyConfig) -> float:
    """The beam's Gaussian sigma in pixels."""
    return fwhm_arcmin / (2.0 * math.sqrt(2.0 * math.log(2.0))) / pixel_arcmin(pixel_mpc, redshift, cosmology)


def correlated_noise(shape: tuple[int, int], rms: float, scale_px: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise smoothed on ``scale_px`` pixels (sigma), rescaled to ``rms`` per pixel (exactly
    in expectation: the smoothing kernel's sum of squares is divided out)."""
    white = rng.standard_normal(shape)
    smooth = gaussian_filter_fft(white, scale_px)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    transfer = np.exp(-2.0 * (math.pi * scale_px) ** 2 * (kx**2 + ky**2))
    var = float(np.mean(transfer**2))  # variance of the smoothed unit white noise (Parseval)
    return smooth * (rms / math.sqrt(var))


def xray_counts_per_unit(icfg: InstrumentConfig, pixel_mpc: float, cosmology: CosmologyConfig) -> float:
    """Expected counts per pixel per unit of S_X [counts / (erg s^-1 cm^-2 sr^-1)]."""
    omega = (pixel_arcmin(pixel_mpc, icfg.redshift, cosmology) * ARCMIN_RAD) ** 2
    return omega * icfg.xray_effective_area_cm2 * icfg.xray_exposure_s / (icfg.xray_photon_energy_kev * KEV_ERG)


def source_mask(shape: tuple[int, int], n: int, radius_px: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean (H, W): True inside ``n`` discs of ``radius_px`` at uniform random centres."""
    mask = np.zeros(shape, dtype=bool)
    iy, ix = np.indices(shape)
    for cy, cx in rng.uniform(0, 1, size=(n, 2)) * np.array(shape):
        mask |= (iy + 0.5 - cy) ** 2 + (ix + 0.5 - cx) ** 2 <= radius_px**2
    return mask


def kappa_noise_rms(
    icfg: InstrumentConfig, cosmology: CosmologyConfig, lensing: LensingConfig, pixel_mpc: float
) -> float:
    """rms per pixel of the shape noise on kappa: ``sigma_e / sqrt(n_gal Omega_pix)`` [dimensionless].

    ``sigma_e = instrument.kappa_shape_noise`` (per component), ``n_gal =
    instrument.kappa_galaxy_density_arcmin2`` [arcmin^-2], ``Omega_pix`` the pixel's solid angle
    [arcmin^2] at ``lensing.z_lens``.
    """
    omega_arcmin2 = pixel_arcmin(pixel_mpc, lensing.z_lens, cosmology) ** 2
    return float(icfg.kappa_shape_noise / math.sqrt(icfg.kappa_galaxy_density_arcmin2 * omega_arcmin2))


def instrument_active(icfg: InstrumentConfig) -> bool:
    """Whether any effect is on."""
    return bool(icfg.beam_fwhm_arcmin > 0 or icfg.y_white_noise > 0 or icfg.y_red_noise > 0
                or icfg.xray_exposure_s > 0 or icfg.mask_sources > 0 or icfg.kappa_shape_noise > 0)


def apply_instrument(
    maps: np.ndarray, channels: Sequence[str], icfg: InstrumentConfig, cosmology: CosmologyConfig,
    lensing: LensingConfig, pixel_mpc: float, seed: int,
) -> np.ndarray:
    """The maps of one image with the instrument effects on their condition channels.

    Parameters
    ----------
    maps : ndarray, shape (C, H, W)
        Physical maps in the order of ``channels`` (:data:`cmpipe.store.schema.CHANNEL_UNITS`).
    channels : sequence of str
    icfg : InstrumentConfig
        The effects (the ``instrument`` section).
    cosmology : CosmologyConfig
        For angular scales.
    lensing : LensingConfig
        Its ``z_lens`` sets the pixel's solid angle of the shape noise on ``kappa``.
    pixel_mpc : float
        Pixel side [Mpc].
    seed : int
        The image's seed: every random draw comes from ``default_rng([seed, 0x1257])``.

    Returns
    -------
    ndarray
        A new array (float64); ``maps`` itself is unchanged. Channels other than ``sz_y``,
        ``xray_sb`` and ``kappa`` are returned as they are.
    """
    out = np.array(maps, dtype=np.float64, copy=True)
    if not instrument_active(icfg):
        return out
    rng = np.random.default_rng([int(seed), 0x1257])
    shape = out.shape[-2:]
    if "sz_y" in channels:
        c = list(channels).index("sz_y")
        if icfg.beam_fwhm_arcmin > 0:
            out[c] = gaussian_filter_fft(out[c], beam_sigma_px(icfg.beam_fwhm_arcmin, pixel_mpc, icfg.redshift,
                                                              cosmology))
        if icfg.y_white_noise > 0:
            out[c] += icfg.y_white_noise * rng.standard_normal(shape)
        if icfg.y_red_noise > 0:
            out[c] += correlated_noise(shape, icfg.y_red_noise, icfg.y_red_noise_scale_mpc / pixel_mpc, rng)
    if "xray_sb" in channels and icfg.xray_exposure_s > 0:
        c = list(channels).index("xray_sb")
        per_unit = xray_counts_per_unit(icfg, pixel_mpc, cosmology)
        expected = (np.maximum(out[c], 0.0) + icfg.xray_background) * per_unit
        out[c] = rng.poisson(expected) / per_unit - icfg.xray_background
    if icfg.mask_sources > 0:
        mask = source_mask(shape, icfg.mask_sources, icfg.mask_radius_mpc / pixel_mpc, rng)
        for name in ("sz_y", "xray_sb"):
            if name in channels:
                out[list(channels).index(name)][mask] = 0.0
    if "kappa" in channels and icfg.kappa_shape_noise > 0:
        kappa_rng = np.random.default_rng([int(seed), 0x1257, 0x4B])
        rms = kappa_noise_rms(icfg, cosmology, lensing, pixel_mpc)
        out[list(channels).index("kappa")] += rms * kappa_rng.standard_normal(shape)
    return out

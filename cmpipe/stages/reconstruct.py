"""Reconstruct gas and dark-matter maps from SZ and X-ray FITS images (no Ray).

:func:`reconstruct` reads a Compton-y map and an X-ray surface-brightness map (and a
convergence map, for models trained with a ``kappa`` condition), puts them on the model's grid,
draws posterior samples of (gas_sigma, dm_sigma) with a trained checkpoint and writes the
posterior mean and std (and optionally the samples) as FITS, with a PNG quick look beside it.
The maps have a physical-length WCS about the halo, or a celestial one (RA/Dec, any projection
astropy.wcs reads) with the cluster's redshift: those are reprojected onto the model grid's
TAN projection at the cluster, its pixel ``model pixel [Mpc] / D_A(z)`` with colossus' D_A in
the model's cosmology (:mod:`cmpipe.store.fits`, "Maps on the sky").
:func:`export_store_fits` writes images of an image store as FITS files, the inputs
:func:`reconstruct` takes.

The model's grid
----------------
The model sees ``resolution x resolution`` maps, block means of the store's ``npix x npix``
maps of ``pixel_mpc``: its pixel is ``maps.pixel_mpc * maps.npix / resolution`` [Mpc]. The
checkpoint's hyper-parameters record ``resolution`` but not the store's ``maps.pixel_mpc`` and
``maps.npix``; they are read, in this order, from ``hyperparameters["maps"]`` (if a later
checkpoint format records it), the run directory's ``config.resolved.yaml`` (accepted only if
its store fingerprint equals the checkpoint's, so its ``maps`` section is the store's), or the
caller's ``pixel_mpc`` (the model grid's pixel [Mpc]).

Out of distribution
-------------------
Every reconstruction compares its inputs on the model grid with the training split
(:func:`check_distribution`): per condition channel, the fraction of pixels whose transformed
value lies outside the train split's ``[min, max]`` (the normalisation the checkpoint records),
and whether the map's total (sum times pixel area [unit Mpc^2]) lies outside the range of the
train images' totals (``normalisation["totals"]``; unknown for checkpoints trained before it
was recorded). More than :data:`OOD_MAX_FRACTION` (1 %) of a map's pixels, or a total outside
the range, flags the inputs: a one-line warning, or with ``strict`` a refusal
(:class:`OutOfDistributionError`) before sampling. The FITS headers record ``OODFLAG``,
``OODMAXF``, ``OODFRAC1``/``OODFRAC2`` (sz_y, xray_sb), ``TOTALY``/``TOTALX`` and
``OODTOTY``/``OODTOTX`` (undefined when unknown).

The output FITS
---------------
Each HDU with maps (``MEAN``, ``STD``, ``SAMPLES``; the empty primary repeats the keywords but the
WCS, ``BUNIT`` and ``ARCMINPX``) carries:

==========================  ===================================================================
keyword                     value
==========================  ===================================================================
WCS                         sky inputs: TAN at the cluster (``CRVAL``), north up, east left,
                            the input's frame (``RADESYS``), ``CDELT`` [deg] = ``PIXMPC`` /
                            ``DA_MPC``, and the grid in Mpc as alternate WCS ``P``; physical
                            inputs: linear ``X``, ``Y`` in Mpc (:mod:`cmpipe.store.fits`)
``BUNIT``                   ``''`` (dimensionless: ``Sigma / (rho_bar L)``, the model's units)
                            or ``'solMass Mpc-2'`` (``physical_units``)
``RHOLn``                   ``rho_bar L`` of plane n [Msun Mpc^-2]: mean density of the
                            component at ``ZMODEL`` times the projection depth ``DEPTHMPC``
``MSUNMPCn``, ``MSUNSRn``   Msun Mpc^-2 and Msun sr^-1 per data unit of plane n
                            (``MSUNSRn = MSUNMPCn * DA_MPC**2``; without a redshift, no
                            ``MSUNSRn``)
``REDSHIFT``, ``DA_MPC``    the cluster's redshift and angular diameter distance [Mpc]
``ARCMINPX``, ``PIXMPC``    the model pixel [arcmin] and [Mpc]
``H0``, ``OM0``, ``OB0``,   the cosmology, named as ``astropy.cosmology.FlatLambdaCDM``'s
``TCMB0``, ``NEFF``         parameters (massless neutrinos: ``m_nu=0``), and ``SIGMA8``,
                            ``NS``, ``ZMODEL``
``CONDS``                   the model's conditions, in order
==========================  ===================================================================

``astropy.nddata.CCDData.read(path, hdu="MEAN")`` reads the cube with its unit and WCS;
``reproject`` takes a plane or the cube with the celestial part of the WCS:
``reproject_exact((hdu.data, WCS(hdu.header).celestial), target)``.

Outputs are checked before any work (:func:`cmpipe.store.outputs.check_output_file`): never an
input, and an existing file (the FITS or its PNG) is kept unless ``overwrite``.

Every path (checkpoint or run directory, inputs, outputs) may be an object-store URL
(:mod:`cmpipe.store.location`): the checkpoint is read through fsspec, each output written
whole (one PUT), and a missing bucket or unknown scheme is an error naming the URL before any
work.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cmpipe.store.fits import (
    FITS_UNITS, FitsError, SkyImage, check_and_resample, header_redshift, read_input_fits, reproject_to_grid,
    write_map_fits,
)
from cmpipe.store.location import AnyPath, as_path, check_reachable, save_figure
from cmpipe.store.schema import TARGET_CHANNELS as _TARGET

__all__ = [
    "OOD_MAX_FRACTION",
    "DistributionCheck",
    "ModelGrid",
    "OutOfDistributionError",
    "SURFACE_DENSITY_UNIT",
    "TargetUnits",
    "check_distribution",
    "cosmology_cards",
    "export_split_fits",
    "export_store_fits",
    "model_grid",
    "reconstruct",
    "run",
    "target_units",
]

logger = logging.getLogger(__name__)


#: Default threshold of the out-of-distribution check: a condition map with more than this
#: fraction of its pixels outside the training split's range is flagged (:func:`check_distribution`).
OOD_MAX_FRACTION = 0.01
# Slack of the pixel range check, as a fraction of the range (rounding of block means).
_OOD_RANGE_TOLERANCE = 1e-6
# FITS keyword letter of each condition's total flag (OODTOTY, OODTOTX) and value (TOTALY, TOTALX).
_TOTAL_LETTER = {"sz_y": "Y", "xray_sb": "X"}


class OutOfDistributionError(ValueError):
    """Inputs outside the training distribution, refused under ``strict`` (the message names the
    files and what is out of range)."""


@dataclasses.dataclass(frozen=True)
class DistributionCheck:
    """How an observed cluster's condition maps compare with the training split.

    Attributes
    ----------
    channels : tuple of str
        The condition channels, in the order of the maps (``sz_y``, ``xray_sb``).
    fractions : tuple of (float or None)
        Per channel, the fraction of model-grid pixels whose transformed value (the store's
        ``normalisation``: ``log10(max(x, floor))`` or ``x``) lies outside the train split's
        ``[min, max]``; None if the checkpoint records no range for the channel.
    totals : tuple of float
        Per channel, the map's sum times the pixel area [channel unit x Mpc^2].
    total_ranges : tuple of ((float, float) or None)
        Per channel, the range of that total over the training images (the normalisation's
        ``totals``); None (unknown) for checkpoints trained before it was recorded.
    max_fraction : float
        The threshold on ``fractions``.
    """

    channels: tuple[str, ...]
    fractions: tuple[float | None, ...]
    totals: tuple[float, ...]
    total_ranges: tuple[tuple[float, float] | None, ...]
    max_fraction: float = OOD_MAX_FRACTION

    def total_outside(self, i: int) -> bool | None:
        """Whether channel ``i``'s total lies outside the training range (None: unknown)."""
        rng = self.total_ranges[i]
        if rng is None:
            return None
        slack = _OOD_RANGE_TOLERANCE * max(abs(rng[0]), abs(rng[1]))  # rounding of the sums
        return not rng[0] - slack <= self.totals[i] <= rng[1] + slack

    @property
    def flagged(self) -> bool:
        """A fraction above :attr:`max_fraction` or a total outside the training range."""
        return bool(self.reasons())

    def reasons(self) -> list[str]:
        """What is out of distribution, one phrase each (empty if nothing)."""
        out = []
        for i, name in enumerate(self.channels):
            f = self.fractions[i]
            if f is not None and f > self.max_fraction:
                out.append(f"{100 * f:.3g} % of {name} pixels outside the training range")
            if self.total_outside(i):
                lo, hi = self.total_ranges[i]
                out.append(f"total {name} {self.totals[i]:.4g} Mpc^2 outside the training halos' {lo:.4g} to {hi:.4g}")
        return out

    def header(self) -> dict[str, tuple[Any, str]]:
        """FITS cards: ``OODFLAG``, ``OODMAXF``, ``OODFRACn`` (channel n, 1-based), ``TOTALY``/
        ``TOTALX`` and ``OODTOTY``/``OODTOTX`` (undefined value when unknown)."""
        cards: dict[str, tuple[Any, str]] = {
            "OODFLAG": (self.flagged, "inputs outside the training distribution"),
            "OODMAXF": (float(self.max_fraction), "OOD threshold on OODFRACn"),
        }
        for i, name in enumerate(self.channels):
            f = self.fractions[i]
            cards[f"OODFRAC{i + 1}"] = (None if f is None else float(f), f"frac of {name} pixels out of train range")
            letter = _TOTAL_LETTER.get(name, str(i + 1))
            cards[f"TOTAL{letter}"] = (float(self.totals[i]), f"[Mpc^2] sum of {name} x pixel area")
            cards[f"OODTOT{letter}"] = (self.total_outside(i), f"{name} total out of range; blank: unknown")
        return cards

    def columns(self) -> dict[str, Any]:
        """Columns of ``reconstructions.csv``: ``ood``, ``ood_frac_<channel>``,
        ``total_<channel>_mpc2``, ``ood_total_<channel>`` (``unknown`` when not known)."""
        cols: dict[str, Any] = {"ood": self.flagged}
        for i, name in enumerate(self.channels):
            f, outside = self.fractions[i], self.total_outside(i)
            cols[f"ood_frac_{name}"] = "unknown" if f is None else f"{f:.6g}"
            cols[f"total_{name}_mpc2"] = f"{self.totals[i]:.6g}"
            cols[f"ood_total_{name}"] = "unknown" if outside is None else outside
        return cols


def check_distribution(
    condition: np.ndarray, channels: Sequence[str], normalisation: dict[str, Any] | None, pixel_mpc: float,
    max_fraction: float = OOD_MAX_FRACTION,
) -> DistributionCheck:
    """Compare condition maps on the model's grid with the training split's recorded ranges.

    Parameters
    ----------
    condition : ndarray, shape (C, R, R)
        Physical maps on the model grid (units of :data:`cmpipe.store.fits.FITS_UNITS`).
    channels : sequence of str
        The ``C`` channel names.
    normalisation : dict or None
        The checkpoint's (the store's) ``normalisation``: per channel ``floor``, ``min``,
        ``max`` of the transformed train maps, and (newer stores) ``totals``.
    pixel_mpc : float
        The model grid's pixel [Mpc] (the totals are sums times ``pixel_mpc**2``).
    max_fraction : float
        Pixel fraction above which a channel is out of distribution.

    Returns
    -------
    DistributionCheck
    """
    condition = np.asarray(condition, dtype=np.float64)
    norm = normalisation or {}
    stats = norm.get("channels") or {}
    totals_rec = norm.get("totals") or {}
    fractions, totals, ranges = [], [], []
    for i, name in enumerate(channels):
        x = condition[i]
        st = stats.get(name)
        if st is None or st.get("min") is None or st.get("max") is None:
            fractions.append(None)
        else:
            lo, hi = float(st["min"]), float(st["max"])
            floor = st.get("floor") if norm.get("kind") == "log" else None
            with np.errstate(divide="ignore"):
                t = np.log10(np.maximum(x, floor)) if floor is not None else x
            slack = _OOD_RANGE_TOLERANCE * max(hi - lo, abs(hi), 1e-300)
            fractions.append(float(np.mean((t < lo - slack) | (t > hi + slack))))
        totals.append(float(x.sum() * float(pixel_mpc) ** 2))
        rec = totals_rec.get(name)
        ranges.append(None if rec is None else (float(rec["min"]), float(rec["max"])))
    return DistributionCheck(tuple(channels), tuple(fractions), tuple(totals), tuple(ranges), float(max_fraction))


@dataclasses.dataclass(frozen=True)
class ModelGrid:
    """The model's grid: ``npix`` pixels of ``pixel_mpc`` [Mpc] per side, where the value came
    from (``source``), and the run's config if one was found (``config``, else None)."""

    npix: int
    pixel_mpc: float
    source: str
    config: Any = None


def _run_config(checkpoint_path: AnyPath, fingerprint: str | None) -> Any:
    """The run directory's resolved config if its store fingerprint matches the checkpoint's
    (read through the path's ``open``: the run directory may be a URL)."""
    import yaml

    from cmpipe.config import RESOLVED_CONFIG_NAME, config_from_dict
    from cmpipe.stages.generate import store_fingerprint

    for directory in (checkpoint_path.parent.parent, checkpoint_path.parent):
        path = directory / RESOLVED_CONFIG_NAME
        if path.is_file():
            cfg = config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")) or {}, str(path))
            if fingerprint is None or store_fingerprint(cfg) == fingerprint:
                return cfg
            logger.warning("%s describes another store than %s: its maps section is not used", path, checkpoint_path)
            return None
    return None


def _checkpoint_meta(path: AnyPath) -> dict[str, Any]:
    """``store_fingerprint`` and ``hyperparameters`` of a checkpoint: from its JSON sidecar, else
    from the checkpoint itself."""
    import json

    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if "hyperparameters" in meta and "store_fingerprint" in meta:
            return meta
    from cmpipe.model.training import load_checkpoint

    state = load_checkpoint(path)
    return {"hyperparameters": state.hyperparameters, "store_fingerprint": state.store_fingerprint}


def model_grid(checkpoint: str | os.PathLike[str], hyperparameters: dict[str, Any] | None = None,
               pixel_mpc: float | None = None) -> ModelGrid:
    """The model grid's size and pixel [Mpc] of a checkpoint (see the module docstring).

    Parameters
    ----------
    checkpoint : str or path-like
        A checkpoint file or a run directory.
    hyperparameters : dict, optional
        The checkpoint's (read from it if not given).
    pixel_mpc : float, optional
        The model grid's pixel [Mpc], used when the checkpoint's run records none; when it does,
        a different value is an error.

    Raises
    ------
    FitsError
        If no pixel size is found and none is given, or the given one contradicts the record.
    """
    from cmpipe.model.inference import resolve_checkpoint

    path = resolve_checkpoint(checkpoint)
    meta = _checkpoint_meta(path)
    if hyperparameters is None:
        hyperparameters = meta["hyperparameters"]
    fingerprint = meta["store_fingerprint"]
    resolution = int(hyperparameters["resolution"])
    recorded, source = None, None
    maps = hyperparameters.get("maps")
    if isinstance(maps, dict) and "pixel_mpc" in maps and "npix" in maps:
        recorded, source = float(maps["pixel_mpc"]) * int(maps["npix"]) / resolution, f"{path} hyperparameters"
    cfg = _run_config(path, fingerprint)
    if recorded is None and cfg is not None:
        recorded = cfg.maps.pixel_mpc * cfg.maps.npix / resolution
        source = f"{path.parent.parent} config.resolved.yaml (maps.pixel_mpc * maps.npix / resolution)"
    if recorded is not None:
        if pixel_mpc is not None and abs(float(pixel_mpc) - recorded) > 1e-9 * recorded:
            raise FitsError(f"pixel_mpc={pixel_mpc} contradicts the model grid's {recorded:g} Mpc from {source}")
        return ModelGrid(resolution, recorded, source, cfg)
    if pixel_mpc is None:
        raise FitsError(
            f"{path}: the checkpoint records no map pixel size (no hyperparameters['maps'], no matching "
            "config.resolved.yaml in its run directory); pass pixel_mpc, the model grid's pixel [Mpc] "
            "(the store's maps.pixel_mpc * maps.npix / model.resolution)"
        )
    return ModelGrid(resolution, float(pixel_mpc), "the pixel_mpc argument", None)


def _default_infer_cfg(cfg: Any, n_samples: int) -> Any:
    from cmpipe.config import load_config

    infer = cfg.infer if cfg is not None else load_config("demo").infer
    return dataclasses.replace(infer, n_samples=int(n_samples))


#: Quick-look titles of the condition maps.
_INPUT_TITLES = {"sz_y": "log10 y (input)", "xray_sb": "log10 S_X [erg s-1 cm-2 sr-1] (input)",
                 "kappa": "log10 kappa (input)"}


def _quicklook(path: AnyPath, inputs: np.ndarray, mean: np.ndarray, std: np.ndarray, pixel_mpc: float,
               conditions: Sequence[str] = ("sz_y", "xray_sb")) -> AnyPath:
    """PNG of the first two inputs, posterior means and stds (log10 of positive values), written whole."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    first = [(inputs[i], _INPUT_TITLES.get(c, f"log10 {c} (input)")) for i, c in enumerate(conditions[:2])]
    panels = [
        *first, *([(np.zeros_like(inputs[0]), "log10 (no second condition)")] if len(first) < 2 else []),
        (mean[0], "log10 mean gas_sigma"), (mean[1], "log10 mean dm_sigma"),
        (std[0] / np.where(mean[0] > 0, mean[0], np.nan), "std / mean gas_sigma"),
        (std[1] / np.where(mean[1] > 0, mean[1], np.nan), "std / mean dm_sigma"),
    ]
    half = 0.5 * inputs.shape[-1] * pixel_mpc
    fig = Figure(figsize=(10.5, 7.2), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3).ravel()
    for ax, (data, title) in zip(axes[[0, 3, 1, 2, 4, 5]], panels):
        data = np.asarray(data, dtype=np.float64)
        if title.startswith("log10"):
            positive = data[data > 0]
            floor = positive.min() if positive.size else 1.0
            data = np.log10(np.maximum(data, floor))
        im = ax.imshow(data, origin="lower", extent=(-half, half, -half, half), cmap="magma")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x [Mpc]")
        fig.colorbar(im, ax=ax, shrink=0.85)
    save_figure(fig, path, dpi=90)
    return path


def reconstruct(
    checkpoint: str | os.PathLike[str],
    sz_path: str | os.PathLike[str] | None,
    xray_path: str | os.PathLike[str] | None,
    out_path: str | os.PathLike[str],
    *,
    kappa_path: str | os.PathLike[str] | None = None,
    n_samples: int = 50,
    seed: int = 0,
    pixel_mpc: float | None = None,
    save_samples: bool = False,
    device: str = "cpu",
    infer_cfg: Any = None,
    quicklook: bool = True,
    sz_hdu: int | str | None = None,
    xray_hdu: int | str | None = None,
    kappa_hdu: int | str | None = None,
    overwrite: bool = False,
    sampler: Any = None,
    strict: bool = False,
    max_ood_fraction: float = OOD_MAX_FRACTION,
    warn: bool = True,
    redshift: float | None = None,
    centre: tuple[float, float] | None = None,
    cosmology: Any = None,
    physical_units: bool = False,
) -> dict[str, Any]:
    """Posterior (gas_sigma, dm_sigma) maps of one cluster from its y and X-ray FITS maps (and
    its convergence map, for a model trained with a ``kappa`` condition).

    Parameters
    ----------
    checkpoint : str or path-like
        A checkpoint file or a run directory (its latest checkpoint).
    sz_path, xray_path, kappa_path : str or path-like, optional
        FITS maps of the model's conditions (its ``channels.cond``; by default ``sz_y`` and
        ``xray_sb``): ``sz_y`` [dimensionless], ``xray_sb`` [erg s^-1 cm^-2 sr^-1, or any unit
        convertible to it], ``kappa`` [dimensionless]. Each with a physical-length WCS centred
        (world (0, 0)) on the halo, or with a celestial WCS (RA/Dec, any projection astropy.wcs
        reads) and the cluster's ``redshift``; all maps of one kind. A map the model does not
        take, or a missing one it does, is an error.
    out_path : str or path-like
        The output FITS: empty primary HDU, ``MEAN`` and ``STD`` ``(2, R, R)`` (gas_sigma,
        dm_sigma; std with ddof 1), and with ``save_samples`` ``SAMPLES`` ``(S, 2, R, R)``
        float32; each with the model grid's WCS (celestial, TAN at the cluster, for sky inputs),
        ``BUNIT``, the factors to Msun Mpc^-2 and Msun sr^-1, the cosmology and the redshift
        (the module docstring lists the keywords).
    n_samples : int
        Posterior samples (>= 2 for a std).
    seed : int
        The samples depend only on ``image_seed(seed, 0)`` (as image 0 of ``cmpipe infer``).
    pixel_mpc : float, optional
        The model grid's pixel [Mpc], needed only when the checkpoint's run does not record it
        (:func:`model_grid`).
    save_samples : bool
    device : str
    infer_cfg : cmpipe.config.InferConfig, optional
        Sampler settings; default: the run's ``infer`` section (its config.resolved.yaml), else
        the demo config's; ``n_samples`` is always set from the argument.
    quicklook : bool
        Write ``<out_path stem>.png``.
    sz_hdu, xray_hdu, kappa_hdu : int or str, optional
        HDUs to read (default: the first with data).
    overwrite : bool
        Replace an existing ``out_path`` (and its PNG); never an input, whatever this says.
    sampler : cmpipe.model.inference.PosteriorSampler, optional
        An already loaded sampler of ``checkpoint`` (many clusters, one model:
        :func:`cmpipe.pipeline.reconstruct.reconstruct_many`); default: loaded here.
    strict : bool
        Refuse inputs outside the training distribution (:func:`check_distribution`) instead of
        reconstructing them with a warning.
    max_ood_fraction : float
        The pixel fraction above which a map is out of distribution (default 1 %).
    warn : bool
        Log a one-line warning for out-of-distribution inputs (the batch driver logs its own);
        False: the note goes into ``messages`` instead (each said once).
    redshift : float, optional
        The cluster's redshift; default: ``REDSHIFT`` (else ``Z``) of the input headers. Needed
        for sky maps (the angular diameter distance), optional for physical ones (then it gives
        ``ARCMINPX`` and the factor to Msun sr^-1).
    centre : (float, float), optional
        The cluster centre [deg] (longitude, latitude in the frame of the first map's WCS: RA,
        Dec for an equatorial map); default: the sky position of that map's central pixel.
    cosmology : cmpipe.config.CosmologyConfig, optional
        Used when the checkpoint's run records none (a bare checkpoint); the run's own wins.
    physical_units : bool
        Write surface densities in Msun Mpc^-2 (``BUNIT = 'solMass Mpc-2'``) instead of the
        model's dimensionless units (needs a cosmology).

    Returns
    -------
    dict
        ``fits`` (path), ``png`` (path or None), ``messages`` (list of str: what was done to the
        inputs), ``model_pixel_mpc``, ``resolution``, ``grid_source``, ``checkpoint``, ``ood``
        (:class:`DistributionCheck`, also written to the FITS headers), ``redshift``, ``wcs``
        (the output's celestial ``astropy.wcs.WCS``, None for physical inputs).

    Raises
    ------
    cmpipe.store.outputs.OutputError
        Before any work: ``out_path`` (or its PNG) is an input, exists without ``overwrite``,
        or cannot be written.
    FitsError
        Unusable inputs (not FITS, units, scale, field of view, sky maps without a redshift,
        maps that do not match the model's conditions) or no model pixel size.
    OutOfDistributionError
        With ``strict``, inputs outside the training distribution (before sampling).
    """
    from cmpipe.model.inference import checkpoint_conditions, load_posterior_sampler, resolve_checkpoint

    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 for a posterior std; got {n_samples}")
    given = {"sz_y": (sz_path, sz_hdu), "xray_sb": (xray_path, xray_hdu), "kappa": (kappa_path, kappa_hdu)}
    check_reachable(as_path(checkpoint), "--checkpoint")
    named = {_INPUT_OPTION[c]: path for c, (path, _) in given.items() if path is not None}
    out_path, png_path = _check_outputs(out_path, named, quicklook, overwrite)
    ckpt = resolve_checkpoint(checkpoint)
    hyperparameters = sampler.hyperparameters if sampler is not None else _checkpoint_meta(ckpt)["hyperparameters"]
    grid = model_grid(ckpt, hyperparameters=hyperparameters, pixel_mpc=pixel_mpc)
    conditions = checkpoint_conditions(hyperparameters)
    inputs = _condition_inputs(conditions, given, ckpt)

    messages: list[str] = [f"model grid: {grid.npix}x{grid.npix} pixels of {grid.pixel_mpc:g} Mpc ({grid.source})"]
    cosmo = _model_cosmology(grid, cosmology, messages)
    placed = _place_inputs(inputs, grid, cosmo, redshift, centre, messages)
    ood = check_distribution(placed.condition[0], conditions, hyperparameters.get("normalisation"), grid.pixel_mpc,
                             max_ood_fraction)
    if ood.flagged:
        _flag(ood, ", ".join(str(p) for p, _ in inputs.values()), out_path, messages, strict=strict, warn=warn)

    if infer_cfg is None:
        infer_cfg = _default_infer_cfg(grid.config, n_samples)
    if sampler is None:
        sampler = load_posterior_sampler(ckpt, infer_cfg, device)
    if sampler.resolution != grid.npix:
        raise FitsError(f"{ckpt}: sampler resolution {sampler.resolution} != model grid {grid.npix}")
    samples = _sample(sampler, placed.condition, n_samples, seed)
    units = target_units(grid, hyperparameters, cosmo, placed.redshift, physical=physical_units)
    samples = samples * units.data_scale[None, :, None, None]
    mean, std = samples.mean(axis=0), samples.std(axis=0, ddof=1)

    extra = {"CKPT": (ckpt.name, "checkpoint"), "NSAMPLES": (int(n_samples), "posterior samples"),
             "SEED": (int(seed), "cmpipe reconstruct seed"), "SAMPLER": (infer_cfg.sampler, "sampler"),
             "STEPS": (int(infer_cfg.steps), "sampler steps"),
             "CONDS": (",".join(conditions), "model conditions, in order"), **ood.header(), **units.header()}
    _write_outputs(out_path, samples, mean, std, grid, redshift=placed.redshift, cosmology=cosmo, extra=extra,
                   save_samples=save_samples, overwrite=overwrite, sky_wcs=placed.wcs, bunit=units.bunit)
    png = _quicklook(png_path, placed.condition[0], mean, std, grid.pixel_mpc, conditions) if quicklook else None
    for m in messages:  # returned: the caller shows them (cmpipe reconstruct prints each once)
        logger.debug("%s", m)
    return {"fits": out_path, "png": png, "messages": messages, "model_pixel_mpc": grid.pixel_mpc,
            "resolution": grid.npix, "grid_source": grid.source, "checkpoint": ckpt, "ood": ood,
            "redshift": placed.redshift, "wcs": placed.wcs}


#: The option naming each condition's input map (in messages).
_INPUT_OPTION = {"sz_y": "--sz", "xray_sb": "--xray", "kappa": "--kappa"}


def _condition_inputs(conditions: Sequence[str], given: Mapping[str, tuple[Any, Any]],
                      ckpt: AnyPath) -> dict[str, tuple[Any, Any]]:
    """``{condition: (path, hdu)}`` in the model's condition order.

    Raises
    ------
    FitsError
        A condition without a map, a map the model does not take, or a condition cmpipe
        cannot read from FITS.
    """
    takes = ", ".join(conditions)
    unknown = [c for c in conditions if c not in given]
    if unknown:
        raise FitsError(f"{ckpt}: the model's conditions ({takes}) include {unknown}, which cmpipe reconstruct "
                        "takes no FITS map for")
    missing = [c for c in conditions if given[c][0] is None]
    if missing:
        what = ", ".join(f"{_INPUT_OPTION[c]} ({c})" for c in missing)
        raise FitsError(f"{ckpt}: the model was trained with the conditions {takes}: give {what}")
    extra = [c for c, (path, _) in given.items() if path is not None and c not in conditions]
    if extra:
        what = ", ".join(f"{_INPUT_OPTION[c]} ({c})" for c in extra)
        raise FitsError(f"{ckpt}: the model takes no {what} condition (its conditions: {takes}); drop {what}")
    return {c: given[c] for c in conditions}


def _model_cosmology(grid: ModelGrid, cosmology: Any, messages: list[str]) -> Any:
    """The cosmology of the model's units and distances: the run's (its config.resolved.yaml),
    else the caller's (None when neither is known)."""
    if grid.config is not None:
        if cosmology is not None and cosmology != grid.config.cosmology:
            messages.append("cosmology: the checkpoint's run's (config.resolved.yaml), not the differing one given")
        return grid.config.cosmology
    if cosmology is not None:
        messages.append("cosmology: the one given (--config); the checkpoint's run records none")
    return cosmology


@dataclasses.dataclass(frozen=True)
class _Placed:
    """The condition maps on the model grid ``(1, C, R, R)``, the redshift used (None if none),
    and the grid's celestial WCS (None for physical inputs)."""

    condition: np.ndarray
    redshift: float | None
    wcs: Any = None


def _place_inputs(inputs: Mapping[str, tuple[Any, Any]], grid: ModelGrid, cosmology: Any, redshift: float | None,
                  centre: tuple[float, float] | None, messages: list[str]) -> _Placed:
    """Read the condition maps and put them on the model's grid: physical maps as
    :func:`cmpipe.store.fits.check_and_resample`; sky maps reprojected onto the grid's TAN
    projection at the cluster (pixel ``grid.pixel_mpc / D_A(z)``:
    :func:`cmpipe.store.fits.reproject_to_grid`)."""
    images = {}
    for name, (path, hdu) in inputs.items():
        image = read_input_fits(path, hdu=hdu, channel=name)
        if image.channel is not None and image.channel != name:
            messages.append(f"{path}: CHANNEL is {image.channel!r}, used as {name}")
        images[name] = image
    sky = [isinstance(im, SkyImage) for im in images.values()]
    if any(sky) and not all(sky):
        kinds = ", ".join(f"{im.path} ({'sky' if s else 'physical'})" for im, s in zip(images.values(), sky))
        raise FitsError(f"the input maps mix celestial and physical-length WCSs ({kinds}): give them all on the sky "
                        "or all in Mpc")
    z = _redshift(redshift, images, required=all(sky), messages=messages)
    wcs = _sky_grid(grid, images, cosmology, z, centre, messages) if all(sky) else None
    maps = []
    for name, image in images.items():
        if wcs is not None:
            out, notes = reproject_to_grid(image, channel=name, expected_unit=FITS_UNITS[name], grid_wcs=wcs,
                                           model_npix=grid.npix, model_pixel_mpc=grid.pixel_mpc)
        else:
            out, notes = check_and_resample(image, channel=name, expected_unit=FITS_UNITS[name],
                                            model_pixel_mpc=grid.pixel_mpc, model_npix=grid.npix)
        maps.append(out)
        messages.extend(notes)
    return _Placed(np.stack(maps)[None], z, wcs)


def _redshift(given: float | None, images: Mapping[str, Any], *, required: bool, messages: list[str]) -> float | None:
    """The cluster's redshift: ``given``, else the maps' ``REDSHIFT`` (or ``Z``) keyword, which
    must agree between maps.

    Raises
    ------
    FitsError
        Maps that disagree, or none known where ``required`` (sky maps), or a negative one.
    """
    recorded = {im.path: z for im in images.values() if (z := header_redshift(im.header)) is not None}
    if given is not None:
        z = float(given)
        differing = {p: v for p, v in recorded.items() if abs(v - z) > 1e-9 * max(1.0, z)}
        if differing:
            messages.append(f"redshift {z:g} given; the headers' {differing} are not used")
    elif len(set(recorded.values())) > 1:
        raise FitsError(f"the input maps disagree on the redshift ({recorded}); pass --redshift")
    elif recorded:
        z = next(iter(recorded.values()))
    elif required:
        names = ", ".join(im.path for im in images.values())
        raise FitsError(f"{names}: maps on the sky need the cluster's redshift (for the angular diameter distance): "
                        "pass --redshift or write a REDSHIFT keyword in the headers")
    else:
        return None
    if not np.isfinite(z) or z < 0 or (required and z == 0):
        raise FitsError(f"redshift must be {'> 0 for maps on the sky' if required else '>= 0'}; got {z}")
    return z


def _sky_grid(grid: ModelGrid, images: Mapping[str, Any], cosmology: Any, z: float,
              centre: tuple[float, float] | None, messages: list[str]) -> Any:
    """The model grid's celestial WCS: TAN at the cluster centre with pixels of
    ``grid.pixel_mpc / D_A(z)`` (colossus, :func:`cmpipe.physics.cosmology.angular_diameter_distance_mpc`)."""
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import wcs_to_celestial_frame

    from cmpipe.physics.cosmology import angular_diameter_distance_mpc
    from cmpipe.store.fits import sky_grid_wcs

    if cosmology is None:
        raise FitsError("maps on the sky need a cosmology for the angular diameter distance, and the checkpoint's "
                        "run records none: pass a config (--config) with the model's cosmology section")
    first = next(iter(images.values()))
    d_a = angular_diameter_distance_mpc(z, cosmology)
    pixel_deg = float(np.degrees(grid.pixel_mpc / d_a))
    if centre is None:
        where = first.centre()
        said = f"the central pixel of {first.path}"
    else:
        where = SkyCoord(float(centre[0]), float(centre[1]), unit="deg", frame=wcs_to_celestial_frame(first.wcs))
        said = "given"
    wcs = sky_grid_wcs(grid.npix, pixel_deg, where, first.wcs)
    messages.append(f"sky grid: z = {z:g}, D_A = {d_a:.6g} Mpc, model pixel {grid.pixel_mpc:g} Mpc = "
                    f"{pixel_deg * 60:.5g} arcmin; centre ({wcs.wcs.crval[0]:.6f}, {wcs.wcs.crval[1]:.6f}) deg "
                    f"({said})")
    return wcs


#: ``BUNIT`` of surface density maps (``--physical-units``).
SURFACE_DENSITY_UNIT = "solMass Mpc-2"


@dataclasses.dataclass(frozen=True)
class TargetUnits:
    """How the output maps relate to physical surface density.

    Attributes
    ----------
    rho_l_msun_mpc2 : tuple of float, or None
        Per target (gas_sigma, dm_sigma), the model's unit ``rho_bar L`` [Msun Mpc^-2]: the
        cosmic mean density of the component at the training redshift (``cosmology.redshift``)
        times the projection depth; None without a cosmology or depth.
    physical : bool
        The maps are written in Msun Mpc^-2 (else in the model's dimensionless units).
    d_a_mpc : float or None
        Angular diameter distance at the cluster's redshift [Mpc] (None without one, or at z = 0).
    depth_mpc : float or None
        The projection depth L [Mpc].
    cosmology : cmpipe.config.CosmologyConfig or None
    """

    rho_l_msun_mpc2: tuple[float, ...] | None
    physical: bool
    d_a_mpc: float | None
    depth_mpc: float | None
    cosmology: Any

    @property
    def data_scale(self) -> np.ndarray:
        """Factor from the model's units to the written values, per target."""
        return np.asarray(self.rho_l_msun_mpc2) if self.physical else np.ones(len(_TARGET))

    @property
    def bunit(self) -> str:
        """``BUNIT`` of the written maps (``''``: dimensionless)."""
        return SURFACE_DENSITY_UNIT if self.physical else ""

    def msun_mpc2(self) -> tuple[float, ...] | None:
        """Per target, Msun Mpc^-2 per unit of the written values."""
        if self.rho_l_msun_mpc2 is None:
            return None
        return tuple(1.0 for _ in _TARGET) if self.physical else self.rho_l_msun_mpc2

    def msun_sr(self) -> tuple[float, ...] | None:
        """Per target, Msun sr^-1 per unit of the written values (``msun_mpc2 * D_A^2``: one
        steradian at the cluster spans ``D_A^2`` Mpc^2)."""
        per_mpc2 = self.msun_mpc2()
        if per_mpc2 is None or self.d_a_mpc is None:
            return None
        return tuple(f * self.d_a_mpc**2 for f in per_mpc2)

    def header(self) -> dict[str, tuple[Any, str]]:
        """FITS cards: per plane n ``RHOLn``, ``MSUNMPCn``, ``MSUNSRn``; ``DA_MPC``,
        ``DEPTHMPC``, and the cosmology (``H0``, ``OM0``, ``OB0``, ``TCMB0``, ``NEFF``,
        ``SIGMA8``, ``NS``, ``ZMODEL``)."""
        cards: dict[str, tuple[Any, str]] = {}
        factors = (self.rho_l_msun_mpc2, self.msun_mpc2(), self.msun_sr())
        for i, name in enumerate(_TARGET):
            n = i + 1
            for key, values, comment in (("RHOL", factors[0], f"[Msun Mpc-2] rho_bar L, model unit of {name}"),
                                         ("MSUNMPC", factors[1], f"[Msun Mpc-2] per data unit of {name}"),
                                         ("MSUNSR", factors[2], f"[Msun sr-1] per data unit of {name}")):
                if values is not None:
                    cards[f"{key}{n}"] = (float(values[i]), comment)
        if self.d_a_mpc is not None:
            cards["DA_MPC"] = (float(self.d_a_mpc), "[Mpc] angular diameter distance at REDSHIFT")
        if self.depth_mpc is not None:
            cards["DEPTHMPC"] = (float(self.depth_mpc), "[Mpc] projection depth L of the model maps")
        cards.update(cosmology_cards(self.cosmology))
        return cards


def cosmology_cards(cosmology: Any) -> dict[str, tuple[Any, str]]:
    """FITS cards of a flat LCDM cosmology section, named as astropy's parameters:
    ``FlatLambdaCDM(H0=H0, Om0=OM0, Ob0=OB0, Tcmb0=TCMB0, Neff=NEFF, m_nu=0)`` gives the
    distances cmpipe uses (colossus, radiation included). Empty for None."""
    from cmpipe.physics.cosmology import colossus_cosmology

    if cosmology is None:
        return {}
    cosmo = colossus_cosmology(cosmology)
    return {
        "COSMO": ("FlatLambdaCDM", "flat LCDM (colossus); massless neutrinos"),
        "H0": (100.0 * float(cosmology.h), "[km s-1 Mpc-1] Hubble constant"),
        "OM0": (float(cosmology.omega_m), "matter density parameter at z = 0"),
        "OB0": (float(cosmology.omega_b), "baryon density parameter at z = 0"),
        "TCMB0": (float(cosmo.Tcmb0), "[K] CMB temperature at z = 0"),
        "NEFF": (float(cosmo.Neff), "effective number of neutrino species"),
        "SIGMA8": (float(cosmology.sigma8), "sigma8 at z = 0"),
        "NS": (float(cosmology.ns), "primordial spectral index"),
        "ZMODEL": (float(cosmology.redshift), "redshift of rho_bar in RHOLn"),
    }


def target_units(grid: ModelGrid, hyperparameters: Mapping[str, Any], cosmology: Any, redshift: float | None, *,
                 physical: bool = False) -> TargetUnits:
    """The :class:`TargetUnits` of a model: ``rho_bar L`` from ``cosmology`` (at its
    ``redshift``) and the depth the checkpoint records (``hyperparameters["maps"]``, else the
    run's ``maps.depth_mpc``); ``D_A`` at the cluster's ``redshift`` (colossus).

    Raises
    ------
    FitsError
        ``physical`` without a cosmology or depth.
    """
    from cmpipe.physics.cosmology import angular_diameter_distance_mpc, mean_densities

    maps = hyperparameters.get("maps") or {}
    depth = maps.get("depth_mpc")
    if depth is None and grid.config is not None:
        depth = grid.config.maps.depth_mpc
    rho_l = None
    if cosmology is not None and depth is not None:
        means = mean_densities(cosmology)
        rho_l = (float(means.baryon) * float(depth), float(means.dark_matter) * float(depth))
    elif physical:
        raise FitsError("--physical-units needs the model's cosmology and projection depth, and neither the "
                        "checkpoint nor its run records them: pass a config (--config) with the model's sections")
    d_a = angular_diameter_distance_mpc(redshift, cosmology) if cosmology is not None and redshift else None
    return TargetUnits(rho_l, bool(physical), d_a, None if depth is None else float(depth), cosmology)


def _check_outputs(out_path: str | os.PathLike[str], named: Mapping[str, str | os.PathLike[str]], quicklook: bool,
                   overwrite: bool) -> tuple[AnyPath, AnyPath]:
    """The output FITS and its PNG, checked before any work (:func:`cmpipe.store.outputs.check_output_file`);
    the inputs' (``{option: path}``) buckets, if URLs, must be reachable."""
    from cmpipe.store.outputs import check_output_file

    for name, path in (*named.items(), ("output", out_path)):
        check_reachable(as_path(path), name)
    inputs = tuple(named.values())
    out_path = check_output_file(out_path, overwrite=overwrite, inputs=inputs, what="output")
    png_path = out_path.with_suffix(".png")
    if quicklook:
        check_output_file(png_path, overwrite=overwrite, inputs=(*inputs, out_path), what="quick-look PNG")
    return out_path, png_path


def _flag(ood: DistributionCheck, inputs: str, out_path: AnyPath, messages: list[str], *, strict: bool,
          warn: bool) -> None:
    """Inputs out of the training distribution: refused under ``strict``, else logged as one
    warning if ``warn``, or else noted in ``messages`` (the batch driver's table): said once."""
    what = f"{inputs}: out of the training distribution: {'; '.join(ood.reasons())}"
    if strict:
        raise OutOfDistributionError(f"{what}; refused (--strict)")
    if warn:
        logger.warning("%s; reconstructed anyway (OODFLAG = T in %s)", what, out_path)
    else:
        messages.append(f"{what}; reconstructed anyway (OODFLAG = T in the FITS header)")


def _sample(sampler: Any, condition: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
    """``n_samples`` posterior samples ``(S, 2, R, R)`` of one cluster, from ``image_seed(seed, 0)``."""
    from cmpipe.model.sampling import image_seed

    return sampler.sample(condition, n_samples, [image_seed(seed, 0)])[0]


def fits_arcmin_per_pixel(pixel_mpc: float, redshift: Any, cosmology: Any) -> float | None:
    """The ``ARCMINPX`` of a FITS map: the pixel's angular side [arcmin] at ``redshift``
    (:func:`cmpipe.physics.cosmology.pixel_arcmin`), or None without a cosmology or at
    ``redshift <= 0`` (no finite angular scale)."""
    from cmpipe.physics.cosmology import pixel_arcmin

    if cosmology is None or redshift is None or float(redshift) <= 0:
        return None
    return pixel_arcmin(float(pixel_mpc), float(redshift), cosmology)


def _write_outputs(out_path: AnyPath, samples: np.ndarray, mean: np.ndarray, std: np.ndarray, grid: ModelGrid, *,
                   redshift: Any, cosmology: Any, extra: dict[str, Any], save_samples: bool, overwrite: bool,
                   sky_wcs: Any = None, bunit: str = "") -> None:
    """The output FITS: ``MEAN`` and ``STD`` ``(2, R, R)`` of the ``samples`` ``(S, 2, R, R)``, and
    with ``save_samples`` the ``SAMPLES`` as float32; the sky grid's WCS (with the physical one
    as alternate ``P``) for sky inputs, else the linear Mpc WCS."""
    from cmpipe.store.fits import sky_wcs_cards

    arcmin = fits_arcmin_per_pixel(grid.pixel_mpc, redshift, cosmology)
    extensions = {"MEAN": mean, "STD": std}
    if save_samples:
        extensions["SAMPLES"] = samples.astype(np.float32)
    extra = {"PIXMPC": (float(grid.pixel_mpc), "[Mpc] model pixel size"), **extra}
    write_map_fits(out_path, None, pixel_mpc=grid.pixel_mpc, channel_names=list(_TARGET),
                   units=[bunit] * len(_TARGET), redshift=redshift, arcmin_per_pixel=arcmin,
                   extra_header=extra, extensions=extensions, overwrite=overwrite, bunit=bunit,
                   wcs_cards=None if sky_wcs is None else sky_wcs_cards(sky_wcs, grid.pixel_mpc))


def export_store_fits(
    store_path: str | os.PathLike[str], image_indices: Sequence[int], out_dir: str | os.PathLike[str],
    *, overwrite: bool = False,
) -> list[AnyPath]:
    """Write images of an image store as one FITS file per channel.

    Files ``image_{i:06d}_{channel}.fits`` in ``out_dir``: the store's float32 maps at full
    resolution, WCS from the store's ``pixel_mpc`` (halo centre at (0, 0) Mpc), FITS units
    (:data:`cmpipe.store.fits.FITS_UNITS`), ``REDSHIFT`` and ``ARCMINPX`` from the store's cosmology,
    and ``IMAGE``, ``HALO_ID`` (when the store has ``halo_id``) and ``STOREFP`` (store fingerprint).

    Parameters
    ----------
    store_path : str or path-like
    image_indices : sequence of int
    out_dir : str, path-like or URL
        Created if missing (a prefix on an object store).
    overwrite : bool

    Returns
    -------
    list of pathlib.Path or upath.UPath
        Image-major, channels in the store's order.
    """
    from cmpipe.stages.generate import store_config
    from cmpipe.store.zarr_store import open_store

    group = open_store(store_path)
    attrs = group.attrs
    n = int(attrs["n_images"])
    channels = list(attrs["channels"])
    cfg = store_config(store_path)
    failed = group["image_failed"][:]
    halo_ids = group["halo_id"][:] if "halo_id" in group else None
    out_dir = as_path(out_dir)
    paths = []
    for i in image_indices:
        i = int(i)
        if not 0 <= i < n:
            raise IndexError(f"{store_path} has images 0..{n - 1}; got {i}")
        if failed[i]:
            raise ValueError(f"{store_path}: image {i} failed to generate")
        maps = np.asarray(group["maps"][i])
        for c, name in enumerate(channels):
            extra = {"IMAGE": (i, "store image index"), "STOREFP": (str(attrs["store_fingerprint"]), "store fingerprint"),
                     "DEPTHMPC": (float(attrs["depth_mpc"]), "[Mpc] projection depth")}
            if halo_ids is not None:
                extra["HALO_ID"] = (int(halo_ids[i]), "halo id")
            path = write_map_fits(
                out_dir / f"image_{i:06d}_{name}.fits", maps[c], pixel_mpc=float(attrs["pixel_mpc"]),
                channel_names=name, units=FITS_UNITS.get(name, attrs["channel_units"][name]),
                redshift=cfg.cosmology.redshift,
                arcmin_per_pixel=fits_arcmin_per_pixel(float(attrs["pixel_mpc"]), cfg.cosmology.redshift, cfg.cosmology),
                extra_header=extra, overwrite=overwrite,
            )
            paths.append(path)
    return paths


def export_split_fits(store: str | os.PathLike[str], split: str, out_dir: str | os.PathLike[str]) -> list[AnyPath]:
    """:func:`export_store_fits` of the usable images (not failed) of one split (``train``,
    ``val``, ``test``, or ``all``) into ``out_dir``, rewriting files already there."""
    from cmpipe.store import open_store
    from cmpipe.store.schema import SPLIT_CODES

    group = open_store(store)
    usable = group["image_failed"][:] == 0
    if split != "all":
        usable &= group["split"][:] == SPLIT_CODES[split]
    return export_store_fits(store, np.flatnonzero(usable).tolist(), out_dir, overwrite=True)


def run(cfg: Any, paths: Mapping[str, Any], *, n_samples: int | None = None, seed: int = 0,
        pixel_mpc: float | None = None, save_samples: bool = False, device: str = "cpu", overwrite: bool = False,
        strict: bool = False, max_ood_fraction: float = OOD_MAX_FRACTION, redshift: float | None = None,
        centre: tuple[float, float] | None = None, physical_units: bool = False) -> dict[str, Any]:
    """The reconstruct stage for one cluster: :func:`reconstruct` of ``paths["checkpoint"]``,
    ``paths["sz"]``, ``paths["xray"]`` (and ``paths["kappa"]``, if given) into ``paths["out"]`` (a FITS
    file), with the sampler of ``cfg.infer`` (``n_samples`` default: ``cfg.infer.n_samples``) and
    ``cfg.cosmology`` where the checkpoint's run records none. Many clusters on Ray:
    :func:`cmpipe.pipeline.reconstruct.reconstruct_many`."""
    n = int(cfg.infer.n_samples if n_samples is None else n_samples)
    return reconstruct(paths["checkpoint"], paths.get("sz"), paths.get("xray"), paths["out"],
                       kappa_path=paths.get("kappa"), n_samples=n, seed=seed, pixel_mpc=pixel_mpc,
                       save_samples=save_samples, device=device, infer_cfg=dataclasses.replace(cfg.infer, n_samples=n),
                       overwrite=overwrite, strict=strict, max_ood_fraction=max_ood_fraction, redshift=redshift,
                       centre=centre, cosmology=cfg.cosmology, physical_units=physical_units)

"""Reconstruct gas and dark-matter maps from SZ and X-ray FITS images (no Ray).

:func:`reconstruct` reads a Compton-y map and an X-ray surface-brightness map (FITS with a
physical-length WCS, :mod:`cmpipe.store.fits`), puts them on the model's grid, draws posterior
samples of (gas_sigma, dm_sigma) with a trained checkpoint and writes the posterior mean and
std (and optionally the samples) as FITS, with a PNG quick look beside it.
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

from cmpipe.store.fits import FITS_UNITS, FitsError, check_and_resample, read_map_fits, write_map_fits
from cmpipe.store.location import AnyPath, as_path, check_reachable, save_figure
from cmpipe.store.schema import TARGET_CHANNELS as _TARGET

__all__ = [
    "OOD_MAX_FRACTION",
    "DistributionCheck",
    "ModelGrid",
    "OutOfDistributionError",
    "check_distribution",
    "export_split_fits",
    "export_store_fits",
    "model_grid",
    "reconstruct",
    "run",
]

logger = logging.getLogger(__name__)

_CONDITION = ("sz_y", "xray_sb")

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


def _quicklook(path: AnyPath, inputs: np.ndarray, mean: np.ndarray, std: np.ndarray, pixel_mpc: float) -> AnyPath:
    """PNG of the inputs, posterior means and stds (log10 of positive values), written whole."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [
        (inputs[0], "log10 y (input)"), (inputs[1], "log10 S_X [erg s-1 cm-2 sr-1] (input)"),
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
    sz_path: str | os.PathLike[str],
    xray_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    n_samples: int = 50,
    seed: int = 0,
    pixel_mpc: float | None = None,
    save_samples: bool = False,
    device: str = "cpu",
    infer_cfg: Any = None,
    quicklook: bool = True,
    sz_hdu: int | str | None = None,
    xray_hdu: int | str | None = None,
    overwrite: bool = False,
    sampler: Any = None,
    strict: bool = False,
    max_ood_fraction: float = OOD_MAX_FRACTION,
    warn: bool = True,
) -> dict[str, Any]:
    """Posterior (gas_sigma, dm_sigma) maps of one cluster from its y and X-ray FITS maps.

    Parameters
    ----------
    checkpoint : str or path-like
        A checkpoint file or a run directory (its latest checkpoint).
    sz_path, xray_path : str or path-like
        FITS maps of ``sz_y`` [dimensionless] and ``xray_sb`` [erg s^-1 cm^-2 sr^-1, or any unit
        convertible to it], centred (world (0, 0)) on the halo, with a length WCS.
    out_path : str or path-like
        The output FITS: empty primary HDU, ``MEAN`` and ``STD`` ``(2, R, R)`` (gas_sigma,
        dm_sigma; std with ddof 1), and with ``save_samples`` ``SAMPLES`` ``(S, 2, R, R)``
        float32; each with the model grid's WCS. ``REDSHIFT`` of the SZ map's header is copied.
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
    sz_hdu, xray_hdu : int or str, optional
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

    Returns
    -------
    dict
        ``fits`` (path), ``png`` (path or None), ``messages`` (list of str: what was done to the
        inputs), ``model_pixel_mpc``, ``resolution``, ``grid_source``, ``checkpoint``, ``ood``
        (:class:`DistributionCheck`, also written to the FITS headers).

    Raises
    ------
    cmpipe.store.outputs.OutputError
        Before any work: ``out_path`` (or its PNG) is an input, exists without ``overwrite``,
        or cannot be written.
    FitsError
        Unusable inputs (not FITS, units, scale, field of view) or no model pixel size.
    OutOfDistributionError
        With ``strict``, inputs outside the training distribution (before sampling).
    """
    from cmpipe.model.inference import load_posterior_sampler, resolve_checkpoint

    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 for a posterior std; got {n_samples}")
    check_reachable(as_path(checkpoint), "--checkpoint")
    out_path, png_path = _check_outputs(out_path, (sz_path, xray_path), quicklook, overwrite)
    ckpt = resolve_checkpoint(checkpoint)
    hyperparameters = sampler.hyperparameters if sampler is not None else _checkpoint_meta(ckpt)["hyperparameters"]
    grid = model_grid(ckpt, hyperparameters=hyperparameters, pixel_mpc=pixel_mpc)

    messages: list[str] = [f"model grid: {grid.npix}x{grid.npix} pixels of {grid.pixel_mpc:g} Mpc ({grid.source})"]
    condition, images = _read_inputs(((sz_path, sz_hdu), (xray_path, xray_hdu)), grid, messages)
    ood = check_distribution(condition[0], _CONDITION, hyperparameters.get("normalisation"), grid.pixel_mpc,
                             max_ood_fraction)
    if ood.flagged:
        _flag(ood, f"{sz_path}, {xray_path}", out_path, messages, strict=strict, warn=warn)

    if infer_cfg is None:
        infer_cfg = _default_infer_cfg(grid.config, n_samples)
    if sampler is None:
        sampler = load_posterior_sampler(ckpt, infer_cfg, device)
    if sampler.resolution != grid.npix:
        raise FitsError(f"{ckpt}: sampler resolution {sampler.resolution} != model grid {grid.npix}")
    samples = _sample(sampler, condition, n_samples, seed)
    mean, std = samples.mean(axis=0), samples.std(axis=0, ddof=1)

    extra = {"CKPT": (ckpt.name, "checkpoint"), "NSAMPLES": (int(n_samples), "posterior samples"),
             "SEED": (int(seed), "cmpipe reconstruct seed"), "SAMPLER": (infer_cfg.sampler, "sampler"),
             "STEPS": (int(infer_cfg.steps), "sampler steps"), **ood.header()}
    _write_outputs(out_path, samples, mean, std, grid, redshift=images[0].header.get("REDSHIFT"), extra=extra,
                   save_samples=save_samples, overwrite=overwrite)
    png = _quicklook(png_path, condition[0], mean, std, grid.pixel_mpc) if quicklook else None
    for m in messages:  # returned: the caller shows them (cmpipe reconstruct prints each once)
        logger.debug("%s", m)
    return {"fits": out_path, "png": png, "messages": messages, "model_pixel_mpc": grid.pixel_mpc,
            "resolution": grid.npix, "grid_source": grid.source, "checkpoint": ckpt, "ood": ood}


def _check_outputs(out_path: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]], quicklook: bool,
                   overwrite: bool) -> tuple[AnyPath, AnyPath]:
    """The output FITS and its PNG, checked before any work (:func:`cmpipe.store.outputs.check_output_file`);
    the inputs' buckets, if URLs, must be reachable."""
    from cmpipe.store.outputs import check_output_file

    for name, path in (*zip(("--sz", "--xray"), inputs), ("output", out_path)):
        check_reachable(as_path(path), name)
    out_path = check_output_file(out_path, overwrite=overwrite, inputs=inputs, what="output")
    png_path = out_path.with_suffix(".png")
    if quicklook:
        check_output_file(png_path, overwrite=overwrite, inputs=(*inputs, out_path), what="quick-look PNG")
    return out_path, png_path


def _read_inputs(inputs: Sequence[tuple[str | os.PathLike[str], int | str | None]], grid: ModelGrid,
                 messages: list[str]) -> tuple[np.ndarray, list[Any]]:
    """The y and S_X maps ``(path, hdu)`` on the model's grid, shape (1, 2, R, R), and the FITS
    images read; what was done to them is appended to ``messages``."""
    maps_in = []
    images = []
    for name, (path, hdu) in zip(_CONDITION, inputs):
        image = read_map_fits(path, hdu=hdu, channel=name)
        if image.channel is not None and image.channel != name:
            messages.append(f"{path}: CHANNEL is {image.channel!r}, used as {name}")
        maps, notes = check_and_resample(image, channel=name, expected_unit=FITS_UNITS[name],
                                         model_pixel_mpc=grid.pixel_mpc, model_npix=grid.npix)
        maps_in.append(maps)
        images.append(image)
        messages.extend(notes)
    return np.stack(maps_in)[None], images


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
                   redshift: Any, extra: dict[str, Any], save_samples: bool, overwrite: bool) -> None:
    """The output FITS: ``MEAN`` and ``STD`` ``(2, R, R)`` of the ``samples`` ``(S, 2, R, R)``, and
    with ``save_samples`` the ``SAMPLES`` as float32."""
    cosmology = grid.config.cosmology if grid.config is not None else None
    arcmin = fits_arcmin_per_pixel(grid.pixel_mpc, redshift, cosmology)
    extensions = {"MEAN": mean, "STD": std}
    if save_samples:
        extensions["SAMPLES"] = samples.astype(np.float32)
    write_map_fits(out_path, None, pixel_mpc=grid.pixel_mpc, channel_names=list(_TARGET),
                   units=[FITS_UNITS[c] for c in _TARGET], redshift=redshift, arcmin_per_pixel=arcmin,
                   extra_header=extra, extensions=extensions, overwrite=overwrite)


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
        strict: bool = False, max_ood_fraction: float = OOD_MAX_FRACTION) -> dict[str, Any]:
    """The reconstruct stage for one cluster: :func:`reconstruct` of ``paths["checkpoint"]``,
    ``paths["sz"]`` and ``paths["xray"]`` into ``paths["out"]`` (a FITS file), with the sampler of
    ``cfg.infer`` (``n_samples`` default: ``cfg.infer.n_samples``). Many clusters on Ray:
    :func:`cmpipe.pipeline.reconstruct.reconstruct_many`."""
    n = int(cfg.infer.n_samples if n_samples is None else n_samples)
    return reconstruct(paths["checkpoint"], paths["sz"], paths["xray"], paths["out"], n_samples=n, seed=seed,
                       pixel_mpc=pixel_mpc, save_samples=save_samples, device=device,
                       infer_cfg=dataclasses.replace(cfg.infer, n_samples=n), overwrite=overwrite,
                       strict=strict, max_ood_fraction=max_ood_fraction)

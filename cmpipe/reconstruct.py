"""Reconstruct gas and dark-matter maps from SZ and X-ray FITS images (no Ray).

:func:`reconstruct` reads a Compton-y map and an X-ray surface-brightness map (FITS with a
physical-length WCS, :mod:`cmpipe.fits`), puts them on the model's grid, draws posterior
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
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cmpipe.fits import FITS_UNITS, FitsError, check_and_resample, read_map_fits, write_map_fits

__all__ = ["ModelGrid", "export_store_fits", "model_grid", "reconstruct"]

logger = logging.getLogger(__name__)

_CONDITION = ("sz_y", "xray_sb")
_TARGET = ("gas_sigma", "dm_sigma")


@dataclasses.dataclass(frozen=True)
class ModelGrid:
    """The model's grid: ``npix`` pixels of ``pixel_mpc`` [Mpc] per side, where the value came
    from (``source``), and the run's config if one was found (``config``, else None)."""

    npix: int
    pixel_mpc: float
    source: str
    config: Any = None


def _run_config(checkpoint_path: Path, fingerprint: str | None) -> Any:
    """The run directory's resolved config if its store fingerprint matches the checkpoint's."""
    from cmpipe.config import RESOLVED_CONFIG_NAME, load_config
    from cmpipe.store.zarr_store import store_fingerprint

    for directory in (checkpoint_path.parent.parent, checkpoint_path.parent):
        path = directory / RESOLVED_CONFIG_NAME
        if path.is_file():
            cfg = load_config(path)
            if fingerprint is None or store_fingerprint(cfg) == fingerprint:
                return cfg
            logger.warning("%s describes another store than %s: its maps section is not used", path, checkpoint_path)
            return None
    return None


def _checkpoint_meta(path: Path) -> dict[str, Any]:
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


def _quicklook(path: Path, inputs: np.ndarray, mean: np.ndarray, std: np.ndarray, pixel_mpc: float) -> Path:
    """PNG of the inputs, posterior means and stds (log10 of positive values)."""
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
    fig.savefig(path, dpi=90)
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
    sampler : cmpipe.model.inference.PosteriorSampler, optional
        An already loaded sampler of ``checkpoint`` (many clusters, one model:
        :func:`cmpipe.pipeline.reconstruct.reconstruct_many`); default: loaded here.

    Returns
    -------
    dict
        ``fits`` (path), ``png`` (path or None), ``messages`` (list of str: what was done to the
        inputs), ``model_pixel_mpc``, ``resolution``, ``grid_source``, ``checkpoint``.

    Raises
    ------
    FitsError
        Unusable inputs (units, scale, field of view) or no model pixel size.
    """
    from cmpipe.model.inference import load_posterior_sampler, resolve_checkpoint
    from cmpipe.pipeline.infer import image_seed

    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 for a posterior std; got {n_samples}")
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        raise FileExistsError(f"{out_path} exists (pass overwrite=True to replace it)")
    ckpt = resolve_checkpoint(checkpoint)
    grid = model_grid(ckpt, pixel_mpc=pixel_mpc)
    if infer_cfg is None:
        infer_cfg = _default_infer_cfg(grid.config, n_samples)
    if sampler is None:
        sampler = load_posterior_sampler(ckpt, infer_cfg, device)
    if sampler.resolution != grid.npix:
        raise FitsError(f"{ckpt}: sampler resolution {sampler.resolution} != model grid {grid.npix}")

    messages: list[str] = [f"model grid: {grid.npix}x{grid.npix} pixels of {grid.pixel_mpc:g} Mpc ({grid.source})"]
    inputs = []
    images = []
    for name, path, hdu in (("sz_y", sz_path, sz_hdu), ("xray_sb", xray_path, xray_hdu)):
        image = read_map_fits(path, hdu=hdu, channel=name)
        if image.channel is not None and image.channel != name:
            messages.append(f"{path}: CHANNEL is {image.channel!r}, used as {name}")
        maps, notes = check_and_resample(image, channel=name, expected_unit=FITS_UNITS[name],
                                         model_pixel_mpc=grid.pixel_mpc, model_npix=grid.npix)
        inputs.append(maps)
        images.append(image)
        messages.extend(notes)
    condition = np.stack(inputs)[None]
    samples = sampler.sample(condition, n_samples, [image_seed(seed, 0)])[0]  # (S, 2, R, R)
    mean, std = samples.mean(axis=0), samples.std(axis=0, ddof=1)

    redshift = images[0].header.get("REDSHIFT")
    cosmology = grid.config.cosmology if grid.config is not None else None
    extra = {"CKPT": (ckpt.name, "checkpoint"), "NSAMPLES": (int(n_samples), "posterior samples"),
             "SEED": (int(seed), "cmpipe reconstruct seed"), "SAMPLER": (infer_cfg.sampler, "sampler"),
             "STEPS": (int(infer_cfg.steps), "sampler steps")}
    extensions = {"MEAN": mean, "STD": std}
    if save_samples:
        extensions["SAMPLES"] = samples.astype(np.float32)
    write_map_fits(out_path, None, pixel_mpc=grid.pixel_mpc, channel_names=list(_TARGET),
                   units=[FITS_UNITS[c] for c in _TARGET], redshift=redshift, cosmology=cosmology,
                   extra_header=extra, extensions=extensions, overwrite=overwrite)
    png = _quicklook(out_path.with_suffix(".png"), condition[0], mean, std, grid.pixel_mpc) if quicklook else None
    for m in messages:
        logger.info("%s", m)
    return {"fits": out_path, "png": png, "messages": messages, "model_pixel_mpc": grid.pixel_mpc,
            "resolution": grid.npix, "grid_source": grid.source, "checkpoint": ckpt}


def export_store_fits(
    store_path: str | os.PathLike[str], image_indices: Sequence[int], out_dir: str | os.PathLike[str],
    *, overwrite: bool = False,
) -> list[Path]:
    """Write images of an image store as one FITS file per channel.

    Files ``image_{i:06d}_{channel}.fits`` in ``out_dir``: the store's float32 maps at full
    resolution, WCS from the store's ``pixel_mpc`` (halo centre at (0, 0) Mpc), FITS units
    (:data:`cmpipe.fits.FITS_UNITS`), ``REDSHIFT`` and ``ARCMINPX`` from the store's cosmology,
    and ``IMAGE``, ``HALO_ID`` (when the store has ``halo_id``) and ``STOREFP`` (store fingerprint).

    Parameters
    ----------
    store_path : str or path-like
    image_indices : sequence of int
    out_dir : str or path-like
        Created if missing.
    overwrite : bool

    Returns
    -------
    list of pathlib.Path
        Image-major, channels in the store's order.
    """
    from cmpipe.store.zarr_store import open_store, store_config

    group = open_store(store_path)
    attrs = group.attrs
    n = int(attrs["n_images"])
    channels = list(attrs["channels"])
    cfg = store_config(store_path)
    failed = group["image_failed"][:]
    halo_ids = group["halo_id"][:] if "halo_id" in group else None
    out_dir = Path(out_dir)
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
                redshift=cfg.cosmology.redshift, cosmology=cfg.cosmology, extra_header=extra, overwrite=overwrite,
            )
            paths.append(path)
    return paths

"""The public Python API: what ``import cmpipe`` exposes for notebooks and scripts.

- :func:`load_config`: a configuration (a shipped name such as ``"demo"``, or a YAML path) with
  ``--set``-style overrides;
- the stages' Ray-free ``run(cfg, paths)`` functions (``cmpipe.run_catalog``, ``run_generate``,
  ``run_train``, ``run_infer``, ``run_report``, ``run_render``), the same units of work
  ``cmpipe pipeline`` runs on Ray;
- :func:`open_store` and :func:`open_posterior`: the image store and the posterior store as
  :class:`xarray.Dataset` (lazy: nothing is read until used);
- :class:`Reconstructor`: arrays in, posterior samples out, with their units.

Example (a tiny run; every output is a file under ``out``)::

    import cmpipe
    cfg = cmpipe.load_config("demo", ["catalog.n_halos=4"])
    maps = cmpipe.open_store("runs/demo/images.zarr")          # xarray.Dataset
    maps["maps"].sel(channel="gas_sigma").isel(image=0)
    rec = cmpipe.Reconstructor("runs/demo/run")                # latest checkpoint of a run
    post = rec.sample(y, s_x, pixel_mpc=0.4, n_samples=8)      # y [1], s_x [erg s-1 cm-2 sr-1]
    post.mean("gas_sigma", physical=True)                      # astropy Quantity [Msun Mpc-2], (R, R)

Every path may be an object-store URL (``s3://bucket/runs/demo/images.zarr``,
``s3://bucket/runs/demo/run``): stores are opened through zarr's ``FsspecStore`` and the
checkpoint read through fsspec, with credentials from the environment
(:mod:`cmpipe.store.location`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cmpipe.store.schema import TARGET_CHANNELS as TARGETS

__all__ = ["Reconstruction", "Reconstructor", "open_posterior", "open_store"]

#: Condition channels the model takes, and the astropy unit string of each input array.
INPUT_UNITS = {"sz_y": "", "xray_sb": "erg s-1 cm-2 sr-1", "kappa": ""}


def _grid_coords(npix: int, pixel_mpc: float) -> dict[str, Any]:
    """``x`` and ``y`` coordinates [Mpc] of a map grid centred on the halo (version-1 stores)."""
    from cmpipe.store.zarr_store import pixel_centres_mpc

    centres = pixel_centres_mpc(npix, pixel_mpc)
    return {"x": ("x", centres, {"units": "Mpc"}), "y": ("y", centres, {"units": "Mpc"})}


def _open_zarr(path: Any, consolidated: bool, **kwargs: Any):
    """``xarray.open_zarr`` of a local path or URL, lazy without dask (``chunks=None``)."""
    import xarray as xr

    from cmpipe.store.location import as_path, zarr_store

    return xr.open_zarr(zarr_store(as_path(path), read_only=True), consolidated=consolidated, chunks=None, **kwargs)


def open_store(path: str | os.PathLike[str]):
    """The image store (``images.zarr``) as a lazy :class:`xarray.Dataset`.

    ``xarray.open_zarr(path)`` of the store (:mod:`cmpipe.store.schema`): ``maps`` ``(image,
    channel, y, x)`` in the store's units, coordinates ``channel`` (names) with ``channel_units``,
    ``x`` and ``y`` (pixel centres [Mpc]), ``image`` with ``halo_id``, ``log10_m200m_msun_h``,
    ``rotation_index``, ``axis`` and ``split``. The store's schema version is checked first; a
    version-1 store (no coordinate arrays) gets ``channel``, ``x`` and ``y`` here.

    Raises
    ------
    cmpipe.store.StoreError
        If ``path`` holds no cmpipe image store of a schema version this cmpipe reads.
    """
    from cmpipe.store import open_store as open_group

    attrs = dict(open_group(path).attrs)
    if attrs["cmpipe_store_schema_version"] >= 2:
        return _open_zarr(path, consolidated=True)
    ds = _open_zarr(path, consolidated=False)
    coords = {"channel": ("channel", list(attrs["channels"])), **_grid_coords(attrs["npix"], attrs["pixel_mpc"])}
    return ds.assign_coords(coords)


def open_posterior(results: str | os.PathLike[str]):
    """The posterior store (``RESULTS/posterior.zarr``) as a lazy :class:`xarray.Dataset`.

    ``xarray.open_zarr`` of the store (:mod:`cmpipe.store.posterior`): ``truth``, ``mean``,
    ``std`` (and ``samples``) have dimension ``target`` (gas_sigma, dm_sigma); ``condition`` has
    ``condition_channel`` (the model's condition channels): two dimensions, because the model may
    take more conditions than it has targets. Coordinates ``x``, ``y`` are pixel centres [Mpc] of
    the model grid; ``image`` is the image's index in the image store. A version-1 store (one
    ``channel`` dimension, no coordinate arrays) is given the same dimensions and coordinates here.

    Raises
    ------
    cmpipe.store.posterior.PosteriorStoreError
        If ``results`` holds no posterior store of a schema version this cmpipe reads.
    """
    from cmpipe.store.location import as_path
    from cmpipe.store.posterior import open_posterior as open_group

    group = open_group(results)
    attrs, names = dict(group.attrs), list(group.array_keys())
    path = as_path(results) / "posterior.zarr"  # posterior_path, at a URL too
    if attrs["cmpipe_posterior_schema_version"] >= 2:
        return _open_zarr(path, consolidated=True)
    ds = _open_zarr(path, consolidated=False, drop_variables=["condition"]).rename_dims({"channel": "target"})
    others = [n for n in names if n != "condition"]
    cond = _open_zarr(path, consolidated=False, drop_variables=others)["condition"]
    ds["condition"] = cond.rename({"channel": "condition_channel"})
    coords = {"target": ("target", list(attrs.get("targets", TARGETS))),
              "condition_channel": ("condition_channel", list(attrs["conditions"])),
              **_grid_coords(int(attrs["resolution"]), float(attrs["pixel_mpc"]))}
    return ds.assign_coords(coords)


@dataclass(frozen=True)
class Reconstruction:
    """Posterior samples of one cluster on the model grid.

    Attributes
    ----------
    samples : ndarray, shape (S, 2, R, R)
        float64 (gas_sigma, dm_sigma) samples in the store's units (dimensionless: :meth:`Reconstruction.quantity`).
    pixel_mpc : float
        The model grid's pixel side [Mpc].
    sigma_unit_msun_mpc2 : dict
        Per target, the surface density [Msun Mpc^-2] of one store unit (``rho_bar L`` of the
        run's cosmology and projection depth); empty when the checkpoint's run is unknown.
    messages : list of str
        What was done to the inputs (unit conversion, resampling, crop).
    condition : ndarray, shape (C, R, R)
        The inputs on the model grid, in the model's condition order (sz_y [dimensionless],
        xray_sb [erg s-1 cm-2 sr-1], and kappa [dimensionless] for a model trained on it).
    """

    samples: np.ndarray
    pixel_mpc: float
    sigma_unit_msun_mpc2: dict[str, float] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    condition: np.ndarray | None = None

    def quantity(self, channel: str, physical: bool = False) -> Any:
        """Every sample of ``channel`` as an astropy Quantity, shape (S, R, R).

        Dimensionless (the store's unit: surface density over the cosmic mean's ``rho_bar L``),
        or with ``physical`` in Msun Mpc^-2.
        """
        from astropy import units as u

        values = self.samples[:, TARGETS.index(channel)]
        if not physical:
            return values * u.dimensionless_unscaled
        if channel not in self.sigma_unit_msun_mpc2:
            raise ValueError("the checkpoint's run config is unknown: no physical surface density")
        return values * self.sigma_unit_msun_mpc2[channel] * u.Unit("solMass Mpc-2")

    def mean(self, channel: str, physical: bool = False) -> Any:
        """Posterior mean of ``channel`` (Quantity, (R, R))."""
        return self.quantity(channel, physical).mean(axis=0)

    def std(self, channel: str, physical: bool = False) -> Any:
        """Posterior standard deviation of ``channel`` (ddof 1; Quantity, (R, R))."""
        return self.quantity(channel, physical).std(axis=0, ddof=1)


class Reconstructor:
    """A trained checkpoint, loaded once, that turns y and S_X arrays into posterior samples.

    Parameters
    ----------
    checkpoint : str, path-like or URL
        A checkpoint file or a run directory (its latest checkpoint), local or at a URL (read
        through fsspec with ``torch.load(weights_only=True)``).
    device : str
        Torch device.
    sampler, steps : str, int, optional
        Override the run's ``infer.sampler`` and ``infer.steps``.
    """

    def __init__(self, checkpoint: str | os.PathLike[str], device: str = "cpu",
                 sampler: str | None = None, steps: int | None = None) -> None:
        import dataclasses

        from cmpipe.model.inference import load_posterior_sampler, resolve_checkpoint
        from cmpipe.stages.reconstruct import _default_infer_cfg

        self.checkpoint = resolve_checkpoint(checkpoint)
        grid = _recorded_grid(self.checkpoint)
        infer = _default_infer_cfg(grid.config if grid is not None else None, 2)
        changes = {k: v for k, v in (("sampler", sampler), ("steps", steps)) if v is not None}
        self.infer = dataclasses.replace(infer, **changes)
        self._sampler = load_posterior_sampler(self.checkpoint, self.infer, device)
        self.resolution = int(self._sampler.resolution)
        self.model_pixel_mpc = grid.pixel_mpc if grid is not None else None
        run = grid.config if grid is not None else None
        self.sigma_unit_msun_mpc2 = _sigma_units(run.cosmology, run.maps.depth_mpc) if run is not None else {}

    def sample(self, y: Any, s_x: Any, *, pixel_mpc: float, n_samples: int = 50, seed: int = 0,
               kappa: Any = None) -> Reconstruction:
        """Posterior samples of (gas_sigma, dm_sigma) given a Compton-y and an X-ray map (and a
        convergence map, for a model trained with a ``kappa`` condition).

        Parameters
        ----------
        y : array or Quantity, shape (H, W)
            Compton-y [dimensionless], centred on the halo.
        s_x : array or Quantity, shape (H, W)
            X-ray surface brightness [erg s-1 cm-2 sr-1] (a Quantity in any convertible unit).
        pixel_mpc : float
            The input maps' pixel side [Mpc]; they are block-averaged or area-resampled onto the
            model grid (never upsampled) and cropped about the centre.
        n_samples : int
            Posterior samples (>= 2).
        seed : int
            The samples depend only on ``seed`` (as image 0 of ``cmpipe reconstruct``).
        kappa : array, shape (H, W), optional
            Weak-lensing convergence [dimensionless], on the grid of ``y``; needed exactly when
            the model's conditions include ``kappa``.
        """
        from cmpipe.model.sampling import image_seed

        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2 for a posterior std; got {n_samples}")
        model_pixel = self.model_pixel_mpc if self.model_pixel_mpc is not None else float(pixel_mpc)
        messages = [f"model grid: {self.resolution}x{self.resolution} pixels of {model_pixel:g} Mpc"]
        given = {"sz_y": y, "xray_sb": s_x, "kappa": kappa}
        conditions = tuple(self._sampler.conditions)
        if (kappa is None) == ("kappa" in conditions):
            raise ValueError(f"the model's conditions are {', '.join(conditions)}: "
                             f"{'pass kappa=' if kappa is None else 'drop kappa='}")
        maps = []
        for name, data in ((c, given[c]) for c in conditions):
            grid_map, notes = _on_model_grid(name, data, float(pixel_mpc), model_pixel, self.resolution)
            maps.append(grid_map)
            messages.extend(notes)
        condition = np.stack(maps)
        samples = self._sampler.sample(condition[None], int(n_samples), [image_seed(seed, 0)])[0]
        return Reconstruction(samples, model_pixel, dict(self.sigma_unit_msun_mpc2), messages, condition)


def _recorded_grid(checkpoint: Any) -> Any:
    """The model grid the checkpoint's run records (:func:`cmpipe.stages.reconstruct.model_grid`),
    or None: then :meth:`Reconstructor.sample` takes the model pixel from its ``pixel_mpc``."""
    from cmpipe.stages.reconstruct import model_grid
    from cmpipe.store.fits import FitsError

    try:
        return model_grid(checkpoint)
    except FitsError:
        return None


def _sigma_units(cosmology: Any, depth_mpc: float) -> dict[str, float]:
    """``rho_bar_gas L`` and ``rho_bar_DM L`` [Msun Mpc^-2] of a run's cosmology section and
    projection depth ``L`` [Mpc]."""
    from cmpipe.physics.cosmology import mean_densities

    means = mean_densities(cosmology)
    depth = float(depth_mpc)
    return {"gas_sigma": float(means.baryon) * depth, "dm_sigma": float(means.dark_matter) * depth}


def _on_model_grid(name: str, data: Any, pixel_mpc: float, model_pixel_mpc: float,
                   model_npix: int) -> tuple[np.ndarray, list[str]]:
    """One input map, in the channel's unit, on the model's grid (centred on the halo)."""
    from astropy import units as u

    from cmpipe.store.fits import MapImage, check_and_resample

    unit = INPUT_UNITS[name]
    if isinstance(data, u.Quantity):
        arr, unit = np.asarray(data.value, dtype=float), data.unit.to_string()
    else:
        arr = np.asarray(data, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"{name}: a 2-d map is needed; got shape {arr.shape}")
    h, w = arr.shape
    image = MapImage(arr, pixel_mpc, unit, name, {}, f"<{name} array>", ((w - 1) / 2, (h - 1) / 2))
    return check_and_resample(image, channel=name, expected_unit=INPUT_UNITS[name],
                              model_pixel_mpc=model_pixel_mpc, model_npix=model_npix)

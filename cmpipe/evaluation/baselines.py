"""Trivial baselines, scored by the same metrics on the same test images as the model (issue 15).

A reconstruction is judged by how much it beats what one could do without it. Two predictors
that need no network are fitted on the training split of the image store and evaluated image by
image with :func:`cmpipe.evaluation.image.evaluate_image`, exactly as the inference actors evaluate the
model's posterior samples; their results have the layout of a ``cmpipe infer`` results
directory, under ``RESULTS/baselines/<name>/``:

``mass_oracle`` (:class:`MassOracle`)
    Knows the true M200m of the test halo and nothing else. Each training halo's images are
    averaged first (its halo map, on the model's grid); the prediction is the mean of the halo
    maps of the ``k`` training halos nearest in log10 M200m (:data:`ORACLE_NEIGHBOURS`; ties by
    halo id). Its samples are those ``k`` halo maps, each drawn ``n // k`` or ``n // k + 1``
    times in a seeded random order, so their spread is the scatter over those halos and their
    mean is the prediction exactly when ``k`` divides ``n`` (10 divides the demo's 50). The maps
    are centred on their halo already (:mod:`cmpipe.mapmaking.maps` projects about the halo centre), so no
    recentring is done.
``pixel_regression`` (:class:`PixelRegression`)
    A per-pixel least-squares regression of ``log10`` gas and DM surface density on the
    ``log10`` condition maps (by default Compton-y and S_X) and the radius from the map centre:
    a full quadratic polynomial in ``(u_1 .. u_C, r)`` (:func:`regression_features`). Values at
    or below a channel's floor are floored (the store's normalisation floors; a ``linear``
    store: 1e-6 of the channel's train maximum). Its samples are ``10**(mean + sigma(r) eps)``,
    ``eps`` standard normal, independent per pixel and sample, with ``sigma(r)`` the residual std
    of the training pixels in the radial bin of the pixel (the profiles' one-pixel annuli,
    corners in the outermost).

Both are fitted in one streaming pass over the training split (chunk by chunk; the oracle
keeps one summed map per training halo, the regression its normal equations per radial bin),
then every selected test image is read, predicted, sampled (image ``i`` of baseline ``b`` from
``numpy.random.default_rng([seed, b, i])``) and evaluated. Plain numpy: no torch, no Ray.

Layout of ``RESULTS/baselines/<name>/`` (marked a ``results`` directory, :mod:`cmpipe.store.outputs`):
``tables/<table>/part-*.parquet`` (:mod:`cmpipe.store.tables`, one part per table),
``images.parquet``, ``posterior.zarr`` (:mod:`cmpipe.store.posterior`; ``sampler`` is the
baseline's name, ``steps`` 0) and ``baseline.json``: the baseline's settings, its fit (the
regression's coefficients and residual widths, the oracle's ``k``) and timings. ``baseline.json``
is written last: it is the done flag. A rerun with the same identity (store, images, grid,
samples, seed, conditions, ``k``) skips the baseline; anything else removes the baseline's
outputs and makes them again (seconds).

The store and ``RESULTS`` may be object-store URLs (:mod:`cmpipe.store.location`): each output is
then written whole in one PUT, ``baseline.json`` last, and looked up afresh
(:func:`cmpipe.store.tables.refreshed`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmpipe.store.location import AnyPath, as_path, is_remote, remove_tree, write_text_atomic
from cmpipe.store.schema import SPLIT_NAMES, TARGET_CHANNELS as _TARGETS
from cmpipe.store.tables import refreshed

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.evaluation.image import Grid

__all__ = [
    "BASELINES",
    "BASELINE_VERSION",
    "ORACLE_NEIGHBOURS",
    "MassOracle",
    "PixelRegression",
    "baseline_dir",
    "fit_baselines",
    "fit_mass_oracle",
    "fit_pixel_regression",
    "regression_feature_names",
    "regression_features",
    "run_baselines",
]

logger = logging.getLogger(__name__)

#: The baselines, in the order they are run and shown.
BASELINES: tuple[str, ...] = ("mass_oracle", "pixel_regression")
#: Training halos averaged by the mass oracle [count] (fewer if the training split has fewer).
ORACLE_NEIGHBOURS = 10
#: Version of a baseline's outputs; a change makes reruns redo them.
BASELINE_VERSION = 1
#: Seed stream of each baseline (second entry of its images' seed sequences).
_STREAM = {"mass_oracle": 1, "pixel_regression": 2}
_TRAIN, _TEST = 0, 2
#: Fraction of a channel's train maximum taken as its log floor in a ``linear`` store.
_LINEAR_FLOOR_FRACTION = 1e-6


def block_mean(maps: np.ndarray, factor: int) -> np.ndarray:
    """Average ``(..., H, W)`` over ``factor x factor`` blocks: the model's grid, as
    :func:`cmpipe.model.dataset.block_mean` (kept here so this module needs no torch)."""
    if factor == 1:
        return maps
    *lead, h, w = maps.shape
    if h % factor or w % factor:
        raise ValueError(f"maps of {h}x{w} pixels cannot be averaged over {factor}x{factor} blocks")
    return maps.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


# ----------------------------------------------------------------------------- mass oracle


@dataclass(frozen=True)
class MassOracle:
    """The mean training map of the halos of nearest mass.

    Attributes
    ----------
    halo_id : ndarray of int64, shape (H,)
        The training halos, ascending.
    log10_m200m_msun_h : ndarray, shape (H,)
        Their masses [log10 Msun/h].
    maps : ndarray, shape (H, 2, R, R)
        Each halo's target maps averaged over its training images (physical units).
    n_images : ndarray of int64, shape (H,)
        Images averaged per halo.
    k : int
        Halos averaged per prediction (``min(k asked, H)``).
    """

    halo_id: np.ndarray
    log10_m200m_msun_h: np.ndarray
    maps: np.ndarray
    n_images: np.ndarray
    k: int

    def neighbours(self, log10_m200m_msun_h: float) -> np.ndarray:
        """Rows of the ``k`` halos nearest in log mass (ties: lower halo id first)."""
        distance = np.abs(self.log10_m200m_msun_h - float(log10_m200m_msun_h))
        return np.lexsort((self.halo_id, distance))[: self.k]

    def predict(self, log10_m200m_msun_h: float) -> np.ndarray:
        """The prediction, shape (2, R, R): the mean of the neighbours' halo maps."""
        return self.maps[self.neighbours(log10_m200m_msun_h)].mean(axis=0)

    def sample(self, log10_m200m_msun_h: float, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """``n_samples`` of the neighbours' halo maps, shape (n, 2, R, R): each drawn
        ``n // k`` or ``n // k + 1`` times, in random order (mean = :meth:`predict` when ``k``
        divides ``n``)."""
        rows = self.neighbours(log10_m200m_msun_h)
        order = np.concatenate([rng.permutation(len(rows)) for _ in range(-(-n_samples // len(rows)))])
        return self.maps[rows[order[:n_samples]]]


class _OracleAccumulator:
    def __init__(self, halo_ids: np.ndarray, log10m: np.ndarray, shape: tuple[int, ...]) -> None:
        self.halo_id, first = np.unique(halo_ids, return_index=True)
        self.log10m = np.asarray(log10m, dtype=np.float64)[first]
        self.sums = np.zeros((len(self.halo_id), *shape))
        self.counts = np.zeros(len(self.halo_id), dtype=np.int64)

    def add(self, halo_ids: np.ndarray, truth: np.ndarray) -> None:
        rows = np.searchsorted(self.halo_id, halo_ids)
        np.add.at(self.sums, rows, truth)
        np.add.at(self.counts, rows, 1)

    def result(self, k: int) -> MassOracle:
        have = self.counts > 0
        maps = self.sums[have] / self.counts[have, None, None, None]
        return MassOracle(self.halo_id[have], self.log10m[have], maps, self.counts[have], int(min(k, have.sum())))


def fit_mass_oracle(halo_id: np.ndarray, log10_m200m_msun_h: np.ndarray, truth: np.ndarray,
                    k: int = ORACLE_NEIGHBOURS) -> MassOracle:
    """The :class:`MassOracle` of training images held in memory.

    Parameters
    ----------
    halo_id, log10_m200m_msun_h : array, shape (N,)
        Halo and its mass [log10 Msun/h] of each training image.
    truth : ndarray, shape (N, 2, R, R)
        Their target maps (gas, DM), on the model's grid.
    k : int
        Halos averaged per prediction.
    """
    acc = _OracleAccumulator(np.asarray(halo_id), log10_m200m_msun_h, np.shape(truth)[1:])
    acc.add(np.asarray(halo_id), np.asarray(truth, dtype=np.float64))
    return acc.result(k)


# ----------------------------------------------------------------------------- pixel regression


def regression_feature_names(conditions: Sequence[str]) -> list[str]:
    """Names of the columns of :func:`regression_features`: ``1``, the linear terms
    ``log10_<condition>`` and ``r_mpc`` (each less its offset), then every product of two of them
    (squares included)."""
    linear = [f"log10_{c}" for c in conditions] + ["r_mpc"]
    quad = [f"{a}*{b}" for i, a in enumerate(linear) for b in linear[i:]]
    return ["1", *linear, *quad]


def regression_features(log_conditions: np.ndarray, radius_mpc: np.ndarray,
                        offsets: Sequence[float] | None = None) -> np.ndarray:
    """The design matrix of the pixel regression: a full quadratic polynomial.

    Parameters
    ----------
    log_conditions : ndarray, shape (C, ...)
        ``log10`` of the (floored) condition maps.
    radius_mpc : ndarray, broadcastable to ``log_conditions.shape[1:]``
        Distance of each pixel from the map centre [Mpc].
    offsets : sequence of float, optional
        ``C + 1`` values subtracted from the linear terms first (the fit uses the training
        means: centred terms keep the normal equations well conditioned and make the linear
        coefficients the slopes at the training centroid); default zeros.

    Returns
    -------
    ndarray, shape (..., P)
        Columns as :func:`regression_feature_names`, ``P = 1 + L + L (L + 1) / 2``,
        ``L = C + 1``.
    """
    log_conditions = np.asarray(log_conditions, dtype=np.float64)
    r = np.broadcast_to(np.asarray(radius_mpc, dtype=np.float64), log_conditions.shape[1:])
    offsets = np.zeros(len(log_conditions) + 1) if offsets is None else np.asarray(offsets, dtype=np.float64)
    linear = [v - o for v, o in zip([*log_conditions, r], offsets)]
    quad = [a * b for i, a in enumerate(linear) for b in linear[i:]]
    return np.stack([np.ones_like(r), *linear, *quad], axis=-1)


@dataclass(frozen=True)
class PixelRegression:
    """``log10 target = features . coef`` per pixel, with residual widths per radial bin.

    Attributes
    ----------
    conditions : tuple of str
        The condition channels, in the order of the maps passed.
    coef : ndarray, shape (2, P)
        Coefficients of gas and DM (:func:`regression_feature_names`).
    residual_std : ndarray, shape (2, B)
        Std of the training residuals in each radial bin [dex].
    edges_mpc : ndarray, shape (B + 1,)
        Radial bin edges [Mpc] (pixels beyond the last edge: the last bin).
    condition_floors, target_floors : ndarray
        Floors of the log transforms, per channel (physical units).
    offsets : ndarray, shape (C + 1,)
        Offsets of the linear terms (:func:`regression_features`).
    pixel_mpc : float
        Pixel side of the grid the regression was fitted on [Mpc].
    n_pixels : int
        Training pixels fitted.
    """

    conditions: tuple[str, ...]
    coef: np.ndarray
    residual_std: np.ndarray
    edges_mpc: np.ndarray
    condition_floors: np.ndarray
    target_floors: np.ndarray
    offsets: np.ndarray
    pixel_mpc: float
    n_pixels: int

    def features(self, condition: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Design matrix ``(..., R, R, P)`` and radial bin ``(R, R)`` of condition maps ``(..., C, R, R)``."""
        return _features(condition, self.condition_floors, self.pixel_mpc, self.edges_mpc, self.offsets)

    def predict_log10(self, condition: np.ndarray) -> np.ndarray:
        """Mean ``log10`` gas and DM maps, shape (..., 2, R, R), of condition maps (..., C, R, R)."""
        x, _ = self.features(condition)
        return np.moveaxis(x @ self.coef.T, -1, -3)

    def sample(self, condition: np.ndarray, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """``n_samples`` physical maps, shape (n, 2, R, R): ``10**(mean + sigma(r) eps)``."""
        mean = self.predict_log10(condition)
        _, bins = self.features(condition)
        sigma = self.residual_std[:, bins]  # (2, R, R)
        eps = rng.standard_normal((n_samples, *mean.shape))
        return np.power(10.0, mean[None] + sigma[None] * eps)


def _linear_terms(condition: np.ndarray, floors: np.ndarray, pixel_mpc: float) -> tuple[np.ndarray, np.ndarray]:
    """``log10`` of the floored condition maps ``(C, ..., R, R)`` and the radii ``(R, R)`` [Mpc]."""
    from cmpipe.evaluation.metrics import pixel_radii_mpc

    condition = np.asarray(condition, dtype=np.float64)
    logc = np.log10(np.maximum(condition, np.asarray(floors, dtype=np.float64).reshape(-1, 1, 1)))
    return np.moveaxis(logc, -3, 0), pixel_radii_mpc(condition.shape[-1], pixel_mpc)


def _features(condition: np.ndarray, floors: np.ndarray, pixel_mpc: float, edges_mpc: np.ndarray,
              offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logc, r = _linear_terms(condition, floors, pixel_mpc)
    bins = np.clip(np.searchsorted(edges_mpc, r, side="right") - 1, 0, len(edges_mpc) - 2)
    return regression_features(logc, r, offsets), bins


class _RegressionAccumulator:
    """Normal equations per radial bin: ``X^T X``, ``X^T y``, ``y^T y`` and counts."""

    def __init__(self, n_features: int, n_bins: int) -> None:
        self.xtx = np.zeros((n_bins, n_features, n_features))
        self.xty = np.zeros((n_bins, 2, n_features))
        self.yty = np.zeros((n_bins, 2))
        self.count = np.zeros(n_bins, dtype=np.int64)

    def add(self, x: np.ndarray, y: np.ndarray, bins: np.ndarray) -> None:
        """``x`` (..., R, R, P), ``y`` (..., 2, R, R) log10 targets, ``bins`` (R, R)."""
        p = x.shape[-1]
        x = x.reshape(-1, bins.size, p)
        y = np.moveaxis(y, -3, -1).reshape(-1, bins.size, 2)
        flat = bins.ravel()
        for b in np.unique(flat):
            xb = x[:, flat == b].reshape(-1, p)
            yb = y[:, flat == b].reshape(-1, 2)
            self.xtx[b] += xb.T @ xb
            self.xty[b] += yb.T @ xb
            self.yty[b] += np.einsum("ij,ij->j", yb, yb)
            self.count[b] += xb.shape[0]

    def solve(self) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (2, P) and residual std per bin (2, B) [dex]."""
        xtx, xty = self.xtx.sum(axis=0), self.xty.sum(axis=0)
        scale = np.sqrt(np.where(np.diag(xtx) > 0, np.diag(xtx), 1.0))
        a = xtx / scale[:, None] / scale[None, :]
        coef = np.linalg.lstsq(a, (xty / scale).T, rcond=1e-12)[0].T / scale  # (2, P)
        # Residual sum of squares per bin: y'y - 2 c.X'y + c X'X c.
        rss = (self.yty - 2.0 * np.einsum("jp,bjp->bj", coef, self.xty)
               + np.einsum("jp,bpq,jq->bj", coef, self.xtx, coef))
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.maximum(rss, 0.0) / self.count[:, None]
        return coef, np.sqrt(np.where(self.count[:, None] > 0, var, np.nan)).T


def fit_pixel_regression(condition: np.ndarray, truth: np.ndarray, *, conditions: Sequence[str],
                         pixel_mpc: float, condition_floors: Sequence[float],
                         target_floors: Sequence[float]) -> PixelRegression:
    """The :class:`PixelRegression` of training maps held in memory.

    Parameters
    ----------
    condition : ndarray, shape (N, C, R, R)
        Condition maps (physical).
    truth : ndarray, shape (N, 2, R, R)
        Target maps (physical).
    conditions : sequence of str
        Names of the ``C`` condition channels.
    pixel_mpc : float
        Pixel side [Mpc].
    condition_floors, target_floors : sequence of float
        Floors of the log transforms (physical units).
    """
    fit = _RegressionFit(tuple(conditions), int(np.shape(truth)[-1]), pixel_mpc, condition_floors, target_floors)
    fit.add(np.asarray(condition), np.asarray(truth))
    return fit.result()


class _RegressionFit:
    def __init__(self, conditions: tuple[str, ...], npix: int, pixel_mpc: float,
                 condition_floors: Sequence[float], target_floors: Sequence[float]) -> None:
        from cmpipe.evaluation.metrics import radial_bin_edges

        self.conditions = conditions
        self.pixel_mpc = float(pixel_mpc)
        self.edges = radial_bin_edges(npix, pixel_mpc)
        self.cfloors = np.asarray(condition_floors, dtype=np.float64)
        self.tfloors = np.asarray(target_floors, dtype=np.float64)
        self.acc = _RegressionAccumulator(len(regression_feature_names(conditions)), len(self.edges) - 1)
        self.offsets: np.ndarray | None = None

    def add(self, condition: np.ndarray, truth: np.ndarray) -> None:
        if self.offsets is None:  # the first batch's means: centred enough to condition the fit
            logc, r = _linear_terms(condition, self.cfloors, self.pixel_mpc)
            self.offsets = np.array([*(v.mean() for v in logc), r.mean()])
        x, bins = _features(condition, self.cfloors, self.pixel_mpc, self.edges, self.offsets)
        y = np.log10(np.maximum(np.asarray(truth, dtype=np.float64), self.tfloors.reshape(-1, 1, 1)))
        self.acc.add(x, y, bins)

    def result(self) -> PixelRegression:
        coef, std = self.acc.solve()
        return PixelRegression(self.conditions, coef, std, self.edges, self.cfloors, self.tfloors, self.offsets,
                               self.pixel_mpc, int(self.acc.count.sum()))


# ----------------------------------------------------------------------------- the store


def _floors(attrs: Mapping[str, Any], channels: Sequence[str]) -> np.ndarray:
    """Log floor of each channel: the store's normalisation floor (``log``), else 1e-6 of its
    train maximum (``linear``)."""
    norm = attrs.get("normalisation")
    if norm is None:
        from cmpipe.store.zarr_store import StoreError

        raise StoreError("the store has no normalisation (generation did not finish)")
    out = []
    for c in channels:
        stats = norm["channels"][c]
        floor = stats.get("floor") if norm.get("kind") == "log" else None
        out.append(float(floor) if floor is not None else _LINEAR_FLOOR_FRACTION * abs(float(stats["max"])))
    return np.asarray(out, dtype=np.float64)


def _train_batches(group, resolution: int, channels: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(halo_id, log10 M, maps (n, len(channels), R, R))`` of the usable training images, one
    store chunk at a time."""
    attrs = group.attrs
    index = list(attrs["channels"])
    pick = [index.index(c) for c in channels]
    factor = int(attrs["npix"]) // int(resolution)
    usable = (group["split"][:] == _TRAIN) & (group["image_failed"][:] == 0)
    halo, logm = group["halo_id"][:], group["log10_m200m_msun_h"][:]
    step = int(attrs.get("chunk_images") or 64)
    for start in range(0, len(usable), step):
        rows = np.flatnonzero(usable[start:start + step])
        if rows.size == 0:
            continue
        block = np.asarray(group["maps"][start:start + step], dtype=np.float64)[rows][:, pick]
        yield halo[start + rows], logm[start + rows], block_mean(block, factor)


def fit_baselines(store_path: str | os.PathLike[str], *, resolution: int, conditions: Sequence[str],
                  names: Sequence[str] = BASELINES, k_neighbours: int = ORACLE_NEIGHBOURS) -> dict[str, Any]:
    """Fit the baselines ``names`` on the training split of a normalised store (one pass).

    Parameters
    ----------
    store_path : str or path-like
    resolution : int
        The model's grid [pixels per side], a divisor of the store's ``npix``.
    conditions : sequence of str
        The regression's condition channels, in order (the model's ``model.conditions``).
    names : sequence of str
        Baselines to fit (:data:`BASELINES`).
    k_neighbours : int
        The oracle's ``k``.

    Returns
    -------
    dict
        Name -> :class:`MassOracle` or :class:`PixelRegression`.
    """
    from cmpipe.store.zarr_store import open_store

    _check_names(names)
    group = open_store(store_path)
    attrs = dict(group.attrs)
    conditions = tuple(conditions)
    pixel = float(attrs["pixel_mpc"]) * int(attrs["npix"]) / int(resolution)
    usable = (group["split"][:] == _TRAIN) & (group["image_failed"][:] == 0)
    if not usable.any():
        raise ValueError(f"{store_path}: no usable training images to fit the baselines on")
    oracle = _OracleAccumulator(group["halo_id"][:][usable], group["log10_m200m_msun_h"][:][usable],
                                (2, int(resolution), int(resolution))) if "mass_oracle" in names else None
    regression = _RegressionFit(conditions, int(resolution), pixel, _floors(attrs, conditions),
                                _floors(attrs, _TARGETS)) if "pixel_regression" in names else None
    for halo, _, maps in _train_batches(group, resolution, (*_TARGETS, *conditions)):
        if oracle is not None:
            oracle.add(halo, maps[:, :2])
        if regression is not None:
            regression.add(maps[:, 2:], maps[:, :2])
    fitted: dict[str, Any] = {}
    if oracle is not None:
        fitted["mass_oracle"] = oracle.result(k_neighbours)
    if regression is not None:
        fitted["pixel_regression"] = regression.result()
    return fitted


def _check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; the baselines are {list(BASELINES)}")


def baseline_dir(results_dir: str | os.PathLike[str], name: str) -> AnyPath:
    """``RESULTS/baselines/<name>`` (a path or an object-store URL)."""
    return as_path(results_dir) / "baselines" / name


#: Images written to a baseline's ``posterior.zarr`` at once (:func:`cmpipe.store.posterior.write_images`).
_WRITE_BLOCK = 16

#: What a baseline's directory holds (all removed before it is made again).
_OUTPUTS = ("tables", "posterior.zarr", "images.parquet", "baseline.json")


def _describe(model: Any) -> dict[str, Any]:
    if isinstance(model, MassOracle):
        return {"k_neighbours": model.k, "training_halos": int(len(model.halo_id)),
                "training_images": int(model.n_images.sum())}
    return {"features": regression_feature_names(model.conditions), "coef": model.coef.tolist(),
            "residual_std_dex": np.where(np.isfinite(model.residual_std), model.residual_std, -1.0).tolist(),
            "offsets": model.offsets.tolist(), "edges_mpc": model.edges_mpc.tolist(),
            "condition_floors": model.condition_floors.tolist(),
            "target_floors": model.target_floors.tolist(), "training_pixels": model.n_pixels}


def _identity(name: str, attrs: Mapping[str, Any], selected: Mapping[str, np.ndarray], grid: Grid, n_samples: int,
              seed: int, conditions: Sequence[str], k_neighbours: int, save_samples: bool) -> dict[str, Any]:
    return {"baseline": name, "version": BASELINE_VERSION, "store_fingerprint": attrs["store_fingerprint"],
            "image_index": [int(i) for i in selected["image_index"]], "resolution": int(grid.npix),
            "pixel_mpc": float(grid.pixel_mpc), "depth_mpc": float(grid.depth_mpc),
            "rho_bar_msun_mpc3": {k: float(v) for k, v in grid.rho_bar_msun_mpc3.items()},
            "k_split_mpc_inv": float(grid.k_split_mpc_inv), "convergence_tolerance": float(grid.convergence_tolerance),
            "n_samples": int(n_samples), "seed": int(seed), "conditions": list(conditions),
            "k_neighbours": int(k_neighbours) if name == "mass_oracle" else None, "save_samples": bool(save_samples)}


def _done(directory: AnyPath, identity: Mapping[str, Any]) -> dict[str, Any] | None:
    path = refreshed(directory / "baseline.json")
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if record.get("identity") == dict(identity) else None


def _channel_units(attrs: Mapping[str, Any]) -> dict[str, str]:
    units = attrs["channel_units"]
    if isinstance(units, Mapping):
        return {c: str(units[c]) for c in attrs["channels"]}
    return {c: str(u) for c, u in zip(attrs["channels"], units)}


@dataclass(frozen=True)
class _TestImages:
    """The selected test images on the model's grid, read once for every baseline."""

    selected: Mapping[str, np.ndarray]
    index: np.ndarray
    truth: np.ndarray
    cond: np.ndarray
    images_columns: dict[str, Any]


def _pending(names: Sequence[str], results_dir: str | os.PathLike[str],
             identities: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The summaries of the baselines done before (``skipped``) and the names still to do."""
    out: dict[str, dict[str, Any]] = {}
    todo = []
    for name in names:
        record = _done(baseline_dir(results_dir, name), identities[name])
        if record is not None:
            out[name] = {**record["summary"], "skipped": True}
        else:
            todo.append(name)
    return out, todo


def _read_test_images(group: Any, store_path: str, selected: Mapping[str, np.ndarray], grid: Grid,
                      conditions: Sequence[str]) -> _TestImages:
    """The selected images' target and condition maps on the model's grid, and the columns of
    ``images.parquet``."""
    sattrs = dict(group.attrs)
    channels = list(sattrs["channels"])
    missing = [c for c in (*_TARGETS, *conditions) if c not in channels]
    if missing:
        raise ValueError(f"{store_path}: the store lacks the channels {missing} (it has {channels})")
    factor = int(sattrs["npix"]) // grid.npix
    index = np.asarray(selected["image_index"], dtype=np.int64)
    raw = np.asarray(group["maps"].get_orthogonal_selection(
        (index, [channels.index(c) for c in (*_TARGETS, *conditions)])), dtype=np.float64)
    if not np.all(np.isfinite(raw)):
        raise ValueError(f"{store_path}: selected test images have non-finite maps (not generated?)")
    maps = block_mean(raw, factor)
    split_names = list(sattrs.get("split_names") or SPLIT_NAMES)
    n_all = group["split"].shape[0]
    images_columns = {
        "image_index": np.arange(n_all), "halo_id": group["halo_id"][:],
        "log10_m200m_msun_h": group["log10_m200m_msun_h"][:],
        "split": [split_names[int(c)] for c in group["split"][:]], "failed": group["image_failed"][:] == 1,
        "selected": np.isin(np.arange(n_all), index),
    }
    return _TestImages(selected, index, maps[:, :2], maps[:, 2:], images_columns)


def _reset(directory: AnyPath) -> None:
    """Make ``directory`` a results directory without any of :data:`_OUTPUTS` (a baseline not
    done: whatever is there is redone)."""
    from cmpipe.store.outputs import mark_directory

    if not is_remote(directory):
        directory.mkdir(parents=True, exist_ok=True)
    mark_directory(directory, "results")
    for entry in _OUTPUTS:
        path = refreshed(directory / entry)
        if path.is_dir():
            remove_tree(path)
        elif path.exists():
            path.unlink()


def _sample_and_evaluate(name: str, model: Any, images: _TestImages, grid: Grid, n_samples: int, seed: int,
                         conditions: tuple[str, ...], post: Any) -> tuple[dict[str, dict[str, list[Any]]], list[float]]:
    """Every test image of one baseline: its samples (into ``post``, a ``posterior.zarr``) and its
    table rows; with the sampling time of each image [s]."""
    from cmpipe.evaluation.image import evaluate_image
    from cmpipe.store.posterior import write_images
    from cmpipe.store.tables import SCHEMAS

    selected, truth, cond = images.selected, images.truth, images.cond
    rows: dict[str, dict[str, list[Any]]] = {t: {} for t in SCHEMAS}
    seconds = []
    block: list[tuple[int, dict[str, np.ndarray]]] = []  # images not yet written to ``post``
    keep_samples = bool(post.attrs.get("save_samples"))
    for row, i in enumerate(images.index):
        t1 = time.perf_counter()
        rng = np.random.default_rng([int(seed), _STREAM[name], int(i)])
        if name == "mass_oracle":
            samples = model.sample(float(selected["log10_m200m_msun_h"][row]), n_samples, rng)
        else:
            samples = model.sample(cond[row], n_samples, rng)
        seconds.append(time.perf_counter() - t1)
        key = {"image_index": int(i), "halo_id": int(selected["halo_id"][row]),
               "log10_m200m_msun_h": float(selected["log10_m200m_msun_h"][row])}
        extra = {"r500c_mpc": float(selected["r500c_mpc"][row])} if "r500c_mpc" in selected else {}
        tables = evaluate_image(samples=samples, truth=truth[row], condition=cond[row], grid=grid, key=key,
                                r200m_mpc=float(selected["r200m_mpc"][row]), seconds=seconds[-1],
                                conditions=conditions, **extra)
        for table, columns in tables.items():
            for col, values in columns.items():
                rows[table].setdefault(col, []).extend(values)
        block.append((row, {"truth": truth[row], "condition": cond[row], "mean": samples.mean(axis=0),
                            "std": samples.std(axis=0, ddof=1) if n_samples > 1 else np.zeros_like(truth[row]),
                            **({"samples": samples} if keep_samples else {})}))
        if len(block) == _WRITE_BLOCK or row == len(images.index) - 1:
            write_images(post, [r for r, _ in block], [maps for _, maps in block])
            block = []
    return rows, seconds


def _write_done(directory: AnyPath, record: Mapping[str, Any]) -> None:
    """``baseline.json``, written whole (one PUT on an object store): the done flag, written last."""
    write_text_atomic(directory / "baseline.json", json.dumps(record, indent=2) + "\n")


def run_baselines(
    store_path: str | os.PathLike[str],
    results_dir: str | os.PathLike[str],
    *,
    selected: Mapping[str, np.ndarray],
    grid: Grid,
    n_samples: int,
    seed: int,
    conditions: Sequence[str] = ("sz_y", "xray_sb"),
    names: Sequence[str] = BASELINES,
    k_neighbours: int = ORACLE_NEIGHBOURS,
    save_samples: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Fit, sample and evaluate the baselines on the selected test images; resumable.

    Parameters
    ----------
    store_path : str or path-like
        The normalised image store the model was trained on.
    results_dir : str or path-like
        The results directory; each baseline goes to ``results_dir/baselines/<name>/``.
    selected : mapping
        The test images, as :func:`cmpipe.stages.infer.select_test_images` returns them:
        ``image_index``, ``halo_id``, ``log10_m200m_msun_h``, ``r200m_mpc`` [Mpc] and, if
        present, ``r500c_mpc`` [Mpc] (passed on to :func:`cmpipe.evaluation.image.evaluate_image`).
    grid : cmpipe.evaluation.image.Grid
        The model's grid (``grid.npix`` = ``model.resolution``) and metric settings.
    n_samples : int
        Samples per image (``infer.n_samples``: the model's count).
    seed : int
        Image ``i`` of baseline ``b`` samples from ``default_rng([seed, b, i])`` (``infer.seed``).
    conditions : sequence of str
        The condition channels (the model's), in order: the regression's inputs and the
        ``input_<name>`` spectra comparisons.
    names : sequence of str
        Which baselines (:data:`BASELINES`).
    k_neighbours : int
        The mass oracle's ``k`` (:data:`ORACLE_NEIGHBOURS`).
    save_samples : bool
        Also store every sample in ``posterior.zarr`` (``infer.save_samples``).
    attrs : mapping, optional
        Extra root attributes of each ``posterior.zarr`` (e.g. ``config_yaml``, which the report
        reads its settings from).

    Returns
    -------
    dict
        Name -> ``{"skipped", "images", "fit_s", "s_per_image", "wall_s", "results"}``.
    """
    from cmpipe.store.posterior import open_or_create
    from cmpipe.store.tables import to_table, write_images_table, write_part
    from cmpipe.store.zarr_store import open_store

    _check_names(names)
    t_start = time.perf_counter()
    store_path = as_path(store_path)
    store_path = str(store_path if is_remote(store_path) else Path(store_path).resolve())
    group = open_store(store_path)
    sattrs = dict(group.attrs)
    conditions = tuple(conditions)
    identities = {n: _identity(n, sattrs, selected, grid, n_samples, seed, conditions, k_neighbours, save_samples)
                  for n in names}
    out, todo = _pending(names, results_dir, identities)
    if not todo:
        return out
    t0 = time.perf_counter()
    fitted = fit_baselines(store_path, resolution=grid.npix, conditions=conditions, names=todo,
                           k_neighbours=k_neighbours)
    fit_s = time.perf_counter() - t0
    images = _read_test_images(group, store_path, selected, grid, conditions)
    for name in todo:
        t_name = time.perf_counter()
        directory = baseline_dir(results_dir, name)
        _reset(directory)
        post = open_or_create(directory, selected, {
            "targets": list(_TARGETS), "conditions": list(conditions), "channel_units": _channel_units(sattrs),
            "pixel_mpc": float(grid.pixel_mpc), "resolution": int(grid.npix), "depth_mpc": float(grid.depth_mpc),
            "n_samples": int(n_samples), "sampler": name, "steps": 0, "denoise": False, "seed": int(seed),
            "save_samples": bool(save_samples), "checkpoint": "", "checkpoint_step": 0, "store": store_path,
            "store_fingerprint": sattrs["store_fingerprint"], "baseline": name, **dict(attrs or {}),
        })
        rows, seconds = _sample_and_evaluate(name, fitted[name], images, grid, n_samples, seed, conditions, post)
        for table, columns in rows.items():
            write_part(directory, table, to_table(table, columns), [int(i) for i in images.index])
        write_images_table(directory, images.images_columns)
        summary = {"skipped": False, "images": int(len(images.index)), "fit_s": fit_s,
                   "s_per_image": float(np.mean(seconds)) if seconds else 0.0,
                   "wall_s": time.perf_counter() - t_name, "results": str(directory)}
        _write_done(directory, {"identity": identities[name], "fit": _describe(fitted[name]), "summary": summary})
        out[name] = summary
        logger.info("baseline %s: %d test images in %.1f s (fit %.1f s)", name, len(images.index), summary["wall_s"],
                    fit_s)
    logger.info("baselines %s done in %.1f s", ", ".join(todo), time.perf_counter() - t_start)
    return out

"""Training images streamed from the Zarr image store, normalised as the store records.

:class:`StoreDataset` opens the store lazily (once per process: each DataLoader worker opens its
own handle) and reads one image at a time, never the whole store. The store may be a local path
or an object-store URL: :func:`cmpipe.store.zarr_store.open_store` opens it through
:func:`cmpipe.store.location.zarr_store` (zarr's ``FsspecStore``, credentials from the
environment); the dataset keeps only the path's string, so it pickles to DataLoader and Ray
workers, each of which opens its own handle. The per-image ``split`` and
``image_failed`` arrays (one byte per image) are read when the dataset is made.

Channels: the targets ``gas_sigma``, ``dm_sigma`` become ``x`` and the conditions (``model.conditions``;
by default ``sz_y``, ``xray_sb``) become ``cond``, in those orders (:data:`TARGET_CHANNELS`,
:data:`CONDITION_CHANNELS`).

Normalisation (the store's ``normalisation`` attribute, :mod:`cmpipe.store.schema`): per channel
``t(x) = log10(max(x, floor))`` (``kind: log``) or ``t(x) = x`` (``linear``), then
``(t - min) / (max - min)``, clipped to [0, 1] (a no-op on train images, whose range defines
``min`` and ``max``; val and test images may stray outside it). :func:`denormalise` inverts it.

Down-sampling to ``resolution`` averages the *physical* maps over ``f x f`` blocks (``f = npix /
resolution``, an integer) before normalising, so surface densities and fluxes are conserved
and block means of train maps stay inside the recorded range.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from cmpipe.store.schema import CONDITION_CHANNELS, SPLIT_CODES, TARGET_CHANNELS

__all__ = [
    "CONDITION_CHANNELS",
    "SPLIT_CODES",
    "TARGET_CHANNELS",
    "StoreDataset",
    "block_mean",
    "denormalise",
    "dihedral",
    "normalise",
]



def _channel_stats(normalisation: Mapping[str, Any], name: str) -> tuple[float | None, float, float]:
    stats = normalisation["channels"][name]
    floor = stats["floor"] if normalisation["kind"] == "log" else None
    return floor, float(stats["min"]), float(stats["max"])


def normalise(maps: np.ndarray, channels: Sequence[str], normalisation: Mapping[str, Any], clip: bool = True) -> np.ndarray:
    """Physical maps -> [0, 1] by the store's recorded transform.

    Parameters
    ----------
    maps : numpy.ndarray
        ``(..., C, H, W)`` physical maps (units of :data:`cmpipe.mapmaking.maps.CHANNEL_UNITS`).
    channels : sequence of str
        The ``C`` channel names, in order.
    normalisation : mapping
        The store's ``normalisation`` attribute.
    clip : bool
        Clip the result to [0, 1].

    Returns
    -------
    numpy.ndarray
        float32, same shape.
    """
    maps = np.asarray(maps, dtype=np.float64)
    out = np.empty(maps.shape, dtype=np.float32)
    for i, name in enumerate(channels):
        floor, lo, hi = _channel_stats(normalisation, name)
        t = np.log10(np.maximum(maps[..., i, :, :], floor)) if floor is not None else maps[..., i, :, :]
        v = (t - lo) / (hi - lo)
        out[..., i, :, :] = np.clip(v, 0.0, 1.0) if clip else v
    return out


def denormalise(x, channels: Sequence[str], normalisation: Mapping[str, Any]):
    """Normalised maps -> physical maps: the inverse of the store's transform.

    ``t = min + x (max - min)``; then ``10**t`` (``kind: log``) or ``t`` (``linear``). Values
    at or below the log floor come back as the floor.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        ``(..., C, H, W)`` normalised maps (e.g. samples of the model).
    channels : sequence of str
        The ``C`` channel names, in order (e.g. :data:`TARGET_CHANNELS`).
    normalisation : mapping
        The store's ``normalisation`` attribute (also recorded in every checkpoint).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type and shape as ``x``, in the channels' physical units.
    """
    is_torch = isinstance(x, torch.Tensor)
    parts = []
    for i, name in enumerate(channels):
        floor, lo, hi = _channel_stats(normalisation, name)
        t = lo + x[..., i, :, :] * (hi - lo)
        if floor is not None:
            t = torch.pow(10.0, t) if is_torch else np.power(10.0, t)
        parts.append(t)
    return torch.stack(parts, dim=-3) if is_torch else np.stack(parts, axis=-3)


def block_mean(maps: np.ndarray, factor: int) -> np.ndarray:
    """Average ``(..., H, W)`` over ``factor x factor`` blocks (``H``, ``W`` multiples of it)."""
    *lead, h, w = maps.shape
    if h % factor or w % factor:
        raise ValueError(f"maps of {h}x{w} pixels cannot be averaged over {factor}x{factor} blocks")
    return maps.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))


def dihedral(a: np.ndarray, k: int, flip: bool) -> np.ndarray:
    """Rotate ``(..., H, W)`` by ``k`` quarter turns (``numpy.rot90`` on the last two axes),
    then mirror the last axis if ``flip``: the 8 symmetries of the square."""
    out = np.rot90(a, k, axes=(-2, -1))
    return out[..., ::-1] if flip else out


class StoreDataset(Dataset):
    """One split of an image store as ``(x, cond)`` pairs of normalised maps.

    Parameters
    ----------
    store_path : str, path-like or URL
        The Zarr image store; it must be complete and normalised.
    split : {"train", "val", "test"}
    resolution : int, optional
        Side of the returned maps [pixels]: a divisor of the store's ``npix`` (block means of
        the physical maps, see the module docstring). Default: ``npix``.
    augment : bool
        Random flips and quarter turns, the same for ``x`` and ``cond``, drawn from
        ``numpy.random.default_rng([seed, epoch, index])`` (:meth:`transform_for`).
    seed : int
        Seed of the augmentation.
    conditions : sequence of str
        The condition channels of ``cond``, in order (``model.conditions``; default
        :data:`CONDITION_CHANNELS`).

    Notes
    -----
    An item key is an index ``i`` (the epoch is :attr:`epoch`, set by :meth:`set_epoch`) or a
    pair ``(epoch, i)``; the latter makes the augmentation independent of worker processes.
    Failed images (``image_failed``) are left out. Items are ``(x, cond)``, float32 tensors of
    shape ``(2, R, R)`` and ``(C_cond, R, R)``, ``R = resolution``.
    """

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        split: str,
        *,
        resolution: int | None = None,
        augment: bool = False,
        seed: int = 0,
        conditions: Sequence[str] = CONDITION_CHANNELS,
    ) -> None:
        from cmpipe.store.zarr_store import StoreError, open_store

        if split not in SPLIT_CODES:
            raise ValueError(f"split must be one of {', '.join(SPLIT_CODES)}; got {split!r}")
        self.store_path = str(store_path)
        group = open_store(store_path)
        attrs = group.attrs
        norm = attrs.get("normalisation")
        if norm is None:
            raise StoreError(
                f"{store_path}: the store has no normalisation (incomplete: generation did not finish); "
                "finish it with `cmpipe generate` (or cmpipe.store.compute_normalisation) before training"
            )
        channels = list(attrs["channels"])
        conditions = tuple(conditions)
        if not conditions or set(conditions) & set(TARGET_CHANNELS) or len(set(conditions)) != len(conditions):
            raise ValueError(f"conditions must be distinct non-target channels; got {list(conditions)}")
        missing = [c for c in (*TARGET_CHANNELS, *conditions) if c not in channels]
        if missing:
            raise StoreError(f"{store_path}: the store lacks the channels {missing} (it has {channels})")
        npix = int(attrs["npix"])
        resolution = npix if resolution is None else int(resolution)
        if resolution <= 0 or npix % resolution:
            raise ValueError(f"resolution {resolution} must divide the store's npix {npix}")
        self.normalisation: dict[str, Any] = dict(norm)
        self.store_fingerprint: str = attrs["store_fingerprint"]
        self.npix = npix
        self.resolution = resolution
        self.factor = npix // resolution
        self.split = split
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        #: The condition channels of ``cond``, in order.
        self.conditions: tuple[str, ...] = conditions
        self._order = [channels.index(c) for c in (*TARGET_CHANNELS, *conditions)]
        self._names = [*TARGET_CHANNELS, *conditions]
        usable = (group["split"][:] == SPLIT_CODES[split]) & (group["image_failed"][:] == 0)
        #: Store indices of this split's images, ascending.
        self.indices = np.flatnonzero(usable)
        #: log10 M200m of each item [log10 Msun/h] (e.g. the mass strata of sigma_max's subset).
        self.log10_m200m_msun_h = np.asarray(group["log10_m200m_msun_h"][:], dtype=np.float64)[self.indices]
        self._maps = None  # opened lazily, per process

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = None  # each worker opens its own handle
        return state

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used by integer keys (augmentation seed)."""
        self.epoch = int(epoch)

    def transform_for(self, epoch: int, i: int) -> tuple[int, bool]:
        """``(k, flip)`` of item ``i`` in ``epoch`` (:func:`dihedral`); ``(0, False)`` without
        augmentation."""
        if not self.augment:
            return 0, False
        rng = np.random.default_rng([self.seed, int(epoch), int(i)])
        return int(rng.integers(4)), bool(rng.integers(2))

    def physical(self, i: int) -> np.ndarray:
        """Item ``i``'s physical maps, channels (targets, conditions), down-sampled:
        ``(2 + C_cond, R, R)`` float64."""
        if self._maps is None:
            from cmpipe.store.zarr_store import open_store

            self._maps = open_store(self.store_path)["maps"]
        image = np.asarray(self._maps[int(self.indices[i])], dtype=np.float64)[self._order]
        return block_mean(image, self.factor) if self.factor > 1 else image

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} {self.split} images")
        maps = normalise(self.physical(i), self._names, self.normalisation)
        k, flip = self.transform_for(epoch, i)
        if k or flip:
            maps = dihedral(maps, k, flip)
        maps = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
        return maps[:2].clone(), maps[2:].clone()

"""The conditional NCSN++ score network of score_models 0.5.11, and the VE SDE's sigma_max.

The network generates the 2 target channels (``gas_sigma``, ``dm_sigma``) with the
``len(model.conditions)`` condition channels (default ``sz_y``, ``xray_sb``) concatenated to its
input (score_models' ``condition=["input"]``), under the VE SDE ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``.
Hyper-parameters come from the ``model`` config section (:class:`cmpipe.config.ModelConfig`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover
    from score_models import ScoreModel
    from torch.utils.data import Dataset

    from cmpipe.config import ModelConfig

__all__ = ["SIGMA_MAX_IMAGES", "build_model", "build_score_model", "compute_sigma_max", "count_parameters",
           "sigma_max_subset"]

logger = logging.getLogger(__name__)

#: Default cap on the training images :func:`compute_sigma_max` compares [count].
SIGMA_MAX_IMAGES = 1000


def build_score_model(model_cfg: ModelConfig, sigma_max: float, device: str | torch.device) -> ScoreModel:
    """A fresh (randomly initialised) conditional NCSN++ ``ScoreModel`` on ``device``.

    Parameters
    ----------
    model_cfg : ModelConfig
        ``nf``, ``ch_mult``, ``num_res_blocks``, ``attention``, ``fir``, ``sigma_min``,
        ``conditions`` (one input channel each).
    sigma_max : float
        sigma_max of the VE SDE [normalised units], > sigma_min: ``model_cfg.sigma_max`` if
        set, else :func:`compute_sigma_max` of the training set.
    device : str or torch.device
        Where the network lives. Always explicit: score_models' default is ``cuda:0``.

    Returns
    -------
    score_models.ScoreModel
        ``sm.model`` is the NCSN++ network (wrap it, not ``sm``, for DDP).
    """
    from score_models import NCSNpp, ScoreModel

    sigma_max = float(sigma_max)
    if not sigma_max > model_cfg.sigma_min:
        raise ValueError(f"sigma_max {sigma_max} must exceed model.sigma_min {model_cfg.sigma_min}")
    net = NCSNpp(
        channels=2, dimensions=2, nf=model_cfg.nf, ch_mult=tuple(model_cfg.ch_mult),
        num_res_blocks=model_cfg.num_res_blocks, attention=model_cfg.attention, fir=model_cfg.fir,
        condition=["input"], condition_input_channels=len(model_cfg.conditions),
    )
    return ScoreModel(model=net, sde="ve", sigma_min=model_cfg.sigma_min, sigma_max=sigma_max, device=torch.device(device))


def build_model(model_cfg: ModelConfig, sigma_max: float, device: str | torch.device) -> Any:
    """A fresh model of kind ``model_cfg.kind`` on ``device``.

    ``score``: :func:`build_score_model` (needs ``sigma_max``). ``unet``:
    :func:`cmpipe.model.unet.build_unet_model`, a :class:`~cmpipe.model.unet.RegressionModel`
    with the same training interface (``sigma_max`` is ignored). Both draw their initial
    weights from torch's global RNG.
    """
    if model_cfg.kind == "unet":
        from cmpipe.model.unet import build_unet_model

        return build_unet_model(model_cfg, device)
    if model_cfg.kind != "score":
        raise ValueError(f"model.kind must be score or unet; got {model_cfg.kind!r}")
    return build_score_model(model_cfg, sigma_max, device)


def count_parameters(module: torch.nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module`` (a ScoreModel counts its network)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def sigma_max_subset(log10_masses: np.ndarray, max_images: int, seed: int) -> np.ndarray:
    """Which images :func:`compute_sigma_max` compares: a random, mass-stratified subset.

    All ``n`` images if ``n <= max_images``; else the images sorted by mass (ties in item
    order) are cut into ``max_images`` strata of (nearly) equal counts, and one image is drawn
    from each stratum with ``numpy.random.default_rng(seed)``: every part of the training set's
    mass distribution is represented in proportion, whatever the store's order.

    Parameters
    ----------
    log10_masses : array of float, shape (n,)
        log10 M200m of each item [log10 Msun/h] (any monotonic mass measure will do).
    max_images : int
        Cap on the subset [count].
    seed : int
        Seed of the draw (``train.seed``).

    Returns
    -------
    ndarray of int64
        Item indices, ascending.
    """
    masses = np.asarray(log10_masses, dtype=np.float64)
    n = masses.size
    if n <= max_images:
        return np.arange(n, dtype=np.int64)
    order = np.argsort(masses, kind="stable")
    edges = np.round(np.linspace(0, n, int(max_images) + 1)).astype(np.int64)
    rng = np.random.default_rng(int(seed))
    picks = edges[:-1] + np.floor(rng.random(int(max_images)) * np.diff(edges)).astype(np.int64)
    return np.sort(order[picks])


def compute_sigma_max(dataset: Dataset, max_images: int = SIGMA_MAX_IMAGES, block: int = 256, *,
                      seed: int = 0, log10_masses: np.ndarray | None = None) -> float:
    """sigma_max by Song & Ermon (2020, technique 1): the largest pairwise Euclidean distance
    between training images.

    Exact over ``min(len(dataset), max_images)`` items of ``dataset`` (the normalised targets
    ``x``, as the model sees them; pass a dataset without augmentation, which would pair the
    images in random orientations): all of them, or above the cap a random, mass-stratified
    subset (:func:`sigma_max_subset`, seeded by ``seed``; the masses are ``log10_masses``, else
    the dataset's ``log10_m200m_msun_h`` attribute, else none: a uniform random subset), never
    the first items in store order, which a store ordered by mass would bias. The pairwise
    distances are computed in float64 in blocks of ``block`` rows. The cost is
    ``O(n^2 * 2 R^2)``; with ``n = 1000`` at 128x128, about 33 GFLOP. Record the value (the
    training loop writes it into every checkpoint's hyper-parameters).

    Parameters
    ----------
    dataset : Dataset
        Items ``(x, cond)``; only ``x`` is used.
    max_images : int
        Cap on the images compared [count], >= 2.
    block : int
        Rows per block of the distance matrix.
    seed : int
        Seed of the subset (the training loop passes ``train.seed``).
    log10_masses : array of float, optional
        log10 M200m of every item [log10 Msun/h], ``len(dataset)`` values.

    Returns
    -------
    float
        The largest distance [normalised units].
    """
    n = min(len(dataset), int(max_images))
    if n < 2:
        raise ValueError(f"sigma_max needs at least 2 images; the dataset has {len(dataset)} (max_images {max_images})")
    if log10_masses is None:
        log10_masses = getattr(dataset, "log10_m200m_msun_h", None)
    if log10_masses is None:
        log10_masses = np.zeros(len(dataset))  # one stratum per draw over item order: uniform random
    elif len(log10_masses) != len(dataset):
        raise ValueError(f"{len(log10_masses)} masses for a dataset of {len(dataset)} items")
    items = sigma_max_subset(log10_masses, n, seed)
    first = dataset[int(items[0])][0].numpy().ravel()
    flat = np.empty((n, first.size), dtype=np.float64)
    flat[0] = first
    for row, i in enumerate(items[1:], start=1):
        flat[row] = dataset[int(i)][0].numpy().ravel()
    sq = np.einsum("ij,ij->i", flat, flat)
    best = 0.0
    for start in range(0, n, block):
        rows = flat[start : start + block]
        d2 = sq[start : start + block, None] + sq[None, :] - 2.0 * rows @ flat.T
        best = max(best, float(d2.max()))
    sigma_max = float(np.sqrt(max(best, 0.0)))
    logger.info("sigma_max = %.6g (largest pairwise distance of %d of %d training images, mass-stratified, seed %d)",
                sigma_max, n, len(dataset), seed)
    return sigma_max

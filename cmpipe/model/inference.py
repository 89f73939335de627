"""Posterior sampling of physical maps from a trained checkpoint (no Ray).

:class:`PosteriorSampler` wraps a loaded score model: physical condition maps (by default y,
S_X; the checkpoint's ``hyperparameters["channels"]["cond"]``, ``model.conditions`` at training)
in, physical posterior samples of (gas, DM) out, through the store's normalisation recorded in
the checkpoint and a sampler of :mod:`cmpipe.model.sampling`. The inference workers
(:func:`cmpipe.stages.infer.load_worker`: one per Ray Data actor of :mod:`cmpipe.pipeline.infer`, or
one for a serial run) build one each, through a loader that tests may replace. Image ``i``'s
samples are drawn from :func:`cmpipe.model.sampling.image_seed`, so they do not depend on batching.
For a checkpoint of ``model.kind: unet`` the loader returns a :class:`RegressionSampler`, with
the same interface: the deterministic baseline's point estimate repeated as every "sample".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from cmpipe.model.dataset import CONDITION_CHANNELS, TARGET_CHANNELS, denormalise, normalise

logger = logging.getLogger(__name__)


def resolve_checkpoint(checkpoint: str | os.PathLike[str]) -> Any:
    """A checkpoint file: ``checkpoint`` itself, or the latest in a run directory (a path or an
    object-store URL, :func:`cmpipe.store.location.as_path`; looked up afresh).

    Raises
    ------
    cmpipe.model.training.CheckpointError
        If there is none (naming the path).
    """
    from cmpipe.model.training import CHECKPOINT_DIR, CheckpointError, latest_checkpoint
    from cmpipe.store.location import as_path, check_reachable
    from cmpipe.store.tables import refreshed

    check_reachable(as_path(checkpoint), "checkpoint")
    path = refreshed(checkpoint)  # a local path or an object-store URL, listed afresh
    if path.is_file():
        return path
    latest = latest_checkpoint(path) if path.is_dir() else None
    if latest is None:
        raise CheckpointError(f"{checkpoint}: neither a checkpoint file nor a run directory with one in "
                              f"{path / CHECKPOINT_DIR}")
    return latest


def checkpoint_conditions(hyperparameters: Any) -> tuple[str, ...]:
    """The condition channels a checkpoint was trained with (its ``channels.cond``; the default
    :data:`~cmpipe.model.dataset.CONDITION_CHANNELS` for checkpoints that lack it)."""
    return tuple(hyperparameters.get("channels", {}).get("cond", CONDITION_CHANNELS))


class PosteriorSampler:
    """Samples of (gas_sigma, dm_sigma) given the condition maps (:attr:`conditions`, by
    default sz_y, xray_sb), in physical units.

    Parameters
    ----------
    sm : score_models.ScoreModel
        The conditional VE score model (eval mode), with ``sm.hyperparameters["cmpipe"]``
        (:func:`cmpipe.model.training.load_for_inference`).
    sampler, steps, denoise, batch_size :
        As ``infer.*`` in the config (:class:`cmpipe.config.InferConfig`).
    """

    def __init__(self, sm: Any, *, sampler: str, steps: int, denoise: bool, batch_size: int) -> None:
        from cmpipe.model.sampling import model_score_function

        self.sm = sm
        self.hyperparameters = sm.hyperparameters["cmpipe"]
        self.normalisation = self.hyperparameters["normalisation"]
        self.resolution = int(self.hyperparameters["model"]["resolution"])
        #: The condition channels of ``sample``'s input, in order.
        self.conditions: tuple[str, ...] = checkpoint_conditions(self.hyperparameters)
        self.score_fn = model_score_function(sm)
        self.sampler, self.steps, self.denoise, self.batch_size = sampler, int(steps), bool(denoise), int(batch_size)
        #: Extra keyword arguments of the sampler (e.g. ``s_churn`` of ``edm``; see
        #: :func:`cmpipe.model.sampling.sample_posterior`); empty: its defaults.
        self.sampler_options: dict[str, float] = {}

    @property
    def device(self) -> torch.device:
        return next(self.sm.model.parameters()).device

    def sample(self, condition: np.ndarray, n_samples: int, seeds: Sequence[int]) -> np.ndarray:
        """Posterior samples for a batch of images.

        Parameters
        ----------
        condition : ndarray, shape (B, C_cond, R, R)
            Physical maps of :attr:`conditions` (by default sz_y [dimensionless], xray_sb
            [erg s^-1 cm^-2 sr^-1]) on the model's grid.
        n_samples : int
        seeds : sequence of int
            One per image: image ``b``'s samples depend only on ``seeds[b]``.

        Returns
        -------
        ndarray, shape (B, n_samples, 2, R, R)
            float64 physical (gas_sigma, dm_sigma) maps. The normalised samples are clipped to
            [0, 1], the range of the training data (as the conditions are by
            :func:`~cmpipe.model.dataset.normalise`), before the inverse transform: a poorly
            trained model's outliers would otherwise overflow the log transform.
        """
        from cmpipe.model.sampling import sample_posterior

        condition = np.asarray(condition)
        c = len(self.conditions)
        if condition.ndim != 4 or condition.shape[1:] != (c, self.resolution, self.resolution):
            raise ValueError(f"condition maps must be (B, {c}, {self.resolution}, {self.resolution}) "
                             f"({', '.join(self.conditions)}); got {condition.shape}")
        cond = torch.from_numpy(normalise(condition, self.conditions, self.normalisation)).to(self.device)
        with torch.no_grad():
            x = sample_posterior(self.score_fn, cond, n_samples, sampler=self.sampler, steps=self.steps,
                                 seeds=list(seeds), denoise=self.denoise, batch_size=self.batch_size,
                                 **self.sampler_options)
        x = np.clip(x.double().cpu().numpy(), 0.0, 1.0)
        return denormalise(x, TARGET_CHANNELS, self.normalisation)


class RegressionSampler:
    """The U-Net baseline behind :class:`PosteriorSampler`'s interface: a point estimate.

    ``sample`` returns the deterministic prediction repeated ``n_samples`` times, so the same
    evaluation runs on it: its "posterior" has zero spread (the posterior mean is the
    prediction; standardized errors are NaN, no sample-variance convergence, zero-width credible
    intervals). The seeds are accepted and ignored.

    Parameters
    ----------
    model : cmpipe.model.unet.RegressionModel
        In eval mode, with ``model.hyperparameters["cmpipe"]``
        (:func:`cmpipe.model.training.load_for_inference`).
    batch_size : int
        Images per forward pass.
    """

    def __init__(self, model: Any, *, batch_size: int) -> None:
        self.sm = model
        self.hyperparameters = model.hyperparameters["cmpipe"]
        self.normalisation = self.hyperparameters["normalisation"]
        self.resolution = int(self.hyperparameters["model"]["resolution"])
        #: The condition channels of ``predict``'s input, in order.
        self.conditions: tuple[str, ...] = checkpoint_conditions(self.hyperparameters)
        self.batch_size = max(1, int(batch_size))

    @property
    def device(self) -> torch.device:
        return next(self.sm.model.parameters()).device

    def predict(self, condition: np.ndarray) -> np.ndarray:
        """The prediction for a batch: ``(B, C_cond, R, R)`` physical condition maps -> ``(B, 2, R, R)``
        float64 physical (gas_sigma, dm_sigma) maps, clipped to [0, 1] in normalised units before
        the inverse transform (as :meth:`PosteriorSampler.sample`)."""
        condition = np.asarray(condition)
        c = len(self.conditions)
        if condition.ndim != 4 or condition.shape[1:] != (c, self.resolution, self.resolution):
            raise ValueError(f"condition maps must be (B, {c}, {self.resolution}, {self.resolution}) "
                             f"({', '.join(self.conditions)}); got {condition.shape}")
        cond = torch.from_numpy(normalise(condition, self.conditions, self.normalisation))
        out = []
        with torch.no_grad():
            for lo in range(0, len(cond), self.batch_size):
                out.append(self.sm.model(cond[lo : lo + self.batch_size].to(self.device)).double().cpu())
        x = torch.cat(out).numpy() if out else np.zeros((0, 2, *condition.shape[2:]))
        return denormalise(np.clip(x, 0.0, 1.0), TARGET_CHANNELS, self.normalisation)

    def sample(self, condition: np.ndarray, n_samples: int, seeds: Sequence[int]) -> np.ndarray:
        """:meth:`predict` repeated: ``(B, n_samples, 2, R, R)``, identical along axis 1."""
        if len(seeds) != len(condition):
            raise ValueError(f"{len(condition)} images but {len(seeds)} seeds")
        pred = self.predict(condition)
        return np.repeat(pred[:, None], int(n_samples), axis=1)


def load_posterior_sampler(
    checkpoint: str | os.PathLike[str],
    infer_cfg: Any,
    device: str | torch.device = "cpu",
    store_fingerprint: str | None = None,
) -> PosteriorSampler | RegressionSampler:
    """The default loader of the inference actors: a checkpoint's EMA weights on ``device``,
    as a :class:`PosteriorSampler`, or for ``model.kind: unet`` a :class:`RegressionSampler`.

    Parameters
    ----------
    checkpoint : str or path-like
        A checkpoint file or a run directory (its latest checkpoint).
    infer_cfg : cmpipe.config.InferConfig
    device : str or torch.device
    store_fingerprint : str, optional
        The store the samples are for: a checkpoint trained on another store is refused.
    """
    from cmpipe.model.training import load_for_inference

    path = resolve_checkpoint(checkpoint)
    sm = load_for_inference(path, device, store_fingerprint=store_fingerprint)
    if sm.hyperparameters["cmpipe"]["model"].get("kind", "score") == "unet":
        return RegressionSampler(sm, batch_size=infer_cfg.batch_size)
    return PosteriorSampler(sm, sampler=infer_cfg.sampler, steps=infer_cfg.steps, denoise=infer_cfg.denoise,
                            batch_size=infer_cfg.batch_size)


#: A loader: (checkpoint, infer config, device, store fingerprint) -> PosteriorSampler.
SamplerLoader = Callable[[str, Any, str, "str | None"], PosteriorSampler]

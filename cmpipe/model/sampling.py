"""Posterior sampling of the conditional VE score model: Euler-Maruyama, predictor-corrector,
Heun, DPM-Solver++(2M), stochastic EDM and SDE-DPM-Solver++(2M), behind one registry and one
entry point.

Every sampler sees the model only through a :class:`ScoreFunction` ``s(x, sigma, cond)``: the
score of the VE-perturbed posterior at noise level ``sigma`` [normalised units], so samplers are
testable against analytic scores. :func:`model_score_function` adapts a score_models 0.5.11
``ScoreModel`` (VE SDE, ``sigma(t) = sigma_min (sigma_max / sigma_min)^t``).

All samplers start from the VE prior ``x = sigma_max * N(0, I)``, integrate from ``sigma_max``
down to ``sigma_min`` and, with ``denoise=True``, end with one Tweedie step
``x <- x + sigma_min^2 s(x, sigma_min)`` (the posterior mean of the clean map given the sample
at ``sigma_min``; the same as a final Euler step of the probability-flow ODE to sigma = 0).

============  ==============================================================  =====================
name          method                                                          network evaluations
============  ==============================================================  =====================
``em``        reverse-SDE Euler-Maruyama, geometric sigma schedule, exactly   ``steps``
              score_models' ``ScoreModel.sample`` discretisation
``pc``        predictor-corrector (Song et al. 2021, Alg. 2): reverse-        ``2 steps``
              diffusion predictor + 1 Langevin corrector step (``snr``)
``heun``      probability-flow ODE, Heun 2nd order, EDM schedule (rho = 7)    ``2 steps``
``dpm2m``     DPM-Solver++(2M), denoiser (x0) form, EDM schedule (rho = 7)    ``steps``
``edm``       stochastic EDM (Karras et al. 2022, Alg. 2): Heun + churn       ``2 steps``
              (``euler_last``: the last step Euler)                           (``2 steps - 1``)
``dpm2m_sde`` SDE-DPM-Solver++(2M): exponential integrator of the reverse     ``steps``
              SDE, 2nd-order multistep denoiser, EDM schedule, ``eta`` 3
============  ==============================================================  =====================

plus one evaluation for ``denoise=True`` (:func:`network_evaluations`).

Reproducibility: the noise of sample ``j`` of condition item ``i`` (the initial draw and every
per-step draw) comes from its own ``torch.Generator`` seeded by a function of ``(seeds[i], j)``
only, so an item's samples do not depend on the batching (``batch_size``), on the other items or
their order, or on ``n_samples`` (sample ``j`` is the same for every ``n_samples > j``). With
the analytic scores of the tests they are bit-identical; through a network they agree to float
rounding (a convolution's arithmetic may depend on the batch size). Generators live on the
condition's device, so CPU and CUDA draws differ.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from score_models import ScoreModel

__all__ = [
    "EDM_RHO",
    "SAMPLERS",
    "ScoreFunction",
    "edm_sigmas",
    "geometric_sigmas",
    "model_score_function",
    "network_evaluations",
    "row_generators",
    "sample_dpm2m",
    "sample_em",
    "sample_heun",
    "sample_pc",
    "sample_posterior",
]

logger = logging.getLogger(__name__)

#: rho of the EDM noise schedule (Karras et al. 2022, eq. 5).
EDM_RHO = 7.0


class ScoreFunction(Protocol):
    """The score of the VE-perturbed conditional distribution.

    Attributes
    ----------
    sigma_min, sigma_max : float
        The noise range the score is defined on [normalised units].
    """

    sigma_min: float
    sigma_max: float

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        """``grad_x log p_sigma(x | cond)``.

        Parameters
        ----------
        x : Tensor, shape (B, C, H, W)
            Noisy maps [normalised units].
        sigma : Tensor, shape (B,)
            Noise level of each row [normalised units].
        cond : Tensor, shape (B, Cc, H, W)
            Conditions [normalised units].

        Returns
        -------
        Tensor, shape (B, C, H, W)
            The score [1 / normalised units].
        """
        ...


class _ModelScore:
    """:class:`ScoreFunction` over a score_models ``ScoreModel`` with the VE SDE."""

    def __init__(self, sm: ScoreModel) -> None:
        self.sm = sm
        self.sigma_min = float(sm.sde.sigma_min)
        self.sigma_max = float(sm.sde.sigma_max)
        self._log_ratio = math.log(self.sigma_max / self.sigma_min)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor) -> Tensor:
        dtype = next(self.sm.model.parameters()).dtype  # the network's, whatever the caller's
        t = torch.log(sigma.double() / self.sigma_min) / self._log_ratio * float(self.sm.sde.T)
        with torch.no_grad():
            # score_models 0.5.11: score(t, x, *args), the condition maps positional (condition=["input"]).
            return self.sm.score(t.to(dtype), x.to(dtype), cond.to(dtype)).to(x.dtype)


def model_score_function(sm: ScoreModel) -> ScoreFunction:
    """Adapter: a score_models 0.5.11 ``ScoreModel`` (VE SDE) as a :class:`ScoreFunction`.

    sigma [normalised units] is mapped to the SDE time ``t = T log(sigma / sigma_min) /
    log(sigma_max / sigma_min)`` and the model called as ``sm.score(t, x, cond)`` under
    ``torch.no_grad``. The model's mode is left as it is (:func:`cmpipe.model.training.
    load_for_inference` returns it in eval mode).

    Parameters
    ----------
    sm : score_models.ScoreModel
        A conditional model with ``sde="ve"`` (``condition=["input"]``).

    Returns
    -------
    ScoreFunction
        With ``sigma_min``, ``sigma_max`` of the model's SDE.
    """
    from score_models.sde import VESDE

    if not isinstance(sm.sde, VESDE):
        raise ValueError(f"model_score_function needs a VE SDE; the model has {type(sm.sde).__name__}")
    return _ModelScore(sm)


# --------------------------------------------------------------------------------------------
# Schedules, noise, the denoiser
# --------------------------------------------------------------------------------------------


def geometric_sigmas(sigma_max: float, sigma_min: float, steps: int) -> list[float]:
    """``steps + 1`` noise levels ``sigma_k = sigma_max (sigma_min / sigma_max)^(k / steps)``,
    k = 0..steps: the VE SDE's ``sigma(t)`` at ``t = 1 - k / steps`` [normalised units]."""
    _check_steps(steps)
    return [sigma_max * (sigma_min / sigma_max) ** (k / steps) for k in range(steps + 1)]


def edm_sigmas(sigma_max: float, sigma_min: float, steps: int, rho: float = EDM_RHO) -> list[float]:
    """``steps + 1`` noise levels of the EDM schedule (Karras et al. 2022, eq. 5) from
    ``sigma_max`` to ``sigma_min`` (both included; no final 0) [normalised units]."""
    _check_steps(steps)
    a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    out = [(a + k / steps * (b - a)) ** rho for k in range(steps + 1)]
    out[0], out[-1] = float(sigma_max), float(sigma_min)
    return out


def _check_steps(steps: int) -> None:
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps}")


def image_seed(seed: int, image_index: int) -> int:
    """The seed of image ``image_index``'s samples (``cmpipe infer``; ``cmpipe reconstruct``'s one
    cluster is image 0): a 63-bit integer from ``SeedSequence([seed, i])``, so an image's samples
    depend neither on batching nor on the worker."""
    return int(np.random.SeedSequence([int(seed), int(image_index)]).generate_state(2, dtype=np.uint64)[0] >> 1)


def row_generators(seed: int, samples: Sequence[int], device: str | torch.device) -> list[torch.Generator]:
    """One ``torch.Generator`` per sample ``j`` of a condition item seeded ``seed``.

    Each is seeded from ``numpy.random.SeedSequence(seed, spawn_key=(j,))``: a function of
    ``(seed, j)`` only, statistically independent across ``j`` and across seeds.
    """
    gens = []
    for j in samples:
        state = np.random.SeedSequence(int(seed), spawn_key=(int(j),)).generate_state(2, dtype=np.uint32)
        g = torch.Generator(device=device)
        g.manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)  # 63 bits
        gens.append(g)
    return gens


def _noise(gens: Sequence[torch.Generator], shape: tuple[int, ...], like: Tensor) -> Tensor:
    """One N(0, I) draw of ``shape`` per generator, stacked: shape ``(len(gens), *shape)``."""
    return torch.stack([torch.randn(shape, generator=g, device=like.device, dtype=like.dtype) for g in gens])


def _sigma(value: float, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), value, device=x.device, dtype=x.dtype)


def _denoiser(score_fn: ScoreFunction, x: Tensor, sigma: float, cond: Tensor) -> Tensor:
    """EDM denoiser of a VE score: ``D(x, sigma) = x + sigma^2 s(x, sigma)`` (Tweedie)."""
    return x + sigma**2 * score_fn(x, _sigma(sigma, x), cond)


def _start(score_fn: ScoreFunction, cond: Tensor, gens: Sequence[torch.Generator], channels: int) -> Tensor:
    if len(gens) != cond.shape[0]:
        raise ValueError(f"{len(gens)} generators for {cond.shape[0]} condition rows")
    dtype = cond.dtype if cond.dtype.is_floating_point else torch.float32
    like = torch.empty(0, device=cond.device, dtype=dtype)
    return float(score_fn.sigma_max) * _noise(gens, (channels, *cond.shape[2:]), like)


def _finish(score_fn: ScoreFunction, x: Tensor, cond: Tensor, denoise: bool) -> Tensor:
    return _denoiser(score_fn, x, float(score_fn.sigma_min), cond) if denoise else x


# --------------------------------------------------------------------------------------------
# The samplers: (score_fn, cond rows, *, steps, generators, denoise, channels, options) -> x
# --------------------------------------------------------------------------------------------


def sample_em(score_fn: ScoreFunction, cond: Tensor, *, steps: int, generators: Sequence[torch.Generator],
              denoise: bool = True, channels: int = 2) -> Tensor:
    """Reverse-SDE Euler-Maruyama, score_models 0.5.11's ``ScoreModel.sample`` discretisation.

    With ``t_k = 1 - k / steps`` and ``sigma_k = sigma(t_k)`` (:func:`geometric_sigmas`), for
    k = 1..steps: ``g2 = sigma_k^2 2 log(sigma_max / sigma_min) / steps`` (``g(t_k)^2 |dt|``),
    ``x_mean = x + g2 s(x, sigma_k)``, ``x = x_mean + sqrt(g2) z`` except at the last step, which
    returns ``x_mean`` (as score_models does). The score is evaluated at the end of each
    interval, the last one at ``sigma_min``. ``steps`` evaluations (+1 with ``denoise``).
    score_models accumulates ``t`` in float32 and stops once ``t < 0``, so at some step counts
    (3, 6, 10, ...; not 100, 500, 1000) it skips its last step; this one always does ``steps``.

    Parameters
    ----------
    score_fn : ScoreFunction
    cond : Tensor, shape (N, Cc, H, W)
        One condition per row [normalised units].
    steps : int
    generators : sequence of torch.Generator, length N
        The noise of row ``n`` comes from ``generators[n]`` only (initial draw, then one per step).
    denoise : bool
        End with the Tweedie step at ``sigma_min``.
    channels : int
        Generated channels C.

    Returns
    -------
    Tensor, shape (N, C, H, W)
        Samples [normalised units].
    """
    x = _start(score_fn, cond, generators, channels)
    log_ratio = math.log(score_fn.sigma_max / score_fn.sigma_min)
    sigmas = geometric_sigmas(score_fn.sigma_max, score_fn.sigma_min, steps)
    for k in range(1, steps + 1):
        g2 = sigmas[k] ** 2 * 2.0 * log_ratio / steps
        x_mean = x + g2 * score_fn(x, _sigma(sigmas[k], x), cond)
        x = x_mean + math.sqrt(g2) * _noise(generators, x.shape[1:], x) if k < steps else x_mean
    return _finish(score_fn, x, cond, denoise)


def sample_pc(score_fn: ScoreFunction, cond: Tensor, *, steps: int, generators: Sequence[torch.Generator],
              denoise: bool = True, channels: int = 2, snr: float = 0.16) -> Tensor:
    """Predictor-corrector (Song et al. 2021, Algorithm 2, VE): reverse-diffusion predictor and one
    Langevin corrector step, on the geometric schedule ``sigma_0 = sigma_max .. sigma_steps =
    sigma_min`` (:func:`geometric_sigmas`).

    For k = 0..steps-1: predictor ``x = x + (sigma_k^2 - sigma_{k+1}^2) s(x, sigma_k) +
    sqrt(sigma_k^2 - sigma_{k+1}^2) z``; corrector at ``sigma_{k+1}``: ``g = s(x, sigma_{k+1})``,
    ``eps = 2 (snr ||z'|| / ||g||)^2``, ``x = x + eps g + sqrt(2 eps) z'``. The norms are per row
    (Song et al.'s code averages them over the batch, which would couple the rows). The result is
    the noisy sample at ``sigma_min``. ``2 steps`` evaluations (+1 with ``denoise``).

    Parameters are those of :func:`sample_em`, and
    snr : float
        The corrector's signal-to-noise ratio r, > 0.
    """
    if not snr > 0:
        raise ValueError(f"snr must be > 0; got {snr}")
    x = _start(score_fn, cond, generators, channels)
    sigmas = geometric_sigmas(score_fn.sigma_max, score_fn.sigma_min, steps)
    for k in range(steps):
        var = sigmas[k] ** 2 - sigmas[k + 1] ** 2
        x = x + var * score_fn(x, _sigma(sigmas[k], x), cond) + math.sqrt(var) * _noise(generators, x.shape[1:], x)
        g = score_fn(x, _sigma(sigmas[k + 1], x), cond)
        z = _noise(generators, x.shape[1:], x)
        ratio = z.flatten(1).norm(dim=1) / g.flatten(1).norm(dim=1)
        eps = (2.0 * (snr * ratio) ** 2).view(-1, *[1] * (x.dim() - 1))
        x = x + eps * g + torch.sqrt(2.0 * eps) * z
    return _finish(score_fn, x, cond, denoise)


def sample_heun(score_fn: ScoreFunction, cond: Tensor, *, steps: int, generators: Sequence[torch.Generator],
                denoise: bool = True, channels: int = 2, rho: float = EDM_RHO) -> Tensor:
    """Probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` with Heun's 2nd-order step
    (Karras et al. 2022, Algorithm 1 without churn) on :func:`edm_sigmas` from ``sigma_max`` to
    ``sigma_min``; deterministic given the initial noise. ``2 steps`` evaluations (+1 with
    ``denoise``, which equals a final Euler step to sigma = 0).

    Parameters are those of :func:`sample_em`, and
    rho : float
        The EDM schedule's exponent.
    """
    x = _start(score_fn, cond, generators, channels)
    sigmas = edm_sigmas(score_fn.sigma_max, score_fn.sigma_min, steps, rho)
    for k in range(steps):
        s0, s1 = sigmas[k], sigmas[k + 1]
        d0 = (x - _denoiser(score_fn, x, s0, cond)) / s0
        x1 = x + (s1 - s0) * d0
        d1 = (x1 - _denoiser(score_fn, x1, s1, cond)) / s1
        x = x + (s1 - s0) * 0.5 * (d0 + d1)
    return _finish(score_fn, x, cond, denoise)


def sample_dpm2m(score_fn: ScoreFunction, cond: Tensor, *, steps: int, generators: Sequence[torch.Generator],
                 denoise: bool = True, channels: int = 2, rho: float = EDM_RHO) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) in data (x0) prediction through the denoiser
    ``D = x + sigma^2 s``, on :func:`edm_sigmas` (k-diffusion's ``sample_dpmpp_2m`` with
    ``lambda = -log sigma``): the first step is 1st order, later ones use the previous denoised
    estimate. ``steps`` evaluations (+1 with ``denoise``).

    Parameters are those of :func:`sample_heun`.
    """
    x = _start(score_fn, cond, generators, channels)
    sigmas = edm_sigmas(score_fn.sigma_max, score_fn.sigma_min, steps, rho)
    old: Tensor | None = None
    for k in range(steps):
        s0, s1 = sigmas[k], sigmas[k + 1]
        den = _denoiser(score_fn, x, s0, cond)
        h = math.log(s0 / s1)
        if old is None:
            d = den
        else:
            r = math.log(sigmas[k - 1] / s0) / h
            d = (1.0 + 1.0 / (2.0 * r)) * den - (1.0 / (2.0 * r)) * old
        x = (s1 / s0) * x - math.expm1(-h) * d
        old = den
    return _finish(score_fn, x, cond, denoise)


def sample_edm(score_fn: ScoreFunction, cond: Tensor, *, steps: int, generators: Sequence[torch.Generator],
               denoise: bool = True, channels: int = 2, rho: float = EDM_RHO, s_churn: float = 40.0,
               s_noise: float = 1.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
               euler_last: float = 0.0) -> Tensor:
    """The stochastic EDM sampler (Karras et al. 2022, Algorithm 2): at each level of
    :func:`edm_sigmas`, noise is added to raise sigma by the factor ``1 + gamma`` (``gamma =
    min(s_churn / steps, sqrt(2) - 1)`` for ``s_tmin <= sigma <= s_tmax``, else 0), then one Heun
    step of the probability-flow ODE to the next level. The churn lets the sampler correct the
    errors of an imperfect score, as the reverse SDE does, at the ODE's cost per step: ``2 steps``
    evaluations (+1 with ``denoise``; Karras et al.'s ``2 N - 1`` with ``N = steps + 1`` levels,
    their last step, to sigma = 0, being the denoising step). ``euler_last`` (true when nonzero)
    makes the step to ``sigma_min`` an Euler step, saving its corrector: ``2 steps - 1``.

    Parameters are those of :func:`sample_heun`, and
    s_churn, s_noise, s_tmin, s_tmax : float
        EDM's stochasticity: total churn, noise inflation, and the sigma range where it applies.
    euler_last : float
        Nonzero: the last step is a (churned) Euler step.
    """
    x = _start(score_fn, cond, generators, channels)
    sigmas = edm_sigmas(score_fn.sigma_max, score_fn.sigma_min, steps, rho)
    gamma_max = min(s_churn / steps, math.sqrt(2.0) - 1.0)
    for k in range(steps):
        s0, s1 = sigmas[k], sigmas[k + 1]
        gamma = gamma_max if s_tmin <= s0 <= s_tmax else 0.0
        s_hat = s0 * (1.0 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat**2 - s0**2) * s_noise * _noise(generators, tuple(x.shape[1:]), x)
        d0 = (x - _denoiser(score_fn, x, s_hat, cond)) / s_hat
        x1 = x + (s1 - s_hat) * d0
        if euler_last and k == steps - 1:
            x = x1
            break
        d1 = (x1 - _denoiser(score_fn, x1, s1, cond)) / s1
        x = x + (s1 - s_hat) * 0.5 * (d0 + d1)
    return _finish(score_fn, x, cond, denoise)


def sample_dpm2m_sde(score_fn: ScoreFunction, cond: Tensor, *, steps: int, generators: Sequence[torch.Generator],
                     denoise: bool = True, channels: int = 2, rho: float = EDM_RHO, eta: float = 3.0,
                     s_noise: float = 1.0, heun: float = 0.0) -> Tensor:
    """SDE-DPM-Solver++(2M) (Lu et al. 2022, sec. 5; k-diffusion's ``sample_dpmpp_2m_sde``): the
    reverse SDE integrated exactly in its linear part, with the denoiser ``D = x + sigma^2 s``
    extrapolated linearly in ``lambda = -log sigma`` from the previous step, on
    :func:`edm_sigmas`. With ``h = log(sigma_k / sigma_{k+1})`` and ``eta h``:
    ``x = (sigma_{k+1} / sigma_k) e^{-eta h} x + phi D_k + c (D_k - D_{k-1}) / r + sigma_{k+1}
    sqrt(1 - e^{-2 eta h}) s_noise z`` with ``phi = 1 - e^{-(1 + eta) h}``, ``r = h_{k-1} / h``,
    ``c = phi / 2`` (midpoint) or ``1 - phi / ((1 + eta) h)`` (``heun`` nonzero); the first step
    is 1st order. ``eta = 1``: on a Gaussian posterior each step is the exact conditional
    ``p(x_{sigma_{k+1}} | x_{sigma_k}, x_0 = D)`` of the VE process (DDPM's ancestral step), so
    the noise the network leaves is washed out as by the reverse SDE; ``eta > 1`` adds Langevin
    churn (noise injected and removed within the step; exact for any eta in the limit of small
    steps); ``eta = 0``: DPM-Solver++(2M) (``dpm2m``). ``steps`` evaluations (+1 with ``denoise``).
    The default ``eta = 3`` was chosen on the demo model's validation images at 39 steps (eta 1:
    mass bias and coverage worse than Euler-Maruyama 1000; eta 0.5: fails; eta 4: wider mass
    scatter), ``bench/README.md``; k-diffusion's default is 1.

    Parameters are those of :func:`sample_heun`, and
    eta : float
        Stochasticity, >= 0 (1: the reverse SDE; default 3).
    s_noise : float
        Inflation of the injected noise.
    heun : float
        Nonzero: k-diffusion's ``solver_type="heun"`` 2nd-order term instead of the midpoint one.
    """
    if not eta >= 0:
        raise ValueError(f"eta must be >= 0; got {eta}")
    x = _start(score_fn, cond, generators, channels)
    sigmas = edm_sigmas(score_fn.sigma_max, score_fn.sigma_min, steps, rho)
    old: Tensor | None = None
    h_last = 0.0
    for k in range(steps):
        s0, s1 = sigmas[k], sigmas[k + 1]
        den = _denoiser(score_fn, x, s0, cond)
        h = math.log(s0 / s1)
        eta_h = eta * h
        phi = -math.expm1(-h - eta_h)  # 1 - e^{-(1 + eta) h}
        x = (s1 / s0) * math.exp(-eta_h) * x + phi * den
        if old is not None:
            c = 1.0 - phi / (h + eta_h) if heun else 0.5 * phi
            x = x + c * (h / h_last) * (den - old)
        if eta > 0:
            x = x + s1 * math.sqrt(-math.expm1(-2.0 * eta_h)) * s_noise * _noise(generators, tuple(x.shape[1:]), x)
        old, h_last = den, h
    return _finish(score_fn, x, cond, denoise)


#: name -> sampler ``f(score_fn, cond, *, steps, generators, denoise=True, channels=2, **options)``.
SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "em": sample_em,
    "pc": sample_pc,
    "heun": sample_heun,
    "dpm2m": sample_dpm2m,
    "edm": sample_edm,
    "dpm2m_sde": sample_dpm2m_sde,
}

_EVALS_PER_STEP = {"em": 1, "pc": 2, "heun": 2, "dpm2m": 1, "edm": 2, "dpm2m_sde": 1}


def network_evaluations(sampler: str, steps: int, denoise: bool = True, **sampler_options: float) -> int:
    """Score evaluations per sample (exact) of ``sampler`` with ``steps`` steps and the options
    of :func:`sample_posterior` [count]."""
    if sampler not in _EVALS_PER_STEP:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    _check_steps(steps)
    saved = int(sampler == "edm" and bool(sampler_options.get("euler_last", 0.0)))
    return _EVALS_PER_STEP[sampler] * int(steps) - saved + int(bool(denoise))


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def sample_posterior(
    score_fn: ScoreFunction,
    cond: Tensor,
    n_samples: int,
    *,
    sampler: str = "em",
    steps: int = 500,
    seeds: Sequence[int],
    denoise: bool = True,
    batch_size: int = 64,
    channels: int = 2,
    progress: bool = False,
    **sampler_options: float,
) -> Tensor:
    """``n_samples`` posterior samples for each condition item.

    The (item, sample) pairs, item-major, are cut into batches of at most ``batch_size``
    network rows, each integrated from ``sigma_max`` to ``sigma_min`` by ``SAMPLERS[sampler]``.
    Sample ``j`` of item ``i`` draws all its noise from :func:`row_generators` ``(seeds[i], j)``:
    it does not depend on ``batch_size``, on the other items or on ``n_samples``.

    Parameters
    ----------
    score_fn : ScoreFunction
        E.g. :func:`model_score_function` of a trained model.
    cond : Tensor, shape (B, Cc, H, W)
        Conditions [normalised units], on the device to sample on.
    n_samples : int
        Samples per item, >= 1.
    sampler : str
        A key of :data:`SAMPLERS`.
    steps : int
        Sampler steps (:func:`network_evaluations` gives the cost).
    seeds : sequence of int, length B
        One seed per item.
    denoise : bool
        End with the Tweedie step ``x + sigma_min^2 s(x, sigma_min)``.
    batch_size : int
        Network rows per batch, >= 1.
    channels : int
        Generated channels C.
    progress : bool
        A tqdm bar over batches (stderr).
    **sampler_options
        Passed to the sampler (``snr`` for ``pc``, ``rho`` for ``heun``, ``dpm2m``, ``edm`` and
        ``dpm2m_sde``, ``s_churn``, ``s_noise``, ``s_tmin``, ``s_tmax``, ``euler_last`` for ``edm``,
        ``eta``, ``s_noise``, ``heun`` for ``dpm2m_sde``).

    Returns
    -------
    Tensor, shape (B, n_samples, C, H, W)
        Samples [normalised units], on ``cond``'s device.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {sorted(SAMPLERS)}")
    if cond.dim() != 4:
        raise ValueError(f"cond must have shape (B, Cc, H, W); got {tuple(cond.shape)}")
    n_items = cond.shape[0]
    if len(seeds) != n_items:
        raise ValueError(f"{len(seeds)} seeds for {n_items} condition items")
    if n_samples < 1 or batch_size < 1:
        raise ValueError(f"n_samples ({n_samples}) and batch_size ({batch_size}) must be >= 1")
    _check_steps(steps)
    fn = SAMPLERS[sampler]
    pairs = [(i, j) for i in range(n_items) for j in range(n_samples)]
    batches = [pairs[k : k + batch_size] for k in range(0, len(pairs), batch_size)]
    logger.info("sampling %d x %d with %s, %d steps (%d evaluations per sample), %d batches of <= %d rows",
                n_items, n_samples, sampler, steps, network_evaluations(sampler, steps, denoise), len(batches),
                batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc=f"sampling ({sampler}, {steps} steps)")
    out: list[Tensor] = []
    for batch in batches:
        items = torch.tensor([i for i, _ in batch], device=cond.device)
        gens = [g for i, j in batch for g in row_generators(seeds[i], [j], cond.device)]
        out.append(fn(score_fn, cond[items], steps=steps, generators=gens, denoise=denoise, channels=channels,
                      **sampler_options))
    x = torch.cat(out)
    return x.view(n_items, n_samples, *x.shape[1:])

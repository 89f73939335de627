"""Posterior samplers (``cmpipe.model.sampling``) against analytic scores and score_models itself.

Oracle 1, an analytic Gaussian posterior: per pixel x ~ N(mu(cond), S^2) with mu = A cond[:, :1]
+ C, whose VE-perturbed score is exactly s(x, sigma) = -(x - mu) / (S^2 + sigma^2). A sampler
that follows the reverse SDE / probability-flow ODE from sigma_max to sigma_min returns samples
of N(mu, V) with V = S^2 + sigma_min^2 (S = 0.5, sigma_min = 0.2: V = 0.29); the Tweedie step
x + sigma_min^2 s maps them to mu + (x - mu) S^2 / V, of variance S^4 / V = 0.2155 (the exact
shrinkage of a Gaussian; 0.25 would be the data variance). Corrections in the oracle: the ODE
samplers start from N(0, sigma_max^2) instead of N(mu, S^2 + sigma_max^2), so the exact flow
gives x - mu = k (x_T - mu) with k = sqrt(V / (S^2 + sigma_max^2)): mean mu (1 - k) and
variance k^2 sigma_max^2 (both included; the reverse SDE forgets its start, a bias of
mu V / (S^2 + sigma_max^2) ~ 3e-4, neglected). The Langevin corrector with step eps = 2 snr^2 V
is stationary at V / (1 - snr^2) on a Gaussian (to O(1/d) in the pixel count d: the PC test uses
16x16 maps, d = 512). Tolerances: every per-pixel mean within 4.5 standard errors (S' / sqrt(n),
S' the expected std; 2 x 16 (or 512) pixels, so a false alarm has probability < 1e-3), the
variance pooled over items and pixels within 5 % (its standard error is ~1.3 %; the margin holds
the discretisation error: em 500, pc 200, heun 40, dpm2m 30 steps measured within 1 %; edm, whose
churn re-noises by sqrt(2) in sigma at every step, 120 steps -- at 40 its variance is 5 % high).

Oracle 2: score_models 0.5.11's own ``ScoreModel.sample`` (Euler-Maruyama) on a tiny NCSN++ with
the same noise stream (a torch.Generator and the global RNG seeded alike give the same draws):
``em`` without denoise matches it to float32 rounding (rtol 1e-4, atol 1e-5).

Plus: determinism and batching invariance (exact equality with the analytic score),
``network_evaluations`` equals the calls counted by a counting score function, and a smoke test
through a tiny real model (shape, finite values).
"""

from __future__ import annotations

import math

import pytest
import torch

from cmpipe.config import ModelConfig
from cmpipe.model.network import build_score_model
from cmpipe.model.sampling import (
    SAMPLERS,
    edm_sigmas,
    geometric_sigmas,
    model_score_function,
    network_evaluations,
    row_generators,
    sample_posterior,
)

S, SIGMA_MIN, SIGMA_MAX = 0.5, 0.2, 30.0
A, C = 0.8, -0.1
STEPS = {"em": 500, "pc": 200, "heun": 40, "dpm2m": 30, "edm": 120, "dpm2m_sde": 40}
SDE_SAMPLERS = {"em", "pc", "edm", "dpm2m_sde"}  # edm: the churn mixes towards the true marginals


class GaussianScore:
    """Exact VE score of x ~ N(A cond[:, :1] + C, S^2 I); counts its calls (evaluations per row)."""

    def __init__(self, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX) -> None:
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.calls = 0

    @staticmethod
    def mu(cond: torch.Tensor) -> torch.Tensor:
        return A * cond[:, :1] + C

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        assert sigma.shape == (x.shape[0],) and cond.shape[0] == x.shape[0]
        self.calls += 1
        return -(x - self.mu(cond)) / (S**2 + sigma.view(-1, 1, 1, 1) ** 2)


def _cond(n_items: int, side: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n_items, 2, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("denoise", [False, True])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_gaussian_posterior_moments(sampler: str, denoise: bool) -> None:
    side, n = (16, 200) if sampler == "pc" else (4, 400)
    cond = _cond(2, side)
    x = sample_posterior(GaussianScore(), cond, n, sampler=sampler, steps=STEPS[sampler], seeds=[11, 12],
                         denoise=denoise, batch_size=1024, channels=1)
    assert x.shape == (2, n, 1, side, side) and x.dtype == torch.float32
    mu = GaussianScore.mu(cond)  # (2, 1, side, side)
    v = S**2 + SIGMA_MIN**2
    if sampler in SDE_SAMPLERS:
        mean, var = mu, v / (1.0 - 0.16**2) if sampler == "pc" else v
    else:
        k = math.sqrt(v / (S**2 + SIGMA_MAX**2))
        mean, var = mu * (1.0 - k), k**2 * SIGMA_MAX**2
    if denoise:
        shrink = S**2 / v
        mean, var = mu + (mean - mu) * shrink, var * shrink**2
    got_mean, got_var = x.double().mean(1), x.double().var(1)
    assert (got_mean - mean).abs().max().item() < 4.5 * math.sqrt(var / n)
    assert got_var.mean().item() == pytest.approx(var, rel=0.05)


def test_em_matches_score_models_sample() -> None:
    cfg = ModelConfig(resolution=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, fir=False, attention=False,
                      sigma_min=0.01, sigma_max=1.0)
    torch.manual_seed(0)
    sm = build_score_model(cfg, 1.0, "cpu").eval()
    cond = _cond(1, 8, seed=3)
    # score_models accumulates t += -1/steps in float32 and stops when t < 0: at some step
    # counts (3, 6, 10, ...) it skips its last step. 8 is exact in binary (and 100, 500 complete too).
    steps, seed = 8, 1234
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        ref = sm.sample(shape=(1, 2, 8, 8), steps=steps, condition=[cond])
    got = SAMPLERS["em"](model_score_function(sm), cond, steps=steps, generators=[torch.Generator().manual_seed(seed)],
                         denoise=False)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_determinism_and_batching_invariance(sampler: str) -> None:
    cond = _cond(3, 4, seed=1)
    kw = dict(sampler=sampler, steps=5, denoise=True, channels=2)
    ref = sample_posterior(GaussianScore(), cond, 6, seeds=[5, 6, 7], batch_size=64, **kw)
    again = sample_posterior(GaussianScore(), cond, 6, seeds=[5, 6, 7], batch_size=64, **kw)
    assert torch.equal(ref, again)
    small = sample_posterior(GaussianScore(), cond, 6, seeds=[5, 6, 7], batch_size=4, **kw)
    assert torch.equal(ref, small)
    # Items reordered (each keeps its seed), fewer samples: the same samples of each item.
    perm = [2, 0, 1]
    reordered = sample_posterior(GaussianScore(), cond[perm], 3, seeds=[7, 5, 6], batch_size=5, **kw)
    assert torch.equal(reordered, ref[perm, :3])
    # Another seed, other samples; samples of one item differ from one another.
    other = sample_posterior(GaussianScore(), cond, 6, seeds=[8, 6, 7], batch_size=64, **kw)
    assert not torch.equal(other[0], ref[0]) and torch.equal(other[1:], ref[1:])
    assert not torch.equal(ref[0, 0], ref[0, 1])


def test_row_generators_independent_streams() -> None:
    draws = [torch.randn(4, generator=g) for g in row_generators(1, range(3), "cpu")]
    draws += [torch.randn(4, generator=g) for g in row_generators(2, range(3), "cpu")]
    assert len({tuple(d.tolist()) for d in draws}) == 6


@pytest.mark.parametrize("denoise", [False, True])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_network_evaluations_counted(sampler: str, denoise: bool) -> None:
    score = GaussianScore()
    steps = 7
    # One batch of all rows: each call evaluates every row once.
    sample_posterior(score, _cond(2, 4), 3, sampler=sampler, steps=steps, seeds=[0, 1], denoise=denoise, batch_size=6)
    assert score.calls == network_evaluations(sampler, steps, denoise)
    expected = {"em": steps, "pc": 2 * steps, "heun": 2 * steps, "dpm2m": steps, "edm": 2 * steps,
                "dpm2m_sde": steps}[sampler] + int(denoise)
    assert network_evaluations(sampler, steps, denoise) == expected


def test_schedules() -> None:
    geo = geometric_sigmas(10.0, 0.01, 4)
    assert len(geo) == 5 and geo[0] == 10.0 and geo[-1] == pytest.approx(0.01, rel=1e-12)
    ratios = [a / b for a, b in zip(geo, geo[1:])]
    assert ratios == pytest.approx([ratios[0]] * 4, rel=1e-12)
    edm = edm_sigmas(10.0, 0.01, 6)
    assert len(edm) == 7 and edm[0] == 10.0 and edm[-1] == 0.01
    assert all(a > b for a, b in zip(edm, edm[1:]))
    # Karras et al. (2022) eq. 5 at i = 3 of 6 intervals.
    assert edm[3] == pytest.approx((0.5 * (10.0 ** (1 / 7) + 0.01 ** (1 / 7))) ** 7, rel=1e-12)


def test_bad_arguments() -> None:
    cond = _cond(2, 4)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_posterior(GaussianScore(), cond, 2, sampler="ddim", steps=3, seeds=[0, 1])
    with pytest.raises(ValueError, match="seeds"):
        sample_posterior(GaussianScore(), cond, 2, steps=3, seeds=[0])
    with pytest.raises(ValueError, match="steps"):
        sample_posterior(GaussianScore(), cond, 2, steps=0, seeds=[0, 1])
    with pytest.raises(TypeError):
        sample_posterior(GaussianScore(), cond, 2, sampler="em", steps=3, seeds=[0, 1], snr=0.1)
    with pytest.raises(ValueError, match="unknown sampler"):
        network_evaluations("ddim", 3)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_smoke_tiny_model(sampler: str) -> None:
    cfg = ModelConfig(resolution=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, fir=False, attention=False,
                      sigma_min=0.01, sigma_max=1.0)
    torch.manual_seed(0)
    sm = build_score_model(cfg, 1.0, "cpu").eval()
    score = model_score_function(sm)
    assert (score.sigma_min, score.sigma_max) == (0.01, 1.0)
    cond = _cond(2, 8, seed=4)
    x = sample_posterior(score, cond, 3, sampler=sampler, steps=3, seeds=[1, 2], batch_size=4)
    assert x.shape == (2, 3, 2, 8, 8)
    assert torch.isfinite(x).all()
    # Through a network, batching changes results at most by float rounding.
    y = sample_posterior(score, cond, 3, sampler=sampler, steps=3, seeds=[1, 2], batch_size=6, progress=True)
    torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_edm_without_churn_is_heun() -> None:
    """EDM's Algorithm 2 with ``s_churn=0`` is Algorithm 1 (deterministic Heun) on the same
    sigmas: the option reaches the sampler (``bench/sampler_quality.py`` tunes it per entry)."""
    cond = _cond(2, 4, seed=5)
    heun = sample_posterior(GaussianScore(), cond, 3, sampler="heun", steps=12, seeds=[3, 4])
    edm = sample_posterior(GaussianScore(), cond, 3, sampler="edm", steps=12, seeds=[3, 4], s_churn=0.0)
    churned = sample_posterior(GaussianScore(), cond, 3, sampler="edm", steps=12, seeds=[3, 4])
    torch.testing.assert_close(edm, heun, rtol=1e-5, atol=1e-6)
    assert (churned - heun).abs().max() > 1e-2


def test_dpm2m_sde_gaussian_and_a_broken_one_fails() -> None:
    """SDE-DPM-Solver++(2M) at the settings of ``bench/sampler_quality.py``'s 40-evaluation rows
    (39 steps, the default eta 3 and the reverse SDE's eta 1) reaches the exact posterior N(mu, S^2 + sigma_min^2)
    (means within 4.5 standard errors, variance within 5 %; measured within 1 %), and the same
    check fails for a broken noise term (``s_noise=1.1``: variance 21 % high)."""
    cond = _cond(2, 4)
    v, n = S**2 + SIGMA_MIN**2, 400

    def ok(**kw: float) -> bool:
        x = sample_posterior(GaussianScore(), cond, n, sampler="dpm2m_sde", steps=39, seeds=[11, 12],
                             denoise=False, batch_size=1024, channels=1, **kw).double()
        mean_ok = (x.mean(1) - GaussianScore.mu(cond)).abs().max().item() < 4.5 * math.sqrt(v / n)
        return mean_ok and abs(x.var(1).mean().item() / v - 1.0) < 0.05

    assert ok() and ok(eta=1.0)
    assert not ok(s_noise=1.1)


def test_edm_euler_last_saves_one_evaluation() -> None:
    score = GaussianScore()
    sample_posterior(score, _cond(2, 4), 3, sampler="edm", steps=7, seeds=[0, 1], batch_size=6, euler_last=1.0)
    assert score.calls == network_evaluations("edm", 7, True, euler_last=1.0) == 2 * 7

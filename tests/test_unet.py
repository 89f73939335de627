"""The deterministic U-Net baseline (``model.kind: unet``): network, training loop, checkpoints,
inference and evaluation, no Ray.

One tiny store (the training store of :mod:`tiny_stores`: 12 train, 6 val images of 32x32, seen
at 16x16) made once per module; a tiny U-Net (``nf=8``, ``ch_mult (1, 2)``, one block per level).
Oracles: the loss written out (MSE summed over C H W, mean over the batch), an uninterrupted run
for resume (exact equality of every tensor), the checkpoint's EMA shadow parameters, the
sampler's own ``predict`` for its samples, and the zero-spread rules of ``evaluate_image``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmpipe.config import ConfigError, ModelConfig, load_config
from cmpipe.evaluation.image import COVERAGE_LEVELS, evaluate_image
from cmpipe.stages.infer import grid_from_config
from cmpipe.model.dataset import CONDITION_CHANNELS, TARGET_CHANNELS, StoreDataset, denormalise
from cmpipe.model.inference import RegressionSampler, load_posterior_sampler
from cmpipe.model.network import build_model, count_parameters
from cmpipe.model.training import (
    CheckpointError,
    WarmupSchedule,
    checkpoint_paths,
    latest_checkpoint,
    load_checkpoint,
    load_for_inference,
    make_ema,
    prepare_run,
    train_step,
)
from cmpipe.model.unet import RegressionModel, UNet
from cmpipe.stages.generate import generate_serial
from cmpipe.stages.train import run as train_run
from cmpipe.store import open_store
from tiny_stores import TINY_MODEL, TINY_INFER, TRAINING_STORE
from tensor_oracles import tensors_equal

UNET = [*TINY_MODEL, "model.kind=unet", "train.checkpoint_every=3", "train.val_every=3", "train.lr=1e-3",
        "train.ema_decay=0.9"]
CHECKPOINT_KEYS = {"format_version", "step", "model", "ema", "optimizer", "rng", "hyperparameters", "store_fingerprint"}
HP_KEYS = {"model", "sigma_min", "sigma_max", "sigma_max_source", "resolution", "channels", "normalisation", "train",
           "score_models_version", "cmpipe_version", "maps"}


def _cfg(*extra: str):
    return load_config("demo", [*TRAINING_STORE, *UNET, *TINY_INFER, *extra])


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("unet_store") / "images.zarr"
    generate_serial(_cfg(), path)
    return path


def test_kind_is_validated():
    assert ModelConfig().kind == "score"
    with pytest.raises(ConfigError, match="model.kind must be one of score, unet"):
        ModelConfig(kind="gan")


def test_unet_maps_condition_to_target_shape():
    torch.manual_seed(0)
    net = UNet(8, (1, 2, 2), 2)
    assert net(torch.rand(3, 2, 16, 16)).shape == (3, 2, 16, 16)
    sm = build_model(_cfg().model, 0.0, "cpu")
    assert isinstance(sm, RegressionModel) and sm.device == torch.device("cpu")
    assert sm.hyperparameters["model"] == "unet" and count_parameters(sm.model) > 0
    sm.eval()
    assert not sm.model.training
    sm.train()
    assert sm.model.training


def test_loss_decreases_on_a_fixed_batch(store):
    ds = StoreDataset(store, "train", resolution=16)
    x, cond = (torch.stack(t) for t in zip(*(ds[i] for i in range(4))))
    torch.manual_seed(0)
    sm = build_model(_cfg().model, 0.0, "cpu")
    with torch.no_grad():
        want = float(((sm.model(cond) - x) ** 2).sum(dim=(1, 2, 3)).mean())
        before = float(sm.loss_fn(x, cond))
    assert before == pytest.approx(want, rel=1e-6)
    opt = torch.optim.Adam(sm.model.parameters(), lr=2e-3)
    ema = make_ema(sm.model, 0.9)
    results = [train_step(sm, opt, ema, (x, cond), 1.0, WarmupSchedule(2e-3, 2), step=s) for s in range(15)]
    with torch.no_grad():
        after = float(sm.loss_fn(x, cond))
    assert results[0].loss == pytest.approx(before, rel=1e-6)
    assert results[0].loss_per_dim == pytest.approx(results[0].loss / (2 * 16 * 16))
    assert after < 0.5 * before, (before, after)


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory):
    """Run a: 6 steps uninterrupted (keeps 1 checkpoint); run b: 3 steps, then resumed to 6."""
    root = tmp_path_factory.mktemp("unet_runs")
    a, b = root / "a", root / "b"
    out_a = train_run(_cfg("train.keep_checkpoints=1"), {"store": store, "run": a}, max_steps=6)
    first = train_run(_cfg(), {"store": store, "run": b}, max_steps=3)
    out_b = train_run(_cfg(), {"store": store, "run": b}, max_steps=6)
    return a, b, out_a, first, out_b


def test_checkpoint_has_the_same_format(runs):
    a, *_ = runs
    data = torch.load(latest_checkpoint(a), weights_only=True)
    assert set(data) == CHECKPOINT_KEYS and set(data["hyperparameters"]) == HP_KEYS
    hp = data["hyperparameters"]
    assert hp["model"]["kind"] == "unet" and (hp["sigma_max"], hp["sigma_max_source"]) == (0.0, "n/a")
    assert set(data["model"]) == set(UNet(8, (1, 2), 1).state_dict())
    assert latest_checkpoint(a).with_suffix(".json").is_file()


def test_resume_equals_an_uninterrupted_run(runs, store):
    a, b, out_a, first, out_b = runs
    assert (first["start_step"], first["step"]) == (0, 3) and (out_b["start_step"], out_b["step"]) == (3, 6)
    assert [p.name for p in checkpoint_paths(b)] == ["step_00000003.pt", "step_00000006.pt"]
    sa, sb = load_checkpoint(latest_checkpoint(a)), load_checkpoint(latest_checkpoint(b))
    assert sa.step == sb.step == 6 and sb.ema["num_updates"] == 6
    for field in ("model", "ema", "optimizer", "rng"):
        assert tensors_equal(getattr(sa, field), getattr(sb, field)), field
    assert np.isfinite(out_a["last"].loss) and out_a["last"].loss == out_b["last"].loss
    # A score-model config cannot resume a U-Net run.
    score = _cfg("model.kind=score")
    with pytest.raises(CheckpointError, match="was trained with model"):
        prepare_run(score.model, score.train, score.maps, store, a)


def test_inference_is_a_repeated_point_estimate(runs, store):
    a, *_ = runs
    state = load_checkpoint(latest_checkpoint(a))
    sm = load_for_inference(a, "cpu")
    assert isinstance(sm, RegressionModel) and not sm.model.training
    assert all(torch.equal(p, s) for p, s in zip(sm.model.parameters(), state.ema["shadow_params"]))
    cfg = _cfg()
    sampler = load_posterior_sampler(a, cfg.infer, "cpu", open_store(store).attrs["store_fingerprint"])
    assert isinstance(sampler, RegressionSampler) and sampler.resolution == 16
    assert sampler.hyperparameters["normalisation"] == state.hyperparameters["normalisation"]
    ds = StoreDataset(store, "val", resolution=16)
    cond = denormalise(np.stack([ds[i][1].numpy() for i in range(3)]).astype(np.float64), CONDITION_CHANNELS,
                       sampler.normalisation)
    samples = sampler.sample(cond, 4, [1, 2, 3])
    assert samples.shape == (3, 4, 2, 16, 16) and samples.dtype == np.float64 and np.isfinite(samples).all()
    assert (samples == samples[:, :1]).all()
    np.testing.assert_array_equal(samples[:, 0], sampler.predict(cond))
    lo = denormalise(np.zeros((1, 2, 1, 1)), TARGET_CHANNELS, sampler.normalisation)
    hi = denormalise(np.ones((1, 2, 1, 1)), TARGET_CHANNELS, sampler.normalisation)
    assert (samples >= lo[:, None] * (1 - 1e-12)).all() and (samples <= hi[:, None] * (1 + 1e-12)).all()


def test_evaluate_image_accepts_zero_spread(runs, store):
    a, *_ = runs
    cfg = _cfg()
    sampler = load_posterior_sampler(a, cfg.infer, "cpu")
    ds = StoreDataset(store, "val", resolution=16)
    x, c = (t.numpy().astype(np.float64) for t in ds[0])
    truth = denormalise(x[None], TARGET_CHANNELS, sampler.normalisation)[0]
    cond = denormalise(c[None], CONDITION_CHANNELS, sampler.normalisation)
    s = 5
    samples = sampler.sample(cond, s, [0])[0]
    grid = grid_from_config(cfg, open_store(store).attrs)
    key = {"image_index": 0, "halo_id": 7, "log10_m200m_msun_h": 14.0}
    tables = evaluate_image(samples, truth, cond[0], grid, key, r200m_mpc=1.5)
    clusters = tables["clusters"]
    for col in ("mass_true_msun", "mass_pred_msun", "mass_frac_error", "mass_r200m_pred_msun"):
        assert np.isfinite(clusters[col]).all(), col
    for region in ("r200m", "outside"):
        for stat in ("mean", "std", "mad"):
            assert np.isnan(clusters[f"z_{stat}_{region}"]).all(), (stat, region)
    assert clusters["n_converged"] == [s + 1, s + 1] and clusters["n_samples"] == [s, s]
    assert sum(tables["zhist"]["count"]) == 0
    conv = tables["convergence"]
    assert conv["n"] == [*range(2, s + 1)] * 2
    assert np.isnan(conv["ratio"]).all() and np.isnan(conv["mc_error"]).all()
    for col in ("true", "pred_mean", "pred_std"):
        assert np.isfinite(tables["profiles"][col]).all(), col
    spectra = tables["spectra"]
    mine = [i for i, name in enumerate(spectra["comparison"]) if name in ("posterior_mean", "sample")]
    assert np.isfinite(np.asarray(spectra["p_other"])[mine]).all()
    # pixels inside and outside R200m, whole-map mass, mass within R200m, profile (no r500c given)
    assert len(tables["coverage"]["covered"]) == 2 * 5 * len(COVERAGE_LEVELS)
    assert all(0.0 <= v <= 1.0 for v in tables["coverage"]["covered"])

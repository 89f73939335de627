"""The score model's dataset, network and single-process training (``cmpipe.model``), no Ray.

One tiny store (18 analytic images of 32x32: 12 train, 6 val) made once per module; tiny
networks (``nf=8``, ``ch_mult (1, 2)``, one residual block, no attention). Oracles: an
independent numpy normalisation of the store's maps (float32 rounding, atol 1e-6), block means
by strided slicing, ``torch.rot90`` / ``torch.flip`` for the augmentation (exact), a brute-force
pairwise distance loop for sigma_max (rtol 1e-9), and an uninterrupted run for resume (exact
equality of every tensor).
"""

from __future__ import annotations

import csv
import itertools
import shutil

import numpy as np
import pytest
import torch

from cmpipe.config import ModelConfig, load_config
from cmpipe.model.dataset import StoreDataset, denormalise, normalise
from cmpipe.model.network import build_score_model, compute_sigma_max, count_parameters, sigma_max_subset
from cmpipe.model.training import (
    CheckpointError,
    TrainState,
    WarmupSchedule,
    checkpoint_paths,
    latest_checkpoint,
    load_checkpoint,
    load_for_inference,
    make_ema,
    save_checkpoint,
    train_step,
)
from cmpipe.stages.generate import generate_serial
from cmpipe.stages.train import run as train_run
from cmpipe.store import StoreError, open_store
from tiny_stores import TRAINING_MASSES, TRAINING_STORE
from tensor_oracles import tensors_equal

MASSES = TRAINING_MASSES
STORE_OVERRIDES = TRAINING_STORE
TINY_MODEL = ["model.resolution=32", "model.nf=8", "model.ch_mult=[1, 2]", "model.num_res_blocks=1", "model.attention=false"]
TARGETS, CONDITIONS = ("gas_sigma", "dm_sigma"), ("sz_y", "xray_sb")


def _cfg(*extra: str):
    return load_config("demo", [*STORE_OVERRIDES, *TINY_MODEL, *extra])


@pytest.fixture(scope="module", autouse=True)
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("model_store") / "images.zarr"
    generate_serial(_cfg(), path)
    return path


def _oracle(store, split_code, names):
    """Independent normalisation of the store's maps of one split: ``(n, len(names), H, W)``."""
    group = open_store(store)
    norm = group.attrs["normalisation"]
    channels = list(group.attrs["channels"])
    rows = np.flatnonzero(group["split"][:] == split_code)
    maps = group["maps"][:][rows].astype(np.float64)
    out = []
    for name in names:
        s = norm["channels"][name]
        t = np.log10(np.maximum(maps[:, channels.index(name)], s["floor"]))
        out.append(np.clip((t - s["min"]) / (s["max"] - s["min"]), 0.0, 1.0))
    return np.stack(out, axis=1), maps, channels


# ----------------------------------------------------------------------------- dataset


def test_dataset_is_the_store_normalised(store):
    ds = StoreDataset(store, "train")
    want_x, _, _ = _oracle(store, 0, TARGETS)
    want_c, _, _ = _oracle(store, 0, CONDITIONS)
    assert len(ds) == len(want_x) == 12 and len(StoreDataset(store, "val")) == 6
    for i in range(len(ds)):
        x, cond = ds[i]
        assert x.dtype == cond.dtype == torch.float32 and x.shape == cond.shape == (2, 32, 32)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        np.testing.assert_allclose(x.numpy(), want_x[i], rtol=0, atol=1e-6)
        np.testing.assert_allclose(cond.numpy(), want_c[i], rtol=0, atol=1e-6)
    # The train split defines the range: it spans [0, 1] without clipping.
    allx = np.stack([ds[i][0].numpy() for i in range(len(ds))])
    assert allx.min() == pytest.approx(0.0, abs=1e-6) and allx.max() == pytest.approx(1.0, abs=1e-6)


def test_denormalise_inverts_normalise(store):
    _, maps, channels = _oracle(store, 0, TARGETS)
    norm = open_store(store).attrs["normalisation"]
    phys = maps[:, [channels.index(c) for c in TARGETS]]
    x = normalise(phys, TARGETS, norm)
    above = phys > np.array([norm["channels"][c]["floor"] for c in TARGETS])[None, :, None, None] * 2
    back = denormalise(x.astype(np.float64), TARGETS, norm)
    np.testing.assert_allclose(back[above], phys[above], rtol=2e-5)
    back_t = denormalise(torch.from_numpy(x).double(), TARGETS, norm)
    np.testing.assert_allclose(back_t.numpy(), back, rtol=1e-12)


def test_downsampling_is_block_means(store):
    ds = StoreDataset(store, "train", resolution=16)
    _, maps, channels = _oracle(store, 0, TARGETS)
    norm = ds.normalisation
    blocks = (maps[..., 0::2, 0::2] + maps[..., 1::2, 0::2] + maps[..., 0::2, 1::2] + maps[..., 1::2, 1::2]) / 4
    for i in (0, 5, 11):
        x, cond = ds[i]
        assert x.shape == cond.shape == (2, 16, 16)
        for names, got in ((TARGETS, x), (CONDITIONS, cond)):
            want = normalise(blocks[i, [channels.index(c) for c in names]], names, norm)
            np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="must divide the store's npix 32"):
        StoreDataset(store, "train", resolution=12)


def test_augmentation_is_one_transform_of_both(store):
    plain = StoreDataset(store, "train")
    aug = StoreDataset(store, "train", augment=True, seed=3)
    seen = set()
    for epoch, i in itertools.product((0, 1), range(len(plain))):
        x0, c0 = plain[i]
        x, c = aug[(epoch, i)]
        k, flip = aug.transform_for(epoch, i)
        seen.add((k, flip))
        for got, ref in ((x, x0), (c, c0)):
            want = torch.rot90(ref, k, dims=(-2, -1))
            want = torch.flip(want, dims=(-1,)) if flip else want
            assert torch.equal(got, want)
        torch.testing.assert_close(aug[(epoch, i)], (x, c), rtol=0, atol=0)  # deterministic
    aug.set_epoch(1)
    assert torch.equal(aug[4][0], aug[(1, 4)][0])
    assert len(seen) >= 4  # several of the 8 symmetries occur


def test_store_without_normalisation_is_refused(store, tmp_path):
    copy = tmp_path / "images.zarr"
    shutil.copytree(store, copy)
    open_store(copy, mode="r+").attrs["normalisation"] = None
    with pytest.raises(StoreError, match="no normalisation"):
        StoreDataset(copy, "train")


# ----------------------------------------------------------------------------- network


def test_sigma_max_is_largest_pairwise_distance(store):
    ds = StoreDataset(store, "train")
    xs = [ds[i][0].numpy().astype(np.float64) for i in range(len(ds))]
    brute = max(np.sqrt(np.sum((a - b) ** 2)) for a, b in itertools.combinations(xs, 2))
    assert compute_sigma_max(ds, block=5) == pytest.approx(brute, rel=1e-9)
    subset = sigma_max_subset(ds.log10_m200m_msun_h, 5, seed=0)
    sub5 = max(np.sqrt(np.sum((xs[a] - xs[b]) ** 2)) for a, b in itertools.combinations(subset, 2))
    assert compute_sigma_max(ds, max_images=5) == pytest.approx(sub5, rel=1e-9)


def test_sigma_max_subset_is_random_and_spans_the_mass_range():
    """Oracle: the strata. A store ordered by mass (the first items all light) gives a subset with
    one image in each mass quantile: from the lightest to the heaviest tenth; seeded."""
    logm = np.sort(np.random.default_rng(0).uniform(13.5, 15.0, 5000))  # store order = mass order
    pick = sigma_max_subset(logm, 100, seed=3)
    assert len(pick) == 100 == len(np.unique(pick))
    assert logm[pick].min() < 13.52 and logm[pick].max() > 14.98  # not the first 100 (all < 13.54)
    np.testing.assert_array_equal(np.bincount(pick // 50, minlength=100), np.ones(100))  # one per quantile
    np.testing.assert_array_equal(pick, sigma_max_subset(logm, 100, seed=3))
    assert not np.array_equal(pick, sigma_max_subset(logm, 100, seed=4))
    shuffled = np.random.default_rng(1).permutation(5000)  # any store order: the same mass strata
    assert np.all(np.abs(np.sort(logm[shuffled][sigma_max_subset(logm[shuffled], 100, seed=3)])
                         - np.sort(logm[pick])) < 1.5 / 100 * 2)
    np.testing.assert_array_equal(sigma_max_subset(logm[:7], 100, seed=0), np.arange(7))  # below the cap: all


def test_device_is_explicit():
    sm = build_score_model(_cfg().model, 10.0, "cpu")
    assert sm.device == torch.device("cpu")
    assert all(p.device.type == "cpu" for p in sm.parameters())
    assert count_parameters(sm.model) == sum(p.numel() for p in sm.model.parameters() if p.requires_grad) > 0
    with pytest.raises(ValueError, match="must exceed"):
        build_score_model(ModelConfig(), 0.001, "cpu")


def test_loss_decreases_on_a_fixed_batch(store):
    ds = StoreDataset(store, "train")
    batch = tuple(torch.stack(t) for t in zip(*(ds[i] for i in range(4))))
    torch.manual_seed(0)
    sm = build_score_model(_cfg().model, compute_sigma_max(ds), "cpu")
    opt = torch.optim.Adam(sm.model.parameters(), lr=2e-3)
    ema = make_ema(sm.model, 0.99)

    def fixed_noise_loss():
        state = torch.get_rng_state()
        torch.manual_seed(123)
        with torch.no_grad():
            value = np.mean([float(sm.loss_fn(*batch)) for _ in range(4)])
        torch.set_rng_state(state)
        return value

    before = fixed_noise_loss()
    results = [train_step(sm, opt, ema, batch, 1.0, WarmupSchedule(2e-3, 5), step=s) for s in range(30)]
    after = fixed_noise_loss()
    assert results[0].lr == pytest.approx(2e-3 / 5) and results[-1].lr == pytest.approx(2e-3)
    assert results[0].loss_per_dim == pytest.approx(results[0].loss / (2 * 32 * 32))
    assert after < 0.7 * before, (before, after)


# ----------------------------------------------------------------------------- training


TRAIN = ["train.batch_size=4", "train.warmup_steps=2", "train.checkpoint_every=3", "train.val_every=3",
         "train.val_batches=1", "train.num_workers=0", "train.lr=1e-3", "train.ema_decay=0.9"]


def _rows(run_dir):
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(store, tmp_path_factory):
    """Run a: 6 steps uninterrupted (keeps 1 checkpoint); run b: 3 steps, then resumed to 6."""
    root = tmp_path_factory.mktemp("runs")
    a, b = root / "a", root / "b"
    out_a = train_run(_cfg(*TRAIN, "train.keep_checkpoints=1"), {"store": store, "run": a}, max_steps=6)
    first = train_run(_cfg(*TRAIN), {"store": store, "run": b}, max_steps=3)
    out_b = train_run(_cfg(*TRAIN), {"store": store, "run": b}, max_steps=6)
    return a, b, out_a, first, out_b


def test_resume_equals_an_uninterrupted_run(runs):
    a, b, out_a, first, out_b = runs
    assert (first["start_step"], first["step"]) == (0, 3) and (out_b["start_step"], out_b["step"]) == (3, 6)
    assert [p.name for p in checkpoint_paths(a)] == ["step_00000006.pt"]
    assert [p.name for p in checkpoint_paths(b)] == ["step_00000003.pt", "step_00000006.pt"]
    sa, sb = load_checkpoint(latest_checkpoint(a)), load_checkpoint(latest_checkpoint(b))
    assert sa.step == sb.step == 6
    for field in ("model", "ema", "optimizer", "rng"):
        assert tensors_equal(getattr(sa, field), getattr(sb, field)), field
    assert all(float(s["step"]) == 6 for s in sb.optimizer["state"].values()) and sb.ema["num_updates"] == 6
    assert out_a["sigma_max"] == out_b["sigma_max"] == sa.hyperparameters["sigma_max"] > 0
    assert sa.hyperparameters["sigma_max_source"] == "data"
    ra, rb = _rows(a), _rows(b)
    assert [r["step"] for r in rb] == [str(s) for s in range(1, 7)]
    assert [(r["loss"], r["val_loss"]) for r in ra] == [(r["loss"], r["val_loss"]) for r in rb]
    assert [r["val_loss"] != "" for r in rb] == [False, False, True, False, False, True]


def test_resume_restores_step_optimizer_and_ema(runs, store):
    _, b, *_ = runs
    state = load_checkpoint(checkpoint_paths(b)[0])
    assert state.step == 3
    cfg = _cfg()
    sm = build_score_model(cfg.model, state.hyperparameters["sigma_max"], "cpu")
    opt = torch.optim.Adam(sm.model.parameters(), lr=1e-3)
    ema = make_ema(sm.model, 0.9)
    state.restore(sm, opt, ema)
    assert tensors_equal(sm.model.state_dict(), state.model)
    assert tensors_equal(opt.state_dict(), state.optimizer) and ema.num_updates == 3


def test_checkpoint_is_weights_only_with_json(runs, tmp_path):
    a, *_ = runs
    path = latest_checkpoint(a)
    data = torch.load(path, weights_only=True)
    assert {"format_version", "step", "model", "ema", "optimizer", "rng", "hyperparameters", "store_fingerprint"} <= set(data)
    meta = path.with_suffix(".json").read_text()
    assert '"sigma_max"' in meta and '"normalisation"' in meta
    # save -> load round trip is exact.
    state = load_checkpoint(path)
    again = load_checkpoint(save_checkpoint(tmp_path / "step_00000006.pt", state))
    assert tensors_equal(again.to_dict(), state.to_dict())
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_other_store_fingerprint_is_refused(runs, store, tmp_path):
    a, *_ = runs
    path = latest_checkpoint(a)
    mine = load_checkpoint(path).store_fingerprint
    assert mine == open_store(store).attrs["store_fingerprint"]
    with pytest.raises(CheckpointError, match=f"fingerprint {mine}.*0000000000000000"):
        load_checkpoint(path, store_fingerprint="0" * 16)
    other = tmp_path / "other.zarr"
    shutil.copytree(store, other)
    open_store(other, mode="r+").attrs["store_fingerprint"] = "f" * 16
    with pytest.raises(CheckpointError, match="ffffffffffffffff"):
        train_run(_cfg(*TRAIN), {"store": other, "run": a}, max_steps=7)


def test_load_for_inference_uses_ema_weights(runs):
    a, *_ = runs
    state = load_checkpoint(latest_checkpoint(a))
    sm = load_for_inference(a, "cpu")
    assert not sm.training and sm.device == torch.device("cpu")
    assert all(torch.equal(p, s) for p, s in zip(sm.model.parameters(), state.ema["shadow_params"]))
    raw = load_for_inference(a, "cpu", use_ema=False)
    assert tensors_equal(raw.model.state_dict(), state.model)
    assert sm.hyperparameters["cmpipe"]["normalisation"] == state.hyperparameters["normalisation"]


def test_train_state_type():
    assert [f for f in TrainState.__dataclass_fields__] == [
        "step", "model", "ema", "optimizer", "rng", "hyperparameters", "store_fingerprint"]


def test_killed_run_resumes_to_the_uninterrupted_result(store, tmp_path):
    """SIGKILL a ``cmpipe train --serial`` process once it has written a checkpoint, rerun it:
    the resumed run ends equal (every tensor, exactly) to an uninterrupted run, and
    ``metrics.csv`` holds each step once. Oracle: the uninterrupted run, same thread count."""
    import os
    import signal
    import subprocess
    import sys
    import time

    steps = 12
    sets = [a for s in [*STORE_OVERRIDES, *TINY_MODEL, *TRAIN, "train.checkpoint_every=1", "train.keep_checkpoints=2"]
            for a in ("--set", s)]
    env = {**os.environ, "OMP_NUM_THREADS": "2", "RAY_USAGE_STATS_ENABLED": "0"}

    def argv(run):
        return [sys.executable, "-m", "cmpipe", "train", "--store", str(store), "--run", str(run), "--serial",
                "--max-steps", str(steps), "--out", str(tmp_path), *sets]

    killed, whole = tmp_path / "killed", tmp_path / "whole"
    proc = subprocess.Popen(argv(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (killed / "checkpoints" / "step_00000002.pt").is_file():
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before its first checkpoints"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    interrupted_at = load_checkpoint(latest_checkpoint(killed)).step
    assert 2 <= interrupted_at < steps, "the kill must land mid-run"
    subprocess.run(argv(killed), env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(argv(whole), env=env, check=True, stdout=subprocess.DEVNULL)
    sa, sb = load_checkpoint(latest_checkpoint(whole)), load_checkpoint(latest_checkpoint(killed))
    assert sa.step == sb.step == steps
    for field in ("model", "ema", "optimizer", "rng"):
        assert tensors_equal(getattr(sa, field), getattr(sb, field)), field
    assert [r["step"] for r in _rows(killed)] == [str(s) for s in range(1, steps + 1)]
    assert [r["loss"] for r in _rows(killed)] == [r["loss"] for r in _rows(whole)]

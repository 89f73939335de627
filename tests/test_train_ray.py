"""Data-parallel training through Ray Train (``cmpipe.pipeline.train``) on the shared local Ray.

Two ``fit()`` calls in all (Ray Train costs ~20 s each): 2 workers train 3 steps, then the same
run directory is trained on to 5 steps. Oracles: ``load_for_inference`` of the result; for DDP,
a hand-written single-process step on the same global batch whose gradient is the mean of the two
half-batch gradients, each half's noise drawn from the seed its rank used
(:func:`~cmpipe.model.training.step_noise_seed`): score_models draws the noise and times inside
``loss_fn``, so the two ranks' draws cannot equal one full-batch draw, but with the same draws per
half the averaged gradient is exactly the full-batch gradient (float tolerance: the all-reduce
sums in another order, atol 1e-6); resume: steps and optimizer/EMA counts continue, and the rows of
the first run are unchanged.
"""

from __future__ import annotations

import csv

import pytest
import torch

from cmpipe.config import load_config
from cmpipe.model.dataset import StoreDataset
from cmpipe.model.network import build_score_model
from cmpipe.model.training import (
    StepBatchSampler,
    WarmupSchedule,
    checkpoint_paths,
    latest_checkpoint,
    load_checkpoint,
    load_for_inference,
    step_noise_seed,
)
from cmpipe.pipeline.train import TrainError, train_with_ray
from cmpipe.stages.generate import generate_serial
from tiny_stores import TRAINING_STORE

# Ray Train 2.60's fit() creates a Ray Data DataContext (even without datasets) whose own
# initialisation sets its own deprecated fields (``use_push_based_shuffle``, ``use_polars``, ...)
# and warns from ray.data.context: Ray's, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

# The store of tests/test_model.py (18 analytic 32x32 images: 12 train, 6 val).
STORE_OVERRIDES = TRAINING_STORE
TINY = ["model.resolution=16", "model.nf=8", "model.ch_mult=[1, 2]", "model.num_res_blocks=1", "model.attention=false",
        "train.batch_size=4", "train.warmup_steps=2", "train.checkpoint_every=1", "train.keep_checkpoints=10",
        "train.val_every=2", "train.val_batches=1", "train.num_workers=0", "train.lr=1e-3", "train.ema_decay=0.9",
        "train.augment=false", "train.use_gpu=false"]


def _cfg(*extra: str):
    return load_config("demo", [*STORE_OVERRIDES, *TINY, *extra])


def _rows(run_dir):
    with (run_dir / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("ray_train_store") / "images.zarr"
    generate_serial(_cfg(), path)
    return path


@pytest.fixture(scope="module")
def ray_run(ray_local, store, tmp_path_factory):
    """2 workers: 3 steps, then the same run directory to 5 steps."""
    run = tmp_path_factory.mktemp("ray_train") / "run"
    first = train_with_ray(_cfg(), store, run, num_workers=2, max_steps=3)
    rows_first = _rows(run)
    step1 = load_checkpoint(run / "checkpoints" / "step_00000001.pt")
    second = train_with_ray(_cfg(), store, run, num_workers=2, max_steps=5)
    return run, first, rows_first, step1, second


def test_two_workers_write_a_loadable_checkpoint(ray_run):
    run, first, rows_first, _, _ = ray_run
    assert first["step"] == 3 and first["start_step"] == 0
    assert first["metrics"]["step"] == 3 and first["ray_checkpoint"] is not None
    assert [int(r["step"]) for r in rows_first] == [1, 2, 3]
    assert rows_first[1]["val_loss"] != "" and rows_first[0]["val_loss"] == ""
    sm = load_for_inference(run, "cpu")
    assert sm.hyperparameters["cmpipe"]["resolution"] == 16
    x = torch.rand(2, 2, 16, 16)
    with torch.no_grad():
        score = sm.score(torch.full((2,), 0.5), x, torch.rand(2, 2, 16, 16))
    assert score.shape == x.shape and torch.isfinite(score).all()


def test_ddp_step_equals_one_step_on_the_global_batch(ray_run, store):
    """2 workers x 2 images == one process on the 4 images, with each half's noise seeded as its rank's."""
    cfg = _cfg()
    tcfg = cfg.train
    step1 = ray_run[3]
    ds = StoreDataset(store, "train", resolution=16)
    keys = next(iter(StepBatchSampler(len(ds), tcfg.batch_size, tcfg.seed, 0, 1)))
    x, cond = (torch.stack(t) for t in zip(*(ds[k[1]] for k in keys)))
    torch.manual_seed(tcfg.seed)
    sm = build_score_model(cfg.model, step1.hyperparameters["sigma_max"], "cpu")
    before = {k: v.clone() for k, v in sm.model.state_dict().items()}
    opt = torch.optim.Adam(sm.model.parameters(), lr=tcfg.lr)
    for group in opt.param_groups:
        group["lr"] = WarmupSchedule(tcfg.lr, tcfg.warmup_steps)(0)
    for rank, half in enumerate((slice(0, 2), slice(2, 4))):
        torch.manual_seed(step_noise_seed(tcfg.seed, 0, rank))
        (sm.loss_fn(x[half], cond[half]) / 2).backward()
    torch.nn.utils.clip_grad_norm_([p for p in sm.model.parameters() if p.grad is not None], tcfg.clip_norm)
    opt.step()
    moved = 0
    for name, value in sm.model.state_dict().items():
        torch.testing.assert_close(step1.model[name], value, atol=1e-6, rtol=1e-5, msg=name)
        moved += int(not torch.equal(value, before[name]))
    assert moved > 10  # the step changed the weights (the comparison is not init vs init)


def test_rerun_resumes_from_the_checkpoint(ray_run):
    run, _, rows_first, _, second = ray_run
    assert second["start_step"] == 3 and second["step"] == 5
    rows = _rows(run)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5]
    assert rows[:3] == rows_first
    state = load_checkpoint(latest_checkpoint(run))
    assert state.step == 5
    assert all(int(s["step"]) == 5 for s in state.optimizer["state"].values())
    assert state.ema["num_updates"] == 5
    assert [p.name for p in checkpoint_paths(run)] == [f"step_{s:08d}.pt" for s in range(1, 6)]


def test_gpu_request_without_gpus_fails_fast(ray_local, store, tmp_path):
    with pytest.raises(TrainError, match="GPUs"):
        train_with_ray(_cfg(), store, tmp_path / "run", num_workers=2, use_gpu=True)


def test_uneven_batch_split_is_refused(store, tmp_path):
    with pytest.raises(TrainError, match="split evenly"):
        train_with_ray(_cfg("train.batch_size=5"), store, tmp_path / "run", num_workers=2)


def test_shards_of_a_step_make_the_single_process_batch():
    whole = list(StepBatchSampler(10, 4, 3, 0, 7))
    shards = [list(StepBatchSampler(10, 4, 3, 0, 7, rank=r, world_size=2)) for r in range(2)]
    assert [a + b for a, b in zip(*shards)] == whole
    with pytest.raises(ValueError, match="evenly"):
        StepBatchSampler(10, 4, 3, 0, 7, rank=0, world_size=3)


def test_cli_serial_trains_and_plots_the_loss(store, tmp_path, capsys):
    """``cmpipe train --serial``: the single-process loop, then ``loss.png`` beside the checkpoints."""
    from cmpipe.cli import main

    run = tmp_path / "run"
    sets = [a for s in [*STORE_OVERRIDES, *TINY] for a in ("--set", s)]
    argv = ["train", "--store", str(store), "--run", str(run), "--serial", "--max-steps", "2", "--out", str(tmp_path), *sets]
    assert main(argv) == 0
    assert [int(r["step"]) for r in _rows(run)] == [1, 2]
    assert (run / "loss.png").stat().st_size > 1000 and (run / "checkpoints" / "step_00000002.pt").is_file()
    assert "steps 0 -> 2" in capsys.readouterr().out
    assert main([*argv, "--workers", "2"]) == 2  # --serial is without Ray

"""``cmpipe train``'s user errors are one line with exit 2 and destroy nothing; unreadable
checkpoints; a killed two-worker DDP run resumes.

Issue 14. Every error case runs ``cmpipe.cli.main`` in-process, on Ray (the default) and
``--serial``, and asserts: exit 2, stderr one line ``cmpipe: error: ...`` naming the path, and
every file under the test's directory (stores, run directories) byte-identical afterwards, with
none added. The Ray path validates on the driver (:func:`cmpipe.model.training.validate_run`)
before Ray Train starts: the seconds it takes are printed (``-s``), not asserted.

Fault injection: a truncated checkpoint (the first half of its bytes, as a crash mid-copy leaves
it), a foreign file (seeded random bytes) named like a checkpoint, another store (a copy with
another fingerprint), an incomplete store (a chunk not done, no normalisation).

Oracles for the kill test: an uninterrupted two-worker run of the same steps (every tensor of
the final checkpoint exactly equal: see the test's docstring) and ``metrics.csv`` holding each
step once.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cmpipe.cli import main, user_error_message
from cmpipe.config import load_config
from cmpipe.model.training import (
    CheckpointError,
    CheckpointReadError,
    checkpoint_paths,
    latest_checkpoint,
    load_checkpoint,
    load_for_inference,
)
from cmpipe.stages.generate import generate_serial
from cmpipe.stages.train import run as train_run
from cmpipe.store import open_store
from tensor_oracles import tensors_equal
from tiny_stores import TRAINING_STORE

# Ray Train 2.60's fit() creates a Ray Data DataContext whose initialisation sets its own
# deprecated fields and warns from ray.data.context: Ray's, not ours (as tests/test_train_ray.py).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")

TINY = ["model.resolution=16", "model.nf=8", "model.ch_mult=[1, 2]", "model.num_res_blocks=1", "model.attention=false",
        "train.batch_size=4", "train.warmup_steps=2", "train.checkpoint_every=1", "train.keep_checkpoints=10",
        "train.val_every=2", "train.val_batches=1", "train.num_workers=0", "train.lr=1e-3", "train.ema_decay=0.9",
        "train.augment=false", "train.use_gpu=false"]
SETS = [a for s in [*TRAINING_STORE, *TINY] for a in ("--set", s)]


def _cfg():
    return load_config("demo", [*TRAINING_STORE, *TINY])


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _foreign(path: Path) -> None:
    path.write_bytes(np.random.default_rng(14).bytes(4096))


def _train(capsys, store: Path, run: Path, out: Path, *extra: str) -> tuple[int, list[str], float]:
    """``cmpipe train`` in this process: exit status, stderr lines, seconds."""
    capsys.readouterr()
    t0 = time.perf_counter()
    code = main(["train", "--store", str(store), "--run", str(run), "--out", str(out), *SETS, *extra])
    seconds = time.perf_counter() - t0
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err, seconds


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("train_errors_store") / "images.zarr"
    generate_serial(_cfg(), path)
    return path


@pytest.fixture(scope="module")
def run2(store, tmp_path_factory):
    """A serial run of 2 steps on ``store``: checkpoints of steps 1 and 2."""
    run = tmp_path_factory.mktemp("train_errors_run") / "run"
    train_run(_cfg(), {"store": store, "run": run}, max_steps=2)
    assert [p.name for p in checkpoint_paths(run)] == ["step_00000001.pt", "step_00000002.pt"]
    return run


def _case(name: str, store: Path, run2: Path, root: Path) -> tuple[Path, Path, str]:
    """Lay out one error case under ``root``: (store, run directory, what the message must name)."""
    run = root / "run"
    if name == "other store's run directory":
        other = root / "other.zarr"
        shutil.copytree(store, other)
        open_store(other, mode="r+").attrs["store_fingerprint"] = "f" * 16
        shutil.copytree(run2, run)
        return other, run, str(run / "checkpoints" / "step_00000002.pt")
    if name == "missing store":
        return root / "nowhere.zarr", run, str(root / "nowhere.zarr")
    if name == "incomplete store":
        half = root / "half.zarr"
        shutil.copytree(store, half)
        group = open_store(half, mode="r+")
        group["chunk_done"][0] = 0
        group.attrs["normalisation"] = None
        return half, run, str(half)
    if name in ("truncated only checkpoint", "foreign file as checkpoint"):
        shutil.copytree(run2, run)
        for p in ("step_00000002.pt", "step_00000002.json"):
            (run / "checkpoints" / p).unlink()
        ckpt = run / "checkpoints" / "step_00000001.pt"
        (_truncate if name.startswith("truncated") else _foreign)(ckpt)
        return store, run, str(ckpt)
    if name == "run directory is a file":
        run.write_text("my notes\n")
        return store, run, str(run)
    if name == "run directory is the store":
        return store, store, str(store)
    raise AssertionError(name)


CASES = ["other store's run directory", "missing store", "incomplete store", "truncated only checkpoint",
         "foreign file as checkpoint", "run directory is a file", "run directory is the store"]


@pytest.mark.parametrize("mode", ["ray", "serial"])
@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_line_and_nothing_is_lost(name, mode, store, run2, tmp_path, capsys, ray_local):
    """exit 2, one line naming the path, every file as before; on Ray: before Ray Train starts."""
    store_path, run, named = _case(name, store, run2, tmp_path)
    watched = [tmp_path, store]  # the case's copies, and the module's store (also given as a run directory)
    before = [_snapshot(root) for root in watched]
    extra = ["--serial"] if mode == "serial" else ["--workers", "2"]
    code, err, seconds = _train(capsys, store_path, run, tmp_path / "out", *extra)
    print(f"\n{name} [{mode}]: exit {code} in {seconds:.2f} s: {err[-1] if err else ''}")
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("cmpipe: error: "), err
    assert named in err[0]
    assert [_snapshot(root) for root in watched] == before
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_other_model_config_is_named_key_by_key(store, run2, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run2, run)
    before = _snapshot(tmp_path)
    code, err, _ = _train(capsys, store, run, tmp_path / "out", "--serial", "--set", "model.nf=16")
    assert code == 2 and len(err) == 1
    assert "step_00000002.pt was trained with model.nf=8 (the config has 16)" in err[0]
    assert _snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- unreadable checkpoints


@pytest.mark.parametrize("damage", [_truncate, _foreign])
def test_unreadable_checkpoint_is_a_checkpoint_error_naming_the_file(damage, run2, tmp_path):
    ckpt = tmp_path / "step_00000002.pt"
    shutil.copy2(run2 / "checkpoints" / "step_00000002.pt", ckpt)
    damage(ckpt)
    for load in (load_checkpoint, lambda p: load_for_inference(p, "cpu")):
        with pytest.raises(CheckpointReadError, match="not a readable checkpoint") as info:
            load(ckpt)
        message = user_error_message(info.value)
        assert message is not None and message.startswith(str(ckpt)) and "\n" not in message


def test_foreign_torch_file_is_refused(tmp_path):
    import torch

    for content, words in (({"weights": torch.zeros(3)}, "checkpoint format None"), (torch.zeros(3), "holds a Tensor")):
        path = tmp_path / "model.pt"
        torch.save(content, path)
        with pytest.raises(CheckpointReadError, match=words):
            load_checkpoint(path)


def test_inference_does_not_fall_back_silently(run2, tmp_path):
    """A run directory whose latest checkpoint is unreadable: the message names it and the
    previous readable one to pass instead (inference never swaps in an older model unasked)."""
    run = tmp_path / "run"
    shutil.copytree(run2, run)
    _truncate(run / "checkpoints" / "step_00000002.pt")
    with pytest.raises(CheckpointReadError) as info:
        load_for_inference(run, "cpu")
    message = user_error_message(info.value)
    assert str(run / "checkpoints" / "step_00000002.pt") in message
    previous = run / "checkpoints" / "step_00000001.pt"
    assert message.endswith(f"pass the previous readable checkpoint {previous} explicitly")


def test_truncated_latest_checkpoint_falls_back_to_the_previous(store, run2, tmp_path, capsys, caplog):
    """Steps 1 and 2 saved, step 2 truncated: a warning names both, training resumes from step 1,
    rewrites step 2 and reaches step 3; metrics.csv holds each step once, the first row kept.
    (Serial here; the Ray path's fall-back, chosen on the driver, is in the kill test below.)"""
    run = tmp_path / "run"
    shutil.copytree(run2, run)
    bad, good = run / "checkpoints" / "step_00000002.pt", run / "checkpoints" / "step_00000001.pt"
    _truncate(bad)
    first_row = _rows(run)[0]
    with caplog.at_level(logging.WARNING, logger="cmpipe.model.training"):
        code, err, seconds = _train(capsys, store, run, tmp_path / "out", "--max-steps", "3", "--serial")
    print(f"\nfallback [serial]: exit {code} in {seconds:.1f} s")
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
    assert len(warnings) == 1 and str(bad) in warnings[0] and str(good) in warnings[0], caplog.text
    assert [int(r["step"]) for r in _rows(run)] == [1, 2, 3]
    assert _rows(run)[0] == first_row
    assert load_checkpoint(bad).step == 2 and load_checkpoint(latest_checkpoint(run)).step == 3


# ----------------------------------------------------------------------------- Ray's wrappers


def test_user_errors_are_found_inside_ray_train_errors():
    """Ray Train 2.60 raises ``WorkerGroupError`` (``worker_failures``: rank -> the user's exception)
    or ``ControllerError`` (``controller_failure``); both survive pickling, as across processes."""
    import pickle

    from ray.train import ControllerError, WorkerGroupError

    inner = CheckpointError("/r/checkpoints/step_00000002.pt was trained on another store")
    for wrapper in (WorkerGroupError("rank 1 failed", {1: inner}), ControllerError(inner)):
        assert user_error_message(pickle.loads(pickle.dumps(wrapper))) == str(inner)
    assert user_error_message(WorkerGroupError("rank 0 failed", {0: RuntimeError("a bug")})) is None


# ----------------------------------------------------------------------------- a killed DDP run


def _wait_for_free_cpus(ray, seconds: float = 60.0) -> None:
    """Until the shared Ray's 2 CPUs are free: no training worker of an earlier job is left."""
    deadline = time.monotonic() + seconds
    while ray.available_resources().get("CPU", 0.0) < 2.0:
        assert time.monotonic() < deadline, f"Ray workers left behind: {ray.available_resources()}"
        time.sleep(0.2)


def test_killed_two_worker_run_resumes_to_the_uninterrupted_result(store, tmp_path, ray_local):
    """``cmpipe train --workers 2``, a driver process of its own (its own session) on the tests'
    shared Ray, is SIGKILLed once two checkpoints exist; Ray then ends that job's Train controller
    and both DDP workers (the test waits until the 2 CPUs are free, and fails if they are not).
    The latest checkpoint is then truncated (as a copy to shared storage cut by the kill would
    leave it), and the rerun falls back to the previous one, with a warning naming both, and
    finishes.

    A driver on the shared Ray rather than a local Ray per process: two ``ray.init`` less (5-9 s
    each on 2 cores), and nothing of Ray's own to clean up after a SIGKILL.

    Oracle: an uninterrupted two-worker run to the same step; every tensor of the final checkpoint
    (model, EMA, optimizer) equal exactly. Exactness is expected and is asserted: each step's data
    and noise are functions of (seed, step, rank), Adam, the EMA and the step are restored, and the
    gloo all-reduce of two CPU ranks adds two numbers (the same result in either order). torch's
    RNG state in the checkpoint is rank 0's and unused under Ray (see cmpipe.pipeline.train), so
    ``rng`` is not compared.
    """
    steps = 6
    run, whole = tmp_path / "killed", tmp_path / "whole"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    address = ray_local.get_runtime_context().gcs_address
    argv = [sys.executable, "-m", "cmpipe", "train", "--store", str(store), "--run", str(run), "--workers", "2",
            "--max-steps", str(steps), "--address", address, "--out", str(tmp_path), *SETS]
    t0 = time.perf_counter()
    log = (tmp_path / "killed.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while not (run / "checkpoints" / "step_00000002.pt").is_file():
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint in 180 s"
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL
    t_kill = time.perf_counter() - t0
    _wait_for_free_cpus(ray_local)
    bad = latest_checkpoint(run)
    interrupted_at = load_checkpoint(bad).step
    assert 2 <= interrupted_at < steps, "the kill must land mid-run"
    _truncate(bad)
    previous = run / "checkpoints" / f"step_{interrupted_at - 1:08d}.pt"

    done = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    output = done.stdout.decode()
    assert done.returncode == 0, output[-3000:]
    assert f"{bad} is unreadable" in output and f"falling back to the previous checkpoint {previous}" in output
    _wait_for_free_cpus(ray_local)
    t_resume = time.perf_counter() - t0 - t_kill

    from cmpipe.pipeline.train import train_with_ray

    train_with_ray(_cfg(), store, whole, num_workers=2, max_steps=steps)
    print(f"\nkilled at step {interrupted_at} after {t_kill:.1f} s; resumed in {t_resume:.1f} s; "
          f"uninterrupted run {time.perf_counter() - t0 - t_kill - t_resume:.1f} s")
    a, b = load_checkpoint(latest_checkpoint(whole)), load_checkpoint(latest_checkpoint(run))
    assert a.step == b.step == steps
    for field in ("model", "ema", "optimizer"):
        assert tensors_equal(getattr(a, field), getattr(b, field)), field
    assert [int(r["step"]) for r in _rows(run)] == list(range(1, steps + 1))
    assert [r["loss"] for r in _rows(run)] == [r["loss"] for r in _rows(whole)]

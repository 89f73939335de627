"""cmpipe on real Ray clusters started with ``ray start``: a job submitted with ``ray job submit``,
and a two-node cluster on this machine.

Each test starts its own Ray nodes with ``ray start --block`` as child processes (own ports, own
temporary directory, token auth off, usage stats off) and stops exactly those processes at the
end (SIGTERM to ``ray start --block``, which stops what it started; SIGKILL of its process group
as a fallback) -- never a machine-wide ``ray stop``, which would kill other Ray users. Oracles:
the job's status and exit code, and the outputs every stage promises (store complete, checkpoint,
Parquet tables, report); for two nodes, both nodes alive in the cluster and two training workers
of one CPU each on nodes of one CPU each (so one on each node).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiny_stores import INFERENCE_STORE, TINY_INFER, TINY_MODEL

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))
TINY_PIPELINE = [*INFERENCE_STORE, *TINY_MODEL, *TINY_INFER, "train.max_steps=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def short_tmp():
    """A short temporary directory for Ray's session files (its socket paths must stay under 107
    bytes, which pytest's tmp_path names exceed); removed afterwards."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="cmr", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_TMPDIR=str(tmp), RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    return env


@contextlib.contextmanager
def _ray_node(args: list[str], env: dict[str, str], log: Path):
    """``ray start --block ARGS`` as a child process group; stopped (only it) on exit."""
    with log.open("w") as out:
        proc = subprocess.Popen([RAY, "start", "--block", *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _wait_for_nodes(gcs: str, env: dict[str, str], n: int, procs, timeout: float = 90.0) -> None:
    code = ("import ray, json; ray.init(address=%r, logging_level='ERROR'); "
            "print(json.dumps(sum(1 for x in ray.nodes() if x['Alive'])))") % gcs
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            assert p.poll() is None, f"ray start exited with {p.returncode}"
        try:
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            continue
        if out.returncode == 0 and out.stdout.strip() and json.loads(out.stdout.strip().splitlines()[-1]) >= n:
            return
        time.sleep(2)
    raise AssertionError(f"{n} Ray nodes did not come up at {gcs}")


def _sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


def _check_outputs(out: Path, stages: tuple[str, ...]) -> None:
    if "generate" in stages:
        from cmpipe.store import validate_store

        summary = validate_store(out / "images.zarr")  # raises unless every chunk is done
        assert summary["normalised"] and not summary["missing_chunks"]
    if "train" in stages:
        assert sorted((out / "run" / "checkpoints").glob("step_*.pt"))
    if "infer" in stages:
        from cmpipe.store.tables import read_table

        assert read_table(out / "results", "clusters").num_rows == 12  # 6 test images x 2 channels
    if "report" in stages:
        assert (out / "results" / "report" / "report.md").is_file()
        assert (out / "results" / "report" / "table1.csv").is_file()


def _submit_job(submit: list[str], env: dict[str, str], wait_s: float = 300.0) -> subprocess.CompletedProcess:
    """Run ``ray job submit``; while the head's job agent is still starting (a loaded machine: the
    dashboard answers before its agent registers, "No available agent to submit job"), no job was
    created, so submit again until ``wait_s`` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=540)
        not_ready = "No available agent to submit job" in result.stdout + result.stderr
        if result.returncode == 0 or not not_ready or time.monotonic() > deadline:
            return result
        time.sleep(2.0)


def test_ray_job_submit_runs_the_pipeline(tmp_path, short_tmp):
    """``ray start --head`` (with its dashboard), ``ray job submit ... python jobs/pipeline.py``."""
    env = _env(short_tmp)
    port, dash = _free_port(), _free_port()
    out = tmp_path / "out"
    head = ["--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dash}", f"--temp-dir={short_tmp}", "--object-store-memory=200000000",
            "--disable-usage-stats"]
    with _ray_node(head, env, tmp_path / "head.log") as proc:
        _wait_for_nodes(f"127.0.0.1:{port}", env, 1, [proc])
        submit = [RAY, "job", "submit", f"--address=http://127.0.0.1:{dash}", "--working-dir", str(REPO),
                  "--runtime-env", str(REPO / "deploy" / "runtime_env.yaml"), "--",
                  sys.executable, "jobs/pipeline.py", "--config", "demo", "--out", str(out), *_sets(TINY_PIPELINE)]
        result = _submit_job(submit, env)
        log = result.stdout[-4000:] + result.stderr[-4000:]
        assert result.returncode == 0, log
        assert "succeeded" in result.stdout.lower(), log
    _check_outputs(out, ("generate", "train", "infer", "report"))


def test_two_node_cluster_generates_and_trains_across_both(tmp_path, short_tmp):
    """A head and a worker node (1 CPU each, own custom resources) on this machine; generation and
    2-worker DDP training submitted from a driver connected to the head, on shared storage."""
    env = _env(short_tmp)
    port = _free_port()
    gcs = f"127.0.0.1:{port}"
    out = tmp_path / "shared"
    head = ["--head", f"--port={port}", "--num-cpus=1", '--resources={"cmpipe_head": 1}', "--include-dashboard=false",
            f"--temp-dir={short_tmp}", "--object-store-memory=150000000", "--disable-usage-stats"]
    worker = [f"--address={gcs}", "--num-cpus=1", '--resources={"cmpipe_worker": 1}', "--object-store-memory=150000000"]
    with _ray_node(head, env, tmp_path / "head.log") as hp:
        _wait_for_nodes(gcs, env, 1, [hp])
        with _ray_node(worker, env, tmp_path / "worker.log") as wp:
            _wait_for_nodes(gcs, env, 2, [hp, wp])
            cmd = [sys.executable, "-m", "cmpipe", "pipeline", "--address", gcs, "--stages", "generate,train",
                   "--workers", "2", "--out", str(out), *_sets([*TINY_PIPELINE, "train.batch_size=4"])]
            result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540, cwd=tmp_path)
            assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
            assert "on 2 worker(s)" in result.stdout
    _check_outputs(out, ("generate", "train"))
    metrics = (out / "run" / "metrics.csv").read_text().splitlines()
    assert len(metrics) == 3  # header + 2 steps, written by rank 0


@pytest.fixture(autouse=True)
def _no_ray_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

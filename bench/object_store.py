"""Overhead of a bucket: the tiny ``cmpipe pipeline`` (catalog to report) with ``--out`` on local
disk against ``--out s3://...`` on an S3 API served by moto in its own process on localhost.

The configuration is ``tests/test_s3_pipeline.py``'s (10 mock halos, 32 x 32 maps, the tiny
model trained 2 steps, 4 samples per test image; ``--steps``/``--halos`` scale it up). Each run is
a fresh ``cmpipe pipeline`` process (its own local Ray). Runs alternate, local first, ``--repeat``
times, and the per-stage seconds the pipeline prints are collected: the median per stage and in
total, and the bucket's ratio to disk. moto's server is a Python process on the same 2 cores, so
its CPU time counts against the bucket run: a real object store costs network latency instead,
which this cannot show. Prints figures, never asserts them. ``--out FILE.json`` saves them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

STAGE_LINE = re.compile(r"^\[\d+/\d+\] (\w+): .*\((\d+) s\)$")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto(port: int, env: dict[str, str]) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto's server did not start")


def _overrides(args: argparse.Namespace) -> list[str]:
    from test_s3_pipeline import TINY_PIPELINE

    return [*TINY_PIPELINE, f"catalog.n_halos={args.halos}", f"train.max_steps={args.steps}"]


def _run(out: str, overrides: list[str], env: dict[str, str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "cmpipe", "pipeline", "--config", "demo", "--out", out]
    for item in overrides:
        cmd += ["--set", item]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{out}: cmpipe pipeline failed ({done.returncode}):\n{done.stderr[-2000:]}")
    seconds = {m.group(1): float(m.group(2)) for m in map(STAGE_LINE.match, done.stdout.splitlines()) if m}
    seconds["process"] = wall
    return seconds


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="runs on each side (default 2)")
    parser.add_argument("--halos", type=int, default=10, help="catalog.n_halos (default 10)")
    parser.add_argument("--steps", type=int, default=2, help="train.max_steps (default 2)")
    parser.add_argument("--out", type=Path, help="write the figures to this JSON file")
    args = parser.parse_args(argv)

    import boto3

    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="cmpipe-bench-s3-") as work:
        env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                   AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_CONFIG_FILE=os.devnull,
                   RAY_USAGE_STATS_ENABLED="0")
        env.pop("RAY_ADDRESS", None)  # each run starts its own local Ray
        moto = _moto(port, env)
        try:
            bucket = f"cmpipe-bench-{uuid.uuid4().hex[:8]}"
            boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="bench",
                         aws_secret_access_key="bench", region_name="us-east-1").create_bucket(Bucket=bucket)
            overrides = _overrides(args)
            local, remote = [], []
            for k in range(args.repeat):
                local.append(_run(f"{work}/local{k}", overrides, env))
                remote.append(_run(f"s3://{bucket}/run{k}", overrides, env))
                print(f"run {k + 1}/{args.repeat}: local {local[-1]['process']:.1f} s, bucket {remote[-1]['process']:.1f} s",
                      flush=True)
        finally:
            moto.terminate()
            moto.wait()
    med_local, med_remote = _median(local), _median(remote)
    print(f"\ncmpipe pipeline, {args.halos} mock halos, {args.steps} training steps; median of {args.repeat} runs [s]")
    print(f"{'stage':<10} {'local':>8} {'bucket':>8} {'ratio':>6}")
    for stage in med_local:
        ratio = med_remote[stage] / med_local[stage] if med_local[stage] else float("nan")
        print(f"{stage:<10} {med_local[stage]:>8.1f} {med_remote[stage]:>8.1f} {ratio:>6.2f}")
    figures = {"halos": args.halos, "steps": args.steps, "repeat": args.repeat, "local": local, "bucket": remote,
               "median_local_s": med_local, "median_bucket_s": med_remote}
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()

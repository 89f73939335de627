"""What cmpipe prints (issue 21, item 4) and its optional experiment tracking (item 5).

Oracles: a captured ``cmpipe demo`` on a tiny config, in a subprocess with its own local Ray (so
the workers' output would be captured too): fewer than 60 lines, none from Ray's placement-group
cleaner, Ray Train's controller, Ray Data's progress dumps or ANSI-coloured worker prefixes, no
line twice, one progress line per long stage off a terminal, and a summary naming the log
directory that holds the workers' output; a ``-q`` rerun prints the final summary and nothing
else. The progress display against a fake clock; TensorBoard's event records decoded from the
files (TFRecord framing, tensorboardX's protobuf) against the ``metrics.csv`` rows; MLflow
against a stand-in module recording its calls (mlflow is not installed here).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest

from cmpipe.progress import NORMAL, QUIET, VERBOSE, Progress, set_verbosity

REPO = Path(__file__).resolve().parents[1]
#: The demo on 10 mock halos, 32 x 32 maps, the tiny model (2 steps) and sampler of the other
#: tests, tracked with TensorBoard.
TINY_DEMO = [
    "catalog.n_halos=10", "catalog.log10_m_max_msun_h=14.0", "mock.pair_mass_msun_h=1e11",
    "maps.npix=32", "maps.pixel_mpc=0.4", "sph.num_threads=1",
    "generate.images_per_0p1dex=6", "generate.chunk_images=4", "generate.split_fractions=[0.5, 0.2, 0.3]",
    "model.resolution=16", "model.nf=8", "model.ch_mult=[1, 2]", "model.num_res_blocks=1", "model.attention=false",
    "train.batch_size=4", "train.warmup_steps=1", "train.checkpoint_every=2", "train.val_every=2",
    "train.val_batches=1", "train.num_workers=0", "train.augment=false", "train.max_steps=2",
    "train.tracking=tensorboard",
    "infer.n_samples=4", "infer.sampler=em", "infer.steps=4", "infer.batch_size=16", "infer.images_per_batch=1",
    "infer.actors=1", "infer.cpus_per_actor=1", "infer.gpus_per_actor=0", "infer.threads_per_actor=1",
    "evaluate.test_log10_m_min_msun_h=13.5", "evaluate.test_log10_m_max_msun_h=14.0",
]
#: What Ray prints on a driver left alone: the placement-group cleaner and Ray Train controller
#: (through log_to_driver), Ray Data's progress dumps and execution banners, coloured prefixes.
RAY_NOISE = re.compile(r"PlacementGroupCleaner|Failed to query|TrainController|RayTrainWorker|logging_progress"
                       r"|Running Dataset|Total Progress|streaming_executor|Started a local Ray|\x1b\[|\(pid=")
#: A log line's timestamp (cmpipe's and Ray's formats).
TIMESTAMP = re.compile(r"^\[?\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\s*")


@pytest.fixture(autouse=True)
def _normal_verbosity():
    set_verbosity(NORMAL)
    yield
    set_verbosity(NORMAL)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


# ------------------------------------------------------------------------------ progress display


def test_progress_off_a_terminal_prints_a_line_every_n_seconds_when_it_moved():
    # Oracle: the schedule by hand: lines at t = 30 (3/10) and 61 (6/10, nothing new at 40-60
    # printed twice), the last at close (10/10); rate 0.1 step/s -> "10 s per step".
    out, clock = io.StringIO(), _Clock()
    with Progress(10, "train", "steps", stream=out, tty=False, every_s=30, clock=clock) as bar:
        for t, n in ((10, 1), (20, 2), (30, 3), (40, 3), (50, 3), (61, 6), (70, 6), (100, 10)):
            clock.t = t
            bar.moveto(n, loss=0.5)
            if t == 61:
                assert bar.line().startswith("train: 6/10 steps (60 %), 10.2 s per step, loss 0.5, 0:41 left")
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == ["train: 3/10 steps (30 %)", "train: 6/10 steps (60 %)",
                                                     "train: 10/10 steps (100 %)"]
    assert lines[-1].endswith("done in 1:40") and len(set(lines)) == len(lines)


def test_progress_resumed_counts_its_rate_from_the_initial_count():
    out, clock = io.StringIO(), _Clock()
    bar = Progress(200, "train", "steps", initial=100, stream=out, tty=False, every_s=1, clock=clock)
    clock.t = 10.0
    bar.moveto(150)
    assert bar.line() == "train: 150/200 steps (75 %), 5 steps/s, 0:10 left"
    bar.close()
    assert out.getvalue() == "train: 150/200 steps (75 %), 5 steps/s, 0:10 left\n"


def test_progress_is_a_bar_on_a_terminal_and_silent_when_quiet():
    out = io.StringIO()
    with Progress(4, "generate", "chunks", stream=out, tty=True) as bar:
        bar.update(4, images=16)
    assert "generate" in out.getvalue() and "4/4" in out.getvalue() and "images=16" in out.getvalue()
    set_verbosity(QUIET)
    quiet = io.StringIO()
    for tty in (True, False):
        with Progress(4, "generate", "chunks", stream=quiet, tty=tty, every_s=0) as bar:
            bar.update(4)
    assert quiet.getvalue() == ""
    with pytest.raises(ValueError):
        set_verbosity(2)


def test_last_metrics_row_skips_a_row_being_written(tmp_path):
    from cmpipe.pipeline.train import last_metrics_row

    path = tmp_path / "metrics.csv"
    assert last_metrics_row(path) is None
    path.write_text("step,loss,loss_per_dim,lr,grad_norm,val_loss,images_per_s\n")
    assert last_metrics_row(path) is None
    path.write_text(path.read_text() + "1,500.0,0.98,1e-4,3.0,,40.0\n2,400.0,0.78,2e-4,2.0,0.8,41.0\n3,30")
    row = last_metrics_row(path)
    assert (row["step"], row["loss_per_dim"], row["val_loss"]) == ("2", "0.78", "0.8")


# ------------------------------------------------------------------------------ logging set-up


def test_logging_is_set_up_once_however_often_main_runs(capsys, monkeypatch):
    import logging

    from cmpipe.cli import _StderrHandler, configure_logging, main

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # as in a fresh process (not pytest's)
    for _ in range(3):
        assert main(["config", "--set", "run.log_level=INFO"]) == 0
    capsys.readouterr()
    root = logging.getLogger()
    assert sum(isinstance(h, _StderrHandler) for h in root.handlers) == 1
    logging.getLogger("cmpipe.test_terminal").warning("said once")
    logging.getLogger("cmpipe.test_terminal").info("cmpipe's info")
    logging.getLogger("botocore.test_terminal").info("a library's info")
    err = capsys.readouterr().err
    assert err.count("said once") == 1 and "cmpipe's info" in err and "a library's info" not in err
    configure_logging("INFO", quiet=True)
    logging.getLogger("cmpipe.test_terminal").warning("not said")
    logging.getLogger("cmpipe.test_terminal").error("an error")
    err = capsys.readouterr().err
    assert "not said" not in err and err.count("an error") == 1
    assert main(["config", "-q", "-v"]) == 2  # one or the other
    assert "not allowed with" in capsys.readouterr().err
    configure_logging("INFO")


def test_ray_is_started_quiet_unless_verbose(monkeypatch):
    """The arguments of ``ray.init`` (not called: recorded): workers' output not forwarded and
    Ray's driver log at WARNING by default; Ray's own defaults under ``-v``."""
    import ray

    from cmpipe.pipeline import session

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(session, "quiet_driver", lambda: calls.append("quiet"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert session.start_ray(None)
    assert calls[0]["log_to_driver"] is False and calls[0]["logging_level"] == 30 and calls[1] == "quiet"
    set_verbosity(VERBOSE)
    calls.clear()
    assert session.start_ray("auto")
    assert calls == [{"address": "auto"}]


# ------------------------------------------------------------------------------ tracking


def _tfrecords(path: Path) -> list[bytes]:
    """The records of a TFRecord file (length, its CRC, data, its CRC), CRCs not checked."""
    data, out, k = path.read_bytes(), [], 0
    while k < len(data):
        (n,) = struct.unpack("<Q", data[k:k + 8])
        out.append(data[k + 12:k + 12 + n])
        k += 12 + n + 4
    return out


def _scalars(directory: Path) -> dict[str, dict[int, float]]:
    from tensorboardX.proto.event_pb2 import Event

    found: dict[str, dict[int, float]] = {}
    for path in sorted(directory.iterdir()):
        for record in _tfrecords(path):
            event = Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    found.setdefault(value.tag, {})[event.step] = value.simple_value
    return found


def _check_tensorboard(run: Path) -> None:
    """The event files of ``run/tensorboard`` hold each ``metrics.csv`` row's loss and learning
    rate at its step, and the validation loss only where it was measured (float32 of the CSV)."""
    import csv

    with (run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    scalars = _scalars(run / "tensorboard")
    assert rows and sorted(scalars["train/loss"]) == [int(r["step"]) for r in rows]
    for row in rows:
        step = int(row["step"])
        assert scalars["train/loss"][step] == pytest.approx(float(row["loss"]), rel=1e-6)
        assert scalars["train/lr"][step] == pytest.approx(float(row["lr"]), rel=1e-6)
    assert {int(r["step"]): float(r["val_loss"]) for r in rows if r["val_loss"]} == pytest.approx(scalars["val/loss"])


def test_tensorboard_tracking_is_a_sink_of_the_metrics_log(tmp_path):
    """A run directory opened as :func:`cmpipe.model.training.train_loop` opens it on rank 0, with
    ``train.tracking=tensorboard``: the rows written go to ``metrics.csv`` and the event files; a
    resumed run (start 2) purges the events past its checkpoint. (The Ray Train path: the demo test.)"""
    from cmpipe.model.training import MetricsLog, _open_run_dir

    rows = [{"step": s, "loss": 500.0 / s, "loss_per_dim": 1.0 / s, "lr": 1e-4 * s, "grad_norm": 3.0,
             "val_loss": 0.5 if s == 2 else "", "images_per_s": 40.0} for s in (1, 2, 3)]
    with _open_run_dir(tmp_path, 0, None, "tensorboard", {"model": {"nf": 8}}) as log:
        for row in rows:
            log.write(row)
    _check_tensorboard(tmp_path)
    before = set((tmp_path / "tensorboard").iterdir())
    with _open_run_dir(tmp_path, 2, None, "tensorboard", {}) as log:  # resumed from step 2
        log.write({**rows[2], "loss": 7.0})
    from tensorboardX.proto.event_pb2 import Event, SessionLog

    (new,) = set((tmp_path / "tensorboard").iterdir()) - before
    events = [Event.FromString(r) for r in _tfrecords(new)]
    # TensorBoard drops the earlier events from the step of a START session log on (purge_step)
    assert any(e.step == 2 and e.session_log.status == SessionLog.START for e in events)
    assert [(e.step, e.summary.value[0].simple_value) for e in events if e.summary.value[:1]
            and e.summary.value[0].tag == "train/loss"] == [(3, 7.0)]
    with MetricsLog(tmp_path, 3, sinks=[lambda row: 1 / 0]) as log:  # a failing sink: dropped, one warning
        log.write({**rows[2], "step": 4})
        assert log.sinks == []


def test_mlflow_tracking_needs_the_package_and_its_uri_and_logs_batches(tmp_path, monkeypatch):
    from cmpipe.model import tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if "mlflow" not in sys.modules:
        with pytest.raises(tracking.TrackingError, match="needs the mlflow package"):
            tracking.check_tracking("mlflow")
    calls: list[tuple] = []
    fake = types.ModuleType("mlflow")
    fake.set_experiment = lambda name: calls.append(("experiment", name))
    fake.start_run = lambda run_id=None, run_name=None: (calls.append(("start", run_id, run_name)) or types.SimpleNamespace(
        info=types.SimpleNamespace(run_id=run_id or "r1")))
    fake.log_params = lambda params: calls.append(("params", params))
    fake.end_run = lambda: calls.append(("end",))
    client = types.SimpleNamespace(log_batch=lambda run_id, metrics: calls.append(("batch", run_id, metrics)))
    fake.tracking = types.SimpleNamespace(MlflowClient=lambda: client)
    entities = types.ModuleType("mlflow.entities")
    entities.Metric = lambda key, value, timestamp, step: (key, value, step)
    fake.__spec__ = entities.__spec__ = importlib_spec("mlflow")
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    monkeypatch.setitem(sys.modules, "mlflow.entities", entities)
    with pytest.raises(tracking.TrackingError, match="MLFLOW_TRACKING_URI"):
        tracking.check_tracking("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///nowhere.db")
    tracker = tracking.open_tracker("mlflow", tmp_path, 0, {"model": {"nf": 8}, "sigma_max": 3.5})
    tracker({"step": 1, "loss": 5.0, "loss_per_dim": 1.0, "lr": 1e-4, "grad_norm": 2.0, "val_loss": "",
             "images_per_s": 9.0})
    tracker.close()
    assert ("params", {"model.nf": "8", "sigma_max": "3.5"}) in calls and calls[-1] == ("end",)
    batch = [c for c in calls if c[0] == "batch"][0]
    assert batch[1] == "r1" and ("train/loss", 5.0, 1) in batch[2] and not any(m[0] == "val/loss" for m in batch[2])
    assert (tmp_path / tracking.MLFLOW_RUN_ID).read_text().strip() == "r1"
    calls.clear()
    tracking.open_tracker("mlflow", tmp_path, 2, {}).close()  # a resumed run: the same MLflow run
    assert ("start", "r1", None) in calls and not any(c[0] == "params" for c in calls)


def importlib_spec(name: str):
    import importlib.machinery

    return importlib.machinery.ModuleSpec(name, None)


# ------------------------------------------------------------------------------ the whole demo


def _env(ray_tmp: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "CMPIPE_"))}
    env.update(RAY_TMPDIR=ray_tmp, RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1",
               CMPIPE_PROGRESS_S="3", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    return env


def _cmpipe(out: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cmpipe", *args, "--out", str(out),
           *[a for s in TINY_DEMO for a in ("--set", s)]]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540, cwd=out.parent)


def test_demo_prints_a_short_quiet_log_and_q_only_the_summary(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="cmt", dir="/tmp")  # Ray's socket paths must stay short
    try:
        env = _env(ray_tmp)
        out = tmp_path / "demo"
        run = _cmpipe(out, env, "demo")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
        assert len(lines) < 60, "\n".join(lines)
        assert not [line for line in lines if RAY_NOISE.search(line)], "\n".join(lines)
        messages = [TIMESTAMP.sub("", line) for line in lines]
        assert len(set(messages)) == len(messages), "\n".join(lines)
        for stage in ("generate: 6/6 chunks", "train: 2/2 steps", "infer: 3/3 images"):
            assert any(line.startswith(stage) for line in run.stderr.splitlines()), run.stderr
        logs = re.search(r"Ray's worker logs:\s+(\S+)", run.stdout)  # rank 0's log line went there
        assert logs and any("sigma_max =" in p.read_text(errors="replace") for p in Path(logs[1]).glob("worker-*.err"))
        _check_tensorboard(out / "run")  # written by rank 0 inside Ray Train

        # -q: a rerun of the Ray stages (each resumes: nothing left to do) prints the summary only
        again = _cmpipe(out, env, "pipeline", "-q", "--stages", "generate,train,infer")
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
        assert again.stderr == ""
        summary = run.stdout[run.stdout.index("\ncmpipe: all stages done"):]
        assert again.stdout.startswith("\ncmpipe: all stages done")
        strip = re.compile(r"done in \d+ s|session_\S+")
        assert strip.sub("", again.stdout) == strip.sub("", summary)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

"""Training of the score model: one step, checkpoints, resume, and the one training loop.

:func:`train_loop` is the loop of every training process: a single process (the default
:class:`WorkerContext`) or one Ray Train worker (:mod:`cmpipe.pipeline.train` passes a context
that wraps the network in DDP, averages the loss over the ranks and reports to Ray), as Ray's
own examples insert three calls into an ordinary loop. Before each step torch's RNG is seeded
with :func:`step_noise_seed` (seed, step, rank): the loss's noise is a function of the step and
the rank only. Functions here take the ``model`` and ``train`` config sections
(:class:`~cmpipe.config.ModelConfig`, :class:`~cmpipe.config.TrainConfig`) and plain values;
:mod:`cmpipe.stages.train` turns a whole configuration into them.

Checkpoint format (a data contract)
-----------------------------------
A run directory holds ``metrics.csv``, ``config.resolved.yaml``, cmpipe's ownership marker
(:func:`cmpipe.store.outputs.mark_directory`, kind ``run``) and ``checkpoints/``, which holds
``step_XXXXXXXX.pt`` (8-digit step) and, beside each, ``step_XXXXXXXX.json`` (its
hyper-parameters, for people and tools without torch). Only the last ``train.keep_checkpoints``
pairs are kept. Each ``.pt`` is ``torch.save`` of a plain dict of tensors and builtins (serialised
in memory, then written whole: a temporary file renamed into place on disk, one PUT of the final
object on an object store, :func:`cmpipe.store.location.write_bytes_atomic`), so
``torch.load(..., weights_only=True)`` reads it, from the file or from its bytes:

=======================  ===========================================================================
key                      value
=======================  ===========================================================================
``format_version``       :data:`CHECKPOINT_FORMAT_VERSION` (int)
``step``                 optimizer steps done (int)
``model``                the network's ``state_dict`` (unwrapped from DDP): NCSN++, or the U-Net
                         of ``model.kind: unet`` (:mod:`cmpipe.model.unet`)
``ema``                  ``torch_ema.ExponentialMovingAverage.state_dict()`` over the network's
                         parameters in ``parameters()`` order (``decay``, ``num_updates``,
                         ``shadow_params``, ``collected_params``)
``optimizer``            ``torch.optim.Adam.state_dict()``
``rng``                  ``{"torch": torch.get_rng_state(), "cuda": [per-device states]}``
``store_fingerprint``    the store's ``store_fingerprint`` attribute (str)
``hyperparameters``      ``{"model": model config section (dict), "sigma_min", "sigma_max"
                         (float, the value used; 0.0 for ``model.kind: unet``),
                         "sigma_max_source" ("config", "data", or "n/a" for unet),
                         "resolution", "channels" ({"x": [...], "cond": [...]}),
                         "normalisation" (the store's attribute), "train": train config section,
                         "maps" ({"npix", "pixel_mpc", "depth_mpc"}: the store's grid [pixels,
                         Mpc, Mpc]), "score_models_version", "cmpipe_version"}``
=======================  ===========================================================================

``metrics.csv`` has one row per step: ``step`` (after the update), ``loss`` (``sm.loss_fn``: the
denoising score-matching loss summed over channels and pixels, mean over the batch), ``loss_per_dim``
(``loss / (C H W)``, about 1 at initialisation), ``lr``, ``grad_norm`` (before clipping),
``val_loss`` (same definition as ``loss``, EMA weights, fixed noise; empty except every
``train.val_every`` steps), ``images_per_s``. On resume, rows after the checkpoint's step are dropped.

The run directory may be an object-store URL (:mod:`cmpipe.store.location`), as may the image
store. There is ONE copy of each checkpoint: cmpipe's ``checkpoints/step_XXXXXXXX.pt``, addressed
by its path or URL; it is what a run resumes from and what inference loads. (Ray Train is given
a pointer to it, never a copy: see :mod:`cmpipe.pipeline.train`.) On an object store
an object cannot be appended to, so ``metrics.csv`` is rewritten whole (:class:`MetricsLog`):
at least before every checkpoint, so it always holds the rows up to the checkpoint a resume
starts from; the ``.json`` of a checkpoint is written before its ``.pt``, and only ``.pt`` objects
count as checkpoints, listed afresh each time (:func:`checkpoint_paths`).

Resume reads the latest *readable* checkpoint (:func:`resume_checkpoint`): one that cannot be read
(:class:`CheckpointReadError`: truncated, a foreign file) is skipped for the previous one with a
warning naming both, and is rewritten when the run reaches its step again. Everything a run needs
is checked first by :func:`validate_run` (the serial run and the Ray driver alike).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from cmpipe.store.location import AnyPath, as_path, check_reachable, is_remote, write_bytes_atomic, write_text_atomic
from cmpipe.store.tables import refreshed

if TYPE_CHECKING:  # pragma: no cover
    from score_models import ScoreModel
    from torch_ema import ExponentialMovingAverage

    from cmpipe.config import MapsConfig, ModelConfig, TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "METRICS_COLUMNS",
    "CheckpointError",
    "CheckpointReadError",
    "LATEST",
    "RunCheck",
    "MetricsLog",
    "RunSetup",
    "StepBatchSampler",
    "StepResult",
    "TrainState",
    "WarmupSchedule",
    "WorkerContext",
    "build_training",
    "ema_validation_loss",
    "checkpoint_paths",
    "latest_checkpoint",
    "load_checkpoint",
    "load_for_inference",
    "make_ema",
    "make_loaders",
    "prepare_run",
    "resume_checkpoint",
    "save_checkpoint",
    "step_noise_seed",
    "train_loop",
    "train_step",
    "unwrap",
    "validate_run",
    "validation_loss",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT_VERSION = 1
METRICS_COLUMNS: tuple[str, ...] = ("step", "loss", "loss_per_dim", "lr", "grad_norm", "val_loss", "images_per_s")
CHECKPOINT_DIR = "checkpoints"
METRICS_NAME = "metrics.csv"
#: On an object store, :class:`MetricsLog` rewrites ``metrics.csv`` at most this often [s] between
#: checkpoints (and before every checkpoint, and at the end).
METRICS_FLUSH_S = 30.0
_CHECKPOINT_RE = re.compile(r"step_(\d{8})\.pt")
# Offset of the validation noise seed from train.seed (validation never touches the training RNG).
_VAL_SEED_OFFSET = 1_000_003


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked: another store's, another model's, malformed."""


class CheckpointReadError(CheckpointError):
    """A file that cannot be read as a cmpipe checkpoint: truncated, foreign, another format version.

    Resume skips such a checkpoint for the previous readable one (:func:`resume_checkpoint`); a
    checkpoint that reads but belongs to another store or model is a plain :class:`CheckpointError`.
    """


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DDP (or Ray Train) wrapper, or the network itself."""
    return model.module if hasattr(model, "module") else model


def make_ema(network: torch.nn.Module, decay: float) -> ExponentialMovingAverage:
    """``torch_ema.ExponentialMovingAverage`` over ``network.parameters()`` (score_models' own
    choice, with its warm-up ``min(decay, (1 + n) / (10 + n))``)."""
    from torch_ema import ExponentialMovingAverage

    return ExponentialMovingAverage(unwrap(network).parameters(), decay=decay)


@dataclasses.dataclass(frozen=True)
class WarmupSchedule:
    """Learning rate of step ``s`` (0-based): ``lr * min(1, (s + 1) / warmup_steps)``
    (linear warm-up, then constant; ``warmup_steps = 0`` means none)."""

    lr: float
    warmup_steps: int

    def __call__(self, step: int) -> float:
        if self.warmup_steps <= 0:
            return self.lr
        return self.lr * min(1.0, (step + 1) / self.warmup_steps)


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What one :func:`train_step` did: ``loss`` (score_models' definition), ``loss_per_dim``
    (``loss / (C H W)``), ``lr`` used and ``grad_norm`` (total 2-norm before clipping)."""

    loss: float
    loss_per_dim: float
    lr: float
    grad_norm: float


def train_step(
    sm: ScoreModel,
    optimizer: torch.optim.Optimizer,
    ema: ExponentialMovingAverage | None,
    batch: tuple[torch.Tensor, torch.Tensor],
    clip_norm: float,
    lr_schedule: Callable[[int], float],
    *,
    step: int,
) -> StepResult:
    """One optimizer step on one batch.

    Sets the learning rate to ``lr_schedule(step)``, back-propagates ``sm.loss_fn(x, cond)``
    (denoising score matching, summed over C H W, mean over the batch), clips the gradients'
    total norm to ``clip_norm`` (``<= 0``: no clipping), steps the optimizer and updates ``ema``.
    Draws the loss's noise and times from torch's global RNG (as score_models does).

    Parameters
    ----------
    sm : ScoreModel
        ``sm.model`` may be DDP-wrapped.
    optimizer : torch.optim.Optimizer
        Over ``sm.model.parameters()``.
    ema : ExponentialMovingAverage or None
    batch : (x, cond)
        ``(B, 2, R, R)`` tensors; moved to ``sm.device``.
    clip_norm : float
    lr_schedule : callable
        Step (0-based) -> learning rate, e.g. :class:`WarmupSchedule`.
    step : int
        Steps done before this one.

    Returns
    -------
    StepResult
    """
    x, cond = (t.to(sm.device, non_blocking=True) for t in batch)
    lr = float(lr_schedule(step))
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss = sm.loss_fn(x, cond)
    loss.backward()
    params = [p for p in sm.model.parameters() if p.grad is not None]
    max_norm = clip_norm if clip_norm > 0 else math.inf
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    if ema is not None:
        ema.update()
    value = float(loss.detach())
    return StepResult(value, value / x[0].numel(), lr, float(grad_norm))


@dataclasses.dataclass
class TrainState:
    """Everything a checkpoint holds (see the module docstring for the format).

    Attributes
    ----------
    step : int
    model, ema, optimizer : dict
        State dicts of the network (unwrapped), the EMA and the optimizer.
    rng : dict
        ``{"torch": ByteTensor, "cuda": [ByteTensor, ...]}``.
    hyperparameters : dict
    store_fingerprint : str
    """

    step: int
    model: dict[str, Any]
    ema: dict[str, Any]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    hyperparameters: dict[str, Any]
    store_fingerprint: str

    @classmethod
    def capture(
        cls, sm: ScoreModel, optimizer: torch.optim.Optimizer, ema: ExponentialMovingAverage, step: int,
        hyperparameters: Mapping[str, Any], store_fingerprint: str,
    ) -> TrainState:
        """The state of a live training run (tensors are copied to the CPU)."""
        cuda = [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else []
        return cls(
            step=int(step),
            model=_to_cpu(unwrap(sm.model).state_dict()),
            ema=_to_cpu(ema.state_dict()),
            optimizer=_to_cpu(optimizer.state_dict()),
            rng={"torch": torch.get_rng_state(), "cuda": cuda},
            hyperparameters=json.loads(json.dumps(dict(hyperparameters))),
            store_fingerprint=str(store_fingerprint),
        )

    def restore(self, sm: ScoreModel, optimizer: torch.optim.Optimizer | None = None,
                ema: ExponentialMovingAverage | None = None, rng: bool = True) -> None:
        """Load the network, optimizer, EMA and (``rng``) the global RNG states into a run."""
        unwrap(sm.model).load_state_dict(self.model)
        if optimizer is not None:
            optimizer.load_state_dict(self.optimizer)
        if ema is not None:
            ema.load_state_dict(self.ema)
        if rng:
            torch.set_rng_state(self.rng["torch"])
            if self.rng.get("cuda") and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(self.rng["cuda"])

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": CHECKPOINT_FORMAT_VERSION, **dataclasses.asdict(self)}


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_checkpoint(path: str | os.PathLike[str], state: TrainState) -> AnyPath:
    """Write its hyper-parameters to ``path.with_suffix('.json')``, then ``state`` to ``path``.

    Each is written whole (:func:`cmpipe.store.location.write_bytes_atomic`: a temporary file
    renamed into place on disk, one PUT on an object store); the ``.pt`` last, so a listed
    checkpoint has its ``.json``. ``torch.save`` serialises into memory first: the file's bytes do
    not depend on its name or on the process that wrote it.

    Parameters
    ----------
    path : str, path-like or URL
    state : TrainState

    Returns
    -------
    path
        ``path`` (:func:`cmpipe.store.location.as_path`).
    """
    path = as_path(path)
    if not is_remote(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": CHECKPOINT_FORMAT_VERSION, "step": state.step,
        "store_fingerprint": state.store_fingerprint, "hyperparameters": state.hyperparameters,
    }
    write_text_atomic(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    buffer = io.BytesIO()
    torch.save(state.to_dict(), buffer)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def load_checkpoint(
    path: str | os.PathLike[str], store_fingerprint: str | None = None, map_location: str | torch.device = "cpu"
) -> TrainState:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (from the file on disk; from its
    bytes, read in one GET, on an object store).

    Parameters
    ----------
    path : str, path-like or URL
    store_fingerprint : str, optional
        If given, the checkpoint must come from a store with this fingerprint.
    map_location : str or torch.device

    Returns
    -------
    TrainState

    Raises
    ------
    CheckpointReadError
        If the file cannot be read as a cmpipe checkpoint (truncated, not a torch file, not a
        cmpipe checkpoint, fields missing), naming it.
    CheckpointError
        If the format version differs, or the store fingerprint differs (naming both).
    FileNotFoundError
        If there is no file at ``path``.
    """
    path = as_path(path)
    try:
        source = io.BytesIO(path.read_bytes()) if is_remote(path) else path
        with warnings.catch_warnings():  # a foreign pickle's protocol: the failure below says it all
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            data = torch.load(source, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError, KeyError...
        reason = " ".join(str(exc).split()).split(". ")[0][:120] or type(exc).__name__  # torch's first sentence
        raise CheckpointReadError(
            f"{path}: not a readable checkpoint (truncated or not written by cmpipe): {reason}"
        ) from exc
    if not isinstance(data, dict):
        raise CheckpointReadError(f"{path}: not a cmpipe checkpoint (holds a {type(data).__name__}, not a dict)")
    version = data.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointReadError(
            f"{path}: checkpoint format {version!r}, this cmpipe reads {CHECKPOINT_FORMAT_VERSION}"
        )
    missing = [f.name for f in dataclasses.fields(TrainState) if f.name not in data]
    if missing:
        raise CheckpointReadError(f"{path}: not a complete cmpipe checkpoint (no {', '.join(missing)})")
    if store_fingerprint is not None and data["store_fingerprint"] != store_fingerprint:
        raise CheckpointError(
            f"{path} was trained on a store with fingerprint {data['store_fingerprint']}, "
            f"not this store's {store_fingerprint}: use another run directory for another store"
        )
    fields = {f.name for f in dataclasses.fields(TrainState)}
    return TrainState(**{k: v for k, v in data.items() if k in fields})


def _readable(path: AnyPath) -> bool:
    try:
        load_checkpoint(path)
    except CheckpointReadError:
        return False
    return True


def resume_checkpoint(run_dir: str | os.PathLike[str], store_fingerprint: str | None = None
                      ) -> tuple[AnyPath | None, TrainState | None]:
    """The checkpoint a run resumes from: the latest readable one, and its content.

    An unreadable checkpoint (:class:`CheckpointReadError`: truncated by a crash mid-copy, a
    foreign file) is skipped for the previous one with a logged warning naming both; it is left in
    place (the run rewrites it when it reaches its step again).

    Parameters
    ----------
    run_dir : str or path-like
    store_fingerprint : str, optional
        The store being trained on: a readable checkpoint of another store is refused.

    Returns
    -------
    (path, state) or (None, None)
        ``(None, None)`` if the run has no checkpoint: a fresh start.

    Raises
    ------
    CheckpointReadError
        If the run has checkpoints and none is readable (naming the latest).
    CheckpointError
        If the checkpoint resumed from belongs to another store.
    """
    paths = checkpoint_paths(run_dir)
    skipped: list[tuple[AnyPath, CheckpointReadError]] = []
    for path in reversed(paths):
        try:
            state = load_checkpoint(path, store_fingerprint=store_fingerprint)
        except CheckpointReadError as exc:
            skipped.append((path, exc))
            continue
        if skipped:
            logger.warning("%s is unreadable (%s): falling back to the previous checkpoint %s (step %d)",
                           skipped[0][0], skipped[0][1], path, state.step)
        return path, state
    if skipped:
        path, exc = skipped[0]
        raise CheckpointReadError(
            f"{exc}; no checkpoint of {as_path(run_dir) / CHECKPOINT_DIR} is readable: "
            "move them away to start afresh, or use another run directory"
        ) from exc
    return None, None


def checkpoint_paths(run_dir: str | os.PathLike[str]) -> list[AnyPath]:
    """The checkpoints (``.pt``) of a run directory, oldest (lowest step) first: listed afresh
    (:func:`cmpipe.store.tables.refreshed`), as other processes write them."""
    directory = refreshed(as_path(run_dir) / CHECKPOINT_DIR)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if _CHECKPOINT_RE.fullmatch(p.name)), key=lambda p: p.name)


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> AnyPath | None:
    """The checkpoint with the highest step, or None."""
    paths = checkpoint_paths(run_dir)
    return paths[-1] if paths else None


def _model_config(hyperparameters: Mapping[str, Any]) -> ModelConfig:
    from cmpipe.config import ModelConfig

    return ModelConfig(**hyperparameters["model"])


def load_for_inference(
    run_dir: str | os.PathLike[str],
    device: str | torch.device,
    use_ema: bool = True,
    store_fingerprint: str | None = None,
) -> ScoreModel:
    """The score model of a checkpoint (a file, or a run's latest), in eval mode on ``device``.

    Parameters
    ----------
    run_dir : str, path-like or URL
        A run directory (its latest checkpoint) or a checkpoint file.
    device : str or torch.device
    use_ema : bool
        The EMA weights (default) or the raw ones.
    store_fingerprint : str, optional
        The store the model will be used on: a checkpoint trained on another store is refused
        (:class:`CheckpointError` naming both fingerprints).

    Returns
    -------
    ScoreModel or cmpipe.model.unet.RegressionModel
        The checkpoint's ``model.kind``. With ``sm.hyperparameters["cmpipe"]`` = the checkpoint's hyper-parameters (normalisation
        included, for :func:`cmpipe.model.dataset.denormalise`) and
        ``sm.hyperparameters["cmpipe_checkpoint"]`` = ``{"path", "step"}``.
    """
    from cmpipe.model.network import build_model

    given = refreshed(run_dir)
    path = given
    if not given.is_file():
        path = latest_checkpoint(given)
        if path is None:
            raise CheckpointError(f"{run_dir}: no checkpoint in {given / CHECKPOINT_DIR}")
    try:
        state = load_checkpoint(path, store_fingerprint=store_fingerprint)
    except CheckpointReadError as exc:
        if path is given:
            raise
        # No silent fall-back to an older model for inference: say which one would do.
        older = next((p for p in reversed(checkpoint_paths(run_dir)[:-1]) if _readable(p)), None)
        hint = f"; pass the previous readable checkpoint {older} explicitly" if older else ""
        raise CheckpointReadError(f"the latest checkpoint of {run_dir}: {exc}{hint}") from exc
    hp = state.hyperparameters
    sm = build_model(_model_config(hp), hp["sigma_max"], device)
    sm.model.load_state_dict(state.model)
    if use_ema:
        ema = make_ema(sm.model, hp["train"]["ema_decay"])
        ema.load_state_dict(state.ema)
        ema.copy_to()
    sm.hyperparameters["cmpipe_checkpoint"] = {"path": str(path), "step": int(state.step)}
    sm.hyperparameters["cmpipe"] = hp
    sm.eval()
    return sm


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------


class StepBatchSampler(torch.utils.data.Sampler):
    """Batches of ``(epoch, index)`` keys from step ``start`` to ``stop``, a function of the step
    only (so a resumed run sees the batches the uninterrupted one would).

    Epoch ``e`` is a permutation from ``torch.Generator().manual_seed(seed + e)``, cut into
    ``len // batch_size`` full batches (the remainder is dropped; at least one batch of
    ``min(batch_size, n)``). With ``world_size > 1`` each step's (global) batch is cut into
    ``world_size`` equal consecutive shards and this sampler yields shard ``rank``: the ranks
    together see exactly the single-process batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int,
                 rank: int = 0, world_size: int = 1) -> None:
        if n <= 0:
            raise ValueError("no images to train on")
        self.n, self.batch = n, min(batch_size, n)
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of world size {world_size}")
        if self.batch % world_size:
            raise ValueError(f"a global batch of {self.batch} images cannot be split evenly over {world_size} workers")
        self.per_epoch = max(1, n // self.batch)
        self.seed, self.start, self.stop = seed, start, stop
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, perm = -1, None
        shard = self.batch // self.world_size
        for step in range(self.start, self.stop):
            e, b = divmod(step, self.per_epoch)
            if e != epoch:
                epoch, perm = e, torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + e))
            lo = b * self.batch + self.rank * shard
            yield [(e, int(i)) for i in perm[lo : lo + shard]]


def _section_dict(section: Any) -> dict[str, Any]:
    """A config section as plain builtins in field order, tuples as lists (its part of
    :func:`cmpipe.config.config_to_dict`)."""
    values = {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


def _hyperparameters(model_cfg: ModelConfig, train_cfg: TrainConfig, maps_cfg: MapsConfig, sigma_max: float,
                     source: str, normalisation: Mapping[str, Any]) -> dict[str, Any]:
    from importlib.metadata import version

    from cmpipe import __version__
    from cmpipe.model.dataset import TARGET_CHANNELS

    return {
        "model": _section_dict(model_cfg), "sigma_min": model_cfg.sigma_min, "sigma_max": float(sigma_max),
        "sigma_max_source": source, "resolution": model_cfg.resolution,
        "channels": {"x": list(TARGET_CHANNELS), "cond": list(model_cfg.conditions)},
        "normalisation": dict(normalisation), "train": _section_dict(train_cfg),
        "maps": {"npix": maps_cfg.npix, "pixel_mpc": maps_cfg.pixel_mpc, "depth_mpc": maps_cfg.depth_mpc},
        "score_models_version": version("score-models"), "cmpipe_version": __version__,
    }


@torch.no_grad()
def validation_loss(sm: ScoreModel, loader: torch.utils.data.DataLoader, max_batches: int, seed: int) -> float:
    """Mean ``sm.loss_fn`` over the first ``max_batches`` batches of ``loader``, with noise from
    ``torch.manual_seed(seed)``; torch's global RNG state is restored afterwards. NaN if empty."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    total, count = 0.0, 0
    try:
        for i, (x, cond) in enumerate(loader):
            if i >= max_batches:
                break
            total += float(sm.loss_fn(x.to(sm.device), cond.to(sm.device))) * len(x)
            count += len(x)
    finally:
        torch.set_rng_state(state)
    return total / count if count else math.nan


def _trim_metrics(path: AnyPath, step: int) -> str | None:
    """Keep the header and the rows of steps <= ``step`` (a resume redoes the later ones), written
    whole (:func:`cmpipe.store.location.write_text_atomic`); the text kept, None if there is no file."""
    if not refreshed(path).is_file():
        return None
    text = path.read_bytes().decode("utf-8")
    rows = [r for r in csv.DictReader(io.StringIO(text, newline="")) if int(r["step"]) <= step]
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, fieldnames=METRICS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, out.getvalue())
    return out.getvalue()


@dataclasses.dataclass
class RunCheck:
    """What :func:`validate_run` found: a run that can start.

    Attributes
    ----------
    train_ds, val_ds : StoreDataset
        The train split (augmented as configured) and the val split, at ``model.resolution``.
    fingerprint : str
        The store's fingerprint.
    latest : path or None
        The checkpoint to resume from, a path or URL (None: a fresh start).
    state : TrainState or None
        Its content.
    """

    train_ds: Any
    val_ds: Any
    fingerprint: str
    latest: AnyPath | None
    state: TrainState | None


@dataclasses.dataclass
class RunSetup(RunCheck):
    """What a training process finds before building the model (:func:`prepare_run`): the
    :class:`RunCheck`, and

    Attributes
    ----------
    sigma_max : float
    hyperparameters : dict
        What every checkpoint of the run records.
    """

    sigma_max: float
    hyperparameters: dict[str, Any]


#: ``resume`` of :func:`validate_run`: choose the latest readable checkpoint of the run directory.
LATEST = "latest"


def validate_run(
    model_cfg: ModelConfig, train_cfg: TrainConfig, store_path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str], *, resume: str | os.PathLike[str] | None = LATEST,
) -> RunCheck:
    """Check, in a second or so and before any training, everything a training process needs.

    Every training process (:func:`prepare_run`) and the Ray driver (before starting Ray) run the same
    checks, so a user error is one message and not a worker's traceback:

    * an object-store URL's bucket exists and the credentials may list it (store and run
      directory: :func:`cmpipe.store.location.check_reachable`, one line naming the URL);
    * the store exists, is a complete cmpipe store (every chunk done) and normalised, has the
      channels ``model.conditions`` names, and ``model.resolution`` divides its maps;
    * the run directory is (or can be made) a writable directory and is no other cmpipe artefact;
    * the checkpoint resumed from (:func:`resume_checkpoint`: the latest readable one, skipping
      unreadable ones with a warning) comes from this store and this ``model`` configuration.

    Nothing is written.

    Parameters
    ----------
    model_cfg, train_cfg : ModelConfig, TrainConfig
        The ``model`` and ``train`` sections.
    store_path, run_dir : str or path-like
    resume : "latest", path or None
        :data:`LATEST` (default): choose as above; a path: that checkpoint (what a Ray driver chose
        for its workers); None: a fresh start (the driver found no checkpoint).

    Returns
    -------
    RunCheck

    Raises
    ------
    StoreError, OutputError, CheckpointError
        Naming the store, the run directory or the checkpoint.
    """
    from cmpipe.model.dataset import CONDITION_CHANNELS, StoreDataset
    from cmpipe.store.outputs import artifact_kind, check_output_dir
    from cmpipe.store.zarr_store import validate_store

    tcfg, mcfg = train_cfg, model_cfg
    check_reachable(as_path(store_path), "store")
    check_reachable(as_path(run_dir), "run directory")
    validate_store(store_path, require_complete=True)
    train_ds = StoreDataset(store_path, "train", resolution=mcfg.resolution, augment=tcfg.augment, seed=tcfg.seed,
                            conditions=mcfg.conditions)
    val_ds = StoreDataset(store_path, "val", resolution=mcfg.resolution, conditions=mcfg.conditions)
    fingerprint = train_ds.store_fingerprint
    kind = artifact_kind(run_dir)
    if kind not in (None, "run"):
        from cmpipe.store.outputs import OutputError

        raise OutputError(f"run directory {run_dir} is a cmpipe {kind}, not a training run: use another path")
    check_output_dir(run_dir, what="run directory", create=False)
    if resume == LATEST:
        latest, state = resume_checkpoint(run_dir, store_fingerprint=fingerprint)
    elif resume is None:
        latest, state = None, None
    else:
        latest = as_path(resume)
        state = load_checkpoint(latest, store_fingerprint=fingerprint)
    if state is not None:
        # Checkpoints from before a key existed ran with its default.
        saved = {"kind": "score", "conditions": list(CONDITION_CHANNELS), **state.hyperparameters["model"]}
        wanted = _section_dict(model_cfg)
        if saved != wanted:
            diff = ", ".join(f"model.{k}={saved.get(k)!r} (the config has {wanted.get(k)!r})"
                             for k in sorted(set(saved) | set(wanted)) if saved.get(k) != wanted.get(k))
            raise CheckpointError(f"{latest} was trained with {diff}: use another run directory for another model")
    return RunCheck(train_ds, val_ds, fingerprint, latest, state)


def prepare_run(
    model_cfg: ModelConfig, train_cfg: TrainConfig, maps_cfg: MapsConfig, store_path: str | os.PathLike[str],
    run_dir: str | os.PathLike[str], *, resume: str | os.PathLike[str] | None = LATEST,
) -> RunSetup:
    """:func:`validate_run` (``resume`` as there), then fix sigma_max.

    sigma_max: the checkpoint's; else ``model.sigma_max``; or if 0
    :func:`~cmpipe.model.network.compute_sigma_max` of the (un-augmented) train split (a random,
    mass-stratified subset of at most 1,000 images, seeded by ``train.seed``). For
    ``model.kind: unet`` (no SDE) 0.0 with source ``"n/a"``. A checkpoint whose model section
    predates ``model.kind`` counts as ``kind: score``.

    Parameters
    ----------
    model_cfg, train_cfg, maps_cfg : ModelConfig, TrainConfig, MapsConfig
        The ``model``, ``train`` and ``maps`` sections (``maps``: the store's grid, recorded in
        the hyper-parameters).
    store_path, run_dir : str or path-like
    resume : "latest", path or None
        As :func:`validate_run`.

    Returns
    -------
    RunSetup

    Raises
    ------
    StoreError, OutputError, CheckpointError
        As :func:`validate_run`: e.g. the checkpoint comes from another store or another model
        configuration.
    """
    from cmpipe.model.dataset import StoreDataset
    from cmpipe.model.network import compute_sigma_max

    mcfg = model_cfg
    check = validate_run(model_cfg, train_cfg, store_path, run_dir, resume=resume)
    state = check.state
    if state is not None:
        sigma_max, source = state.hyperparameters["sigma_max"], state.hyperparameters["sigma_max_source"]
    elif mcfg.kind == "unet":
        sigma_max, source = 0.0, "n/a"
    elif mcfg.sigma_max > 0:
        sigma_max, source = mcfg.sigma_max, "config"
    else:
        plain = StoreDataset(store_path, "train", resolution=mcfg.resolution, conditions=mcfg.conditions)
        sigma_max, source = compute_sigma_max(plain, seed=train_cfg.seed), "data"
    hp = _hyperparameters(model_cfg, train_cfg, maps_cfg, sigma_max, source, check.train_ds.normalisation)
    return RunSetup(check.train_ds, check.val_ds, check.fingerprint, check.latest, state, float(sigma_max), hp)


def build_training(
    model_cfg: ModelConfig, train_cfg: TrainConfig, setup: RunSetup, device: str | torch.device, *,
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None, restore_rng: bool = True,
) -> tuple[ScoreModel, torch.optim.Optimizer, ExponentialMovingAverage, int]:
    """The model of ``model.kind`` (:func:`~cmpipe.model.network.build_model`, initialised from
    ``torch.manual_seed(train.seed)``), its Adam and EMA, resumed from ``setup.state`` if any.

    Parameters
    ----------
    model_cfg, train_cfg : ModelConfig, TrainConfig
    setup : RunSetup
    device : str or torch.device
    wrap : callable, optional
        Applied to ``sm.model`` before the optimizer is made (e.g. DDP / Ray's ``prepare_model``).
    restore_rng : bool
        Restore torch's RNG from the checkpoint.

    Returns
    -------
    (sm, optimizer, ema, start_step)
    """
    from cmpipe.model.network import build_model

    torch.manual_seed(train_cfg.seed)
    sm = build_model(model_cfg, setup.sigma_max, device)
    if wrap is not None:
        sm.model = wrap(sm.model)
    optimizer = torch.optim.Adam(sm.model.parameters(), lr=train_cfg.lr)
    ema = make_ema(sm.model, train_cfg.ema_decay)
    start = 0
    if setup.state is not None:
        setup.state.restore(sm, optimizer, ema, rng=restore_rng)
        start = setup.state.step
        logger.info("resumed %s at step %d", setup.latest, start)
    return sm, optimizer, ema, start


def make_loaders(
    train_cfg: TrainConfig, setup: RunSetup, start: int, stop: int, *, rank: int = 0, world_size: int = 1,
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader | None]:
    """The train loader (steps ``start`` to ``stop``, shard ``rank`` of each step's batch) and
    the val loader (None if the val split is empty), ``train.num_workers`` workers each."""
    tcfg = train_cfg

    def loader(ds, **kw):
        return torch.utils.data.DataLoader(
            ds, num_workers=tcfg.num_workers, generator=torch.Generator().manual_seed(tcfg.seed),
            persistent_workers=False, **kw,
        )

    sampler = StepBatchSampler(len(setup.train_ds), tcfg.batch_size, tcfg.seed, start, stop, rank, world_size)
    val_loader = loader(setup.val_ds, batch_size=tcfg.batch_size, shuffle=False) if len(setup.val_ds) else None
    return loader(setup.train_ds, batch_sampler=sampler), val_loader


def write_checkpoint(run_dir: str | os.PathLike[str], state: TrainState, keep: int) -> AnyPath:
    """:func:`save_checkpoint` as ``checkpoints/step_XXXXXXXX.pt`` of ``run_dir``, keeping the last ``keep``."""
    path = save_checkpoint(as_path(run_dir) / CHECKPOINT_DIR / f"step_{state.step:08d}.pt", state)
    for old in checkpoint_paths(run_dir)[:-keep]:
        old.unlink()
        old.with_suffix(".json").unlink(missing_ok=True)
    return path


def ema_validation_loss(sm: ScoreModel, ema: ExponentialMovingAverage, loader: torch.utils.data.DataLoader,
                        train_cfg: TrainConfig) -> float:
    """:func:`validation_loss` with the EMA weights (``train.val_batches`` batches, the run's
    fixed validation seed), on the unwrapped network (no DDP collectives: safe on one rank)."""
    wrapped, was_training = sm.model, sm.model.training
    sm.model = unwrap(wrapped)
    sm.eval()
    try:
        with ema.average_parameters():
            return validation_loss(sm, loader, train_cfg.val_batches, train_cfg.seed + _VAL_SEED_OFFSET)
    finally:
        sm.model = wrapped
        sm.train(was_training)


class MetricsLog:
    """``metrics.csv`` of a run (columns :data:`METRICS_COLUMNS`), after dropping the rows past
    ``start`` (a resume redoes them). A context manager.

    On disk the file is opened for appending and each row is flushed as it is written. An object
    on an object store cannot be appended to: the rows are kept in memory and the whole object is
    rewritten in one PUT (:func:`cmpipe.store.location.write_text_atomic`) by :meth:`flush`, which
    :func:`train_loop` calls before every checkpoint; also at most every :data:`METRICS_FLUSH_S`
    seconds, and on :meth:`close`. Either way the file holds every row up to the latest
    checkpoint, the same bytes on disk and in a bucket.

    ``sinks``: callables given each row after it is written (experiment trackers,
    :mod:`cmpipe.model.tracking`; a progress display), closed by :meth:`close` if they have a
    ``close`` method.
    """

    def __init__(self, run_dir: str | os.PathLike[str], start: int, sinks: Sequence[Callable[..., Any]] = ()) -> None:
        self.sinks = list(sinks)
        self.path = as_path(run_dir) / METRICS_NAME
        self._remote = is_remote(self.path)
        if not self._remote:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = _trim_metrics(self.path, start)
        self._flushed = time.monotonic()
        if self._remote:
            self._file: Any = io.StringIO(kept or "", newline="")
            self._file.seek(0, io.SEEK_END)
        else:
            self._file = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=METRICS_COLUMNS)
        if kept is None:
            self._writer.writeheader()

    @staticmethod
    def row(step: int, result: StepResult, images: int, seconds: float, val_loss: float | str = "") -> dict[str, Any]:
        """One row: ``step`` after the update, ``result``'s fields, ``images / seconds``."""
        return {"step": step, "loss": result.loss, "loss_per_dim": result.loss_per_dim, "lr": result.lr,
                "grad_norm": result.grad_norm, "val_loss": val_loss, "images_per_s": images / max(seconds, 1e-12)}

    def write(self, row: Mapping[str, Any]) -> None:
        """Add one row (:meth:`row`): flushed at once on disk, within :data:`METRICS_FLUSH_S` on an
        object store; then handed to each sink (a sink that raises is dropped with a warning)."""
        self._writer.writerow(row)
        if not self._remote or time.monotonic() - self._flushed >= METRICS_FLUSH_S:
            self.flush()
        for sink in list(self.sinks):
            try:
                sink(row)
            except Exception as exc:  # noqa: BLE001 - tracking is optional, the training goes on
                logger.warning("%s: %s failed (%s: %s); it gets no more rows", self.path, type(sink).__name__,
                               type(exc).__name__, exc)
                self.sinks.remove(sink)

    def flush(self) -> None:
        """Make every row written so far durable: flush the file, or rewrite the whole object."""
        if self._remote:
            write_text_atomic(self.path, self._file.getvalue())
            self._flushed = time.monotonic()
        else:
            self._file.flush()

    def close(self) -> None:
        if self._remote and not self._file.closed:
            self.flush()
        self._file.close()
        for sink in self.sinks:
            if hasattr(sink, "close"):
                sink.close()
        self.sinks = []

    def __enter__(self) -> MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def step_noise_seed(seed: int, step: int, rank: int) -> int:
    """Seed of torch's RNG before step ``step`` (0-based) on rank ``rank``: the loss's noise and
    diffusion times (``numpy.random.SeedSequence([seed, step, rank])``, 63 bits)."""
    import numpy as np

    state = np.random.SeedSequence([int(seed), int(step), int(rank)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


@dataclasses.dataclass(frozen=True)
class WorkerContext:
    """Where one training process runs and how it talks to the others (:func:`train_loop`).

    The default is a single process: rank 0 of 1 on the CPU, nothing to wrap, average or
    report. :mod:`cmpipe.pipeline.train` passes Ray Train's: ``prepare_model`` (DDP), an
    all-reduce over the process group and ``ray.train.report``.

    Attributes
    ----------
    rank, world_size : int
        This process and the number of processes: each step's global batch is cut into
        ``world_size`` equal shards, shard ``rank`` here; rank 0 writes the run directory.
    device : str or torch.device
    wrap_model : callable or None
        Network -> the network to train (e.g. DDP), applied before the optimizer is made.
    mean_over_ranks : callable or None
        A float of this rank -> its mean over the ranks (the logged loss when ``world_size >
        1``); None: the value itself.
    report : callable or None
        ``report(metrics, checkpoint)``, on every rank at every checkpoint step
        (``checkpoint``: the path or URL of the checkpoint rank 0 wrote; None on the other
        ranks), and once when there is nothing to train (rank 0: the checkpoint resumed from).
    on_step : callable or None
        ``on_step(row)`` on rank 0 after each step, with its ``metrics.csv`` row (a progress
        display: ``cmpipe train --serial``).
    """

    rank: int = 0
    world_size: int = 1
    device: str | torch.device = "cpu"
    wrap_model: Callable[[torch.nn.Module], torch.nn.Module] | None = None
    mean_over_ranks: Callable[[float], float] | None = None
    report: Callable[[dict[str, Any], AnyPath | None], None] | None = None
    on_step: Callable[[Mapping[str, Any]], None] | None = None


def _open_run_dir(run_dir: AnyPath, start: int, resolved_config: str | None, tracking: str = "none",
                  hyperparameters: Mapping[str, Any] | None = None,
                  on_step: Callable[[Mapping[str, Any]], None] | None = None) -> MetricsLog:
    """Mark ``run_dir`` as a run, write ``config.resolved.yaml`` (``resolved_config``, if given)
    and open its :class:`MetricsLog` from step ``start``, with the tracker of ``tracking``
    (:func:`cmpipe.model.tracking.open_tracker`) and ``on_step`` as its sinks."""
    from cmpipe.config import RESOLVED_CONFIG_NAME
    from cmpipe.model.tracking import open_tracker
    from cmpipe.store.outputs import mark_directory

    mark_directory(run_dir, "run")
    if resolved_config is not None:
        write_text_atomic(run_dir / RESOLVED_CONFIG_NAME, resolved_config)
    tracker = open_tracker(tracking, run_dir, start, hyperparameters or {})
    return MetricsLog(run_dir, start, sinks=[s for s in (tracker, on_step) if s is not None])


def _metrics_row(step: int, result: StepResult, batch: tuple[torch.Tensor, torch.Tensor], worker: WorkerContext,
                 seconds: float) -> dict[str, Any]:
    """The ``metrics.csv`` row of a step: ``loss`` averaged over the ranks (the global batch's
    loss), ``images_per_s`` of the global batch (this rank's shard times ``world_size``)."""
    loss = result.loss
    if worker.world_size > 1 and worker.mean_over_ranks is not None:
        loss = worker.mean_over_ranks(loss)
    row = MetricsLog.row(step, result, len(batch[0]) * worker.world_size, seconds)
    row["loss"], row["loss_per_dim"] = loss, loss / batch[0][0].numel()
    return row


def _report(worker: WorkerContext, metrics: dict[str, Any], checkpoint: AnyPath | None) -> None:
    if worker.report is not None:
        worker.report(metrics, checkpoint)


def train_loop(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    setup: RunSetup,
    run_dir: str | os.PathLike[str],
    *,
    max_steps: int | None = None,
    worker: WorkerContext | None = None,
    resolved_config: str | None = None,
) -> dict[str, Any]:
    """Train the model of ``setup`` (:func:`prepare_run`) in this process to ``max_steps``.

    The one loop of every training process: a single process (``worker`` None) or one rank of
    a data-parallel run (:mod:`cmpipe.pipeline.train`). The network, Adam and EMA come from
    :func:`build_training` (resumed from ``setup.state``); the batches from :func:`make_loaders`
    (shard ``worker.rank`` of each step's global batch). Before each step torch's RNG is seeded
    with :func:`step_noise_seed` ``(train.seed, step, rank)``, so a resumed run draws what an
    uninterrupted one would (the checkpoint's RNG state is recorded, not needed). Rank 0 writes
    the run directory: its marker, ``config.resolved.yaml``, ``metrics.csv`` (every step; the
    loss averaged over the ranks), the validation loss (EMA weights, every ``train.val_every``
    steps) and a checkpoint every ``train.checkpoint_every`` steps and at ``max_steps`` (the
    last ``train.keep_checkpoints`` kept). ``worker.report`` is called at those steps. Rank 0
    also hands each row to the tracker of ``train.tracking`` (:mod:`cmpipe.model.tracking`) and
    to ``worker.on_step``.

    Parameters
    ----------
    model_cfg, train_cfg : ModelConfig, TrainConfig
        The ``model`` and ``train`` sections (``train.batch_size`` is the global batch).
    setup : RunSetup
        From :func:`prepare_run`: datasets, checkpoint resumed from, hyper-parameters.
    run_dir : str, path-like or URL
        Where ``metrics.csv``, ``config.resolved.yaml`` and ``checkpoints/`` go.
    max_steps : int, optional
        Total steps to reach (default ``train.max_steps``).
    worker : WorkerContext, optional
        Rank, world size, device and hooks (default: a single process on the CPU).
    resolved_config : str, optional
        The text of ``config.resolved.yaml`` (:func:`cmpipe.config.config_to_yaml`); None: not written.

    Returns
    -------
    dict
        ``step``, ``start_step``, ``sigma_max``, ``parameters``, ``last`` (this rank's final
        :class:`StepResult` or None), ``s_per_step`` (mean wall seconds per step, 0 if none),
        ``checkpoint`` (path of the latest).
    """
    from cmpipe.model.network import count_parameters

    worker = WorkerContext() if worker is None else worker
    max_steps = train_cfg.max_steps if max_steps is None else int(max_steps)
    run_dir = as_path(run_dir)
    sm, optimizer, ema, start = build_training(model_cfg, train_cfg, setup, worker.device, wrap=worker.wrap_model,
                                               restore_rng=False)
    train_loader, val_loader = make_loaders(train_cfg, setup, start, max_steps, rank=worker.rank,
                                            world_size=worker.world_size)
    log = _open_run_dir(run_dir, start, resolved_config, train_cfg.tracking, setup.hyperparameters,
                        worker.on_step) if worker.rank == 0 else None
    if log is not None and val_loader is None:
        logger.warning("%s has no val images: val_loss stays empty", run_dir)
    schedule = WarmupSchedule(train_cfg.lr, train_cfg.warmup_steps)
    last, step, t_loop = None, start, time.perf_counter()
    metrics: dict[str, Any] = {"step": step, "start_step": start}
    sm.train()
    try:
        t0 = time.perf_counter()
        for batch in train_loader:
            torch.manual_seed(step_noise_seed(train_cfg.seed, step, worker.rank))
            last = train_step(sm, optimizer, ema, batch, train_cfg.clip_norm, schedule, step=step)
            step += 1
            row = _metrics_row(step, last, batch, worker, time.perf_counter() - t0)
            metrics = {**{k: v for k, v in row.items() if v != ""}, "start_step": start}
            due = step % train_cfg.checkpoint_every == 0 or step == max_steps
            saved = None
            if log is not None:
                if val_loader is not None and step % train_cfg.val_every == 0:
                    row["val_loss"] = metrics["val_loss"] = ema_validation_loss(sm, ema, val_loader, train_cfg)
                log.write(row)
                if due:
                    log.flush()  # metrics.csv covers the checkpoint's step before the checkpoint exists
                    saved = write_checkpoint(run_dir, TrainState.capture(
                        sm, optimizer, ema, step, setup.hyperparameters, setup.fingerprint), train_cfg.keep_checkpoints)
            if due:
                _report(worker, {**metrics, "s_per_step": (time.perf_counter() - t_loop) / (step - start)}, saved)
            t0 = time.perf_counter()
        if step == start:  # nothing to do: report the latest checkpoint (Ray's Result then has one)
            _report(worker, {**metrics, "s_per_step": 0.0}, setup.latest if worker.rank == 0 else None)
    finally:
        if log is not None:
            log.close()
    done = step - start
    return {
        "step": step, "start_step": start, "sigma_max": float(setup.sigma_max), "parameters": count_parameters(sm.model),
        "last": last, "s_per_step": (time.perf_counter() - t_loop) / done if done else 0.0,
        "checkpoint": latest_checkpoint(run_dir),
    }

"""The train stage: a configuration becomes the arguments of :mod:`cmpipe.model.training` (no Ray).

:func:`run` trains in this process (``cmpipe train --serial``); :mod:`cmpipe.pipeline.train`
runs :func:`train_process` on every Ray Train worker after :func:`validate` on its driver;
:func:`plot_loss` draws a run's ``loss.png`` (``cmpipe train`` and the pipeline's train stage).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config
    from cmpipe.model.training import RunCheck, WorkerContext

__all__ = ["LOSS_PLOT", "plot_loss", "run", "train_process", "validate"]

#: The loss curve of a run directory (:func:`plot_loss`).
LOSS_PLOT = "loss.png"
# cmpipe.model.training.LATEST, not imported here so that importing this module loads no torch.
_LATEST = "latest"


def validate(cfg: Config, store_path: str | os.PathLike[str], run_dir: str | os.PathLike[str], *,
             resume: str | os.PathLike[str] | None = _LATEST) -> RunCheck:
    """:func:`cmpipe.model.training.validate_run` of ``cfg``'s ``model`` and ``train`` sections:
    the store, the run directory and the checkpoint resumed from, checked before any training."""
    from cmpipe.model.training import validate_run

    return validate_run(cfg.model, cfg.train, store_path, run_dir, resume=resume)


def train_process(
    cfg: Config, store_path: str | os.PathLike[str], run_dir: str | os.PathLike[str], *,
    max_steps: int | None = None, worker: WorkerContext | None = None,
    resume: str | os.PathLike[str] | None = _LATEST,
) -> dict[str, Any]:
    """One training process: :func:`~cmpipe.model.training.prepare_run` then
    :func:`~cmpipe.model.training.train_loop` with ``cfg``'s ``model``, ``train`` and ``maps``
    sections, writing ``cfg`` as the run's ``config.resolved.yaml``.

    Parameters
    ----------
    cfg : Config
    store_path, run_dir : str or path-like
    max_steps : int, optional
        Total steps to reach (default ``train.max_steps``).
    worker : WorkerContext, optional
        This process's rank, device and hooks (default: a single process on the CPU).
    resume : "latest", path or None
        As :func:`~cmpipe.model.training.validate_run`.

    Returns
    -------
    dict
        :func:`~cmpipe.model.training.train_loop`'s summary.
    """
    from cmpipe.config import config_to_yaml
    from cmpipe.model.training import prepare_run, train_loop

    setup = prepare_run(cfg.model, cfg.train, cfg.maps, store_path, run_dir, resume=resume)
    return train_loop(cfg.model, cfg.train, setup, run_dir, max_steps=max_steps, worker=worker,
                      resolved_config=config_to_yaml(cfg))


def run(cfg: Config, paths: Mapping[str, str | os.PathLike[str]], *, max_steps: int | None = None,
        device: str = "cpu") -> dict[str, Any]:
    """Train in this process, without Ray, resuming from the latest readable checkpoint.

    Parameters
    ----------
    cfg : Config
        ``model``, ``train`` and ``maps`` sections.
    paths : mapping
        ``"store"``: a complete, normalised image store; ``"run"``: the run directory
        (``metrics.csv``, ``config.resolved.yaml``, ``checkpoints/``), as
        :func:`cmpipe.pipeline.run.pipeline_paths` names them; each a path or an object-store URL.
    max_steps : int, optional
        Total steps to reach (default ``train.max_steps``).
    device : str
        Torch device.

    Progress of the steps, with the loss per dimension, on standard error
    (:class:`cmpipe.progress.Progress`).

    Returns
    -------
    dict
        ``step``, ``start_step``, ``sigma_max``, ``parameters``, ``last`` (the final
        :class:`~cmpipe.model.training.StepResult` or None), ``s_per_step``, ``checkpoint``
        (:func:`~cmpipe.model.training.train_loop`).
    """
    from cmpipe.model.training import WorkerContext
    from cmpipe.progress import Progress

    steps = cfg.train.max_steps if max_steps is None else int(max_steps)
    bars: list[Progress] = []

    def on_step(row: Mapping[str, Any]) -> None:
        step = int(row["step"])
        if not bars:  # the first step of this run: a resumed run starts from its checkpoint's step
            bars.append(Progress(steps, "train", "steps", initial=step - 1))
        bars[0].moveto(step, loss=float(row["loss_per_dim"]))

    try:
        return train_process(cfg, paths["store"], paths["run"], max_steps=max_steps,
                             worker=WorkerContext(device=device, on_step=on_step))
    finally:
        for bar in bars:
            bar.close()


def plot_loss(run_dir: str | os.PathLike[str]) -> Any:
    """Write ``loss.png`` (:func:`cmpipe.plots.training.plot_loss_curve`) of a run directory's
    ``metrics.csv`` (a path or an object-store URL; the figure written whole,
    :func:`cmpipe.store.location.save_figure`); None (nothing written) if the run has no
    ``metrics.csv``."""
    from cmpipe.plots.training import plot_loss_curve, read_metrics
    from cmpipe.store.location import save_figure
    from cmpipe.store.tables import refreshed

    run_dir = refreshed(run_dir)
    metrics = refreshed(run_dir / "metrics.csv")
    if not metrics.is_file():
        return None
    path = run_dir / LOSS_PLOT
    save_figure(plot_loss_curve(read_metrics(metrics)), path, dpi=120)
    return path

"""Figures of a training run (:mod:`cmpipe.model.training`): the loss curve from ``metrics.csv``."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_loss_curve", "read_metrics"]


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The rows of a run's ``metrics.csv`` (a path or an object-store URL; strings, as written;
    ``val_loss`` empty on most steps)."""
    from cmpipe.store.location import as_path

    text = as_path(path).read_bytes().decode("utf-8")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def _float(value: Any) -> float:
    return math.nan if value in ("", None) else float(value)


def plot_loss_curve(rows: Sequence[Mapping[str, Any]]) -> Figure:
    """Training loss per dimension (``loss_per_dim``, about 1 at initialisation) and the EMA
    validation loss per dimension (``val_loss / (C H W)``, from each row's ``loss / loss_per_dim``)
    against the optimizer step, log y axis.

    Parameters
    ----------
    rows : sequence of mappings
        Rows of ``metrics.csv`` (:func:`read_metrics`): ``step``, ``loss``, ``loss_per_dim``,
        ``val_loss`` (numbers or strings; empty ``val_loss`` skipped).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    step = [int(r["step"]) for r in rows]
    per_dim = [_float(r["loss_per_dim"]) for r in rows]
    val = [
        (s, _float(r["val_loss"]) * _float(r["loss_per_dim"]) / _float(r["loss"]))
        for s, r in zip(step, rows) if r.get("val_loss") not in ("", None) and _float(r["loss"]) != 0
    ]
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.plot(step, per_dim, lw=1, label="train (loss_per_dim)")
    if val:
        ax.plot(*zip(*val), "o-", ms=4, label="val, EMA weights")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("denoising score-matching loss / (C H W)")
    if any(v > 0 for v in per_dim if not math.isnan(v)):
        ax.set_yscale("log")
    ax.legend()
    ax.set_title(f"{len(step)} steps" if step else "no steps")
    return fig

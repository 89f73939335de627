"""What cmpipe shows while it works: the verbosity and one progress display per long stage.

Verbosity (:func:`set_verbosity`; the CLI's ``-q`` and ``-v``):

* :data:`QUIET` (``-q``): errors and the final summary only; no progress, no stage lines.
* :data:`NORMAL` (the default): cmpipe's own log at ``run.log_level``, the stage lines, one
  progress display per long stage; Ray's driver-side logs off (workers' output stays in the log
  files of Ray's session directory: :func:`cmpipe.pipeline.session.ray_logs_dir`).
* :data:`VERBOSE` (``-v``): debug logging and Ray's own logs as Ray prints them (worker output
  forwarded to the terminal, Ray Data's progress).

:class:`Progress` is one long stage's display: a tqdm bar on a terminal (standard error is a
TTY), otherwise a line at most every :func:`progress_every_s` seconds (``$CMPIPE_PROGRESS_S``,
default 30) when the count has moved, and a last one at the end if it printed any (so no line is
printed twice); nothing under :data:`QUIET`. Importing
this module loads neither tqdm nor Ray.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["NORMAL", "QUIET", "VERBOSE", "Progress", "progress_every_s", "set_verbosity", "verbosity"]

QUIET, NORMAL, VERBOSE = -1, 0, 1
#: Seconds between two progress lines when standard error is not a terminal (``$CMPIPE_PROGRESS_S``).
PROGRESS_EVERY_S = 30.0

_verbosity = NORMAL


def set_verbosity(level: int) -> None:
    """Set the verbosity of this process: :data:`QUIET`, :data:`NORMAL` or :data:`VERBOSE`."""
    global _verbosity
    if level not in (QUIET, NORMAL, VERBOSE):
        raise ValueError(f"verbosity must be {QUIET}, {NORMAL} or {VERBOSE}; got {level!r}")
    _verbosity = level


def verbosity() -> int:
    """The verbosity of this process (default :data:`NORMAL`)."""
    return _verbosity


def progress_every_s() -> float:
    """Seconds between progress lines off a terminal: ``$CMPIPE_PROGRESS_S`` if a positive number,
    else :data:`PROGRESS_EVERY_S`."""
    try:
        value = float(os.environ.get("CMPIPE_PROGRESS_S", ""))
    except ValueError:
        return PROGRESS_EVERY_S
    return value if value > 0 else PROGRESS_EVERY_S


def _has_width(stream: TextIO) -> bool:
    """True if ``stream`` is a terminal that reports a width."""
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(round(max(seconds, 0.0)))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Progress:
    """The progress of one long stage: ``total`` units of work (chunks, steps, images, halos).

    A context manager. :meth:`update` advances by a count, :meth:`moveto` to an absolute
    position; both take extra fields shown beside the count (``loss=0.93``, ``samples=200``).

    Parameters
    ----------
    total : int
        Units of work of the whole stage.
    desc : str
        Its name (``"generate"``, ``"train"``).
    unit : str
        The unit, plural (``"chunks"``, ``"steps"``).
    initial : int
        Units done before (a resumed run).
    stream : text stream, optional
        Where it writes (default ``sys.stderr``).
    tty : bool, optional
        A bar (True) or lines (False); default ``stream.isatty()``.
    every_s : float, optional
        Seconds between lines off a terminal (default :func:`progress_every_s`).
    clock : callable
        Seconds, monotonic (tests pass a fake one).
    enabled : bool
        False: show nothing (as under :data:`QUIET`).
    """

    def __init__(self, total: int, desc: str, unit: str, *, initial: int = 0, stream: TextIO | None = None,
                 tty: bool | None = None, every_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, enabled: bool = True) -> None:
        self.total, self.desc, self.unit = int(total), desc, unit
        self.n = self.initial = int(initial)
        self.fields: dict[str, Any] = {}
        self._stream = sys.stderr if stream is None else stream
        self._clock = clock
        self._t0 = self._last = clock()
        self._every = progress_every_s() if every_s is None else float(every_s)
        self._printed_n: int | None = None  # the count at the last line printed
        self._bar: Any = None
        if tty is None:
            tty = bool(getattr(self._stream, "isatty", lambda: False)())
        self.mode = "off" if verbosity() <= QUIET or not enabled else "bar" if tty else "lines"
        if self.mode == "bar":
            from tqdm import tqdm

            sized = _has_width(self._stream)  # a pseudo-terminal may report 0 columns: tqdm then draws nothing
            self._bar = tqdm(total=self.total, initial=self.initial, desc=desc, unit=unit.rstrip("s") or unit,
                             file=self._stream, dynamic_ncols=sized, ncols=None if sized else 100,
                             nrows=None if sized else 20)

    def update(self, n: int = 1, **fields: Any) -> None:
        """Advance by ``n`` units; ``fields`` are shown beside the count."""
        self.moveto(self.n + int(n), **fields)

    def moveto(self, n: int, **fields: Any) -> None:
        """Set the units done to ``n`` (not below the current count); ``fields`` as :meth:`update`."""
        step = max(0, int(n) - self.n)
        self.n += step
        self.fields.update(fields)
        if self.mode == "bar":
            if fields:
                self._bar.set_postfix({k: _value(v) for k, v in self.fields.items()}, refresh=False)
            self._bar.update(step)
        elif self.mode == "lines" and self.n != self._printed_n and self._clock() - self._last >= self._every:
            self._line()

    def line(self) -> str:
        """The one-line summary: ``train: 90/200 steps (45 %), 2.9 steps/s, loss 530.7, 0:36 left``."""
        elapsed = self._clock() - self._t0
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}"
                 + (f" ({100.0 * self.n / self.total:.0f} %)" if self.total else "")]
        if done > 0:
            parts.append(f"{rate:.3g} {self.unit}/s" if rate >= 1 else f"{1.0 / rate:.3g} s per {self.unit.rstrip('s')}")
        parts += [f"{k} {_value(v)}" for k, v in self.fields.items()]
        if 0 < self.n < self.total and rate > 0:
            parts.append(f"{_duration((self.total - self.n) / rate)} left")
        elif self.n >= self.total:
            parts.append(f"done in {_duration(elapsed)}")
        return ", ".join(parts)

    def _line(self) -> None:
        print(self.line(), file=self._stream, flush=True)
        self._last = self._clock()
        self._printed_n = self.n

    def close(self) -> None:
        """End the display: the bar stays on screen; off a terminal a last line if lines were
        printed and the count moved since the last one."""
        if self.mode == "bar" and self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.mode == "lines" and self._printed_n is not None and self._printed_n != self.n:
            self._line()
        self.mode = "off"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

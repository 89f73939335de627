"""Open the halo source a configuration names (``source.kind``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmpipe.physics.halo import HaloSource

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config

__all__ = ["open_source"]


def open_source(cfg: Config) -> HaloSource:
    """The :class:`~cmpipe.physics.halo.HaloSource` of ``cfg.source``.

    ``analytic``: :class:`~cmpipe.physics.analytic.AnalyticHaloSource`; ``hdf5``:
    :class:`~cmpipe.physics.hdf5io.HDF5HaloSource` over ``source.path`` (a file or a directory);
    ``mock``: :class:`~cmpipe.physics.mock.MockHaloSource` over the halo catalog (``catalog``,
    ``mock``).
    """
    kind = cfg.source.kind
    if kind == "analytic":
        from cmpipe.physics.analytic import AnalyticHaloSource

        return AnalyticHaloSource.from_config(cfg)
    if kind == "hdf5":
        from cmpipe.physics.hdf5io import HDF5HaloSource

        if not cfg.source.path:
            raise ValueError("source.kind is 'hdf5' but source.path is empty: give a halo file or directory")
        return HDF5HaloSource(cfg.source.path)
    if kind == "mock":
        from cmpipe.physics.mock import MockHaloSource

        return MockHaloSource.from_config(cfg)
    raise ValueError(f"unknown source.kind {kind!r}")

"""The halo source of a configuration: where a :class:`~cmpipe.config.Config` becomes the
sections that :mod:`cmpipe.physics` sources take."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import Config
    from cmpipe.physics.analytic import AnalyticHaloSource
    from cmpipe.physics.halo import HaloSource
    from cmpipe.physics.mock import MockHaloSource

__all__ = ["analytic_source", "mock_source", "open_source"]


def mock_source(cfg: Config) -> MockHaloSource:
    """The :class:`~cmpipe.physics.mock.MockHaloSource` of ``cfg`` (its ``catalog``,
    ``cosmology``, ``plasma``, ``maps``, ``mock`` and ``sph`` sections), whatever ``source.kind``."""
    from cmpipe.physics.mock import MockHaloSource

    return MockHaloSource(catalog=cfg.catalog, cosmology=cfg.cosmology, plasma=cfg.plasma, maps=cfg.maps,
                          mock=cfg.mock, sph=cfg.sph)


def analytic_source(cfg: Config) -> AnalyticHaloSource:
    """The :class:`~cmpipe.physics.analytic.AnalyticHaloSource` of ``cfg.source``,
    ``cfg.cosmology`` and ``cfg.plasma``, whatever ``source.kind``."""
    from cmpipe.physics.analytic import AnalyticHaloSource

    return AnalyticHaloSource.from_sections(cfg.source, cfg.cosmology, cfg.plasma)


def open_source(cfg: Config) -> HaloSource:
    """The :class:`~cmpipe.physics.halo.HaloSource` of ``cfg.source``.

    ``analytic``: :class:`~cmpipe.physics.analytic.AnalyticHaloSource`; ``hdf5``:
    :class:`~cmpipe.physics.hdf5io.HDF5HaloSource` over ``source.path`` (a file or a directory);
    ``mock``: :class:`~cmpipe.physics.mock.MockHaloSource` over the halo catalog (``catalog``,
    ``mock``).
    """
    kind = cfg.source.kind
    if kind == "analytic":
        return analytic_source(cfg)
    if kind == "hdf5":
        from cmpipe.physics.hdf5io import HDF5HaloSource

        if not cfg.source.path:
            raise ValueError("source.kind is 'hdf5' but source.path is empty: give a halo file or directory")
        return HDF5HaloSource(cfg.source.path)
    if kind == "mock":
        return mock_source(cfg)
    raise ValueError(f"unknown source.kind {kind!r}")

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
    """The :class:`~cmpipe.physics.halo.HaloSource` of ``cfg.source``
    (:func:`cmpipe.physics.sources.open_halo_source` with ``cfg``'s sections)."""
    from cmpipe.physics.sources import open_halo_source

    return open_halo_source(cfg.source, catalog=cfg.catalog, cosmology=cfg.cosmology, plasma=cfg.plasma,
                            maps=cfg.maps, mock=cfg.mock, sph=cfg.sph)

"""The halo source of ``source.kind``, from config sections (:func:`cmpipe.stages.source.open_source`
makes one from a whole config)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cmpipe.physics.halo import HaloSource

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.config import CatalogConfig, CosmologyConfig, MapsConfig, MockConfig, PlasmaConfig, SourceConfig, SphConfig

__all__ = ["open_halo_source"]


def open_halo_source(
    source: SourceConfig, *, catalog: CatalogConfig, cosmology: CosmologyConfig, plasma: PlasmaConfig,
    maps: MapsConfig, mock: MockConfig, sph: SphConfig,
) -> HaloSource:
    """The :class:`~cmpipe.physics.halo.HaloSource` of the ``source`` section.

    ``analytic``: :class:`~cmpipe.physics.analytic.AnalyticHaloSource` (``source``, ``cosmology``,
    ``plasma``); ``hdf5``: :class:`~cmpipe.physics.hdf5io.HDF5HaloSource` over ``source.path`` (a
    file or a directory); ``mock``: :class:`~cmpipe.physics.mock.MockHaloSource` over the halo
    catalog (``catalog``, ``cosmology``, ``plasma``, ``maps``, ``mock``, ``sph``).
    """
    kind = source.kind
    if kind == "analytic":
        from cmpipe.physics.analytic import AnalyticHaloSource

        return AnalyticHaloSource.from_sections(source, cosmology, plasma)
    if kind == "hdf5":
        from cmpipe.physics.hdf5io import HDF5HaloSource

        if not source.path:
            raise ValueError("source.kind is 'hdf5' but source.path is empty: give a halo file or directory")
        return HDF5HaloSource(source.path)
    if kind == "mock":
        from cmpipe.physics.mock import MockHaloSource

        return MockHaloSource(catalog=catalog, cosmology=cosmology, plasma=plasma, maps=maps, mock=mock, sph=sph)
    raise ValueError(f"unknown source.kind {kind!r}")

"""The catalog stage: the halo catalog of a configuration, its Parquet file and its
mass-function figure (Ray-free; ``cmpipe catalog`` and the pipeline's first stage)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cmpipe.store.location import AnyPath, as_path, save_figure

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from cmpipe.config import Config

__all__ = ["CatalogResult", "catalog_config", "catalog_table", "run"]


@dataclass(frozen=True)
class CatalogResult:
    """What :func:`run` wrote."""

    table: pa.Table
    catalog: AnyPath
    figure: AnyPath
    summary: str


def catalog_table(cfg: Config) -> pa.Table:
    """The halo catalog of ``cfg.catalog`` and ``cfg.cosmology``
    (:func:`cmpipe.physics.catalog.make_catalog`), with the fingerprint and resolved YAML of all
    of ``cfg`` in its schema metadata."""
    from cmpipe.config import config_fingerprint, config_to_yaml
    from cmpipe.physics.catalog import catalog_metadata, make_catalog

    metadata = catalog_metadata(config_fingerprint(cfg), config_to_yaml(cfg))
    return make_catalog(cfg.catalog, cfg.cosmology, metadata)


def catalog_config(table: pa.Table) -> Config:
    """The resolved configuration that made a catalog (from its ``cmpipe.config`` metadata)."""
    import yaml

    from cmpipe.config import config_from_dict
    from cmpipe.physics.catalog import catalog_config_yaml

    return config_from_dict(yaml.safe_load(catalog_config_yaml(table)), source="catalog metadata")


def run(cfg: Config, paths: Mapping[str, AnyPath], dpi: int = 150) -> CatalogResult:
    """Write the catalog of ``cfg`` to ``paths["catalog"]`` (Parquet) and its mass function to
    ``paths["out"] / "mass_function.png"`` at ``dpi``: local paths or object-store URLs, each
    file written whole.

    Returns
    -------
    CatalogResult
        The table, both paths and a one-line summary (:func:`cmpipe.physics.catalog.catalog_summary`).
    """
    from cmpipe.physics.catalog import catalog_summary, write_catalog
    from cmpipe.plots.catalog import plot_mass_function

    table = catalog_table(cfg)
    path = write_catalog(table, paths["catalog"])
    figure = as_path(paths["out"]) / "mass_function.png"
    save_figure(plot_mass_function(table, cfg.catalog, cfg.cosmology), figure, dpi=dpi)
    return CatalogResult(table=table, catalog=path, figure=figure, summary=catalog_summary(table, cfg.catalog, cfg.cosmology))

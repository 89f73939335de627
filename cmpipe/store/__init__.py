"""The image store: a Zarr 3 group of maps plus per-image metadata (schema in :mod:`.schema`).

Pure I/O and Ray-free: plain values in, no physics, no map-making, no
:class:`cmpipe.config.Config`. The unit of work that fills a chunk is
:func:`cmpipe.mapmaking.generate.write_chunk`; :mod:`cmpipe.stages.generate` turns a config
into this package's arguments. Importing this package is cheap: zarr loads on first use.
"""

from __future__ import annotations

from typing import Any

from cmpipe.store.schema import STORE_SCHEMA_VERSION

#: Names of :mod:`.zarr_store` exported here, imported on first access (PEP 562): importing
#: :mod:`cmpipe.store.schema` (plain constants) stays free of numpy and zarr.
_LAZY = (
    "StoreError",
    "chunk_slice",
    "chunks_to_write",
    "clear_normalisation",
    "compute_normalisation",
    "create_store",
    "failed_chunks",
    "missing_chunks",
    "open_store",
    "record_failures",
    "require_fingerprint",
    "validate_store",
)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cmpipe.store' has no attribute {name!r}")
    from cmpipe.store import zarr_store

    return getattr(zarr_store, name)


__all__ = [
    "STORE_SCHEMA_VERSION",
    "StoreError",
    "chunk_slice",
    "chunks_to_write",
    "clear_normalisation",
    "compute_normalisation",
    "create_store",
    "failed_chunks",
    "missing_chunks",
    "open_store",
    "record_failures",
    "require_fingerprint",
    "validate_store",
]

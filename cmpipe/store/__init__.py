"""The image store: a Zarr 3 group of maps plus per-image metadata (schema in :mod:`.schema`).

Pure I/O and Ray-free: plain values in, no physics, no map-making, no
:class:`cmpipe.config.Config`. The unit of work that fills a chunk is
:func:`cmpipe.mapmaking.generate.write_chunk`; :mod:`cmpipe.stages.generate` turns a config
into this package's arguments. Importing this package is cheap: zarr loads on first use.
"""

from __future__ import annotations

from cmpipe.store.schema import STORE_SCHEMA_VERSION
from cmpipe.store.zarr_store import (
    StoreError,
    chunk_slice,
    chunks_to_write,
    clear_normalisation,
    compute_normalisation,
    create_store,
    failed_chunks,
    missing_chunks,
    open_store,
    record_failures,
    require_fingerprint,
    validate_store,
)

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

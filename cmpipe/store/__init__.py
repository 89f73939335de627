"""The image store: a Zarr 3 group of maps plus per-image metadata (schema in :mod:`.schema`).

Ray-free. :func:`write_chunk` is the unit of work that the serial generator
(:func:`generate_serial`) and the Ray tasks of ``cmpipe.pipeline`` call. Importing this
package is cheap: zarr loads on first use.
"""

from __future__ import annotations

from cmpipe.store.schema import STORE_SCHEMA_VERSION
from cmpipe.store.zarr_store import (
    StoreError,
    chunks_to_write,
    clear_normalisation,
    compute_normalisation,
    create_store,
    failed_chunks,
    missing_chunks,
    open_store,
    record_failures,
    source_catalog,
    store_config,
    store_fingerprint,
    validate_store,
    write_chunk,
)

__all__ = [
    "STORE_SCHEMA_VERSION",
    "StoreError",
    "chunks_to_write",
    "clear_normalisation",
    "compute_normalisation",
    "create_store",
    "failed_chunks",
    "missing_chunks",
    "open_store",
    "record_failures",
    "source_catalog",
    "store_config",
    "store_fingerprint",
    "validate_store",
    "write_chunk",
]

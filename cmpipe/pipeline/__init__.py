"""The Ray layer: the only Ray-aware code of cmpipe.

``generate``: one Ray task per missing chunk of the image store (:func:`generate_with_ray`).
``train``: data-parallel training with Ray Train (:func:`train_with_ray`).
``infer``: posterior sampling with Ray Data actors; ``reconstruct``: observed clusters from FITS;
``run``: every stage on one session (``cmpipe demo``, ``cmpipe pipeline``); ``session``: connecting to Ray.
Importing this package is cheap: Ray loads when a function runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["chunk_memory_bytes", "generate_with_ray", "train_with_ray"]

if TYPE_CHECKING:  # pragma: no cover
    from cmpipe.pipeline.generate import chunk_memory_bytes, generate_with_ray
    from cmpipe.pipeline.train import train_with_ray


def __getattr__(name: str) -> Any:
    if name == "train_with_ray":
        from cmpipe.pipeline import train

        return train.train_with_ray
    if name in __all__:
        from cmpipe.pipeline import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

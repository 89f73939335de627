"""The score model: datasets, the network, the training step, checkpoints (the ONLY package
importing ``score_models``, pinned to 0.5.11).

Ray-free; ``cmpipe.pipeline`` runs it under Ray Train. Importing this package is cheap: torch
and score_models load when a submodule is imported (:mod:`.dataset`, :mod:`.network`,
:mod:`.training`).
"""

from __future__ import annotations

"""Exact comparison of nested checkpoint contents, shared by the training tests."""

from __future__ import annotations

import torch


def tensors_equal(a, b) -> bool:
    """``a`` and ``b`` equal exactly: tensors by ``torch.equal``, dicts, lists and tuples element
    by element (same keys, same lengths), anything else by ``==``."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b))
    return a == b

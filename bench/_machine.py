"""What a benchmark ran on, for its printed figures (shared by ``train.py`` and ``sample.py``)."""

from __future__ import annotations

import platform
from pathlib import Path


def device_name(device: str) -> str:
    """The GPU's name for a CUDA ``device``, else the CPU model (``/proc/cpuinfo`` where there is one)."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()

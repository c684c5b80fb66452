"""Where the model runs: CUDA when torch sees a GPU, the CPU otherwise."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def pick_device(cuda_available: bool | None = None) -> torch.device:
    """CUDA when available (mixed precision is then used by the trainer); the
    check can be forced for tests."""
    available = torch.cuda.is_available() if cuda_available is None else cuda_available
    device = torch.device("cuda" if available else "cpu")
    log.info("model device: %s", device)
    return device

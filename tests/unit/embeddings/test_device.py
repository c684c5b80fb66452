"""The training device: CUDA only where torch sees a GPU, the CPU otherwise."""

from __future__ import annotations

import torch

from streamrec.embeddings.device import pick_device


def test_device_is_cuda_only_when_torch_sees_a_gpu():
    assert pick_device(cuda_available=True).type == "cuda"
    assert pick_device(cuda_available=False).type == "cpu"
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")

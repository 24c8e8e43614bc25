"""Optional compiled kernel for the recurrent loops (filled in by the native-kernel work)."""

from __future__ import annotations

import torch


def supports(x: torch.Tensor) -> bool:
    """Whether the compiled kernel can run this tensor; False until it is built."""
    return False

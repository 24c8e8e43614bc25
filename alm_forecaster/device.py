"""Which device a forecaster runs on: CUDA if present, else MPS, else CPU, unless told."""

from __future__ import annotations

import os

import torch

#: Overrides the automatic choice: "auto", "cpu", "cuda", "cuda:N" or "mps".
DEVICE_ENV = "ALM_FORECASTER_DEVICE"


def select_device(preference: str | None = None, gpu_id: int | None = None) -> torch.device:
    """Resolve a device preference; ``gpu_id`` is the GPU a server assigned to this worker."""
    choice = (preference or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if choice != "auto":
        device = torch.device(choice)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"Device {choice!r} was requested but CUDA is not available.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"Device {choice!r} was requested but MPS is not available.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", gpu_id if gpu_id is not None else 0)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")

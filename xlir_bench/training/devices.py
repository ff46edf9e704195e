"""Where training runs and at which precision: the torch device of this process and its autocast dtype."""

from __future__ import annotations

import os

from ..errors import XlirError


def training_device(torch, requested: str = "auto"):
    """The torch device this process trains on: under torchrun each rank takes the GPU of its LOCAL_RANK."""
    from ..provenance import resolve_device

    resolved = resolve_device(requested)
    if resolved == "cuda":
        resolved = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % max(torch.cuda.device_count(), 1)}"
    device = torch.device(resolved)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def autocast_dtype(torch, device, precision: str = "auto"):
    """bf16 autocast (fp32 master weights, fp32 loss) on GPUs with bf16 support; fp32 on CPU, where torch's bf16
    autocast did not speed e5-small up on the development machine."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise XlirError("--precision bf16: this GPU has no bf16 support; use --precision fp32")
        return torch.bfloat16
    if precision != "auto":
        raise XlirError(f"unknown precision {precision!r}; use auto, fp32 or bf16")
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None


def _describe(device) -> str:
    from ..provenance import device_description

    return device_description(str(device))

"""The ``precision: auto`` rule both training stages give the Lightning Trainer."""

from __future__ import annotations

from typing import Literal, cast

import torch

Precision = Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]


def resolve_precision(precision: str, accelerator: str) -> Precision:
    """``auto``: bf16-mixed where the hardware runs bf16 fast, else 32-true."""
    if precision != "auto":
        return cast(Precision, precision)  # the params schema admits only these
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "16-mixed"
    if accelerator == "tpu":
        return "bf16-true"
    return "bf16-mixed" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32-true"

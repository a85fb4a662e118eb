"""The ``auto`` rules that depend on the device a run trains on: ``precision`` (both training
stages) and ``pretrain.compile``."""

from __future__ import annotations

from typing import Literal, cast

import torch

Precision = Literal["32-true", "bf16-mixed", "16-mixed", "bf16-true"]


def device_type(accelerator: str) -> str:
    """The torch device type a Lightning ``accelerator`` setting trains on."""
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return "cuda"
    return accelerator if accelerator in ("tpu", "mps") else "cpu"


def resolve_precision(precision: str, accelerator: str) -> Precision:
    """``auto``: bf16-mixed where the hardware runs bf16 fast, else 32-true."""
    if precision != "auto":
        return cast(Precision, precision)  # the params schema admits only these
    device = device_type(accelerator)
    if device == "cuda":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed"
        return "16-mixed"
    if device == "tpu":
        return "bf16-true"
    return "bf16-mixed" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "32-true"


def resolve_compile(setting: bool | str, compiles_on: tuple[str, ...], accelerator: str) -> bool:
    """``pretrain.compile``: ``auto`` compiles where the family was measured to gain from it
    (its ``compiles_on`` device types); true and false are the user's."""
    if setting != "auto":
        return bool(setting)
    return device_type(accelerator) in compiles_on

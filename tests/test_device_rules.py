"""The ``auto`` rules that depend on the training device (``training/precision.py``).

Fast unit tier: no data, no training. The accelerator is named, so the CUDA answers hold on a
machine without a GPU (the rule reads the setting; Lightning checks the device at fit time).
"""

from __future__ import annotations

import pytest

from bertpipe.models.registry import FAMILIES
from bertpipe.training.precision import device_type, resolve_compile, resolve_precision


@pytest.mark.parametrize(
    "accelerator,device", [("cpu", "cpu"), ("gpu", "cuda"), ("cuda", "cuda"), ("tpu", "tpu")]
)
def test_a_named_accelerator_is_its_device(accelerator, device):
    assert device_type(accelerator) == device


def test_compile_auto_compiles_only_the_measured_families_on_cuda():
    on_cuda = {n for n, f in FAMILIES.items() if resolve_compile("auto", f.compiles_on, "gpu")}
    assert on_cuda == {"bert", "modern"}
    assert not any(resolve_compile("auto", f.compiles_on, "cpu") for f in FAMILIES.values())


@pytest.mark.parametrize("setting", [True, False])
def test_compile_true_and_false_are_the_users_everywhere(setting):
    for accelerator in ("cpu", "gpu"):
        for family in FAMILIES.values():
            assert resolve_compile(setting, family.compiles_on, accelerator) is setting


def test_named_precisions_pass_through_and_auto_on_a_gpu_is_mixed():
    assert resolve_precision("32-true", "gpu") == "32-true"
    assert resolve_precision("auto", "gpu") in ("bf16-mixed", "16-mixed")
    assert resolve_precision("auto", "cpu") in ("bf16-mixed", "32-true")

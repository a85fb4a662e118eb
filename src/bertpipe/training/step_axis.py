"""The x-axis of every logged metric: optimizer steps, the same numbers as the DVC curves.

Lightning logs a training batch's metrics at the number of optimizer steps taken
*before* it (0-based) and an in-training validation before that count advances, so
MLflow showed the validation of the weights after step 12 at step 11, and the final
``trainer.validate`` of the same weights again at 12. Logging a ``step`` value (which
Lightning takes as the step of the metrics it is logged with) puts a training batch at
the step it counts towards (1-based, as ``metrics/pretrain_curves``) and a validation
at the step whose weights it scored; the learning rate is logged the same way
(``train/lr``, the rate of that step's update) instead of by ``LearningRateMonitor``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L

STEP = "step"


def log_training_step(module: L.LightningModule) -> None:
    """From ``training_step``: this batch's metrics belong to the step it is part of."""
    module.log(STEP, float(module.global_step + 1), batch_size=1)
    optimizer = module.optimizers()
    if not isinstance(optimizer, list):
        module.log("train/lr", float(optimizer.param_groups[0]["lr"]), batch_size=1)


def log_validation_step(module: L.LightningModule) -> None:
    """From ``validation_step``: the metrics describe the weights after ``global_step`` steps."""
    module.log(STEP, float(module.global_step), batch_size=1)


def scores(results: Mapping[str, Any]) -> dict[str, Any]:
    """``trainer.validate``'s results without the x-axis value logged beside them."""
    return {k: v for k, v in results.items() if k != STEP}

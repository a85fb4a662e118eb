"""What a training run prints: the library notices that say nothing to a bertpipe user, filtered.

- Lightning's tip to install ``litlogger`` (we log to MLflow);
- Lightning's warning that a mid-epoch resume is unreliable because the dataloader is not
  resumable: ours is (``training/pretraining_data.py`` saves the sampler's position in
  every checkpoint and skips the batches already trained on; resume is tested to give
  identical weights);
- Lightning's own use of a torch ``_pytree`` API that torch deprecated;
- Lightning's warning that a checkpoint directory "exists and is not empty": the pretrain
  stage resumes from that folder on purpose (``training/checkpoints.py`` decides what
  in it may be resumed and deletes the rest).
Everything else is left as it is.
"""

from __future__ import annotations

import logging
import warnings


class _DropMessages(logging.Filter):
    def __init__(self, *needles: str):
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(n in message for n in self.needles)


_installed = False


def quiet_known_noise() -> None:
    """Install the filters once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    drop = _DropMessages("litlogger")
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(drop)
    warnings.filterwarnings(
        "ignore", message=r"You're resuming from a checkpoint that ended before"
    )
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

"""Official GLUE metrics per task, from torchmetrics.

Owns which metric each GLUE task reports and which one selects the best
checkpoint: CoLA Matthews correlation; SST-2, QNLI, RTE, WNLI, MNLI accuracy;
MRPC and QQP F1 and accuracy; STS-B Pearson and Spearman correlation.
"""

from __future__ import annotations

import torchmetrics
from torchmetrics.classification import BinaryF1Score, MatthewsCorrCoef, MulticlassAccuracy
from torchmetrics.regression import PearsonCorrCoef, SpearmanCorrCoef

# task -> (metric names, the one that picks the best checkpoint)
GLUE_METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    "cola": (("mcc",), "mcc"),
    "sst2": (("acc",), "acc"),
    "mrpc": (("f1", "acc"), "f1"),
    "stsb": (("pearson", "spearman"), "pearson"),
    "qqp": (("acc", "f1"), "acc"),
    "mnli": (("acc",), "acc"),
    "qnli": (("acc",), "acc"),
    "rte": (("acc",), "acc"),
    "wnli": (("acc",), "acc"),
}


def make_metrics(task: str, num_labels: int) -> torchmetrics.MetricCollection:
    """A MetricCollection taking (predictions, targets): class ids, or scores for STS-B."""
    names, _ = GLUE_METRICS[task]
    factories = {
        "acc": lambda: MulticlassAccuracy(num_classes=num_labels, average="micro"),
        "f1": lambda: BinaryF1Score(),
        "mcc": lambda: MatthewsCorrCoef(task="binary"),
        "pearson": lambda: PearsonCorrCoef(),
        "spearman": lambda: SpearmanCorrCoef(),
    }
    return torchmetrics.MetricCollection({n: factories[n]() for n in names})


def selection_metric(task: str) -> str:
    return GLUE_METRICS[task][1]

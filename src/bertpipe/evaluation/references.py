"""Published scores of Google's BERT models, the yardstick the evaluation report compares against.

Owns the numbers and where each comes from. All GLUE numbers are GLUE *test*
server scores (ours are dev-set scores: comparable in scale, not identical sets);
SQuAD numbers are dev-set scores from the BERT paper. Values in percent.
"""

from __future__ import annotations

DEVLIN = (
    "Devlin et al. (2019), BERT: Pre-training of Deep Bidirectional Transformers for Language "
    "Understanding, NAACL; Table 1 (GLUE test), Tables 2-3 (SQuAD dev)"
)
TURC = (
    "Turc et al. (2019), Well-Read Students Learn Better: On the Importance of Pre-training Compact "
    "Models, arXiv:1908.08962; GLUE test scores as published in google-research/bert README.md "
    "(BERT miniatures table)"
)

# size -> task -> (metric, score). MRPC and QQP: F1; STS-B: Pearson for the miniatures
# (the table gives Pearson/Spearman), Spearman for base/large (the paper's Table 1).
REFERENCES: dict[str, dict] = {
    "tiny": {
        "name": "BERT-Tiny (L2/H128)",
        "source": TURC,
        "scores": {
            "cola": ("mcc", 0.0),
            "sst2": ("acc", 83.2),
            "mrpc": ("f1", 81.1),
            "stsb": ("pearson", 74.3),
            "qqp": ("f1", 62.2),
            "mnli": ("acc", 70.2),
            "qnli": ("acc", 81.5),
            "rte": ("acc", 57.2),
            "wnli": ("acc", 62.3),
        },
    },
    "mini": {
        "name": "BERT-Mini (L4/H256)",
        "source": TURC,
        "scores": {
            "cola": ("mcc", 0.0),
            "sst2": ("acc", 85.9),
            "mrpc": ("f1", 81.1),
            "stsb": ("pearson", 75.4),
            "qqp": ("f1", 66.4),
            "mnli": ("acc", 74.8),
            "qnli": ("acc", 84.1),
            "rte": ("acc", 57.9),
            "wnli": ("acc", 62.3),
        },
    },
    "small": {
        "name": "BERT-Small (L4/H512)",
        "source": TURC,
        "scores": {
            "cola": ("mcc", 27.8),
            "sst2": ("acc", 89.7),
            "mrpc": ("f1", 83.4),
            "stsb": ("pearson", 78.8),
            "qqp": ("f1", 68.1),
            "mnli": ("acc", 77.6),
            "qnli": ("acc", 86.4),
            "rte": ("acc", 61.8),
            "wnli": ("acc", 62.3),
        },
    },
    "medium": {
        "name": "BERT-Medium (L8/H512)",
        "source": TURC,
        "scores": {
            "cola": ("mcc", 38.0),
            "sst2": ("acc", 89.6),
            "mrpc": ("f1", 86.6),
            "stsb": ("pearson", 80.4),
            "qqp": ("f1", 69.6),
            "mnli": ("acc", 80.0),
            "qnli": ("acc", 87.7),
            "rte": ("acc", 62.2),
            "wnli": ("acc", 62.3),
        },
    },
    "base": {
        "name": "BERT-Base (L12/H768)",
        "source": DEVLIN,
        "scores": {
            "cola": ("mcc", 52.1),
            "sst2": ("acc", 93.5),
            "mrpc": ("f1", 88.9),
            "stsb": ("spearman", 85.8),
            "qqp": ("f1", 71.2),
            "mnli": ("acc", 84.6),
            "qnli": ("acc", 90.5),
            "rte": ("acc", 66.4),
            "squad": ("f1", 88.5),
        },
    },
    "large": {
        "name": "BERT-Large (L24/H1024)",
        "source": DEVLIN,
        "scores": {
            "cola": ("mcc", 60.5),
            "sst2": ("acc", 94.9),
            "mrpc": ("f1", 89.3),
            "stsb": ("spearman", 86.5),
            "qqp": ("f1", 72.1),
            "mnli": ("acc", 86.7),
            "qnli": ("acc", 92.7),
            "rte": ("acc", 70.1),
            "squad": ("f1", 90.9),
            "squad_v2": ("best_f1", 81.9),
        },
    },
}


def reference_for(size: str, task: str) -> tuple[str, str, float, str] | None:
    """(model name, metric, score, source) at ``size``, else the nearest larger size that has the task."""
    order = list(REFERENCES)
    for s in order[order.index(size) :] if size in order else order:
        ref = REFERENCES[s]
        if task in ref["scores"]:
            metric, score = ref["scores"][task]
            return ref["name"], metric, score, ref["source"]
    return None


COLLOBERT = (
    "Collobert et al. (2011), Natural Language Processing (Almost) from Scratch, JMLR 12; the "
    "seeds' table. WSJ POS accuracy and CoNLL-2000 chunking F1 of the supervised window network "
    "against the same network started from language-model-pretrained embeddings (the chunking "
    "pair as recorded in the data mirror's MANIFEST.md, not re-checked against the paper)"
)
SEEDS_TABLE: dict[str, dict[str, tuple[str, float]]] = {
    # task -> row -> (metric, score)
    "ptb_pos": {"supervised": ("token_acc", 96.37), "pretrained": ("token_acc", 97.20)},
    "conll2000_chunk": {"supervised": ("entity_f1", 90.33), "pretrained": ("entity_f1", 93.65)},
}
"""Published points of the seeds' table where a bertpipe task matches (Collobert et al., 2011).
Their CoNLL-2003 NER pair (81.47 vs 88.87 F1) has no task here: the mirror has no CoNLL-2003."""

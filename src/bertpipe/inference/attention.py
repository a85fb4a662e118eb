"""Attention maps: what each head of a BERT checkpoint attends to, as numbers and as a picture.

Owns ``attention``: a sentence (or pair) through the encoder with
``output_attentions=True`` (``models/bert.py``), returning the tokens and the
probabilities of every layer and head; and ``plot``: a PNG grid, one row per layer
and one column per head, the tokens on both axes (query down, key across). Used by
``bertpipe attention`` and by the report's picture of the pretrained model.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bertpipe.errors import InputError


def attention(model_dir: str | Path, text_a: str, text_b: str | None = None):
    """(tokens, probabilities (L, nh, T, T)) of a BERT checkpoint directory on one input."""
    from bertpipe.data.tokenizer import load_existing, resolve_dir
    from bertpipe.models import bert_checkpoint
    from bertpipe.models.bert import BertModel
    from bertpipe.models.registry import checkpoint_family

    model_dir = resolve_dir(str(model_dir))  # a directory, or package:NAME
    family = checkpoint_family(model_dir)
    if family.name != "bert":
        raise InputError(
            f"{model_dir}: a {family.name} checkpoint; attention maps are drawn for BERT's "
            "self-attention (model_type 'bert')"
        )
    model = bert_checkpoint.load(BertModel, model_dir).eval()
    tok = load_existing(str(model_dir), key=f"the model's tokenizer ({model_dir})")
    enc = tok.encode(text_a, text_b) if text_b is not None else tok.encode(text_a)
    ids = torch.tensor([enc.ids])
    with torch.inference_mode():
        out = model(ids, torch.tensor([enc.type_ids]), torch.ones_like(ids), output_attentions=True)
    return list(enc.tokens), torch.stack([a[0] for a in out.attentions]).float()  # (L, nh, T, T)


def plot(tokens: list[str], probs: torch.Tensor, out: str | Path, title: str = "") -> Path:
    """A grid of heatmaps: rows = layers, columns = heads; query tokens down, keys across."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    L, nh, T, _ = probs.shape
    cell = max(1.6, 0.16 * T)
    fig, axes = plt.subplots(L, nh, figsize=(cell * nh, cell * L), squeeze=False)
    for layer in range(L):
        for head in range(nh):
            ax = axes[layer][head]
            ax.imshow(probs[layer, head].numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
            ax.set_xticks(range(T))
            ax.set_yticks(range(T))
            small = {"fontsize": 5}
            ax.set_xticklabels(tokens if layer == L - 1 else [], rotation=90, **small)
            ax.set_yticklabels(tokens if head == 0 else [], **small)
            ax.set_title(f"layer {layer + 1} head {head + 1}", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out

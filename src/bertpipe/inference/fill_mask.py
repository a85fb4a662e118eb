"""Fill-mask: a pretrained model's top predictions for each [MASK] of a sentence.

Used by the ``bertpipe fill-mask`` command and by the pretraining callback that
logs fill-mask examples at every validation.
"""

from __future__ import annotations

import torch


def fill_mask(model, tokenizer, sentence: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-k predictions with probabilities for each [MASK] of ``sentence``."""
    enc = tokenizer.encode(sentence)
    device = next(model.parameters()).device
    ids = torch.tensor([enc.ids], device=device)
    mask_id = tokenizer.token_to_id("[MASK]")
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(
            ids,
            torch.tensor([enc.type_ids], device=device),
            torch.ones_like(ids),
        )
        logits = out.mlm_logits[ids == mask_id]  # (masks, V)
        probs = logits.float().softmax(-1)
    model.train(was_training)
    top = probs.topk(top_k, dim=-1)
    return [
        [(tokenizer.id_to_token(int(i)), round(float(p), 4)) for p, i in zip(ps, ix)]
        for ps, ix in zip(top.values, top.indices)
    ]

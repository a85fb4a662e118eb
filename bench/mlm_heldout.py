"""Held-out masked-LM accuracy of pretrained models on the same masks, whatever each trained with.

Each pretrain stage scores its model on the validation split with its own masking rate
(BERT: the data's, the demo's 40%; modern: its 30%), so their ``val/mlm_acc`` are not
the same test. This scores every given model on the same validation instances with the
same masks at one rate (padded batches, fp32, eval mode): accuracy over masked tokens.

    .venv/bin/python bench/mlm_heldout.py --data data/pretrain \\
        --models models/pretrained/bert models/pretrained/modern --mlm-probability 0.4 0.3
"""

from __future__ import annotations

import argparse

import torch

from bertpipe.data.tokenizer import load_tokenizer
from bertpipe.models.registry import checkpoint_family
from bertpipe.training.pretraining_data import PretrainDataModule


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/pretrain")
    ap.add_argument("--tokenizer", default="models/tokenizer")
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--mlm-probability", nargs="+", type=float, default=[0.4])
    ap.add_argument("--batches", type=int, default=24)
    a = ap.parse_args()
    tok = load_tokenizer(a.tokenizer)
    for rate in a.mlm_probability:
        dm = PretrainDataModule(
            a.data, tok.get_vocab(), 128, seed=0, with_nsp=False, mlm_probability=rate
        )
        dm.setup()
        batches = [b for b, _ in zip(dm.val_dataloader(), range(a.batches), strict=False)]
        masked = sum(int((b["mlm_labels"] != -100).sum()) for b in batches)
        for folder in a.models:
            family = checkpoint_family(folder)
            model = family.load(family.pretraining, folder).eval()
            right = 0
            with torch.no_grad():
                for b in batches:
                    out = model(
                        b["input_ids"],
                        b["token_type_ids"],
                        b["attention_mask"],
                        mlm_labels=b["mlm_labels"],
                    )
                    right += int((out.mlm_predictions == out.mlm_targets).sum())
            print(
                f"masking {rate:.2f}: {folder} ({family.name}): held-out MLM accuracy "
                f"{right / masked:.4f} on {masked} masked tokens of {len(batches)} batches"
            )


if __name__ == "__main__":
    main()

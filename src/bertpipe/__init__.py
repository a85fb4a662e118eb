"""bertpipe: a reproducible pipeline for pretraining and fine-tuning BERT-style encoders.

corpus -> tokenizer -> pretrain_data -> pretrain -> finetune -> evaluate, as DVC
stages (``dvc.yaml``) configured by ``params.yaml`` (``bertpipe.config``).
"""

__version__ = "0.1.0"

"""Training: Lightning modules around injected networks, their data modules, and the two recipes.

pretraining (the ``pretrain`` stage: resumable, MLflow-tracked) with pretraining_module,
pretraining_data, checkpoints and callbacks; finetuning (``finetune@TASK``: inits x seeds)
with finetuning_module, finetuning_data and starting_points; optim, precision and
fingerprints shared by both.
"""

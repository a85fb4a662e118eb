"""The networks: one file per model family, its checkpoint format beside it, a registry of families.

bert (the network) + bert_checkpoint (its Hugging Face format); hf_format (what every
family's checkpoint directory shares); registry (``model.family`` -> config, networks,
checkpoint I/O, FLOPs).
"""

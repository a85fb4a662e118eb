"""Label conventions shared by the data half, the models and the tasks.

``IGNORE_INDEX``: the label of a position that carries no target (not masked,
a special token, a word's later sub-words, padding). It is the default
``ignore_index`` of ``torch.nn.functional.cross_entropy`` and what Hugging Face
models expect, so labels written here load anywhere.
"""

IGNORE_INDEX = -100

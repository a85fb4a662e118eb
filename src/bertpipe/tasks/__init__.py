"""Fine-tuning tasks: what is predicted and how it is scored.

kinds (one class per kind: head, encoding, collation, evaluator, decoding), spec
(``resolve_task``: GLUE, SQuAD and user tasks as one description), glue, squad and
user (where each task's data comes from), evaluators (scores and decoded predictions).
"""

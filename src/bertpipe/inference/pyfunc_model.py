"""The MLflow pyfunc model of a fine-tuned bertpipe model (``mlflow.pyfunc.load_model``, ``mlflow
models serve``).

Owns the ``PythonModel`` that wraps ``inference.predict.TaskPredictor``, so a registered
model predicts exactly what ``bertpipe predict`` does, and the frame <-> rows mapping:

- input: a DataFrame with the task's text columns (``text_a``/``text_b`` or the task's own
  names, e.g. ``sentence1``/``sentence2``); ``tokens`` (a list of words, or a string split on
  whitespace) for tagging; ``question`` and ``context`` for QA;
- output: one row per input: ``label`` and ``p_LABEL`` columns (classification), ``score``
  (regression), ``tags`` (tagging, a list per row), ``answer``/``start``/``score`` (QA).

The model folder itself (weights, tokenizer, task card) is the MLflow Model's artifact
``model``; the pyfunc needs the bertpipe package installed where it loads (``--env-manager
local``, or the ``pip_requirements`` it is logged with).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.pyfunc import PythonModel

from bertpipe import tracking
from bertpipe.inference.predict import ECHOED_INPUTS
from bertpipe.tasks.inputs import resolve_columns

ARTIFACT = "model"


def rows_from_frame(spec, frame) -> list[dict]:
    """DataFrame rows in the task kind's schema (placeholders where gold labels would go)."""
    records = frame.to_dict(orient="records")
    if spec.kind.head == "token":
        rows = []
        for r in records:
            words = r.get("tokens")
            if words is None:
                raise ValueError(f"task {spec.name}: the input needs a 'tokens' column")
            words = words.split() if isinstance(words, str) else [str(w) for w in words]
            rows.append({"tokens": words, "tags": [0] * len(words)})
        return rows
    if spec.kind.head == "span":
        return [
            {
                "id": str(r.get("id", i)),
                "title": "",
                "question": r["question"],
                "context": r["context"],
                "answers": {"text": [], "answer_start": []},
            }
            for i, r in enumerate(records)
        ]
    texts = {k: v for k, v in spec.columns.items() if k != "label"}
    names = resolve_columns(texts, list(frame.columns), f"task {spec.name}: the input")
    placeholder = 0.0 if spec.labels is None else 0
    return [
        {**{k: str(r[c]) for k, c in names.items() if c is not None}, "label": placeholder}
        for r in records
    ]


def frame_from_records(records: list[dict]):
    import pandas as pd

    out = []
    for r in records:
        flat = {k: v for k, v in r.items() if k not in ECHOED_INPUTS or k == "id"}
        for name, p in flat.pop("probabilities", {}).items():
            flat[f"p_{name}"] = p
        out.append(flat)
    return pd.DataFrame(out)


class TaskModel(PythonModel):
    """``predict(frame)`` -> predictions frame, by ``TaskPredictor`` on the logged model folder."""

    def load_context(self, context) -> None:
        from bertpipe.inference.predict import TaskPredictor

        self.predictor = TaskPredictor(context.artifacts[ARTIFACT])

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        import pandas as pd

        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(model_input)
        rows = rows_from_frame(self.predictor.spec, model_input)
        records, _ = self.predictor.predict(rows)
        return frame_from_records(list(records))


def example_frame(spec):
    """A two-row input example in the task's schema (logged with the model)."""
    import pandas as pd

    if spec.kind.head == "token":
        return pd.DataFrame({"tokens": ["The cat sat on the mat .", "Stocks fell sharply ."]})
    if spec.kind.head == "span":
        return pd.DataFrame(
            {
                "question": ["Who wrote the book?", "Where is the tower?"],
                "context": [
                    "The book was written by Jane Smith in 1990.",
                    "The tower stands in the centre of Paris.",
                ],
            }
        )
    # the task's own column names (the signature requires them): GLUE's, or the user task's
    frame = {spec.columns["text_a"][0]: ["A man is playing a guitar.", "The weather is cold."]}
    if "text_b" in spec.columns:
        frame[spec.columns["text_b"][0]] = ["Someone plays music.", "It is warm and sunny."]
    return pd.DataFrame(frame)


class _PretrainedModel(PythonModel):
    """A pretrained family's network (no task head) and its tokenizer."""

    top_k = 5

    def load_context(self, context) -> None:
        from bertpipe.data.tokenizer import load_existing
        from bertpipe.models.registry import checkpoint_family

        folder = context.artifacts[ARTIFACT]
        family = checkpoint_family(folder)
        self.model = family.load(family.pretraining, folder).eval()
        self.tok = load_existing(str(folder), key=f"the model's tokenizer ({folder})")

    @staticmethod
    def _texts(model_input) -> list[str]:
        import pandas as pd

        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "text" not in frame.columns:
            raise ValueError(f"the input needs a 'text' column (columns: {list(frame.columns)})")
        return [str(t) for t in frame["text"]]


class FillMaskModel(_PretrainedModel):
    """A pretrained masked LM: ``text`` with ``[MASK]`` -> ``predictions``, the top 5 per mask
    as ``token (probability)``, masks separated by `` | ``."""

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        import pandas as pd

        from bertpipe.inference.fill_mask import fill_mask

        out = []
        for text in self._texts(model_input):
            slots = fill_mask(self.model, self.tok, text, self.top_k)
            out.append(" | ".join(", ".join(f"{t} ({p:.3f})" for t, p in slot) for slot in slots))
        return pd.DataFrame({"predictions": out})


class NextTokenModel(_PretrainedModel):
    """A pretrained left-to-right LM (GPT, ELMo's forward LM): ``text`` -> ``predictions``, the
    top 5 next tokens as ``token (probability)``."""

    def predict(self, context, model_input, params: dict[str, Any] | None = None):
        import pandas as pd
        import torch

        cls = self.tok.token_to_id("[CLS]")
        out = []
        with torch.inference_mode():
            for text in self._texts(model_input):
                ids = [cls, *self.tok.encode(text, add_special_tokens=False).ids]
                probs = self.model.next_token_logits(torch.tensor([ids])).float().softmax(-1)[0]
                top = probs.topk(self.top_k)
                out.append(
                    ", ".join(
                        f"{self.tok.id_to_token(int(i))} ({float(p):.3f})"
                        for p, i in zip(top.values, top.indices, strict=True)
                    )
                )
        return pd.DataFrame({"predictions": out})


class Context:
    """What ``load_context`` reads (``artifacts``), for loading a model before it is logged."""

    def __init__(self, artifacts: dict[str, str]):
        self.artifacts = artifacts


def for_folder(folder) -> tuple[PythonModel, Any]:
    """The pyfunc model class for a model folder and an input example for it."""
    import pandas as pd

    from bertpipe.models.registry import checkpoint_family
    from bertpipe.tasks.card import CARD_FILE, read_card, spec_from_card
    from bertpipe.training.objectives import OBJECTIVES

    if (Path(folder) / CARD_FILE).exists():
        return TaskModel(), example_frame(spec_from_card(read_card(folder)))
    objective = checkpoint_family(folder).objective
    if objective is not None and OBJECTIVES[objective].masked:
        return FillMaskModel(), pd.DataFrame({"text": ["the man went to the [MASK] store ."]})
    return NextTokenModel(), pd.DataFrame({"text": ["the man went to the"]})


def log_model(run_id: str, model_dir: str | Path, name: str) -> str:
    """``model_dir`` logged to ``run_id`` as an MLflow Model (``MLmodel``, pyfunc flavor,
    signature, input example, the folder with its tokenizer as artifact ``model``, pinned
    requirements); its URI. Loading it needs bertpipe installed (``--env-manager local``): its
    code is not copied in, since MLflow's loader would then re-import bertpipe from the copy in
    the process that logs it.

    A fine-tuned model predicts its task (``TaskModel``); a pretrained
    BERT fills masks (``FillMaskModel``); other pretrained families give their next-token
    predictions (``NextTokenModel``).
    """
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking.tracking_uri())
    python_model, example = for_folder(model_dir)
    python_model.load_context(Context({ARTIFACT: str(model_dir)}))
    signature = infer_signature(example, python_model.predict(None, example))
    active = mlflow.active_run()
    with mlflow.start_run(run_id=run_id, nested=active is not None):
        info = mlflow.pyfunc.log_model(
            name=name,
            python_model=type(python_model)(),
            artifacts={ARTIFACT: str(model_dir)},
            signature=signature,
            input_example=example,
            pip_requirements=tracking.pip_requirements(),
        )
    return info.model_uri

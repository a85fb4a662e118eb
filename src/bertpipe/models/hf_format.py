"""The Hugging Face checkpoint directory, family-independent: ``config.json`` + weights.

Owns reading and writing the two files every family's checkpoint has, and the
safety rule: weights load from ``model.safetensors``, or from a
``pytorch_model.bin`` only when it holds plain tensors (unpickling can run code).
Which keys and config fields a family uses is the family's checkpoint module's
business (``models/bert_checkpoint.py``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from bertpipe.errors import UserError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CHECKSUM = "model.sha256"
"""``sha256sum`` format (``sha256sum -c model.sha256`` checks it): written with the weights,
verified whenever they load, so a damaged or altered file is refused, not used."""


class CheckpointError(UserError, ValueError):
    """A checkpoint directory that cannot be loaded; the message says what is wrong."""


def put_label_fields(d: dict) -> dict:
    """``d`` (a family's ``asdict`` config) with transformers' label fields: ``label2id`` and
    ``num_labels`` beside ``id2label`` for a task head, neither for a pretraining head;
    ``problem_type`` only when set."""
    if d.get("id2label"):
        d["label2id"] = {v: int(k) for k, v in d["id2label"].items()}
        d["num_labels"] = len(d["id2label"])
    else:
        d.pop("id2label", None)
    if d.get("problem_type") is None:
        d.pop("problem_type", None)
    return d


def read_config(folder: str | Path) -> tuple[dict, Path]:
    """The parsed ``config.json`` of a checkpoint directory, and its path."""
    folder = Path(folder)
    path = folder / CONFIG
    if not path.exists():
        raise CheckpointError(f"{folder}: no config.json (is this a checkpoint directory?)")
    try:
        return json.loads(path.read_text()), path
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON: {e}") from None


def load_state_dict(folder: str | Path) -> dict[str, torch.Tensor]:
    """Weights from ``model.safetensors`` or ``pytorch_model.bin``, never unpickling code."""
    folder = Path(folder)
    st, pt = folder / WEIGHTS, folder / "pytorch_model.bin"
    if st.exists():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        verify_checksum(folder)
        try:
            return load_file(str(st))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"{st}: not a valid safetensors file ({e})") from None
    if pt.exists():
        try:
            state = torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises UnpicklingError or RuntimeError for foreign pickles
            raise CheckpointError(
                f"{pt}: refused to load: it is not a plain tensor checkpoint ({type(e).__name__}). "
                "Only safetensors or weights-only torch files are loaded, since unpickling can "
                "run code; convert it to model.safetensors with a tool you trust"
            ) from None
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise CheckpointError(f"{pt}: expected a mapping of parameter names to tensors")
        return state
    raise CheckpointError(f"{folder}: neither model.safetensors nor pytorch_model.bin found")


def write_checkpoint(folder: str | Path, state: dict[str, torch.Tensor], config: dict) -> Path:
    """``config.json`` + ``model.safetensors`` (contiguous CPU copies of ``state``)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": "pt"})
    (folder / CHECKSUM).write_text(f"{sha256(folder / WEIGHTS)}  {WEIGHTS}\n")
    (folder / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(folder: Path) -> str | None:
    """The weights' sha256 when ``model.sha256`` records it and it matches; an error if not.

    Checkpoints from elsewhere (the hub, transformers) have no such file: None."""
    record = folder / CHECKSUM
    if not record.exists():
        return None
    expected = record.read_text().split()[0]
    actual = sha256(folder / WEIGHTS)
    if actual != expected:
        raise CheckpointError(
            f"{folder / WEIGHTS}: its content does not match {record} (sha256 {actual[:12]}..., "
            f"recorded {expected[:12]}...): the file was damaged or changed after export. Restore "
            "it (`dvc checkout` for a pipeline output) or export the model again"
        )
    return actual


def put_state(
    model: torch.nn.Module,
    state: dict[str, torch.Tensor],
    origin: str,
    strict: bool,
    prefixes: tuple[str, ...] = (),
    tied: frozenset[str] = frozenset(),
) -> dict[str, list[str]]:
    """Load ``state`` into ``model`` by name; returns the missing/unexpected keys.

    A key not in the model is tried with each of ``prefixes`` added or removed (a
    pretraining checkpoint into a task network and back). Shapes must agree; keys
    the checkpoint lacks stay as initialised (a new task head) and are logged, or,
    with ``strict``, are an error.
    """
    import logging

    log = logging.getLogger("bertpipe.models")
    own = model.state_dict()
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            for p in prefixes:
                if p + key in own:
                    key = p + key
                    break
                if key.startswith(p) and key[len(p) :] in own:
                    key = key[len(p) :]
                    break
        renamed[key] = value
    for key, value in renamed.items():
        if key in own and own[key].shape != value.shape:
            raise CheckpointError(
                f"{origin}: {key} has shape {tuple(value.shape)} in the checkpoint but "
                f"{tuple(own[key].shape)} in the model built from its config.json; the weights "
                "do not belong to this config"
            )
    missing = sorted(k for k in own if k not in renamed and k not in tied)
    unexpected = sorted(k for k in renamed if k not in own)
    if strict and missing:
        raise CheckpointError(f"{origin}: missing weights {missing}")
    model.load_state_dict({k: v for k, v in renamed.items() if k in own}, strict=False)
    if missing:
        log.warning("%s: weights not in the checkpoint, freshly initialised: %s", origin, missing)
    if unexpected:
        log.warning("%s: checkpoint weights this model does not use: %s", origin, unexpected)
    return {"missing_keys": missing, "unexpected_keys": unexpected}

"""The Hugging Face checkpoint format: bad input refused with clear messages, old names load."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from bertpipe.config import BertModelConfig, ModelConfig
from bertpipe.models.bert import BertConfig, BertForPreTraining, BertModel
from bertpipe.models.bert_checkpoint import load, save
from bertpipe.models.hf_format import CheckpointError
from bertpipe.models.registry import checkpoint_family, get_family
from bertpipe.training.pretraining import build_model


@pytest.fixture
def ckpt(tmp_path):
    model = BertForPreTraining(BertConfig.from_size("tiny", vocab_size=300))
    return save(model, tmp_path / "ckpt")


def test_wrong_shape_names_the_tensor(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["intermediate_size"] = 1024
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError,
        match=r"encoder.layer.0.intermediate.dense.bias has shape \(512,\) in the checkpoint but \(1024,\)",
    ):
        load(BertModel, ckpt)


def test_missing_files(ckpt, tmp_path):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="neither model.safetensors nor pytorch_model.bin"):
        load(BertModel, ckpt)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load(BertModel, tmp_path / "empty")


def test_unknown_architecture(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"] = "xlnet"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model_type 'xlnet' is not supported"):
        load(BertModel, ckpt)
    with pytest.raises(CheckpointError, match="model_type 'xlnet' is not supported"):
        checkpoint_family(ckpt)


class Evil:
    def __reduce__(self):
        return (print, ("this ran during unpickling",))


def test_a_pickle_offered_as_weights_is_refused(ckpt, capsys):
    (ckpt / "model.safetensors").unlink()
    with open(ckpt / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(CheckpointError, match="refused to load"):
        load(BertModel, ckpt)
    assert "this ran" not in capsys.readouterr().out


def test_a_weights_only_torch_file_loads(ckpt):
    state = load(BertForPreTraining, ckpt).state_dict()
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")
    model = load(BertForPreTraining, ckpt, strict=True)
    assert torch.equal(model.bert.pooler.dense.weight, state["bert.pooler.dense.weight"])


def test_corrupt_safetensors(ckpt):
    (ckpt / "model.sha256").unlink()  # as a checkpoint from elsewhere: nothing to check against
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load(BertModel, ckpt)


def test_an_export_records_its_hash_and_flipped_bytes_are_refused(ckpt):
    import hashlib

    weights = ckpt / "model.safetensors"
    line = (ckpt / "model.sha256").read_text()
    assert line == f"{hashlib.sha256(weights.read_bytes()).hexdigest()}  model.safetensors\n"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte inside a tensor: still a valid safetensors file
    weights.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError,
        match=r"model.safetensors: its content does not match "
        r".*model.sha256.*Restore it",
    ):
        load(BertModel, ckpt)


def test_vocab_size_mismatch_with_tokenizer(ckpt):
    with pytest.raises(
        CheckpointError, match="vocabulary size 300 does not match the tokenizer's 2000"
    ):
        cfg = ModelConfig(bert=BertModelConfig(init_from=str(ckpt)))
        build_model(get_family("bert"), cfg, vocab_size=2000, pad_id=0)


def test_old_gamma_beta_names_and_bert_prefix_load(ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / "model.safetensors"))
    renamed = {
        k.replace("LayerNorm.weight", "LayerNorm.gamma").replace(
            "LayerNorm.bias", "LayerNorm.beta"
        ): v
        for k, v in state.items()
    }
    save_file(renamed, str(ckpt / "model.safetensors"))
    (ckpt / "model.sha256").unlink()  # a TF-era checkpoint from elsewhere has no record
    enc = load(BertModel, ckpt)  # heads dropped, bert. prefix stripped
    assert enc.loading_info["missing_keys"] == []
    assert set(enc.loading_info["unexpected_keys"]) == {k for k in state if k.startswith("cls.")}

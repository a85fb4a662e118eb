"""Checkpoint loading refuses bad input with clear messages; optimisers and schedules behave."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from bertpipe.config import ModelConfig
from bertpipe.data import ResumableBatchSampler
from bertpipe.model import BertConfig, BertForPreTraining, BertModel, CheckpointError
from bertpipe.optim import Lamb, linear_warmup_decay, param_groups
from bertpipe.pretraining import build_model


@pytest.fixture
def ckpt(tmp_path):
    model = BertForPreTraining(BertConfig.from_size("tiny", vocab_size=300))
    return model.save_pretrained(tmp_path / "ckpt")


def test_wrong_shape_names_the_tensor(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["intermediate_size"] = 1024
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"encoder.layer.0.intermediate.dense.bias has shape \(512,\) in the checkpoint but \(1024,\)"):
        BertModel.from_pretrained(ckpt)


def test_missing_files(ckpt, tmp_path):
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="neither model.safetensors nor pytorch_model.bin"):
        BertModel.from_pretrained(ckpt)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        BertModel.from_pretrained(tmp_path / "empty")


def test_unknown_architecture(ckpt):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model_type 'gpt2' is not supported"):
        BertModel.from_pretrained(ckpt)


class Evil:
    def __reduce__(self):
        return (print, ("this ran during unpickling",))


def test_a_pickle_offered_as_weights_is_refused(ckpt, capsys):
    (ckpt / "model.safetensors").unlink()
    with open(ckpt / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": Evil()}, f)
    with pytest.raises(CheckpointError, match="refused to load"):
        BertModel.from_pretrained(ckpt)
    assert "this ran" not in capsys.readouterr().out


def test_a_weights_only_torch_file_loads(ckpt):
    state = BertForPreTraining.from_pretrained(ckpt).state_dict()
    (ckpt / "model.safetensors").unlink()
    torch.save(state, ckpt / "pytorch_model.bin")
    model = BertForPreTraining.from_pretrained(ckpt, strict=True)
    assert torch.equal(model.bert.pooler.dense.weight, state["bert.pooler.dense.weight"])


def test_corrupt_safetensors(ckpt):
    (ckpt / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        BertModel.from_pretrained(ckpt)


def test_vocab_size_mismatch_with_tokenizer(ckpt):
    with pytest.raises(CheckpointError, match="vocabulary size 300 does not match the tokenizer's 2000"):
        build_model(ModelConfig(init_from=str(ckpt)), vocab_size=2000, pad_id=0)


def test_old_gamma_beta_names_and_bert_prefix_load(ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(str(ckpt / "model.safetensors"))
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in state.items()}
    save_file(renamed, str(ckpt / "model.safetensors"))
    enc = BertModel.from_pretrained(ckpt)  # heads dropped, bert. prefix stripped
    assert enc.loading_info["missing_keys"] == []
    assert set(enc.loading_info["unexpected_keys"]) == {k for k in state if k.startswith("cls.")}


def test_no_weight_decay_on_biases_and_layernorm():
    model = BertForPreTraining(BertConfig.from_size("tiny", vocab_size=100))
    decay, no_decay = param_groups(model, 0.01)
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == sum(p.numel() for p in model.parameters())  # tied decoder counted once


def test_warmup_then_linear_decay():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_warmup_decay(opt, warmup_steps=4, total_steps=12)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])


def test_lamb_minimises_a_quadratic_with_trust_ratio():
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(10, 10))
    opt = Lamb([w], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
    assert w.norm() < 0.5


def test_sampler_resumes_mid_epoch_without_replay():
    full = ResumableBatchSampler(100, 8, seed=3)
    full.set_epoch(2)
    batches = list(full)
    resumed = ResumableBatchSampler(100, 8, seed=3)
    resumed.set_epoch(2)
    resumed.resume(2, 5)
    assert list(resumed) == batches[5:] and len(resumed) == len(batches) == 12
    assert list(resumed) == batches  # only the first iteration skips
    ranks = [ResumableBatchSampler(100, 8, seed=3, rank=r, world_size=2) for r in (0, 1)]
    seen = [i for s in ranks for b in s for _, i in b]
    assert len(seen) == len(set(seen)) == 96

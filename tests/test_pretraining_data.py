"""The pretraining batches: a sampler that resumes mid-epoch without replay, sharded by rank."""

from __future__ import annotations

from bertpipe.training.pretraining_data import ResumableBatchSampler


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


def test_order_depends_on_seed_and_epoch_only():
    a, b, c = (ResumableBatchSampler(50, 5, seed=s) for s in (1, 1, 2))
    assert list(a) == list(b) != list(c)
    b.set_epoch(1)
    assert list(a) != list(b)


def test_a_familys_masking_rate_reaches_the_masker_and_what_the_stage_reads(tiny_built):
    """The modern family's 30%: one place rewrites it, for the batches and for the FLOPs and
    resume fingerprint the stage computes from ``dm.meta``; the file on disk is untouched."""
    import json

    from bertpipe.training.pretraining_data import PretrainDataModule

    data = tiny_built["root"] / "pretrain"
    on_disk = json.loads((data / "meta.json").read_text())
    vocab = tiny_built["tokenizer"].get_vocab()
    plain = PretrainDataModule(data, vocab, 4, seed=0)
    assert plain.meta == on_disk
    assert plain.masker.cfg.mlm_probability == on_disk["config"]["masking"]["mlm_probability"]
    own = PretrainDataModule(data, vocab, 4, seed=0, mlm_probability=0.3)
    assert own.masker.cfg.mlm_probability == own.meta["config"]["masking"]["mlm_probability"] == 0.3
    assert json.loads((data / "meta.json").read_text()) == on_disk

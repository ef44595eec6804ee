"""famlib.loss (the chunked head) and the training switches of the paper's memory: loss_chunk, master_dtype."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import Gemma3ForCausalLM, Gemma3TextConfig  # noqa: E402

from famlib.config import TrainConfig, load_params, training_key  # noqa: E402
from famlib.errors import ConfigError  # noqa: E402
from famlib.loss import chunked_causal_lm_loss, linear_cross_entropy, token_nll  # noqa: E402
from famlib.train import ResumeError, train  # noqa: E402


def _model(softcap=None, seed=0) -> Gemma3ForCausalLM:
    config = Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                              sliding_window=16, final_logit_softcapping=softcap)
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(config)


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("softcap", [None, 2.0])
def test_chunked_loss_equals_the_plain_loss_and_gradient_fp32(softcap):
    # 3 x 24 tokens -> 69 targets in chunks of 10: the last chunk is short. A soft-cap of 2 bends the logits
    # hard, so a missing tanh derivative would show.
    x = torch.randint(0, 300, (3, 24), generator=torch.Generator().manual_seed(1))
    plain = _model(softcap)
    loss_plain = plain(input_ids=x, labels=x, use_cache=False).loss
    loss_plain.backward()
    chunked = _model(softcap)
    loss_chunked = chunked_causal_lm_loss(chunked, chunked, x, chunk=10)
    loss_chunked.backward()
    torch.testing.assert_close(loss_chunked, loss_plain, rtol=1e-6, atol=1e-6)
    gp, gc = _grads(plain), _grads(chunked)
    assert gp.keys() == gc.keys() and "model.embed_tokens.weight" in gc  # the tied head's gradient arrives
    for name in gp:
        torch.testing.assert_close(gc[name], gp[name], rtol=1e-4, atol=1e-6, msg=name)
    # the model is handed back with its head and soft-cap: the plain forward gives logits again
    assert chunked(input_ids=x).logits.shape == (3, 24, 300)
    assert chunked.config.final_logit_softcapping == softcap


def test_linear_cross_entropy_ignores_masked_targets_and_works_under_no_grad():
    h = torch.randn(9, 8, requires_grad=True)
    w = torch.randn(40, 8, requires_grad=True)
    y = torch.tensor([3, -100, 5, 7, -100, 1, 0, 39, 2])
    loss = linear_cross_entropy(h, w, y, chunk=4)
    ref = torch.nn.functional.cross_entropy(h @ w.T, y, ignore_index=-100)
    torch.testing.assert_close(loss, ref)
    gh, gw = torch.autograd.grad(loss, (h, w))
    rh, rw = torch.autograd.grad(ref, (h, w))
    torch.testing.assert_close(gh, rh, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, rw, rtol=1e-5, atol=1e-6)
    assert gh[1].abs().max() == 0 and gh[4].abs().max() == 0  # masked rows get no gradient
    with torch.no_grad():  # validation: the same value (the gradients are skipped there)
        torch.testing.assert_close(linear_cross_entropy(h, w, y, chunk=4), ref.detach())
    with pytest.raises(ValueError, match="chunk=0"):
        linear_cross_entropy(h, w, y, chunk=0)


@pytest.mark.parametrize("softcap", [None, 2.0])
def test_token_nll_is_the_per_token_cross_entropy_and_the_mean_is_the_training_loss(softcap):
    h = torch.randn(11, 8)
    w = torch.randn(40, 8)
    y = torch.tensor([3, -100, 5, 7, -100, 1, 0, 39, 2, 4, 6])
    z = h @ w.T
    if softcap:
        z = torch.tanh(z / softcap) * softcap
    ref = torch.nn.functional.cross_entropy(z, y, ignore_index=-100, reduction="none")
    got = token_nll(h, w, y, chunk=3, softcap=softcap)  # a ragged last chunk
    torch.testing.assert_close(got, ref)
    assert got[1] == 0 and got[4] == 0
    valid = y != -100
    torch.testing.assert_close(got[valid].mean(), linear_cross_entropy(h, w, y, chunk=5, softcap=softcap))
    assert token_nll(h, w, y, chunk=3, compute_dtype=torch.bfloat16).dtype == torch.float32
    with pytest.raises(ValueError, match="chunk=0"):
        token_nll(h, w, y, chunk=0)


def _data(rows, seed):
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, 300, (rows, 1)) + rng.integers(1, 4, (rows, 1)) * np.arange(16)) % 300).astype(np.uint16)


def test_train_with_loss_chunk_follows_the_plain_run(tmp_path):
    """The switch reaches the loop and validation: 4 steps with and without it end at the same weights."""
    cfg = TrainConfig(lr=5e-3, warmup_steps=1, batch_size=4, grad_accum=2, max_steps=4, eval_every=2, save_every=100)
    tr, va = _data(48, 0), _data(8, 1)
    a, b = _model(), _model()
    ra = train(a, tr, va, cfg, tmp_path / "plain", seed=1, progress=False, save_model_dir=False)
    rb = train(b, tr, va, TrainConfig(**{**cfg.__dict__, "loss_chunk": 7}), tmp_path / "chunked", seed=1,
               progress=False, save_model_dir=False)
    assert ra.train_loss == pytest.approx(rb.train_loss, rel=1e-4)
    assert [e["val_loss"] for e in ra.evals] == pytest.approx([e["val_loss"] for e in rb.evals], rel=1e-4)
    moved = 0.0
    for (n, pa), pb, p0 in zip(a.named_parameters(), b.parameters(), _model().parameters()):
        torch.testing.assert_close(pb, pa, rtol=1e-3, atol=1e-5, msg=n)
        moved = max(moved, float((pa - p0).detach().abs().max()))
    assert moved > 1e-3  # the weights did move, so equal weights say something
    assert a.get_output_embeddings().forward.__func__ is type(a.get_output_embeddings()).forward


def test_master_dtype_trains_in_bf16_and_refuses_a_model_in_another_dtype(tmp_path):
    cfg = TrainConfig(lr=5e-3, warmup_steps=1, batch_size=4, max_steps=2, save_every=100, master_dtype="bfloat16")
    with pytest.raises(ValueError, match="master_dtype='bfloat16' but trainable parameters are float32"):
        train(_model(), _data(16, 0), None, cfg, tmp_path / "refused", seed=1, progress=False)
    model = _model().to(torch.bfloat16)
    train(model, _data(16, 0), None, cfg, tmp_path / "bf16", seed=1, progress=False, save_model_dir=False)
    state = torch.load(tmp_path / "bf16" / "checkpoints" / "step-00000002" / "optimizer.pt", weights_only=True)
    moments = [t for s in state["state"].values() for k, t in s.items() if k in ("exp_avg", "exp_avg_sq")]
    assert moments and {t.dtype for t in moments} == {torch.bfloat16}  # AdamW's state in bf16, as the authors'


def test_new_switches_keep_offline_keys_and_are_on_at_the_paper_scale():
    for scale in ("smoke", "tiny", "small"):
        d = load_params(scale).to_dict()["training"]
        for regime, section in d.items():
            if section is not None:
                assert not {"loss_chunk", "master_dtype"} & set(training_key(section)), (scale, regime)
    paper = load_params("paper").training
    for cfg in (paper.dense, paper.family):
        assert cfg.loss_chunk and cfg.master_dtype == "bfloat16"
    with pytest.raises(ConfigError, match="loss_chunk"):
        load_params("smoke", {"training.family.loss_chunk": 0})


def test_a_checkpoint_from_before_the_switches_resumes(tmp_path):
    """A checkpoint whose trainer_state.json lacks loss_chunk and master_dtype (written before they existed)
    resumes with them at their defaults, and is refused once one of them is set."""
    from famlib.io import sha256_file

    cfg = TrainConfig(lr=5e-3, warmup_steps=1, batch_size=4, max_steps=2, save_every=1)
    train(_model(), _data(16, 0), None, cfg, tmp_path / "run", seed=1, progress=False, save_model_dir=False)
    ckpt = tmp_path / "run" / "checkpoints" / "step-00000002"
    state_path = ckpt / "trainer_state.json"
    state = json.loads(state_path.read_text())
    for k in ("loss_chunk", "master_dtype"):
        del state["run"]["train"][k]
    state["state"]["finished"] = False
    state_path.write_text(json.dumps(state))
    manifest = json.loads((ckpt / "manifest.json").read_text())
    manifest["files"]["trainer_state.json"] = {"bytes": state_path.stat().st_size, "sha256": sha256_file(state_path)}
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ResumeError, match=r"train \(fields\).*'loss_chunk'"):
        train(_model(), _data(16, 0), None, TrainConfig(**{**cfg.__dict__, "loss_chunk": 8}), tmp_path / "run",
              seed=1, progress=False, save_model_dir=False)
    result = train(_model(), _data(16, 0), None, cfg, tmp_path / "run", seed=1, progress=False, save_model_dir=False)
    assert result.resumed_from == 2 and result.steps == 2

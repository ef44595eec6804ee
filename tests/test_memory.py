"""famlib.memory (the per-strategy estimate behind ``famlib memory`` and the README's GPU table) and L2-SP's
anchors in the base's dtype."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from transformers import Gemma3ForCausalLM, Gemma3TextConfig  # noqa: E402

from famlib import memory  # noqa: E402
from famlib.config import L2SPConfig, REPO_ROOT, load_params  # noqa: E402
from famlib.models import build_scratch_model  # noqa: E402
from famlib.strategies import LayerRangeL2SP  # noqa: E402
from famlib.strategies.training import apply_strategy  # noqa: E402
from famlib.strategies.l2sp import build as build_l2sp  # noqa: E402
from famlib.train import _activation_checkpointing  # noqa: E402

CONFIG = dict(vocab_size=500, hidden_size=48, intermediate_size=112, num_hidden_layers=4, num_attention_heads=3,
              num_key_value_heads=1, head_dim=20, query_pre_attn_scalar=20, sliding_window=8,
              layer_types=["sliding_attention", "sliding_attention", "sliding_attention", "full_attention"])


@pytest.mark.parametrize("dtype, autocast, checkpointing", [
    ("float32", False, False), ("float32", True, False), ("float32", True, True), ("bfloat16", False, False)])
def test_activation_profile_predicts_what_a_whole_model_saves(dtype, autocast, checkpointing):
    """Probed on 1-2 layers at 8 and 16 tokens, extrapolated to 4 layers, 3 x 40 tokens: the saved bytes of
    the real model, measured the same way (widths all different, so a wrong coefficient would show)."""
    config = Gemma3TextConfig(**CONFIG)
    prof = memory.activation_profile(config, dtype, autocast, checkpointing)
    torch.manual_seed(0)
    model = Gemma3ForCausalLM(config).to(getattr(torch, dtype)).train()
    if checkpointing:
        _activation_checkpointing(model, True)
    x = torch.randint(0, 500, (3, 40))
    measured = memory.saved_bytes(model, x, autocast)
    T, L = x.numel(), config.num_hidden_layers
    predicted = L * prof.per_token_layer * T + prof.per_token_fixed * T + L * prof.per_layer
    assert predicted == pytest.approx(measured, rel=0.01)
    assert prof.per_token_layer > (0 if checkpointing else 10 * config.hidden_size)


def test_estimate_counts_what_the_strategies_train_and_anchor(smoke_params):
    config = memory.model_config(smoke_params)
    for strategy in ("dense", "freeze", "l2sp"):
        model = build_scratch_model(smoke_params.model.architecture, config.vocab_size, seed=0)
        reg, _ = apply_strategy(smoke_params, strategy, model)
        e = memory.estimate(config, smoke_params, strategy)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert e.settings["trainable"] == trainable
        assert e.settings["parameters"] == sum(p.numel() for p in model.parameters())
        assert e.settings["anchored"] == getattr(reg, "anchored", 0)
        assert e.parts["weights"] == 4 * e.settings["parameters"]  # smoke: fp32 master weights
        assert e.parts["optimiser (AdamW, 2 moments)"] == 2 * e.parts["gradients"] == 8 * trainable
    assert memory.estimate(config, smoke_params, "freeze").total < memory.estimate(config, smoke_params, "dense").total


def test_switches_change_the_parts_they_should(smoke_params):
    config = memory.model_config(smoke_params)
    plain = memory.estimate(config, smoke_params, "l2sp")
    chunked = memory.estimate(config, smoke_params, "l2sp", overrides={"loss_chunk": 16})
    half = memory.estimate(config, smoke_params, "l2sp", overrides={"master_dtype": "bfloat16"})
    T, V = 8 * 64, config.vocab_size
    assert plain.parts["logits (whole micro-batch)"] == T * V * 10
    assert chunked.parts["logits (chunked head)"] == 16 * V * 8 + (4 + 4) * V * config.hidden_size  # fp32 weights
    assert half.parts["weights"] == plain.parts["weights"] / 2
    assert half.parts["gradients"] == plain.parts["gradients"] / 2
    assert half.parts["L2-SP anchors"] == plain.parts["L2-SP anchors"]  # anchors stay in the base's dtype


def test_famlib_memory_command(capsys):
    from famlib.cli import main

    assert main(["memory", "--scale", "smoke", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["strategy"] for r in rows] == ["dense", "expert", "freeze", "l2sp"]
    assert all(r["fits"] == {"80 GB": True, "H200 141 GB": True} for r in rows)


@pytest.mark.slow
def test_readme_quotes_the_paper_estimate():
    """The README's GPU table is what ``famlib memory --scale paper --variants`` prints (about 40 s here)."""
    params = load_params("paper")
    _, text = memory.table(params)
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for block in (text.split("\n\n", 1)[1], memory.variants_table(params)):
        assert block in readme, "README.md's memory table is stale; paste `famlib memory --scale paper --variants`"


def test_l2sp_anchors_in_bf16_are_exact_for_a_bf16_base_and_chunking_changes_nothing():
    arch = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=6, num_attention_heads=2,
                num_key_value_heads=1, head_dim=16, max_position_embeddings=64, sliding_window=16)
    model = build_scratch_model(arch, vocab_size=128, seed=0).to(torch.bfloat16).float()  # a bf16 base in fp32
    lambdas = L2SPConfig(first=0.001, middle=0.05, last=0.002, outside=0.003)
    wide = LayerRangeL2SP(model, lambdas, first=2, last=1)
    narrow = LayerRangeL2SP(model, lambdas, first=2, last=1, dtype=torch.bfloat16)
    narrow.CHUNK_BYTES = 4096  # many chunks of a few tensors
    assert {a.dtype for group in narrow.anchors.values() for a in group} == {torch.bfloat16}
    assert narrow.anchored == wide.anchored
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    model.zero_grad(set_to_none=True)
    v_wide = wide.penalty_and_grad(model)
    g_wide = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    v_narrow = narrow.penalty_and_grad(model)
    assert v_narrow == v_wide
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, g_wide[n]), n
    # build() keeps them in the dtype the scale's base is stored in
    smoke = load_params("smoke", {"l2sp.outside": 0.1})
    small = build_scratch_model(smoke.model.architecture, 300, seed=0)
    assert {a.dtype for g in build_l2sp(smoke, small).anchors.values() for a in g} == {torch.float32}
    bf16_base = load_params("smoke", {"model.dtype": "bfloat16"})
    assert {a.dtype for g in build_l2sp(bf16_base, small).anchors.values() for a in g} == {torch.bfloat16}

"""famlib.layers: the one layer parser, layer groups, and the per-strategy rule."""

from __future__ import annotations

import pytest
import torch

from famlib import config as fconfig
from famlib.layers import (
    GROUPS,
    LayerError,
    check_num_layers,
    decoder_layers,
    group_of,
    is_adapter,
    l2sp_lambda,
    layer_groups,
    layer_index,
    parameter_counts,
    unwrapped_name,
)
from famlib.strategies.rules import RULES, is_trainable, rule_for, surgery_groups, trainable_fraction_under_freeze


@pytest.mark.parametrize("name, index", [
    ("model.layers.3.mlp.up_proj.weight", 3),  # Gemma3ForCausalLM, Llama, Qwen2
    ("model.layers.33.self_attn.q_norm.weight", 33),
    ("model.language_model.layers.7.self_attn.k_proj.weight", 7),  # Gemma 3 multimodal, transformers 5
    ("language_model.model.layers.12.input_layernorm.weight", 12),  # Gemma 3 multimodal, hub checkpoint
    ("transformer.h.5.attn.c_attn.weight", 5),  # GPT-2
    ("h.0.ln_1.bias", 0),  # GPT2Model
    ("layers.2.mlp.down_proj.weight", 2),  # bare text backbone
    ("model.layers.4", 4),  # a module name
    ("model.embed_tokens.weight", None),
    ("model.norm.weight", None),
    ("lm_head.weight", None),
    ("transformer.wte.weight", None),
    ("transformer.ln_f.weight", None),
    ("model.language_model.embed_tokens.weight", None),
    ("model.vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight", None),  # vision layers are not decoder layers
    ("vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight", None),
    ("model.multi_modal_projector.mm_input_projection_weight", None),
    ("model.layers_extra.3.weight", None),
    ("model.layers.x.weight", None),
    # peft (LoRA): the wrapped model's names, and the adapter file's (without the adapter's name)
    ("base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight", 3),
    ("base_model.model.model.layers.3.self_attn.q_proj.lora_B.default.weight", 3),
    ("base_model.model.model.layers.3.self_attn.q_proj.base_layer.weight", 3),
    ("base_model.model.model.layers.17.mlp.down_proj.lora_B.weight", 17),
    ("base_model.model.model.layers.0.input_layernorm.weight", 0),
    ("base_model.model.model.language_model.layers.5.mlp.up_proj.lora_A.default.weight", 5),
    ("base_model.model.model.layers", None),  # the container itself is not in a layer
    ("base_model.model.model.embed_tokens.weight", None),
    ("base_model.model.model.norm.weight", None),
    ("base_model.model.lm_head.weight", None),
])
def test_layer_index(name, index):
    assert layer_index(name) == index


def _tiny(family: str):
    from transformers import (AutoModelForCausalLM, GPT2Config, Gemma3TextConfig, LlamaConfig,
                              Qwen2Config)

    small = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2,
                 num_key_value_heads=1)
    cfg = {
        "gemma3": lambda: Gemma3TextConfig(**small, head_dim=8),
        "llama": lambda: LlamaConfig(**small),
        "qwen2": lambda: Qwen2Config(**small),
        "gpt2": lambda: GPT2Config(vocab_size=64, n_embd=16, n_layer=3, n_head=2),
    }[family]()
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(cfg)


@pytest.mark.parametrize("family", ["gemma3", "llama", "qwen2", "gpt2"])
def test_parser_agrees_with_module_tree(family):
    """Every parameter the parser puts in layer i is a parameter of decoder_layers(model)[i], and back."""
    model = _tiny(family)
    layers = decoder_layers(model)
    assert len(layers) == 3
    owner = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    for name, p in model.named_parameters():
        assert layer_index(name) == owner.get(id(p)), name
    check_num_layers(model, 3)
    with pytest.raises(LayerError, match="model.num_layers is 4 but .* has 3 decoder layers"):
        check_num_layers(model, 4)


def test_peft_names_map_to_the_plain_model_and_to_the_layer_of_the_weight_they_adapt():
    """Under peft's wrapping every parameter keeps the layer and group of its plain-model name, the base's own
    weights unwrap to exactly the plain model's names, and only lora_A / lora_B tensors count as adapters."""
    from peft import LoraConfig, get_peft_model

    plain = _tiny("gemma3").to_empty(device="cpu")
    names = {n for n, _ in plain.named_parameters()}
    wrapped = get_peft_model(plain, LoraConfig(r=2, target_modules=["q_proj", "down_proj"]))
    layers = decoder_layers(wrapped)
    assert layers is plain.model.layers and len(layers) == 3
    owner = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    adapters = []
    for name, p in wrapped.named_parameters():
        assert layer_index(name) == owner.get(id(p)), name
        assert group_of(name, 3, 1, 1) == group_of(unwrapped_name(name), 3, 1, 1), name
        if is_adapter(name):
            adapters.append(name)
            assert ".lora_A." in name or ".lora_B." in name
        else:
            assert unwrapped_name(name) in names, name
    assert len(adapters) == 2 * 2 * 3  # A and B, two projections, three layers
    assert {unwrapped_name(n) for n, _ in wrapped.named_parameters() if not is_adapter(n)} == names
    assert unwrapped_name("base_model.model.model.layers.1.mlp.down_proj.base_layer") == "model.layers.1.mlp.down_proj"
    assert not is_adapter("model.layers.1.mlp.down_proj.weight") and is_adapter("x.q_proj.lora_B.weight")
    # an adapter trains under the strategy that adds it, and is refused by one that adds none
    assert is_trainable("base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight", "lora", 3, 1, 1)
    assert not is_trainable("base_model.model.model.layers.1.self_attn.q_proj.base_layer.weight", "lora", 3, 1, 1)
    assert not is_trainable("base_model.model.model.embed_tokens.weight", "lora", 3, 1, 1)
    with pytest.raises(LayerError, match="adapter tensor, but strategy 'expert' adds no adapter; strategies with "
                                         "one: lora"):
        is_trainable("base_model.model.model.layers.1.self_attn.q_proj.lora_A.default.weight", "expert", 3, 1, 1)


def test_decoder_layers_of_multimodal_gemma3_are_the_text_layers():
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    cfg = Gemma3Config(
        text_config=Gemma3TextConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=8),
        vision_config=SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, image_size=28, patch_size=14),
        mm_tokens_per_image=4, image_token_index=63, boi_token_index=61, eoi_token_index=62)
    with torch.device("meta"):
        model = Gemma3ForConditionalGeneration(cfg)
    assert decoder_layers(model) is model.model.language_model.layers
    groups = {group_of(n, 3, 1, 1) for n, _ in model.named_parameters() if "vision" in n}
    assert groups == {"outside"}


def test_decoder_layers_refuses_unknown_structure():
    with pytest.raises(LayerError, match="found no decoder-layer lists.*LAYER_CONTAINERS"):
        decoder_layers(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_layer_groups_paper_and_tiny_splits():
    g = layer_groups(34, 9, 6)  # paper: 0-8, 9-27, 28-33
    assert (g["first"], g["middle"], g["last"]) == (range(0, 9), range(9, 28), range(28, 34))
    g = layer_groups(12, 3, 2)
    assert [len(r) for r in g.values()] == [3, 7, 2]


@pytest.mark.parametrize("args, message", [
    ((12, 6, 6), r"first=6 \+ last=6 = 12 must be below num_layers=12 .*first \+ last <= 11"),
    ((12, 10, 2), r"first=10 with num_layers=12: allowed 1..10|first=10 \+ last=2"),
    ((12, 0, 2), r"first=0 with num_layers=12: allowed 1..10"),
    ((12, 3, 11), r"last=11 with num_layers=12: allowed 1..10"),
    ((2, 1, 1), r"num_layers=2: need at least 3"),
    ((12, 3.0, 2), r"first must be an integer, got 3.0"),
])
def test_layer_groups_errors_name_values_and_ranges(args, message):
    with pytest.raises(LayerError, match=message):
        layer_groups(*args)


def test_group_of():
    assert group_of("model.embed_tokens.weight", 34, 9, 6) == "outside"
    assert group_of("model.layers.8.mlp.up_proj.weight", 34, 9, 6) == "first"
    assert group_of("model.layers.9.mlp.up_proj.weight", 34, 9, 6) == "middle"
    assert group_of("model.layers.27.mlp.up_proj.weight", 34, 9, 6) == "middle"
    assert group_of("model.layers.28.mlp.up_proj.weight", 34, 9, 6) == "last"
    assert group_of("language_model.model.layers.33.mlp.up_proj.weight", 34, 9, 6) == "last"
    with pytest.raises(LayerError, match="is in layer 34, but the model has 34 layers"):
        group_of("model.layers.34.mlp.up_proj.weight", 34, 9, 6)
    with pytest.raises(LayerError, match="must be below num_layers"):
        group_of("model.norm.weight", 12, 6, 6)  # an outside name still validates the split


def test_every_strategy_has_a_rule_and_groups_match_config():
    assert set(fconfig.STRATEGIES) <= set(RULES)
    assert set(fconfig.TRAINED_STRATEGIES) == {n for n, r in RULES.items() if r.trains}
    assert tuple(fconfig.LAYER_GROUPS) == GROUPS[:3]
    with pytest.raises(LayerError, match="Did you mean 'freeze'"):
        rule_for("freez")


def test_outside_rule_per_strategy():
    emb, mid, first = "model.embed_tokens.weight", "model.layers.5.mlp.up_proj.weight", "model.layers.0.mlp.up.weight"
    # Freezing: only the middle group is frozen; embeddings, norm and head train with the outer layers.
    assert is_trainable(emb, "freeze", 12, 3, 2) and is_trainable(first, "freeze", 12, 3, 2)
    assert not is_trainable(mid, "freeze", 12, 3, 2)
    assert all(is_trainable(n, "dense", 12, 3, 2) for n in (emb, mid, first))
    with pytest.raises(LayerError, match="does not train"):
        is_trainable(emb, "soup", 12, 3, 2)
    # L2-SP: outside parameters take the outside lambda (default 0), not the first group's.
    lam = fconfig.L2SPConfig(first=0.001, middle=0.05, last=0.001)
    assert l2sp_lambda(emb, lam, 12, 3, 2) == 0.0
    assert l2sp_lambda(mid, lam, 12, 3, 2) == 0.05
    assert l2sp_lambda(first, {"first": 1.0, "middle": 2.0, "last": 3.0, "outside": 4.0}, 12, 3, 2) == 1.0
    # Surgery: revert touches the middle only, soup everything, interpolation the named groups.
    assert surgery_groups("expert_reverted") == ("middle",)
    assert "outside" in surgery_groups("soup")
    assert surgery_groups("interpolation", ["last"]) == ("last",)
    with pytest.raises(LayerError, match="group 'outside'"):
        surgery_groups("interpolation", ["outside"])
    with pytest.raises(LayerError, match="needs the layer groups"):
        surgery_groups("interpolation")
    with pytest.raises(LayerError, match="not a post-hoc operation"):
        surgery_groups("freeze")


def test_parameter_counts_and_freeze_fraction_match_a_real_freeze():
    from famlib.models import build_scratch_model

    model = build_scratch_model({"num_hidden_layers": 6}, vocab_size=100, seed=0)
    counts = parameter_counts(model, 2, 1)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())  # tied head counted once
    assert counts["outside"] == 100 * 128 + 128  # embeddings (= head) + final norm
    for name, p in model.named_parameters():
        p.requires_grad_(is_trainable(name, "freeze", 6, 2, 1))
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    expected = trained / sum(p.numel() for p in model.parameters())
    assert trainable_fraction_under_freeze(model.config, 2, 1) == pytest.approx(expected)


def test_gemma3_4b_freeze_fraction_on_meta():
    from famlib.models import gemma3_4b_text_config

    cfg = gemma3_4b_text_config()
    counts = parameter_counts(cfg, 9, 6)
    assert sum(counts.values()) == 3_880_263_168  # Gemma 3 4B text: ~3.88B parameters
    assert counts["outside"] == 262_208 * 2560 + 2560
    assert trainable_fraction_under_freeze(cfg, 9, 6) == pytest.approx(0.538, abs=1e-3)
    # The paper's "~44%" is the decoder-layer share: 15 of 34 identical layers.
    layers = counts["first"] + counts["middle"] + counts["last"]
    assert (counts["first"] + counts["last"]) / layers == pytest.approx(15 / 34)

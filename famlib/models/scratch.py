"""From scratch (smoke, tiny): a ``Gemma3ForCausalLM`` from a ``Gemma3TextConfig``."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Mapping, Optional

from famlib.errors import near
from famlib.models.common import ModelError

if TYPE_CHECKING:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig


# ----------------------------------------------------------------------------------------------------
# From scratch (smoke, tiny)
# ----------------------------------------------------------------------------------------------------
# Defaults of a from-scratch base; params/<scale>.yaml model.architecture overrides any of them. The
# sizes are those of design.md's calibration run (8 layers, hidden 128: ~3M parameters with an 8k vocab).
SCRATCH_DEFAULTS: dict[str, Any] = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 4,
    "num_key_value_heads": 1,
    "head_dim": 32,
    "max_position_embeddings": 1024,
    "sliding_window": 512,  # gemma-3-270m's window; the 5-local : 1-global pattern comes with the config
    "tie_word_embeddings": True,  # as in every Gemma 3
}
# Keyword arguments Gemma3TextConfig still converts although they are not fields (hub configs use them).
_LEGACY_KEYS = ("rope_theta", "rope_local_base_freq", "rope_scaling", "sliding_window_pattern")


def _architecture_keys() -> list[str]:
    from transformers import Gemma3TextConfig, PreTrainedConfig

    generic = {f.name for f in dataclasses.fields(PreTrainedConfig)}
    return [f.name for f in dataclasses.fields(Gemma3TextConfig) if f.name not in generic] + list(_LEGACY_KEYS)


def scratch_config(architecture: Mapping[str, Any], vocab_size: int,
                   special_token_ids: Optional[Mapping[str, int]] = None) -> "Gemma3TextConfig":
    """The ``Gemma3TextConfig`` of a from-scratch model: ``SCRATCH_DEFAULTS`` updated by ``architecture``.

    Args:
        architecture: ``Gemma3TextConfig`` keyword arguments (``params.model.architecture``).
        vocab_size: the trained tokenizer's vocabulary size.
        special_token_ids: ``pad_token_id`` / ``bos_token_id`` / ``eos_token_id`` of that tokenizer
            (Gemma's 0 / 2 / 1 when absent, which famlib's tokenizer uses).

    Raises:
        ModelError: an unknown key (with the known keys and a near match), or a vocab_size conflict.
    """
    from transformers import Gemma3TextConfig

    known = _architecture_keys()
    for key in architecture:
        if key not in known:
            raise ModelError(f"model.architecture.{key}: not a Gemma3TextConfig argument. {near(key, known)} "
                             f"Known: {', '.join(known)}")
    if "vocab_size" in architecture and architecture["vocab_size"] != vocab_size:
        raise ModelError(f"model.architecture.vocab_size={architecture['vocab_size']} but the tokenizer has "
                         f"{vocab_size} tokens; drop vocab_size from the architecture (it comes from the tokenizer)")
    kwargs = {**SCRATCH_DEFAULTS, **architecture, **(special_token_ids or {}), "vocab_size": vocab_size}
    # Gemma 3 scales queries by query_pre_attn_scalar**-0.5, 256 = head_dim in the released models; a small
    # head_dim with the default 256 would silently shrink attention logits, so follow head_dim instead.
    kwargs.setdefault("query_pre_attn_scalar", kwargs["head_dim"])
    return Gemma3TextConfig(**kwargs)


def build_scratch_model(architecture: Mapping[str, Any], vocab_size: int, seed: int, *,
                        special_token_ids: Optional[Mapping[str, int]] = None) -> "Gemma3ForCausalLM":
    """A randomly initialised ``Gemma3ForCausalLM``; the same arguments give the same weights.

    The global torch RNG is left as it was (the init uses a forked generator seeded with ``seed``).
    Raises ModelError as :func:`scratch_config`.
    """
    import torch
    from transformers import Gemma3ForCausalLM

    config = scratch_config(architecture, vocab_size, special_token_ids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Gemma3ForCausalLM(config)
    return model


def gemma3_4b_text_config() -> "Gemma3TextConfig":
    """The text config of ``google/gemma-3-4b-pt`` (its released config.json), for counting without the hub."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        vocab_size=262_208, hidden_size=2560, intermediate_size=10_240, num_hidden_layers=34,
        num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
        hidden_activation="gelu_pytorch_tanh", max_position_embeddings=131_072, rms_norm_eps=1e-6,
        sliding_window=1024, sliding_window_pattern=6, rope_theta=1_000_000.0, rope_local_base_freq=10_000.0,
        rope_scaling={"rope_type": "linear", "factor": 8.0}, tie_word_embeddings=True,
        final_logit_softcapping=None, attn_logit_softcapping=None,
    )

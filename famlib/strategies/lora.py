"""``lora``: LoRA, a baseline beyond the paper (Biderman et al. 2024, "LoRA Learns Less and Forgets Less").

One model per family, trained on the family's data like the Expert, but the base's weights stay frozen and
only low-rank adapters train: on every decoder layer's attention and MLP projections (``lora.targets``,
default q, k, v, o, gate, up, down) a pair ``A`` (rank x in) and ``B`` (out x rank) through the ``peft``
library, so that the layer computes ``W x + (alpha / rank) * B A x``. The settings are the params file's
``lora:`` section (rank, alpha, dropout, targets, and the learning rate, which replaces
``training.family.lr``; every other setting is the family section's).

After training the adapters are merged into the base weights (peft's ``merge_and_unload``), so the saved
model is an ordinary Hugging Face checkpoint of the base's architecture under ``runs/<scale>/models/
lora.<family>/``: evaluation and weight surgery never see an adapter. Tensors no adapter targets (the
embeddings, every norm, the tied head) are bit-identical to the base's. The adapter itself is kept in the
run folder (``runs/<scale>/train/lora.<family>/adapter/``, peft's format: ``PeftModel.from_pretrained(base,
that folder)`` loads it).

Vocabulary trimming (``training.family.trim_vocab``, the small scale) composes with it: the adapters are
added to the trimmed copy, whose layers *are* the full model's tensors (:func:`famlib.vocab.
trimmed_for_training`), and merged before the copy is left, so the merge lands in the full model; the
embedding rows are frozen and go back unchanged.

:func:`adapter_parameters` and :func:`trainable_share` count the adapters on the meta device, for the
README's comparison with Layer Freezing's share. torch and peft are imported inside the functions: the
registry, which config validation and ``famlib plan`` read, imports this module.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from famlib.errors import ConfigError
from famlib.layers import GROUPS, LayerError
from famlib.strategies.spec import Adapter, Strategy

if TYPE_CHECKING:
    import torch.nn as nn

    from famlib.config import LoRAConfig, Params, TrainConfig


def target_modules(model: "nn.Module", targets: Iterable[str]) -> list[str]:
    """The full module names LoRA adapts: each decoder layer's linear projections named in ``targets``.

    Explicit names rather than peft's suffix matching, so that a projection outside the decoder layers (a
    vision tower's ``q_proj``) is never adapted, and a model without one of the projections is refused.

    Raises:
        LayerError: a decoder layer lacks one of the targets (the message lists the linear layers it has).
    """
    import torch.nn as nn

    from famlib.layers import decoder_layers

    layers = decoder_layers(model)
    prefix = next(n for n, m in model.named_modules() if m is layers)
    targets = list(targets)
    found = []
    for i, layer in enumerate(layers):
        linear = {n.rsplit(".", 1)[-1]: n for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
        missing = [t for t in targets if t not in linear]
        if missing:
            raise LayerError(f"decoder layer {i} of {type(model).__name__} has no linear layer {missing[0]!r} "
                             f"(lora.targets); its linear layers: {', '.join(sorted(linear))}")
        found += [f"{prefix}.{i}.{linear[t]}" for t in targets]
    return found


def wrap_model(model: "nn.Module", cfg: "LoRAConfig", seed: int) -> "nn.Module":
    """``model`` with LoRA adapters (a peft ``PeftModelForCausalLM``; the model itself is changed in place).

    ``B`` starts at zero, so the wrapped model computes exactly the base's function at step 0; ``A`` is
    peft's Kaiming-uniform draw, made from a generator seeded with ``seed`` (the global RNG is left as it
    was), so that the same seed gives the same starting point on every call, which a resumed run needs.
    Only the adapters have ``requires_grad`` afterwards.
    """
    import warnings

    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                        target_modules=target_modules(model, cfg.targets), task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft asks the model for transformers' deprecated `is_gradient_checkpointing` (harmless; fixed upstream)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        torch.manual_seed(seed)
        return get_peft_model(model, config)


def merge(wrapped: "nn.Module") -> "nn.Module":
    """Fold every adapter into its base weight (``W + (alpha / rank) * B @ A``) and return the plain model.

    ``safe_merge`` computes each merged weight in a copy and refuses a non-finite one before writing it.
    """
    return wrapped.merge_and_unload(safe_merge=True)


def unload(wrapped: "nn.Module") -> "nn.Module":
    """Remove the adapters without merging (the base weights as they were) and return the plain model."""
    return wrapped.unload()


def save_adapter(wrapped: "nn.Module", path: Any) -> None:
    """Write the adapter in peft's format (``adapter_model.safetensors``, ``adapter_config.json``), atomically.

    Its tensors are named as peft saves them (``base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight``);
    :func:`famlib.layers.layer_index` and :func:`famlib.layers.is_adapter` read those names too.
    """
    from famlib.checkpoint import atomic_directory

    with atomic_directory(Path(path)) as tmp:
        # Not the embeddings: they are frozen, and in a trimmed run (which peft takes for a resized vocabulary
        # and would save) they are the trimmed copy's rows, not the base's table the adapter applies to.
        wrapped.save_pretrained(str(tmp), save_embedding_layers=False)


def _settings(params: "Params") -> "LoRAConfig":
    if params.lora is None:
        raise ConfigError(params.origin, "lora", None, "a 'lora:' section with rank, alpha and lr",
                          "Strategy 'lora' reads it; see params/smoke.yaml for one.")
    return params.lora


def _wrap(params: "Params", model: "nn.Module") -> "nn.Module":
    return wrap_model(model, _settings(params), params.seed)


def _train_config(params: "Params", cfg: "TrainConfig") -> "TrainConfig":
    return dataclasses.replace(cfg, lr=_settings(params).lr)


def adapter_parameters(model_or_config: Any, rank: int, targets: Iterable[str]) -> int:
    """How many parameters LoRA adds: ``rank * (in + out)`` per adapted projection (none is added elsewhere).

    ``model_or_config``: an ``nn.Module`` or a transformers config (built on the meta device, no weights).
    """
    import torch.nn as nn

    from famlib.layers import meta_model

    model = model_or_config if isinstance(model_or_config, nn.Module) else meta_model(model_or_config)
    modules = dict(model.named_modules())
    return sum(rank * (modules[n].in_features + modules[n].out_features) for n in target_modules(model, targets))


def trainable_share(model_or_config: Any, rank: int, targets: Iterable[str]) -> float:
    """LoRA's trainable parameters as a share of the base model's (a tied head counted once)."""
    import torch.nn as nn

    from famlib.layers import meta_model

    model = model_or_config if isinstance(model_or_config, nn.Module) else meta_model(model_or_config)
    return adapter_parameters(model, rank, targets) / sum(p.numel() for p in model.parameters())


LORA = Adapter(name="lora", label="LoRA", sections=("lora",), wrap=_wrap, save=save_adapter, merge=merge,
               unload=unload, train_config=_train_config)

STRATEGY = Strategy(
    name="lora", label="LoRA", title="LoRA (low-rank adapters, merged after training)", per_family=True,
    training="family", data="family", frozen=GROUPS, adapter=LORA,
    outside="frozen, like every base weight: only the adapters in the decoder layers train, and the embeddings, "
            "final norm and tied head stay bit-identical to the base",
    compare_with=("expert", "freeze"), color="#DA8BC3", marker="8",
)

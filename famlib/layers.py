"""Decoder layers, layer groups, and how each strategy treats every parameter.

One parser, :func:`layer_index`, maps a transformers tensor name to its decoder layer; :func:`group_of`
puts it in ``first`` (layers 0..m-1), ``middle``, ``last`` (the final n layers) or ``outside`` (not in a
decoder layer: token embeddings, the final norm, the output head, a vision tower). The rest of famlib
asks this module and never parses names itself.

Names of a model wrapped by ``peft`` (LoRA) are parsed the same way: peft puts the model under
``base_model.model.`` and a targeted linear layer's own weight under ``.base_layer``, and adds its adapter
tensors beside it (``base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight``; in a saved
adapter file without the adapter's name, ``...q_proj.lora_A.weight``). :func:`unwrapped_name` strips the
wrapping, so that an adapter tensor belongs to the layer (and group) of the weight it adapts, and
:func:`is_adapter` tells adapter tensors from the base model's.

The rule for parameters outside the decoder layers (embeddings, final norm, tied output head), by
strategy; :func:`famlib.strategies.rules.rule_for` returns it as data and that module applies it. Each strategy declares its
row in its own module under :mod:`famlib.strategies` (``frozen``, ``regulariser``, ``surgery_groups``,
``outside``); this list is what the built-in ones declare:

- ``dense``, ``expert``: everything trains.
- ``freeze`` (Layer Freezing): only the middle group is frozen; the outside parameters train, like the
  first and last groups. The paper freezes "the middle layers" and lets "the first m and last n layers
  receive gradient updates"; the embedding table is the input of the first layers and, tied, the output
  of the last ones, so it belongs with the outer layers, and freezing it would also stop the model from
  adapting its (shared) vocabulary to the new languages, which the paper does not ask for. The norm
  and head follow the last layers. Consequence: on Gemma 3 4B with m=9, n=6, 54% of the parameters train,
  not the paper's "~44%", which is the share of decoder-layer parameters (15 of 34 equal layers; see
  :func:`trainable_fraction_under_freeze`).
- ``lora`` (LoRA, a baseline beyond the paper): every base parameter is frozen, outside ones included
  (the embeddings, final norm and tied head keep the base's values bit for bit); only the adapters train,
  which sit in the decoder layers and so belong to the first, middle or last group of the layer they adapt.
  After training they are merged into the base weights (:mod:`famlib.strategies.lora`).
- ``freeze_first_block``, ``freeze_last_block`` (the which-block control, beyond the paper): a contiguous
  block of as many layers as the middle group (L - m - n) is frozen at the start (layers 0..L-m-n-1) or at
  the end (layers m+n..L-1) instead (:func:`frozen_block_layers`); outside parameters train, as under
  ``freeze``, so that the position of the frozen block is the only difference.
- ``replay``: everything trains (its difference is the data).
- ``l2sp`` (Layer-Range L2-SP): outside parameters get the ``outside`` lambda of ``L2SPConfig``
  (default 0: not anchored, as in the paper's formula, a sum over decoder layers). The authors' code gives
  them the first group's lambda; ``outside: first`` does the same (params/paper.yaml), a number sets
  any other strength.
- ``dense_reverted``, ``expert_reverted`` (Train-then-Revert): only the middle group is reset to the
  base; outside parameters keep their tuned values, like the first and last groups.
- ``interpolation`` (section 4.1): only the named group(s) move between base and tuned; outside
  parameters keep their tuned (Dense) values (the surgery method moves them too only when asked,
  ``outside=True``, which is what ``wise_ft`` does).
- ``wise_ft`` (whole-model interpolation, beyond the paper): every parameter, outside ones included, moves
  the same fraction alpha from the base to the Expert (WiSE-FT).
- ``soup``, ``freeze_soup``: every parameter, outside ones included, is averaged.
- ``base``: nothing changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Optional

from famlib.errors import FamlibError, near, one_of

if TYPE_CHECKING:  # heavy imports stay lazy: the config layer imports this module's names too
    import torch.nn as nn

Group = Literal["first", "middle", "last", "outside"]
LAYER_GROUPS: tuple[str, ...] = ("first", "middle", "last")
OUTSIDE = "outside"
GROUPS: tuple[str, ...] = (*LAYER_GROUPS, OUTSIDE)


class LayerError(FamlibError, ValueError):
    """A layer split, layer name or model structure that does not fit."""


# ----------------------------------------------------------------------------------------------------
# Which layer is this tensor in
# ----------------------------------------------------------------------------------------------------
# Where each supported family keeps its decoder layers (the ModuleList's dotted name). This table is the
# only per-model knowledge in famlib; add a row to support another family.
LAYER_CONTAINERS: tuple[str, ...] = (
    "model.layers",  # Gemma3ForCausalLM, Llama, Qwen2, Mistral (CausalLM wrappers)
    "model.language_model.layers",  # Gemma3ForConditionalGeneration, transformers >= 4.52
    "language_model.model.layers",  # Gemma 3 multimodal checkpoints as released on the hub
    "language_model.layers",  # Gemma3Model (the multimodal backbone without its head)
    "layers",  # bare text backbones: Gemma3TextModel, LlamaModel, Qwen2Model
    "transformer.h",  # GPT2LMHeadModel
    "h",  # GPT2Model
)
_LAYER_RE = re.compile(r"^(?:%s)\.(\d+)(?:\.|$)" % "|".join(re.escape(c) for c in LAYER_CONTAINERS))

# peft's wrapping: PeftModel.base_model (the tuner) holds the transformers model as .model; a targeted layer
# keeps its original module as .base_layer; adapter tensors are lora_A / lora_B (linear layers) and
# lora_embedding_A / _B (embeddings), followed by the adapter's name in a live model (".default").
ADAPTER_PREFIX = "base_model.model."
_BASE_LAYER = ".base_layer"
_ADAPTER_RE = re.compile(r"\.lora_(?:A|B|embedding_A|embedding_B|magnitude_vector)(?:\.|$)")


def unwrapped_name(name: str) -> str:
    """The transformers name under peft's wrapping: ``base_model.model.`` and ``.base_layer`` removed.

    ``base_model.model.model.layers.3.self_attn.q_proj.base_layer.weight`` -> ``model.layers.3.self_attn.
    q_proj.weight`` (the weight of the plain model); an adapter tensor keeps its ``lora_A...`` tail
    (``model.layers.3.self_attn.q_proj.lora_A.default.weight``). A plain name is returned as it is.
    """
    if name.startswith(ADAPTER_PREFIX):
        name = name[len(ADAPTER_PREFIX):]
    return name.replace(_BASE_LAYER + ".", ".") if _BASE_LAYER + "." in name else name.removesuffix(_BASE_LAYER)


def is_adapter(name: str) -> bool:
    """Whether a parameter name is an adapter tensor added by peft (LoRA's ``lora_A`` / ``lora_B``), not a
    parameter of the base model."""
    return _ADAPTER_RE.search(name) is not None


def layer_index(name: str) -> Optional[int]:
    """Decoder layer of a parameter or module name, or None outside the decoder layers.

    ``model.layers.3.mlp.up_proj.weight`` -> 3, ``model.language_model.layers.3...`` -> 3,
    ``transformer.h.3.attn.c_attn.weight`` -> 3; ``model.embed_tokens.weight`` and a vision tower's
    ``model.vision_tower.vision_model.encoder.layers.3...`` -> None. Under peft's wrapping,
    ``base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight`` -> 3 and
    ``base_model.model.model.embed_tokens.weight`` -> None (see :func:`unwrapped_name`).
    """
    m = _LAYER_RE.match(unwrapped_name(name))
    return int(m.group(1)) if m else None


def decoder_layers(model: "nn.Module") -> "nn.ModuleList":
    """The ModuleList holding the decoder layers of a supported model (see ``LAYER_CONTAINERS``).

    Raises:
        LayerError: no (or more than one) module list at a known place.
    """
    import torch.nn as nn

    found = [(n, m) for n, m in model.named_modules()
             if unwrapped_name(n) in LAYER_CONTAINERS and isinstance(m, nn.ModuleList)]
    if len(found) != 1:
        what = "no" if not found else f"{len(found)} ({', '.join(n for n, _ in found)})"
        raise LayerError(
            f"{type(model).__name__}: found {what} decoder-layer lists; expected exactly one nn.ModuleList "
            f"named one of {', '.join(LAYER_CONTAINERS)}. Add this family's path to famlib.layers.LAYER_CONTAINERS."
        )
    return found[0][1]


def check_num_layers(model: "nn.Module", num_layers: int, source: str = "model.num_layers") -> None:
    """Raise LayerError unless the model has ``num_layers`` decoder layers (the params file's claim)."""
    actual = len(decoder_layers(model))
    if actual != num_layers:
        raise LayerError(f"{source} is {num_layers} but {type(model).__name__} has {actual} decoder layers; "
                         f"set {source}: {actual} (and rescale layers.first / layers.last).")


# ----------------------------------------------------------------------------------------------------
# Layer groups
# ----------------------------------------------------------------------------------------------------
def layer_groups(num_layers: int, first: int, last: int) -> dict[str, range]:
    """The first m, middle and last n decoder layers: ``{"first": range, "middle": range, "last": range}``.

    Raises:
        LayerError: a value is not an integer, ``first`` or ``last`` is below 1, or ``first + last``
            leaves no middle layer.
    """
    for key, v in (("num_layers", num_layers), ("first", first), ("last", last)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise LayerError(f"{key} must be an integer, got {v!r}")
    if num_layers < 3:
        raise LayerError(f"num_layers={num_layers}: need at least 3 layers for first, middle and last groups")
    for key, v in (("first", first), ("last", last)):
        if not 1 <= v <= num_layers - 2:
            raise LayerError(f"{key}={v} with num_layers={num_layers}: allowed 1..{num_layers - 2}")
    if first + last >= num_layers:
        raise LayerError(f"first={first} + last={last} = {first + last} must be below num_layers={num_layers} "
                         f"so that the middle group is not empty (allowed: first + last <= {num_layers - 1})")
    return {"first": range(0, first), "middle": range(first, num_layers - last),
            "last": range(num_layers - last, num_layers)}


def group_of_layer(index: int, num_layers: int, first: int, last: int) -> str:
    """``first``, ``middle`` or ``last`` for a decoder layer index. Raises LayerError if out of range."""
    if not 0 <= index < num_layers:
        raise LayerError(f"layer {index} is outside a model of {num_layers} layers (allowed 0..{num_layers - 1})")
    groups = layer_groups(num_layers, first, last)
    return next(g for g, r in groups.items() if index in r)


BLOCK_POSITIONS: tuple[str, ...] = ("start", "end")


def frozen_block_layers(position: str, num_layers: int, first: int, last: int) -> range:
    """The decoder layers of a block as large as the middle group (L - m - n layers), at the start or the end.

    The which-block control freezes this block instead of the middle group, so that "the middle layers
    matter" is measured against a block of the same size elsewhere: with L=34, m=9, n=6 the start block is
    layers 0..18 and the end block 15..33 (the middle group is 9..27).

    Raises:
        LayerError: the split is invalid, or ``position`` is not ``start`` or ``end``.
    """
    size = len(layer_groups(num_layers, first, last)["middle"])
    if position == "start":
        return range(0, size)
    if position == "end":
        return range(num_layers - size, num_layers)
    raise LayerError(f"frozen block position {position!r}: allowed {one_of(BLOCK_POSITIONS)}. "
                     f"{near(str(position), BLOCK_POSITIONS)}".rstrip())


def group_of(name: str, num_layers: int, first: int, last: int) -> str:
    """``first``, ``middle``, ``last`` or ``outside`` for a parameter name.

    Raises:
        LayerError: the split is invalid, or the name's layer index does not exist in ``num_layers``.
    """
    i = layer_index(name)
    if i is None:
        layer_groups(num_layers, first, last)  # validate the split even for outside names
        return OUTSIDE
    if i >= num_layers:
        raise LayerError(f"{name!r} is in layer {i}, but the model has {num_layers} layers (0..{num_layers - 1}); "
                         "is model.num_layers right for this checkpoint?")
    return group_of_layer(i, num_layers, first, last)


def groups_of(names: Iterable[str], num_layers: int, first: int, last: int) -> dict[str, str]:
    """``{name: group}`` for many names (one validation of the split)."""
    layer_groups(num_layers, first, last)
    return {n: group_of(n, num_layers, first, last) for n in names}


# ----------------------------------------------------------------------------------------------------
# The rule: how each strategy treats each group
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StrategyRule:
    """How one strategy (or the interpolation analysis) treats the four groups.

    ``trains``: an optimiser runs. ``frozen``: groups with ``requires_grad=False``. ``frozen_block``: also
    frozen, the block of :func:`frozen_block_layers` at this position (``start`` or ``end``). ``l2sp``: drift is
    penalised with ``L2SPConfig.<group>``. ``surgery``: the post-hoc method of :mod:`famlib.surgery.registry`
    applied to saved models, and ``surgery_groups`` the groups it changes (``None``: the groups named at call
    time, never outside). ``adapter``: the kind of adapter added before training (``"lora"``), whose tensors
    train whatever their group; the base's own parameters train unless their group is frozen. ``outside``
    says in words what happens to embeddings, final norm and tied head.

    A strategy's rule is declared by its entry in :mod:`famlib.strategies.registry` (``Strategy.rule``);
    only the analysis below, which is not a strategy, is declared here.
    """

    name: str
    trains: bool
    outside: str
    frozen: tuple[str, ...] = ()
    frozen_block: Optional[str] = None
    l2sp: bool = False
    surgery: Optional[str] = None
    surgery_groups: Optional[tuple[str, ...]] = ()
    adapter: Optional[str] = None


def l2sp_lambda(name: str, lambdas: Any, num_layers: int, first: int, last: int) -> float:
    """The L2-SP strength of a parameter: ``lambdas.of(<group>)`` of an ``L2SPConfig`` (or a mapping's value)."""
    group = group_of(name, num_layers, first, last)
    return float(lambdas[group]) if isinstance(lambdas, Mapping) else lambdas.of(group)


# ----------------------------------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------------------------------
def meta_model(config: Any) -> "nn.Module":
    """A causal LM built from a transformers config on the meta device: shapes, no memory, no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    # The meta device context rather than accelerate's init_empty_weights: the latter re-registers each
    # parameter and so unties a tied head, which would count the embedding matrix twice.
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def parameter_counts(model_or_config: Any, first: int, last: int, num_layers: int | None = None) -> dict[str, int]:
    """Parameters per group (``first``, ``middle``, ``last``, ``outside``); a tied head counts once.

    Args:
        model_or_config: an ``nn.Module`` or a transformers config (built on the meta device).
        first, last: m and n.
        num_layers: defaults to the model's own number of decoder layers.
    """
    import torch.nn as nn

    model = model_or_config if isinstance(model_or_config, nn.Module) else meta_model(model_or_config)
    L = len(decoder_layers(model)) if num_layers is None else num_layers
    counts = dict.fromkeys(GROUPS, 0)
    # named_parameters() yields each tensor once, so a head tied to the embeddings is not counted twice.
    for name, p in model.named_parameters():
        counts[group_of(name, L, first, last)] += p.numel()
    return counts

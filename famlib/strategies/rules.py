"""How each strategy treats every parameter: its layer rule, looked up by name and applied.

The rule's shape (:class:`famlib.layers.StrategyRule`) and the layer groups live in :mod:`famlib.layers`;
which rule a name has is the registry's (:mod:`famlib.strategies.registry`, each strategy declares
its own). This module joins the two, so that ``famlib.layers`` never imports the registry (whose strategy
modules import ``famlib.layers``). The built-in rules are listed in :mod:`famlib.layers`' docstring.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from famlib.errors import near, one_of
from famlib.layers import (LAYER_GROUPS, LayerError, StrategyRule, frozen_block_layers, group_of, is_adapter,
                           layer_index, parameter_counts)
from famlib.strategies.registry import get, is_known, strategies

__all__ = ["ANALYSES", "is_trainable", "rule_for", "rules", "surgery_groups", "trainable_fraction_under_freeze"]


ANALYSES: dict[str, StrategyRule] = {r.name: r for r in (
    StrategyRule("interpolation", trains=False, surgery="interpolate", surgery_groups=None,
                 outside="keeps the tuned (Dense) values; only the named layer groups are interpolated"),
)}


def rules() -> dict[str, StrategyRule]:
    """``{name: rule}`` of every registered strategy (registry order) and of the interpolation analysis."""
    return {**{s.name: s.rule for s in strategies()}, **ANALYSES}


def __getattr__(name: str):
    if name == "RULES":  # the rule table as it was before strategies became a registry, now derived from it
        return rules()
    raise AttributeError(f"module 'famlib.strategies.rules' has no attribute {name!r}")


def rule_for(strategy: str) -> StrategyRule:
    """The rule of a strategy id (or ``interpolation``). Raises LayerError naming the known ids."""
    if strategy in ANALYSES:
        return ANALYSES[strategy]
    if not is_known(strategy):
        known = rules()
        raise LayerError(f"no layer rule for strategy {strategy!r}; {one_of(known)}. {near(strategy, known)}".rstrip())
    return get(strategy).rule


def is_trainable(name: str, strategy: str, num_layers: int, first: int, last: int) -> bool:
    """Whether a parameter receives gradient updates under a training strategy.

    An adapter tensor (:func:`is_adapter`) trains under a strategy with an adapter, and under no other;
    every other parameter trains unless its group is frozen.

    Raises:
        LayerError: unknown strategy, a strategy that does not train, an adapter tensor under a strategy
            without an adapter, or a bad split.
    """
    rule = rule_for(strategy)
    if not rule.trains:
        raise LayerError(f"strategy {strategy!r} does not train; training strategies: "
                         f"{', '.join(r.name for r in rules().values() if r.trains)}")
    group = group_of(name, num_layers, first, last)  # also validates the split and the layer index
    if is_adapter(name):
        if rule.adapter is None:
            with_one = [r.name for r in rules().values() if r.adapter]
            raise LayerError(f"{name!r} is an adapter tensor, but strategy {strategy!r} adds no adapter; "
                             f"strategies with one: {', '.join(with_one) or 'none'}")
        return True
    if group in rule.frozen:
        return False
    if rule.frozen_block is not None:
        i = layer_index(name)  # outside parameters train, as under Layer Freezing
        return i is None or i not in frozen_block_layers(rule.frozen_block, num_layers, first, last)
    return True


def surgery_groups(strategy: str, groups: Optional[Iterable[str]] = None) -> tuple[str, ...]:
    """The groups a post-hoc operation changes; the others keep the tuned model's values.

    Args:
        strategy: ``dense_reverted``, ``expert_reverted``, ``soup``, ``freeze_soup`` or ``interpolation``.
        groups: for ``interpolation`` only, the layer groups to interpolate (``outside`` is not allowed).

    Raises:
        LayerError: not a surgery, groups given where the rule fixes them, or an unknown group.
    """
    rule = rule_for(strategy)
    if rule.surgery is None:
        raise LayerError(f"{strategy!r} is not a post-hoc operation; "
                         f"{one_of(r.name for r in rules().values() if r.surgery)}")
    if rule.surgery_groups is not None:
        if groups is not None and tuple(groups) != rule.surgery_groups:
            raise LayerError(f"{strategy!r} always changes {list(rule.surgery_groups)}; got groups={list(groups)}")
        return rule.surgery_groups
    chosen = tuple(groups or ())
    if not chosen:
        raise LayerError(f"{strategy!r} needs the layer groups to change: some of {list(LAYER_GROUPS)}")
    for g in chosen:
        if g not in LAYER_GROUPS:
            raise LayerError(f"{strategy!r} group {g!r}: allowed {one_of(LAYER_GROUPS)}. {near(g, LAYER_GROUPS)}")
    return chosen


def trainable_fraction_under_freeze(model_or_config: Any, first: int, last: int) -> float:
    """Share of parameters that train under Layer Freezing (famlib's rule: outside parameters train).

    Computed on the meta device from a config, without weights. For Gemma 3 4B (text) with m=9, n=6 it
    is 0.538; the share of decoder-layer parameters alone (embeddings not counted) is 15/34 = 0.441,
    the paper's "~44%".
    """
    counts = parameter_counts(model_or_config, first, last)
    rule = rule_for("freeze")
    trainable = sum(c for g, c in counts.items() if g not in rule.frozen)
    return trainable / sum(counts.values())

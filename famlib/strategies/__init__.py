"""Training strategies as a registry: one small module per strategy, looked up by name.

* :mod:`~famlib.strategies.spec`: what a strategy declares (:class:`Strategy`: label, one model per family
  or one for all, the params training section, the data, the frozen layer groups, the regulariser; for a
  post-hoc strategy the surgery method and the strategy it is made from).
* :mod:`~famlib.strategies.registry`: the registered strategies (``register``, ``get``, ``names``, ...),
  which everything that lists strategies asks; ``famlib strategies`` prints them.
* One module each: :mod:`~famlib.strategies.base` (the reference), :mod:`~famlib.strategies.dense`,
  :mod:`~famlib.strategies.expert`, :mod:`~famlib.strategies.freeze`, :mod:`~famlib.strategies.l2sp`
  (with :class:`LayerRangeL2SP`) and :mod:`~famlib.strategies.posthoc` (reverts and soups); beyond the paper,
  :mod:`~famlib.strategies.lora` (peft's LoRA, merged after training), :mod:`~famlib.strategies.replay`,
  :mod:`~famlib.strategies.freeze_block` (the which-block control) and :mod:`~famlib.strategies.wise_ft`
  (whole-model interpolation toward the base).
* :mod:`~famlib.strategies.training`: :func:`train_strategy` runs one (strategy, family) job end to end,
  :func:`apply_strategy` applies the layer rule and builds the regulariser, :func:`job_key` is its cache key.

Importing this package does not import torch (import :mod:`famlib.strategies.training` for the training
functions), so config validation and ``famlib plan`` stay fast.
"""

from __future__ import annotations

from famlib.strategies.l2sp import LayerRangeL2SP
from famlib.strategies.registry import (LABELS, enabled, get, is_known, label, names, paper_names, per_family_names,
                                        register, rows, strategies, table_text, unregister)
from famlib.strategies.rules import is_trainable, rule_for
from famlib.strategies.spec import Adapter, Regulariser, Strategy, StrategyError

__all__ = ["Adapter", "LABELS", "LayerRangeL2SP", "Regulariser", "Strategy", "StrategyError", "enabled", "get", "is_known",
           "is_trainable", "label", "rule_for", "names", "paper_names", "per_family_names", "register", "rows", "strategies", "table_text",
           "unregister"]

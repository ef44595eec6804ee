"""Train-then-Revert: the named layer groups take the base weights, everything else keeps the tuned ones.

Dense-Reverted and Expert-Reverted (paper section 3.2) revert the middle group, the groups
``famlib.strategies.rules.surgery_groups('expert_reverted')`` returns; other groups can be named. Outside
parameters (embeddings, final norm, untied head) are never reverted: they keep the tuned values, as
the rule in :mod:`famlib.layers` says for every revert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional

from famlib.strategies.rules import surgery_groups
from famlib.surgery.base import Load, SurgeryMethod
from famlib.surgery.checks import check_layer_groups

if TYPE_CHECKING:
    import torch

TUNED, BASE = 0, 1


def revert_state_dict(tuned: Mapping[str, "torch.Tensor"], base: Mapping[str, "torch.Tensor"],
                      groups_of: Mapping[str, str], groups: tuple[str, ...]) -> dict[str, "torch.Tensor"]:
    """``{name: base[name] if groups_of[name] in groups else tuned[name]}`` (the tensors themselves, not copies)."""
    return {n: (base[n] if groups_of[n] in groups else tuned[n]) for n in tuned}


class Revert(SurgeryMethod):
    name = "revert"
    summary = "reset the named layer groups to the base model (Train-then-Revert)"
    roles = ("tuned", "base")
    reference_role = "tuned"
    option_names = ("groups",)

    def options(self, n: int, groups: Optional[Any] = None, **extra: Any) -> dict[str, Any]:
        self._unknown(extra)
        self.check_count(n)
        # Default: the paper's Train-then-Revert group, asked from the one rule in famlib.layers.
        chosen = surgery_groups("expert_reverted") if groups is None else check_layer_groups(groups, self.name)
        return {"groups": list(chosen)}

    def changed_groups(self, opts: dict[str, Any]) -> tuple[str, ...]:
        return tuple(opts["groups"])

    def tensor(self, name: str, group: Optional[str], load: Load, opts: dict[str, Any]) -> "torch.Tensor":
        return load(BASE) if group in opts["groups"] else load(TUNED)  # only the needed copy is read

"""Layer interpolation (paper section 4.1): move named groups between the base and the tuned model.

``theta_G(alpha) = theta_G^0 + alpha (theta_G^tuned - theta_G^0)`` for the groups G named, every other
tensor (outside ones included, ``famlib.strategies.rules.rule_for('interpolation')``) at its tuned value. alpha 0
gives the base group, 1 the tuned group, both bit for bit.

With ``outside=True`` the tensors outside the decoder layers (embeddings, final norm, untied head) move by
the same alpha too; with every layer group named, that is whole-model interpolation toward the base (WiSE-FT,
Wortsman et al. 2022), the ``wise_ft`` strategy: one alpha for every parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from famlib.layers import OUTSIDE
from famlib.strategies.rules import surgery_groups
from famlib.surgery.base import Load, SurgeryMethod, compute_dtype, require_equal
from famlib.surgery.checks import check_alpha, check_layer_groups
from famlib.surgery.errors import SurgeryError

if TYPE_CHECKING:
    import torch

BASE, TUNED = 0, 1


def interpolate_tensor(base: "torch.Tensor", tuned: "torch.Tensor", alpha: float) -> "torch.Tensor":
    """``base + alpha (tuned - base)`` computed in float32, returned in the inputs' dtype.

    Evaluated as ``(1 - alpha) base + alpha tuned``, which is the same value with one rounding fewer at
    the ends; alpha 0 and 1 return the endpoints themselves, so they are exact whatever the values.
    """
    if alpha == 0:
        return base
    if alpha == 1:
        return tuned
    acc = compute_dtype(base.dtype)
    out = tuned.to(acc, copy=True).mul_(alpha)
    out.add_(base.to(acc), alpha=1 - alpha)
    return out.to(base.dtype)


class Interpolate(SurgeryMethod):
    name = "interpolate"
    summary = "move the named layer groups a fraction alpha from the base to the tuned model (section 4.1)"
    roles = ("base", "tuned")
    reference_role = "tuned"
    option_names = ("groups", "alpha", "allow_extrapolation", "outside")

    def options(self, n: int, groups: Any = None, alpha: Any = None, allow_extrapolation: bool = False,
                outside: bool = False, **extra: Any) -> dict[str, Any]:
        self._unknown(extra)
        self.check_count(n)
        if alpha is None:
            raise SurgeryError("interpolate needs alpha (0 = base group, 1 = tuned group)")
        if not isinstance(outside, bool):
            raise SurgeryError(f"interpolate: outside={outside!r}; expected true or false (whether the embeddings, "
                               "final norm and untied head move by alpha too)")
        a = check_alpha(alpha, allow_extrapolation)
        chosen = check_layer_groups(groups, self.name)
        surgery_groups("interpolation", chosen)  # the rule's own check: layer groups only, never outside
        opts = {"groups": list(chosen), "alpha": a, "allow_extrapolation": bool(allow_extrapolation)}
        if outside:  # recorded only when set, so that the keys of every layer interpolation made before stay
            opts["outside"] = True
        return opts

    def changed_groups(self, opts: dict[str, Any]) -> tuple[str, ...]:
        return (*opts["groups"], *((OUTSIDE,) if opts.get("outside") else ()))

    def tensor(self, name: str, group: Optional[str], load: Load, opts: dict[str, Any]) -> "torch.Tensor":
        alpha = opts["alpha"]
        if group not in self.changed_groups(opts) or alpha == 1:
            return load(TUNED)
        if alpha == 0:
            return load(BASE)
        base, tuned = load(BASE), load(TUNED)
        if not base.is_floating_point():
            return require_equal(name, [base, tuned], list(self.roles), self.name)
        return interpolate_tensor(base, tuned, alpha)


"""``wise_ft``: whole-model interpolation of each Family Expert toward the base (WiSE-FT; beyond the paper).

``theta = (1 - alpha) theta_base + alpha theta_expert`` for every parameter, the embeddings, final norm and
tied head included, with one ``alpha`` (params ``wise_ft.alpha``, default 0.5) for all of them (Wortsman
et al. 2022, "Robust fine-tuning of zero-shot models"). It is the post-hoc comparison for Train-then-Revert:
Expert-Reverted moves only the middle group, and all the way back; this moves every group part of the way.
Made from the Expert, like Expert-Reverted, so that the two differ only in the surgery (a Dense variant is
one more entry: ``source="dense", per_family=False``). Built by :mod:`famlib.surgery.posthoc` through the
surgery registry's ``interpolate`` method with ``outside=True``.
"""

from famlib.layers import GROUPS
from famlib.strategies.spec import Strategy


def options(params) -> dict:
    """The interpolation weight of ``params`` (``wise_ft.alpha``, validated in [0, 1] when params load)."""
    return {"alpha": params.wise_ft.alpha}


STRATEGY = Strategy(
    name="wise_ft", label="WiSE-FT", title="Expert interpolated toward the base, every parameter (WiSE-FT)",
    per_family=True, surgery="interpolate", source="expert", surgery_groups=GROUPS, surgery_options=options,
    outside="interpolated by the same alpha as every layer",
    compare_with=("expert", "expert_reverted"), color="#B07AA1", marker="p",
)

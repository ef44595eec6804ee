"""The post-hoc strategies: weight surgery on trained models, no training (paper section 3.2).

Each names a method of :mod:`famlib.surgery.registry` and the strategy whose models it is made from;
:func:`famlib.surgery.posthoc.posthoc_jobs` turns that into the input model ids of a scale:

* ``revert``: ``<source>`` (or ``<source>.<family>``, one per family) with ``surgery_groups`` reset to the base;
* ``soup``: the uniform average of every ``<source>.<family>``.
"""

from famlib.layers import GROUPS
from famlib.strategies.spec import Strategy

DENSE_REVERTED = Strategy(
    name="dense_reverted", label="D.-Rev.", title="Dense-Reverted (Train-then-Revert)", per_family=False,
    surgery="revert", source="dense", surgery_groups=("middle",),
    outside="keeps the tuned (Dense) values; only the middle group is reset to the base",
    paper=True, default=True, color="#E99A9C", marker="v",
)
EXPERT_REVERTED = Strategy(
    name="expert_reverted", label="E.-Rev.", title="Expert-Reverted (Train-then-Revert)", per_family=True,
    surgery="revert", source="expert", surgery_groups=("middle",),
    outside="keeps the tuned (Expert) values; only the middle group is reset to the base",
    paper=True, default=True, color="#F2C19E", marker="P",
)
SOUP = Strategy(
    name="soup", label="Soup", title="Expert Soup (uniform average of the family experts)", per_family=False,
    surgery="soup", source="expert", surgery_groups=GROUPS, outside="averaged with everything else",
    paper=True, default=True, color="#8172B2", marker="*",
)
FREEZE_SOUP = Strategy(
    name="freeze_soup", label="Freeze soup", title="the freeze soup (average of the Freeze experts; appendix)",
    per_family=False, surgery="soup", source="freeze", surgery_groups=GROUPS, outside="averaged with everything else",
    paper=True, default=True, color="#64B5CD", marker="X",
)
STRATEGIES = (DENSE_REVERTED, EXPERT_REVERTED, SOUP, FREEZE_SOUP)

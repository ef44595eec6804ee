"""``freeze``: Layer Freezing, one model per family with the middle layer group frozen (paper section 3.2).

The group is frozen before the optimiser is built (no gradients, no optimiser state for it). The embeddings,
final norm and tied head train with the outer layers: see :mod:`famlib.layers` for why.
"""

from famlib.strategies.spec import Strategy

STRATEGY = Strategy(
    name="freeze", label="Freeze", title="Layer Freezing", per_family=True, training="family", data="family",
    frozen=("middle",), outside="trainable, like the first and last groups (only the middle group is frozen)",
    paper=True, default=True, color="#4C72B0", marker="^",
)

"""``expert``: the Family Expert, one model per family, everything trains, no regulariser (paper section 3.2)."""

from famlib.strategies.spec import Strategy

STRATEGY = Strategy(
    name="expert", label="Expert", title="Family Expert", per_family=True, training="family", data="family",
    outside="trainable, like every layer", role="baseline", paper=True, default=True,
    color="#DD8452", marker="s",
)

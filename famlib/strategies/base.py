"""``base``: the base model itself, unchanged; the reference every other model is read against."""

from famlib.strategies.spec import Strategy

STRATEGY = Strategy(
    name="base", label="Base", title="the base model (no CPT)", per_family=False,
    outside="unchanged (the base itself)", role="reference", paper=True, default=True,
    color="#8C8C8C", marker="h",
)

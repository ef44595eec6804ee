"""``dense``: Dense CPT, one model trained on every family's languages at once (paper section 3.2)."""

from famlib.strategies.spec import Strategy

STRATEGY = Strategy(
    name="dense", label="Dense", title="Dense CPT", per_family=False, training="dense", data="dense",
    outside="trainable, like every layer", role="baseline", paper=True, default=True,
    color="#C44E52", marker="o",
)

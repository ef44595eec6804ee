"""``freeze_first_block``, ``freeze_last_block``: the which-block control for Layer Freezing (beyond the paper).

Layer Freezing keeps the middle group (L - m - n layers) at the base and reads the result as "the middle
layers hold what CPT would otherwise erase". These two freeze a block of the same size at the start
(layers 0..L-m-n-1) or at the end (layers m+n..L-1) of the stack instead, with everything else as under
``freeze`` (the family's data and settings, the embeddings, final norm and tied head trainable), so that the
position of the frozen block is the only difference and the claim becomes a measured one. The block is
:func:`famlib.layers.frozen_block_layers`; the layer rule lives there.
"""

from famlib.strategies.spec import Strategy

_COMMON = dict(per_family=True, training="family", data="family",
               outside="trainable, like the unfrozen layers (as under Layer Freezing)", compare_with=("freeze",))

FIRST = Strategy(
    name="freeze_first_block", label="Freeze start", frozen_block="start",
    title="Layer Freezing of the first L-m-n layers (which-block control)", color="#8FAADC", marker="<", **_COMMON,
)
LAST = Strategy(
    name="freeze_last_block", label="Freeze end", frozen_block="end",
    title="Layer Freezing of the last L-m-n layers (which-block control)", color="#1F3A68", marker=">", **_COMMON,
)
STRATEGIES = (FIRST, LAST)

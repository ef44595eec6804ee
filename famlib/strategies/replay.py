"""``replay``: the Family Expert trained on its family's text mixed with English from the train split.

Replay of the base's own kind of data is the continual-pretraining literature's standard defence against
forgetting (Ibrahim et al. 2024, "Simple and Scalable Strategies to Continually Pre-train LLMs"); the paper
does not report it, so it is a baseline beyond the paper (``paper=False``: it cannot change a claim's
verdict). ``replay.share`` of the training set's rows are the probe language's (English) train-split text,
in place of as much of the family's text: the same token budget as the Expert, so the two differ only in
what the tokens are (:func:`famlib.data.tokens.build_cpt_set`). The validation set is the Expert's (the
family's languages), so early stopping reads the same loss. Every parameter trains.
"""

from famlib.strategies.spec import Strategy

STRATEGY = Strategy(
    name="replay", label="Replay", title="Family Expert with English replay (Ibrahim et al. 2024)", per_family=True,
    training="family", data="family", replay=True, outside="trainable, like every layer", compare_with=("expert",),
    color="#CCB974", marker="d",
)

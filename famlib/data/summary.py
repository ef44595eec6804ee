"""Tables about the corpus that notebook 01 shows (kept here so the notebook stays thin). The split check
and the example units are the corpus's own (:class:`famlib.data.interface.Corpus`)."""

from __future__ import annotations

from famlib.config import Params
from famlib.data.tokens import cpt_budget


def corpus_table(stats):
    """Units, words and MB per family, role and language, one column group per split."""
    t = stats.groupby(["family", "role", "language", "split"])[["units", "words", "bytes"]].sum().unstack("split", fill_value=0)
    t = t.rename(columns={"bytes": "MB"}, level=0)
    t["MB"] = (t["MB"] / 1e6).round(2)
    return t


def budget_table(params: Params):
    """CPT tokens per family and language (train / validation), Dense CPT included."""
    import pandas as pd

    rows = []
    for fam in [*params.families, None]:
        for lang, b in cpt_budget(params, fam).items():
            rows.append({"set": fam or "dense", "language": lang, **b})
    return pd.DataFrame(rows).set_index(["set", "language"])

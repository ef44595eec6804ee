"""Tables and checks about the corpus that notebook 01 shows (kept here so the notebook stays thin)."""

from __future__ import annotations

from collections import defaultdict

from famlib.config import Params
from famlib.data.tokens import cpt_budget
from famlib.errors import DataError


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


def check_splits(corpus) -> str:
    """Verify that no group (book, sura, article) is in two splits and that every text of a source kind splits
    its groups the same way. Returns a one-line summary; raises DataError naming the offending text."""
    seen: dict[str, dict[str, str]] = defaultdict(dict)  # source kind -> group -> split
    n_units = 0
    for lang, tfs in corpus.files.items():
        for tf in tfs:
            kind = tf.text_id.split(":")[0]
            for u in corpus._read(tf):
                n_units += 1
                prev = seen[kind].setdefault(u["group"], u["split"])
                if prev != u["split"]:
                    raise DataError(f"{tf.path}: group {u['group']} of {tf.text_id} ({lang}) is in split "
                                    f"{u['split']!r} here but {prev!r} in another text of the same source")
    groups = {k: sum(v == "evaluation" for v in g.values()) for k, g in seen.items()}
    return (f"OK: {n_units} units in {sum(len(v) for v in corpus.files.values())} texts; every group sits in one split; "
            f"evaluation groups per source: {groups}")


def aligned_example(corpus, params: Params, split: str = "train", max_langs: int = 8):
    """One unit in every language that has it (a verse that is the same in all texts of its source)."""
    import pandas as pd

    langs = [lang for lang in params.languages if corpus.texts(lang) and corpus.texts(lang)[0].startswith("bible:")]
    first = next(corpus.units(langs[0], split, corpus.texts(langs[0])[0]))
    rows = []
    for lang in langs[:max_langs]:
        for u in corpus.units(lang, split, corpus.texts(lang)[0]):
            if u["key"] == first["key"]:
                rows.append({"language": lang, "key": u["key"], "text": u["text"]})
                break
    return pd.DataFrame(rows)

"""Simple baselines a language model must beat to know anything worth forgetting.

* A **unigram** model per language (token frequencies of that language's *train* split, add-one smoothed
  over the whole vocabulary; pooled over every language for those with no training text), scored on the
  same evaluation documents as the model, in bits per byte and per-token perplexity.
* For translation, the chrF of an **empty** output and of **copying the source** (computed by the
  evaluation suite next to the model's score).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from famlib.config import Params
from famlib.data.tokens import documents


def _counts(tokenizer, texts: list[str]) -> Counter:
    c: Counter = Counter()
    for i in range(0, len(texts), 256):
        for ids in tokenizer(texts[i:i + 256], add_special_tokens=False)["input_ids"]:
            c.update(ids)
    return c


def unigram_table(params: Params, corpus, tokenizer, max_train_docs: int = 2000):
    """Per language: unigram bits per byte and per-token perplexity on its evaluation documents.

    Returns a DataFrame with columns language, role, eval_bytes, eval_tokens, unigram_bpb, unigram_ppl.
    """
    import pandas as pd

    vocab = len(tokenizer)
    pooled: Counter = Counter()
    own: dict[str, Counter] = {}
    for lang in params.languages:
        docs = documents(corpus, lang, "train")[:max_train_docs]
        if docs:
            own[lang] = _counts(tokenizer, docs)
            pooled.update(own[lang])
    rows = []
    for lang in params.languages:
        counts = own.get(lang, pooled)
        total = sum(counts.values()) + vocab
        eval_docs = documents(corpus, lang, "evaluation")
        if not eval_docs:
            continue
        ev = _counts(tokenizer, eval_docs)
        ids = np.fromiter(ev.keys(), dtype=np.int64)
        n = np.fromiter(ev.values(), dtype=np.float64)
        p = np.array([(counts.get(int(i), 0) + 1) / total for i in ids])
        nll = float(-(n * np.log(p)).sum())
        tokens = int(n.sum())
        nbytes = sum(len(d.encode("utf-8")) for d in eval_docs)
        rows.append({"language": lang, "role": params.split_of(lang), "eval_bytes": nbytes, "eval_tokens": tokens,
                     "unigram_bpb": nll / math.log(2) / nbytes, "unigram_ppl": math.exp(nll / tokens),
                     "unigram_fit": "own" if lang in own else "pooled"})
    return pd.DataFrame(rows)

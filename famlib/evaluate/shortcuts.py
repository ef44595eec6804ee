"""Shortcut baselines: what a multiple-choice task gives away to something that is not a language model.

A task earns its place only if these stay near chance (design.md, "Offline evaluation suite"): a model
that passes it by one of them measures the shortcut, not comprehension or reasoning. Each baseline picks
one choice per item (ties broken towards the first choice, so a baseline without signal scores chance in
expectation, not 1/k by luck of the tie rule):

* ``ngram_context``: a word trigram model (interpolated absolute discounting, a light Kneser-Ney) trained
  on the *train* split of the texts the item is made of, scoring context + choice: the log-probability of
  the choice's words after the context's last two words.
* ``ngram_choice``: the same model scoring the choice alone, from the start of a sentence (no passage).
* ``char_overlap``: the choice whose character 3-grams overlap most with the passage's (Jaccard).
* ``char_containment``: the choice with the largest share of its character 3-grams found in the passage
  (a short choice copied from a long passage scores 1, where its Jaccard overlap stays small).
* ``position``: always the answer position that the few-shot examples' answers hold most often.
* ``length``: always the choice of the byte-length rank (longest, shortest, second longest...) that the
  few-shot answers hold most often.
* ``overlap_rank``: the same with the rank of the character overlap (the greatest overlap is
  ``char_overlap``; this also catches a task whose answer sits in the middle).

The three rules are learned from the few-shot examples, which is what a model reading the shots could
learn; a rule picked on the test items themselves would beat chance by the noise of a maximum.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Optional, Sequence

ORDER = 3
DISCOUNT = 0.75
CHAR_N = 3
BOS, EOS = "<s>", "</s>"
MAX_TRAIN_WORDS = 10**9  # no cap by default: the caller chooses how much train text to give
# Train-split units per text for the shortcut n-gram (about 300k words of a Bible): more text moved the
# baselines by a point or less on the small scale's corpus, and the suite builds in seconds, not minutes.
MAX_TRAIN_UNITS = 12_000
BASELINES = ("ngram_context", "ngram_choice", "char_overlap", "char_containment", "position", "length",
             "overlap_rank")

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word and punctuation tokens of any script."""
    return _WORD.findall(text.lower())


def count_ngrams(sentences: Iterable[str], max_words: int = MAX_TRAIN_WORDS) -> list[Counter]:
    """Per order k (0 to ``ORDER - 1``), the counts of (k history words..., word) tuples over ``sentences``
    (one unit each, padded with ``BOS`` and ended by ``EOS``), stopping once ``max_words`` are counted."""
    grams = [Counter() for _ in range(ORDER)]
    total = 0
    for s in sentences:
        toks = [BOS] * (ORDER - 1) + words(s) + [EOS]
        n = len(toks) - ORDER + 1
        for k in range(ORDER):  # zip of shifted slices: Counter counts the tuples in C
            start = ORDER - 1 - k
            grams[k].update(zip(*(toks[start + j:start + j + n] for j in range(k + 1))))
        total += n
        if total >= max_words:
            break
    return grams


class TrigramLM:
    """Word trigram model with interpolated absolute discounting, trained on sentences (one unit each).

    ``parts``: n-gram counts already made by :func:`count_ngrams` (one per text), summed instead of
    counting ``sentences``: the suite reuses the English text's counts for every language's model."""

    def __init__(self, sentences: Iterable[str] = (), max_words: int = MAX_TRAIN_WORDS,
                 parts: Sequence[list[Counter]] = ()):
        parts = list(parts) or [count_ngrams(sentences, max_words)]
        self.grams = [Counter(parts[0][k]) for k in range(ORDER)]  # a copy: the parts stay as they were
        for part in parts[1:]:
            for k in range(ORDER):
                self.grams[k].update(part[k])
        self.vocab = len(self.grams[0]) + 1  # + unknown word
        self.total = sum(self.grams[0].values())
        self._sums: list[dict] = [{}]  # order k >= 1: history tuple -> (count, distinct next words)
        for k in range(1, ORDER):
            n, types = Counter(), Counter()
            for g, c in self.grams[k].items():
                n[g[:-1]] += c
                types[g[:-1]] += 1
            self._sums.append({h: (n[h], types[h]) for h in n})

    def prob(self, history: Sequence[str], word: str) -> float:
        p = (self.grams[0].get((word,), 0) + 1) / (self.total + self.vocab)  # add-one unigram floor
        for k in range(1, ORDER):
            ctx = tuple(history[-k:]) if len(history) >= k else None
            if ctx is None or ctx not in self._sums[k]:
                continue
            n, types = self._sums[k][ctx]
            c = self.grams[k].get(ctx + (word,), 0)
            p = max(c - DISCOUNT, 0) / n + DISCOUNT * types / n * p
        return p

    def logprob(self, text: str, history: Sequence[str] = ()) -> float:
        """log P(text's words | the last words of ``history``), natural log."""
        hist = [BOS] * (ORDER - 1) + list(history)
        total = 0.0
        for w in words(text):
            total += math.log(self.prob(hist, w))
            hist.append(w)
        return total


def char_ngrams(text: str) -> set[str]:
    """Character ``CHAR_N``-grams of a text, lower-cased, whitespace collapsed."""
    t = " ".join(text.lower().split())
    return {t[i:i + CHAR_N] for i in range(len(t) - CHAR_N + 1)}


def overlap(a: set[str], b: set[str]) -> float:
    """Jaccard overlap of two n-gram sets (0 when both are empty)."""
    return len(a & b) / max(1, len(a | b))


def containment(passage: set[str], choice: set[str]) -> float:
    """Share of a choice's n-grams found in the passage (0 for an empty choice). Unlike the Jaccard overlap it
    does not shrink with the passage's length: a short choice copied from a long passage scores 1."""
    return len(passage & choice) / max(1, len(choice))


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def passage_of(item: dict) -> str:
    """The text the model reads before the choices, without the language label and the question (an item
    that names its ``passage``, as BIG-bench's do, gives it)."""
    if "passage" in item:
        return item["passage"]
    query = item["query"]
    head = query.split(": ", 1)[1] if ": " in query.split("\n", 1)[0] else query
    return head.rsplit("\n", 1)[0]


def _features(it: dict) -> dict:
    """What the rules look at in one item: per choice, its position, byte-length rank and overlap rank."""
    choices = it["choices"]
    grams = char_ngrams(passage_of(it))
    cgrams = [char_ngrams(c) for c in choices]
    overlaps = [overlap(grams, g) for g in cgrams]
    sizes = [len(c.encode("utf-8")) for c in choices]
    return {"overlaps": overlaps, "containments": [containment(grams, g) for g in cgrams],
            "length_rank": [_rank(sizes, i) for i in range(len(choices))],
            "overlap_rank": [_rank(overlaps, i) for i in range(len(choices))]}


def _learned(fewshot: Sequence[dict], k: int) -> dict[str, int]:
    """The position, length rank and overlap rank that the few-shot examples' answers hold most often: what
    a model could pick up from the shots it is shown (the first of each when there are no examples)."""
    counts = {name: Counter() for name in ("position", "length_rank", "overlap_rank")}
    for it in fewshot:
        f = _features(it)
        counts["position"][it["label"]] += 1
        counts["length_rank"][f["length_rank"][it["label"]]] += 1
        counts["overlap_rank"][f["overlap_rank"][it["label"]]] += 1
    return {name: max(range(k), key=lambda r: (c[r], -r)) for name, c in counts.items()}


def baseline_scores(items: Sequence[dict], lm: TrigramLM, fewshot: Sequence[dict] = ()) -> dict[str, float]:
    """Accuracy of every shortcut baseline on ``items`` (``{"query", "choices", "label"}``).

    ``fewshot``: the task's few-shot examples, from which the position and rank rules are learned (a rule
    chosen on the test items themselves would beat chance by the noise of a maximum).
    """
    if not items:
        return {b: float("nan") for b in BASELINES}
    k = len(items[0]["choices"])
    rule = _learned(fewshot, k)
    hits = Counter()
    for it in items:
        choices, gold = it["choices"], it["label"]
        context = words(passage_of(it))
        f = _features(it)
        hits["ngram_context"] += _argmax([lm.logprob(c, context) for c in choices]) == gold
        hits["ngram_choice"] += _argmax([lm.logprob(c) for c in choices]) == gold
        hits["char_overlap"] += _argmax(f["overlaps"]) == gold
        hits["char_containment"] += _argmax(f["containments"]) == gold
        hits["position"] += gold == rule["position"]
        hits["length"] += f["length_rank"][gold] == rule["length_rank"]
        hits["overlap_rank"] += f["overlap_rank"][gold] == rule["overlap_rank"]
    return {b: hits[b] / len(items) for b in BASELINES}


def _rank(values: Sequence[float], i: int) -> int:
    """Rank of ``values[i]`` among ``values`` (0 = smallest; ties by position)."""
    return sorted(range(len(values)), key=lambda j: (values[j], j)).index(i)


def train_shortcut_lm(params, corpus, text_id: str, probe_text_id: str, cache: Optional[dict] = None) -> TrigramLM:
    """The shortcut baselines' word trigram for items made of two texts: their train splits (the first
    ``MAX_TRAIN_UNITS`` units of each), never the evaluation text the items come from. ``cache`` (a dict the
    caller keeps) holds each text's n-gram counts across calls: the probe text is counted once per suite."""
    texts = [text_id] if text_id == probe_text_id else [text_id, probe_text_id]
    cache = {} if cache is None else cache
    for tid in texts:
        if tid not in cache:
            lang = next(lg for lg in params.languages if tid in corpus.texts(lg))
            cache[tid] = count_ngrams([u["text"] for u in corpus.units(lang, "train", tid)][:MAX_TRAIN_UNITS])
    return TrigramLM(parts=[cache[t] for t in texts])

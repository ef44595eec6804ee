"""Evaluation items built from the aligned evaluation text: deterministic, seeded and capped.

Pools. Test items come only from a text's *evaluation* split, which no model ever trains on. Few-shot
examples come from units that no test item uses: the text's *validation* split or, for a text without
one (UDHR is evaluation-only text), a fixed share of its evaluation groups, reserved for few-shot examples
and removed from the test pool. Reserved groups are picked by a salted hash of the group name, so every
language of a source reserves the same articles. A prompt can therefore never contain its own answer.

Order. Candidates are taken in the order of a salted sha256 of their unit key, which does not depend on
the language: languages that share a source (every Bible, every Quran) are asked about the same verses,
up to ``evaluation.max_items`` per language. Every random choice (split point, distractors, answer
position, swapped words) comes from a ``random.Random`` seeded with the run seed, the task and the key.

Tasks (what each really measures; see :mod:`famlib.evaluate.suite` for the harness side):

* ``heldout_perplexity``: documents (runs of consecutive units: a chapter, a sura, an article) of the
  evaluation split, for rolling log-likelihood.
* ``verse_cloze_4way`` (comprehension, Belebele's axis): a cloze test, the classic measure of reading
  comprehension. The preceding verse (``PASSAGE_UNITS``) and a verse up to a blanked content word; choose
  the rest of the verse among four that differ only in that word: the true one or a content word of
  another verse of the same text, of the nearest byte length (no length cue).
* ``word_order_2way`` (reasoning, Global-PIQA's axis): the first half of a verse; choose between its true
  second half and the same words with two content words swapped (identical bytes, so no length cue).
* ``translation`` (FLORES's axis): aligned pairs (same key) between the probe's first text of a source
  kind and the language's text of that kind, in famlib.prompts' format.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from dataclasses import dataclass, field
from typing import Optional

from famlib.config import Params
from famlib.data.sources import parse_text_id
from famlib.errors import DataError, one_of
from famlib.prompts import translation_query

ITEM_SALT = "famlib-eval-items-v1"  # changing it draws other items: never do it silently
RESERVED_FRACTION = 0.10  # share of groups reserved for few-shot examples when a text has no validation
MIN_RESERVED_GROUPS = 2
FEWSHOT_POOL = 64  # few-shot candidates kept per language and task (the sampler draws `shots` of them)
# Preceding verses shown before a cloze verse. One: the tiny base scored the same with 0 or 2 (it reads
# little context), and each verse costs prompt length in every shot and every choice.
PASSAGE_UNITS = 1
MIN_WORDS = 6  # a verse is split into halves of at least 3 words each
MIN_CORE_CHARS = 3  # a "content word" for the swap: at least this many characters besides punctuation
CLOZE_CORE_CHARS = 4  # a blanked word (and its distractors): at least this many characters
DISTRACTOR_SAMPLE = 60  # distractor candidates drawn before choosing the nearest lengths
# Longest unit (UTF-8 bytes) an item is made of: a verse, not a long UDHR paragraph, so that an answer
# always fits a model's context, even in a script the tokenizer splits into single bytes.
MAX_UNIT_BYTES = 600
CHOICES = 4


@dataclass(frozen=True)
class Pools:
    """The units of one text that test items and few-shot examples may use (disjoint by construction)."""

    text_id: str
    test: tuple[dict, ...]
    fewshot: tuple[dict, ...]
    fewshot_from: str  # "validation" or "reserved evaluation groups"
    reserved_groups: tuple[str, ...] = ()


@dataclass
class ItemSet:
    """Test items and few-shot examples of one task, language and direction."""

    test: list[dict]
    fewshot: list[dict]
    info: dict = field(default_factory=dict)  # texts used, where the few-shot examples come from


def _order_key(*parts: str) -> str:
    return hashlib.sha256(":".join((ITEM_SALT, *parts)).encode()).hexdigest()


def _rng(params: Params, *parts: str) -> random.Random:
    return random.Random(":".join((ITEM_SALT, str(params.seed), *parts)))  # str seeds are stable across runs


def doc_key(unit_key: str) -> str:
    """The document a unit belongs to: its key without the last component (famlib.data.tokens.documents)."""
    return unit_key.rsplit(".", 1)[0] if "." in unit_key else unit_key


# ----------------------------------------------------------------------------------------------------
# Pools
# ----------------------------------------------------------------------------------------------------
def unit_pools(params: Params, corpus, lang: str, text_id: Optional[str] = None) -> Pools:
    """Test and few-shot units of one text of ``lang`` (its primary text by default).

    Raises:
        DataError: the language or text is not in the corpus, or the text has no evaluation units.
    """
    texts = corpus.texts(lang)
    text_id = text_id or texts[0]
    if text_id not in texts:
        raise DataError(f"text {text_id!r} is not a text of language {lang!r}; {one_of(texts)}")
    evaluation = list(corpus.units(lang, "evaluation", text_id))
    if not evaluation:
        raise DataError(f"text {text_id!r} ({lang}) has no evaluation units; check data.splits for its kind")
    validation = list(corpus.units(lang, "validation", text_id))
    if validation:
        return Pools(text_id, tuple(evaluation), tuple(validation), "validation")
    kind = parse_text_id(text_id)[0] if ":" in text_id else text_id
    groups = sorted({u["group"] for u in evaluation}, key=lambda g: _order_key("reserve", kind, g))
    n = max(MIN_RESERVED_GROUPS, round(RESERVED_FRACTION * len(groups)))
    if n >= len(groups):
        raise DataError(f"text {text_id!r} ({lang}) has no validation units and only {len(groups)} evaluation "
                        f"groups: too few to reserve {n} for few-shot examples and keep test items")
    reserved = set(groups[:n])
    return Pools(text_id, tuple(u for u in evaluation if u["group"] not in reserved),
                 tuple(u for u in evaluation if u["group"] in reserved), "reserved evaluation groups",
                 tuple(sorted(reserved)))


# ----------------------------------------------------------------------------------------------------
# Perplexity
# ----------------------------------------------------------------------------------------------------
def perplexity_documents(params: Params, corpus, lang: str, tokenizer=None) -> list[dict]:
    """Evaluation documents of every text of ``lang``: ``{"id", "text_id", "doc", "text"}``.

    A document is a run of consecutive units with the same document key, joined by a space, exactly as
    :func:`famlib.data.tokens.documents` builds them. With ``evaluation.perplexity_max_tokens`` set, whole
    documents are taken in salted-hash order until that many tokens (``tokenizer`` is then required).
    """
    runs: dict[tuple[str, str], list[str]] = {}
    for u in corpus.units(lang, "evaluation"):
        runs.setdefault((u["text_id"], doc_key(u["key"])), []).append(u["text"])
    docs = [{"id": f"{lang}:{tid}:{dk}", "text_id": tid, "doc": dk, "text": " ".join(parts)}
            for (tid, dk), parts in runs.items()]
    cap = params.evaluation.perplexity_max_tokens
    if cap is None:
        return docs
    if tokenizer is None:
        raise DataError(f"{params.origin}: evaluation.perplexity_max_tokens={cap} needs a tokenizer to count tokens")
    docs.sort(key=lambda d: _order_key("ppl", d["text_id"].split(":", 1)[0], d["doc"]))
    out, total = [], 0
    for d in docs:
        if total >= cap:
            break
        out.append(d)
        total += len(tokenizer(d["text"], add_special_tokens=False)["input_ids"])
    return out


# ----------------------------------------------------------------------------------------------------
# Verse halves
# ----------------------------------------------------------------------------------------------------
def _short(text: str) -> bool:
    return len(text.encode("utf-8")) <= MAX_UNIT_BYTES


def split_halves(text: str) -> Optional[tuple[str, str]]:
    """Split at the word boundary nearest the middle (by characters).

    None below ``MIN_WORDS`` words or above ``MAX_UNIT_BYTES`` bytes.
    """
    words = text.split()
    if len(words) < MIN_WORDS or not _short(text):
        return None
    half = len(text) / 2
    best, best_d = 3, None
    for k in range(3, len(words) - 2):
        d = abs(len(" ".join(words[:k])) - half)
        if best_d is None or d < best_d:
            best, best_d = k, d
    return " ".join(words[:best]), " ".join(words[best:])


def _core(word: str) -> tuple[int, int]:
    """Start and end of a word without leading/trailing punctuation and symbols (any script)."""
    s, e = 0, len(word)
    while s < e and unicodedata.category(word[s])[0] in "PS":
        s += 1
    while e > s and unicodedata.category(word[e - 1])[0] in "PS":
        e -= 1
    return s, e


def swap_two_words(text: str, rng: random.Random) -> Optional[str]:
    """``text`` with the cores of two different content words swapped, punctuation left in place.

    Returns None when fewer than two distinct words of ``MIN_CORE_CHARS`` characters exist.
    """
    words = text.split()
    spans = [_core(w) for w in words]
    eligible = [i for i, (s, e) in enumerate(spans) if e - s >= MIN_CORE_CHARS]
    pairs = [(i, j) for a, i in enumerate(eligible) for j in eligible[a + 1:]
             if words[i][spans[i][0]:spans[i][1]] != words[j][spans[j][0]:spans[j][1]]]
    if not pairs:
        return None
    i, j = pairs[rng.randrange(len(pairs))]
    (si, ei), (sj, ej) = spans[i], spans[j]
    ci, cj = words[i][si:ei], words[j][sj:ej]
    words[i], words[j] = words[i][:si] + cj + words[i][ei:], words[j][:sj] + ci + words[j][ej:]
    return " ".join(words)


def _ordered(units, task: str, kind: str) -> list[dict]:
    """Units in salted-hash order of (task, source kind, key): the same order in every language of a source."""
    return sorted(units, key=lambda u: _order_key(task, kind, u["key"]))


def _passages(units) -> dict[str, str]:
    """Key -> up to PASSAGE_UNITS preceding units of the same document, joined by spaces."""
    out, prev_doc, window = {}, None, []
    for u in units:
        d = doc_key(u["key"])
        if d != prev_doc:
            prev_doc, window = d, []
        out[u["key"]] = " ".join(window[-PASSAGE_UNITS:]) if PASSAGE_UNITS else ""
        window.append(u["text"])
    return out


def _cloze(params: Params, lang: str, kind: str, units, cap: int, tag: str) -> list[dict]:
    units = list(units)
    passages = _passages(units)
    # Distractors are drawn from running text (one entry per occurrence), like the blanked word itself: drawn
    # from the set of word types they would be rarer, longer in tokens, and a model that only counts tokens
    # would beat chance (a random model did: 0.44 of 4).
    occurrences = [w[s:e] for u in units for w in u["text"].split()
                   for s, e in [_core(w)] if e - s >= CLOZE_CORE_CHARS]
    items = []
    for u in _ordered(units, "cloze", kind):
        if len(items) >= cap:
            break
        words = u["text"].split()
        if len(words) < MIN_WORDS or not _short(u["text"]):
            continue
        rng = _rng(params, "cloze", tag, u["key"])
        spans = [_core(w) for w in words]
        # a blank after the first third, so that some of the verse leads up to it
        eligible = [i for i, (s, e) in enumerate(spans) if e - s >= CLOZE_CORE_CHARS and i >= len(words) // 3]
        if not eligible:
            continue
        i = eligible[rng.randrange(len(eligible))]
        s, e = spans[i]
        true = words[i][s:e]
        present = {w[a:b].lower() for w, (a, b) in zip(words, spans)}
        # same case as the blanked word: a capital letter mid-verse would give a wrong choice away
        sample = [v for v in rng.sample(occurrences, min(len(occurrences), DISTRACTOR_SAMPLE))
                  if v.lower() not in present and v[0].isupper() == true[0].isupper()]
        size = len(true.encode("utf-8"))
        sample.sort(key=lambda v: (abs(len(v.encode("utf-8")) - size), v))
        distractors = list(dict.fromkeys(sample))[:CHOICES - 1]
        if len(distractors) < CHOICES - 1:
            continue
        label = rng.randrange(CHOICES)
        options = distractors[:label] + [true] + distractors[label:]
        choices = [" ".join([words[i][:s] + o + words[i][e:], *words[i + 1:]]) for o in options]
        query = f"{passages[u['key']]} {' '.join(words[:i])}".strip()
        items.append({"id": f"{lang}:{u['key']}", "key": u["key"], "query": query, "choices": choices,
                      "label": label})
    return items


def _word_order(params: Params, lang: str, kind: str, units, cap: int, tag: str) -> list[dict]:
    items = []
    for u in _ordered(units, "order", kind):
        if len(items) >= cap:
            break
        halves = split_halves(u["text"])
        if not halves:
            continue
        head, tail = halves
        rng = _rng(params, "order", tag, u["key"])
        corrupted = swap_two_words(tail, rng)
        if corrupted is None:
            continue
        label = rng.randrange(2)
        choices = [corrupted, tail] if label else [tail, corrupted]
        items.append({"id": f"{lang}:{u['key']}", "key": u["key"], "query": head, "choices": choices,
                      "label": label})
    return items


def multiple_choice_items(params: Params, corpus, task: str, lang: str) -> ItemSet:
    """Items of ``verse_cloze_4way`` or ``word_order_2way`` for one language (its primary text).

    Raises:
        DataError: an unknown task, or the language's text is missing.
    """
    builders = {"verse_cloze_4way": _cloze, "word_order_2way": _word_order}
    if task not in builders:
        raise DataError(f"unknown multiple-choice task {task!r}; {one_of(builders)}")
    pools = unit_pools(params, corpus, lang)
    kind = pools.text_id.split(":", 1)[0]
    cap = params.evaluation.max_items or 10**9
    build = builders[task]
    test = build(params, lang, kind, pools.test, cap, "test")
    fewshot = build(params, lang, kind, pools.fewshot, FEWSHOT_POOL, "fewshot")
    return ItemSet(test, fewshot, {"text_id": pools.text_id, "fewshot_from": pools.fewshot_from,
                                   "reserved_groups": list(pools.reserved_groups)})


# ----------------------------------------------------------------------------------------------------
# Translation
# ----------------------------------------------------------------------------------------------------
def translation_texts(params: Params, corpus, lang: str) -> Optional[tuple[str, str]]:
    """(probe text, language text): the language's first text whose kind the probe also has, and the
    probe's first text of that kind; None when no such pair exists. UDHR counts here (evaluation text)."""
    probe_texts = corpus.texts(params.probe_language)
    for tid in corpus.texts(lang):
        kind = tid.split(":", 1)[0]
        for ptid in probe_texts:
            if ptid.split(":", 1)[0] == kind:
                return ptid, tid
    return None


def translation_items(params: Params, corpus, lang: str, direction: str) -> ItemSet:
    """Aligned pairs of ``lang`` and the probe, ``direction`` ``en-xx`` or ``xx-en``.

    Items: ``{"id", "key", "source", "query", "target"}`` where ``query`` is famlib.prompts'
    ``"English: <src>\\nPolish:"`` and ``target`` the reference. Both directions use the same pairs.

    Raises:
        DataError: a bad direction, the probe itself, or no text aligned with the probe.
    """
    probe = params.probe_language
    if direction not in ("en-xx", "xx-en"):
        raise DataError(f"unknown direction {direction!r}; one of 'en-xx', 'xx-en'")
    if lang == probe:
        raise DataError(f"translation needs a language other than the probe {probe!r}")
    texts = translation_texts(params, corpus, lang)
    if texts is None:
        raise DataError(f"language {lang!r} has no text of a kind that the probe {probe!r} also has "
                        f"(its texts: {corpus.texts(lang)}, the probe's: {corpus.texts(probe)})")
    ptid, ltid = texts
    p_pools, l_pools = unit_pools(params, corpus, probe, ptid), unit_pools(params, corpus, lang, ltid)
    src, tgt = (probe, lang) if direction == "en-xx" else (lang, probe)
    kind = ltid.split(":", 1)[0]

    def pairs(p_units, l_units, cap):
        by = {probe: {u["key"]: u["text"] for u in p_units}, lang: {u["key"]: u["text"] for u in l_units}}
        keys = [k for k in by[lang] if k in by[probe] and by[lang][k].strip() and by[probe][k].strip()
                and _short(by[lang][k]) and _short(by[probe][k])]
        keys = sorted(keys, key=lambda k: _order_key("translation", kind, k))[:cap]
        return [{"id": f"{lang}:{k}", "key": k, "source": by[src][k],
                 "query": translation_query(src, tgt, by[src][k]), "target": by[tgt][k]} for k in keys]

    cap = params.evaluation.max_items or 10**9
    return ItemSet(pairs(p_pools.test, l_pools.test, cap), pairs(p_pools.fewshot, l_pools.fewshot, FEWSHOT_POOL),
                   {"text_id": ltid, "probe_text_id": ptid, "fewshot_from": l_pools.fewshot_from,
                    "reserved_groups": list(l_pools.reserved_groups)})

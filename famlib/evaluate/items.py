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
* ``passage_verse_4way`` (comprehension, Belebele's axis): cross-lingual reading of a passage. A passage of
  ``PASSAGE_UNITS`` consecutive verses in the language; choose, among four English verses of the same
  chapter, the one that renders a verse of the passage (which one is drawn; the other three are verses of
  the chapter outside the passage, matched in character overlap so that overlap gives nothing away). No
  English row: its candidates would come from a second English translation, and the right paraphrase
  out-overlaps every distractor, so matched items cannot be drawn. A scale names a BIG-bench task for
  English comprehension instead (``evaluation.english_task``, :mod:`famlib.evaluate.bigbench`).
* ``verse_match_2way`` (reasoning, Global-PIQA's axis): one verse in the language; of two English verses
  of its neighbourhood, choose the one that says what it says (no English row).
* ``translation`` (FLORES's axis): aligned pairs (same key) between the probe's first text of a source
  kind and the language's text of that kind, in famlib.prompts' format.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Optional

from famlib.config import Params
from famlib.data.sources import parse_text_id
from famlib.errors import DataError, one_of
from famlib.prompts import FEWSHOT_DELIMITER, TARGET_DELIMITER, translation_query

ITEM_SALT = "famlib-eval-items-v1"  # changing it draws other items: never do it silently
RESERVED_FRACTION = 0.10  # share of groups reserved for few-shot examples when a text has no validation
MIN_RESERVED_GROUPS = 2
FEWSHOT_POOL = 64  # few-shot candidates kept per language and task (the sampler draws `shots` of them)
# Verses in a comprehension passage. Three: the answer renders one of them (drawn), so the model has to
# read the whole passage, not the verse before the question; each verse costs prompt length in every shot.
# (The first comprehension task asked for the *next* verse after two: gemma-3-270m scored 0.337 [0.261,
# 0.418] on the training languages and 0.320 on English, chance 0.25, below the base gate of 4 s.e.:
# nearby verses follow about as well as the next one. That task is gone; the gate stayed.)
PASSAGE_UNITS = 3
READ_PROMPT = "One of its verses, in English:"  # what the model is asked after the passage; the choices follow it
MATCH_PROMPT = "The same, in English:"  # the reasoning task's question
# The reasoning task's other verse comes from this many verses on either side of the right one (same
# scene); the comprehension task's distractors come from the whole chapter (for the former next-verse
# task, distractors from the six verses around it left gemma-3-270m at 0.14-0.36, chance 0.25).
NEAR = 6
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
# Cross-lingual multiple choice: read in one language, answered in English
# ----------------------------------------------------------------------------------------------------
def _short(text: str) -> bool:
    return len(text.encode("utf-8")) <= MAX_UNIT_BYTES


def _ordered(units, task: str, kind: str) -> list[dict]:
    """Units in salted-hash order of (task, source kind, key): the same order in every language of a source."""
    return sorted(units, key=lambda u: _order_key(task, kind, u["key"]))


def neighbourhood(kind: str, key: str) -> str:
    """Where a unit's distractors come from: its chapter (Bible) or sura (Quran); the whole text for the
    UDHR, whose articles hold one to five paragraphs."""
    return "all" if kind == "udhr" else doc_key(key)


def _adjacent(a: str, b: str, kind: str) -> bool:
    """``b`` directly follows ``a`` in the text: the next verse of the same chapter (numbered keys); for the
    UDHR the next paragraph of the same article or the first of the next article."""
    try:
        (da, na), (db, nb) = a.rsplit(".", 1), b.rsplit(".", 1)
        if da == db:
            return int(nb) == int(na) + 1
        if kind != "udhr":
            return False
        return int(db.lstrip("U")) == int(da.lstrip("U")) + 1 and int(nb) == 1
    except ValueError:
        return False


@dataclass(frozen=True)
class Aligned:
    """One text's units of a pool, in text order, each with its English rendering (same key)."""

    kind: str
    keys: tuple[str, ...]
    xx: dict  # key -> text in the asked language
    en: dict  # key -> text in English (the probe): the candidates
    same_text: bool = False  # the candidates are the asked text itself (the probe with one translation)


def _aligned(l_units, p_units, kind: str, same_text: bool = False) -> Aligned:
    en = {u["key"]: u["text"] for u in p_units if u["text"].strip() and _short(u["text"])}
    keys, xx = [], {}
    for u in l_units:
        if u["key"] in en and u["text"].strip() and _short(u["text"]):
            keys.append(u["key"])
            xx[u["key"]] = u["text"]
    return Aligned(kind, tuple(keys), xx, en, same_text)


def _runs(al: Aligned, before: int, after: int) -> dict[str, tuple[list[str], list[str]]]:
    """Anchor key -> (the ``before`` keys preceding it and the anchor, the ``after`` keys following it), for
    every anchor whose neighbours are all present and adjacent in the text."""
    out = {}
    keys = al.keys
    for i in range(before, len(keys) - after):
        window = keys[i - before:i + after + 1]
        if all(_adjacent(x, y, al.kind) for x, y in zip(window, window[1:])):
            out[keys[i]] = (list(window[:before + 1]), list(window[before + 1:]))
    return out


def _query(lang: str, passage: str, ask: str = "") -> str:
    from famlib.languages import language

    return f"{language(lang).name}: {passage}\n{ask or READ_PROMPT}"


def _matched(pool: list[str], gold: str, al: Aligned, passage: list[str], rng: random.Random,
             choices: int = CHOICES, near_only: Optional[int] = None) -> Optional[list[str]]:
    """``choices - 1`` keys of ``pool`` (the chapter, in text order, without the passage) chosen so that the
    passage's character overlap gives nothing away, or None when the chapter cannot supply them.

    The right verse shares names and words with the passage more than other verses do (picking the English
    verse of greatest character 3-gram overlap with the passage found the next verse 0.37-0.40 of the time
    with random or nearby distractors, chance 0.25). Overlap is measured two ways, and each is a shortcut of
    its own: the Jaccard overlap (shared 3-grams over their union, which a long passage dilutes) and the
    containment (the share of a choice's 3-grams found in the passage; it picked the right English verse of
    a three-verse passage 0.33-0.44 of the time on Latin-script languages and 0.91 on English, whose
    candidates come from a second translation, when distractors were matched on Jaccard alone). So the right
    verse's rank among the choices is drawn uniformly on *both*, independently: (a, b) distractors below it
    in Jaccard and containment, the rest above, each drawn at random from the chapter (or from the
    ``near_only`` verses on either side of the right one) in the four quadrants those two comparisons make.
    """
    from famlib.evaluate.shortcuts import char_ngrams, containment, overlap

    at = pool.index(gold)
    near = [k for k in (pool if near_only is None else pool[max(0, at - near_only):at + near_only + 1]) if k != gold]
    grams = char_ngrams(" ".join(al.xx[k] for k in passage))
    quad: dict[tuple[bool, bool], list[str]] = {(x, y): [] for x in (True, False) for y in (True, False)}
    scored = {k: char_ngrams(al.en[k]) for k in near + [gold]}
    jac = {k: (overlap(grams, g), rng.random()) for k, g in scored.items()}  # ties (often 0 across scripts)
    con = {k: (containment(grams, g), rng.random()) for k, g in scored.items()}  # in random order
    for k in near:
        quad[(jac[k] < jac[gold], con[k] < con[gold])].append(k)
    n = choices - 1

    def splits(a: int, b: int) -> list[int]:  # ways to take a below on Jaccard and b below on containment
        return [t for t in range(max(0, a + b - n), min(a, b) + 1)
                if len(quad[(True, True)]) >= t and len(quad[(True, False)]) >= a - t
                and len(quad[(False, True)]) >= b - t and len(quad[(False, False)]) >= n - a - b + t]

    # Only items where every pair of ranks is possible: keeping an item whenever its drawn ranks happen to
    # be possible would keep, for a language that shares names with English, mostly the items where the
    # right verse overlaps most (0.69 for Spanish on the 2-way task, with one measure).
    if not all(splits(a, b) for a in range(choices) for b in range(choices)):
        return None
    a, b = rng.randrange(choices), rng.randrange(choices)
    t = rng.choice(splits(a, b))
    return (rng.sample(quad[(True, True)], t) + rng.sample(quad[(True, False)], a - t)
            + rng.sample(quad[(False, True)], b - t) + rng.sample(quad[(False, False)], n - a - b + t))


def _keep_all(item: dict) -> bool:
    return True


def _passage_verse(params: Params, lang: str, al: Aligned, cap: int, tag: str, keep=_keep_all) -> list[dict]:
    """Comprehension: a passage of ``PASSAGE_UNITS`` consecutive verses in ``lang``; choose the English
    rendering of one of them (drawn per item) among four English verses of its chapter, the other three
    outside the passage and matched in overlap with it (:func:`_matched`). None where the candidates would
    be the passage's own text (the probe without a second translation). Items ``keep`` rejects (a prompt
    too long for the model: :func:`multiple_choice_items`) are passed over on the way to ``cap``."""
    if al.same_text:
        return []
    by_hood: dict[str, list[str]] = {}
    for k in al.keys:
        by_hood.setdefault(neighbourhood(al.kind, k), []).append(k)
    runs = _runs(al, PASSAGE_UNITS - 1, 0)  # anchor: the passage's last verse
    items = []
    for anchor in _ordered([{"key": k} for k in runs], "passage", al.kind):
        if len(items) >= cap:
            break
        passage, _ = runs[anchor["key"]]
        rng = _rng(params, "passage", tag, lang, anchor["key"])  # per language: see _verse_match
        gold = passage[rng.randrange(len(passage))]
        pool = [k for k in by_hood[neighbourhood(al.kind, gold)] if k not in passage or k == gold]  # text order
        picked = _matched(pool, gold, al, passage, rng)
        distractors = [al.en[k] for k in picked or []]
        if len(distractors) < CHOICES - 1 or len(set(distractors) | {al.en[gold]}) < CHOICES:
            continue
        label = rng.randrange(CHOICES)
        choices = distractors[:label] + [al.en[gold]] + distractors[label:]
        item = {"id": f"{lang}:{anchor['key']}", "key": anchor["key"], "answer_key": gold,
                "query": _query(lang, " ".join(al.xx[k] for k in passage)), "choices": choices, "label": label}
        if keep(item):
            items.append(item)
    return items


def _verse_match(params: Params, lang: str, al: Aligned, cap: int, tag: str, keep=_keep_all) -> list[dict]:
    """Reasoning: one verse in ``lang``; of two English verses of its passage, choose the one that says what
    it says (the other is a verse near it, chosen as :func:`_matched` chooses). None for the probe: between
    two English translations the right rendering out-overlaps its neighbours almost always, so overlap-matched
    pairs are all but impossible to draw (1 item from tiny's 2 translations), and with one translation the
    right verse would be the prompt's own text. ``keep`` as in :func:`_passage_verse`."""
    if lang == params.probe_language:
        return []
    by_hood: dict[str, list[str]] = {}
    for k in al.keys:
        by_hood.setdefault(neighbourhood(al.kind, k), []).append(k)
    items = []
    for u in _ordered([{"key": k} for k in al.keys], "match", al.kind):
        if len(items) >= cap:
            break
        key = u["key"]
        # Seeded per language too: languages that share a source are asked about the same verses, but their
        # distractors, overlap ranks and answer positions are drawn apart. Seeded by the key alone, every
        # UDHR language had the same draws, and the overlap baseline's error did not average out across them
        # (0.64 over five Latin-script UDHR languages on 30 shared keys: one draw per key, not five).
        rng = _rng(params, "match", tag, lang, key)
        picked = _matched(by_hood[neighbourhood(al.kind, key)], key, al, [key], rng, choices=2, near_only=NEAR)
        if not picked or al.en[picked[0]] == al.en[key]:
            continue
        label = rng.randrange(2)
        choices = [al.en[picked[0]], al.en[key]] if label else [al.en[key], al.en[picked[0]]]
        item = {"id": f"{lang}:{key}", "key": key, "query": _query(lang, al.xx[key], MATCH_PROMPT),
                "choices": choices, "label": label}
        if keep(item):
            items.append(item)
    return items


def _mc_texts(params: Params, corpus, lang: str) -> tuple[str, str]:
    """(probe text, language text) of a multiple-choice task: the pair translation uses; for the probe
    itself, (its next text of the same kind as its primary one, its primary text): two English translations,
    or the primary text on both sides where there is no second one (the builders then make no items)."""
    if lang == params.probe_language:
        texts = corpus.texts(lang)
        tid = texts[0]
        kind = tid.split(":", 1)[0]
        second = [t for t in texts[1:] if t.split(":", 1)[0] == kind]
        return (second[0] if second else tid), tid
    texts = translation_texts(params, corpus, lang)
    if texts is None:
        raise DataError(f"language {lang!r} has no text of a kind that the probe {params.probe_language!r} also "
                        f"has (its texts: {corpus.texts(lang)}): its multiple-choice candidates are English")
    return texts


MC_BUILDERS = {"passage_verse_4way": _passage_verse, "verse_match_2way": _verse_match}


def mc_shots(params: Params) -> int:
    """Shots of the multiple-choice tasks: ``evaluation.mc_shots``, else ``evaluation.shots``."""
    e = params.evaluation
    return e.shots if e.mc_shots is None else e.mc_shots


def multiple_choice_items(params: Params, corpus, task: str, lang: str, n_tokens=None) -> ItemSet:
    """Items of ``passage_verse_4way`` or ``verse_match_2way`` for one language.

    ``n_tokens`` (text -> token count, the evaluated models' tokenizer) makes every prompt fit the model:
    with :func:`context_positions` set (a from-scratch base), a test item is kept only if its query, its
    longest choice and the ``mc_shots`` longest few-shot examples fit the positions (a margin of two tokens
    per part covers merges across the joins); with shots, the few-shot pool is then the ``FEWSHOT_POOL``
    candidates shortest in tokens, as translation's. ``info["test_dropped_too_long"]`` counts the items passed
    over on the way to the cap. Without ``n_tokens`` (or without a position limit) nothing is filtered.

    Raises:
        DataError: an unknown task, or the language has no text aligned with the probe's.
    """
    if task not in MC_BUILDERS:
        raise DataError(f"unknown multiple-choice task {task!r}; {one_of(MC_BUILDERS)}")
    ptid, ltid = _mc_texts(params, corpus, lang)
    probe = params.probe_language
    l_pools = unit_pools(params, corpus, lang, ltid)
    same = ptid == ltid  # the probe with one translation: its candidates would be its own text
    p_pools = l_pools if same else unit_pools(params, corpus, probe, ptid)
    kind = ltid.split(":", 1)[0]
    cap = params.evaluation.max_items or 10**9
    build = MC_BUILDERS[task]
    test_al = _aligned(l_pools.test, p_pools.test, kind, same)
    fitting = n_tokens is not None and context_positions(params) is not None and mc_shots(params) > 0
    fewshot = build(params, lang, _aligned(l_pools.fewshot, p_pools.fewshot, kind, same),
                    10**9 if fitting else FEWSHOT_POOL, "fewshot")
    fewshot_from = l_pools.fewshot_from
    if len(fewshot) < max(1, mc_shots(params)) and build(params, lang, test_al, 1, "test"):
        fewshot, fewshot_from = _borrowed_shots(params, corpus, lang, build, fewshot, l_pools.fewshot_from)
    if fitting:  # as translation's: the pool is the shortest candidates, back in their salted order
        shortest = sorted(range(len(fewshot)), key=lambda i: (_example_tokens(n_tokens, fewshot[i]), i))
        fewshot = [fewshot[i] for i in sorted(shortest[:FEWSHOT_POOL])]
    info = {"text_id": ltid, "probe_text_id": ptid, "fewshot_from": fewshot_from,
            "reserved_groups": list(l_pools.reserved_groups)}
    keep = _mc_fit(params, n_tokens, fewshot, info)
    test = build(params, lang, test_al, cap, "test", keep)
    return ItemSet(test, fewshot, info)


def _borrowed_shots(params: Params, corpus, lang: str, build, fewshot: list[dict], own_from: str):
    """(examples, where from) for a language whose own few-shot pool makes too few.

    The UDHR's reserved articles are a handful of paragraphs: too few to make a passage, its verse and three
    others. Another language's examples (the first in the run's order whose own pool makes enough: the
    probe's, for the comprehension task) then show the format; they share no unit with any test item of this
    language (other texts, or validation verses)."""
    probe = params.probe_language
    for other in params.languages:
        if other == lang:
            continue
        o_ptid, o_ltid = _mc_texts(params, corpus, other)
        o_l = unit_pools(params, corpus, other, o_ltid)
        o_p = o_l if o_ptid == o_ltid else unit_pools(params, corpus, probe, o_ptid)
        if o_l.fewshot_from != "validation":
            continue
        shots = build(params, other, _aligned(o_l.fewshot, o_p.fewshot, o_ltid.split(":", 1)[0],
                                              o_ptid == o_ltid), FEWSHOT_POOL, "fewshot")
        if len(shots) >= max(1, mc_shots(params)):
            return shots, f"{other}'s examples: {own_from} make too few"
    return fewshot, own_from


_MARGIN = 2  # tokens per part of a prompt: a join can merge or split a token at either side


def _example_tokens(n_tokens, x: dict) -> int:
    """Tokens a multiple-choice few-shot example takes in a prompt: its query, its answer and the delimiter."""
    return (n_tokens(x["query"]) + n_tokens(TARGET_DELIMITER + x["choices"][x["label"]])
            + n_tokens(FEWSHOT_DELIMITER) + 3 * _MARGIN)


def _mc_fit(params: Params, n_tokens, fewshot: list[dict], info: dict):
    """The test-item filter of :func:`multiple_choice_items`; notes the budget and the drops in ``info``."""
    positions = context_positions(params) if n_tokens is not None else None
    if positions is None:
        return _keep_all
    examples = sorted((_example_tokens(n_tokens, x) for x in fewshot), reverse=True)
    room = positions - sum(examples[:mc_shots(params)]) - 1  # <bos>
    info.update({"prompt_budget": positions, "test_dropped_too_long": 0})

    def keep(item: dict) -> bool:
        n = (n_tokens(item["query"]) + max(n_tokens(TARGET_DELIMITER + c) for c in item["choices"]) + 2 * _MARGIN)
        if n <= room:
            return True
        info["test_dropped_too_long"] += 1
        return False

    return keep


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


def context_positions(params: Params) -> Optional[int]:
    """The positions a prompt and its answer must fit: a from-scratch base's ``max_position_embeddings``
    (tiny: 512); None for a pretrained Gemma 3, whose 32k positions hold any prompt here."""
    if params.model.kind != "scratch":
        return None
    positions = params.model.architecture.get("max_position_embeddings")
    return int(positions) if positions else None


def prompt_budget(params: Params) -> Optional[int]:
    """Tokens a translation prompt may take: :func:`context_positions` minus ``evaluation.max_gen_tokens``
    (tiny: 512 - 48); None where the positions are not limited."""
    positions = context_positions(params)
    return positions - int(params.evaluation.max_gen_tokens) if positions else None


def translation_items(params: Params, corpus, lang: str, direction: str, n_tokens=None) -> ItemSet:
    """Aligned pairs of ``lang`` and the probe, ``direction`` ``en-xx`` or ``xx-en``.

    Items: ``{"id", "key", "source", "query", "target"}`` where ``query`` is famlib.prompts'
    ``"English: <src>\\nPolish:"`` and ``target`` the reference. Both directions use the same pairs.

    ``n_tokens`` (text -> token count, the evaluated models' tokenizer) makes every prompt fit
    :func:`prompt_budget`: the few-shot pool becomes the ``FEWSHOT_POOL`` candidates whose example is
    shortest in tokens, and a test pair is kept only if its query after the ``shots`` longest examples of that
    pool still fits (a margin of two tokens per part covers merges across the joins), in both directions, so
    both keep the same pairs and the same examples. ``test_dropped_too_long`` counts the pairs passed over on
    the way to the cap (in the salted order the cap takes them), ``fewshot_max_tokens`` the pool's longest
    example. Where fewer than half
    of the items would fit (examples too long for the context: a UDHR-only language's few reserved articles),
    the items are kept unfiltered and ``info["test_may_overflow"]`` counts those the harness may cut. Without
    ``n_tokens`` (or when the budget is None), nothing is filtered. ``info`` records what was dropped.

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
    pairs = _Pairs(probe, lang, ltid.split(":", 1)[0], direction)
    e = params.evaluation
    cap = e.translation_items or e.max_items or 10**9
    info = {"text_id": ltid, "probe_text_id": ptid, "fewshot_from": l_pools.fewshot_from,
            "reserved_groups": list(l_pools.reserved_groups)}
    budget = prompt_budget(params) if n_tokens is not None else None
    if budget is None:
        return ItemSet(pairs.take(p_pools.test, l_pools.test, cap)[0],
                       pairs.take(p_pools.fewshot, l_pools.fewshot, FEWSHOT_POOL)[0], info)
    test, fewshot = _fitted_pairs(pairs, p_pools, l_pools, cap, budget, n_tokens, e.shots, info)
    return ItemSet(test, fewshot, info)


@dataclass(frozen=True)
class _Pairs:
    """Translation items of one language and direction, taken from aligned unit lists in the salted order."""

    probe: str
    lang: str
    kind: str  # the texts' source kind (bible, quran, udhr): part of the salted order
    direction: str

    def item(self, d: str, k: str, by: dict) -> dict:
        s_, t_ = (self.probe, self.lang) if d == "en-xx" else (self.lang, self.probe)
        return {"id": f"{self.lang}:{k}", "key": k, "source": by[s_][k],
                "query": translation_query(s_, t_, by[s_][k]), "target": by[t_][k]}

    def take(self, p_units, l_units, cap: int, keep=lambda key, by: True) -> tuple[list[dict], int]:
        """Up to ``cap`` items in salted order whose key ``keep`` accepts, and the keys rejected on the way."""
        probe, lang = self.probe, self.lang
        by = {probe: {u["key"]: u["text"] for u in p_units}, lang: {u["key"]: u["text"] for u in l_units}}
        keys = [k for k in by[lang] if k in by[probe] and by[lang][k].strip() and by[probe][k].strip()
                and _short(by[lang][k]) and _short(by[probe][k])]
        out, rejected = [], 0
        for k in sorted(keys, key=lambda k: _order_key("translation", self.kind, k)):
            if len(out) >= cap:
                break
            if not keep(k, by):
                rejected += 1
                continue
            out.append(self.item(self.direction, k, by))
        return out, rejected


def _fitted_pairs(pairs: _Pairs, p_pools, l_pools, cap: int, budget: int, n_tokens, shots: int,
                  info: dict) -> tuple[list[dict], list[dict]]:
    """(test, few-shot) items whose prompts fit ``budget`` tokens (see :func:`translation_items`); records
    what was dropped in ``info``. Both directions get the same keys and the same examples: every length is
    the longer of the two directions."""
    margin = 2  # tokens per part: a join can merge or split a token at either side

    def longest(k, by, text) -> int:
        return max(n_tokens(text(pairs.item(d, k, by))) for d in ("en-xx", "xx-en")) + margin

    lengths: dict = {}

    def measure(k, by) -> bool:  # every candidate is kept; its example's length is noted on the way
        lengths[k] = longest(k, by, lambda x: x["query"] + TARGET_DELIMITER + x["target"] + FEWSHOT_DELIMITER)
        return True

    candidates, _ = pairs.take(p_pools.fewshot, l_pools.fewshot, 10**9, keep=measure)
    order = {x["key"]: i for i, x in enumerate(candidates)}
    shortest = sorted(candidates, key=lambda x: (lengths[x["key"]], order[x["key"]]))[:FEWSHOT_POOL]
    fewshot = sorted(shortest, key=lambda x: order[x["key"]])  # back in the salted order
    worst = sum(sorted((lengths[x["key"]] for x in fewshot), reverse=True)[:shots])
    room = budget - worst - 1  # <bos>
    fits: dict = {}

    def fit(k, by) -> bool:
        fits[k] = longest(k, by, lambda x: x["query"]) <= room
        return fits[k]

    test, dropped = pairs.take(p_pools.test, l_pools.test, cap, keep=fit)
    unfitted, _ = pairs.take(p_pools.test, l_pools.test, cap)
    overflow = 0
    if len(test) < len(unfitted) / 2:
        # Examples too long for most of the language's items (a UDHR-only language's few reserved articles
        # in a small context): keep its items, let the harness cut them, and say how many may be cut. The
        # fitting pass above has seen every one of them (it scans at least as far in the same order).
        test, dropped = unfitted, 0
        overflow = sum(not fits[x["key"]] for x in unfitted)
    info.update({"prompt_budget": budget, "fewshot_candidates": len(candidates),
                 "fewshot_max_tokens": max(lengths[x["key"]] for x in fewshot) - margin if fewshot else 0,
                 "test_dropped_too_long": dropped, "test_may_overflow": overflow})
    return test, fewshot

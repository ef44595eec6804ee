"""The paper's findings C1-C11 (``paper/facts.md``), each decided on this run's records with paired intervals.

Every claim is a conjunction of comparisons (a strategy against the base, or two strategies), each with a
paired 95 % cluster-bootstrap interval from :mod:`famlib.evidence` (item keys resampled together across
languages and models). A comparison *holds* when its interval excludes the contrary, *does not hold* when
it excludes the claim, and is *undecided* when it spans both. A claim holds when every comparison holds,
does not hold when any does not, and is undecided otherwise; ``not measured`` says what is missing.

Scopes are the tables' (:mod:`famlib.tables`): a family's score is the mean over its languages, a table's
average the mean over families. "CPT strategies" = every strategy present but the base; the "main" ones
leave out the Freeze soup (the paper's appendix extra). ``L`` = the lower of Dense and Expert at the point
estimate.

* C1: Table 2 (held-in bits per byte). Every other CPT strategy above ``L``; Freeze and L2-SP below the base.
* C2: Table 2. For each reverted variant: above its source (gives back part of the gain), below the base.
* C3: Table 3 with English (held-in families and the probe). Dense below the base, and below every other
  CPT strategy (its drop is the largest).
* C4: Table 3 average. Freeze above every other main CPT strategy, and at or above the base (holds when the
  interval of Freeze - base lies at or above 0, fails when it lies below 0).
* C5: Table 3 average. Dense-Reverted above Dense, below the base, and its recovery at least half of
  Dense's loss: (D.-Rev. - Dense) - 0.5 (base - Dense) > 0.
* C6: Table 3 average. Soup below the best other main strategy and above all the rest (rank 2).
* C7: Table 5 average (chrF, both directions). Every CPT strategy above the base; Dense and Dense-Reverted
  each above every other CPT strategy.
* C8: Table 9 (held-out bits per byte), per family. Dense above the base and Expert above the base.
* C9: Table 9, per family. L2-SP not above the base: holds where the interval of L2-SP - base lies at or
  below 0, fails where it lies above 0.
* C10: interpolation, held-in comprehension. drop(G) = acc(alpha 0) - acc(alpha 1) for group G. The middle
  drop positive; |drop(middle)| above |drop(first)| and |drop(last)|; |drop(last)| below |drop(first)|;
  every step of the middle curve falling (acc(alpha_i) - acc(alpha_i+1) > 0).
* C11: interpolation, held-in chrF (directions averaged): |range(last)| above |range(first)| and
  |range(middle)|, range(G) = chrF(alpha 1) - chrF(alpha 0).

A claim that rests on a multiple-choice axis (C3-C6 and C10: comprehension) is decided only where that axis's
tasks pass their gates (:mod:`famlib.evaluate.gates`: shortcuts and a random model near chance, the base well
above it). Where one fails, the claim is ``not measured`` and says which gate: a difference on a task the
base cannot do is not forgetting of a skill, whatever its interval says (the comparisons are still shown).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from famlib import stats as S
from famlib.evidence import Evidence, Who, describe
from famlib.tables import LABELS, table_kwargs

HOLDS, FAILS, UNDECIDED, NOT_MEASURED = S.HOLDS, S.FAILS, S.UNDECIDED, S.NOT_MEASURED
VERDICTS = (HOLDS, FAILS, UNDECIDED, NOT_MEASURED)

CLAIM_TEXT = {
    "C1": "Dense and Expert reach the lowest training-language perplexity; alignment strategies sit between the "
          "base model and them.",
    "C2": "Reverted variants give back part of the perplexity gain but stay better than base.",
    "C3": "Dense CPT causes the largest comprehension forgetting.",
    "C4": "Layer Freezing preserves comprehension best on average (at or above base).",
    "C5": "Dense-Reverted recovers much of Dense's comprehension loss but stays below base.",
    "C6": "Expert Soup is second on comprehension.",
    "C7": "Every CPT strategy improves translation over base; Dense-Reverted and Dense lead.",
    "C8": "Dense and vanilla Experts raise held-out perplexity.",
    "C9": "L2-SP never raises held-out perplexity above base.",
    "C10": "Middle-layer drift drives comprehension loss: the middle-group interpolation curve is the steepest and "
           "monotonic; the last group's is nearly flat.",
    "C11": "Translation is most sensitive to last-layer drift.",
}

# What the paper reports for each claim (paper/facts.md, "Figures quoted in the text").
PAPER_EVIDENCE = {
    "C1": "Table 2 ppl avg: Dense 7.20, Expert 7.30; L2-SP moderate (Slavic mk 6.70→6.36)",
    "C2": "Indic avg ppl: base 10.07, Expert 7.73, Expert-Reverted 9.07",
    "C3": "Dense drops Belebele 6.6–12.3 pp vs base across families (English 0.813→0.674)",
    "C4": "Belebele avg: Freeze 0.716 (best), +1.7 pp over base; English Freeze 0.817 vs base 0.813",
    "C5": "Dense-Reverted recovers ~8 pp over Dense, stays below base on average",
    "C6": "Belebele avg: Soup 0.711, second after Freeze 0.716",
    "C7": "chrF avg: base 33.4; D.-Rev. 54.0, Dense 53.8, Soup 47.4, L2-SP 45.1, Freeze 44.7, E.-Rev. 44.5, Expert 44.1",
    "C8": "Held-out ppl: Dense raises it in every family (Indic 8.99→14.70); Experts in every family "
          "(Austronesian 14.04→28.35)",
    "C9": "Held-out ppl L2-SP vs base: Germanic 8.56→8.38, Indic 8.99→8.89, Slavic 7.36→7.18, "
          "Austronesian 14.04→14.02, Romance 7.90→7.69",
    "C10": "Middle-layer interpolation: monotonic 7.69-point Belebele drop, >2× the first-layer effect, 10× the last",
    "C11": "Restoring last-layer drift raises chrF for every family (most for Austronesian); first/middle barely matter",
}

RULES = {
    "C1": "Table 2 bpb avg: every other CPT strategy > min(Dense, Expert); Freeze, L2-SP < base",
    "C2": "Table 2 bpb avg: reverted > its source and reverted < base, for D.-Rev./Dense and E.-Rev./Expert",
    "C3": "Table 3 (families + English): Dense < base and Dense < every other CPT strategy",
    "C4": "Table 3 avg: Freeze > every other main CPT strategy, and Freeze ≥ base",
    "C5": "Table 3 avg: D.-Rev. > Dense, D.-Rev. < base, (D.-Rev. − Dense) − ½(base − Dense) > 0",
    "C6": "Table 3 avg: best other main strategy > Soup > every remaining main strategy",
    "C7": "Table 5 avg: every CPT strategy > base; Dense and D.-Rev. > every other CPT strategy",
    "C8": "Table 9 bpb per family: Dense > base and Expert > base",
    "C9": "Table 9 bpb per family: L2-SP ≤ base (interval of L2-SP − base at or below 0)",
    "C10": "Interpolation acc: middle drop > 0; |middle| > |first|, |middle| > |last|, |last| < |first|; "
           "each middle step falls",
    "C11": "Interpolation chrF: |last range| > |first range| and > |middle range|",
}

ALIGNMENT = ("freeze", "l2sp")
MAIN_EXCLUDED = ("base", "freeze_soup")  # C4/C6 rank the paper's main CPT strategies


@dataclass
class Claim:
    id: str
    text: str
    verdict: str  # holds | does not hold | undecided | not measured
    evidence: str
    paper: str = ""
    rule: str = ""

    def as_dict(self) -> dict:
        return {"id": self.id, "claim": self.text, "paper": self.paper, "this run": self.evidence,
                "verdict": self.verdict, "rule": self.rule}


def _lab(s) -> str:
    return str(s) if isinstance(s, Who) else LABELS.get(s, s)


class _Parts:
    """The comparisons of one claim: each a verdict and a line of evidence."""

    def __init__(self, ev: Evidence, axis: str, groups: dict, digits: int = 3, scale: float = 1.0, unit: str = ""):
        self.ev, self.axis, self.groups = ev, axis, groups
        self.digits, self.scale, self.unit = digits, scale, unit
        self.items: list[tuple[str, str]] = []

    def check(self, label: str, fn, whos, sign: str, groups: Optional[dict] = None) -> str:
        """Add the comparison ``fn(*scores) <sign> 0`` (``sign`` ``>`` or ``<``); return its verdict."""
        iv = self.ev.statistic(fn, whos, self.axis, groups or self.groups)
        if iv is None:
            v = NOT_MEASURED
            self.items.append((v, f"{label}: not measured"))
            return v
        v = _verdict(iv, sign)
        self.items.append((v, f"{label} {describe(iv, self.digits, self.scale, self.unit)} ({v})"))
        return v

    def diff(self, a, b, sign: str, groups: Optional[dict] = None) -> str:
        return self.check(f"{_lab(a)} − {_lab(b)}", lambda x, y: x - y, [a, b], sign, groups)

    def claim(self, cid: str, head: str = "") -> Claim:
        verdicts = [v for v, _ in self.items]
        verdict = S.combine(verdicts) if verdicts else NOT_MEASURED
        text = (head + ": " if head else "") + "; ".join(t for _, t in self.items)
        return Claim(cid, CLAIM_TEXT[cid], verdict, text, PAPER_EVIDENCE[cid], RULES[cid])


def _verdict(iv: S.Interval, sign: str) -> str:
    """The verdict on ``statistic <sign> 0``. Strict (``>``, ``<``): the interval must lie wholly on the claim's
    side. Inclusive (``>=``, ``<=``, the paper's "at or above", "never raises"): an interval on the claim's
    side of 0 or touching it holds, one wholly on the other side does not."""
    if sign == ">":
        return S.verdict_greater(iv)
    if sign == "<":
        return S.verdict_less(iv)
    if sign == ">=":
        return HOLDS if iv.low >= 0 else FAILS if iv.high < 0 else UNDECIDED
    if sign == "<=":
        return HOLDS if iv.high <= 0 else FAILS if iv.low > 0 else UNDECIDED
    raise ValueError(f"sign {sign!r}: one of >, <, >=, <=")


def _nm(cid: str, why: str) -> Claim:
    return Claim(cid, CLAIM_TEXT[cid], NOT_MEASURED, why, PAPER_EVIDENCE[cid], RULES[cid])


def _present(ev: Evidence, axis: str, groups: dict, strategies) -> list[str]:
    """The strategies (in order) that have every cell of ``groups`` on ``axis``."""
    langs = [x for v in groups.values() for x in v]
    return [s for s in strategies if ev.cells(s, axis, langs) is not None]


def _point(ev: Evidence, s, axis: str, groups: dict) -> float:
    return ev.draws(s, axis, groups)[0]


# ----------------------------------------------------------------------------------------------------
# The claims
# ----------------------------------------------------------------------------------------------------
def _c1(ev, strategies) -> Claim:
    g = ev.groups("held_in")
    have = _present(ev, "perplexity", g, strategies)
    leaders = [s for s in ("dense", "expert") if s in have]
    if "base" not in have or not leaders or not set(ALIGNMENT) & set(have):
        return _nm("C1", f"Table 2 averages missing; measured: {', '.join(map(_lab, have)) or 'none'}")
    low = min(leaders, key=lambda s: _point(ev, s, "perplexity", g))
    p = _Parts(ev, "perplexity", g)
    for s in have:
        if s not in ("base", "dense", "expert"):
            p.diff(s, low, ">")
    for s in ALIGNMENT:
        if s in have:
            p.diff(s, "base", "<")
    return p.claim("C1", "held-in bpb, paired 95 % CIs")


def _c2(ev, strategies) -> Claim:
    g = ev.groups("held_in")
    have = _present(ev, "perplexity", g, strategies)
    pairs = [(r, s) for r, s in (("dense_reverted", "dense"), ("expert_reverted", "expert")) if r in have and s in have]
    if "base" not in have or not pairs:
        return _nm("C2", f"Table 2 averages missing; measured: {', '.join(map(_lab, have)) or 'none'}")
    p = _Parts(ev, "perplexity", g)
    for r, s in pairs:
        p.diff(r, s, ">")
        p.diff(r, "base", "<")
    return p.claim("C2", "held-in bpb")


def _c3(ev, strategies) -> Claim:
    # The paper's Table 3 averages the families and English; the offline task has no English row (its
    # candidates would paraphrase the passage), so English joins the average only where the base has one:
    # BIG-bench's task where evaluation.english_task names it (small), Belebele's at the paper scale.
    g = ev.present(["base"], "comprehension", ev.groups("held_in", probe=True)) or ev.groups("held_in")
    english = ev.params.probe_language in g
    have = _present(ev, "comprehension", g, strategies)
    if "base" not in have or "dense" not in have or len(have) < 3:
        return _nm("C3", f"Table 3 (families{' + English' if english else ''}) incomplete; measured: "
                         f"{', '.join(map(_lab, have)) or 'none'}")
    p = _Parts(ev, "comprehension", g, 1, 100, " pp")
    p.diff("dense", "base", "<")
    for s in have:
        if s not in ("base", "dense"):
            p.diff("dense", s, "<")
    return p.claim("C3", "comprehension, families and English" if english
                   else "comprehension, families (no English rows)")


def _main(have) -> list[str]:
    return [s for s in have if s not in MAIN_EXCLUDED]


def _c4(ev, strategies) -> Claim:
    g = ev.groups("held_in")
    have = _present(ev, "comprehension", g, strategies)
    main = _main(have)
    if "freeze" not in main or "base" not in have or len(main) < 2:
        return _nm("C4", f"Table 3 averages missing; measured: {', '.join(map(_lab, have)) or 'none'}")
    p = _Parts(ev, "comprehension", g, 1, 100, " pp")
    for s in main:
        if s != "freeze":
            p.diff("freeze", s, ">")
    p.diff("freeze", "base", ">=")
    return p.claim("C4", "comprehension avg")


def _c5(ev, strategies) -> Claim:
    g = ev.groups("held_in")
    have = _present(ev, "comprehension", g, strategies)
    if not all(s in have for s in ("base", "dense", "dense_reverted")):
        return _nm("C5", f"Table 3 averages missing; measured: {', '.join(map(_lab, have)) or 'none'}")
    p = _Parts(ev, "comprehension", g, 1, 100, " pp")
    p.diff("dense_reverted", "dense", ">")
    p.diff("dense_reverted", "base", "<")
    p.check("recovery beyond half of Dense's loss", lambda r, d, b: (r - d) - 0.5 * (b - d),
            ["dense_reverted", "dense", "base"], ">")
    return p.claim("C5", "comprehension avg")


def _c6(ev, strategies) -> Claim:
    g = ev.groups("held_in")
    have = _present(ev, "comprehension", g, strategies)
    main = _main(have)
    if "soup" not in main or len(main) < 3:
        return _nm("C6", f"Table 3 averages missing; measured: {', '.join(map(_lab, have)) or 'none'}")
    others = [s for s in main if s != "soup"]
    leader = max(others, key=lambda s: _point(ev, s, "comprehension", g))
    p = _Parts(ev, "comprehension", g, 1, 100, " pp")
    p.diff(leader, "soup", ">")
    for s in others:
        if s != leader:
            p.diff("soup", s, ">")
    return p.claim("C6", f"comprehension avg (best other: {_lab(leader)})")


def _c7(ev, strategies) -> Claim:
    g = ev.groups("held_in")
    have = _present(ev, "translation", g, strategies)
    if not all(s in have for s in ("base", "dense", "dense_reverted")) or len(have) < 4:
        return _nm("C7", f"Table 5 averages missing; measured: {', '.join(map(_lab, have)) or 'none'}")
    p = _Parts(ev, "translation", g, 1, 1, " chrF")
    for s in have:
        if s != "base":
            p.diff(s, "base", ">")
    for s in have:
        if s not in ("base", "dense", "dense_reverted"):
            p.diff("dense", s, ">")
            p.diff("dense_reverted", s, ">")
    return p.claim("C7", "chrF avg, both directions")


def _per_family(ev, cid, strategies_needed, sign, exclude, strategies) -> Claim:
    p = _Parts(ev, "perplexity", {})
    missing = []
    for fam in ev.params.families:
        g = ev.groups("held_out", families=[fam], exclude=exclude)
        if not g:
            continue
        for s in strategies_needed:
            if s not in strategies or ev.draws(s, "perplexity", g) is None or ev.draws("base", "perplexity", g) is None:
                missing.append(f"{_lab(s)} in {fam}")
                continue
            p.check(f"{fam}: {_lab(s)} − base", lambda x, y: x - y, [s, "base"], sign, g)
    if missing or not p.items:
        return _nm(cid, "Table 9 missing: " + (", ".join(missing) or "every family"))
    return p.claim(cid, "held-out bpb")


def _c8(ev, strategies, exclude) -> Claim:
    return _per_family(ev, "C8", ("dense", "expert"), ">", exclude, strategies)


def _c9(ev, strategies, exclude) -> Claim:
    return _per_family(ev, "C9", ("l2sp",), "<=", exclude, strategies)


def _points(interpolation) -> dict:
    """(group, alpha) -> model id of the interpolation's points (alpha 1 is Dense's point, for every group)."""
    out = {}
    if interpolation is None or len(interpolation) == 0:
        return out
    for r in interpolation[["group", "alpha", "model"]].drop_duplicates().itertuples():
        for g in (("first", "middle", "last") if str(r.group) == "all" else (str(r.group),)):
            out[(g, float(r.alpha))] = str(r.model)  # "all": Dense's own point, the end of every curve
    return out


def _interp_groups(ev_i: Evidence, interpolation) -> dict:
    langs = set(interpolation["language"].astype(str))
    return {f: [x for x in ls if x in langs] for f, ls in ev_i.groups("held_in").items() if any(x in langs for x in ls)}


def _interp_setup(ev_i, interpolation, cid: str, what: str):
    """(groups, {(group, alpha): Who}) of the interpolation's points, or the NOT_MEASURED claim when the
    curves lack their ends (alpha 0 and 1 for every group)."""
    pts = _points(interpolation)
    need = [(g, a) for g in ("first", "middle", "last") for a in (0.0, 1.0)]
    if ev_i is None or not all(k in pts for k in need):
        return _nm(cid, f"no interpolation {what} at α = 0 and 1 for every group")
    return _interp_groups(ev_i, interpolation), {k: Who(model=v) for k, v in pts.items()}


def _c10(ev_i, interpolation, distances) -> Claim:
    setup = _interp_setup(ev_i, interpolation, "C10", "comprehension")
    if isinstance(setup, Claim):
        return setup
    g, m = setup
    p = _Parts(ev_i, "comprehension", g, 1, 100, " pp")
    ends = [m[("middle", 0.0)], m[("middle", 1.0)], m[("first", 0.0)], m[("first", 1.0)], m[("last", 0.0)], m[("last", 1.0)]]
    p.check("middle drop", lambda a, b: a - b, ends[:2], ">")
    p.check("|middle drop| − |first drop|", lambda a, b, c, d, e, f: np.abs(a - b) - np.abs(c - d), ends, ">")
    p.check("|middle drop| − |last drop|", lambda a, b, c, d, e, f: np.abs(a - b) - np.abs(e - f), ends, ">")
    p.check("|first drop| − |last drop|", lambda a, b, c, d, e, f: np.abs(c - d) - np.abs(e - f), ends, ">")
    alphas = sorted(a for (grp, a) in m if grp == "middle")
    for a0, a1 in zip(alphas, alphas[1:]):
        p.check(f"middle step α {a0:g}→{a1:g}", lambda a, b: a - b, [m[("middle", a0)], m[("middle", a1)]], ">")
    return p.claim("C10", f"held-in comprehension, {sum(map(len, g.values()))} languages" + _drift_note(distances))


def _c11(ev_i, interpolation) -> Claim:
    setup = _interp_setup(ev_i, interpolation, "C11", "translation")
    if isinstance(setup, Claim):
        return setup
    g, m = setup
    ends = [m[("last", 0.0)], m[("last", 1.0)], m[("first", 0.0)], m[("first", 1.0)], m[("middle", 0.0)], m[("middle", 1.0)]]
    p = _Parts(ev_i, "translation", g, 1, 1, " chrF")
    p.check("last range", lambda a, b: b - a, ends[:2], ">")
    p.check("|last range| − |first range|", lambda a, b, c, d, e, f: np.abs(b - a) - np.abs(d - c), ends, ">")
    p.check("|last range| − |middle range|", lambda a, b, c, d, e, f: np.abs(b - a) - np.abs(f - e), ends, ">")
    return p.claim("C11", "held-in chrF, both directions")


def _drift_note(distances) -> str:
    import math

    if distances is None or len(distances) == 0:
        return ""
    d = distances[distances["model"].astype(str) == "dense"]
    if d.empty or not {"delta_sq", "base_sq"} <= set(d.columns):
        return ""
    g = d.groupby("group")[["delta_sq", "base_sq"]].sum()
    # two significant digits: a pretrained model's CPT moves its weights by 1e-4 to 1e-3 of their norm
    parts = [f"{k} {math.sqrt(g.at[k, 'delta_sq'] / g.at[k, 'base_sq']):.2g}" for k in ("first", "middle", "last")
             if k in g.index and g.at[k, "base_sq"] > 0]
    return f"; Dense relative drift per group: {', '.join(parts)}" if parts else ""


# The claims that rest on an axis's multiple-choice task(s), and the gates each such task must pass.
GATED = {"comprehension": ("C3", "C4", "C5", "C6", "C10")}
GATES = {"shortcut_gate": "shortcut", "random_gate": "random-model", "base_held_in_gate": "base (held-in)",
         "base_english_gate": "base (English)"}


def failed_gates(table) -> dict[str, str]:
    """axis -> why it does not measure here: each of its tasks with a failing gate, from a gate table
    (:func:`famlib.evaluate.gates.load_gate_table`); axes whose tasks pass every gate are absent."""
    out: dict[str, list[str]] = {}
    for r in ([] if table is None else table.to_dict("records")):
        failed = [label for col, label in GATES.items() if r.get(col) == "fails"]
        if not failed:
            continue
        base = r.get("base_held_in")
        shown = (f"; base held-in {base:.3f} [{r.get('base_held_in_low', float('nan')):.3f}, "
                 f"{r.get('base_held_in_high', float('nan')):.3f}] against chance {r['chance']:.2f}"
                 if isinstance(base, float) and base == base else "")
        out.setdefault(str(r["axis"]), []).append(f"`{r['task']}` fails its {', '.join(failed)} gate{shown}")
    return {axis: "; ".join(v) for axis, v in out.items()}


def check_claims(params, results, interpolation=None, distances=None, evidence=None, gates=None) -> list[Claim]:
    """Decide C1-C11 on this scale's records (see the module docstring for each rule).

    ``gates``: the scale's gate table (:func:`famlib.evaluate.gates.load_gate_table`); where a task of an axis
    fails a gate, the claims that rest on that axis are ``not measured``. None: no gate is consulted.
    """
    import pandas as pd

    from famlib.evaluate.results import COLUMNS
    from famlib.strategies.registry import paper_names

    results = results if results is not None else pd.DataFrame(columns=COLUMNS)
    ev = evidence or Evidence(params, results, iters=params.evaluation.bootstrap_iters)
    ev_i = (Evidence(params, interpolation, "interpolation", iters=params.evaluation.bootstrap_iters)
            if interpolation is not None and len(interpolation) else None)
    present = set(results["strategy"].astype(str)) if len(results) else set()
    # The paper's claims are decided on the paper's strategies: one registered since shows in the tables,
    # figures and report, but cannot change a verdict about the paper's (Strategy.paper).
    strategies = [s for s in paper_names() if s in present]
    exclude = table_kwargs(params)["exclude"]
    found = [_c1(ev, strategies), _c2(ev, strategies), _c3(ev, strategies), _c4(ev, strategies),
             _c5(ev, strategies), _c6(ev, strategies), _c7(ev, strategies), _c8(ev, strategies, exclude),
             _c9(ev, strategies, exclude), _c10(ev_i, interpolation, distances), _c11(ev_i, interpolation)]
    failed = failed_gates(gates)
    gated = {cid: axis for axis, cids in GATED.items() if axis in failed for cid in cids}
    return [_nm(c.id, f"not decided: {failed[gated[c.id]]}, so a difference on it is not forgetting of a skill "
                      f"(the comparisons, for reference: {c.evidence})") if c.id in gated else c for c in found]


def claims_frame(claims: list[Claim]):
    """The claims as a DataFrame (id, claim, paper, this run, verdict, rule) for display."""
    import pandas as pd

    return pd.DataFrame([c.as_dict() for c in claims]).set_index("id")


CLAIMS_FILE = "claims.csv"
CLAIMS_COLUMNS = ["id", "verdict", "this run", "claim", "paper", "rule"]


def claims_path(scale: str) -> Path:
    """``figures/<scale>/claims.csv``: a scale's verdicts, kept with its figures (committed for the default
    scale) so that another scale's report can set them side by side without re-running that scale."""
    from famlib.paths import figures_root

    return figures_root() / scale / CLAIMS_FILE


def write_claims(scale: str, claims: list[Claim]) -> Path:
    """Save the verdicts as ``figures/<scale>/claims.csv`` (atomic) and return the path."""
    from famlib.io import atomic_path

    path = claims_path(scale)
    with atomic_path(path) as tmp:
        claims_frame(claims).reset_index()[CLAIMS_COLUMNS].to_csv(tmp, index=False)
    return path


def read_claims(scale: str) -> Optional[dict]:
    """``{claim id: (verdict, evidence)}`` saved by another run of ``scale``, or None when there is none.

    Raises:
        FamlibError: the file exists but lacks the columns ``write_claims`` writes (names the file).
    """
    import pandas as pd

    from famlib.errors import FamlibError

    path = claims_path(scale)
    if not path.exists():
        return None
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("id", "verdict", "this run") if c not in frame.columns]
    if missing:
        raise FamlibError(f"{path}: missing column(s) {', '.join(missing)}; a claims file has "
                          f"{', '.join(CLAIMS_COLUMNS)} (rewrite it by re-running 07_tables_and_figures "
                          f"at scale {scale})")
    return {r["id"]: (r["verdict"], r["this run"]) for _, r in frame.iterrows()}


def compare_scales(claims: list[Claim], scale: str, others=("tiny", "small", "paper")):
    """The claims of this run beside the saved verdicts of ``others`` (scales without a saved file are left
    out): a DataFrame indexed by claim id with ``claim``, ``paper's evidence`` and one verdict column per
    scale, named by the scale (``paper`` is the paper-scale run's verdict, not the paper's text)."""
    import pandas as pd

    columns = {}
    for other in others:
        if other == scale:
            continue
        saved = read_claims(other)
        if saved is not None:
            columns[other] = {cid: saved.get(cid, (NOT_MEASURED, ""))[0] for cid in CLAIM_TEXT}
    rows = []
    for c in claims:
        row = {"id": c.id, "claim": c.text, "paper's evidence": c.paper, scale: c.verdict}
        row.update({other: v[c.id] for other, v in columns.items()})
        rows.append(row)
    return pd.DataFrame(rows).set_index("id")

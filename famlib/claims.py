"""The paper's findings C1-C11 (``paper/facts.md``), each decided on this run's numbers by an explicit rule.

Every claim gets a verdict: ``holds``, ``does not hold``, or ``not measured`` (with what is missing). The
evidence string carries the numbers that decided it, with standard errors where noise matters (accuracy:
binomial standard errors combined over languages and families); a verdict whose deciding margin is smaller
than one standard error says so ("within noise"). Family averages are those of :mod:`famlib.tables`
(per-family strategies answered by the family's own model; ``avg`` = mean of the family rows).

Rules (``A`` = the ``avg`` row of a table; "CPT strategies" = every strategy but the base). Values are
compared unrounded; an exact tie is read in the claim's favour (a tie is no counterexample).

* C1: Table 2 (bits per byte). The lowest A among CPT strategies is Dense's or Expert's, and every
  alignment strategy (Freeze, L2-SP) lies between them and the base: min(Dense, Expert) <= A(s) < A(base).
* C2: Table 2. For each reverted variant present: A(source) <= A(reverted) < A(base) (gives back part of
  the gain, stays better than base); Dense-Reverted vs Dense, Expert-Reverted vs Expert.
* C3: Table 3, score = mean of the family rows and the English row (held-in + English). Dense's drop
  (base - Dense) is positive and the largest among the CPT strategies.
* C4: Table 3 A. Freeze is the highest among the paper's main CPT strategies (Freeze soup, the appendix
  extra, excluded) and A(Freeze) >= A(base).
* C5: Table 3 A. A(Dense) < A(Dense-Reverted) < A(base) and Dense-Reverted recovers at least half of
  Dense's loss: (A(D.-Rev.) - A(Dense)) / (A(base) - A(Dense)) >= 0.5.
* C6: Table 3 A. Soup ranks second among the main CPT strategies (Freeze soup excluded).
* C7: Table 5 A (chrF, directions averaged). Every CPT strategy is above the base, and the two highest
  are Dense and Dense-Reverted (either order).
* C8: Table 9 (held-out bits per byte). Dense > base and Expert > base in every family.
* C9: Table 9. L2-SP <= base in every family.
* C10: interpolation, held-in comprehension accuracy (mean over held-in languages). Range of a group =
  |acc(alpha=1) - acc(alpha=0)|. The middle range is the largest, the last range the smallest, the middle
  curve falls from alpha 0 to 1 and is monotonic: no step up larger than one standard error of the mean
  accuracy at that alpha (the tolerance).
* C11: interpolation, held-in chrF (both directions averaged). The last group's range is the largest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from famlib.tables import AVG, LABELS, build_table, interpolation_curves, table_kwargs

HOLDS, FAILS, NOT_MEASURED = "holds", "does not hold", "not measured"

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
    "C1": "Table 2 bpb avg: lowest CPT strategy is Dense or Expert; min(Dense, Expert) ≤ Freeze, L2-SP < base",
    "C2": "Table 2 bpb avg: source ≤ reverted < base, for D.-Rev./Dense and E.-Rev./Expert",
    "C3": "Table 3 (families + English): Dense's drop vs base is positive and the largest",
    "C4": "Table 3 avg: Freeze highest among main CPT strategies, and ≥ base",
    "C5": "Table 3 avg: Dense < D.-Rev. < base, recovering ≥ 50 % of Dense's loss",
    "C6": "Table 3 avg: Soup second among main CPT strategies",
    "C7": "Table 5 avg: every CPT strategy > base; top two are Dense and D.-Rev.",
    "C8": "Table 9 bpb: Dense > base and Expert > base in every family",
    "C9": "Table 9 bpb: L2-SP ≤ base in every family",
    "C10": "Interpolation acc: middle range |acc(1)−acc(0)| largest, last smallest; middle falls monotonically "
           "(tolerance: 1 s.e. per step)",
    "C11": "Interpolation chrF (directions averaged): last group's range is the largest",
}

ALIGNMENT = ("freeze", "l2sp")
MAIN_EXCLUDED = ("base", "freeze_soup")  # C4/C6 rank the paper's main CPT strategies


@dataclass
class Claim:
    id: str
    text: str
    verdict: str  # holds | does not hold | not measured
    evidence: str
    paper: str = ""
    rule: str = ""

    def as_dict(self) -> dict:
        return {"id": self.id, "claim": self.text, "paper": self.paper, "this run": self.evidence,
                "verdict": self.verdict, "rule": self.rule}


def _lab(s: str) -> str:
    return LABELS.get(s, s)


def _ok(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _val(table, row, col):
    f = table.frame
    if row in f.index and col in f.columns and _ok(f.at[row, col]):
        return float(f.at[row, col])
    return None


def _se(table, row, col):
    if table.stderr is None:
        return None
    f = table.stderr
    if row in f.index and col in f.columns and _ok(f.at[row, col]):
        return float(f.at[row, col])
    return None


def _avg_row(table) -> dict:
    """``{strategy: avg value}`` for the strategies with a complete average."""
    return {s: v for s in table.frame.columns if (v := _val(table, AVG, s)) is not None}


def _noise(margin: float, se: Optional[float]) -> str:
    if se is None or not _ok(se) or se <= 0:
        return ""
    return f"; margin {margin:+.3f} vs s.e. {se:.3f}" + (" (within noise)" if abs(margin) < se else "")


def _fmt(values: dict, digits: int, order=None) -> str:
    order = order or sorted(values, key=values.get)
    return ", ".join(f"{_lab(s)} {values[s]:.{digits}f}" for s in order if s in values)


def _nm(cid: str, why: str) -> Claim:
    return Claim(cid, CLAIM_TEXT[cid], NOT_MEASURED, why, PAPER_EVIDENCE[cid], RULES[cid])


def _verdict(cid: str, ok: bool, evidence: str) -> Claim:
    return Claim(cid, CLAIM_TEXT[cid], HOLDS if ok else FAILS, evidence, PAPER_EVIDENCE[cid], RULES[cid])


# ----------------------------------------------------------------------------------------------------
# The claims
# ----------------------------------------------------------------------------------------------------
def _c1(t2) -> Claim:
    a = _avg_row(t2)
    need = [s for s in ("base",) if s not in a]
    if need or not ({"dense", "expert"} & set(a)) or not (set(ALIGNMENT) & set(a)):
        return _nm("C1", f"Table 2 averages missing for: {_missing(a, ['base', 'dense', 'expert', *ALIGNMENT])}")
    cpt = {s: v for s, v in a.items() if s != "base"}
    lowest = min(cpt, key=lambda s: (cpt[s], s not in ("dense", "expert")))  # a tie is read in their favour
    leaders = {s: a[s] for s in ("dense", "expert") if s in a}
    lead = min(leaders.values())
    between = {s: lead <= a[s] < a["base"] for s in ALIGNMENT if s in a}
    ok = lowest in ("dense", "expert") and all(between.values())
    why = [] if ok else ([f"lowest is {_lab(lowest)} {cpt[lowest]:.3f}"] if lowest not in leaders else []) + [
        f"{_lab(s)} not in [{lead:.3f}, {a['base']:.3f})" for s, b in between.items() if not b]
    return _verdict("C1", ok, f"avg bpb: {_fmt(a, 3)}" + (f" — {'; '.join(why)}" if why else ""))


def _missing(have: dict, wanted) -> str:
    miss = [_lab(s) for s in wanted if s not in have]
    return ", ".join(miss) if miss else "none"


def _c2(t2) -> Claim:
    a = _avg_row(t2)
    pairs = [(r, s) for r, s in (("dense_reverted", "dense"), ("expert_reverted", "expert")) if r in a and s in a]
    if "base" not in a or not pairs:
        return _nm("C2", f"Table 2 averages missing for: {_missing(a, ['base', 'dense', 'dense_reverted', 'expert', 'expert_reverted'])}")
    parts, ok = [], True
    for r, s in pairs:
        good = a[s] <= a[r] < a["base"]
        ok &= good
        gain = a["base"] - a[s]
        kept = (a["base"] - a[r]) / gain if gain > 0 else float("nan")
        parts.append(f"{_lab(s)} {a[s]:.3f} ≤ {_lab(r)} {a[r]:.3f} < base {a['base']:.3f}: {'yes' if good else 'no'}"
                     + (f" (keeps {100 * kept:.0f} % of the gain)" if kept == kept else ""))
    return _verdict("C2", ok, "avg bpb: " + "; ".join(parts))


def _score(table, rows) -> tuple[dict, dict]:
    """Mean over ``rows`` per strategy (only strategies with every row), and its standard error."""
    vals, ses = {}, {}
    for s in table.frame.columns:
        v = [_val(table, r, s) for r in rows]
        if rows and all(x is not None for x in v):
            vals[s] = sum(v) / len(v)
            e = [_se(table, r, s) for r in rows]
            ses[s] = math.sqrt(sum(x * x for x in e)) / len(e) if all(x is not None for x in e) else None
    return vals, ses


def _c3(t3) -> Claim:
    rows = [r for r in t3.frame.index if r != AVG]
    vals, ses = _score(t3, rows)
    if "base" not in vals or "dense" not in vals or len(vals) < 3:
        return _nm("C3", f"Table 3 (families + English) incomplete for: {_missing(vals, ['base', 'dense'])}"
                         + ("" if len(vals) >= 3 else "; needs at least one more CPT strategy"))
    drops = {s: vals["base"] - v for s, v in vals.items() if s != "base"}
    order = sorted(drops, key=lambda s: (-drops[s], s != "dense"))  # a tie is read in Dense's favour
    ok = order[0] == "dense" and drops["dense"] > 0
    runner = order[1] if order[0] == "dense" else order[0]
    se = _pair_se(ses.get("dense"), ses.get(runner))
    ev = (f"drop vs base over {len(rows)} rows ({', '.join(map(str, rows))}): "
          + ", ".join(f"{_lab(s)} {100 * drops[s]:+.1f} pp" for s in order)
          + f"; base {vals['base']:.3f}" + _noise(drops["dense"] - drops[runner], se))
    return _verdict("C3", ok, ev)


def _pair_se(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return math.hypot(a, b) if a is not None and b is not None else None


def _ranked(table, favour: str = "") -> tuple[dict, list]:
    """Average row and the main CPT strategies from best to worst (a tie is read in ``favour``'s favour)."""
    a = {s: v for s, v in _avg_row(table).items()}
    main = sorted((s for s in a if s not in MAIN_EXCLUDED), key=lambda s: (-a[s], s != favour))
    return a, main


def _c4(t3) -> Claim:
    a, main = _ranked(t3, "freeze")
    if "freeze" not in a or "base" not in a or len(main) < 2:
        return _nm("C4", f"Table 3 averages missing for: {_missing(a, ['base', 'freeze'])}"
                         + ("" if len(main) >= 2 else "; needs another CPT strategy to compare"))
    ok = main[0] == "freeze" and a["freeze"] >= a["base"]
    other = main[1] if main[0] == "freeze" else main[0]
    se = _pair_se(_se(t3, AVG, "freeze"), _se(t3, AVG, other))
    ev = (f"avg acc: {_fmt(a, 3, main)}; base {a['base']:.3f}; Freeze − base {100 * (a['freeze'] - a['base']):+.1f} pp"
          + _noise(a["freeze"] - a[other], se))
    return _verdict("C4", ok, ev)


def _c5(t3) -> Claim:
    a = _avg_row(t3)
    if not all(s in a for s in ("base", "dense", "dense_reverted")):
        return _nm("C5", f"Table 3 averages missing for: {_missing(a, ['base', 'dense', 'dense_reverted'])}")
    loss = a["base"] - a["dense"]
    rec = a["dense_reverted"] - a["dense"]
    frac = rec / loss if loss > 0 else float("nan")
    ok = a["dense"] < a["dense_reverted"] < a["base"] and frac >= 0.5
    ev = (f"avg acc: Dense {a['dense']:.3f}, D.-Rev. {a['dense_reverted']:.3f}, base {a['base']:.3f}; "
          + (f"recovers {100 * rec:+.1f} pp of a {100 * loss:.1f} pp loss ({100 * frac:.0f} %)" if loss > 0
             else f"Dense lost nothing ({100 * loss:+.1f} pp vs base): no loss to recover")
          + _noise(rec, _pair_se(_se(t3, AVG, "dense"), _se(t3, AVG, "dense_reverted"))))
    return _verdict("C5", ok, ev)


def _c6(t3) -> Claim:
    a, main = _ranked(t3)
    if "soup" not in a or len(main) < 3:
        return _nm("C6", f"Table 3 averages missing for: {_missing(a, ['soup'])}"
                         + ("" if len(main) >= 3 else "; needs at least three main CPT strategies to rank"))
    rank = 1 + sum(a[s] > a["soup"] for s in main)  # competition ranking: ties share a rank
    ok = rank == 2
    nb = main[0] if rank != 1 else main[1]
    ev = f"avg acc rank {rank} of {len(main)}: {_fmt(a, 3, main)}" + _noise(
        a["soup"] - a[nb], _pair_se(_se(t3, AVG, "soup"), _se(t3, AVG, nb)))
    return _verdict("C6", ok, ev)


def _c7(t5) -> Claim:
    a = _avg_row(t5)
    if not all(s in a for s in ("base", "dense", "dense_reverted")) or len(a) < 4:
        return _nm("C7", f"Table 5 averages missing for: {_missing(a, ['base', 'dense', 'dense_reverted'])}"
                         + ("" if len(a) >= 4 else "; needs at least one more CPT strategy"))
    cpt = sorted((s for s in a if s != "base"), key=lambda s: (-a[s], s not in ("dense", "dense_reverted")))
    below = [s for s in cpt if a[s] <= a["base"]]
    lead = set(cpt[:2]) == {"dense", "dense_reverted"}  # ties with a third strategy read in their favour
    ok = not below and lead
    ev = f"avg chrF: {_fmt(a, 1, cpt)}; base {a['base']:.1f}"
    if below:
        ev += f" — not above base: {', '.join(map(_lab, below))}"
    if not lead:
        ev += f" — top two: {', '.join(map(_lab, cpt[:2]))}"
    return _verdict("C7", ok, ev)


def _families(table) -> list:
    return [r for r in table.frame.index if r != AVG]


def _per_family(table, strategy: str, cmp, label: str):
    """``(ok, text, missing)``: ``cmp(value, base)`` in every family row of ``table``."""
    fams = _families(table)
    miss = [f for f in fams if _val(table, f, strategy) is None or _val(table, f, "base") is None]
    if not fams or miss:
        return None, "", miss or ["every family"]
    parts, ok = [], True
    for f in fams:
        v, b = _val(table, f, strategy), _val(table, f, "base")
        good = cmp(v, b)
        ok &= good
        parts.append(f"{f} {b:.3f}→{v:.3f}{'' if good else ' ✗'}")
    return ok, f"{label}: " + ", ".join(parts), []


def _c8(t9) -> Claim:
    out, ok_all, miss_all = [], True, []
    for s in ("dense", "expert"):
        ok, text, miss = _per_family(t9, s, lambda v, b: v > b, f"{_lab(s)} (base→model bpb)")
        if miss:
            miss_all.append(f"{_lab(s)} or base in {', '.join(miss)}")
            continue
        ok_all &= ok
        out.append(text)
    if miss_all:
        return _nm("C8", "Table 9 missing: " + "; ".join(miss_all))
    return _verdict("C8", ok_all, "; ".join(out) + " (✗ = not raised)")


def _c9(t9) -> Claim:
    ok, text, miss = _per_family(t9, "l2sp", lambda v, b: v <= b, "L2-SP held-out bpb, base→L2-SP")
    if miss:
        return _nm("C9", f"Table 9 missing L2-SP or base in: {', '.join(miss)}")
    return _verdict("C9", ok, text + " (✗ = above base)")


def _ranges(curves) -> dict:
    """``{group: (value at alpha 0, value at alpha 1, values in alpha order, stderrs)}``."""
    out = {}
    for g, c in curves.groupby("group", sort=False):
        c = c.sort_values("alpha")
        a0 = c[c["alpha"].sub(0).abs() < 1e-9]["value"]
        a1 = c[c["alpha"].sub(1).abs() < 1e-9]["value"]
        if len(a0) and len(a1):
            out[g] = (float(a0.iloc[0]), float(a1.iloc[0]), list(c["value"]), list(c["stderr"]), list(c["alpha"]))
    return out


def _drift_note(distances) -> str:
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


def _c10(interpolation, results, distances) -> Claim:
    curves = interpolation_curves(interpolation, "comprehension", results=results)
    r = _ranges(curves)
    if not all(g in r for g in ("first", "middle", "last")):
        return _nm("C10", "no interpolation comprehension rows at α = 0 and 1 for every group"
                          + (" (interpolation.csv missing or empty)" if interpolation is None or len(interpolation) == 0 else ""))
    rng = {g: abs(v[1] - v[0]) for g, v in r.items()}
    a0, a1, vals, ses, alphas = r["middle"]
    ups = [(alphas[i + 1], vals[i + 1] - vals[i], ses[i + 1]) for i in range(len(vals) - 1)
           if vals[i + 1] - vals[i] > (ses[i + 1] if _ok(ses[i + 1]) else 0.0)]
    falls = a1 < a0
    ok = max(rng, key=rng.get) == "middle" and min(rng, key=rng.get) == "last" and falls and not ups
    se_mid = ses[0] if _ok(ses[0]) else None
    ev = (f"acc range |α1−α0|: first {rng['first']:.3f}, middle {rng['middle']:.3f}, last {rng['last']:.3f}; "
          f"middle curve {' → '.join(f'{v:.3f}' for v in vals)} (α {', '.join(f'{x:g}' for x in alphas)})"
          + (f", s.e. ≈ {se_mid:.3f}" if se_mid else "")
          + ("" if falls else "; middle does not fall from α=0 to α=1")
          + (f"; steps up beyond 1 s.e. at α {', '.join(f'{x:g}' for x, _, _ in ups)}" if ups else "")
          + f"; {int(curves['languages'].max())} held-in languages" + _drift_note(distances))
    return _verdict("C10", ok, ev)


def _c11(interpolation, results) -> Claim:
    curves = interpolation_curves(interpolation, "translation", results=results)
    r = _ranges(curves)
    if not all(g in r for g in ("first", "middle", "last")):
        return _nm("C11", "no interpolation translation rows at α = 0 and 1 for every group"
                          + (" (interpolation.csv missing or empty)" if interpolation is None or len(interpolation) == 0 else ""))
    rng = {g: abs(v[1] - v[0]) for g, v in r.items()}
    ok = max(rng, key=rng.get) == "last"
    per_dir = interpolation_curves(interpolation, "translation", results=results, by_direction=True)
    dirs = []
    for d, c in per_dir.groupby("direction"):
        rd = _ranges(c)
        if "last" in rd:
            dirs.append(f"{d} last {rd['last'][1] - rd['last'][0]:+.1f}")
    ev = (f"chrF range |α1−α0| (directions averaged): first {rng['first']:.1f}, middle {rng['middle']:.1f}, "
          f"last {rng['last']:.1f}; restoring last-layer drift changes chrF by {r['last'][1] - r['last'][0]:+.1f}"
          + (f" ({', '.join(dirs)})" if dirs else ""))
    return _verdict("C11", ok, ev)


def check_claims(params, results, interpolation=None, distances=None) -> list[Claim]:
    """Decide C1-C11 on this scale's results (see the module docstring for each rule)."""
    import pandas as pd

    from famlib.evaluate.results import COLUMNS

    results = results if results is not None else pd.DataFrame(columns=COLUMNS)
    kw = table_kwargs(params)
    t = {name: build_table(results, name, families=kw["families"], probe=kw["probe"],
                           exclude=kw["exclude"] if name.startswith("table9") else ())
         for name in ("table2", "table3", "table5", "table9")}
    return [
        _c1(t["table2"]), _c2(t["table2"]), _c3(t["table3"]), _c4(t["table3"]), _c5(t["table3"]),
        _c6(t["table3"]), _c7(t["table5"]), _c8(t["table9"]), _c9(t["table9"]),
        _c10(interpolation, results, distances), _c11(interpolation, results),
    ]


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

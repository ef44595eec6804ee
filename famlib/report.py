"""``runs/<scale>/report.md``: what ran, the claims C1-C11 beside the paper, the tables and the figures.

The report is regenerated whole from the results files (atomic write). Figures are linked by their path
relative to the report, computed from where ``$FAMLIB_RUNS`` and ``$FAMLIB_FIGURES`` put them, so the
links hold wherever the two trees live. Nothing is filled in: an input that is missing is said to be
missing, and a claim that cannot be checked is "not measured".
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Optional, Sequence

from famlib.claims import FAILS, HOLDS, NOT_MEASURED, UNDECIDED, VERDICTS, check_claims, compare_scales, write_claims
from famlib.strategies import registry
from famlib.analysis import AVG, INTERP_GROUPS, load_inputs
from famlib.tables import LABELS, MISSING, build_tables

FIGURE_CAPTIONS = {
    "figure2": "Figure 2: held-out comprehension accuracy and translation chrF, each strategy minus the base, "
               "averaged over families.",
    "figure3": "Figure 3: interpolating one layer group between the base and Dense CPT (others at Dense): held-in "
               "comprehension (a) and chrF per direction (b).",
    "figure4": "Figure 4: held-in comprehension under layer interpolation, per family.",
    "figure5": "Figure 5: held-in chrF (directions averaged) under layer interpolation, per family.",
    "frontier": "Acquisition (bits-per-byte gain on training languages) against retention (comprehension vs base on "
                "English and held-out relatives), one point per strategy and family.",
    "drift": "Relative per-layer drift from the base, mean over each strategy's family models; groups shaded.",
}

# The paper's averages quoted in the text (paper/facts.md): strategy -> value, and the table of this run
# each is set beside (name, decimals).
PAPER_AVERAGES = {
    "Table 2 ppl": ({"dense": 7.20, "expert": 7.30}, "table2_token_perplexity", 2),
    "Table 3 Belebele acc": ({"freeze": 0.716, "soup": 0.711}, "table3", 3),
    "Table 5 chrF": ({"base": 33.4, "dense_reverted": 54.0, "dense": 53.8, "soup": 47.4, "l2sp": 45.1, "freeze": 44.7,
                      "expert_reverted": 44.5, "expert": 44.1}, "table5", 1),
}


def report_path(scale: str) -> Path:
    from famlib.paths import report_path

    return report_path(scale)


def _cell(text) -> str:
    """A Markdown table cell: pipes escaped, newlines flattened."""
    return str(text).replace("|", r"\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def relative_link(target: Path, start: Path) -> str:
    """``target`` relative to the directory ``start``, with forward slashes (a Markdown link)."""
    return Path(os.path.relpath(Path(target).resolve(), Path(start).resolve())).as_posix()


def _what_ran(params, results, interpolation, distances) -> str:
    out = ["## What ran\n"]
    if results is None or len(results) == 0:
        out.append(f"No evaluation results yet (`{_results_name(params)}` is missing or empty).\n")
    else:
        models = list(dict.fromkeys(results["model"].astype(str)))
        by_strategy = []
        for s in registry.names():
            ms = [m for m in models if m == s or m.startswith(f"{s}.")]
            if ms:
                by_strategy.append(f"{LABELS.get(s, s)} ({', '.join(ms)})")
        out.append(f"- **Models evaluated ({len(models)}):** {'; '.join(by_strategy)}.")
        ran = getattr(params, "strategy_names", None) or registry.names()  # the strategies this scale runs
        absent = [LABELS.get(s, s) for s in ran if not any(m == s or m.startswith(f"{s}.") for m in models)]
        if absent:
            out.append(f"- **Not evaluated:** {', '.join(absent)}.")
        out.append(f"- **Probe language:** {params.probe_language} (evaluated by every model; per-family strategies "
                   f"report the mean over their family models in the English rows).")
        out.append("")
        out.append(_md_table(["family", "training (held-in)", "held-out"],
                             [(f, ", ".join(v.train), ", ".join(v.held_out)) for f, v in params.families.items()]))
        prim = results[_primary(results)]
        rows = []
        for (task, name, metric), g in prim.groupby(["task", "task_name", "metric"], sort=False):
            n = sorted({int(x) for x in g["n"].dropna()})
            rows.append((task, name, metric, g["language"].nunique(),
                         (f"{n[0]}" if len(n) == 1 else f"{n[0]}–{n[-1]}") if n else MISSING))
        out.append(_md_table(["task", "what it measures", "metric", "languages", "items per language"], rows))
        if "limit" in results.columns and results["limit"].notna().any():
            out.append(f"**Sample limit in use** (limit = {int(results['limit'].max())}): these rows are not complete "
                       f"evaluations.\n")
    from famlib.evaluate.results import failed_path, load_failures

    failures = load_failures(params.scale)
    if len(failures):  # a task that raised measured nothing; the next evaluation of its model tries it again
        out.append(f"**Tasks that failed ({len(failures)}, `{failed_path(params.scale).name}`):** "
                   + "; ".join(f"{r.model} `{r.harness_task}`: {str(r.error)[:200]}" for r in failures.itertuples())
                   + "\n")
    if interpolation is not None and len(interpolation):
        groups = ", ".join(g for g in dict.fromkeys(interpolation["group"].astype(str)) if g in INTERP_GROUPS)
        alphas = ", ".join(f"{a:g}" for a in sorted(set(interpolation["alpha"].astype(float))))
        out.append(f"- **Layer interpolation:** groups {groups}; α = {alphas} ({interpolation['model'].nunique()} models).")
    else:
        out.append("- **Layer interpolation:** not run yet (no `interpolation.csv`): C10 and C11 are not measured, "
                   "Figures 3-5 absent.")
    if distances is not None and len(distances):
        out.append(f"- **Layer distances:** {distances['model'].nunique()} models (`layer_distance.csv`).")
    else:
        out.append("- **Layer distances:** not computed yet (no `layer_distance.csv`).")
    return "\n".join(out) + "\n"


def _results_name(params) -> str:
    return f"runs/{params.scale}/results/results.csv"


def _claims_section(claims) -> str:
    counts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    rows = [(c.id, c.text, c.paper, c.evidence, f"**{c.verdict}**" if c.verdict == HOLDS else c.verdict)
            for c in claims]
    rules = "\n".join(f"- {c.id}: {c.rule}" for c in claims)
    return ("## Claims C1-C11\n\n"
            f"{counts[HOLDS]} hold, {counts[FAILS]} do not hold, {counts[UNDECIDED]} undecided, "
            f"{counts[NOT_MEASURED]} not measured. Each claim is a set of comparisons, each with a paired 95 % "
            "interval (cluster bootstrap over item keys: `famlib/evidence.py`): a comparison holds when its interval "
            "excludes the contrary, does not hold when it excludes the claim, and is undecided when it spans both; a "
            "claim holds when all its comparisons hold and does not hold when any does not (rules below; "
            "`famlib/claims.py`).\n\n"
            + _md_table(["", "claim", "paper", "this run", "verdict"], rows)
            + f"\n<details><summary>Decision rules</summary>\n\n{rules}\n\n</details>\n")


# (title, axis, split, with the probe row, digits, scale, unit): the differences the report sets out
DIFFERENCES = (
    ("Table 2: held-in bits per byte", "perplexity", "held_in", False, 3, 1, ""),
    ("English bits per byte", "perplexity", "base", False, 3, 1, ""),
    ("Table 9: held-out bits per byte", "perplexity", "held_out", False, 3, 1, ""),
    ("Table 3: held-in comprehension", "comprehension", "held_in", False, 1, 100, " pp"),
    ("English comprehension", "comprehension", "base", False, 1, 100, " pp"),
    ("Table 9b: held-out comprehension", "comprehension", "held_out", False, 1, 100, " pp"),
    ("Table 4: held-in reasoning", "reasoning", "held_in", False, 1, 100, " pp"),
    ("Table 5: held-in translation", "translation", "held_in", False, 1, 1, " chrF"),
    ("Table 9c: held-out translation", "translation", "held_out", False, 1, 1, " chrF"),
)


def _difference_groups(params, evidence, split: str) -> dict[str, list[str]]:
    """The averaging groups of a DIFFERENCES row: English alone, or the tables' families of ``split``."""
    from famlib.tables import table_kwargs

    if split == "base":
        return {params.probe_language: [params.probe_language]}
    return evidence.groups(split, exclude=table_kwargs(params)["exclude"] if split == "held_out" else ())


def _difference_cell(evidence, a: str, b: str, axis: str, groups, digits: int, scale: float) -> str:
    """``a - b`` on ``axis`` over ``groups`` with its paired interval; ▲/▼ where the interval decides."""
    from famlib.evidence import resolved

    both = evidence.present([a, b], axis, groups)
    iv = evidence.diff(a, b, axis, both) if both else None
    if iv is None:
        return MISSING
    mark = {"better": " ▲", "worse": " ▼"}.get(resolved(iv, lower_is_better=axis == "perplexity"), "")
    return (f"{iv.estimate * scale:+.{digits}f}{mark}<br><sub>[{iv.low * scale:+.{digits}f}, "
            f"{iv.high * scale:+.{digits}f}]</sub>")


_MARKS = ("▲ = the interval excludes 0 and the first is better, ▼ = excludes 0 and worse (for bits per byte, "
          "lower is better); no mark = undecided.")


def _differences_section(params, results, evidence) -> str:
    """Every paper strategy against the base on each table's average (and English), with its paired interval.
    Strategies beyond the paper have their own section (:func:`_beyond_section`)."""
    have = set(results["strategy"].astype(str)) if len(results) else set()
    present = [s.name for s in registry.strategies() if s.paper and s.name != "base" and s.name in have]
    if not present:
        return ""
    rows = []
    for title, axis, split, _, digits, scale, unit in DIFFERENCES:
        groups = _difference_groups(params, evidence, split)
        rows.append([f"{title}{unit and f' ({unit.strip()})'}",
                     *[_difference_cell(evidence, s, "base", axis, groups, digits, scale) for s in present]])
    return ("## Differences from the base, with paired 95 % intervals\n\n"
            "Each cell is the strategy minus the base on that table's average over families (or on English), "
            "with its paired cluster-bootstrap interval (item keys resampled together across languages and "
            f"models; `famlib/evidence.py`). {_MARKS}\n\n"
            + _md_table(["", *[LABELS.get(s, s) for s in present]], rows))


def _beyond_section(params, results, evidence) -> str:
    """The strategies beyond the paper (``paper=False``: the literature's baselines, a researcher's own),
    each against the base and against the paper strategies it is a control for (``Strategy.compare_with``),
    on the same axes and with the same paired statistics as the paper's. Claims C1-C11 never read them."""
    have = set(results["strategy"].astype(str)) if len(results) else set()
    extra = [e for e in registry.strategies() if not e.paper and e.name != "base" and e.name in have]
    if not extra:
        return ""
    rows = []
    for e in extra:
        for peer in ("base", *[c for c in e.compare_with if c in have]):
            cells = [_difference_cell(evidence, e.name, peer, axis, _difference_groups(params, evidence, split),
                                      digits, scale) for _, axis, split, _, digits, scale, _ in DIFFERENCES]
            rows.append([f"{LABELS.get(e.name, e.name)} − {LABELS.get(peer, peer)}", *cells])
    header = ["", *[f"{title.split(': ')[-1]}{unit and f' ({unit.strip()})'}" for title, *_, unit in DIFFERENCES]]
    return ("## Beyond the paper\n\n"
            "Strategies the paper does not run (`famlib strategies` lists them: the continual-pretraining "
            "literature's baselines, and any a researcher registers), each minus the base and minus the paper "
            "strategies it is a control for, on the same averages and with the same paired 95 % intervals as the "
            f"paper's. {_MARKS} The claims C1-C11 are decided on the paper's strategies only.\n\n"
            + _md_table(header, rows))


def _primary(results):
    """The ``primary`` column as booleans, whether read from CSV ("True") or built in memory (True, 1.0)."""
    return results["primary"].map(lambda v: str(v).lower() in ("true", "1", "1.0"))


def _prompts_section(results) -> str:
    """How many evaluated prompts did not fit the model's context (the harness cut their beginning), per
    task and direction over every model; and the share of empty translations after the truncation rule."""
    import pandas as pd

    if results is None or len(results) == 0 or "truncated" not in results:
        return ""
    r = results[_primary(results) & results["task"].astype(str).isin(["comprehension", "reasoning", "translation"])].copy()
    r["truncated"] = pd.to_numeric(r["truncated"], errors="coerce")
    unmeasured = int(r["truncated"].isna().sum())
    r = r[r["truncated"].notna()]
    if r.empty:
        return ""
    cut = r[r["truncated"] > 0]
    head = "## Prompts that fit\n\n"
    note = (f" ({unmeasured} task rows without per-item records are not counted.)" if unmeasured else "")
    if cut.empty:
        text = (f"No prompt lost tokens: every one of the {int(r['n'].sum()):,} evaluated multiple-choice and "
                f"translation items of {r['model'].nunique()} models fit its model's context.{note}\n")
    else:
        g = cut.groupby("harness_task").agg(models=("model", "nunique"), cut=("truncated", "sum"), n=("n", "sum"))
        rows = "\n".join(f"| `{t}` | {int(x.models)} | {int(x.cut)} of {int(x.n)} |" for t, x in g.iterrows())
        text = (f"{int(cut['truncated'].sum()):,} of {int(r['n'].sum()):,} evaluated multiple-choice and translation "
                "items lost tokens from the left to fit the model's context (the harness cut the prompt's beginning), "
                f"in these tasks:{note}\n\n"
                "| task | models | items cut |\n|---|---:|---:|\n" + rows + "\n")
    if "empty_rate" in r:
        e = pd.to_numeric(r.loc[r["task"] == "translation", "empty_rate"], errors="coerce").dropna()
        if len(e):
            text += (f"\nTranslations empty after the paper's truncation rule: {e.mean():.1%} on average, at most "
                     f"{e.max():.1%} in one model, language and direction.\n")
    return head + text


def _gates_section(params) -> str:
    """The instrument's gates (famlib.evaluate.gates), from the saved gate table."""
    from famlib.evaluate.gates import gates_markdown, load_gate_table

    table = load_gate_table(params.scale)
    return ("## The instrument's gates\n\n"
            "A multiple-choice task measures something only if a random model of the base's architecture scores at "
            "chance (within 2 s.e.), shortcut baselines that need no language model stay within chance + 0.10 "
            "(worst baseline and split shown), and the base clears chance by 4 standard errors (held-in average and "
            "English, cluster-bootstrap s.e.). `famlib/evaluate/gates.py` defines each.\n\n"
            + (gates_markdown(table) if table is not None else "_Not measured yet: notebook 05 for the base writes it._")
            + "\n")


def _scales_section(claims, scale: str) -> str:
    """The verdicts beside those saved by the other scales' runs (``figures/<scale>/claims.csv``)."""
    frame = compare_scales(claims, scale)
    others = [c for c in frame.columns if c not in ("claim", "paper's evidence", scale)]
    if not others:
        return ("## Claims across scales\n\nNo other scale has saved its claims yet "
                "(`figures/<scale>/claims.csv`, written by its `07_tables_and_figures`).\n")
    header = ["", "claim", f"{scale} scale (this run)", *(f"{o} scale" for o in others), "the paper's evidence"]
    rows = [(cid, r["claim"], r[scale], *(r[o] for o in others), r["paper's evidence"])
            for cid, r in frame.iterrows()]
    counts = ", ".join(f"{s}: {sum(frame[s] == HOLDS)} hold, {sum(frame[s] == UNDECIDED)} undecided"
                       for s in (scale, *others))
    return ("## Claims across scales\n\n"
            f"This run's verdicts beside those saved by the last run of each other scale ({counts}). "
            "The same rules decide every scale; the paper's column is its own evidence.\n\n"
            + _md_table(header, rows))


def _paper_averages(params, tables) -> str:
    header = ["strategy"]
    for key, (_, name, _) in PAPER_AVERAGES.items():
        header += [f"{key}: paper", "this run"]
    header.append("bits per byte, this run")
    rows = []
    present = set().union(*(set(t.frame.columns) for t in tables.values()))
    for s in [s for s in registry.names() if s in present or any(s in p for p, _, _ in PAPER_AVERAGES.values())]:
        row = [LABELS.get(s, s)]
        for paper, name, digits in PAPER_AVERAGES.values():
            frame = tables[name].frame
            mine = frame.at[AVG, s] if AVG in frame.index and s in frame.columns else float("nan")
            row += [f"{paper[s]:.{digits}f}" if s in paper else MISSING, f"{mine:.{digits}f}" if mine == mine else MISSING]
        frame = tables["table2"].frame
        bpb = frame.at[AVG, s] if AVG in frame.index and s in frame.columns else float("nan")
        row.append(f"{bpb:.3f}" if bpb == bpb else MISSING)
        rows.append(row)
    kind = getattr(getattr(params, "model", None), "kind", "")
    if kind == "scratch":  # the from-scratch scales train their own tokenizer on the corpus
        note = " This run's perplexity is per token of a byte-level tokenizer (bits per byte in the last column)."
    elif kind == "gguf":  # gemma-3-270m: Gemma 3's tokenizer, and the offline corpus rather than MADLAD-400
        note = (" This run's perplexity is per token of Gemma 3's tokenizer on the offline corpus, not MADLAD-400 "
                "(bits per byte in the last column).")
    else:
        note = ""
    return ("## The paper's quoted averages beside this run's\n\n"
            "Averages over families (the tables' Avg. rows). Below the paper scale the absolute values are not "
            f"comparable (other models, data and tasks): compare directions and rankings.{note} "
            f"\"{MISSING}\" = not quoted in the paper's text, or not measured here.\n\n"
            + _md_table(header, rows))


def alignment_strategies() -> list[str]:
    """The strategies the forgetting section asks "does it forget less than Dense?": every registered
    mitigation (``role="mitigation"``), in registry order."""
    return [s.name for s in registry.strategies() if s.role == "mitigation"]


def _forgetting_section(params, tables) -> str:
    """The headline: does CPT forget the base language here, and does alignment forget less? Decided on
    bits per byte (precise even with few documents), English from Table 2's probe row and held-out
    languages from Table 9's Avg. row. Rules: forgetting is measurable when Dense's English bits per byte
    rise by more than 0.05 bits; an alignment strategy forgets clearly less when its rise is at most half
    of Dense's."""
    t2, t9 = tables.get("table2"), tables.get("table9")
    probe = getattr(params, "probe_language", None)
    probe = probe if t2 is not None and probe in t2.frame.index else None
    if t2 is None or probe is None or "base" not in t2.frame.columns or "dense" not in t2.frame.columns:
        return "## Forgetting at this scale\n\nNot measured yet (needs the base's and Dense's English perplexity).\n"
    en = t2.frame.loc[probe]
    base = en["base"]
    rise = {s: en[s] - base for s in t2.frame.columns if s != "base" and en[s] == en[s]}
    lines = ["## Forgetting at this scale\n",
             "Bits per byte on English, the base language no family trains (Table 2's probe row), and on the "
             "held-out relatives (Table 9's Avg. row); a rise is forgetting. Rule: forgetting is measurable when "
             "Dense's English bits per byte rise by more than 0.05; an alignment strategy forgets clearly less "
             "when its rise is at most half of Dense's.\n"]
    header = ["", "Base"] + [LABELS.get(s, s) for s in rise]
    rows = [["English bpb", f"{base:.3f}"] + [f"{en[s]:.3f} ({rise[s]:+.3f})" for s in rise]]
    if t9 is not None and AVG in t9.frame.index and "base" in t9.frame.columns:
        ho = t9.frame.loc[AVG]
        rows.append(["held-out bpb (avg)", f"{ho['base']:.3f}"]
                    + [f"{ho[s]:.3f} ({ho[s] - ho['base']:+.3f})" if s in ho.index and ho[s] == ho[s] else MISSING
                       for s in rise])
    lines.append(_md_table(header, rows) + "\n")
    d = rise.get("dense", float("nan"))
    measurable = d == d and d > 0.05
    less = [s for s in alignment_strategies() if s in rise and measurable and rise[s] <= d / 2]
    lines.append(f"* Dense CPT {'forgets measurably' if measurable else 'does not forget measurably'}: English "
                 f"{base:.3f} → {en['dense']:.3f} bits per byte ({d:+.3f}).")
    if measurable:
        lines.append("* Alignment strategies that forget clearly less (rise at most half of Dense's): "
                     + (", ".join(f"{LABELS.get(s, s)} {rise[s]:+.3f}" for s in less) or "none") + ".")
    return "\n".join(lines) + "\n"


def _per_family_shown(params, results) -> list[str]:
    """The per-family strategies this report is about: those the scale runs and those with results."""
    have = set(results["strategy"].astype(str)) if results is not None and len(results) else set()
    ran = set(getattr(params, "strategy_names", None) or registry.names())
    return [s for s in registry.per_family_names() if s in ran or s in have]


def _dose_section(params, report_dir: Path) -> str:
    """The dose-response study (notebook 08), read from its table: the summary, the perplexity points with
    their paired intervals, where each effect starts, and its two figures."""
    if getattr(params, "dose", None) is None:
        return ""
    import pandas as pd

    from famlib import dose
    from famlib.notebook import figure_dir

    path = dose.dose_dir(params.scale) / "points.csv"
    if not path.exists():
        return "## Dose-response study\n\nNot run yet (no `dose/points.csv`): run notebook 08.\n"
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    wide = dose.wide(table, "perplexity")
    rows = [[*(f"{v:.4g}" if isinstance(v, float) else v for v in r)] for r in wide.itertuples(index=False)]
    onset = dose.onset(table)
    parts = ["## Dose-response study\n",
             "One family's CPT over learning rate x step budget (notebook 08, `famlib.dose`): drift, acquisition "
             "(held-in bits per byte) and forgetting, each change from the base with its paired 95 % interval; "
             "a verdict is `undecided` where the interval spans 0.\n",
             dose.summary(params, table) + "\n",
             "Bits per byte, per point:\n\n" + _md_table(list(wide.columns), rows)]
    if len(onset):
        parts.append("Where each effect starts (Expert drift of the first resolved dose; blank: at no dose):\n\n"
                     + _md_table(list(onset.columns), [[*(f"{v:g}" if isinstance(v, float) and v == v else
                                                          ("" if isinstance(v, float) else v) for v in r)]
                                                       for r in onset.itertuples(index=False)]))
    for stem, cap in (("dose_forgetting", "Forgetting against drift"), ("dose_tradeoff", "Acquisition against forgetting")):
        png = figure_dir(params) / f"{stem}.png"
        if png.exists():
            parts.append(f"**{cap}.**\n\n![{stem}]({relative_link(png, report_dir)})\n")
    return "\n".join(parts)


def write_report(params, figures: Optional[Sequence[Path]] = None, results=None, interpolation=None,
                 distances=None, evidence=None) -> Path:
    """Write ``runs/<scale>/report.md`` and return its path.

    Args:
        params: the scale's parameters.
        figures: saved figure files (``write_figures``'s return); None = make and save them now.
        results, interpolation, distances: the tidy inputs; None = read from ``runs/<scale>/results``.
        evidence: the results' :class:`famlib.evidence.Evidence` (its draws are cached); None = build it.
    """
    from famlib.io import atomic_write_text

    loaded = load_inputs(params) if results is None or interpolation is None or distances is None else None
    results = loaded[0] if results is None else results
    interpolation = loaded[1] if interpolation is None else interpolation
    distances = loaded[2] if distances is None else distances
    from famlib.evidence import Evidence

    evidence = evidence if evidence is not None else Evidence(params, results, iters=params.evaluation.bootstrap_iters)
    if figures is None:
        from famlib.figures import write_figures

        figures = write_figures(params, results, interpolation, distances, evidence=evidence)
    tables = build_tables(params, results, evidence)
    from famlib.evaluate.gates import load_gate_table

    claims = check_claims(params, results, interpolation, distances, evidence=evidence,
                          gates=load_gate_table(params.scale))
    path = report_path(params.scale)
    today = datetime.date.today().isoformat()
    parts = [f"# Reproduction report: scale `{params.scale}` ({today})\n",
             f"{params.description.strip()}\n" if getattr(params, "description", "") else "",
             "Reproduces *Parameter Alignment Mitigates Catastrophic Forgetting in Multilingual Expert Language "
             "Models*. Below the paper scale, compare directions and rankings with the paper, not absolute values. "
             f"Per-family strategies ({', '.join(LABELS[s] for s in _per_family_shown(params, results))}) are "
             "answered by the "
             "model of the language's family; the others are single models.\n",
             _what_ran(params, results, interpolation, distances),
             _forgetting_section(params, tables),
             _gates_section(params),
             _prompts_section(results),
             _differences_section(params, results, evidence),
             _beyond_section(params, results, evidence),
             _dose_section(params, path.parent),
             _claims_section(claims),
             _scales_section(claims, params.scale),
             _paper_averages(params, tables),
             "## Tables\n\nAlso under `tables/` as Markdown and LaTeX.\n"]
    for table in tables.values():
        parts.append(table.markdown())
    parts.append("## Figures\n")
    pngs = [Path(f) for f in figures if str(f).endswith(".png")]
    if not pngs:
        parts.append("No figures with data yet.\n")
    for png in pngs:
        stem = png.stem
        cap = FIGURE_CAPTIONS.get(stem, stem)
        parts.append(f"**{cap}**\n\n![{stem}]({relative_link(png, path.parent)})\n")
    missing = [s for s in FIGURE_CAPTIONS if s not in {p.stem for p in pngs}]
    if missing:
        parts.append(f"Not drawn (no data yet): {', '.join(missing)}.\n")
    atomic_write_text(path, "\n".join(p for p in parts if p))
    write_claims(params.scale, claims)
    return path

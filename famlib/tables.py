"""The paper's Tables 2, 3, 4, 5 and 9, built from the tidy results table and rendered as Markdown and LaTeX.

Rules (the paper's, section 3.1 and the table captions, adapted where the offline scales differ):

* **Headline metric.** Rows with ``primary == True``: perplexity -> ``bits_per_byte`` (lower is better),
  comprehension and reasoning -> ``acc_mutual_info`` offline (PMI scoring; lm-eval's ``acc`` for the
  paper's Belebele and Global-PIQA and for the English comprehension row from BIG-bench,
  ``evaluation.english_task``), translation -> ``chrf``. The token-perplexity variants of
  Tables 2 and 9 use the ``token_perplexity`` rows instead.
* **Which model answers for a language.** Per-family strategies (``per_family`` in the registry,
  :mod:`famlib.strategies.registry`: ``expert``, ``freeze``, ``l2sp``, ``expert_reverted``): the model trained on that language's family (rows with
  ``expert_family == language_family``). Single models (``base``, ``dense``, ``dense_reverted``, ``soup``,
  ``freeze_soup``): the one model. The probe language (English) is evaluated by every model; for a
  per-family strategy its English value is the **mean over that strategy's family models**.
* **Averaging.** A family cell is the unweighted mean over the family's languages (translation: first the
  mean of the two directions per language, then over languages). The ``avg`` row is the unweighted mean of
  the family rows and is left empty ("–") for a strategy that misses any family the table shows, so an
  average never mixes different family sets. A cell averaged over fewer languages than the fullest cell of
  its row is marked with a dagger (†). Missing cells are "–"; nothing is filled in.
* **Marks.** Per row, over the strategies present, compared at the displayed precision: **bold** = best
  (every tie is bold), underline = within the table's threshold of the best. Thresholds: the paper's 0.2
  (token perplexity), 0.5 pp (accuracy) and 1 chrF point; for bits per byte 0.01 bpb, which is what the
  paper's 0.2 perplexity near a perplexity of 7 is (about 3 %, i.e. 0.04 bits per token, about 0.01 bits per
  byte at some 4 bytes per token).
* **Held-out languages at the paper scale.** German is left out of the Germanic held-out results, as in the
  paper (``famlib.evaluate.paper.PAPER_GAPS``).

Perplexity at the offline scales: one byte-level tokenizer makes per-token perplexity incomparable across
languages, so Tables 2 and 9 report bits per byte; the token-perplexity variant compares strategies within a
row only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from famlib.analysis import AVG, _isnan, answering_rows, family_frame, metric_rows, present_strategies
from famlib.paths import tables_dir
from famlib.strategies import registry

MISSING = "–"  # an en dash: a cell that was not measured
PARTIAL = "†"  # a cell averaged over fewer languages than the fullest cell of its row
BETTER = "▲"  # the paired 95 % interval of (cell - Base) excludes 0, on the better side
WORSE = "▼"  # ... on the worse side

# Display labels, {strategy: label}, read from the registry when looked up (a strategy's module declares it).
LABELS = registry.LABELS


# ----------------------------------------------------------------------------------------------------
# The table object: values, marks, rendering
# ----------------------------------------------------------------------------------------------------
@dataclass
class Table:
    """One results table: ``frame`` (rows x strategies, NaN = not measured) and how to read it."""

    name: str  # file stem, e.g. "table3"
    title: str  # e.g. "Table 3: held-in comprehension"
    caption: str
    frame: "object"  # pandas DataFrame: index = families, "avg", probe; columns = strategies
    lower_is_better: bool
    threshold: float
    decimals: int
    stderr: "object" = None  # DataFrame like ``frame`` (accuracies), else None
    partial: "object" = None  # DataFrame of bool like ``frame``: averaged over fewer languages than the row's fullest
    row_labels: dict = field(default_factory=dict)
    resolved: "object" = None  # DataFrame of BETTER / WORSE / "" like ``frame``: see :func:`resolve_against_base`

    def marks(self):
        """``"bold"`` / ``"underline"`` / ``""`` per cell, from :func:`marks`."""
        return marks(self.frame, lower_is_better=self.lower_is_better, threshold=self.threshold,
                     decimals=self.decimals)

    def _cells(self, bold, underline, missing):
        m = self.marks()
        out = {}
        for row in self.frame.index:
            cells = []
            for col in self.frame.columns:
                v = self.frame.at[row, col]
                if v is None or (isinstance(v, float) and math.isnan(v)):
                    cells.append(missing)
                    continue
                text = f"{v:.{self.decimals}f}"
                text = bold(text) if m.at[row, col] == "bold" else underline(text) if m.at[row, col] == "underline" else text
                if self.partial is not None and bool(self.partial.at[row, col]):
                    text += PARTIAL
                if self.resolved is not None and row in self.resolved.index and col in self.resolved.columns:
                    text += self.resolved.at[row, col]
                cells.append(text)
            out[row] = cells
        return out

    def _label(self, row) -> str:
        return self.row_labels.get(row, str(row).capitalize() if row != AVG else "Avg.")

    def markdown(self) -> str:
        """Caption, then a GitHub Markdown table (bold ``**x**``, underline ``<u>x</u>``, missing "–")."""
        cells = self._cells(lambda t: f"**{t}**", lambda t: f"<u>{t}</u>", MISSING)
        head = "| | " + " | ".join(LABELS.get(c, c) for c in self.frame.columns) + " |"
        rule = "|---|" + "---:|" * len(self.frame.columns)
        body = [f"| {self._label(row)} | " + " | ".join(c) + " |" for row, c in cells.items()]
        return f"**{self.title}.** {self.caption}\n\n" + "\n".join([head, rule, *body]) + "\n"

    def latex(self) -> str:
        """A booktabs ``table`` environment (``\\textbf``, ``\\underline``, missing "--")."""
        cells = self._cells(lambda t: rf"\textbf{{{t}}}", lambda t: rf"\underline{{{t}}}", "--")
        lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(self.caption)}}}",
                 rf"\label{{tab:famlib-{self.name}}}", r"\begin{tabular}{l" + "r" * len(self.frame.columns) + "}",
                 r"\toprule", " & ".join([""] + [tex_escape(LABELS.get(c, c)) for c in self.frame.columns]) + r" \\",
                 r"\midrule"]
        for row, c in cells.items():
            if row == AVG:
                lines.append(r"\midrule")
            lines.append(" & ".join([tex_escape(self._label(row))] + [tex_escape_marks(t) for t in c]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
        return "\n".join(lines) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
        "→": r"$\to$", "–": "--", "±": r"$\pm$", "≤": r"$\le$", "≥": r"$\ge$", "α": r"$\alpha$", "†": r"$^\dagger$",
        "×": r"$\times$", "▲": r"$^\blacktriangle$", "▼": r"$^\blacktriangledown$"}  # the triangles: amssymb


def tex_escape_marks(cell: str) -> str:
    """A rendered cell's marks in LaTeX (its number and \\textbf / \\underline are already LaTeX)."""
    return "".join(_TEX[ch] if ch in (PARTIAL, BETTER, WORSE) else ch for ch in cell)


def tex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few symbols captions use (↑ ↓ → – ± † ...) to LaTeX."""
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def marks(frame, *, lower_is_better: bool, threshold: float, decimals: int):
    """Per row: ``"bold"`` for the best value(s), ``"underline"`` within ``threshold`` of it, else ``""``.

    Values are compared as displayed (rounded to ``decimals``), so cells that read the same are tied and
    all bold; missing cells are never marked. A row with one value marks it bold.
    """
    import pandas as pd

    out = pd.DataFrame("", index=frame.index, columns=frame.columns)
    eps = 1e-9
    for row in frame.index:
        vals = pd.to_numeric(frame.loc[row], errors="coerce").round(decimals).dropna()
        if vals.empty:
            continue
        best = vals.min() if lower_is_better else vals.max()
        for col, v in vals.items():
            gap = abs(v - best)
            if gap <= eps:
                out.at[row, col] = "bold"
            elif gap <= threshold + eps:
                out.at[row, col] = "underline"
    return out


# ----------------------------------------------------------------------------------------------------
# Building family tables
# ----------------------------------------------------------------------------------------------------
# ----------------------------------------------------------------------------------------------------
# The paper's tables
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    task: str
    split: str
    metric: str
    threshold: float
    decimals: int
    what: str  # what the values are
    over: str  # what the family rows average over
    probe_row: bool


SPECS = {
    "table2": Spec("table2", "Table 2: training-language perplexity (bits per byte)", "perplexity", "held_in",
                   "bits_per_byte", 0.01, 3, "Bits per byte ↓ on each language's held-out evaluation text",
                   "the family's training (held-in) languages", True),  # the English row: what every model forgot of the base language
    "table2_token_perplexity": Spec("table2_token_perplexity", "Table 2 (token perplexity): training languages",
                                    "perplexity", "held_in", "token_perplexity", 0.2, 2,
                                    "Per-token perplexity ↓ on each language's held-out evaluation text",
                                    "the family's training (held-in) languages", True),
    "table3": Spec("table3", "Table 3: held-in comprehension", "comprehension", "held_in", "acc", 0.005, 3,
                   "Comprehension accuracy ↑ (the paper's Belebele axis; offline: PMI-scored choice of a passage verse's English rendering; English, where a scale has it: a BIG-bench task, log-likelihood-scored)", "the family's training (held-in) languages", True),
    "table4": Spec("table4", "Table 4: reasoning", "reasoning", "held_in", "acc", 0.005, 3,
                   "Reasoning accuracy ↑ (the paper's Global-PIQA axis; offline: PMI-scored verse match)", "the family's training (held-in) languages", True),
    "table5": Spec("table5", "Table 5: held-in translation", "translation", "held_in", "chrf", 1.0, 1,
                   "chrF ↑, en→xx and xx→en averaged (the paper's FLORES-200 axis)", "the family's training (held-in) languages",
                   True),
    "table9": Spec("table9", "Table 9: held-out-language perplexity (bits per byte)", "perplexity", "held_out",
                   "bits_per_byte", 0.01, 3, "Bits per byte ↓ on held-out (never trained on) languages",
                   "the family's held-out relatives", False),
    "table9_token_perplexity": Spec("table9_token_perplexity", "Table 9 (token perplexity): held-out languages",
                                    "perplexity", "held_out", "token_perplexity", 0.2, 2,
                                    "Per-token perplexity ↓ on held-out (never trained on) languages",
                                    "the family's held-out relatives", False),
    "table9b": Spec("table9b", "Table 9b: held-out comprehension", "comprehension", "held_out", "acc", 0.005, 3,
                    "Comprehension accuracy ↑ on held-out languages", "the family's held-out relatives", False),
    "table9c": Spec("table9c", "Table 9c: held-out translation", "translation", "held_out", "chrf", 1.0, 1,
                    "chrF ↑ on held-out languages, en→xx and xx→en averaged", "the family's held-out relatives", False),
}
TABLE_ORDER = tuple(SPECS)


def _threshold_text(spec: Spec) -> str:
    if spec.metric == "bits_per_byte":
        return ("within 0.01 bpb of best (the paper's 0.2 perplexity near perplexity 7 is about 3 %, "
                "i.e. about 0.01 bits per byte)")
    if spec.metric == "acc":
        return "within 0.5 pp of best"
    if spec.metric == "chrf":
        return "within 1 chrF point of best"
    return f"within {spec.threshold:g} of best"


def _counts_text(info: dict, rows, probe: Optional[str], unit: str) -> str:
    parts = []
    for row in rows:
        if row == AVG or row not in info:
            continue
        d = info[row]
        n = d["n"]
        nt = "" if not n else (f"{n[0]}" if len(n) == 1 else f"{n[0]}–{n[-1]}")
        label = "English probe" if row == probe else str(row).capitalize()
        parts.append(f"{label}: {', '.join(d['languages'])}" + (f" ({nt} {unit} each)" if nt else ""))
    return "; ".join(parts)


def build_table(results, name: str, *, families: Optional[Sequence[str]] = None, probe: Optional[str] = None,
                strategies: Optional[Sequence[str]] = None, exclude: Iterable[str] = ()) -> Table:
    """Table ``name`` (a key of :data:`SPECS`) from the tidy results.

    Args:
        results: the tidy results frame (``load_results``).
        families: row order (default: order of appearance); families without any value are dropped.
        probe: the probe language code (default: the rows whose split is ``base``).
        strategies: the columns (default: every strategy present in ``results``, in the paper's order).
        exclude: languages left out (the paper drops German from the Germanic held-out results).
    """
    spec = SPECS[name]
    strategies = list(strategies) if strategies is not None else present_strategies(results)
    metric = None if spec.metric == "acc" else spec.metric  # accuracy: each task's headline (PMI offline)
    answers = answering_rows(results, spec.task, metric=metric, splits=[spec.split], exclude=exclude)
    probe_answers = None  # the probe row; at the paper scale English is also a Germanic training language
    if spec.probe_row:
        probe_answers = answering_rows(results, spec.task, metric=metric, probe=probe)
        keep = probe_answers["split"].astype(str).eq("base") if probe is None else probe_answers["language"].astype(str).eq(probe)
        probe_answers = probe_answers[keep]
    ff = family_frame(answers, probe_answers, families=families, strategies=strategies)
    values, se, partial, info, probe_code = ff
    unit = "documents" if spec.task == "perplexity" else "items per direction" if spec.task == "translation" else "items"
    from famlib.evaluate.results import LOWER_IS_BETTER

    lower = spec.metric in LOWER_IS_BETTER
    fam_rows = [r for r in values.index if r not in (AVG, probe_code)]
    names = metric_rows(results, spec.task, metric, None) if results is not None and len(results) else None
    names = sorted(set(names["task_name"].dropna().astype(str))) if names is not None and "task_name" in names else []
    task_text = f", task {', '.join(names)}" if names else ""
    per_family = [LABELS.get(s, s) for s in values.columns if registry.is_known(s) and registry.get(s).per_family]
    caption = (f"{spec.what}{task_text}. Each family row averages {spec.over} (unweighted); "
               f"{'lower' if lower else 'higher'} is better. Per-family strategies ({', '.join(per_family) or 'none'}) "
               f"report the model trained on that row's family; the others are single models. "
               f"Avg. = unweighted mean of the {len(fam_rows)} family rows (\"{MISSING}\" if a strategy misses a family).")
    if probe_code is not None:
        caption += (f" The English row is the probe language every model is evaluated on; for a per-family strategy it is "
                    f"the mean over its family models.")
    caption += f" Bold = best per row; underline = {_threshold_text(spec)}; \"{MISSING}\" = not measured."
    if partial.to_numpy().any():
        caption += f" {PARTIAL} = averaged over fewer languages than the row's fullest cell."
    counts = _counts_text(info, values.index, probe_code, unit)
    if counts:
        caption += f" Languages: {counts}."
    if spec.split == "held_out" and "de" in set(exclude):
        caption += " German (de) excluded from Germanic, as in the paper."
    limits = [d["limit"] for d in info.values() if d["limit"] is not None and not _isnan(d["limit"])]
    if limits:
        caption += f" Evaluated with a sample limit of {int(max(limits))} items: not a complete run."
    if spec.metric == "token_perplexity":
        caption += (" Per-token perplexity depends on how finely the tokenizer cuts each language (byte-level at the "
                    "offline scales), so compare strategies within a row; the bits-per-byte table compares across rows.")
    labels = {probe_code: f"English ({probe_code}, probe)"} if probe_code else {}
    stderr = se if spec.metric == "acc" else None
    return Table(name, spec.title, caption, values, lower, spec.threshold, spec.decimals, stderr, partial, labels)


def table_kwargs(params) -> dict:
    """The keyword arguments :func:`build_table` takes from a scale's params."""
    exclude = ()
    if params.scale == "paper":
        from famlib.evaluate.paper import PAPER_GAPS

        exclude = tuple(lang for (axis, lang) in PAPER_GAPS if axis == "*")
    return {"families": list(params.families), "probe": params.probe_language, "exclude": exclude}


def build_tables(params, results, evidence=None) -> dict[str, Table]:
    """Every table of :data:`SPECS` for ``params``'s scale: ``{name: Table}``.

    ``exclude`` (German at the paper scale) applies to the held-out tables only. With ``evidence`` (the
    results' :class:`famlib.evidence.Evidence`), each cell is marked where its paired 95 % interval against
    the Base column resolves the difference (:func:`resolve_against_base`).
    """
    kw = table_kwargs(params)
    out = {}
    for name, spec in SPECS.items():
        exclude = kw["exclude"] if spec.split == "held_out" else ()
        out[name] = build_table(results, name, families=kw["families"], probe=kw["probe"], exclude=exclude)
        if evidence is not None:
            resolve_against_base(out[name], evidence, exclude=exclude)
    return out


def resolve_against_base(table: Table, evidence, exclude: Iterable[str] = ()) -> Table:
    """Mark ``table``'s cells whose paired 95 % interval of (cell - Base) excludes 0: :data:`BETTER` or
    :data:`WORSE`; "" where the interval spans 0 or has no per-item records. Sets ``table.resolved``
    (and adds the marks' legend to the caption) and returns the table.

    Each cell's interval averages the same languages (and models) as the cell: a family row its family's
    languages of the table's split, Avg. every family row's, the probe row the probe language, each kept
    where both the strategy and Base have per-item records (:meth:`famlib.evidence.Evidence.present`).
    LaTeX renders the marks with amssymb's ``\\blacktriangle``.
    """
    import pandas as pd

    from famlib.evidence import METRIC, resolved

    spec = SPECS[table.name]
    if METRIC.get(spec.task) != ("accuracy" if spec.metric == "acc" else spec.metric) or "base" not in table.frame.columns:
        return table  # the evidence scores one metric per axis: a table of another (token perplexity) is unmarked
    probe = evidence.params.probe_language
    fams = [r for r in table.frame.index if r in evidence.params.families]
    res = pd.DataFrame("", index=table.frame.index, columns=table.frame.columns)
    for row in table.frame.index:
        if row == AVG:
            groups = evidence.groups(spec.split, families=fams, exclude=exclude)
        elif row in evidence.params.families:
            groups = evidence.groups(spec.split, families=[row], exclude=exclude)
        elif row == probe:
            groups = {probe: [probe]}
        else:
            continue
        if not groups:
            continue
        for col in table.frame.columns:
            if col == "base" or _isnan(table.frame.at[row, col]):
                continue
            both = evidence.present([col, "base"], spec.task, groups)
            verdict = resolved(evidence.diff(col, "base", spec.task, both), table.lower_is_better) if both else ""
            res.at[row, col] = {"better": BETTER, "worse": WORSE}.get(verdict, "")
    table.resolved = res
    table.caption += (f" {BETTER} / {WORSE} = better / worse than Base: the paired 95 % interval of the difference "
                      f"(cluster bootstrap over item keys) excludes 0; unmarked = undecided or no per-item records.")
    return table


def write_tables(params, results=None, evidence=None) -> list[Path]:
    """Write every table as ``runs/<scale>/tables/<name>.md`` and ``.tex`` (atomically); return the paths.
    Cells are marked against Base by ``evidence`` (built from the results' per-item records when not given)."""
    from famlib.evaluate.results import load_results
    from famlib.evidence import for_results
    from famlib.io import atomic_write_text

    results = load_results(params.scale) if results is None else results
    evidence = evidence if evidence is not None else for_results(params, results)
    out = []
    for name, table in build_tables(params, results, evidence).items():
        for ext, text in (("md", table.markdown()), ("tex", table.latex())):
            path = tables_dir(params.scale) / f"{name}.{ext}"
            atomic_write_text(path, text)
            out.append(path)
    return out

"""What each notebook found, in a few computed sentences: the cell every executed notebook ends with.

Each function takes what its notebook already holds (no model is loaded, nothing is evaluated again) and
returns Markdown, so that an executed notebook closes with this run's numbers instead of fixed prose.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

from famlib.config import Params

__all__ = ["base_model", "data_prep", "interpolation", "posthoc", "tables_and_claims", "train_expert"]


def _num(x: Any, digits: int = 3) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return "n/a" if math.isnan(v) else f"{v:.{digits}f}"


def data_prep(params: Params, stats, check: str) -> str:
    """Notebook 01: how much text per role and split, and the split check's verdict."""
    by_split = stats.groupby("split")["bytes"].sum() / 1e6
    by_role = stats[stats["split"] == "train"].groupby("role")["language"].nunique()
    roles = ", ".join(f"{n} {role.replace('_', '-')}" for role, n in by_role.items())
    splits = ", ".join(f"{s} {by_split.get(s, 0.0):.2f} MB" for s in ("train", "validation", "evaluation"))
    return (f"**{params.scale}**: {stats['language'].nunique()} languages ({roles or 'evaluation text only'}) in "
            f"{stats['text'].nunique()} texts; {splits}. Split check: {check.split(';')[0]}.")


def base_model(params: Params, summary) -> str:
    """Notebook 02: the base's bits per byte by role, against the unigram baseline."""
    langs = summary.languages
    if "bits_per_byte" not in langs:
        return f"**{params.scale}** base: no perplexity was measured."
    parts = []
    for role, label in (("base", "English"), ("held_in", "held-in"), ("held_out", "held-out")):
        rows = langs[langs["role"] == role]
        if len(rows):
            parts.append(f"{label} {_num(rows['bits_per_byte'].mean())} bits per byte "
                         f"({_num(rows['bpb_vs_unigram'].mean(), 2)}x the unigram model's, {len(rows)} language(s))")
    worst = langs["bpb_vs_unigram"].idxmax()  # famlib.base.base_summary's ratio to the unigram baseline
    return (f"**{params.scale}** base: " + "; ".join(parts) + f". Closest to the unigram baseline: {worst} "
            f"({_num(langs.loc[worst, 'bits_per_byte'])} against {_num(langs.loc[worst, 'unigram_bpb'])}).")


def train_expert(params: Params, mid: str, model_dir, metrics, drift) -> str:
    """Notebook 03: steps, tokens, validation loss from its first validation to its best, and the relative drift
    per layer group (``drift``: :func:`famlib.surgery.posthoc_distances` of the model)."""
    prov = json.loads((model_dir / "famlib_provenance.json").read_text())
    t = prov.get("train", {})
    first = metrics["val_loss"].dropna() if "val_loss" in metrics else []
    start = f"{_num(first.iloc[0])} at step {int(metrics.loc[first.index[0], 'step'])} -> " if len(first) else ""
    from famlib.surgery import group_distances

    groups = group_distances(drift).loc[mid] if len(drift) else {}
    moved = ", ".join(f"{g} {_num(groups[g], 4)}" for g in ("first", "middle", "last", "outside") if g in groups)
    stop = " (stopped early)" if t.get("stopped_early") else ""
    return (f"**{mid}** ({params.scale}): {t.get('steps', '?')} of {t.get('total_steps', '?')} steps{stop}, "
            f"{t.get('tokens', 0):,} tokens in {_num(t.get('seconds', float('nan')), 0)} s; validation loss "
            f"{start}best {_num(t.get('best_val_loss'))} at step {t.get('best_step', '-')}. Relative drift from the "
            f"base per group (||delta|| / ||base||): {moved or 'not measured'}.")


def posthoc(results: Sequence, checks: Iterable[str], groups) -> str:
    """Notebook 04: which models were written, kept or could not be made, and the revert checks."""
    by_status: dict[str, list[str]] = {}
    for r in results:
        by_status.setdefault(r.status, []).append(r.model_id)
    made = "; ".join(f"{status}: {', '.join(ids)}" for status, ids in by_status.items()) or "no post-hoc model"
    checks = list(checks)
    middle = groups["middle"] if "middle" in getattr(groups, "columns", []) else None
    far = "" if middle is None or not len(middle) else (
        f" Farthest middle group from the base: {middle.idxmax()} ({_num(middle.max(), 4)}).")
    return f"{made}. {len(checks)} reverted model(s) checked exactly (middle at the base, the rest tuned).{far}"


def interpolation(effects) -> str:
    """Notebook 06: per task, the layer group whose move from the base to Dense changes the held-in score most."""
    if effects is None or not len(effects):
        return "No interpolation point was measured."
    held = effects[effects["split"] == "held_in"]
    lines = []
    for (task, direction), g in held.groupby(["task", "direction"], sort=True):
        top = g.sort_values("abs_change", ascending=False).iloc[0]
        label = task + (f" {direction}" if direction else "")
        others = ", ".join(f"{r.group} {r.change:+.3f}" for r in g.itertuples() if r.group != top["group"])
        lines.append(f"* {label}: {top['group']} moves it most ({top['change']:+.3f}, "
                     f"{'monotonic' if top['monotonic'] else 'not monotonic'}); {others}")
    return "Change from alpha 0 (group at the base) to alpha 1 (Dense), held-in mean:\n\n" + "\n".join(lines)


def tables_and_claims(found: Sequence) -> str:
    """Notebook 07: how many of the paper's claims hold, do not hold, are undecided or were not measured."""
    counts: dict[str, list[str]] = {}
    for c in found:
        counts.setdefault(c.verdict, []).append(c.id)
    order = ("holds", "does not hold", "undecided", "not measured")
    parts = [f"**{v}** {len(counts[v])} ({', '.join(counts[v])})" for v in order if v in counts]
    return f"Of the paper's {len(found)} claims on this run: " + "; ".join(parts) + "."

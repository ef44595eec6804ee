"""The paper's Figures 2-5, an acquisition-forgetting frontier and per-layer drift, from the tidy results.

Every function takes tidy frames and returns a matplotlib Figure. A figure whose data is missing comes
back as a figure that says so (its ``famlib_empty`` attribute is True), so a notebook never crashes on
partial results; :func:`write_figures` saves only figures with data.

* ``figure2``: held-out comprehension accuracy and held-out translation chrF (directions averaged), each
  strategy minus the base, averaged over families (the ``avg`` rows of Tables 9b and 9c: a strategy that
  misses a family gets no bar). Error bars on accuracy: one standard error of the difference (the two
  standard errors combined as if independent, which overstates it for paired items).
* ``figure3``: causal layer interpolation, theta_G(alpha) = base_G + alpha (Dense_G - base_G), other layers
  at Dense. (a) held-in comprehension accuracy vs alpha, one line per group, with error bars; (b) held-in
  chrF vs alpha per group, en->xx solid and xx->en dashed. Reference lines: base model and chance.
* ``figure4`` / ``figure5``: the same per family (one panel each), accuracy / chrF (directions averaged).
* ``frontier``: x = bits-per-byte gain over base on the family's training languages (base - model; right =
  more acquisition), y = comprehension retention, model accuracy minus base accuracy averaged over English
  and the family's held-out languages (up = less forgetting). One point per strategy and family: marker per
  strategy, colour per family; for per-family strategies the family's own model (its English too).
* ``drift``: relative distance to the base per decoder layer, ||theta_l - theta_l^0|| / ||theta_l^0||,
  averaged over a strategy's family models, the first / middle / last groups shaded; the parameters outside
  the decoder layers (embeddings, final norm) as a separate point at x = -1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from famlib.plots import plt
from famlib.strategies import registry
from famlib.analysis import (AVG, INTERP_GROUPS, answering_rows, base_mean, interpolation_curves, metric_rows,
                             present_strategies)
from famlib.tables import LABELS, build_table

GROUP_COLORS = {"first": "#4C72B0", "middle": "#C44E52", "last": "#55A868"}


def strategy_color(name: str) -> str:
    """A strategy's colour as its module declares it; grey for one that declares none (or is not registered)."""
    entry = registry.get(name) if registry.is_known(name) else None
    return (entry.color if entry is not None else None) or "#777"


def strategy_marker(name: str) -> str:
    """A strategy's marker as its module declares it; a circle for one that declares none."""
    entry = registry.get(name) if registry.is_known(name) else None
    return (entry.marker if entry is not None else None) or "o"


FAMILY_CMAP = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B2", "#937860", "#DA8BC3", "#8C8C8C"]


def _empty(title: str, why: str):
    """A small figure that says what is missing; ``famlib_empty`` marks it as not worth saving."""
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{title}\nnot measured: {why}", ha="center", va="center", fontsize=10, wrap=True)
    fig.famlib_empty = True
    return fig


def _done(fig):
    fig.famlib_empty = False
    return fig


# ----------------------------------------------------------------------------------------------------
# Figure 2: held-out deltas against the base
# ----------------------------------------------------------------------------------------------------
def heldout_deltas(results, *, families: Optional[Sequence[str]] = None, exclude=(), evidence=None):
    """Per strategy: held-out comprehension accuracy and chrF minus the base's (``avg`` rows of Tables 9b/9c).

    Returns a DataFrame indexed by strategy (base excluded) with columns ``acc_delta, acc_se, chrf_delta`` and,
    with ``evidence`` (a :class:`famlib.evidence.Evidence`), the paired 95 % interval of each difference,
    ``acc_low, acc_high, chrf_low, chrf_high``.
    """
    import pandas as pd

    acc = build_table(results, "table9b", families=families, exclude=exclude)
    chrf = build_table(results, "table9c", families=families, exclude=exclude)
    strategies = [s for s in present_strategies(results) if s != "base"]
    cols = ["acc_delta", "acc_se", "chrf_delta", "acc_low", "acc_high", "chrf_low", "chrf_high"]
    out = pd.DataFrame(index=strategies, columns=cols, dtype=float)
    groups = evidence.groups("held_out", families=families, exclude=exclude) if evidence is not None else None
    for s in strategies:
        if AVG in acc.frame.index and "base" in acc.frame.columns and s in acc.frame.columns:
            out.at[s, "acc_delta"] = acc.frame.at[AVG, s] - acc.frame.at[AVG, "base"]
            out.at[s, "acc_se"] = np.hypot(acc.stderr.at[AVG, s], acc.stderr.at[AVG, "base"])
        if AVG in chrf.frame.index and "base" in chrf.frame.columns and s in chrf.frame.columns:
            out.at[s, "chrf_delta"] = chrf.frame.at[AVG, s] - chrf.frame.at[AVG, "base"]
        for axis, key in (("comprehension", "acc"), ("translation", "chrf")):
            iv = evidence.diff(s, "base", axis, groups) if groups else None
            if iv is not None:
                out.at[s, f"{key}_delta"], out.at[s, f"{key}_low"], out.at[s, f"{key}_high"] = iv.estimate, iv.low, iv.high
    return out


def figure2(results, *, families: Optional[Sequence[str]] = None, exclude=(), evidence=None):
    """Held-out comprehension accuracy delta and translation chrF delta vs base, averaged over families; the
    error bars are the paired 95 % intervals when ``evidence`` is given (±1 s.e. of the table otherwise)."""
    d = heldout_deltas(results, families=families, exclude=exclude, evidence=evidence)
    if d[["acc_delta", "chrf_delta"]].isna().all().all():
        return _empty("Figure 2: held-out deltas vs base", "no held-out comprehension or translation for base and a CPT strategy")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    panels = (("acc_delta", "acc_se", "Δ accuracy vs base (pp)", "(a) Held-out comprehension accuracy", 100),
              ("chrf_delta", None, "Δ chrF vs base", "(b) Held-out translation chrF (en→xx, xx→en averaged)", 1))
    for ax, (col, se_col, ylabel, title, scale) in zip(axes, panels):
        sub = d[col].dropna()
        if sub.empty:
            ax.axis("off")
            ax.text(0.5, 0.5, f"{title}: not measured", ha="center", va="center")
            continue
        x = np.arange(len(sub))
        key = col.split("_")[0]
        if d.loc[sub.index, f"{key}_low"].notna().all():  # paired intervals: asymmetric bars
            err = np.vstack([(sub - d.loc[sub.index, f"{key}_low"]) * scale, (d.loc[sub.index, f"{key}_high"] - sub) * scale])
        else:
            err = d.loc[sub.index, se_col] * scale if se_col else None
        bars = ax.bar(x, sub * scale, yerr=err, capsize=3, color=[strategy_color(s) for s in sub.index],
                      edgecolor="black", linewidth=0.5)
        # the values in a row above the plot: beside the bars they collide with the intervals' whiskers
        for xi, v in zip(x, sub * scale):
            ax.text(xi, 1.01, f"{v:+.1f}", transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=7)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, [LABELS.get(s, s) for s in sub.index], rotation=30, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10, pad=14)  # room for the row of values
        ax.grid(axis="y", alpha=0.3)
    bars_are = ("; error bars: paired 95 % intervals (cluster bootstrap)" if d["acc_low"].notna().any() or d["chrf_low"].notna().any()
                else "; error bars: ±1 s.e." if d["acc_se"].notna().any() else "")
    fig.suptitle("Figure 2: held-out languages, each strategy minus the base model (mean over families; 0 = base)"
                 + bars_are, fontsize=10)
    return _done(fig)


# ----------------------------------------------------------------------------------------------------
# Figures 3-5: layer interpolation
# ----------------------------------------------------------------------------------------------------
def _chance(results, interpolation, task: str) -> float:
    for df in (interpolation, results):
        if df is not None and len(df) and "chance" in df.columns:
            r = metric_rows(df, task, None, ["held_in"])
            if len(r) and r["chance"].notna().any():
                return float(r["chance"].mean())
    return float("nan")


def _curve(ax, c, color, label, style="-", errors=True, shift=0.0):
    ax.errorbar(c["alpha"] + shift, c["value"], yerr=c["stderr"] if errors and c["stderr"].notna().any() else None,
                fmt="o" + style, color=color, label=label, capsize=2, ms=4, lw=1.5)


def figure3(interpolation, results=None):
    """(a) held-in comprehension accuracy vs alpha per group; (b) held-in chrF vs alpha per group and direction."""
    acc = interpolation_curves(interpolation, "comprehension", results=results)
    chrf = interpolation_curves(interpolation, "translation", results=results, by_direction=True)
    if acc.empty and chrf.empty:
        return _empty("Figure 3: layer interpolation", "no interpolation.csv rows (notebook 06 not run)")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.4), layout="constrained")
    for i, g in enumerate(INTERP_GROUPS):
        c = acc[acc["group"] == g]
        if len(c):  # small horizontal offsets keep the error bars apart
            _curve(a, c, GROUP_COLORS[g], f"{g} layers", shift=0.012 * (i - 1))
    ref = base_mean(results, "comprehension") if results is not None else float("nan")
    if ref == ref:
        a.axhline(ref, color="#555", ls="--", lw=1, label="base model")
    ch = _chance(results, interpolation, "comprehension")
    if ch == ch:
        a.axhline(ch, color="#C44E52", ls=":", lw=1, label="chance")
    a.set_title("(a) Held-in comprehension accuracy", fontsize=10)
    a.set_ylabel("accuracy (mean over held-in languages)")
    for g in INTERP_GROUPS:
        for direction, style in (("en-xx", "-"), ("xx-en", "--")):
            c = chrf[(chrf["group"] == g) & (chrf["direction"] == direction)]
            if len(c):
                _curve(b, c, GROUP_COLORS[g], f"{g}, {direction.replace('-', '→')}", style, errors=False)
    if results is not None:
        refs = base_mean(results, "translation", by_direction=True)
        for direction, v in refs.items():
            b.axhline(v, color="#555", ls="--" if direction == "xx-en" else "-", lw=0.8, alpha=0.6)
        if len(refs):
            b.plot([], [], color="#555", lw=0.8, label="base model (per direction)")
    b.set_title("(b) Held-in translation chrF by direction", fontsize=10)
    b.set_ylabel("chrF (mean over held-in languages)")
    for ax in (a, b):
        ax.set_xlabel("α  (0 = group reset to base, 1 = Dense CPT)")
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle("Figure 3: interpolating one layer group between the base and Dense CPT (other layers at Dense)",
                 fontsize=11)
    return _done(fig)


def _per_family(curves, results, task: str, title: str, ylabel: str, families=None):
    fams = list(families) if families is not None else list(dict.fromkeys(curves["language_family"].astype(str)))
    fams = [f for f in fams if (curves["language_family"].astype(str) == f).any()]
    ncols = min(3, len(fams))
    nrows = int(np.ceil(len(fams) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3.3 * nrows), squeeze=False, sharex=True,
                             layout="constrained")
    refs = base_mean(results, task, by_family=True) if results is not None else None
    for ax, fam in zip(axes.flat, fams):
        sub = curves[curves["language_family"].astype(str) == fam]
        for i, g in enumerate(INTERP_GROUPS):
            c = sub[sub["group"] == g]
            if len(c):
                _curve(ax, c, GROUP_COLORS[g], f"{g} layers", errors=task != "translation", shift=0.012 * (i - 1))
        if refs is not None and fam in getattr(refs, "index", []):
            ax.axhline(refs[fam], color="#555", ls="--", lw=1, label="base model")
        ax.set_title(f"{fam.capitalize()} ({int(sub['languages'].max())} held-in languages)", fontsize=10)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1])
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(fams):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    for ax in axes[-1, :]:
        ax.set_xlabel("α  (0 = base, 1 = Dense)")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=11)
    return _done(fig)


def figure4(interpolation, results=None, families: Optional[Sequence[str]] = None):
    """Held-in comprehension accuracy under first / middle / last interpolation, one panel per family."""
    c = interpolation_curves(interpolation, "comprehension", results=results, by_family=True)
    if c.empty:
        return _empty("Figure 4: interpolation per family (comprehension)", "no interpolation.csv comprehension rows")
    return _per_family(c, results, "comprehension", "Figure 4: held-in comprehension under layer interpolation, per family",
                       "accuracy", families)


def figure5(interpolation, results=None, families: Optional[Sequence[str]] = None):
    """Held-in chrF (both directions averaged) under first / middle / last interpolation, one panel per family."""
    c = interpolation_curves(interpolation, "translation", results=results, by_family=True)
    if c.empty:
        return _empty("Figure 5: interpolation per family (translation)", "no interpolation.csv translation rows")
    return _per_family(c, results, "translation",
                       "Figure 5: held-in translation chrF (en→xx and xx→en averaged) under layer interpolation, per family",
                       "chrF", families)


# ----------------------------------------------------------------------------------------------------
# Acquisition-forgetting frontier
# ----------------------------------------------------------------------------------------------------
def frontier_data(results, *, families: Optional[Sequence[str]] = None, probe: Optional[str] = None, exclude=()):
    """One row per (strategy, family): ``gain_bpb`` (base - model bits per byte, mean over the family's
    training languages), ``retention`` (model - base accuracy, mean over English and the family's held-out
    languages, comprehension), ``retention_languages`` and ``english_bpb_retention`` (base - model bits per
    byte on English: 0 = nothing forgotten, negative = forgotten). Base is left out (it is the origin)."""
    import pandas as pd

    cols = ["strategy", "family", "gain_bpb", "retention", "retention_languages", "english_bpb_retention"]
    if results is None or len(results) == 0:
        return pd.DataFrame(columns=cols)
    ppl = answering_rows(results, "perplexity", metric="bits_per_byte", splits=["held_in"], exclude=exclude)
    held_out = answering_rows(results, "comprehension", splits=["held_out"], exclude=exclude)
    comp = metric_rows(results, "comprehension")
    is_probe = comp["split"].astype(str).eq("base") | (comp["language"].astype(str) == probe if probe else False)
    english = comp[is_probe]
    fams = list(families) if families is not None else list(dict.fromkeys(ppl["language_family"].astype(str)))
    base_ppl = ppl[ppl["strategy"] == "base"].set_index("language")["value"]
    base_ho = held_out[held_out["strategy"] == "base"].set_index("language")["value"]
    base_en = english[english["strategy"].astype(str) == "base"]["value"]
    bpb = metric_rows(results, "perplexity", metric="bits_per_byte")
    en_bpb = bpb[bpb["split"].astype(str).eq("base") | (bpb["language"].astype(str) == probe if probe else False)]
    base_en_bpb = en_bpb[en_bpb["strategy"].astype(str) == "base"]["value"]
    rows = []
    for s in [s for s in registry.names() if s != "base"]:
        for fam in fams:
            p = ppl[(ppl["strategy"] == s) & (ppl["language_family"].astype(str) == fam)].set_index("language")["value"]
            common = p.index.intersection(base_ppl.index)
            gain = float((base_ppl[common] - p[common]).mean()) if len(common) else np.nan
            deltas = []
            h = held_out[(held_out["strategy"] == s) & (held_out["language_family"].astype(str) == fam)]
            for lang, v in zip(h["language"], h["value"]):
                if lang in base_ho.index:
                    deltas.append(v - base_ho[lang])
            model = f"{s}.{fam}" if registry.get(s).per_family else s
            en = english[english["model"].astype(str) == model]["value"]
            if len(en) and len(base_en):
                deltas.append(float(en.mean()) - float(base_en.mean()))
            e = en_bpb[en_bpb["model"].astype(str) == model]["value"]
            en_ret = float(base_en_bpb.mean()) - float(e.mean()) if len(e) and len(base_en_bpb) else np.nan
            if gain == gain or deltas:
                rows.append({"strategy": s, "family": fam, "gain_bpb": gain,
                             "retention": float(np.mean(deltas)) if deltas else np.nan, "retention_languages": len(deltas),
                             "english_bpb_retention": en_ret})
    return pd.DataFrame(rows, columns=cols)


def frontier(results, *, families: Optional[Sequence[str]] = None, probe: Optional[str] = None, exclude=()):
    """Acquisition (bpb gain on training languages) against retention (comprehension vs base), per strategy and family."""
    d = frontier_data(results, families=families, probe=probe, exclude=exclude).dropna(subset=["gain_bpb", "retention"])
    if d.empty:
        return _empty("Acquisition-forgetting frontier", "needs base and CPT perplexity and comprehension rows")
    fams = list(dict.fromkeys(d["family"]))
    colors = {f: FAMILY_CMAP[i % len(FAMILY_CMAP)] for i, f in enumerate(fams)}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), layout="constrained")
    panels = [("retention", 100, "retention: comprehension acc − base (pp),\nmean over English + family's held-out languages  (↑ better)",
               "(a) comprehension (noisy at the offline scales: few items)"),
              ("english_bpb_retention", 1, "retention: base − model bits per byte on English\n(0 = nothing forgotten; ↑ better)",
               "(b) English perplexity (the base language no family trains)")]
    for ax, (col, scale, ylabel, title) in zip(axes, panels):
        for _, r in d.dropna(subset=[col]).iterrows():
            ax.scatter(r["gain_bpb"], scale * r[col], marker=strategy_marker(r["strategy"]),
                       color=colors[r["family"]], s=70 if r["strategy"] != "soup" else 130, edgecolor="black",
                       linewidth=0.5)
        ax.axhline(0, color="#555", lw=0.8, ls="--")
        ax.axvline(0, color="#555", lw=0.8, ls="--")
        ax.scatter([0], [0], marker="h", color="#8C8C8C", s=80, edgecolor="black", zorder=3)
        ax.annotate("base", (0, 0), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel("acquisition: bits-per-byte gain over base\non the family's training languages  (→ better)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D

    s_handles = [Line2D([], [], marker=strategy_marker(s), ls="", color="#BBBBBB", markeredgecolor="black",
                        ms=8, label=LABELS.get(s, s)) for s in dict.fromkeys(d["strategy"])]
    f_handles = [Line2D([], [], marker="o", ls="", color=colors[f], ms=8, label=f.capitalize()) for f in fams]
    fig.legend(handles=s_handles, title="strategy (marker)", fontsize=7, title_fontsize=8, loc="outside right upper")
    fig.legend(handles=f_handles, title="family (colour)", fontsize=7, title_fontsize=8, loc="outside right lower")
    fig.suptitle("Acquisition vs forgetting (each point: one strategy's model for one family; up and right is better)",
                 fontsize=10)
    return _done(fig)


# ----------------------------------------------------------------------------------------------------
# Per-layer drift
# ----------------------------------------------------------------------------------------------------
def drift_data(distances):
    """Mean relative distance per (strategy, layer, group) over a strategy's family models."""
    import pandas as pd

    cols = ["strategy", "layer", "group", "distance", "models"]
    if distances is None or len(distances) == 0:
        return pd.DataFrame(columns=cols)
    d = distances.copy()
    if "strategy" not in d.columns:
        d["strategy"] = d["model"].astype(str).str.partition(".")[0]
    d = d[d["strategy"].astype(str).isin(registry.names())]
    out = d.groupby(["strategy", "layer", "group"], sort=False).agg(distance=("distance", "mean"),
                                                                      models=("model", "nunique")).reset_index()
    order = {s: i for i, s in enumerate(registry.names())}
    return out.sort_values(["strategy", "layer"], key=lambda c: c.map(order) if c.name == "strategy" else c)[cols]


def drift(distances):
    """Relative distance to the base per decoder layer, one line per strategy, layer groups shaded."""
    d = drift_data(distances)
    if d.empty:
        return _empty("Per-layer drift", "no layer_distance.csv (notebook 04 not run)")
    fig, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    layers = d[d["layer"] >= 0]
    for g in INTERP_GROUPS:
        idx = layers.loc[layers["group"] == g, "layer"]
        if len(idx):
            ax.axvspan(idx.min() - 0.5, idx.max() + 0.5, color=GROUP_COLORS[g], alpha=0.08)
            ax.text((idx.min() + idx.max()) / 2, 1.0, f"{g} ({idx.min()}–{idx.max()})", transform=ax.get_xaxis_transform(),
                    ha="center", va="bottom", fontsize=8, color=GROUP_COLORS[g])
    for s, g in layers.groupby("strategy", sort=False):
        n = int(g["models"].max())
        ax.plot(g["layer"], g["distance"], "o-", ms=3, color=strategy_color(s),
                label=f"{LABELS.get(s, s)}" + (f" (mean of {n})" if n > 1 else ""))
        out = d[(d["strategy"] == s) & (d["layer"] < 0)]
        if len(out):
            ax.plot([-1.5], out["distance"].iloc[:1], marker="o", ms=5, ls="", color=strategy_color(s))
    if (d["layer"] < 0).any():
        ax.axvline(-0.75, color="#999", lw=0.8)
    ticks = sorted(layers["layer"].unique())
    ax.set_xticks(([-1.5] if (d["layer"] < 0).any() else []) + list(ticks),
                  (["emb.\n+norm"] if (d["layer"] < 0).any() else []) + [str(t) for t in ticks], fontsize=7)
    ax.set_xlabel("decoder layer")
    ax.set_ylabel("relative drift ‖θ_l − θ_l⁰‖ / ‖θ_l⁰‖")
    ax.set_title("Per-layer drift from the base model (mean over family models)", fontsize=10, pad=16)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    return _done(fig)


# ----------------------------------------------------------------------------------------------------
# Showing and writing
# ----------------------------------------------------------------------------------------------------
def as_image(fig, dpi: int = 110):
    """The figure as an ``IPython.display.Image`` (PNG bytes): embedded in the executed notebook whatever
    matplotlib backend is active (scripts and tests draw with Agg)."""
    import io

    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return Image(data=buf.getvalue())


FIGURE_ORDER = ("figure2", "figure3", "figure4", "figure5", "frontier", "drift")


def make_figures(params, results=None, interpolation=None, distances=None, evidence=None) -> dict:
    """Every figure of the scale: ``{stem: Figure}`` (missing inputs are loaded from ``runs/<scale>/results``;
    ``evidence``, the results' :class:`famlib.evidence.Evidence`, is built when not given)."""
    from famlib.analysis import load_inputs
    from famlib.tables import table_kwargs

    if results is None or interpolation is None or distances is None:
        r, i, d = load_inputs(params)
        results = r if results is None else results
        interpolation = i if interpolation is None else interpolation
        distances = d if distances is None else distances
    from famlib.evidence import for_results

    kw = table_kwargs(params)
    fams = kw["families"]
    evidence = evidence if evidence is not None else for_results(params, results)
    return {
        "figure2": figure2(results, families=fams, exclude=kw["exclude"], evidence=evidence),
        "figure3": figure3(interpolation, results),
        "figure4": figure4(interpolation, results, families=fams),
        "figure5": figure5(interpolation, results, families=fams),
        "frontier": frontier(results, families=fams, probe=kw["probe"], exclude=kw["exclude"]),
        "drift": drift(distances),
    }


def write_figures(params, results=None, interpolation=None, distances=None, figures: Optional[dict] = None,
                  evidence=None) -> list[Path]:
    """Save every figure with data as ``figures/<scale>/<stem>.png`` and ``.pdf``; return the PNG and PDF paths."""
    from famlib.notebook import figure_dir
    from famlib.plots import save

    figures = figures if figures is not None else make_figures(params, results, interpolation, distances, evidence)
    out = []
    for stem, fig in figures.items():
        if not getattr(fig, "famlib_empty", False):
            out += save(fig, figure_dir(params) / stem)
        plt.close(fig)
    return out

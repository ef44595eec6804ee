"""The analysis layer that tables, figures, claims and notebook 06 share: which rows hold a task's headline
metric, which model answers for each language, family means with their standard errors, the interpolation's
curves, and loading the tidy results (:mod:`famlib.tables` renders; this module computes).
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Optional, Sequence

from famlib.strategies import registry

AVG = "avg"

INTERP_GROUPS = ("first", "middle", "last")


# ----------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------
def load_layer_distance(scale: str):
    """``runs/<scale>/results/layer_distance.csv`` (an empty frame if it does not exist yet)."""
    import pandas as pd

    from famlib.paths import layer_distance_path

    path = layer_distance_path(scale)
    if not path.exists():
        return pd.DataFrame(columns=["model", "layer", "group", "distance", "delta_sq", "base_sq"])
    return pd.read_csv(path)


def load_inputs(params):
    """``(results, interpolation, distances)`` of a scale; missing files give empty frames."""
    from famlib.evaluate.results import load_results

    # interpolation.csv as written (the Dense point once, group "all"; famlib.interpolation.load_interpolation
    # copies it into every group's curve)
    return load_results(params.scale), load_results(params.scale, "interpolation"), load_layer_distance(params.scale)


# ----------------------------------------------------------------------------------------------------
# Selecting rows: the headline metric and the model that answers for each language
# ----------------------------------------------------------------------------------------------------
def _truthy(series):
    return series.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0"))


def _stderr(rows):
    """Standard error per row: the ``stderr`` column, else the binomial one for accuracies, else NaN."""
    import numpy as np

    p = rows["value"].astype(float)
    n = rows["n"].astype(float) if "n" in rows.columns else p * np.nan
    is_acc = rows["metric"].astype(str).str.startswith("acc") & p.between(0, 1) & (n > 0)
    binom = pd_sqrt((p * (1 - p) / n).where(is_acc))
    if "stderr" not in rows.columns:
        return binom
    return rows["stderr"].astype(float).fillna(binom)


def _mean_with_se(df, keys, se_col: str, **extra):
    """Group ``df`` by ``keys``: mean ``value`` and the standard error of that mean,
    sqrt(sum se_i^2) / k, which is NaN if any se_i is unknown (so chrF never shows a zero error).
    ``extra`` are further named aggregations. Returns the groups as columns plus ``value, stderr, k``."""
    d = df.assign(_se2=df[se_col].astype(float) ** 2, _se_nan=df[se_col].isna())
    out = d.groupby(keys, sort=False, dropna=False).agg(
        value=("value", "mean"), _se2=("_se2", "sum"), _se_nan=("_se_nan", "max"), k=("value", "size"), **extra
    ).reset_index()
    out["stderr"] = pd_sqrt(out["_se2"].where(~out["_se_nan"].astype(bool))) / out["k"]
    return out.drop(columns=["_se2", "_se_nan"])


def pd_sqrt(series):
    """Element-wise square root that leaves NaN alone (no warnings for the masked rows)."""
    return series.map(lambda v: math.sqrt(v) if v == v and v >= 0 else float("nan"))


def metric_rows(results, task: str, metric: Optional[str] = None, splits: Optional[Iterable[str]] = None):
    """Rows of ``task`` with ``metric`` (default: the primary rows), restricted to ``splits``."""
    if results is None or len(results) == 0:
        return results.iloc[0:0] if results is not None else None
    r = results[results["task"].astype(str) == task]
    if metric is None:
        from famlib.evaluate.results import PRIMARY  # for a results table without a `primary` column

        r = r[_truthy(r["primary"])] if "primary" in r.columns else r[r["metric"] == PRIMARY[task]]
    else:
        r = r[r["metric"].astype(str) == metric]
    if splits is not None:
        r = r[r["split"].astype(str).isin(list(splits))]
    return r


def answering_rows(results, task: str, *, metric: Optional[str] = None, splits: Optional[Iterable[str]] = None,
                   probe: Optional[str] = None, exclude: Iterable[str] = ()):
    """One value per (strategy, language, direction), from the model that answers for the language.

    Per-family strategies keep the rows of the model trained on the language's family; single models keep
    their one model's rows; the probe language (``probe``, or the rows whose split is ``base``) keeps every
    model's row and averages a per-family strategy's family models. Languages in ``exclude`` are dropped.

    Returns a DataFrame with columns ``strategy, language, language_family, split, direction, value,
    stderr, n, limit, models`` (``models`` = how many models were averaged: >1 only for the probe).
    """
    import numpy as np
    import pandas as pd

    cols = ["strategy", "language", "language_family", "split", "direction", "value", "stderr", "n", "limit", "models"]
    r = metric_rows(results, task, metric, None)
    if r is None or len(r) == 0:
        return pd.DataFrame(columns=cols)
    r = r[r["strategy"].astype(str).isin(registry.names()) & ~r["language"].astype(str).isin(list(exclude))].copy()
    r["stderr"] = _stderr(r)
    is_probe = r["split"].astype(str).eq("base")
    if probe is not None:
        is_probe |= r["language"].astype(str).eq(probe)
    per_family = r["strategy"].astype(str).isin(registry.per_family_names())
    own = r["expert_family"].astype(str) == r["language_family"].astype(str)
    r = r[is_probe | ~per_family | own]
    if splits is not None:
        r = r[r["split"].astype(str).isin(list(splits))]
    if len(r) == 0:
        return pd.DataFrame(columns=cols)
    r = r.assign(direction=r["direction"].fillna("").astype(str),
                 limit=r["limit"].astype(float) if "limit" in r.columns else np.nan)
    keys = ["strategy", "language", "language_family", "split", "direction"]
    out = _mean_with_se(r, keys, "stderr", n=("n", "min"), limit=("limit", "max"), models=("model", "nunique"))
    return out[cols]


def present_strategies(results) -> list[str]:
    """Registered strategies with at least one row in ``results``, in registry order (the paper's, then
    any strategy registered since)."""
    if results is None or len(results) == 0:
        return []
    have = set(results["strategy"].astype(str))
    return [s for s in registry.names() if s in have]


class FamilyFrame(NamedTuple):
    values: "object"  # DataFrame rows x strategies
    stderr: "object"  # DataFrame like values (NaN where no standard error is known)
    partial: "object"  # DataFrame of bool: averaged over fewer languages than the row's fullest cell
    info: dict  # row -> {"languages": [...], "n": [item counts], "limit": max sample limit or NaN}
    probe: Optional[str]  # the probe row's index label, or None


def _per_language(answers):
    """Mean over directions per (strategy, language): value, squared standard error, items, limit."""
    lang = _mean_with_se(answers, ["strategy", "language", "language_family"], "stderr", n=("n", "min"),
                         limit=("limit", "max"))
    lang["se2"] = lang["stderr"] ** 2
    return lang


def _info(sub) -> dict:
    return {"languages": list(dict.fromkeys(sub["language"].astype(str))),
            "n": sorted({int(x) for x in sub["n"].dropna()}), "limit": sub["limit"].max()}


def family_frame(answers, probe_answers=None, *, families: Optional[Sequence[str]] = None,
                 strategies: Optional[Sequence[str]] = None) -> FamilyFrame:
    """Family averages of :func:`answering_rows` (``answers``), plus ``avg`` and an optional probe row.

    Rows: the families (in ``families`` order; those without any value dropped), ``avg`` (only over
    strategies that have every family row), and the probe language of ``probe_answers`` if it has values.
    """
    import numpy as np
    import pandas as pd

    strategies = list(strategies) if strategies is not None else present_strategies(answers)
    lang = _per_language(answers)
    fam_order = list(families) if families is not None else list(dict.fromkeys(lang["language_family"].astype(str)))
    values = pd.DataFrame(np.nan, index=fam_order, columns=strategies, dtype=float)
    se = values.copy()
    count = pd.DataFrame(0, index=fam_order, columns=strategies)
    info = {}
    for fam in fam_order:
        sub = lang[lang["language_family"].astype(str) == fam]
        info[fam] = _info(sub)
        for s, g in sub.groupby("strategy"):
            if s in values.columns:
                values.at[fam, s] = g["value"].mean()
                se.at[fam, s] = math.sqrt(g["se2"].sum()) / len(g) if g["se2"].notna().all() else np.nan
                count.at[fam, s] = len(g)
    keep = [f for f in fam_order if values.loc[f].notna().any()]
    values, se, count = values.loc[keep], se.loc[keep], count.loc[keep]
    partial = count.lt(count.max(axis=1), axis=0) & values.notna()
    if keep:
        complete = values.notna().all(axis=0)
        values.loc[AVG] = values.loc[keep].mean(axis=0).where(complete)
        se_ok = se.loc[keep].notna().all(axis=0)
        se.loc[AVG] = (np.sqrt((se.loc[keep] ** 2).sum(axis=0)) / len(keep)).where(complete & se_ok)
        partial.loc[AVG] = partial.loc[keep].any(axis=0) & complete
    probe = None
    if probe_answers is not None and len(probe_answers):
        plang = _per_language(probe_answers)
        probe = str(plang["language"].iloc[0])
        plang = plang[plang["language"].astype(str) == probe]
        info[probe] = _info(plang)
        values.loc[probe] = np.nan
        se.loc[probe] = np.nan
        partial.loc[probe] = False
        for _, row in plang.iterrows():
            if row["strategy"] in values.columns:
                values.at[probe, row["strategy"]] = row["value"]
                se.at[probe, row["strategy"]] = math.sqrt(row["se2"]) if not _isnan(row["se2"]) else np.nan
    return FamilyFrame(values, se, partial.astype(bool), info, probe)


def _isnan(x) -> bool:
    try:
        return math.isnan(float(x))
    except (TypeError, ValueError):
        return x is None


# ----------------------------------------------------------------------------------------------------
# Interpolation curves (section 4.1): one function for the figures, notebook 06 and its summary
# ----------------------------------------------------------------------------------------------------
def interpolation_curves(interpolation, task: str, *, results=None, by_family: bool = False,
                         by_direction: bool = False, splits: Sequence[str] = ("held_in",)):
    """``task`` score per (group, alpha) from ``interpolation.csv``'s tidy rows, over the ``splits`` languages
    (default the held-in ones; ``("base",)``: English, the probe).

    Per language first (translation: the two directions averaged unless ``by_direction``), then the
    unweighted mean over the languages (per family if ``by_family``). alpha = 1 is Dense itself:
    the shared Dense point (``group == "all"``, as ``famlib.interpolation`` writes it) is copied to every
    group; where a group still has no alpha = 1 row, Dense's held-in rows from ``results`` stand in.

    Returns columns ``group, alpha, [language_family], [direction], value, stderr, languages`` sorted by
    group (first, middle, last) and alpha; ``stderr`` combines the per-language standard errors
    (NaN for chrF). Empty when nothing was measured.
    """
    import numpy as np
    import pandas as pd

    keys = ["group", "alpha"] + (["language_family"] if by_family else []) + (["direction"] if by_direction else [])
    cols = keys + ["value", "stderr", "languages"]
    if interpolation is None or len(interpolation) == 0 or "group" not in interpolation.columns:
        return pd.DataFrame(columns=cols)
    r = metric_rows(interpolation, task, None, list(splits)).copy()
    r["alpha"] = r["alpha"].astype(float)
    # the Dense point (alpha 1) is evaluated once, with group "all" (famlib.interpolation): one copy per group
    shared = r[~r["group"].astype(str).isin(INTERP_GROUPS) & np.isclose(r["alpha"], 1.0)]
    r = r[r["group"].astype(str).isin(INTERP_GROUPS)]
    if len(r) == 0:
        return pd.DataFrame(columns=cols)
    if len(shared):
        r = pd.concat([r] + [shared.assign(group=g) for g in dict.fromkeys(r["group"].astype(str))
                             if not np.isclose(r.loc[r["group"] == g, "alpha"], 1.0).any()], ignore_index=True)
    if results is not None and len(results):
        dense = metric_rows(results, task, None, list(splits))
        dense = dense[dense["strategy"].astype(str) == "dense"]
        extra = []
        for g in dict.fromkeys(r["group"].astype(str)):
            if not (np.isclose(r.loc[r["group"] == g, "alpha"], 1.0)).any() and len(dense):
                extra.append(dense.assign(group=g, alpha=1.0))
        if extra:
            r = pd.concat([r, *extra], ignore_index=True)
    r["stderr"] = _stderr(r)
    r["direction"] = r["direction"].fillna("").astype(str)
    lang_keys = list(dict.fromkeys(keys + ["language"] + ([] if by_family else ["language_family"])))
    per_lang = _mean_with_se(r, lang_keys, "stderr")
    out = _mean_with_se(per_lang, keys, "stderr", languages=("language", "nunique"))
    out["group"] = pd.Categorical(out["group"].astype(str), categories=list(INTERP_GROUPS), ordered=True)
    out = out.sort_values(keys).reset_index(drop=True)
    out["group"] = out["group"].astype(str)
    return out[cols]


def base_mean(results, task: str, split: str = "held_in", *, by_family: bool = False, by_direction: bool = False):
    """The base model's mean ``task`` score over ``split`` languages (a float, or a Series per family /
    direction); NaN / empty when the base was not evaluated."""
    import pandas as pd

    r = metric_rows(results, task, None, [split]) if results is not None and len(results) else None
    if r is None or len(r) == 0:
        return float("nan") if not (by_family or by_direction) else pd.Series(dtype=float)
    r = r[r["strategy"].astype(str) == "base"].assign(direction=lambda d: d["direction"].fillna("").astype(str))
    keys = (["language_family"] if by_family else []) + (["direction"] if by_direction else [])
    per_lang = r.groupby(keys + ["language"], sort=False)["value"].mean().reset_index()
    if not keys:
        return float(per_lang["value"].mean()) if len(per_lang) else float("nan")
    return per_lang.groupby(keys, sort=False)["value"].mean()

"""How far each model moved from the base, per decoder layer: what a surgery changed, made visible.

The relative distance of layer l is ``||theta_l - theta_l^0|| / ||theta_l^0||`` over every tensor of the
layer (Frobenius norms, accumulated in float64); parameters outside the decoder layers form one more
row, ``layer = -1``, group ``outside``. Tensors are read one at a time, each base tensor once for all
models.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

from famlib.config import Params
from famlib.layers import OUTSIDE, layer_groups, layer_index
from famlib.surgery import checks
from famlib.surgery.errors import SurgeryError
from famlib.surgery.io import ModelDir
from famlib.naming import all_model_ids, model_path, parse_model_id

OUTSIDE_LAYER = -1


def layer_distances(base: str | Path, models: Mapping[str, str | Path], *, first: int, last: int,
                    num_layers: Optional[int] = None):
    """Per-layer distance of each model to ``base``.

    Args:
        base: the base model directory.
        models: ``{label: model directory}``.
        first, last, num_layers: the layer split (num_layers defaults to the base config's).

    Returns:
        A DataFrame with one row per model and layer: ``model, layer, group, distance, delta_sq, base_sq``
        (``distance`` relative; the squared norms let callers aggregate groups exactly).

    Raises:
        SurgeryError: a model does not match the base (architecture, names, shapes), or a bad split.
    """
    import pandas as pd
    import torch

    base_dir = ModelDir(base)
    sources = [ModelDir(p) for p in models.values()]
    labels = list(models)
    split = checks.resolve_split(base_dir, "base", num_layers, first, last, "layer distances")
    if not sources:
        return pd.DataFrame(columns=["model", "layer", "group", "distance", "delta_sq", "base_sq"])
    for label, src in zip(labels, sources):
        checks.check_architecture([base_dir, src], ["base", label])
        plan = checks.check_tensors([base_dir, src], ["base", label])
    checks.tensor_groups(plan, split, base_dir, "base")  # refuses a tensor beyond the model's depth
    L = split[0]
    delta = {lab: [0.0] * (L + 1) for lab in labels}  # index L holds the outside parameters
    base_sq = [0.0] * (L + 1)
    for name, info in plan:
        if not info.is_float:
            continue
        slot = layer_index(name)
        slot = L if slot is None else slot
        b = base_dir.get(name).to(torch.float64)
        base_sq[slot] += float(b.square().sum())
        for lab, src in zip(labels, sources):
            d = src.get(name).to(torch.float64).sub_(b)
            delta[lab][slot] += float(d.square().sum())
    group_of_layer = {i: g for g, r in layer_groups(*split).items() for i in r}
    rows = []
    for lab in labels:
        for slot in range(L + 1):
            layer = OUTSIDE_LAYER if slot == L else slot
            bs, ds = base_sq[slot], delta[lab][slot]
            rows.append({"model": lab, "layer": layer, "group": OUTSIDE if slot == L else group_of_layer[slot],
                         "distance": math.sqrt(ds / bs) if bs > 0 else (0.0 if ds == 0 else math.inf),
                         "delta_sq": ds, "base_sq": bs})
    return pd.DataFrame(rows)


def posthoc_distances(params: Params, model_ids: Optional[Sequence[str]] = None):
    """:func:`layer_distances` of every model of the scale that exists (or of ``model_ids``), with
    ``strategy`` and ``family`` columns.

    Raises:
        SurgeryError: no base model, or a listed model is missing.
    """
    base = model_path(params, "base")
    if not (base / "config.json").is_file():
        raise SurgeryError(f"no base model at {base} (made by notebook 02_base_model)")
    if model_ids is None:
        model_ids = [m for m in all_model_ids(params) if m != "base" and (model_path(params, m) / "config.json").is_file()]
    else:
        absent = [m for m in model_ids if not (model_path(params, m) / "config.json").is_file()]
        if absent:
            raise SurgeryError(f"not built yet: {', '.join(f'{m} ({model_path(params, m)})' for m in absent)}")
    df = layer_distances(base, {m: model_path(params, m) for m in model_ids}, first=params.layers.first,
                         last=params.layers.last, num_layers=params.model.num_layers)
    df.insert(1, "strategy", [parse_model_id(m)[0] for m in df["model"]])
    df.insert(2, "family", [parse_model_id(m)[1] or "all" for m in df["model"]])
    return df


def distance_csv(params: Params) -> Path:
    """``runs/<scale>/results/layer_distance.csv``: the per-layer drift table that notebook 07 plots."""
    from famlib.paths import layer_distance_path

    return layer_distance_path(params.scale)


def write_distances(params: Params, df) -> Path:
    """Write ``df`` (from :func:`posthoc_distances`) to :func:`distance_csv`, atomically; return the path."""
    from famlib.io import atomic_path

    out = distance_csv(params)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        df.to_csv(tmp, index=False)
    return out


def group_distances(df):
    """Relative distance per model and group (``first``, ``middle``, ``last``, ``outside``), as a wide table."""
    g = df.groupby(["model", "group"], sort=False)[["delta_sq", "base_sq"]].sum()
    dist = (g["delta_sq"] / g["base_sq"]).pow(0.5).rename("distance").reset_index()
    table = dist.pivot(index="model", columns="group", values="distance")
    order = [c for c in ("first", "middle", "last", OUTSIDE) if c in table.columns]
    return table.loc[list(dict.fromkeys(df["model"]))][order]


def verify_reverted(df, tol: float = 0.0) -> list[str]:
    """Check what a revert promises: the reverted groups sit exactly at the base, the rest where the tuned
    model is. Returns one ``OK:`` line per reverted model found in ``df`` (with its tuned source).

    Raises:
        SurgeryError: a reverted model whose middle layers differ from the base, or whose other layers
            differ from its tuned model's.
    """
    from famlib.strategies.rules import surgery_groups
    from famlib.naming import model_id
    from famlib.strategies import registry

    lines = []
    by_model = {m: d.set_index("layer") for m, d in df.groupby("model", sort=False)}
    for mid, d in by_model.items():
        strategy, family = parse_model_id(mid)
        entry = registry.get(strategy)
        if entry.surgery != "revert":
            continue
        reverted = surgery_groups(strategy)
        moved = d[d["group"].isin(reverted) & (d["distance"] > tol)]
        if len(moved):
            raise SurgeryError(f"{mid}: layers {list(moved.index)} of the reverted groups {list(reverted)} are not "
                               f"at the base (relative distances {list(moved['distance'].round(6))})")
        src = registry.get(entry.source)
        source = model_id(src.name, family if src.per_family else None)
        if source in by_model:
            kept = d[~d["group"].isin(reverted)]
            diff = (kept["distance"] - by_model[source].loc[kept.index, "distance"]).abs()
            if (diff > 1e-12).any():
                raise SurgeryError(f"{mid}: layers {list(diff[diff > 1e-12].index)} differ from {source}'s")
        lines.append(f"OK: {mid} equals the base in {', '.join(reverted)} and {source} elsewhere")
    return lines


def layer_distance_figure(df, params: Params):
    """One panel per strategy: relative distance to base per layer (one line per family), the layer
    groups shaded, the outside parameters as a separate point at the left."""
    from famlib.plots import plt  # headless outside a notebook, inline inside one

    strategies = list(dict.fromkeys(df["strategy"]))
    n = max(1, len(strategies))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False, sharey=True)
    split = layer_groups(params.model.num_layers, params.layers.first, params.layers.last)
    for ax, strategy in zip(axes.flat, strategies):
        part = df[df["strategy"] == strategy]
        for (family,), d in part.groupby(["family"], sort=False):
            inside = d[d["layer"] >= 0]
            line, = ax.plot(inside["layer"], inside["distance"], marker=".", label=family)
            out = d[d["layer"] == OUTSIDE_LAYER]
            ax.plot(out["layer"], out["distance"], marker="s", linestyle="none", color=line.get_color())
        ax.axvspan(split["middle"].start - 0.5, split["middle"].stop - 0.5, color="0.9", zorder=0)
        ax.set_title(strategy)
        ax.set_xticks([OUTSIDE_LAYER, *range(0, params.model.num_layers, max(1, params.model.num_layers // 6))])
        ax.set_xticklabels(["out", *[str(i) for i in range(0, params.model.num_layers,
                                                          max(1, params.model.num_layers // 6))]])
        ax.set_xlabel("decoder layer (shaded: middle group)")
        if len(part["family"].unique()) > 1:
            ax.legend(fontsize=7)
    for ax in axes.flat[len(strategies):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("||θ - θ⁰|| / ||θ⁰||")
    fig.suptitle(f"Distance to the base per layer ({params.scale})")
    fig.tight_layout()
    return fig

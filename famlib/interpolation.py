"""The causal layer-interpolation analysis of the paper's section 4.1 (notebook 06).

For one layer group G (first, middle or last) and a step alpha,

    theta_G(alpha) = theta_G^base + alpha * (theta_G^dense - theta_G^base),

every other tensor at its Dense CPT value. alpha = 0 puts G back at the base, alpha = 1 is Dense itself
(the same weights for every group, so it is evaluated once). If comprehension falls as alpha grows for
the middle group and barely moves for the last, the middle layers' drift is what costs comprehension.

Each point is a model directory built by :func:`famlib.surgery.interpolate` (streamed, tensor by tensor)
under ``runs/<scale>/interpolation/<model id>/``, evaluated on the held-in languages and the probe
(comprehension and translation, the paper's Figures 3-5) through the same harness path as every other
model (alpha = 1 reuses Dense's own evaluation from notebook 05 when it is there), and written to the ``interpolation`` results collection:
``runs/<scale>/results/interpolation.csv`` (the results schema plus ``group`` and ``alpha``). A point
whose weights and tasks are unchanged is not re-evaluated; its directory is removed after evaluation
unless ``keep_models`` (it is rebuilt bit-identically if ever needed: the surgery is deterministic).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from famlib.config import Params

# The paper's two axes, plus perplexity: cheap, and at the offline scales the most precise signal of what
# each group's drift costs (held-in comprehension sits near chance for the tiny base).
AXES = ("comprehension", "translation", "perplexity")
DENSE_POINT = "interp.dense"  # alpha = 1: Dense itself, shared by every group


@dataclass(frozen=True)
class Point:
    group: str
    alpha: float

    @property
    def model(self) -> str:
        return DENSE_POINT if self.alpha == 1 else f"interp.{self.group}.{self.alpha:g}"


def grid(params: Params) -> list[Point]:
    """Every (group, alpha) of ``params.interpolation``, groups in the params' order."""
    cfg = params.interpolation
    return [Point(g, float(a)) for g in cfg.groups for a in cfg.alphas]


def languages(params: Params) -> list[str]:
    """The probe and every family's training (held-in) languages."""
    langs = [params.probe_language] + [lang for fam in params.families.values() for lang in fam.train]
    return list(dict.fromkeys(langs))


def build_point(params: Params, point: Point) -> Path:
    """The model directory of one point (Dense's own directory for alpha = 1)."""
    from famlib import surgery
    from famlib.naming import model_path

    dense, base = model_path(params, "dense"), model_path(params, "base")
    if point.alpha == 1:
        return dense
    from famlib.paths import interpolation_dir

    out = interpolation_dir(params.scale) / point.model
    return surgery.interpolate(base, dense, out, groups=[point.group], alpha=point.alpha,
                               first=params.layers.first, last=params.layers.last,
                               num_layers=params.model.num_layers, extra={"params": params.to_dict()})


def run_interpolation(params: Params, corpus=None, keep_models: bool = False, force: bool = False,
                      log: Callable[[str], None] = print):
    """Build and evaluate every point of the grid; return ``interpolation.csv`` as a DataFrame.

    Raises:
        famlib.errors.FamlibError: the base or the Dense model is missing (run notebooks 02 and 03 first).
    """
    from famlib.errors import FamlibError
    from famlib.evaluate import evaluate_model
    from famlib.naming import model_path

    for mid, nb in (("base", "02_base_model"), ("dense", "03_train_expert (strategy dense)")):
        if not (model_path(params, mid) / "config.json").exists():
            raise FamlibError(f"layer interpolation needs the {mid} model at {model_path(params, mid)}; "
                              f"run notebook {nb} first (famlib paper does it in order)")
    if corpus is None:
        from famlib.data import build_corpus

        corpus = build_corpus(params)
    langs = languages(params)
    done = set()
    for point in grid(params):
        if point.model in done:
            continue
        done.add(point.model)
        path = build_point(params, point)
        extra = {"group": "all" if point.alpha == 1 else point.group, "alpha": point.alpha}
        log(f"{point.model}: {'Dense' if point.alpha == 1 else f'{point.group} layers at alpha {point.alpha:g}'}")
        evaluate_model(params, point.model, corpus=corpus, model_dir=path, strategy="dense", axes=list(AXES),
                       languages=langs, force=force, collection="interpolation", extra=extra,
                       reuse=("results", "dense") if point.alpha == 1 else None, log=log)
        if not keep_models and point.alpha != 1:
            shutil.rmtree(path, ignore_errors=True)
    return load_interpolation(params)


def load_interpolation(params: Params):
    """``interpolation.csv`` with the Dense point (alpha 1, group ``all``) repeated for every group, so that
    each group's curve runs from alpha 0 to 1; ``strategy`` is ``interpolation``."""
    import pandas as pd

    from famlib.evaluate.results import load_results

    df = load_results(params.scale, "interpolation")
    if df.empty:
        return df
    df["alpha"] = df["alpha"].astype(float)
    dense = df[df["group"] == "all"]
    parts = [df[df["group"] != "all"]] + [dense.assign(group=g) for g in params.interpolation.groups]
    out = pd.concat(parts, ignore_index=True)
    out["strategy"] = "interpolation"
    return out.sort_values(["group", "alpha", "task", "language", "direction"], kind="stable").reset_index(drop=True)


def group_effects(df):
    """Per group, task, direction and split (held-in mean, or English): the metric at alpha 0 (group at
    the base) and 1 (Dense), the change, and whether the curve is monotonic (every step in the direction
    of the overall change, or flat). For perplexity (bits per byte) a rise is forgetting. The curves are
    :func:`famlib.analysis.interpolation_curves`', the ones the figures draw."""
    import pandas as pd

    from famlib.analysis import interpolation_curves

    rows = []
    tasks = sorted(set(df["task"].astype(str))) if len(df) else []
    for task in tasks:
        for split in ("base", "held_in"):
            c = interpolation_curves(df, task, by_direction=True, splits=[split])
            for (direction, group), g in c.groupby(["direction", "group"], sort=True):
                v = g.sort_values("alpha")["value"].to_numpy()
                change = v[-1] - v[0]
                steps = v[1:] - v[:-1]
                monotonic = bool((steps * (1 if change >= 0 else -1) >= -1e-12).all())
                rows.append({"task": task, "split": split, "direction": direction, "group": group, "at_base": v[0],
                             "at_dense": v[-1], "change": change, "abs_change": abs(change), "monotonic": monotonic,
                             "points": len(v)})
    return pd.DataFrame(rows)


def group_drift(params: Params):
    """How far Dense moved each group from the base: relative distance ``||Δθ_G|| / ||θ_G^0||`` per group."""
    from famlib.naming import model_path
    from famlib.surgery import group_distances, layer_distances

    dist = layer_distances(model_path(params, "base"), {"dense": model_path(params, "dense")},
                           first=params.layers.first, last=params.layers.last, num_layers=params.model.num_layers)
    return group_distances(dist)

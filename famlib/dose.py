"""The dose-response study (notebook 08): at what drift does each mitigation start to matter?

The paper continues pretraining for about 17,000 steps per family and compares the strategies at that one
dose. Here one family's CPT is run over a grid of peak learning rates x step budgets (``dose:`` in the params
file, :class:`famlib.config.DoseConfig`), for the unconstrained Family Expert and the alignment strategies
(Layer Freezing, Layer-Range L2-SP, Expert-Reverted, or any other per-family strategy of the registry). Each
point is measured three ways:

* **drift**: ``||theta - theta^0|| / ||theta^0||`` per layer group and over all decoder layers;
* **acquisition**: the change of held-in bits per byte (the family's training languages; lower is better);
* **forgetting**: the change, against the base, of every axis of the instrument (perplexity, comprehension,
  reasoning, translation) on English (the probe) and on the family's held-out languages, each with its paired
  95 % interval (:mod:`famlib.evidence`: a cluster bootstrap over item keys) and a verdict: ``forgets`` or
  ``gains`` when the interval excludes 0, ``undecided`` when it does not.

A mitigation is also set against the Expert at the same dose (same learning rate and budget), paired on the
same items: ``less`` (it forgets measurably less), ``more`` or ``undecided``.

Points are trained into ``runs/<scale>/dose/models/<point>/`` (runs in ``runs/<scale>/dose/train/``), resumable
and skipped when finished like every training job; evaluated into the ``dose`` results collection
(``runs/<scale>/results/dose.csv``, columns ``lr`` and ``steps`` added; the base is the row with ``lr`` 0),
and their weights removed once measured unless ``dose.keep_models``. The drift of every point is kept in
``runs/<scale>/dose/drift.csv``, the study's table in ``runs/<scale>/dose/points.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from famlib.config import Params
from famlib.dose_rules import AXES, study_kind, study_languages
from famlib.paths import dose_dir

SPLITS = ("held_in", "probe", "held_out")  # acquisition, then the two kinds of forgetting
SPLIT_LABEL = {"held_in": "held-in", "probe": "English", "held_out": "held-out"}
LOWER_IS_BETTER_AXES = {"perplexity"}  # by axis (famlib.evaluate.results.LOWER_IS_BETTER is by metric)
DRIFT_GROUPS = ("first", "middle", "last", "outside", "layers")


@dataclass(frozen=True)
class Point:
    """One (learning rate, step budget, strategy) of the grid, for the study's family."""

    lr: float
    steps: int
    strategy: str
    family: str

    @property
    def model(self) -> str:
        return f"dose.{self.strategy}.{self.family}.lr{self.lr:g}.s{self.steps}"

    @property
    def dose(self) -> tuple[float, int]:
        return (self.lr, self.steps)


# ---------------------------------------------------------------------------------------------- settings

def grid(params: Params) -> list[Point]:
    """Every point: learning rates x budgets x strategies, trained strategies before the reverts made of them."""
    from famlib.errors import FamlibError

    d = params.dose
    if d is None:
        raise FamlibError(f"{params.origin}: no 'dose:' section, so this scale has no dose-response study; "
                          "add one (see params/small.yaml) or pass it with --set 'dose={family: ..., lrs: [...], "
                          "steps: [...]}'")
    order = sorted(d.strategies, key=lambda s: study_kind(s) != "trained")
    return [Point(float(lr), int(n), s, d.family) for lr in d.lrs for n in d.steps for s in order]


def point_params(params: Params, point: Point) -> Params:
    """The scale's params with ``training.family`` at the point's learning rate and budget (and, without
    early stopping, one validation at the end)."""
    cfg = params.training.family
    changes = {"lr": point.lr, "max_steps": point.steps}
    if not params.dose.early_stopping:
        # one validation, at the last step: the saved weights (the best validation's) are the final ones, so a
        # point's budget is the steps it trained, not those to an earlier best
        changes.update(patience=None, eval_every=point.steps)
    family = dataclasses.replace(cfg, **changes)
    return dataclasses.replace(params, training=dataclasses.replace(params.training, family=family))


def point_dir(params: Params, point: Point) -> Path:
    return dose_dir(params.scale) / "models" / point.model


# ---------------------------------------------------------------------------------------------- running

def build_point(params: Params, point: Point, corpus=None, progress: bool = False) -> Path:
    """Train (or revert) one point's model; an identical finished one is kept."""
    from famlib.naming import model_path
    from famlib.strategies.training import train_strategy
    from famlib.strategies.registry import get

    entry = get(point.strategy)
    out = point_dir(params, point)
    if study_kind(point.strategy) == "trained":
        train_dir = dose_dir(params.scale) / "train" / point.model
        key = point_key(params, point, _base_key(params))
        stamp = train_dir / "dose_key.txt"
        if train_dir.exists() and (not stamp.exists() or stamp.read_text().strip() != key):
            # a run of this id under other settings (a changed lambda, another base): never resumed into this one
            shutil.rmtree(train_dir)
        train_dir.mkdir(parents=True, exist_ok=True)
        from famlib.io import atomic_write_text

        atomic_write_text(stamp, key + "\n")
        return train_strategy(point_params(params, point), point.strategy, point.family, corpus=corpus,
                              progress=progress, out=out, train_dir=train_dir)
    from famlib import surgery

    # the source point as this run has it (a finished one is kept as is: its provenance key says so), so the
    # revert is made of the very weights its Expert point is measured with
    source = build_point(params, dataclasses.replace(point, strategy=entry.source), corpus, progress)
    return surgery.apply(entry.surgery, [source, model_path(params, "base")], out, groups=list(entry.surgery_groups),
                         first=params.layers.first, last=params.layers.last, num_layers=params.model.num_layers,
                         overwrite=True, extra={"params": point_params(params, point).to_dict()}).path


def point_key(params: Params, point: Point, base_key: str) -> str:
    """What a point's training and measurement read: the params sections in ``POINT_READS``, its family,
    ``training.family`` at the point's settings, the languages and axes, and the base's training key; not the
    rest of the file (adding a learning rate to the grid, or changing the interpolation, redoes nothing).
    A point whose key changed (an L2-SP lambda, a warmup, the evaluation settings, another base) is retrained
    and re-measured; its model id alone would not say so. A changed evaluation suite or harness is caught
    apart, by comparing the point's task configs with the base's (:func:`run_dose`)."""
    from famlib.io import sha256_json

    d = point_params(params, point).to_dict()
    read = {k: d.get(k) for k in POINT_READS}
    read["family"] = d["families"][point.family]
    read["training"] = d["training"]["family"]
    return sha256_json({"point": dataclasses.asdict(point), "params": read, "base": base_key,
                        "languages": study_languages(params), "axes": list(params.dose.axes)})


# Top-level params sections a point's training and evaluation read (with its family and training.family).
POINT_READS = ("seed", "probe_language", "layers", "model", "tokenizer", "data", "l2sp", "lora", "replay",
               "wise_ft", "evaluation")


def _base_key(params: Params) -> str:
    from famlib.naming import model_path

    prov = model_path(params, "base") / "famlib_provenance.json"
    return json.loads(prov.read_text()).get("famlib_key", "") if prov.exists() else ""


def _task_configs(rows, model: str) -> dict:
    """harness task -> (task config hash, lm-eval version) of a model's rows in the dose collection."""
    if rows is None or not len(rows):
        return {}
    r = rows[rows["model"].astype(str) == model]
    return {str(t): (str(h), str(v)) for t, h, v in zip(r["harness_task"], r["task_config_hash"], r["lm_eval"])}


def _evaluated(params: Params, point: Point, rows) -> bool:
    """The point has a result for every task the base has, measured with the same task configs and harness
    (so that every difference is paired on the same items), and no failed task."""
    base = _task_configs(rows, "base")
    return bool(base) and _task_configs(rows, point.model) == base


def run_dose(params: Params, corpus=None, force: bool = False, progress: bool = False,
             log: Callable[[str], None] = print):
    """Build, measure and evaluate every point; return the study's table (:func:`points_table`).

    Raises:
        famlib.errors.FamlibError: no ``dose:`` section, or the base is missing (notebook 02 first).
    """
    from famlib.errors import FamlibError
    from famlib.evaluate import evaluate_model
    from famlib.io import atomic_write_csv, atomic_write_json
    from famlib.naming import model_path

    points = grid(params)
    base = model_path(params, "base")
    if not (base / "config.json").exists():
        raise FamlibError(f"the dose-response study needs the base model at {base}; run notebook 02 first "
                          "(famlib paper does it in order)")
    if corpus is None:
        from famlib.data import build_corpus

        corpus = build_corpus(params)
    d = params.dose
    langs = study_languages(params)
    log(f"base: {', '.join(d.axes)} on {', '.join(langs)}")
    evaluate_model(params, "base", corpus=corpus, axes=list(d.axes), languages=langs, collection="dose",
                   extra={"lr": 0.0, "steps": 0}, reuse=("results", "base"), log=log)
    drift_path, keys_path = dose_dir(params.scale) / "drift.csv", dose_dir(params.scale) / "keys.json"
    drift = _read_drift(drift_path)
    keys = json.loads(keys_path.read_text()) if keys_path.exists() else {}
    base_key = _base_key(params)
    from famlib.evaluate.results import load_results

    rows = load_results(params.scale, "dose")
    failed = {}
    for i, point in enumerate(points):
        key = point_key(params, point, base_key)
        if not (keys.get(point.model) == key and _evaluated(params, point, rows)) or force:
            log(f"{point.model}: {'training' if study_kind(point.strategy) == 'trained' else 'reverting'}")
            path = build_point(params, point, corpus, progress=progress)
            drift = _merge_drift(drift, _drift_rows(params, {point.model: path}))
            atomic_write_csv(drift_path, drift)
            rep = evaluate_model(params, point.model, corpus=corpus, model_dir=path, strategy=point.strategy,
                                 family=point.family, axes=list(d.axes), languages=langs, force=force,
                                 collection="dose", extra={"lr": point.lr, "steps": point.steps}, log=log)
            rows = load_results(params.scale, "dose")
            if rep.failed:  # not recorded as measured: the next run tries the point again
                failed[point.model] = rep.failed
            else:
                keys[point.model] = key  # last: a point killed before this line is redone by the next run
                atomic_write_json(keys_path, keys)
        last_of_dose = i + 1 == len(points) or points[i + 1].dose != point.dose
        if last_of_dose and not d.keep_models:
            # a trained point is the source of its dose's reverts: its weights go once its dose is measured
            for q in points:
                if q.dose == point.dose and q.model in keys:
                    shutil.rmtree(point_dir(params, q), ignore_errors=True)
                    shutil.rmtree(dose_dir(params.scale) / "train" / q.model / "best", ignore_errors=True)
    if failed:
        log("tasks that failed (the points are tried again next run): "
            + "; ".join(f"{m}: {', '.join(t)}" for m, t in failed.items()))
    return points_table(params)


def _drift_rows(params: Params, models: dict):
    from famlib.surgery import layer_distances
    from famlib.naming import model_path

    return layer_distances(model_path(params, "base"), models, first=params.layers.first,
                           last=params.layers.last, num_layers=params.model.num_layers)


def _read_drift(path: Path):
    import pandas as pd

    if path.exists():
        return pd.read_csv(path)
    return pd.DataFrame(columns=["model", "layer", "group", "distance", "delta_sq", "base_sq"])


def _merge_drift(old, new):
    import pandas as pd

    kept = old[~old["model"].isin(set(new["model"]))]
    return pd.concat([kept, new], ignore_index=True) if len(kept) else new.reset_index(drop=True)


def group_drift(drift) -> dict[str, dict[str, float]]:
    """model -> {group: relative drift}, with ``layers`` over every decoder layer together."""
    out: dict[str, dict[str, float]] = {}
    for model, g in drift.groupby("model", sort=False):
        sums = g.groupby("group")[["delta_sq", "base_sq"]].sum()
        row = {grp: float((sums.loc[grp, "delta_sq"] / sums.loc[grp, "base_sq"]) ** 0.5)
               for grp in sums.index if sums.loc[grp, "base_sq"] > 0}
        layers = sums.drop(index=[i for i in sums.index if i == "outside"])
        row["layers"] = float((layers["delta_sq"].sum() / layers["base_sq"].sum()) ** 0.5)
        out[str(model)] = row
    return out


# ---------------------------------------------------------------------------------------------- reading

def _groups(params: Params, split: str, languages: Sequence[str]) -> dict[str, list[str]]:
    fam = params.families[params.dose.family]
    if split == "probe":
        langs = [params.probe_language]
    else:
        langs = list(fam.train if split == "held_in" else fam.held_out)
    langs = [x for x in langs if x in languages]
    return {split: langs} if langs else {}


def verdict(iv, axis: str) -> str:
    """``forgets`` / ``gains`` when a change from the base is resolved (its interval excludes 0), else
    ``undecided``; ``not measured`` without an interval."""
    if iv is None:
        return "not measured"
    if iv.low <= 0 <= iv.high:
        return "undecided"
    worse = iv.low > 0 if axis in LOWER_IS_BETTER_AXES else iv.high < 0
    return "forgets" if worse else "gains"


def against_expert(iv, axis: str) -> str:
    """A mitigation minus the Expert at the same dose: ``less`` (forgets less), ``more`` or ``undecided``."""
    if iv is None:
        return "not measured"
    if iv.low <= 0 <= iv.high:
        return "undecided"
    better = iv.high < 0 if axis in LOWER_IS_BETTER_AXES else iv.low > 0
    return "less" if better else "more"


def _against_expert_word(iv, axis: str, split: str) -> str:
    """:func:`against_expert`, said as acquisition on the held-in languages (lower held-in bits per byte than
    the Expert is acquiring more, not forgetting less)."""
    word = against_expert(iv, axis)
    if split == "held_in":
        return {"less": "acquires more", "more": "acquires less"}.get(word, word)
    return word


def points_table(params: Params, evidence=None):
    """The study as one tidy table: a row per point, axis and split, with the point's drift, its score, the
    base's, the change with its paired interval and verdict, and (for a mitigation) its difference from the
    Expert at the same dose. Also written to ``runs/<scale>/dose/points.csv``."""
    import pandas as pd

    from famlib.evaluate.results import load_results
    from famlib.evidence import Evidence, Who
    from famlib.io import atomic_write_csv

    results = load_results(params.scale, "dose")
    drift = group_drift(_read_drift(dose_dir(params.scale) / "drift.csv"))
    if evidence is None and len(results):
        evidence = Evidence(params, results, "dose", iters=params.evaluation.bootstrap_iters)
    d = params.dose
    langs = study_languages(params)
    reference = "expert" if "expert" in d.strategies else None
    rows = []
    have = set(results["model"].astype(str)) if len(results) else set()
    for point in grid(params):
        if point.model not in have:
            continue
        ref = dataclasses.replace(point, strategy=reference) if reference else None
        for axis in d.axes:
            for split in SPLITS:
                groups = _groups(params, split, langs)
                if not groups:
                    continue
                me, base = Who(model=point.model), Who(model="base")
                score = evidence.score(me, axis, groups)
                if score is None:
                    continue
                base_score = evidence.score(base, axis, groups)
                iv = evidence.diff(me, base, axis, groups)
                row = {"family": point.family, "lr": point.lr, "steps": point.steps, "strategy": point.strategy,
                       "model": point.model, "axis": axis, "split": split,
                       "languages": ",".join(groups[split]), "value": score.estimate,
                       "base": base_score.estimate if base_score else float("nan"),
                       "change": iv.estimate if iv else float("nan"), "low": iv.low if iv else float("nan"),
                       "high": iv.high if iv else float("nan"), "verdict": verdict(iv, axis)}
                for g in DRIFT_GROUPS:
                    row[f"drift_{g}"] = drift.get(point.model, {}).get(g, float("nan"))
                vs = (evidence.diff(me, Who(model=ref.model), axis, groups)
                      if ref is not None and point.strategy != reference and ref.model in have else None)
                row.update({"vs_expert": vs.estimate if vs else float("nan"),
                            "vs_expert_low": vs.low if vs else float("nan"),
                            "vs_expert_high": vs.high if vs else float("nan"),
                            "vs_expert_verdict": _against_expert_word(vs, axis, split) if vs else ""})
                rows.append(row)
    table = pd.DataFrame(rows)
    if len(table):
        atomic_write_csv(dose_dir(params.scale) / "points.csv", table)
    return table


def wide(table, axis: str = "perplexity"):
    """One row per point: drift over the layers, acquisition and the forgetting of ``axis`` with intervals."""
    import pandas as pd

    if table is None or not len(table):
        return pd.DataFrame()
    t = table[table["axis"] == axis]
    keys = ["lr", "steps", "strategy"]
    out = t.drop_duplicates(keys)[keys + ["drift_middle", "drift_layers"]].set_index(keys)
    for split in SPLITS:
        s = t[t["split"] == split].set_index(keys)
        if not len(s):
            continue
        label = SPLIT_LABEL[split]
        out[f"{label} change"] = s["change"]
        out[f"{label} interval"] = pd.Series([f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(s["low"], s["high"])],
                                             index=s.index)
        out[f"{label} verdict"] = s["verdict"]
    return out.reset_index()


def onset(table) -> "object":
    """Where each effect starts, read along the grid ordered by the Expert's drift: per axis and split, the
    smallest Expert drift at which the Expert's change is resolved (``forgets`` or ``gains``), and per
    mitigation the smallest Expert drift at which it forgets measurably less than the Expert (``less``)."""
    import pandas as pd

    if table is None or not len(table):
        return pd.DataFrame()
    rows = []
    expert = table[table["strategy"] == "expert"]
    dose_drift = {(r.lr, r.steps): r.drift_layers for r in expert.drop_duplicates(["lr", "steps"]).itertuples()}
    for (axis, split), g in table.groupby(["axis", "split"], sort=False):
        if split == "held_in" and axis != "perplexity":
            continue
        for strategy, s in g.groupby("strategy", sort=False):
            if split == "held_in" and strategy != "expert":
                continue  # held-in is acquisition: the Expert's row says where it starts
            s = s.assign(at=[dose_drift.get((a, b), float("nan")) for a, b in zip(s["lr"], s["steps"])])
            s = s.sort_values("at")
            col, want = (("verdict", ("forgets", "gains")) if strategy == "expert"
                         else ("vs_expert_verdict", ("less",)))
            hit = s[s[col].isin(want)]
            first = hit.iloc[0] if len(hit) else None
            rows.append({"axis": axis, "split": SPLIT_LABEL[split], "strategy": strategy,
                         "effect": ("the Expert acquires" if split == "held_in" else "the Expert's change is resolved"
                                    if strategy == "expert" else "better than the Expert at the same dose"),
                         "first at Expert drift": float(first["at"]) if first is not None else float("nan"),
                         "lr": float(first["lr"]) if first is not None else float("nan"),
                         "steps": float(first["steps"]) if first is not None else float("nan"),
                         "resolved points": f"{len(hit)}/{len(s)}"})
    return pd.DataFrame(rows)


def summary(params: Params, table) -> str:
    """What the study found, computed from its table, in a few lines of Markdown."""
    if table is None or not len(table):
        return "The study has no measured point yet."
    d = params.dose
    lines = [f"Dose-response study, family {d.family}: {len(d.lrs)} learning rates x {len(d.steps)} budgets x "
             f"{len(d.strategies)} strategies; {table['model'].nunique()} points measured "
             f"({len(grid(params))} in the grid)."]
    ex = table[(table["strategy"] == "expert")]
    for axis in d.axes:
        for split in ("probe", "held_out"):
            g = ex[(ex["axis"] == axis) & (ex["split"] == split)]
            if not len(g):
                continue
            forgets, gains = g[g["verdict"] == "forgets"], g[g["verdict"] == "gains"]
            lines.append(f"- {axis}, {SPLIT_LABEL[split]}: of {len(g)} doses the Expert forgets measurably at "
                         f"{len(forgets)}" + (f" (smallest drift {forgets['drift_layers'].min():.4f})"
                                              if len(forgets) else "")
                         + f", gains at {len(gains)}, undecided at {len(g) - len(forgets) - len(gains)}.")
    mit = table[(table["strategy"] != "expert") & table["vs_expert_verdict"].isin(["less", "more", "undecided"])
                & (table["split"] != "held_in")]
    for strategy, g in mit.groupby("strategy", sort=False):
        less = g[g["vs_expert_verdict"] == "less"]
        more = g[g["vs_expert_verdict"] == "more"]
        lines.append(f"- {strategy} against the Expert at the same dose (English and held-out, every axis): forgets "
                     f"measurably less in {len(less)} of {len(g)} cells, more in {len(more)}, undecided in "
                     f"{len(g) - len(less) - len(more)}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- figures

def _style(strategy: str):
    from famlib.figures import strategy_color, strategy_marker

    return strategy_color(strategy), strategy_marker(strategy)


def _log_x(ax) -> None:
    """A log drift axis labelled in plain numbers (0.05, 0.1, 0.2), no crowded minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def forgetting_figure(table, splits: Sequence[str] = ("probe", "held_out")):
    """Forgetting against drift: one panel per axis and split, the change from the base (paired 95 %
    interval as error bars) against the point's relative drift over the decoder layers, a line per strategy
    and budget (learning rate grows along a line)."""
    import matplotlib.pyplot as plt

    if table is None or not len(table):
        from famlib.figures import _empty

        return _empty("Dose-response: forgetting against drift", "no measured point")
    axes_names = [a for a in AXES if a in set(table["axis"])]
    fig, axs = plt.subplots(len(splits), len(axes_names), figsize=(4.2 * len(axes_names), 3.3 * len(splits)),
                            squeeze=False)
    budgets = sorted(set(table["steps"]))
    styles = ["-", "--", ":", "-."]
    for r, split in enumerate(splits):
        for c, axis in enumerate(axes_names):
            ax = axs[r][c]
            t = table[(table["axis"] == axis) & (table["split"] == split)]
            for (strategy, steps), g in t.groupby(["strategy", "steps"], sort=False):
                g = g.sort_values("lr")
                color, marker = _style(strategy)
                ls = styles[budgets.index(steps) % len(styles)]
                ax.errorbar(g["drift_layers"], g["change"], yerr=[g["change"] - g["low"], g["high"] - g["change"]],
                            color=color, marker=marker, ls=ls, capsize=2, ms=5,
                            label=f"{strategy}, {steps} steps" if r == 0 and c == 0 else None)
            ax.axhline(0, color="0.5", lw=0.8)
            _log_x(ax)
            worse = "up" if axis in LOWER_IS_BETTER_AXES else "down"
            ax.set_title(f"{axis}, {SPLIT_LABEL[split]}", fontsize=10)
            ax.set_xlabel("relative drift of the decoder layers")
            unit = {"perplexity": "bits/byte", "translation": "chrF"}.get(axis, "accuracy")
            ax.set_ylabel(f"change from base ({unit}; "
                          f"forgetting {worse})", fontsize=8)
    handles, labels = axs[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.suptitle("Dose-response: forgetting against drift (95 % paired intervals)", fontsize=11)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    return fig


def tradeoff_figure(table):
    """Acquisition against forgetting: held-in bits-per-byte change (left is better) against English
    bits-per-byte change (up is forgetting), both with paired intervals, a line per strategy and budget."""
    import matplotlib.pyplot as plt

    if table is None or not len(table):
        from famlib.figures import _empty

        return _empty("Dose-response: acquisition against forgetting", "no measured point")
    t = table[table["axis"] == "perplexity"]
    keys = ["strategy", "lr", "steps"]
    held = t[t["split"] == "held_in"].set_index(keys)
    fig, axs = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    budgets = sorted(set(t["steps"]))
    styles = ["-", "--", ":", "-."]
    for c, split in enumerate(("probe", "held_out")):
        ax = axs[0][c]
        other = t[t["split"] == split].set_index(keys)
        common = held.index.intersection(other.index)
        if not len(common):
            ax.set_visible(False)
            continue
        h, o = held.loc[common].reset_index(), other.loc[common].reset_index()
        for (strategy, steps), idx in h.groupby(["strategy", "steps"], sort=False).groups.items():
            hh, oo = h.loc[idx].sort_values("lr"), o.loc[idx].sort_values("lr")
            color, marker = _style(strategy)
            ls = styles[budgets.index(steps) % len(styles)]
            ax.errorbar(hh["change"], oo["change"], xerr=[hh["change"] - hh["low"], hh["high"] - hh["change"]],
                        yerr=[oo["change"] - oo["low"], oo["high"] - oo["change"]], color=color, marker=marker,
                        ls=ls, capsize=2, ms=5, label=f"{strategy}, {steps} steps" if c == 0 else None)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.axvline(0, color="0.5", lw=0.8)
        ax.set_xlabel("held-in bits/byte change (acquisition: left is better)")
        ax.set_ylabel(f"{SPLIT_LABEL[split]} bits/byte change (forgetting: up)")
        ax.set_title(f"acquisition against {SPLIT_LABEL[split]} forgetting", fontsize=10)
    handles, labels = axs[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig

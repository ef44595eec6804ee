"""The instrument's gates: a multiple-choice task earns its place only if it passes all of them.

design.md, "Offline evaluation suite". Per task (and scale):

* **random**: a randomly initialised model of the base's architecture (the base's tokenizer, weights drawn
  from the architecture's own initialisation with the run seed) scores at chance, within 2 standard errors
  over all the items it answered (cluster-robust over item keys: :func:`clustered_accuracy`).
* **shortcuts**: every shortcut baseline of :mod:`famlib.evaluate.shortcuts` (computed when the suite is
  built) scores at most chance + 0.10, averaged over the languages of each split.
* **base**: the scale's base model clears chance by at least 4 standard errors, on the held-in average and
  on English. Its standard error is the cluster-bootstrap one (:mod:`famlib.evidence`): the half-width of
  the 95 % interval divided by 1.96.

:func:`gate_table` reads what the suite manifest, the gates collection and the results hold; nothing is
decided from a partial run without saying so (the random model's rows carry their sample limit).
"""

from __future__ import annotations

import math
from pathlib import Path

SHORTCUT_MARGIN = 0.10  # shortcut baselines may score at most chance + this
RANDOM_SE = 2.0  # a random model within this many standard errors of chance
BASE_SE = 4.0  # the base at least this many standard errors above chance
MC_AXES = ("comprehension", "reasoning")


def random_model_dir(params) -> Path:
    from famlib.paths import model_dir

    return model_dir(params.scale, "random")


def build_random_model(params) -> Path:
    """``runs/<scale>/models/random``: the base's config and tokenizer, weights freshly initialised (seeded).

    Rebuilt only when the base's config changes. Raises FamlibError when the base does not exist yet.
    """
    import json

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from famlib.base import base_dir
    from famlib.errors import FamlibError
    from famlib.tokenizer import load_tokenizer
    from famlib.io import atomic_write_json, sha256_file

    base = base_dir(params)
    if not (base / "config.json").exists():
        raise FamlibError(f"no base model at {base}: build it first (famlib base --scale {params.scale})")
    out = random_model_dir(params)
    key = {"config": sha256_file(base / "config.json"), "seed": params.seed, "strategy": "base", "random_init": True}
    prov = out / "famlib_provenance.json"
    if prov.exists() and json.loads(prov.read_text()) == key:
        return out
    cfg = AutoConfig.from_pretrained(str(base))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params.seed)
        model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(out)
    load_tokenizer(base).save_pretrained(out)
    atomic_write_json(prov, key)  # last: a directory without it is rebuilt
    return out


def evaluate_random(params, corpus=None, log=print, languages=None):
    """Evaluate the random model on the multiple-choice axes (``evaluation.gate_limit`` items per task), on
    every language or on ``languages``. The English comprehension row (``evaluation.english_task``) is one
    language whose items share no key with the others, so ``gate_limit`` items would make a gate too weak to
    fail: it is read whole (``evaluation.english_items``)."""
    from famlib.evaluate.run import evaluate_model
    from famlib.evaluate.suite import english_spec

    d = build_random_model(params)
    probe = params.probe_language
    langs = list(params.languages if languages is None else languages)
    kw = {"corpus": corpus, "model_dir": d, "strategy": "base", "collection": "gates", "log": log}
    whole = english_spec(params) is not None and probe in langs
    if whole:
        evaluate_model(params, "random", axes=["comprehension"], languages=[probe], **kw)
        langs = [x for x in langs if x != probe]
        if not langs:
            return None
    return evaluate_model(params, "random", axes=list(MC_AXES), languages=langs, limit=params.evaluation.gate_limit,
                          **kw)


def clustered_accuracy(records: list[dict]) -> tuple[float, float, int, int]:
    """(accuracy, its cluster-robust standard error, items, distinct keys) of multiple-choice records.

    Languages of one source are asked about the same verses with the same English choices, so their items
    are not independent (a random model answers the same English choices alike whatever the passage): the
    standard error treats each item key as one cluster, sqrt(sum_k (sum_{i in k} (x_i - p))^2) / n.
    """
    from famlib.evaluate.records import headline_correct

    xs = [(str(r["key"]), float(headline_correct(r))) for r in records]
    n = len(xs)
    if not n:
        return float("nan"), float("nan"), 0, 0
    p = sum(x for _, x in xs) / n
    by: dict[str, float] = {}
    for k, x in xs:
        by[k] = by.get(k, 0.0) + (x - p)
    return p, math.sqrt(sum(v * v for v in by.values())) / n, n, len(by)


def gate_table(params, suite, results, gates=None, evidence=None):
    """One row per multiple-choice task: chance, shortcut baselines, random model, base, and each verdict.

    Args:
        suite: the built suite (its manifest holds the shortcut baselines per language).
        results: the scale's results (the base's rows); gates: the gates collection's rows (random model).
        evidence: a :class:`famlib.evidence.Evidence` over ``results`` (built here when None).
    """
    import pandas as pd

    from famlib.evaluate.suite import task_specs
    from famlib.evidence import Evidence

    ev = evidence or Evidence(params, results, iters=params.evaluation.bootstrap_iters)
    out = []
    for name, spec in task_specs(params).items():
        if spec.output_type != "multiple_choice":
            continue
        entries = [e for e in suite.tasks.values() if e["task"] == name]
        if not entries:
            continue
        # a task of mixed 2- and 3-way items (BIG-bench's) has its chance per item, in the manifest
        chance = spec.chance if spec.chance is not None else sum(e["chance"] * e["n"] for e in entries) / sum(
            e["n"] for e in entries)
        row = {"task": name, "axis": spec.axis, "chance": chance, "languages": len(entries),
               "items": sum(e["n"] for e in entries)}
        # shortcuts: the worst baseline, averaged over each split's languages
        worst = {}
        for split in ("base", "held_in", "held_out"):
            sub = [e for e in entries if params.split_of(e["language"]) == split and e.get("shortcuts")]
            for b in (sub[0]["shortcuts"] if sub else {}):
                v = sum(e["shortcuts"][b] for e in sub) / len(sub)
                if not math.isnan(v) and v > worst.get(b, (-1, ""))[0]:
                    worst[b] = (v, split)
        top = max(worst.items(), key=lambda kv: kv[1][0]) if worst else None
        row.update({f"shortcut_{b}": v for b, (v, _) in worst.items()})
        row["shortcut_max"] = top[1][0] if top else float("nan")
        row["shortcut_max_is"] = f"{top[0]} ({top[1][1]})" if top else ""
        row["shortcut_gate"] = ("not measured" if top is None else
                                "passes" if top[1][0] <= chance + SHORTCUT_MARGIN else "fails")
        # random model, over every item it answered (keys as clusters)
        recs = []
        if gates is not None and len(gates):
            from famlib.evaluate.records import read_items

            g = gates[(gates["task_name"] == name) & gates["primary"].astype(bool) & (gates["model"] == "random")]
            for t in g["harness_task"].unique():
                recs += read_items(params.scale, "random", t, "gates") or []
        if recs:
            acc, se, n, keys = clustered_accuracy(recs)
            row.update({"random": acc, "random_se": se, "random_n": n, "random_keys": keys,
                        "random_limit": g["limit"].max(),
                        "random_gate": "passes" if abs(acc - chance) <= RANDOM_SE * se else "fails"})
        else:
            row.update({"random": float("nan"), "random_n": 0, "random_gate": "not measured"})
        # base: held-in average (families' mean) and English; a sample limit on its rows is said
        for label, groups in (("held_in", ev.groups("held_in")), ("english", {params.probe_language: [params.probe_language]})):
            if results is not None and len(results) and "limit" in results:
                langs = {x for v in groups.values() for x in v}
                b = results[(results["model"] == "base") & (results["task_name"] == name)
                            & results["language"].astype(str).isin(langs)]
                row[f"base_{label}_limit"] = b["limit"].max() if len(b) else float("nan")
            # only the languages this task has: an axis's other task (the English row's, or the offline
            # task beside it) is not this task's score
            have = {e["language"] for e in entries}
            groups = {g: [x for x in v if x in have] for g, v in groups.items()}
            groups = {g: v for g, v in groups.items() if v}
            iv = ev.score("base", spec.axis, groups) if groups else None
            if iv is None:
                # a language the suite has no task for (the offline suites' English) is not a missing measurement
                in_suite = any(e["task"] == name and e.get("language") in {x for v in groups.values() for x in v}
                               for e in suite.tasks.values())
                row.update({f"base_{label}": float("nan"),
                            f"base_{label}_gate": "not measured" if in_suite else "no row in the suite"})
                continue
            se = (iv.high - iv.low) / (2 * 1.96)
            row.update({f"base_{label}": iv.estimate, f"base_{label}_low": iv.low, f"base_{label}_high": iv.high,
                        f"base_{label}_se": se,
                        f"base_{label}_gate": "passes" if iv.estimate >= chance + BASE_SE * se else "fails"})
        out.append(row)
    return pd.DataFrame(out)


def _number(x) -> bool:
    """A real number (not None, NaN or pandas' NA)."""
    try:
        return x is not None and not math.isnan(float(x))
    except (TypeError, ValueError):
        return False


def gates_markdown(table) -> str:
    """The gate table as Markdown: one line per task, each gate's number and verdict."""
    if table is None or len(table) == 0:
        return "_No multiple-choice task in this suite._"
    lines = ["| task | axis | chance | worst shortcut | random model | base, held-in (95 % CI) | base, English (95 % CI) |",
             "|---|---|---|---|---|---|---|"]

    def base(r, k):
        v = r.get(f"base_{k}")
        if not _number(v):
            return "no row (not in the suite)" if r.get(f"base_{k}_gate") == "no row in the suite" else "not measured"
        lim = r.get(f"base_{k}_limit")
        sampled = f" (first {int(lim)} items per language)" if _number(lim) else ""
        se = r[f"base_{k}_se"]
        # every draw equal (a few items all scored alike, as at smoke): no spread to count in
        above = (f"{(v - r['chance']) / se:.1f} s.e. above chance" if se > 0 else
                 "a zero-width interval (every bootstrap draw alike)")
        return (f"{v:.3f} [{r[f'base_{k}_low']:.3f}, {r[f'base_{k}_high']:.3f}], "
                f"{above}: {r[f'base_{k}_gate']}{sampled}")

    for _, r in table.iterrows():
        sc = (f"{r['shortcut_max']:.3f} {r['shortcut_max_is']}: {r['shortcut_gate']}" if _number(r["shortcut_max"])
              else "not measured")
        if r["random_n"]:
            lim = r.get("random_limit")
            sample = f", first {int(lim)} items per language" if _number(lim) else ""
            rnd = (f"{r['random']:.3f} ± {r['random_se']:.3f} (n {r['random_n']}, {r['random_keys']} keys{sample}): "
                   f"{r['random_gate']}")
        else:
            rnd = "not measured"
        lines.append(f"| `{r['task']}` | {r['axis']} | {r['chance']:.2f} | {sc} | {rnd} | {base(r, 'held_in')} | "
                     f"{base(r, 'english')} |")
    return "\n".join(lines)


def gate_table_path(scale: str) -> Path:
    from famlib.evaluate.results import results_dir

    return results_dir(scale) / "gates_table.csv"


def load_gate_table(scale: str):
    """The saved gate table of a scale (None when there is none)."""
    import pandas as pd

    path = gate_table_path(scale)
    return pd.read_csv(path) if path.exists() else None


def run_gates(params, corpus=None, log=print, languages=None):
    """Evaluate the random model (on ``languages``, default all), decide every gate, save
    ``results/gates_table.csv``; return the table."""
    from famlib.evaluate.results import load_results
    from famlib.evaluate.suite import build_suite, load_suite, suite_dir
    from famlib.io import atomic_path

    evaluate_random(params, corpus, log, languages)
    suite = load_suite(suite_dir(params)) if (suite_dir(params) / "suite.json").exists() else build_suite(params, corpus)
    table = gate_table(params, suite, load_results(params.scale), load_results(params.scale, "gates"))
    with atomic_path(gate_table_path(params.scale)) as tmp:
        table.to_csv(tmp, index=False)
    return table

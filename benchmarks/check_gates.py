"""The evaluation gates of a scale's base without evaluating every language: the base on the held-in
languages and English (the two averages the base gate judges), the random model on the same languages,
the shortcut baselines from the suite (every language). The base's sampled rows go to the ``gates``
collection (``results/gates.csv``, ``results/gates_items/base/``), never beside notebook 05's complete ones;
writes ``runs/<scale>/results/gates_check.csv`` and prints the gate table as the report shows it.

At the small scale a multiple-choice item costs about 1-3 s on a 2-core CPU, so notebook 05's full base
evaluation (27 languages, 4 axes) takes hours; this is the gate alone. Items are the first ``--items`` of
each task (the suite's own pseudo-random order, the same keys in every language), English ``--english-items``:
the rows record the sample limit, and the table says "first N items".

    .venv/bin/python benchmarks/check_gates.py --scale small --items 30 --reasoning-items 16 --english-items 300
"""

from __future__ import annotations

import argparse
import time

from _proc import offline_env  # benchmarks/_proc.py: this script's folder is on sys.path

offline_env()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--items", type=int, default=40, help="items per held-in language and task")
    ap.add_argument("--english-items", type=int, default=300, help="items for the English comprehension row")
    ap.add_argument("--reasoning-items", type=int, default=None,
                    help="items per held-in language for the reasoning task (default --items)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads; default: the params file's")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params override")
    args = ap.parse_args()

    from famlib.cli import _overrides
    from famlib.config import load_params
    from famlib.data import build_corpus
    from famlib.evaluate.gates import evaluate_random, gate_table, gate_table_path, gates_markdown
    from famlib.evaluate.results import load_results
    from famlib.evaluate.run import evaluate_model
    from famlib.evaluate.suite import AXIS_TASK, load_suite, suite_dir
    from famlib.evidence import Evidence
    from famlib.io import atomic_path
    from famlib.train import set_threads

    overrides, origins = _overrides(args)
    params = load_params(args.scale, overrides, origins)
    threads = set_threads(args.threads or params.threads)
    corpus = build_corpus(params)
    held_in = [lang for f in params.families.values() for lang in f.train]
    probe = params.probe_language
    t0 = time.time()
    kw = {"corpus": corpus, "collection": "gates"}
    others = [x for x in held_in if x != probe]
    evaluate_model(params, "base", axes=["comprehension"], languages=others, limit=args.items, **kw)
    evaluate_model(params, "base", axes=["reasoning"], languages=others, limit=args.reasoning_items or args.items, **kw)
    suite = load_suite(suite_dir(params))
    english = [t for t, e in suite.tasks.items() if e["axis"] == "comprehension" and e["language"] == probe]
    if english:  # BIG-bench's task where evaluation.english_task names one (famlib.evaluate.bigbench)
        evaluate_model(params, "base", axes=["comprehension"], languages=[probe], limit=args.english_items, **kw)
    else:  # the offline suites have no English multiple-choice rows of their own (README, "Evaluation")
        own = f"famlib_{AXIS_TASK['comprehension']}_{probe}"
        print(f"{probe}: no comprehension row: {suite.skipped.get(own, 'not in the suite')}; "
              "evaluation.english_task names a BIG-bench task for one")
    t1 = time.time()
    evaluate_random(params, corpus, languages=held_in + [probe])
    gates = load_results(params.scale, "gates")
    base = gates[gates["model"] == "base"]
    evidence = Evidence(params, base, "gates", iters=params.evaluation.bootstrap_iters)
    table = gate_table(params, load_suite(suite_dir(params)), base, gates, evidence=evidence)
    with atomic_path(gate_table_path(params.scale).with_name("gates_check.csv")) as tmp:
        table.to_csv(tmp, index=False)
    t2 = time.time()
    print(f"\n{args.scale}: base {t1 - t0:.0f} s ({args.items} comprehension and {args.reasoning_items or args.items} "
          f"reasoning items per held-in language, {args.english_items} English), random model and gate table "
          f"{t2 - t1:.0f} s, torch threads {threads}\n")
    print(gates_markdown(table))


if __name__ == "__main__":
    main()

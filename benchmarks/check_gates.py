"""The evaluation gates of a scale's base without evaluating every language: the base on the held-in
languages and English (the two averages the base gate judges), the random model on the same languages,
the shortcut baselines from the suite (every language). Writes ``runs/<scale>/results/gates_table.csv`` and
prints the gate table as the report shows it.

At the small scale a multiple-choice item costs about 1-3 s on a 2-core CPU, so notebook 05's full base
evaluation (27 languages, 4 axes) takes hours; this is the gate alone. Items are the first ``--items`` of
each task (the suite's own pseudo-random order, the same keys in every language), English ``--english-items``:
the rows record the sample limit, and the table says "first N items".

    .venv/bin/python benchmarks/check_gates.py --scale small --items 40 --english-items 100
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--items", type=int, default=40, help="items per held-in language and task")
    ap.add_argument("--english-items", type=int, default=100, help="items for the English probe")
    ap.add_argument("--threads", type=int, default=None, help="torch threads; default: the params file's")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params override")
    args = ap.parse_args()

    from famlib.cli import _overrides
    from famlib.config import load_params
    from famlib.data import build_corpus
    from famlib.evaluate.gates import gates_markdown, run_gates
    from famlib.evaluate.run import evaluate_model
    from famlib.train import set_threads

    overrides, origins = _overrides(args)
    params = load_params(args.scale, overrides, origins)
    threads = set_threads(args.threads or params.threads)
    corpus = build_corpus(params)
    held_in = [lang for f in params.families.values() for lang in f.train]
    probe = params.probe_language
    t0 = time.time()
    axes = ["comprehension", "reasoning"]
    evaluate_model(params, "base", corpus=corpus, axes=axes, languages=held_in, limit=args.items)
    evaluate_model(params, "base", corpus=corpus, axes=axes, languages=[probe], limit=args.english_items)
    t1 = time.time()
    table = run_gates(params, corpus, languages=held_in + [probe])
    t2 = time.time()
    print(f"\n{args.scale}: base {t1 - t0:.0f} s ({args.items} items per held-in language, {args.english_items} "
          f"English), random model and gate table {t2 - t1:.0f} s, torch threads {threads}\n")
    print(gates_markdown(table))


if __name__ == "__main__":
    main()

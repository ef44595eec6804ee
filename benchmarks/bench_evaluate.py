"""Time to evaluate one model on every language and task it answers for, broken down by task (axis).

Runs ``famlib.evaluate.evaluate_model`` with the cache off, in a scratch runs folder (the scale's models are
linked in, results and task files stay out of ``runs/``; ``--in-place`` keeps them), once per batch size; lm-eval batches
requests across all languages of an axis in one ``simple_evaluate`` call, sorted by length. Prints per
axis: harness tasks, items (documents, questions or sentences), wall seconds and items per second, plus
the tokens per second of the perplexity pass.

    .venv/bin/python benchmarks/bench_evaluate.py --scale tiny --model base
    .venv/bin/python benchmarks/bench_evaluate.py --scale tiny --batch-sizes 1,16,64 --languages en,ru,hi --max-items 16
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _proc import offline_env  # benchmarks/_proc.py: this script's folder is on sys.path

offline_env()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--model", default="base", help="model id under runs/<scale>/models/")
    ap.add_argument("--batch-sizes", default=None, help="comma-separated; default: evaluation.batch_size")
    ap.add_argument("--axes", default=None, help="comma-separated subset of perplexity,comprehension,reasoning,translation")
    ap.add_argument("--languages", default=None, help="comma-separated subset of the model's languages")
    ap.add_argument("--max-items", type=int, default=None, help="override evaluation.max_items")
    ap.add_argument("--ppl-tokens", type=int, default=None, help="override evaluation.perplexity_max_tokens")
    ap.add_argument("--threads", type=int, default=None, help="torch threads; default: the params file's")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    ap.add_argument("--in-place", action="store_true",
                    help="use the real runs/ folder: the (forced) results replace the cached ones in results.csv")
    args = ap.parse_args()

    from famlib.config import load_params
    from famlib.data import build_corpus
    from famlib.threads import set_threads
    from famlib.paths import models_dir

    overrides = {}
    if args.max_items is not None:
        overrides["evaluation.max_items"] = args.max_items
    if args.ppl_tokens is not None:
        overrides["evaluation.perplexity_max_tokens"] = args.ppl_tokens
    params = load_params(args.scale, overrides)
    threads = set_threads(args.threads or params.threads)
    models = models_dir(params.scale)
    if not (models / args.model / "config.json").exists():
        raise SystemExit(f"no model {models / args.model}; build it first (e.g. `famlib base --scale {args.scale}`)")
    corpus = build_corpus(params)
    sizes = [int(b) for b in args.batch_sizes.split(",")] if args.batch_sizes else [params.evaluation.batch_size]
    axes = args.axes.split(",") if args.axes else None

    with tempfile.TemporaryDirectory(prefix="bench_evaluate_") as tmp:
        if not args.in_place:
            os.environ["FAMLIB_RUNS"] = tmp  # results and generated tasks go here, models are linked in
            (Path(tmp) / params.scale).mkdir()
            (Path(tmp) / params.scale / "models").symlink_to(models.resolve())
        from famlib.evaluate import build_suite, evaluate_model
        from famlib.tokenizer import load_tokenizer

        t0 = time.time()
        tok = load_tokenizer(models / args.model)
        suite = build_suite(params, corpus, tokenizer=tok)
        suite_s = time.time() - t0
        out = {"scale": params.scale, "model": args.model, "threads": threads, "suite_seconds": suite_s, "runs": []}
        print(f"scale {params.scale}, model {args.model}, torch threads {threads}; suite built in {suite_s:.1f} s "
              f"({len(suite.tasks)} harness tasks, {len(suite.skipped)} skipped)")
        for bs in sizes:
            r = evaluate_model(params, args.model, corpus=corpus, axes=axes, batch_size=bs, force=True,
                               languages=args.languages.split(",") if args.languages else None, log=lambda *_: None)
            print(f"\nbatch size {bs}: total {r.seconds['total']:.1f} s")
            for task, error in r.failed.items():  # a failed task is not timed: say so, never drop it silently
                print(f"FAILED {task}: {error[:500]}")
            print(f"{'axis':<14}{'tasks':>6}{'items':>8}{'seconds':>10}{'items/s':>10}")
            run = {"batch_size": bs, "total_seconds": r.seconds["total"], "axes": {}, "failed": dict(r.failed)}
            for axis, tasks in r.ran.items():
                n = sum(suite.tasks[t]["n"] for t in tasks)
                s = r.seconds[axis]
                extra = ""
                info = {"tasks": len(tasks), "items": n, "seconds": s, "items_per_s": n / s}
                if axis == "perplexity":
                    docs = [json.loads(line) for t in tasks
                            for line in (suite.path / "data" / "heldout_perplexity" /
                                         f"{t.removeprefix('famlib_')}.test.jsonl").read_text().splitlines()]
                    ntok = sum(len(x) for x in tok([d["text"] for d in docs], add_special_tokens=False)["input_ids"])
                    info["tokens"], info["tokens_per_s"] = ntok, ntok / s
                    extra = f"   ({ntok} tokens, {ntok / s:,.0f} tokens/s)"
                run["axes"][axis] = info
                print(f"{axis:<14}{len(tasks):>6}{n:>8}{s:>10.1f}{n / s:>10.1f}{extra}")
            out["runs"].append(run)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

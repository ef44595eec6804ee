"""Multiple-choice scoring: lm-eval's ``HFLM`` against famlib's ``SharedPrefixLM``, in one run.

    .venv/bin/python benchmarks/bench_mc_scoring.py                                   # tiny base, 4 languages
    .venv/bin/python benchmarks/bench_mc_scoring.py --scale small --languages en es --items 16

Runs the scale's comprehension (4-way) and reasoning (2-way) tasks for ``--languages`` through
``lm_eval.simple_evaluate`` twice per repeat, once with each wrapper around the same model in memory (order
alternating between repeats, so neither always runs warm), and reports per wrapper the wall time of each
repeat, the ratio of the medians, the largest difference between the two wrappers' per-choice
log-likelihoods and whether every item's chosen answer agrees. Needs the scale's base model
(``runs/<scale>/models/base``: ``make paper`` or ``famlib run --scale <scale> --step 02_base_model``).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

from _proc import offline_env  # benchmarks/_proc.py: this script's folder is on sys.path

offline_env()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--languages", nargs="+", default=["en", "ru", "hi", "es"])
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="harness batch size (default: evaluation.batch_size)")
    ap.add_argument("--items", type=int, default=None, help="evaluation.max_items (default: the scale's)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()

    import numpy as np
    import torch
    from lm_eval.models.huggingface import HFLM

    from famlib.config import load_params
    from famlib.data import build_corpus
    from famlib.evaluate.lm import SharedPrefixLM
    from famlib.evaluate.run import load_model, run_harness
    from famlib.naming import model_path
    from famlib.tokenizer import load_tokenizer
    from famlib.evaluate.suite import build_suite

    torch.set_num_threads(args.threads)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    params = load_params(args.scale, {"evaluation.max_items": args.items} if args.items else None)
    mdir = model_path(params, "base", must_exist=True)
    suite = build_suite(params, build_corpus(params), tokenizer=load_tokenizer(mdir))
    tasks = suite.select(args.languages, ["comprehension", "reasoning"])
    model, tok = load_model(mdir, args.dtype, device="cpu")
    bs = args.batch or params.evaluation.batch_size
    wrappers = {"HFLM": HFLM, "SharedPrefixLM": SharedPrefixLM}
    seconds: dict[str, list[float]] = {k: [] for k in wrappers}
    outs = {}
    for r in range(args.repeats):
        for name in (list(wrappers) if r % 2 == 0 else list(reversed(wrappers))):
            t0 = time.perf_counter()
            outs[name] = run_harness(wrappers[name](pretrained=model, tokenizer=tok, batch_size=bs), tasks, suite, params)
            seconds[name].append(time.perf_counter() - t0)
    diff, agree, n = 0.0, 0, 0
    for task in tasks:
        a = np.array([[x[0][0] for x in s["resps"]] for s in outs["HFLM"]["samples"][task]])
        b = np.array([[x[0][0] for x in s["resps"]] for s in outs["SharedPrefixLM"]["samples"][task]])
        diff = max(diff, float(np.abs(a - b).max()))
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        n += len(a)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    figures = {"scale": args.scale, "languages": args.languages, "tasks": len(tasks), "items": n, "dtype": args.dtype,
               "threads": args.threads, "batch": bs, "seconds": seconds,
               "speedup": med["HFLM"] / med["SharedPrefixLM"], "max_abs_loglik_diff": diff, "same_answer": agree / n}
    print(f"{args.scale} base, {args.dtype}, {args.threads} thread(s), batch {bs}: {len(tasks)} tasks, {n} items")
    for k, v in seconds.items():
        print(f"  {k:15s} " + "  ".join(f"{s:7.1f} s" for s in v))
    print(f"  speedup (median) {figures['speedup']:.2f}x; max |log-likelihood difference| {diff:.2e}; "
          f"same answer on {agree}/{n} items")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=1)


if __name__ == "__main__":
    main()

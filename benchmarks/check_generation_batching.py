"""Does a model's greedy translation depend on the batch it is generated in? Time, chrF and changed outputs.

    .venv/bin/python benchmarks/check_generation_batching.py --scale small --model expert.germanic --language de

Runs the scale's two translation tasks of one language (``famlib_translation_<lang>-en`` and ``-en-<lang>``,
the suite under ``runs/<scale>/evaluation/tasks``) through the same harness path as ``famlib.evaluate``, once
per dtype and batch size, and prints the time, the chrF of each task and how many of the generated outputs
differ from the first batch size's. Nothing is written to the results.

Greedy decoding is exact only if every logit is: a batch of another size or composition (lm-eval sorts the
requests of all the tasks in one call by length and batches them, so the grouping follows which languages a
model is evaluated on) changes the padding and how the kernels block their sums, and in bf16 the rounding then flips near-ties
between the two best tokens, after which the rest of the output follows another path. Measured on the small
scale's Germanic Expert, German (48 items per direction, one thread, beside the small run; measured twice, by
this script and by its draft): in bf16, 25 of 48 de->en and 19 of 48 en->de outputs changed between batches of 16 and 48, and chrF
moved from 29.50 to 29.58 and from 20.75 to 19.98 (the same in both runs: for one batching the result is
deterministic); in float32 no output changed (chrF 29.22 and 20.05 at both sizes), at 2.2-2.3x the time
(235.6-245.1 s against 105.1-109.1 s at batch 16). Batches of 48 took 0.79-0.90x (bf16) and 0.75-0.82x
(float32) the time of batches of 16. The results famlib stores were generated with all of a model's
translation tasks in one call: for the same Expert they read 29.16 and 20.34.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")


def main(argv=None) -> int:
    import torch

    from famlib.config import load_params
    from famlib.evaluate.run import _lm, load_model, run_harness
    from famlib.naming import model_path
    from famlib.evaluate.suite import load_suite, suite_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--model", default="expert.germanic")
    ap.add_argument("--language", default="de")
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    ap.add_argument("--batch-sizes", nargs="+", type=int, default=[16, 48])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = load_params(args.scale)
    suite = load_suite(suite_dir(params))
    tasks = sorted(t for t, e in suite.tasks.items() if e["axis"] == "translation" and e["language"] == args.language)
    if not tasks:
        raise SystemExit(f"no translation task for language {args.language!r} in {suite.path}")
    print(f"{args.model}, {', '.join(tasks)}, {args.threads} thread(s)")
    for dtype in args.dtypes:
        model, tok = load_model(model_path(params, args.model, must_exist=True), dtype, device="cpu")
        first = None
        for bs in args.batch_sizes:
            t0 = time.time()
            out = run_harness(_lm(model, tok, params, "translation", None, bs), tasks, suite, params)
            seconds = time.time() - t0
            outputs = {t: [s["filtered_resps"][0] for s in out["samples"][t]] for t in tasks}
            first = first or outputs
            chrf = {t: next(v for k, v in out["results"][t].items() if k.startswith("chrf") and "stderr" not in k)
                    for t in tasks}
            changed = {t: sum(a != b for a, b in zip(first[t], outputs[t])) for t in tasks}
            print(f"{dtype:9s} batch {bs:3d}: {seconds:6.1f} s | "
                  + " | ".join(f"{t}: chrF {chrf[t]:.2f}, {changed[t]}/{len(outputs[t])} outputs changed"
                               for t in tasks), flush=True)
        del model
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""CPT throughput of the real gemma-3-270m on this CPU: full vs trimmed vocabulary, float32 vs bf16 autocast.

    .venv/bin/python benchmarks/bench_small_cpt.py                        # 1 thread, romance set
    .venv/bin/python benchmarks/bench_small_cpt.py --threads 1 2 --set germanic --steps 5

What it does, in one run:

1. Packs the small scale's CPT sets (every family and Dense) from the offline corpus with the base's tokenizer
   into a temporary folder (as ``train_strategy`` would; about 35 s) and reports the kept vocabulary of each
   (``famlib.vocab.used_token_ids`` over its train and validation tokens plus the special ids).
2. Trains the base on the rows of ``--set`` (sequences cut to ``--seq`` tokens) with ``famlib.train.train``
   and the scale's ``training.family`` settings (batch overridden to ``--batch``, ``max_steps`` = warm-up +
   timed steps, no validation), once per configuration, each in a fresh subprocess (clean memory figures):

   * ``full fp32`` / ``full bf16``: the 262,144-row vocabulary, float32 or bf16 autocast (``cfg.bf16``);
   * ``trim fp32`` / ``trim bf16``: :func:`famlib.vocab.trimmed_for_training` with the kept ids of ``--set``;
   * ``trim-dense fp32`` / ``trim-dense bf16``: kept ids of the Dense CPT set (the largest kept vocabulary,
     i.e. the Dense job's cost), unless ``--no-dense``.

   Every configuration sees the same batches in the same order. Throughput is steady state: tokens of the
   timed steps over the wall time between the end of the last warm-up step and the end of the last step
   (from ``metrics.jsonl``; model loading, trimming, write-back and the final checkpoint are excluded).
3. Loss: the per-step training losses (trimmed runs: over the kept vocabulary, a slightly lower number by
   construction) and, after training, on a fixed held-out batch from the set's validation split, the loss
   over the *full* vocabulary and over the set's kept ids of every resulting (full-vocabulary) model, so
   full and trimmed training are compared on the same objective.

Peak memory is the child process's maximum resident set size (model, gradients, AdamW state, activations).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "runs" / "small" / "models" / "base"


# ----------------------------------------------------------------------------------------------------
# Child: one configuration
# ----------------------------------------------------------------------------------------------------
def run_child(spec: dict) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from famlib.config import TrainConfig
    from famlib.train import set_threads, train
    from famlib.vocab import trimmed_for_training

    set_threads(spec["threads"])
    work = Path(spec["work"])
    data = np.load(work / "train.npy")
    held_out = np.load(work / "heldout.npy")
    keep_set = np.load(work / "keep_set.npy")
    cfg = TrainConfig(**spec["cfg"])
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(spec["model"])
    load_s = time.perf_counter() - t0
    out = Path(spec["out"])

    def held_out_losses(m) -> dict:
        """Mean next-token loss on the held-out batch over the full vocabulary and over the set's kept ids."""
        x = torch.from_numpy(held_out.astype(np.int64))
        with torch.no_grad():
            z = m(input_ids=x, use_cache=False).logits[:, :-1].float()
        y = x[:, 1:]
        full = torch.nn.functional.cross_entropy(z.reshape(-1, z.shape[-1]), y.reshape(-1))
        keep_t = torch.from_numpy(keep_set)
        o2n = torch.full((z.shape[-1],), -1, dtype=torch.long)
        o2n[keep_t] = torch.arange(len(keep_set))
        kept = torch.nn.functional.cross_entropy(z[..., keep_t].reshape(-1, len(keep_set)), o2n[y].reshape(-1))
        return {"full": float(full), "kept": float(kept)}

    result: dict = {"load_s": round(load_s, 1)}
    if spec.get("base_loss"):
        result["base_loss"] = held_out_losses(model)
    t1 = time.perf_counter()
    if spec["trim"] is None:
        res = train(model, data, None, cfg, out, seed=0, save_model_dir=False, progress=False)
        result["vocab"] = model.config.vocab_size
    else:
        keep = np.load(work / f"keep_{spec['trim']}.npy")
        with trimmed_for_training(model, data, None, tok, extra=keep) as (tmodel, train_t, _):
            result["trim_s"] = round(time.perf_counter() - t1, 2)
            result["vocab"] = tmodel.config.vocab_size
            res = train(tmodel, train_t, None, cfg, out, seed=0, save_model_dir=False, progress=False)
            t2 = time.perf_counter()
        result["writeback_s"] = round(time.perf_counter() - t2, 2)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    w = spec["warmup"]
    t_a, t_b = lines[w - 1]["elapsed"], lines[-1]["elapsed"]
    tokens = lines[-1]["tokens"] - lines[w - 1]["tokens"]
    result.update(
        tokens_per_s=tokens / (t_b - t_a),
        step_s=[round(b["elapsed"] - a["elapsed"], 2) for a, b in zip(lines[w - 1:], lines[w:])],
        first_step_s=lines[0]["elapsed"],
        losses=[x["loss"] for x in lines],
        lrs=[x["lr"] for x in lines],
        steps=res.steps,
        heldout=held_out_losses(model),
        peak_rss_gb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        bf16=cfg.bf16,
    )
    return result


# ----------------------------------------------------------------------------------------------------
# Parent: data, kept vocabularies, the runs, the table
# ----------------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="the base's Hugging Face directory")
    ap.add_argument("--set", default="romance", help="CPT set to train on: a family of the small scale, or dense")
    ap.add_argument("--threads", type=int, nargs="+", default=[1], help="thread counts to measure (e.g. 1 2)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--steps", type=int, default=3, help="timed steps")
    ap.add_argument("--no-dense", action="store_true", help="skip the trimmed runs with the Dense set's vocabulary")
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        spec = json.loads(Path(args.child).read_text())
        Path(spec["result"]).write_text(json.dumps(run_child(spec)))
        return

    import torch

    torch.set_num_threads(1)
    from transformers import AutoTokenizer

    from famlib.config import load_params
    from famlib.data import build_corpus
    from famlib.data.tokens import build_cpt_set
    from famlib.vocab import used_token_ids

    if not (Path(args.model) / "config.json").exists():
        sys.exit(f"{args.model} is not a model directory; prepare the small base first "
                 "(famlib.base.ensure_base(load_params('small')))")
    params = load_params("small")
    sets = ["dense", *params.families]
    if args.set not in sets:
        sys.exit(f"--set {args.set!r}: allowed {', '.join(sets)}")
    tok = AutoTokenizer.from_pretrained(args.model)
    corpus = build_corpus(params)

    with tempfile.TemporaryDirectory(prefix="bench_small_cpt-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        keeps, packed = {}, {}
        for name in sets:
            if name == "dense" and args.no_dense and args.set != "dense":
                continue
            s = build_cpt_set(params, corpus, tok, None if name == "dense" else name, work / "data" / name)
            packed[name] = s
            keeps[name] = used_token_ids([s["train"].tokens, s["validation"].tokens], tok)
        pack_s = time.perf_counter() - t0
        print(f"packed and scanned {len(packed)} CPT sets in {pack_s:.0f} s; kept vocabulary (of {len(tok):,}):")
        for name, k in keeps.items():
            rows = packed[name]["train"].tokens.shape[0] + packed[name]["validation"].tokens.shape[0]
            print(f"  {name:13s} {len(k):6,d} ids ({100 * len(k) / len(tok):.1f}%), "
                  f"{rows * params.data.seq_len:,} tokens")
        if len(keeps) == len(sets):
            union = np.unique(np.concatenate(list(keeps.values())))
            print(f"  {'union':13s} {len(union):6,d} ids")

        # Training rows: the set's packed sequences cut to --seq tokens; the held-out batch from its validation.
        seq_len = params.data.seq_len
        if seq_len % args.seq:
            sys.exit(f"--seq {args.seq} must divide the packed length {seq_len}")
        rows_needed = args.batch * (args.warmup + args.steps)
        train_rows = np.asarray(packed[args.set]["train"].tokens).reshape(-1, args.seq)[:rows_needed]
        held_out = np.asarray(packed[args.set]["validation"].tokens).reshape(-1, args.seq)[:args.batch]
        if len(train_rows) < rows_needed:
            sys.exit(f"the {args.set} set has only {len(train_rows)} rows of {args.seq} tokens")
        np.save(work / "train.npy", train_rows.astype(np.int64))
        np.save(work / "heldout.npy", held_out.astype(np.int64))
        np.save(work / "keep_set.npy", keeps[args.set])
        np.save(work / "keep_fam.npy", keeps[args.set])
        if "dense" in keeps:
            np.save(work / "keep_dense.npy", np.union1d(keeps["dense"], keeps[args.set]))

        fam = params.training.family if args.set != "dense" else params.training.dense
        configs = [("full", None)] + [("trim", "fam")] + ([] if "dense" not in keeps or args.set == "dense"
                                                         else [("trim-dense", "dense")])
        runs = []
        for threads in args.threads:
            for cname, trim in configs:
                for prec in args.precisions:
                    cfg = dataclasses.replace(fam, batch_size=args.batch, grad_accum=1,
                                              max_steps=args.warmup + args.steps, eval_every=10_000,
                                              save_every=10_000, patience=None, bf16=prec == "bf16")
                    name = f"{cname} {prec}"
                    spec = {"model": args.model, "work": str(work), "threads": threads, "trim": trim,
                            "cfg": dataclasses.asdict(cfg), "warmup": args.warmup,
                            "out": str(work / f"run-{threads}-{cname}-{prec}"),
                            "result": str(work / f"result-{threads}-{cname}-{prec}.json"),
                            "base_loss": cname == "full" and prec == "fp32" and threads == args.threads[0]}
                    spec_path = work / f"spec-{threads}-{cname}-{prec}.json"
                    spec_path.write_text(json.dumps(spec))
                    t = time.perf_counter()
                    proc = subprocess.run([sys.executable, __file__, "--child", str(spec_path)],
                                          capture_output=True, text=True)
                    if proc.returncode != 0:
                        sys.exit(f"{name} ({threads} threads) failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
                    r = json.loads(Path(spec["result"]).read_text())
                    r.update(config=name, threads=threads, wall_s=round(time.perf_counter() - t, 1))
                    runs.append(r)
                    print(f"  {name:16s} {threads} thread(s): {r['tokens_per_s']:7.1f} tokens/s "
                          f"(vocab {r['vocab']:,}, steps {r['step_s']} s, peak RSS {r['peak_rss_gb']:.2f} GB, "
                          f"run {r['wall_s']} s)", flush=True)

    # ---- report -------------------------------------------------------------------------------------
    print(f"\ngemma-3-270m CPT on the {args.set} set: batch {args.batch} x {args.seq} tokens, "
          f"{args.warmup} warm-up + {args.steps} timed steps (famlib.train.train, fused AdamW, lr schedule of "
          f"training.{'family' if args.set != 'dense' else 'dense'}), torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs (shared)\n")
    print("| config | threads | vocab rows | tokens/s | vs full fp32 | step (s) | peak RSS (GB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    refs = {r["threads"]: r for r in runs if r["config"] == "full fp32"}
    for r in runs:
        ref = refs.get(r["threads"], r)  # without a full fp32 run (--precisions bf16): the row itself
        print(f"| {r['config']} | {r['threads']} | {r['vocab']:,} | {r['tokens_per_s']:.1f} | "
              f"{r['tokens_per_s'] / ref['tokens_per_s']:.2f}x | {np.mean(r['step_s']):.2f} | {r['peak_rss_gb']:.2f} |")

    base = next((r["base_loss"] for r in runs if "base_loss" in r), None)
    print("\nLoss (same batches in the same order; trimmed runs' training losses are over the kept vocabulary)")
    print("| config | threads | training loss per step | held-out loss, full vocab | held-out loss, kept ids |")
    print("|---|---:|---|---:|---:|")
    if base:
        print(f"| base (before training) | | | {base['full']:.5f} | {base['kept']:.5f} |")
    for r in runs:
        print(f"| {r['config']} | {r['threads']} | {', '.join(f'{x:.5f}' for x in r['losses'])} | "
              f"{r['heldout']['full']:.5f} | {r['heldout']['kept']:.5f} |")
    print(f"(learning rates per step: {', '.join(f'{x:.2e}' for x in runs[0]['lrs'])})")
    if base:
        print(f"base's probability mass on ids outside the {args.set} set's vocabulary, held-out batch: "
              f"mean -log(1 - p_dropped) = {base['full'] - base['kept']:.5f} nats/token")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "kept": {k: len(v) for k, v in keeps.items()},
                                               "runs": runs}, indent=1))


if __name__ == "__main__":
    main()

"""Step time of the training strategies on the shared engine, measured in one run (ratios, not absolutes).

Freeze should be cheaper than Expert (no weight gradients and no optimiser update for the middle group);
Layer-Range L2-SP should cost at most ~10% over Expert (one fused pass over the anchored weights per step).

    .venv/bin/python benchmarks/bench_strategies.py [--scale tiny] [--steps 30] [--repeats 3] [--threads 2]

Each repeat trains every strategy for ``--steps`` optimiser steps with famlib.train.train on the same random
tokens (the scale's architecture, batch and sequence length), in rotating order so that drift in machine load
hits all strategies alike. The step time is the median of per-step wall times from metrics.jsonl, after a
warm-up of 5 steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=8000)
    args = ap.parse_args()

    import torch

    from famlib.config import load_params
    from famlib.models import build_scratch_model
    from famlib.strategies.training import apply_strategy
    from famlib.train import set_threads, train

    set_threads(args.threads)
    params = load_params(args.scale)
    cfg = dataclasses.replace(params.training.family, max_steps=args.steps, eval_every=10_000, save_every=10_000,
                              patience=None)
    rows = (cfg.batch_size * cfg.grad_accum) * (args.steps + 1)
    data = np.random.default_rng(0).integers(4, args.vocab, size=(rows, params.data.seq_len), dtype=np.int64)
    strategies = ["expert", "freeze", "l2sp"]
    times: dict[str, list[float]] = {s: [] for s in strategies}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = strategies[r % 3:] + strategies[: r % 3]
            for s in order:
                model = build_scratch_model(params.model.architecture, args.vocab, seed=0)
                reg, _ = apply_strategy(params, s, model)
                out = Path(tmp) / f"{s}-{r}"
                train(model, data, None, cfg, out, seed=0, regularizer=reg, save_model_dir=False, progress=False)
                elapsed = [json.loads(line)["elapsed"] for line in (out / "metrics.jsonl").read_text().splitlines()]
                steps = np.diff(elapsed)[5:]
                times[s].extend(steps.tolist())
                del model
    med = {s: statistics.median(v) for s, v in times.items()}
    print(f"scale {args.scale}: {params.model.num_layers} layers, batch {cfg.batch_size} x {params.data.seq_len} tokens, "
          f"bf16={cfg.bf16}, {args.threads} threads, torch {torch.__version__}; "
          f"{args.repeats} repeats x {args.steps} steps (median of {len(times['expert'])} steps each)\n")
    print("| strategy | median step (ms) | vs expert |")
    print("|---|---:|---:|")
    for s in strategies:
        print(f"| {s} | {med[s] * 1e3:.1f} | {med[s] / med['expert']:.3f} |")


if __name__ == "__main__":
    main()

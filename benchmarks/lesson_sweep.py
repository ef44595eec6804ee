"""The learning-rate sweep behind the lesson's default (``famlib.lesson``): how far a short CPT moves English.

For each learning rate, the lesson's continued pretraining (the family's text, ``--steps`` steps of
``batch_size x seq_len`` tokens, no live probe) and the paired change in bits per byte against the base on
the lesson's verses: English (forgetting), the trained language (learning), the held-out sister. Trained
models are cached under ``runs/lesson/<scale>/train/`` (the lesson reads them back). Writes
``runs/lesson/<scale>/sweep.csv`` and prints the table with each run's wall time (``train_s``: the training
itself, from its ``result.json``; ``call_s``: this call, which only reads back a finished run).

    .venv/bin/python benchmarks/lesson_sweep.py --lr 2e-5 --lr 1e-4 --lr 2e-4 --lr 4e-4 --steps 32
"""

from __future__ import annotations

import argparse
import json
import time

from _proc import offline_env, status  # benchmarks/_proc.py: this script's folder is on sys.path

offline_env()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="class")
    ap.add_argument("--lr", type=float, action="append", required=True)
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args()

    import pandas as pd

    from famlib import lesson as L
    from famlib.io import atomic_write_text

    s = L.settings(args.preset, steps=args.steps)
    t0 = time.time()
    les = L.Lesson.open(s)
    t_open = time.time() - t0
    t0 = time.time()
    les.measure_base()
    t_base = time.time() - t0
    rows = []
    for lr in args.lr:
        t0 = time.time()
        model = les.train(f"sweep-lr{lr:g}", lr=lr, plot=False, probe=False)
        t_train = time.time() - t0
        t0 = time.time()
        table = les.compare(les.measure(model, f"lr {lr:g}"))
        t_measure = time.time() - t0
        table.insert(1, "lr", lr)
        table.insert(2, "steps", s.steps)
        # the training's own wall time (result.json), also when this call read a finished run back
        runs = sorted((les.root / "train").glob(f"sweep-lr{lr:g}-*/result.json"), key=lambda p: p.stat().st_mtime)
        trained_s = json.loads(runs[-1].read_text())["seconds"] if runs else float("nan")
        table["train_s"], table["call_s"], table["measure_s"] = round(trained_s, 1), round(t_train, 1), round(t_measure, 1)
        rows.append(table)
        del model
        print(table.to_string(index=False), flush=True)
    out = pd.concat(rows, ignore_index=True)
    path = les.root / "sweep.csv"
    atomic_write_text(path, out.to_csv(index=False))
    print(f"\nopen {t_open:.1f} s, base measurement {t_base:.1f} s, peak RSS {status('VmHWM') / 2**30:.2f} GiB; {path}")
    print(out.pivot_table(index="lr", columns="language", values="change").to_string())


if __name__ == "__main__":
    main()

"""Throughput of famlib's training loop against the transformers ``Trainer`` on the same model and data.

One process, runs interleaved (ABBA order per repeat, every precision in every repeat) so that a machine
that warms up or throttles does not favour either side. Each run builds the same freshly initialised
Gemma-3-architecture model (about 3M parameters, the design's calibration model), trains the same number
of steps on the same random tokens with the same optimiser settings (fused AdamW, weight decay, clipping,
warmup + cosine), and reports steady-state tokens/s: tokens of steps ``warmup+1..steps`` over the wall time
between the end of step ``warmup`` and the end of the last step (setup and final saving excluded; the
famlib run also writes its metrics line every step, the Trainer logs only at the end).

    .venv/bin/python benchmarks/bench_train_loop.py                 # fp32 and bf16, 3 repeats
    .venv/bin/python benchmarks/bench_train_loop.py --steps 40 --repeats 5 --precisions fp32 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate.state import AcceleratorState  # noqa: E402
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, Trainer, TrainerCallback,  # noqa: E402
                          TrainingArguments, default_data_collator)

from famlib.config import TrainConfig  # noqa: E402
from famlib.train import set_threads, train  # noqa: E402


def build_model(seed: int = 0) -> Gemma3ForCausalLM:
    # The design's calibration model: 8 layers, hidden 128, vocabulary 8,000 (about 3.0M parameters).
    config = Gemma3TextConfig(vocab_size=8000, hidden_size=128, intermediate_size=512, num_hidden_layers=8,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=32,
                              max_position_embeddings=512, sliding_window=128)
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(config)


def run_famlib(data: np.ndarray, cfg: TrainConfig, warmup: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model()
        t0 = time.perf_counter()
        train(model, data, None, cfg, tmp, seed=0, progress=False, save_model_dir=False)
        wall = time.perf_counter() - t0
        lines = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    t_a, t_b = lines[warmup - 1]["elapsed"], lines[-1]["elapsed"]
    tokens = lines[-1]["tokens"] - lines[warmup - 1]["tokens"]
    return tokens / (t_b - t_a), wall


class _StepTimes(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


class _Rows(torch.utils.data.Dataset):
    def __init__(self, data: np.ndarray):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(self.data[i].astype(np.int64))
        return {"input_ids": x, "labels": x}


def run_trainer(data: np.ndarray, cfg: TrainConfig, warmup: int, bf16: bool) -> tuple[float, float]:
    AcceleratorState._reset_state(reset_partial_state=False)  # the Trainer's Accelerator may change precision
    with tempfile.TemporaryDirectory() as tmp:
        model = build_model()
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
            max_steps=cfg.max_steps, learning_rate=cfg.lr, warmup_steps=cfg.warmup_steps,
            lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": cfg.min_lr_ratio},
            weight_decay=cfg.weight_decay, max_grad_norm=cfg.grad_clip, bf16=bf16, use_cpu=True,
            save_strategy="no", eval_strategy="no", logging_steps=cfg.max_steps, report_to="none",
            disable_tqdm=True, dataloader_num_workers=0, seed=0,
        )
        timer = _StepTimes()
        trainer = Trainer(model=model, args=args, train_dataset=_Rows(data), data_collator=default_data_collator,
                          callbacks=[timer])
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
    tokens = (len(timer.times) - warmup) * cfg.batch_size * cfg.grad_accum * data.shape[1]
    return tokens / (timer.times[-1] - timer.times[warmup - 1]), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=25, help="optimiser steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="steps left out of the throughput")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    a = ap.parse_args()

    threads = set_threads(a.threads)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 8000, size=(a.steps * a.batch + a.batch, a.seq)).astype(np.uint16)
    params = sum(p.numel() for p in build_model().parameters())
    print(f"model {params / 1e6:.2f}M parameters, batch {a.batch} x {a.seq}, {a.steps} steps "
          f"({a.warmup} warm-up left out), {a.repeats} repeats, {threads} thread(s), torch {torch.__version__}")

    precisions = a.precisions.split(",")
    res: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for rep in range(a.repeats):
        for prec in precisions:
            cfg = TrainConfig(lr=1e-3, warmup_steps=5, batch_size=a.batch, max_steps=a.steps, weight_decay=0.1,
                              grad_clip=1.0, eval_every=10**9, save_every=10**9, bf16=prec == "bf16")
            order = ("famlib", "Trainer") if rep % 2 == 0 else ("Trainer", "famlib")  # ABBA
            for who in order:
                if who == "famlib":
                    r = run_famlib(data, cfg, a.warmup)
                else:
                    r = run_trainer(data, cfg, a.warmup, prec == "bf16")
                res.setdefault((prec, who), []).append(r)
                print(f"  repeat {rep + 1} {prec:4s} {who:7s}: {r[0]:8,.0f} tokens/s  ({r[1]:.1f} s wall)",
                      flush=True)

    print("\n| precision | famlib tokens/s | Trainer tokens/s | famlib / Trainer | famlib wall s | Trainer wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for prec in precisions:
        f = statistics.median(x[0] for x in res[(prec, "famlib")])
        t = statistics.median(x[0] for x in res[(prec, "Trainer")])
        fw = statistics.median(x[1] for x in res[(prec, "famlib")])
        tw = statistics.median(x[1] for x in res[(prec, "Trainer")])
        print(f"| {prec} | {f:,.0f} | {t:,.0f} | {f / t:.2f} | {fw:.1f} | {tw:.1f} |")
    print("(medians over repeats)")


if __name__ == "__main__":
    main()

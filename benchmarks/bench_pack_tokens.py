"""Peak memory and speed of token packing: famlib's streamed, block-shuffled packing against the former in-memory one.

Packs a synthetic stream (no tokenizer: a fake one hands out random ids of a 262,144-id vocabulary, as
Gemma 3's, so rows are uint32, in fresh Python lists per call, as a real tokenizer returns them) into
rows of 2,048 tokens, several labels (languages) at once, with the code the pipeline runs
(``famlib.data.tokens.pack_split``, default buffer and block sizes). Each case runs in a fresh subprocess,
which reports its peak resident set size: ``VmHWM`` from ``/proc/self/status`` (Linux; counts mapped file
pages too) and ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (which Linux carries over from the parent
across fork + exec, so it is never below the small parent's own peak), and its RSS after imports and
after building the fake tokenizer's pool (the baseline).

Cases: ``streamed`` at ``--tokens`` (default 200M) and at ``--small-tokens`` (default 20M), and ``in-memory``
(the former algorithm: one Python list of ints per label, int64 rows, their concatenation, a permuted
copy and a uint16/uint32 copy, written at the end) at ``--small-tokens``. The two 20M outputs are checked
to hold the same rows per label. Then the paper's 25B tokens are extrapolated from the measurement:
RAM (the streamed peak does not grow with the tokens), disk (the set, plus the same again while it is
assembled) and time (packing machinery; tokenization comes on top: ``--tokenizer DIR`` measures a real
Hugging Face tokenizer on the offline corpus's text, one thread, for scale).

    .venv/bin/python benchmarks/bench_pack_tokens.py                    # 200M streamed, 20M both ways
    .venv/bin/python benchmarks/bench_pack_tokens.py --tokens 400e6 --tokenizer runs/tiny/tokenizer
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _proc import status as _status  # benchmarks/_proc.py: this script's folder is on sys.path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEQ_LEN = 2048
VOCAB = 262_144  # Gemma 3's: uint32 rows
LABELS = 8
SEED = 42
PAPER_TOKENS = 25_000_000_000  # Dense CPT; the five family sets hold the same 25B again


# ----------------------------------------------------------------------------------------------------
# Child: one case, fresh process
# ----------------------------------------------------------------------------------------------------
class FakeTokenizer:
    """Document ``"<label>:<i>"`` -> one of ``pool`` random id arrays (64-4095 ids), as a fresh Python list."""

    bos_token_id, eos_token_id = 2, 1

    def __init__(self, pool: int = 2048):
        import numpy as np

        rng = np.random.default_rng(0)
        self.pool = [rng.integers(3, VOCAB, size=int(n), dtype=np.int32) for n in rng.integers(64, 4096, size=pool)]

    def __len__(self):
        return VOCAB

    def __call__(self, batch, add_special_tokens=False):
        out = []
        for d in batch:
            label, i = d.split(":")
            out.append(self.pool[(int(label) * 7919 + int(i)) % len(self.pool)].tolist())
        return {"input_ids": out}


def _docs(label: int):
    def gen():
        i = 0
        while True:  # endless: the budget ends it
            yield f"{label}:{i}"
            i += 1
    return gen


def old_pack_split(out: Path, docs: dict, budgets: dict, tokenizer, seq_len: int, seed: int) -> None:
    """The in-memory packing famlib used before (famlib/data/tokens.py up to this change), for comparison."""
    import numpy as np

    parts = {}
    for label, make in docs.items():
        bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        n_rows = budgets[label] // seq_len
        toks: list[int] = []
        buf: list[str] = []
        done = False
        for d in make():
            buf.append(d)
            if len(buf) < 256:
                continue
            for ids in tokenizer(buf, add_special_tokens=False)["input_ids"]:
                toks.append(bos)
                toks.extend(ids)
                toks.append(eos)
                if len(toks) >= n_rows * seq_len:
                    done = True
                    break
            buf = []
            if done:
                break
        rows = min(n_rows, len(toks) // seq_len)
        parts[label] = np.asarray(toks[: rows * seq_len], dtype=np.int64).reshape(rows, seq_len)
        del toks
    labels = list(parts)
    rows = np.concatenate([parts[label] for label in labels])
    lab = np.concatenate([np.full(len(parts[label]), i, np.uint16) for i, label in enumerate(labels)])
    order = np.random.default_rng(seed).permutation(len(rows))
    dtype = "uint16" if len(tokenizer) <= 65536 else "uint32"
    out.mkdir(parents=True)
    rows[order].astype(dtype).tofile(out / "tokens.bin")
    lab[order].tofile(out / "labels.bin")
    (out / "meta.json").write_text(json.dumps({"rows": int(len(rows)), "seq_len": seq_len, "dtype": dtype,
                                               "labels": labels}))


def child(case: str, tokens: int, out: str) -> None:
    import numpy as np  # noqa: F401  (imported before the baseline, as the pipeline has it)

    import famlib.data.tokens as T

    tok = FakeTokenizer()
    baseline = _status("VmRSS")
    budgets = {str(i): tokens // LABELS for i in range(LABELS)}
    docs = {str(i): _docs(i) for i in range(LABELS)}
    phases = {}
    t0 = time.perf_counter()
    if case == "streamed":
        real = T._assemble

        def timed(*a, **k):
            phases["pack_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            real(*a, **k)
            phases["assemble_s"] = time.perf_counter() - t1

        T._assemble = timed
        ts = T.pack_split(Path(out), docs, budgets, tok, SEQ_LEN, SEED, "bench")
        rows = ts.meta["rows"]
    else:
        old_pack_split(Path(out), docs, budgets, tok, SEQ_LEN, SEED)
        rows = json.loads((Path(out) / "meta.json").read_text())["rows"]
    seconds = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"case": case, "tokens": rows * SEQ_LEN, "rows": rows, "seconds": seconds, **phases,
                      "baseline_rss": baseline, "peak_rss": _status("VmHWM"), "ru_maxrss": ru}))


# ----------------------------------------------------------------------------------------------------
# Parent
# ----------------------------------------------------------------------------------------------------
def run_child(case: str, tokens: int, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", case, "--tokens", str(tokens), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if proc.returncode != 0:
        raise SystemExit(f"{case} ({tokens} tokens) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def same_rows_per_label(a: Path, b: Path, labels: int) -> bool:
    """Whether two packed outputs hold the same rows under each label (in any order): sorted row hashes."""
    import numpy as np

    def hashes(d: Path):
        m = json.loads((d / "meta.json").read_text())
        tokens = np.memmap(d / "tokens.bin", dtype=m["dtype"], mode="r", shape=(m["rows"], m["seq_len"]))
        lab = np.fromfile(d / "labels.bin", dtype=np.uint16)
        w = np.random.default_rng(1).integers(1, 2**63, size=m["seq_len"], dtype=np.uint64)
        h = np.concatenate([(np.asarray(tokens[i:i + 4096], dtype=np.uint64) * w).sum(1)
                            for i in range(0, m["rows"], 4096)])
        return {i: np.sort(h[lab == i]) for i in range(labels)}

    ha, hb = hashes(a), hashes(b)
    return all(np.array_equal(ha[i], hb[i]) for i in range(labels))


def tokenizer_rate(path: str, seconds: float = 20.0) -> dict:
    """Tokens/s of a saved Hugging Face tokenizer on the offline corpus's text, batches of 256 documents."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    texts = []
    for f in sorted(Path("data/cache/corpus").glob("bible-*.jsonl"))[:6]:
        with open(f, encoding="utf-8") as fh:
            lines = [json.loads(line)["text"] for line in fh]
        texts += [" ".join(lines[i:i + 30]) for i in range(0, len(lines), 30)]  # documents of ~30 verses
    if not texts:
        raise SystemExit("--tokenizer needs the offline corpus in data/cache/corpus (make data)")
    n_tok = n_chars = 0
    t0 = time.perf_counter()
    i = 0
    while time.perf_counter() - t0 < seconds:
        batch = texts[i % len(texts):i % len(texts) + 256]
        i += 256
        n_tok += sum(len(x) for x in tok(batch, add_special_tokens=False)["input_ids"])
        n_chars += sum(map(len, batch))
    dt = time.perf_counter() - t0
    return {"tokenizer": path, "vocab": len(tok), "tokens_per_s": n_tok / dt, "chars_per_token": n_chars / n_tok}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=float, default=200e6, help="tokens of the streamed run (default 200M)")
    ap.add_argument("--small-tokens", type=float, default=20e6, help="tokens of the comparison (default 20M)")
    ap.add_argument("--tokenizer", default=None, help="a saved tokenizer to time on corpus text, for scale")
    ap.add_argument("--dir", default=None, help="where to put the temporary files (default: the system temp dir)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, int(args.tokens), args.out)
        return 0

    big, small = int(args.tokens), int(args.small_tokens)
    root = Path(tempfile.mkdtemp(prefix="famlib-pack-bench-", dir=args.dir))
    try:
        results = [run_child("streamed", big, root / "streamed-big" / "train"),
                   run_child("streamed", small, root / "streamed-small" / "train"),
                   run_child("in-memory", small, root / "in-memory-small")]
        same = same_rows_per_label(root / "streamed-small" / "train", root / "in-memory-small", LABELS)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{LABELS} labels, rows of {SEQ_LEN} uint32 tokens (vocabulary {VOCAB:,})\n")
    print(f"{'case':<10} {'tokens':>12} {'peak RSS':>10} {'ru_maxrss':>10} {'baseline':>9} {'peak-base':>10} "
          f"{'time':>8} {'tokens/s':>11}  phases")
    for r in results:
        ph = (f"pack {r['pack_s']:.1f} s + assemble {r['assemble_s']:.1f} s" if "pack_s" in r else "")
        print(f"{r['case']:<10} {r['tokens']:>12,} {r['peak_rss'] / 2**20:>8.0f}MiB {r['ru_maxrss'] / 2**20:>8.0f}MiB "
              f"{r['baseline_rss'] / 2**20:>7.0f}MiB {(r['peak_rss'] - r['baseline_rss']) / 2**20:>8.0f}MiB "
              f"{r['seconds']:>7.1f}s {r['tokens'] / r['seconds']:>11,.0f}  {ph}")
    s_big, s_small, old = results
    inc = lambda r: r["peak_rss"] - r["baseline_rss"]  # noqa: E731
    print(f"\nsame rows per label, streamed vs in-memory at {small:,} tokens: {same}")
    print(f"in-memory / streamed peak RSS at {small:,} tokens: {old['peak_rss'] / s_small['peak_rss']:.1f}x total, "
          f"{inc(old) / max(inc(s_small), 1):.1f}x above the baseline")
    print(f"streamed peak RSS at {big:,} vs {small:,} tokens: {s_big['peak_rss'] / s_small['peak_rss']:.2f}x")
    old_per_token = inc(old) / old["tokens"]

    tok = tokenizer_rate(args.tokenizer) if args.tokenizer else None
    rate_pack = s_big["tokens"] / s_big["pack_s"]
    rate_asm = s_big["tokens"] / s_big["assemble_s"]
    machinery_h = PAPER_TOKENS / rate_pack / 3600 + PAPER_TOKENS / rate_asm / 3600
    disk = PAPER_TOKENS * 4 + PAPER_TOKENS // SEQ_LEN * 2
    print(f"\nthe paper's {PAPER_TOKENS / 1e9:.0f}B tokens (Dense; the five family sets hold as many again), "
          "extrapolated:")
    print(f"  RAM: streamed {s_big['peak_rss'] / 2**20:.0f} MiB peak (measured; independent of the tokens), "
          f"plus the tokenizer's batch; the in-memory path, at its measured {old_per_token:.1f} bytes/token above "
          f"the baseline: {old_per_token * PAPER_TOKENS / 1e9:.0f} GB")
    print(f"  disk: {disk / 1e9:.0f} GB for tokens.bin + labels.bin, {2 * disk / 1e9:.0f} GB at the peak (the packed "
          "labels and the assembled set side by side while it is assembled)")
    print(f"  time, machinery (fake tokenizer): pack {PAPER_TOKENS / rate_pack / 3600:.1f} h + assemble "
          f"{PAPER_TOKENS / rate_asm / 3600:.1f} h = {machinery_h:.1f} h on this machine")
    if tok:
        print(f"  tokenization with {tok['tokenizer']} (vocabulary {tok['vocab']:,}), one thread: "
              f"{tok['tokens_per_s']:,.0f} tokens/s -> {PAPER_TOKENS / tok['tokens_per_s'] / 3600:.1f} h more "
              f"(divide by the threads given to the tokenizer)")
    print(json.dumps({"results": results, "same_rows_per_label": same, "tokenizer": tok,
                      "paper": {"tokens": PAPER_TOKENS, "disk_bytes": disk, "peak_disk_bytes": 2 * disk,
                                "machinery_hours": machinery_h,
                                "in_memory_bytes": old_per_token * PAPER_TOKENS}}))
    return 0 if same and s_big["peak_rss"] < 2 * s_small["peak_rss"] else 1


if __name__ == "__main__":
    sys.exit(main())

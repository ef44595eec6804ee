"""Bits per byte of the harness's perplexity documents, scored with ``<bos>`` before every window.

    .venv/bin/python benchmarks/check_bos_windows.py --scale small --models base dense --language en

lm-eval's rolling perplexity (``famlib_heldout_perplexity_<lang>``) cuts each document into windows of
``data.seq_len`` tokens and gives only the first one ``<bos>``. This script reads the same documents (the
task's test file under ``runs/<scale>/evaluation/tasks/data/``) and scores them with ``<bos>`` followed by
``seq_len - 1`` tokens per window, the way Gemma 3 was pretrained, in float32 and bf16, one document per
line: compare its numbers with the harness's ``bits_per_byte`` for the same model in ``results.csv``.

``--window 4096`` reads every document whole from ``<bos>`` (``evaluation.perplexity_window`` of
``params/small.yaml``). Measured on the small scale's five English documents (bf16): 256-token windows
give base 1.105 and Dense 1.173 bits per byte; whole documents give base 1.000 and Dense 1.094. The
harness at its old 256-token windows, ``<bos>`` on the first only, had given base 1.335 and Dense 1.155.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv=None) -> int:
    import torch

    from famlib.config import load_params
    from famlib.evaluate.run import load_model
    from famlib.naming import model_path
    from famlib.paths import tasks_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="small")
    ap.add_argument("--models", nargs="+", default=["base", "dense"])
    ap.add_argument("--language", default="en")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--window", type=int, default=None,
                    help="tokens per window, <bos> included (default data.seq_len; 4096 reads these documents whole)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = load_params(args.scale)
    seq = args.window or params.data.seq_len
    path = (tasks_dir(args.scale) / "data" / "heldout_perplexity"
            / f"heldout_perplexity_{args.language}.test.jsonl")
    docs = [json.loads(line) for line in path.read_text().splitlines()]
    for name in args.models:
        for dtype in args.dtypes:
            model, tok = load_model(model_path(params, name, must_exist=True), dtype, device="cpu")
            nll_all = bytes_all = 0.0
            per_doc = []
            for doc in docs:
                ids = tok(doc["text"], add_special_tokens=False)["input_ids"]
                nll = 0.0
                with torch.no_grad():
                    for start in range(0, len(ids), seq - 1):
                        x = torch.tensor([[tok.bos_token_id] + ids[start:start + seq - 1]])
                        logp = torch.log_softmax(model(x).logits.float(), -1)[0, :-1]
                        nll -= logp.gather(1, x[0, 1:, None]).sum().item()
                n_bytes = len(doc["text"].encode())
                per_doc.append(f"{doc['id']} {nll / math.log(2) / n_bytes:.3f}")
                nll_all, bytes_all = nll_all + nll, bytes_all + n_bytes
            print(f"{name} {dtype}: {nll_all / math.log(2) / bytes_all:.3f} bits per byte over {len(docs)} documents "
                  f"({'; '.join(per_doc)})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

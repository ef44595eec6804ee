"""The GPU benchmark script stays runnable here (CPU, tiny model), and its FLOP count matches the architecture."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_gpu_cpt_flop_count_covers_every_matmul_parameter_of_gemma_3_270m():
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    sys.path.insert(0, str(BENCH))
    try:
        import bench_gpu_cpt as bench
    finally:
        sys.path.remove(str(BENCH))
    with torch.device("meta"):
        model = Gemma3ForCausalLM(Gemma3TextConfig(**bench.GEMMA3_270M))
    matrices = sum(p.numel() for p in model.parameters() if p.dim() == 2)  # the tied head counted once
    fpt, matmul_params = bench.flops_per_token(bench.GEMMA3_270M, 256)
    assert matmul_params == matrices == 268_042_240
    # attention at 256 tokens (below the 512 window): 18 layers x 3 x 4 x 4 heads x 256 x 128 mean keys
    assert fpt == pytest.approx(6 * matrices + 18 * 3 * 4 * 4 * 256 * 128.0)


@pytest.mark.slow
def test_gpu_cpt_benchmark_runs_on_the_cpu(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH / "bench_gpu_cpt.py"), "--device", "cpu", "--tiny",
                           "--batch", "2", "--seq", "32", "--json", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(out.read_text())
    (run,) = summary["runs"]
    assert run["batch"] == 2 and run["seq"] == 32 and run["tokens_per_s"] > 0 and 0 < run["mfu_measured"]
    assert summary["small_cpt_seconds_at_best"] == pytest.approx(summary["small_cpt_tokens"] / run["tokens_per_s"])
    assert "tokens/s" in proc.stdout and "small-scale CPT" in proc.stdout


def test_pack_tokens_benchmark_runs_small():
    cmd = [sys.executable, str(BENCH / "bench_pack_tokens.py"), "--tokens", "3e6", "--small-tokens", "1e6"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["same_rows_per_label"]
    assert [r["case"] for r in summary["results"]] == ["streamed", "streamed", "in-memory"]
    assert "the paper's 25B tokens" in proc.stdout

"""Multi-process training jobs: `accelerate launch ... famlib train` writes every output once, by the main process.

The launch is two CPU processes over gloo, with DDP and with FSDP2 (accelerate's multi-process launchers with
``ACCELERATE_USE_CPU``; `accelerate launch --cpu` itself starts one process). Each process runs
tests/launch_child.py, which logs the file-system changes it makes under the runs folder; the test reads
those logs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
# DDP: one whole model per process; FSDP2: sharded (on the CPU through tests/launch_child.py's one seam)
ENGINES = {"ddp": ["--multi_gpu"],
           "fsdp": ["--use_fsdp", "--fsdp_version", "2", "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
                    "--fsdp_transformer_layer_cls_to_wrap", "Gemma3DecoderLayer",
                    "--fsdp_state_dict_type", "SHARDED_STATE_DICT"]}
# 6 steps, a checkpoint every 2 (three written, keep_last=2 prunes one during the run), validation at 3 and 6
JOB = ["train", "--scale", "smoke", "--strategy", "expert", "--family", "romance", "--no-progress",
       "--set", "training.family.max_steps=6", "--set", "training.family.save_every=2",
       "--set", "training.family.eval_every=3"]
MID = "expert.romance"


def _runs_with_base(root: Path, base: Path) -> Path:
    """A fresh runs folder holding only the smoke base (no token sets, no other model of the session)."""
    (root / "smoke" / "models").mkdir(parents=True)
    shutil.copytree(base, root / "smoke" / "models" / "base")
    return root


def _run(root: Path, log: Path, argv: list[str], launch: list[str] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "FAMLIB_RUNS": str(root), "FAMLIB_WRITE_LOG": str(log), "OMP_NUM_THREADS": "1",
           "FAMLIB_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": os.pathsep.join(
               [str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([*launch, *([] if launch else [sys.executable]), str(HERE / "launch_child.py"), *argv],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _events(log: Path, rank: int) -> list[dict]:
    lines = [json.loads(line) for line in Path(f"{log}.{rank}").read_text().splitlines()]
    probe = f".probe-rank{rank}"
    assert lines[0] == {"event": "open", "paths": [probe]}, "the write log does not see this process's writes"
    return [e for e in lines if probe not in e["paths"]]


def _published(events: list[dict]) -> Counter:
    """How often each visible path was published by a rename (staging names start with a dot and are left out)."""
    return Counter(e["paths"][1] for e in events if e["event"] == "os.rename" and e["paths"][1] is not None
                   and not any(part.startswith(".") for part in Path(e["paths"][1]).parts))


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_two_process_training_step_writes_once_and_matches_one(engine, smoke_base, tmp_path):
    from safetensors.torch import load_file
    import torch

    # ---- two processes x batch 4 ------------------------------------------------------------------------
    two = _runs_with_base(tmp_path / "two", smoke_base)
    out = _run(two, tmp_path / "two.log", [*JOB, "--set", "training.family.batch_size=4"],
               [*ACCELERATE[:3], *ENGINES[engine], *ACCELERATE[3:]])
    assert "on 2 process(es)" in out.stdout and out.stdout.count("trained in") == 1  # one report, by the main
    main, other = _events(tmp_path / "two.log", 0), _events(tmp_path / "two.log", 1)
    # The second process only reads and trains; under FSDP it also writes its shards into checkpoint staging.
    shards = [e for e in other if all(p and "/checkpoints/.tmp-step-" in p and "/fsdp_state" in p for p in e["paths"])]
    assert [e for e in other if e not in shards] == [], f"the second process wrote under runs/: {other[:5]}"
    assert bool(shards) == (engine == "fsdp")
    published = _published(main)
    assert all(n == 1 for n in published.values()), {p: n for p, n in published.items() if n > 1}
    smoke = Path("smoke")
    for path in (smoke / "data/romance/train", smoke / "data/romance/validation", smoke / "models" / MID,
                 smoke / "models" / MID / "famlib_provenance.json", smoke / "train" / MID / "result.json",
                 *(smoke / "train" / MID / "checkpoints" / f"step-{s:08d}" for s in (2, 4, 6))):
        assert published[str(path)] == 1, path
    removed = Counter(e["paths"][0] for e in main if e["event"] == "shutil.rmtree")
    assert removed[str(smoke / "train" / MID / "checkpoints")] == 1  # pruned once, after the provenance
    assert removed[str(smoke / "train" / MID / "checkpoints" / "step-00000002")] == 1  # keep_last during the run
    left = [p for p in two.rglob("*") if any(s in p.name for s in (".tmp", ".partial", ".packing", ".old", ".running"))]
    assert not left and not (two / "smoke" / "train" / MID / "checkpoints").exists(), left
    prov = json.loads((two / "smoke" / "models" / MID / "famlib_provenance.json").read_text())
    assert prov["train"]["steps"] == 6
    assert json.loads((two / "smoke" / "train" / MID / "train_config.json").read_text())["processes"] == 2

    # ---- one process x batch 8, the same rows per step (the token sets copied: they are the same) ---------
    one = _runs_with_base(tmp_path / "one", smoke_base)
    shutil.copytree(two / "smoke" / "data", one / "smoke" / "data")
    _run(one, tmp_path / "one.log", [*JOB, "--set", "training.family.batch_size=8"])
    single = _published(_events(tmp_path / "one.log", 0))
    assert set(single) == set(published) - {str(smoke / "data/romance/train"), str(smoke / "data/romance/validation")}
    a = load_file(one / "smoke" / "models" / MID / "model.safetensors")
    b = load_file(two / "smoke" / "models" / MID / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
    m1, m2 = ([json.loads(x) for x in (r / "smoke" / "train" / MID / "metrics.jsonl").read_text().splitlines()]
              for r in (one, two))
    assert [r["step"] for r in m1] == [r["step"] for r in m2] == list(range(1, 7))
    for x, y in zip(m1, m2):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5)
        assert ("val_loss" in x) == ("val_loss" in y) == (x["step"] in (3, 6))
        if "val_loss" in x:
            assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-5)


def test_famlib_run_refuses_a_multi_process_launch(monkeypatch, capsys):
    """Under a launcher every process would execute the notebook; famlib run says what to run instead."""
    from famlib.cli import main

    monkeypatch.setenv("WORLD_SIZE", "4")
    assert main(["run", "--scale", "smoke", "--step", "03_train_expert.freeze.slavic"]) == 2
    err = capsys.readouterr().err
    assert ("accelerate launch --multi_gpu --num_processes 4 -m famlib.cli train --scale smoke --strategy freeze "
            "--family slavic") in err
    assert "famlib run --scale smoke --step 03_train_expert.freeze.slavic" in err

"""famlib.train: the shared training loop. A tiny Gemma-3 model on synthetic token data, seconds per run.

The reference run (a session fixture) crosses an epoch boundary, accumulates gradients, validates, saves
checkpoints and calls a (no-op) regularizer; the other tests rerun it under a kill, a torn checkpoint, a
second identical run, and compare bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from safetensors.torch import load_file  # noqa: E402
from transformers import Gemma3ForCausalLM, Gemma3TextConfig  # noqa: E402

from famlib import checkpoint  # noqa: E402
from famlib.config import TrainConfig  # noqa: E402
from famlib.train import ResumeError, lr_at, param_groups, set_threads, train  # noqa: E402

SEQ = 32
# 160 training rows, global batch 4 x 2 = 8 -> 20 steps per epoch; 40 steps = two epochs.
REF_CFG = TrainConfig(lr=1e-2, warmup_steps=4, batch_size=4, grad_accum=2, max_steps=40, eval_every=5,
                      eval_batches=4, save_every=10, weight_decay=0.1, grad_clip=1.0)


# ----------------------------------------------------------------------------------------------------
# Helpers (the SIGKILL test's child process imports this module for them)
# ----------------------------------------------------------------------------------------------------
def tiny_model(layers: int = 2) -> Gemma3ForCausalLM:
    config = Gemma3TextConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                              max_position_embeddings=64, sliding_window=16)
    torch.manual_seed(0)
    return Gemma3ForCausalLM(config)


def token_data(rows: int, seed: int = 0) -> np.ndarray:
    """Arithmetic sequences (start + i * stride mod 256): learnable, so the loss has somewhere to go."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, 256, size=(rows, 1))
    stride = rng.integers(1, 4, size=(rows, 1))
    return ((start + stride * np.arange(SEQ)) % 256).astype(np.uint16)


TRAIN, VAL = token_data(160, seed=0), token_data(32, seed=1)


class Pause:
    """A regularizer that adds nothing: it only sleeps, so that the child process can be killed mid-run."""

    def __init__(self, seconds: float = 0.0):
        self.seconds = seconds

    def penalty_and_grad(self, model: torch.nn.Module) -> float:
        time.sleep(self.seconds)
        return 0.0


def run_reference(out_dir: Path, pause: float = 0.0):
    model = tiny_model()
    result = train(model, TRAIN, VAL, REF_CFG, out_dir, seed=1, regularizer=Pause(pause), progress=False)
    return model, result


def assert_same_weights(a: torch.nn.Module | dict, b: torch.nn.Module | dict) -> None:
    sa = a if isinstance(a, dict) else a.state_dict()
    sb = b if isinstance(b, dict) else b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"tensors differ: {different}"


def read_metrics(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


# ----------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Bit-identity needs a fixed thread count; 1 is also the fastest for a model this small.
    before = torch.get_num_threads()
    set_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    model, result = run_reference(out)
    return out, {k: v.clone() for k, v in model.state_dict().items()}, result


# ----------------------------------------------------------------------------------------------------
# Tests
# ----------------------------------------------------------------------------------------------------
def test_loss_decreases_and_files(reference):
    out, _, result = reference
    m = read_metrics(out)
    assert [r["step"] for r in m] == list(range(1, 41))
    assert np.mean([r["loss"] for r in m[-5:]]) < 0.8 * np.mean([r["loss"] for r in m[:5]])
    assert result.evals[-1]["val_loss"] < result.evals[0]["val_loss"]
    assert result.steps == 40 and result.tokens == 40 * 8 * SEQ and not result.stopped_early
    assert {r["epoch"] for r in m} == {0, 1}  # crossed into the second permutation
    assert all(r["reg"] == 0.0 for r in m)
    assert [r["step"] for r in m if "val_loss" in r] == list(range(5, 41, 5))
    # The resolved config is in out_dir and in every checkpoint; two checkpoints kept.
    assert json.loads((out / "train_config.json").read_text())["train"] == dataclasses.asdict(REF_CFG)
    ckpts = checkpoint.list_checkpoints(out / "checkpoints")
    assert [checkpoint.checkpoint_step(c) for c in ckpts] == [30, 40]
    for c in ckpts:
        assert checkpoint.verify(c) is None
        assert json.loads((c / "trainer_state.json").read_text())["run"]["train"] == dataclasses.asdict(REF_CFG)
    # The final directory opens with transformers and holds the best validation's weights.
    reloaded = Gemma3ForCausalLM.from_pretrained(out / "model")
    best = load_file(out / "best" / f"step-{result.best_step:08d}.safetensors")
    params = dict(reloaded.named_parameters())
    for name, t in best.items():
        assert torch.equal(params[name], t), name
    assert json.loads((out / "result.json").read_text())["best_step"] == result.best_step


def test_deterministic(reference, tmp_path):
    _, weights, result = reference
    model, again = run_reference(tmp_path / "again")
    assert_same_weights(model.state_dict(), weights)
    assert again.evals == result.evals


@pytest.mark.slow
def test_sigkill_resume_is_bit_identical(reference, tmp_path):
    _, weights, result = reference
    out = tmp_path / "killed"
    child = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_train as T; "
             f"T.set_threads(1); T.run_reference(T.Path({str(out)!r}), pause=0.05)")
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "checkpoints" / "step-00000010"
    deadline = time.time() + 60
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the child finished before it could be killed"
    assert not (out / "result.json").exists()
    model, resumed = run_reference(out)
    assert resumed.resumed_from is not None and 10 <= resumed.resumed_from < 40
    assert_same_weights(model.state_dict(), weights)
    assert resumed.evals == result.evals
    steps = [r["step"] for r in read_metrics(out)]
    assert steps == list(range(1, 41)), "metrics.jsonl must hold each step once after a resume"


def test_torn_checkpoint_is_skipped(reference, tmp_path):
    src, weights, _ = reference
    out = tmp_path / "torn"
    shutil.copytree(src, out)
    newest = out / "checkpoints" / "step-00000040" / "model.safetensors"
    with open(newest, "r+b") as fh:  # cut off mid-write
        fh.truncate(newest.stat().st_size // 2)
    leftover = out / "checkpoints" / ".tmp-step-00000050"  # a write cut off by a kill
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    model, resumed = run_reference(out)
    assert resumed.resumed_from == 30
    assert_same_weights(model.state_dict(), weights)
    assert not leftover.exists()

    # Both checkpoints damaged (one torn, one with a flipped byte): start again from scratch.
    for step in (30, 40):
        f = out / "checkpoints" / f"step-{step:08d}" / "optimizer.pt"
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    model, restarted = run_reference(out)
    assert restarted.resumed_from is None
    assert_same_weights(model.state_dict(), weights)
    assert [r["step"] for r in read_metrics(out)] == list(range(1, 41))


def test_frozen_parameters_do_not_move(tmp_path):
    model = tiny_model(layers=3)
    frozen_names = set()
    for name, p in model.named_parameters():
        if name.startswith(("model.embed_tokens.", "model.layers.1.")):
            p.requires_grad_(False)
            frozen_names.add(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups, counts = param_groups(model, 0.1)
    cfg = dataclasses.replace(REF_CFG, max_steps=6, save_every=3, eval_every=3, gradient_checkpointing=True)
    seen = []  # activation checkpointing is really on during training
    model.model.layers[0].register_forward_hook(
        lambda mod, args, out: seen.append(getattr(mod, "gradient_checkpointing", None)))
    result = train(model, TRAIN, VAL, cfg, tmp_path, seed=0, progress=False)
    after = model.state_dict()
    params = dict(model.named_parameters())
    for name in params:
        moved = not torch.equal(before[name], after[name])
        assert moved != (name in frozen_names), name
    assert result.frozen_params == counts["frozen"] == sum(params[n].numel() for n in frozen_names)
    assert result.trainable_params == counts["trainable"]
    assert seen and all(seen), seen
    # No optimiser state for frozen tensors: one AdamW state per trainable tensor, nothing else.
    opt = torch.load(tmp_path / "checkpoints" / "step-00000006" / "optimizer.pt", weights_only=True)
    n_trainable = sum(1 for p in params.values() if p.requires_grad)
    assert len(opt["state"]) == n_trainable == sum(len(g["params"]) for g in opt["param_groups"])
    assert [g["weight_decay"] for g in opt["param_groups"]] == [0.1, 0.0]
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())  # turned off again


def test_early_stopping_keeps_best(tmp_path):
    # Unlearnable validation data and a threshold of 0.5 nats: only the first validation counts.
    noise = np.random.default_rng(5).integers(0, 256, size=(16, SEQ)).astype(np.uint32)
    cfg = dataclasses.replace(REF_CFG, max_steps=40, eval_every=2, patience=2, threshold=0.5, save_every=100)
    model = tiny_model()
    result = train(model, TRAIN, noise, cfg, tmp_path, seed=0, progress=False)
    assert result.stopped_early and result.steps == 6
    assert [e["step"] for e in result.evals] == [2, 4, 6]
    vals = [e["val_loss"] for e in result.evals]
    assert result.best_step == result.evals[int(np.argmin(vals))]["step"]
    best = load_file(tmp_path / "best" / f"step-{result.best_step:08d}.safetensors")
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], t) for n, t in best.items())
    # Rerunning a finished run trains nothing more and gives the same model.
    again = tiny_model()
    rerun = train(again, TRAIN, noise, cfg, tmp_path, seed=0, progress=False)
    assert rerun.resumed_from == 6 and rerun.steps == 6
    assert_same_weights(again, model)


class AnchorL2:
    """Test regularizer: lam * ||theta - theta0||^2 on every trainable tensor, gradient added in place."""

    def __init__(self, model: torch.nn.Module, lam: float):
        self.lam, self.calls, self.had_grad = lam, 0, True
        self.anchor = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def penalty_and_grad(self, model: torch.nn.Module) -> float:
        self.calls += 1
        penalty = 0.0
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name in self.anchor:
                    self.had_grad &= p.grad is not None  # called after backward
                    diff = p - self.anchor[name]
                    p.grad.add_(diff, alpha=2 * self.lam)
                    penalty += self.lam * float(diff.pow(2).sum())
        return penalty


def test_regularizer_hook(tmp_path):
    cfg = dataclasses.replace(REF_CFG, max_steps=12, save_every=100, lr=1e-2, weight_decay=0.0)
    free = tiny_model()
    train(free, TRAIN, VAL, cfg, tmp_path / "free", seed=0, progress=False)
    anchored = tiny_model()
    base = {k: v.clone() for k, v in anchored.state_dict().items()}
    reg = AnchorL2(anchored, lam=50.0)
    train(anchored, TRAIN, VAL, cfg, tmp_path / "l2", seed=0, regularizer=reg, progress=False)
    assert reg.calls == 12 and reg.had_grad  # once per optimiser step, not per micro-step
    m = read_metrics(tmp_path / "l2")
    assert m[0]["reg"] == 0.0 and m[-1]["reg"] > 0.0  # zero at the anchor, logged every step

    def drift(model):
        return sum(float((v - base[k]).pow(2).sum()) for k, v in model.state_dict().items())

    assert drift(anchored) < 0.5 * drift(free)


def test_bf16_autocast_on_cpu(tmp_path):
    model = tiny_model()
    cfg = dataclasses.replace(REF_CFG, max_steps=3, save_every=100, bf16=True)
    result = train(model, TRAIN, VAL, cfg, tmp_path, seed=0, progress=False)
    assert np.isfinite(result.train_loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast, fp32 master weights
    assert "_original_forward" not in model.__dict__  # accelerate's autocast wrapper removed again


def test_one_epoch_sees_every_row_once(tmp_path):
    model = tiny_model()
    seen = []
    model.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["input_ids"].clone()),
                                    with_kwargs=True)
    cfg = dataclasses.replace(REF_CFG, max_steps=None, save_every=100)
    result = train(model, TRAIN, None, cfg, tmp_path, seed=3, progress=False)
    assert result.steps == result.total_steps == 160 // 8 and result.best_val_loss is None
    rows = torch.cat(seen).numpy()
    assert rows.shape == TRAIN.shape
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, TRAIN.astype(np.int64).tolist()))
    assert not np.array_equal(rows, TRAIN)  # shuffled


def test_model_handed_back_after_an_error(tmp_path):
    class Boom:
        def penalty_and_grad(self, model):
            raise RuntimeError("boom")

    model = tiny_model()
    cfg = dataclasses.replace(REF_CFG, bf16=True, gradient_checkpointing=True)
    with pytest.raises(RuntimeError, match="boom"):
        train(model, TRAIN, VAL, cfg, tmp_path, seed=0, regularizer=Boom(), progress=False)
    assert "_original_forward" not in model.__dict__ and not model.training
    assert not any(getattr(m, "gradient_checkpointing", False) for m in model.modules())


def test_lr_schedule():
    cfg = TrainConfig(lr=1.0, warmup_steps=4, batch_size=1, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg, 20) for s in range(20)]
    assert lrs[:4] == [0.2, 0.4, 0.6, 0.8] and lrs[4] == 1.0
    assert lrs[-1] == pytest.approx(0.1) and all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    linear = dataclasses.replace(cfg, schedule="linear")
    assert lr_at(12, linear, 20) == pytest.approx(0.1 + 0.9 * (1 - 8 / 15))
    assert lr_at(19, dataclasses.replace(cfg, schedule="constant"), 20) == 1.0


@pytest.mark.parametrize("section", ["dense", "family"])
def test_paper_cosine_schedule_is_the_authors_transformers_cosine_within_one_step(section):
    """The paper scale's LR curve against transformers' get_cosine_schedule_with_warmup, which the authors'
    lr_scheduler_type="cosine" builds: equal up to famlib's warmup (step+1)/(warmup+1) and its end one step
    earlier, both well under lr / warmup_steps."""
    import math

    from transformers import get_cosine_schedule_with_warmup

    from famlib.config import load_params

    cfg = getattr(load_params("paper").training, section)
    assert cfg.schedule == "cosine" and cfg.min_lr_ratio == 0.0
    total, warmup = cfg.max_steps, cfg.warmup_steps
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    authors = get_cosine_schedule_with_warmup(opt, warmup, total).lr_lambdas[0]
    ours = [lr_at(s, cfg, total) for s in range(total)]
    gap = max(abs(a - cfg.lr * authors(s)) for s, a in enumerate(ours))
    assert gap <= cfg.lr / warmup
    # after warmup the two curves differ by the stretch of one step (cosine slope at most pi/2 per unit progress)
    assert max(abs(ours[s] - cfg.lr * authors(s)) for s in range(warmup, total)) <= cfg.lr * math.pi / (total - warmup)
    mid = warmup + (total - 1 - warmup) // 2
    assert ours[warmup] == cfg.lr and ours[mid] == pytest.approx(cfg.lr / 2, rel=1e-3) and ours[-1] == 0.0
    assert all(a >= b for a, b in zip(ours[warmup:], ours[warmup + 1:]))
    # and it is not the linear decay the paper scale used before: a quarter of the way down the two differ
    q = warmup + (total - warmup) // 4
    linear = lr_at(q, dataclasses.replace(cfg, schedule="linear"), total)
    assert ours[q] == pytest.approx(cfg.lr * (0.5 + 0.5 * math.cos(math.pi / 4)), rel=1e-3) and ours[q] > linear * 1.1


def test_bad_inputs_and_mismatched_resume(reference, tmp_path):
    cfg = dataclasses.replace(REF_CFG, max_steps=2)
    with pytest.raises(ValueError, match=r"shape \(32,\)"):
        train(tiny_model(), TRAIN[0], VAL, cfg, tmp_path / "a", seed=0, progress=False)
    with pytest.raises(ValueError, match="dtype float32"):
        train(tiny_model(), TRAIN.astype(np.float32), VAL, cfg, tmp_path / "b", seed=0, progress=False)
    with pytest.raises(ValueError, match="fewer than one global batch of 8"):
        train(tiny_model(), TRAIN[:5], VAL, cfg, tmp_path / "c", seed=0, progress=False)
    with pytest.raises(ValueError, match="patience=2 needs validation data"):
        train(tiny_model(), TRAIN, None, dataclasses.replace(cfg, patience=2), tmp_path / "d", seed=0)
    src, weights, _ = reference
    shutil.copytree(src, tmp_path / "ref")
    # Settings that change no number may differ on resume; the finished run is picked up as it is.
    model = tiny_model()
    same = train(model, TRAIN, VAL, dataclasses.replace(REF_CFG, save_every=7), tmp_path / "ref", seed=1,
                 regularizer=Pause(), progress=False)
    assert same.resumed_from == 40
    assert_same_weights(model.state_dict(), weights)
    with pytest.raises(ResumeError, match=r"train\.lr: checkpoint 0\.01, now 0\.001"):
        train(tiny_model(), TRAIN, VAL, dataclasses.replace(REF_CFG, lr=1e-3), tmp_path / "ref", seed=1,
              regularizer=Pause(), progress=False)


FROZEN = "model.layers.1."  # the layer the FSDP test freezes (frozen and trainable tensors in one model)


def frozen_model(freeze: bool) -> Gemma3ForCausalLM:
    model = tiny_model()
    for name, p in model.named_parameters():
        p.requires_grad_(not (freeze and name.startswith(FROZEN)))
    return model


def run_ddp_child(out_dir: str, batch_size: int, freeze: bool = False) -> None:
    """One process of the DDP test (also the single-process run it and the FSDP test are compared with)."""
    set_threads(1)
    cfg = dataclasses.replace(REF_CFG, batch_size=batch_size, max_steps=8, save_every=4, eval_every=4)
    train(frozen_model(freeze), TRAIN, VAL, cfg, Path(out_dir), seed=1, progress=False)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    """gloo DDP, 2 CPU processes x batch 2 == 1 process x batch 4: same rows, weights within tolerance."""
    run_ddp_child(str(tmp_path / "one"), batch_size=4)
    child = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_train as T; "
             f"T.run_ddp_child({str(tmp_path / 'two')!r}, batch_size=2)")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python"]
    proc = subprocess.run([*launch, sys.executable, "-c", child], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = load_file(tmp_path / "one" / "model" / "model.safetensors")
    two = load_file(tmp_path / "two" / "model" / "model.safetensors")
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    m1, m2 = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in m2] == list(range(1, 9))
    for a, b in zip(m1, m2):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert ("val_loss" in a) == ("val_loss" in b)
        if "val_loss" in a:
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)


FSDP_ENV = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
            "FSDP_TRANSFORMER_CLS_TO_WRAP": "Gemma3DecoderLayer", "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT"}


class Interrupt(Exception):
    pass


def run_fsdp_child(out_dir: str, fail_at: int | None = None) -> None:
    """One process of the FSDP test: 2 processes x batch 2, FSDP2 through accelerate on the CPU.

    accelerate turns FSDP on only for GPU-type launches (a CPU launch gets DDP whatever the plugin says), but
    torch's FSDP2 and torch.distributed.checkpoint run on the CPU over gloo. So the launch is declared a
    multi-GPU one before train() builds its Accelerator: the one seam; everything after it is accelerate's
    own FSDP path (fully_shard, sharded save_state / load_state, get_state_dict).
    """
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    set_threads(1)
    PartialState(cpu=True)._shared_state["distributed_type"] = DistributedType.MULTI_GPU

    def stop(record, model):
        if fail_at is not None and record["step"] == fail_at:
            raise Interrupt(f"stopped at step {fail_at}")

    cfg = dataclasses.replace(REF_CFG, batch_size=2, max_steps=8, save_every=4, eval_every=4)
    result = train(frozen_model(True), TRAIN, VAL, cfg, Path(out_dir), seed=1, progress=False, on_step=stop)
    if PartialState().is_main_process:
        (Path(out_dir) / "resumed_from.txt").write_text(str(result.resumed_from))


@pytest.mark.slow
def test_fsdp_sharded_checkpoints_resume(tmp_path):
    """FSDP2 via accelerate, 2 CPU processes x batch 2, one layer frozen: sharded checkpoints (save_state) that a
    rerun resumes from (load_state) after a crash, ending within tolerance of one process x batch 4 (same rows)."""
    run_ddp_child(str(tmp_path / "one"), batch_size=4, freeze=True)
    env = {**os.environ, **FSDP_ENV, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python"]

    def fsdp(out: Path, fail_at=None) -> subprocess.CompletedProcess:
        child = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_train as T; "
                 f"T.run_fsdp_child({str(out)!r}, fail_at={fail_at!r})")
        return subprocess.run([*launch, sys.executable, "-c", child], env=env, capture_output=True, text=True,
                              timeout=300)

    # A crash after the checkpoint of step 4 (on_step raises on the main process; torchrun stops the other).
    crashed = fsdp(tmp_path / "fsdp", fail_at=6)
    assert crashed.returncode != 0 and "stopped at step 6" in crashed.stderr, crashed.stderr[-3000:]
    ckpts = checkpoint.list_checkpoints(tmp_path / "fsdp" / "checkpoints")
    assert [checkpoint.checkpoint_step(c) for c in ckpts] == [4] and checkpoint.verify(ckpts[0]) is None
    shards = sorted(p.relative_to(ckpts[0]).as_posix() for p in (ckpts[0] / "fsdp_state").rglob("*.distcp"))
    # every process's shard of the weights and of the optimiser state, and no whole-model file
    assert len(shards) == 4 and not (ckpts[0] / "model.safetensors").exists(), shards
    # The rerun resumes from the shards (load_state) and ends where one process with the same rows ends.
    resumed = fsdp(tmp_path / "fsdp")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (tmp_path / "fsdp" / "resumed_from.txt").read_text() == "4"
    one = load_file(tmp_path / "one" / "model" / "model.safetensors")
    two = load_file(tmp_path / "fsdp" / "model" / "model.safetensors")  # gathered from the shards, head tied
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5, msg=k)
    start = tiny_model().state_dict()
    assert all(torch.equal(two[k], start[k]) == k.startswith(FROZEN) for k in two)  # the frozen layer alone stays
    m1, m2 = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "fsdp")
    assert [r["step"] for r in m2] == list(range(1, 9))
    for a, b in zip(m1, m2):  # steps 5-8 ran after the resume: a lost optimiser state would show here
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        assert ("val_loss" in a) == ("val_loss" in b)
        if "val_loss" in a:
            assert b["val_loss"] == pytest.approx(a["val_loss"], rel=1e-5)

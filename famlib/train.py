"""The one training loop: base pretraining and every continual-pretraining strategy go through :func:`train`.

A plain loop on ``accelerate`` (nanoGPT-style): AdamW over the trainable parameters only, warmup then a
cosine/linear/constant decay, gradient accumulation and clipping, periodic validation with early stopping
that keeps the best weights, crash-safe checkpoints and automatic resume. What differs between strategies is
decided by the caller before :func:`train` is called (which parameters have ``requires_grad``) or passed in
(a :class:`Regularizer` such as Layer-Range L2-SP).

Data: ``train_data`` and ``val_data`` are 2-D integer arrays ``[sequences, seq_len]`` of packed token ids
(``np.memmap`` is fine); every sequence is a full causal-LM example (labels = inputs).

Batches: ``cfg.batch_size`` sequences per process per micro-step, ``cfg.grad_accum`` micro-steps per
optimiser step, so an optimiser step consumes a *global batch* of ``batch_size * grad_accum * processes``
sequences. The global batches are consecutive slices of a seeded permutation of the training rows (one
permutation per epoch, a pure function of ``(seed, epoch)``); under ``accelerate launch`` each process takes
its own shard of every global batch, so N processes with ``batch_size=b`` see exactly the rows one process
with ``batch_size=N*b`` sees, and reach the same weights up to floating-point summation order.

Validation: every ``cfg.eval_every`` optimiser steps and after the last one, the mean loss over the first
``cfg.eval_batches`` batches of every process (all of ``val_data`` if None). The best weights follow the
lowest validation loss and are what the final model holds. Early stopping (``cfg.patience``) counts the
validations since the last improvement that counted, one with ``best - val > cfg.threshold`` (an absolute
difference of losses, as transformers' ``EarlyStoppingCallback`` compares them).

Reproducibility: on the CPU, with the same thread count, the same inputs and seed give bit-identical
weights, and a run killed at any instant (SIGKILL included) and started again with the same arguments
resumes from its newest intact checkpoint and ends bit-identical to an uninterrupted run.

Files under ``out_dir``::

    train_config.json     the resolved TrainConfig and run facts (seed, processes, batch, parameter counts)
    metrics.jsonl         one line per optimiser step: step, epoch, loss, lr, tokens, tokens_per_s, elapsed
                          (+ reg with a regularizer, grad_norm when clipping, val_loss when validated)
    checkpoints/step-N/   model.safetensors, optimizer.pt, rng-rank*.pt, trainer_state.json,
                          best.safetensors (weights of the best validation so far), manifest.json
                          (under FSDP: fsdp_state/, accelerate's save_state with every process's shards,
                          instead of model.safetensors and optimizer.pt)
    best/step-N.safetensors   trainable weights of the best validation so far
    result.json           the TrainResult of the finished run
    model/                the final Hugging Face directory (best-validation weights), unless model_dir= says
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, broadcast_object_list
from safetensors.torch import load_file, load_model, save_file, save_model
from tqdm.auto import tqdm

from famlib import checkpoint
from famlib.config import TrainConfig, training_key
from famlib.distributed import process_state
from famlib.errors import FamlibError
from famlib.io import atomic_write_json, atomic_write_text
from famlib.threads import set_threads  # re-exported: its home is famlib.threads

__all__ = ["Regularizer", "ResumeError", "TrainResult", "lr_at", "param_groups", "set_threads",
           "train"]


class ResumeError(FamlibError, ValueError):
    """``out_dir`` holds checkpoints of a different run (other config, seed, data shape or frozen set)."""


@runtime_checkable
class Regularizer(Protocol):
    """A penalty on the weights, applied once per optimiser step (e.g. Layer-Range L2-SP).

    ``penalty_and_grad(model)`` is called after the backward passes of all micro-steps (and, under DDP,
    after the gradients were averaged across processes), before clipping and the optimiser step. It must

    * ADD the penalty's gradient to ``p.grad`` in place for every parameter it penalises (``p.grad`` may be
      ``None`` for a trainable parameter that got no gradient: then set it),
    * leave frozen parameters (``requires_grad`` False) alone, and
    * return the penalty's value as a float, for the metrics log (it is not added to the logged loss).

    The gradient is written directly instead of adding the penalty to the loss, so that e.g. L2-SP's
    ``2 * lambda * (theta - theta0)`` costs one fused op per tensor and no autograd graph. ``model`` is the
    unwrapped transformers model, so parameter names are the usual ``model.layers.3.mlp...`` names. Under
    DDP every process calls it with identical weights and gradients, so the update stays identical.
    """

    def penalty_and_grad(self, model: torch.nn.Module) -> float: ...


@dataclass(frozen=True)
class TrainResult:
    """What a finished :func:`train` call did. Also written to ``out_dir/result.json``."""

    out_dir: Path
    model_dir: Path | None  # the final Hugging Face directory (best-validation weights), or None if not saved
    steps: int  # optimiser steps taken (fewer than total_steps if stopped early)
    total_steps: int  # optimiser steps planned: cfg.max_steps, or one epoch
    tokens: int  # training tokens consumed, all processes together
    train_loss: float | None  # loss of the last optimiser step
    best_val_loss: float | None  # None when there was no validation data
    best_step: int | None  # the step whose weights the final model has (None: the last step's)
    stopped_early: bool
    resumed_from: int | None  # the checkpoint step this call resumed from, None for a fresh start
    evals: tuple[dict[str, float], ...] = ()  # {"step": s, "val_loss": v} for every validation
    trainable_params: int = 0
    frozen_params: int = 0
    seconds: float = 0.0  # wall time of all the calls that made this run (resumes added up)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["out_dir"] = str(self.out_dir)
        d["model_dir"] = None if self.model_dir is None else str(self.model_dir)
        d["evals"] = list(d["evals"])
        return d


# ----------------------------------------------------------------------------------------------------
# Small public helpers
# ----------------------------------------------------------------------------------------------------


def lr_at(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based) in a run of ``total_steps`` steps.

    Linear warmup over ``cfg.warmup_steps`` to ``cfg.lr`` (nanoGPT's ``(step+1)/(warmup+1)``, so the first
    step does not waste a zero learning rate), then ``cfg.schedule`` from ``cfg.lr`` down to
    ``cfg.min_lr_ratio * cfg.lr`` at the last step (``constant`` stays at ``cfg.lr``).
    """
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / (cfg.warmup_steps + 1)
    if cfg.schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - 1 - cfg.warmup_steps))
    if cfg.schedule == "cosine":
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif cfg.schedule == "linear":
        decay = 1.0 - progress
    else:
        raise ValueError(f"TrainConfig.schedule={cfg.schedule!r}; allowed: 'cosine', 'linear', 'constant'")
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay)


def param_groups(model: torch.nn.Module, weight_decay: float) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """AdamW parameter groups over the trainable parameters only, and the parameter counts.

    Weight decay applies to tensors of 2 or more dimensions (matrices, embeddings); norms' scales and
    biases are not decayed (as in nanoGPT and the transformers Trainer). Frozen parameters are left out,
    so they get no optimiser state at all.

    Returns:
        ``(groups, counts)`` with counts ``trainable``, ``frozen``, ``decay``, ``no_decay`` (elements).
    """
    decay, no_decay, frozen = [], [], 0
    for _, p in model.named_parameters():  # tied weights (embeddings = head) are listed once
        if not p.requires_grad:
            frozen += p.numel()
        elif p.dim() >= 2:
            decay.append(p)
        else:
            no_decay.append(p)
    n_decay, n_no = sum(p.numel() for p in decay), sum(p.numel() for p in no_decay)
    groups = [g for g in ({"params": decay, "weight_decay": weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    counts = {"trainable": n_decay + n_no, "frozen": frozen, "decay": n_decay, "no_decay": n_no}
    return groups, counts


# ----------------------------------------------------------------------------------------------------
# Run state: everything besides tensors that a checkpoint must restore
# ----------------------------------------------------------------------------------------------------
@dataclass
class _State:
    step: int = 0  # optimiser steps completed
    epoch: int = 0  # data position: epoch of the permutation ...
    offset: int = 0  # ... and index in it of the next global batch's first row
    best_val: float | None = None  # lowest validation loss so far
    best_step: int | None = None  # the step that reached it (its weights are in best/)
    bad_evals: int = 0  # validations since the last improvement that counted (early stopping)
    evals: list[dict[str, float]] = field(default_factory=list)
    train_loss: float | None = None
    stopped_early: bool = False
    finished: bool = False
    seconds: float = 0.0  # wall time spent in earlier calls (resumes)


@dataclass
class _Run:
    """What one call of :func:`train` sets up before its first step: the process group, the prepared model
    and optimiser, the batch arithmetic and the run facts a checkpoint must match (internal)."""

    accelerator: Any
    model: torch.nn.Module  # as accelerate prepared it (a DDP or FSDP wrapper when distributed)
    raw: torch.nn.Module  # the transformers model itself: names without "module."
    optimizer: torch.optim.Optimizer
    trainable: list  # the parameters that train (clipped together)
    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    fsdp: bool
    say: Callable[[str], None]
    global_batch: int
    total_steps: int
    tokens_per_step: int
    counts: dict[str, int]
    run_info: dict[str, Any]
    enabled_ckpt: bool  # activation checkpointing switched on by this call (switched off again at the end)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


@dataclass(frozen=True)
class _Paths:
    out_dir: Path
    model_dir: Path
    checkpoints: Path
    best: Path
    metrics: Path

    @classmethod
    def of(cls, out_dir: str | Path, model_dir: str | Path | None) -> "_Paths":
        out = Path(out_dir)
        return cls(out, Path(model_dir) if model_dir is not None else out / "model", out / "checkpoints",
                   out / "best", out / "metrics.jsonl")


def train(
    model: torch.nn.Module,
    train_data: np.ndarray,
    val_data: np.ndarray | None,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    seed: int,
    regularizer: Regularizer | None = None,
    log_name: str = "train",
    model_dir: str | Path | None = None,
    save_model_dir: bool = True,
    tokenizer: Any = None,
    keep_last: int = 2,
    progress: bool = True,
    on_step: Callable[[dict[str, Any], torch.nn.Module], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on packed token sequences; resume automatically from ``out_dir``.

    Freeze parameters (``requires_grad=False``) *before* calling: the optimiser is built here over the
    trainable ones only. The model's initial weights must be the same on every call for a resume to
    reproduce the run (for a resume they are overwritten by the checkpoint's anyway).

    Args:
        model: a transformers causal LM (e.g. ``Gemma3ForCausalLM``); on return it holds the final weights
            (the best validation's when there was validation data) and is in eval mode.
        train_data: ``[sequences, seq_len]`` integer token ids.
        val_data: ``[sequences, seq_len]`` token ids for validation and early stopping, or None.
        cfg: the optimisation settings (batch_size is per process and micro-step).
        out_dir: run directory: checkpoints, metrics, config and result (see the module docstring).
        seed: seeds the data order and the RNGs (the model's initialisation is the caller's).
        regularizer: an optional :class:`Regularizer`, applied every optimiser step.
        log_name: name shown on the progress bar and in messages.
        model_dir: where to write the final Hugging Face directory; default ``out_dir/model``.
        save_model_dir: False skips writing it (the weights stay in ``model``).
        tokenizer: if given, saved into the final directory too.
        keep_last: checkpoints to keep (0 keeps all).
        progress: show the tqdm progress bar.
        on_step: called on the main process after every optimiser step with the step's metrics record and
            the unwrapped model, e.g. to probe the model or draw a live plot (the lesson does both). It runs
            under ``torch.no_grad`` and the model is put back in train mode afterwards; it must not change
            the weights (what it measures is its own business: the run stays bit-identical).

    Returns:
        A :class:`TrainResult`.

    Raises:
        ValueError: bad data shapes or types, a global batch larger than the data, or patience without
            validation data.
        ResumeError: ``out_dir`` holds checkpoints of a run with another config, seed, process count,
            data shape or set of trainable parameters.
    """
    t_start = time.perf_counter()
    paths = _Paths.of(out_dir, model_dir)
    seq_len, val_data = _check_inputs(train_data, val_data, cfg, regularizer)
    run = _setup(model, train_data, val_data, seq_len, cfg, seed, regularizer, log_name)
    bar = metrics_fh = None
    try:
        state, resumed_from = _resume(run, paths, seed)

        def elapsed() -> float:  # wall time of this run, earlier (resumed) calls included
            return state.seconds + time.perf_counter() - t_start

        metrics_fh = open(paths.metrics, "a", encoding="utf-8") if run.main else None
        # In a terminal the bar redraws in place; in a notebook kernel or a log (papermill, CI) every redraw
        # is a new line of output, so it updates every 15 s there and executed notebooks stay readable.
        bar = tqdm(total=run.total_steps, initial=state.step, desc=log_name, unit="step", dynamic_ncols=True,
                   disable=not (run.main and progress), mininterval=0.1 if sys.stderr.isatty() else 15.0)
        _loop(run, state, train_data, val_data, seed, regularizer, paths, keep_last, elapsed, bar, metrics_fh,
              on_step)
        return _finish(run, state, paths, resumed_from, save_model_dir, tokenizer, elapsed)
    finally:
        if bar is not None:
            bar.close()
        if metrics_fh is not None:
            metrics_fh.close()
        # Also after an error or a KeyboardInterrupt in a notebook: hand back a plain model, without
        # accelerate's autocast wrapper on forward or the checkpointing this call switched on.
        raw = run.accelerator.unwrap_model(run.model, keep_fp32_wrapper=False)
        if run.enabled_ckpt:
            _activation_checkpointing(raw, False)
        raw.eval()


def _check_inputs(train_data: Any, val_data: Any, cfg: TrainConfig, regularizer: Any) -> tuple[int, Any]:
    """The sequence length, and ``val_data`` (None when empty); ValueError or TypeError on bad inputs."""
    seq_len = _check_data(train_data, "train_data")
    if val_data is not None and len(val_data) == 0:
        val_data = None
    if val_data is not None and _check_data(val_data, "val_data") != seq_len:
        raise ValueError(f"val_data has sequences of {val_data.shape[1]} tokens, train_data of {seq_len}; "
                         "they must be packed to the same length")
    if cfg.patience is not None and val_data is None:
        raise ValueError(f"cfg.patience={cfg.patience} needs validation data, but val_data is empty or None; "
                         "pass val_data or set patience to None")
    if regularizer is not None and not isinstance(regularizer, Regularizer):
        raise TypeError(f"regularizer is a {type(regularizer).__name__} without a penalty_and_grad(model) "
                        "method; see famlib.train.Regularizer")
    return seq_len, val_data


def _accelerator(cfg: TrainConfig, regularizer: Any, log_name: str):
    """accelerate's Accelerator for this run (device, processes, mixed precision), whether it is FSDP, and
    the main process's message function."""
    # The process group is formed first (the device decides bf16); famlib.distributed refuses a launch whose
    # processes did not join one group (N independent copies would all write the same out_dir).
    device = process_state().device
    use_bf16 = cfg.bf16 and _bf16_supported(device)
    # AcceleratorState is a process-wide singleton that refuses a second, different mixed_precision, but a
    # notebook may train an fp32 base and then a bf16 expert. Reset it (keeping PartialState, which holds
    # the process group) so that cfg.bf16 alone decides; `accelerate launch --mixed_precision` is ignored.
    # (_reset_state is accelerate's own test hook; it has been stable since accelerate 0.x.)
    AcceleratorState._reset_state(reset_partial_state=False)
    accelerator = Accelerator(mixed_precision="bf16" if use_bf16 else "no")
    # FSDP (`accelerate launch --use_fsdp --fsdp_version 2`, read from the environment by Accelerator): the
    # weights, gradients and optimiser state are sharded across processes, so checkpoints are accelerate's
    # sharded save_state / load_state and the best and final weights are gathered before they are written.
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    if fsdp and regularizer is not None:
        raise ValueError(f"a regularizer ({type(regularizer).__name__}) under FSDP: it reads and writes whole "
                         "parameters, which FSDP shards across processes; train it with DDP (one model per GPU, "
                         "`accelerate launch --multi_gpu`) or one process")
    say = (lambda msg: tqdm.write(f"[{log_name}] {msg}")) if accelerator.is_main_process else (lambda msg: None)
    if cfg.bf16 and not use_bf16:
        say(f"cfg.bf16 is set but {device} has no fast bf16; training in float32")
    return accelerator, device, fsdp, say


def _setup(model: torch.nn.Module, train_data: np.ndarray, val_data: np.ndarray | None, seq_len: int,
           cfg: TrainConfig, seed: int, regularizer: Any, log_name: str) -> _Run:
    """Form the process group, check the batch against the data, build the optimiser over the trainable
    parameters and prepare both with accelerate; the run facts that a resumed checkpoint must match."""
    accelerator, device, fsdp, say = _accelerator(cfg, regularizer, log_name)
    world = accelerator.num_processes
    B, accum = cfg.batch_size, cfg.grad_accum
    global_batch = B * accum * world
    n_train = len(train_data)
    if n_train < global_batch:
        raise ValueError(f"train_data has {n_train} sequences, fewer than one global batch of {global_batch} "
                         f"(batch_size {B} x grad_accum {accum} x {world} processes); use more data or a "
                         "smaller batch")
    steps_per_epoch = n_train // global_batch  # the last partial batch of an epoch is dropped
    total_steps = cfg.max_steps if cfg.max_steps is not None else steps_per_epoch

    _check_master_dtype(model, cfg)
    groups, counts = param_groups(model, cfg.weight_decay)
    if counts["trainable"] == 0:
        raise ValueError("the model has no parameter with requires_grad=True; nothing to train")
    trainable_names = [n for n, p in model.named_parameters() if p.requires_grad]
    # AdamW's betas/eps are torch's (and the transformers Trainer's) defaults, as in the paper's runs; the
    # fused kernel (the Trainer's default too) does the whole update in one pass over the weights.
    optimizer = torch.optim.AdamW(groups, lr=lr_at(0, cfg, total_steps), fused=device.type in ("cpu", "cuda"))
    enabled_ckpt = cfg.gradient_checkpointing and _activation_checkpointing(model, True)
    model.train()
    model, optimizer = accelerator.prepare(model, optimizer)
    raw = accelerator.unwrap_model(model)
    run_info = {
        "train": dataclasses.asdict(cfg), "seed": seed, "processes": world, "global_batch": global_batch,
        "seq_len": seq_len, "total_steps": total_steps, "steps_per_epoch": steps_per_epoch,
        "train_sequences": n_train, "val_sequences": 0 if val_data is None else len(val_data),
        "trainable_params": counts["trainable"], "frozen_params": counts["frozen"],
        "trainable_names_sha256": _sha256_text("\n".join(trainable_names)),
        "mixed_precision": "bf16" if accelerator.mixed_precision == "bf16" else "no",
        "regularizer": None if regularizer is None else type(regularizer).__name__,
    }
    total = counts["trainable"] + counts["frozen"]
    say(f"parameters: {counts['trainable']:,} trainable ({100 * counts['trainable'] / total:.1f}%), "
        f"{counts['frozen']:,} frozen; decayed {counts['decay']:,}, not decayed {counts['no_decay']:,}")
    say(f"{total_steps} steps of {global_batch} x {seq_len} tokens ({world} process(es), "
        f"{torch.get_num_threads()} thread(s), {run_info['mixed_precision']} mixed precision, {device})")
    return _Run(accelerator, model, raw, optimizer, [p for p in raw.parameters() if p.requires_grad], cfg,
                device, accelerator.process_index, world, fsdp, say, global_batch, total_steps,
                global_batch * seq_len, counts, run_info, enabled_ckpt)


def _resume(run: _Run, paths: _Paths, seed: int) -> tuple[_State, int | None]:
    """The state to continue from: the newest intact checkpoint's (every process the same one), or a fresh
    start; the step resumed from (None when fresh). Rewrites the run's config, metrics and best/ to match."""
    state = _State()
    chosen: list[str | None] = [None]
    if run.main:
        paths.out_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.clean_staging(paths.checkpoints)
        found = checkpoint.latest_valid(paths.checkpoints, warn=run.say)
        chosen = [None if found is None else str(found)]
    if run.world > 1:
        broadcast_object_list(chosen)  # every process must resume from the same checkpoint
    resumed_from = None
    if chosen[0] is not None:
        state = _load_checkpoint(Path(chosen[0]), run.raw, run.optimizer, run.run_info, run.rank, run.device,
                                 run.accelerator if run.fsdp else None)
        resumed_from = state.step
        run.say(f"resumed from {chosen[0]} (step {state.step})")
    else:
        _set_seed(seed + run.rank)  # per process, so dropout masks differ across processes
    if run.main:
        atomic_write_json(paths.out_dir / "train_config.json", run.run_info)
        _truncate_metrics(paths.metrics, state.step)
        # best/ must match the state: only the checkpoint's best weights (or none) survive a restart.
        paths.best.mkdir(exist_ok=True)
        for f in paths.best.iterdir():
            f.unlink()
        if state.best_step is not None:
            checkpoint.link_or_copy(Path(chosen[0]) / "best.safetensors", _best_file(paths.best, state.best_step))
    run.accelerator.wait_for_everyone()
    return state, resumed_from


def _loop(run: _Run, state: _State, train_data: np.ndarray, val_data: np.ndarray | None, seed: int,
          regularizer: Any, paths: _Paths, keep_last: int, elapsed: Callable[[], float], bar, metrics_fh,
          on_step) -> None:
    """Optimiser steps from ``state`` until the budget is spent or early stopping says stop; one metrics line
    per step, a checkpoint every ``save_every`` steps and a final one."""
    cfg = run.cfg

    def save(final: bool) -> None:
        snapshot = dataclasses.replace(state, finished=final, seconds=elapsed())
        _save_checkpoint(run.accelerator, paths.checkpoints, snapshot, run.raw, run.optimizer, run.run_info,
                         paths.best, keep_last)

    perm = _epoch_order(len(train_data), seed, state.epoch)
    tok_s_smooth = None
    while not state.finished and state.step < run.total_steps:
        t0 = time.perf_counter()
        if state.offset + run.global_batch > len(train_data):  # epoch exhausted: next permutation
            state.epoch, state.offset = state.epoch + 1, 0
            perm = _epoch_order(len(train_data), seed, state.epoch)
        lr = lr_at(state.step, cfg, run.total_steps)
        extra = _step(run, state, train_data, perm[state.offset:state.offset + run.global_batch], lr, regularizer)
        tok_s = run.tokens_per_step / (time.perf_counter() - t0)
        tok_s_smooth = tok_s if tok_s_smooth is None else 0.9 * tok_s_smooth + 0.1 * tok_s
        record: dict[str, Any] = {"step": state.step, "epoch": state.epoch, "loss": state.train_loss, "lr": lr,
                                  "tokens": state.step * run.tokens_per_step, "tokens_per_s": round(tok_s, 1),
                                  "elapsed": round(elapsed(), 3), **extra}
        last = state.step == run.total_steps
        if val_data is not None and (state.step % cfg.eval_every == 0 or last):
            record["val_loss"] = _validate(run, state, val_data, paths.best)
        if metrics_fh is not None:
            metrics_fh.write(json.dumps(record) + "\n")
            metrics_fh.flush()  # a killed run leaves whole lines (a torn last one is dropped on resume)
        if on_step is not None and run.main:
            with torch.no_grad():
                on_step(dict(record), run.raw)
            run.raw.train()
        post = {"loss": f"{record['loss']:.3f}", "lr": f"{lr:.2e}", "tok/s": f"{tok_s_smooth:,.0f}"}
        if state.evals:
            post["val"] = f"{state.evals[-1]['val_loss']:.3f}"
        bar.set_postfix(post, refresh=False)
        bar.update(1)
        if state.stopped_early or last:
            break
        if state.step % cfg.save_every == 0:
            save(final=False)
    if not state.finished:
        save(final=True)  # a rerun of a finished run then only redoes the cheap part of _finish


def _step(run: _Run, state: _State, train_data: np.ndarray, rows: np.ndarray, lr: float,
          regularizer: Any) -> dict[str, Any]:
    """One optimiser step over the global batch ``rows`` (this process takes its share of every micro-step);
    advances ``state`` (step, data offset, train loss) and returns the step's optional metrics: ``grad_norm``
    when clipping, ``reg`` with a regularizer."""
    cfg, accum, B = run.cfg, run.cfg.grad_accum, run.cfg.batch_size
    for g in run.optimizer.param_groups:
        g["lr"] = lr
    loss_sum = torch.zeros((), device=run.device)
    for k in range(accum):
        # Micro-step k of this process: its own B rows of the global batch.
        first = (k * run.world + run.rank) * B
        x = torch.from_numpy(np.asarray(train_data[rows[first:first + B]], dtype=np.int64)).to(run.device)
        # Gradients are all-reduced across processes only on the last micro-step.
        sync = contextlib.nullcontext() if k == accum - 1 else run.accelerator.no_sync(run.model)
        with sync:
            loss = _lm_loss(run.model, run.raw, x, cfg, run.accelerator)
            # Every micro-batch has the same number of target tokens, so the mean of the
            # micro-batch means is the global batch's mean.
            run.accelerator.backward(loss / accum)
        loss_sum += loss.detach()
    reg = regularizer.penalty_and_grad(run.raw) if regularizer is not None else None
    grad_norm = run.accelerator.clip_grad_norm_(run.trainable, cfg.grad_clip) if cfg.grad_clip > 0 else None
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.offset += run.global_batch
    state.train_loss = run.accelerator.reduce(loss_sum / accum, reduction="mean").item()
    extra: dict[str, float] = {}
    if grad_norm is not None:
        extra["grad_norm"] = float(grad_norm)
    if reg is not None:
        extra["reg"] = float(reg)
    return extra


def _validate(run: _Run, state: _State, val_data: np.ndarray, best_dir: Path) -> float:
    """Validate after this step: record it, keep the best weights, and set ``state.stopped_early`` when
    early stopping says stop. Returns the validation loss."""
    cfg = run.cfg
    val = _evaluate(run.raw, val_data, cfg, run.accelerator, lockstep=run.fsdp)
    state.evals.append({"step": state.step, "val_loss": val})
    stop = _update_best(state, val, cfg)
    if state.best_step == state.step and (run.main or run.fsdp):  # under FSDP all gather the shards
        _save_best(run.raw, best_dir, state.step, run.main)
    run.accelerator.wait_for_everyone()
    if stop:
        state.stopped_early = True
        run.say(f"early stop at step {state.step}: no validation improved on the best by more than "
                f"{cfg.threshold:g} (in loss) for {cfg.patience} validations; best {state.best_val:.4f} at step "
                f"{state.best_step}")
    return val


def _finish(run: _Run, state: _State, paths: _Paths, resumed_from: int | None, save_model_dir: bool,
            tokenizer: Any, elapsed: Callable[[], float]) -> TrainResult:
    """Load the best validation's weights, write the final Hugging Face directory and ``result.json``."""
    if state.best_step is not None:
        _load_best(run.raw, paths.best, state.best_step)
    saved_dir = paths.model_dir if save_model_dir else None
    # the whole weights on the main process (FSDP: gathered from every process, a collective; else None)
    full = _gathered_state_dict(run.accelerator, run.model, run.raw) if run.fsdp and saved_dir is not None else None
    result = TrainResult(
        out_dir=paths.out_dir, model_dir=saved_dir, steps=state.step, total_steps=run.total_steps,
        tokens=state.step * run.tokens_per_step, train_loss=state.train_loss, best_val_loss=state.best_val,
        best_step=state.best_step, stopped_early=state.stopped_early, resumed_from=resumed_from,
        evals=tuple(state.evals), trainable_params=run.counts["trainable"], frozen_params=run.counts["frozen"],
        seconds=round(elapsed(), 3),
    )
    if run.main:
        if saved_dir is not None:
            with checkpoint.atomic_directory(saved_dir) as tmp:
                run.raw.save_pretrained(tmp, state_dict=full)
                if tokenizer is not None:
                    tokenizer.save_pretrained(tmp)
                atomic_write_json(tmp / "famlib_training.json", {**run.run_info, "result": result.to_dict()})
        atomic_write_json(paths.out_dir / "result.json", result.to_dict())
    run.accelerator.wait_for_everyone()
    run.say(f"done: {state.step} steps, train loss {state.train_loss:.4f}"
            + (f", best val {state.best_val:.4f} at step {state.best_step}" if state.best_val is not None else ""))
    return result


# ----------------------------------------------------------------------------------------------------
# Internals
# ----------------------------------------------------------------------------------------------------
def _check_data(data: Any, name: str) -> int:
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{name} is a {type(data).__name__}; allowed: a numpy array or np.memmap "
                        "[sequences, seq_len] of token ids")
    if data.ndim != 2 or data.shape[1] < 2:
        raise ValueError(f"{name} has shape {data.shape}; allowed: [sequences, seq_len] with seq_len >= 2")
    if data.dtype.kind not in "ui":
        raise ValueError(f"{name} has dtype {data.dtype}; allowed: an integer dtype (uint16, uint32, int64)")
    if len(data) == 0:
        raise ValueError(f"{name} has no sequences")
    return int(data.shape[1])


def _check_master_dtype(model: torch.nn.Module, cfg: TrainConfig) -> None:
    """Refuse trainable weights in another dtype than ``cfg.master_dtype``: the caller loads the model in it.

    Not cast here: a cast would copy the whole model (twice its memory for a moment), and a regulariser
    built before this call holds anchors made from the weights as they were.
    """
    want = getattr(torch, cfg.master_dtype)
    other = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()
                    if p.requires_grad and p.dtype != want})
    if other:
        raise ValueError(f"TrainConfig.master_dtype={cfg.master_dtype!r} but trainable parameters are "
                         f"{', '.join(other)}; load the model in {cfg.master_dtype} (from_pretrained(..., "
                         f"dtype=torch.{cfg.master_dtype})) or set master_dtype to the model's dtype")


def _lm_loss(model: torch.nn.Module, raw: torch.nn.Module, x: torch.Tensor, cfg: TrainConfig,
             accelerator) -> torch.Tensor:
    """The causal-LM loss of ``x`` (labels = inputs): plain, or through the head in chunks (``cfg.loss_chunk``).

    ``model`` is called (the prepared wrapper in the loop, ``raw`` in validation); ``raw`` is the transformers
    model. The chunked head multiplies in bf16 where the run uses bf16 autocast, as the plain path does.
    """
    if cfg.loss_chunk is None:
        return model(input_ids=x, labels=x, use_cache=False).loss
    from famlib.loss import chunked_causal_lm_loss

    compute = torch.bfloat16 if accelerator.mixed_precision == "bf16" else None
    return chunked_causal_lm_loss(model, raw, x, cfg.loss_chunk, compute)


def _bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Without AVX512-BF16/AMX, bf16 matmuls are emulated and slower than float32.
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def _activation_checkpointing(model: torch.nn.Module, on: bool) -> bool:
    """Switch activation (gradient) checkpointing; return True if this call turned it on."""
    new_api = hasattr(model, "activation_checkpointing_enable")  # transformers >= 5; the old names warn
    if on:
        active = model.is_activation_checkpointing if new_api else getattr(model, "is_gradient_checkpointing", False)
        if active:
            return False  # the caller's choice; leave it as it is
        # Non-reentrant checkpointing: the reentrant kind drops gradients when the inputs of a checkpointed
        # block do not require grad, which is exactly the case with frozen embeddings.
        kwargs = {"use_reentrant": False}
        if new_api:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        return True
    (model.activation_checkpointing_disable if new_api else model.gradient_checkpointing_disable)()
    return False


def _epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    # A pure function of (seed, epoch): the data position (epoch, offset) is then all a resume needs.
    return np.random.default_rng([seed, epoch]).permutation(n)


def _set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _update_best(state: _State, val: float, cfg: TrainConfig) -> bool:
    """Record a validation; return True if early stopping says stop.

    The best weights follow the lowest validation loss. Patience counts validations without an improvement
    that *counts*: ``best - val > threshold`` in loss units, against the best before this validation. That is
    transformers' ``EarlyStoppingCallback`` rule, which the authors' 0.001 / 0.005 thresholds were set for.
    """
    prev = state.best_val
    if prev is None or val < prev:
        state.best_val, state.best_step = val, state.step
    if prev is None or prev - val > cfg.threshold:
        state.bad_evals = 0
    else:
        state.bad_evals += 1
    return cfg.patience is not None and state.bad_evals >= cfg.patience


@torch.no_grad()
def _evaluate(raw: torch.nn.Module, val_data: np.ndarray, cfg: TrainConfig, accelerator,
              lockstep: bool = False) -> float:
    """Mean loss over the first ``eval_batches`` batches of every process (all sequences if None).

    That is ``eval_batches * batch_size * processes`` sequences: the same set as a single process with a
    ``processes`` times larger batch, the equivalence the training batches keep too. Batches are dealt
    round-robin to processes and the sums all-reduced. ``raw`` is the unwrapped model, so no DDP collective
    runs inside the forward passes (processes may do different numbers of them). Under FSDP (``lockstep``)
    every forward pass gathers the weights from all processes, so all do the same number: a process
    without a batch in the last round runs the first one again and counts it with weight 0.
    """
    B = cfg.batch_size
    n = len(val_data)
    if cfg.eval_batches is not None:
        n = min(n, cfg.eval_batches * B * accelerator.num_processes)
    was_training = raw.training
    raw.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=accelerator.device)  # [sum of loss * rows, rows]
    starts = list(range(0, n, B))
    world, rank = accelerator.num_processes, accelerator.process_index
    rounds = -(-len(starts) // world) if lockstep else None
    mine = [(i, 1) for i in range(rank, len(starts), world)]
    if lockstep:
        mine += [(0, 0)] * (rounds - len(mine))
    for i, weight in mine:
        start = starts[i]
        x = torch.from_numpy(np.asarray(val_data[start:min(start + B, n)], dtype=np.int64)).to(accelerator.device)
        loss = _lm_loss(raw, raw, x, cfg, accelerator)
        if weight:
            sums[0] += loss.double() * len(x)
            sums[1] += len(x)
    sums = accelerator.reduce(sums, reduction="sum")
    raw.train(was_training)
    return (sums[0] / sums[1]).item()


def _best_file(best_dir: Path, step: int) -> Path:
    return best_dir / f"{checkpoint.step_dir_name(step)}.safetensors"


def _full(t: torch.Tensor) -> torch.Tensor:
    """A whole tensor on the CPU: an FSDP shard (a DTensor) is gathered first, a collective on every process."""
    if hasattr(t, "full_tensor"):
        t = t.full_tensor()
    return t.detach().to("cpu").contiguous()


def _gathered_state_dict(accelerator, model, raw) -> dict[str, torch.Tensor] | None:
    """The whole state dict of an FSDP model on the main process (None elsewhere), tied weights once.

    Gathered tensors no longer share storage, so save_pretrained would write a tied head (``lm_head.weight``,
    the embedding itself) as a second tensor; the names a parameter has only as an alias are dropped.
    """
    full = accelerator.get_state_dict(model)
    aliases = ({n for n, _ in raw.named_parameters(remove_duplicate=False)} - {n for n, _ in raw.named_parameters()})
    return None if full is None else {k: v for k, v in full.items() if k not in aliases}


def _save_best(raw: torch.nn.Module, best_dir: Path, step: int, main: bool = True) -> None:
    """Write the trainable weights of validation ``step`` (the main process writes; under FSDP every process
    calls it, since gathering the shards is a collective)."""
    # Only trainable tensors: frozen ones never change, and for the freeze strategy this halves the writes.
    tensors = {n: _full(p) for n, p in raw.named_parameters() if p.requires_grad}
    if not main:
        return
    target = _best_file(best_dir, step)
    tmp = target.with_name(f".{target.name}.tmp")
    save_file(tensors, tmp)
    os.replace(tmp, target)
    for f in best_dir.iterdir():  # checkpoints hold hard links to the older bests they refer to
        if f != target:
            f.unlink()


@torch.no_grad()
def _load_best(raw: torch.nn.Module, best_dir: Path, step: int) -> None:
    tensors = load_file(_best_file(best_dir, step))
    params = dict(raw.named_parameters())
    for name, t in tensors.items():
        p = params[name]
        if hasattr(p, "device_mesh"):  # an FSDP shard: this process's part of the whole tensor
            from torch.distributed.tensor import distribute_tensor

            t = distribute_tensor(t.to(p.device, p.dtype), p.device_mesh, p.placements)
        p.copy_(t)


def _rng_state() -> dict[str, Any]:
    py = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(s: dict[str, Any]) -> None:
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    n = s["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


FSDP_STATE = "fsdp_state"  # a checkpoint's folder for accelerate's sharded save_state under FSDP


def _save_checkpoint(accelerator, root: Path, state: _State, raw, optimizer, run_info: dict, best_dir: Path,
                     keep_last: int) -> None:
    """Write checkpoint ``state.step`` atomically (see famlib.checkpoint); every process takes part."""
    main = accelerator.is_main_process
    tmp = checkpoint.staging_dir(root, state.step, create=main)
    accelerator.wait_for_everyone()
    torch.save(_rng_state(), tmp / f"rng-rank{accelerator.process_index:03d}.pt")  # RNG is per process
    if accelerator.distributed_type == DistributedType.FSDP:
        # each process writes its shards of weights and optimiser state (torch.distributed.checkpoint)
        accelerator.save_state(str(tmp / FSDP_STATE))
    accelerator.wait_for_everyone()
    if main:
        if accelerator.distributed_type != DistributedType.FSDP:
            save_model(raw, str(tmp / "model.safetensors"))  # handles the tied embedding/head
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if state.best_step is not None:
            checkpoint.link_or_copy(_best_file(best_dir, state.best_step), tmp / "best.safetensors")
        atomic_write_json(tmp / "trainer_state.json", {"state": dataclasses.asdict(state), "run": run_info})
        checkpoint.commit(tmp, keep_last=keep_last)
    accelerator.wait_for_everyone()


def _load_checkpoint(path: Path, raw, optimizer, run_info: dict, rank: int, device, fsdp=None) -> _State:
    """Restore checkpoint ``path`` into ``raw`` and ``optimizer``; ``fsdp`` is the Accelerator of an FSDP run
    (its checkpoints hold accelerate's sharded state, which every process loads its part of)."""
    saved = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    theirs = saved["run"]
    # Switches added to TrainConfig later are compared as cache keys see them (absent = at their default), so
    # a checkpoint written before a switch existed resumes when the switch is at its default.
    theirs = {**theirs, "train": training_key(theirs["train"])}
    run_info = {**run_info, "train": training_key(run_info["train"])}
    # Resuming under other settings would silently splice two different runs together. Only settings that
    # leave every number unchanged may differ (e.g. checkpointing more often, or activation checkpointing
    # to fit a smaller GPU).
    harmless = ("save_every", "gradient_checkpointing")
    diff = [(f"train.{k}", v, run_info["train"].get(k)) for k, v in theirs["train"].items()
            if k not in harmless and run_info["train"].get(k) != v]
    diff += [(k, theirs.get(k), run_info.get(k)) for k in ("seed", "processes", "global_batch", "seq_len",
             "train_sequences", "val_sequences", "trainable_names_sha256", "regularizer")
             if theirs.get(k) != run_info.get(k)]
    if set(theirs["train"]) != set(run_info["train"]):
        diff.append(("train (fields)", sorted(theirs["train"]), sorted(run_info["train"])))
    if diff:
        detail = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, a, b in diff)
        raise ResumeError(f"{path} belongs to a different run ({detail}). Use a new out_dir, delete "
                          f"{path.parent.parent}, or call train() with the run's original settings.")
    if fsdp is not None:
        if not (path / FSDP_STATE).is_dir():
            raise ResumeError(f"{path} was written without FSDP (no {FSDP_STATE}/); resume it under the launch that "
                              f"wrote it, or use a new out_dir")
        fsdp.load_state(str(path / FSDP_STATE))
    else:
        if (path / FSDP_STATE).is_dir():
            raise ResumeError(f"{path} holds FSDP shards ({FSDP_STATE}/); resume it under FSDP with "
                              f"{run_info['processes']} processes, or use a new out_dir")
        load_model(raw, str(path / "model.safetensors"), strict=True, device=str(device))
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=device, weights_only=True))
    _set_rng_state(torch.load(path / f"rng-rank{rank:03d}.pt", weights_only=True))
    return _State(**saved["state"])


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the complete lines with ``step <= step`` (the ones the resumed state has seen)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # the torn last line of a killed run
    atomic_write_text(path, "".join(f"{line}\n" for line in keep))


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()

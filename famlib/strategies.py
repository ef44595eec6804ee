"""The four training strategies of the paper on the shared engine: Dense CPT, Family Expert, Layer
Freezing and Layer-Range L2-SP.

A strategy is (which data, which hyperparameters, which parameters train, which penalty). The layer-group
rule lives in :mod:`famlib.layers`; this module applies it:

* ``dense``: every family's training languages at once, ``training.dense`` hyperparameters.
* ``expert``: one family, ``training.family``, everything trains.
* ``freeze``: one family, the middle group frozen *before* the optimiser is built (no gradients, no
  optimiser state for it).
* ``l2sp``: one family, every parameter trains, and :class:`LayerRangeL2SP` adds
  ``sum_l lambda_l ||theta_l - theta_l^0||^2`` through its gradient.

:func:`train_strategy` runs one (strategy, family) job end to end into ``runs/<scale>/models/<id>/``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Optional

import torch

from famlib.config import TRAINED_STRATEGIES, L2SPConfig, Params, training_key
from famlib.errors import ConfigError, one_of
from famlib.io import atomic_write_json, sha256_json
from famlib.layers import decoder_layers, group_of, is_trainable, l2sp_lambda, rule_for
from famlib.naming import model_id, model_path
from famlib.paths import run_dir

STRATEGY_FORMAT = 1


class LayerRangeL2SP:
    """Layer-Range L2-SP (Li et al. 2018, per-group strengths as in the paper), as a training regularizer.

    The penalty ``R = sum_p lambda_p ||p - p0||^2`` is never built through autograd: its gradient
    ``2 lambda_p (p - p0)`` is added to ``p.grad`` directly, with one fused ``_foreach`` pass per lambda,
    which is exactly what adding ``R`` to the loss would give. The anchor ``p0`` is a copy of the weights at
    construction (the base model), kept once in the parameters' dtype, moved to their device on first use.
    Parameters with lambda 0 or ``requires_grad=False`` are not anchored and cost nothing.
    """

    def __init__(self, model: torch.nn.Module, lambdas: L2SPConfig, first: int, last: int):
        num_layers = len(decoder_layers(model))
        groups: dict[float, list[str]] = defaultdict(list)
        for name, p in model.named_parameters():
            lam = l2sp_lambda(name, lambdas, num_layers, first, last)
            if lam > 0 and p.requires_grad:
                groups[lam].append(name)
        self.lambdas = dict(sorted(groups.items()))
        named = dict(model.named_parameters())
        self.anchors = {lam: [named[n].detach().clone() for n in names] for lam, names in self.lambdas.items()}
        self.anchored = sum(a.numel() for anchors in self.anchors.values() for a in anchors)

    def _params(self, model: torch.nn.Module) -> dict[float, list[torch.nn.Parameter]]:
        named = dict(model.named_parameters())
        return {lam: [named[n] for n in names] for lam, names in self.lambdas.items()}

    @torch.no_grad()
    def penalty_and_grad(self, model: torch.nn.Module) -> float:
        """Add the penalty's gradient to every anchored parameter's ``.grad``; return the penalty value."""
        total = 0.0
        for lam, params in self._params(model).items():
            anchors = self.anchors[lam]
            if anchors[0].device != params[0].device:  # train() moves the model after we were built
                anchors = self.anchors[lam] = [a.to(params[0].device) for a in anchors]
            diffs = torch._foreach_sub([p.detach() for p in params], anchors)
            total += lam * float(torch.stack(torch._foreach_norm(diffs)).float().pow(2).sum())
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            torch._foreach_add_([p.grad for p in params], diffs, alpha=2.0 * lam)
        return total

    @torch.no_grad()
    def penalty(self, model: torch.nn.Module) -> float:
        """The penalty's value alone (no gradient), e.g. for a report."""
        return sum(lam * float(sum(((p.detach() - a.to(p.device)) ** 2).sum() for p, a in zip(params, self.anchors[lam])))
                   for lam, params in self._params(model).items())


def check_job(params: Params, strategy: str, family: Optional[str]) -> None:
    """Refuse a (strategy, family) pair that is not a training job, with the allowed values."""
    params.check_strategy(strategy)
    if strategy not in TRAINED_STRATEGIES:
        raise ConfigError(params.origin, "strategy", strategy, f"a training strategy: {one_of(TRAINED_STRATEGIES)}",
                          "Post-hoc strategies are built by notebook 04 (famlib.surgery).")
    if strategy == "dense" and family not in (None, "all"):
        raise ConfigError(params.origin, "family", family, "None or 'all' for strategy 'dense' (it trains every family)")
    if strategy != "dense":
        if family is None:
            raise ConfigError(params.origin, "family", family, f"{one_of(params.families)} for strategy {strategy!r}")
        params.check_family(family)


def apply_strategy(params: Params, strategy: str, model: torch.nn.Module) -> tuple[Optional[LayerRangeL2SP], dict]:
    """Set ``requires_grad`` by the layer rule and build the strategy's regularizer (L2-SP) if it has one.

    Returns ``(regularizer or None, counts)`` with trainable / frozen parameter counts per group.
    """
    rule = rule_for(strategy)
    L = len(decoder_layers(model))
    m, n = params.layers.first, params.layers.last
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"trainable": 0, "frozen": 0})
    for name, p in model.named_parameters():
        trainable = is_trainable(name, strategy, L, m, n)
        p.requires_grad_(trainable)
        counts[group_of(name, L, m, n)]["trainable" if trainable else "frozen"] += p.numel()
    reg = LayerRangeL2SP(model, params.l2sp, m, n) if rule.l2sp else None
    return reg, dict(counts)


def job_key(params: Params, strategy: str, family: Optional[str], base_key: str, data_key: str) -> str:
    d = params.to_dict()
    cfg = training_key(d["training"]["dense" if strategy == "dense" else "family"])
    parts = {"format": STRATEGY_FORMAT, "strategy": strategy, "family": family, "training": cfg, "seed": params.seed,
             "layers": d["layers"], "base": base_key, "data": data_key}
    if strategy == "l2sp":
        parts["l2sp"] = d["l2sp"]
    return sha256_json(parts)


def train_strategy(params: Params, strategy: str, family: Optional[str] = None, corpus=None,
                   progress: bool = True) -> Path:
    """Continue pretraining the base with one strategy on one family (or all, for Dense); return the model dir.

    Writes ``runs/<scale>/models/<id>/`` (Hugging Face directory + ``famlib_provenance.json``) and keeps the
    run in ``runs/<scale>/train/<id>/``. An identical finished job is not redone (the provenance's key says
    so); an interrupted one resumes from its last checkpoint. Once the model and its provenance are written,
    the run's checkpoints (weights and optimiser state: 3.2 GB per gemma-3-270m run, 48 GB over the small
    scale's 16 runs, which filled this project's disk) are deleted; ``metrics.jsonl``, ``result.json`` and
    ``best/`` stay.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from famlib.base import ensure_base
    from famlib.data import build_corpus
    from famlib.data.tokens import build_cpt_set
    from famlib.train import train

    family = None if family == "all" else family
    check_job(params, strategy, family)
    corpus = corpus or build_corpus(params)
    base = ensure_base(params, corpus, progress=progress)
    base_prov = json.loads((base / "famlib_provenance.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(base))
    sets = build_cpt_set(params, corpus, tok, family, run_dir(params.scale) / "data" / (family or "dense"))
    mid = model_id(strategy, family)
    out = model_path(params, mid)
    key = job_key(params, strategy, family, base_prov.get("famlib_key", ""), sets["train"].meta["key"])
    prov_path = out / "famlib_provenance.json"
    if prov_path.exists() and json.loads(prov_path.read_text()).get("famlib_key") == key:
        return out
    cfg = params.training.dense if strategy == "dense" else params.training.family
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)  # fp32 master weights
    # Trimmed: strategy, regulariser and optimiser act on a copy whose vocabulary holds the data's ids (new
    # parameters; the layers are shared with `model`); on exit the trained rows go back into `model`.
    from famlib.vocab import trimmed_for_training

    views = (trimmed_for_training(model, sets["train"].tokens, sets["validation"].tokens, tok) if cfg.trim_vocab
             else contextlib.nullcontext((model, sets["train"].tokens, sets["validation"].tokens)))
    with views as (tmodel, tr, va):
        reg, counts = apply_strategy(params, strategy, tmodel)
        trim = ({"kept_ids": int(tmodel.get_input_embeddings().weight.shape[0]),
                 "vocab_size": int(model.get_input_embeddings().weight.shape[0])} if cfg.trim_vocab else None)
        result = train(tmodel, tr, va, cfg, run_dir(params.scale) / "train" / mid, seed=params.seed, regularizer=reg,
                       log_name=f"{params.scale} {mid}", model_dir=out, tokenizer=tok, progress=progress,
                       save_model_dir=trim is None)
        del tmodel
    if trim is not None or params.model.dtype != "float32":
        # Trimmed runs write the full-vocabulary model here; fp32-trained models are stored in the base's
        # dtype (bf16 at paper scale).
        from famlib.checkpoint import atomic_directory

        with atomic_directory(out) as tmp:
            model.to(getattr(torch, params.model.dtype)).save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
    atomic_write_json(prov_path, {"famlib_key": key, "strategy": strategy, "family": family, "scale": params.scale,
                                  "base": str(base), "parameters": counts, "train": result.to_dict(),
                                  "l2sp_anchored": getattr(reg, "anchored", 0), "trim_vocab": trim})
    shutil.rmtree(run_dir(params.scale) / "train" / mid / "checkpoints", ignore_errors=True)
    return out

"""Training jobs of the registered strategies on the shared engine (paper: Dense CPT, Family Expert, Layer
Freezing, Layer-Range L2-SP).

A trained strategy is (which data, which hyperparameters, which parameters train, which penalty), declared
by its entry in :mod:`famlib.strategies.registry`; the layer-group rule lives in :mod:`famlib.layers`. This
module applies them:

* the data: ``data="family"`` packs the family's training languages, ``data="dense"`` every family's at once;
  ``replay=True`` gives ``replay.share`` of the rows to English train-split text;
* the hyperparameters: the params section ``training.<entry.training>`` (``dense`` or ``family``);
* the parameters: the groups in ``entry.frozen`` (and the block of ``entry.frozen_block``) get
  ``requires_grad=False`` *before* the optimiser is built (no gradients, no optimiser state for them);
* the penalty: ``entry.regulariser`` (Layer-Range L2-SP: ``sum_l lambda_l ||theta_l - theta_l^0||^2``, added
  through its gradient by :class:`~famlib.strategies.l2sp.LayerRangeL2SP`);
* the adapter: ``entry.adapter`` (LoRA) is added before the layer rule is applied (its tensors train) and
  merged into the base weights after training, so the saved model is a plain checkpoint.

:func:`train_strategy` runs one (strategy, family) job end to end into ``runs/<scale>/models/<id>/``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import torch

from famlib.config import Params, training_key
from famlib.distributed import DistributedError, fsdp_requested, launched_processes, main_first, main_only
from famlib.errors import ConfigError, one_of
from famlib.io import atomic_write_json, sha256_json
from famlib.layers import decoder_layers, group_of
from famlib.naming import model_id, model_path
from famlib import paths
from famlib.strategies.l2sp import LayerRangeL2SP  # noqa: F401  (historical import path)
from famlib.strategies.registry import get, names
from famlib.strategies.rules import is_trainable
from famlib.strategies.spec import Strategy

STRATEGY_FORMAT = 1


def trained_entry(params: Params, strategy: str) -> Strategy:
    """The registry entry of a training strategy. Raises ConfigError for an unknown or a non-training one."""
    params.check_strategy(strategy)
    entry = get(strategy)
    if not entry.trains:
        raise ConfigError(params.origin, "strategy", strategy, f"a training strategy: {one_of(names('trained'))}",
                          "Post-hoc strategies are built by notebook 04 (famlib.surgery)." if entry.kind == "posthoc"
                          else "The base is built by notebook 02 (famlib.base).")
    return entry


def check_job(params: Params, strategy: str, family: Optional[str]) -> None:
    """Refuse a (strategy, family) pair that is not a training job, or one whose params sections are missing."""
    entry = trained_entry(params, strategy)
    for section in entry.missing_sections(params):
        raise ConfigError(params.origin, section, None, f"a '{section}:' section (strategy {strategy!r} reads it)",
                          "See the README's strategy table for the settings each strategy reads.")
    if not entry.per_family and family not in (None, "all"):
        raise ConfigError(params.origin, "family", family,
                          f"None or 'all' for strategy {strategy!r} (it trains every family)")
    if entry.per_family:
        if family is None:
            raise ConfigError(params.origin, "family", family, f"{one_of(params.families)} for strategy {strategy!r}")
        params.check_family(family)


def apply_strategy(params: Params, strategy: str, model: torch.nn.Module) -> tuple[Optional[Any], dict]:
    """Set ``requires_grad`` by the layer rule and build the strategy's regularizer (L2-SP) if it has one.

    Returns ``(regularizer or None, counts)`` with trainable / frozen parameter counts per group.

    Raises:
        famlib.layers.LayerError: an unknown strategy or one that does not train.
    """
    L = len(decoder_layers(model))
    m, n = params.layers.first, params.layers.last
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"trainable": 0, "frozen": 0})
    for name, p in model.named_parameters():
        trainable = is_trainable(name, strategy, L, m, n)
        p.requires_grad_(trainable)
        counts[group_of(name, L, m, n)]["trainable" if trainable else "frozen"] += p.numel()
    regulariser = get(strategy).regulariser
    reg = regulariser.build(params, model) if regulariser is not None else None
    return reg, dict(counts)


def job_key(params: Params, strategy: str, family: Optional[str], base_key: str, data_key: str) -> str:
    """The cache key of a training job: what it reads and nothing else, so that an unchanged job is not redone.

    The parts are those of every job before strategies became a registry (a key that changed would retrain
    every finished run): the strategy's training section (``training.dense`` or ``training.family``) and
    the sections its regulariser reads (``l2sp`` for L2-SP) are in; the rest of the params file is not.
    """
    entry = get(strategy)
    d = params.to_dict()
    cfg = training_key(d["training"][entry.training])
    parts = {"format": STRATEGY_FORMAT, "strategy": strategy, "family": family, "training": cfg, "seed": params.seed,
             "layers": d["layers"], "base": base_key, "data": data_key}
    parts.update({section: d[section] for section in entry.sections})
    return sha256_json(parts)


@contextlib.contextmanager
def adapted(params: Params, entry: Strategy, model: torch.nn.Module):
    """Yield the model to train: ``model`` itself, or with the strategy's adapter added.

    On a normal exit the adapter is merged into ``model``'s weights (so ``model`` is a plain model holding
    the trained function); after an error it is removed unmerged, so that ``model`` is again the plain model
    (and a trimmed copy can be written back) before the error travels on.
    """
    if entry.adapter is None:
        yield model
        return
    wrapped = entry.adapter.wrap(params, model)
    try:
        yield wrapped
    except BaseException:
        entry.adapter.unload(wrapped)
        raise
    entry.adapter.merge(wrapped)


def _check_fsdp_job(params: Params, entry: Strategy, cfg, resave: bool) -> None:
    """Refuse, before anything is built, a job that FSDP cannot run: the parts that need the whole model in
    one process after or during training (a regulariser's anchors, a trimmed vocabulary written back, an adapter
    merged, a model re-saved in another dtype) see only this process's shards under FSDP."""
    why = []
    if entry.regulariser is not None:
        why.append(f"its regulariser ({entry.regulariser.label}) reads whole parameters")
    if cfg.trim_vocab:
        why.append("trim_vocab writes trained rows back into the whole model (set training.*.trim_vocab=false)")
    if entry.adapter is not None:
        why.append("its adapter is merged into the whole model")
    if resave and not why:
        why.append(f"it trains in {cfg.master_dtype} and stores in {params.model.dtype} (set "
                   f"training.{entry.training}.master_dtype={params.model.dtype}, as the paper scale does)")
    if why:
        raise DistributedError(f"strategy {entry.name!r} cannot train under FSDP here: {'; '.join(why)}. Use DDP "
                               "(accelerate launch --multi_gpu: one whole model per GPU, which the paper scale's "
                               "settings fit on 80 GB; `famlib memory --scale paper`) or one process.")


def train_strategy(params: Params, strategy: str, family: Optional[str] = None, corpus=None,
                   progress: bool = True, out: Optional[Path] = None, train_dir: Optional[Path] = None) -> Path:
    """Continue pretraining the base with one strategy on one family (or all, for Dense); return the model dir.

    Writes ``runs/<scale>/models/<id>/`` (Hugging Face directory + ``famlib_provenance.json``) and keeps the
    run in ``runs/<scale>/train/<id>/``. An identical finished job is not redone (the provenance's key says
    so); an interrupted one resumes from its last checkpoint. Once the model and its provenance are written,
    the run's checkpoints (weights and optimiser state: 3.2 GB per gemma-3-270m run, 48 GB over the small
    scale's 16 runs, which filled this project's disk) are deleted; ``metrics.jsonl``, ``result.json`` and
    ``best/`` stay. A strategy with an adapter (LoRA) also keeps the trained adapter in ``adapter/`` there; the
    model directory holds it merged. ``out`` and ``train_dir`` put the model and the run elsewhere (the points of
    the dose-response study, :mod:`famlib.dose`).
    """
    from transformers import AutoModelForCausalLM

    from famlib.train import train

    family = None if family == "all" else family
    check_job(params, strategy, family)
    entry = get(strategy)
    base, base_prov, tok, sets = _inputs(params, entry, family, corpus, progress)
    mid = model_id(strategy, family)
    out = Path(out) if out is not None else model_path(params, mid)
    key = job_key(params, strategy, family, base_prov.get("famlib_key", ""), sets["train"].meta["key"])
    prov_path = out / "famlib_provenance.json"
    if prov_path.exists() and json.loads(prov_path.read_text()).get("famlib_key") == key:
        return out
    cfg = getattr(params.training, entry.training)
    if entry.adapter is not None and entry.adapter.train_config is not None:
        cfg = entry.adapter.train_config(params, cfg)
    # the model train() saves is the final one, unless it is trimmed, adapted or trained in another dtype
    resave = cfg.trim_vocab or entry.adapter is not None or cfg.master_dtype != params.model.dtype
    if fsdp_requested():
        _check_fsdp_job(params, entry, cfg, resave)
    # the master weights (training.*.master_dtype): fp32 by default, bf16 where the authors trained in bf16
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=getattr(torch, cfg.master_dtype))
    # Trimmed: strategy, regulariser and optimiser act on a copy whose vocabulary holds the data's ids (new
    # parameters; the layers are shared with `model`); on exit the trained rows go back into `model`.
    # An adapter is added to that copy (its layers are `model`'s) and merged into them before the copy is left.
    from famlib.vocab import trimmed_for_training

    views = (trimmed_for_training(model, sets["train"].tokens, sets["validation"].tokens, tok) if cfg.trim_vocab
             else contextlib.nullcontext((model, sets["train"].tokens, sets["validation"].tokens)))
    train_dir = Path(train_dir) if train_dir is not None else paths.train_dir(params.scale, mid)
    with views as (tmodel, tr, va), adapted(params, entry, tmodel) as tmodel:
        reg, counts = apply_strategy(params, strategy, tmodel)
        trim = ({"kept_ids": int(tmodel.get_input_embeddings().weight.shape[0]),
                 "vocab_size": int(model.get_input_embeddings().weight.shape[0])} if cfg.trim_vocab else None)
        result = train(tmodel, tr, va, cfg, train_dir, seed=params.seed, regularizer=reg,
                       log_name=f"{params.scale} {mid}", model_dir=out, tokenizer=tok, progress=progress,
                       save_model_dir=trim is None and entry.adapter is None)
        if entry.adapter is not None:
            main_only(lambda: entry.adapter.save(tmodel, train_dir / "adapter"), "saving the adapter")
        del tmodel
    # an adapter's record: its settings, and where the unmerged adapter is (the model here holds it merged)
    adapter = ({"adapter": {"name": entry.adapter.name, "merged": True, "unmerged": str(train_dir / "adapter"),
                            "settings": {k: params.to_dict()[k] for k in entry.adapter.sections}}}
               if entry.adapter is not None else {})
    record = {"famlib_key": key, "strategy": strategy, "family": family, "scale": params.scale, "base": str(base),
              "parameters": counts, "train": result.to_dict(), "l2sp_anchored": getattr(reg, "anchored", 0),
              "trim_vocab": trim, **adapter, "params": params.to_dict()}
    # once, by the main process; the others return when it is written (every process holds the same weights)
    main_only(lambda: _write_outputs(model if resave else None, tok, out, record, train_dir, params.model.dtype),
              "saving the model")
    return out


def _inputs(params: Params, entry: Strategy, family: Optional[str], corpus, progress: bool):
    """The base (its directory and provenance), its tokenizer and the job's token sets, built where missing.

    Under `accelerate launch` (famlib train) every process runs this: the main process builds the corpus,
    base and token sets, the others wait and then read them (famlib.distributed); only the training itself
    runs on all of them.
    """
    from transformers import AutoTokenizer

    from famlib.base import base_ready, ensure_base
    from famlib.data import build_corpus
    from famlib.data.tokens import build_cpt_set

    corpus = corpus or main_first(lambda: build_corpus(params), "building the corpus")
    if launched_processes() > 1 and params.model.kind == "scratch" and not base_ready(params, corpus):
        raise DistributedError(f"the {params.scale} base is not built, and a from-scratch base cannot be pretrained "
                               f"inside a {launched_processes()}-process launch; build it first with one process: "
                               f"famlib base --scale {params.scale} (or famlib run --step 02_base_model)")
    base = main_first(lambda: ensure_base(params, corpus, progress=progress), "preparing the base model")
    base_prov = json.loads((base / "famlib_provenance.json").read_text())
    tok = AutoTokenizer.from_pretrained(str(base))
    # the data recipe: the family's training languages, or (data="dense") every family's at once; with
    # replay, a share of English train-split text in place of as much of it (its own folder: the plain set
    # stays for the strategies that read it)
    data_family = family if entry.data == "family" else None
    share = params.replay.share if entry.replay else 0.0
    data_dir = paths.data_dir(params.scale, (data_family or "dense") + ("-replay" if share else ""))
    sets = main_first(lambda: build_cpt_set(params, corpus, tok, data_family, data_dir, replay=share),
                      "packing the token sets")
    return base, base_prov, tok, sets


def _write_outputs(model, tok, out: Path, record: dict, train_dir: Path, dtype: str) -> None:
    """Write the model (when ``model`` is given) and its provenance, then delete the run's checkpoints.

    Trimmed runs write the full-vocabulary model here, adapter runs the merged model; models trained in another
    dtype than the base's (fp32 master weights) are stored in the base's (bf16 at paper scale). The provenance
    comes last: it is what says the job is done.
    """
    if model is not None:
        from famlib.checkpoint import atomic_directory

        with atomic_directory(out) as tmp:
            model.to(getattr(torch, dtype)).save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
    atomic_write_json(out / "famlib_provenance.json", record)
    shutil.rmtree(train_dir / "checkpoints", ignore_errors=True)


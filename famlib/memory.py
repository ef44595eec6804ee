"""How much accelerator memory one training process needs, per strategy, before a GPU is rented.

Why: the paper scale trains gemma-3-4b-pt (3.9B parameters, a 262,208-word tied head) at 4 x 2,048 tokens per
micro-step; whether that fits an 80 GB card or needs an H200 (141 GB) depends on the strategy (how much
trains, whether L2-SP holds anchors), the master weights' dtype, gradient checkpointing and the head. ``famlib
memory --scale paper`` prints the estimate for every trained strategy, and the README quotes it.

What is counted, per process (single GPU; FSDP would divide the static part by the GPUs):

* **weights** ``N x`` the master dtype's bytes (``training.*.master_dtype``); **gradients** and AdamW's two
  **moments** ``x`` the same for the trainable parameters only (torch keeps both in the parameters' dtype;
  frozen parameters have neither); **anchors**: L2-SP's copy of the anchored parameters, in the base's dtype
  (:mod:`famlib.strategies.l2sp`). The counts come from the model built on the meta device with famlib's
  layer rule (:func:`famlib.strategies.rules.is_trainable`, :func:`famlib.layers.l2sp_lambda`): exact.
* **bf16 weight copies**: under bf16 autocast with fp32 master weights, every matrix product casts its
  weight to bf16 and autocast caches the copies of trainable weights for the whole forward: 2 bytes per
  trainable matrix parameter.
* **activations**: the tensors autograd saves for the backward, *measured*, not modelled: one and two decoder
  layers of the real widths run on the CPU for 8 and 16 tokens in the run's dtype and autocast, with
  ``saved_tensors_hooks`` summing the distinct storages saved (:func:`activation_profile`); the differences
  give the bytes per token and layer, per token outside the layers, and per layer (bf16 weight copies saved
  for the backward), which scale exactly with the tokens of a micro-batch and the layers. (Not on the meta
  device: it runs neither autocast nor the fused attention path, and saves different tensors.) The attention
  runs as with ``sdpa``/flash attention, without a sequence-squared matrix. With gradient checkpointing each
  layer keeps its input, and one layer at a time is recomputed in full during the backward.
* **backward workspace**: the gradients of one layer's activations while it is differentiated (taken equal
  to one layer's saved activations), and, when the embeddings train, the dense ``V x H`` gradient that the
  embedding's backward makes before it is added to the tied head's.
* **logits**: the plain loss holds the micro-batch's logits (bf16 under autocast), their fp32 upcast and the
  fp32 log-probabilities, and in the backward two fp32 gradients of that size: taken as 12 bytes per token
  and vocabulary entry at the peak (10 for fp32 logits). The chunked head (``training.*.loss_chunk``,
  :mod:`famlib.loss`) holds ``chunk x V`` values at a time: fp32 logits turned into probabilities in place,
  their bf16 copy and the bf16 logits of the product, 8 bytes each, plus the head's gradient accumulated in
  fp32 (4 bytes per head parameter) and rounded to the weights' dtype at the end of the forward (both exist
  for a moment).

Not counted: the CUDA context and allocator fragmentation (add 2-4 GB and 5-10 %); the ``margin`` printed
beside each total is 10 % plus 3 GB for that. The estimate is checked here against the measured saved
tensors (tests/test_memory.py); on a GPU, ``benchmarks/bench_gpu_cpt.py`` and a paper-shape step measure the
real peak (not yet run: no GPU has been lent to this project's sessions).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional
from unittest import mock

GB = 1e9
GPUS = {"80 GB": 80e9, "H200 141 GB": 141e9}  # usable bytes of the cards the README names
PROBE_TOKENS = (8, 16)


@dataclass(frozen=True)
class ActivationProfile:
    """Bytes autograd saves, measured at a model's widths (see :func:`activation_profile`)."""

    per_token_layer: float  # per token and decoder layer
    per_token_fixed: float  # per token, outside the decoder layers (embeddings, final norm)
    per_layer: float  # per decoder layer, independent of tokens (bf16 weight copies saved under autocast)


@dataclass(frozen=True)
class Estimate:
    """One strategy's memory, in bytes, by part (``parts``), and the settings it was computed for."""

    strategy: str
    parts: dict[str, float]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.parts.values())

    @property
    def with_margin(self) -> float:
        return self.total * 1.10 + 3e9

    def fits(self, capacity: float) -> bool:
        return self.with_margin <= capacity


def _mask_free():
    """Patch Gemma 3's mask builders to None for the probe: sdpa then runs causal without a mask tensor, as
    flash attention does on a GPU (a materialised mask is not what a GPU run holds)."""
    import transformers.models.gemma3.modeling_gemma3 as g3

    stack = contextlib.ExitStack()
    for name in ("create_causal_mask", "create_sliding_window_causal_mask"):
        if hasattr(g3, name):
            stack.enter_context(mock.patch.object(g3, name, lambda **kwargs: None))
    return stack


def saved_bytes(model, input_ids, autocast: bool) -> int:
    """Bytes of the distinct storages autograd saves in ``model.model``'s forward, parameters left out."""
    import torch

    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        seen[s.data_ptr()] = max(seen.get(s.data_ptr(), 0), s.nbytes())
        return t

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    with _mask_free(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            model.model(input_ids=input_ids, use_cache=False)
    return sum(n for ptr, n in seen.items() if ptr not in params)


def _probe_model(config, dtype: str, checkpointing: bool):
    import torch
    from transformers import Gemma3ForCausalLM

    cfg = copy.deepcopy(config)
    cfg.vocab_size = 64  # the embedding's size does not change what the layers save
    cfg.num_hidden_layers = 2
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = list(cfg.layer_types[:2])
    cfg._attn_implementation = "sdpa"
    with torch.device("meta"):
        model = Gemma3ForCausalLM(cfg)
    model = model.to_empty(device="cpu").to(getattr(torch, dtype))
    with torch.no_grad():
        for t in [*model.parameters(), *model.buffers()]:
            t.zero_()  # values do not matter, only shapes and dtypes; zeros avoid garbage (NaN, denormals)
    model.train()
    if checkpointing:
        from famlib.train import _activation_checkpointing

        _activation_checkpointing(model, True)  # as train() switches it on (non-reentrant)
    return model


@functools.lru_cache(maxsize=16)
def _profile(config_json: str, dtype: str, autocast: bool, checkpointing: bool) -> ActivationProfile:
    import torch
    from transformers import Gemma3TextConfig

    model = _probe_model(Gemma3TextConfig.from_dict(__import__("json").loads(config_json)), dtype, checkpointing)
    layers = model.model.layers
    s = {}
    for n in (1, 2):
        model.model.layers = layers[:n]
        model.config.num_hidden_layers = n
        for t in PROBE_TOKENS:
            s[n, t] = saved_bytes(model, torch.zeros(1, t, dtype=torch.long), autocast)
    t1, t2 = PROBE_TOKENS
    per_token_layer = (s[2, t2] - s[1, t2] - s[2, t1] + s[1, t1]) / (t2 - t1)
    per_layer = s[2, t1] - s[1, t1] - per_token_layer * t1
    per_token_fixed = (s[1, t2] - s[1, t1]) / (t2 - t1) - per_token_layer
    return ActivationProfile(per_token_layer, per_token_fixed, per_layer)


def activation_profile(config, dtype: str = "float32", autocast: bool = False,
                       checkpointing: bool = False) -> ActivationProfile:
    """What autograd saves per token and layer for ``config``'s widths, measured on the CPU (a second or two).

    ``dtype`` is the weights' dtype, ``autocast`` bf16 autocast (as ``training.*.bf16`` with fp32 master
    weights). Memoised per configuration.
    """
    return _profile(config.to_json_string(use_diff=False), dtype, bool(autocast), bool(checkpointing))


def strategy_counts(config, params, strategy: str) -> dict[str, int]:
    """What ``strategy`` trains of the model ``config`` (on the meta device: no weights, no memory).

    Keys: total, trainable, trainable_matrices, anchored (held by L2-SP), embedding, embedding_trains (0/1).
    """
    from famlib.layers import l2sp_lambda, meta_model
    from famlib.strategies.rules import is_trainable
    from famlib.strategies.registry import get

    model = meta_model(config)
    L, m, n = config.num_hidden_layers, params.layers.first, params.layers.last
    regularised = get(strategy).regulariser is not None
    out = dict.fromkeys(("total", "trainable", "trainable_matrices", "anchored"), 0)
    for name, p in model.named_parameters():
        out["total"] += p.numel()
        if not is_trainable(name, strategy, L, m, n):
            continue
        out["trainable"] += p.numel()
        out["trainable_matrices"] += p.numel() if p.dim() >= 2 else 0
        if regularised and l2sp_lambda(name, params.l2sp, L, m, n) > 0:
            out["anchored"] += p.numel()
    emb = model.get_input_embeddings().weight
    out["embedding"] = emb.numel()
    out["embedding_trains"] = int(is_trainable("model.embed_tokens.weight", strategy, L, m, n))
    return out


def estimate(config, params, strategy: str, *, batch_size: Optional[int] = None, seq_len: Optional[int] = None,
             overrides: Optional[Mapping[str, Any]] = None) -> Estimate:
    """Peak memory of one training process of ``strategy`` at ``params``' settings (its training section).

    ``overrides`` replaces fields of the training section (``{"loss_chunk": None}``, ``{"master_dtype":
    "float32"}``, ``{"gradient_checkpointing": False}``) to show what a switch is worth.
    """
    import dataclasses

    from famlib.strategies.registry import get

    entry = get(strategy)
    cfg = getattr(params.training, entry.training)
    cfg = dataclasses.replace(cfg, **(overrides or {}))
    B = batch_size or cfg.batch_size
    S = seq_len or params.data.seq_len
    T = B * S
    w = 4 if cfg.master_dtype == "float32" else 2
    autocast = bool(cfg.bf16) and w == 4
    anchor_bytes = 4 if params.model.dtype == "float32" else 2
    c = strategy_counts(config, params, strategy)
    V, H, L = config.vocab_size, config.hidden_size, config.num_hidden_layers
    full = activation_profile(config, cfg.master_dtype, autocast, checkpointing=False)
    parts = {
        "weights": c["total"] * w,
        "gradients": c["trainable"] * w,
        "optimiser (AdamW, 2 moments)": 2 * c["trainable"] * w,
        "L2-SP anchors": c["anchored"] * anchor_bytes,
        "bf16 weight copies (autocast)": 2 * c["trainable_matrices"] if autocast else 0,
    }
    layer = full.per_token_layer * T  # one layer's saved activations for this micro-batch
    if cfg.gradient_checkpointing:
        ck = activation_profile(config, cfg.master_dtype, autocast, checkpointing=True)
        acts = L * ck.per_token_layer * T + ck.per_token_fixed * T + layer + full.per_layer
    else:
        acts = L * layer + full.per_token_fixed * T + L * full.per_layer
    parts["activations"] = acts
    parts["backward workspace"] = layer + (c["embedding"] * w if c["embedding_trains"] else 0)
    if cfg.loss_chunk is None:
        parts["logits (whole micro-batch)"] = T * V * (12 if (autocast or w == 2) else 10)
    else:
        parts["logits (chunked head)"] = (min(cfg.loss_chunk, T) * V * 8
                                          + (c["embedding"] * (4 + w) if c["embedding_trains"] else 0))
    settings = {"batch_size": B, "seq_len": S, "master_dtype": cfg.master_dtype, "bf16_autocast": autocast,
                "gradient_checkpointing": cfg.gradient_checkpointing, "loss_chunk": cfg.loss_chunk,
                "anchors": params.model.dtype, "parameters": c["total"], "trainable": c["trainable"],
                "anchored": c["anchored"]}
    return Estimate(strategy, parts, settings)


def model_config(params):
    """The text config of a scale's model: the base's ``config.json`` if built, else from the params alone."""
    from famlib.errors import ConfigError
    from famlib.naming import model_path

    base = model_path(params, "base") / "config.json"
    if base.exists():
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(str(base.parent))
        return getattr(cfg, "text_config", cfg)
    if params.model.kind == "scratch":
        from famlib.models import scratch_config

        return scratch_config(params.model.architecture, params.tokenizer.vocab_size)
    if params.model.kind == "hub" and params.model.id == "google/gemma-3-4b-pt":
        from famlib.models import gemma3_4b_text_config

        return gemma3_4b_text_config()
    raise ConfigError(params.origin, "model.kind", params.model.kind,
                      "'scratch', or 'hub' with id google/gemma-3-4b-pt, when the base is not built yet",
                      f"Build the base first (famlib base --scale {params.scale}): the estimate reads its config.json.")


def table(params, strategies=None, overrides: Optional[Mapping[str, Any]] = None) -> tuple[list[Estimate], str]:
    """Estimates of the trained strategies (or ``strategies``) and a Markdown table of them."""
    from famlib.strategies.registry import names

    config = model_config(params)
    chosen = [s for s in (strategies or params.strategy_names) if s in names("trained")]
    rows = [estimate(config, params, s, overrides=overrides) for s in chosen]
    keys = list(dict.fromkeys(k for r in rows for k in r.parts))
    unit, uname = (GB, "GB") if any(r.total >= GB for r in rows) else (1e6, "MB")
    head = [f"part ({uname})"] + [r.strategy for r in rows]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in keys:
        lines.append("| " + " | ".join([k] + [f"{r.parts.get(k, 0) / unit:.1f}" for r in rows]) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r.total / unit:.1f}**" for r in rows) + " |")
    lines.append("| with margin (+10 % + 3 GB) | " + " | ".join(f"{r.with_margin / unit:.1f}" for r in rows) + " |")
    for gpu, cap in GPUS.items():
        lines.append(f"| fits {gpu} | " + " | ".join("yes" if r.fits(cap) else "**no**" for r in rows) + " |")
    s = rows[0].settings if rows else {}
    note = (f"{params.scale}: {s.get('parameters', 0) / 1e9:.2f}B parameters, micro-batch {s.get('batch_size')} x "
            f"{s.get('seq_len')}, master weights {s.get('master_dtype')}"
            f"{' + bf16 autocast' if s.get('bf16_autocast') else ''}, gradient checkpointing "
            f"{'on' if s.get('gradient_checkpointing') else 'off'}, loss_chunk {s.get('loss_chunk')}, "
            f"anchors {s.get('anchors')}") if rows else f"{params.scale}: no trained strategy"
    return rows, note + "\n\n" + "\n".join(lines)


# What each switch is worth: (label, training-section overrides); the first is the params file as it is.
VARIANTS = (
    ("as configured", {}),
    ("fp32 master weights (bf16 autocast)", {"master_dtype": "float32"}),
    ("fp32 master weights, plain loss", {"master_dtype": "float32", "loss_chunk": None}),
    ("bf16 master weights, plain loss", {"master_dtype": "bfloat16", "loss_chunk": None}),
    ("as configured, no gradient checkpointing", {"gradient_checkpointing": False}),
)


def variants_table(params, strategies=None) -> str:
    """Totals with margin (GB) per strategy under each of :data:`VARIANTS`, and which GPUs they fit."""
    config = model_config(params)
    from famlib.strategies.registry import names

    chosen = [s for s in (strategies or params.strategy_names) if s in names("trained")]
    lines = ["| settings | " + " | ".join(chosen) + " |", "|" + "---|" * (len(chosen) + 1)]
    for label, over in VARIANTS:
        cells = []
        for s in chosen:
            e = estimate(config, params, s, overrides=over)
            fit = "H200" if not e.fits(GPUS["80 GB"]) and e.fits(GPUS["H200 141 GB"]) else (
                "80 GB" if e.fits(GPUS["80 GB"]) else "neither")
            cells.append(f"{e.with_margin / GB:.0f} GB ({fit})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

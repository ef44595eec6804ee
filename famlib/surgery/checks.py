"""Guard clauses run before any weight is read: architecture, tokenizer, tensor names, shapes, layer split.

Every refusal names the files or tensor and both values, so that the fix is obvious from the message.
"""

from __future__ import annotations

import math
import re
from typing import Optional, Sequence

from famlib.errors import near, one_of
from famlib.layers import LAYER_GROUPS, OUTSIDE, LayerError, group_of, layer_groups
from famlib.surgery.errors import SurgeryError
from famlib.surgery.io import TensorInfo, TensorSource

# Config fields two models must share to be combined tensor by tensor (looked up in text_config too).
ARCH_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "tie_word_embeddings")
SHOW = 5  # how many names a message lists before "..."


def _listing(items: Sequence[str]) -> str:
    items = list(items)
    more = f" ... ({len(items) - SHOW} more)" if len(items) > SHOW else ""
    return ", ".join(items[:SHOW]) + more


def _where(role: str, source: TensorSource) -> str:
    return f"{role} {source.label}"


def tied_head_names(source: TensorSource) -> list[str]:
    """The output-head tensors that a tied model does not store (they are the embedding matrix)."""
    if not (source.tied and source.drops_tied_head):
        return []
    return [n for n in source.names() if n == "lm_head.weight" or n.endswith(".lm_head.weight")]


def check_architecture(sources: Sequence[TensorSource], roles: Sequence[str]) -> None:
    """Raise SurgeryError if ``model_type``, ``num_hidden_layers``, ``hidden_size`` or tying differ."""
    ref, ref_role = sources[0], roles[0]
    for key in ARCH_KEYS:
        want = ref.tied if key == "tie_word_embeddings" else ref.arch(key)
        for s, role in zip(sources[1:], roles[1:]):
            got = s.tied if key == "tie_word_embeddings" else s.arch(key)
            if got != want:
                raise SurgeryError(f"different architectures: {key} is {want!r} in {_where(ref_role, ref)}/config.json "
                                   f"but {got!r} in {_where(role, s)}/config.json; weight surgery combines models "
                                   "of one architecture only")


def check_tokenizers(sources: Sequence[TensorSource], roles: Sequence[str]) -> None:
    """Raise SurgeryError if the vocabulary files differ (an embedding row must mean the same token in all).

    Directories are compared with the first one; a directory without tokenizer files cannot be compared
    with one that has them and is refused too (models without any tokenizer files pass).
    """
    pairs = [(s, r) for s, r in zip(sources, roles) if hasattr(s, "tokenizer_fingerprint")]
    if len(pairs) < 2:
        return
    (ref, ref_role), ref_fp = pairs[0], pairs[0][0].tokenizer_fingerprint()
    for s, role in pairs[1:]:
        fp = s.tokenizer_fingerprint()
        if fp == ref_fp:
            continue
        if not fp or not ref_fp:
            (has, has_fp, has_role), (lacks, lacks_role) = (
                ((ref, ref_fp, ref_role), (s, role)) if ref_fp else ((s, fp, role), (ref, ref_role)))
            raise SurgeryError(f"tokenizers cannot be compared: {_where(lacks_role, lacks)} has no tokenizer files "
                               f"but {_where(has_role, has)} has {', '.join(sorted(has_fp))}; copy the tokenizer "
                               "the model was trained with into its directory")
        name = (sorted(set(fp) ^ set(ref_fp)) or sorted(k for k in fp if fp[k] != ref_fp[k]))[0]
        sizes = ""
        if name == "tokenizer.json" and name in fp and name in ref_fp:
            sizes = f" ({ref.vocab_size_of_tokenizer()} vs {s.vocab_size_of_tokenizer()} tokens)"
        raise SurgeryError(
            f"tokenizers differ: {name} of {_where(ref_role, ref)} (sha256 {ref_fp.get(name, 'absent')[:12]}) vs "
            f"{_where(role, s)} (sha256 {fp.get(name, 'absent')[:12]}){sizes}; models with different "
            "vocabularies cannot be combined row by row")


def check_tensors(sources: Sequence[TensorSource], roles: Sequence[str]) -> list[tuple[str, TensorInfo]]:
    """Check that every input has the same tensor names, shapes and dtypes; return the output plan.

    A tied head (``lm_head.weight`` with ``tie_word_embeddings``) is left out, as transformers stores it.

    Returns:
        ``[(name, info)]`` in a stable, layer-wise order.

    Raises:
        SurgeryError: names differ (the first few on each side are listed), or tensors differ in shape or
            dtype (each named with both values).
    """
    ref, ref_role = sources[0], roles[0]
    skip = [set(tied_head_names(s)) for s in sources]
    ref_names = set(ref.names()) - skip[0]
    for s, role, sk in zip(sources[1:], roles[1:], skip[1:]):
        names = set(s.names()) - sk
        if names != ref_names:
            only_ref, only_s = sorted(ref_names - names, key=_natural), sorted(names - ref_names, key=_natural)
            parts = []
            if only_ref:
                parts.append(f"{len(only_ref)} only in {ref_role}: {_listing(only_ref)}")
            if only_s:
                parts.append(f"{len(only_s)} only in {role}: {_listing(only_s)}")
            raise SurgeryError(f"different tensor names in {_where(ref_role, ref)} and {_where(role, s)}: "
                               + "; ".join(parts))
    plan = [(n, ref.info(n)) for n in sorted(ref_names, key=_natural)]
    for s, role in zip(sources[1:], roles[1:]):
        shapes = [f"{n} {i.shape} vs {s.info(n).shape}" for n, i in plan if s.info(n).shape != i.shape]
        if shapes:
            raise SurgeryError(f"{len(shapes)} tensor(s) differ in shape between {_where(ref_role, ref)} and "
                               f"{_where(role, s)}: {_listing(shapes)}")
        dtypes = [f"{n} {i.dtype} vs {s.info(n).dtype}" for n, i in plan if s.info(n).dtype != i.dtype]
        if dtypes:
            raise SurgeryError(f"{len(dtypes)} tensor(s) differ in dtype between {_where(ref_role, ref)} and "
                               f"{_where(role, s)}: {_listing(dtypes)}; convert one model so that both are stored "
                               "in the same dtype")
    return plan


def _natural(name: str) -> list:
    # model.layers.2 before model.layers.10: numbers compare as numbers
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


def resolve_split(source: TensorSource, role: str, num_layers: Optional[int], first: Optional[int],
                  last: Optional[int], operation: str) -> tuple[int, int, int]:
    """The ``(num_layers, first, last)`` split of a model, checked against its config.

    Raises:
        SurgeryError: the split is missing, ``num_layers`` disagrees with the config, or the split does
            not fit the model's depth.
    """
    cfg_layers = source.num_layers
    if num_layers is None:
        if cfg_layers is None:
            raise SurgeryError(f"{_where(role, source)}/config.json has no num_hidden_layers; pass num_layers")
        num_layers = cfg_layers
    elif cfg_layers is not None and num_layers != cfg_layers:
        raise SurgeryError(f"num_layers={num_layers} but {_where(role, source)}/config.json has num_hidden_layers="
                           f"{cfg_layers}; the layer split must be the one of this model (take it from its "
                           "params file with --scale, or pass the matching --first/--last)")
    if first is None or last is None:
        raise SurgeryError(f"{operation} needs the layer split: first (m) and last (n) decoder layers, e.g. "
                           "--first 3 --last 2, or --scale S to take them from params/S.yaml")
    try:
        layer_groups(num_layers, first, last)
    except LayerError as exc:
        raise SurgeryError(f"layer split first={first}, last={last} does not fit {_where(role, source)} "
                           f"({num_layers} decoder layers): {exc}") from None
    return num_layers, first, last


def tensor_groups(plan: Sequence[tuple[str, TensorInfo]], split: tuple[int, int, int], source: TensorSource,
                  role: str) -> dict[str, str]:
    """``{name: first|middle|last|outside}`` via :func:`famlib.layers.group_of`; a layer beyond the depth is refused."""
    out = {}
    for name, _ in plan:
        try:
            out[name] = group_of(name, *split)
        except LayerError as exc:
            raise SurgeryError(f"{_where(role, source)}: {exc}") from None
    return out


def check_layer_groups(groups, operation: str, allowed: Sequence[str] = LAYER_GROUPS) -> tuple[str, ...]:
    """Normalise ``'first,middle'`` or a list to a tuple of known groups. Raises SurgeryError."""
    if isinstance(groups, str):
        groups = [g.strip() for g in groups.split(",") if g.strip()]
    chosen = tuple(dict.fromkeys(groups or ()))
    if not chosen:
        raise SurgeryError(f"{operation}: name the layer groups to change, some of {list(allowed)}")
    for g in chosen:
        if g == OUTSIDE:
            raise SurgeryError(f"{operation}: group 'outside' (embeddings, final norm, head) cannot be named: "
                               f"{operation} changes decoder-layer groups only and outside parameters keep the "
                               f"tuned values (famlib.layers); {one_of(allowed)}")
        if g not in allowed:
            raise SurgeryError(f"{operation}: group {g!r} is not allowed; {one_of(allowed)}. {near(g, allowed)}".rstrip())
    return chosen


def check_alpha(alpha, allow_extrapolation: bool) -> float:
    """A finite alpha in [0, 1] (any finite value with ``allow_extrapolation``). Raises SurgeryError."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise SurgeryError(f"alpha={alpha!r}: expected a number in [0, 1]") from None
    if not math.isfinite(a):
        raise SurgeryError(f"alpha={alpha!r}: expected a finite number in [0, 1]")
    if not allow_extrapolation and not 0.0 <= a <= 1.0:
        raise SurgeryError(f"alpha={a:g} is outside [0, 1]: 0 gives the base group, 1 the tuned group; values "
                           "beyond extrapolate the drift (pass allow_extrapolation=True / --allow-extrapolation "
                           "if that is what you want)")
    return a


def check_weights(weights, n: int) -> tuple[float, ...]:
    """One finite, non-negative weight per model with a positive total (default: all 1). Raises SurgeryError."""
    if weights is None:
        return (1.0,) * n
    if isinstance(weights, str):
        weights = [w for w in weights.replace(",", " ").split()]
    try:
        ws = tuple(float(w) for w in weights)
    except (TypeError, ValueError):
        raise SurgeryError(f"weights={weights!r}: expected {n} numbers") from None
    if len(ws) != n:
        raise SurgeryError(f"{len(ws)} weights {list(ws)} for {n} models: give one weight per model, in order")
    for i, w in enumerate(ws):
        if not math.isfinite(w) or w < 0:
            raise SurgeryError(f"weight {i + 1} of {list(ws)} is {w:g}: weights must be finite and non-negative")
    if not sum(ws) > 0:
        raise SurgeryError(f"weights {list(ws)} sum to {sum(ws):g}: the total must be positive")
    return ws

"""Vocabulary trimming for continual pretraining on a CPU.

Gemma 3 has a 262,144-token vocabulary. In gemma-3-270m the (tied) embedding table is 168M of the 268M
parameters, and every training token pays for a 640 x 262,144 output projection, a 262,144-way softmax,
and every optimiser step for an AdamW update of the whole table. A CPT set of a few language families uses
only a small fraction of those ids. Training on a model whose embedding table (and output head) holds only
the rows of the ids that occur in the data removes most of that cost; afterwards the trained rows are
written back into the full table, so the result is again a normal full-vocabulary checkpoint.

Use::

    with trimmed_for_training(model, train_tokens, val_tokens, tokenizer) as (tmodel, train_t, val_t):
        reg, counts = apply_strategy(params, strategy, tmodel)      # freeze / L2-SP on the trimmed model
        train(tmodel, train_t, val_t, cfg, run_dir, ..., save_model_dir=False)
    model.save_pretrained(out)   # full vocabulary: trained layers + trained rows, other rows = base

or the pieces: :func:`used_token_ids`, :func:`trim_model` (returns a :class:`TrimmedVocab` with
``remap``), :func:`untrim_into` and :func:`export_full`.

Measured (``benchmarks/bench_small_cpt.py``, gemma-3-270m, the small scale's romance CPT set, batch 4 x 128,
5 steps of the family settings, 1 thread): kept vocabulary 11,817 of 262,144 ids (families 6,215-11,817;
Dense 37,094); 2.65x the tokens/s of full-vocabulary float32 training (4.3x with bf16 autocast, against
1.6x for full-vocabulary bf16), peak memory 4.7 GB instead of 6.6 GB. After the 5 steps the held-out loss
over the kept ids was the same for full and trimmed training (4.59488 vs 4.59490 nats) while the
full-vocabulary loss differed by 0.014 nats (4.7382 vs 4.7519): the base puts ``-log(1 - p_dropped)`` =
0.154 nats/token on never-seen ids; full training took it down to 0.143, trimmed training left it at 0.157.
That is the whole difference (point 1 below).

What is exact
-------------
* Forward: the trimmed model's logits on remapped ids equal the full model's logits restricted to the kept
  columns (the layers, the scaled embedding lookup and the head are the same computation on the same rows;
  tested to 1e-5).
* Export: rows of dropped ids leave :func:`untrim_into` bit-identical to the base; kept rows and every other
  tensor (layers, norms) are the trained values.
* Special ids: ``pad``/``bos``/``eos``/``unk`` in the config and generation config, and the embedding's
  ``padding_idx`` (the row that gets no gradient through the input lookup), are remapped, so the trimmed
  model treats them exactly as the full one does.

What changes: the objective (the honest trade-off)
--------------------------------------------------
Training a trimmed model is **not** the same optimisation as full-vocabulary CPT; it is a different (and
cheaper) objective that is close to it:

1. *The softmax runs over the kept ids only.* For a target ``t`` with logits ``z``, the full loss is
   ``-z_t + log sum_{all v} exp z_v``; the trimmed loss drops the never-seen ids from the sum. The
   difference, ``log(1 + sum_dropped exp z_v / sum_kept exp z_v) = -log(1 - p_dropped)``, is the probability
   mass the model puts on tokens that never occur in the data: it is >= 0, so a trimmed loss is always a
   little *lower* than the full loss of the same weights, and the model is never trained to push that mass
   down. The gradients differ only through that denominator: on the hidden states (and so on every
   layer) the full gradient is ``sum_v p_v e_v - e_t`` over all ids, the trimmed one the same sum over the
   kept ids with their probabilities renormalised; the dropped rows get ``p_v h`` (tied head) in full
   training and nothing in trimmed training. Exactly: training the trimmed model *is* training the full
   model with the softmax restricted to the kept ids (tested: equal gradients).
2. *Dropped rows do not move at all.* With full-vocabulary AdamW they move even though their gradient is
   tiny: Adam normalises it, so every row with a non-zero softmax gradient moves by about ``lr`` per element
   and step, and decoupled weight decay shrinks all rows by ``lr * weight_decay`` per step. With trimming
   they stay at the base's values. For the paper's question (forgetting) this is a conservative choice:
   tokens of languages outside the CPT data keep the base's embeddings, where full CPT would let them
   drift -- but it *is* a difference from the paper's setup, so results trained with trimming are labelled
   as such.
3. *It interacts with what the paper measures.* Part of what full-vocabulary CPT learns is to take
   probability away from tokens absent from the CPT data, and those include the tokens of held-out
   languages (and English-only tokens). Trimmed CPT never learns that, so by construction it cannot show
   that part of the forgetting: compare strategies only among runs trained the same way, and keep
   full-vocabulary runs as the reference for the paper's figures.
4. *Logged losses are trimmed losses.* ``train()``'s train and validation losses (and therefore early
   stopping and the choice of the best checkpoint) are computed over the kept vocabulary. They are
   comparable between steps of one run, not with a full-vocabulary run's numbers; evaluate the exported
   full model for comparable figures.

Dropped ids must never occur in the training or validation arrays (``remap`` refuses them, naming the
id), which is why :func:`used_token_ids` collects the ids from the very arrays that will be trained on.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, MutableMapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from famlib.errors import FamlibError

__all__ = [
    "SPECIAL_TOKEN_ATTRS",
    "TrimmedVocab",
    "VocabError",
    "export_full",
    "trim_model",
    "trimmed_for_training",
    "untrim_into",
    "used_token_ids",
]

# The tokenizer's special ids always kept by used_token_ids (whether or not the data contains them).
SPECIAL_TOKEN_ATTRS: tuple[str, ...] = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id")
# Config / generation-config fields holding token ids, remapped in the trimmed model.
_CONFIG_ID_FIELDS: tuple[str, ...] = ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id",
                                      "decoder_start_token_id")
_CHUNK = 1 << 22  # tokens per chunk when scanning or remapping (memory maps of any size, bounded memory)

TokenArray = Union[np.ndarray, Sequence[int]]


class VocabError(FamlibError, ValueError):
    """Bad keep ids, a token that the trimmed vocabulary does not hold, or models that do not match."""


# ----------------------------------------------------------------------------------------------------
# Which ids to keep
# ----------------------------------------------------------------------------------------------------
def used_token_ids(token_arrays: Union[TokenArray, Iterable[Optional[TokenArray]]], tokenizer: Any = None,
                   extra: Iterable[int] = ()) -> np.ndarray:
    """Sorted unique token ids occurring in ``token_arrays``, plus the tokenizer's special ids and ``extra``.

    Args:
        token_arrays: one integer array (any shape; ``np.memmap`` is fine, it is read in chunks) or an
            iterable of them (``None`` entries are skipped, e.g. a missing validation set).
        tokenizer: optional; its ``bos``/``eos``/``pad``/``unk`` token ids (those that are set) are added.
        extra: further ids to keep (e.g. ids a caller wants the trimmed model to be able to predict).

    Returns:
        A 1-D ``int64`` array, sorted, without duplicates.

    Raises:
        VocabError: a non-integer array or a negative id.
    """
    if isinstance(token_arrays, np.ndarray):
        token_arrays = [token_arrays]
    parts: list[np.ndarray] = []
    for i, arr in enumerate(token_arrays):
        if arr is None:
            continue
        a = np.asarray(arr) if not isinstance(arr, np.ndarray) else arr
        if a.size == 0:
            continue
        if a.dtype.kind not in "ui":
            raise VocabError(f"token array {i} has dtype {a.dtype}; allowed: an integer dtype (uint16, uint32, "
                             "int64)")
        flat = a.reshape(-1)
        for start in range(0, flat.size, _CHUNK):
            parts.append(np.unique(flat[start:start + _CHUNK]))
    specials = []
    if tokenizer is not None:
        specials = [getattr(tokenizer, attr, None) for attr in SPECIAL_TOKEN_ATTRS]
    specials = [int(s) for s in specials if s is not None]
    extra = list(extra)
    for e in extra:
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
            raise VocabError(f"extra id {e!r} is not an integer")
    parts.append(np.asarray(specials + [int(e) for e in extra], dtype=np.int64))
    ids = np.unique(np.concatenate([p.astype(np.int64, copy=False) for p in parts]))
    if ids.size and ids[0] < 0:
        raise VocabError(f"token id {int(ids[0])} is negative; token ids are >= 0")
    return ids


# ----------------------------------------------------------------------------------------------------
# The trimmed model
# ----------------------------------------------------------------------------------------------------
@dataclass
class TrimmedVocab:
    """A model trimmed to ``keep_ids`` and the id maps between the full and the trimmed vocabulary.

    ``model`` has ``len(keep_ids)`` embedding rows (and head rows); new id ``i`` is old id ``keep_ids[i]``.
    ``old_to_new[old]`` is the new id, or -1 for a dropped id.
    """

    model: nn.Module
    keep_ids: np.ndarray  # int64 [N], sorted: new id -> old id
    old_to_new: np.ndarray  # int32 [full_vocab_size]: old id -> new id, -1 if dropped
    full_vocab_size: int

    @property
    def vocab_size(self) -> int:
        """Rows of the trimmed embedding table."""
        return int(self.keep_ids.size)

    def remap(self, tokens: TokenArray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Map full-vocabulary ids to trimmed ids (same shape; ``uint16`` if the trimmed vocabulary fits, else
        ``uint32``), chunk by chunk, so a memory-mapped token file of any size can be remapped.

        Args:
            tokens: an integer array of full-vocabulary ids.
            out: optional preallocated integer array (or writable memmap) of the same shape to write into.

        Raises:
            VocabError: an id outside the full vocabulary, or an id that was not kept (the message names it and
                how many tokens are affected).
        """
        a = np.asarray(tokens) if not isinstance(tokens, np.ndarray) else tokens
        if a.dtype.kind not in "ui":
            raise VocabError(f"tokens have dtype {a.dtype}; allowed: an integer dtype")
        if out is None:
            out = np.empty(a.shape, dtype=np.uint16 if self.vocab_size <= 1 << 16 else np.uint32)
        elif out.shape != a.shape or out.dtype.kind not in "ui":
            raise VocabError(f"out has shape {out.shape} and dtype {out.dtype}; need shape {a.shape}, integer dtype")
        src, dst = a.reshape(-1), out.reshape(-1)
        for start in range(0, src.size, _CHUNK):
            chunk = src[start:start + _CHUNK].astype(np.int64, copy=False)
            if chunk.size and (chunk.min() < 0 or chunk.max() >= self.full_vocab_size):
                bad = chunk[(chunk < 0) | (chunk >= self.full_vocab_size)]
                raise VocabError(f"token id {int(bad[0])} is outside the full vocabulary of "
                                 f"{self.full_vocab_size} ids ({bad.size} such tokens in this chunk)")
            new = self.old_to_new[chunk]
            if (new < 0).any():
                missing = np.unique(chunk[new < 0])
                raise VocabError(
                    f"token id {int(missing[0])} occurs in the tokens but is not in the trimmed vocabulary "
                    f"({missing.size} distinct dropped ids occur, e.g. {missing[:8].tolist()}); build keep_ids "
                    "with used_token_ids() over every array you will remap")
            dst[start:start + _CHUNK] = new
        return out

    def unmap(self, ids: TokenArray) -> np.ndarray:
        """Map trimmed ids back to full-vocabulary ids (``int64``)."""
        a = np.asarray(ids, dtype=np.int64)
        if a.size and (a.min() < 0 or a.max() >= self.vocab_size):
            bad = int(a[(a < 0) | (a >= self.vocab_size)][0])
            raise VocabError(f"trimmed id {bad} is outside 0..{self.vocab_size - 1}")
        return self.keep_ids[a]

    def untrim_into(self, full: Union[nn.Module, MutableMapping[str, torch.Tensor]]):
        """Write this model's weights into a full-vocabulary model or state dict; see :func:`untrim_into`."""
        if isinstance(full, nn.Module):
            rows = _vocab_modules(full)[0].weight.shape[0]
            if rows != self.full_vocab_size:
                raise VocabError(f"the full model has {rows} embedding rows, but this vocabulary was trimmed from "
                                 f"{self.full_vocab_size}")
        return untrim_into(self.model, full, self.keep_ids)

    def export_full(self, base: Union[str, Path, nn.Module], out_dir: Union[str, Path, None] = None,
                    tokenizer: Any = None) -> nn.Module:
        """The full-vocabulary model (base rows for dropped ids); see :func:`export_full`."""
        return export_full(self.model, base, self.keep_ids, out_dir=out_dir, tokenizer=tokenizer)


def _vocab_modules(model: nn.Module) -> tuple[nn.Embedding, Optional[nn.Linear], bool]:
    """(input embedding, output head or None, tied) of a transformers causal LM, checked for shape."""
    get_in = getattr(model, "get_input_embeddings", None)
    emb = get_in() if callable(get_in) else None
    if not isinstance(emb, nn.Embedding):
        raise VocabError(f"{type(model).__name__}: get_input_embeddings() returned {type(emb).__name__}, "
                         "not an nn.Embedding; vocabulary trimming needs a transformers causal LM")
    get_out = getattr(model, "get_output_embeddings", None)
    head = get_out() if callable(get_out) else None
    if head is not None:
        if not isinstance(head, nn.Linear):
            raise VocabError(f"{type(model).__name__}: the output head is a {type(head).__name__}, not an "
                             "nn.Linear; vocabulary trimming cannot handle it")
        if head.weight.shape[0] != emb.weight.shape[0]:
            raise VocabError(f"{type(model).__name__}: the head has {head.weight.shape[0]} rows but the "
                             f"embedding table {emb.weight.shape[0]}; they must be equal")
    tied = head is not None and head.weight is emb.weight
    return emb, head, tied


def _vocab_tensor_names(model: nn.Module) -> dict[str, str]:
    """``{state-dict name: "weight" | "bias"}`` of the vocabulary-sized tensors (embedding, head, head bias)."""
    emb, head, _ = _vocab_modules(model)
    targets = {id(emb.weight): "weight"}
    if head is not None:
        targets[id(head.weight)] = "weight"
        if head.bias is not None:
            targets[id(head.bias)] = "bias"
    return {n: targets[id(p)] for n, p in model.named_parameters(remove_duplicate=False) if id(p) in targets}


def _check_keep_ids(keep_ids: TokenArray, vocab_size: int) -> np.ndarray:
    a = np.asarray(keep_ids)
    if a.ndim != 1 or a.size == 0:
        raise VocabError(f"keep_ids has shape {a.shape}; need a non-empty 1-D array of token ids")
    if a.dtype.kind not in "ui":
        raise VocabError(f"keep_ids has dtype {a.dtype}; allowed: an integer dtype")
    a = a.astype(np.int64)
    if a.min() < 0 or a.max() >= vocab_size:
        bad = a[(a < 0) | (a >= vocab_size)]
        raise VocabError(f"keep id {int(bad[0])} is outside the model's vocabulary 0..{vocab_size - 1}")
    s = np.sort(a)
    dup = s[1:][s[1:] == s[:-1]]
    if dup.size:
        raise VocabError(f"keep id {int(dup[0])} appears more than once in keep_ids")
    return s


def _remap_config_ids(cfg: Any, old_to_new: np.ndarray) -> None:
    """Remap the token-id fields of a (generation) config in place; an id that was dropped becomes None."""
    if cfg is None:
        return

    def one(i):
        if i is None or isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < old_to_new.size:
            return i
        new = int(old_to_new[i])
        return new if new >= 0 else None

    for field_name in _CONFIG_ID_FIELDS:
        if not hasattr(cfg, field_name):
            continue
        v = getattr(cfg, field_name)
        if isinstance(v, (list, tuple)):
            mapped = [m for m in (one(i) for i in v) if m is not None]
            setattr(cfg, field_name, type(v)(mapped) if mapped else None)
        else:
            setattr(cfg, field_name, one(v))


def trim_model(model: nn.Module, keep_ids: TokenArray, *, share_weights: bool = False) -> TrimmedVocab:
    """A copy of ``model`` whose embedding table and output head hold only the rows of ``keep_ids``.

    The copy keeps the architecture (for Gemma 3 the scaled embedding module, ``embed_scale`` included), a
    tied head stays tied to the (new) embedding, an untied head (and its bias) is trimmed to the same rows.
    Its config has ``vocab_size = len(keep_ids)`` and the special ids (pad/bos/eos/unk, also in the generation
    config, and the embedding's ``padding_idx``) remapped; a special id that is not kept becomes ``None``.
    The new vocabulary tensors are fresh parameters with the original's ``requires_grad``.

    Args:
        model: a transformers causal LM (``get_input_embeddings`` an ``nn.Embedding``, head an ``nn.Linear``).
        keep_ids: the full-vocabulary ids to keep, e.g. from :func:`used_token_ids`; any order (sorted here),
            no duplicates.
        share_weights: False (default): every other tensor is copied, ``model`` stays independent.
            True: every other parameter and buffer *is* the original's tensor (no copy; the layers train in
            place in ``model``), which is what :func:`trimmed_for_training` uses.

    Returns:
        A :class:`TrimmedVocab` (``.model``, ``.keep_ids``, ``.old_to_new``, ``.remap()``).

    Raises:
        VocabError: not a supported model, or bad ``keep_ids`` (empty, duplicates, out of range).
    """
    emb, head, tied = _vocab_modules(model)
    full = emb.weight.shape[0]
    keep = _check_keep_ids(keep_ids, full)
    old_to_new = np.full(full, -1, dtype=np.int32)
    old_to_new[keep] = np.arange(keep.size, dtype=np.int32)
    index = torch.from_numpy(keep).to(emb.weight.device)

    def rows(t: torch.Tensor) -> nn.Parameter:
        with torch.no_grad():
            return nn.Parameter(t.detach().index_select(0, index.to(t.device)).clone(), requires_grad=t.requires_grad)

    # deepcopy with a memo: the vocabulary tensors are "copied" into their trimmed versions (so a tied head
    # gets the same new Parameter as the embedding, untied ones their own), and with share_weights every
    # other tensor is mapped to itself. Modules, configs and plain attributes are real copies.
    memo: dict[int, Any] = {id(emb.weight): rows(emb.weight)}
    if head is not None and not tied:
        memo[id(head.weight)] = rows(head.weight)
    if head is not None and head.bias is not None:
        memo[id(head.bias)] = rows(head.bias)
    if share_weights:
        for t in [*model.parameters(), *model.buffers()]:
            memo.setdefault(id(t), t)
    trimmed = copy.deepcopy(model, memo)

    n = int(keep.size)
    new_emb, new_head, new_tied = _vocab_modules(trimmed)
    assert new_tied == tied and new_emb.weight.shape[0] == n  # noqa: S101 - the memo guarantees it
    new_emb.num_embeddings = n
    if new_emb.padding_idx is not None:
        p = int(old_to_new[new_emb.padding_idx])
        new_emb.padding_idx = p if p >= 0 else None
    if new_head is not None:
        new_head.out_features = n
    # Every module's own copy of vocab_size / padding_idx (Gemma3TextModel, Gemma3ForCausalLM: the loss
    # reshapes the logits with it) and every config (shared by the copied modules; the original's untouched).
    configs = {}
    for m in trimmed.modules():
        if m is not new_emb:
            if getattr(m, "vocab_size", None) == full:
                m.vocab_size = n
            if isinstance(getattr(m, "padding_idx", None), int) and not isinstance(m, nn.Embedding):
                m.padding_idx = new_emb.padding_idx
        cfg = getattr(m, "config", None)
        if cfg is not None:
            configs[id(cfg)] = cfg
            get_text = getattr(cfg, "get_text_config", None)
            text = get_text() if callable(get_text) else None
            if text is not None:
                configs[id(text)] = text
    for cfg in configs.values():
        if getattr(cfg, "vocab_size", None) == full:
            cfg.vocab_size = n
        _remap_config_ids(cfg, old_to_new)
    _remap_config_ids(getattr(trimmed, "generation_config", None), old_to_new)
    return TrimmedVocab(model=trimmed, keep_ids=keep, old_to_new=old_to_new, full_vocab_size=full)


# ----------------------------------------------------------------------------------------------------
# Back to the full vocabulary
# ----------------------------------------------------------------------------------------------------
def untrim_into(trimmed_model: nn.Module, full: Union[nn.Module, MutableMapping[str, torch.Tensor]],
                keep_ids: TokenArray) -> Union[nn.Module, MutableMapping[str, torch.Tensor]]:
    """Write a trimmed model's weights into a full-vocabulary model (or state dict), in place.

    Rows ``keep_ids`` of the full embedding table (and untied head, and head bias) get the trimmed model's
    rows; the other rows are not touched (so they keep the base's values bit for bit); every other tensor
    (layers, norms) is copied over by name. Tensors the two already share (``trim_model(...,
    share_weights=True)``) are skipped. A state dict without a tied head's ``lm_head.weight`` (as safetensors
    files store tied models) is fine.

    Args:
        trimmed_model: the trained model from :func:`trim_model`.
        full: the full-vocabulary model of the same architecture (e.g. the base, loaded again), or its state dict.
        keep_ids: the ids the model was trimmed to (``TrimmedVocab.keep_ids``).

    Returns:
        ``full``, updated.

    Raises:
        VocabError: shapes or names do not match, or bad ``keep_ids``.
    """
    t_state = trimmed_model.state_dict(keep_vars=True)
    vocab_names = _vocab_tensor_names(trimmed_model)
    if isinstance(full, nn.Module):
        _vocab_modules(full)  # a supported model
        f_state = full.state_dict(keep_vars=True)
    else:
        f_state = full
    emb_name = next(iter(vocab_names))
    if emb_name not in f_state:
        raise VocabError(f"the full model has no tensor {emb_name!r}; is it the same architecture?")
    full_rows = f_state[emb_name].shape[0]
    keep = _check_keep_ids(keep_ids, full_rows)
    n = int(keep.size)
    tied_heads = {n_ for n_, p in trimmed_model.named_parameters(remove_duplicate=False)
                  if n_ in vocab_names and p is t_state[emb_name]} - {emb_name}
    missing = [k for k in t_state if k not in f_state and k not in tied_heads]
    if missing:
        raise VocabError(f"the full model lacks {len(missing)} tensors of the trimmed model, e.g. {missing[:3]}; "
                         "is it the same architecture?")
    with torch.no_grad():
        for name, src in t_state.items():
            if name not in f_state:
                continue  # a tied head, written through the embedding
            dst = f_state[name]
            if name in vocab_names:
                if src.shape[0] != n or dst.shape[1:] != src.shape[1:]:
                    raise VocabError(f"{name}: trimmed shape {tuple(src.shape)} and full shape {tuple(dst.shape)} "
                                     f"do not fit {n} kept ids")
                if dst is src:
                    continue
                index = torch.from_numpy(keep).to(dst.device)
                dst.index_copy_(0, index, src.detach().to(device=dst.device, dtype=dst.dtype))
            else:
                if dst.shape != src.shape:
                    raise VocabError(f"{name}: trimmed shape {tuple(src.shape)}, full shape {tuple(dst.shape)}")
                if dst is src or (dst.data_ptr() == src.data_ptr() and dst.device == src.device):
                    continue  # shared (share_weights=True): already the trained tensor
                dst.copy_(src.detach())
    return full


def export_full(trimmed_model: nn.Module, base: Union[str, Path, nn.Module], keep_ids: TokenArray,
                out_dir: Union[str, Path, None] = None, tokenizer: Any = None) -> nn.Module:
    """The full-vocabulary model: the base with the trimmed model's weights written in.

    Args:
        trimmed_model: the trained trimmed model.
        base: the full-vocabulary model to write into (modified in place), or the path of its Hugging Face
            directory (loaded in float32).
        keep_ids: the ids the model was trimmed to.
        out_dir: if given, the result is saved there with ``save_pretrained`` (a normal Gemma 3 checkpoint,
            loadable by transformers and lm-eval with the original tokenizer); ``tokenizer`` is saved with it.

    Returns:
        The full-vocabulary model.
    """
    if isinstance(base, (str, Path)):
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    untrim_into(trimmed_model, base, keep_ids)
    if out_dir is not None:
        from famlib.checkpoint import atomic_directory

        with atomic_directory(Path(out_dir)) as tmp:
            base.save_pretrained(str(tmp))
            if tokenizer is not None:
                tokenizer.save_pretrained(str(tmp))
    return base


# ----------------------------------------------------------------------------------------------------
# Training helper
# ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def trimmed_for_training(model: nn.Module, train_tokens: np.ndarray, val_tokens: Optional[np.ndarray] = None,
                         tokenizer: Any = None, extra: Iterable[int] = ()
                         ) -> Iterator[tuple[nn.Module, np.ndarray, Optional[np.ndarray]]]:
    """Train ``model`` through a trimmed copy; on exit the trained rows are written back into ``model``.

    Keeps the ids of ``train_tokens`` and ``val_tokens`` plus the tokenizer's special ids (and ``extra``),
    builds the trimmed model *sharing* every other tensor with ``model`` (no copy of the layers: they train
    in place), and yields ``(trimmed_model, train_remapped, val_remapped)`` (``val_remapped`` is None when
    ``val_tokens`` is). Set ``requires_grad`` and build regularisers (L2-SP) on the *trimmed* model, inside
    the block: its vocabulary tensors are new parameters. On exit (also after an exception, so that ``model``
    is consistent) the embedding rows (and an untied head's) are written back into ``model``'s full table;
    rows of unused ids keep their values. If training moved the trimmed model to another device, ``model``
    is moved there too.

    The remapped arrays are in memory (``uint16`` when the kept vocabulary fits), as large as the inputs.
    See the module docstring for what trimming changes in the objective.
    """
    keep = used_token_ids([train_tokens, val_tokens], tokenizer, extra)
    tv = trim_model(model, keep, share_weights=True)
    train_t = tv.remap(train_tokens)
    val_t = None if val_tokens is None else tv.remap(val_tokens)
    try:
        yield tv.model, train_t, val_t
    finally:
        device = _vocab_modules(tv.model)[0].weight.device
        if _vocab_modules(model)[0].weight.device != device:
            model.to(device)
        tv.untrim_into(model)
